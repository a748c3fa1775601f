"""Macros: loading the starter set, one-line errors per broken field, safe rendering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.errors import NotFoundError, TemplateError
from maild.macros import (
    Macro,
    MacroActions,
    RenderContext,
    load_macros,
    render_macro,
    validate_macros,
)
from maild.macros.render import MAX_OUTPUT_BYTES

MACRO_DIR = Path(__file__).resolve().parents[1] / "maild" / "defaults" / "templates" / "macros"
STARTER_NAMES = {
    "greeting",
    "request-details",
    "refund-policy",
    "password-reset",
    "bug-acknowledged",
    "resolved",
    "angry-customer",
}

GOOD_HEADER = 'name = "demo"\ntitle = "Demo"\nlanguage = "en"\n'
GOOD_BODY = "Hello {{ customer.name }},\nthanks.\n{{ agent.name }} {{ ticket.tag }}\n"

HOSTILE_JINJA = "{{ 7*7 }} {% for x in range(10**9) %}x{% endfor %} {{ ''.__class__.__mro__ }}"
HOSTILE_HTML = "<script>alert(1)</script>"
HOSTILE_NAME = f"Eve\r\nBcc: victim@x.org {HOSTILE_JINJA} {HOSTILE_HTML}"
HOSTILE_SUBJECT = f"Help\r\nBcc: victim@x.org\n\n{HOSTILE_JINJA} {HOSTILE_HTML}"
HOSTILE_TEXT = f"Line one {HOSTILE_JINJA}\r\nBcc: victim@x.org\x00\x1b[31m\n{HOSTILE_HTML}"


def write_macro(directory: Path, filename: str, header: str, body: str = GOOD_BODY) -> Path:
    path = directory / filename
    path.write_text(f"+++\n{header}+++\n{body}", encoding="utf-8")
    return path


def inline_macro(body: str, subject: str | None = None) -> Macro:
    """A macro built directly, bypassing the loader's static checks."""
    return Macro(
        name="inline",
        language="en",
        title="Inline",
        tags=(),
        description="",
        keywords=(),
        actions=MacroActions(),
        body_source=body,
        path=Path("inline.en.j2"),
        subject=subject,
    )


def hostile_context() -> RenderContext:
    return RenderContext(
        ticket_id=123,
        ticket_subject=HOSTILE_SUBJECT,
        ticket_status="open",
        customer_name=HOSTILE_NAME,
        customer_email="eve@example.org\r\nBcc: victim@x.org",
        agent_name="Deniz",
        agent_email="deniz@acme.example",
        eta_text="by Monday 10:00 (within 4 business hours)",
        eta_due="2024-06-03 10:00",
        last_message=HOSTILE_TEXT,
        company_name="Acme",
        mailbox_address="support@acme.example",
    )


# --- loading -------------------------------------------------------------------------


def test_starter_set_loads_every_name_in_english_and_turkish() -> None:
    library = load_macros(MACRO_DIR)
    assert len(library.all()) == 14
    assert library.names() == STARTER_NAMES
    pairs = {(m.name, m.language) for m in library.all()}
    assert pairs == {(name, lang) for name in STARTER_NAMES for lang in ("en", "tr")}
    assert validate_macros(MACRO_DIR) == []


def test_starter_actions() -> None:
    library = load_macros(MACRO_DIR)
    for language in ("en", "tr"):
        assert library.get("request-details", language).actions.status == "pending"
        assert library.get("refund-policy", language).actions.status == "pending"
        assert library.get("resolved", language).actions.status == "solved"
        assert library.get("greeting", language).actions.status is None


def test_get_falls_back_to_default_then_any_language(tmp_path: Path) -> None:
    write_macro(
        tmp_path, "only-tr.tr.j2", GOOD_HEADER.replace("demo", "only-tr").replace('"en"', '"tr"')
    )
    library = load_macros(MACRO_DIR)
    assert library.get("greeting", "tr", "en").language == "tr"
    assert library.get("greeting", "de", "en").language == "en"
    assert load_macros(tmp_path).get("only-tr", "de", "en").language == "tr"
    with pytest.raises(NotFoundError, match="no-such-macro"):
        library.get("no-such-macro", "en", "en")


def test_list_json_has_the_documented_keys() -> None:
    items = load_macros(MACRO_DIR).as_list_json()
    assert len(items) == 14
    for item in items:
        assert {"name", "language", "title", "tags", "description", "actions"} <= item.keys()
        assert set(item["actions"]) == {"status", "tags"}


BROKEN_FILES = [
    ("bad-toml.en.j2", 'name = "bad-toml\ntitle = "x"\n', GOOD_BODY, "front matter", ":2:"),
    ("demo.en.j2", GOOD_HEADER + 'colour = "red"\n', GOOD_BODY, "colour: unknown key", None),
    ("demo.en.j2", 'title = "Demo"\nlanguage = "en"\n', GOOD_BODY, "name: missing", None),
    ("demo.en.j2", 'name = "demo"\nlanguage = "en"\n', GOOD_BODY, "title: missing", None),
    ("demo.en.j2", 'name = "demo"\ntitle = "Demo"\n', GOOD_BODY, "language: missing", None),
    ("demo.en.j2", GOOD_HEADER + '[actions]\nstatus = "closed"\n', GOOD_BODY,
     "actions.status: 'closed' is not one of open, pending, solved", None),
    ("demo.en.j2", GOOD_HEADER + '[actions]\nassign = "bob"\n', GOOD_BODY,
     "actions.assign: unknown key", None),
    ("demo.en.j2", GOOD_HEADER, "Hello,\n\n{{ customer.name }\n", "body: syntax error", ":8:"),
    ("demo.en.j2", GOOD_HEADER, "Hi {{ customr.name }}\n", "body: unknown variable 'customr'",
     ":6:"),
    ("demo.en.j2", GOOD_HEADER, "Hi\n{{ customer.phone }}\n",
     "body: unknown variable 'customer.phone'", ":7:"),
    ("demo.en.j2", GOOD_HEADER, "Hi {{ customer }}\n",
     "body: 'customer' is an object; use customer.email, customer.name", ":6:"),
    ("demo.en.j2", GOOD_HEADER, "{{ customer.name|center(80) }}\n",
     "body: No filter named 'center'. (allowed: capitalize,", ":6:"),
    ("demo.en.j2", GOOD_HEADER, "{{ customer.name.__class__ }}\n",
     "body: private attribute '__class__'", ":6:"),
    ("demo.en.j2", GOOD_HEADER, "{% include 'x.j2' %}\n", "body: include", ":6:"),
    ("demo.en.j2", GOOD_HEADER + 'subject = "About {{ order.id }}"\n', GOOD_BODY,
     "subject: unknown variable 'order'", None),
    ("other.en.j2", GOOD_HEADER, GOOD_BODY, "name: 'demo' does not match the file name", None),
    ("demo.tr.j2", GOOD_HEADER, GOOD_BODY, "language: 'en' does not match the file name", None),
    ("demo.j2", GOOD_HEADER, GOOD_BODY, "filename: must be NAME.LANGUAGE.j2", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "header", "body", "expected", "line"),
    BROKEN_FILES,
    ids=[f"{row[0]}:{row[3].split(':')[0]}" for row in BROKEN_FILES],
)
def test_each_error_is_one_line_naming_file_and_field(
    tmp_path: Path, filename: str, header: str, body: str, expected: str, line: str | None
) -> None:
    path = write_macro(tmp_path, filename, header, body)
    errors = validate_macros(tmp_path)
    assert len(errors) == 1, [str(e) for e in errors]
    message = str(errors[0])
    print(message)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message
    if line is not None:
        assert message.startswith(f"{path}{line}")
    with pytest.raises(TemplateError, match="^" + str(path).replace(".", r"\.")):
        load_macros(tmp_path)


def test_missing_front_matter_is_reported(tmp_path: Path) -> None:
    (tmp_path / "plain.en.j2").write_text("Hello {{ customer.name }}\n", encoding="utf-8")
    (tmp_path / "open.en.j2").write_text("+++\nname = 'open'\n", encoding="utf-8")
    messages = [str(e) for e in validate_macros(tmp_path)]
    assert len(messages) == 2
    assert any("open.en.j2:1: front matter: no closing '+++'" in m for m in messages)
    assert any("plain.en.j2:1: front matter: the file must start with" in m for m in messages)


def test_validate_collects_all_errors_and_load_fails_on_the_first(tmp_path: Path) -> None:
    write_macro(tmp_path, "demo.en.j2", GOOD_HEADER)
    write_macro(tmp_path, "a.en.j2", 'title = "A"\nlanguage = "en"\ncolour = 1\n')
    write_macro(tmp_path, "b.en.j2", GOOD_HEADER.replace("demo", "b"), "{{ nope }}\n")
    write_macro(tmp_path, "c.en.j2", GOOD_HEADER.replace("demo", "c") + "[actions]\nstatus = 1\n")
    messages = [str(e) for e in validate_macros(tmp_path)]
    print("\n".join(messages))
    assert len(messages) == 4
    assert all("\n" not in m for m in messages)
    with pytest.raises(TemplateError, match=r"a\.en\.j2: colour: unknown key \(and 3 more"):
        load_macros(tmp_path)


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        load_macros(tmp_path / "nope")


# --- rendering -----------------------------------------------------------------------


def test_render_plain_context() -> None:
    library = load_macros(MACRO_DIR)
    ctx = RenderContext(
        ticket_id=42,
        ticket_subject="Re: RE: Refund please [#42]",
        customer_name="Ayşe",
        agent_name="Deniz",
        eta_due="2024-06-03 10:00",
        company_name="Acme",
    )
    rendered = render_macro(library.get("refund-policy", "tr"), ctx)
    assert rendered.subject == "Re: Refund please [#42]"
    assert rendered.body.startswith("Merhaba Ayşe,\n")
    assert "Deniz\nAcme Destek Ekibi [#42]\n" in rendered.body
    anonymous = render_macro(library.get("greeting", "en"), replace(ctx, customer_name=""))
    assert anonymous.body.startswith("Hello there,\n")


@pytest.mark.parametrize("macro", load_macros(MACRO_DIR).all(), ids=lambda m: m.label)
def test_every_shipped_macro_renders_hostile_input_inertly(macro: Macro) -> None:
    rendered = render_macro(macro, hostile_context())
    body, subject = rendered.body, rendered.subject
    assert subject.splitlines() == [subject]
    assert "\r" not in subject and "\n" not in subject
    assert subject.startswith("Re: Help Bcc: victim@x.org {{ 7*7 }}")
    assert subject.endswith("[#123]")
    assert "{{ 7*7 }}" in body
    assert "{% for x in range(10**9) %}" in body
    assert "{{ ''.__class__.__mro__ }}" in body
    assert HOSTILE_HTML in body
    assert "49" not in body and "49" not in subject
    assert "<class" not in body
    assert "\r" not in body and "\x00" not in body
    assert not any(line.startswith("Bcc:") for line in body.splitlines())
    assert "Deniz" in body and "[#123]" in body


def test_last_message_is_quoted_literally_and_cleaned() -> None:
    macro = inline_macro("You wrote:\n{{ last_message.quoted }}\n--\n{{ last_message.text }}\n")
    body = render_macro(macro, hostile_context()).body
    quoted = body.split("--\n")[0].splitlines()[1:]
    assert quoted[0] == f"> Line one {HOSTILE_JINJA}"
    assert quoted[1] == "> Bcc: victim@x.org[31m"
    assert quoted[2] == f"> {HOSTILE_HTML}"
    assert "\x00" not in body and "\x1b" not in body and "49" not in body


def test_custom_subject_is_rendered_single_lined_and_tagged() -> None:
    macro = inline_macro(GOOD_BODY, subject="Your refund, {{ customer.name }}")
    subject = render_macro(macro, hostile_context()).subject
    assert subject.startswith("Your refund, Eve Bcc: victim@x.org {{ 7*7 }}")
    assert subject.endswith(" [#123]")
    assert subject.splitlines() == [subject]


HOSTILE_TEMPLATES = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", True),
    ("{{ customer.name.__class__.__mro__ }}", True),
    ("{{ customer['__class__'] }}", True),
    ("{{ range(10**9)|list }}", False),
    ("{% for x in range(10**9) %}x{% endfor %}", False),
    ("{{ 'x' * 10**9 }}", False),
    ("{{ [1] * 10**9 }}", False),
    ("{{ 10**10**10 }}", False),
    ("{{ '%999999999s' % 'x' }}", False),
    ("{{ 'x'.ljust(10**9) }}", False),
    ("{{ '{0:>999999999}'.format('x') }}", False),
    ("{{ lipsum(10**6) }}", True),
    ("{{ 'x'|center(10**9) }}", True),
    ("{% for i in range(99999) %}{% for j in range(99999) %}xxxxxxxx{% endfor %}{% endfor %}",
     False),
]  # fmt: skip


@pytest.mark.parametrize(("body", "rejected_on_load"), HOSTILE_TEMPLATES)
def test_hostile_template_raises_template_error(
    tmp_path: Path, body: str, rejected_on_load: bool
) -> None:
    write_macro(tmp_path, "evil.en.j2", GOOD_HEADER.replace("demo", "evil"), body)
    errors = validate_macros(tmp_path)
    assert bool(errors) == rejected_on_load, [str(e) for e in errors]
    expected = r"macro inline \(en, inline\.en\.j2\): body: "
    with pytest.raises(TemplateError, match=expected) as caught:
        render_macro(inline_macro(body), hostile_context())
    print(caught.value)
    assert "\n" not in str(caught.value)


def test_output_size_is_capped() -> None:
    body = "{% for i in range(20000) %}{{ last_message.text }}{% endfor %}"
    with pytest.raises(TemplateError, match=f"larger than {MAX_OUTPUT_BYTES} bytes"):
        render_macro(inline_macro(body), hostile_context())


def test_undefined_attribute_at_render_time_names_the_macro() -> None:
    with pytest.raises(TemplateError, match=r"macro inline \(en, inline\.en\.j2\): body: .*phone"):
        render_macro(inline_macro("{{ customer.phone }}"), hostile_context())


@settings(max_examples=200, deadline=None)
@given(name=st.text(), subject=st.text())
def test_subject_never_contains_a_line_break(name: str, subject: str) -> None:
    ctx = RenderContext(ticket_id=7, ticket_subject=subject, customer_name=name)
    for macro in (inline_macro(GOOD_BODY), inline_macro(GOOD_BODY, "{{ customer.name }}")):
        rendered = render_macro(macro, ctx).subject
        assert "\r" not in rendered and "\n" not in rendered
        assert rendered.splitlines() == [rendered]
        assert "[#7]" in rendered
