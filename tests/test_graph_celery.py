"""The product graph through real Celery workers, Redis and PostgreSQL (issue 10, Tests).

A small NIRCam imaging program (three SUB320 rows of a real pool, NGROUPS 3, simulated with
stars and the stage-2/3 references) is calibrated by two ``archive worker`` subprocesses and
``archive beat``: an operator sends stage 1, and beat alone advances the graph, stage 2
(calwebb_image2) and stage 3 (calwebb_image3), each with the engine engine_for names (calib
when it registers the pipeline, else jwst in a child process). While the stage-3 job runs, its
worker is killed with SIGKILL (a jwst child dies with it); beat re-enqueues the job once its
lease expires and the surviving worker finishes it. Every product exists once and is current, the files match the
catalog, nothing half-written is left. (The same graph in-process on SQLite:
tests/test_product_graph.py.)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archive.catalog.db import session_scope
from archive.catalog.models import Job, Product

from .test_end_to_end import simulated  # noqa: F401  (the fixture)
from .test_faults import _timeline, make_archive  # noqa: F401  (make_archive: the fixture)
from .test_product_graph import _small_pool

LEASE = 15    # seconds: a live worker's heartbeat renews it (every 5 s) however long its job runs


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The simulated program: pool, raw files, CRDS cache with the stage-2/3 references."""
    from simulation.pools import simulate_pool

    base = tmp_path_factory.mktemp("graph-celery")
    pool = _small_pool(base)
    sim = simulate_pool(pool, base / "raw", base / "crds", seed=3, ngroups=3, imaging=True,
                        star_density=0.1, max_stars=60000)
    return pool, sim, base / "crds"


def _beat(a, interval: float) -> subprocess.Popen:
    """Start ``archive beat`` for archive ``a`` (plan_and_enqueue every ``interval`` seconds)."""
    log_path = a.tmp / "beat.log"
    env = {**a.env, "ARCHIVE_BEAT_INTERVAL": str(int(interval))}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "archive.cli", "beat", f"--schedule={a.tmp / 'beat-schedule'}"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    a.procs.append((proc, log_path))
    return proc


def _assert_storage_matches_catalog(a, jobs: dict[int, Job]) -> None:
    """Every file under the products tree is a catalogued product or preview with its sha256, or
    the run record (association, jwst's log) a stage-2/3 job keeps in ``_run/`` of its recorded attempt;
    no other file (nothing of the killed attempt, no temporary file) and no other attempt directory."""
    from archive.catalog.models import ProductPreview
    from archive.execution.jwst_engine import RUN_DIR
    from archive.ingest.storage import sha256_file

    catalogued = {a.stored(p.path): p.sha256 for p in a.products()}
    with session_scope(a.settings.db_url) as db:
        catalogued.update({a.stored(v.path): v.sha256 for v in db.execute(select(ProductPreview)).scalars()})
    recorded = {a.stored(j.output_dir) for j in jobs.values()}
    run_records = {p for j in jobs.values() if j.association_id is not None
                   for p in (a.stored(j.output_dir) / RUN_DIR).rglob("*") if p.is_file()}
    on_disk = {p for p in a.settings.products_dir.rglob("*") if p.is_file()}
    assert on_disk == set(catalogued) | run_records, (sorted(map(str, on_disk - set(catalogued) - run_records)),
                                                      sorted(map(str, set(catalogued) - on_disk)))
    for path, sha in catalogued.items():
        assert sha256_file(path) == sha, path
    attempt_dirs = {p for p in a.settings.products_dir.rglob("job-*-attempt-*") if p.is_dir()}
    assert attempt_dirs == recorded, sorted(map(str, attempt_dirs ^ recorded))


def _engine_processes(attempt) -> list[int]:
    """Pids of the jwst engine processes (``python -m archive.execution.jwst_engine <attempt>/_run/run.json``)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"archive.execution.jwst_engine" in cmd and any(str(attempt).encode() in c for c in cmd):
            out.append(int(proc.name))
    return out


def _pid(job: Job) -> int:
    return int(job.worker.rsplit(":", 1)[1])


def test_three_stages_by_beat_and_a_worker_killed_in_stage3(program, make_archive):  # noqa: F811
    """Stage 1 sent by hand, stages 2 and 3 by beat; SIGKILL of the worker running stage 3:
    the job is finished by the other worker once its lease expired, each product made once."""
    from archive.associations.associate import associate
    from archive.execution.dispatch import get_dispatcher
    from archive.execution.engines import engine_for
    from archive.reprocessing.planner import plan, plan_and_send

    pool, sim, crds_path = program
    a = make_archive(crds_path, lease_seconds=LEASE)
    a.env["ARCHIVE_BEAT_INTERVAL"] = "3"
    a.ingest(pool, sim.files, sim.context)
    associate(a.settings)
    workers = [a.worker("one"), a.worker("two")]
    beat = _beat(a, 3)
    # the operator sends stage 1 (what `archive reprocess --pipeline calwebb_detector1` does) ...
    first, _ = plan_and_send(a.settings, get_dispatcher(a.settings), pipeline="calwebb_detector1")
    assert len(first.job_ids) == 3 and sorted(a.jobs()) == sorted(first.job_ids)
    # ... and beat alone takes stages 2 and 3
    jobs = a.wait(lambda js: any(j.pipeline == "calwebb_image3" and j.status == "running" and j.output_dir
                                 and a.stored(j.output_dir).is_dir() for j in js.values()),
                  900, "the stage-3 job to run", [*workers, beat], poll=0.5)
    image3 = next(j for j in jobs.values() if j.pipeline == "calwebb_image3")
    assert image3.engine == engine_for("calwebb_image3")     # calib's when registered, else jwst's
    assert {j.pipeline: j.status for j in jobs.values() if j.id != image3.id} == {
        "calwebb_detector1": "succeeded", "calwebb_image2": "succeeded"}
    assert len(jobs) == 3 + 3 + 1
    victim = next(w for w in workers if w.pid == _pid(image3))
    survivor = next(w for w in workers if w is not victim)
    time.sleep(3)                                  # the pipeline is at work in the attempt's directory
    attempt = a.stored(image3.output_dir)
    if image3.engine == "jwst":
        assert _engine_processes(attempt), "no jwst engine process runs the stage-3 job"
    os.kill(victim.pid, signal.SIGKILL)            # the worker process only, as the OOM killer would
    victim.wait(timeout=30)
    deadline = time.monotonic() + 10               # a jwst child goes with it: no orphan writing on
    while _engine_processes(attempt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _engine_processes(attempt), "the killed worker's jwst engine process lives on"

    jobs = a.wait(lambda js: js[image3.id].status == "succeeded", LEASE + 600,
                  "the stage-3 job to be finished by the surviving worker", [survivor, beat], poll=1.0)
    done = jobs[image3.id]
    assert done.attempts >= 2 and _pid(done) == survivor.pid, (done.attempts, done.worker)
    assert all(j.status == "succeeded" and j.attempts >= 1 and j.finished_at and j.lease_expires_at is None
               for j in jobs.values())
    # live workers kept their jobs past the lease (first numba compiles included): each done once
    assert {j.id: j.attempts for j in jobs.values() if j.id != image3.id} == {
        j.id: 1 for j in jobs.values() if j.id != image3.id}

    print(_timeline(jobs))
    # every product once, current; the files are the catalog's
    products = a.products()
    assert all(p.is_current for p in products)
    by_job = {}
    for p in products:
        by_job.setdefault(jobs[p.job_id].pipeline, []).append(p.suffix)
    assert sorted(by_job["calwebb_detector1"]) == ["rate"] * 3
    assert sorted(by_job["calwebb_image2"]) == sorted(["cal"] * 3 + ["i2d"] * 3)
    assert sorted(by_job["calwebb_image3"]) == sorted(["i2d", "cat", "segm"] + ["crf"] * 3)
    assert {p.job_id for p in products if jobs[p.job_id].pipeline == "calwebb_image3"} == {image3.id}
    with session_scope(a.settings.db_url) as db:
        dupes = db.execute(select(Product.filename, func.count()).group_by(Product.filename)
                           .having(func.count() > 1)).all()
        assert dupes == []
    _assert_storage_matches_catalog(a, jobs)
    assert plan(a.settings, dry_run=True).count("current") == 7


_PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid())])
print(child.pid, flush=True)
child.wait()
"""
_CHILD = """
import sys, time
from archive.execution.jwst_engine import die_with_parent
die_with_parent(int(sys.argv[1]))
print("armed", flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_engine_child_dies_with_its_parent():
    """die_with_parent: SIGKILL of the parent ends the child at once (not after its 120 s)."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "armed"
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        try:
            os.killpg(parent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_taken_over_attempt_does_not_record(settings, simulated):  # noqa: F811
    """A slow attempt whose lease expired and was taken over (another worker claimed the job: a
    new attempt directory on the row) does not record, even when it finishes first; the taker
    records, and the job's output_dir and started_at are its own (its products are in that
    directory; a recording slow attempt once left the row pointing at the taker's removed one)."""
    from datetime import timedelta

    from archive.catalog.models import as_utc, utcnow
    from archive.crds.references import use_context
    from archive.execution import runner
    from archive.ingest.batch import ingest
    from archive.reprocessing.planner import plan
    from calib.pipelines import run_pipeline
    from calib.products import save_products

    pool, result, crds_path = simulated
    s = settings.with_(crds_path=crds_path)
    assert ingest(s, result.files[:1], pool_path=pool).ok
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    (job_id,) = plan(s).job_ids
    slow = runner._claim(s, job_id, "slow:1")
    with session_scope(s.db_url) as db:            # its lease expires; another worker claims the job
        db.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    taker = runner._claim(s, job_id, "taker:2")
    assert taker.output_dir != slow.output_dir and (slow.attempt, taker.attempt) == (1, 2)

    def products_of(work):
        work.output_dir.mkdir(parents=True)
        res = run_pipeline(work.pipeline, work.exposure_path, work.references, work.params)
        files = save_products(res, work.output_dir, runner.product_root(work.filename),
                              {"crds_context": work.context, "crds_version": work.crds_version,
                               "cal_version": runner.CAL_VER, "references": dict(work.reference_names)})
        return {k: Path(v) for k, v in files.items() if v}

    assert not runner._record(s, slow, products_of(slow), {}, "slow:1")   # finished first: not its job any more
    with session_scope(s.db_url) as db:
        job = db.get(Job, job_id)
        assert (job.status, job.worker, job.attempts) == ("running", "taker:2", 2)
        assert db.execute(select(func.count()).select_from(Product).where(Product.job_id == job_id)).scalar() == 0
    assert runner._record(s, taker, products_of(taker), {}, "taker:2")
    with session_scope(s.db_url) as db:
        job = db.get(Job, job_id)
        paths = db.execute(select(Product.path).where(Product.job_id == job_id)).scalars().all()
        assert job.status == "succeeded" and job.attempts == 2 and job.worker == "taker:2"
        assert {str(Path(p).parent) for p in paths} == {job.output_dir}
        assert s.data_dir / job.output_dir == taker.output_dir
        assert as_utc(job.started_at) == taker.started_at > slow.started_at
