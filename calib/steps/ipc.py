"""ipc: inter-pixel capacitance correction (jwst ipc step).

Method: jwst documentation "ipc": every group is convolved with the IPC deconvolution
kernel of the IPC reference (a small 2-D kernel (ky, kx), typically 3x3, or a per-pixel 4-D
kernel (ky, kx, ny, nx) cut to the subarray), only over the light-sensitive pixels: the
reference-pixel border (4 rows/columns at the full-frame edges for NIR, the 4 left and
right columns for MIRI) is neither changed nor used. Pixels beyond the edge of that region
count as 0. With kernel k and centre (cy, cx) = (ky//2, kx//2):

    out[y, x] = sum_{j, i} k[j, i] * in[y + cy - j, x + cx - i]

summed in float32 with the centre term added last, as jwst does.
"""
from __future__ import annotations

import numba
import numpy as np
from calib.errors import ReferenceFileError
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["ipc", "ipc_kernel_2d", "ipc_kernel_4d", "num_ref_pixels", "STEP"]


@numba.njit(cache=True, parallel=True)
def ipc_kernel_2d(plane, kern, y0, y1, x0, x1):
    """Convolve plane[y0:y1, x0:x1] (float32, DN) with kern (float32 (ky, kx)); in place."""
    ky, kx = kern.shape
    cy, cx = ky // 2, kx // 2
    src = plane[y0:y1, x0:x1].copy()
    ny, nx = src.shape
    for y in numba.prange(ny):
        for x in range(nx):
            acc = np.float32(0.0)
            for j in range(ky):
                for i in range(kx):
                    if j == cy and i == cx:
                        continue
                    yy = y + cy - j
                    xx = x + cx - i
                    if 0 <= yy < ny and 0 <= xx < nx:
                        acc += kern[j, i] * src[yy, xx]
            acc += kern[cy, cx] * src[y, x]
            plane[y0 + y, x0 + x] = acc


@numba.njit(cache=True, parallel=True)
def ipc_kernel_4d(plane, kern, y0, y1, x0, x1):
    """As ipc_kernel_2d with a per-pixel kernel kern float32 (ky, kx, ny_sub, nx_sub)."""
    ky, kx = kern.shape[0], kern.shape[1]
    cy, cx = ky // 2, kx // 2
    src = plane[y0:y1, x0:x1].copy()
    ny, nx = src.shape
    for y in numba.prange(ny):
        for x in range(nx):
            acc = np.float32(0.0)
            for j in range(ky):
                for i in range(kx):
                    if j == cy and i == cx:
                        continue
                    yy = y + cy - j
                    xx = x + cx - i
                    if 0 <= yy < ny and 0 <= xx < nx:
                        acc += kern[j, i, y0 + y, x0 + x] * src[yy, xx]
            acc += kern[cy, cx, y0 + y, x0 + x] * src[y, x]
            plane[y0 + y, x0 + x] = acc


def num_ref_pixels(info):
    """(bottom_rows, top_rows, left_columns, right_columns) of reference pixels in the subarray."""
    xs, ys = info.xstart - 1, info.ystart - 1
    if info.is_miri:
        return 0, 0, max(0, 4 - xs), max(0, xs + info.xsize - 1028)
    return (max(0, 4 - ys), max(0, ys + info.ysize - 2044),
            max(0, 4 - xs), max(0, xs + info.xsize - 2044))


def ipc(data, kernel, info):
    """Apply the IPC correction to ``data`` (float32 (nints, ngroups, ny, nx), DN) in place.

    kernel: float (ky, kx) or (ky, kx, ny, nx) already cut to the subarray.
    Returns ``(data, "COMPLETE")``.
    """
    b, t, left, r = num_ref_pixels(info)
    ny, nx = data.shape[-2:]
    y0, y1, x0, x1 = b, ny - t, left, nx - r
    k = np.ascontiguousarray(kernel, dtype=np.float32)
    fn = ipc_kernel_2d if k.ndim == 2 else ipc_kernel_4d
    for i in range(data.shape[0]):
        for g in range(data.shape[1]):
            fn(data[i, g], k, y0, y1, x0, x1)
    return data, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _prepare_kernel(model, path: str, info, step: str) -> np.ndarray:
    """Return the IPC kernel of the reference: float32 (ky, kx), or (ky, kx, ny, nx) cut to the subarray."""
    k = np.asarray(model.data) if model.data is not None else None
    if k is None or k.ndim not in (2, 4) or k.size == 0:
        raise ReferenceFileError(f"{step}: reference file {path!r} SCI must be a 2-D or 4-D IPC kernel")
    if k.ndim == 4:
        k = ref_array(model, "data", info, path, step, dtype=np.float32)
    if not np.isfinite(k).all():
        raise ReferenceFileError(f"{step}: reference file {path!r} has NaN in SCI")
    return np.array(k, dtype=np.float32)


def _run(state, ctx) -> str:
    kernel = ctx.prepared("ipc", ("kernel",), lambda m, p: _prepare_kernel(m, p, state.info, ctx.name))
    state.data, status = ipc(state.data, kernel, state.info)
    return status


STEP = StepSpec(
    name="ipc", jwst_class="jwst.ipc.IPCStep", reftypes=("ipc",), run=_run,
    doc="deconvolve inter-pixel capacitance with the IPC kernel, reference pixels excluded (jwst ipc).",
)
