"""The structured values inside trigger metadata: `schedules` and `k1=v1,k2=v2` lists.

`schedules` is YAML or JSON written by whoever can write a ScaledObject. It is
read from the YAML event stream (libyaml where available; JSON is YAML too), not
by a YAML constructor: an anchor, alias or tag is refused before anything is
built, so an alias bomb costs nothing, and nesting depth and the number of nodes
are bounded while reading, so neither deep nesting nor a huge list can cost more
than a few milliseconds. Scalars stay the text that was written (`5`, `"5"` and
`5` in JSON all give "5"), which is what the key parsers expect anyway.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import yaml

MAX_WINDOWS = 50
MAX_DEPTH = 4  # the list, a window, (a value nested by mistake, and one more level)
MAX_NODES = MAX_WINDOWS * 16  # a window is a mapping of a few keys and values
MAX_PAIRS = 20  # entries of a queryParameters / customHeaders list

_LOADER: type[Any] = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

Node = str | list["Node"] | dict[str, "Node"]


class TextError(ValueError):
    """A structured value that cannot be read; the message says why, without the key."""


_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _flow_too_deep(text: str) -> bool:
    """Nesting of [ ] { } looked at before any parser sees it (a parser would scan a
    "[[[[..." prefix up to its own limit first). Brackets inside quotes count too:
    no value of a window (cron, time zone, number) has any."""
    brackets = _NOT_BRACKET.sub("", text)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def load_schedules(text: str) -> Node:
    """The YAML/JSON document in `text` as str / list / dict, or TextError."""
    if _flow_too_deep(text):
        raise TextError(f"nested more than {MAX_DEPTH} levels deep")
    stack: list[list[Node] | dict[str, Node]] = []
    pending_key: list[str | None] = []
    root: Node | None = None
    nodes = 0

    def attach(node: Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if isinstance(parent, list):
            parent.append(node)
        elif pending_key[-1] is None:
            if not isinstance(node, str):
                raise TextError("a mapping key must be plain text")
            pending_key[-1] = node
        else:
            key = pending_key[-1]
            if key in parent:
                raise TextError(f"key {key[:60]!r} appears twice in one mapping")
            parent[key] = node
            pending_key[-1] = None

    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise TextError("YAML aliases (*name) are not allowed")
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                raise TextError("YAML anchors (&name) are not allowed")
            if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
                if event.tag is not None and not _implicit(event):
                    raise TextError("YAML tags (!name) are not allowed")
                nodes += 1
                if nodes > MAX_NODES:
                    raise TextError(
                        f"too many values (more than {MAX_NODES}; at most {MAX_WINDOWS} windows)"
                    )
            if isinstance(event, yaml.ScalarEvent):
                attach(event.value)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise TextError(f"nested more than {MAX_DEPTH} levels deep")
                collection: list[Node] | dict[str, Node] = (
                    [] if isinstance(event, yaml.SequenceStartEvent) else {}
                )
                attach(collection)
                stack.append(collection)
                pending_key.append(None)
            elif isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                pending_key.pop()
            elif isinstance(event, yaml.DocumentStartEvent) and root is not None:
                raise TextError("more than one YAML document")
    except yaml.YAMLError as err:
        raise TextError(f"not valid YAML or JSON ({_first_line(err)})") from None
    except UnicodeError:  # a lone surrogate: text no parser (nor gRPC) can carry
        raise TextError("not valid text (it holds characters UTF-8 cannot encode)") from None
    if root is None:
        raise TextError("empty document")
    return root


def _implicit(event: yaml.ScalarEvent | yaml.CollectionStartEvent) -> bool:
    # A tag the parser resolved itself (e.g. "!" on a quoted scalar) is not one the user wrote.
    return event.tag == "!" or (
        isinstance(event, yaml.CollectionStartEvent) and bool(event.implicit)
    )


def _first_line(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or err.__class__.__name__
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{str(problem)[:80]}{where}"


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """KEDA's `k1=v1,k2=v2` (its typed config's map parsing): split on ",", each
    element trimmed and split on "=" into exactly two parts, name and value
    trimmed. Stricter than KEDA: an empty name and a name given twice are errors
    (KEDA would send an empty name, and keep the last of two silently)."""
    elements = text.split(",")
    if len(elements) > MAX_PAIRS:
        raise TextError(f"more than {MAX_PAIRS} entries")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for element in elements:
        parts = element.strip().split("=")
        if len(parts) != 2:
            shown = element.strip()[:60]
            raise TextError(f"{shown!r} is not name=value")
        name, value = parts[0].strip(), parts[1].strip()
        if not name:
            raise TextError(f"empty name in {element.strip()[:60]!r}")
        if name in seen:
            raise TextError(f"{name[:60]!r} is given twice")
        seen.add(name)
        pairs.append((name, value))
    return tuple(pairs)
