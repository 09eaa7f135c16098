"""The ``archive`` command line (typer + rich).

Every command reads the settings from the environment (``ARCHIVE_DATA_DIR``,
``ARCHIVE_DB_URL``, ``ARCHIVE_BROKER_URL``, ``CRDS_PATH``, ``CRDS_CONTEXT``) or the
config file; ``--data-dir`` overrides the data directory. Tabular commands take
``--json`` to print machine-readable output instead of a table.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import Settings, load_settings

app = typer.Typer(help="A JWST archive: ingest raw exposures, calibrate them, and prove how each product was made.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
crds_app = typer.Typer(help="CRDS contexts and best references.", no_args_is_help=True)
app.add_typer(crds_app, name="crds")

console = Console()
err = Console(stderr=True)


class State:
    data_dir: Optional[Path] = None


def settings() -> Settings:
    return load_settings(State.data_dir)


@app.callback()
def main(data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="ARCHIVE_DATA_DIR",
                                                 help="Data directory (catalog, storage, CRDS cache).")):
    """JWST archive reprocessing system."""
    State.data_dir = data_dir


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal)


def _print_table(title: str, columns: list[str], rows: list[list], as_json: bool) -> None:
    if as_json:
        print(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1))
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    console.print(table)


def _ensure_catalog(s: Settings) -> None:
    from .catalog.db import upgrade

    for d in (s.data_dir, s.raw_dir, s.products_dir, s.associations_dir, s.crds_path):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)


# --------------------------------------------------------------------------- init
@app.command()
def init(as_json: bool = typer.Option(False, "--json")):
    """Create the data directory, storage tree and catalog (alembic upgrade head)."""
    from .catalog.db import current_revision

    s = settings()
    _ensure_catalog(s)
    info = {"data_dir": str(s.data_dir), "catalog": s.db_url, "schema_revision": current_revision(s.db_url),
            "execution": "eager (in-process)" if s.eager else f"broker {s.broker_url}",
            "crds_path": str(s.crds_path)}
    _print_table("archive initialised", ["setting", "value"], [[k, v] for k, v in info.items()], as_json)


# --------------------------------------------------------------------------- simulate
@app.command()
def simulate(pool: Path = typer.Option(..., "--pool", exists=True, dir_okay=False, help="Association pool (.csv)."),
             out: Path = typer.Option(..., "--out", help="Directory for the _uncal.fits files."),
             limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N pool rows."),
             seed: int = typer.Option(0, "--seed"),
             ngroups: Optional[int] = typer.Option(None, "--ngroups", help="Override NGROUPS."),
             nints: Optional[int] = typer.Option(None, "--nints", help="Override NINTS."),
             as_json: bool = typer.Option(False, "--json")):
    """Simulate one raw exposure per pool row and the CRDS cache that describes them."""
    from .simulation import simulate_pool

    s = settings()
    s.crds_path.mkdir(parents=True, exist_ok=True)
    with err.status(f"simulating {pool.name} ..."):
        result = simulate_pool(pool, out, s.crds_path, limit=limit, seed=seed, ngroups=ngroups, nints=nints)
    rows = [[str(f)] for f in result.files]
    _print_table(f"{len(result.files)} exposures simulated; CRDS context {result.context} in {s.crds_path}",
                 ["file"], rows, as_json)


# --------------------------------------------------------------------------- ingest
@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Files or directories of *_uncal.fits."),
           recursive: bool = typer.Option(False, "--recursive", "-r"),
           pool: Optional[Path] = typer.Option(None, "--pool", exists=True, dir_okay=False,
                                               help="Pool supplying planning columns (ASN_CANDIDATE ...)."),
           as_json: bool = typer.Option(False, "--json")):
    """Validate, checksum, store and catalogue raw exposures. Exit 1 if any was rejected."""
    from .ingest.batch import ingest as do_ingest, iter_paths

    s = settings()
    _ensure_catalog(s)
    files = iter_paths(paths, recursive)
    with _progress() as prog:
        task = prog.add_task("ingest", total=len(files))
        report = do_ingest(s, files, pool_path=pool, progress=lambda o: prog.advance(task))
    rows = [[o.filename, o.status, o.stage1_pipeline or "", o.reason] for o in report.outcomes]
    _print_table(f"ingest: {report.count('ingested')} ingested, {report.count('unchanged')} unchanged, "
                 f"{report.count('rejected')} rejected, {report.count('conflict')} conflicts",
                 ["file", "status", "pipeline", "reason"], rows, as_json)
    if not report.ok:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- associate
@app.command()
def associate(program: Optional[str] = typer.Option(None, "--program"),
              as_json: bool = typer.Option(False, "--json")):
    """Generate Level-2 and Level-3 associations from the catalog with jwst's generator."""
    from .associations.associate import associate as do_associate

    s = settings()
    _ensure_catalog(s)
    with err.status("running the jwst association generator ..."):
        report = do_associate(s, program)
    rows = [[a, "new"] for a in report.created] + [[a, "existing"] for a in report.existing]
    _print_table(f"associations: {len(report.created)} new, {len(report.existing)} existing "
                 f"({', '.join(f'{k}: {v}' for k, v in sorted(report.levels.items()))})",
                 ["asn_id", "status"], rows, as_json)


# --------------------------------------------------------------------------- crds
@crds_app.command("status")
def crds_status(as_json: bool = typer.Option(False, "--json")):
    """List the known contexts and the one in use."""
    from sqlalchemy import select

    from .crds import cache as crdscache
    from .catalog.db import session_scope
    from .catalog.models import CrdsContext
    from .crds.references import context_in_use

    s = settings()
    _ensure_catalog(s)
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
            rows.append([name, "yes" if name == using else "", "yes" if name in cached else "no",
                         c.first_seen.isoformat(timespec="seconds") if c else "", c.crds_version if c else ""])
    _print_table(f"CRDS contexts (cache {s.crds_path})", ["context", "in use", "in cache", "first seen", "crds"],
                 rows, as_json)


@crds_app.command("add")
def crds_add(context: str = typer.Argument(..., help="A .pmap name, e.g. jwst_1322.pmap."),
             source: Optional[Path] = typer.Option(None, "--from",
                                                   help="A CRDS cache (or a directory of mappings and reference "
                                                        "files) holding the context; default: already synced "
                                                        "into CRDS_PATH (e.g. by 'crds sync --contexts C')."),
             as_json: bool = typer.Option(False, "--json")):
    """Add a CRDS context to the local cache and the catalog; show what it would change.

    Nothing becomes stale until 'archive crds use CONTEXT'.
    """
    from .reprocessing.campaigns import switch_context
    from .crds.cache import add_context
    from .catalog.db import session_scope
    from .crds.references import ContextError, ensure_context

    s = settings()
    _ensure_catalog(s)
    try:
        copied = add_context(s.crds_path, context, source)
        with session_scope(s.db_url) as db:
            ensure_context(db, context)
        report = switch_context(s, context, dry_run=True)
    except (ContextError, FileNotFoundError, ValueError) as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2)
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
        _print_table("changes driving the remake", ["change", "exposures"],
                     [[k, v] for k, v in report.by_change.items()], False)


@crds_app.command("use")
def crds_use(context: str = typer.Argument(..., help="A .pmap name in the local cache."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would become stale."),
             as_json: bool = typer.Option(False, "--json")):
    """Make CONTEXT the context in use: products whose best references it changes become
    stale and a campaign is opened for them (only the reftypes that differ are examined)."""
    from .reprocessing.campaigns import switch_context
    from .crds.references import ContextError

    s = settings()
    _ensure_catalog(s)
    try:
        report = switch_context(s, context, dry_run=dry_run)
    except ContextError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2)
    if not dry_run:
        console.print(f"context in use: {context}")
    _print_campaign_report(report, as_json, preview=dry_run)


# --------------------------------------------------------------------------- reprocess
def _parse_step_params(extra: list[str]) -> dict:
    """``--steps.jump.rejection_threshold=5`` -> {"jump": {"rejection_threshold": 5.0}}."""
    params: dict = {}
    for arg in extra:
        if not arg.startswith("--steps.") or "=" not in arg:
            raise typer.BadParameter(f"unexpected argument {arg!r} (step parameters: --steps.<step>.<param>=VALUE)")
        key, value = arg[len("--steps."):].split("=", 1)
        step, _, name = key.partition(".")
        if not name:
            raise typer.BadParameter(f"{arg!r}: expected --steps.<step>.<param>=VALUE")
        low = value.lower()
        parsed: object
        if low in ("true", "false"):
            parsed = low == "true"
        else:
            try:
                parsed = int(value)
            except ValueError:
                try:
                    parsed = float(value)
                except ValueError:
                    parsed = value
        params.setdefault(step, {})[name] = parsed
    return params


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def reprocess(ctx: typer.Context,
              program: Optional[str] = typer.Option(None, "--program"),
              instrument: Optional[str] = typer.Option(None, "--instrument"),
              exp_type: Optional[str] = typer.Option(None, "--exp-type"),
              context: Optional[str] = typer.Option(None, "--context",
                                                    help="CRDS context (must be the one in use; default: in use)."),
              pipeline: str = typer.Option("calwebb_detector1", "--pipeline"),
              stale: bool = typer.Option(False, "--stale", help="Only stale products (and lost or expired jobs), "
                                                                 "as the beat schedule does; failures are not retried."),
              stale_software: bool = typer.Option(False, "--stale-software",
                                                  help="First mark stale the products made by another version of "
                                                       "this software (opens a campaign)."),
              dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, run nothing."),
              as_json: bool = typer.Option(False, "--json")):
    """Plan the jobs the catalog owes and run them (in-process, or through the broker).

    Step parameters use the strun convention: --steps.jump.rejection_threshold=5
    """
    from .reprocessing.planner import plan_and_send
    from .crds.references import ContextError

    s = settings()
    _ensure_catalog(s)
    params = _parse_step_params(ctx.args)
    if stale_software:
        from .reprocessing.campaigns import mark_software_stale

        rep = mark_software_stale(s, program=program, instrument=instrument, pipeline=pipeline, dry_run=dry_run)
        err.print(f"software: {rep.stale_products} products of {rep.stale_exposures} exposures "
                  f"{'would become' if dry_run else 'made'} stale"
                  + (f" (campaign {rep.campaign_id})" if rep.campaign_id else ""))
    try:
        with _progress() as prog:
            task = prog.add_task("eager" if s.eager else "enqueue", total=None)
            p, outcomes = plan_and_send(
                s, progress=lambda j, o: prog.advance(task), program=program, instrument=instrument,
                exp_type=exp_type, context=context, pipeline=pipeline, params=params, dry_run=dry_run,
                stale_only=stale, retry_failed=not stale)
    except ContextError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2)
    counts = ", ".join(f"{p.count(a)} {a}" for a in ("new", "retry", "requeue", "pending", "failed", "current",
                                                      "unsupported"))
    summary = f"plan under {p.context}, software {p.cal_version}: {counts}"
    rows = [[i.exposure, i.pipeline, i.action, i.detail, i.job_id or "", outcomes.get(i.job_id, "")]
            for i in p.items]
    _print_table(summary, ["exposure", "pipeline", "action", "detail", "job", "result"], rows, as_json)
    if any(str(o).startswith("failed") for o in outcomes.values()):
        raise typer.Exit(1)


@app.command("plan")
def plan_cmd(campaign: Optional[int] = typer.Option(None, "--campaign", help="One campaign's remaining work."),
             stale: bool = typer.Option(False, "--stale", help="Only stale work (what beat would send)."),
             cores_per_job: int = typer.Option(1, "--cores-per-job", help="Cores one job occupies (numba threads)."),
             as_json: bool = typer.Option(False, "--json")):
    """What would be remade before anything runs: products by kind, the reference changes
    driving it, and the estimated cost in core-seconds from past jobs of the same shape."""
    from dataclasses import asdict

    from .reprocessing.whatif import what_if

    s = settings()
    _ensure_catalog(s)
    try:
        w = what_if(s, campaign_id=campaign, stale_only=stale, cores_per_job=cores_per_job)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}")
        raise typer.Exit(2)
    if as_json:
        print(json.dumps(asdict(w), indent=1, default=str))
        return
    cost = (f"{w.est_core_seconds:.0f} core-seconds ({w.est_core_seconds / 3600:.2f} core-hours)"
            if w.est_core_seconds is not None else "unknown (no past jobs to estimate from)")
    title = f"campaign {campaign}" if campaign else ("stale work" if stale else "all owed work")
    console.print(f"[bold]{title}[/]: {w.jobs} exposures to (re)make; estimated cost {cost}; "
                  f"basis: {', '.join(f'{k} {v}' for k, v in w.basis.items()) or '-'}"
                  + (f"; {w.unsupported} unsupported" if w.unsupported else ""))
    _print_table("products to make", ["kind", "exposures"], [[k, v] for k, v in w.by_kind.items()], False)
    _print_table("why", ["change", "exposures"], [[k, v] for k, v in w.by_change.items()], False)
    _print_table("first step to redo", ["step", "exposures"], [[k, v] for k, v in w.by_first_step.items()], False)


# --------------------------------------------------------------------------- calibrate
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def calibrate(ctx: typer.Context,
              pipeline: str = typer.Argument(..., help="calwebb_detector1 (or an alias such as Detector1Pipeline)."),
              files: list[Path] = typer.Argument(..., help="Raw exposures (*_uncal.fits)."),
              output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Default: beside each input."),
              as_json: bool = typer.Option(False, "--json")):
    """Run a pipeline on files without the catalog, like strun (exit 0 ok, 1 a file failed, 2 usage).

    Step parameters: --steps.jump.rejection_threshold=5, --steps.refpix.skip=true,
    --steps.dark_current.override_dark=PATH (bypass CRDS for one reference).
    """
    from .execution.calibrate import UsageError, calibrate_files

    s = settings()
    # with unknown options allowed, click hands --steps.* that follow the files to FILES
    extra = [str(f) for f in files if str(f).startswith("--")] + list(ctx.args)
    files = [f for f in files if not str(f).startswith("--")]
    try:
        if not files:
            raise typer.BadParameter("no input files")
        params = _parse_step_params(extra)
        with _progress() as prog:
            task = prog.add_task("calibrate", total=len(files))
            outcomes = calibrate_files(s, pipeline, files, output_dir, params,
                                       progress=lambda o: prog.advance(task))
    except (UsageError, typer.BadParameter) as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2)
    rows = [[str(o.path), o.status, ", ".join(str(p) for p in o.products.values()), f"{o.seconds:.1f}", o.message]
            for o in outcomes]
    _print_table("calibrate", ["input", "status", "products", "seconds", "error"], rows, as_json)
    if any(o.status != "succeeded" for o in outcomes):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- status
def _status_tables(s, campaign: Optional[int]):
    from sqlalchemy import func, select

    from .reprocessing.status import campaign_status
    from .catalog.db import session_scope
    from .catalog.models import Campaign, Exposure, IngestRejection, Product

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
    rows.append(["throughput (jobs/hour, last 10 min)", f"{st.throughput_per_hour:.1f}" if st.throughput_per_hour else "-"])
    rows.append(["ETA", f"{st.eta_seconds:.0f} s" if st.eta_seconds is not None else "-"])
    return st, rows


@app.command()
def status(campaign: Optional[int] = typer.Option(None, "--campaign"),
           watch: bool = typer.Option(False, "--watch", help="Refresh every --interval seconds until the "
                                                              "campaign is done (Ctrl-C to stop)."),
           interval: float = typer.Option(2.0, "--interval"),
           as_json: bool = typer.Option(False, "--json")):
    """Queued / running / succeeded / failed / never-run job counts, throughput, ETA and the
    last errors (of one campaign, or of the whole archive)."""
    import time

    from rich.console import Group
    from rich.live import Live

    s = settings()
    _ensure_catalog(s)
    try:
        st, rows = _status_tables(s, campaign)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}")
        raise typer.Exit(2)
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
        return Group(t, e) if st.last_errors else t

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


# --------------------------------------------------------------------------- provenance / sql
@app.command()
def provenance(name: str = typer.Argument(..., help="A product (file name or path) or an exposure file name."),
               as_json: bool = typer.Option(False, "--json")):
    """The lineage of a product or exposure: inputs, job, versions, context, references."""
    from .catalog.provenance import NotFound, lineage

    s = settings()
    try:
        info = lineage(s, name)
    except NotFound as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2)
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
                fmt = (lambda v: "" if v is None else f"{v:.4g}")
                c.add_row(r["extension"], str(r["n_pixels"]), f"{r['frac_changed']:.4%}", fmt(r["median_dev_over_err"]),
                          fmt(r["p99_dev_over_err"]), json.dumps(r["dq_gained"]) if r["dq_gained"] else "",
                          json.dumps(r["dq_lost"]) if r["dq_lost"] else "")
            console.print(c)


@app.command()
def sql(query: str = typer.Argument(..., help="A SELECT on the catalog (views: product_provenance, "
                                               "product_reference_provenance)."),
        as_json: bool = typer.Option(False, "--json")):
    """Run a read-only SQL query; the database itself refuses any write."""
    from .catalog.provenance import readonly_query

    s = settings()
    try:
        cols, rows = readonly_query(s, query)
    except Exception as exc:
        err.print(f"[red]refused or failed: {str(exc).splitlines()[0]}")
        raise typer.Exit(1)
    _print_table(f"{len(rows)} rows", cols, [list(r) for r in rows], as_json)


# --------------------------------------------------------------------------- worker / beat
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context):
    """Start a Celery worker (needs ARCHIVE_BROKER_URL); extra arguments go to celery."""
    from .execution.dispatch import get_dispatcher

    s = settings()
    if s.eager:
        err.print("[red]ARCHIVE_BROKER_URL is not set: there is no broker to take work from")
        raise typer.Exit(2)
    _ensure_catalog(s)
    get_dispatcher(s).run_worker(list(ctx.args))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context):
    """Start Celery beat: plans and enqueues owed work every ARCHIVE_BEAT_INTERVAL seconds."""
    from .execution.dispatch import get_dispatcher

    s = settings()
    if s.eager:
        err.print("[red]ARCHIVE_BROKER_URL is not set: beat needs a broker")
        raise typer.Exit(2)
    _ensure_catalog(s)
    get_dispatcher(s).run_beat(list(ctx.args))


# --------------------------------------------------------------------------- demo
@app.command()
def demo(workdir: Optional[Path] = typer.Option(None, "--workdir", help="Default: a new temporary directory."),
         limit: int = typer.Option(4, "--limit", help="How many pool rows to simulate."),
         ngroups: int = typer.Option(5, "--ngroups")):
    """The main job end to end on the embedded default (SQLite, in-process tasks)."""
    from .demo import run_demo

    code = run_demo(workdir, limit=limit, ngroups=ngroups, console=console)
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
