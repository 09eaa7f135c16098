"""Writing a pipeline's products (``<root>_<suffix>.fits``) with their provenance keywords.

Every product is written atomically: to a temporary name in the target directory, fsynced,
then ``os.link``-ed to its final name (which fails if the name exists, so an existing
product is never overwritten, even by a concurrent writer) and the temporary removed. On
any error no partial file remains. The disk writes each HDU while the next is serialized
(:class:`_WritebackFile`), so the fsync waits for the last ones only. Native 4-byte image
arrays reach the file through a reused 4 MB buffer in FITS's byte order
(:func:`_write_swapped`, the rate reader's byte-reversal kernel), not through astropy's
full-size swapped copies. Provenance is
stamped through the datamodel: CAL_VER, CRDS_CTX, CRDS_VER, R_<REFTYPE> = "crds://<name>"
(a file the user gave in place of CRDS's choice, ``override_<reftype>``, is recorded by its
plain base name, never as ``crds://``) and FILENAME; the S_<STEP> keywords were set once by
the runner (:mod:`calib.runner`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import pathlib
import sys
import tempfile
import threading

import numba
import numpy as np

from calib.background import BackgroundWrite
from calib.images import _from_big_endian_serial
from calib.runner import KERNEL_LOCK, PipelineResult, unstamped_reftypes

__all__ = ["save_products", "run_and_save", "write_atomic", "write_table_atomic", "product_name"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_file_range():
    """Return libc's ``sync_file_range`` (Linux), or None where there is none."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


class _WritebackFile(io.BufferedWriter):
    """A binary file whose every flush also starts the kernel writing its dirty pages to disk.

    astropy flushes the file after each HDU's data, so the disk writes the product's first
    arrays while the later ones are serialized, and the ``fsync`` before the product is
    linked to its name waits only for the rest (for a 118 MB ``_i2d``, ~0.02 s instead of
    ~0.05 s). ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` only starts the writeback: it
    promises nothing, and the ``fsync`` is still what makes the file durable. Without
    ``sync_file_range`` (not Linux) a plain buffered file.
    """

    def flush(self):
        super().flush()
        if _SYNC_FILE_RANGE is not None:
            _SYNC_FILE_RANGE(self.fileno(), 0, 0, _SYNC_FILE_RANGE_WRITE)   # a failure only loses the overlap


#: native 4-byte elements per chunk of :func:`_write_swapped` (a 4 MB buffer)
_CHUNK = 1 << 20
_BUFFERS: list[np.ndarray] = []          # chunk buffers not in use, reused (no fresh pages per array)
_BUFFERS_LOCK = threading.Lock()
_SWAPPED_WRITES = threading.local()      # .on: this thread is inside write_atomic's to_fits


def _swappable(data) -> bool:
    """Whether :func:`_write_swapped` takes ``data``.

    A native little-endian float32, int32 or uint32 C-contiguous ndarray (not a table, not a
    dask array), whose bytes it writes as astropy would.
    """
    return (sys.byteorder == "little" and type(data) is np.ndarray and data.dtype.itemsize == 4
            and data.dtype.kind in "fiu" and data.dtype.byteorder in "=<" and data.size > 0
            and data.flags.c_contiguous)


def _write_swapped(data: np.ndarray, fileobj) -> int:
    """Write a native float32/int32/uint32 array in FITS's byte order, a 4 MB chunk at a time.

    The bytes astropy's ``_ImageBaseHDU._writedata_internal`` writes for such an array: the
    big-endian values; for uint32 (a FITS pseudo-unsigned integer, BZERO = 2**31) the
    big-endian int32 ``value - 2**31``, i.e. the top bit flipped. astropy makes a swapped
    copy of a read-only array (the ``_cal``'s, shared with resample) and two temporary
    arrays for a uint32 one; for a full frame each is 16 MB of fresh pages (page faults: on
    a VM ~0.08 s of the ``_cal``'s write, on resample's critical path), where these chunks
    reuse one buffer.

    Returns
    -------
    int
        The number of bytes written (``data.nbytes``), as astropy's method returns.
    """
    # the rate reader's kernel: reversing a word's bytes is its own inverse; the flip applies to
    # the reversed word, whose last byte holds the native value's top bit
    flip = np.uint32(0x80 if data.dtype.kind == "u" else 0)
    src = data.reshape(-1).view(np.uint32)
    with _BUFFERS_LOCK:
        buf = _BUFFERS.pop() if _BUFFERS else None
    if buf is None:
        buf = np.empty(_CHUNK, np.uint32)
    try:
        for i0 in range(0, src.size, buf.size):
            n = min(buf.size, src.size - i0)
            _from_big_endian_serial(src[i0:i0 + n], flip, buf[:n])
            fileobj.writearray(buf[:n])
    finally:
        with _BUFFERS_LOCK:
            _BUFFERS.append(buf)
    return data.nbytes


def _install_swapped_writes() -> bool:
    """Route astropy's image-HDU data writes through :func:`_write_swapped` while write_atomic writes.

    astropy has no public hook for how an HDU's array reaches the file, so its
    ``_ImageBaseHDU._writedata_internal`` is wrapped (once): in a thread inside
    :func:`write_atomic`, for a plain ImageHDU or PrimaryHDU (the HDUs stdatamodels makes)
    whose array :func:`_swappable` accepts, the chunked write; otherwise astropy's own
    method. Returns False (nothing changed) for an astropy without that method.
    tests/test_calib_products.py checks that the files are the same bytes.
    """
    try:
        from astropy.io.fits.hdu.image import _ImageBaseHDU
    except ImportError:
        return False
    with _BUFFERS_LOCK:
        original = getattr(_ImageBaseHDU, "_writedata_internal", None)
        if original is None:
            return False
        if not getattr(original, "_calib_swapped", False):
            _ImageBaseHDU._writedata_internal = _swapped_writer(original)
    return True


def _swapped_writer(original):
    """Wrap astropy's ``_writedata_internal`` (see :func:`_install_swapped_writes`)."""
    from astropy.io.fits import ImageHDU, PrimaryHDU

    plain = (ImageHDU, PrimaryHDU)      # a subclass (CompImageHDU, GroupsHDU) writes its own way

    def _writedata_internal(self, fileobj):
        if getattr(_SWAPPED_WRITES, "on", False) and type(self) in plain:
            data = self.data
            if _swappable(data):
                return _write_swapped(data, fileobj)
        return original(self, fileobj)

    _writedata_internal._calib_swapped = True
    _writedata_internal.__wrapped__ = original
    return _writedata_internal


def _stamp(model, provenance: dict, filename: str, unstamped: frozenset[str] = frozenset()) -> None:
    meta = model.meta
    meta.filename = filename
    if provenance.get("cal_version") is not None:
        meta.calibration_software_version = str(provenance["cal_version"])
    if provenance.get("crds_context") is not None:
        meta.ref_file.crds.context_used = str(provenance["crds_context"])
    if provenance.get("crds_version") is not None:
        meta.ref_file.crds.sw_version = str(provenance["crds_version"])
    overridden = set(provenance.get("overrides") or ())
    for reftype, name in (provenance.get("references") or {}).items():
        if name is None or reftype in unstamped:
            continue
        name = str(name)
        if name.upper() == "N/A":
            value = "N/A"
        elif reftype in overridden:
            value = os.path.basename(name)
        else:
            base = name[len("crds://"):] if name.startswith("crds://") else os.path.basename(name)
            value = f"crds://{base}"
        try:
            getattr(meta.ref_file, reftype).name = value
        except AttributeError as exc:
            raise ValueError(f"unknown reference type {reftype!r} in provenance") from exc


@numba.njit(cache=True, nogil=True, parallel=True)
def _swap32(a):
    """Reverse the byte order of every 4-byte word of ``a`` (uint32 (n,)) in place."""
    for i in numba.prange(a.size):
        x = a[i]
        a[i] = ((x >> 24) & 0xFF) | ((x >> 8) & 0xFF00) | ((x << 8) & 0xFF0000) | ((x << 24) & 0xFF000000)


def _to_big_endian(model, others=()) -> None:
    """Store the model's native float32/int32 arrays big-endian, in place: the same values, FITS's byte order.

    Each top-level array that is little-endian float32 or int32, C-contiguous, writeable
    and shares no memory with another of the model's arrays nor with ``others`` (arrays of
    the other products written) is byte-swapped in its own buffer (numba, parallel) and
    replaced in the model by a big-endian view of it, as a model read from a FITS file holds
    its arrays; astropy then writes it as it is, where it would swap it in place, write it
    and swap it back. Other arrays are left to astropy. Other views of a swapped buffer
    (outside the model) read swapped bytes afterwards.
    """
    if sys.byteorder != "little":
        return
    trees = [model.instance]
    tree = getattr(getattr(model, "_asdf", None), "tree", None)
    if isinstance(tree, dict) and tree is not model.instance:
        trees.append(tree)
    arrays = {k: v for k, v in model.instance.items() if type(v) is np.ndarray}
    others = [*arrays.values(), *others]
    for name, a in arrays.items():
        if (a.dtype.kind not in "fi" or a.dtype.itemsize != 4 or a.dtype.byteorder not in "=<" or a.size == 0
                or not (a.flags.c_contiguous and a.flags.writeable)
                or any(b is not a and np.may_share_memory(a, b) for b in others)):
            continue
        with KERNEL_LOCK:          # numba's workqueue layer: one Python thread at a time
            _swap32(a.reshape(-1).view(np.uint32))
        big = a.view(a.dtype.newbyteorder(">"))
        for t in trees:
            if t.get(name) is a:
                t[name] = big


def write_atomic(model, final: pathlib.Path, *, consume: bool = False, others=(), serialized=None) -> None:
    """Write a datamodel to ``final`` atomically, never replacing an existing file.

    Parameters
    ----------
    model : stdatamodels.DataModel
        The product.
    final : pathlib.Path
        Its file name (in an existing directory).
    consume : bool
        The caller does not use the model's arrays' buffers other than through the model
        after this: its float32/int32 arrays are stored big-endian in their own buffers
        first (:func:`_to_big_endian`; the model's values unchanged, its arrays then
        big-endian as if read from the file), sparing astropy's swap and swap back.
    others : sequence of numpy.ndarray
        With ``consume``: arrays still to be written or used (other products'); an array of
        the model sharing memory with one of them is left as it is.
    serialized : callable, optional
        Called with no argument once the model's bytes are in the file, before the fsync;
        from then on this function holds no reference to the model (the caller may free
        it while the disk is waited for).

    Raises
    ------
    FileExistsError
        If ``final`` exists (checked before writing and at the link).
    OSError
        For a write failure; the temporary file is removed.
    """
    if final.exists():
        raise FileExistsError(f"refusing to overwrite existing product {final}")
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp.fits", dir=final.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a product follows the process umask
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        # through a file object, so the datamodel keeps meta.filename = the final name
        if consume:
            _to_big_endian(model, others)
        swapped = _install_swapped_writes()
        with _WritebackFile(io.FileIO(tmp_path, "wb")) as fh:
            _SWAPPED_WRITES.on = swapped
            try:
                model.to_fits(fh)
            finally:
                _SWAPPED_WRITES.on = False
            fh.flush()
            del model
            if serialized is not None:
                serialized()
            os.fsync(fh.fileno())
        try:
            os.link(tmp_path, final)   # atomic, and never replaces an existing file
        except FileExistsError:
            raise FileExistsError(f"refusing to overwrite existing product {final}") from None
        except OSError:
            # filesystems without hard links: fall back to replace after a last check
            if final.exists():
                raise FileExistsError(f"refusing to overwrite existing product {final}") from None
            os.replace(tmp_path, final)
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def product_name(root: str, suffix: str) -> str:
    """Return a product's file name (jwst's names).

    ``<root>_<suffix>.fits``; ``crf:<name>`` -> ``<name>_crf.fits``; ``cat`` -> ``<root>_cat.ecsv``.
    """
    kind, _, name = suffix.partition(":")
    if name:
        return f"{name}_{kind}.fits"
    if suffix == "cat":
        return f"{root}_cat.ecsv"
    return f"{root}_{suffix}.fits"


def write_table_atomic(table, final: pathlib.Path) -> None:
    """Write an astropy table as ECSV to ``final`` atomically, never replacing an existing file.

    Raises
    ------
    FileExistsError
        If ``final`` exists.
    """
    if final.exists():
        raise FileExistsError(f"refusing to overwrite existing product {final}")
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp.ecsv", dir=final.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        table.write(tmp_path, format="ascii.ecsv", overwrite=True)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp_path, final)
        except FileExistsError:
            raise FileExistsError(f"refusing to overwrite existing product {final}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _spec(pipeline: str):
    """Return the registered pipeline a result came from (None for a result made outside the registry)."""
    from calib.pipelines import UnknownPipelineError, get_pipeline  # the pipeline modules import this one

    try:
        return get_pipeline(pipeline) if pipeline else None
    except UnknownPipelineError:
        return None


def save_products(result: PipelineResult, output_dir, root: str, provenance: dict,
                  consume: bool = False) -> dict[str, pathlib.Path]:
    """Write every product of a run as ``<root>_<suffix>.fits``.

    Stage-3 products are named as jwst names them: ``crf:<member root>_<asn_id>`` as
    ``<member root>_<asn_id>_crf.fits`` (one per member), ``cat`` (an astropy table) as
    ``<root>_cat.ecsv``.

    Parameters
    ----------
    result : PipelineResult
        From :func:`calib.pipelines.run_pipeline`.
    output_dir : path
        Created if missing.
    root : str
        The products' root name (``jw01075001001_03105_00009_nrca2``).
    provenance : dict
        ``{"crds_context": "jwst_xxxx.pmap", "crds_version": "14.0.3", "cal_version":
        calib.__version__, "references": {reftype: "name.fits"}, "overrides": {reftype, ...}}``
        (overrides optional: references not chosen by CRDS).
    consume : bool
        The products are not used after this (as :func:`run_and_save` returns them): their
        float32/int32 arrays are written from big-endian copies of themselves made in their
        own buffers (``write_atomic(consume=True)``: same values, the arrays then
        big-endian), except those sharing memory with another product's.

    Returns
    -------
    dict
        ``{suffix: path}`` of the files written, in the order of the pipeline's products
        (with those :func:`run_and_save` wrote during the run, ``result.written``).

    Raises
    ------
    FileExistsError
        Before writing anything, if a target exists; no partial file remains on any error.
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = {suffix: (model, out / product_name(root, suffix)) for suffix, model in result.products.items()}
    for _, path in targets.values():
        if path.exists():
            raise FileExistsError(f"refusing to overwrite existing product {path}")
    spec = _spec(result.pipeline)
    written: dict[str, pathlib.Path] = {}
    arrays = {suffix: [v for v in model.instance.values() if type(v) is np.ndarray] if consume and
              not isinstance(model.meta, dict) else [] for suffix, (model, _) in targets.items()}
    try:
        for suffix, (model, path) in targets.items():
            others = [a for k, v in arrays.items() if k != suffix for a in v]
            _write_product(model, path, provenance, unstamped_reftypes(spec, suffix) if spec else frozenset(),
                           consume=consume, others=others)
            written[suffix] = path
    except BaseException:
        for p in written.values():
            p.unlink(missing_ok=True)
        raise
    return {**{k: pathlib.Path(v) for k, v in (result.written or {}).items()}, **written}


def _write_product(model, path: pathlib.Path, provenance: dict, unstamped: frozenset[str] = frozenset(),
                   consume: bool = False, others=()) -> None:
    if isinstance(model.meta, dict):           # a table: the catalog
        model.meta["filename"] = path.name
        write_table_atomic(model, path)
    else:
        _stamp(model, provenance, path.name, unstamped)
        write_atomic(model, path, consume=consume, others=others)


def run_and_save(pipeline: str, input_path, references, params, output_dir, root: str,
                 provenance: dict) -> tuple[PipelineResult, dict[str, pathlib.Path]]:
    """Run a registered pipeline and write its products, each as soon as it is final.

    What :func:`calib.pipelines.run_pipeline` then :func:`save_products` do, except that a
    product declared ``write_early`` (image2's ``_cal``, as jwst's Image2Pipeline saves it
    before resample) is written, with the same name, keywords and atomicity, while the
    steps that follow it run (in a thread, from a copy of its metadata sharing its arrays
    read-only; joined before this returns), and its arrays are released for them: the
    run's peak memory does not hold it beside the later products.

    Parameters
    ----------
    pipeline : str
        A registered pipeline name or alias.
    input_path, references, params
        As for :func:`calib.pipelines.run_pipeline`.
    output_dir, root, provenance
        As for :func:`save_products`.

    Returns
    -------
    result : PipelineResult
        The run (``written``: the products written during it; ``products``: the others,
        written with ``save_products(consume=True)``: their float32/int32 arrays are
        big-endian afterwards, the values unchanged).
    files : dict
        ``{suffix: path}`` of every file written.

    Raises
    ------
    FileExistsError
        Before running, if a target of one of the pipeline's products exists.
    calib.params.ParamError, calib.errors.InputError, calib.errors.ReferenceFileError
        As :func:`calib.pipelines.run_pipeline`; no product file remains on any error.
    """
    from calib.pipelines import get_pipeline
    from calib.runner import run

    spec = get_pipeline(pipeline)
    out = pathlib.Path(output_dir)
    for p in spec.products:
        if ":" not in p.suffix and (out / product_name(root, p.suffix)).exists():
            raise FileExistsError(f"refusing to overwrite existing product {out / product_name(root, p.suffix)}")
    early: dict[str, pathlib.Path] = {}
    writers: list[BackgroundWrite] = []

    def write(suffix: str, model) -> pathlib.Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / product_name(root, suffix)
        unstamped = unstamped_reftypes(spec, suffix)
        if isinstance(model.meta, dict):
            _write_product(model, path, provenance, unstamped)
        else:
            _stamp(model, provenance, path.name, unstamped)
            writers.append(BackgroundWrite(write_atomic, _snapshot(model), path))
        early[suffix] = path
        return path

    try:
        result = run(spec, input_path, references, params, write=write)
        for w in writers:
            w.wait()
        # the products are returned but not used after this: written from big-endian arrays
        files = save_products(result, out, root, provenance, consume=True)
    except BaseException:
        for w in writers:
            w.wait(raise_error=False)
        for p in early.values():
            p.unlink(missing_ok=True)
        raise
    finally:
        for w in writers:
            w.forget()
    return result, files


def _snapshot(model):
    """Copy a datamodel for writing while the original is used on: its own metadata, the same arrays.

    The copy's arrays are read-only views of the model's (astropy then byteswaps a copy of
    each when writing instead of swapping the shared buffer in place and back) and its
    tables (FITS_rec, e.g. HDRTAB) copies; the gwcs (only read) and the schema (with any
    extension, e.g. jwst's ``hdrtab``) are shared. The model may then be changed (keys set,
    arrays dropped) but its arrays' values must not be until the write is done.
    """
    import numpy as np

    memo = {}
    for value in model.instance.values():
        if type(value) is np.ndarray:       # a table (FITS_rec: astropy encodes it in place) is copied
            view = value.view()
            view.flags.writeable = False
            memo[id(value)] = view
    wcs = getattr(model.meta, "wcs", None)
    if wcs is not None:
        memo[id(wcs)] = wcs
    snapshot = model.copy(memo=memo)
    # DataModel.copy starts from the class's schema: keep the model's own, which may have
    # been extended (the blended header table of an image3 _i2d, HDRTAB)
    snapshot._schema = model._schema
    return snapshot
