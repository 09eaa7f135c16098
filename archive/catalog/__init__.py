"""The catalog: SQLAlchemy models of the archive's nouns, engines and short sessions, the
queries several parts share, the pipeline policy the catalog records, and provenance
(lineage and read-only SQL over the provenance views).

Everything else in ``archive`` builds on this package; it imports nothing of the archive
but :mod:`archive.config`.
"""
