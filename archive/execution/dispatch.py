"""How planned jobs reach an executor, without archive depending on the task layer.

``archive`` defines the interface; the ``tasks`` package implements it with Celery and
registers it under the entry-point group ``jwst_archive.dispatchers`` (pyproject.toml).
Dependencies so keep pointing one way (tasks -> archive -> calib) while the ``archive``
command can still enqueue work: in-process (Celery eager mode) by default, through the
broker when ``ARCHIVE_BROKER_URL`` is set.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol

from ..config import Settings

GROUP = "jwst_archive.dispatchers"


class Dispatcher(Protocol):
    """What sends jobs to be executed: in-process, or through a broker to workers."""

    def __init__(self, settings: Settings) -> None: ...

    def send(self, job_ids: list[int], progress=None) -> dict[int, str]:
        """Send jobs to be executed.

        Parameters
        ----------
        job_ids : list of int
            Jobs the planner created or revived.
        progress : callable, optional
            Called with (job id, outcome) as each job is sent (or, eagerly, run).

        Returns
        -------
        dict
            Job id -> outcome: the job's result when executed in-process (``succeeded``,
            ``skipped``, ``failed: ...``), ``enqueued`` when sent to a broker.
        """

    def epoch(self) -> str | None:
        """Return the broker's identity now (None: eager, nothing survives between runs)."""

    def run_worker(self, argv: list[str]) -> None:
        """Run a worker process that executes sent jobs (``argv``: extra worker options)."""

    def run_beat(self, argv: list[str]) -> None:
        """Run the scheduler that plans and sends owed work periodically (``argv``: its options)."""


def get_dispatcher(settings: Settings, name: str = "celery") -> Dispatcher:
    """Load the dispatcher registered under ``name``.

    Raises
    ------
    RuntimeError
        If no such dispatcher is installed (the package was not installed with pip).
    """
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise RuntimeError(f"no '{name}' dispatcher registered in entry-point group {GROUP}: "
                           "install the package (pip install -e .)")
    return found[0].load()(settings)
