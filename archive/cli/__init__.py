"""The ``archive`` command line (typer + rich), one module per command group.

Every command reads the settings from the environment (``ARCHIVE_DATA_DIR``,
``ARCHIVE_DB_URL``, ``ARCHIVE_BROKER_URL``, ``CRDS_PATH``, ``CRDS_CONTEXT``) or the
config file; ``--data-dir`` overrides the data directory. Tabular commands take
``--json`` to print machine-readable output instead of a table.

The command modules import the archive's packages inside each command, so that
``archive --help`` and argument errors do not pay for loading astropy, SQLAlchemy, crds
and the numba kernels.

Commands of other packages join through the entry-point group ``jwst_archive.commands``:
each entry point names a ``typer.Typer`` whose commands are added at the top level when
the command line runs (not when this package is imported, so such a package may itself
use :mod:`archive.cli.common`). That is how ``simulation`` adds ``simulate`` and
``demo`` without the archive importing it.
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from . import associations, calibrate, catalog, crds, db, ingest, reprocessing, workers
from .common import State, err

#: exit code of an unexpected error (0 ok, 1 inputs rejected or jobs failed, 2 usage)
INTERNAL_ERROR = 3
log = logging.getLogger("archive.cli")

#: entry-point group of the commands other packages add to ``archive``
COMMANDS_GROUP = "jwst_archive.commands"


def registered_commands(group: str = COMMANDS_GROUP) -> dict[str, click.Command]:
    """Load the commands other installed packages register for ``archive``.

    Parameters
    ----------
    group : str
        Entry-point group; each entry point names a ``typer.Typer``.

    Returns
    -------
    dict
        Command name -> click command, from the entry points in the order of their names.

    Notes
    -----
    An entry point that fails to load is reported on stderr and left out: a broken
    add-on must not take the archive's own commands down with it.
    """
    found: dict[str, click.Command] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            commands = typer.main.get_group(ep.load()).commands
        except Exception as exc:
            err.print(f"[yellow]commands {ep.name} ({ep.value}) not loaded: {type(exc).__name__}: {exc}")
            continue
        for name, command in commands.items():
            found.setdefault(name, command)
    return found


class ArchiveGroup(TyperGroup):
    """The ``archive`` command group: its own commands, then the registered ones.

    The registered commands (:func:`registered_commands`) are added the first time the
    group lists or looks up a command; they never replace one of the archive's own.
    """

    _registered_added = False

    def _add_registered(self) -> None:
        if not self._registered_added:
            self._registered_added = True
            for name, command in registered_commands().items():
                self.commands.setdefault(name, command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """List the command names: the archive's own, then the registered ones."""
        self._add_registered()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return the command named ``cmd_name``, looking at the registered ones too."""
        self._add_registered()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        """Run the command; an unexpected error is logged with its traceback and exits 3.

        The exit codes of every command: 0 ok, 1 some inputs rejected or jobs failed,
        2 usage or configuration error (click's own usage errors included), 3 an internal
        error (the traceback on stderr; never silent).
        """
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, click.exceptions.Exit, click.exceptions.Abort,
                click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=True)
            err.print(f"[red]internal error: {type(exc).__name__}: {exc} (traceback above; exit 3)")
            raise typer.Exit(INTERNAL_ERROR) from None


app = typer.Typer(cls=ArchiveGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="A JWST archive: ingest raw exposures, calibrate them, and prove how each product was made.")


@app.callback()
def main(data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="ARCHIVE_DATA_DIR",
                                                 help="Data directory (catalog, storage, CRDS cache).")):
    """JWST archive reprocessing system."""
    State.data_dir = data_dir


for _group in (catalog, ingest, associations, reprocessing, calibrate, workers):
    app.add_typer(_group.app)
app.add_typer(crds.app, name="crds")
app.add_typer(db.app, name="db")
