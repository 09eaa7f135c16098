"""``archive calibrate``: a pipeline on files without the catalog, like jwst's ``strun``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import err, parse_step_params, print_table, progress, settings

app = typer.Typer()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def calibrate(ctx: typer.Context,
              pipeline: str = typer.Argument(..., help="calwebb_detector1 (or an alias such as Detector1Pipeline)."),
              files: list[Path] = typer.Argument(..., help="Raw exposures (*_uncal.fits)."),
              output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Default: beside each input."),
              as_json: bool = typer.Option(False, "--json")):
    """Run a pipeline on files without the catalog, like strun (exit 0 ok, 1 a file failed, 2 usage).

    Step parameters: --steps.jump.rejection_threshold=5, --steps.refpix.skip=true,
    --steps.dark_current.override_dark=PATH (bypass CRDS for one reference).
    """
    from ..execution.calibrate import UsageError, calibrate_files

    s = settings()
    # with unknown options allowed, click hands --steps.* that follow the files to FILES
    extra = [str(f) for f in files if str(f).startswith("--")] + list(ctx.args)
    files = [f for f in files if not str(f).startswith("--")]
    try:
        if not files:
            raise typer.BadParameter("no input files")
        params = parse_step_params(extra)
        with progress() as prog:
            task = prog.add_task("calibrate", total=len(files))
            outcomes = calibrate_files(s, pipeline, files, output_dir, params,
                                       progress=lambda o: prog.advance(task))
    except (UsageError, typer.BadParameter) as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    rows = [[str(o.path), o.status, ", ".join(str(p) for p in o.products.values()), f"{o.seconds:.1f}", o.message]
            for o in outcomes]
    print_table("calibrate", ["input", "status", "products", "seconds", "error"], rows, as_json)
    if any(o.status != "succeeded" for o in outcomes):
        raise typer.Exit(1)
