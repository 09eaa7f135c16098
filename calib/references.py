"""Readers of CRDS reference files and subarray extraction.

Every reference file is opened through its stdatamodels class (the real CRDS formats) and
reduced to plain numpy arrays matching the science exposure. Full-frame references are cut
to the science subarray with the reference's own SUBSTRT/SUBSIZE keywords, as
``jwst.lib.reffile_utils.get_subarray_model`` does (1-indexed starts; slice
``[ystart_sci - ystart_ref : ... + ysize_sci, xstart_sci - xstart_ref : ... + xsize_sci]``).

Errors: ``ReferenceFileError`` naming the file and the step for a file that cannot be opened,
lacks a required array, does not cover the science subarray, or has NaN where not allowed.
"""
from __future__ import annotations

import os
import types
from dataclasses import dataclass

import numpy as np
from stdatamodels.jwst import datamodels

from calib.errors import ReferenceFileError

__all__ = ["ExposureInfo", "REFERENCE_MODELS", "open_reference", "subarray_of", "window_slices",
           "ref_array", "SectionArray", "ReferenceSections", "ReferenceCache", "REFERENCE_CACHE",
           "file_key"]

#: reftype -> stdatamodels class used to open it
REFERENCE_MODELS = {
    "mask": datamodels.MaskModel,
    "ipc": datamodels.IPCModel,
    "saturation": datamodels.SaturationModel,
    "superbias": datamodels.SuperBiasModel,
    "linearity": datamodels.LinearityModel,
    "dark": datamodels.DarkModel,
    "gain": datamodels.GainModel,
    "readnoise": datamodels.ReadnoiseModel,
    "emicorr": datamodels.EmiModel,
    "reset": datamodels.ResetModel,
    "rscd": datamodels.RSCDModel,
    "flat": datamodels.FlatModel,
    "photom": datamodels.open,             # the instrument's PHOTOM class, from the file's DATAMODL
    "area": datamodels.PixelAreaModel,
}


@dataclass(frozen=True)
class ExposureInfo:
    """Header values of a science exposure that the steps need (names as in the FITS keywords)."""

    path: str
    instrument: str          # INSTRUME, upper case
    detector: str            # DETECTOR
    exp_type: str            # EXP_TYPE
    nints: int
    ngroups: int
    nframes: int             # NFRAMES
    groupgap: int            # GROUPGAP
    frame_divisor: int | None  # FRMDIVSR
    group_time: float        # TGROUP, seconds
    frame_time: float        # TFRAME, seconds
    xstart: int              # SUBSTRT1, 1-indexed
    ystart: int              # SUBSTRT2, 1-indexed
    xsize: int               # SUBSIZE1
    ysize: int               # SUBSIZE2
    fastaxis: int            # FASTAXIS
    slowaxis: int            # SLOWAXIS
    noutputs: int | None     # NOUTPUTS
    subarray: str            # SUBARRAY name
    readpatt: str = ""       # READPATT
    integration_start: int = 1  # INTSTART (1-indexed first integration in a segment file)

    @property
    def is_miri(self) -> bool:
        """Whether INSTRUME is MIRI (its detectors, ramps and references differ)."""
        return self.instrument == "MIRI"

    @property
    def full_shape(self) -> tuple[int, int]:
        """Full-frame (ny, nx) in pixels: (1024, 1032) for MIRI, (2048, 2048) near-IR."""
        return (1024, 1032) if self.is_miri else (2048, 2048)

    @property
    def is_subarray(self) -> bool:
        """Whether the exposure's window is smaller than the full frame."""
        return (self.ysize, self.xsize) != self.full_shape


def open_reference(path: str | os.PathLike, reftype: str, step: str, instrument: str = ""):
    """Open a reference file as its stdatamodels class (MIRI darks: DarkMIRIModel).

    Returns the opened datamodel (caller closes it). Raises ``ReferenceFileError`` naming
    the file and ``step`` when the file is missing or is not a valid ``reftype`` file.
    """
    cls = REFERENCE_MODELS[reftype]
    if reftype == "dark" and instrument.upper() == "MIRI":
        cls = datamodels.DarkMIRIModel
    try:
        return cls(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad reference
        raise ReferenceFileError(
            f"{step}: cannot open {reftype} reference file {os.fspath(path)!r}: {exc}"
        ) from exc


def _ref_window(model) -> tuple[int, int, int, int] | None:
    try:
        sub = model.meta.subarray
        vals = (sub.xstart, sub.ystart, sub.xsize, sub.ysize)
    except AttributeError:    # models without subarray keywords (e.g. IPCModel)
        return None
    if any(v is None for v in vals):
        return None
    return tuple(int(v) for v in vals)


def window_slices(shape: tuple[int, ...], model, info: ExposureInfo, path: str, step: str,
                  name: str) -> tuple[slice, slice]:
    """Return the (row, column) slices that cut a reference array to the science window.

    Parameters
    ----------
    shape : tuple of int
        Shape of the reference array; its last two axes are (ny, nx) pixels.
    model : stdatamodels DataModel
        Provides the reference's SUBSTRT1/2 and SUBSIZE1/2 (a reference without them is
        taken as full frame, as jwst does).
    info : ExposureInfo
        The science window (SUBSTRT1/2, SUBSIZE1/2, 1-indexed).
    path, step, name : str
        Named in the error message (file, step, array).

    Returns
    -------
    (slice, slice)
        ``[ystart_sci - ystart_ref : ... + ysize_sci]`` and the same in x, as
        ``jwst.lib.reffile_utils.get_subarray_model``; full slices when the reference already
        has the science shape and origin (jwst's ``ref_matches_sci``).

    Raises
    ------
    ReferenceFileError
        If the array is not at least 2-D, its shape disagrees with its SUBSIZE keywords, or
        the science window does not lie inside it.
    """
    if len(shape) < 2 or 0 in shape:
        raise ReferenceFileError(f"{step}: reference file {path!r} has no {name} array")
    ny, nx = shape[-2:]
    window = _ref_window(model)
    if window is None:
        # jwst assumes full frame for references lacking subarray keywords
        window = (1, 1, nx, ny)
    xs_r, ys_r, xsz_r, ysz_r = window
    if (ny, nx) == (info.ysize, info.xsize) and (xs_r, ys_r) == (info.xstart, info.ystart):
        return slice(None), slice(None)
    if (ny, nx) != (ysz_r, xsz_r):
        raise ReferenceFileError(
            f"{step}: reference file {path!r} {name} shape {(ny, nx)} disagrees with its "
            f"SUBSIZE keywords {(ysz_r, xsz_r)}"
        )
    x0 = info.xstart - xs_r
    y0 = info.ystart - ys_r
    x1 = x0 + info.xsize
    y1 = y0 + info.ysize
    if x0 < 0 or y0 < 0 or x1 > nx or y1 > ny:
        raise ReferenceFileError(
            f"{step}: reference file {path!r} ({name} {ny}x{nx} at SUBSTRT {xs_r},{ys_r}) "
            f"does not cover the science subarray {info.ysize}x{info.xsize} at "
            f"SUBSTRT {info.xstart},{info.ystart}"
        )
    return slice(y0, y1), slice(x0, x1)


def subarray_of(array: np.ndarray, model, info: ExposureInfo, path: str, step: str,
                name: str) -> np.ndarray:
    """Cut a reference array to the science subarray.

    Parameters
    ----------
    array : numpy.ndarray
        The reference array; its last two axes are (ny, nx) pixels.
    model, info, path, step, name
        As for :func:`window_slices`.

    Returns
    -------
    numpy.ndarray
        A view of ``array`` (``array`` itself when the reference already has the science
        window).

    Raises
    ------
    ReferenceFileError
        As :func:`window_slices`, and when ``array`` is None or empty.
    """
    if array is None or np.ndim(array) < 2 or np.size(array) == 0:
        raise ReferenceFileError(f"{step}: reference file {path!r} has no {name} array")
    ys, xs = window_slices(np.shape(array), model, info, path, step, name)
    if ys == slice(None) and xs == slice(None):
        return array
    return array[..., ys, xs]


class SectionArray:
    """A window of a FITS image extension whose values are read from the file on indexing.

    ``arr[key]`` reads only the requested part through astropy's ``ImageHDU.section`` (file
    reads of the frames and window rows asked for, BZERO/BSCALE applied; the file is not
    memory-mapped, so nothing read stays resident once the caller drops it). The window's
    last two axes are the science subarray's (ny, nx); ``key`` indexes the leading axes
    only (integers or slices; ``arr[()]`` reads the whole window). With
    ``leading_axis=True`` a length-1 axis is put in front (a 3-D NIRCam dark read as the
    4-D (1, ngroups, ny, nx) of a one-integration MIRI dark).

    Parameters
    ----------
    hdu : astropy.io.fits.ImageHDU
        The extension, from a file opened with ``memmap=False``.
    rows, cols : slice
        The science window within the extension (:func:`window_slices`).
    leading_axis : bool
        Prepend a length-1 axis.
    """

    def __init__(self, hdu, rows: slice, cols: slice, leading_axis: bool = False) -> None:
        self._section = hdu.section
        self._rows, self._cols = rows, cols
        self._lead = leading_axis
        full = tuple(hdu.shape)
        ny = len(range(*rows.indices(full[-2])))
        nx = len(range(*cols.indices(full[-1])))
        self.shape = ((1,) if leading_axis else ()) + full[:-2] + (ny, nx)
        self.ndim = len(self.shape)
        self.dtype = self._section.dtype

    def __getitem__(self, key) -> np.ndarray:
        """Read ``self[key]`` from the file; ``key`` indexes the leading (non-image) axes."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis or k is None for k in key) or len(key) > self.ndim - 2:
            raise IndexError("SectionArray takes integers or slices of its leading axes only")
        key = key + (slice(None),) * (self.ndim - 2 - len(key))
        lead = None
        if self._lead:
            first, key = key[0], key[1:]
            if isinstance(first, slice):
                lead = len(range(*first.indices(1)))
            elif first not in (0, -1):
                raise IndexError(f"index {first} out of range for axis 0 of size 1")
        # whole rows: one contiguous read per frame; the columns are cut in memory
        out = np.asarray(self._section[key + (self._rows, slice(None))])[..., self._cols]
        return out if lead is None else out[None][:lead]


class ReferenceSections:
    """A reference file whose header is read at once and whose arrays are read by sections.

    For the large references (the dark: hundreds of full-frame frames, several GB) of which
    a step needs a fraction: the primary header is mapped to the reftype's stdatamodels
    class (``model``: the same ``meta`` as opening the whole file, no arrays), and
    :meth:`array` returns a :class:`SectionArray` over an image extension cut to the
    science window, read on indexing. A context manager; :meth:`close` closes the file.

    Parameters
    ----------
    path : str
        Local path of the reference file.
    reftype, step, instrument : str
        As for :func:`open_reference` (MIRI darks map to DarkMIRIModel).
    info : ExposureInfo
        The science exposure (its window).

    Raises
    ------
    ReferenceFileError
        Naming the file and the step when it cannot be opened as FITS or its header is not
        a valid ``reftype`` header.
    """

    def __init__(self, path: str, reftype: str, step: str, info: ExposureInfo) -> None:
        from astropy.io import fits

        self.path, self.reftype, self.step, self.info = os.fspath(path), reftype, step, info
        cls = REFERENCE_MODELS[reftype]
        if reftype == "dark" and info.instrument.upper() == "MIRI":
            cls = datamodels.DarkMIRIModel
        self._hdul = None
        try:
            self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=True)
            header = self._hdul[0].header
            self.model = cls(fits.HDUList([fits.PrimaryHDU(header=header)]))
        except Exception as exc:  # noqa: BLE001 - any failure to read is a bad reference
            self.close()
            raise ReferenceFileError(
                f"{step}: cannot open {reftype} reference file {self.path!r}: {exc}"
            ) from exc

    def has(self, extname: str) -> bool:
        """Return whether the file has a non-empty image extension ``extname``."""
        try:
            hdu = self._hdul[extname]
        except KeyError:
            return False
        return hdu.is_image and hdu.header.get("NAXIS", 0) > 0

    def shape(self, extname: str) -> tuple[int, ...]:
        """Return the shape of image extension ``extname`` (numpy order), () when absent."""
        return tuple(self._hdul[extname].shape) if self.has(extname) else ()

    def array(self, extname: str, name: str, *, leading_axis: bool = False) -> SectionArray:
        """Return extension ``extname`` cut to the science window, read on indexing.

        Parameters
        ----------
        extname : str
            FITS extension name (``SCI``, ``DQ``).
        name : str
            The array's name in error messages (``DATA``).
        leading_axis : bool
            Prepend a length-1 axis (see :class:`SectionArray`).

        Raises
        ------
        ReferenceFileError
            If the extension is missing or does not cover the science window.
        """
        if not self.has(extname):
            raise ReferenceFileError(f"{self.step}: reference file {self.path!r} has no {name} array")
        hdu = self._hdul[extname]
        rows, cols = window_slices(tuple(hdu.shape), self.model, self.info, self.path, self.step, name)
        return SectionArray(hdu, rows, cols, leading_axis=leading_axis)

    def standard_dq(self, dq: np.ndarray) -> np.ndarray:
        """Return a DQ array read from the file with the standard JWST flag values.

        A reference's DQ_DEF table may define its own bit values (the real NIRSpec darks:
        HOT = 4, WARM = 2); stdatamodels maps them to the standard flags when it opens such
        a model (``DefaultDQMixin``: ``stdatamodels.dynamicdq.dynamic_mask`` with the JWST
        pixel flags), and so does this, with the same function, on the part read.

        Parameters
        ----------
        dq : numpy.ndarray
            DQ values as stored in the file, any shape.

        Returns
        -------
        numpy.ndarray
            uint32, the same shape, standard JWST pixel flags.
        """
        from stdatamodels.dynamicdq import dynamic_mask
        from stdatamodels.jwst.datamodels.dqflags import pixel
        from stdatamodels.jwst.datamodels.model_base import DefaultDQMixin

        dq = np.asarray(dq, dtype=np.uint32)
        if not isinstance(self.model, DefaultDQMixin) or "DQ_DEF" not in self._hdul:
            return dq
        holder = types.SimpleNamespace(dq=dq, dq_def=self._hdul["DQ_DEF"].data)
        return dynamic_mask(holder, pixel)

    def close(self) -> None:
        """Close the file and the header model."""
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None
        model = getattr(self, "model", None)
        if model is not None:
            model.close()

    def __enter__(self) -> "ReferenceSections":
        """Return self."""
        return self

    def __exit__(self, *exc) -> None:
        """Close the file."""
        self.close()


def ref_array(model, attr: str, info: ExposureInfo, path: str, step: str, *,
              dtype=None, allow_nan: bool = True) -> np.ndarray:
    """Return ``model.<attr>`` cut to the science subarray, as a contiguous copy.

    With ``allow_nan=False`` a NaN anywhere in the extracted array raises
    ``ReferenceFileError``.
    """
    try:
        arr = getattr(model, attr)
    except Exception as exc:  # noqa: BLE001
        raise ReferenceFileError(f"{step}: reference file {path!r} lacks {attr.upper()}") from exc
    if arr is None:
        raise ReferenceFileError(f"{step}: reference file {path!r} lacks {attr.upper()}")
    arr = np.asarray(arr)
    out = subarray_of(arr, model, info, path, step, attr.upper())
    out = np.ascontiguousarray(out, dtype=dtype if dtype is not None else out.dtype).copy()
    if not allow_nan and np.issubdtype(out.dtype, np.floating) and np.isnan(out).any():
        raise ReferenceFileError(f"{step}: reference file {path!r} has NaN in {attr.upper()}")
    return out


class _SparseArray:
    """A read-only integer or boolean array kept as its non-zero elements.

    See ``ReferenceCache._pack``; ``unpack`` rebuilds an equal read-only array.
    """

    __slots__ = ("shape", "dtype", "index", "values")
    #: packed only when at most this fraction of the elements is non-zero
    MAX_FRACTION = 1 / 16

    def __init__(self, shape, dtype, index, values):
        self.shape, self.dtype, self.index, self.values = shape, dtype, index, values

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self.values.nbytes

    @classmethod
    def pack(cls, a):
        if (not isinstance(a, np.ndarray) or a.dtype.kind not in "uib" or a.size < 4096
                or not a.flags.c_contiguous):
            return a
        flat = a.reshape(-1)
        nz = np.flatnonzero(flat)
        if nz.size > a.size * cls.MAX_FRACTION:
            return a
        index = nz.astype(np.uint32 if a.size < 2**32 else np.int64)
        values = flat[nz]
        index.setflags(write=False)
        values.setflags(write=False)
        return cls(a.shape, a.dtype, index, values)

    @staticmethod
    def unpack(v):
        if not isinstance(v, _SparseArray):
            return v
        out = np.zeros(v.shape, v.dtype)
        out.reshape(-1)[v.index] = v.values
        out.setflags(write=False)
        return out


class ReferenceCache:
    """A bounded, thread-safe cache of prepared reference arrays for long-lived workers.

    Keys are built by the caller and must identify the content: they start with the
    reference file's path, modification time (ns) and size (see :func:`file_key`), so an
    edited or replaced file is read again. Values are numpy arrays (or tuples/scalars) made
    read-only before they are stored, so no step can modify a cached array in place.
    Least recently used entries are evicted once the stored arrays exceed ``max_bytes``;
    ``max_bytes=0`` disables caching. Mostly-zero integer and boolean arrays (DQ, flags)
    are stored as their non-zero elements and rebuilt on each hit (a fresh read-only
    array, equal to the one computed; a few ms for a full-frame DQ array). The default
    instance, :data:`REFERENCE_CACHE`, is sized by the environment variable ``CALIB_REFCACHE_MB`` (default 1024 MB).
    """

    def __init__(self, max_bytes: int):
        from collections import OrderedDict
        import threading

        self.max_bytes = int(max_bytes)
        self._data: "OrderedDict[tuple, tuple[object, int]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _freeze(value):
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
            return value, value.nbytes
        if isinstance(value, tuple):
            total = 0
            for v in value:
                if isinstance(v, np.ndarray):
                    v.setflags(write=False)
                    total += v.nbytes
            return value, total
        return value, 64

    @staticmethod
    def _pack(value):
        """Return the form a value is stored in.

        Mostly-zero integer/boolean arrays (DQ arrays, flags: typically < 2 % non-zero) are
        kept as their non-zero elements, a fifth of the cache's bytes for a NIRCam detector
        otherwise; everything else as it is.
        """
        if isinstance(value, tuple):
            return tuple(_SparseArray.pack(v) for v in value)
        return _SparseArray.pack(value)

    @staticmethod
    def _unpack(stored):
        if isinstance(stored, tuple):
            return tuple(_SparseArray.unpack(v) for v in stored)
        return _SparseArray.unpack(stored)

    @staticmethod
    def _stored_bytes(stored) -> int:
        items = stored if isinstance(stored, tuple) else (stored,)
        total = 0
        for v in items:
            if isinstance(v, _SparseArray):
                total += v.nbytes
            elif isinstance(v, np.ndarray):
                total += v.nbytes
        return total if total else 64

    def get(self, key: tuple, compute):
        """Return the cached value of ``key``, computing (and storing) it on a miss."""
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if hit is not None:
            return self._unpack(hit[0])
        value, size = self._freeze(compute())
        if self.max_bytes <= 0 or size > self.max_bytes:
            return value
        stored = self._pack(value)
        size = self._stored_bytes(stored)
        with self._lock:
            if key not in self._data:
                self._data[key] = (stored, size)
                self._bytes += size
            while self._bytes > self.max_bytes and self._data:
                _, (_, s) = self._data.popitem(last=False)
                self._bytes -= s
        return value

    def clear(self) -> None:
        """Drop every cached value."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the values held (as stored: sparse arrays count their elements)."""
        return self._bytes


def file_key(path: str) -> tuple | None:
    """(path, mtime_ns, size) of a reference file, or None when it cannot be stat-ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


#: process-wide cache of prepared reference arrays (see :class:`ReferenceCache`)
REFERENCE_CACHE = ReferenceCache(int(float(os.environ.get("CALIB_REFCACHE_MB", "1024")) * 2**20))


def _return_freed_arrays_to_os(threshold_kb: int) -> bool:
    """Make glibc serve allocations of >= ``threshold_kb`` KiB from their own memory maps.

    Such allocations (numpy arrays) go back to the system when freed. By default glibc raises this
    threshold (up to 32 MiB) after the first large free, after which the full-frame arrays
    a calibration allocates and frees (16 MiB each) stay in the heap: a worker's resident
    memory then keeps ~150 MB it does not use and its peak grows by as much. Set by
    ``CALIB_MMAP_THRESHOLD_KB`` (default 1024; 0 leaves glibc's policy). Returns whether
    the setting was applied (False off glibc).
    """
    if threshold_kb <= 0:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold = -3          # glibc's M_MMAP_THRESHOLD
        return bool(libc.mallopt(m_mmap_threshold, int(threshold_kb) * 1024))
    except (OSError, AttributeError):
        return False


_return_freed_arrays_to_os(int(float(os.environ.get("CALIB_MMAP_THRESHOLD_KB", "1024"))))
