"""Report the discrete-event engine's speed (figures only; nothing is asserted).

(a) Llama-3.1-70B on 4 x CS-3, 20,000 Poisson requests of 1,024 in / 256 out, at 50% and 80% of
    the analytic capacity;
(b) DeepSeek-V3 FP8 on CS-3 wafers (fewest for 256 sequences of 9K), 8K in / 1K out, Poisson at 80%.
Run: python bench/bench_sim.py   (one core; best of 3 after a warm-up that fills the round caches)
"""
from __future__ import annotations

import dataclasses
import time

from planner import catalog
from planner.physics.point import Config, build_point
from planner.plan.estimate import estimate
from planner.config.schema import LengthDist
from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import StepRounds
from planner.sim.workload import Sampler


def fixed(v: int) -> Sampler:
    return Sampler(LengthDist(dist="fixed", value=v))


def bench(label: str, cfg: Config, prompt: int, output: int, requests: int, load: float) -> None:
    rounds = StepRounds(build_point(cfg))
    cap_req_s = estimate(dataclasses.replace(cfg, batch=None)).aggregate_tok_s / output
    spec = SimSpec(requests=requests, rate_per_s=load * cap_req_s, prompt=fixed(prompt), output=fixed(output), seed=1)
    simulate(dataclasses.replace(spec, requests=min(requests, 2000)), rounds)  # warm the caches
    best = None
    for _ in range(3):
        t = time.perf_counter()
        res = simulate(spec, rounds)
        wall = time.perf_counter() - t
        best = wall if best is None or wall < best else best
    s = res.summary
    print(f"{label} @ {load:.0%} load: {requests / best:,.0f} simulated requests per wall-second "
          f"({best:.2f} s for {requests:,}), {s['events_per_request']:.2f} events/request; "
          f"{s['throughput_out_tok_s']:,.0f} out tok/s, TTFT p99 {s['ttft_p99_s'] * 1e3:.1f} ms, "
          f"{s['decode_tok_s_per_user_p50']:,.0f} tok/s/user p50")


def main() -> None:
    llama = Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("cs3"), count=4, context=1280,
                   prompt=1024, output=256)
    for load in (0.5, 0.8):
        bench("(a) llama-3.1-70b 4 x cs3 1024/256", llama, 1024, 256, 20_000, load)
    ds = Config(catalog.load_model("deepseek-v3"), catalog.load_hardware("cs3"), weights="fp8", context=9216,
                prompt=8192, output=1024, min_sequences=256)
    bench(f"(b) deepseek-v3 fp8 {build_point(ds).placement.devices} x cs3 8K/1K", ds, 8192, 1024, 5_000, 0.8)


if __name__ == "__main__":
    main()
