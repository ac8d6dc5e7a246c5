"""The cold-start report's files: coldstart.json, coldstart.md, curve.png, curve.json.

`curve_data` is the plotted data in long form (one record per method, K and metric, with its
95% bootstrap interval), so the app can draw the same curves with Altair; `plot_curves` draws it
with matplotlib (Agg).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS: dict[str, str] = {
    "like_auc": "like AUC", "click_auc": "click AUC", "like_user_auc": "per-user like AUC",
    "click_user_auc": "per-user click AUC", "like_click_auc": "like AUC among clicks",
    "like_click_user_auc": "per-user like AUC among clicks", "like_ndcg@10": "like NDCG@10",
    "click_ndcg@10": "click NDCG@10", "rating_rmse": "rating RMSE", "rating_mae": "rating MAE",
    "watch_rmse": "watch RMSE", "watch_mae": "watch MAE",
    "taste_spearman": "taste: Spearman with true p(like)", "taste_user_auc": "taste: per-user AUC vs truth",
}
#: Panels of curve.png, in order (each drawn when the report has it).
PANELS = ("like_auc", "click_auc", "like_user_auc", "like_click_auc", "rating_rmse", "taste_user_auc")
#: Reference levels drawn across the curves: report key -> (label, colour, line style, width).
REFERENCES: dict[str, tuple[str, str, str, float]] = {
    "warm": ("warm users", "black", "--", 1.0),
    "oracle": ("oracle (same users, trained on)", "grey", ":", 1.5),
}
#: Metrics shown in the paired-difference tables of coldstart.md (all are in coldstart.json).
PAIRED = ("like_auc", "click_auc", "like_user_auc", "like_click_auc", "like_ndcg@10", "rating_rmse",
          "taste_user_auc")


def _metrics(report: dict[str, Any]) -> list[str]:
    first = report["results"][report["methods"][0]][str(report["shots"][0])]
    return [m for m in LABELS if m in first]


def _f(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    value = value + 0.0  # no "-0.0000"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def format_markdown(report: dict[str, Any]) -> str:
    """coldstart.md: headline curve, metric × method per K, gap closed, paired intervals, timings."""
    methods, shots, res = report["methods"], [str(k) for k in report["shots"]], report["results"]
    warm, oracle = report.get("warm") or {}, report.get("oracle") or {}
    ref = report.get("gap_reference", "warm")
    users = report["users"]
    lines = ["# Cold-start evaluation", "",
             f"Run `{report['run']}` on `{report['dataset']}` (tasks {', '.join(report['tasks'])}"
             f"{', ESMM' if report['esmm'] else ''}).",
             f"Test new users measured: {users['measured']} of {users['test']} ({users['excluded_no_query']} with no "
             f"event after K={shots[-1]} left out); {report['query_rows']} query rows, the same for every K and "
             f"method (each user's events after their first {shots[-1]}). Support = a user's first K events.",
             f"Bootstrap: {report['bootstrap']} resamples of test users (seed {report['seed']}), paired across methods."
             + (f" Warm reference: the ranker on {warm['users']} warm users' test rows ({warm['rows']} rows)."
                if warm else "")
             + (f" Oracle: the ranker trained again with these {oracle['users']} users' first {oracle['k_max']} "
                f"events among its training rows ({oracle['support_rows_added']} rows, under user ids of their own), "
                "scored on the same query rows." if oracle else ""), ""]
    refs = [name for name in REFERENCES if report.get(name)]
    columns = ["warm", *(["oracle"] if oracle else [])]   # the warm column stays, "–" when not measured
    lines += ["## Like AUC against K", ""]
    lines += _table(["method", *(f"K={k}" for k in shots)],
                    [[m, *(_f(res[m][k].get("like_auc")) for k in shots)] for m in methods]
                    + [[name, *([_f(report[name].get("like_auc"))] * len(shots))] for name in refs])
    for k in shots:
        lines += ["", f"## K = {k}", ""]
        rows = [[LABELS[name], *(_f(res[m][k].get(name)) for m in methods),
                 *(_f((report.get(c) or {}).get(name)) for c in columns)] for name in _metrics(report)]
        rows.append(["users / fallbacks", *(f"{res[m][k]['users']} / {res[m][k]['fallbacks']}" for m in methods),
                     *("–" for _ in columns)])
        lines += _table(["metric", *methods, *columns], rows)
    if ref == "oracle":
        lines += ["", "## Gap closed: (method − none) / (oracle − none)", "",
                  "1 = as good as the ranker that trained on the same users' first "
                  f"{oracle['k_max']} events, on the same query rows; [95% paired bootstrap interval]."]
    elif warm:
        lines += ["", "## Gap closed: (method − none) / (warm − none)", "",
                  "1 = as good as the ranker on warm users; undefined where the warm reference is not above "
                  "`none` (warm users are other users on other events)."]
    intervals = report.get("gap_intervals", {})
    for metric, gap in report.get("gap_closed", {}).items():
        ci = intervals.get(metric, {})
        lines += ["", f"### {LABELS[metric]}", ""]
        lines += _table(["method", *(f"K={k}" for k in shots)],
                        [[m, *(_f(gap[m][k]) + _interval((ci.get(m) or {}).get(k)) for k in shots)] for m in methods])
    reference = report.get(ref) or {}
    undefined = [LABELS[m] for m in ("like_auc", "like_click_auc")
                 if reference.get(m) is not None and m not in report.get("gap_closed", {})]
    if undefined:
        lines += ["", f"Undefined for {', '.join(undefined)}: {ref} "
                  + ", ".join(f"{_f(reference.get(m))} vs none {_f(res['none'][shots[0]].get(m))}"
                              for m in ("like_auc", "like_click_auc") if LABELS[m] in undefined) + "."]
    if report["paired"]:
        lines += ["", "## Paired differences (mean difference [95% bootstrap interval]; * = excludes 0)", "",
                  "Differences are a − b on the same users and rows; for RMSE a negative difference is better.", ""]
        if report.get("best_meta"):
            lines += [f"Best meta-learner by mean like AUC over K > 0: **{report['best_meta']}** (chosen on these "
                      "test users, so its row against finetune is a highlight, not an independent test).", ""]
        for pair, per_k in report["paired"].items():
            lines += [f"### {pair}", ""]
            names = [n for n in PAIRED if n in per_k[shots[0]]]
            lines += _table(["metric", *(f"K={k}" for k in shots)],
                            [[LABELS[n], *(_cell(per_k[k][n]) for k in shots)] for n in names])
            lines.append("")
    lines += ["", "## Adaptation time per user (ms: median / p99) and fit time", ""]
    reused = report.get("fit_reused", {})
    lines += _table(["method", "fit s", *(f"K={k}" for k in shots)],
                    [[m, f"{report['fit_seconds'][m]:.1f}" + (" (saved fit)" if reused.get(m) else ""),
                      *(f"{res[m][k]['adapt_ms_median']:.2f} / {res[m][k]['adapt_ms_p99']:.2f}" for k in shots)]
                     for m in methods])
    return "\n".join(lines) + "\n"


def _interval(ci: list[float] | None) -> str:
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _cell(row: dict[str, Any]) -> str:
    if row["lo"] is None:
        return _f(row["diff"], signed=True)
    star = "*" if row["excludes_zero"] else ""
    return f"{_f(row['diff'], True)} [{_f(row['lo'], True)}, {_f(row['hi'], True)}]{star}"


def curve_data(report: dict[str, Any]) -> dict[str, Any]:
    """The curves in long form for Altair: ``points`` (metric, method, k, value, lo, hi), and the
    reference levels ``warm`` and ``oracle`` (metric, value)."""
    present = set(_metrics(report))
    panels = [{"metric": m, "label": LABELS[m], "higher_is_better": not m.endswith(("rmse", "mae"))}
              for m in PANELS if m in present]
    points: list[dict[str, Any]] = []
    levels: dict[str, list[dict[str, Any]]] = {name: [] for name in REFERENCES}
    for p in panels:
        name = p["metric"]
        for method in report["methods"]:
            for k in report["shots"]:
                ci = (report["intervals"].get(method, {}).get(str(k)) or {}).get(name) or [None, None]
                points.append({"metric": name, "method": method, "k": k,
                               "value": report["results"][method][str(k)].get(name), "lo": ci[0], "hi": ci[1]})
        for ref, level in levels.items():
            if (report.get(ref) or {}).get(name) is not None:
                level.append({"metric": name, "value": report[ref][name]})
    return {"x": "k", "x_label": "K (support events per new user)", "panels": panels, "points": points, **levels}


def plot_curves(curve: dict[str, Any], path: str | Path, *, title: str = "") -> None:
    """Draw `curve_data` to a PNG: one panel per metric, one line per method, warm dashed,
    the oracle dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.io import atomic_path

    panels = curve["panels"]
    cols = min(len(panels), 2) or 1
    nrows = (len(panels) + cols - 1) // cols or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4.2 * nrows), dpi=110, squeeze=False)
    methods = list(dict.fromkeys(p["method"] for p in curve["points"]))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for ax, panel in zip(axes.flat, panels):
        for method in methods:
            pts = [p for p in curve["points"] if p["metric"] == panel["metric"] and p["method"] == method
                   and p["value"] is not None]
            if not pts:
                continue
            ks = [p["k"] for p in pts]
            ax.plot(ks, [p["value"] for p in pts], marker="o", ms=3, color=colours[method], label=method)
        for ref, (label, colour, style, width) in REFERENCES.items():
            for w in curve.get(ref, []):
                if w["metric"] == panel["metric"]:
                    ax.axhline(w["value"], color=colour, ls=style, lw=width, label=label)
        ax.set_xscale("symlog", linthresh=1)
        ks = sorted({p["k"] for p in curve["points"]})
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlim(min(ks) - 0.1, max(ks) * 1.05 + 0.1)
        ax.set_xlabel(curve["x_label"])
        ax.set_title(panel["label"] + ("" if panel["higher_is_better"] else " (lower is better)"), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if panels:
        axes.flat[0].legend(fontsize=8, loc="best")
    # No per-method bands: between-user spread makes them overlap even where the paired differences
    # (coldstart.md) exclude 0; curve.json keeps them (lo, hi) for an app that wants them.
    fig.suptitle(title or "cold start: metric against support size K", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write coldstart.json, coldstart.md, curve.json and curve.png into `out` (created).

    Returns:
        name -> path of each file written.
    """
    from recsys.io import atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("coldstart.json", "coldstart.md", "curve.json", "curve.png")}
    curve = curve_data(report)
    atomic_write_json(paths["coldstart.json"], report)
    atomic_write_text(paths["coldstart.md"], format_markdown(report))
    atomic_write_json(paths["curve.json"], curve)
    plot_curves(curve, paths["curve.png"], title=f"cold start: {Path(report['run']).name}")
    return paths
