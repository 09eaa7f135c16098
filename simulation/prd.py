"""Readout patterns and subarrays from the JWST Project Reference Database (PRD).

The operations system fills an exposure's NFRAMES, GROUPGAP, TFRAME and SUBSTRT/SUBSIZE
from the PRD (the keyword dictionary names "PRD SubarrayFrameTime table lookup" as their
source). No library exposes these tables through an API: ``pysiaf`` carries the PRD's SIAF
(apertures, :mod:`simulation.siaf`) but not its readout tables, and ``stdatamodels`` only
enumerates the names. The jwst package ships a copy of the PRD database itself
(``jwst/lib/tests/data/xml_data_siafxml/prd.db``, release PRDOPSSOC-034, an SQLite file
its SIAF tests read), and this module reads two of its tables, read-only, with the
standard library's ``sqlite3``:

* ``Datamode``: per instrument and readout pattern, NFRAMES and GROUPGAP (and NSAMPLE,
  FRAMEDIVISOR ...). NIRISS and FGS share the rows of ``NIS-Guider``.
* ``SubarrayFrameTime``: per instrument, subarray (the SUBARRAY keyword value), readout
  pattern and number of outputs, the frame time ``FrameReadTime`` (s), the size in the
  science (DMS) frame (``SciColumns`` x ``SciRows``) and the science-frame corner of each
  detector (NIRCam per detector, NIRSpec per detector and disperser, FGS per guider).

Nothing here is a hand-kept copy: every value is read from that file at run time.
"""
from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: where the jwst package keeps its copy of the PRD database (inside ``jwst.lib``)
PRD_DB_RESOURCE = ("jwst.lib", "tests/data/xml_data_siafxml/prd.db")

#: instrument (INSTRUME keyword) -> its name in the Datamode table
_DATAMODE_NAMES = {"NIRCAM": "NIRCam", "NIRSPEC": "NIRSpec", "NIRISS": "NIS-Guider",
                   "FGS": "NIS-Guider", "MIRI": "MIRI"}
#: instrument (INSTRUME keyword) -> its name in the SubarrayFrameTime table
_SUBARRAY_NAMES = {"NIRCAM": "NIRCam", "NIRSPEC": "NIRSpec", "NIRISS": "NIRISS",
                   "FGS": "FGS", "MIRI": "MIRI"}


def prd_path() -> Path:
    """Path of the PRD database shipped in the installed jwst package.

    Raises
    ------
    FileNotFoundError
        If the installed jwst has no such file (the message names where it was looked for).
    """
    package, rel = PRD_DB_RESOURCE
    path = Path(str(resources.files(package).joinpath(rel)))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the PRD database the jwst package ships is missing; "
                                "simulated readouts need its Datamode and SubarrayFrameTime tables")
    return path


@functools.lru_cache(maxsize=None)
def _table(name: str) -> tuple[dict, ...]:
    uri = f"file:{prd_path()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return tuple(dict(r) for r in conn.execute(f"SELECT * FROM {name}"))  # noqa: S608 - fixed names


def prd_version() -> str:
    """Return the PRD release of the database (e.g. ``PRDOPSSOC-034``)."""
    rows = _table("PrdVersion")
    return str(max(rows, key=lambda r: r["DbChangeDate"])["PrdId"])


def readout_patterns(instrument: str) -> list[str]:
    """READPATT values the PRD defines for an instrument (upper case)."""
    name = _DATAMODE_NAMES.get(instrument.upper())
    return sorted({r["READOUT"].upper() for r in _table("Datamode") if r["INSTRUMENT"] == name})


def datamode(instrument: str, readpatt: str) -> tuple[int, int]:
    """(NFRAMES, GROUPGAP) of a readout pattern, from the PRD's Datamode table.

    Raises
    ------
    ValueError
        For an instrument or readout pattern the PRD does not define (the message lists the
        instrument's patterns).
    """
    instrument, readpatt = instrument.upper(), readpatt.upper()
    name = _DATAMODE_NAMES.get(instrument)
    if name is None:
        raise ValueError(f"unknown instrument {instrument!r}; known: {sorted(_DATAMODE_NAMES)}")
    for r in _table("Datamode"):
        if r["INSTRUMENT"] == name and r["READOUT"].upper() == readpatt:
            return int(r["NFRAMES"]), int(r["GROUPGAP"])
    raise ValueError(f"unknown {instrument} READPATT {readpatt!r}; the PRD ({prd_version()}) defines "
                     f"{readout_patterns(instrument)}")


def subarray_rows(instrument: str, subarray: str) -> list[dict]:
    """Return the SubarrayFrameTime rows of one subarray (SUBARRAY keyword value), in table order."""
    name = _SUBARRAY_NAMES.get(instrument.upper())
    sub = subarray.upper()
    return [r for r in _table("SubarrayFrameTime") if r["Instrument"] == name
            and str(r["SubarrayName"]).upper() == sub]


def subarray_names(instrument: str) -> list[str]:
    """SUBARRAY values the PRD defines for an instrument."""
    name = _SUBARRAY_NAMES.get(instrument.upper())
    return sorted({str(r["SubarrayName"]).upper() for r in _table("SubarrayFrameTime")
                   if r["Instrument"] == name})


def frame_time(instrument: str, subarray: str, readpatt: str) -> tuple[float, int] | None:
    """(TFRAME in s, NOUTPUTS) of a subarray read with a pattern, or None if the PRD has no row.

    Rows without a readout pattern (NIRCam, NIRISS) hold for every pattern. Where the PRD
    lists the subarray for several numbers of outputs (NIRCam FULL and SUBGRISM: 1 or 4), the
    largest is taken, as science programs use. MIRI's rows say 0 outputs: MIRI reads its four
    outputs interleaved, so NOUTPUTS is 4.
    """
    rows = [r for r in subarray_rows(instrument, subarray)
            if r["FrameReadTime"] and str(r["ReadoutPattern"] or "").upper() in ("", readpatt.upper())]
    if not rows:
        return None
    best = max(rows, key=lambda r: int(r["NumOutputs"] or 0))
    noutputs = int(best["NumOutputs"] or 0) or 4
    return float(best["FrameReadTime"]), noutputs


@dataclass(frozen=True)
class PrdWindow:
    """A subarray's window in the science (DMS) frame of a detector, 1-based pixels."""

    xstart: int
    ystart: int
    xsize: int
    ysize: int
    note: str = ""


def _corner(instrument: str, row: dict, detector: str) -> tuple[int, int] | None:
    """(SUBSTRT1, SUBSTRT2) of ``row`` for ``detector``, or None if the row has none for it."""
    det = detector.upper()
    if instrument == "NIRCAM":
        key = det.replace("NRC", "").replace("ALONG", "A5").replace("BLONG", "B5")
        if str(row["NRCDetector"] or "").upper() != key:
            return None
        x, y = row["NRCSciColumnCorner"], row["NRCSciRowCorner"]
    elif instrument == "NIRSPEC":
        x, y = row.get(f"{det}SciColumnCorner"), row.get(f"{det}SciRowCorner")
    elif instrument == "FGS":
        n = det.replace("GUIDER", "")
        x, y = row.get(f"FGS{n}SciColumnCorner"), row.get(f"FGS{n}SciRowCorner")
    else:
        x, y = row["SciColumnCorner"], row["SciRowCorner"]
    if x is None or y is None:
        return None
    return int(x), int(y)


def subarray_window(instrument: str, subarray: str, detector: str,
                    disperser: str | None = None) -> PrdWindow | None:
    """Return the PRD's window of a subarray on a detector, or None if the PRD does not define it.

    Parameters
    ----------
    instrument, subarray, detector : str
        INSTRUME, SUBARRAY and DETECTOR keyword values.
    disperser : str, optional
        NIRSpec GRATING: NIRSpec subarrays move with the disperser (the PRD has one row per
        disperser); default, or a disperser the PRD does not list, MIRROR.

    Returns
    -------
    PrdWindow or None
        ``note`` says when the window is another detector's or disperser's (the PRD defines
        some subarrays on one detector only, e.g. SUB96DHSPILA on NRCA3).
    """
    instrument = instrument.upper()
    rows = [r for r in subarray_rows(instrument, subarray) if r["SciColumns"] and r["SciRows"]]
    if instrument == "NIRSPEC":
        rows = [r for r in rows if r["NRSDisperser"]]
    if not rows:
        return None
    note = ""
    if instrument == "NIRSPEC":
        want = (disperser or "").upper()
        chosen = [r for r in rows if str(r["NRSDisperser"]).upper() == want]
        if not chosen:
            chosen = [r for r in rows if str(r["NRSDisperser"]).upper() == "MIRROR"] or rows
            note = (f"PRD has no {subarray.upper()} row for disperser {want or 'N/A'}; "
                    f"{chosen[0]['NRSDisperser']}'s window used")
        rows = chosen
    for r in rows:
        corner = _corner(instrument, r, detector)
        if corner is not None:
            return PrdWindow(*corner, int(r["SciColumns"]), int(r["SciRows"]), note)
    # defined on another detector only: that detector's window, said so
    for r in rows:
        for other in _detectors_of(instrument, r):
            corner = _corner(instrument, r, other)
            if corner is not None:
                extra = (f"the PRD defines {subarray.upper()} on {other} only; its window is used "
                         f"on {detector.upper()}")
                return PrdWindow(*corner, int(r["SciColumns"]), int(r["SciRows"]),
                                 "; ".join(n for n in (note, extra) if n))
    return None


def _detectors_of(instrument: str, row: dict) -> list[str]:
    if instrument == "NIRCAM" and row["NRCDetector"]:
        d = str(row["NRCDetector"]).upper()
        return [{"A5": "NRCALONG", "B5": "NRCBLONG"}.get(d, f"NRC{d}")]
    if instrument == "NIRSPEC":
        return ["NRS1", "NRS2"]
    if instrument == "FGS":
        return ["GUIDER1", "GUIDER2"]
    return []
