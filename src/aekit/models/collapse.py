"""Posterior collapse: the rule, its threshold and the remedies, shared by the training callback
(:class:`aekit.train.callbacks.CollapseWarning`) and evaluation (``posterior_collapse`` in ``evaluation.json``).

A model with a posterior has *collapsed* when its code carries (almost) no information about the input: no latent
unit is active — Var_x(E_q[z_j|x]) ≤ 0.01 for every j, the rule of Burda et al. (2016) — or the mean KL(q(z|x) ‖
p(z)) per sample is below :data:`KL_THRESHOLD_NATS`.  The KL bounds the mutual information between x and z, so
below 0.1 nats the code tells the decoder less than a sixth of a bit about each input: the decoder ignores it
and every reconstruction is close to the same mean image.  (The README's β = 4 digits VAE ended at 0.003 nats; a
working β = 1 VAE on the same data at 1.7 nats.)
"""

from __future__ import annotations

from typing import Any

KL_THRESHOLD_NATS = 0.1  # mean KL per sample, nats
ACTIVE_THRESHOLD = 0.01  # Burda et al. (2016): a unit is active when Cov_x(E_q[z_j|x]) > 0.01

RULE = (f"collapsed when no latent unit is active (Var_x E_q[z_j|x] > {ACTIVE_THRESHOLD:g}, Burda et al. 2016) "
        f"or the mean KL(q(z|x) || p(z)) is below {KL_THRESHOLD_NATS:g} nats per sample")
HINT = ("the decoder ignores the code: train with free bits (--free-bits 2 --free-bits-mode sample, the vae default: "
        "2 nats of KL per sample unpenalised; or per unit, --free-bits 0.25 --free-bits-mode unit) or a lower "
        "--beta (a KL warm-up alone did not prevent it on the digits: README, VAE section)")


def hint(config: Any = None) -> str:
    """The remedies for a model of ``config`` (a model config; None: the general hint): a run that already used
    free bits is told to raise them or lower β, not to add what it has."""
    fb = float(getattr(config, "free_bits", 0.0) or 0.0)
    if fb <= 0:
        return HINT
    mode = getattr(config, "free_bits_mode", "sample")
    return (f"the decoder ignores the code although this run had --free-bits {fb:g} (per {mode}): raise "
            f"--free-bits, lower --beta (now {getattr(config, 'beta', 1.0):g}), or try --free-bits-mode "
            f"{'unit' if mode == 'sample' else 'sample'}")


def is_collapsed(active_units: int, kl_nats: float) -> bool:
    """The rule of :data:`RULE`."""
    return active_units == 0 or kl_nats < KL_THRESHOLD_NATS


def verdict(active_units: int, latent_dim: int, kl_nats: float, config: Any = None) -> dict[str, Any]:
    """The ``posterior_collapse`` field of ``evaluation.json`` (its schema is fixed: the report reads it);
    ``config``: the model's config, for the :func:`hint`."""
    return {"collapsed": is_collapsed(active_units, kl_nats), "active_units": int(active_units),
            "latent_dim": int(latent_dim), "kl_nats": float(kl_nats), "kl_threshold_nats": KL_THRESHOLD_NATS,
            "rule": RULE, "hint": hint(config)}
