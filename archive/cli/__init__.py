"""The ``archive`` command line (typer + rich), one module per command group.

Every command reads the settings from the environment (``ARCHIVE_DATA_DIR``,
``ARCHIVE_DB_URL``, ``ARCHIVE_BROKER_URL``, ``CRDS_PATH``, ``CRDS_CONTEXT``) or the
config file; ``--data-dir`` overrides the data directory. Tabular commands take
``--json`` to print machine-readable output instead of a table.

The command modules import the archive's packages inside each command, so that
``archive --help`` and argument errors do not pay for loading astropy, SQLAlchemy, crds
and the numba kernels. Commands of other packages join through the entry-point group
``jwst_archive.commands`` (each entry point a ``typer.Typer`` whose commands are added
at the top level): that is how ``simulation`` adds ``simulate`` and ``demo`` without the
archive importing it.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Optional

import typer

from . import associations, calibrate, catalog, crds, ingest, reprocessing, simulation, workers
from .common import State, err

COMMANDS_GROUP = "jwst_archive.commands"

app = typer.Typer(help="A JWST archive: ingest raw exposures, calibrate them, and prove how each product was made.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def main(data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="ARCHIVE_DATA_DIR",
                                                 help="Data directory (catalog, storage, CRDS cache).")):
    """JWST archive reprocessing system."""
    State.data_dir = data_dir


def add_registered_commands(root: typer.Typer, group: str = COMMANDS_GROUP) -> None:
    """Add the commands other installed packages register for ``archive``.

    Parameters
    ----------
    root : typer.Typer
        The app to add them to.
    group : str
        Entry-point group; each entry point names a ``typer.Typer`` whose commands join
        ``root`` at the top level, in the order of the entry points' names.

    Notes
    -----
    An entry point that fails to load is reported on stderr and left out: a broken
    add-on must not take the archive's own commands down with it.
    """
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            commands = ep.load()
        except Exception as exc:
            err.print(f"[yellow]commands {ep.name} ({ep.value}) not loaded: {type(exc).__name__}: {exc}")
            continue
        root.add_typer(commands)


for _group in (catalog, ingest, associations, reprocessing, calibrate, workers, simulation):
    app.add_typer(_group.app)
add_registered_commands(app)
app.add_typer(crds.app, name="crds")
