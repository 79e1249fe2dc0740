"""Imports run one way: errors -> data -> models -> decoding -> {training, evaluation, inference, visualize,
resources} -> cli.

Every module under ``src/signt5`` is parsed with ``ast`` (imports inside functions included, since a late import
is a dependency all the same) and mapped to its layer by its top-level name. A module may import its own top-level
module and any lower layer; never an upper one, and never a sibling of its own layer. Import cycles between
modules fail too, naming the modules in the cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "signt5"

# top-level module or package of signt5 -> layer; a module may import only its own top-level name or a lower layer
LAYERS = {
    "signt5": 0,  # the package's __init__: its version, nothing else
    "errors": 0,
    "data": 1,
    "models": 2,
    "decoding": 3,
    "training": 4,
    "evaluation": 4,
    "inference": 4,
    "visualize": 4,
    "resources": 4,
    "cli": 5,
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = ["signt5", *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """The signt5 modules that ``name`` imports, resolved to modules where ``from x import y`` names a module,
    each with the line of its import."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "signt5"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "signt5":
                continue
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found += [(m, node.lineno) for m in submodules] or [(target, node.lineno)]
    return found


def top_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "signt5"


def import_graph(package: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    mods = modules(package)
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer_violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for module, targets in graph.items():
        mine = top_level(module)
        if mine not in LAYERS:
            problems.append(f"{module}: top-level module {mine!r} has no layer in tests/test_layers.py LAYERS")
            continue
        for target, line in targets:
            theirs = top_level(target)
            if theirs == mine or theirs not in LAYERS:
                continue
            if LAYERS[theirs] > LAYERS[mine]:
                problems.append(f"{module} (line {line}) imports {target}: up from layer {LAYERS[mine]} ({mine}) "
                                f"to layer {LAYERS[theirs]} ({theirs})")
            elif LAYERS[theirs] == LAYERS[mine]:
                problems.append(f"{module} (line {line}) imports {target}: sideways between siblings {mine} and "
                                f"{theirs} (layer {LAYERS[mine]}); move the shared code down a layer")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle of a small directed graph, each once (starting at its smallest node)."""
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                found.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def module_edges(graph: dict[str, list[tuple[str, int]]]) -> dict[str, set[str]]:
    """Module -> the modules it imports; a package's ``__init__`` re-exporting its own modules is not a cycle."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges[module] = {t for t, _ in targets if t in graph and t != module and not t.startswith(module + ".")}
    return edges


def top_level_edges(graph: dict[str, list[tuple[str, int]]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges.setdefault(top_level(module), set()).update(
            top_level(t) for t, _ in targets if top_level(t) != top_level(module))
    return edges


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int]]]:
    return import_graph()


def test_every_module_is_parsed_and_has_a_layer(graph):
    assert {"signt5.cli", "signt5.errors", "signt5.data.dataset", "signt5.training.trainer"} <= set(graph)
    unmapped = sorted({top_level(m) for m in graph} - set(LAYERS))
    assert not unmapped, f"top-level modules without a layer in LAYERS: {unmapped}"


def test_imports_point_down_the_layers(graph):
    problems = layer_violations(graph)
    assert not problems, "imports against the layer rule:\n  " + "\n  ".join(problems)


def test_no_import_cycles_between_top_level_modules(graph):
    found = cycles(top_level_edges(graph))
    assert not found, "import cycles between top-level modules:\n  " + "\n  ".join(" -> ".join(c) for c in found)


def test_no_import_cycles_between_modules(graph):
    found = cycles(module_edges(graph))
    assert not found, "import cycles between modules:\n  " + "\n  ".join(" -> ".join(c) for c in found)


def test_the_checker_catches_an_upward_import_a_sideways_one_and_a_cycle(tmp_path):
    """The rules themselves: a fake package with one import of each kind is caught, line and all."""
    package = tmp_path / "signt5"
    for name, text in {"__init__.py": "", "errors.py": "from .cli import main\n",
                       "cli.py": "from .errors import SignT5Error\n", "data/__init__.py": "",
                       "data/x.py": "import json\n\ndef f():\n    from signt5.models import y\n",
                       "models/__init__.py": "", "models/y.py": "from ..data.x import f\n",
                       "inference.py": "from .evaluation.e import g\n", "evaluation/__init__.py": "",
                       "evaluation/e.py": "from ..decoding import z\n", "decoding/__init__.py": "",
                       "decoding/z.py": ""}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = import_graph(package)
    assert graph["signt5.data.x"] == [("signt5.models.y", 4)]
    assert graph["signt5.evaluation.e"] == [("signt5.decoding.z", 1)]
    problems = layer_violations(graph)
    assert len(problems) == 3, problems
    assert any(p.startswith("signt5.errors (line 1) imports signt5.cli: up") for p in problems)
    assert any(p.startswith("signt5.data.x (line 4) imports signt5.models.y: up") for p in problems)
    assert any("sideways between siblings inference and evaluation" in p for p in problems)
    assert cycles(top_level_edges(graph)) == [["cli", "errors", "cli"], ["data", "models", "data"]]
    assert ["signt5.data.x", "signt5.models.y", "signt5.data.x"] in cycles(module_edges(graph))


if __name__ == "__main__":  # python tests/test_layers.py [SRC/signt5]: the cycles and violations of a tree
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE
    g = import_graph(root)
    for title, found in (("top-level cycles", cycles(top_level_edges(g))), ("module cycles", cycles(module_edges(g)))):
        print(f"{title}: {len(found)}")
        for c in found:
            print("  " + " -> ".join(c))
    problems = layer_violations(g)
    print(f"layer violations: {len(problems)}")
    for p in problems:
        print("  " + p)
