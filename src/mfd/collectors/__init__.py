"""Snapshot sources: ``bpf`` (eBPF zone walker) and ``procfs`` (/proc/buddyinfo + zoneinfo)."""
