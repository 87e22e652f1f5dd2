/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * flashpointd latency probes (ebpf/README.md says what each one measures).
 *
 * Every probe is a tracepoint: tp_btf where the arguments are kernel pointers (typed, read
 * with CO-RE), plain tracepoints for the syscall events. Nothing here is a kprobe, fentry or
 * uprobe. Each event that matters ends in one histogram sample: a log2 bucket of a duration
 * in nanoseconds, in the map fpn_hists under (kind, cpu, id, aux). User space (src/sys.rs
 * mirrors every struct below) reads the map; the kernel side never allocates beyond the
 * bounded maps and never loops.
 *
 * Filters: the daemon's process id (target_tgid) for its threads, the hot CPUs (hot_cpus, a
 * bit per CPU) for what happens on them, and the intake's UDP ports (fpn_ports) for sockets.
 */
#include "kernel.h"

/* The `kind` of a histogram. */
#define KIND_QUEUE 1    /* queued on an intake socket -> read by a daemon thread; id: tid, aux: port; items: bytes */
#define KIND_DROP 2     /* refused by an intake socket (count only); id: errno, aux: port */
#define KIND_OFFCPU 3   /* daemon thread switched out -> back in; id: tid, aux: 1 preempted, 0 blocked */
#define KIND_RUNQ 4     /* daemon thread woken -> running; id: tid */
#define KIND_HARDIRQ 5  /* irq_handler_entry -> exit on a hot CPU; id: irq */
#define KIND_SOFTIRQ 6  /* softirq_entry -> exit on a hot CPU; id: vector */
#define KIND_RECVMMSG 7 /* syscall entry -> exit; id: tid, aux: outcome; items: messages */
#define KIND_SENDMMSG 8 /* items: messages */
#define KIND_SENDMSG 9  /* items: bytes */

#define OUTCOME_OK 0    /* returned > 0 */
#define OUTCOME_AGAIN 1 /* -EAGAIN: nothing to read, or the send buffer full */
#define OUTCOME_ERROR 2 /* any other error, or 0 */
#define EAGAIN 11

#define SLOTS 40 /* slot b counts durations in [2^b, 2^(b+1)) ns; the last takes the rest */
#define CPUS_MAX 1024

#define STAT_HIST_FULL 0 /* samples lost because fpn_hists was full */
#define STAT_QUEUED 1    /* datagrams stamped when queued on an intake socket */
#define STAT_UNMATCHED 2 /* reads with no stamp (queued before the probes, or a lost race) */
#define STATS 3

struct hist_key {
	__u32 kind;
	__u32 cpu;
	__u32 id;
	__u32 aux;
};

struct hist {
	__u64 slots[SLOTS];
	__u64 sum_ns;
	__u64 items;
};

struct off {
	__u64 ns;
	__u32 preempted;
	__u32 pad;
};

/* Who else ran on a hot CPU, by command name. */
struct intruder_key {
	__u32 cpu;
	char comm[16];
};

struct intruder {
	__u64 runs;
	__u64 run_ns;
	__u64 preemptions; /* times it took the CPU from a runnable daemon thread */
};

struct cpu_state {
	__u64 switch_ns; /* last sched_switch on this CPU */
	__u64 hardirq_ns;
	__u64 softirq_ns;
	__u32 irq;
	__u32 vec;
};

/* Set by the loader before the programs load; read-only afterwards. */
const volatile __u32 target_tgid = 0;
const volatile __u64 hot_cpus[CPUS_MAX / 64] = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct hist_key);
	__type(value, struct hist);
} fpn_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} fpn_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} fpn_sys_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct off);
} fpn_off SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} fpn_woken SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct intruder_key);
	__type(value, struct intruder);
} fpn_intruders SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} fpn_cpu SEC(".maps");

/* Never written: the zeroes a new histogram starts from (too big for the 512-byte stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} fpn_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS);
	__type(key, __u32);
	__type(value, __u64);
} fpn_stats SEC(".maps");

static __always_inline void stat_add(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&fpn_stats, &index);
	if (value)
		*value += 1; /* per-CPU: no other writer */
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

static __always_inline void hist_add(__u32 kind, __u32 cpu, __u32 id, __u32 aux, __u64 ns, __u64 items)
{
	struct hist_key key = { .kind = kind, .cpu = cpu, .id = id, .aux = aux };
	struct hist *h = bpf_map_lookup_elem(&fpn_hists, &key);
	if (!h) {
		__u32 zero = 0;
		struct hist *empty = bpf_map_lookup_elem(&fpn_zero, &zero);
		if (!empty)
			return;
		bpf_map_update_elem(&fpn_hists, &key, empty, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&fpn_hists, &key);
		if (!h) {
			stat_add(STAT_HIST_FULL);
			return;
		}
	}
	__u32 slot = log2_u64(ns);
	if (slot >= SLOTS)
		slot = SLOTS - 1;
	/* A key is written only from its own CPU, but an irq probe can nest in another probe:
	 * atomic adds keep every count. */
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	if (items)
		__sync_fetch_and_add(&h->items, items);
}

static __always_inline bool is_hot(__u32 cpu)
{
	if (cpu >= CPUS_MAX)
		return false;
	return (hot_cpus[cpu / 64] >> (cpu % 64)) & 1;
}

static __always_inline bool is_target(__u64 pid_tgid)
{
	return (pid_tgid >> 32) == target_tgid;
}

static __always_inline struct cpu_state *cpu_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&fpn_cpu, &zero);
}

/* ---- 1. Socket queueing delay: sk_data_ready -> sock_recv_length ----
 *
 * A UDP socket's queue is FIFO, so the n-th datagram its reader takes is the n-th it was
 * given. sk_data_ready fires once per datagram queued (in the softirq that delivers it) and
 * stamps slot n of the socket's ring; sock_recv_length fires once per datagram read (in the
 * reading thread, once per message of a recvmmsg) and takes slot n. A slot whose sequence
 * number is not n was not stamped yet (the reader won the race with the softirq's
 * sk_data_ready) or was overwritten (the reader is more than RING datagrams behind): that
 * read is counted unmatched and gives no sample, and the pairing of the next ones holds.
 * (An skb-pointer pairing is not possible here: for a linear skb, udp_recvmsg copies with
 * copy_linear_skb, which has no tracepoint, and frees the skb with none either.) */

#define RING 1024
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
#define IPPROTO_UDP 17

struct slot {
	__u64 seq; /* n + 1 once stamped */
	__u64 ns;
};

struct ring {
	__s64 queued; /* datagrams stamped */
	__s64 read;   /* datagrams read; starts below 0 by those queued before the probes */
	struct slot slots[RING];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct ring);
} fpn_rings SEC(".maps");

/* Never written: the zeroes a new ring starts from. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ring);
} fpn_zero_ring SEC(".maps");

/* The intake port of a UDP socket, or 0 when it is not one. */
static __always_inline __u16 intake_port(const struct sock *sk)
{
	if (sk->sk_protocol != IPPROTO_UDP)
		return 0;
	__u16 port = sk->__sk_common.skc_num;
	return bpf_map_lookup_elem(&fpn_ports, &port) ? port : 0;
}

/* Datagrams waiting in a UDP socket, in both of its queues. */
static __always_inline __s64 queued_now(const struct sock *sk)
{
	__u32 receive = 0, reader = 0;
	bpf_probe_read_kernel(&receive, sizeof(receive), &sk->sk_receive_queue.qlen);
	bpf_probe_read_kernel(&reader, sizeof(reader), &((struct udp_sock *)sk)->reader_queue.qlen);
	return (__s64)receive + reader;
}

/* The socket's ring; made on first sight, with `waiting` datagrams that were queued
 * before it and so have no stamp (their reads are skipped). */
static __always_inline struct ring *ring_of(__u64 key, const struct sock *sk, __s64 already_counted)
{
	struct ring *r = bpf_map_lookup_elem(&fpn_rings, &key);
	if (r)
		return r;
	__u32 zero = 0;
	struct ring *empty = bpf_map_lookup_elem(&fpn_zero_ring, &zero);
	if (!empty || bpf_map_update_elem(&fpn_rings, &key, empty, BPF_NOEXIST))
		return bpf_map_lookup_elem(&fpn_rings, &key); /* full, or made by another CPU */
	r = bpf_map_lookup_elem(&fpn_rings, &key);
	if (r)
		r->read = already_counted - queued_now(sk);
	return r;
}

SEC("tp_btf/sk_data_ready")
int fpn_data_ready(__u64 *ctx)
{
	const struct sock *sk = (void *)ctx[0];
	__u16 port = intake_port(sk);
	if (!port)
		return 0;
	/* Made here, the ring counts the datagram just queued as not waiting before it. */
	struct ring *r = ring_of(ctx[0], sk, 1);
	if (!r)
		return 0;
	__s64 n = __sync_fetch_and_add(&r->queued, 1);
	struct slot *slot = &r->slots[n & (RING - 1)];
	slot->ns = bpf_ktime_get_ns();
	slot->seq = n + 1;
	stat_add(STAT_QUEUED);
	return 0;
}

/* sock_recv_length(struct sock *sk, int ret, int flags): once per datagram read. */
SEC("tp_btf/sock_recv_length")
int fpn_recv_len(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid))
		return 0;
	const struct sock *sk = (void *)ctx[0];
	int ret = ctx[1];
	int flags = ctx[2];
	if (ret < 0 || (flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return 0;
	__u16 port = intake_port(sk);
	if (!port)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct ring *r = ring_of(ctx[0], sk, 0);
	if (!r)
		return 0;
	__s64 n = r->read; /* one reader per socket: the intake thread */
	r->read = n + 1;
	struct slot *slot = &r->slots[n & (RING - 1)];
	if (n < 0 || slot->seq != (__u64)n + 1) {
		stat_add(STAT_UNMATCHED);
		return 0;
	}
	hist_add(KIND_QUEUE, bpf_get_smp_processor_id(), (__u32)pid_tgid, port, now - slot->ns, ret);
	return 0;
}

/* udp_fail_queue_rcv_skb(int rc, struct sock *sk, struct sk_buff *skb): a datagram for an
 * intake socket dropped before it was queued (rc -ENOMEM: the receive buffer is full). */
SEC("tp_btf/udp_fail_queue_rcv_skb")
int fpn_udp_drop(__u64 *ctx)
{
	int rc = ctx[0];
	const struct sock *sk = (void *)ctx[1];
	__u16 port = intake_port(sk);
	if (port)
		hist_add(KIND_DROP, bpf_get_smp_processor_id(), -rc, port, 0, 0);
	return 0;
}

/* ---- 2. and 4. Off-CPU time, preemption, run-queue latency: sched_switch, sched_wakeup ---- */

static __always_inline void switched_in(__u32 tid, __u32 cpu, __u64 now)
{
	struct off *o = bpf_map_lookup_elem(&fpn_off, &tid);
	if (o) {
		__u64 ns = now - o->ns;
		__u32 preempted = o->preempted;
		bpf_map_delete_elem(&fpn_off, &tid);
		hist_add(KIND_OFFCPU, cpu, tid, preempted, ns, 0);
	}
	__u64 *woken = bpf_map_lookup_elem(&fpn_woken, &tid);
	if (woken) {
		__u64 ns = now - *woken;
		bpf_map_delete_elem(&fpn_woken, &tid);
		hist_add(KIND_RUNQ, cpu, tid, 0, ns, 0);
	}
}

static __always_inline struct intruder *intruder_of(__u32 cpu, struct task_struct *task)
{
	struct intruder_key key = { .cpu = cpu };
	bpf_probe_read_kernel(&key.comm, sizeof(key.comm), task->comm);
	struct intruder *i = bpf_map_lookup_elem(&fpn_intruders, &key);
	if (i)
		return i;
	struct intruder empty = {};
	bpf_map_update_elem(&fpn_intruders, &key, &empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(&fpn_intruders, &key);
}

/* On a hot CPU: every other task's time on it, and who took it from a runnable daemon
 * thread. The idle task (pid 0) is not counted. */
static __always_inline void account_cpu(__u32 cpu, __u64 now, struct task_struct *prev,
					struct task_struct *next, bool prev_ours, bool next_ours,
					bool preempted)
{
	struct cpu_state *s = cpu_state();
	if (!s)
		return;
	if (!prev_ours && prev->pid != 0 && s->switch_ns) {
		struct intruder *i = intruder_of(cpu, prev);
		if (i) {
			__sync_fetch_and_add(&i->runs, 1);
			__sync_fetch_and_add(&i->run_ns, now - s->switch_ns);
		}
	}
	if (prev_ours && preempted && !next_ours && next->pid != 0) {
		struct intruder *i = intruder_of(cpu, next);
		if (i)
			__sync_fetch_and_add(&i->preemptions, 1);
	}
	s->switch_ns = now;
}

/* sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
 *              unsigned int prev_state) */
SEC("tp_btf/sched_switch")
int fpn_switch(__u64 *ctx)
{
	bool preempt = ctx[0];
	struct task_struct *prev = (void *)ctx[1];
	struct task_struct *next = (void *)ctx[2];
	__u32 prev_state = ctx[3];
	__u64 now = bpf_ktime_get_ns();
	__u32 cpu = bpf_get_smp_processor_id();
	bool prev_ours = prev->tgid == target_tgid;
	bool next_ours = next->tgid == target_tgid;
	/* Still runnable when switched out (TASK_RUNNING is 0): it lost the CPU, it did not
	 * wait for anything. */
	bool preempted = preempt || prev_state == 0;

	if (prev_ours) {
		__u32 tid = prev->pid;
		struct off o = { .ns = now, .preempted = preempted };
		bpf_map_update_elem(&fpn_off, &tid, &o, BPF_ANY);
	}
	if (next_ours)
		switched_in(next->pid, cpu, now);
	if (is_hot(cpu))
		account_cpu(cpu, now, prev, next, prev_ours, next_ours, preempted);
	return 0;
}

static __always_inline int woken(struct task_struct *p)
{
	if (p->tgid != target_tgid)
		return 0;
	__u32 tid = p->pid;
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&fpn_woken, &tid, &now, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int fpn_wakeup(__u64 *ctx)
{
	return woken((void *)ctx[0]);
}

SEC("tp_btf/sched_wakeup_new")
int fpn_wakeup_new(__u64 *ctx)
{
	return woken((void *)ctx[0]);
}

/* ---- 3. Hardirq and softirq time on the hot CPUs ---- */

SEC("tp_btf/irq_handler_entry")
int fpn_irq_entry(__u64 *ctx)
{
	if (!is_hot(bpf_get_smp_processor_id()))
		return 0;
	struct cpu_state *s = cpu_state();
	if (s) {
		s->hardirq_ns = bpf_ktime_get_ns();
		s->irq = ctx[0];
	}
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int fpn_irq_exit(__u64 *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct cpu_state *s = cpu_state();
	if (!s || !s->hardirq_ns || !is_hot(cpu))
		return 0;
	hist_add(KIND_HARDIRQ, cpu, s->irq, 0, bpf_ktime_get_ns() - s->hardirq_ns, 0);
	s->hardirq_ns = 0;
	return 0;
}

SEC("tp_btf/softirq_entry")
int fpn_softirq_in(__u64 *ctx)
{
	if (!is_hot(bpf_get_smp_processor_id()))
		return 0;
	struct cpu_state *s = cpu_state();
	if (s) {
		s->softirq_ns = bpf_ktime_get_ns();
		s->vec = ctx[0];
	}
	return 0;
}

SEC("tp_btf/softirq_exit")
int fpn_softirq_out(__u64 *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct cpu_state *s = cpu_state();
	if (!s || !s->softirq_ns || !is_hot(cpu))
		return 0;
	hist_add(KIND_SOFTIRQ, cpu, s->vec, 0, bpf_ktime_get_ns() - s->softirq_ns, 0);
	s->softirq_ns = 0;
	return 0;
}

/* ---- 5. recvmmsg / sendmmsg / sendmsg latency per daemon thread ---- */

static __always_inline int syscall_enter(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid))
		return 0;
	__u32 tid = pid_tgid;
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&fpn_sys_start, &tid, &now, BPF_ANY);
	return 0;
}

static __always_inline int syscall_exit(__u32 kind, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_target(pid_tgid))
		return 0;
	__u32 tid = pid_tgid;
	__u64 *start = bpf_map_lookup_elem(&fpn_sys_start, &tid);
	if (!start)
		return 0; /* entered before the probes were attached */
	__u64 ns = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&fpn_sys_start, &tid);
	__u32 outcome = ret > 0 ? OUTCOME_OK : ret == -EAGAIN ? OUTCOME_AGAIN : OUTCOME_ERROR;
	hist_add(kind, bpf_get_smp_processor_id(), tid, outcome, ns, ret > 0 ? ret : 0);
	return 0;
}

/* One entry and one exit program per syscall; the names stay under the kernel's 15
 * characters and share the fpn_ prefix the detach check looks for. */
#define SYSCALL_PROBES(syscall, short_name, kind)                                   \
	SEC("tracepoint/syscalls/sys_enter_" #syscall)                              \
	int fpn_##short_name##_in(void *ctx)                                        \
	{                                                                           \
		return syscall_enter();                                             \
	}                                                                           \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)                               \
	int fpn_##short_name##_out(struct syscall_trace_exit *ctx)                  \
	{                                                                           \
		return syscall_exit(kind, ctx->ret);                                \
	}

SYSCALL_PROBES(recvmmsg, rmmsg, KIND_RECVMMSG)
SYSCALL_PROBES(sendmmsg, smmsg, KIND_SENDMMSG)
SYSCALL_PROBES(sendmsg, smsg, KIND_SENDMSG)

/* GPL-compatible: tracing programs and bpf_probe_read_kernel require it. */
char LICENSE[] SEC("license") = "GPL";
