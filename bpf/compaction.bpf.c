/* SPDX-License-Identifier: GPL-2.0 */
/*
 * compaction - compaction runs per zone, direct compaction per process,
 * kcompactd wake-ups.
 *
 *   mm_compaction_begin/_end bracket one compact_zone() run in the task that
 *       runs it (kcompactd, an allocating task, a writer of
 *       /proc/sys/vm/compact_memory).  Runs, summed and longest duration per
 *       zone (zone_start_pfn) and end status (enum compact_result).
 *   mm_compaction_try_to_compact_pages fires when an allocating task enters
 *       direct compaction: counted per process and order.  The kernel has no
 *       tracepoint where try_to_compact_pages() returns, so the stall is
 *       measured as the compaction runs (begin->end) that task makes inside
 *       it; zones skipped or deferred in between take microseconds and are
 *       not counted.  One histogram entry per run, in log2 microseconds;
 *       the same runs are summed per zone too (direct_zones), the stalls
 *       each zone cost allocating tasks.
 *   mm_compaction_kcompactd_wake per node, order and highest zone.  The field
 *       is highest_zoneidx since 5.8 (commit 97a225e69a1f, "mm/page_alloc:
 *       integrate classzone_idx and high_zoneidx"), classzone_idx before:
 *       MFD_KCOMPACTD_ZONEIDX names the one this kernel's format file has.
 *
 * Every event here is rare (compaction is the slow path), so shared hashes
 * with atomic adds are used; per-task state lives in LRU hashes so tasks that
 * die mid-compaction cannot fill them.
 */
#include "mfd.h"

/* BCC declares mm_compaction_kcompactd_wake's highest_zoneidx field with its
 * kernel type, enum zone_type, which lives in <linux/mmzone.h>.  Pulling that
 * header in (from a tree that may belong to another kernel) only for a 4-byte
 * enum costs compile time; a complete declaration is enough.  The value is
 * read as a number and named in Python from the running kernel's zones. */
enum zone_type { MFD_ZONE_TYPE_IS_AN_INT };

/* Direct compaction stays "current" for a task this long after its last
 * compaction event: longer than the gap between two zones' runs inside one
 * try_to_compact_pages(), far shorter than anything else the task does. */
#define MFD_DIRECT_GAP_NS	(100ULL * 1000 * 1000)

struct mfd_direct_task {
	u64 last_ns;			/* try_to_compact_pages or the last run end */
	struct mfd_direct_key key;
};

BPF_TABLE("lru_hash", u32, u64, compact_start, 4096);		/* tid -> begin ns */
BPF_TABLE("lru_hash", u32, struct mfd_direct_task, direct_task, 4096);
BPF_HASH(compact_begins, u64, u64, 1024);			/* zone_start -> begins */
BPF_HASH(compact_runs, struct mfd_compact_key, struct mfd_compact_val, 1024);
BPF_HASH(direct_compact, struct mfd_direct_key, struct mfd_direct_val, 4096);
BPF_HASH(direct_zones, u64, struct mfd_direct_zone_val, 1024);	/* zone_start -> */
BPF_HASH(kcompactd_wakes, struct mfd_kcompactd_key, u64, 1024);
BPF_PERCPU_ARRAY(compact_counts, struct mfd_compact_counts, 1);

static __always_inline void mfd_compact_dropped(void)
{
	int zero = 0;
	struct mfd_compact_counts *c = compact_counts.lookup(&zero);

	if (c)
		c->dropped++;
}

static __always_inline void mfd_count_u64(u64 *n)
{
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		mfd_compact_dropped();
}

TRACEPOINT_PROBE(compaction, mm_compaction_try_to_compact_pages)
{
	u32 tid = bpf_get_current_pid_tgid();
	struct mfd_direct_task task = {};
	struct mfd_direct_val zero = {}, *val;

	task.key.pid = bpf_get_current_pid_tgid() >> 32;
	task.key.order = args->order;
	bpf_get_current_comm(&task.key.comm, sizeof(task.key.comm));
	task.key.cgroup = bpf_get_current_cgroup_id();
	task.last_ns = bpf_ktime_get_ns();
	direct_task.update(&tid, &task);

	val = direct_compact.lookup_or_try_init(&task.key, &zero);
	if (val)
		__sync_fetch_and_add(&val->count, 1);
	else
		mfd_compact_dropped();
	return MFD_TP_PASS;
}

TRACEPOINT_PROBE(compaction, mm_compaction_begin)
{
	u32 tid = bpf_get_current_pid_tgid();
	u64 now = bpf_ktime_get_ns(), zone = args->zone_start, zero = 0;

	compact_start.update(&tid, &now);
	mfd_count_u64(compact_begins.lookup_or_try_init(&zone, &zero));
	return MFD_TP_PASS;
}

/* The run just ended in a task inside direct compaction: charge the stall,
 * to the task's row and to the zone it compacted. */
static __always_inline void mfd_direct_stall(u32 tid, u64 now, u64 delta, u64 zone)
{
	struct mfd_direct_task *task = direct_task.lookup(&tid);
	struct mfd_direct_val zero = {}, *val;
	struct mfd_direct_zone_val zzero = {}, *zval;
	u64 begin = now - delta, slot;

	if (!task)
		return;
	if (begin > task->last_ns && begin - task->last_ns > MFD_DIRECT_GAP_NS) {
		direct_task.delete(&tid);	/* an earlier episode, long over */
		return;
	}
	task->last_ns = now;
	zval = direct_zones.lookup_or_try_init(&zone, &zzero);
	if (zval) {
		__sync_fetch_and_add(&zval->runs, 1);
		__sync_fetch_and_add(&zval->stall_ns, delta);
	} else {
		mfd_compact_dropped();
	}
	/* User space may have read and cleared the row since the episode began. */
	val = direct_compact.lookup_or_try_init(&task->key, &zero);
	if (!val) {
		mfd_compact_dropped();
		return;
	}
	__sync_fetch_and_add(&val->stall_ns, delta);
	slot = bpf_log2l(delta / 1000);
	if (slot >= MFD_HIST_SLOTS)
		slot = MFD_HIST_SLOTS - 1;
	__sync_fetch_and_add(&val->hist[slot], 1);
}

TRACEPOINT_PROBE(compaction, mm_compaction_end)
{
	u32 tid = bpf_get_current_pid_tgid();
	struct mfd_compact_key key = {};
	struct mfd_compact_val zero = {}, *val;
	u64 now = bpf_ktime_get_ns(), delta, *start;

	start = compact_start.lookup(&tid);
	if (!start) {
		int idx = 0;
		struct mfd_compact_counts *c = compact_counts.lookup(&idx);

		if (c)
			c->unmatched_end++;
		return MFD_TP_PASS;
	}
	delta = now - *start;
	compact_start.delete(&tid);

	key.zone_start = args->zone_start;
	key.status = args->status;
	val = compact_runs.lookup_or_try_init(&key, &zero);
	if (!val) {
		mfd_compact_dropped();
		return MFD_TP_PASS;
	}
	__sync_fetch_and_add(&val->runs, 1);
	__sync_fetch_and_add(&val->total_ns, delta);
	if (delta > val->max_ns)
		val->max_ns = delta;	/* racy by design: a lost maximum is harmless */
	mfd_direct_stall(tid, now, delta, key.zone_start);
	return MFD_TP_PASS;
}

TRACEPOINT_PROBE(compaction, mm_compaction_kcompactd_wake)
{
	struct mfd_kcompactd_key key = {};
	u64 zero = 0;

	key.nid = args->nid;
	key.order = args->order;
	key.highest_zoneidx = args->MFD_KCOMPACTD_ZONEIDX;
	mfd_count_u64(kcompactd_wakes.lookup_or_try_init(&key, &zero));
	return MFD_TP_PASS;
}
