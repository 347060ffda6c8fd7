"""contrib/grafana/mfd.json: the committed file is what generate.py makes,
it reads back through grafana-foundation-sdk's own dashboard model (the
schema version it declares), and it uses only the stock Prometheus data
source.  (Its queries against a real Prometheus: tests/test_fleet.py.)"""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

import fleet

pytest.importorskip("grafana_foundation_sdk")
HERE = os.path.join(fleet.REPO, "contrib", "grafana")


def _generator():
    spec = importlib.util.spec_from_file_location("mfd_dashboard",
                                                  os.path.join(HERE, "generate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _no_empty(x):
    """x without keys whose value is an empty object."""
    if isinstance(x, dict):
        return {k: v for k, v in ((k, _no_empty(v)) for k, v in x.items()) if v != {}}
    if isinstance(x, list):
        return [_no_empty(v) for v in x]
    return x


@pytest.fixture(scope="module")
def committed():
    with open(os.path.join(HERE, "mfd.json")) as f:
        return f.read()


def test_committed_json_is_the_generators_output(committed):
    assert committed == _generator().render(), "run contrib/grafana/generate.py"
    assert _generator().main(["--check"]) == 0


def test_json_is_valid_for_the_schema_version_it_declares(committed):
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.cog.runtime import Runtime
    from grafana_foundation_sdk.models.dashboard import Dashboard
    register_default_plugins()
    data = json.loads(committed)
    assert data["schemaVersion"] == Dashboard().schema_version    # the SDK's schema
    model = Dashboard.from_json(data)
    # every key is one the model knows: nothing is lost going through it
    # (the decoder adds an empty fieldConfig "custom" where the panel has none)
    again = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(model))
    assert _no_empty(again) == _no_empty(data)
    panels = [p for p in data["panels"] if p["type"] != "row"]
    for p in panels:
        assert Runtime().panelcfg_config(p["type"]) is not None, p["type"]
    assert {p["type"] for p in panels} >= {"heatmap", "timeseries", "bargauge", "stat"}


def test_only_the_stock_prometheus_data_source(committed):
    data = json.loads(committed)
    refs = [t["datasource"] for p in data["panels"] for t in p.get("targets", [])]
    refs += [p["datasource"] for p in data["panels"] if "datasource" in p]
    assert refs and all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs)
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"host", "node"} <= set(variables)
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    assert exprs == _generator().EXPRESSIONS


def test_the_issues_panels_are_there(committed):
    titles = " | ".join(p["title"] for p in json.loads(committed)["panels"])
    for want in ("Unusable index per order", "Free blocks per order", "Node fragmentation score",
                 "2 MiB and 1 GiB", "Extfrag fallbacks", "Compaction per second",
                 "Top cgroups"):
        assert want in titles, want
