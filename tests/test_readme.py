"""The README's examples are executed: its Python block runs, and its quick-start commands exist."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "readme-vae" / "model.safetensors").exists()


def test_readme_quick_start_commands_are_make_targets():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick, re.M)
    assert commands == ["make demo", "make test"]
    targets = subprocess.run(["make", "-pn", "-f", str(ROOT / "Makefile")], capture_output=True, text=True).stdout
    for c in commands:
        assert re.search(rf"^{c.split()[1]}:", targets, re.M), c
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_cli_commands_parse():
    """Every `aekit ...` line in the README is accepted by the argument parser."""
    from aekit.cli import build_parser

    parser = build_parser()
    lines = re.findall(r"^aekit (.+?)(?:\s+#.*)?$", README.replace("\\\n", " "), re.M)
    assert len(lines) >= 8
    for line in lines:
        args = line.split()
        parser.parse_args(args)
