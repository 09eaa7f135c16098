"""The declared steps and pipelines of calib against the installed jwst package.

Each registered pipeline names its jwst Pipeline class and each declared step its jwst
Step class; here jwst's own classes are read at test time, so a jwst release that changes a
step's reference types, parameters, defaults, skip default, status keyword or order fails
this test instead of drifting silently.
"""
from __future__ import annotations

import importlib
import inspect
import re

import pytest
from stdatamodels.jwst import datamodels
from stpipe import config_parser

from calib.params import SUPPORT_DEFAULT_ONLY
from calib.pipelines import REGISTRY, get_pipeline
from calib.step import ExposureKeys

#: parameters every jwst Step has (stpipe's), not step-specific
GENERIC = {"pre_hooks", "post_hooks", "output_file", "output_dir", "output_ext", "output_use_model",
           "output_use_index", "save_results", "skip", "suffix", "search_output_file", "input_dir"}
#: configobj spec function -> our Param.type
_SPEC_TYPE = {"boolean": "boolean", "integer": "integer", "int": "integer", "float": "float",
              "string": "string", "option": "option", "float_list": "float_list", "int_list": "int_list",
              "string_list": "string_list", "output_file": "string"}


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _jwst_pipeline(spec):
    cls = _import(spec.jwst_class)
    assert cls.class_alias == spec.name, (cls.class_alias, spec.name)
    return cls


PIPELINES = sorted(REGISTRY)


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
        source = inspect.getsource(inspect.getmodule(jcls.step_defs[step.name]))
        assert f"cal_step.{step.cal_step}" in source, f"{step.name}: jwst does not set cal_step.{step.cal_step}"


def _jwst_order(jcls, instrument: str, input_model: str) -> list[str]:
    """The steps jwst's process() runs, in order, for an instrument (each step's run replaced
    by a recorder that returns its input)."""
    p = jcls()
    calls: list[str] = []
    for step_name in p.step_defs:
        def fake(data, _n=step_name):
            calls.append(_n)
            return (data, None) if _n == "ramp_fit" else data
        object.__setattr__(getattr(p, step_name), "run", fake)
    model = getattr(datamodels, input_model)((1, 2, 8, 8))
    model.meta.instrument.name = instrument
    p.process(model)
    return calls


@pytest.mark.parametrize("name", PIPELINES)
def test_step_order_per_instrument_matches_jwst(name):
    spec = get_pipeline(name)
    jcls = _jwst_pipeline(spec)
    assert spec.instruments
    for inst in spec.instruments:
        ours = [s.name for s in spec.flavours(ExposureKeys(inst))]
        assert ours == _jwst_order(jcls, inst, spec.input_model), inst
