#!/usr/bin/env python3
"""Generate contrib/grafana/mfd.json, the Grafana dashboard for mfd serve.

    .venv/bin/python contrib/grafana/generate.py            # rewrite mfd.json
    .venv/bin/python contrib/grafana/generate.py --check    # exit 1 if it differs

Built with grafana-foundation-sdk (PyPI; Python >= 3.11), Grafana's own typed
builders, so that the JSON follows the schema the SDK declares rather than
hand-written keys.  Only the stock Prometheus data source is used, chosen
with a data source variable.  tests/test_fleet_dashboard.py checks that the
committed file equals this output and runs every panel's query against a
real Prometheus (``EXPRESSIONS`` is what it reads).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from grafana_foundation_sdk.builders import bargauge, common as common_b, heatmap, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import (DatasourceVariable, Dashboard,
                                                       QueryVariable, Row)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (BarGaugeDisplayMode, LegendDisplayMode,
                                                  LegendPlacement, SortOrder,
                                                  TooltipDisplayMode, VizOrientation)
from grafana_foundation_sdk.models.dashboard import (DataSourceRef, VariableRefresh,
                                                     VariableSort)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "mfd.json")

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
HOST = 'instance=~"$host"'
NODE = f'{HOST}, node=~"$node"'
ZONE = f'{NODE}, zone=~"$zone"'
MIB2, GIB1 = 2 << 20, 1 << 30


def q(expr: str, legend: str, ref: str = "A", fmt=None, instant: bool = False) -> Dataquery:
    d = Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    if fmt is not None:
        d = d.format(fmt)
    return d.instant() if instant else d.range()


def variable(name: str, label: str, query: str) -> QueryVariable:
    return (QueryVariable(name).label(label).datasource(DS).query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))


# (title, description, unit, [(expr, legend)]) of the time-series panels, in order.
RATE = "$__rate_interval"
SERIES_PANELS = [
    ("Free blocks per order", "free_area[order].nr_free summed over the selected zones: "
     "what /proc/buddyinfo shows (node_exporter: node_buddyinfo_blocks).", "short",
     [(f"sum by (order) (mfd_zone_free_blocks{{{ZONE}}})", "order {{order}}")]),
    ("Node fragmentation score and kcompactd's watermarks",
     "fragmentation_score_node() (0..100).  kcompactd starts proactive compaction above "
     "the high watermark and stops each zone at or below the low one "
     "(vm.compaction_proactiveness).", "none",
     [(f"mfd_node_fragmentation_score{{{NODE}}}", "{{instance}} node {{node}} score"),
      (f"max(mfd_node_fragmentation_score_high_watermark{{{NODE}}})", "high watermark"),
      (f"max(mfd_node_fragmentation_score_low_watermark{{{NODE}}})", "low watermark")]),
    ("Blocks available now: 2 MiB and 1 GiB",
     "Free blocks of the size or larger, counted in blocks of the size, without "
     "compaction (mfd can's \"now\").  1 GiB pages never come from the free lists "
     "(above the largest buddy order), so that line is 0 on x86-64.", "short",
     [(f'sum by (instance, node) (mfd_zone_available_blocks{{{ZONE}, size_bytes="{MIB2}"}})',
       "2 MiB {{instance}} node {{node}}"),
      (f'sum by (instance, node) (mfd_zone_available_blocks{{{ZONE}, size_bytes="{GIB1}"}})',
       "1 GiB {{instance}} node {{node}}")]),
    ("Extfrag fallbacks per second",
     "kmem:mm_page_alloc_extfrag: takeover when the whole pageblock changed migratetype, "
     "pollution when the block kept its type.", "ops",
     [(f"sum by (kind, alloc_migratetype, fallback_migratetype) "
       f"(rate(mfd_extfrag_fallbacks_total{{{HOST}}}[{RATE}]))",
       "{{kind}}: {{alloc_migratetype}} from {{fallback_migratetype}}")]),
    ("Compaction per second",
     "compact_zone() runs by end status, allocations that entered direct compaction, "
     "kcompactd wake-ups.", "ops",
     [(f"sum by (status) (rate(mfd_compaction_runs_total{{{ZONE}}}[{RATE}]))",
       "runs ending {{status}}"),
      (f"sum(rate(mfd_direct_compaction_stalls_total{{{HOST}}}[{RATE}]))",
       "direct compaction stalls"),
      (f"sum(rate(mfd_kcompactd_wakes_total{{{NODE}}}[{RATE}]))", "kcompactd wakes")]),
    ("Time compacting", "Seconds per second in compact_zone() runs: all callers, and "
     "allocating tasks stalled in direct compaction.", "percentunit",
     [(f"sum by (zone) (rate(mfd_compaction_run_seconds_total{{{ZONE}}}[{RATE}]))",
       "{{zone}} all runs"),
      (f"sum by (zone) (rate(mfd_direct_compaction_seconds_total{{{ZONE}}}[{RATE}]))",
       "{{zone}} direct")]),
]
HEATMAP_EXPR = f"max by (order) (mfd_zone_unusable_index{{{ZONE}}})"
TOP_CGROUPS_EXPR = (f'topk(10, sum by (cgroup) (increase(mfd_cgroup_extfrag_fallbacks_total'
                    f'{{{HOST}, kind="takeover"}}[$__range])))')
AGE_EXPR = f"max(mfd_sample_age_seconds{{{HOST}}})"
DROPS_EXPR = f"sum(increase(mfd_event_drops_total{{{HOST}}}[$__range]))"

# Every query of the dashboard, for the tests.
EXPRESSIONS = ([HEATMAP_EXPR] + [e for _, _, _, qs in SERIES_PANELS for e, _ in qs]
               + [TOP_CGROUPS_EXPR, AGE_EXPR, DROPS_EXPR])


LAST = common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def build() -> Dashboard:
    ids = iter(range(1, 100))    # Grafana wants a unique id per panel and row
    d = (Dashboard("mfd: memory fragmentation").uid("mfd-fragmentation")
         .description("mfd serve: the buddy allocator per node, zone and order, kcompactd's "
                      "view, and the events that fragment memory.")
         .tags(["mfd", "memory", "linux"]).refresh("30s").time("now-3h", "now")
         .timezone("browser").editable()
         .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
         .with_variable(variable("host", "Host", "label_values(mfd_build_info, instance)"))
         .with_variable(variable("node", "Node",
                                 f"label_values(mfd_zone_free_blocks{{{HOST}}}, node)"))
         .with_variable(variable("zone", "Zone",
                                 f"label_values(mfd_zone_free_blocks{{{NODE}}}, zone)")))
    d = d.with_row(Row("Fragmentation").id(next(ids)))
    d = d.with_panel(
        heatmap.Panel().id(next(ids)).title("Unusable index per order")
        .description("The kernel's unusable_index (mm/vmstat.c), worst of the selected "
                     "zones: the share of free memory in blocks too small for the order.")
        .datasource(DS).height(9).span(24).calculate(False)
        # time_series, not PromQueryFormat.HEATMAP: that format takes the
        # series as cumulative buckets and subtracts each from the next, and
        # the unusable index of one order is not a bucket of the next
        .with_target(q(HEATMAP_EXPR, "{{order}}")))
    for i, (title, desc, unit, queries) in enumerate(SERIES_PANELS):
        if i == 3:
            d = d.with_row(Row("Events").id(next(ids)))
        p = (timeseries.Panel().id(next(ids)).title(title).description(desc).datasource(DS)
             .unit(unit).height(8).span(12)
             .legend(common_b.VizLegendOptions().show_legend(True)
                     .display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM))
             .tooltip(common_b.VizTooltipOptions().mode(TooltipDisplayMode.MULTI)
                      .sort(SortOrder.DESCENDING)))
        if title.startswith("Node fragmentation"):
            p = p.min(0).max(100)
        for ref, (expr, legend) in zip("ABCDEF", queries):
            p = p.with_target(q(expr, legend, ref))
        d = d.with_panel(p)
    d = d.with_panel(
        bargauge.Panel().id(next(ids)).title("Top cgroups by pageblock takeovers")
        .description("Fallbacks that took a whole pageblock over, by the allocating task's "
                     "cgroup v2 path, over the dashboard's time range (mfd serve "
                     "--cgroup-labels caps the paths; the rest are \"other\").")
        .datasource(DS).height(8).span(12).unit("short")
        .display_mode(BarGaugeDisplayMode.GRADIENT).orientation(VizOrientation.HORIZONTAL)
        .reduce_options(LAST)
        .with_target(q(TOP_CGROUPS_EXPR, "{{cgroup}}", instant=True)))
    d = d.with_row(Row("Exporter").id(next(ids)))
    d = d.with_panel(
        stat.Panel().id(next(ids)).title("Sample age").description("Age of the snapshot behind the last "
                                                     "scrape when it was answered.")
        .datasource(DS).height(4).span(6).unit("s").reduce_options(LAST)
        .with_target(q(AGE_EXPR, "age")))
    d = d.with_panel(
        stat.Panel().id(next(ids)).title("Events dropped").description("Events not counted because a BPF "
                                                         "map was full (should stay 0).")
        .datasource(DS).height(4).span(6).unit("short").reduce_options(LAST)
        .with_target(q(DROPS_EXPR, "dropped")))
    return d


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if mfd.json is not current")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        with open(OUT) as f:
            if f.read() != text:
                print(f"{OUT} is not what generate.py makes: run it", file=sys.stderr)
                return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    json.loads(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
