"""The ``plan`` command: parses arguments and calls the library; nothing else lives here.

This module holds the group and the catalog commands (validate, list, show); ``ask`` has
estimate and size, ``sweeping`` run, sweep and report, ``fit`` calibrate.

Every user mistake (bad YAML, unknown name, invalid value) exits with code 2 and one line
per problem on stderr, never a traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# One BLAS thread unless the user asks for more: the planner's arrays are small (stages x layers),
# so OpenBLAS's thread pool only costs start-up (its threads spin up on numpy's import: ~30-50 ms
# of CPU on 2 cores) and would compete with a sweep's worker processes, which inherit this.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from planner.version import __version__
from planner.config.errors import ConfigError, did_you_mean
from planner.config.precisions import PRECISIONS

# Imports that cost time (pydantic and the schema, numpy, pandas) happen inside the commands that
# need them: ``plan --help`` reads only this package, ``plan estimate`` no pandas.


class Choice(click.Choice):
    """click.Choice whose error also says which choice was most likely meant (exit 2)."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as e:
            hint = did_you_mean(value, self.choices)
            if hint:
                e.message = e.message.rstrip(".") + hint
            raise


PREC = Choice(PRECISIONS)


def counted(count, one: str, many: str | None = None) -> str:
    """"1 system", "4 systems": a count with its noun in the right number."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


class _Group(click.Group):
    """Turns ConfigError anywhere below into located lines and exit code 2, and an OSError
    (an output that cannot be written, a locked folder, an unreachable scheduler) into one
    line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            for p in e.problems:
                click.echo(str(p), err=True)
            ctx.exit(2)
        except BrokenPipeError:  # the reader stopped (`plan list models | head`): no error to tell
            _quiet_stdout()
            ctx.exit(141)  # 128 + SIGPIPE, as a tool killed by the broken pipe exits
        except OSError as e:
            click.echo(f"error: {_os_line(e)}", err=True)
            ctx.exit(1)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail on the closed
    pipe again (Python's documented way: "Note on SIGPIPE" in the signal module)."""
    import os
    import sys
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _os_line(e: OSError) -> str:
    """One line for an OSError: ours (their own str) say it all; a raw one names its file."""
    if type(e).__str__ is not OSError.__str__ or not e.strerror:
        return str(e)
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror}"


def _version(ctx, _param, value):
    """--version: also says whether the simulator runs compiled (imported only when asked)."""
    if not value or ctx.resilient_parsing:
        return
    from planner.sim import describe
    click.echo(f"plan, version {__version__}; simulator {describe()}")
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version (and whether the simulator runs compiled) and exit.")
def main():
    """Plan wafer-scale (and GPU) LLM inference: memory fit, speed, latency, cost."""


# ---------------------------------------------------------------- validate
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files):
    """Check scenario (or hardware/model spec) files; exit 2 with FILE:LINE:COL lines on error."""
    from planner import catalog
    from planner.config.yamlio import load_file
    from planner.plan.scenario import expand, load
    bad = False
    for f in files:
        try:
            kind = _file_kind(load_file(f, keep_going=True).data, Path(f))  # its problems: below
            if kind == "hardware":
                spec = catalog.load_hardware(f)
                click.echo(f"{f}: ok ({getattr(spec, 'layout', spec.kind)} spec)")
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
    from planner import catalog
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
@click.argument("what", type=Choice(["hardware", "models"]))
def list_(what):
    """Show the catalog with key figures."""
    from planner import catalog
    from planner.config.schema import BondedSramSpec
    from planner.config.units import fmt_bytes, fmt_rate
    if what == "hardware":
        rows = [("name", "kind", "memory", "mem bw", "16-bit", "fp8", "fp4", "io", "power/sys", "capex/sys", "")]
        for h in catalog.all_hardware():
            if isinstance(h, BondedSramSpec):
                rows.append((h.name, "option", f"+{fmt_bytes(h.bytes_per_layer)}/layer", fmt_rate(h.bandwidth, "B/s"),
                             "", "", "", "", f"+{h.power_w_per_layer / 1e3:.3g} kW", f"+${h.capex_usd_per_layer:,.0f}",
                             "hypothetical"))
                continue
            c = h.compute.peaks()
            rows.append((h.name, h.layout, fmt_bytes(h.memory.capacity), fmt_rate(h.memory.bandwidth, "B/s"),
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
@click.argument("what", type=Choice(["hardware", "model"]))
@click.argument("name")
def show(what, name):
    """Print one spec, resolved (inheritance applied), with its sources."""
    import yaml
    from planner import catalog
    spec = catalog.load_hardware(name) if what == "hardware" else catalog.load_model(name)
    path = catalog.find("hardware" if what == "hardware" else "model", name)
    click.echo(f"# {path}")
    click.echo(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False).rstrip())


# the other commands register themselves on ``main`` (one module per family of commands)
from planner.cli import ask, fit, sweeping  # noqa: E402,F401
