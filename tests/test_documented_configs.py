"""The configs the docs show pass `maild check`'s offline checks, so they cannot drift
from the code (issue 16.5: getting-started's "complete starting point" once failed
because the shipped rules use an SLA policy `vip` it did not define).

Every ```toml block in docs/*.md is read. A block with a [database] and a mailbox
address is a whole config: it is loaded as a file and must pass the config, rules,
macros and templates checks (the logins and the database are not tried: the hosts
are examples). A fragment (say `[agents]`, or an OAuth2 `[mailbox]`) is merged into a
small valid config and must load. Rule files (`[[rule]]`, `[[automation]]`) are left to
tests/test_rules.py. Paths under /opt/maild (the install layout) point at this
checkout; relative paths find the packaged rules and templates beside the file, as
`maild init` copies them.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from maild.app import build_app
from maild.checks import check_content
from maild.config import load_config, parse_config
from maild.resources import default_rules, default_templates

REPO = Path(__file__).resolve().parents[1]
BLOCK_RE = re.compile(r"^( *)```toml\n(.*?)^\1```", re.S | re.M)
BASE: dict[str, Any] = {"mailbox": {"address": "support@example.com",
                                    "imap_host": "imap.example.com",
                                    "username": "support@example.com"}}


def toml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in sorted((REPO / "docs").glob("*.md")):
        for n, m in enumerate(BLOCK_RE.finditer(doc.read_text(encoding="utf-8"))):
            blocks.append((f"{doc.name}#{n}", textwrap.dedent(m.group(2))))
    return blocks


BLOCKS = toml_blocks()
WHOLE = [(name, text) for name, text in BLOCKS
         if re.search(r"^\[database\]", text, re.M)
         and re.search(r"^\[\[?mailbox\]\]?\s*(#.*)?$", text, re.M)
         and re.search(r"^address\s*=", text, re.M)]


def test_the_docs_have_whole_configs_to_check() -> None:
    assert any(name.startswith("getting-started.md") for name, _ in WHOLE), [n for n, _ in BLOCKS]


@pytest.mark.parametrize(("name", "text"), BLOCKS, ids=[n for n, _ in BLOCKS])
def test_every_toml_block_parses(name: str, text: str) -> None:
    tomllib.loads(text)


@pytest.mark.parametrize(("name", "text"), WHOLE, ids=[n for n, _ in WHOLE])
def test_whole_documented_configs_pass_the_offline_checks(name: str, text: str,
                                                          tmp_path: Path) -> None:
    text = text.replace("/opt/maild/", f"{REPO}/")
    text = re.sub(r'^url = "sqlite:.*"', f'url = "sqlite:///{tmp_path}/maild.db"', text,
                  flags=re.M)
    for shipped, packaged in (("rules", default_rules()), ("templates", default_templates())):
        (tmp_path / shipped).symlink_to(packaged)  # what `maild init` copies beside it
    path = tmp_path / "maild.toml"
    path.write_text(text, encoding="utf-8")
    app = build_app(load_config(path), environ={})
    app.automation()  # what `maild run` loads at start: rules against the SLA policies
    failed = [f"{r.name}: {r.detail}" for r in check_content(app) if not r.ok]
    assert not failed, f"{name}: " + "; ".join(failed)


def rule_file(text: str) -> bool:
    """A rule file's text ([[rule]] and [[automation]] tables), not the config's."""
    return bool(re.search(r"^\[\[(rule|automation)\]\]", text, re.M))


FRAGMENTS = [(n, t) for n, t in BLOCKS if (n, t) not in WHOLE and not rule_file(t)]


@pytest.mark.parametrize(("name", "text"), FRAGMENTS, ids=[n for n, _ in FRAGMENTS])
def test_documented_fragments_load_into_a_config(name: str, text: str) -> None:
    data = tomllib.loads(text)
    merged: dict[str, Any] = {**BASE, **data}
    if isinstance(data.get("mailbox"), dict):
        merged["mailbox"] = {**BASE["mailbox"], **data["mailbox"]}
        if "oauth2" in data["mailbox"]:  # a lone [mailbox.oauth2] shown on its own
            merged["mailbox"].setdefault("auth", "oauth2")
    parse_config(merged, Path("/etc/maild/maild.toml"))


def test_the_example_config_file_passes_the_offline_checks(tmp_path: Path) -> None:
    text = (REPO / "docs" / "maild.example.toml").read_text(encoding="utf-8")
    test_whole_documented_configs_pass_the_offline_checks("maild.example.toml", text,
                                                          tmp_path)
