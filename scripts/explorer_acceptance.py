"""Issue 19's explorer acceptance, measured at the issue's sizes (a one-off measurement, not a timed test).

1. A chunked 200 MB body (JSON to ``/api/decode``, multipart to ``/api/segment``) sent to ``aekit serve`` in its
   own process: the server's resident memory (``/proc/PID/status`` VmRSS, sampled every 10 ms) before and at its
   peak, the bytes the client got to send before the answer, and the status.  Target: < 50 MB extra RSS.
2. ``/api/info`` latency while 20 large uploads (1024×1024 PNGs) are being segmented by a trained U-Net.
   Target: < 200 ms.

Usage (Linux, from the repository root)::

    .venv/bin/python scripts/explorer_acceptance.py [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "aekit", "-q", "serve", str(run), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read().decode() if proc.stderr else ''}") from None
            time.sleep(0.2)
    raise SystemExit("the server did not start within 180 s")


def chunked_post(port: int, path: str, total: int, content_type: str, prefix: bytes = b"") -> tuple[int, bytes]:
    """Send ``total`` bytes as a chunked body; stop when the server answers.  (bytes sent, response head)"""
    sent, chunk = 0, 64 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        if prefix:
            s.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
        piece = f"{chunk:x}\r\n".encode() + b"1" * chunk + b"\r\n"
        try:
            while sent < total:
                if select.select([s], [], [], 0)[0]:
                    break
                s.sendall(piece)
                sent += chunk
            if sent >= total:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        response = b""
        try:
            while b"\r\n\r\n" not in response:
                data = s.recv(65536)
                if not data:
                    break
                response += data
        except OSError:
            pass
    return sent, response.split(b"\r\n", 1)[0]


def measure_body(run: Path, path: str, content_type: str, prefix: bytes = b"") -> None:
    proc, port = start_server(run)
    try:
        time.sleep(1.0)
        base = rss_mb(proc.pid)
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(proc.pid))
                time.sleep(0.01)

        t = threading.Thread(target=sample)
        t.start()
        t0 = time.perf_counter()
        sent, status = chunked_post(port, path, 200 << 20, content_type, prefix)
        elapsed = time.perf_counter() - t0
        time.sleep(0.5)
        stop.set()
        t.join()
        print(f"chunked 200 MB body to {path}: answer {status.decode(errors='replace')!r} after {elapsed:.2f} s; "
              f"client sent {sent / 1e6:.1f} MB; server RSS {base:.0f} MB before, peak {peak[0]:.0f} MB "
              f"(+{peak[0] - base:.1f} MB)", flush=True)
    finally:
        proc.terminate()
        proc.wait()


def png_noise(side: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    img = (rng.random((side, side)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def measure_info(run: Path, uploads: int = 20, side: int = 1024) -> None:
    import httpx

    proc, port = start_server(run)
    url = f"http://127.0.0.1:{port}"
    body = png_noise(side)
    statuses: list[int] = []
    done: list[float] = []
    try:
        httpx.get(url + "/api/info", timeout=30)  # warm
        idle = []
        for _ in range(20):  # the same request on the idle server: this machine's baseline
            t0 = time.perf_counter()
            httpx.get(url + "/api/info", timeout=30)
            idle.append(time.perf_counter() - t0)
        print(f"/api/info on the idle server: median {statistics.median(idle) * 1000:.0f} ms, "
              f"max {max(idle) * 1000:.0f} ms", flush=True)
        t_start = time.perf_counter()

        def upload() -> None:
            r = httpx.post(url + "/api/segment", files={"file": ("x.png", body, "image/png")}, timeout=600)
            statuses.append(r.status_code)
            done.append(time.perf_counter() - t_start)

        threads = [threading.Thread(target=upload) for _ in range(uploads)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        times = []
        while any(t.is_alive() for t in threads) and len(times) < 200:
            t0 = time.perf_counter()
            assert httpx.get(url + "/api/info", timeout=60).status_code == 200
            times.append(time.perf_counter() - t0)
            time.sleep(0.1)
        for t in threads:
            t.join()
        busy = list(done)
        print(f"/api/info during {uploads} uploads of {side}×{side} PNGs ({len(body) / 1e6:.2f} MB each): "
              f"{len(times)} requests, median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
              f"upload statuses {sorted(set(statuses))} ({statuses.count(200)} × 200); the uploads finished "
              f"{min(busy):.1f}–{max(busy):.1f} s after they started", flush=True)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, help="folder for the two runs (default: a temporary one)")
    p.add_argument("--only", choices=["body", "info"], default=None, help="run one of the two measurements")
    args = p.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="aekit-explorer-"))
    sys.path.insert(0, str(ROOT / "src"))
    import aekit

    ae, unet = work / "ae", work / "unet"
    if not (ae / "complete.json").exists():
        aekit.train("ae", "digits", ae, epochs=1, hidden="32", latent_dim=2, progress=False, report=False,
                    overwrite=True)
    if not (unet / "complete.json").exists():
        aekit.train("unet", "cells", unet, epochs=1, depth=2, base_channels=8, cells_count=40, image_size=64,
                    progress=False, report=False, overwrite=True)
    if args.only != "info":
        measure_body(ae, "/api/decode", "application/json")
        part = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
                b"Content-Type: image/png\r\n\r\n")
        measure_body(unet, "/api/segment", "multipart/form-data; boundary=b", part)
    if args.only != "body":
        measure_info(unet)


if __name__ == "__main__":
    main()
