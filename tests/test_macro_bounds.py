"""Every operation that grows a value in a macro is refused before the value is built.

The amplifying templates run in a child process whose address space is capped
(RLIMIT_AS): without the bounds each would ask for gigabytes and die of
MemoryError (not a TemplateError), so these tests fail if a bound is missing
instead of taking the machine's memory with them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maild.macros.bounds import MAX_VALUE_SIZE, text_size
from maild.macros.render import RenderContext, render_macro
from tests.test_macros import inline_macro

REPO = Path(__file__).resolve().parents[1]
#: The child's address-space cap: room for Python and Jinja, far from what any
#: template below would need without its bound (10 GB and more).
MEMORY_LIMIT = 768 * 1024 * 1024

BIG = '"a"*100000'
AMPLIFYING = {
    "replace filter": f'{{{{ ({BIG})|replace("a", "b"*100000) }}}}',
    "replace method": f'{{{{ ({BIG}).replace("a", "b"*100000) }}}}',
    "replace empty": f'{{{{ ({BIG})|replace("", "b"*1000) }}}}',
    "~ in a loop": '{% set ns = namespace(s="a"*1000) %}{% for i in range(40) %}'
                   '{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}',
    "+ in a loop": '{% set ns = namespace(s="a"*1000) %}{% for i in range(40) %}'
                   '{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}',
    "list + in a loop": '{% set ns = namespace(s=["a"*1000]) %}{% for i in range(40) %}'
                        '{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}',
    "join filter": f'{{{{ ([{BIG}]*100000)|join(",") }}}}',
    "join method": f'{{{{ ",".join([{BIG}]*100000) }}}}',
    "join of an iterator": f'{{{{ ([{BIG}]*100000)|reverse|join }}}}',
    "string filter": f'{{{{ ([{BIG}]*100000)|string|length }}}}',
    "printed list": f'{{{{ [{BIG}]*100000 }}}}',
    "wordwrap": '{{ ("a "*50000)|wordwrap(1, true, "b"*100000) }}',
    "block set": '{% set x %}{% for i in range(100000) %}{{ "a"*99990 ~ i }}{% endfor %}'
                 '{% endset %}{{ x|length }}',
    "filter block": '{% filter upper %}{% for i in range(100000) %}{{ "a"*99990 ~ i }}'
                    '{% endfor %}{% endfilter %}',
    "macro call": '{% macro m() %}{% for i in range(100000) %}{{ "a"*99990 ~ i }}'
                  '{% endfor %}{% endmacro %}{{ m()|length }}',
    "bytes %": '{{ ("%999999999s".encode()) % "x".encode() }}',
    "hex in a loop": '{% set ns = namespace(s="a".encode()) %}{% for i in range(40) %}'
                     '{% set ns.s = ns.s.hex().encode() %}{% endfor %}{{ ns.s|length }}',
    "utf-16 in a loop": '{% set ns = namespace(s="a") %}{% for i in range(40) %}'
                        '{% set ns.s = ns.s.encode("utf-16").decode("latin-1") %}{% endfor %}'
                        '{{ ns.s|length }}',
    "integer product": '{% set ns = namespace(n=2**200) %}{% for i in range(40) %}'
                       '{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}',
}

CHILD = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from maild.errors import TemplateError
from maild.macros.model import Macro, MacroActions
from maild.macros.render import RenderContext, render_macro
out = {{}}
for name, body in json.loads(sys.stdin.read()).items():
    macro = Macro("inline", "en", "Inline", (), "", (), MacroActions(), body, Path("x.en.j2"))
    try:
        render_macro(macro, RenderContext(ticket_id=1))
        out[name] = "rendered"
    except TemplateError as exc:
        out[name] = "refused: " + str(exc)
    except MemoryError:
        out[name] = "MemoryError"
print(json.dumps(out))
"""


def render_capped(templates: dict[str, str]) -> dict[str, str]:
    """Render each template in a child under MEMORY_LIMIT; name -> outcome."""
    done = subprocess.run([sys.executable, "-c", CHILD.format(limit=MEMORY_LIMIT)],
                          input=json.dumps(templates), capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_every_growing_operation_is_refused_under_a_memory_limit() -> None:
    outcomes = render_capped(AMPLIFYING)
    wrong = {k: v for k, v in outcomes.items() if not v.startswith("refused: ") or not any(
        bound in v for bound in ("would be longer than", "bits", "% is not allowed"))}
    assert wrong == {}
    assert "a replace would be longer than 100000" in outcomes["replace filter"]
    assert "a ~ concatenation" in outcomes["~ in a loop"]


def test_the_child_really_runs_out_of_memory_without_the_bounds() -> None:
    """The cap is tight enough to catch a missing bound: plain Python under it
    cannot build what the replace template asks for."""
    probe = CHILD.split("from maild")[0] + (
        "try:\n    ('a'*100000).replace('a', 'b'*100000)\n    print('built')\n"
        "except MemoryError:\n    print('MemoryError')\n")
    done = subprocess.run([sys.executable, "-c", probe.format(limit=MEMORY_LIMIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "MemoryError"


@pytest.mark.parametrize("body", [
    '{{ ("a"*10)|replace("a", "bc") ~ "x" + "y" }}',
    '{{ [1, 2, 3]|join(", ") }} {{ ", ".join(["a", "b"]) }} {{ "a b c"|wordwrap(2) }}',
    '{% set y %}{% for i in range(3) %}{{ i }}{% endfor %}{% endset %}{{ y }}',
    '{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m("a") }}{{ ("a"*99999)|length }}',
    '{{ (2**100) * (2**100) }} {{ ("a"*50000 + "b"*50000)|length }}',
])
def test_ordinary_templates_still_render(body: str) -> None:
    assert render_macro(inline_macro(body), RenderContext(ticket_id=1)).body


def test_text_size_stops_counting_past_the_limit() -> None:
    shared = ["x" * 1000] * 100_000  # a hundred thousand references to one string
    assert text_size(shared) > MAX_VALUE_SIZE
    assert text_size("a" * MAX_VALUE_SIZE) == MAX_VALUE_SIZE
    assert text_size({"k": [1, 2]}) < 100
