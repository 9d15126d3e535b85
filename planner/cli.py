"""The ``plan`` command: parses arguments and calls the library; nothing else lives here.

Every user mistake (bad YAML, unknown name, invalid value) exits with code 2 and one line
per problem on stderr, never a traceback.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from planner import catalog
from planner.version import __version__
from planner.config.errors import ConfigError
from planner.config.schema import PRECISIONS, BondedSramSpec, SpecDecode
from planner.config.units import fmt_bytes, fmt_rate

PREC = click.Choice(PRECISIONS)


class _Group(click.Group):
    """Turns ConfigError anywhere below into located lines and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            for p in e.problems:
                click.echo(str(p), err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plan")
def main():
    """Plan wafer-scale (and GPU) LLM inference: memory fit, speed, latency, cost."""


# ---------------------------------------------------------------- validate
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files):
    """Check scenario (or hardware/model spec) files; exit 2 with FILE:LINE:COL lines on error."""
    from planner.config.yamlio import load_file
    from planner.plan.scenario import expand, load
    bad = False
    for f in files:
        try:
            kind = _file_kind(load_file(f).data, Path(f))
            if kind == "hardware":
                spec = catalog.load_hardware(f)
                click.echo(f"{f}: ok ({spec.kind} spec)")
            elif kind == "model":
                catalog.load_model(f)
                click.echo(f"{f}: ok (model spec)")
            else:
                n = len(expand(load(f)))
                click.echo(f"{f}: ok ({n} point{'s' if n != 1 else ''})")
        except ConfigError as e:
            bad = True
            for p in e.problems:
                click.echo(str(p), err=True)
    if bad:
        sys.exit(2)


def _file_kind(data, path: Path) -> str:
    """'scenario', 'model' or 'hardware', from the keys a file sets (or what it extends)."""
    if not isinstance(data, dict) or {"workload", "sweep", "deployment"} & data.keys():
        return "scenario"
    if {"layers", "hidden", "attention", "coarse", "moe"} & data.keys():
        return "model"
    if data.get("kind") in ("wafer", "gpu", "bonded_sram"):
        return "hardware"
    parent = data.get("extends")
    if isinstance(parent, str):
        if catalog.find("hardware", parent, path.parent.parent):
            return "hardware"
        if catalog.find("model", parent, path.parent.parent):
            return "model"
    return "scenario"


# ---------------------------------------------------------------- list / show
@main.command("list")
@click.argument("what", type=click.Choice(["hardware", "models"]))
def list_(what):
    """Show the catalog with key figures."""
    if what == "hardware":
        rows = [("name", "kind", "memory", "mem bw", "16-bit", "fp8", "fp4", "io", "power/sys", "capex/sys", "")]
        for h in catalog.all_hardware():
            if isinstance(h, BondedSramSpec):
                rows.append((h.name, "option", f"+{fmt_bytes(h.bytes_per_layer)}/layer", fmt_rate(h.bandwidth, "B/s"),
                             "", "", "", "", f"+{h.power_w_per_layer / 1e3:.3g} kW", f"+${h.capex_usd_per_layer:,.0f}",
                             "hypothetical"))
                continue
            c = h.compute.peaks()
            rows.append((h.name, h.kind, fmt_bytes(h.memory.capacity), fmt_rate(h.memory.bandwidth, "B/s"),
                         fmt_rate(c["fp16"], "FLOP/s"), fmt_rate(c["fp8"], "FLOP/s") if "fp8" in c else "-",
                         fmt_rate(c["fp4"], "FLOP/s") if "fp4" in c else "-", fmt_rate(h.io.bandwidth, "B/s"),
                         f"{h.power.watts / 1e3:.3g} kW", f"${h.cost.capex_usd:,.0f}",
                         "hypothetical" if h.hypothetical else ""))
    else:
        from planner.physics.model import build
        rows = [("name", "params", "active", "layers", "hidden", "attention", "KV B/token (16-bit)", "window")]
        for m in catalog.all_models():
            s = build(m)
            att = "coarse" if m.attention is None else m.attention.type
            rows.append((m.name, f"{s.total_params / 1e9:.1f}B", f"{s.active_params / 1e9:.1f}B", str(m.layers),
                         str(m.hidden), att, f"{s.kv_bytes_per_token('bf16').sum():,.0f}", f"{m.context_window:,}"))
    _table(rows)


def _table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())


@main.command()
@click.argument("what", type=click.Choice(["hardware", "model"]))
@click.argument("name")
def show(what, name):
    """Print one spec, resolved (inheritance applied), with its sources."""
    import yaml
    spec = catalog.load_hardware(name) if what == "hardware" else catalog.load_model(name)
    path = catalog.find("hardware" if what == "hardware" else "model", name)
    click.echo(f"# {path}")
    click.echo(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False).rstrip())


# ---------------------------------------------------------------- estimate
@main.command()
@click.option("--model", "model_name", required=True, help="Model name (plan list models) or YAML path.")
@click.option("--hardware", "hw_name", required=True, help="Hardware name (plan list hardware) or YAML path.")
@click.option("--count", type=click.IntRange(min=1), help="Devices in the pipeline; default: fewest that fit.")
@click.option("--precision", type=PREC, default="bf16", show_default=True, help="Weight precision.")
@click.option("--kv-precision", type=PREC, help="KV-cache precision (default: weights', at least fp8).")
@click.option("--mode", type=click.Choice(["auto", "native", "storage"]), default="auto", show_default=True,
              help="native: compute at the precision's rate; storage: dequantise to 16-bit.")
@click.option("--context", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Tokens per sequence the KV must hold.")
@click.option("--batch", type=click.IntRange(min=1), help="Concurrent sequences; default: all that fit.")
@click.option("--prompt", type=click.IntRange(min=1), help="Prompt tokens for TTFT (default: context - output).")
@click.option("--output", "output_tokens", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Output tokens per request (sets the prefill share in steady state).")
@click.option("--bonded-layers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Bonded SRAM layers per wafer (hardware_specs/bonded-sram.yaml).")
@click.option("--software", help="Software profile of the hardware spec (e.g. launch-2024-08).")
@click.option("--spec-decode", nargs=2, type=(click.IntRange(1, 16), click.FloatRange(0, 1, min_open=True, max_open=True)),
              help="Speculative decoding: DRAFT_TOKENS ACCEPTANCE_RATE.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def estimate(model_name, hw_name, count, precision, kv_precision, mode, context, batch, prompt, output_tokens,
             bonded_layers, software, spec_decode, as_json):
    """Answer analytically: fit, devices, stages, speeds, TTFT, bottleneck."""
    from planner.physics.point import Config
    from planner.plan.estimate import estimate as run_estimate
    model = catalog.load_model(model_name)
    hw = catalog.load_hardware(hw_name)
    if isinstance(hw, BondedSramSpec):
        raise click.BadParameter(f"'{hw_name}' is a bonded-SRAM option; use --bonded-layers", param_hint="--hardware")
    if prompt is not None and prompt > context:
        raise click.BadParameter(f"prompt ({prompt}) > context ({context})", param_hint="--prompt")
    bonded = catalog.load_hardware("bonded-sram") if bonded_layers else None
    sd = SpecDecode(draft_tokens=spec_decode[0], acceptance_rate=spec_decode[1]) if spec_decode else None
    row = run_estimate(Config(model, hw, count=count, weights=precision, kv=kv_precision, mode=mode,
                              context=context, prompt=prompt, output=min(output_tokens, context), batch=batch,
                              bonded=bonded, bonded_layers=bonded_layers, software=software,
                              spec_decode=sd)).as_dict()
    if as_json:
        click.echo(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                               for k, v in row.items()}, indent=2))
    else:
        _print_estimate(row)
    if not row["fits"]:
        sys.exit(1)


def _print_estimate(r: dict) -> None:
    click.echo(f"{r['model']} on {r['hardware']}  weights {r['weights_precision']}  KV {r['kv_precision']}  "
               f"context {r['context_tokens']:,}")
    if "devices" in r:
        click.echo(f"  devices            {r['devices']} ({r['systems']} systems), {r['stages']} pipeline stages, "
                   f"TP {r['tp']}, {r['layers_per_stage']} layers/stage, {r['layers_split']} layers split")
        click.echo(f"  weights            {fmt_bytes(r['weight_bytes'])}  (usable {fmt_bytes(r['capacity_bytes_per_device'])}/device)")
        click.echo(f"  KV                 {r['kv_bytes_per_token']:,.0f} B/token, {fmt_bytes(r['kv_bytes_per_seq'])}/sequence")
        click.echo(f"  max concurrent     {r['max_concurrent_sequences']:,} sequences")
    if not r["fits"]:
        click.echo(f"  DOES NOT FIT: {r['reason']}")
        return
    click.echo(f"  batch              {r['batch']:,} ({r['microbatches']} micro-batches), compute {r['compute_mode']}")
    lo, hi = r["speed_band_low"], r["speed_band_high"]
    click.echo(f"  decode             {r['decode_tok_s_per_user']:,.1f} tok/s per user "
               f"(band {r['decode_tok_s_per_user'] * lo:,.1f}-{r['decode_tok_s_per_user'] * hi:,.1f}; "
               f"single stream {r['single_stream_tok_s']:,.1f})")
    click.echo(f"  aggregate          {r['aggregate_tok_s']:,.0f} output tok/s "
               f"(band {r['aggregate_tok_s'] * lo:,.0f}-{r['aggregate_tok_s'] * hi:,.0f}), "
               f"{r['input_tok_s']:,.0f} input tok/s")
    click.echo(f"  band from          {r['speed_band_source']}" + ("  [HYPOTHETICAL hardware]" if r["hypothetical"] else ""))
    click.echo(f"  TTFT               {r['ttft_s'] * 1e3:,.1f} ms for {r['prompt_tokens']:,} prompt tokens (idle replica)")
    click.echo(f"  bottleneck         {r['bottleneck']}")


# ---------------------------------------------------------------- calibrate
@main.command()
@click.option("--data", type=click.Path(dir_okay=False, exists=True), multiple=True,
              help="Calibration CSV(s) (default: the built-in calibration.csv and calibration_*.csv).")
@click.option("--family", "families", multiple=True, metavar="NAME",
              help="Fit only these families (h100, b200, cs3, groq-lpu); repeatable. Default: all.")
@click.option("--no-cv", is_flag=True, help="Skip the held-out (leave-one-out / k-fold) refits: in-sample only.")
@click.option("--write", is_flag=True, help="Write the fitted values and uncertainty bands into the hardware YAML files.")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the per-point table as Markdown.")
def calibrate(data, families, no_cv, write, markdown):
    """Fit the named step-time parameters to published measurements; report per-point, per-group
    and overall errors, in sample and held out (points a fit did not see)."""
    from planner import calibration as cal
    known = [f.head for f in cal.FAMILIES]
    bad = [f for f in families if f not in known]
    if bad:
        raise click.BadParameter(f"unknown family {bad[0]!r} (known: {', '.join(known)})", param_hint="--family")
    pts = cal.read_points([Path(d) for d in data] if data else None)
    chosen = [f for f in cal.FAMILIES if not families or f.head in families]
    fits = cal.fit(pts, chosen, cross_validate=not no_cv)
    for g in fits:
        click.echo(f"\n{g.family.head} (fits {', '.join(g.family.members)}): {g.calibrate_points} calibrate points, "
                   f"{len(g.params)} parameters, {g.dof} degrees of freedom; held out by {g.cv}")
        for name, (a, b) in g.params.items():
            click.echo(f"  {name:28s} {a:.4g} -> {b:.4g}")
        click.echo(f"  {'file:row':>22} {'role':9} {'hardware':11} {'model':17} {'metric':22} {'batch':>5} "
                   f"{'measured':>10} {'predicted':>10} {'error':>7} {'held out':>8}")
        for x in g.predictions:
            c = x.cells()
            click.echo(f"  {c['ref']:>22} {c['role']:9} {c['hardware']:11} {c['model']:17} {c['metric']:22} "
                       f"{c['batch']:>5} {c['measured']:>10} {c['predicted']:>10} {c['error']:>7} {c['held_out']:>8}")
    click.echo("\nsummary (|error|: in sample over calibrate rows; held out over cross-validated calibrate rows "
               "and validate rows)")
    for r in cal.summary(fits):
        click.echo(f"  {r['group']:9s} {r['families']:28s} params {r['parameters']:2d}  calibrate {r['calibrate_points']:3d} "
                   f"in-sample median {r['in_sample_median']:.1%}  held-out {r['held_out_points']:3d} points "
                   f"({r['models']} models) median {r['held_out_median']:.1%} max {r['held_out_max']:.0%}")
    ref = [p for p in pts if not p.evaluable and (not families or (cal.family_of(p.hardware) and
                                                                   cal.family_of(p.hardware).head in families))]
    click.echo(f"\n{len(ref)} reference rows (shown in the CSV, not predicted)")
    if markdown:
        Path(markdown).write_text(cal.markdown(fits), encoding="utf-8")
        click.echo(f"wrote {markdown}")
    if write:
        for f in cal.write_back(fits):
            click.echo(f"wrote {f}")


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
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the engine failed (a sweep makes it an error row): one line
        click.echo(f"error: {type(e).__name__}: {e}", err=True)
        sys.exit(3)
    if not quiet:
        if not row["feasible"]:
            click.echo(f"infeasible: {row['reason']}", err=True)
        elif res is None:  # a service profile: agent tasks timed in closed form
            click.echo(f"{row['model']} (service): {row['tasks']} tasks", err=True)
        else:
            click.echo(f"{row['model']} on {row['devices']} x {row['device']} ({row['replicas']} replicas), "
                       f"{row['sim_requests']} requests simulated in {row['wall_s']:.2f} s wall "
                       f"({row['events_per_request']:.2f} events/request)", err=True)
            click.echo(f"  throughput {row['throughput_out_tok_s']:,.0f} out tok/s; per user p50 "
                       f"{row['decode_tok_s_per_user_p50']:,.1f} tok/s; TTFT p50/p99 {row['ttft_p50_s'] * 1e3:,.1f}/"
                       f"{row['ttft_p99_s'] * 1e3:,.1f} ms; E2E p99 {row['e2e_p99_s']:,.2f} s", err=True)
            click.echo(f"  ${row['cost_usd_per_mtok_out']:,.3f}/M output tokens; SLO attainment "
                       f"{row['slo_attainment']:.1%}; bottleneck {row['bottleneck']}", err=True)
        if row["feasible"] and "tasks" in row:
            click.echo(f"  tasks: p50 {row['task_p50_s']:,.1f} s, p99 {row['task_p99_s']:,.1f} s, "
                       f"{row['tasks_per_hour']:,.1f}/hour, {row['compactions_per_task']:.2f} compactions each; "
                       f"time: tool {row['share_tool']:.0%}, queue {row['share_queue']:.0%}, prefill "
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
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Worker processes (default: all cores; with --executor dask and no scheduler: local workers).")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: a process pool on this machine; dask: a dask.distributed cluster.")
@click.option("--scheduler", metavar="tcp://HOST:8786",
              help="Dask scheduler address (default with --executor dask: a throw-away local cluster).")
@click.option("--analytic-only", is_flag=True, help="Skip the discrete-event engine (closed-form columns only).")
@click.option("--xlsx", is_flag=True, help="Also write results.xlsx (needs the xlsx extra).")
@click.option("--fresh", is_flag=True, help="Discard points stored by an earlier (interrupted) run of this sweep.")
@click.option("--max-points", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Above this many points, ask first (or pass --yes).")
@click.option("-y", "--yes", is_flag=True, help="Run however many points the sweep expands to.")
def sweep(scenario, out, quiet, jobs, executor, scheduler, analytic_only, xlsx, fresh, max_points, yes):
    """Evaluate every point of SCENARIO's sweep. Writes results.csv, pareto.csv, best.csv and run.json;
    an interrupted sweep re-run with the same command continues where it stopped."""
    from planner.sweeps.runner import run
    from planner.plan.scenario import load
    if scheduler and executor != "dask":
        raise click.BadParameter("--scheduler needs --executor dask", param_hint="--scheduler")
    loaded = load(scenario)
    n = len(loaded.points)
    if not quiet:
        click.echo(f"{scenario}: {n} points", err=True)
    if n > max_points and not yes:
        if not sys.stdin.isatty() or not click.confirm(f"{n} points is more than {max_points}; run them all?",
                                                       err=True):
            click.echo(f"{n} points > --max-points {max_points}: pass --yes to run them", err=True)
            sys.exit(2)
    try:
        df, path = run(loaded, out, quiet, simulate=False if analytic_only else None, jobs=jobs,
                       executor=executor, scheduler=scheduler, xlsx=xlsx, fresh=fresh)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished points are stored; run the same command again to continue", err=True)
        sys.exit(130)
    except RuntimeError as e:  # a missing optional extra, an unreachable scheduler
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if not quiet:
        failed = int((df["bottleneck"] == "error").sum())
        click.echo(f"{len(df)} points ({int(df['feasible'].sum())} feasible, {int(df['slo_pass'].sum())} meet "
                   f"the SLO, {int(df['pareto'].sum())} on the Pareto front"
                   + (f", {failed} FAILED: see run.json" if failed else "") + f") -> {path}", err=True)
    click.echo(str(path / "results.csv"))


# ---------------------------------------------------------------- report
@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def report(folder):
    """Plots (PNG) and summary.md from a sweep's output FOLDER (needs the plots extra)."""
    from planner.sweeps.report import write_report
    try:
        files = write_report(Path(folder))
    except RuntimeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    for f in files:
        click.echo(str(f))


if __name__ == "__main__":
    main()
