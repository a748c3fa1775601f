"""The Jinja2 sandbox macros render in, and the static checks run on load.

`make_environment()` builds an `ImmutableSandboxedEnvironment` with
`StrictUndefined`, autoescape off (bodies are text/plain), a whitelist of
filters, only `range` (capped by the sandbox) and `namespace` as globals, and
refusals for the operations that turn a short template into a huge string:
every operation that can grow a value is checked by `maild.macros.bounds`
before the value is built (`*`, `**`, `+`, `~`, `%` on strings refused, the
growing filters and str methods, block buffers, each printed value).
`check_template()` finds, without rendering, what would fail or misbehave:
syntax errors, unknown filters, unknown variables or attributes, private
attributes, include/import. This module never renders and does no I/O.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from maild.macros import bounds
from maild.macros.model import TEMPLATE_VARIABLES

#: Longest string or list a template may build with `*` (or any other operation).
MAX_REPEAT_ITEMS = bounds.MAX_VALUE_SIZE
#: Largest result, in bits, of `**` on integers.
MAX_POWER_BITS = 256

#: Filters that cannot amplify their input (no padding, no batching, no lipsum).
ALLOWED_FILTERS: frozenset[str] = frozenset(
    {
        "capitalize", "count", "d", "default", "first", "int", "join", "last",
        "length", "list", "lower", "replace", "reverse", "sort", "string",
        "title", "trim", "truncate", "unique", "upper", "wordcount", "wordwrap",
    }
)  # fmt: skip

#: Methods whose one argument sets the output size, refused on every object.
_AMPLIFYING_METHODS: frozenset[str] = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map", "translate"}
)

_REFERENCE_NODES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's compiler with `~` and block output buffers going through the bounds."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")


class MacroEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus size limits on everything that can grow a value."""

    code_generator_class = BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    @staticmethod
    def bounded_concat(values: tuple[Any, ...]) -> str:
        return bounds.bounded_concat(values)

    @staticmethod
    def output_buffer() -> bounds.BoundedBuffer:
        return bounds.BoundedBuffer()

    def call(__self, __context: Context, __obj: Any, *args: Any,  # noqa: N805
             **kwargs: Any) -> Any:
        """Calls from templates: `str.replace` / `str.join` checked before, every result
        after (a method that doubles its input, like `bytes.hex`, cannot be looped)."""
        args = bounds.bounded_method_call(__obj, args, kwargs)
        return bounds.check_size(super().call(__context, __obj, *args, **kwargs),
                                 "a call's result")

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Refuse padding/format methods on top of the sandbox's own rules."""
        if attr in _AMPLIFYING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` is refused by `is_safe_attribute`, so never wrap it."""
        return None

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        """Run `*`, `**`, `+` or `%` after checking the result stays small."""
        if operator_ == "*":
            bounds.check_multiply(left, right)
            return operator.mul(left, right)
        if operator_ == "+":
            bounds.check_add(left, right)
            return operator.add(left, right)
        if operator_ == "**":
            _check_power(left, right)
            return operator.pow(left, right)
        if isinstance(left, str | bytes):
            raise SecurityError("string formatting with % is not allowed; use ~ to join text")
        return operator.mod(left, right)


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)) or abs(base) < 2:
        return
    if exponent > 0 and exponent * math.log2(abs(base)) > MAX_POWER_BITS:
        raise SecurityError(f"power larger than {MAX_POWER_BITS} bits")


def make_environment() -> MacroEnvironment:
    """A fresh sandbox for macro bodies and subjects (plain text, strict)."""
    env = MacroEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=lambda value: bounds.check_size(value, "a printed value"),
    )
    env.filters = {name: bounds.bounded_filter(name, env.filters[name])
                   for name in ALLOWED_FILTERS}
    env.globals = {"range": env.globals["range"], "namespace": env.globals["namespace"]}
    return env


@dataclass(frozen=True)
class TemplateProblem:
    """One thing wrong with a template source; `line` is 1-based within it."""

    line: int | None
    message: str


def check_template(env: MacroEnvironment, source: str) -> list[TemplateProblem]:
    """Every problem `source` has, found without rendering it."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno, f"syntax error: {one_line(exc.message or '')}")]
    try:
        env.compile(ast)
        undeclared = meta.find_undeclared_variables(ast)
    except jinja2.TemplateAssertionError as exc:
        message = one_line(exc.message or "")
        if message.startswith("No filter named"):
            message += f" (allowed: {', '.join(sorted(ALLOWED_FILTERS))})"
        return [TemplateProblem(exc.lineno, message)]
    problems = list(_unknown_names(ast, undeclared))
    problems += _bad_attributes(ast)
    problems += _bare_objects(ast, undeclared)
    problems += [
        TemplateProblem(node.lineno, "include, extends and import are not allowed in macros")
        for node in ast.find_all(_REFERENCE_NODES)
    ]
    return sorted(problems, key=lambda p: (p.line or 0, p.message))


def _unknown_names(ast: nodes.Template, undeclared: set[str]) -> Iterator[TemplateProblem]:
    known = ", ".join(sorted(TEMPLATE_VARIABLES))
    reported: set[str] = set()
    for node in ast.find_all(nodes.Name):
        name = node.name
        if name in undeclared and name not in TEMPLATE_VARIABLES and name not in reported:
            reported.add(name)
            yield TemplateProblem(node.lineno, f"unknown variable {name!r} (known: {known})")


def _bad_attributes(ast: nodes.Template) -> Iterator[TemplateProblem]:
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        attr = _static_attribute(node)
        if attr is None:
            continue
        if attr.startswith("_"):
            yield TemplateProblem(node.lineno, f"private attribute {attr!r} is not allowed")
            continue
        owner = node.node
        if isinstance(owner, nodes.Name) and owner.name in TEMPLATE_VARIABLES:
            allowed = TEMPLATE_VARIABLES[owner.name]
            if attr not in allowed:
                yield TemplateProblem(
                    node.lineno,
                    f"unknown variable '{owner.name}.{attr}' (known: {', '.join(sorted(allowed))})",
                )


def _bare_objects(ast: nodes.Template, undeclared: set[str]) -> Iterator[TemplateProblem]:
    """`{{ customer }}` renders a namespace repr: ask for an attribute instead."""
    owners = {
        id(node.node)
        for node in ast.find_all((nodes.Getattr, nodes.Getitem))
        if isinstance(node, nodes.Getattr | nodes.Getitem)
    }
    for node in ast.find_all(nodes.Name):
        if node.name in TEMPLATE_VARIABLES and node.name in undeclared and id(node) not in owners:
            fields = ", ".join(f"{node.name}.{a}" for a in sorted(TEMPLATE_VARIABLES[node.name]))
            yield TemplateProblem(node.lineno, f"{node.name!r} is an object; use {fields}")


def _static_attribute(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """The attribute name when it is spelled in the template, else None."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def one_line(text: str) -> str:
    """Collapse an error message onto one line."""
    return " ".join(text.split())
