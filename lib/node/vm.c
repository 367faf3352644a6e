/* SPDX-License-Identifier: MIT */
/* vm.c - VM lifecycle verbs: create, start, pause, resume, stop, delete. */
#include "vm_internal.h"

#include <gridvm/vmm/cgroup.h>
#include <gridvm/node/image.h>
#include <gridvm/vmm/jobio.h>
#include <gridvm/vmm/jobout.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t host_mem_mib(void)
{
	return (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20;
}

static int create_files(gv_host *h, const gv_vmdef *d, const gv_vmpaths *p,
			gv_err *e)
{
	char *img = NULL, *out = NULL, line[300];
	const char *fmt;
	size_t speclen;
	char *spec;
	int r = gv_mkdir_p(p->dir, 0755);

	if (r < 0)
		return gv_err_set(e, r, "cannot create %s: %s", p->dir, strerror(-r));
	spec = gv_vmdef_jobspec(d, &speclen);
	r = gv_write_file_atomic(p->jobspec, spec, speclen);
	free(spec);
	if (r < 0)
		return gv_err_set(e, r, "cannot write %s: %s", p->jobspec, strerror(-r));
	/* the inputs as they are now: every boot of this VM gets these */
	if (d->inputs && (r = gv_jobio_pack_inputs(d->inputs, p->input, e)) < 0)
		return r;
	if (d->input_tar && (r = gv_jobio_use_input_tar(d->input_tar, p->input, e)) < 0)
		return r;
	if (!d->image)
		return 0;
	r = gv_image_resolve(h->datadir, d->image, &img, &fmt);
	if (r < 0)
		return gv_err_set(e, r, "no such image: %s (see 'gridvm image list')",
				  d->image);
	{
		char *rel = host_backing_path(img);
		char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F",
				 (char *)fmt, "-b", rel, p->disk, NULL };
		r = gv_run(argv, &out);
		free(rel);
	}
	if (r != 0)
		gv_err_set(e, r = -EIO, "cannot create the disk overlay: %s",
			   gv_last_line(out, line, sizeof(line)));
	free(out);
	free(img);
	return r;
}

/* The kernel and initramfs a VM boots must exist (not for firmware boot). */
int vm_check_boot_files(gv_host *h, const gv_vmdef *d, const gv_vmpaths *p, gv_err *e)
{
	if (d->boot_disk)
		return 0;
	if (d->kernel && access(d->kernel, R_OK) < 0)
		return gv_err_set(e, -ENOENT, "kernel %s: %s", d->kernel, strerror(errno));
	if (d->initrd && access(d->initrd, R_OK) < 0)
		return gv_err_set(e, -ENOENT, "initrd %s: %s", d->initrd, strerror(errno));
	if ((!d->kernel && access(p->kernel, R_OK) < 0) ||
	    (!d->initrd && access(p->initrd, R_OK) < 0))
		return gv_err_set(e, -ENOENT, "guest kernel or initramfs missing in "
				  "%s/guest (run scripts/setup.sh to prepare the guest)",
				  h->datadir);
	return 0;
}

int gv_vm_create(gv_host *h, gv_vmdef *d, gv_err *e)
{
	gv_vmrec rec = { .def = d, .state = GV_VM_DEFINED, .exit_code = -1 };
	gv_vmpaths p;
	struct vmlock *l;
	gv_vmrec *old = NULL;
	int r;

	if (d->memory_mib > host_mem_mib()) {
		r = gv_err_set(e, -EINVAL, "memory %llu MiB is more than this host "
			       "has (%llu MiB)", (unsigned long long)d->memory_mib,
			       (unsigned long long)host_mem_mib());
		gv_vmdef_free(d);
		return r;
	}
	gv_vmpaths_init(&p, h->datadir, d->name);
	l = host_vm_lock(h, d->name);
	if (gv_store_vm_get(h->store, d->name, &old) == 0) {
		gv_vmrec_free(old);
		r = gv_err_set(e, -EEXIST, "a VM named %s exists already", d->name);
		goto out;
	}
	r = vm_check_boot_files(h, d, &p, e);
	if (r < 0)
		goto out;
	gv_rm_rf(p.dir); /* leftovers of a crashed create */
	r = create_files(h, d, &p, e);
	if (r == 0) {
		rec.created = gv_now_s();
		r = gv_store_vm_insert(h->store, &rec);
		if (r < 0)
			gv_err_set(e, r, "cannot record VM %s", d->name);
	}
	if (r < 0)
		gv_rm_rf(p.dir);
out:
	host_vm_unlock(h, l);
	gv_vmpaths_clear(&p);
	gv_vmdef_free(d);
	return r;
}

/* host_with_vm, the VM's lock held by the caller */
static int with_vm_locked(gv_host *h, const char *name, host_verb_fn fn, const void *arg,
			  gv_err *e)
{
	gv_vmrec *r = NULL;
	gv_vmpaths p;
	int rc = host_get(h, name, &r, e);

	if (rc == 0) {
		host_refresh(h, r);
		gv_vmpaths_init(&p, h->datadir, name);
		rc = fn(h, r, &p, arg, e);
		gv_vmpaths_clear(&p);
	}
	gv_vmrec_free(r);
	return rc;
}

int host_with_vm(gv_host *h, const char *name, host_verb_fn fn, const void *arg,
		 gv_err *e)
{
	struct vmlock *l = host_vm_lock(h, name);
	int rc = with_vm_locked(h, name, fn, arg, e);

	host_vm_unlock(h, l);
	return rc;
}

int host_bad_state(gv_vmrec *r, const char *verb, gv_err *e)
{
	return gv_err_set(e, -EBUSY, "cannot %s VM %s: it is %s", verb,
			  r->def->name, gv_vmstate_name(r->state));
}

static int do_start(gv_host *h, gv_vmrec *r, const gv_vmpaths *p,
		    const void *arg, gv_err *e)
{
	int rc;

	if (r->state == GV_VM_SAVED)
		return gv_err_set(e, -EBUSY, "VM %s is saved; use 'gridvm vm restore %s'",
				  r->def->name, r->def->name);
	if (r->state == GV_VM_RUNNING || r->state == GV_VM_PAUSED)
		return host_bad_state(r, "start", e);
	if (!host_may_run(h, r->def->name, e))
		return -EBUSY;
	/* a fresh run: the job's output and exit status start anew */
	unlink(p->jobout);
	unlink(p->console);
	rc = vm_start_template(h, r, p, e); /* 1: boot it cold */
	if (rc < 0)
		return rc;
	if (rc == 1 && (rc = vm_spawn_qemu(h, r, p, false, e)) == 0)
		rc = host_qmp_cmd(p, "cont", NULL, 5000, NULL, e);
	if (rc < 0) {
		vm_kill_qemu(r, p);
		return rc;
	}
	r->state = GV_VM_RUNNING;
	r->exit_code = -1;
	r->started = gv_now_s();
	free(r->error);
	r->error = NULL;
	rc = host_put(h, r, e);
	if (rc < 0)
		vm_kill_qemu(r, p);
	return rc;
}

int gv_vm_start(gv_host *h, const char *name, gv_err *e)
{
	return host_with_vm(h, name, do_start, NULL, e);
}

static int do_pause(gv_host *h, gv_vmrec *r, const gv_vmpaths *p,
		    const void *arg, gv_err *e)
{
	bool pause = arg != NULL;
	gv_vmstate from = pause ? GV_VM_RUNNING : GV_VM_PAUSED;
	int rc;

	if (r->state != from)
		return host_bad_state(r, pause ? "pause" : "resume", e);
	if (!pause && !host_may_run(h, r->def->name, e))
		return -EBUSY;
	rc = host_qmp_cmd(p, pause ? "stop" : "cont", NULL, 5000, NULL, e);
	if (rc < 0)
		return rc;
	r->state = pause ? GV_VM_PAUSED : GV_VM_RUNNING;
	return host_put(h, r, e);
}

int gv_vm_pause(gv_host *h, const char *name, gv_err *e)
{
	return host_with_vm(h, name, do_pause, "pause", e);
}

int gv_vm_resume(gv_host *h, const char *name, gv_err *e)
{
	return host_with_vm(h, name, do_pause, NULL, e);
}

static int do_stop(gv_host *h, gv_vmrec *r, const gv_vmpaths *p,
		   const void *arg, gv_err *e)
{
	uint64_t timeout = *(const uint64_t *)arg;
	int code;

	if (r->state == GV_VM_SAVED) { /* forget the saved state, keep the disk */
		r->state = GV_VM_STOPPED;
		free(r->state_file);
		r->state_file = NULL;
		return host_put(h, r, e);
	}
	if (r->state != GV_VM_RUNNING && r->state != GV_VM_PAUSED)
		return host_bad_state(r, "stop", e);
	if (timeout > 0) {
		if (r->state == GV_VM_PAUSED)
			(void)host_qmp_cmd(p, "cont", NULL, 2000, NULL, NULL);
		(void)host_qmp_cmd(p, "system_powerdown", NULL, 2000, NULL, NULL);
		vm_wait_gone(r->pid, p, timeout);
	} else {
		(void)host_qmp_cmd(p, "quit", NULL, 2000, NULL, NULL);
		vm_wait_gone(r->pid, p, 3000);
	}
	unlink(p->qmp);
	unlink(p->blkmon);
	unlink(p->fence);
	gv_cgroup_remove(r->def->name);
	r->pid = 0;
	r->state = GV_VM_STOPPED;
	r->exit_code = gv_jobout_exit_code(p->jobout, &code) == 0 ? code : -1;
	return host_put(h, r, e);
}

int gv_vm_stop(gv_host *h, const char *name, uint64_t timeout_ms, gv_err *e)
{
	return host_with_vm(h, name, do_stop, &timeout_ms, e);
}

int vm_delete_locked(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *arg,
		     gv_err *e)
{
	bool force = arg != NULL;
	int rc;

	if ((r->state == GV_VM_RUNNING || r->state == GV_VM_PAUSED) && !force)
		return gv_err_set(e, -EBUSY, "VM %s is %s; stop it first (or use "
				  "--force)", r->def->name, gv_vmstate_name(r->state));
	vm_kill_qemu(r, p);
	rc = gv_store_vm_delete(h->store, r->def->name);
	if (rc < 0 && rc != -ENOENT)
		return gv_err_set(e, rc, "cannot delete the record of %s", r->def->name);
	gv_rm_rf(p->dir);
	return 0;
}

int gv_vm_delete(gv_host *h, const char *name, bool force, gv_err *e)
{
	return host_with_vm(h, name, vm_delete_locked, force ? "force" : NULL, e);
}

/* How the job's outputs fared, once its guest collected them:
 * "outputs_collected", and the paths that were not there
 * ("outputs_missing") or could not be packed ("outputs_failed"). */
static void show_outputs(json_t *j, const gv_vmpaths *p)
{
	json_t *m = NULL, *o, *missing = json_array(), *failed = json_array();
	bool done;
	size_t i;

	if (gv_jobio_output_manifest(p->output, &m, NULL) < 0)
		m = NULL;
	done = json_is_true(json_object_get(m, "collected"));
	json_array_foreach(json_object_get(m, "outputs"), i, o) {
		const char *st = json_string_value(json_object_get(o, "status"));
		if (strcmp(st, "ok"))
			json_array_append(strcmp(st, "missing") ? failed : missing,
					  json_object_get(o, "path"));
	}
	json_object_set_new(j, "outputs_collected", json_boolean(done));
	json_object_set_new(j, "outputs_missing", done ? missing : json_null());
	json_object_set_new(j, "outputs_failed", done ? failed : json_null());
	if (!done) {
		json_decref(missing);
		json_decref(failed);
	}
	json_decref(m);
}

static int do_show(gv_host *h, gv_vmrec *r, const gv_vmpaths *p,
		   const void *arg, gv_err *e)
{
	json_t **out = (json_t **)arg, *j = gv_vmrec_to_json(r), *cg;
	struct stat st;

	json_object_set_new(j, "dir", json_string(p->dir));
	if (stat(p->disk, &st) == 0)
		json_object_set_new(j, "disk_overlay_bytes",
				    json_integer((json_int_t)st.st_blocks * 512));
	cg = r->pid > 0 ? gv_cgroup_show(r->def->name) : NULL;
	json_object_set_new(j, "cgroup", cg ? cg : json_null());
	if (r->def->outputs)
		show_outputs(j, p);
	*out = j;
	return 0;
}

int gv_vm_show(gv_host *h, const char *name, json_t **out, gv_err *e)
{
	return host_with_vm(h, name, do_show, out, e);
}

struct output_req {
	json_t **manifest;
	uint64_t offset;
	size_t max;
	char **data;
	size_t *len;
};

/* The output disk's manifest; with @data, also up to @max bytes of its
 * tar from @offset (0 bytes at its end). */
static int do_output(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *arg,
		     gv_err *e)
{
	const struct output_req *q = arg;
	json_t *m = NULL;
	uint64_t tar;
	int fd, rc;

	if (!r->def->outputs)
		return gv_err_set(e, -ENOENT, "VM %s has no outputs (--output)", r->def->name);
	rc = gv_jobio_output_manifest(p->output, &m, e);
	if (rc < 0 || !q->data) {
		*q->manifest = m;
		return rc;
	}
	tar = (uint64_t)json_integer_value(json_object_get(m, "tar_bytes"));
	json_decref(m);
	if (!tar)
		return gv_err_set(e, -EBUSY, "VM %s has no outputs yet: its job has not ended, "
				  "or its VM did not end it", r->def->name);
	*q->len = q->offset < tar ? (size_t)(tar - q->offset < q->max ? tar - q->offset
								  : q->max) : 0;
	*q->data = malloc(*q->len + 1);
	if (!*q->data)
		abort();
	fd = open(p->output, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, *q->data, *q->len, (off_t)q->offset) != (ssize_t)*q->len) {
		rc = gv_err_set(e, -EIO, "cannot read %s: %s", p->output, strerror(errno));
		free(*q->data);
		*q->data = NULL;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

int gv_vm_output(gv_host *h, const char *name, json_t **manifest, gv_err *e)
{
	struct output_req q = { .manifest = manifest };

	return host_with_vm(h, name, do_output, &q, e);
}

int gv_vm_output_read(gv_host *h, const char *name, uint64_t offset, size_t max,
		      char **data, size_t *len, gv_err *e)
{
	struct output_req q = { .offset = offset, .max = max, .data = data, .len = len };

	return host_with_vm(h, name, do_output, &q, e);
}

json_t *gv_vm_list(gv_host *h)
{
	json_t *a = json_array();
	char **names = NULL;

	if (gv_store_vm_names(h->store, &names) < 0)
		return a;
	for (char **n = names; *n; n++) {
		json_t *j = NULL;
		if (gv_vm_show(h, *n, &j, NULL) == 0)
			json_array_append_new(a, j);
	}
	gv_strv_free(names);
	return a;
}

json_t *gv_vm_list_nowait(gv_host *h)
{
	json_t *a = json_array();
	char **names = NULL;

	if (gv_store_vm_names(h->store, &names) < 0)
		return a;
	for (char **n = names; *n; n++) {
		struct vmlock *l = host_vm_trylock(h, *n);
		gv_vmrec *r = NULL;
		json_t *j = NULL;
		if (l) {
			if (with_vm_locked(h, *n, do_show, &j, NULL) < 0)
				j = NULL;
			host_vm_unlock(h, l);
		} else if (gv_store_vm_get(h->store, *n, &r) == 0) {
			j = gv_vmrec_to_json(r); /* busy: as last stored */
			json_object_set_new(j, "busy", json_true());
		}
		gv_vmrec_free(r);
		if (j)
			json_array_append_new(a, j);
	}
	gv_strv_free(names);
	return a;
}

bool gv_vm_exists(gv_host *h, const char *name)
{
	gv_vmrec *r = NULL;
	bool yes = gv_store_vm_get(h->store, name, &r) == 0;

	gv_vmrec_free(r);
	return yes;
}

json_t *gv_vm_records(gv_host *h)
{
	json_t *a = json_array();
	char **names = NULL;

	if (gv_store_vm_names(h->store, &names) < 0)
		return a;
	for (char **n = names; *n; n++) {
		gv_vmrec *r = NULL;
		if (gv_store_vm_get(h->store, *n, &r) == 0)
			json_array_append_new(a, gv_vmrec_to_json(r));
		gv_vmrec_free(r);
	}
	gv_strv_free(names);
	return a;
}
