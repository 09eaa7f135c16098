"""The generic runner and the registry: strun behaviour and one-module pipelines.

- a skipped step reads no reference and needs none;
- CRDS is asked only for the reftypes of steps that will run (``required_reftypes``);
- parameters are checked against the declarations before any file is opened, and a bad
  value names step, parameter, value and the allowed range;
- a new pipeline is one module with ``PIPELINE = PipelineSpec(...)`` plus one registry line.
"""
from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from calib.errors import InputError, ReferenceFileError
from calib.params import SUPPORT_DEFAULT_ONLY, Param, ParamError
from calib.pipelines import REGISTRY, get_pipeline, required_reftypes, run_pipeline, validate_params
from calib.ramps import open_ramp
from calib.runner import PipelineSpec, ProductSpec, run
from calib.step import ExposureKeys, StepSpec
from calib.steps import dq_init
from tests.test_calib_support import make_nircam


@pytest.fixture(scope="module")
def nrc(tmp_path_factory):
    return make_nircam(tmp_path_factory.mktemp("nrc"), nints=1, ngroups=5, ny=64, nx=64, ipc_alpha=0.006)


def test_bad_parameter_is_refused_before_any_file_is_opened(tmp_path):
    missing = tmp_path / "never_opened_uncal.fits"
    with pytest.raises(ParamError) as ei:
        run_pipeline("calwebb_detector1", missing, {}, {"refpix": {"side_smoothing_length": -5}})
    e = ei.value
    assert (e.step, e.param, e.value) == ("refpix", "side_smoothing_length", -5)
    assert "refpix" in str(e) and "side_smoothing_length" in str(e) and "-5" in str(e)
    assert "[1, 2048]" in e.allowed
    for params, words in (({"jump": {"rejection_threshold": -1}}, ("jump", "rejection_threshold", ">= 0")),
                          ({"emicorr": {"algorithm": "magic"}}, ("algorithm", "'joint'")),
                          ({"ramp_fit": {"algorithm": "LIKELY"}}, ("LIKELY", "jwst engine")),
                          ({"jump": {"expand_large_events": "true"}}, ("expand_large_events", "jwst engine")),
                          ({"saturation": {"n_pix_grow_sat": "2.5"}}, ("n_pix_grow_sat", "integer")),
                          ({"persistence": {"skip": False}}, ("persistence", "not implemented")),
                          ({"nosuchstep": {}}, ("nosuchstep",)),
                          ({"jump": {"nosuchparam": 1}}, ("nosuchparam",))):
        with pytest.raises(ParamError) as ei:
            run_pipeline("calwebb_detector1", missing, {}, params)
        for w in words:
            assert w in str(ei.value), (params, str(ei.value))
    # ignored parameters (output options, core counts) are accepted
    ok = validate_params("calwebb_detector1", {"jump": {"maximum_cores": "half"}, "ramp_fit": {"save_opt": True}})
    assert ok["jump"]["maximum_cores"] == "half"
    with pytest.raises(ParamError, match="unknown or unsupported pipeline"):
        validate_params("calwebb_nonsense", {})


def test_skipped_step_reads_no_reference(nrc, tmp_path):
    missing = str(tmp_path / "absent_ipc.fits")
    # the ipc reference does not exist: with ipc skipped it is never opened
    res = run_pipeline("calwebb_detector1", nrc.uncal, dict(nrc.refs, ipc=missing), {"ipc": {"skip": True}})
    assert res.step_status["ipc"] == "SKIPPED" and "ipc" not in res.references_used
    with pytest.raises(ReferenceFileError, match="absent_ipc.fits"):
        run_pipeline("calwebb_detector1", nrc.uncal, dict(nrc.refs, ipc=missing))


def test_required_reftypes_follow_what_runs():
    nrc = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "EXP_TYPE": "NRC_IMAGE"}
    base = required_reftypes("calwebb_detector1", nrc)
    assert "ipc" in base and "superbias" in base and "emicorr" not in base
    assert "ipc" not in required_reftypes("calwebb_detector1", nrc, {"ipc": {"skip": True}})
    # superbias is read by saturation too: skipping superbias alone keeps it
    assert "superbias" in required_reftypes("calwebb_detector1", nrc, {"superbias": {"skip": "true"}})
    assert "superbias" not in required_reftypes("calwebb_detector1", nrc,
                                                {"superbias": {"skip": True}, "saturation": {"skip": True}})
    # refpix declares jwst's refpix and sirskernel reftypes, but the median algorithm reads neither
    assert not {"refpix", "sirskernel"} & set(base)
    miri = required_reftypes("calwebb_detector1", {"INSTRUME": "MIRI", "DETECTOR": "MIRIFULONG"})
    assert "superbias" not in miri and {"reset", "rscd"} <= set(miri)
    # reset and rscd apply to MIRI detectors only
    assert "reset" in miri


def test_na_reference_skips_its_step_and_others_run(nrc):
    res = run_pipeline("calwebb_detector1", nrc.uncal, dict(nrc.refs, dark="N/A", ipc=None))
    assert res.step_status["dark_current"] == "SKIPPED" and res.step_status["ipc"] == "SKIPPED"
    assert res.step_status["jump"] == "COMPLETE"
    assert res.products["rate"].meta.cal_step.dark_sub == "SKIPPED"
    with pytest.raises(ReferenceFileError, match="gain and readnoise"):
        run_pipeline("calwebb_detector1", nrc.uncal, {k: v for k, v in nrc.refs.items() if k != "gain"},
                     {"jump": {"skip": True}})


# ---------------------------------------------------------------------------- one module
def _cds(state, ctx) -> str:
    """A toy step: last group minus first group, per integration (DN)."""
    state.cds = (state.data[:, -1] - state.data[:, 0]).astype(np.float32)
    return "COMPLETE"


TOY_CDS = StepSpec(name="toy_cds", jwst_class="none", run=_cds,
                   params=(Param("mode", "option", "plain", choices=("plain", "fancy"),
                                 support=SUPPORT_DEFAULT_ONLY),))


@contextlib.contextmanager
def _open(path):
    with open_ramp(path) as state:
        state.cds = None
        yield state


def _finish(state, status):
    m = datamodels.CubeModel(data=state.cds, validate_on_assignment=False)
    m.update(state.model)
    return {"toycds": m}


TOY_MODULE = types.ModuleType("calib_toy_pipeline")
TOY_MODULE.PIPELINE = PipelineSpec(
    name="calwebb_toy", jwst_class="none", flavours=lambda keys: (dq_init.STEP, TOY_CDS),
    steps=(dq_init.STEP, TOY_CDS), products=(ProductSpec("toycds", "CubeModel"),), open=_open,
    finish=_finish, aliases=("ToyPipeline",))


def test_a_pipeline_is_one_module_plus_one_registry_line(nrc, monkeypatch):
    monkeypatch.setitem(sys.modules, "calib_toy_pipeline", TOY_MODULE)
    monkeypatch.setitem(REGISTRY, "calwebb_toy", "calib_toy_pipeline")      # the one line
    assert get_pipeline("ToyPipeline") is TOY_MODULE.PIPELINE
    assert required_reftypes("calwebb_toy", {"INSTRUME": "NIRCAM"}) == ["mask"]
    res = run_pipeline("calwebb_toy", nrc.uncal, nrc.refs)
    assert res.step_status == {"dq_init": "COMPLETE", "toy_cds": "COMPLETE"}
    cube = res.products["toycds"]
    with datamodels.open(nrc.uncal) as raw:
        expect = raw.data[:, -1].astype(np.float32) - raw.data[:, 0].astype(np.float32)
    np.testing.assert_array_equal(cube.data, expect)
    assert cube.meta.cal_step.dq_init == "COMPLETE"               # S_* stamped by the runner
    assert cube.meta.calibration_software_name == "calib"
    with pytest.raises(ParamError, match="fancy"):
        run_pipeline("calwebb_toy", nrc.uncal, nrc.refs, {"toy_cds": {"mode": "fancy"}})
    with pytest.raises(InputError):
        run_pipeline("calwebb_toy", nrc.uncal + ".missing", nrc.refs)


def test_a_product_carries_only_the_references_of_the_steps_that_made_it(tmp_path):
    """image3's i2d and crf are final before source_catalog reads APCORR/ABVEGAOFFSET: they carry
    R_FLAT (inherited provenance) but no R_APCORR; products made at the end carry every reference."""
    from calib.products import save_products
    from calib.runner import PipelineResult, unstamped_reftypes

    image3, image2, detector1 = (get_pipeline(n) for n in ("calwebb_image3", "calwebb_image2", "calwebb_detector1"))
    assert unstamped_reftypes(image3, "i2d") == {"apcorr", "abvegaoffset"}
    assert unstamped_reftypes(image3, "crf:jw01_nrca1_a3001") == {"apcorr", "abvegaoffset"}
    assert unstamped_reftypes(image2, "cal") == set()       # resample reads no reference
    assert unstamped_reftypes(detector1, "rate") == set()

    provenance = {"crds_context": "jwst_0541.pmap", "crds_version": "13.0.4", "cal_version": "0",
                  "references": {"flat": "jwst_nircam_flat_0001.fits", "apcorr": "jwst_nircam_apcorr_0004.fits"}}
    result = PipelineResult(products={"i2d": datamodels.ImageModel(np.ones((8, 8), np.float32))},
                            pipeline="calwebb_image3")
    files = save_products(result, tmp_path, "jw01_a3001_nircam_f200w", provenance)
    with datamodels.open(files["i2d"]) as m:
        assert m.meta.ref_file.flat.name == "crds://jwst_nircam_flat_0001.fits"
    assert "R_APCORR" not in fits.getheader(files["i2d"])
    # outside a registered pipeline nothing is filtered: a reftype the product cannot record is an error
    orphan = PipelineResult(products={"i2d": datamodels.ImageModel(np.ones((8, 8), np.float32))})
    with pytest.raises(ValueError, match="apcorr"):
        save_products(orphan, tmp_path / "other", "x", provenance)
    assert not list((tmp_path / "other").glob("*.fits"))


# ---------------------------------------------------------------------------- per-member products, spilled arrays
def test_a_step_hands_over_per_member_products_as_soon_as_they_are_final():
    """``state.write_product`` during a step: written at once, S_* of the steps so far (the running
    one COMPLETE) stamped, not returned again in ``products``; ``after_step`` follows every step run."""
    seen = []

    def sky(state, ctx):
        return "COMPLETE"

    def flag(state, ctx):
        for name, m in state.members.items():
            m.meta.cal_step.outlier_detection = "COMPLETE"
            if hasattr(state, "write_product"):
                seen.append((name, state.write_product(f"crf:{name}", m)))
        return "COMPLETE"

    def mosaic(state, ctx):
        state.i2d = datamodels.ImageModel(np.zeros((4, 4), np.float32))
        return "COMPLETE"

    steps = tuple(StepSpec(name=n, jwst_class="none", run=f)
                  for n, f in (("skymatch", sky), ("outlier_detection", flag), ("resample", mosaic)))

    @contextlib.contextmanager
    def open_members(path):
        yield types.SimpleNamespace(
            path=path, keys=ExposureKeys("NIRCAM", "NRCA1", "NRC_IMAGE", "", "FULL"), i2d=None,
            info=types.SimpleNamespace(instrument="NIRCAM", xstart=1, ystart=1, xsize=4, ysize=4),
            members={n: datamodels.ImageModel(np.full((4, 4), k, np.float32)) for k, n in enumerate("ab")})

    def finish(state, status):
        out = {f"crf:{n}": m for n, m in state.members.items()}
        if state.i2d is not None:
            out["i2d"] = state.i2d
        return out

    after = []
    spec = PipelineSpec(name="calwebb_toy3", jwst_class="none", flavours=lambda keys: steps, steps=steps,
                        products=(ProductSpec("crf", "ImageModel", made_before="resample", write_early=True),
                                  ProductSpec("i2d", "ImageModel")),
                        open=open_members, finish=finish, after_step=lambda state, name: after.append(name))
    written = {}

    def write(suffix, model):
        written[suffix] = (model.meta.cal_step.skymatch, model.meta.cal_step.outlier_detection,
                           model.meta.cal_step.resample, float(model.data[0, 0]))
        return f"/out/{suffix}"

    res = run(spec, "toy_asn.json", {}, write=write)
    assert seen == [("a", "/out/crf:a"), ("b", "/out/crf:b")]
    assert written == {"crf:a": ("COMPLETE", "COMPLETE", None, 0.0), "crf:b": ("COMPLETE", "COMPLETE", None, 1.0)}
    assert res.written == {"crf:a": "/out/crf:a", "crf:b": "/out/crf:b"}
    assert list(res.products) == ["i2d"]
    assert after == ["skymatch", "outlier_detection", "resample"]
    # without a writer the state has no write_product and every product is returned
    seen.clear()
    res = run(spec, "toy_asn.json", {})
    assert seen == [] and res.written == {} and list(res.products) == ["crf:a", "crf:b", "i2d"]
    assert res.products["crf:a"].meta.cal_step.outlier_detection == "COMPLETE"


def test_spilled_arrays_keep_their_values_and_changes():
    from calib.spill import ArraySpill

    rng = np.random.default_rng(1)
    sci = rng.normal(size=(600, 500)).astype(np.float32)
    dq = rng.integers(0, 4, size=(600, 500)).astype(np.uint32)
    m = datamodels.ImageModel(data=sci.copy(), dq=dq.copy())
    m.meta.wcs = None
    with ArraySpill(min_bytes=1 << 16) as spill:
        assert spill.release(m) == sci.nbytes + dq.nbytes
        assert isinstance(m.data, np.memmap) and isinstance(m.dq, np.memmap)
        np.testing.assert_array_equal(m.data, sci)
        np.testing.assert_array_equal(m.dq, dq)
        assert m.data.dtype == np.float32 and m.dq.dtype == np.uint32 and m.data.shape == sci.shape
        m.data[10, 20] = np.nan                   # a step changes a value: the file keeps it
        m.dq |= 1
        first = m.data
        spill.release(m)
        assert m.data is not first               # a fresh view of the same file
        assert np.isnan(m.data[10, 20]) and np.all(m.dq & 1)
        sci[10, 20] = np.nan
        np.testing.assert_array_equal(m.data, sci)
        m.data = np.ones((600, 500), np.float32)  # a step replaces an array: spilled anew
        spill.release(m)
        assert isinstance(m.data, np.memmap) and np.all(m.data == 1)
        small = datamodels.ImageModel(data=np.zeros((8, 8), np.float32))
        assert spill.release(small) == 0 and not isinstance(small.data, np.memmap)
    # the files are gone; views made before stay valid
    assert np.all(m.data == 1) and np.all(m.dq & 1)
