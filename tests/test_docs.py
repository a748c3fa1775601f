"""The docs keep up with the code: config keys, CLI commands and options, the
systemd unit, and relative links.

- every key of the config schema is in docs/configuration.md, which must be exactly
  what scripts/gen_config_docs.py generates;
- every command, subcommand and long option of `build_parser()` is in docs/cli.md
  (commands registered later, e.g. by maild.cli_agent, are picked up automatically);
- packaging/maild.service has the fields operations.md promises, and passes
  `systemd-analyze verify` where that tool exists;
- every relative link in docs/*.md and README.md points to an existing file (and, for
  a link into a Markdown page, to an existing heading).
"""

from __future__ import annotations

import argparse
import configparser
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from maild.cli import build_parser
from maild.config import SECTIONS, SlaPolicyConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
UNIT = ROOT / "packaging" / "maild.service"
GENERATOR = ROOT / "scripts" / "gen_config_docs.py"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- configuration ------------------------------------------------------------------------

def _schema_keys() -> list[tuple[str, str]]:
    sections = {**SECTIONS, "sla.policies": SlaPolicyConfig}
    return [(section, f.name) for section, cls in sections.items() for f in fields(cls)]


def _doc_sections(text: str) -> dict[str, str]:
    """Section name -> its text, split on the '## [name]' headings."""
    out: dict[str, str] = {}
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        match = re.match(r"\[\[?([a-z_.]+?)(?:\.NAME)?\]\]?", chunk)
        if match:
            out[match.group(1)] = chunk
    return out


def test_every_config_key_is_documented() -> None:
    text = _read(DOCS / "configuration.md")
    sections = _doc_sections(text)
    missing = []
    for section, key in _schema_keys():
        body = sections.get(section)
        if body is None or f"| `{key}` |" not in body:
            missing.append(f"{section}.{key}")
    assert not missing, f"not in docs/configuration.md: {missing}; run {GENERATOR.name}"


def test_configuration_md_is_up_to_date() -> None:
    res = subprocess.run([sys.executable, str(GENERATOR), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout


def test_generator_check_fails_on_a_stale_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(GENERATOR.parent))
    try:
        import gen_config_docs
    finally:
        sys.path.remove(str(GENERATOR.parent))
    stale = tmp_path / "configuration.md"
    stale.write_text(gen_config_docs.render().replace("`retry_max_seconds`", "`x`"),
                     encoding="utf-8")
    monkeypatch.setattr(gen_config_docs, "OUTPUT", stale)
    monkeypatch.setattr(gen_config_docs, "ROOT", tmp_path)
    assert gen_config_docs.main(["--check"]) == 1
    assert gen_config_docs.main([]) == 0
    assert gen_config_docs.main(["--check"]) == 0


# --- command line -------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction]:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
          ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, parser) for the top parser and every (nested) subcommand."""
    yield path, parser
    for action in _subparsers(parser):
        for name, sub in action.choices.items():
            yield from _walk(sub, (*path, name))


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions for opt in action.option_strings
            if opt.startswith("--") and opt != "--help"]


def test_the_walk_sees_the_known_commands() -> None:
    commands = {" ".join(path) for path, _ in _walk(build_parser())}
    assert {"run", "db upgrade", "check", "tickets list", "tickets show",
            "rules test"} <= commands


def test_every_command_and_option_is_in_cli_md() -> None:
    text = _read(DOCS / "cli.md")
    headings = set(re.findall(r"^#+ (maild(?: [a-z-]+)*)\s*$", text, flags=re.M))
    missing = []
    for path, parser in _walk(build_parser()):
        command = " ".join(("maild", *path))
        leaf = not any(True for _ in _subparsers(parser))
        if path and leaf and command not in headings:
            missing.append(f"heading '## {command}'")
        elif path and f"`{command}" not in text and command not in headings:
            missing.append(f"command '{command}'")
        for opt in _long_options(parser):
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                missing.append(f"option {opt} of '{command}'")
    assert not missing, f"docs/cli.md lacks: {missing}"


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    return match.group(1) if match else ""


def test_each_command_section_names_its_own_options() -> None:
    text = _read(DOCS / "cli.md")
    missing = []
    for path, parser in _walk(build_parser()):
        if not path or any(True for _ in _subparsers(parser)):
            continue
        command = " ".join(("maild", *path))
        body = _section(text, command)
        missing += [f"{command} {opt}" for opt in _long_options(parser)
                    if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", body)]
    assert not missing, f"options not described under their command in docs/cli.md: {missing}"


def test_cli_md_states_the_exit_codes() -> None:
    text = _read(DOCS / "cli.md")
    table = _section(text, "Exit codes")
    for code in ("0", "1", "2"):
        assert re.search(rf"^\| {code} \|", table, flags=re.M), f"exit code {code}"


# --- systemd unit -------------------------------------------------------------------------

def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None,
                                     comment_prefixes=("#", ";"))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(_read(UNIT))
    return unit


def test_systemd_unit_has_the_required_fields() -> None:
    unit = _unit()
    assert unit.get("Unit", "Description", fallback="").strip()
    assert "network-online.target" in unit.get("Unit", "After", fallback="").split()
    service = unit["Service"]
    exec_start = service.get("ExecStart", "")
    assert "maild" in exec_start and exec_start.rstrip().endswith(" run"), exec_start
    assert "--config" in exec_start
    assert service.get("Restart", "").strip()
    assert service.get("User", "").strip()
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"
    assert service.get("TimeoutStopSec", "").strip()
    assert service.get("Type", "simple") == "simple"
    for key, value in (("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "true"), ("ProtectHome", "true")):
        assert service.get(key) == value, key
    assert "/var/lib/maild" in service.get("ReadWritePaths", "").split()
    assert service.get("EnvironmentFile", "").lstrip("-").startswith("/etc/maild/")
    assert unit.get("Install", "WantedBy", fallback="") == "multi-user.target"


def test_systemd_unit_is_what_operations_md_shows() -> None:
    ops = _read(DOCS / "operations.md")
    for line in _read(UNIT).splitlines():
        if "=" in line and not line.startswith("#"):
            assert line in ops, f"docs/operations.md does not show unit line {line!r}"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify insists the ExecStart binary exists: point it at this checkout's maild.
    maild = Path(sys.executable).with_name("maild")
    if not maild.exists():
        pytest.skip(f"no maild console script next to {sys.executable}")
    text = _read(UNIT).replace("/opt/maild/.venv/bin/maild", str(maild))
    unit = tmp_path / "maild.service"
    unit.write_text(text, encoding="utf-8")
    res = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "maild.service" not in res.stderr, res.stderr  # no warnings about our unit


# --- links --------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(md: Path) -> set[str]:
    """GitHub-style heading anchors of a Markdown file."""
    headings = re.findall(r"^#+ (.+?)\s*$", re.sub(r"^```.*?^```", "", _read(md),
                                                     flags=re.M | re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_relative_links_point_to_existing_files() -> None:
    broken = []
    for md in _markdown_files():
        for target in LINK.findall(_without_code(_read(md))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            dest = md.parent / path if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, f"broken links: {broken}"


def test_docs_index_links_every_page() -> None:
    index = _read(DOCS / "index.md")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "index.md":
            assert f"({page.name}" in index, f"docs/index.md does not link {page.name}"
