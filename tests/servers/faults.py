"""A loopback HTTP proxy that injects faults in front of a test server (moto, GCS emulator).

``FaultProxy(host, port)`` listens on 127.0.0.1:<free port> and forwards each request to
the upstream server, except the ones a rule picks:

- ``fail_next(k, status)``: answer with ``status`` and an S3-style XML error body;
- ``drop_next(k)``: read the request, then close the connection without answering;
- ``cut_next(k, after)``: forward the answer's head and ``after`` bytes of its body, then
  close the connection (a download cut in the middle);
- ``stall_next(k)``: read the request and never answer it (until the proxy closes).

A rule applies to the next ``k`` requests it matches (``match``: a regular expression searched
in ``"METHOD /path?query"``, or a predicate on the :class:`SeenRequest`); other requests pass
through and do not use it up. Every request is recorded in ``requests``.

Determinism: the proxy serves exactly one request per connection. It forwards each request
with ``Connection: close`` and answers the client with ``Connection: close``, so clients
(boto3's urllib3 pool included) open a new connection for every request: request number n
is connection number n, whatever the client's pool does, and a fault never leaves a
half-used keep-alive connection behind. ``Expect: 100-continue`` is answered by the proxy
itself (or with the fault), so a faulted upload never needs to send its body. Requests in
absolute form (the client uses the proxy as an HTTP proxy) are forwarded in origin form with
their Host header kept, which lets tests see virtual-host addressing without DNS.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "OneWay", "SeenRequest", "one_way"]

_CHUNK = 1 << 16
_ERROR_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    429: "SlowDown",
    500: "InternalError",
    503: "ServiceUnavailable",
}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "expect"}


@dataclass
class SeenRequest:
    """One request the proxy received, as the client sent it."""

    method: str
    target: str  # the request target as sent (absolute form when used as an HTTP proxy)
    path: str  # origin form: /path?query
    headers: dict[str, str]  # lower-case names
    fault: str | None = None  # "fail 503", "drop", "cut 100", or None when passed through

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


Match = str | Callable[[SeenRequest], bool] | None


@dataclass
class _Rule:
    kind: str
    remaining: int
    match: Match
    status: int = 503
    body: bytes = b""
    after: int = 0
    reset: bool = False

    def matches(self, request: SeenRequest) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return re.search(self.match, request.line) is not None
        return self.match(request)


@dataclass
class _Head:
    first: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str:
        for key, value in reversed(self.lines):
            if key.lower() == name:
                return value
        return ""

    def encode(self, first: str, extra: dict[str, str]) -> bytes:
        kept = [(k, v) for k, v in self.lines if k.lower() not in _HOP_BY_HOP]
        text = "".join(f"{k}: {v}\r\n" for k, v in [*kept, *extra.items()])
        return f"{first}\r\n{text}\r\n".encode("latin-1")


class OneWay(io.RawIOBase):
    """A stream that cannot seek (like a compressor's output); it raises ``fail`` once
    ``stop`` bytes were read, when ``fail`` is given."""

    def __init__(self, data: bytes, stop: int = -1, fail: BaseException | None = None) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self._stop = stop
        self._fail = fail

    @property
    def position(self) -> int:
        return self._data.tell()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._fail is not None and self._data.tell() >= self._stop:
            raise self._fail
        return self._data.readinto(buffer)


def one_way(data: bytes, stop: int = -1, fail: BaseException | None = None) -> BinaryIO:
    """A :class:`OneWay` stream, typed as the binary stream it stands for."""
    return cast(BinaryIO, OneWay(data, stop, fail))


class FaultProxy:
    """A fault-injecting HTTP proxy on 127.0.0.1; use it as a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int, timeout: float = 30.0) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._seen: list[SeenRequest] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._closing = threading.Event()  # releases stalled requests
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- rules ----------------------------------------------------------------------------

    def fail_next(
        self,
        k: int,
        status: int = 503,
        *,
        match: Match = None,
        code: str | None = None,
        message: str = "injected by FaultProxy",
    ) -> None:
        """Answer the next ``k`` matching requests with ``status`` and an XML error."""
        code = code or _ERROR_CODES.get(status, "InjectedFault")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            f"{code}</Code><Message>{message}</Message>"
            "<RequestId>fault</RequestId></Error>"
        ).encode()
        self._add(_Rule("fail", k, match, status=status, body=body))

    def drop_next(self, k: int, *, match: Match = None, reset: bool = False) -> None:
        """Close the next ``k`` matching requests' connections unanswered (RST if reset)."""
        self._add(_Rule("drop", k, match, reset=reset))

    def cut_next(self, k: int, after: int = 0, *, match: Match = None) -> None:
        """Cut the next ``k`` matching answers after ``after`` bytes of their body."""
        self._add(_Rule("cut", k, match, after=after))

    def stall_next(self, k: int, *, match: Match = None) -> None:
        """Leave the next ``k`` matching requests unanswered until the proxy closes."""
        self._add(_Rule("stall", k, match))

    def clear(self) -> None:
        """Forget the rules that are left and the requests seen."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()

    @property
    def requests(self) -> list[SeenRequest]:
        """The requests seen so far, oldest first."""
        with self._lock:
            return list(self._seen)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    @property
    def faults(self) -> int:
        """How many requests were faulted."""
        with self._lock:
            return sum(1 for r in self._seen if r.fault)

    @property
    def pending(self) -> int:
        """Faults still to be injected."""
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take(self, request: SeenRequest) -> _Rule | None:
        with self._lock:
            self._seen.append(request)
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(request):
                    rule.remaining -= 1
                    request.fault = {"fail": f"fail {rule.status}", "cut": f"cut {rule.after}"}.get(
                        rule.kind, rule.kind
                    )
                    return rule
        return None

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, cut open connections, and join every thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets)
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(10)
        for thread in list(self._threads):
            thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    client.close()
                    return
                self._sockets.add(client)
                thread = threading.Thread(
                    target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, sock: socket.socket, reset: bool = False) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    # -- one request per connection -------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        reset = False
        try:
            client.settimeout(self._timeout)
            with client.makefile("rb") as reader:
                head = _read_head(reader)
                if head is None:
                    return
                method, target = head.first.split(" ")[:2]
                path = _origin_form(target)
                headers = {k.lower(): v for k, v in head.lines}
                rule = self._take(SeenRequest(method, target, path, headers))
                reset = rule is not None and rule.reset
                self._answer(client, reader, head, rule, f"{method} {path} HTTP/1.1")
        except (OSError, ValueError):
            pass  # the client went away or sent garbage, or the proxy is closing
        finally:
            self._close(client, reset)

    def _answer(
        self,
        client: socket.socket,
        reader: BinaryIO,
        head: _Head,
        rule: _Rule | None,
        request_line: str,
    ) -> None:
        expect = head.get("expect").lower() == "100-continue"
        if rule is not None and rule.kind == "fail":
            if not expect:
                _copy_body(reader, head, None)  # read the body so closing sends no RST
            client.sendall(_error_answer(rule, request_line.startswith("HEAD ")))
            return
        if expect:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if rule is not None and rule.kind == "drop":
            _copy_body(reader, head, None)
            return
        if rule is not None and rule.kind == "stall":
            _copy_body(reader, head, None)
            self._closing.wait()
            return
        upstream = socket.create_connection(self._upstream, timeout=self._timeout)
        self._track(upstream)
        try:
            upstream.sendall(head.encode(request_line, {"Connection": "close"}))
            _copy_body(reader, head, upstream)
            cut = rule.after if rule is not None and rule.kind == "cut" else None
            with upstream.makefile("rb") as answer:
                _relay_answer(answer, client, request_line, cut)
        finally:
            self._close(upstream)


def _read_head(reader: BinaryIO) -> _Head | None:
    """The request or status line and the headers; None at end of stream."""
    first = reader.readline(65536)
    if not first:
        return None
    head = _Head(first.decode("latin-1").rstrip("\r\n"))
    while True:
        line = reader.readline(65536).decode("latin-1").rstrip("\r\n")
        if not line:
            return head
        name, _, value = line.partition(":")
        head.lines.append((name.strip(), value.strip()))


def _origin_form(target: str) -> str:
    if "://" not in target:
        return target
    parts = urlsplit(target)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _copy_body(reader: BinaryIO, head: _Head, out: socket.socket | None) -> None:
    """Copy a request body (Content-Length or chunked) to ``out`` (or discard it)."""
    if head.get("transfer-encoding").lower() == "chunked":
        while True:
            line = reader.readline(65536)
            _send(out, line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
                    _send(out, trailer)
                _send(out, b"\r\n")
                return
            _copy_exactly(reader, size + 2, out)
    _copy_exactly(reader, int(head.get("content-length") or 0), out)


def _copy_exactly(reader: BinaryIO, size: int, out: socket.socket | None) -> None:
    while size > 0:
        data = reader.read(min(size, _CHUNK))
        if not data:
            raise ConnectionError("stream ended early")
        _send(out, data)
        size -= len(data)


def _send(out: socket.socket | None, data: bytes) -> None:
    if out is not None:
        out.sendall(data)


def _relay_answer(upstream: BinaryIO, client: socket.socket, request: str, cut: int | None) -> None:
    """Forward the upstream's answer with ``Connection: close``; stop after ``cut`` body
    bytes when asked to (the caller then closes the connection)."""
    head = _read_head(upstream)
    while head is not None and head.first.split(" ")[1:2] == ["100"]:
        head = _read_head(upstream)  # interim answers: the proxy sent its own
    if head is None:
        raise ConnectionError("upstream closed without answering")
    client.sendall(head.encode(head.first, {"Connection": "close"}))
    status = head.first.split(" ")[1]
    if request.startswith("HEAD ") or status in ("204", "304"):
        return
    length = head.get("content-length")
    remaining = int(length) if length and not head.get("transfer-encoding") else -1
    if cut is not None:
        remaining = cut if remaining < 0 else min(cut, remaining)
    while remaining != 0:
        data = upstream.read(_CHUNK if remaining < 0 else min(remaining, _CHUNK))
        if not data:
            return
        client.sendall(data)
        remaining -= len(data) if remaining > 0 else 0


def _error_answer(rule: _Rule, head_only: bool) -> bytes:
    reason = {503: "Service Unavailable", 500: "Internal Server Error"}.get(rule.status, "Error")
    head = (
        f"HTTP/1.1 {rule.status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(rule.body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + (b"" if head_only else rule.body)
