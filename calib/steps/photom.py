"""photom: count rates (DN/s) to surface brightness (MJy/sr) for imaging (jwst photom step).

Method: jwst documentation "photom" (imaging modes) and jwst 3.0's ``photom.DataSet``: the
PHOTOM reference's ``phot_table`` row for the exposure (NIRCam: FILTER, PUPIL and, when the
table has the column, SUBARRAY; NIRISS: FILTER, PUPIL; MIRI imager: SUBARRAY, FILTER, else
SUBARRAY "GENERIC"; FGS: the one row), found with jwst's own ``find_row``, gives PHOTMJSR
(MJy/sr per DN/s), divided by the reference's time-dependent correction at the exposure's
mid time when it has one (jwst's ``time_dependence.get_correction_table``, parameter
``apply_time_correction``). Then, in one numba pass: SCI and ERR *= PHOTMJSR, VAR_POISSON,
VAR_RNOISE and VAR_FLAT *= PHOTMJSR**2 (``inverse``: divided), and jwst's
``match_nans_and_flags`` (NaN anywhere or DO_NOT_USE -> NaN in all, DQ |= DO_NOT_USE).
The AREA reference's pixel areas (sr, relative to PIXAR_SR) are attached as the AREA array,
cut to the window, and PIXAR_SR / PIXAR_A2 are copied from it (else from the PHOTOM file);
PHOTMJSR and PHOTUJA2 (uJy/arcsec**2) and BUNIT MJy/sr are recorded. No matching row:
nothing is applied (jwst also leaves the data as they are and records COMPLETE).

SKIPPED when the PHOTOM reference is N/A. Spectroscopic modes (wavelength-dependent
response) are refused with a clear error (jwst engine).
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.errors import InputError, ReferenceFileError
from calib.params import SUPPORT_DEFAULT_ONLY, Param
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["apply_conversion", "imaging_conversion", "STEP"]


def _imaging_types() -> frozenset[str]:
    """Exposure types whose conversion is one scalar per image (jwst's IMAGING_TYPES)."""
    from jwst.lib.exposure_types import IMAGING_TYPES

    return frozenset(t.upper() for t in IMAGING_TYPES)


@numba.njit(cache=True, parallel=True)
def _scale_kernel(data, err, dq, vp, vr, vf, c, c2):
    ny, nx = data.shape
    dnu = np.uint32(dqflags.DO_NOT_USE)
    nan = np.float32(np.nan)
    for y in numba.prange(ny):
        for x in range(nx):
            d = data[y, x] * c
            e = err[y, x] * c
            v_p = vp[y, x] * c2
            v_r = vr[y, x] * c2
            v_f = vf[y, x] * c2
            q = dq[y, x]
            if np.isnan(d) or np.isnan(e) or np.isnan(v_p) or np.isnan(v_r) or np.isnan(v_f) or (q & dnu):
                dq[y, x] = q | dnu
                d = nan
                e = nan
                v_p = nan
                v_r = nan
                v_f = nan
            data[y, x] = d
            err[y, x] = e
            vp[y, x] = v_p
            vr[y, x] = v_r
            vf[y, x] = v_f


def apply_conversion(data: np.ndarray, err: np.ndarray, dq: np.ndarray, var_poisson: np.ndarray,
                     var_rnoise: np.ndarray, var_flat: np.ndarray, conversion: float,
                     inverse: bool = False) -> None:
    """Scale a count-rate image by a photometric conversion, in place.

    Parameters
    ----------
    data, err : numpy.ndarray
        float32 (ny, nx), DN/s (MJy/sr with ``inverse``).
    dq : numpy.ndarray
        uint32 (ny, nx).
    var_poisson, var_rnoise, var_flat : numpy.ndarray
        float32 (ny, nx), (DN/s)**2.
    conversion : float
        PHOTMJSR, MJy/sr per DN/s.
    inverse : bool
        Divide instead of multiply.

    Notes
    -----
    SCI and ERR are multiplied by the float32 conversion and the variances by its square,
    as jwst's ``photom_io`` does for an ImageModel; then jwst's ``match_nans_and_flags``.
    """
    c = np.float32(conversion)
    c2 = np.float32(c * c)
    if inverse:
        c, c2 = np.float32(1.0) / c, np.float32(1.0) / c2
    _scale_kernel(data, err, dq, var_poisson, var_rnoise, var_flat, c, c2)


def imaging_conversion(ftab, instrument: str, detector: str, filt: str | None, pupil: str | None,
                       subarray: str | None, mid_time: float | None,
                       apply_time_correction: bool = True) -> float | None:
    """PHOTMJSR for an imaging exposure from an opened PHOTOM reference, or None (no row).

    Parameters
    ----------
    ftab : stdatamodels PHOTOM model
        NrcImgPhotomModel, NisImgPhotomModel, MirImgPhotomModel or FgsImgPhotomModel.
    instrument, detector, filt, pupil, subarray : str
        The exposure's INSTRUME, DETECTOR, FILTER, PUPIL, SUBARRAY.
    mid_time : float or None
        EXPMID (MJD) for the time-dependent correction.
    apply_time_correction : bool
        Divide by the reference's time-dependent correction when it has one.

    Returns
    -------
    float or None
        MJy/sr per DN/s; None when no row matches (jwst then applies nothing).

    Raises
    ------
    ReferenceFileError
        If the reference has no ``phot_table`` or the row lacks PHOTMJSR.
    """
    from jwst.photom import time_dependence
    from jwst.photom.photom import find_row

    table = getattr(ftab, "phot_table", None)
    if table is None:
        raise ReferenceFileError(f"photom: reference file {ftab.meta.filename!r} has no PHOT_TABLE")

    def up(v):
        return None if v is None else str(v).upper()

    filt, pupil, subarray = up(filt), up(pupil), up(subarray)
    if instrument == "FGS":
        row = 0
    elif instrument == "MIRI":
        row = find_row(table, {"subarray": subarray, "filter": filt})
        if row is None:
            row = find_row(table, {"subarray": "GENERIC", "filter": filt})
    else:
        fields = {"filter": filt, "pupil": pupil}
        if instrument == "NIRCAM" and "subarray" in table.columns.names:
            fields["subarray"] = subarray
        row = find_row(table, fields)
    if row is None:
        return None
    if "photmjsr" not in [n.lower() for n in table.columns.names]:
        raise ReferenceFileError(f"photom: reference file {ftab.meta.filename!r} has no PHOTMJSR column "
                                 "(not an imaging PHOTOM file)")
    conversion = table[row]["photmjsr"]
    correction = time_dependence.get_correction_table(ftab, mid_time)[row]
    if apply_time_correction and correction is not None and correction != 1.0:
        conversion = conversion / correction
    return conversion


def _photom_values(model, path, state, apply_time_correction):
    m = state.model
    ins = m.meta.instrument
    conv = imaging_conversion(model, state.info.instrument, state.info.detector, ins.filter, ins.pupil,
                              m.meta.subarray.name, m.meta.exposure.mid_time, apply_time_correction)
    ph = model.meta.photometry
    return (conv, ph.pixelarea_steradians, ph.pixelarea_arcsecsq)


def _area_values(model, path, info, step):
    area = ref_array(model, "data", info, path, step, dtype=np.float32)
    ph = model.meta.photometry
    return (area, ph.pixelarea_steradians, ph.pixelarea_arcsecsq)


def _run(state, ctx) -> str:
    if not hasattr(state, "background"):
        raise InputError(f"{state.path}: the calib engine's photom runs on count-rate images (calwebb_image2)")
    types = _imaging_types()
    if state.keys.exp_type not in types:
        raise InputError(f"{state.path}: photom of EXP_TYPE {state.keys.exp_type!r} (spectroscopic response) is "
                         "not implemented by the calib engine; use the jwst engine")
    if ctx.params["source_type"] is not None:
        raise InputError("photom: source_type is used by spectroscopic modes only")
    p = ctx.params
    phot = ctx.prepared("photom", ("photmjsr", str(state.model.meta.instrument.filter),
                                   str(state.model.meta.instrument.pupil), state.info.subarray,
                                   state.model.meta.exposure.mid_time, p["apply_time_correction"]),
                        lambda mdl, path: _photom_values(mdl, path, state, p["apply_time_correction"]))
    conv, sr, a2 = phot
    m = state.model
    area = ctx.prepared("area", ("area",), lambda mdl, path: _area_values(mdl, path, state.info, ctx.name))
    if area is not None:
        arr, asr, aa2 = area
        m.area = np.array(arr)                     # a writable copy (the cached one is read-only)
        sr = asr if asr is not None else sr
        a2 = aa2 if aa2 is not None else a2
    m.meta.photometry.pixelarea_steradians = None if sr is None else float(sr)
    m.meta.photometry.pixelarea_arcsecsq = None if a2 is None else float(a2)
    if conv is None:
        return "COMPLETE"
    from jwst.photom.photom import MJSR_TO_UJA2

    m.meta.photometry.conversion_megajanskys = float(conv)
    m.meta.photometry.conversion_microjanskys = float(conv) * MJSR_TO_UJA2
    if m.var_flat is None or np.shape(m.var_flat) != m.data.shape:
        m.var_flat = np.zeros_like(m.data)
    apply_conversion(m.data, m.err, m.dq, m.var_poisson, m.var_rnoise, m.var_flat, conv, inverse=p["inverse"])
    unit = "DN/s" if p["inverse"] else "MJy/sr"
    m.meta.bunit_data = unit
    m.meta.bunit_err = unit
    return "COMPLETE"


STEP = StepSpec(
    name="photom", jwst_class="jwst.photom.PhotomStep",
    reftypes=("photom", "area"), run=_run, skip_if_na=("photom",),
    params=(Param("inverse", "boolean", False, doc="divide by the conversion instead of multiplying"),
            Param("source_type", "string", None, support=SUPPORT_DEFAULT_ONLY,
                  doc="process as this source type (spectroscopic modes; jwst engine)"),
            Param("apply_time_correction", "boolean", True,
                  doc="divide PHOTMJSR by the reference's time-dependent correction when it has one")),
    doc="DN/s -> MJy/sr by the PHOTOM row's PHOTMJSR; AREA attached; PIXAR_SR/A2 (jwst photom, imaging).",
)
