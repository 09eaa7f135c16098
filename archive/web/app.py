"""The web application: HTML pages (Jinja2) and the same data as JSON under ``/api/``.

:func:`create_app` builds a FastAPI application for one archive's settings. Every request
reads the catalog in a short session on the read-only engine (:mod:`archive.web.db`);
nothing here can write it, and any method other than GET or HEAD is refused (405) before
it reaches a route. The OpenAPI description is at ``/api/openapi.json`` and its page at
``/api/docs`` (Swagger UI from the ``swagger-ui-bundle-v2`` package, served locally).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.middleware.base import BaseHTTPMiddleware
from swagger_ui_bundle import swagger_ui_path

from ..catalog.readonly import ReadonlyError
from ..config import Settings
from . import queries
from .db import catalog_engine, run_sql

TEMPLATES = Path(__file__).parent / "templates"
SAFE_METHODS = ("GET", "HEAD")
SQL_PAGE = 100


class ReadOnlyMethods(BaseHTTPMiddleware):
    """Refuse every HTTP method but GET and HEAD with 405 (the view never changes anything)."""

    async def dispatch(self, request, call_next):
        """Answer 405 with ``Allow: GET, HEAD`` to any other method; pass the rest on."""
        if request.method not in SAFE_METHODS:
            return JSONResponse({"detail": f"{request.method} refused: this view is read-only"}, status_code=405,
                                headers={"Allow": ", ".join(SAFE_METHODS)})
        return await call_next(request)


def create_app(settings: Settings) -> FastAPI:
    """Build the web view of one archive.

    Parameters
    ----------
    settings : Settings
        The archive's settings (catalog URL, data directory).

    Returns
    -------
    fastapi.FastAPI
        The application; serve it with uvicorn (``archive serve``).
    """
    app = FastAPI(title="jwst-archive", summary="A read-only view of the JWST archive's catalog",
                  openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.add_middleware(ReadOnlyMethods)
    # the OpenAPI page with Swagger UI from an installed package: no CDN, works offline
    app.mount("/api/static", StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs():
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="jwst-archive API",
                                   swagger_js_url="/api/static/swagger-ui-bundle.js",
                                   swagger_css_url="/api/static/swagger-ui.css",
                                   swagger_favicon_url="/api/static/favicon-32x32.png")

    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, default=str)

    @contextlib.contextmanager
    def session() -> Iterator[Session]:
        s = Session(bind=catalog_engine(settings))
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    def read(fn, *args, **kwargs):
        with session() as s:
            try:
                return fn(s, *args, **kwargs)
            except queries.NotFound as exc:
                raise HTTPException(404, str(exc)) from None
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None

    def page(request: Request, name: str, **ctx) -> HTMLResponse:
        return templates.TemplateResponse(request, name, ctx)

    # ---------------------------------------------------------------- JSON API
    @app.get("/api/summary", tags=["catalog"])
    def api_summary() -> dict:
        """Return counts (``estimated`` names those beyond 10,000 rows), the context in use, open campaigns."""
        return read(queries.home)

    @app.get("/api/exposures", tags=["exposures"])
    def api_exposures(program: str | None = None, instrument: str | None = None, exp_type: str | None = None,
                      detector: str | None = None, date_from: str | None = Query(None, description="YYYY-MM-DD"),
                      date_to: str | None = Query(None, description="YYYY-MM-DD"), before: int | None = None,
                      limit: int = Query(queries.PAGE, ge=1, le=500)) -> dict:
        """One page of exposures (newest first); pass ``next_before`` back as ``before`` for the next."""
        return read(queries.exposures, program, instrument, exp_type, detector, date_from, date_to, before, limit)

    @app.get("/api/exposures/{filename}", tags=["exposures"])
    def api_exposure(filename: str) -> dict:
        """One exposure: header values, products by stage, jobs with step timings, associations."""
        return read(queries.exposure, filename)

    @app.get("/api/products/{product_id}", tags=["products"])
    def api_product(product_id: int) -> dict:
        """One product: previews, header, references, statuses, lineage, comparison."""
        return read(queries.product, settings, product_id)

    @app.get("/api/previews/{preview_id}.png", tags=["products"], response_class=FileResponse)
    def api_preview(preview_id: int):
        """Return a preview or thumbnail PNG."""
        return FileResponse(read(queries.preview_file, settings, preview_id), media_type="image/png")

    @app.get("/api/associations", tags=["associations"])
    def api_associations(program: str | None = None, before: int | None = None,
                         limit: int = Query(queries.PAGE, ge=1, le=500)) -> dict:
        """One page of associations (newest first)."""
        return read(queries.associations, program, before, limit)

    @app.get("/api/associations/{asn_id}", tags=["associations"])
    def api_association(asn_id: int) -> dict:
        """One association: members, jobs, products, its JSON."""
        return read(queries.association, asn_id)

    @app.get("/api/contexts", tags=["crds"])
    def api_contexts() -> list:
        """Every CRDS context: when seen, in use, jobs and products made under it."""
        return read(queries.contexts)

    @app.get("/api/contexts/diff", tags=["crds"])
    def api_context_diff(old: str, new: str) -> dict:
        """Best references that differ between two contexts, by reftype."""
        return read(queries.context_diff, old, new)

    @app.get("/api/contexts/{name}", tags=["crds"])
    def api_context(name: str) -> dict:
        """One context and the products made under it."""
        return read(queries.context, name)

    @app.get("/api/references", tags=["crds"])
    def api_references(reftype: str | None = None, after: str | None = None) -> dict:
        """Return reference files by name, with the number of products made with each."""
        return read(queries.references, reftype, after)

    @app.get("/api/references/{name}", tags=["crds"])
    def api_reference(name: str, before: int | None = None) -> dict:
        """One reference file and the products made with it."""
        return read(queries.reference, name, before)

    @app.get("/api/campaigns", tags=["campaigns"])
    def api_campaigns() -> list:
        """Every campaign with its job counts."""
        return read(queries.campaigns)

    @app.get("/api/campaigns/{campaign_id}", tags=["campaigns"])
    def api_campaign(campaign_id: int) -> dict:
        """Return a campaign's progress per stage, throughput, ETA and failures."""
        return read(queries.campaign, campaign_id)

    @app.get("/api/sql", tags=["catalog"])
    def api_sql(q: str, offset: int = Query(0, ge=0), limit: int = Query(SQL_PAGE, ge=1, le=1000)) -> dict:
        """Read-only SQL, as ``archive sql``: the database refuses any write (400 with its message)."""
        try:
            res = run_sql(settings, q)
        except ReadonlyError as exc:
            raise HTTPException(400, f"refused or failed: {str(exc).splitlines()[0]}") from None
        return {"columns": res.columns, "rows": [list(r) for r in res.rows[offset:offset + limit]],
                "n_rows": len(res.rows), "truncated": res.truncated, "offset": offset}

    # ---------------------------------------------------------------- pages
    @app.get("/", include_in_schema=False)
    def home(request: Request):
        return page(request, "home.html", title="Archive", data=read(queries.home), bound=queries.COUNT_BOUND)

    @app.get("/exposures", include_in_schema=False)
    def exposures_page(request: Request, program: str = "", instrument: str = "", exp_type: str = "",
                       detector: str = "", date_from: str = "", date_to: str = "", before: int | None = None):
        filters = {"program": program, "instrument": instrument, "exp_type": exp_type, "detector": detector,
                   "date_from": date_from, "date_to": date_to}
        data = read(queries.exposures, *(v or None for v in filters.values()), before)
        return page(request, "exposures.html", title="Exposures", data=data, filters=filters,
                    facets=read(queries.exposure_facets))

    @app.get("/exposures/{filename}", include_in_schema=False)
    def exposure_page(request: Request, filename: str):
        data = read(queries.exposure, filename)
        return page(request, "exposure.html", title=filename, data=data)

    @app.get("/products/{product_id}", include_in_schema=False)
    def product_page(request: Request, product_id: int):
        data = read(queries.product, settings, product_id)
        return page(request, "product.html", title=data["product"]["filename"], data=data)

    @app.get("/associations", include_in_schema=False)
    def associations_page(request: Request, program: str = "", before: int | None = None):
        data = read(queries.associations, program or None, before)
        return page(request, "associations.html", title="Associations", data=data, program=program)

    @app.get("/associations/{asn_id}", include_in_schema=False)
    def association_page(request: Request, asn_id: int):
        data = read(queries.association, asn_id)
        return page(request, "association.html", title=data["association"]["asn_name"], data=data)

    @app.get("/contexts", include_in_schema=False)
    def contexts_page(request: Request, old: str = "", new: str = ""):
        rows = read(queries.contexts)
        diff = read(queries.context_diff, old, new) if old and new else None
        return page(request, "contexts.html", title="CRDS contexts", rows=rows, diff=diff, old=old, new=new)

    @app.get("/contexts/{name}", include_in_schema=False)
    def context_page(request: Request, name: str):
        return page(request, "context.html", title=name, data=read(queries.context, name))

    @app.get("/references", include_in_schema=False)
    def references_page(request: Request, reftype: str = "", after: str | None = None):
        data = read(queries.references, reftype or None, after)
        return page(request, "references.html", title="Reference files", data=data, reftype=reftype)

    @app.get("/references/{name}", include_in_schema=False)
    def reference_page(request: Request, name: str, before: int | None = None):
        return page(request, "reference.html", title=name, data=read(queries.reference, name, before))

    @app.get("/campaigns", include_in_schema=False)
    def campaigns_page(request: Request):
        return page(request, "campaigns.html", title="Campaigns", rows=read(queries.campaigns))

    @app.get("/campaigns/{campaign_id}", include_in_schema=False)
    def campaign_page(request: Request, campaign_id: int):
        return page(request, "campaign.html", title=f"Campaign {campaign_id}", data=read(queries.campaign, campaign_id))

    @app.get("/sql", include_in_schema=False)
    def sql_page(request: Request, q: str = "", offset: int = 0):
        result, error = None, None
        if q.strip():
            try:
                res = run_sql(settings, q)
                result = {"columns": res.columns, "rows": res.rows[offset:offset + SQL_PAGE], "n_rows": len(res.rows),
                          "truncated": res.truncated}
            except ReadonlyError as exc:
                error = f"refused or failed: {str(exc).splitlines()[0]}"
        return page(request, "sql.html", title="SQL", q=q, result=result, error=error, offset=offset,
                    page_size=SQL_PAGE)

    @app.get("/products/{product_id}/preview.png", include_in_schema=False)
    def product_preview(product_id: int, kind: str = "preview"):
        with session() as s:
            try:
                data = queries.product(s, settings, product_id, read_header=False)
            except queries.NotFound as exc:
                raise HTTPException(404, str(exc)) from None
        if kind not in data["previews"]:
            raise HTTPException(404, f"product {product_id} has no {kind}")
        return RedirectResponse(f"/api/previews/{data['previews'][kind]}.png")

    return app
