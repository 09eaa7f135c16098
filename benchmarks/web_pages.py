"""Page load times of the web view (``archive serve``) on a PostgreSQL catalog of N exposures.

Builds a fresh PostgreSQL database (alembic upgrade head), fills it with COPY: N
exposures (4 instruments, 10 detectors, 6 EXP_TYPEs, EXPSTART over 3 years, a header of
~40 keywords each), one calwebb_detector1 job and one current ``_rate`` product per
exposure with 4 product_references, 20 reference files, two CRDS contexts and a campaign;
the products that are requested get a real FITS file (header with R_*/S_* keywords) and a
PNG preview. Then it makes the read-only role (``archive db grant``), starts ``archive
serve`` on it as its own process and times sequential GETs
over HTTP (wall time from request to the last byte) of every page kind, with filters and
deep keyset pages, and prints the p50/p95/max per page kind and the p95 over all.

    python benchmarks/web_pages.py -n 100000 --repeat 20

Issue 13's goal: p95 under 300 ms with 100,000 exposures.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
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


def _copy(cur, table: str, cols: list[str], rows) -> None:
    buf = io.StringIO()
    for r in rows:
        buf.write("\t".join("\\N" if v is None else str(v).replace("\\", "\\\\").replace("\t", " ") for v in r))
        buf.write("\n")
    buf.seek(0)
    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
        while chunk := buf.read(1 << 20):
            cp.write(chunk)


def fill(conninfo: str, n: int, data_dir: Path, seed: int = 1) -> dict:
    """Fill the catalog; return what the timed requests ask for."""
    import psycopg

    rng = random.Random(seed)
    now = "2026-12-06 00:00:00+00"
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        _copy(cur, "crds_contexts", ["id", "name", "first_seen", "in_use", "crds_version"],
              [(1, "jwst_1200.pmap", now, False, "12.0"), (2, "jwst_1201.pmap", now, True, "12.0")])
        refs = [(i + 1, f"jwst_nircam_{rt}_{i:04d}.fits", rt, "NIRCAM", "0" * 64, 1000, None)
                for i, rt in enumerate(REFTYPES * 5)]
        _copy(cur, "reference_files", ["id", "name", "reftype", "instrument", "sha256", "size_bytes", "path"], refs)
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
        _copy(cur, "exposures", ["id", "filename", "sha256", "size_bytes", "storage_path", "ingested_at", "program",
                                 "observtn", "visit", "visit_id", "exposure", "instrume", "detector", "exp_type",
                                 "readpatt", "subarray", "ngroups", "nints", "nframes", "groupgap", "filter", "pupil",
                                 "expstart", "date_obs", "time_obs", "targname", "stage1_pipeline", "header"],
              exp_rows)
        _copy(cur, "jobs", ["id", "pipeline", "engine", "exposure_id", "context_id", "cal_version",
                            "software_versions", "parameters", "param_hash", "status", "created_at", "started_at",
                            "finished_at", "worker", "attempts", "step_timings"], job_rows)
        _copy(cur, "products", ["id", "job_id", "exposure_id", "filename", "path", "suffix", "sha256", "size_bytes",
                                "created_at", "is_current"], prod_rows)
        _copy(cur, "product_references", ["id", "product_id", "reftype", "reference_file_id"], pref_rows)
        cur.execute("INSERT INTO campaigns (id, created_at, reason, selection, context_id, n_jobs, kind, status) "
                    "VALUES (1, now(), 'new context jwst_1201.pmap', '{}', 2, 0, 'context', 'open')")
        cur.execute("UPDATE jobs SET campaign_id = 1 WHERE id % 10 = 0")
        for t in ("exposures", "jobs", "products", "product_references", "reference_files", "crds_contexts",
                  "campaigns"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
        conn.commit()
        cur.execute("ANALYZE")
    sample = rng.sample(range(1, n + 1), 30)
    return {"sample": sample, "exp_rows": {i: exp_rows[i - 1] for i in sample},
            "prod_paths": {i: prod_rows[i - 1][4] for i in sample}, "refs": [r[1] for r in refs]}


def write_files(conninfo: str, info: dict) -> None:
    """A real FITS product (and its previews) for every product the benchmark asks for."""
    import psycopg
    from astropy.io import fits

    from calib.previews import write_previews

    rng = np.random.default_rng(2)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
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
                cur.execute("INSERT INTO product_previews (product_id, kind, path, sha256, size_bytes, width, height,"
                            " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
                            (i, p.kind, str(p.path), "0" * 64, p.path.stat().st_size, p.width, p.height))
        conn.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="exposures in the catalog")
    ap.add_argument("--repeat", type=int, default=20, help="requests per page kind")
    args = ap.parse_args()

    import psycopg
    from sqlalchemy.engine import make_url

    from archive.catalog.db import upgrade

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
        info = fill(conninfo, args.n, tmp)
        write_files(conninfo, info)
        print(f"catalog: {args.n} exposures, {args.n} jobs, {args.n} products, {4 * args.n} product references "
              f"(filled in {time.perf_counter() - t0:.1f} s)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        from archive.catalog.readonly import grant_readonly

        role = f"ro_{name}"
        grant_readonly(url, role)  # `archive db grant`: the web view reads as this role only
        ro_url = admin.set(database=name, username=role, password=None).render_as_string(hide_password=False)
        env = {**os.environ, "ARCHIVE_DATA_DIR": str(tmp), "ARCHIVE_DB_URL": url, "ARCHIVE_READONLY_DB_URL": ro_url}
        env.pop("ARCHIVE_BROKER_URL", None)
        proc = subprocess.Popen([sys.executable, "-m", "archive.cli", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/api/summary", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
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
        for k in range(args.repeat):
            for name_, fn in pages.items():
                t = time.perf_counter()
                with urllib.request.urlopen(base + fn(k % len(sample)), timeout=60) as r:
                    r.read()
                    assert r.status == 200
                times.setdefault(name_, []).append((time.perf_counter() - t) * 1000)
        print(f"{'page':24s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
        for name_, ts in times.items():
            print(f"{name_:24s} {np.percentile(ts, 50):8.1f} {np.percentile(ts, 95):8.1f} {max(ts):8.1f}")
        every = [t for ts in times.values() for t in ts]
        print(f"all pages: p95 {np.percentile(every, 95):.1f} ms over {len(every)} requests "
              f"(goal < 300 ms with 100,000 exposures)")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        from archive.catalog.db import dispose_engines

        dispose_engines()
        with psycopg.connect(admin_info, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "ro_{name}"')
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
