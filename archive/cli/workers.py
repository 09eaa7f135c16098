"""``archive worker`` and ``archive beat``: the Celery worker and beat of the dispatcher."""
from __future__ import annotations

import typer

from .common import ensure_catalog, err, settings

app = typer.Typer()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context):
    """Start a Celery worker (needs ARCHIVE_BROKER_URL); extra arguments go to celery."""
    from ..execution.dispatch import get_dispatcher

    s = settings()
    if s.eager:
        err.print("[red]ARCHIVE_BROKER_URL is not set: there is no broker to take work from")
        raise typer.Exit(2)
    ensure_catalog(s)
    get_dispatcher(s).run_worker(list(ctx.args))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context):
    """Start Celery beat: plans and enqueues owed work every ARCHIVE_BEAT_INTERVAL seconds."""
    from ..execution.dispatch import get_dispatcher

    s = settings()
    if s.eager:
        err.print("[red]ARCHIVE_BROKER_URL is not set: beat needs a broker")
        raise typer.Exit(2)
    ensure_catalog(s)
    get_dispatcher(s).run_beat(list(ctx.args))
