"""The feature layout shared by data, models and serving.

A prepared data set is a set of rows (impressions). Every model input is a categorical id; a
row's inputs are packed side by side into one integer tensor `x` of shape [N, W], and each
`Field` owns a contiguous slice of its columns:

    x = [ f_user_id | f_user_age | ... | f_item_id | f_item_genres (width 6) | f_query_id | ... ]

Reserved ids, the same in every vocabulary:
    0  PAD / NONE  padding of multi-valued fields; "no query item" for a user's first event
    1  OOV         a value not seen in the training rows (cold-start users, new items)
    2… known values, in sorted order of the raw value

Fields that share a `vocab` (the candidate item and the query item) may share one embedding
table. Labels are a float tensor `y` [N, T] in the order of `Schema.tasks`; NaN marks a label
that is missing on a row (rating on a negative) and adds no loss.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

PAD = 0
OOV = 1
FIRST_ID = 2

Side = Literal["user", "item", "query", "context"]
SIDES: tuple[str, ...] = ("user", "item", "query", "context")

#: Tasks every data set may carry, with their kind. Binary tasks are trained with a logistic
#: loss; regression tasks with squared error.
TASK_KINDS: dict[str, str] = {
    "click": "binary",
    "like": "binary",
    "rating": "regression",
    "watch": "regression",
}


@dataclass(frozen=True)
class Field:
    """One categorical input.

    Attributes:
        name: column name in the prepared parquet files, e.g. ``"f_item_genres"``.
        side: whose attribute it is: ``user``, candidate ``item``, ``query`` item or ``context``.
        vocab: vocabulary name; fields with the same vocab index the same ids.
        size: number of ids including the reserved ones (so valid ids are ``0 <= id < size``).
        width: columns in ``x``; ``> 1`` for a multi-valued field padded with ``PAD``.
    """

    name: str
    side: Side
    vocab: str
    size: int
    width: int = 1


@dataclass(frozen=True)
class Schema:
    """Layout of ``x`` and ``y`` for one prepared data set.

    Attributes:
        fields: input fields, in column order of ``x``.
        tasks: label names, in column order of ``y`` (a subset of ``TASK_KINDS``).
        num_positions: slate positions (ids ``1..num_positions``; 0 = unknown); 0 when the data
            set has no positions (MovieLens).
        dataset: name of the data set the schema was built from.
    """

    fields: tuple[Field, ...]
    tasks: tuple[str, ...]
    num_positions: int = 0
    dataset: str = ""
    _offsets: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        start = 0
        for f in self.fields:
            self._offsets[f.name] = start
            start += f.width

    @property
    def width(self) -> int:
        """Total number of columns W of ``x``."""
        return sum(f.width for f in self.fields)

    def slice(self, name: str) -> slice:
        """Columns of ``x`` that hold field ``name``."""
        f = self.field(name)
        start = self._offsets[name]
        return slice(start, start + f.width)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.fields)
        raise KeyError(f"no field {name!r} in schema of {self.dataset or 'data set'} (fields: {known})")

    def side(self, side: str) -> tuple[Field, ...]:
        """Fields of one side, in column order."""
        return tuple(f for f in self.fields if f.side == side)

    def task_index(self, task: str) -> int:
        return self.tasks.index(task)

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Size of each vocabulary (the largest size among the fields that use it)."""
        sizes: dict[str, int] = {}
        for f in self.fields:
            sizes[f.vocab] = max(sizes.get(f.vocab, 0), f.size)
        return sizes

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "fields": [asdict(f) for f in self.fields],
            "tasks": list(self.tasks),
            "num_positions": self.num_positions,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Schema:
        return cls(
            fields=tuple(Field(**f) for f in obj["fields"]),
            tasks=tuple(obj["tasks"]),
            num_positions=int(obj.get("num_positions", 0)),
            dataset=str(obj.get("dataset", "")),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
