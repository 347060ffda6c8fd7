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
 *
 * And one entry per pageblock the interval's events polluted or converted
 * (the rules: pageblock.h), so that user space counts distinct pageblocks per
 * zone.  Not preallocated: it is emptied every interval and holds a few
 * entries, where MFD_EXTFRAG_PAGEBLOCKS preallocated would cost megabytes of
 * kernel memory.
 */
#include "mfd.h"
#include "pageblock.h"

BPF_HASH(extfrag_counts, struct mfd_extfrag_key, struct mfd_extfrag_val, 10240);
BPF_PERCPU_ARRAY(extfrag_dropped, u64, 1);
BPF_F_TABLE("hash", u64, struct mfd_block_val, extfrag_pageblocks, MFD_EXTFRAG_PAGEBLOCKS,
	    BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(extfrag_pageblocks_dropped, u64, 1);

TRACEPOINT_PROBE(kmem, mm_page_alloc_extfrag)
{
	struct mfd_extfrag_key key = {};
	struct mfd_extfrag_val zero = {}, *val;
	struct mfd_block_val bzero = {}, *bval;
	u64 first;
	u32 span;
	int effect = mfd_pageblock_effect(args->pfn, args->fallback_order,
					  args->change_ownership, &first, &span);

#pragma unroll
	for (u32 i = 0; i < MFD_MAX_SPAN; i++) {
		u64 block = first + i;

		if (effect == MFD_PB_NONE || i >= span)
			break;
		bval = extfrag_pageblocks.lookup_or_try_init(&block, &bzero);
		if (!bval) {
			int idx = 0;
			u64 *dropped = extfrag_pageblocks_dropped.lookup(&idx);

			if (dropped)
				(*dropped)++;
			break;
		}
		if (effect == MFD_PB_POLLUTED)
			__sync_fetch_and_add(&bval->polluted, 1);
		else
			__sync_fetch_and_add(&bval->converted, 1);
	}

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
