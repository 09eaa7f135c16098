"""rscd (MIRI): flag the initial groups affected by the reset switch charge decay.

Method: jwst documentation "rscd" (jwst >= 1.16 "baseline" flagging; calwebb_detector1,
MIRI only). The RSCD reference (``RSCDModel``, table RSCD_GROUP_SKIP with columns
SUBARRAY, READPATT, GROUP_SKIP1, GROUP_SKIP) gives, for the exposure's SUBARRAY and
READPATT (old name SUBPRISM read as SLITLESSPRISM), how many initial groups to set
DO_NOT_USE in the first integration (GROUP_SKIP1) and in later ones (GROUP_SKIP). The
rules, in order:

* NGROUPS < 3: nothing is flagged, the step is SKIPPED;
* NGROUPS <= 5: one group is skipped in every integration;
* otherwise the table's counts, lowered to ``max(0, NGROUPS - 3)`` when they would leave
  fewer than 3 groups (for later integrations only when NINTS > 1);
* a negative GROUP_SKIP1 (deprecated reference model) means 1;
* per pixel and integration, when group ``skip + 1`` (0-indexed) is SATURATED but group 0
  is not, the count is lowered one group at a time (and the test repeated one group
  earlier) while any such pixel remains in the integration range; pixels lowered in any
  integration of the range get FLUX_ESTIMATED in PIXELDQ.

A segment file whose INTSTART is not 1 holds no first integration: all its integrations
use GROUP_SKIP. The header keywords INT1SKIP, INT2SKIP, INT1UGP1, INT2UGP1, INT1SATG,
INT2SATG (jwst's meta.rscd) are returned for the products.
"""
from __future__ import annotations

import numpy as np

from calib import dqflags
from calib.errors import ReferenceFileError
from calib.step import StepSpec

__all__ = ["rscd_parameters", "rscd", "STEP"]

_SAT = np.uint8(dqflags.SATURATED)
_DNU = np.uint8(dqflags.DO_NOT_USE)


def rscd_parameters(table, subarray: str, readpatt: str, path: str) -> tuple[int, int] | None:
    """Look up ``(group_skip1, group_skip)`` for SUBARRAY/READPATT in an RSCD_GROUP_SKIP table.

    table: the reference's table (rows with fields subarray, readpatt, group_skip1,
    group_skip). Returns None when the combination is absent (the step is then SKIPPED,
    as in jwst). Raises ``ReferenceFileError`` naming ``path`` when the table is missing
    or lacks a column.
    """
    if table is None or len(table) == 0:
        raise ReferenceFileError(f"rscd: reference file {path!r} has no RSCD_GROUP_SKIP table")
    names = {n.lower(): n for n in table.dtype.names or ()}
    need = ("subarray", "readpatt", "group_skip1", "group_skip")
    missing = [c for c in need if c not in names]
    if missing:
        raise ReferenceFileError(f"rscd: reference file {path!r} RSCD_GROUP_SKIP lacks column(s) "
                                 f"{', '.join(missing)}")
    sub = subarray.strip().upper()
    if sub == "SUBPRISM":
        sub = "SLITLESSPRISM"
    patt = readpatt.strip().upper()

    def text(v):
        return (v.decode() if isinstance(v, bytes) else str(v)).strip().upper()

    for row in table:
        if text(row[names["subarray"]]) == sub and text(row[names["readpatt"]]) == patt:
            return int(row[names["group_skip1"]]), int(row[names["group_skip"]])
    return None


def _skip_counts(gdq: np.ndarray, nskip: int) -> tuple[np.ndarray, bool]:
    """Return the number of initial groups to flag per integration and pixel.

    Per integration and pixel, the number of initial groups to flag (int16
    (n, ny, nx)), lowered for pixels that saturate early (see module docstring), and
    whether any pixel needed lowering.
    """
    skip = np.full((gdq.shape[0],) + gdq.shape[2:], nskip, np.int16)
    g0_sat = (gdq[:, 0] & _SAT) != 0
    level = nskip + 1          # 0-indexed group tested for saturation
    problem = ((gdq[:, level] & _SAT) != 0) & ~g0_sat
    any_problem = bool(problem.any())
    while level >= 1 and problem.any():
        skip[problem] -= 1
        np.maximum(skip, 0, out=skip)
        level -= 1
        if level < 1:
            break
        problem = ((gdq[:, level] & _SAT) != 0) & ~g0_sat
    return skip, any_problem


def _apply(gdq: np.ndarray, skip: np.ndarray) -> None:
    for g in range(gdq.shape[1]):
        sel = skip > g
        if not sel.any():
            break
        view = gdq[:, g]
        view[sel] |= _DNU


def rscd(gdq: np.ndarray, pixeldq: np.ndarray, params: tuple[int, int] | None, *,
         exposure_nints: int, integration_start: int = 1):
    """Flag RSCD-affected initial groups DO_NOT_USE in place.

    gdq: uint8 (nints, ngroups, ny, nx) GROUPDQ after saturation; pixeldq: uint32 (ny, nx).
    params: ``(group_skip1, group_skip)`` from :func:`rscd_parameters` (None: no entry for
    this SUBARRAY/READPATT -> SKIPPED). exposure_nints: NINTS of the exposure (may exceed
    the file's integrations for segmented data); integration_start: INTSTART.
    Returns ``(gdq, pixeldq, status, keywords)`` where keywords maps jwst meta.rscd
    attribute names to values (empty when SKIPPED).
    """
    if params is None:
        return gdq, pixeldq, "SKIPPED", {}
    ngroups = gdq.shape[1]
    if ngroups < 3:
        return gdq, pixeldq, "SKIPPED", {}
    skip1, skip2 = params
    if skip1 < 0:
        skip1 = 1
    if ngroups <= 5:
        skip1 = skip2 = 1
    if ngroups < skip1 + 3:
        skip1 = max(0, ngroups - 3)
    if exposure_nints > 1 and ngroups < skip2 + 3:
        skip2 = max(0, ngroups - 3)
    keywords: dict[str, int] = {}
    ranges = []
    if integration_start == 1:
        ranges.append((0, 1, skip1, "int1"))
        later = 1
    else:
        later = 0
    if exposure_nints > 1 and later < gdq.shape[0]:
        ranges.append((later, gdq.shape[0], skip2, "int2p"))
    for a, b, nskip, tag in ranges:
        part = gdq[a:b]
        skip, any_problem = _skip_counts(part, nskip)
        lowered = (skip < nskip).any(axis=0)
        n_one = 0
        if any_problem:
            pixeldq[lowered] |= np.uint32(dqflags.FLUX_ESTIMATED)
            n_one = int((skip == 0).any(axis=0).sum())
        _apply(part, skip)
        keywords[f"keep_bright_firstgroup_{tag}"] = n_one
        keywords[f"keep_groups_saturation_{tag}"] = int(lowered.sum())
        keywords[f"ngroups_skip_{tag}"] = int(nskip)
    return gdq, pixeldq, "COMPLETE", keywords


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    info = state.info
    # the reference is small: only the looked-up counts are kept by the cache
    pars = ctx.prepared("rscd", ("group_skip", info.subarray, info.readpatt),
                        lambda m, p: rscd_parameters(m.rscd_group_skip_table, info.subarray, info.readpatt, p))
    nints_exp = state.model.meta.exposure.nints
    state.gdq, state.pdq, status, keywords = rscd(state.gdq, state.pdq, pars,
                                                  exposure_nints=int(nints_exp or info.nints),
                                                  integration_start=info.integration_start)
    for name, value in keywords.items():      # INT1SKIP ... in the products' headers
        setattr(state.model.meta.rscd, name, value)
    return status


STEP = StepSpec(
    name="rscd", jwst_class="jwst.rscd.RscdStep", reftypes=("rscd",), run=_run,
    applies=lambda keys: keys.detector.startswith("MIR"),
    doc="MIRI: flag the initial groups the reset switch charge decay affects DO_NOT_USE (jwst rscd).",
)
