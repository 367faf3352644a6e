/* SPDX-License-Identifier: MIT */
/*
 * migrate_recover.c - migrations whose driver is gone (the source agent
 * restarted) or whose destination did not answer: settled from the phase
 * they recorded, on the source; and adopting, on a destination, a VM
 * whose source host is lost for good.
 */
#include "migrate_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where does the destination have the VM? 1: running there for good;
 * 0: not there; -EAGAIN: not settled yet, or no answer. */
static int mig_src_dest_state(struct mig *m)
{
	json_t *rep = NULL;
	int r = mig_src_op(m, "state", SETTLE_MS, &rep, NULL);

	if (r == 0 && !json_is_true(json_object_get(rep, "present")))
		r = 0;
	else if (r == 0 && json_is_true(json_object_get(rep, "settled")) &&
		 json_is_true(json_object_get(rep, "running")))
		r = 1;
	else
		r = -EAGAIN;
	json_decref(rep);
	return r;
}

static void mig_src_moved(struct mig *m, gv_qmp *q)
{
	gv_err local;

	mig_src_phase(m, "cleanup", NULL);
	if (q)
		(void)host_qmp_run(q, "quit", NULL, NULL);
	mig_src_push_checkpoints(m);
	(void)vm_delete_locked(m->h, m->r, m->p, "force", &local);
	fprintf(stderr, "gridvmd: migration of %s to %s settled: it runs there\n",
		m->r->def->name, m->to);
}

/* Settle a migration whose driver is gone (the agent restarted) or that
 * waits for the destination's answer, from its record @ph. 0: settled
 * (either way); -EAGAIN: ask again later. The VM's lock is held. */
int mig_src_settle(struct mig *m, const char *ph)
{
	int idx = mig_phase_index(ph), d;
	const char *status = NULL;
	gv_qmp *q = NULL;
	json_t *st = NULL;
	gv_err ignore;
	int r = 0;

	if (idx == mig_phase_index("aborted")) { /* only the destination is left to tell */
		if (!mig_src_tell_abort(m, SETTLE_MS))
			return -EAGAIN;
		mig_src_phase(m, "aborted", json_pack("{s:s}", "error", "the migration was backed out"));
		return 0;
	}
	if (host_qmp(m->p, &q, &ignore) == 0 &&
	    gv_qmp_execute(q, "query-migrate", NULL, 5000, &st, NULL) == 0)
		status = json_string_value(json_object_get(st, "status"));
	if (idx >= mig_phase_index("cleanup") && idx < mig_phase_index("done")) {
		mig_src_moved(m, q);
		goto out;
	}
	if (!strcmp(m->mode, "live") && idx >= mig_phase_index("switch") && status &&
	    !strcmp(status, "completed")) {
		/* the destination has everything: go forward if it can */
		r = mig_src_op(m, "live-confirm", SETTLE_MS, NULL, m->e);
		if (r == 0) {
			mig_src_moved(m, q);
			goto out;
		}
		if (r != -EREMOTEIO) {
			r = -EAGAIN;
			goto out;
		}
	} else if (strcmp(m->mode, "live") || (!q && idx >= mig_phase_index("switch"))) {
		/* cold, checkpoint, or no QEMU here: where is the VM? */
		d = mig_src_dest_state(m);
		if (d == 1) {
			mig_src_moved(m, q);
			goto out;
		}
		if (d < 0) {
			r = -EAGAIN;
			goto out;
		}
	}
	/* the destination does not run it: it goes on here */
	if (!q && !strcmp(m->mode, "live"))
		(void)mig_src_tell_abort(m, SETTLE_MS);
	if (!strcmp(m->mode, "checkpoint")) {
		host_checkpoint_unexport(m->p);
	} else if (q) {
		(void)mig_src_back_out(m, q);
		m->r->state = m->was_running ? GV_VM_RUNNING : GV_VM_PAUSED;
		free(m->r->error);
		m->r->error = NULL;
		(void)host_put(m->h, m->r, NULL);
	} else if (!strcmp(m->mode, "cold")) {
		char *state = gv_strdupf("%s/migrate.state", m->p->dir);
		if (vm_restore_locked(m->h, m->r, m->p, state, &ignore) < 0)
			fprintf(stderr, "gridvmd: cannot restore %s after its migration: %s\n",
				m->r->def->name, ignore.msg);
		free(state);
	}
	mig_src_phase(m, "aborted", json_pack("{s:s}", "error", "the migration was interrupted "
				      "(agent restart or no answer); the VM stays here"));
	fprintf(stderr, "gridvmd: migration of %s to %s backed out: it stays here\n",
		m->r->def->name, m->to);
	r = 0;
out:
	json_decref(st);
	gv_qmp_free(q);
	return r;
}

/* The migration record of a VM that is still in flight, or NULL. */
static json_t *inflight(gv_host *h, const char *name)
{
	char *path = gv_strdupf("%s/vms/%s/migration.json", h->datadir, name);
	json_t *j = json_load_file(path, 0, NULL);
	int idx = mig_phase_index(json_string_value(json_object_get(j, "phase")));

	free(path);
	if (idx == mig_phase_index("aborted") &&
	    json_is_true(json_object_get(json_object_get(j, "info"), "dest_pending")))
		return j;
	if (idx < 0 || idx >= mig_phase_index("done")) {
		json_decref(j);
		return NULL;
	}
	return j;
}

bool mig_unsettled(gv_host *h, const char *name, gv_err *e)
{
	char *from = mig_dst_incoming_from(h, name);

	if (from) {
		gv_err_set(e, -EBUSY, "VM %s is arriving by migration from %s and not confirmed "
			   "yet; the source settles it (if that host is lost for good: 'gridvm "
			   "migrate adopt %s')", name, *from ? from : "another host", name);
		free(from);
		return true;
	}
	json_t *j = inflight(h, name);

	if (!j || mig_phase_index(json_string_value(json_object_get(j, "phase"))) ==
			  mig_phase_index("aborted")) { /* it runs here; only the destination
						     * is left to tell */
		json_decref(j);
		return false;
	}
	gv_err_set(e, -EBUSY, "VM %s has an unsettled migration to %s (phase %s); the agent "
		   "settles it when the destination answers", name,
		   json_string_value(json_object_get(j, "to")) ?: "?",
		   json_string_value(json_object_get(j, "phase")) ?: "?");
	json_decref(j);
	return true;
}

void mig_settle_all(gv_host *h, bool wait)
{
	/* (a VM whose destination does not answer costs up to SETTLE_MS
	 * per call, which the caller's thread waits) */
	char **names = NULL;

	if (!h->xfer_addr || gv_store_vm_names(h->store, &names) < 0)
		return;
	for (char **n = names; *n; n++) {
		json_t *j = inflight(h, *n);
		struct vmlock *l;
		struct mig m = { .h = h };
		gv_vmpaths p;
		gv_err e = { "" };

		if (!j)
			continue;
		/* a migration that runs holds the lock: not ours to settle */
		l = wait ? host_vm_lock(h, *n) : host_vm_trylock(h, *n);
		if (l && gv_xfer_key_load(h->grid_key, m.key) == 0 &&
		    host_get(h, *n, &m.r, &e) == 0 && (j = (json_decref(j), inflight(h, *n)))) {
			const char *to = json_string_value(json_object_get(j, "to")) ?: "";
			snprintf(m.to, sizeof(m.to), "%s", to);
			m.mode = json_string_value(json_object_get(j, "mode")) ?: "live";
			m.was_running = json_is_true(json_object_get(j, "was_running"));
			m.keep_ckpts = json_is_true(json_object_get(j, "keep_checkpoints"));
			m.t0 = (uint64_t)json_integer_value(json_object_get(j, "started")) * 1000;
			m.held = true;
			m.e = &e;
			gv_vmpaths_init(&p, h->datadir, *n);
			m.p = &p;
			if (gv_xfer_peer_parse(to, m.host, sizeof(m.host), &m.port) == 0)
				(void)mig_src_settle(&m, json_string_value(json_object_get(j, "phase")));
			gv_vmpaths_clear(&p);
		}
		OPENSSL_cleanse(m.key, sizeof(m.key));
		gv_vmrec_free(m.r);
		json_decref(j);
		if (l)
			host_vm_unlock(h, l);
	}
	gv_strv_free(names);
}

int gv_migrate_adopt(gv_host *h, const char *name, json_t **out, gv_err *e)
{
	char host[256], *from;
	gv_err ce;
	uint8_t key[GV_XFER_KEY_LEN];
	struct vmlock *l;
	json_t *rep = NULL;
	int port, r = 0;

	if (!gv_name_valid(name))
		return gv_err_set(e, -ENOENT, "no such VM: %s", name);
	l = host_vm_lock(h, name);
	from = mig_dst_incoming_from(h, name);
	if (!from)
		r = gv_err_set(e, -EINVAL, "VM %s is not an unconfirmed incoming migration here",
			       name);
	else if (!mig_dst_incoming_keep(h, name))
		r = gv_err_set(e, -EBUSY, "VM %s did not arrive complete (its last disk changes "
			       "are missing): only the source %s can run it", name, from);
	/* the source alone may decide while it can be asked; any answer,
	 * even a refusal, says it is there */
	if (r == 0 && gv_xfer_peer_parse(from, host, sizeof(host), &port) < 0)
		r = gv_err_set(e, -EINVAL, "VM %s does not say which host it comes from; "
			       "adopting it needs that host's silence", name);
	if (r == 0 && (r = gv_xfer_key_load(h->grid_key, key)) < 0)
		gv_err_set(e, r, "cannot read the grid key %s", h->grid_key);
	if (r == 0) {
		json_t *hello = json_pack("{s:s, s:s}", "op", "hello", "name", name);
		int c = gv_xfer_control(host, port, key, hello, 10000, &rep, &ce);
		json_decref(hello);
		/* only a source that cannot be reached at all counts as lost */
		if (c == 0)
			r = gv_err_set(e, -EBUSY, "the source %s answers: it settles the migration "
				       "of %s itself (see 'gridvm migrate status' there)", from, name);
		else if (c != -ECONNREFUSED && c != -ETIMEDOUT && c != -EHOSTUNREACH &&
			 c != -ENETUNREACH && c != -EHOSTDOWN)
			r = gv_err_set(e, -EBUSY, "the source %s is reachable but the request "
				       "failed (%s): not adopting", from, ce.msg);
	}
	OPENSSL_cleanse(key, sizeof(key));
	json_decref(rep);
	if (r == 0 && !(*out = mig_dst_run(h, name, e)))
		r = -EIO;
	if (r == 0)
		fprintf(stderr, "gridvmd: %s adopted: its source %s does not answer, it runs here "
			"now\n", name, from);
	free(from);
	host_vm_unlock(h, l);
	return r;
}

static bool mig_may_run(gv_host *h, const char *name, gv_err *e)
{
	return !mig_unsettled(h, name, e);
}

/* Settling waits up to SETTLE_MS per silent destination: on a thread of
 * its own, so that the monitor goes on meanwhile. */
static void mig_settle_tick(gv_host *h)
{
	mig_settle_all(h, false);
}

const host_module host_migrate_module = {
	.name = "migrate",
	.may_run = mig_may_run,
	.incoming_from = mig_dst_incoming_from,
	.incoming_keep = mig_dst_incoming_keep,
	.tick = mig_settle_tick,
	.tick_every = 5, /* after a restart: the first time within 5 s */
	.tick_thread = true,
};
