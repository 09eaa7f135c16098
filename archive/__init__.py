"""archive: the JWST archive, as packages whose dependencies point one way.

From the top down (pyproject.toml's import-linter contracts hold the order):

- ``cli``: the ``archive`` command, one module per command group;
- ``reprocessing``: stale sets, campaigns, the planner, the what-if view, progress;
- ``execution``: the dispatcher protocol, the job runner, engines, product comparison,
  ``archive calibrate``;
- ``associations`` and ``crds``: the jwst association generator on pools from the
  catalog; the local CRDS cache, contexts and best references;
- ``ingest``: header checks, checksums and storage, the ingest batch;
- ``catalog``: models, sessions and migrations, shared queries, the pipeline policy,
  provenance;
- ``config``: the settings.

It uses ``calib`` (the calibration science) and never ``tasks`` or ``simulation``.
"""
from calib import __version__

__all__ = ["__version__"]
