"""Stage-2 imaging input: a count-rate image (``_rate``) or a Level-2 association, as one state.

jwst's Image2Pipeline takes a ``_rate`` file (an ImageModel: SCI, ERR, DQ, VAR_POISSON,
VAR_RNOISE) or a Level-2 association whose product names one science member and, for
background subtraction, background members (jwst documentation "calwebb_image2",
"Level 2 associations"). :func:`open_image` opens either as an :class:`ImageState`: the
opened ImageModel itself is the state the steps work on (its arrays and metadata are
modified in place, as jwst's steps modify theirs), so the ``_cal`` product is that model.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import asdf
import asdf.schema
import numba
import numpy as np
from astropy.io import fits
from stdatamodels.jwst import datamodels

from calib.errors import InputError
from calib.ramps import INSTRUMENTS
from calib.references import ExposureInfo
from calib.runner import KERNEL_LOCK
from calib.step import ExposureKeys

__all__ = ["ImageState", "open_image", "Image3State", "open_image3", "image_info", "IMAGE_EXP_TYPES", "read_level2_asn"]

def _share_parsed_schemas() -> bool:
    """Parse each ASDF schema resource once per process, not once per ``$ref`` per validation.

    asdf 5.x resolves a schema ``$ref`` whose URI is in its resource manager (every
    stdatamodels and gwcs schema) by parsing the resource's YAML again each time:
    ~30 parses per validation, several validations per product read or written (~0.1 CPU s
    per calwebb_image2 run). Schemas found by file URL it already parses once and shares
    (``asdf.schema._load_schema``, an ``lru_cache``); this gives resource-manager schemas
    the same treatment, keyed by URI and the resource's content, so a different resource
    under the same URI is parsed anew (the content read once per resource mapping that
    provides the URI: a mapping's files are not expected to change while it is in use).
    The parsed schemas are only read by the validators.
    Does nothing (returns False) when asdf's loader is not the one this was written for.

    Returns
    -------
    bool
        True when the shared loader is (now) installed.
    """
    make = getattr(asdf.schema, "_make_schema_loader", None)
    if make is None or not callable(make):
        return False
    if getattr(make, "_calib_shared", False):
        return True
    parsed: dict = {}
    contents: dict = {}

    def content(manager, url):
        # the resource's bytes, read once per mapping that provides the URI (each read is
        # file I/O, which in the _cal's writer thread waits for the GIL at every syscall)
        owner = getattr(manager, "_mappings_by_uri", {}).get(url)
        if owner is None:
            return manager[url]
        hit = contents.get((url, id(owner)))
        if hit is None or hit[0] is not owner:
            hit = contents[(url, id(owner))] = (owner, manager[url])   # owner kept: its id is not reused
        return hit[1]

    def make_shared_loader():
        load = make()

        def load_schema(url):
            manager = asdf.get_config().resource_manager
            if url not in manager:
                return load(url)
            key = (url, content(manager, url))
            hit = parsed.get(key)
            if hit is None:
                hit = parsed[key] = load(url)
            return hit

        return load_schema

    make_shared_loader._calib_shared = True
    asdf.schema._make_schema_loader = make_shared_loader
    return True


_share_parsed_schemas()

#: EXP_TYPEs jwst's Image2Pipeline resamples (``Image2Pipeline.image_exptypes``, jwst 3.0)
IMAGE_EXP_TYPES = ("MIR_IMAGE", "NRC_IMAGE", "NIS_IMAGE", "FGS_IMAGE")


@dataclass
class ImageState:
    """One exposure's count-rate image while calwebb_image2's steps run on it.

    Attributes
    ----------
    path : str
        The science input (the ``_rate`` file).
    model : stdatamodels.jwst.datamodels.ImageModel
        The opened input; steps modify its arrays in place: SCI/ERR float32 (ny, nx) DN/s
        (MJy/sr after photom), DQ uint32 (ny, nx), VAR_POISSON/VAR_RNOISE/VAR_FLAT float32
        (ny, nx) (DN/s)**2 ((MJy/sr)**2 after photom), AREA float32 (ny, nx) (photom), and
        ``meta.wcs`` (assign_wcs).
    keys : ExposureKeys
    info : ExposureInfo
        The subarray window (SUBSTRT/SUBSIZE) references are cut to.
    background : list of str
        Paths of the association's background members (empty for a plain ``_rate``).
    asn : dict or None
        ``{"asn_pool", "asn_table", "product"}`` of the association, when the input is one.
    i2d : stdatamodels.jwst.datamodels.ImageModel or None
        Set by resample: the drizzled image.
    cal_written : bool
        Set once the ``_cal`` is written (before resample): resample may then consume
        ``model`` (its ERR and AREA are dropped).
    """

    path: str
    model: Any
    keys: ExposureKeys
    info: ExposureInfo
    background: list[str] = field(default_factory=list)
    asn: dict | None = None
    i2d: Any = None
    cal_written: bool = False


def image_info(model, path: str) -> ExposureInfo:
    """Read and check the header values the stage-2 steps need.

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        The opened rate image (SCI 2-D).
    path : str
        Its file name, for messages.

    Returns
    -------
    ExposureInfo

    Raises
    ------
    InputError
        If SCI is not 2-D, INSTRUME is missing or unknown, or SUBSIZE disagrees with SCI.
    """
    data = model.data
    if data is None or np.ndim(data) != 2 or np.size(data) == 0:
        raise InputError(f"{path}: SCI must be a 2-D count-rate image (ny, nx), got shape "
                         f"{None if data is None else np.shape(data)}")
    ny, nx = data.shape
    meta = model.meta
    inst = str(meta.instrument.name or "").upper()
    if not inst:
        raise InputError(f"{path}: missing INSTRUME")
    if inst not in INSTRUMENTS:
        raise InputError(f"{path}: unsupported instrument {inst!r}")
    sub, ex = meta.subarray, meta.exposure
    xstart = int(sub.xstart) if sub.xstart is not None else 1
    ystart = int(sub.ystart) if sub.ystart is not None else 1
    xsize = int(sub.xsize) if sub.xsize is not None else nx
    ysize = int(sub.ysize) if sub.ysize is not None else ny
    if (ysize, xsize) != (ny, nx):
        raise InputError(f"{path}: SUBSIZE1/2 = {xsize},{ysize} disagree with SCI shape {(ny, nx)}")

    def num(v, default, kind=int):
        return default if v is None else kind(v)

    return ExposureInfo(
        path=path, instrument=inst, detector=str(meta.instrument.detector or ""),
        exp_type=str(ex.type or ""), nints=num(ex.nints, 1), ngroups=num(ex.ngroups, 1),
        nframes=num(ex.nframes, 1), groupgap=num(ex.groupgap, 0), frame_divisor=None,
        group_time=num(ex.group_time, 0.0, float), frame_time=num(ex.frame_time, 0.0, float),
        xstart=xstart, ystart=ystart, xsize=xsize, ysize=ysize,
        fastaxis=num(sub.fastaxis, 1), slowaxis=num(sub.slowaxis, 2),
        noutputs=None if ex.noutputs is None else int(ex.noutputs),
        subarray=str(sub.name or ""), readpatt=str(ex.readpatt or ""))


def read_level2_asn(path: str) -> tuple[str, list[str], dict]:
    """Read the science member, background members and names of a Level-2 association file.

    Parameters
    ----------
    path : str
        A jwst association JSON (``asn_type`` image2 ...) with one product whose members
        have ``expname`` and ``exptype`` (science, background ...); member names are
        relative to the association's directory, as jwst resolves them.

    Returns
    -------
    science : str
        Path of the science member.
    background : list of str
        Paths of the background members.
    names : dict
        ``{"asn_pool", "asn_table", "product"}``.

    Raises
    ------
    InputError
        If the file is not such an association, has no or several products, or not exactly
        one science member (naming the file).
    """
    try:
        with open(path) as fh:
            asn = json.load(fh)
        products = asn["products"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable Level-2 association: {exc}") from exc
    if not isinstance(products, list) or len(products) != 1:
        raise InputError(f"{path}: the calib engine runs one exposure per job: the association has "
                         f"{len(products) if isinstance(products, list) else 'no'} products (give one per job)")
    base = os.path.dirname(os.path.abspath(path))
    by_type: dict[str, list[str]] = {}
    for member in products[0].get("members", []):
        by_type.setdefault(str(member.get("exptype", "")).lower(), []).append(
            os.path.join(base, str(member.get("expname"))))
    science = by_type.get("science", [])
    if len(science) != 1:
        raise InputError(f"{path}: the association's product needs exactly one science member, has {len(science)}")
    names = {"asn_pool": str(asn.get("asn_pool", " ")), "asn_table": os.path.basename(path),
             "product": str(products[0].get("name", ""))}
    return science[0], by_type.get("background", []), names


def _native(arr, dtype) -> np.ndarray:
    """``arr`` as a native-byte-order array of ``dtype``, swapped in place when only the byte order differs.

    FITS stores big-endian values; a rate read from disk is byte-swapped in its own buffer
    (no second copy of the frame is kept), other conversions copy.
    """
    a = np.asarray(arr)
    want = np.dtype(dtype)
    if a.dtype != want and a.dtype.newbyteorder("=") == want and a.flags.writeable and a.flags.c_contiguous:
        a.byteswap(inplace=True)
        return a.view(a.dtype.newbyteorder("="))
    return np.asarray(a, want)


@numba.njit(cache=True, nogil=True, parallel=True)
def _from_big_endian(raw, flip, out):
    """``out[i]`` = the big-endian 4-byte word ``raw[i]`` (the file's bytes, as uint32) byte-reversed, XOR ``flip``."""
    for i in numba.prange(raw.size):
        x = raw[i]
        out[i] = (((x >> 24) & 0xFF) | ((x >> 8) & 0xFF00) | ((x << 8) & 0xFF0000) | ((x << 24) & 0xFF000000)) ^ flip


@numba.njit(cache=True, nogil=True)
def _from_big_endian_serial(raw, flip, out):
    """:func:`_from_big_endian` in the calling thread (the same words): for a thread of its own.

    Written out, not ``numba.njit(...)(_from_big_endian.py_func)``: numba's on-disk cache keys a
    function by its bytecode and signature, not by ``parallel``, so the two would share a cache entry.
    """
    for i in range(raw.size):
        x = raw[i]
        out[i] = (((x >> 24) & 0xFF) | ((x >> 8) & 0xFF00) | ((x << 8) & 0xFF0000) | ((x << 24) & 0xFF000000)) ^ flip


def _convert_all(jobs, errors: list) -> None:
    """Run :func:`_from_big_endian_serial` on each ``(raw, flip, out)`` of ``jobs``; an exception goes to ``errors``."""
    try:
        for raw, flip, out in jobs:
            _from_big_endian_serial(raw, flip, out)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
        errors.append(exc)


def _holds_buffers(model, buffers) -> bool:
    """Whether each array of ``buffers`` is, whole and uncopied, the memory of one of the model's arrays."""
    held = {(a.__array_interface__["data"][0], a.nbytes) for a in model.instance.values() if isinstance(a, np.ndarray)}
    return all((b.__array_interface__["data"][0], b.nbytes) in held for b in buffers)


#: the rate's image extensions read by :func:`_open_rate_fast`
_RATE_ARRAYS = frozenset(("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"))


def _open_rate_fast(path: str, overlap: bool = True):
    """Open a ``_rate`` as ``datamodels.ImageModel(path)`` does, its 4-byte images read in one pass each.

    The same ``fits.open(path, memmap=False)`` HDU list is given to ImageModel, except that
    each of SCI, ERR, DQ, VAR_POISSON, VAR_RNOISE stored as float32 (BITPIX -32, no
    scaling) or as FITS pseudo-unsigned uint32 (BITPIX 32, BZERO 2**31) is not read by
    astropy (a big-endian array the caller then swaps in place): its bytes are mapped and
    converted to native float32 / uint32 in one pass (:func:`_from_big_endian`; the values
    bit for bit astropy's: the words byte-reversed, the sign bit flipped for uint32). Any
    other extension or scaling is read by astropy as before.

    With ``overlap`` the conversions run in a thread of their own (one numba thread: the
    first touch of a fresh mapping's pages does not scale across threads, 28 ms serial
    against 50-60 ms parallel for a full frame on a loaded machine) while ImageModel is built
    from the HDU list with the not yet filled arrays (~20 ms of header and ASDF parsing,
    which only attaches the arrays); the thread is joined before anything else sees the
    model, and unless the model then holds every converted buffer itself (ImageModel copied
    none: a copy would have read unfilled memory) the file is read again without overlap.

    Parameters
    ----------
    path : str
        The ``_rate`` file.
    overlap : bool
        Convert while ImageModel is built (see above); False: convert first.

    Returns
    -------
    stdatamodels.jwst.datamodels.ImageModel or None
        Not validated on assignment; None (nothing kept open) on a big-endian host or when
        anything goes wrong, for the general path.
    """
    if sys.byteorder != "little":       # the kernel swaps the file's big-endian bytes itself
        return None
    try:
        hdul = fits.open(path, memmap=False)
    except Exception:  # noqa: BLE001 - the general path reports it
        return None
    jobs: list = []
    try:
        with fits.open(path, memmap=True, do_not_scale_image_data=True) as mapped:
            for k, hdu in enumerate(hdul):
                h = hdu.header
                if (k == 0 or hdu.name not in _RATE_ARRAYS or h.get("XTENSION") != "IMAGE" or "BLANK" in h
                        or h.get("BSCALE", 1) != 1):
                    continue
                if h.get("BITPIX") == -32 and h.get("BZERO", 0) == 0:
                    dtype, flip = np.dtype(np.float32), 0
                elif h.get("BITPIX") == 32 and h.get("BZERO") == 2**31:
                    dtype, flip = np.dtype(np.uint32), 0x80000000
                else:
                    continue
                raw = mapped[k].data
                if raw is None or raw.dtype.itemsize != 4 or tuple(raw.shape) != tuple(hdu.shape) or raw.size == 0:
                    continue
                out = np.empty(raw.shape, dtype)
                words = (raw.view(np.ndarray).reshape(-1).view(np.uint32), np.uint32(flip),
                         out.reshape(-1).view(np.uint32))
                del raw
                if overlap:
                    jobs.append(words)
                else:
                    with KERNEL_LOCK:      # numba's workqueue layer: one Python thread at a time
                        _from_big_endian(*words)
                del words
                vars(hdu)["data"] = out            # astropy's lazy data, loaded (filled by the jobs)
            errors: list = []
            worker = threading.Thread(target=_convert_all, args=(jobs, errors), name="rate read", daemon=True)
            if jobs:
                worker.start()
            try:
                model = datamodels.ImageModel(hdul, validate_on_assignment=False)
            finally:
                if jobs:
                    worker.join()
            if errors:
                raise errors[0]
            buffers = [out for _, _, out in jobs]
            jobs.clear()                           # the mapped words: released before the mapping closes
        if buffers and not _holds_buffers(model, buffers):
            # ImageModel copied an array before it was filled: read again, converting first
            model.close()
            hdul.close()
            return _open_rate_fast(path, overlap=False)
    except Exception:  # noqa: BLE001 - the general path reads (or rejects) it
        jobs.clear()
        hdul.close()
        return None
    hdul.close()        # every array the model holds is in memory (memmap=False)
    return model


@contextlib.contextmanager
def open_image(path: str | os.PathLike) -> Iterator[ImageState]:
    """Open a ``_rate`` image or a Level-2 association as an :class:`ImageState`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``_rate.fits`` (ImageModel: SCI/ERR float32 (ny, nx) DN/s, DQ uint32,
        VAR_POISSON/VAR_RNOISE float32 (DN/s)**2) or a Level-2 association JSON.

    Yields
    ------
    ImageState

    Raises
    ------
    InputError
        If the file cannot be opened as an ImageModel (a 3-D ``_rateints`` included: the
        calib engine makes ``_cal`` images only), or its header is unusable
        (:func:`image_info`).
    """
    path = os.fspath(path)
    background: list[str] = []
    asn = None
    science = path
    if path.lower().endswith(".json"):
        science, background, asn = read_level2_asn(path)
    try:
        # no schema check on each assignment of the steps (~1 s of asdf validator set-up for a
        # full frame); the whole model is validated when a product is written
        model = _open_rate_fast(science) if os.path.isfile(science) else None
        if model is None:
            model = datamodels.ImageModel(science, validate_on_assignment=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
        raise InputError(f"{science}: cannot open as an ImageModel (a _rate image): {exc}") from exc
    with model:
        info = image_info(model, science)
        model.data = _native(model.data, np.float32)
        model.err = _native(model.err, np.float32) if model.err is not None else np.zeros_like(model.data)
        model.dq = (_native(model.dq, np.uint32) if model.dq is not None and np.shape(model.dq) == info_shape(info)
                    else np.zeros(info_shape(info), np.uint32))
        for name in ("var_poisson", "var_rnoise"):
            arr = getattr(model, name)
            setattr(model, name, _native(arr, np.float32) if arr is not None and np.size(arr)
                    else np.zeros_like(model.data))
        if asn is not None:
            model.meta.asn.pool_name = asn["asn_pool"]
            model.meta.asn.table_name = asn["asn_table"]
        yield ImageState(path=science, model=model, keys=ExposureKeys.from_model(model), info=info,
                         background=background, asn=asn)


def info_shape(info: ExposureInfo) -> tuple[int, int]:
    """(ny, nx) of the exposure's window."""
    return (info.ysize, info.xsize)


@dataclass
class Image3State:
    """The members of a Level-3 imaging association while calwebb_image3's steps run on them.

    Attributes
    ----------
    path : str
        The association file (``*_image3_*_asn.json``).
    library : jwst.datamodels.ModelLibrary
        Its science members (``_cal`` ImageModels: SCI/ERR float32 (ny, nx) MJy/sr, DQ
        uint32, VAR_* (MJy/sr)**2, gwcs), in memory; steps modify them in place (they
        become the ``_crf`` products), as jwst's steps modify the library's models.
    keys : ExposureKeys
        Of the first member.
    info : ExposureInfo
        Of the first member (the window references are cut to).
    asn : dict
        The association (``asn_id``, ``products[0]["name"]`` ...).
    product_name : str
        The Level-3 product's name (root of ``_i2d``, ``_cat.ecsv``, ``_segm``).
    i2d, catalog, segm : object
        Set by resample (ImageModel) and source_catalog (astropy Table, SegmentationMapModel).
    models : list
        The members' ImageModels in association order: the very objects the library holds
        in memory (``on_disk=False``), so a step may modify them directly.
    """

    path: str
    library: Any
    keys: ExposureKeys
    info: ExposureInfo
    asn: dict
    product_name: str
    i2d: Any = None
    catalog: Any = None
    segm: Any = None

    models: list = field(default_factory=list)

@contextlib.contextmanager
def open_image3(path: str | os.PathLike, prepare=None) -> Iterator[Image3State]:
    """Open a Level-3 imaging association's science members as an :class:`Image3State`.

    Parameters
    ----------
    path : str or os.PathLike
        A jwst association JSON (``asn_type`` image3) with one product whose ``science``
        members are ``_cal`` images (names relative to the association's directory, as jwst
        resolves them).
    prepare : callable, optional
        ``prepare(model)`` on each member as soon as it is read, before the next one is (e.g.
        :meth:`calib.spill.ArraySpill.release`, so that the members are never all in memory).

    Yields
    ------
    Image3State

    Raises
    ------
    InputError
        If the association cannot be read, has no science member, or a member cannot be
        opened as a 2-D ImageModel with a WCS (naming the file).
    """
    from jwst.datamodels import ModelLibrary

    path = os.fspath(path)
    try:
        with open(path) as fh:
            asn = json.load(fh)
        name = str(asn["products"][0].get("name", ""))
        library = ModelLibrary(path, asn_exptypes=["science"], on_disk=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
        raise InputError(f"{path}: not a readable Level-3 association of images: {exc}") from exc
    if len(library) == 0:
        raise InputError(f"{path}: the association has no science member")
    models = []
    with library:
        for i in range(len(library)):
            try:
                model = library.borrow(i)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"{path}: member {i} cannot be opened as an ImageModel: {exc}") from exc
            models.append(model)
            if np.ndim(model.data) != 2 or model.meta.wcs is None:
                for j, m in enumerate(models):
                    library.shelve(m, j, modify=False)
                raise InputError(f"{path}: member {model.meta.filename} is not a calibrated 2-D image with a WCS "
                                 "(a _cal product of calwebb_image2)")
            if prepare is not None:
                prepare(model)
        info = image_info(models[0], models[0].meta.filename or path)
        keys = ExposureKeys.from_model(models[0])
        for i, m in enumerate(models):
            library.shelve(m, i, modify=True)
    try:
        yield Image3State(path=path, library=library, keys=keys, info=info, asn=asn, product_name=name,
                          models=models)
    finally:
        for m in models:
            m.close()
