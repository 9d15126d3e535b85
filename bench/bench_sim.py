"""Report the discrete-event engine's speed in simulated requests per CPU-second (figures only;
nothing is asserted). CPU seconds (time.process_time), not wall time: the machine is shared.

(a) 1,024 in / 256 out, Poisson at 50% and 80% of the analytic capacity: Llama-3.1-8B on 1 x H100,
    Llama-3.1-70B on 4 x CS-3;
(b) DeepSeek-V3 FP8 on CS-3 wafers (fewest for 256 sequences of 9K), 8K in / 1K out, Poisson at 80%;
(c) events per request as the output grows (64 to 16,384 tokens) and as replicas grow (1 to 64).
Run: python bench/bench_sim.py [REQUESTS]   (best of 3 after a warm-up that fills the round caches)
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import planner
from planner import catalog
from planner.physics.point import Config, build_point
from planner.plan.estimate import estimate
from planner.config.schema import LengthDist
from planner.sim import describe
from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import StepRounds
from planner.sim.workload import Sampler


def fixed(v: int) -> Sampler:
    return Sampler(LengthDist(dist="fixed", value=v))


def setup(cfg: Config, prompt: int, output: int, requests: int, load: float, replicas: int = 1):
    rounds = StepRounds(build_point(cfg))
    cap_req_s = estimate(dataclasses.replace(cfg, batch=None)).aggregate_tok_s / output
    spec = SimSpec(requests=requests, rate_per_s=load * cap_req_s * replicas, prompt=fixed(prompt),
                   output=fixed(output), seed=1, replicas=replicas)
    return rounds, spec


def bench(label: str, cfg: Config, prompt: int, output: int, requests: int, load: float, repeat: int = 3) -> None:
    rounds, spec = setup(cfg, prompt, output, requests, load)
    simulate(dataclasses.replace(spec, requests=min(requests, 2000)), rounds)  # warm the caches
    best = None
    for _ in range(repeat):
        t = time.process_time()
        res = simulate(spec, rounds)
        cpu = time.process_time() - t
        best = cpu if best is None or cpu < best else best
    s = res.summary
    print(f"{label} @ {load:.0%} load: {requests / best:,.0f} simulated requests per CPU-second "
          f"({best:.2f} s for {requests:,}), {s.events_per_request:.2f} events/request; "
          f"{s.throughput_out_tok_s:,.0f} out tok/s, TTFT p99 {s.ttft_p99_s * 1e3:.1f} ms, "
          f"{s.decode_tok_s_per_user_p50:,.0f} tok/s/user p50", flush=True)


def events(label: str, cfg: Config, prompt: int, requests: int) -> None:
    """Events per request against output length, then against replicas (80% load)."""
    for out in (64, 1024, 16384):
        rounds, spec = setup(cfg, prompt, out, requests, 0.8)
        s = simulate(spec, rounds).summary
        print(f"{label} output {out:>6}: {s.events_per_request:.2f} events/request", flush=True)
    for reps in (1, 8, 64):
        rounds, spec = setup(cfg, prompt, 256, requests * reps // 8 + requests, 0.8, reps)
        t = time.process_time()
        s = simulate(spec, rounds).summary
        cpu = time.process_time() - t
        print(f"{label} replicas {reps:>3}: {s.events_per_request:.2f} events/request, "
              f"{spec.requests / cpu:,.0f} requests per CPU-second", flush=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(f"simulator: {describe()}; "
          f"planner from {Path(planner.__file__).parent}", flush=True)
    h100 = Config(catalog.load_model("llama-3.1-8b"), catalog.load_hardware("h100"), count=1, context=1280,
                  prompt=1024, output=256)
    llama = Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("cs3"), count=4, context=1280,
                   prompt=1024, output=256)
    for load in (0.5, 0.8):
        bench("(a) llama-3.1-8b 1 x h100 1024/256", h100, 1024, 256, n, load)
        bench("(a) llama-3.1-70b 4 x cs3 1024/256", llama, 1024, 256, n, load)
    ds = Config(catalog.load_model("deepseek-v3"), catalog.load_hardware("cs3"), weights="fp8", context=9216,
                prompt=8192, output=1024, min_sequences=256)
    bench(f"(b) deepseek-v3 fp8 {build_point(ds).placement.devices} x cs3 8K/1K", ds, 8192, 1024, n // 4, 0.8)
    events("(c) llama-3.1-70b 4 x cs3", llama, 1024, n // 5)


if __name__ == "__main__":
    main()
