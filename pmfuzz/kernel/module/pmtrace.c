// SPDX-License-Identifier: GPL-2.0
/*
 * pmtrace: records the guest kernel's persistent-memory traffic for pmfuzz.
 *
 * Every write primitive the DAX and pmem paths of Linux 6.1 use on x86 is
 * probed, and each call is appended, in program order (the guest has one
 * CPU), to a trace in a physical range reserved with memmap=...$... that the
 * host reads straight from QEMU's shared RAM file:
 *
 *   __memcpy_flushcache     pmem_do_write: block I/O (metadata, journal, zeroout)
 *   __copy_user_flushcache  dax_copy_from_iter: the DAX write(2) path
 *   arch_wb_cache_pmem      dax_flush: clwb of dax_writeback_one and partial zeroing
 *   generic_nvdimm_flush    REQ_PREFLUSH / REQ_FUA bios: the sfence (pmem_wmb)
 *   copy_mc_to_kernel       dax_iomap_cow_copy, dax_unshare_iter: the fsdax copy-on-write's
 *                           copy from the source extent, with cached stores (no clwb)
 *
 * The split of a flushcache copy into cached and non-temporal stores is
 * not recorded here: the host replays it (pmfuzz/kernel/flushcache.py), from
 * the destination address and length, as arch/x86/lib/usercopy_64.c does.
 *
 * /dev/pmtrace lets the workload agent add its own stores, clwbs and fences
 * (through its DAX mappings) to the same trace, read payloads the host put in
 * the mailbox and write results back (pread/pwrite at an offset of the range).
 */
#include <linux/module.h>
#include <linux/kprobes.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/uaccess.h>
#include <linux/stacktrace.h>
#include <linux/spinlock.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <asm/set_memory.h>

static unsigned long trace_phys = 0x24000000UL;
module_param(trace_phys, ulong, 0444);
static unsigned long trace_size = 80UL << 20;
module_param(trace_size, ulong, 0444);
static unsigned long pmem_phys = 0x20000000UL;
module_param(pmem_phys, ulong, 0444);
static unsigned long pmem_size = 64UL << 20;
module_param(pmem_size, ulong, 0444);

#define RING_BYTES (32UL << 20) /* events; the rest is the host<->agent mailbox */
#define MAGIC 0x65636172746d70ULL /* "pmtrace" */
#define MAX_FRAMES 12

enum ev_kind {
	EV_MEMCPY_FLUSHCACHE = 1,
	EV_COPY_USER_FLUSHCACHE = 2,
	EV_WB_CACHE_PMEM = 3,
	EV_NVDIMM_FLUSH = 4,
	EV_USER_STORE = 5,
	EV_USER_CLWB = 6,
	EV_USER_SFENCE = 7,
	EV_MARK = 8,
	EV_BIO_END = 9,
	EV_COPY_MC = 10,
};

enum ctl_kind { CTL_RESET = 100, CTL_ENABLE = 101, CTL_DISABLE = 102 };

struct trace_head {
	u64 magic;
	u64 used; /* bytes of events after the head */
	u64 events;
	u64 overflow; /* events dropped because the ring was full */
	u64 enabled;
	u64 misses; /* events whose data could not be read */
	u64 pad[2];
};

struct trace_ev {
	u8 kind;
	u8 nframes;
	u16 flags;
	u32 len; /* bytes of the range; data follows for stores (and for clwb: the lines' content) */
	u64 addr; /* offset in the pmem range */
	u64 dlen; /* bytes of data that follow the frames, padded to 8 */
};

#define F_DATA_MISSING 1

static void *region;
static struct trace_head *head;
static DEFINE_SPINLOCK(lock);

static long pmem_offset(const void *kaddr)
{
	phys_addr_t pa;

	/* the pmem mapping is an ioremap_cache in vmalloc space, or the direct map: walk it */
	pa = slow_virt_to_phys((void *)kaddr);
	if (pa < pmem_phys || pa >= pmem_phys + pmem_size)
		return -1;
	return pa - pmem_phys;
}

/* Reserve an event with `dlen` bytes of data; returns a pointer to its data (or NULL). */
static struct trace_ev *reserve(u8 kind, u64 addr, u32 len, u64 dlen, bool frames)
{
	unsigned long entries[MAX_FRAMES];
	unsigned int n = 0;
	u64 need, padded = (dlen + 7) & ~7ULL;
	struct trace_ev *ev;

	if (!head->enabled)
		return NULL;
	if (frames)
		n = stack_trace_save(entries, MAX_FRAMES, 0);
	need = sizeof(*ev) + n * 8 + padded;
	if (head->used + need > RING_BYTES - sizeof(*head)) {
		head->overflow++;
		return NULL;
	}
	ev = (struct trace_ev *)((char *)region + sizeof(*head) + head->used);
	ev->kind = kind;
	ev->nframes = n;
	ev->flags = 0;
	ev->len = len;
	ev->addr = addr;
	ev->dlen = dlen;
	if (n)
		memcpy(ev + 1, entries, n * 8);
	head->used += need;
	head->events++;
	return ev;
}

static inline void *ev_data(struct trace_ev *ev)
{
	return (char *)(ev + 1) + ev->nframes * 8;
}

/* __memcpy_flushcache(void *dst, const void *src, size_t size): kernel source, read at entry. */
static int pre_memcpy_flushcache(struct kprobe *p, struct pt_regs *regs)
{
	void *dst = (void *)regs->di;
	const void *src = (const void *)regs->si;
	size_t size = regs->dx;
	long off = pmem_offset(dst);
	unsigned long flags;
	struct trace_ev *ev;

	if (off < 0 || !size)
		return 0;
	spin_lock_irqsave(&lock, flags);
	ev = reserve(EV_MEMCPY_FLUSHCACHE, off, size, size, true);
	if (ev && copy_from_kernel_nofault(ev_data(ev), src, size)) {
		ev->flags |= F_DATA_MISSING;
		head->misses++;
	}
	spin_unlock_irqrestore(&lock, flags);
	return 0;
}

/* arch_wb_cache_pmem(void *addr, size_t size): clwb; the lines' content rides along. */
static int pre_wb_cache_pmem(struct kprobe *p, struct pt_regs *regs)
{
	void *addr = (void *)regs->di;
	size_t size = regs->si;
	long off = pmem_offset(addr);
	unsigned long flags, a0, a1;
	struct trace_ev *ev;

	if (off < 0 || !size)
		return 0;
	a0 = (unsigned long)addr & ~63UL;
	a1 = ((unsigned long)addr + size + 63) & ~63UL;
	spin_lock_irqsave(&lock, flags);
	ev = reserve(EV_WB_CACHE_PMEM, off, size, a1 - a0, true);
	if (ev && copy_from_kernel_nofault(ev_data(ev), (void *)a0, a1 - a0)) {
		ev->flags |= F_DATA_MISSING;
		head->misses++;
	}
	spin_unlock_irqrestore(&lock, flags);
	return 0;
}

/* bio_endio: a bio's completion runs locked instructions (unlock_buffer, complete), which on x86
 * order the bio's movnti stores as a fence would; recorded so the host may treat it as one. */
static int pre_bio_endio(struct kprobe *p, struct pt_regs *regs)
{
	unsigned long flags;

	spin_lock_irqsave(&lock, flags);
	reserve(EV_BIO_END, 0, 0, 0, false);
	spin_unlock_irqrestore(&lock, flags);
	return 0;
}

static int pre_nvdimm_flush(struct kprobe *p, struct pt_regs *regs)
{
	unsigned long flags;

	spin_lock_irqsave(&lock, flags);
	reserve(EV_NVDIMM_FLUSH, 0, 0, 0, true);
	spin_unlock_irqrestore(&lock, flags);
	return 0;
}

/* __copy_user_flushcache(void *dst, const void __user *src, unsigned size): the bytes are
 * read from the destination when it returns (the source may be a mapping that faults). */
struct cuf_data {
	struct trace_ev *ev;
	void *dst;
};

static int entry_copy_user_flushcache(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct cuf_data *d = (struct cuf_data *)ri->data;
	void *dst = (void *)regs->di;
	u32 size = (u32)regs->dx;
	long off = pmem_offset(dst);
	unsigned long flags;

	d->ev = NULL;
	if (off < 0 || !size)
		return 1; /* no return probe */
	spin_lock_irqsave(&lock, flags);
	d->ev = reserve(EV_COPY_USER_FLUSHCACHE, off, size, size, true);
	d->dst = dst;
	spin_unlock_irqrestore(&lock, flags);
	return d->ev ? 0 : 1;
}

static int ret_copy_user_flushcache(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct cuf_data *d = (struct cuf_data *)ri->data;
	long rc = regs_return_value(regs);
	struct trace_ev *ev = d->ev;

	if (!ev)
		return 0;
	if (rc > 0 && rc <= ev->len)
		ev->len -= rc; /* bytes not copied: the copy stopped short */
	if (copy_from_kernel_nofault(ev_data(ev), d->dst, ev->len)) {
		ev->flags |= F_DATA_MISSING;
		head->misses++;
	}
	return 0;
}

/* copy_mc_to_kernel(void *dst, const void *src, unsigned len): machine-check-safe copy with cached
 * stores; into pmem only from the fsdax copy-on-write paths. Returns the bytes not copied. */
static int entry_copy_mc(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct cuf_data *d = (struct cuf_data *)ri->data;
	void *dst = (void *)regs->di;
	u32 size = (u32)regs->dx;
	long off = pmem_offset(dst);
	unsigned long flags;

	d->ev = NULL;
	if (off < 0 || !size)
		return 1;
	spin_lock_irqsave(&lock, flags);
	d->ev = reserve(EV_COPY_MC, off, size, size, true);
	d->dst = dst;
	spin_unlock_irqrestore(&lock, flags);
	return d->ev ? 0 : 1;
}

static struct kprobe kp_memcpy = { .symbol_name = "__memcpy_flushcache", .pre_handler = pre_memcpy_flushcache };
static struct kprobe kp_wb = { .symbol_name = "arch_wb_cache_pmem", .pre_handler = pre_wb_cache_pmem };
static struct kprobe kp_flush = { .symbol_name = "generic_nvdimm_flush", .pre_handler = pre_nvdimm_flush };
static struct kprobe kp_endio = { .symbol_name = "bio_endio", .pre_handler = pre_bio_endio };
static struct kretprobe krp_cuf = {
	.kp.symbol_name = "__copy_user_flushcache",
	.entry_handler = entry_copy_user_flushcache,
	.handler = ret_copy_user_flushcache,
	.data_size = sizeof(struct cuf_data),
	.maxactive = 8,
};
static struct kretprobe krp_mc = {
	.kp.symbol_name = "copy_mc_to_kernel",
	.entry_handler = entry_copy_mc,
	.handler = ret_copy_user_flushcache, /* the same: bytes not copied, then the destination */
	.data_size = sizeof(struct cuf_data),
	.maxactive = 8,
};

/* -- /dev/pmtrace ---------------------------------------------------------------- */

struct user_rec {
	u32 kind;
	u32 len;
	u64 addr; /* pmem offset (the agent translates with FIEMAP) */
	/* data of EV_USER_STORE follows */
};

static ssize_t pmtrace_read(struct file *f, char __user *buf, size_t n, loff_t *pos)
{
	if (*pos < 0 || *pos >= trace_size)
		return 0;
	n = min_t(size_t, n, trace_size - *pos);
	if (copy_to_user(buf, (char *)region + *pos, n))
		return -EFAULT;
	*pos += n;
	return n;
}

static ssize_t pmtrace_write(struct file *f, const char __user *buf, size_t n, loff_t *pos)
{
	struct user_rec r;
	unsigned long flags;
	struct trace_ev *ev;
	void *tmp = NULL;

	if (*pos >= RING_BYTES) { /* the mailbox: results for the host */
		if (*pos >= trace_size)
			return -ENOSPC;
		n = min_t(size_t, n, trace_size - *pos);
		if (copy_from_user((char *)region + *pos, buf, n))
			return -EFAULT;
		*pos += n;
		return n;
	}
	if (n < sizeof(r) || copy_from_user(&r, buf, sizeof(r)))
		return -EINVAL;
	switch (r.kind) {
	case CTL_RESET:
		spin_lock_irqsave(&lock, flags);
		head->used = head->events = head->overflow = head->misses = 0;
		spin_unlock_irqrestore(&lock, flags);
		return n;
	case CTL_ENABLE:
	case CTL_DISABLE:
		head->enabled = r.kind == CTL_ENABLE;
		return n;
	case EV_USER_STORE:
		if (n != sizeof(r) + r.len || r.len > (1 << 20))
			return -EINVAL;
		tmp = kmalloc(r.len, GFP_KERNEL);
		if (!tmp)
			return -ENOMEM;
		if (copy_from_user(tmp, buf + sizeof(r), r.len)) {
			kfree(tmp);
			return -EFAULT;
		}
		break;
	case EV_USER_CLWB:
	case EV_USER_SFENCE:
	case EV_MARK:
		break;
	default:
		return -EINVAL;
	}
	spin_lock_irqsave(&lock, flags);
	ev = reserve(r.kind, r.addr, r.len, tmp ? r.len : 0, false);
	if (ev && tmp)
		memcpy(ev_data(ev), tmp, r.len);
	spin_unlock_irqrestore(&lock, flags);
	kfree(tmp);
	return n;
}

static const struct file_operations pmtrace_fops = {
	.owner = THIS_MODULE,
	.read = pmtrace_read,
	.write = pmtrace_write,
	.llseek = default_llseek,
};

static struct miscdevice pmtrace_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "pmtrace",
	.fops = &pmtrace_fops,
};

static int __init pmtrace_init(void)
{
	int err;

	region = memremap(trace_phys, trace_size, MEMREMAP_WB);
	if (!region)
		return -ENOMEM;
	head = region;
	memset(head, 0, sizeof(*head));
	head->magic = MAGIC;
	err = register_kprobe(&kp_memcpy);
	if (!err)
		err = register_kprobe(&kp_wb);
	if (!err)
		err = register_kprobe(&kp_flush);
	if (!err)
		err = register_kretprobe(&krp_cuf);
	if (!err)
		err = register_kprobe(&kp_endio);
	if (!err)
		err = register_kretprobe(&krp_mc);
	if (err) {
		pr_err("pmtrace: cannot probe: %d\n", err);
		unregister_kprobe(&kp_endio);
		unregister_kretprobe(&krp_cuf);
		unregister_kprobe(&kp_memcpy);
		unregister_kprobe(&kp_wb);
		unregister_kprobe(&kp_flush);
		memunmap(region);
		return err;
	}
	err = misc_register(&pmtrace_dev);
	if (err)
		return err;
	pr_info("pmtrace: recording pmem [%#lx, +%#lx) into [%#lx, +%#lx)\n", pmem_phys, pmem_size, trace_phys,
		trace_size);
	return 0;
}

static void __exit pmtrace_exit(void)
{
	misc_deregister(&pmtrace_dev);
	unregister_kretprobe(&krp_mc);
	unregister_kprobe(&kp_endio);
	unregister_kretprobe(&krp_cuf);
	unregister_kprobe(&kp_flush);
	unregister_kprobe(&kp_wb);
	unregister_kprobe(&kp_memcpy);
	memunmap(region);
}

module_init(pmtrace_init);
module_exit(pmtrace_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("pmfuzz: record persistent-memory traffic");
