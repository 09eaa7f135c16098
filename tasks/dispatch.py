"""The Celery dispatcher registered for ``archive`` (entry point jwst_archive.dispatchers)."""
from __future__ import annotations

from archive.config import Settings
from archive.execution.runner import PermanentJobError

#: the task that runs one job (tasks.jobs.run_job), by its Celery name
RUN_JOB = "tasks.jobs.run_job"


class CeleryDispatcher:
    """Sends jobs through Celery: eager in-process, or to the broker."""

    def __init__(self, settings: Settings, app=None) -> None:
        # here, not at the top: importing tasks.app builds its default app from the
        # environment, which a dispatcher made for explicit settings must not depend on
        from .app import make_app

        self.settings = settings
        self.app = app or make_app(settings)

    def _tasks(self):
        """Return the app's task registry, once the app has imported its task modules (``include``).

        The dispatcher finds the tasks by name through the app, as Celery workers do, so it
        does not import the task module that itself uses this dispatcher.
        """
        self.app.loader.import_default_modules()
        return self.app.tasks

    def epoch(self) -> str | None:
        """Return the broker's identity, so the planner can tell that a restarted broker lost messages.

        Redis' run_id (new at every server start); None when eager; for other brokers a
        constant (lost messages are then re-sent after ``requeue_after_seconds``).
        """
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
        """Run the jobs in-process (eager) or put them on the broker's queue.

        Parameters
        ----------
        job_ids : list of int
            Jobs to send.
        progress : callable, optional
            Called with (job id, outcome) after each job.

        Returns
        -------
        dict
            Job id -> the task's result when eager (``succeeded``, ``skipped``,
            ``duplicate``, or ``failed: <error>``: in-process, a failure is recorded, never
            raised), ``enqueued`` otherwise.
        """
        task = self._tasks()[RUN_JOB]
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
        """Run a Celery worker on the archive's queue (``argv``: more ``celery worker`` options)."""
        self._tasks()
        self.app.worker_main(["worker", "--loglevel=INFO", "--prefetch-multiplier=1", *argv])

    def run_beat(self, argv: list[str]) -> None:
        """Run Celery beat, which sends ``plan_and_enqueue`` periodically (``argv``: more options)."""
        self._tasks()
        self.app.start(["beat", "--loglevel=INFO", *argv])
