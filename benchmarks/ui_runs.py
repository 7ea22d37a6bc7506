"""First paint of the runs page with 100,000 runs in the store (target ≤ 1 s).

A fresh ``PLAIT_HOME`` in a temporary directory, a real ``plait serve`` on SQLite (the
examples deployed), one real run of ``hello``, then ``--runs`` copies of it written
straight into the ``runs`` table (the API would take minutes; the list reads nothing
else). Then Debian's Chromium, driven by Playwright, opens ``/runs``:

* **cold** — a new browser context each time (empty cache, the session token put in
  ``sessionStorage`` before the app starts, as after a login), measured from the start
  of navigation to the first run row in the DOM (``performance.now()`` when
  ``tr.vrow`` appears, checked every animation frame): HTML, scripts, the API call and
  the render, everything a user waits for.
* **warm** — the same page loaded again in the same context (scripts cached).
* **baseline** — the login page in a new context until its form is there: the floor of
  this browser, this machine and the app's scripts, with no data at all.

Also reported: the ``GET /api/v1/runs?limit=100`` request as the browser saw it (Resource
Timing), the same request from Python, and how many rows the DOM holds (the list is
virtualised: a few dozen, whatever the store holds). Results go to
``benchmarks/results/ui_runs.json``. Needs ``make ui``, Chromium at ``/usr/bin/chromium``
and ``pip install playwright`` (no ``playwright install``: the system browser is used).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import ui_support as ui  # noqa: E402

TARGET_MS = 1000.0
FIRST_ROW = "() => document.querySelector('tr.vrow') ? performance.now() : null"
LOGIN_FORM = "() => document.querySelector('input[name=username]') ? performance.now() : null"
API_TIMING = """() => {
  const e = performance.getEntriesByType('resource').find((r) => r.name.includes('/api/v1/runs?'));
  return e ? e.responseEnd - e.startTime : null;
}"""


def session_script(base: str) -> str:
    """An init script that stores a fresh login in ``sessionStorage`` before the app runs."""
    form = f"username={ui.USER}&password={ui.PASSWORD}".encode()
    req = urllib.request.Request(base + "/api/v1/auth/token", data=form, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        pair = json.load(r)
    value = json.dumps(
        {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}
    )
    return f"sessionStorage.setItem('plait.session', {json.dumps(value)});"


def measure(browser: Any, base: str, reps: int) -> dict[str, Any]:
    cold: list[float] = []
    warm: list[float] = []
    api: list[float] = []
    baseline: list[float] = []
    rows: list[int] = []
    for _ in range(reps):
        ctx = browser.new_context(base_url=base, viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.goto("/login", wait_until="commit")
        baseline.append(page.wait_for_function(LOGIN_FORM, polling="raf").json_value())
        ctx.close()

        ctx = browser.new_context(base_url=base, viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(session_script(base))
        page = ctx.new_page()
        page.goto("/runs", wait_until="commit")
        cold.append(page.wait_for_function(FIRST_ROW, polling="raf").json_value())
        api_ms = page.wait_for_function(API_TIMING).json_value()
        api.append(api_ms)
        rows.append(page.locator("tr.vrow").count())
        page.goto("/runs", wait_until="commit")
        warm.append(page.wait_for_function(FIRST_ROW, polling="raf").json_value())
        ctx.close()
    return {"cold": cold, "warm": warm, "api": api, "baseline": baseline, "rows": rows}


def python_api_ms(base: str, n: int = 10) -> list[float]:
    bearer = ui.token(base)
    out = []
    for _ in range(n):
        req = urllib.request.Request(base + "/api/v1/runs?limit=100")
        req.add_header("Authorization", f"Bearer {bearer}")
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store")
    parser.add_argument("--reps", type=int, default=5, help="page loads of each kind")
    args = parser.parse_args()
    if not ui.STATIC.exists():
        print("the UI is not built: run `make ui`", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="plait-ui-bench-") as tmp:
        home = Path(tmp) / "home"
        with ui.serve(home) as base:
            first = ui.call(base, "POST", "/api/v1/workflows/hello/runs", {"inputs": {}})
            ui.wait_run(base, first["id"])
            seeded_s = ui.seed_runs(home, first["id"], args.runs - 1)
            print(f"seeded {args.runs - 1:,} runs in {seeded_s:.1f} s")
            py_api = python_api_ms(base)
            with sync_playwright() as p:
                browser = ui.launch(p)
                try:
                    m = measure(browser, base, args.reps)
                finally:
                    browser.close()
    result = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs_in_store": args.runs,
        "target_ms": TARGET_MS,
        "first_rows_cold": summary(m["cold"]),
        "first_rows_warm": summary(m["warm"]),
        "baseline_login_form": summary(m["baseline"]),
        "runs_api_in_browser": summary(m["api"]),
        "runs_api_from_python": summary(py_api),
        "rows_in_dom": max(m["rows"]),
    }
    cold = result["first_rows_cold"]["median_ms"]
    print(f"{'what':<38}{'median':>10}{'min':>10}{'max':>10}")
    for key, label in [
        ("first_rows_cold", "runs page, first rows (cold cache)"),
        ("first_rows_warm", "runs page, first rows (warm cache)"),
        ("baseline_login_form", "baseline: login form (no data)"),
        ("runs_api_in_browser", "GET /runs?limit=100 in the browser"),
        ("runs_api_from_python", "GET /runs?limit=100 from Python"),
    ]:
        s = result[key]
        print(f"{label:<38}{s['median_ms']:>8.0f}ms{s['min_ms']:>8.0f}ms{s['max_ms']:>8.0f}ms")
    verdict = "meets" if cold <= TARGET_MS else "MISSES"
    goal = f"target first rows ≤ {TARGET_MS:.0f} ms with {args.runs:,} runs"
    print(f"{goal}: {verdict} ({cold:.0f} ms)")
    print(f"rows in the DOM: {result['rows_in_dom']}")
    out = HERE / "results" / "ui_runs.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
