"""What a trigger may ask of the Prometheus request, by the server's configuration.

KEDA's prometheus keys let a trigger add URL parameters and HTTP headers and
skip certificate checks. Anyone who can write a ScaledObject writes these, so
the operator decides which names are allowed: a tenant must not be able to
send, say, another tenant's `X-Scope-OrgID`. `namespace` (Thanos Querier
tenancy) is always allowed, as in KEDA. Header names compare
case-insensitively, parameter names exactly (HTTP's own rules). A trigger
asking for `unsafeSsl` where the server does not allow it keeps certificate
checks on: KEDA also reads that key for its own connection to this scaler, so
refusing it would break triggers that never meant Prometheus.

The verdict depends only on the options, so it is computed once per distinct
set of options, not per request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from scaler.policy import (
    FRAMING_HEADERS,
    HEADER_NAME,
    RESERVED_QUERY_PARAMETERS,
    BackendOptions,
)
from scaler.policy_limits import bounded_message, quote

__all__ = ["BackendAccess", "allow_list_problems"]


# RFC 9110 field names are tokens; values must not break the header block.
_BAD_VALUE = re.compile(r"[\r\n\x00]")

_CACHE_LIMIT = 10_000


def allow_list_problems(
    query_parameters: Iterable[str], custom_headers: Iterable[str]
) -> list[str]:
    """Names an operator allowed that no trigger could ever use, each a problem: a
    configuration that reads as allowing something it does not."""
    problems = [
        f"--allowed-query-parameters: {name[:60]!r} is a parameter tidescaler sets itself "
        f"({', '.join(sorted(RESERVED_QUERY_PARAMETERS))}); no trigger can set it"
        for name in query_parameters
        if name in RESERVED_QUERY_PARAMETERS
    ]
    for name in custom_headers:
        if not HEADER_NAME.fullmatch(name):
            problems.append(f"--allowed-custom-headers: {name[:60]!r} is not an HTTP header name")
        elif name.lower() in FRAMING_HEADERS:
            problems.append(
                f"--allowed-custom-headers: {name!r} frames the request; no trigger can set it"
            )
    return problems


class BackendAccess:
    """The server's allow-lists, and the options a trigger's request really gets."""

    def __init__(
        self,
        *,
        allowed_query_parameters: Iterable[str] = (),
        allowed_custom_headers: Iterable[str] = (),
        allow_unsafe_ssl: bool = False,
    ) -> None:
        self.allowed_query_parameters = frozenset(
            name.strip() for name in allowed_query_parameters if name.strip()
        )
        self.allowed_custom_headers = frozenset(
            name.strip().lower() for name in allowed_custom_headers if name.strip()
        )
        self.allow_unsafe_ssl = allow_unsafe_ssl
        self._verdicts: dict[BackendOptions, tuple[BackendOptions, str | None]] = {}

    def check(self, options: BackendOptions) -> tuple[BackendOptions, str | None]:
        """The options to send, and the problem when the server refuses them (else None)."""
        verdict = self._verdicts.get(options)
        if verdict is None:
            verdict = (self._effective(options), self._problem(options))
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[options] = verdict
        return verdict

    def _effective(self, options: BackendOptions) -> BackendOptions:
        if options.unsafe_ssl and not self.allow_unsafe_ssl:
            return replace(options, unsafe_ssl=False)
        return options

    def _problem(self, options: BackendOptions) -> str | None:
        problems: list[str] = []
        for name, _ in options.query_parameters:
            if name in RESERVED_QUERY_PARAMETERS:
                problems.append(
                    f"queryParameters names {quote(name)}, which tidescaler sets itself"
                )
            elif name not in self.allowed_query_parameters:
                problems.append(
                    f"queryParameters names {quote(name)}, which this server does not allow "
                    "(see --allowed-query-parameters)"
                )
        for name, value in options.custom_headers:
            if not HEADER_NAME.fullmatch(name):
                problems.append(f"customHeaders has an invalid header name {name[:40]!r}")
            elif name.lower() not in self.allowed_custom_headers:
                problems.append(
                    f"customHeaders names {quote(name)}, which this server does not allow "
                    "(see --allowed-custom-headers)"
                )
            elif _BAD_VALUE.search(value):
                problems.append(f"customHeaders value of {quote(name)} contains a line break")
        if not problems:
            return None
        return bounded_message("", problems)
