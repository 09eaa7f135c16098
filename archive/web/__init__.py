"""``archive serve``: a read-only web view of the catalog, with product previews.

Pages for people (Jinja2 templates) and the same data as JSON under ``/api/`` (FastAPI,
with its OpenAPI page at ``/api/docs``). Every read goes through one read-only engine
(:func:`archive.web.db.catalog_engine`); the application answers GET and HEAD only.
"""
