/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack.c - which parts of a running VM's disk file were written,
 * from QEMU's dirty bitmap, so that a live migration's later disk passes
 * hash only those blocks instead of the whole overlay.
 *
 * The bitmap ("gridvm-dirty", 4 KiB granularity) sits on the overlay's
 * file node (file0): its offsets are those of the qcow2 file we copy, and
 * it sees every write to it, qcow2 metadata included. QEMU has no command
 * that returns a bitmap's bits; they are read over NBD (the
 * qemu:dirty-bitmap metadata context, with libnbd). The file node itself
 * cannot be exported while the qcow2 node may grow it (an NBD export
 * forbids resizing), so each read goes through a scratch node:
 *
 *   blockdev-add null-co "gvdirty", the file node's current size
 *   transaction: add bitmap m on gvdirty, merge gridvm-dirty into m,
 *                clear gridvm-dirty                 (atomic: no write lost)
 *   nbd-server-start (once), block-export-add gvdirty with bitmap m
 *   block status over the export -> the dirty ranges
 *   block-export-del, blockdev-del gvdirty
 *
 * (A merge needs both bitmaps of one size; if the file grew between the
 * size query and the transaction, the transaction fails and is retried.)
 * All of it uses the VM's second monitor (blk.sock): the migration holds
 * the first one. Tokens name the state a reader last saw; a reader whose
 * token is not the current one gets tracking restarted (hash it all).
 *
 * At the switchover the migration freezes tracking: the last ranges are
 * read while the guest is stopped and before QEMU hands its disk over
 * (after that the node is inactive and must not be exported); the final
 * pass then takes them without talking to QEMU.
 */
#include "dirty_internal.h"

#include <errno.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BITMAP "gridvm-dirty"
#define SCRATCH "gvdirty"
#define GRANULARITY 4096
#define QMP_MS 5000

struct dirtytrack {
	struct dirtytrack *next;
	char vm[64];
	uint64_t token;
	bool frozen;	 /* the switchover read the last ranges */
	gv_extent *pend; /* read from QEMU, not handed out yet */
	size_t npend, cap;
};

struct extents {
	gv_extent *v;
	size_t n, cap;
	uint64_t next; /* where the replies reached */
	int err;
};

static int ext_add(gv_extent **v, size_t *n, size_t *cap, uint64_t off, uint64_t len)
{
	if (*n && (*v)[*n - 1].off + (*v)[*n - 1].len == off) {
		(*v)[*n - 1].len += len;
		return 0;
	}
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		gv_extent *nv = realloc(*v, c * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = (gv_extent){ off, len };
	return 0;
}

static int on_extents(void *ud, const char *ctx, uint64_t off, uint32_t *ent, size_t n,
		      int *error)
{
	struct extents *x = ud;

	(void)error;
	if (strcmp(ctx, "qemu:dirty-bitmap:m"))
		return 0;
	for (size_t i = 0; i + 1 < n && x->err == 0; i += 2) {
		if (ent[i + 1] & 1)
			x->err = ext_add(&x->v, &x->n, &x->cap, off, ent[i]);
		off += ent[i];
	}
	x->next = off;
	return 0;
}

/* The dirty ranges of bitmap m on the export at @sock. */
static int nbd_read_bitmap(const char *sock, struct extents *x, gv_err *e)
{
	struct nbd_handle *nbd = nbd_create();
	int64_t size;
	int r = 0;

	if (!nbd)
		return -ENOMEM;
	if (nbd_add_meta_context(nbd, "qemu:dirty-bitmap:m") < 0 ||
	    nbd_set_export_name(nbd, SCRATCH) < 0 || nbd_connect_unix(nbd, sock) < 0 ||
	    nbd_can_meta_context(nbd, "qemu:dirty-bitmap:m") != 1 ||
	    (size = nbd_get_size(nbd)) < 0) {
		r = gv_err_set(e, -EIO, "NBD: %s", nbd_get_error() ? nbd_get_error() : "no bitmap");
		nbd_close(nbd);
		return r;
	}
	for (uint64_t off = 0; off < (uint64_t)size && r == 0;) {
		uint64_t cnt = (uint64_t)size - off;

		if (cnt > (1u << 30))
			cnt = 1u << 30;
		x->next = off;
		if (nbd_block_status(nbd, cnt, off,
				     (nbd_extent_callback){ .callback = on_extents, .user_data = x },
				     0) < 0) {
			r = gv_err_set(e, -EIO, "NBD block status: %s",
				       nbd_get_error() ? nbd_get_error() : "failed");
		} else if (x->err) {
			r = x->err;
		} else if (x->next <= off) {
			r = gv_err_set(e, -EIO, "NBD block status made no progress");
		} else {
			off = x->next;
		}
	}
	(void)nbd_shutdown(nbd, 0);
	nbd_close(nbd);
	return r;
}

/* Where QEMU's NBD server for the VM in @dir listens. */
static char *nbd_sock(const char *dir)
{
	return gv_strdupf("%s/nbd.sock", dir);
}

/* Run @cmd with @args (stolen); on failure "CMD: why" in @e. */
static int qmp_do(gv_qmp *q, const char *cmd, json_t *args, json_t **ret, gv_err *e)
{
	int r = gv_qmp_execute(q, cmd, args, QMP_MS, ret, e);

	if (r < 0)
		gv_err_wrap(e, r, cmd);
	json_decref(args);
	return r;
}

/* Start QEMU's NBD server on @sock: the agent binds it (QEMU cannot write
 * the VM's directory) and passes the listening socket. */
static int nbd_start(gv_qmp *q, const char *sock, gv_err *e)
{
	int fd = gv_unix_listen(sock, 4), r;

	if (fd < 0)
		return gv_err_set(e, fd, "cannot listen on %s: %s", sock, strerror(-fd));
	r = gv_qmp_getfd(q, "gv-nbd", fd, QMP_MS, e);
	if (r < 0)
		gv_err_wrap(e, r, "getfd");
	if (r == 0)
		r = qmp_do(q, "nbd-server-start",
			   json_pack("{s:{s:s, s:{s:s}}}", "addr", "type", "fd", "data", "str",
				     "gv-nbd"), NULL, e);
	close(fd);
	if (r < 0)
		unlink(sock);
	return r;
}

/* The overlay file node's size, and whether it has our bitmap. */
static int file_node(gv_qmp *q, uint64_t *size, bool *tracked, gv_err *e)
{
	json_t *ret = NULL, *n;
	size_t i;
	int r = qmp_do(q, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), &ret, e);

	*tracked = false;
	json_array_foreach(ret, i, n) {
		json_t *bm;
		size_t k;

		if (strcmp(json_string_value(json_object_get(n, "node-name")) ?: "", "file0"))
			continue;
		*size = (uint64_t)json_integer_value(
			json_object_get(json_object_get(n, "image"), "virtual-size"));
		json_array_foreach(json_object_get(n, "dirty-bitmaps"), k, bm)
			if (!strcmp(json_string_value(json_object_get(bm, "name")) ?: "", BITMAP))
				*tracked = true;
		json_decref(ret);
		return 0;
	}
	json_decref(ret);
	return r < 0 ? r : gv_err_set(e, -ENOENT, "the VM has no disk file node");
}

static void scratch_drop(gv_qmp *q)
{
	/* an export goes when its last client has gone: give it a moment */
	/* (hard: our NBD client is gone, QEMU may not have noticed yet) */
	(void)qmp_do(q, "block-export-del", json_pack("{s:s, s:s}", "id", SCRATCH, "mode", "hard"),
		     NULL, NULL);
	for (int i = 0; i < 50; i++) {
		if (qmp_do(q, "blockdev-del", json_pack("{s:s}", "node-name", SCRATCH), NULL,
			   NULL) == 0)
			return;
		json_t *ret = NULL;
		bool gone = true;
		size_t k;
		json_t *n;
		if (qmp_do(q, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), &ret,
			   NULL) == 0)
			json_array_foreach(ret, k, n)
				if (!strcmp(json_string_value(json_object_get(n, "node-name")) ?: "",
					    SCRATCH))
					gone = false;
		json_decref(ret);
		if (gone)
			return;
		usleep(10000);
	}
}

/* Move the bitmap's bits into the scratch node, read them over NBD and
 * append the dirty ranges to @t->pend. The bitmap is cleared: on failure
 * the ranges are lost, and the caller must restart tracking. */
static int bitmap_read(gv_qmp *q, const gv_vmpaths *p, struct dirtytrack *t, gv_err *e)
{
	char *sock = nbd_sock(p->dir);
	struct extents x = { 0 };
	int r = -EAGAIN;

	for (int attempt = 0; attempt < 5 && r == -EAGAIN; attempt++) {
		uint64_t size = 0;
		bool tracked;

		if (attempt) /* a scratch node left from an earlier try */
			scratch_drop(q);
		r = file_node(q, &size, &tracked, e);
		if (r == 0 && !tracked)
			r = gv_err_set(e, -ESTALE, "QEMU has no dirty bitmap (restarted?)");
		if (r == 0 &&
		    qmp_do(q, "blockdev-add",
			   json_pack("{s:s, s:s, s:I}", "driver", "null-co", "node-name", SCRATCH,
				     "size", (json_int_t)size), NULL, e) < 0)
			r = -EAGAIN;
		else if (r == 0 &&
		    (r = qmp_do(q, "transaction",
			   json_pack("{s:[{s:s, s:{s:s, s:s, s:i, s:b}},"
				     "{s:s, s:{s:s, s:s, s:[{s:s, s:s}]}},"
				     "{s:s, s:{s:s, s:s}}]}", "actions",
				     "type", "block-dirty-bitmap-add", "data", "node", SCRATCH,
				     "name", "m", "granularity", GRANULARITY, "disabled", 1,
				     "type", "block-dirty-bitmap-merge", "data", "node", SCRATCH,
				     "target", "m", "bitmaps", "node", "file0", "name", BITMAP,
				     "type", "block-dirty-bitmap-clear", "data", "node", "file0",
				     "name", BITMAP), NULL, e)) == -EIO)
			r = -EAGAIN; /* refused: the file grew meanwhile, sizes differ */
		/* (any other failure, a timeout say, may have cleared the bitmap
		 * all the same: no retry, the caller restarts tracking) */
	}
	if (r == 0 && access(sock, F_OK) < 0) /* ours runs until tracking stops */
		r = nbd_start(q, sock, e);
	if (r == 0)
		r = qmp_do(q, "block-export-add",
			   json_pack("{s:s, s:s, s:s, s:s, s:[s], s:b}", "type", "nbd", "id",
				     SCRATCH, "node-name", SCRATCH, "name", SCRATCH, "bitmaps", "m",
				     "writable", 0), NULL, e);
	if (r == 0)
		r = nbd_read_bitmap(sock, &x, e);
	for (size_t i = 0; r == 0 && i < x.n; i++)
		r = ext_add(&t->pend, &t->npend, &t->cap, x.v[i].off, x.v[i].len);
	scratch_drop(q);
	free(x.v);
	free(sock);
	return r == -EAGAIN ? -EIO : r;
}

/* Start anew: an empty bitmap (created, or cleared if it is there), and
 * no NBD server yet (a socket left by an earlier QEMU goes). */
static int bitmap_restart(gv_qmp *q, const gv_vmpaths *p, gv_err *e)
{
	char *sock = nbd_sock(p->dir);
	uint64_t size;
	bool tracked;
	int r;

	scratch_drop(q);
	(void)qmp_do(q, "nbd-server-stop", NULL, NULL, NULL);
	unlink(sock);
	free(sock);
	r = file_node(q, &size, &tracked, e);
	if (r == 0 && tracked)
		return qmp_do(q, "block-dirty-bitmap-clear",
			      json_pack("{s:s, s:s}", "node", "file0", "name", BITMAP), NULL, e);
	if (r == 0)
		r = qmp_do(q, "block-dirty-bitmap-add",
			   json_pack("{s:s, s:s, s:i}", "node", "file0", "name", BITMAP,
				     "granularity", GRANULARITY), NULL, e);
	return r;
}

/* Call with h->dirty_mu held. */
static struct dirtytrack *track_get(gv_host *h, const char *vm, bool create)
{
	struct dirtytrack *t;

	for (t = h->dirty; t; t = t->next)
		if (!strcmp(t->vm, vm))
			return t;
	if (!create || !(t = calloc(1, sizeof(*t))))
		return NULL;
	snprintf(t->vm, sizeof(t->vm), "%s", vm);
	t->next = h->dirty;
	h->dirty = t;
	return t;
}

static void track_drop(gv_host *h, struct dirtytrack *t)
{
	for (struct dirtytrack **pp = &h->dirty; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			free(t->pend);
			free(t);
			return;
		}
}

/* "vm:NAME:disk" -> NAME; false for anything else. */
static bool disk_of(const char *name, char *vm, size_t len)
{
	const char *end;

	if (strncmp(name, "vm:", 3) || !(end = strchr(name + 3, ':')) || strcmp(end, ":disk") ||
	    (size_t)(end - name - 3) >= len || end == name + 3)
		return false;
	snprintf(vm, len, "%.*s", (int)(end - name - 3), name + 3);
	return gv_name_valid(vm);
}

static int blk_monitor(gv_host *h, const char *vm, gv_vmpaths *p, gv_qmp **q)
{
	gv_vmpaths_init(p, h->datadir, vm);
	if (access(p->blkmon, F_OK) < 0)
		return -ENOENT; /* a QEMU started before there was one */
	return gv_qmp_connect(p->blkmon, QMP_MS, q);
}

int gv_host_disk_dirty(void *ud, const char *name, uint64_t since, uint64_t *token,
		       gv_extent **ext, size_t *n)
{
	gv_host *h = ud;
	char vm[64];
	gv_err why = { "" };
	struct dirtytrack *t;
	gv_vmpaths p = { 0 };
	gv_qmp *q = NULL;
	int r = 0;

	*ext = NULL;
	*n = 0;
	if (!disk_of(name, vm, sizeof(vm)))
		return -ENOENT;
	pthread_mutex_lock(&h->dirty_mu);
	t = track_get(h, vm, true);
	if (!t) {
		r = -ENOMEM;
		goto out;
	}
	if (!t->frozen && (r = blk_monitor(h, vm, &p, &q)) < 0) {
		track_drop(h, t);
		goto out;
	}
	if (since && since == t->token) {
		if (!t->frozen && bitmap_read(q, &p, t, &why) < 0) {
			fprintf(stderr, "gridvmd: %s: cannot read the dirty bitmap (%s): "
				"tracking starts again\n", vm, why.msg);
			goto restart;
		}
		*ext = t->pend;
		*n = t->npend;
		t->pend = NULL;
		t->npend = t->cap = 0;
		*token = t->token = ++h->dirty_tick;
		goto out;
	}
restart:
	free(t->pend);
	t->pend = NULL;
	t->npend = t->cap = 0;
	t->token = 0;
	if (t->frozen) { /* QEMU is handing the disk over: no new bitmap */
		r = -EBUSY;
		goto out;
	}
	r = bitmap_restart(q, &p, &why);
	if (r < 0) {
		fprintf(stderr, "gridvmd: %s: no write tracking (%s)\n", vm, why.msg);
		track_drop(h, t);
		goto out;
	}
	*token = t->token = ++h->dirty_tick;
	r = 1;
out:
	pthread_mutex_unlock(&h->dirty_mu);
	gv_qmp_free(q);
	gv_vmpaths_clear(&p);
	return r;
}

void host_dirty_freeze(gv_host *h, const char *vm)
{
	gv_err why = { "" };
	struct dirtytrack *t;
	gv_vmpaths p = { 0 };
	gv_qmp *q = NULL;
	uint64_t t0 = gv_now_ms();

	pthread_mutex_lock(&h->dirty_mu);
	t = track_get(h, vm, true); /* also: nobody starts tracking now */
	if (t && t->token && !t->frozen) {
		if (blk_monitor(h, vm, &p, &q) < 0 || bitmap_read(q, &p, t, &why) < 0) {
			fprintf(stderr, "gridvmd: %s: cannot read the dirty bitmap (%s): the final "
				"disk pass hashes the whole overlay\n", vm, why.msg);
			t->token = 0;
		} else {
			fprintf(stderr, "gridvmd: %s: last dirty ranges read in %llu ms\n", vm,
				(unsigned long long)(gv_now_ms() - t0));
		}
	}
	if (t)
		t->frozen = true;
	pthread_mutex_unlock(&h->dirty_mu);
	gv_qmp_free(q);
	gv_vmpaths_clear(&p);
}

void host_dirty_stop(gv_host *h, const char *vm, bool qemu_goes_on)
{
	struct dirtytrack *t;
	gv_vmpaths p = { 0 };
	gv_qmp *q = NULL;

	pthread_mutex_lock(&h->dirty_mu);
	t = track_get(h, vm, false);
	if (t && qemu_goes_on && blk_monitor(h, vm, &p, &q) == 0) {
		(void)qmp_do(q, "block-dirty-bitmap-remove",
			     json_pack("{s:s, s:s}", "node", "file0", "name", BITMAP), NULL, NULL);
		(void)qmp_do(q, "nbd-server-stop", NULL, NULL, NULL);
	}
	if (t) {
		char *dir = gv_strdupf("%s/vms/%s", h->datadir, vm), *sock = nbd_sock(dir);
		unlink(sock);
		free(sock);
		free(dir);
	}
	if (t)
		track_drop(h, t);
	pthread_mutex_unlock(&h->dirty_mu);
	gv_qmp_free(q);
	gv_vmpaths_clear(&p);
}

static void host_dirty_free(gv_host *h)
{
	while (h->dirty)
		track_drop(h, h->dirty);
}

const host_module host_dirty_module = {
	.name = "dirtytrack",
	.close = host_dirty_free,
};
