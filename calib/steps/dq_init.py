"""dq_init: initialise PIXELDQ from the MASK reference (jwst dq_init step).

Method: jwst documentation "dq_init" — PIXELDQ |= MASK.DQ (cut to the subarray with the
reference's SUBSTRT/SUBSIZE), and GROUPDQ of every group |= (MASK.DQ & DO_NOT_USE).
FGS guiding-mode data (calwebb_guider's GuiderRawModel, jwst's ``FGS_GUIDE_EXP_TYPES``)
have one 2-D DQ array and no GROUPDQ: DQ |= MASK.DQ only.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.params import SUPPORT_DEFAULT_ONLY, Param
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["dq_init", "dq_init_kernel", "STEP"]


@numba.njit(cache=True, parallel=True)
def dq_init_kernel(gdq, pdq, mask):
    """Propagate the MASK reference into PIXELDQ and GROUPDQ, in place.

    gdq uint8 (nints, ngroups, ny, nx), pdq uint32 (ny, nx), mask uint32 (ny, nx).

    One pass over the mask per row (rows in parallel): PIXELDQ |= mask, and the columns
    with DO_NOT_USE are listed, so that only their GROUPDQ elements are visited.
    """
    nints, ngroups, ny, nx = gdq.shape
    for y in numba.prange(ny):            # rows in parallel, x innermost (contiguous)
        cols = np.empty(nx, np.int64)
        nc = 0
        for x in range(nx):
            m = mask[y, x]
            pdq[y, x] |= m
            if m & 1:
                cols[nc] = x
                nc += 1
        for i in range(nints):
            for g in range(ngroups):
                for j in range(nc):
                    gdq[i, g, y, cols[j]] |= np.uint8(1)


def dq_init(gdq: np.ndarray, pdq: np.ndarray, mask: np.ndarray):
    """Apply the MASK reference DQ (uint32, (ny, nx), already cut to the subarray).

    Returns ``(gdq, pdq, "COMPLETE")``.
    """
    assert dqflags.DO_NOT_USE == 1
    dq_init_kernel(gdq, pdq, np.ascontiguousarray(mask, dtype=np.uint32))
    return gdq, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    info = state.info
    mask = ctx.prepared("mask", ("dq",), lambda m, p: ref_array(m, "dq", info, p, ctx.name, dtype=np.uint32))
    if getattr(state, "gdq", None) is None:
        # guider data (calib.ramps.GuiderState): the mask goes into the one DQ array
        state.dq |= mask
        return "COMPLETE"
    state.gdq, state.pdq, status = dq_init(state.gdq, state.pdq, mask)
    return status


STEP = StepSpec(
    name="dq_init", jwst_class="jwst.dq_init.DQInitStep", reftypes=("mask",), run=_run,
    params=(Param("user_supplied_dq", "string", None, support=SUPPORT_DEFAULT_ONLY,
                  doc="a user DQ file merged into PIXELDQ (jwst engine only)"),),
    doc="PIXELDQ |= MASK.DQ; GROUPDQ |= DO_NOT_USE where the mask has it (jwst dq_init).",
)
