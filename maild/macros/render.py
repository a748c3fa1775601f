"""Render a macro for one ticket into a plain-text body and a one-line subject.

Safety story (docs/macros.md): customer-provided values enter the template
only as plain strings in namespaces (never as template source, so
"{{ 7*7 }}" in a name stays literal); the template runs in the sandbox from
`sandbox.py` (no internals, capped `range`, no amplifying operations); values
that can reach a header are single-lined, the final subject is single-lined
again, the body loses control characters, and output is capped in size.
This module does no I/O and knows nothing about the database or SMTP.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

import jinja2

from maild.errors import TemplateError
from maild.macros.model import Macro
from maild.macros.sandbox import MacroEnvironment, make_environment, one_line
from maild.subjects import strip_reply_prefixes

#: Largest rendered body or subject, in UTF-8 bytes.
MAX_OUTPUT_BYTES = 100_000
#: Longest subject (before the ticket tag); RFC 5322 lines stop at 998.
MAX_SUBJECT_CHARS = 900
#: Longest single-line value (name, subject...) handed to a template.
MAX_FIELD_CHARS = 500
#: Longest customer message handed to a template (for quoting).
MAX_MESSAGE_CHARS = 20_000

_LINE_BREAKS = frozenset({"Cc", "Zl", "Zp"})


@dataclass(frozen=True)
class RenderContext:
    """Everything a macro may show, as plain values (see TEMPLATE_VARIABLES).

    `last_message` is the customer's last message, already quote-stripped
    (`maild.macros.text.strip_reply`).
    """

    ticket_id: int
    ticket_subject: str = ""
    ticket_status: str = "open"
    customer_name: str = ""
    customer_email: str = ""
    agent_name: str = ""
    agent_email: str = ""
    eta_text: str = ""
    eta_due: str = ""
    last_message: str = ""
    company_name: str = ""
    mailbox_address: str = ""


@dataclass(frozen=True)
class RenderedMacro:
    """A rendered reply: `subject` is one line, `body` is text/plain ending in a newline."""

    subject: str
    body: str


def ticket_tag(ticket_id: int) -> str:
    """The subject marker that threads replies back: `[#123]`."""
    return f"[#{ticket_id}]"


def template_variables(ctx: RenderContext) -> dict[str, SimpleNamespace]:
    """The template context: namespaces holding only str and int values."""
    field = _field
    message = clean_body(ctx.last_message[:MAX_MESSAGE_CHARS]).strip("\n")
    return {
        "customer": SimpleNamespace(name=field(ctx.customer_name), email=field(ctx.customer_email)),
        "ticket": SimpleNamespace(
            id=int(ctx.ticket_id),
            subject=field(ctx.ticket_subject),
            tag=ticket_tag(ctx.ticket_id),
            status=field(ctx.ticket_status),
        ),
        "agent": SimpleNamespace(name=field(ctx.agent_name), email=field(ctx.agent_email)),
        "eta": SimpleNamespace(text=field(ctx.eta_text), due=field(ctx.eta_due)),
        "last_message": SimpleNamespace(text=message, quoted=quote(message)),
        "company": SimpleNamespace(name=field(ctx.company_name)),
        "mailbox": SimpleNamespace(address=field(ctx.mailbox_address)),
    }


def render_macro(macro: Macro, ctx: RenderContext) -> RenderedMacro:
    """Render `macro` for `ctx`; any failure raises TemplateError naming the macro."""
    variables = template_variables(ctx)
    body = _render(macro, "body", macro.body_source, variables)
    if macro.subject is None:
        subject = f"Re: {_strip_reply_prefix(ctx.ticket_subject, ctx.ticket_id)}"
    else:
        subject = _render(macro, "subject", macro.subject, variables)
    return RenderedMacro(subject=_finish_subject(subject, ctx.ticket_id), body=_finish_body(body))


@lru_cache(maxsize=1)
def _environment() -> MacroEnvironment:
    """One sandbox for all renders: it keeps no state between them."""
    return make_environment()


@lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """A template compiled once per source (an ETA reply is rendered per new ticket)."""
    return _environment().from_string(source)


def _render(
    macro: Macro,
    part: str,
    source: str,
    variables: dict[str, SimpleNamespace],
) -> str:
    try:
        template = _compiled(source)
        return _bounded_join(template.generate(variables), macro, part)
    except TemplateError:
        raise
    except Exception as exc:  # template code is untrusted: any failure is its failure
        detail = one_line(str(exc)) or type(exc).__name__
        if not isinstance(exc, jinja2.TemplateError):
            detail = f"{type(exc).__name__}: {detail}"
        raise _macro_error(macro, part, detail) from exc


def _bounded_join(chunks: Iterator[str], macro: Macro, part: str) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk.encode("utf-8", "surrogatepass"))
        if size > MAX_OUTPUT_BYTES:
            raise _macro_error(macro, part, f"output larger than {MAX_OUTPUT_BYTES} bytes")
        parts.append(chunk)
    return "".join(parts)


def _macro_error(macro: Macro, part: str, detail: str) -> TemplateError:
    return TemplateError(f"macro {macro.name} ({macro.language}, {macro.path}): {part}: {detail}")


def _strip_reply_prefix(subject: str, ticket_id: int) -> str:
    without_tag = single_line(subject).replace(ticket_tag(ticket_id), " ")
    return strip_reply_prefixes(single_line(without_tag))


def _finish_subject(subject: str, ticket_id: int) -> str:
    text = single_line(subject)[:MAX_SUBJECT_CHARS].rstrip()
    tag = ticket_tag(ticket_id)
    return text if tag in text else f"{text} {tag}".lstrip()


def _finish_body(body: str) -> str:
    return clean_body(body).strip("\n").rstrip() + "\n"


def _field(value: str) -> str:
    return single_line(value[:MAX_FIELD_CHARS])


def single_line(text: str) -> str:
    """`text` with control characters and line/paragraph separators as single spaces."""
    spaced = "".join(" " if unicodedata.category(ch) in _LINE_BREAKS else ch for ch in text)
    return " ".join(spaced.split())


def clean_body(text: str) -> str:
    """`text` with CRLF/CR as LF and every other control character except TAB removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def quote(text: str) -> str:
    """Each line of `text` prefixed with "> " (empty lines become ">")."""
    if not text:
        return ""
    return "\n".join(f"> {line}".rstrip() for line in text.split("\n"))
