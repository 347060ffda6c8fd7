/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mfd.h - records shared by mfd's eBPF programs and its Python side.
 *
 * Sizes that depend on the running kernel (number of orders, MAX_NR_ZONES,
 * the nodes to walk) and every struct offset arrive as -D macros computed
 * from the kernel's BTF by src/mfd/collectors/bpf.py.  Nothing here is taken
 * from kernel headers: BCC may be compiling against another kernel's header
 * tree, whose struct layouts would be wrong for the running kernel.
 *
 * Every field is a fixed-width 64-bit value (or a byte array) so that the
 * Python side can decode a whole snapshot with one struct.unpack.
 */
#ifndef MFD_H
#define MFD_H

#define MFD_ZONE_NAME_LEN 16

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
	u64 node_id;		/* pgdat->node_id */
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

#endif /* MFD_H */
