"""Page load times of the web view (``archive serve``) on a catalog of N exposures.

On each back end asked for (PostgreSQL, SQLite; both by default) it builds a fresh catalog
(alembic upgrade head) and fills it (PostgreSQL by COPY, SQLite by executemany): N
exposures (4 instruments, 10 detectors, 6 EXP_TYPEs, EXPSTART over 3 years, a header of
~40 keywords each), one calwebb_detector1 job and one current ``_rate`` product per
exposure with 4 product_references, 20 reference files, two CRDS contexts and a campaign;
the products that are requested get a real FITS file (header with R_*/S_* keywords) and a
PNG preview. Then (PostgreSQL) it makes the read-only role (``archive db grant``), starts
``archive serve`` on it as its own process and times sequential GETs
over HTTP (wall time from request to the last byte) of every page kind, with filters and
deep keyset pages, and prints the p50/p95/max per page kind and the p95 over all.

    python benchmarks/web_pages.py -n 100000 --repeat 20 [--backend postgresql sqlite]

Issue 13's goal: p95 under 300 ms with 100,000 exposures.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

PG_ADMIN = os.environ.get("ARCHIVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
INSTRUMENTS = {"NIRCAM": ["NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCB1", "NRCALONG"], "NIRISS": ["NIS"],
               "MIRI": ["MIRIMAGE"], "FGS": ["GUIDER1", "GUIDER2"]}
EXP_TYPES = {"NIRCAM": ["NRC_IMAGE", "NRC_TACQ", "NRC_DARK"], "NIRISS": ["NIS_IMAGE", "NIS_DARK"],
             "MIRI": ["MIR_IMAGE"], "FGS": ["FGS_IMAGE", "FGS_DARK"]}
REFTYPES = ["dark", "gain", "linearity", "superbias"]


class _Pg:
    """Fill a PostgreSQL catalog (COPY)."""

    name = "postgresql"
    now = "2026-12-06 00:00:00+00"

    def __init__(self, conninfo: str):
        import psycopg

        self.conn = psycopg.connect(conninfo)
        self.cur = self.conn.cursor()

    def copy(self, table: str, cols: list[str], rows) -> None:
        buf = io.StringIO()
        for r in rows:
            buf.write("\t".join("\\N" if v is None else str(v).replace("\\", "\\\\").replace("\t", " ")
                                for v in r))
            buf.write("\n")
        buf.seek(0)
        with self.cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
            while chunk := buf.read(1 << 20):
                cp.write(chunk)

    def execute(self, sql: str, params=()) -> None:
        self.cur.execute(sql, params or None)

    def finish(self, tables) -> None:
        for t in tables:
            self.cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
        self.conn.commit()
        self.cur.execute("ANALYZE")
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class _Sqlite(_Pg):
    """Fill a SQLite catalog (executemany in one transaction)."""

    name = "sqlite"
    now = "2026-12-06 00:00:00.000000"

    def __init__(self, path: Path):
        import sqlite3

        self.conn = sqlite3.connect(path)
        self.cur = self.conn.cursor()

    def copy(self, table: str, cols: list[str], rows) -> None:
        rows = [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows]
        self.cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)

    def execute(self, sql: str, params=()) -> None:
        self.cur.execute(sql.replace("%s", "?").replace("now()", f"'{self.now}'"), params)

    def finish(self, tables) -> None:
        self.conn.commit()
        self.cur.execute("ANALYZE")
        self.conn.commit()


def fill(db: _Pg, n: int, data_dir: Path, seed: int = 1) -> dict:
    """Fill the catalog; return what the timed requests ask for."""
    rng = random.Random(seed)
    now = db.now
    db.copy("crds_contexts", ["id", "name", "first_seen", "in_use", "crds_version"],
            [(1, "jwst_1200.pmap", now, False, "12.0"), (2, "jwst_1201.pmap", now, True, "12.0")])
    refs = [(i + 1, f"jwst_nircam_{rt}_{i:04d}.fits", rt, "NIRCAM", "0" * 64, 1000, None)
            for i, rt in enumerate(REFTYPES * 5)]
    db.copy("reference_files", ["id", "name", "reftype", "instrument", "sha256", "size_bytes", "path"], refs)
    exp_rows, job_rows, prod_rows, pref_rows = [], [], [], []
    inst_names = list(INSTRUMENTS)
    for i in range(1, n + 1):
        inst = inst_names[i % len(inst_names)]
        det = rng.choice(INSTRUMENTS[inst])
        et = rng.choice(EXP_TYPES[inst])
        prog = f"{1000 + i % 400:05d}"
        expstart = 59800.0 + rng.random() * 1100
        fname = f"jw{prog}{i % 97:03d}001_02101_{i:05d}_{det.lower()}_uncal.fits"
        header = {f"KEY{k:02d}": f"value {k}" for k in range(40)}
        header.update({"INSTRUME": inst, "DETECTOR": det, "EXP_TYPE": et, "PROGRAM": prog})
        exp_rows.append((i, fname, "0" * 64, 1_000_000, f"raw/{prog}/{fname}", now, prog, "001", "001",
                         "001001", "1", inst, det, et, "RAPID", "FULL", 5, 2, 1, 0, "F200W", "CLEAR", expstart,
                         "2023-01-01", "00:00:00", "TARGET", "calwebb_detector1", json.dumps(header)))
        job_rows.append((i, "calwebb_detector1", "calib", i, 2, "0.1.0", "{}", "{}", "0" * 64, "succeeded", now,
                         now, now, "host:1", 1, json.dumps({"ramp_fit": 0.4, "jump": 0.2})))
        root = fname[: -len("_uncal.fits")]
        prod_rows.append((i, i, i, f"{root}_rate.fits", str(data_dir / "products" / prog / root / f"job-{i}" /
                                                             f"{root}_rate.fits"),
                          "rate", "0" * 64, 100_000, now, True))
        for k, rt in enumerate(REFTYPES):
            pref_rows.append((len(pref_rows) + 1, i, rt, 1 + k + 4 * (i % 5)))
    db.copy("exposures", ["id", "filename", "sha256", "size_bytes", "storage_path", "ingested_at", "program",
                         "observtn", "visit", "visit_id", "exposure", "instrume", "detector", "exp_type",
                         "readpatt", "subarray", "ngroups", "nints", "nframes", "groupgap", "filter", "pupil",
                         "expstart", "date_obs", "time_obs", "targname", "stage1_pipeline", "header"],
            exp_rows)
    db.copy("jobs", ["id", "pipeline", "engine", "exposure_id", "context_id", "cal_version",
                    "software_versions", "parameters", "param_hash", "status", "created_at", "started_at",
                    "finished_at", "worker", "attempts", "step_timings"], job_rows)
    db.copy("products", ["id", "job_id", "exposure_id", "filename", "path", "suffix", "sha256", "size_bytes",
                        "created_at", "is_current"], prod_rows)
    db.copy("product_references", ["id", "product_id", "reftype", "reference_file_id"], pref_rows)
    db.execute("INSERT INTO campaigns (id, created_at, reason, selection, context_id, n_jobs, kind, status) "
               "VALUES (1, now(), 'new context jwst_1201.pmap', '{}', 2, 0, 'context', 'open')")
    db.execute("UPDATE jobs SET campaign_id = 1 WHERE id % 10 = 0")
    db.finish(("exposures", "jobs", "products", "product_references", "reference_files", "crds_contexts",
               "campaigns"))
    sample = rng.sample(range(1, n + 1), 30)
    return {"sample": sample, "exp_rows": {i: exp_rows[i - 1] for i in sample},
            "prod_paths": {i: prod_rows[i - 1][4] for i in sample}, "refs": [r[1] for r in refs]}


def write_files(db: _Pg, info: dict) -> None:
    """A real FITS product (and its previews) for every product the benchmark asks for."""
    from astropy.io import fits

    from calib.previews import write_previews

    rng = np.random.default_rng(2)
    for i in info["sample"]:
        path = Path(info["prod_paths"][i])
        path.parent.mkdir(parents=True, exist_ok=True)
        hdr = fits.Header()
        for k, rt in enumerate(REFTYPES):
            hdr[f"R_{rt.upper()[:6]}"] = f"crds://{info['refs'][k + 4 * (i % 5)]}"
        for step in ("DQINIT", "SATURA", "SUPERB", "REFPIX", "LINEAR", "DARK", "JUMP", "RAMP"):
            hdr[f"S_{step}"] = "COMPLETE"
        sci = rng.normal(1.0, 0.1, (1024, 1024)).astype(np.float32)
        dq = np.zeros(sci.shape, np.uint32)
        dq[:4], dq[-4:], dq[:, :4], dq[:, -4:] = 1, 1, 1, 1
        fits.HDUList([fits.PrimaryHDU(header=hdr), fits.ImageHDU(sci, name="SCI"),
                      fits.ImageHDU(dq, name="DQ")]).writeto(path)
        for p in write_previews(path, "rate"):
            db.execute("INSERT INTO product_previews (product_id, kind, path, sha256, size_bytes, width, height,"
                   " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
                       (i, p.kind, str(p.path), "0" * 64, p.path.stat().st_size, p.width, p.height))
    db.conn.commit()


def _serve(env: dict) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in env.items() if k != "ARCHIVE_BROKER_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "archive.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/api/summary", timeout=5).read()
            break
        except OSError:
            time.sleep(0.2)
    return proc, base


def _time_pages(base: str, info: dict, repeat: int) -> dict[str, list[float]]:
    """Sequential GETs of every page kind, ``repeat`` times each; milliseconds per request."""
    sample = info["sample"]
    e = info["exp_rows"]
    pages = {
        "home": lambda k: "/",
        "exposures": lambda k: "/exposures",
        "exposures filtered": lambda k: f"/exposures?instrument={e[sample[k]][11]}&detector={e[sample[k]][12]}"
                                        f"&exp_type={e[sample[k]][13]}",
        "exposures program": lambda k: f"/exposures?program={int(e[sample[k]][6])}",
        "exposures date range": lambda k: "/exposures?date_from=2023-03-01&date_to=2023-03-20",
        "exposures deep page": lambda k: f"/exposures?before={sample[k]}",
        "exposure": lambda k: f"/exposures/{e[sample[k]][1]}",
        "product": lambda k: f"/products/{sample[k]}",
        "preview png": lambda k: f"/products/{sample[k]}/preview.png",
        "reference": lambda k: f"/references/{info['refs'][k % len(info['refs'])]}",
        "contexts": lambda k: "/contexts",
        "context diff": lambda k: "/contexts?old=jwst_1200.pmap&new=jwst_1201.pmap",
        "campaign": lambda k: "/campaigns/1",
        "api exposures": lambda k: f"/api/exposures?instrument={e[sample[k]][11]}",
        "api product": lambda k: f"/api/products/{sample[k]}",
    }
    for path in (p(0) for p in pages.values()):  # warm: imports, pool, plan caches
        urllib.request.urlopen(base + path, timeout=60).read()
    times: dict[str, list[float]] = {}
    for k in range(repeat):
        for name_, fn in pages.items():
            t = time.perf_counter()
            with urllib.request.urlopen(base + fn(k % len(sample)), timeout=60) as r:
                r.read()
                assert r.status == 200
            times.setdefault(name_, []).append((time.perf_counter() - t) * 1000)
    return times


def _report(backend: str, n: int, times: dict[str, list[float]]) -> None:
    print(f"{backend}: {'page':24s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for name_, ts in times.items():
        print(f"{backend}: {name_:24s} {np.percentile(ts, 50):8.1f} {np.percentile(ts, 95):8.1f} {max(ts):8.1f}")
    every = [t for ts in times.values() for t in ts]
    print(f"{backend}: all pages: p95 {np.percentile(every, 95):.1f} ms over {len(every)} requests "
          f"(goal < 300 ms with 100,000 exposures)")


def run_postgresql(n: int, repeat: int) -> None:
    """Fill a fresh PostgreSQL database, serve it as the read-only role, time the pages, drop it."""
    import psycopg
    from sqlalchemy.engine import make_url

    from archive.catalog.db import dispose_engines, upgrade
    from archive.catalog.readonly import grant_readonly

    admin = make_url(PG_ADMIN)
    name = f"archive_bench_web_{uuid.uuid4().hex[:8]}"
    admin_info = f"host={admin.host} port={admin.port or 5432} user={admin.username} dbname={admin.database}"
    with psycopg.connect(admin_info, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    conninfo = f"host={admin.host} port={admin.port or 5432} user={admin.username} dbname={name}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    proc = None
    try:
        upgrade(url)
        t0 = time.perf_counter()
        db = _Pg(conninfo)
        info = fill(db, n, tmp)
        write_files(db, info)
        db.close()
        print(f"postgresql: {n} exposures, {n} jobs, {n} products, {4 * n} product references "
              f"(filled in {time.perf_counter() - t0:.1f} s)")
        role = f"ro_{name}"
        grant_readonly(url, role)  # `archive db grant`: the web view reads as this role only
        ro_url = admin.set(database=name, username=role, password=None).render_as_string(hide_password=False)
        proc, base = _serve({**os.environ, "ARCHIVE_DATA_DIR": str(tmp), "ARCHIVE_DB_URL": url,
                             "ARCHIVE_READONLY_DB_URL": ro_url})
        _report("postgresql", n, _time_pages(base, info, repeat))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        dispose_engines()
        with psycopg.connect(admin_info, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "ro_{name}"')
        shutil.rmtree(tmp, ignore_errors=True)


def run_sqlite(n: int, repeat: int) -> None:
    """Fill a fresh SQLite catalog file, serve it (opened ``mode=ro``), time the pages, delete it."""
    from archive.catalog.db import dispose_engines, upgrade

    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    path = tmp / "catalog.sqlite"
    url = f"sqlite:///{path}"
    proc = None
    try:
        upgrade(url)
        dispose_engines()
        t0 = time.perf_counter()
        db = _Sqlite(path)
        info = fill(db, n, tmp)
        write_files(db, info)
        db.close()
        print(f"sqlite: {n} exposures, {n} jobs, {n} products, {4 * n} product references "
              f"(filled in {time.perf_counter() - t0:.1f} s)")
        proc, base = _serve({**os.environ, "ARCHIVE_DATA_DIR": str(tmp), "ARCHIVE_DB_URL": url,
                             "ARCHIVE_READONLY_DB_URL": ""})
        _report("sqlite", n, _time_pages(base, info, repeat))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="exposures in the catalog")
    ap.add_argument("--repeat", type=int, default=20, help="requests per page kind")
    ap.add_argument("--backend", nargs="+", choices=("postgresql", "sqlite"), default=["postgresql", "sqlite"],
                    help="catalog back ends to measure, one after the other")
    args = ap.parse_args()
    for backend in args.backend:
        {"postgresql": run_postgresql, "sqlite": run_sqlite}[backend](args.n, args.repeat)


if __name__ == "__main__":
    main()
