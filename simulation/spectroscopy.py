"""Stage 2 of one spectroscopic mode: MIRI LRS fixed slit (EXP_TYPE MIR_LRS-FIXEDSLIT).

The scene, the pointing and the stage-2 references jwst 3.0's Spec2Pipeline reads for the
mode, written through the stdatamodels classes the real CRDS files open as:

=============  ===========================================  =====  ===========================
reftype        model                                        file   selected by
=============  ===========================================  =====  ===========================
distortion     DistortionModel (the imager's, from the      ASDF   DETECTOR, EXP_TYPE
               SIAF: :func:`simulation.imaging_refs.
               write_distortion`)
specwcs        MiriLRSSpecwcsModel (WAVETABLE, X_REF/Y_REF) FITS   DETECTOR, EXP_TYPE
flat           FlatModel (full frame)                       FITS   DETECTOR, EXP_TYPE, FILTER
photom         MirLrsPhotomModel (PHOTOM table: PHOTMJSR,   FITS   DETECTOR, EXP_TYPE
               RELRESPONSE(wavelength))
pathloss       MirLrsPathlossModel (PATHLOSS table:         FITS   DETECTOR, EXP_TYPE
               wavelength x slit position)
extract1d      JSON (jwst reads no other form): a box on    JSON   DETECTOR, EXP_TYPE
               the source
=============  ===========================================  =====  ===========================

Every other reftype jwst prefetches for the mode (apcorr, psf, filteroffset of the skipped
targ_centroid ...) is N/A in the synthetic imap (no aperture correction).

Geometry (from the SIAF in pysiaf): the slit is the MIRIM_SLIT aperture, its reference
point V2Ref/V3Ref taken through the inverse of the imager's full-frame distortion to
detector pixels (X_REF, Y_REF, 1-based: (326.13, 300.70) with PRD 075, as the real LRS
specwcs), its corners likewise (the slit is about 43 pixels long along x, 4.6 across along
y). The prism disperses along y: the trace runs from 4.6 um at Y_REF + 90 to 14 um at
Y_REF - 290, linear in y (the real trace is close to it), straight along x = X_REF.
The scene is the target through the slit: a point source at the slit centre whose
cross-dispersion profile is a Gaussian of the diffraction-limited width at each
wavelength (sigma = 0.44 lambda / D), with a smooth spectrum, plus dispersed sky through
the slit and a detector background, times the detector's pixel response (the FLAT): what
calwebb_spec2 divides out again. In the two exposures of an along-slit nod (PATTTYPE
...NOD, PATT_NUM 1 and 2) the target sits a quarter of the slit either side of its centre.
Sources: the jwst documentation "Reference Files" of
assign_wcs (MIRI LRS specwcs), flat_field, pathloss and photom; jwst's
``assign_wcs.miri.lrs_xytoabl`` (how the wavetable is read).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulation import imaging_refs, optics, siaf
from simulation.imaging_refs import USEAFTER, _meta, _save, _subarray_full

EXP_TYPE = "MIR_LRS-FIXEDSLIT"
DETECTOR = "MIRIMAGE"
FILTER = "P750L"
#: the stage-2 reftypes written here
LRS_REFTYPES = ("distortion", "specwcs", "flat", "photom", "pathloss", "extract1d")
#: extraction box width (pixels) of the EXTRACT1D reference
EXTRACT_WIDTH = 11
#: the target's place along the slit in the two nods of an ALONG-SLIT-NOD pattern (arcsec in
#: MIRIM_SLIT's ideal X: a quarter of the slit length either side of its centre)
NOD_OFFSET = 1.18
#: trace: offsets from Y_REF (pixels) of the blue and red ends, and their wavelengths (um)
TRACE_DY = (90.0, -290.0)
TRACE_WAVELENGTH = (4.6, 14.0)
#: telescope diameter (m) for the diffraction-limited profile; pixel scale from the SIAF
D_TELESCOPE = 6.5
#: scene (DN/s): detector background per pixel, sky per pixel through the slit, source per row
BACKGROUND = 2.0
SLIT_SKY = 1.0
SOURCE = 300.0


def is_lrs_fixedslit(kw: dict) -> bool:
    """Return True for a MIRI LRS fixed-slit exposure (its keyword dict)."""
    return (str(kw.get("INSTRUME", "")).upper() == "MIRI"
            and str(kw.get("EXP_TYPE", "")).upper() == EXP_TYPE)


@dataclass(frozen=True)
class SlitGeometry:
    """The LRS slit on the detector: reference point (0-based x, y) and half-length along x (pixels)."""

    x_ref: float
    y_ref: float
    half_length: float
    half_width: float
    v2_vert: tuple[float, ...]
    v3_vert: tuple[float, ...]
    pixel_scale: float   # arcsec per pixel along the slit


def slit_geometry() -> SlitGeometry:
    """Return the slit's place on the MIRIMAGE full frame, from the SIAF (see the module text)."""
    ap = siaf.aperture("MIRI", "MIRIM_SLIT")
    dist = siaf.distortion_model("MIRI", DETECTOR)
    x0, y0 = dist.inverse(ap.V2Ref, ap.V3Ref)
    xi = np.array([getattr(ap, f"XIdlVert{i}") for i in range(1, 5)])
    yi = np.array([getattr(ap, f"YIdlVert{i}") for i in range(1, 5)])
    v2, v3 = ap.idl_to_tel(xi, yi)
    xc, yc = dist.inverse(v2, v3)
    v2a, v3a = dist(float(x0), float(y0))
    v2b, v3b = dist(float(x0) + 1.0, float(y0))
    scale = float(np.hypot(v2b - v2a, v3b - v3a))
    return SlitGeometry(float(x0), float(y0), float(np.ptp(xc)) / 2.0, float(np.ptp(yc)) / 2.0,
                        tuple(float(v) for v in v2), tuple(float(v) for v in v3), scale)


def trace_wavelength(dy: np.ndarray) -> np.ndarray:
    """Wavelength (um) at offset ``dy`` (pixels) from Y_REF along the trace (linear; NaN off it)."""
    dy = np.asarray(dy, dtype=np.float64)
    (b, r), (wb, wr) = TRACE_DY, TRACE_WAVELENGTH
    lam = wb + (wr - wb) * (b - dy) / (b - r)
    return np.where((dy <= b) & (dy >= r), lam, np.nan)


def source_spectrum(wavelength: np.ndarray) -> np.ndarray:
    """Return the source's count rate per detector row (DN/s) at ``wavelength`` (um): smooth, positive."""
    lam = np.asarray(wavelength, dtype=np.float64)
    return SOURCE * (0.6 + 0.4 * np.exp(-0.5 * ((lam - 8.0) / 2.5) ** 2))


@dataclass
class LrsScene:
    """What the pixels of an LRS fixed-slit exposure see (DN/s), for :func:`simulation.ramps.simulate_ramp`.

    ``rate`` gives ``flat * (BACKGROUND + slit sky + source)``; ``seed``/``flat_version``
    choose the FLAT (:func:`simulation.optics.flat_field`) the pixels respond with.
    """

    seed: int = 0
    flat_version: int = 1
    geometry: SlitGeometry = field(default_factory=slit_geometry)
    source_x: float | None = None   # 0-based detector x of the source (default the slit centre)

    def rate(self, x0: int, y0: int, nx: int, ny: int, full_shape: tuple[int, int]) -> np.ndarray:
        """Count rate of the window at 0-based full-frame (x0, y0), float64 (ny, nx) DN/s.

        Raises
        ------
        ValueError
            If the window does not fit the MIRI full frame.
        """
        from scipy.special import erf

        if tuple(full_shape) != optics.full_shape("MIRI") or x0 + nx > full_shape[1] or y0 + ny > full_shape[0]:
            raise ValueError(f"window ({x0}, {y0}, {nx}, {ny}) does not fit the MIRI full frame {full_shape}")
        g = self.geometry
        flat = optics.flat_field("MIRI", DETECTOR, FILTER, None, self.seed,
                                 self.flat_version)[y0:y0 + ny, x0:x0 + nx].astype(np.float64)
        x = np.arange(x0, x0 + nx, dtype=np.float64)
        y = np.arange(y0, y0 + ny, dtype=np.float64)
        lam = trace_wavelength(y - g.y_ref)
        on = np.isfinite(lam)
        out = np.full((ny, nx), BACKGROUND)
        in_slit = np.abs(x - g.x_ref) <= g.half_length
        out[np.ix_(on, in_slit)] += SLIT_SKY
        sigma = 0.44 * lam[on] * 1e-6 / D_TELESCOPE * 206264.806 / g.pixel_scale   # pixels
        s2 = np.sqrt(2.0) * sigma[:, None]
        xs = g.x_ref if self.source_x is None else self.source_x
        prof = 0.5 * (erf((x[None, :] + 0.5 - xs) / s2) - erf((x[None, :] - 0.5 - xs) / s2))
        out[on] += prof * source_spectrum(lam[on])[:, None]
        return out * flat


def write_specwcs(path, geometry: SlitGeometry | None = None, useafter: str = USEAFTER) -> Path:
    """Write the SPECWCS reference of LRS fixed slit (MiriLRSSpecwcsModel).

    WAVETABLE: one row per detector row of the trace, in decreasing ``y_center`` (jwst fits
    splines to the reversed columns), ``x_center``/``y_center`` relative to (X_REF, Y_REF),
    the corners of each wavelength element (the slit's length along x, one pixel along y),
    ``wavelength`` in um; X_REF/Y_REF 1-based; the slit's V2/V3 vertices (arcsec).
    """
    from stdatamodels.jwst import datamodels as dm

    g = geometry or slit_geometry()
    dy = np.arange(TRACE_DY[0], TRACE_DY[1] - 0.5, -1.0)
    lam = trace_wavelength(dy)
    n = dy.size
    table = np.zeros(n, dtype=[(c, "<f8") for c in ("x_center", "y_center", "wavelength", "x0", "y0", "x1", "y1",
                                                    "x2", "y2", "x3", "y3")])
    table["y_center"], table["wavelength"] = dy, lam
    table["x0"] = table["x3"] = -g.half_length
    table["x1"] = table["x2"] = g.half_length
    table["y0"] = table["y1"] = dy + 0.5
    table["y2"] = table["y3"] = dy - 0.5
    m = dm.MiriLRSSpecwcsModel()
    m.wavetable = table
    m.meta.x_ref, m.meta.y_ref = g.x_ref + 1.0, g.y_ref + 1.0
    m.meta.x_ref_slitless, m.meta.y_ref_slitless = g.x_ref + 1.0, g.y_ref + 1.0
    for i in range(4):
        setattr(m.meta, f"v2_vert{i + 1}", g.v2_vert[i])
        setattr(m.meta, f"v3_vert{i + 1}", g.v3_vert[i])
    _meta(m, "MIRI", "specwcs", "Simulated LRS wavelength table: slit from the SIAF (MIRIM_SLIT), linear trace",
          detector=DETECTOR, exp_type=EXP_TYPE, filter_name=FILTER, useafter=useafter)
    _subarray_full(m, "MIRI")
    return _save(m, path)


def write_photom(path, useafter: str = USEAFTER) -> Path:
    """Write the PHOTOM reference of LRS (MirLrsPhotomModel).

    PHOTMJSR (the imager's at F770W, MJy/sr per DN/s), a flat RELRESPONSE(wavelength), and the
    nominal pixel solid angle (PIXAR_SR, PIXAR_A2) photom copies into the product, with which
    extract_1d turns surface brightness into flux density (Jy).
    """
    from stdatamodels.jwst import datamodels as dm

    wave = np.linspace(4.0, 15.0, 111).astype(np.float32)
    table = np.zeros(1, dtype=[("filter", "S12"), ("subarray", "S17"), ("photmjsr", "<f4"), ("uncertainty", "<f4"),
                               ("nelem", "<i2"), ("wavelength", "<f4", (wave.size,)),
                               ("relresponse", "<f4", (wave.size,)), ("reluncertainty", "<f4", (wave.size,))])
    table["filter"], table["subarray"] = FILTER, "FULL"
    table["photmjsr"] = optics.photmjsr("MIRI", DETECTOR, "F770W", None)
    table["uncertainty"] = 0.01 * table["photmjsr"]
    table["nelem"] = wave.size
    table["wavelength"][0] = wave
    table["relresponse"][0] = 1.0
    table["reluncertainty"][0] = 0.01
    m = dm.MirLrsPhotomModel()
    m.phot_table = table
    m.meta.photometry.pixelarea_steradians = optics.pixar_sr("MIRI", DETECTOR)     # PIXAR_SR: extract_1d's
    m.meta.photometry.pixelarea_arcsecsq = optics.pixar_sr("MIRI", DETECTOR) / optics.ARCSEC2_TO_SR   # MJy/sr -> Jy
    _meta(m, "MIRI", "photom", "Simulated LRS photometric calibration (flat relative response)",
          detector=DETECTOR, exp_type=EXP_TYPE, useafter=useafter)
    return _save(m, path)


def write_pathloss(path, geometry: SlitGeometry | None = None, useafter: str = USEAFTER) -> Path:
    """Write the PATHLOSS reference of LRS (MirLrsPathlossModel).

    PATHLOSS table: wavelengths (um, decreasing: jwst flips LRS tables), each with the
    fraction of a point source's light the slit passes as a function of its position in
    the slit (rows across, columns along; WCS keywords give the pixel offsets from the slit
    centre): a Gaussian profile of the diffraction-limited width clipped by the slit's width.
    """
    from scipy.special import erf
    from stdatamodels.jwst import datamodels as dm

    g = geometry or slit_geometry()
    wave = np.linspace(15.0, 4.0, 23)
    cols = np.arange(-np.floor(g.half_length), np.floor(g.half_length) + 1)
    rows = np.linspace(-g.half_width, g.half_width, 9)
    table = np.zeros(wave.size, dtype=[("wavelength", "<f4"), ("pathloss", "<f4", (rows.size, cols.size)),
                                       ("pathloss_err", "<f4", (rows.size, cols.size))])
    table["wavelength"] = wave
    for i, lam in enumerate(wave):
        sigma = 0.44 * lam * 1e-6 / D_TELESCOPE * 206264.806 / g.pixel_scale
        s2 = np.sqrt(2.0) * sigma
        passed = 0.5 * (erf((g.half_width - rows) / s2) + erf((g.half_width + rows) / s2))
        table["pathloss"][i] = passed[:, None] * np.ones(cols.size)[None, :]
        table["pathloss_err"][i] = 0.01
    m = dm.MirLrsPathlossModel()
    m.pathloss_table = table
    w = m.meta.wcsinfo
    w.crpix1, w.crval1, w.cdelt1 = 1.0, float(cols[0]), 1.0
    w.crpix2, w.crval2, w.cdelt2 = 1.0, float(rows[0]), float(rows[1] - rows[0])
    _meta(m, "MIRI", "pathloss", "Simulated LRS slit losses of a point source (diffraction-limited profile)",
          detector=DETECTOR, exp_type=EXP_TYPE, useafter=useafter)
    return _save(m, path)


def write_extract1d(path, useafter: str = USEAFTER) -> Path:
    """Write the EXTRACT1D reference of LRS fixed slit (JSON: the only form jwst reads for it).

    One aperture for any slit: dispersion along y (``dispaxis`` 2), an extraction
    ``EXTRACT_WIDTH`` pixels wide centred on the source (``use_source_posn``: jwst moves it to
    where the WCS puts the target, so each nod of a pair is extracted where its source is),
    no background fit (the nods' difference in bkg_subtract removes the sky). The file's
    CRDS properties are under ``meta`` as in a datamodel (read by
    :mod:`archive.crds.cache`; jwst reads only ``apertures``).
    """
    import json

    doc = {
        "meta": {"instrument": {"name": "MIRI", "detector": DETECTOR}, "exposure": {"type": EXP_TYPE},
                 "reftype": "EXTRACT1D", "useafter": useafter, "author": imaging_refs.AUTHOR,
                 "pedigree": "DUMMY", "description": "Simulated LRS fixed-slit extraction: a box on the source"},
        "apertures": [{"id": "ANY", "region_type": "target", "spectral_order": 1, "dispaxis": 2,
                       "extract_width": EXTRACT_WIDTH, "use_source_posn": True}],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def write_lrs_references(out_dir, seed: int = 0, useafter: str = USEAFTER) -> dict[str, Path]:
    """Write every stage-2 LRS fixed-slit reference (:data:`LRS_REFTYPES`) under ``out_dir``.

    Returns
    -------
    dict
        Reftype -> path; names carry the mode and seed.
    """
    out_dir = Path(out_dir)
    g = slit_geometry()
    name = imaging_refs.reference_name
    return {
        "distortion": imaging_refs.write_distortion(out_dir / name("MIRI", "distortion", "mirimage", "lrs", ext="asdf"),
                                                    "MIRI", DETECTOR, useafter, exp_type=EXP_TYPE),
        "specwcs": write_specwcs(out_dir / name("MIRI", "specwcs", "lrs"), g, useafter),
        "flat": imaging_refs.write_flat(out_dir / name("MIRI", "flat", "mirimage", "lrs", FILTER.lower(), f"s{seed}"),
                                        "MIRI", DETECTOR, FILTER, "N/A", seed, useafter=useafter, exp_type=EXP_TYPE),
        "photom": write_photom(out_dir / name("MIRI", "photom", "lrs"), useafter),
        "pathloss": write_pathloss(out_dir / name("MIRI", "pathloss", "lrs"), g, useafter),
        "extract1d": write_extract1d(out_dir / name("MIRI", "extract1d", "lrs", ext="json"), useafter),
    }


def nod_offset(kw: dict) -> float:
    """Return the target's ideal X in the slit (arcsec).

    -/+ :data:`NOD_OFFSET` for nods 1/2 (PATT_NUM) of a nod pattern (PATTTYPE), else 0.
    """
    patt = str(kw.get("PATTTYPE") or "").upper()
    try:
        n = int(kw.get("PATT_NUM") or 0)
    except (TypeError, ValueError):
        n = 0
    if "NOD" not in patt or n not in (1, 2):
        return 0.0
    return -NOD_OFFSET if n == 1 else NOD_OFFSET


def lrs_scene(kw: dict, seed: int = 0) -> tuple[LrsScene, dict]:
    """Return the scene and pointing keywords of an LRS fixed-slit exposure (its keyword dict).

    The target sits at :func:`nod_offset` along the slit; the scene's trace is where the
    imager distortion puts that point of MIRIM_SLIT.
    """
    dx = nod_offset(kw)
    ap = siaf.aperture("MIRI", "MIRIM_SLIT")
    v2, v3 = ap.idl_to_tel(dx, 0.0)
    x, _ = siaf.distortion_model("MIRI", DETECTOR).inverse(v2, v3)
    return LrsScene(seed=seed, source_x=float(x)), lrs_pointing(kw, seed, dither=(dx, 0.0))


def lrs_pointing(kw: dict, seed: int = 0, dither: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Return the pointing keywords that put the exposure's target at ``dither`` in the slit.

    Target (RA, Dec) and position angle are seeded per (PROGRAM, TARGNAME) and (PROGRAM,
    OBSERVTN), as for imaging (:mod:`simulation.imaging`); the attitude puts the target at
    ideal ``dither`` (arcsec) of MIRIM_SLIT (its reference point by default); APERNAME is
    MIRIM_SLIT (:class:`simulation.sky.Pointing`; XOFFSET/YOFFSET the dither).
    """
    from simulation.imaging import _seed
    from simulation.sky import make_pointing

    rng = np.random.default_rng(_seed("target", str(kw.get("PROGRAM", "")), str(kw.get("TARGNAME") or "TARGET"),
                                      seed))
    ra, dec = float(rng.uniform(0.0, 360.0)), float(np.degrees(np.arcsin(rng.uniform(-0.86, 0.86))))
    pa = float(np.random.default_rng(_seed("pa", kw.get("PROGRAM"), kw.get("OBSERVTN"), seed)).uniform(0.0, 360.0))
    return make_pointing("MIRI", "MIRIM_SLIT", ra, dec, pa, dither=dither).keywords()
