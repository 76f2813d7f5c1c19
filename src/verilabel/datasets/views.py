"""Views: which samples of a dataset to look at, as a value object and as a one-line expression.

Expression grammar (clauses joined by ``;``, all must hold)::

    tags=a,b                    samples with any of these tags
    ids=1,2,3                   these sample ids
    has=FIELD / missing=FIELD   samples with / without labels in FIELD
    FIELD.label=car,dog         samples with a FIELD label of one of these classes
    FIELD.tags=needs-fix        samples with a FIELD label carrying one of these tags
    FIELD.confidence>=0.5       samples with a FIELD label at or above 0.5 (also >, <=, <)

Clauses on the same field describe one label: ``gt.label=car; gt.confidence>=0.9`` means a confident car.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, not_, or_, select

from verilabel.errors import ConfigError
from verilabel.store import json_lists
from verilabel.store.schema import LabelFieldRow, LabelRow, SampleRow, SampleTagRow


@dataclass
class LabelFilter:
    field: str
    present: bool = True
    classes: list[str] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    min_confidence: float | None = None
    max_confidence: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False


@dataclass
class View:
    tags: list[str] = dataclasses.field(default_factory=list)
    ids: list[int] | None = None
    labels: list[LabelFilter] = dataclasses.field(default_factory=list)

    @classmethod
    def parse(cls, expression: str) -> View:
        return parse_view(expression)

    def sample_ids_query(self, dataset_id: int) -> Select[Any]:
        """A query of the matching sample ids, ordered by id."""
        query = select(SampleRow.id).where(SampleRow.dataset_id == dataset_id)
        if self.ids is not None:
            query = query.where(SampleRow.id.in_(self.ids))
        if self.tags:
            query = query.where(exists().where(SampleTagRow.sample_id == SampleRow.id, SampleTagRow.tag.in_(self.tags)))
        for flt in self.labels:
            conditions = [
                LabelRow.sample_id == SampleRow.id,
                LabelFieldRow.id == LabelRow.field_id,
                LabelFieldRow.dataset_id == dataset_id,
                LabelFieldRow.name == flt.field,
            ]
            if flt.classes:
                conditions.append(LabelRow.label.in_(flt.classes))
            if flt.tags:
                conditions.append(or_(*(json_lists.contains(LabelRow.tags, tag) for tag in flt.tags)))
            if flt.min_confidence is not None:
                conditions.append(
                    LabelRow.confidence > flt.min_confidence
                    if flt.min_exclusive
                    else LabelRow.confidence >= flt.min_confidence
                )
            if flt.max_confidence is not None:
                conditions.append(
                    LabelRow.confidence < flt.max_confidence
                    if flt.max_exclusive
                    else LabelRow.confidence <= flt.max_confidence
                )
            has_label = exists().where(and_(*conditions))
            query = query.where(has_label if flt.present else not_(has_label))
        return query.order_by(SampleRow.id)


_CLAUSE = re.compile(r"^\s*(?P<key>[A-Za-z_][\w.-]*)\s*(?P<op>>=|<=|=|>|<)\s*(?P<value>.*?)\s*$")
_HELP = (
    "write clauses like `tags=a,b`, `ids=1,2`, `has=FIELD`, `missing=FIELD`, `FIELD.label=car,dog`, "
    "`FIELD.tags=needs-fix`, `FIELD.confidence>=0.5`, joined by `;`"
)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_view(expression: str, *, option: str = "view") -> View:
    view = View()
    by_field: dict[str, LabelFilter] = {}

    def label_filter(name: str) -> LabelFilter:
        if name not in by_field:
            by_field[name] = LabelFilter(field=name)
            view.labels.append(by_field[name])
        return by_field[name]

    for clause in filter(str.strip, expression.split(";")):
        match = _CLAUSE.match(clause)
        if not match:
            raise ConfigError(option, f"cannot read clause {clause.strip()!r}: {_HELP}")
        key, op, value = match["key"], match["op"], match["value"]
        if key in ("tags", "ids", "has", "missing") and op != "=":
            raise ConfigError(option, f"{key!r} takes `=`, not {op!r}: {_HELP}")
        if key == "tags":
            view.tags.extend(_split(value))
        elif key == "ids":
            try:
                view.ids = (view.ids or []) + [int(v) for v in _split(value)]
            except ValueError:
                raise ConfigError(option, f"sample ids are integers, got {value!r}") from None
        elif key in ("has", "missing"):
            label_filter(value).present = key == "has"
        elif key.endswith(".label") and op == "=":
            label_filter(key.removesuffix(".label")).classes.extend(_split(value))
        elif key.endswith(".tags") and op == "=":
            label_filter(key.removesuffix(".tags")).tags.extend(_split(value))
        elif key.endswith(".confidence") and op != "=":
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(option, f"confidence must be a number, got {value!r}") from None
            flt = label_filter(key.removesuffix(".confidence"))
            if op.startswith(">"):
                flt.min_confidence, flt.min_exclusive = number, op == ">"
            else:
                flt.max_confidence, flt.max_exclusive = number, op == "<"
        else:
            raise ConfigError(option, f"unknown clause {clause.strip()!r}: {_HELP}")
    return view
