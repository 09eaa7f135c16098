"""superbias: subtract the SUPERBIAS reference from every group (jwst superbias step).

Method: jwst documentation "superbias" — data[i, g] -= bias for every integration and
group; NaN in the bias is treated as 0; PIXELDQ |= SUPERBIAS.DQ.
"""
from __future__ import annotations

import numba
import numpy as np
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["superbias", "superbias_kernel", "STEP"]


@numba.njit(cache=True, parallel=True)
def superbias_kernel(data, bias):
    """Subtract the superbias from every group, in place.

    data float32 (nints, ngroups, ny, nx) DN; bias float32 (ny, nx) DN (NaN counts as 0, as jwst).
    """
    nints, ngroups, ny, nx = data.shape
    for y in numba.prange(ny):            # rows in parallel, x innermost (contiguous)
        row = np.empty(nx, np.float32)
        for x in range(nx):
            b = bias[y, x]
            row[x] = np.float32(0.0) if np.isnan(b) else b
        for i in range(nints):
            for g in range(ngroups):
                for x in range(nx):
                    data[i, g, y, x] -= row[x]


def superbias(data, pdq, bias, bias_dq):
    """Subtract ``bias`` (float32 (ny, nx), DN); OR ``bias_dq`` into ``pdq``.

    Returns ``(data, pdq, "COMPLETE")``.
    """
    superbias_kernel(data, np.ascontiguousarray(bias, dtype=np.float32))
    pdq |= np.asarray(bias_dq, dtype=np.uint32)
    return data, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    info, step = state.info, ctx.name
    bias = ctx.prepared("superbias", ("data",), lambda m, p: ref_array(m, "data", info, p, step, dtype=np.float32))
    bdq = ctx.prepared("superbias", ("dq",), lambda m, p: ref_array(m, "dq", info, p, step, dtype=np.uint32))
    state.data, state.pdq, status = superbias(state.data, state.pdq, bias, bdq)
    return status


STEP = StepSpec(
    name="superbias", jwst_class="jwst.superbias.SuperBiasStep", reftypes=("superbias",), run=_run,
    doc="near-IR: every group -= SUPERBIAS; PIXELDQ |= its DQ (jwst superbias).",
)
