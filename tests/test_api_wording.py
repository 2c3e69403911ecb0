"""Messages name the fix the way the caller spells it: ``overwrite=True`` in Python, ``--overwrite`` in the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

import aekit
from aekit.cli import main
from aekit.errors import ConfigError, command_line, option, option_name


def test_option_wording_follows_the_caller():
    assert (option("overwrite"), option("resume", Path("runs/a")), option_name("latent_dim")) == \
        ("overwrite=True", "resume='runs/a'", "latent_dim")
    assert option("latent_dim", 8) == "latent_dim=8"
    with command_line():
        assert (option("overwrite"), option("resume", Path("runs/a")), option_name("latent_dim")) == \
            ("--overwrite", "--resume runs/a", "--latent-dim")
    assert option("overwrite") == "overwrite=True"  # the block is left: back to Python wording


def test_existing_directory_python_api_says_overwrite_true(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    with pytest.raises(ConfigError) as e:
        aekit.train("ae", "digits", out, epochs=1, progress=False)
    msg = str(e.value)
    assert "already exists" in msg and "overwrite=True" in msg and f"resume={str(out)!r}" in msg
    assert "--" not in msg  # no command-line flags for a Python caller
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing was written


def test_existing_directory_cli_says_overwrite_flag(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    assert main(["train", "--model", "ae", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aekit: error: run directory") and "--overwrite" in err and f"--resume {out}" in err
    assert "overwrite=True" not in err and err.count("\n") == 1
