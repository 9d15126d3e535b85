"""Every results column once: (name, unit, meaning), in the order results.csv shows them.

Why one list: the CSV's column order, ``columns.md`` in every output folder, the workbook's
``columns`` sheet, the README's table and the test that every column is documented all read
it, so a column cannot appear without saying what it is and in what unit.
The answer comes first (what, how many, how fast, how soon, what it costs, what limits it),
then the swept values, then the detail.
"""
from __future__ import annotations

# (section, [(name, unit, meaning), ...]); "" unit: a name, a flag or a plain count
SECTIONS = [
    ("answer", [
        ("point", "", "row id: the point's index in the sweep (joins results, pareto, best and .points)"),
        ("model", "", "model name (catalog name or the spec's `name`)"),
        ("hardware", "", "hardware spec name (`service` for a service profile)"),
        ("weights_precision", "", "weight precision (fp16, bf16, fp8, fp4, mxfp4, nvfp4)"),
        ("kv_precision", "", "KV-cache precision"),
        ("context_tokens", "tokens", "tokens per sequence the KV is sized for"),
        ("devices", "devices", "wafers or GPUs of the whole deployment (replicas x devices_per_replica)"),
        ("replicas", "replicas", "independent copies of the model serving the target load"),
        ("throughput_source", "", "where the speed, latency and cost figures come from: sim (the simulator) "
                                  "or analytic (closed form; the simulated columns are then empty)"),
        ("decode_tok_s_per_user_p50", "tok/s", "per-user decode speed, median over simulated requests"),
        ("decode_tok_s_per_user_analytic", "tok/s", "per-user decode speed, closed form (steady state at the "
                                                    "operating batch, others' prefills interleaved)"),
        ("throughput_out_tok_s", "tok/s", "output tokens per second of the deployment (at capacity with "
                                          "`capacity.search`)"),
        ("throughput_out_tok_s_per_device", "tok/s", "throughput_out_tok_s / devices"),
        ("demand_tok_s", "tok/s", "workload.demand: the tokens/s the deployment is sized to carry within the SLO "
                                  "(of the kind demand_unit says)"),
        ("demand_unit", "", "out tok/s (output tokens) or tok/s (every token: output, fresh and cached input)"),
        ("ttft_p99_s", "s", "time to first token, 99th percentile (simulated; the engine's time: a "
                               "serving stack's HTTP, tokenisation and streaming, ~150 ms in InferenceX's "
                               "SGLang runs, are not in it)"),
        ("ttft_analytic_s", "s", "time to first token on an idle replica, closed form (engine time, as "
                                    "ttft_p99_s)"),
        ("cost_usd_per_mtok_out", "$/M tokens", "$ per million output tokens: usd_per_h split among token kinds "
                                                "by economics.price_ratio (default output 4 : input 1 : cached 0.1)"),
        ("usd_per_h", "$/h", "the deployment's cost per hour: amortised capex + energy + hosting (or rental)"),
        ("power_kw", "kW", "IT power of the deployment at the wall at the operating point, before PUE: it "
                           "follows load (idle + (load - idle) x activity, README \"Power\"); the energy in "
                           "usd_per_h is this"),
        ("bottleneck", "", "what limits speed or fit: pipeline_latency, compute, memory_bw, io_link, prefill, "
                           "sram_capacity, hbm_capacity, unsupported, service, error"),
        ("slo_pass", "", "True when every set SLO target holds (simulated percentiles, else analytic)"),
        ("feasible", "", "True when the configuration fits and runs"),
        ("reason", "", "why it is infeasible or misses the SLO (empty when it passes)"),
        ("hypothetical", "", "True for unbuilt hardware or a bonded-SRAM option: a guess, not a product"),
    ]),
    ("identity", [
        ("group", "", "sweep group the point belongs to"),
        ("pareto", "", "True on the Pareto front (lowest $/M output tokens, highest per-user speed and "
                       "throughput) among points meeting the SLO"),
    ]),
    # the swept values come here: one column per axis (see describe())
    ("configuration", [
        ("device", "", "the resolved device (with any bonded-SRAM option in its name)"),
        ("compute_mode", "", "native (computes at the weights' precision) or storage (dequantised to 16-bit)"),
        ("prompt_tokens", "tokens", "prompt length per request (a cached prefix included)"),
        ("cached_tokens", "tokens", "tokens of each prompt found cached (workload.prefix): not prefilled, "
                                    "attended to; closed form at prompt_tokens (0 without prefix caching)"),
        ("output_tokens", "tokens", "output length per request"),
        ("devices_per_replica", "devices", "wafers or GPUs per replica (pipeline length x tensor parallel)"),
        ("systems", "systems", "systems (servers, racks, CS-3 boxes) of the deployment"),
        ("stages", "stages", "pipeline stages per replica"),
        ("tp", "GPUs", "tensor-parallel width per stage"),
        ("layers_per_stage", "layers", "model layers per pipeline stage (mean)"),
        ("layers_split", "layers", "layers cut across two stages"),
        ("concurrent_users", "users", "target users in flight across replicas (open arrivals: users the "
                                      "capacity search found)"),
        ("batch_per_replica", "sequences", "sequences one replica runs at the operating point"),
        ("batch", "sequences", "batch of the analytic estimate (the operating batch, or all that fit)"),
        ("max_concurrent_sequences", "sequences", "sequences of context_tokens whose KV fits on one replica"),
        ("microbatches", "micro-batches", "micro-batches in flight in the pipeline"),
        ("weight_bytes", "B", "weight bytes of one replica (all experts resident)"),
        ("kv_bytes_per_token", "B/token", "KV bytes per token (whole model)"),
        ("kv_bytes_per_seq", "B", "KV bytes of one sequence at context_tokens (past a shared prefix)"),
        ("shared_prefix_kv_bytes", "B", "KV bytes of a prefix every request shares (workload.prefix.shared), "
                                        "held once per replica (replicas of it on GPUs included)"),
        ("capacity_bytes_per_device", "B", "usable memory per device (after the reserve, plus bonded SRAM)"),
        ("total_params", "parameters", "all parameters of the model"),
        ("active_params", "parameters", "parameters touched per token (MoE: active experts)"),
    ]),
    ("capacity at the SLO", [
        ("capacity_users", "users", "closed-loop users the deployment carries within the SLO"),
        ("capacity_req_s", "req/s", "requests/s the deployment carries within the SLO"),
        ("capacity_users_per_replica", "users", "closed-loop users one replica carries within the SLO"),
        ("capacity_req_s_per_replica", "req/s", "requests/s one replica carries within the SLO"),
        ("capacity_target", "see unit", "the target load the replicas are sized for (capacity_target_unit)"),
        ("capacity_target_unit", "", "users (closed loop), req/s (open arrivals), or the demand's out tok/s or "
                                     "tok/s (workload.demand)"),
        ("capacity_limit", "", "what bounded the search: the SLO target(s), target, kv_capacity, saturation, "
                               "search_ceiling or floor"),
        ("capacity_probes", "simulations", "simulations the capacity search ran"),
    ]),
    ("disaggregated", [  # rows of deployment.disaggregated only (plan/disagg.py, sim/disagg.py)
        ("disaggregated", "", "True: a prefill pool (prefill_hardware) in front of decode replicas (decode_hardware), "
                              "the prompt's KV moved between them; `hardware` reads prefill+decode, `devices` "
                              "counts both pools, `replicas` and `devices_per_replica` are the decode pool's"),
        ("prefill_hardware", "", "hardware of the prefill pool"),
        ("decode_hardware", "", "hardware of the decode pool"),
        ("prefill_replicas", "replicas", "prefill replicas (sized for the prompt load at slo.ttft_p99_s, or set)"),
        ("prefill_devices_per_replica", "devices", "devices per prefill replica"),
        ("prefill_devices", "devices", "devices of the prefill pool"),
        ("decode_devices", "devices", "devices of the decode pool (replicas x devices_per_replica)"),
        ("prefill_precision", "", "weights/KV precision of the prefill pool (KV goes on the wire at kv_precision)"),
        ("prefill_s_per_prompt", "s", "seconds a prefill replica is busy per prompt, prompts back to back"),
        ("prefill_ttft_analytic_s", "s", "one prompt's prefill on an idle prefill replica, closed form"),
        ("prefill_load", "share", "requests/s x prefill_s_per_prompt / prefill_replicas (simulated rate where "
                                  "the simulator ran)"),
        ("kv_transfer_bytes_per_seq", "B", "one prompt's KV on the wire (the decode pool's bytes of the prompt)"),
        ("kv_path_bytes_per_s", "B/s", "one transfer alone: the slowest of the prefill replica's NICs, the "
                                       "decode replica's NICs and one sequence's share (io.bandwidth per device)"),
        ("kv_transfer_analytic_s", "s", "kv_transfer_bytes_per_seq / kv_path_bytes_per_s"),
        ("kv_transfer_p50_s", "s", "prompt KV transfer, start to last byte, median (simulated; transfers share the "
                                   "links)"),
        ("kv_transfer_p99_s", "s", "prompt KV transfer, 99th percentile"),
        ("handoff_p50_s", "s", "first token to joining a decode batch (decode admission wait + transfer + the "
                               "round boundary), median; per-user speed counts it"),
        ("handoff_p99_s", "s", "first token to joining a decode batch, 99th percentile"),
        ("kv_ingress_util", "share", "decode replicas' NICs busy with prompt KV: bytes in / (capacity x time)"),
        ("prefill_util_max", "share", "prefill pool: busiest stage's busy share of simulated time, mean over "
                                      "prefill replicas (0-1)"),
    ]),
    ("load per replica", [
        ("throughput_req_s_per_replica", "req/s", "requests/s each replica carried (throughput_req_s / replicas)"),
        ("throughput_out_tok_s_per_replica", "tok/s", "output tok/s each replica carried"),
        ("throughput_in_tok_s_per_replica", "tok/s", "fresh (prefilled) input tok/s each replica carried"),
        ("throughput_cached_in_tok_s_per_replica", "tok/s", "cached input tok/s each replica carried"),
        ("users_per_replica", "users", "users each replica served: closed loops, its users (thinking ones "
                                       "included); open arrivals, the requests in it (Little's law: rate x time "
                                       "in the system); analytic rows, the operating batch"),
    ]),
    ("simulated", [
        ("throughput_in_tok_s", "tok/s", "fresh (prefilled) input tokens per second of the deployment"),
        ("throughput_cached_in_tok_s", "tok/s", "input tokens per second of the deployment served from a cached "
                                                "prefix (not prefilled; agent tasks: their kept context)"),
        ("throughput_req_s", "req/s", "requests finished per second by the deployment (simulated; analytic: "
                                      "output rate / output tokens)"),
        ("served_to_offered", "share", "simulated open queue: requests cleared / requests arrived per second "
                                       "(below 1: overloaded, the queue grows)"),
        ("stable", "", "False when a simulated open queue is overloaded (it then fails the SLO and is never "
                       "best or on the Pareto front)"),
        ("decode_tok_s_per_user_p10", "tok/s", "per-user decode speed, 10th percentile"),
        ("decode_tok_s_per_user_mean", "tok/s", "per-user decode speed, mean"),
        ("decode_tok_s_per_user_time_avg", "tok/s", "per-user decode speed averaged over decoding time: tokens "
                                                    "after the first / seconds from first to last token, summed "
                                                    "over requests (a stalled request counts for as long as it "
                                                    "lasts); kv_policy offload, swap, preempt only"),
        ("ttft_p50_s", "s", "time to first token, median"),
        ("ttft_p90_s", "s", "time to first token, 90th percentile"),
        ("ttft_max_s", "s", "time to first token, worst"),
        ("tpot_p50_s", "s", "time per output token after the first, median"),
        ("tpot_p90_s", "s", "time per output token, 90th percentile"),
        ("tpot_p99_s", "s", "time per output token, 99th percentile"),
        ("tpot_max_s", "s", "time per output token, worst"),
        ("e2e_p50_s", "s", "request latency, arrival to last token, median"),
        ("e2e_p90_s", "s", "request latency, 90th percentile"),
        ("e2e_p99_s", "s", "request latency, 99th percentile"),
        ("e2e_max_s", "s", "request latency, worst"),
        ("queue_p50_s", "s", "wait before admission, median"),
        ("queue_p90_s", "s", "wait before admission, 90th percentile"),
        ("queue_p99_s", "s", "wait before admission, 99th percentile"),
        ("queue_max_s", "s", "wait before admission, worst"),
        ("slo_attainment", "share", "share of measured requests meeting every SLO target (0-1)"),
        ("goodput_req_s", "req/s", "requests/s of the deployment that met the SLO (simulated)"),
        ("goodput_out_tok_s", "tok/s", "output tok/s of the deployment from requests that met the SLO (simulated)"),
        ("stage_util_max", "share", "busiest pipeline stage's busy share of simulated time (0-1)"),
        ("stage_util_mean", "share", "mean pipeline stage busy share (0-1)"),
        ("kv_occupancy_avg", "share", "KV memory in use, time average, share of KV capacity (0-1)"),
        ("kv_occupancy_peak", "share", "KV memory in use, peak, share of KV capacity (0-1)"),
        ("link_util_max", "share", "busiest inter-stage link's busy share (0-1)"),
        ("offchip_transfer_util", "share", "off-chip link busy share for swap or offload (0-1)"),
        ("preemptions", "events", "sequences evicted and recomputed (kv_policy preempt)"),
        ("swaps", "events", "sequences swapped out over the off-chip link (kv_policy swap)"),
        ("sim_requests", "requests", "requests simulated (the last probe of a capacity search)"),
        ("sim_time_s", "s", "simulated time span"),
        ("events_per_request", "events", "simulator events per request (engine cost)"),
    ]),
    ("agent tasks", [
        ("tasks", "tasks", "agent tasks simulated"),
        ("task_p50_s", "s", "task duration, median"),
        ("task_p90_s", "s", "task duration, 90th percentile"),
        ("task_p99_s", "s", "task duration, 99th percentile"),
        ("task_mean_s", "s", "task duration, mean"),
        ("tasks_per_hour", "tasks/h", "tasks finished per hour"),
        ("turns_per_task", "turns", "model calls per task (compactions not counted)"),
        ("compactions_per_task", "calls", "compaction calls per task"),
        ("share_tool", "share", "share of all task time in tool calls (a CPU running them)"),
        ("share_tool_wait", "share", "share of all task time waiting for a free CPU (workload.agentic.cpus)"),
        ("share_overhead", "share", "share of all task time in per-call client/API overhead (call_overhead_s)"),
        ("share_queue", "share", "share of all task time waiting for a replica"),
        ("share_prefill", "share", "share of all task time in prefill"),
        ("share_decode", "share", "share of all task time in decode"),
        ("share_compaction", "share", "share of all task time in compaction calls"),
        ("share_kv_transfer", "share", "share of all task time moving KV over the off-chip link"),
        ("kv_evictions", "events", "kept KV evicted to admit other work"),
        ("cost_usd_per_task", "$", "$ per task: the deployment's $/h over tasks per hour (or the service's "
                                   "token prices)"),
    ]),
    ("analytic", [
        ("single_stream_tok_s", "tok/s", "decode speed of one sequence alone, closed form"),
        ("tpot_analytic_s", "s", "time per output token, closed form (1 / per-user speed)"),
        ("aggregate_tok_s_analytic", "tok/s", "output tok/s of the deployment at the operating batch, closed form"),
        ("capacity_tok_s_analytic", "tok/s", "output tok/s of the deployment at the largest batch that fits"),
        ("input_tok_s_analytic", "tok/s", "fresh input tok/s of the deployment at the operating batch, closed form"),
        ("cached_input_tok_s_analytic", "tok/s", "cached input tok/s of the deployment at the operating batch, "
                                                 "closed form"),
        ("accepted_tokens_per_step", "tokens", "tokens accepted per decode step (1 without speculative decoding)"),
        ("prefill_share", "share", "share of a steady-state round spent on others' prefill (0-1)"),
        ("round_s", "s", "steady-state round time with prefill interleaved"),
        ("decode_round_s", "s", "pure decode round time"),
        ("token_latency_s", "s", "one token's trip through every stage"),
        ("cycle_s", "s", "busiest stage's occupancy per round (all micro-batches)"),
        ("time_pipeline_latency_s", "s", "round time in fixed latencies (per-layer, hops, step overhead); the time_* parts add up to round_s: a token's trip by cause, or the busiest stage's cycle when the round is throughput-bound"),
        ("time_io_link_s", "s", "round time on the inter-device links"),
        ("time_compute_s", "s", "round time bound by compute"),
        ("time_memory_bw_s", "s", "round time bound by memory bandwidth"),
        ("time_prefill_s", "s", "round time in amortised prefill passes (GPUs; a wafer's prefill fills its bubbles and counts as compute or memory)"),
    ]),
    ("bands", [
        ("decode_tok_s_per_user_low", "tok/s", "per-user speed at the slow end of the hardware's band"),
        ("decode_tok_s_per_user_high", "tok/s", "per-user speed at the fast end of the band"),
        ("throughput_out_tok_s_low", "tok/s", "deployment throughput at the slow end of the band"),
        ("throughput_out_tok_s_high", "tok/s", "deployment throughput at the fast end of the band"),
        ("cost_usd_per_mtok_out_low", "$/M tokens", "$/M output tokens with the fast end and low capex"),
        ("cost_usd_per_mtok_out_high", "$/M tokens", "$/M output tokens with the slow end and high capex"),
        ("speed_band_low", "x", "multiplier on speed, slow end (held-out calibration spread x clock range)"),
        ("speed_band_high", "x", "multiplier on speed, fast end"),
        ("speed_band_source", "", "where the band comes from"),
    ]),
    ("money and power", [
        ("capex_usd", "$", "capital cost of the deployment at the economics.capex choice"),
        ("capex_usd_low", "$", "capital cost, low end of the spec's range"),
        ("capex_usd_high", "$", "capital cost, high end of the spec's range"),
        ("capex_usd_per_h", "$/h", "capex amortised per hour (or the rental rate)"),
        ("facility_power_kw", "kW", "power_kw x PUE (at the operating point)"),
        ("power_kw_nameplate", "kW", "IT power the deployment's systems are rated for (nameplate, before PUE): "
                                     "what a facility provisions; hosting is billed on it"),
        ("activity", "share", "u in power = idle + (load - idle) x u: the devices' compute-busy time plus "
                              "memory_share x memory-only time over wall time, integrated over the simulated run "
                              "(else activity_analytic), device-weighted across stages (0-1)"),
        ("activity_analytic", "share", "the same activity in the closed-form steady round at the operating batch"),
        ("power_source", "", "how sure the spec's idle and load power are (its confidence labels; 'assumption' "
                             "where no figure is published); 'nameplate' when the spec gives none (flat power)"),
        ("cost_usd_per_mtok_in", "$/M tokens", "$ per million fresh (prefilled) input tokens, by the price ratio"),
        ("cost_usd_per_mtok_cached_in", "$/M tokens", "$ per million input tokens served from a cached prefix, "
                                                      "by the price ratio"),
        ("cost_usd_per_mtok_blended", "$/M tokens", "usd_per_h over every token served (output, input, cached), "
                                                    "at the workload's own mix: no price ratio"),
        ("cost_usd_per_request", "$", "usd_per_h over the requests served in an hour"),
        ("tok_s_per_mw", "tok/s per MW", "output tok/s per MW of facility power at the operating point"),
    ]),
    ("power cap", [
        ("cap_replicas", "replicas", "replicas whose nameplate power x PUE fits in economics.facility_power_cap "
                                     "(whole systems)"),
        ("cap_devices", "devices", "devices of those replicas"),
        ("cap_out_tok_s", "tok/s", "output tok/s those replicas serve, each at this point's operating load per "
                                   "replica: the tokens a facility of that power gets from this configuration"),
        ("cap_facility_mw", "MW", "what those replicas draw at the operating point, PUE included (at most the cap)"),
        ("cap_lower_bound", "", "True when the capacity search stopped at the target load (capacity_limit "
                                "'target'): a replica may carry more, so cap_out_tok_s is a lower bound"),
    ]),
    ("provenance", [
        ("config_hash", "", "hash of the point's resolved configuration (same hash, same row)"),
        ("seed", "", "random seed of the simulation"),
    ]),
]

COLUMNS = [c for _, cols in SECTIONS for c in cols]
UNITS = {name: unit for name, unit, _ in COLUMNS}
MEANINGS = {name: meaning for name, _, meaning in COLUMNS}
SECTION_OF = {name: s for s, cols in SECTIONS for name, _, _ in cols}

_BEFORE_AXES = {"answer", "identity"}
HEAD = [n for s, cols in SECTIONS if s in _BEFORE_AXES for n, _, _ in cols]
TASKS = [n for n, _, _ in dict(SECTIONS)["agent tasks"]]
TAIL = [n for n, _, _ in dict(SECTIONS)["provenance"]]
POOLS = [n for n, _, _ in dict(SECTIONS)["disaggregated"]]
DETAIL = [n for s, cols in SECTIONS if s not in _BEFORE_AXES | {"agent tasks", "disaggregated", "provenance"}
          for n, _, _ in cols]

# swept paths whose value a result column already shows (resolved): the axis column is dropped
AXIS_SHOWN_AS = {"deployment.hardware": "hardware", "deployment.precision.weights": "weights_precision",
                 "deployment.precision.kv": "kv_precision", "workload.context_tokens": "context_tokens"}


def describe(name: str) -> tuple[str, str]:
    """(unit, meaning) of a results column; a swept value's column is described as such."""
    if name in MEANINGS:
        return UNITS[name], MEANINGS[name]
    path = name.removeprefix("sweep.")
    return "as in the scenario", f"swept value of the scenario field `{path}` (one column per axis)"


def documented(name: str) -> bool:
    """A column is documented when COLUMNS names it or it is a swept scenario field (dotted path)."""
    return name in MEANINGS or "." in name


def markdown(names=None) -> str:
    """The columns as a Markdown table (``names``: those of one results table, in its order)."""
    rows = [(n, *describe(n)) for n in names] if names is not None else COLUMNS
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {u} | {m.replace('|', '/')} |" for n, u, m in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the README's table: python -m planner.sweeps.columns
    print(markdown(), end="")
