"""assign_wcs: the exposure's gwcs object, built the way jwst's assign_wcs step builds it.

The WCS model is not this project's: jwst's own ``assign_wcs.load_wcs`` builds the gwcs
pipeline (detector -> v2v3 through the DISTORTION reference and the FILTEROFFSET shift ->
velocity-aberration-corrected v2v3 -> world, from the exposure's WCSINFO keywords) and sets
S_REGION, and, for imaging, jwst's ``update_fits_wcsinfo`` fits the FITS SIP approximation
into the header (parameters ``sip_*``), exactly as jwst 3.0's ``AssignWcsStep.process``
does (jwst documentation "assign_wcs"). Spectroscopic modes need their own references and
are refused with a clear error (jwst engine).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import pickle
import threading

from calib.errors import InputError, ReferenceFileError
from calib.params import SUPPORT_IGNORED, Param
from calib.step import ExposureKeys, StepSpec

__all__ = ["STEP", "assign_imaging_wcs"]

REFTYPES = ("distortion", "filteroffset", "specwcs", "regions", "wavelengthrange", "camera", "chromcorr",
            "collimator", "disperser", "fore", "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")


def _imaging_types() -> frozenset[str]:
    from jwst.lib.exposure_types import IMAGING_TYPES

    return frozenset(t.upper() for t in IMAGING_TYPES)


#: jwst's instrument modules whose imaging WCS reads the DISTORTION reference as
#: ``DistortionModel(path).model`` (then ``close()``, or in a ``with`` block) and nothing else of it
_DISTORTION_READERS = ("nircam", "niriss", "fgs", "miri")
#: {realpath: (sha256 of the file's bytes, pickled transform)}: the last transform read from each path
_DISTORTION_CACHE: dict[str, tuple[bytes, bytes]] = {}
#: held while a reader module's ``DistortionModel`` is replaced (:func:`_cached_distortion_models`)
_DISTORTION_LOCK = threading.RLock()


def _distortion_transform(path: str):
    """Return the transform of a DISTORTION reference file: ``DistortionModel(path).model``, as a fresh copy.

    The file is read and validated by stdatamodels once per content (keyed by its real path
    and the SHA-256 of its bytes, read each time, so a changed file is read again, never a
    stale transform returned); each call returns its own copy (unpickled: ~2.5 ms for a NIRCam
    distortion instead of ~20 ms of ASDF reading, validation and conversion), which jwst's
    builders then modify (bounding box, filter offset shifts) without touching the cached one.

    Raises
    ------
    OSError
        If the file cannot be read; whatever stdatamodels raises for a bad reference.
    """
    from stdatamodels.jwst.datamodels import DistortionModel

    real = os.path.realpath(path)
    with open(real, "rb") as fh:
        digest = hashlib.sha256(fh.read()).digest()
    hit = _DISTORTION_CACHE.get(real)
    if hit is None or hit[0] != digest:
        dist = DistortionModel(real)
        try:
            blob = pickle.dumps(dist.model, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            dist.close()
        hit = _DISTORTION_CACHE[real] = (digest, blob)
    return pickle.loads(hit[1])


class _CachedDistortion:
    """Stands for ``DistortionModel(path)`` where jwst's imaging builders read only its ``model``.

    ``model`` is :func:`_distortion_transform`'s copy; anything else (never read by the
    builders of :data:`_DISTORTION_READERS`) opens the reference with stdatamodels as usual.
    """

    def __init__(self, path):
        self._path = os.fspath(path)
        self._model = None
        self._real = None

    @property
    def model(self):
        if self._model is None:
            self._model = _distortion_transform(self._path)
        return self._model

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._real is None:
            from stdatamodels.jwst.datamodels import DistortionModel

            self._real = DistortionModel(self._path)
        return getattr(self._real, name)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _cached_distortion_models(instrument: str):
    """While open, jwst's imaging WCS builder of ``instrument`` reads DISTORTION files through the cache.

    The module's ``DistortionModel`` name is replaced by :class:`_CachedDistortion` (for a plain
    path argument; anything else goes to stdatamodels) and restored afterwards; the lock keeps
    two threads of this module from interleaving the swap.
    """
    name = instrument.lower()
    if name not in _DISTORTION_READERS:
        yield
        return
    mod = importlib.import_module(f"jwst.assign_wcs.{name}")
    original = getattr(mod, "DistortionModel", None)
    if original is None:
        yield
        return

    def distortion_model(init=None, *args, **kwargs):
        if args or kwargs or not isinstance(init, (str, os.PathLike)):
            return original(init, *args, **kwargs)
        return _CachedDistortion(init)

    with _DISTORTION_LOCK:
        mod.DistortionModel = distortion_model
        try:
            yield
        finally:
            mod.DistortionModel = original


def assign_imaging_wcs(model, references: dict, params: dict) -> None:
    """Attach jwst's gwcs object to an imaging ImageModel, in place.

    Sets ``meta.wcs``, S_REGION and the SIP keywords of ``meta.wcsinfo``.

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        The exposure (its WCSINFO keywords: V2_REF, V3_REF, RA_REF, DEC_REF, ROLL_REF ...).
    references : dict
        ``{reftype: path or None}`` (distortion required; filteroffset optional).
    params : dict
        The step's resolved parameters (``sip_approx``, ``sip_max_pix_error``, ``sip_degree``,
        ``sip_max_inv_pix_error``, ``sip_inv_degree``, ``sip_npoints``).

    Raises
    ------
    ReferenceFileError
        If jwst cannot build the WCS from the references (naming them).
    """
    from jwst.assign_wcs.assign_wcs import load_wcs
    from jwst.assign_wcs.util import update_fits_wcsinfo

    refs = {rt: (references.get(rt) or "N/A") for rt in REFTYPES}
    try:
        with _cached_distortion_models(str(model.meta.instrument.name or "")):
            load_wcs(model, refs, [params["slit_y_low"], params["slit_y_high"]],
                     nrs_ifu_slice_wcs=params["nrs_ifu_slice_wcs"])
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ReferenceFileError(f"assign_wcs: cannot build the WCS from distortion "
                                 f"{references.get('distortion')!r} / filteroffset "
                                 f"{references.get('filteroffset')!r}: {exc}") from exc
    if params["sip_approx"]:
        try:
            update_fits_wcsinfo(model, max_pix_error=params["sip_max_pix_error"], degree=params["sip_degree"],
                                max_inv_pix_error=params["sip_max_inv_pix_error"],
                                inv_degree=params["sip_inv_degree"], npoints=params["sip_npoints"], crpix=None)
        except (ValueError, RuntimeError) as exc:       # jwst logs this and goes on
            logging.getLogger(__name__).warning("Failed to update 'meta.wcsinfo' with FITS SIP approximation: %s",
                                                exc)


def _reads(spec: StepSpec, keys: ExposureKeys, params) -> tuple[str, ...]:
    """Imaging reads the DISTORTION and FILTEROFFSET references only."""
    return ("distortion", "filteroffset")


def _run(state, ctx) -> str:
    if not hasattr(state, "background"):
        raise InputError(f"{state.path}: the calib engine's assign_wcs runs on count-rate images (calwebb_image2)")
    if state.keys.exp_type not in _imaging_types():
        raise InputError(f"{state.path}: assign_wcs of EXP_TYPE {state.keys.exp_type!r} is not implemented by "
                         "the calib engine (imaging only); use the jwst engine")
    dist = ctx.path("distortion")
    if dist is None:
        raise ReferenceFileError(f"assign_wcs: no DISTORTION reference applies to {state.path} (N/A in the "
                                 "context): an imaging WCS cannot be built")
    refs = {"distortion": dist, "filteroffset": ctx.path("filteroffset")}
    ctx.mark_used("distortion")
    if refs["filteroffset"] is not None:
        ctx.mark_used("filteroffset")
    assign_imaging_wcs(state.model, refs, ctx.params)
    return "COMPLETE"


STEP = StepSpec(
    name="assign_wcs", jwst_class="jwst.assign_wcs.AssignWcsStep",
    reftypes=REFTYPES, run=_run, reads=_reads, skip_if_na=(),
    params=(Param("sip_approx", "boolean", True, doc="fit the FITS SIP approximation into the header"),
            Param("sip_max_pix_error", "float", 0.01, doc="largest forward SIP error allowed, px"),
            Param("sip_degree", "integer", None, max=6, doc="forward SIP degree (None: the best fit)"),
            Param("sip_max_inv_pix_error", "float", 0.01, doc="largest inverse SIP error allowed, px"),
            Param("sip_inv_degree", "integer", None, max=6, doc="inverse SIP degree (None: the best fit)"),
            Param("sip_npoints", "integer", 12, doc="grid points per axis of the SIP fit"),
            Param("slit_y_low", "float", -0.55, support=SUPPORT_IGNORED, doc="NIRSpec slit lower edge"),
            Param("slit_y_high", "float", 0.55, support=SUPPORT_IGNORED, doc="NIRSpec slit upper edge"),
            Param("nrs_ifu_slice_wcs", "boolean", False, support=SUPPORT_IGNORED,
                  doc="NIRSpec IFU slice-based WCS (diagnostic)")),
    doc="jwst's own gwcs pipeline from DISTORTION/FILTEROFFSET and the WCSINFO keywords; FITS SIP fit.",
)
