"""Prometheus exporter: ``mfd serve [--listen HOST:PORT]`` serves /metrics.

Samples on demand, like node_exporter: each scrape takes one snapshot (about
15 us through eBPF), so no user-space work runs between scrapes and the
numbers are as fresh as the scrape.  Events are counted in the kernel's BPF
maps between scrapes; a scrape drains them once and adds them to counters
kept for mfd's lifetime (mfd.sinks.event_metrics).  Scrapes that wait at the
same moment share one snapshot, taken after all of them arrived.  Listens on
loopback unless given a host.  No kernel address is ever exported (the pgdat
pointer stays out of every label).

The listener is built to outlast abusive local clients (mfd runs as root and
any user can connect): a fixed number of threads, a cap on connections, a
deadline and a byte limit for each request, and no traceback for anything a
client does.  See :class:`MetricsServer`.
"""
from __future__ import annotations

import collections
import errno
import gzip
import http
import ipaddress
import os
import queue
import re
import resource
import selectors
import socket
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ..derive import Frame
from ..errors import MfdError, UsageError
from .diagnosis_metrics import diagnosis_families

DEFAULT_PORT = 9610

# The listen queue.  Python's default of 5 made 200 concurrent scrapes wait on
# SYN retransmits (p50 1 s, max 11 s); the kernel clamps this to somaxconn.
BACKLOG = 1024
# Connections held at once.  Idle ones cost a socket and a small buffer, not a
# thread, so this can be generous; past it the oldest unfinished one goes.
MAX_CONNECTIONS = 256
# From accept to the end of the request head.  A whole-head deadline, not one
# per recv: slowloris clients trickle a byte at a time to reset the latter.
HEAD_TIMEOUT = 5.0
# A response is ~10 KB and fits a socket buffer; one still unsent after this
# belongs to a client that stopped reading.
WRITE_TIMEOUT = 10.0
# After the response, read what the client still sends (up to LINGER_BYTES) so
# that closing with unread data does not reset the connection before the
# client has read the answer (what nginx calls lingering close).
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 64 * 1024
# Bytes of request line plus headers.  Prometheus sends about 300.
MAX_HEAD = 8192
# File descriptors left for the snapshot itself (procfs files) and for Python.
FD_RESERVE = 16
# How long accept() rests after EMFILE/ENFILE: without a pause the listener
# stays readable and the loop spins.  Doubles up to the maximum, which stays
# well under a scrape timeout.
BACKOFF_MIN, BACKOFF_MAX = 0.01, 0.5
ACCEPT_BATCH = 64
# How often the connection cap is refitted to RLIMIT_NOFILE (prlimit may move it).
REFIT_EVERY = 10.0

# A request starts with a method token and a space (or the start of one).
_METHOD = re.compile(rb"[A-Z]{1,16}( |$)")
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _port(text: str, port: str, flag: str) -> int:
    # int() would take " 9610", "+9610" and "9_610"
    if not (port.isascii() and port.isdigit()):
        raise UsageError(f"{flag} wants [HOST:]PORT, not {text!r}")
    p = int(port)
    if not 0 < p < 65536:
        raise UsageError(f"{flag} port out of range: {p}")
    return p


def parse_listen(text: str, flag: str = "--listen") -> Tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT``; no host means 127.0.0.1.

    Every interface is never implied: ``0.0.0.0`` or ``[::]`` must be written
    out.  Only the syntax is checked here; a host name is resolved when binding.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise UsageError(f"{flag} wants [V6ADDRESS]:PORT, not {text!r}")
        host, port = text[1:end], _port(text, text[end + 2:], flag)
        try:  # a scope (fe80::1%eth0) is the kernel's to check
            socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        except OSError:
            raise UsageError(f"{flag}: {host!r} in brackets is not an IPv6 address") from None
        return host, port
    if text.count(":") > 1:
        try:
            socket.inet_pton(socket.AF_INET6, text)
            hint = f"[{text}]:{DEFAULT_PORT}"
        except OSError:
            hint = f"[::1]:{DEFAULT_PORT}"
        raise UsageError(f"{flag}: an IPv6 address goes in brackets, as {hint}; "
                         f"{text!r} is ambiguous")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    p = _port(text, port, flag)
    if not host:
        return "127.0.0.1", p
    try:
        socket.inet_pton(socket.AF_INET, host)
        return host, p
    except OSError:
        pass
    try:
        # inet_aton (and so getaddrinfo) reads "0" as 0.0.0.0 and "127.1" as
        # 127.0.0.1: a shorthand nobody should bind every interface by.
        full = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        full = None
    if full is not None:
        what = "every IPv4 interface" if full == "0.0.0.0" else "that address"
        raise UsageError(f"{flag}: {host!r} is shorthand for {full}; write {full} in "
                         f"full if {what} is meant (no host means loopback)")
    if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise UsageError(f"{flag}: {host!r} is neither an IPv4 address nor a host name "
                         f"(IPv6 goes in brackets: [::1]:{DEFAULT_PORT})")
    return host, p


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets as URLs want it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
        return True
    except ValueError:
        return False


def listen_socket(host: str, port: int, flag: str = "--listen") -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (as parse_listen gave).
    ``[::]`` is IPv6 only (IPV6_V6ONLY), as OpenSSH and nginx bind it."""
    where = format_address(host, port)
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise MfdError(f"cannot listen on {where}: {e.strerror} "
                       f"(choose another address with {flag} HOST:PORT)") from e
    if not _is_literal(host) and ipaddress.ip_address(addr[0]).is_unspecified:
        raise MfdError(f"{flag}: {host} resolves to {addr[0]}, every interface; write "
                       "0.0.0.0 or [::] if that is meant")
    try:
        sock = socket.create_server(addr, family=family, backlog=BACKLOG)
    except OSError as e:
        raise MfdError(f"cannot listen on {where}: {e.strerror or e} "
                       f"(choose another address with {flag} HOST:PORT)") from e
    if hasattr(socket, "TCP_DEFER_ACCEPT"):
        # Linux keeps a connection that has sent nothing in the kernel (nginx's
        # "deferred", Apache's AcceptFilter): an HTTP client speaks first, so
        # only idle clients wait there, and they take no fd or slot of ours.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(HEAD_TIMEOUT))
    sock.setblocking(False)
    return sock


class SnapshotCollector:
    """A prometheus_client collector: one snapshot per scrape, thread-safe.
    ``take()`` returns a fresh Frame (the CLI binds it to a source and the
    filter), with the events since the previous scrape when groups are
    loaded; ``counters`` (mfd.sinks.event_metrics.EventCounters) adds them
    up; ``diagnose(snapshot)`` gives the diagnosis gauges
    (mfd.model.diagnosis.Diagnosis)."""

    def __init__(self, take: Callable[[], Frame], info: dict, counters=None,
                 diagnose: Optional[Callable] = None):
        self.take, self.info = take, info
        self.counters, self.diagnose = counters, diagnose
        self.lock = threading.Lock()
        self.errors = 0

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        t0 = time.perf_counter()
        frame = diagnosis = None
        counted = []
        with self.lock:  # the eBPF source reuses one map buffer; counters add up here
            try:
                frame = self.take()
                if self.counters is not None:
                    self.counters.add(frame.sample.events)
                if self.diagnose is not None:
                    diagnosis = self.diagnose(frame.snapshot)
            except MfdError:
                self.errors += 1
            if self.counters is not None:
                counted = list(self.counters.families())   # read while nothing adds
        took = time.perf_counter() - t0
        info = GaugeMetricFamily("mfd_build_info", "mfd version, snapshot source and kernel",
                                 labels=sorted(self.info))
        info.add_metric([self.info[k] for k in sorted(self.info)], 1)
        yield info
        yield CounterMetricFamily("mfd_collector_errors_total",
                                  "Scrapes whose snapshot or event read failed (see mfd's "
                                  "stderr)", value=self.errors)
        yield GaugeMetricFamily("mfd_snapshot_duration_seconds",
                                "Time to take the snapshot (and read the event maps) behind "
                                "this scrape", value=took)
        yield from counted
        if frame is None:
            return
        # Scrapes that arrive together share one snapshot (MetricsServer):
        # how old it is when this answer is made.
        yield GaugeMetricFamily("mfd_sample_age_seconds", "Age of the snapshot and event "
                                "read behind this scrape when the answer was made",
                                value=max(0.0, time.time() - frame.snapshot.time))
        if diagnosis is not None:
            yield from diagnosis_families(diagnosis, frame.filter)
        zl, zol = ["node", "zone"], ["node", "zone", "order"]
        fam = {
            "free_blocks": GaugeMetricFamily(
                "mfd_zone_free_blocks", "Free blocks of exactly this order "
                "(free_area[order].nr_free, as /proc/buddyinfo)", labels=zol),
            "extfrag": GaugeMetricFamily(
                "mfd_zone_extfrag_index", "The kernel's extfrag_index (mm/vmstat.c): -1 when "
                "a suitable block exists, towards 1 when failure would be fragmentation",
                labels=zol),
            "unusable": GaugeMetricFamily(
                "mfd_zone_unusable_index", "The kernel's unusable_index (mm/vmstat.c): share "
                "of free memory unusable for this order", labels=zol),
            "free_pages": GaugeMetricFamily("mfd_zone_free_pages", "Free pages in the zone",
                                            labels=zl),
            "managed": GaugeMetricFamily("mfd_zone_managed_pages", "zone->managed_pages",
                                         labels=zl),
            "present": GaugeMetricFamily("mfd_zone_present_pages", "zone->present_pages",
                                         labels=zl),
            "spanned": GaugeMetricFamily("mfd_zone_spanned_pages", "zone->spanned_pages",
                                         labels=zl),
        }
        for f in frame.zones():
            z = f.zone
            zv = [str(z.node), z.zone]
            for s in f.orders:
                ov = zv + [str(s.order)]
                fam["free_blocks"].add_metric(ov, s.nr_free)
                fam["extfrag"].add_metric(ov, s.extfrag / 1000)
                fam["unusable"].add_metric(ov, s.unusable / 1000)
            fam["free_pages"].add_metric(zv, z.free_pages)
            fam["managed"].add_metric(zv, z.managed)
            fam["present"].add_metric(zv, z.present)
            fam["spanned"].add_metric(zv, z.spanned)
        yield from fam.values()


# -- HTTP ------------------------------------------------------------------------


class Request:
    """A parsed request head: method (str), path (str) and lower-cased headers."""

    __slots__ = ("method", "path", "headers")

    def __init__(self, method: str, path: str, headers: Dict[str, str]):
        self.method, self.path, self.headers = method, path, headers


class HttpError(Exception):
    """A request mfd answers with ``status`` and closes."""

    def __init__(self, status: int, extra: Tuple[Tuple[str, str], ...] = ()):
        super().__init__(status)
        self.status, self.extra = status, extra


def parse_head(head: bytes) -> Request:
    """The request line and headers (``head`` without the blank line that ends it).
    Raises HttpError for anything mfd will not serve."""
    lines = head.split(b"\n")
    parts = lines[0].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not re.fullmatch(rb"HTTP/1\.[0-9]", parts[2]):
        raise HttpError(400)
    method, target = parts[0].decode("latin-1"), parts[1]
    headers = {}
    for raw in lines[1:]:
        name, sep, value = raw.rstrip(b"\r").partition(b":")
        # a name with spaces, or a folded continuation line: refused (RFC 9112 5.1, 5.2)
        if not sep or not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise HttpError(400)
        headers[name.decode("ascii").lower()] = value.strip(b" \t").decode("latin-1")
    if method not in ("GET", "HEAD"):
        raise HttpError(405, (("Allow", "GET, HEAD"),))
    m = re.fullmatch(rb"(?:https?://[^/?#]*)?(/[^?#]*)(?:[?#].*)?", target, re.I | re.S)
    if not m:
        raise HttpError(400)
    return Request(method, m.group(1).decode("latin-1"), headers)


def response(status: int, body: bytes = b"", ctype: str = "text/plain; charset=utf-8",
             extra=(), head_only: bool = False) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
             f"Content-Type: {ctype}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in extra]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head_only else out + body


def _error(status: int, extra=()) -> bytes:
    return response(status, f"{status} {http.HTTPStatus(status).phrase}\n".encode(),
                    extra=extra)


def _head_end(buf: bytearray, start: int) -> Tuple[int, int]:
    """Where the head ends in ``buf`` (searching from ``start``): (end of head,
    start of body), or (-1, -1).  A bare LF is taken as a line end too."""
    for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n"):
        i = buf.find(sep, start)
        if i >= 0:
            return i, i + len(sep)
    return -1, -1


# -- the server ------------------------------------------------------------------

READING, RENDERING, WRITING, LINGERING, CLOSED = (
    "reading", "rendering", "writing", "lingering", "closed")
# What goes first when a slot is needed: done connections, then the oldest
# unfinished request (a slowloris or idle client; a real one sends at once).
_EVICTABLE = (LINGERING, READING, WRITING)


class _Conn:
    __slots__ = ("sock", "state", "events", "deadline", "buf", "out", "drained", "head_only")

    def __init__(self, sock: socket.socket):
        self.sock, self.state, self.events, self.deadline = sock, CLOSED, 0, 0.0
        self.buf, self.out, self.drained, self.head_only = bytearray(), None, 0, False


class MetricsServer:
    """HTTP/1.1 on one listening socket: one event-loop thread for every
    connection, plus one worker that renders /metrics.

    prometheus_client's own server (0.16, as Debian ships it) cannot be bounded:
    a thread per connection with no timeout and a backlog of 5, and no hook for
    either.  Here an idle connection costs a socket and a buffer of at most
    MAX_HEAD bytes; the threads are two whatever the clients do.

    ``render(requests)`` runs in the worker and returns the whole response to
    each.  Each connection carries one request and is then closed.
    """

    def __init__(self, sock: socket.socket, render: Callable[[List[Request]], List[bytes]],
                 note: Callable[[str], None], max_connections: int = MAX_CONNECTIONS):
        self.listener, self.render, self.note = sock, render, note
        self.max_connections = max_connections
        self.sel = selectors.DefaultSelector()
        # One OrderedDict per state, oldest first: their deadlines come in order,
        # and the oldest unfinished connection is the first one to evict.
        self.states = {s: collections.OrderedDict() for s in (READING, RENDERING, WRITING,
                                                               LINGERING)}
        self.count = 0
        self.cap = max_connections
        self.listening = False
        self.resume_at: Optional[float] = None      # accept paused after EMFILE
        self.backoff = 0.0
        self.said = set()
        self.next_refit = 0.0
        self.jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self.done: collections.deque = collections.deque()
        self.wake_r, self.wake_w = socket.socketpair()
        for s in (self.wake_r, self.wake_w):
            s.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self._listen(True)
        self.worker = threading.Thread(target=self._work, name="mfd-render", daemon=True)
        self.worker.start()
        self._refit(time.monotonic())

    # -- the loop ----------------------------------------------------------------

    def serve_forever(self) -> None:
        while True:
            self.run_once()

    def run_once(self) -> None:
        events = self.sel.select(self._timeout(time.monotonic()))
        for key, mask in events:
            if key.data is None:
                self._finished_renders()
            elif key.data == "listener":
                self._accept()
            else:  # closed by an earlier event of this round: _ready skips it
                self._ready(key.data)
        now = time.monotonic()
        self._expire(now)
        if self.resume_at is not None and now >= self.resume_at:
            self.resume_at = None
            self._listen(True)
        if now >= self.next_refit:
            self._refit(now)

    def _timeout(self, now: float) -> float:
        t = [self.next_refit]
        t += [next(iter(self.states[s].values())) for s in (READING, WRITING, LINGERING)
              if self.states[s]]
        if self.resume_at is not None:
            t.append(self.resume_at)
        return max(0.0, min(t) - now)

    def _listen(self, on: bool) -> None:
        if on and not self.listening:
            self.sel.register(self.listener, selectors.EVENT_READ, "listener")
        elif not on and self.listening:
            self.sel.unregister(self.listener)
        self.listening = on

    # -- connections -------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.count >= self.cap and not any(self.states[s] for s in _EVICTABLE):
                # every slot renders a scrape: new clients wait in the backlog
                self._listen(False)
                return
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_FDS:
                    self._out_of_fds(e)
                    return
                continue  # ECONNABORTED, EPROTO, ...: that client's trouble
            self.backoff = 0.0
            if self.count >= self.cap:
                self._evict()   # before the new one enters: it is not the one to go
            sock.setblocking(False)
            c = _Conn(sock)
            self._enter(c, READING, selectors.EVENT_READ, time.monotonic() + HEAD_TIMEOUT)
            self.count += 1
            self._ready(c)  # the request is often there already

    def _out_of_fds(self, e: OSError) -> None:
        # The listener stays readable while the queue holds clients, so retrying
        # at once would spin.  Make room (below what is left after whatever else
        # took the fds), then rest before the next accept.
        if e.errno == errno.EMFILE:
            self.cap = max(1, min(self.cap, self.count - FD_RESERVE))
        while self.count > self.cap and self._evict():
            pass
        self.backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self.backoff * 2))
        self._listen(False)
        self.resume_at = time.monotonic() + self.backoff
        self._say_once("fds", f"out of file descriptors accepting a scrape ({e.strerror}); "
                       f"holding at most {self.cap} connections and backing off")

    def _refit(self, now: float) -> None:
        """The cap, from RLIMIT_NOFILE less the fds not held by connections."""
        self.next_refit = now + REFIT_EVERY
        try:
            others = len(os.listdir("/proc/self/fd")) - 1 - self.count
        except OSError:
            return  # out of fds right now: _out_of_fds has set the cap
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        room = self.max_connections if soft == resource.RLIM_INFINITY \
            else soft - others - FD_RESERVE
        self.cap = max(1, min(self.max_connections, room))
        while self.count > self.cap and self._evict():
            pass

    def _evict(self) -> bool:
        """Close the connection that can best go (done first, then the oldest
        unfinished); False when all of them are rendering."""
        for state in _EVICTABLE:
            d = self.states[state]
            if d:
                self._close(next(iter(d)))
                return True
        return False

    def _enter(self, c: _Conn, state: str, events: int = 0,
               deadline: Optional[float] = None) -> None:
        """Move ``c`` to ``state``, waiting for ``events`` (0: none) until ``deadline``."""
        if c.state != CLOSED:   # a new connection is CLOSED until it enters READING
            del self.states[c.state][c]
        if deadline is not None:
            c.deadline = deadline
        c.state = state
        self.states[state][c] = c.deadline
        if c.events and not events:
            self.sel.unregister(c.sock)
        elif events and not c.events:
            self.sel.register(c.sock, events, c)
        elif events != c.events:
            self.sel.modify(c.sock, events, c)
        c.events = events

    def _close(self, c: _Conn) -> None:
        if c.state == CLOSED:
            return
        del self.states[c.state][c]
        if c.events:
            self.sel.unregister(c.sock)
        c.state, c.events = CLOSED, 0
        c.sock.close()
        self.count -= 1
        if not self.listening and self.resume_at is None:
            self._listen(True)

    def _expire(self, now: float) -> None:
        for state in (READING, WRITING, LINGERING):
            d = self.states[state]
            while d:
                c, deadline = next(iter(d.items()))
                if deadline > now:
                    break
                if state == READING and c.buf:
                    # started a request and never finished it: say so, best effort
                    try:
                        c.sock.send(_error(408))
                    except OSError:
                        pass
                self._close(c)

    def _ready(self, c: _Conn) -> None:
        try:
            if c.state == READING:
                self._read_head(c)
            elif c.state == WRITING:
                self._write(c)
            elif c.state == LINGERING:
                self._linger(c)
        except OSError:  # reset, timed out, gone: the client's business
            self._close(c)

    def _read_head(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(MAX_HEAD + 4 - len(c.buf))
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self._close(c)
            return
        start = max(0, len(c.buf) - 3)
        c.buf += data
        if not _METHOD.match(c.buf):
            # TLS, SSH banners, binary junk: no need to wait for a line end
            self._answer(c, _error(400))
            return
        end, _ = _head_end(c.buf, start)
        if end < 0:
            if len(c.buf) > MAX_HEAD:
                self._answer(c, _error(414 if b"\n" not in c.buf else 431))
            return
        try:
            req = parse_head(bytes(c.buf[:end]))
        except HttpError as e:
            self._answer(c, _error(e.status, e.extra))
            return
        c.buf = bytearray()
        c.head_only = req.method == "HEAD"
        if req.path == "/metrics":
            self._enter(c, RENDERING)
            self.jobs.put((c, req))
        elif req.path == "/":
            self._answer(c, response(200, b"mfd: Prometheus metrics are at /metrics\n",
                                     head_only=c.head_only))
        else:
            self._answer(c, _error(404))

    def _answer(self, c: _Conn, data: bytes) -> None:
        c.out = memoryview(data)
        self._enter(c, WRITING, selectors.EVENT_WRITE, time.monotonic() + WRITE_TIMEOUT)
        self._ready(c)

    def _write(self, c: _Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        c.out = c.out[n:]
        if c.out:
            return
        c.out = None
        c.sock.shutdown(socket.SHUT_WR)
        self._enter(c, LINGERING, selectors.EVENT_READ, time.monotonic() + LINGER_TIMEOUT)

    def _linger(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(16384)
        except (BlockingIOError, InterruptedError):
            return
        c.drained += len(data)
        if not data or c.drained > LINGER_BYTES:
            self._close(c)

    # -- rendering ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = [self.jobs.get()]
            # Everything that queued up while the last batch rendered is answered
            # by one snapshot, taken after all of it arrived, so each answer is
            # still fresher than its request.  200 concurrent scrapes then cost
            # one snapshot, not 200 in a row with the last client waiting for all.
            while not self.jobs.empty():
                batch.append(self.jobs.get())
            stop = None in batch
            batch = [job for job in batch if job is not None]
            if batch:
                try:
                    answers = self.render([req for _, req in batch])
                except Exception as e:  # a bug, not the client's: one line, once
                    self._say_once("render", f"internal error serving /metrics: "
                                   f"{type(e).__name__}: {e}")
                    answers = [_error(500)] * len(batch)
                self.done.extend((c, data) for (c, _), data in zip(batch, answers))
                try:
                    self.wake_w.send(b"\0")
                except OSError:
                    pass  # full: the loop has wake-ups pending anyway
            if stop:
                return

    def _finished_renders(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:
            pass
        while self.done:
            c, data = self.done.popleft()
            if c.state == RENDERING:
                self._answer(c, data[:data.index(b"\r\n\r\n") + 4] if c.head_only else data)

    def _say_once(self, what: str, msg: str) -> None:
        if what not in self.said:
            self.said.add(what)
            self.note(msg)

    def close(self) -> None:
        self.jobs.put(None)
        # the worker may be inside a snapshot: let it finish before the CLI
        # closes the source under it
        self.worker.join(timeout=5)
        for d in self.states.values():
            for c in list(d):
                c.sock.close()
            d.clear()
        self.count = 0
        for s in (self.listener, self.wake_r, self.wake_w):
            s.close()
        self.sel.close()


class _Collected:
    """Metrics already collected, for prometheus_client's encoders (which only
    call ``collect()``): one snapshot, written out in each format asked for."""

    def __init__(self, metrics):
        self.metrics = metrics

    def collect(self):
        return iter(self.metrics)


def metrics_renderer(registry) -> Callable[[List[Request]], List[bytes]]:
    """``render`` for MetricsServer: one collection of the registry for a batch
    of requests, each answered in the format it asks for (Prometheus text or
    OpenMetrics), gzipped when it accepts that."""
    from prometheus_client.exposition import choose_encoder, gzip_accepted

    def render(requests: List[Request]) -> List[bytes]:
        collected = _Collected(list(registry.collect()))
        made: Dict[tuple, bytes] = {}
        out = []
        for req in requests:
            encoder, ctype = choose_encoder(req.headers.get("accept"))
            gz = gzip_accepted(req.headers.get("accept-encoding", ""))
            key = (ctype, gz)
            if key not in made:
                body = encoder(collected)
                extra = ()
                if gz:
                    body, extra = gzip.compress(body), (("Content-Encoding", "gzip"),)
                made[key] = response(200, body, ctype, extra)
            out.append(made[key])
        return out
    return render


def serve(collector: SnapshotCollector, listen: str, note: Callable[[str], None],
          flag: str = "--listen", said: Optional[Callable[[str], None]] = None) -> int:
    """Serve ``collector``'s /metrics until a signal ends mfd.  ``note`` says
    what goes wrong, ``said`` (default ``note``) where it listens.  Returns
    the exit status."""
    from prometheus_client import CollectorRegistry

    host, port = parse_listen(listen, flag)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = MetricsServer(listen_socket(host, port, flag), metrics_renderer(registry), note)
    try:
        bound = server.listener.getsockname()
        where = {"0.0.0.0": " (every IPv4 interface)",
                 "::": " (every IPv6 interface, not IPv4)"}.get(bound[0], "")
        (said or note)(f"serving Prometheus metrics on http://{format_address(*bound[:2])}/metrics"
             f"{where} (one snapshot per scrape); Ctrl-C to end")
        server.serve_forever()
    finally:
        server.close()
    return 0


def require_client() -> None:
    """MfdError with an install hint when prometheus-client is missing (checked
    before anything is compiled)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as e:
        from ..origin import install_hint
        raise MfdError("the exporter needs prometheus-client: " + install_hint(
            "python3-prometheus-client", "python3-prometheus_client",
            "prometheus-client")) from e
