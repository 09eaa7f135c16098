"""Time to compute the stale set of a CRDS context change over a large catalog.

Issue 4's goal: under 10 s on PostgreSQL for 100,000 catalogued exposures.

Set-up (not timed): six NIRCam SUB160 exposures of the real pool_003 are simulated with
their synthetic CRDS context A (one reference set per detector) and ingested; the catalog
is then filled directly with N exposures cloned from them (each with its own DATE-OBS and
TIME-OBS, so no two exposures share a selection header), one succeeded job and one current
``_rate`` product each, with the product's references as selected under A. Context B
replaces the dark of one detector (NRCA1).

Timed: ``archive.reprocessing.campaigns.switch_context(B)``: crds diff of A and B, candidate products
in SQL, crds selection for each candidate, campaign rows and stale flags written.

    python benchmarks/stale_set.py                 # 100,000 exposures, fresh PostgreSQL db
    python benchmarks/stale_set.py -n 20000 --db sqlite
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _fresh_pg() -> tuple[str, callable]:
    import psycopg

    name = f"archive_bench_{uuid.uuid4().hex[:8]}"
    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def drop():
        from archive.catalog.db import dispose_engines

        dispose_engines()
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="exposures in the catalog")
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and database")
    ap.add_argument("--profile", action="store_true", help="cProfile the timed part")
    args = ap.parse_args()

    import numpy as np
    from astropy.io import fits
    from sqlalchemy import func, select

    from archive.catalog.db import session_scope, upgrade
    from archive.catalog.models import CrdsContext, Exposure, Job, JobInput, Product, ProductReference
    from archive.config import load_settings
    from archive.crds import cache as crdscache
    from archive.crds.references import compute_bestrefs, use_context
    from archive.execution.runner import CAL_VER, param_hash, software_versions
    from archive.ingest.batch import ingest
    from archive.ingest.pools import pool_rows
    from archive.reprocessing.campaigns import switch_context
    from calib.pipelines import required_reftypes
    from simulation.pools import simulate_pool

    work = Path(tempfile.mkdtemp(prefix="stale-bench-"))
    drop = None
    if args.db == "postgres":
        db_url, drop = _fresh_pg()
    else:
        db_url = f"sqlite:///{work / 'catalog.sqlite'}"
    try:
        t = time.perf_counter()
        rows = pool_rows(ROOT / "simulation" / "data" / "pools" / "pool_003_image_nircam.csv")
        seen, picked = set(), []
        for r in rows:
            if r["DETECTOR"] not in seen:
                seen.add(r["DETECTOR"])
                picked.append(dict(r, SUBARRAY="sub160"))
        picked = picked[:6]
        pool = work / "pool.csv"
        cols = list(picked[0])
        pool.write_text("|".join(cols) + "\n" + "".join("|".join(r[c] for c in cols) + "\n" for r in picked))
        crds_path = work / "crds"
        sim = simulate_pool(pool, work / "incoming", crds_path, seed=1, ngroups=2, nints=1)
        s = load_settings(work / "data").with_(db_url=db_url, crds_path=crds_path)
        for d in (s.raw_dir, s.products_dir):
            d.mkdir(parents=True, exist_ok=True)
        upgrade(s.db_url)
        assert ingest(s, sim.files, pool_path=pool).ok
        rng = random.Random(5)
        with session_scope(s.db_url) as db:
            ctx = use_context(db, sim.context)
            templates = db.execute(select(Exposure)).scalars().all()
            refs = {}
            for e in templates:
                best = compute_bestrefs(s, db, e, ctx, required_reftypes(e.stage1_pipeline, e.header))
                from archive.catalog.models import ReferenceFile

                refs[e.id] = {rt: db.execute(select(ReferenceFile.id).where(ReferenceFile.name == n)).scalar_one()
                              for rt, n in best.items() if n != "N/A"}
            ctx_id = ctx.id
            tmpl = [(e, refs[e.id]) for e in templates]
        print(f"set-up: simulated and ingested {len(templates)} templates in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        versions = software_versions()
        phash = param_hash({})
        base_cols = [c.name for c in Exposure.__table__.columns if c.name != "id"]
        batch = 10_000
        next_id = 1_000_000
        det_count: dict[str, int] = {}
        for start in range(0, args.n, batch):
            exps, jobs, inputs, prods, prefs = [], [], [], [], []
            for i in range(start, min(start + batch, args.n)):
                e, r = tmpl[i % len(tmpl)]
                eid = next_id + i
                day = 1 + rng.randrange(1400)
                date = f"{2022 + day // 365}-{1 + (day % 365) // 31:02d}-{1 + day % 28:02d}"
                tm = (f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
                      f".{rng.randrange(1000):03d}")
                name = f"jw9{i:07d}_00001_{e.detector.lower()}_uncal.fits"
                header = dict(e.header, **{"DATE-OBS": date, "TIME-OBS": tm, "FILENAME": name})
                row = {c: getattr(e, c) for c in base_cols}
                row.update(id=eid, filename=name, header=header, date_obs=date, time_obs=tm,
                           storage_path=f"/bench/raw/{name}", sha256="0" * 64)
                exps.append(row)
                jobs.append({"id": eid, "pipeline": "calwebb_detector1", "engine": "calib", "exposure_id": eid,
                             "context_id": ctx_id, "cal_version": CAL_VER, "software_versions": versions,
                             "parameters": {}, "param_hash": phash, "status": "succeeded", "attempts": 1})
                inputs.append({"job_id": eid, "exposure_id": eid, "sha256": "0" * 64})
                prods.append({"id": eid, "job_id": eid, "exposure_id": eid, "filename": name.replace("uncal", "rate"),
                              "path": f"/bench/products/{eid}/{name.replace('uncal', 'rate')}", "suffix": "rate",
                              "sha256": "0" * 64, "size_bytes": 1, "is_current": True})
                prefs.extend({"product_id": eid, "reftype": rt, "reference_file_id": rid} for rt, rid in r.items())
                det_count[e.detector] = det_count.get(e.detector, 0) + 1
            with session_scope(s.db_url) as db:
                db.execute(Exposure.__table__.insert(), exps)
                db.execute(Job.__table__.insert(), jobs)
                db.execute(JobInput.__table__.insert(), inputs)
                db.execute(Product.__table__.insert(), prods)
                db.execute(ProductReference.__table__.insert(), prefs)
        if s.db_url.startswith("postgresql"):
            from archive.catalog.db import get_engine

            with get_engine(s.db_url).connect() as c:
                c.exec_driver_sql("ANALYZE")
        print(f"set-up: {args.n} exposures, jobs, products and {args.n * 8} product references written in "
              f"{time.perf_counter() - t:.1f} s ({args.db})")

        crdscache.configure(crds_path)
        target = next(e for e, _ in tmpl if e.detector == "NRCA1")
        old_dark = sim.references[target.filename]["dark"]
        new_dark = work / "jwst_sim_nircam_dark_nrca1_bench.fits"
        with fits.open(crdscache.locate(old_dark)) as h:
            h["SCI"].data = h["SCI"].data + np.float32(0.1)
            h.writeto(new_dark)
        new_ctx = crdscache.derive_context(crds_path, sim.context, {("nircam", "dark", "NRCA1"): new_dark})

        t = time.perf_counter()
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            report = prof.runcall(switch_context, s, new_ctx)
            elapsed = time.perf_counter() - t
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        else:
            report = switch_context(s, new_ctx)
            elapsed = time.perf_counter() - t
        with session_scope(s.db_url) as db:
            n_stale = db.scalar(select(func.count()).select_from(Product).where(Product.stale_campaign_id.is_not(None)))
            n_ctx = db.scalar(select(func.count()).select_from(CrdsContext))
        expected = det_count.get("NRCA1", 0) + 1  # + the ingested template has no product: +0
        print(f"\ncontext change {sim.context} -> {new_ctx} (dark of NRCA1 replaced) over {args.n} exposures "
              f"({args.db}):")
        print(f"  changed reftypes      {report.changed_reftypes}")
        print(f"  candidates checked    {report.candidates}")
        print(f"  stale exposures       {report.stale_exposures} (NRCA1 exposures in the catalog: "
              f"{det_count.get('NRCA1', 0)}); products flagged {n_stale}; contexts {n_ctx}")
        print(f"  time to compute and record the stale set: {elapsed:.2f} s (goal < 10 s)")
        assert report.stale_exposures == det_count.get("NRCA1", 0), (report.stale_exposures, expected)
        return 0
    finally:
        if not args.keep:
            if drop:
                drop()
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} {db_url}")


if __name__ == "__main__":
    raise SystemExit(main())
