"""VQ-VAE (``--model vqvae``): the quantiser, the straight-through gradient, the loss terms, the EMA codebook,
dead-code restarts, the PixelCNN's causal mask, the prior's units, the one-line errors, and the prior stage
after the main fit (rows, resume, ``aekit encode``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import aekit
from aekit import losses as L
from aekit.data import Batch, DataShape, load_data, to_float
from aekit.errors import ConfigError
from aekit.evaluate.codebook import codebook_metrics, usage_stats
from aekit.models import MODELS
from aekit.models.blocks import PixelCNN
from aekit.models.vqvae import VQVAE, nearest_code

pytestmark = pytest.mark.usefixtures("one_thread")


def close(a, b, tol=1e-5):
    """``a`` and ``b`` agree elementwise (torch.testing.assert_close costs seconds on first use)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol), (a, b)

SHAPE = DataShape((1, 8, 8), "image", True)  # 8×8 images, two stride-2 layers: a 2×2 code grid
TINY = {"channels": (4, 8), "code_dim": 2, "codebook_size": 4, "prior_channels": 8, "prior_layers": 1,
        "prior_epochs": 1}


def model(**options) -> VQVAE:
    cfg = MODELS["vqvae"].make_config({**TINY, **options}).resolve(SHAPE)
    torch.manual_seed(0)
    return aekit.build_model("vqvae", cfg)


def test_nearest_code_by_hand():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[0.4, 0.1], [0.6, 0.0], [0.1, 1.2], [0.5, 0.0]])  # the last: a tie of codes 0 and 1
    # squared distances: row 0 → (0.17, 0.37, 3.77); row 1 → (0.36, 0.16, 4.36); row 2 → (1.45, 2.25, 0.65)
    assert nearest_code(z, codebook).tolist() == [0, 1, 2, 0]


def captured_z_e(m: VQVAE):
    """A forward hook keeping the encoder's output z_e (with its gradient)."""
    store = {}

    def hook(_module, _inputs, out):
        out.retain_grad()
        store["z_e"] = out

    return store, m.encoder.register_forward_hook(hook)


def test_straight_through_gradient_is_the_identity():
    m = model(beta=0.0).eval()  # eval: no codebook update; β = 0 and EMA: the total is the reconstruction term
    x = torch.rand(3, 1, 8, 8)
    store, handle = captured_z_e(m)
    m.loss(Batch(x)).total.backward()
    handle.remove()
    z_e = store["z_e"]
    z_q = m.lookup(nearest_code(m._flat(z_e.detach()), m.codebook).view(3, 2, 2)).detach().requires_grad_(True)
    recon = L.bernoulli_nll(m.decoder(z_q), x).mean()
    (grad_q,) = torch.autograd.grad(recon, z_q)
    assert z_e.grad is not None and grad_q.abs().sum() > 0
    close(z_e.grad, grad_q)  # ∂loss/∂z_e = ∂loss/∂z_q


def test_loss_terms_by_hand():
    m = model(ema=False, beta=0.25).eval()
    x = torch.rand(3, 1, 8, 8)
    store, handle = captured_z_e(m)
    losses = m.loss(Batch(x))
    handle.remove()
    z_e = store["z_e"].detach()
    e = m.codebook.detach()
    sq = torch.zeros(3)
    z_q = torch.zeros_like(z_e)
    for b in range(3):  # the nearest code of each grid vector, by a loop over the codes
        for i in range(2):
            for j in range(2):
                v = z_e[b, :, i, j]
                k = min(range(4), key=lambda c: float(((v - e[c]) ** 2).sum()))
                z_q[b, :, i, j] = e[k]
                sq[b] += float(((v - e[k]) ** 2).sum())
    recon = L.bernoulli_nll(m.decoder(z_q), x).mean()
    close(losses.terms["codebook"], sq.mean())
    close(losses.terms["commitment"], 0.25 * sq.mean())
    close(losses.terms["recon"], recon)
    close(losses.total, recon + 1.25 * sq.mean())  # without EMA the codebook term trains


def test_ema_update_equals_the_formula():
    m = model(codebook_size=2, code_dim=1, ema_decay=0.5, restart_after=0)
    eps = 1e-5

    def expected(n_hat, m_hat):
        total = sum(n_hat)
        return [m_hat[k] / ((n_hat[k] + eps) / (total + 2 * eps) * total) for k in range(2)]

    m.update_codebook(torch.tensor([[1.0], [3.0], [10.0]]), torch.tensor([0, 0, 1]), torch.tensor([2, 1]))
    # N = 0.5·(2, 1), M = 0.5·(4, 10), debiased by 1 − 0.5: N̂ = (2, 1), M̂ = (4, 10)
    close(m.codebook[:, 0], torch.tensor(expected([2.0, 1.0], [4.0, 10.0])))
    m.update_codebook(torch.tensor([[2.0]]), torch.tensor([0]), torch.tensor([1, 0]))
    # N = 0.5·(1, 0.5) + 0.5·(1, 0) = (1, 0.25), M = 0.5·(2, 5) + 0.5·(2, 0) = (2, 2.5); debias 1 − 0.25
    close(m.codebook[:, 0], torch.tensor(expected([1 / 0.75, 0.25 / 0.75],
                                                                        [2 / 0.75, 2.5 / 0.75])))


def test_dead_codes_restart_from_the_batch_deterministically():
    def run():
        m = model(codebook_size=4, code_dim=2, restart_after=2)
        flat = torch.tensor([[1.0, 1.0], [5.0, 5.0], [-3.0, 1.0]])
        idx = torch.zeros(3, dtype=torch.long)  # every vector assigned to code 0
        counts = torch.tensor([3, 0, 0, 0])
        torch.manual_seed(1)
        m.update_codebook(flat, idx, counts)
        before = m.codebook.clone()
        m.update_codebook(flat, idx, counts)  # codes 1-3 now unused for 2 steps: restarted
        return m, flat, before

    m, flat, before = run()
    for k in (1, 2, 3):
        assert not torch.equal(m.codebook[k], before[k])
        assert any(torch.equal(m.codebook[k], row) for row in flat), "a restarted code is an encoder output"
    assert m.unused_steps.tolist() == [0, 0, 0, 0]
    again, _, _ = run()
    assert torch.equal(again.codebook, m.codebook)  # the same generator state: the same restarts


def test_pixelcnn_is_causal():
    torch.manual_seed(0)
    net = PixelCNN(5, 8, 2)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 5, (1, 4, 4)), 5).permute(0, 3, 1, 2).float()
    for p in range(16):
        i, j = divmod(p, 4)
        x = onehot.clone().requires_grad_(True)
        net(x)[0, :, i, j].sum().backward()
        seen = x.grad[0].abs().sum(0).flatten()  # (16,) dependence on each input position
        assert seen[p:].abs().sum() == 0, f"position {p} depends on inputs at or after it"
        if p > 0:
            assert seen[:p].abs().sum() > 0  # and it does see the earlier ones


def test_prior_units_with_a_uniform_prior():
    m = model(codebook_size=4).eval()
    last = m.prior.head[-1]
    with torch.no_grad():  # zero logits: p = 1/K at every position
        last.weight.zero_()
        last.bias.zero_()
    x = torch.rand(5, 1, 8, 8)
    r = codebook_metrics(m, x)
    assert r["prior_nll"] == pytest.approx(4 * math.log(4))  # a 2×2 grid, log K nats per position
    assert r["prior_bits_per_code"] == pytest.approx(2.0)
    assert r["prior_bits_per_dim"] == pytest.approx(4 * 2.0 / 64)


def test_prior_stage_terms_are_bits_per_code():
    from aekit.models.vqvae import PriorStage

    m = model(codebook_size=4).eval()
    last = m.prior.head[-1]
    with torch.no_grad():  # zero logits: p = 1/K at every position
        last.weight.zero_()
        last.bias.zero_()
    stage = PriorStage(m)
    terms = stage.loss(Batch(torch.rand(5, 1, 8, 8))).terms
    assert set(terms) == set(stage.units) == {"prior_nll", "prior_bits_per_code"}
    close(terms["prior_nll"], 4 * math.log(4))  # a 2×2 grid, log K nats per position
    close(terms["prior_bits_per_code"], 2.0)  # log₂ 4 bits per code position, as codebook_metrics reports it


def test_usage_stats_by_hand():
    r = usage_stats(torch.tensor([[[0, 0], [1, 3]]]), 4)  # counts 2, 1, 0, 1
    assert r["codebook_usage"] == 0.75 and r["dead_codes"] == 1
    assert r["codebook_perplexity"] == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))


@pytest.mark.parametrize("options, text", [
    ({"codebook_size": 1}, "--codebook-size 1"),
    ({"ema_decay": 1.0}, "--ema-decay"),
    ({"restart_after": -1}, "--restart-after"),
    ({"code_dim": 0}, "--code-dim"),
    ({"beta": -1.0}, "--beta"),
])
def test_bad_options_are_one_line_errors(options, text):
    with pytest.raises(ConfigError, match=text) as e:
        MODELS["vqvae"].make_config({**TINY, **options})
    assert "\n" not in str(e.value)


def test_wrong_data_is_a_one_line_error():
    cfg = MODELS["vqvae"].make_config({**TINY, "channels": (4, 8, 16, 32)})
    with pytest.raises(ConfigError, match="too many") as e:
        cfg.resolve(SHAPE)  # four stride-2 layers on 8×8 images
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="image"):
        MODELS["vqvae"].make_config(TINY).resolve(DataShape((10,), "table", False))


# ------------------------------------------------------------------------------------------ the prior stage


@pytest.fixture(scope="module")
def digits_cfg():
    return aekit.DataConfig("digits", subsample=300)


OPTS = {**TINY, "epochs": 2, "prior_epochs": 2, "batch_size": 64, "progress": False}


def stage_rows(path):
    from aekit.train import read_metrics

    return [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(path / "metrics.csv")]


@pytest.mark.slow
def test_prior_stage_after_the_fit_resumes_exactly(digits_cfg, tmp_path, monkeypatch):
    import importlib

    stages = importlib.import_module("aekit.train.stages")  # the module (aekit.train is also a function)

    run = aekit.train("vqvae", digits_cfg, tmp_path / "a", report=False, evaluate=False, **OPTS)
    rows = stage_rows(tmp_path / "a")
    assert [r["stage"] for r in rows] == ["vqvae", "vqvae", "prior", "prior"]
    assert all(not p.requires_grad for p in run.model.prior.parameters())  # frozen again after its stage
    untrained = model(**{k: v for k, v in OPTS.items() if k in TINY})
    assert not torch.equal(run.model.prior.head[-1].weight, untrained.prior.head[-1].weight)

    class Kill(Exception):
        pass

    real_fit = stages.fit

    def killing_fit(*args, **kwargs):  # the prior stage's fit dies at its second epoch
        def on_step(epoch, index):
            if (epoch, index) == (1, 0):
                raise Kill

        return real_fit(*args, on_step=on_step, **kwargs)

    monkeypatch.setattr(stages, "fit", killing_fit)
    with pytest.raises(Kill):
        aekit.train("vqvae", digits_cfg, tmp_path / "c", report=False, evaluate=False, **OPTS)
    monkeypatch.setattr(stages, "fit", real_fit)
    assert not (tmp_path / "c" / "model.safetensors").exists()
    resumed = aekit.train(resume=tmp_path / "c", report=False, evaluate=False)
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert stage_rows(tmp_path / "c") == rows

    # a finished run resumed again: its prior is loaded, not retrained (no stage fit is called)
    monkeypatch.setattr(stages, "fit", lambda *a, **k: pytest.fail("the finished prior stage was retrained"))
    again = aekit.train(resume=tmp_path / "a", report=False, evaluate=False)
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    assert stage_rows(tmp_path / "a") == rows


@pytest.mark.slow
def test_evaluate_and_encode_report_the_codes(digits_cfg, tmp_path):
    from aekit.cli import main

    aekit.train("vqvae", digits_cfg, tmp_path / "r", report=False, **{**OPTS, "prior_epochs": 1})
    import json

    ev = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert 0 < ev["codebook_usage"] <= 1 and ev["dead_codes"] == round(4 * (1 - ev["codebook_usage"]))
    assert 1 <= ev["codebook_perplexity"] <= 4 and ev["prior_nll"] > 0
    assert ev["prior_bits_per_dim"] == pytest.approx(ev["prior_nll"] / (64 * math.log(2)))
    assert main(["encode", str(tmp_path / "r"), "--out", str(tmp_path / "codes.npy")]) == 0
    codes = np.load(tmp_path / "codes.npy")
    data = load_data(digits_cfg)
    m = aekit.load(tmp_path / "r")
    assert codes.dtype == np.int64 and codes.shape == (len(data.test), 4)
    with torch.no_grad():
        assert (codes == m.encode(to_float(data.test.x)).flatten(1).numpy()).all()


def test_prior_kernel_is_the_mask_b_kernel():
    m = model(prior_kernel=3, prior_layers=1)
    assert m.prior.first.kernel_size == (5, 5)  # mask A: 2 larger, as --prior-kernel's help says
    assert m.prior.blocks[0][1].kernel_size == (3, 3)


def test_first_training_batch_initialises_the_codebook_from_the_data():
    m = model(codebook_size=4, ema_decay=0.9)
    start = m.codebook.clone()
    m.eval().loss(Batch(torch.rand(2, 1, 8, 8)))  # validation before training: no initialisation
    assert not bool(m.initialised) and torch.equal(m.codebook, start) and int(m.ema_steps) == 0
    m.train()
    m.update_codebook = lambda *args: None  # type: ignore[method-assign]  # isolate the initialisation
    store, handle = captured_z_e(m)
    torch.manual_seed(3)
    m.loss(Batch(torch.rand(2, 1, 8, 8)))  # 2 images × a 2×2 grid: 8 vectors for K = 4 codes
    handle.remove()
    flat = m._flat(store["z_e"].detach())
    rows = [min(range(8), key=lambda r: float((flat[r] - e).abs().sum())) for e in m.codebook]
    assert len(set(rows)) == 4  # four distinct rows of z_e ...
    close(m.codebook, flat[rows])  # ... exactly
    assert bool(m.initialised) and int(m.ema_steps) == 1  # one observation each: t = 1, N = 1 − γ, M = (1 − γ)e
    close(m.ema_count, torch.full((4,), 0.1))
    close(m.ema_sum, 0.1 * m.codebook)
    before = m.codebook.clone()
    m.loss(Batch(torch.rand(2, 1, 8, 8)))  # a second training batch does not initialise again
    assert torch.equal(m.codebook, before)


def _ema_rank(rank: int, rendezvous: str, out: str) -> None:
    """One of two gloo ranks: a different batch each, one EMA update, then rank 0 saves the codebook state."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    try:
        m = model(codebook_size=2, code_dim=1, ema_decay=0.5, restart_after=0)
        flat = [torch.tensor([[1.0], [3.0]]), torch.tensor([[10.0]])][rank]
        idx = [torch.tensor([0, 0]), torch.tensor([1])][rank]
        m.update_codebook(flat, idx, torch.bincount(idx, minlength=2))
        if rank == 0:
            torch.save({"codebook": m.codebook, "count": m.ema_count, "sum": m.ema_sum}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ema_update_sums_the_counts_over_ranks(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "rank0.pt"
    mp.spawn(_ema_rank, args=(f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2)
    state = torch.load(out)
    one = model(codebook_size=2, code_dim=1, ema_decay=0.5, restart_after=0)  # one process, the global batch
    one.update_codebook(torch.tensor([[1.0], [3.0], [10.0]]), torch.tensor([0, 0, 1]), torch.tensor([2, 1]))
    close(state["count"], torch.tensor([1.0, 0.5]))  # N = 0.5·(2, 1): both ranks' counts
    close(state["sum"], torch.tensor([[2.0], [5.0]]))
    close(state["codebook"], one.codebook)


def test_report_of_a_vqvae_has_its_main_fit_curves_and_names_its_prior(tmp_path):
    # the main fit's rows are stage "vqvae" (the prior's are "prior"): the report's loss curves are the main fit's
    import aekit
    from aekit.models import MODELS

    run = aekit.train("vqvae", "digits", tmp_path / "r", epochs=2, progress=False, **MODELS["vqvae"].tiny)
    html = (tmp_path / "r" / "report.html").read_text()
    assert "losses.png" in html and (tmp_path / "r" / "losses.png").exists()
    assert "PixelCNN prior" in html and "N(0, I)" not in html.split("samples.png")[1].split("</figure>")[0]
    assert {r["stage"] for r in run.metrics} == {"vqvae", "prior"}


def _dependence(net: torch.nn.Module, hw: int, k: int = 5, w: int | None = None) -> list[torch.Tensor]:
    """For each position p of a (hw, w) grid (w = hw by default), the (hw·w,) bool map of the input positions
    its logits depend on."""
    w = w or hw
    torch.manual_seed(0)
    onehot = torch.nn.functional.one_hot(torch.randint(0, k, (1, hw, w)), k).permute(0, 3, 1, 2).float()
    out = []
    for p in range(hw * w):
        x = onehot.clone().requires_grad_(True)
        net(x)[0, :, p // w, p % w].sum().backward()
        out.append(x.grad[0].abs().sum(0).flatten() > 0)
    return out


def test_gated_pixelcnn_is_causal_and_has_no_blind_spot():
    from aekit.models.blocks import GatedPixelCNN

    torch.manual_seed(0)
    gated, plain = GatedPixelCNN(5, 16, 3, 3), PixelCNN(5, 16, 3, 3)
    for net in (gated, plain):  # both causal: position p depends on no input at or after it
        seen = _dependence(net, 6)
        assert all(not s[p:].any() for p, s in enumerate(seen))
    # (i−1, j+3) is in the plain PixelCNN's blind spot at any depth: a path to the row above takes exactly one
    # upward step, which moves right by at most 2 (the 5×5 mask-A layer) or 1 (a 3×3 mask-B layer), and no step
    # within a row moves right. The gated one, with 3 layers of 3×3 after a 5×5, sees every earlier position
    # of a 6×6 grid (and of a 5×6 one: rows and columns are cropped separately)
    p, q = 2 * 6 + 1, 1 * 6 + 4
    assert not _dependence(plain, 6)[p][q]
    assert all(s[:p].all() for p, s in enumerate(_dependence(gated, 6)))
    assert all(not s[p:].any() and s[:p].all() for p, s in enumerate(_dependence(gated, 5, w=6)))


def test_prior_kind_gated_trains_samples_and_round_trips(tmp_path):
    from aekit.models.blocks import GatedPixelCNN

    m = model(prior_kind="gated")
    assert isinstance(m.prior, GatedPixelCNN) and m.prior.first.vertical.kernel_size == (4, 7)  # k + 2 = 7 wide
    run = aekit.train("vqvae", "digits", tmp_path / "g", **{**TINY, "prior_kind": "gated", "epochs": 1,
                                                            "batch_size": 64, "progress": False, "report": False,
                                                            "device": "cpu"})
    assert run.metrics[-1]["stage"] == "prior" and math.isfinite(run.metrics[-1]["train_loss"])
    back = aekit.load_run(tmp_path / "g")
    assert isinstance(back.model.prior, GatedPixelCNN)
    sa, sb = run.model.state_dict(), back.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    codes = back.model.sample_codes(3, torch.Generator().manual_seed(0))
    assert codes.shape == (3, *back.model.grid) and int(codes.max()) < back.model.codebook_size
    with pytest.raises(ConfigError, match="prior_kind|prior-kind"):
        model(prior_kind="transformer")
    # a run saved before --prior-kind existed (no prior_kind in config.json) loads as the masked PixelCNN
    import json

    aekit.train("vqvae", "digits", tmp_path / "old", **{**TINY, "epochs": 1, "batch_size": 64, "progress": False,
                                                        "report": False, "device": "cpu"})
    path = tmp_path / "old" / "config.json"
    cfg = json.loads(path.read_text())
    assert cfg["model_config"].pop("prior_kind") == "pixelcnn"
    path.write_text(json.dumps(cfg))
    old = aekit.load_run(tmp_path / "old")
    assert type(old.model.prior) is PixelCNN
