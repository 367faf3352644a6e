/* SPDX-License-Identifier: MIT */
/*
 * template.c - instant start: VMs restored from a pre-booted guest.
 *
 * A template (DATA/templates/NAME/) is the gridvm guest booted with the
 * template layout (vmdef.h: RAM in a file, a control port, vmgenid, a
 * root port per disk) and no disks, up to where its init waits for a job
 * ('R' on the job port), then saved with QEMU's x-ignore-shared: "mem"
 * holds the guest's RAM (the backend was a shared file mapping), "state"
 * the devices and CPUs without the RAM, "meta.json" what it was built
 * from. A VM starts from it by a QEMU that maps "mem" privately
 * (copy-on-write: untouched pages stay shared with the page cache and
 * every other VM of the template), takes "state" as an incoming
 * migration, gets its disks hot-plugged, and is sent its job spec, the
 * host's clock and a random seed on the control port.
 *
 * A template is never written in place: a build writes new files and
 * renames them, so VMs that map the old "mem" keep the old file. A stale
 * one (kernel, initramfs or QEMU changed) is rebuilt before use; one whose
 * restore fails is deleted and the VM boots cold, saying why.
 *
 * Locks: DATA/templates/NAME.lock, exclusive to build or delete, shared
 * while a QEMU opens the files.
 */
#include "vm_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/node/template.h>
#include <gridvm/vmm/confine.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TMPL_VERSION 1
#define READY_TIMEOUT_MS (180 * 1000) /* a boot under TCG on a loaded host */

struct tmpl {
	char *name, *dir, *mem, *state, *meta, *lock;
	int vcpus;
	uint64_t mib;
	gv_accel acc;
};

static void tmpl_clear(struct tmpl *t)
{
	free(t->name);
	free(t->dir);
	free(t->mem);
	free(t->state);
	free(t->meta);
	free(t->lock);
}

static int tmpl_init(gv_host *h, struct tmpl *t, int vcpus, uint64_t mib,
		     const char *accel, gv_err *e)
{
	const char *arg;

	memset(t, 0, sizeof(*t));
	t->acc = h->accel;
	if (accel && gv_accel_choose(accel, &t->acc) < 0)
		return gv_err_set(e, -EINVAL, "invalid accelerator %s", accel);
	if (vcpus < 1 || vcpus > 64 || mib < 32 || mib > (1ULL << 22))
		return gv_err_set(e, -EINVAL, "invalid template configuration: %d vCPUs, "
				  "%llu MiB", vcpus, (unsigned long long)mib);
	arg = gv_accel_qemu_arg(&t->acc);
	t->vcpus = vcpus;
	t->mib = mib;
	t->name = gv_strdupf("%s-%dc-%llum", strncmp(arg, "kvm", 3) ? "tcg" : "kvm", vcpus,
			     (unsigned long long)mib);
	t->dir = gv_strdupf("%s/templates/%s", h->datadir, t->name);
	t->mem = gv_strdupf("%s/mem", t->dir);
	t->state = gv_strdupf("%s/state", t->dir);
	t->meta = gv_strdupf("%s/meta.json", t->dir);
	t->lock = gv_strdupf("%s/templates/%s.lock", h->datadir, t->name);
	return 0;
}

/* flock @t's lock file (LOCK_SH or LOCK_EX); the fd, or -1. */
static int tmpl_lock(gv_host *h, const struct tmpl *t, int how)
{
	char *dir = gv_strdupf("%s/templates", h->datadir);
	int fd = -1;

	if (gv_mkdir_p(dir, 0755) == 0)
		fd = open(t->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	free(dir);
	if (fd >= 0 && flock(fd, how) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void tmpl_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* What a template depends on besides its configuration: the guest's
 * kernel and initramfs and the QEMU binary, by identity (device, inode,
 * size, mtime): a changed one makes the template stale. */
static char *file_id(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return strdup("missing");
	return gv_strdupf("%llx:%llx:%llx:%llx", (unsigned long long)st.st_dev,
			  (unsigned long long)st.st_ino, (unsigned long long)st.st_size,
			  (unsigned long long)gv_stat_mtime_ns(&st));
}

static char *qemu_path(void)
{
	char *q = gv_qemu_binary();

	return q ? q : strdup("qemu-system-x86_64");
}

static char *guest_id(gv_host *h)
{
	char *k = gv_strdupf("%s/guest/vmlinuz", h->datadir);
	char *i = gv_strdupf("%s/guest/initrd.img", h->datadir);
	char *q = qemu_path();
	char *ki = file_id(k), *ii = file_id(i), *qi = file_id(q);
	char *id = gv_strdupf("v%d kernel=%s initrd=%s qemu=%s", TMPL_VERSION, ki, ii, qi);

	free(k);
	free(i);
	free(q);
	free(ki);
	free(ii);
	free(qi);
	return id;
}

/* Does this host's guest know the template protocol (its init waits for
 * the job on the control port)? prepare-guest.sh says so in "features". */
static bool guest_has_templates(gv_host *h)
{
	char *f = gv_strdupf("%s/guest/features", h->datadir), *buf = NULL;
	bool yes = gv_read_file(f, &buf, NULL) == 0 && strstr(buf, "templates");

	free(f);
	free(buf);
	return yes;
}

/* "ready", "stale" (guest or QEMU changed) or NULL (none, or broken). */
static const char *tmpl_status(gv_host *h, const struct tmpl *t, json_t **meta)
{
	json_error_t je;
	json_t *m = json_load_file(t->meta, 0, &je);
	const char *st = NULL;
	char *id;

	if (!m || gv_file_size(t->mem) != t->mib << 20 || access(t->state, R_OK) < 0) {
		json_decref(m);
		return NULL;
	}
	id = guest_id(h);
	st = strcmp(json_string_value(json_object_get(m, "built_from")) ?: "", id) ? "stale"
										       : "ready";
	free(id);
	if (meta)
		*meta = m;
	else
		json_decref(m);
	return st;
}

/* The files of the QEMU that boots a template, in DIR/run. */
static void build_paths(gv_host *h, const struct tmpl *t, gv_vmpaths *p)
{
	char *run = gv_strdupf("%s/run", t->dir);

	gv_vmpaths_init(p, h->datadir, "template");
	gv_vmpaths_clear(p);
	p->dir = run;
	p->disk = gv_strdupf("%s/none.qcow2", run);
	p->qmp = gv_strdupf("%s/qmp.sock", run);
	p->pidfile = gv_strdupf("%s/qemu.pid", run);
	p->console = gv_strdupf("%s/console.log", run);
	p->jobout = gv_strdupf("%s/job.out", run);
	p->jobspec = gv_strdupf("%s/job.spec", run);
	p->qemulog = gv_strdupf("%s/qemu.log", run);
	p->kernel = gv_strdupf("%s/guest/vmlinuz", h->datadir);
	p->initrd = gv_strdupf("%s/guest/initrd.img", h->datadir);
	p->blkmon = gv_strdupf("%s/blk.sock", run);
	p->input = gv_strdupf("%s/input.tar", run);
	p->output = gv_strdupf("%s/output.tar", run);
	p->ctl = gv_strdupf("%s/ctl.sock", run);
	p->fence = gv_strdupf("%s/fence.sock", run);
	p->tmpl_layout = p->mem_shared = p->no_disks = true;
}

/* Wait for the guest's 'R' frame on the job port; its 'M' frames make
 * the message of a guest that gave up ('X') or a QEMU that ended. */
static int wait_ready(const gv_vmpaths *p, int pid, gv_err *e)
{
	uint64_t end = gv_now_ms() + READY_TIMEOUT_MS;
	char msg[300] = "";

	while (gv_now_ms() < end) {
		char *buf = NULL;
		size_t len = 0, off = 0;

		if (gv_read_file(p->jobout, &buf, &len) < 0)
			len = 0;
		while (off + 5 <= len) {
			const unsigned char *f = (const unsigned char *)buf + off;
			uint32_t n = (uint32_t)f[1] << 24 | f[2] << 16 | f[3] << 8 | f[4];
			if (off + 5 + n > len)
				break;
			if (f[0] == 'R') {
				free(buf);
				return 0;
			}
			if (f[0] == 'M')
				snprintf(msg, sizeof(msg), "%.*s", (int)(n < 200 ? n : 200),
					 (const char *)f + 5);
			if (f[0] == 'X') {
				free(buf);
				return gv_err_set(e, -EIO, "the template's guest gave up: %s",
						  *msg ? msg : "no message");
			}
			off += 5 + n;
		}
		free(buf);
		if (!host_qemu_alive(pid, p))
			return gv_err_set(e, -EIO, "the template's QEMU ended while booting%s%s",
					  *msg ? ": " : "", msg);
		usleep(20000);
	}
	return gv_err_set(e, -ETIMEDOUT, "the template's guest was not ready in %d s",
			  READY_TIMEOUT_MS / 1000);
}

static int fsync_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0 || fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	return r;
}

/* Stop the booted guest and save its devices without its RAM. */
static int save_template(const gv_vmpaths *p, const char *state, gv_err *e)
{
	json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				 "x-ignore-shared", "state", 1);
	int fd = open(state, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	gv_qmp *q = NULL;
	int r = fd < 0 ? gv_err_set(e, -errno, "cannot create %s: %s", state, strerror(errno))
		       : host_qmp(p, &q, e);

	if (r == 0)
		r = host_qmp_run(q, "stop", NULL, e);
	if (r == 0)
		r = vm_migration_plain(q, e);
	if (r == 0)
		r = host_qmp_run(q, "migrate-set-capabilities", caps, e);
	if (r == 0)
		r = host_migrate_fd(q, false, fd, e);
	if (r == 0)
		r = host_wait_migration(q, 10 * 60 * 1000, e);
	if (q)
		(void)host_qmp_run(q, "quit", NULL, NULL);
	gv_qmp_free(q);
	json_decref(caps);
	if (fd >= 0)
		close(fd);
	return r;
}

/* Boot and save @t; the lock is held exclusively. */
static int build_locked(gv_host *h, const struct tmpl *t, gv_err *e)
{
	static const char spec[] = "template=1\n\n";
	gv_vmdef d = { .name = t->name, .vcpus = t->vcpus, .memory_mib = t->mib };
	gv_vmrec rec = { .def = &d };
	char *mem_part = gv_strdupf("%s.partial", t->mem);
	char *state_part = gv_strdupf("%s.partial", t->state);
	char *id = guest_id(h);
	uint64_t t0 = gv_now_ms();
	gv_vmpaths p;
	json_t *meta;
	int r;

	if (!guest_has_templates(h)) {
		r = gv_err_set(e, -ENOTSUP, "this host's guest (%s/guest) has no template "
			       "support: run scripts/setup.sh to prepare it again", h->datadir);
		goto out_free;
	}
	build_paths(h, t, &p);
	p.mem_file = mem_part;
	vm_kill_qemu(&rec, &p); /* the QEMU of a build an agent left (it died) */
	gv_rm_rf(p.dir);
	unlink(t->meta); /* from here on, no template until it is complete */
	unlink(mem_part);
	unlink(state_part);
	d.accel = (char *)(strncmp(gv_accel_qemu_arg(&t->acc), "kvm", 3) ? "tcg" : "kvm");
	r = gv_mkdir_p(p.dir, 0755);
	if (r == 0)
		r = gv_write_file_atomic(p.jobspec, spec, sizeof(spec) - 1);
	if (r < 0) {
		gv_err_set(e, r, "cannot write %s: %s", p.dir, strerror(-r));
		goto out;
	}
	r = vm_spawn_qemu(h, &rec, &p, false, e);
	if (r == 0)
		r = host_qmp_cmd(&p, "cont", NULL, 5000, NULL, e);
	if (r == 0)
		r = wait_ready(&p, rec.pid, e);
	if (r == 0)
		r = save_template(&p, state_part, e);
	vm_kill_qemu(&rec, &p); /* it quit after the save; else it must go */
	if (r == 0 && ((r = fsync_file(mem_part)) < 0 || (r = fsync_file(state_part)) < 0))
		gv_err_set(e, r, "cannot sync the template's files: %s", strerror(-r));
	/* root's from now on: QEMUs get a sealed copy (tmplmem_get) */
	if (r == 0 && (chown(mem_part, 0, 0) < 0 || chmod(mem_part, 0600) < 0))
		r = gv_err_set(e, -errno, "cannot own %s: %s", mem_part, strerror(errno));
	if (r == 0 && (rename(state_part, t->state) < 0 || rename(mem_part, t->mem) < 0))
		r = gv_err_set(e, -errno, "cannot write %s: %s", t->dir, strerror(errno));
	if (r < 0)
		goto out;
	meta = json_pack("{s:s, s:i, s:I, s:s, s:s, s:I, s:I}", "name", t->name, "vcpus",
			 t->vcpus, "memory_mib", (json_int_t)t->mib, "accel", d.accel,
			 "built_from", id, "created", (json_int_t)gv_now_s(), "build_ms",
			 (json_int_t)(gv_now_ms() - t0));
	{
		char *s = json_dumps(meta, JSON_INDENT(1));
		r = gv_write_file_atomic(t->meta, s, strlen(s));
		free(s);
	}
	json_decref(meta);
	if (r < 0)
		gv_err_set(e, r, "cannot write %s: %s", t->meta, strerror(-r));
out:
	if (r == 0)
		gv_rm_rf(p.dir);
	unlink(mem_part);
	unlink(state_part);
	p.mem_file = NULL;
	gv_vmpaths_clear(&p);
out_free:
	free(mem_part);
	free(state_part);
	free(id);
	return r;
}

/* Bytes a file takes on disk (the RAM file is sparse where the guest
 * never wrote). */
static json_int_t disk_bytes(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (json_int_t)st.st_blocks * 512 : 0;
}

static json_t *tmpl_entry(gv_host *h, const struct tmpl *t)
{
	json_t *m = NULL;
	const char *st = tmpl_status(h, t, &m);

	if (!st)
		return NULL;
	json_object_del(m, "built_from");
	json_object_set_new(m, "state", json_string(st));
	json_object_set_new(m, "bytes", json_integer(disk_bytes(t->mem) + disk_bytes(t->state)));
	return m;
}

int gv_template_build(gv_host *h, int vcpus, uint64_t memory_mib, const char *accel,
		      json_t **out, gv_err *e)
{
	struct tmpl t;
	int fd, r = tmpl_init(h, &t, vcpus, memory_mib, accel, e);

	if (r < 0)
		return r;
	fd = tmpl_lock(h, &t, LOCK_EX);
	if (fd < 0)
		r = gv_err_set(e, -errno, "cannot lock %s: %s", t.lock, strerror(errno));
	else
		r = build_locked(h, &t, e);
	if (r == 0 && out)
		*out = tmpl_entry(h, &t);
	tmpl_unlock(fd);
	tmpl_clear(&t);
	return r;
}

/* NAME = ACCEL-Nc-Mm */
static int tmpl_parse(gv_host *h, const char *name, struct tmpl *t, gv_err *e)
{
	char acc[8];
	int vcpus, n = 0;
	unsigned long long mib;

	if (sscanf(name, "%3[a-z]-%dc-%llum%n", acc, &vcpus, &mib, &n) != 3 ||
	    name[n] || (strcmp(acc, "tcg") && strcmp(acc, "kvm")))
		return gv_err_set(e, -ENOENT, "no template %s (see 'gridvm template list')",
				  name);
	return tmpl_init(h, t, vcpus, mib, acc, e);
}

json_t *gv_template_list(gv_host *h)
{
	char *path = gv_strdupf("%s/templates", h->datadir);
	DIR *dir = opendir(path);
	json_t *a = json_array();
	struct dirent *de;

	while (dir && (de = readdir(dir))) {
		struct tmpl t;
		json_t *j;

		if (de->d_name[0] == '.' || strstr(de->d_name, ".lock") ||
		    tmpl_parse(h, de->d_name, &t, NULL) < 0)
			continue;
		if ((j = tmpl_entry(h, &t)))
			json_array_append_new(a, j);
		tmpl_clear(&t);
	}
	if (dir)
		closedir(dir);
	free(path);
	return a;
}

/* ---- a template's RAM for VMs: a sealed copy in memory ----
 *
 * A VM's QEMU maps the template's RAM privately (copy-on-write), but QEMU
 * 7.2 opens the file for writing even then, and a file every VM's QEMU
 * could write would let one of them change the memory of every VM
 * started from it later (and the pages the others have not written yet).
 * So the agent copies "mem" once into a memfd, seals it against writes,
 * growing and shrinking, and passes it: all VMs of the template share
 * its pages, none can change them. One copy per template file (dev,
 * inode, mtime), kept while the agent runs; a rebuilt or deleted template
 * drops it (VMs that map it keep their mapping). */
struct tmplmem {
	char *path;
	dev_t dev;
	ino_t ino;
	uint64_t mtime;
	int fd;
	struct tmplmem *next;
};
static struct tmplmem *tmplmem;
static pthread_mutex_t tmplmem_mu = PTHREAD_MUTEX_INITIALIZER;

static bool zero_page(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Copy @src's data (not its holes, nor pages of zeros) into a new sealed
 * memfd of @size bytes; the fd or a negative errno. */
static int memfd_load(int src, off_t size)
{
	enum { CHUNK = 1 << 20, PAGE = 4096 };
	int fd = memfd_create("gridvm-template", MFD_CLOEXEC | MFD_ALLOW_SEALING), r = 0;
	uint8_t *buf = malloc(CHUNK);
	off_t off = 0, data, hole;

	if (fd < 0 || !buf || ftruncate(fd, size) < 0)
		r = fd < 0 || buf ? -errno : -ENOMEM;
	while (r == 0 && off < size && (data = lseek(src, off, SEEK_DATA)) >= 0) {
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		for (off = data; r == 0 && off < hole;) {
			ssize_t n = pread(src, buf, (size_t)(hole - off < CHUNK ? hole - off : CHUNK),
					  off);
			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				break;
			}
			for (ssize_t i = 0; r == 0 && i < n; i += PAGE) {
				size_t len = (size_t)(n - i < PAGE ? n - i : PAGE);
				if (!zero_page(buf + i, len) &&
				    pwrite(fd, buf + i, len, off + i) != (ssize_t)len)
					r = -errno;
			}
			off += n;
		}
	}
	if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
					      F_SEAL_SEAL) < 0)
		r = -errno;
	free(buf);
	if (r < 0 && fd >= 0)
		close(fd);
	return r < 0 ? r : fd;
}

/* Forget the copies of @path (all, if NULL). */
static void tmplmem_drop(const char *path)
{
	pthread_mutex_lock(&tmplmem_mu);
	for (struct tmplmem **pp = &tmplmem; *pp;) {
		struct tmplmem *m = *pp;
		if (path && strcmp(m->path, path)) {
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		close(m->fd);
		free(m->path);
		free(m);
	}
	pthread_mutex_unlock(&tmplmem_mu);
}

/* A new fd (the caller closes it) of @t's sealed RAM copy. */
static int tmplmem_get(const struct tmpl *t, gv_err *e)
{
	struct tmplmem *m;
	struct stat st;
	int src = open(t->mem, O_RDONLY | O_CLOEXEC), fd = -1;

	if (src < 0 || fstat(src, &st) < 0) {
		fd = gv_err_set(e, -errno, "cannot open %s: %s", t->mem, strerror(errno));
		goto out;
	}
	pthread_mutex_lock(&tmplmem_mu);
	for (m = tmplmem; m && strcmp(m->path, t->mem); m = m->next)
		;
	if (m && (m->dev != st.st_dev || m->ino != st.st_ino ||
		  m->mtime != gv_stat_mtime_ns(&st))) {
		pthread_mutex_unlock(&tmplmem_mu);
		tmplmem_drop(t->mem);
		pthread_mutex_lock(&tmplmem_mu);
		m = NULL;
	}
	if (!m) {
		int mfd = memfd_load(src, st.st_size);
		if (mfd < 0) {
			fd = gv_err_set(e, mfd, "cannot copy %s into memory: %s", t->mem,
					strerror(-mfd));
		} else {
			m = calloc(1, sizeof(*m));
			if (!m)
				abort();
			*m = (struct tmplmem){ .path = strdup(t->mem), .dev = st.st_dev,
					       .ino = st.st_ino, .mtime = gv_stat_mtime_ns(&st),
					       .fd = mfd, .next = tmplmem };
			tmplmem = m;
		}
	}
	if (m && (fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 3)) < 0)
		fd = gv_err_set(e, -errno, "cannot pass %s: %s", t->mem, strerror(errno));
	pthread_mutex_unlock(&tmplmem_mu);
out:
	if (src >= 0)
		close(src);
	return fd;
}

/* Remove @t's files, under its exclusive lock. */
static int tmpl_remove(gv_host *h, const struct tmpl *t)
{
	struct stat st;
	int fd = tmpl_lock(h, t, LOCK_EX), r = 0;

	if (stat(t->dir, &st) < 0)
		r = -ENOENT;
	else
		gv_rm_rf(t->dir); /* unlinked: VMs that map "mem" keep its pages */
	tmplmem_drop(t->mem);
	tmpl_unlock(fd);
	return r;
}

int gv_template_delete(gv_host *h, const char *name, gv_err *e)
{
	struct tmpl t;
	int r = tmpl_parse(h, name, &t, e);

	if (r == 0 && (r = tmpl_remove(h, &t)) < 0)
		gv_err_set(e, r, "no template %s (see 'gridvm template list')", name);
	tmpl_clear(&t);
	return r;
}

/* Which template would VM @d start from; false (+ why in @why) if none
 * can serve it. */
static bool tmpl_fits(gv_host *h, const gv_vmdef *d, const char **why)
{
	*why = d->boot_disk ? "it boots from its disk"
	       : d->kernel || d->initrd || d->append ? "it has its own kernel, initrd or "
						       "command line"
	       : d->disk_iops || d->disk_bps ? "its disk is throttled (not hot-plugged yet)"
	       : !guest_has_templates(h) ? "the guest has no template support (run "
					   "scripts/setup.sh)"
					 : NULL;
	return !*why;
}

/* Connect to the control port's socket and send the job: a 'J' frame of
 * the job spec, led by the host's clock and a seed from its RNG. */
static int send_job(const gv_vmdef *d, const gv_vmpaths *p, gv_err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	unsigned char seed[32];
	char hex[65], *spec, *msg;
	struct timespec ts;
	size_t speclen, len, off = 0;
	int fd, r = 0;
	uint64_t end = gv_now_ms() + 30000;

	if (RAND_bytes(seed, sizeof(seed)) != 1)
		return gv_err_set(e, -EIO, "no random seed for the guest");
	for (size_t i = 0; i < sizeof(seed); i++)
		snprintf(hex + 2 * i, 3, "%02x", seed[i]);
	spec = gv_vmdef_jobspec(d, &speclen);
	clock_gettime(CLOCK_REALTIME, &ts);
	msg = gv_strdupf("J....clock=%lld.%09ld\nseed=%s\n", (long long)ts.tv_sec, ts.tv_nsec,
			 hex);
	len = strlen(msg);
	msg = realloc(msg, len + speclen);
	if (!msg)
		abort();
	memcpy(msg + len, spec, speclen);
	len += speclen;
	free(spec);
	for (int i = 0; i < 4; i++)
		msg[1 + i] = (char)((len - 5) >> (24 - 8 * i));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->ctl);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		r = gv_err_set(e, -errno, "cannot connect to the control port %s: %s", p->ctl,
			       strerror(errno));
	while (r == 0 && off < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t n = poll(&pfd, 1, 1000) > 0 ? send(fd, msg + off, len - off,
							   MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			r = gv_err_set(e, -errno, "cannot send the job: %s", strerror(errno));
		else if (gv_now_ms() > end)
			r = gv_err_set(e, -ETIMEDOUT, "the guest did not take its job");
	}
	if (fd >= 0)
		close(fd);
	free(msg);
	return r;
}

/* Give QEMU the base image @path, opened read-only, as its fd set
 * GV_QEMU_BASE_FDSET (QMP add-fd), for the hot-plugged disk to read. */
static int add_base_fd(gv_qmp *q, const char *path, gv_err *e)
{
	json_t *args = json_pack("{s:i, s:s}", "fdset-id", GV_QEMU_BASE_FDSET, "opaque",
				 "base-image"), *ret = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;
	gv_err qe;

	if (fd < 0) {
		json_decref(args);
		return gv_err_set(e, -errno, "cannot open the base image %s: %s", path,
				  strerror(errno));
	}
	r = gv_qmp_execute_fd(q, "add-fd", args, fd, 10000, &ret, &qe);
	if (r < 0)
		gv_err_set(e, r, "QEMU refused the base image's descriptor: %s", qe.msg);
	json_decref(ret);
	json_decref(args);
	close(fd);
	return r;
}

/* QEMU for @r, restored from @t: the template's RAM copy-on-write, its
 * device state, the VM's disks hot-plugged; not yet running. -EPROTO:
 * the template itself failed. */
static int restore_from(gv_host *h, const struct tmpl *t, gv_vmrec *r, const gv_vmpaths *p,
			gv_err *e)
{
	static const char *const done[] = { "completed", NULL };
	json_t *on = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
			       "x-ignore-shared", "state", 1);
	json_t *off = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				"x-ignore-shared", "state", 0);
	char *base = NULL;
	json_t *cmds = NULL, *c;
	gv_vmpaths pp = *p;
	gv_qmp *q = NULL;
	size_t i;
	int fd = open(t->state, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		rc = gv_err_set(e, -EPROTO, "cannot open %s: %s", t->state, strerror(errno));
	pp.mem_file = NULL;
	pp.mem_from_fd = pp.no_disks = pp.tmpl_layout = true;
	pp.mem_fd = rc == 0 ? tmplmem_get(t, e) : -1;
	if (rc == 0 && pp.mem_fd < 0)
		rc = pp.mem_fd;
	unlink(p->output); /* a fresh boot: an empty output disk */
	if (rc == 0)
		rc = vm_spawn_qemu(h, r, &pp, true, e);
	if (rc == 0)
		rc = host_qmp(p, &q, e);
	if (rc == 0)
		rc = host_qmp_run(q, "migrate-set-capabilities", on, e);
	if (rc == 0)
		rc = host_migrate_fd(q, true, fd, e);
	/* polled every millisecond: a start waits for nothing else here */
	if (rc == 0 && (rc = vm_migration_wait(q, done, 5 * 60 * 1000, 1, NULL, NULL, NULL,
					      e)) < 0)
		rc = -EPROTO;
	if (rc == 0)
		rc = host_qmp_run(q, "migrate-set-capabilities", off, e);
	if (rc == 0 && r->def->image &&
	    gv_image_resolve(h->datadir, r->def->image, &base, &pp.base_fmt) == 0)
		pp.base = base;
	if (rc == 0 && pp.base) /* QEMU's user may not read it: passed open */
		rc = add_base_fd(q, pp.base, e);
	pp.base_from_fd = pp.base != NULL;
	cmds = rc == 0 ? gv_vmdef_hotplug_cmds(r->def, &pp) : NULL;
	json_array_foreach(cmds, i, c) {
		rc = host_qmp_run(q, json_string_value(json_object_get(c, "execute")),
				  json_object_get(c, "arguments"), e);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = host_qmp_run(q, "cont", NULL, e);
	gv_qmp_free(q);
	json_decref(cmds);
	json_decref(on);
	json_decref(off);
	if (fd >= 0)
		close(fd);
	if (pp.mem_fd >= 0)
		close(pp.mem_fd);
	free(base);
	return rc;
}

static void set_note(gv_vmdef *d, char *note)
{
	free(d->boot_note);
	d->boot_note = note;
}

int vm_start_template(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, gv_err *e)
{
	gv_vmdef *d = r->def;
	const char *why = NULL, *st;
	struct tmpl t;
	gv_err te = { "" };
	int fd = -1, rc;

	free(d->tmpl);
	d->tmpl = NULL;
	if (d->start_mode == GV_START_COLD) {
		set_note(d, strdup("cold boot (asked for)"));
		return 1;
	}
	if (!tmpl_fits(h, d, &why)) {
		set_note(d, gv_strdupf("cold boot: no template fits (%s)", why));
		return d->start_mode == GV_START_TEMPLATE
			       ? gv_err_set(e, -ENOTSUP, "VM %s cannot start from a template: "
					    "%s", d->name, why) : 1;
	}
	rc = tmpl_init(h, &t, d->vcpus, d->memory_mib, d->accel, &te);
	if (rc == 0 && (fd = tmpl_lock(h, &t, LOCK_EX)) < 0)
		rc = gv_err_set(&te, -errno, "cannot lock %s: %s", t.lock, strerror(errno));
	st = rc == 0 ? tmpl_status(h, &t, NULL) : NULL;
	if (rc == 0 && (!st || strcmp(st, "ready")))
		rc = build_locked(h, &t, &te);
	if (rc == 0 && flock(fd, LOCK_SH) < 0) /* others may restore it too now */
		rc = gv_err_set(&te, -errno, "cannot lock %s: %s", t.lock, strerror(errno));
	if (rc == 0) {
		d->tmpl = strdup(t.name);
		rc = restore_from(h, &t, r, p, &te);
		if (rc == 0)
			rc = send_job(d, p, &te);
		if (rc < 0)
			vm_kill_qemu(r, p);
	}
	tmpl_unlock(fd);
	if (rc == -EPROTO) { /* a template that does not restore is no use */
		tmpl_remove(h, &t);
		set_note(d, gv_strdupf("cold boot: template %s is corrupt (its saved state does "
				       "not load: %s); it was deleted",
				       t.name, te.msg));
	} else if (rc < 0) {
		set_note(d, gv_strdupf("cold boot: template %s failed: %s", t.name ?: "?", te.msg));
	} else {
		set_note(d, gv_strdupf("template %s", t.name));
	}
	tmpl_clear(&t);
	if (rc == 0)
		return 0;
	free(d->tmpl);
	d->tmpl = NULL;
	if (d->start_mode == GV_START_TEMPLATE)
		return gv_err_set(e, rc, "VM %s: %s", d->name, d->boot_note);
	return 1;
}
