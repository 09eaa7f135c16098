"""Step parameters declared as jwst's Step classes declare them, and their validation.

A jwst Step declares its parameters in a configobj spec (``rejection_threshold =
float(default=4.0, min=0)``); :class:`Param` is the same declaration as data: name, type,
jwst's default, the allowed range or choices, and how far this engine supports it.
Values arrive as Python values (from a job's stored parameters) or as strings (from a
command line, ``--steps.jump.rejection_threshold=5``, the strun convention) and are checked
and converted before any file is opened; a bad value raises :class:`ParamError`, which
names the step, the parameter, the value and what is allowed.

Source: stpipe's configuration specs (jwst documentation, "Configuration files" and each
step's "Step Arguments" page).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.errors import CalibError

__all__ = ["Param", "ParamError", "SUPPORT_NATIVE", "SUPPORT_IGNORED", "SUPPORT_DEFAULT_ONLY", "TYPES"]

#: the parameter is implemented by this engine
SUPPORT_NATIVE = "native"
#: accepted and without effect on the products' numbers (output-file options, core counts)
SUPPORT_IGNORED = "ignored"
#: only jwst's default is implemented; another value is a usage error naming the jwst engine
SUPPORT_DEFAULT_ONLY = "default-only"

#: configobj type names used by jwst specs
TYPES = ("boolean", "integer", "float", "string", "option", "float_list", "int_list", "string_list")

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class ParamError(CalibError, ValueError):
    """A pipeline parameter is unknown or has a value outside what is allowed.

    Attributes ``step``, ``param``, ``value`` and ``allowed`` give the parts of the message
    (``allowed`` is a phrase such as "an integer >= 1").
    """

    def __init__(self, message: str, *, step: str | None = None, param: str | None = None,
                 value: Any = None, allowed: str | None = None) -> None:
        super().__init__(message)
        self.step, self.param, self.value, self.allowed = step, param, value, allowed


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() == "none")


@dataclass(frozen=True)
class Param:
    """One step parameter: jwst's name, configobj type and default, plus the allowed values.

    Parameters
    ----------
    name : str
        jwst's parameter name (``rejection_threshold``).
    type : str
        The configobj type of jwst's spec: one of :data:`TYPES`.
    default : object
        jwst 3.0's default (``None`` where jwst's is ``None``).
    min, max : float, optional
        Inclusive bounds for numbers (and, for lists, for each element).
    choices : tuple, optional
        The values of an ``option`` parameter.
    nullable : bool
        Whether ``None`` is allowed although the default is not ``None``.
    support : str
        :data:`SUPPORT_NATIVE`, :data:`SUPPORT_IGNORED` or :data:`SUPPORT_DEFAULT_ONLY`.
    doc : str
        One line on what it does (units included).
    """

    name: str
    type: str
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    support: str = SUPPORT_NATIVE
    doc: str = ""

    def __post_init__(self) -> None:
        """Check the declaration itself (a wrong declaration is a programming error)."""
        if self.type not in TYPES:
            raise TypeError(f"parameter {self.name!r}: unknown type {self.type!r}")
        if self.type == "option" and not self.choices:
            raise TypeError(f"parameter {self.name!r}: an option needs choices")
        if self.support not in (SUPPORT_NATIVE, SUPPORT_IGNORED, SUPPORT_DEFAULT_ONLY):
            raise TypeError(f"parameter {self.name!r}: unknown support {self.support!r}")

    # ------------------------------------------------------------------ descriptions
    def allowed(self) -> str:
        """Describe the allowed values, as a phrase for error messages ("a number >= 0")."""
        if self.support == SUPPORT_DEFAULT_ONLY:
            return (f"only the default {self.default!r} in the calib engine (other values need the "
                    "jwst engine)")
        if self.type == "option":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.type == "boolean":
            text = "a boolean (true/false)"
        elif self.type in ("integer", "float"):
            text = ("an integer" if self.type == "integer" else "a finite number") + self._range()
        elif self.type.endswith("_list"):
            kind = {"float_list": "numbers", "int_list": "integers", "string_list": "strings"}[self.type]
            text = f"a comma-separated list of {kind}" + self._range()
        else:
            text = "a string"
        if self.nullable or self.default is None:
            text += " or None"
        return text

    def _range(self) -> str:
        if self.min is not None and self.max is not None:
            return f" in [{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f" >= {self.min:g}"
        if self.max is not None:
            return f" <= {self.max:g}"
        return ""

    # ------------------------------------------------------------------ validation
    def coerce(self, step: str, value: Any) -> Any:
        """Check ``value`` and return it converted to the parameter's Python type.

        Strings are parsed as a command line gives them ("5", "true", "none", "1.5,2").

        Raises
        ------
        ParamError
            When the value has the wrong type, lies outside the range or choices, or differs
            from the default of a :data:`SUPPORT_DEFAULT_ONLY` parameter.
        """
        out = self._convert(step, value)
        if self.support == SUPPORT_DEFAULT_ONLY and out != self.default:
            raise self._error(step, value)
        return out

    def _error(self, step: str, value: Any) -> ParamError:
        return ParamError(f"step {step!r} parameter {self.name!r} = {value!r}: must be {self.allowed()}",
                          step=step, param=self.name, value=value, allowed=self.allowed())

    def _convert(self, step: str, value: Any) -> Any:
        if _is_none(value):
            if self.default is None or self.nullable:
                return None
            raise self._error(step, value)
        kind = self.type
        if kind == "boolean":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, (int, np.integer)) and value in (0, 1):
                return bool(value)
            raise self._error(step, value)
        if kind in ("integer", "float"):
            return self._number(step, value, value, integer=kind == "integer")
        if kind == "option":
            for choice in self.choices:
                if value == choice or (isinstance(value, str) and isinstance(choice, str)
                                       and value.strip().lower() == choice.lower()):
                    return choice
                if not isinstance(choice, str) and str(value).strip() == str(choice):
                    return str(choice)      # configobj's option(4, 8) gives the string, "8"
            raise self._error(step, value)
        if kind.endswith("_list"):
            items = value.split(",") if isinstance(value, str) else value
            try:
                items = list(items)
            except TypeError:
                raise self._error(step, value) from None
            if kind == "string_list":
                return [str(v).strip() for v in items]
            return [self._number(step, v, value, integer=kind == "int_list") for v in items]
        if not isinstance(value, str):
            raise self._error(step, value)
        return value

    def _number(self, step: str, item: Any, whole: Any, *, integer: bool) -> int | float:
        if isinstance(item, (bool, np.bool_)):
            raise self._error(step, whole)
        try:
            num = float(item.strip() if isinstance(item, str) else item)
        except (TypeError, ValueError):
            raise self._error(step, whole) from None
        if not math.isfinite(num):
            raise self._error(step, whole)
        if integer:
            if num != int(num):
                raise self._error(step, whole)
            num = int(num)
        if (self.min is not None and num < self.min) or (self.max is not None and num > self.max):
            raise self._error(step, whole)
        return num
