"""Data-quality rules and their evaluation in one streaming scan.

Rules are pydantic models, a union discriminated on ``type``, so they travel as JSON
(``{"type": "range", "column": "age", "min": 0}``) and are validated at the boundary.
:func:`run_checks` evaluates every row-wise rule in a single ``SELECT`` with one
``count_if`` per rule; each uniqueness rule needs its own ``GROUP BY`` query.

Null handling: ``completeness`` counts nulls. ``range``, ``allowed_values`` and ``regex``
never count a null as a failure (pair them with ``completeness`` to require values), and
``uniqueness`` ignores rows whose key has a null (as SQL ``UNIQUE`` constraints do). A
``sql`` predicate that evaluates to null on a row fails that row.

User SQL (the ``sql`` rule) runs only inside the sandboxed session of
:func:`~modelyard.data.formats.duckdb_session`: no file, network or extension access and
a locked configuration, so a predicate can read the dataset and nothing else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from modelyard.core.schema import Schema
from modelyard.data.formats import (
    DataSource,
    DuckSession,
    check_sql_expression,
    duckdb_session,
    quote_ident,
)
from modelyard.errors import InvalidInput

Severity = Literal["error", "warning"]
RuleValue = str | int | float | bool


class _RuleBase(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, max_length=200, description="Shown in reports; defaults to a summary."
    )
    severity: Severity = Field("error", description="Only failing 'error' rules fail the report.")


class CompletenessRule(_RuleBase):
    """At least ``min_ratio`` of the rows have a non-null ``column`` (NaN is a value)."""

    type: Literal["completeness"] = "completeness"
    column: str
    min_ratio: float = Field(1.0, ge=0.0, le=1.0)


class UniquenessRule(_RuleBase):
    """No two rows share the same values of ``columns``; failing rows are all rows of the
    duplicated groups. Rows with a null in any of ``columns`` are ignored."""

    type: Literal["uniqueness"] = "uniqueness"
    columns: list[str] = Field(min_length=1, max_length=32)


class RangeRule(_RuleBase):
    """Non-null values of ``column`` lie between ``min`` and ``max`` (either may be omitted).

    Bounds are numbers, or ISO-8601 strings for date/timestamp columns. ``inclusive``
    applies to both ends. NaN is outside every range; nulls never fail.
    """

    type: Literal["range"] = "range"
    column: str
    min: float | int | str | None = None
    max: float | int | str | None = None
    inclusive: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("a range rule needs min, max or both")
        lo, hi = self.min, self.max
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            raise ValueError(f"min ({lo}) is greater than max ({hi})")
        return self


class AllowedValuesRule(_RuleBase):
    """Every non-null value of ``column`` is one of ``values``."""

    type: Literal["allowed_values"] = "allowed_values"
    column: str
    values: list[RuleValue] = Field(min_length=1, max_length=10_000)


class RegexRule(_RuleBase):
    """Every non-null value of ``column``, as text, fully matches ``pattern`` (RE2 syntax,
    DuckDB's ``regexp_full_match``: the whole value must match, not a substring)."""

    type: Literal["regex"] = "regex"
    column: str
    pattern: str = Field(min_length=1, max_length=10_000)


class SqlRule(_RuleBase):
    """Every row satisfies ``predicate``, one boolean SQL expression over the columns
    (DuckDB dialect; quote odd column names with double quotes). A row where it is false
    or null fails. No ``;``, comments or unbalanced parentheses."""

    type: Literal["sql"] = "sql"
    name: str = Field(min_length=1, max_length=200)
    predicate: str = Field(min_length=1, max_length=10_000)


Rule = Annotated[
    CompletenessRule | UniquenessRule | RangeRule | AllowedValuesRule | RegexRule | SqlRule,
    Field(discriminator="type"),
]


class RuleResult(Schema):
    """The outcome of one rule. ``failing_ratio`` is ``failing_rows / row_count`` (0 when
    the dataset is empty); ``message`` says what failed in words."""

    rule: Rule
    name: str
    passed: bool
    failing_rows: int
    failing_ratio: float
    message: str


class QualityReport(Schema):
    """All results, in the order the rules were given; ``passed`` is false if any rule with
    severity ``error`` failed (failing ``warning`` rules are reported but do not count)."""

    passed: bool
    row_count: int
    results: list[RuleResult]


def rule_name(rule: Rule) -> str:
    """The rule's ``name``, or a short summary such as ``range(age)``."""
    if rule.name:
        return rule.name
    if isinstance(rule, UniquenessRule):
        return f"uniqueness({', '.join(rule.columns)})"
    assert not isinstance(rule, SqlRule)  # its name is required
    return f"{rule.type}({rule.column})"


def _columns(rule: Rule) -> list[str]:
    if isinstance(rule, UniquenessRule):
        return rule.columns
    if isinstance(rule, SqlRule):
        return []
    return [rule.column]


def _failure_expr(rule: Rule, session: DuckSession) -> tuple[str, list[object]]:
    """A SQL expression counting the rule's failing rows, and its bound parameters.

    Only identifiers (quoted) and, for ``sql`` rules, the checked predicate are spliced
    into the text; every value is a bound parameter.
    """
    if isinstance(rule, SqlRule):
        return f"count_if(NOT coalesce(({rule.predicate}), false))", []
    assert not isinstance(rule, UniquenessRule)
    col = quote_ident(rule.column)
    if isinstance(rule, CompletenessRule):
        return f"count_if({col} IS NULL)", []
    if isinstance(rule, RegexRule):
        return f"count_if(NOT regexp_full_match(CAST({col} AS VARCHAR), ?))", [rule.pattern]
    if isinstance(rule, AllowedValuesRule):
        marks = ", ".join("?" for _ in rule.values)
        return f"count_if(NOT ({col} IN ({marks})))", list(rule.values)
    low, high = (">=", "<=") if rule.inclusive else (">", "<")
    conds: list[str] = []
    params: list[object] = []
    if rule.min is not None:
        conds.append(f"{col} {low} ?")
        params.append(rule.min)
    if rule.max is not None:
        conds.append(f"{col} {high} ?")
        params.append(rule.max)
    inside = " AND ".join(conds)
    if session.kind(rule.column) == "float":
        # DuckDB orders NaN above every number, so `NaN >= min` would hold; NaN is in no range.
        inside = f"({inside}) AND NOT isnan({col})"
    # A null value makes the condition null, and count_if counts only true.
    return f"count_if(NOT ({inside}))", params


def _validate(rule: Rule, session: DuckSession) -> None:
    """Fail fast, naming the rule, before the scan (so one bad rule cannot hide in the
    combined query's error)."""
    label = f"rule {rule_name(rule)!r}"
    session.require_columns(_columns(rule), context=label)
    if isinstance(rule, RegexRule):
        session.rows(
            "SELECT regexp_full_match('', ?)",
            [rule.pattern],
            context=f"{label}: invalid regular expression {rule.pattern!r}",
        )
    elif isinstance(rule, SqlRule):
        check_sql_expression(rule.predicate, context=label)
        try:
            # In WHERE, DuckDB refuses aggregates and window functions, which have no
            # per-row meaning; LIMIT 0 binds the query without reading data.
            cursor = session.con.execute(
                f"SELECT ({rule.predicate}) FROM data WHERE ({rule.predicate}) IS NOT NULL LIMIT 0"
            )
        except Exception as exc:  # any DuckDB error: parser, binder, permission
            raise InvalidInput(
                f"{label}: predicate {rule.predicate!r} is not valid: {_message(exc)}"
            ) from exc
        result_type = str(cursor.description[0][1]) if cursor.description else "?"
        if result_type not in {"BOOLEAN", '"NULL"', "NULL"}:
            raise InvalidInput(
                f"{label}: predicate {rule.predicate!r} must be a boolean expression; "
                f"it yields {result_type}"
            )


def _message(exc: BaseException) -> str:
    return str(exc).strip().split("\n\n")[0].strip()


def run_checks(src: DataSource, rules: list[Rule]) -> QualityReport:
    """Evaluate ``rules`` against ``src`` and report each one's failing rows.

    One scan evaluates all rules except uniqueness, which takes one grouped scan per
    rule. Raises InvalidInput before scanning for an unknown column (listing the
    available ones), an invalid regex, or a ``sql`` predicate that is not a single valid
    boolean expression (naming the predicate and DuckDB's message); and during the scan
    when a value cannot be compared with a bound (naming the rule).
    """
    # Sessions running caller SQL must read through Arrow, never with file access.
    trusted = not any(isinstance(r, SqlRule) for r in rules)
    with duckdb_session(src, trusted_sql_only=trusted) as session:
        for rule in rules:
            _validate(rule, session)
        row_count, failing = _scan(session, rules)
        for i, rule in enumerate(rules):
            if isinstance(rule, UniquenessRule):
                failing[i] = _duplicate_rows(session, rule)
    results = [_result(rule, failing[i], row_count) for i, rule in enumerate(rules)]
    return QualityReport(
        passed=all(r.passed or r.rule.severity == "warning" for r in results),
        row_count=row_count,
        results=results,
    )


def _scan(session: DuckSession, rules: list[Rule]) -> tuple[int, dict[int, int]]:
    exprs = ["count(*)"]
    params: list[object] = []
    slots: dict[int, int] = {}
    for i, rule in enumerate(rules):
        if isinstance(rule, UniquenessRule):
            continue
        expr, p = _failure_expr(rule, session)
        slots[i] = len(exprs)
        exprs.append(expr)
        params.extend(p)
    sql = f"SELECT {', '.join(exprs)} FROM data"
    try:
        row = session.con.execute(sql, params or None).fetchone()
    except Exception as exc:
        # Find the rule whose evaluation fails on this data (a bound that cannot be cast
        # to the column's type, a predicate that errors on some row) and name it.
        for i in slots:
            expr, p = _failure_expr(rules[i], session)
            session.rows(
                f"SELECT {expr} FROM data",
                p,
                context=f"rule {rule_name(rules[i])!r} could not be evaluated",
            )
        raise InvalidInput(
            f"the data-quality checks could not be evaluated: {_message(exc)}"
        ) from exc
    assert row is not None  # an aggregate without GROUP BY returns one row
    return int(row[0]), {i: int(row[slot] or 0) for i, slot in slots.items()}


def _duplicate_rows(session: DuckSession, rule: UniquenessRule) -> int:
    keys = ", ".join(quote_ident(c) for c in rule.columns)
    not_null = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in rule.columns)
    sql = (
        "SELECT coalesce(sum(n), 0) FROM ("
        f"SELECT count(*) AS n FROM data WHERE {not_null} GROUP BY {keys} HAVING count(*) > 1)"
    )
    rows = session.rows(sql, context=f"rule {rule_name(rule)!r} could not be evaluated")
    return int(rows[0][0])


def _describe_bounds(rule: RangeRule) -> str:
    lo = "-inf" if rule.min is None else repr(rule.min)
    hi = "+inf" if rule.max is None else repr(rule.max)
    return f"[{lo}, {hi}]" if rule.inclusive else f"({lo}, {hi})"


def _result(rule: Rule, failing: int, row_count: int) -> RuleResult:
    ratio = failing / row_count if row_count else 0.0
    passed = failing == 0
    what: str
    if isinstance(rule, CompletenessRule):
        present = 1.0 - ratio
        passed = present >= rule.min_ratio
        what = (
            f"{failing} of {row_count} rows have no {rule.column!r} "
            f"({present:.2%} present; at least {rule.min_ratio:.2%} required)"
        )
    elif isinstance(rule, UniquenessRule):
        what = f"{failing} rows share their {rule.columns} value with another row"
    elif isinstance(rule, RangeRule):
        what = f"{failing} values of {rule.column!r} fall outside {_describe_bounds(rule)}"
    elif isinstance(rule, AllowedValuesRule):
        what = (
            f"{failing} values of {rule.column!r} are not among the "
            f"{len(rule.values)} allowed values"
        )
    elif isinstance(rule, RegexRule):
        what = f"{failing} values of {rule.column!r} do not fully match {rule.pattern!r}"
    else:
        what = f"{failing} rows do not satisfy {rule.predicate!r}"
    status = "passed" if passed else "failed"
    return RuleResult(
        rule=rule,
        name=rule_name(rule),
        passed=passed,
        failing_rows=failing,
        failing_ratio=ratio,
        message=f"{status}: {what}",
    )
