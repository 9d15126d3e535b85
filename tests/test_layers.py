"""The package's layers import only from the layers before them (README "Layout"):
config -> physics -> sim -> plan (and calibration) -> sweeps -> cli. Every import is checked,
function-level ones included; a newcomer can trust the folders to show the data flow."""
import ast
from pathlib import Path

import planner

ROOT = Path(planner.__file__).resolve().parent
RANK = {"config": 0, "catalog": 0, "version": 0, "pool": 0, "physics": 1, "sim": 2, "plan": 3, "calibration": 3,
        "sweeps": 4, "cli": 5, "__init__": 5}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("planner"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (use planner.<layer>...)")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("planner"):
                    yield a.name, []


def _modules():
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("")
        yield f, ".".join(("planner",) + rel.parts)


def test_every_module_belongs_to_a_known_layer():
    unknown = {_layer(m) for _, m in _modules()} - set(RANK)
    assert not unknown


def test_no_module_imports_from_a_later_layer():
    bad = []
    for f, mod in _modules():
        own = RANK[_layer(mod)]
        for target, names in _imports(f):
            if target == "planner":  # "from planner import x": x is the layer
                layers = [n for n in names if n != "__version__"]
            else:
                layers = [_layer(target)]
            bad += [f"{mod} imports {target} {names}" for layer in layers if RANK.get(layer, 99) > own]
    assert not bad, "\n".join(bad)


def test_the_simulator_knows_no_scenario_and_no_analytic_pass():
    """sim/ takes arrays and a round model; scenarios and the estimate belong to plan/."""
    for f, mod in _modules():
        if _layer(mod) != "sim":
            continue
        for target, names in _imports(f):
            assert "Scenario" not in names, f"{mod} imports Scenario"
            assert not target.startswith("planner.plan"), f"{mod} imports {target}"
            src = f.read_text(encoding="utf-8")
            assert "open(" not in src and "read_text" not in src and "read_csv" not in src, f"{mod} reads files"


def test_modules_stay_small():
    big = [f"{m}: {n} lines" for f, m in _modules() if (n := len(f.read_text(encoding="utf-8").splitlines())) > 400]
    assert not big, big
