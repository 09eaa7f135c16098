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

__all__ = ["linearity", "linearity_kernel", "prepare_coefficients"]

_SAT = np.uint8(dqflags.SATURATED)


@numba.njit(cache=True, parallel=True)
def linearity_kernel(data, gdq, coeffs):
    """data float32 (nints, ngroups, ny, nx) DN, in place; gdq uint8 same shape;
    coeffs float32 (ncoeffs, ny, nx)."""
    nints, ngroups, ny, nx = data.shape
    nc = coeffs.shape[0]
    for y in numba.prange(ny):
        for x in range(nx):
            for i in range(nints):
                for g in range(ngroups):
                    if gdq[i, g, y, x] & _SAT:
                        continue
                    v = data[i, g, y, x]
                    r = coeffs[nc - 1, y, x] * v
                    for k in range(nc - 2, 0, -1):
                        r += coeffs[k, y, x]
                        r *= v
                    r += coeffs[0, y, x]
                    data[i, g, y, x] = r


def prepare_coefficients(coeffs, lin_dq, pdq):
    """Return (coeffs float32 (ncoeffs, ny, nx), pdq uint32) with bad pixels made benign."""
    c = np.array(coeffs, dtype=np.float32)
    ldq = np.asarray(lin_dq, dtype=np.uint32)
    pdq = pdq | ldq
    nlc = np.uint32(dqflags.NO_LIN_CORR)
    benign = np.zeros(c.shape[0], np.float32)
    benign[1] = 1.0
    flagged = (ldq & nlc) != 0
    c[:, flagged] = benign[:, None]
    nan = np.isnan(c).any(axis=0)
    c[:, nan] = benign[:, None]
    pdq[nan] |= nlc
    zero = c[1] == 0
    c[:, zero] = benign[:, None]
    pdq[zero] |= nlc
    return np.ascontiguousarray(c), pdq


def linearity(data, gdq, pdq, coeffs, lin_dq):
    """Correct ``data`` in place. Returns ``(data, pdq, "COMPLETE")``."""
    c, new_pdq = prepare_coefficients(coeffs, lin_dq, pdq)
    linearity_kernel(data, gdq, c)
    pdq[...] = new_pdq
    return data, pdq, "COMPLETE"
