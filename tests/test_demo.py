"""The README's first command: ``archive demo`` on the embedded default (no servers)."""
from __future__ import annotations

import io

from rich.console import Console
from sqlalchemy import func, select


def test_demo_runs_the_main_job_and_a_campaign(tmp_path, monkeypatch):
    from archive.catalog.db import session_scope
    from archive.catalog.models import Campaign, Exposure, IngestRejection, Job, Product, ProductComparison
    from simulation.demo import run_demo

    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG", "CRDS_PATH"):
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    assert run_demo(tmp_path, console=Console(file=out, width=200)) == 0, out.getvalue()
    text = out.getvalue()
    assert "which reference made which product" in text
    assert "the real FGS exposure by calwebb_guider: jw01019001001_gs-acq1_2022117003102_cal.fits" in text
    url = f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite'}"
    with session_scope(url) as db:
        assert db.scalar(select(func.count()).select_from(Exposure)) == 5  # 4 simulated + the real FGS
        assert db.scalar(select(func.count()).select_from(IngestRejection)) == 1  # the truncated file
        # 4 detector1 + 1 calwebb_guider (the real FGS_ACQ1 exposure) + the campaign's one
        assert db.execute(select(Job.status)).scalars().all() == ["succeeded"] * 6
        assert sorted(db.execute(select(Job.pipeline)).scalars()) == ["calwebb_detector1"] * 5 + ["calwebb_guider"]
        camp = db.execute(select(Campaign)).scalar_one()
        assert (camp.kind, camp.status) == ("context", "done")
        assert db.scalar(select(func.count()).select_from(Product).where(Product.is_current.is_(True))) == 5
        fgs = db.execute(select(Product).where(Product.suffix == "cal")).scalar_one()
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(tmp_path / 'data' / fgs.path)) as m:  # the guider product opens as jwst's class
        assert type(m) is datamodels.GuiderCalModel and m.data.shape == (6, 128, 128)
        assert m.meta.cal_step.guider_cds == "COMPLETE" and m.meta.ref_file.flat.name.startswith("crds://")
    with session_scope(url) as db:
        sci = db.execute(select(ProductComparison).where(ProductComparison.extension == "SCI")).scalar_one()
        assert sci.frac_changed > 0.5 and sci.median_dev_over_err > 0
