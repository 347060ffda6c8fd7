"""Answers to the questions users ask of the allocator ("can I get N huge
pages?"), from the kernel's own rules (mfd.compaction) and what /proc shows.
Pure: the callers read the files."""
