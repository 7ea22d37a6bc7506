"""The engine processes' garbage-collector settings (in a child: they are global)."""

from __future__ import annotations

import subprocess
import sys


def test_tune_gc_freezes_start_up_and_raises_thresholds() -> None:
    probe = (
        "import gc\n"
        "from plait.runtime.tuning import GC_THRESHOLDS, tune_gc\n"
        "assert gc.get_freeze_count() == 0\n"
        "tune_gc(); tune_gc()\n"
        "assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()\n"
        "assert gc.get_freeze_count() > 1000\n"
        "x = []; x.append(x); del x\n"
        "assert gc.collect() >= 1  # cycles are still reclaimed\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_importing_the_engine_does_not_touch_the_collector() -> None:
    probe = (
        "import gc\n"
        "before = gc.get_threshold()\n"
        "import plait.local, plait.runtime.tuning\n"
        "assert gc.get_threshold() == before and gc.get_freeze_count() == 0\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
