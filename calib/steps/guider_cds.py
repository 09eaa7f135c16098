"""guider_cds: count rates of FGS guiding-mode data by correlated double sampling.

Method: jwst documentation "guider_cds" and jwst 3.0's ``GuiderCdsStep``. Per pixel, with
TGROUP the group time (s), G the GAIN reference (e-/DN) and RN the READNOISE reference (DN):

* FGS_ACQ1, FGS_ACQ2, FGS_TRACK: one rate per integration, ``(group 2 - group 1) / TGROUP``;
* FGS_FINEGUIDE: one rate per integration, ``(mean of the last 4 groups - mean of the first
  4 groups) / TGROUP`` (divided by TGROUP as jwst does, although the two means are four
  group times apart in an up-the-ramp readout);
* FGS_ID-IMAGE, FGS_ID-STACK: one image, ``min(CDS of integration 1, CDS of integration 2)
  / TGROUP`` (the minimum rejects a cosmic ray in either integration).

Variances, (DN/s)**2: ``VAR_RN = 2 (RN / TGROUP)**2`` and ``VAR_P = D / (G TGROUP)``, where D
is the CDS difference in DN (jwst's expression), set to 0 where negative; ``ERR =
sqrt(VAR_RN + VAR_P)`` (NaN or inf where the gain is NaN or 0, as in jwst). The references
are cut to the science window; for an ID-STACK exposure, whose stacked strips do not map
onto the detector, a reference that does not cover the window is replaced by its mean (jwst).

Step: skipped when the GAIN or the READNOISE reference is N/A (as jwst); it replaces the ramp
of the :class:`calib.ramps.GuiderState` by the rates (``state.cal``).
"""
from __future__ import annotations

import numpy as np

from calib.errors import InputError, ReferenceFileError
from calib.references import ExposureInfo, ref_array
from calib.step import StepSpec

__all__ = ["guider_cds", "STEP"]


def guider_cds(data: np.ndarray, exp_type: str, tgroup: float, gain: np.ndarray,
               readnoise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Count rates and their errors from guiding-mode ramps.

    Parameters
    ----------
    data : numpy.ndarray
        float32 (nints, ngroups, ny, nx), DN (raw counts; dq_init does not change them).
    exp_type : str
        EXP_TYPE (FGS_ACQ1, FGS_ACQ2, FGS_TRACK, FGS_FINEGUIDE, FGS_ID-IMAGE, FGS_ID-STACK).
    tgroup : float
        TGROUP, s.
    gain : numpy.ndarray
        float32 (ny, nx), e-/DN.
    readnoise : numpy.ndarray
        float32 (ny, nx), DN.

    Returns
    -------
    rate, err : numpy.ndarray
        float32 (n, ny, nx), DN/s; n = nints, or 1 for the ID modes.

    Raises
    ------
    InputError
        With fewer than 2 groups, or an ID exposure with fewer than 2 integrations.
    """
    nints, ngroups = data.shape[:2]
    exp_type = exp_type.upper()
    is_id = exp_type.startswith("FGS_ID")
    if ngroups < 2:
        raise InputError(f"guider_cds: {exp_type} needs at least 2 groups, got {ngroups}")
    if is_id and nints < 2:
        raise InputError(f"guider_cds: {exp_type} needs 2 integrations, got {nints}")
    tg = np.float32(tgroup)
    # the readnoise term is the same for every integration
    var_rn_plane = 2 * (readnoise / tg) ** 2
    if is_id:
        # integrations 1 and 2 only, as jwst
        diff = np.minimum(data[1, 1] - data[1, 0], data[0, 1] - data[0, 0])
        rate = (diff / tg)[None]
        var_p = (diff / (gain * tg))[None]
        var_rn = var_rn_plane[None]
    else:
        if exp_type == "FGS_FINEGUIDE":
            diff = data[:, -4:].mean(axis=1) - data[:, :4].mean(axis=1)
        else:        # ACQ1, ACQ2, TRACK (jwst takes groups 2 and 1 whatever NGROUPS)
            diff = data[:, 1] - data[:, 0]
        rate = diff / tg
        var_p = diff / (gain * tg)
        var_rn = np.broadcast_to(var_rn_plane, diff.shape)
    var_p[var_p < 0] = 0.0
    err = (var_rn + var_p) ** 0.5
    return rate.astype(np.float32, copy=False), err.astype(np.float32, copy=False)


def _reference_plane(model, info: ExposureInfo, path: str, step: str, stacked: bool) -> np.ndarray:
    """Return the reference's SCI cut to the science window.

    The reference's SCI (float32) cut to the science window; for a stacked (ID-STACK)
    exposure that the reference does not cover, its mean on the window's shape (jwst).
    """
    try:
        return ref_array(model, "data", info, path, step, dtype=np.float32)
    except ReferenceFileError:
        full = getattr(model, "data", None)
        if not stacked or full is None or np.shape(full) == (info.ysize, info.xsize):
            raise
        return np.zeros((info.ysize, info.xsize), dtype=np.float32) + np.mean(full)


# ------------------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    info = state.info
    stacked = "STACK" in info.exp_type.upper()

    def plane(reftype):
        return ctx.prepared(reftype, ("data", stacked),
                            lambda m, p: _reference_plane(m, info, p, ctx.name, stacked))

    # data are float32 in the file order; the kernel reads them (group slices) without copies
    rate, err = guider_cds(state.data, info.exp_type, info.group_time, plane("gain"), plane("readnoise"))
    state.cal = {"data": rate, "err": err}
    state.data = None           # the ramp is no longer needed
    return "COMPLETE"


STEP = StepSpec(
    name="guider_cds", jwst_class="jwst.guider_cds.GuiderCdsStep", reftypes=("gain", "readnoise"),
    run=_run, skip_if_na=("gain", "readnoise"),
    doc="FGS guiding-mode count rates by CDS per integration (ID: min of 2 integrations; "
        "FINEGUIDE: last 4 - first 4 groups), ERR from GAIN and READNOISE (jwst guider_cds).",
)
