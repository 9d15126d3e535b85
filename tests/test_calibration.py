"""The shipped defaults reproduce every published measurement they were fitted to."""
import pytest

from planner import calibrate
from planner.config.errors import ConfigError

POINTS = calibrate.read_points()
EVALUABLE = [p for p in POINTS if p.evaluable]


def test_calibration_file_holds_the_domain_points():
    models = {(p.hardware, p.model, p.value) for p in POINTS}
    for needed in [("cs3", "llama-3.1-8b", 1800), ("cs3", "llama-3.1-70b", 450), ("cs3", "llama-3.3-70b", 2314),
                   ("cs3", "undisclosed", 1000), ("h100", "llama-3.1-70b", 128), ("b200", "deepseek-r1", 75)]:
        assert needed in models
    assert all(p.date and len(p.source) > 10 for p in POINTS)


@pytest.mark.parametrize("point", EVALUABLE, ids=lambda p: f"row{p.row}-{p.model}")
def test_shipped_defaults_within_15_percent(point):
    predicted = calibrate.predict(point, calibrate.catalog.load_hardware(point.hardware))
    assert predicted == pytest.approx(point.value, rel=0.15)


def test_refit_from_shipped_values_stays_put():
    """Fitting again from the shipped values moves nothing much: the defaults are the fit."""
    for g in calibrate.fit(POINTS):
        for p, before, after in g.points:
            assert abs(after / p.value - 1) <= abs(before / p.value - 1) + 1e-3


def test_bad_rows_are_reported_with_row_numbers(tmp_path):
    bad = tmp_path / "c.csv"
    header = ",".join(calibrate.COLUMNS)
    bad.write_text(header + "\n" + "2024,src source,cs3,1,llama-3.1-8b,bf16,speed,1800,1,,,,,,,,\n"
                   + "2024,src source,cs3,1,llama-3.1-8b,bf16,decode_tok_s_per_user,-5,1,,,,,,,,\n")
    with pytest.raises(ConfigError) as e:
        calibrate.read_points(bad)
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f"{bad}:2:1: metric 'speed'") and lines[1].startswith(f"{bad}:3:1: value must be > 0")


def test_write_back_keeps_comments(tmp_path, monkeypatch):
    import shutil
    d = tmp_path / "hardware_specs"
    shutil.copytree(calibrate.catalog.hardware_dir(), d)
    monkeypatch.setattr(calibrate.catalog, "hardware_dir", lambda: d)
    monkeypatch.chdir(tmp_path)
    fits = calibrate.fit([p for p in POINTS if p.hardware == "h100"])
    before = (d / "h100.yaml").read_text()
    calibrate.write_back(fits)
    after = (d / "h100.yaml").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) <= 1
    assert all("allreduce:" in b for _, b in changed)
