/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mfd.h - records shared by mfd's eBPF programs and its Python side.
 *
 * Sizes that depend on the running kernel (number of orders, MAX_NR_ZONES,
 * the nodes to walk) and every struct offset arrive as -D macros computed
 * from the kernel's BTF by src/mfd/sources/zonewalk.py.  Nothing here is taken
 * from kernel headers: BCC may be compiling against another kernel's header
 * tree, whose struct layouts would be wrong for the running kernel.
 *
 * Every field is a fixed-width 64-bit value (or a byte array) so that the
 * Python side can decode a whole snapshot with one struct.unpack.
 */
#ifndef MFD_H
#define MFD_H

#define MFD_ZONE_NAME_LEN 16

/*
 * What every tracepoint program returns: 1, never 0.
 *
 * A tracepoint runs its BPF programs first and hands the event to its perf
 * consumers only if they returned non-zero: perf_trace_run_bpf_submit()
 * (kernel/events/core.c, called by every TRACE_EVENT's perf probe) and, for
 * syscalls:sys_enter_*, perf_syscall_enter() (kernel/trace/trace_syscalls.c)
 * drop the event when trace_call_bpf() returns 0.  The programs of a
 * tracepoint are shared by every perf_event open on it, so a 0 here would
 * blind every `perf stat`/`perf record` of that tracepoint on the machine
 * while mfd runs.  (trace_call_bpf() combines the results of all programs on
 * the tracepoint with a bitwise AND: exactly 1, not just non-zero.)  mfd
 * counts in maps and reads nothing through perf, so the value changes nothing
 * for mfd itself.  ftrace (tracefs) has its own probe and never sees it.
 * Kprobes differ: see bpf/alloc.bpf.c.  tests/test_tracers.py checks all this
 * with the real perf.
 */
#define MFD_TP_PASS 1

/* One struct zone. */
struct mfd_zone {
	u64 start_pfn;		/* zone->zone_start_pfn */
	u64 spanned;		/* zone->spanned_pages */
	u64 present;		/* zone->present_pages */
	u64 managed;		/* zone->managed_pages (atomic_long_t since 4.20) */
	u64 nr_free[MFD_NR_ORDERS];	/* zone->free_area[order].nr_free */
	char name[MFD_ZONE_NAME_LEN];	/* *zone->name */
};

/* One struct pglist_data. */
struct mfd_node {
	u64 pgdat;		/* kernel address: never leaves a root terminal */
	u64 start_pfn;		/* pgdat->node_start_pfn */
	u64 present;		/* pgdat->node_present_pages */
	u64 spanned;		/* pgdat->node_spanned_pages */
	u64 node_id;		/* in: the nid to walk (set by mfd); out: pgdat->node_id */
	u64 nr_zones;		/* pgdat->nr_zones */
	struct mfd_zone zones[MFD_NR_ZONES];
};

/* Errors the walk reports in mfd_snapshot.err (bit mask). */
#define MFD_ERR_NO_MEMCG	1	/* task->cgroups->subsys[memory] was NULL */
#define MFD_ERR_NO_PGDAT	2	/* a node's pglist_data pointer was NULL */
#define MFD_ERR_READ		4	/* bpf_probe_read_kernel failed */

/* The whole snapshot: one array-map value, fetched with one lookup. */
struct mfd_snapshot {
	u64 seq;		/* bumped by every walk: proves the trigger fired */
	u64 err;		/* MFD_ERR_* bits of the last walk */
	u64 nr_nodes;		/* nodes found; a slot whose pgdat is 0 is unused */
	struct mfd_node nodes[MFD_NR_NODES];
};

/* ====================================================================== */
/* Event groups: bpf/extfrag.bpf.c, bpf/alloc.bpf.c, bpf/compaction.bpf.c  */
/* (src/mfd/sources/events/).  Everything is aggregated in maps inside the  */
/* kernel; user space reads each map once per interval.  Python decodes     */
/* the values with each table's own ctypes Key/Leaf, so field names here    */
/* are the API.                                                             */
/* ====================================================================== */

#define MFD_COMM_LEN	16	/* TASK_COMM_LEN */
/* log2 histogram slots as bcc's bpf_log2l() gives them: slot s holds values
 * in [2^(s-1), 2^s - 1]; 40 slots reach 2^39 ns (~9 min) or us. */
#define MFD_HIST_SLOTS	40

/* kmem:mm_page_alloc_extfrag, keyed by exactly what the -s table shows. */
struct mfd_extfrag_key {
	u32 pid;			/* tgid of the task that allocated */
	s32 alloc_order;
	s32 fallback_order;
	s32 alloc_migratetype;
	s32 fallback_migratetype;
	char comm[MFD_COMM_LEN];
	u64 cgroup;			/* bpf_get_current_cgroup_id(): its v2 cgroup */
};

struct mfd_extfrag_val {
	u64 events;
	u64 change_ownership;	/* the steals that took over the pageblock */
};

/* The allocator: one per-CPU record, read with a single lookup. */
struct mfd_alloc_stats {
	u64 allocs[MFD_NR_ORDERS];	/* successful allocations per order */
	u64 failures[MFD_NR_ORDERS];	/* NULL results (tracepoint: pfn == -1) */
	u64 latency_ns[MFD_NR_ORDERS];	/* kprobe path only: summed latency */
	/* kprobe path: log2 ns, [order * MFD_HIST_SLOTS + slot].  Flat on purpose:
	 * BCC 0.26 turns only the first dimension of a 2-D array into ctypes. */
	u64 hist[MFD_NR_ORDERS * MFD_HIST_SLOTS];
	u64 dropped;			/* failures_by_process was full */
};

struct mfd_alloc_fail_key {
	u32 pid;
	u32 order;
	char comm[MFD_COMM_LEN];
};

/* compaction:mm_compaction_begin/_end, one row per zone and end status. */
struct mfd_compact_key {
	u64 zone_start;			/* zone->zone_start_pfn names the zone */
	s32 status;			/* enum compact_result */
	u32 pad;
};

struct mfd_compact_val {
	u64 runs;
	u64 total_ns;
	u64 max_ns;
};

/* mm_compaction_try_to_compact_pages: direct compaction by process and order. */
struct mfd_direct_key {
	u32 pid;
	s32 order;
	char comm[MFD_COMM_LEN];
	u64 cgroup;			/* bpf_get_current_cgroup_id(): its v2 cgroup */
};

struct mfd_direct_val {
	u64 count;			/* try_to_compact_pages() calls */
	u64 stall_ns;			/* compaction runs inside them */
	u64 hist[MFD_HIST_SLOTS];	/* log2 us, one entry per run */
};

/* The runs made inside direct compaction, per zone (zone_start_pfn): the
 * stalls of allocating tasks, charged to the zone they compacted. */
struct mfd_direct_zone_val {
	u64 runs;
	u64 stall_ns;
};

struct mfd_kcompactd_key {
	s32 nid;
	s32 order;
	u32 highest_zoneidx;		/* enum zone_type */
	u32 pad;
};

/* Zone-less counters of the compaction program (one per-CPU record). */
struct mfd_compact_counts {
	u64 unmatched_end;		/* an end without its begin (begin before load) */
	u64 dropped;			/* a map was full: an event not counted */
};

#endif /* MFD_H */
