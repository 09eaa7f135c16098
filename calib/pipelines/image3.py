"""calwebb_image3: the calibrated images of a Level-3 association to one mosaic (``_i2d``) and its catalog.

This project's engine for jwst's ``Image3Pipeline`` (jwst documentation "calwebb_image3"),
declared on the step registry in jwst 3.0's order: assign_mtwcs (moving targets only:
SKIPPED for fixed targets, refused for moving ones), tweakreg (photutils IRAFStarFinder,
tweakwcs through stcal), skymatch (stcal's sky matching), outlier_detection (singles drizzled
with this project's kernel, numba median and blot, stcal's flagging), resample (every
member drizzled onto jwst's output grid with this project's pixel maps and square
kernel), source_catalog (photutils). The input is a
Level-3 association JSON whose science members are ``_cal`` images
(:func:`calib.images.open_image3`).

Products:

* ``crf:<member root>_<asn_id>``: each member after outlier_detection (ImageModel; only
  when outlier_detection ran), written as ``<member root>_<asn_id>_crf.fits``.
* ``i2d``: ImageModel: SCI/ERR float32 (my, mx) MJy/sr, WHT float32, CON int32
  (nplanes, my, mx), VAR_* float32 (MJy/sr)**2, the output gwcs.
* ``cat``: astropy QTable written as ``<product>_cat.ecsv`` (when sources were found).
* ``segm``: SegmentationMapModel: int32 (my, mx) labels, the i2d's gwcs.

References: apcorr, abvegaoffset (source_catalog, when it runs).

Memory: the members' large arrays live in temporary memory-mapped files while the steps run
(:class:`calib.spill.ArraySpill`, as jwst's ``in_memory=False`` keeps its members in
temporary files): each member is spilled as soon as it is read, and the pages a step read
leave the process after it (``after_step``), or after each member for outlier_detection
and resample, which go through the members one at a time (``state.release_member``).
With :func:`calib.products.run_and_save`, each ``_crf`` is written as soon as
outlier_detection has flagged its member, and the ``_i2d`` as soon as resample has made it
(as jwst's Image3Pipeline saves it before source_catalog), in the background while
source_catalog reads it (source_catalog works on copies of its arrays).
"""
from __future__ import annotations

import contextlib
import gc

from calib.errors import InputError
from calib.images import open_image3
from calib.spill import ArraySpill
from calib.runner import PipelineSpec, ProductSpec
from calib.step import ExposureKeys, StepSpec
from calib.steps import assign_mtwcs, outlier_detection, resample, skymatch, source_catalog, tweakreg

__all__ = ["PIPELINE", "STEPS"]

#: the order of jwst 3.0's Image3Pipeline.process
STEPS: tuple[StepSpec, ...] = (assign_mtwcs.STEP, tweakreg.STEP, skymatch.STEP, outlier_detection.STEP,
                               resample.STEP_IMAGE3, source_catalog.STEP)

INSTRUMENTS = ("NIRCAM", "NIRISS", "MIRI", "FGS")


def _flavours(keys: ExposureKeys) -> tuple[StepSpec, ...]:
    """Return the steps (one order for every instrument, as jwst's Image3Pipeline).

    Raises
    ------
    InputError
        For an instrument this engine's image3 does not serve.
    """
    if keys.instrument not in INSTRUMENTS:
        raise InputError(f"calwebb_image3 in the calib engine is for NIRCam, NIRISS, MIRI and FGS imaging, not "
                         f"instrument {keys.instrument or None!r} (use the jwst engine)")
    return STEPS


def crf_root(model, asn_id: str) -> str:
    """``<member root>_<asn_id>``: the name jwst gives a member's ``_crf`` (before ``_crf.fits``)."""
    name = str(model.meta.filename or "member")
    root = name.rsplit(".", 1)[0]
    if root.endswith("_cal"):
        root = root[: -len("_cal")]
    return f"{root}_{asn_id}" if asn_id else root


def _products(state, status: dict[str, str]) -> dict:
    """``crf:<root>`` per member (when outlier_detection ran) and ``i2d`` (when resample ran)."""
    out = {}
    if status.get("outlier_detection") == "COMPLETE":
        asn_id = str(state.asn.get("asn_id") or "")
        for m in state.models:
            out[f"crf:{crf_root(m, asn_id)}"] = m
    if state.i2d is not None:
        out["i2d"] = state.i2d
    if state.catalog is not None:
        out["cat"] = state.catalog
    if state.segm is not None:
        out["segm"] = state.segm
    return out


@contextlib.contextmanager
def _open(path):
    """:func:`calib.images.open_image3` with the members' large arrays spilled as they are read.

    The state gets ``release_member(model)``: map the member's arrays afresh (the pages read
    so far leave the process; changed values are kept in the files), and ``crf_suffix(model)``:
    the product name of a member's ``_crf`` (outlier_detection hands each over to be written as
    soon as it is flagged when the runner was given a writer). Each member's pixel-map fit
    onto an output grid is made once for the run (:func:`calib.steps.resample.pixel_fit_cache`).
    """
    def prepare(model) -> None:
        spill.release(model)
        # the member's FITS file (datamodels.open keeps it open, its HDUs holding the arrays
        # read): every array is read and now spilled, so close it and let its arrays go
        model.close()
        gc.collect()

    with ArraySpill() as spill, open_image3(path, prepare=prepare) as state, resample.pixel_fit_cache():
        state.release_member = spill.release
        asn_id = str(state.asn.get("asn_id") or "")
        state.crf_suffix = lambda model: f"crf:{crf_root(model, asn_id)}"
        yield state


def _after_step(state, name: str) -> None:
    """Let the pages the step read of every member leave the process."""
    for m in state.models:
        if m.instance:
            state.release_member(m)


PIPELINE = PipelineSpec(
    name="calwebb_image3", jwst_class="jwst.pipeline.Image3Pipeline",
    aliases=("image3", "Image3Pipeline", "jwst.pipeline.Image3Pipeline", "calwebb_image3.cfg"),
    flavours=_flavours, steps=STEPS,
    products=(ProductSpec("crf", "ImageModel", "each member with outliers flagged (DQ OUTLIER|DO_NOT_USE, SCI NaN)",
                          optional=True, made_before="resample"),
              ProductSpec("i2d", "ImageModel", "the mosaic: SCI/ERR MJy/sr, WHT, CON, VAR_*, output gwcs",
                          optional=True, made_before="source_catalog", write_early=True),
              ProductSpec("cat", "QTable", "source catalog (ECSV): centroids, aperture/isophotal fluxes in Jy, "
                          "AB/Vega magnitudes", optional=True),
              ProductSpec("segm", "SegmentationMapModel", "segmentation map of the mosaic (int labels)",
                          optional=True, made_before="source_catalog")),
    open=_open, finish=_products, after_step=_after_step, instruments=INSTRUMENTS, input_model="ModelLibrary",
    doc="imaging stage 3: sky matching, outlier flagging, mosaic, source catalog",
)
