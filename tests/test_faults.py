"""Faults with real processes: `archive worker` subprocesses through the real Redis, the
catalog on a fresh PostgreSQL database per test.

(a) a worker killed with SIGKILL in the middle of jobs (first only its pool child, which
    makes Celery reject the message back to the queue; then the whole process group,
    which leaves the message unacknowledged): the planner re-enqueues the jobs whose
    lease expired, a second worker finishes them, every job succeeds once and no partial
    or unrecorded file remains;
(b) two workers and 50 jobs, every message sent twice: no job is done twice;
(c) a reference file corrupted on disk: its jobs fail once, naming the file, the others
    succeed.

Each test uses its own Celery queue and removes its Redis keys afterwards; the worker
processes run in their own sessions and their process groups are killed in a finally.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from archive.catalog.db import session_scope
from archive.catalog.models import Exposure, Job, Product, ProductPreview
from archive.crds.references import compute_bestrefs, context_in_use, use_context
from archive.execution.dispatch import get_dispatcher
from archive.ingest.batch import ingest
from archive.ingest.pools import pool_rows
from archive.reprocessing.planner import plan
from simulation.pools import simulate_pool

from .conftest import shared
from .test_end_to_end import write_pool

N_EXPOSURES = 50
DETECTORS = ("nrca1", "nrcb1")  # two detectors: two sets of reference files
SUFFIXES = ["rate", "rateints"]  # NINTS 2: both products per job


@pytest.fixture(scope="module")
def exposures(tmp_path_factory):
    """50 small NIRCam SUB160 exposures (NGROUPS 6, NINTS 2) on two detectors, from the
    rows of the real pool_003, and the CRDS cache that calibrates them."""
    root = tmp_path_factory.mktemp("faults")
    base = pool_rows(shared("pools", "pool_003_image_nircam.csv"))
    rows = []
    for i in range(N_EXPOSURES):
        r = dict(base[i % len(base)])
        r.update(SUBARRAY="sub160", DETECTOR=DETECTORS[i % 2], FILENAME=f"jw_{i + 1:05d}_uncal.fits")
        rows.append(r)
    pool = root / "pool.csv"
    write_pool(pool, rows)
    result = simulate_pool(pool, root / "incoming", root / "crds", seed=11, ngroups=6, nints=2)
    return pool, result, root / "crds"


def _purge_queue(url: str, queue: str) -> None:
    """Remove every Redis key of ``queue`` and its unacknowledged messages (kombu keeps
    those in the shared ``unacked`` hash until the visibility timeout)."""
    import redis

    r = redis.Redis.from_url(url)
    for key in list(r.scan_iter(match=f"*{queue}*")):
        r.delete(key)
    r.zrem("_kombu.binding_deadlines", queue)
    for member in list(r.smembers("_kombu.binding.celery.pidbox")):  # a killed worker's remote-control queue
        if queue.encode() in member:
            r.srem("_kombu.binding.celery.pidbox", member)
    for tag, raw in list(r.hscan_iter("unacked")):
        try:
            _, _, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key == queue:
            r.hdel("unacked", tag)
            r.zrem("unacked_index", tag)


class Archive:
    """One test's archive: data directory, catalog, queue, and the workers it started."""

    def __init__(self, tmp_path: Path, pg_url: str, redis_url: str, crds_path: Path, monkeypatch,
                 lease_seconds: int = 3600):
        from archive.catalog.db import upgrade
        from archive.config import load_settings

        self.tmp = tmp_path
        self.redis_url = redis_url
        self.queue = f"archive-faults-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "ARCHIVE_DATA_DIR": str(tmp_path / "data"), "ARCHIVE_DB_URL": pg_url,
                    "ARCHIVE_BROKER_URL": redis_url, "CRDS_PATH": str(crds_path), "ARCHIVE_QUEUE": self.queue,
                    "ARCHIVE_LEASE_SECONDS": str(lease_seconds), "NUMBA_NUM_THREADS": "1"}
        self.env.pop("CRDS_CONTEXT", None)
        self.env.pop("ARCHIVE_CONFIG", None)
        monkeypatch.delenv("CRDS_CONTEXT", raising=False)
        monkeypatch.delenv("ARCHIVE_CONFIG", raising=False)
        for k, v in self.env.items():
            if k.startswith("ARCHIVE_") or k == "CRDS_PATH":
                monkeypatch.setenv(k, v)
        self.settings = load_settings()
        upgrade(self.settings.db_url)
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def ingest(self, pool: Path, files: list[Path], context: str) -> None:
        assert ingest(self.settings, files, pool_path=pool).ok
        with session_scope(self.settings.db_url) as db:
            use_context(db, context)

    def worker(self, name: str, pool: str = "solo") -> subprocess.Popen:
        log_path = self.tmp / f"worker-{name}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "archive.cli", "worker", f"--pool={pool}", "--concurrency=1",
                 f"--hostname={name}-{self.queue}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((proc, log_path))
        return proc

    def stored(self, path: str) -> Path:
        """The absolute path of a path as the catalog stores it (relative to the data directory)."""
        from archive.catalog.paths import from_stored

        return from_stored(path, self.settings.data_dir)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for _, p in self.procs if p.exists())

    def check_alive(self, *procs: subprocess.Popen) -> None:
        for proc in procs:
            assert proc.poll() is None, f"worker {proc.pid} exited {proc.returncode}\n{self.logs()}"

    def jobs(self) -> dict[int, Job]:
        with session_scope(self.settings.db_url) as db:
            rows = db.execute(select(Job).order_by(Job.id)).scalars().all()
            db.expunge_all()
        return {j.id: j for j in rows}

    def products(self) -> list[Product]:
        with session_scope(self.settings.db_url) as db:
            rows = db.execute(select(Product).order_by(Product.id)).scalars().all()
            db.expunge_all()
        return rows

    def wait(self, predicate, timeout: float, what: str, procs=(), poll: float = 0.2, tick=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs()
            if predicate(jobs):
                return jobs
            self.check_alive(*procs)
            if tick:
                tick()
            time.sleep(poll)
        pytest.fail(f"timed out after {timeout} s waiting for {what}: "
                    f"{ {j.id: (j.status, j.attempts) for j in self.jobs().values()} }\n{self.logs()}")

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group: a pool child may outlive its parent
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        _purge_queue(self.redis_url, self.queue)

    def assert_storage_matches_catalog(self) -> None:
        """Every file under the products tree is a catalogued product or preview with its
        checksum; no temporary file, no directory of an attempt that recorded nothing."""
        from archive.ingest.storage import sha256_file

        products = self.products()
        catalogued = {self.stored(p.path): p for p in products}
        with session_scope(self.settings.db_url) as db:
            previews = {self.stored(v.path): v.sha256 for v in db.execute(select(ProductPreview)).scalars()}
        on_disk = {p for p in self.settings.products_dir.rglob("*") if p.is_file()}
        files = set(catalogued) | set(previews)
        assert on_disk == files, (sorted(map(str, on_disk - files)), sorted(map(str, files - on_disk)))
        for path, prod in catalogued.items():
            assert sha256_file(path) == prod.sha256, path
        for path, sha in previews.items():
            assert sha256_file(path) == sha, path
        attempt_dirs = {p for p in self.settings.products_dir.rglob("job-*-attempt-*") if p.is_dir()}
        assert attempt_dirs == {p.parent for p in catalogued}, sorted(map(str, attempt_dirs))


@pytest.fixture
def make_archive(tmp_path, pg_url, redis_url, monkeypatch):
    made: list[Archive] = []

    def make(crds_path: Path, **kw) -> Archive:
        a = Archive(tmp_path, pg_url, redis_url, crds_path, monkeypatch, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


def _assert_each_job_succeeded_once(archive: Archive, job_ids: list[int]) -> dict[int, Job]:
    jobs = archive.jobs()
    assert sorted(jobs) == sorted(job_ids)
    assert {j.status for j in jobs.values()} == {"succeeded"}, {j.id: (j.status, j.error) for j in jobs.values()}
    products = archive.products()
    by_job: dict[int, list[str]] = {}
    for p in products:
        by_job.setdefault(p.job_id, []).append(p.suffix)
    assert {j: sorted(s) for j, s in by_job.items()} == {j: SUFFIXES for j in job_ids}  # once, not twice
    assert len(products) == len(SUFFIXES) * len(job_ids)
    assert all(p.is_current for p in products)
    for j in jobs.values():
        assert j.attempts >= 1 and j.worker and j.finished_at and j.lease_expires_at is None
        assert {Path(p.path).parent for p in products if p.job_id == j.id} == {Path(j.output_dir)}
    archive.assert_storage_matches_catalog()
    return jobs


def _timeline(jobs: dict[int, Job]) -> str:
    """Job id, attempts, worker pid, start and finish in seconds from the first start."""
    t0 = min(_aware(j.started_at) for j in jobs.values() if j.started_at)
    return "\n".join(f"job {j.id} {j.status} attempts={j.attempts} pid={j.worker and _worker_pid(j)} "
                     f"start={(_aware(j.started_at) - t0).total_seconds():.1f} "
                     f"end={(_aware(j.finished_at) - t0).total_seconds() if j.finished_at else -1:.1f}"
                     for j in jobs.values() if j.started_at)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _worker_pid(job: Job) -> int:
    return int(job.worker.rsplit(":", 1)[1])


def test_killed_worker_costs_time_not_correctness(exposures, make_archive):
    """SIGKILL of a pool child (Celery rejects the message back: it is redelivered), then
    of a whole worker (its message stays unacknowledged): the planner re-enqueues the
    jobs whose lease expired and a second worker completes every job exactly once."""
    pool, result, crds_path = exposures
    lease = 20  # above a job's run time (seconds; a worker's first job pays its warm-up too)
    a = make_archive(crds_path, lease_seconds=lease)
    a.ingest(pool, result.files[:8], result.context)
    p = plan(a.settings)
    assert len(p.job_ids) == 8
    dispatcher = get_dispatcher(a.settings)
    first = a.worker("first", pool="prefork")
    dispatcher.send(p.job_ids)

    def running_in_new_process(exclude: set[int]):
        def pred(jobs):
            return any(j.status == "running" and j.output_dir and a.stored(j.output_dir).is_dir()
                       and _worker_pid(j) not in exclude for j in jobs.values())
        return pred

    # 1. kill the pool child in the middle of a job: Celery rejects the message back to
    #    the queue; the redelivered copy finds the job leased and leaves it alone
    jobs = a.wait(running_in_new_process(set()), 180, "a job running on the first worker", [first])
    victim1 = next(j for j in jobs.values() if j.status == "running")
    child = _worker_pid(victim1)
    assert child != first.pid  # the prefork pool's child process
    time.sleep(0.5)
    os.kill(child, signal.SIGKILL)

    # 2. kill the whole first worker (parent and new child) in the middle of another job
    jobs = a.wait(running_in_new_process({child}), 180, "a job running on the respawned child", [first])
    victim2 = next(j for j in jobs.values() if j.status == "running" and _worker_pid(j) != child)
    time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    killed = {victim1.id, victim2.id}
    assert {j.id for j in a.jobs().values() if j.status == "running"} == killed

    # 3. a second worker; the planner (what beat runs) re-enqueues jobs whose lease expired
    second = a.worker("second")
    requeued: list[int] = []

    def planner_tick():
        now = datetime.now(timezone.utc)
        expired = {j.id for j in a.jobs().values() if j.status == "running" and _aware(j.lease_expires_at) <= now}
        if not expired:
            return
        again = plan(a.settings)
        ids = [i.job_id for i in again.items if i.action == "requeue" and i.job_id in expired]
        if ids:
            requeued.extend(ids)
            dispatcher.send(ids)

    jobs = a.wait(lambda js: all(j.status == "succeeded" for j in js.values()), 300, "every job to succeed",
                  [second], poll=1.0, tick=planner_tick)
    assert killed <= set(requeued)  # re-enqueued once their lease expired
    print(_timeline(a.jobs()))
    jobs = _assert_each_job_succeeded_once(a, p.job_ids)
    for j in jobs.values():
        assert j.attempts >= (2 if j.id in killed else 1), (j.id, j.attempts)
    assert all(str(second.pid) in jobs[k].worker for k in killed)
    assert plan(a.settings, dry_run=True).count("current") == 8  # nothing owed


def test_two_workers_never_complete_a_job_twice(exposures, make_archive):
    """50 jobs, each message sent twice (as an at-least-once broker may), two workers:
    each job runs once, one product per suffix, both workers took part."""
    pool, result, crds_path = exposures
    a = make_archive(crds_path)
    a.ingest(pool, result.files, result.context)
    p = plan(a.settings)
    assert len(p.job_ids) == N_EXPOSURES
    workers = [a.worker("one"), a.worker("two")]
    dispatcher = get_dispatcher(a.settings)
    dispatcher.send(p.job_ids)
    dispatcher.send(p.job_ids)  # duplicates
    a.wait(lambda js: all(j.status == "succeeded" for j in js.values()), 600, "50 jobs", workers, poll=1.0)
    # the duplicate messages are consumed (and skipped) too
    import redis

    r = redis.Redis.from_url(a.redis_url)
    deadline = time.monotonic() + 60
    while r.llen(a.queue) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert r.llen(a.queue) == 0
    time.sleep(1.0)
    print(_timeline(a.jobs()))
    jobs = _assert_each_job_succeeded_once(a, p.job_ids)
    assert all(j.attempts == 1 for j in jobs.values()), {j.id: j.attempts for j in jobs.values() if j.attempts != 1}
    pids = {_worker_pid(j) for j in jobs.values()}
    assert pids == {w.pid for w in workers}, pids  # both workers did some of the work


def test_corrupted_reference_fails_its_jobs_once(exposures, make_archive, tmp_path):
    """A reference file whose bytes no longer match the catalog's checksum: the jobs that
    use it fail permanently (not retried) with a message naming the file; the jobs on the
    other detector succeed."""
    from calib.pipelines import required_reftypes

    pool, result, crds_path = exposures
    # this test's own cache: links to the shared files, a real copy of the one it corrupts
    cache = tmp_path / "crds"
    shutil.copytree(crds_path, cache, copy_function=os.symlink)
    files = result.files[:6]  # three per detector
    victim_name = result.references[files[1].name]["gain"]
    assert victim_name != result.references[files[0].name]["gain"]
    victim = next(cache.rglob(victim_name))
    victim.unlink()
    shutil.copyfile(next(crds_path.rglob(victim_name)), victim)

    a = make_archive(cache)
    a.ingest(pool, files, result.context)
    # the catalog learns the references' checksums (as any earlier job would have)
    s = a.settings
    with session_scope(s.db_url) as db:
        ctx = context_in_use(s, db)
        for exp in db.execute(select(Exposure)).scalars():
            compute_bestrefs(s, db, exp, ctx, required_reftypes(exp.stage1_pipeline, exp.header))
    size = victim.stat().st_size
    with open(victim, "r+b") as fh:  # flip bytes in the data, size unchanged
        fh.seek(size - 1000)
        chunk = fh.read(8)
        fh.seek(size - 1000)
        fh.write(bytes(b ^ 0xFF for b in chunk))

    p = plan(s)
    assert len(p.job_ids) == 6
    worker = a.worker("refs")
    get_dispatcher(s).send(p.job_ids)
    jobs = a.wait(lambda js: all(j.status in ("succeeded", "failed") for j in js.values()), 300,
                  "every job to finish", [worker], poll=0.5)
    time.sleep(3)  # a retry, if one were (wrongly) scheduled, would show within the backoff
    jobs = a.jobs()
    print(_timeline(jobs))
    with session_scope(s.db_url) as db:
        det = {e.id: e.detector.lower() for e in db.execute(select(Exposure)).scalars()}
        victim_det = det[next(j.exposure_id for j in jobs.values() if j.status == "failed")]
    failed = {j.id for j in jobs.values() if j.status == "failed"}
    assert failed == {j.id for j in jobs.values() if det[j.exposure_id] == victim_det}
    assert len(failed) == 3
    for jid in failed:
        job = jobs[jid]
        assert victim_name in job.error and "sha256" in job.error, job.error
        assert job.attempts == 1  # a PermanentJobError is not retried
        assert job.output_dir and not a.stored(job.output_dir).exists()
    log = (tmp_path / "worker-refs.log").read_text()
    assert "Retry in" not in log, log[-3000:]
    assert sum(1 for j in jobs.values() if j.status == "succeeded") == 3
    products = a.products()
    assert {p.job_id for p in products} == set(jobs) - failed
    assert len(products) == len(SUFFIXES) * 3
    a.assert_storage_matches_catalog()


_CLAIM = """
import sys, time
from archive.config import load_settings
from archive.execution import runner
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
work = getattr(runner, sys.argv[3])(load_settings(), int(sys.argv[1]), "claimer-" + sys.argv[1])
print("claimed" if work else "none")
"""


def test_first_claims_at_once_share_reference_rows(exposures, make_archive):
    """Two workers claiming, at the same moment, the first jobs that use the same reference
    files on a fresh catalog: both insert the reference rows; the loser retries its claim
    instead of failing with a unique violation (and leaving its job queued, unrecorded)."""
    from archive.catalog.models import BestRef, ReferenceFile

    pool, result, crds_path = exposures
    a = make_archive(crds_path)
    a.ingest(pool, [result.files[0], result.files[2]], result.context)  # same detector: same references
    p = plan(a.settings)
    assert len(p.job_ids) == 2
    start = time.time() + 4  # both processes import first, then claim together
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIM, str(jid), str(start), "_claim"], env=a.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for jid in p.job_ids]
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    assert all(out.strip().endswith("claimed") for out in outs), outs
    jobs = a.jobs()
    assert all(j.status == "running" and j.attempts == 1 for j in jobs.values())
    with session_scope(a.settings.db_url) as db:
        names = db.execute(select(ReferenceFile.name)).scalars().all()
        best = db.execute(select(BestRef.exposure_id, BestRef.reftype)).all()
    assert sorted(names) == sorted(set(result.references[result.files[0].name].values()))
    assert len(best) == len(set(best)) and len({e for e, _ in best}) == 2


def test_reference_missing_from_cache_fails_the_job(exposures, make_archive, tmp_path):
    """A best reference that is not in the CRDS cache: the job is marked failed with a
    message naming the file (not left queued with no error), and not retried."""
    from archive.execution.runner import PermanentJobError, execute_job

    pool, result, crds_path = exposures
    cache = tmp_path / "crds"
    shutil.copytree(crds_path, cache, copy_function=os.symlink)
    missing = result.references[result.files[0].name]["linearity"]
    next(cache.rglob(missing)).unlink()
    a = make_archive(cache)
    a.ingest(pool, result.files[:1], result.context)
    (job_id,) = plan(a.settings).job_ids
    with pytest.raises(PermanentJobError, match=missing):
        execute_job(a.settings, job_id)
    job = a.jobs()[job_id]
    assert job.status == "failed" and missing in job.error, (job.status, job.error)


def test_jobs_never_write_products_outside_the_data_directory(exposures, make_archive, tmp_path):
    """Reprocessing builds each output directory from checked components under products/: an
    exposure row whose PROGRAM is not 1-5 digits (a catalog written before the check) and a
    products/<program> directory that is a link out of the data tree both fail the job for
    good, naming the reason, and nothing is written outside."""
    from sqlalchemy import update

    from archive.execution.runner import PermanentJobError, execute_job

    pool, result, crds_path = exposures
    a = make_archive(crds_path)
    a.ingest(pool, result.files[:2], result.context)
    job_ids = sorted(plan(a.settings).job_ids)
    assert len(job_ids) == 2
    jobs = a.jobs()
    outside = tmp_path / "outside"
    outside.mkdir()
    s = a.settings
    with session_scope(s.db_url) as db:
        exp_ids = [jobs[j].exposure_id for j in job_ids]
        program = db.get(Exposure, exp_ids[1]).program
        db.execute(update(Exposure).where(Exposure.id == exp_ids[0]).values(program=f"../../{outside.name}"))
    with pytest.raises(PermanentJobError, match="not a JWST program number"):
        execute_job(s, job_ids[0])
    s.products_dir.mkdir(parents=True, exist_ok=True)
    (s.products_dir / program).symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermanentJobError, match="outside"):
        execute_job(s, job_ids[1])
    jobs = a.jobs()
    assert [jobs[j].status for j in job_ids] == ["failed", "failed"], {j: jobs[j].error for j in job_ids}
    assert list(outside.rglob("*")) == [] and a.products() == []


def test_archive_reprocess_exits_1_when_a_job_fails(exposures, tmp_path, monkeypatch):
    """`archive reprocess` (in-process, the embedded SQLite catalog): a job that fails (its
    best linearity is missing from the CRDS cache) makes the command exit 1, the failure in
    its output; the jobs that could run succeed."""
    from typer.testing import CliRunner

    from archive.cli import app
    from archive.config import load_settings

    pool, result, crds_path = exposures
    cache = tmp_path / "crds"
    shutil.copytree(crds_path, cache, copy_function=os.symlink)
    missing = result.references[result.files[0].name]["linearity"]
    next(cache.rglob(missing)).unlink()
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "ARCHIVE_CONFIG", "CRDS_CONTEXT", "ARCHIVE_READONLY_DB_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CRDS_PATH", str(cache))
    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(app, ["--data-dir", str(data), "init"]).exit_code == 0
    s = load_settings(data)
    assert ingest(s, result.files[:2], pool_path=pool).ok
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    r = runner.invoke(app, ["--data-dir", str(data), "reprocess", "--json"])
    assert r.exit_code == 1, r.output
    with session_scope(s.db_url) as db:
        statuses = sorted(j.status for j in db.execute(select(Job)).scalars())
    assert statuses == ["failed", "succeeded"] and missing in r.output
