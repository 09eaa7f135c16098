"""Raw exposures (``*_uncal.fits``) checked from their headers, and their catalog columns.

Only headers are read (astropy's lazy HDU loading; no pixel I/O). A file is accepted when
it is a JWST raw exposure: TELESCOP = JWST, a Level-1b data model (DATAMODL
Level1bModel, or an ``_uncal`` name for older files without DATAMODL), the keywords the
catalog needs, a 4-D SCI extension whose shape agrees with NINTS, NGROUPS, SUBSIZE1 and
SUBSIZE2, and a file long enough to hold every HDU its headers announce.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from astropy.io import fits

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


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


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
        With the reason: not FITS, truncated, wrong telescope, not a Level-1b exposure,
        missing keywords, or a SCI shape that disagrees with the header.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RejectedFile(f"cannot read: {exc.strerror}") from exc
    try:
        with warnings.catch_warnings(), fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
            warnings.simplefilter("ignore")  # astropy's truncation warning: we report it ourselves
            n_hdus = len(hdul)  # reads every header, no data
            if n_hdus == 0:
                raise RejectedFile("not a FITS file: no HDU")
            last = hdul.fileinfo(n_hdus - 1)
            needed = last["datLoc"] + last["datSpan"]
            primary = hdul[0].header
            sci = None
            for hdu in hdul[1:]:
                if hdu.header.get("EXTNAME", "").upper() == "SCI":
                    sci = hdu.header
                    break
    except RejectedFile:
        raise
    except (OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise RejectedFile(f"not a readable FITS file: {exc}") from exc
    if size < needed:
        raise RejectedFile(f"truncated: {size} bytes on disk, its headers announce {needed}")

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
    if sci is None:
        raise RejectedFile("no SCI extension")
    if sci.get("NAXIS") != 4:
        raise RejectedFile(f"SCI has NAXIS={sci.get('NAXIS')}, a raw ramp has 4 axes")
    shape = tuple(int(sci[f"NAXIS{i}"]) for i in (4, 3, 2, 1))
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
            keywords[key] = _plain(card.value)
    keywords["_SCI_SHAPE"] = list(shape)
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
    """
    values = {}
    for column, key in HEADER_COLUMNS.items():
        value = keywords.get(key)
        if column in INT_COLUMNS and value is not None:
            value = int(value)
        elif column == "expstart" and value is not None:
            value = float(value)
        elif isinstance(value, str):
            value = value.strip()
            if column not in ("targname", "date_obs", "time_obs"):
                value = value.upper()
        values[column] = value
    return values
