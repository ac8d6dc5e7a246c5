"""Adapters that train torch-rechub and DeepCTR-Torch multi-task models on recsys' prepared data.

Shared by `compare_peers.py` (quality) and `bench_train_speed.py` (speed). Each peer gets the
same inputs as our rankers, in the form its library expects:

- every single-valued categorical field (user id, age, gender, occupation, zip; item id, year;
  query id, year) is a sparse feature with the schema's vocabulary size and embedding size D;
- the multi-valued genre fields (width 6, PAD = 0) use the peer's own multi-valued support with
  mean pooling over the non-PAD ids: torch-rechub ``SequenceFeature(pooling="mean",
  padding_idx=0)``, DeepCTR ``VarLenSparseFeat(combiner="mean")`` (which masks id 0);
- fields of one vocabulary (candidate and query item id, year, genres) share one table, as in
  our ``FeatureEmbedding``: torch-rechub ``shared_with``, DeepCTR ``embedding_name``.

The peers predict the two binary tasks click and like only (neither does our masked rating
regression). Their ESMM variants read like as p(click & like) = p(click) * p(like | click) and
expose p(like | click) (the CVR tower), which we use to rank clicked rows.

Each quirk we had to work around is listed in `WORKAROUNDS`, with the reason.

Shapes: N rows, B batch, W columns of x, D embedding size.

Example:
    >>> runner = make_runner("rechub", "mmoe", schema, train, seed=0)      # doctest: +SKIP
    >>> runner.train_epoch(0)                                             # doctest: +SKIP
    >>> runner.predict(valid)["click"].shape                              # doctest: +SKIP
    (38110,)
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.data.fields import Schema
from recsys.data.tensors import TensorData, batch_indices

PEERS: tuple[str, ...] = ("rechub", "deepctr")
ARCHS: tuple[str, ...] = ("shared_bottom", "mmoe", "ple", "esmm")
TASKS: tuple[str, ...] = ("click", "like")

#: What we had to do to run each peer on this data, and why. Written into the comparison JSON.
WORKAROUNDS: dict[str, list[str]] = {
    "rechub": [
        "Feature objects cache their nn.Embedding on themselves (SparseFeature.get_embedding_layer sets "
        "self.embed), so reusing one feature list for a second model silently shares (already trained) "
        "embedding tables between models; we build fresh feature objects for every model.",
        "SequenceFeature needs padding_idx=0, otherwise InputMask compares ids with -1 and the mean pooling "
        "averages the PAD (id 0) slots of the genre lists too.",
        "MTLTrainer.fit early-stops on ONE task's metric (earlystop_taskid) and always torch.save()s the model "
        "to model_path; to early-stop on mean(click AUC, like AUC) we call MTLTrainer.train_one_epoch once per "
        "epoch and evaluate ourselves, keeping the best epoch's state_dict (deep copy).",
        "Batches come from pre-built tensors (the same seeded permutation per epoch as our trainer) instead of "
        "torch_rechub's DataGenerator/TorchDataset, whose per-row __getitem__ + default collate would dominate "
        "the epoch time; train_one_epoch accepts any iterable of (x_dict, y).",
        "ESMM outputs [p(cvr), p(ctr), p(ctcvr)] and MTLTrainer sums the losses of columns 1 and 2 only; the "
        "label matrix must still carry 3 valid columns, so column 0 is like (0 on unclicked rows, unused).",
        "ESMM needs user_features and item_features groups: user fields + query-item fields (the request) as "
        "user features, candidate-item fields as item features; it concatenates both groups, so the grouping "
        "does not change the model.",
        "MLP always adds BatchNorm1d after every Linear (including the gates); there is no switch to turn it off.",
        "PLE: every expert of every level is the same MLP (expert_params['dims']); per-level widths like ours "
        "(256 then 128) cannot be expressed.",
        "The trainer prints losses and draws tqdm bars; we silence stdout and set TQDM_DISABLE=1.",
    ],
    "deepctr": [
        "`import deepctr_torch` imports `requests` (not a declared dependency) and starts a thread that queries "
        "PyPI for a newer version (utils.check_version); with no network it prints 'Please check the latest "
        "version manually'. We register a stub module deepctr_torch.utils with a no-op check_version before the "
        "import: no requests import, no network call.",
        "BaseModel.__init__ calls torch.manual_seed(seed) with seed=1024 by default, overwriting the caller's "
        "seed; we pass seed=<run seed> to every model.",
        "PLE bug: shared_experts is built with specific_expert_num experts per level instead of "
        "shared_expert_num, so shared_expert_num=2, specific_expert_num=1 raises IndexError in forward; we "
        "rebuild model.shared_experts with shared_expert_num DNN experts per level after construction.",
        "fit() has no early stopping on a custom metric, and its multi-task 'auc' metric flattens all tasks "
        "into one AUC; we call fit(epochs=e+1, initial_epoch=e) once per epoch and evaluate ourselves, keeping "
        "the best epoch's state_dict (deep copy).",
        "fit() sums the per-row losses of each task (reduction='sum') rather than averaging them; Adam is "
        "nearly invariant to that scale, so we leave it, but the l2_reg_embedding=1e-5 default is then a much "
        "weaker penalty than the same number in a mean loss.",
        "fit() and predict() cast the whole input to float32 (ids are exact below 2**24) and batch through a "
        "per-row DataLoader over a TensorDataset (we keep it: it is their loop).",
        "ESMM returns [p(ctr), p(ctcvr)] only; p(cvr) = p(like | click) is not an output, so we recompute it "
        "from the model's own modules (cvr_dnn -> cvr_dnn_final_layer -> sigmoid) for like-among-clicks.",
        "MMOE/PLE default to a 64-unit hidden layer in each gate; we pass gate_dnn_hidden_units=() for linear "
        "softmax gates like ours and torch-rechub's.",
        "fit() prints the device and a 'Train on N samples' line on every call; we silence stdout.",
        "DNN weights are initialised N(0, 1e-4) (init_std) unlike nn.Linear's default; we keep their default.",
    ],
}


@dataclass(frozen=True)
class PeerSpec:
    """Sizes of the peer models, chosen to match our defaults where the peer can express them.

    Attributes:
        dim: embedding size D of every field.
        num_experts: MMoE experts.
        expert_hidden: MMoE expert MLP widths and shared-bottom widths (ours: 256, 128).
        tower_hidden: task tower hidden widths (ours: 64).
        ple_levels: PLE CGC levels (ours: one per entry of expert_hidden, 2).
        ple_expert_hidden: the MLP of every PLE expert at every level (ours: one layer per level,
            256 then 128; the peers repeat one MLP per level, so we give them 256 at both levels).
        ple_shared_experts, ple_task_experts: experts per PLE level (ours: 2 shared, 1 per task).
        esmm_tower_hidden: hidden widths of the CTR and CVR towers of the peers' ESMM.
        lr: Adam learning rate (ours: 2e-3).
        weight_decay: Adam weight decay (ours: 0).
    """

    dim: int = 16
    num_experts: int = 4
    expert_hidden: tuple[int, ...] = (256, 128)
    tower_hidden: tuple[int, ...] = (64,)
    ple_levels: int = 2
    ple_expert_hidden: tuple[int, ...] = (256,)
    ple_shared_experts: int = 2
    ple_task_experts: int = 1
    esmm_tower_hidden: tuple[int, ...] = (256, 128)
    lr: float = 2e-3
    weight_decay: float = 0.0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PeerSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ValueError(f"unknown peer option(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()})

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------------------- imports


def import_deepctr() -> types.ModuleType:
    """Import deepctr_torch without its PyPI version check (and so without `requests`)."""
    if "deepctr_torch" not in sys.modules:
        stub = types.ModuleType("deepctr_torch.utils")
        stub.check_version = lambda version: None
        sys.modules.setdefault("deepctr_torch.utils", stub)
    import deepctr_torch
    import deepctr_torch.models.multitask  # noqa: F401

    return deepctr_torch


@contextlib.contextmanager
def _quiet(enabled: bool = True) -> Iterator[None]:
    """Swallow the peers' prints (stdout) while their loops run."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _vocab_owner(schema: Schema) -> dict[str, str]:
    """The first field of each vocabulary: it owns the table the other fields share."""
    owner: dict[str, str] = {}
    for f in schema.fields:
        owner.setdefault(f.vocab, f.name)
    return owner


def task_labels(data: TensorData, *, esmm: bool) -> np.ndarray:
    """Peer label matrix: [N, 2] (click, like), or [N, 2] (click, click & like) for ESMM.

    Our like label is 0 on unclicked rows, so click & like == like; it is kept explicit.
    """
    tasks = data.schema.tasks
    y = data.y.numpy()
    click = y[:, tasks.index("click")]
    like = np.nan_to_num(y[:, tasks.index("like")], nan=0.0)
    second = click * like if esmm else like
    return np.stack([click, second], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------- torch-rechub


def rechub_features(schema: Schema, dim: int) -> tuple[list, list, list]:
    """Fresh torch-rechub feature objects (they cache their embedding table on themselves).

    Returns:
        (all features in schema order, user-side group, item-side group) for ESMM.
    """
    from torch_rechub.basic.features import SequenceFeature, SparseFeature

    owner, sizes = _vocab_owner(schema), schema.vocab_sizes
    features, user, item = [], [], []
    for f in schema.fields:
        shared = None if owner[f.vocab] == f.name else owner[f.vocab]
        if f.width == 1:
            fea = SparseFeature(f.name, vocab_size=sizes[f.vocab], embed_dim=dim, shared_with=shared)
        else:
            fea = SequenceFeature(f.name, vocab_size=sizes[f.vocab], embed_dim=dim, pooling="mean",
                                  shared_with=shared, padding_idx=0)
        features.append(fea)
        (item if f.side == "item" else user).append(fea)
    return features, user, item


def rechub_inputs(data: TensorData) -> dict[str, torch.Tensor]:
    """torch-rechub's input dict: field name -> [N] ids (sparse) or [N, width] ids (sequence)."""
    out = {}
    for f in data.schema.fields:
        cols = data.x[:, data.schema.slice(f.name)]
        out[f.name] = (cols[:, 0] if f.width == 1 else cols).contiguous()
    return out


def build_rechub(arch: str, schema: Schema, spec: PeerSpec) -> nn.Module:
    """A torch-rechub model of architecture `arch` (one of `ARCHS`) for click and like."""
    from torch_rechub.models.multi_task import ESMM, MMOE, PLE, SharedBottom

    features, user, item = rechub_features(schema, spec.dim)
    kinds = ["classification"] * len(TASKS)
    towers = [{"dims": list(spec.tower_hidden)} for _ in TASKS]
    if arch == "shared_bottom":
        return SharedBottom(features, kinds, bottom_params={"dims": list(spec.expert_hidden)},
                            tower_params_list=towers)
    if arch == "mmoe":
        return MMOE(features, kinds, n_expert=spec.num_experts, expert_params={"dims": list(spec.expert_hidden)},
                    tower_params_list=towers)
    if arch == "ple":
        return PLE(features, kinds, n_level=spec.ple_levels, n_expert_specific=spec.ple_task_experts,
                   n_expert_shared=spec.ple_shared_experts, expert_params={"dims": list(spec.ple_expert_hidden)},
                   tower_params_list=towers)
    if arch == "esmm":
        tower = {"dims": list(spec.esmm_tower_hidden)}
        return ESMM(user, item, cvr_params=dict(tower), ctr_params=dict(tower))
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


class _Batches:
    """An epoch of (x_dict, y) batches: slices of the seeded permutation our trainer uses."""

    def __init__(self, inputs: dict[str, torch.Tensor], y: torch.Tensor, batch_size: int, *, seed: int,
                 epoch: int) -> None:
        self.inputs, self.y, self.batch_size, self.seed, self.epoch = inputs, y, batch_size, seed, epoch

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for idx in batch_indices(len(self.y), self.batch_size, seed=self.seed, epoch=self.epoch):
            yield {k: v[idx] for k, v in self.inputs.items()}, self.y[idx]


class _Runner:
    """What both peers' runners start with: their settings, and torch's and numpy's RNGs seeded.

    Args:
        arch: one of `ARCHS`.
        seed: seeds initialisation and batch order.
        batch_size: rows per step.
        quiet: silence the trainer's prints.
    """

    def __init__(self, arch: str, *, seed: int, batch_size: int, quiet: bool) -> None:
        self.arch, self.seed, self.batch_size, self.quiet = arch, seed, batch_size, quiet
        self.esmm = arch == "esmm"
        torch.manual_seed(seed)
        np.random.seed(seed)


class RechubRunner(_Runner):
    """A torch-rechub model trained with its own ``MTLTrainer.train_one_epoch``.

    Args:
        arch: one of `ARCHS`.
        schema: layout of our `x`.
        train: the training split.
        seed: seeds initialisation and batch order.
        batch_size: rows per step.
        spec: model sizes and optimiser settings.
        quiet: silence the trainer's prints.
    """

    peer = "rechub"

    def __init__(self, arch: str, schema: Schema, train: TensorData, *, seed: int, batch_size: int = 1024,
                 spec: PeerSpec = PeerSpec(), quiet: bool = True) -> None:
        from torch_rechub.trainers import MTLTrainer

        super().__init__(arch, seed=seed, batch_size=batch_size, quiet=quiet)
        self.model = build_rechub(arch, schema, spec)
        kinds = ["classification"] * (3 if self.esmm else 2)
        with _quiet(quiet):
            self.trainer = MTLTrainer(self.model, task_types=kinds,
                                      optimizer_params={"lr": spec.lr, "weight_decay": spec.weight_decay},
                                      n_epoch=1, device="cpu")
        self.inputs = rechub_inputs(train)
        self.y = torch.from_numpy(self._labels(train))

    def _labels(self, data: TensorData) -> np.ndarray:
        y = task_labels(data, esmm=self.esmm)
        if self.esmm:  # [cvr (unused by the loss), ctr, ctcvr]
            like = np.nan_to_num(data.y[:, data.schema.tasks.index("like")].numpy(), nan=0.0)
            y = np.concatenate([like[:, None], y], axis=1).astype(np.float32)
        return y

    def train_epoch(self, epoch: int) -> None:
        with _quiet(self.quiet):
            self.trainer.train_one_epoch(_Batches(self.inputs, self.y, self.batch_size, seed=self.seed, epoch=epoch))

    @torch.no_grad()
    def predict(self, data: TensorData, batch_size: int = 16384) -> dict[str, np.ndarray]:
        """p(click), p(like) and, for ESMM, p(like | click): task -> [N] float64."""
        self.model.eval()
        inputs, parts = rechub_inputs(data), []
        for start in range(0, len(data), batch_size):
            parts.append(self.model({k: v[start:start + batch_size] for k, v in inputs.items()}))
        p = torch.cat(parts).double().numpy()
        self.model.train()
        if self.esmm:  # [cvr, ctr, ctcvr]
            return {"click": p[:, 1], "like": p[:, 2], "like_given_click": p[:, 0]}
        return {"click": p[:, 0], "like": p[:, 1]}


# ---------------------------------------------------------------------------------------- DeepCTR-Torch


def deepctr_features(schema: Schema, dim: int) -> list:
    """DeepCTR feature columns in schema order, so their input layout equals our `x`."""
    import_deepctr()
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat

    sizes, columns = schema.vocab_sizes, []
    for f in schema.fields:
        sparse = SparseFeat(f.name, vocabulary_size=sizes[f.vocab], embedding_dim=dim, embedding_name=f.vocab)
        columns.append(sparse if f.width == 1 else VarLenSparseFeat(sparse, maxlen=f.width, combiner="mean"))
    return columns


def deepctr_inputs(data: TensorData) -> dict[str, np.ndarray]:
    """DeepCTR's input dict: field name -> [N] or [N, width] int64 ids."""
    x = data.x.numpy()
    return {f.name: x[:, data.schema.slice(f.name)].squeeze(1) if f.width == 1 else x[:, data.schema.slice(f.name)]
            for f in data.schema.fields}


def build_deepctr(arch: str, schema: Schema, spec: PeerSpec, *, seed: int) -> nn.Module:
    """A DeepCTR-Torch model of architecture `arch` for click and like (not compiled)."""
    import_deepctr()
    from deepctr_torch.layers import DNN
    from deepctr_torch.models.multitask import ESMM, MMOE, PLE, SharedBottom

    cols = deepctr_features(schema, spec.dim)
    common = {"task_types": ("binary", "binary"), "task_names": TASKS, "seed": seed, "device": "cpu"}
    if arch == "shared_bottom":
        return SharedBottom(cols, bottom_dnn_hidden_units=spec.expert_hidden, tower_dnn_hidden_units=spec.tower_hidden,
                            **common)
    if arch == "mmoe":
        return MMOE(cols, num_experts=spec.num_experts, expert_dnn_hidden_units=spec.expert_hidden,
                    gate_dnn_hidden_units=(), tower_dnn_hidden_units=spec.tower_hidden, **common)
    if arch == "ple":
        model = PLE(cols, shared_expert_num=spec.ple_shared_experts, specific_expert_num=spec.ple_task_experts,
                    num_levels=spec.ple_levels, expert_dnn_hidden_units=spec.ple_expert_hidden,
                    gate_dnn_hidden_units=(), tower_dnn_hidden_units=spec.tower_hidden, **common)
        if spec.ple_shared_experts != spec.ple_task_experts:  # their bug: see WORKAROUNDS
            hidden = spec.ple_expert_hidden
            model.shared_experts = nn.ModuleList(
                nn.ModuleList([nn.ModuleList(
                    DNN(model.input_dim if level == 0 else hidden[-1], hidden, activation="relu", init_std=0.0001)
                    for _ in range(spec.ple_shared_experts))])
                for level in range(spec.ple_levels))
        return model
    if arch == "esmm":
        return ESMM(cols, tower_dnn_hidden_units=spec.esmm_tower_hidden, **common)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


class DeepctrRunner(_Runner):
    """A DeepCTR-Torch model trained with its own ``fit``, one epoch per call.

    Args: as `RechubRunner`.
    """

    peer = "deepctr"

    def __init__(self, arch: str, schema: Schema, train: TensorData, *, seed: int, batch_size: int = 1024,
                 spec: PeerSpec = PeerSpec(), quiet: bool = True) -> None:
        super().__init__(arch, seed=seed, batch_size=batch_size, quiet=quiet)
        self.model = build_deepctr(arch, schema, spec, seed=seed)
        self.model.compile(torch.optim.Adam(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay),
                           loss=["binary_crossentropy"] * 2)
        self.inputs = deepctr_inputs(train)
        self.y = task_labels(train, esmm=self.esmm)

    def train_epoch(self, epoch: int) -> None:
        with _quiet(self.quiet):
            self.model.fit(dict(self.inputs), self.y, batch_size=self.batch_size, epochs=epoch + 1,
                           initial_epoch=epoch, verbose=0, shuffle=True)

    @torch.no_grad()
    def predict(self, data: TensorData, batch_size: int = 16384) -> dict[str, np.ndarray]:
        """p(click), p(like) and, for ESMM, p(like | click): task -> [N] float64."""
        p = self.model.predict(deepctr_inputs(data), batch_size=batch_size)
        out = {"click": p[:, 0], "like": p[:, 1]}
        if self.esmm:
            out["like_given_click"] = self._cvr(data, batch_size)
        return out

    def _cvr(self, data: TensorData, batch_size: int) -> np.ndarray:
        """p(like | click) from ESMM's CVR tower (their forward keeps it internal)."""
        from deepctr_torch.inputs import combined_dnn_input

        m = self.model.eval()
        x, parts = data.x.float(), []
        for start in range(0, len(x), batch_size):
            sparse, dense = m.input_from_feature_columns(x[start:start + batch_size], m.dnn_feature_columns,
                                                         m.embedding_dict)
            h = combined_dnn_input(sparse, dense)
            parts.append(m.out(m.cvr_dnn_final_layer(m.cvr_dnn(h))))
        return torch.cat(parts).squeeze(1).double().numpy()


RUNNERS = {"rechub": RechubRunner, "deepctr": DeepctrRunner}


def make_runner(peer: str, arch: str, schema: Schema, train: TensorData, *, seed: int, batch_size: int = 1024,
                spec: PeerSpec = PeerSpec(), quiet: bool = True) -> RechubRunner | DeepctrRunner:
    """The runner of `peer` (``rechub`` or ``deepctr``) for architecture `arch`."""
    if peer not in RUNNERS:
        raise ValueError(f"unknown peer {peer!r}; choose one of {', '.join(PEERS)}")
    return RUNNERS[peer](arch, schema, train, seed=seed, batch_size=batch_size, spec=spec, quiet=quiet)


def peer_versions() -> dict[str, str]:
    """Installed versions of the peer libraries."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch-rechub", "deepctr-torch", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
