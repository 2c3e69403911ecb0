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

SRC = Path(__file__).resolve().parents[1] / "src" / "aekit"

# rank of each layer: a module may import its own layer and lower ones only
LAYERS: dict[str, int] = {
    "errors": 0, "registry": 0, "config": 0, "fileio": 0, "losses": 0, "version": 0,
    "data": 1,
    "models": 2, "latent": 2, "infer": 2,
    "train": 3,
    "evaluate": 4,
    "viz": 5,
    "pipeline": 6, "experiments": 6, "export": 6, "hub": 6, "sklearn": 6, "serve": 6, "cli": 6, "__init__": 6,
    "__main__": 6,
}


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


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


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
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
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


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    bad = tmp_path / "aekit" / "data" / "oops.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from ..train import fit\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "aekit")
    assert violations() == ["aekit.data.oops:2 (data) imports aekit.train (train), a higher layer"]


PROBES = re.compile(r"getattr\((?:self\.)?(?:run\.)?model\b|isinstance\([\w.]*model\w*,\s*\(?(?:AE|VAE|UNet|PCA|StackedAE)\b"
                    r"|hasattr\((?:self\.)?(?:run\.)?model\b")


def test_one_version_string():
    from aekit.version import __version__

    text = (SRC.parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__


def test_no_capability_probes_outside_models():
    hits = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if "models" not in p.relative_to(SRC).parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if PROBES.search(line)]
    assert hits == []


if __name__ == "__main__":
    for mod, deps in graph().items():
        ups = sorted({layer_of(d) for d, _, _ in deps} - {layer_of(mod)})
        if ups:
            print(f"{mod} ({layer_of(mod)}) -> {', '.join(ups)}")
    print("violations:", violations() or "none")
    print("cycles between layers:", cycles() or "none")
