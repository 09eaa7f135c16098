"""firstframe / lastframe (MIRI): flag the first / last group DO_NOT_USE.

Method: jwst documentation "firstframe" and "lastframe" — GROUPDQ of group 0 |= DO_NOT_USE
when NGROUPS > 3 (firstframe; with ``bright_use_group1``, jwst 3.0's default, not where
group 3 is SATURATED), and GROUPDQ of the last group
|= DO_NOT_USE when NGROUPS > 2 (lastframe), in every integration; otherwise nothing changes.
"""
from __future__ import annotations

import numpy as np

from calib import dqflags
from calib.params import Param
from calib.step import StepSpec

__all__ = ["firstframe", "firstframe_bright", "lastframe", "FIRSTFRAME", "LASTFRAME"]


def firstframe(gdq: np.ndarray):
    """Flag group 1 DO_NOT_USE in every integration (in place) when NGROUPS > 3.

    gdq uint8 (nints, ngroups, ny, nx). Returns ``(gdq, status)``: SKIPPED with NGROUPS
    <= 3, as jwst.
    """
    if gdq.shape[1] <= 3:
        return gdq, "SKIPPED"
    gdq[:, 0] |= np.uint8(dqflags.DO_NOT_USE)
    return gdq, "COMPLETE"


def lastframe(gdq: np.ndarray):
    """Flag the last group DO_NOT_USE in every integration (in place) when NGROUPS > 2.

    gdq uint8 (nints, ngroups, ny, nx). Returns ``(gdq, status)``: SKIPPED with NGROUPS
    <= 2, as jwst.
    """
    if gdq.shape[1] <= 2:
        return gdq, "SKIPPED"
    gdq[:, -1] |= np.uint8(dqflags.DO_NOT_USE)
    return gdq, "COMPLETE"


def firstframe_bright(gdq: np.ndarray, pdq: np.ndarray):
    """Apply firstframe with ``bright_use_group1``: keep group 1 where group 3 is SATURATED.

    gdq uint8 (nints, ngroups, ny, nx), pdq uint32 (ny, nx), both updated in place: group 0
    gets DO_NOT_USE except in pixels whose third group is SATURATED (those pixels get
    FLUX_ESTIMATED in PIXELDQ when any integration kept its first group). Returns
    ``(gdq, pdq, status)``; SKIPPED with NGROUPS <= 3, as jwst.
    """
    if gdq.shape[1] <= 3:
        return gdq, pdq, "SKIPPED"
    saturated3 = (gdq[:, 2] & np.uint8(dqflags.SATURATED)) != 0
    first = gdq[:, 0]
    first[~saturated3] |= np.uint8(dqflags.DO_NOT_USE)
    pdq[saturated3.any(axis=0)] |= np.uint32(dqflags.FLUX_ESTIMATED)
    return gdq, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared steps
def _run_firstframe(state, ctx) -> str:
    if ctx.params["bright_use_group1"]:
        state.gdq, state.pdq, status = firstframe_bright(state.gdq, state.pdq)
    else:
        state.gdq, status = firstframe(state.gdq)
    return status


def _run_lastframe(state, ctx) -> str:
    state.gdq, status = lastframe(state.gdq)
    return status


FIRSTFRAME = StepSpec(
    name="firstframe", jwst_class="jwst.firstframe.FirstFrameStep", run=_run_firstframe,
    skip_default=True,
    params=(Param("bright_use_group1", "boolean", True,
                  doc="do not flag group 1 where group 3 is SATURATED"),),
    doc="MIRI: group 1 DO_NOT_USE when NGROUPS > 3 (jwst firstframe; off by default in jwst 3.0).",
)
LASTFRAME = StepSpec(
    name="lastframe", jwst_class="jwst.lastframe.LastFrameStep", run=_run_lastframe,
    doc="MIRI: last group DO_NOT_USE when NGROUPS > 2 (jwst lastframe).",
)
