"""A new CRDS context remakes exactly what it makes stale; campaigns, what-if, status,
comparisons, software staleness. Eager execution, on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import select, update
from typer.testing import CliRunner

from archive.catalog.db import session_scope
from archive.catalog.models import Campaign, CampaignExposure, Exposure, Job, Product, ProductComparison
from archive.cli import app
from archive.crds import cache as crdscache
from archive.crds.references import use_context
from archive.ingest.batch import ingest
from archive.ingest.pools import pool_rows
from archive.ingest.storage import sha256_file
from archive.reprocessing.planner import plan, plan_and_send
from archive.reprocessing.stale import RmapSelector
from calib.pipelines import required_reftypes
from simulation.pools import simulate_pool

from .conftest import shared
from .test_end_to_end import write_pool


@pytest.fixture(scope="module")
def two_detectors(tmp_path_factory):
    """Three SUB160 NIRCam exposures of pool_003 on three detectors (NRCA1, NRCB1, NRCA4)."""
    root = tmp_path_factory.mktemp("sim2")
    rows = pool_rows(shared("pools", "pool_003_image_nircam.csv"))[:3]
    for r in rows:
        r["SUBARRAY"] = "sub160"
    pool = root / "pool.csv"
    write_pool(pool, rows)
    result = simulate_pool(pool, root / "incoming", root / "crds", seed=11, ngroups=5, nints=2)
    return pool, result, root / "crds"


def _cli(s, *args):
    r = CliRunner().invoke(app, ["--data-dir", str(s.data_dir), *map(str, args)], catch_exceptions=False)
    return r


@pytest.fixture
def env(settings, two_detectors, monkeypatch, tmp_path):
    pool, result, crds_src = two_detectors
    crds_path = tmp_path / "crds"  # a private copy: this test adds contexts to it
    shutil.copytree(crds_src, crds_path)
    s = settings.with_(crds_path=crds_path)
    monkeypatch.setenv("ARCHIVE_DB_URL", s.db_url)
    monkeypatch.setenv("CRDS_PATH", str(crds_path))
    assert ingest(s, result.files, pool_path=pool).ok
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    p, out = plan_and_send(s)
    assert sorted(out.values()) == ["succeeded"] * 3
    return s, result


def _products(s):
    with session_scope(s.db_url) as db:
        return {p.id: (e.filename, p.suffix, str(s.data_dir / p.path), p.sha256, bool(p.is_current),
                       p.stale_campaign_id)
                for p, e in db.execute(select(Product, Exposure).join(Exposure, Exposure.id == Product.exposure_id))}


def test_first_step_comes_from_the_step_declarations():
    from archive.reprocessing.stale import first_step

    nrc = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1"}
    # saturation reads the superbias (near-IR read-pattern test) before the superbias step
    assert first_step("calwebb_detector1", nrc, ["superbias"]) == "saturation"
    assert first_step("calwebb_detector1", nrc, ["dark", "linearity"]) == "linearity"
    assert first_step("calwebb_detector1", nrc, ["gain"]) == "jump"
    miri = {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE"}
    assert first_step("calwebb_detector1", miri, ["rscd"]) == "rscd"
    assert first_step("calwebb_detector1", miri, ["superbias"]) is None      # MIRI reads none
    # emicorr is skipped by default: its reference restarts nothing
    assert first_step("calwebb_detector1", miri, ["emicorr"]) is None


def test_superbias_change_restarts_at_saturation(env, tmp_path):
    s, result = env
    crdscache.configure(s.crds_path)
    target = result.files[1].name
    det = fits.getheader(result.files[1])["DETECTOR"]
    old = result.references[target]["superbias"]
    new = tmp_path / f"jwst_sim_nircam_superbias_{det.lower()}_v2.fits"
    with fits.open(crdscache.locate(old)) as hdul:
        hdul["SCI"].data = hdul["SCI"].data + np.float32(3.0)
        hdul.writeto(new)
    new_ctx = crdscache.derive_context(s.crds_path, result.context, {("nircam", "superbias", det): new})
    assert _cli(s, "crds", "add", new_ctx).exit_code == 0
    r = _cli(s, "crds", "use", new_ctx, "--json")
    assert r.exit_code == 0, r.output
    with session_scope(s.db_url) as db:
        ce = db.execute(select(CampaignExposure)).scalar_one()
        assert db.get(Exposure, ce.exposure_id).filename == target
        assert [c["reftype"] for c in ce.changes] == ["superbias"]
        assert ce.first_step == "saturation"


def test_context_change_on_one_detector_remakes_only_that_detector(env, tmp_path):
    s, result = env
    before = _products(s)
    assert len(before) == 6  # rate + rateints of 3 exposures
    crdscache.configure(s.crds_path)
    target = result.files[0].name  # NRCA1
    old_dark = result.references[target]["dark"]
    new_dark = tmp_path / "jwst_sim_nircam_dark_nrca1_v2.fits"
    with fits.open(crdscache.locate(old_dark)) as hdul:  # 0.5 DN more dark per frame
        hdul["SCI"].data = hdul["SCI"].data + 0.5 * np.arange(hdul["SCI"].data.shape[0],
                                                              dtype=np.float32)[:, None, None]
        hdul.writeto(new_dark)
    new_ctx = crdscache.derive_context(s.crds_path, result.context, {("nircam", "dark", "NRCA1"): new_dark})

    # crds add: registered, and a preview of what would change; nothing stale yet
    r = _cli(s, "crds", "add", new_ctx, "--json")
    assert r.exit_code == 0, r.output
    preview = json.loads(r.output[r.output.index("{"):])
    assert preview["stale_exposures"] == 1 and preview["changed_reftypes"] == {"nircam": ["dark"]}
    assert _products(s) == before

    # our crds selector agrees with crds.getrecommendations for every exposure and reftype
    for f in result.files:
        hdr = dict(fits.getheader(f))
        hdr.update(fits.getheader(f, "SCI"))
        rts = required_reftypes("calwebb_detector1", hdr)
        want = crdscache.bestrefs(hdr, new_ctx, rts)
        assert {rt: RmapSelector(new_ctx, "nircam", rt).best(hdr) for rt in rts} == want

    r = _cli(s, "crds", "use", new_ctx, "--json")
    assert r.exit_code == 0, r.output
    with session_scope(s.db_url) as db:
        camp = db.execute(select(Campaign)).scalar_one()
        assert (camp.kind, camp.status) == ("context", "open")
        ce = db.execute(select(CampaignExposure)).scalar_one()
        assert db.get(Exposure, ce.exposure_id).filename == target
        assert ce.changes == [{"instrument": "nircam", "reftype": "dark", "old": old_dark, "new": new_dark.name}]
        assert ce.first_step == "dark_current"
        cid = camp.id
    stale = {(v[0], v[1]) for v in _products(s).values() if v[5] is not None}
    assert stale == {(target, "rate"), (target, "rateints")}

    # the README's stale-products query
    from archive.catalog.provenance import readonly_query

    cols, rows = readonly_query(s, """SELECT p.filename, c.reason, ce.changes, ce.first_step FROM products p
             JOIN campaign_exposures ce ON ce.campaign_id = p.stale_campaign_id AND ce.exposure_id = p.exposure_id
             JOIN campaigns c ON c.id = ce.campaign_id WHERE p.is_current""")
    root = target[: -len("_uncal.fits")]
    assert sorted((r[0], r[3]) for r in rows) == [(f"{root}_rate.fits", "dark_current"),
                                                  (f"{root}_rateints.fits", "dark_current")]

    # the what-if view names the change and estimates a cost from the jobs already run
    r = _cli(s, "plan", "--campaign", cid, "--json")
    assert r.exit_code == 0, r.output
    w = json.loads(r.output)
    assert w["jobs"] == 1 and w["by_first_step"] == {"dark_current": 1}
    assert w["by_change"] == {f"nircam dark {old_dark} -> {new_dark.name}": 1}
    assert w["est_core_seconds"] and w["est_core_seconds"] > 0 and w["basis"] == {"same shape": 1}

    r = _cli(s, "reprocess", "--stale", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(x["exposure"], x["action"], x["result"]) for x in rows] == [(target, "new", "succeeded")]

    after = _products(s)
    assert len(after) == 8  # two new products, nothing removed
    for pid, (name, suffix, path, sha, _current, _stale) in before.items():
        if name == target:
            assert not after[pid][4]  # superseded
        else:  # untouched: same row, same path, same checksum, still current and fresh
            assert after[pid] == (name, suffix, path, sha, True, None)
            assert sha256_file(path) == sha
    old_rate = next(pid for pid, v in before.items() if v[:2] == (target, "rate"))
    with session_scope(s.db_url) as db:
        new = db.execute(select(Product).where(Product.is_current.is_(True), Product.suffix == "rate")
                         .join(Exposure, Exposure.id == Product.exposure_id)
                         .where(Exposure.filename == target)).scalar_one()
        assert new.supersedes_id == old_rate and new.stale_campaign_id is None
        assert db.get(Job, new.job_id).campaign_id == cid
        comps = {c.extension: c for c in db.execute(select(ProductComparison)
                                                    .where(ProductComparison.product_id == new.id)).scalars()}
        new_path = s.data_dir / new.path
    assert fits.getheader(new_path)["R_DARK"] == f"crds://{new_dark.name}"
    assert set(comps) >= {"SCI", "ERR", "DQ"}
    # 0.5 DN/frame more dark -> every science pixel's rate drops: changed, by a fraction of ERR
    assert comps["SCI"].frac_changed > 0.9
    assert comps["SCI"].median_dev_over_err > 0 and comps["SCI"].p99_dev_over_err >= comps["SCI"].median_dev_over_err
    sci_new = fits.getdata(new_path, "SCI")
    sci_old = fits.getdata(before[old_rate][2], "SCI")
    same = (sci_new == sci_old) | (np.isnan(sci_new) & np.isnan(sci_old))
    assert comps["SCI"].frac_changed == pytest.approx(1 - same.mean())
    ok = np.isfinite(sci_new) & np.isfinite(sci_old)
    assert np.median((sci_new - sci_old)[ok]) < 0

    # provenance shows the comparison; status shows the campaign done; nothing owed
    r = _cli(s, "provenance", new_path, "--json")
    assert r.exit_code == 0, r.output
    lin = json.loads(r.output)["products"][0]
    assert {c["extension"] for c in lin["comparison_with_superseded"]} >= {"SCI", "DQ"}
    r = _cli(s, "status", "--campaign", cid, "--json")
    st = json.loads(r.output)["status"]
    assert st["counts"]["succeeded"] == 1 and st["counts"]["failed"] == 0 and st["counts"]["never_run"] == 0
    assert st["state"] == "done"
    assert plan(s, dry_run=True).count("current") == 3


def test_software_staleness_only_when_asked(env):
    s, result = env
    with session_scope(s.db_url) as db:  # pretend one product was made by an older release
        job_id = db.execute(select(Job.id).order_by(Job.id)).scalars().first()
        db.execute(update(Job).where(Job.id == job_id).values(cal_version="0.0.1"))
    assert plan(s, dry_run=True).count("current") == 3  # new software alone owes nothing
    r = _cli(s, "reprocess", "--stale", "--dry-run", "--json")
    assert r.exit_code == 0 and json.loads(r.output) == []
    r = _cli(s, "reprocess", "--stale-software", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert _products(s) and all(v[5] is None for v in _products(s).values())  # dry run marks nothing
    r = _cli(s, "plan", "--stale", "--json")
    assert json.loads(r.output)["jobs"] == 0
    from archive.reprocessing.campaigns import mark_software_stale

    rep = mark_software_stale(s)
    assert rep.stale_exposures == 1 and rep.campaign_id
    with session_scope(s.db_url) as db:
        ce = db.execute(select(CampaignExposure)).scalar_one()
        assert ce.changes[0]["old"] == "0.0.1" and ce.first_step == "group_scale"
    w = json.loads(_cli(s, "plan", "--campaign", rep.campaign_id, "--json").output)
    assert w["jobs"] == 1 and w["by_first_step"] == {"group_scale": 1}
    p = plan(s, dry_run=True, stale_only=True)
    assert [i.action for i in p.items] == ["new"]


def test_reprocess_context_must_be_in_use(env):
    s, result = env
    r = _cli(s, "reprocess", "--context", "jwst_sim_9999.pmap", "--dry-run")
    assert r.exit_code == 2


def test_rmap_selector_agrees_with_crds_on_a_real_context(tmp_path):
    """Our memoised selection (by parkeys, dates by USEAFTER interval) gives what
    crds.getrecommendations gives, on the real jwst_0541 context and real NIRCam and FGS
    headers, for dates on, just before and just after the rmaps' USEAFTER boundaries."""
    cache = tmp_path / "crds"
    crdscache.install_real_context(cache, shared("crds", "mappings"))
    crdscache.configure(cache)
    headers = []
    for name in ("jw01075001001_03105_00009_nrca2_uncal.fits", "jw01075001001_03105_00009_nrca4_uncal.fits"):
        f = shared("headers", name)
        h = dict(fits.getheader(f))
        h.update(fits.getheader(f, 1))
        headers.append({k: v for k, v in h.items() if k not in ("", "COMMENT", "HISTORY")})
    reftypes = ["mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise"]
    selectors = {rt: RmapSelector("jwst_0541.pmap", "nircam", rt) for rt in reftypes}
    boundaries = sorted({d for sel in selectors.values() for d in (sel._useafter or [])})
    assert len(boundaries) > 3  # a real context: several USEAFTER dates
    picks = boundaries[:: max(1, len(boundaries) // 4)][:4]
    cases = []
    for b in picks:
        day, clock = b.split(" ")
        cases += [(day, clock), (day, "23:59:59.999")]
        prev = f"{int(day[:4]) - 1}{day[4:]}"
        cases.append((prev, clock))
    asked = 0
    for h in headers:
        for day, clock in cases:
            hh = dict(h, **{"DATE-OBS": day, "TIME-OBS": clock})
            want, got = {}, {}
            for rt in reftypes:  # before the first USEAFTER crds finds no match: both must say so
                try:
                    want[rt] = crdscache.bestrefs(hh, "jwst_0541.pmap", [rt])[rt]
                except crdscache.BestrefsError:
                    want[rt] = "no match"
                try:
                    got[rt] = selectors[rt].best(hh)
                except crdscache.BestrefsError:
                    got[rt] = "no match"
            assert got == want, (day, clock)
            asked += 1
    assert sum(sel.calls for sel in selectors.values()) < asked * len(reftypes)  # the memo was used


def test_permanent_failure_is_recorded_once_and_not_redone(env):
    """crds cannot select for a header: the job fails at once naming the exposure, a
    duplicate message does nothing, beat-style planning leaves it failed, an explicit
    reprocess revives it."""
    from archive.catalog.models import BestRef
    from archive.execution.runner import PermanentJobError, execute_job

    s, result = env
    victim = result.files[1].name
    with session_scope(s.db_url) as db:
        exp = db.execute(select(Exposure).where(Exposure.filename == victim)).scalar_one()
        exp.header = dict(exp.header, DETECTOR="NRCZ9")  # no rule in the context matches it
        db.execute(BestRef.__table__.delete().where(BestRef.exposure_id == exp.id))
        db.execute(update(Job).where(Job.exposure_id == exp.id).values(cal_version="0.0.1"))
    from archive.reprocessing.campaigns import mark_software_stale

    assert mark_software_stale(s).stale_exposures == 1
    p = plan(s, stale_only=True, retry_failed=False)
    assert [(i.exposure, i.action) for i in p.items] == [(victim, "new")]
    job_id = p.job_ids[0]
    with pytest.raises(PermanentJobError, match=victim):
        execute_job(s, job_id)
    assert execute_job(s, job_id) == "skipped"  # a duplicate message
    with session_scope(s.db_url) as db:
        job = db.get(Job, job_id)
        assert (job.status, job.retryable, job.attempts) == ("failed", False, 1)
        assert victim in job.error and "best references" in job.error
    assert [i.action for i in plan(s, stale_only=True, retry_failed=False).items] == ["failed"]
    again = plan(s, dry_run=True)
    assert [(i.exposure, i.action) for i in again.items if i.action != "current"] == [(victim, "retry")]


def test_add_context_copies_its_closure_once(tmp_path):
    """``archive crds add C --from DIR``: the context and every mapping it names go into the
    cache; again, nothing is copied; a different file under a name already there is refused."""
    import crds

    src = shared("crds", "mappings")
    cache = tmp_path / "crds"
    n = crdscache.add_context(cache, "jwst_0541.pmap", src)
    assert n == len(list(src.glob("*map")))  # the whole closure: 1 pmap, 6 imaps, 117 rmaps
    assert crds.get_cached_mapping("jwst_0541.pmap").name == "jwst_0541.pmap"
    assert crdscache.add_context(cache, "jwst_0541.pmap", src) == 0
    other = tmp_path / "other"
    shutil.copytree(src, other)
    rmap = other / "jwst_nircam_dark_0031.rmap" if (other / "jwst_nircam_dark_0031.rmap").exists() \
        else sorted(other.glob("jwst_nircam_*.rmap"))[0]
    rmap.write_text(rmap.read_text() + "\n# edited\n")
    with pytest.raises(ValueError, match="other content"):
        crdscache.add_context(cache, "jwst_0541.pmap", other)
    with pytest.raises(FileNotFoundError):
        crdscache.add_context(cache, "jwst_9999.pmap", src)
