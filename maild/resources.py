"""Where the files packaged with maild live: migrations and the default content.

The wheel ships, inside the `maild` package, the Alembic migrations
(`maild/migrations/`) and the default rules, macros and templates
(`maild/defaults/`). They are found with `importlib.resources`, so a plain
(non-editable) install works from any directory, and a source checkout works the
same way. This module only locates files; it reads and copies nothing.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from maild.errors import MaildError


def packaged(*parts: str) -> Path:
    """The directory `parts` inside the installed `maild` package, as a real path.

    maild's loaders (Jinja2, Alembic, the rule loader) need a directory on disk,
    so an install that keeps the package inside a zip file is refused by name."""
    node = files("maild").joinpath(*parts)
    if not isinstance(node, Path):
        raise MaildError(f"maild's packaged files ({'/'.join(parts)}) are not on disk "
                         f"({type(node).__name__}); install maild unzipped (pip does)")
    return node


def migrations_dir() -> Path:
    return packaged("migrations")


def default_rules() -> Path:
    return packaged("defaults", "rules")


def default_macros() -> Path:
    return packaged("defaults", "templates", "macros")


def default_templates() -> Path:
    return packaged("defaults", "templates")
