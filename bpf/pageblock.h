/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pageblock.h - what one kmem:mm_page_alloc_extfrag event did to which
 * pageblocks, for extfrag.bpf.c's hash of pageblocks (u64 pageblock number
 * -> struct mfd_block_val): the monitor's --events extfrag per interval, and
 * mfd map --events over its watch.
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
 */
#ifndef MFD_PAGEBLOCK_H
#define MFD_PAGEBLOCK_H

#define MFD_MAX_SPAN 8		/* pageblocks one fallback can cover (MAX_PAGE_ORDER 10 - 9: 2) */

struct mfd_block_val {
	u64 polluted;
	u64 converted;
};

enum { MFD_PB_NONE, MFD_PB_POLLUTED, MFD_PB_CONVERTED };

/* What one event did, and to which pageblocks: MFD_PB_* and the first of
 * *span pageblocks.  Pure: the map work stays in each .c file, because BCC
 * rewrites map calls in the main file only, not in headers. */
static __always_inline int mfd_pageblock_effect(u64 pfn, int fallback, int change_ownership,
						u64 *first, u32 *span)
{
	*first = pfn >> MFD_PAGEBLOCK_ORDER;
	*span = 1;
	if (!change_ownership && fallback < MFD_PAGEBLOCK_ORDER)
		return MFD_PB_POLLUTED;
	if (!change_ownership)
		return MFD_PB_NONE;
	if (fallback > MFD_PAGEBLOCK_ORDER && fallback < 63) {
		*span = 1U << (fallback - MFD_PAGEBLOCK_ORDER);
		*first = (pfn & ~((1ULL << fallback) - 1)) >> MFD_PAGEBLOCK_ORDER;
	}
	return MFD_PB_CONVERTED;
}

#endif /* MFD_PAGEBLOCK_H */
