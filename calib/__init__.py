"""calib: the calibration science of the archive.

Pure arrays in, arrays out: FITS I/O of JWST products (through stdatamodels), readers of
CRDS reference files, numba kernels, steps and pipelines named as in the jwst package.
This package never imports ``archive`` or ``tasks`` and holds no database or queue code.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("jwst-archive")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
