"""Declared steps: what a jwst Step class declares, as data next to the step's kernels.

Each module of :mod:`calib.steps` ends with a ``STEP = StepSpec(...)`` that says what jwst's
Step class says (jwst documentation, "Stpipe: steps and pipelines"): the step name, the
CRDS reftypes it reads (jwst's ``reference_file_types``, including a reference read for
another step's purpose, e.g. superbias in saturation), its parameters with jwst 3.0's
defaults and allowed values, whether it is skipped by default, and its status keyword
(``meta.cal_step.<attr>``, FITS ``S_*``), plus the function that runs it on the pipeline's
state. Everything a pipeline does around a step (skip, N/A references, overrides, reference
preparation through the cache, timings, S_* keywords) is done once, by
:func:`calib.runner.run`; a step never writes provenance itself (STYLE.md, "A step declares
what it needs").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from calib.params import SUPPORT_NATIVE, Param, ParamError

__all__ = ["ExposureKeys", "StepSpec", "StepContext", "STATUS_COMPLETE", "STATUS_SKIPPED"]

STATUS_COMPLETE = "COMPLETE"
STATUS_SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class ExposureKeys:
    """The header values that decide which steps run and which references they read.

    Built from a FITS header mapping (:meth:`from_header`, before any file is opened: the
    catalog's stored header or ``astropy.io.fits.getheader``) or from an opened datamodel.
    Strings are upper case; absent keywords are empty strings.
    """

    instrument: str = ""   # INSTRUME
    detector: str = ""     # DETECTOR
    exp_type: str = ""     # EXP_TYPE
    readpatt: str = ""     # READPATT
    subarray: str = ""     # SUBARRAY

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> "ExposureKeys":
        """Keys from a header mapping with FITS keyword names (``INSTRUME``, ``EXP_TYPE`` ...)."""
        def get(k: str) -> str:
            v = header.get(k)
            return "" if v is None else str(v).strip().upper()

        return cls(get("INSTRUME"), get("DETECTOR"), get("EXP_TYPE"), get("READPATT"), get("SUBARRAY"))

    @classmethod
    def from_model(cls, model) -> "ExposureKeys":
        """Keys from an opened stdatamodels model (``meta.instrument``, ``meta.exposure`` ...)."""
        meta = model.meta

        def up(v) -> str:
            return "" if v is None else str(v).strip().upper()

        return cls(up(meta.instrument.name), up(meta.instrument.detector), up(meta.exposure.type),
                   up(meta.exposure.readpatt), up(meta.subarray.name))

    @property
    def is_miri(self) -> bool:
        """True for MIRI (whose detector1 steps and reference layouts differ)."""
        return self.instrument == "MIRI"


def _all_reftypes(spec: "StepSpec", keys: ExposureKeys, params: Mapping[str, Any]) -> tuple[str, ...]:
    return spec.reftypes


@dataclass(frozen=True)
class StepSpec:
    """A calibration step as jwst declares it, plus how this engine runs it.

    Parameters
    ----------
    name : str
        jwst's step name (``saturation``), also the key of its parameters
        (``--steps.saturation.n_pix_grow_sat``).
    jwst_class : str
        The jwst Step class it corresponds to (``jwst.saturation.SaturationStep``); the
        declaration test compares this declaration with that class.
    reftypes : tuple of str
        jwst's ``reference_file_types`` for the step (lower-case CRDS reftypes).
    params : tuple of Param
        Every parameter of jwst's spec (``skip`` excepted: every step has it), each marked
        native, ignored or default-only (:mod:`calib.params`).
    run : callable, optional
        ``run(state, ctx) -> status``: the step on the pipeline's state (arrays modified in
        the state), returning "COMPLETE" or "SKIPPED". None: not implemented by this
        engine; the step is always recorded SKIPPED and asking for it is a ParamError.
    skip_default : bool
        jwst 3.0's default of ``skip`` for the step.
    status_attr : str, optional
        The ``meta.cal_step`` attribute of the step's S_* keyword (default: ``name``;
        ``dark_sub`` for dark_current).
    reads : callable, optional
        ``reads(spec, keys, params) -> reftypes`` it reads for this exposure and these
        parameters, in order (default: all of ``reftypes``); e.g. saturation reads the
        superbias only for near-IR detectors. Only these are asked of CRDS.
    skip_if_na : tuple of str, optional
        Reftypes whose N/A (not applicable in the context) makes the step SKIPPED without
        running, as jwst does (default: the first reftype, when there is one). Other
        reftypes it reads are handed to ``run`` as None when N/A.
    applies : callable, optional
        ``applies(keys) -> bool``: False makes the step SKIPPED for this exposure before any
        reference is asked for (e.g. MIRI-only steps on another detector).
    doc : str
        One line on the method, with its source.
    """

    name: str
    jwst_class: str
    reftypes: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    run: Callable[[Any, "StepContext"], str] | None = None
    skip_default: bool = False
    status_attr: str | None = None
    reads: Callable[["StepSpec", ExposureKeys, Mapping[str, Any]], tuple[str, ...]] = _all_reftypes
    skip_if_na: tuple[str, ...] | None = None
    applies: Callable[[ExposureKeys], bool] | None = None
    doc: str = ""
    _by_name: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Index the parameters by name and check the declaration."""
        names = [p.name for p in self.params]
        if len(set(names)) != len(names) or "skip" in names:
            raise TypeError(f"step {self.name!r}: duplicate parameter or 'skip' declared")
        self._by_name.update({p.name: p for p in self.params})

    @property
    def implemented(self) -> bool:
        """Whether this engine runs the step (otherwise it is recorded SKIPPED)."""
        return self.run is not None

    @property
    def cal_step(self) -> str:
        """The ``meta.cal_step`` attribute of its S_* keyword."""
        return self.status_attr or self.name

    def na_skips(self) -> tuple[str, ...]:
        """Reftypes whose N/A makes the step SKIPPED."""
        if self.skip_if_na is not None:
            return self.skip_if_na
        return self.reftypes[:1]

    def param(self, name: str) -> Param:
        """Return the declaration of parameter ``name``.

        Raises
        ------
        ParamError
            If the step has no such parameter.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise ParamError(f"step {self.name!r} has no parameter {name!r}; it has: "
                             + ", ".join(["skip", *self._by_name]), step=self.name, param=name) from None

    def defaults(self) -> dict[str, Any]:
        """{parameter: jwst default}, ``skip`` included."""
        out = {p.name: p.default for p in self.params}
        out["skip"] = self.skip_default
        return out

    def resolve(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check ``values`` ({parameter: value}, strings allowed) and fill in defaults.

        Raises
        ------
        ParamError
            For an unknown parameter, a bad value, or ``skip=False`` on a step this engine
            does not implement.
        """
        out = self.defaults()
        for name, value in (values or {}).items():
            if name == "skip":
                out["skip"] = Param("skip", "boolean", self.skip_default).coerce(self.name, value)
            else:
                out[name] = self.param(name).coerce(self.name, value)
        if not self.implemented and out["skip"] is False:
            raise ParamError(f"step {self.name!r} is not implemented by the calib engine (skip=False "
                             "was asked); use the jwst engine for this mode",
                             step=self.name, param="skip", value=False, allowed="true")
        return out

    def native_params(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """Return the resolved values of the parameters this engine implements (``skip`` excluded)."""
        return {p.name: resolved[p.name] for p in self.params if p.support == SUPPORT_NATIVE}


class StepContext:
    """What a running step may ask of the pipeline: its parameters and its references.

    ``params`` holds every parameter of the step, resolved (defaults filled in, strings
    converted). References go through the run's :class:`calib.runner.ReferenceSession`:
    :meth:`path` (None when N/A), :meth:`model` (the opened reference datamodel) and
    :meth:`prepared` (arrays derived from a reference, kept by the process-wide
    :data:`calib.references.REFERENCE_CACHE`).
    """

    def __init__(self, spec: StepSpec, params: Mapping[str, Any], session) -> None:
        self.spec = spec
        self.name = spec.name
        self.params = params
        self._session = session

    def path(self, reftype: str) -> str | None:
        """Local path of the reference of ``reftype``, or None when it is N/A."""
        return self._session.path(reftype)

    def mark_used(self, reftype: str) -> None:
        """Record that the step read ``reftype``'s file itself (by :meth:`path`).

        Its R_* keyword is then written (references read through :meth:`model` or
        :meth:`prepared` are recorded already).
        """
        self._session.mark_used(reftype)

    def model(self, reftype: str):
        """Return the reference of ``reftype`` opened as its stdatamodels class (None when N/A).

        Raises
        ------
        calib.errors.ReferenceFileError
            If the file cannot be opened as that reftype (the message names file and step).
        """
        return self._session.model(reftype, self.name)

    def prepared(self, reftype: str, what: tuple, compute: Callable[[Any, str], Any], *, sections: bool = False):
        """Return ``compute(reference, path)`` for the reference of ``reftype``, through the cache.

        ``what`` names the derived value (e.g. ``("threshold",)``) so that different values
        derived from one file are cached apart. ``reference`` is the opened stdatamodels
        model, or with ``sections=True`` a :class:`calib.references.ReferenceSections` whose
        arrays are read by sections (for a step that needs a fraction of a large reference).
        Returns None when the reference is N/A.
        """
        return self._session.prepared(reftype, self.name, what, compute, sections=sections)
