"""The report's pictures: a panel per context, colour per hardware, marker per option,
hypothetical hollow/dashed, per-device throughput, words instead of empty axes, no warnings."""
import warnings

import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from planner.sweeps import plots  # noqa: E402
from planner.sweeps.report import _plt, write_report  # noqa: E402


def _df(feasible=True):
    rows = []
    for i, (hw, hyp, prec, ctx) in enumerate([("cs3", False, "fp8", 8192), ("cs3", False, "bf16", 32768),
                                             ("wse3-fp4", True, "fp4", 8192), ("b200", False, "fp8", 8192)]):
        rows.append({"point": i, "group": "g", "model": "m", "hardware": hw, "hypothetical": hyp,
                     "weights_precision": prec, "kv_precision": "fp8", "context_tokens": ctx,
                     "feasible": feasible, "slo_pass": feasible and hw != "b200", "pareto": False,
                     "bottleneck": "compute" if feasible else "hbm_capacity",
                     "devices": 4 + i, "throughput_out_tok_s": 1000.0 * (i + 1),
                     "throughput_out_tok_s_per_device": 1000.0 * (i + 1) / (4 + i),
                     "decode_tok_s_per_user_p50": 100.0 + i, "ttft_p99_s": 0.5 + i,
                     "cost_usd_per_mtok_out": 1.0 + i if feasible else float("nan"),
                     "reason": "" if feasible else "weights do not fit: 1.34 TB > 1 x 72 GB usable on h100"})
    return pd.DataFrame(rows)


def test_one_panel_per_context_hollow_hypothetical_and_per_device_axis(tmp_path):
    """Pins: contexts never share a panel; a hypothetical wafer is drawn hollow; the throughput
    plot's y axis is per device and says its unit."""
    plt = _plt()
    d = plots.prepare(_df())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.cost_vs_speed(d, {"decode_tok_s_per_user_p50": 50}, tmp_path / "c.png", plt)
        fig = plt.gcf()
        axes = [a for a in fig.axes if a.get_title()]
        assert [a.get_title() for a in axes] == ["context 8,192 tokens", "context 32,768 tokens"]
        hollow = [c for a in axes for c in a.collections if len(c.get_facecolors()) == 0
                  or c.get_facecolors()[0][3] == 0]
        assert len(hollow) == 1  # the wse3-fp4 point
        assert axes[0].get_xlabel() == "speed per user, median (tokens/s)"
        plots.throughput_vs_latency(d, {"ttft_p99_s": 3}, tmp_path / "t.png", plt)
        fig = plt.gcf()
        assert fig.axes[0].get_ylabel() == "output tokens/s per device (wafer or GPU)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "wse3-fp4 (hypothetical)" in legend and "cs3" in legend and "bf16" in legend
    plt.close("all")


def test_nothing_feasible_gives_words_not_empty_axes_and_no_warning(tmp_path):
    """Pins: with nothing to plot every panel says so and why, matplotlib warns of nothing."""
    df = _df(feasible=False)
    df.to_csv(tmp_path / "results.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = write_report(tmp_path)
    assert {f.name for f in files} == {"cost_vs_speed.png", "throughput_vs_latency.png", "devices_vs_context.png",
                                       "summary.md"}
    plt = _plt()
    plots.cost_vs_speed(plots.prepare(df), {}, tmp_path / "c.png", plt)
    texts = " ".join(t.get_text() for a in plt.gcf().axes for t in a.texts)
    assert texts.count("no feasible configuration") == 2 and "weights do not fit" in texts
    plt.close("all")


def test_fixed_load_curves_a_line_per_configuration_against_users_over_the_sram_limit(tmp_path):
    """A group varying concurrent_users without a capacity search: one line per policy (the
    offload batching named only for offload), x = users per replica / SRAM limit; the speed
    drawn is the time average where present (offload), else the median request's."""
    rows = []
    for policy, batching in (("wait", "separate"), ("offload", "separate"), ("offload", "together")):
        for users in (5, 10, 20, 40):
            rows.append({"point": len(rows), "group": "fixed", "model": "m", "hardware": "cs3", "feasible": True,
                         "slo_pass": True, "pareto": False, "bottleneck": "compute", "devices": 8,
                         "throughput_source": "sim", "replicas": 2, "max_concurrent_sequences": 10,
                         "concurrent_users": users, "workload.concurrent_users": users,
                         "deployment.kv_policy": policy, "deployment.offload_batching": batching,
                         "decode_tok_s_per_user_p50": 1000.0, "ttft_p99_s": 1.0 + users,
                         "decode_tok_s_per_user_time_avg": float("nan") if policy == "wait" else 2000.0 / users,
                         "throughput_out_tok_s": 900.0, "cost_usd_per_mtok_out": 1.0, "capacity_users": float("nan")})
    plt = _plt()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.speed_vs_users(pd.DataFrame(rows), tmp_path / "s.png", plt) == tmp_path / "s.png"
    ax = plt.gcf().axes[0]
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
    assert [ln.get_label() for ln in solid] == ["wait", "offload separate", "offload together"]
    assert list(solid[0].get_xdata()) == [0.25, 0.5, 1.0, 2.0]  # 5 users over 2 replicas of 10
    assert list(solid[0].get_ydata()) == [1000.0] * 4 and list(solid[1].get_ydata()) == [400.0, 200.0, 100.0, 50.0]
    plt.close("all")
    assert plots.speed_vs_users(pd.DataFrame(rows[:2]), tmp_path / "n.png", plt) is None  # fewer than 3 loads
