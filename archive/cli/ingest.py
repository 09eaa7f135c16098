"""``archive ingest``: raw exposures into storage and the catalog."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import ensure_catalog, err, print_table, progress, settings

app = typer.Typer()


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Files or directories of *_uncal.fits."),
           recursive: bool = typer.Option(False, "--recursive", "-r"),
           pool: Optional[Path] = typer.Option(None, "--pool", exists=True, dir_okay=False,
                                               help="Pool supplying planning columns (ASN_CANDIDATE ...)."),
           as_json: bool = typer.Option(False, "--json")):
    """Validate, checksum, store and catalogue raw exposures. Exit 1 if any was rejected."""
    from ..ingest.batch import ingest as do_ingest
    from ..ingest.batch import iter_paths

    s = settings()
    ensure_catalog(s)
    total = len(iter_paths(paths, recursive))
    try:
        with progress() as prog:
            task = prog.add_task("ingest", total=total)
            # the arguments themselves, not the files listed from them: a link in a directory that
            # leads out of it is refused (the directory is the file's root), never followed
            report = do_ingest(s, paths, recursive=recursive, pool_path=pool,
                               progress=lambda o: prog.advance(task))
    except (ValueError, FileNotFoundError) as exc:  # the pool (read before any file): a usage error
        err.print(f"[red]ingest: {exc}")
        raise typer.Exit(2) from None
    rows = [[o.filename, o.status, o.stage1_pipeline or "", o.reason] for o in report.outcomes]
    print_table(f"ingest: {report.count('ingested')} ingested, {report.count('unchanged')} unchanged, "
                f"{report.count('rejected')} rejected, {report.count('conflict')} conflicts",
                ["file", "status", "pipeline", "reason"], rows, as_json)
    if not report.ok:
        raise typer.Exit(1)
