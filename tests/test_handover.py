"""mfd.handover, the loader helper's mechanism, with a build function of the
test's own (no BPF): fds really cross the socket, an idle child is replaced,
a broken build is a HandoverFailed, and close() leaves no child behind."""
from __future__ import annotations

import os
import time

import pytest

from mfd import handover


def _pipe_build(req):
    """In the child: a pipe whose read end goes to the parent, the message
    already written by the child (so the parent can only read it through
    the fd it was handed)."""
    r, w = os.pipe()
    os.write(w, f"{req['say']} from {os.getpid()}".encode())
    os.close(w)
    return {"child": os.getpid()}, [r]


def test_fds_cross_and_the_child_is_reaped():
    h = handover.Helper(_pipe_build)
    try:
        header, fds = h.request({"say": "hello"})
        child = header["child"]
        assert child != os.getpid() and len(fds) == 1
        assert os.read(fds[0], 100) == f"hello from {child}".encode()
        os.close(fds[0])
        header2, fds2 = h.request({"say": "again"})       # the same child serves on
        assert header2["child"] == child
        os.close(fds2[0])
    finally:
        h.close()
    assert h.pid is None and not os.path.exists(f"/proc/{child}")   # reaped, no zombie


@pytest.mark.parametrize("looked_alive", [False, True])
def test_a_child_gone_idle_is_replaced(monkeypatch, looked_alive):
    """The child leaves after its idle timeout; the next request gets a new
    one.  ``looked_alive``: the race CI met, the child reached its timeout
    between the parent's look (_gone) and its send, so the request met a
    closed socket (EPIPE, or ECONNRESET with the request unread): one more
    try, with a new child, not a HandoverFailed and an in-process compile."""
    monkeypatch.setattr(handover, "IDLE_SECONDS", 0.2)   # inherited by the fork
    if looked_alive:
        monkeypatch.setattr(handover.Helper, "_gone", lambda self: False)
    h = handover.Helper(_pipe_build)
    try:
        first, fds = h.request({"say": "one"})
        os.close(fds[0])
        time.sleep(0.6)                                  # the child leaves by itself
        second, fds = h.request({"say": "two"})
        os.close(fds[0])
        assert second["child"] != first["child"]
    finally:
        h.close()


def test_a_broken_build_is_a_handover_failure():
    def broken(_req):
        raise RuntimeError("no luck")
    h = handover.Helper(broken)
    try:
        with pytest.raises(handover.HandoverFailed, match="no luck"):
            h.request({})
    finally:
        h.close()


def test_a_child_that_dies_is_a_handover_failure():
    def dies(_req):
        os._exit(3)
    h = handover.Helper(dies)
    try:
        with pytest.raises(handover.HandoverFailed, match="without answering"):
            h.request({})
    finally:
        h.close()


def test_close_kills_a_child_still_building(monkeypatch):
    monkeypatch.setattr(handover, "REAP_SECONDS", 0.1)

    def slow(_req):
        time.sleep(30)
        return {}, []
    h = handover.Helper(slow)
    h._start()
    pid = h.pid
    h.sock.send(b"{}")
    t0 = time.monotonic()
    h.close()
    assert time.monotonic() - t0 < 5
    assert not os.path.exists(f"/proc/{pid}")
