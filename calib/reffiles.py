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
from dataclasses import dataclass

import numpy as np
from stdatamodels.jwst import datamodels

from calib.errors import ReferenceFileError

__all__ = ["ExposureInfo", "REFERENCE_MODELS", "open_reference", "subarray_of", "ref_array"]

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

    @property
    def is_miri(self) -> bool:
        return self.instrument == "MIRI"

    @property
    def full_shape(self) -> tuple[int, int]:
        return (1024, 1032) if self.is_miri else (2048, 2048)

    @property
    def is_subarray(self) -> bool:
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


def subarray_of(array: np.ndarray, model, info: ExposureInfo, path: str, step: str,
                name: str) -> np.ndarray:
    """Cut ``array`` (a reference array whose last two axes are (ny, nx)) to the science subarray.

    ``model`` provides SUBSTRT1/2 and SUBSIZE1/2 of the reference. When the reference already
    has the science shape it is returned unchanged (as jwst's ``ref_matches_sci``). Raises
    ``ReferenceFileError`` when the science window does not lie inside the reference.
    """
    if array is None or np.ndim(array) < 2 or np.size(array) == 0:
        raise ReferenceFileError(f"{step}: reference file {path!r} has no {name} array")
    ny, nx = array.shape[-2:]
    window = _ref_window(model)
    if window is None:
        # jwst assumes full frame for references lacking subarray keywords
        window = (1, 1, nx, ny)
    xs_r, ys_r, xsz_r, ysz_r = window
    if (ny, nx) == (info.ysize, info.xsize) and (xs_r, ys_r) == (info.xstart, info.ystart):
        return array
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
    return array[..., y0:y1, x0:x1]


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
