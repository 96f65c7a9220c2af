"""HTTP GET with a deadline on the whole request, for backends that may hang or drip.

requests (and urllib3 under it) bound each socket operation, not the request:
a server that sends one byte a second keeps a reader busy for as long as it
likes, in the headers as well as the body. Here every request carries a
deadline, and a watchdog thread shuts down the socket of any request still
running at its deadline, which ends the blocked read at once, whatever phase it
is in. `close()` does the same to every request in flight, so that a process
can exit whatever its backends do. Redirects are never followed (the caller
sees the 3xx), and a body is read up to a size limit. A timeout over the whole
request is also what KEDA's own scaler gets from Go's `http.Client.Timeout`.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

__all__ = ["BoundedHttp", "HttpAnswer", "HttpFailure", "HttpFailureKind"]

# A Prometheus answer for ten thousand pods is a few MB; anything far larger is
# not an answer we can use, and must not fill the memory.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_READ_SIZE = 64 * 1024


class HttpFailureKind(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TOO_LARGE = "too_large"


class HttpFailure(Exception):
    """A request that produced no complete answer; the message never quotes the body."""

    def __init__(self, kind: HttpFailureKind, message: str, *, connected: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        # A connection was made but gave no whole HTTP answer (closed, reset, not HTTP).
        self.connected = connected


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes


class Watch:
    """One request's deadline and the connection it runs on (or, on a server, only the
    socket it arrives on)."""

    __slots__ = ("connection", "deadline", "expired", "finished", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection: Any = None
        # http.client lets go of the connection's socket once the headers say it
        # will close, while the body is still read from it: keep it here.
        self.sock: socket.socket | None = None
        self.expired = False
        self.finished = False


class Watchdog:
    """Shuts down the socket of every request that outlives its deadline."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._active: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, watch: Watch) -> None:
        with self._condition:
            if self._closed:
                watch.expired = True
                return
            earliest = not self._heap or watch.deadline < self._heap[0][0]
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            self._active.add(watch)
            if self._thread is None:
                self._start()
            elif earliest:
                self._condition.notify()

    def start(self) -> None:
        """Start the thread now rather than at the first watch (a server that bounds its
        threads counts it from the start)."""
        with self._condition:
            if self._thread is None and not self._closed:
                self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
        self._thread.start()

    def attach(self, watch: Watch, connection: Any) -> None:
        """Called when the request is sent on `connection` (new or reused)."""
        with self._condition:
            watch.connection = connection
            connection.tidescaler_watch = watch
            if watch.expired:
                self._abort(watch)

    def finish(self, watch: Watch) -> None:
        with self._condition:
            watch.finished = True
            self._active.discard(watch)

    def close(self) -> None:
        """Abort every request in flight; later requests fail at once."""
        with self._condition:
            self._closed = True
            for watch in list(self._active):
                watch.expired = True
                self._abort(watch)
            self._active.clear()
            self._heap.clear()
            self._condition.notify()

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._condition.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                _, _, watch = heapq.heappop(self._heap)
                watch.expired = True
                self._abort(watch)

    @staticmethod
    def _abort(watch: Watch) -> None:
        # Called with the lock held. A client request only while its connection still
        # serves it (once back in its pool it may already carry another one); a server's
        # watch (a socket and no connection) whenever it is unfinished.
        connection = watch.connection
        if watch.finished or (connection is None and watch.sock is None):
            return
        if connection is not None and getattr(connection, "tidescaler_watch", None) is not watch:
            return
        sock = watch.sock or getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


# The request thread tells the connection which deadline it runs under.
_current = threading.local()


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)


def _attach_current(connection: Any) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    watchdog: Watchdog | None = getattr(_current, "watchdog", None)
    if watch is not None and watchdog is not None:
        watchdog.attach(watch, connection)


def _note_socket(connection: Any) -> None:
    # The request is sent, so the socket exists; the answer will be read from it.
    watch: Watch | None = getattr(_current, "watch", None)
    if watch is not None and watch.connection is connection:
        watch.sock = connection.sock


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        _detach(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        _detach(conn)
        super()._put_conn(conn)


def _detach(connection: Any) -> None:
    # Back in the pool, the connection belongs to no request; a deadline passing
    # now must not cut whatever request takes it next.
    if connection is not None:
        connection.tidescaler_watch = None


_POOL_CLASSES = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections that a deadline can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOL_CLASSES)
        return manager


class BoundedHttp:
    """GET requests bounded by a deadline on the whole request. Thread-safe."""

    def __init__(
        self,
        *,
        max_connections_per_host: int = 32,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._max_body_bytes = max_body_bytes
        self._watchdog = Watchdog()
        self._session = requests.Session()
        # No retries: KEDA's scaler does not retry, a retry would break the
        # deadline, and the next polling interval is the retry.
        retry = Retry(total=0, read=False, redirect=0, raise_on_status=False)
        adapter = _WatchedAdapter(
            max_retries=retry, pool_connections=16, pool_maxsize=max_connections_per_host
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def get(
        self,
        url: str,
        *,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str] | None,
        timeout_seconds: float,
        verify: bool = True,
        max_body_bytes: int | None = None,
    ) -> HttpAnswer:
        """One GET that ends within `timeout_seconds`; raises HttpFailure.

        A 3xx is returned as it is, never followed. A body over `max_body_bytes` (by
        default the client's own limit) is a TOO_LARGE failure.
        """
        watch = Watch(time.monotonic() + timeout_seconds)
        self._watchdog.add(watch)
        _current.watch, _current.watchdog = watch, self._watchdog
        response: requests.Response | None = None
        try:
            if watch.expired:
                raise HttpFailure(HttpFailureKind.CONNECTION, "the client is closed")
            response = self._session.get(
                url,
                params=list(params),
                headers=dict(headers) if headers else None,
                timeout=timeout_seconds,
                stream=True,
                allow_redirects=False,
                verify=verify,
            )
            body = self._read_body(response, max_body_bytes or self._max_body_bytes)
            if watch.expired:
                # Cut at the deadline: what was read may look complete but is not.
                raise _timeout(timeout_seconds)
            return HttpAnswer(response.status_code, response.headers.get("Content-Type", ""), body)
        except HttpFailure:
            raise
        except requests.Timeout as error:
            raise _timeout(timeout_seconds) from error
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            OSError,
        ) as error:
            if watch.expired:
                raise _timeout(timeout_seconds) from error
            raise HttpFailure(
                HttpFailureKind.CONNECTION, _describe(error), connected=_connected(error)
            ) from error
        finally:
            _current.watch = _current.watchdog = None
            self._watchdog.finish(watch)
            if response is not None:
                response.close()

    def _read_body(self, response: requests.Response, limit: int) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            # read1 returns what one socket read brings, so a cut socket ends it at once.
            chunk = response.raw.read1(_READ_SIZE, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)

    def close(self) -> None:
        """Abort every request in flight and close the connections; returns at once."""
        self._watchdog.close()
        self._session.close()


def _timeout(timeout_seconds: float) -> HttpFailure:
    return HttpFailure(
        HttpFailureKind.TIMEOUT, f"no complete answer within the timeout ({timeout_seconds:g} s)"
    )


def _too_large(limit: int) -> HttpFailure:
    shown = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return HttpFailure(HttpFailureKind.TOO_LARGE, f"the answer is larger than {shown}")


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and the causes it wraps, outermost first: requests and urllib3 wrap the
    socket's own error (refused, reset, certificate ...) in layers that repeat the URL."""
    chain = [error]
    for _ in range(10):
        inner = chain[-1]
        reason = getattr(inner, "reason", None)
        nested = [arg for arg in inner.args if isinstance(arg, BaseException)]
        if isinstance(reason, BaseException):
            chain.append(reason)
        elif nested:
            chain.append(nested[0])
        elif (
            isinstance(inner, requests.RequestException | urllib3.exceptions.HTTPError)
            and inner.__context__ is not None
        ):
            chain.append(inner.__context__)
        else:
            break
    return chain


def _describe(error: BaseException) -> str:
    inner = _causes(error)[-1]  # the innermost says what happened
    if isinstance(inner, http.client.BadStatusLine) and not isinstance(
        inner, http.client.RemoteDisconnected
    ):
        # Whatever answered is not an HTTP server; its bytes are not ours to echo.
        return "the answer is not HTTP (no valid status line)"
    text = str(inner) or type(inner).__name__
    # Printable only: the text can carry bytes the backend sent.
    shown = "".join(c if c.isprintable() else "?" for c in text[:200])
    return shown if len(text) <= 200 else shown + "..."


def _connected(error: BaseException) -> bool:
    """Whether the failure came after the connection was made: the causes hold a broken
    answer (closed, reset, not HTTP) and no failure to connect (refused, unresolved)."""
    for cause in _causes(error):
        if isinstance(
            cause,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.NameResolutionError
            | requests.exceptions.ConnectTimeout
            | ConnectionRefusedError
            | socket.gaierror,
        ):
            return False
        if isinstance(
            cause,
            http.client.RemoteDisconnected
            | http.client.BadStatusLine
            | http.client.IncompleteRead
            | ConnectionResetError
            | urllib3.exceptions.ProtocolError,
        ):
            return True
    return False


def redacted_url(url: str) -> str:
    """`url` with its user name and password (if any) shown as `***`, for messages and logs.

    An operator may put credentials in --prometheus-url; messages built from an
    address reach tenants (gRPC status details, Events in their namespace)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url.rsplit("@", 1)[-1] if "@" in url else url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(
        (parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)
    )
