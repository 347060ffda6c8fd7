/* SPDX-License-Identifier: GPL-2.0 */
/*
 * extfrag - count kmem:mm_page_alloc_extfrag events per process.
 *
 * The event fires when the buddy allocator finds no free block of the wanted
 * migratetype and falls back to (steals from) another type's free block; with
 * change_ownership set, the whole pageblock changed hands, which is what
 * leaves lasting fragmentation (mm/page_alloc.c, the fallback path of __rmqueue()).
 *
 * One hash entry per (process, orders, migratetypes): the key is exactly what
 * `mfd -s` shows, so user space never sees one record per event.  A plain
 * (not per-CPU) hash: the event is rare, an atomic add costs nothing next to
 * the steal itself, and a per-CPU hash would multiply the map's memory by the
 * number of CPUs.  User space reads and deletes the entries once per interval.
 */
#include "mfd.h"

BPF_HASH(extfrag_counts, struct mfd_extfrag_key, struct mfd_extfrag_val, 10240);
BPF_PERCPU_ARRAY(extfrag_dropped, u64, 1);

TRACEPOINT_PROBE(kmem, mm_page_alloc_extfrag)
{
	struct mfd_extfrag_key key = {};
	struct mfd_extfrag_val zero = {}, *val;

	key.pid = bpf_get_current_pid_tgid() >> 32;
	key.alloc_order = args->alloc_order;
	key.fallback_order = args->fallback_order;
	key.alloc_migratetype = args->alloc_migratetype;
	key.fallback_migratetype = args->fallback_migratetype;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	/* the cgroup v2 id (Linux 4.18+); 1, the root, on cgroup v1-only hosts */
	key.cgroup = bpf_get_current_cgroup_id();

	val = extfrag_counts.lookup_or_try_init(&key, &zero);
	if (!val) {
		int idx = 0;
		u64 *dropped = extfrag_dropped.lookup(&idx);

		if (dropped)
			(*dropped)++;
		return MFD_TP_PASS;
	}
	__sync_fetch_and_add(&val->events, 1);
	if (args->change_ownership)
		__sync_fetch_and_add(&val->change_ownership, 1);
	return MFD_TP_PASS;
}
