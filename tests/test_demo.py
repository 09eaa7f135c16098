"""The README's first command: ``archive demo`` on the embedded default (no servers)."""
from __future__ import annotations

import io

from rich.console import Console
from sqlalchemy import func, select


def test_demo_runs_the_main_job_and_a_campaign(tmp_path, monkeypatch):
    from archive.catalog.db import session_scope
    from archive.catalog.models import (Campaign, Exposure, IngestRejection, Job, Product, ProductComparison,
                                        ProductPreview)
    from simulation.demo import REAL_RAW, run_demo

    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG", "CRDS_PATH"):
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    assert run_demo(tmp_path, console=Console(file=out, width=200)) == 0, out.getvalue()
    text = out.getvalue()
    assert "which reference made which product" in text
    assert "the real FGS exposure by calwebb_guider: jw01019001001_gs-acq1_2022117003102_cal.fits" in text
    url = f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite'}"
    with session_scope(url) as db:
        assert db.scalar(select(func.count()).select_from(Exposure)) == 4  # 3 simulated + the real FGS
        assert db.scalar(select(func.count()).select_from(IngestRejection)) == 1  # the truncated file
        jobs = db.execute(select(Job).order_by(Job.id)).scalars().all()
        assert {j.status for j in jobs} == {"succeeded"}
        dark_campaign, flat_campaign = db.execute(select(Campaign).order_by(Campaign.id)).scalars().all()
        assert (dark_campaign.kind, dark_campaign.status) == ("context", "done")
        assert (flat_campaign.kind, flat_campaign.status) == ("context", "done")
        by_campaign = {}
        for j in jobs:
            by_campaign.setdefault(j.campaign_id, []).append(j.pipeline)
        # first run: stage 1 (3 detector1 + the real FGS by calwebb_guider); the re-delivered NRCA1
        # dark remakes the two NRCA1 rates; then stages 2 and 3 (the graph counts the NRCA1 cals
        # as the dark campaign's downstream work)
        assert sorted(by_campaign[None]) == sorted(["calwebb_detector1"] * 3 + ["calwebb_guider", "calwebb_image2"])
        assert sorted(by_campaign[dark_campaign.id]) == sorted(["calwebb_detector1"] * 2 + ["calwebb_image2"] * 2
                                                               + ["calwebb_image3"])
        # the re-delivered NRCB1 flat: that exposure's cal and the association's stage 3; no rate
        assert by_campaign[flat_campaign.id] == ["calwebb_image2", "calwebb_image3"]
        assert "rates untouched: True" in text
        # archive plan before it ran: one image2 job now, the image3 waiting for its cal
        assert "plan by stage: calwebb_image2 1 now, 0 waiting" in text
        assert "calwebb_image3 0 now, 1 waiting" in text
        current = sorted(db.execute(select(Product.suffix).where(Product.is_current.is_(True))).scalars())
        assert current == sorted(["rate"] * 3 + ["cal"] * 4 + ["i2d"] * 4 + ["crf"] * 3 + ["cat", "segm"])
        assert db.scalar(select(func.count()).select_from(Product).where(
            Product.is_current.is_(True), Product.stale_campaign_id.is_not(None))) == 0
        # every image product has its preview and thumbnail, stage-2/3 ones included
        image = db.execute(select(Product.id, Product.suffix).where(
            Product.is_current.is_(True), Product.suffix.in_(("rate", "cal", "i2d", "crf")))).all()
        drawn = {(pid, kind) for pid, kind in db.execute(select(ProductPreview.product_id, ProductPreview.kind))}
        assert len(image) == 14 and all((pid, kind) in drawn for pid, _ in image for kind in ("preview", "thumbnail"))
        fgs = db.execute(select(Product).join(Exposure, Exposure.id == Product.exposure_id).where(
            Exposure.filename == REAL_RAW, Product.suffix == "cal")).scalar_one()
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(tmp_path / 'data' / fgs.path)) as m:  # the guider product opens as jwst's class
        assert type(m) is datamodels.GuiderCalModel and m.data.shape == (6, 128, 128)
        assert m.meta.cal_step.guider_cds == "COMPLETE" and m.meta.ref_file.flat.name.startswith("crds://")
    with session_scope(url) as db:
        sci = db.execute(select(Product.suffix, ProductComparison)
                         .join(ProductComparison, ProductComparison.product_id == Product.id)
                         .where(ProductComparison.extension == "SCI")).all()
        by_suffix = {}
        for suffix, c in sci:
            by_suffix.setdefault(suffix, []).append(c)
        # the two NRCA1 rates remade with the new dark; after the new NRCB1 flat, that cal and
        # the stage-3 products remade from it, each compared with the one it superseded
        rates = by_suffix.pop("rate")
        assert len(rates) == 2 and all(c.frac_changed > 0.5 and c.median_dev_over_err > 0 for c in rates)
        assert len(by_suffix["cal"]) >= 1 and all(c.frac_changed > 0.5 for c in by_suffix["cal"])
        assert set(by_suffix) <= {"cal", "i2d", "crf", "segm"}, set(by_suffix)
