"""dark_current: subtract the DARK reference (jwst dark_current step).

Method: jwst documentation "dark_current": the dark reference frames are matched to the
science group structure. When the reference's NFRAMES/GROUPGAP equal the science's, dark
group g is subtracted from science group g; otherwise dark frames are averaged: science group
g takes the mean of dark frames ``start .. start+nframes-1`` with ``start`` advancing by
``nframes + groupgap`` (a dark with more frames per group, or a larger gap, than the science
cannot be matched: SKIPPED, as jwst). A dark shorter than the science is extrapolated from
the difference of its last two groups. NaN in the dark counts as 0. PIXELDQ |= DARK.DQ
(for 4-D MIRI darks the OR over integrations of the first group's DQ).
MIRI 4-D darks (nints_dark, ngroups, ny, nx): integration i uses dark integration i, the
last one for later integrations.
"""
from __future__ import annotations

import numba
import numpy as np
from calib.errors import ReferenceFileError
from calib.params import SUPPORT_IGNORED, Param
from calib.references import ref_array, subarray_of
from calib.step import StepSpec

__all__ = ["dark_current", "dark_subtract_kernel", "match_dark", "prepare_dark", "STEP"]


@numba.njit(cache=True, parallel=True)
def dark_subtract_kernel(data, dark):
    """data float32 (nints, ngroups, ny, nx) DN, in place; dark float32 (ndint, ngroups, ny, nx)."""
    nints, ngroups, ny, nx = data.shape
    nd = dark.shape[0]
    for y in numba.prange(ny):            # rows in parallel, x innermost (contiguous)
        for i in range(nints):
            di = i if i < nd else nd - 1
            for g in range(ngroups):
                for x in range(nx):
                    data[i, g, y, x] -= dark[di, g, y, x]


def _extrapolate(arr, n_extra):
    rate = arr[-1] - arr[-2]
    new = np.arange(1, n_extra + 1, dtype=np.float64)[:, None, None] * rate + arr[-1]
    return np.concatenate([arr, new.astype(arr.dtype)])


def _in_place_float32(dk: np.ndarray) -> np.ndarray | None:
    """``dk`` as native float32 without a copy (byte-swapped in place when the file's order
    is big-endian), or None when that is not possible."""
    if (dk.dtype.kind != "f" or dk.dtype.itemsize != 4 or not dk.flags.writeable
            or not dk.flags.c_contiguous):
        return None
    if not dk.dtype.isnative:
        dk.byteswap(inplace=True)
        dk = dk.view(dk.dtype.newbyteorder("="))
    return dk


def match_dark(dark, ngroups, nframes, groupgap, dark_nframes, dark_groupgap, *,
               reuse_input=False):
    """Average/copy dark frames (3-D (ngroups_d, ny, nx) or 4-D) to the science group structure.

    Returns float32 (ndint, ngroups, ny, nx), or None when the dark cannot be matched.
    ``reuse_input=True``: when the dark's readout already matches (same NFRAMES/GROUPGAP) and
    it is a contiguous float32 array, the result is a view of ``dark`` itself, converted in
    place (native byte order, NaN -> 0): no second full-size array; the caller must not use
    ``dark`` afterwards (the pipeline passes the array of a reference model it closes next).
    """
    dk = np.asarray(dark)
    if dk.ndim == 3:
        dk = dk[None]
    d_ngroups = dk.shape[1]
    sci_total = ngroups * nframes + (ngroups - 1) * groupgap
    drk_total = d_ngroups * dark_nframes + (d_ngroups - 1) * dark_groupgap
    if dark_nframes > nframes or dark_groupgap > groupgap:
        return None
    if (reuse_input and sci_total <= drk_total and nframes == dark_nframes
            and groupgap == dark_groupgap and (dk.shape[0] == 1 or ngroups == dk.shape[1])):
        own = _in_place_float32(dk)
        if own is not None:
            out = own[:, :ngroups]                 # contiguous: one integration or all groups
            for k in range(out.shape[0]):
                for g in range(ngroups):
                    plane = out[k, g]
                    plane[np.isnan(plane)] = 0.0
            return out
    if sci_total <= drk_total:
        # no extrapolation: only the frames used are converted, group by group (the same
        # values as converting the whole dark first, without a copy of all of it)
        out = np.empty((dk.shape[0], ngroups) + dk.shape[2:], np.float32)
        start = 0
        for g in range(ngroups):
            end = start + nframes
            if nframes == dark_nframes and groupgap == dark_groupgap:
                out[:, g] = dk[:, g]
                plane = out[:, g]
                plane[np.isnan(plane)] = 0.0
            else:
                frames = np.array(dk[:, start:end], dtype=np.float32)
                frames[np.isnan(frames)] = 0.0
                out[:, g] = frames[:, 0] if nframes == 1 else frames.mean(axis=1)
            start = end + groupgap
        return out
    d = np.array(dark, dtype=np.float32)     # a private copy: NaN are replaced below
    if d.ndim == 3:
        d = d[None]
    d_ngroups = d.shape[1]
    sci_total = ngroups * nframes + (ngroups - 1) * groupgap
    drk_total = d_ngroups * dark_nframes + (d_ngroups - 1) * dark_groupgap
    if sci_total > drk_total:
        n_extra = int(np.ceil((sci_total - drk_total + dark_groupgap) / (dark_nframes + dark_groupgap)))
        d = np.stack([_extrapolate(d[k], n_extra) for k in range(d.shape[0])])
    if dark_nframes > nframes or dark_groupgap > groupgap:
        return None
    d[np.isnan(d)] = 0.0
    if nframes == dark_nframes and groupgap == dark_groupgap:
        return np.ascontiguousarray(d[:, :ngroups])
    out = np.empty((d.shape[0], ngroups) + d.shape[2:], np.float32)
    start = 0
    for g in range(ngroups):
        end = start + nframes
        if nframes == 1:
            out[:, g] = d[:, start]
        else:
            out[:, g] = d[:, start:end].mean(axis=1)
        start = end + groupgap
    return out


def prepare_dark(dark, dark_dq, *, ngroups, nframes, groupgap, dark_nframes, dark_groupgap,
                 reuse_input=False):
    """The dark matched to the science readout and its PIXELDQ contribution.

    Returns ``(matched, ddq)``: matched float32 (ndint, ngroups, ny, nx) DN (NaN -> 0), or
    None when the dark cannot be matched (step SKIPPED); ddq uint32 (ny, nx). Depends only
    on the reference and the readout (NGROUPS, NFRAMES, GROUPGAP), so it can be cached.
    ``reuse_input``: see :func:`match_dark` (``dark`` may be converted in place).
    """
    matched = match_dark(dark, ngroups, nframes, groupgap, dark_nframes, dark_groupgap,
                         reuse_input=reuse_input)
    ddq = np.asarray(dark_dq, dtype=np.uint32)
    if ddq.ndim == 4:
        ddq = np.bitwise_or.reduce(ddq[:, 0], axis=0)
    elif ddq.ndim == 3:
        ddq = ddq[0]
    return matched, np.ascontiguousarray(ddq)


def dark_current(data, pdq, dark, dark_dq, *, nframes, groupgap, dark_nframes, dark_groupgap,
                 prepared=None):
    """Subtract the dark (DN) from ``data`` in place.

    dark float32 (ngroups_dark, ny, nx) or (nints_dark, ngroups_dark, ny, nx), DN, cut to
    the subarray; dark_dq uint32 (ny, nx) or 4-D; or ``prepared`` = the result of
    :func:`prepare_dark` (then dark/dark_dq are not read). Returns ``(data, pdq, status)``.
    """
    if prepared is None:
        prepared = prepare_dark(dark, dark_dq, ngroups=data.shape[1], nframes=nframes,
                                groupgap=groupgap, dark_nframes=dark_nframes,
                                dark_groupgap=dark_groupgap)
    matched, ddq = prepared
    if matched is None:
        return data, pdq, "SKIPPED"
    pdq |= ddq
    dark_subtract_kernel(data, matched)
    return data, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _prepare(model, path: str, info, step: str):
    """(matched dark, dark DQ, average dark current) of a DARK reference for this readout."""
    dark = subarray_of(np.asarray(model.data) if model.data is not None else None, model, info, path, step, "DATA")
    ddq = ref_array(model, "dq", info, path, step, dtype=np.uint32)
    if dark.ndim not in (3, 4):
        raise ReferenceFileError(f"{step}: reference file {path!r} SCI must be 3-D or 4-D, got {dark.shape}")
    dn, dg = model.meta.exposure.nframes, model.meta.exposure.groupgap
    if dn is None or dg is None:
        raise ReferenceFileError(f"{step}: reference file {path!r} lacks NFRAMES/GROUPGAP")
    matched, ddq = prepare_dark(dark, ddq, ngroups=info.ngroups, nframes=info.nframes, groupgap=info.groupgap,
                                dark_nframes=int(dn), dark_groupgap=int(dg),
                                reuse_input=True)   # the model is closed after preparation
    avg = None
    adc = getattr(model, "average_dark_current", None)
    if adc is not None and np.ndim(adc) == 2 and np.size(adc) > 0:
        try:
            avg = ref_array(model, "average_dark_current", info, path, step, dtype=np.float32)
        except ReferenceFileError:
            avg = None
    if avg is None:
        avg = model.meta.exposure.average_dark_current
    return matched, ddq, avg


def _run(state, ctx) -> str:
    info = state.info
    matched, ddq, ref_avg = ctx.prepared("dark", ("matched", info.ngroups, info.nframes, info.groupgap),
                                         lambda m, p: _prepare(m, p, info, ctx.name))
    state.data, state.pdq, status = dark_current(
        state.data, state.pdq, None, None, nframes=info.nframes, groupgap=info.groupgap,
        dark_nframes=None, dark_groupgap=None, prepared=(matched, ddq))
    avg = ctx.params["average_dark_current"]
    state.average_dark_current = ref_avg if avg is None else avg
    return status


STEP = StepSpec(
    name="dark_current", jwst_class="jwst.dark_current.DarkCurrentStep", reftypes=("dark",), run=_run,
    status_attr="dark_sub",
    params=(Param("dark_output", "string", None, support=SUPPORT_IGNORED,
                  doc="file name for the matched dark (not written by this engine)"),
            Param("average_dark_current", "float", None, min=0.0,
                  doc="average dark current (e-/s) for the Poisson variance; default: the reference's")),
    doc="subtract the DARK reference matched to the readout (jwst dark_current).",
)
