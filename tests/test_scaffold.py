"""`maild init DIR` and the packaged defaults a config without [paths] uses."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from maild import resources
from maild.app import build_app
from maild.checks import check_content
from maild.cli import main
from maild.config import SECTIONS, load_config, parse_config
from maild.scaffold import starter_config


def init(directory: Path, capsys: pytest.CaptureFixture[str], *extra: str
         ) -> tuple[int, str, str]:
    code = main(["init", str(directory), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_writes_a_config_that_validates_and_copies_the_content(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = init(tmp_path / "etc", capsys, "--json")
    assert code == 0
    written = json.loads(out)
    config = load_config(written["config"])
    assert config.rules_dir() == tmp_path / "etc" / "rules"
    assert config.macros_dir() == tmp_path / "etc" / "templates" / "macros"
    assert config.templates_dir() == tmp_path / "etc" / "templates"
    packaged = sorted(p.relative_to(resources.packaged("defaults")).as_posix().replace(
        "defaults/", "") for p in resources.packaged("defaults").rglob("*.*"))
    copied = sorted(Path(f).relative_to(tmp_path / "etc").as_posix() for f in written["files"])
    assert copied == packaged and len(copied) > 20
    assert config.mailboxes[0].password_env == "MAILD_IMAP_PASSWORD"
    assert config.smtp is not None and config.smtp.password_env == "MAILD_SMTP_PASSWORD"
    results = list(check_content(build_app(config, environ={})))
    assert results and all(r.ok for r in results), results


def test_starter_config_documents_every_key_of_the_schema() -> None:
    text = starter_config()
    data = tomllib.loads(text)
    assert set(data) == {*SECTIONS, "agents"}
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name == "oauth2":
                continue
            assert f"\n{f.name} = " in text or f"\n# {f.name} = " in text, f"{name}.{f.name}"
    # the defaults shown are the schema's: uncommenting one changes nothing
    assert "\n# poll_seconds = 60\n" in text and '\n# timezone = "UTC"\n' in text
    assert "password =" not in text.replace("# password", "")  # secrets are only named
    parse_config(data, Path("/etc/maild/maild.toml"))


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert init(tmp_path, capsys)[0] == 0
    (tmp_path / "maild.toml").write_text("# mine\n")
    (tmp_path / "rules" / "10-spam.toml").write_text("# mine too\n")
    code, _, err = init(tmp_path, capsys)
    assert code == 1 and err.count("\n") == 1
    shipped = sum(1 for d in (resources.default_rules(), resources.default_templates())
                  for f in d.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    assert f"{tmp_path / 'maild.toml'} exists and {shipped} more: nothing written" in err
    assert (tmp_path / "maild.toml").read_text() == "# mine\n"
    assert (tmp_path / "rules" / "10-spam.toml").read_text() == "# mine too\n"
    assert init(tmp_path, capsys, "--force")[0] == 0
    assert (tmp_path / "maild.toml").read_text() == starter_config()
    assert (tmp_path / "rules" / "10-spam.toml").read_bytes() == (
        resources.default_rules() / "10-spam.toml").read_bytes()


def test_init_into_a_place_it_cannot_write_is_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = init(tmp_path / "file" / "etc", capsys)
    assert code == 1 and err.count("\n") == 1 and "cannot write" in err


def test_without_paths_the_packaged_defaults_are_used(tmp_path: Path) -> None:
    path = tmp_path / "maild.toml"
    path.write_text('[mailbox]\naddress = "s@example.com"\nimap_host = "h"\n'
                    'username = "s@example.com"\n[sla.policies.vip]\nfirst_response = "1h"\n'
                    '[paths]\nmacros = "mine"\n')
    config = load_config(path)
    assert config.rules_dir() == resources.default_rules()
    assert config.templates_dir() == resources.default_templates()
    assert config.macros_dir() == tmp_path / "mine"  # a key given wins, the others default
    for directory in (resources.default_rules(), resources.default_macros(),
                      resources.default_templates() / "autoreply", resources.migrations_dir()):
        assert any(directory.iterdir()), directory
