"""``plan run``, ``plan sweep`` and ``plan report``: simulate a point, evaluate a sweep, plot it."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from planner.config.errors import ConfigError

from planner.cli import Choice, counted, main


# ---------------------------------------------------------------- run
@main.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a scenario value (YAML syntax), e.g. --set deployment.count=8. Repeatable.")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Output folder (default outputs/<name>/run).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the output folder.")
def run_cmd(scenario, sets, out, quiet):
    """Simulate one point (the base scenario, sweep ignored): summary.json, requests.csv, timeseries.csv
    (and tasks.csv for agent tasks)."""
    from planner.sweeps.single import run
    try:
        row, res, path = run(scenario, sets, out)
    except (ConfigError, OSError):
        raise  # located lines (exit 2) or one I/O line (exit 1), from the command group
    except Exception as e:  # noqa: BLE001 - the engine failed (a sweep makes it an error row): one line
        click.echo(f"error: {type(e).__name__}: {e}", err=True)
        sys.exit(3)
    if not quiet:
        if not row["feasible"]:
            click.echo(f"infeasible: {row['reason']}", err=True)
        elif res is None:  # a service profile: agent tasks timed in closed form
            click.echo(f"{row['model']} (service): {row['tasks']} tasks", err=True)
        else:
            where = (f"{row['decode_devices']} x {row['decode_hardware']} decoding ({counted(row['replicas'], 'replica')})"
                     f" behind {row['prefill_devices']} x {row['prefill_hardware']} prefilling "
                     f"({counted(row['prefill_replicas'], 'replica')})" if row.get("disaggregated") else
                     f"{row['devices']} x {row['device']} ({counted(row['replicas'], 'replica')})")
            click.echo(f"{row['model']} on {where}, "
                       f"{row['sim_requests']} requests simulated in {row['wall_s']:.2f} s wall "
                       f"({row['events_per_request']:.2f} events/request)", err=True)
            click.echo(f"  throughput {row['throughput_out_tok_s']:,.0f} out tok/s; per user p50 "
                       f"{row['decode_tok_s_per_user_p50']:,.1f} tok/s; TTFT p50/p99 {row['ttft_p50_s'] * 1e3:,.1f}/"
                       f"{row['ttft_p99_s'] * 1e3:,.1f} ms; E2E p99 {row['e2e_p99_s']:,.2f} s", err=True)
            each = "the replica" if row["replicas"] == 1 else f"each of {row['replicas']} replicas"
            click.echo(f"  {each} carried {row['throughput_req_s_per_replica']:,.3g} req/s: "
                       f"{row['throughput_in_tok_s_per_replica']:,.0f} fresh + "
                       f"{row['throughput_cached_in_tok_s_per_replica']:,.0f} cached input and "
                       f"{row['throughput_out_tok_s_per_replica']:,.0f} output tok/s, "
                       f"{row['users_per_replica']:,.1f} users", err=True)
            click.echo(f"  ${row['cost_usd_per_mtok_out']:,.3f}/M output tokens; SLO attainment "
                       f"{row['slo_attainment']:.1%}; bottleneck {row['bottleneck']}", err=True)
            if not row.get("slo_pass", True) and row.get("reason"):  # why, not only summary.json
                click.echo(f"  SLO not met: {row['reason']}", err=True)
            if row.get("disaggregated"):
                click.echo(f"  KV handoff p50/p99 {row['handoff_p50_s'] * 1e3:,.1f}/{row['handoff_p99_s'] * 1e3:,.1f} ms "
                           f"(transfer {row['kv_transfer_p50_s'] * 1e3:,.1f}/{row['kv_transfer_p99_s'] * 1e3:,.1f} ms); "
                           f"prefill pool {row['prefill_util_max']:.0%} busy", err=True)
        if row["feasible"] and "tasks" in row:
            click.echo(f"  tasks: p50 {row['task_p50_s']:,.1f} s, p99 {row['task_p99_s']:,.1f} s, "
                       f"{row['tasks_per_hour']:,.1f}/hour, {row['compactions_per_task']:.2f} compactions each; "
                       f"time: tool {row['share_tool']:.0%}, CPU wait {row['share_tool_wait']:.0%}, overhead "
                       f"{row['share_overhead']:.0%}, queue {row['share_queue']:.0%}, prefill "
                       f"{row['share_prefill']:.0%}, decode {row['share_decode']:.0%}, compaction "
                       f"{row['share_compaction']:.0%}, KV transfer {row['share_kv_transfer']:.0%}; "
                       f"${row['cost_usd_per_task']:,.3f}/task", err=True)
    click.echo(str(path))
    if not row["feasible"]:
        sys.exit(1)


# ---------------------------------------------------------------- sweep
@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Output folder (default outputs/<scenario name>).")
@click.option("-q", "--quiet", is_flag=True,
              help="For scripts: no progress and no answer table; print only results.csv's path.")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Worker processes (default: all cores; with --executor dask and no scheduler: local workers).")
@click.option("--executor", type=Choice(["local", "dask"]), default="local", show_default=True,
              help="local: a process pool on this machine; dask: a dask.distributed cluster.")
@click.option("--scheduler", metavar="tcp://HOST:8786",
              help="Dask scheduler address (default with --executor dask: a throw-away local cluster).")
@click.option("--analytic-only", is_flag=True, help="Skip the discrete-event engine (closed-form columns only).")
@click.option("--xlsx", is_flag=True, help="Also write results.xlsx (needs the xlsx extra).")
@click.option("--fresh", is_flag=True, help="Discard points stored by an earlier (interrupted) run of this sweep.")
@click.option("--max-points", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Above this many points, ask first (or pass --yes).")
@click.option("-y", "--yes", is_flag=True, help="Run however many points the sweep expands to.")
@click.option("--no-report", is_flag=True, help="Skip the plots and summary.md (plan report DIR makes them later).")
def sweep(scenario, out, quiet, jobs, executor, scheduler, analytic_only, xlsx, fresh, max_points, yes, no_report):
    """Evaluate every point of SCENARIO's sweep. Writes results.csv, pareto.csv, best.csv, columns.md,
    run.json, the plots and summary.md; prints the cheapest configuration per hardware meeting the SLO.
    An interrupted sweep re-run with the same command continues where it stopped."""
    from planner.sweeps.answer import answer, text
    from planner.sweeps.interrupt import exit_code, sigterm_as_interrupt
    if scheduler and executor != "dask":
        raise click.BadParameter("--scheduler needs --executor dask", param_hint="--scheduler")
    with sigterm_as_interrupt():
        try:
            loaded, df, path = _sweep(scenario, out, quiet, jobs, executor, scheduler, analytic_only, xlsx, fresh,
                                      max_points, yes, not no_report)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: workers ended, stored points kept
            click.echo("\ninterrupted: finished points are stored; run the same command again to continue",
                       err=True)
            sys.exit(exit_code(e))
    if not quiet:
        failed = int((df["bottleneck"] == "error").sum())
        click.echo(f"{len(df)} points ({int(df['feasible'].sum())} feasible, {int(df['slo_pass'].sum())} meet "
                   f"the SLO, {int(df['pareto'].sum())} on the Pareto front"
                   + (f", {failed} FAILED: see run.json" if failed else "") + f") -> {path}", err=True)
        if "weights_precision" in df and "task_p50_s" not in df:  # requests, not agent tasks
            slo = {k: v for k, v in loaded.scenario.slo.model_dump().items() if v is not None}
            click.echo("cheapest configuration per hardware meeting the SLO:\n"
                       + text(answer(df, per_hardware=True, slo=slo), slo).rstrip())
        if not no_report and (path / "summary.md").exists():  # (--no-report: an old one is not this run's)
            click.echo(f"plots and summary: {path / 'summary.md'}")
    click.echo(str(path / "results.csv"))


def _sweep(scenario, out, quiet, jobs, executor, scheduler, analytic_only, xlsx, fresh, max_points, yes, report):
    """Load (refusing more than max_points before validating any), then run."""
    from planner.sweeps.runner import run
    from planner.plan.scenario import TooManyPoints, load
    try:
        loaded = load(scenario, max_points=None if yes else max_points)
    except TooManyPoints as e:
        if not sys.stdin.isatty() or not click.confirm(f"{e.count} points is more than {max_points}; run them "
                                                       "all?", err=True):
            click.echo(f"{'' if e.exact else 'up to '}{e.count} points > --max-points {max_points}: pass --yes "
                       "to run them", err=True)
            sys.exit(2)
        loaded = load(scenario)
    if not quiet:
        click.echo(f"{scenario}: {len(loaded.points)} points", err=True)
    try:
        df, path = run(loaded, out, quiet, simulate=False if analytic_only else None, jobs=jobs,
                       executor=executor, scheduler=scheduler, xlsx=xlsx, fresh=fresh, report=report)
    except RuntimeError as e:  # a missing optional extra
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    return loaded, df, path


# ---------------------------------------------------------------- report
@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def report(folder):
    """Plots (PNG) and summary.md from a sweep's output FOLDER (plan sweep makes them too)."""
    from planner.sweeps.report import write_report
    try:
        files = write_report(Path(folder))
    except RuntimeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    for f in files:
        click.echo(str(f))


