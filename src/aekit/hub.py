"""Pretrained models in the Hugging Face Hub layout: ``config.json`` + ``model.safetensors`` (+ a model card).

The layout is the one a run directory already has, so every run directory *is* a pretrained-model directory:
``from_pretrained("runs/vae20")`` loads it, and ``save_pretrained(model, "out")`` writes a directory that
``aekit.load("out")``, ``aekit evaluate out`` etc. accept.  Nothing is pickled: the config is JSON, validated
field by field, and the weights are safetensors.

``from_pretrained(repo_id)`` with a name that is not a local directory downloads those files with
``huggingface_hub`` (the ``hub`` extra; honours ``HF_HUB_OFFLINE`` and ``local_files_only``), and
``push_to_hub`` uploads a saved directory.  Local directories never touch the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .config import to_dict
from .data import DataConfig
from .errors import AekitError, ConfigError, RunError
from .models import registry_name_of
from .models.base import Autoencoder
from .train.checkpoint import atomic_save_tensors, atomic_write_text
from .train.run import CONFIG, WEIGHTS, Run, load_run
from .train.trainer import TrainConfig

__all__ = ["from_pretrained", "push_to_hub", "registry_name", "save_pretrained"]

HUB_FILES = [CONFIG, WEIGHTS, "README.md", "complete.json"]  # the marker: a layout-2 run is complete with it


def registry_name(model: Autoencoder) -> str:
    """The registry name that rebuilds ``model`` from its config: the one it was built with (``build_model``,
    ``aekit.load``), else the first entry with its classes."""
    name = registry_name_of(model)
    if name is None:
        raise ConfigError(f"{type(model).__name__} is not a registered aekit model: pass model_name=... explicitly")
    return name


def _model_card(name: str, model: Autoencoder, data: DataConfig) -> str:
    from .version import __version__

    return (f"---\nlibrary_name: aekit\ntags:\n- aekit\n- autoencoder\n- {name}\n---\n\n"
            f"# aekit {name}\n\nAn aekit {__version__} `{name}` model: input shape {list(model.input_shape)}, "
            f"latent dimension {model.latent_dim}, trained on `{data.spec}`.\n\n```python\nimport aekit.hub\n\n"
            "model = aekit.hub.from_pretrained(\"PATH_OR_REPO_ID\")\nz = model.embed(x)\n```\n\n"
            "`config.json` holds the model, data and training configurations; `model.safetensors` the weights.\n")


def save_pretrained(model: Autoencoder | Run, save_directory: str | Path, *, model_name: str | None = None,
                    data_config: DataConfig | None = None, train_config: TrainConfig | None = None,
                    model_card: bool = True) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (and ``README.md``, a model card, unless one exists).

    ``model`` is a model or a :class:`~aekit.train.Run` (whose data and training configs are kept); the
    directory is a complete run directory, loadable by :func:`from_pretrained` and ``aekit.load``.
    """
    from .version import __version__

    if isinstance(model, Run):
        model_name = model_name or model.model_name
        data_config = data_config or model.data_config
        train_config = train_config or model.train_config
        model = model.model
    name = model_name or registry_name(model)
    data_config = data_config or DataConfig()
    train_config = train_config or TrainConfig()
    out = Path(save_directory)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file: save_pretrained needs a directory")
    out.mkdir(parents=True, exist_ok=True)
    config = {"aekit_version": __version__, "library_name": "aekit", "model": name,
              "model_config": to_dict(model.config), "data": to_dict(data_config), "train": to_dict(train_config)}
    # old weights go first: model.safetensors marks a complete directory, so it is written last
    (out / WEIGHTS).unlink(missing_ok=True)
    atomic_write_text(out / CONFIG, json.dumps(config, indent=2))
    atomic_save_tensors(model.state_dict(), out / WEIGHTS, {"format": "pt", "aekit_model": name})
    if model_card and not (out / "README.md").exists():
        atomic_write_text(out / "README.md", _model_card(name, model, data_config))
    return out


def _download(repo_id: str, *, revision: str | None, cache_dir: str | Path | None, local_files_only: bool,
              token: str | bool | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError:
        raise AekitError(f"{repo_id!r} is not a local directory, and downloading it needs huggingface_hub: "
                         "pip install 'aekit[hub]' (or pass the path of a saved directory)") from None
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                 token=token, allow_patterns=HUB_FILES, library_name="aekit")
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise RunError(f"{repo_id!r} is not a local directory and is not in the Hugging Face cache (offline): "
                       "pass the path of a saved directory, or go online once to download it") from None
    except (HfHubHTTPError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"could not fetch {repo_id!r} from the Hugging Face Hub ({first}): check the repo id, "
                       "or pass the path of a saved directory") from None
    return Path(path)


def _local_looking(name: str) -> bool:
    """A path, not a Hub repo id (``owner/name``): it never goes to the network.  Absolute, relative (``.``),
    home (``~``) or Windows paths, more than one ``/``, an existing file, or an ``owner/`` part that is a local
    directory (``runs/typo`` when ``runs/`` exists)."""
    p = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or p.exists():
        return True
    return "/" in name and p.parent.is_dir()


def from_pretrained(name_or_path: str | Path, *, device: str | torch.device = "cpu", revision: str | None = None,
                    cache_dir: str | Path | None = None, local_files_only: bool = False,
                    token: str | bool | None = None, return_run: bool = False) -> Autoencoder | Run:
    """Load a model from a directory with ``config.json`` + ``model.safetensors`` (any run directory, or one
    written by :func:`save_pretrained`), or from a Hugging Face Hub repo id.  Returns the model in eval mode
    (or the whole :class:`~aekit.train.Run` with ``return_run=True``)."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        if _local_looking(str(name_or_path)):
            raise RunError(f"{name_or_path} is not a directory: pass a directory with {CONFIG} and {WEIGHTS}")
        path = _download(str(name_or_path), revision=revision, cache_dir=cache_dir,
                         local_files_only=local_files_only, token=token)
    run = load_run(path, device)
    return run if return_run else run.model


def push_to_hub(model: Autoencoder | Run, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload aekit model", **save_kwargs: Any) -> str:
    """Save to a temporary directory and upload it to ``repo_id`` (created when missing); returns the URL."""
    import tempfile

    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise AekitError("push_to_hub needs huggingface_hub: pip install 'aekit[hub]'") from None
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, **save_kwargs)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
