"""The product graph (issue 10, items 2-4): stage 2 and 3 from associations, the jwst engine,
staleness through the graph, lineage.

One small NIRCam imaging program (three rows of a real pool: NRCA1 twice and NRCB1, SUB320,
NGROUPS 3, simulated with stars and the stage-2/3 references) goes raw -> rate (calib) -> cal
+ i2d (calwebb_image2: calib's when registered, else jwst's Image2Pipeline) -> i2d + cat +
segm + crf (jwst's Image3Pipeline, the jwst engine) on the SQLite in-process path; then a
re-delivered flat for one detector remakes that cal and the stage-3 products, and no rate.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from tests.conftest import SHARED, embedded_archive

POOL = SHARED / "pools" / "pool_003_image_nircam.csv"


def _small_pool(tmp, rows=(0, 1, 8)):
    from archive.ingest.pools import pool_rows

    src = pool_rows(POOL)
    out = [dict(src[i], SUBARRAY="sub320") for i in rows]
    pool = tmp / "jw99009_small_pool.csv"
    pool.write_text("|".join(out[0]) + "\n" + "".join("|".join(str(v) for v in r.values()) + "\n" for r in out))
    return pool


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A migrated SQLite archive with the simulated program ingested, associated, context in use."""
    from archive.associations.associate import associate
    from archive.catalog.db import session_scope
    from archive.crds.references import use_context
    from archive.ingest.batch import ingest
    from simulation.pools import simulate_pool

    base = tmp_path_factory.mktemp("graph")
    data = base / "data"
    s = embedded_archive(data)
    pool = _small_pool(base)
    with pytest.MonkeyPatch.context() as mp:          # enough stars in a subarray for tweakreg
        mp.setattr("simulation.imaging.STAR_DENSITY", 0.1)
        mp.setattr("simulation.imaging.MAX_STARS", 60000)
        sim = simulate_pool(pool, base / "raw", s.crds_path, seed=3, ngroups=3, imaging=True)
    ingest(s, sim.files, pool_path=pool)
    with session_scope(s.db_url) as db:
        use_context(db, sim.context)
    associate(s)
    return s, sim, base


def test_three_stages_in_process_then_a_new_flat(world, monkeypatch):
    from archive.catalog.db import session_scope
    from archive.catalog.models import Exposure, Job, JobInput, Product, ProductReference, ReferenceFile
    from archive.catalog.provenance import lineage
    from archive.crds import cache as crdscache
    from archive.execution.dispatch import get_dispatcher
    from archive.execution.engines import engine_for
    from archive.reprocessing.campaigns import switch_context
    from archive.reprocessing.planner import plan, plan_and_send
    from simulation import imaging_refs

    s, sim, base = world
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    first = plan(s, dry_run=True)
    actions = {(i.pipeline, i.action) for i in first.items}
    assert actions == {("calwebb_detector1", "new"), ("calwebb_image2", "waiting"), ("calwebb_image3", "waiting")}

    stage1 = plan(s, pipeline="calwebb_detector1")           # stage 1 only, as a broker would get it
    assert set(get_dispatcher(s).send(stage1.job_ids).values()) == {"succeeded"}
    # then what beat runs (stale work and the graph of what has started) takes stages 2 and 3
    _, outcomes = plan_and_send(s, get_dispatcher(s), stale_only=True, retry_failed=False)
    assert set(outcomes.values()) == {"succeeded"} and len(outcomes) == 4, outcomes
    with session_scope(s.db_url) as db:
        jobs = db.execute(select(Job).order_by(Job.id)).scalars().all()
        # stages 2 and 3 run natively when calib registers them, else through jwst: engine_for decides
        assert [(j.pipeline, j.engine) for j in jobs] == [("calwebb_detector1", "calib")] * 3 + [
            ("calwebb_image2", engine_for("calwebb_image2"))] * 3 + [("calwebb_image3", engine_for("calwebb_image3"))]
        assert all(j.software_versions["jwst"].startswith("3.") for j in jobs)
        current = db.execute(select(Product).where(Product.is_current.is_(True))).scalars().all()
        by_suffix = sorted(p.suffix for p in current)
        assert by_suffix == sorted(["rate"] * 3 + ["cal"] * 3 + ["i2d"] * 4 + ["crf"] * 3 + ["cat", "segm"])
        # stage-2 inputs: the members' current rates, with their checksums
        rates = {p.id: p for p in current if p.suffix == "rate"}
        cals = {p.id: p for p in current if p.suffix == "cal"}
        for job in jobs[3:6]:
            (ji,) = db.execute(select(JobInput).where(JobInput.job_id == job.id)).scalars().all()
            assert ji.product_id in rates and ji.sha256 == rates[ji.product_id].sha256
        ins = db.execute(select(JobInput).where(JobInput.job_id == jobs[6].id)).scalars().all()
        assert {ji.product_id for ji in ins} == set(cals) and all(ji.sha256 == cals[ji.product_id].sha256
                                                                  for ji in ins)
        cal_refs = set(db.execute(select(ProductReference.reftype).where(
            ProductReference.product_id == next(iter(cals)))).scalars())
        assert {"flat", "photom", "area", "distortion", "filteroffset"} <= cal_refs
        assert "dark" not in cal_refs           # stage 1's, carried in the rate's header: not this job's
        mosaic = next(p for p in current if p.suffix == "i2d" and p.exposure_id is None)
        # the lineage view: every raw exposure behind the mosaic, at depth 3
        raw = db.execute(text("SELECT DISTINCT exposure_id FROM product_lineage WHERE product_id = :p AND "
                              "input_product_id IS NULL"), {"p": mosaic.id}).scalars().all()
        assert sorted(raw) == sorted(db.execute(select(Exposure.id)).scalars())
        rates_before = {p.filename: p.id for p in rates.values()}
    from stdatamodels.jwst import datamodels

    from archive.catalog.paths import from_stored

    mosaic_path = str(from_stored(mosaic.path, s.data_dir))
    with datamodels.open(mosaic_path) as m:
        assert type(m) is datamodels.ImageModel and m.meta.cal_step.resample == "COMPLETE"
        assert m.meta.ref_file.crds.context_used == sim.context
    from astropy.table import Table

    cat = Table.read(mosaic_path.replace("_i2d.fits", "_cat.ecsv"))
    assert len(cat) > 0 and "sky_centroid" in cat.colnames

    prov = lineage(s, mosaic_path)["products"][0]
    up = prov["upstream"]
    assert sorted(e["exposure"] for e in up["raw_exposures"]) == sorted(f.name for f in sim.files)
    refs_by_pipeline = {}
    for p in up["products"]:
        refs_by_pipeline.setdefault(p["pipeline"], set()).update(r["reftype"] for r in p["references"])
    assert {"dark", "superbias", "linearity"} <= refs_by_pipeline["calwebb_detector1"]
    assert {"flat", "photom"} <= refs_by_pipeline["calwebb_image2"]
    json.dumps(prov)                                  # what `archive provenance --json` prints

    # a re-delivered flat for NRCB1 (one of the three exposures): that cal and the mosaic, no rate
    with session_scope(s.db_url) as db:
        exp = db.execute(select(Exposure).where(Exposure.detector == "NRCB1")).scalar_one()
        first_file = next(f for f in sim.files if f.name == exp.filename)
        det, filt, pupil = exp.detector, exp.filter, exp.pupil
        old_flat = db.execute(select(ReferenceFile.name).join(ProductReference).join(
            Product, Product.id == ProductReference.product_id).where(
            Product.exposure_id == exp.id, Product.suffix == "cal", ProductReference.reftype == "flat")).scalar_one()
    crdscache.configure(s.crds_path)
    flat = imaging_refs.write_flat(base / f"jwst_sim_nircam_flat_{det.lower()}_v2.fits", "NIRCAM", det, filt, pupil,
                                   seed=7, version=2)
    ctx = crdscache.derive_context(s.crds_path, sim.context, {("nircam", "flat", det): flat})
    report = switch_context(s, ctx)
    assert report.changed_reftypes == {"nircam": ["flat"]} and report.stale_exposures == 1
    assert report.by_change == {f"nircam flat {old_flat} -> {flat.name}": 1}
    with session_scope(s.db_url) as db:
        stale = sorted((p.filename, p.suffix) for p in db.execute(select(Product).where(
            Product.is_current.is_(True), Product.stale_campaign_id.is_not(None))).scalars())
    root = first_file.name.removesuffix("_uncal.fits")
    assert (f"{root}_cal.fits", "cal") in stale and not any(sfx == "rate" for _, sfx in stale)
    assert {sfx for _, sfx in stale} == {"cal", "i2d", "crf", "cat", "segm"}
    assert [f for f, sfx in stale if sfx == "cal"] == [f"{root}_cal.fits"]     # the NRCA1 cals stay current
    assert len([1 for _, sfx in stale if sfx == "crf"]) == 3      # every member's crf: the mosaic is remade

    p, outcomes = plan_and_send(s, get_dispatcher(s), stale_only=True, retry_failed=False)
    assert set(outcomes.values()) == {"succeeded"}, outcomes
    with session_scope(s.db_url) as db:
        new_jobs = db.execute(select(Job).where(Job.context_id != jobs[0].context_id).order_by(Job.id)).scalars().all()
        assert [j.pipeline for j in new_jobs] == ["calwebb_image2", "calwebb_image3"]
        assert all(j.campaign_id == report.campaign_id for j in new_jobs)
        now_rates = {p.filename: p.id for p in db.execute(select(Product).where(
            Product.is_current.is_(True), Product.suffix == "rate")).scalars()}
        assert now_rates == rates_before                        # stage 1 was not rerun
        assert db.scalar(select(func.count()).select_from(Product).where(
            Product.is_current.is_(True), Product.stale_campaign_id.is_not(None))) == 0
        new_cal = db.execute(select(Product).where(Product.is_current.is_(True), Product.suffix == "cal",
                                                   Product.exposure_id == exp.id)).scalar_one()
        assert db.execute(select(ReferenceFile.name).join(ProductReference).where(
            ProductReference.product_id == new_cal.id, ProductReference.reftype == "flat")).scalar_one() == flat.name
    again = plan(s, dry_run=True)
    assert {i.action for i in again.items} == {"current"}


def test_a_failed_member_holds_the_level3_back(world, monkeypatch):
    """After the first test: a new NRCA1 flat; one NRCA1 rate altered on disk fails its image2
    job for good, so the mosaic is held back and ``archive status`` says which and why."""
    from archive.catalog.db import session_scope
    from archive.catalog.models import Exposure, Job, Product
    from archive.crds import cache as crdscache
    from archive.execution.dispatch import get_dispatcher
    from archive.reprocessing.campaigns import switch_context
    from archive.reprocessing.planner import plan_and_send
    from archive.reprocessing.status import campaign_status
    from simulation import imaging_refs

    s, sim, base = world
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with session_scope(s.db_url) as db:
        exps = db.execute(select(Exposure).where(Exposure.detector == "NRCA1").order_by(Exposure.filename)
                          ).scalars().all()
        filt, pupil = exps[0].filter, exps[0].pupil
        bad = db.execute(select(Product).where(Product.exposure_id == exps[0].id, Product.suffix == "rate",
                                               Product.is_current.is_(True))).scalar_one()
        ctx_now = db.execute(text("SELECT name FROM crds_contexts WHERE in_use")).scalar_one()
    crdscache.configure(s.crds_path)
    flat = imaging_refs.write_flat(base / "jwst_sim_nircam_flat_nrca1_v3.fits", "NIRCAM", "NRCA1", filt, pupil,
                                   seed=8, version=3)
    report = switch_context(s, crdscache.derive_context(s.crds_path, ctx_now, {("nircam", "flat", "NRCA1"): flat}))
    assert report.stale_exposures == 2
    from archive.catalog.paths import from_stored

    with open(from_stored(bad.path, s.data_dir), "ab") as fh:     # changed on disk behind the catalog
        fh.write(b"\0" * 2880)
    _, outcomes = plan_and_send(s, get_dispatcher(s), stale_only=True, retry_failed=False)
    with session_scope(s.db_url) as db:
        failed = db.execute(select(Job).where(Job.status == "failed")).scalar_one()
        assert failed.pipeline == "calwebb_image2" and failed.retryable is False
        assert "has changed on disk" in failed.error
        assert len(outcomes) == 2 and sum(o == "succeeded" for o in outcomes.values()) == 1, outcomes
        assert not db.execute(select(Job).where(Job.pipeline == "calwebb_image3", Job.campaign_id ==
                                                report.campaign_id)).scalars().all()
    st = campaign_status(s)
    (asn, why), = st.held
    root = exps[0].filename.removesuffix("_uncal.fits")
    assert "image3" in asn and f"{root}_cal.fits" in why and f"job {failed.id}" in why and "changed on disk" in why


def test_lineage_view_and_downstream_on_both_catalogs(settings):
    """The recursive product_lineage view on SQLite and PostgreSQL: two raw exposures ->
    two rates -> two cals -> one mosaic; everything behind the mosaic, and what a rate feeds."""
    from archive.catalog.db import session_scope
    from archive.catalog.models import Association, CrdsContext, Exposure, Job, JobInput, Product
    from archive.reprocessing.stale import downstream_products

    with session_scope(settings.db_url) as db:
        ctx = CrdsContext(name="jwst_sim_0001.pmap")
        asn = Association(asn_name="jw1-o001_image3_00001_asn", asn_id="o001", asn_type="image3",
                          asn_rule="candidate_Asn_Lv3Image", level=3, product_name="jw1-o001_t001",
                          content={}, content_sha256="0" * 64, jwst_version="3.0.0")
        db.add_all([ctx, asn])
        db.flush()

        def job(pipeline, inputs, made, exposure=None):
            j = Job(pipeline=pipeline, context_id=ctx.id, cal_version="0", software_versions={}, parameters={},
                    param_hash="h", status="succeeded", exposure_id=exposure)
            db.add(j)
            db.flush()
            for eid, pid in inputs:
                db.add(JobInput(job_id=j.id, exposure_id=eid, product_id=pid, sha256="1" * 64))
            p = Product(job_id=j.id, exposure_id=exposure, filename=made, path=f"products/{j.id}/{made}",
                        suffix=made.rsplit("_", 1)[-1].split(".")[0], sha256="2" * 64, size_bytes=1,
                        association_id=asn.id if pipeline == "calwebb_image3" else None)
            db.add(p)
            db.flush()
            return p.id

        exps = []
        for k in (1, 2):
            e = Exposure(filename=f"jw_{k}_uncal.fits", sha256=str(k) * 64, size_bytes=1, storage_path="raw/x",
                         instrume="NIRCAM", exp_type="NRC_IMAGE", stage1_pipeline="calwebb_detector1", header={})
            db.add(e)
            db.flush()
            exps.append(e.id)
        rates = [job("calwebb_detector1", [(e, None)], f"jw_{k}_rate.fits", e) for k, e in enumerate(exps)]
        cals = [job("calwebb_image2", [(e, r)], f"jw_{k}_cal.fits", e)
                for k, (e, r) in enumerate(zip(exps, rates, strict=True))]
        mosaic = job("calwebb_image3", list(zip(exps, cals, strict=True)), "jw1-o001_t001_i2d.fits")
        rows = db.execute(text("SELECT input_product_id, exposure_id, depth FROM product_lineage "
                               "WHERE product_id = :p"), {"p": mosaic}).all()
        assert sorted((r[0], r[1], r[2]) for r in rows if r[0] is not None) == sorted(
            [(c, e, 1) for c, e in zip(cals, exps, strict=True)]
            + [(r, e, 2) for r, e in zip(rates, exps, strict=True)])
        assert sorted(r[1] for r in rows if r[0] is None) == sorted(exps)          # the raw exposures, depth 3
        assert {r[2] for r in rows if r[0] is None} == {3}
        assert downstream_products(db, [rates[0]]) == sorted([cals[0], mosaic])


def test_a_mode_without_references_fails_for_good_naming_them(world, tmp_path, monkeypatch):
    """Item 6: a spectroscopic job under a context made for imaging is a permanent failure
    whose message names the reftypes the context lacks for the mode and the context."""
    from astropy.io import fits

    from archive.catalog.db import session_scope
    from archive.catalog.models import Product
    from archive.catalog.paths import from_stored
    from archive.execution.dispatch import get_dispatcher
    from archive.execution.jwst_engine import MissingReferencesError, run_association
    from archive.reprocessing.planner import plan
    from calib.errors import CalibError

    s, sim, base = world
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    stage1 = plan(s, pipeline="calwebb_detector1")      # nothing to do after the tests above
    get_dispatcher(s).send(stage1.job_ids)
    with session_scope(s.db_url) as db:
        rate = db.execute(select(Product).where(Product.suffix == "rate", Product.is_current.is_(True))
                          .order_by(Product.id)).scalars().first()
        ctx = db.execute(text("SELECT name FROM crds_contexts WHERE in_use")).scalar_one()
    wfss = tmp_path / "jw_wfss_rate.fits"
    wfss.write_bytes(from_stored(rate.path, s.data_dir).read_bytes())
    fits.setval(wfss, "EXP_TYPE", value="NRC_WFSS")       # NIRCam grism: needs specwcs, wavelengthrange ...
    fits.setval(wfss, "PUPIL", value="GRISMR")
    asn = {"asn_type": "spec2", "asn_id": "a3001", "asn_pool": "jw99009_pool",
           "products": [{"name": "jw_wfss", "members": [{"expname": wfss.name, "exptype": "science"}]}]}
    with pytest.raises(MissingReferencesError) as info:
        run_association("calwebb_spec2", asn, {wfss.name: str(wfss)}, tmp_path / "out", s.crds_path, ctx)
    assert isinstance(info.value, CalibError)             # the runner records it as permanent
    msg = str(info.value)
    assert ctx in msg and "calwebb_spec2" in msg and "Traceback" not in msg
    assert {"flat", "photom"} <= set(info.value.reftypes)
    assert all("NRC_WFSS" in reason for reason in info.value.reftypes.values())
    assert all(r in msg for r in info.value.reftypes)
    # the plan's prediction (jwst's prefetch list, crds on the header) names the same reftypes
    from archive.crds import cache as crdscache
    from archive.execution.jwst_engine import prefetch_reftypes

    crdscache.configure(s.crds_path)
    predicted = crdscache.unselectable(dict(fits.getheader(wfss)) | dict(fits.getheader(wfss, "SCI")), ctx,
                                       prefetch_reftypes("calwebb_spec2"))
    assert set(predicted) == set(info.value.reftypes)   # (jwst's log adds the FITS keyword to the reason)


def test_the_plan_names_jobs_the_context_lacks_references_for(world, monkeypatch):
    """Item 6: before any job runs, ``archive plan`` says which planned stage-2 job cannot run
    (a NIRCam WFSS spec2 association under the imaging context), naming the missing reftypes
    and the context; the imaging jobs are not among them."""
    from archive.catalog.db import session_scope
    from archive.catalog.models import Association, AssociationMember, Exposure
    from archive.execution.jwst_engine import prefetch_reftypes
    from archive.reprocessing.whatif import what_if

    s, sim, base = world
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    spec2 = set(prefetch_reftypes("calwebb_spec2"))
    assert {"specwcs", "wavelengthrange", "flat", "photom", "extract1d", "pathloss"} <= spec2
    assert "dark" not in spec2 and not any(r.startswith("pars-") for r in spec2)
    with session_scope(s.db_url) as db:
        ctx = db.execute(text("SELECT name FROM crds_contexts WHERE in_use")).scalar_one()
        src = db.execute(select(Exposure).order_by(Exposure.id)).scalars().first()
        cols = {c.key: getattr(src, c.key) for c in Exposure.__table__.columns if c.key != "id"}
        root = "jw99009001001_03101_00001_nrcalong"
        header = dict(src.header, EXP_TYPE="NRC_WFSS", PUPIL="GRISMR", FILENAME=f"{root}_uncal.fits")
        wfss = Exposure(**dict(cols, filename=f"{root}_uncal.fits", exp_type="NRC_WFSS", pupil="GRISMR",
                               header=header, sha256="0" * 64))
        db.add(wfss)
        db.flush()
        asn = Association(asn_name="jw99009-o001_spec2_00001_asn", asn_id="o001", asn_type="spec2",
                          asn_rule="Asn_Lv2WFSS", level=2, program="99009", product_name=root,
                          content={"asn_type": "spec2"}, content_sha256="f" * 64, jwst_version="3.0.0")
        db.add(asn)
        db.flush()
        db.add(AssociationMember(association_id=asn.id, product_name=root, expname=f"{root}_rate.fits",
                                 exptype="science", exposure_id=wfss.id))
        ids = (wfss.id, asn.id)
    try:
        w = what_if(s)
    finally:
        with session_scope(s.db_url) as db:
            db.execute(text("DELETE FROM association_members WHERE association_id = :a"), {"a": ids[1]})
            db.execute(text("DELETE FROM associations WHERE id = :a"), {"a": ids[1]})
            db.execute(text("DELETE FROM exposures WHERE id = :e"), {"e": ids[0]})
    (group,) = w.lacking
    assert (group.pipeline, group.context, group.instrument, group.exp_type) == ("calwebb_spec2", ctx, "NIRCAM",
                                                                                  "NRC_WFSS")
    assert group.associations == ["jw99009-o001_spec2_00001_asn"]
    assert {"flat", "photom", "distortion"} <= set(group.reftypes) <= spec2
    assert all("NRC_WFSS" in why for why in group.reftypes.values())
    assert group.mode["META.EXPOSURE.TYPE"] == "NRC_WFSS"
    assert w.by_stage["calwebb_spec2"]["no_references"] == 1 and w.by_stage["calwebb_spec2"]["waiting"] == 0
    assert all(st["no_references"] == 0 for p, st in w.by_stage.items() if p != "calwebb_spec2")
