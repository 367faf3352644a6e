/* SPDX-License-Identifier: MIT */
/*
 * monitor.c - the agent's watch over its VMs: at start (reattach to the
 * QEMUs of a previous agent, drop unconfirmed incoming VMs) and every
 * second (record how VMs ended, ask QEMU now and then, remove expired
 * `gridvm run` VMs), then the periodic work of the modules registered
 * with the host (checkpoints, settling migrations).
 */
#include "vm_internal.h"

#include <gridvm/node/host.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* QEMU stopped the guest on its own (disk full, internal error, guest
 * panic): the job will not go on, record the VM as failed. */
static bool guest_broken(const char *status)
{
	return status && (!strcmp(status, "io-error") || !strcmp(status, "internal-error") ||
			  !strcmp(status, "guest-panicked") || !strcmp(status, "shutdown"));
}

/* Ask QEMU itself how the guest is (reattach, and now and then). */
static void sync_runstate(gv_host *h, gv_vmrec *r)
{
	gv_vmpaths p;
	json_t *st = NULL;
	gv_vmstate want = r->state;

	gv_vmpaths_init(&p, h->datadir, r->def->name);
	if (host_qmp_cmd(&p, "query-status", NULL, 5000, &st, NULL) == 0) {
		const char *status = json_string_value(json_object_get(st, "status"));
		want = json_is_true(json_object_get(st, "running")) ? GV_VM_RUNNING : GV_VM_PAUSED;
		if (guest_broken(status)) {
			vm_kill_qemu(r, &p);
			want = GV_VM_FAILED;
			free(r->error);
			r->error = gv_strdupf("QEMU stopped the guest: %s", status);
		}
	}
	if (want != r->state) {
		r->state = want;
		if (gv_store_vm_update(h->store, r) < 0)
			fprintf(stderr, "gridvm: cannot store %s\n", r->def->name);
	}
	json_decref(st);
	gv_vmpaths_clear(&p);
}

/* VMs of `gridvm run` whose CLI went away are removed 10 min after they
 * ended (the CLI removes them itself when it is there to read the end). */
static bool ephemeral_expired(gv_host *h, gv_vmrec *r)
{
	gv_vmpaths p;
	struct stat st;
	bool old;

	if (!r->def->ephemeral || (r->state != GV_VM_STOPPED && r->state != GV_VM_FAILED))
		return false;
	gv_vmpaths_init(&p, h->datadir, r->def->name);
	old = stat(p.jobout, &st) < 0 || gv_now_s() - st.st_mtime > 600;
	gv_vmpaths_clear(&p);
	return old;
}

/* At reattach: a VM that was arriving by migration and never confirmed
 * (its agent died meanwhile) is dropped, the source kept it; unless it had
 * arrived complete and its QEMU waits: then the source may have switched
 * over, and it stays until the source settles it (or it is adopted). */
static bool drop_unconfirmed(gv_host *h, const char *name)
{
	gv_vmpaths p;
	gv_vmrec *r = NULL;
	char *from = host_incoming_from(h, name);
	bool drop;

	gv_vmpaths_init(&p, h->datadir, name);
	drop = from && gv_store_vm_get(h->store, name, &r) == 0;
	if (drop && host_incoming_keep(h, name) && (host_refresh(h, r), r->state == GV_VM_PAUSED)) {
		fprintf(stderr, "gridvmd: keeping %s, an unconfirmed incoming migration that "
			"arrived complete: its source settles it\n", name);
		drop = false;
	}
	if (drop) {
		fprintf(stderr, "gridvmd: dropping %s, an unconfirmed incoming migration\n", name);
		vm_kill_qemu(r, &p);
		if (gv_store_vm_delete(h->store, name) == 0)
			gv_rm_rf(p.dir);
	}
	gv_vmrec_free(r);
	free(from);
	gv_vmpaths_clear(&p);
	return drop;
}

static void refresh_one(gv_host *h, const char *name, bool sync, bool wait)
{
	struct vmlock *l = wait ? host_vm_lock(h, name) : host_vm_trylock(h, name);
	gv_vmrec *r = NULL;
	bool expired = false;

	if (!l) /* a long verb runs on this VM; it keeps the record current */
		return;
	if (wait && drop_unconfirmed(h, name)) {
		host_vm_unlock(h, l);
		return;
	}
	if (gv_store_vm_get(h->store, name, &r) == 0 && !host_refresh(h, r) && sync &&
	    (r->state == GV_VM_RUNNING || r->state == GV_VM_PAUSED))
		sync_runstate(h, r);
	expired = r && ephemeral_expired(h, r);
	gv_vmrec_free(r);
	host_vm_unlock(h, l);
	if (expired) {
		gv_err e;
		if (gv_vm_delete(h, name, true, &e) < 0)
			fprintf(stderr, "gridvmd: cannot remove %s: %s\n", name, e.msg);
	}
}

static void for_each_vm(gv_host *h, bool sync, bool wait)
{
	char **names = NULL;

	if (gv_store_vm_names(h->store, &names) < 0)
		return;
	for (char **n = names; *n; n++)
		refresh_one(h, *n, sync, wait);
	gv_strv_free(names);
}

void gv_host_reattach(gv_host *h)
{
	for_each_vm(h, true, true);
}

void gv_host_refresh_all(gv_host *h)
{
	static unsigned tick;

	for_each_vm(h, ++tick % 5 == 0, false); /* ask QEMU every 5th time */
	host_modules_tick(h, tick);
}
