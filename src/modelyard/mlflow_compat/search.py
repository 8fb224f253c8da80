"""MLflow run-search filters and orderings, rewritten into modelyard's query language.

Supported (MLflow's common subset)::

    metrics.rmse < 0.5 AND params.alpha = '0.1' AND tags."team name" != 'x'
    AND attributes.status = 'FINISHED' AND attributes.start_time > 1700000000000

Keys may be bare, in backquotes or in double quotes; strings in single or double quotes;
comparators ``= != < <= > >=``; clauses joined by ``AND`` (any case). ``LIKE``,
``ILIKE``, ``IN``, ``IS``, ``OR``, datasets and the attributes modelyard does not keep are
refused with an error naming what is supported. Each clause is re-emitted with its key
in backquotes, so the modelyard parser sees exactly the key MLflow meant.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from modelyard.mlflow_compat.errors import MlflowError, invalid
from modelyard.server import jsonbody

_KINDS = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
# MLflow attribute -> modelyard attribute
_ATTRIBUTES = {
    "status": "status",
    "run_name": "name",
    "run_id": "run_id",
    "run_uuid": "run_id",
    "user_id": "created_by",
    "start_time": "start_time",
    "end_time": "end_time",
}
_TIME_ATTRIBUTES = {"start_time", "end_time"}
_COMPARATORS = ("<=", ">=", "!=", "==", "=", "<", ">")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/:]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
SUPPORTED = (
    "supported: metrics.<key>, params.<key>, tags.<key> and attributes."
    f"{{{','.join(sorted(_ATTRIBUTES))}}} compared with = != < <= > >=, joined by AND"
)


class _Scanner:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def fail(self, message: str) -> MlflowError:
        return invalid(f"{self.what} {self.text!r}: {message} at position {self.pos}; {SUPPORTED}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0)

    def quoted(self, quotes: str) -> str | None:
        self.skip()
        if self.pos >= len(self.text) or self.text[self.pos] not in quotes:
            return None
        quote = self.text[self.pos]
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self.fail("unterminated quote")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def field(self) -> tuple[str, str]:
        """``(kind, key)`` with kind metrics|params|tags|attributes (attributes mapped)."""
        word = self.match(_WORD)
        if word is None:
            raise self.fail("expected an identifier such as metrics.<key>")
        kind = _KINDS.get(word.lower())
        if kind is None:
            if word.lower() in _ATTRIBUTES:  # MLflow allows bare attribute names
                return "attributes", _ATTRIBUTES[word.lower()]
            raise self.fail(f"unknown identifier type {word!r}")
        if not self.text.startswith(".", self.pos):
            raise self.fail(f"expected '.' after {word!r}")
        self.pos += 1
        key = self.quoted('`"')
        if key is None:
            key = self.match(_BARE_KEY)
        if not key:
            raise self.fail("expected a key")
        if "`" in key:
            raise self.fail(f"key {key!r} contains a backquote")
        if kind == "attributes":
            if key not in _ATTRIBUTES:
                raise self.fail(f"unsupported attribute {key!r}")
            return kind, _ATTRIBUTES[key]
        return kind, key

    def comparator(self) -> str:
        self.skip()
        for op in _COMPARATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return "=" if op == "==" else op
        word = self.match(_WORD)
        raise self.fail(f"unsupported comparator {word!r}" if word else "expected a comparator")


def _field_text(kind: str, key: str) -> str:
    return f"attributes.{key}" if kind == "attributes" else f"{kind}.`{key}`"


def translate_filter(text: str | None) -> str:
    """An MLflow ``filter`` as a modelyard filter (``""`` for none)."""
    s = _Scanner(text or "", "filter")
    clauses: list[str] = []
    while not s.at_end():
        if clauses:
            word = s.match(_WORD)
            if word is None or word.lower() != "and":
                raise s.fail("expected AND between clauses (OR is not supported)")
        kind, key = s.field()
        op = s.comparator()
        string = s.quoted("'\"")
        if string is not None:
            if kind == "metrics" or (kind == "attributes" and key in _TIME_ATTRIBUTES):
                raise s.fail(f"{kind}.{key} compares with a number, not a string")
            if "'" in string and '"' in string:
                raise s.fail("a value cannot contain both kinds of quote")
            quote = '"' if "'" in string else "'"
            clauses.append(f"{_field_text(kind, key)} {op} {quote}{string}{quote}")
            continue
        number = s.match(_NUMBER)
        if number is None:
            raise s.fail("expected a number or a quoted string")
        if kind in ("params", "tags") or (kind == "attributes" and key not in _TIME_ATTRIBUTES):
            raise s.fail(f"{kind}.{key} compares with a quoted string")
        clauses.append(f"{_field_text(kind, key)} {op} {number}")
    return " and ".join(clauses)


def translate_order_by(items: list[str]) -> str:
    """MLflow ``order_by`` entries (``"metrics.rmse DESC"``) as a modelyard order_by."""
    terms = []
    for item in items:
        s = _Scanner(item, "order_by")
        kind, key = s.field()
        direction = "asc"
        word = s.match(_WORD)
        if word is not None:
            if word.lower() not in ("asc", "desc"):
                raise s.fail(f"expected ASC or DESC, not {word!r}")
            direction = word.lower()
        if not s.at_end():
            raise s.fail("unexpected text")
        terms.append(f"{_field_text(kind, key)} {direction}")
    return ", ".join(terms)


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str | None) -> int:
    """The offset an opaque page token stands for (0 for none)."""
    if not token:
        return 0
    try:
        offset = jsonbody.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid(f"page_token {token[:50]!r} is not one this server issued") from None
    if not isinstance(offset, int) or not 0 <= offset < 2**31:
        raise invalid(f"page_token {token[:50]!r} is not one this server issued")
    return offset
