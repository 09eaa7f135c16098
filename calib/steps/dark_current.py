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

The reference is read lazily (:class:`calib.references.ReferenceSections`): its header as
the stdatamodels DarkModel/DarkMIRIModel, then by FITS sections only the frames averaged into
the science groups, cut to the science window, one group at a time, and the DQ plane used
(mapped to the standard flags through its DQ_DEF, as stdatamodels does). A real CRDS dark
holds hundreds of full-frame frames (several GB) of which an exposure uses a fraction;
the prepared (matched) dark is what the reference cache keeps.
"""
from __future__ import annotations

import numba
import numpy as np
from calib.errors import ReferenceFileError
from calib.params import SUPPORT_IGNORED, Param
from calib.references import ReferenceSections, SectionArray
from calib.step import StepSpec

__all__ = ["dark_current", "dark_subtract_kernel", "match_dark", "prepare_dark", "STEP"]


@numba.njit(cache=True, parallel=True)
def dark_subtract_kernel(data, dark):
    """Subtract the matched dark from the ramp, in place.

    Parameters
    ----------
    data : numpy.ndarray
        float32 (nints, ngroups, ny, nx), DN; modified in place.
    dark : numpy.ndarray
        float32 (ndint, ngroups, ny, nx), DN, NaN already 0 (:func:`match_dark`); science
        integration i uses dark integration min(i, ndint - 1), as jwst's dark_current.
    """
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
    """Return ``dk`` as native float32 without a copy, or None when that is not possible.

    A big-endian array (as read from FITS) is byte-swapped in place.
    """
    if (dk.dtype.kind != "f" or dk.dtype.itemsize != 4 or not dk.flags.writeable
            or not dk.flags.c_contiguous):
        return None
    if not dk.dtype.isnative:
        dk.byteswap(inplace=True)
        dk = dk.view(dk.dtype.newbyteorder("="))
    return dk


def match_dark(dark, ngroups, nframes, groupgap, dark_nframes, dark_groupgap, *,
               reuse_input=False):
    """Average or copy dark frames to the science group structure.

    Method: jwst's dark_current step (stcal ``dark_sub.average_dark_frames``): science group
    g takes the mean of dark frames ``start .. start + nframes - 1``, ``start`` advancing by
    ``nframes + groupgap``; NaN counts as 0. A dark shorter than the science is first
    extrapolated from the difference of its last two groups.

    Parameters
    ----------
    dark : numpy.ndarray or calib.references.SectionArray
        float32 DN, 3-D (ngroups_dark, ny, nx) or 4-D (ndint, ngroups_dark, ny, nx), cut to
        the science window; a 4-D ``SectionArray`` is read group by group from the file, so
        only the frames averaged into a science group are read (and one group's frames at a
        time are in memory).
    ngroups, nframes, groupgap : int
        The science readout (NGROUPS, NFRAMES, GROUPGAP).
    dark_nframes, dark_groupgap : int
        The dark's NFRAMES and GROUPGAP.
    reuse_input : bool
        When the dark's readout already matches and ``dark`` is a contiguous float32
        ndarray, return a view of ``dark`` itself, converted in place (native byte order,
        NaN -> 0): no second full-size array; the caller must not use ``dark`` afterwards.

    Returns
    -------
    numpy.ndarray or None
        float32 (ndint, ngroups, ny, nx) DN, or None when the dark cannot be matched (more
        frames per group or a larger gap than the science).
    """
    lazy = isinstance(dark, SectionArray)
    dk = dark if lazy else np.asarray(dark)
    if dk.ndim == 3:
        if lazy:
            raise ValueError("match_dark: a SectionArray dark must be 4-D (leading_axis=True for 3-D)")
        dk = dk[None]
    d_ngroups = dk.shape[1]
    sci_total = ngroups * nframes + (ngroups - 1) * groupgap
    drk_total = d_ngroups * dark_nframes + (d_ngroups - 1) * dark_groupgap
    if dark_nframes > nframes or dark_groupgap > groupgap:
        return None
    if (reuse_input and not lazy and sci_total <= drk_total and nframes == dark_nframes
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
    # a private copy (NaN are replaced below); a dark shorter than the science is read whole
    d = np.array(dk[()] if lazy else dark, dtype=np.float32)
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
    """Match the dark to the science readout and reduce its DQ to PIXELDQ's shape.

    Parameters
    ----------
    dark : numpy.ndarray or calib.references.SectionArray
        See :func:`match_dark`.
    dark_dq : numpy.ndarray
        uint32 (ny, nx), or (1, ny, nx), or 4-D (ndint, ngroups, ny, nx) of which the first
        group of every integration is used (OR over integrations).
    ngroups, nframes, groupgap, dark_nframes, dark_groupgap, reuse_input
        See :func:`match_dark`.

    Returns
    -------
    tuple
        ``(matched, ddq)``: matched float32 (ndint, ngroups, ny, nx) DN (NaN -> 0), or None
        when the dark cannot be matched (step SKIPPED); ddq uint32 (ny, nx). Depends only on
        the reference and the readout (NGROUPS, NFRAMES, GROUPGAP), so it can be cached.
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
def _prepare(ref: ReferenceSections, path: str, info, step: str):
    """Prepare a DARK reference for this exposure's readout, reading only what it uses.

    Parameters
    ----------
    ref : calib.references.ReferenceSections
        The dark: header mapped to DarkModel/DarkMIRIModel, arrays read by sections.
    path : str
        Its local path (named in errors).
    info : calib.references.ExposureInfo
        The science exposure: window, NGROUPS, NFRAMES, GROUPGAP.
    step : str
        The step name (named in errors).

    Returns
    -------
    tuple
        ``(matched, ddq, average_dark_current)``: matched float32 (ndint, ngroups, ny, nx)
        DN or None (see :func:`match_dark`); ddq uint32 (ny, nx); the reference's average
        dark current, e-/s: float32 (ny, nx) from its AVDRKCUR extension, else the AVDRKCUR
        keyword's value, or None.

    Notes
    -----
    Only the dark frames averaged into the science groups are read from the file, group by
    group (for a 200-frame full-frame dark and a MEDIUM8 exposure of 10 groups, 98 of the
    200 frames, and never more than one group's frames at once), and of the DQ array only the
    plane :func:`prepare_dark` uses; the frames come out of the file cut to the science
    window. jwst's dark_current step (stcal ``dark_sub``) reads the whole reference instead.

    Raises
    ------
    ReferenceFileError
        If SCI is missing or not 3-D/4-D, NFRAMES/GROUPGAP are missing, or the reference
        does not cover the science window.
    """
    model = ref.model
    if not ref.has("SCI"):
        raise ReferenceFileError(f"{step}: reference file {path!r} has no DATA array")
    ndim = len(ref.shape("SCI"))
    if ndim not in (3, 4):
        raise ReferenceFileError(f"{step}: reference file {path!r} SCI must be 3-D or 4-D, got "
                                 f"{ref.shape('SCI')}")
    dark = ref.array("SCI", "DATA", leading_axis=ndim == 3)      # 4-D (ndint, ngroups_dark, ny, nx)
    dn, dg = model.meta.exposure.nframes, model.meta.exposure.groupgap
    if dn is None or dg is None:
        raise ReferenceFileError(f"{step}: reference file {path!r} lacks NFRAMES/GROUPGAP")
    if ref.has("DQ"):
        dq = ref.array("DQ", "DQ")
        # only the plane prepare_dark reduces to (ny, nx): all of a 2-D DQ, the first plane
        # of a 3-D one, the first group of every integration of a 4-D (MIRI) one
        ddq = dq[()] if dq.ndim == 2 else dq[0:1] if dq.ndim == 3 else dq[:, 0:1]
        ddq = np.ascontiguousarray(ref.standard_dq(ddq), dtype=np.uint32)
    else:
        ddq = np.zeros(dark.shape[-2:], np.uint32)
    matched, ddq = prepare_dark(dark, ddq, ngroups=info.ngroups, nframes=info.nframes, groupgap=info.groupgap,
                                dark_nframes=int(dn), dark_groupgap=int(dg))
    avg = None
    if len(ref.shape("AVDRKCUR")) == 2:
        avg = np.ascontiguousarray(ref.array("AVDRKCUR", "AVERAGE_DARK_CURRENT")[()], dtype=np.float32)
    if avg is None:
        avg = model.meta.exposure.average_dark_current
    return matched, ddq, avg


def _run(state, ctx) -> str:
    info = state.info
    matched, ddq, ref_avg = ctx.prepared("dark", ("matched", info.ngroups, info.nframes, info.groupgap),
                                         lambda r, p: _prepare(r, p, info, ctx.name), sections=True)
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
