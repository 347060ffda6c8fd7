"""mfd: a Linux physical-memory fragmentation monitor.

Snapshots the buddy allocator (every node, zone and order) through an eBPF
zone walker loaded with BCC, or from /proc, and computes the kernel's
extfrag_index and unusable_index exactly as mm/vmstat.c does.
"""

__version__ = "0.1.0"
