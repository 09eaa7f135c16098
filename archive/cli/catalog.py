"""``archive init``, ``status``, ``provenance`` and ``sql``: the catalog and what it says."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from .common import console, ensure_catalog, err, print_table, settings

app = typer.Typer()


@app.command()
def init(as_json: bool = typer.Option(False, "--json")):
    """Create the data directory, storage tree and catalog (alembic upgrade head)."""
    from ..catalog.db import current_revision

    s = settings()
    ensure_catalog(s)
    info = {"data_dir": str(s.data_dir), "catalog": s.db_url, "schema_revision": current_revision(s.db_url),
            "execution": "eager (in-process)" if s.eager else f"broker {s.broker_url}",
            "crds_path": str(s.crds_path)}
    print_table("archive initialised", ["setting", "value"], [[k, v] for k, v in info.items()], as_json)


def _status_tables(s, campaign: Optional[int]):
    from sqlalchemy import func, select

    from ..catalog.db import session_scope
    from ..catalog.models import Campaign, Exposure, IngestRejection, Product
    from ..reprocessing.status import campaign_status

    st = campaign_status(s, campaign)
    rows = []
    if campaign is None:
        with session_scope(s.db_url) as db:
            rows += [["exposures", db.scalar(select(func.count()).select_from(Exposure))],
                     ["rejected files", db.scalar(select(func.count()).select_from(IngestRejection))],
                     ["products current", db.scalar(select(func.count()).select_from(Product)
                                                    .where(Product.is_current.is_(True)))],
                     ["products current but stale", db.scalar(select(func.count()).select_from(Product).where(
                         Product.is_current.is_(True), Product.stale_campaign_id.is_not(None)))],
                     ["products superseded", db.scalar(select(func.count()).select_from(Product)
                                                       .where(Product.is_current.is_(False)))],
                     ["campaigns open", db.scalar(select(func.count()).select_from(Campaign)
                                                  .where(Campaign.status == "open"))]]
    else:
        rows.append(["campaign state", st.state])
    for k in ("queued", "running", "succeeded", "failed", "never_run"):
        rows.append([f"jobs {k.replace('_', ' ')}", st.counts.get(k, 0)])
    rows.append(["throughput (jobs/hour, last 10 min)",
                 f"{st.throughput_per_hour:.1f}" if st.throughput_per_hour else "-"])
    rows.append(["ETA", f"{st.eta_seconds:.0f} s" if st.eta_seconds is not None else "-"])
    return st, rows


@app.command()
def status(campaign: Optional[int] = typer.Option(None, "--campaign"),
           watch: bool = typer.Option(False, "--watch", help="Refresh every --interval seconds until the "
                                                              "campaign is done (Ctrl-C to stop)."),
           interval: float = typer.Option(2.0, "--interval"),
           as_json: bool = typer.Option(False, "--json")):
    """Show job counts (queued, running, succeeded, failed, never run), throughput, ETA, last errors.

    Of one campaign (--campaign), or of the whole archive.
    """
    import time

    from rich.console import Group
    from rich.live import Live

    s = settings()
    ensure_catalog(s)
    try:
        st, rows = _status_tables(s, campaign)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}")
        raise typer.Exit(2) from None
    if as_json:
        from dataclasses import asdict

        print(json.dumps({"status": asdict(st), "rows": rows}, indent=1, default=str))
        return

    def render(st, rows):
        t = Table(title=f"campaign {campaign}" if campaign else "archive status")
        t.add_column("what")
        t.add_column("count")
        for r in rows:
            t.add_row(str(r[0]), str(r[1]))
        e = Table(title="last errors")
        for c in ("job", "exposure", "error"):
            e.add_column(c)
        for j, f, m in st.last_errors:
            e.add_row(str(j), f, m)
        h = Table(title="held back: a member failed")
        for c in ("association", "which and why"):
            h.add_column(c)
        for a, why in st.held or []:
            h.add_row(a, why)
        parts = [t] + ([e] if st.last_errors else []) + ([h] if st.held else [])
        return Group(*parts) if len(parts) > 1 else t

    if not watch:
        console.print(render(st, rows))
        return
    with Live(render(st, rows), console=console, refresh_per_second=4) as live:
        try:
            while not (campaign and st.state == "done"):
                time.sleep(interval)
                st, rows = _status_tables(s, campaign)
                live.update(render(st, rows))
        except KeyboardInterrupt:
            pass


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@app.command()
def provenance(name: str = typer.Argument(..., help="A product (file name or path) or an exposure file name."),
               as_json: bool = typer.Option(False, "--json")):
    """Show the lineage of a product or exposure: inputs, job, versions, context, references."""
    from ..catalog.provenance import NotFound, lineage

    s = settings()
    try:
        info = lineage(s, name)
    except NotFound as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(info, indent=1, default=str))
        return
    products = info["products"]
    if info["kind"] == "exposure":
        e = info["exposure"]
        console.print(f"[bold]exposure[/] {e['filename']}  sha256 {e['sha256']}  {e['instrume']} {e['detector']} "
                      f"{e['exp_type']}  stage 1: {e['stage1_pipeline']}")
        for a in info["associations"]:
            console.print(f"  association {a['asn_id']} ({a['asn_rule']}) -> {a['product']}")
        for j in info["jobs"]:
            console.print(f"  job {j['id']} {j['pipeline']} {j['status']} attempts={j['attempts']} {j['error'] or ''}")
    for p in products:
        console.rule(f"{p['product']} ({'current' if p['is_current'] else 'superseded'})")
        console.print(f"path {p['path']}\nsha256 {p['sha256']}  created {p['created_at']}")
        for i in p["inputs"]:
            console.print(f"input {i['exposure']}  sha256 {i['sha256']}")
        j = p["job"]
        console.print(f"job {j['id']} {j['pipeline']} engine={j['engine']} worker={j['worker']} "
                      f"started {j['started_at']} finished {j['finished_at']}")
        console.print(f"parameters {json.dumps(j['parameters'])}  (hash {j['param_hash'][:12]})")
        console.print("software " + ", ".join(f"{k} {v}" for k, v in p["software_versions"].items()))
        console.print(f"CRDS context {p['crds_context']} (crds {p['crds_version']})")
        t = Table("reftype", "reference", "sha256")
        for r in p["references"]:
            t.add_row(r["reftype"], r["name"], r["sha256"] or "")
        console.print(t)
        if p.get("stale"):
            st = p["stale"]
            console.print(f"[yellow]stale[/] since campaign {st['campaign']} ({st['reason']}): "
                          + "; ".join(f"{c.get('reftype', c.get('software'))} {c['old']} -> {c['new']}"
                                      for c in st["changes"] or []) + f"; redo from {st['first_step']}")
        if p.get("comparison_with_superseded"):
            c = Table("extension", "pixels", "changed", "median |new-old|/ERR", "p99 |new-old|/ERR",
                      "DQ gained", "DQ lost", title=f"compared with {p['supersedes']}")
            for r in p["comparison_with_superseded"]:
                c.add_row(r["extension"], str(r["n_pixels"]), f"{r['frac_changed']:.4%}",
                          _number(r["median_dev_over_err"]), _number(r["p99_dev_over_err"]),
                          json.dumps(r["dq_gained"]) if r["dq_gained"] else "",
                          json.dumps(r["dq_lost"]) if r["dq_lost"] else "")
            console.print(c)


@app.command()
def sql(query: str = typer.Argument(..., help="One SELECT on the catalog (views: product_provenance, "
                                               "product_reference_provenance)."),
        limit: int = typer.Option(10_000, "--limit", min=0, help="At most this many rows (the rest is not read)."),
        statement_timeout: Optional[float] = typer.Option(None, "--statement-timeout", min=0.001,
                                                          help="Seconds (default ARCHIVE_SQL_STATEMENT_TIMEOUT, 30)."),
        lock_timeout: Optional[float] = typer.Option(None, "--lock-timeout", min=0.001,
                                                     help="Seconds (default ARCHIVE_SQL_LOCK_TIMEOUT, 2)."),
        as_json: bool = typer.Option(False, "--json")):
    """Run one read-only SQL statement on the read-only path (ARCHIVE_READONLY_DB_URL on PostgreSQL).

    Rows stream from the database in batches up to --limit. Exit 1 when the database refuses
    the statement or it times out, 2 when the connection could write (a superuser or the
    catalog's own role: make a read-only one with `archive db grant`), 3 when the catalog
    cannot be reached.
    """
    from ..catalog.readonly import CatalogUnreachable, StatementRefused, StatementTimeout, UnsafeRole, stream_readonly

    s = settings()
    try:
        with stream_readonly(s, query, limit=limit + 1, statement_timeout_s=statement_timeout,
                             lock_timeout_s=lock_timeout) as (cols, rows):
            if as_json:
                n = 0
                print("[", end="")
                for row in rows:
                    if n == limit:
                        n += 1
                        break
                    print(("," if n else "") + "\n " + json.dumps(dict(zip(cols, row, strict=True)), default=str),
                          end="")
                    n += 1
                print("\n]")
                truncated = n > limit
                shown = min(n, limit)
            else:
                got = list(rows)
                truncated, shown = len(got) > limit, min(len(got), limit)
                print_table(f"{shown} rows" + (f" (cut at --limit {limit})" if truncated else ""), cols,
                            [list(r) for r in got[:limit]], False)
    except CatalogUnreachable:
        raise  # not the statement's fault: an internal error (exit 3, the traceback logged)
    except UnsafeRole as exc:
        err.print(f"[red]refused: {exc}")
        raise typer.Exit(2) from None
    except (StatementRefused, StatementTimeout) as exc:
        err.print(f"[red]{'timed out' if isinstance(exc, StatementTimeout) else 'refused or failed'}: {exc}")
        raise typer.Exit(1) from None
    if truncated:
        err.print(f"[yellow]more rows than --limit {limit}: only the first {shown} were read")


@app.command()
def previews(redo: bool = typer.Option(False, "--redo", help="Draw again products that have previews."),
             all_products: bool = typer.Option(False, "--all", help="Superseded products too, not only current."),
             as_json: bool = typer.Option(False, "--json")):
    """Draw and catalogue PNG previews (and thumbnails) of existing image products."""
    from ..execution.previews import make_previews

    s = settings()
    report = make_previews(s, redo=redo, current_only=not all_products)
    rows = [[f, "drawn", ""] for f in report.drawn] + [[f, "failed", why] for f, why in report.failed]
    print_table(f"{len(report.drawn)} drawn, {len(report.failed)} failed", ["product", "result", "reason"], rows,
                as_json)
    if report.failed:
        raise typer.Exit(1)
