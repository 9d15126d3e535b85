"""Hostile or broken YAML is a located ConfigError, quickly; never a hang or a traceback.

Every test here fails on the loader before the bounds (commit ebfe493): it hung, used gigabytes,
raised a raw RecursionError / ReaderError / ConstructorError / ValueError, or gave no line.
"""
import re
import signal
import time
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.config import yamlio
from planner.config.errors import ConfigError
from planner.config.yamlio import load_file, load_text


def laughs(width: int = 9, levels: int = 9) -> str:
    """The billion-laughs alias bomb: ``width ** levels`` copies of "lol" after expansion."""
    out = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        out.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(out) + "\n"


@contextmanager
def deadline(seconds: float):
    """Raise TimeoutError in the block after ``seconds``, so the old loader fails, not hangs."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def _alarm(*_):
        raise TimeoutError(f"still loading after {seconds} s")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def error(text: str, file: str = "b.yaml") -> str:
    with deadline(5), pytest.raises(ConfigError) as e:
        load_text(text, file)
    msg = str(e.value)
    assert re.match(rf"{re.escape(file)}:\d+:\d+: ", msg), msg  # located: FILE:LINE:COL
    assert len(e.value.problems) == 1, msg
    return msg


def test_alias_bomb_is_rejected_within_a_second():
    """9**9 laughs: the old position-recording walk expanded every alias (9**6 took 3-14 s,
    9**9 never finished and grew to gigabytes); the deadline fails it after 5 s."""
    t = time.perf_counter()
    msg = error(laughs(9, 9))
    took = time.perf_counter() - t
    assert "too many nodes after alias expansion (limit 100,000): an alias bomb?" in msg
    assert msg.startswith("b.yaml:7:10:")  # l6's first alias: 74,741 + 66,430 nodes
    assert took < 2.0, f"{took:.2f} s"


@pytest.mark.parametrize("text, where", [("a: &a [*a]\n", "1:8"), ("a: &a {b: [1, *a]}\n", "1:15")])
def test_recursive_anchor_is_located(text, where):
    """An alias inside its own anchor is a cycle; the old walk raised RecursionError."""
    assert error(text) == f"b.yaml:{where}: alias *a is inside its own anchor &a (recursive)"


def test_deep_nesting_is_located():
    """10,000 nested '[': the old recursive composer raised RecursionError."""
    msg = error("x: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert msg == "b.yaml:1:103: nested more than 100 levels deep"


def test_deep_nesting_through_aliases_is_located():
    """1,000 anchors each wrapping the previous one: ~2,000 nodes, 1,000 levels once expanded;
    the old walk raised RecursionError."""
    text = "a0: &a0 [0]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 1000))
    msg = error(text)
    assert msg.startswith("b.yaml:") and "nested more than 100 levels deep after alias expansion" in msg


def test_nul_byte_is_located():
    """PyYAML refuses control characters while building the loader; the old code did that
    outside its try, so a raw ReaderError escaped."""
    assert error("name: t\nmodel: ab\0c\n") == "b.yaml:2:10: a NUL byte (binary file?) is not allowed in YAML"


def test_invalid_utf8_is_located(tmp_path):
    """The old load_file said "cannot read file: 'utf-8' codec can't decode..." with no line."""
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: t\ndescription: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_file(p)
    assert str(e.value) == f"{p}:2:17: byte 0xE9 is not valid UTF-8 (save the file as UTF-8)"


def test_oversized_file_is_refused_unparsed(tmp_path):
    """A valid 5 MB file: the old loader parsed it all (seconds; 50 MB took minutes) and
    raised nothing."""
    p = tmp_path / "big.yaml"
    line = "# " + "x" * 97 + "\n"
    p.write_text("name: big\n" + line * 50_000, encoding="utf-8")
    t = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        load_file(p)
    assert str(e.value) == f"{p}:1:1: file is 5.0 MB; the limit is 4 MB"
    assert time.perf_counter() - t < 1.0


@pytest.mark.parametrize("text, message", [
    ("? {? [1]: 2}: 3\n", "b.yaml:1:3: cannot read key: found unhashable key"),
    ("a: {<<: 1}\n", "b.yaml:1:9: a: bad merge: expected a mapping or list of mappings for merging, "
                     "but found scalar"),
    ("start: 2024-13-45\n", "b.yaml:1:8: start: cannot read value: month must be in 1..12"),
])
def test_values_python_refuses_are_located(text, message):
    """The old walk caught ConstructorError only for scalar values: a bad key or merge raised
    it raw, and a date PyYAML resolves but Python refuses raised ValueError."""
    assert error(text) == message


def test_many_plain_nodes_stop_at_the_limit(monkeypatch):
    """The limit counts plain nodes too (100,000 of them take PyYAML ~6 s, so lowered here);
    the old loader had no limit to lower."""
    monkeypatch.setattr(yamlio, "MAX_NODES", 50)
    assert error("a: [" + ", ".join(["1"] * 60) + "]\n") == "b.yaml:1:146: too many nodes (limit 50)"  # item 48


@pytest.mark.parametrize("content, expect", [
    (laughs(9, 9).encode(), "an alias bomb?"),
    (b"a: &a [*a]\n", "recursive"),
    (("x: " + "[" * 10_000 + "]" * 10_000 + "\n").encode(), "levels deep"),
    (b"name: t\x00\n", "NUL byte"),
    (b"name: \xff\n", "not valid UTF-8"),
    (b"name: big\n" + b"#" * 5_000_000 + b"\n", "the limit is 4 MB"),
])
def test_cli_validate_exits_2_with_located_lines(tmp_path, content, expect):
    """`plan validate` on hostile files: exit 2, one FILE:LINE:COL line, no traceback. The old
    code exited 1 on a raw exception (which CliRunner catches), hung on the bomb (stopped by
    the deadline), printed the UTF-8 error without a position, or parsed all 5 MB."""
    p = tmp_path / "hostile.yaml"
    p.write_bytes(content)
    with deadline(10):
        result = CliRunner().invoke(main, ["validate", str(p)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.match(rf"{re.escape(str(p))}:\d+:\d+: ", lines[0]), lines
    assert expect in lines[0]
