"""``tenure bench TARGET``: measure a service beside baselines run on the same machine.

Each target is a function ``(*, duration_s, quick, **options) -> int`` in a module of this
package, imported only when asked for. Exit status, for every target: 0 when
every scenario ran and, in a full run, met its target; 1 when a full run missed
a target (a ``--quick`` run is a smoke test, too short for its timings to be
judged); 2 when the benchmark could not run.
"""

from __future__ import annotations

import importlib
import sys

#: target -> "module:function"
TARGETS = {
    "ingest": "tenure.bench.ingest:ingest_bench",
    "recommend": "tenure.bench.recommend:recommend_bench",
    "segmenter": "tenure.bench.segmenter:segmenter_bench",
    "journey": "tenure.bench.journey:journey_bench",
    "dispatcher": "tenure.bench.dispatcher:dispatcher_bench",
    "metrics": "tenure.bench.metrics:metrics_bench",
    "scoring": "tenure.bench.scoring:scoring_bench",
    "idle": "tenure.bench.idle:idle_bench",
    "e2e": "tenure.bench.e2e:e2e_bench",
}


def run_bench(target: str, *, duration_s: float, quick: bool, **options: object) -> int:
    if target not in TARGETS:
        print(f"unknown benchmark {target!r}; choose one of {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    module_name, _, function = TARGETS[target].partition(":")
    bench = getattr(importlib.import_module(module_name), function)
    status: int = bench(duration_s=duration_s, quick=quick, **options)
    return status
