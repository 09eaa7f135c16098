"""bkg_subtract: subtract the average of an association's background members (jwst background step).

jwst's Image2Pipeline calls its background step only when the Level-2 association's product
has members of exptype ``background`` (jwst documentation "calwebb_image2", "background");
a plain ``_rate`` input has none, and the calib engine records the step SKIPPED then (jwst
leaves S_BKDSUB unset). With background members, as jwst 3.0's ``background_sub`` does for
imaging: the members' SCI (rate images over the same detector window) are stacked, each
pixel's values are sigma-clipped about their median (astropy's ``sigma_clip`` rule:
outside median +- ``sigma`` x standard deviation, iterated until nothing changes or
``maxiters``; NaN values are left out), the mean of what remains is subtracted from SCI and
the members' DQ are ORed into DQ (:func:`average_background`, a numba kernel). Members whose
window differs from the science one are refused with a clear error (jwst then uses the
overlap; jwst engine). It reads no reference for imaging (BKG and WAVELENGTHRANGE are read
for WFSS and NIRISS SOSS only).
"""
from __future__ import annotations

import numba
import numpy as np

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import ExposureKeys, StepSpec

__all__ = ["STEP", "average_background"]


@numba.njit(cache=True, parallel=True)
def _clipped_mean_kernel(stack, sigma, maxiters, out):
    n, ny, nx = stack.shape
    for y in numba.prange(ny):
        keep = np.empty(n, np.bool_)
        vals = np.empty(n, np.float64)
        for x in range(nx):
            m = 0
            for k in range(n):
                keep[k] = not np.isnan(stack[k, y, x])
            it = 0
            while True:
                m = 0
                for k in range(n):
                    if keep[k]:
                        vals[m] = stack[k, y, x]
                        m += 1
                if m == 0:
                    break
                med = np.median(vals[:m])
                mean = vals[:m].mean()
                std = np.sqrt(((vals[:m] - mean) ** 2).mean())
                changed = False
                for k in range(n):
                    if keep[k]:
                        v = stack[k, y, x]
                        if v < med - sigma * std or v > med + sigma * std:
                            keep[k] = False
                            changed = True
                it += 1
                if not changed or (maxiters >= 0 and it >= maxiters):
                    break
            total = 0.0
            m = 0
            for k in range(n):
                if keep[k]:
                    total += stack[k, y, x]
                    m += 1
            out[y, x] = total / m if m > 0 else np.nan


def average_background(stack: np.ndarray, sigma: float = 3.0, maxiters: int | None = None) -> np.ndarray:
    """Per-pixel sigma-clipped mean of background images.

    Parameters
    ----------
    stack : numpy.ndarray
        float64 (n, ny, nx): the members' SCI, DN/s (NaN: no value).
    sigma : float
        Clipping threshold: values outside median +- sigma x standard deviation (population
        standard deviation of the values kept) are dropped, as astropy's ``sigma_clip``
        with its defaults (median centre, std spread) does.
    maxiters : int or None
        Clipping iterations; None: until nothing changes.

    Returns
    -------
    numpy.ndarray
        float64 (ny, nx), DN/s; NaN where no value remains.

    Notes
    -----
    jwst 3.0's ``background.background_sub.average_background`` for 2-D backgrounds
    (``sigma_clip(..., axis=0)`` then the mean), in one numba pass.
    """
    out = np.empty(stack.shape[1:], np.float64)
    _clipped_mean_kernel(np.ascontiguousarray(stack, np.float64), float(sigma),
                         -1 if maxiters is None else int(maxiters), out)
    return out


def _read_members(state) -> tuple[np.ndarray, np.ndarray]:
    """Read the background members' SCI stack (float64 (n, ny, nx)) and ORed DQ (uint32)."""
    from stdatamodels.jwst import datamodels

    info = state.info
    stack = np.empty((len(state.background), info.ysize, info.xsize), np.float64)
    dq = np.zeros((info.ysize, info.xsize), np.uint32)
    for k, path in enumerate(state.background):
        try:
            m = datamodels.ImageModel(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
            raise InputError(f"{path}: background member cannot be opened as an ImageModel: {exc}") from exc
        with m:
            sub = m.meta.subarray
            window = (sub.xstart or 1, sub.ystart or 1, sub.xsize, sub.ysize)
            if np.shape(m.data) != (info.ysize, info.xsize) or window[:2] != (info.xstart, info.ystart):
                raise InputError(f"{path}: background member's window {window} differs from the science "
                                 f"window {(info.xstart, info.ystart, info.xsize, info.ysize)} (jwst engine)")
            stack[k] = m.data
            if m.dq is not None and np.shape(m.dq) == dq.shape:
                dq |= np.asarray(m.dq, np.uint32)
    return stack, dq


def _reads(spec: StepSpec, keys: ExposureKeys, params) -> tuple[str, ...]:
    """Imaging background subtraction reads no reference."""
    return ()


def _run(state, ctx) -> str:
    if not getattr(state, "background", None):
        return "SKIPPED"
    p = ctx.params
    stack, dq = _read_members(state)
    bkg = average_background(stack, p["sigma"], p["maxiters"])
    m = state.model
    m.data -= bkg.astype(np.float32)
    m.dq |= dq
    return "COMPLETE"


STEP = StepSpec(
    name="bkg_subtract", jwst_class="jwst.background.BackgroundStep",
    reftypes=("bkg", "wavelengthrange"), run=_run, reads=_reads, skip_if_na=(), status_attr="bkg_subtract",
    params=(Param("bkg_list", "string_list", None, support=SUPPORT_DEFAULT_ONLY,
                  doc="background files (the association's members are used)"),
            Param("save_combined_background", "boolean", False, support=SUPPORT_IGNORED,
                  doc="save the combined background image (output option)"),
            Param("sigma", "float", 3.0, doc="clipping threshold, sigma"),
            Param("maxiters", "integer", None, min=1, doc="clipping iterations (None: until converged)"),
            Param("soss_source_percentile", "float", 35.0, support=SUPPORT_IGNORED, doc="NIRISS SOSS only"),
            Param("soss_bkg_percentile", "float_list", None, support=SUPPORT_IGNORED, doc="NIRISS SOSS only"),
            Param("wfss_mmag_extract", "float", None, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_mask", "string", None, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_maxiter", "integer", 5, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_rms_stop", "float", 0.0, support=SUPPORT_IGNORED, doc="WFSS only"),
            Param("wfss_outlier_percent", "float", 1.0, support=SUPPORT_IGNORED, doc="WFSS only")),
    doc="subtract the sigma-clipped mean of the association's background members; SKIPPED without them.",
)
