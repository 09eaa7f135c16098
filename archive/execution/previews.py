"""Previews in the catalog: the PNGs drawn from products (:mod:`calib.previews`) as rows.

The worker draws a product's previews right after writing it and records them with the
product (:mod:`archive.execution.runner`); :func:`make_previews` (``archive previews``)
draws and records them for products that have none (older products), or again for all.
A product whose preview cannot be drawn is reported and the batch goes on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select

from calib.previews import IMAGE_SUFFIXES, SPECTRUM_SUFFIXES, Preview, write_previews

from ..catalog.db import session_scope
from ..catalog.models import Product, ProductPreview
from ..catalog.paths import from_stored, to_stored
from ..config import Settings
from ..ingest.storage import sha256_file

log = logging.getLogger(__name__)

__all__ = ["PreviewReport", "draw_quietly", "make_previews", "preview_rows"]


def preview_rows(product_id: int, previews: list[Preview], data_dir: str | Path) -> list[ProductPreview]:
    """Catalog rows for the PNGs drawn from one product.

    Parameters
    ----------
    product_id : int
        ``products.id``.
    previews : list of Preview
        What :func:`calib.previews.write_previews` wrote.
    data_dir : str or Path
        The data root: paths are stored relative to it, as products' are.

    Returns
    -------
    list of ProductPreview
        Unsaved rows with the files' sha256, size and pixel size.
    """
    return [ProductPreview(product_id=product_id, kind=p.kind, path=to_stored(p.path, data_dir),
                           sha256=sha256_file(p.path),
                           size_bytes=Path(p.path).stat().st_size, width=p.width, height=p.height)
            for p in previews]


def draw_quietly(path: str | Path, suffix: str) -> list[Preview]:
    """Draw a new product's previews; a failure is logged, never fails the job.

    Parameters
    ----------
    path : str or Path
        The product file.
    suffix : str
        Its suffix.

    Returns
    -------
    list of Preview
        The PNGs written (empty when the suffix has none or drawing failed).
    """
    try:
        return write_previews(path, suffix)
    except Exception:
        log.exception("%s: preview not drawn", path)
        return []


@dataclass
class PreviewReport:
    """What ``archive previews`` did: products drawn, and those that failed with the reason."""

    drawn: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def make_previews(settings: Settings, redo: bool = False, current_only: bool = True) -> PreviewReport:
    """Draw and catalogue previews of existing products.

    Parameters
    ----------
    settings : Settings
        The archive's settings.
    redo : bool
        Draw again products that already have previews (their rows are replaced).
    current_only : bool
        Only current products (not the ones superseded).

    Returns
    -------
    PreviewReport
        File names drawn, and (file name, reason) of those that could not be.
    """
    report = PreviewReport()
    with session_scope(settings.db_url) as s:
        q = select(Product.id, Product.path, Product.filename, Product.suffix).where(
            Product.suffix.in_(sorted(IMAGE_SUFFIXES | SPECTRUM_SUFFIXES)))
        if current_only:
            q = q.where(Product.is_current.is_(True))
        if not redo:
            q = q.where(~select(ProductPreview.id).where(ProductPreview.product_id == Product.id).exists())
        todo = s.execute(q.order_by(Product.id)).all()
    for pid, path, filename, suffix in todo:
        try:
            previews = write_previews(from_stored(path, settings.data_dir), suffix)
            rows = preview_rows(pid, previews, settings.data_dir)
        except Exception as exc:  # one bad file never stops the batch
            report.failed.append((filename, f"{type(exc).__name__}: {exc}"))
            continue
        with session_scope(settings.db_url) as s:
            s.execute(delete(ProductPreview).where(ProductPreview.product_id == pid))
            s.add_all(rows)
        report.drawn.append(filename)
    return report
