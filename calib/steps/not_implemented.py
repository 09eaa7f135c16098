"""Declared jwst stage-1 steps this engine does not implement (always recorded SKIPPED).

jwst 3.0 skips these by default for the modes the calib engine runs (persistence,
picture_frame, clean_flicker_noise); they are declared with jwst's parameters so that a
request to run one (``--steps.persistence.skip=false``) is a clear usage error naming the
jwst engine, and so that products carry their S_* keyword, as jwst's do.
"""
from __future__ import annotations

from calib.params import Param
from calib.step import StepSpec

__all__ = ["PERSISTENCE", "PICTURE_FRAME", "CLEAN_FLICKER_NOISE"]

PERSISTENCE = StepSpec(
    name="persistence", jwst_class="jwst.persistence.PersistenceStep", skip_default=True,
    params=(Param("save_persistence", "string", None), Param("persistence_time", "integer", None),
            Param("dn_threshold", "float", None), Param("persistence_array_file", "string", None),
            Param("persistence_dnu", "boolean", False)),
    doc="flag pixels affected by persistence from earlier exposures (jwst persistence; not implemented).",
)
PICTURE_FRAME = StepSpec(
    name="picture_frame", jwst_class="jwst.picture_frame.PictureFrameStep", reftypes=("pictureframe",),
    skip_default=True,
    params=(Param("mask_science_regions", "boolean", True), Param("n_sigma", "float", 2.0),
            Param("save_mask", "boolean", False), Param("save_correction", "boolean", False)),
    doc="NIRSpec thermal picture-frame correction (jwst picture_frame; not implemented).",
)
CLEAN_FLICKER_NOISE = StepSpec(
    name="clean_flicker_noise", jwst_class="jwst.clean_flicker_noise.CleanFlickerNoiseStep",
    reftypes=("flat", "pastasoss"), skip_default=True,
    params=(Param("autoparam", "boolean", False),
            Param("fit_method", "option", "median", choices=("fft", "median")),
            Param("fit_by_channel", "boolean", False),
            Param("background_method", "option", "median", choices=("median", "model", "median_image", None)),
            Param("background_box_size", "int_list", None),
            Param("mask_science_regions", "boolean", False), Param("apply_flat_field", "boolean", False),
            Param("n_sigma", "float", 2.0), Param("fit_histogram", "boolean", False),
            Param("single_mask", "boolean", True), Param("user_mask", "string", None),
            Param("save_mask", "boolean", False), Param("save_background", "boolean", False),
            Param("save_noise", "boolean", False)),
    doc="1/f flicker-noise removal (jwst clean_flicker_noise; not implemented).",
)
