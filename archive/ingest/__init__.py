"""Ingest: raw exposures into storage and the catalog.

``headers`` checks a raw exposure from its headers alone and gives the catalog columns,
``storage`` takes checksums and places files atomically, ``pools`` reads the association
pools whose planning columns ``archive ingest --pool`` stores, and ``batch`` ingests a
batch of files with those three.
"""
