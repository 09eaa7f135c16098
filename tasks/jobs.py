"""Celery tasks: thin wrappers that hand a job id to archive.execution.runner.

Transient faults (database or broker connection, disk I/O) are retried with exponential
backoff; a PermanentJobError (bad input, bad reference file) fails at once.
"""
from __future__ import annotations

import os

from celery import shared_task

from archive.config import load_settings
from archive.execution import runner
from archive.reprocessing.planner import plan_and_send

from .dispatch import RUN_JOB, CeleryDispatcher

TRANSIENT = runner.TRANSIENT


def _settings(task):
    return getattr(task.app, "archive_settings", None) or load_settings()


@shared_task(bind=True, name=RUN_JOB, autoretry_for=TRANSIENT,
             dont_autoretry_for=(runner.PermanentJobError,), retry_backoff=5, retry_backoff_max=600,
             retry_jitter=True, max_retries=5, acks_late=True)
def run_job(self, job_id: int) -> str:
    """Execute job ``job_id`` (see archive.execution.runner.execute_job)."""
    hostname = self.request.hostname or runner.worker_name()
    return runner.execute_job(_settings(self), job_id, worker=f"{hostname}:{os.getpid()}")


@shared_task(bind=True, name="tasks.jobs.plan_and_enqueue")
def plan_and_enqueue(self) -> int:
    """Send the stale work the catalog owes under the context in use (the beat task).

    Also the jobs a lost worker or a restarted broker dropped; failures are not retried
    automatically. Returns the number of jobs sent.
    """
    settings = _settings(self)
    plan, _ = plan_and_send(settings, CeleryDispatcher(settings, app=self.app), stale_only=True, retry_failed=False)
    return len(plan.job_ids)
