"""Benchmark training from a streamed split: peak memory and samples/s on a 10M-impression set.

Three measurements, each in its own process so that one's peak memory is not another's:

1. **prepare** (only when the data set is absent): ``recsys data synth`` of 10M impressions,
   100k users, 100k videos. This step is *not* bounded: the simulator and the encoder hold every
   row in memory; its peak is reported as measured.
2. **stream**: `recsys.train.Trainer` with ``stream_window`` rows per read, for ``--max-steps``
   steps of one epoch, then the epoch-end validation (also streamed, a window at a time).
3. **in memory** (``--memory-steps`` > 0): the same run with the splits loaded as tensors, the
   default path. Beside it, the tensor bytes such a load holds (N rows x bytes per row).

Peak memory is the child's ``ru_maxrss`` (from ``os.wait4``) and the maximum of ``VmRSS``
sampled from ``/proc/PID/status`` every 50 ms while it runs; both include the interpreter,
torch and polars (``rss_after_imports_mb``). Samples/s count only the training steps (window
reads included; validation, checkpoints and publishing excluded); a full epoch's time is
extrapolated from it and labelled so.

Usage:
    python scripts/bench_stream_train.py                        # 10M impressions, 300 steps
    python scripts/bench_stream_train.py --max-steps 1000 --window 200000 --memory-steps 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import emit, machine, table  # noqa: E402

DEFAULT_DATA = "data/prepared/synth-10m"


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


def _vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_child(cmd: list[str], *, interval: float = 0.05) -> dict[str, Any]:
    """Run `cmd`, sampling its resident memory; its exit code, wall time, peak and samples (MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _vm_rss_kib(proc.pid)
            if rss is not None:
                samples.append((round(time.perf_counter() - start, 2), _mib(rss)))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    step = max(1, len(samples) // 40)  # a readable timeline, the peak sample kept
    peak = max(samples, key=lambda s: s[1]) if samples else None
    timeline = sorted(set(samples[::step]) | ({peak} if peak else set()))
    return {"returncode": proc.returncode, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": _mib(usage.ru_maxrss), "sampled_peak_rss_mb": peak[1] if peak else None,
            "rss_timeline_mb": timeline}


def _child(args: argparse.Namespace) -> int:
    """One training run in this process; its figures go to ``args.result`` as JSON."""
    import torch

    import recsys.data.stream as stream
    import recsys.train as T
    from recsys.config import load_config

    torch.set_num_threads(args.threads)
    rss_imports = _vm_rss_kib(os.getpid())
    timers = {"valid": 0.0, "read": 0.0, "checkpoint": 0.0, "publish": 0.0, "batches": 0.0}
    cpu = {"valid": 0.0, "checkpoint": 0.0, "publish": 0.0}  # process CPU seconds: less sensitive to other load

    def timed(name, fn):
        def wrapper(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                timers[name] += time.perf_counter() - t0
                if name in cpu:
                    cpu[name] += time.process_time() - c0
        return wrapper

    T.validation_metrics = timed("valid", T.validation_metrics)
    stream.read_rows = timed("read", stream.read_rows)
    T.Trainer.checkpoint = timed("checkpoint", T.Trainer.checkpoint)
    T.Trainer._publish = timed("publish", T.Trainer._publish)
    epoch_batches = T.Trainer._epoch_batches

    def timed_batches(self):  # time spent making batches: window reads, conversion, shuffling, gathers
        batches = epoch_batches(self)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                timers["batches"] += time.perf_counter() - t0
            yield batch

    T.Trainer._epoch_batches = timed_batches

    window = args.window if args.child == "stream" else 0
    steps = args.max_steps if args.child == "stream" else args.memory_steps
    config = load_config("default", {"dataset": args.data, "model": args.model, "weighting": args.weighting,
                                     "batch_size": args.batch_size, "epochs": 1, "max_steps": steps,
                                     "checkpoint_every": args.checkpoint_every, "diagnostics_every": 0,
                                     "device": "cpu", "threads": args.threads, "stream_window": window})
    with tempfile.TemporaryDirectory(prefix="bench_stream_") as run_dir:
        t0 = time.perf_counter()
        trainer = T.Trainer(config, Path(run_dir) / "run", log=lambda m: None)
        init_s = time.perf_counter() - t0
        rss_init = _vm_rss_kib(os.getpid())
        peak_init = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        read_init = timers["read"]
        t0, c0 = time.perf_counter(), time.process_time()
        result = trainer.fit()
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    train_s = fit_s - timers["valid"] - timers["checkpoint"] - timers["publish"]
    train_cpu = fit_cpu - sum(cpu.values())
    rows = result.steps * args.batch_size
    report = {
        "steps": result.steps, "batch_size": args.batch_size, "rows_trained": rows,
        "train_rows": len(trainer.train_data), "valid_rows": len(trainer.valid_data),
        "init_seconds": round(init_s, 2), "train_seconds": round(train_s, 2),
        "valid_seconds": round(timers["valid"], 2), "read_seconds_in_training": round(timers["read"] - read_init, 2),
        "batch_ms": round(timers["batches"] / max(1, result.steps) * 1e3, 2),
        "samples_per_s": round(rows / train_s, 1), "samples_per_cpu_s": round(rows / train_cpu, 1),
        "epoch_seconds_extrapolated": round(len(trainer.train_data) / (rows / train_s), 0),
        "valid_click_auc": round(result.valid.get("click_auc", float("nan")), 4),
        "rss_after_imports_mb": _mib(rss_imports or 0), "rss_after_init_mb": _mib(rss_init or 0),
        "peak_rss_after_init_mb": _mib(peak_init),
    }
    Path(args.result).write_text(json.dumps(report))
    return 0


def _row_bytes(data: Path) -> dict[str, Any]:
    """Bytes a row takes as tensors (`TensorData`), and the rows of each split, from the files."""
    import polars as pl

    from recsys.data.tensors import load_schema

    schema = load_schema(data)
    names = pl.scan_parquet(data / "train.parquet").collect_schema().names()
    truth = sum(c.startswith("true_") for c in names)
    per_row = 8 * schema.width + 4 * len(schema.tasks) + 3 * 8 + (8 if "position" in names else 0) + 4 * truth
    rows = {s: int(pl.scan_parquet(data / f"{s}.parquet").select(pl.len()).collect().item()) for s in ("train", "valid")}
    return {"row_bytes": per_row, "rows": rows,
            "files_mb": {s: round((data / f"{s}.parquet").stat().st_size / 2**20, 1) for s in ("train", "valid")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="prepared directory (made when absent)")
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100_000, help="stream_window: rows per read")
    parser.add_argument("--max-steps", type=int, default=300, help="streamed training steps (0 = a full epoch)")
    parser.add_argument("--memory-steps", type=int, default=100,
                        help="steps of the in-memory comparison run (0 = skip it, report the estimate only)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--model", default="mmoe")
    parser.add_argument("--weighting", default="uncertainty")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--out", default="runs/bench_stream_train.json")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    parser.add_argument("--child", choices=["stream", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    from recsys.data.stream import BUFFER

    data = Path(args.data)
    report: dict[str, Any] = {"command": [sys.executable, *sys.argv], "machine": machine()}
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if (data / "schema.json").exists() and previous.get("dataset", {}).get("path") == str(data) \
            and "peak_rss_mb" in previous.get("prepare", {}):
        report["prepare"] = {**previous["prepare"], "from_previous_run": True}  # measured when it was made
    elif (data / "schema.json").exists():
        report["prepare"] = {"skipped": f"{data} already prepared (delete it to measure preparing)"}
    else:
        print(f"preparing {args.impressions:,} impressions into {data} (not bounded: every row in memory) ...",
              file=sys.stderr, flush=True)
        prep = run_child([sys.executable, "-m", "recsys", "data", "synth", "--users", str(args.users),
                          "--items", str(args.items), "--impressions", str(args.impressions), "--out", str(data)])
        if prep["returncode"] != 0:
            print(f"error: preparing {data} failed (exit {prep['returncode']})", file=sys.stderr)
            return 1
        report["prepare"] = {**prep, "bounded": False,
                             "note": "simulate() and prepare hold all impressions in memory; not streamed"}
    info = _row_bytes(data)
    summary = json.loads((data / "summary.json").read_text())
    sim = summary.get("protocol", {}).get("simulator", {})
    n_train, n_valid = info["rows"]["train"], info["rows"]["valid"]
    report["dataset"] = {"path": str(data), "impressions": sim.get("impressions"), "users": sim.get("users"),
                         "items": sim.get("items"), "train_rows": n_train, "valid_rows": n_valid,
                         "files_mb": info["files_mb"]}
    estimate = {"row_bytes": info["row_bytes"],
                "train_tensors_mb": round(n_train * info["row_bytes"] / 2**20, 1),
                "train_and_valid_tensors_mb": round((n_train + n_valid) * info["row_bytes"] / 2**20, 1),
                "stream_block_tensors_mb": round(BUFFER * args.window * info["row_bytes"] / 2**20, 1)}

    base = [sys.executable, __file__, "--data", str(data), "--window", str(args.window),
            "--max-steps", str(args.max_steps), "--memory-steps", str(args.memory_steps),
            "--batch-size", str(args.batch_size), "--model", args.model, "--weighting", args.weighting,
            "--threads", str(args.threads), "--checkpoint-every", str(args.checkpoint_every)]
    for mode in ("stream", "memory"):
        if mode == "memory" and args.memory_steps == 0:
            continue
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            result_path = f.name
        print(f"training ({mode}) ...", file=sys.stderr, flush=True)
        run = run_child([*base, "--child", mode, "--result", result_path])
        if run["returncode"] != 0:
            print(f"error: the {mode} run failed (exit {run['returncode']})", file=sys.stderr)
            return 1
        report[mode] = {**json.loads(Path(result_path).read_text()), **run}
        os.unlink(result_path)
    report["stream"].update({"window": args.window, "buffer": BUFFER})
    report["in_memory"] = {"estimate": estimate, **({"measured": report.pop("memory")} if "memory" in report else {})}
    report["machine"]["loadavg_after"] = list(os.getloadavg())  # other work on a shared machine slows the rates
    emit(report, _table(report), args.out, json_only=args.json)
    return 0


def _table(r: dict[str, Any]) -> str:
    s, est, ds = r["stream"], r["in_memory"]["estimate"], r["dataset"]
    mem = r["in_memory"].get("measured")
    rows = [
        ("data set", f"{ds['impressions'] or '?':,} impressions, {ds['users'] or '?':,} users, {ds['items'] or '?':,} "
                     f"videos; train {ds['train_rows']:,} rows, valid {ds['valid_rows']:,} rows"),
        ("prepare", r["prepare"].get("skipped") or f"{r['prepare']['seconds']} s, peak RSS "
                    f"{r['prepare']['peak_rss_mb']:,} MiB (NOT bounded: all rows in memory)"
                    + (" [measured by an earlier run]" if r["prepare"].get("from_previous_run") else "")),
        ("stream: window / buffer", f"{s['window']:,} rows x {s['buffer']} windows "
                                   f"(block tensors ~{est['stream_block_tensors_mb']:,} MiB)"),
        ("stream: peak RSS", f"{s['peak_rss_mb']:,} MiB (sampled {s['sampled_peak_rss_mb']:,}; after imports "
                             f"{s['rss_after_imports_mb']:,})"),
        ("stream: samples/s", f"{s['samples_per_s']:,} wall, {s['samples_per_cpu_s']:,} per CPU-second "
                              f"({s['steps']} steps of {s['batch_size']}; window reads "
                              f"{s['read_seconds_in_training']} s of {s['train_seconds']} s)"),
        ("stream: making a batch", f"{s['batch_ms']} ms a step (reads, conversion, shuffle, gather)"),
        ("stream: 1 epoch", f"~{s['epoch_seconds_extrapolated']:,.0f} s EXTRAPOLATED from {s['steps']} steps "
                            f"(not measured)"),
        ("stream: validation", f"{s['valid_rows']:,} rows in windows, {s['valid_seconds']} s, click AUC "
                               f"{s['valid_click_auc']}"),
        ("in memory: tensors", f"{est['train_tensors_mb']:,} MiB train, {est['train_and_valid_tensors_mb']:,} MiB "
                               f"train+valid ({est['row_bytes']} bytes/row, estimate)"),
    ]
    if mem:
        rows += [
            ("in memory: peak RSS", f"{mem['peak_rss_mb']:,} MiB measured (sampled {mem['sampled_peak_rss_mb']:,}; "
                                    f"loading took {mem['init_seconds']} s)"),
            ("in memory: samples/s", f"{mem['samples_per_s']:,} wall, {mem['samples_per_cpu_s']:,} per CPU-second "
                                     f"({mem['steps']} steps)"),
            ("in memory: making a batch", f"{mem['batch_ms']} ms a step (gather from the split's tensors)"),
        ]
    return table(rows, ("measure", "value"))


if __name__ == "__main__":
    raise SystemExit(main())
