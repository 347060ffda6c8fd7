"""``mfd report FILE.db``: what a recording says, as a terminal summary, charts and exports.

* :mod:`.build`    one pass over the samples: per-zone summaries, chart columns;
* :mod:`.summary`  the terminal summary;
* :mod:`.exports`  --csv and --json;
* :mod:`.html`     the self-contained HTML page;
* :mod:`.plots`    the charts (matplotlib, imported only when asked for).

The summary and the exports need only the standard library.  Samples are
streamed from SQLite and folded into at most MAX_COLUMNS time columns as
they go, so a day of 1 s samples is read in one pass with bounded memory.
"""
