"""Issue 22: no backend or method name is compared outside its own module. Callers ask what a backend declares
(task, hosted, data formats, loss mask, coverage) or what a strategy says (uses_adapter, the quantization it
loads with), so a new backend or method touches its own module and one registry line, not six callers."""

from __future__ import annotations

import ast
from pathlib import Path

import tuneforge
from tuneforge.backends.registry import BACKENDS
from tuneforge.strategies.registry import STRATEGIES

SRC = Path(tuneforge.__file__).parent


def _owner(module_path: str) -> Path:
    return SRC.parent / (module_path.split(":")[0].replace(".", "/") + ".py")


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def compared_names(path: Path, names: set[str]) -> list[str]:
    """``x == "native"``, ``x in ("lora", "qlora")``, ``x != "full"``: a name on either side of a comparison."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                for hit in _strings(side) & names:
                    out.append(f"{path}:{node.lineno}: compares {hit!r}")
    return out


def test_backend_names_are_compared_only_in_the_backend_itself() -> None:
    bad = []
    for name, where in BACKENDS.items():
        home = _owner(where)
        for path in SRC.rglob("*.py"):
            if path != home:
                bad += compared_names(path, {name})
    assert not bad, "backend names compared outside their module:\n" + "\n".join(bad)


def test_method_names_are_compared_only_in_the_strategies() -> None:
    home = SRC / "strategies" / "registry.py"
    bad = []
    for path in SRC.rglob("*.py"):
        if path != home:
            bad += compared_names(path, set(STRATEGIES))
    assert not bad, "method names compared outside tuneforge/strategies:\n" + "\n".join(bad)


def test_the_check_finds_a_comparison(tmp_path: Path) -> None:
    """The scanner itself: a planted comparison is found (so the two tests above can fail)."""
    planted = tmp_path / "planted.py"
    planted.write_text('def f(run):\n    return run.backend.name in ("native", "x") or run.method.name == "lora"\n')
    assert compared_names(planted, {"native"}) and compared_names(planted, {"lora"})
    assert not compared_names(planted, {"axolotl"})
