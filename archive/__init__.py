"""archive: the catalog, ingest, associations, CRDS selection, reprocessing planner,
provenance queries, storage and the ``archive`` command line."""
from calib import __version__

__all__ = ["__version__"]
