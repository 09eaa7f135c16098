"""The main job end to end on SQLite and on PostgreSQL: simulate, ingest, associate,
best references, calwebb_detector1, products, provenance."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import select

from archive.associations.associate import associate
from archive.associations.generator import generate
from archive.catalog.db import session_scope
from archive.catalog.models import (
    Association,
    AssociationMember,
    BestRef,
    Exposure,
    Job,
    Product,
    ProductReference,
    ReferenceFile,
)
from archive.catalog.provenance import lineage, readonly_query
from archive.crds import cache as crdscache
from archive.crds.references import use_context
from archive.execution.dispatch import get_dispatcher
from archive.ingest.batch import ingest
from archive.ingest.pools import pool_rows, read_pool
from archive.reprocessing.planner import plan
from simulation.pools import simulate_pool

from .conftest import shared

FGS = "jw01019001001_gs-acq1_2022117003102_uncal.fits"


def write_pool(path, rows: list[dict[str, str]]) -> None:
    cols = list(rows[0])
    with open(path, "w") as fh:
        fh.write("|".join(cols) + "\n")
        for r in rows:
            fh.write("|".join(r[c] for c in cols) + "\n")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Three NIRCam SUB160 exposures of the real pool_003 (NINTS 2, NGROUPS 6) and their CRDS
    cache, which also holds GUIDER2 references for the real FGS_ACQ1 exposure (calwebb_guider)."""
    root = tmp_path_factory.mktemp("sim")
    rows = pool_rows(shared("pools", "pool_003_image_nircam.csv"))[:3]
    for r in rows:
        r["SUBARRAY"] = "sub160"
    pool = root / "pool.csv"
    write_pool(pool, rows)
    result = simulate_pool(pool, root / "incoming", root / "crds", seed=3, ngroups=6, nints=2,
                           guider_detectors=("GUIDER2",))
    return pool, result, root / "crds"


@pytest.fixture
def archive_settings(settings, simulated):
    return settings.with_(crds_path=simulated[2])


def _ingest_and_use(s, simulated):
    pool, result, _ = simulated
    report = ingest(s, [*result.files, shared("raw", FGS)], pool_path=pool)
    assert report.ok, [o.reason for o in report.outcomes]
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    return pool, result


def test_main_job(archive_settings, simulated):
    s = archive_settings
    pool, result = _ingest_and_use(s, simulated)

    # associations from the catalog equal the jwst generator run directly on the pool
    report = associate(s)
    direct = generate(read_pool(pool))
    assert sorted(report.created) == sorted(a["asn_name"] for a in direct)
    with session_scope(s.db_url) as db:
        stored = {a.asn_name: a.content for a in db.execute(select(Association)).scalars()}
        n_members = len(db.execute(select(AssociationMember)).scalars().all())
    for a in direct:
        assert stored[a["asn_name"]] == a  # whole content, asn_pool included
    assert n_members == sum(len(p["members"]) for a in direct for p in a["products"])
    assert associate(s).created == []  # idempotent

    # the plan: three detector1 jobs and, for the real FGS_ACQ1 exposure, calwebb_guider
    dry = plan(s, dry_run=True)
    actions = {i.exposure: i.action for i in dry.items}
    pipelines = {i.exposure: i.pipeline for i in dry.items}
    assert pipelines[FGS] == "calwebb_guider" and {pipelines[f.name] for f in result.files} == {"calwebb_detector1"}
    assert sorted(k for k, v in actions.items() if v == "new") == sorted([FGS, *(f.name for f in result.files)])
    with session_scope(s.db_url) as db:
        assert db.execute(select(Job)).first() is None  # dry run wrote nothing

    p = plan(s)
    outcomes = get_dispatcher(s).send(p.job_ids)
    assert set(outcomes.values()) == {"succeeded"}, outcomes
    assert plan(s, dry_run=True).count("current") == 4  # nothing owed any more

    from stdatamodels.jwst import datamodels

    with session_scope(s.db_url) as db:
        products = db.execute(select(Product).order_by(Product.filename)).scalars().all()
        assert sorted(pr.suffix for pr in products) == ["cal"] + ["rate"] * 3 + ["rateints"] * 3
        for prod in products:
            exp = db.get(Exposure, prod.exposure_id)
            refs = {r.reftype: f.name for r, f in db.execute(
                select(ProductReference, ReferenceFile).join(ReferenceFile)
                .where(ProductReference.product_id == prod.id)).all()}
            # R_* keywords equal the catalog's references; S_* and provenance keywords present
            hdr = fits.getheader(s.data_dir / prod.path)
            r_kw = sorted(v for k, v in hdr.items() if k.startswith("R_") and str(v).startswith("crds://"))
            assert r_kw == sorted(f"crds://{v}" for v in refs.values())
            assert refs == (result.guider_references["GUIDER2"] if exp.filename == FGS
                            else result.references[exp.filename])
            assert hdr["CRDS_CTX"] == result.context
            assert hdr["CAL_VER"] and hdr["CRDS_VER"]
            assert hdr["S_DQINIT"] == "COMPLETE"
            assert hdr["S_GUICDS" if prod.suffix == "cal" else "S_RAMP"] == "COMPLETE"
            with datamodels.open(str(s.data_dir / prod.path)) as m:
                assert type(m).__name__ == {"rate": "ImageModel", "rateints": "CubeModel",
                                            "cal": "GuiderCalModel"}[prod.suffix]
                for reftype, name in refs.items():  # R_<REFTYPE> through the schema's keyword names
                    assert getattr(m.meta.ref_file, reftype).name == f"crds://{name}"
            # stored best references equal crds.getrecommendations for the same header
            best = {b.reftype: b.value for b in db.execute(select(BestRef).where(BestRef.exposure_id == exp.id))
                    .scalars()}
            import crds

            crdscache.configure(s.crds_path)
            header = {k: v for k, v in exp.header.items() if not k.startswith("_")}
            direct_best = crds.getrecommendations(header, context=result.context, observatory="jwst",
                                                  reftypes=list(best))
            assert best == {k: (v if not str(v).startswith("NOT FOUND") else "N/A") for k, v in direct_best.items()}

    # provenance, by product and by exposure
    rate = next(pr for pr in products if pr.suffix == "rate")
    info = lineage(s, rate.filename)["products"][0]
    assert info["crds_context"] == result.context
    assert {r["reftype"] for r in info["references"]} == set(result.references[info["inputs"][0]["exposure"]])
    assert all(r["sha256"] for r in info["references"])
    assert {"jwst-archive", "numpy", "numba", "astropy", "crds"} <= set(info["software_versions"])
    assert info["job"]["worker"]
    exp_info = lineage(s, result.files[0].name)
    assert exp_info["kind"] == "exposure" and exp_info["associations"]

    # the README's provenance queries
    cols, rows = readonly_query(s, f"SELECT product FROM product_reference_provenance WHERE reference = "
                                   f"'{result.references[result.files[0].name]['dark']}'")
    assert rows
    cols, rows = readonly_query(s, f"""SELECT e.filename FROM exposures e WHERE NOT EXISTS (
        SELECT 1 FROM product_provenance p WHERE p.exposure_id = e.id AND p.suffix = 'rate'
        AND p.is_current AND p.context = '{result.context}')""")
    assert [r[0] for r in rows] == [FGS]


def test_rate_recovers_truth_and_reruns_are_identical(archive_settings, simulated):
    s = archive_settings
    _, result = _ingest_and_use(s, simulated)
    p = plan(s, instrument="NIRCAM")
    assert set(get_dispatcher(s).send(p.job_ids).values()) == {"succeeded"}
    # the same calibration again, with the default jump threshold spelled out: a new job,
    # a new product that supersedes the first, and identical arrays
    p2 = plan(s, instrument="NIRCAM", pipeline="calwebb_detector1", params={"jump": {"rejection_threshold": 4.0}})
    assert p2.count("new") == 3
    assert set(get_dispatcher(s).send(p2.job_ids).values()) == {"succeeded"}
    with session_scope(s.db_url) as db:
        for exp in db.execute(select(Exposure).where(Exposure.instrume == "NIRCAM")).scalars():
            first, second = db.execute(select(Product).where(Product.exposure_id == exp.id, Product.suffix == "rate")
                                       .order_by(Product.id)).scalars().all()
            assert not first.is_current and second.is_current and second.supersedes_id == first.id
            assert first.path != second.path
            with fits.open(s.data_dir / first.path) as a, fits.open(s.data_dir / second.path) as b:
                for ext in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
                    np.testing.assert_array_equal(a[ext].data, b[ext].data)
            # truth recovery: (rate - truth) / ERR over good pixels is centred with unit width
            truth = np.load(result.truths[exp.filename])
            with fits.open(s.data_dir / second.path) as f:
                sci, err, dq = f["SCI"].data, f["ERR"].data, f["DQ"].data
            rate_true = truth["rate"]
            good = (dq & 1 == 0) & np.isfinite(sci) & (err > 0)
            z = (sci[good] - rate_true[good]) / err[good]
            assert good.sum() > 0.9 * good.size
            assert abs(np.median(z)) < 0.15, np.median(z)
            assert 0.8 < np.std(z[np.abs(z) < 10]) < 1.25, np.std(z)


def test_moved_data_directory_keeps_working(archive_settings, simulated, tmp_path):
    """The catalog stores paths relative to the data directory (and the CRDS cache): the
    whole tree moved elsewhere, re-ingest, provenance and a new job work from the new place."""
    s = archive_settings
    assert ingest(s, [shared("raw", FGS)]).ok
    with session_scope(s.db_url) as db:
        use_context(db, simulated[1].context)
    assert set(get_dispatcher(s).send(plan(s, exp_type="FGS_ACQ1").job_ids).values()) == {"succeeded"}
    with session_scope(s.db_url) as db:
        stored = [db.execute(select(Exposure.storage_path)).scalar_one(),
                  *db.execute(select(Product.path)).scalars(), *db.execute(select(Job.output_dir)).scalars()]
        refs = [r for r in db.execute(select(ReferenceFile.path)).scalars() if r]
    assert stored and refs and not any(Path(p).is_absolute() for p in stored + refs)

    moved = tmp_path / "elsewhere"
    shutil.move(s.data_dir, moved / "data")
    shutil.copytree(s.crds_path, moved / "crds")  # the module's cache stays for the other tests
    s2 = s.with_(data_dir=moved / "data", crds_path=moved / "crds")
    assert not (s.data_dir / stored[0]).exists()

    assert ingest(s2, [shared("raw", FGS)]).outcomes[0].status == "unchanged"
    info = lineage(s2, FGS)
    assert Path(info["exposure"]["storage_path"]).is_file()
    assert Path(info["exposure"]["storage_path"]).is_relative_to(s2.data_dir)
    for prod in info["products"]:
        assert Path(prod["path"]).is_file() and Path(prod["path"]).is_relative_to(s2.data_dir)
        for ref in prod["references"]:
            assert Path(ref["path"]).is_file() and Path(ref["path"]).is_relative_to(s2.crds_path)
    # a new job reads the raw file and the references from where they are now
    p = plan(s2, exp_type="FGS_ACQ1", pipeline="calwebb_guider", params={"flat_field": {"inverse": False}})
    assert p.count("new") == 1
    assert set(get_dispatcher(s2).send(p.job_ids).values()) == {"succeeded"}
    with session_scope(s.db_url) as db:
        newest = db.execute(select(Product).order_by(Product.id.desc())).scalars().first()
    assert (s2.data_dir / newest.path).is_file() and newest.supersedes_id is not None
