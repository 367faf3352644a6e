/* SPDX-License-Identifier: MIT */
/*
 * vmsave.c - suspend a VM to a file and continue it from there, and read
 * a VM's logs.
 *
 * Save stops the guest, streams QEMU's migration state into a temporary
 * file next to the target, and renames it into place only once QEMU
 * reports the migration completed; then QEMU quits. The disk overlay stays
 * in the VM's directory. Restore starts a new QEMU with "-incoming defer"
 * and feeds it the file. A failed save leaves the VM running; a failed
 * restore leaves it saved.
 */
#include "vm_internal.h"

#include <gridvm/vmm/cgroup.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* QEMU leaves the status out while there is no migration (an incoming
 * one: until its stream opens): that is "none". */
static bool status_in(const char *st, const char *const set[])
{
	for (; *set; set++)
		if (!strcmp(st ? st : "none", *set))
			return true;
	return false;
}

int vm_migration_wait(gv_qmp *q, const char *const until[], uint64_t timeout_ms,
		      unsigned interval_ms, vm_migration_tick_fn tick, void *ud, json_t **last,
		      gv_err *e)
{
	uint64_t end = gv_now_ms() + timeout_ms;

	while (gv_now_ms() < end) {
		json_t *ret = NULL;
		int r = gv_qmp_execute(q, "query-migrate", NULL, 5000, &ret, e);
		if (r < 0)
			return gv_err_wrap(e, r, "query-migrate failed");
		const char *st = json_string_value(json_object_get(ret, "status"));
		if (status_in(st, until)) {
			r = 0;
		} else if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"))) {
			const char *why = json_string_value(json_object_get(ret, "error-desc"));
			r = gv_err_set(e, -EIO, "migration %s: %s", st,
				       why ? why : "no reason given");
		} else {
			r = tick ? tick(ud, ret) : 0;
			if (r >= 0)
				r = 1; /* go on */
		}
		if (r <= 0) {
			if (last)
				*last = ret;
			else
				json_decref(ret);
			return r;
		}
		json_decref(ret);
		usleep(interval_ms * 1000u);
	}
	return gv_err_set(e, -ETIMEDOUT, "migration did not finish in time");
}

int host_wait_migration(gv_qmp *q, uint64_t timeout_ms, gv_err *e)
{
	static const char *const done[] = { "completed", NULL };

	return vm_migration_wait(q, done, timeout_ms, 10, NULL, NULL, NULL, e);
}

int host_qmp_run(gv_qmp *q, const char *cmd, json_t *args, gv_err *e)
{
	gv_err qe;
	int r = gv_qmp_execute(q, cmd, args, 10000, NULL, &qe);

	if (r < 0)
		gv_err_set(e, r, "QEMU refused %s: %s", cmd, qe.msg);
	return r;
}

int host_qmp_pass_fd(gv_qmp *q, const char *name, int fd, gv_err *e)
{
	gv_err qe;
	int r = gv_qmp_getfd(q, name, fd, 10000, &qe);

	if (r < 0)
		gv_err_set(e, r, "QEMU refused the stream's file descriptor: %s", qe.msg);
	return r;
}

int host_migrate_fd(gv_qmp *q, bool incoming, int fd, gv_err *e)
{
	json_t *args = json_pack("{s:s}", "uri", "fd:gv-stream");
	int r = host_qmp_pass_fd(q, "gv-stream", fd, e);

	if (r == 0)
		r = host_qmp_run(q, incoming ? "migrate-incoming" : "migrate", args, e);
	json_decref(args);
	return r;
}

int vm_migration_plain(gv_qmp *q, gv_err *e)
{
	json_t *caps = json_pack("{s:[{s:s, s:b}, {s:s, s:b}, {s:s, s:b}]}", "capabilities",
				 "capability", "multifd", "state", 0, "capability",
				 "pause-before-switchover", "state", 0, "capability",
				 "auto-converge", "state", 0);
	int r = host_qmp_run(q, "migrate-set-capabilities", caps, e);

	json_decref(caps);
	return r;
}

/* A live pre-copy is exact only under KVM. Under TCG, QEMU loses pages
 * the guest writes while its memory is copied: clearing the migration's
 * dirty bits (the fast path of cpu_physical_memory_sync_dirty_bitmap)
 * leaves in place the TLB entries through which TCG writes without
 * marking pages dirty, so pages written after they were sent are not
 * sent again. The copy then resumes with stale pages: a checkpoint
 * restored, or a VM migrated live, runs on with corrupt memory (seen: a
 * guest that writes two buffers alike finds them different, or its
 * kernel dies; in CI a job's shell was killed by SIGSEGV after a
 * checkpoint restore). Upstream fixed that path in QEMU 9.0 ("physmem:
 * Fix migration dirty bitmap coherency with TCG memory access"), not in
 * the 7.2 of Debian 12, and reported other such races; so under TCG the
 * guest does not run while its memory is copied, whatever the version.
 * A stopped guest's copy is exact. */
int vm_precopy_prepare(gv_qmp *q, bool *stopped, gv_err *e)
{
	json_t *kvm = NULL;
	int r = gv_qmp_execute(q, "query-kvm", NULL, 5000, &kvm, NULL);

	*stopped = false;
	if (r == 0 && json_is_true(json_object_get(kvm, "enabled"))) {
		json_decref(kvm);
		return 0;
	}
	json_decref(kvm);
	r = host_qmp_run(q, "stop", NULL, e);
	*stopped = r == 0;
	return r;
}

/* The stream into @tmp, which the agent opens (0600: it holds the
 * guest's memory) and hands QEMU as a file descriptor. */
static int save_stream(gv_qmp *q, const char *tmp, gv_err *e)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	int r;

	if (fd < 0)
		return gv_err_set(e, -errno, "cannot create %s: %s", tmp, strerror(errno));
	r = vm_migration_plain(q, e);
	if (r == 0)
		r = host_migrate_fd(q, false, fd, e);
	if (r == 0)
		r = host_wait_migration(q, 30 * 60 * 1000, e);
	if (r == 0 && fsync(fd) < 0)
		r = gv_err_set(e, -errno, "cannot sync %s: %s", tmp, strerror(errno));
	close(fd);
	return r;
}

/* Stop a migration that is still going (up to 5 s). */
static void cancel_migration(gv_qmp *q)
{
	static const char *const over[] = { "completed", "none", NULL };

	(void)host_qmp_run(q, "migrate_cancel", NULL, NULL);
	(void)vm_migration_wait(q, over, 5000, 50, NULL, NULL, NULL, NULL);
}

int vm_save_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *path,
		   gv_err *e)
{
	char *tmp = gv_strdupf("%s.partial", path);
	bool was_running = r->state == GV_VM_RUNNING;
	gv_qmp *q = NULL;
	int rc;

	rc = host_qmp(p, &q, e);
	if (rc == 0 && was_running)
		rc = host_qmp_run(q, "stop", NULL, e);
	if (rc == 0)
		rc = save_stream(q, tmp, e);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = gv_err_set(e, -errno, "cannot write %s: %s", path, strerror(errno));
	if (rc < 0) {
		if (q)
			cancel_migration(q);
		unlink(tmp);
		if (q && was_running)
			(void)host_qmp_run(q, "cont", NULL, NULL);
		goto out;
	}
	(void)host_qmp_run(q, "quit", NULL, NULL);
	vm_wait_gone(r->pid, p, 10000);
	unlink(p->qmp);
	unlink(p->blkmon);
	unlink(p->fence);
	gv_cgroup_remove(r->def->name);
	r->pid = 0;
	r->state = GV_VM_SAVED;
	free(r->state_file);
	r->state_file = strdup(path);
	rc = host_put(h, r, e);
out:
	gv_qmp_free(q);
	free(tmp);
	return rc;
}

static int save_verb(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *path,
		     gv_err *e)
{
	char *own = gv_strdupf("%s/saved.state", p->dir);

	if (r->state != GV_VM_RUNNING && r->state != GV_VM_PAUSED) {
		free(own);
		return host_bad_state(r, "save", e);
	}
	if (!strcmp(path, own)) /* a running VM's old state (restored, or stopped since) */
		unlink(own);
	free(own);
	return vm_save_locked(h, r, p, path, e);
}

int gv_vm_save(gv_host *h, const char *name, const char *path, gv_err *e)
{
	struct stat st;
	char *own = NULL;
	int r;

	if (!path && gv_name_valid(name)) { /* the VM's own directory */
		own = gv_strdupf("%s/vms/%s/saved.state", h->datadir, name);
		path = own;
	}
	if (!path || path[0] != '/')
		r = gv_err_set(e, -EINVAL, "the state file must be an absolute path");
	else if (!own && stat(path, &st) == 0)
		r = gv_err_set(e, -EEXIST, "%s exists already; choose another path", path);
	else
		r = host_with_vm(h, name, save_verb, path, e);
	free(own);
	return r;
}

/* QEMU's migration stream begins with "QEVM". */
static int check_state_file(const char *path, gv_err *e)
{
	char magic[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return gv_err_set(e, -errno, "cannot open state file %s: %s", path,
				  strerror(errno));
	n = read(fd, magic, 4);
	close(fd);
	if (n != 4 || memcmp(magic, "QEVM", 4))
		return gv_err_set(e, -EINVAL, "%s is not a saved VM state", path);
	return 0;
}

int vm_restore_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *path,
		      gv_err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	gv_qmp *q = NULL;
	int rc = fd < 0 ? gv_err_set(e, -errno, "cannot open state file %s: %s", path,
				     strerror(errno))
			: vm_spawn_qemu(h, r, p, true, e);

	if (rc == 0)
		rc = host_qmp(p, &q, e);
	if (rc == 0)
		rc = host_migrate_fd(q, true, fd, e);
	if (rc == 0)
		rc = host_wait_migration(q, 30 * 60 * 1000, e);
	if (rc == 0)
		rc = host_qmp_run(q, "cont", NULL, e);
	gv_qmp_free(q);
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		vm_kill_qemu(r, p);
		return rc;
	}
	r->state = GV_VM_RUNNING;
	r->started = gv_now_s();
	rc = host_put(h, r, e);
	if (rc < 0)
		vm_kill_qemu(r, p);
	return rc;
}

int gv_vm_restore(gv_host *h, const char *name, const char *path, gv_err *e)
{
	struct vmlock *l = host_vm_lock(h, name);
	gv_vmrec *r = NULL;
	gv_vmpaths p = { 0 };
	int rc = host_get(h, name, &r, e);

	if (rc < 0)
		goto out;
	host_refresh(h, r);
	if (r->state != GV_VM_SAVED) {
		rc = gv_err_set(e, -EBUSY, "cannot restore VM %s: it is %s, not saved",
				name, gv_vmstate_name(r->state));
		goto out;
	}
	if (!path)
		path = r->state_file;
	if (r->state_file && strcmp(path, r->state_file)) {
		rc = gv_err_set(e, -EINVAL, "VM %s was saved to %s; restore it from that file "
				"(or 'gridvm vm stop %s' to discard the saved state)", name,
				r->state_file, name);
		goto out;
	}
	if (!path || path[0] != '/') {
		rc = gv_err_set(e, -EINVAL, "the state file must be an absolute path");
		goto out;
	}
	rc = check_state_file(path, e);
	if (rc == 0) {
		gv_vmpaths_init(&p, h->datadir, name);
		rc = vm_restore_locked(h, r, &p, path, e);
		gv_vmpaths_clear(&p);
	}
out:
	gv_vmrec_free(r);
	host_vm_unlock(h, l);
	return rc;
}

static int read_from(const char *path, uint64_t offset, size_t max, char **data,
		     size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	*data = malloc(max + 1);
	*len = 0;
	if (!*data)
		abort();
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = pread(fd, *data, max, (off_t)offset);
	close(fd);
	if (n < 0)
		return -errno;
	*len = (size_t)n;
	return 0;
}

static int get_state(gv_host *h, const char *name, gv_vmstate *state, gv_err *e)
{
	struct vmlock *l = host_vm_lock(h, name);
	gv_vmrec *r = NULL;
	int rc = host_get(h, name, &r, e);

	if (rc == 0) {
		host_refresh(h, r);
		*state = r->state;
	}
	gv_vmrec_free(r);
	host_vm_unlock(h, l);
	return rc;
}

/* Wait until @path changes or @ms pass. Uses inotify so new output is
 * seen at once; falls back to sleeping if inotify is unavailable. */
static void wait_change(const char *path, uint64_t ms)
{
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	struct pollfd pfd;

	if (fd < 0 || inotify_add_watch(fd, path, IN_MODIFY | IN_CLOSE_WRITE) < 0) {
		if (fd >= 0)
			close(fd);
		usleep(ms > 30 ? 30000 : (useconds_t)ms * 1000);
		return;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	(void)poll(&pfd, 1, (int)ms);
	close(fd);
}

int gv_vm_read_log(gv_host *h, const char *name, const char *which,
		   uint64_t offset, uint64_t wait_ms, size_t max, char **data,
		   size_t *len, gv_vmstate *state, gv_err *e)
{
	gv_vmpaths p;
	const char *path;
	uint64_t end = gv_now_ms() + wait_ms;
	int rc;

	if (strcmp(which, "job") && strcmp(which, "console"))
		return gv_err_set(e, -EINVAL, "unknown log %s", which);
	gv_vmpaths_init(&p, h->datadir, name);
	path = !strcmp(which, "job") ? p.jobout : p.console;
	for (;;) {
		rc = get_state(h, name, state, e);
		if (rc < 0)
			break;
		bool live = *state == GV_VM_RUNNING || *state == GV_VM_PAUSED;
		uint64_t now = gv_now_ms();
		if (gv_file_size(path) > offset || !live || now >= end) {
			rc = read_from(path, offset, max, data, len);
			if (rc < 0)
				gv_err_set(e, rc, "cannot read %s: %s", path, strerror(-rc));
			break;
		}
		/* wake on new bytes; look at the VM's state every 200 ms */
		wait_change(path, end - now < 200 ? end - now : 200);
	}
	gv_vmpaths_clear(&p);
	return rc;
}
