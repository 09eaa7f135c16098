"""What the simulated imagers do to light.

What the simulated imagers do to light: filters, PSF, flat field, pixel area, photometric
conversion, filter offsets, AB-Vega offsets. One source of truth for the scenes
(:mod:`simulation.sky`) and for the reference files that calibrate them
(:mod:`simulation.imaging_refs`).

Where the numbers come from:

* geometry (distortion, pixel area, pixel scale): the SIAF in ``pysiaf``
  (:mod:`simulation.siaf`), read at run time;
* filter names: the imaging filters of each instrument (JWST User Documentation, "NIRCam
  Filters", "NIRISS Filters", "MIRI Filters and Dispersers"); a filter's nominal wavelength
  is read from its name (F200W -> 2.00 um, F1130W -> 11.30 um) and its fractional bandwidth
  from its width class (W 0.25, W2 0.6, M 0.1, N 0.01);
* PSF: a Gaussian with the FWHM of an Airy core, 1.03 lambda / D (D = 6.5 m), broadened by
  :data:`DETECTOR_BLUR_SIGMA` pixels (charge diffusion, jitter), integrated over pixels;
* photometric conversion PHOTMJSR (MJy/sr per DN/s): from photon counting with JWST's
  collecting area (25.4 m^2), an assumed system throughput per instrument
  (:data:`THROUGHPUT`), the fractional bandwidth, the simulated detectors' gain and the
  nominal pixel solid angle (see :func:`photmjsr`): physically derived, *not* the
  instrument teams' calibration;
* flat field: seeded synthetic pixel response (QE) times the relative pixel area, as a flat
  measured on a uniformly illuminated detector contains both (JDox, "NIRCam Flat Fields");
* AB - Vega offsets: Vega's flux density at the filter's nominal wavelength, interpolated
  (log-log) between published Vega zero points: Bessell, Castelli & Plez (1998) R and I,
  Cohen, Wheaton & Megeath (2003) 2MASS J, H, Ks, Reach et al. (2005) IRAC, Engelbracht
  et al. (2007) MIPS 24 um;
* filter offsets (the per-filter image shift of the filteroffset references): seeded
  synthetic values of at most :data:`MAX_FILTER_OFFSET` px, zero for the filter in which the
  SIAF distortion is defined (:data:`REFERENCE_FILTERS`).

Conventions (those of the jwst pipeline and of JWST flats): a source of uniform surface
brightness S (MJy/sr) gives ``flat * S / PHOTMJSR`` DN/s in a pixel; a point source of flux
F (MJy) gives in total ``F / (PHOTMJSR * PIXAR_SR)`` DN/s spread by the PSF, each pixel
scaled by its response ``flat / area``. Then jwst's cal image (``rate / flat * PHOTMJSR``)
is S for the sky, and integrating it times the relative area and PIXAR_SR over a star (what
resample and source_catalog do) gives back F.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from simulation import siaf

H_PLANCK = 6.62607015e-34          # J s
JWST_AREA_M2 = 25.4                # collecting area (JDox "JWST Telescope")
JWST_DIAMETER_M = 6.5
ARCSEC2_TO_SR = (np.pi / 180.0 / 3600.0) ** 2
MJY_TO_SI = 1.0e-20                # 1 MJy in W m^-2 Hz^-1
AB_ZEROPOINT_JY = 3631.0
#: assumed end-to-end system throughput (telescope x instrument x detector QE)
THROUGHPUT = {"NIRCAM": 0.35, "NIRISS": 0.25, "MIRI": 0.20, "FGS": 0.45}
#: mean gain of the simulated detectors, e-/DN (simulation.ramps.make_detector)
NOMINAL_GAIN = {"NIRCAM": 2.0, "NIRISS": 2.0, "MIRI": 5.5, "FGS": 2.0}
#: extra Gaussian blur (sigma, pixels) of the PSF: charge diffusion, jitter, IPC
DETECTOR_BLUR_SIGMA = 0.4
#: FGS has no filter: its band (0.6 - 5 um) is represented by a nominal wavelength and width
FGS_WAVELENGTH_UM, FGS_BANDWIDTH = 2.0, 1.0
MAX_FILTER_OFFSET = 0.5            # px
EXP_TYPES = {"NIRCAM": "NRC_IMAGE", "NIRISS": "NIS_IMAGE", "MIRI": "MIR_IMAGE", "FGS": "FGS_IMAGE"}

_NIRCAM_SW = ("F070W", "F090W", "F115W", "F140M", "F150W", "F150W2", "F162M", "F164N",
              "F182M", "F187N", "F200W", "F210M", "F212N")
_NIRCAM_LW = ("F250M", "F277W", "F300M", "F322W2", "F323N", "F335M", "F356W", "F360M",
              "F405N", "F410M", "F430M", "F444W", "F460M", "F466N", "F470N", "F480M")
#: imaging (FILTER, PUPIL) pairs per instrument and channel (JDox filter pages)
IMAGING_FILTERS: dict[str, tuple[tuple[str, str], ...]] = {
    "NIRCAM_SHORT": tuple((f, "CLEAR") for f in _NIRCAM_SW),
    "NIRCAM_LONG": tuple((f, "CLEAR") for f in _NIRCAM_LW),
    # NIRISS: short-wavelength filters sit in the pupil wheel (FILTER CLEAR), long ones in
    # the filter wheel (PUPIL CLEARP)
    "NIRISS": tuple(("CLEAR", p) for p in ("F090W", "F115W", "F140M", "F150W", "F158M", "F200W"))
    + tuple((f, "CLEARP") for f in ("F277W", "F356W", "F380M", "F430M", "F444W", "F480M")),
    "MIRI": tuple((f, "N/A") for f in ("F560W", "F770W", "F1000W", "F1130W", "F1280W",
                                       "F1500W", "F1800W", "F2100W", "F2550W")),
    "FGS": (("N/A", "N/A"),),
}
#: MIRI imager subarrays (rows of the MIRI imaging PHOTOM and APCORR tables)
MIRI_IMAGER_SUBARRAYS = ("FULL", "BRIGHTSKY", "SUB256", "SUB128", "SUB64")
#: filter in which the SIAF distortion is defined: its filter offset is zero
REFERENCE_FILTERS = {"NIRCAM_SHORT": "F200W", "NIRCAM_LONG": "F444W", "NIRISS": "F150W",
                     "MIRI": "F770W", "FGS": "N/A"}
#: Vega flux density (um, Jy) for the AB - Vega offsets (see the module docstring)
VEGA_ZERO_POINTS = ((0.64, 3064.0), (0.79, 2416.0), (1.235, 1594.0), (1.662, 1024.0),
                    (2.159, 666.7), (3.550, 280.9), (4.493, 179.7), (5.731, 115.0),
                    (7.872, 64.9), (23.68, 7.17))


def channel(instrument: str, detector: str) -> str:
    """Return the filter-set key of a detector.

    Filter-set key of :data:`IMAGING_FILTERS`: NIRCAM_SHORT / NIRCAM_LONG by detector,
    else the instrument.
    """
    instrument, detector = instrument.upper(), detector.upper()
    if instrument == "NIRCAM":
        return "NIRCAM_LONG" if detector.endswith("LONG") else "NIRCAM_SHORT"
    if instrument not in IMAGING_FILTERS:
        raise ValueError(f"no imaging filters for instrument {instrument!r}")
    return instrument


def imaging_filters(instrument: str, detector: str) -> tuple[tuple[str, str], ...]:
    """(FILTER, PUPIL) pairs a detector images through ("N/A" where the instrument has none)."""
    return IMAGING_FILTERS[channel(instrument, detector)]


def _norm(value: str | None) -> str:
    v = (value or "N/A").strip().upper()
    return "N/A" if v in ("", "NONE", "NULL", "N/A", "ANY") else v


def band_name(filter_name: str | None, pupil: str | None) -> str:
    """Return the element that defines the band: FILTER, or PUPIL where FILTER is CLEAR (NIRISS)."""
    f, p = _norm(filter_name), _norm(pupil)
    return p if f in ("CLEAR", "N/A") and p.startswith("F") else f


def wavelength_um(filter_name: str | None, pupil: str | None = None, instrument: str = "") -> float:
    """Return the nominal wavelength of a filter.

    Nominal wavelength (um) from the filter name: digits / 100 (F200W -> 2.0,
    F1130W -> 11.3); FGS (no filter) :data:`FGS_WAVELENGTH_UM`.

    Raises
    ------
    ValueError
        If the name carries no wavelength.
    """
    if instrument.upper() == "FGS":
        return FGS_WAVELENGTH_UM
    name = band_name(filter_name, pupil)
    m = re.fullmatch(r"F(\d{3,4})(W2|W|M|N)", name)
    if not m:
        raise ValueError(f"no nominal wavelength in filter name {name!r}")
    return int(m.group(1)) / 100.0


def fractional_bandwidth(filter_name: str | None, pupil: str | None = None, instrument: str = "") -> float:
    """Delta lambda / lambda by width class: W 0.25, W2 0.6, M 0.1, N 0.01 (FGS 1.0)."""
    if instrument.upper() == "FGS":
        return FGS_BANDWIDTH
    name = band_name(filter_name, pupil)
    m = re.fullmatch(r"F\d{3,4}(W2|W|M|N)", name)
    if not m:
        raise ValueError(f"no width class in filter name {name!r}")
    return {"W2": 0.6, "W": 0.25, "M": 0.1, "N": 0.01}[m.group(1)]


def pixel_scale(instrument: str, detector: str) -> float:
    """Mean pixel scale at the reference pixel, arcsec/px (sqrt of the nominal area)."""
    return float(np.sqrt(siaf.nominal_pixel_area(instrument, detector)))


def pixar_sr(instrument: str, detector: str) -> float:
    """Nominal pixel solid angle, sr (PIXAR_SR): SIAF XSciScale x YSciScale."""
    return siaf.nominal_pixel_area(instrument, detector) * ARCSEC2_TO_SR


def photmjsr(instrument: str, detector: str, filter_name: str | None, pupil: str | None) -> float:
    """Photometric conversion, MJy/sr per DN/s, from photon counting.

    A source of surface brightness S (MJy/sr) puts ``F_nu = S * Omega * 1e-20`` W m^-2 Hz^-1
    on a pixel of solid angle Omega (sr); the telescope (area A) detects
    ``F_nu A T R / h`` electrons/s in a band of fractional width R = d nu / nu with
    throughput T, i.e. ``/ gain`` DN/s. So ``PHOTMJSR = h gain / (A Omega 1e-20 T R)``.
    Omega is the nominal pixel (:func:`pixar_sr`), T :data:`THROUGHPUT`, gain
    :data:`NOMINAL_GAIN`, R :func:`fractional_bandwidth`.
    """
    instrument = instrument.upper()
    r = fractional_bandwidth(filter_name, pupil, instrument)
    omega = pixar_sr(instrument, detector)
    return H_PLANCK * NOMINAL_GAIN[instrument] / (
        JWST_AREA_M2 * omega * MJY_TO_SI * THROUGHPUT[instrument] * r)


def psf_sigma(instrument: str, detector: str, filter_name: str | None, pupil: str | None) -> float:
    """Return the Gaussian PSF sigma in pixels.

    Gaussian PSF sigma in pixels: Airy-core FWHM 1.03 lambda/D over the pixel scale,
    combined in quadrature with :data:`DETECTOR_BLUR_SIGMA`.
    """
    lam = wavelength_um(filter_name, pupil, instrument) * 1.0e-6
    fwhm_arcsec = np.degrees(1.03 * lam / JWST_DIAMETER_M) * 3600.0
    sigma = fwhm_arcsec / (2.0 * np.sqrt(2.0 * np.log(2.0))) / pixel_scale(instrument, detector)
    return float(np.hypot(sigma, DETECTOR_BLUR_SIGMA))


#: unit boxes convolved into the PSF a source catalog measures on a resampled (i2d) image:
#: the detector pixel, the drizzle footprint of an input pixel (pixfrac 1), the output pixel
#: and the aperture sum over pixels (measured on simulated i2d images: sigma^2 + 4/12 px^2)
I2D_BOXES = 4


def encircled_energy_radius(sigma_px: float, fraction: float, boxes: int = I2D_BOXES) -> float:
    """Return the radius enclosing a fraction of a pixelated Gaussian PSF.

    Radius (px) enclosing ``fraction`` of a Gaussian PSF of ``sigma_px`` seen through
    ``boxes`` unit pixel boxes (each adds 1/12 px^2 to the variance): ``s sqrt(-2 ln(1 - f))``
    with ``s^2 = sigma^2 + boxes / 12``. The default describes jwst's i2d at native scale.
    """
    s = np.sqrt(sigma_px**2 + boxes / 12.0)
    return float(s * np.sqrt(-2.0 * np.log(1.0 - fraction)))


def vega_flux_jy(wavelength: float) -> float:
    """Return Vega's flux density at a wavelength.

    Vega's flux density (Jy) at ``wavelength`` um: log-log interpolation (and
    extrapolation from the two nearest points) of :data:`VEGA_ZERO_POINTS`.
    """
    lam = np.log([p[0] for p in VEGA_ZERO_POINTS])
    f = np.log([p[1] for p in VEGA_ZERO_POINTS])
    x = np.log(wavelength)
    i = int(np.clip(np.searchsorted(lam, x), 1, len(lam) - 1))
    t = (x - lam[i - 1]) / (lam[i] - lam[i - 1])
    return float(np.exp(f[i - 1] + t * (f[i] - f[i - 1])))


def abvega_offset(instrument: str, filter_name: str | None, pupil: str | None) -> float:
    """m_AB - m_Vega (mag) = 2.5 log10(3631 Jy / F_Vega) at the nominal wavelength."""
    lam = wavelength_um(filter_name, pupil, instrument)
    return float(2.5 * np.log10(AB_ZEROPOINT_JY / vega_flux_jy(lam)))


def _seed(*parts) -> int:
    from simulation.ramps import derive_seed

    return derive_seed("optics", *parts)


def filter_offset(instrument: str, detector: str, filter_name: str | None, pupil: str | None,
                  seed: int = 0) -> tuple[float, float]:
    """Return the filter offset of a detector and filter.

    (column, row) offset in pixels of the image through a filter (what a FILTEROFFSET
    reference holds; jwst's assign_wcs adds it to detector pixels before the distortion).

    Seeded synthetic values, |offset| <= :data:`MAX_FILTER_OFFSET`; (0, 0) for the
    detector's :data:`REFERENCE_FILTERS` filter and for FGS (no filter wheel).
    """
    instrument = instrument.upper()
    ch = channel(instrument, detector)
    if instrument == "FGS" or band_name(filter_name, pupil) == REFERENCE_FILTERS[ch]:
        return 0.0, 0.0
    rng = np.random.default_rng(_seed("filteroffset", instrument, detector.upper(),
                                      _norm(filter_name), _norm(pupil), seed))
    col, row = rng.uniform(-MAX_FILTER_OFFSET, MAX_FILTER_OFFSET, 2)
    return float(col), float(row)


def full_shape(instrument: str) -> tuple[int, int]:
    """(ny, nx) of the full frame in DMS orientation."""
    from simulation.ramps import FULL_SHAPE

    return FULL_SHAPE[instrument.upper()]


@functools.lru_cache(maxsize=4)
def relative_area(instrument: str, detector: str) -> np.ndarray:
    """Return the relative pixel area map of a detector.

    Pixel solid angle over the nominal one (:func:`simulation.siaf.pixel_area_map` /
    :func:`simulation.siaf.nominal_pixel_area`), float32 (ny, nx) full frame: the AREA
    reference's data. Cached (read-only array).
    """
    instrument, detector = instrument.upper(), detector.upper()
    model = siaf.distortion_model(instrument, detector)
    area = siaf.pixel_area_map(model, full_shape(instrument))
    out = (area / siaf.nominal_pixel_area(instrument, detector)).astype(np.float32)
    out.setflags(write=False)
    return out


def reference_pixels(instrument: str) -> np.ndarray:
    """Return the reference-pixel mask of a full frame.

    Bool (ny, nx): the reference pixels of the full frame (4-pixel border near-IR,
    4 columns each side for MIRI), as in :func:`simulation.ramps.make_detector`.
    """
    from simulation.ramps import NREF_MIRI, NREF_NIR

    ny, nx = full_shape(instrument)
    ref = np.zeros((ny, nx), bool)
    if instrument.upper() == "MIRI":
        ref[:, :NREF_MIRI] = ref[:, -NREF_MIRI:] = True
    else:
        ref[:NREF_NIR, :] = ref[-NREF_NIR:, :] = True
        ref[:, :NREF_NIR] = ref[:, -NREF_NIR:] = True
    return ref


@functools.lru_cache(maxsize=4)
def flat_field(instrument: str, detector: str, filter_name: str | None, pupil: str | None,
               seed: int = 0, version: int = 1) -> np.ndarray:
    """Return the simulated flat field of a detector and filter.

    Flat field, float32 (ny, nx) full frame: pixel response times relative pixel area,
    divided by its median over light-sensitive pixels; 1 on reference pixels. Cached
    (read-only array).

    The response (seeded by detector, filter, pupil and ``seed``) has a smooth large-scale
    part (a quadratic surface, +-3 % peak) and a pixel-to-pixel part (1 % rms). ``version``
    > 1 is a re-measurement of the same detector: the version-1 flat times (1 + 0.2 % rms
    noise seeded by the version), as a new delivery of a flat would differ.
    """
    instrument, detector = instrument.upper(), detector.upper()
    ny, nx = full_shape(instrument)
    rng = np.random.default_rng(_seed("flat", instrument, detector, _norm(filter_name),
                                      _norm(pupil), seed))
    y = np.linspace(-1.0, 1.0, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)[None, :]
    c = rng.uniform(-0.01, 0.01, 5).astype(np.float32)
    large = 1.0 + c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y
    qe = large * (1.0 + 0.01 * rng.standard_normal((ny, nx), dtype=np.float32))
    flat = qe * relative_area(instrument, detector)
    if version > 1:
        vrng = np.random.default_rng(_seed("flat-version", instrument, detector, _norm(filter_name),
                                           _norm(pupil), seed, version))
        flat *= 1.0 + 0.002 * vrng.standard_normal((ny, nx), dtype=np.float32)
    ref = reference_pixels(instrument)
    flat /= np.median(flat[~ref])
    flat[ref] = 1.0
    flat = flat.astype(np.float32)
    flat.setflags(write=False)
    return flat
