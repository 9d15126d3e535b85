import pytest

from planner.config.units import UnitError, parse


@pytest.mark.parametrize("text,kind,expected", [
    ("44 GB", "bytes", 44e9),
    ("44GB", "bytes", 44e9),
    ("1 GiB", "bytes", 2.0 ** 30),
    ("230 MB", "bytes", 230e6),
    ("8 Gbit", "bytes", 1e9),  # bits, spelled out
    ("150 GB/s", "bytes_per_s", 150e9),
    ("1.2 Tb/s", "bytes_per_s", 150e9),  # 12 x 100 GbE = 150 GB/s
    ("400 Gb/s", "bytes_per_s", 50e9),
    ("21 PB/s", "bytes_per_s", 21e15),
    ("125 PFLOP/s", "flops", 125e15),
    ("0.99 PFLOP/s", "flops", 0.99e15),
    ("17 us", "seconds", 17e-6),
    ("2 ms", "seconds", 2e-3),
    ("23 kW", "watts", 23e3),
    ("1e12", "number", 1e12),
    ("1.2B", "number", 1.2e9),  # parameter counts: B is billions
    ("1.2 G", "number", 1.2e9),
    ("1.6e12", "bytes", 1.6e12),
    (44e9, "bytes", 44e9),
    (3, "seconds", 3.0),
])
def test_parse(text, kind, expected):
    assert parse(text, kind) == pytest.approx(expected)


@pytest.mark.parametrize("text,kind", [
    ("44 GB/s", "bytes"), ("44 parsecs", "bytes"), ("fast", "bytes_per_s"), ("1 kg", "watts"),
    ("12 h/s", "seconds"), ("", "bytes"), (True, "bytes"), ("nan", "number"),
])
def test_parse_rejects(text, kind):
    with pytest.raises(UnitError):
        parse(text, kind)
