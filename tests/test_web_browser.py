"""The web view in a real headless browser: Debian's chromium driven by Playwright.

``archive serve`` runs as its own process on a PostgreSQL catalog; the browser opens every
page, follows exposure -> product -> reference -> the products of that reference, checks
that the preview image has loaded, and watches a campaign page update itself while a real
Celery worker (through the real Redis) runs the campaign's job. A screenshot of each page
goes to the test output (``ARCHIVE_TEST_OUTPUT``, default ``test-output/web``).
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
from archive.catalog.models import Exposure, Product
from archive.reprocessing.planner import plan_and_send

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
        port = _free_port()
        env = {**os.environ, "ARCHIVE_DATA_DIR": str(s.data_dir), "ARCHIVE_DB_URL": s.db_url,
               "ARCHIVE_READONLY_DB_URL": s.readonly_db_url, "CRDS_PATH": str(s.crds_path)}
        for k in ("ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
            env.pop(k, None)
        log = open(root / "serve.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "archive.cli", "serve", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/api/summary", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, (root / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "archive serve did not start"
                time.sleep(0.3)
        try:
            yield {"settings": s, "result": result, "base": base, "campaign": cid, "old": old_ctx, "new": new_ctx,
                   "env": env, "root": root}
        finally:
            _stop(proc)
    finally:
        drop()


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
