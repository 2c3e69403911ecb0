"""Layers depend one way: data → models → train → evaluate → viz → pipeline / CLI / serve.

The import graph of the package is read from the source (every ``import`` / ``from … import``, at module level
or inside functions, with ``TYPE_CHECKING`` blocks left out: they never run).  ``python tests/test_layers.py``
prints the module-level graph between layers and any violation.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "aekit"

# rank of each layer: a module may import its own layer and lower ones only
LAYERS: dict[str, int] = {
    "errors": 0, "registry": 0, "config": 0, "fileio": 0, "losses": 0, "version": 0,
    "data": 1,
    "models": 2, "latent": 2, "infer": 2,
    "train": 3,
    "evaluate": 4,
    "viz": 5,
    "pipeline": 6, "experiments": 6, "export": 6, "hub": 6, "sklearn": 6, "serve": 6, "__init__": 6,
    "cli": 7, "__main__": 7,
}
# edges the ranks would allow but the design forbids: evaluation must not depend on the training machinery
# (the trainer, its callbacks, the run writer); the safetensors reading in train.checkpoint is allowed
FORBIDDEN = {("evaluate", "aekit.train.trainer"), ("evaluate", "aekit.train.callbacks"), ("evaluate", "aekit.train.run"),
             ("evaluate", "aekit.train.stages")}


def layer_of(module: str) -> str:
    """``aekit.train.trainer`` → ``train``; ``aekit`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:`` exactly (not ``if not TYPE_CHECKING:``)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported aekit module, line, at module level)`` for every aekit import that runs."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from X import name``: the module X.name when it is one (``from aekit import viz``), else X
            names = [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and ast.unparse(node.func) in
              ("importlib.import_module", "import_module", "__import__")):
            names = [node.args[0].value]  # importlib.import_module("aekit.viz.report") with a constant name
        else:
            continue
        for name in names:
            if name == "aekit" or name.startswith("aekit."):
                out.append((name, node.lineno, id(node) in top_level))
    return out


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {module_name(p): imports(p) for p in sorted(SRC.rglob("*.py"))}


def violations() -> list[str]:
    bad = []
    for mod, deps in graph().items():
        mine = layer_of(mod)
        for dep, line, _ in deps:
            theirs = layer_of(dep)
            if theirs not in LAYERS or mine not in LAYERS:
                bad.append(f"{mod}:{line} imports {dep}: layer {theirs if theirs not in LAYERS else mine} is unranked")
            elif LAYERS[theirs] > LAYERS[mine]:
                bad.append(f"{mod}:{line} ({mine}) imports {dep} ({theirs}), a higher layer")
            elif any(mine == a and (dep == b or dep.startswith(b + ".")) for a, b in FORBIDDEN):
                bad.append(f"{mod}:{line} ({mine}) imports {dep} ({theirs}), a forbidden edge")
    return bad


def cycles() -> list[list[str]]:
    """Cycles among module-level imports (package-qualified modules), by depth-first search."""
    modules = graph()
    edges = {m: sorted({d for d, _, top in deps if top and d in modules and d != m}) for m, deps in modules.items()}
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in edges.get(m, []):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m)
    # a package's __init__ importing its own submodules (and those importing siblings) is not a layering cycle
    return [c for c in found if len({layer_of(x) for x in c}) > 1]


def test_no_import_from_a_higher_layer():
    assert violations() == []


def test_no_import_cycle_between_layers():
    assert cycles() == []


@pytest.mark.parametrize("path,code,expected", [
    ("data/oops.py", "def f():\n    from ..train import fit\n", "aekit.data.oops:2 (data) imports aekit.train"),
    ("data/oops.py", "import aekit.viz\n", "aekit.data.oops:1 (data) imports aekit.viz"),
    ("data/oops.py", "from aekit import viz\n", "aekit.data.oops:1 (data) imports aekit.viz"),
    ("models/__init__.py", "from ..evaluate import x\n", "aekit.models:1 (models) imports aekit.evaluate"),
    ("models/oops.py", "import importlib\nimportlib.import_module('aekit.cli')\n",
     "aekit.models.oops:2 (models) imports aekit.cli"),
    ("evaluate/oops.py", "from ..train.trainer import fit\n",
     "aekit.evaluate.oops:1 (evaluate) imports aekit.train.trainer (train), a forbidden edge"),
    ("models/oops.py", "from typing import TYPE_CHECKING\nif not TYPE_CHECKING:\n    from ..viz import x\n",
     "aekit.models.oops:3 (models) imports aekit.viz"),
])
def test_the_check_catches_an_upward_import(tmp_path, monkeypatch, path, code, expected):
    (tmp_path / "aekit" / "viz").mkdir(parents=True)
    (tmp_path / "aekit" / "viz" / "__init__.py").write_text("")  # a module for ``from aekit import viz``
    bad = tmp_path / "aekit" / path
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(code)
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "aekit")
    found = violations()
    assert len(found) == 1 and found[0].startswith(expected), found


def test_type_checking_imports_are_not_edges(tmp_path, monkeypatch):
    ok = tmp_path / "aekit" / "models" / "fine.py"
    ok.parent.mkdir(parents=True)
    ok.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..train import Trainer\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "aekit")
    assert violations() == []


def test_one_version_string():
    from aekit.version import __version__

    text = (SRC.parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__


def model_classes() -> list[str]:
    """Every class defined under models/ (the Autoencoder subclasses, their configs and helpers)."""
    names: list[str] = []
    for p in (SRC / "models").glob("*.py"):
        names += [n.name for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef)]
    return sorted(set(names))


def probes() -> re.Pattern[str]:
    """Capability probes: getattr/hasattr on a model, type(model) comparisons, isinstance/issubclass against a
    class defined in models/."""
    obj = r"(?:self\.)?(?:run\.)?(?:model|net|m|stage)\b"
    classes = "|".join(model_classes())
    return re.compile(rf"(?:getattr|hasattr)\({obj}|type\({obj}\)\s*(?:is|==)|"
                      rf"(?:isinstance|issubclass)\([^,]+,\s*\(?[^)]*\b(?:{classes})\b")


def test_no_capability_probes_outside_models():
    pattern = probes()
    hits = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in SRC.rglob("*.py")
            if "models" not in p.relative_to(SRC).parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_the_probe_check_catches_probes():
    pattern = probes()
    for line in ('getattr(model, "supervised", False)', "hasattr(run.model, 'nll')", "isinstance(net, (AE, VAE))",
                 "type(model) is UNet", "issubclass(cls, WAE)", "isinstance(q, DiagonalGaussian)"):
        assert pattern.search(line), line
    assert not pattern.search("isinstance(value, (int, float))")


if __name__ == "__main__":
    for mod, deps in graph().items():
        ups = sorted({layer_of(d) for d, _, _ in deps} - {layer_of(mod)})
        if ups:
            print(f"{mod} ({layer_of(mod)}) -> {', '.join(ups)}")
    print("violations:", violations() or "none")
    print("cycles between layers:", cycles() or "none")
