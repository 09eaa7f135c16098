"""The declared steps and pipelines of calib against the installed jwst package.

Each registered pipeline names its jwst Pipeline class and each declared step its jwst
Step class; here jwst's own classes are read at test time, so a jwst release that changes a
step's reference types, parameters, defaults, skip default, status keyword or order fails
this test instead of drifting silently.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import pathlib
import re

import pytest
from stdatamodels.jwst import datamodels
from stpipe import config_parser

from calib.params import SUPPORT_DEFAULT_ONLY
from calib.pipelines import REGISTRY
from calib.pipelines import get_pipeline as _get_registered
from calib.step import ExposureKeys

#: parameters every jwst Step has (stpipe's), not step-specific
GENERIC = {"pre_hooks", "post_hooks", "output_file", "output_dir", "output_ext", "output_use_model",
           "output_use_index", "save_results", "skip", "suffix", "search_output_file", "input_dir"}
#: configobj spec function -> our Param.type
_SPEC_TYPE = {"boolean": "boolean", "integer": "integer", "int": "integer", "float": "float",
              "string": "string", "option": "option", "float_list": "float_list", "int_list": "int_list",
              "string_list": "string_list", "output_file": "string",
              "force_list": "string_list"}


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _jwst_pipeline(spec):
    cls = _import(spec.jwst_class)
    assert cls.class_alias == spec.name, (cls.class_alias, spec.name)
    return cls


#: pipelines declared in calib but not registered yet (the jwst engine still runs them):
#: their declarations are held against jwst all the same
DECLARED: dict[str, str] = {}
PIPELINES = sorted(set(REGISTRY) | set(DECLARED))


def get_pipeline(name):
    """The registered pipeline, or a declared one not registered yet."""
    if name in REGISTRY:
        return _get_registered(name)
    return importlib.import_module(DECLARED[name]).PIPELINE


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_declares_every_jwst_step(name):
    spec = get_pipeline(name)
    jcls = _jwst_pipeline(spec)
    assert {s.name for s in spec.steps} == set(jcls.step_defs), "steps differ from jwst's"
    for step in spec.steps:
        assert _import(step.jwst_class) is jcls.step_defs[step.name], step.name


@pytest.mark.parametrize("name", PIPELINES)
def test_step_reftypes_parameters_and_defaults_match_jwst(name):
    spec = get_pipeline(name)
    jcls = _jwst_pipeline(spec)
    pipeline_pars = jcls().get_pars()["steps"]       # defaults as the pipeline sets them
    for step in spec.steps:
        jstep = jcls.step_defs[step.name]
        assert step.reftypes == tuple(jstep.reference_file_types), f"{step.name}: reftypes"
        jpars = pipeline_pars[step.name]
        assert step.skip_default == jpars["skip"], f"{step.name}: skip default"
        jspec = config_parser.load_spec_file(jstep) or {}   # None: no spec of its own (guider_cds)
        jnames = [k for k in jspec if k not in GENERIC]
        assert [p.name for p in step.params] == jnames, f"{step.name}: parameters"
        for p in step.params:
            assert p.default == jpars[p.name], f"{step.name}.{p.name}: default {p.default!r} vs {jpars[p.name]!r}"
            func = re.match(r"\s*(\w+)\(", jspec[p.name]).group(1)
            assert p.type == _SPEC_TYPE[func], f"{step.name}.{p.name}: type {p.type} vs {func}"
            if p.type == "option":
                choices = tuple(eval(f"_choices({jspec[p.name][len('option('):]}",
                                     {"_choices": lambda *a, **k: a}))
                assert tuple(p.choices) == choices, f"{step.name}.{p.name}: choices"
            if p.support == SUPPORT_DEFAULT_ONLY:
                p.coerce(step.name, p.default)      # the default itself is accepted


@pytest.mark.parametrize("name", PIPELINES)
def test_status_keywords_are_the_ones_jwst_sets(name):
    spec = get_pipeline(name)
    jcls = _jwst_pipeline(spec)
    schema_attrs = set(datamodels.ImageModel().meta.cal_step._schema["properties"])
    for step in spec.steps:
        assert step.cal_step in schema_attrs, f"{step.name}: no meta.cal_step.{step.cal_step} in the schema"
        # the step's package (resample sets it in resample.py, not in resample_step.py)
        package = pathlib.Path(inspect.getfile(jcls.step_defs[step.name])).parent
        source = "".join(p.read_text() for p in package.glob("*.py"))
        # stage-3 steps set it through jwst's record_step_status(models, "<attr>", ...)
        source = re.sub(r'record_step_status\(\w+, "(\w+)"', r"cal_step.\1", source)
        if step.name == "source_catalog":     # jwst records no status for it (its own test asserts None)
            continue
        assert f"cal_step.{step.cal_step}" in source, f"{step.name}: jwst does not set cal_step.{step.cal_step}"


def _jwst_order(jcls, instrument: str, input_model: str, tmp_path) -> list[str]:
    """The steps jwst's process() runs, in order, for an instrument (each step's run replaced
    by a recorder that returns its input). Stage-2 imaging gets a Level-2 association with a
    background member, so that its background step is called too."""
    p = jcls()
    calls: list[str] = []
    for step_name in p.step_defs:
        def fake(data, *rest, _n=step_name):
            calls.append(_n)
            return (data, None) if _n == "ramp_fit" else data
        object.__setattr__(getattr(p, step_name), "run", fake)
    if input_model != "ImageModel":
        model = getattr(datamodels, input_model)((1, 2, 8, 8))
        model.meta.instrument.name = instrument
        p.process(model)
        return calls
    names = []
    for kind in ("science", "background"):
        model = datamodels.ImageModel((8, 8))
        model.meta.instrument.name = instrument
        model.meta.exposure.type = {"NIRCAM": "NRC_IMAGE", "NIRISS": "NIS_IMAGE", "MIRI": "MIR_IMAGE",
                                    "FGS": "FGS_IMAGE", "NIRSPEC": "NRS_IMAGE"}[instrument]
        names.append(f"{instrument.lower()}_{kind}_rate.fits")
        model.save(tmp_path / names[-1])
    asn = {"asn_type": "image2", "asn_pool": "test", "asn_id": "a3001", "products": [
        {"name": "test", "members": [{"expname": names[0], "exptype": "science"},
                                     {"expname": names[1], "exptype": "background"}]}]}
    path = tmp_path / f"{instrument.lower()}_asn.json"
    path.write_text(json.dumps(asn))
    cwd = os.getcwd()
    os.chdir(tmp_path)                      # jwst resolves member names from the working directory
    try:
        p.process(str(path))
    finally:
        os.chdir(cwd)
    return calls


# calwebb_image3 is left out: jwst's Image3Pipeline runs assign_mtwcs or tweakreg depending on
# the target (moving or not), so one order per instrument does not exist; its order is held by
# test_pipeline_declares_every_jwst_step and tests/test_calib_image3_parity.py
@pytest.mark.parametrize("name", [p for p in PIPELINES if p != "calwebb_image3"])
def test_step_order_per_instrument_matches_jwst(name, tmp_path):
    spec = get_pipeline(name)
    jcls = _jwst_pipeline(spec)
    assert spec.instruments
    for inst in spec.instruments:
        ours = [s.name for s in spec.flavours(ExposureKeys(inst))]
        assert ours == _jwst_order(jcls, inst, spec.input_model, tmp_path), inst
