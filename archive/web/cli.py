"""``archive serve``: the web view, served by uvicorn.

Added to ``archive`` through the ``jwst_archive.commands`` entry point, so the web package
sits above the command line and the command line does not import it.
"""
from __future__ import annotations

import typer

from ..cli.common import err, settings

app = typer.Typer()


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
          port: int = typer.Option(8000, "--port", help="TCP port."),
          workers: int = typer.Option(1, "--workers", help="uvicorn worker processes.")):
    """Serve the read-only web view of the catalog (pages, previews, JSON under /api/)."""
    import uvicorn

    from sqlalchemy import text

    from ..catalog.readonly import ReadonlyError
    from .app import create_app
    from .db import catalog_engine

    s = settings()
    try:  # the read-only path must work before the server listens
        with catalog_engine(s).connect() as conn:
            conn.execute(text("SELECT count(*) FROM exposures")).scalar_one()
        app_ = create_app(s)
    except ReadonlyError as exc:
        err.print(f"[red]refused: {exc}")
        raise typer.Exit(2) from None
    except Exception as exc:
        err.print(f"[red]the catalog cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        raise typer.Exit(2) from None
    err.print(f"serving {s.db_url} read-only on http://{host}:{port}/ (API: /api/docs)")
    if workers > 1:
        err.print("[yellow]--workers > 1 needs an import string; serving with one worker")
    uvicorn.run(app_, host=host, port=port, log_level="warning")
