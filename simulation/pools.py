"""Simulated raw exposures for an association pool, with the CRDS context that calibrates them.

For every pool row one ``_uncal.fits`` is written: a real header template (shipped in
``simulation/data/headers``) completed with the row's values, and a ramp from
:mod:`simulation.ramps`. The reference files describing the simulated detectors are written
into a CRDS cache and a synthetic context selecting them is created, so that CRDS best
references for each simulated file are exactly the files the simulation used.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archive.crds import cache as crdscache
from archive.ingest.pools import pool_rows

from . import ramps as sim
from . import siaf

HEADERS_DIR = Path(__file__).parent / "data" / "headers"
NIRCAM_TEMPLATE = HEADERS_DIR / "jw01075001001_03105_00009_nrca2_uncal.fits"
FGS_TEMPLATE = HEADERS_DIR / "fgs_acq1_guider1.fits"

#: reference types written for each instrument (MIRI has no superbias step)
REFTYPES = {
    "NIRCAM": ("dark", "gain", "ipc", "linearity", "mask", "readnoise", "saturation", "superbias"),
    "NIRISS": ("dark", "gain", "ipc", "linearity", "mask", "readnoise", "saturation", "superbias"),
    "NIRSPEC": ("dark", "gain", "ipc", "linearity", "mask", "readnoise", "saturation", "superbias"),
    "FGS": ("dark", "gain", "ipc", "linearity", "mask", "readnoise", "saturation", "superbias"),
    "MIRI": ("dark", "emicorr", "gain", "linearity", "mask", "readnoise", "reset", "rscd",
             "saturation"),
}

# reftypes written per (subarray, readout pattern) rather than once per detector
_PER_READOUT = ("dark", "reset")

# Instruments without a real template get the NIRCam template with these keywords changed
# (None removes a NIRCam-only keyword). MIRI, NIRISS and NIRSpec headers are therefore
# derived, not real: the program/visit/timing structure is NIRCam's.
DERIVED_TEMPLATE_KEYWORDS = {
    "MIRI": {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE", "MODULE": None, "CHANNEL": None,
             "PUPIL": None, "CORONMSK": None, "PILIN": None, "FILTER": "F560W",
             "EXP_TYPE": "MIR_IMAGE", "APERNAME": "MIRIM_FULL", "PPS_APER": "MIRIM_FULL",
             "SCA_NUM": None, "FASTAXIS": 1, "SLOWAXIS": 2},
    "NIRISS": {"INSTRUME": "NIRISS", "DETECTOR": "NIS", "MODULE": None, "CHANNEL": None,
               "CORONMSK": None, "PILIN": None, "FILTER": "CLEAR", "PUPIL": "F150W",
               "EXP_TYPE": "NIS_IMAGE", "APERNAME": "NIS_CEN", "PPS_APER": "NIS_CEN",
               "SCA_NUM": None, "FASTAXIS": -2, "SLOWAXIS": -1},
    "NIRSPEC": {"INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "MODULE": None, "CHANNEL": None,
                "CORONMSK": None, "PILIN": None, "PUPIL": None, "FILTER": "F170LP",
                "EXP_TYPE": "NRS_IMAGE", "APERNAME": "NRS_FULL_MSA", "PPS_APER": "NRS_FULL_MSA",
                "SCA_NUM": None, "FASTAXIS": 2, "SLOWAXIS": 1},
}

#: pool column -> FITS keyword (values upper-cased; OBS_NUM/VISIT zero-padded to 3)
POOL_KEYWORDS = {
    "PROGRAM": "PROGRAM", "OBS_NUM": "OBSERVTN", "VISIT": "VISIT", "VISIT_ID": "VISIT_ID",
    "EXPOSURE": "EXPOSURE", "INSTRUME": "INSTRUME", "DETECTOR": "DETECTOR",
    "EXP_TYPE": "EXP_TYPE", "FILTER": "FILTER", "PUPIL": "PUPIL", "SUBARRAY": "SUBARRAY",
    "TARGNAME": "TARGNAME", "READPATT": "READPATT", "NGROUPS": "NGROUPS", "NINTS": "NINTS",
    "OBS_ID": "OBS_ID", "VISITGRP": "VISITGRP", "SEQ_ID": "SEQ_ID", "ACT_ID": "ACT_ID",
    "VISITYPE": "VISITYPE", "TEMPLATE": "TEMPLATE", "TARGTYPE": "TARGTYPE",
    "APERNAME": "APERNAME", "CHANNEL": "CHANNEL", "MODULE": "MODULE", "BAND": "BAND",
}
SILENT = {"", "NULL", "NONE", "N/A"}

#: the constant DN of a ``minimal`` ramp (a typical bias level: nothing to calibrate)
MINIMAL_LEVEL = 12000


@dataclass(frozen=True)
class RowReport:
    """What became of one pool row.

    ``status`` is ``simulated`` (the file was written) or ``skipped`` (``reason`` says why);
    ``note`` says where its readout window came from and any substitution made.
    """

    index: int
    filename: str
    status: str
    note: str = ""
    reason: str = ""


@dataclass
class SimulationResult:
    """What :func:`simulate_pool` wrote.

    files : uncal paths, in pool order (rows that could not be made are left out).
    context : the synthetic .pmap that selects the references used (None when
        ``minimal``: no references are written).
    truths : uncal file name -> .npz with the truth (see :class:`simulation.ramps.Truth`).
    references : uncal file name -> {reftype: reference file name} actually used.
    guider_references : FGS detector -> {reftype: file name} of the calwebb_guider
        references written for ``guider_detectors``.
    rows : one :class:`RowReport` per pool row, in pool order.
    """

    files: list[Path]
    context: str | None
    truths: dict[str, Path]
    references: dict[str, dict[str, str]] = field(default_factory=dict)
    guider_references: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: list[RowReport] = field(default_factory=list)

    @property
    def skipped(self) -> list[RowReport]:
        """The rows that could not be made, with their reasons."""
        return [r for r in self.rows if r.status == "skipped"]


def _value(row: dict, col: str) -> str | None:
    val = row.get(col)
    if val is None or str(val).strip().upper() in SILENT:
        return None
    return str(val).strip()


def template_for(instrument: str) -> tuple[Path, dict]:
    """Header template path and the keyword overrides that adapt it to ``instrument``."""
    instrument = instrument.upper()
    if instrument == "NIRCAM":
        return NIRCAM_TEMPLATE, {}
    if instrument == "FGS":
        return FGS_TEMPLATE, {}
    if instrument in DERIVED_TEMPLATE_KEYWORDS:
        return NIRCAM_TEMPLATE, dict(DERIVED_TEMPLATE_KEYWORDS[instrument])
    raise ValueError(f"INSTRUME {instrument!r} is not a JWST instrument (known: "
                     f"{sorted(('NIRCAM', 'FGS', *DERIVED_TEMPLATE_KEYWORDS))}); no header template")


def _template_header(path: Path) -> dict:
    from astropy.io import fits

    hdr = fits.getheader(path, 0)
    return {k: hdr[k] for k in hdr if k not in ("", "COMMENT", "HISTORY")}


def exposure_keywords(row: dict, index: int, ngroups: int | None = None, nints: int | None = None,
                      window_note: list[str] | None = None) -> dict:
    """FITS keywords of the simulated exposure for one pool row (pool > template > defaults).

    ``ngroups``/``nints`` override both pool and template. Times: the template's EXPSTART
    plus ``index`` x 20 minutes, so exposures of a pool are ordered in time. SUBSTRT/SUBSIZE
    come from the SIAF of pysiaf or the PRD (:func:`simulation.siaf.readout_window`, placed by
    the row's DETECTOR, APERNAME and GRATING); NFRAMES, GROUPGAP, TFRAME, NOUTPUTS from the
    PRD (:func:`simulation.ramps.readout`). ``window_note``, if given, receives where the
    window came from and any substitution made.

    Raises
    ------
    ValueError
        If the row has no INSTRUME/FILENAME, an INSTRUME that is no JWST instrument (the
        placeholder rows of jwst's test pools), or a subarray or readout pattern neither the
        SIAF nor the PRD defines.
    """
    from astropy.time import Time

    instrument = (_value(row, "INSTRUME") or "").upper()
    if not instrument:
        raise ValueError(f"pool row {index}: no INSTRUME")
    fname = _value(row, "FILENAME")
    if not fname:
        raise ValueError(f"pool row {index}: no FILENAME")
    tpath, overrides = template_for(instrument)
    thdr = _template_header(tpath)
    kw: dict = {}
    kw.update({k: v for k, v in overrides.items()})
    for col, key in POOL_KEYWORDS.items():
        val = _value(row, col)
        if val is None:
            continue
        if col in ("OBS_NUM", "VISIT"):
            val = val.zfill(3)
        elif col == "PROGRAM":
            val = val.zfill(5)
        elif col in ("NGROUPS", "NINTS"):
            val = int(val)
        else:
            val = val.upper()
        kw[key] = val
    tinstr = str(thdr.get("INSTRUME", "")).strip().upper()
    same = tinstr == instrument
    if instrument == "FGS" and kw.get("EXP_TYPE", thdr.get("EXP_TYPE")) != thdr.get("EXP_TYPE"):
        # the FGS template is a guider acquisition: its readout does not fit other modes
        same = False

    def pick(key, default):
        if key in kw and kw[key] is not None:
            return kw[key]
        if same and key in thdr:
            return thdr[key]
        return default

    subarray = str(pick("SUBARRAY", "FULL")).upper()
    readpatt = str(pick("READPATT", sim.DEFAULT_READPATT[instrument])).upper()
    ng = int(ngroups if ngroups is not None else pick("NGROUPS", thdr.get("NGROUPS", 5)))
    ni = int(nints if nints is not None else pick("NINTS", thdr.get("NINTS", 1)))
    if "DETECTOR" not in kw or kw["DETECTOR"] is None:
        kw["DETECTOR"] = str(overrides.get("DETECTOR") or thdr.get("DETECTOR")).upper()
    win = siaf.readout_window(instrument, kw["DETECTOR"], subarray, apername=_value(row, "APERNAME"),
                              grating=_value(row, "GRATING"))
    x1, y1, xs, ys = win.geometry
    ro = sim.readout(instrument, readpatt, subarray, kw["DETECTOR"], win.geometry)
    inttime = ro.tframe * (ng * (ro.nframes + ro.groupgap) - ro.groupgap)
    duration = ni * (ng * ro.tgroup + ro.tframe)
    expstart = float(thdr.get("EXPSTART", 59713.76)) + index * 1200.0 / 86400.0
    t = Time(expstart, format="mjd")
    iso = t.isot
    kw.update({
        "TELESCOP": "JWST", "FILENAME": fname, "DATAMODL": "Level1bModel",
        "INSTRUME": instrument, "SUBARRAY": subarray,
        "SUBSTRT1": x1, "SUBSTRT2": y1, "SUBSIZE1": xs, "SUBSIZE2": ys,
        "READPATT": readpatt, "NGROUPS": ng, "NINTS": ni, "NFRAMES": ro.nframes,
        "GROUPGAP": ro.groupgap, "FRMDIVSR": ro.nframes, "NOUTPUTS": ro.noutputs,
        "TFRAME": ro.tframe, "TGROUP": ro.tgroup,
        "EFFINTTM": inttime, "EFFEXPTM": inttime * ni, "DURATION": duration,
        "DATE-OBS": iso[:10], "TIME-OBS": iso[11:23], "DATE-BEG": iso[:23],
        "DATE-END": Time(expstart + duration / 86400.0, format="mjd").isot[:23],
        "EXPSTART": expstart, "EXPMID": expstart + duration / 2 / 86400.0,
        "EXPEND": expstart + duration / 86400.0,
    })
    if window_note is not None:
        window_note.append(f"{win.source}" + (f": {win.note}" if win.note else ""))
    if instrument == "NIRCAM" and kw.get("EXP_TYPE", thdr.get("EXP_TYPE")) != "NRC_CORON":
        kw["CORONMSK"] = None             # the NIRCam template is a coronagraphic exposure
    if not kw.get("VISIT_ID") and "PROGRAM" in kw and "OBSERVTN" in kw and "VISIT" in kw:
        kw["VISIT_ID"] = f"{kw['PROGRAM']}{kw['OBSERVTN']}{kw['VISIT']}"
    return kw


def _refname(instr: str, reftype: str, *parts) -> str:
    tail = "_".join(str(p).lower().replace("/", "") for p in parts)
    return f"jwst_sim_{instr.lower()}_{reftype}_{tail}.fits"


def _not_applicable(stage2, lrs_refs: dict) -> list[tuple[str, str, dict]]:
    """N/A matches for the stage-2 modes of one instrument that lack a reftype another mode has.

    An instrument with imaging and LRS exposures gets rmaps for the reftypes of both; each
    mode must be N/A in the rmaps of the other's reftypes (FILTEROFFSET for LRS, SPECWCS for
    imaging ...), or crds fails the look-up jwst makes for every reftype its pipeline
    prefetches (:func:`archive.crds.cache.write_synthetic_context`, ``not_applicable``).
    """
    from simulation import optics

    modes: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(dict)
    if stage2 is not None:
        for i, sc in stage2.scenes.items():
            key = (sc.detector, optics.EXP_TYPES[sc.instrument])
            modes[sc.instrument].setdefault(key, set()).update(stage2.references.get(i, {}))
    if lrs_refs:
        from simulation import spectroscopy as lrs

        modes["MIRI"][(lrs.DETECTOR, lrs.EXP_TYPE)] = set(lrs_refs)
    out = []
    for instr, by_mode in sorted(modes.items()):
        every = set().union(*by_mode.values())
        for (det, exp_type), have in sorted(by_mode.items()):
            out.extend((instr, rt, {"DETECTOR": det, "EXP_TYPE": exp_type}) for rt in sorted(every - have))
    return out


def simulate_pool(pool_path, out_dir, crds_path, limit: int | None = None, seed: int = 0,
                  ngroups: int | None = None, nints: int | None = None,
                  base_context: str | None = None, imaging: bool = False,
                  guider_detectors: tuple[str, ...] = (), minimal: bool = False,
                  star_density: float | None = None, max_stars: int | None = None,
                  spectroscopy: bool = False) -> SimulationResult:
    """Simulate one ``_uncal.fits`` per pool row and the CRDS context that calibrates them.

    Every row that names a JWST exposure is made; a row that cannot be made (a placeholder
    row whose INSTRUME is literally 'INSTRUME', a subarray neither pysiaf's SIAF nor the PRD
    defines, an IRS2 readout, a FILENAME already made) is reported in
    :attr:`SimulationResult.rows` with its reason and the rest goes on.

    Parameters
    ----------
    pool_path : association pool (see :func:`archive.ingest.pools.pool_rows`).
    out_dir : directory for the uncal files (named by the pool's FILENAME column); truths
        go to ``out_dir/truth/<root>_truth.npz``.
    crds_path : CRDS cache; reference files go to ``references/jwst/<instrument>/`` and a
        new synthetic context is written (:func:`archive.crds.cache.write_synthetic_context`).
        The process's crds configuration is pointed at this cache (``configure``).
    limit : simulate only the first ``limit`` rows.
    seed : seed of detectors (reference files) and exposures; same seed -> same bytes.
    ngroups, nints : override NGROUPS/NINTS of pool and template (keep demos fast).
    base_context : a context in the cache to extend (e.g. the one of a previous pool), so
        that one context calibrates the exposures of several pools; default a context
        with only this pool's references.
    imaging : also prepare stages 2 and 3 of the imaging exposures
        (:mod:`simulation.imaging`): their ramps show a star field through each exposure's
        pointing and distortion, their headers carry the pointing keywords, and the context
        gets the stage-2/3 imaging references; each target's stars are written to
        ``out_dir/truth/<program>_<target>_stars.ecsv``.
    spectroscopy : also prepare stage 2 of the MIRI LRS fixed-slit exposures
        (:mod:`simulation.spectroscopy`): their ramps show a point source's spectrum through
        the slit, their headers carry the pointing that puts the target on the slit, and the
        context gets the LRS stage-2 references (distortion, specwcs, flat, photom, pathloss).
    star_density, max_stars : stars per arcsec^2 and their cap for ``imaging`` (default
        :data:`simulation.imaging.STAR_DENSITY`, :data:`simulation.imaging.MAX_STARS`).
    guider_detectors : FGS detectors (``GUIDER1``, ``GUIDER2``) whose calwebb_guider
        references (mask, gain, readnoise, flat: :func:`simulation.ramps.write_guider_references`)
        join the context, for real guiding-mode exposures calibrated alongside the pool's
        (the demo's FGS_ACQ1 exposure of program 1019).
    minimal : headers only, for work on headers and pool columns (associations): each
        ramp is the right shape but holds a constant level (no detector model, noise,
        scene or truth), and no reference file or context is written (``context`` None).
        Cheap enough for pools of hundreds of full-frame rows.

    Returns
    -------
    SimulationResult
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    crds_path = Path(crds_path)
    if not minimal:
        (out_dir / "truth").mkdir(exist_ok=True)
        crdscache.configure(crds_path)
    rows = pool_rows(pool_path)
    if limit is not None:
        rows = rows[:limit]
    reports: dict[int, RowReport] = {}
    plans: dict[int, dict] = {}
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        fname = _value(row, "FILENAME") or ""
        note: list[str] = []
        try:
            if fname in seen:
                raise ValueError(f"FILENAME {fname} already made from row {seen[fname]}")
            kw = exposure_keywords(row, i, ngroups=ngroups, nints=nints, window_note=note)
            sim.ExposureSpec(kw["INSTRUME"], kw["DETECTOR"], kw["SUBARRAY"], kw["READPATT"],
                             kw["NGROUPS"], kw["NINTS"], geometry_override=(1, 1, 1, 1))   # IRS2 ...
        except ValueError as exc:
            reports[i] = RowReport(i, fname, "skipped", reason=str(exc))
            continue
        seen[fname] = i
        plans[i] = kw
        reports[i] = RowReport(i, fname, "simulated", note="; ".join(note))

    def spec_of(kw: dict) -> sim.ExposureSpec:
        ro = sim.Readout(kw["READPATT"], kw["NFRAMES"], kw["GROUPGAP"], kw["TFRAME"], kw["TGROUP"],
                         kw["NOUTPUTS"])
        return sim.ExposureSpec(kw["INSTRUME"], kw["DETECTOR"], kw["SUBARRAY"], kw["READPATT"],
                                kw["NGROUPS"], kw["NINTS"], readout_override=ro,
                                geometry_override=(kw["SUBSTRT1"], kw["SUBSTRT2"], kw["SUBSIZE1"], kw["SUBSIZE2"]))

    files: dict[int, Path] = {i: out_dir / kw["FILENAME"] for i, kw in plans.items()}
    result_rows = [reports[i] for i in range(len(rows))]
    if minimal:
        for i, kw in plans.items():
            tpath, _ = template_for(kw["INSTRUME"])
            ramp = np.full((kw["NINTS"], kw["NGROUPS"], kw["SUBSIZE2"], kw["SUBSIZE1"]), MINIMAL_LEVEL, np.uint16)
            sim.write_uncal(files[i], ramp, {k: v for k, v in kw.items() if v is not None}, template=tpath,
                            removed=[k for k, v in kw.items() if v is None])
        return SimulationResult(files=[files[i] for i in sorted(files)], context=None, truths={},
                                rows=result_rows)

    by_detector: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, kw in plans.items():
        by_detector[(kw["INSTRUME"], kw["DETECTOR"])].append(i)

    ref_paths: list[Path] = []
    used: dict[str, dict[str, str]] = {}
    stage2 = None
    if imaging:
        from simulation.imaging import plan_pool_imaging

        order = sorted(plans)
        stage2 = plan_pool_imaging([plans[i] for i in order], seed, star_density=star_density,
                                   max_stars=max_stars)
        # plan_pool_imaging numbers the exposures it was given; back to pool row indices
        stage2.scenes = {order[j]: v for j, v in stage2.scenes.items()}
        stage2.pointing = {order[j]: v for j, v in stage2.pointing.items()}
        stage2.references = {order[j]: v for j, v in stage2.references.items()}
        ref_paths.extend(stage2.write_references(crds_path / "references" / "jwst"))
        stage2.write_fields(out_dir / "truth")
    lrs_refs: dict[str, Path] = {}
    if spectroscopy:
        from simulation import spectroscopy as lrs

        if any(lrs.is_lrs_fixedslit(kw) for kw in plans.values()):
            lrs_refs = lrs.write_lrs_references(crds_path / "references" / "jwst" / "miri", seed)
            ref_paths.extend(lrs_refs.values())
    truths: dict[str, Path] = {}
    for (instr, detname), idxs in by_detector.items():
        det = sim.make_detector(instr, detname, seed)
        ref_dir = crds_path / "references" / "jwst" / instr.lower()
        full_names = {rt: _refname(instr, rt, detname, f"s{seed}")
                      for rt in REFTYPES[instr] if rt not in _PER_READOUT + ("emicorr",)}
        written = sim.write_references(det, ref_dir, full_names)
        if "emicorr" in REFTYPES[instr]:    # an ASDF file (EmiModel); the ramps have no EMI
            name = _refname(instr, "emicorr", f"s{seed}").replace(".fits", ".asdf")
            written["emicorr"] = sim.write_emicorr_reference(ref_dir / name)
        ref_paths.extend(written.values())
        # one dark per (subarray, readpatt), deep enough for every exposure using it
        dark_groups: dict[tuple[str, str], int] = {}
        dark_spec: dict[tuple[str, str], sim.ExposureSpec] = {}
        for i in idxs:
            key = (plans[i]["SUBARRAY"], plans[i]["READPATT"])
            dark_groups[key] = max(dark_groups.get(key, 0), plans[i]["NGROUPS"])
            dark_spec.setdefault(key, spec_of(plans[i]))
        darks, resets = {}, {}
        for (sub, patt), ng in dark_groups.items():
            spec = dark_spec[(sub, patt)]
            name = _refname(instr, "dark", detname, sub, patt, f"g{ng}", f"s{seed}")
            darks[(sub, patt)] = sim.write_dark(det, spec, ng, ref_dir / name)
            ref_paths.append(darks[(sub, patt)])
            if "reset" in REFTYPES[instr]:
                name = _refname(instr, "reset", detname, sub, patt, f"s{seed}")
                resets[(sub, patt)] = sim.write_reset(det, spec, ref_dir / name)
                ref_paths.append(resets[(sub, patt)])
        for i in idxs:
            kw = plans[i]
            spec = spec_of(kw)
            scene = stage2.scenes.get(i) if stage2 is not None else None
            pointing = stage2.pointing[i] if scene is not None else {}
            if scene is None and lrs_refs and lrs.is_lrs_fixedslit(kw):
                # the nod (PATTTYPE, PATT_NUM, NUMDTHPT of the row) places the target in the slit
                nod = {k: _value(rows[i], k) for k in ("PATTTYPE", "PATT_NUM", "NUMDTHPT")}
                nod = {k: (int(v) if k != "PATTTYPE" and v.isdigit() else v.upper())
                       for k, v in nod.items() if v is not None}
                scene, pointing = lrs.lrs_scene({**kw, **nod}, seed)
                pointing = {**pointing, **nod}
            ramp, truth = sim.simulate_ramp(det, spec, seed=sim.derive_seed("pool", seed, kw["FILENAME"]),
                                            scene=scene)
            kw = {**kw, **pointing}
            tpath, _ = template_for(instr)
            sim.write_uncal(files[i], ramp, {k: v for k, v in kw.items() if v is not None}, template=tpath,
                            removed=[k for k, v in kw.items() if v is None])
            root = kw["FILENAME"].removesuffix(".fits").removesuffix("_uncal")
            truths[kw["FILENAME"]] = truth.save(out_dir / "truth" / f"{root}_truth.npz")
            refs = {rt: p.name for rt, p in written.items()}
            refs["dark"] = darks[(kw["SUBARRAY"], kw["READPATT"])].name
            if resets:
                refs["reset"] = resets[(kw["SUBARRAY"], kw["READPATT"])].name
            if stage2 is not None and i in stage2:
                refs.update(stage2.references[i])
            elif pointing:
                refs.update({rt: p.name for rt, p in lrs_refs.items()})
            used[kw["FILENAME"]] = refs
        del det
    guider_refs: dict[str, dict[str, str]] = {}
    for detname in guider_detectors:
        det = sim.make_detector("FGS", detname, seed)
        names = {rt: _refname("FGS", rt, "guider", detname, f"s{seed}") for rt in sim.GUIDER_REFTYPES}
        written = sim.write_guider_references(det, crds_path / "references" / "jwst" / "fgs", names)
        ref_paths.extend(written.values())
        guider_refs[detname] = {rt: p.name for rt, p in written.items()}
    context = crdscache.write_synthetic_context(crds_path, ref_paths, base_pmap=base_context,
                                                not_applicable=_not_applicable(stage2, lrs_refs))
    return SimulationResult(files=[files[i] for i in sorted(files)], context=context, truths=truths,
                            references=used, guider_references=guider_refs, rows=result_rows)
