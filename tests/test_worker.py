"""One job executed by a real Celery worker process through the real Redis, catalog on PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from sqlalchemy import select

from archive.catalog.db import session_scope
from archive.catalog.models import Job, Product
from archive.crds.references import use_context
from archive.execution.dispatch import get_dispatcher
from archive.ingest.batch import ingest
from archive.reprocessing.planner import plan

from .test_end_to_end import simulated  # noqa: F401 - the module-scoped simulation fixture


def _worker(env: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "archive.cli", "worker", "--concurrency=1", "--pool=solo",
                             "--without-mingle", "--without-gossip"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_job_runs_on_a_real_worker_through_redis(tmp_path, pg_url, redis_url, simulated, monkeypatch):  # noqa: F811
    from archive.catalog.db import upgrade
    from archive.config import load_settings

    pool, result, crds_path = simulated
    queue = f"archive-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ARCHIVE_DATA_DIR": str(tmp_path / "data"), "ARCHIVE_DB_URL": pg_url,
           "ARCHIVE_BROKER_URL": redis_url, "CRDS_PATH": str(crds_path), "ARCHIVE_QUEUE": queue}
    env.pop("CRDS_CONTEXT", None)
    for k, v in env.items():
        if k.startswith(("ARCHIVE_", "CRDS_PATH")):
            monkeypatch.setenv(k, v)
    s = load_settings()
    upgrade(s.db_url)
    assert ingest(s, result.files[:1], pool_path=pool).ok
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    p = plan(s)
    assert len(p.job_ids) == 1
    proc = _worker(env, tmp_path / "worker.log")
    try:
        assert get_dispatcher(s).send(p.job_ids) == {p.job_ids[0]: "enqueued"}
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline:
            with session_scope(s.db_url) as db:
                job = db.get(Job, p.job_ids[0])
                status, worker = job.status, job.worker
            if status in ("succeeded", "failed"):
                break
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        assert status == "succeeded", (status, (tmp_path / "worker.log").read_text()[-3000:])
        assert str(proc.pid) in worker  # executed by the worker process, not in this one
        with session_scope(s.db_url) as db:
            products = db.execute(select(Product).where(Product.job_id == p.job_ids[0])).scalars().all()
        assert sorted(pr.suffix for pr in products) == ["rate", "rateints"]
        assert all((s.data_dir / pr.path).is_file() for pr in products)  # stored relative to the data dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        from tests.test_faults import _purge_queue

        _purge_queue(redis_url, queue)     # the queue, its bindings and unacked messages
