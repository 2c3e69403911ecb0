"""The CLI end to end on digits, and every bad input → one line on stderr, exit 2, no traceback.

Also: the CLI explains itself (every `aekit train` option has help, a default and its models), starts without
torch, reads --config files, and a run's config.json re-runs that run exactly.
"""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from aekit.cli import COMMANDS, build_parser, main
from aekit.cli.train import UNDOCUMENTED
from aekit.errors import DataError

FAST = ["--hidden", "32", "--latent-dim", "2", "--epochs", "2", "--batch-size", "64", "--no-progress"]
TINY = ["--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--batch-size", "128"]


def cli(*args, cwd=None):
    """Run `python -m aekit ARGS` in a subprocess (a real new user's invocation)."""
    return subprocess.run([sys.executable, "-m", "aekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def python(code: str):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def usage_error(capsys, *argv) -> str:
    """Run main(argv), expect argparse's exit 2, return the one stderr line."""
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("aekit: error:")
    return err


def help_of(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "vae"
    assert main(["-q", "train", "--model", "vae", "--data", "digits", "--out", str(out), *FAST]) == 0
    return out


@pytest.mark.slow  # quick subset under 3 min on a slow 2-core CPU (session 20)
def test_train_writes_report_and_evaluate_json(vae_run):
    names = {p.name for p in vae_run.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.csv", "report.html", "evaluation.json"} <= names
    r = cli("evaluate", vae_run, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("n", "split", "sse_per_image", "mse", "elbo", "recon", "kl"):
        assert key in out
    assert out["split"] == "test" and out["elbo"] < 0
    assert out["mse"] == pytest.approx(out["sse_per_image"] / 64)
    assert out["elbo"] == pytest.approx(-(out["recon"] + out["kl"]))


def test_generation_commands(vae_run, tmp_path):
    assert main(["-q", "sample", str(vae_run), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["-q", "reconstruct", str(vae_run), "--out", str(tmp_path / "r.png")]) == 0
    assert main(["-q", "interpolate", str(vae_run), "--a", "0", "--b", "5", "--spherical",
                 "--out", str(tmp_path / "i.png")]) == 0
    for f in ("s.png", "r.png", "i.png"):
        assert Image.open(tmp_path / f).size[0] > 50
    assert main(["-q", "sample", str(vae_run), "-n", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 8, 8)
    # --temperature 0: every draw is the decoded prior mode; a half-temperature draw lies nearer it than the prior's
    assert main(["-q", "sample", str(vae_run), "-n", "3", "--temperature", "0", "--out", str(tmp_path / "m.npy")]) == 0
    mode = np.load(tmp_path / "m.npy")
    assert np.allclose(mode, mode[:1])
    assert main(["-q", "sample", str(vae_run), "-n", "200", "--temperature", "0.5",
                 "--out", str(tmp_path / "h.npy")]) == 0
    assert main(["-q", "sample", str(vae_run), "-n", "200", "--out", str(tmp_path / "p.npy")]) == 0
    spread = {f: float(((np.load(tmp_path / f) - mode[:1]) ** 2).sum(axis=(1, 2, 3)).mean()) for f in ("h.npy", "p.npy")}
    assert spread["h.npy"] < spread["p.npy"]


def test_sample_rejects_a_bad_temperature(vae_run, tmp_path, capsys):
    code = main(["-q", "sample", str(vae_run), "--temperature", "-1", "--out", str(tmp_path / "s.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "temperature" in err, err
    assert not (tmp_path / "s.png").exists()


def test_encode_npy_and_csv(vae_run, tmp_path):
    assert main(["-q", "encode", str(vae_run), "--out", str(tmp_path / "c.npy")]) == 0
    codes = np.load(tmp_path / "c.npy")
    assert codes.shape == (359, 2)
    assert main(["-q", "encode", str(vae_run), "--split", "val", "--out", str(tmp_path / "c.csv")]) == 0
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "z0,z1,label" and len(lines) == 1 + 144


def test_models_and_datasets_listing(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "vae" in out and "pca" in out
    assert main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out


BAD = [
    (["train", "--model", "vea", "--out", "{tmp}/r"], "unknown model 'vea': did you mean 'vae'?"),
    (["train", "--data", "digitz", "--out", "{tmp}/r"], "unknown dataset 'digitz'"),
    (["train", "--model", "ae", "--beta", "4", "--out", "{tmp}/r"], "unknown option --beta for --model ae"),
    (["train", "--latent-dim", "many", "--out", "{tmp}/r"], "expected an integer"),
    (["train", "--likelihood", "poisson", "--out", "{tmp}/r"], "is not one of"),
    (["train", "--data", "idx:{tmp}/nowhere", "--out", "{tmp}/r"], ""),
    (["train", "--frobnicate", "3", "--out", "{tmp}/r"], "unrecognized arguments: --frobnicate"),
    (["train", "--latent_dim", "3", "--out", "{tmp}/r"], "unknown option --latent_dim: did you mean '--latent-dim'?"),
    (["train", "--latnet-dim", "3", "--out", "{tmp}/r"], "unknown option --latnet-dim: did you mean '--latent-dim'?"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/r"], "is a folder: use --data images:"),
    (["train", "--config", "{tmp}/nothing.toml", "--out", "{tmp}/r"], "does not exist"),
    (["trian", "--out", "{tmp}/r"], "unknown command 'trian': did you mean 'train'?"),
    (["train", "--data", "digits"], "needs --out"),
    (["evaluate", "{tmp}/nothing"], "does not exist"),
    (["train", "--model", "ae", "--tied", "--arch", "conv", "--out", "{tmp}/r"], "--tied works with --arch mlp"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    try:
        code = main([a.format(tmp=tmp_path) for a in args])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("aekit: error:") and message in err
    assert not (tmp_path / "r").exists()  # nothing half-written


@pytest.mark.parametrize("args,message", [BAD[0], BAD[7]])
def test_bad_input_in_a_new_process_has_no_traceback(tmp_path, args, message):
    r = cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr


def test_evaluate_with_other_data_of_wrong_shape(vae_run, tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, size=(30, 1, 5, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    r = cli("evaluate", vae_run, "--data", f"npy:{tmp_path / 'x.npy'}")
    assert r.returncode == 2 and "expects (1, 8, 8)" in r.stderr and "Traceback" not in r.stderr


def test_resume_cli_continues_to_more_epochs(vae_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(vae_run, run)
    assert main(["-q", "train", "--resume", str(run), "--epochs", "3"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3


# ----------------------------------------------------------------------------------------------- starting up


def test_help_and_light_commands_do_not_import_torch():
    r = python("""
        import sys
        from aekit.cli import main
        for argv in (["--help"], ["evaluate", "--help"], ["models", "--help"], ["serve", "--help"],
                     ["segment", "--help"], ["export", "--help"], ["traverse", "--help"]):
            try:
                main(argv)
            except SystemExit as e:
                assert e.code == 0, (argv, e.code)
            assert "torch" not in sys.modules, argv
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


def test_top_level_help_lists_every_command(capsys):
    out = help_of(capsys)
    for name, command in COMMANDS.items():
        assert name in out and command.help.split()[0] in out
    assert "bench" not in out  # benchmarks live in benchmarks/, not in the CLI


def test_cli_starts_without_the_unix_only_resource_module():
    """Windows has no `resource`: parsing every command and running one must not need it."""
    r = python("""
        import sys
        sys.modules["resource"] = None  # `import resource` now raises ImportError
        from aekit.cli import build_parser, main
        build_parser()  # every sub-command in full
        assert main(["models"]) == 0
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


def test_verbosity_flags_work_before_and_after_the_command():
    for argv in (["-q", "train"], ["train", "-q"], ["train", "--epochs", "1", "--quiet"]):
        args = build_parser(argv).parse_args(argv)
        assert args.quiet and not args.verbose and args.command == "train", argv
    for argv in (["-v", "models"], ["models", "-v"]):
        args = build_parser(argv).parse_args(argv)
        assert args.verbose and not args.quiet, argv
    args = build_parser(["models"]).parse_args(["models"])
    assert not args.quiet and not args.verbose


def test_quiet_after_the_command_silences_training(tmp_path, capsys):
    assert main(["train", "-q", "--model", "pca", "--latent-dim", "2", "--no-report", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "run written to" not in err and "it/s" not in err  # info logging and progress bars are off
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["progress"] is False


# ----------------------------------------------------------------------------------------------- help


def _train_options(model=None):
    """(flag strings, help) of every option `aekit train [--model M] --help` lists."""
    import argparse

    argv = ["train"] + (["--model", model] if model else [])
    sub = next(a for a in build_parser(argv)._actions if isinstance(a, argparse._SubParsersAction))
    return [(a.option_strings, a.help) for a in sub.choices["train"]._actions if a.help is not argparse.SUPPRESS]


def _all_models():
    from aekit.models import MODELS

    return list(MODELS)


@pytest.mark.parametrize("model", [None, *_all_models()])
def test_every_train_option_has_help_text(model, capsys):
    """Fails while a config field lacks its `opt(..., help)` text."""
    options = _train_options(model)
    assert len(options) > 30
    undocumented = [flags[0] for flags, text in options if not text or UNDOCUMENTED in text]
    assert not undocumented, f"options without help text: {undocumented}"
    out = help_of(capsys, "train", *(["--model", model] if model else []))
    assert UNDOCUMENTED not in out


def test_train_help_shows_defaults_and_models(capsys):
    out = " ".join(help_of(capsys, "train").split())  # argparse wraps lines: compare word sequences
    assert re.search(r"--latent-dim N [^(]+ \(default 16 \(sparse-ae, contractive-ae: 64\); models: ae, linear-ae,", out)
    assert "models: unet" in out and "models: vae" in out and "models: stacked-ae" in out
    assert "--epochs N passes over the training split (default 20 (unet: 6))" in out
    assert "(with --arch conv;" in out  # a field's scope
    assert "--val-fraction X" in out and "--image-size N|none" in out  # data options


def test_train_help_for_one_model_lists_only_what_applies(capsys):
    from aekit.models import MODELS

    out = help_of(capsys, "train", "--model", "vae")
    flags = {f for flags, _ in _train_options("vae") for f in flags}
    for field in ("beta", "likelihood", "latent_dim", "hidden"):  # VAE options
        assert "--" + field.replace("_", "-") in flags
    for field in ("tied", "depth", "whiten", "sparsity", "pretrain_epochs"):  # other models' options
        assert "--" + field.replace("_", "-") not in flags
        assert f"--{field.replace('_', '-')} " not in out
    assert {"--epochs", "--lr", "--image-size", "--label-column"} <= flags  # training and data options
    assert "models:" not in out  # one model: no per-option model lists
    assert MODELS["vae"].help in " ".join(out.split())
    unet = " ".join(help_of(capsys, "train", "--model", "unet").split())
    assert "--epochs N passes over the training split (default 6)" in unet  # that model's own defaults


def test_boolean_options_show_and_accept_both_forms(capsys):
    out = help_of(capsys, "train")
    for name in ("skip", "augment", "progress", "download", "tied"):
        assert f"--{name}, --no-{name}" in out, name
    argv = ["train", "--no-skip", "--augment", "--no-download"]
    args = vars(build_parser(argv).parse_args(argv))
    assert args["skip"] is False and args["augment"] is True and args["download"] is False
    assert "progress" not in args and "tied" not in args  # not given: the model's default applies


def test_experiment_help_lists_every_experiment_with_one_line(capsys):
    from aekit.cli.experiment import experiment_lines

    out = help_of(capsys, "experiment")
    rows = experiment_lines()
    assert len(rows) >= 9
    for name, text in rows:
        assert text != "(no description)", name
        assert any(line.split()[:1] == [name] and text[:30] in line for line in out.splitlines()), name


# ----------------------------------------------------------------------------------------------- data hints


def test_bare_path_given_as_data_suggests_its_prefix(tmp_path):
    from aekit.data import parse_spec

    photos = tmp_path / "photos"
    photos.mkdir()
    pairs = tmp_path / "pairs"
    (pairs / "images").mkdir(parents=True)
    (pairs / "masks").mkdir()
    mnist = tmp_path / "mnist-files"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"")
    table = tmp_path / "x.npy"
    np.save(table, np.zeros((3, 2), np.float32))
    for path, prefix in ((photos, "images"), (pairs, "seg"), (mnist, "idx"), (table, "npy")):
        with pytest.raises(DataError, match=f"use --data {prefix}:{path}$"):
            parse_spec(str(path))
    with pytest.raises(DataError, match="did you mean 'digits'"):  # not a path: the usual suggestion
        parse_spec("digitz")


def test_csv_text_column_suggests_label_column(tmp_path):
    from aekit.data import DataConfig, load_data

    f = tmp_path / "t.csv"
    f.write_text("a,b,species\n" + "".join(f"{i},{i * 2},{'cat' if i % 2 else 'dog'}\n" for i in range(20)))
    with pytest.raises(DataError, match="column 'species' holds text.*pass --label-column species"):
        load_data(DataConfig(f"csv:{f}"))
    assert load_data(DataConfig(f"csv:{f}", label_column="species")).classes == ("cat", "dog")
    g = tmp_path / "two.csv"
    g.write_text("a,kind,species\n" + "".join(f"{i},x{i % 3},{'cat' if i % 2 else 'dog'}\n" for i in range(20)))
    with pytest.raises(DataError, match="column 'kind' holds text.*drop the column"):
        load_data(DataConfig(f"csv:{g}", label_column="species"))
    h = tmp_path / "stray.csv"  # numbers with one stray word: the cell-level message, not the label hint
    h.write_text("a,b\n" + "".join(f"{i},{'oops' if i == 5 else i}\n" for i in range(20)))
    with pytest.raises(DataError, match="row 7, column 'b' is not a number"):
        load_data(DataConfig(f"csv:{h}"))


# ----------------------------------------------------------------------------------------------- --config


def _config(run):
    return json.loads((run / "config.json").read_text())


SECTIONS = ("model", "model_config", "data", "train")


def test_config_json_of_a_run_reruns_it_exactly(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["-q", "train", "--model", "sparse-ae", "--data", "digits", *TINY, "--no-report", "--out", str(a)]) == 0
    assert main(["-q", "train", "--config", str(a / "config.json"), "--no-report", "--out", str(b)]) == 0
    ca, cb = _config(a), _config(b)
    assert {k: ca[k] for k in SECTIONS} == {k: cb[k] for k in SECTIONS}
    assert ca["model_config"]["code_activation"] == "relu" and ca["model_config"]["input_shape"] == [1, 8, 8]


# extra options that exercise a model's resolved (data-dependent) fields; every registered model gets a case
# from its registry entry's ``tiny`` options whether or not it is listed here
ROUND_TRIP_EXTRA = {
    "ae": ["--corruption", "mask:0.1"],
    "stacked-ae": ["--pretrain-epochs", "1", "--finetune-epochs", "1"],
    "vae": ["--likelihood", "auto", "--beta", "2"],
}


def _flags(options):
    """Registry options as CLI flags: ``{"hidden": (16,), "latent_dim": 3}`` → ``--hidden 16 --latent-dim 3``."""
    out = []
    for k, v in options.items():
        value = ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
        out += [f"--{k.replace('_', '-')}", value]
    return out


QUICK_ROUND_TRIP = ("vae", "ae", "cvae", "unet")  # one of each config family in the quick subset; CI runs all


def _round_trip_models():
    from aekit.models import MODELS

    return [m if m in QUICK_ROUND_TRIP else pytest.param(m, marks=pytest.mark.slow) for m in MODELS]


@pytest.mark.parametrize("model", _round_trip_models())
def test_config_json_round_trip_for_every_model(model, tmp_path):
    from aekit.models import MODELS

    spec = MODELS[model]
    data = (["--data", "cells", "--cells-count", "12", "--image-size", "16", "--batch-size", "4"]
            if spec.model_cls.supervised else ["--batch-size", "128"])
    flags = ["--epochs", "1", *data, *_flags(spec.tiny), *ROUND_TRIP_EXTRA.get(model, [])]
    if model == "stacked-ae":  # --finetune-epochs sets the epochs: --epochs would contradict it
        flags = flags[2:]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["-q", "train", "--model", model, *flags, "--no-report", "--out", str(a)]) == 0
    assert main(["-q", "train", "--config", str(a / "config.json"), "--no-report", "--out", str(b)]) == 0
    ca, cb = _config(a), _config(b)
    assert {k: ca[k] for k in SECTIONS} == {k: cb[k] for k in SECTIONS}


def test_config_file_flat_toml_with_flags_overriding(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('model = "vae"\ndata = "digits"\nlatent-dim = 3\nhidden = [16]\nepochs = 1\nbeta = 2.5\n\n'
                 "[train]\nbatch_size = 128\nlr = 0.002\n")
    out = tmp_path / "r"
    assert main(["-q", "train", "--config", str(f), "--beta", "4", "--no-report", "--out", str(out)]) == 0
    c = _config(out)
    assert c["model"] == "vae" and c["data"]["spec"] == "digits"
    assert c["model_config"]["latent_dim"] == 3 and c["model_config"]["hidden"] == [16]
    assert c["model_config"]["beta"] == 4.0  # the flag wins over the file
    assert c["train"]["epochs"] == 1 and c["train"]["batch_size"] == 128 and c["train"]["lr"] == 0.002


def test_config_file_json_and_yaml_give_the_same_options(tmp_path):
    from aekit.cli._configfile import read_config_file

    (tmp_path / "a.json").write_text(json.dumps({"model": "ae", "latent_dim": 4, "hidden": [8, 4], "tied": True}))
    expected = {"model": "ae", "latent_dim": 4, "hidden": [8, 4], "tied": True}
    assert read_config_file(tmp_path / "a.json") == expected
    (tmp_path / "a.toml").write_text('model = "ae"\nlatent_dim = 4\nhidden = [8, 4]\ntied = true\n')
    assert read_config_file(tmp_path / "a.toml") == expected
    pytest.importorskip("yaml")
    (tmp_path / "a.yaml").write_text("model: ae\nlatent-dim: 4\nhidden: [8, 4]\ntied: true\n")
    assert read_config_file(tmp_path / "a.yaml") == expected


@pytest.mark.parametrize("name,text,message", [
    ("bad.toml", "latent_dim = = 3\n", "is not valid TOML"),
    ("bad.json", "{\"latent_dim\": }", "is not valid JSON (line 1"),
    ("run.ini", "x=1", "use a .toml, .json or .yaml"),
    ("list.json", "[1, 2]", "must hold a table of options"),
    ("sect.toml", "[optimiser]\nlr = 1\n", "unknown section [optimiser]"),
    ("twice.json", json.dumps({"epochs": 2, "train": {"epochs": 3}}), "'epochs' is set twice"),
    ("typo.toml", "latnt_dim = 3\n", "unknown option --latnt-dim for --model vae: did you mean --latent-dim?"),
])
def test_config_file_errors_are_one_line(tmp_path, capsys, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    assert main(["-q", "train", "--config", str(f), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_config_input_shape_must_agree_with_the_data(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"model": "pca", "model_config": {"input_shape": [1, 9, 9], "latent_dim": 2},
                             "data": {"spec": "digits"}, "train": {}}))
    assert main(["-q", "train", "--config", str(f), "--out", str(tmp_path / "r")]) == 2
    assert "input_shape [1, 9, 9] is not the shape of the data ([1, 8, 8])" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    f.write_text(json.dumps({"model": "pca", "model_config": {"input_shape": [1, 8, 8], "latent_dim": 2},
                             "data": {"spec": "digits"}, "train": {}}))
    assert main(["-q", "train", "--config", str(f), "--no-report", "--out", str(tmp_path / "r")]) == 0


def test_resume_refuses_a_config_file(tmp_path, capsys):
    assert main(["-q", "train", "--resume", str(tmp_path), "--config", str(tmp_path / "c.toml")]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_main_gives_the_root_logger_back(tmp_path):
    # a handler left on the caller's (later closed) stderr made the next test's log calls print "Logging error"
    import logging

    root = logging.getLogger()
    before = root.handlers[:], root.level
    assert main(["train", "--model", "ae", "--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--no-report",
                 "--out", str(tmp_path / "r")]) == 0
    assert (root.handlers, root.level) == before
