/* SPDX-License-Identifier: GPL-2.0 */
/*
 * extfrag_blocks - which pageblocks kmem:mm_page_alloc_extfrag touched, for
 * `mfd map --events SECONDS`.
 *
 * The event's pfn is the page of the fallback free block (6.1: its head;
 * 6.10+: the page allocated from it), so pfn >> pageblock_order is the
 * pageblock it came from: buddy blocks are naturally aligned, and one below
 * pageblock order lies inside exactly one pageblock.  A fallback of
 * pageblock order or more covers 2^(fallback_order - pageblock_order)
 * pageblocks from pfn & ~(2^fallback_order - 1), all converted.
 *
 * Polluted: change_ownership 0 and fallback_order below pageblock order (the
 * pages went to the requester but the block kept its type: 6.1's lost vote,
 * 6.15+'s __rmqueue_steal() and compaction capture).  Converted:
 * change_ownership 1, the block changed type.  Neither: change_ownership 0
 * at pageblock order or more, which 6.15+'s compaction_capture() event is
 * for a THP or hugetlb capture (alloc_order == fallback_order == cc->order):
 * a whole block taken, its type unchanged.  The record has no
 * pageblock_order (only its TP_printk does), so user space passes it as
 * MFD_PAGEBLOCK_ORDER.
 *
 * One hash entry per pageblock, sized for every pageblock of the populated
 * zones, so it cannot fill; only mfd map loads this program, for the
 * seconds it watches.
 */
#include "mfd.h"

#define MFD_MAX_SPAN 8		/* pageblocks one fallback can cover (MAX_PAGE_ORDER 10 - 9: 2) */

struct mfd_block_val {
	u64 polluted;
	u64 converted;
};

BPF_HASH(extfrag_blocks, u64, struct mfd_block_val, MFD_MAX_BLOCKS);
BPF_PERCPU_ARRAY(extfrag_blocks_dropped, u64, 1);

TRACEPOINT_PROBE(kmem, mm_page_alloc_extfrag)
{
	u64 pfn = args->pfn;
	int fallback = args->fallback_order;
	struct mfd_block_val zero = {}, *val;
	u64 block = pfn >> MFD_PAGEBLOCK_ORDER;
	u32 span = 1;
	int polluted = !args->change_ownership && fallback < MFD_PAGEBLOCK_ORDER;

	if (!polluted && !args->change_ownership)
		return MFD_TP_PASS;
	if (fallback > MFD_PAGEBLOCK_ORDER && fallback < 63) {
		span = 1U << (fallback - MFD_PAGEBLOCK_ORDER);
		block = (pfn & ~((1ULL << fallback) - 1)) >> MFD_PAGEBLOCK_ORDER;
	}
#pragma unroll
	for (u32 i = 0; i < MFD_MAX_SPAN; i++) {
		u64 key = block + i;

		if (i >= span)
			break;
		val = extfrag_blocks.lookup_or_try_init(&key, &zero);
		if (!val) {
			int idx = 0;
			u64 *dropped = extfrag_blocks_dropped.lookup(&idx);

			if (dropped)
				(*dropped)++;
			break;
		}
		if (polluted)
			__sync_fetch_and_add(&val->polluted, 1);
		else
			__sync_fetch_and_add(&val->converted, 1);
	}
	return MFD_TP_PASS;
}
