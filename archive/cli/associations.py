"""``archive associate``: associations from the catalog with the jwst generator."""
from __future__ import annotations

from typing import Optional

import typer

from .common import ensure_catalog, err, print_table, settings

app = typer.Typer()


@app.command()
def associate(program: Optional[str] = typer.Option(None, "--program"),
              as_json: bool = typer.Option(False, "--json")):
    """Generate Level-2 and Level-3 associations from the catalog with jwst's generator."""
    from ..associations.associate import associate as do_associate

    s = settings()
    ensure_catalog(s)
    with err.status("running the jwst association generator ..."):
        report = do_associate(s, program)
    rows = ([[a, "new"] for a in report.created] + [[a, "existing"] for a in report.existing]
            + [[f, f"left out of the pool: {why}"] for f, why in report.left_out])
    print_table(f"associations: {len(report.created)} new, {len(report.existing)} existing "
                f"({', '.join(f'{k}: {v}' for k, v in sorted(report.levels.items()))})",
                ["asn_id", "status"], rows, as_json)
