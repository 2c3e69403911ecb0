"""Loss terms as pure tensor functions.

**One reduction rule everywhere**: every function returns one value *per sample* (shape ``(B,)``), summed over
that sample's dimensions; callers average over the batch.  Likelihood terms are negative log-likelihoods in
**nats per sample**; a VAE's ``total`` is therefore −ELBO in nats per sample.  There are no hidden dataset-size
factors and no per-pixel averaging — except in the segmentation section at the end, whose per-sample values are
per-pixel means (nats per pixel) or ratios, stated there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def sse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over a sample's elements, shape (B,)."""
    return _flat(recon - x).pow(2).sum(1)


def reconstruction(out: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """A deterministic autoencoder's reconstruction term per sample (B,): ``bce`` (``out`` are logits; nats) or
    ``mse`` (sum of squared errors)."""
    return bernoulli_nll(out, x) if kind == "bce" else sse(out, x)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log Bernoulli(x | sigmoid(logits)) summed over dimensions, in nats, shape (B,).

    Computed in the fused, numerically stable "BCE with logits" form.  ``x`` may be continuous in [0, 1]
    (the usual relaxation for grey-level images).
    """
    return _flat(F.binary_cross_entropy_with_logits(logits, x, reduction="none")).sum(1)


def gaussian_nll(mean: torch.Tensor, x: torch.Tensor, log_scale: torch.Tensor | float = 0.0) -> torch.Tensor:
    """−log N(x | mean, σ²) summed over dimensions, σ = exp(log_scale), in nats, shape (B,)."""
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    z = (x - mean) * torch.exp(-log_scale)
    per = 0.5 * z.pow(2) + log_scale + 0.5 * LOG_2PI
    return _flat(per.expand_as(mean)).sum(1)


def laplace_nll(mean: torch.Tensor, x: torch.Tensor, log_scale: torch.Tensor | float = 0.0) -> torch.Tensor:
    """−log Laplace(x | mean, b) summed over dimensions, b = exp(log_scale), in nats, shape (B,)."""
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    per = (x - mean).abs() * torch.exp(-log_scale) + log_scale + math.log(2.0)
    return _flat(per.expand_as(mean)).sum(1)


MIN_LOG_SCALE = -7.0  # a learned scale's floor (σ ≥ e^-7): the likelihood cannot run to +inf on constant pixels


def likelihood_nll(likelihood: str, out: torch.Tensor, x: torch.Tensor,
                   log_scale: torch.Tensor | None = None) -> torch.Tensor:
    """−log p(x|z) per sample (B,), nats, of a VAE-family decoder output ``out``: logits for ``"bernoulli"``,
    means for ``"gaussian"`` / ``"laplace"`` with the (floored) ``log_scale``."""
    if likelihood == "bernoulli":
        return bernoulli_nll(out, x)
    assert log_scale is not None, "a gaussian or laplace likelihood needs its log_scale"
    log_scale = log_scale.clamp(min=MIN_LOG_SCALE)
    if likelihood == "gaussian":
        return gaussian_nll(out, x, log_scale)
    return laplace_nll(out, x, log_scale)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) ‖ N(0, I)) in closed form, summed over latent dims, shape (B,).

    KL = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²).
    """
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def l1_activation(a: torch.Tensor) -> torch.Tensor:
    """Σᵢ |aᵢ| over a sample's hidden activations, shape (B,) (the notes' sparsity penalty)."""
    return _flat(a).abs().sum(1)


def kl_sparsity(a: torch.Tensor, rho: float, eps: float = 1e-6) -> torch.Tensor:
    """Σⱼ KL(ρ ‖ ρ̂ⱼ) with ρ̂ⱼ the mean activation of unit j over the batch (activations in (0, 1)).

    A batch-level quantity (scalar): it does not decompose over samples.
    """
    rho_hat = _flat(a).mean(0).clamp(eps, 1 - eps)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()



def jacobian_sq_frobenius_one_layer(dact: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """‖J‖²_F of one layer h = σ(Wx + b) per sample, shape (B,), in closed form (Rifai et al. 2011, eq. 4):
    J = diag(σ'(a)) W, so ‖J‖²_F = Σⱼ σ'(aⱼ)² Σᵢ Wⱼᵢ².  ``dact`` (B, k) is σ'(a) (h(1 − h) for a sigmoid),
    ``weight`` (k, d) is W."""
    return dact.pow(2) @ weight.pow(2).sum(1)


def jacobian_sq_frobenius_hutchinson(h: torch.Tensor, x: torch.Tensor, probes: int = 1,
                                     create_graph: bool = True) -> torch.Tensor:
    """An unbiased estimate of ‖∂h/∂x‖²_F per sample, shape (B,): the mean of ‖Jᵀu‖² over ``probes`` Rademacher
    vectors u in code space (E[uuᵀ] = I, so E‖Jᵀu‖² = tr(JJᵀ) = ‖J‖²_F; Hutchinson 1990).  One vector-Jacobian
    product per probe (reverse mode); with ``create_graph`` the estimate is differentiable (double backward).

    ``h`` (B, k) must have been computed from ``x`` (B, …) with autograd on and ``x.requires_grad``.  The rows
    of the batch must be independent (an encoder in eval mode, or one without BatchNorm): otherwise Jᵀu also
    carries the O(1/B) dependence of hᵦ on the other samples through the batch statistics.
    """
    total = h.new_zeros(h.shape[0])
    for i in range(probes):
        u = torch.randint(0, 2, h.shape, device=h.device).to(h.dtype).mul_(2).sub_(1)
        (g,) = torch.autograd.grad(h, x, grad_outputs=u, create_graph=create_graph,
                                   retain_graph=create_graph or i < probes - 1)
        total = total + _flat(g).pow(2).sum(1)
    return total / probes


def minibatch_log_q(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                    stratified: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimates of log q(zᵢ) and Σⱼ log q(zᵢⱼ) of the aggregate posterior q(z) = (1/N) Σₙ q(z|xₙ) at each
    sample's draw zᵢ from the M posteriors of the batch (Chen et al. 2018, section 4.1 and appendix):

    - minibatch-weighted sampling (MWS, the default): log q(zᵢ) ≈ log Σₘ q(zᵢ|xₘ) − log(N·M), and the same per
      dimension, as in the reference code's ``elbo`` without ``--mss``.  Its offset is large: with every
      posterior equal to the prior it gives log p(z) − log N (so TC ≈ (D − 1)·log N, not 0);
    - minibatch stratified sampling (MSS, ``stratified``): weights 1/N on the sample's own posterior,
      (N − M + 1)/(N·(M − 1)) on the next sample's (cyclically) and 1/(M − 1) on the other M − 2: the weights
      of the reference code's ``_log_importance_weight_matrix`` with its diagonal put where it belongs (they sum
      to 1, so a prior-like posterior gives log p(z)).  Needs M ≥ 2: a batch of one sample (a ragged last
      batch) has no other posterior to weigh and gets the MWS estimate.

    ``z``, ``mean``, ``logvar`` (M, D) are the draws and the diagonal Gaussian posteriors of the batch; N is the
    size of the data set the batch is drawn from.  Both outputs have shape (M,), nats.
    """
    m = z.shape[0]
    # log N(zᵢⱼ; μₘⱼ, σ²ₘⱼ) for every pair (i, m) and dimension j: (M, M, D)
    diff = z.unsqueeze(1) - mean.unsqueeze(0)
    log_dens = -0.5 * (diff.pow(2) * torch.exp(-logvar).unsqueeze(0) + logvar.unsqueeze(0) + LOG_2PI)
    if stratified and m >= 2:
        n = float(dataset_size)
        w = torch.full((m, m), 1.0 / (m - 1), dtype=z.dtype, device=z.device)
        idx = torch.arange(m, device=z.device)
        w[idx, (idx + 1) % m] = (n - m + 1) / (n * (m - 1))
        w[idx, idx] = 1.0 / n
        log_w = w.log()
    else:
        log_w = torch.full((m, m), -math.log(dataset_size * m), dtype=z.dtype, device=z.device)
    log_qz = torch.logsumexp(log_dens.sum(2) + log_w, dim=1)
    log_prod = torch.logsumexp(log_dens + log_w.unsqueeze(2), dim=1).sum(1)
    return log_qz, log_prod

# ----------------------------------------------------------------------------------------------------------------
# Segmentation (U-Net).  Still one value per sample, averaged over the batch by the caller, but the per-sample
# value is a *mean over pixels* (cross-entropy in nats per pixel) or a ratio (1 − soft Dice, in [0, 1]): both
# are independent of the image size, so they can be summed (``ce+dice``, as in nnU-Net) with equal weight.


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel −log softmax(logits)[target], weighted by ``weight[target]``, averaged over the sample's
    pixels: nats per pixel, shape (B,).  ``logits`` (B, K, H, W), ``target`` (B, H, W) class ids.

    The average divides by the number of pixels (not by the sum of the weights, unlike PyTorch's ``mean``).
    """
    per = F.cross_entropy(logits, target.long(), weight=weight, reduction="none")  # (B, H, W)
    return _flat(per).mean(1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                   include_background: bool = False) -> torch.Tensor:
    """1 − soft Dice per sample, shape (B,): with p = softmax(logits) and g the one-hot target,
    Dice_c = (2 Σ p_c g_c + s) / (Σ p_c + Σ g_c + s) over the sample's pixels, averaged over the classes
    (class 0 = background left out unless ``include_background``, as in nnU-Net).
    ``smooth`` s = 1 makes a class absent from both prediction and target count as Dice 1."""
    k = logits.shape[1]
    p = torch.softmax(logits.float(), dim=1).flatten(2)  # (B, K, P)
    g = F.one_hot(target.long().flatten(1), k).transpose(1, 2).to(p.dtype)  # (B, K, P)
    if not include_background and k > 1:
        p, g = p[:, 1:], g[:, 1:]
    inter = (p * g).sum(2)
    dice = (2 * inter + smooth) / (p.sum(2) + g.sum(2) + smooth)
    return 1.0 - dice.mean(1)
