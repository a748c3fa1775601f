"""Macros: pre-written, per-language reply templates agents send (docs/macros.md).

The pure part only: load and validate macro files, render one in a sandbox,
and suggest macros for a customer's message. No database, no network.
"""

from maild.macros.loader import MacroLibrary, load_macros, validate_macros
from maild.macros.model import TEMPLATE_VARIABLES, Macro, MacroActions
from maild.macros.render import RenderContext, RenderedMacro, render_macro
from maild.macros.suggest import Suggestion, suggest_macros
from maild.macros.text import strip_reply

__all__ = [
    "TEMPLATE_VARIABLES",
    "Macro",
    "MacroActions",
    "MacroLibrary",
    "RenderContext",
    "RenderedMacro",
    "Suggestion",
    "load_macros",
    "render_macro",
    "strip_reply",
    "suggest_macros",
    "validate_macros",
]
