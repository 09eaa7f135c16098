"""flat_field: divide count rates by the FLAT reference (jwst flat_field step).

Implemented for FGS guiding-mode count rates (calwebb_guider) and count-rate images
(calwebb_image2: :func:`flat_field_image`, a numba kernel that also divides VAR_POISSON and
VAR_RNOISE by F**2 and sets ``ERR = sqrt(VAR_POISSON + VAR_RNOISE + VAR_FLAT)``). Method: jwst documentation
"flat_field" (imaging flats) and jwst 3.0's ``apply_flat_field``, with the flat F, its
error F_err and its DQ cut to the science window:

* flat DQ |= DO_NOT_USE | NO_FLAT_FIELD where F is NaN or 0, |= DO_NOT_USE where it has
  NO_FLAT_FIELD; F = 1 (no correction) where the flat DQ has DO_NOT_USE;
* SCI /= F; ``VAR_FLAT = SCI**2 / F**2 * F_err**2`` with the SCI already divided (jwst's
  expression); ``ERR = sqrt(ERR**2 + VAR_FLAT)`` (guider data have no VAR_POISSON or
  VAR_RNOISE); DQ |= flat DQ; with ``inverse``: SCI *= F, VAR_FLAT = 0, ERR unchanged;
* a NaN in SCI, ERR or VAR_FLAT becomes NaN in all three (jwst's ``match_nans_and_flags``;
  the guider DQ is 2-D, so jwst leaves it as it is, and so does this step).

SKIPPED, as jwst: when the FLAT reference is N/A, when it is smaller than the science
array, and for NIRSpec exposure types jwst does not flat-field. NIRSpec spectroscopy reads
FFLAT, SFLAT and DFLAT instead of FLAT (not implemented by this engine).
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.references import ref_array
from calib.step import ExposureKeys, StepSpec

__all__ = ["flat_field_rates", "flat_field_image", "STEP", "NRS_SPEC_MODES", "NRS_IMAGING_MODES"]

NO_FLAT_FIELD = np.uint32(262144)      # DQ bit 18 (stdatamodels dqflags.pixel)
BAD_FLAT = np.uint32(dqflags.DO_NOT_USE) | NO_FLAT_FIELD

#: NIRSpec exposure types jwst's flat_field step handles (others are SKIPPED), jwst 3.0
NRS_SPEC_MODES = ("NRS_BRIGHTOBJ", "NRS_FIXEDSLIT", "NRS_IFU", "NRS_MSASPEC", "NRS_LAMP", "NRS_AUTOWAVE")
NRS_IMAGING_MODES = ("NRS_CONFIRM", "NRS_FOCUS", "NRS_IMAGE", "NRS_MIMF", "NRS_MSATA", "NRS_TACONFIRM",
                     "NRS_TACQ", "NRS_TASLIT", "NRS_WATA")


def flat_field_rates(data: np.ndarray, err: np.ndarray, dq: np.ndarray, flat: np.ndarray,
                     flat_err: np.ndarray, flat_dq: np.ndarray, inverse: bool = False):
    """Flat-field count rates (arrays replaced, not modified in place).

    Parameters
    ----------
    data, err : numpy.ndarray
        float32 (n, ny, nx), DN/s.
    dq : numpy.ndarray
        uint32 (ny, nx) (guider data: one DQ plane for all integrations).
    flat, flat_err : numpy.ndarray
        float32 (ny, nx), dimensionless, cut to the science window.
    flat_dq : numpy.ndarray
        uint32 (ny, nx).
    inverse : bool
        Multiply instead of divide (jwst's ``inverse``).

    Returns
    -------
    data, err : float32 (n, ny, nx), DN/s
    dq : uint32 (ny, nx)
    var_flat : float32 (n, ny, nx), (DN/s)**2
    """
    flat = np.array(flat, dtype=np.float32)
    fdq = np.array(flat_dq, dtype=np.uint32)
    fdq[np.isnan(flat) | (flat == 0.0)] |= BAD_FLAT
    fdq[(fdq & NO_FLAT_FIELD) != 0] |= np.uint32(dqflags.DO_NOT_USE)
    flat[(fdq & np.uint32(dqflags.DO_NOT_USE)) != 0] = 1.0
    if not inverse:
        data = data / flat
        var_flat = data**2 / (flat * flat) * flat_err**2
        err = np.sqrt(err**2 + var_flat)
    else:
        data = data * flat
        var_flat = np.zeros_like(data)
        err = err.copy()
    invalid = np.isnan(data) | np.isnan(err) | np.isnan(var_flat)
    if invalid.any():
        data[invalid] = np.nan
        err[invalid] = np.nan
        var_flat[invalid] = np.nan
    return data, err, dq | fdq, var_flat


@numba.njit(cache=True, parallel=True)
def _flat_image_kernel(data, err, dq, vp, vr, vf, flat, flat_err, flat_dq, inverse):
    ny, nx = data.shape
    dnu = np.uint32(dqflags.DO_NOT_USE)
    nan = np.float32(np.nan)
    for y in numba.prange(ny):
        for x in range(nx):
            f = flat[y, x]
            fdq = flat_dq[y, x]
            if np.isnan(f) or f == 0.0:
                fdq |= BAD_FLAT
            if fdq & NO_FLAT_FIELD:
                fdq |= dnu
            if fdq & dnu:
                f = np.float32(1.0)
            f2 = f * f
            if not inverse:
                d = data[y, x] / f
                v_f = d * d / f2 * (flat_err[y, x] * flat_err[y, x])
                v_p = vp[y, x] / f2
                v_r = vr[y, x] / f2
                e = np.sqrt(v_p + v_r + v_f)
            else:
                d = data[y, x] * f
                v_f = np.float32(0.0)
                v_p = vp[y, x] * f2
                v_r = vr[y, x] * f2
                e = np.sqrt(v_p + v_r)
            q = dq[y, x] | fdq
            # jwst's match_nans_and_flags: NaN anywhere or DO_NOT_USE -> NaN everywhere + DO_NOT_USE
            if np.isnan(d) or np.isnan(e) or np.isnan(v_p) or np.isnan(v_r) or np.isnan(v_f) or (q & dnu):
                q |= dnu
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
            dq[y, x] = q


def flat_field_image(data: np.ndarray, err: np.ndarray, dq: np.ndarray, var_poisson: np.ndarray,
                     var_rnoise: np.ndarray, flat: np.ndarray, flat_err: np.ndarray, flat_dq: np.ndarray,
                     inverse: bool = False) -> np.ndarray:
    """Flat-field a count-rate image in place; returns VAR_FLAT.

    jwst 3.0's ``apply_flat_field`` for an ImageModel followed by ``match_nans_and_flags``
    (jwst documentation "flat_field", "Imaging and non-NIRSpec spectroscopic data"), in one
    pass: the flat's DQ gets DO_NOT_USE | NO_FLAT_FIELD where F is NaN or 0 and DO_NOT_USE
    where it has NO_FLAT_FIELD, and F = 1 there; SCI /= F; VAR_FLAT = SCI**2 / F**2 *
    F_err**2 (SCI already divided); VAR_POISSON /= F**2; VAR_RNOISE /= F**2; ERR =
    sqrt(VAR_POISSON + VAR_RNOISE + VAR_FLAT); DQ |= flat DQ; a pixel NaN in any of them or
    DO_NOT_USE becomes NaN in all and DO_NOT_USE. With ``inverse`` SCI *= F, the variances
    *= F**2, VAR_FLAT = 0 and ERR = sqrt(VAR_POISSON + VAR_RNOISE). float32 arithmetic, as
    jwst's.

    Parameters
    ----------
    data, err, var_poisson, var_rnoise : numpy.ndarray
        float32 (ny, nx): DN/s and (DN/s)**2, modified in place.
    dq : numpy.ndarray
        uint32 (ny, nx), modified in place.
    flat, flat_err : numpy.ndarray
        float32 (ny, nx), dimensionless, cut to the science window.
    flat_dq : numpy.ndarray
        uint32 (ny, nx).
    inverse : bool
        Multiply instead of divide.

    Returns
    -------
    numpy.ndarray
        VAR_FLAT float32 (ny, nx), (DN/s)**2.
    """
    var_flat = np.empty_like(data)
    _flat_image_kernel(data, err, dq, var_poisson, var_rnoise, var_flat,
                       np.ascontiguousarray(flat, np.float32), np.ascontiguousarray(flat_err, np.float32),
                       np.ascontiguousarray(flat_dq, np.uint32), bool(inverse))
    return var_flat


# ------------------------------------------------------------------------------------------ declared step
def _nirspec_spectral(keys: ExposureKeys) -> bool:
    return keys.instrument == "NIRSPEC" and keys.exp_type in NRS_SPEC_MODES


def _reads(spec: StepSpec, keys: ExposureKeys, params) -> tuple[str, ...]:
    """FFLAT, SFLAT, DFLAT for NIRSpec spectroscopy (jwst's NIRSpec flats); FLAT otherwise."""
    return ("fflat", "sflat", "dflat") if _nirspec_spectral(keys) else ("flat",)


def _applies(keys: ExposureKeys) -> bool:
    """Say whether the step applies: jwst SKIPs NIRSpec types neither spectral nor imaging."""
    return keys.instrument != "NIRSPEC" or keys.exp_type in NRS_SPEC_MODES + NRS_IMAGING_MODES


def _prepare(model, path, info, step):
    """Return (flat, err, dq) cut to the window.

    None when the flat is smaller than the science array (jwst then SKIPs).
    """
    full = getattr(model, "data", None)
    if full is not None and (np.shape(full)[-1] < info.xsize or np.shape(full)[-2] < info.ysize):
        return None
    return (ref_array(model, "data", info, path, step, dtype=np.float32),
            ref_array(model, "err", info, path, step, dtype=np.float32),
            ref_array(model, "dq", info, path, step, dtype=np.uint32))


def _run_image(state, ctx) -> str:
    """calwebb_image2: the rate image of an ImageState, in place."""
    if _nirspec_spectral(state.keys):
        raise InputError(f"{state.path}: NIRSpec spectroscopic flats (FFLAT/SFLAT/DFLAT) are not implemented "
                         "by the calib engine; use the jwst engine")
    info = state.info
    prepared = ctx.prepared("flat", ("flat", "err", "dq"), lambda m, p: _prepare(m, p, info, ctx.name))
    if prepared is None:
        return "SKIPPED"
    flat, flat_err, flat_dq = prepared
    m = state.model
    m.var_flat = flat_field_image(m.data, m.err, m.dq, m.var_poisson, m.var_rnoise, flat, flat_err, flat_dq,
                                  inverse=ctx.params["inverse"])
    return "COMPLETE"


def _run(state, ctx) -> str:
    if hasattr(state, "background"):            # calib.images.ImageState (calwebb_image2)
        return _run_image(state, ctx)
    if not hasattr(state, "cal"):
        raise InputError(f"{state.path}: the calib engine's flat_field runs on FGS guiding-mode count "
                         "rates (calwebb_guider) and count-rate images (calwebb_image2) only")
    cal = state.cal
    if cal is None:                      # guider_cds was skipped: no count rates to correct
        return "SKIPPED"
    info = state.info
    prepared = ctx.prepared("flat", ("flat", "err", "dq"), lambda m, p: _prepare(m, p, info, ctx.name))
    if prepared is None:
        return "SKIPPED"
    flat, flat_err, flat_dq = prepared
    cal["data"], cal["err"], state.dq, cal["var_flat"] = flat_field_rates(
        cal["data"], cal["err"], state.dq, flat, flat_err, flat_dq, inverse=ctx.params["inverse"])
    return "COMPLETE"


STEP = StepSpec(
    name="flat_field", jwst_class="jwst.flatfield.FlatFieldStep",
    reftypes=("flat", "fflat", "sflat", "dflat"), run=_run, reads=_reads, applies=_applies,
    params=(Param("save_interpolated_flat", "boolean", False, support=SUPPORT_IGNORED,
                  doc="save NIRSpec's interpolated flat as a file (output option)"),
            Param("user_supplied_flat", "string", None, support=SUPPORT_DEFAULT_ONLY,
                  doc="a user flat in place of the references (jwst engine only)"),
            Param("inverse", "boolean", False, doc="multiply by the flat instead of dividing")),
    doc="count rates / FLAT, ERR with the flat's error, DQ |= flat DQ (jwst flat_field, imaging flats).",
)
