"""Imports in src/cnnlens run downward only.

Every ``import``/``from ... import`` in every module (also those inside functions, which Python runs
later but which are dependencies all the same) is resolved to the cnnlens module it loads, and the
layer of that module must be at or below the importing module's layer. The layer map is the one in
docs/architecture.md ("Layers"); a module that matches no entry fails the test, so a new module is
placed on purpose.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "cnnlens"

# Layer map, bottom (0) to top. An entry is a dotted module name (it covers the module and everything
# under it) or a regular expression (for a family of modules such as report/fig_*). The most specific
# (longest) matching entry wins. Entries for modules that do not exist yet are harmless. The package
# itself (``cnnlens``, its __init__) covers only itself, so a new top-level module must be placed.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["cnnlens.io", "cnnlens.errors", "cnnlens.registry", "cnnlens.config", "cnnlens.fill",
              "cnnlens.runlock", "cnnlens.device", "cnnlens.notebook"]),
    ("data, models, nn helpers", ["cnnlens.data", "cnnlens.models", "cnnlens.nn"]),
    ("compute", ["cnnlens.train", "cnnlens.evaluate", "cnnlens.explain", "cnnlens.featureviz",
                 "cnnlens.metrics"]),
    ("run-directory records", ["cnnlens.rundir"]),
    ("figures", [r"re:cnnlens\.report\.fig_\w+", "cnnlens.report.plots", "cnnlens.report.figures"]),
    ("pipeline, predict, stages", ["cnnlens.pipeline", "cnnlens.stages", "cnnlens.predict", "cnnlens.importing",
                                   "cnnlens.featureviz.runs"]),
    ("report", ["cnnlens.report"]),
    ("workflow (cnnlens.run)", ["cnnlens.workflow"]),
    ("cli, package facade", ["cnnlens.cli", "cnnlens.console", "cnnlens.__main__", "cnnlens"]),
]

# `__version__` is a constant that cnnlens/__init__.py sets before it imports anything, so reading it
# from the package is not an upward dependency (the facade's other names are).
BOTTOM_NAMES = {("cnnlens", "__version__")}

# Upward imports still tolerated, each with its reason and owner (the test fails when an entry is no
# longer needed). Empty: every import runs downward.
ALLOWED: set[tuple[str, str]] = set()


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, entries) in enumerate(LAYERS):
        for e in entries:
            if e.startswith("re:"):
                m = re.fullmatch(e[3:] + r"(\..*)?", module)
                n = len(e) if m else -1
            else:
                n = len(e) if module == e or (e != "cnnlens" and module.startswith(e + ".")) else -1
            if n > best_len:
                best, best_len = i, n
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and to "
                             "the Layers section of docs/architecture.md")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    p = SRC.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[int, str, str]]:
    """(line, cnnlens module loaded, how it is written) for every cnnlens import in ``path``."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "cnnlens" or a.name.startswith("cnnlens."):
                    out.append((node.lineno, a.name, f"import {a.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if not (src == "cnnlens" or src.startswith("cnnlens.")):
                continue
            for a in node.names:
                written = f"from {'.' * node.level}{node.module or ''} import {a.name}"
                if (src, a.name) in BOTTOM_NAMES:
                    continue
                target = f"{src}.{a.name}" if is_module(f"{src}.{a.name}") else src
                out.append((node.lineno, target, written))
    return out


def upward_imports() -> list[tuple[str, str, int, str]]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        mine = layer_of(me)
        for line, target, written in imported_modules(path):
            if layer_of(target) > mine:
                bad.append((me, target, line, written))
    return bad


def test_every_module_has_a_layer():
    for path in PKG.rglob("*.py"):
        layer_of(module_name(path))  # raises, naming the module


def test_imports_run_downward():
    bad = upward_imports()
    report = [f"{me}:{line} `{written}` loads {t} ({LAYERS[layer_of(t)][0]}), above {me} "
              f"({LAYERS[layer_of(me)][0]})" for me, t, line, written in bad if (me, t) not in ALLOWED]
    assert not report, "upward imports:\n" + "\n".join(report)
    stale = ALLOWED - {(me, t) for me, t, _, _ in bad}
    assert not stale, f"allowlisted but no longer upward (remove from ALLOWED): {sorted(stale)}"


def test_layer_map_is_the_documented_one():
    doc = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    for name, entries in LAYERS:
        assert name in section, f"layer {name!r} is missing from docs/architecture.md's Layers section"
        for e in entries:
            shown = e[3:].replace(r"\.", ".").replace(r"\w+", "*") if e.startswith("re:") else e
            assert f"`{shown}`" in section, f"{shown} is missing from docs/architecture.md's Layers section"


def test_a_new_top_level_module_must_be_placed():
    with pytest.raises(AssertionError, match="cnnlens.newthing is in no layer"):
        layer_of("cnnlens.newthing")


# The checker itself, on imports written by hand: each case could pass or fail.
@pytest.mark.parametrize("module,target,upward", [
    ("cnnlens.explain.batch", "cnnlens.report.fig_explain", True),   # compute -> figures
    ("cnnlens.report.html", "cnnlens.report.fig_explain", False),    # report -> figures
    ("cnnlens.report.fig_data", "cnnlens.report.html", True),        # figures -> report
    ("cnnlens.metrics.base", "cnnlens.explain.core", False),         # same layer
    ("cnnlens.nn", "cnnlens.explain", True),                         # nn helpers -> compute
    ("cnnlens.data.base", "cnnlens", True),                          # the facade is at the top
    ("cnnlens.pipeline", "cnnlens.device", False),                   # base
    ("cnnlens.rundir.explain", "cnnlens.workflow", True),            # records -> workflow
    ("cnnlens.report.sources", "cnnlens.pipeline", False),           # report -> pipeline
    ("cnnlens.workflow", "cnnlens.report.html", False),              # workflow -> report
])
def test_layer_order(module, target, upward):
    assert (layer_of(target) > layer_of(module)) is upward


def test_relative_and_function_level_imports_are_found(tmp_path, monkeypatch):
    pkg = tmp_path / "cnnlens"
    (pkg / "explain").mkdir(parents=True)
    (pkg / "report").mkdir()
    for f in ("__init__.py", "explain/__init__.py", "report/__init__.py", "report/fig_x.py"):
        (pkg / f).write_text("")
    (pkg / "explain" / "m.py").write_text(
        "from .. import __version__\n"
        "def f():\n"
        "    from ..report import fig_x\n"
        "    import cnnlens.report.fig_x\n"
        "    from ..report.fig_x import g\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    found = sorted(imported_modules(pkg / "explain" / "m.py"))
    assert [(line, t) for line, t, _ in found] == [
        (3, "cnnlens.report.fig_x"), (4, "cnnlens.report.fig_x"), (5, "cnnlens.report.fig_x")]
