"""``aekit train --config FILE``: options from a TOML, JSON or YAML file.

Two layouts are accepted:

- flat: ``{"model": "vae", "data": "digits", "latent_dim": 8, "epochs": 30}`` (keys are option names, with
  ``-`` or ``_``; TOML: ``latent_dim = 8``);
- a run's ``config.json``: ``{"model": ..., "model_config": {...}, "data": {...}, "train": {...},
  "aekit_version": ...}``, so any run can be re-run or varied (``aekit train --config RUN/config.json``).

Both become one flat dict of options; flags on the command line override them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SECTIONS = ("model_config", "train", "data")
METADATA = ("aekit_version", "created", "layout")  # written into config.json, not options


def _load(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path} does not exist: give a .toml, .json or .yaml file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read --config {path} ({e})") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if suffix == ".toml":
        try:
            import tomllib  # Python 3.11+
        except ModuleNotFoundError:
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise ConfigError(f"--config {path}: reading TOML needs Python 3.11+ or `pip install tomli`; "
                                  "or write the file as JSON") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--config {path} is not valid TOML ({e})") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ConfigError(f"--config {path}: reading YAML needs PyYAML (pip install pyyaml); or write the file "
                              "as TOML or JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--config {path} is not valid YAML ({' '.join(str(e).split())})") from None
    raise ConfigError(f"--config {path}: use a .toml, .json or .yaml (.yml) file")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options of a config file as one flat dict: option names with ``_``, plus ``model`` and ``data``
    (the spec) when the file names them, and ``input_shape`` when it is a run's resolved config."""
    path = Path(path).expanduser()
    raw = _load(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path} must hold a table of options (e.g. latent_dim = 8), not "
                          f"{type(raw).__name__}")
    flat: dict[str, Any] = {}
    where: dict[str, str] = {}

    def put(key: str, value: Any, section: str) -> None:
        k = key.replace("-", "_")
        if section == "data" and k == "spec":
            k = "data"
        if k in flat and flat[k] != value:
            raise ConfigError(f"--config {path}: {k!r} is set twice ({where[k]}: {flat[k]!r}, {section}: {value!r})")
        flat[k], where[k] = value, section

    for key, value in raw.items():
        if key in METADATA:
            continue
        if key in SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                put(str(k), v, key)
        elif isinstance(value, dict):
            raise ConfigError(f"--config {path}: unknown section [{key}]: use {', '.join(SECTIONS)} or top-level "
                              "options")
        else:
            put(str(key), value, "top level")
    train = raw.get("train")
    if isinstance(train, dict):  # a run's config.json written before --precision / --memory-format: what it ran
        from ..train.config import settings_of_a_saved_run

        for k, v in settings_of_a_saved_run(train).items():
            if k not in train:
                put(k, v, "train")
    for k in ("model", "data"):
        if k in flat and not isinstance(flat[k], str):
            raise ConfigError(f"--config {path}: {k!r} must be a name, e.g. {k} = \"{'vae' if k == 'model' else 'digits'}\"")
    return flat
