"""``archive crds status|add|use``: CRDS contexts in the cache and the catalog."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import console, ensure_catalog, err, print_table, settings

app = typer.Typer(help="CRDS contexts and best references.", no_args_is_help=True)


@app.command("status")
def crds_status(as_json: bool = typer.Option(False, "--json")):
    """List the known contexts and the one in use (only a context the cache holds is called in use)."""
    from sqlalchemy import select

    from ..catalog.db import session_scope
    from ..catalog.models import CrdsContext
    from ..crds import cache as crdscache
    from ..crds.references import context_in_use

    s = settings()
    ensure_catalog(s)
    with session_scope(s.db_url) as db:
        try:
            using = context_in_use(s, db).name
        except Exception as exc:  # no context anywhere yet
            using = None
            err.print(f"[yellow]{exc}")
        known = {c.name: c for c in db.execute(select(CrdsContext).order_by(CrdsContext.name)).scalars()}
        cached = set(crdscache.list_contexts(s.crds_path)) if s.crds_path.exists() else set()
        rows = []
        for name in sorted(set(known) | cached):
            c = known.get(name)
            in_use = "" if name != using else "yes" if name in cached else "NO: marked in use, not in the cache"
            rows.append([name, in_use, "yes" if name in cached else "no",
                         c.first_seen.isoformat(timespec="seconds") if c else "", c.crds_version if c else ""])
    print_table(f"CRDS contexts (cache {s.crds_path})", ["context", "in use", "in cache", "first seen", "crds"],
                rows, as_json)


@app.command("add")
def crds_add(context: str = typer.Argument(..., help="A .pmap name, e.g. jwst_1322.pmap."),
             source: Optional[Path] = typer.Option(None, "--from",
                                                   help="A CRDS cache (or a directory of mappings and reference "
                                                        "files) holding the context; default: already synced "
                                                        "into CRDS_PATH (e.g. by 'crds sync --contexts C')."),
             as_json: bool = typer.Option(False, "--json")):
    """Add a CRDS context to the local cache and the catalog; show what it would change.

    The name and the whole closure are checked before any file is copied; a failed add
    leaves neither files nor a catalog row. Nothing becomes stale until 'archive crds use
    CONTEXT'.
    """
    from ..catalog.db import session_scope
    from ..crds.cache import add_context
    from ..crds.references import ContextError, ensure_context
    from ..reprocessing.campaigns import switch_context

    s = settings()
    ensure_catalog(s)
    try:
        copied = add_context(s.crds_path, context, source)
        with session_scope(s.db_url) as db:
            ensure_context(db, context)
        report = switch_context(s, context, dry_run=True)
    except (ContextError, FileNotFoundError, ValueError) as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    (err if as_json else console).print(f"{context}: in the cache {s.crds_path} ({copied} files copied) "
                                        f"and in the catalog")
    _print_campaign_report(report, as_json, preview=True)


def _print_campaign_report(report, as_json: bool, preview: bool = False) -> None:
    if as_json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=1, default=str))
        return
    verb = "would make" if preview else "made"
    console.print(f"{report.from_context} -> {report.to_context}: reftypes that differ: "
                  + (", ".join(f"{i}: {' '.join(r)}" for i, r in report.changed_reftypes.items()) or "none"))
    console.print(f"{verb} {report.stale_products} products of {report.stale_exposures} exposures stale "
                  f"({report.candidates} candidates checked with crds, {report.seconds:.2f} s)"
                  + (f"; campaign {report.campaign_id} opened" if report.campaign_id else ""))
    if report.by_change:
        print_table("changes driving the remake", ["change", "exposures"],
                    [[k, v] for k, v in report.by_change.items()], False)


@app.command("use")
def crds_use(context: str = typer.Argument(..., help="A .pmap name in the local cache."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would become stale."),
             as_json: bool = typer.Option(False, "--json")):
    """Make CONTEXT the context in use, opening a campaign for what it makes stale.

    Products whose best references it changes become stale and a campaign is opened for
    them (only the reftypes that differ are examined).
    """
    from ..crds.references import ContextError
    from ..reprocessing.campaigns import switch_context

    s = settings()
    ensure_catalog(s)
    try:
        report = switch_context(s, context, dry_run=dry_run)
    except ContextError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    if not dry_run:
        console.print(f"context in use: {context}")
    _print_campaign_report(report, as_json, preview=dry_run)
