"""Limits on trigger metadata, checked before any value is parsed.

Anyone who can write a ScaledObject can send any map<string,string>, so the
sizes are bounded first (cheap length checks, no parsing), error messages quote
only a short prefix of an offending value, and a whole error message stays small
enough for a gRPC status (a megabyte message would turn INVALID_ARGUMENT into
RESOURCE_EXHAUSTED on the client).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MAX_KEYS = 64
MAX_KEY_BYTES = 128
MAX_VALUE_BYTES = 4 * 1024
# PromQL and the list of windows may legitimately be long.
# A PEM certificate chain (KEDA's caCert, tlsClientCert, tlsClientKey) runs to kilobytes too.
LARGE_VALUE_KEYS = frozenset(
    {"query", "forecastQuery", "schedules", "caCert", "tlsClientCert", "tlsClientKey"}
)
MAX_LARGE_VALUE_BYTES = 16 * 1024
MAX_METADATA_BYTES = 64 * 1024

QUOTED_CHARS = 60  # of an offending value in a message
MAX_MESSAGE_BYTES = 2 * 1024  # of a whole PolicyError message


def utf8_len(text: str) -> int:
    """Bytes of `text` in UTF-8; O(1) for ASCII (CPython knows it without looking)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def quote(value: str) -> str:
    """repr of `value`, or of its first QUOTED_CHARS characters and its size."""
    if len(value) <= QUOTED_CHARS:
        return repr(value)
    return f"{value[:QUOTED_CHARS]!r}… ({utf8_len(value)} bytes)"


def value_limit(key: str) -> int:
    base = key.removesuffix("FromEnv")
    return MAX_LARGE_VALUE_BYTES if base in LARGE_VALUE_KEYS else MAX_VALUE_BYTES


def _too_long(text: str, limit: int) -> bool:
    # len() counts characters, never more than the bytes: most values need no encoding.
    return len(text) > limit or (len(text) * 4 > limit and utf8_len(text) > limit)


def _surely_within_limits(metadata: Mapping[str, str]) -> bool:
    """The common case, decided with a few C-level calls (this runs on every request):
    a UTF-8 character is at most 4 bytes, so short enough in characters is short
    enough in bytes. False means "look carefully", not "too large"."""
    try:
        value_chars = sum(map(len, metadata.values()))
        key_chars = sum(map(len, metadata))
        if value_chars * 4 > MAX_VALUE_BYTES or (key_chars + value_chars) * 4 > MAX_METADATA_BYTES:
            return False
        "".join(metadata.values())  # TypeError unless all are strings (cheap: they are short)
        "".join(metadata)
    except TypeError:
        return False
    return not metadata or max(map(len, metadata)) * 4 <= MAX_KEY_BYTES


def size_problems(metadata: Mapping[str, str]) -> list[str]:
    """What exceeds a limit, found without parsing anything (empty: within limits)."""
    if len(metadata) > MAX_KEYS:
        return [f"too many keys: {len(metadata)} (at most {MAX_KEYS})"]
    if _surely_within_limits(metadata):
        return []
    problems = []
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(f"key {quote(str(key))}: keys and values must be strings")
            continue
        if _too_long(key, MAX_KEY_BYTES):
            problems.append(f"key {quote(key)} is too long (at most {MAX_KEY_BYTES} bytes)")
            continue
        limit = value_limit(key)
        if _too_long(value, limit):
            shown = key if key.isprintable() else quote(key)  # no raw control bytes
            problems.append(
                f"{shown}: the value is too long ({utf8_len(value)} bytes, at most {limit})"
            )
            continue
        total += utf8_len(key) + utf8_len(value)
    if not problems and total > MAX_METADATA_BYTES:
        problems.append(
            f"the metadata is too large ({total} bytes in all, at most {MAX_METADATA_BYTES})"
        )
    return problems


def bounded_message(prefix: str, problems: Iterable[str]) -> str:
    """prefix + problems joined by "; ", cut to MAX_MESSAGE_BYTES with "and N more problems"."""
    listed = list(problems)
    budget = MAX_MESSAGE_BYTES - utf8_len(prefix) - 40  # room for the "and N more" tail
    shown: list[str] = []
    used = 0
    for problem in listed:
        cost = utf8_len(problem) + 2
        if used + cost > budget:
            break
        shown.append(problem)
        used += cost
    message = prefix + "; ".join(shown)
    rest = len(listed) - len(shown)
    if rest:
        message += f"{'; ' if shown else ''}and {rest} more problem{'s' if rest > 1 else ''}"
    return message
