"""charge_migration: flag groups that may have lost charge to neighbours (jwst charge_migration).

charge_migration: flag groups whose signal may have lost charge to neighbours (jwst
charge_migration step, off by default there and here).

Method: jwst documentation "charge_migration": every group whose value (DN, after
dark_current) exceeds ``signal_threshold`` (default 25000 DN) and whose GROUPDQ is not
exactly DO_NOT_USE is flagged CHARGELOSS | DO_NOT_USE, together with all later groups of
that integration, in the pixel and its 4 nearest neighbours. ramp_fit then recomputes
VAR_RNOISE of the affected integrations as if those groups had been usable.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.params import Param
from calib.step import StepSpec

__all__ = ["charge_migration", "charge_migration_kernel", "STEP"]

_DNU = np.uint8(dqflags.DO_NOT_USE)
_CHLO_DNU = np.uint8(dqflags.group["CHARGELOSS"] | dqflags.DO_NOT_USE)


@numba.njit(cache=True, parallel=True)
def charge_migration_kernel(data, gdq, threshold):
    """Flag CHARGELOSS | DO_NOT_USE from the first group above the threshold on.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape, updated in place;
    threshold in DN (jwst charge_migration ``signal_threshold``).
    """
    nints, ngroups, ny, nx = data.shape
    first = np.full((nints, ny, nx), ngroups, np.int64)   # first triggering group per pixel
    for y in numba.prange(ny):
        for x in range(nx):
            for i in range(nints):
                for g in range(ngroups):
                    if data[i, g, y, x] > threshold and gdq[i, g, y, x] != _DNU:
                        first[i, y, x] = g
                        break
    for y in numba.prange(ny):
        for x in range(nx):
            for i in range(nints):
                g0 = first[i, y, x]
                if y > 0:
                    g0 = min(g0, first[i, y - 1, x])
                if y < ny - 1:
                    g0 = min(g0, first[i, y + 1, x])
                if x > 0:
                    g0 = min(g0, first[i, y, x - 1])
                if x < nx - 1:
                    g0 = min(g0, first[i, y, x + 1])
                for g in range(g0, ngroups):
                    gdq[i, g, y, x] |= _CHLO_DNU


def charge_migration(data, gdq, *, signal_threshold: float = 25000.0):
    """Flag charge migration in ``gdq`` (in place). Returns ``(gdq, "COMPLETE")``.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape. jwst skips the step
    when there are fewer than 3 groups (status SKIPPED).
    """
    if data.shape[1] < 3:
        return gdq, "SKIPPED"
    charge_migration_kernel(data, gdq, np.float32(signal_threshold))
    return gdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    state.gdq, status = charge_migration(state.data, state.gdq,
                                         signal_threshold=float(ctx.params["signal_threshold"]))
    return status


STEP = StepSpec(
    name="charge_migration", jwst_class="jwst.charge_migration.ChargeMigrationStep", run=_run,
    skip_default=True,
    params=(Param("signal_threshold", "float", 25000.0, doc="DN above which a group and its neighbours "
                  "are flagged CHARGELOSS"),),
    doc="flag groups above signal_threshold and their 4 neighbours CHARGELOSS|DO_NOT_USE (jwst charge_migration).",
)
