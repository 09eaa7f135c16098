"""linearity: classical non-linearity correction (jwst linearity step).

Method: jwst documentation "linearity": for every group not flagged SATURATED,
``F_c = sum_k c_k F^k`` with the per-pixel polynomial coefficients of the LINEARITY
reference (COEFFS, shape (ncoeffs, ny, nx), c_0 first), evaluated by Horner's rule.
PIXELDQ |= LINEARITY.DQ. Pixels flagged NO_LIN_CORR in the reference DQ, with any NaN
coefficient, or with a zero linear coefficient get the identity polynomial (0, 1, 0, ...);
the latter two are also flagged NO_LIN_CORR in PIXELDQ.
(The read-level correction with inverse coefficients for frame-averaged groups is not
implemented: only the group-level polynomial.)
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.errors import ReferenceFileError
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["linearity", "linearity_kernel", "prepare_coefficients", "STEP"]

_SAT = np.uint8(dqflags.SATURATED)


@numba.njit(cache=True, inline="always")
def _horner_row(v, q, coeffs, y, nc, r):
    """Correct one row of one group in place (Horner's rule; SATURATED groups kept).

    The polynomial of each pixel is evaluated in the same order of float32 operations for
    every ``nc``: ``t = c[nc-1] * v``, then ``t = (t + c[k]) * v`` for k = nc-2 .. 1, then
    ``t + c[0]``. Up to 6 coefficients the whole polynomial is one expression per pixel (one
    vectorised pass over the row, ~2x faster than a pass per coefficient); longer ones use the
    row scratch ``r`` (float32 (nx,)), one pass per coefficient.
    """
    nx = v.size
    c0 = coeffs[0, y]
    c1 = coeffs[1, y]
    if nc == 2:
        for x in range(nx):
            d = v[x]
            t = c1[x] * d + c0[x]
            v[x] = d if (q[x] & _SAT) else t
    elif nc == 3:
        c2 = coeffs[2, y]
        for x in range(nx):
            d = v[x]
            t = (c2[x] * d + c1[x]) * d + c0[x]
            v[x] = d if (q[x] & _SAT) else t
    elif nc == 4:
        c2 = coeffs[2, y]
        c3 = coeffs[3, y]
        for x in range(nx):
            d = v[x]
            t = ((c3[x] * d + c2[x]) * d + c1[x]) * d + c0[x]
            v[x] = d if (q[x] & _SAT) else t
    elif nc == 5:
        c2 = coeffs[2, y]
        c3 = coeffs[3, y]
        c4 = coeffs[4, y]
        for x in range(nx):
            d = v[x]
            t = (((c4[x] * d + c3[x]) * d + c2[x]) * d + c1[x]) * d + c0[x]
            v[x] = d if (q[x] & _SAT) else t
    elif nc == 6:
        c2 = coeffs[2, y]
        c3 = coeffs[3, y]
        c4 = coeffs[4, y]
        c5 = coeffs[5, y]
        for x in range(nx):
            d = v[x]
            t = ((((c5[x] * d + c4[x]) * d + c3[x]) * d + c2[x]) * d + c1[x]) * d + c0[x]
            v[x] = d if (q[x] & _SAT) else t
    else:
        for x in range(nx):
            r[x] = coeffs[nc - 1, y, x] * v[x]
        for k in range(nc - 2, 0, -1):
            for x in range(nx):
                r[x] = (r[x] + coeffs[k, y, x]) * v[x]
        for x in range(nx):
            if (q[x] & _SAT) == 0:
                v[x] = r[x] + c0[x]


@numba.njit(cache=True, parallel=True)
def linearity_kernel(data, gdq, coeffs):
    """Correct the ramp for non-linearity in place (polynomial of the reference).

    data float32 (nints, ngroups, ny, nx) DN, in place; gdq uint8 same shape;
    coeffs float32 (ncoeffs >= 2, ny, nx). Rows in parallel; per pixel, Horner's rule in
    float32 (see :func:`_horner_row`), the result kept only for groups not SATURATED.
    """
    nints, ngroups, ny, nx = data.shape
    nc = coeffs.shape[0]
    for y in numba.prange(ny):            # rows in parallel, x innermost (contiguous)
        r = np.empty(nx if nc > 6 else 0, np.float32)
        for i in range(nints):
            for g in range(ngroups):
                _horner_row(data[i, g, y], gdq[i, g, y], coeffs, y, nc, r)


def prepare_coefficients(coeffs, lin_dq, pdq=None):
    """Make bad pixels' polynomials benign.

    coeffs float (ncoeffs, ny, nx); lin_dq uint32 (ny, nx) the LINEARITY reference DQ.
    Returns ``(c, pdq)``: c float32 (ncoeffs, ny, nx) contiguous; pdq uint32 (ny, nx) =
    the given ``pdq`` | lin_dq | NO_LIN_CORR where a coefficient is NaN or the linear
    coefficient is 0 (with ``pdq=None``: just the flags this reference adds, so that the
    result depends only on the reference and can be cached).
    """
    c = np.array(coeffs, dtype=np.float32)
    ldq = np.asarray(lin_dq, dtype=np.uint32)
    add = ldq.copy()
    nlc = np.uint32(dqflags.NO_LIN_CORR)
    benign = np.zeros(c.shape[0], np.float32)
    benign[1] = 1.0
    flagged = (ldq & nlc) != 0
    c[:, flagged] = benign[:, None]
    nan = np.isnan(c).any(axis=0)
    c[:, nan] = benign[:, None]
    add[nan] |= nlc
    zero = c[1] == 0
    c[:, zero] = benign[:, None]
    add[zero] |= nlc
    return np.ascontiguousarray(c), (add if pdq is None else pdq | add)


def linearity(data, gdq, pdq, coeffs, lin_dq, *, prepared=None):
    """Correct ``data`` in place. Returns ``(data, pdq, "COMPLETE")``.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; pdq uint32 (ny, nx);
    coeffs/lin_dq from the LINEARITY reference cut to the subarray, or ``prepared`` =
    ``prepare_coefficients(coeffs, lin_dq)`` (then coeffs/lin_dq are not read).
    """
    if prepared is None:
        prepared = prepare_coefficients(coeffs, lin_dq)
    c, add = prepared
    linearity_kernel(data, gdq, c)
    pdq |= add
    return data, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _prepare(model, path: str, info, step: str):
    coeffs = ref_array(model, "coeffs", info, path, step, dtype=np.float32)
    if coeffs.ndim != 3 or coeffs.shape[0] < 2:
        raise ReferenceFileError(f"{step}: reference file {path!r} COEFFS must be (ncoeffs>=2, ny, nx), "
                                 f"got {coeffs.shape}")
    lin_dq = ref_array(model, "dq", info, path, step, dtype=np.uint32)
    return prepare_coefficients(coeffs, lin_dq)


def _run(state, ctx) -> str:
    lin = ctx.prepared("linearity", ("coeffs",), lambda m, p: _prepare(m, p, state.info, ctx.name))
    state.data, state.pdq, status = linearity(state.data, state.gdq, state.pdq, None, None, prepared=lin)
    return status


STEP = StepSpec(
    name="linearity", jwst_class="jwst.linearity.LinearityStep", reftypes=("linearity",), run=_run,
    doc="per-pixel polynomial of the LINEARITY reference on unsaturated groups (jwst linearity).",
)
