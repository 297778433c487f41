"""Checks on a raw request body that must happen before FastAPI parses it (pure functions; the
middleware calls them).

Python's ``json`` module, which FastAPI parses bodies with, accepts ``NaN``, ``Infinity`` and
``-Infinity`` and turns ``1e999`` into infinity; a non-finite number that reaches a model fails
validation, but FastAPI then cannot serialise the error (JSON has no NaN) and answers 500. Bodies
nested too deeply or with integers of thousands of digits make ``json.loads`` raise errors FastAPI
answers 400 for. :func:`body_problems` finds all of these and names the field, so the service
answers 422 in FastAPI's own validation shape. It parses only bodies that may hold such a value (a
cheap byte scan first): an ordinary body costs one regular-expression search.
"""

from __future__ import annotations

import functools
import json
import re
from email.message import Message
from typing import Any

_SUSPECT = re.compile(rb"NaN|Infinity|[eE]\+?\d{3}|\d{300}")
_NESTING_SUSPECT = 64  # brackets in a body before its nesting is checked by a full parse


class _NonFinite:
    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else _NonFinite(text)


@functools.lru_cache(maxsize=256)  # parsing the header costs more than the rest of a check
def is_json_content_type(value: str | None) -> bool:
    """``application/json`` or any ``application/*+json`` (parameters such as charset allowed)."""
    if not value:
        return False
    message = Message()
    message["content-type"] = value
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _error(kind: str, loc: tuple[str | int, ...], msg: str, given: Any) -> dict[str, Any]:
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": given}


def _walk(value: Any, loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    if isinstance(value, _NonFinite):
        return [
            _error(
                "finite_number",
                loc,
                f"Input should be a finite number; {value.text} is not one (send a JSON number "
                "within the field's documented bounds)",
                value.text,
            )
        ]
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_walk(item, (*loc, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_walk(item, (*loc, index)))
    return found


def body_problems(body: bytes) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's 422 ``detail`` items) for non-finite numbers, integers too
    long to parse, nesting too deep to parse and bytes that are not UTF-8; empty for every other
    body, including malformed JSON (FastAPI reports that itself)."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [_error("json_invalid", (), f"the body is not UTF-8 ({exc.reason})", None)]
    if not _SUSPECT.search(body) and body.count(b"[") + body.count(b"{") < _NESTING_SUSPECT:
        return []
    try:
        data = json.loads(body, parse_constant=_NonFinite, parse_float=_parse_float)
    except json.JSONDecodeError:
        return []
    except RecursionError:
        return [_error("json_invalid", (), "JSON nested too deeply; flatten the body", None)]
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        return [_error("json_invalid", (), f"JSON number out of range ({exc})", None)]
    return _walk(data, ())
