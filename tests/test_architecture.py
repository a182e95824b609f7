"""The code reads as the system: no module imports from a layer above it (docs/ARCHITECTURE.md),
and no function runs past about 80 lines without a reason written beside it."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "acbo"

# lower layers never import higher ones; within a layer, any order (no cycles: Python would fail)
LAYERS = [
    ("seeding", "configs", "io", "parallel", "layers", "training", "checkpoints"),  # utilities
    ("scm", "buffer", "costs", "posterior", "metrics", "predictive", "bioreactor", "demonstrations"),  # the world and the data
    ("method", "env"),                                                                 # the method interface; simulated campaigns
    ("experts",),                                                                      # PARENT_SCALE, CBO, demonstrations
    ("surrogate",),                                                                    # stage 1
    ("policy", "baselines"),                                                           # stage 2 and the baselines
    ("e2e",),                                                                          # stage 3
    ("optimizer",),                                                                    # CausalOptimizer: every method registered
    ("bench", "campaign"),                                                             # the harness; campaigns
    ("cli", "__init__"),                                                               # the entry points
]
MAX_LINES = 80
REASON = "# long:"


def _layer(module: str) -> int:
    """Layer of a module path relative to acbo ('surrogate.train' -> the layer of 'surrogate')."""
    top = module.split(".")[0] if module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module acbo.{module} is in no layer of tests/test_architecture.py")


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(parts), path


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "acbo":
            if node.module == "acbo":  # `from acbo import bioreactor` imports the module acbo.bioreactor
                yield from (a.name if (SRC / a.name).exists() or (SRC / f"{a.name}.py").exists() else "" for a in node.names)
            else:
                yield node.module[len("acbo."):]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "acbo":
                    yield a.name[len("acbo."):] if a.name != "acbo" else ""


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_no_import_climbs_a_layer(module, path):
    own = _layer(module)
    up = [m for m in _imports(path) if _layer(m) > own]
    assert not up, f"acbo.{module} (layer {own}) imports from higher layers: {up}"


def test_functions_are_short_or_say_why():
    long = []
    for module, path in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                said = REASON in lines[first - 2] if first >= 2 else False
                if n > MAX_LINES and not said:
                    long.append(f"acbo.{module}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_LINES} lines without a '{REASON} <why>' comment above them: {long}"
