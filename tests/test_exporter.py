"""The Prometheus exporter: parsing, an isolated registry, and a real Prometheus scraping mfd."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest

from conftest import mfd_argv, needs_root, run_mfd
from fleet import Prometheus, free_port as _free_port, get as _get, wait_for as _wait_for
from mfd.sources.procfs import ProcfsSource, parse_buddyinfo
from mfd.errors import UsageError
from mfd.sinks.exporter import SnapshotCollector, parse_listen
from mfd.derive import Frame
from mfd.model import Filter, Sample

prometheus_client = pytest.importorskip("prometheus_client")


@pytest.mark.parametrize("text,want", [
    ("9610", ("127.0.0.1", 9610)),
    (":9610", ("127.0.0.1", 9610)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:9610", ("::1", 9610)),
    ("[::]:9610", ("::", 9610)),
    ("[fe80::1%lo]:9610", ("fe80::1%lo", 9610)),
    ("localhost:9610", ("localhost", 9610)),
])
def test_parse_listen(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["x", "host:", "1:99999", "0", "", " 9610", "+9610", "9_610",
                                  "[::1]", "[::1]9610", "[]:9610", "[x]:9610", "[1.2.3.4]:9610",
                                  "::1:9610", "a b:9610", "999.1.1.1:9610", "-x:9610"])
def test_parse_listen_rejects(text):
    with pytest.raises(UsageError):
        parse_listen(text)


@pytest.mark.parametrize("text,full", [("0:9610", "0.0.0.0"), ("0.0:9610", "0.0.0.0"),
                                       ("127.1:9610", "127.0.0.1"),
                                       ("0x7f000001:9610", "127.0.0.1")])
def test_inet_aton_shorthand_is_never_an_address(text, full):
    # glibc would bind "0" as 0.0.0.0: every interface, said by a single digit
    with pytest.raises(UsageError, match=f"shorthand for {full}"):
        parse_listen(text)


@pytest.mark.parametrize("text", ["::1", "::", "fe80::1"])
def test_unbracketed_ipv6_is_a_usage_error_that_shows_the_brackets(text):
    with pytest.raises(UsageError, match=re.escape(f"[{text}]:9610")):
        parse_listen(text)


def test_every_interface_is_never_implied_on_the_command_line():
    r = run_mfd("--source", "procfs", "--prometheus", "0:9610", timeout=20)
    assert r.returncode == 2 and "0.0.0.0" in r.stderr and "Traceback" not in r.stderr
    r = run_mfd("serve", "--source", "procfs", "--listen", "::1", timeout=20)
    assert r.returncode == 2 and "[::1]:9610" in r.stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")


@needs_ipv6
def test_ipv6_listener_is_bracketed_in_messages_and_scrapes():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(mfd_argv("serve", "--source", "procfs", "--listen", f"[::1]:{port}"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://[::1]:{port}/metrics"
    try:
        _wait_for(lambda: p.poll() is None and _get(url), "mfd serve on [::1]")
        assert "mfd_zone_free_pages{" in _get(url)
    finally:
        p.terminate()
        err = p.communicate(timeout=20)[1]
    assert f"on http://[::1]:{port}/metrics" in err, err


@needs_ipv6
def test_ipv6_port_in_use_is_bracketed():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_mfd("serve", "--source", "procfs", "--listen", f"[::1]:{port}", timeout=20)
    assert r.returncode == 1 and f"cannot listen on [::1]:{port}" in r.stderr


def _registry(source, flt=Filter()):
    reg = prometheus_client.CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(lambda: Frame(Sample(source.snapshot(), 0.0, 0), flt),
                                   {"version": "t", "source": source.name,
                                    "pgdat_path": "", "kernel": "k"}))
    return reg


def test_registry_values_match_buddyinfo():
    reg = _registry(ProcfsSource())
    with open("/proc/buddyinfo") as f:
        buddy = parse_buddyinfo(f.read())
    for (node, zone), counts in buddy.items():
        labels = {"node": str(node), "zone": zone}
        free = reg.get_sample_value("mfd_zone_free_pages", labels)
        assert free is not None, (node, zone)
        # one scrape is one snapshot: its blocks add up to its free pages
        blocks = [reg.get_sample_value("mfd_zone_free_blocks", dict(labels, order=str(o)))
                  for o in range(len(counts))]
        # the registry re-collects on every get_sample_value: allow drift between scrapes
        assert abs(sum(int(b) << o for o, b in enumerate(blocks)) - free) <= max(free // 20, 512)
        u = reg.get_sample_value("mfd_zone_unusable_index", dict(labels, order="0"))
        assert 0.0 <= u <= 1.0
    assert reg.get_sample_value("mfd_collector_errors_total") == 0


def test_filters_apply():
    snap = ProcfsSource().snapshot()
    zone = next(z.zone for z in snap.zones() if z.populated)
    text = prometheus_client.generate_latest(_registry(ProcfsSource(), Filter(zone=zone))).decode()
    zones = {line.split('zone="')[1].split('"')[0] for line in text.splitlines()
             if line.startswith("mfd_zone_free_pages{")}
    assert zones == {zone}


@pytest.fixture
def exporter():
    port = _free_port()
    p = subprocess.Popen(mfd_argv("--prometheus", str(port)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        _wait_for(lambda: p.poll() is None and _get(url), "mfd's /metrics")
        yield p, port, url
    finally:
        p.terminate()
        p.wait(timeout=20)


@needs_root
def test_exporter_serves_bpf_metrics_on_loopback_only(exporter):
    p, port, url = exporter
    text = _get(url)
    assert 'source="bpf"' in text and "mfd_zone_free_blocks{" in text
    assert "0xffff" not in text and "pgdat=" not in text
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                               text=True).stdout
    if listening:  # iproute2 present: the local address column is loopback
        assert [line.split()[3] for line in listening.splitlines()] == ["127.0.0.1:%d" % port]


@needs_root
def test_real_prometheus_scrapes_mfd(exporter, tmp_path):
    if not shutil.which("prometheus"):
        pytest.skip("prometheus (Debian package) not installed")
    _, port, _ = exporter
    server = Prometheus(str(tmp_path), {"mfd": port}, rules=None)
    query = server.query
    try:
        blocks = _wait_for(lambda: query("mfd_zone_free_blocks"), "Prometheus to scrape mfd")
        with open("/proc/buddyinfo") as f:
            buddy = parse_buddyinfo(f.read())
        got = {(int(r["metric"]["node"]), r["metric"]["zone"], int(r["metric"]["order"]))
               for r in blocks}
        want = {(n, z, o) for (n, z), c in buddy.items() for o in range(len(c))}
        assert got == want
        present = {(int(r["metric"]["node"]), r["metric"]["zone"]): int(r["value"][1])
                   for r in query("mfd_zone_present_pages")}
        proc = {(z.node, z.zone): z.present for z in ProcfsSource().snapshot().zones()
                if z.populated}
        assert present == proc
        up = query('up{job="mfd"}')
        assert up and up[0]["value"][1] == "1"
        ex = query("mfd_zone_extfrag_index")
        assert ex and all(-1.0 <= float(r["value"][1]) <= 1.0 for r in ex)
    finally:
        server.stop()


@needs_root
def test_port_in_use_is_one_line_exit_1():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_mfd("--prometheus", str(port))
    assert r.returncode == 1
    assert "cannot listen on 127.0.0.1:%d" % port in r.stderr and "Traceback" not in r.stderr


def test_bad_listen_address_is_usage_error():
    r = run_mfd("--source", "procfs", "--prometheus", "nonsense")
    assert r.returncode == 2 and "[HOST:]PORT" in r.stderr


@pytest.mark.parametrize("other", [["--record", "x.db"], ["-v"], ["--json"], ["--count", "1"]])
def test_exporter_does_not_silently_drop_other_modes(other):
    r = run_mfd("--source", "procfs", "--prometheus", "9", *other)
    assert r.returncode == 2 and "does not go with" in r.stderr


def test_serve_command_scrapes_like_the_alias():
    port = _free_port()
    p = subprocess.Popen(mfd_argv("serve", "--listen", f"127.0.0.1:{port}", "--source",
                                  "procfs", "-c", "normal"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        _wait_for(lambda: p.poll() is None and _get(url), "mfd serve's /metrics")
        text = _get(url)
    finally:
        p.terminate()
        p.wait(timeout=20)
    assert p.returncode == 0
    zones = {line.split('zone="')[1].split('"')[0] for line in text.splitlines()
             if line.startswith("mfd_zone_free_pages{")}
    assert zones == {"Normal"} and 'source="procfs"' in text
