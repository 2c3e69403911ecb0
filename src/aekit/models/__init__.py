"""Model registry: ``{name: ModelSpec(Config, Model, defaults)}``.  It drives the CLI, loading and tests.

Variants are registry entries that set config defaults on one model class (``linear-ae`` is ``AE`` with
linear activations and squared error; ``sparse-ae`` is ``AE`` with an L1 penalty), never subclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import from_dict
from ..registry import Registry
from .ae import AE, AEConfig
from .base import CAPABILITIES, Autoencoder, Losses, ModelConfig, NetConfig, Posterior, Stage
from .cvae import CVAE, CVAEConfig
from .factorvae import FactorVAE, FactorVAEConfig
from .pca import PCA, PCAConfig
from .stacked import StackedAE, StackedAEConfig
from .unet import UNet, UNetConfig
from .vae import VAE, DiagonalGaussian, VAEConfig
from .vqvae import VQVAE, VQVAEConfig
from .wae import WAE, WAEConfig


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    config_cls: type
    model_cls: type[Autoencoder]
    help: str
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # TrainConfig defaults of this model
    tiny: dict[str, Any] = dataclasses.field(default_factory=dict)  # options of a seconds-long smoke run (tests)

    def make_config(self, values: dict[str, Any] | None = None, *, name: str = "model") -> Any:
        """Registry defaults, overridden by ``values`` (validated; unknown keys are rejected)."""
        return from_dict(self.config_cls, {**self.defaults, **(values or {})}, what=f"--model {name}")


DEEP_TRAINING: dict[str, Any] = {"schedule": "cosine", "lr": 2e-3, "lr_warmup_epochs": 1.0}

MODELS: Registry[ModelSpec] = Registry("model")
# ae's defaults were chosen on Fashion-MNIST's validation split (notes/issue-2.md): SiLU, BatchNorm, BCE,
# Adam 2e-3 with one warm-up epoch and a cosine decay (20 epochs, 784-1000-500-250-30: val SSE 5.63 vs
# 6.24 with ReLU / 1e-3 / no warm-up; deep AEs underfit in 20 epochs without the cosine decay)
MODELS.register("ae", ModelSpec(AEConfig, AE, "deterministic autoencoder (MLP or conv, optional tied weights)",
                                {"activation": "silu"}, train_defaults=DEEP_TRAINING,
                                tiny={"hidden": (16,), "latent_dim": 3}))
MODELS.register("linear-ae", ModelSpec(
    AEConfig, AE, "linear autoencoder (no non-linearities, squared error): learns PCA's subspace",
    {"activation": "linear", "recon_loss": "mse", "hidden": (), "norm": "none"}, tiny={"latent_dim": 3}))
MODELS.register("sparse-ae", ModelSpec(
    AEConfig, AE, "one-hidden-layer autoencoder with an L1 (or KL(rho||rho_hat)) sparsity penalty on the code",
    {"sparsity": "l1", "code_activation": "auto", "latent_dim": 64, "hidden": ()}, tiny={"latent_dim": 8}))
# contractive-ae's λ = 0.01 was chosen on the digits' validation split (`aekit experiment contractive --data digits`:
# the largest λ of 0, 0.01, 0.03, 0.1, 0.3 within 10% of λ = 0's error; notes/issue-17.md, session 17)
MODELS.register("contractive-ae", ModelSpec(
    AEConfig, AE, "one-hidden-layer sigmoid autoencoder with tied weights and the contractive penalty "
                  "lambda*||J_f(x)||_F^2 (Rifai et al. 2011; exact for one layer, stochastic for deep encoders)",
    {"contractive": 0.01, "code_activation": "sigmoid", "latent_dim": 64, "hidden": (), "tied": True},
    tiny={"latent_dim": 8}))
MODELS.register("denoising-ae", ModelSpec(
    AEConfig, AE, "autoencoder trained to reconstruct clean inputs from corrupted ones (--corruption)",
    {"corruption": "mask:0.25", "activation": "silu"}, train_defaults=DEEP_TRAINING,
    tiny={"hidden": (16,), "latent_dim": 3}))
MODELS.register("stacked-ae", ModelSpec(
    StackedAEConfig, StackedAE, "tied MLP autoencoder, greedy layer-wise pretraining (--pretrain-epochs) then "
                                "fine-tuning", tiny={"hidden": (16,), "latent_dim": 3, "pretrain_epochs": 1}))
# vae's default of 2 free nats per sample (free bits, sample mode) was chosen on the digits' validation split
# (README, "Posterior collapse"): the β = 4 example collapsed without it; a run whose KL stays above 2 nats per
# sample trains exactly as without it
MODELS.register("vae", ModelSpec(VAEConfig, VAE, "variational autoencoder; --beta > 1 gives a beta-VAE",
                                 {"free_bits": 2.0, "free_bits_mode": "sample"},
                                 tiny={"hidden": (16,), "latent_dim": 3}))
MODELS.register("iwae", ModelSpec(VAEConfig, VAE, "VAE trained on the importance-weighted bound (Burda et al. 2016; "
                                  "--iwae-k samples)", {"objective": "iwae", "iwae_k": 5},
                                  tiny={"hidden": (16,), "latent_dim": 3, "iwae_k": 2}))
MODELS.register("tcvae", ModelSpec(VAEConfig, VAE, "beta-TCVAE (Chen et al. 2018): the VAE with its KL split into "
                                   "MI + beta*TC + dimension-wise KL, minibatch-weighted sampling estimates; "
                                   "--beta weighs the total correlation", {"objective": "tcvae", "beta": 6.0},
                                   tiny={"hidden": (16,), "latent_dim": 3}))
# factorvae: the VAE's Adam at lr 1e-4 as Kim & Mnih (2018); the discriminator's lr 1e-4, betas (0.5, 0.9) are in
# its config
MODELS.register("factorvae", ModelSpec(FactorVAEConfig, FactorVAE, "FactorVAE (Kim & Mnih 2018): a VAE plus "
                                       "gamma * its total correlation, estimated by a discriminator of z against "
                                       "permuted z (a second optimiser)", train_defaults={"lr": 1e-4},
                                       tiny={"hidden": (16,), "latent_dim": 3, "disc_hidden": (8, 8)}))
MODELS.register("cvae", ModelSpec(CVAEConfig, CVAE, "conditional VAE (Sohn et al. 2015): encoder q(z|x,y) and "
                                  "decoder p(x|z,y) take the class label (one-hot); sample with --label",
                                  tiny={"hidden": (16,), "latent_dim": 3}))
MODELS.register("wae", ModelSpec(WAEConfig, WAE, "Wasserstein autoencoder (MMD to the prior, IMQ kernel; "
                                 "deterministic codes, samples from N(0, I))", tiny={"hidden": (16,), "latent_dim": 3}))
MODELS.register("vqvae", ModelSpec(VQVAEConfig, VQVAE, "VQ-VAE (van den Oord et al. 2017): conv encoder to a grid of "
                                   "codebook indices (EMA codebook, dead-code restarts), PixelCNN prior (masked or "
                                   "gated) trained after the main fit", tiny={"channels": (4, 8), "code_dim": 3, "codebook_size": 8,
                                                               "prior_epochs": 1, "prior_channels": 8,
                                                               "prior_layers": 1, "restart_after": 2}))
MODELS.register("pca", ModelSpec(PCAConfig, PCA, "principal component analysis by SVD (closed form baseline)",
                                 tiny={"latent_dim": 3}))
MODELS.register("unet", ModelSpec(
    UNetConfig, UNet, "U-Net semantic segmentation (skip connections; --no-skip for the plain encoder-decoder)",
    train_defaults={"epochs": 6, "batch_size": 16, "lr": 2e-3}, tiny={"depth": 1, "base_channels": 4}))


def get_spec(name: str) -> ModelSpec:
    return MODELS.get_entry(name)


def registry_name_of(model: Autoencoder) -> str | None:
    """The registry name that rebuilds ``model``: the one it was built with, else the first entry with its model
    and config classes (a model constructed directly), else None."""
    if model.registry_name is not None:
        return model.registry_name
    return next((n for n, s in MODELS.items()
                 if type(model) is s.model_cls and type(model.config) is s.config_cls), None)


def _parameter_bytes(model_cls: type[Autoencoder], config: Any) -> int | None:
    """Bytes of the parameters and buffers ``model_cls(config)`` would allocate, counted on the meta device
    (shapes only, nothing allocated); None when the model cannot be built there (the real build then reports)."""
    import torch

    try:
        with torch.device("meta"):
            probe = model_cls(config)
    except Exception:  # noqa: BLE001 - only an estimate: any failure here is left to the real build
        return None
    tensors = [*probe.parameters(), *probe.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def build_model(name: str, config: Any) -> Autoencoder:
    """Instantiate a registered model from its (resolved) config; the model remembers its registry name.

    A model whose weights alone cannot fit in this machine's memory (``--hidden 1e11``) is refused with a
    one-line ConfigError before anything is allocated."""
    from ..data.stream import check_memory

    spec = get_spec(name)
    nbytes = _parameter_bytes(spec.model_cls, config)
    if nbytes is not None:
        shape = getattr(config, "input_shape", None)
        check_memory(nbytes, f"the weights of model {name!r} (input {tuple(shape) if shape else '?'})",
                     "choose smaller sizes (--hidden, --latent-dim, --channels, --image-size)")
    model = spec.model_cls(config)
    model.registry_name = name
    return model


__all__ = [
    "AE", "AEConfig", "Autoencoder", "CVAE", "CVAEConfig", "CAPABILITIES", "FactorVAE", "FactorVAEConfig", "ModelConfig", "NetConfig", "Posterior", "Stage", "DiagonalGaussian", "Losses", "MODELS", "ModelSpec", "PCA", "PCAConfig",
    "StackedAE", "StackedAEConfig", "UNet", "UNetConfig", "VAE", "VAEConfig", "VQVAE", "VQVAEConfig", "WAE", "WAEConfig", "build_model", "get_spec", "registry_name_of",
]
