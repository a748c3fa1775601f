"""Split a macro file into its TOML front matter and body, and check the fields.

A macro file starts with a `+++` line, TOML metadata, a closing `+++` line,
then the Jinja2 body (format in docs/macros.md). Every problem becomes one
`TemplateError` line naming the file, the field and, where known, the line.
This module reads no files and compiles no templates (see loader/sandbox).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from maild.errors import TemplateError
from maild.macros.model import LANGUAGE_RE, NAME_RE, STATUSES, Macro, MacroActions

FENCE = "+++"
REQUIRED_KEYS: tuple[str, ...] = ("name", "title", "language")
STRING_KEYS: tuple[str, ...] = ("name", "title", "language", "description", "subject")
LIST_KEYS: tuple[str, ...] = ("tags", "keywords")
BOOL_KEYS: tuple[str, ...] = ("acknowledgement",)
TOP_KEYS: frozenset[str] = frozenset({*STRING_KEYS, *LIST_KEYS, *BOOL_KEYS, "actions"})
ACTION_KEYS: frozenset[str] = frozenset({"status", "tags"})

_TOML_LINE_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def file_error(path: Path, field: str, problem: str, line: int | None = None) -> TemplateError:
    """`path:line: field: problem` (line omitted when unknown), on one line."""
    where = f"{path}:{line}" if line is not None else str(path)
    return TemplateError(f"{where}: {field}: {' '.join(problem.split())}")


@dataclass(frozen=True)
class SplitFile:
    """The raw parts of a macro file; `body_line` is the body's first file line."""

    header: str
    body: str
    body_line: int


def split_front_matter(path: Path, text: str) -> SplitFile:
    """Cut `text` at its `+++` fences; raise TemplateError if they are missing."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != FENCE:
        raise file_error(path, "front matter", f"the file must start with a '{FENCE}' line", 1)
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == FENCE:
            return SplitFile("".join(lines[1:index]), "".join(lines[index + 1 :]), index + 2)
    raise file_error(path, "front matter", f"no closing '{FENCE}' line", 1)


def parse_header(path: Path, header: str) -> dict[str, Any]:
    """The TOML front matter as a dict; TOML errors are reported at file lines."""
    try:
        return tomllib.loads(header)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_LINE_RE.search(message)
        line = int(found.group(1)) + 1 if found else None
        problem = f"bad TOML: {_TOML_LINE_RE.sub('', message)}"
        raise file_error(path, "front matter", problem, line) from None


def check_fields(path: Path, fields: dict[str, Any]) -> list[TemplateError]:
    """Every problem with the front matter keys and values."""
    errors = [file_error(path, key, "unknown key") for key in sorted(fields.keys() - TOP_KEYS)]
    errors += [
        file_error(path, key, "missing (required)") for key in REQUIRED_KEYS if key not in fields
    ]
    errors += [
        file_error(path, key, "must be a non-empty string")
        for key in STRING_KEYS
        if key in fields and not _is_text(fields[key])
    ]
    errors += [
        file_error(path, key, "must be a list of non-empty strings")
        for key in LIST_KEYS
        if key in fields and not _is_text_list(fields[key])
    ]
    errors += [
        file_error(path, key, "must be true or false")
        for key in BOOL_KEYS
        if key in fields and not isinstance(fields[key], bool)
    ]
    errors += _check_formats(path, fields)
    errors += _check_actions(path, fields.get("actions", {}))
    return errors


def _check_formats(path: Path, fields: dict[str, Any]) -> list[TemplateError]:
    errors = []
    name, language = fields.get("name"), fields.get("language")
    if _is_text(name) and not NAME_RE.fullmatch(name):
        errors.append(file_error(path, "name", f"{name!r} must be kebab-case (a-z, 0-9, -)"))
    if _is_text(language) and not LANGUAGE_RE.fullmatch(language):
        errors.append(
            file_error(path, "language", f"{language!r} must be a lower-case code like 'en'")
        )
    return errors


def _check_actions(path: Path, actions: Any) -> list[TemplateError]:
    if not isinstance(actions, dict):
        return [file_error(path, "actions", "must be a table ([actions])")]
    errors = [
        file_error(path, f"actions.{key}", "unknown key")
        for key in sorted(actions.keys() - ACTION_KEYS)
    ]
    status = actions.get("status")
    if status is not None and status not in STATUSES:
        errors.append(
            file_error(path, "actions.status", f"{status!r} is not one of {', '.join(STATUSES)}")
        )
    if "tags" in actions and not _is_text_list(actions["tags"]):
        errors.append(file_error(path, "actions.tags", "must be a list of non-empty strings"))
    return errors


def check_filename(path: Path, name: str, language: str) -> list[TemplateError]:
    """The file must be called `NAME.LANGUAGE.j2`, agreeing with the fields."""
    stem = path.name.removesuffix(".j2")
    file_name, dot, file_language = stem.rpartition(".")
    if not dot or path.suffix != ".j2":
        return [file_error(path, "filename", "must be NAME.LANGUAGE.j2, e.g. greeting.en.j2")]
    errors = []
    if name != file_name:
        problem = f"{name!r} does not match the file name (expected {file_name!r})"
        errors.append(file_error(path, "name", problem))
    if language != file_language:
        problem = f"{language!r} does not match the file name (expected {file_language!r})"
        errors.append(file_error(path, "language", problem))
    return errors


def build_macro(path: Path, fields: dict[str, Any], body: str) -> Macro:
    """The Macro for fields that passed `check_fields`."""
    actions = fields.get("actions", {})
    return Macro(
        name=fields["name"],
        language=fields["language"],
        title=fields["title"].strip(),
        tags=tuple(fields.get("tags", ())),
        description=" ".join(fields.get("description", "").split()),
        keywords=tuple(fields.get("keywords", ())),
        actions=MacroActions(status=actions.get("status"), tags=tuple(actions.get("tags", ()))),
        body_source=body,
        path=path,
        subject=fields.get("subject"),
        acknowledgement=bool(fields.get("acknowledgement", False)),
    )


def _is_text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_text(item) for item in value)
