"""JSON over HTTP to one or several replicas of a model server, without a retry storm.

``Client`` sends each request to a healthy replica (servers of the same weights under
the same model name) with the fewest of this client's requests in flight. A replica
that refuses or drops a connection is marked down for a while and the request goes
at once to another, without spending the retry budget while one is up.

A request that times out meets a slow server, not a dead one, which is still computing
it: re-sending it at once (as a plain retry loop does) doubles the server's work and
its queue grows with every round until every request times out. So a timeout

- halves the requests this client keeps in flight on that replica (AIMD: the limit
  grows by one with each reply), once per round of timeouts;
- doubles that replica's timeout for every later request, the retry included;
- holds the request's slot until the server no longer works on it: until its
  ``/metrics`` (vLLM's ``vllm:num_requests_running`` + ``vllm:num_requests_waiting``,
  SGLang's ``sglang:num_running_reqs`` + ``sglang:num_queue_reqs``) count no more
  requests than this client awaits there, or, where the server publishes no such
  count, for the time the server already spent on it.

The server then never holds more of this client's requests than it has threads.
Rate limits pause every new request to that replica, not only the refused one: a
429's ``Retry-After`` and an exhausted ``x-ratelimit-remaining-requests`` (or
``-tokens``) until its ``x-ratelimit-reset-*`` (OpenAI's headers).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from simval.errors import MissingDependencyError, OptionError, SimvalError
from simval.outputs import redact

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: the server is busy, overloaded or restarting."""

SERVED_INSTALL = 'pip install -e ".[served]"'

LOAD_METRICS = (
    ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
)
"""The /metrics gauges whose sum is the requests a server holds, per engine."""

DOWN_FOR = (5.0, 60.0)
"""Seconds a replica that refused or dropped a connection rests before it is tried
again: the first value, doubling with each failure in a row, at most the second."""

POLL = 0.25
"""Seconds between two readings of a server's /metrics while waiting for it."""


class ServerError(SimvalError):
    """A model server refused a request, failed after every retry, or lacks a feature;
    ``status``: the HTTP status of a refused request (None otherwise)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def addresses(base_urls: str | Sequence[str]) -> list[str]:
    """The API roots in ``base_urls`` (one, or a sequence of replicas), each checked
    to start with http:// or https://; OptionError names (redacted) a bad one."""
    urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
    if not urls:
        raise OptionError("base_url: give a server's address, e.g. http://host:8000/v1")
    for url in urls:
        if not isinstance(url, str) or urlsplit(url.strip()).scheme.lower() not in (
            "http",
            "https",
        ):
            raise OptionError(
                f"base_url {redact(str(url))!r}: a server's address starts with "
                "http:// or https://, e.g. http://host:8000/v1"
            )
    return [url.strip() for url in urls]


@dataclass(eq=False)
class Replica:
    """One server and what this client knows of it. ``live``: requests awaiting its
    reply; ``held``: slots taken (``live`` and timed-out requests it may still be
    computing); ``limit``: the most slots (None: no timeout yet); ``timeout``: seconds
    per request; ``down_until`` / ``paused_until``: when it may be sent requests
    again after a dropped connection / a rate limit."""

    name: str
    http: Any
    timeout: float
    live: int = 0
    held: int = 0
    peak: int = 0
    limit: int | None = None
    cut_at: float = -1.0
    down_until: float = 0.0
    failures: int = 0
    paused_until: float = 0.0
    sent: int = 0
    metrics: bool | None = None  # does its /metrics count its requests (None: unknown)

    def open(self, now: float) -> bool:
        """Not resting after a failure nor paused by a rate limit."""
        return self.down_until <= now and self.paused_until <= now

    def has_room(self) -> bool:
        return self.limit is None or self.held < self.limit


class Client:
    """JSON over HTTP to ``base_urls`` (one API root or several replicas), with
    retries. The API key goes only into a request header (``Authorization: Bearer``);
    without one, credentials in a URL are sent as basic authentication to that
    replica. Neither is kept anywhere else. ``timeout``: seconds per request at first;
    ``retries``: how often a failed request is retried (a move to another replica
    after a refused or dropped connection is free while another is up)."""

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        api_key_env: str | None,
        timeout: float,
        retries: int,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                f"served models need httpx; install it with: {SERVED_INSTALL}"
            ) from exc
        self._httpx = httpx
        urls = addresses(base_urls)
        key = os.environ[api_key_env] if api_key_env else None
        self._secrets: list[str] = [key] if key else []
        self.replicas = [self._replica(url, key, timeout) for url in urls]
        self.server = ", ".join(r.name for r in self.replicas)
        self.retries = retries
        self._gate = threading.Condition()

    def _replica(self, url: str, key: str | None, timeout: float) -> Replica:
        headers, auth = {}, None
        parts = urlsplit(url.rstrip("/"))
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif parts.username:  # credentials in the URL: HTTP basic authentication
            auth = (parts.username, parts.password or "")
        # a server's reply may quote them (an API key "sk-...abc" in a 401's message)
        self._secrets += [
            secret
            for secret in (
                parts.username and unquote(parts.username),
                parts.password and unquote(parts.password),
                *(value for _, value in parse_qsl(parts.query)),
            )
            if secret
        ]
        name = redact(url)
        http = self._httpx.Client(base_url=name, headers=headers, auth=auth)
        return Replica(name=name, http=http, timeout=timeout)

    def get(self, path: str, *, replica: Replica | None = None) -> dict[str, Any]:
        """GET ``path`` from any replica, or from ``replica`` only."""
        return self._request("GET", path, only=replica)

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, payload)

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        only: Replica | None = None,
    ) -> dict[str, Any]:
        """The reply's JSON; retried on busy or failing servers (``RETRY_STATUSES``,
        dropped connections, timeouts) with exponential backoff and jitter, or the
        server's ``Retry-After``, or (after a timeout) once the server is done with
        the request; other statuses fail at once with the server's message."""
        httpx = self._httpx
        attempt, moved, problem = 0, 0, ""
        while True:
            replica = self._acquire(only)
            started = time.monotonic()
            wait: float | None = None
            try:
                reply = replica.http.request(
                    method, path, json=payload, timeout=replica.timeout
                )
            except httpx.TimeoutException as exc:
                problem = type(exc).__name__
                if isinstance(exc, httpx.ConnectTimeout):  # unreachable: as refused
                    self._release(replica)
                    if self._fail_over(replica, only, moved):
                        moved += 1
                        continue
                else:  # slow: wait until the server is done with it
                    self._slowed(replica, started)
                    self._drain(replica, spent=time.monotonic() - started)
                    self._release(replica, drained=True)
                    wait = 0.0
            except httpx.TransportError as exc:  # connection refused or dropped
                problem = type(exc).__name__
                self._release(replica)
                if self._fail_over(replica, only, moved):
                    moved += 1
                    continue
            else:
                self._release(replica, ok=reply.status_code < 400)
                self._rate_limited(replica, reply)
                if reply.status_code < 400:
                    return reply.json()
                problem = f"HTTP {reply.status_code}"
                if reply.status_code not in RETRY_STATUSES:
                    raise ServerError(
                        f"{replica.name}{path}: {problem}: "
                        f"{self._hidden(_message(reply))}"
                        + _endpoint_hint(path, reply.status_code),
                        status=reply.status_code,
                    )
                wait = _retry_after(reply.headers.get("retry-after"))
            if attempt >= self.retries:
                raise ServerError(
                    f"{replica.name}{path}: {problem} after {attempt + 1} attempts"
                )
            time.sleep(wait if wait is not None else _backoff(attempt))
            attempt, moved = attempt + 1, 0

    # --- the gate ---------------------------------------------------------------------

    def _acquire(self, only: Replica | None) -> Replica:
        """A slot on ``only``, or on the open replica with room and the fewest
        requests held (any with room when none is open); waits while none has room
        or every replica is paused by a rate limit."""
        with self._gate:
            while True:
                now = time.monotonic()
                candidates = [only] if only else self.replicas
                opened = [r for r in candidates if r.open(now)]
                if not opened:  # all resting: the soonest back (a rate limit waits)
                    opened = [r for r in candidates if r.paused_until <= now]
                roomy = [r for r in opened if r.has_room()]
                if roomy:
                    chosen = min(roomy, key=lambda r: (r.held, r.sent))
                    chosen.live += 1
                    chosen.held += 1
                    chosen.sent += 1
                    chosen.peak = max(chosen.peak, chosen.held)
                    return chosen
                paused = [
                    r.paused_until - now for r in candidates if r.paused_until > now
                ]
                self._gate.wait(timeout=min(paused, default=POLL))

    def _release(self, replica: Replica, *, ok: bool = False, drained: bool = False):
        """Give a slot back (a timed-out request's once drained: ``live`` fell at its
        timeout); a reply grows the replica's limit by one, up to its peak."""
        with self._gate:
            replica.held -= 1
            if not drained:
                replica.live -= 1
            if ok:
                replica.failures = 0
                if replica.limit is not None:
                    replica.limit = min(replica.limit + 1, max(replica.peak, 1))
            self._gate.notify_all()

    def _fail_over(self, replica: Replica, only: Replica | None, moved: int) -> bool:
        """Mark ``replica`` down (it refused or dropped a connection); True where
        another replica is open to take the request at once, for free."""
        with self._gate:
            now = time.monotonic()
            rest = DOWN_FOR[0] * 2**replica.failures
            replica.failures += 1
            replica.down_until = now + min(rest, DOWN_FOR[1])
            others = [r for r in self.replicas if r is not replica and r.open(now)]
            return only is None and bool(others) and moved < len(self.replicas)

    def _slowed(self, replica: Replica, started: float) -> None:
        """A request sent at ``started`` timed out: once per round of timeouts (the
        first sent after the last cut), halve the replica's limit and double its
        timeout; its slot stays held, its reply is no longer awaited."""
        with self._gate:
            replica.live -= 1
            if started >= replica.cut_at:
                replica.limit = max(1, (replica.limit or replica.held) // 2)
                replica.timeout *= 2
                replica.cut_at = time.monotonic()

    def _drain(self, replica: Replica, *, spent: float) -> None:
        """Wait until ``replica`` no longer computes a request this client gave up
        on: its /metrics count no more requests than this client awaits there (at
        most the replica's new timeout), or, without such a count, ``spent`` seconds
        (the server spent that long without finishing it)."""
        deadline = time.monotonic() + replica.timeout
        while time.monotonic() < deadline:
            load = self._load(replica)
            if load is None:
                time.sleep(spent)
                return
            with self._gate:
                if load <= replica.live:
                    return
            time.sleep(POLL)

    def _load(self, replica: Replica) -> float | None:
        """The requests ``replica`` holds, from its /metrics (None: it has no such
        count; then it is not asked again)."""
        if replica.metrics is False:
            return None
        url = re.sub(r"/v1$", "", replica.name) + "/metrics"
        try:
            reply = replica.http.get(url, timeout=10.0)
            load = _metrics_load(reply.text) if reply.status_code == 200 else None
        except self._httpx.TransportError:
            load = None
        replica.metrics = load is not None
        return load

    def _rate_limited(self, replica: Replica, reply: Any) -> None:
        """Pause every new request to ``replica`` as its rate-limit headers ask: for
        a 429's ``Retry-After``, or until ``x-ratelimit-reset-requests`` (``-tokens``)
        when what remains of that limit is spent by the requests in flight."""
        headers = reply.headers
        pauses = []
        if reply.status_code == 429:
            pauses.append(_retry_after(headers.get("retry-after")))
        for kind in ("requests", "tokens"):
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None and remaining <= replica.live:
                pauses.append(_duration(headers.get(f"x-ratelimit-reset-{kind}")))
        pause = max((p for p in pauses if p is not None), default=None)
        if pause:
            with self._gate:
                until = time.monotonic() + pause
                replica.paused_until = max(replica.paused_until, until)

    def _hidden(self, text: str) -> str:
        """A server's ``text`` with this client's key, user names, passwords and
        query values (each where it stands as a whole word), and any URL's
        credentials, blanked out."""
        for secret in self._secrets:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)
        return redact(text)


def _metrics_load(text: str) -> float | None:
    """Running plus waiting requests in a Prometheus /metrics text (summed over its
    engines), for the first engine whose gauges it holds; None without them."""
    for names in LOAD_METRICS:
        values = [
            float(value)
            for name, value in re.findall(
                r"^([\w:]+)(?:\{[^}]*\})?\s+(\S+)", text, flags=re.MULTILINE
            )
            if name in names
        ]
        if values:
            return sum(values)
    return None


def _endpoint_hint(path: str, status: int) -> str:
    """What to use instead when a server has no such endpoint."""
    if status not in (404, 405):
        return ""
    if path == "/completions":
        return "; this server has no /v1/completions: use api='chat'"
    if path == "/chat/completions":
        return "; this server has no /v1/chat/completions: use api='completions'"
    return ""


def _backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (dates are ignored)."""
    seconds = _number(value)
    return None if seconds is None else max(0.0, seconds)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _duration(value: str | None) -> float | None:
    """Seconds from a rate-limit reset header: ``"1.5"``, ``"20ms"``, ``"6m0s"`` or
    ``"1h2m3.5s"`` (OpenAI's form); None for anything else."""
    if value is None or _number(value) is not None:
        return _retry_after(value)
    parts = re.fullmatch(
        r"(?:([\d.]+)h)?(?:([\d.]+)m(?!s))?(?:([\d.]+)s)?(?:([\d.]+)ms)?", value.strip()
    )
    if not parts or not any(parts.groups()):
        return None
    hours, minutes, seconds, millis = (float(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _message(reply: Any) -> str:
    """The error message a server put in its reply, short."""
    try:
        body = reply.json()
        error = body.get("error", body)
        text = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        text = reply.text
    return str(text)[:300]
