"""The catalog: the archive's nouns in SQL, and what every other part builds on.

``models`` holds the SQLAlchemy models, ``db`` the engines, short sessions and the
Alembic upgrade, ``queries`` the queries several parts share, ``pipeline_policy`` the
stage-1 pipeline of an EXP_TYPE (recorded per exposure), and ``provenance`` the lineage of a
product and read-only SQL over the provenance views.

Everything else in ``archive`` builds on this package; it imports nothing of the archive
but :mod:`archive.config`.
"""
