"""`export_onnx` leaves the caller's model as it was: same device, same parameters, same train/eval mode."""

from __future__ import annotations

import json

import pytest
import torch

import aekit
from aekit.export import export_onnx

pytest.importorskip("onnxscript")


def _tiny_vae():
    return aekit.train("vae", "digits", hidden="8", latent_dim=2, epochs=0, progress=False, report=False,
                       evaluate=False).model


def test_export_does_not_move_or_switch_the_callers_model(tmp_path, monkeypatch):
    model = _tiny_vae().train()
    before = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict(keep_vars=True).items()}
    moved = []
    apply = torch.nn.Module._apply

    def spy(self, *args, **kwargs):  # .to() / .cpu() / .cuda() all go through _apply
        if self is model:
            moved.append(True)
        return apply(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "_apply", spy)
    manifest = export_onnx(model, tmp_path / "onnx", check=False, exporter="torchscript")
    assert json.loads((tmp_path / "onnx" / "onnx.json").read_text())["graph"] == manifest["graph"] == "autoencoder"
    assert not moved, "export_onnx moved the caller's model"
    assert model.training  # still in training mode
    for k, v in model.state_dict(keep_vars=True).items():
        assert v.data_ptr() == before[k][0] and torch.equal(v, before[k][1]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_export_leaves_a_gpu_model_on_the_gpu(tmp_path):
    model = _tiny_vae().cuda().eval()
    export_onnx(model, tmp_path / "onnx", check=False)
    assert all(p.is_cuda for p in model.parameters())
    x = torch.rand(2, 1, 8, 8, device="cuda")
    assert model.reconstruct(x).is_cuda
