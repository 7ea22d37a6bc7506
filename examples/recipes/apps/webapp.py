#!/usr/bin/env python3
"""A stand-in for the service the deployment recipes deploy (standard library only).

One instance serves the release that ``ROOT/current`` points at, reading
``ROOT/current/app.json`` on every request, so switching the symlink is a deployment
and no restart is needed::

    {"version": "1.4.2", "healthy": true, "error_rate": 0.0}

- ``GET /health`` — 200 ``{"status": "ok", "version", "instance"}`` when the release is
  healthy, else 503 (also 503 while no release is active);
- ``GET /`` (any other path) — 200 with the version, or 500 for a share of requests
  given by ``error_rate`` (deterministic: with 0.25 every fourth request fails).

Every answer carries ``X-Version`` and ``X-Instance`` headers.

    python3 webapp.py --root blue --port 9001 --name blue
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class App:
    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.count = 0
        self.lock = threading.Lock()

    def release(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / "current" / "app.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def should_fail(self, error_rate: float) -> bool:
        """Fail ``error_rate`` of the requests, spread evenly (no randomness, so a test
        sees the same answers every time)."""
        with self.lock:
            self.count += 1
            n = self.count
        return int(n * error_rate) > int((n - 1) * error_rate)


def handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release = app.release()
            version = str(release.get("version", "?")) if release else None
            if self.path.split("?")[0] == "/health":
                healthy = bool(release and release.get("healthy", True))
                status = "ok" if healthy else ("failing" if release else "no release")
                self._answer(200 if healthy else 503, {"status": status, "version": version})
            elif release is None:
                self._answer(503, {"error": "no release is active"})
            elif app.should_fail(float(release.get("error_rate", 0.0))):
                self._answer(500, {"error": "internal error", "version": version})
            else:
                self._answer(200, {"message": f"hello from {version}", "version": version})

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            body["instance"] = app.name
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Version", str(body.get("version")))
            self.send_header("X-Instance", app.name)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="instance directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default=None, help="instance name (default: root's name)")
    args = parser.parse_args()
    app = App(args.root.resolve(), args.name or args.root.name)
    server = ThreadingHTTPServer((args.host, args.port), handler(app))
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
