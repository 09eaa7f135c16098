"""reset (MIRI): subtract the reset anomaly from the first groups of each integration.

Method: jwst documentation "reset" (calwebb_detector1, MIRI only). The RESET reference
(``ResetModel``: SCI float32 (reset_nints, reset_ngroups, ny, nx) in DN, DQ uint32 (ny, nx))
holds, for the first ``reset_ngroups`` groups (header NGROUPS of the reference) of the
first ``reset_nints`` integrations (header NINTS), the DN offset that the reset of the
MIRI detector leaves at the start of a ramp. For science integration ``i`` (counted in
the exposure, so a segment file starting at INTSTART uses the reference integrations of
its place in the exposure), reference integration ``min(i, reset_nints - 1)`` is
subtracted from the first ``min(NGROUPS, reset_ngroups)`` groups; later groups are left
alone. NaN in the reference SCI is treated as 0 (as jwst), and the reference DQ is OR-ed
into PIXELDQ.

jwst also ORs the reference DQ once per integration; the result is the same.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from calib.errors import ReferenceFileError
from calib.references import ref_array, subarray_of
from calib.step import StepSpec

__all__ = ["prepare_reset", "reset", "STEP"]


def prepare_reset(ref: np.ndarray, ref_dq: np.ndarray, ref_nints: int | None,
                  ref_ngroups: int | None, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Check and prepare a RESET reference cut to the science subarray.

    ref: float32 (n_ints, n_groups, ny, nx) DN; ref_dq: uint32 (ny, nx).
    ref_nints / ref_ngroups: the reference's NINTS / NGROUPS keywords (None: the array's
    own extent). Returns ``(table, dq)``: ``table`` float32 (reset_nints, reset_ngroups,
    ny, nx) with NaN replaced by 0, a new array (the reference model is not modified).
    Raises ``ReferenceFileError`` naming ``path`` when SCI is not 4-D, is empty, or the
    keywords claim more integrations/groups than SCI holds.
    """
    ref = np.asarray(ref)
    if ref.ndim != 4 or ref.shape[0] < 1 or ref.shape[1] < 1:
        raise ReferenceFileError(f"reset: reference file {path!r} SCI must be 4-D "
                                 f"(nints, ngroups, ny, nx), got shape {ref.shape}")
    n_int = ref.shape[0] if ref_nints is None else int(ref_nints)
    n_grp = ref.shape[1] if ref_ngroups is None else int(ref_ngroups)
    if not (1 <= n_int <= ref.shape[0]) or not (1 <= n_grp <= ref.shape[1]):
        raise ReferenceFileError(
            f"reset: reference file {path!r} has NINTS={ref_nints}, NGROUPS={ref_ngroups} "
            f"but SCI shape {ref.shape}")
    table = np.nan_to_num(np.asarray(ref[:n_int, :n_grp], dtype=np.float32), nan=0.0,
                          posinf=np.inf, neginf=-np.inf)
    if not np.isfinite(table).all():
        raise ReferenceFileError(f"reset: reference file {path!r} SCI has infinite values")
    return np.ascontiguousarray(table), np.asarray(ref_dq, dtype=np.uint32)


@nb.njit(parallel=True, cache=True)
def _subtract(data, table, int_offset, ngroups_corr):  # pragma: no cover - jit
    nints, _, ny, nx = data.shape
    rn = table.shape[0]
    for y in nb.prange(ny):
        for i in range(nints):
            ir = min(i + int_offset, rn - 1)
            for g in range(ngroups_corr):
                for x in range(nx):
                    data[i, g, y, x] -= table[ir, g, y, x]


def reset(data: np.ndarray, pixeldq: np.ndarray, prepared: tuple[np.ndarray, np.ndarray],
          integration_start: int = 1):
    """Apply the reset correction in place.

    data: float32 (nints, ngroups, ny, nx) DN; pixeldq: uint32 (ny, nx);
    prepared: output of :func:`prepare_reset` (already cut to (ny, nx)).
    integration_start: INTSTART of the file (1 unless a segment of a longer exposure).
    Returns ``(data, pixeldq, "COMPLETE")``.
    """
    table, rdq = prepared
    if table.shape[-2:] != data.shape[-2:]:
        raise ReferenceFileError(f"reset: reference shape {table.shape[-2:]} does not match "
                                 f"the science frame {data.shape[-2:]}")
    ng = min(data.shape[1], table.shape[1])
    _subtract(data, table, max(int(integration_start) - 1, 0), ng)
    pixeldq |= rdq
    return data, pixeldq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _prepare(model, path: str, info, step: str):
    table = subarray_of(np.asarray(model.data) if model.data is not None else None, model, info, path, step, "SCI")
    rdq = ref_array(model, "dq", info, path, step, dtype=np.uint32)
    return prepare_reset(table, rdq, model.meta.exposure.nints, model.meta.exposure.ngroups, path)


def _run(state, ctx) -> str:
    info = state.info
    table = ctx.prepared("reset", ("table",), lambda m, p: _prepare(m, p, info, ctx.name))
    state.data, state.pdq, status = reset(state.data, state.pdq, table, integration_start=info.integration_start)
    return status


STEP = StepSpec(
    name="reset", jwst_class="jwst.reset.ResetStep", reftypes=("reset",), run=_run,
    applies=lambda keys: keys.detector.startswith("MIR"),
    doc="MIRI: subtract the RESET anomaly from the first groups of each integration (jwst reset).",
)
