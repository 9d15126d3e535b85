"""The cost-vs-speed frontier: monotone where physics says so, and the wafer/GPU crossover by hand."""
import numpy as np
import pandas as pd

from planner.sweeps import frontier
from planner.sweeps.runner import run

SCEN = """
name: f
model: llama-3.1-70b
deployment: {hardware: cs3, count: null}
workload: {context_tokens: 8192, output_tokens: 1024, concurrent_users: 64}
sweep:
  - name: g
    axes:
      deployment.hardware: [cs3, h100, b200]
      workload.context_tokens: [8192, 32768]
"""


def test_more_load_never_raises_per_user_speed_nor_the_cost_per_token(write, tmp_path):
    """Fails if a curve's per-user speed rises with the batch, or its throughput falls (or its
    $/M output tokens rises) with load by more than the 2% that whole prefill chunks per GPU step
    allow at the largest batches."""
    _, out = run(write("f.yaml", SCEN), tmp_path / "o", quiet=True, jobs=1, simulate=False)
    fr = pd.read_csv(out / "frontier.csv")
    assert set(fr["hardware_kind"]) == {"wafer", "gpu"} and fr["point"].nunique() == 6
    for _, g in fr.groupby("point"):
        g = g.sort_values("batch_per_replica")
        assert g["batch_per_replica"].iloc[0] == 1 and len(g) >= 5
        speed, thr, cost = (g[c].to_numpy() for c in ("decode_tok_s_per_user", "throughput_out_tok_s_per_replica",
                                                         "cost_usd_per_mtok_out"))
        assert (np.diff(speed) <= 1e-9 * speed[:-1]).all()
        assert (np.diff(thr) >= -0.02 * thr[:-1]).all()
        assert (np.diff(cost) <= 0.02 * cost[:-1]).all()
        assert (g["cost_usd_per_mtok_out_low"] <= g["cost_usd_per_mtok_out"]).all()
    assert (out / "crossover.csv").exists()


def test_crossover_by_hand():
    """A wafer curve (1000 tok/s at $5/M, 900 at $2) against a GPU curve (100 at $3, 50 at $1,
    10 at $0.5): at 10 and 50 tok/s/user the GPU is cheaper ($0.5, $1 vs $2); at 60 and 100 only
    the GPU's $3 point is fast enough, so the wafer's $2 wins; at 950 only the wafer is left ($5)."""
    rows = [("wafer", 1, s, c) for s, c in ((1000, 5.0), (900, 2.0))] + \
           [("gpu", 2, s, c) for s, c in ((100, 3.0), (50, 1.0), (10, 0.5))]
    fr = pd.DataFrame([{"model": "m", "context_tokens": 8192, "hypothetical": False, "hardware_kind": k,
                        "point": p, "decode_tok_s_per_user": s, "cost_usd_per_mtok_out": c} for k, p, s, c in rows])
    hyp = fr.iloc[[0]].assign(hypothetical=True, cost_usd_per_mtok_out=0.01, decode_tok_s_per_user=2000.0)
    cx = frontier.crossover(pd.concat([fr, hyp]), speeds=[10, 50, 60, 100, 950])
    assert list(cx["cheaper"]) == ["gpu", "gpu", "wafer", "wafer", "wafer"]  # the hypothetical $0.01 is ignored
    assert list(cx["wafer_usd_per_mtok_out"]) == [2.0, 2.0, 2.0, 2.0, 5.0]
    assert cx["gpu_usd_per_mtok_out"].iloc[:4].tolist() == [0.5, 1.0, 3.0, 3.0] and np.isnan(cx["gpu_usd_per_mtok_out"].iloc[4])
    assert "GPU 10-50 tok/s/user" in frontier.crossover_text(cx)[0]
