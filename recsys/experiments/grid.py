"""The weighting grid: every model × weighting strategy × seed, against a static-weight sweep.

Adaptive loss weighting (uncertainty, GradNorm, DWA) and gradient surgery (PCGrad, MGDA,
CAGrad) are compared with the plainest baseline there is: a fixed scalarisation
``a · L_click + (1 − a) · L_like (+ L_rating)`` swept over ``a``. Xin et al. ("Do Current
Multi-Task Optimization Methods in Deep Learning Even Help?", NeurIPS'22) and Kurin et al.
("In Defense of the Unitary Scalarization for Deep Multi-Task Learning", NeurIPS'22) found that
such a sweep traces a Pareto front the specialised methods rarely leave; the grid measures
whether that holds here, with seeds, so a difference can be told from noise.

Output (``OUT/``):
    runs/MODEL__WEIGHTING__seedS/   each run (resumable; a finished one is not trained again)
    grid.json     every run's config, test metrics and diagnostics; per-configuration mean ± std
    grid.md       the table, what each strategy buys against ``equal``, and the diagnostics
    pareto.png    engagement (click AUC) against satisfaction (like-among-clicks AUC)
    pareto.json   the plotted points, for other renderers

Example:
    >>> report = run_grid("ml-100k", ["mmoe"], ["equal", "pcgrad"], [0, 1], [0.3, 0.7],
    ...                   out="experiments/grid", overrides={"epochs": 3})  # doctest: +SKIP
    >>> report["configurations"][0]["metrics"]["click_auc"]                  # doctest: +SKIP
    {'mean': 0.871, 'std': 0.001, 'n': 2}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recsys.config import load_config
from recsys.errors import ConfigError
from recsys.experiments.diagnostics import aggregate_diagnostics
from recsys.experiments.report import fmt, fmt_mean_std, md_table
from recsys.experiments.runs import (RunSpec, baseline_metrics, check_buildable, check_overrides, dataset_tasks,
                                     execute, mean_std, parse_list, seed_value)
from recsys.io import atomic_write_json, atomic_write_text

#: Table metrics: key -> (label, task, metric name in the evaluation, +1 higher is better / -1 lower).
METRICS: dict[str, tuple[str, str, str, int]] = {
    "click_auc": ("click AUC", "click", "auc", 1),
    "like_auc": ("like AUC", "like", "auc", 1),
    "like_among_clicks_auc": ("like-among-clicks AUC", "like_among_clicks", "auc", 1),
    "rating_rmse": ("rating RMSE", "rating", "rmse", -1),
    "click_user_auc": ("per-user click AUC", "click", "user_auc", 1),
}
REFERENCE = "equal"
_RESERVED = {"dataset": "--dataset", "model": "--models", "weighting": "--weightings", "seed": "--seeds"}


def flat_metrics(test: dict[str, Any]) -> dict[str, float | None]:
    """The table's metrics from an evaluation (`METRICS` keys; None where a task is absent)."""
    return {key: test.get(task, {}).get(name) for key, (_, task, name, _) in METRICS.items()}


def plan_grid(dataset: str, models: Sequence[str] | str, weightings: Sequence[str] | str,
              seeds: Sequence[int] | str, sweep: Sequence[float] | str | None = None, *,
              preset: str = "default", overrides: dict[str, Any] | None = None,
              sweep_rest_weight: float = 1.0, data_dir: str | Path = "data") -> list[RunSpec]:
    """The runs of a grid, every name and option checked (no training).

    Args:
        dataset: prepared data set (a name under ``DATA_DIR/prepared`` or a path).
        models: architecture names (``recsys.models.registry.MODELS``).
        weightings: strategy names (``recsys.mtl.registry.WEIGHTINGS``).
        seeds: seeds, each >= 0.
        sweep: values ``a`` in [0, 1] of the static sweep (weights click a, like 1 − a); None or
            empty for no sweep.
        preset: config preset the runs start from.
        overrides: further config keys (``--set``); ``weighting_options`` apply to the
            `weightings` runs, not to the sweep.
        sweep_rest_weight: static weight of every other task (e.g. rating) in the sweep.
        data_dir: cache root for data sets given by name.

    Returns:
        Specs tagged ``{"model", "weighting", "label", "seed", "sweep_a"}``, in report order.

    Raises:
        ConfigError: an unknown model, weighting, task, preset or config key; an empty list; a
            sweep value outside [0, 1]; a sweep on a data set without click and like.
    """
    from recsys.models.registry import MODELS
    from recsys.mtl.registry import WEIGHTINGS

    models = parse_list(models, "--models")
    weightings = parse_list(weightings, "--weightings")
    seeds = parse_list(seeds, "--seeds", convert=seed_value)
    sweep = [] if sweep is None or (isinstance(sweep, str) and sweep.strip().lower() == "none") else \
        parse_list(sweep, "--static-sweep", convert=float)
    for m in models:
        if m not in MODELS:
            raise ConfigError(f"--models: unknown model {m!r} (known: {', '.join(MODELS)})")
    for w in weightings:
        if w not in WEIGHTINGS:
            raise ConfigError(f"--weightings: unknown weighting {w!r} (known: {', '.join(WEIGHTINGS)})")
    for a in sweep:
        if not 0.0 <= a <= 1.0:
            raise ConfigError(f"--static-sweep: {a} is outside [0, 1] (it is the click weight a; like gets 1 - a)")
    if not (math.isfinite(sweep_rest_weight) and sweep_rest_weight >= 0):
        raise ConfigError(f"--sweep-rest-weight must be a finite number >= 0, got {sweep_rest_weight}")
    overrides = dict(overrides or {})
    check_overrides(overrides, _RESERVED)
    dataset_dir, all_tasks, _ = dataset_tasks(dataset, data_dir)
    tasks = tuple(load_config(preset, overrides).tasks) or all_tasks
    unknown = [t for t in tasks if t not in all_tasks]
    if unknown:
        raise ConfigError(f"--set tasks: {unknown} not in data set {dataset} (its tasks: {', '.join(all_tasks)})")
    if sweep and not {"click", "like"} <= set(tasks):
        raise ConfigError(f"--static-sweep needs tasks click and like; the runs train {list(tasks)} "
                          "(pass --static-sweep none)")
    base = {**overrides, "dataset": dataset}
    specs = []
    for model in models:
        for weighting in weightings:
            for seed in seeds:
                config = load_config(preset, {**base, "model": model, "weighting": weighting, "seed": seed})
                specs.append(RunSpec(f"{model}__{weighting}__seed{seed}", config, {
                    "model": model, "weighting": weighting, "label": weighting, "seed": seed, "sweep_a": None}))
        for a in sweep:
            weights = {t: sweep_rest_weight for t in tasks} | {"click": a, "like": round(1.0 - a, 12)}
            for seed in seeds:
                config = load_config(preset, {**base, "model": model, "weighting": "static", "seed": seed,
                                              "weighting_options": {"weights": weights}})
                specs.append(RunSpec(f"{model}__static-a{a:g}__seed{seed}", config, {
                    "model": model, "weighting": "static", "label": f"static a={a:g}", "seed": seed, "sweep_a": a}))
    check_buildable(specs, dataset_dir)
    return specs


def run_grid(dataset: str, models, weightings, seeds, sweep=None, *, out: str | Path, preset: str = "default",
             overrides: dict[str, Any] | None = None, sweep_rest_weight: float = 1.0,
             data_dir: str | Path = "data", jobs: int = 1,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Plan, train (resumably), evaluate and report a grid; see the module docstring.

    Args:
        dataset, models, weightings, seeds, sweep, preset, overrides, sweep_rest_weight, data_dir:
            as for `plan_grid`.
        out: the experiment directory; re-running into it skips finished runs.
        jobs: runs trained at once, in worker processes.
        log: progress lines (default: stderr).

    Returns:
        The content of ``grid.json``: ``{"dataset", "axes", "runs", "configurations", "effects",
        "baselines", "pareto"}``.
    """
    from recsys.experiments.pareto import pareto_data, plot_pareto

    specs = plan_grid(dataset, models, weightings, seeds, sweep, preset=preset, overrides=overrides,
                      sweep_rest_weight=sweep_rest_weight, data_dir=data_dir)
    out = Path(out)
    dataset_dir, _, name = dataset_tasks(dataset, data_dir)
    records = execute(specs, out, data_dir=data_dir, jobs=jobs, log=log)
    configurations = summarise_grid(records)
    effects = strategy_effects(records, dataset=name)
    pareto = pareto_data(configurations)
    report = {
        "dataset": name, "dataset_dir": str(dataset_dir), "split": "test", "preset": preset,
        "overrides": overrides or {}, "sweep_rest_weight": sweep_rest_weight,
        "axes": {k: sorted({s.tags[k] for s in specs}, key=str) for k in ("model", "label", "seed")},
        "runs": records, "configurations": configurations, "effects": effects,
        "baselines": baseline_metrics(dataset_dir),
    }
    atomic_write_json(out / "grid.json", report)
    atomic_write_json(out / "pareto.json", pareto)
    plot_pareto(pareto, out / "pareto.png", title=f"{name}: engagement vs satisfaction (test split)")
    atomic_write_text(out / "grid.md", format_grid(report))
    return report


def summarise_grid(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration (model × weighting label): mean ± std over seeds.

    Returns:
        ``[{"model", "weighting", "label", "sweep_a", "seeds": [..], "metrics": {key: {"mean",
        "std", "n"}}, "train_seconds": {...}, "diagnostics": aggregate_diagnostics(...)}]``, in
        the order configurations first appear in `records`.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["tags"]["model"], r["tags"]["label"]), []).append(r)
    rows = []
    for (model, label), runs in groups.items():
        flat = [flat_metrics(r["test"]) for r in runs]
        rows.append({
            "model": model, "label": label, "weighting": runs[0]["tags"]["weighting"],
            "sweep_a": runs[0]["tags"]["sweep_a"], "seeds": [r["tags"]["seed"] for r in runs],
            "metrics": {key: mean_std(f[key] for f in flat) for key in METRICS},
            "train_seconds": mean_std(r["train"].get("seconds") for r in runs),
            "diagnostics": aggregate_diagnostics([r["diagnostics"] for r in runs]),
        })
    return rows


def strategy_effects(records: Sequence[dict[str, Any]], *, dataset: str = "this data set",
                     reference: str = REFERENCE) -> dict[str, Any]:
    """What each weighting buys against `reference`, paired by model and seed.

    For every configuration label L ≠ `reference` and metric m: the differences
    ``m(L, model, seed) − m(reference, model, seed)`` over the (model, seed) pairs both have;
    their mean and std. Seed noise of m is the pooled standard deviation over seeds of every
    configuration, sqrt(mean of the per-configuration variances). A mean difference whose size
    is at most that is called "within seed noise".

    Returns:
        ``{"reference", "noise": {m: σ or None}, "rows": [{"label", "sweep_a", "diffs": {m: {"mean",
        "std", "n", "within_noise"}}}], "sentences": [str]}``; no rows without a reference run.
    """
    values: dict[tuple[str, str, int], dict[str, float | None]] = {}
    labels: dict[str, Any] = {}
    for r in records:
        t = r["tags"]
        values[(t["label"], t["model"], t["seed"])] = flat_metrics(r["test"])
        labels.setdefault(t["label"], t["sweep_a"])
    noise = {}
    for m in METRICS:
        by_config: dict[tuple[str, str], list[float | None]] = {}
        for (label, model, _), v in values.items():
            by_config.setdefault((label, model), []).append(v[m])
        variances = [s["std"] ** 2 for s in map(mean_std, by_config.values()) if s["std"] is not None]
        noise[m] = math.sqrt(sum(variances) / len(variances)) if variances else None
    if reference not in labels:
        return {"reference": reference, "noise": noise, "rows": [], "sentences": [
            f"No {reference!r} runs in the grid, so no strategy is compared against it (add it to --weightings)."]}
    rows = []
    for label, sweep_a in labels.items():
        if label == reference:
            continue
        diffs = {}
        for m in METRICS:
            d = []
            for (lab, model, seed), v in values.items():
                ref = values.get((reference, model, seed), {}).get(m)
                if lab == label and v[m] is not None and ref is not None:
                    d.append(v[m] - ref)
            stats = mean_std(d)
            stats["within_noise"] = (None if stats["mean"] is None or noise[m] is None
                                     else abs(stats["mean"]) <= noise[m])
            diffs[m] = stats
        rows.append({"label": label, "sweep_a": sweep_a, "diffs": diffs})
    return {"reference": reference, "noise": noise, "rows": rows,
            "sentences": _effect_sentences(rows, noise, dataset, reference)}


def _effect_sentences(rows, noise, dataset: str, reference: str) -> list[str]:
    strategies = [r for r in rows if r["sweep_a"] is None]
    out, all_within = [], bool(strategies)
    for m, (label, *_) in METRICS.items():
        moved = [(abs(r["diffs"][m]["mean"]), r["label"], r["diffs"][m]) for r in strategies
                 if r["diffs"][m]["mean"] is not None]
        if not moved:
            continue
        size, who, _ = max(moved)
        if noise[m] is None:
            all_within = False
            out.append(f"On {dataset} weighting moves {label} by at most {size:.4f} ({who}); "
                       "with one seed there is no noise estimate.")
        elif all(d["within_noise"] for *_, d in moved):
            out.append(f"On {dataset} weighting moves {label} by at most {size:.4f} ({who}) — within seed noise "
                       f"(σ = {noise[m]:.4f}).")
        else:
            all_within = False
            beyond = ", ".join(f"{w} {d['mean']:+.4f}" for _, w, d in sorted(moved, reverse=True)
                               if not d["within_noise"])
            out.append(f"On {dataset} {label} moves beyond seed noise (σ = {noise[m]:.4f}) with {beyond}.")
    if all_within and out:
        out.append(f"No weighting strategy moves any metric by more than one seed standard deviation "
                   f"against {reference!r}.")
    sweep = [r for r in rows if r["sweep_a"] is not None]
    if sweep:
        lo, hi = min(sweep, key=lambda r: r["sweep_a"]), max(sweep, key=lambda r: r["sweep_a"])
        parts = []
        for m in ("click_auc", "like_among_clicks_auc"):
            if lo["diffs"][m]["mean"] is not None and hi["diffs"][m]["mean"] is not None:
                parts.append(f"{METRICS[m][0]} {lo['diffs'][m]['mean']:+.4f} at a={lo['sweep_a']:g} and "
                             f"{hi['diffs'][m]['mean']:+.4f} at a={hi['sweep_a']:g}")
        if parts:
            out.append(f"The static sweep (click weight a, like 1 − a), against {reference!r}: " + "; ".join(parts)
                       + " — the engagement/satisfaction trade-off a fixed scalarisation buys.")
    return out


def format_grid(report: dict[str, Any]) -> str:
    """``grid.md``: the table, baselines, what each strategy buys, and the diagnostics."""
    rows = report["configurations"]
    keys = list(METRICS)
    best = {}
    for m, (*_, sign) in METRICS.items():
        means = [r["metrics"][m]["mean"] for r in rows if r["metrics"][m]["mean"] is not None]
        best[m] = (max(means) if sign > 0 else min(means)) if means else None
    body = []
    for r in rows:
        cells = []
        for m in keys:
            s = r["metrics"][m]
            cell = fmt_mean_std(s)
            cells.append(f"**{cell}**" if s["mean"] is not None and s["mean"] == best[m] else cell)
        body.append([r["model"], r["label"], *cells, fmt_mean_std(r["train_seconds"], digits=1), str(len(r["seeds"]))])
    for name in ("popularity", "random"):
        flat = flat_metrics(report["baselines"].get(name, {}))
        body.append([f"*{name}*", "–", *[fmt(flat[m]) for m in keys], "–", "–"])
    n_seeds = len(report["axes"]["seed"])
    lines = [f"# Weighting grid on {report['dataset']} (test split)", "",
             f"{len(report['runs'])} runs: mean ± std over {n_seeds} seed(s) (sample std); best mean in bold. "
             "Static a=… rows are the sweep: weights click a, like 1 − a, "
             f"other tasks {report['sweep_rest_weight']:g}.", "",
             md_table(["model", "weighting", *[METRICS[m][0] for m in keys], "train s", "seeds"], body), ""]
    effects = report["effects"]
    lines += [f"## What each strategy buys (against `{effects['reference']}`)", ""]
    if effects["rows"]:
        lines += ["Mean ± std of the paired difference (same model, same seed), averaged over models and seeds; "
                  "RMSE: negative is better. `~` marks a difference within seed noise "
                  "(at most the pooled seed std σ).", ""]
        body = [[r["label"], *[_diff_cell(r["diffs"][m]) for m in keys]] for r in effects["rows"]]
        body.append(["σ (seed noise)", *[fmt(effects["noise"][m]) for m in keys]])
        lines += [md_table(["weighting", *[METRICS[m][0] for m in keys]], body), ""]
    lines += [*(f"- {sentence}" for sentence in effects["sentences"]), ""]
    lines += _diagnostics_section(rows)
    return "\n".join(lines)


def _diff_cell(d: dict[str, Any]) -> str:
    if d["mean"] is None:
        return "–"
    cell = f"{d['mean']:+.4f}" + (f" ± {d['std']:.4f}" if d["std"] is not None else "")
    return cell + (" ~" if d["within_noise"] else "")


def _diagnostics_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    pairs = sorted({p for r in rows for p in r["diagnostics"]["grad_cosine"]})
    tasks = sorted({t for r in rows for t in r["diagnostics"]["weights"]})
    gated = sorted({t for r in rows for t in r["diagnostics"]["gates"]})
    if not (pairs or tasks):
        return []
    body = []
    for r in rows:
        d = r["diagnostics"]
        cos = [f"{d['grad_cosine'][p]['mean']:+.3f} ({d['grad_cosine'][p]['negative_fraction']:.0%} < 0)"
               if p in d["grad_cosine"] else "–" for p in pairs]
        weights = " / ".join(f"{d['weights'][t]:.2f}" for t in tasks if t in d["weights"])
        gates = [fmt(d["gates"][t]["entropy"], 2) if t in d["gates"] else "–" for t in gated]
        body.append([r["model"], r["label"], *cos, weights, *gates])
    return ["## Training diagnostics", "",
            "Gradient cosine between tasks on the shared parameters, mean over training (share of negative "
            f"measurements = measured conflict); last-epoch task weights ({' / '.join(tasks)}); normalised "
            "entropy of each task gate's mean expert usage over the last epoch (1 = even, 0 = one expert).", "",
            md_table(["model", "weighting", *[f"cos {p}" for p in pairs], "weights",
                      *[f"gate H {t}" for t in gated]], body), ""]
