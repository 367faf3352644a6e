/* SPDX-License-Identifier: MIT */
/* host.c - the host context: data directory, database, locks, refresh. */
#include "host_internal.h"

#include <gridvm/vmm/cgroup.h>
#include <gridvm/vmm/confine.h>
#include <gridvm/vmm/jobout.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct vmlock *host_vm_lock_ref(gv_host *h, const char *name);
static void host_vm_unref(gv_host *h, struct vmlock *l);

/* Local users reach the agent's socket in DATADIR (docs/security.md#users),
 * and see only what they own through it: what holds their VMs' disks,
 * memory, logs and job environments is the agent's alone (the VM
 * records @db, the VMs' directories, checkpoints and their chunks),
 * also in a data directory made before users. */
static void host_private(const char *datadir, const char *db)
{
	static const char *const dirs[] = { "vms", "checkpoints", "chunks" };
	static const char *const dbs[] = { "", "-wal", "-shm" };

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *d = gv_strdupf("%s/%s", datadir, dirs[i]);
		if (mkdir(d, 0700) < 0 && errno == EEXIST)
			(void)chmod(d, 0700);
		free(d);
	}
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		char *f = gv_strdupf("%s%s", db, dbs[i]);
		(void)chmod(f, 0600);
		free(f);
	}
}

int host_open(const char *datadir, gv_host **out, gv_err *e)
{
	gv_host *h = calloc(1, sizeof(*h));
	char *vmdir = gv_strdupf("%s/vms", datadir);
	char *db = gv_strdupf("%s/gridvm.db", datadir);
	int r;

	if (!h)
		abort();
	h->datadir = strdup(datadir);
	h->grid_key = gv_strdupf("%s/grid.key", datadir);
	gv_cgroup_set_scope(datadir);
	pthread_mutex_init(&h->mu, NULL);
	pthread_mutex_init(&h->idx_mu, NULL);
	pthread_mutex_init(&h->ckpt_mu, NULL);
	pthread_mutex_init(&h->dirty_mu, NULL);
	pthread_mutex_init(&h->obs_mu, NULL);
	r = gv_mkdir_p(vmdir, 0700);
	if (r < 0) {
		gv_err_set(e, r, "cannot create %s: %s", vmdir, strerror(-r));
		goto fail;
	}
	r = gv_store_open(db, &h->store);
	if (r < 0) {
		gv_err_set(e, r, "cannot open database %s", db);
		goto fail;
	}
	host_private(datadir, db);
	r = gv_accel_choose(NULL, &h->accel);
	if (r < 0) {
		gv_err_set(e, r, "invalid GRIDVM_ACCEL (use auto, kvm or tcg)");
		goto fail;
	}
	free(vmdir);
	free(db);
	*out = h;
	return 0;
fail:
	free(vmdir);
	free(db);
	gv_host_close(h);
	return r;
}

void gv_host_close(gv_host *h)
{
	if (!h)
		return;
	for (int i = 0; i < h->nmods; i++) {
		struct host_mod *m = &h->mods[i];
		if (m->started) /* at most one pass of its work */
			pthread_join(m->th, NULL);
		if (m->def->close)
			m->def->close(h);
	}
	gv_store_close(h->store);
	gv_hostidx_close(h->hostidx);
	while (h->locks) {
		struct vmlock *l = h->locks;
		h->locks = l->next;
		pthread_mutex_destroy(&l->mu);
		free(l);
	}
	pthread_mutex_destroy(&h->mu);
	pthread_mutex_destroy(&h->idx_mu);
	pthread_mutex_destroy(&h->ckpt_mu);
	pthread_mutex_destroy(&h->dirty_mu);
	pthread_mutex_destroy(&h->obs_mu);
	free(h->grid_key);
	free(h->xfer_addr);
	free(h->datadir);
	free(h);
}

const char *gv_host_datadir(const gv_host *h)
{
	return h->datadir;
}

void gv_host_set_grid_key(gv_host *h, const char *path)
{
	free(h->grid_key);
	h->grid_key = strdup(path);
}

const char *gv_host_grid_key(gv_host *h)
{
	return h->grid_key;
}

void gv_host_set_xfer_addr(gv_host *h, const char *addr)
{
	free(h->xfer_addr);
	h->xfer_addr = strdup(addr);
}

/* Drop a reference; the last one removes the lock from the list. */
static void host_vm_unref(gv_host *h, struct vmlock *l)
{
	pthread_mutex_lock(&h->mu);
	if (--l->refs == 0) {
		for (struct vmlock **pp = &h->locks; *pp; pp = &(*pp)->next)
			if (*pp == l) {
				*pp = l->next;
				break;
			}
		pthread_mutex_destroy(&l->mu);
		free(l);
	}
	pthread_mutex_unlock(&h->mu);
}

struct vmlock *host_vm_lock(gv_host *h, const char *name)
{
	struct vmlock *l = host_vm_lock_ref(h, name);

	pthread_mutex_lock(&l->mu);
	return l;
}

/* Find or make the lock of @name and take a reference (not the lock). */
static struct vmlock *host_vm_lock_ref(gv_host *h, const char *name)
{
	struct vmlock *l;

	pthread_mutex_lock(&h->mu);
	for (l = h->locks; l; l = l->next)
		if (!strcmp(l->name, name))
			break;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l)
			abort();
		snprintf(l->name, sizeof(l->name), "%s", name);
		pthread_mutex_init(&l->mu, NULL);
		l->next = h->locks;
		h->locks = l;
	}
	l->refs++;
	pthread_mutex_unlock(&h->mu);
	return l;
}

struct vmlock *host_vm_trylock(gv_host *h, const char *name)
{
	struct vmlock *l = host_vm_lock_ref(h, name);

	if (pthread_mutex_trylock(&l->mu) == 0)
		return l;
	host_vm_unref(h, l);
	return NULL;
}

void host_vm_unlock(gv_host *h, struct vmlock *l)
{
	pthread_mutex_unlock(&l->mu);
	host_vm_unref(h, l);
}

int host_hostidx(gv_host *h, gv_hostidx **out, gv_err *e)
{
	char *dir;
	int r = 0;

	if (!h->hostidx) {
		dir = gv_strdupf("%s/hostidx", h->datadir);
		r = gv_hostidx_open(dir, &h->hostidx);
		if (r < 0)
			gv_err_set(e, r, "cannot open the host block index in %s: %s", dir,
				   strerror(-r));
		free(dir);
	}
	*out = h->hostidx;
	return r;
}

int host_hostidx_add(gv_host *h, const char *name, const char *path, const char *idx,
		     const gv_blockidx *bi, gv_err *e)
{
	gv_hostidx *hi;
	int r;

	pthread_mutex_lock(&h->idx_mu);
	r = host_hostidx(h, &hi, e);
	if (r == 0 && (r = gv_hostidx_add(hi, name, path, idx, bi, NULL)) < 0)
		gv_err_set(e, r, "cannot add %s to the host block index: %s", name,
			   strerror(-r));
	pthread_mutex_unlock(&h->idx_mu);
	return r;
}

void host_hostidx_drop(gv_host *h, const char *name, const char *idx)
{
	gv_hostidx *hi;

	pthread_mutex_lock(&h->idx_mu);
	if (host_hostidx(h, &hi, NULL) == 0) {
		int r = gv_hostidx_remove(hi, name); /* -ENOENT: never added */
		(void)r;
	}
	pthread_mutex_unlock(&h->idx_mu);
	unlink(idx);
}

json_t *gv_vm_owner(gv_host *h, const char *name)
{
	gv_vmrec *r = NULL;
	json_t *o = NULL;

	if (gv_store_vm_get(h->store, name, &r) == 0)
		o = r->def->owner ? json_incref(r->def->owner)
				  : json_pack("{s:i, s:s}", "uid", 0, "name", "root");
	gv_vmrec_free(r);
	return o;
}

int host_get(gv_host *h, const char *name, gv_vmrec **out, gv_err *e)
{
	int r = gv_store_vm_get(h->store, name, out);

	if (r == -ENOENT)
		return gv_err_set(e, r, "no such VM: %s", name);
	if (r < 0)
		return gv_err_set(e, r, "cannot read the record of VM %s", name);
	return 0;
}

int host_put(gv_host *h, gv_vmrec *r, gv_err *e)
{
	int q = gv_store_vm_update(h->store, r);

	if (q < 0)
		return gv_err_set(e, q, "cannot update the record of VM %s",
				  r->def->name);
	return 0;
}

bool host_qemu_alive(int pid, const gv_vmpaths *p)
{
	char path[64], *cmd = NULL;
	size_t len;
	bool ok = false;

	if (!gv_pid_alive(pid))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	if (gv_read_file(path, &cmd, &len) < 0)
		return false;
	for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
		if (strstr(cmd + i, p->console)) /* its own console log */
			ok = true;
	free(cmd);
	return ok;
}

int host_qmp(const gv_vmpaths *p, gv_qmp **q, gv_err *e)
{
	int r = gv_qmp_connect(p->qmp, 5000, q);

	if (r < 0)
		return gv_err_set(e, r, "cannot talk to QEMU's monitor %s: %s",
				  p->qmp, strerror(-r));
	return 0;
}

int host_qmp_cmd(const gv_vmpaths *p, const char *cmd, json_t *args,
		 int timeout_ms, json_t **ret, gv_err *e)
{
	gv_qmp *q;
	gv_err qe;
	int r = host_qmp(p, &q, e);

	if (r < 0)
		return r;
	r = gv_qmp_execute(q, cmd, args, timeout_ms, ret, &qe);
	if (r < 0)
		gv_err_set(e, r, "QEMU refused %s: %s", cmd, qe.msg);
	gv_qmp_free(q);
	return r;
}

static char *qemu_log_tail(const gv_vmpaths *p)
{
	char *log = NULL, line[300];

	if (gv_read_file(p->qemulog, &log, NULL) < 0 || !*log) {
		free(log);
		return NULL;
	}
	gv_last_line(log, line, sizeof(line));
	free(log);
	return strdup(line);
}

bool host_refresh(gv_host *h, gv_vmrec *r)
{
	gv_vmpaths p;
	int code;

	if (r->state != GV_VM_RUNNING && r->state != GV_VM_PAUSED)
		return false;
	gv_vmpaths_init(&p, h->datadir, r->def->name);
	if (host_qemu_alive(r->pid, &p)) {
		gv_vmpaths_clear(&p);
		return false;
	}
	free(r->error);
	r->error = NULL;
	if (gv_jobout_exit_code(p.jobout, &code) == 0) {
		r->state = GV_VM_STOPPED;
		r->exit_code = code;
		host_job_ended(h, r);
	} else if (r->def->boot_disk) {
		/* a guest of its own: powering off is how it ends */
		r->state = GV_VM_STOPPED;
		r->exit_code = -1;
	} else {
		char *tail = qemu_log_tail(&p);
		r->state = GV_VM_FAILED;
		r->exit_code = -1;
		r->error = gv_strdupf("the VM ended without reporting the job's "
				      "exit status%s%s",
				      tail ? "; QEMU said: " : "",
				      tail ? tail : "");
		free(tail);
	}
	r->pid = 0;
	unlink(p.qmp);
	gv_cgroup_remove(r->def->name);
	if (gv_store_vm_update(h->store, r) < 0)
		fprintf(stderr, "gridvm: cannot store the state of %s\n", r->def->name);
	gv_vmpaths_clear(&p);
	pthread_mutex_lock(&h->obs_mu); /* its record says so now: tell */
	if (h->on_vm_end)
		h->on_vm_end(h->on_vm_end_ud, r->def->name);
	pthread_mutex_unlock(&h->obs_mu);
	return true;
}

void gv_host_on_vm_end(gv_host *h, void (*fn)(void *ud, const char *name), void *ud)
{
	pthread_mutex_lock(&h->obs_mu);
	h->on_vm_end = fn;
	h->on_vm_end_ud = ud;
	pthread_mutex_unlock(&h->obs_mu);
}

/* ---- the modules above the host context -------------------------- */

int host_module_add(gv_host *h, const host_module *def)
{
	if (h->nmods == HOST_MODS_MAX)
		return -ENOSPC;
	h->mods[h->nmods].def = def;
	h->mods[h->nmods].h = h;
	h->nmods++;
	return 0;
}

void host_job_ended(gv_host *h, const gv_vmrec *r)
{
	for (int i = 0; i < h->nmods; i++)
		if (h->mods[i].def->job_ended)
			h->mods[i].def->job_ended(h, r);
}

bool host_may_run(gv_host *h, const char *name, gv_err *e)
{
	for (int i = 0; i < h->nmods; i++)
		if (h->mods[i].def->may_run && !h->mods[i].def->may_run(h, name, e))
			return false;
	return true;
}

char *host_incoming_from(gv_host *h, const char *name)
{
	for (int i = 0; i < h->nmods; i++)
		if (h->mods[i].def->incoming_from)
			return h->mods[i].def->incoming_from(h, name);
	return NULL;
}

bool host_incoming_keep(gv_host *h, const char *name)
{
	for (int i = 0; i < h->nmods; i++)
		if (h->mods[i].def->incoming_keep)
			return h->mods[i].def->incoming_keep(h, name);
	return false;
}

static void *host_mod_thread(void *arg)
{
	struct host_mod *m = arg;

	m->def->tick(m->h);
	atomic_store(&m->busy, false);
	return NULL;
}

void host_modules_tick(gv_host *h, unsigned tick)
{
	for (int i = 0; i < h->nmods; i++) {
		struct host_mod *m = &h->mods[i];
		if (!m->def->tick || tick % (m->def->tick_every ? m->def->tick_every : 1))
			continue;
		if (!m->def->tick_thread) {
			m->def->tick(h);
			continue;
		}
		/* one pass at a time, on a thread of its own */
		if (atomic_load(&m->busy))
			continue;
		if (m->started)
			pthread_join(m->th, NULL);
		atomic_store(&m->busy, true);
		m->started = pthread_create(&m->th, NULL, host_mod_thread, m) == 0;
		if (!m->started)
			atomic_store(&m->busy, false);
	}
}

static json_t *qemu_version(void)
{
	char *argv[] = { "qemu-system-x86_64", "--version", NULL }, *out = NULL;
	json_t *j;

	if (gv_run(argv, &out) != 0) {
		free(out);
		return json_null();
	}
	out[strcspn(out, "\n")] = '\0';
	j = json_string(out);
	free(out);
	return j;
}

/* How QEMU runs here (confine.h): one line for a person, and whether it
 * is confined. */
static char *qemu_user_line(bool *confined)
{
	gv_qemu_users u;
	gv_err e = { "" };

	*confined = false;
	if (gv_qemu_users_load(&u, &e) < 0)
		return gv_strdupf("none: %s", e.msg);
	if (!u.confined)
		return strdup(u.why);
	*confined = true;
	return gv_strdupf("%s (uid %u) builds templates; each VM's QEMU runs as its own uid "
			  "and gid of %u-%u, in a mount namespace, under seccomp", u.name,
			  (unsigned)u.uid, (unsigned)u.first_uid,
			  (unsigned)(u.first_uid + u.count - 1));
}

json_t *gv_host_info(gv_host *h)
{
	bool confined;
	char *quser = qemu_user_line(&confined);
	char *kernel = gv_strdupf("%s/guest/vmlinuz", h->datadir);
	char *kver = gv_strdupf("%s/guest/kernel-version", h->datadir), *kv = NULL;
	const char *cg = gv_cgroup_version();
	json_t *j;

	if (gv_read_file(kver, &kv, NULL) == 0)
		kv[strcspn(kv, "\n")] = '\0';
	j = json_pack("{s:s, s:s, s:s, s:o, s:i, s:I}",
		      "datadir", h->datadir, "accel", h->accel.name,
		      "accel_reason", h->accel.reason, "qemu", qemu_version(),
		      "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN),
		      "memory_mib", (json_int_t)((uint64_t)sysconf(_SC_PHYS_PAGES) *
						 (uint64_t)sysconf(_SC_PAGESIZE) >> 20));
	json_object_set_new(j, "cgroup", cg ? json_string(cg) : json_null());
	json_object_set_new(j, "guest_kernel",
			    access(kernel, R_OK) == 0 ? json_string(kernel) : json_null());
	json_object_set_new(j, "guest_kernel_version", kv ? json_string(kv) : json_null());
	json_object_set_new(j, "qemu_confined", json_boolean(confined));
	json_object_set_new(j, "qemu_user", json_string(quser));
	free(quser);
	free(kernel);
	free(kver);
	free(kv);
	return j;
}

char *host_backing_path(const char *image_path)
{
	const char *base = strrchr(image_path, '/');

	return gv_strdupf("../../images/%s", base ? base + 1 : image_path);
}

bool host_backing_is(const char *qcow2, const char *want)
{
	uint8_t h[20];
	char name[1024];
	int fd = open(qcow2, O_RDONLY | O_CLOEXEC);
	bool same = false;

	if (fd < 0)
		return false;
	if (pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) && !memcmp(h, "QFI\xfb", 4)) {
		uint64_t off = 0;
		uint32_t len = (uint32_t)h[16] << 24 | (uint32_t)h[17] << 16 |
			       (uint32_t)h[18] << 8 | h[19];
		for (int i = 8; i < 16; i++)
			off = off << 8 | h[i];
		same = len == strlen(want) && len < sizeof(name) &&
		       pread(fd, name, len, (off_t)off) == (ssize_t)len && !memcmp(name, want, len);
	}
	close(fd);
	return same;
}
