"""The package reads top-down: lower layers never import higher ones, stages do not import stages,
there are no import cycles, and the ONNX runtime needs nothing of asr_kd outside asr_kd/runtime."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asr_kd"

#: Layer of each part of the package; a module may import its own layer and the ones below.
LAYERS = {
    "asr_kd": 0, "asr_kd.errors": 0, "asr_kd.utils": 0, "asr_kd.paths": 0, "asr_kd.integrity": 0,
    "asr_kd.config": 1, "asr_kd.environment": 1,
    "asr_kd.data": 2, "asr_kd.features": 2, "asr_kd.scoring": 2,
    "asr_kd.models": 3,
    "asr_kd.distill": 4,
    "asr_kd.decoding": 5, "asr_kd.training": 5, "asr_kd.export": 5,
    "asr_kd.stages": 6,
    "asr_kd.cli": 7,
}
#: Stage infrastructure that stage modules share (everything else in stages/ is a stage).
STAGE_INFRA = {"asr_kd.stages", "asr_kd.stages.base", "asr_kd.stages.plan"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """asr_kd modules imported anywhere in ``path`` (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("asr_kd")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asr_kd"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).exists()
                      or (PACKAGE.parent / (f"{node.module}.{a.name}".replace(".", "/") + ".py")).exists()}
    return found


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer in tests/test_layers.py")


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("asr_kd.runtime")])
def test_no_module_imports_a_higher_layer(module):
    imports = [i for i in MODULES[module] if not i.startswith("asr_kd.runtime")]
    higher = sorted(i for i in imports if _layer(i) > _layer(module))
    assert not higher, f"{module} (layer {_layer(module)}) imports {higher}"


def test_stages_do_not_import_stages():
    for module, imports in MODULES.items():
        if module.startswith("asr_kd.stages.") and module not in STAGE_INFRA:
            others = {i for i in imports if i.startswith("asr_kd.stages") and i not in STAGE_INFRA}
            assert not others, f"{module} imports the stage(s) {sorted(others)}"


def test_runtime_needs_nothing_else_of_the_package():
    """Only its own modules and asr_kd.errors (which imports nothing): no torch, no training code."""
    for module, imports in MODULES.items():
        if module.startswith("asr_kd.runtime"):
            outside = {i for i in imports if not i.startswith("asr_kd.runtime") and i != "asr_kd.errors"}
            assert not outside, (module, outside)


def test_no_import_cycles():
    graph = {m: {i for i in imports if i in MODULES and i != m} for m, imports in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
