"""Stage-2/3 imaging reference files for the simulated detectors, in the real CRDS formats.

Written through the stdatamodels classes the real CRDS files open as (jwst's steps read
them with the same classes):

=============  ===========================================  =====  =====================
reftype        model                                        file   selected by
=============  ===========================================  =====  =====================
distortion     DistortionModel (astropy compound model)     ASDF   DETECTOR, EXP_TYPE
filteroffset   FilteroffsetModel (``filters`` list)         ASDF   DETECTOR, EXP_TYPE
flat           FlatModel (SCI, DQ, ERR full frame)          FITS   DETECTOR, EXP_TYPE,
                                                                   FILTER, PUPIL
photom         NrcImgPhotomModel / NisImgPhotomModel /      FITS   DETECTOR, EXP_TYPE
               MirImgPhotomModel / FgsImgPhotomModel
area           PixelAreaModel (SCI full frame, PIXAR_*)     FITS   DETECTOR, EXP_TYPE
apcorr         NrcImgApcorrModel / NisImg... / MirImg...    FITS   EXP_TYPE
               / FgsImgApcorrModel
abvegaoffset   ABVegaOffsetModel (``abvega_offset`` table)  ASDF   EXP_TYPE
=============  ===========================================  =====  =====================

(the selection is made by :mod:`archive.crds.cache` from the files' own keywords; a FILTER
or PUPIL of "N/A" matches any value). The numbers come from :mod:`simulation.optics`
(geometry from the SIAF in pysiaf, photometry from photon counting; see there). The jwst
documentation pages "Reference Files" of assign_wcs, flat_field, photom and
source_catalog describe the formats; the NIRCam team's ``nircam_distortion_reffiles_from_
pysiaf.py`` (spacetelescope/nircam_calib) the way imaging distortion files are built.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from simulation import optics, siaf

USEAFTER = "2000-01-01T00:00:00"
AUTHOR = "simulation.imaging_refs"
#: encircled-energy fractions tabulated in the APCORR references (jwst's source_catalog
#: aperture_ee1/2/3 must be among them; defaults 30, 50, 70)
EE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: the reftypes written here (the stage-2/3 imaging references of a synthetic context)
IMAGING_REFTYPES = ("distortion", "filteroffset", "flat", "photom", "area", "apcorr", "abvegaoffset")

_PHOTOM_MODELS = {"NIRCAM": "NrcImgPhotomModel", "NIRISS": "NisImgPhotomModel",
                  "MIRI": "MirImgPhotomModel", "FGS": "FgsImgPhotomModel"}
_APCORR_MODELS = {"NIRCAM": "NrcImgApcorrModel", "NIRISS": "NisImgApcorrModel",
                  "MIRI": "MirImgApcorrModel", "FGS": "FgsImgApcorrModel"}


def _meta(model, instrument: str, reftype: str, description: str, detector: str | None = None,
          exp_type: str | None = None, filter_name: str | None = None, pupil: str | None = None,
          useafter: str = USEAFTER) -> None:
    m = model.meta
    m.telescope = "JWST"
    m.instrument.name = instrument
    if detector is not None:
        m.instrument.detector = detector
        if instrument == "NIRCAM":      # NIRCam references name module and channel
            m.instrument.module = detector[3]
            m.instrument.channel = "LONG" if detector.endswith("LONG") else "SHORT"
    if filter_name is not None:
        m.instrument.filter = filter_name
    if pupil is not None:
        m.instrument.pupil = pupil
    try:                                # ABVEGAOFFSET has no exposure keywords
        m.exposure.type = exp_type or optics.EXP_TYPES[instrument]
    except AttributeError:
        pass
    m.reftype = reftype.upper()
    m.useafter = useafter
    m.author = AUTHOR
    m.pedigree = "DUMMY"
    m.description = description


def _save(model, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".asdf":
        model.save(path)
    else:
        model.save(path, overwrite=True)
    model.close()
    return path


def write_distortion(path, instrument: str, detector: str, useafter: str = USEAFTER,
                     exp_type: str | None = None) -> Path:
    """Write a DISTORTION reference from the SIAF.

    DISTORTION reference (ASDF DistortionModel): full-frame detector pixels (0-based) ->
    V2/V3 (arcsec), :func:`simulation.siaf.distortion_model` of the detector's full-frame
    SIAF aperture, with its analytic inverse. Input units pix, output units arcsec.
    ``exp_type`` selects it (default the instrument's imaging EXP_TYPE; MIRI's LRS uses the
    imager's distortion, :mod:`simulation.spectroscopy`).
    """
    import astropy.units as u
    from stdatamodels.jwst import datamodels as dm

    instrument, detector = instrument.upper(), detector.upper()
    ap = siaf.full_frame_aperture(instrument, detector)
    model = siaf.distortion_model(instrument, detector)
    d = dm.DistortionModel(model=model, input_units=u.pix, output_units=u.arcsec)
    _meta(d, instrument, "distortion",
          f"Distortion of {ap.AperName} from the SIAF in pysiaf ({siaf.prd_version()}): "
          "Sci2Idl/Idl2Sci polynomials, V3IdlYAngle, VIdlParity, V2Ref/V3Ref",
          detector=detector, exp_type=exp_type, useafter=useafter)
    d.meta.subarray.name = "FULL"
    if instrument == "NIRCAM":
        d.meta.instrument.p_pupil = "ANY|"
    return _save(d, path)


def write_filteroffset(path, instrument: str, detector: str, seed: int = 0,
                       useafter: str = USEAFTER) -> Path:
    """Write a FILTEROFFSET reference.

    FILTEROFFSET reference (ASDF FilteroffsetModel): one entry per imaging filter of the
    detector (:func:`simulation.optics.imaging_filters`) with ``column_offset`` and
    ``row_offset`` in pixels (:func:`simulation.optics.filter_offset`); entries carry
    ``filter`` and, for NIRCam and NIRISS, ``pupil`` (how jwst matches them).
    """
    from stdatamodels.jwst import datamodels as dm

    instrument, detector = instrument.upper(), detector.upper()
    entries = []
    for filt, pupil in optics.imaging_filters(instrument, detector):
        col, row = optics.filter_offset(instrument, detector, filt, pupil, seed)
        entry = {"filter": filt, "column_offset": col, "row_offset": row}
        if instrument in ("NIRCAM", "NIRISS"):
            entry["pupil"] = pupil
        entries.append(entry)
    m = dm.FilteroffsetModel()
    m.filters = entries
    m.meta.input_units = "pixel"
    _meta(m, instrument, "filteroffset", f"Simulated filter offsets for {detector} (seed {seed})",
          detector=detector, useafter=useafter)
    return _save(m, path)


def _subarray_full(model, instrument: str) -> None:
    ny, nx = optics.full_shape(instrument)
    s = model.meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "FULL", 1, 1, nx, ny
    s.fastaxis, s.slowaxis = 1, 2


def write_flat(path, instrument: str, detector: str, filter_name: str, pupil: str, seed: int = 0,
               version: int = 1, useafter: str = USEAFTER, exp_type: str | None = None) -> Path:
    """Write a FLAT reference.

    FLAT reference (FlatModel, full frame): SCI float32 (ny, nx) the dimensionless
    :func:`simulation.optics.flat_field` (response x relative pixel area, median 1),
    ERR float32 0.005, DQ uint32 0. FILTER/PUPIL keywords select it (PUPIL "N/A" for MIRI
    and FGS), with ``exp_type`` (default the instrument's imaging EXP_TYPE). ``version`` > 1
    writes a re-measured flat (see ``flat_field``).
    """
    from stdatamodels.jwst import datamodels as dm

    instrument, detector = instrument.upper(), detector.upper()
    data = np.array(optics.flat_field(instrument, detector, filter_name, pupil, seed, version))
    m = dm.FlatModel(data=data, dq=np.zeros(data.shape, np.uint32),
                     err=np.full(data.shape, 0.005, np.float32))
    m.dq_def = np.array([(0, 1, "DO_NOT_USE", "Bad pixel"), (18, 262144, "NO_FLAT_FIELD", "No flat")],
                        dtype=[("BIT", "<i4"), ("VALUE", "<u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")])
    _meta(m, instrument, "flat",
          f"Simulated flat for {detector} {filter_name}/{pupil} (seed {seed}, version {version}): "
          "pixel response x SIAF pixel area", detector=detector, filter_name=filter_name,
          pupil=pupil, exp_type=exp_type, useafter=useafter)
    _subarray_full(m, instrument)
    return _save(m, path)


def write_photom(path, instrument: str, detector: str, useafter: str = USEAFTER) -> Path:
    """Write a PHOTOM reference.

    PHOTOM reference (the instrument's imaging photom model): PHOT_TABLE with one row per
    imaging filter of the detector (MIRI: and imager subarray; FGS: a single row), PHOTMJSR
    float32 (MJy/sr per DN/s, :func:`simulation.optics.photmjsr`), UNCERTAINTY 1 % of it;
    PIXAR_SR / PIXAR_A2 the nominal pixel solid angle.
    """
    from stdatamodels.jwst import datamodels as dm

    instrument, detector = instrument.upper(), detector.upper()
    rows = []
    for filt, pupil in optics.imaging_filters(instrument, detector):
        c = optics.photmjsr(instrument, detector, filt, pupil)
        if instrument in ("NIRCAM", "NIRISS"):
            rows.append((filt, pupil, c, 0.01 * c))
        elif instrument == "MIRI":
            rows.extend((filt, sub, c, 0.01 * c) for sub in optics.MIRI_IMAGER_SUBARRAYS)
        else:
            rows.append((c, 0.01 * c))
    if instrument in ("NIRCAM", "NIRISS"):
        dtype = [("filter", "S12"), ("pupil", "S12"), ("photmjsr", "<f4"), ("uncertainty", "<f4")]
    elif instrument == "MIRI":
        dtype = [("filter", "S12"), ("subarray", "S17"), ("photmjsr", "<f4"), ("uncertainty", "<f4")]
    else:
        dtype = [("photmjsr", "<f4"), ("uncertainty", "<f4")]
    m = getattr(dm, _PHOTOM_MODELS[instrument])(phot_table=np.array(rows, dtype=dtype))
    _meta(m, instrument, "photom", f"Simulated photometric conversion for {detector} "
          "(photon counting, simulation.optics.photmjsr)", detector=detector, useafter=useafter)
    m.meta.photometry.pixelarea_steradians = optics.pixar_sr(instrument, detector)
    m.meta.photometry.pixelarea_arcsecsq = siaf.nominal_pixel_area(instrument, detector)
    return _save(m, path)


def write_area(path, instrument: str, detector: str, useafter: str = USEAFTER) -> Path:
    """Write an AREA reference.

    AREA reference (PixelAreaModel, full frame): SCI float32 (ny, nx) each pixel's solid
    angle relative to the nominal one (:func:`simulation.optics.relative_area`, from the
    same SIAF distortion as the DISTORTION reference); PIXAR_SR (sr) / PIXAR_A2 (arcsec^2)
    the nominal pixel (XSciScale x YSciScale).
    """
    from stdatamodels.jwst import datamodels as dm

    instrument, detector = instrument.upper(), detector.upper()
    m = dm.PixelAreaModel(data=np.array(optics.relative_area(instrument, detector)))
    _meta(m, instrument, "area", f"Pixel area of {detector} from the SIAF distortion "
          f"({siaf.prd_version()})", detector=detector, useafter=useafter)
    m.meta.photometry.pixelarea_steradians = optics.pixar_sr(instrument, detector)
    m.meta.photometry.pixelarea_arcsecsq = siaf.nominal_pixel_area(instrument, detector)
    return _save(m, path)


def write_apcorr(path, instrument: str, useafter: str = USEAFTER) -> Path:
    """Write an APCORR reference.

    APCORR reference (the instrument's imaging apcorr model): APCORR_TABLE with rows per
    imaging filter and encircled-energy fraction :data:`EE_FRACTIONS`: RADIUS (px at the
    native scale) enclosing that fraction of the simulated Gaussian PSF as resampled into an
    i2d (:func:`simulation.optics.encircled_energy_radius`), APCORR = 1 / fraction, SKYIN /
    SKYOUT (px) 4 and 6 PSF FWHM (at least 5 and 8 px). NIRCam's rows cover both channels
    (radii at each channel's pixel scale).
    """
    from stdatamodels.jwst import datamodels as dm

    instrument = instrument.upper()
    dets = {"NIRCAM": ("NRCA1", "NRCALONG"), "NIRISS": ("NIS",), "MIRI": ("MIRIMAGE",),
            "FGS": ("GUIDER1",)}[instrument]
    rows = []
    for det in dets:
        for filt, pupil in optics.imaging_filters(instrument, det):
            sigma = optics.psf_sigma(instrument, det, filt, pupil)
            fwhm = 2.3548 * sigma
            skyin, skyout = max(4.0 * fwhm, 5.0), max(6.0 * fwhm, 8.0)
            for f in EE_FRACTIONS:
                vals = (f, optics.encircled_energy_radius(sigma, f), 1.0 / f, skyin, skyout)
                if instrument in ("NIRCAM", "NIRISS"):
                    rows.append((filt, pupil, *vals))
                elif instrument == "MIRI":
                    rows.extend((filt, sub, *vals) for sub in optics.MIRI_IMAGER_SUBARRAYS)
                else:
                    rows.append(vals)
    num = [("eefraction", "<f4"), ("radius", "<f4"), ("apcorr", "<f4"), ("skyin", "<f4"), ("skyout", "<f4")]
    if instrument in ("NIRCAM", "NIRISS"):
        dtype = [("filter", "S12"), ("pupil", "S15"), *num]
    elif instrument == "MIRI":
        dtype = [("filter", "S12"), ("subarray", "S17"), *num]
    else:
        dtype = num
    m = getattr(dm, _APCORR_MODELS[instrument])(apcorr_table=np.array(rows, dtype=dtype))
    _meta(m, instrument, "apcorr", "Aperture corrections of the simulated Gaussian PSF",
          useafter=useafter)
    return _save(m, path)


def write_abvegaoffset(path, instrument: str, useafter: str = USEAFTER) -> Path:
    """Write an ABVEGAOFFSET reference.

    ABVEGAOFFSET reference (ASDF ABVegaOffsetModel): table ``abvega_offset`` with columns
    filter, pupil (NIRCam, NIRISS) / filter (MIRI) / detector (FGS) and ABVEGA_OFFSET
    (mag, :func:`simulation.optics.abvega_offset`).
    """
    from astropy.table import Table
    from stdatamodels.jwst import datamodels as dm

    instrument = instrument.upper()
    if instrument == "FGS":
        table = Table({"detector": ["GUIDER1", "GUIDER2"],
                       "abvega_offset": [optics.abvega_offset("FGS", None, None)] * 2})
    else:
        dets = ("NRCA1", "NRCALONG") if instrument == "NIRCAM" else (
            "NIS" if instrument == "NIRISS" else "MIRIMAGE",)
        pairs = [fp for det in dets for fp in optics.imaging_filters(instrument, det)]
        cols = {"filter": [f for f, _ in pairs]}
        if instrument != "MIRI":
            cols["pupil"] = [p for _, p in pairs]
        cols["abvega_offset"] = [optics.abvega_offset(instrument, f, p) for f, p in pairs]
        table = Table(cols)
    m = dm.ABVegaOffsetModel()
    m.abvega_offset = table
    _meta(m, instrument, "abvegaoffset", "AB - Vega offsets from published Vega zero points "
          "(simulation.optics.abvega_offset)", useafter=useafter)
    return _save(m, path)


def reference_name(instrument: str, reftype: str, *parts, ext: str = "fits") -> str:
    """``jwst_sim_<instrument>_<reftype>_<parts>.<ext>`` (lower case, '/' removed)."""
    tail = "_".join(str(p).lower().replace("/", "") for p in parts if p not in (None, ""))
    return f"jwst_sim_{instrument.lower()}_{reftype}_{tail}.{ext}"


def write_imaging_references(out_dir, instrument: str, detector: str, filter_pupils, seed: int = 0,
                             useafter: str = USEAFTER, per_instrument: bool = True) -> dict[str, list[Path]]:
    """Write every stage-2/3 imaging reference one detector needs.

    Parameters
    ----------
    out_dir : directory (e.g. ``<crds>/references/jwst/<instrument>``).
    instrument, detector : e.g. "NIRCAM", "NRCA1".
    filter_pupils : iterable of (FILTER, PUPIL) the exposures use: one FLAT each.
    seed : seed of the synthetic parts (flats, filter offsets).
    per_instrument : also write the per-instrument APCORR and ABVEGAOFFSET (set False
        when another detector of the instrument already wrote them).

    Returns
    -------
    dict : reftype -> list of written paths. File names carry instrument, detector,
    filter/pupil and seed, so that different simulations never reuse a name for other bytes.
    """
    instrument, detector = instrument.upper(), detector.upper()
    out_dir = Path(out_dir)
    det = detector.lower()
    out: dict[str, list[Path]] = {rt: [] for rt in IMAGING_REFTYPES}
    out["distortion"].append(write_distortion(
        out_dir / reference_name(instrument, "distortion", det, ext="asdf"), instrument, detector, useafter))
    if instrument != "FGS":            # jwst's FGS imaging WCS has no filter offset
        out["filteroffset"].append(write_filteroffset(
            out_dir / reference_name(instrument, "filteroffset", det, f"s{seed}", ext="asdf"),
            instrument, detector, seed, useafter))
    for filt, pupil in sorted(set((optics._norm(f), optics._norm(p)) for f, p in filter_pupils)):
        out["flat"].append(write_flat(out_dir / reference_name(instrument, "flat", det, filt, pupil, f"s{seed}"),
                                      instrument, detector, filt, pupil, seed, useafter=useafter))
    out["photom"].append(write_photom(out_dir / reference_name(instrument, "photom", det),
                                      instrument, detector, useafter))
    out["area"].append(write_area(out_dir / reference_name(instrument, "area", det),
                                  instrument, detector, useafter))
    if per_instrument:
        out["apcorr"].append(write_apcorr(out_dir / reference_name(instrument, "apcorr", "imaging"),
                                          instrument, useafter))
        out["abvegaoffset"].append(write_abvegaoffset(
            out_dir / reference_name(instrument, "abvegaoffset", "imaging", ext="asdf"), instrument, useafter))
    return {rt: paths for rt, paths in out.items() if paths}
