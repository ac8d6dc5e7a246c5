"""Training speed side by side: our MMoE against torch-rechub's MMOE, and against the matmul rate.

Everything runs in one process on the same prepared data, with the same thread count
(``--threads``, default 1) and batch size (1024). Times are process CPU seconds by default
(``--clock cpu``, used with one thread): on a shared machine wall time also counts the slices
other processes take, CPU time does not; ``--clock wall`` times by wall clock, and the wall
seconds of every epoch are kept in the JSON as well. Method:

1. **Matmul rate.** ``torch.mm`` of float32 matrices, 1024x1024 @ 1024x1024 and the shapes the
   model runs (1024 x F*D @ F*D x 256 for the first expert layer, 1024 x 256 @ 256 x 128, ...):
   warm up, then the best of ``--mm-repeats`` timings of a loop long enough to take ~0.2 s.
   GFLOP/s = 2*M*N*K / seconds / 1e9. The same 1024^3 product through oneDNN with a pre-packed
   operand (`_bench.mm_rates`): on x86 ``torch.mm`` runs MKL, which runs its AVX2 kernels on AMD
   CPUs, and oneDNN multiplies about twice as fast there. The faster of the two 1024^3 figures
   is "the single-thread matmul rate"; the fraction of ``torch.mm``'s is shown beside it.
2. **One training epoch** (forward + loss + backward + optimiser step over all training rows in
   batches of 1024), best of ``--repeats`` epochs after a few warm-up steps:
   - ours: `recsys.models.registry.build_model("mmoe", schema, tasks, **--ours)`, losses from
     `recsys.mtl.losses.task_losses`, backward through our ``equal`` weighting (the plain sum),
     ``torch.optim.Adam`` as our trainer builds it (``--optimizer`` tries foreach / fused;
     ``--no-check-ids`` skips the per-batch id range check; ``--bf16`` runs the model under
     bfloat16 autocast, reported against the bfloat16 matmul rate as well);
   - torch-rechub: its ``MMOE`` with the same embedding size, expert count and expert / tower
     widths (plus the BatchNorm its MLP always adds), trained by its own
     ``MTLTrainer.train_one_epoch`` and, separately, by a plain loop (forward, BCE per task, mean,
     backward, Adam step) to show the trainer's own overhead.
   Batches are slices of one seeded permutation, built up front for both: ours as ``x[idx]``,
   ``y[idx]`` tensors, rechub's as its dict of per-field tensors; no data conversion is timed.
   samples/s = rows / epoch seconds; the speed-up is ours / rechub.
3. **FLOPs per sample.** `torch.utils.flop_counter.FlopCounterMode` around one forward and,
   separately, one backward of a batch of 1024, divided by 1024. It counts matrix products
   exactly (mm / addmm / bmm / baddbmm, including the einsum that mixes experts, which lowers to
   bmm) and nothing else: embedding gathers, elementwise ops and the optimiser are not FLOPs
   here. A hand count of 2 * MACs of every nn.Linear and stacked expert weight is printed beside
   it as a check. Achieved GFLOP/s = FLOPs(fwd+bwd)/sample * samples/s; its fraction of the
   matmul rate says how close training runs to matmul-bound.
4. **Where the time goes** (ours): per-phase wall time summed over the timed epoch (forward,
   loss, backward, optimiser step), and with ``--profile N`` a torch.profiler table of N steps
   by operator (self CPU time), grouped into matmul / embedding / optimiser / elementwise.

Usage:
    python scripts/bench_train_speed.py                                   # all rows, 1 thread
    python scripts/bench_train_speed.py --ours '{"num_experts": 8, "expert_hidden": [512, 256]}'
    python scripts/bench_train_speed.py --optimizer fused --profile 30 --max-rows 50000
    python scripts/bench_train_speed.py --optimizer fused --no-check-ids --bf16          # fastest measured

Prints a table and one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
from _peers import PeerSpec, build_rechub, peer_versions, rechub_inputs, task_labels  # noqa: E402

from recsys.data.tensors import TensorData, batch_indices, load_split  # noqa: E402
from recsys.io import atomic_write_json  # noqa: E402
from recsys.models import onednn  # noqa: E402
from recsys.models.registry import build_model  # noqa: E402
from recsys.mtl.losses import task_losses  # noqa: E402
from recsys.mtl.registry import build_weighting  # noqa: E402

Batch = tuple[Any, torch.Tensor]

#: The clock every rate is measured with; `main` sets it from --clock.
clock: Callable[[], float] = time.process_time


# ---------------------------------------------------------------------------------------- matmul rate


def mm_rate(m: int, k: int, n: int, *, repeats: int = 5, target_s: float = 0.2,
            dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of ``torch.mm([m, k] @ [k, n])`` by this script's clock (`_bench.mm_rate`)."""
    return _bench.mm_rate(m, k, n, repeats=repeats, target_s=target_s, dtype=dtype, clock=clock)


# ---------------------------------------------------------------------------------------- FLOPs


def count_flops(model: nn.Module, forward: Callable[[], torch.Tensor], batch: int) -> dict[str, Any]:
    """FLOPs per sample of one forward and one backward (FlopCounterMode), by operator."""
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fwd:
        loss = forward()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    model.zero_grad(set_to_none=True)

    def by_op(counter: FlopCounterMode) -> dict[str, float]:
        return {str(op): n / batch for op, n in counter.get_flop_counts().get("Global", {}).items()}

    f, b = fwd.get_total_flops() / batch, bwd.get_total_flops() / batch
    return {"forward": f, "backward": b, "forward_backward": f + b,
            "forward_by_op": by_op(fwd), "backward_by_op": by_op(bwd)}


def hand_count_forward(model: nn.Module) -> float:
    """2 * MACs per sample of every nn.Linear and every stacked [N, in, out] expert weight."""
    total = 0.0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            total += 2.0 * module.in_features * module.out_features
        weights = getattr(module, "weights", None)
        if isinstance(weights, nn.ParameterList):  # recsys ParallelMLP: [N, in, out] per layer
            total += sum(2.0 * w.numel() for w in weights)
    return total


# ---------------------------------------------------------------------------------------- ours


class Ours:
    """Our MMoE with our losses and equal weighting, fed pre-built (x, y) batches."""

    name = "ours"

    def __init__(self, train: TensorData, tasks: tuple[str, ...], options: dict[str, Any], *, optimizer: str,
                 check_ids: bool, seed: int, bf16: bool = False) -> None:
        torch.manual_seed(seed)
        self.tasks, self.bf16 = tasks, bf16
        self.model = build_model("mmoe", train.schema, tasks, **options)
        self.model.embedding.check_ids = check_ids
        self.weighting = build_weighting("equal", tasks)
        self.shared = self.model.shared_parameters()
        kwargs = {"foreach": True} if optimizer == "foreach" else {"fused": True} if optimizer == "fused" else {}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-3, **kwargs)
        cols = [train.schema.tasks.index(t) for t in tasks]
        self.batches = [(train.x[idx], train.y[idx][:, cols])
                        for idx in batch_indices(len(train), 1024, seed=seed, epoch=0)]
        self.phases: dict[str, float] = defaultdict(float)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model outputs in float32; the model runs under bfloat16 autocast with --bf16."""
        if not self.bf16:
            return self.model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(x)
        return {t: v.float() for t, v in out.items()}

    def loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch
        losses = task_losses(self.forward(x), y, self.tasks)
        return torch.stack(list(losses.values())).sum()

    def step(self, batch: Batch, timed: bool = False) -> None:
        x, y = batch
        if not timed:
            self.optimizer.zero_grad(set_to_none=True)
            losses = task_losses(self.forward(x), y, self.tasks)
            self.weighting.backward(losses, self.shared, step=0)
            self.optimizer.step()
            return
        t0 = clock()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward(x)
        t1 = clock()
        losses = task_losses(out, y, self.tasks)
        t2 = clock()
        self.weighting.backward(losses, self.shared, step=0)
        t3 = clock()
        self.optimizer.step()
        t4 = clock()
        for k, v in (("forward", t1 - t0), ("loss", t2 - t1), ("backward", t3 - t2), ("optimizer", t4 - t3)):
            self.phases[k] += v

    def epoch(self, phases: bool = False) -> tuple[float, float]:
        """(seconds by `clock`, wall seconds) of one pass over the batches."""
        if phases:
            self.phases.clear()
        t0, w0 = clock(), time.perf_counter()
        for batch in self.batches:
            self.step(batch, timed=phases)
        return clock() - t0, time.perf_counter() - w0


# ---------------------------------------------------------------------------------------- torch-rechub


class Rechub:
    """torch-rechub's MMOE fed its dict-of-tensors batches, by its trainer or a plain loop."""

    def __init__(self, train: TensorData, spec: PeerSpec, *, loop: str, seed: int) -> None:
        from torch_rechub.trainers import MTLTrainer

        torch.manual_seed(seed)
        self.name = f"rechub ({'MTLTrainer' if loop == 'trainer' else 'plain loop'})"
        self.loop = loop
        self.model = build_rechub("mmoe", train.schema, spec)
        self.trainer = MTLTrainer(self.model, task_types=["classification"] * 2,
                                  optimizer_params={"lr": spec.lr, "weight_decay": 0.0}, n_epoch=1, device="cpu")
        self.optimizer = self.trainer.optimizer
        inputs, y = rechub_inputs(train), torch.from_numpy(task_labels(train, esmm=False))
        self.batches = [({k: v[idx] for k, v in inputs.items()}, y[idx])
                        for idx in batch_indices(len(train), 1024, seed=seed, epoch=0)]

    def loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch
        p = self.model(x)
        return sum(F.binary_cross_entropy(p[:, i], y[:, i]) for i in range(y.shape[1])) / y.shape[1]

    def step(self, batch: Batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(batch).backward()
        self.optimizer.step()

    def epoch(self, phases: bool = False) -> tuple[float, float]:
        """(seconds by `clock`, wall seconds) of one pass over the batches."""
        t0, w0 = clock(), time.perf_counter()
        if self.loop == "trainer":
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                self.trainer.train_one_epoch(self.batches)
        else:
            for batch in self.batches:
                self.step(batch)
        return clock() - t0, time.perf_counter() - w0


class Deepctr:
    """DeepCTR-Torch's MMOE (same sizes), one epoch of its own ``fit`` (its DataLoader included)."""

    def __init__(self, train: TensorData, spec: PeerSpec, *, seed: int) -> None:
        from _peers import DeepctrRunner

        self.name = "deepctr (its fit)"
        self.runner = DeepctrRunner("mmoe", train.schema, train, seed=seed, spec=spec)
        self.model = self.runner.model
        # the float matrix its fit builds from the input dict, for the FLOP count and warm-up steps
        cols = [np.asarray(self.runner.inputs[f]) for f in self.model.feature_index]
        x = torch.from_numpy(np.concatenate([c[:, None] if c.ndim == 1 else c for c in cols], axis=1)).float()
        y = torch.from_numpy(self.runner.y).float()
        self.batches = [(x[idx], y[idx]) for idx in itertools.islice(batch_indices(len(train), 1024, seed=seed,
                                                                                  epoch=0), 8)]

    def loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch
        p = self.model(x)
        return sum(F.binary_cross_entropy(p[:, i], y[:, i]) for i in range(y.shape[1])) / y.shape[1]

    def step(self, batch: Batch) -> None:
        self.model.optim.zero_grad(set_to_none=True)
        self.loss(batch).backward()
        self.model.optim.step()

    def epoch(self, phases: bool = False) -> tuple[float, float]:
        t0, w0 = clock(), time.perf_counter()
        self.runner.train_epoch(0)
        return clock() - t0, time.perf_counter() - w0


# ---------------------------------------------------------------------------------------- profiling


CATEGORIES = (
    ("matmul", ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "einsum", "_mkl", "mkldnn")),
    ("embedding", ("index_select", "index_add", "embedding", "index", "gather", "scatter", "take")),
    ("optimizer", ("_foreach", "_fused_adam", "addcmul_", "addcdiv_", "lerp_", "sqrt", "mul_", "add_", "div_",
                   "zero_")),
)


def profile(runner: Ours, steps: int) -> dict[str, Any]:
    """torch.profiler over `steps` training steps: self CPU time by operator and by category."""
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    for batch in runner.batches[:3]:
        runner.step(batch)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in runner.batches[3:3 + steps]:
            x, y = batch
            runner.optimizer.zero_grad(set_to_none=True)
            with record_function("## forward"):
                out = runner.model(x)
                losses = task_losses(out, y, runner.tasks)
            with record_function("## backward"):
                runner.weighting.backward(losses, runner.shared, step=0)
            with record_function("## optimizer"):
                runner.optimizer.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(({"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                    "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
                   for e in events if not e.key.startswith("##")), key=lambda r: -r["self_ms_per_step"])
    phase = {e.key[3:]: e.cpu_time_total / 1e3 / steps for e in events if e.key.startswith("## ")}
    cats: dict[str, float] = defaultdict(float)
    for r in rows:
        cats[_category(r["op"])] += r["self_ms_per_step"]
    return {"steps": steps, "phase_ms_per_step": phase, "category_ms_per_step": dict(cats),
            "top_ops": rows[:25], "table": events.table(sort_by="self_cpu_time_total", row_limit=25)}


def _category(op: str) -> str:
    name = op.removeprefix("aten::").removeprefix("autograd::engine::evaluate_function: ")
    if name.endswith("Backward0") or name.endswith("Backward1"):
        name = name.removesuffix("Backward0").removesuffix("Backward1").lower()
    for cat, keys in CATEGORIES:
        if any(name == k or name.startswith(k) for k in keys):
            return cat
    if name.startswith(("relu", "softmax", "sigmoid", "binary_cross", "add", "mul", "sum", "sub", "div", "exp",
                        "log", "threshold", "where", "nan_to_num", "isnan", "ne", "clamp", "copy_", "fill_",
                        "neg", "mean", "stack", "cat", "expand", "view", "reshape", "unsqueeze", "squeeze",
                        "select", "slice", "permute", "transpose", "t", "empty", "zeros", "ones", "unbind",
                        "as_strided", "contiguous", "clone", "to", "_to_copy", "detach", "amax", "amin", "any",
                        "item", "_local_scalar_dense", "is_nonzero", "flatten", "split", "narrow", "resize")):
        return "elementwise/shape"
    return "other"


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/prepared/ml-100k", help="prepared data set directory")
    p.add_argument("--out", default="runs/bench_train_speed.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ours", default="{}", help="JSON options of our mmoe, e.g. '{\"num_experts\": 8}'")
    p.add_argument("--tasks", default="click,like,rating", help="our tasks (rechub always trains click,like)")
    p.add_argument("--optimizer", choices=("adam", "foreach", "fused"), default="adam",
                   help="our Adam: torch's default (as recsys.train builds it), foreach=True or fused=True")
    p.add_argument("--no-check-ids", action="store_true", help="switch off our embedding's id range check")
    p.add_argument("--bf16", action="store_true",
                   help="run our model under torch.autocast('cpu', bfloat16) (losses and Adam stay float32)")
    p.add_argument("--rechub", choices=("both", "trainer", "plain", "none"), default="both",
                   help="torch-rechub loops to time")
    p.add_argument("--deepctr", action="store_true", help="also time DeepCTR-Torch's MMOE (its own fit)")
    p.add_argument("--repeats", type=int, default=2, help="timed epochs per model (the best counts)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    p.add_argument("--mm-repeats", type=int, default=5)
    p.add_argument("--max-rows", type=int, default=0, help="use only the first N rows of train (quick checks)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS", help="profile our training for STEPS steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                   help="time by process CPU time (robust on a shared machine; only meaningful with one thread) "
                        "or wall time; auto = cpu with --threads 1, else wall")
    args = p.parse_args(argv)
    if args.clock == "auto":
        args.clock = "cpu" if args.threads == 1 else "wall"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data)
    if not (data_dir / "schema.json").exists():
        print(f"error: no prepared data set at {data_dir}; run `recsys data prepare ml-100k` (or pass --data DIR)",
              file=sys.stderr)
        return 2
    try:
        options = json.loads(args.ours)
        if not isinstance(options, dict):
            raise ValueError("--ours must be a JSON object")
    except (json.JSONDecodeError, ValueError) as err:
        print(f"error: --ours: {err}", file=sys.stderr)
        return 2
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    train = load_split(data_dir, "train")
    if args.max_rows:
        train = train.subset(torch.arange(min(args.max_rows, len(train))))
    rows, tasks = len(train), tuple(t.strip() for t in args.tasks.split(",") if t.strip())

    ours = Ours(train, tasks, options, optimizer=args.optimizer, check_ids=not args.no_check_ids, seed=args.seed,
                bf16=args.bf16)
    cfg = ours.model.config
    in_dim = ours.model.in_dim
    spec = PeerSpec(dim=cfg.dim, num_experts=cfg.num_experts, expert_hidden=tuple(cfg.expert_hidden),
                    tower_hidden=tuple(cfg.tower_hidden))

    # 1. matmul rate
    widths = [in_dim, *cfg.expert_hidden]
    shapes = [(1024, 1024, 1024)] + [(1024, k, n) for k, n in zip(widths[:-1], widths[1:])]
    shapes.append((1024, in_dim, cfg.num_experts * cfg.expert_hidden[0]))  # all first expert layers as one mm
    mm = {f"{m}x{k} @ {k}x{n}": mm_rate(m, k, n, repeats=args.mm_repeats) for m, k, n in shapes}
    torch_peak = mm["1024x1024 @ 1024x1024"]
    if onednn.available():
        mm["1024x1024 @ 1024x1024 onednn"] = _bench.mm_rate(1024, 1024, 1024, repeats=args.mm_repeats, clock=clock,
                                                             backend="onednn")
    peak = max(torch_peak, mm.get("1024x1024 @ 1024x1024 onednn", 0.0))
    if args.bf16:
        mm["1024x1024 @ 1024x1024 bfloat16"] = mm_rate(1024, 1024, 1024, repeats=args.mm_repeats,
                                                        dtype=torch.bfloat16)
    model_shape = mm[f"1024x{in_dim} @ {in_dim}x{cfg.expert_hidden[0]}"]

    # 2-3. epochs and FLOPs
    runners: list[Any] = [ours]
    if args.rechub in ("both", "trainer"):
        runners.append(Rechub(train, spec, loop="trainer", seed=args.seed))
    if args.rechub in ("both", "plain"):
        runners.append(Rechub(train, spec, loop="plain", seed=args.seed))
    if args.deepctr:
        runners.append(Deepctr(train, spec, seed=args.seed))
    results: dict[str, dict[str, Any]] = {}
    for runner in runners:
        flops = count_flops(runner.model, lambda r=runner: r.loss(r.batches[0]), len(runner.batches[0][1]))
        for batch in runner.batches[: args.warmup]:
            runner.step(batch)
        timed = [runner.epoch(phases=(runner is ours and i == 0)) for i in range(args.repeats)]
        times, walls = [t for t, _ in timed], [w for _, w in timed]
        best = min(times)
        sps = rows / best
        achieved = flops["forward_backward"] * sps / 1e9
        results[runner.name] = {
            "epoch_seconds": best, "epoch_seconds_all": times, "epoch_wall_seconds_all": walls, "samples_per_s": sps,
            "params": sum(p.numel() for p in runner.model.parameters()),
            "flops_per_sample": flops, "hand_count_forward_per_sample": hand_count_forward(runner.model),
            "achieved_gflops": achieved, "fraction_of_mm_1024": achieved / peak,
            "fraction_of_torch_mm_1024": achieved / torch_peak,
            "fraction_of_mm_model_shape": achieved / model_shape,
        }
    if args.bf16:
        results["ours"]["fraction_of_mm_bf16"] = (results["ours"]["achieved_gflops"]
                                                  / mm["1024x1024 @ 1024x1024 bfloat16"])
    phases = {k: v / rows * 1e6 for k, v in ours.phases.items()}  # microseconds per sample
    results["ours"]["phase_us_per_sample"] = phases
    speedups = {name: results["ours"]["samples_per_s"] / r["samples_per_s"]
                for name, r in results.items() if name != "ours"}

    report: dict[str, Any] = {
        "command": [sys.executable, *sys.argv],
        "settings": {"data": str(data_dir.resolve()), "rows": rows, "batch_size": 1024, "threads": args.threads,
                     "clock": args.clock, "load_average": _bench.loadavg(),
                     "ours_options": options, "ours_config": {k: v for k, v in vars(cfg).items()},
                     "ours_tasks": list(tasks), "rechub_tasks": ["click", "like"], "optimizer": args.optimizer,
                     "check_ids": not args.no_check_ids, "bf16": args.bf16, "repeats": args.repeats, "rechub_spec": spec.to_json()},
        "environment": {**peer_versions(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "cpu": _bench.cpu_name(), "torch_threads": torch.get_num_threads()},
        "mm_gflops": mm,
        "results": results,
        "speedup_ours_over": speedups,
        "targets": {"speedup_5x": {k: v >= 5.0 for k, v in speedups.items()},
                    "fraction_70pct_of_mm_1024": results["ours"]["fraction_of_mm_1024"] >= 0.70},
    }
    if args.profile:
        report["profile"] = profile(ours, args.profile)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {k: v for k, v in report.items() if k != "profile"} |
                      ({"profile": {k: v for k, v in report["profile"].items() if k != "table"}}
                       if "profile" in report else {}))
    print(format_report(report))
    print(json.dumps({k: v for k, v in report.items() if k != "profile"}, default=str))
    return 0


def format_report(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"train rows {s['rows']}, batch 1024, threads {s['threads']}, clock {s['clock']} "
             f"(load average {s['load_average']}), ours {s['ours_config']}",
             "", "matmul rate (float32 torch.mm unless named, best of repeats):"]
    lines += [f"  {shape:<28}{g:>9.1f} GFLOP/s" for shape, g in report["mm_gflops"].items()]
    lines += ["", f"{'model':<26}{'epoch s':>9}{'samples/s':>11}{'fwd MFLOP':>11}{'f+b MFLOP':>11}"
                  f"{'GFLOP/s':>9}{'% mm1024':>10}{'% mm shape':>11}{'params':>9}"]
    for name, r in report["results"].items():
        f = r["flops_per_sample"]
        lines.append(f"{name:<26}{r['epoch_seconds']:>9.2f}{r['samples_per_s']:>11.0f}{f['forward'] / 1e6:>11.3f}"
                     f"{f['forward_backward'] / 1e6:>11.3f}{r['achieved_gflops']:>9.1f}"
                     f"{100 * r['fraction_of_mm_1024']:>9.1f}%{100 * r['fraction_of_mm_model_shape']:>10.1f}%"
                     f"{r['params']:>9}")
    lines.append("")
    for name, v in report["speedup_ours_over"].items():
        lines.append(f"speed-up ours / {name}: {v:.2f}x  (target 5x: {'met' if v >= 5 else 'not met'})")
    frac = report["results"]["ours"]["fraction_of_mm_1024"]
    lines.append(f"ours at {100 * frac:.1f}% of the 1024^3 float32 matmul rate, the faster of torch.mm and oneDNN; "
                 f"{100 * report['results']['ours']['fraction_of_torch_mm_1024']:.1f}% of torch.mm's "
                 f"(target 70%: {'met' if frac >= 0.7 else 'not met'}"
                 + (", but in bfloat16: compare with the bfloat16 rate)" if s["bf16"] else ")"))
    if "fraction_of_mm_bf16" in report["results"]["ours"]:
        lines.append(f"ours (bfloat16 autocast) at {100 * report['results']['ours']['fraction_of_mm_bf16']:.1f}% "
                     "of the 1024^3 bfloat16 matmul rate")
    ph = report["results"]["ours"].get("phase_us_per_sample", {})
    if ph:
        total = sum(ph.values()) or 1.0
        lines.append("ours, time per sample by phase: " + ", ".join(
            f"{k} {v:.2f} us ({100 * v / total:.0f}%)" for k, v in ph.items()))
    if "profile" in report:
        p = report["profile"]
        lines += ["", f"profile of ours, {p['steps']} steps (ms per step):",
                  "  phases: " + ", ".join(f"{k} {v:.2f}" for k, v in p["phase_ms_per_step"].items()),
                  "  self time by category: " + ", ".join(
                      f"{k} {v:.2f}" for k, v in sorted(p["category_ms_per_step"].items(), key=lambda kv: -kv[1])),
                  p["table"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
