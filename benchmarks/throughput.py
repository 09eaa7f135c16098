#!/usr/bin/env python
"""Throughput of `archive worker` processes, and the delay from enqueue to job start.

Not a test: a measurement on the real components, Redis as the broker and a fresh
PostgreSQL database as the catalog (created, then dropped). The script simulates small
raw exposures (NIRCam NRCA1, SUB160 by default: all jobs alike, one set of reference
files) with their CRDS cache, then for each worker count (1, then 2):

1. a fresh catalog, data directory and Celery queue; ingest; plan (one
   calwebb_detector1 job per exposure);
2. start the workers (``archive worker --pool=solo --concurrency=1``, each with
   ``NUMBA_NUM_THREADS=1``: one core per process, no oversubscription);
3. warm up: one job per worker, repeated until every worker has finished one (imports,
   numba cache load, first reference reads and checksums are paid before the clock
   starts);
4. send the N timed jobs at once; throughput = N / (last finished_at - send time);
5. with 1 worker, then idle: send one job at a time and measure ``started_at`` (set by the
   worker when it leases the job) minus the wall-clock time just before ``apply_async``
   (same host, same clock).

The 2-vs-1 scaling ratio is the 2-worker throughput over the 1-worker one. Results are
printed (``--json`` for machine-readable) with the workers' CPU seconds per job and the
share of a core each worker got, and the load average: other processes on the machine
take cores from the workers, and under such contention more workers also win a larger
share of the machine, which inflates the ratio (compare the CPU seconds per job instead).

Usage:
  python benchmarks/throughput.py                       # 40 exposures, 1 and 2 workers
  python benchmarks/throughput.py -n 80 --latency-samples 30 --workdir /tmp/tput
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOL = REPO / "simulation" / "data" / "pools" / "pool_003_image_nircam.csv"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def simulate(workdir: Path, count: int, subarray: str, ngroups: int, nints: int):
    """``count`` exposures from the rows of the real pool_003, all on NRCA1."""
    from archive.ingest.pools import pool_rows
    from simulation.pools import simulate_pool

    base = pool_rows(POOL)
    rows = []
    for i in range(count):
        r = dict(base[i % len(base)])
        r.update(SUBARRAY=subarray, DETECTOR="nrca1", FILENAME=f"jw_{i + 1:05d}_uncal.fits")
        rows.append(r)
    pool = workdir / "pool.csv"
    cols = list(rows[0])
    with open(pool, "w") as fh:
        fh.write("|".join(cols) + "\n")
        for r in rows:
            fh.write("|".join(r[c] for c in cols) + "\n")
    result = simulate_pool(pool, workdir / "incoming", workdir / "crds", seed=5, ngroups=ngroups, nints=nints)
    return pool, result


def purge_queue(redis_url: str, queue: str) -> None:
    """Remove the queue's Redis keys, its unacknowledged messages and pidbox bindings."""
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in list(r.scan_iter(match=f"*{queue}*")):
        r.delete(key)
    r.zrem("_kombu.binding_deadlines", queue)
    for member in list(r.smembers("_kombu.binding.celery.pidbox")):
        if queue.encode() in member:
            r.srem("_kombu.binding.celery.pidbox", member)
    for tag, raw in list(r.hscan_iter("unacked")):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, TypeError, IndexError):
            continue
        if routing_key == queue:
            r.hdel("unacked", tag)
            r.zrem("unacked_index", tag)


class Phase:
    """One measurement: its own database, data directory, queue and workers."""

    def __init__(self, args, workdir: Path, crds_path: Path, n_workers: int):
        import psycopg
        from sqlalchemy.engine import make_url

        self.args = args
        self.n_workers = n_workers
        self.queue = f"archive-bench-{uuid.uuid4().hex[:8]}"
        admin = make_url(args.pg)
        self.dbname = f"archive_bench_{uuid.uuid4().hex[:10]}"
        self.conninfo = f"host={admin.host} port={admin.port or 5432} user={admin.username} dbname={admin.database}"
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.db_url = admin.set(database=self.dbname).render_as_string(hide_password=False)
        self.dir = workdir / f"phase-{n_workers}w-{self.queue}"
        self.env = {**os.environ, "ARCHIVE_DATA_DIR": str(self.dir / "data"), "ARCHIVE_DB_URL": self.db_url,
                    "ARCHIVE_BROKER_URL": args.redis, "CRDS_PATH": str(crds_path), "ARCHIVE_QUEUE": self.queue,
                    "NUMBA_NUM_THREADS": "1"}
        for var in ("CRDS_CONTEXT", "ARCHIVE_CONFIG", "ARCHIVE_LEASE_SECONDS"):
            self.env.pop(var, None)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("ARCHIVE_") or k == "CRDS_PATH"})
        for var in ("CRDS_CONTEXT", "ARCHIVE_CONFIG", "ARCHIVE_LEASE_SECONDS"):
            os.environ.pop(var, None)
        from archive.config import load_settings

        self.settings = load_settings()
        self.procs: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ catalog
    def prepare(self, pool: Path, files: list[Path], context: str) -> dict[str, int]:
        from archive.catalog.db import session_scope, upgrade
        from archive.crds.references import use_context
        from archive.ingest.batch import ingest
        from archive.reprocessing.planner import plan

        upgrade(self.settings.db_url)
        report = ingest(self.settings, files, pool_path=pool)
        if not report.ok:
            raise SystemExit(f"ingest failed: {[o.reason for o in report.outcomes if o.reason]}")
        with session_scope(self.settings.db_url) as db:
            use_context(db, context)
        p = plan(self.settings)
        return {i.exposure: i.job_id for i in p.items if i.job_id}

    def jobs(self, ids) -> dict:
        from sqlalchemy import select

        from archive.catalog.db import session_scope
        from archive.catalog.models import Job

        with session_scope(self.settings.db_url) as db:
            rows = db.execute(select(Job.id, Job.status, Job.worker, Job.started_at, Job.finished_at, Job.error)
                              .where(Job.id.in_(list(ids)))).all()
        return {r.id: r for r in rows}

    def wait(self, ids, timeout: float, poll: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs(ids)
            if all(j.status in ("succeeded", "failed") for j in jobs.values()):
                failed = {j.id: j.error for j in jobs.values() if j.status == "failed"}
                if failed:
                    raise SystemExit(f"jobs failed: {failed}")
                return jobs
            for proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"worker {proc.pid} exited {proc.returncode}: see {self.dir}/worker-*.log")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for jobs {sorted(ids)}")
            time.sleep(poll)

    # ------------------------------------------------------------------ workers
    def start_workers(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for k in range(self.n_workers):
            logf = open(self.dir / f"worker-{k}.log", "w")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "archive.cli", "worker", "--pool=solo", "--concurrency=1",
                 f"--hostname=w{k}-{self.queue}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat"],
                env=self.env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True))
            logf.close()
        deadline = time.monotonic() + 120
        for k in range(self.n_workers):
            while " ready." not in (self.dir / f"worker-{k}.log").read_text():
                if time.monotonic() > deadline or self.procs[k].poll() is not None:
                    raise SystemExit(f"worker {k} did not start: see {self.dir}/worker-{k}.log")
                time.sleep(0.1)

    def stop(self) -> None:
        import psycopg

        from archive.catalog.db import dispose_engines

        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        purge_queue(self.args.redis, self.queue)
        dispose_engines()
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ measurements
    def warm_up(self, send, warm_ids: list[int]) -> None:
        """Send warm-up jobs until every worker has finished one."""
        pids = {p.pid for p in self.procs}
        done: set[int] = set()
        pending = list(warm_ids)
        while True:
            batch, pending = pending[:self.n_workers], pending[self.n_workers:]
            if not batch:
                raise SystemExit("not enough warm-up exposures to warm every worker")
            send(batch)
            jobs = self.wait(batch, 1200, poll=0.5)
            done |= {int(j.worker.rsplit(":", 1)[1]) for j in jobs.values()}
            if pids <= done:
                return

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker processes (solo pool: they do the work)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for proc in self.procs:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def throughput(self, send, ids: list[int]) -> dict:
        cpu0 = self.cpu_seconds()
        t0 = time.time()
        send(ids)
        jobs = self.wait(ids, 3600, poll=0.5)
        cpu = self.cpu_seconds() - cpu0
        t_end = max(j.finished_at.replace(tzinfo=j.finished_at.tzinfo or timezone.utc).timestamp()
                    for j in jobs.values())
        per_worker: dict[str, int] = {}
        for j in jobs.values():
            per_worker[j.worker] = per_worker.get(j.worker, 0) + 1
        seconds = t_end - t0
        return {"workers": self.n_workers, "exposures": len(ids), "seconds": round(seconds, 2),
                "exposures_per_hour": round(len(ids) / seconds * 3600, 1),
                "jobs_per_worker": sorted(per_worker.values()),
                # CPU the workers got: near 1.0 each when no other process competes for the cores
                "worker_cpu_seconds_per_job": round(cpu / len(ids), 2),
                "worker_cpu_share": round(cpu / (seconds * self.n_workers), 2)}

    def latency(self, send, ids: list[int]) -> list[float]:
        """Delay from just before apply_async to the job's started_at, one job at a time."""
        delays = []
        for jid in ids:
            time.sleep(0.3)  # the worker is idle, blocked on the broker
            t = time.time()
            send([jid])
            job = self.wait([jid], 600, poll=0.25)[jid]  # started_at is the worker's clock: no need to poll fast
            started = job.started_at.replace(tzinfo=job.started_at.tzinfo or timezone.utc).timestamp()
            delays.append(started - t)
        return delays


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--exposures", type=int, default=40, help="timed exposures per phase (default 40)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    ap.add_argument("--latency-samples", type=int, default=20, help="enqueue-to-start samples (default 20)")
    ap.add_argument("--subarray", default="sub160")
    ap.add_argument("--ngroups", type=int, default=6)
    ap.add_argument("--nints", type=int, default=2)
    ap.add_argument("--pg", default=os.environ.get("ARCHIVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
                    help="an existing PostgreSQL database to connect to (a fresh one is created beside it)")
    ap.add_argument("--redis", default=os.environ.get("ARCHIVE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--workdir", type=Path, help="default: a new temporary directory, removed afterwards")
    ap.add_argument("--keep", action="store_true", help="keep the phases' data directories and worker logs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    # a SIGTERM (e.g. from timeout) unwinds through the finally blocks: workers stopped,
    # database dropped, Redis keys removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import redis

    redis.Redis.from_url(args.redis, socket_connect_timeout=3).ping()
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="archive-throughput-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    n_warm = 2 * max(args.workers)
    total = n_warm + args.exposures + args.latency_samples
    try:
        log(f"simulating {total} {args.subarray} exposures (NGROUPS {args.ngroups}, NINTS {args.nints}) in {workdir}")
        pool, result = simulate(workdir, total, args.subarray, args.ngroups, args.nints)
        files = sorted(result.files)
        warm_files = files[:n_warm]
        timed_files = files[n_warm:n_warm + args.exposures]
        lat_files = files[n_warm + args.exposures:]
        results: dict = {"config": {"exposures": args.exposures, "subarray": args.subarray, "ngroups": args.ngroups,
                                    "nints": args.nints, "cpus": os.cpu_count()}, "phases": []}
        for n_workers in args.workers:
            phase = Phase(args, workdir, workdir / "crds", n_workers)
            try:
                job_of = phase.prepare(pool, files if n_workers == 1 else files[:n_warm + args.exposures],
                                       result.context)
                phase.start_workers()
                from archive.execution.dispatch import get_dispatcher

                send = get_dispatcher(phase.settings).send

                log(f"{n_workers} worker(s): warming up")
                phase.warm_up(send, [job_of[f.name] for f in warm_files])
                load0 = os.getloadavg()[0]
                log(f"{n_workers} worker(s): {len(timed_files)} timed jobs (load average {load0:.2f})")
                res = phase.throughput(send, [job_of[f.name] for f in timed_files])
                res["load_average_before"] = round(load0, 2)
                res["load_average_after"] = round(os.getloadavg()[0], 2)
                if n_workers == 1 and lat_files:
                    log(f"1 worker, idle: {len(lat_files)} enqueue-to-start samples")
                    delays = phase.latency(send, [job_of[f.name] for f in lat_files])
                    res["enqueue_to_start_ms"] = {
                        "median": round(statistics.median(delays) * 1000, 1),
                        "min": round(min(delays) * 1000, 1), "max": round(max(delays) * 1000, 1),
                        "samples": len(delays)}
                results["phases"].append(res)
                log(f"{n_workers} worker(s): {res}")
            finally:
                phase.stop()
        by_n = {r["workers"]: r for r in results["phases"]}
        if 1 in by_n and 2 in by_n:
            results["scaling_2_vs_1"] = round(by_n[2]["exposures_per_hour"] / by_n[1]["exposures_per_hour"], 2)
    finally:
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    c = results["config"]
    print(f"{c['exposures']} NIRCam {c['subarray']} exposures (NGROUPS {c['ngroups']}, NINTS {c['nints']}), "
          f"{c['cpus']} CPUs, Redis broker, PostgreSQL catalog, NUMBA_NUM_THREADS=1 per worker")
    for r in results["phases"]:
        line = (f"  {r['workers']} worker(s): {r['exposures_per_hour']:8.1f} exposures/hour "
                f"({r['exposures']} in {r['seconds']:.1f} s; jobs per worker {r['jobs_per_worker']}; "
                f"CPU {r['worker_cpu_seconds_per_job']} s/job, {r['worker_cpu_share']:.0%} of a core per worker; "
                f"load average {r['load_average_before']} -> {r['load_average_after']})")
        print(line)
        if "enqueue_to_start_ms" in r:
            lat = r["enqueue_to_start_ms"]
            print(f"  enqueue -> start, idle worker: median {lat['median']} ms "
                  f"(min {lat['min']}, max {lat['max']}, {lat['samples']} samples)")
    if "scaling_2_vs_1" in results:
        print(f"  scaling 2 vs 1 worker: {results['scaling_2_vs_1']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
