"""Build hook: the package is plain Python; an install or a wheel also compiles the simulator's
hot modules with Cython, from the same source files, for speed (the main job: 46 CPU-s, not 66).

Why it is safe: the modules are compiled as they are, with Python semantics (annotations are not
read as C types, no floating-point contraction), so a compiled run computes the same numbers in
the same order; the test suite and the main job's results are the same byte for byte.

- ``pip install -e .`` (editable) compiles nothing: an edit to a .py file takes effect at once.
- ``pip install .`` and ``pip wheel .`` compile; the .py files ship too and are what runs where a
  compiled module is missing. ``PLANNER_PURE_PYTHON=1`` skips compiling.
- Without a C compiler the build warns and installs plain Python (slower, same results).
``plan --version`` says which one runs.

Next to some modules a ``.pxd`` file declares their busiest classes' attributes (Replica,
Recorder, the KV ledgers), so compiled code reads them as struct fields, not dict entries; each
is a Python object, so the arithmetic is unchanged. Compiled, those classes are extension
types: their methods can be overridden in a subclass, not patched on the class.
"""
from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# Where the main job spends its time (bench/bench_sweep.py; profile in the README "Speed").
COMPILED = [
    "planner/sim/accounts.py", "planner/sim/batch.py", "planner/sim/engine.py", "planner/sim/kv.py",
    "planner/sim/links.py", "planner/sim/records.py", "planner/sim/replica.py", "planner/sim/rounds.py",
    "planner/sim/router.py", "planner/sim/watch.py", "planner/sim/workload.py",
    "planner/physics/collectives.py", "planner/physics/prefill.py", "planner/physics/step.py",
    "planner/physics/times.py", "planner/plan/probe.py",
]
DIRECTIVES = {"language_level": 3, "annotation_typing": False}
UNIX_FLAGS = ["-O2", "-g0", "-ffp-contract=off"]  # (after Python's own -g -O3: the last one wins)


def _module(path: str) -> str:
    return path[:-3].replace("/", ".")


def _pure() -> bool:
    return bool(os.environ.get("PLANNER_PURE_PYTHON"))


def _drop_compiled(build_lib: str, paths=COMPILED) -> None:
    """Delete compiled modules an earlier build left in ``build_lib`` (pip builds in the source
    tree's build/): a plain-Python build, or a module that failed to compile, must not ship an
    old binary that Python would import instead of the new .py."""
    for p in paths:
        stem = Path(build_lib) / p[:-3]
        for old in stem.parent.glob(stem.name + ".*"):
            if old.suffix in (".so", ".pyd"):
                old.unlink()


class OptionalBuildExt(build_ext):
    """Cythonize and compile, unless editable or asked not to; a module that fails to compile
    (no compiler, no Python headers) runs as plain Python, and the build says so once."""

    def run(self):
        if getattr(self, "editable_mode", False):
            return
        try:
            from Cython.Build import cythonize
        except ImportError:
            _drop_compiled(self.build_lib)
            warnings.warn("Cython is not installed: planner installs as plain Python (slower, same results)")
            return
        done = cythonize(self.extensions, compiler_directives=DIRECTIVES, quiet=True,
                         build_dir=os.path.join(self.build_temp, "cython"))
        for ext, c in zip(self.extensions, done, strict=True):  # (finalize_options set up these objects)
            assert ext.name == c.name, (ext.name, c.name)
            ext.sources = c.sources
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        self.failed = []
        super().run()
        if self.failed:
            first = (self.failed[0][1].strip().splitlines() or ["?"])[-1][:160]
            warnings.warn(f"could not compile {len(self.failed)} of {len(self.extensions)} modules "
                          f"({', '.join(n for n, _ in self.failed)}; first error: {first}); they run as "
                          "plain Python (slower, same results)")

    def build_extension(self, ext):
        if self.compiler.compiler_type == "unix":
            ext.extra_compile_args = UNIX_FLAGS
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001 (no compiler, missing headers: fall back, say so)
            _drop_compiled(self.build_lib, [ext.name.replace(".", "/") + ".py"])
            self.failed.append((ext.name, str(e)))


def _git_commit() -> tuple:
    """(commit, dirty) of the checkout being built: sweeps/provenance.py's own function, loaded
    from its file (the package's dependencies need not be installed in the build environment)."""
    spec = importlib.util.spec_from_file_location("_provenance", Path("planner/sweeps/provenance.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.git_commit(Path.cwd())


class BuildPyWithCommit(build_py):
    """Also writes planner/_build.json: the git commit (and whether tracked files differed from
    it) an installed package was built from, so its run.json can name it (a checkout's own
    run.json asks git directly; sweeps/provenance.py)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if _pure():  # (no build_ext then: nothing else would clear an earlier build's binaries)
            _drop_compiled(self.build_lib)
        commit, dirty = _git_commit()
        out = Path(self.build_lib) / "planner" / "_build.json"
        out.write_text(json.dumps({"git_commit": commit, "git_dirty": dirty}) + "\n", encoding="utf-8")


# PLANNER_PURE_PYTHON: no extensions at all, so the wheel is tagged pure Python (py3-none-any)
setup(ext_modules=[] if _pure() else [Extension(_module(p), [p]) for p in COMPILED],
      cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithCommit})
