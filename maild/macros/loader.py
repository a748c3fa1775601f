"""Load and validate the macro files of one directory into a `MacroLibrary`.

`load_macros()` is for start-up and the CLI: it fails on the first broken
file. `validate_macros()` is for `maild check`: it returns every problem, one
`TemplateError` line each. Reading `*.j2` files is the only I/O here; nothing
is rendered, and the library itself is an immutable value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maild.errors import NotFoundError, TemplateError
from maild.macros.frontmatter import (
    SplitFile,
    build_macro,
    check_fields,
    check_filename,
    file_error,
    parse_header,
    split_front_matter,
)
from maild.macros.model import Macro
from maild.macros.sandbox import MacroEnvironment, check_template, make_environment


@dataclass(frozen=True)
class MacroLibrary:
    """All loaded macros, ordered by name then language."""

    macros: tuple[Macro, ...] = ()

    @classmethod
    def of(cls, macros: Iterable[Macro]) -> MacroLibrary:
        """A library of `macros`, sorted."""
        return cls(tuple(sorted(macros, key=lambda m: (m.name, m.language))))

    def get(
        self, name: str, language: str | None = None, default_language: str | None = None
    ) -> Macro:
        """`name` in `language`, else in `default_language`, else in any language."""
        candidates = [m for m in self.macros if m.name == name]
        if not candidates:
            known = ", ".join(sorted(self.names())) or "none"
            raise NotFoundError(f"no macro named {name!r} (known: {known})")
        for wanted in (language, default_language):
            for macro in candidates:
                if macro.language == wanted:
                    return macro
        return candidates[0]

    def names(self) -> set[str]:
        """The distinct macro names."""
        return {m.name for m in self.macros}

    def all(self) -> list[Macro]:
        """Every macro, ordered by name then language."""
        return list(self.macros)

    def in_language(self, language: str) -> list[Macro]:
        """The macros written in `language`."""
        return [m for m in self.macros if m.language == language]

    def as_list_json(self) -> list[dict[str, Any]]:
        """JSON-ready objects for `maild macros list --json`."""
        return [_macro_json(m) for m in self.macros]


def _macro_json(macro: Macro) -> dict[str, Any]:
    return {
        "name": macro.name,
        "language": macro.language,
        "title": macro.title,
        "tags": list(macro.tags),
        "description": macro.description,
        "keywords": list(macro.keywords),
        "subject": macro.subject,
        "acknowledgement": macro.acknowledgement,
        "actions": {"status": macro.actions.status, "tags": list(macro.actions.tags)},
        "path": str(macro.path),
    }


def load_macros(directory: Path | str) -> MacroLibrary:
    """Load every `*.j2` macro in `directory`; raise TemplateError on the first problem."""
    macros, errors = _load_directory(Path(directory))
    if errors:
        more = f" (and {len(errors) - 1} more; run 'maild check')" if len(errors) > 1 else ""
        raise TemplateError(f"{errors[0]}{more}")
    return MacroLibrary.of(macros)


def validate_macros(directory: Path | str) -> list[TemplateError]:
    """Every problem in the macro files of `directory`, one error per line."""
    return _load_directory(Path(directory))[1]


def _load_directory(directory: Path) -> tuple[list[Macro], list[TemplateError]]:
    if not directory.is_dir():
        return [], [TemplateError(f"{directory}: macro directory does not exist")]
    env = make_environment()
    macros: list[Macro] = []
    errors: list[TemplateError] = []
    for path in _macro_files(directory):
        macro, file_errors = _load_file(path, env)
        errors += file_errors
        if macro is not None:
            macros.append(macro)
    return macros, errors


def _macro_files(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.iterdir()
        if path.name.endswith(".j2") and not path.name.startswith(".") and path.is_file()
    )


def _load_file(path: Path, env: MacroEnvironment) -> tuple[Macro | None, list[TemplateError]]:
    try:
        split = split_front_matter(path, _read_text(path))
        fields = parse_header(path, split.header)
    except TemplateError as exc:
        return None, [exc]
    errors = check_fields(path, fields)
    if not errors:
        errors = check_filename(path, fields["name"], fields["language"])
    errors += _template_errors(path, env, split, fields.get("subject"))
    if errors:
        return None, errors
    return build_macro(path, fields, split.body), []


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise file_error(path, "encoding", f"not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise file_error(path, "file", f"cannot read: {exc.strerror}") from None


def _template_errors(
    path: Path, env: MacroEnvironment, split: SplitFile, subject: Any
) -> list[TemplateError]:
    errors = [
        file_error(path, "body", p.message, split.body_line + (p.line or 1) - 1)
        for p in check_template(env, split.body)
    ]
    if isinstance(subject, str):
        errors += [file_error(path, "subject", p.message) for p in check_template(env, subject)]
    return errors
