"""Stars on the sky, telescope pointings, and scenes seen through each exposure's WCS.

A :class:`StarField` holds stars at fixed (RA, Dec) with fluxes; a :class:`Pointing` is the
telescope attitude of one exposure (pysiaf's attitude matrix, JWST-STScI-001550 sect. 5)
and the header keywords that describe it (RA_REF, DEC_REF, ROLL_REF at the aperture's
V2_REF/V3_REF, ...); a :class:`SkyScene` renders the field into one detector through the
SIAF distortion and the filter offset, exactly the chain jwst's assign_wcs builds from the
DISTORTION and FILTEROFFSET references of :mod:`simulation.imaging_refs`. So the same star
falls on consistent pixels in every dithered exposure of an association, and jwst's WCS of
each calibrated exposure sends it back to its true (RA, Dec).

A scene's ``rate`` method has the signature of :meth:`simulation.ramps.Scene.rate`, so
:func:`simulation.ramps.simulate_ramp` accepts a SkyScene in place of a Scene and the raw
ramps carry the stars; :func:`simulation.exposures.write_rate` uses it directly.

Units: RA/Dec degrees, V2/V3 and ideal coordinates arcsec, fluxes microjansky (uJy, a flat
F_nu across the band), surface brightness MJy/sr, rates DN/s, pixels 0-based full-frame
(x, y) in DMS orientation unless said otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulation import optics, siaf

#: default zodiacal + thermal background, MJy/sr (near-IR: ~0.2 at 2 um at moderate ecliptic
#: latitude; MIRI: the telescope's thermal emission dominates, ~10 MJy/sr near 7.7 um)
DEFAULT_SKY_MJYSR = {"NIRCAM": 0.2, "NIRISS": 0.2, "FGS": 0.2, "MIRI": 10.0}


def _seed(*parts) -> int:
    from simulation.ramps import derive_seed

    return derive_seed("sky", *parts)


# ------------------------------------------------------------------------------------------
# stars

@dataclass
class StarField:
    """Point sources on the sky.

    ra, dec : float64 (n,) degrees (ICRS).
    flux : float64 (n,) uJy (flat F_nu over any band).
    """

    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray

    def __len__(self) -> int:
        """Return the number of stars."""
        return len(self.ra)

    def table(self):
        """Return the stars as an astropy Table.

        An astropy Table with columns RA, DEC (deg) and FLUX (uJy), the columns a jwst
        tweakreg ``abs_refcat`` file needs.
        """
        from astropy.table import Table

        return Table({"RA": self.ra, "DEC": self.dec, "FLUX": self.flux},
                     meta={"comment": "simulation.sky.StarField"})

    def write_ecsv(self, path) -> Path:
        """Write :meth:`table` as ECSV (usable as tweakreg's ``abs_refcat``)."""
        path = Path(path)
        self.table().write(path, format="ascii.ecsv", overwrite=True)
        return path


def random_star_field(ra: float, dec: float, radius: float, n: int, seed: int = 0,
                      flux_range: tuple[float, float] = (5.0, 500.0),
                      min_separation: float = 0.0) -> StarField:
    """Draw a seeded random star field.

    ``n`` stars uniformly within ``radius`` arcsec of (ra, dec), fluxes log-uniform in
    ``flux_range`` uJy, at least ``min_separation`` arcsec apart (drawn with rejection).
    Deterministic in all arguments.
    """
    rng = np.random.default_rng(_seed("field", float(ra), float(dec), float(radius), int(n), seed))
    xs, ys = [], []
    tries = 0
    while len(xs) < n:
        tries += 1
        if tries > 1000 * max(n, 1):
            raise ValueError(f"cannot place {n} stars {min_separation}\" apart within {radius}\"")
        r = radius * np.sqrt(rng.random())
        t = 2.0 * np.pi * rng.random()
        x, y = r * np.cos(t), r * np.sin(t)
        if min_separation > 0 and xs and np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) < min_separation:
            continue
        xs.append(x)
        ys.append(y)
    flux = np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), n))
    # tangent-plane offsets (xi east, eta north, arcsec) -> RA, Dec (gnomonic inverse)
    xi = np.radians(np.array(xs) / 3600.0)
    eta = np.radians(np.array(ys) / 3600.0)
    a0, d0 = np.radians(ra), np.radians(dec)
    denom = np.cos(d0) - eta * np.sin(d0)
    ra_s = a0 + np.arctan2(xi, denom)
    dec_s = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
    return StarField(np.degrees(ra_s) % 360.0, np.degrees(dec_s), flux)


# ------------------------------------------------------------------------------------------
# pointing

@dataclass
class Pointing:
    """Telescope attitude of one exposure and the header that describes it.

    attitude : float64 (3, 3), the true attitude matrix (V2/V3 -> sky; pysiaf convention).
    header_attitude : float64 (3, 3), the attitude the header keywords state (differs from
        ``attitude`` by the simulated pointing error).
    instrument, aperture : the SIAF aperture of the exposure's detector and subarray
        (APERNAME, e.g. NRCA1_SUB640): its V2Ref/V3Ref is the reference point of
        RA_REF/DEC_REF/ROLL_REF.
    pps_aperture : the aperture the telescope pointed (PPS_APER, e.g. NRCALL_FULL for a
        NIRCam exposure on all detectors): every detector of one exposure shares it.
    target : (ra, dec) of the target, degrees; dither : the target's position in the
        PPS aperture's ideal frame, arcsec (XOFFSET, YOFFSET).
    """

    attitude: np.ndarray
    header_attitude: np.ndarray
    instrument: str
    aperture: str
    target: tuple[float, float]
    dither: tuple[float, float] = (0.0, 0.0)
    pps_aperture: str | None = None

    def keywords(self) -> dict:
        """Return the pointing keywords of the exposure.

        Pointing keywords of the exposure (the values jwst's assign_wcs reads):

        RA_REF, DEC_REF (deg): sky position of (V2_REF, V3_REF); ROLL_REF (deg): position
        angle of V3 there; V2_REF, V3_REF (arcsec), V3I_YANG (deg), VPARITY of the aperture;
        RA_V1, DEC_V1, PA_V3 (deg) of the V1 axis; PA_APER (deg): position angle of the
        aperture's ideal +Y axis; VA_SCALE 1 (no velocity aberration simulated); TARG_RA,
        TARG_DEC; APERNAME, PPS_APER; XOFFSET, YOFFSET (arcsec).
        """
        from pysiaf.utils import rotations

        ap = siaf.aperture(self.instrument, self.aperture)
        att = self.header_attitude
        ra_ref, dec_ref = rotations.pointing(att, ap.V2Ref, ap.V3Ref)
        roll_ref = rotations.posangle(att, ap.V2Ref, ap.V3Ref)
        ra_v1, dec_v1 = rotations.pointing(att, 0.0, 0.0)
        pa_v3 = rotations.posangle(att, 0.0, 0.0)
        # PA_APER: position angle of the ideal +Y axis at the reference point
        v2a, v3a = ap.idl_to_tel(0.0, 1.0)
        ra_a, dec_a = rotations.pointing(att, v2a, v3a)
        pa_aper = _position_angle(ra_ref, dec_ref, ra_a, dec_a)
        return {
            "RA_REF": float(ra_ref), "DEC_REF": float(dec_ref), "ROLL_REF": float(roll_ref),
            "V2_REF": float(ap.V2Ref), "V3_REF": float(ap.V3Ref),
            "V3I_YANG": float(ap.V3IdlYAngle), "VPARITY": int(ap.VIdlParity),
            "RA_V1": float(ra_v1), "DEC_V1": float(dec_v1), "PA_V3": float(pa_v3),
            "PA_APER": float(pa_aper), "VA_SCALE": 1.0,
            "TARG_RA": float(self.target[0]), "TARG_DEC": float(self.target[1]),
            "APERNAME": self.aperture, "PPS_APER": self.pps_aperture or self.aperture,
            "XOFFSET": float(self.dither[0]), "YOFFSET": float(self.dither[1]),
        }


def _position_angle(ra1, dec1, ra2, dec2) -> float:
    """Position angle (deg, N through E) of point 2 seen from point 1."""
    a1, d1, a2, d2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    y = np.sin(a2 - a1) * np.cos(d2)
    x = np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(a2 - a1)
    return float(np.degrees(np.arctan2(y, x)) % 360.0)


def make_pointing(instrument: str, aperture: str, ra: float, dec: float, pa: float,
                  dither: tuple[float, float] = (0.0, 0.0), pointing_error: float = 0.0,
                  roll_error: float = 0.0, seed: int = 0, pps_aperture: str | None = None) -> Pointing:
    """Return the attitude that puts a target at a dither position.

    The attitude that puts the target (ra, dec) at ideal position ``dither`` (arcsec) of
    SIAF aperture ``pps_aperture`` (default ``aperture``) with the V3 axis at position angle
    ``pa`` (deg, N through E) there (``pysiaf.utils.rotations.attitude``); ``aperture`` is
    the exposure's own aperture (APERNAME, the reference point of RA_REF/DEC_REF).

    ``pointing_error`` (arcsec rms per axis) and ``roll_error`` (arcsec rms) make the
    header's attitude differ from the true one by a seeded offset of the reference point on
    the sky and of the roll about it, as the guide-star based pointing of a real exposure
    does (tweakreg corrects it); with both 0 the header states the true attitude.
    """
    from pysiaf.utils import rotations

    ap = siaf.aperture(instrument, aperture)
    pps = siaf.aperture(instrument, pps_aperture or aperture)
    v2, v3 = pps.idl_to_tel(float(dither[0]), float(dither[1]))
    att = rotations.attitude(v2, v3, ra, dec, pa)
    header = att
    if pointing_error > 0 or roll_error > 0:
        rng = np.random.default_rng(_seed("pointing-error", instrument, aperture, ra, dec, pa,
                                          dither, pointing_error, roll_error, seed))
        dx, dy = rng.normal(0.0, pointing_error, 2)           # arcsec on the sky
        droll = rng.normal(0.0, roll_error) / 3600.0           # deg
        ra_ref, dec_ref = rotations.pointing(att, ap.V2Ref, ap.V3Ref)
        roll_ref = rotations.posangle(att, ap.V2Ref, ap.V3Ref)
        header = rotations.attitude(ap.V2Ref, ap.V3Ref,
                                    ra_ref + dx / 3600.0 / np.cos(np.radians(dec_ref)),
                                    dec_ref + dy / 3600.0, roll_ref + droll)
    return Pointing(np.asarray(att), np.asarray(header), instrument.upper(), aperture,
                    (float(ra), float(dec)), (float(dither[0]), float(dither[1])),
                    pps_aperture or aperture)


# ------------------------------------------------------------------------------------------
# projection

def sky_to_detector(ra, dec, attitude, instrument: str, detector: str, filter_name=None,
                    pupil=None, seed: int = 0, iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Full-frame detector pixels (x, y; 0-based, float64) of sky positions (deg).

    sky -> V2/V3 with the attitude matrix (``pysiaf.utils.rotations.sky_to_tel``), then the
    detector position whose image through the SIAF distortion model
    (:func:`simulation.siaf.distortion_model`) is that V2/V3: the Idl2Sci polynomial gives a
    first guess, Newton iterations on the forward (Sci2Idl) model make it exact (the SIAF's
    inverse polynomials alone are off by up to ~0.2 px at FGS corners); finally the filter
    offset (:func:`simulation.optics.filter_offset`) is removed, since jwst adds it to the
    detector position before the distortion.
    """
    from pysiaf.utils import rotations

    ra = np.atleast_1d(np.asarray(ra, np.float64))
    dec = np.atleast_1d(np.asarray(dec, np.float64))
    nu2, nu3 = rotations.sky_to_tel(attitude, ra, dec)
    v2 = np.asarray(nu2.to_value("arcsec"), np.float64)
    v3 = np.asarray(nu3.to_value("arcsec"), np.float64)
    model = siaf.distortion_model(instrument, detector)
    x, y = model.inverse(v2, v3)
    h = 1e-3
    for _ in range(iterations):
        fx, fy = model(x, y)
        ax, ay = model(x + h, y)
        bx, by = model(x, y + h)
        j11, j21 = (ax - fx) / h, (ay - fy) / h
        j12, j22 = (bx - fx) / h, (by - fy) / h
        rx, ry = v2 - fx, v3 - fy
        det = j11 * j22 - j12 * j21
        x = x + (j22 * rx - j12 * ry) / det
        y = y + (-j21 * rx + j11 * ry) / det
    col, row = optics.filter_offset(instrument, detector, filter_name, pupil, seed)
    return x - col, y - row


# ------------------------------------------------------------------------------------------
# scene

@dataclass
class SkyScene:
    """A star field and a sky background seen by one detector through one filter.

    Use as the ``scene`` of :func:`simulation.ramps.simulate_ramp` (same ``rate`` signature as
    :class:`simulation.ramps.Scene`) or of :func:`simulation.exposures.write_rate`.

    Attributes
    ----------
    stars : the star field; pointing : the exposure's attitude (its true one places the stars).
    instrument, detector, filter, pupil : the optical path (see :mod:`simulation.optics`).
    seed : seed of the optics (flat, filter offsets), the same as the references'.
    sky_mjysr : background surface brightness, MJy/sr (default :data:`DEFAULT_SKY_MJYSR`).
    flat_version : which flat the detector really has (1: the delivered one).
    """

    stars: StarField
    pointing: Pointing
    instrument: str
    detector: str
    filter: str | None = None
    pupil: str | None = None
    seed: int = 0
    sky_mjysr: float | None = None
    flat_version: int = 1
    _xy: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self):
        """Normalise the instrument and detector names to upper case."""
        self.instrument = self.instrument.upper()
        self.detector = self.detector.upper()
        if self.sky_mjysr is None:
            self.sky_mjysr = DEFAULT_SKY_MJYSR[self.instrument]

    @property
    def photmjsr(self) -> float:
        """MJy/sr per DN/s of this detector and filter (:func:`simulation.optics.photmjsr`)."""
        return optics.photmjsr(self.instrument, self.detector, self.filter, self.pupil)

    @property
    def psf_sigma(self) -> float:
        """Gaussian PSF sigma, pixels (:func:`simulation.optics.psf_sigma`)."""
        return optics.psf_sigma(self.instrument, self.detector, self.filter, self.pupil)

    def star_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Full-frame (x, y) of every star (0-based float64 (n,); may lie off the array)."""
        if self._xy is None:
            self._xy = sky_to_detector(self.stars.ra, self.stars.dec, self.pointing.attitude,
                                       self.instrument, self.detector, self.filter, self.pupil,
                                       self.seed)
        return self._xy

    def star_rates(self) -> np.ndarray:
        """Return each star's total count rate.

        Total count rate of each star, DN/s float64 (n,), for a pixel response of 1:
        ``flux [MJy] / (PHOTMJSR * PIXAR_SR)`` (see :mod:`simulation.optics`).
        """
        pixar = optics.pixar_sr(self.instrument, self.detector)
        return self.stars.flux * 1.0e-12 / (self.photmjsr * pixar)

    def rate(self, x0: int, y0: int, nx: int, ny: int, full_shape: tuple[int, int]) -> np.ndarray:
        """Count rate of the window at 0-based full-frame (x0, y0), float64 (ny, nx) DN/s.

        ``flat * sky / PHOTMJSR`` plus each star's pixel-integrated Gaussian PSF times its
        total rate (:meth:`star_rates`) times the pixel response ``flat / area``. Reference
        pixels get the same formula (callers zero them, as simulate_ramp does).
        """
        from scipy.special import erf

        sl = (slice(y0, y0 + ny), slice(x0, x0 + nx))
        flat = optics.flat_field(self.instrument, self.detector, self.filter, self.pupil,
                                 self.seed, self.flat_version)[sl].astype(np.float64)
        area = optics.relative_area(self.instrument, self.detector)[sl].astype(np.float64)
        if flat.shape != (ny, nx) or tuple(full_shape) != optics.full_shape(self.instrument):
            raise ValueError(f"window ({x0}, {y0}, {nx}, {ny}) does not fit the "
                             f"{self.instrument} full frame {full_shape}")
        out = flat * (self.sky_mjysr / self.photmjsr)
        stars = np.zeros((ny, nx))
        xs, ys = self.star_pixels()
        total = self.star_rates()
        sig = self.psf_sigma
        half = int(np.ceil(6 * sig)) + 1
        s2 = np.sqrt(2.0) * sig
        for sx, sy, f in zip(xs, ys, total, strict=True):
            ix0, ix1 = max(int(np.floor(sx)) - half, x0), min(int(np.floor(sx)) + half + 1, x0 + nx)
            iy0, iy1 = max(int(np.floor(sy)) - half, y0), min(int(np.floor(sy)) + half + 1, y0 + ny)
            if ix0 >= ix1 or iy0 >= iy1:
                continue
            px = np.arange(ix0, ix1, dtype=np.float64)
            py = np.arange(iy0, iy1, dtype=np.float64)
            fx = 0.5 * (erf((px + 0.5 - sx) / s2) - erf((px - 0.5 - sx) / s2))
            fy = 0.5 * (erf((py + 0.5 - sy) / s2) - erf((py - 0.5 - sy) / s2))
            stars[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] += f * fy[:, None] * fx[None, :]
        return out + stars * flat / area
