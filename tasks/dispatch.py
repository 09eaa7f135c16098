"""The Celery dispatcher registered for ``archive`` (entry point jwst_archive.dispatchers)."""
from __future__ import annotations

from archive.config import Settings
from archive.execution.runner import PermanentJobError


class CeleryDispatcher:
    """Sends jobs through Celery: eager in-process, or to the broker."""

    def __init__(self, settings: Settings, app=None) -> None:
        from .app import make_app

        self.settings = settings
        self.app = app or make_app(settings)

    def epoch(self) -> str | None:
        """The broker's identity: Redis' run_id (new at every server start), so the planner
        can tell that a restarted broker lost what was sent before. None when eager; for
        other brokers a constant (lost messages are then re-sent after
        ``requeue_after_seconds``)."""
        if self.settings.eager:
            return None
        url = self.settings.broker_url or ""
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=5)
            try:
                return "redis:" + str(client.info("server")["run_id"])
            finally:
                client.close()
        return "static"

    def send(self, job_ids: list[int], progress=None) -> dict[int, str]:
        from . import jobs as _  # noqa: F401 - registers the tasks on the app

        task = self.app.tasks["tasks.jobs.run_job"]
        out: dict[int, str] = {}
        for job_id in job_ids:
            if self.settings.eager:
                try:
                    out[job_id] = task.apply(args=[job_id], throw=True).get()
                except PermanentJobError as exc:
                    out[job_id] = f"failed: {exc}"
                except Exception as exc:  # transient in eager mode: recorded as failed, retried by a re-run
                    out[job_id] = f"failed: {type(exc).__name__}: {exc}"
            else:
                task.apply_async(args=[job_id])
                out[job_id] = "enqueued"
            if progress:
                progress(job_id, out[job_id])
        return out

    def run_worker(self, argv: list[str]) -> None:
        from . import jobs as _  # noqa: F401

        self.app.worker_main(["worker", "--loglevel=INFO", "--prefetch-multiplier=1", *argv])

    def run_beat(self, argv: list[str]) -> None:
        from . import jobs as _  # noqa: F401

        self.app.start(["beat", "--loglevel=INFO", *argv])
