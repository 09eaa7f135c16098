"""``archive simulate`` and ``archive demo``: commands the simulation adds to ``archive``.

They reach the ``archive`` command through the entry-point group ``jwst_archive.commands``
(pyproject.toml), so the archive itself never imports this package. The simulator and the
demo (numba, astropy, the catalog) are imported inside the commands: ``archive --help``
stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archive.cli.common import console, err, print_table, settings

app = typer.Typer()


@app.command()
def simulate(pool: Path = typer.Option(..., "--pool", exists=True, dir_okay=False, help="Association pool (.csv)."),
             out: Path = typer.Option(..., "--out", help="Directory for the _uncal.fits files."),
             limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N pool rows."),
             seed: int = typer.Option(0, "--seed"),
             ngroups: Optional[int] = typer.Option(None, "--ngroups", help="Override NGROUPS."),
             nints: Optional[int] = typer.Option(None, "--nints", help="Override NINTS."),
             minimal: bool = typer.Option(False, "--minimal",
                                          help="Headers only: constant ramps, no references or context "
                                               "(for associations and other header work)."),
             as_json: bool = typer.Option(False, "--json")):
    """Simulate one raw exposure per pool row and the CRDS cache that describes them.

    Every row that names a JWST exposure is made; the table reports each row (simulated,
    with where its readout window came from, or skipped, with the reason). Exit 0 even
    when rows were skipped: the rest of the pool was made.
    """
    from .pools import simulate_pool

    s = settings()
    s.crds_path.mkdir(parents=True, exist_ok=True)
    with err.status(f"simulating {pool.name} ..."):
        result = simulate_pool(pool, out, s.crds_path, limit=limit, seed=seed, ngroups=ngroups, nints=nints,
                               minimal=minimal)
    rows = [[r.index, r.filename, r.status, r.reason or r.note] for r in result.rows]
    where = (f"CRDS context {result.context} in {s.crds_path}" if result.context
             else "no references (--minimal)")
    print_table(f"{len(result.files)} exposures simulated into {out}, {len(result.skipped)} rows skipped; {where}",
                ["row", "file", "status", "window source / reason"], rows, as_json)


@app.command()
def demo(workdir: Optional[Path] = typer.Option(None, "--workdir", help="Default: a new temporary directory."),
         limit: Optional[int] = typer.Option(None, "--limit", help="Simulate only the first N of the demo's rows."),
         ngroups: int = typer.Option(3, "--ngroups")):
    """Run the main job end to end on the embedded default (SQLite, in-process tasks)."""
    from .demo import run_demo

    code = run_demo(workdir, limit=limit, ngroups=ngroups, console=console)
    raise typer.Exit(code)
