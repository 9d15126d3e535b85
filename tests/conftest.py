"""Shared helpers: catalog shortcuts and small scenario files written into tmp_path."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from planner import catalog, hardware, model

REPO = Path(__file__).resolve().parents[1]


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
