"""Large arrays kept in temporary memory-mapped files while a run goes on, mapped in when read.

calwebb_image3 works on every member of an association, but each step reads one member
at a time. Holding every member's arrays in memory (seven 2048 x 2048 float32/uint32
arrays, ~117 MB per NIRCam full frame) makes the run's peak memory grow with the members;
jwst's ``in_memory=False`` writes the members to temporary files instead and reads each
back when a step borrows it. :class:`ArraySpill` does the same below the datamodels: a
member's large arrays are copied once into files of a temporary directory and replaced in
the model by ``numpy.memmap`` views of them (``r+``, shared: a step that changes a value
changes the file, and every view of the file sees it). Pages a step touches are resident
only while the view it touched exists; :meth:`ArraySpill.release` replaces a member's
views by fresh, untouched ones, so the pages read so far leave the process (they stay in
the page cache, which the kernel reclaims or writes back as it needs). Values, dtypes and
shapes are unchanged: a step sees the same numbers either way.
"""
from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np

__all__ = ["ArraySpill"]


class ArraySpill:
    """A temporary directory of memory-mapped arrays standing in for datamodels' large arrays.

    Parameters
    ----------
    min_bytes : int
        Arrays of at least this many bytes are spilled (smaller ones stay in memory).
    dir : str, optional
        Where the temporary directory is made (default: :func:`tempfile.gettempdir`).

    Notes
    -----
    Use as a context manager: on exit the files are removed. Views made before that stay
    valid (a mapped file outlives its name on POSIX systems), so products returned from a
    run may keep them; their pages are then freed when the last view is dropped.
    """

    def __init__(self, min_bytes: int = 1 << 20, dir: str | None = None) -> None:
        self.min_bytes = int(min_bytes)
        self._tmp = tempfile.TemporaryDirectory(prefix="calib-spill-", dir=dir)
        self._count = 0
        #: (id(model), name) -> (path, weak reference to the view handed out)
        self._files: dict[tuple[int, str], tuple[str, weakref.ref]] = {}

    def __enter__(self) -> ArraySpill:
        """Return itself."""
        return self

    def __exit__(self, *exc) -> None:
        """Remove the files (:meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Remove the files (existing views stay valid until dropped)."""
        self._files.clear()
        self._tmp.cleanup()

    def _map(self, path: str, dtype, shape) -> np.memmap:
        return np.memmap(path, dtype=dtype, mode="r+", shape=shape)

    def _write(self, value: np.ndarray) -> str:
        self._count += 1
        path = os.path.join(self._tmp.name, f"a{self._count}.dat")
        # written, not copied into a mapping: no page of it enters this process, and nothing
        # waits for the disk (a shared mapping's flush is an msync: ~0.35 s per NIRCam full
        # frame here); every mapping of the file reads these bytes from the page cache
        with open(path, "wb") as fh:
            np.ascontiguousarray(value).tofile(fh)
        return path

    def release(self, model) -> int:
        """Spill a datamodel's large arrays, or map the already spilled ones afresh.

        An array that is the view this object handed out is replaced by a new view of the
        same file (its touched pages leave the process once nothing else holds the old
        view); any other top-level array of at least ``min_bytes`` (a new member, or an
        array a step replaced) is copied into a new file and replaced by a view of it.

        Parameters
        ----------
        model : stdatamodels.DataModel
            Its top-level arrays (``model.instance``; for an ImageModel SCI, ERR, DQ, AREA,
            VAR_*) are replaced in place, and in the ASDF tree it was read with.

        Returns
        -------
        int
            The number of bytes now held in files for this model.
        """
        inst = model.instance
        tree = getattr(getattr(model, "_asdf", None), "tree", None)
        held = 0
        for name, value in list(inst.items()):
            if not isinstance(value, np.ndarray) or value.nbytes < self.min_bytes or value.dtype.hasobject:
                continue
            key = (id(model), name)
            known = self._files.get(key)
            if known is not None and known[1]() is value:
                path = known[0]
            else:
                path = self._write(value)
            view = self._map(path, value.dtype, value.shape)
            self._files[key] = (path, weakref.ref(view))
            inst[name] = view
            if isinstance(tree, dict) and tree is not inst and tree.get(name) is value:
                tree[name] = view
            held += value.nbytes
            del value
        return held
