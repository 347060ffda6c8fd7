"""The exporter under abusive local clients (issue 9, part 3).

Real sockets, no mocks.  The abusive clients run in a separate process, as user
nobody when the tests run as root, so that the limit under test is the
exporter's own RLIMIT_NOFILE (set to 1024, a common default, whatever the shell
gave us).  The exporter serves from /proc: the listener is what is tested, and
the procfs source needs neither root nor a BPF compile.
"""
from __future__ import annotations

import json
import os
import pwd
import resource
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import ROOT, mfd_argv

pytest.importorskip("prometheus_client")

# Stdlib only, run with -c: user nobody cannot read pytest's tmp_path (0700).
# argv: host port idle slowloris scrapers seconds reconnect(0/1).  One thread,
# non-blocking sockets; prints "ready" once everything is under way and a JSON
# summary at the end.  Idle and slowloris clients come back when dropped (with
# reconnect=1), as a determined attacker would; scrapers loop as fast as they can.
ATTACKER = r'''
import json, resource, selectors, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
n_idle, n_slow, n_scrape = map(int, sys.argv[3:6])
seconds, reconnect = float(sys.argv[6]), sys.argv[7] == "1"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n_idle + n_slow + n_scrape + 64
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
sel = selectors.DefaultSelector()
REQ = b"GET /metrics HTTP/1.1\r\nHost: mfd\r\nAccept: */*\r\n\r\n"
to_open = ["idle"] * n_idle + ["slow"] * n_slow + ["scrape"] * n_scrape
lat, failed, dropped, opened, slow = [], 0, 0, 0, set()

def start(kind):
    global opened
    try:
        s = socket.socket()
    except OSError:
        to_open.append(kind)    # out of fds here: try again later
        return
    s.setblocking(False)
    s.connect_ex((host, port))
    opened += 1
    sel.register(s, selectors.EVENT_WRITE, [kind, time.monotonic(), b""])

def gone(s, st):
    global failed, dropped
    sel.unregister(s)
    slow.discard(s)
    s.close()
    if st[0] == "scrape":
        if st[2][:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and st[2][9:12] == b"200":
            lat.append(time.monotonic() - st[1])
        else:
            failed += 1
        to_open.append("scrape")
    else:
        dropped += 1
        if reconnect:
            to_open.append(st[0])

end = time.monotonic() + seconds
tick = 0.0
said_ready = False
while time.monotonic() < end:
    for _ in range(min(len(to_open), 300)):
        start(to_open.pop(0))
    if not said_ready:
        print("ready", flush=True)
        said_ready = True
    for key, mask in sel.select(0.05):
        s, st = key.fileobj, key.data
        try:
            if mask & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    gone(s, st)
                    continue
                if st[0] == "scrape":
                    s.send(REQ)
                elif st[0] == "slow":
                    s.send(b"GET /metrics HTTP/1.1\r\n")
                    slow.add(s)
                sel.modify(s, selectors.EVENT_READ, st)
            else:
                data = s.recv(65536)
                if not data:
                    gone(s, st)
                elif len(st[2]) < 64:
                    st[2] += data[:64]
        except OSError:
            gone(s, st)
    if time.monotonic() > tick:
        tick = time.monotonic() + 0.5
        for s in list(slow):
            try:
                s.send(b"X-Trickle: 1\r\n")
            except OSError:
                pass
lat.sort()
print(json.dumps({"scrapes": len(lat), "failed": failed, "dropped": dropped,
                  "opened": opened,
                  "p50": lat[len(lat) // 2] if lat else None,
                  "max": lat[-1] if lat else None}), flush=True)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return {"threads": int(status["Threads"]), "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}


def _scrape(port: int, timeout: float = 2.0):
    """(seconds, ok) for one plain scrape, as Prometheus would make it."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: mfd\r\n\r\n")
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
    except OSError:
        return time.monotonic() - t0, False
    ok = out.startswith(b"HTTP/1.") and out[9:12] == b"200" and b"mfd_zone_free_pages{" in out
    return time.monotonic() - t0, ok


def _limit_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


@pytest.fixture
def exporter(tmp_path):
    """A running ``mfd serve --source procfs`` with RLIMIT_NOFILE 1024: (Popen, port,
    stderr path)."""
    port = _free_port()
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        p = subprocess.Popen(mfd_argv("serve", "--source", "procfs", "--listen",
                                      f"127.0.0.1:{port}"), stdout=subprocess.DEVNULL,
                             stderr=f, preexec_fn=_limit_nofile)
    try:
        deadline = time.monotonic() + 30
        while not _scrape(port)[1]:
            assert p.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "mfd serve did not come up"
            time.sleep(0.2)
        yield p, port, err
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _as_nobody():
    if not ROOT:
        return [], None
    nobody = pwd.getpwnam("nobody")

    def room():  # the attacker's own fds are not what is tested: give it plenty
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, max(4096, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1])))
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups", "--"], room


def _attack(port: int, idle: int, slow: int, scrapers: int, seconds: float,
            reconnect: bool = True) -> subprocess.Popen:
    prefix, pre = _as_nobody()
    p = subprocess.Popen(prefix + [sys.executable, "-c", ATTACKER, "127.0.0.1", str(port),
                                   str(idle), str(slow), str(scrapers), str(seconds),
                                   "1" if reconnect else "0"],
                         stdout=subprocess.PIPE, text=True, cwd="/", preexec_fn=pre)
    assert p.stdout.readline().strip() == "ready"
    return p


def _no_traceback(err) -> None:
    text = err.read_text()
    assert "Traceback" not in text and "Exception occurred" not in text, text[-2000:]


def _settle(pid: int, base: dict, limit: float = 8.0) -> dict:
    """The exporter's stats once fds and threads are back to their baseline (or
    at ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while True:
        s = _stats(pid)
        if (s["fds"] <= base["fds"] + 2 and s["threads"] <= base["threads"]) \
                or time.monotonic() > deadline:
            return s
        time.sleep(0.2)


@pytest.mark.parametrize("idle,slow", [(1000, 50), (0, 1050)], ids=["idle", "all-slowloris"])
def test_scrapes_survive_idle_slowloris_and_a_scrape_flood(exporter, idle, slow):
    # "idle" is the case.  Silent clients wait in the kernel (TCP_DEFER_ACCEPT)
    # for about 7 s before mfd sees them; "all-slowloris" clients all send
    # something at once, so the cap and the eviction get the whole load.
    p, port, err = exporter
    base = _stats(p.pid)
    attacker = _attack(port, idle=idle, slow=slow, scrapers=200, seconds=12)
    try:
        time.sleep(2)  # let all 1250 connections land
        results, during = [], []
        while attacker.poll() is None and len(results) < 18:
            results.append(_scrape(port))
            during.append(_stats(p.pid))
            time.sleep(0.5)
        summary = json.loads(attacker.communicate(timeout=30)[0])
    finally:
        attacker.kill()
        attacker.wait()
    after = _settle(p.pid, base)
    worst = max(during, key=lambda s: s["fds"])
    print(f"\nbaseline {base}\nworst during {worst}\nmax threads "
          f"{max(s['threads'] for s in during)}, max rss {max(s['rss_mb'] for s in during):.1f}"
          f" MB\nafter {after}\nnormal scrapes {[(round(t, 3), ok) for t, ok in results]}\n"
          f"attacker {summary}")
    assert len(results) >= 10
    assert all(ok and t < 2.0 for t, ok in results), results
    # bounded: nowhere near one thread or fd per client (1250 of them)
    assert max(s["threads"] for s in during) <= base["threads"] + 2
    assert max(s["fds"] for s in during) <= 300
    assert max(s["rss_mb"] for s in during) - base["rss_mb"] < 20
    # and back afterwards
    assert after["fds"] <= base["fds"] + 2 and after["threads"] <= base["threads"]
    assert after["rss_mb"] - base["rss_mb"] < 20
    assert summary["scrapes"] > 0
    _no_traceback(err)


def test_idle_and_slowloris_connections_are_closed(exporter):
    # The slowloris client has sent something: it gets the 5 s head deadline.  The
    # silent one first waits in the kernel (TCP_DEFER_ACCEPT, about 7 s, costing
    # mfd nothing), then gets the same deadline.
    _, port, err = exporter
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed = {}
    try:
        for s in (idle, slow):
            s.setblocking(False)
        got = b""
        while len(closed) < 2 and time.monotonic() - t0 < 16:
            time.sleep(0.25)
            try:  # one header line every 0.25 s: a per-recv timeout never fires
                slow.send(b"X-Trickle: 1\r\n")
            except OSError:
                pass
            for name, s in (("idle", idle), ("slow", slow)):
                if name in closed:
                    continue
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                got += data if name == "slow" else b""
                if not data:
                    closed[name] = time.monotonic() - t0
    finally:
        idle.close()
        slow.close()
    assert set(closed) == {"idle", "slow"}, f"still open after 16 s: {closed}"
    assert closed["slow"] < 7 and closed["idle"] < 15, closed
    assert got.startswith(b"HTTP/1.1 408 ")
    _no_traceback(err)


def _exchange(port: int, data: bytes, rst: bool = False) -> bytes:
    """Send ``data`` (as much as the server takes) and return what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server answered and stopped reading: expected for floods
        if rst:  # go away with a reset, mid-request
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    return out
                out += b
        except OSError:
            return out


GARBAGE = [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)), b"400"),  # TLS
    (b"SSH-2.0-OpenSSH_9.2\r\n", b"400"),
    (b"\x00" * 4096 + b"\r\n\r\n", b"400"),
    (b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET /metrics HTTP/1.1\r\n" + b"X-Big: " + b"b" * (1 << 20) + b"\r\n\r\n", b"431"),
    (b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 200_000 + b"\r\n", b"431"),
    (b"GET /metrics HTTP/1.1\r\n folded: header\r\n\r\n", b"400"),
    (b"DELETE /metrics HTTP/1.1\r\n\r\n", b"405"),
    (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", b"404"),
]


def test_garbage_and_resets_get_no_traceback_and_the_exporter_keeps_serving(exporter):
    p, port, err = exporter
    rss = _stats(p.pid)["rss_mb"]
    for garbage, status in GARBAGE:
        out = _exchange(port, garbage)
        assert out[:7] == b"HTTP/1." and out[9:12] == status, (garbage[:40], out[:80])
        assert _scrape(port)[1]
    for _ in range(5):
        _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: mfd\r\n", rst=True)   # mid-head
        _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: mfd\r\n\r\n", rst=True)  # mid-answer
    time.sleep(0.5)
    assert _scrape(port)[1]
    # at most MAX_HEAD of a request is kept, not the megabytes sent
    assert _stats(p.pid)["rss_mb"] - rss < 4
    _no_traceback(err)


def test_out_of_fds_backs_off_instead_of_spinning(exporter):
    p, port, err = exporter
    # Something else took the fds (or prlimit lowered the limit): 24 left for
    # connections, and 300 clients that stay (slowloris ones: silent clients
    # would wait in the kernel, TCP_DEFER_ACCEPT, and never reach accept).
    limit = _stats(p.pid)["fds"] + 24
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (limit, limit))
    attacker = _attack(port, idle=0, slow=300, scrapers=0, seconds=8, reconnect=False)
    try:
        time.sleep(1.5)
        cpu0, t0 = _stats(p.pid)["cpu_s"], time.monotonic()
        results = []
        for _ in range(6):
            results.append(_scrape(port))
            time.sleep(0.5)
        busy = (_stats(p.pid)["cpu_s"] - cpu0) / (time.monotonic() - t0)
        fds = _stats(p.pid)["fds"]
    finally:
        attacker.kill()
        attacker.wait()
    print(f"\nfd limit {limit}: cpu {busy:.0%} of one core, fds {fds}, scrapes "
          f"{[(round(t, 3), ok) for t, ok in results]}")
    assert busy < 0.25
    assert all(ok and t < 2.0 for t, ok in results), results
    assert fds <= limit
    text = err.read_text()
    assert text.count("out of file descriptors") == 1, text
    _no_traceback(err)
