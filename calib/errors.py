"""Exceptions raised by the calibration package.

``InputError`` and ``ReferenceFileError`` subclass ``ValueError`` so callers that only
know the standard library still catch them; ``CalibError`` is the common base that the
archive's job runner uses to tell bad input (not retried) from transient faults.
"""

__all__ = ["CalibError", "InputError", "ReferenceFileError"]


class CalibError(Exception):
    """Base class of every error raised on purpose by ``calib``."""


class InputError(CalibError, ValueError):
    """The science input (e.g. an ``_uncal.fits`` file) is unusable; the message names the file."""


class ReferenceFileError(CalibError, ValueError):
    """A reference file is unusable for this exposure; the message names the file and the step."""
