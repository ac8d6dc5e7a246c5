"""Training-time multi-task diagnostics of a run, summarised from its ``metrics.jsonl``.

Three questions, each answered from what the training loop logs (see `recsys.train`):

* **Do the tasks conflict?** The cosine between two tasks' gradients on the shared parameters,
  averaged over training, and the fraction of measurements where it is negative: the conflict
  PCGrad (Yu et al., NeurIPS'20) and MGDA (Sener & Koltun, NeurIPS'18) act on, measured rather
  than assumed.
* **Where did the weighting strategy end up?** Each task's weight, averaged over the last epoch
  (and over all of training).
* **Do the experts specialise?** For MMoE (Ma et al., KDD'18) and PLE (Tang et al., RecSys'20):
  each task gate's mean weight per expert over the last epoch, and the normalised entropy of
  that mean (1 = the task spreads evenly over its experts, 0 = it uses one).

Example:
    >>> summary = summarise_diagnostics("runs/mmoe")                        # doctest: +SKIP
    >>> summary["grad_cosine"]["click|like"]["mean"], summary["gates"]["click"]["entropy"]  # doctest: +SKIP
    (0.41, 0.93)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.errors import DataValidationError


def summarise_diagnostics(run_dir: str | Path) -> dict[str, Any]:
    """Summarise the gradient cosines, task weights and gate usage logged by a training run.

    Works on a finished run and on one still training or killed (a cut last line is skipped).

    Args:
        run_dir: a run directory holding ``metrics.jsonl``.

    Returns:
        ``{"steps": S, "epochs": number of finished epochs,
        "grad_cosine": {"a|b": {"mean", "std", "negative_fraction", "last_epoch_mean", "n"}},
        "weights": {"last_epoch": {task: mean weight}, "mean": {task: mean weight}},
        "gates": {task: {"share": [E] mean gate weight per expert (sums to 1), "entropy": in [0, 1],
        "experts": E, "labels": [E] expert names or None}}}``; ``gates`` is empty for models
        without gates, ``grad_cosine`` for single-task runs.

    Raises:
        DataValidationError: `run_dir` has no ``metrics.jsonl``.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise DataValidationError(f"{path} not found: {run_dir} is not a training run directory")
    steps, epochs = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run
            continue
        if record.get("kind") == "step":
            steps.append(record)
        elif record.get("kind") == "epoch":
            epochs += 1
    last_epoch = max((r["epoch"] for r in steps), default=0)
    return {
        "steps": len(steps),
        "epochs": epochs,
        "grad_cosine": _cosines(steps, last_epoch),
        "weights": {
            "last_epoch": _mean_dicts(r.get("weight", {}) for r in steps if r["epoch"] == last_epoch),
            "mean": _mean_dicts(r.get("weight", {}) for r in steps),
        },
        "gates": _gates(steps, _gate_labels(run_dir)),
    }


def normalised_entropy(p: Sequence[float]) -> float:
    """Entropy of the distribution `p` divided by log E (0 = one-hot, 1 = uniform; 1 when E = 1)."""
    if len(p) < 2:
        return 1.0
    h = -sum(x * math.log(x) for x in p if x > 0)
    return h / math.log(len(p))


def _cosines(steps: list[dict[str, Any]], last_epoch: int) -> dict[str, dict[str, Any]]:
    values: dict[str, list[float]] = {}
    last: dict[str, list[float]] = {}
    for r in steps:
        for pair, c in r.get("grad_cosine", {}).items():
            values.setdefault(pair, []).append(c)
            if r["epoch"] == last_epoch:
                last.setdefault(pair, []).append(c)
    out = {}
    for pair, cs in values.items():
        mean = sum(cs) / len(cs)
        std = math.sqrt(sum((c - mean) ** 2 for c in cs) / (len(cs) - 1)) if len(cs) > 1 else None
        tail = last.get(pair, [])
        out[pair] = {"mean": mean, "std": std, "negative_fraction": sum(c < 0 for c in cs) / len(cs),
                     "last_epoch_mean": sum(tail) / len(tail) if tail else None, "n": len(cs)}
    return out


def _gates(steps: list[dict[str, Any]], labels: dict[str, list[str]] | None) -> dict[str, dict[str, Any]]:
    with_gates = [r for r in steps if r.get("gates")]
    if not with_gates:
        return {}
    last_epoch = max(r["epoch"] for r in with_gates)
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for r in with_gates:
        if r["epoch"] != last_epoch:
            continue
        for task, share in r["gates"].items():
            acc = sums.setdefault(task, [0.0] * len(share))
            if len(acc) != len(share):
                raise DataValidationError(f"gate of task {task!r} has {len(share)} experts at step {r['step']}, "
                                          f"{len(acc)} before; the metrics.jsonl mixes runs")
            sums[task] = [a + s for a, s in zip(acc, share)]
            counts[task] = counts.get(task, 0) + 1
    out = {}
    for task, acc in sums.items():
        total = sum(acc)
        share = [a / total for a in acc] if total > 0 else [1.0 / len(acc)] * len(acc)
        names = (labels or {}).get(task)
        out[task] = {"share": share, "entropy": normalised_entropy(share), "experts": len(share),
                     "labels": list(names) if names and len(names) == len(share) else None,
                     "n": counts[task], "epoch": last_epoch}
    return out


def _gate_labels(run_dir: Path) -> dict[str, list[str]] | None:
    """Expert names of each task gate, from the run's model (None without config and schema)."""
    if not ((run_dir / "config.json").exists() and (run_dir / "schema.json").exists()):
        return None
    from recsys.data.tensors import load_schema
    from recsys.models.registry import build_model

    config = json.loads((run_dir / "config.json").read_text())
    schema = load_schema(run_dir)
    model = build_model(config["model"], schema, tuple(config.get("tasks") or ()) or None,
                        **config.get("model_options", {}))
    labels = getattr(model, "gate_labels", None)
    return {t: list(v) for t, v in labels.items()} if labels else None


def _mean_dicts(dicts) -> dict[str, float]:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def aggregate_diagnostics(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Average the diagnostics of several runs (seeds) of one configuration.

    Returns:
        ``{"grad_cosine": {"a|b": {"mean", "negative_fraction"}}, "weights": {task: mean last-epoch
        weight}, "gates": {task: {"share": [E], "entropy"}}}``, each a mean over the runs that have it.
    """
    cos: dict[str, dict[str, list[float]]] = {}
    gates: dict[str, dict[str, list]] = {}
    for s in summaries:
        for pair, c in s.get("grad_cosine", {}).items():
            cos.setdefault(pair, {"mean": [], "negative_fraction": []})
            cos[pair]["mean"].append(c["mean"])
            cos[pair]["negative_fraction"].append(c["negative_fraction"])
        for task, g in s.get("gates", {}).items():
            entry = gates.setdefault(task, {"share": [], "entropy": [], "labels": g.get("labels")})
            entry["share"].append(g["share"])
            entry["entropy"].append(g["entropy"])
    return {
        "grad_cosine": {pair: {k: sum(v) / len(v) for k, v in c.items()} for pair, c in cos.items()},
        "weights": _mean_dicts(s.get("weights", {}).get("last_epoch", {}) for s in summaries),
        "gates": {task: {"share": [sum(col) / len(col) for col in zip(*g["share"])],
                         "entropy": sum(g["entropy"]) / len(g["entropy"]), "labels": g["labels"]}
                  for task, g in gates.items()},
    }
