"""Offline classification speed on this machine's CPU (``make bench``, or alone:
``python benchmarks/ai.py [--texts N] [--latency-runs N]``).

Measured in one process, each figure beside a baseline from the same run:

1. **model load** — the first :func:`plait.ai.embeddings.load` of the process: importing
   PyTorch and sentence-transformers and reading all-MiniLM-L6-v2 from site-packages.
2. **batch throughput** — ``ai.classify``'s batch path (:func:`plait.ai.text.classify`:
   embed the texts in batches of 32, the four labels from the cache, cosine, softmax)
   on N realistic support texts (the 30 tickets of ``tests/ai/data``, varied), in
   texts/s, the best of 5 — baseline: ``SentenceTransformer.encode`` of the same texts
   with the same batch size, on the same model object, interleaved with them. The ratio
   is what Plait's classification costs over the bare model (target ≥ 0.9).
3. **single-text latency** — one ``ai.classify`` step's ``execute`` (input validation,
   the worker-thread hop, embedding, scoring, outputs) for one ticket at a time, p50
   and p95 — baseline: ``encode`` of one text.

Results also go to ``benchmarks/results/ai.json``. PyTorch uses ``PLAIT_AI_THREADS``
threads (default: the cores, up to 4); the number used is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TICKETS = ROOT / "tests" / "ai" / "data" / "support_tickets.json"
_OPENINGS = ("", "Hello, ", "Hi team, ", "Urgent: ", "Good morning. ")
_CLOSINGS = ("", " Thanks!", " Best regards, Sam", " Please help.", " Ticket {i}.")


def _texts(n: int) -> tuple[list[str], dict[str, str]]:
    data = json.loads(TICKETS.read_text())
    base = [t["text"] for t in data["tickets"]]
    texts = []
    for i in range(n):
        opening = _OPENINGS[i % len(_OPENINGS)]
        closing = _CLOSINGS[(i // len(base)) % len(_CLOSINGS)].format(i=i)
        texts.append(f"{opening}{base[i % len(base)]}{closing}")
    return texts, data["labels"]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_load() -> dict[str, Any]:
    from plait.ai import embeddings

    t0 = time.perf_counter()
    embeddings.load()
    took = time.perf_counter() - t0
    info = embeddings.model_info()
    return {
        "name": "model load (first use in a process)",
        "seconds": round(took, 3),
        "threads": info["threads"],
        "ok": True,
    }


def _raw_model() -> Any:
    from plait.ai import embeddings

    return embeddings._MODEL._model  # the very object the actions use


def bench_batch(n: int) -> dict[str, Any]:
    from plait.ai.embeddings import BATCH_SIZE
    from plait.ai.text import classify

    texts, labels = _texts(n)
    model = _raw_model()
    classify(texts[:32], labels)  # warm-up: labels into the cache, kernels loaded

    def raw() -> float:
        t0 = time.perf_counter()
        model.encode(
            texts,
            batch_size=BATCH_SIZE,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return time.perf_counter() - t0

    def plait() -> float:
        t0 = time.perf_counter()
        classify(texts, labels)
        return time.perf_counter() - t0

    base_runs, plait_runs = [], []
    for _ in range(5):  # interleaved, so a busy moment hits both; the best of each
        base_runs.append(raw())
        plait_runs.append(plait())
    base_rate, rate = n / min(base_runs), n / min(plait_runs)
    ratio = rate / base_rate
    return {
        "name": "ai.classify batch throughput",
        "texts": n,
        "texts_per_second": round(rate, 1),
        "baseline_texts_per_second": round(base_rate, 1),
        "ratio": round(ratio, 3),
        "target": ">= 0.9x the bare model",
        "ok": ratio >= 0.9,
    }


def bench_latency(runs: int) -> dict[str, Any]:
    from plait.actions.ai import ClassifyAction, ClassifyInput
    from plait.actions.base import ActionContext

    texts, labels = _texts(runs)
    model = _raw_model()
    action = ClassifyAction()
    ctx = ActionContext(
        run_id="bench",
        workflow="bench",
        step="classify",
        attempt=1,
        workdir=HERE,
        env={},
        log=lambda stream, line: None,
        mask=lambda text: text,
    )

    async def steps() -> list[float]:
        samples = []
        for text in texts:
            t0 = time.perf_counter()
            inp = ClassifyInput.model_validate({"text": text, "labels": labels})
            await action.execute(ctx, inp)
            samples.append(time.perf_counter() - t0)
        return samples

    base = []
    for text in texts:
        t0 = time.perf_counter()
        model.encode([text], show_progress_bar=False, normalize_embeddings=True)
        base.append(time.perf_counter() - t0)
    samples = asyncio.run(steps())
    p50, base_p50 = statistics.median(samples), statistics.median(base)
    return {
        "name": "ai.classify single-text latency",
        "runs": runs,
        "p50_ms": round(p50 * 1000, 2),
        "p95_ms": round(_percentile(samples, 0.95) * 1000, 2),
        "baseline_p50_ms": round(base_p50 * 1000, 2),
        "overhead_ms": round((p50 - base_p50) * 1000, 2),
        "target": "p50 <= 50 ms",
        "ok": p50 <= 0.05,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=600, help="texts in the batch (600)")
    parser.add_argument(
        "--latency-runs", type=int, default=100, help="single-text steps timed (100)"
    )
    args = parser.parse_args()
    if args.texts < 32 or args.latency_runs < 1:
        parser.error("--texts must be at least 32 and --latency-runs at least 1")
    results = []
    for bench in (
        bench_load,
        lambda: bench_batch(args.texts),
        lambda: bench_latency(args.latency_runs),
    ):
        r = bench()
        results.append(r)
        mark = "ok " if r["ok"] else "MISS"
        fields = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "ok"))
        print(f"[{mark}] {r['name']}: {fields}", flush=True)
    out = HERE / "results" / "ai.json"
    out.parent.mkdir(exist_ok=True)
    payload = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
