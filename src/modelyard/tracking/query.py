"""The run search language: a hand-written tokenizer and parser into SQLAlchemy.

Filter::

    metrics.auc > 0.9 and params.max_depth = "6" and tags.team = 'x'
    and attributes.status = "FINISHED" and metrics.`val.loss`.min < 0.2

A clause is ``<kind>.<key>[.<agg>] <op> <value>`` with kind ``metrics``, ``params``,
``tags`` or ``attributes``; ops ``= != < <= > >=``; clauses joined by ``and``. Metric
clauses compare the latest value (``.min``/``.max`` pick the summary's min or max) with
a number; params and tags compare with a quoted string. Keys containing dots are written
in backquotes. Order by: ``<field> [asc|desc], ...`` with the same fields.

Values only ever become bound parameters; nothing is formatted into SQL. A syntax error
raises :class:`InvalidInput` naming the position (0-based character offset).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.sql.elements import UnaryExpression

from modelyard.errors import InvalidInput
from modelyard.tracking.store import MetricSummaryRow, ParamRow, RunRow, TagRow

_KINDS = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
_ATTRIBUTES = {"status", "name", "created_by", "id", "run_id", "start_time", "end_time"}
_TIME_ATTRIBUTES = {"start_time", "end_time"}
_AGGREGATES = ("latest", "min", "max")
_OPS = ("<=", ">=", "!=", "=", "<", ">")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/:]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|nan)", re.I)


@dataclass(frozen=True)
class Field:
    kind: str  # metrics | params | tags | attributes
    key: str
    aggregate: str = "latest"  # metrics only


@dataclass(frozen=True)
class Clause:
    field: Field
    op: str
    value: str | float
    position: int


class _Scanner:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def error(self, message: str, pos: int | None = None) -> InvalidInput:
        at = self.pos if pos is None else pos
        return InvalidInput(
            f"{self.what}: {message} at position {at}: {self.text[:at]!s}⟨here⟩{self.text[at:]}",
            details={"position": at},
        )

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0)

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def field(self) -> Field:
        self.skip_space()
        start = self.pos
        word = self.match(_WORD)
        if word is None or word.lower() not in _KINDS:
            raise self.error(
                "expected metrics.<key>, params.<key>, tags.<key> or attributes.<name>", start
            )
        kind = _KINDS[word.lower()]
        if not self.peek("."):
            raise self.error(f"expected '.' after {word!r}")
        self.pos += 1
        aggregate = "latest"
        if self.peek("`"):
            end = self.text.find("`", self.pos + 1)
            if end < 0:
                raise self.error("unterminated `key`")
            key = self.text[self.pos + 1 : end]
            self.pos = end + 1
            if kind == "metrics" and self.peek("."):
                self.pos += 1
                agg = self.match(_WORD)
                if agg is None or agg.lower() not in _AGGREGATES:
                    raise self.error("expected latest, min or max after '.'")
                aggregate = agg.lower()
        else:
            key_start = self.pos
            raw = self.match(_KEY)
            if raw is None:
                raise self.error("expected a key")
            key = raw
            if kind == "metrics":
                head, _, tail = raw.rpartition(".")
                if head and tail.lower() in _AGGREGATES:
                    key, aggregate = head, tail.lower()
            if not key:
                raise self.error("expected a key", key_start)
        if not key or len(key) > 250:
            raise self.error("a key must have 1 to 250 characters", start)
        if kind == "attributes" and key not in _ATTRIBUTES:
            raise self.error(
                f"unknown attribute {key!r} (known: {', '.join(sorted(_ATTRIBUTES))})", start
            )
        return Field(kind, key, aggregate)

    def op(self) -> str:
        self.skip_space()
        for op in _OPS:
            if self.peek(op):
                self.pos += len(op)
                return "=" if op == "==" else op
        raise self.error(f"expected one of {' '.join(_OPS)}")

    def value(self) -> tuple[str | float, int]:
        self.skip_space()
        start = self.pos
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            quote = self.text[self.pos]
            end = self.text.find(quote, self.pos + 1)
            if end < 0:
                raise self.error("unterminated string")
            self.pos = end + 1
            return self.text[start + 1 : end], start
        number = self.match(_NUMBER)
        if number is None:
            raise self.error("expected a number or a quoted string")
        return float(number), start


def parse_filter(text: str) -> list[Clause]:
    """Parse a filter into clauses (empty text: no clauses)."""
    s = _Scanner(text, "filter")
    clauses: list[Clause] = []
    if s.at_end():
        return clauses
    while True:
        s.skip_space()
        start = s.pos
        field = s.field()
        op = s.op()
        value, value_pos = s.value()
        if field.kind == "metrics" and not isinstance(value, float):
            raise s.error(f"metrics.{field.key} compares with a number, not a string", value_pos)
        if field.kind in ("params", "tags") and not isinstance(value, str):
            raise s.error(f"{field.kind}.{field.key} compares with a quoted string", value_pos)
        if field.kind == "attributes":
            if field.key in _TIME_ATTRIBUTES and not isinstance(value, float):
                raise s.error(f"attributes.{field.key} compares with milliseconds", value_pos)
            if field.key not in _TIME_ATTRIBUTES and not isinstance(value, str):
                raise s.error(f"attributes.{field.key} compares with a quoted string", value_pos)
        clauses.append(Clause(field, op, value, start))
        if s.at_end():
            return clauses
        word_at = s.pos
        word = s.match(_WORD)
        if word is None or word.lower() != "and":
            raise s.error("expected 'and' (only 'and' joins clauses)", word_at)
        if s.at_end():
            raise s.error("expected a clause after 'and'")


def parse_order_by(text: str) -> list[tuple[Field, bool]]:
    """Parse ``field [asc|desc], ...`` into (field, descending) pairs."""
    s = _Scanner(text, "order_by")
    out: list[tuple[Field, bool]] = []
    if s.at_end():
        return out
    while True:
        field = s.field()
        descending = False
        s.skip_space()
        at = s.pos
        word = s.match(_WORD)
        if word is not None:
            if word.lower() not in ("asc", "desc"):
                raise s.error("expected asc, desc or ','", at)
            descending = word.lower() == "desc"
        out.append((field, descending))
        if s.at_end():
            return out
        if not s.peek(","):
            raise s.error("expected ','")
        s.pos += 1


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return column == value  # type: ignore[no-any-return]
    if op == "!=":
        return column != value  # type: ignore[no-any-return]
    if op == "<":
        return column < value  # type: ignore[no-any-return]
    if op == "<=":
        return column <= value  # type: ignore[no-any-return]
    if op == ">":
        return column > value  # type: ignore[no-any-return]
    return column >= value  # type: ignore[no-any-return]


def _attribute_column(key: str) -> Any:
    return getattr(RunRow, "id" if key == "run_id" else key)


def _ms_to_datetime(ms: float) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    except (OverflowError, ValueError, OSError) as exc:
        raise InvalidInput(f"filter: {ms} is not a time in milliseconds") from exc


def _metric_column(aggregate: str) -> Any:
    return {
        "latest": MetricSummaryRow.latest,
        "min": MetricSummaryRow.min,
        "max": MetricSummaryRow.max,
    }[aggregate]


def to_condition(clause: Clause) -> ColumnElement[bool]:
    """One clause as a condition on ``RunRow`` (a correlated EXISTS for params/metrics/tags)."""
    f = clause.field
    if f.kind == "attributes":
        value: Any = clause.value
        if f.key in _TIME_ATTRIBUTES:
            value = _ms_to_datetime(float(clause.value))
        return _compare(_attribute_column(f.key), clause.op, value)
    if f.kind == "metrics":
        value = float(clause.value)
        if value != value:  # NaN: no stored value compares with it
            raise InvalidInput(f"filter: metrics.{f.key} cannot be compared with NaN")
        return exists(
            select(1).where(
                MetricSummaryRow.run_id == RunRow.id,
                MetricSummaryRow.key == f.key,
                _compare(_metric_column(f.aggregate), clause.op, value),
            )
        )
    table: Any = ParamRow if f.kind == "params" else TagRow
    return exists(
        select(1).where(
            table.run_id == RunRow.id,
            table.key == f.key,
            _compare(table.value, clause.op, clause.value),
        )
    )


def filter_condition(text: str) -> ColumnElement[bool] | None:
    clauses = parse_filter(text)
    if not clauses:
        return None
    return and_(*(to_condition(c) for c in clauses))


def order_terms(text: str) -> list[UnaryExpression[Any]]:
    """ORDER BY terms (missing values last); runs are then ordered newest first by id."""
    terms: list[UnaryExpression[Any]] = []
    for f, descending in parse_order_by(text):
        column: Any
        if f.kind == "attributes":
            column = _attribute_column(f.key)
        elif f.kind == "metrics":
            column = (
                select(_metric_column(f.aggregate))
                .where(MetricSummaryRow.run_id == RunRow.id, MetricSummaryRow.key == f.key)
                .scalar_subquery()
            )
        else:
            table: Any = ParamRow if f.kind == "params" else TagRow
            column = (
                select(table.value)
                .where(table.run_id == RunRow.id, table.key == f.key)
                .scalar_subquery()
            )
        terms.append((column.desc() if descending else column.asc()).nulls_last())
    return terms


@dataclass(frozen=True)
class LeadingMetric:
    """The first ORDER BY term when it is a metric: search walks that metric's summary
    index in order instead of sorting every matching run (see ``service.search_runs``)."""

    key: str
    column: Any  # MetricSummaryRow.latest / .min / .max
    descending: bool


def leading_metric(text: str) -> LeadingMetric | None:
    order = parse_order_by(text)
    if not order or order[0][0].kind != "metrics":
        return None
    field, descending = order[0]
    return LeadingMetric(field.key, _metric_column(field.aggregate), descending)
