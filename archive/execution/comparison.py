"""Each new product compared with the one it supersedes, per extension.

The comparisons are stored in ``product_comparisons`` and shown by ``archive provenance``.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from ..catalog.db import session_scope
from ..catalog.paths import from_stored
from ..catalog.models import Product, ProductComparison
from ..config import Settings

log = logging.getLogger(__name__)


def compare_files(new_path: str | Path, old_path: str | Path) -> list[dict]:
    """Compare two products of the same exposure, extension by extension.

    Parameters
    ----------
    new_path, old_path : str or Path
        The new product and the one it supersedes.

    Returns
    -------
    list of dict
        One dict per extension present in both (SCI, ERR, VAR_POISSON, VAR_RNOISE, DQ),
        with the columns of ``product_comparisons``: n_pixels, frac_changed (value differs,
        NaN == NaN), and for SCI the median and 99th percentile of |new - old| / ERR_new
        (pixels with finite values and ERR_new > 0); for DQ, per flag name, the pixels
        that gained or lost it.

    Raises
    ------
    ValueError
        If the extensions have different shapes.
    """
    import numpy as np
    from astropy.io import fits

    from calib.dqflags import pixel as dq_flags  # name -> bit value (stdatamodels)

    out = []
    with fits.open(new_path, memmap=False) as new, fits.open(old_path, memmap=False) as old:
        names = [h.name for h in new[1:] if h.name in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE")]
        err = new["ERR"].data if "ERR" in new else None
        for ext in names:
            if ext not in old:
                continue
            a, b = new[ext].data, old[ext].data
            if a is None or b is None:
                continue
            if a.shape != b.shape:
                raise ValueError(f"{new_path} {ext}: shape {a.shape} differs from {old_path}'s {b.shape}")
            if ext == "DQ":
                a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
                gained, lost = {}, {}
                for name, bit in dq_flags.items():
                    if not bit:
                        continue
                    has_new, has_old = (a64 & np.uint64(bit)) != 0, (b64 & np.uint64(bit)) != 0
                    g = int(np.count_nonzero(has_new & ~has_old))
                    lo = int(np.count_nonzero(has_old & ~has_new))
                    if g:
                        gained[name] = g
                    if lo:
                        lost[name] = lo
                out.append({"extension": ext, "n_pixels": int(a.size), "frac_changed": float(np.mean(a != b)),
                            "median_dev_over_err": None, "p99_dev_over_err": None,
                            "dq_gained": gained, "dq_lost": lost})
                continue
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            row = {"extension": ext, "n_pixels": int(a.size), "frac_changed": float(1.0 - np.mean(same)),
                   "median_dev_over_err": None, "p99_dev_over_err": None, "dq_gained": None, "dq_lost": None}
            if ext == "SCI" and err is not None and err.shape == a.shape:
                ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(err) & (err > 0)
                if ok.any():
                    r = np.abs(a[ok].astype(np.float64) - b[ok]) / err[ok]
                    row["median_dev_over_err"] = float(np.median(r))
                    row["p99_dev_over_err"] = float(np.percentile(r, 99))
            out.append(row)
    return out


def compare_with_superseded(settings: Settings, job_id: int) -> int:
    """Store comparisons of each product of ``job_id`` with the product it supersedes.

    Parameters
    ----------
    settings : Settings
        The archive's settings (its catalog).
    job_id : int
        A succeeded job.

    Returns
    -------
    int
        The number of ``product_comparisons`` rows written: 0 when the job superseded
        nothing or its comparisons are stored already. A product that is no FITS image
        (``_cat.ecsv``) or whose arrays changed shape (a mosaic on a new grid) is left
        uncompared (logged).
    """
    with session_scope(settings.db_url) as s:
        made = select(Product).where(Product.job_id == job_id, Product.supersedes_id.is_not(None))
        pairs = [(p.id, from_stored(p.path, settings.data_dir), p.supersedes_id) for p in s.execute(made).scalars()]
        olds = {pid: from_stored(s.get(Product, sup).path, settings.data_dir) for pid, _, sup in pairs}
        done = {pid for (pid,) in s.execute(select(ProductComparison.product_id).where(
            ProductComparison.product_id.in_([p for p, _, _ in pairs])))}
    rows = []
    for pid, path, sup in pairs:
        if pid in done or not path.name.endswith(".fits"):  # a catalogue (_cat.ecsv) has no image to compare
            continue
        try:
            compared = compare_files(path, olds[pid])
        except ValueError as exc:  # e.g. a stage-3 mosaic on a new grid: nothing pixel by pixel to compare
            log.warning("product %s: not compared with product %s: %s", pid, sup, exc)
            continue
        for r in compared:
            rows.append({"product_id": pid, "previous_product_id": sup, "created_at": datetime.now(timezone.utc), **r})
    if rows:
        with session_scope(settings.db_url) as s:
            s.execute(ProductComparison.__table__.insert(), rows)
    return len(rows)
