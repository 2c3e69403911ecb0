"""Print pip constraints that pin every dependency of aekit to its floor: ``NAME==X`` for each ``NAME>=X`` in
pyproject.toml's ``dependencies`` and the optional extras named on the command line (default: those of
``[test]``).  torch is left out (scripts/test_floors.sh installs the one CPU wheel there is, constraints.txt).

    python scripts/floors.py [EXTRA ...] > floors.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip install tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"torch"}  # only one torch CPU wheel is available here: constraints.txt's


def requirements(project: dict, extras: list[str]) -> list[str]:
    reqs = list(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in project["optional-dependencies"][extra]:
            m = re.fullmatch(r"aekit\[(.+)\]", r.replace(" ", ""))
            if m:  # a self-reference: aekit[serve,onnx,...]
                todo += m.group(1).split(",")
            else:
                reqs.append(r)
    return reqs


def main(argv: list[str]) -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = argv or ["test"]
    out = []
    for req in requirements(project, extras):
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
        if m is None:
            sys.stderr.write(f"floors.py: cannot read the requirement {req!r}\n")
            return 1
        name, spec = m.group(1), m.group(2)
        if name.lower() in SKIP:
            continue
        floor = re.search(r"(?:>=|==)\s*([0-9][^,;\s]*)", spec)
        if floor is None:
            sys.stderr.write(f"floors.py: {req!r} has no floor: add one to pyproject.toml\n")
            return 1
        out.append(f"{name}=={floor.group(1)}")
    sys.stdout.write("\n".join(sorted(set(out), key=str.lower)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
