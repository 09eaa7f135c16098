"""``archive demo``: the main job end to end on the embedded default.

In a fresh data directory (SQLite catalog, Celery tasks run in-process) it does what an
operator does: simulate raw exposures with stars from three rows of a real NIRCam imaging
pool (shipped in ``simulation/data``; cut to SUB320 to stay fast), ingest them together with a
real FGS exposure and a deliberately truncated file, choose the CRDS context, generate
associations, plan and run calwebb_detector1 (and calwebb_guider for the FGS exposure); a new
CRDS context re-delivers one detector's dark: only that exposure is remade and compared with
the product it supersedes. Then the product graph runs stages 2 and 3 (calwebb_image2 per
exposure, calwebb_image3 for the association: cal, i2d, cat, segm, crf), and a re-delivered
flat for one detector remakes only that cal and the stage-3 products, not the rates. It
finishes with a summary table and a provenance query in SQL.
"""
from __future__ import annotations

import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.io import fits
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from archive.associations.associate import associate
from archive.catalog.db import session_scope, upgrade
from archive.catalog.models import CrdsContext, Exposure, Product, ProductComparison
from archive.catalog.provenance import readonly_query
from archive.config import load_settings
from archive.crds import cache as crdscache
from archive.crds.references import use_context
from archive.execution.dispatch import get_dispatcher
from archive.ingest.batch import ingest
from archive.reprocessing.campaigns import switch_context
from archive.reprocessing.planner import plan, plan_and_send
from archive.reprocessing.status import campaign_status
from archive.reprocessing.whatif import what_if

from .pools import simulate_pool

DEMO_POOL = "pool_003_image_nircam.csv"
#: rows of DEMO_POOL simulated (NRCA1 twice and NRCB1: one image3 association), cut to SUB320
DEMO_ROWS = (0, 1, 8)
DEMO_SUBARRAY = "sub320"
REAL_RAW = "jw01019001001_gs-acq1_2022117003102_uncal.fits"

PROVENANCE_SQL = """
SELECT product, exposure, context, cal_version, reftype, reference
FROM product_reference_provenance
WHERE is_current AND suffix = 'rate' AND reftype IN ('dark', 'linearity')
ORDER BY product, reftype
"""


def _data(*parts: str) -> Path:
    return Path(str(resources.files("simulation").joinpath("data", *parts)))


def _demo_pool(src: Path, out: Path) -> Path:
    """Write the demo's pool: :data:`DEMO_ROWS` of the real pool ``src``, SUBARRAY SUB320.

    Parameters
    ----------
    src : Path
        The shipped real association pool (``|``-separated, jwst's pool format).
    out : Path
        Directory for the new pool file ``demo_imaging_pool.csv``.

    Returns
    -------
    Path
        The pool file written.
    """
    from archive.ingest.pools import pool_rows

    rows = pool_rows(src)
    picked = [dict(rows[i], SUBARRAY=DEMO_SUBARRAY) for i in DEMO_ROWS]
    out.mkdir(parents=True, exist_ok=True)
    pool = out / "demo_imaging_pool.csv"
    pool.write_text("|".join(picked[0]) + "\n"
                    + "".join("|".join(str(v) for v in r.values()) + "\n" for r in picked))
    return pool


def _stages_2_and_3(s, sim, workdir: Path, console: Console) -> dict:
    """Run stages 2 and 3 through the product graph, then a re-delivered flat for one detector.

    Returns the outcomes of the jobs that did not succeed.
    """
    from archive.catalog.models import Job
    from simulation import imaging_refs

    console.print("[bold]8. stages 2 and 3[/] (the product graph: calwebb_image2 per exposure from its rate, "
                  "calwebb_image3 for the association from the cals)")
    _, outcomes = plan_and_send(s, get_dispatcher(s), stale_only=False, retry_failed=False)
    failed = {j: o for j, o in outcomes.items() if o != "succeeded"}
    with session_scope(s.db_url) as db:
        made = db.execute(select(Job.pipeline, Job.engine, Product.suffix, Product.filename)
                          .join(Product, Product.job_id == Job.id)
                          .where(Job.pipeline.in_(("calwebb_image2", "calwebb_image3")), Product.is_current.is_(True))
                          .order_by(Job.id, Product.filename)).all()
    for pipeline, engine, suffix, filename in made:
        console.print(f"   {pipeline} ({engine}): {suffix:5s} {filename}")
    with session_scope(s.db_url) as db:
        exp = db.execute(select(Exposure).where(Exposure.detector == "NRCB1")).scalars().first()
        det, filt, pupil = exp.detector, exp.filter, exp.pupil
        rates_before = dict(db.execute(select(Product.filename, Product.id).where(
            Product.is_current.is_(True), Product.suffix == "rate")).all())
    crdscache.configure(s.crds_path)
    flat = imaging_refs.write_flat(workdir / f"jwst_sim_nircam_flat_{det.lower()}_v2.fits", "NIRCAM", det, filt,
                                   pupil, seed=7, version=2)
    with session_scope(s.db_url) as db:   # the context in use: the one with the re-delivered dark
        in_use = db.execute(select(CrdsContext.name).where(CrdsContext.in_use.is_(True))).scalar_one()
    ctx = crdscache.derive_context(s.crds_path, in_use, {("nircam", "flat", det): flat})
    console.print(f"[bold]9. a new CRDS context[/] {ctx}: the {det} {filt} flat re-delivered")
    report = switch_context(s, ctx)
    console.print(f"   reftypes that differ: {report.changed_reftypes}; stale: {report.by_change}")
    w = what_if(s, campaign_id=report.campaign_id)
    console.print("   plan by stage: " + "; ".join(
        f"{k} {v['jobs']} now, {v['waiting']} waiting, est. "
        + ("unknown" if v["est_core_seconds"] is None else f"{v['est_core_seconds']:.0f}") + " core-seconds"
        for k, v in w.by_stage.items()))
    _, outcomes = plan_and_send(s, get_dispatcher(s), stale_only=True, retry_failed=False)
    failed.update({j: o for j, o in outcomes.items() if o != "succeeded"})
    with session_scope(s.db_url) as db:
        remade = db.execute(select(Job.pipeline).where(Job.campaign_id == report.campaign_id)
                            .order_by(Job.id)).scalars().all()
        rates_after = dict(db.execute(select(Product.filename, Product.id).where(
            Product.is_current.is_(True), Product.suffix == "rate")).all())
    console.print(f"   campaign {report.campaign_id} ran {remade}; rates untouched: {rates_after == rates_before}")
    return failed


def _new_context_campaign(s, sim, console: Console) -> dict:
    """Deliver a new context with one detector's dark re-delivered, and remake what it makes stale.

    Stale set, campaign, remake, comparison: what ``archive crds add/use``, ``plan`` and
    ``reprocess --stale`` do. Returns the outcomes of the jobs that did not succeed.
    """
    first = sim.files[0].name
    crdscache.configure(s.crds_path)
    old_dark = sim.references[first]["dark"]
    det = fits.getheader(sim.files[0])["DETECTOR"]
    new_dark = s.data_dir / f"{Path(old_dark).stem}_redelivered.fits"
    with fits.open(crdscache.locate(old_dark)) as hdul:  # a dark 0.2 DN/frame higher
        hdul["SCI"].data = hdul["SCI"].data + np.float32(0.2) * np.arange(
            hdul["SCI"].data.shape[0], dtype=np.float32)[:, None, None]
        hdul.writeto(new_dark)
    ctx = crdscache.derive_context(s.crds_path, sim.context, {("nircam", "dark", det): new_dark})
    console.print(f"[bold]7. a new CRDS context[/] {ctx}: the {det} dark re-delivered "
                  f"(archive crds add / crds use / plan / reprocess --stale)")
    report = switch_context(s, ctx)
    console.print(f"   reftypes that differ: {report.changed_reftypes}; {report.candidates} candidates checked with "
                  f"crds; {report.stale_exposures} exposure stale: {report.by_change}")
    w = what_if(s, campaign_id=report.campaign_id)
    cost = f"{w.est_core_seconds:.1f}" if w.est_core_seconds is not None else "unknown"
    console.print(f"   plan: {w.jobs} to remake, first step {w.by_first_step}, est. {cost} core-seconds")
    _, outcomes = plan_and_send(s, get_dispatcher(s), stale_only=True, retry_failed=False,
                                graph=False)     # stage 1 here; stages 2 and 3 follow in step 8
    st = campaign_status(s, report.campaign_id)
    console.print(f"   campaign {report.campaign_id}: {st.counts['succeeded']} succeeded, "
                  f"{st.counts['failed']} failed; {st.state}")
    with session_scope(s.db_url) as db:
        rows = db.execute(
            select(ProductComparison).join(Product, Product.id == ProductComparison.product_id)
            .join(Exposure, Exposure.id == Product.exposure_id)
            .where(Exposure.filename == first, Product.suffix == "rate", Product.is_current.is_(True))).scalars()
        for c in rows:
            if c.extension == "SCI":
                console.print(f"   {first} rate vs the product it supersedes: SCI {c.frac_changed:.1%} of pixels "
                              f"changed, median |new-old|/ERR {c.median_dev_over_err:.3f}, "
                              f"99th percentile {c.p99_dev_over_err:.3f}")
    return {j: o for j, o in outcomes.items() if o != "succeeded"}


def run_demo(workdir: Path | None, limit: int | None = None, ngroups: int = 3, console: Console | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every planned job succeeded)."""
    console = console or Console()
    t0 = time.monotonic()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="archive-demo-")).resolve()
    data = workdir / "data"
    # the embedded default, whatever the environment says
    s = load_settings(data).with_(db_url=f"sqlite:///{data / 'catalog.sqlite'}", broker_url=None,
                                  crds_path=data / "crds", crds_context=None)
    console.rule(f"archive demo in {workdir}")

    console.print("[bold]1. archive init[/]: catalog schema by alembic upgrade head")
    for d in (s.raw_dir, s.products_dir, s.associations_dir, s.crds_path):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)

    pool = _data("pools", DEMO_POOL)
    pool = _demo_pool(pool, workdir)
    console.print(f"[bold]2. archive simulate[/] --pool {pool.name} (rows {DEMO_ROWS} of {DEMO_POOL}, SUB320): "
                  "ramps with stars + a synthetic CRDS cache with the stage-2/3 imaging references")
    real = _data("raw", REAL_RAW)
    guider = str(fits.getval(real, "DETECTOR"))
    sim = simulate_pool(pool, workdir / "incoming", s.crds_path, limit=limit, seed=3, ngroups=ngroups,
                        guider_detectors=(guider,), imaging=True, star_density=0.1, max_stars=60000)
    console.print(f"   {len(sim.files)} exposures, context {sim.context} (with {guider} references for "
                  "calwebb_guider)")

    bad = workdir / "incoming" / "jw_truncated_uncal.fits"
    raw = sim.files[0].read_bytes()
    bad.write_bytes(raw[: len(raw) // 3])
    console.print("[bold]3. archive ingest[/] the simulated files, the real FGS exposure and a truncated file")
    report = ingest(s, [*sim.files, real, bad], pool_path=pool)
    t = Table("file", "status", "stage 1", "reason")
    for o in report.outcomes:
        t.add_row(o.filename, o.status, o.stage1_pipeline or "", o.reason)
    console.print(t)

    console.print(f"[bold]4. archive crds use[/] {sim.context}")
    with session_scope(s.db_url) as db:
        use_context(db, sim.context)

    console.print("[bold]5. archive associate[/] (the jwst generator on the catalog's pool)")
    asn = associate(s)
    console.print(f"   {len(asn.created)} associations: {asn.levels}")

    console.print("[bold]6. archive reprocess[/] (stage 1: calwebb_detector1, calwebb_guider for the real FGS "
                  "exposure; --dry-run first)")
    p = plan(s, dry_run=True, pipeline=None, graph=False)
    for item in p.items:
        console.print(f"   {item.exposure}: {item.action} {item.detail}")
    p = plan(s, pipeline=None, graph=False)
    outcomes = get_dispatcher(s).send(p.job_ids)
    failed = {j: o for j, o in outcomes.items() if o != "succeeded"}
    for j, o in failed.items():
        console.print(f"   [red]job {j}: {o}")
    with session_scope(s.db_url) as db:
        cal = db.execute(select(Product).join(Exposure, Exposure.id == Product.exposure_id)
                         .where(Exposure.filename == real.name, Product.suffix == "cal")).scalar_one_or_none()
    if cal is not None:
        with fits.open(s.data_dir / cal.path) as hdul:
            h = hdul[0].header
            console.print(f"   the real FGS exposure by calwebb_guider: {cal.filename}, SCI {hdul['SCI'].data.shape} "
                          f"{hdul['SCI'].header.get('BUNIT', '')}; S_DQINIT {h['S_DQINIT']}, S_GUICDS {h['S_GUICDS']}, "
                          f"S_FLAT {h['S_FLAT']}; R_FLAT {h.get('R_FLAT')}")

    failed.update(_new_context_campaign(s, sim, console))
    failed.update(_stages_2_and_3(s, sim, workdir, console))

    console.print("[bold]10. summary[/]")
    cols, rows = readonly_query(s, """
        SELECT e.filename AS exposure, e.exp_type, e.detector, e.stage1_pipeline AS pipeline,
               COALESCE(j.status, (SELECT j2.status FROM jobs j2 WHERE j2.exposure_id = e.id
                                   ORDER BY j2.id DESC LIMIT 1), 'not run') AS job,
               p.filename AS product, c.name AS context
        FROM exposures e
        LEFT JOIN products p ON p.exposure_id = e.id AND p.is_current AND p.suffix IN ('rate', 'cal', 'i2d')
        LEFT JOIN jobs j ON j.id = p.job_id
        LEFT JOIN crds_contexts c ON c.id = j.context_id
        ORDER BY e.filename""")
    t = Table(*cols, title="catalog")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)

    console.print("[bold]11. archive sql[/] (provenance view):" + PROVENANCE_SQL)
    cols, rows = readonly_query(s, PROVENANCE_SQL)
    t = Table(*cols, title="which reference made which product")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)
    console.print(f"done in {time.monotonic() - t0:.0f} s; data directory {data}")
    console.print(f"try: ARCHIVE_DATA_DIR={data} archive provenance {sim.files[0].name}")
    return 1 if failed else 0
