"""calwebb_detector1: raw ramps (``_uncal``) to slopes (``_rate``, ``_rateints``).

This project's own engine for the jwst ``Detector1Pipeline`` (jwst documentation
"calwebb_detector1"): the steps run in jwst order on plain arrays (calib.steps), the
pipeline resolves parameters and references once and records every step's status.

Implemented (COMPLETE when their reference is given): group_scale, dq_init, saturation,
ipc, superbias, refpix, linearity, dark_current, charge_migration (off by default, as in
jwst), jump, ramp_fit, gain_scale, and for MIRI emicorr (off by default, as in jwst 3.0),
firstframe (off by default, as in jwst 3.0), lastframe, reset and rscd (run when their
references are given: the real jwst_0541 context has RESET N/A for MIRI, so reset is
SKIPPED there, as in jwst); MIRI refpix for full frame (SKIPPED for MIRI subarrays, as
jwst). Always recorded SKIPPED: persistence, picture_frame and clean_flicker_noise (off
by default in jwst 3.0 for the modes this engine runs).
"""
from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from stdatamodels.jwst import datamodels

from calib import __version__
from calib.errors import InputError, ReferenceFileError
from calib.reffiles import (REFERENCE_CACHE, ExposureInfo, file_key, open_reference,
                            ref_array, subarray_of)
from calib.steps import (dark_current as _dark, dq_init as _dqi, firstframe as _ff,
                         charge_migration as _cm, gain_scale as _gs, group_scale as _grs,
                         ipc as _ipc, jump as _jump,
                         linearity as _lin, ramp_fit as _rf, refpix as _rp,
                         reset as _reset, rscd as _rscd, saturation as _sat,
                         superbias as _sb)

__all__ = ["NIR_STEPS", "MIRI_STEPS", "STEP_REFTYPES", "NIR_INSTRUMENTS", "steps_for", "reftypes_for",
           "Detector1Result", "run_detector1", "validate_params", "STEP_PARAMETERS",
           "CAL_STEP_ATTR", "release_unreachable"]

# the order of jwst 3.0's Detector1Pipeline.process (persistence now runs after jump)
NIR_STEPS: tuple[str, ...] = (
    "group_scale", "dq_init", "saturation", "ipc", "superbias", "refpix", "linearity",
    "dark_current", "charge_migration", "jump", "picture_frame", "clean_flicker_noise",
    "persistence", "ramp_fit", "gain_scale",
)
MIRI_STEPS: tuple[str, ...] = (
    "group_scale", "dq_init", "emicorr", "saturation", "ipc", "firstframe", "lastframe", "reset",
    "linearity", "rscd", "dark_current", "refpix", "charge_migration", "jump", "picture_frame",
    "clean_flicker_noise", "persistence", "ramp_fit", "gain_scale",
)
NIR_INSTRUMENTS = ("NIRCAM", "NIRISS", "NIRSPEC", "FGS")

#: step -> {parameter: default}; jwst names. Every step also accepts ``skip``.
STEP_PARAMETERS: dict[str, dict[str, object]] = {
    "group_scale": {},
    "dq_init": {},
    "emicorr": {"algorithm": "joint", "nints_to_phase": None, "nbins": None,
                "scale_reference": True, "use_n_cycles": 3, "fit_ints_separately": False},
    "saturation": {"n_pix_grow_sat": 1, "use_readpatt": True},
    "firstframe": {},
    "lastframe": {},
    "reset": {},
    "ipc": {},
    "superbias": {},
    "refpix": {"odd_even_columns": True, "use_side_ref_pixels": True,
               "side_smoothing_length": 11, "side_gain": 1.0, "odd_even_rows": True,
               "siglimit": 3.0},
    "linearity": {},
    "rscd": {},
    "persistence": {},
    "picture_frame": {},
    "clean_flicker_noise": {},
    "dark_current": {"average_dark_current": None},
    "charge_migration": {"signal_threshold": 25000.0},
    "jump": {"rejection_threshold": 4.0, "three_group_rejection_threshold": 6.0,
             "four_group_rejection_threshold": 5.0, "flag_4_neighbors": True,
             "max_jump_to_flag_neighbors": 1000.0, "min_jump_to_flag_neighbors": 10.0,
             "min_diffs_single_pass": 10, "minimum_groups": 3, "minimum_sigclip_groups": 100,
             "only_use_ints": True},
    "ramp_fit": {"suppress_one_group": True},
    "gain_scale": {},
}

# steps this engine does not implement; always recorded SKIPPED
_NOT_IMPLEMENTED = {"persistence", "picture_frame", "clean_flicker_noise"}
# jwst 3.0 defaults skip=True (firstframe is deprecated there: the rscd step flags the
# initial MIRI groups instead); enable with {"firstframe": {"skip": False}}
_SKIPPED_BY_DEFAULT = {"persistence", "charge_migration", "firstframe", "emicorr",
                       "picture_frame", "clean_flicker_noise"}

_STEP_REFTYPES = {
    "dq_init": ["mask"],
    "emicorr": ["emicorr"],
    "saturation": ["saturation"],
    "ipc": ["ipc"],
    "superbias": ["superbias"],
    "reset": ["reset"],
    "linearity": ["linearity"],
    "rscd": ["rscd"],
    "dark_current": ["dark"],
    "jump": ["gain", "readnoise"],
    "ramp_fit": ["gain", "readnoise"],
    "gain_scale": ["gain"],
}
#: step name -> the CRDS reftypes it reads (public: the archive finds the first step a
#: changed reference affects)
STEP_REFTYPES = _STEP_REFTYPES


def steps_for(instrument: str) -> tuple[str, ...]:
    """The calwebb_detector1 step names, in jwst order, for INSTRUME ``instrument``.

    Raises ``InputError`` for an unknown instrument.
    """
    inst = str(instrument).upper()
    if inst == "MIRI":
        return MIRI_STEPS
    if inst in NIR_INSTRUMENTS:
        return NIR_STEPS
    raise InputError(f"unknown instrument {instrument!r} for calwebb_detector1")


def reftypes_for(instrument: str, exp_type: str) -> list[str]:
    """CRDS reftypes (lower case) this engine reads for the exposure, in first-use order.

    e.g. ``["mask", "saturation", "ipc", "superbias", "linearity", "dark", "gain",
    "readnoise"]`` for NIR; MIRI has no superbias and adds emicorr, reset and rscd.
    ``exp_type`` is accepted for interface stability (all detector1 exposure types use the
    same set here).
    """
    out: list[str] = []
    for step in steps_for(instrument):
        if str(instrument).upper() == "MIRI" and step == "superbias":
            continue
        for rt in _STEP_REFTYPES.get(step, []):
            if rt not in out:
                out.append(rt)
    return out


@dataclass
class Detector1Result:
    """Output of :func:`run_detector1`."""

    rate: "datamodels.ImageModel"
    rateints: "datamodels.CubeModel | None"
    step_status: dict[str, str] = field(default_factory=dict)
    references_used: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
#: (step, parameter) pairs whose jwst value may also be None although the default is not
_NULLABLE = {("emicorr", "use_n_cycles")}


def _coerce(step: str, name: str, value, default):
    """Check/convert one parameter value against the type of its default (strings as given
    on a command line, ``--steps.jump.rejection_threshold=5``, are converted)."""
    where = f"parameter {name!r} of step {step!r}"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{where} must be a boolean, got {value!r}")
    if isinstance(default, int) or isinstance(default, float) or default is None:
        is_none = value is None or (isinstance(value, str) and value.strip().lower() == "none")
        if is_none and (default is None or (step, name) in _NULLABLE):
            return None
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, got {value!r}")
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
        if not np.isfinite(num):
            raise ValueError(f"{where} must be finite, got {value!r}")
        if isinstance(default, int):
            if num != int(num):
                raise ValueError(f"{where} must be an integer, got {value!r}")
            return int(num)
        return num
    return value


def validate_params(params: dict | None) -> dict[str, dict]:
    """Check pipeline parameters and return the complete resolved set.

    params: {step: {parameter: value}} with jwst step and parameter names (``skip`` is
    accepted for every step). Values are checked against the parameter's type and strings
    are converted ("5", "true"). Returns {step: {parameter: value}} for every step of
    both detector1 flavours, defaults filled in.
    Raises ValueError naming the offending step or parameter: unknown step, unknown
    parameter, wrong type, ``ramp_fit`` skipped, or skip=False for a step this engine does
    not implement (persistence, picture_frame, clean_flicker_noise).
    """
    resolved = {s: dict(p, skip=(s in _SKIPPED_BY_DEFAULT or s in _NOT_IMPLEMENTED))
                for s, p in STEP_PARAMETERS.items()}
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of steps, got {type(params).__name__}")
    for step, values in params.items():
        if step not in STEP_PARAMETERS:
            raise ValueError(f"unknown calwebb_detector1 step {step!r} in params")
        if not isinstance(values, dict):
            raise ValueError(f"params for step {step!r} must be a dict, got {type(values).__name__}")
        for name, value in values.items():
            if name == "skip":
                resolved[step]["skip"] = _coerce(step, name, value, False)
                continue
            if name not in STEP_PARAMETERS[step]:
                raise ValueError(f"unknown parameter {name!r} for step {step!r}")
            resolved[step][name] = _coerce(step, name, value, STEP_PARAMETERS[step][name])
    if resolved["ramp_fit"]["skip"]:
        raise ValueError("step 'ramp_fit' cannot be skipped: it makes the rate products")
    for step in sorted(_NOT_IMPLEMENTED):
        if resolved[step]["skip"] is False:
            raise ValueError(f"step {step!r} is not implemented by the calib engine "
                             "(requested skip=False); use the jwst engine for this mode")
    return resolved


def _exposure_info(model, path: str) -> ExposureInfo:
    meta = model.meta
    data = model.data
    if data is None or np.ndim(data) != 4:
        raise InputError(f"{path}: SCI must be 4-D (nints, ngroups, ny, nx), got shape "
                         f"{None if data is None else np.shape(data)}")
    nints, ngroups, ny, nx = data.shape
    if nints < 1 or ngroups < 1:
        raise InputError(f"{path}: SCI has no integrations or groups (shape {data.shape})")
    inst = meta.instrument.name
    if not inst:
        raise InputError(f"{path}: missing INSTRUME")
    inst = str(inst).upper()
    if inst not in NIR_INSTRUMENTS and inst != "MIRI":
        raise InputError(f"{path}: unsupported instrument {inst!r}")
    ex = meta.exposure
    required = {"NFRAMES": ex.nframes, "GROUPGAP": ex.groupgap, "TGROUP": ex.group_time,
                "TFRAME": ex.frame_time}
    missing = [k for k, v in required.items() if v is None]
    if missing:
        raise InputError(f"{path}: missing keyword(s) {', '.join(missing)}")
    if int(ex.nframes) < 1 or not (float(ex.group_time) > 0):
        raise InputError(f"{path}: invalid NFRAMES={ex.nframes} or TGROUP={ex.group_time}")
    sub = meta.subarray
    xstart = int(sub.xstart) if sub.xstart is not None else 1
    ystart = int(sub.ystart) if sub.ystart is not None else 1
    xsize = int(sub.xsize) if sub.xsize is not None else nx
    ysize = int(sub.ysize) if sub.ysize is not None else ny
    if (ysize, xsize) != (ny, nx):
        raise InputError(f"{path}: SUBSIZE1/2 = {xsize},{ysize} disagree with SCI shape {(ny, nx)}")
    readpatt = str(ex.readpatt or "")
    if "IRS2" in readpatt.upper():
        raise InputError(f"{path}: NIRSpec IRS2 readout ({readpatt}) is not supported by the "
                         "calib engine")
    return ExposureInfo(
        path=path, instrument=inst, detector=str(meta.instrument.detector or ""),
        exp_type=str(ex.type or ""), nints=nints, ngroups=ngroups, nframes=int(ex.nframes),
        groupgap=int(ex.groupgap), frame_divisor=(None if ex.frame_divisor is None
                                                  else int(ex.frame_divisor)),
        group_time=float(ex.group_time), frame_time=float(ex.frame_time),
        xstart=xstart, ystart=ystart, xsize=xsize, ysize=ysize,
        fastaxis=int(sub.fastaxis) if sub.fastaxis is not None else 1,
        slowaxis=int(sub.slowaxis) if sub.slowaxis is not None else 2,
        noutputs=None if ex.noutputs is None else int(ex.noutputs),
        subarray=str(sub.name or ""), readpatt=readpatt,
        integration_start=(1 if ex.integration_start is None else int(ex.integration_start)),
    )


def _ref_path(references: dict, reftype: str) -> str | None:
    p = references.get(reftype)
    if p is None:
        return None
    p = os.fspath(p)
    if p.strip().upper() in ("N/A", ""):
        return None
    return p


def run_detector1(uncal_path: str | os.PathLike, references: dict[str, str | None],
                  params: dict[str, dict] | None = None) -> Detector1Result:
    """Run calwebb_detector1 on one ``_uncal.fits`` exposure.

    uncal_path: a Level1b file, SCI uint16 (nints, ngroups, ny, nx) DN.
    references: reftype -> local path (None or "N/A": not applicable -> steps needing it
    SKIPPED; jump and ramp_fit need gain and readnoise).
    params: {step: {jwst parameter name: value}}, e.g. {"jump": {"rejection_threshold": 5}},
    {"refpix": {"skip": True}}. Any step of either detector1 flavour may be named (those
    not in this instrument's pipeline are ignored, as jwst ignores them); requesting
    skip=False for a step this engine does not implement (persistence, picture_frame,
    clean_flicker_noise) raises ValueError rather than silently skipping it.

    Returns a Detector1Result: rate ImageModel (SCI DN/s, ERR, DQ, VAR_POISSON,
    VAR_RNOISE; float32, DQ uint32), rateints CubeModel (None when NINTS == 1), the status
    of every step, the reference paths read and per-step wall times (s).
    Raises ValueError for an unknown step or parameter, InputError for unusable input,
    ReferenceFileError for an unusable reference (naming file and step).
    """
    path = os.fspath(uncal_path)
    cfg = validate_params(params)
    references = dict(references or {})
    try:
        model = datamodels.open(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot open as a JWST datamodel: {exc}") from exc
    with model:
        if not isinstance(model, (datamodels.Level1bModel, datamodels.RampModel)):
            raise InputError(f"{path}: expected a Level1b (uncal) or Ramp model, got "
                             f"{type(model).__name__}")
        info = _exposure_info(model, path)
        steps = steps_for(info.instrument)
        raw = model.data
        data = np.array(raw, dtype=np.float32)
        if np.asarray(raw).dtype.kind == "f" and not np.isfinite(data).all():  # ints are finite
            raise InputError(f"{path}: SCI contains non-finite values")
        gdq = np.zeros(data.shape, np.uint8)
        pdq = np.zeros(data.shape[-2:], np.uint32)
        if isinstance(model, datamodels.RampModel):
            if model.groupdq is not None and model.groupdq.shape == data.shape:
                gdq |= np.asarray(model.groupdq, np.uint8)
            if model.pixeldq is not None and model.pixeldq.shape == pdq.shape:
                pdq |= np.asarray(model.pixeldq, np.uint32)
        # the raw SCI is not needed after conversion: drop it now (half the size of the
        # float32 ramp) rather than when the model closes. Both the model and the HDU
        # list datamodels.open read it with refer to the array.
        from astropy.io import fits

        del raw
        try:
            del model.data
        except Exception:  # noqa: BLE001 - only a memory saving
            pass
        for file_ref in getattr(model, "_file_references", ()):
            hdul = getattr(file_ref, "_file", None)
            for hdu in (hdul if isinstance(hdul, fits.HDUList) else ()):
                if hdu.name == "SCI" and "data" in vars(hdu):
                    del hdu.data
        status: dict[str, str] = {}
        used: dict[str, str] = {}
        timings: dict[str, float] = {}
        cache: dict[str, object] = {}
        window = (info.xstart, info.ystart, info.xsize, info.ysize)

        def ref(reftype, step):
            p = _ref_path(references, reftype)
            if p is None:
                return None, None
            if reftype not in cache:
                cache[reftype] = open_reference(p, reftype, step, info.instrument)
            used[reftype] = p
            return cache[reftype], p

        def prepared(reftype, step, what, compute):
            """compute(model, path) through REFERENCE_CACHE (None: reference not given)."""
            p = _ref_path(references, reftype)
            if p is None:
                return None
            fk = file_key(p)
            if fk is None:               # not a local file: open it (raises
                m, _ = ref(reftype, step)  # ReferenceFileError naming file and step)
                return compute(m, p)
            used[reftype] = p
            key = (*fk, reftype, info.instrument, window, *what)

            def load():
                out = compute(ref(reftype, step)[0], p)
                # prepared values are kept by REFERENCE_CACHE: release the file's arrays now
                # (a later miss for another value of the same file opens it again); without
                # the cache only the big ones, read by one step, are released
                if reftype in cache and (REFERENCE_CACHE.max_bytes > 0
                                         or reftype in _BIG_REFTYPES):
                    cache.pop(reftype).close()
                return out
            return REFERENCE_CACHE.get(key, load)

        rate = ints = None
        _KERNEL_LOCK.acquire()
        try:
            for step in steps:
                t0 = time.perf_counter()
                c = cfg[step]
                if c["skip"] or step in _NOT_IMPLEMENTED:
                    status[step] = "SKIPPED"
                elif step == "group_scale":
                    data, status[step] = _grs.group_scale(data, info.nframes, info.frame_divisor)
                elif step == "dq_init":
                    mask = prepared("mask", step, ("dq",), lambda m, p: ref_array(
                        m, "dq", info, p, step, dtype=np.uint32))
                    if mask is None:
                        status[step] = "SKIPPED"
                    else:
                        gdq, pdq, status[step] = _dqi.dq_init(gdq, pdq, mask)
                elif step == "emicorr":
                    from calib.steps import emicorr as _emi   # MIRI only, off by default
                    ex = model.meta.exposure
                    emi_key = (info.subarray, str(ex.readpatt or "").upper(), info.detector)
                    sel = prepared("emicorr", step, ("select", *emi_key), lambda m, p:
                                   _emi.select_frequencies(m, *emi_key, path=p, step=step))
                    alg = str(c["algorithm"]).lower()
                    if alg not in _emi.ALGORITHMS:
                        raise ValueError(f"parameter 'algorithm' of step 'emicorr' must be one "
                                         f"of {_emi.ALGORITHMS}, got {c['algorithm']!r}")
                    data, status[step] = _emi.emicorr(
                        data, pdq, sel, readpatt=str(ex.readpatt or ""),
                        nsamples=None if ex.nsamples is None else int(ex.nsamples),
                        xstart=info.xstart, xsize=info.xsize, algorithm=alg,
                        nints_to_phase=(None if c["nints_to_phase"] is None
                                        else int(c["nints_to_phase"])),
                        nbins=None if c["nbins"] is None else int(c["nbins"]),
                        scale_reference=bool(c["scale_reference"]),
                        use_n_cycles=(None if c["use_n_cycles"] is None
                                      else int(c["use_n_cycles"])),
                        fit_ints_separately=bool(c["fit_ints_separately"]), path=path)
                elif step == "saturation":
                    sat = prepared("saturation", step, ("threshold",), lambda m, p:
                                   _sat.prepare_threshold(
                                       ref_array(m, "data", info, p, step, dtype=np.float32),
                                       ref_array(m, "dq", info, p, step, dtype=np.uint32)))
                    if sat is None:
                        status[step] = "SKIPPED"
                    else:
                        bias = None
                        if not info.is_miri:
                            bias = prepared("superbias", step, ("data",), lambda m, p: ref_array(
                                m, "data", info, p, step, dtype=np.float32))
                        gdq, pdq, status[step] = _sat.saturation(
                            data, gdq, pdq, None, None, info.nframes, bias=bias,
                            n_pix_grow_sat=int(c["n_pix_grow_sat"]),
                            use_readpatt=bool(c["use_readpatt"]), prepared=sat)
                elif step == "ipc":
                    def ipc_kernel(m, p):
                        k = np.asarray(m.data) if m.data is not None else None
                        if k is None or k.ndim not in (2, 4) or k.size == 0:
                            raise ReferenceFileError(f"{step}: reference file {p!r} SCI must be a "
                                                     "2-D or 4-D IPC kernel")
                        if k.ndim == 4:
                            k = ref_array(m, "data", info, p, step, dtype=np.float32)
                        if not np.isfinite(k).all():
                            raise ReferenceFileError(f"{step}: reference file {p!r} has NaN in SCI")
                        return np.array(k, dtype=np.float32)

                    k = prepared("ipc", step, ("kernel",), ipc_kernel)
                    if k is None:
                        status[step] = "SKIPPED"
                    else:
                        data, status[step] = _ipc.ipc(data, k, info)
                elif step == "superbias":
                    b = prepared("superbias", step, ("data",), lambda m, p: ref_array(
                        m, "data", info, p, step, dtype=np.float32))
                    if b is None:
                        status[step] = "SKIPPED"
                    else:
                        bdq = prepared("superbias", step, ("dq",), lambda m, p: ref_array(
                            m, "dq", info, p, step, dtype=np.uint32))
                        data, pdq, status[step] = _sb.superbias(data, pdq, b, bdq)
                elif step == "refpix" and info.is_miri:
                    data, status[step] = _rp.refpix_miri(
                        data, pdq, info, odd_even_rows=bool(c["odd_even_rows"]),
                        siglimit=float(c["siglimit"]))
                elif step == "refpix":
                    data, status[step] = _rp.refpix(
                        data, pdq, info, odd_even_columns=bool(c["odd_even_columns"]),
                        use_side_ref_pixels=bool(c["use_side_ref_pixels"]),
                        side_smoothing_length=int(c["side_smoothing_length"]),
                        side_gain=float(c["side_gain"]), siglimit=float(c["siglimit"]))
                elif step == "reset":
                    def reset_prep(m, p):
                        table = subarray_of(np.asarray(m.data) if m.data is not None else None,
                                            m, info, p, step, "SCI")
                        rdq = ref_array(m, "dq", info, p, step, dtype=np.uint32)
                        return _reset.prepare_reset(table, rdq, m.meta.exposure.nints,
                                                    m.meta.exposure.ngroups, p)

                    rst = prepared("reset", step, ("table",), reset_prep)
                    if rst is None or not info.detector.upper().startswith("MIR"):
                        status[step] = "SKIPPED"
                    else:
                        data, pdq, status[step] = _reset.reset(
                            data, pdq, rst, integration_start=info.integration_start)
                elif step == "rscd":
                    def rscd_prep(m, p):
                        return _rscd.rscd_parameters(m.rscd_group_skip_table, info.subarray,
                                                     info.readpatt, p)

                    # the reference is small: prepared() keeps only the looked-up counts
                    pars = prepared("rscd", step, ("group_skip", info.subarray, info.readpatt),
                                    rscd_prep)
                    if pars is None or not info.detector.upper().startswith("MIR"):
                        status[step] = "SKIPPED"
                    else:
                        nints_exp = model.meta.exposure.nints
                        gdq, pdq, status[step], kws = _rscd.rscd(
                            gdq, pdq, pars, exposure_nints=int(nints_exp or info.nints),
                            integration_start=info.integration_start)
                        for k, v in kws.items():
                            setattr(model.meta.rscd, k, v)
                elif step in ("firstframe", "lastframe"):
                    fn = _ff.firstframe if step == "firstframe" else _ff.lastframe
                    gdq, status[step] = fn(gdq)
                elif step == "linearity":
                    def lin_coeffs(m, p):
                        coeffs = ref_array(m, "coeffs", info, p, step, dtype=np.float32)
                        if coeffs.ndim != 3 or coeffs.shape[0] < 2:
                            raise ReferenceFileError(f"{step}: reference file {p!r} COEFFS must "
                                                     f"be (ncoeffs>=2, ny, nx), got {coeffs.shape}")
                        ldq = ref_array(m, "dq", info, p, step, dtype=np.uint32)
                        return _lin.prepare_coefficients(coeffs, ldq)

                    lin = prepared("linearity", step, ("coeffs",), lin_coeffs)
                    if lin is None:
                        status[step] = "SKIPPED"
                    else:
                        data, pdq, status[step] = _lin.linearity(data, gdq, pdq, None, None,
                                                                 prepared=lin)
                elif step == "dark_current":
                    def dark_prep(m, p):
                        dark = subarray_of(np.asarray(m.data) if m.data is not None else None,
                                           m, info, p, step, "DATA")
                        ddq = ref_array(m, "dq", info, p, step, dtype=np.uint32)
                        if dark.ndim not in (3, 4):
                            raise ReferenceFileError(f"{step}: reference file {p!r} SCI must be "
                                                     f"3-D or 4-D, got {dark.shape}")
                        dn = m.meta.exposure.nframes
                        dg = m.meta.exposure.groupgap
                        if dn is None or dg is None:
                            raise ReferenceFileError(f"{step}: reference file {p!r} lacks "
                                                     "NFRAMES/GROUPGAP")
                        matched, ddq = _dark.prepare_dark(
                            dark, ddq, ngroups=info.ngroups, nframes=info.nframes,
                            groupgap=info.groupgap, dark_nframes=int(dn), dark_groupgap=int(dg),
                            reuse_input=True)   # this model is closed after preparation
                        avg = None
                        adc = getattr(m, "average_dark_current", None)
                        if adc is not None and np.ndim(adc) == 2 and np.size(adc) > 0:
                            try:
                                avg = ref_array(m, "average_dark_current", info, p, step,
                                                dtype=np.float32)
                            except ReferenceFileError:
                                avg = None
                        if avg is None:
                            avg = m.meta.exposure.average_dark_current
                        return matched, ddq, avg

                    drk = prepared("dark", step, ("matched", info.ngroups, info.nframes,
                                                  info.groupgap), dark_prep)
                    if drk is None:
                        status[step] = "SKIPPED"
                    else:
                        matched, ddq, ref_avg = drk
                        data, pdq, status[step] = _dark.dark_current(
                            data, pdq, None, None, nframes=info.nframes, groupgap=info.groupgap,
                            dark_nframes=None, dark_groupgap=None, prepared=(matched, ddq))
                        avg = c["average_dark_current"]
                        cache["_avg_dark"] = ref_avg if avg is None else avg
                elif step == "charge_migration":
                    gdq, status[step] = _cm.charge_migration(
                        data, gdq, signal_threshold=float(c["signal_threshold"]))
                elif step == "jump":
                    gain = prepared("gain", step, ("data",), lambda m, p: ref_array(
                        m, "data", info, p, step, dtype=np.float32))
                    rn = prepared("readnoise", step, ("data",), lambda m, p: ref_array(
                        m, "data", info, p, step, dtype=np.float32))
                    if gain is None or rn is None:
                        status[step] = "SKIPPED"
                    else:
                        kw = {k: c[k] for k in STEP_PARAMETERS["jump"]}
                        gdq, pdq, status[step] = _jump.jump(data, gdq, pdq, gain, rn,
                                                            info.nframes, **kw)
                elif step == "ramp_fit":
                    gain = prepared("gain", step, ("data",), lambda m, p: ref_array(
                        m, "data", info, p, step, dtype=np.float32))
                    rn = prepared("readnoise", step, ("data",), lambda m, p: ref_array(
                        m, "data", info, p, step, dtype=np.float32))
                    if gain is None or rn is None:
                        raise ReferenceFileError("ramp_fit: gain and readnoise references are "
                                                 "required (got "
                                                 f"gain={references.get('gain')!r}, "
                                                 f"readnoise={references.get('readnoise')!r})")
                    adc = cache.get("_avg_dark")
                    rate, ints, status[step] = _rf.ramp_fit(
                        data, gdq, pdq, gain, rn, nframes=info.nframes,
                        group_time=info.group_time, dark_current=adc,
                        suppress_one_group=bool(c["suppress_one_group"]),
                        rateints=info.nints > 1)   # no rateints product for NINTS 1
                elif step == "gain_scale":
                    factor = prepared("gain", step, ("gain_factor",),
                                      lambda m, p: m.meta.exposure.gain_factor)
                    _, status[step] = _gs.gain_scale(rate, factor)
                    if ints is not None and factor is not None:
                        _gs.gain_scale(ints, factor)
                else:  # pragma: no cover - every step is handled above
                    raise AssertionError(step)
                timings[step] = time.perf_counter() - t0
        finally:
            _KERNEL_LOCK.release()
            for k, m in cache.items():
                if not k.startswith("_"):
                    m.close()

        # the header values are copied from the input model, which datamodels validated when
        # it opened the file: validating each again on assignment (~0.15 s a run, asdf
        # re-resolving schemas) is skipped; the keywords set here are fixed values (S_*,
        # BUNIT, CAL_VER...) and the tests reopen the products with datamodels.open
        rate_model = datamodels.ImageModel(
            data=rate["data"], dq=rate["dq"], err=rate["err"],
            var_poisson=rate["var_poisson"], var_rnoise=rate["var_rnoise"],
            validate_on_assignment=False)
        rate_model.update(model)
        _finish_meta(rate_model, status)
        ints_model = None
        if info.nints > 1:
            ints_model = datamodels.CubeModel(
                data=ints["data"], dq=ints["dq"], err=ints["err"],
                var_poisson=ints["var_poisson"], var_rnoise=ints["var_rnoise"],
                validate_on_assignment=False)
            ints_model.update(model)
            if getattr(model, "int_times", None) is not None and len(model.int_times):
                ints_model.int_times = model.int_times.copy()
            _finish_meta(ints_model, status)
    return Detector1Result(rate=rate_model, rateints=ints_model, step_status=status,
                           references_used=used, timings=timings)


# reference types read by one step only, whose (large) arrays are released as soon as the
# step's prepared arrays exist even when REFERENCE_CACHE is disabled
_BIG_REFTYPES = {"dark", "linearity"}

# numba's default (workqueue) threading layer must not be entered from two Python threads
# at once; runs in one process are serialised (processes run in parallel freely)
_KERNEL_LOCK = threading.Lock()

_GC_FROZEN = False
_GC_LOCK = threading.Lock()


def release_unreachable() -> int:
    """Free the cyclic garbage finished exposures leave behind; call it between exposures.

    stdatamodels' ``DataModel.update`` (used to copy the science header into the rate and
    rateints models) leaves each product model in a reference cycle, so the arrays of a
    dropped Detector1Result (hundreds of MB for a full frame or a time series) would wait
    for Python's cycle collector. The first call collects everything and then freezes the
    survivors (imports, compiled kernels, caches: ``gc.freeze``), so that later calls scan
    only objects created since (~1 ms instead of ~0.1 s). Returns the number of objects
    collected.
    """
    global _GC_FROZEN
    with _GC_LOCK:
        n = gc.collect()
        if not _GC_FROZEN:
            gc.freeze()
            _GC_FROZEN = True
    return n


#: step name -> attribute of meta.cal_step (FITS S_* keyword) where they differ
CAL_STEP_ATTR = {"dark_current": "dark_sub"}


def _finish_meta(m, status: dict[str, str]) -> None:
    m.meta.bunit_data = "DN/s"
    m.meta.bunit_err = "DN/s"
    m.meta.calibration_software_name = "calib"
    m.meta.calibration_software_version = __version__
    for step, st in status.items():
        setattr(m.meta.cal_step, CAL_STEP_ATTR.get(step, step), st)
