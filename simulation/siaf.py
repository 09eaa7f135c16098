"""JWST imaging geometry from the Science Instrument Aperture File (SIAF) shipped in ``pysiaf``.

Everything here is read from the SIAF at run time (``pysiaf.Siaf``; its PRD version is
``pysiaf.JWST_PRD_VERSION``): the Sci2Idl / Idl2Sci distortion polynomials of a detector's
full-frame aperture, its reference pixel (XSciRef, YSciRef), the V2/V3 position of that
reference point (V2Ref, V3Ref, arcsec), the rotation of the ideal frame (V3IdlYAngle, deg)
and its parity (VIdlParity), and the placement of subarray apertures in the full frame.

The detector -> V2/V3 model is built the way the instrument teams build the official imaging
DISTORTION reference files from pysiaf (e.g. the NIRCam team's
``nircam_distortion_reffiles_from_pysiaf.py`` in spacetelescope/nircam_calib, the NIRISS and
FGS equivalents in jwreftools): 0-based full-frame pixel -> SIAF science pixel (+1) ->
offset from the reference pixel -> Sci2Idl polynomial (ideal frame, arcsec) -> rotation by
V3IdlYAngle with parity VIdlParity and shift by (V2Ref, V3Ref) (the planar
ideal -> telescope transformation of JWST-STScI-001550, pysiaf's default). The inverse
uses the Idl2Sci polynomials. The model is an ``astropy.modeling`` compound model, so it
serialises into a stdatamodels ``DistortionModel`` (ASDF) exactly as CRDS's files do.

Coordinates: "detector" pixels are 0-based (x, y) in the DMS (science) orientation of the
full frame, as jwst's assign_wcs uses them; SIAF "sci" pixels are the same, 1-based.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

#: full-frame SIAF aperture of each imaging detector (DETECTOR keyword -> aperture name)
FULL_FRAME_APERTURES: dict[str, dict[str, str]] = {
    "NIRCAM": {**{f"NRC{m}{i}": f"NRC{m}{i}_FULL" for m in "AB" for i in range(1, 5)},
               "NRCALONG": "NRCA5_FULL", "NRCBLONG": "NRCB5_FULL"},
    "NIRISS": {"NIS": "NIS_CEN"},
    "MIRI": {"MIRIMAGE": "MIRIM_FULL"},
    "FGS": {"GUIDER1": "FGS1_FULL", "GUIDER2": "FGS2_FULL"},
}
_SIAF_NAMES = {"NIRCAM": "NIRCam", "NIRISS": "NIRISS", "MIRI": "MIRI", "FGS": "FGS", "NIRSPEC": "NIRSpec"}


@functools.lru_cache(maxsize=None)
def siaf(instrument: str):
    """Return the ``pysiaf.Siaf`` of an instrument (loaded once per process; ~0.2 s each)."""
    import pysiaf

    instrument = instrument.upper()
    if instrument not in _SIAF_NAMES:
        raise ValueError(f"no SIAF for instrument {instrument!r}; known: {sorted(_SIAF_NAMES)}")
    return pysiaf.Siaf(_SIAF_NAMES[instrument])


def aperture(instrument: str, name: str):
    """Return a ``pysiaf`` aperture by name (e.g. ``aperture('NIRCAM', 'NRCA1_SUB640')``).

    Raises
    ------
    ValueError
        If the SIAF of ``instrument`` has no aperture ``name``.
    """
    s = siaf(instrument)
    if name not in s.apertures:
        raise ValueError(f"{name!r} is not a {instrument.upper()} SIAF aperture")
    return s[name]


def full_frame_aperture(instrument: str, detector: str):
    """Return the full-frame SIAF aperture of an imaging detector.

    NRCA1 -> NRCA1_FULL, NRCALONG -> NRCA5_FULL, NIS -> NIS_CEN, MIRIMAGE -> MIRIM_FULL,
    GUIDER1 -> FGS1_FULL.

    Raises
    ------
    ValueError
        For a detector without an imaging full-frame aperture here.
    """
    instrument, detector = instrument.upper(), detector.upper()
    try:
        name = FULL_FRAME_APERTURES[instrument][detector]
    except KeyError:
        raise ValueError(f"no full-frame imaging aperture for {instrument} {detector}") from None
    return aperture(instrument, name)


def parent_full_frame(instrument: str, aperture_name: str):
    """Return the full-frame aperture of the detector an aperture lies on.

    NRCA1_SUB640 -> NRCA1_FULL, NIS_SUB256 -> NIS_CEN, MIRIM_BRIGHTSKY -> MIRIM_FULL,
    FGS1_SUB128CNTR -> FGS1_FULL.
    """
    prefix = aperture_name.split("_", 1)[0]
    for name in FULL_FRAME_APERTURES[instrument.upper()].values():
        if name.split("_", 1)[0] == prefix:
            return aperture(instrument, name)
    raise ValueError(f"{aperture_name}: no full-frame {instrument.upper()} aperture with prefix {prefix!r}")


def subarray_geometry(instrument: str, aperture_name: str) -> tuple[int, int, int, int]:
    """Return (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) of a SIAF aperture.

    In the DMS (science) frame of its detector's full frame (1-based): its corners (``corners('det')``) taken to
    the full-frame aperture's science frame (``det_to_sci``); size XSciSize x YSciSize.
    A full-frame aperture gives (1, 1, nx, ny).

    (``Aperture.dms_corner()`` is the corner in the raw detector frame, the OSS convention,
    which differs from the DMS frame for detectors read out flipped, e.g. NRCA1.)
    """
    ap = aperture(instrument, aperture_name)
    full = parent_full_frame(instrument, aperture_name)
    xd, yd = ap.corners("det")
    xs, ys = full.det_to_sci(np.asarray(xd, float), np.asarray(yd, float))
    return int(np.ceil(np.min(xs))), int(np.ceil(np.min(ys))), int(ap.XSciSize), int(ap.YSciSize)


def _poly_coeffs(values: np.ndarray, degree: int) -> dict[str, float]:
    """SIAF flattened layout a[i, j] (term x**(i-j) * y**j) -> Polynomial2D names c{px}_{py}."""
    out, k = {}, 0
    for i in range(degree + 1):
        for j in range(i + 1):
            out[f"c{i - j}_{j}"] = float(values[k])
            k += 1
    return out


def distortion_model(instrument: str, detector: str):
    """Detector (0-based full-frame pixels) -> V2/V3 (arcsec) model of an imaging detector.

    Built from the SIAF full-frame aperture (:func:`full_frame_aperture`), see the module
    docstring. The forward and inverse are both analytic (Sci2Idl and Idl2Sci polynomials
    of degree ``Sci2IdlDeg``: 5 for NIRCam and NIRISS, 4 for MIRI and FGS); their round
    trip agrees to better than 1e-3 px over the array.

    Returns
    -------
    astropy.modeling.Model
        Two inputs (x, y) in pixels, two outputs (v2, v3) in arcsec, with ``inverse`` set.
    """
    from astropy.modeling.models import AffineTransformation2D, Mapping, Polynomial2D, Shift

    ap = full_frame_aperture(instrument, detector)
    deg = int(ap.Sci2IdlDeg)
    coeffs = ap.get_polynomial_coefficients()
    to_ref = Shift(1.0 - ap.XSciRef) & Shift(1.0 - ap.YSciRef)     # 0-based -> sci - ref
    sci2idl = Mapping((0, 1, 0, 1)) | (Polynomial2D(deg, **_poly_coeffs(coeffs["Sci2IdlX"], deg))
                                       & Polynomial2D(deg, **_poly_coeffs(coeffs["Sci2IdlY"], deg)))
    sci2idl.inverse = Mapping((0, 1, 0, 1)) | (Polynomial2D(deg, **_poly_coeffs(coeffs["Idl2SciX"], deg))
                                               & Polynomial2D(deg, **_poly_coeffs(coeffs["Idl2SciY"], deg)))
    theta = np.deg2rad(ap.V3IdlYAngle)
    p = float(ap.VIdlParity)
    # planar ideal -> telescope (JWST-STScI-001550 sect. 4; pysiaf Aperture.idl_to_tel default):
    # v2 = V2Ref + p x cos(t) + y sin(t);  v3 = V3Ref - p x sin(t) + y cos(t)
    idl2tel = AffineTransformation2D(
        matrix=[[p * np.cos(theta), np.sin(theta)], [-p * np.sin(theta), np.cos(theta)]],
        translation=[ap.V2Ref, ap.V3Ref])
    model = to_ref | sci2idl | idl2tel
    model.name = f"{ap.AperName}_sci2tel"
    return model


def pixel_area_map(model, shape: tuple[int, int], xstart: int = 0, ystart: int = 0) -> np.ndarray:
    """Solid angle of each pixel through ``model`` (arcsec**2), float64 (ny, nx).

    Each pixel's four corners (x +- 0.5, y +- 0.5, 0-based full-frame pixels offset by
    ``xstart``/``ystart``) are mapped to V2/V3 and the enclosed quadrilateral's area is
    computed (shoelace formula; the planar approximation of the ideal frame, consistent with
    the distortion model). One model evaluation on the (ny+1, nx+1) corner grid.
    """
    ny, nx = shape
    xc = np.arange(nx + 1, dtype=np.float64) - 0.5 + xstart
    yc = np.arange(ny + 1, dtype=np.float64) - 0.5 + ystart
    gx, gy = np.meshgrid(xc, yc)
    u, v = model(gx, gy)
    # corners in order (0,0) (1,0) (1,1) (0,1) of each pixel
    x0, y0 = u[:-1, :-1], v[:-1, :-1]
    x1, y1 = u[:-1, 1:], v[:-1, 1:]
    x2, y2 = u[1:, 1:], v[1:, 1:]
    x3, y3 = u[1:, :-1], v[1:, :-1]
    area = 0.5 * np.abs((x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2)
                        + (x3 * y0 - x0 * y3))
    return area


def nominal_pixel_area(instrument: str, detector: str) -> float:
    """Return the pixel solid angle at the full-frame reference pixel, arcsec**2.

    XSciScale x YSciScale of the SIAF aperture: the PIXAR_A2 of the detector's AREA and
    PHOTOM references.
    """
    ap = full_frame_aperture(instrument, detector)
    return float(ap.XSciScale) * float(ap.YSciScale)


def prd_version() -> str:
    """Return the PRD (SIAF) release the installed pysiaf carries, e.g. 'PRDOPSSOC-075'."""
    import pysiaf

    return str(pysiaf.JWST_PRD_VERSION)


# ------------------------------------------------------------------------------------------
# readout windows (SUBARRAY keyword -> SUBSTRT/SUBSIZE) of every detector

#: DETECTOR keyword -> the detector's prefix in SIAF aperture names
_SIAF_PREFIX = {"NRCALONG": "NRCA5", "NRCBLONG": "NRCB5", "MIRIMAGE": "MIRIM"}
_FULL_NAMES = ("FULL", "GENERIC", "N/A", "NULL", "NONE", "")


@dataclass(frozen=True)
class Window:
    """The readout window of an exposure.

    (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) in 1-based science (DMS) frame pixels, where it
    came from (``source``) and any substitution made (``note``, empty when the window is the
    named subarray's own on this detector).
    """

    xstart: int
    ystart: int
    xsize: int
    ysize: int
    source: str
    note: str = ""

    @property
    def geometry(self) -> tuple[int, int, int, int]:
        """(SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2)."""
        return self.xstart, self.ystart, self.xsize, self.ysize


def siaf_prefix(instrument: str, detector: str) -> str:
    """Return the SIAF aperture-name prefix of a detector.

    NRCA1, NRCA5 for NRCALONG, NIS, MIRIM, FGS1 for GUIDER1, NRS1.
    """
    instrument, detector = instrument.upper(), detector.upper()
    if instrument == "FGS":
        return detector.replace("GUIDER", "FGS")
    return _SIAF_PREFIX.get(detector, detector)


def _siaf_window(instrument: str, name: str, full: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Geometry of SIAF aperture ``name`` if it is a readout window that fits the detector."""
    try:
        s = siaf(instrument)
    except ValueError:
        return None
    if name not in s.apertures or s[name].AperType not in ("SUBARRAY", "FULLSCA"):
        return None
    ap = s[name]
    if ap.AperType == "FULLSCA":
        return 1, 1, int(ap.XSciSize), int(ap.YSciSize)
    try:
        x1, y1, xs, ys = subarray_geometry(instrument, name)
    except ValueError:
        return None
    nx, ny = full
    if x1 < 1 or y1 < 1 or x1 - 1 + xs > nx or y1 - 1 + ys > ny:
        return None               # an aperture outline, not a readout window (e.g. NIS_SUBSTRIP256)
    return x1, y1, xs, ys


def readout_window(instrument: str, detector: str, subarray: str | None, *, apername: str | None = None,
                   grating: str | None = None) -> Window:
    """Return the readout window of SUBARRAY on DETECTOR, from pysiaf's SIAF and the PRD.

    In order:

    1. FULL (or GENERIC, N/A): the detector's full-frame SIAF aperture (``NRCA1_FULL``,
       ``NRS1_FULL`` ...); detectors without one in pysiaf (MIRI MRS) the PRD's full frame.
    2. The SIAF aperture ``<prefix>_<SUBARRAY>`` of the detector (``NRCB1_SUB640``,
       ``NIS_SUB64``, ``MIRIM_SUB128``, ``FGS1_SUB128CNTR``), placed in the DMS frame by
       :func:`subarray_geometry`.
    3. The exposure's APERNAME when it is a SIAF subarray aperture of this detector (obsolete
       SUBARRAY names such as NIRCam MASKA210R, whose aperture is NRCA2_MASK210R).
    4. The PRD's SubarrayFrameTime window (:func:`simulation.prd.subarray_window`): names the
       SIAF spells differently (NIRCam SUB96DHSPILA = NRCA3_DHSPIL_SUB96, SUB64FP1A ...),
       NIRSpec subarrays (not in pysiaf's SIAF; per GRATING), obsolete NIRSpec names with
       their current name (S200A2 -> SUBS200A2). A subarray the PRD defines on one detector
       only is placed at that detector's window (noted).

    Returns
    -------
    Window

    Raises
    ------
    ValueError
        If neither the SIAF nor the PRD defines the subarray (the message says where it was
        looked for).
    """
    from simulation import prd

    instrument, detector = instrument.upper(), detector.upper()
    sub = (subarray or "FULL").strip().upper()
    prefix = siaf_prefix(instrument, detector)
    full = full_source = None
    if instrument in _SIAF_NAMES:
        full = _siaf_window(instrument, prefix + "_FULL", (10**6, 10**6))
        if full is None and detector in FULL_FRAME_APERTURES.get(instrument, {}):
            ap = full_frame_aperture(instrument, detector)        # NIS_CEN
            full = (1, 1, int(ap.XSciSize), int(ap.YSciSize))
            full_source = f"SIAF {ap.AperName}"
        elif full is not None:
            full_source = f"SIAF {prefix}_FULL"
    if full is None:                                              # MIRI MRS detectors
        win = prd.subarray_window(instrument, "FULL", detector)
        if win is None:
            raise ValueError(f"no full frame for {instrument} {detector} in pysiaf's SIAF or the PRD")
        full, full_source = (win.xstart, win.ystart, win.xsize, win.ysize), f"PRD {prd.prd_version()} FULL"
    if sub in _FULL_NAMES:
        return Window(*full, source=full_source)
    size = (full[2], full[3])
    if instrument in _SIAF_NAMES:
        geom = _siaf_window(instrument, f"{prefix}_{sub}", size)
        if geom is not None:
            return Window(*geom, source=f"SIAF {prefix}_{sub}")
        ap = (apername or "").strip().upper()
        if ap.startswith(prefix + "_"):
            geom = _siaf_window(instrument, ap, size)
            if geom is not None and geom[2:] != size:
                return Window(*geom, source=f"SIAF {ap}", note=f"SUBARRAY {sub} placed by APERNAME {ap}")
    names = [sub] + ([f"SUB{sub}"] if not sub.startswith("SUB") else [])
    guiding = re.fullmatch(r"(\d+)X\1", sub)
    if instrument == "FGS" and guiding:
        # guiding windows (128X128, 32X32, 8X8) follow the guide star: the SIAF's centred
        # window of that size stands in for the star's position
        geom = _siaf_window(instrument, f"{prefix}_SUB{guiding.group(1)}CNTR", size)
        if geom is not None:
            return Window(*geom, source=f"SIAF {prefix}_SUB{guiding.group(1)}CNTR",
                          note=f"guiding window {sub} placed at the centred SIAF window of its size")
    for name in names:
        win = prd.subarray_window(instrument, name, detector, disperser=grating)
        if win is not None:
            notes = [n for n in (f"obsolete name of {name}" if name != sub else "", win.note) if n]
            return Window(win.xstart, win.ystart, win.xsize, win.ysize,
                          source=f"PRD {prd.prd_version()} {name}", note="; ".join(notes))
    raise ValueError(f"{instrument} {detector}: no subarray {sub!r} in pysiaf's SIAF ({prd_version()}) "
                     f"nor in the PRD ({prd.prd_version()}) the jwst package ships")
