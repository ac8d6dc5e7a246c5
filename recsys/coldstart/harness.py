"""Cold-start evaluation: every adapter at every K on the same new users, against `none`,
fine-tuning and the warm users, with paired user-level bootstrap intervals.

    evaluate_methods(run, split, methods, shots)  -> report dict (what coldstart.json holds)
    score_methods(run, split, methods, queries)   -> raw outputs per (method, K)  (the costly part)
    summarise(...)                                 -> metrics, intervals, comparisons, gap closed
    warm_reference(run)                            -> the ranker on warm users' test rows
    (`recsys.coldstart.oracle.oracle_scores`       -> the same-user oracle on the query rows)
    run_coldstart(run_dir, ...)                    -> load, evaluate, write the outputs

"Gap closed" at K = (m(method) − m(none)) / (m(ref) − m(none)): the share of the distance
between the un-adapted ranker on new users and a ranker that trained on their history that K
events of adaptation recover. The reference is the same-user oracle when one is given
(`recsys.coldstart.oracle`: the same users and query rows, their first max(K) events trained
on; paired, with bootstrap intervals), else the warm users, who are other users measured on
their own last events (a reference point, not a paired comparison).

Example:
    >>> run = load_run("runs/esmm")                                               # doctest: +SKIP
    >>> report = evaluate_methods(run, cold_start_split(run.dataset), ["none", "finetune"], [0, 5])  # doctest: +SKIP
    >>> report["results"]["finetune"]["5"]["like_auc"]                            # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.coldstart import stats as S
from recsys.coldstart.protocol import (ColdStartSplit, FixedQueries, LoadedRun, MethodScores, cold_start_split,
                                       fit_adapter, fixed_queries, load_run, predictions, ranker_outputs,
                                       score_method, task_columns, truth_of)
from recsys.errors import ConfigError

BASELINE, FINETUNE = "none", "finetune"
GAP_METRICS = ("like_auc", "like_click_auc", "like_user_auc", "click_auc")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_methods(methods: Sequence[str]) -> list[str]:
    """Known adapter names, ``none`` first (added if missing), duplicates dropped."""
    from recsys.meta.registry import ADAPTERS

    names = [m.strip() for m in methods if m.strip()]
    unknown = [m for m in names if m not in ADAPTERS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(map(repr, unknown))}; registered adapters: "
                          f"{', '.join(ADAPTERS)}")
    return list(dict.fromkeys([BASELINE, *names]))


def check_shots(shots: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct support sizes; a negative one is a `ConfigError`."""
    bad = [k for k in shots if k < 0]
    if bad or not shots:
        raise ConfigError(f"shots must be integers >= 0, got {list(shots)}" if bad else "give at least one shot value")
    return tuple(sorted(set(int(k) for k in shots)))


def score_methods(run: LoadedRun, split: ColdStartSplit, methods: Sequence[str], queries: FixedQueries, *,
                  options: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                  adapters_dir: Path | None = None, reuse: bool = False, log: Callable[[str], None] = _stderr
                  ) -> tuple[dict[str, dict[int, MethodScores]], dict[str, float], dict[str, bool]]:
    """Fit each method once (torch seeded with `seed` first), then adapt and score every measured
    user at every K. Fitted adapters are saved under `adapters_dir` (if given) and, with `reuse`,
    loaded from there instead of refitted (see `recsys.coldstart.protocol.fit_adapter`).

    Returns:
        ({method: {K: MethodScores}}, {method: fit seconds}, {method: reused a saved fit}).
    """
    scores: dict[str, dict[int, MethodScores]] = {}
    fit_seconds: dict[str, float] = {}
    reused: dict[str, bool] = {}
    for name in methods:
        adapter, fit_seconds[name], reused[name] = fit_adapter(
            name, run, split, log=log, options=(options or {}).get(name), seed=seed, save_dir=adapters_dir,
            reuse=reuse)
        log(f"coldstart: {name} " + ("loaded (fitted earlier" if reused[name] else "fitted")
            + f" in {fit_seconds[name]:.1f}s" + (")" if reused[name] else ""))
        scores[name] = {}
        for k in queries.shots:
            scores[name][k] = score_method(adapter, queries, k)
            log(f"coldstart: {name} K={k}: {len(queries.users)} users, adapt median "
                f"{np.median(scores[name][k].adapt_ms):.2f} ms")
    return scores, fit_seconds, reused


def warm_reference(run: LoadedRun) -> dict[str, Any]:
    """The ranker on the warm users' test rows (their ids known, their earlier events trained on)."""
    from recsys.data.tensors import load_split

    data = load_split(run.dataset, "test")
    _, users = np.unique(data.user.numpy(), return_inverse=True)
    n_users = int(users.max()) + 1 if len(users) else 0
    pred = predictions(ranker_outputs(run.ranker, data.x), run.tasks, run.esmm)  # outputs come back on the CPU
    stats = S.user_stats(data.y[:, task_columns(data, run.tasks)].numpy(), pred, users, n_users, run.tasks,
                         truth={k: v.double().numpy() for k, v in data.truth.items()}, esmm=run.esmm)
    return {**S.point_metrics(stats), "users": n_users, "rows": len(data)}


def summarise(run: LoadedRun, queries: FixedQueries, scores: dict[str, dict[int, MethodScores]],
              fit_seconds: dict[str, float], *, n_boot: int = 1000, seed: int = 0,
              warm: dict[str, Any] | None = None,
              oracle: tuple[MethodScores, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Metrics per (method, K), per-point intervals, paired comparisons and the gap closed.

    Args:
        run: the loaded run.
        queries: the fixed users and query rows the `scores` are on.
        scores: `score_methods` output.
        fit_seconds: fit time per method.
        n_boot: bootstrap resamples (0: no intervals).
        seed: seed of the resamples (one set of resamples shared by every method and K: paired).
        warm: `warm_reference` output, or None.
        oracle: `recsys.coldstart.oracle.oracle_scores` output (the same users and query rows,
            their support pools trained on), or None. When given, the gap closed is measured
            against it, with bootstrap intervals, and ``oracle - none`` is a paired comparison.

    Returns:
        The report (JSON-ready; K keys are strings).
    """
    data = queries.sampler.data
    rows = queries.query_rows
    y, n_users = data.y[rows][:, task_columns(data, run.tasks)].numpy(), len(queries.users)
    truth = truth_of(data, rows)
    counts = S.bootstrap_counts(n_users, n_boot, seed) if n_boot else None
    methods = list(scores)
    point: dict[str, dict[int, dict[str, np.ndarray]]] = {m: {} for m in methods}
    boot: dict[str, dict[int, dict[str, np.ndarray]]] = {m: {} for m in methods}
    results: dict[str, dict[str, Any]] = {m: {} for m in methods}
    intervals: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for m in methods:
        for k, sc in scores[m].items():
            stats = S.user_stats(y, predictions(sc.outputs, run.tasks, run.esmm), queries.query_user, n_users,
                                 run.tasks, truth=truth, esmm=run.esmm)
            point[m][k] = S.metric_values(stats)
            results[m][str(k)] = {**S.point_metrics(stats), **_timings(sc), "users": n_users, "rows": len(rows),
                                  "fallbacks": sc.fallbacks}
            if counts is not None:
                boot[m][k] = S.metric_values(stats, counts)
                intervals[m][str(k)] = {name: _percentiles(v) for name, v in boot[m][k].items()}
    paired: dict[str, dict[str, Any]] = {}
    if counts is not None:
        for a, b in comparison_pairs(methods):
            paired[f"{a} - {b}"] = {str(k): S.compare(point[a][k], point[b][k], boot[a][k], boot[b][k])
                                    for k in queries.shots}
    oracle_report, oracle_point, oracle_boot = None, None, None
    if oracle is not None:
        stats = S.user_stats(y, predictions(oracle[0].outputs, run.tasks, run.esmm), queries.query_user, n_users,
                             run.tasks, truth=truth, esmm=run.esmm)
        oracle_point = S.metric_values(stats)
        oracle_report = {**S.point_metrics(stats), **oracle[1], "rows": len(rows)}
        if counts is not None:
            oracle_boot = S.metric_values(stats, counts)
            oracle_report["intervals"] = {name: _percentiles(v) for name, v in oracle_boot.items()}
            if BASELINE in methods:
                paired[f"oracle - {BASELINE}"] = {
                    str(k): S.compare(oracle_point, point[BASELINE][k], oracle_boot, boot[BASELINE][k])
                    for k in queries.shots}
    report: dict[str, Any] = {
        "run": str(run.run_dir), "dataset": str(run.dataset), "tasks": list(run.tasks), "esmm": run.esmm,
        "methods": methods, "shots": list(queries.shots), "seed": seed, "bootstrap": n_boot,
        "users": {"test": len(queries.sampler), "measured": n_users, "excluded_no_query": queries.excluded},
        "query_rows": len(rows), "fit_seconds": fit_seconds, "results": results, "intervals": intervals,
        "paired": paired, "best_meta": best_meta(results, queries.shots), "warm": warm, "oracle": oracle_report,
        "truth": sorted(truth),
    }
    report["gap_reference"] = "oracle" if oracle_report else "warm"
    report["gap_closed"] = gap_closed(report)
    if oracle_boot is not None and BASELINE in methods:
        report["gap_intervals"] = gap_intervals(report["gap_closed"], point, boot, oracle_point, oracle_boot)
    return report


def comparison_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """(method, baseline) pairs: every method against none, every other method against finetune."""
    pairs = [(m, BASELINE) for m in methods if m != BASELINE]
    if FINETUNE in methods:
        pairs += [(m, FINETUNE) for m in methods if m not in (BASELINE, FINETUNE)]
    return pairs


def best_meta(results: dict[str, dict[str, Any]], shots: Sequence[int], metric: str = "like_auc") -> str | None:
    """The meta-learned method (not none, not finetune) with the best mean `metric` over K > 0.

    Chosen on the test users themselves, so its comparison with finetune is a highlight of the
    every-method table, not an independent test.
    """
    best, best_value = None, -np.inf
    for m, per_k in results.items():
        if m in (BASELINE, FINETUNE):
            continue
        values = [per_k[str(k)].get(metric) for k in shots if k > 0]
        values = [v for v in values if v is not None]
        if values and float(np.mean(values)) > best_value:
            best, best_value = m, float(np.mean(values))
    return best


def gap_closed(report: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """metric -> method -> K -> (m(method) − m(none)) / (m(ref) − m(none)), where ref is the
    report's ``gap_reference``: the same-user oracle when there is one, else the warm users.

    A metric is left out where the reference is not above `none` at some K (warm users are
    other users on other events, and new users' later events can be easier to rank): a share
    of a gap that is not there means nothing.
    """
    ref, results = report.get(report.get("gap_reference", "warm")) or {}, report["results"]
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for metric in GAP_METRICS:
        if ref.get(metric) is None or BASELINE not in results:
            continue
        base = [r.get(metric) for r in results[BASELINE].values()]
        if any(b is None or ref[metric] <= b for b in base):
            continue
        out[metric] = {}
        for m, per_k in results.items():
            out[metric][m] = {}
            for k, res in per_k.items():
                value = res.get(metric)
                base = results[BASELINE][k][metric]
                out[metric][m][k] = None if value is None else (value - base) / (ref[metric] - base)
    return out


def gap_intervals(gaps: dict[str, dict[str, dict[str, float | None]]],
                  point: dict[str, dict[int, dict[str, np.ndarray]]], boot: dict[str, dict[int, dict[str, np.ndarray]]],
                  oracle_point: dict[str, np.ndarray], oracle_boot: dict[str, np.ndarray]
                  ) -> dict[str, dict[str, dict[str, list[float] | None]]]:
    """95% paired bootstrap intervals of the gap closed (against the oracle), for every metric,
    method and K of `gaps`: the share recomputed on each resample of users."""
    out: dict[str, dict[str, dict[str, list[float] | None]]] = {}
    for metric, per_method in gaps.items():
        out[metric] = {}
        for m, per_k in per_method.items():
            out[metric][m] = {}
            for k in per_k:
                base = boot[BASELINE][int(k)][metric]
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = (boot[m][int(k)][metric] - base) / (oracle_boot[metric] - base)
                out[metric][m][k] = _percentiles(share)
    return out


def _timings(sc: MethodScores) -> dict[str, float]:
    def q(a: np.ndarray, p: float) -> float:
        return float(np.percentile(a, p)) if len(a) else 0.0

    return {"adapt_ms_median": q(sc.adapt_ms, 50), "adapt_ms_p99": q(sc.adapt_ms, 99),
            "adapt_ms_mean": float(sc.adapt_ms.mean()) if len(sc.adapt_ms) else 0.0,
            "score_ms_median": q(sc.score_ms, 50)}


def _percentiles(values: np.ndarray) -> list[float] | None:
    v = values[np.isfinite(values)]
    return [float(x) for x in np.percentile(v, [2.5, 97.5])] if len(v) else None


def evaluate_methods(run: LoadedRun, split: ColdStartSplit, methods: Sequence[str], shots: Sequence[int], *,
                     n_boot: int = 1000, seed: int = 0, warm: bool = True, oracle_dir: Path | None = None,
                     options: dict[str, dict[str, Any]] | None = None, adapters_dir: Path | None = None,
                     reuse: bool = False, log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """The whole cold-start evaluation of `methods` at every K in `shots` (see the module docstring).

    Args:
        run: `load_run` output.
        split: `cold_start_split` output (the same seed as the one the adapters' fit should see).
        methods: adapter names (``none`` is always added first).
        shots: support sizes K (>= 0).
        n_boot: paired bootstrap resamples (0: none).
        seed: bootstrap seed.
        warm: compute the warm-user reference.
        oracle_dir: train (or reuse) the same-user oracle here (`recsys.coldstart.oracle`) and
            measure the gap closed against it; None: no oracle.
        options: adapter name -> options passed to `build_adapter`.
        adapters_dir: save each fitted adapter here (``NAME/adapter.json`` …), e.g. for serving.
        reuse: load adapters saved in `adapters_dir` for this ranker and seed instead of refitting.
        log: progress lines.

    Returns:
        The report (as written to coldstart.json).
    """
    methods = check_methods(methods)
    queries = fixed_queries(split.test, check_shots(shots))
    log(f"coldstart: {len(queries.users)} test users measured ({queries.excluded} without an event after "
        f"K={queries.shots[-1]} left out), {len(queries.query_rows)} query rows, methods {', '.join(methods)}")
    scores, fit_seconds, reused = score_methods(run, split, methods, queries, options=options, seed=seed,
                                                adapters_dir=adapters_dir, reuse=reuse, log=log)
    oracle = None
    if oracle_dir is not None:
        from recsys.coldstart.oracle import oracle_scores

        oracle = oracle_scores(run, queries, Path(oracle_dir), log=log)
    report = summarise(run, queries, scores, fit_seconds, n_boot=n_boot, seed=seed,
                       warm=warm_reference(run) if warm else None, oracle=oracle)
    report["users"].update(coldstart=split.n_cold, valid=len(split.valid))
    report["fit_reused"] = reused
    return report


def run_coldstart(run_dir: str | Path, *, dataset: str | None = None, data_dir: str | Path = "data",
                  methods: Sequence[str] = (BASELINE,), shots: Sequence[int] = (0, 1, 3, 5, 10, 20),
                  seed: int = 0, n_boot: int = 1000, out: str | Path | None = None, reuse: bool = False,
                  oracle: bool = True, device: str = "cpu", log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Load the run, evaluate, and write coldstart.json / .md, curve.png / .json to `out`
    (default RUN/coldstart), the fitted adapters to ``out/adapters/NAME`` and, with `oracle`, the
    same-user oracle (one more training run of the ranker) to ``out/oracle``. Inputs are checked
    before anything is fitted; `reuse` loads adapters fitted by an earlier call instead. `device`
    (``cpu``, ``cuda``, ``auto``) is where the ranker and the adapters run."""
    from recsys.train import resolve_device

    from recsys.coldstart.report import write_report

    if n_boot < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {n_boot}")
    methods, shots = check_methods(methods), check_shots(shots)
    run = load_run(run_dir, dataset, data_dir=data_dir, device=resolve_device(device))
    split = cold_start_split(run.dataset, seed=seed)
    out = Path(out) if out else Path(run_dir) / "coldstart"
    report = evaluate_methods(run, split, methods, shots, n_boot=n_boot, seed=seed, adapters_dir=out / "adapters",
                              reuse=reuse, oracle_dir=out / "oracle" if oracle else None, log=log)
    write_report(report, out)
    return report
