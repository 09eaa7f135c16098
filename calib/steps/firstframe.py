"""firstframe / lastframe (MIRI): flag the first / last group DO_NOT_USE.

Method: jwst documentation "firstframe" and "lastframe" — GROUPDQ of group 0 |= DO_NOT_USE
when NGROUPS > 3 (firstframe, default bump_saturation off), and GROUPDQ of the last group
|= DO_NOT_USE when NGROUPS > 2 (lastframe), in every integration; otherwise nothing changes.
"""
from __future__ import annotations

import numpy as np

from calib import dqflags

__all__ = ["firstframe", "lastframe"]


def firstframe(gdq: np.ndarray):
    """gdq uint8 (nints, ngroups, ny, nx); returns ``(gdq, "COMPLETE")``."""
    if gdq.shape[1] > 3:
        gdq[:, 0] |= np.uint8(dqflags.DO_NOT_USE)
    return gdq, "COMPLETE"


def lastframe(gdq: np.ndarray):
    """gdq uint8 (nints, ngroups, ny, nx); returns ``(gdq, "COMPLETE")``."""
    if gdq.shape[1] > 2:
        gdq[:, -1] |= np.uint8(dqflags.DO_NOT_USE)
    return gdq, "COMPLETE"
