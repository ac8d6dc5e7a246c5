"""What every benchmark script shares: the matmul-rate floor, peak memory, machine facts, output.

Each benchmark prints a readable table and one JSON object, and writes the JSON atomically to
its ``--out`` path; `scripts/write_benchmarks_md.py` renders those files into BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from recsys.io import atomic_write_json


def mm_rate(m: int = 1024, k: int = 1024, n: int = 1024, *, repeats: int = 5, target_s: float = 0.2,
            dtype: torch.dtype = torch.float32, clock: Callable[[], float] = time.process_time) -> float:
    """Best GFLOP/s of ``torch.mm([m, k] @ [k, n])`` on the current thread count, by `clock`.

    The 1024^3 float32 figure on one thread is what the benchmarks call "the single-thread
    matrix-multiply rate": the floor every achieved rate is a fraction of.
    """
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    t0, iters = clock(), 0
    while clock() - t0 < 0.05:
        torch.mm(a, b, out=out)
        iters += 1
    loops = max(1, int(iters * target_s / 0.05))
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        for _ in range(loops):
            torch.mm(a, b, out=out)
        best = min(best, (clock() - t0) / loops)
    return 2.0 * m * n * k / best / 1e9


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (other work on a shared machine slows every rate)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """Facts that make a figure comparable: CPU, cores, load, library versions."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg": loadavg(), "torch": torch.__version__,
            "python": platform.python_version(), "torch_threads": torch.get_num_threads()}


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(report: dict[str, Any], text: str, out: str | Path | None, *, json_only: bool = False) -> None:
    """Print the table (unless `json_only`) and the JSON; write the JSON to `out`."""
    if not json_only:
        print(text)
    print(json.dumps(report, sort_keys=True))
    if out:
        atomic_write_json(Path(out), report)
