"""Job leases renewed by a heartbeat while the job runs (archive.execution.runner.LeaseHeartbeat).

On SQLite and the real PostgreSQL, with a short lease (4 s) and a calibration slowed by a
monkeypatched ``run_pipeline`` that waits several leases before running the real pipeline:

- a live worker keeps its job: the lease is renewed, the planner finds the job pending and
  another worker's claim gets nothing, the job is done once (attempts 1), and the
  heartbeat thread has ended when ``execute_job`` returns;
- an attempt that was taken over meanwhile (its lease expired and another worker claimed
  the job) sees its heartbeat stop and does not record; its directory is removed;
- the planner's re-queue of an expired lease is a conditional UPDATE: a lease renewed
  after the planner read the row stays pending.

A worker killed with SIGKILL still loses its lease once it expires: tests/test_faults.py.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from archive.catalog.db import session_scope
from archive.catalog.models import Job, Product, as_utc, utcnow
from archive.crds.references import use_context
from archive.execution import runner
from archive.ingest.batch import ingest
from archive.ingest.pools import pool_rows
from archive.reprocessing.graph import revive
from archive.reprocessing.planner import plan
from simulation.pools import simulate_pool

from .conftest import shared
from .test_end_to_end import write_pool

LEASE = 4  # seconds: the heartbeat renews every 4/3 s


@pytest.fixture(scope="module")
def one_exposure(tmp_path_factory):
    """One small NIRCam SUB160 exposure (NGROUPS 6, NINTS 2) of the real pool_003, and its CRDS cache."""
    root = tmp_path_factory.mktemp("lease")
    rows = pool_rows(shared("pools", "pool_003_image_nircam.csv"))[:1]
    rows[0]["SUBARRAY"] = "sub160"
    pool = root / "pool.csv"
    write_pool(pool, rows)
    result = simulate_pool(pool, root / "incoming", root / "crds", seed=5, ngroups=6, nints=2)
    return pool, result, root / "crds"


@pytest.fixture
def leased(settings, one_exposure):
    """Settings with a 4 s lease, the exposure ingested, its stage-1 job planned: (settings, job id)."""
    pool, result, crds_path = one_exposure
    s = settings.with_(crds_path=crds_path, lease_seconds=LEASE)
    assert ingest(s, result.files, pool_path=pool).ok
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    (job_id,) = plan(s).job_ids
    return s, job_id


def _row(s, job_id: int) -> Job:
    with session_scope(s.db_url) as db:
        return db.get(Job, job_id)


def _heartbeats(job_id: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"lease-heartbeat-job-{job_id}-")]


def _slowed(monkeypatch, during):
    """Make the calibration call ``during()`` (which takes its time) before running the real pipeline.

    ``calib.runner.run`` is what every way of running a pipeline calls (``run_pipeline`` and
    ``run_and_save`` import it when called), so the slowing holds whichever the worker uses.
    """
    import calib.runner

    real = calib.runner.run

    def slow_run(*args, **kw):
        during()
        return real(*args, **kw)

    monkeypatch.setattr(calib.runner, "run", slow_run)


def test_a_live_worker_keeps_its_job_past_the_lease(leased, monkeypatch):
    """The run lasts three leases: the heartbeat renews the lease, the planner says pending and a
    second worker's claim gets nothing; one attempt records; the heartbeat ends with the job."""
    s, job_id = leased
    seen: dict = {"leases": [], "threads": []}

    def during():
        seen["threads"] = _heartbeats(job_id)
        start = as_utc(_row(s, job_id).started_at)
        while utcnow() < start + timedelta(seconds=3 * LEASE):
            time.sleep(0.3)
            job = _row(s, job_id)
            seen["leases"].append((utcnow(), as_utc(job.lease_expires_at)))
        seen["plan"] = {i.job_id: i.action for i in plan(s).items}
        seen["other claim"] = runner._claim(s, job_id, "other:2")

    _slowed(monkeypatch, during)
    assert runner.execute_job(s, job_id, worker="live:1") == "succeeded"
    assert [t.name for t in seen["threads"]] == [f"lease-heartbeat-job-{job_id}-attempt-1"]
    assert not any(t.is_alive() for t in seen["threads"])     # stopped with the job
    assert not _heartbeats(job_id)
    assert all(now < expires for now, expires in seen["leases"])  # never seen expired
    assert seen["leases"][-1][1] > seen["leases"][0][1] + timedelta(seconds=LEASE)  # renewed, more than once
    assert seen["plan"][job_id] == "pending"
    assert seen["other claim"] is None
    job = _row(s, job_id)
    assert (job.status, job.attempts, job.worker, job.lease_expires_at) == ("succeeded", 1, "live:1", None)
    assert plan(s, dry_run=True).count("current") == 1


def test_a_taken_over_attempt_stops_its_heartbeat_and_does_not_record(leased, monkeypatch):
    """Mid-run the lease expires (as if the heartbeat could not reach the catalog) and another
    worker claims the job: the first attempt's heartbeat stops, the row stays the taker's, and
    the first attempt does not record (``duplicate``, its directory removed)."""
    s, job_id = leased
    seen: dict = {}

    def during():
        (heartbeat,) = _heartbeats(job_id)
        taker = None
        for _ in range(20):                       # the heartbeat may renew between the two
            with session_scope(s.db_url) as db:
                db.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
            taker = runner._claim(s, job_id, "taker:2")
            if taker is not None:
                break
        assert taker is not None and taker.attempt == 2
        heartbeat.join(timeout=60)                # its next beat finds the row taken over
        seen["heartbeat alive"] = heartbeat.is_alive()
        seen["taker"] = taker

    _slowed(monkeypatch, during)
    assert runner.execute_job(s, job_id, worker="slow:1") == "duplicate"
    assert seen["heartbeat alive"] is False
    taker = seen["taker"]
    job = _row(s, job_id)
    assert (job.status, job.attempts, job.worker) == ("running", 2, "taker:2")
    assert as_utc(job.lease_expires_at) == taker.started_at + timedelta(seconds=LEASE)  # the taker's, not renewed
    assert as_utc(job.started_at) == taker.started_at and s.data_dir / job.output_dir == taker.output_dir
    assert not (taker.output_dir.parent / f"job-{job_id}-attempt-1").exists()
    with session_scope(s.db_url) as db:
        assert db.execute(select(func.count()).select_from(Product)).scalar() == 0


def test_the_planner_leaves_a_lease_renewed_after_its_read(leased):
    """The planner read the job with an expired lease; the worker's heartbeat renewed it before
    the planner wrote: the job stays running (pending). Once it really expired it is re-queued,
    the heartbeat's next renewal fails, and the attempt may still record until another claim."""
    s, job_id = leased
    work = runner._claim(s, job_id, "w:1")
    with session_scope(s.db_url) as db:
        db.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    with session_scope(s.db_url) as db:
        job = db.get(Job, job_id)                 # the planner's read: expired
        assert runner._renew_lease(s, work, "w:1")  # the heartbeat, from another connection
        action, _detail, send = revive(job, now=utcnow(), broker_epoch=None, retry_failed=False, dry_run=False,
                                       requeue_before=utcnow())
        assert (action, send) == ("pending", False)
    assert _row(s, job_id).status == "running"
    with session_scope(s.db_url) as db:
        db.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert {i.job_id: i.action for i in plan(s).items}[job_id] == "requeue"
    assert _row(s, job_id).status == "queued"
    assert not runner._renew_lease(s, work, "w:1")  # the heartbeat would stop here
    assert runner._record(s, work, {}, {}, "w:1")    # not claimed again yet: the attempt records
    job = _row(s, job_id)
    assert (job.status, job.attempts, job.worker, job.lease_expires_at) == ("succeeded", 1, "w:1", None)
    assert runner._claim(s, job_id, "other:2") is None  # the re-sent message finds it done
