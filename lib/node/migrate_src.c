/* SPDX-License-Identifier: MIT */
/*
 * migrate_src.c - the source's side of a migration (migrate.h): cold,
 * from a checkpoint, or live. The source holds the VM's lock from start
 * to end, records each phase in VMDIR/migration.json (never going back)
 * and drives the destination with control requests (migrate_dst.c).
 */
#include "migrate_internal.h"
#include <gridvm/base/fault.h>

#include <gridvm/node/image.h>
#include <gridvm/vmm/jobio.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The memory stream's form, the same on both QEMUs: @compress "zstd"
 * (multifd channels with zstd, for links slower than the guest's memory
 * changes) or "none" (one plain channel). */
int mig_any_stream_setup(gv_qmp *q, const char *compress, gv_err *e)
{
	bool z = compress && !strcmp(compress, "zstd");
	json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "multifd",
				 "state", z);
	json_t *par = json_pack("{s:i, s:s, s:i}", "multifd-channels", 2, "multifd-compression",
				z ? "zstd" : "none", "multifd-zstd-level", 1);
	int r = host_qmp_run(q, "migrate-set-capabilities", caps, e);

	if (r == 0 && z)
		r = host_qmp_run(q, "migrate-set-parameters", par, e);
	json_decref(caps);
	json_decref(par);
	return r;
}

/* The incoming QEMU listens on this host's transfer address, port 0:
 * QEMU picks a free port, query-migrate tells which. */



/* Phases, in the order they happen; a migration never goes back. */
static const char *const phases[] = { "prepare", "suspend", "transfer", "memory",
				      "disk-final", "switch", "confirm", "cleanup",
				      "done", "aborted" };

int mig_phase_index(const char *name)
{
	for (int i = 0; i < (int)(sizeof(phases) / sizeof(phases[0])); i++)
		if (name && !strcmp(name, phases[i]))
			return i;
	return -1;
}

/* Fault point "migrate.src.PHASE", reached once a migration has recorded
 * PHASE on the source (docs/fault-injection.md): a test holds it there to
 * kill an agent or cut a link at a known point. */
static void hold(struct mig *m, const char *name)
{
	char point[64];

	if (m->held)
		return;
	snprintf(point, sizeof(point), "migrate.src.%s", name);
	if (!gv_fault_armed(point))
		return;
	m->held = true;
	fprintf(stderr, "gridvmd: migration of %s reached %s\n", m->r->def->name, point);
	if (gv_fault(point, NULL) < 0)
		fprintf(stderr, "gridvmd: %s: a failure here is not supported, ignored\n", point);
}

/* Persist the phase to VMDIR/migration.json (gridvm migrate status reads
 * it; a restarted agent finds unfinished migrations by it). */
void mig_src_phase(struct mig *m, const char *name, json_t *info)
{
	char *path = gv_strdupf("%s/migration.json", m->p->dir), *text, *old = NULL;
	json_t *j, *prev = NULL;

	if (gv_read_file(path, &old, NULL) == 0)
		prev = json_loads(old, 0, NULL);
	/* the guard: a phase is only ever replaced by a later one */
	if (mig_phase_index(name) >= mig_phase_index(json_string_value(json_object_get(prev, "phase"))) ||
	    !prev) {
		j = json_pack("{s:s, s:s, s:s, s:I, s:f, s:O?}", "vm", m->r->def->name, "mode",
			      m->mode, "to", m->to, "started", (json_int_t)(m->t0 / 1000),
			      "seconds", (double)(gv_now_ms() - m->t0) / 1000.0, "info", info);
		json_object_set_new(j, "phase", json_string(name));
		json_object_set_new(j, "was_running", json_boolean(m->was_running));
		json_object_set_new(j, "keep_checkpoints", json_boolean(m->keep_ckpts));
		text = json_dumps(j, JSON_COMPACT);
		if (gv_write_file_atomic(path, text, strlen(text)) < 0)
			fprintf(stderr, "gridvmd: cannot record the migration phase\n");
		free(text);
		json_decref(j);
	}
	if (m->progress)
		m->progress(m->ud, name, info);
	json_decref(prev);
	json_decref(info);
	free(old);
	free(path);
	hold(m, name);
}

/* `gridvm migrate cancel`: the source checks this between steps. */
static pthread_mutex_t cancel_mu = PTHREAD_MUTEX_INITIALIZER;
static char cancel_vm[64];

static bool cancelled(struct mig *m)
{
	bool c;

	pthread_mutex_lock(&cancel_mu);
	c = !strcmp(cancel_vm, m->r->def->name);
	if (c)
		cancel_vm[0] = '\0';
	pthread_mutex_unlock(&cancel_mu);
	return c;
}

int gv_migrate_cancel(gv_host *h, const char *name, gv_err *e)
{
	char *path;
	json_t *j;
	int r = 0;

	if (!gv_name_valid(name))
		return gv_err_set(e, -ENOENT, "no such VM: %s", name);
	path = gv_strdupf("%s/vms/%s/migration.json", h->datadir, name);
	j = json_load_file(path, 0, NULL);
	free(path);
	if (!j || mig_phase_index(json_string_value(json_object_get(j, "phase"))) >= mig_phase_index("switch"))
		r = gv_err_set(e, -EBUSY, "no migration of %s that can still be cancelled", name);
	json_decref(j);
	if (r == 0) {
		pthread_mutex_lock(&cancel_mu);
		snprintf(cancel_vm, sizeof(cancel_vm), "%s", name);
		pthread_mutex_unlock(&cancel_mu);
	}
	return r;
}

json_t *gv_migrate_status(gv_host *h)
{
	json_t *a = json_array();
	char **names = NULL;

	if (gv_store_vm_names(h->store, &names) < 0)
		return a;
	for (char **n = names; *n; n++) {
		char *path = gv_strdupf("%s/vms/%s/migration.json", h->datadir, *n);
		json_t *j = json_load_file(path, 0, NULL);
		char *from = j ? NULL : mig_dst_incoming_from(h, *n);
		if (from) {
			char *note = gv_strdupf("from %s, unconfirmed: the source settles it", from);
			j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f, s:{s:s}}", "vm", *n, "mode",
				      "incoming", "from", from, "to", "(here)", "phase",
				      mig_dst_incoming_keep(h, *n) ? "arrived" : "arriving", "seconds",
				      0.0, "info", "note", note);
			free(note);
		}
		if (j)
			json_array_append_new(a, j);
		free(from);
		free(path);
	}
	gv_strv_free(names);
	return a;
}

/* One control request; a refusal becomes an error with its reason. */
static int mig_src_ask(struct mig *m, json_t *req, int timeout_ms, json_t **rep)
{
	gv_err ce;
	json_t *out = NULL;
	int r;

	/* a grid job's move: every request names the VM and the binding */
	if (m->epoch > 0 && json_is_object(req)) {
		if (!json_object_get(req, "name"))
			json_object_set_new(req, "name", json_string(m->r->def->name));
		json_object_set_new(req, "epoch", json_integer(m->epoch));
	}
	r = gv_xfer_control(m->host, m->port, m->key, req, timeout_ms, &out, &ce);

	json_decref(req);
	if (r < 0)
		return gv_err_set(m->e, r, "the destination %s:%d: %s", m->host, m->port, ce.msg);
	if (!json_is_true(json_object_get(out, "ok"))) {
		r = gv_err_set(m->e, -EREMOTEIO, "the destination refused: %s",
			       json_string_value(json_object_get(out, "error")) ?: "no reason");
		json_decref(out);
		return r;
	}
	if (rep)
		*rep = out;
	else
		json_decref(out);
	return 0;
}

/* A request about the VM by name, {"op": @op, "name": VM}; its error
 * goes to @e, or nowhere if @e is NULL. */
int mig_src_op(struct mig *m, const char *op, int timeout_ms, json_t **rep, gv_err *e)
{
	gv_err ignore, *keep = m->e;
	int r;

	m->e = e ? e : &ignore;
	r = mig_src_ask(m, json_pack("{s:s, s:s}", "op", op, "name", m->r->def->name), timeout_ms,
			rep);
	m->e = keep;
	return r;
}

static json_t *vm_req(struct mig *m, const char *op)
{
	return json_pack("{s:s, s:o, s:s}", "op", op, "vm", gv_vmdef_to_json(m->r->def),
			 "from", m->h->xfer_addr);
}

static int push_ask(void *ud, json_t *req, json_t **rep, gv_err *e)
{
	struct mig c = *(struct mig *)ud;

	c.e = e;
	return mig_src_ask(&c, req, 10 * 60 * 1000, rep);
}

/* The VM runs there now: its checkpoints go there too (deduplicated by
 * chunk), then leave this host. If that fails they stay here. */
void mig_src_push_checkpoints(struct mig *m)
{
	gv_err e = { "" };
	uint64_t bytes = 0;
	int n = m->keep_ckpts ? 0
			      : host_checkpoint_push(m->h, m->r->def->name, push_ask, m, &bytes, &e);

	if (n > 0) {
		host_checkpoint_drop_all(m->h, m->r->def->name);
		fprintf(stderr, "gridvmd: %d checkpoints of %s moved to %s (%llu bytes of chunks "
			"it lacked)\n", n, m->r->def->name, m->to, (unsigned long long)bytes);
	} else if (n < 0) {
		fprintf(stderr, "gridvmd: the checkpoints of %s stay here: %s\n", m->r->def->name,
			e.msg);
	}
}

/* A guest that has begun to write its job's outputs (its job ended; it
 * powers off once they are synced) stays: the output disk is not
 * carried, the destination's starts empty. The guest must be stopped. */
static int mig_src_outputs_quiet(struct mig *m)
{
	if (m->r->def->outputs && gv_jobio_output_written(m->p->output))
		return gv_err_set(m->e, -EBUSY, "the job of %s has ended and its guest is "
				  "writing its outputs; it is not moved", m->r->def->name);
	return 0;
}

static int mig_src_cold(struct mig *m, json_t **summary)
{
	char *state = gv_strdupf("%s/migrate.state", m->p->dir);
	gv_err local = { "" };
	int r;

	unlink(state);
	mig_src_phase(m, "suspend", NULL);
	r = vm_save_locked(m->h, m->r, m->p, state, m->e);
	if (r == 0 && mig_src_outputs_quiet(m) < 0) {
		r = -EBUSY;
		if (vm_restore_locked(m->h, m->r, m->p, state, &local) == 0) {
			size_t n = strlen(m->e->msg);
			snprintf(m->e->msg + n, sizeof(m->e->msg) - n, "; the VM runs here again");
		}
	} else if (r == 0) {
		mig_src_phase(m, "transfer", NULL);
		r = mig_src_ask(m, vm_req(m, "cold-in"), 60 * 60 * 1000, NULL);
		if (r < 0 && vm_restore_locked(m->h, m->r, m->p, state, &local) == 0) {
			size_t n = strlen(m->e->msg);
			snprintf(m->e->msg + n, sizeof(m->e->msg) - n, "; the VM runs here again");
		}
	}
	if (r < 0)
		mig_src_phase(m, "aborted", json_pack("{s:s}", "error", m->e->msg));
	if (r == 0) {
		mig_src_phase(m, "cleanup", NULL);
		mig_src_push_checkpoints(m);
		(void)vm_delete_locked(m->h, m->r, m->p, "force", &local);
		*summary = json_pack("{s:s, s:s, s:f}", "mode", "cold", "to", m->to,
				     "seconds", (double)(gv_now_ms() - m->t0) / 1000.0);
	}
	free(state);
	return r;
}

/* A checkpoint restored on the destination: export it as files, the
 * destination pulls them (deduplicated) and restores; only when it runs
 * there does this host's instance go. Until then the VM here is left
 * exactly as it was. */
static int mig_src_checkpoint(struct mig *m, json_t **summary)
{
	int r;

	mig_src_phase(m, "prepare", NULL);
	r = host_checkpoint_export(m->h, m->r, m->p, *m->ckpt ? m->ckpt : NULL, m->e);
	if (r == 0) {
		mig_src_phase(m, "transfer", NULL);
		r = mig_src_ask(m, vm_req(m, "checkpoint-in"), 60 * 60 * 1000, NULL);
	}
	host_checkpoint_unexport(m->p);
	if (r < 0) {
		size_t n = strlen(m->e->msg);
		snprintf(m->e->msg + n, sizeof(m->e->msg) - n, "; the VM here is unchanged");
		mig_src_phase(m, "aborted", json_pack("{s:s}", "error", m->e->msg));
		return r;
	}
	gv_err local;
	mig_src_phase(m, "cleanup", NULL);
	mig_src_push_checkpoints(m);
	(void)vm_delete_locked(m->h, m->r, m->p, "force", &local);
	*summary = json_pack("{s:s, s:s, s:s, s:f}", "mode", "checkpoint", "checkpoint",
			     *m->ckpt ? m->ckpt : "latest", "to", m->to, "seconds",
			     (double)(gv_now_ms() - m->t0) / 1000.0);
	return 0;
}

/* Poll until QEMU stops before switchover, reporting RAM progress. */
/* Polled every 10 ms: the guest is stopped from the moment QEMU enters
 * pre-switchover until we notice (an event would do as well; a 10 ms poll
 * of a local socket costs nothing). The record and the progress display
 * are updated twice a second. */
struct precopy {
	struct mig *m;
	uint64_t last_ping, last_progress;
};

static int precopy_tick(void *ud, json_t *st)
{
	struct precopy *pc = ud;
	struct mig *m = pc->m;

	if (cancelled(m))
		return gv_err_set(m->e, -ECANCELED, "migration cancelled");
	if (gv_now_ms() - pc->last_ping > 3000) { /* is the destination still there? */
		pc->last_ping = gv_now_ms();
		if (mig_src_op(m, "live-ping", 5000, NULL, m->e) < 0)
			return -EHOSTDOWN;
	}
	if (gv_now_ms() - pc->last_progress >= 500) {
		pc->last_progress = gv_now_ms();
		mig_src_phase(m, "memory", json_incref(json_object_get(st, "ram")));
	}
	return 0;
}

static int mig_src_precopy(struct mig *m, gv_qmp *q)
{
	static const char *const until[] = { "pre-switchover", NULL };
	struct precopy pc = { .m = m, .last_ping = gv_now_ms() };
	int r = vm_migration_wait(q, until, 60 * 60 * 1000, 10, precopy_tick, &pc, NULL, m->e);

	if (r == -ETIMEDOUT)
		gv_err_set(m->e, r, "memory migration did not converge");
	else if (r == -EIO)
		gv_err_wrap(m->e, r, "memory");
	return r;
}

/* Tell the destination to drop its half-made copy; false: it did not
 * answer (the agent tells it later, see mig_settle_all). */
bool mig_src_tell_abort(struct mig *m, int timeout_ms)
{
	return mig_src_op(m, "live-abort", timeout_ms, NULL, NULL) == 0;
}

/* Back out before the switch: the VM goes on here, the destination
 * forgets it (true: it said so). */
bool mig_src_back_out(struct mig *m, gv_qmp *q)
{
	json_t *st = NULL;

	(void)host_qmp_run(q, "migrate_cancel", NULL, NULL);
	for (int i = 0; i < 100; i++) {
		json_decref(st);
		st = NULL;
		if (gv_qmp_execute(q, "query-status", NULL, 2000, &st, NULL) < 0)
			break;
		const char *s = json_string_value(json_object_get(st, "status"));
		if (s && strcmp(s, "finish-migrate") && strcmp(s, "pre-switchover") &&
		    strcmp(s, "inmigrate"))
			break;
		usleep(50000);
	}
	if (!json_is_true(json_object_get(st, "running")) && m->was_running)
		(void)host_qmp_run(q, "cont", NULL, NULL);
	json_decref(st);
	return mig_src_tell_abort(m, 60000);
}

struct disk_final {
	struct mig m; /* a copy with its own error */
	gv_err e;
	int r;
	uint64_t wire; /* bytes the last disk pass cost the link */
};

static void *disk_final_thread(void *arg)
{
	struct disk_final *d = arg;
	json_t *rep = NULL;

	d->r = mig_src_ask(&d->m, json_pack("{s:s, s:s, s:s}", "op", "live-disk", "name",
					    d->m.r->def->name, "from", d->m.h->xfer_addr),
			   60 * 60 * 1000, &rep);
	d->wire = (uint64_t)json_integer_value(json_object_get(rep, "wire_bytes"));
	json_decref(rep);
	return NULL;
}

/* The guest is stopped (pre-switchover) and its disk quiet: the
 * destination copies the last disk changes while QEMU sends the last
 * memory pages and the device state; the destination activates its disk
 * only when the guest is resumed there (late-block-activate), which
 * confirm does once the disk copy is complete. */
static int mig_src_switch(struct mig *m, gv_qmp *q, uint64_t *paused_ms, uint64_t *wire,
			  bool *completed)
{
	json_t *args = json_pack("{s:s}", "state", "pre-switchover");
	struct disk_final d = { .m = *m };
	uint64_t t = gv_now_ms();
	pthread_t th;
	int r = 0;

	d.m.e = &d.e;
	d.m.progress = NULL;
	*completed = false;
	if (cancelled(m))
		r = gv_err_set(m->e, -ECANCELED, "migration cancelled");
	if (r == 0)
		r = mig_src_outputs_quiet(m);
	if (r == 0) {
		mig_src_phase(m, "disk-final", NULL);
		/* QEMU still owns the disk: the last written ranges, now */
		host_dirty_freeze(m->h, m->r->def->name);
		if (pthread_create(&th, NULL, disk_final_thread, &d) != 0)
			r = gv_err_set(m->e, -EAGAIN, "cannot start a thread");
	}
	if (r == 0) {
		mig_src_phase(m, "switch", NULL);
		r = host_qmp_run(q, "migrate-continue", args, m->e);
		if (r == 0)
			r = host_wait_migration(q, 10 * 60 * 1000, m->e);
		*completed = r == 0;
		pthread_join(th, NULL);
		*wire += d.wire;
		if (r == 0 && d.r < 0) {
			r = d.r;
			*m->e = d.e;
		}
	}
	*paused_ms = gv_now_ms() - t;
	json_decref(args);
	return r;
}

/* The switch happened but the destination's confirmation did not come
 * back: record it; mig_settle_all() finishes it later. */
void mig_src_unresolved(struct mig *m)
{
	size_t n = strlen(m->e->msg);

	snprintf(m->e->msg + n, sizeof(m->e->msg) - n,
		 "; the guest may already run there, so it stays paused here until the "
		 "destination answers (the agent keeps asking)");
	mig_src_phase(m, "confirm", json_pack("{s:s}", "unresolved", m->e->msg));
	m->r->state = GV_VM_PAUSED;
	free(m->r->error);
	m->r->error = gv_strdupf("paused until its migration to %s is settled", m->to);
	(void)host_put(m->h, m->r, NULL);
}

static int mig_src_live(struct mig *m, json_t **summary)
{
	json_t *caps = json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability",
				 "pause-before-switchover", "state", 1, "capability",
				 "auto-converge", "state", 1);
	json_t *rep = NULL, *args = NULL, *st = NULL, *conf = NULL;
	gv_qmp *q = NULL;
	uint64_t paused = 0, t_done = 0, t_stopped = 0, wire = 0,
		 memory = m->r->def->memory_mib << 20;
	bool completed = false, stopped = false;
	int r;

	/* a test's stand-in for a live migration that cannot be (e.g. the
	 * destination cannot take the stream): it fails before anything */
	if ((r = gv_fault("migrate.src.live", m->e)) < 0) {
		json_decref(caps);
		return r;
	}
	mig_src_phase(m, "prepare", NULL);
	json_t *req = vm_req(m, "live-prepare");
	json_object_set_new(req, "compress", json_string(m->compress));
	json_object_set_new(req, "tls", json_boolean(mig_any_tls_on()));
	r = mig_src_ask(m, req, 60 * 60 * 1000, &rep);
	wire = (uint64_t)json_integer_value(json_object_get(rep, "wire_bytes"));
	if (r == 0)
		r = host_qmp(m->p, &q, m->e);
	if (r == 0)
		r = host_qmp_run(q, "migrate-set-capabilities", caps, m->e);
	if (r == 0)
		r = mig_any_stream_setup(q, m->compress, m->e);
	if (r == 0)
		r = mig_src_tls_setup(q, m->p, rep, m->e);
	/* under TCG the guest stops for the memory copy (vm_precopy_prepare);
	 * the disk was copied while it ran, a back-out resumes it */
	if (r == 0 && m->was_running)
		r = vm_precopy_prepare(q, &stopped, m->e);
	t_stopped = gv_now_ms();
	if (r == 0) {
		args = json_pack("{s:s}", "uri", json_string_value(json_object_get(rep, "uri")));
		r = host_qmp_run(q, "migrate", args, m->e);
	}
	if (r == 0)
		r = mig_src_precopy(m, q);
	if (r == 0)
		r = mig_src_switch(m, q, &paused, &wire, &completed);
	if (stopped)
		paused = gv_now_ms() - t_stopped;
	if (r < 0 && completed && r != -EREMOTEIO) {
		/* QEMU handed everything over and only the answer about the
		 * final disk copy is missing: it may have completed there, so
		 * resuming here could run the guest twice; settle it later */
		mig_src_unresolved(m);
		goto out;
	}
	if (r == 0 && gv_qmp_execute(q, "query-migrate", NULL, 5000, &st, NULL) < 0)
		st = NULL;
	uint64_t t_conf = gv_now_ms();
	if (r == 0) {
		mig_src_phase(m, "confirm", NULL);
		r = mig_src_op(m, "live-confirm", 120000, &conf, m->e);
		t_done = gv_now_ms();
		if (r < 0 && r != -EREMOTEIO) {
			/* no answer: the guest may already run there; resuming
			 * it here could run it twice. It stays paused here and
			 * the agent asks again until the destination answers. */
			mig_src_unresolved(m);
			goto out;
		}
	}
	if (r < 0) {
		/* a destination that took the VM in must drop it */
		bool told = q ? mig_src_back_out(m, q) : !rep || mig_src_tell_abort(m, 60000);
		size_t n = strlen(m->e->msg);
		snprintf(m->e->msg + n, sizeof(m->e->msg) - n, "; the VM runs here still");
		mig_src_phase(m, "aborted", json_pack("{s:s, s:b}", "error", m->e->msg, "dest_pending",
					      !told && rep));
	}
	if (r == 0) {
		gv_err local;
		mig_src_phase(m, "cleanup", NULL);
		(void)host_qmp_run(q, "quit", NULL, NULL);
		mig_src_push_checkpoints(m);
		(void)vm_delete_locked(m->h, m->r, m->p, "force", &local);
		*summary = json_pack("{s:s, s:s, s:s, s:f, s:O?, s:I, s:I, s:O?, s:O?, s:O?}", "mode",
				     "live", "to", m->to, "compress", m->compress, "seconds",
				     (double)(gv_now_ms() - m->t0) / 1000.0, "qemu_downtime_ms",
				     json_object_get(st, "downtime"), "paused_ms",
				     (json_int_t)paused, "confirm_ms", (json_int_t)(t_done - t_conf),
				     "dest_incoming_wait_ms",
				     json_object_get(conf, "incoming_wait_ms"), "dest_cont_ms",
				     json_object_get(conf, "cont_ms"), "ram",
				     json_object_get(st, "ram"));
		/* what the grid's cost model learns from (docs/scheduling.md) */
		json_object_set_new(*summary, "disk_wire_bytes", json_integer((json_int_t)wire));
		json_object_set_new(*summary, "memory",
				    json_integer((json_int_t)memory));
	}
out:
	/* moved: QEMU here is gone; else the guest goes on here (or waits) */
	host_dirty_stop(m->h, m->r->def->name, r < 0);
	gv_qmp_free(q);
	json_decref(caps);
	json_decref(args);
	json_decref(conf);
	json_decref(rep);
	json_decref(st);
	return r;
}

int gv_vm_migrate(gv_host *h, const char *name, const gv_migrate_opts *o, json_t **summary,
		  gv_err *e)
{
	const char *to = o->to;
	struct mig m = { .h = h, .progress = o->progress, .ud = o->ud, .t0 = gv_now_ms(),
			 .e = e, .ckpt = o->checkpoint, .compress = o->compress ? o->compress : "zstd",
			 .mode = o->checkpoint ? "checkpoint" : o->cold ? "cold" : "live",
			 .keep_ckpts = o->keep_checkpoints, .epoch = o->epoch };
	struct vmlock *l;
	gv_vmpaths p;
	int r;

	if (!h->xfer_addr)
		return gv_err_set(e, -EINVAL, "this agent serves no transfers; start gridvmd "
				  "with --listen ADDR to %s", o->checkpoint
				  ? "restore on another host" : "migrate");
	if (strcmp(m.compress, "zstd") && strcmp(m.compress, "none"))
		return gv_err_set(e, -EINVAL, "unknown compression '%s' (zstd or none)", m.compress);
	if (o->checkpoint && *o->checkpoint && !gv_name_valid(o->checkpoint))
		return gv_err_set(e, -ENOENT, "no such checkpoint: %s", o->checkpoint);
	snprintf(m.to, sizeof(m.to), "%s", to ? to : "");
	if (!to || gv_xfer_peer_parse(to, m.host, sizeof(m.host), &m.port) < 0)
		return gv_err_set(e, -EINVAL, "invalid destination '%s' (HOST[:PORT])",
				  to ? to : "");
	{
		char me[256];
		int myport;
		if (gv_xfer_peer_parse(h->xfer_addr, me, sizeof(me), &myport) == 0 &&
		    !strcmp(me, m.host) && myport == m.port)
			return gv_err_set(e, -EINVAL, "VM %s is on %s already%s", name, to,
					  o->checkpoint ? " (restore without --on)" : "");
	}
	if ((r = gv_xfer_key_load(h->grid_key, m.key)) < 0)
		return gv_err_set(e, r, "cannot read the grid key %s", h->grid_key);
	l = host_vm_lock(h, name);
	r = host_get(h, name, &m.r, e);
	if (r == 0) {
		host_refresh(h, m.r);
		gv_vmpaths_init(&p, h->datadir, name);
		m.p = &p;
		char *rec = gv_strdupf("%s/migration.json", p.dir);
		m.was_running = m.r->state == GV_VM_RUNNING;
		if (mig_unsettled(h, name, e))
			r = -EBUSY;
		else
			unlink(rec); /* a new migration starts its own record */
		free(rec);
		if (r < 0)
			;
		else if (o->checkpoint)
			r = mig_src_checkpoint(&m, summary);
		else if (m.r->state != GV_VM_RUNNING && m.r->state != GV_VM_PAUSED)
			r = gv_err_set(e, -EBUSY, "cannot migrate VM %s: it is %s", name,
				       gv_vmstate_name(m.r->state));
		else
			r = o->cold ? mig_src_cold(&m, summary) : mig_src_live(&m, summary);
		gv_vmpaths_clear(&p);
	}
	gv_vmrec_free(m.r);
	host_vm_unlock(h, l);
	OPENSSL_cleanse(m.key, sizeof(m.key));
	return r;
}

