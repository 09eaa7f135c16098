"""Pipelines named as in the jwst package (calwebb_detector1 so far)."""
from calib.pipelines.detector1 import (MIRI_STEPS, NIR_STEPS, Detector1Result, reftypes_for,
                                       release_unreachable, run_detector1, steps_for,
                                       validate_params)

__all__ = ["NIR_STEPS", "MIRI_STEPS", "Detector1Result", "run_detector1", "steps_for",
           "reftypes_for", "validate_params", "release_unreachable"]
