"""Raw exposures (``*_uncal.fits``) checked from their headers, and their catalog columns.

Only headers are read (astropy's lazy HDU loading; no pixel I/O). A file is accepted when
it is a JWST raw exposure: TELESCOP = JWST, a Level-1b data model (DATAMODL
Level1bModel, or an ``_uncal`` name for older files without DATAMODL), the keywords the
catalog needs, a 4-D SCI extension whose shape agrees with NINTS, NGROUPS, SUBSIZE1 and
SUBSIZE2, and a file long enough to hold every HDU its headers announce.
"""
from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path

from astropy.io import fits

from ..catalog.paths import PROGRAM_RE

REQUIRED_KEYWORDS = (
    "TELESCOP", "INSTRUME", "DETECTOR", "EXP_TYPE", "NGROUPS", "NINTS", "SUBARRAY",
    "SUBSIZE1", "SUBSIZE2", "DATE-OBS", "PROGRAM",
)

# Header columns of the exposures table: column -> FITS keyword
HEADER_COLUMNS = {
    "program": "PROGRAM", "observtn": "OBSERVTN", "visit": "VISIT", "visit_id": "VISIT_ID",
    "exposure": "EXPOSURE", "instrume": "INSTRUME", "detector": "DETECTOR",
    "exp_type": "EXP_TYPE", "readpatt": "READPATT", "subarray": "SUBARRAY",
    "ngroups": "NGROUPS", "nints": "NINTS", "nframes": "NFRAMES", "groupgap": "GROUPGAP",
    "filter": "FILTER", "pupil": "PUPIL", "expstart": "EXPSTART", "date_obs": "DATE-OBS",
    "time_obs": "TIME-OBS", "targname": "TARGNAME",
}
INT_COLUMNS = {"ngroups", "nints", "nframes", "groupgap"}


class RejectedFile(ValueError):
    """A file that is not an acceptable JWST raw exposure; the message gives the reason."""


#: magic bytes of compressed files: (prefix, name)
COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
#: FITS block size (FITS standard 4.0, section 3.1)
BLOCK = 2880


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _integer(key: str, value, bounded: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RejectedFile(f"keyword {key}={value!r} is not an integer")
    if isinstance(value, str):
        if not value.strip().lstrip("+-").isdigit():
            raise RejectedFile(f"keyword {key}={value!r} is not an integer")
        value = int(value)
    if bounded and not -2**31 <= value < 2**31:
        raise RejectedFile(f"keyword {key}={value!r} is out of range")
    return value


def open_regular(path: Path):
    """Open a file for reading only if it is a regular file (never block on a FIFO or device).

    Parameters
    ----------
    path : Path
        The file; a symbolic link is followed.

    Returns
    -------
    file object
        Opened ``rb``.

    Raises
    ------
    RejectedFile
        If it cannot be opened, or is a FIFO, a device, a socket or a directory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise RejectedFile(f"cannot read: {exc.strerror}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a directory" if stat.S_ISDIR(mode) else "not a regular file")
        raise RejectedFile(f"not a regular file: {kind}")
    return os.fdopen(fd, "rb")


def announced_bytes(fh, size: int) -> int:
    """Return how many bytes the HDUs' headers announce (headers, data and padding).

    Walks the headers as the FITS standard lays them out (data size =
    |BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn), padded to 2880-byte blocks;
    FITS standard 4.0 section 4.4.1), without trusting astropy to seek past a huge one.

    Parameters
    ----------
    fh : binary file object
        At the start of the file.
    size : int
        The file's size in bytes: the walk stops at the end of the file.

    Returns
    -------
    int
        Offset where the last announced HDU ends; larger than ``size`` for a truncated file
        or an absurd NAXISn.

    Raises
    ------
    RejectedFile
        If a header cannot be read or holds a non-integer BITPIX/NAXIS/PCOUNT/GCOUNT.
    """
    offset = 0
    while offset < size:
        fh.seek(offset)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                header = fits.Header.fromfile(fh, endcard=True, padding=True)
        except (OSError, ValueError, EOFError) as exc:
            if offset == 0:
                raise RejectedFile(f"not a readable FITS file: {exc}") from exc
            raise RejectedFile(f"unreadable header at byte {offset}: {exc}") from exc
        start = fh.tell()
        naxis = _integer("NAXIS", header.get("NAXIS", 0))
        nbytes = 0
        if naxis > 0:
            bitpix = _integer("BITPIX", header.get("BITPIX", 8))
            count = 1
            for i in range(1, naxis + 1):
                count *= _integer(f"NAXIS{i}", header.get(f"NAXIS{i}", 0), bounded=False)
            pcount = _integer("PCOUNT", header.get("PCOUNT", 0), bounded=False)
            gcount = _integer("GCOUNT", header.get("GCOUNT", 1), bounded=False)
            nbytes = abs(bitpix) // 8 * gcount * (pcount + count)
        offset = start + -(-nbytes // BLOCK) * BLOCK
        if fh.tell() == start and start >= size:
            break
    return offset


def read_raw_header(path: str | os.PathLike) -> dict:
    """Validate a raw exposure from its headers and return its keywords.

    Returns
    -------
    dict
        Primary-header keywords, then SCI-header keywords not already present; values are
        str, int, float or bool. ``_SCI_SHAPE`` holds the SCI shape (NINTS, NGROUPS, ny, nx).

    Raises
    ------
    RejectedFile
        With the reason: not a regular file (FIFO, device), compressed, not FITS,
        truncated (how many bytes the headers announce), wrong telescope, not a Level-1b
        exposure, missing keywords, a keyword of the wrong type or too long for its
        column, or a SCI shape that disagrees with the header.
    """
    path = Path(path)
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        magic = fh.read(4)
        for prefix, what in COMPRESSED_MAGIC:
            if magic.startswith(prefix):
                raise RejectedFile(f"{what}-compressed (magic bytes {prefix.hex(' ')}): decompress it first; "
                                   f"the archive ingests plain FITS")
        fh.seek(0)
        needed = announced_bytes(fh, size)
        if size < needed:
            raise RejectedFile(f"truncated: {size} bytes on disk, its headers announce {needed}")
        fh.seek(0)
        try:
            with warnings.catch_warnings(), fits.open(fh, lazy_load_hdus=True, memmap=False) as hdul:
                warnings.simplefilter("ignore")  # astropy's truncation warning: we report it ourselves
                n_hdus = len(hdul)  # reads every header, no data
                if n_hdus == 0:
                    raise RejectedFile("not a FITS file: no HDU")
                primary = hdul[0].header
                sci = None
                for hdu in hdul[1:]:
                    if str(hdu.header.get("EXTNAME", "")).upper() == "SCI":
                        sci = hdu.header
                        break
        except RejectedFile:
            raise
        except (OSError, ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            raise RejectedFile(f"not a readable FITS file: {exc}") from exc

    telescope = str(primary.get("TELESCOP", "")).strip()
    if telescope != "JWST":
        raise RejectedFile(f"TELESCOP is {telescope!r}, not 'JWST'")
    datamodel = str(primary.get("DATAMODL", "")).strip()
    if datamodel and datamodel != "Level1bModel":
        raise RejectedFile(f"DATAMODL is {datamodel!r}: not a raw (Level1bModel) exposure")
    if not datamodel and not path.name.endswith("_uncal.fits"):
        raise RejectedFile("no DATAMODL and not an _uncal file: not a raw exposure")
    missing = [k for k in REQUIRED_KEYWORDS if primary.get(k) in (None, "")]
    if missing:
        raise RejectedFile(f"missing required keywords: {', '.join(missing)}")
    for key in ("NINTS", "NGROUPS", "SUBSIZE1", "SUBSIZE2"):
        _integer(key, primary[key])
    if sci is None:
        raise RejectedFile("no SCI extension")
    if sci.get("NAXIS") != 4:
        raise RejectedFile(f"SCI has NAXIS={sci.get('NAXIS')!r}, a raw ramp has 4 axes")
    shape = tuple(_integer(f"NAXIS{i}", sci.get(f"NAXIS{i}")) for i in (4, 3, 2, 1))
    expected = (int(primary["NINTS"]), int(primary["NGROUPS"]),
                int(primary["SUBSIZE2"]), int(primary["SUBSIZE1"]))
    if shape != expected:
        raise RejectedFile(
            f"SCI shape {shape} disagrees with (NINTS, NGROUPS, SUBSIZE2, SUBSIZE1) = {expected}"
        )

    keywords: dict = {}
    for header in (primary, sci):
        for card in header.cards:
            key = card.keyword
            if not key or key in ("COMMENT", "HISTORY") or key in keywords:
                continue
            value = _plain(card.value)
            if isinstance(value, str) and "\x00" in value:
                raise RejectedFile(f"keyword {key} holds a NUL byte: {value!r}")
            keywords[key] = value
    keywords["_SCI_SHAPE"] = list(shape)
    header_columns(keywords)  # every catalog column's type and size, checked before any copy
    return keywords


def header_columns(keywords: dict) -> dict:
    """Return the exposures-table header columns of a keyword dict.

    Parameters
    ----------
    keywords : dict
        FITS keyword -> value, as :func:`read_raw_header` returns them.

    Returns
    -------
    dict
        Column of ``exposures`` -> value (:data:`HEADER_COLUMNS`): integers for the
        :data:`INT_COLUMNS`, a float EXPSTART, other strings stripped and upper-cased
        (except TARGNAME, DATE-OBS and TIME-OBS); None where the keyword is missing.

    Raises
    ------
    RejectedFile
        Naming the keyword and its value: an integer column that is not an integer, an
        EXPSTART that is not a finite number, a string longer than its column, a PROGRAM
        that is not 1-5 digits.
    """
    from ..catalog.models import Exposure  # the column sizes

    values = {}
    for column, key in HEADER_COLUMNS.items():
        value = keywords.get(key)
        if column in INT_COLUMNS and value is not None:
            value = _integer(key, value)
        elif column == "expstart" and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise RejectedFile(f"keyword {key}={value!r} is not a number")
            try:
                value = float(value)
            except ValueError:
                raise RejectedFile(f"keyword {key}={value!r} is not a number") from None
            if not math.isfinite(value):
                raise RejectedFile(f"keyword {key}={value!r} is not a finite number")
        elif value is not None:
            value = str(value).strip()
            if column not in ("targname", "date_obs", "time_obs"):
                value = value.upper()
            length = Exposure.__table__.c[column].type.length
            if length is not None and len(value) > length:
                raise RejectedFile(f"keyword {key}={value[:80]!r}{'...' if len(value) > 80 else ''} is "
                                   f"{len(value)} characters long; the catalog holds at most {length}")
        values[column] = value
    program = values.get("program")
    if program is not None and not PROGRAM_RE.fullmatch(program):
        raise RejectedFile(f"keyword PROGRAM={keywords.get('PROGRAM')!r} is not a JWST program number "
                           f"(1-5 digits)")
    return values
