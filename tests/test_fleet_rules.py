"""contrib/prometheus/mfd-rules.yml: promtool check rules, and promtool test
rules on mfd-rules.test.yml (each alert fires when it should and not
before; the node_exporter-compatible series keep values and labels).
(The rules against a real Prometheus scraping mfd: tests/test_fleet.py.)"""
from __future__ import annotations

import os
import subprocess

import pytest

import fleet

pytestmark = pytest.mark.skipif(not fleet.PROMTOOL, reason="needs promtool (Debian prometheus)")
TESTS = os.path.join(os.path.dirname(fleet.RULES), "mfd-rules.test.yml")


def _promtool(*args, cwd=None):
    return subprocess.run([fleet.PROMTOOL, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_promtool_check_rules():
    r = _promtool("check", "rules", fleet.RULES)
    assert r.returncode == 0 and "SUCCESS: 8 rules found" in r.stdout, r.stdout + r.stderr


def test_promtool_test_rules():
    r = _promtool("test", "rules", os.path.basename(TESTS), cwd=os.path.dirname(TESTS))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_the_unit_tests_cover_every_alert():
    import yaml
    with open(fleet.RULES) as f:
        alerts = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]
                  if "alert" in r}
    with open(TESTS) as f:
        tests = yaml.safe_load(f)["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", ())
             if a["exp_alerts"]}
    quiet = {a["alertname"] for t in tests for a in t.get("alert_rule_test", ())
             if not a["exp_alerts"]}
    assert alerts == fired == quiet


def test_a_broken_rule_fails_promtool(tmp_path):
    """The check has teeth: promtool refuses a rule with a bad expression."""
    bad = tmp_path / "bad.yml"
    with open(fleet.RULES) as f:
        bad.write_text(f.read().replace("mfd:node_thp_available_blocks:sum == 0",
                                        "mfd:node_thp_available_blocks:sum == ("))
    assert _promtool("check", "rules", str(bad)).returncode != 0
