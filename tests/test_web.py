"""The web view and the previews: pages and JSON through FastAPI's test client, on SQLite and
on the real PostgreSQL, over an archive whose products were made by calwebb_detector1 and
calwebb_guider, then partly remade under a new context (superseded products, comparisons,
a campaign)."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from archive.catalog.db import session_scope
from archive.catalog.paths import from_stored
from archive.catalog.models import (
    Association,
    Campaign,
    CrdsContext,
    Exposure,
    Product,
    ProductComparison,
    ProductPreview,
    ProductReference,
    ReferenceFile,
)
from archive.cli import app as cli_app
from archive.crds import cache as crdscache
from archive.crds.references import use_context
from archive.ingest.batch import ingest
from archive.reprocessing.planner import plan_and_send
from calib.previews import MASK_RGBA, normalise, preview_kind, write_previews

from .conftest import PG_ADMIN, need_server, readonly_role, shared, with_readonly
from .test_end_to_end import FGS, simulated  # noqa: F401 - the module-scoped simulation fixture


def new_pg_database() -> tuple[str, callable]:
    """A fresh PostgreSQL database (URL, drop function) for a module-scoped archive."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN)
    name = f"archive_web_{uuid.uuid4().hex[:10]}"
    conninfo = f"host={admin.host} port={admin.port or 5432} user={admin.username} dbname={admin.database}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        need_server("PostgreSQL at 127.0.0.1:5432", exc)

    def drop():
        from archive.catalog.db import dispose_engines
        from archive.web.db import dispose

        dispose()
        dispose_engines()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{readonly_role(url)}"')

    url = str(admin.set(database=name).render_as_string(hide_password=False))
    return url, drop


def build_archive(root: Path, db_url: str, simulated, remake: bool = True):  # noqa: F811
    """Ingest, associate, calibrate; then (``remake``) a new dark for NRCA1 and its campaign run.

    Returns the settings, the simulation result, the old and new context names and the
    campaign id (None without ``remake``).
    """
    from archive.associations.associate import associate
    from archive.catalog.db import upgrade
    from archive.config import load_settings

    pool, result, crds_src = simulated
    crds_path = root / "crds"
    shutil.copytree(crds_src, crds_path)
    s = load_settings(root / "data").with_(db_url=db_url, crds_path=crds_path, broker_url=None)
    for d in (s.raw_dir, s.products_dir, s.associations_dir):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)
    s = with_readonly(s)  # PostgreSQL: the read-only role `archive db grant` makes
    report = ingest(s, [*result.files, shared("raw", FGS)], pool_path=pool)
    assert report.ok, [o.reason for o in report.outcomes]
    with session_scope(s.db_url) as db:
        use_context(db, result.context)
    associate(s)
    _, out = plan_and_send(s, graph=False)       # stage 1 (no stage-2 references here)
    assert sorted(out.values()) == ["succeeded"] * 4, out
    if not remake:
        return s, result, result.context, None, None
    new_ctx, cid = redeliver_dark(s, result, root)
    _, out = plan_and_send(s, stale_only=True, graph=False)
    assert list(out.values()) == ["succeeded"], out
    return s, result, result.context, new_ctx, cid


def redeliver_dark(s, result, root: Path) -> tuple[str, int]:
    """A new context whose NRCA1 dark differs; ``archive crds use`` opens its campaign."""
    crdscache.configure(s.crds_path)
    old_dark = result.references[result.files[0].name]["dark"]
    new_dark = root / f"jwst_sim_nircam_dark_nrca1_web{uuid.uuid4().hex[:4]}.fits"
    with fits.open(crdscache.locate(old_dark)) as hdul:
        hdul["SCI"].data = hdul["SCI"].data + 0.5 * np.arange(hdul["SCI"].data.shape[0],
                                                              dtype=np.float32)[:, None, None]
        hdul.writeto(new_dark)
    new_ctx = crdscache.derive_context(s.crds_path, result.context, {("nircam", "dark", "NRCA1"): new_dark})
    env = {"ARCHIVE_DB_URL": s.db_url, "CRDS_PATH": str(s.crds_path), "ARCHIVE_BROKER_URL": "",
           "CRDS_CONTEXT": ""}
    for args in (["crds", "add", new_ctx], ["crds", "use", new_ctx]):
        r = CliRunner().invoke(cli_app, ["--data-dir", str(s.data_dir), *args], env=env, catch_exceptions=False)
        assert r.exit_code == 0, r.output
    with session_scope(s.db_url) as db:
        cid = db.execute(select(Campaign.id).order_by(Campaign.id.desc())).scalars().first()
    return new_ctx, cid


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def web_archive(request, tmp_path_factory, simulated):  # noqa: F811
    root = tmp_path_factory.mktemp(f"web-{request.param}")
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'catalog.sqlite'}"
    else:
        url, drop = new_pg_database()
    try:
        yield build_archive(root, url, simulated)
    finally:
        from archive.catalog.db import dispose_engines
        from archive.web.db import dispose

        dispose()
        dispose_engines()
        if drop:
            drop()


@pytest.fixture(scope="module")
def client(web_archive):
    from fastapi.testclient import TestClient

    from archive.web.app import create_app

    with TestClient(create_app(web_archive[0])) as c:
        yield c


def _snapshot(s) -> dict:
    """Row counts of every catalog table (to show a request changed nothing)."""
    from archive.catalog.models import Base

    with session_scope(s.db_url) as db:
        return {t.name: db.execute(select(func.count()).select_from(t)).scalar_one()
                for t in Base.metadata.sorted_tables}


# ----------------------------------------------------------------------------- previews


def test_preview_kinds_cover_stage_2_and_3_suffixes():
    assert {preview_kind(x) for x in ("rate", "rateints", "cal", "calints", "i2d", "s2d")} == {"image"}
    assert preview_kind("x1d") == "spectrum"
    assert preview_kind("uncal") is None and preview_kind("dark") is None and preview_kind("cat") is None


def test_normalise_masks_do_not_use_and_takes_the_median_of_a_cube():
    rng = np.random.default_rng(4)
    sci = rng.normal(10.0, 1.0, (3, 40, 50)).astype(np.float32)
    sci[:, 5, 7] = 1e6            # a hot pixel flagged DO_NOT_USE: masked, not stretching the interval
    dq = np.zeros(sci.shape, np.uint32)
    dq[:, 5, 7] = 1 | 512
    dq[:, 9, 9] = 4               # JUMP_DET only: drawn
    img = normalise(sci, dq)
    assert img.shape == (40, 50)
    assert np.isnan(img[5, 7]) and np.isfinite(img[9, 9])
    assert np.nanmin(img) >= 0.0 and np.nanmax(img) <= 1.0
    # a cube is drawn as the median of its integrations: a cosmic ray in one leaves no trace
    sci[0, 20, 20] = 1e4
    flat = np.median(sci, axis=0)
    np.testing.assert_allclose(normalise(sci, dq), normalise(flat, dq[0]), equal_nan=True)
    assert normalise(sci, dq)[20, 20] < 1.0
    with pytest.raises(ValueError, match="shape"):
        normalise(sci, dq[0])


def test_spectrum_preview_of_an_x1d(tmp_path):
    from stdatamodels.jwst import datamodels

    wl = np.linspace(1.0, 5.0, 200)
    sm = datamodels.SpecModel()
    dtype = [(c["name"], c["datatype"] if isinstance(c["datatype"], str) else f"S{c['datatype'][1]}")
             for c in sm.schema["properties"]["spec_table"]["datatype"]]  # the x1d table as jwst's schema has it
    table = np.zeros(200, dtype=dtype)
    table["WAVELENGTH"] = wl
    table["FLUX"] = np.exp(-0.5 * ((wl - 3.0) / 0.2) ** 2)
    table["DQ"][:10] = 1  # DO_NOT_USE: left out of the plot
    path = tmp_path / "jw01_nrs1_x1d.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(table, name="EXTRACT1D")]).writeto(path)
    out = write_previews(path, "x1d")
    assert [p.kind for p in out] == ["preview", "thumbnail"]
    import matplotlib.image as mpimg

    img = mpimg.imread(out[0].path)
    assert img.shape[:2] == (out[0].height, out[0].width)
    assert img[..., :3].std() > 0.05  # something was drawn


def test_worker_writes_and_catalogues_previews(web_archive):
    import matplotlib.image as mpimg

    s = web_archive[0]
    with session_scope(s.db_url) as db:
        prods = db.execute(select(Product)).scalars().all()
        rows = db.execute(select(ProductPreview)).scalars().all()
    by_product = {}
    for r in rows:
        by_product.setdefault(r.product_id, {})[r.kind] = r
    assert {p.suffix for p in prods} == {"rate", "rateints", "cal"}
    for p in prods:  # every image product, superseded ones too, has its two PNGs
        kinds = by_product.get(p.id, {})
        assert set(kinds) == {"preview", "thumbnail"}, p.filename
        for r in kinds.values():
            assert not Path(r.path).is_absolute()  # stored relative to the data root, as products are
            png, fits_path = from_stored(r.path, s.data_dir), from_stored(p.path, s.data_dir)
            assert png.is_file() and png.parent == fits_path.parent
            img = mpimg.imread(png)
            assert img.shape[:2] == (r.height, r.width)
        with fits.open(from_stored(p.path, s.data_dir)) as hdul:
            sci, dq = hdul["SCI"].data, hdul["DQ"].data
        if sci.ndim == 2:  # a rate: full size, DO_NOT_USE pixels drawn in the mask colour, y up
            img = mpimg.imread(from_stored(kinds["preview"].path, s.data_dir))
            assert img.shape[:2] == sci.shape
            bad = np.argwhere((dq & 1) != 0)
            assert len(bad), "the simulated rate has DO_NOT_USE pixels"
            y, x = bad[0]
            assert np.allclose(img[sci.shape[0] - 1 - y, x], MASK_RGBA, atol=1 / 255)
            good = np.argwhere(((dq & 1) == 0) & np.isfinite(sci))[0]
            px = img[sci.shape[0] - 1 - good[0], good[1]]
            assert px[0] == px[1] == px[2]  # grey
    # a remade product got its own previews, not its predecessor's
    with session_scope(s.db_url) as db:
        remade = db.execute(select(Product).where(Product.supersedes_id.is_not(None))).scalars().all()
    assert remade
    for p in remade:
        assert by_product[p.id]["preview"].path != by_product[p.supersedes_id]["preview"].path


def test_archive_previews_draws_what_is_missing(web_archive):
    s = web_archive[0]
    with session_scope(s.db_url) as db:
        p = db.execute(select(Product).where(Product.suffix == "rate", Product.is_current.is_(True))
                       .order_by(Product.id)).scalars().first()
        old = {r.kind: r.sha256 for r in db.execute(select(ProductPreview).where(ProductPreview.product_id == p.id))
               .scalars()}
        db.execute(delete(ProductPreview).where(ProductPreview.product_id == p.id))
    fits_path = from_stored(p.path, s.data_dir)
    for f in fits_path.parent.glob("*.png"):
        if f.name.startswith(fits_path.stem):
            f.unlink()
    env = {"ARCHIVE_DB_URL": s.db_url, "CRDS_PATH": str(s.crds_path)}
    r = CliRunner().invoke(cli_app, ["--data-dir", str(s.data_dir), "previews", "--json"], env=env,
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert p.filename in r.output
    with session_scope(s.db_url) as db:
        new = {r.kind: r.sha256 for r in db.execute(select(ProductPreview).where(ProductPreview.product_id == p.id))
               .scalars()}
    assert new == old  # the same product draws the same PNGs
    r = CliRunner().invoke(cli_app, ["--data-dir", str(s.data_dir), "previews", "--json"], env=env)
    assert r.exit_code == 0 and '"drawn"' not in r.output  # nothing left to draw


# ----------------------------------------------------------------------------- pages and API


def test_pages_follow_exposure_product_reference(web_archive, client):
    s, result, old_ctx, new_ctx, cid = web_archive
    before = _snapshot(s)
    r = client.get("/")
    assert r.status_code == 200 and "jwst-archive" in r.text
    target = result.files[0].name
    r = client.get("/exposures")
    assert r.status_code == 200
    for f in [*result.files, Path(FGS)]:
        assert f"/exposures/{f.name}" in r.text
    r = client.get(f"/exposures/{target}")
    assert r.status_code == 200 and "Stage 1 products" in r.text and "calwebb_detector1" in r.text
    with session_scope(s.db_url) as db:
        current = db.execute(select(Product).join(Exposure, Exposure.id == Product.exposure_id).where(
            Exposure.filename == target, Product.suffix == "rate", Product.is_current.is_(True))).scalar_one()
        refs = {rt: name for rt, name in db.execute(
            select(ProductReference.reftype, ReferenceFile.name).join(ReferenceFile)
            .where(ProductReference.product_id == current.id))}
        previous = db.get(Product, current.supersedes_id)
    assert f"/products/{current.id}" in r.text and f"/products/{previous.id}" in r.text
    r = client.get(f"/products/{current.id}")
    assert r.status_code == 200
    for name in refs.values():  # each R_* keyword links to its reference page
        assert f'href="/references/{name}"' in r.text
    assert "S_RAMP" in r.text and "COMPLETE" in r.text
    assert f"/products/{previous.id}" in r.text and "SCI" in r.text  # the comparison with the superseded one
    assert 'id="preview"' in r.text
    r = client.get(f"/references/{refs['dark']}")
    assert r.status_code == 200 and f"/products/{current.id}" in r.text
    assert f"/products/{previous.id}" not in r.text  # the old product used the old dark
    assert _snapshot(s) == before


def test_every_page_and_endpoint_answers(web_archive, client):
    s, result, old_ctx, new_ctx, cid = web_archive
    with session_scope(s.db_url) as db:
        pid = db.execute(select(Product.id).where(Product.suffix == "cal")).scalar_one()
        asn_id = db.execute(select(func.min(Association.id))).scalar_one()
        ref = db.execute(select(ReferenceFile.name).order_by(ReferenceFile.name)).scalars().first()
        pv = db.execute(select(ProductPreview.id).where(ProductPreview.product_id == pid,
                                                        ProductPreview.kind == "thumbnail")).scalar_one()
    pages = ["/", "/exposures", f"/exposures/{FGS}", f"/products/{pid}", "/associations",
             f"/associations/{asn_id}", "/contexts", f"/contexts/{old_ctx}", f"/contexts?old={old_ctx}&new={new_ctx}",
             "/references", f"/references/{ref}", "/campaigns", f"/campaigns/{cid}", "/sql",
             "/sql?q=SELECT+count(*)+FROM+exposures", "/api/docs"]
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:500])
        assert "text/html" in r.headers["content-type"], url
    r = client.get(f"/contexts?old={old_ctx}&new={new_ctx}")
    assert "dark" in r.text and result.references[result.files[0].name]["dark"] in r.text
    r = client.get(f"/api/previews/{pv}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/products/{pid}/preview.png", follow_redirects=True).content[:4] == b"\x89PNG"
    assert client.get("/exposures/nothing_uncal.fits").status_code == 404
    assert client.get("/api/products/999999").status_code == 404
    assert client.get("/exposures?date_from=yesterday").status_code == 400

    api = client.get("/api/openapi.json").json()
    for path in ("/api/exposures", "/api/exposures/{filename}", "/api/products/{product_id}", "/api/associations",
                 "/api/contexts", "/api/contexts/diff", "/api/references/{name}", "/api/campaigns/{campaign_id}",
                 "/api/sql"):
        assert path in api["paths"], path
    d = client.get(f"/api/contexts/diff?old={old_ctx}&new={new_ctx}").json()
    assert list(d["reftypes"]) == ["dark"] and d["reftypes"]["dark"][0]["n_exposures"] == 1
    # what `archive crds use` recorded when it switched: the changed rmap's reftype, its campaign
    assert d["switch"]["campaign_id"] == cid and d["switch"]["changed_reftypes"] == {"nircam": ["dark"]}
    assert list(d["switch"]["by_change"].values()) == [1]
    assert client.get(f"/api/contexts/diff?old={new_ctx}&new={old_ctx}").json()["switch"] is None
    c = client.get(f"/api/campaigns/{cid}").json()
    assert c["counts"]["succeeded"] == 1 and c["done"] == c["total"] == 1 and c["percent"] == 100.0
    e = client.get(f"/api/exposures/{FGS}").json()
    assert e["products_by_stage"]["1"][0]["suffix"] == "cal" and e["jobs"][0]["pipeline"] == "calwebb_guider"
    assert e["jobs"][0]["step_timings"]
    ctxs = {c["name"]: c for c in client.get("/api/contexts").json()}
    assert ctxs[new_ctx]["in_use"] and not ctxs[old_ctx]["in_use"]
    assert ctxs[old_ctx]["n_jobs"] == 4 and ctxs[new_ctx]["n_jobs"] == 1
    assert len(client.get(f"/api/contexts/{old_ctx}").json()["products"]) == 7
    assert len(client.get(f"/api/contexts/{new_ctx}").json()["products"]) == 2


def test_exposures_filters_and_keyset_pages(web_archive, client):
    s, result = web_archive[:2]
    with session_scope(s.db_url) as db:
        all_ids = sorted(db.execute(select(Exposure.id)).scalars(), reverse=True)
        nircam = db.execute(select(Exposure).where(Exposure.instrume == "NIRCAM").order_by(Exposure.id)).scalars().all()
    seen, before = [], None
    while True:
        q = "/api/exposures?limit=2" + (f"&before={before}" if before else "")
        page = client.get(q).json()
        seen += [r["id"] for r in page["rows"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == all_ids
    got = client.get("/api/exposures?instrument=nircam").json()["rows"]
    assert sorted(r["id"] for r in got) == [e.id for e in nircam]
    assert client.get("/api/exposures?instrument=FGS").json()["rows"][0]["filename"] == FGS
    det = nircam[0].detector
    assert {r["detector"] for r in client.get(f"/api/exposures?detector={det}").json()["rows"]} == {det}
    prog = nircam[0].program
    assert len(client.get(f"/api/exposures?program={int(prog)}").json()["rows"]) == len(nircam)
    # a date range by EXPSTART: the day of the first exposure holds it, the day before does not
    from astropy.time import Time

    day = Time(nircam[0].expstart, format="mjd").to_datetime().date()
    inside = client.get(f"/api/exposures?date_from={day}&date_to={day}").json()["rows"]
    assert nircam[0].id in [r["id"] for r in inside]
    before_day = (Time(nircam[0].expstart - 1, format="mjd").to_datetime().date())
    assert nircam[0].id not in [r["id"] for r in client.get(f"/api/exposures?date_to={before_day}").json()["rows"]]
    r = client.get("/exposures?instrument=NIRCAM")
    assert r.status_code == 200 and FGS not in r.text


def test_nothing_can_change_the_catalog(web_archive, client):
    s = web_archive[0]
    before = _snapshot(s)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for url in ("/", "/exposures", "/api/exposures", "/sql", "/api/sql?q=SELECT+1"):
            r = client.request(method, url)
            assert r.status_code == 405, (method, url)
            assert r.headers["allow"] == "GET, HEAD"
    for sql in ("DELETE FROM products", "UPDATE jobs SET status = 'queued'", "DROP TABLE exposures",
                "INSERT INTO crds_contexts (name, first_seen, in_use) VALUES ('x.pmap', '2026-01-01', false)"):
        r = client.get("/sql", params={"q": sql})
        assert r.status_code == 200 and 'id="sql-error"' in r.text and "refused" in r.text, sql
        assert client.get("/api/sql", params={"q": sql}).status_code == 400
    rows = client.get("/api/sql", params={"q": "SELECT id FROM exposures ORDER BY id", "limit": 2, "offset": 1}).json()
    assert rows["n_rows"] == 4 and len(rows["rows"]) == 2
    assert _snapshot(s) == before
    with session_scope(s.db_url) as db:  # the data page made nothing stale or current
        assert db.execute(select(func.count()).select_from(ProductComparison)).scalar_one() >= 1
        assert db.execute(select(CrdsContext.name).where(CrdsContext.in_use.is_(True))).scalar_one() == web_archive[3]


def test_web_engine_is_read_only(web_archive):
    from sqlalchemy import text

    from archive.web.db import catalog_engine

    s = web_archive[0]
    with catalog_engine(s).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM exposures")).scalar_one() == 4
        with pytest.raises(Exception, match="(?i)read.?only|not authorized"):
            conn.execute(text("DELETE FROM product_previews"))


def test_archive_serve_refuses_what_it_cannot_read_safely(tmp_path, pg_url):
    r = CliRunner().invoke(cli_app, ["--data-dir", str(tmp_path), "serve", "--port", "1"],
                           env={"ARCHIVE_DB_URL": "sqlite://", "ARCHIVE_READONLY_DB_URL": ""})
    assert r.exit_code == 2 and "file catalog" in r.output
    # PostgreSQL as the catalog's own (writing) role: refused before the server listens
    r = CliRunner().invoke(cli_app, ["--data-dir", str(tmp_path), "serve", "--port", "1"],
                           env={"ARCHIVE_DB_URL": pg_url, "ARCHIVE_READONLY_DB_URL": pg_url})
    assert r.exit_code == 2 and "refused" in r.output


def test_home_counts_exactly_up_to_the_bound_then_estimates(web_archive, client):
    from sqlalchemy.orm import Session

    from archive.catalog.models import Job
    from archive.web import queries
    from archive.web.db import catalog_engine

    s = web_archive[0]
    with session_scope(s.db_url) as db:
        n_exp = db.execute(select(func.count()).select_from(Exposure)).scalar_one()
        n_ok = db.execute(select(func.count()).select_from(Job).where(Job.status == "succeeded")).scalar_one()
    assert n_exp == 4 and n_ok == 5
    summary = client.get("/api/summary").json()
    assert summary["exposures"] == n_exp and summary["estimated"] == {}  # small tables: exact
    with Session(bind=catalog_engine(s)) as ro:  # through the read-only path, as the page reads
        assert queries.count_rows(ro, Exposure) == (n_exp, None)
        assert queries.count_rows(ro, Exposure, bound=n_exp) == (n_exp, None)
        n, how = queries.count_rows(ro, Exposure, bound=2)   # beyond the bound: an estimate
        assert how == "about" and n >= 3
        if s.db_url.startswith("sqlite"):
            assert n == n_exp  # the largest id: no exposure was deleted
        n, how = queries.count_rows(ro, Job, Job.status == "succeeded", bound=2)
        if s.db_url.startswith("sqlite"):
            assert (n, how) == (2, "more than")
        else:
            assert how == "about" and n >= 3  # the planner's estimate, never below what was counted
