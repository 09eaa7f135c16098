"""Catalog paths relative to their root, so a data tree moved or mounted elsewhere keeps working.

- exposures.storage_path: ``raw/<program>/<file>`` (relative to the data directory)
- products.path: ``products/<program>/<root>/<job dir>/<file>``; jobs.output_dir:
  ``products/<program>/<root>/<job dir>``
- associations.storage_path: ``associations/<file>``
- reference_files.path: relative to the CRDS cache (``references/jwst/...``)

Existing absolute paths are converted by their layout (the archive built each of them
under its root with a fixed number of components); a path of another shape stays as it
is, and the archive still reads an absolute path as it is.

The downgrade makes every relative path absolute again, under the roots the archive reads
them from now: the data directory and the CRDS cache, given as Alembic config attributes
``data_dir``/``crds_path``, or ``alembic -x data_dir=... -x crds_path=... downgrade 0004``,
else the archive's settings (``ARCHIVE_DATA_DIR``, ``CRDS_PATH``). The roots the upgrade
stripped are not recorded anywhere, so a tree that was moved between upgrade and downgrade
gets its current place, which is where the files are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""
import os
from pathlib import PurePosixPath

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: table, id column, path column, anchor directory, components from the anchor on
LAYOUTS = (
    ("exposures", "id", "storage_path", "raw", 3),
    ("products", "id", "path", "products", 5),
    ("jobs", "id", "output_dir", "products", 4),
    ("associations", "id", "storage_path", "associations", 2),
)


def _relative(path: str, anchor: str, n: int) -> str | None:
    parts = PurePosixPath(path).parts
    if not PurePosixPath(path).is_absolute() or len(parts) < n + 1 or parts[-n] != anchor or ".." in parts:
        return None
    return PurePosixPath(*parts[-n:]).as_posix()


def _crds_relative(path: str) -> str | None:
    parts = PurePosixPath(path).parts
    if not PurePosixPath(path).is_absolute() or ".." in parts:
        return None
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] in ("references", "mappings") and parts[i + 1] == "jwst":
            return PurePosixPath(*parts[i:]).as_posix()
    return None


def upgrade() -> None:
    conn = op.get_bind()
    for table, key, column, anchor, n in LAYOUTS:
        t = sa.table(table, sa.column(key), sa.column(column))
        for row_id, path in conn.execute(sa.select(t.c[key], t.c[column]).where(t.c[column].is_not(None))).all():
            rel = _relative(path, anchor, n)
            if rel is not None:
                conn.execute(sa.update(t).where(t.c[key] == row_id).values({column: rel}))
    t = sa.table("reference_files", sa.column("id"), sa.column("path"))
    for row_id, path in conn.execute(sa.select(t.c.id, t.c.path).where(t.c.path.is_not(None))).all():
        rel = _crds_relative(path)
        if rel is not None:
            conn.execute(sa.update(t).where(t.c.id == row_id).values(path=rel))


def _roots() -> tuple[str, str]:
    """The data directory and CRDS cache to make relative paths absolute under (module docstring)."""
    attrs = context.config.attributes
    x = context.get_x_argument(as_dictionary=True)
    data_dir, crds_path = attrs.get("data_dir") or x.get("data_dir"), attrs.get("crds_path") or x.get("crds_path")
    if not data_dir or not crds_path:
        from archive.config import load_settings

        s = load_settings()
        data_dir, crds_path = data_dir or s.data_dir, crds_path or s.crds_path
    return os.path.abspath(data_dir), os.path.abspath(crds_path)


def _absolute(path: str, root: str) -> str | None:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        return None
    return (PurePosixPath(root) / p).as_posix()


def downgrade() -> None:
    data_dir, crds_path = _roots()
    conn = op.get_bind()
    tables = [(table, key, column, data_dir) for table, key, column, _, _ in LAYOUTS]
    tables.append(("reference_files", "id", "path", crds_path))
    for table, key, column, root in tables:
        t = sa.table(table, sa.column(key), sa.column(column))
        for row_id, path in conn.execute(sa.select(t.c[key], t.c[column]).where(t.c[column].is_not(None))).all():
            absolute = _absolute(path, root)
            if absolute is not None:
                conn.execute(sa.update(t).where(t.c[key] == row_id).values({column: absolute}))
