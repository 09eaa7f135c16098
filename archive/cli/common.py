"""What every ``archive`` command shares.

The settings (``--data-dir``), the consoles, tables or JSON, progress bars, the catalog
made ready, and strun-style step parameters.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import Settings, load_settings

console = Console()
err = Console(stderr=True)


class State:
    """Options of the ``archive`` command itself, set by its callback before a command runs."""

    data_dir: Optional[Path] = None


def settings() -> Settings:
    """Return the settings for this invocation (``--data-dir``, environment, config file).

    Also sets the process umask from them (``ARCHIVE_UMASK``: what the command writes is
    readable by the group, 0644 by default).
    """
    from ..ingest.storage import apply_umask

    try:
        s = load_settings(State.data_dir)
    except (ValueError, FileNotFoundError) as exc:  # a configuration error: exit 2, like a usage error
        err.print(f"[red]configuration: {exc}")
        raise typer.Exit(2) from None
    apply_umask(s.umask)
    return s


def progress() -> Progress:
    """Return a progress bar on stderr, shown only when stderr is a terminal."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal)


def print_table(title: str, columns: list[str], rows: list[list], as_json: bool) -> None:
    """Print rows as a rich table on stdout, or as a JSON list of objects with ``--json``.

    Parameters
    ----------
    title : str
        Table title (not printed with JSON).
    columns : list of str
        Column names; the JSON objects' keys.
    rows : list of list
        One list of values per row (None is printed as an empty cell).
    as_json : bool
        Print JSON instead of a table.
    """
    if as_json:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=1))
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    console.print(table)


def ensure_catalog(s: Settings) -> None:
    """Create the data directories and bring the catalog schema to head (idempotent)."""
    from ..catalog.db import upgrade  # SQLAlchemy and Alembic: not loaded for --help

    for d in (s.data_dir, s.raw_dir, s.products_dir, s.associations_dir, s.crds_path):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)


def parse_step_params(extra: list[str]) -> dict:
    """Parse strun-style step parameters.

    ``--steps.jump.rejection_threshold=5`` gives ``{"jump": {"rejection_threshold": 5}}``:
    values become bool (true/false), int or float where they parse as one, else stay str.

    Parameters
    ----------
    extra : list of str
        The command's extra arguments.

    Returns
    -------
    dict
        step name -> {parameter name: value}.

    Raises
    ------
    typer.BadParameter
        For an argument that is not ``--steps.<step>.<param>=VALUE``.
    """
    params: dict = {}
    for arg in extra:
        if not arg.startswith("--steps.") or "=" not in arg:
            raise typer.BadParameter(f"unexpected argument {arg!r} (step parameters: --steps.<step>.<param>=VALUE)")
        key, value = arg[len("--steps."):].split("=", 1)
        step, _, name = key.partition(".")
        if not name:
            raise typer.BadParameter(f"{arg!r}: expected --steps.<step>.<param>=VALUE")
        low = value.lower()
        parsed: object
        if low in ("true", "false"):
            parsed = low == "true"
        else:
            try:
                parsed = int(value)
            except ValueError:
                try:
                    parsed = float(value)
                except ValueError:
                    parsed = value
        params.setdefault(step, {})[name] = parsed
    return params
