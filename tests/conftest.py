"""Shared helpers: catalog shortcuts and small scenario files written into tmp_path."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from planner import catalog
from planner.physics import hardware, model

REPO = Path(__file__).resolve().parents[1]

# a small simulated sweep (Llama 8B on one CS-3 at four loads x two KV policies, and a GPU
# group with a skip rule); REQUESTS is filled in by each test
SIM = """
name: small
model: llama-3.1-8b
deployment: {hardware: cs3, count: 1}
workload:
  context_tokens: 4096
  output_tokens: 256
  arrival: {process: poisson, load: 0.7}
  output_dist: {dist: lognormal, median: 200, sigma: 0.5, max: 1000}
  requests: REQUESTS
slo: {ttft_p99_s: 0.5}
sweep:
  - name: wafers
    axes:
      workload.arrival.load: [0.3, 0.5, 0.7, 0.9]
      deployment.kv_policy: [wait, preempt]
  - name: gpus
    axes:
      deployment.hardware: [h100, b200]
      deployment.count: [1, 2]
    skip:
      - {deployment.hardware: b200, deployment.count: 2}
"""


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", text) -> path, dedented."""
    def _w(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return p
    return _w


def shape(name: str):
    return model.build(catalog.load_model(name))


def device(name: str, **kw):
    spec = catalog.load_hardware(name)
    bonded = catalog.load_hardware("bonded-sram") if kw.get("layers") else None
    return hardware.resolve(spec, bonded, kw.get("layers", 0), kw.get("software"))
