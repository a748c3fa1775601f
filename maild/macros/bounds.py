"""Size limits for everything a macro template builds, checked BEFORE it is built.

A template is untrusted code: `("a"*100000)|replace("a", "b"*100000)`, a `~` or
`+` that doubles a string in a loop, or `[s]*100000|join` would each ask for
gigabytes. Every operation that can make a value larger than its inputs is
checked here against `MAX_VALUE_SIZE` (characters of text, or items) from the
sizes of its inputs, and refused with `SecurityError` before Python allocates
the result: `+`, `*`, `~`, the `replace`/`join`/`wordwrap`/`string` filters, the
`replace`/`join` methods of str and bytes, integer products, a `{% set %}` /
`{% filter %}` / macro-call block's output buffer, and every value printed.

`text_size` estimates how long a value's text is without converting it (a list
of a hundred thousand references to one long string is small in memory but
enormous as text); it stops counting once past the limit, so it is cheap.
This module only measures and refuses; `maild.macros.sandbox` wires it in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from jinja2.sandbox import SecurityError
from jinja2.utils import Namespace

#: Longest string (characters) or list (items) any template operation may build.
MAX_VALUE_SIZE = 100_000
#: Largest integer (in bits) a product may build; `**` has its own, smaller cap.
MAX_INT_BITS = 4096
#: Filters whose output can be much larger than their input: checked before they run.
GROWING_FILTERS = frozenset({"replace", "join", "wordwrap", "string"})


def _too_large(what: str) -> SecurityError:
    return SecurityError(f"{what} would be longer than {MAX_VALUE_SIZE} characters or items")


def text_size(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """About how many characters `str(value)` has; any result > `limit` means "too
    large" (counting stops there, so nested shared lists cost at most `limit` steps)."""
    size = 0
    stack = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            size += len(item)
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            size += item.bit_length() // 3 + 2
        elif isinstance(item, list | tuple | set | frozenset):
            size += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            size += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, SimpleNamespace):
            stack.append(vars(item))
        else:  # floats, ranges, macros, loop objects: their text is short
            size += 64
    return size


def check_size(value: Any, what: str) -> Any:
    """`value` unchanged, or SecurityError if its text would be too long."""
    if text_size(value) > MAX_VALUE_SIZE:
        raise _too_large(what)
    return value


def check_add(left: Any, right: Any) -> None:
    """`+` on sequences: the result's length is the sum of theirs."""
    if isinstance(left, str | bytes | list | tuple) and isinstance(right, type(left)) and \
            len(left) + len(right) > MAX_VALUE_SIZE:
        raise _too_large("a sum")


def check_multiply(left: Any, right: Any) -> None:
    """`*`: sequence repetition and integer products."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int) and \
                len(seq) * count > MAX_VALUE_SIZE:
            raise _too_large("a repetition")
    if isinstance(left, int) and isinstance(right, int) and \
            left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"a product larger than {MAX_INT_BITS} bits")


def bounded_concat(values: Iterable[Any]) -> str:
    """`a ~ b ~ c`: every part's text, joined, checked before joining."""
    parts = list(values)
    check_size(parts, "a ~ concatenation")
    return "".join(map(str, parts))


def replaced_size(s: str | bytes, old: Any, new: Any, count: Any = -1) -> int:
    """The length of `s.replace(old, new, count)`, computed without building it."""
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return len(s)
    hits = s.count(old) if old else len(s) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(s, str | bytes) and replaced_size(s, old, new, count) > MAX_VALUE_SIZE:
        raise _too_large("a replace")


def check_join(separator: Any, items: Any) -> list[Any]:
    """The items as a list (an iterator is read once), checked joined with `separator`."""
    parts = list(items)
    sep = len(separator) if isinstance(separator, str | bytes) else 0
    if text_size(parts) + sep * max(len(parts) - 1, 0) > MAX_VALUE_SIZE:
        raise _too_large("a join")
    return parts


def check_wordwrap(s: Any, width: Any = 79, wrapstring: Any = None) -> None:
    """At most one `wrapstring` per `width` characters (and per existing line)."""
    if not isinstance(s, str):
        return
    lines = len(s) // max(width if isinstance(width, int) else 1, 1) + s.count("\n") + 1
    extra = len(wrapstring) if isinstance(wrapstring, str) else 1
    if len(s) + lines * extra > MAX_VALUE_SIZE:
        raise _too_large("a wordwrap")


def bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` (a Jinja filter) with its input checked first when it may grow its
    input, and its output checked after. Keeps Jinja's pass-context marker."""
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        value, rest = args[skip], args[skip + 1:]
        if name == "replace":
            check_replace(value, *rest[:2], *(rest[2:3] or [kwargs.get("count", -1)]))
        elif name == "join":  # an iterator (`|reverse`) is read once, here
            parts = check_join(rest[0] if rest else kwargs.get("d", ""), value)
            args = (*args[:skip], parts, *rest)
        elif name == "wordwrap":
            check_wordwrap(value, rest[0] if rest else kwargs.get("width", 79),
                           rest[2] if len(rest) > 2 else kwargs.get("wrapstring"))
        elif name == "string":
            check_size(value, "the string filter")
        return check_size(func(*args, **kwargs), f"the {name} filter")

    return run


def bounded_method_call(obj: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The arguments for `obj(*args)`, checked first when `obj` is the `replace` or
    `join` method of a str or bytes (a joined iterator is read once, here)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(owner, str | bytes):
        return args
    if name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else
                      kwargs.get("count", -1))
    elif name == "join" and args:
        return (check_join(owner, args[0]), *args[1:])
    return args


class BoundedBuffer(list[Any]):
    """The output buffer of a `{% set %}` block, a `{% filter %}` block or a macro call:
    refuses to grow past the limit instead of building a huge list, then string."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, item: Any) -> None:
        self.size += text_size(item)
        if self.size > MAX_VALUE_SIZE:
            raise _too_large("a block's output")
        super().append(item)

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.append(item)
