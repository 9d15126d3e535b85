"""``plan estimate`` and ``plan size``: a configuration analytically, or the question in one command."""
from __future__ import annotations

import json
import math
import sys

import click

from planner.cli import PREC, Choice, counted, main
from planner.config.errors import beyond_window, did_you_mean
from planner.config.defaults import PREFILL_CHUNK


class Tokens(click.ParamType):
    """A token count as context windows are quoted: 8192, 32k (= 32,768), 128K."""

    name = "TOKENS"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from planner.config.units import parse_tokens
        try:
            return parse_tokens(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Duration(click.ParamType):
    """Seconds, with or without a unit: 3, 3s, "3 s", 500ms."""

    name = "SECONDS"

    def convert(self, value, param, ctx):
        from planner.config.units import UnitError, parse
        try:
            v = parse(str(value), "seconds")
        except UnitError as e:
            self.fail(f"{e} (e.g. 3s, 500ms)", param, ctx)
        if v <= 0:
            self.fail("must be > 0", param, ctx)
        return v


# ---------------------------------------------------------------- estimate
@main.command()
@click.option("--model", "model_name", required=True, help="Model name (plan list models) or YAML path.")
@click.option("--hardware", "hw_name", required=True, help="Hardware name (plan list hardware) or YAML path.")
@click.option("--count", type=click.IntRange(min=1), help="Devices in the pipeline; default: fewest that fit.")
@click.option("--precision", type=PREC, default="bf16", show_default=True, help="Weight precision.")
@click.option("--kv-precision", type=PREC, help="KV-cache precision (default: weights', at least fp8).")
@click.option("--mode", type=Choice(["auto", "native", "storage"]), default="auto", show_default=True,
              help="native: compute at the precision's rate; storage: dequantise to 16-bit.")
@click.option("--context", type=Tokens(), default=8192, show_default=True,
              help="Tokens per sequence the KV must hold (32k = 32,768).")
@click.option("--batch", type=click.IntRange(min=1), help="Concurrent sequences; default: all that fit.")
@click.option("--prompt", type=Tokens(), help="Prompt tokens for TTFT (default: context - output).")
@click.option("--output", "output_tokens", type=Tokens(), default=1024, show_default=True,
              help="Output tokens per request (sets the prefill share in steady state).")
@click.option("--prefill-chunk", type=Tokens(), default=PREFILL_CHUNK, show_default=True,
              help="Prefill tokens per chunk, an engine's max batched tokens (the main job and the "
                   "calibration's serving rows use 8192). On wafers smaller chunks pipeline through the layer "
                   "regions: shorter TTFT.")
@click.option("--mla-attention", type=Choice(["dp", "tp"]), default="dp", show_default=True,
              help="GPUs serving MLA models (DeepSeek, Kimi K2): dp, each sequence's latent KV and attention "
                   "on one GPU (throughput setups); tp, heads split and the latent KV replicated (engines' "
                   "min-latency setting). No effect elsewhere.")
@click.option("--gqa-attention", type=Choice(["tp", "dp"]), default="tp", show_default=True,
              help="GPUs serving GQA models: tp, heads split over the group and the KV replicated beyond its "
                   "KV heads; dp, each sequence's KV and attention on one GPU with a copy of the attention "
                   "weights per GPU (TensorRT-LLM's attention DP / DEP throughput recipes for MoE models). "
                   "No effect elsewhere.")
@click.option("--bonded-layers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Bonded SRAM layers per wafer (hardware_specs/bonded-sram.yaml).")
@click.option("--software", help="Software profile of the hardware spec (e.g. launch-2024-08).")
@click.option("--spec-decode", nargs=2, type=(click.IntRange(1, 16), click.FloatRange(0, 1, min_open=True, max_open=True)),
              help="Speculative decoding: DRAFT_TOKENS ACCEPTANCE_RATE.")
@click.option("--draft-layers", type=click.IntRange(1, 1000),
              help="With --spec-decode, a separate draft model: its layers, each drafted token crossing them "
                   "at the main model's mean per-layer latency (default 1: the model's own MTP head).")
@click.option("--draft-params", metavar="PARAMS",
              help="With --spec-decode and --draft-layers, a separate draft model's parameters, held next to "
                   "the weights (e.g. 1.2B; 0: a draft with no weights of its own; default: the model's own "
                   "draft head).")
@click.option("--allow-beyond-window", is_flag=True,
              help="Accept a context longer than the model's context window.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def estimate(model_name, hw_name, count, precision, kv_precision, mode, context, batch, prompt, output_tokens,
             prefill_chunk, mla_attention, gqa_attention, bonded_layers, software, spec_decode, draft_layers, draft_params,
             allow_beyond_window, as_json):
    """Answer analytically: fit, devices, stages, speeds, TTFT, bottleneck, $/h, $/M tokens, kW."""
    from planner import catalog
    from planner.config.schema import BondedSramSpec, Economics
    from planner.physics.hardware import Infeasible, bonded_misfit
    from planner.physics.point import Config, build_point
    from planner.plan.economics import costs
    from planner.plan.estimate import estimate as run_estimate
    model = catalog.load_model(model_name)
    hw = catalog.load_hardware(hw_name)
    if isinstance(hw, BondedSramSpec):
        raise click.BadParameter(f"'{hw_name}' is a bonded-SRAM option; use --bonded-layers", param_hint="--hardware")
    if (why := beyond_window(context, model)) and not allow_beyond_window:
        raise click.BadParameter(why + "; add --allow-beyond-window to plan it anyway",
                                 param_hint="--context")
    if output_tokens >= context:
        raise click.BadParameter(f"output tokens ({output_tokens:,}) must be < context ({context:,}): lower "
                                 "--output or raise --context", param_hint="--output")
    if prompt is not None and prompt + output_tokens > context:
        raise click.BadParameter(f"prompt + output ({prompt + output_tokens:,}) > context ({context:,}), the tokens "
                                 "the KV holds: raise --context or lower --prompt or --output", param_hint="--prompt")
    if software is not None and software not in hw.software_profiles:
        known = ", ".join(sorted(hw.software_profiles)) or "none"
        raise click.BadParameter(f"{hw.name} has no software profile {software!r} (known: {known})"
                                 + did_you_mean(software, hw.software_profiles), param_hint="--software")
    bonded = catalog.load_hardware("bonded-sram") if bonded_layers else None
    if why := bonded_misfit(hw, bonded, bonded_layers):
        raise click.BadParameter(why, param_hint="--bonded-layers")
    sd = _spec_decode(spec_decode, draft_layers, draft_params)
    if sd is not None and sd.draft_params is None and model.draft is None:
        raise click.BadParameter(f"{model.name} has no draft (MTP) head: for a separate draft model add "
                                 "--draft-params (e.g. 1.2B) and --draft-layers", param_hint="--spec-decode")
    cfg = Config(model, hw, count=count, weights=precision, kv=kv_precision, mode=mode, context=context,
                 prompt=prompt, output=output_tokens, batch=batch, prefill_chunk=prefill_chunk, bonded=bonded,
                 bonded_layers=bonded_layers, software=software, spec_decode=sd, mla_attention=mla_attention,
                 gqa_attention=gqa_attention)
    try:
        built = build_point(cfg)
    except Infeasible:
        built = None  # the estimate says why
    est = run_estimate(cfg, built)
    row = est.as_dict()
    row.update(prefill_chunk_tokens=prefill_chunk, mla_attention=mla_attention, gqa_attention=gqa_attention,
               spec_decode=sd.model_dump() if sd else None)
    if est.fits:  # one replica at this batch, the default economics (README "Economics")
        c = costs(built.device, est.devices, Economics(), est.aggregate_tok_s, est.input_tok_s,
                  est.aggregate_tok_s / max(cfg.output, 1), activity=est.activity)
        row.update(usd_per_h=c.usd_per_h, cost_usd_per_mtok_out=c.cost_usd_per_mtok_out,
                   cost_usd_per_mtok_in=c.cost_usd_per_mtok_in, cost_usd_per_mtok_blended=c.cost_usd_per_mtok_blended,
                   capex_usd=c.capex_usd, power_kw=c.power_kw, power_kw_nameplate=c.power_kw_nameplate,
                   facility_power_kw=c.facility_power_kw, power_source=c.power_source)
    if as_json:
        click.echo(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                               for k, v in row.items()}, indent=2))
    else:
        _print_estimate(row)
    if not row["fits"]:
        sys.exit(1)


def _spec_decode(spec_decode, draft_layers, draft_params):
    """The SpecDecode the options describe (None without --spec-decode)."""
    from pydantic import ValidationError

    from planner.config.load import message
    from planner.config.schema import SpecDecode
    if spec_decode is None:
        if draft_layers is not None or draft_params is not None:
            raise click.BadParameter("needs --spec-decode DRAFT_TOKENS ACCEPTANCE_RATE",
                                     param_hint="--draft-layers" if draft_layers is not None else "--draft-params")
        return None
    if draft_params is not None and draft_layers is None:  # else a 1-layer draft would be assumed unseen
        raise click.BadParameter("a separate draft model needs its depth too: add --draft-layers",
                                 param_hint="--draft-params")
    extra = {k: v for k, v in (("draft_layers", draft_layers), ("draft_params", draft_params)) if v is not None}
    try:
        return SpecDecode(draft_tokens=spec_decode[0], acceptance_rate=spec_decode[1], **extra)
    except ValidationError as e:
        err = e.errors()[0]
        hint = " (e.g. 1.2B, 1.2G, 1.2e9)" if err["type"] == "value_error" else ""
        msg = message(err)
        msg = msg if repr(draft_params) in msg else f"{draft_params!r}: {msg}"
        raise click.BadParameter(msg + hint, param_hint="--draft-params") from None


def _print_estimate(r: dict) -> None:
    from planner.config.schema import Economics
    from planner.config.units import fmt_bytes
    click.echo(f"{r['model']} on {r['hardware']}  weights {r['weights_precision']}  KV {r['kv_precision']}  "
               f"context {r['context_tokens']:,}")
    if "devices" in r:
        systems = f" ({counted(r['systems'], 'system')})" if r['systems'] != r['devices'] else ""  # priced per device
        click.echo(f"  devices            {r['devices']}{systems}, {counted(r['stages'], 'pipeline stage')}, "
                   f"TP {r['tp']}, {r['layers_per_stage']} layers/stage, {r['layers_split']} layers split")
        click.echo(f"  weights            {fmt_bytes(r['weight_bytes'])}  (usable {fmt_bytes(r['capacity_bytes_per_device'])}/device)")
        click.echo(f"  KV                 {r['kv_bytes_per_token']:,.0f} B/token, {fmt_bytes(r['kv_bytes_per_seq'])}/sequence")
        click.echo(f"  max concurrent     {counted(r['max_concurrent_sequences'], 'sequence')}")
    if not r["fits"]:
        click.echo(f"  DOES NOT FIT: {r['reason']}")
        return
    click.echo(f"  batch              {r['batch']:,} ({counted(r['microbatches'], 'micro-batch', 'micro-batches')}), "
               f"compute {r['compute_mode']}")
    lo, hi = r["speed_band_low"], r["speed_band_high"]
    click.echo(f"  decode             {r['decode_tok_s_per_user']:,.1f} tok/s per user "
               f"(band {r['decode_tok_s_per_user'] * lo:,.1f}-{r['decode_tok_s_per_user'] * hi:,.1f}; "
               f"single stream {r['single_stream_tok_s']:,.1f})")
    click.echo(f"  aggregate          {r['aggregate_tok_s']:,.0f} output tok/s "
               f"(band {r['aggregate_tok_s'] * lo:,.0f}-{r['aggregate_tok_s'] * hi:,.0f}), "
               f"{r['input_tok_s']:,.0f} input tok/s")
    click.echo(f"  band from          {r['speed_band_source']}" + ("  [HYPOTHETICAL hardware]" if r["hypothetical"] else ""))
    click.echo(f"  TTFT               {r['ttft_s'] * 1e3:,.1f} ms for {r['prompt_tokens']:,} prompt tokens "
               "(idle replica; engine time, before a serving stack's own)")
    click.echo(f"  bottleneck         {r['bottleneck']}")
    e = Economics()
    click.echo(f"  cost               ${r['usd_per_h']:,.2f}/h, ${r['cost_usd_per_mtok_out']:,.3f} per M output tokens "
               f"(capex ${r['capex_usd']:,.0f} over {e.amortisation_years:g} years, ${e.usd_per_kwh:g}/kWh, "
               f"PUE {e.pue:g}; the $/h split between output and input tokens at "
               f"{e.price_ratio.output:g}:{e.price_ratio.input:g} per token)")
    click.echo(f"  power              {r['power_kw']:,.1f} kW at the wall at this load (activity "
               f"{r['activity']:.2f}; nameplate {r['power_kw_nameplate']:,.1f} kW), {r['facility_power_kw']:,.1f} kW "
               f"with PUE ({r['power_source']})")




# ---------------------------------------------------------------- size
@main.command()
@click.option("--model", "model_name", required=True,
              help="Model: catalog name, Hugging Face id (deepseek-ai/DeepSeek-R1) or YAML path.")
@click.option("--users", type=click.IntRange(min=1), required=True, help="Concurrent users to serve.")
@click.option("--tok-s-per-user", type=click.FloatRange(min=0, min_open=True),
              help="SLO: median decode speed per user (tok/s).")
@click.option("--ttft-p99", type=Duration(), help="SLO: 99th-percentile time to first token (3s, 500ms).")
@click.option("--hardware", "hw_names", default="cs3,b200,gb200-nvl72", show_default=True,
              help="Comma-separated hardware names (plan list hardware).")
@click.option("--context", type=Tokens(), default=8192, show_default=True,
              help="Tokens per sequence (prompt + output; 32k = 32,768).")
@click.option("--output", "output_tokens", type=Tokens(), default=1024, show_default=True,
              help="Output tokens per request.")
@click.option("--precision", "precisions", help="Comma-separated weight precisions (default: per hardware, "
                                                 "wafers bf16,fp8,fp4; GPUs fp8,nvfp4 or bf16,fp8).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Worker processes (default: all cores).")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Output folder (default outputs/size-...).")
@click.option("--analytic-only", is_flag=True, help="Closed form only: seconds instead of minutes, no queueing.")
@click.option("--allow-beyond-window", is_flag=True,
              help="Accept a context longer than the model's context window.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def size(model_name, users, tok_s_per_user, ttft_p99, hw_names, context, output_tokens, precisions, jobs, out,
         analytic_only, allow_beyond_window, quiet):
    """How many devices of which hardware serve USERS at the SLO, ranked by $/M output tokens.

    Builds a sweep (hardware x precision x device counts, capacity search at the SLO), runs it
    like `plan sweep`, prints the ranked answer and writes it to answer.csv next to results.csv."""
    from planner.sweeps import size as sizing
    from planner.sweeps.answer import text
    split = lambda v: [x.strip() for x in v.split(",") if x.strip()] if v else None  # noqa: E731
    mapping = sizing.scenario(model_name, users, tok_s_per_user, ttft_p99, split(hw_names), context,
                              output_tokens, split(precisions), allow_beyond_window)
    n = sum(len(g["axes"]["deployment.count"]) for g in mapping["sweep"])
    if not quiet:
        click.echo(f"{mapping['description']}: {n} configurations", err=True)
    try:
        ans, _, folder = sizing.run(mapping, out, quiet=quiet, jobs=jobs, simulate=False if analytic_only else None)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished points are stored; run the same command again to continue", err=True)
        sys.exit(130)
    click.echo(text(ans, mapping["slo"]).rstrip())
    click.echo(str(folder / "answer.csv"))
