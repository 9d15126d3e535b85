"""A validated point's names resolved to specs (model, hardware, bonded option) and the checks
that need them, every independent problem collected so that one run lists them all."""
from __future__ import annotations

from pathlib import Path

from planner import catalog
from planner.config.errors import ConfigError, Problem, beyond_window, did_you_mean
from planner.config.schema import MAX_REQUESTS, BondedSramSpec, HardwareSpec, Scenario
from planner.config.yamlio import Located
from planner.physics.point import Config, misfits

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


def device(ref: str, software: str | None, base: Path, loc: Located, at: tuple,
           problems: list[Problem]) -> HardwareSpec | None:
    """The device spec ``ref`` (set at key path ``at``) names, its ``software`` profile (at the
    sibling key ``software``) checked; None, with its problems added, when it has one. The
    decode hardware's and a disaggregated prefill pool's alike."""
    hw = _named(catalog.load_hardware, problems, ref, base, loc, at)
    if hw is not None and not isinstance(hw, HardwareSpec):
        problems.append(loc.problem(at, f"'{hw.name}' is a {hw.kind} option, not a device (use "
                                    "hardware.bonded_sram)", ref, True))
        return None
    if hw is not None and software is not None and software not in hw.software_profiles:
        known = ", ".join(sorted(hw.software_profiles)) or "none"
        problems.append(loc.problem(at[:-1] + ("software",), f"{hw.name} has no software profile of that "
                                    f"name (known: {known})" + did_you_mean(software, hw.software_profiles),
                                    software, True))
    return hw


def _hardware(sc: Scenario, base: Path, loc: Located, problems: list[Problem]):
    """(device spec, bonded SRAM spec or None); None for the device when it has a problem."""
    hw = device(sc.deployment.hardware, sc.deployment.software, base, loc, ("deployment", "hardware"), problems)
    bonded, bs = None, sc.hardware.bonded_sram
    if bs.layers:
        spec = _named(catalog.load_hardware, problems, bs.spec, base, loc, ("hardware", "bonded_sram", "spec"))
        if spec is not None and not isinstance(spec, BondedSramSpec):
            problems.append(loc.problem(("hardware", "bonded_sram", "spec"), "not a bonded_sram spec", bs.spec, True))
        elif spec is not None:
            upd = {k: v for k, v in (("bytes_per_layer", bs.bytes_per_layer), ("bandwidth", bs.bandwidth)) if v}
            bonded = spec.model_copy(update=upd)
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


def to_config(base: Path, sc: Scenario, loc: Located, strict: bool = False) -> Config | None:
    """Resolve names to specs and build the analytic Config (None for a service profile:
    nothing to place); a ConfigError lists every problem found, not only the first. ``strict``
    (one scenario, not a sweep point): options the model or hardware cannot take
    (point.misfits) are problems too, once the names resolve."""
    problems = _mode_problems(sc, loc)
    if sc.service is not None:
        if problems:
            raise ConfigError(problems)
        return None
    model = _named(catalog.load_model, problems, sc.model, base, loc, ("model",))
    if model is not None:
        problems += _window_problems(sc, model, loc)
    hw, bonded = _hardware(sc, base, loc, problems)
    dis = sc.deployment.disaggregated
    if problems and dis is not None:  # the prefill pool's own checks (plan/pools.py) need this Config
        device(dis.prefill.hardware, dis.prefill.software, base, loc, PREFILL_HW, problems)
    if problems:
        raise ConfigError(problems)
    w, d, bs, p = sc.workload, sc.deployment, sc.hardware.bonded_sram, sc.workload.prefix
    cfg = Config(model=model, hardware=hw, count=d.count, weights=d.precision.weights, kv=d.precision.kv,
                  mode=d.precision.mode, embeddings=d.precision.embeddings, context=w.context, prompt=w.prompt,
                  output=w.output_tokens, batch=None, bonded=bonded, bonded_layers=bs.layers,
                  software=d.software, spec_decode=d.spec_decode, microbatches=d.microbatches,
                  prefill_chunk=d.prefill_chunk_tokens, cached=p.cached(w.prompt) if p else 0,
                  shared_prefix=p.cached_tokens if p and p.shared else 0, mla_attention=d.mla_attention,
                  gqa_attention=d.gqa_attention)
    if strict and (found := misfits(cfg)):
        raise ConfigError([_misfit(cfg, option, why, loc) for option, why in found])
    return cfg


def _misfit(cfg: Config, option: str, why: str, loc: Located) -> Problem:
    """point.misfits' finding at the scenario key that sets the option, with its value."""
    if option == "bonded_layers":
        return loc.problem(("hardware", "bonded_sram", "layers"), why, cfg.bonded_layers, True)
    if option == "mode":
        return loc.problem(("deployment", "precision", "mode"), why, cfg.mode, True)
    return loc.problem(("deployment", option), why)


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
