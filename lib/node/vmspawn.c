/* SPDX-License-Identifier: MIT */
/*
 * vmspawn.c - a VM's QEMU: started confined, killed, waited for.
 *
 * QEMU runs (docs/security.md, lib/vmm/confine.c):
 *  - as a uid and gid of its own VM from gridvm-qemu's subordinate range
 *    (a template build: as gridvm-qemu), remembered as the group of the
 *    VM's directory (root:GID 0750): the first id of the range not used
 *    by another VM of this data directory, from a hash of the directory;
 *  - with the VM's files owned so: what QEMU writes (disk overlay, output
 *    disk, job output, console) by its uid, mode 0600; what it only
 *    reads (job spec, input disk) root:GID 0640; the rest of the
 *    directory (logs, checkpoints, saved states) is root's, and QEMU can
 *    create nothing there;
 *  - with its monitors' and control port's sockets bound by the agent
 *    (0600 root) and passed as file descriptors (vmdef.h GV_QEMU_FD_*);
 *  - in a mount namespace that holds /usr, /dev's harmless nodes, /proc
 *    (its own processes only), its VM's directory (read-write) and the
 *    kernel, initramfs and base image it reads (read-only), nothing else;
 *  - under QEMU's seccomp sandbox, in the foreground of a detached
 *    process: ready when its monitor greets; the agent writes the pidfile.
 */
#include "vm_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/vmm/cgroup.h>
#include <gridvm/vmm/confine.h>
#include <gridvm/vmm/jobio.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READY_MS (120 * 1000) /* QEMU's setup on a loaded host */

static pthread_mutex_t ids_mu = PTHREAD_MUTEX_INITIALIZER;

static bool in_range(const gv_qemu_users *u, gid_t g)
{
	return g >= u->first_gid && g - u->first_gid < u->count;
}

/* Is slot @slot the id of a VM of this data directory other than @self? */
static bool slot_used(gv_host *h, const gv_qemu_users *u, unsigned slot, const char *self)
{
	char *vms = gv_strdupf("%s/vms", h->datadir);
	DIR *d = opendir(vms);
	struct dirent *de;
	bool used = false;

	while (d && !used && (de = readdir(d))) {
		char *dir = gv_strdupf("%s/%s", vms, de->d_name);
		struct stat st;

		if (de->d_name[0] != '.' && strcmp(dir, self) && lstat(dir, &st) == 0 &&
		    S_ISDIR(st.st_mode) && in_range(u, st.st_gid) &&
		    st.st_gid - u->first_gid == slot)
			used = true;
		free(dir);
	}
	if (d)
		closedir(d);
	free(vms);
	return used;
}

/* The uid and gid of @p's QEMU; the VM's directory becomes root:GID 0750
 * (it records the choice). */
static int qemu_ids(gv_host *h, const gv_vmpaths *p, const gv_qemu_users *u, bool build,
		    uid_t *uid, gid_t *gid, gv_err *e)
{
	uint32_t hash = 2166136261u; /* FNV-1a */
	struct stat st;
	unsigned slot;
	int r = 0;

	if (build) {
		*uid = u->uid;
		*gid = u->gid;
	} else {
		pthread_mutex_lock(&ids_mu);
		if (lstat(p->dir, &st) == 0 && st.st_uid == 0 && in_range(u, st.st_gid)) {
			slot = st.st_gid - u->first_gid;
		} else {
			for (const char *c = p->dir; *c; c++)
				hash = (hash ^ (uint8_t)*c) * 16777619u;
			slot = hash % u->count;
			for (unsigned n = 0; n < u->count && slot_used(h, u, slot, p->dir); n++)
				slot = (slot + 1) % u->count;
		}
		*uid = u->first_uid + slot;
		*gid = u->first_gid + slot;
	}
	if (lchown(p->dir, 0, *gid) < 0 || chmod(p->dir, 0750) < 0)
		r = gv_err_set(e, -errno, "cannot give %s to QEMU's group %u: %s", p->dir,
			       (unsigned)*gid, strerror(errno));
	if (!build)
		pthread_mutex_unlock(&ids_mu);
	return r;
}

/* Own @path for QEMU: written by it (uid, 0600) or only read (root:gid,
 * 0640); made empty first if @create. Missing and not @create: nothing. */
static int own(const char *path, bool writes, bool create, uid_t uid, gid_t gid, gv_err *e)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0),
		      0600);
	int r = 0;

	if (fd < 0)
		return errno == ENOENT && !create ? 0
		       : gv_err_set(e, -errno, "cannot open %s for QEMU: %s", path, strerror(errno));
	if (fchown(fd, writes ? uid : 0, gid) < 0 || fchmod(fd, writes ? 0600 : 0640) < 0)
		r = gv_err_set(e, -errno, "cannot give %s to QEMU (uid %u): %s", path,
			       (unsigned)uid, strerror(errno));
	close(fd);
	return r;
}

static int own_files(const gv_vmpaths *p, uid_t uid, gid_t gid, gv_err *e)
{
	const struct {
		const char *path;
		bool writes, create;
	} f[] = { { p->disk, true, false },    { p->output, true, false },
		  { p->jobout, true, true },   { p->console, true, true },
		  { p->jobspec, false, false }, { p->input, false, false },
		  /* a template build's RAM file, which QEMU maps shared */
		  { p->mem_shared ? p->mem_file : NULL, true, true } };
	int r = 0;

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && r == 0; i++)
		if (f[i].path)
			r = own(f[i].path, f[i].writes, f[i].create, uid, gid, e);
	return r;
}

/* The last line QEMU wrote to its log, for an error message. */
static void log_tail(const gv_vmpaths *p, char *line, size_t len)
{
	char *log = NULL;

	if (gv_read_file(p->qemulog, &log, NULL) < 0 || !*log)
		snprintf(line, len, "no message");
	else
		gv_last_line(log, line, len);
	free(log);
}

/* Ready once its monitor greets; an error if it ends before. */
static int wait_ready(int pid, const gv_vmpaths *p, gv_err *e)
{
	uint64_t end = gv_now_ms() + READY_MS;
	char line[300];
	gv_qmp *q = NULL;

	for (;;) {
		if (gv_qmp_connect(p->qmp, 2000, &q) == 0) {
			gv_qmp_free(q);
			return 0;
		}
		if (!gv_pid_alive(pid)) {
			log_tail(p, line, sizeof(line));
			return gv_err_set(e, -EIO, "QEMU failed to start: %s", line);
		}
		if (gv_now_ms() > end)
			return gv_err_set(e, -ETIMEDOUT, "QEMU's monitor did not answer in %d s",
					  READY_MS / 1000);
		usleep(20000);
	}
}

/* Wait until @pid, our QEMU, is gone, up to @ms; then SIGKILL. Once it is
 * known to be ours, only the pid is watched: an exiting process has an
 * empty command line before it disappears. */
void vm_wait_gone(int pid, const gv_vmpaths *p, uint64_t ms)
{
	uint64_t end = gv_now_ms() + ms;

	if (!host_qemu_alive(pid, p))
		return;
	while (gv_pid_alive(pid) && gv_now_ms() < end)
		usleep(20000);
	if (gv_pid_alive(pid)) {
		kill(pid, SIGKILL);
		end = gv_now_ms() + 5000;
		while (gv_pid_alive(pid) && gv_now_ms() < end)
			usleep(10000);
	}
}

static int read_pid(const char *pidfile)
{
	char *buf = NULL;
	int pid = 0;

	if (gv_read_file(pidfile, &buf, NULL) == 0)
		pid = atoi(buf);
	free(buf);
	return pid;
}

/* What QEMU reads besides its VM's directory, bound read-only into its
 * jail; NULL-terminated, the strings borrowed from @d and @p. (The base
 * image is passed open instead: QEMU's user may not read a user's.) */
static void jail_ro(const gv_vmdef *d, const gv_vmpaths *p, const char *qemu,
		    const char **ro)
{
	size_t n = 0;

	if (!d->boot_disk) {
		ro[n++] = d->kernel ? d->kernel : p->kernel;
		ro[n++] = d->initrd ? d->initrd : p->initrd;
	}
	if (strncmp(qemu, "/usr/", 5))
		ro[n++] = qemu;
	ro[n] = NULL;
}

/* Listening sockets for QEMU's monitors and control port (the agent's
 * own, 0600), in the order of GV_QEMU_FD_*; -1 where there is none. */
static int bind_sockets(const gv_vmdef *d, const gv_vmpaths *p, int fds[GV_QEMU_NFDS],
			gv_err *e)
{
	const char *socks[GV_QEMU_NFDS - 1] = { p->qmp, p->fence, d->image ? p->blkmon : NULL,
						p->tmpl_layout ? p->ctl : NULL };

	for (int i = 0; i < GV_QEMU_NFDS; i++)
		fds[i] = -1;
	for (int i = 0; i < GV_QEMU_NFDS - 1; i++) {
		if (!socks[i])
			continue;
		fds[i] = gv_unix_listen(socks[i], 4);
		if (fds[i] < 0)
			return gv_err_set(e, fds[i], "cannot listen on %s: %s", socks[i],
					  strerror(-fds[i]));
	}
	return 0;
}

/* Start QEMU for @r (paused, -S) as the head comment says; r->pid set. */
static int spawn(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, bool incoming,
		 const gv_accel *acc, int base_fd, gv_err *e)
{
	gv_qemu_users u;
	gv_spawn s;
	uid_t uid = 0;
	gid_t gid = 0;
	const char *ro[5], *rw[3] = { p->dir, NULL, NULL };
	char *qemu = gv_qemu_binary(), **argv = NULL, *jail = NULL;
	int fds[GV_QEMU_NFDS], log = -1, rc;
	pid_t pid = -1;

	for (int i = 0; i < GV_QEMU_NFDS; i++)
		fds[i] = -1;
	rc = gv_qemu_users_load(&u, e);
	if (rc == 0 && !qemu)
		rc = gv_err_set(e, -ENOENT, "qemu-system-x86_64 is not in PATH");
	if (rc == 0 && u.confined) {
		rc = qemu_ids(h, p, &u, p->mem_shared, &uid, &gid, e);
		if (rc == 0)
			rc = own_files(p, uid, gid, e);
		jail = gv_strdupf("%s/jail", h->datadir);
		if (rc == 0 && mkdir(jail, 0700) < 0 && errno != EEXIST)
			rc = gv_err_set(e, -errno, "cannot make %s: %s", jail, strerror(errno));
	}
	if (rc == 0)
		rc = bind_sockets(r->def, p, fds, e);
	if (rc < 0)
		goto out;
	fds[GV_QEMU_FD_MEM - 3] = p->mem_from_fd ? p->mem_fd : -1;
	fds[GV_QEMU_FD_BASE - 3] = p->base_from_fd ? base_fd : -1;
	argv = gv_vmdef_qemu_argv(r->def, p, gv_accel_qemu_arg(acc), incoming);
	free(argv[0]);
	argv[0] = strdup(qemu);
	jail_ro(r->def, p, qemu, ro);
	if (p->mem_shared && p->mem_file)
		rw[1] = p->mem_file;
	log = open(p->qemulog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	s = (gv_spawn){ .argv = argv, .out_fd = log, .fds = fds, .nfds = GV_QEMU_NFDS,
			.drop = u.confined, .uid = uid, .gid = gid, .jail = u.confined,
			.jail_dir = jail, .ro = ro, .rw = rw,
			.kvm = !strncmp(gv_accel_qemu_arg(acc), "kvm", 3) };
	rc = log < 0 ? gv_err_set(e, -errno, "cannot write %s: %s", p->qemulog, strerror(errno))
		     : gv_spawn_detached(&s, &pid, e);
	if (rc == 0) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
		if (gv_write_file_atomic(p->pidfile, buf, (size_t)n) < 0)
			fprintf(stderr, "gridvmd: cannot write %s\n", p->pidfile);
		r->pid = pid;
		rc = wait_ready(pid, p, e);
	}
out:
	for (int i = 0; i < GV_QEMU_NFDS - 1; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (log >= 0)
		close(log);
	gv_strv_free(argv);
	free(qemu);
	free(jail);
	return rc;
}

int vm_spawn_qemu(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, bool incoming, gv_err *e)
{
	gv_accel acc = h->accel;
	gv_vmpaths withbase = *p;
	char *base = NULL;
	int base_fd = -1, rc;

	if (r->def->accel && gv_accel_choose(r->def->accel, &acc) < 0)
		return gv_err_set(e, -EINVAL, "invalid accelerator %s", r->def->accel);
	rc = vm_check_boot_files(h, r->def, p, e);
	if (rc < 0)
		return rc;
	/* a fresh boot gets an empty output disk; a guest that continues
	 * (restore, migration) keeps its own, or gets an empty one where it
	 * has none (it writes it only once its job has ended) */
	if (r->def->outputs && (!incoming || access(p->output, F_OK) < 0) &&
	    (rc = gv_jobio_output_create(p->output, r->def->output_max, e)) < 0)
		return rc;
	unlink(p->qmp);
	unlink(p->blkmon);
	unlink(p->fence);
	unlink(p->pidfile);
	unlink(p->qemulog);
	withbase.tmpl_layout = p->tmpl_layout || r->def->tmpl; /* template.c */
	if (r->def->image &&
	    gv_image_resolve(h->datadir, r->def->image, &base, &withbase.base_fmt) == 0)
		withbase.base = base;
	/* the base image open, for QEMU to read as its fd set (the disks on
	 * its command line; a hot-plug passes it itself, template.c) */
	if (withbase.base && !withbase.no_disks) {
		base_fd = open(withbase.base, O_RDONLY | O_CLOEXEC);
		if (base_fd < 0) {
			rc = gv_err_set(e, -errno, "cannot open the base image %s: %s",
					withbase.base, strerror(errno));
			free(base);
			return rc;
		}
		withbase.base_from_fd = true;
	}
	r->pid = 0;
	rc = spawn(h, r, &withbase, incoming, &acc, base_fd, e);
	if (base_fd >= 0)
		close(base_fd);
	free(base);
	if (rc < 0) {
		vm_kill_qemu(r, p);
		return rc;
	}
	if (!host_qemu_alive(r->pid, p))
		return gv_err_set(e, -EIO, "QEMU exited right after starting");
	rc = gv_cgroup_apply(r->def->name, r->pid, r->def->cpu_weight, r->def->cpu_cap_pct);
	if (rc < 0 && (r->def->cpu_weight || r->def->cpu_cap_pct)) {
		kill(r->pid, SIGKILL);
		return gv_err_set(e, rc, "cannot apply CPU limits through cgroups: %s",
				  strerror(-rc));
	}
	return 0;
}

void vm_kill_qemu(gv_vmrec *r, const gv_vmpaths *p)
{
	/* an agent that died mid-start or mid-restore knew no pid yet */
	if (r->pid <= 0)
		r->pid = read_pid(p->pidfile);
	if (r->pid > 0 && host_qemu_alive(r->pid, p)) {
		kill(r->pid, SIGKILL);
		vm_wait_gone(r->pid, p, 5000);
	}
	r->pid = 0;
	gv_cgroup_remove(r->def->name);
}
