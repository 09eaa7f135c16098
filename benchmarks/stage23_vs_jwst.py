"""calwebb_image2 and calwebb_image3: calib vs jwst 3.0 on NIRCam full frames, warm workers (issue 12).

Both pipelines run on the same simulated ``_rate`` (simulation.exposures.write_rate: NRCA1
FULL, F200W, stars through the exposure's pointing and the SIAF distortion, cosmic rays)
with the same simulator references (DISTORTION, FILTEROFFSET, FLAT, PHOTOM, AREA; jwst
through ``override_<reftype>`` under the real jwst_0541 context installed offline), each in
its own subprocess so that peak RSS (VmHWM) is per pipeline. Each worker runs once to warm
up (imports, numba, the reference cache), then ``--repeat`` timed runs; the best and the
median timed run are reported. Before ours' worker, a first process runs ours once and exits
(:func:`compile_pass`): it fills numba's on-disk cache, as the first run on any machine does,
so the measured worker loads its kernels instead of compiling them (LLVM's compile memory,
~125 MB, stays in a process that compiled: it is not a warm worker's).
Ours = ``calib.products.run_and_save("calwebb_image2")`` as the archive runs it (read,
steps, ``_cal`` written before resample, ``_i2d`` at the end); jwst = ``Image2Pipeline.run``
with ``save_results`` (the same two products). Per-step wall times of the best run are printed
for both, and the ``_cal``/``_i2d`` agreement of the last runs.

    python benchmarks/stage23_vs_jwst.py --repeat 2   # inputs kept under <tmp>/image2_bench (--workdir)

``--image3 2 4 8``: calwebb_image3 instead, on dithered associations of 2, 4 and 8 NIRCam
NRCA1 full-frame ``_cal`` members (simulated rates with a ~0.1" pointing error each,
calibrated by this project's calwebb_image2; every step of both pipelines with jwst's
defaults, jwst given the simulated APCORR/ABVEGAOFFSET as overrides). Ours =
``calib.products.run_and_save("calwebb_image3")`` as the archive runs it (each ``_crf``
written as soon as outlier_detection has flagged its member, then ``_i2d``, ``_cat.ecsv``,
``_segm``); jwst = ``Image3Pipeline.run`` with ``save_results``. Each size
runs in fresh worker processes (warm-up, then ``--repeat`` timed runs); printed: the times,
the ratio, peak RSS, per-step times of the largest association, and how the time grows with
the members.

    python benchmarks/stage23_vs_jwst.py --image3 2 4 8 --repeat 1

jwst's image3 runs take minutes: ``--reuse-jwst`` reports its result of an earlier run in the
same ``--workdir`` (with the date and load average it was measured at) instead of running it
again; the CPU ratio (all threads' CPU seconds) is the figure least moved by other load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET = (80.0, -69.5)
_NA_WCS = ("specwcs", "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
           "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")


def _shared_mappings() -> Path:
    from tests.conftest import SHARED

    return SHARED / "crds" / "mappings"


def prepare(workdir: Path) -> dict:
    """Simulate the references and the full-frame rate into ``workdir`` (once)."""
    cfg_path = workdir / "inputs.json"
    if cfg_path.exists():
        return json.loads(cfg_path.read_text())
    from simulation import exposures, imaging_refs, sky

    written = imaging_refs.write_imaging_references(workdir / "refs", "NIRCAM", "NRCA1", [("F200W", "CLEAR")],
                                                    seed=0)
    refs = {rt: str(p[0]) for rt, p in written.items()
            if p and rt in ("distortion", "filteroffset", "flat", "photom", "area")}
    field = sky.random_star_field(*TARGET, 60.0, 400, seed=3, flux_range=(5.0, 200.0), min_separation=1.0)
    pointing = sky.make_pointing("NIRCAM", "NRCA1_FULL", *TARGET, 20.0)
    exp = exposures.ImagingExposure("NIRCAM", "NRCA1", "NRCA1_FULL", "F200W", "CLEAR", "MEDIUM8", 5)
    rate, _ = exposures.write_rate(workdir / "jw99999001001_01101_00001_nrca1_rate.fits", exp,
                                   sky.SkyScene(field, pointing, "NIRCAM", "NRCA1", "F200W", "CLEAR"), seed=3)
    cfg = {"rate": str(rate), "refs": refs}
    cfg_path.write_text(json.dumps(cfg))
    return cfg


def prepare_image3(workdir: Path, members: int, aperture: str = "NRCA1_FULL") -> dict:
    """Simulate ``members`` dithered rates, calibrate them (calib image2) and write an image3 association."""
    cfg_path = workdir / f"image3_{members}.json"
    if cfg_path.exists():
        return json.loads(cfg_path.read_text())
    from calib.pipelines import run_pipeline
    from simulation import exposures, imaging_refs, sky

    written = imaging_refs.write_imaging_references(workdir / "refs3", "NIRCAM", "NRCA1", [("F200W", "CLEAR")],
                                                    seed=0)
    refs = {rt: str(p[0]) for rt, p in written.items() if p}
    field = sky.random_star_field(*TARGET, 100.0, 4000, seed=5, flux_range=(10.0, 500.0), min_separation=1.0)
    exp = exposures.ImagingExposure("NIRCAM", "NRCA1", aperture, "F200W", "CLEAR", "MEDIUM8", 5)
    names = []
    for k in range(members):
        cal = workdir / "cal3" / f"jw99999002001_01101_{k + 1:05d}_nrca1_cal.fits"
        if not cal.exists():
            cal.parent.mkdir(parents=True, exist_ok=True)
            dither = (2.0 * (k % 4) + 0.3 * (k // 4), 1.5 * (k // 2 % 2) - 0.4 * (k // 4))
            pointing = sky.make_pointing("NIRCAM", aperture, *TARGET, 20.0, dither=dither, pointing_error=0.1,
                                         roll_error=1.0, seed=k)
            rate, _ = exposures.write_rate(
                workdir / "rate3" / f"jw99999002001_01101_{k + 1:05d}_nrca1_rate.fits", exp,
                sky.SkyScene(field, pointing, "NIRCAM", "NRCA1", "F200W", "CLEAR"), seed=10 + k,
                expstart=60100.0 + 0.01 * k, observation={"OBSERVTN": "002", "EXPOSURE": f"{k + 1:05d}"})
            run_pipeline("calwebb_image2", rate, refs, {"resample": {"skip": True}}).products["cal"].save(cal)
        names.append(str(cal))
    asn = workdir / f"jw99999-o002_20260101t000000_image3_{members:05d}_asn.json"
    asn.write_text(json.dumps({"asn_type": "image3", "asn_rule": "Asn_Lv3Image", "asn_id": "o002",
                               "asn_pool": "benchmark", "program": "99999", "code_version": "benchmark",
                               "products": [{"name": f"jw99999-o002_t001_nircam_clear-f200w_{members}",
                                             "members": [{"expname": n, "exptype": "science"} for n in names]}]}))
    cfg = {"asn": str(asn), "refs": refs, "members": members}
    cfg_path.write_text(json.dumps(cfg))
    return cfg


# ------------------------------------------------------------------------------------------
# workers (run in their own process)

def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _runs(cfg: dict, one) -> dict:
    runs, cold, reset = [], None, False
    for k in range(cfg["repeat"] + 1):           # k == 0: warm-up
        out = Path(cfg["out"]) / f"run{k}"
        shutil.rmtree(out, ignore_errors=True)       # products of an earlier benchmark: never overwritten
        out.mkdir(parents=True)
        runs.append(one(out))
        if k == 0:
            cold = _peak_rss_mb()
            reset = _reset_peak_rss()
    now = _peak_rss_mb()
    return {"runs": runs, "peak_rss_mb": max(cold or 0.0, now), "warm_peak_rss_mb": now if reset else None,
            "when": f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}"}


def worker_ours(cfg: dict) -> dict:
    from calib.pipelines import release_unreachable
    from calib.products import run_and_save

    root = Path(cfg["rate"]).name.replace("_rate.fits", "")

    def one(out: Path) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        # the archive's way: the _cal written before resample, the _i2d at the end
        res, _ = run_and_save("calwebb_image2", cfg["rate"], cfg["refs"], None, out, root,
                              {"crds_context": "benchmark", "references": cfg["refs"]})
        t2, c2 = time.perf_counter(), time.process_time()
        steps = dict(res.timings)
        steps["(read+steps+save)"] = t2 - t0
        del res
        release_unreachable()
        return {"total": t2 - t0, "cpu": c2 - c0, "steps": steps, "dir": str(out)}

    return _runs(cfg, one)


def _jwst_offline(cfg: dict) -> None:
    """The real jwst_0541 context in a scratch cache, offline, jwst's logs at WARNING (before jwst is imported)."""
    import logging

    from archive.crds import cache as crdscache

    crdscache.install_real_context(Path(cfg["out"]) / "crds_cache", _shared_mappings())
    crdscache.configure(Path(cfg["out"]) / "crds_cache")
    logging.getLogger("stpipe").setLevel(logging.WARNING)
    logging.getLogger("jwst").setLevel(logging.WARNING)


def worker_jwst(cfg: dict) -> dict:
    import gc

    _jwst_offline(cfg)
    from jwst.pipeline import Image2Pipeline

    r = cfg["refs"]
    steps = {"assign_wcs": {"override_distortion": r["distortion"], "override_filteroffset": r["filteroffset"],
                            **{f"override_{rt}": "N/A" for rt in _NA_WCS}},
             "flat_field": {"override_flat": r["flat"], "override_fflat": "N/A", "override_sflat": "N/A",
                            "override_dflat": "N/A"},
             "photom": {"override_photom": r["photom"], "override_area": r["area"]}}

    def one(out: Path) -> dict:
        p = Image2Pipeline(steps=steps)
        p.prefetch_references = False
        p.save_results = True
        p.output_dir = str(out)
        times: dict[str, float] = {}
        for name in p.step_defs:
            step = getattr(p, name)

            def timed(*a, _run=step.run, _name=name, **kw):
                t = time.perf_counter()
                try:
                    return _run(*a, **kw)
                finally:
                    times[_name] = time.perf_counter() - t
            step.run = timed
        t0, c0 = time.perf_counter(), time.process_time()
        p.run(cfg["rate"])
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        del p
        gc.collect()
        return {"total": total, "cpu": cpu, "steps": times, "dir": str(out)}

    return _runs(cfg, one)


def worker_ours3(cfg: dict) -> dict:
    from calib.pipelines import release_unreachable
    from calib.products import run_and_save

    name = json.loads(Path(cfg["asn"]).read_text())["products"][0]["name"]

    def one(out: Path) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        # the archive's way: each _crf written as soon as outlier_detection flagged it, the rest at the end
        res, _ = run_and_save("calwebb_image3", cfg["asn"], cfg["refs"], None, out, name,
                              {"crds_context": "benchmark", "references": {}})
        t2, c2 = time.perf_counter(), time.process_time()
        steps = dict(res.timings)
        steps["(read+steps+save)"] = t2 - t0
        del res
        release_unreachable()
        return {"total": t2 - t0, "cpu": c2 - c0, "steps": steps, "dir": str(out)}

    return _runs(cfg, one)


def worker_jwst3(cfg: dict) -> dict:
    import gc

    _jwst_offline(cfg)
    from jwst.pipeline import Image3Pipeline

    r = cfg["refs"]
    steps = {"source_catalog": {"override_apcorr": r["apcorr"], "override_abvegaoffset": r["abvegaoffset"]}}

    def one(out: Path) -> dict:
        p = Image3Pipeline(steps=steps)
        p.prefetch_references = False
        p.save_results = True
        p.output_dir = str(out)
        times: dict[str, float] = {}
        for name in p.step_defs:
            step = getattr(p, name)

            def timed(*a, _run=step.run, _name=name, **kw):
                t = time.perf_counter()
                try:
                    return _run(*a, **kw)
                finally:
                    times[_name] = times.get(_name, 0.0) + time.perf_counter() - t
            step.run = timed
        t0, c0 = time.perf_counter(), time.process_time()
        p.run(cfg["asn"])
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        del p
        gc.collect()
        return {"total": total, "cpu": cpu, "steps": times, "dir": str(out)}

    return _runs(cfg, one)


def compile_pass(kind: str, cfg: dict) -> None:
    """Run ours' worker once in a process of its own, to fill numba's on-disk cache (its numbers are not used)."""
    t = time.perf_counter()
    run_worker(kind, dict(cfg, out=str(Path(cfg["out"]).with_name(Path(cfg["out"]).name + "_compile")), repeat=0))
    print(f"  {kind}: a first process filled numba's cache ({time.perf_counter() - t:.1f} s)")


def run_worker(kind: str, cfg: dict) -> dict:
    res_file = Path(cfg["out"]) / f"{kind}_result.json"
    Path(cfg["out"]).mkdir(parents=True, exist_ok=True)
    log = Path(cfg["out"]) / f"{kind}.log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--config",
                               json.dumps(dict(cfg, result=str(res_file)))],
                              stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed (exit {proc.returncode}); log {log}:\n" + log.read_text()[-3000:])
    return json.loads(res_file.read_text())


# ------------------------------------------------------------------------------------------
# comparison and report

def agreement(ours_dir: str, jwst_dir: str, root: str) -> dict:
    """Fractions of good pixels in agreement (issue 12's criteria) between the two runs."""
    import numpy as np
    from stdatamodels.jwst import datamodels

    out = {}
    with datamodels.open(Path(ours_dir) / f"{root}_cal.fits") as o, \
            datamodels.open(Path(jwst_dir) / f"{root}_cal.fits") as j:
        good = ((j.dq & 1) == 0) & np.isfinite(j.data)
        ok = np.abs(o.data - j.data) <= 1e-4 * np.abs(j.data) + 0.01 * j.err
        out["cal_sci"] = float(ok[good].mean())
        out["cal_dq_equal"] = float((o.dq == j.dq).mean())
    with datamodels.open(Path(ours_dir) / f"{root}_i2d.fits") as o, \
            datamodels.open(Path(jwst_dir) / f"{root}_i2d.fits") as j:
        w = j.wht > 0
        same_shape = o.data.shape == j.data.shape
        out["i2d_same_shape"] = same_shape
        if same_shape:
            ok = np.isclose(o.data, j.data, rtol=1e-3, atol=0)
            out["i2d_sci"] = float(ok[w].mean())
            out["i2d_wht"] = float(np.isclose(o.wht, j.wht, rtol=1e-3)[w].mean())
    return out


def _best(res: dict) -> dict:
    timed = res["runs"][1:] or res["runs"]
    return min(timed, key=lambda r: r["total"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "image2_bench"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-jwst", action="store_true")
    ap.add_argument("--reuse-jwst", action="store_true",
                    help="image3: take jwst's numbers from an earlier run in the same --workdir when there is one")
    ap.add_argument("--image3", type=int, nargs="+", metavar="N",
                    help="benchmark calwebb_image3 on associations of N full-frame members instead")
    ap.add_argument("--worker", choices=["ours", "jwst", "ours3", "jwst3"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        cfg = json.loads(args.config)
        res = {"ours": worker_ours, "jwst": worker_jwst, "ours3": worker_ours3, "jwst3": worker_jwst3}[args.worker](cfg)
        Path(cfg["result"]).write_text(json.dumps(res))
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.image3:
        return main_image3(work, sorted(args.image3), args.repeat, args.skip_jwst, args.reuse_jwst)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    inputs = prepare(work)
    print(f"inputs ready ({time.perf_counter() - t:.1f} s): {inputs['rate']}")
    compile_pass("ours", dict(inputs, out=str(work / "ours")))
    ours = run_worker("ours", dict(inputs, out=str(work / "ours"), repeat=args.repeat))
    jw = None if args.skip_jwst else run_worker("jwst", dict(inputs, out=str(work / "jwst"), repeat=args.repeat))
    ob = _best(ours)
    print(f"\ncalwebb_image2, NIRCam NRCA1 full frame ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), {args.repeat} timed runs "
          "after a warm-up (wall s; CPU s of all threads in brackets):")
    ours_runs = ", ".join(f"{r['total']:.2f} [{r.get('cpu', float('nan')):.2f}]" for r in ours["runs"][1:])
    print(f"  ours timed runs: {ours_runs} s; "
          f"best {ob['total']:.3f}, median {statistics.median(r['total'] for r in ours['runs'][1:]):.3f} s; "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB (warm runs {ours['warm_peak_rss_mb'] or float('nan'):.0f})")
    if jw is not None:
        jb = _best(jw)
        jwst_runs = ", ".join(f"{r['total']:.2f} [{r.get('cpu', float('nan')):.2f}]" for r in jw["runs"][1:])
        print(f"  jwst timed runs: {jwst_runs} s; "
              f"best {jb['total']:.3f} s; peak RSS {jw['peak_rss_mb']:.0f} MB "
              f"(warm runs {jw['warm_peak_rss_mb'] or float('nan'):.0f})")
        print(f"  CPU ratio jwst/ours (best runs): {jb.get('cpu', float('nan')) / ob.get('cpu', float('nan')):.2f}x")
        print(f"  time ratio jwst/ours (best runs): {jb['total'] / ob['total']:.2f}x (goal >= 10x); "
              f"peak RSS ours/jwst: {ours['peak_rss_mb'] / jw['peak_rss_mb']:.2f} (goal <= 0.5)")
        print("\n  step            jwst s    ours s")
        names = list(dict.fromkeys([*jb["steps"], *ob["steps"]]))
        for n in names:
            print(f"  {n:<14} {jb['steps'].get(n, float('nan')):8.3f}  {ob['steps'].get(n, float('nan')):8.3f}")
        root = Path(inputs["rate"]).name.replace("_rate.fits", "")
        print("\n  agreement (last runs): " + json.dumps(agreement(ours["runs"][-1]["dir"], jw["runs"][-1]["dir"],
                                                                     root)))
    else:
        print("  ours per step (best run): " + ", ".join(f"{k} {v:.3f}" for k, v in ob["steps"].items()))
    return 0


def main_image3(work: Path, sizes: list[int], repeat: int, skip_jwst: bool, reuse_jwst: bool = False) -> int:
    """calwebb_image3 at each association size: times, ratios, peak RSS, per-step table, growth.

    With ``reuse_jwst``, jwst's result of an earlier run in ``work`` (``jwst3_<n>/jwst3_result.json``,
    with the date and load average it was measured at) is reported instead of running jwst again.
    """
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    inputs = {n: prepare_image3(work, n) for n in sizes}
    print(f"inputs ready ({time.perf_counter() - t:.1f} s)")
    rows = []
    compile_pass("ours3", dict(inputs[sizes[0]], out=str(work / f"ours3_{sizes[0]}")))
    for n in sizes:
        ours = run_worker("ours3", dict(inputs[n], out=str(work / f"ours3_{n}"), repeat=repeat))
        old = work / f"jwst3_{n}" / "jwst3_result.json"
        if skip_jwst:
            jw = None
        elif reuse_jwst and old.exists():
            jw = json.loads(old.read_text())
            print(f"  jwst, {n} members: reused from {old} ({jw.get('when', 'date not recorded')})")
        else:
            jw = run_worker("jwst3", dict(inputs[n], out=str(work / f"jwst3_{n}"), repeat=repeat))
        rows.append((n, ours, jw))
    print(f"\ncalwebb_image3, NIRCam NRCA1 full-frame members ({time.strftime('%Y-%m-%d %H:%M')}, load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), best of {repeat} timed runs after a "
          "warm-up (wall s; CPU s of all threads in brackets):")
    print("  members   ours s          jwst s          jwst/ours wall  CPU   RSS ours MB  RSS jwst MB  RSS ours/jwst")
    for n, ours, jw in rows:
        ob = _best(ours)
        jb = _best(jw) if jw else None
        print(f"  {n:>7}   {ob['total']:6.2f} [{ob['cpu']:6.2f}]"
              + (f"  {jb['total']:6.2f} [{jb['cpu']:6.2f}]  {jb['total'] / ob['total']:7.2f}x "
                 f"{jb['cpu'] / ob['cpu']:5.2f}x" if jb else " " * 34)
              + f"   {ours['peak_rss_mb']:10.0f}"
              + (f"   {jw['peak_rss_mb']:10.0f}   {ours['peak_rss_mb'] / jw['peak_rss_mb']:12.2f}" if jw else ""))
    n0, o0, j0 = rows[0]
    for n, ours, jw in rows[1:]:
        grow = _best(ours)["total"] / _best(o0)["total"]
        text = f"  {n0} -> {n} members: ours x{grow:.2f} (linear: x{n / n0:.2f})"
        if jw:
            text += f", jwst x{_best(jw)['total'] / _best(j0)['total']:.2f}"
        print(text)
    n, ours, jw = rows[-1]
    ob = _best(ours)
    jb = _best(jw) if jw else {"steps": {}}
    print(f"\n  {n} members, step        jwst s    ours s")
    for name in dict.fromkeys([*jb["steps"], *ob["steps"]]):
        print(f"  {name:<22} {jb['steps'].get(name, float('nan')):8.3f}  {ob['steps'].get(name, float('nan')):8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
