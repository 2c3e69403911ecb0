"""One label rule for a conditional model's traversals (``aekit traverse --label`` and the explorer's sliders:
the datum encoded with its own label, the traversal decoded with the requested class), the ``--label`` help of
every command, and the explorer page's class ids sent as ``id:N`` (numeric class names win over bare ids)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from model_stubs import tiny_cvae

import aekit
from aekit.data import DataConfig, to_float
from aekit.data.base import make_dataset
from aekit.errors import ConfigError
from aekit.latent import traversal_labels, traverse

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_explorer(names: tuple[str, ...] = ("a", "b", "c")):
    from aekit.serve.explorer import Explorer

    model = tiny_cvae(3, names)
    rng = np.random.default_rng(0)
    data = make_dataset("toy", "image", DataConfig(spec="toy"), rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8),
                        np.arange(40) % 3, classes=names)
    return model, data, Explorer(model, data)


# ------------------------------------------------------------------------------------------------ the rule


def test_traversal_label_rule():
    assert traversal_labels(2, None) == (2, 2)  # its own class both ways
    assert traversal_labels(2, 0) == (2, 0)  # still encoded with its own label, drawn as class 0
    assert traversal_labels(None, 1) == (1, 1)  # an unlabelled datum: the class for both
    with pytest.raises(ConfigError, match="needs the datum's class label"):
        traversal_labels(None, None)


def test_traverse_encodes_with_label_and_decodes_with_path_label():
    model = tiny_cvae()
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))
    dims, steps, span = [1, 0], 5, 2.0
    z0 = model.embed(x[None], labels=torch.tensor([2]))[0]
    z = z0.repeat(len(dims) * steps, 1)
    for r, d in enumerate(dims):
        z[r * steps:(r + 1) * steps, d] = torch.linspace(-span, span, steps)
    want = model.decode(z, labels=torch.full((len(z),), 0))
    got = traverse(model, x, dims, steps, span, label=2, path_label=0)
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got, traverse(model, x, dims, steps, span, label=0))  # encoding with 0 differs
    assert torch.allclose(traverse(model, x, dims, steps, span, label=2),  # path_label defaults to label
                          traverse(model, x, dims, steps, span, label=2, path_label=2), rtol=0, atol=0)


def test_explorer_item_encodes_with_the_datums_own_label():
    from aekit.serve.explorer import RequestError

    model, data, ex = toy_explorer()
    s = data.test
    i = 1
    own = int(s.y[i])
    other = (own + 1) % 3
    want = model.embed(to_float(s.x[i : i + 1]), labels=torch.tensor([own]))[0].detach()
    for label in (None, other, "c"):  # a requested class never changes the encoding of a labelled datum
        assert np.allclose(ex.item(i, label)["code"], want.numpy(), rtol=0, atol=0)
    ex.y = None  # an unlabelled split: the class encodes the datum, and is required
    enc = model.embed(to_float(s.x[i : i + 1]), labels=torch.tensor([other]))[0].detach()
    assert np.allclose(ex.item(i, other)["code"], enc.numpy(), rtol=0, atol=0)
    with pytest.raises(RequestError, match="no labels: send label"):
        ex.item(i)


# ------------------------------------------------------------------------------------------ CLI vs explorer


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("labels") / "cvae"
    aekit.train("cvae", "digits", run, hidden="16", latent_dim=2, epochs=1, batch_size=256, progress=False,
                report=False, evaluate=False)
    return run


def _capture_traversals(monkeypatch) -> list[tuple[torch.Tensor, list[int]]]:
    import aekit.viz.traversal as traversal

    seen: list[tuple[torch.Tensor, list[int]]] = []

    def fake(images, steps, path, *, row_labels=None, title=None):
        seen.append((images.detach().clone(), [int(re.match(r"z(\d+)", t).group(1)) for t in row_labels]))
        return path

    monkeypatch.setattr(traversal, "plot_traversal", fake)
    return seen


@pytest.mark.slow  # trains a 1-epoch digits run
def test_cli_traverse_and_explorer_sliders_agree(cvae_run, tmp_path, monkeypatch):
    from aekit.cli import main
    from aekit.serve.app import explorer_for_run

    strips = _capture_traversals(monkeypatch)
    ex = explorer_for_run(cvae_run)
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(ex, "render", lambda x: seen.append(x.detach().clone()) or ["img"] * len(x))
    i, steps, span = 0, 5, 2.0
    own = int(ex.y[i])
    assert own not in (5, 8)
    for label in (None, "5", "id:8"):
        args = ["traverse", str(cvae_run), "--index", str(i), "--steps", str(steps), "--span", str(span),
                "--out", str(tmp_path / "t.png")]
        assert main(args + ([] if label is None else ["--label", label])) == 0
        cli, dims = strips[-1]
        # the explorer: the datum's code (its own label), the sliders moved unit by unit, decoded with the class
        z0 = torch.tensor(ex.item(i)["code"])
        rows = z0.repeat(len(dims) * steps, 1)
        for r, d in enumerate(dims):
            rows[r * steps:(r + 1) * steps, d] = torch.linspace(-span, span, steps)
        ex.decode(rows.tolist(), label=own if label is None else int(label.removeprefix("id:")))
        assert torch.allclose(cli, seen[-1], rtol=0, atol=1e-6), label
    assert not torch.allclose(strips[0][0], strips[1][0]) and not torch.allclose(strips[1][0], strips[2][0])
    # the old rule (encoded with --label too) draws another figure
    x = to_float(ex.x[i : i + 1])[0]
    old = traverse(ex.model, x, strips[1][1], steps, span, label=5)
    assert not torch.allclose(old, strips[1][0], atol=1e-4)


@pytest.mark.slow  # trains a 1-epoch digits run
def test_cli_traverse_on_an_unlabelled_split_encodes_with_the_label(cvae_run, tmp_path, monkeypatch, capsys):
    import aekit.latent as latent
    from aekit.cli import main

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8)  # digits-shaped images, no labels
    np.save(tmp_path / "x.npy", x)
    calls: list[tuple[torch.Tensor, int | None, int | None]] = []
    original = latent.traverse

    def spy(model, x, *a, label=None, path_label=None, **kw):
        calls.append((x.detach().clone(), label, path_label))
        return original(model, x, *a, label=label, path_label=path_label, **kw)

    monkeypatch.setattr(latent, "traverse", spy)
    strips = _capture_traversals(monkeypatch)
    args = ["traverse", str(cvae_run), "--data", f"npy:{tmp_path / 'x.npy'}", "--split", "train", "--steps", "4",
            "--out", str(tmp_path / "t.png")]
    assert main(args) == 2
    assert "needs the datum's class label" in capsys.readouterr().err and not calls
    assert main(args + ["--label", "id:3"]) == 0
    xin, enc, dec = calls[-1]
    assert (enc, dec) == (3, 3)  # no own label: the class encodes and decodes
    assert any(torch.allclose(xin.cpu(), to_float(torch.as_tensor(r))) for r in x)  # a row of the npy file
    assert strips[-1][0].shape[0] == 4 * len(strips[-1][1])


# ----------------------------------------------------------------------------------------------- help text


@pytest.mark.parametrize("command", ["sample", "traverse", "interpolate"])
def test_label_help_states_the_rule(command, capsys):
    from aekit.cli import main
    from aekit.cli._common import LABEL_HELP

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--label CLASS" in text and LABEL_HELP in text
    assert "id or name" not in text and "id or a name" not in text


# ------------------------------------------------------------------------------------- the page's class ids


NUMERIC = ("1", "2", "3")  # e.g. a table's label values 1, 2, 3: ids 0, 1, 2 — id 1 is the class named "2"


def test_upload_label_id_colon_is_the_id_not_the_class_named_so():
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient
    from serve_stubs import png_bytes

    from aekit.serve.app import create_app

    _, _, ex = toy_explorer(NUMERIC)
    client = TestClient(create_app(ex), base_url="http://127.0.0.1")
    img = png_bytes((4, 4), seed=2)

    def recon(label: str) -> str:
        r = client.post(f"/api/encode/image?label={label}", files={"file": ("x.png", img, "image/png")})
        assert r.status_code == 200, r.text
        return r.json()["reconstruction"]

    assert recon("id:1") == recon("2") != recon("1") == recon("id:0")
    page = (aekit.__path__[0] + "/serve/static/index.html")
    assert '"id:" + $("class-select").value' in open(page, encoding="utf-8").read()


@pytest.mark.slow  # a headless Chromium
def test_page_uploads_with_the_selected_class_id(tmp_path):
    from pathlib import Path

    from serve_stubs import png_bytes

    from aekit.serve.app import create_app

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium)")
    pytest.importorskip("uvicorn")
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import ARGS, CHROMIUM, LocalServer

    _, _, ex = toy_explorer(NUMERIC)
    img = png_bytes((4, 4), seed=2)
    want = ex.encode_image(img, "image/png", 1)["reconstruction"]  # class id 1, the class named "2"
    assert want != ex.encode_image(img, "image/png", 0)["reconstruction"]  # the class named "1"
    (tmp_path / "up.png").write_bytes(img)
    with LocalServer(create_app(ex)) as url, sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                    headless=True, args=ARGS, bypass_csp=True)
        ctx.set_default_timeout(20_000)
        try:
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_function("window.explorer && window.explorer.ready")
            page.select_option("#class-select", index=1)  # id 1 (the option named "2")
            assert page.eval_on_selector("#class-select", "s => s.options[s.selectedIndex].text") == "2"
            page.set_input_files("#encode-file", str(tmp_path / "up.png"))
            page.wait_for_function("document.querySelector('#upload-recon').getAttribute('src')")
            assert page.get_attribute("#upload-recon", "src") == want
        finally:
            ctx.close()
