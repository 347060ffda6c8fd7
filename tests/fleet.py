"""The fleet stack on loopback, for tests and bench/serve.py: mfd serve, a
real node_exporter (Debian prometheus-node-exporter, buddyinfo and zoneinfo
collectors) and a real Prometheus (Debian prometheus) scraping both, each on
a free port of 127.0.0.1."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Dict, List, Optional

from conftest import mfd_argv

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RULES = os.path.abspath(os.path.join(REPO, "contrib", "prometheus", "mfd-rules.yml"))
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class GaveUp(AssertionError):
    """A wait that timed out (a test failure, not an error)."""


def wait_for(fn, what: str, limit: float = 60):
    """fn()'s first truthy answer, retried every 0.3 s (OSError counts as none)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            out = fn()
            if out:
                return out
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise GaveUp(f"gave up waiting for {what}")
        time.sleep(0.3)


class Service:
    """A child process serving HTTP on 127.0.0.1:port."""

    def __init__(self, argv: List[str], port: int, path: str, what: str, limit: float = 90):
        self.port, self.what = port, what
        self.url = f"http://127.0.0.1:{port}{path}"
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        try:
            wait_for(lambda: self.proc.poll() is None and get(self.url), what, limit)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> str:
        """End it (SIGTERM); its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        if self.proc.stderr:
            self.proc.stderr.close()
        return err


def start_mfd(*args: str) -> Service:
    port = free_port()
    return Service(mfd_argv("serve", "--listen", f"127.0.0.1:{port}", *args), port,
                   "/metrics", "mfd serve's /metrics")


def start_node_exporter() -> Service:
    port = free_port()
    return Service([NODE_EXPORTER, "--collector.disable-defaults", "--collector.buddyinfo",
                    "--collector.zoneinfo", f"--web.listen-address=127.0.0.1:{port}"],
                   port, "/metrics", "node_exporter's /metrics")


class Prometheus(Service):
    """A real Prometheus scraping ``targets`` ({job: port}) every second, with
    mfd's rules evaluated every second."""

    def __init__(self, directory: str, targets: Dict[str, int], rules: Optional[str] = RULES):
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n")
            if rules:
                f.write(f"rule_files: [{json.dumps(rules)}]\n")
            f.write("scrape_configs:\n")
            for job, port in targets.items():
                f.write(f"  - job_name: {job}\n"
                        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
        port = free_port()
        super().__init__([PROMETHEUS, f"--config.file={config}",
                          f"--storage.tsdb.path={os.path.join(directory, 'data')}",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         port, "/-/ready", "Prometheus to be ready")

    def api(self, path: str, **params) -> dict:
        body = json.loads(get(f"http://127.0.0.1:{self.port}/api/v1/{path}?"
                              + urllib.parse.urlencode(params), timeout=30))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, **params) -> list:
        """The result of an instant query (a list of {metric, value})."""
        return self.api("query", query=expr, **params)["result"]


def parse_metrics(text: str) -> Dict[tuple, float]:
    """{(name, ((label, value), ...)): value} of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
