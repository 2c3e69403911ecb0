"""VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning").

A conv encoder (stride-2 convolutions, :func:`~aekit.models.blocks.conv_down`, then a 1×1 conv to
``code_dim``) maps an image to a grid of vectors z_e (B, D, h, w); each is replaced by its nearest codebook
entry e_k (squared Euclidean distance; ties: the lowest k), and the decoder (1×1 conv, transposed
convolutions) reconstructs from that grid z_q.  The gradient passes the quantiser straight through
(z_e + sg[z_q − z_e]: ∂loss/∂z_e = ∂loss/∂z_q).

Loss, per sample (sums over the grid's h·w·D elements), averaged over the batch:
``recon`` + ``codebook`` ‖sg[z_e] − e‖² + ``commitment`` β‖z_e − sg[e]‖², β = 0.25 as in the paper.  With
``ema`` (the default) the codebook is not a parameter but the exponential moving average of the encoder
outputs assigned to each code (the paper's appendix A.1; the arithmetic of Sonnet 2's ``VectorQuantizerEMA``:
decay γ = 0.99, zero-debiased averages, Laplace-smoothed counts with ε = 1e-5):

    t ← t + 1;  N ← γN + (1−γ)·n;  M ← γM + (1−γ)·Σ z_e;  N̂ = N/(1−γᵗ), M̂ = M/(1−γᵗ)
    Ñ = (N̂ + ε) / (ΣN̂ + Kε) · ΣN̂;  e_k = M̂_k / Ñ_k

(n_k: the batch's vectors assigned to code k).  The ``codebook`` term is then reported but not trained.
``recon`` is −log Bernoulli(x | sigmoid(logits)) in nats for images in [0, 1] (``recon_loss bce``, as the AE
and the VAE), else the sum of squared errors.  ``batch_perplexity`` (a batch statistic, for the training
log) is exp(H) of the batch's code usage: it grows with the batch size, so evaluation.json's value (its mean
over the evaluation batches) is not the split's perplexity, which is ``codebook_perplexity``.

Dead codes: every training step (``loss`` in train mode) counts, per code, the steps since it was last
assigned; a code unused for ``restart_after`` steps is re-initialised to an encoder output of the current
batch drawn uniformly with the global generator (which the trainer reseeds from (seed, epoch): a killed and
resumed run draws the same), and its EMA state to one observation of that vector (with ``--no-ema`` the code
is a parameter, and the optimiser's moments for its row are not reset: its first steps after a restart carry
its old Adam momentum).
Initialisation: the first training batch sets every code to one of its encoder outputs (distinct ones when the
batch has K or more; global generator), with EMA state = one observation of it (t = 1, N_k = 1−γ, M_k =
(1−γ)·e_k): a data-dependent start, where the uniform ±1/K start left a short run on small data with one code
in use.  Under DDP (torch.distributed with several ranks) the per-code counts and sums are all-reduced before
the update, so the codebook learns from every rank's batch; the initial and restarted codes are rank 0's draws.  The codebook, the EMA
state and the counters are buffers (saved in checkpoints and weights).

Generative: a small PixelCNN (:class:`~aekit.models.blocks.PixelCNN`, or with ``prior_kind="gated"`` the gated
:class:`~aekit.models.blocks.GatedPixelCNN`) is a prior over the index grid.  It is
trained *after* the main fit, as the model's ``after`` stage (``prior``, ``prior_epochs`` epochs), on the codes
of the frozen encoder; in the main fit its parameters are frozen.  ``sample`` draws the grid in raster order
and decodes it; ``code_nll`` is the prior's −log p(codes) in nats per image.

Capabilities: ``discrete`` (``encode`` gives the index grid), ``generative``, ``staged`` and ``latent_vectors``
— the code vector is the flattened quantised grid z_q (``latent_dim`` = D·h·w): ``embed`` gives it, and
``decode`` of any such vector first snaps each of its h·w sub-vectors to the nearest codebook entry, so every
decoded point (an interpolation, a traversal, a slider) is the decoding of a code grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from .base import Autoencoder, Losses, ModelConfig, Stage, checked_temperature
from .blocks import Activation, GatedPixelCNN, PixelCNN, activation, conv_down, conv_sizes, conv_up

EPS = 1e-5  # Laplace smoothing of the EMA counts (Sonnet's default epsilon)


@dataclasses.dataclass(frozen=True)
class VQVAEConfig(ModelConfig):
    channels: tuple[int, ...] = opt((32, 64), "conv channels of the encoder, one stride-2 layer each (28×28 → 7×7 "
                                              "codes with two); the decoder mirrors them")
    activation: Activation = opt("relu", "activation of the hidden layers")
    codebook_size: int = opt(128, "K, the number of codebook vectors")
    code_dim: int = opt(16, "D, the size of each code vector")
    beta: float = opt(0.25, "β, the weight of the commitment loss β‖z_e − sg[e]‖² (0.25 in the paper)")
    ema: bool = opt(True, "update the codebook as an exponential moving average of its assigned encoder outputs "
                          "(no codebook loss); --no-ema: learn it by the codebook loss ‖sg[z_e] − e‖²")
    ema_decay: float = opt(0.99, "γ, the decay of the EMA codebook updates", scope="--ema")
    restart_after: int = opt(100, "re-initialise a code unused for this many training steps to a random encoder "
                                  "output of the current batch (0: never)")
    recon_loss: Literal["auto", "bce", "mse"] = opt(
        "auto", "reconstruction loss: bce (Bernoulli NLL, nats) or mse (sum of squared errors); auto: bce for "
                "images in [0, 1], mse otherwise")
    prior_epochs: int = opt(10, "epochs of the PixelCNN prior over the codes, trained after the main fit "
                                "(0: an untrained prior)")
    prior_channels: int = opt(64, "channels of the PixelCNN prior")
    prior_layers: int = opt(4, "layers of the PixelCNN prior after its first: residual masked-convolution blocks, "
                               "or gated layers with --prior-kind gated")
    prior_kernel: int = opt(5, "kernel k of the prior's layers after the first, odd (pixelcnn: the mask-B "
                               "convolutions; gated: k//2+1 × k vertical, 1 × k//2+1 horizontal); the first "
                               "layer's is k + 2 (7 for 5)")
    prior_kind: Literal["pixelcnn", "gated"] = opt(
        "pixelcnn", "the prior network: pixelcnn (masked convolutions, ReLU residual blocks; it has the original "
                    "PixelCNN's blind spot) or gated (van den Oord et al. 2016: vertical + horizontal stacks with "
                    "tanh·sigmoid gates, no blind spot)")

    def __post_init__(self) -> None:
        check(self.codebook_size >= 2, f"--codebook-size {self.codebook_size}: a codebook needs at least 2 codes "
                                       "(one code carries no information), e.g. --codebook-size 128")
        check(self.code_dim >= 1, f"--code-dim {self.code_dim}: must be at least 1, e.g. --code-dim 16")
        check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
              "--channels must be positive, e.g. --channels 32,64")
        check(math.isfinite(self.beta) and self.beta >= 0, f"--beta {self.beta:g}: must be a finite number ≥ 0")
        check(0.0 < self.ema_decay < 1.0, f"--ema-decay {self.ema_decay:g}: must be in (0, 1), e.g. 0.99")
        check(self.restart_after >= 0, f"--restart-after {self.restart_after}: must be ≥ 0 steps (0: never)")
        check(self.prior_epochs >= 0, f"--prior-epochs {self.prior_epochs}: must be ≥ 0")
        check(self.prior_channels >= 1 and self.prior_layers >= 0,
              "--prior-channels must be ≥ 1 and --prior-layers ≥ 0")
        check(self.prior_kernel >= 1 and self.prior_kernel % 2 == 1,
              f"--prior-kernel {self.prior_kernel}: must be an odd number, e.g. 5")

    def resolve(self, data: Dataset | DataShape) -> VQVAEConfig:
        self.check_shape(data)
        shape = tuple(data.shape)
        check(len(shape) == 3, f"--model vqvae needs image data (C, H, W), not samples of shape {list(shape)}")
        h, w = conv_sizes((shape[1], shape[2]), len(self.channels))[-1]
        check(h >= 1 and w >= 1, f"{len(self.channels)} stride-2 layers (--channels) are too many for "
                                 f"{shape[1]}×{shape[2]} images: use fewer")
        loss = self.recon_loss if self.recon_loss != "auto" else ("bce" if data.in_unit_interval else "mse")
        return dataclasses.replace(self, input_shape=shape, recon_loss=loss)


@torch.no_grad()
def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (squared Euclidean distance) for each row of ``z`` (N, D), float32;
    ties go to the lowest index."""
    z, e = z.float(), codebook.float()
    d = z.pow(2).sum(1, keepdim=True) - 2.0 * z @ e.t() + e.pow(2).sum(1)[None]
    return d.argmin(1)


def _distributed() -> bool:
    """A process group of several ranks is running (torch.distributed: DDP training)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def prior_nll(prior: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """−log p(codes) per sample (B,), nats, of a PixelCNN ``prior``: the per-position cross-entropies summed."""
    return F.cross_entropy(prior(codes), codes, reduction="none").flatten(1).sum(1)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(H(p)) of the usage distribution p = counts / Σcounts (nats inside; 1 … K)."""
    p = counts.double() / counts.sum().clamp_min(1)
    nz = p[p > 0]
    return torch.exp(-(nz * nz.log()).sum())


class VQVAE(Autoencoder):
    generative = True
    staged = True
    discrete = True
    main_stage = "vqvae"
    prior_name = "the PixelCNN prior over code grids (decoded through the codebook)"
    units = {"recon": "nats per sample (bce: −log p(x|z_q)) or sum of squared errors per sample (mse)",
             "codebook": "squared distance per sample ‖sg[z_e] − e‖², summed over the code grid (in the loss "
                         "without --ema; reported only with --ema, whose codebook is a moving average)",
             "commitment": "β‖z_e − sg[e]‖² per sample, summed over the code grid",
             "batch_perplexity": "batch statistic: exp(entropy in nats) of one batch's code usage (1 … K); it "
                                 "depends on the batch size (evaluation.json: its mean over the evaluation "
                                 "batches); the split's figure is codebook_perplexity"}
    codebook: torch.Tensor
    ema_count: torch.Tensor
    ema_sum: torch.Tensor
    ema_steps: torch.Tensor
    unused_steps: torch.Tensor
    initialised: torch.Tensor

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        c = config
        check(len(c.input_shape) == 3, "VQVAEConfig.input_shape must be an image shape (C, H, W); it is set from "
                                       "the data at train time")
        self.grid = conv_sizes((c.input_shape[1], c.input_shape[2]), len(c.channels))[-1]
        k, d = c.codebook_size, c.code_dim
        self.encoder = nn.Sequential(conv_down(c.input_shape[0], c.channels, c.activation),
                                     nn.Conv2d(c.channels[-1], d, 1))
        self.decoder = nn.Sequential(nn.Conv2d(d, c.channels[-1], 1), activation(c.activation),
                                     conv_up(c.input_shape[1:], c.channels, c.input_shape[0], c.activation))
        init = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)
        if c.ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.zeros(k))
            self.register_buffer("ema_sum", torch.zeros(k, d))
            self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("unused_steps", torch.zeros(k, dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))  # by the first training batch
        prior_cls = GatedPixelCNN if c.prior_kind == "gated" else PixelCNN
        self.prior = prior_cls(k, c.prior_channels, c.prior_layers, c.prior_kernel)
        self.prior.requires_grad_(False)  # trained only in the after-fit ``prior`` stage

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def latent_dim(self) -> int:
        return self.config.code_dim * self.grid[0] * self.grid[1]

    @property
    def codebook_size(self) -> int:
        return int(self.config.codebook_size)

    @property
    def recon_loss(self) -> str:
        return "bce" if self.config.recon_loss == "auto" else self.config.recon_loss

    # ------------------------------------------------------------------------------------------ verbs
    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """z_e, the encoder output before quantisation, (B, D, h, w)."""
        return self.encoder(x)

    def _flat(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B·h·w, D), raster order per sample
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code: codebook indices (B, h, w), int64."""
        z = self.encode_continuous(x)
        return nearest_code(self._flat(z), self.codebook).view(z.shape[0], *z.shape[2:])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, h, w) of an index grid (B, h, w)."""
        return self.codebook[codes].permute(0, 3, 1, 2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened quantised grid z_q, (B, latent_dim) = (B, D·h·w)."""
        return self.lookup(self.encode(x)).flatten(1)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before the sigmoid (bce) of an index grid (B, h, w) or code vectors (B, latent_dim)."""
        if z.dtype in (torch.int64, torch.int32):
            grid = self.lookup(z.long())
        else:
            b = z.shape[0]
            v = z.view(b, self.config.code_dim, *self.grid)
            grid = self.lookup(nearest_code(self._flat(v), self.codebook).view(b, *self.grid))
        return self.decoder(grid)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.recon_loss == "bce" else out

    def loss(self, batch: Batch) -> Losses:
        z_e = self.encode_continuous(batch.x)
        flat = self._flat(z_e)
        if self.training and not bool(self.initialised):
            self.init_codebook(flat.detach())
        idx = nearest_code(flat.detach(), self.codebook)
        z_q = self.lookup(idx.view(z_e.shape[0], *z_e.shape[2:])).to(z_e.dtype)
        codebook = (z_e.detach() - z_q).pow(2).flatten(1).sum(1).mean()
        commitment = self.config.beta * (z_e - z_q.detach()).pow(2).flatten(1).sum(1).mean()
        z_st = z_e + (z_q - z_e).detach()  # straight-through: the decoder's gradient reaches z_e unchanged
        recon = L.reconstruction(self.decoder(z_st), batch.clean, self.recon_loss).mean()
        total = recon + commitment + (0.0 if self.config.ema else codebook)
        counts = torch.bincount(idx, minlength=self.codebook_size)
        terms = {"recon": recon, "codebook": codebook, "commitment": commitment,
                 "batch_perplexity": perplexity(counts).float()}
        if self.training:
            self.update_codebook(flat.detach(), idx, counts)
        return Losses(total, terms)

    @torch.no_grad()
    def init_codebook(self, flat: torch.Tensor) -> None:
        """Every code set to one of the encoder outputs ``flat`` (N, D) (distinct rows when N ≥ K), drawn with
        the global generator; with ``ema`` its EMA state is one observation of that vector."""
        k = self.codebook_size
        pick = (torch.randperm(len(flat), device=flat.device)[:k] if len(flat) >= k
                else torch.randint(len(flat), (k,), device=flat.device))
        rows = flat[pick].float().contiguous()
        if _distributed():  # every rank starts from rank 0's draw
            dist.broadcast(rows, 0)
        self.codebook.copy_(rows.to(self.codebook.dtype))
        if self.config.ema:
            g = self.config.ema_decay
            self.ema_steps.fill_(1)
            self.ema_count.fill_(1.0 - g)
            self.ema_sum.copy_((1.0 - g) * rows)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update_codebook(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """One training step's codebook bookkeeping: the EMA update (``ema``), then dead-code restarts.  Under
        torch.distributed (several ranks) the counts and sums are summed over the ranks first (all_reduce), so
        the EMA and the unused-step counters follow the global batch, the same on every rank; a restarted code
        takes rank 0's draw (broadcast)."""
        c = self.config
        k = self.codebook_size
        flat = flat.float()
        fresh = 1.0
        several = _distributed()
        if several:
            counts = counts.clone()
            dist.all_reduce(counts)
        if c.ema:
            g = c.ema_decay
            sums = torch.zeros(k, flat.shape[1], device=flat.device).index_add_(0, idx, flat)
            if several:
                dist.all_reduce(sums)
            self.ema_steps += 1
            self.ema_count.mul_(g).add_(counts.float(), alpha=1.0 - g)
            self.ema_sum.mul_(g).add_(sums, alpha=1.0 - g)
            fresh = 1.0 - g ** float(self.ema_steps)  # the zero-debiasing factor 1 − γᵗ
            n_hat = self.ema_count / fresh
            total = n_hat.sum()
            smoothed = (n_hat + EPS) / (total + k * EPS) * total
            self.codebook.copy_((self.ema_sum / fresh) / smoothed[:, None])
        self.unused_steps.add_(1)
        self.unused_steps.masked_fill_(counts > 0, 0)
        if c.restart_after > 0:
            dead = (self.unused_steps >= c.restart_after).nonzero().squeeze(1)
            if len(dead):
                pick = torch.randint(len(flat), (len(dead),), device=flat.device)
                new = flat[pick].contiguous()
                if several:  # the same restarts on every rank (the counters, hence ``dead``, agree)
                    dist.broadcast(new, 0)
                self.codebook[dead] = new.to(self.codebook.dtype)
                if c.ema:  # one observation of the new vector, in the debiased averages
                    self.ema_count[dead] = fresh
                    self.ema_sum[dead] = fresh * new
                self.unused_steps[dead] = 0

    # ------------------------------------------------------------------------------------------ the prior
    def code_nll(self, codes: torch.Tensor) -> torch.Tensor:
        """−log p(codes) per sample (B,), nats, under the PixelCNN prior."""
        return prior_nll(self.prior, codes.long())

    @torch.no_grad()
    def sample_codes(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0
                     ) -> torch.Tensor:
        """``n`` index grids (n, h, w) drawn from the prior, position by position in raster order, each position
        from softmax(logits / τ) (τ = ``temperature``; τ = 0: greedy, the most probable code given the codes
        drawn before it)."""
        t = checked_temperature(temperature)
        h, w = self.grid
        codes = torch.zeros(n, h, w, dtype=torch.long, device=self.device)
        for r in range(h):
            for col in range(w):
                logits = self.prior(codes)[:, :, r, col].float()
                if t == 0:
                    codes[:, r, col] = logits.argmax(1)
                else:
                    # shifted so that the largest logit is 0: a tiny τ sends the others to −inf, never to NaN
                    probs = F.softmax((logits - logits.amax(1, keepdim=True)) / t, dim=1)
                    codes[:, r, col] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return codes

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> torch.Tensor:
        """``n`` draws from the prior over codes (at ``temperature``, :meth:`sample_codes`), decoded (no
        autograd)."""
        return self.decode(self.sample_codes(n, generator, temperature=temperature))

    def stages(self, data: Dataset) -> Iterator[Stage]:
        """The prior over the codes, trained after the main fit (``prior_epochs`` epochs; 0: untrained)."""
        yield Stage("prior", PriorStage(self), data, self.config.prior_epochs, after=True)


class PriorStage(Autoencoder):
    """The ``prior`` stage: the VQ-VAE's PixelCNN (its own parameters, shared) trained by maximum likelihood on
    the index grids of the VQ-VAE's frozen encoder, computed from each batch of images."""

    units = {"prior_nll": "nats per sample (−log p(codes) of the prior, summed over the code grid)",
             "prior_bits_per_code": "bits per code position (prior_nll / (h·w·ln 2)); evaluation.json's "
                                    "prior_bits_per_dim divides by C·H·W instead"}

    def __init__(self, vqvae: VQVAE):
        super().__init__(vqvae.config)
        self.prior = vqvae.prior  # shared: training this stage trains the VQ-VAE's prior
        self._vqvae = [vqvae]  # a plain list: the VQ-VAE (its encoder, decoder, codebook) is not part of the stage

    @property
    def latent_dim(self) -> int:
        return self._vqvae[0].latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._vqvae[0].encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._vqvae[0].decode(z)

    def loss(self, batch: Batch) -> Losses:
        with torch.no_grad():
            codes = self._vqvae[0].encode(batch.x)
        nll = prior_nll(self.prior, codes).mean()
        return Losses(nll, {"prior_nll": nll, "prior_bits_per_code": nll / (codes[0].numel() * math.log(2))})
