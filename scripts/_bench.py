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
            dtype: torch.dtype = torch.float32, clock: Callable[[], float] = time.process_time,
            backend: str = "torch") -> float:
    """Best GFLOP/s of one ``[m, k] @ [k, n]`` product on the current thread count, by `clock`.

    backend: ``torch`` (``torch.mm``: MKL for float32 on x86, oneDNN for bfloat16) or ``onednn``
    (`recsys.models.onednn`: float32 through oneDNN with the right operand pre-packed, as serving
    runs it). `mm_rates` measures both; the faster is "the single-thread matrix-multiply rate".
    """
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    if backend == "onednn":
        from recsys.models import onednn

        packed = onednn.pack(b)

        def product() -> None:
            onednn.linear(a, packed, None, relu=False)
    elif backend == "torch":
        out = torch.empty(m, n, dtype=dtype)

        def product() -> None:
            torch.mm(a, b, out=out)
    else:
        raise ValueError(f"unknown matmul backend {backend!r} (torch, onednn)")
    for _ in range(3):
        product()
    t0, iters = clock(), 0
    while clock() - t0 < 0.05:
        product()
        iters += 1
    loops = max(1, int(iters * target_s / 0.05))
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        for _ in range(loops):
            product()
        best = min(best, (clock() - t0) / loops)
    return 2.0 * m * n * k / best / 1e9


def mm_rates(m: int = 1024, k: int = 1024, n: int = 1024, **kwargs: Any) -> dict[str, Any]:
    """float32 `mm_rate` through ``torch.mm`` and through oneDNN (where this build has it).

    Returns ``{"torch": GFLOP/s, "onednn": GFLOP/s or None, "best": the larger, "best_backend"}``.
    On x86 ``torch.mm`` runs MKL, whose kernels are chosen by CPU vendor: on AMD CPUs it runs its
    AVX2 kernels, and oneDNN (chosen by instruction set) multiplies about twice as fast. A floor
    is the fastest way this machine has to multiply, so floors use "best".
    """
    from recsys.models import onednn

    rates: dict[str, Any] = {"torch": mm_rate(m, k, n, **kwargs)}
    rates["onednn"] = mm_rate(m, k, n, backend="onednn", **kwargs) if onednn.available() else None
    rates["best_backend"] = max(("torch", "onednn"), key=lambda b: rates[b] or 0.0)
    rates["best"] = rates[rates["best_backend"]]
    return rates


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
