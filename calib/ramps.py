"""The state stage-1 steps work on: a raw exposure opened as a ramp.

Shared by every pipeline that starts from ``_uncal`` ramps (calwebb_detector1, calwebb_dark,
calwebb_guider). :func:`open_ramp` opens a Level-1b (or Ramp) file with stdatamodels, checks
the keywords the steps need, and converts SCI to the working arrays of the RampModel
layout; the steps then modify the arrays of the :class:`RampState` in place.
:func:`open_guider` does the same for an FGS guiding-mode exposure, opened as jwst's
calwebb_guider opens it (GuiderRawModel: one 2-D DQ, no GROUPDQ), into a :class:`GuiderState`.

Working arrays:

* ``data``  float32 (nints, ngroups, ny, nx), DN
* ``gdq``   uint8   (nints, ngroups, ny, nx), GROUPDQ bits (calib.dqflags)
* ``pdq``   uint32  (ny, nx), PIXELDQ bits
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

import numba
import numpy as np
from astropy.io import fits
from stdatamodels.jwst import datamodels

from calib.errors import InputError
from calib.references import ExposureInfo
from calib.step import ExposureKeys

__all__ = ["RampState", "open_ramp", "exposure_info", "NIR_INSTRUMENTS", "INSTRUMENTS", "GuiderState",
           "open_guider", "guider_exp_types"]

NIR_INSTRUMENTS = ("NIRCAM", "NIRISS", "NIRSPEC", "FGS")
INSTRUMENTS = (*NIR_INSTRUMENTS, "MIRI")


@dataclass
class RampState:
    """One exposure's ramp while stage-1 steps run on it (one object, no side channels).

    Attributes
    ----------
    path : str
        The input file.
    model : stdatamodels model
        The opened input (Level1bModel or RampModel): its header is copied into products;
        its SCI array has been released after conversion.
    keys : ExposureKeys
        INSTRUME, DETECTOR, EXP_TYPE, READPATT, SUBARRAY.
    info : ExposureInfo
        Every header value the steps need (sizes, times, subarray window).
    data : numpy.ndarray
        float32 (nints, ngroups, ny, nx), DN.
    gdq : numpy.ndarray
        uint8 (nints, ngroups, ny, nx), GROUPDQ.
    pdq : numpy.ndarray
        uint32 (ny, nx), PIXELDQ.
    average_dark_current : float or numpy.ndarray or None
        e-/s: set by dark_current (the parameter, else the dark reference's), read by
        ramp_fit for the Poisson variance.
    rate, rateints : dict or None
        Set by ramp_fit: {"data", "dq", "err", "var_poisson", "var_rnoise"} arrays (DN/s,
        (DN/s)**2), per exposure (ny, nx) and per integration (nints, ny, nx).
    keywords : dict
        Header keywords steps set for the products: {meta path: value}, e.g.
        ``{"rscd.int1skip": 1}``.
    """

    path: str
    model: Any
    keys: ExposureKeys
    info: ExposureInfo
    data: np.ndarray
    gdq: np.ndarray
    pdq: np.ndarray
    average_dark_current: Any = None
    rate: dict | None = None
    rateints: dict | None = None
    keywords: dict[str, Any] = field(default_factory=dict)


def exposure_info(model, path: str) -> ExposureInfo:
    """Read and check the header values the stage-1 steps need.

    Parameters
    ----------
    model : stdatamodels model
        The opened raw exposure (SCI 4-D).
    path : str
        Its file name, for messages.

    Returns
    -------
    ExposureInfo

    Raises
    ------
    InputError
        If SCI is not 4-D, INSTRUME is missing or unknown, NFRAMES/GROUPGAP/TGROUP/TFRAME are
        missing or invalid, SUBSIZE disagrees with SCI, or the readout is NIRSpec IRS2.
    """
    meta = model.meta
    data = model.data
    if data is None or np.ndim(data) != 4:
        raise InputError(f"{path}: SCI must be 4-D (nints, ngroups, ny, nx), got shape "
                         f"{None if data is None else np.shape(data)}")
    nints, ngroups, ny, nx = data.shape
    if nints < 1 or ngroups < 1:
        raise InputError(f"{path}: SCI has no integrations or groups (shape {data.shape})")
    inst = meta.instrument.name
    if not inst:
        raise InputError(f"{path}: missing INSTRUME")
    inst = str(inst).upper()
    if inst not in INSTRUMENTS:
        raise InputError(f"{path}: unsupported instrument {inst!r}")
    ex = meta.exposure
    required = {"NFRAMES": ex.nframes, "GROUPGAP": ex.groupgap, "TGROUP": ex.group_time,
                "TFRAME": ex.frame_time}
    missing = [k for k, v in required.items() if v is None]
    if missing:
        raise InputError(f"{path}: missing keyword(s) {', '.join(missing)}")
    if int(ex.nframes) < 1 or not (float(ex.group_time) > 0):
        raise InputError(f"{path}: invalid NFRAMES={ex.nframes} or TGROUP={ex.group_time}")
    sub = meta.subarray
    xstart = int(sub.xstart) if sub.xstart is not None else 1
    ystart = int(sub.ystart) if sub.ystart is not None else 1
    xsize = int(sub.xsize) if sub.xsize is not None else nx
    ysize = int(sub.ysize) if sub.ysize is not None else ny
    if (ysize, xsize) != (ny, nx):
        raise InputError(f"{path}: SUBSIZE1/2 = {xsize},{ysize} disagree with SCI shape {(ny, nx)}")
    readpatt = str(ex.readpatt or "")
    if "IRS2" in readpatt.upper():
        raise InputError(f"{path}: NIRSpec IRS2 readout ({readpatt}) is not supported by the "
                         "calib engine")
    return ExposureInfo(
        path=path, instrument=inst, detector=str(meta.instrument.detector or ""),
        exp_type=str(ex.type or ""), nints=nints, ngroups=ngroups, nframes=int(ex.nframes),
        groupgap=int(ex.groupgap), frame_divisor=(None if ex.frame_divisor is None
                                                  else int(ex.frame_divisor)),
        group_time=float(ex.group_time), frame_time=float(ex.frame_time),
        xstart=xstart, ystart=ystart, xsize=xsize, ysize=ysize,
        fastaxis=int(sub.fastaxis) if sub.fastaxis is not None else 1,
        slowaxis=int(sub.slowaxis) if sub.slowaxis is not None else 2,
        noutputs=None if ex.noutputs is None else int(ex.noutputs),
        subarray=str(sub.name or ""), readpatt=readpatt,
        integration_start=(1 if ex.integration_start is None else int(ex.integration_start)),
    )


def _release_raw_sci(model) -> None:
    """Drop the raw SCI array of the input model now.

    Drop the raw SCI array (half the size of the float32 ramp) now rather than when the
    model closes: both the model and the HDU list ``datamodels.open`` read refer to it.
    """
    try:
        del model.data
    except Exception:  # noqa: BLE001 - only a memory saving
        pass
    for file_ref in getattr(model, "_file_references", ()):
        hdul = getattr(file_ref, "_file", None)
        for hdu in (hdul if isinstance(hdul, fits.HDUList) else ()):
            if hdu.name == "SCI" and "data" in vars(hdu):
                del hdu.data


@numba.njit(cache=True, parallel=True)
def _pseudo_unsigned_to_float32(raw, out):
    """Convert FITS pseudo-unsigned 16-bit data to float32.

    raw uint16 (n, m): the file's bytes of a BITPIX 16, BZERO 32768 image (big-endian
    signed integers) viewed as native uint16; out float32 (n, m): the unsigned values
    (stored value + 32768, 0..65535), which float32 holds exactly, so the result equals
    astropy's scaled uint16 data converted to float32. Rows in parallel.
    """
    n, m = raw.shape
    for r in numba.prange(n):
        for c in range(m):
            u = raw[r, c]
            out[r, c] = np.float32(((u >> 8) | ((u & 0xFF) << 8)) ^ 0x8000)


def _open_level1b_fast(path: str):
    """Open a Level-1b file without astropy's scaling of SCI; None if the file is not one.

    The common raw exposure (DATAMODL Level1bModel, a 4-D SCI of BITPIX 16 with BZERO
    32768, BSCALE 1 and no BLANK: uint16 DN stored as FITS pseudo-unsigned integers) is
    opened as ``datamodels.open`` opens it (the same ``fits.open(path, memmap=False)``
    HDU list given to ``Level1bModel``), except that SCI is not read through astropy,
    which converts it to uint16 with a copy that is then converted to float32 again: its
    bytes are mapped and converted to float32 in one parallel pass
    (:func:`_pseudo_unsigned_to_float32`), and the model's SCI is a uint16 placeholder
    of the same shape (all zeros, never touched, so its pages are never mapped;
    :func:`open_ramp` uses only its shape and releases it). Header, metadata and every other array are read as before.

    Returns
    -------
    (model, data) or None
        The Level1bModel and SCI as float32 (nints, ngroups, ny, nx) DN; None (nothing
        kept open) for any other file or when anything goes wrong, for the general path.
    """
    if sys.byteorder != "little":   # the kernel swaps the file's big-endian bytes itself
        return None
    try:
        hdul = fits.open(path, memmap=False)
    except Exception:  # noqa: BLE001 - the general path reports it
        return None
    try:
        h = hdul["SCI"].header if "SCI" in hdul else None
        if (h is None or hdul[0].header.get("DATAMODL") != "Level1bModel" or h.get("NAXIS") != 4
                or h.get("BITPIX") != 16 or h.get("BZERO") != 32768 or h.get("BSCALE", 1) != 1
                or "BLANK" in h or h.get("XTENSION") != "IMAGE"):
            hdul.close()
            return None
        sci = hdul["SCI"]
        shape = tuple(sci.shape)
        with fits.open(path, memmap=True, do_not_scale_image_data=True) as mm:
            raw = mm["SCI"].data
            if raw.dtype != np.dtype(">i2") or tuple(raw.shape) != shape:
                hdul.close()
                return None
            n = int(np.prod(shape[:-1]))
            data = np.empty(shape, np.float32)
            _pseudo_unsigned_to_float32(raw.view(np.uint16).reshape(n, shape[-1]).view(np.ndarray),
                                        data.reshape(n, shape[-1]))
            del raw
        # the model's SCI: a placeholder of the right shape and type that holds no memory:
        # zeros from calloc, whose pages stay unmapped while nothing touches them (a
        # zero-stride broadcast would be copied in full by asdf's ndarray converter when
        # the model validates its tree: 84 MB written for a full-frame exposure)
        vars(sci)["data"] = np.zeros(shape, np.uint16)
        model = datamodels.Level1bModel(hdul)
    except Exception:  # noqa: BLE001 - the general path reads (or rejects) it
        hdul.close()
        return None
    hdul.close()     # every array the model holds was read into memory (memmap=False)
    return model, data


@contextlib.contextmanager
def open_ramp(path: str | os.PathLike, model_types: tuple = (datamodels.Level1bModel, datamodels.RampModel)
              ) -> Iterator[RampState]:
    """Open a raw exposure as a :class:`RampState` (a context manager; closes the model).

    Parameters
    ----------
    path : str or os.PathLike
        A Level-1b ``_uncal.fits`` file (SCI uint16 (nints, ngroups, ny, nx) DN) or a Ramp
        file (float32 SCI plus GROUPDQ/PIXELDQ, which are kept).
    model_types : tuple
        The stdatamodels classes accepted.

    Yields
    ------
    RampState

    Raises
    ------
    InputError
        If the file cannot be opened as a JWST datamodel of those classes, or its header or
        SCI is unusable (see :func:`exposure_info`), or SCI holds non-finite values.
    """
    path = os.fspath(path)
    fast = _open_level1b_fast(path) if datamodels.Level1bModel in model_types else None
    try:
        model = datamodels.open(path) if fast is None else fast[0]
    except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
        raise InputError(f"{path}: cannot open as a JWST datamodel: {exc}") from exc
    with model:
        if not isinstance(model, model_types):
            raise InputError(f"{path}: expected a {' or '.join(t.__name__ for t in model_types)}, got "
                             f"{type(model).__name__}")
        info = exposure_info(model, path)
        raw = model.data
        data = np.array(raw, dtype=np.float32) if fast is None else fast[1]
        if np.asarray(raw).dtype.kind == "f" and not np.isfinite(data).all():  # ints are finite
            raise InputError(f"{path}: SCI contains non-finite values")
        gdq = np.zeros(data.shape, np.uint8)
        pdq = np.zeros(data.shape[-2:], np.uint32)
        if isinstance(model, datamodels.RampModel):
            if model.groupdq is not None and model.groupdq.shape == data.shape:
                gdq |= np.asarray(model.groupdq, np.uint8)
            if model.pixeldq is not None and model.pixeldq.shape == pdq.shape:
                pdq |= np.asarray(model.pixeldq, np.uint32)
        del raw
        _release_raw_sci(model)
        yield RampState(path=path, model=model, keys=ExposureKeys.from_model(model), info=info,
                        data=data, gdq=gdq, pdq=pdq)


# ------------------------------------------------------------------------------------------
# FGS guiding-mode exposures (calwebb_guider)

def guider_exp_types() -> tuple[str, ...]:
    """Return the EXP_TYPEs of the FGS guiding modes, upper case, as jwst lists them.

    Taken from ``jwst.lib.exposure_types.FGS_GUIDE_EXP_TYPES`` (the list jwst's dq_init
    uses to treat an exposure as guider data): FGS_ACQ1, FGS_ACQ2, FGS_FINEGUIDE,
    FGS_ID-IMAGE, FGS_ID-STACK, FGS_TRACK in jwst 3.0. jwst is imported on first call.
    """
    from jwst.lib.exposure_types import FGS_GUIDE_EXP_TYPES

    return tuple(t.upper() for t in FGS_GUIDE_EXP_TYPES)


@dataclass
class GuiderState:
    """One FGS guiding-mode exposure while calwebb_guider's steps run on it.

    Attributes
    ----------
    path : str
        The input file.
    model : stdatamodels.jwst.datamodels.GuiderRawModel
        The opened input: its header and tables are copied into the product; its SCI array
        has been released after conversion.
    keys : ExposureKeys
    info : ExposureInfo
        Sizes, TGROUP (s) and the subarray window.
    data : numpy.ndarray
        float32 (nints, ngroups, ny, nx), DN.
    dq : numpy.ndarray
        uint32 (ny, nx): the guider data's only DQ array (no GROUPDQ): dq_init ORs the MASK
        into it, flat_field its flags.
    cal : dict or None
        Set by guider_cds: ``{"data": float32 (n, ny, nx) DN/s, "err": float32 (n, ny, nx)
        DN/s}`` with n = NINTS (n = 1 for the ID modes); flat_field divides them by the
        flat and adds ``"var_flat"`` ((DN/s)**2).
    """

    path: str
    model: Any
    keys: ExposureKeys
    info: ExposureInfo
    data: np.ndarray
    dq: np.ndarray
    cal: dict | None = None


@contextlib.contextmanager
def open_guider(path: str | os.PathLike) -> Iterator[GuiderState]:
    """Open an FGS guiding-mode ``_uncal.fits`` as a :class:`GuiderState` (a context manager).

    As jwst's GuiderPipeline does, the file is opened as a ``GuiderRawModel`` whatever its
    DATAMODL (real guiding files say Level1bModel); a missing or wrongly shaped DQ becomes
    zeros (jwst dq_init's ``check_dimensions``).

    Parameters
    ----------
    path : str or os.PathLike
        SCI uint16 (nints, ngroups, ny, nx) DN; EXP_TYPE one of :func:`guider_exp_types`.

    Yields
    ------
    GuiderState

    Raises
    ------
    InputError
        If the file cannot be opened as a GuiderRawModel, is not an FGS guiding-mode
        exposure, its header or SCI is unusable (:func:`exposure_info`), or SCI holds
        non-finite values.
    """
    path = os.fspath(path)
    try:
        model = datamodels.GuiderRawModel(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
        raise InputError(f"{path}: cannot open as a GuiderRawModel: {exc}") from exc
    with model:
        exp_type = str(model.meta.exposure.type or "").upper()
        kinds = guider_exp_types()
        if str(model.meta.instrument.name or "").upper() != "FGS" or exp_type not in kinds:
            raise InputError(f"{path}: EXP_TYPE {exp_type or None!r} of {model.meta.instrument.name!r} is not an "
                             f"FGS guiding mode ({', '.join(kinds)}): not calwebb_guider input")
        info = exposure_info(model, path)
        raw = model.data
        data = np.array(raw, dtype=np.float32)
        if not np.isfinite(data).all():
            raise InputError(f"{path}: SCI contains non-finite values")
        dq = np.zeros(data.shape[-2:], np.uint32)
        if model.dq is not None and np.shape(model.dq) == dq.shape:
            dq |= np.asarray(model.dq, np.uint32)
        del raw
        _release_raw_sci(model)
        yield GuiderState(path=path, model=model, keys=ExposureKeys.from_model(model), info=info,
                          data=data, dq=dq)
