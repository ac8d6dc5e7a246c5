"""Ranker inference throughput: rows scored per second by batch size, against the matmul rate.

Scores the test split of a prepared data set with a trained ranker (``--run``, default the main
job's ``runs/main/ranker``; without one, a freshly initialised model of the same architecture:
throughput does not depend on the weights). Forward passes only, evaluation mode, no autograd,
``--threads`` intra-op threads (default 1), CPU time by default (on a shared machine wall time
also counts other processes' slices; ``--clock wall`` uses the wall clock).

Method:
1. The matmul floor: the best GFLOP/s of float32 1024x1024 @ 1024x1024 in the same process,
   the faster of ``torch.mm`` and oneDNN (`_bench.mm_rates`; on AMD CPUs torch's MKL runs
   AVX2 kernels and oneDNN about twice as fast).
2. FLOPs per row: `torch.utils.flop_counter.FlopCounterMode` around one forward of 1024 rows
   (matrix products only; gathers and elementwise ops are not counted).
3. For each batch size, the test rows are scored in order for at least ``--seconds`` of clock
   time (whole passes); rows/s = rows / time; achieved GFLOP/s = FLOPs/row x rows/s, and its
   fraction of the matmul floor says how close inference runs to matmul-bound. Each batch size
   is timed on torch's plain path and through oneDNN with packed weights (`Ranker.pack_cpu`,
   what serving runs).
``--bf16`` repeats the largest batch under bfloat16 autocast, as a fraction of the bfloat16
1024^3 matmul rate measured in the same run.

Usage:
    python scripts/bench_inference.py                          # runs/main/ranker, 1 thread
    python scripts/bench_inference.py --run RUN --batches 1,256,4096 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import emit, machine, mm_rate, mm_rates, table  # noqa: E402

from recsys.data.tensors import load_split  # noqa: E402


def load_ranker(run: Path, data: Path):
    """(ranker, where it came from): the run's published model, or a fresh default MMoE."""
    from recsys.data.tensors import load_schema
    from recsys.models.registry import build_from_spec, build_model

    if (run / "manifest.json").exists():
        from recsys.checkpoint import load_published

        manifest, state = load_published(run)
        model = build_from_spec(manifest["model"], load_schema(data))
        model.load_state_dict(state)
        return model.eval(), str(run)
    schema = load_schema(data)
    return build_model("mmoe", schema, schema.tasks).eval(), "fresh mmoe (no trained run found)"


def rows_per_s(model, x: torch.Tensor, batch: int, seconds: float, clock, *, bf16: bool = False) -> float:
    n = len(x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, min(n, 8 * batch), batch):  # warm-up
            model(x[start:start + batch])
        done, t0 = 0, clock()
        while True:
            for start in range(0, n, batch):
                model(x[start:start + batch])
            done += n
            if clock() - t0 >= seconds:
                break
        return done / (clock() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/prepared/ml-100k", help="prepared data set directory")
    p.add_argument("--run", default="runs/main/ranker", help="trained ranker run directory")
    p.add_argument("--batches", default="1,64,512,4096", help="comma-separated batch sizes")
    p.add_argument("--max-rows", type=int, default=20000, help="rows of the test split scored per pass")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per batch size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--bf16", action="store_true", help="also time the largest batch under bfloat16 autocast")
    p.add_argument("--out", default="runs/bench/inference.json")
    p.add_argument("--json", action="store_true", help="print only the JSON")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "schema.json").exists():
        print(f"error: {data} is not a prepared data set; run `recsys data prepare ml-100k` first", file=sys.stderr)
        return 2
    try:
        batches = [int(b) for b in args.batches.split(",")]
        if any(b < 1 for b in batches):
            raise ValueError
    except ValueError:
        print(f"error: --batches must be positive integers, got {args.batches!r}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model, source = load_ranker(Path(args.run), data)
    x = load_split(data, "test").x[:args.max_rows]
    rates = mm_rates(clock=clock)
    floor = rates["best"]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1024])  # not packed yet: torch's counter sees aten matmuls only
    flops = counter.get_total_flops() / min(1024, len(x))
    rows = []
    paths = ["torch"] + (["onednn"] if rates["onednn"] else [])
    for b in batches:
        for path in paths:
            model.pack_cpu(path == "onednn")
            rate = rows_per_s(model, x, b, args.seconds, clock)
            rows.append({"batch": b, "path": path, "rows_per_s": rate, "gflops": flops * rate / 1e9,
                         "fraction_of_matmul": flops * rate / 1e9 / floor})
    model.pack_cpu(False)
    if args.bf16:
        b = max(batches)
        rate = rows_per_s(model, x, b, args.seconds, clock, bf16=True)
        floor_bf16 = mm_rate(dtype=torch.bfloat16, clock=clock)  # a bf16 run is measured against bf16 matmul
        rows.append({"batch": b, "bf16": True, "path": "torch", "rows_per_s": rate, "gflops": flops * rate / 1e9,
                     "matmul_gflops_bf16": floor_bf16, "fraction_of_matmul": flops * rate / 1e9 / floor_bf16})
    report = {"benchmark": "inference", "model": source, "data": str(data), "rows": len(x),
              "threads": args.threads, "clock": args.clock, "matmul_gflops": floor, "matmul_gflops_by_backend": rates,
              "flops_per_row": flops,
              "results": rows, "machine": machine()}
    text = table([(r["batch"], "bf16" if r.get("bf16") else "fp32", r["path"], f"{r['rows_per_s']:,.0f}",
                   f"{r['gflops']:.1f}", f"{100 * r['fraction_of_matmul']:.1f}%") for r in rows],
                 ("batch", "dtype", "path", "rows/s", "GFLOP/s", "of matmul rate"))
    text = (f"ranker inference: {source}, {len(x):,} test rows, {args.threads} thread(s), {args.clock} clock\n"
            f"matmul floor {floor:.1f} GFLOP/s (fp32 1024^3, {rates['best_backend']}; torch.mm {rates['torch']:.1f}); "
            f"{flops / 1e6:.3f} MFLOP per row (forward)\n" + text)
    emit(report, text, args.out, json_only=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
