"""``archive db grant``: the catalog's read-only role (PostgreSQL)."""
from __future__ import annotations

import os
from typing import Optional

import typer

from .common import console, err, settings

app = typer.Typer(help="Catalog roles.", no_args_is_help=True)


@app.command()
def grant(role: str = typer.Option("archive_readonly", "--role", help="Name of the read-only role."),
          password: Optional[str] = typer.Option(None, "--password", envvar="ARCHIVE_READONLY_PASSWORD",
                                                 help="Its password (env ARCHIVE_READONLY_PASSWORD); "
                                                      "unchanged when not given.")):
    """Create the read-only role: SELECT on the catalog's tables and views, nothing else.

    Run it as the catalog's owner (ARCHIVE_DB_URL) after `archive init`, then point
    ARCHIVE_READONLY_DB_URL at the role for `archive sql` and the web view. On SQLite
    there is nothing to grant: `archive sql` opens the file read-only.
    """
    from ..catalog.readonly import grant_readonly

    s = settings()
    if s.db_url.startswith("sqlite"):
        console.print("SQLite catalog: no roles; `archive sql` opens the catalog file read-only.")
        return
    try:
        done = grant_readonly(s.db_url, role, password)
    except ValueError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    for line in done:
        console.print(line)
    if not os.environ.get("ARCHIVE_READONLY_DB_URL"):
        console.print(f"set ARCHIVE_READONLY_DB_URL to postgresql+psycopg://{role}:<password>@<host>/<db> "
                      "for `archive sql`")
