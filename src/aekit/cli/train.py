"""``aekit train``: every config field of the models, the trainer and the data is an option.

The options come from the config dataclasses (``aekit.config.opt`` metadata: help text and the condition under
which a field applies); which models a model option applies to follows from which registered models' config
classes have the field.  ``aekit train --model vae --help`` lists only what applies to a VAE, plus the training
and data options.  ``--config FILE`` reads options from a TOML/JSON/YAML file (a run's ``config.json`` is one),
and flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

from ..errors import AekitError, ConfigError
from ._common import summary

log = logging.getLogger("aekit")

INTERNAL = ("input_shape", "spec")  # set from the data / by --data, not options
UNDOCUMENTED = "no description yet"  # shown (with the type) for a field whose help text is empty
GROUPS = {"model": "model options", "train": "training options", "data": "data options"}
# the flags of `aekit train` itself, not config fields
RESERVED = ("command", "func", "verbose", "quiet", "model", "data_spec", "out", "resume", "overwrite", "no_report",
            "config")


@dataclasses.dataclass
class Option:
    """One config field as an option of ``aekit train``; per-model facts are keyed by model name."""

    name: str
    group: str  # model | train | data
    types: dict[str | None, Any] = dataclasses.field(default_factory=dict)
    helps: dict[str | None, tuple[str, str]] = dataclasses.field(default_factory=dict)  # (help, scope)
    defaults: dict[str | None, Any] = dataclasses.field(default_factory=dict)  # None: the field's own default
    models: list[str] = dataclasses.field(default_factory=list)  # model options: the models that have the field

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def applies_to(self, model: str | None) -> bool:
        return model is None or self.group != "model" or model in self.models

    def type_for(self, model: str | None) -> Any:
        return self.types.get(model) or next(iter(self.types.values()))

    def help_for(self, model: str | None) -> tuple[str, str]:
        """(help, scope) for ``model`` (its own config class's text); for all models, the first non-empty."""
        if model in self.helps:
            return self.helps[model]
        return next((h for h in self.helps.values() if h[0]), next(iter(self.helps.values())))


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def option_table() -> dict[str, Option]:
    """Every option of ``aekit train`` (imports the configs, hence torch)."""
    from ..config import field_help, field_types
    from ..data import DataConfig
    from ..models import MODELS
    from ..train import TrainConfig

    table: dict[str, Option] = {}
    for model, spec in MODELS.items():
        cls = spec.config_cls
        tps, helps = field_types(cls), field_help(cls)
        for f in dataclasses.fields(cls):
            if f.name in INTERNAL:
                continue
            o = table.setdefault(f.name, Option(f.name, "model"))
            o.models.append(model)
            o.types[model], o.helps[model] = tps[f.name], helps[f.name]
            o.defaults[model] = spec.defaults.get(f.name, _default_of(f))
    for group, cls in (("train", TrainConfig), ("data", DataConfig)):
        tps, helps = field_types(cls), field_help(cls)
        for f in dataclasses.fields(cls):
            if f.name in INTERNAL or f.name in table:  # a model field of the same name is routed to the model
                continue
            o = table[f.name] = Option(f.name, group, {None: tps[f.name]}, {None: helps[f.name]})
            o.defaults[None] = _default_of(f)
            if group == "train":
                for model, spec in MODELS.items():
                    o.defaults[model] = spec.train_defaults.get(f.name, o.defaults[None])
    return table


# ------------------------------------------------------------------------------------------------ help text


def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in _args(tp)


def _base(tp: Any) -> Any:
    """``X | None`` → ``X``."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in _args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _choices(tps: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for tp in tps:
        for c in _args(_base(tp)) if typing.get_origin(_base(tp)) is Literal else ():
            if str(c) not in out:
                out.append(str(c))
    return out


def metavar(tps: Sequence[Any]) -> str:
    tp = _base(tps[0])
    choices = _choices(tps)
    if choices:
        text = "{" + ",".join(choices) + "}"
    elif typing.get_origin(tp) is tuple:
        inner = _args(tp)[0]
        one = "N" if inner is int else "X" if inner is float else "S"
        text = f"{one},{one},..."
    else:
        text = {int: "N", float: "X", str: "STR"}.get(tp, "V")
    return text + ("|none" if _is_optional(tps[0]) else "")


def type_text(tp: Any) -> str:
    tp_ = _base(tp)
    if typing.get_origin(tp_) is Literal:
        text = "one of " + ", ".join(map(str, _args(tp_)))
    elif typing.get_origin(tp_) is tuple:
        text = "a comma-separated list"
    else:
        text = {bool: "on or off", int: "an integer", float: "a number", str: "text"}.get(tp_, "a value")
    return text + (" or none" if _is_optional(tp) else "")


def show(value: Any) -> str:
    """A default as it is typed on the command line."""
    if value is dataclasses.MISSING:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(map(show, value)) if value else "empty"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _defaults_text(o: Option, model: str | None) -> str:
    if model is not None:
        return "default " + show(o.defaults.get(model, o.defaults.get(None)))
    by_value: dict[str, list[str]] = {}  # shown default -> the models with it
    for m, v in o.defaults.items():
        if m is not None:
            by_value.setdefault(show(v), []).append(m)
    if None in o.defaults:  # training options: the field's default, and the models that change it
        base = show(o.defaults[None])
    else:  # model options: the default of most of the models that have the field, when there is one
        base = max(by_value, key=lambda v: len(by_value[v]))
        if 2 * len(by_value[base]) <= len(o.models) and len(by_value) > 1:
            return "default " + "; ".join(f"{', '.join(ms)}: {v}" for v, ms in by_value.items())
    others = {v: ms for v, ms in by_value.items() if v != base}
    text = "default " + base
    if others:
        text += " (" + "; ".join(f"{', '.join(ms)}: {v}" for v, ms in others.items()) + ")"
    return text


def help_text(o: Option, model: str | None, all_models: Sequence[str]) -> str:
    """What ``aekit train --help`` says about ``o``: its help, where it applies, its default(s), its models."""
    text, scope = o.help_for(model)
    tp = o.type_for(model)
    if not text:
        text = f"{UNDOCUMENTED} ({type_text(tp)})"
    parts = []
    if scope:
        parts.append(f"with {scope}")
    parts.append(_defaults_text(o, model))
    if model is None and o.group == "model" and list(o.models) != list(all_models):
        parts.append("models: " + ", ".join(o.models))
    return f"{text} ({'; '.join(parts)})".replace("%", "%%")


# ------------------------------------------------------------------------------------------------ the parser


class BoolFlag(argparse.Action):
    """``--skip`` / ``--no-skip`` as one option; sets the field only when given."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, not (option_string or "").startswith("--no-"))


def _model_in(argv: Sequence[str]) -> str | None:
    """The value of ``--model`` in ``argv`` (for scoping the help), or None."""
    for i, tok in enumerate(argv):
        if tok == "--model" and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith("--model="):
            return tok.split("=", 1)[1]
    return None


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    from ..models import MODELS

    model = _model_in(argv)
    if model is not None and model not in MODELS:
        model = None  # the training itself says "unknown model ...: did you mean ..."
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.usage = ("%(prog)s [--model NAME] [--data SPEC] --out DIR [--config FILE] [OPTION ...]\n"
               "       %(prog)s --resume RUN [--epochs N] [--lr X]")
    p.description = ("Train a model and write a run directory (config.json, model.safetensors, metrics.csv, "
                     "evaluation.json, report.html).\n"
                     + (f"Options of --model {model}: {MODELS[model].help}." if model else
                        "Every model's options are listed with the models they apply to; `aekit train --model NAME "
                        "--help` lists one model's."))
    p.epilog = ("Booleans: --NAME turns an option on, --no-NAME off.  Lists: comma-separated, e.g. --hidden 512,256.\n"
                "--config FILE (TOML, JSON or YAML: flat `option = value` lines, or a run's config.json) gives "
                "defaults that flags override.")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="one of: " + ", ".join(MODELS) + " (default vae; `aekit models` describes them)")
    p.add_argument("--data", dest="data_spec", default=None, metavar="SPEC",
                   help="dataset spec (default digits): digits, fashion-mnist, mnist, kmnist, dsprites, cells, "
                        "idx:DIR, images:DIR, seg:DIR, npy:FILE, npz:FILE, csv:FILE (`aekit datasets` lists them)")
    p.add_argument("--out", metavar="DIR", help="run directory to create")
    p.add_argument("--config", metavar="FILE",
                   help="read options from a TOML, JSON or YAML file (a run's config.json re-runs that run); flags "
                        "override it")
    p.add_argument("--resume", metavar="RUN",
                   help="continue RUN from its last checkpoint with its saved config; --epochs (train longer) and "
                        "--lr (e.g. after a divergence) may change")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    table = option_table()
    groups = {g: p.add_argument_group(
        f"options of --model {model}" if (g == "model" and model) else title) for g, title in GROUPS.items()}
    for o in sorted(table.values(), key=lambda o: o.name):
        g = groups[o.group]
        shown = o.applies_to(model)
        help_ = help_text(o, model, list(MODELS)) if shown else argparse.SUPPRESS
        tps = [o.type_for(model)] if model else list(o.types.values())
        if all(_base(t) is bool for t in tps):
            g.add_argument(o.flag, "--no-" + o.flag[2:], dest=o.name, action=BoolFlag, help=help_)
        else:
            g.add_argument(o.flag, dest=o.name, metavar=metavar(tps), default=argparse.SUPPRESS, help=help_)


def documented(help_output: str) -> bool:
    return UNDOCUMENTED not in help_output


# ------------------------------------------------------------------------------------------------ the command


def cmd_train(args: argparse.Namespace) -> int:
    import aekit

    cli_options = {k: v for k, v in vars(args).items() if k not in RESERVED}
    if getattr(args, "quiet", False) and "progress" not in cli_options:
        cli_options["progress"] = False
    if args.resume:
        given = [flag for flag, value in (("--config", args.config), ("--out", args.out), ("--model", args.model),
                                          ("--data", args.data_spec), ("--overwrite", args.overwrite)) if value]
        if given:
            raise ConfigError(f"--resume {args.resume} continues that run in place with its own config.json; "
                              f"{given[0]} would be ignored: drop {given[0]} (or start a new run with --out)")
        run = aekit.train(resume=args.resume, report=not args.no_report, **cli_options)
        summary(run)
        return 0
    # the aliases, after --resume (which names the flag given) and before a config file's options
    from ..train.config import ALIASES, flag

    for alias, (setting, on, off) in ALIASES.items():  # --bf16 is --precision bf16, --no-bf16 --precision fp32 …
        if alias in cli_options:
            value = on if cli_options.pop(alias) else off
            asked = cli_options.get(setting)
            if asked is not None and asked != value:
                raise ConfigError(f"{flag(alias) if value == on else '--no-' + flag(alias)[2:]} and {flag(setting)} "
                                  f"{asked} contradict each other: give one of them")
            cli_options[setting] = value
    file_options: dict[str, Any] = {}
    if args.config:
        from ._configfile import read_config_file

        file_options = read_config_file(args.config)
    model = args.model or file_options.pop("model", None) or "vae"  # a flag wins over the file, which wins over
    data = args.data_spec or file_options.pop("data", None) or "digits"  # the default
    file_options.pop("model", None)  # (when the flag won)
    file_options.pop("data", None)
    for alias, (setting, _, _) in ALIASES.items():
        if setting in cli_options:  # a flag overrides the file's setting, and so its alias too
            file_options.pop(alias, None)
    options = {**file_options, **cli_options}  # a run's input_shape is checked against the data by resolve()
    if not args.out:
        raise AekitError("aekit train needs --out DIR: the run directory to create")
    run = aekit.train(model, data, args.out, overwrite=args.overwrite, report=not args.no_report, **options)
    summary(run)
    return 0
