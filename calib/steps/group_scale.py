"""group_scale: rescale groups by FRMDIVSR/NFRAMES (jwst group_scale step).

Method: jwst documentation "group_scale" — when the on-board frame averaging divided by
FRMDIVSR instead of NFRAMES (NFRAMES not a power of two), every group is multiplied by
FRMDIVSR/NFRAMES. SKIPPED when FRMDIVSR is missing or equals NFRAMES, as jwst does.
"""
from __future__ import annotations

import numpy as np

__all__ = ["group_scale"]


def group_scale(data: np.ndarray, nframes: int | None, frame_divisor: int | None):
    """Rescale ``data`` in place.

    data: float32 (nints, ngroups, ny, nx), DN. Returns ``(data, status)``.
    """
    if nframes is None or frame_divisor is None or int(frame_divisor) == int(nframes):
        return data, "SKIPPED"
    scale = np.float32(float(frame_divisor) / float(nframes))
    data *= scale
    return data, "COMPLETE"
