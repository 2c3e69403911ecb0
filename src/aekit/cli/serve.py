"""``aekit serve RUN [--host 127.0.0.1] [--port 8000]``: the explorer web app for a run."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence

from ..errors import AekitError, ConfigError
from ._common import SPLITS


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--split", default="test", choices=SPLITS, help="split shown on the map (default test)")
    p.add_argument("--max-points", type=int, default=5000,
                   help="points drawn on the map, a fixed random subset (default 5000)")
    p.add_argument("--max-upload-mb", type=float, default=4.0, help="largest accepted upload (default 4 MB)")


def cmd_serve(args: argparse.Namespace) -> int:
    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise AekitError(f"aekit serve needs {', '.join(missing)}: pip install 'aekit[serve]'")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: choose a port in 1..65535 (0 picks a free one)")
    if args.max_points < 1 or args.max_upload_mb <= 0:
        raise ConfigError("--max-points and --max-upload-mb must be positive")
    from ..serve.app import check_port, serve

    check_port(args.host, args.port)  # a busy port: one line, before the run is loaded or the banner printed
    serve(args.run, host=args.host, port=args.port, split=args.split, max_points=args.max_points,
          max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    return 0
