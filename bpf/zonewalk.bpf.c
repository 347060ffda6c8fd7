/* SPDX-License-Identifier: GPL-2.0 */
/*
 * zonewalk - copy every node's zones and free-area counts into one map value.
 *
 * Runs only when mfd itself calls getppid(): the program is attached to the
 * syscalls:sys_enter_getppid tracepoint and returns at once for every other
 * process.  Nothing here runs on the page allocator's path.
 *
 * Finding the pglist_data of each node (MFD_PGDAT_PATH):
 *   1 kallsyms: node_data[nid] (NUMA) at MFD_NODE_DATA, or &contig_page_data
 *     (UMA) at MFD_CONTIG_PAGE_DATA, both from /proc/kallsyms.  Needs
 *     CONFIG_KALLSYMS_ALL for the data symbols.
 *   2 memcg: current->cgroups->subsys[memory_cgrp_id] is the task's
 *     struct mem_cgroup (its css sits at MFD_OFF_memcg_css), whose
 *     nodeinfo[nid]->lruvec.pgdat points at the node.  Needs CONFIG_MEMCG
 *     only, so it works on kernels without KALLSYMS_ALL.
 *
 * All offsets are MFD_OFF_<struct>_<member> macros from BTF.
 */
#include "mfd.h"

BPF_ARRAY(snapshot, struct mfd_snapshot, 1);

static __always_inline u64 mfd_read_u64(u64 addr, u64 *err)
{
	u64 v = 0;

	if (bpf_probe_read_kernel(&v, sizeof(v), (const void *)addr))
		*err |= MFD_ERR_READ;
	return v;
}

/* pglist_data.node_id and .nr_zones are C ints. */
static __always_inline u64 mfd_read_s32(u64 addr, u64 *err)
{
	s32 v = 0;

	if (bpf_probe_read_kernel(&v, sizeof(v), (const void *)addr))
		*err |= MFD_ERR_READ;
	return (u64)(s64)v;
}

#if MFD_PGDAT_PATH == 2
static __always_inline u64 mfd_memcg(u64 *err)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 cgroups, css;

	cgroups = mfd_read_u64((u64)task + MFD_OFF_task_struct_cgroups, err);
	css = mfd_read_u64(cgroups + MFD_OFF_css_set_subsys +
			   8 * MFD_MEMORY_CGRP_ID, err);
	if (!css) {
		*err |= MFD_ERR_NO_MEMCG;
		return 0;
	}
	return css - MFD_OFF_mem_cgroup_css;
}
#endif

static __always_inline u64 mfd_pgdat(u64 memcg, int nid, u64 *err)
{
#if MFD_PGDAT_PATH == 1
#ifdef MFD_NODE_DATA
	return mfd_read_u64(MFD_NODE_DATA + 8 * nid, err);
#else
	return MFD_CONTIG_PAGE_DATA;
#endif
#else
	u64 pn = mfd_read_u64(memcg + MFD_OFF_mem_cgroup_nodeinfo + 8 * nid, err);

	if (!pn)
		return 0;
	return mfd_read_u64(pn + MFD_OFF_mem_cgroup_per_node_lruvec +
			    MFD_OFF_lruvec_pgdat, err);
#endif
}

static __always_inline void mfd_walk_zone(struct mfd_zone *out, u64 zone, u64 *err)
{
	u64 name = 0;

	out->start_pfn = mfd_read_u64(zone + MFD_OFF_zone_zone_start_pfn, err);
	out->spanned = mfd_read_u64(zone + MFD_OFF_zone_spanned_pages, err);
	out->present = mfd_read_u64(zone + MFD_OFF_zone_present_pages, err);
	out->managed = mfd_read_u64(zone + MFD_OFF_zone_managed_pages, err);
#pragma unroll
	for (int order = 0; order < MFD_NR_ORDERS; order++)
		out->nr_free[order] = mfd_read_u64(zone + MFD_OFF_zone_free_area +
				order * MFD_SIZEOF_free_area +
				MFD_OFF_free_area_nr_free, err);
	name = mfd_read_u64(zone + MFD_OFF_zone_name, err);
	if (name)
		bpf_probe_read_kernel_str(out->name, sizeof(out->name),
					  (const void *)name);
}

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
	struct mfd_snapshot *snap;
	u64 memcg = 0, err = 0, nr = 0;
	int zero = 0;

	/* Every process's getppid() comes here: pass them all on to perf
	 * (MFD_TP_PASS, see mfd.h), mfd's own trigger calls included. */
	if ((bpf_get_current_pid_tgid() >> 32) != MFD_TGID)
		return MFD_TP_PASS;
	snap = snapshot.lookup(&zero);
	if (!snap)
		return MFD_TP_PASS;
#if MFD_PGDAT_PATH == 2
	memcg = mfd_memcg(&err);
	if (!memcg)
		goto out;
#endif
	/*
	 * The node ids to walk are written into nodes[i].node_id by user space
	 * right after loading.  Not a const array here: clang places one that is
	 * indexed in a loop in .rodata, which BCC does not relocate (the load
	 * reads address 0 and the verifier refuses the program on every machine
	 * with more than one node), and unrolling instead makes the program too
	 * big for the verifier at a few dozen nodes.
	 */
	for (int i = 0; i < MFD_NR_NODES; i++) {
		struct mfd_node *node = &snap->nodes[i];
		u64 pgdat = mfd_pgdat(memcg, (int)node->node_id, &err);

		node->pgdat = pgdat;
		if (!pgdat) {
			err |= MFD_ERR_NO_PGDAT;
			continue;
		}
		nr++;
		node->start_pfn = mfd_read_u64(pgdat + MFD_OFF_pglist_data_node_start_pfn, &err);
		node->present = mfd_read_u64(pgdat + MFD_OFF_pglist_data_node_present_pages, &err);
		node->spanned = mfd_read_u64(pgdat + MFD_OFF_pglist_data_node_spanned_pages, &err);
		node->node_id = mfd_read_s32(pgdat + MFD_OFF_pglist_data_node_id, &err);
		node->nr_zones = mfd_read_s32(pgdat + MFD_OFF_pglist_data_nr_zones, &err);
		for (int z = 0; z < MFD_NR_ZONES; z++)
			mfd_walk_zone(&node->zones[z], pgdat + MFD_OFF_pglist_data_node_zones +
				      z * MFD_SIZEOF_zone, &err);
	}
out:
	snap->nr_nodes = nr;
	snap->err = err;
	snap->seq++;
	return MFD_TP_PASS;
}
