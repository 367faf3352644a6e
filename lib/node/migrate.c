/* SPDX-License-Identifier: MIT */
/*
 * migrate.c - cold and live migration between agents (migrate.h).
 *
 * mig_src_* runs on the host the VM leaves, mig_dst_* on the host it goes
 * to. The source holds the VM's lock from start to end, so nothing else
 * touches the VM meanwhile; the destination is driven by control requests
 * ("cold-in", "live-prepare", "live-disk", "live-confirm", "live-abort").
 */
#include "host_internal.h"
#include <gridvm/base/fault.h>

#include <gridvm/node/image.h>
#include <gridvm/node/migrate.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- destination ------------------------------------------------- */

static json_t *reply_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *reply_err(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

/* Pull "vm:NAME:KIND" from the source into @dest. Live in-place passes
 * keep the index of what they left in @dest (DIR/.KIND.base.gvidx); the
 * next in-place pull then asks the source for the changes only. */
static int mig_dst_pull(gv_host *h, const char *from, const char *vm, const char *kind,
			const char *dest, bool local, bool in_place, bool live, gv_err *e)
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
	char host[256], err[512], *res = gv_strdupf("vm:%s:%s", vm, kind);
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
	if (r == 0 && (r = gv_fetch(&fo, &sum, err, sizeof(err))) < 0)
		gv_err_set(e, r, "cannot copy the VM's %s: %s", kind, err);
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
	int r = gv_vmdef_from_json(json_object_get(req, "vm"), d, e->msg, sizeof(e->msg));

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
		return reply_err("%s", e.msg);
	}
	name = strdup(d->name);
	state = gv_strdupf("%s/migrate.state", p.dir);
	r = mig_dst_base(h, d->image, from, &e);
	if (r == 0 && d->image)
		r = mig_dst_pull(h, from, name, k_disk, p.disk, true, false, false, &e);
	if (r == 0)
		r = mig_dst_rebase(h, d, &p, &e);
	if (r == 0)
		r = mig_dst_pull(h, from, name, k_state, state, false, false, false, &e);
	if (r == 0)
		r = mig_dst_pull(h, from, name, k_jobout, p.jobout, false, false, false, &e);
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
	return r < 0 ? reply_err("%s", e.msg) : json_pack("{s:b}", "ok", 1);
}

/* The memory stream's form, the same on both QEMUs: @compress "zstd"
 * (multifd channels with zstd, for links slower than the guest's memory
 * changes) or "none" (one plain channel). */
static int mig_stream_setup(gv_qmp *q, const char *compress, gv_err *e)
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
static int mig_dst_incoming(gv_host *h, const gv_vmpaths *p, const char *compress, char **uri,
			    gv_err *e)
{
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
		r = mig_stream_setup(q, compress, e);
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
	json_t *rep;
	int rc = mig_dst_begin(h, req, &d, &p, &e);

	if (rc < 0) {
		gv_vmpaths_clear(&p);
		return reply_err("%s", e.msg);
	}
	name = strdup(d->name);
	rc = mig_dst_base(h, d->image, from, &e);
	/* the guest keeps writing: copy in passes, no final check yet */
	if (rc == 0 && d->image)
		rc = mig_dst_pull(h, from, name, "disk", p.disk, true, true, true, &e);
	if (rc == 0)
		rc = mig_dst_rebase(h, d, &p, &e);
	if (rc == 0)
		rc = mig_dst_pull(h, from, name, "jobout", p.jobout, false, true, true, &e);
	if (rc == 0)
		rc = mig_dst_record(h, d, &p, GV_VM_PAUSED, NULL, &e);
	if (rc == 0 && (rc = host_get(h, name, &r, &e)) == 0)
		rc = vm_spawn_qemu(h, r, &p, true, &e);
	if (rc == 0 && (rc = host_put(h, r, &e)) == 0)
		rc = mig_dst_incoming(h, &p, json_string_value(json_object_get(req, "compress")),
				      &uri, &e);
	if (rc < 0)
		mig_dst_drop(h, name, &p);
	rep = rc < 0 ? reply_err("%s", e.msg) : json_pack("{s:b, s:s}", "ok", 1, "uri", uri);
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
	int rc;

	if (!name || host_get(h, name, &r, &e) < 0)
		return reply_err("%s", e.msg[0] ? e.msg : "no such VM");
	gv_vmpaths_init(&p, h->datadir, name);
	rc = r->def->image ? mig_dst_pull(h, from, name, "disk", p.disk, true, true, false, &e) : 0;
	if (rc == 0) /* the copy has the source's header again */
		rc = mig_dst_rebase(h, r->def, &p, &e);
	if (rc == 0)
		rc = mig_dst_pull(h, from, name, "jobout", p.jobout, false, true, false, &e);
	if (rc == 0) { /* confirm runs the guest only after this */
		char *mark = gv_strdupf("%s/.disk-final", p.dir);
		rc = gv_write_file_atomic(mark, "", 0);
		if (rc < 0)
			gv_err_set(&e, rc, "cannot write in %s", p.dir);
		free(mark);
	}
	gv_vmpaths_clear(&p);
	gv_vmrec_free(r);
	return rc < 0 ? reply_err("%s", e.msg) : json_pack("{s:b}", "ok", 1);
}

/* QEMU here has all the state: let the guest run and say so. The VM's
 * lock is held. */
static json_t *mig_dst_run(gv_host *h, const char *name, gv_err *err)
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
	rc = host_incoming_keep(h, name) || r->state == GV_VM_RUNNING
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

	return rep ? rep : reply_err("%s", e.msg);
}

char *host_incoming_from(gv_host *h, const char *name)
{
	char *mark = gv_strdupf("%s/vms/%s/.incoming", h->datadir, name), *from = NULL;

	if (gv_read_file(mark, &from, NULL) < 0)
		from = NULL;
	free(mark);
	return from;
}

bool host_incoming_keep(gv_host *h, const char *name)
{
	char *mark = gv_strdupf("%s/vms/%s/.disk-final", h->datadir, name);
	bool keep = access(mark, F_OK) == 0;

	free(mark);
	return keep;
}

int gv_migrate_adopt(gv_host *h, const char *name, json_t **out, gv_err *e)
{
	char host[256], err[512], *from;
	uint8_t key[GV_XFER_KEY_LEN];
	struct vmlock *l;
	json_t *rep = NULL;
	int port, r = 0;

	if (!gv_name_valid(name))
		return gv_err_set(e, -ENOENT, "no such VM: %s", name);
	l = host_vm_lock(h, name);
	from = host_incoming_from(h, name);
	if (!from)
		r = gv_err_set(e, -EINVAL, "VM %s is not an unconfirmed incoming migration here",
			       name);
	else if (!host_incoming_keep(h, name))
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
		int c = gv_xfer_control(host, port, key, hello, 10000, &rep, err, sizeof(err));
		json_decref(hello);
		/* only a source that cannot be reached at all counts as lost */
		if (c == 0)
			r = gv_err_set(e, -EBUSY, "the source %s answers: it settles the migration "
				       "of %s itself (see 'gridvm migrate status' there)", from, name);
		else if (c != -ECONNREFUSED && c != -ETIMEDOUT && c != -EHOSTUNREACH &&
			 c != -ENETUNREACH && c != -EHOSTDOWN)
			r = gv_err_set(e, -EBUSY, "the source %s is reachable but the request "
				       "failed (%s): not adopting", from, err);
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

static json_t *mig_dst_live_abort(gv_host *h, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	gv_vmpaths p;

	gv_vmrec *r = NULL;
	char *from;

	if (!name || !gv_name_valid(name))
		return reply_err("no such VM");
	/* a VM that is settled here (confirmed, or adopted) is not dropped */
	from = host_incoming_from(h, name);
	if (!from && gv_store_vm_get(h->store, name, &r) == 0) {
		gv_vmrec_free(r);
		return reply_err("VM %s runs here, settled; it is not dropped", name);
	}
	free(from);
	gv_vmpaths_init(&p, h->datadir, name);
	mig_dst_drop(h, name, &p);
	gv_vmpaths_clear(&p);
	return json_pack("{s:b}", "ok", 1);
}

json_t *gv_migrate_control(void *ud, json_t *req)
{
	gv_host *h = ud;
	const char *op = json_string_value(json_object_get(req, "op"));
	const char *name = json_string_value(json_object_get(json_object_get(req, "vm"), "name"));
	struct vmlock *l;
	json_t *rep;

	if (!op)
		return reply_err("no operation");
	if (!name)
		name = json_string_value(json_object_get(req, "name"));
	if (!name || !gv_name_valid(name))
		return reply_err("no VM name");
	if (!strcmp(op, "hello")) /* are you there? (no lock: a migration holds it) */
		return json_pack("{s:b}", "ok", 1);
	uint64_t t0 = gv_now_ms();
	l = host_vm_lock(h, name);
	if (gv_now_ms() - t0 > 20)
		fprintf(stderr, "gridvmd: %s of %s waited %llu ms for the VM\n", op, name,
			(unsigned long long)(gv_now_ms() - t0));
	if (!strcmp(op, "cold-in"))
		rep = mig_dst_cold(h, req, false);
	else if (!strcmp(op, "checkpoint-in"))
		rep = mig_dst_cold(h, req, true);
	else if (!strcmp(op, "live-prepare"))
		rep = mig_dst_live_prepare(h, req);
	else if (!strcmp(op, "live-disk"))
		rep = mig_dst_live_disk(h, req);
	else if (!strcmp(op, "live-confirm"))
		rep = mig_dst_live_confirm(h, req);
	else if (!strcmp(op, "live-abort"))
		rep = mig_dst_live_abort(h, req);
	else if (!strncmp(op, "ckpt-", 5)) /* the VM's checkpoints follow it */
		rep = host_checkpoint_receive(h, op, req);
	else if (!strcmp(op, "state")) { /* for a source settling a migration */
		gv_vmrec *r = NULL;
		char *from = host_incoming_from(h, name);
		bool present = gv_store_vm_get(h->store, name, &r) == 0;
		if (present)
			host_refresh(h, r);
		rep = json_pack("{s:b, s:b, s:b, s:b}", "ok", 1, "present", present, "running",
				present && r->state == GV_VM_RUNNING, "settled", present && !from);
		free(from);
		gv_vmrec_free(r);
	} else if (!strcmp(op, "live-ping")) {
		gv_vmrec *r = NULL;
		rep = gv_store_vm_get(h->store, name, &r) == 0
			      ? json_pack("{s:b}", "ok", 1)
			      : reply_err("no incoming VM %s here", name);
		gv_vmrec_free(r);
	}
	else
		rep = reply_err("unknown operation %s", op);
	host_vm_unlock(h, l);
	return rep;
}

/* ---- source ------------------------------------------------------ */

struct mig {
	gv_host *h;
	const char *mode;
	const char *ckpt; /* restore this checkpoint there ("" = the latest) */
	const char *compress; /* the memory stream: "zstd" or "none" */
	char to[300];
	gv_vmrec *r;
	const gv_vmpaths *p;
	char host[256];
	int port;
	uint8_t key[GV_XFER_KEY_LEN];
	gv_migrate_progress progress;
	void *ud;
	uint64_t t0;
	bool was_running; /* the guest ran when the migration began */
	bool keep_ckpts;  /* its checkpoints stay here */
	bool held;	  /* a fault point held it already */
	gv_err *e;
};

/* Phases, in the order they happen; a migration never goes back. */
static const char *const phases[] = { "prepare", "suspend", "transfer", "memory",
				      "disk-final", "switch", "confirm", "cleanup",
				      "done", "aborted" };

static int phase_index(const char *name)
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
static void phase(struct mig *m, const char *name, json_t *info)
{
	char *path = gv_strdupf("%s/migration.json", m->p->dir), *text, *old = NULL;
	json_t *j, *prev = NULL;

	if (gv_read_file(path, &old, NULL) == 0)
		prev = json_loads(old, 0, NULL);
	/* the guard: a phase is only ever replaced by a later one */
	if (phase_index(name) >= phase_index(json_string_value(json_object_get(prev, "phase"))) ||
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
	if (!j || phase_index(json_string_value(json_object_get(j, "phase"))) >= phase_index("switch"))
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
		char *from = j ? NULL : host_incoming_from(h, *n);
		if (from) {
			char *note = gv_strdupf("from %s, unconfirmed: the source settles it", from);
			j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f, s:{s:s}}", "vm", *n, "mode",
				      "incoming", "from", from, "to", "(here)", "phase",
				      host_incoming_keep(h, *n) ? "arrived" : "arriving", "seconds",
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
	char err[512];
	json_t *out = NULL;
	int r = gv_xfer_control(m->host, m->port, m->key, req, timeout_ms, &out, err,
				sizeof(err));

	json_decref(req);
	if (r < 0)
		return gv_err_set(m->e, r, "the destination %s:%d: %s", m->host, m->port, err);
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
static int mig_src_op(struct mig *m, const char *op, int timeout_ms, json_t **rep, gv_err *e)
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
static void mig_src_push_checkpoints(struct mig *m)
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

static int mig_src_cold(struct mig *m, json_t **summary)
{
	char *state = gv_strdupf("%s/migrate.state", m->p->dir);
	gv_err local = { "" };
	int r;

	unlink(state);
	phase(m, "suspend", NULL);
	r = vm_save_locked(m->h, m->r, m->p, state, m->e);
	if (r == 0) {
		phase(m, "transfer", NULL);
		r = mig_src_ask(m, vm_req(m, "cold-in"), 60 * 60 * 1000, NULL);
		if (r < 0 && vm_restore_locked(m->h, m->r, m->p, state, &local) == 0) {
			size_t n = strlen(m->e->msg);
			snprintf(m->e->msg + n, sizeof(m->e->msg) - n, "; the VM runs here again");
		}
	}
	if (r < 0)
		phase(m, "aborted", json_pack("{s:s}", "error", m->e->msg));
	if (r == 0) {
		phase(m, "cleanup", NULL);
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

	phase(m, "prepare", NULL);
	r = host_checkpoint_export(m->h, m->r, m->p, *m->ckpt ? m->ckpt : NULL, m->e);
	if (r == 0) {
		phase(m, "transfer", NULL);
		r = mig_src_ask(m, vm_req(m, "checkpoint-in"), 60 * 60 * 1000, NULL);
	}
	host_checkpoint_unexport(m->p);
	if (r < 0) {
		size_t n = strlen(m->e->msg);
		snprintf(m->e->msg + n, sizeof(m->e->msg) - n, "; the VM here is unchanged");
		phase(m, "aborted", json_pack("{s:s}", "error", m->e->msg));
		return r;
	}
	gv_err local;
	phase(m, "cleanup", NULL);
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
static int mig_src_precopy(struct mig *m, gv_qmp *q)
{
	uint64_t last_ping = gv_now_ms(), last_progress = 0;

	for (uint64_t end = gv_now_ms() + 60 * 60 * 1000; gv_now_ms() < end;) {
		json_t *st = NULL;
		int r = gv_qmp_execute(q, "query-migrate", NULL, 5000, &st, NULL);
		const char *s = json_string_value(json_object_get(st, "status"));
		if (r < 0 || !s || !strcmp(s, "failed") || !strcmp(s, "cancelled")) {
			const char *why = json_string_value(json_object_get(st, "error-desc"));
			json_decref(st);
			return gv_err_set(m->e, -EIO, "memory migration %s%s%s", s ? s : "failed",
					  why ? ": " : "", why ? why : "");
		}
		if (!strcmp(s, "pre-switchover")) {
			json_decref(st);
			return 0;
		}
		if (cancelled(m)) {
			json_decref(st);
			return gv_err_set(m->e, -ECANCELED, "migration cancelled");
		}
		if (gv_now_ms() - last_ping > 3000) { /* is the destination still there? */
			last_ping = gv_now_ms();
			if (mig_src_op(m, "live-ping", 5000, NULL, m->e) < 0) {
				json_decref(st);
				return -EHOSTDOWN;
			}
		}
		if (gv_now_ms() - last_progress >= 500) {
			last_progress = gv_now_ms();
			phase(m, "memory", json_incref(json_object_get(st, "ram")));
		}
		json_decref(st);
		usleep(10000);
	}
	return gv_err_set(m->e, -ETIMEDOUT, "memory migration did not converge");
}

/* Tell the destination to drop its half-made copy; false: it did not
 * answer (the agent tells it later, see host_migrations_settle). */
static bool mig_src_tell_abort(struct mig *m, int timeout_ms)
{
	return mig_src_op(m, "live-abort", timeout_ms, NULL, NULL) == 0;
}

/* Back out before the switch: the VM goes on here, the destination
 * forgets it (true: it said so). */
static bool mig_src_back_out(struct mig *m, gv_qmp *q)
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
};

static void *disk_final_thread(void *arg)
{
	struct disk_final *d = arg;

	d->r = mig_src_ask(&d->m, json_pack("{s:s, s:s, s:s}", "op", "live-disk", "name",
					    d->m.r->def->name, "from", d->m.h->xfer_addr),
			   60 * 60 * 1000, NULL);
	return NULL;
}

/* The guest is stopped (pre-switchover) and its disk quiet: the
 * destination copies the last disk changes while QEMU sends the last
 * memory pages and the device state; the destination activates its disk
 * only when the guest is resumed there (late-block-activate), which
 * confirm does once the disk copy is complete. */
static int mig_src_switch(struct mig *m, gv_qmp *q, uint64_t *paused_ms, bool *completed)
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
	if (r == 0) {
		phase(m, "disk-final", NULL);
		/* QEMU still owns the disk: the last written ranges, now */
		host_dirty_freeze(m->h, m->r->def->name);
		if (pthread_create(&th, NULL, disk_final_thread, &d) != 0)
			r = gv_err_set(m->e, -EAGAIN, "cannot start a thread");
	}
	if (r == 0) {
		phase(m, "switch", NULL);
		r = host_qmp_run(q, "migrate-continue", args, m->e);
		if (r == 0)
			r = host_wait_migration(q, 10 * 60 * 1000, m->e);
		*completed = r == 0;
		pthread_join(th, NULL);
		if (r == 0 && d.r < 0) {
			r = d.r;
			*m->e = d.e;
		}
	}
	*paused_ms = gv_now_ms() - t;
	json_decref(args);
	return r;
}

/* Requests while settling: short, the monitor thread waits for them. */
#define SETTLE_MS 15000

/* The switch happened but the destination's confirmation did not come
 * back: record it; host_migrations_settle() finishes it later. */
static void mig_src_unresolved(struct mig *m)
{
	size_t n = strlen(m->e->msg);

	snprintf(m->e->msg + n, sizeof(m->e->msg) - n,
		 "; the guest may already run there, so it stays paused here until the "
		 "destination answers (the agent keeps asking)");
	phase(m, "confirm", json_pack("{s:s}", "unresolved", m->e->msg));
	m->r->state = GV_VM_PAUSED;
	free(m->r->error);
	m->r->error = gv_strdupf("paused until its migration to %s is settled", m->to);
	(void)host_put(m->h, m->r, NULL);
}

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

	phase(m, "cleanup", NULL);
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
static int mig_src_settle(struct mig *m, const char *ph)
{
	int idx = phase_index(ph), d;
	const char *status = NULL;
	gv_qmp *q = NULL;
	json_t *st = NULL;
	gv_err ignore;
	int r = 0;

	if (idx == phase_index("aborted")) { /* only the destination is left to tell */
		if (!mig_src_tell_abort(m, SETTLE_MS))
			return -EAGAIN;
		phase(m, "aborted", json_pack("{s:s}", "error", "the migration was backed out"));
		return 0;
	}
	if (host_qmp(m->p, &q, &ignore) == 0 &&
	    gv_qmp_execute(q, "query-migrate", NULL, 5000, &st, NULL) == 0)
		status = json_string_value(json_object_get(st, "status"));
	if (idx >= phase_index("cleanup") && idx < phase_index("done")) {
		mig_src_moved(m, q);
		goto out;
	}
	if (!strcmp(m->mode, "live") && idx >= phase_index("switch") && status &&
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
	} else if (strcmp(m->mode, "live") || (!q && idx >= phase_index("switch"))) {
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
	phase(m, "aborted", json_pack("{s:s}", "error", "the migration was interrupted "
				      "(agent restart or no answer); the VM stays here"));
	fprintf(stderr, "gridvmd: migration of %s to %s backed out: it stays here\n",
		m->r->def->name, m->to);
	r = 0;
out:
	json_decref(st);
	gv_qmp_free(q);
	return r;
}

static int mig_src_live(struct mig *m, json_t **summary)
{
	json_t *caps = json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability",
				 "pause-before-switchover", "state", 1, "capability",
				 "auto-converge", "state", 1);
	json_t *rep = NULL, *args = NULL, *st = NULL, *conf = NULL;
	gv_qmp *q = NULL;
	uint64_t paused = 0, t_done = 0;
	bool completed = false;
	int r;

	phase(m, "prepare", NULL);
	json_t *req = vm_req(m, "live-prepare");
	json_object_set_new(req, "compress", json_string(m->compress));
	r = mig_src_ask(m, req, 60 * 60 * 1000, &rep);
	if (r == 0)
		r = host_qmp(m->p, &q, m->e);
	if (r == 0)
		r = host_qmp_run(q, "migrate-set-capabilities", caps, m->e);
	if (r == 0)
		r = mig_stream_setup(q, m->compress, m->e);
	if (r == 0) {
		args = json_pack("{s:s}", "uri", json_string_value(json_object_get(rep, "uri")));
		r = host_qmp_run(q, "migrate", args, m->e);
	}
	if (r == 0)
		r = mig_src_precopy(m, q);
	if (r == 0)
		r = mig_src_switch(m, q, &paused, &completed);
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
		phase(m, "confirm", NULL);
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
		phase(m, "aborted", json_pack("{s:s, s:b}", "error", m->e->msg, "dest_pending",
					      !told && rep));
	}
	if (r == 0) {
		gv_err local;
		phase(m, "cleanup", NULL);
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
			 .keep_ckpts = o->keep_checkpoints };
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
		if (host_migration_unsettled(h, name, e))
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

/* The migration record of a VM that is still in flight, or NULL. */
static json_t *inflight(gv_host *h, const char *name)
{
	char *path = gv_strdupf("%s/vms/%s/migration.json", h->datadir, name);
	json_t *j = json_load_file(path, 0, NULL);
	int idx = phase_index(json_string_value(json_object_get(j, "phase")));

	free(path);
	if (idx == phase_index("aborted") &&
	    json_is_true(json_object_get(json_object_get(j, "info"), "dest_pending")))
		return j;
	if (idx < 0 || idx >= phase_index("done")) {
		json_decref(j);
		return NULL;
	}
	return j;
}

bool host_migration_unsettled(gv_host *h, const char *name, gv_err *e)
{
	char *from = host_incoming_from(h, name);

	if (from) {
		gv_err_set(e, -EBUSY, "VM %s is arriving by migration from %s and not confirmed "
			   "yet; the source settles it (if that host is lost for good: 'gridvm "
			   "migrate adopt %s')", name, *from ? from : "another host", name);
		free(from);
		return true;
	}
	json_t *j = inflight(h, name);

	if (!j || phase_index(json_string_value(json_object_get(j, "phase"))) ==
			  phase_index("aborted")) { /* it runs here; only the destination
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

void host_migrations_settle(gv_host *h, bool wait)
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
