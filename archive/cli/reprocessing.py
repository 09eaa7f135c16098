"""``archive reprocess`` and ``archive plan``: what the catalog owes, sent or foreseen.

``reprocess`` sends what the catalog owes; ``plan`` shows what a campaign will remake,
and at what cost, before it runs.
"""
from __future__ import annotations

import json
from typing import Optional

import typer

from .common import console, ensure_catalog, err, parse_step_params, print_table, progress, settings

app = typer.Typer()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def reprocess(ctx: typer.Context,
              program: Optional[str] = typer.Option(None, "--program"),
              instrument: Optional[str] = typer.Option(None, "--instrument"),
              exp_type: Optional[str] = typer.Option(None, "--exp-type"),
              context: Optional[str] = typer.Option(None, "--context",
                                                    help="CRDS context (must be the one in use; default: in use)."),
              pipeline: Optional[str] = typer.Option(None, "--pipeline",
                                                     help="Only exposures of this stage-1 pipeline (default: all); "
                                                          "needed with step parameters."),
              stale: bool = typer.Option(False, "--stale",
                                         help="Only stale products (and lost or expired jobs), as the beat schedule "
                                              "does; failures are not retried."),
              stale_software: bool = typer.Option(False, "--stale-software",
                                                  help="First mark stale the products made by another version of "
                                                       "this software (opens a campaign)."),
              dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, run nothing."),
              as_json: bool = typer.Option(False, "--json")):
    """Plan the jobs the catalog owes and run them (in-process, or through the broker).

    Step parameters use the strun convention: --steps.jump.rejection_threshold=5
    """
    from calib.params import ParamError

    from ..crds.references import ContextError
    from ..reprocessing.planner import plan_and_send

    s = settings()
    ensure_catalog(s)
    params = parse_step_params(ctx.args)
    if stale_software:
        from ..reprocessing.campaigns import mark_software_stale

        rep = mark_software_stale(s, program=program, instrument=instrument,
                                  pipeline=pipeline or "calwebb_detector1", dry_run=dry_run)
        err.print(f"software: {rep.stale_products} products of {rep.stale_exposures} exposures "
                  f"{'would become' if dry_run else 'made'} stale"
                  + (f" (campaign {rep.campaign_id})" if rep.campaign_id else ""))
    try:
        with progress() as prog:
            task = prog.add_task("eager" if s.eager else "enqueue", total=None)
            p, outcomes = plan_and_send(
                s, progress=lambda j, o: prog.advance(task), program=program, instrument=instrument,
                exp_type=exp_type, context=context, pipeline=pipeline, params=params, dry_run=dry_run,
                stale_only=stale, retry_failed=not stale)
    except (ContextError, ParamError) as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    counts = ", ".join(f"{p.count(a)} {a}" for a in ("new", "retry", "requeue", "pending", "failed", "current",
                                                      "unsupported"))
    summary = f"plan under {p.context}, software {p.cal_version}: {counts}"
    rows = [[i.exposure, i.pipeline, i.action, i.detail, i.job_id or "", outcomes.get(i.job_id, "")]
            for i in p.items]
    print_table(summary, ["exposure", "pipeline", "action", "detail", "job", "result"], rows, as_json)
    if any(str(o).startswith("failed") for o in outcomes.values()):
        raise typer.Exit(1)


@app.command("plan")
def plan_cmd(campaign: Optional[int] = typer.Option(None, "--campaign", help="One campaign's remaining work."),
             stale: bool = typer.Option(False, "--stale", help="Only stale work (what beat would send)."),
             cores_per_job: int = typer.Option(1, "--cores-per-job", help="Cores one job occupies (numba threads)."),
             as_json: bool = typer.Option(False, "--json")):
    """Show what would be remade before anything runs, and what it would cost.

    Products by kind, the reference changes driving it, and the estimated cost in
    core-seconds from past jobs of the same shape.
    """
    from dataclasses import asdict

    from ..reprocessing.whatif import what_if

    s = settings()
    ensure_catalog(s)
    try:
        w = what_if(s, campaign_id=campaign, stale_only=stale, cores_per_job=cores_per_job)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(asdict(w), indent=1, default=str))
        return
    cost = (f"{w.est_core_seconds:.0f} core-seconds ({w.est_core_seconds / 3600:.2f} core-hours)"
            if w.est_core_seconds is not None else "unknown (no past jobs to estimate from)")
    title = f"campaign {campaign}" if campaign else ("stale work" if stale else "all owed work")
    console.print(f"[bold]{title}[/]: {w.jobs} exposures to (re)make; estimated cost {cost}; "
                  f"basis: {', '.join(f'{k} {v}' for k, v in w.basis.items()) or '-'}"
                  + (f"; {w.unsupported} unsupported" if w.unsupported else ""))
    print_table("products to make", ["kind", "exposures"], [[k, v] for k, v in w.by_kind.items()], False)
    print_table("why", ["change", "exposures"], [[k, v] for k, v in w.by_change.items()], False)
    print_table("first step to redo", ["step", "exposures"], [[k, v] for k, v in w.by_first_step.items()], False)
    print_table("by stage (stage 1 per exposure, stages 2 and 3 per association)",
                ["pipeline", "jobs now", "waiting for inputs", "held", "no references", "est. core-seconds"],
                [[k, v["jobs"], v["waiting"], v["held"], v["no_references"],
                  "unknown" if v["est_core_seconds"] is None else f"{v['est_core_seconds']:.0f}"]
                 for k, v in w.by_stage.items()], False)
    if w.lacking:
        print_table("jobs that cannot run: the context lacks references for their mode",
                    ["pipeline", "mode", "context", "missing reftypes", "associations", "crds says"],
                    [[g.pipeline, f"{g.instrument} {g.exp_type}", g.context, ", ".join(g.reftypes),
                      f"{len(g.associations)}: {', '.join(g.associations[:3])}"
                      + (" ..." if len(g.associations) > 3 else ""),
                      "; ".join(sorted(set(g.reftypes.values())))[:200]]
                     for g in w.lacking], False)
