"""The loader helper: a child process that builds eBPF objects and hands their
file descriptors to mfd over a Unix socket (SCM_RIGHTS), then exits.

Why: BCC compiles with libLLVM and libclang, ~85 MB of mappings that stay in
a process for its whole life once loaded, and mfd compiles only at start.
Forked before mfd ever imports BCC, the child pays for the compiler; mfd keeps
what the kernel needs to keep the programs running: map fds and the perf
event fds the programs are attached through.  The kernel frees all of it when
the last fd closes, so nothing outlives mfd, not even after kill -9.

This module knows nothing of BCC: the child runs the ``build`` function it is
given on each request (a JSON object) and sends back a JSON header and fds.
The child leaves with ``os._exit``: no atexit handler (BCC's detaches every
probe) and no buffered output of the parent's runs in it.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import time
from typing import Callable, List, Optional, Sequence, Tuple

# At most SCM_MAX_FD (253) descriptors per message (include/net/scm.h).
MAX_FDS = 253
# A request is the C source and cflags (13 KB with every event group); a
# SOCK_SEQPACKET message must fit the socket buffer (net.core.wmem_default).
MAX_MESSAGE = 128 << 10
# The child waits this long for the next request, then exits on its own.
IDLE_SECONDS = 30.0
# How long close() waits for the child to leave before killing it.
REAP_SECONDS = 0.5

Build = Callable[[dict], Tuple[dict, Sequence[int]]]


class HandoverFailed(Exception):
    """The helper could not be started or did not answer: the caller may load
    in-process instead.  (A compile error is an answer, not a failure.)"""


class Helper:
    """One loader child, started at the first request and kept for the next
    (mfd loads its sources one after another at start) until ``close()``."""

    def __init__(self, build: Build, warm: Optional[Callable[[], None]] = None):
        """``warm`` runs in the child as soon as it starts (importing BCC, say),
        while the parent is still preparing its first request."""
        self.build, self.warm = build, warm
        self.pid: Optional[int] = None
        self.sock: Optional[socket.socket] = None

    def start(self) -> None:
        """Start the child now rather than at the first request (idempotent)."""
        if self.sock is None:
            self._start()

    def request(self, message: dict) -> Tuple[dict, List[int]]:
        """Send one request; return the child's header and the fds it sent
        (now this process's).  Raises HandoverFailed."""
        data = json.dumps(message).encode()
        if len(data) > MAX_MESSAGE:
            raise HandoverFailed(f"a request of {len(data)} bytes, over {MAX_MESSAGE}")
        for attempt in (1, 2):
            if self.sock is not None and self._gone():
                self.close()            # it left after IDLE_SECONDS: start another
            if self.sock is None:
                self._start()
            try:
                self.sock.send(data)
                reply, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
            except OSError as e:
                self.close()
                # A child that reached its idle timeout as the request was sent
                # closes with the request unread: the kernel answers with a
                # reset (ECONNRESET, or EPIPE on the send).  Once more with a
                # new child, as for an empty reply below.
                if attempt == 1 and e.errno in (errno.ECONNRESET, errno.EPIPE):
                    continue
                raise HandoverFailed(f"its socket: {e}") from e
            if reply:
                break
            for fd in fds:
                os.close(fd)
            self.close()
            # Once more with a new child: this one may have reached its idle
            # timeout just as the request was sent.
            if attempt == 2:
                raise HandoverFailed("it exited without answering")
        try:
            header = json.loads(reply)
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            self.close()
            raise HandoverFailed("its answer is not JSON") from e
        if header.get("kind") == "internal":        # the helper broke, not the compile
            for fd in fds:
                os.close(fd)
            raise HandoverFailed(str(header.get("error")))
        if header.get("fds", 0) != len(fds):
            for fd in fds:
                os.close(fd)
            self.close()
            raise HandoverFailed(f"it sent {len(fds)} descriptors "
                                 f"instead of {header.get('fds')}")
        return header, fds

    def _gone(self) -> bool:
        """The child has exited (and is reaped now)."""
        try:
            return os.waitpid(self.pid, os.WNOHANG) != (0, 0)
        except ChildProcessError:
            return True

    def _start(self) -> None:
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            raise HandoverFailed(f"no socket pair: {e}") from e
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:
            ours.close()
            theirs.close()
            raise HandoverFailed(f"cannot fork: {e.strerror}") from e
        if pid == 0:                                     # the child
            code = 0
            try:
                ours.close()
                _serve(theirs, self.build, parent, self.warm)
            except BaseException:                        # noqa: BLE001 - never return to the caller
                code = 1
            os._exit(code)
        theirs.close()
        self.pid, self.sock = pid, ours

    def close(self) -> None:
        """Let the child go (it exits when the socket closes) and reap it.  A
        child still compiling (Ctrl-C during start-up) is killed after
        REAP_SECONDS rather than waited for: nothing it made outlives its fds."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        deadline = time.monotonic() + REAP_SECONDS
        try:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return
                time.sleep(0.005)
        except (ChildProcessError, ProcessLookupError):
            pass


def _serve(sock: socket.socket, build: Build, parent: int,
           warm: Optional[Callable[[], None]] = None) -> None:
    """The child: answer requests until the parent closes the socket or is idle."""
    _die_with_parent(parent)
    # Ctrl-C and SIGTERM are the parent's to handle: it ends the child by
    # closing the socket (or, if it dies, through PR_SET_PDEATHSIG).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    # Not the parent's stdout: a reader of mfd's output (| head) must see its
    # end when mfd ends, and the child has nothing to say there.  stderr stays
    # for --debug's compiler output.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    if warm is not None:
        try:
            warm()
        except Exception:   # noqa: BLE001 - the request will meet it again and say why
            pass
    sock.settimeout(IDLE_SECONDS)
    while True:
        try:
            data = sock.recv(MAX_MESSAGE)
        except socket.timeout:
            return
        if not data:
            return
        try:
            header, fds = build(json.loads(data))
        except Exception as e:   # noqa: BLE001 - the parent decides what an error means
            header, fds = {"error": str(e) or type(e).__name__, "kind": "internal"}, []
        header = dict(header, fds=len(fds))
        if len(fds) > MAX_FDS:
            header, fds = {"error": f"{len(fds)} descriptors to hand over, more than "
                                    f"{MAX_FDS}", "kind": "internal", "fds": 0}, []
        socket.send_fds(sock, [json.dumps(header).encode()], list(fds))


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: SIGKILL the child if the parent dies mid-compile."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)                                      # the parent is gone already
