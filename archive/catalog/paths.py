"""Paths the archive writes and the catalog stores: validated components, kept under a root.

Every path the archive writes is built from components checked here (a PROGRAM is 1-5
digits; a file or directory name is one plain component, no separator, no ``..``, no NUL)
and checked to stay under its root after resolving symbolic links. The catalog stores
paths relative to the data root (``raw/01019/<file>``, ``products/...``,
``associations/...``), so a data tree moved or mounted elsewhere keeps working: set
``ARCHIVE_DATA_DIR`` to where it is now. Reference files are stored relative to the CRDS
cache (``CRDS_PATH``). A path stored absolute by an older version is still understood.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

#: a JWST program number: 1-5 digits
PROGRAM_RE = re.compile(r"[0-9]{1,5}")


class UnsafePath(ValueError):
    """A path component that is not one plain name, or a path that leaves its root."""


def program_component(program: str | None) -> str:
    """Return PROGRAM as a directory name, checked to be a JWST program number (1-5 digits).

    Raises
    ------
    UnsafePath
        For anything else (``../x``, ``123456``, empty, None).
    """
    if program is None or not PROGRAM_RE.fullmatch(str(program)):
        raise UnsafePath(f"PROGRAM={program!r} is not a JWST program number (1-5 digits)")
    return str(program)


def name_component(name: str, what: str = "name") -> str:
    """Return ``name`` if it is one plain path component.

    Raises
    ------
    UnsafePath
        If it is empty, ``.`` or ``..``, holds a path separator or a NUL byte, or is longer
        than 255 bytes.
    """
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name
            or len(name.encode("utf-8", "surrogateescape")) > 255):
        raise UnsafePath(f"{what} {name!r} is not one plain file name")
    return name


def under_root(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Return ``path`` resolved (links followed), checked to lie under ``root`` (resolved too).

    Raises
    ------
    UnsafePath
        If the resolved path is not inside the resolved root.
    """
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise UnsafePath(f"{path} resolves to {resolved}, outside {base}")
    return resolved


def to_stored(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """Return the form the catalog stores: ``path`` relative to ``root`` (POSIX separators).

    The archive builds its paths under the root, so the relation is lexical (a root whose
    subdirectory is a link to another volume stays valid); :func:`under_root` is the check
    made after resolving links.

    Raises
    ------
    UnsafePath
        If ``path`` is not lexically under ``root`` or holds a ``..`` component.
    """
    p, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if not p.is_relative_to(base) or ".." in Path(path).parts:
        raise UnsafePath(f"{path} is not under {root}")
    return PurePosixPath(*p.relative_to(base).parts).as_posix()


def from_stored(stored: str | None, root: str | os.PathLike) -> Path | None:
    """Return the absolute path of a stored catalog path (relative to ``root``).

    A path stored absolute (before migration 0005) is returned as it is. None stays None.

    Raises
    ------
    UnsafePath
        If a relative stored path would leave ``root`` (``..`` components).
    """
    if stored is None:
        return None
    p = PurePosixPath(stored)
    if p.is_absolute():
        return Path(stored)
    if ".." in p.parts:
        raise UnsafePath(f"catalog path {stored!r} leaves its root")
    return Path(root) / p
