/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * The little of the kernel that probes.bpf.c needs, written by hand instead of a
 * multi-megabyte vmlinux.h: fixed-width types, the BTF map-definition macros, the helpers
 * by their number (include/uapi/linux/bpf.h), and the few fields read from kernel structs.
 *
 * The structs carry preserve_access_index, so clang records every field access as a CO-RE
 * relocation and the loader (aya) rewrites each offset from the running kernel's BTF
 * (/sys/kernel/btf/vmlinux). The layouts below only need the right names and types; the
 * order and the missing fields do not matter.
 */
#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef _Bool bool;
#define true 1
#define false 0

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))

/* Map definitions in the BTF form (section ".maps") that libbpf and aya both read. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_ANY 0
#define BPF_NOEXIST 1

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

struct sk_buff_head {
	__u32 qlen;
} __attribute__((preserve_access_index));

struct sock_common {
	__u16 skc_num; /* the local port, host order */
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	struct sk_buff_head sk_receive_queue;
} __attribute__((preserve_access_index));

/* UDP reads from reader_queue and refills it from sk_receive_queue (net/ipv4/udp.c). */
struct udp_sock {
	struct sk_buff_head reader_queue;
} __attribute__((preserve_access_index));

/* The records of the syscalls:sys_{enter,exit}_* trace events (kernel/trace/trace.h). */
struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
} __attribute__((preserve_access_index));

struct syscall_trace_exit {
	struct trace_entry ent;
	int nr;
	long ret;
} __attribute__((preserve_access_index));
