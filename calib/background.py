"""Writing a product in a background thread while the run goes on (:func:`calib.products.run_and_save`).

A write started here is registered for its thread until it is forgotten, so that a step
about to allocate large arrays can wait for it first (:func:`wait_for_writes`): the write
holds the written product's arrays until it ends.
"""
from __future__ import annotations

import gc
import pathlib
import threading
from collections.abc import Callable

__all__ = ["BackgroundWrite", "wait_for_writes"]

_PENDING = threading.local()


class BackgroundWrite:
    """``writer(model, path)`` in a thread of its own, registered for the calling thread.

    Parameters
    ----------
    writer : callable
        ``writer(model, path)``, e.g. :func:`calib.products.write_atomic` (which leaves no
        file behind when it fails).
    model : stdatamodels.DataModel
        What is written; not used by the caller while the write runs (a snapshot).
    path : pathlib.Path
        The file written.
    """

    def __init__(self, writer: Callable, model, path: pathlib.Path):
        self.path = path
        self.error: BaseException | None = None
        self._writer = writer
        self._model = model
        _PENDING.writes = [*getattr(_PENDING, "writes", []), self]
        self._thread = threading.Thread(target=self._run, name=f"write {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._writer(self._model, self.path)
        except BaseException as exc:    # re-raised by wait() in the caller's thread
            self.error = exc
        finally:
            self._model = None
            gc.collect()    # asdf leaves copies of the tree in reference cycles: free the arrays they hold

    def wait(self, raise_error: bool = True) -> None:
        """Wait for the write to end; re-raise its error unless ``raise_error`` is False.

        Raises
        ------
        BaseException
            Whatever the writer raised.
        """
        self._thread.join()
        if raise_error and self.error is not None:
            raise self.error

    def forget(self) -> None:
        """Unregister it (after :meth:`wait`): :func:`wait_for_writes` no longer waits for it."""
        _PENDING.writes = [w for w in getattr(_PENDING, "writes", []) if w is not self]


def wait_for_writes() -> None:
    """Wait until the background writes started by this thread have ended.

    For a step about to allocate large arrays. Errors are not raised here (the caller that
    started the write raises them from :meth:`BackgroundWrite.wait`).
    """
    for w in getattr(_PENDING, "writes", []):
        w.wait(raise_error=False)
