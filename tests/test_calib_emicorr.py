"""MIRI emicorr: removal of an injected EMI waveform, parity with jwst's EmiCorrStep, bad
references.

The EMI is injected with the read timing jwst assumes (10 us pixel clock; channel column
``x // 4`` of row ``y`` read at ``y * ROWCLOCKS + (x // 4) * NSAMPLES``; a frame lasts
``ny * ROWCLOCKS + (1024 - ny) * 7`` ticks; FASTR1 adds one reset frame of FRAMECLOCKS
between integrations), from the waveform samples of the synthetic EMICORR reference
(sample ``i`` at phase ``(i + 0.5) / n``, periodic linear interpolation: independent of the
step's cubic spline).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from calib.errors import InputError, ReferenceFileError
from calib.pipelines import run_pipeline, validate_params
from calib.steps import emicorr as emi
from simulation.ramps import MIRI_EMI_CLOCKS, write_emicorr_reference
from tests.conftest import SHARED
from tests.test_calib_support import make_miri

SHARED_MAPPINGS = SHARED / "crds" / "mappings"
EMI_AMP = 20.0        # DN, peak of the injected waveform
EMI_PHASE = 0.37      # periods, at the first read of the exposure
ON = {"emicorr": {"skip": False}}


def _inject(sim, ref_path, *, amp=EMI_AMP, phase0=EMI_PHASE, name="Hz390"):
    """Add the EMI of ``name`` to the uncal of ``sim`` (NSAMPLES=1 set); returns the injected
    EMI (float64, data shape) and the EMI-free raw ramp."""
    with datamodels.EmiModel(str(ref_path)) as m:
        f = float(getattr(m.frequencies, name).frequency)
        wave = np.array(getattr(m.frequencies, name).phase_amplitudes, np.float64)
    with datamodels.Level1bModel(sim.uncal) as u:
        raw = np.array(u.data)
        readpatt = u.meta.exposure.readpatt
        sub = u.meta.subarray.name
    nints, ngroups, ny, nx = raw.shape
    rowclocks, frameclocks = MIRI_EMI_CLOCKS["FULL_FAST" if sub == "FULL" else sub]
    frame = ny * rowclocks + (1024 - ny) * 7
    per_int = ngroups * frame + (frameclocks if readpatt.endswith("R1") else 0)
    t = (np.arange(nints)[:, None, None, None] * per_int
         + np.arange(ngroups)[None, :, None, None] * frame
         + np.arange(ny)[None, None, :, None] * rowclocks
         + (np.arange(nx) // 4)[None, None, None, :] * 1)
    period = 1.0 / f / 10e-6
    n = wave.size
    ph = (t / period + phase0) % 1
    signal = amp / np.abs(wave).max() * np.interp(ph, (np.arange(n) + 0.5) / n, wave, period=1.0)
    with datamodels.Level1bModel(sim.uncal) as u:
        u.data = np.clip(np.round(raw + signal), 0, 65535).astype(np.uint16)
        u.meta.exposure.nsamples = 1
        u.save(sim.uncal)
    return signal, raw


@pytest.fixture(scope="module")
def emi_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("emicorr")
    sim = make_miri(d, nints=2, ngroups=8)
    clean = d / "clean"
    clean.mkdir()
    sim_clean = make_miri(clean, nints=2, ngroups=8)          # same seed: the EMI-free twin
    ref = write_emicorr_reference(d / "miri_emicorr.asdf")
    signal, raw = _inject(sim, ref)
    with datamodels.Level1bModel(sim_clean.uncal) as u:      # NSAMPLES on the twin too
        u.meta.exposure.nsamples = 1
        u.save(sim_clean.uncal)
    return sim, sim_clean, str(ref), signal, raw


def _mask_dq(sim, shape):
    with datamodels.MaskModel(sim.refs["mask"]) as m:
        return np.array(m.dq[778:778 + shape[0], 0:shape[1]], np.uint32)


def _selection(ref, sub="SUB64", readpatt="FASTR1", det="MIRIMAGE"):
    with datamodels.EmiModel(ref) as m:
        return emi.select_frequencies(m, sub, readpatt, det, path=ref)


# ------------------------------------------------------------------------------------------
# (a) the step removes an injected EMI waveform

def test_injected_emi_is_removed(emi_case):
    sim, _, ref, signal, raw = emi_case
    with datamodels.Level1bModel(sim.uncal) as u:
        data = np.array(u.data, np.float32)
    pdq = _mask_dq(sim, data.shape[2:])
    sel = _selection(ref)
    assert sel.names == ("Hz390",) and (sel.rowclocks, sel.frameclocks) == (28, 8512)
    before = data.copy()
    out, status = emi.emicorr(data, pdq, sel, readpatt="FASTR1", nsamples=1)
    assert status == "COMPLETE"
    # residual EMI: what remains of the injected pattern beyond the uint16 rounding
    resid = (out.astype(np.float64) - raw)
    resid_before = (before.astype(np.float64) - raw)
    rms_emi = np.sqrt(np.mean(signal ** 2))
    rms_before = np.sqrt(np.mean(resid_before ** 2))
    rms_after = np.sqrt(np.mean(resid ** 2))
    assert rms_before > 0.9 * rms_emi
    assert rms_after < 0.08 * rms_emi, (rms_after, rms_emi)
    # the fitted amplitude / phase match the injection (jwst timing model)
    d2 = before.copy()
    _, amps, phases = emi.emicorr_joint(d2, pdq, sel.waveforms[0], sel.frequencies[0], 1,
                                        sel.rowclocks, sel.frameclocks)
    peak = np.abs(sel.waveforms[0]).max()
    assert abs(amps[0] * peak - EMI_AMP) < 0.03 * EMI_AMP
    assert abs(((phases[0] - EMI_PHASE + 0.5) % 1) - 0.5) < 0.01
    # deterministic
    d3, _ = emi.emicorr(before.copy(), pdq, sel, readpatt="FASTR1", nsamples=1)
    assert np.array_equal(d3, out)


def test_pipeline_skipped_by_default_and_improves_rate(emi_case):
    sim, sim_clean, ref, _, _ = emi_case
    refs = dict(sim.refs, emicorr=ref)
    off = run_pipeline("calwebb_detector1", sim.uncal, refs)
    assert off.step_status["emicorr"] == "SKIPPED" and "emicorr" not in off.references_used
    assert validate_params("calwebb_detector1", None)["emicorr"]["skip"] is True
    on = run_pipeline("calwebb_detector1", sim.uncal, refs, ON)
    assert on.step_status["emicorr"] == "COMPLETE" and on.references_used["emicorr"] == ref
    assert on.products["rate"].meta.cal_step.emicorr == "COMPLETE"
    clean = run_pipeline("calwebb_detector1", sim_clean.uncal, sim.refs)
    good = (clean.products["rate"].dq & 1) == 0
    err_off = np.sqrt(np.mean((off.products["rate"].data - clean.products["rate"].data)[good] ** 2))
    err_on = np.sqrt(np.mean((on.products["rate"].data - clean.products["rate"].data)[good] ** 2))
    assert err_on < 0.2 * err_off, (err_on, err_off)
    # no reference: SKIPPED even when requested (jwst: N/A -> skipped)
    none = run_pipeline("calwebb_detector1", sim.uncal, sim.refs, ON)
    assert none.step_status["emicorr"] == "SKIPPED"


def test_full_frame_fastr1_case(tmp_path):
    """FULL/FASTR1 is looked up as FULL_FAST (Hz10) and corrected."""
    ref = write_emicorr_reference(tmp_path / "emi.asdf")
    sel = _selection(str(ref), sub="FULL")
    assert sel.names == ("Hz10",) and (sel.rowclocks, sel.frameclocks) == (271, 277504)
    rng = np.random.default_rng(3)
    ng, ny, nx = 4, 1024, 1032
    w = sel.waveforms[0]
    period = 1.0 / sel.frequencies[0] / 10e-6
    t = (np.arange(ng)[:, None, None] * (ny * 271) + np.arange(ny)[None, :, None] * 271
         + (np.arange(nx) // 4)[None, None, :])
    sig = 15.0 / np.abs(w).max() * np.interp((t / period + 0.2) % 1,
                                             (np.arange(w.size) + 0.5) / w.size, w, period=1.0)
    base = 9000.0 + 30.0 * np.arange(ng)[:, None, None] + rng.normal(0, 2.0, (ng, ny, nx))
    data = (base + sig)[None].astype(np.float32)
    out, st = emi.emicorr(data, np.zeros((ny, nx), np.uint32), sel, readpatt="FASTR1",
                          nsamples=1)
    assert st == "COMPLETE"
    resid = out[0] - base
    assert np.sqrt(np.mean(resid ** 2)) < 0.1 * np.sqrt(np.mean(sig ** 2))


# ------------------------------------------------------------------------------------------
# (c) bad references, skips, bad parameters

def test_bad_references_and_skips(emi_case, tmp_path):
    sim, _, ref, _, _ = emi_case
    garbage = tmp_path / "garbage_emicorr.asdf"
    garbage.write_text("not an asdf file")
    for bad in (str(garbage), str(tmp_path / "missing_emicorr.asdf")):
        with pytest.raises(ReferenceFileError, match=Path(bad).name) as ei:
            run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, emicorr=bad), ON)
        assert "emicorr" in str(ei.value)
    # no entry for SUB64: skipped, as jwst (checked against jwst in the parity test)
    nosub = write_emicorr_reference(tmp_path / "nosub_emicorr.asdf",
                                    subarray_cases={"SUB128": ["Hz390"]})
    res = run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, emicorr=str(nosub)), ON)
    assert res.step_status["emicorr"] == "SKIPPED"
    # an entry whose frequency is not defined: an error naming file and step
    m = datamodels.EmiModel()
    m.frequencies = {"Hz390": {"frequency": 390.625,
                               "phase_amplitudes": np.ones(8, np.float32)}}
    m.subarray_cases = {"SUB64": {"rowclocks": 28, "frameclocks": 8512,
                                  "freqs": {"FAST": ["Hz218x"]}}}
    m.meta.useafter = "2000-01-01T00:00:00"
    m.meta.author, m.meta.pedigree, m.meta.description = "t", "DUMMY", "bad"
    undef = str(tmp_path / "undef_emicorr.asdf")
    m.save(undef)
    with pytest.raises(ReferenceFileError, match="undef_emicorr.asdf.*Hz218x") as ei:
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, emicorr=undef), ON)
    assert str(ei.value).startswith("emicorr:")
    # unknown algorithm; a file without NSAMPLES (jwst fails there too)
    with pytest.raises(ValueError, match="algorithm"):
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, emicorr=ref),
                      {"emicorr": {"skip": False, "algorithm": "fancy"}})
    d = tmp_path / "nons"
    d.mkdir()
    s2 = make_miri(d, nints=1, ngroups=5)
    with pytest.raises(InputError, match="NSAMPLES"):
        run_pipeline("calwebb_detector1", s2.uncal, dict(s2.refs, emicorr=ref), ON)
    # read pattern / ngroups where jwst skips
    sel = _selection(ref)
    x = np.zeros((1, 2, 64, 72), np.float32)
    assert emi.emicorr(x, np.zeros((64, 72), np.uint32), sel, readpatt="FASTR1",
                       nsamples=1)[1] == "SKIPPED"
    x = np.zeros((1, 5, 64, 72), np.float32)
    assert emi.emicorr(x, np.zeros((64, 72), np.uint32), sel, readpatt="FASTGRPAVG",
                       nsamples=1)[1] == "SKIPPED"


# ------------------------------------------------------------------------------------------
# (b) parity with jwst 3.0 EmiCorrStep (and Detector1Pipeline with emicorr on)

_JWST_SCRIPT = textwrap.dedent(
    r'''
    import json, os, sys, traceback
    import numpy as np
    cfg = json.loads(sys.argv[1])
    from archive.crds import cache as crdscache
    # the real jwst_0541 context, offline (every reference is given by override_<reftype>)
    crdscache.install_real_context(cfg["crds_path"], cfg["mappings"])
    crdscache.configure(cfg["crds_path"])
    from jwst.dq_init import DQInitStep
    from jwst.emicorr import EmiCorrStep
    from jwst.pipeline import Detector1Pipeline
    r = cfg["refs"]
    out = cfg["out"]
    dq = DQInitStep.call(cfg["uncal"], override_mask=r["mask"])
    for name, kw in cfg["emicorr_runs"].items():
        res = EmiCorrStep.call(dq.copy(), skip=False, override_emicorr=kw.pop("ref"), **kw)
        np.save(os.path.join(out, name + ".npy"), np.asarray(res.data))
        with open(os.path.join(out, name + ".status"), "w") as fh:
            fh.write(str(res.meta.cal_step.emicorr))
    steps = {
        "dq_init": {"override_mask": r["mask"]},
        "emicorr": {"skip": False, "override_emicorr": r["emicorr"]},
        "saturation": {"override_saturation": r["saturation"], "override_superbias": "N/A"},
        "linearity": {"override_linearity": r["linearity"]},
        "dark_current": {"override_dark": r["dark"]},
        "jump": {"override_gain": r["gain"], "override_readnoise": r["readnoise"]},
        "ramp_fit": {"override_gain": r["gain"], "override_readnoise": r["readnoise"]},
        "gain_scale": {"override_gain": r["gain"]},
        "refpix": {"override_refpix": "N/A", "override_sirskernel": "N/A"},
        "ipc": {"skip": True}, "reset": {"skip": True}, "rscd": {"override_rscd": "N/A"},
    }
    p = Detector1Pipeline(steps=steps)
    p.prefetch_references = False
    p.save_results = True
    p.output_dir = out
    p.run(cfg["uncal"])
    '''
)


@pytest.fixture(scope="module")
def jwst_emicorr(emi_case, tmp_path_factory):
    sim, _, ref, _, _ = emi_case
    base = tmp_path_factory.mktemp("emicorr_jwst")
    nosub = write_emicorr_reference(base / "nosub_emicorr.asdf",
                                    subarray_cases={"SUB128": ["Hz390"]})
    out = base / "out"
    out.mkdir()
    runs = {"joint": {"ref": ref},
            "joint_separate": {"ref": ref, "fit_ints_separately": True},
            "sequential": {"ref": ref, "algorithm": "sequential"},
            "nosub": {"ref": str(nosub)}}
    cfg = {"crds_path": str(base / "crds_cache"), "mappings": str(SHARED_MAPPINGS),
           "refs": dict(sim.refs, emicorr=ref), "uncal": sim.uncal, "out": str(out),
           "emicorr_runs": runs}
    env = dict(os.environ)
    env.pop("CRDS_CONTEXT", None)
    proc = subprocess.run([sys.executable, "-c", _JWST_SCRIPT, json.dumps(cfg)], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"jwst run failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return sim, ref, out, str(nosub)


def _agree(ours, theirs, rel=1e-4, abs_dn=0.01):
    diff = np.abs(ours.astype(np.float64) - theirs)
    ok = diff <= rel * np.abs(theirs) + abs_dn
    return ok.mean(), float(diff.max())


@pytest.mark.slow
@pytest.mark.parametrize("run,params", [
    ("joint", {}),
    ("joint_separate", {"fit_ints_separately": True}),
    ("sequential", {"algorithm": "sequential"}),
])
def test_ramp_parity_with_jwst(jwst_emicorr, run, params):
    sim, ref, out, _ = jwst_emicorr
    theirs = np.load(out / f"{run}.npy")
    assert (out / f"{run}.status").read_text() == "COMPLETE"
    with datamodels.Level1bModel(sim.uncal) as u:
        data = np.array(u.data, np.float32)
    before = data.copy()
    ours, st = emi.emicorr(data, _mask_dq(sim, data.shape[2:]), _selection(ref),
                           readpatt="FASTR1", nsamples=1, xstart=1, xsize=72, **params)
    assert st == "COMPLETE"
    frac, worst = _agree(ours, theirs)
    print(f"emicorr {run}: {frac:.6f} of ramp samples agree, max |ours - jwst| = {worst:.3g} DN")
    assert frac >= 0.999, (frac, worst)
    assert np.abs(theirs - before).max() > 1.0     # jwst did correct something


@pytest.mark.slow
def test_skip_parity_with_jwst(jwst_emicorr):
    sim, _, out, nosub = jwst_emicorr
    assert (out / "nosub.status").read_text() == "SKIPPED"
    res = run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, emicorr=nosub), ON)
    assert res.step_status["emicorr"] == "SKIPPED"


@pytest.mark.slow
def test_rate_parity_with_jwst_pipeline(jwst_emicorr):
    sim, ref, out, _ = jwst_emicorr
    stem = Path(sim.uncal).name.replace("_uncal.fits", "")
    # reset / rscd are left out on both sides (jwst: skip / N/A): this compares emicorr
    refs = {k: v for k, v in sim.refs.items() if k not in ("reset", "rscd")}
    ours = run_pipeline("calwebb_detector1", sim.uncal, dict(refs, emicorr=ref), ON)
    assert ours.step_status["reset"] == ours.step_status["rscd"] == "SKIPPED"
    with datamodels.ImageModel(str(out / f"{stem}_rate.fits")) as j:
        assert j.meta.cal_step.emicorr == "COMPLETE"
        theirs, err, dq = np.array(j.data), np.array(j.err), np.array(j.dq)
    good = ((dq & 1) == 0) & np.isfinite(theirs)
    ok = np.abs(ours.products["rate"].data - theirs) <= 1e-4 * np.abs(theirs) + 0.01 * err
    print(f"emicorr rate: {ok[good].mean():.6f} of {good.sum()} good pixels agree")
    assert ok[good].mean() >= 0.999
