#!/usr/bin/env python3
"""A tiny weighted reverse proxy: the "load balancer" of the deployment recipes.

It reads its configuration file on every request, so a workflow switches traffic by
rewriting the file (the ``file`` action writes atomically)::

    {"backends": [
      {"name": "blue",  "url": "http://127.0.0.1:9001", "weight": 90},
      {"name": "green", "url": "http://127.0.0.1:9002", "weight": 10}
    ]}

Requests are spread by smooth weighted round-robin (the nginx algorithm): with weights
90/10, exactly one request in ten goes to green, evenly spaced. A backend with weight 0
gets nothing; with no weight anywhere the router answers 503. The answer of the backend
is passed through with an ``X-Backend`` header naming it; a backend that cannot be
reached gives 502.

    python3 router.py --config router.json --port 9000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Router:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.current: dict[str, int] = {}
        self.seen: str = ""

    def pick(self) -> dict[str, Any] | None:
        try:
            text = self.config.read_text()
            backends = [b for b in json.loads(text)["backends"] if int(b.get("weight", 0)) > 0]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not backends:
            return None
        with self.lock:
            if text != self.seen:  # a new configuration starts a new rotation
                self.seen, self.current = text, {}
            total = sum(int(b["weight"]) for b in backends)
            for b in backends:
                self.current[b["name"]] = self.current.get(b["name"], 0) + int(b["weight"])
            best = max(backends, key=lambda b: self.current[b["name"]])
            self.current[best["name"]] -= total
        return best


def handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            backend = router.pick()
            if backend is None:
                self._answer(503, b'{"error": "no backend has traffic"}', "none", {})
                return
            url = str(backend["url"]).rstrip("/") + self.path
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    self._answer(resp.status, resp.read(), backend["name"], resp.headers)
            except urllib.error.HTTPError as exc:
                self._answer(exc.code, exc.read(), backend["name"], exc.headers)
            except (urllib.error.URLError, OSError) as exc:
                body = json.dumps({"error": f"backend {backend['name']} unreachable: {exc}"})
                self._answer(502, body.encode(), backend["name"], {})

        def _answer(self, code: int, body: bytes, name: str, headers: Any) -> None:
            self.send_response(code)
            for key in ("Content-Type", "X-Version", "X-Instance"):
                if headers.get(key):
                    self.send_header(key, headers[key])
            self.send_header("X-Backend", name)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), handler(Router(args.config.resolve())))
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
