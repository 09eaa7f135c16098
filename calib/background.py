"""Writing a product in a background thread while the run goes on (:func:`calib.products.run_and_save`).

A write started here is registered for its thread until it is forgotten, so that a step
about to allocate large arrays can wait for it first (:func:`wait_for_writes`): the write
holds the written product's arrays until their bytes are in the file (then it releases
them; its fsync, which needs only the disk, may still be running).
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
        ``writer(model, path, serialized=callback)``, e.g. :func:`calib.products.write_atomic`
        (which leaves no file behind when it fails); it calls ``callback()``, holding no
        reference to the model any more, once the model's bytes are in the file, or never.
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
        self._released = threading.Event()
        _PENDING.writes = [*getattr(_PENDING, "writes", []), self]
        self._thread = threading.Thread(target=self._run, name=f"write {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            # no reference kept here: the writer's is the last one, so that it can free the model
            self._writer(self._take_model(), self.path, serialized=self._release)
        except BaseException as exc:    # re-raised by wait() in the caller's thread
            self.error = exc
        finally:
            self._release()

    def _take_model(self):
        model, self._model = self._model, None
        return model

    def _release(self) -> None:
        """Free the model (and the arrays only it holds) and let :func:`wait_for_writes` return."""
        if not self._released.is_set():
            gc.collect()    # asdf leaves copies of the tree in reference cycles: free the arrays they hold
            self._released.set()

    def wait_released(self) -> None:
        """Wait until the write holds the model no more (its bytes are in the file, or it failed)."""
        self._released.wait()

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
    """Wait until the background writes started by this thread have released their products' arrays.

    For a step about to allocate large arrays: the written products' bytes are then in their
    files (their fsync may still be running; it holds no array). Errors are not raised here
    (the caller that started the write raises them from :meth:`BackgroundWrite.wait`).
    """
    for w in getattr(_PENDING, "writes", []):
        w.wait_released()
