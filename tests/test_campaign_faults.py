"""Campaigns with real processes: `archive worker` subprocesses through the real Redis,
catalog on a fresh PostgreSQL database.

(2) Redis restarted (it keeps nothing on disk) in the middle of a campaign: the planner
    sees the broker's new identity, re-sends what was lost, and the campaign completes,
    every job once.
(5) A context change affecting one detector: only that detector's exposures are remade
    by the worker; the other products stay current and untouched (same path, checksum).

The Redis test stops the server the machine runs and always starts it again with the
same options (no persistence), leaving it as it found it.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import select, update

from archive.catalog.db import session_scope
from archive.catalog.models import Exposure, Job, Product
from archive.crds import cache as crdscache
from archive.execution.dispatch import get_dispatcher
from archive.ingest.pools import pool_rows
from archive.ingest.storage import sha256_file
from archive.reprocessing.campaigns import mark_software_stale, switch_context
from archive.reprocessing.planner import plan_and_send
from archive.reprocessing.status import campaign_status
from simulation.pools import simulate_pool

from .conftest import shared
from .test_end_to_end import write_pool
from .test_faults import make_archive  # noqa: F401 - fixture

N = 8
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
               "--appendonly", "no"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Eight NIRCam SUB160 exposures (NGROUPS 6, NINTS 2), four on NRCA1, four on NRCB1."""
    root = tmp_path_factory.mktemp("campfaults")
    base = pool_rows(shared("pools", "pool_003_image_nircam.csv"))
    rows = []
    for i in range(N):
        r = dict(base[i % len(base)])
        r.update(SUBARRAY="sub160", DETECTOR=("nrca1", "nrcb1")[i % 2], FILENAME=f"jw_{i + 1:05d}_uncal.fits")
        rows.append(r)
    pool = root / "pool.csv"
    write_pool(pool, rows)
    result = simulate_pool(pool, root / "incoming", root / "crds", seed=21, ngroups=6, nints=2)
    return pool, result, root / "crds"


def _redis(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args], capture_output=True, text=True,
                          timeout=20)


def _redis_up() -> bool:
    return _redis("ping").stdout.strip() == "PONG"


def _restart_redis() -> None:
    _redis("shutdown", "nosave")
    deadline = time.monotonic() + 20
    while _redis_up() and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(REDIS_START, check=True, timeout=20)
    deadline = time.monotonic() + 20
    while not _redis_up():
        assert time.monotonic() < deadline, "redis did not come back"
        time.sleep(0.1)


def _eager_first_pass(a) -> None:
    """Calibrate everything once in-process (the products a campaign will remake)."""
    s = a.settings.with_(broker_url=None)
    p, out = plan_and_send(s, get_dispatcher(s))
    assert sorted(out.values()) == ["succeeded"] * N, out


def test_redis_restart_in_the_middle_of_a_campaign(small, make_archive):  # noqa: F811
    pool, result, crds_path = small
    a = make_archive(crds_path)
    a.ingest(pool, result.files, result.context)
    _eager_first_pass(a)
    with session_scope(a.settings.db_url) as db:  # the products were made by an older release
        db.execute(update(Job).values(cal_version="0.0.1"))
    campaign = mark_software_stale(a.settings).campaign_id
    assert campaign

    dispatcher = get_dispatcher(a.settings)
    epoch = dispatcher.epoch()
    p, out = plan_and_send(a.settings, dispatcher, stale_only=True, retry_failed=False)
    assert len(p.job_ids) == N and set(out.values()) == {"enqueued"}
    assert plan_and_send(a.settings, dispatcher, stale_only=True)[0].job_ids == []  # queued: not sent twice
    try:
        w = a.worker("w1")
        a.wait(lambda jobs: sum(j.status == "succeeded" and j.campaign_id == campaign for j in jobs.values()) >= 2,
               240, "two campaign jobs done", procs=[w])
        _restart_redis()
        assert dispatcher.epoch() != epoch
        lost = _redis("llen", a.queue).stdout.strip()
        assert lost == "0"  # the queued messages are gone with the old server
        # the planner notices the broker's new identity and re-sends every queued job
        p2, _ = plan_and_send(a.settings, dispatcher, stale_only=True, retry_failed=False)
        assert p2.count("requeue") >= 1
        assert {i.detail for i in p2.items if i.action == "requeue"} == {"the broker restarted since it was sent"}
        done = a.wait(lambda jobs: all(j.status == "succeeded" for j in jobs.values()), 300,
                      "the campaign to complete", procs=[w],
                      tick=lambda: plan_and_send(a.settings, dispatcher, stale_only=True, retry_failed=False))
    finally:
        if not _redis_up():
            subprocess.run(REDIS_START, check=True, timeout=20)
    campaign_jobs = [j for j in done.values() if j.campaign_id == campaign]
    assert len(campaign_jobs) == N
    with session_scope(a.settings.db_url) as db:
        current = db.execute(select(Product).where(Product.is_current.is_(True))).scalars().all()
        assert len(current) == 2 * N
        assert {p.job_id for p in current} == {j.id for j in campaign_jobs}  # each remade once, none twice
        assert all(p.stale_campaign_id is None for p in current)
        all_products = db.execute(select(Product)).scalars().all()
        assert len(all_products) == 4 * N  # the first pass and the campaign, nothing duplicated
    st = campaign_status(a.settings, campaign)
    assert st.state == "done" and st.counts["succeeded"] == N and st.counts["failed"] == 0


def test_context_change_on_one_detector_through_a_worker(small, make_archive, tmp_path):  # noqa: F811
    pool, result, crds_src = small
    crds_path = tmp_path / "crds"
    shutil.copytree(crds_src, crds_path)
    a = make_archive(crds_path)
    a.ingest(pool, result.files, result.context)
    dispatcher = get_dispatcher(a.settings)
    w = a.worker("w1")
    p, _ = plan_and_send(a.settings, dispatcher)
    assert len(p.job_ids) == N
    a.wait(lambda jobs: all(j.status == "succeeded" for j in jobs.values()), 300, "first pass", procs=[w])
    with session_scope(a.settings.db_url) as db:
        before = {(e.detector, p.path): p.sha256 for p, e in db.execute(
            select(Product, Exposure).join(Exposure, Exposure.id == Product.exposure_id))}
    crdscache.configure(crds_path)
    a1 = next(f.name for f in result.files if fits.getheader(f)["DETECTOR"] == "NRCA1")
    new_dark = tmp_path / "jwst_sim_nircam_dark_nrca1_v3.fits"
    with fits.open(crdscache.locate(result.references[a1]["dark"])) as h:
        h["SCI"].data = h["SCI"].data + np.float32(0.25) * np.arange(h["SCI"].data.shape[0],
                                                                     dtype=np.float32)[:, None, None]
        h.writeto(new_dark)
    ctx = crdscache.derive_context(crds_path, result.context, {("nircam", "dark", "NRCA1"): new_dark})
    report = switch_context(a.settings, ctx)
    assert report.stale_exposures == N // 2 and report.campaign_id
    p2, _ = plan_and_send(a.settings, dispatcher, stale_only=True, retry_failed=False)
    assert len(p2.job_ids) == N // 2
    a.wait(lambda jobs: len(jobs) == N + N // 2 and all(j.status == "succeeded" for j in jobs.values()),
           300, "the campaign", procs=[w])
    with session_scope(a.settings.db_url) as db:
        rows = db.execute(select(Product, Exposure).join(Exposure, Exposure.id == Product.exposure_id)).all()
        for prod, exp in rows:
            if exp.detector == "NRCB1":  # untouched: the same rows, still current, same files
                assert (exp.detector, prod.path) in before and prod.is_current and prod.stale_campaign_id is None
                assert sha256_file(a.stored(prod.path)) == before[(exp.detector, prod.path)] == prod.sha256
            elif (exp.detector, prod.path) in before:
                assert not prod.is_current  # superseded by the campaign's product
            else:
                assert prod.is_current and prod.supersedes_id is not None
                assert fits.getheader(a.stored(prod.path))["R_DARK"] == f"crds://{new_dark.name}"
        assert sum(1 for prod, exp in rows if exp.detector == "NRCB1") == N  # 4 exposures x 2 products
    assert campaign_status(a.settings, report.campaign_id).state == "done"
