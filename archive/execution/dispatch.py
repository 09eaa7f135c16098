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
    """Sends jobs to be executed; ``send`` returns one outcome string per job id
    (eager: the job's result; broker: ``enqueued``)."""

    def __init__(self, settings: Settings) -> None: ...

    def send(self, job_ids: list[int], progress=None) -> dict[int, str]: ...

    def epoch(self) -> str | None:
        """The broker's identity now (None: eager, nothing survives between runs)."""

    def run_worker(self, argv: list[str]) -> None: ...

    def run_beat(self, argv: list[str]) -> None: ...


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
