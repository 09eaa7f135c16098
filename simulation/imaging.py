"""Stage-2/3 imaging for a simulated pool.

Stage-2/3 imaging for a simulated pool: stars on the sky, each exposure's pointing, and the
imaging references its context needs.

:func:`plan_pool_imaging` looks at the planned exposures of a pool (the FITS keyword dicts
the pool simulator makes, one per row) and, for every imaging exposure (NRC_IMAGE,
NIS_IMAGE, MIR_IMAGE, FGS_IMAGE), decides

* the star field of its target: one :class:`simulation.sky.StarField` per (PROGRAM,
  TARGNAME), shared by every exposure of that target, so that the same stars appear in all
  dithers and detectors;
* its pointing: the target at the reference point of the pointing aperture (PPS_APER: the
  row's APERNAME as far as the SIAF knows it, else e.g. NRCALL_FULL), shifted by the dither
  position (PATT_NUM, else EXPOSURE) of :data:`DITHER_PATTERN`, at a position angle fixed
  per observation: one attitude for all detectors of an exposure; APERNAME and the
  reference point of RA_REF/DEC_REF are the detector's own aperture;
* its scene (:class:`simulation.sky.SkyScene`), given to ``simulation.ramps.simulate_ramp``;
* the stage-2/3 references of its detector and filter
  (:func:`simulation.imaging_refs.write_imaging_references`).

Everything is seeded by the pool's seed and the row values.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulation import imaging_refs, optics, siaf
from simulation.sky import SkyScene, StarField, make_pointing, random_star_field

IMAGING_EXP_TYPES = {"NRC_IMAGE": "NIRCAM", "NIS_IMAGE": "NIRISS", "MIR_IMAGE": "MIRI",
                     "FGS_IMAGE": "FGS"}
#: target position (ideal arcsec) in the pointing aperture per dither position (cycled): a
#: 4-point pattern with sub-pixel steps for every pixel scale
DITHER_PATTERN = ((0.0, 0.0), (2.13, 1.31), (-1.71, 2.57), (0.93, -2.29))
#: stars per arcsec^2 and their flux range (uJy)
STAR_DENSITY = 0.01
FLUX_RANGE = (2.0, 100.0)
MAX_STARS = 5000


def _seed(*parts) -> int:
    from simulation.ramps import derive_seed

    return derive_seed("pool-imaging", *parts)


def is_imaging(kw: dict) -> bool:
    """Return True for an exposure of an imaging EXP_TYPE on a detector with a SIAF imaging aperture."""
    instr = IMAGING_EXP_TYPES.get(str(kw.get("EXP_TYPE", "")).upper())
    if instr is None or instr != str(kw.get("INSTRUME", "")).upper():
        return False
    return str(kw.get("DETECTOR", "")).upper() in siaf.FULL_FRAME_APERTURES[instr]


def _int(value, default=None):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


#: pointing aperture of an exposure whose APERNAME the SIAF does not know
DEFAULT_PPS_APERTURES = {"NIRCAM": "NRCALL_FULL", "NIRISS": "NIS_CEN", "MIRI": "MIRIM_FULL",
                         "FGS": "FGS1_FULL"}


def pointing_aperture(kw: dict) -> str:
    """Return the pointing aperture (PPS_APER) of an exposure.

    The SIAF aperture the telescope pointed (PPS_APER): the row's APERNAME, or its
    longest leading part the SIAF knows (NRCALL_FULL_CNTR -> NRCALL_FULL), else
    :data:`DEFAULT_PPS_APERTURES`. Every detector of one exposure gets the same.
    """
    instr = str(kw["INSTRUME"]).upper()
    parts = str(kw.get("APERNAME") or "").upper().split("_")
    known = siaf.siaf(instr).apertures
    for n in range(len(parts), 0, -1):
        name = "_".join(parts[:n])
        if name in known:
            return name
    return DEFAULT_PPS_APERTURES[instr]


def detector_aperture(kw: dict) -> str:
    """Return the exposure's own SIAF aperture (APERNAME).

    The exposure's own aperture (APERNAME): ``<detector prefix>_<SUBARRAY>`` when the
    SIAF has it (NRCA1_SUB640, NIS_SUB256, MIRIM_BRIGHTSKY), else the full-frame one.
    """
    instr = str(kw["INSTRUME"]).upper()
    full = siaf.full_frame_aperture(instr, kw["DETECTOR"])
    sub = str(kw.get("SUBARRAY") or "FULL").upper()
    name = f"{full.AperName.split('_', 1)[0]}_{sub}"
    return name if sub != "FULL" and name in siaf.siaf(instr).apertures else full.AperName


def dither_offset(kw: dict) -> tuple[float, float]:
    """Return the target's dither offset in the pointing aperture's ideal frame.

    Target position in the pointing aperture's ideal frame (arcsec): PATT_NUM (else
    EXPOSURE) picks an entry of :data:`DITHER_PATTERN`.
    """
    n = _int(kw.get("PATT_NUM"))
    if n is None or n < 1:
        n = _int(kw.get("EXPOSURE"), 1) or 1
    return DITHER_PATTERN[(n - 1) % len(DITHER_PATTERN)]


def _detector_radius(kw: dict, aperture: str, dither) -> float:
    """Largest distance (arcsec) from the target to a corner of the exposure's detector."""
    instr, det = str(kw["INSTRUME"]).upper(), str(kw["DETECTOR"]).upper()
    ap = siaf.aperture(instr, aperture)
    v2t, v3t = ap.idl_to_tel(*dither)
    ny, nx = optics.full_shape(instr)
    v2, v3 = siaf.distortion_model(instr, det)(np.array([0.0, nx - 1, 0.0, nx - 1]),
                                                np.array([0.0, 0.0, ny - 1, ny - 1]))
    return float(np.max(np.hypot(v2 - v2t, v3 - v3t)))


@dataclass
class PoolImaging:
    """The imaging plan of a pool (see :func:`plan_pool_imaging`).

    scenes : plan index -> SkyScene; pointing : plan index -> pointing keywords;
    fields : (PROGRAM, TARGNAME) -> StarField; targets : the same key -> (RA, Dec) deg of
    the target (the field's centre); seed : the pool's seed; references : plan index ->
    {reftype: file name} of the imaging references that apply (after write_references).
    """

    scenes: dict[int, SkyScene] = field(default_factory=dict)
    pointing: dict[int, dict] = field(default_factory=dict)
    fields: dict[tuple[str, str], StarField] = field(default_factory=dict)
    targets: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    seed: int = 0
    references: dict[int, dict[str, str]] = field(default_factory=dict)

    def __contains__(self, index: int) -> bool:
        """Return True when plan ``index`` is an imaging exposure with a scene."""
        return index in self.scenes

    def write_references(self, ref_root) -> list[Path]:
        """Write the imaging references of the plan.

        Write the imaging references of every (instrument, detector, filter, pupil) of
        the plan under ``ref_root/<instrument>/`` and remember, per plan index, which file of
        each reftype applies (``references``). Returns the written paths.
        """
        ref_root = Path(ref_root)
        by_det: dict[tuple[str, str], set] = defaultdict(set)
        for sc in self.scenes.values():
            by_det[(sc.instrument, sc.detector)].add((sc.filter, sc.pupil))
        paths: list[Path] = []
        chosen: dict[tuple[str, str], dict] = {}
        done_instr: set[str] = set()
        for (instr, det), fps in sorted(by_det.items(), key=lambda kv: kv[0]):
            out = imaging_refs.write_imaging_references(ref_root / instr.lower(), instr, det, fps,
                                                        seed=self.seed,
                                                        per_instrument=instr not in done_instr)
            done_instr.add(instr)
            chosen[(instr, det)] = out
            paths.extend(p for ps in out.values() for p in ps)
        per_instr = {instr: {rt: chosen[k][rt][0].name for k in chosen if k[0] == instr
                             for rt in ("apcorr", "abvegaoffset") if rt in chosen[k]}
                     for instr in done_instr}
        for i, sc in self.scenes.items():
            out = chosen[(sc.instrument, sc.detector)]
            refs = {rt: ps[0].name for rt, ps in out.items() if rt not in ("flat", "apcorr", "abvegaoffset")}
            flat = imaging_refs.reference_name(sc.instrument, "flat", sc.detector.lower(),
                                               optics._norm(sc.filter), optics._norm(sc.pupil),
                                               f"s{self.seed}")
            refs["flat"] = flat
            refs.update(per_instr[sc.instrument])
            self.references[i] = refs
        return paths

    def write_fields(self, out_dir) -> dict[tuple[str, str], Path]:
        """Write each target's star catalog.

        Write each target's stars as ``<out_dir>/<program>_<target>_stars.ecsv`` (RA, DEC,
        FLUX; usable as tweakreg's abs_refcat).
        """
        out = {}
        for (prog, targ), f in self.fields.items():
            safe = "".join(c if c.isalnum() or c in "-+." else "_" for c in targ.lower())
            out[(prog, targ)] = f.write_ecsv(Path(out_dir) / f"{prog}_{safe}_stars.ecsv")
        return out


def plan_pool_imaging(plans: list[dict], seed: int = 0, star_density: float | None = None,
                      max_stars: int | None = None) -> PoolImaging:
    """Plan star fields, pointings and scenes for a pool's imaging exposures.

    Star fields, pointings and scenes for the imaging exposures among ``plans`` (FITS
    keyword dicts, e.g. from ``exposure_keywords``); non-imaging plans are left out.

    Target (RA, Dec) is seeded per (PROGRAM, TARGNAME) (|Dec| < 60 deg), the position angle
    per (PROGRAM, OBSERVTN); the field covers every detector that looks at the target with
    :data:`STAR_DENSITY` stars per arcsec^2 (at most :data:`MAX_STARS`); ``star_density`` and
    ``max_stars`` override them (denser fields give tweakreg enough stars in a subarray).
    """
    density = STAR_DENSITY if star_density is None else star_density
    cap = MAX_STARS if max_stars is None else max_stars
    out = PoolImaging(seed=seed)
    todo = [(i, kw) for i, kw in enumerate(plans) if is_imaging(kw)]
    geometry = {}
    radius: dict[tuple[str, str], float] = defaultdict(float)
    for i, kw in todo:
        target = (str(kw.get("PROGRAM", "")), str(kw.get("TARGNAME") or "TARGET"))
        ap = pointing_aperture(kw)
        dither = dither_offset(kw)
        geometry[i] = (target, ap, dither)
        radius[target] = max(radius[target], _detector_radius(kw, ap, dither) + 5.0)
    for target, r in radius.items():
        rng = np.random.default_rng(_seed("target", *target, seed))
        ra, dec = float(rng.uniform(0.0, 360.0)), float(np.degrees(np.arcsin(rng.uniform(-0.86, 0.86))))
        n = int(min(cap, density * np.pi * r * r))
        out.targets[target] = (ra, dec)
        out.fields[target] = random_star_field(ra, dec, r, n, seed=_seed("stars", *target, seed),
                                               flux_range=FLUX_RANGE, min_separation=0.5)
    for i, kw in todo:
        target, ap, dither = geometry[i]
        rng = np.random.default_rng(_seed("pa", kw.get("PROGRAM"), kw.get("OBSERVTN"), seed))
        pa = float(rng.uniform(0.0, 360.0))
        instr = str(kw["INSTRUME"]).upper()
        p = make_pointing(instr, detector_aperture(kw), *out.targets[target], pa, dither=dither,
                          pps_aperture=ap)
        out.pointing[i] = p.keywords()
        out.scenes[i] = SkyScene(out.fields[target], p, instr, str(kw["DETECTOR"]).upper(),
                                 _none(kw.get("FILTER")), _none(kw.get("PUPIL")), seed=seed)
    return out


def _none(value):
    v = optics._norm(None if value is None else str(value))
    return None if v == "N/A" else v
