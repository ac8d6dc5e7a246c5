"""Multi-task experiments: the weighting grid and the task-affinity study, with diagnostics.

* `recsys.experiments.grid` — every model × weighting × seed against a static-weight sweep:
  mean ± std table, what each strategy buys against equal weighting, an engagement/satisfaction
  Pareto plot (`recsys.experiments.pareto`).
* `recsys.experiments.affinity` — which tasks help which, trained alone, in pairs and together.
* `recsys.experiments.diagnostics` — `summarise_diagnostics(run_dir)`: gradient conflict, task
  weights and expert-gate usage of one run, from its ``metrics.jsonl``.
* `recsys.experiments.commands` — `add_commands(subparsers)`, the ``recsys experiment`` CLI.

Importing this package is cheap (no torch); the experiment modules import it when used.
"""

from recsys.experiments.commands import add_commands
from recsys.experiments.diagnostics import summarise_diagnostics

__all__ = ["add_commands", "summarise_diagnostics"]
