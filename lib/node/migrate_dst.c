/* SPDX-License-Identifier: MIT */
/*
 * migrate_dst.c - the destination's side of a migration: the control
 * requests the source drives it with ("cold-in", "checkpoint-in",
 * "live-prepare", "live-disk", "live-confirm", "live-abort", "state",
 * "hello", and "ckpt-*" for the checkpoints that follow a VM), dispatched
 * from one table, and the VMs still arriving (host_incoming_*).
 */
#include "migrate_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Pull "vm:NAME:KIND" from the source into @dest. Live in-place passes
 * keep the index of what they left in @dest (DIR/.KIND.base.gvidx); the
 * next in-place pull then asks the source for the changes only. */
static int mig_dst_pull(gv_host *h, const char *from, const char *vm, const char *kind,
			const char *dest, bool local, bool in_place, bool live, uint64_t *wire,
			gv_err *e)
{
	const char *slash = strrchr(dest, '/');
	char *baseidx = gv_strdupf("%.*s/.%s.base.gvidx", slash ? (int)(slash - dest) : 1,
				   slash ? dest : ".", kind);
	gv_blockidx *base = NULL;
	uint64_t *stale = NULL;
	size_t nstale = 0;

	/* the index the last in-place pass left, if @dest is unchanged since,
	 * and the blocks that pass could not take */
	if (in_place && !live &&
	    gv_blockidx_load_current(dest, baseidx, GV_BLOCKIDX_DEFAULT_SHIFT, &base) < 0)
		base = NULL;
	if (base && gv_fetch_load_stale(baseidx, &stale, &nstale) < 0) {
		gv_blockidx_free(base);
		base = NULL;
	}
	uint8_t key[GV_XFER_KEY_LEN];
	char host[256], *res = gv_strdupf("vm:%s:%s", vm, kind);
	gv_err fe;
	gv_fetch_opts fo = { 0 };
	gv_hostidx *hi = NULL;
	json_t *sum = NULL;
	int port, r = gv_xfer_peer_parse(from, host, sizeof(host), &port);

	if (r == 0 && (r = gv_xfer_key_load(h->grid_key, key)) < 0)
		gv_err_set(e, r, "cannot read the grid key %s", h->grid_key);
	if (r == 0 && local) {
		pthread_mutex_lock(&h->idx_mu);
		if (host_hostidx(h, &hi, NULL) < 0)
			hi = NULL;
		pthread_mutex_unlock(&h->idx_mu);
	}
	void *reader = hi ? host_checkpoint_reader(h) : NULL;
	fo = (gv_fetch_opts){ .host = host, .port = port, .image = res, .dest = dest,
			      .codec = GV_CODEC_ZSTD, .key = key, .hostidx = hi,
			      .local_read = reader ? host_checkpoint_read : NULL, .local_ud = reader,
			      .base_index = base, .base_stale = stale, .n_base_stale = nstale,
			      .index_dest = in_place && live ? baseidx : NULL,
			      .in_place = in_place, .iterative = live, .no_final = live,
			      .max_passes = 3 };
	uint64_t t0 = gv_now_ms();
	if (r == 0 && (r = gv_fetch(&fo, &sum, &fe)) < 0)
		gv_err_set(e, r, "cannot copy the VM's %s: %s", kind, fe.msg);
	if (r == 0 && wire) /* what it cost the link, for the move's report */
		*wire += (uint64_t)json_integer_value(json_object_get(sum, "bytes_on_wire"));
	if (r == 0 && in_place && !live) /* the final pass: the guest waits for it */
		fprintf(stderr, "gridvmd: final copy of %s's %s: %llu ms, %s base, %lld blocks "
			"sent, %lld bytes on the wire\n", vm, kind,
			(unsigned long long)(gv_now_ms() - t0), base ? "with" : "no",
			(long long)json_integer_value(json_object_get(sum, "blocks_remote")),
			(long long)json_integer_value(json_object_get(sum, "bytes_on_wire")));
	host_checkpoint_reader_free(reader);
	gv_blockidx_free(base);
	free(stale);
	free(baseidx);
	OPENSSL_cleanse(key, sizeof(key));
	json_decref(sum);
	free(res);
	return r;
}

/* The base image: use ours, or fetch it from the source (deduplicated). */
static int mig_dst_base(gv_host *h, const char *image, const char *from, gv_err *e)
{
	gv_image_fetch_opts o = { .name = image, .from = from };
	const char *fmt;
	char *path = NULL;
	json_t *sum = NULL;
	int r;

	if (!image || gv_image_resolve(h->datadir, image, &path, &fmt) == 0) {
		free(path);
		return 0;
	}
	r = gv_image_fetch(h, &o, &sum, e);
	json_decref(sum);
	return r;
}

/* The overlay must name our copy of the base image (the content is the
 * same, the transfer checked it): relative to the VM's directory, which
 * overlays made here do already (then nothing is written, and the file
 * stays as the transfer left it); an older one named the source's path. */
static int mig_dst_rebase(gv_host *h, const gv_vmdef *d, const gv_vmpaths *p, gv_err *e)
{
	const char *fmt;
	char *img = NULL, *out = NULL, *rel, line[300];
	int r;

	if (!d->image)
		return 0;
	if (gv_image_resolve(h->datadir, d->image, &img, &fmt) < 0)
		return gv_err_set(e, -ENOENT, "no base image %s here", d->image);
	rel = host_backing_path(img);
	if (host_backing_is(p->disk, rel)) {
		free(rel);
		free(img);
		return 0;
	}
	char *argv[] = { "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", rel, "-F",
			 (char *)fmt, p->disk, NULL };
	r = gv_run(argv, &out);
	free(rel);
	if (r != 0)
		r = gv_err_set(e, -EIO, "cannot rebase the disk: %s",
			       gv_last_line(out, line, sizeof(line)));
	free(out);
	free(img);
	return r;
}

/* Record @d as a VM of this host in @state, with its job spec. */
static int mig_dst_record(gv_host *h, gv_vmdef *d, const gv_vmpaths *p, gv_vmstate state,
			  const char *state_file, gv_err *e)
{
	gv_vmrec rec = { .def = d, .state = state, .exit_code = -1,
			 .state_file = (char *)state_file, .created = gv_now_s() };
	size_t len;
	char *spec = gv_vmdef_jobspec(d, &len);
	int r = gv_write_file_atomic(p->jobspec, spec, len);

	free(spec);
	if (r == 0 && (r = gv_store_vm_insert(h->store, &rec)) < 0)
		gv_err_set(e, r, "cannot record VM %s", d->name);
	return r;
}

/* Parse the request's VM and make sure the name is free here. */
static int mig_dst_begin(gv_host *h, json_t *req, gv_vmdef **d, gv_vmpaths *p, gv_err *e)
{
	gv_vmrec *old = NULL;
	int r = gv_vmdef_from_json(json_object_get(req, "vm"), d, e);

	if (r < 0)
		return r;
	if (gv_store_vm_get(h->store, (*d)->name, &old) == 0) {
		gv_vmrec_free(old);
		gv_vmdef_free(*d);
		*d = NULL;
		return gv_err_set(e, -EEXIST, "a VM named %s exists on the destination already",
				  json_string_value(json_object_get(json_object_get(req, "vm"), "name")));
	}
	gv_vmpaths_init(p, h->datadir, (*d)->name);
	r = gv_mkdir_p(p->dir, 0755);
	if (r < 0)
		return gv_err_set(e, r, "cannot create %s", p->dir);
	/* until the VM is confirmed here: where it comes from (see
	 * host_incoming_keep, gv_migrate_adopt) */
	char *mark = gv_strdupf("%s/.incoming", p->dir);
	const char *from = json_string_value(json_object_get(req, "from")) ?: "";
	r = gv_write_file_atomic(mark, from, strlen(from));
	free(mark);
	if (r < 0)
		gv_err_set(e, r, "cannot write in %s", p->dir);
	return r;
}

static void mig_dst_settled(const gv_vmpaths *p)
{
	char *mark = gv_strdupf("%s/.incoming", p->dir);

	unlink(mark);
	free(mark);
}

/* Undo a half-made VM here. */
static void mig_dst_drop(gv_host *h, const char *name, const gv_vmpaths *p)
{
	gv_vmrec *r = NULL;

	if (gv_store_vm_get(h->store, name, &r) == 0) {
		vm_kill_qemu(r, p);
		if (gv_store_vm_delete(h->store, name) < 0)
			fprintf(stderr, "gridvmd: cannot forget VM %s\n", name);
	}
	gv_vmrec_free(r);
	gv_rm_rf(p->dir);
}

/* Cold migration, or a checkpoint restored here (@ckpt): pull disk,
 * state and job output, restore, report the VM running. */
static json_t *mig_dst_cold(gv_host *h, json_t *req, bool ckpt)
{
	const char *from = json_string_value(json_object_get(req, "from"));
	const char *k_disk = ckpt ? "ckpt-disk" : "disk", *k_state = ckpt ? "ckpt-state" : "state";
	const char *k_jobout = ckpt ? "ckpt-jobout" : "jobout";
	gv_vmdef *d = NULL;
	gv_vmpaths p = { 0 };
	gv_err e = { "" };
	char *state, *name;
	int r = mig_dst_begin(h, req, &d, &p, &e);

	if (r < 0) {
		gv_vmpaths_clear(&p);
		return gv_err_json(r, e.msg);
	}
	name = strdup(d->name);
	state = gv_strdupf("%s/migrate.state", p.dir);
	r = mig_dst_base(h, d->image, from, &e);
	if (r == 0 && d->image)
		r = mig_dst_pull(h, from, name, k_disk, p.disk, true, false, false, NULL, &e);
	if (r == 0)
		r = mig_dst_rebase(h, d, &p, &e);
	if (r == 0)
		r = mig_dst_pull(h, from, name, k_state, state, false, false, false, NULL, &e);
	if (r == 0)
		r = mig_dst_pull(h, from, name, k_jobout, p.jobout, false, false, false, NULL, &e);
	/* the job's inputs (read-only, the same as at the source); its output
	 * disk starts empty here: the guest writes it only once its job ended */
	if (r == 0 && d->input_guest)
		r = mig_dst_pull(h, from, name, "input", p.input, false, false, false, NULL, &e);
	if (r == 0)
		r = mig_dst_record(h, d, &p, GV_VM_SAVED, state, &e);
	if (r == 0) { /* the control handler holds the VM's lock already */
		gv_vmrec *rec = NULL;
		r = host_get(h, name, &rec, &e);
		if (r == 0)
			r = vm_restore_locked(h, rec, &p, state, &e);
		gv_vmrec_free(rec);
	}
	if (r < 0)
		mig_dst_drop(h, name, &p);
	else
		mig_dst_settled(&p);
	gv_vmdef_free(d);
	gv_vmpaths_clear(&p);
	free(state);
	free(name);
	return r < 0 ? gv_err_json(r, e.msg) : json_pack("{s:b}", "ok", 1);
}

static int mig_dst_incoming(gv_host *h, const gv_vmpaths *p, json_t *req, char **uri,
			    bool *tls, gv_err *e)
{
	const char *compress = json_string_value(json_object_get(req, "compress"));
	char host[256];
	int port, r = gv_xfer_peer_parse(h->xfer_addr, host, sizeof(host), &port);
	char *listen = gv_strdupf("tcp:%s:0", host);
	json_t *args = json_pack("{s:s}", "uri", listen), *st = NULL, *sa;
	gv_qmp *q = NULL;

	json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				 "late-block-activate", "state", 1);

	if (r == 0)
		r = host_qmp(p, &q, e);
	/* the disk is activated at cont (confirm), after its final copy */
	if (r == 0)
		r = host_qmp_run(q, "migrate-set-capabilities", caps, e);
	json_decref(caps);
	if (r == 0)
		r = mig_any_stream_setup(q, compress, e);
	if (r == 0)
		r = mig_dst_tls_setup(q, p, req, tls, e);
	if (r == 0)
		r = host_qmp_run(q, "migrate-incoming", args, e);
	if (r == 0 && (r = gv_qmp_execute(q, "query-migrate", NULL, 5000, &st, NULL)) < 0)
		gv_err_set(e, r, "query-migrate failed");
	sa = json_array_get(json_object_get(st, "socket-address"), 0);
	if (r == 0 && !json_string_value(json_object_get(sa, "port")))
		r = gv_err_set(e, -EIO, "QEMU did not say where it listens");
	if (r == 0)
		*uri = gv_strdupf("tcp:%s:%s", host, json_string_value(json_object_get(sa, "port")));
	json_decref(st);
	json_decref(args);
	gv_qmp_free(q);
	free(listen);
	return r;
}

static json_t *mig_dst_live_prepare(gv_host *h, json_t *req)
{
	const char *from = json_string_value(json_object_get(req, "from"));
	gv_vmdef *d = NULL;
	gv_vmpaths p = { 0 };
	gv_vmrec *r = NULL;
	gv_err e = { "" };
	char *uri = NULL, *name;
	uint64_t wire = 0;
	json_t *rep;
	bool tls = false;
	int rc = mig_dst_tls_check(req, &e);

	if (rc == 0)
		rc = mig_dst_begin(h, req, &d, &p, &e);

	if (rc < 0) {
		gv_vmpaths_clear(&p);
		return gv_err_json(rc, e.msg);
	}
	name = strdup(d->name);
	rc = mig_dst_base(h, d->image, from, &e);
	/* the guest keeps writing: copy in passes, no final check yet */
	if (rc == 0 && d->image)
		rc = mig_dst_pull(h, from, name, "disk", p.disk, true, true, true, &wire, &e);
	if (rc == 0)
		rc = mig_dst_rebase(h, d, &p, &e);
	if (rc == 0)
		rc = mig_dst_pull(h, from, name, "jobout", p.jobout, false, true, true, &wire, &e);
	if (rc == 0 && d->input_guest) /* read-only: one copy, no passes */
		rc = mig_dst_pull(h, from, name, "input", p.input, false, false, false, &wire, &e);
	if (rc == 0)
		rc = mig_dst_record(h, d, &p, GV_VM_PAUSED, NULL, &e);
	if (rc == 0 && (rc = host_get(h, name, &r, &e)) == 0)
		rc = vm_spawn_qemu(h, r, &p, true, &e);
	if (rc == 0 && (rc = host_put(h, r, &e)) == 0)
		rc = mig_dst_incoming(h, &p, req, &uri, &tls, &e);
	if (rc < 0)
		mig_dst_drop(h, name, &p);
	rep = rc < 0 ? gv_err_json(rc, e.msg)
		     : json_pack("{s:b, s:s, s:I, s:b}", "ok", 1, "uri", uri, "wire_bytes",
				 (json_int_t)wire, "tls", tls);
	gv_vmrec_free(r);
	gv_vmdef_free(d);
	gv_vmpaths_clear(&p);
	free(uri);
	free(name);
	return rep;
}

/* The source is paused before switchover: copy the disk blocks that
 * changed, strictly verified, into the file the incoming QEMU has open. */
static json_t *mig_dst_live_disk(gv_host *h, json_t *req)
{
	const char *from = json_string_value(json_object_get(req, "from"));
	const char *name = json_string_value(json_object_get(req, "name"));
	gv_vmrec *r = NULL;
	gv_vmpaths p;
	gv_err e = { "" };
	uint64_t wire = 0;
	int rc;

	if (!name)
		return gv_err_json(-ENOENT, "no such VM");
	if ((rc = host_get(h, name, &r, &e)) < 0)
		return gv_err_json(rc, e.msg[0] ? e.msg : "no such VM");
	gv_vmpaths_init(&p, h->datadir, name);
	rc = r->def->image ? mig_dst_pull(h, from, name, "disk", p.disk, true, true, false, &wire, &e)
			   : 0;
	if (rc == 0) /* the copy has the source's header again */
		rc = mig_dst_rebase(h, r->def, &p, &e);
	if (rc == 0)
		rc = mig_dst_pull(h, from, name, "jobout", p.jobout, false, true, false, &wire, &e);
	if (rc == 0) { /* confirm runs the guest only after this */
		char *mark = gv_strdupf("%s/.disk-final", p.dir);
		rc = gv_write_file_atomic(mark, "", 0);
		if (rc < 0)
			gv_err_set(&e, rc, "cannot write in %s", p.dir);
		free(mark);
	}
	gv_vmpaths_clear(&p);
	gv_vmrec_free(r);
	return rc < 0 ? gv_err_json(rc, e.msg)
		      : json_pack("{s:b, s:I}", "ok", 1, "wire_bytes", (json_int_t)wire);
}

/* QEMU here has all the state: let the guest run and say so. The VM's
 * lock is held. */
json_t *mig_dst_run(gv_host *h, const char *name, gv_err *err)
{
	gv_vmrec *r = NULL;
	gv_vmpaths p;
	gv_qmp *q = NULL;
	gv_err e = { "" };
	int rc;

	if (!name || host_get(h, name, &r, &e) < 0) {
		gv_err_set(err, -ENOENT, "%s", e.msg[0] ? e.msg : "no such VM");
		return NULL;
	}
	gv_vmpaths_init(&p, h->datadir, name);
	rc = mig_dst_incoming_keep(h, name) || r->state == GV_VM_RUNNING
		     ? 0
		     : gv_err_set(&e, -EIO, "the final copy of the disk did not complete here");
	uint64_t t0 = gv_now_ms(), t_in = 0, t_run = 0;
	if (rc == 0)
		rc = host_qmp(&p, &q, &e);
	if (rc == 0)
		rc = host_wait_migration(q, 60000, &e);
	t_in = gv_now_ms();
	if (rc == 0)
		rc = host_qmp_run(q, "cont", NULL, &e);
	t_run = gv_now_ms();
	if (rc == 0) {
		r->state = GV_VM_RUNNING;
		r->started = gv_now_s();
		rc = host_put(h, r, &e);
	}
	if (rc == 0)
		mig_dst_settled(&p);
	gv_qmp_free(q);
	gv_vmpaths_clear(&p);
	gv_vmrec_free(r);
	if (rc < 0) {
		*err = e;
		return NULL;
	}
	/* how long the guest waited here: for the incoming state, for cont */
	return json_pack("{s:b, s:I, s:I}", "ok", 1, "incoming_wait_ms", (json_int_t)(t_in - t0),
			 "cont_ms", (json_int_t)(t_run - t_in));
}

static json_t *mig_dst_live_confirm(gv_host *h, json_t *req)
{
	gv_err e = { "" };
	json_t *rep = mig_dst_run(h, json_string_value(json_object_get(req, "name")), &e);

	return rep ? rep : gv_err_json(-EIO, e.msg);
}

char *mig_dst_incoming_from(gv_host *h, const char *name)
{
	char *mark = gv_strdupf("%s/vms/%s/.incoming", h->datadir, name), *from = NULL;

	if (gv_read_file(mark, &from, NULL) < 0)
		from = NULL;
	free(mark);
	return from;
}

bool mig_dst_incoming_keep(gv_host *h, const char *name)
{
	char *mark = gv_strdupf("%s/vms/%s/.disk-final", h->datadir, name);
	bool keep = access(mark, F_OK) == 0;

	free(mark);
	return keep;
}

static json_t *mig_dst_live_abort(gv_host *h, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	gv_vmpaths p;

	gv_vmrec *r = NULL;
	char *from;

	if (!name || !gv_name_valid(name))
		return gv_err_json(-ENOENT, "no such VM");
	/* a VM that is settled here (confirmed, or adopted) is not dropped */
	from = mig_dst_incoming_from(h, name);
	if (!from && gv_store_vm_get(h->store, name, &r) == 0) {
		gv_vmrec_free(r);
		return gv_err_jsonf(-EBUSY, "VM %s runs here, settled; it is not dropped", name);
	}
	free(from);
	gv_vmpaths_init(&p, h->datadir, name);
	mig_dst_drop(h, name, &p);
	gv_vmpaths_clear(&p);
	return json_pack("{s:b}", "ok", 1);
}

static json_t *mig_dst_cold_in(gv_host *h, json_t *req)
{
	return mig_dst_cold(h, req, false);
}

static json_t *mig_dst_checkpoint_in(gv_host *h, json_t *req)
{
	return mig_dst_cold(h, req, true);
}

static const char *req_name(json_t *req)
{
	const char *name = json_string_value(json_object_get(json_object_get(req, "vm"), "name"));

	return name ? name : json_string_value(json_object_get(req, "name"));
}

/* For a source settling a migration: is the VM here, running, settled? */
static json_t *mig_dst_state(gv_host *h, json_t *req)
{
	const char *name = req_name(req);
	gv_vmrec *r = NULL;
	char *from = mig_dst_incoming_from(h, name);
	bool present = gv_store_vm_get(h->store, name, &r) == 0;
	json_t *rep;

	if (present)
		host_refresh(h, r);
	rep = json_pack("{s:b, s:b, s:b, s:b}", "ok", 1, "present", present, "running",
			present && r->state == GV_VM_RUNNING, "settled", present && !from);
	free(from);
	gv_vmrec_free(r);
	return rep;
}

static json_t *mig_dst_live_ping(gv_host *h, json_t *req)
{
	const char *name = req_name(req);
	gv_vmrec *r = NULL;
	json_t *rep = gv_store_vm_get(h->store, name, &r) == 0
			      ? json_pack("{s:b}", "ok", 1)
			      : gv_err_jsonf(-ENOENT, "no incoming VM %s here", name);

	gv_vmrec_free(r);
	return rep;
}

static json_t *mig_dst_ckpt(gv_host *h, json_t *req)
{
	return host_checkpoint_receive(h, json_string_value(json_object_get(req, "op")), req);
}

/* The destination's requests; each runs under the VM's lock. */
static const struct {
	const char *op;
	bool prefix; /* "ckpt-": the VM's checkpoints follow it */
	json_t *(*fn)(gv_host *h, json_t *req);
} mig_dst_ops[] = {
	{ "cold-in", false, mig_dst_cold_in },
	{ "checkpoint-in", false, mig_dst_checkpoint_in },
	{ "live-prepare", false, mig_dst_live_prepare },
	{ "live-disk", false, mig_dst_live_disk },
	{ "live-confirm", false, mig_dst_live_confirm },
	{ "live-abort", false, mig_dst_live_abort },
	{ "live-ping", false, mig_dst_live_ping },
	{ "state", false, mig_dst_state },
	{ "ckpt-", true, mig_dst_ckpt },
};

json_t *gv_migrate_control(void *ud, json_t *req)
{
	gv_host *h = ud;
	const char *op = json_string_value(json_object_get(req, "op"));
	const char *name = req_name(req);
	struct vmlock *l;
	json_t *rep = NULL;

	if (!op)
		return gv_err_json(-EINVAL, "no operation");
	if (!name || !gv_name_valid(name))
		return gv_err_json(-EINVAL, "no VM name");
	if (!strcmp(op, "hello")) /* are you there? (no lock: a migration holds it) */
		return json_pack("{s:b}", "ok", 1);
	for (size_t i = 0; i < sizeof(mig_dst_ops) / sizeof(mig_dst_ops[0]); i++) {
		if (mig_dst_ops[i].prefix ? strncmp(op, mig_dst_ops[i].op, strlen(mig_dst_ops[i].op))
					  : strcmp(op, mig_dst_ops[i].op))
			continue;
		uint64_t t0 = gv_now_ms();
		l = host_vm_lock(h, name);
		if (gv_now_ms() - t0 > 20)
			fprintf(stderr, "gridvmd: %s of %s waited %llu ms for the VM\n", op, name,
				(unsigned long long)(gv_now_ms() - t0));
		rep = mig_dst_ops[i].fn(h, req);
		host_vm_unlock(h, l);
		return rep;
	}
	return gv_err_jsonf(-EINVAL, "unknown operation %s", op);
}
