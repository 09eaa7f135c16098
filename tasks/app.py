"""The Celery application.

Configured from the archive settings: with ``ARCHIVE_BROKER_URL`` unset, tasks run eagerly
in the calling process (the embedded default); with it set (``redis://...``), they go
through the broker to ``archive worker`` processes.

Worker settings follow STYLE.md ("Idempotent work under an at-least-once queue"):
prefetch 1, late acknowledgement, a task whose worker was lost is rejected back to the
queue, and Redis' visibility timeout is above the longest job.
"""
from __future__ import annotations

from celery import Celery

from archive.config import Settings, load_settings
from archive.ingest.storage import apply_umask

VISIBILITY_TIMEOUT_S = 6 * 3600  # above the longest job; the lease (ARCHIVE_LEASE_SECONDS) is shorter


def make_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app for these settings (eager when no broker is configured)."""
    settings = settings or load_settings()
    apply_umask(settings.umask)  # products on shared storage: readable by the group (0644 by default)
    app = Celery("jwst_archive", include=["tasks.jobs"])
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        result_backend=None,
        task_always_eager=settings.eager,
        task_eager_propagates=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
        beat_schedule={
            "plan-owed-work": {
                "task": "tasks.jobs.plan_and_enqueue",
                "schedule": float(settings.beat_interval_seconds),
            }
        },
    )
    app.archive_settings = settings
    return app


app = make_app()
