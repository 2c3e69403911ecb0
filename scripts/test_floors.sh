#!/usr/bin/env bash
# The quick tests at aekit's dependency floors: a separate venv where every dependency of `aekit[test]` is
# pinned to the floor pyproject.toml declares (NAME==X for each NAME>=X, from scripts/floors.py), then
# `pytest -m "not slow"` against that install.  Used by `make test-floors`.
#
#   scripts/test_floors.sh [PYTEST ARGS...]        (PY=python3.11, FLOORS_VENV=DIR; defaults python3, build/venv-floors)
#
# torch is the exception: it stays at constraints.txt's pin (2.13.0), because the only torch CPU wheel
# available on the machines this project runs on is that one; the torch floor (2.5) is set from torch's
# changelog, not tested.  Floors are tested on the Python this script runs (CPython 3.11 here).
# The tests run on a copy of the working tree (tracked and untracked files, not ignored ones), installed as a
# wheel, so nothing is written into the checkout but the venv (build/ by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${FLOORS_VENV:-build/venv-floors}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aekit-floors.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$PY" scripts/floors.py test > "$WORK/floors.txt"
echo "== floors (torch: $(grep -E '^torch==' constraints.txt))"
tr '\n' ' ' < "$WORK/floors.txt"; echo

"$PY" - "$WORK/tree" <<'PY'
import pathlib, shutil, subprocess, sys
dst = pathlib.Path(sys.argv[1])
try:
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True,
                           check=True).stdout.decode().split("\0")
except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): everything but the venvs
    files = [str(p) for p in pathlib.Path(".").rglob("*")
             if p.is_file() and p.parts[0] not in ("build", ".git") and not p.parts[0].startswith(".venv")]
for f in filter(None, files):
    src = pathlib.Path(f)
    if src.is_file():  # tracked files deleted in the working tree are listed too
        (dst / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / src)
PY

echo "== venv $VENV"
"$PY" -m venv --clear "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -c constraints.txt torch==2.13.0
"$VENV/bin/pip" install -q -c constraints.txt -c "$WORK/floors.txt" "$WORK/tree[test]"
"$VENV/bin/pip" check
echo "== installed"
names=$(sed -e 's/==.*//' -e 's/[-_.]/[-_.]/g' "$WORK/floors.txt" | paste -sd'|')
"$VENV/bin/pip" list --format=freeze | grep -iE "^($names|torch)=="

echo "== pytest -m 'not slow' at the floors"
cd "$WORK/tree"
"$VENV/bin/python" -m pytest -m "not slow" -p no:cacheprovider "$@"
