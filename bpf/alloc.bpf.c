/* SPDX-License-Identifier: GPL-2.0 */
/*
 * alloc - the buddy allocator's entry point: allocations and failures per
 * order (and failures per process); with kprobes, latency histograms too.
 *
 * This is the one event program on the allocator's hot path: it runs on
 * every page allocation, so mfd loads it only when the user asks for the
 * "alloc" group.  Two variants, chosen in Python before compiling:
 *
 *   MFD_ALLOC_KPROBE=1  kprobe + kretprobe on MFD_ALLOC_FUNC (the allocator's
 *       entry, __alloc_pages_noprof or its predecessor, found in
 *       /proc/kallsyms): latency per order in log2 ns buckets, failures from
 *       a NULL return.
 *   MFD_ALLOC_KPROBE=0  the kmem:mm_page_alloc tracepoint, for kernels built
 *       without CONFIG_KPROBES: counts and failures only (pfn == -1UL means
 *       the allocation failed), no latency.
 *
 * Counters live in one per-CPU record, so the hot path takes no lock and no
 * atomic, and user space fetches every CPU's record with one lookup.
 */
#include "mfd.h"

BPF_PERCPU_ARRAY(alloc_stats, struct mfd_alloc_stats, 1);
BPF_HASH(alloc_failures, struct mfd_alloc_fail_key, u64, 4096);

static __always_inline struct mfd_alloc_stats *mfd_alloc_stats(void)
{
	int zero = 0;

	return alloc_stats.lookup(&zero);
}

/* Failures are rare: a shared hash keyed by process and order is cheap. */
static __always_inline void mfd_alloc_failed(struct mfd_alloc_stats *s, u32 order)
{
	struct mfd_alloc_fail_key key = {};
	u64 zero = 0, *n;

	key.pid = bpf_get_current_pid_tgid() >> 32;
	key.order = order;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	n = alloc_failures.lookup_or_try_init(&key, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		s->dropped++;
}

#if MFD_ALLOC_KPROBE

/*
 * The kprobe programs return 0, unlike the tracepoint one (MFD_TP_PASS in
 * mfd.h), and that blinds nobody.  BCC makes a kprobe of its own for each
 * attach (through the kprobe PMU, create_local_trace_kprobe() in
 * kernel/trace/trace_kprobe.c; on kernels without it, a kprobes/p_*_bcc_<pid>
 * event in tracefs) that no other tracer opens: `perf probe` and bpftrace
 * make kprobes of their own.  kprobe_perf_func() and kretprobe_perf_func()
 * use the value only to decide whether to also build a perf record for this
 * kprobe's own perf_events, that is for mfd's attach, which has no ring
 * buffer: 1 would cost a record on every allocation for nothing.  Nor does
 * the value reach the kprobes core: kprobe_perf_func() returns non-zero
 * (which would skip the other handlers on the address) only when the program
 * moved the instruction pointer, which these never do.
 */

/* struct pt_regs for PT_REGS_PARM2/PT_REGS_RC: UAPI, the same layout in
 * every kernel of an architecture, so a foreign header tree is safe here. */
#include <uapi/linux/ptrace.h>

struct mfd_alloc_start {
	u64 ts;
	u32 order;	/* u32 as in the C prototype: a wider field loses the
			 * verifier's bound check to a truncating copy */
	u32 pad;
};

/* Per task: an allocation sleeps (reclaim, compaction) and may move CPUs.
 * An allocation from an interrupt on the same task overwrites the entry,
 * as in bcc's funclatency; the outer call is then not counted. */
BPF_TABLE("lru_hash", u32, struct mfd_alloc_start, alloc_start, 16384);

int mfd_alloc_entry(struct pt_regs *ctx)
{
	u32 tid = bpf_get_current_pid_tgid();
	struct mfd_alloc_start st = {};

	/* (gfp_t gfp, unsigned int order, int preferred_nid, nodemask_t *) */
	st.order = PT_REGS_PARM2(ctx);
	st.ts = bpf_ktime_get_ns();
	alloc_start.update(&tid, &st);
	return 0;
}

int mfd_alloc_return(struct pt_regs *ctx)
{
	u32 tid = bpf_get_current_pid_tgid();
	struct mfd_alloc_start *st = alloc_start.lookup(&tid);
	struct mfd_alloc_stats *s;
	u64 delta, slot;
	u32 order;

	if (!st)
		return 0;
	delta = bpf_ktime_get_ns() - st->ts;
	order = st->order;
	alloc_start.delete(&tid);
	s = mfd_alloc_stats();
	if (!s || order >= MFD_NR_ORDERS)
		return 0;
	if (PT_REGS_RC(ctx) == 0) {
		s->failures[order]++;
		mfd_alloc_failed(s, order);
	} else {
		s->allocs[order]++;
	}
	slot = bpf_log2l(delta);
	if (slot >= MFD_HIST_SLOTS)
		slot = MFD_HIST_SLOTS - 1;
	s->hist[order * MFD_HIST_SLOTS + slot]++;
	s->latency_ns[order] += delta;
	return 0;
}

#else /* tracepoint */

/*
 * MFD_TP_PASS (see mfd.h) also hands every event to the perf_event BCC opened
 * for this attach (on CPU 0, without a ring buffer), which costs a little on
 * this hot path, on CPU 0 only: the price of not blinding perf.
 */
TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
	struct mfd_alloc_stats *s = mfd_alloc_stats();
	u32 order = args->order;

	if (!s || order >= MFD_NR_ORDERS)
		return MFD_TP_PASS;
	if (args->pfn == (unsigned long)-1) {
		s->failures[order]++;
		mfd_alloc_failed(s, order);
	} else {
		s->allocs[order]++;
	}
	return MFD_TP_PASS;
}

#endif
