"""`aekit serve` end to end in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
the page loads, a click on a point changes the decoded image, a slider move changes it again, a bad upload
shows the server's error while the page keeps working, and an upload to a segmentation run returns an
overlay.  Screenshots go to the pytest tmp dir (and to $AEKIT_SCREENSHOTS when set)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from serve_stubs import StandInSegmenter, png_bytes  # noqa: E402

import aekit  # noqa: E402
from aekit.serve.app import create_app, explorer_for_run  # noqa: E402
from aekit.serve.explorer import Explorer  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


class LocalServer:
    """uvicorn on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def vae_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "vae"
    aekit.train("vae", "digits", out, hidden="64", latent_dim=4, epochs=3, batch_size=64, progress=False,
                report=False, evaluate=False)
    with LocalServer(create_app(explorer_for_run(out, max_upload_bytes=100_000))) as url:
        yield url


@pytest.fixture(scope="module")
def cvae_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "cvae"
    aekit.train("cvae", "digits", out, hidden="64", latent_dim=4, epochs=3, batch_size=64, progress=False,
                report=False, evaluate=False)
    with LocalServer(create_app(explorer_for_run(out))) as url:
        yield url


@pytest.fixture(scope="module")
def seg_url():
    with LocalServer(create_app(Explorer(StandInSegmenter(), None, model_name="stand-in-unet"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                        args=ARGS, viewport={"width": 1280, "height": 960},
                                                        bypass_csp=True)
        context.set_default_timeout(20_000)
        yield context
        context.close()


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("AEKIT_SCREENSHOTS"):
        dest = Path(os.environ["AEKIT_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / name)
    return path


def src(page, selector: str) -> str:
    return page.get_attribute(selector, "src") or ""


def wait_src_change(page, selector: str, old: str) -> str:
    page.wait_for_function("([sel, old]) => { const s = document.querySelector(sel).getAttribute('src');"
                           " return s && s !== old; }", arg=[selector, old])
    return src(page, selector)


def click_point(page, k: int) -> None:
    pos = page.evaluate("k => window.explorer.screenPos(k)", k)
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + pos[0], box["y"] + pos[1])


@pytest.mark.slow
def test_click_and_slider_change_the_decoded_image(browser, vae_url, tmp_path):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(vae_url)
    page.wait_for_function("window.explorer && window.explorer.ready")
    assert page.locator("#map").is_visible() and page.locator("#legend span").count() == 10
    assert page.locator("input[type=range]").count() == 4
    start = wait_src_change(page, "#decoded-img", "")

    click_point(page, 0)  # a real click on the canvas at point 0
    page.wait_for_function("document.querySelector('#recon-img').getAttribute('src')")
    after_click = wait_src_change(page, "#decoded-img", start)
    assert page.locator("#item-title").inner_text().startswith("#")
    assert after_click == src(page, "#recon-img")  # the decoded code is the point's code

    box = page.locator("#slider-0").bounding_box()
    page.mouse.click(box["x"] + 0.95 * box["width"], box["y"] + box["height"] / 2)
    after_slider = wait_src_change(page, "#decoded-img", after_click)
    assert after_slider not in (start, after_click)

    click_point(page, 40)  # a second point: A and B are set, interpolation runs
    page.click("#interp-btn")
    page.wait_for_selector("#strip:not(.hidden)")
    page.click("#sample-btn")
    page.wait_for_selector("#samples:not(.hidden)")
    shot(page, tmp_path, "explorer-vae.png")
    # temperature 0: every press draws the prior's mode, so a new seed gives the same grid; 1 again: it changes
    page.fill("#temperature", "0")
    page.click("#sample-btn")
    page.wait_for_function("document.querySelector('#status').textContent.includes('temperature 0')")
    cold = page.get_attribute("#samples", "src")
    page.evaluate("document.querySelector('#samples').removeAttribute('src')")
    page.click("#sample-btn")  # the next seed
    assert wait_src_change(page, "#samples", "") == cold
    page.fill("#temperature", "-1")  # out of range: the server's one-line reason, the page keeps working
    page.click("#sample-btn")
    page.wait_for_function("document.querySelector('#status').textContent.includes('greater than or equal to 0')")
    page.fill("#temperature", "1")
    page.click("#sample-btn")
    assert wait_src_change(page, "#samples", cold) != cold
    assert not errors, errors


@pytest.mark.slow
def test_bad_upload_shows_an_error_and_the_page_keeps_working(browser, vae_url, tmp_path):
    page = browser.new_page()
    page.goto(vae_url)
    page.wait_for_function("window.explorer && window.explorer.ready")
    bad = tmp_path / "broken.png"
    bad.write_bytes(png_bytes()[:30])
    page.set_input_files("#encode-file", str(bad))
    page.wait_for_selector("#status.error")
    assert "could not be decoded" in page.inner_text("#status")
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(seed=3))
    before = src(page, "#decoded-img")
    page.set_input_files("#encode-file", str(good))
    page.wait_for_function("document.querySelector('#upload-recon').getAttribute('src')")
    wait_src_change(page, "#decoded-img", before)
    assert "error" not in (page.get_attribute("#status", "class") or "")


@pytest.mark.slow
def test_upload_returns_a_mask_overlay(browser, seg_url, tmp_path):
    page = browser.new_page()
    page.goto(seg_url)
    page.wait_for_function("window.explorer && window.explorer.ready")
    assert page.locator("#segment-section").is_visible() and not page.locator("#map-section").is_visible()
    img = tmp_path / "upload.png"
    img.write_bytes(png_bytes((16, 16), "RGB", seed=5))  # the stand-in has no tiled inference
    page.set_input_files("#segment-file", str(img))
    page.wait_for_function("document.querySelector('#seg-overlay').getAttribute('src')")
    assert src(page, "#seg-overlay").startswith("data:image/png;base64,")
    assert "class 1" in page.inner_text("#seg-info")
    shot(page, tmp_path, "explorer-segment.png")


@pytest.mark.slow
def test_class_selector_of_a_conditional_run(browser, cvae_url, tmp_path):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(cvae_url)
    page.wait_for_function("window.explorer && window.explorer.ready")
    assert page.locator("#class-box").is_visible() and page.locator("#class-select option").count() == 10
    first = wait_src_change(page, "#decoded-img", "")
    page.select_option("#class-select", "7")  # the same code (the sliders) decoded with class 7
    seven = wait_src_change(page, "#decoded-img", first)
    assert seven != first
    page.click("#sample-btn")
    page.wait_for_selector("#samples:not(.hidden)")
    assert "class 7" in page.inner_text("#status")
    click_point(page, 0)  # a datum: the selector shows its own label
    page.wait_for_function("document.querySelector('#recon-img').getAttribute('src')")
    label = page.inner_text("#item-title").split("— ")[-1]
    assert page.eval_on_selector("#class-select", "s => s.options[s.selectedIndex].text") == label
    shot(page, tmp_path, "explorer-cvae.png")
    assert not errors, errors
