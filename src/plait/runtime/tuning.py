"""Process settings for a process that runs Plait's engine: ``plait run``, ``serve``,
``worker``, ``api`` and ``scheduler``. Library users (``Workflow.run()`` inside their
own program) keep their interpreter as they set it: only the CLI calls this.

**Garbage collector.** A step's transition allocates a few hundred small containers
(states, events, rows, dicts of parameters), so CPython's default first-generation
threshold (700 allocations) runs a collection every few steps, and every tenth of those
scans the second generation, which holds the whole import graph (pydantic, Jinja,
SQLAlchemy): measured on 1,000 no-op steps, collections took 15–40 % of the run.
:func:`tune_gc` moves everything alive after start-up (modules, compiled models, the
plan) to the permanent generation, which collections never scan, and collects the young
generation every 20,000 allocations: cycles are still reclaimed, in far fewer, cheaper
passes (the same settings large Python services use).
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (20_000, 20, 10)

_tuned = False


def tune_gc() -> None:
    """Freeze what start-up allocated and raise the collection thresholds (once)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()  # what start-up left as garbage goes now, not into the frozen set
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
