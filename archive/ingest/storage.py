"""The storage tree: checksums and atomic placement of files.

Files are never written in place: they are copied or written to a temporary name in the
destination directory, flushed to disk, then renamed (``os.replace`` is atomic on POSIX),
so a crash leaves either no file or a whole one. An existing file is never overwritten.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

CHUNK = 1 << 22  # 4 MiB


def current_umask() -> int:
    """Return the process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(mask: int) -> None:
    """Set the process umask from the settings (``ARCHIVE_UMASK``, default 022: files 0644).

    Archives serve products from shared storage, so the group (and by default everyone)
    may read what the archive writes.
    """
    os.umask(mask)


def sha256_file(path) -> str:
    """SHA-256 hex digest of a file (a path, or a binary file object read from its start), in 4 MiB chunks."""
    digest = hashlib.sha256()
    if hasattr(path, "read"):
        path.seek(0)
        for block in iter(lambda: path.read(CHUNK), b""):
            digest.update(block)
        return digest.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike, expected_sha256: str | None = None) -> str:
    """Copy ``src`` to ``dest`` atomically and return the SHA-256 of what was written.

    Raises
    ------
    FileExistsError
        If ``dest`` exists already (nothing is overwritten).
    OSError
        On I/O failure; no partial ``dest`` remains.
    ValueError
        If ``expected_sha256`` is given and the copy's checksum differs (the copy is removed).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: exists already, not overwritten")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; stored files follow the umask
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            for block in iter(lambda: inp.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if expected_sha256 is not None and got != expected_sha256:
            raise ValueError(f"{src}: changed while being copied (sha256 {got} != {expected_sha256})")
        # os.link fails if dest appeared meanwhile: never overwrite, even in a race.
        os.link(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return got


def remove_tree_quietly(path: str | os.PathLike) -> None:
    """Remove a directory tree if it exists (clean-up after a failed job)."""
    shutil.rmtree(path, ignore_errors=True)
