/*
 * pmfuzz guest agent: runs pmfuzz's op language on the guest's DAX file system (ext4, XFS).
 *
 * It reads one command a line from /dev/ttyS1 and answers one line:
 * "ok VALUE", "err ERRNO-NAME" or "sig SIGBUS|SIGSEGV". Bulk data goes
 * through the mailbox of /dev/pmtrace (the host writes payloads at MBOX_IN
 * and reads results at MBOX_OUT of the same shared physical range). Stores,
 * flushes and fences through its DAX mappings are reported to /dev/pmtrace
 * page by page right after they are done, so they sit in the kernel trace in
 * program order (a write fault on a page runs before the page's stores).
 *
 * The workload's file system is /dev/pmem0 on /mnt (recorded). Crash images
 * are recovered on /dev/pmem1, which the recorder does not see: `recover`
 * mounts it on /rec (the kernel's own log recovery), lists every file with
 * its size and extents (and, asked to, its bytes), and unmounts it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <termios.h>
#include <unistd.h>

#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif

#define MBOX_IN (32UL << 20)
#define MBOX_OUT (48UL << 20)
#define MBOX_BYTES (32UL << 20)
#define PAGE 4096UL
#define LINE 64UL
#define NFILES 8
#define NMAPS 8

enum { EV_USER_STORE = 5, EV_USER_CLWB = 6, EV_USER_SFENCE = 7, EV_MARK = 8 };
enum { CTL_RESET = 100, CTL_ENABLE = 101, CTL_DISABLE = 102 };

struct user_rec {
	uint32_t kind;
	uint32_t len;
	uint64_t addr;
};

static int tty, tr;
static FILE *out;
static int fds[NFILES] = { -1, -1, -1, -1, -1, -1, -1, -1 };
static struct {
	char *addr;
	size_t len;
	off_t off;
	int fd;
} maps[NMAPS];
static char buf[MBOX_BYTES];
static const char zero_page[PAGE];
static char rec[sizeof(struct user_rec) + PAGE];
static sigjmp_buf jb;
static volatile int guarded, caught;
static int mounted;
static const char *root = "/mnt";

static void on_signal(int s)
{
	if (!guarded)
		_exit(128 + s);
	caught = s;
	siglongjmp(jb, 1);
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	fflush(out);
}

static const char *errname(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case EIO: return "EIO";
	case EBUSY: return "EBUSY";
	case EDEADLK: return "EDEADLK";
	case EFAULT: return "EFAULT";
	case EFBIG: return "EFBIG";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EBADF: return "EBADF";
	case ENOMEM: return "ENOMEM";
	case EROFS: return "EROFS";
	case EUCLEAN: return "EUCLEAN";
	case EXDEV: return "EXDEV";
	case EPERM: return "EPERM";
	case ETXTBSY: return "ETXTBSY";
	case EBADMSG: return "EBADMSG";
	case E2BIG: return "E2BIG";
	case ENOTTY: return "ENOTTY";
	default: return "EOTHER";
	}
}

static void fail(void)
{
	reply("err %s %d", errname(errno), errno);
}

static int idx(const char *name, char want)
{
	if (!name || name[0] != want || name[1] < '0' || name[1] > '7' || name[2])
		return -1;
	return name[1] - '0';
}

static void path(char *p, const char *name)
{
	snprintf(p, 64, "%s/%s", root, name);
}

/* The open fd of file `name`, opening it if it exists. */
static int file_fd(const char *name)
{
	int i = idx(name, 'f');
	char p[64];

	if (i < 0) {
		errno = EINVAL;
		return -1;
	}
	if (fds[i] < 0) {
		path(p, name);
		fds[i] = open(p, O_RDWR);
	}
	return fds[i];
}

static void trace_rec(uint32_t kind, uint64_t addr, uint32_t len, const void *data)
{
	struct user_rec *r = (struct user_rec *)rec;

	r->kind = kind;
	r->len = len;
	r->addr = addr;
	if (data)
		memcpy(r + 1, data, len);
	if (write(tr, rec, sizeof(*r) + (data ? len : 0)) < 0) {
		fprintf(stderr, "agent: trace write failed: %s\n", strerror(errno));
	}
}

/* Byte offset on /dev/pmem0 of file offset `foff`, or -1 for a hole. */
static long long phys_of(int fd, off_t foff)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent fe[2];
	} q;

	memset(&q, 0, sizeof(q));
	q.fm.fm_start = foff;
	q.fm.fm_length = 1;
	q.fm.fm_extent_count = 2;
	if (ioctl(fd, FS_IOC_FIEMAP, &q) < 0 || q.fm.fm_mapped_extents == 0)
		return -1;
	for (unsigned i = 0; i < q.fm.fm_mapped_extents; i++) {
		struct fiemap_extent *e = &q.fm.fm_extents[i];
		if (e->fe_logical <= (uint64_t)foff && (uint64_t)foff < e->fe_logical + e->fe_length)
			return e->fe_physical + (foff - e->fe_logical);
	}
	return -1;
}

static int map_of(const char *name)
{
	int m = idx(name, 'm');

	if (m < 0 || !maps[m].addr)
		return -1;
	return m;
}

/* Walk [off, off+len) of mapping m page by page; returns 0, or the signal that stopped it. */
enum access { A_STORE, A_PERSIST, A_READ_FAULT, A_WRITE_FAULT };

static int walk(int m, size_t off, size_t len, enum access how, const char *data)
{
	size_t pos = off;

	while (pos < off + len) {
		size_t k = PAGE - pos % PAGE;
		volatile char *p;

		if (k > off + len - pos)
			k = off + len - pos;
		if (pos >= (maps[m].len + PAGE - 1) / PAGE * PAGE)
			return SIGSEGV; /* outside the mapped pages (a mapping covers whole pages) */
		p = (volatile char *)maps[m].addr + pos;
		caught = 0;
		guarded = 1;
		if (sigsetjmp(jb, 1)) {
			guarded = 0;
			return caught;
		}
		switch (how) {
		case A_STORE:
			memcpy((char *)p, data + (pos - off), k);
			break;
		case A_PERSIST:
			(void)*p;
			break;
		case A_READ_FAULT:
			(void)*p;
			break;
		case A_WRITE_FAULT:
			__asm__ volatile("lock orb $0, (%0)" ::"r"(p) : "memory");
			break;
		}
		guarded = 0;
		if (how == A_STORE || how == A_PERSIST) {
			long long ph = phys_of(maps[m].fd, maps[m].off + pos);
			if (how == A_STORE) {
				trace_rec(EV_USER_STORE, ph < 0 ? ~0ULL : (uint64_t)ph, k, data + (pos - off));
			} else if (ph >= 0) {
				for (uintptr_t a = (uintptr_t)p & ~(LINE - 1); a < (uintptr_t)p + k; a += LINE)
					__asm__ volatile("clwb (%0)" ::"r"(a) : "memory");
				trace_rec(EV_USER_CLWB, ph, k, NULL);
			}
		}
		pos += k;
	}
	return 0;
}

static void put_u32(char **w, uint32_t v) { memcpy(*w, &v, 4); *w += 4; }
static void put_u64(char **w, uint64_t v) { memcpy(*w, &v, 8); *w += 8; }

/* Everything the host's view needs, into the mailbox: each file (name, size, content),
 * then each page of each mapping (what loads see, or the signal they get). */
static void view(void)
{
	char *w = buf, name[4];
	struct stat st;

	for (int i = 0; i < NFILES; i++) {
		char p[64];
		snprintf(name, sizeof(name), "f%d", i);
		path(p, name);
		if (stat(p, &st) < 0)
			continue;
		if (w + 32 + st.st_size > buf + sizeof(buf)) {
			reply("err E2BIG 7 view-too-large");
			return;
		}
		put_u32(&w, 1);
		put_u32(&w, i);
		put_u64(&w, st.st_size);
		int fd = file_fd(name);
		ssize_t n = st.st_size ? pread(fd, w + 8, st.st_size, 0) : 0;
		put_u64(&w, n < 0 ? 0 : n);
		w += n < 0 ? 0 : n;
	}
	for (int m = 0; m < NMAPS; m++) {
		if (!maps[m].addr)
			continue;
		for (size_t pg = 0; pg * PAGE < maps[m].len; pg++) {
			if (w + 24 + PAGE > buf + sizeof(buf)) {
				reply("err E2BIG 7 view-too-large");
				return;
			}
			put_u32(&w, 2);
			put_u32(&w, m);
			put_u64(&w, pg);
			caught = 0;
			guarded = 1;
			if (sigsetjmp(jb, 1)) {
				guarded = 0;
				put_u64(&w, 0x100 + caught);
				continue;
			}
			memcpy(w + 8, maps[m].addr + pg * PAGE, PAGE);
			guarded = 0;
			if (!memcmp(w + 8, zero_page, PAGE)) {
				put_u64(&w, 0x200); /* a page of zeros: no bytes follow */
				continue;
			}
			put_u64(&w, PAGE);
			w += PAGE;
		}
	}
	if (pwrite(tr, buf, w - buf, MBOX_OUT) < 0) {
		fail();
		return;
	}
	reply("ok %ld", (long)(w - buf));
}

/* The extents of fd (FIEMAP, as many calls as it takes) as records: kind 3, file, logical, length,
 * then physical and flags. Returns -1 (errno set) if FIEMAP fails or the mailbox is full. */
static int put_extents(char **w, int fd, int i)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent fe[64];
	} q;
	uint64_t start = 0;

	for (;;) {
		memset(&q, 0, sizeof(q));
		q.fm.fm_start = start;
		q.fm.fm_length = ~0ULL;
		q.fm.fm_extent_count = 64;
		if (ioctl(fd, FS_IOC_FIEMAP, &q) < 0)
			return -1;
		if (!q.fm.fm_mapped_extents)
			return 0;
		for (unsigned k = 0; k < q.fm.fm_mapped_extents; k++) {
			struct fiemap_extent *e = &q.fm.fm_extents[k];
			if (*w + 40 > buf + sizeof(buf)) {
				errno = E2BIG;
				return -1;
			}
			put_u32(w, 3);
			put_u32(w, i);
			put_u64(w, e->fe_logical);
			put_u64(w, e->fe_length);
			put_u64(w, e->fe_physical);
			put_u64(w, e->fe_flags);
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				return 0;
			start = e->fe_logical + e->fe_length;
		}
	}
}

/* The kernel log since the last clear, as a record of kind 4 (its last 8 KiB). */
static void put_klog(char **w)
{
	static char log[1 << 16];
	int n = klogctl(3, log, sizeof(log)); /* SYSLOG_ACTION_READ_ALL */
	int from = n > 8192 ? n - 8192 : 0;

	if (n < 0)
		n = from = 0;
	put_u32(w, 4);
	put_u32(w, 0);
	put_u64(w, 0);
	put_u64(w, n - from);
	memcpy(*w, log + from, n - from);
	*w += n - from;
}

/* recover FSTYPE OPTS [contents]: mount the crash image the host put on /dev/pmem1 on /rec (the
 * kernel's log recovery runs here), list every name in its root and, for f0..f7, the size (kind 1,
 * with the bytes if asked), the extents (kind 3) or the errno that stat/open/FIEMAP/read gave
 * (kind 5); other names as kind 6; the kernel log (kind 4); then unmount. Answers `ok BYTES`, or
 * `err ERRNO-NAME ERRNO BYTES` if the mount (or the unmount) failed, the log in the mailbox. */
static void recover(const char *fstype, const char *opts, int contents)
{
	char *w = buf, p[300];
	struct dirent *de;
	DIR *d;
	int b, e = 0;
	const char *what = "ok";

	klogctl(5, NULL, 0); /* SYSLOG_ACTION_CLEAR: what follows is this mount's */
	b = open("/dev/pmem1", O_RDWR);
	if (b >= 0) {
		ioctl(b, BLKFLSBUF, 0);
		close(b);
	}
	if (mount("/dev/pmem1", "/rec", fstype, MS_NOATIME, opts) < 0) {
		e = errno;
		put_klog(&w);
		if (pwrite(tr, buf, w - buf, MBOX_OUT) < 0)
			w = buf;
		reply("err %s %d %ld mount", errname(e), e, (long)(w - buf));
		return;
	}
	d = opendir("/rec");
	while (d && (de = readdir(d))) {
		int i = idx(de->d_name, 'f');
		size_t nl = strlen(de->d_name);
		struct stat st;
		int fd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (i < 0) {
			put_u32(&w, 6);
			put_u32(&w, 0);
			put_u64(&w, 0);
			put_u64(&w, nl);
			memcpy(w, de->d_name, nl);
			w += nl;
			continue;
		}
		snprintf(p, sizeof(p), "/rec/%s", de->d_name);
		fd = open(p, O_RDONLY);
		if (fd < 0 || fstat(fd, &st) < 0) {
			put_u32(&w, 5);
			put_u32(&w, i);
			put_u64(&w, errno);
			put_u64(&w, 0);
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (w + 64 + (contents ? st.st_size : 0) > buf + sizeof(buf)) {
			close(fd);
			e = E2BIG;
			what = "view-too-large";
			break;
		}
		put_u32(&w, 1);
		put_u32(&w, i);
		put_u64(&w, st.st_size);
		if (contents) {
			ssize_t n = st.st_size ? pread(fd, w + 8, st.st_size, 0) : 0;
			if (n < 0) {
				put_u64(&w, 0);
				put_u32(&w, 5);
				put_u32(&w, i);
				put_u64(&w, errno);
				put_u64(&w, 0);
				close(fd);
				continue;
			}
			put_u64(&w, n);
			w += n;
		} else {
			put_u64(&w, 0);
		}
		if (put_extents(&w, fd, i) < 0) {
			if (errno == E2BIG) {
				close(fd);
				e = E2BIG;
				what = "view-too-large";
				break;
			}
			put_u32(&w, 5);
			put_u32(&w, i);
			put_u64(&w, errno);
			put_u64(&w, 0);
		}
		close(fd);
	}
	if (d)
		closedir(d);
	if (umount("/rec") < 0 && !e) {
		e = errno;
		what = "umount";
	}
	if (w + 8192 + 24 <= buf + sizeof(buf))
		put_klog(&w);
	if (pwrite(tr, buf, w - buf, MBOX_OUT) < 0) {
		fail();
		return;
	}
	if (e)
		reply("err %s %d %ld %s", errname(e), e, (long)(w - buf), what);
	else
		reply("ok %ld", (long)(w - buf));
}

static void ctl(uint32_t kind)
{
	trace_rec(kind, 0, 0, NULL);
}

static void reset(void)
{
	for (int m = 0; m < NMAPS; m++) {
		if (maps[m].addr) {
			munmap(maps[m].addr, maps[m].len);
			close(maps[m].fd);
			maps[m].addr = NULL;
		}
	}
	for (int i = 0; i < NFILES; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
	if (mounted && umount("/mnt") < 0) {
		fail();
		return;
	}
	mounted = 0;
	int b = open("/dev/pmem0", O_RDWR);
	if (b >= 0) {
		ioctl(b, BLKFLSBUF, 0);
		close(b);
	}
	int d = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (d >= 0) {
		if (write(d, "3\n", 2) < 0) {
		}
		close(d);
	}
	ctl(CTL_DISABLE);
	ctl(CTL_RESET);
	reply("ok 0");
}

static long num(const char *s) { return s ? strtol(s, NULL, 0) : 0; }

static int payload(size_t len)
{
	if (len > sizeof(buf))
		return -1;
	return pread(tr, buf, len, MBOX_IN) == (ssize_t)len ? 0 : -1;
}

static void run(char *line)
{
	char *argv[8] = { 0 };
	int argc = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " \r\n", &save); t && argc < 8; t = strtok_r(NULL, " \r\n", &save))
		argv[argc++] = t;
	if (!argc)
		return;
	const char *c = argv[0];
	char p[64];
	int fd, m, s;

	if (!strcmp(c, "hello")) {
		struct utsname u;
		uname(&u);
		reply("ok %s#%s", u.release, u.version);
	} else if (!strcmp(c, "syms")) {
		/* text symbols of /proc/kallsyms, for the host to name trace sites */
		FILE *k = fopen("/proc/kallsyms", "r");
		char l[512];
		size_t n = 0;
		while (k && fgets(l, sizeof(l), k)) {
			char *sp = strchr(l, ' ');
			if (!sp || (sp[1] != 't' && sp[1] != 'T'))
				continue;
			size_t ll = strlen(l);
			if (n + ll > sizeof(buf))
				break;
			memcpy(buf + n, l, ll);
			n += ll;
		}
		if (k)
			fclose(k);
		if (pwrite(tr, buf, n, MBOX_OUT) < 0)
			fail();
		else
			reply("ok %zu", n);
	} else if (!strcmp(c, "reset")) {
		reset();
	} else if (!strcmp(c, "mount")) {
		ctl(CTL_RESET);
		ctl(CTL_ENABLE);
		if (!argv[1] || mount("/dev/pmem0", "/mnt", argv[1], MS_NOATIME, argv[2] ? argv[2] : "dax") < 0)
			fail();
		else {
			mounted = 1;
			reply("ok 0");
		}
	} else if (!strcmp(c, "mark")) {
		trace_rec(EV_MARK, num(argv[1]), 0, NULL);
		reply("ok 0");
	} else if (!strcmp(c, "view")) {
		view();
	} else if (!strcmp(c, "recover")) {
		if (argc < 3) {
			errno = EINVAL;
			return fail();
		}
		recover(argv[1], argv[2], argv[3] && !strcmp(argv[3], "contents"));
	} else if (!strcmp(c, "create")) {
		int i = idx(argv[1], 'f');
		path(p, argv[1]);
		fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			return fail();
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = fd;
		reply("ok 0");
	} else if (!strcmp(c, "unlink")) {
		int i = idx(argv[1], 'f');
		path(p, argv[1]);
		if (unlink(p) < 0)
			return fail();
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
		reply("ok 0");
	} else if (!strcmp(c, "write")) {
		size_t len = num(argv[3]);
		if ((fd = file_fd(argv[1])) < 0)
			return fail();
		ssize_t n;
		if (argv[4]) { /* write F OFF LEN from M MOFF */
			m = map_of(argv[4]);
			if (m < 0) {
				errno = EFAULT;
				return fail();
			}
			n = pwrite(fd, maps[m].addr + num(argv[5]), len, num(argv[2]));
		} else {
			if (payload(len) < 0)
				return fail();
			n = pwrite(fd, buf, len, num(argv[2]));
		}
		if (n < 0)
			return fail();
		reply("ok %zd", n);
	} else if (!strcmp(c, "read")) {
		size_t len = num(argv[3]);
		if ((fd = file_fd(argv[1])) < 0)
			return fail();
		if (len > sizeof(buf)) {
			errno = EINVAL;
			return fail();
		}
		ssize_t n = pread(fd, buf, len, num(argv[2]));
		if (n < 0)
			return fail();
		if (pwrite(tr, buf, n, MBOX_OUT) < 0)
			return fail();
		reply("ok %zd", n);
	} else if (!strcmp(c, "reflink")) {
		int sfd, dfd;
		if ((sfd = file_fd(argv[1])) < 0 || (dfd = file_fd(argv[2])) < 0)
			return fail();
		if (argc >= 6) { /* FICLONERANGE */
			struct file_clone_range r = {
				.src_fd = sfd,
				.src_offset = num(argv[3]),
				.src_length = num(argv[5]),
				.dest_offset = num(argv[4]),
			};
			if (ioctl(dfd, FICLONERANGE, &r) < 0)
				return fail();
		} else if (ioctl(dfd, FICLONE, sfd) < 0) {
			return fail();
		}
		reply("ok 0");
	} else if (!strcmp(c, "truncate")) {
		if ((fd = file_fd(argv[1])) < 0 || ftruncate(fd, num(argv[2])) < 0)
			return fail();
		reply("ok 0");
	} else if (!strcmp(c, "fallocate") || !strcmp(c, "punch")) {
		/* fallocate F OFF LEN [MODE]: MODE is the FALLOC_FL_* bits the op language names */
		int mode = c[0] == 'p' ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : (int)num(argv[4]);
		if ((fd = file_fd(argv[1])) < 0 || fallocate(fd, mode, num(argv[2]), num(argv[3])) < 0)
			return fail();
		reply("ok 0");
	} else if (!strcmp(c, "fsync")) {
		if ((fd = file_fd(argv[1])) < 0 || fsync(fd) < 0)
			return fail();
		reply("ok 0");
	} else if (!strcmp(c, "sync")) {
		sync();
		reply("ok 0");
	} else if (!strcmp(c, "mmap")) {
		m = idx(argv[1], 'm');
		size_t len = num(argv[4]);
		int sync = argv[5] && !strcmp(argv[5], "sync");
		if (m < 0 || maps[m].addr) {
			errno = EINVAL;
			return fail();
		}
		if ((fd = file_fd(argv[2])) < 0)
			return fail();
		int flags = sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED;
		void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, num(argv[3]));
		if (a == MAP_FAILED)
			return fail();
		maps[m].addr = a;
		maps[m].len = len;
		maps[m].off = num(argv[3]);
		maps[m].fd = dup(fd);
		reply("ok 0");
	} else if (!strcmp(c, "munmap")) {
		if ((m = map_of(argv[1])) < 0) {
			errno = EINVAL;
			return fail();
		}
		munmap(maps[m].addr, maps[m].len);
		close(maps[m].fd);
		maps[m].addr = NULL;
		reply("ok 0");
	} else if (!strcmp(c, "madvise")) {
		if ((m = map_of(argv[1])) < 0) {
			errno = EINVAL;
			return fail();
		}
		if (madvise(maps[m].addr, maps[m].len, MADV_DONTNEED) < 0)
			return fail();
		reply("ok 0");
	} else if (!strcmp(c, "fault")) {
		if ((m = map_of(argv[1])) < 0) {
			errno = EINVAL;
			return fail();
		}
		s = walk(m, num(argv[2]) * PAGE, 1, argv[3][0] == 'w' ? A_WRITE_FAULT : A_READ_FAULT, NULL);
		if (s)
			reply("sig %s", s == SIGBUS ? "SIGBUS" : "SIGSEGV");
		else
			reply("ok 0");
	} else if (!strcmp(c, "store") || !strcmp(c, "persist")) {
		size_t len = num(argv[3]);
		int st = c[0] == 's';
		if ((m = map_of(argv[1])) < 0) {
			errno = EINVAL;
			return fail();
		}
		if (st && payload(len) < 0)
			return fail();
		s = walk(m, num(argv[2]), len, st ? A_STORE : A_PERSIST, buf);
		if (!st && !s) {
			__asm__ volatile("sfence" ::: "memory");
			trace_rec(EV_USER_SFENCE, 0, 0, NULL);
		}
		if (s)
			reply("sig %s", s == SIGBUS ? "SIGBUS" : "SIGSEGV");
		else
			reply("ok 0");
	} else {
		reply("err EINVAL %d unknown-command", EINVAL);
	}
}

int main(void)
{
	struct sigaction sa;
	struct termios t;
	char line[512];
	size_t n = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	tty = open("/dev/ttyS1", O_RDWR | O_NOCTTY);
	tr = open("/dev/pmtrace", O_RDWR);
	if (tty < 0 || tr < 0) {
		perror("agent: open");
		return 1;
	}
	tcgetattr(tty, &t);
	cfmakeraw(&t);
	cfsetspeed(&t, B115200);
	tcsetattr(tty, TCSANOW, &t);
	out = fdopen(dup(tty), "w");
	mlockall(MCL_CURRENT);
	reply("ready");
	for (;;) {
		char ch;
		ssize_t r = read(tty, &ch, 1);
		if (r <= 0)
			continue;
		if (ch == '\n') {
			line[n] = 0;
			run(line);
			n = 0;
		} else if (n < sizeof(line) - 1) {
			line[n++] = ch;
		}
	}
}
