"""The web UI: the built single-page app in ``plait/server/static``, served at ``/``.

``install(app)`` belongs at the end of :func:`plait.server.app.create_app`, after every
router, so that API routes always win. It adds one catch-all ``GET``/``HEAD`` route:

* a path naming a file of the build (``/assets/index-3f2a.js``, ``/favicon.svg``) gets
  that file; hashed assets under ``/assets/`` are cached for a year (immutable), the
  rest revalidates;
* any other path that is not reserved gets ``index.html`` (no-cache), so a deep link
  such as ``/runs/0190…`` opens in the app, which routes it in the browser;
* reserved paths — ``/api/…``, ``/docs``, ``/health``, ``/ready``, ``/metrics`` and
  the OpenAPI document — are never shadowed: an unknown one answers the API's JSON 404.

When the package was built without the UI (no ``index.html``), ``/`` answers a short
text saying how to build it; the API works either way. The UI needs no Node at run time.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"

RESERVED = ("/api", "/docs", "/redoc", "/health", "/ready", "/metrics", "/openapi.json")

NOT_BUILT = (
    "The Plait web UI is not built into this installation.\n"
    "Build it with `make ui` (needs Node 20), or use the API under /api/v1 (docs at /docs).\n"
)


def _reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED)


def _not_found() -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "not_found", "message": "not found", "details": []}},
        status_code=404,
    )


def _resolve(root: Path, rel: str) -> Path | None:
    """The file ``rel`` under ``root``, or None; never a path outside ``root``."""
    if not rel or "\x00" in rel:
        return None
    try:
        candidate = (root / rel).resolve()
    except (OSError, ValueError):
        return None
    if root not in candidate.parents or not candidate.is_file():
        return None
    return candidate


def install(app: FastAPI, static_dir: Path | None = None) -> None:
    """Serve the built UI from ``static_dir`` (default: ``plait/server/static``)."""
    root = (static_dir or STATIC_DIR).resolve()
    if getattr(app.state, "ui_installed", False):
        return
    app.state.ui_installed = True

    async def spa(request: Request, path: str = "") -> Response:
        url_path = "/" + path
        if _reserved(url_path):
            return _not_found()
        index = root / "index.html"
        found = _resolve(root, path)
        if found is not None:
            immutable = path.startswith("assets/")
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(found, headers={"Cache-Control": cache})
        if path.startswith("assets/") or not index.is_file():
            if not index.is_file() and not path.startswith("assets/"):
                return PlainTextResponse(NOT_BUILT, status_code=200 if not path else 404)
            return _not_found()
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.add_api_route(
        "/{path:path}", spa, methods=["GET", "HEAD"], include_in_schema=False, name="ui"
    )
