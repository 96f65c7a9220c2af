"""`tidescaler validate FILE|-`: check ScaledObjects offline, for CI and pre-commit.

Each ScaledObject (in one or many YAML documents, or in the `List` that
`kubectl get scaledobjects -o yaml` prints) is checked

1. against KEDA's CRD schema (the `openAPIV3Schema` the API server enforces,
   shipped in `scaler/data/keda/`), including the fields it does not know,
   which `kubectl apply` rejects under its default strict field validation,
   and the CRD's one CEL rule (minReplicaCount <= maxReplicaCount);
2. through tidescaler's own trigger parser, for every trigger of type
   `external` or `external-push` whose `scalerAddress` names tidescaler (or
   every external trigger with `--all-external`): the same parser the scaler
   runs on each request.

One line per problem, `FILE:doc N: scaledobject NAMESPACE/NAME: WHERE: PROBLEM`,
with a did-you-mean for misspelt keys; the exit status is 1 when there is any.
A ScaledJob whose trigger names tidescaler is a problem: KEDA turns a ScaledJob's
metric into a number of Jobs to start, not into replicas, so a replica count as
the metric would start that many Jobs on every poll. Documents of other kinds
are skipped. A key given twice in one mapping is a
problem in any document (YAML keeps the last silently; kubectl rejects it).
Files are read for CI from pull requests, so each is bounded while it is read:
nesting past MAX_DEPTH, aliases expanding past MAX_ALIAS_VALUES values (an alias
bomb) and an alias inside its own anchor are one problem line each.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TextIO

import jsonschema
import yaml

from scaler.policy import PolicyError, parse_policy

API_VERSION = "keda.sh/v1alpha1"
CRD_FILE = "keda.sh_scaledobjects.yaml"
EXTERNAL_TYPES = frozenset({"external", "external-push"})
# KEDA's CRD gives a map[string]string for metadata; its own scalers reject these too.
DEFAULT_SCALER_NAME = "tidescaler"


@cache
def scaledobject_schema() -> dict[str, Any]:
    """KEDA's ScaledObject `openAPIV3Schema` (v1alpha1), from the copy in the package."""
    text = (resources.files("scaler") / "data" / "keda" / CRD_FILE).read_text(encoding="utf-8")
    crd = yaml.safe_load(text)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@dataclass(frozen=True)
class Problem:
    where: str  # "file:doc N: scaledobject ns/name"
    path: str  # "spec.triggers[0].metadata" or "trigger[0]"
    message: str

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.path}: {self.message}"
            if self.path
            else (f"{self.where}: {self.message}")
        )


# Bounds on what one file may make the checks walk (validate reads pull requests in CI):
# nesting (a ScaledObject is about 10 deep, a kubectl List with managedFields about 20;
# the composer recurses, so without a bound deep nesting is a RecursionError), and the
# values YAML aliases add when expanded (a 13-line alias bomb is a billion of them).
# Aliases themselves are legitimate YAML that kubectl accepts, so they are bounded, not
# refused.
MAX_DEPTH = 64
MAX_ALIAS_VALUES = 100_000


class _Refused(Exception):
    """A file past one of the bounds: the message, and the line it was found on."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class _Duplicate:
    doc: int  # 1-based, as the problem lines count documents
    at: tuple[Any, ...]  # path of the mapping holding the key twice
    key: str
    lines: tuple[int, int]


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that, while composing, bounds the depth and the values aliases expand
    to, refuses an alias inside the node it names (an endless structure), and notes
    keys given twice in one mapping (which a plain load silently drops, last one wins,
    while kubectl's strict field validation rejects them)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[_Duplicate] = []
        self._doc = 0
        self._at: list[Any] = []
        self._sizes: dict[yaml.Node, int] = {}  # values in each node, aliases expanded
        self._aliased = 0
        # What each node was built into, and each mapping or list built back to its node
        # (with the object, so that its id stays its own): for `written`.
        self._built: dict[yaml.Node, Any] = {}
        self._node_of: dict[int, tuple[Any, yaml.Node]] = {}

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # An unquoted integer past Python's 4,300-digit limit raises ValueError, which is
        # not a YAMLError: say where, as for any other value that cannot be read.
        try:
            value: int = super().construct_yaml_int(node)
        except ValueError as err:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer that cannot be read ({str(err)[:60]}...)", node.start_mark
            ) from None
        return value

    def compose_document(self) -> yaml.Node | None:
        self._doc += 1
        self._sizes.clear()  # anchors do not cross documents
        node: yaml.Node | None = super().compose_document()
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None and target not in self._sizes:
                raise _Refused(
                    f"alias *{event.anchor} is inside the value &{event.anchor} names, an "
                    "endless structure that kubectl refuses; write the value out",
                    event.start_mark.line + 1,
                )
            node = super().compose_node(parent, index)  # an undefined one: ComposerError
            self._aliased += self._sizes[node] if node is not None else 0
            if self._aliased > MAX_ALIAS_VALUES:
                raise _Refused(
                    f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values (an alias "
                    "bomb?); write the values out, or alias fewer and smaller ones",
                    event.start_mark.line + 1,
                )
            return node
        if len(self._at) >= MAX_DEPTH:
            raise _Refused(
                f"nested more than {MAX_DEPTH} levels deep (a ScaledObject needs about 10); "
                "remove the extra nesting",
                self.peek_event().start_mark.line + 1,  # type: ignore[no-untyped-call]
            )
        if parent is None:
            self._at.append("")  # the document's root
        elif isinstance(index, int):
            self._at.append(index)
        elif isinstance(index, yaml.ScalarNode):
            self._at.append(index.value)
        else:
            self._at.append("?")  # a mapping key, or a value under a key that is not text
        try:
            node = super().compose_node(parent, index)
        finally:
            self._at.pop()
        if node is None:
            return node
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[item] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[k] + self._sizes[v] for k, v in node.value)
        else:
            size = 1
        self._sizes[node] = size
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        data = super().construct_object(node, deep=deep)
        self._built[node] = data
        if isinstance(data, dict | list):
            self._node_of[id(data)] = (data, node)
        return data

    def written(self, container: Any, part: Any) -> str | None:
        """The scalar `container[part]` as the file writes it (`off`, not False; `010`,
        not 8), or None when it is not a scalar of this file."""
        _, node = self._node_of.get(id(container), (None, None))
        item: yaml.Node | None = None
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            item = node.value[part] if 0 <= part < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            # The last pair with that key: the one the built mapping kept (merges included).
            for key, value in node.value:
                if key in self._built and type(self._built[key]) is type(part):
                    item = value if self._built[key] == part else item
        return item.value if isinstance(item, yaml.ScalarNode) else None

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node: yaml.MappingNode = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a key that is a list or mapping: not a field name
            ident, line = (key.tag, key.value), key.start_mark.line + 1
            if ident in seen:
                at = tuple(self._at[1:])  # without the document's root
                self.duplicates.append(_Duplicate(self._doc, at, key.value, (seen[ident], line)))
            else:
                seen[ident] = line
        return node


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unknown_fields(value: Any, schema: Mapping[str, Any], at: list[Any]) -> Iterator[Problem]:
    """Fields the schema does not declare, as kubectl's strict field validation reports them."""
    if isinstance(value, Mapping):
        properties = schema.get("properties")
        if properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            for key, item in value.items():
                if key in properties:
                    yield from _unknown_fields(item, properties[key], [*at, key])
                elif at == ["metadata"]:
                    continue  # ObjectMeta is not spelt out in a CRD; the API server checks it
                else:
                    close = difflib.get_close_matches(str(key), list(properties), n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    yield Problem("", _path([*at, key]), f"unknown field {key!r}{hint}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, item in value.items():
                yield from _unknown_fields(item, extra, [*at, key])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            yield from _unknown_fields(item, schema["items"], [*at, i])


# The scalar at (container, key) as the file writes it, or None (see _BoundedLoader.written).
Written = Callable[[Any, Any], str | None]


def _not_written(container: Any, part: Any) -> None:
    return None


def _at(doc: Any, path: Sequence[Any], written: Written) -> str | None:
    """The scalar at `path` in `doc` as written, or None."""
    if not path:
        return None
    container = doc
    for part in path[:-1]:
        container = container[part]
    return written(container, path[-1])


def _string_advice(instance: Any, text: str | None) -> str:
    """How to make a value the schema wants as a string into one, in the file's own words."""
    if instance is None:
        said = f"YAML reads {text} as null" if text else "the value is empty"
        return f"{said}: write the value in quotes"
    if isinstance(instance, dict | list):
        return "write it as one string, in quotes"
    return f"quote it: {text if text is not None else str(instance)!r}"


def _schema_problems(doc: Mapping[str, Any], written: Written = _not_written) -> Iterator[Problem]:
    schema = scaledobject_schema()
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        message = error.message
        if error.validator == "required":
            message = f"{message} (KEDA requires it)"
        elif error.validator == "type" and error.validator_value == "string":
            text = _at(doc, list(error.path), written)
            message = f"{message}; {_string_advice(error.instance, text)}"
        yield Problem("", _path(list(error.path)), message)
    yield from _unknown_fields(doc, schema, [])
    spec = doc.get("spec")
    if isinstance(spec, Mapping):
        low, high = spec.get("minReplicaCount"), spec.get("maxReplicaCount", 100)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            # The CRD's x-kubernetes-validations rule, evaluated by the API server.
            yield Problem(
                "", "spec", "minReplicaCount must be less than or equal to maxReplicaCount"
            )


def _is_tidescaler(trigger: Mapping[str, Any], all_external: bool) -> bool:
    if trigger.get("type") not in EXTERNAL_TYPES:
        return False
    if all_external:
        return True
    metadata = trigger.get("metadata")
    address = metadata.get("scalerAddress", "") if isinstance(metadata, Mapping) else ""
    return DEFAULT_SCALER_NAME in str(address).lower()


def _tidescaler_triggers(
    doc: Mapping[str, Any], all_external: bool
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Each trigger of `doc` that names tidescaler, with its index in spec.triggers."""
    spec = doc.get("spec")
    triggers = spec.get("triggers") if isinstance(spec, Mapping) else None
    if not isinstance(triggers, list):
        return
    for i, trigger in enumerate(triggers):
        if isinstance(trigger, Mapping) and _is_tidescaler(trigger, all_external):
            yield i, trigger


def _trigger_problems(
    doc: Mapping[str, Any], all_external: bool, written: Written = _not_written
) -> Iterator[Problem]:
    for i, trigger in _tidescaler_triggers(doc, all_external):
        metadata = trigger.get("metadata")
        if not isinstance(metadata, Mapping):
            yield Problem(
                "", f"trigger[{i}]", "metadata is missing; tidescaler reads its policy there"
            )
            continue
        # The schema already reported values that are not strings; parse what they would
        # say once quoted as the schema's problem line advises (`off`, not False).
        text = {str(k): _metadata_text(metadata, k, written) for k in metadata}
        try:
            parse_policy(text)
        except PolicyError as err:
            for problem in err.problems:
                yield Problem("", f"trigger[{i}]", problem)


def _metadata_text(metadata: Mapping[str, Any], key: Any, written: Written) -> str:
    value = metadata[key]
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    text = written(metadata, key)
    return str(value) if text is None else text


def _of_kind(docs: Sequence[Any], kind: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Each object of `kind` with its document's number: a document, or an item of a List."""
    for n, doc in enumerate(docs, start=1):
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") in ("List", f"{kind}List") and isinstance(doc.get("items"), list):
            for item in doc["items"]:
                if isinstance(item, Mapping) and item.get("kind") == kind:
                    yield n, item
        elif doc.get("kind") == kind:
            yield n, doc


def _scaledjob_problems(doc: Mapping[str, Any], all_external: bool) -> Iterator[str]:
    for i, _ in _tidescaler_triggers(doc, all_external):
        yield (
            f"trigger[{i}]: tidescaler decides the replicas of a ScaledObject; KEDA reads a "
            "ScaledJob's metric as a number of Jobs to start, so this trigger would start "
            "Jobs on every poll: use a ScaledObject"
        )


def _name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '<no name>')}"


def _duplicate_problem(dup: _Duplicate, docs: Sequence[Any], label: str) -> str:
    """A key given twice, said like the other problems: in the ScaledObject holding it
    when there is one (a document, or an item of a List), else in the document."""
    where, at = f"{label}:doc {dup.doc}", list(dup.at)
    doc = docs[dup.doc - 1] if dup.doc <= len(docs) else None
    if isinstance(doc, Mapping):
        items = doc.get("items")
        if doc.get("kind") == "ScaledObject":
            where = f"{where}: scaledobject {_name(doc)}"
        elif (
            len(at) >= 2
            and at[0] == "items"
            and isinstance(at[1], int)
            and isinstance(items, list)
            and at[1] < len(items)
            and isinstance(items[at[1]], Mapping)
            and items[at[1]].get("kind") == "ScaledObject"
        ):
            where, at = f"{where}: scaledobject {_name(items[at[1]])}", at[2:]
    first, second = dup.lines
    return str(
        Problem(
            where,
            _path([*at, dup.key]),
            f"given twice (lines {first} and {second}); YAML keeps only the last, and kubectl "
            "rejects duplicate fields: keep one",
        )
    )


def validate_text(text: str, label: str, all_external: bool = False) -> tuple[list[str], int]:
    """Problems in one file's text, one line each, and how many ScaledObjects it holds."""
    loader: _BoundedLoader | None = None
    try:
        # Inside the try: the reader checks the text for control characters (an ANSI
        # escape, a NUL) as the loader is made, and raises ReaderError there.
        loader = _BoundedLoader(text)
        docs: list[Any] = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
    except _Refused as err:
        return [f"{label}:{err.line}: {err.message}"], 0
    except yaml.reader.ReaderError as err:
        # No problem_mark: its first line says which character and where.
        first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        line = text.count("\n", 0, err.position) + 1
        return [f"{label}:{line}: not valid YAML ({first}); remove that character"], 0
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark is not None else label
        problem = getattr(err, "problem", None) or str(err)
        return [f"{where}: not valid YAML ({problem}); fix the indentation or quoting there"], 0
    finally:
        if loader is not None:
            loader.dispose()
    problems = [_duplicate_problem(d, docs, label) for d in loader.duplicates]
    count = 0
    for n, doc in _of_kind(docs, "ScaledObject"):
        count += 1
        where = f"{label}:doc {n}: scaledobject {_name(doc)}"
        meta = doc.get("metadata")
        if not isinstance(meta, Mapping) or not meta.get("name"):
            problems.append(f"{where}: metadata.name: missing; every ScaledObject needs a name")
        if "apiVersion" not in doc:
            problems.append(f"{where}: apiVersion: missing; expected {API_VERSION}")
        elif doc.get("apiVersion") != API_VERSION:
            problems.append(
                f"{where}: apiVersion {doc.get('apiVersion')!r}: expected {API_VERSION}"
            )
        found = (
            *_schema_problems(doc, loader.written),
            *_trigger_problems(doc, all_external, loader.written),
        )
        for problem in found:
            problems.append(str(Problem(where, problem.path, problem.message)))
    for n, doc in _of_kind(docs, "ScaledJob"):
        for message in _scaledjob_problems(doc, all_external):
            problems.append(f"{label}:doc {n}: scaledjob {_name(doc)}: {message}")
    return problems, count


def add_validate_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check ScaledObject YAML offline against KEDA's CRD and tidescaler's parser",
        description="Check ScaledObjects (one or many YAML documents, or the List of "
        "`kubectl get scaledobjects -o yaml`) against KEDA's CRD schema and tidescaler's "
        "trigger parser. One line per problem; exit status 1 when there is any.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML files, or - for stdin")
    p.add_argument(
        "--all-external",
        action="store_true",
        help="parse every external/external-push trigger as tidescaler's (default: only those "
        "whose scalerAddress contains 'tidescaler')",
    )
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    problems: list[str] = []
    total = 0
    for name in args.files:
        label = "<stdin>" if name == "-" else name
        try:
            if name == "-":
                text = sys.stdin.read()
            else:
                with open(name, encoding="utf-8-sig") as handle:
                    text = handle.read()
        except UnicodeDecodeError as err:
            problems.append(f"{label}: byte {err.start} is not UTF-8 text; save the file as UTF-8")
            continue
        except OSError as err:
            reason = err.strerror or str(err)
            problems.append(f"{label}: cannot read ({reason}); check the path")
            continue
        found, count = validate_text(text, label, args.all_external)
        problems.extend(found)
        total += count
        if count == 0 and not found:
            sys.stderr.write(f"{label}: no ScaledObject (other kinds are not checked)\n")
    for line in problems:
        out.write(line + "\n")
    if problems:
        jobs = sum(": scaledjob " in line for line in problems)
        where = f"{total} ScaledObject(s)" + (f" and {jobs} ScaledJob trigger(s)" if jobs else "")
        sys.stderr.write(f"{len(problems)} problem(s) in {where}\n")
        return 1
    sys.stderr.write(f"{total} ScaledObject(s): no problem\n")
    return 0
