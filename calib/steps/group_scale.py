"""group_scale: rescale groups by FRMDIVSR/NFRAMES (jwst group_scale step).

Method: jwst documentation "group_scale" — when the on-board frame averaging divided by
FRMDIVSR instead of NFRAMES (NFRAMES not a power of two), every group is multiplied by
FRMDIVSR/NFRAMES. SKIPPED when FRMDIVSR is missing or equals NFRAMES, as jwst does.
"""
from __future__ import annotations

import numpy as np
from calib.step import StepSpec

__all__ = ["group_scale", "STEP"]


def group_scale(data: np.ndarray, nframes: int | None, frame_divisor: int | None):
    """Rescale ``data`` in place.

    data: float32 (nints, ngroups, ny, nx), DN. Returns ``(data, status)``.
    """
    if nframes is None or frame_divisor is None or int(frame_divisor) == int(nframes):
        return data, "SKIPPED"
    scale = np.float32(float(frame_divisor) / float(nframes))
    data *= scale
    return data, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    info = state.info
    state.data, status = group_scale(state.data, info.nframes, info.frame_divisor)
    return status


STEP = StepSpec(
    name="group_scale", jwst_class="jwst.group_scale.GroupScaleStep", run=_run,
    doc="groups *= FRMDIVSR/NFRAMES when on-board averaging divided by FRMDIVSR (jwst group_scale).",
)
