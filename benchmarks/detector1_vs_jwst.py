#!/usr/bin/env python
"""calwebb_detector1 speed: this project's engine (calib) against the jwst package.

Not a test: a measurement. For each case the script simulates one raw exposure and its
reference files with the project's simulator (``simulation.ramps``; header keywords as
``simulation.pools.exposure_keywords`` makes them from a real NIRCam template), then runs,
each in its own subprocess so that peak resident memory is measured separately:

* ours: ``calib.pipelines.run_pipeline("calwebb_detector1", ...)`` +
  ``calib.products.save_products(consume=True)``, as ``calib.products.run_and_save`` (the
  archive's worker) runs and saves it;
* jwst: ``jwst.pipeline.Detector1Pipeline`` with ``override_<reftype>`` set to the same
  reference files, CRDS in serverless mode on a scratch cache (as
  tests/test_calib_jwst_parity.py does), saving ``_rate``/``_rateints``.

Each worker process runs its pipeline once to warm up (imports, numba compilation or cache
load, CRDS set-up), then ``--repeat`` timed runs; the best of them is reported together with
the per-step wall times of that run and two peak RSS values (VmHWM): of the whole process
(the cold first run included: reading and preparing references, numba cache load) and of
the timed runs only, as in a warm worker (the peak is reset after the warm-up run by
writing 5 to /proc/self/clear_refs; n/a where the kernel does not allow it); the process's
``ru_maxrss`` (getrusage) is printed beside them (on Linux the clear_refs reset lowers it
too, so after the warm-up it is the warm runs' peak). The process CPU time of every run
and the load average are printed too: on a shared machine wall times grow with the load,
CPU times much less. Finally the
two products are compared with the parity criterion of the issue: the fraction of good
pixels with |ours - jwst| <= 1e-4 |jwst| + 0.01 ERR_jwst.

Cases:
  full  NIRCam NRCA1 full frame 2048x2048, NGROUPS 10, NINTS 1, READPATT MEDIUM8
  tso   NIRCam NRCALONG SUBGRISM64 (64 x 2048), NGROUPS 10, NINTS 300, READPATT RAPID
  deepdark  as full, but the dark reference has the depth of a real CRDS dark: 200 RAPID
        frames (NFRAMES 1, GROUPGAP 0), 3.4 GB (simulation.ramps.write_deep_dark), which
        the dark_current step averages to the exposure's MEDIUM8 groups (98 frames used);
        not part of ``--case all``

Usage:
  python benchmarks/detector1_vs_jwst.py --case full --repeat 3 --threads 2
  python benchmarks/detector1_vs_jwst.py --case all --workdir /tmp/d1bench
  python benchmarks/detector1_vs_jwst.py --case deepdark --repeat 2 --threads 2
Inputs are kept in ``--workdir`` (default: a directory under the system temp dir) and
reused when present.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_MAPPINGS = REPO.parent / "shared" / "data" / "crds" / "mappings"

CASES = {
    "full": dict(detector="NRCA1", exp_type="NRC_IMAGE", subarray="FULL", readpatt="MEDIUM8",
                 ngroups=10, nints=1, filter="F200W", pupil="CLEAR"),
    "tso": dict(detector="NRCALONG", exp_type="NRC_TSGRISM", subarray="SUBGRISM64",
                readpatt="RAPID", ngroups=10, nints=300, filter="F444W", pupil="GRISMR"),
    "deepdark": dict(detector="NRCA1", exp_type="NRC_IMAGE", subarray="FULL", readpatt="MEDIUM8",
                     ngroups=10, nints=1, filter="F200W", pupil="CLEAR", dark_frames=200),
}
#: the cases ``--case all`` runs (deepdark writes a 3.4 GB dark: asked for by name)
ALL_CASES = ("full", "tso")
REFTYPES = ("mask", "saturation", "superbias", "linearity", "gain", "readnoise")


# ------------------------------------------------------------------------------------------
# inputs

def prepare(case: str, workdir: Path, seed: int = 1) -> dict:
    """Simulate the exposure and references of ``case`` under ``workdir/case`` (reused)."""
    d = workdir / case
    manifest = d / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    sys.path.insert(0, str(REPO))
    from simulation import ramps as sim
    from simulation.pools import NIRCAM_TEMPLATE, exposure_keywords

    c = CASES[case]
    d.mkdir(parents=True, exist_ok=True)
    fname = f"jw09999001001_01101_00001_{c['detector'].lower()}_uncal.fits"
    row = {"INSTRUME": "NIRCAM", "DETECTOR": c["detector"], "EXP_TYPE": c["exp_type"],
           "SUBARRAY": c["subarray"], "READPATT": c["readpatt"], "FILTER": c["filter"],
           "PUPIL": c["pupil"], "FILENAME": fname, "PROGRAM": "9999", "OBS_NUM": "1",
           "VISIT": "1", "EXPOSURE": "1"}
    kw = exposure_keywords(row, 0, ngroups=c["ngroups"], nints=c["nints"])
    t0 = time.perf_counter()
    det = sim.make_detector("NIRCAM", c["detector"], seed)
    refs = {rt: str(p) for rt, p in sim.write_references(
        det, d / "refs", {rt: f"sim_{rt}_{c['detector'].lower()}.fits" for rt in REFTYPES}).items()}
    spec = sim.ExposureSpec("NIRCAM", c["detector"], c["subarray"], c["readpatt"],
                            c["ngroups"], c["nints"])
    if c.get("dark_frames"):      # a deep RAPID dark, matched to the readout by dark_current
        refs["dark"] = str(sim.write_deep_dark(det, d / "refs" / f"sim_dark_{case}.fits",
                                               c["dark_frames"], seed=seed))
    else:
        refs["dark"] = str(sim.write_dark(det, spec, c["ngroups"],
                                          d / "refs" / f"sim_dark_{case}.fits"))
    ramp, _ = sim.simulate_ramp(det, spec, seed=sim.derive_seed("bench", case, seed))
    uncal = sim.write_uncal(d / fname, ramp, {k: v for k, v in kw.items() if v is not None},
                            template=NIRCAM_TEMPLATE,
                            removed=[k for k, v in kw.items() if v is None])
    info = {"case": case, "uncal": str(uncal), "refs": refs, "shape": list(ramp.shape),
            "simulated_s": round(time.perf_counter() - t0, 1)}
    manifest.write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------------------------------
# workers (run in their own process)

def _ru_maxrss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _Peaks:
    """Whole-process and warm-run (after the first run) peak RSS of this process."""

    def __init__(self) -> None:
        self.cold = None
        self.reset = False

    def after_run(self, k: int) -> None:
        if k == 0:
            self.cold = _peak_rss_mb()
            self.reset = _reset_peak_rss()

    def result(self) -> dict:
        now = _peak_rss_mb()
        return {"peak_rss_mb": max(self.cold or 0.0, now),
                "warm_peak_rss_mb": now if self.reset else None,
                "ru_maxrss_mb": _ru_maxrss_mb()}


def worker_ours(cfg: dict) -> dict:
    sys.path.insert(0, str(REPO))
    from calib.pipelines import release_unreachable, run_pipeline
    from calib.products import save_products

    root = Path(cfg["uncal"]).name.replace("_uncal.fits", "")
    out = Path(cfg["out"])
    runs = []
    peaks = _Peaks()
    for k in range(cfg["repeat"] + 1):        # k == 0: warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_pipeline("calwebb_detector1", cfg["uncal"], cfg["refs"])
        t1 = time.perf_counter()
        # as calib.products.run_and_save (the archive's worker) saves them: the products
        # are not used after the write, so their arrays are made big-endian in place
        save_products(res, out / f"run{k}", root,
                      {"crds_context": "benchmark", "references": cfg["refs"]}, consume=True)
        t2 = time.perf_counter()
        steps = dict(res.timings)
        steps["(read+steps)"] = t1 - t0
        steps["(save)"] = t2 - t1
        runs.append({"total": t2 - t0, "cpu": time.process_time() - c0, "steps": steps,
                     "dir": str(out / f"run{k}")})
        del res
        release_unreachable()      # as the archive's worker does between jobs (~1 ms)
        peaks.after_run(k)
    return {"runs": runs, **peaks.result()}


def _crds_offline(crds: Path) -> None:
    """The real jwst_0541 context in a scratch cache, offline (jwst gets every reference
    through override_<reftype>)."""
    sys.path.insert(0, str(REPO))
    from archive.crds import cache as crdscache

    crdscache.install_real_context(crds, SHARED_MAPPINGS)
    crdscache.configure(crds)


def worker_jwst(cfg: dict) -> dict:
    _crds_offline(Path(cfg["out"]) / "crds_cache")
    import logging

    from jwst.pipeline import Detector1Pipeline

    logging.getLogger("stpipe").setLevel(logging.WARNING)
    logging.getLogger("jwst").setLevel(logging.WARNING)
    r = cfg["refs"]
    steps = {
        "dq_init": {"override_mask": r["mask"]},
        "saturation": {"override_saturation": r["saturation"], "override_superbias": r["superbias"]},
        "superbias": {"override_superbias": r["superbias"]},
        "linearity": {"override_linearity": r["linearity"]},
        "dark_current": {"override_dark": r["dark"]},
        "jump": {"override_gain": r["gain"], "override_readnoise": r["readnoise"]},
        "ramp_fit": {"override_gain": r["gain"], "override_readnoise": r["readnoise"]},
        "gain_scale": {"override_gain": r["gain"]},
        "refpix": {"override_refpix": "N/A", "override_sirskernel": "N/A"},
        "ipc": {"skip": True},             # no IPC reference: calib records SKIPPED too
        "emicorr": {"skip": True}, "reset": {"skip": True}, "rscd": {"override_rscd": "N/A"},
    }
    runs = []
    peaks = _Peaks()
    for k in range(cfg["repeat"] + 1):
        out = Path(cfg["out"]) / f"run{k}"
        out.mkdir(parents=True, exist_ok=True)
        p = Detector1Pipeline(steps=steps)
        p.prefetch_references = False
        p.save_results = True
        p.output_dir = str(out)
        times: dict[str, float] = {}
        for name in p.step_defs:
            step = getattr(p, name, None)
            if step is None:
                continue

            def timed(*a, _run=step.run, _name=name, _times=times, **kw):
                t = time.perf_counter()
                try:
                    return _run(*a, **kw)
                finally:
                    _times[_name] = time.perf_counter() - t
            step.run = timed
        t0, c0 = time.perf_counter(), time.process_time()
        p.run(cfg["uncal"])
        runs.append({"total": time.perf_counter() - t0, "cpu": time.process_time() - c0, "steps": times,
                     "dir": str(out)})
        del p
        import gc
        gc.collect()               # the same chance for jwst's dropped models
        peaks.after_run(k)
    return {"runs": runs, **peaks.result()}


def run_worker(kind: str, cfg: dict, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[v] = str(threads)
    res_file = Path(cfg["out"]) / f"{kind}_result.json"
    Path(cfg["out"]).mkdir(parents=True, exist_ok=True)
    log = Path(cfg["out"]) / f"{kind}.log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--config",
                               json.dumps(dict(cfg, result=str(res_file)))],
                              env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed (exit {proc.returncode}); log {log}:\n"
                         + log.read_text()[-3000:])
    return json.loads(res_file.read_text())


# ------------------------------------------------------------------------------------------
# comparison and report

def agreement(ours_dir: str, jwst_dir: str, root: str) -> dict:
    import numpy as np
    from astropy.io import fits

    out = {}
    for suffix in ("rate", "rateints"):
        a, b = Path(ours_dir) / f"{root}_{suffix}.fits", Path(jwst_dir) / f"{root}_{suffix}.fits"
        if not (a.exists() and b.exists()):
            continue
        with fits.open(a) as fa, fits.open(b) as fb:
            ours, theirs = fa["SCI"].data, fb["SCI"].data
            err, dq = fb["ERR"].data, fb["DQ"].data
            good = ((dq & 1) == 0) & np.isfinite(theirs)
            ok = np.abs(ours - theirs) <= 1e-4 * np.abs(theirs) + 0.01 * err
            out[suffix] = {"fraction": float(ok[good].mean()), "good_pixels": int(good.sum()),
                           "dq_equal": bool(np.array_equal(fa["DQ"].data, dq))}
    return out


def report(case: str, info: dict, ours: dict, jw: dict | None) -> dict:
    best_o = min(ours["runs"][1:], key=lambda r: r["total"])
    print(f"\n=== case {case}: {CASES[case]['subarray']} shape {tuple(info['shape'])} "
          f"(nints, ngroups, ny, nx), {CASES[case]['readpatt']} ===")
    rows = {"ours": best_o}
    if jw is not None:
        rows["jwst"] = min(jw["runs"][1:], key=lambda r: r["total"])
    names = []
    for r in rows.values():
        for s in r["steps"]:
            if s not in names:
                names.append(s)
    print(f"{'step':<20}{'jwst s':>10}{'ours s':>10}{'ratio':>9}")
    for s in names:
        o = best_o["steps"].get(s)
        j = rows["jwst"]["steps"].get(s) if "jwst" in rows else None
        ratio = f"{j / o:9.1f}" if (o and j and o > 1e-4) else f"{'':>9}"
        fo = f"{o:10.3f}" if o is not None else f"{'-':>10}"
        fj = f"{j:10.3f}" if j is not None else f"{'-':>10}"
        print(f"{s:<20}{fj}{fo}{ratio}")
    summary = {"case": case, "ours_s": best_o["total"], "ours_rss_mb": ours["peak_rss_mb"],
               "ours_all_s": [r["total"] for r in ours["runs"]]}
    print(f"{'TOTAL wall':<20}{rows['jwst']['total'] if jw else float('nan'):10.3f}"
          f"{best_o['total']:10.3f}"
          f"{(rows['jwst']['total'] / best_o['total']) if jw else float('nan'):9.1f}")
    print(f"{'peak RSS MB':<20}{jw['peak_rss_mb'] if jw else float('nan'):10.0f}"
          f"{ours['peak_rss_mb']:10.0f}"
          f"{(jw['peak_rss_mb'] / ours['peak_rss_mb']) if jw else float('nan'):9.1f}")
    warm_j = (jw or {}).get("warm_peak_rss_mb") or float("nan")
    warm_o = ours.get("warm_peak_rss_mb") or float("nan")
    print(f"{'  warm runs only':<20}{warm_j:10.0f}{warm_o:10.0f}{warm_j / warm_o:9.1f}")
    ru_j = (jw or {}).get("ru_maxrss_mb") or float("nan")
    ru_o = ours.get("ru_maxrss_mb") or float("nan")
    print(f"{'  ru_maxrss MB':<20}{ru_j:10.0f}{ru_o:10.0f}{ru_j / ru_o:9.1f}")
    summary["ours_ru_maxrss_mb"] = ours.get("ru_maxrss_mb")
    summary["ours_warm_rss_mb"] = ours.get("warm_peak_rss_mb")
    print(f"ours runs (first = warm-up): {', '.join(f'{t:.2f}' for t in summary['ours_all_s'])} s")
    def cpus(result):
        return ", ".join(f"{r.get('cpu', float('nan')):.2f}" for r in result["runs"])
    print(f"ours CPU s per run (all threads): {cpus(ours)}")
    if jw is not None:
        print(f"jwst CPU s per run: {cpus(jw)}")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    from statistics import median
    med_o = float(median(summary["ours_all_s"][1:]))
    summary["ours_median_s"] = med_o
    if jw is not None:
        med_j = float(median([r["total"] for r in jw["runs"][1:]]))
        summary["median_ratio"] = med_j / med_o
        print(f"median of the timed runs: jwst {med_j:.3f} s, ours {med_o:.3f} s: "
              f"{med_j / med_o:.1f}x")
    if jw is not None:
        summary.update(jwst_s=rows["jwst"]["total"], jwst_rss_mb=jw["peak_rss_mb"],
                       jwst_all_s=[r["total"] for r in jw["runs"]],
                       ratio=rows["jwst"]["total"] / best_o["total"],
                       rss_ratio=jw["peak_rss_mb"] / ours["peak_rss_mb"],
                       jwst_warm_rss_mb=jw.get("warm_peak_rss_mb"),
                       jwst_ru_maxrss_mb=jw.get("ru_maxrss_mb"),
                       warm_rss_ratio=warm_j / warm_o)
        print(f"jwst runs (first = warm-up): {', '.join(f'{t:.2f}' for t in summary['jwst_all_s'])} s")
        root = Path(info["uncal"]).name.replace("_uncal.fits", "")
        agr = agreement(best_o["dir"], rows["jwst"]["dir"], root)
        summary["agreement"] = agr
        for suffix, a in agr.items():
            print(f"agreement {suffix}: {100 * a['fraction']:.4f} % of {a['good_pixels']} good "
                  f"pixels within 1e-4|jwst| + 0.01 ERR_jwst; DQ equal: {a['dq_equal']}")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs after one warm-up")
    ap.add_argument("--threads", type=int, default=None,
                    help="NUMBA/OMP threads for both pipelines (default: all cores)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "detector1_bench"))
    ap.add_argument("--skip-jwst", action="store_true", help="time only ours")
    ap.add_argument("--reuse-jwst", action="store_true",
                    help="reuse the latest jwst measurement of the case in --workdir (jwst "
                         "takes ~30 min for the tso case); run it when there is none")
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--worker", choices=["ours", "jwst"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        cfg = json.loads(args.config)
        res = (worker_ours if args.worker == "ours" else worker_jwst)(cfg)
        Path(cfg["result"]).write_text(json.dumps(res))
        return 0

    workdir = Path(args.workdir)
    cases = list(ALL_CASES) if args.case == "all" else [args.case]
    summaries = []
    for case in cases:
        info = prepare(case, workdir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = workdir / case / f"out-{stamp}"
        cfg = {"uncal": info["uncal"], "refs": info["refs"], "repeat": args.repeat}
        jw = None
        previous = sorted((workdir / case).glob("out-*/jwst/jwst_result.json"))
        if args.reuse_jwst and previous:
            jw = json.loads(previous[-1].read_text())
            print(f"[{case}] jwst: reusing the measurement in {previous[-1]}")
        elif not args.skip_jwst:
            jw = run_worker("jwst", dict(cfg, out=str(base / "jwst")), args.threads)
        ours = run_worker("ours", dict(cfg, out=str(base / "ours")), args.threads)
        summaries.append(report(case, info, ours, jw))
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
