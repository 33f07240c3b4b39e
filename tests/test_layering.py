"""The package's layering: each stage imports only the stages before it, and no module imports
itself back through others (function-local imports included).

The data path is corpus -> dataset -> model -> KD loss -> trainer -> evaluate -> report, with
deploy/ branching off after the model. Two places where the code's imports, not the order in which
a study runs, decide (README, "Where things are"):

* ``evaluation`` sits before ``training``: the trainer's validation scores PESQ with
  :mod:`dfkd.evaluation.metrics`, and nothing in evaluation needs KD or training;
* ``losses`` (task losses, SI-SNR) sits with the shared base: the output-KD method, the trainer
  and the SI-SNR metric all use it, so that the metric and the loss agree.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dfkd"

# Stage of each module (the longest matching prefix wins). A module may import its own stage and
# every lower one; ALLOWED lists the exceptions to "every lower one" (a branch, not a stage).
STAGES: dict[str, int] = {
    "dfkd": 0, "dfkd.errors": 0, "dfkd.files": 0,
    "dfkd.audio": 1, "dfkd.losses": 1,
    "dfkd.data": 2,
    "dfkd.models": 3,
    "dfkd.checkpoint": 4,
    "dfkd.distill": 5,
    "dfkd.evaluation": 6,
    "dfkd.training": 7,
    "dfkd.experiment": 8,
    "dfkd.deploy": 9,
    "dfkd.commands": 10, "dfkd.cli": 10, "dfkd.__main__": 10,
    "dfkd.pretrained": 4,  # the committed models by name: beside checkpoint.py
    "dfkd.api": 11,  # the Python API: the top, above the commands (it runs what they run)
}
# The package's PEP 562 ``__getattr__`` forwards ``dfkd.load`` & co. to dfkd.api. It runs on
# attribute access, after every import has finished, so its import is no edge of the import graph.
LAZY_API = ("dfkd", "__getattr__")
# deploy/ branches off after the model: it may use data (synthetic test pairs), models, checkpoints
# and the metrics of evaluation (the export's parity check), never KD, training or the experiment.
ALLOWED: dict[str, set[str]] = {
    "dfkd.deploy": {"dfkd", "dfkd.errors", "dfkd.files", "dfkd.audio", "dfkd.losses", "dfkd.data",
                    "dfkd.models", "dfkd.checkpoint", "dfkd.evaluation.metrics", "dfkd.deploy"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every dfkd module ``name`` imports, anywhere in the file (function-local imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if name == LAZY_API[0]:
        tree.body = [n for n in tree.body
                     if not (isinstance(n, ast.FunctionDef) and n.name == LAZY_API[1])]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "dfkd")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dfkd":
                continue
            submodules = {f"{target}.{a.name}" for a in node.names} & known
            found.update(submodules or {target})
            if submodules and len(submodules) < len(node.names):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) - {name} for name, path in modules.items()}


def _stage_key(name: str, table) -> str:
    matches = [k for k in table if name == k or name.startswith(k + ".")]
    return max(matches, key=len)


def _allowed(importer: str, imported: str) -> bool:
    if imported.startswith("dfkd.deploy") and not importer.startswith(("dfkd.deploy", "dfkd.commands",
                                                                      "dfkd.api")):
        return False  # nothing on the data path depends on the deployment branch
    key = _stage_key(importer, STAGES)
    branch = [k for k in ALLOWED if importer == k or importer.startswith(k + ".")]
    if branch:
        allowed = ALLOWED[max(branch, key=len)]
        # "dfkd" is the package's own __init__ (SAMPLE_RATE), not everything under it
        return any(imported == a or (a != "dfkd" and imported.startswith(a + ".")) for a in allowed)
    return STAGES[_stage_key(imported, STAGES)] <= STAGES[key]


def test_every_module_has_a_stage():
    for name in _modules():
        _stage_key(name, STAGES)  # raises ValueError (max of nothing) for an unplaced module


def test_no_module_imports_a_later_stage():
    violations = sorted(f"{a} imports {b}" for a, deps in _graph().items() for b in deps
                        if not _allowed(a, b))
    assert not violations, "layering violated:\n" + "\n".join(violations)


def test_no_import_cycles():
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("importer, imported, ok", [
    ("dfkd.training.trainer", "dfkd.experiment.plan", False),
    ("dfkd.data.layouts", "dfkd.models", False),
    ("dfkd.deploy.export", "dfkd.distill.methods", False),
    ("dfkd.distill.methods", "dfkd.deploy.enhance", False),
    ("dfkd.experiment.runner", "dfkd.training.run", True),
    ("dfkd.deploy.export", "dfkd.evaluation.metrics", True),
    ("dfkd.api", "dfkd.deploy.enhance", True),
    ("dfkd.commands.models", "dfkd.api", False),
    ("dfkd.checkpoint", "dfkd.pretrained", True),
])
def test_the_rule_itself(importer, imported, ok):
    assert _allowed(importer, imported) is ok
