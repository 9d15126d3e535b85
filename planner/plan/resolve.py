"""A validated point's names resolved to specs (model, hardware, bonded option) and the checks
that need them, every independent problem collected so that one run lists them all."""
from __future__ import annotations

from pathlib import Path

from planner import catalog
from planner.config.errors import ConfigError, Problem, beyond_window, did_you_mean
from planner.config.schema import MAX_REQUESTS, BondedSramSpec, HardwareSpec, Scenario
from planner.config.yamlio import Located
from planner.physics.model import COMPUTE_CLASS
from planner.physics.point import Config

PREFILL_HW = ("deployment", "disaggregated", "prefill", "hardware")


def _window_problems(sc: Scenario, model, loc: Located) -> list[Problem]:
    """A context beyond the model's window is refused unless ``workload.allow_beyond_window``;
    a closed loop must fit the simulator's request cap (it runs at least 3 x users)."""
    out, w = [], sc.workload
    if (why := beyond_window(w.context, model)) and not w.allow_beyond_window:
        key = "context_tokens" if w.context_tokens is not None else "prompt_tokens"
        out.append(loc.problem(("workload", key), f"a context of {why}; set "
                               "workload.allow_beyond_window: true to plan it anyway", getattr(w, key), True))
    arr = w.arrival
    users = (arr.users if arr is not None and arr.process == "closed" else None) or (
        w.concurrent_users if arr is None or arr.process == "closed" else None)
    if w.simulate and w.agentic is None and users and 3 * users > MAX_REQUESTS:
        key = ("workload", "arrival", "users") if arr is not None and arr.users else ("workload", "concurrent_users")
        out.append(loc.problem(key, f"a closed loop of {users:,} users simulates at least 3 x users "
                               f"requests, above the cap of {MAX_REQUESTS:,} (set workload.simulate: "
                               "false for the analytic figures)", users, True))
    return out


def _hardware(sc: Scenario, base: Path, loc: Located, problems: list[Problem]):
    """(device spec, bonded SRAM spec or None); None for the device when it has a problem."""
    hw = _named(catalog.load_hardware, problems, sc.deployment.hardware, base, loc, ("deployment", "hardware"))
    if hw is not None and not isinstance(hw, HardwareSpec):
        problems.append(loc.problem(("deployment", "hardware"), f"'{hw.name}' is a {hw.kind} option, "
                                    "not a device (use hardware.bonded_sram)", sc.deployment.hardware, True))
        hw = None
    bonded, bs = None, sc.hardware.bonded_sram
    if bs.layers:
        spec = _named(catalog.load_hardware, problems, bs.spec, base, loc, ("hardware", "bonded_sram", "spec"))
        if spec is not None and not isinstance(spec, BondedSramSpec):
            problems.append(loc.problem(("hardware", "bonded_sram", "spec"), "not a bonded_sram spec", bs.spec, True))
        elif spec is not None:
            upd = {k: v for k, v in (("bytes_per_layer", bs.bytes_per_layer), ("bandwidth", bs.bandwidth)) if v}
            bonded = spec.model_copy(update=upd)
    sw = sc.deployment.software
    if hw is not None and sw is not None and sw not in hw.software_profiles:
        known = ", ".join(sorted(hw.software_profiles)) or "none"
        problems.append(loc.problem(("deployment", "software"), f"{hw.name} has no software profile of that "
                                    f"name (known: {known})" + did_you_mean(sw, hw.software_profiles), sw, True))
    return hw, bonded


def _named(load, problems: list[Problem], *args):
    """``load(*args)``, or None with its problems added to ``problems``."""
    try:
        return load(*args)
    except ConfigError as e:
        problems.extend(e.problems)
        return None


def _mode_problems(sc: Scenario, loc: Located) -> list[Problem]:
    """Combinations of workload, deployment and capacity search that cannot run together."""
    out, w = [], sc.workload
    if w.agentic is not None and sc.capacity.search:
        out.append(loc.problem(("capacity", "search"), "capacity search is not available for agentic "
                               "sessions (sweep the agents or the task rate instead)"))
    if w.agentic is not None and sc.service is None and sc.deployment.kv_policy != "wait":
        out.append(loc.problem(("deployment", "kv_policy"), "agentic sessions run with kv_policy wait; choose "
                               "what happens to a task's KV between its calls with "
                               "workload.agentic.kv_between_turns", sc.deployment.kv_policy, True))
    if sc.service is None and sc.capacity.search:
        if not sc.slo.targets():
            out.append(loc.problem(("capacity", "search"), "capacity search needs at least one slo target "
                                   "(ttft_p99_s, tpot_p99_s or decode_tok_s_per_user_p50)"))
        if w.arrival is not None and w.arrival.process == "trace":
            out.append(loc.problem(("capacity", "search"), "capacity search varies the arrival rate or the "
                                   "closed-loop users; a trace has neither"))
    if sc.service is None and w.demand is not None and not sc.capacity.search and w.arrival is not None \
            and w.arrival.process == "closed" and w.arrival.users is None:
        out.append(loc.problem(("workload", "demand"), "a closed loop sized by demand needs capacity.search "
                               "(it finds the users a replica carries within the SLO) or workload.arrival.users"))
    return out


def _option_problems(sc: Scenario, model, hw: HardwareSpec, bonded, loc: Located) -> list[Problem]:
    """Options the model or hardware cannot take: in a single scenario (or ``plan run``) a
    mistake in the input; a sweep point keeps them as infeasible rows."""
    out, d, bs = [], sc.deployment, sc.hardware.bonded_sram
    if bs.layers and hw.kind != "wafer":
        out.append(loc.problem(("hardware", "bonded_sram", "layers"), f"bonded SRAM layers stack on wafers; "
                               f"'{hw.name}' is a {hw.kind}", bs.layers, True))
    elif bs.layers and bonded is not None and bs.layers > bonded.max_layers:
        out.append(loc.problem(("hardware", "bonded_sram", "layers"), f"'{bonded.name}' takes at most "
                               f"{bonded.max_layers} layers", bs.layers, True))
    if d.spec_decode is not None and d.spec_decode.draft_params is None and model.draft is None:
        out.append(loc.problem(("deployment", "spec_decode"), f"{model.name} has no draft (MTP) head: set "
                               "spec_decode.draft_params (a separate draft model) or use a model with one"))
    cls = COMPUTE_CLASS[d.precision.weights]
    if d.precision.mode == "native" and cls not in hw.compute.peaks():
        out.append(loc.problem(("deployment", "precision", "mode"), f"{hw.name} has no native {cls} compute "
                               "(use mode storage or auto)", "native", True))
    return out


def to_config(base: Path, sc: Scenario, loc: Located, strict: bool = False) -> Config | None:
    """Resolve names to specs and build the analytic Config (None for a service profile:
    nothing to place); a ConfigError lists every problem found, not only the first. ``strict``
    (one scenario, not a sweep point): options the model or hardware cannot take are problems."""
    problems = _mode_problems(sc, loc)
    if sc.service is not None:
        if problems:
            raise ConfigError(problems)
        return None
    model = _named(catalog.load_model, problems, sc.model, base, loc, ("model",))
    if model is not None:
        problems += _window_problems(sc, model, loc)
    hw, bonded = _hardware(sc, base, loc, problems)
    if strict and model is not None and hw is not None:
        problems += _option_problems(sc, model, hw, bonded, loc)
    dis = sc.deployment.disaggregated
    if problems and dis is not None:  # the prefill pool's checks (plan/pools.py) need this Config
        _named(catalog.load_hardware, problems, dis.prefill.hardware, base, loc, PREFILL_HW)
    if problems:
        raise ConfigError(problems)
    w, d, bs, p = sc.workload, sc.deployment, sc.hardware.bonded_sram, sc.workload.prefix
    return Config(model=model, hardware=hw, count=d.count, weights=d.precision.weights, kv=d.precision.kv,
                  mode=d.precision.mode, embeddings=d.precision.embeddings, context=w.context, prompt=w.prompt,
                  output=w.output_tokens, batch=None, bonded=bonded, bonded_layers=bs.layers,
                  software=d.software, spec_decode=d.spec_decode, microbatches=d.microbatches,
                  prefill_chunk=d.prefill_chunk_tokens, cached=p.cached(w.prompt) if p else 0,
                  shared_prefix=p.cached_tokens if p and p.shared else 0, mla_attention=d.mla_attention)


# names a point's data gives whatever its other values (a bonded spec counts only with layers)
NAME_KEYS = {("model",): catalog.load_model, ("deployment", "hardware"): catalog.load_hardware,
             PREFILL_HW: catalog.load_hardware}


def name_problems(raw: dict, base: Path, loc: Located) -> list[Problem]:
    """Catalog names in a point's data (model, hardware, the prefill pool's hardware)
    when the point cannot be validated as a whole: reported with its other problems rather
    than after those are fixed."""
    out: list[Problem] = []
    for path, load in NAME_KEYS.items():
        ref = raw
        for k in path:
            ref = ref.get(k) if isinstance(ref, dict) else None
        if isinstance(ref, str):
            _named(load, out, ref, base, loc, path)
    return out
