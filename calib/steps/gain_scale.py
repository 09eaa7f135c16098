"""gain_scale: multiply rates by the GAIN reference's GAINFACT (jwst gain_scale step).

Method: jwst documentation "gain_scale" — only when the GAIN reference has a GAINFACT
keyword: SCI and ERR *= GAINFACT, VAR_POISSON and VAR_RNOISE *= GAINFACT**2. Otherwise
SKIPPED, as jwst does.
"""
from __future__ import annotations

import numpy as np
from calib.step import StepSpec

__all__ = ["gain_scale", "STEP"]


def gain_scale(arrays: dict[str, np.ndarray], gain_factor: float | None):
    """Scale a product's arrays in place.

    arrays: {"data": DN/s, "err": DN/s, "var_poisson": (DN/s)**2, "var_rnoise": (DN/s)**2},
    float32, any shape. Returns ``(arrays, status)``.
    """
    if gain_factor is None:
        return arrays, "SKIPPED"
    f = np.float32(gain_factor)
    arrays["data"] *= f
    arrays["err"] *= f
    arrays["var_poisson"] *= f * f
    arrays["var_rnoise"] *= f * f
    return arrays, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    factor = ctx.prepared("gain", ("gain_factor",), lambda m, p: m.meta.exposure.gain_factor)
    _, status = gain_scale(state.rate, factor)
    if state.rateints is not None and factor is not None:
        gain_scale(state.rateints, factor)
    return status


STEP = StepSpec(
    name="gain_scale", jwst_class="jwst.gain_scale.GainScaleStep", reftypes=("gain",), run=_run,
    doc="rates *= the GAIN reference's GAINFACT when it has one (jwst gain_scale).",
)
