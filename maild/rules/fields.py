"""Type checks for single TOML values of a rule file, shared by conditions and actions.

Each helper takes the raw value `tomllib` produced and returns it typed, or raises
`FieldError` with a short message; the loader adds the file, rule and field in
front. Nothing here knows about files, messages or decisions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable


class FieldError(ValueError):
    """One bad value; the message says what is wrong, not where."""


def type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return names.get(type(value), "table" if isinstance(value, dict) else type(value).__name__)


def expect_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"expected true or false, got {type_name(value)}")
    return value


def expect_str(value: object) -> str:
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {type_name(value)}")
    return value


def expect_nonempty_str(value: object) -> str:
    text = expect_str(value).strip()
    if not text:
        raise FieldError("must not be empty")
    return text


def expect_str_list(value: object) -> tuple[str, ...]:
    """A string or a non-empty array of non-empty strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise FieldError(f"expected a string or an array of strings, got {type_name(value)}")
    if not value:
        raise FieldError("must not be an empty array")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise FieldError(f"item {i + 1}: expected a non-empty string, got {item!r}")
        out.append(item.strip())
    return tuple(out)


def expect_table(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise FieldError(f"expected a table, got {type_name(value)}")
    return value


def expect_choice(value: object, choices: Iterable[str]) -> str:
    text = expect_str(value)
    options = tuple(choices)
    if text not in options:
        raise FieldError(f"expected one of {', '.join(options)}, got {text!r}")
    return text


def expect_known(value: object, known: Iterable[str], what: str) -> str:
    text = expect_nonempty_str(value)
    names = sorted(known)
    if text not in names:
        listed = ", ".join(names) or "none"
        raise FieldError(f"unknown {what} {text!r} (known: {listed})")
    return text


def compile_regex(value: object) -> re.Pattern[str]:
    pattern = expect_nonempty_str(value)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FieldError(f"invalid regex: {exc}") from None


def compile_globs(value: object) -> tuple[re.Pattern[str], ...]:
    """Case-insensitive shell-style globs (`*@bigcorp.com`), compiled once."""
    return tuple(re.compile(fnmatch.translate(p.lower())) for p in expect_str_list(value))
