"""The `recsys` command.

Sub-commands import what they need when they run, so `recsys --help` answers without loading
torch. A user mistake (`RecsysError`) is printed as one line on stderr with exit code 2.

    recsys run                                   the main job (README)
    recsys data fetch ml-100k [--source ...]     fetch, verify and cache MovieLens
    recsys data prepare ml-100k [--json]         watch-next framing, splits, features
    recsys data synth --users U --items I ...    the YouTube-like simulator
    recsys data summary DIR [--json]             print a prepared data set's summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = os.environ.get("RECSYS_DATA_DIR", "data")


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="cache root for raw and prepared data (default: %(default)s, or $RECSYS_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="A YouTube-style two-stage recommender: multi-task ranking, meta-learned cold start, "
                    "FAISS retrieval.",
    )
    from recsys import __version__

    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="the main job: data, ranker, retriever, index, cold start, evaluation, report")
    _add_data_dir(run)
    run.add_argument("--source", default="auto", help="auto | grouplens | recbole | PATH (see `data fetch`)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("runs/main"), help="output directory (default: %(default)s)")
    run.add_argument("--fresh", action="store_true", help="redo every step instead of reusing finished ones")
    run.add_argument("--threads", type=int, default=1,
                     help="torch threads (default: %(default)s; on a small shared machine one thread is the "
                          "robust choice: a second one waits on a busy core)")
    run.set_defaults(func=_cmd_run)

    idx = sub.add_parser("index", help="candidate index over the retriever's item vectors")
    isub = idx.add_subparsers(dest="index_command", metavar="ACTION")
    idx.set_defaults(func=lambda args: idx.print_help() or 2)
    ib = isub.add_parser("build", help="choose, tune (to a recall target) and record the index of a main-job run")
    ib.add_argument("run", type=Path, help="a main-job directory (with retriever/)")
    ib.add_argument("--types", default="flat,ivf_flat,ivf_sq,hnsw,ivf_pq", help="index types to try")
    ib.add_argument("--k", type=int, default=500, help="candidates per request (recall is measured at k)")
    ib.add_argument("--target-recall", type=float, default=0.95)
    ib.add_argument("--json", action="store_true")
    ib.set_defaults(func=_cmd_index_build)

    rec = sub.add_parser("recommend", help="top-k for a user and a query item, with per-task scores")
    rec.add_argument("run", type=Path, help="a main-job directory")
    rec.add_argument("--user", type=int, required=True)
    rec.add_argument("--query-item", type=int, help="what the user just watched (default: their last item)")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--weights", default="click=0.5,like=0.5", help="blend weights, e.g. click=1,like=1,rating=0.5")
    rec.add_argument("--candidates", type=int, default=500)
    rec.add_argument("--fallback", action="store_true", help="unknown user: flagged popular items instead of an error")
    rec.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu",
                     help="where the ranker and retriever towers run (default: %(default)s)")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=_cmd_recommend)

    data = sub.add_parser("data", help="fetch, prepare, simulate and inspect data sets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    fetch = dsub.add_parser("fetch", help="fetch MovieLens (GroupLens, else the recbole wheel), verify, cache")
    fetch.add_argument("name", choices=["ml-100k", "ml-1m"])
    fetch.add_argument("--source", default="auto",
                       help="auto (cache, GroupLens, then the recbole==1.2.1 wheel), grouplens, recbole, "
                            "or a directory you already have (GroupLens, atomic or MovieLens-1M layout)")
    _add_data_dir(fetch)
    fetch.set_defaults(func=_cmd_fetch)

    prep = dsub.add_parser("prepare", help="watch-next framing, cold-start users, temporal split, features")
    prep.add_argument("name", choices=["ml-100k", "ml-1m"])
    prep.add_argument("--source", default="auto", help="as for `data fetch` (used when not cached)")
    prep.add_argument("--negatives", type=int, default=4, help="negatives per positive (default: 4)")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--cold-frac", type=float, default=0.2, help="fraction of users set apart as new users")
    prep.add_argument("--out", type=Path, help="output directory (default: DATA_DIR/prepared/NAME)")
    prep.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_data_dir(prep)
    prep.set_defaults(func=_cmd_prepare)

    synth = dsub.add_parser("synth", help="generate a YouTube-like simulated data set, split and encoded")
    synth.add_argument("--users", type=int, default=2000)
    synth.add_argument("--items", type=int, default=1000)
    synth.add_argument("--impressions", type=int, default=200_000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, help="output directory (default: DATA_DIR/prepared/synth)")
    synth.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_data_dir(synth)
    synth.set_defaults(func=_cmd_synth)

    app = sub.add_parser("app", help="start the Streamlit demo on a main-job directory")
    app.add_argument("--run", type=Path, default=Path("runs/main"), help="main-job directory (default: %(default)s)")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--address", default="127.0.0.1", help="bind address (default: %(default)s; 0.0.0.0 to share)")
    app.set_defaults(func=_cmd_app)

    tr = sub.add_parser("train", help="train a multi-task ranker (resumable; publishes safetensors; "
                                      "data-parallel under torchrun)")
    tr.add_argument("--preset", default="default", help="smoke | default (default: %(default)s)")
    tr.add_argument("--config", type=Path, help="a JSON file of config keys (applied after the preset)")
    tr.add_argument("--dataset", help="prepared data set: ml-100k, synth, or a path")
    tr.add_argument("--model", help="architecture: shared_bottom, independent, multi_head, mmoe, ple, "
                                    "task_concat, task_add, task_mul")
    tr.add_argument("--weighting", help="static, equal, uncertainty, gradnorm, dwa, pcgrad, mgda, cagrad")
    tr.add_argument("--tasks", help="comma-separated tasks (default: all of the data set's)")
    tr.add_argument("--esmm", action="store_true", default=None, help="like = p(click) * p(like | click)")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--precision", choices=["fp32", "bf16"],
                    help="bf16: forward pass under bfloat16 autocast (mixed precision; default fp32)")
    tr.add_argument("--threads", type=int, help="torch threads (0 = torch's default)")
    tr.add_argument("--stream-window", type=int, metavar="ROWS",
                    help="stream the training and validation splits from parquet ROWS rows at a time "
                         "(bounded memory for large data sets; default 0 = load them into memory)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help='any config key, JSON values allowed, e.g. --set model_options=\'{"num_experts": 8}\'')
    tr.add_argument("--out", type=Path, required=True, help="run directory")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_data_dir(tr)
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate a trained run and the baselines on the test split")
    ev.add_argument("run", type=Path, help="a run directory written by `recsys train`")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    from recsys.coldstart import add_commands as add_coldstart_commands
    from recsys.experiments import add_commands as add_experiment_commands

    add_coldstart_commands(sub)
    add_experiment_commands(sub)

    summ = dsub.add_parser("summary", help="print the summary of a prepared data set")
    summ.add_argument("path", type=Path, help="a prepared directory, e.g. data/prepared/ml-100k")
    summ.add_argument("--json", action="store_true")
    summ.set_defaults(func=_cmd_summary)
    return parser


# --------------------------------------------------------------------------- commands


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _prepared_dir(args, name: str) -> Path:
    return Path(args.out) if getattr(args, "out", None) else Path(args.data_dir) / "prepared" / name


def _cmd_fetch(args) -> int:
    from recsys.data.sources.movielens import fetch

    ml = fetch(args.name, args.data_dir, source=args.source, log=_log)
    print(f"{ml.name}: {ml.ratings.height} ratings, {ml.users.height} users, {ml.items.height} items")
    return 0


def _prepare(args, name: str) -> dict:
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import fetch, raw_dir

    config = PrepareConfig(negatives=args.negatives, seed=args.seed, cold_frac=args.cold_frac)
    ml = fetch(name, args.data_dir, source=args.source, log=_log)
    manifest = json.loads((raw_dir(args.data_dir, name) / "manifest.json").read_text())
    out = _prepared_dir(args, name)
    _log(f"{name}: preparing watch-next impressions into {out} ...")
    return prepare_movielens(ml, out, config, source=manifest)


def _cmd_prepare(args) -> int:
    summary = _prepare(args, args.name)
    _print_summary(summary, _prepared_dir(args, args.name), as_json=args.json)
    return 0


def _cmd_synth(args) -> int:
    from recsys.data.prepare import prepare_synthetic
    from recsys.data.sources.synthetic import SimConfig, simulate

    config = SimConfig(users=args.users, items=args.items, impressions=args.impressions, seed=args.seed)
    out = _prepared_dir(args, "synth")
    _log(f"synth: simulating {args.impressions} impressions ({args.users} users, {args.items} items) ...")
    summary = prepare_synthetic(simulate(config), out)
    _print_summary(summary, out, as_json=args.json)
    return 0


def _cmd_summary(args) -> int:
    from recsys.errors import DataValidationError

    path = Path(args.path) / "summary.json"
    if not path.exists():
        raise DataValidationError(f"{path} not found: {args.path} is not a prepared data set")
    _print_summary(json.loads(path.read_text()), Path(args.path), as_json=args.json)
    return 0


def _train_overrides(args) -> dict:
    import json as _json

    from recsys.config import parse_set
    from recsys.errors import ConfigError

    over: dict = {}
    if args.config:
        try:
            over.update(_json.loads(Path(args.config).read_text()))
        except (OSError, _json.JSONDecodeError) as exc:
            raise ConfigError(f"--config {args.config}: {exc}") from exc
    for key in ("dataset", "model", "weighting", "esmm", "epochs", "batch_size", "lr", "seed", "device", "threads",
                "precision", "stream_window"):
        value = getattr(args, key)
        if value is not None:
            over[key] = value
    if args.tasks:
        over["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    over.update(parse_set(args.set))
    return over


def _cmd_train(args) -> int:
    from recsys.config import load_config
    from recsys.distributed import is_main_process
    from recsys.train import train

    config = load_config(args.preset, _train_overrides(args))
    result = train(config, args.out, data_dir=args.data_dir, resume=args.resume, log=_log)
    if not is_main_process():  # under torchrun, rank 0 reports for all
        return 0
    print(f"trained {config.model} + {config.weighting} in {result.seconds:.1f}s: {result.steps} steps, "
          f"{result.epochs} epochs, best epoch {result.best_epoch} (valid score {result.best_score:.4f})"
          + (", stopped early" if result.stopped_early else ""))
    print(f"published {args.out}/model.safetensors; next: recsys evaluate {args.out}")
    return 0


def _cmd_evaluate(args) -> int:
    from recsys.evaluate import evaluate_run, format_report
    from recsys.io import atomic_write_json

    report = evaluate_run(args.run, split=args.split)
    atomic_write_json(Path(args.run) / f"eval_{args.split}.json", report)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_report(report))
    return 0


def _cmd_run(args) -> int:
    from recsys.pipeline import run_main_job
    from recsys.report import app_available

    report = run_main_job(data_dir=args.data_dir, out=args.out, source=args.source, seed=args.seed,
                          fresh=args.fresh, threads=args.threads, log=_log)
    print(f"\nReport: {report}")
    if app_available():
        print(f"App:    recsys app --run {args.out}    (or: streamlit run app/streamlit_app.py)")
    print(f"Try:    recsys recommend {args.out} --user 1 -k 10")
    return 0


def _cmd_app(args) -> int:
    import subprocess

    from recsys.errors import ConfigError

    script = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    if not script.exists():
        raise ConfigError(f"{script} not found: the app ships with the repository checkout, not the wheel")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(args.port),
           "--server.address", args.address, "--server.headless", "true",
           # demo configuration: no tracebacks or developer toolbar for an audience, no telemetry
           "--client.showErrorDetails", "none", "--client.toolbarMode", "viewer",
           "--browser.gatherUsageStats", "false", "--", "--run", str(args.run)]
    _log(f"starting the app on http://{args.address}:{args.port} (Ctrl-C stops it)")
    return subprocess.call(cmd)


def _cmd_index_build(args) -> int:
    from recsys.pipeline import _build_index

    types = tuple(t.strip() for t in args.types.split(",") if t.strip())
    choice = _build_index(args.run, _log, k=args.k, target_recall=args.target_recall, types=types)
    if args.json:
        print(json.dumps(choice, indent=2, sort_keys=True))
    else:
        print(f"chose {choice['type']} (recall@{choice['k']} {choice['recall']:.3f}, single query p50 "
              f"{choice['p50_ms']:.3f} ms); recorded in {args.run}/index.json")
    return 0


def _cmd_recommend(args) -> int:
    from recsys.errors import ConfigError
    from recsys.serving import Recommender

    weights = {}
    for part in args.weights.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError as exc:
            raise ConfigError(f"--weights: {part!r} is not TASK=NUMBER") from exc
    rec = Recommender(args.run, n_candidates=args.candidates, device=args.device)
    res = rec.recommend(user_id=args.user, query_item=args.query_item, k=args.k, weights=weights,
                        fallback=args.fallback)
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    if res.fallback:
        print(f"FALLBACK: {res.fallback}")
    tasks = list(res.items[0].scores) if res.items and res.items[0].scores else []
    print(f"{'#':>3} {'item':>6}  {'title':<42}" + "".join(f"{t:>9}" for t in tasks) + f"{'retrieval':>10}{'blended':>9}")
    for r in res.items:
        print(f"{r.rank:>3} {r.item_id:>6}  {r.title[:42]:<42}" + "".join(f"{r.scores[t]:>9.3f}" for t in tasks)
              + f"{r.retrieval_score:>10.3f}{r.blended:>9.3f}")
    print(f"({res.timings_ms.get('total', 0):.1f} ms)")
    return 0


def _print_summary(summary: dict, out: Path, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**summary, "path": str(out)}, indent=2, sort_keys=True))
        return
    users, items = summary["users"], summary["items"]
    print(f"{summary['dataset']}: {users['total']} users ({users['warm']} warm, {users['cold_start']} cold-start), "
          f"{items['catalogue']} items")
    cols = [("rows", "rows", 10), ("positives", "positives", 11), ("users", "users", 7),
            ("click_rate", "click_rate", 12), ("like_rate", "like_rate", 11),
            ("like_rate_among_clicks", "like|click", 12), ("rating_mean", "rating_mean", 13)]
    print(f"{'split':<10}" + "".join(f"{label:>{w}}" for _, label, w in cols))
    for split in ("train", "valid", "test", "coldstart"):
        s = summary["splits"][split]
        print(f"{split:<10}" + "".join(f"{_cell(s.get(key)):>{w}}" for key, _, w in cols))


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from recsys.errors import RecsysError

    try:
        return int(args.func(args) or 0)
    except RecsysError as exc:
        print(f"recsys: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recsys: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
