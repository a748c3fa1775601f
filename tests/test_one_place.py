"""One decision, one list (issue 15): markers and prefixes are defined once.

These read maild's source: the headers of maild's automatic mail
(`AUTO_HEADERS`) are assigned in one module, and no module but
`maild/subjects.py` spells out the reply/forward prefix words. The behaviour
that depends on them is tested where it is used; this keeps a second copy out.
"""

from __future__ import annotations

import ast
from pathlib import Path

from maild.classify.markers import FAILURE_SUBJECT_RE
from maild.compose import reply_subject
from maild.macros.render import _strip_reply_prefix
from maild.threads import normalize_subject

MAILD = Path(__file__).resolve().parents[1] / "maild"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(MAILD.rglob("*.py"))]


def test_auto_headers_are_assigned_in_one_module() -> None:
    where = [p.relative_to(MAILD).as_posix() for p, tree in _modules()
             for node in ast.walk(tree) if isinstance(node, ast.Assign | ast.AnnAssign)
             for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(target, ast.Name) and target.id == "AUTO_HEADERS"]
    assert where == ["compose.py"]


def test_reply_prefix_words_are_spelled_out_only_in_subjects() -> None:
    # "ynt" (Turkish "yanıt") and "aw" (German "Antwort") sit in every list of reply words
    where = {p.relative_to(MAILD).as_posix() for p, tree in _modules()
             for node in ast.walk(tree) if isinstance(node, ast.Constant)
             and isinstance(node.value, str) and "ynt" in node.value and "aw" in node.value}
    assert where == {"subjects.py"}


def test_every_user_knows_every_reply_prefix() -> None:
    for prefix in ("Re", "AW", "SV", "YNT", "Antw", "Odp", "RES", "Re[2]", "AW(3)"):
        subject = f"{prefix}: Undelivered Mail Returned to Sender"
        assert normalize_subject(subject) == "undelivered mail returned to sender"
        assert reply_subject(subject, 7) == "Re: Undelivered Mail Returned to Sender [#7]"
        assert _strip_reply_prefix(f"{subject} [#7]", 7).startswith("Undelivered")
        assert FAILURE_SUBJECT_RE.match(subject.casefold()), prefix
    assert not FAILURE_SUBJECT_RE.match("fwd: undelivered mail returned to sender")
