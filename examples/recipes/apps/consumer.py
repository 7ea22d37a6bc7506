#!/usr/bin/env python3
"""A service that accepts API keys: the consumer in the secret-rotation recipe.

It keeps the keys it accepts in a JSON file (only their SHA-256, never the keys), and
has a small admin API guarded by the token in ``$CONSUMER_ADMIN_TOKEN``:

- ``GET /whoami`` with ``Authorization: Bearer <key>`` — 200 ``{"key": <fingerprint>}``
  for an accepted key, else 401;
- ``POST /admin/keys`` (body: the new key) — accept it; 201 ``{"fingerprint"}``;
- ``DELETE /admin/keys/<fingerprint>`` — revoke it; 204, or 404 when unknown;
- ``GET /admin/keys`` — the fingerprints accepted now.

A fingerprint is the first 16 hex digits of the key's SHA-256.

    CONSUMER_ADMIN_TOKEN=… python3 consumer.py --keys keys.json --port 9100
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Keys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save(self, keys: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(keys, indent=1))
        tmp.replace(self.path)

    def accepts(self, key: str) -> str | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        for fp, stored in self.load().items():
            if hmac.compare_digest(stored, digest):
                return fp
        return None


def handler(keys: Keys, admin_token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _bearer(self) -> str:
            value = self.headers.get("Authorization", "")
            return value[7:].strip() if value.startswith("Bearer ") else ""

        def _admin(self) -> bool:
            if admin_token and hmac.compare_digest(self._bearer(), admin_token):
                return True
            self._answer(401, {"error": "admin token required"})
            return False

        def do_GET(self) -> None:
            if self.path == "/whoami":
                found = keys.accepts(self._bearer())
                self._answer(200 if found else 401, {"key": found} if found else {})
            elif self.path == "/admin/keys":
                if self._admin():
                    self._answer(200, {"keys": sorted(keys.load())})
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/admin/keys":
                self._answer(404, {"error": "not found"})
                return
            if not self._admin():
                return
            length = int(self.headers.get("Content-Length") or 0)
            key = self.rfile.read(length).decode().strip()
            if len(key) < 16:
                self._answer(400, {"error": "a key has at least 16 characters"})
                return
            with keys.lock:
                stored = keys.load()
                stored[fingerprint(key)] = hashlib.sha256(key.encode()).hexdigest()
                keys.save(stored)
            self._answer(201, {"fingerprint": fingerprint(key)})

        def do_DELETE(self) -> None:
            if not self.path.startswith("/admin/keys/"):
                self._answer(404, {"error": "not found"})
                return
            if not self._admin():
                return
            fp = self.path.rsplit("/", 1)[-1]
            with keys.lock:
                stored = keys.load()
                found = stored.pop(fp, None)
                keys.save(stored)
            self._answer(204 if found else 404, {})

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode() if code != 204 else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=Path, required=True, help="the accepted keys (JSON)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    token = os.environ.get("CONSUMER_ADMIN_TOKEN", "")
    server = ThreadingHTTPServer((args.host, args.port), handler(Keys(args.keys), token))
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
