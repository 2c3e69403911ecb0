"""`aekit serve`'s JSON API through FastAPI's TestClient (no browser): every endpoint, and bad requests and
uploads (wrong type, too large, corrupt) get one-line JSON errors while the server keeps serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from aekit.data import DataShape

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402
from serve_stubs import StandInSegmenter, png_bytes  # noqa: E402

import aekit  # noqa: E402
from aekit.serve.app import create_app, explorer_for_run  # noqa: E402
from aekit.serve.explorer import Explorer, to_class_map  # noqa: E402

LOCAL = "http://127.0.0.1"  # the explorer answers only requests addressed to this machine (Host header)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "vae"
    aekit.train("vae", "digits", out, hidden="32", latent_dim=3, epochs=1, batch_size=128, progress=False,
                report=False, evaluate=False)
    return out


@pytest.fixture(scope="module")
def client(vae_dir):
    return TestClient(create_app(explorer_for_run(vae_dir, max_upload_bytes=50_000)), base_url=LOCAL)


@pytest.fixture(scope="module")
def seg_client():
    return TestClient(create_app(Explorer(StandInSegmenter(), None, model_name="stand-in-unet")), base_url=LOCAL)


def decode_png(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_page_info_points_and_openapi(client):
    r = client.get("/")
    assert r.status_code == 200 and "<canvas" in r.text and "http" not in r.text.split("<script>")[1].split("fetch")[0]
    info = client.get("/api/info").json()
    assert info["latent"] and info["latent_dim"] == 3 and info["can_sample"] and not info["can_segment"]
    assert len(info["sliders"]) == 3 and info["input_shape"] == [1, 8, 8] and len(info["classes"]) == 10
    # sliders are named z0… as `aekit encode` columns and `aekit traverse` rows are, and the page shows the names
    assert [s["name"] for s in info["sliders"]] == ["z0", "z1", "z2"] and [s["dim"] for s in info["sliders"]] == [0, 1, 2]
    assert "label.textContent = s.name" in r.text and "s.dim + 1" not in r.text
    pts = client.get("/api/points").json()
    assert len(pts["x"]) == len(pts["y"]) == len(pts["label"]) == 359
    assert pts["axis_labels"][0].startswith("PC1")
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/encode", "/api/decode", "/api/sample", "/api/interpolate", "/api/segment", "/api/points",
              "/api/info", "/api/encode/image", "/api/item/{index}"):
        assert p in paths
    # the query-string label of the two routes that take one is documented in the schema, with its rule
    for p, verb, needed in (("/api/item/{index}", "get", "unlabelled split"), ("/api/encode/image", "post", "upload")):
        (param,) = [q for q in paths[p][verb]["parameters"] if q["name"] == "label"]
        assert param["in"] == "query" and needed in param["description"] and "id:N" in param["description"]


def test_item_encode_decode_roundtrip(client):
    item = client.get("/api/item/5").json()
    assert len(item["code"]) == 3 and decode_png(item["input"]).shape == (8, 8)
    enc = client.post("/api/encode", json={"indices": [5, 7]}).json()
    assert np.allclose(enc["codes"][0], item["code"], atol=1e-6)
    x = aekit.load_data("digits").test.x[5].float().div(255).flatten().tolist()
    enc2 = client.post("/api/encode", json={"inputs": [x]}).json()
    assert np.allclose(enc2["codes"][0], item["code"], atol=1e-5)
    dec = client.post("/api/decode", json={"z": [item["code"]], "values": True}).json()
    assert decode_png(dec["images"][0]).shape == (8, 8) and len(dec["values"][0]) == 64
    assert dec["images"][0] == item["reconstruction"]


def test_sample_and_interpolate(client):
    s = client.post("/api/sample", json={"n": 4, "seed": 1}).json()
    assert len(s["images"]) == 4 and decode_png(s["grid"]).ndim == 2
    cold = [client.post("/api/sample", json={"n": 2, "seed": seed, "temperature": 0}).json() for seed in (1, 2)]
    assert cold[0]["images"] == cold[1]["images"]  # τ = 0: the prior's mode, whatever the seed
    assert cold[0]["images"][0] == cold[0]["images"][1]
    assert client.post("/api/sample", json={"n": 4, "seed": 1, "temperature": 1}).json()["images"] == s["images"]
    it = client.post("/api/interpolate", json={"a": 0, "b": 3, "steps": 5, "spherical": True}).json()
    assert len(it["codes"]) == 5 and decode_png(it["strip"]).shape[1] > 5 * 8


@pytest.mark.parametrize("path, payload, status, words", [
    ("/api/decode", {"z": [[0.0, 1.0]]}, 422, "3 numbers"),
    ("/api/decode", {"z": []}, 422, "z"),
    ("/api/encode", {"indices": [1], "inputs": [[0.0]]}, 422, "exactly one"),
    ("/api/encode", {"indices": [100000]}, 404, "out of range"),
    ("/api/encode", {"inputs": [[0.0, 1.0]]}, 422, "64 numbers"),
    ("/api/sample", {"n": 0}, 422, "n"),
    ("/api/sample", {"n": 2, "temperature": -0.5}, 422, "temperature"),
    ("/api/sample", {"n": 2, "temperature": 11}, 422, "temperature"),
    ("/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, 422, "steps"),
])
def test_bad_json_requests_get_json_errors(client, path, payload, status, words):
    r = client.post(path, json=payload)
    assert r.status_code == status
    err = r.json()["error"]
    assert words in err and "\n" not in err


def test_non_finite_and_malformed_json(client):
    r = client.post("/api/decode", content=b'{"z": [[NaN, 0, 0]]}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    r = client.post("/api/decode", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    assert client.get("/api/nothing").json() == {"error": "Not Found"}


def test_uploads_are_validated_and_server_keeps_serving(client):
    good = png_bytes()
    r = client.post("/api/encode/image", files={"file": ("x.png", good, "image/png")})
    assert r.status_code == 200 and len(r.json()["code"]) == 3
    assert decode_png(r.json()["input"]).shape == (8, 8)  # resized to the model's input
    bad = [
        (("x.txt", b"hello", "text/plain"), 415, "PNG or JPEG"),
        (("x.png", b"GIF89a" + b"\0" * 20, "image/png"), 415, "not a valid PNG"),
        (("x.png", good[:40], "image/png"), 400, "could not be decoded"),
        (("x.png", good[:8] + b"\0" * 100, "image/png"), 400, "could not be decoded"),
        (("x.png", png_bytes((400, 400), "RGB"), "image/png"), 413, "limit"),
    ]
    for file, status, words in bad:
        r = client.post("/api/encode/image", files={"file": file})
        assert r.status_code == status, (file[0], r.text)
        assert words in r.json()["error"]
        assert client.get("/api/info").status_code == 200  # still serving
    r = client.post("/api/encode/image", content=b"x" * 200_000,
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = client.post("/api/encode/image")
    assert r.status_code == 422 and "file" in r.json()["error"]
    assert client.post("/api/encode/image", files={"file": ("x.png", good, "image/png")}).status_code == 200


def test_segment_on_a_vae_run_is_a_clear_error(client):
    r = client.post("/api/segment", files={"file": ("x.png", png_bytes(), "image/png")})
    assert r.status_code == 400 and "does not segment" in r.json()["error"]


def test_segment_with_a_segmentation_model(seg_client):
    info = seg_client.get("/api/info").json()
    assert info["can_segment"] and not info["latent"] and not info["can_sample"]
    r = seg_client.post("/api/segment", files={"file": ("x.png", png_bytes((16, 12), "RGB"), "image/png")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"], out["tiled"]) == (16, 12, False)  # its own size, not the model's 16×16
    assert decode_png(out["overlay"]).shape == (12, 16, 3) and decode_png(out["mask"]).shape == (12, 16, 4)
    assert set(out["class_fractions"]) <= {"0", "1"} and abs(sum(out["class_fractions"].values()) - 1) < 1e-9
    r = seg_client.post("/api/segment", files={"file": ("x.txt", b"abc", "text/plain")})
    assert r.status_code == 415
    r = seg_client.post("/api/decode", json={"z": [[0.0]]})
    assert r.status_code == 400 and "no latent space" in r.json()["error"]


def test_segment_with_aekit_unet_tiles_like_aekit_segment():
    from aekit.infer import segment_image
    from aekit.models import MODELS, build_model

    cfg = MODELS["unet"].make_config({"depth": 1, "base_channels": 4, "num_classes": 3}).resolve(DataShape((1, 12, 12), True))
    torch.manual_seed(3)
    model = build_model("unet", cfg)
    ex = Explorer(model, None, model_name="unet")
    assert ex.info()["can_segment"] and not ex.info()["latent"]  # its decode takes skip features, not codes
    client = TestClient(create_app(ex), base_url=LOCAL)
    upload = png_bytes((40, 28), seed=2)
    out = client.post("/api/segment", files={"file": ("x.png", upload, "image/png")})
    assert out.status_code == 200, out.text
    out = out.json()
    assert (out["width"], out["height"], out["tiled"]) == (40, 28, True)  # tiled at its own size, not resized
    image = torch.from_numpy(np.asarray(Image.open(io.BytesIO(upload)))[None].copy())
    mask, tiled = segment_image(model, image)  # what `aekit segment` computes for this image
    counts = torch.bincount(mask.flatten(), minlength=3)
    expect = {str(c): int(n) / mask.numel() for c, n in enumerate(counts.tolist()) if n}
    assert tiled and out["class_fractions"] == pytest.approx(expect)
    small = client.post("/api/segment", files={"file": ("x.png", png_bytes((10, 12)), "image/png")}).json()
    assert (small["width"], small["height"], small["tiled"]) == (10, 12, False)


def test_readme_lists_every_api_route(client):
    """The README's API list of the explorer is the app's routes (no more, no fewer)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Explore a run in the browser", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"`((?:GET|POST) /api/[^`]*)`", section))
    routes = {f"{m} {r.path}" for r in client.app.routes for m in getattr(r, "methods", ()) or ()
              if r.path.startswith("/api/") and m in ("GET", "POST")}
    assert routes and listed == routes, (sorted(routes - listed), sorted(listed - routes))
    assert "/openapi.json" in section and "/docs" not in section  # there is no /docs page (it loads from a CDN)


def test_class_maps_from_any_output_form():
    hw = (4, 4)
    assert to_class_map(torch.ones(1, 4, 4, dtype=torch.long), hw).sum() == 16
    scores = torch.zeros(1, 3, 4, 4)
    scores[:, 2] = 1.0
    assert (to_class_map(scores, hw) == 2).all()
    assert to_class_map(torch.full((1, 1, 4, 4), 0.7), hw).sum() == 16  # probabilities
    assert to_class_map(torch.full((1, 4, 4), -2.0), hw).sum() == 0  # logits
    assert to_class_map(torch.ones(1, 2, 2, dtype=torch.bool), hw).shape == hw  # resized (nearest)


def test_table_run_renders_bar_charts(tiny_table):
    from aekit.models import MODELS, build_model

    cfg = MODELS["ae"].make_config({"hidden": (8,), "latent_dim": 2}).resolve(DataShape(tiny_table.shape, False))
    ex = Explorer(build_model("ae", cfg), tiny_table)
    assert ex.info()["kind"] == "table" and ex.points()["axis_labels"] == ["z0", "z1"]
    item = ex.item(0)
    assert decode_png(item["reconstruction"]).shape[2] == 3
    with pytest.raises(Exception, match="table rows"):
        ex.encode_image(png_bytes(), "image/png")


# ------------------------------------------------------------------------------------------ conditional models


@pytest.fixture(scope="module")
def cvae_client(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "cvae"
    aekit.train("cvae", "digits", out, hidden="32", latent_dim=3, epochs=1, batch_size=128, progress=False,
                report=False, evaluate=False)
    return TestClient(create_app(explorer_for_run(out)), base_url=LOCAL)


@pytest.mark.slow  # trains a run (the conformance suite's explorer test covers cvae in the quick subset)
def test_conditional_routes_take_a_class(cvae_client):
    c = cvae_client
    info = c.get("/api/info").json()
    assert info["conditional"] and info["label_names"] == [str(i) for i in range(10)]
    z = [[0.0, 0.0, 0.0]]
    three = c.post("/api/decode", json={"z": z, "label": 3, "values": True}).json()["values"]
    seven = c.post("/api/decode", json={"z": z, "label": "7", "values": True}).json()["values"]
    assert three != seven  # the same code decoded with another class is another image
    assert c.post("/api/decode", json={"z": z, "label": 3, "values": True}).json()["values"] == three
    s = c.post("/api/sample", json={"n": 4, "seed": 1, "label": 2}).json()
    assert len(s["images"]) == 4
    assert len(c.post("/api/interpolate", json={"a": 0, "b": 3, "steps": 4, "label": 5}).json()["images"]) == 4
    item = c.get("/api/item/0").json()  # a datum of the split: its own label
    assert item["label"] is not None and len(item["code"]) == 3
    r = c.post("/api/decode", json={"z": z})
    assert r.status_code == 422 and "needs a label" in r.json()["error"]
    r = c.post("/api/sample", json={"n": 2, "label": "Sneaker"})
    assert r.status_code == 422 and "valid labels are 0, 1" in r.json()["error"]


def test_label_for_an_unconditional_run_is_a_clear_error(client):
    r = client.post("/api/sample", json={"n": 2, "label": 1})
    assert r.status_code == 400 and "not conditional" in r.json()["error"]
