"""The web view in a real headless browser: Debian's chromium driven by Playwright.

``archive serve`` runs as its own process on a PostgreSQL catalog; the browser opens every
page, follows exposure -> product -> reference -> the products of that reference, checks
that the preview image has loaded, and watches a campaign page update itself while a real
Celery worker (through the real Redis) runs the campaign's job. Stage-2/3 products come
from the demo's product graph (SQLite, three SUB320 NIRCam exposures raw -> rate -> cal ->
mosaic, then a re-delivered flat remakes one cal): the browser follows the lineage down rate -> cal -> i2d
and up from the mosaic to the raw exposures, with previews and the comparison of a remade
cal with the one it superseded. A screenshot of each page goes to the test output
(``ARCHIVE_TEST_OUTPUT``, default ``test-output/web``).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from archive.catalog.db import session_scope
from archive.catalog.models import Association, Exposure, Job, Product
from archive.reprocessing.planner import plan_and_send

from .conftest import embedded_archive
from .test_end_to_end import simulated  # noqa: F401 - the module-scoped simulation fixture
from .test_web import build_archive, new_pg_database, redeliver_dark
from .test_worker import _worker

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(os.environ.get("ARCHIVE_TEST_OUTPUT", Path(__file__).resolve().parents[1] / "test-output")) / "web"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory, simulated):  # noqa: F811
    """An archive on PostgreSQL with products, a new context's campaign not yet run, and
    ``archive serve`` on a free port."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    root = tmp_path_factory.mktemp("web-browser")
    url, drop = new_pg_database()
    try:
        s, result, old_ctx, _, _ = build_archive(root, url, simulated, remake=False)
        new_ctx, cid = redeliver_dark(s, result, root)
        env = {**os.environ, "ARCHIVE_DATA_DIR": str(s.data_dir), "ARCHIVE_DB_URL": s.db_url,
               "ARCHIVE_READONLY_DB_URL": s.readonly_db_url, "CRDS_PATH": str(s.crds_path)}
        for k in ("ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
            env.pop(k, None)
        proc, base = _serve(env, root / "serve.log")
        try:
            yield {"settings": s, "result": result, "base": base, "campaign": cid, "old": old_ctx, "new": new_ctx,
                   "env": env, "root": root}
        finally:
            _stop(proc)
    finally:
        drop()


def _serve(env: dict, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``archive serve`` on a free port as its own process group; waits until it answers."""
    port = _free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "archive.cli", "serve", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/api/summary", timeout=2).read()
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                pytest.fail(f"archive serve did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def served_graph(tmp_path_factory):
    """The demo's product graph, cut to what the pages need, served read-only from SQLite.

    Three SUB320 NIRCam exposures of a real imaging pool (``archive demo``'s rows) go raw ->
    rate -> cal + i2d -> mosaic (i2d, cat, segm, crf) in process; then a re-delivered
    NRCB1 flat remakes that exposure's cal (stage 2 only: the mosaic stays current and stale,
    which saves a second calwebb_image3).
    """
    from archive.associations.associate import associate
    from archive.crds import cache as crdscache
    from archive.crds.references import use_context
    from archive.execution.dispatch import get_dispatcher
    from archive.ingest.batch import ingest
    from archive.reprocessing.campaigns import switch_context
    from archive.reprocessing.planner import plan, plan_and_send
    from simulation import imaging_refs
    from simulation.demo import DEMO_POOL, _data, _demo_pool
    from simulation.pools import simulate_pool

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    root = tmp_path_factory.mktemp("web-graph")
    data = root / "data"
    s = embedded_archive(data)
    pool = _demo_pool(_data("pools", DEMO_POOL), root)
    sim = simulate_pool(pool, root / "incoming", s.crds_path, seed=3, ngroups=3, imaging=True,
                        star_density=0.1, max_stars=60000)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG", "CRDS_PATH"):
            mp.delenv(var, raising=False)
        assert ingest(s, sim.files, pool_path=pool).ok
        with session_scope(s.db_url) as db:
            use_context(db, sim.context)
        associate(s)
        _, out = plan_and_send(s, get_dispatcher(s), retry_failed=False)     # stages 1, 2 and 3
        assert set(out.values()) == {"succeeded"}, out
        with session_scope(s.db_url) as db:
            exp = db.execute(select(Exposure).where(Exposure.detector == "NRCB1")).scalars().first()
            det, filt, pupil = exp.detector, exp.filter, exp.pupil
        crdscache.configure(s.crds_path)
        flat = imaging_refs.write_flat(root / f"jwst_sim_nircam_flat_{det.lower()}_v2.fits", "NIRCAM", det, filt,
                                       pupil, seed=7, version=2)
        new_ctx = crdscache.derive_context(s.crds_path, sim.context, {("nircam", "flat", det): flat})
        switch_context(s, new_ctx)
        remake = plan(s, stale_only=True, retry_failed=False)      # the cal now; the mosaic waits for it
        assert set(get_dispatcher(s).send(remake.job_ids).values()) == {"succeeded"}
    env = {**os.environ, "ARCHIVE_DATA_DIR": str(data), "ARCHIVE_DB_URL": s.db_url, "ARCHIVE_READONLY_DB_URL": "",
           "CRDS_PATH": str(s.crds_path)}
    for k in ("ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        env.pop(k, None)
    proc, base = _serve(env, root / "serve.log")
    try:
        yield {"base": base, "db_url": s.db_url, "old": sim.context, "new": new_ctx}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def test_browse_exposure_product_reference_and_back(served, browser):
    base, s, result = served["base"], served["settings"], served["result"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")
    assert "jwst-archive" in page.title()
    _shot(page, "home")
    page.click("text=Exposures")
    target = result.files[0].name
    assert page.locator(f"a[href='/exposures/{target}']").count() == 1
    _shot(page, "exposures")
    page.select_option("select[name=instrument]", "NIRCAM")
    page.click("button[type=submit]")
    assert "instrument=NIRCAM" in page.url and page.locator("#exposures a").count() == len(result.files)
    page.click(f"a[href='/exposures/{target}']")
    page.wait_for_url(f"**/exposures/{target}")
    _shot(page, "exposure")
    with session_scope(s.db_url) as db:
        rate = db.execute(select(Product).join(Exposure, Exposure.id == Product.exposure_id).where(
            Exposure.filename == target, Product.suffix == "rate", Product.is_current.is_(True))).scalar_one()
    # the exposure page's thumbnails have loaded
    thumbs = page.locator("img.thumb")
    assert thumbs.count() >= 2
    assert all(w > 0 for w in thumbs.evaluate_all("els => els.map(e => e.naturalWidth)"))
    page.click(f"a[href='/products/{rate.id}']")
    page.wait_for_url(f"**/products/{rate.id}")
    page.wait_for_load_state("load")
    width = page.eval_on_selector("#preview", "img => img.complete ? img.naturalWidth : 0")
    assert width > 0, "the preview image did not load"
    assert page.locator("#statuses").inner_text().count("COMPLETE") >= 5
    _shot(page, "product")
    small = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=0.75)
    small.goto(page.url)
    assert _loaded(small)
    small.screenshot(path=str(OUTPUT / "readme-product.png"))  # 960x540: the README's docs/web-product.png
    small.close()
    ref_link = page.locator("#references a[href*='dark']")
    ref_name = ref_link.inner_text().removeprefix("crds://")
    ref_link.click()
    page.wait_for_url(f"**/references/{ref_name}")
    _shot(page, "reference")
    products = page.locator("table.products a[href^='/products/']")
    assert products.count() >= 2  # the rate and the rateints made with this dark
    products.first.click()
    page.wait_for_url("**/products/*")
    assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0
    assert ref_name in page.content()
    assert not errors, errors
    page.close()


def test_every_page_renders(served, browser):
    base = served["base"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for name, path in [("associations", "/associations"), ("contexts", "/contexts"),
                       ("contexts-diff", f"/contexts?old={served['old']}&new={served['new']}"),
                       ("context", f"/contexts/{served['old']}"), ("references", "/references"),
                       ("campaigns", "/campaigns"), ("api-docs", "/api/docs")]:
        r = page.goto(base + path)
        assert r.status == 200, path
        _shot(page, name)
    page.goto(base + "/associations")
    page.locator("a[href^='/associations/']").first.click()
    page.wait_for_url("**/associations/*")
    assert page.locator("a[href^='/exposures/']").count() >= 1
    _shot(page, "association")
    page.goto(base + "/sql")
    page.fill("textarea[name=q]", "SELECT filename, exp_type FROM exposures ORDER BY filename")
    page.click("button[type=submit]")
    assert page.locator("#n-rows").inner_text() == "4"
    _shot(page, "sql")
    page.fill("textarea[name=q]", "DELETE FROM products")
    page.click("button[type=submit]")
    assert "refused" in page.locator("#sql-error").inner_text()
    assert not errors, errors
    page.close()


def test_campaign_page_follows_a_real_worker(served, browser, redis_url):
    from tests.test_faults import _purge_queue

    base, s, cid = served["base"], served["settings"], served["campaign"]
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    page.goto(f"{base}/campaigns/{cid}")
    assert page.locator("#n-succeeded").inner_text() == "0"
    assert page.locator("#n-never_run").inner_text() == "1"
    _shot(page, "campaign-before")
    queue = f"archive-web-{uuid.uuid4().hex[:8]}"
    env = {**served["env"], "ARCHIVE_BROKER_URL": redis_url, "ARCHIVE_QUEUE": queue}
    proc = _worker(env, served["root"] / "worker.log")
    try:
        _, out = plan_and_send(s.with_(broker_url=redis_url, queue=queue), stale_only=True,
                               graph=False)   # the campaign's stage-1 job (no stage-2 references here)
        assert list(out.values()) == ["enqueued"], out
        # no reload: the page's own refresh shows the worker's progress
        page.wait_for_function("document.getElementById('n-succeeded').textContent === '1'", timeout=240_000)
        assert float(page.locator("#percent").inner_text()) == 100.0
        assert page.locator("#n-never_run").inner_text() == "0"
        _shot(page, "campaign-after")
    finally:
        _stop(proc)
        _purge_queue(redis_url, queue)
        page.close()


def _widths(page, selector: str = "#preview") -> list[int]:
    """naturalWidth of each image matching ``selector`` once every one has finished loading (0: failed)."""
    page.wait_for_load_state("load")
    page.wait_for_function("sel => Array.from(document.querySelectorAll(sel)).every(i => i.complete)", arg=selector)
    return page.locator(selector).evaluate_all("els => els.map(e => e.naturalWidth)")


def _loaded(page, selector: str = "#preview") -> bool:
    widths = _widths(page, selector)
    return bool(widths) and min(widths) > 0


def test_stage_2_and_3_products_down_and_up_the_lineage(served_graph, browser):
    base = served_graph["base"]
    with session_scope(served_graph["db_url"]) as db:
        mosaic = db.execute(select(Product).join(Job, Job.id == Product.job_id).where(
            Job.pipeline == "calwebb_image3", Product.suffix == "i2d", Product.is_current.is_(True))).scalar_one()
        asn = db.get(Association, mosaic.association_id).asn_name
        members = sorted(db.execute(select(Exposure.filename).where(Exposure.instrume == "NIRCAM")).scalars())
        # the cal the re-delivered flat remade (it supersedes the cal the mosaic was made from)
        remade = db.execute(select(Product).where(Product.suffix == "cal", Product.is_current.is_(True),
                                                  Product.supersedes_id.is_not(None))).scalar_one()
        remade_exp = db.get(Exposure, remade.exposure_id).filename
        # an exposure the flat left alone: its rate -> cal -> the mosaic
        exp = db.execute(select(Exposure).where(Exposure.instrume == "NIRCAM", Exposure.id != remade.exposure_id)
                         .order_by(Exposure.id)).scalars().first()
        rate, cal = (db.execute(select(Product).where(Product.exposure_id == exp.id, Product.suffix == sfx,
                                                      Product.is_current.is_(True))).scalar_one()
                     for sfx in ("rate", "cal"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{base}/exposures/{exp.filename}")
    assert page.locator("h2", has_text="Stage 2 products").count() == 1
    assert page.locator("h2", has_text="Stage 3 products").count() == 1  # its crf
    thumbs = _widths(page, "img.thumb")  # rate, stage-2 cal and i2d, crf
    assert len(thumbs) == 4 and min(thumbs) > 0, (thumbs, errors)
    _shot(page, "graph-exposure")
    # down: the rate, the cal made from it, the mosaic made from that cal
    page.click(f"a[href='/products/{rate.id}']")
    page.wait_for_url(f"**/products/{rate.id}")
    assert _loaded(page)
    page.click(f"#derived a[href='/products/{cal.id}']")
    page.wait_for_url(f"**/products/{cal.id}")
    assert _loaded(page), "the cal's preview did not load"
    assert "calwebb_image2" in page.content()
    statuses = page.locator("#statuses").inner_text()
    assert "S_FLAT" in statuses and "COMPLETE" in statuses
    assert page.locator(f"#inputs a[href='/products/{rate.id}']").count() == 1
    _shot(page, "product-cal")
    page.click(f"#derived a[href='/products/{mosaic.id}']")
    page.wait_for_url(f"**/products/{mosaic.id}")
    assert _loaded(page), "the mosaic's preview did not load"
    summary = page.locator("table").first.inner_text()
    assert asn in summary and "stale" in summary  # the new flat made it stale; its remake waits for the cal
    assert page.locator("#inputs a[href^='/products/']").count() == len(members)  # the members' cals
    assert page.locator("#upstream a[href^='/products/']").count() == len(members)  # their rates
    _shot(page, "product-i2d")
    # up: from the mosaic to the raw exposures, then to the remade cal of one of them
    raw = page.locator("#raw-exposures a")
    assert sorted(raw.all_inner_texts()) == members
    page.click(f"#raw-exposures a[href='/exposures/{remade_exp}']")
    page.wait_for_url(f"**/exposures/{remade_exp}")
    assert page.locator(f"a[href='/associations/{mosaic.association_id}']").count() == 1
    _shot(page, "graph-raw-exposure")
    page.click(f"a[href='/products/{remade.id}']")
    page.wait_for_url(f"**/products/{remade.id}")
    assert _loaded(page)
    # the comparison with the cal it superseded (made with the old flat): SCI changed
    sci = page.locator("#comparison tr", has_text="SCI")
    assert sci.count() == 1 and float(sci.locator("td").nth(2).inner_text()) > 0
    assert page.locator("#derived").inner_text().count("superseded") == 0  # nothing made from it yet
    _shot(page, "product-cal-remade")
    page.click(f"a[href='/products/{remade.supersedes_id}']")
    page.wait_for_url(f"**/products/{remade.supersedes_id}")
    assert page.locator(f"a[href='/products/{remade.id}']").count() >= 1  # "superseded by"
    assert page.locator(f"#derived a[href='/products/{mosaic.id}']").count() == 1  # what the old cal made
    page.goto(f"{base}/associations/{mosaic.association_id}")
    assert page.locator(f"a[href='/products/{mosaic.id}']").count() == 1
    assert _loaded(page, "img.thumb")  # the mosaic's, its crfs' and segm's thumbnails
    _shot(page, "graph-association")
    # the two contexts differ by the NRCB1 flat, for the one exposure whose cal it remade
    page.goto(f"{base}/contexts?old={served_graph['old']}&new={served_graph['new']}")
    diff = page.locator("#diff tr", has_text="flat")
    assert diff.count() == 1 and diff.locator("td").nth(3).inner_text() == "1"
    assert "nircam: flat" in page.locator("#switch").inner_text()  # the rmap the switch found changed
    _shot(page, "graph-contexts-diff")
    assert not errors, errors
    page.close()
