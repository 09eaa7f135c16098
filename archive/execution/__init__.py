"""Execution: how a planned job runs.

``dispatch`` is the protocol by which jobs reach an executor (implemented by ``tasks``
with Celery, found through an entry point), ``runner`` leases, calibrates and records
one job, ``engines`` says which engine runs a pipeline, ``comparison`` compares a new
product with the one it supersedes, and ``calibrate`` runs a pipeline on files without
the catalog (``archive calibrate``, like jwst's ``strun``).
"""
