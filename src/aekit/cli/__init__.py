"""Command-line interface: a thin layer over the library API, one module per command.

Each command is a :data:`COMMANDS` registry entry naming its module under ``aekit.cli``, which defines
``add_arguments(parser, argv)`` and ``cmd_<name>(args) -> int`` and imports the library (torch) only inside
them.  Only the chosen command's parser is built in full, so ``aekit --help`` does not import torch.

Flags become a dict of options, the library validates them into typed configs (unknown keys and wrong types
are rejected with a message that says how to fix them), and the library does the work.  Every user error
exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import AekitError, command_line
from ..registry import Registry, did_you_mean
from ._common import Parser, add_verbosity

log = logging.getLogger("aekit")


@dataclasses.dataclass(frozen=True)
class Command:
    """A sub-command: ``module`` defines ``add_arguments(parser, argv)`` and ``cmd_<name>(args)``."""

    module: str
    help: str

    def load(self, name: str) -> tuple[Callable[[argparse.ArgumentParser, Sequence[str]], None],
                                       Callable[[argparse.Namespace], int]]:
        mod = importlib.import_module(self.module)
        return mod.add_arguments, getattr(mod, "cmd_" + name.replace("-", "_"))


COMMANDS: Registry[Command] = Registry("command")
for _name, _help in (
    ("train", "train a model and write a run directory"),
    ("evaluate", "evaluate a run on a data split"),
    ("reconstruct", "originals vs reconstructions as a PNG"),
    ("sample", "decode draws from the prior (generative models)"),
    ("interpolate", "decode a path between the codes of two inputs"),
    ("encode", "write the codes of a data split to .npy or .csv"),
    ("traverse", "sweep each latent unit from -3 to 3 around a code (rows by KL)"),
    ("anomaly", "anomaly scores per sample (reconstruction error or -ELBO), AUROC/AUPRC"),
    ("segment", "segment images with a trained unet run: a PNG mask and an overlay each"),
    ("export", "export a run's encoder and decoder (ONNX)"),
    ("serve", "explore a run in the browser (latent map, sliders, sampling, segmentation)"),
    ("experiment", "run a named experiment (table, plots and summary.md)"),
    ("demo", "train the default model on the embedded digits and write a report"),
    ("models", "list the registered models"),
    ("datasets", "list the data sources"),
):
    COMMANDS.register(_name, Command(f"aekit.cli.{_name}", _help))


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not a global option), or None."""
    for tok in argv:
        if tok == "--":
            return None
        if not tok.startswith("-"):
            return tok
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``aekit``.  With ``argv`` only the sub-command it names is built in full (the others are
    listed with their one-line help); without, every sub-command is (this imports torch)."""
    p = Parser(prog="aekit", description="Build, train, evaluate and explore autoencoders.",
               epilog="`aekit COMMAND --help` explains a command; -v / -q work before or after it.")
    add_verbosity(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser,
                           title="commands")
    chosen = None if argv is None else _command_of(argv)
    for name, command in COMMANDS.items():
        sp = sub.add_parser(name, help=command.help, description=command.help[:1].upper() + command.help[1:] + ".")
        if argv is None or name == chosen:
            add_arguments, func = command.load(name)
            add_verbosity(sp, suppress=True)
            add_arguments(sp, [] if argv is None else list(argv))
            sp.set_defaults(func=func)
    return p


def _check_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    name = _command_of(argv)
    if name is not None and name not in COMMANDS:
        parser.error(f"unknown command {name!r}: {did_you_mean(name, COMMANDS)}")


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _check_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """A ``--flag`` the chosen command does not know: one line with the closest known flag."""
    name = _command_of(argv)
    if name is None:
        return
    sp = _subparser(parser, name)
    if sp is None:
        return
    known = [s for s in sp._option_string_actions if s.startswith("--")]
    rest = list(argv)[list(argv).index(name) + 1:]
    for tok in rest:
        if tok == "--":
            break
        if not tok.startswith("--") or len(tok) < 3:
            continue
        flag = tok.split("=", 1)[0]
        if flag in known or (sp.allow_abbrev and any(k.startswith(flag) for k in known)):
            continue
        dashed = flag.replace("_", "-")
        hint = f"did you mean '{dashed}'?" if dashed in known else did_you_mean(flag, known, listing=False)
        if hint:
            sp.error(f"unknown option {flag}: {hint}")
        sp.error(f"unrecognized arguments: {flag}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        _check_command(parser, argv)
        _check_options(parser, argv)
        args = parser.parse_args(argv)
    except AekitError as e:  # e.g. a bad --model while building the train options
        sys.stderr.write(f"aekit: error: {e}\n")
        return e.exit_code
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # the command logs to this stderr; the root logger is given back as it was (``main`` called from Python, e.g.
    # a test whose stderr is closed afterwards, must not leave a handler on a stream it does not own)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    try:
        with command_line():  # messages name flags (--overwrite), not the Python API's keywords
            return args.func(args)
    except AekitError as e:
        sys.stderr.write(f"aekit: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("aekit: interrupted; a training run continues with `aekit train --resume RUN`\n")
        return 130
    finally:
        for h in root.handlers[:]:
            if h not in saved[0]:
                root.removeHandler(h)
                h.close()
        for h in saved[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved[1])


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
