"""Exact event traces of the KV policies (wait, preempt, swap, offload) on tiny hand-computed cases.

Every case runs on ``ConstantRounds``: a round takes ``tau`` = 1 s whatever the batch (a prefill
round too, and a prompt's first token lands at the end of the round that finished it), and KV
costs 1 byte per token, so KV bytes are token counts. The tables were derived by hand from the
rules in planner/sim/replica.py before the code was run. Notation: ``A[c]`` is request A holding
a context of c tokens; ``blk(c)`` rounds c up to whole ``block_tokens`` blocks (preempt/swap).
Time-series rows are ``(t_s, batch, queued, kv_bytes)``, sampled at the start of every span;
``queued`` counts the queue + prompts being prefilled + swapped-out sequences. The replica
samples ``(0, 0, 0, 0)`` at t = 0 before the first arrival is dispatched, and samples once
more when it goes idle after the last finish.
"""
import numpy as np
import pytest

from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds
from planner.sim.workload import Trace

EXACT = dict(rel=1e-12, abs=1e-12)


def run(policy, arrivals, prompts, outputs, rounds, **kw):
    tr = Trace(np.array(arrivals, float), np.array(prompts, np.int64), np.array(outputs, np.int64))
    spec = SimSpec(requests=len(arrivals), process="trace", trace=tr, policy=policy, warmup_fraction=0.0, **kw)
    return simulate(spec, rounds)


def check(res, times, rows, preemptions=None, swaps=None):
    """times: per request (arrival, admit, first token, finish); rows: the whole time series."""
    r = res.requests
    got = r[["arrival_s", "admit_s", "first_token_s", "finish_s"]].to_numpy()
    assert got.shape == (len(times), 4) and got == pytest.approx(np.array(times, float), **EXACT), got.tolist()
    ts = res.timeseries
    assert (ts["replica"] == 0).all()
    got = ts[["t_s", "batch", "queued", "kv_bytes"]].to_numpy()
    assert got.shape == (len(rows), 4) and got == pytest.approx(np.array(rows, float), **EXACT), got.tolist()
    if preemptions is not None:
        assert r["preemptions"].tolist() == preemptions
    if swaps is not None:
        assert r["swaps"].tolist() == swaps


def test_wait_reserves_prompt_plus_output_and_admits_in_fifo_order():
    """Reference policy. kv_budget 10 B. A (t=0, prompt 3, output 3: reserves 6), B (t=0.5, 3+3: 6),
    C (t=0.5, 2+2: 4). B does not fit beside A (6+6 > 10); C would (6+4 = 10) but waits behind B.

      t    event                                          batch  queued  KV (reserved)
      0    idle sample; A arrives, admitted, prefill 3      0      1      6
      0.5  B, C arrive (queued behind the prefill round)
      1    A's first token; B needs 6+6 > 10: A decodes     1      2      6
           2 rounds (fin at round 1 + output-1 = 3)
      3    A done (3 tokens); B (6) and C (6+4 = 10)        0      2      10
           admitted, prefilled together in one round
      4    B, C first tokens; C fin 1 round later           2      0      10
      5    C done; B decodes one more round                 1      0      6
      6    B done; idle sample                              0      0      0
    Fails if wait reserves less than prompt+output (B admitted at 1), lets C overtake B (C admitted
    at 1), prefills in separate rounds, or mis-times the first token / finish rounds."""
    res = run("wait", [0.0, 0.5, 0.5], [3, 3, 2], [3, 3, 2], ConstantRounds(1.0, kv_budget=10, kv_per_token=1))
    check(res,
          times=[(0, 0, 1, 3), (0.5, 3, 4, 6), (0.5, 3, 4, 5)],
          rows=[(0, 0, 0, 0), (0, 0, 1, 6), (1, 1, 2, 6), (3, 0, 2, 10), (4, 2, 0, 10), (5, 1, 0, 6), (6, 0, 0, 0)],
          preemptions=[0, 0, 0], swaps=[0, 0, 0])


# preempt and swap share one case: capacity 12 B, blocks of 2 tokens, prefill chunk 2 tokens.
# A (t=0, prompt 2, output 6) and B (t=0.5, prompt 2, output 6). Admission needs blk(ctx + 1) for
# the newcomer plus a watermark of (active + 1) blocks = (active + 1) * 2 B.
#   t=0  A admitted: 0 + blk(3)=4 + 2 <= 12; prefill reserves 4.          sample (0, 0, 1, 4)
#   t=1  A lands: A[3], joins at round R=1, fin = 1 + 5 = 6. B admitted:
#        4 + 4 + 2*2 = 12 <= 12; mixed round (A decodes, B prefills).     sample (1, 1, 1, 4+4)
#   t=2  R=2, B lands: B[3] at R=2 (fin 7); A[4]. KV blk(4)+blk(3) = 8.
#        Decode span until overflow: R=3: blk(5)+blk(4)=10, R=4: 6+6=12,
#        R=5: blk(7)+blk(6)=14 > 12, so the span is 2 rounds.             sample (2, 2, 0, 8)
#   t=4  R=4 would overflow: evict the youngest, B, at B[5] having generated 3 tokens.
CASE = dict(kv_budget=12, kv_per_token=1)
KW = dict(block_tokens=2, chunk=2)


def test_preempt_evicts_the_youngest_and_recomputes_prompt_plus_generated():
    """preempt: B goes back to the head of the queue (1 preemption). Re-admission needs
    blk(2+3+1) = 6 + watermark 2*2 beside A[6]: 6+6+4 = 16 > 12, so B waits for A (without the
    watermark it would fit exactly, 12 <= 12, and evict A at once).

      t    event                                           batch  queued  KV
      4    B evicted (no time passes); A decodes R=4->6      1      1      blk(6)=6
      6    A done (6 tokens). B re-admitted: 0+6+2 <= 12;
           recompute prefills 2+3 = 5 tokens in chunks of
           2: 3 rounds, reserving blk(6) = 6                 0      1      6
      9    B lands: 4th token, B[6] at R=9, fin 9+2 = 11      1      0      6
      11   B done; idle                                      0      0      0
    B keeps its first admission (1) and first token (2). Fails if the youngest is not the one
    evicted, the watermark is dropped, the recompute prefills only the prompt (B would finish at
    9) or not at all, growth is not in whole blocks (the sample at 2 would read 7), or an
    eviction is not counted."""
    res = run("preempt", [0.0, 0.5], [2, 2], [6, 6], ConstantRounds(1.0, **CASE), **KW)
    check(res,
          times=[(0, 0, 1, 6), (0.5, 1, 2, 11)],
          rows=[(0, 0, 0, 0), (0, 0, 1, 4), (1, 1, 1, 8), (2, 2, 0, 8), (4, 1, 1, 6), (6, 0, 1, 6), (9, 1, 0, 6),
                (11, 0, 0, 0)],
          preemptions=[0, 1], swaps=[0, 0])
    assert res.summary.preemptions == 1 and res.summary.swaps == 0


SWAP_LINK = 10.0  # B/s: B[5] is 5 B (raw tokens, not blocks) = 0.5 s each way


def test_swap_stalls_the_replica_both_ways_and_resumes_without_recompute():
    """swap: B[5] (3 tokens generated) leaves over the link, 5 B / 10 B/s = 0.5 s, and the whole
    replica stalls: A does not advance from 4 to 4.5. Swap-in needs blk(5) = 6 + watermark 2*2
    beside A[6]: 16 > 12, so B waits for A, comes back (0.5 s more stall, unsampled) and resumes
    at B[5] with 3 tokens left, no prefill.

      t    event                                           batch  queued  KV
      4    swap-out starts; A (R=4) waits                    1      0      12 (A + B, still here)
      4.5  B swapped out; A decodes R=4->6                   1      1      6
      6.5  A done (6 tokens, 0.5 s later than preempt).
           Swap-in starts: 0+6+2 <= 12; B's blocks taken    0      0      6
      7    B joins at R=6 with B[5], fin 6+3 = 9             1      0      blk(5)=6
      10   B done; idle                                      0      0      0
    A sequence in transit holds its blocks (until it has left; from when it starts coming back).
    Fails if the swap does not stall the replica, costs other than bytes/link each way,
    recomputes (prefill rounds would add samples), skips the watermark, forgets KV in transit,
    or swaps/preemptions are miscounted (one swap = one round trip, counted at swap-in)."""
    res = run("swap", [0.0, 0.5], [2, 2], [6, 6], ConstantRounds(1.0, **CASE, link_bw=SWAP_LINK), **KW)
    check(res,
          times=[(0, 0, 1, 6.5), (0.5, 1, 2, 10)],
          rows=[(0, 0, 0, 0), (0, 0, 1, 4), (1, 1, 1, 8), (2, 2, 0, 8), (4, 1, 0, 12), (4.5, 1, 1, 6), (6.5, 0, 0, 6),
                (7, 1, 0, 6), (10, 0, 0, 0)],
          preemptions=[0, 0], swaps=[0, 1])
    assert res.summary.swaps == 1 and res.summary.preemptions == 0
    # link time: 0.5 s out + 0.5 s in over a 10 s run
    assert res.summary.offchip_transfer_util == pytest.approx(1.0 / 10.0, **EXACT)


def test_a_prompt_admitted_after_a_swap_in_is_stamped_when_it_is_admitted():
    """The swap case above plus C (t=6.7, prompt 1, output 1), which arrives while B's KV comes
    back (6.5 -> 7). At 7 B joins (blk(5) = 6 B) and C is admitted beside it: 6 + blk(2) = 2 +
    watermark (1 + 1) * 2 = 12 <= 12. C's admission is stamped 7, when it happens. Fails on the
    code that stamped the queue's admissions with the time the swap-in started (6.5, before C
    arrived: "negative queueing")."""
    res = run("swap", [0.0, 0.5, 6.7], [2, 2, 1], [6, 6, 1], ConstantRounds(1.0, **CASE, link_bw=SWAP_LINK), **KW)
    c = res.requests.iloc[2]
    assert c.arrival_s == pytest.approx(6.7, **EXACT) and c.admit_s == pytest.approx(7.0, **EXACT)
    assert res.summary.swaps == 1


def test_swap_out_sample_counts_the_kv_still_leaving():
    """Same case as above. At t=4, when the swap-out starts, HBM holds A[6] = 6 B and all of B's
    blk(5) = 6 B (nothing has crossed the link yet): the sample reads 12 B, the capacity. Fails
    if KV in transit is counted nowhere (it read 6 B before the fix)."""
    res = run("swap", [0.0, 0.5], [2, 2], [6, 6], ConstantRounds(1.0, **CASE, link_bw=SWAP_LINK), **KW)
    ts = res.timeseries
    row = ts[ts["t_s"] == 4.0]
    assert len(row) == 1 and float(row["kv_bytes"].iloc[0]) == pytest.approx(12.0, **EXACT)


def test_offload_admits_against_sram_plus_external_and_a_separate_sequence_reads_at_link_pace():
    """offload, separate (default): SRAM (kv_budget) 8 B + external 8 B, link 4 B/s. A (t=0,
    3+3: reserves 6, all in SRAM), B (t=0.5, 4+4: 8 B; SRAM has 2 B free: 6 B off-chip).

      t    event                                            batch  queued  KV reserved
      0    A admitted, prefill                               0      1      6
      1    A lands (fin R=3); B admitted: 6+8 = 14 <= 16;
           mixed round (1 s: nothing waits on the link)      1      1      14
      2    B lands, 3 tokens left: it decodes apart, one
           read of its 6 off-chip bytes per round: 3 x 6 =
           18 B, capped at 6 B per 1 s round, at the link's
           4 B/s: 4.5 s; A decodes its last round alone      1      0      14
      3    A done (not held back by B's reads); idle         0      0      8
      6.5  B done (its last read is in; nothing samples)
    Fails if offload admits against SRAM only (B would wait for A, as under wait), holds A back,
    reads the whole reservation or nothing, or times B's reads other than bytes / link."""
    rounds = ConstantRounds(1.0, kv_budget=8, kv_per_token=1, external_bytes=8, link_bw=4.0)
    res = run("offload", [0.0, 0.5], [3, 4], [3, 4], rounds)
    check(res,
          times=[(0, 0, 1, 3), (0.5, 1, 2, 6.5)],
          rows=[(0, 0, 0, 0), (0, 0, 1, 6), (1, 1, 1, 14), (2, 1, 0, 14), (3, 0, 0, 8)],
          preemptions=[0, 0], swaps=[0, 0])
    # link seconds: 18 B / 4 B/s over a 6.5 s run
    assert res.summary.offchip_transfer_util == pytest.approx(4.5 / 6.5, **EXACT)


def test_offload_together_holds_the_whole_batch_to_its_reads():
    """The same case with ``offload_batching: together``: B joins the running batch and every
    round waits for its 6 B read at 4 B/s (1.5 s; reads overlap the 1 s of compute).

      t    event                                            batch  queued  KV reserved
      2    B lands (fin R=5) beside A (fin R=3): 1 round     2      0      14
      3.5  A done, held back 0.5 s; B's 2 rounds: 3 s        1      0      8
      6.5  B done; idle                                      0      0      0
    Before links were resources the excess above SRAM was added to every round in series:
    A finished at 6 and B at 8 (the old version of this test)."""
    rounds = ConstantRounds(1.0, kv_budget=8, kv_per_token=1, external_bytes=8, link_bw=4.0)
    res = run("offload", [0.0, 0.5], [3, 4], [3, 4], rounds, offload_batching="together")
    check(res,
          times=[(0, 0, 1, 3.5), (0.5, 1, 2, 6.5)],
          rows=[(0, 0, 0, 0), (0, 0, 1, 6), (1, 1, 1, 14), (2, 2, 0, 14), (3.5, 1, 0, 8), (6.5, 0, 0, 0)],
          preemptions=[0, 0], swaps=[0, 0])
    assert res.summary.offchip_transfer_util == pytest.approx(4.5 / 6.5, **EXACT)