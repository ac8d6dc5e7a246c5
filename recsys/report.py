"""The main job's report: markdown tables and PNG plots, in the run directory.

Everything shown is read back from the files the steps wrote (metrics.jsonl, eval/*.json,
index.json), so the report can be regenerated without retraining.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recsys.io import atomic_write_text


def read_log(run: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(step records, epoch records) of a training run's metrics.jsonl."""
    steps, epochs = [], []
    path = Path(run) / "metrics.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            (steps if rec["kind"] == "step" else epochs).append(rec)
    return steps, epochs


def _plots(out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, epochs = read_log(out / "ranker")
    made = []
    if steps:
        tasks = sorted(steps[0]["loss"])
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
        for t in tasks:
            xs = [r["step"] for r in steps if t in r["loss"]]
            ys = [r["loss"][t] for r in steps if t in r["loss"]]
            axes[0].plot(xs, smooth(ys), label=t)
            axes[1].plot([r["step"] for r in steps], [r["weight"].get(t, 0.0) for r in steps], label=t)
        axes[0].set_title("training loss per task (smoothed)")
        axes[1].set_title("task weights (weighting strategy)")
        diag = [r for r in steps if "grad_cosine" in r]
        for pair in sorted(diag[0]["grad_cosine"]) if diag else []:
            axes[2].plot([r["step"] for r in diag], [r["grad_cosine"][pair] for r in diag], label=pair)
        axes[2].axhline(0, color="grey", lw=0.8)
        axes[2].set_title("gradient cosine on shared parameters")
        for ax in axes:
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "training.png", dpi=110)
        plt.close(fig)
        made.append("training.png")
        gates = [r["gates"] for r in diag if "gates" in r]
        if gates:
            last = gates[-max(1, len(gates) // 5):]
            fig, ax = plt.subplots(figsize=(6, 3.2))
            width = 0.8 / len(last[0])
            for j, task in enumerate(sorted(last[0])):
                shares = [sum(g[task][e] for g in last) / len(last) for e in range(len(last[0][task]))]
                ax.bar([e + j * width for e in range(len(shares))], shares, width, label=task)
            ax.set_xlabel("expert")
            ax.set_ylabel("mean gate weight")
            ax.set_title("expert gate utilisation per task (late training)")
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(out / "gates.png", dpi=110)
            plt.close(fig)
            made.append("gates.png")
    if epochs:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for key in ("click_auc", "like_auc", "like_among_clicks_auc"):
            if key in epochs[0]["valid"]:
                ax.plot([e["epoch"] for e in epochs], [e["valid"][key] for e in epochs], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title("validation AUC")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "validation.png", dpi=110)
        plt.close(fig)
        made.append("validation.png")
    return made


def smooth(values: list[float], window: int = 25) -> list[float]:
    """Trailing moving average over `window` values (window 1 = unchanged)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "–" if v is None else str(v)


def _ranker_table(ev: dict[str, Any]) -> list[str]:
    scorers = [s for s in ("model", "popularity", "random") if s in ev]
    lines = ["| task | metric | " + " | ".join(scorers) + " |", "|---|---|" + "---|" * len(scorers)]
    for task, metrics in ev["model"].items():
        for name in metrics:
            if name.endswith(("_users", "_skipped")):
                continue
            lines.append(f"| {task} | {name} | " + " | ".join(_fmt(ev[s].get(task, {}).get(name)) for s in scorers) + " |")
    return lines


def app_available() -> bool:
    """Whether the Streamlit app ships with this checkout."""
    return (Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py").exists()


def write_report(out: str | Path, results: dict[str, Any]) -> Path:
    """Write ``report.md`` (and its plots) into `out`; return its path."""
    out = Path(out)
    plots = _plots(out)
    ev, e2e, index, cold = results.get("ranker"), results.get("end_to_end"), results.get("index"), results.get("coldstart")
    lines = ["# recsys main job report", "",
             f"Data: `{ev['dataset']}` ({ev['rows']} test rows, {ev['users']} warm test users)." if ev else "", ""]
    lines += ["## Multi-task ranker (MMoE, uncertainty weighting, ESMM) on the test split", "",
              "Per-user AUC averages users with both classes; `like_among_clicks` ranks the clicked rows "
              "by satisfaction (the ESMM p(like | click) tower).", ""]
    if ev:
        lines += _ranker_table(ev) + [""]
    for name, title in (("validation.png", "Validation AUC per epoch"), ("training.png", "Training: losses, task weights, gradient conflict"),
                        ("gates.png", "Expert gate utilisation")):
        if name in plots:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    if e2e:
        k, n = e2e["k"], e2e["n_candidates"]
        lines += ["## End-to-end recommender (retrieve → rank → blend → top-k)", "",
                  f"{e2e['users']} warm test users; history = their train + valid clicks; relevant = their test clicks.", "",
                  f"| scorer | NDCG@{k} | Recall@{k} |", "|---|---|---|",
                  f"| recommender | {_fmt(e2e['recommender'][f'ndcg@{k}'])} | {_fmt(e2e['recommender'][f'recall@{k}'])} |",
                  f"| popularity | {_fmt(e2e['popularity'][f'ndcg@{k}'])} | {_fmt(e2e['popularity'][f'recall@{k}'])} |", "",
                  f"Candidate recall@{n} of the test clicks: {_fmt(e2e['retrieval'][f'recall@{n}'])}. "
                  f"Request latency: p50 {e2e['latency_ms']['p50']:.1f} ms, p99 {e2e['latency_ms']['p99']:.1f} ms "
                  f"(one thread, {e2e['index']} index).", ""]
    if index:
        lines += [f"## Candidate index (recall@{index['k']} target {index['target_recall']})", "",
                  "| index | recall | single-query p50 ms | p99 ms | build s |", "|---|---|---|---|---|"]
        lines += [f"| {r['type']} | {r['recall']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['build_s']:.2f} |"
                  for r in index["table"]]
        lines += ["", f"Chosen: **{index['type']}** (the fastest that reaches the target).", ""]
    if cold:
        # the cold-start report is a document of its own: its headings go two levels down here
        lines += ["## Cold start", ""] + [("##" + ln if ln.startswith("#") else ln)
                                          for ln in cold.get("markdown", "").splitlines()] + [""]
        if cold.get("curve"):
            lines += [f"![cold-start curve]({cold['curve']})", ""]
    if results.get("timings_s"):
        lines += ["## Time per step (s)", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in results["timings_s"].items()] + [""]
    if app_available():
        lines += ["## Open the app", "", "```", "recsys app        # or: streamlit run app/streamlit_app.py", "```", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
