/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.c - checkpoints of VMs into the chunk store (checkpoint.h).
 *
 * Create: QEMU migrates the running guest to a unix socket the agent
 * listens on; a thread cuts the stream into content-defined chunks as it
 * arrives. When QEMU reports completion the guest is stopped; the agent
 * stores the disk overlay (fixed 64 KiB chunks, qcow2's cluster size),
 * notes how much job output exists, syncs, and lets the guest go on. The
 * pause is QEMU's downtime plus that disk step; both are reported.
 */
#include "host_internal.h"

#include <gridvm/node/checkpoint.h>
#include <gridvm/blocks/chunk.h>

#include <openssl/evp.h>
#include <pthread.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DISK_CHUNK (64u << 10)

struct capture {
	gv_chunkstore *cs;
	json_t *chunks; /* [[sha256 hex, length], ...] */
	uint64_t bytes, added;
	int err;
	/* the previous checkpoint's memory stream: chunk k starts at
	 * prev_off[k] (prev_off[nprev] = its end); new chunks are stored as
	 * deltas to the one at the same place */
	uint8_t *prev;
	uint64_t *prev_off;
	size_t nprev;
};

/* The previous stream's chunk that overlaps [off, off + n) most, or -1. */
static long prev_at(const struct capture *c, uint64_t off, size_t n)
{
	size_t lo = 0, hi = c->nprev;
	long best = -1;
	uint64_t most = 0;

	if (!c->nprev || off >= c->prev_off[c->nprev])
		return -1;
	while (hi - lo > 1) { /* the last chunk starting at or before off */
		size_t mid = (lo + hi) / 2;
		if (c->prev_off[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (size_t k = lo; k < c->nprev && c->prev_off[k] < off + n; k++) {
		uint64_t a = off > c->prev_off[k] ? off : c->prev_off[k];
		uint64_t b = off + n < c->prev_off[k + 1] ? off + n : c->prev_off[k + 1];
		if (b > a && b - a > most) {
			most = b - a;
			best = (long)k;
		}
	}
	return best;
}

static int capture_chunk(void *ud, const uint8_t *d, size_t n)
{
	struct capture *c = ud;
	uint8_t h[32];
	char hex[65];
	uint64_t added;
	long k = prev_at(c, c->bytes, n);
	int r = k >= 0 ? gv_chunkstore_put_delta(c->cs, d, n, c->prev + 32 * k, h, &added)
		       : gv_chunkstore_put(c->cs, d, n, h, &added);

	if (r < 0)
		return c->err = r;
	gv_hash_hex(h, hex);
	json_array_append_new(c->chunks, json_pack("[s, I]", hex, (json_int_t)n));
	c->bytes += n;
	c->added += added;
	return 0;
}

struct memcap {
	int lfd;
	struct capture cap;
	pthread_t thread;
};

static void *memcap_thread(void *arg)
{
	struct memcap *m = arg;
	struct pollfd p = { m->lfd, POLLIN, 0 };
	gv_cdc *cdc = gv_cdc_new();
	uint8_t *buf = malloc(1 << 20);
	int fd = -1;
	ssize_t n;

	if (!cdc || !buf || poll(&p, 1, 60000) != 1 ||
	    (fd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		m->cap.err = -ETIMEDOUT;
		goto out;
	}
	while (m->cap.err == 0 && (n = read(fd, buf, 1 << 20)) > 0)
		if (gv_cdc_feed(cdc, buf, (size_t)n, capture_chunk, &m->cap) < 0)
			break;
	if (m->cap.err == 0 && gv_cdc_finish(cdc, capture_chunk, &m->cap) < 0)
		m->cap.err = m->cap.err ? m->cap.err : -EIO;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	gv_cdc_free(cdc);
	return NULL;
}

static int capture_disk(struct capture *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf = malloc(DISK_CHUNK);
	ssize_t n;
	int r = 0;

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return fd < 0 ? -errno : -ENOMEM;
	}
	while (r == 0 && (n = read(fd, buf, DISK_CHUNK)) > 0)
		r = capture_chunk(c, buf, (size_t)n);
	close(fd);
	free(buf);
	return r;
}

static char *ckpt_dir(gv_host *h, const char *vm)
{
	return gv_strdupf("%s/checkpoints/%s", h->datadir, vm);
}

static char *new_id(void)
{
	struct timespec ts;
	struct tm tm;
	char buf[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
	return gv_strdupf("%s-%03ld", buf, ts.tv_nsec / 1000000);
}

/* Run the migration into the capture thread; on return the guest is
 * stopped (postmigrate) if it succeeded. */
static int capture_memory(const gv_vmpaths *p, gv_qmp *q, struct memcap *m,
			  json_t **migstat, gv_err *e)
{
	char *sock = gv_strdupf("%s/ckpt.sock", p->dir), *uri = gv_strdupf("unix:%s", sock);
	json_t *args = json_pack("{s:s}", "uri", uri);
	int r;

	m->lfd = gv_unix_listen(sock, 1);
	if (m->lfd < 0) {
		r = gv_err_set(e, m->lfd, "cannot listen on %s", sock);
		goto out;
	}
	pthread_create(&m->thread, NULL, memcap_thread, m);
	r = host_qmp_run(q, "migrate", args, e);
	if (r == 0)
		r = host_wait_migration(q, 30 * 60 * 1000, e);
	if (r < 0)
		(void)host_qmp_run(q, "migrate_cancel", NULL, NULL);
	if (r == 0 && gv_qmp_execute(q, "query-migrate", NULL, 5000, migstat, NULL) < 0)
		*migstat = NULL;
	if (r < 0)
		shutdown(m->lfd, SHUT_RDWR);
	pthread_join(m->thread, NULL);
	close(m->lfd);
	if (r == 0 && m->cap.err < 0)
		r = gv_err_set(e, m->cap.err, "cannot store the memory stream: %s",
			       strerror(-m->cap.err));
out:
	unlink(sock);
	json_decref(args);
	free(uri);
	free(sock);
	return r;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

/* The manifest: what was captured and what it cost. */
static json_t *manifest(gv_vmrec *r, const char *id, struct memcap *m, struct capture *d,
			json_t *migstat, uint64_t jobout, double pause_ms, double secs)
{
	json_t *ram = json_object_get(migstat, "ram");
	json_t *j = json_pack("{s:i, s:s, s:s, s:I, s:s, s:I, s:f, s:f}", "version", 1,
			      "id", id, "vm", r->def->name, "created", (json_int_t)gv_now_s(),
			      "state", gv_vmstate_name(r->state), "jobout_bytes",
			      (json_int_t)jobout, "pause_ms", pause_ms, "seconds", secs);

	json_object_set_new(j, "def", gv_vmdef_to_json(r->def));
	json_object_set_new(j, "qemu_downtime_ms", json_incref(json_object_get(migstat, "downtime")));
	json_object_set_new(j, "memory", json_pack("{s:I, s:O, s:O}", "bytes",
						   (json_int_t)m->cap.bytes, "chunks", m->cap.chunks,
						   "qemu_ram", ram ? ram : json_null()));
	json_object_set_new(j, "disk", json_pack("{s:s, s:I, s:i, s:O}", "file", "disk.qcow2",
						 "bytes", (json_int_t)d->bytes, "chunk_size",
						 DISK_CHUNK, "chunks", d->chunks));
	json_object_set_new(j, "bytes_added", json_integer((json_int_t)(m->cap.added + d->added)));
	return j;
}

/* --- checkpoints in the host-wide block index ----------------------
 * A checkpoint's disk (the overlay as of that instant) joins the host
 * index as source "ckpt:VM:ID" whose path is its manifest; its block
 * index (4 KiB blocks of the overlay) is ID.gvidx beside the manifest.
 * Transfers read such blocks through host_checkpoint_read. */

static int ckpt_blockidx(gv_chunkstore *cs, json_t *chunks, uint64_t size, gv_blockidx **out)
{
	gv_blockidx *bi = calloc(1, sizeof(*bi));
	uint64_t b = 0;
	json_t *c;
	size_t i;
	int r = bi ? 0 : -ENOMEM;

	if (r == 0) {
		bi->block_shift = GV_BLOCKIDX_DEFAULT_SHIFT;
		bi->image_size = size;
		bi->nblocks = (size + 4095) / 4096;
		bi->hashes = calloc(bi->nblocks ? bi->nblocks : 1, GV_HASH_LEN);
		if (!bi->hashes)
			r = -ENOMEM;
	}
	json_array_foreach(chunks, i, c) {
		uint8_t h[32], *data = NULL;
		size_t len = 0;
		if (r < 0)
			break;
		if (gv_hash_parse(json_string_value(json_array_get(c, 0)), h) < 0 ||
		    gv_chunkstore_get(cs, h, &data, &len) < 0) {
			r = -EBADMSG;
			break;
		}
		for (size_t off = 0; off < len && b < bi->nblocks; off += 4096, b++) {
			size_t n = len - off < 4096 ? len - off : 4096;
			bool zero = true;
			for (size_t k = 0; zero && k < n; k++)
				zero = data[off + k] == 0;
			if (zero)
				bi->zero_blocks++;
			else
				EVP_Digest(data + off, n, bi->hashes + b * GV_HASH_LEN, NULL,
					   EVP_sha256(), NULL);
		}
		free(data);
	}
	if (r == 0 && b != bi->nblocks)
		r = -EBADMSG;
	if (r < 0) { /* (no whole-disk digest: nothing checks it for a checkpoint) */
		gv_blockidx_free(bi);
		return r;
	}
	*out = bi;
	return 0;
}

/* After a checkpoint is written (the guest runs again): its disk blocks
 * join the host index. Failures only cost deduplication. */
static void ckpt_index_add(gv_host *h, gv_chunkstore *cs, const char *vm, const char *id,
			   json_t *chunks, uint64_t size)
{
	char *man = gv_strdupf("%s/checkpoints/%s/%s.json", h->datadir, vm, id);
	char *idx = gv_strdupf("%s/checkpoints/%s/%s.gvidx", h->datadir, vm, id);
	char *name = gv_strdupf("ckpt:%s:%s", vm, id);
	gv_blockidx *bi = NULL;
	struct stat st;
	gv_err e;
	int r = ckpt_blockidx(cs, chunks, size, &bi);

	if (r == 0 && stat(man, &st) == 0) /* current for the manifest */
		bi->image_mtime_ns = gv_stat_mtime_ns(&st);
	if (r == 0)
		r = gv_blockidx_save(bi, idx);
	if (r == 0)
		r = host_hostidx_add(h, name, man, idx, bi, &e);
	if (r < 0)
		fprintf(stderr, "gridvmd: checkpoint %s of %s not in the host index: %s\n", id, vm,
			strerror(-r));
	gv_blockidx_free(bi);
	free(man);
	free(idx);
	free(name);
}

static void ckpt_index_remove(gv_host *h, const char *vm, const char *id)
{
	char *idx = gv_strdupf("%s/checkpoints/%s/%s.gvidx", h->datadir, vm, id);
	char *name = gv_strdupf("ckpt:%s:%s", vm, id);

	host_hostidx_drop(h, name, idx);
	free(idx);
	free(name);
}

struct ckpt_reader {
	gv_host *h;
	char *path;	 /* the manifest of the chunks below */
	json_t *chunks;	 /* its disk chunks */
	gv_chunkstore *cs;
	long cur;	 /* the chunk in @data, -1: none */
	uint8_t *data;
	size_t len;
};

void *host_checkpoint_reader(gv_host *h)
{
	struct ckpt_reader *c = calloc(1, sizeof(*c));
	char *csdir = gv_strdupf("%s/chunks", h->datadir);

	if (c && gv_chunkstore_open(csdir, &c->cs) < 0) {
		free(c);
		c = NULL;
	}
	if (c) {
		c->h = h;
		c->cur = -1;
	}
	free(csdir);
	return c;
}

void host_checkpoint_reader_free(void *ud)
{
	struct ckpt_reader *c = ud;

	if (!c)
		return;
	free(c->path);
	json_decref(c->chunks);
	gv_chunkstore_close(c->cs);
	free(c->data);
	free(c);
}

/* gv_fetch_opts.local_read: bytes of a checkpoint's disk, by manifest. */
int host_checkpoint_read(void *ud, const char *path, void *buf, size_t len, uint64_t off)
{
	struct ckpt_reader *c = ud;
	long k = (long)(off / DISK_CHUNK);
	uint8_t h[32];

	if (!c->path || strcmp(c->path, path)) {
		json_t *man = json_load_file(path, 0, NULL);
		free(c->path);
		json_decref(c->chunks);
		c->path = strdup(path);
		c->chunks = json_incref(json_object_get(json_object_get(man, "disk"), "chunks"));
		c->cur = -1;
		json_decref(man);
	}
	if (k != c->cur) {
		free(c->data);
		c->data = NULL;
		c->cur = -1;
		if (gv_hash_parse(json_string_value(json_array_get(json_array_get(c->chunks,
										   (size_t)k), 0)), h) < 0 ||
		    gv_chunkstore_get(c->cs, h, &c->data, &c->len) < 0)
			return -ENOENT;
		c->cur = k;
	}
	if (off % DISK_CHUNK + len > c->len)
		return -EIO;
	memcpy(buf, c->data + off % DISK_CHUNK, len);
	return 0;
}

static int load_chosen(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e);

/* The chunks of @vm's latest checkpoint's memory stream, for deltas.
 * None (first checkpoint, unreadable manifest): chunks are stored whole. */
static void prev_stream(gv_host *h, const char *vm, struct capture *c)
{
	json_t *man = NULL, *list, *ch;
	uint64_t off = 0;
	size_t i, n;

	if (load_chosen(h, vm, NULL, &man, NULL) < 0)
		return;
	list = json_object_get(json_object_get(man, "memory"), "chunks");
	n = json_array_size(list);
	c->prev = malloc(32 * (n ? n : 1));
	c->prev_off = malloc(sizeof(uint64_t) * (n + 1));
	if (!c->prev || !c->prev_off)
		n = 0;
	json_array_foreach(list, i, ch) {
		if (i >= n || gv_hash_parse(json_string_value(json_array_get(ch, 0)),
					    c->prev + 32 * i) < 0) {
			n = 0;
			break;
		}
		c->prev_off[i] = off;
		off += (uint64_t)json_integer_value(json_array_get(ch, 1));
	}
	if (n)
		c->prev_off[n] = off;
	c->nprev = n;
	json_decref(man);
}

static int do_create(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, json_t **out, gv_err *e)
{
	struct memcap m = { .lfd = -1 };
	struct capture d = { 0 };
	char *dir = ckpt_dir(h, r->def->name), *id = new_id(), *path = NULL, *text;
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	bool was_running = r->state == GV_VM_RUNNING;
	json_t *migstat = NULL, *man = NULL;
	uint64_t t0 = gv_now_ms(), t_stop = 0, jobout = 0;
	gv_qmp *q = NULL;
	int rc = gv_chunkstore_open(csdir, &m.cap.cs);

	m.cap.chunks = json_array();
	d.chunks = json_array();
	d.cs = m.cap.cs;
	prev_stream(h, r->def->name, &m.cap);
	if (rc == 0)
		rc = gv_mkdir_p(dir, 0755);
	if (rc < 0) {
		gv_err_set(e, rc, "cannot prepare the checkpoint store: %s", strerror(-rc));
		goto out;
	}
	rc = host_qmp(p, &q, e);
	if (rc == 0)
		rc = capture_memory(p, q, &m, &migstat, e);
	t_stop = gv_now_ms();
	if (rc == 0 && (rc = capture_disk(&d, p->disk)) < 0)
		gv_err_set(e, rc, "cannot store the disk: %s", strerror(-rc));
	jobout = gv_file_size(p->jobout);
	if (rc == 0)
		sync_dir(csdir);
	if (q && was_running && host_qmp_run(q, "cont", NULL, rc == 0 ? e : NULL) < 0 && rc == 0)
		rc = -EIO;
	if (rc < 0)
		goto out;
	double downtime = (double)json_integer_value(json_object_get(migstat, "downtime"));
	double pause = was_running ? downtime + (double)(gv_now_ms() - t_stop) : 0;
	man = manifest(r, id, &m, &d, migstat, jobout, pause,
		       (double)(gv_now_ms() - t0) / 1000.0);
	path = gv_strdupf("%s/%s.json", dir, id);
	text = json_dumps(man, JSON_INDENT(1));
	rc = gv_write_file_atomic(path, text, strlen(text));
	free(text);
	if (rc < 0)
		gv_err_set(e, rc, "cannot write %s", path);
	if (rc == 0)
		ckpt_index_add(h, m.cap.cs, r->def->name, id, d.chunks, d.bytes);
out:
	if (rc == 0) {
		json_object_del(man, "def");
		json_object_del(json_object_get(man, "memory"), "chunks");
		json_object_del(json_object_get(man, "disk"), "chunks");
		*out = man;
	} else {
		json_decref(man);
	}
	gv_qmp_free(q);
	gv_chunkstore_close(m.cap.cs);
	json_decref(m.cap.chunks);
	json_decref(d.chunks);
	free(m.cap.prev);
	free(m.cap.prev_off);
	json_decref(migstat);
	free(dir);
	free(id);
	free(path);
	free(csdir);
	return rc;
}

static int create_verb(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *out,
		       gv_err *e)
{
	int rc;

	if (r->state != GV_VM_RUNNING && r->state != GV_VM_PAUSED)
		return host_bad_state(r, "checkpoint", e);
	pthread_mutex_lock(&h->ckpt_mu);
	rc = do_create(h, r, p, (json_t **)out, e);
	pthread_mutex_unlock(&h->ckpt_mu);
	return rc;
}

int gv_checkpoint_create(gv_host *h, const char *vm, json_t **manifest_out, gv_err *e)
{
	int rc = host_with_vm(h, vm, create_verb, manifest_out, e);

	if (rc == 0)
		host_checkpoint_retain(h, vm);
	return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Manifest ids of @vm, oldest first (ids sort by time). */
static char **list_ids(gv_host *h, const char *vm)
{
	char *dir = ckpt_dir(h, vm);
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, NULL, by_name);
	char **ids = calloc(n > 0 ? (size_t)n + 1 : 1, sizeof(*ids));
	size_t k = 0;

	for (int i = 0; i < n; i++) {
		size_t len = strlen(ents[i]->d_name);
		if (len > 5 && !strcmp(ents[i]->d_name + len - 5, ".json"))
			ids[k++] = gv_strdupf("%.*s", (int)(len - 5), ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	free(dir);
	return ids;
}

static int load_manifest(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e)
{
	char *path;

	if (!gv_name_valid(vm) || !id || !gv_name_valid(id))
		return gv_err_set(e, -ENOENT, "no such checkpoint: %s %s", vm, id ? id : "");
	path = gv_strdupf("%s/checkpoints/%s/%s.json", h->datadir, vm, id);
	*out = json_load_file(path, 0, NULL);
	free(path);
	if (!*out)
		return gv_err_set(e, -ENOENT, "no such checkpoint: %s %s", vm, id);
	return 0;
}

/* Checkpoint @id of @vm, or its latest if @id is NULL. */
static int load_chosen(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e)
{
	char **ids = id ? NULL : list_ids(h, vm);
	size_t n = gv_strv_len(ids);
	int r = id || n ? load_manifest(h, vm, id ? id : ids[n - 1], out, e)
			: gv_err_set(e, -ENOENT, "VM %s has no checkpoints", vm);

	gv_strv_free(ids);
	return r;
}

static json_t *summary_of(json_t *man)
{
	json_t *s = json_deep_copy(man);

	json_object_del(s, "def");
	json_object_del(json_object_get(s, "memory"), "chunks");
	json_object_del(json_object_get(s, "disk"), "chunks");
	return s;
}

json_t *gv_checkpoint_list(gv_host *h, const char *vm)
{
	json_t *a = json_array();
	char **vms = NULL, **ids;

	if (!vm) {
		char *dir = gv_strdupf("%s/checkpoints", h->datadir);
		struct dirent **ents = NULL;
		int n = scandir(dir, &ents, NULL, by_name);
		vms = calloc(n > 0 ? (size_t)n + 1 : 1, sizeof(*vms));
		for (int i = 0, k = 0; i < n; i++) {
			if (ents[i]->d_name[0] != '.')
				vms[k++] = strdup(ents[i]->d_name);
			free(ents[i]);
		}
		free(ents);
		free(dir);
	}
	for (size_t v = 0; vm ? v < 1 : vms[v] != NULL; v++) {
		const char *name = vm ? vm : vms[v];
		ids = list_ids(h, name);
		for (char **id = ids; *id; id++) {
			json_t *man = NULL;
			if (load_manifest(h, name, *id, &man, NULL) == 0)
				json_array_append_new(a, summary_of(man));
			json_decref(man);
		}
		gv_strv_free(ids);
	}
	gv_strv_free(vms);
	return a;
}

int gv_checkpoint_show(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e)
{
	json_t *man = NULL;
	int r = load_manifest(h, vm, id, &man, e);

	if (r == 0) {
		*out = summary_of(man);
		json_object_set_new(*out, "memory_chunks",
				    json_integer((json_int_t)json_array_size(json_object_get(
					    json_object_get(man, "memory"), "chunks"))));
		json_object_set_new(*out, "disk_chunks",
				    json_integer((json_int_t)json_array_size(json_object_get(
					    json_object_get(man, "disk"), "chunks"))));
	}
	json_decref(man);
	return r;
}

/* --- deleting, and the chunks nothing refers to any more ---------- */

struct refs {
	uint8_t (*h)[32];
	size_t n, cap;
};

static void refs_add_list(struct refs *rf, json_t *chunks)
{
	json_t *c;
	size_t i;

	json_array_foreach(chunks, i, c) {
		if (rf->n == rf->cap) {
			rf->cap = rf->cap ? rf->cap * 2 : 4096;
			rf->h = realloc(rf->h, rf->cap * 32);
			if (!rf->h)
				abort();
		}
		if (gv_hash_parse(json_string_value(json_array_get(c, 0)), rf->h[rf->n]) == 0)
			rf->n++;
	}
}

static int cmp32(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

static bool refs_keep(void *ud, const uint8_t hash[32])
{
	struct refs *rf = ud;

	return bsearch(hash, rf->h, rf->n, 32, cmp32) != NULL;
}

/* Delete every chunk no manifest of any VM refers to. h->ckpt_mu held. */
static int chunk_gc(gv_host *h, uint64_t *freed)
{
	json_t *all = gv_checkpoint_list(h, NULL), *s;
	struct refs rf = { 0 };
	gv_chunkstore *cs = NULL;
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	size_t i;
	int r;

	json_array_foreach(all, i, s) {
		json_t *man = NULL;
		if (load_manifest(h, json_string_value(json_object_get(s, "vm")),
				  json_string_value(json_object_get(s, "id")), &man, NULL) < 0)
			continue;
		refs_add_list(&rf, json_object_get(json_object_get(man, "memory"), "chunks"));
		refs_add_list(&rf, json_object_get(json_object_get(man, "disk"), "chunks"));
		json_decref(man);
	}
	qsort(rf.h, rf.n, 32, cmp32);
	r = gv_chunkstore_open(csdir, &cs);
	if (r == 0)
		r = gv_chunkstore_gc(cs, refs_keep, &rf, freed);
	gv_chunkstore_close(cs);
	json_decref(all);
	free(rf.h);
	free(csdir);
	return r;
}

static int delete_locked(gv_host *h, const char *vm, const char *id, gv_err *e)
{
	json_t *man = NULL;
	char *path;
	uint64_t freed = 0;
	int r = load_manifest(h, vm, id, &man, e);

	json_decref(man);
	if (r < 0)
		return r;
	ckpt_index_remove(h, vm, id);
	path = gv_strdupf("%s/checkpoints/%s/%s.json", h->datadir, vm, id);
	if (unlink(path) < 0)
		r = gv_err_set(e, -errno, "cannot delete %s: %s", path, strerror(errno));
	free(path);
	if (r == 0 && (r = chunk_gc(h, &freed)) < 0)
		gv_err_set(e, r, "cannot clean the chunk store: %s", strerror(-r));
	return r;
}

int gv_checkpoint_delete(gv_host *h, const char *vm, const char *id, gv_err *e)
{
	int r;

	pthread_mutex_lock(&h->ckpt_mu);
	r = delete_locked(h, vm, id, e);
	pthread_mutex_unlock(&h->ckpt_mu);
	return r;
}

void host_checkpoint_retain(gv_host *h, const char *vm)
{
	gv_vmrec *r = NULL;
	char **ids;
	size_t n;

	if (gv_store_vm_get(h->store, vm, &r) < 0)
		return;
	ids = list_ids(h, vm);
	n = gv_strv_len(ids);
	pthread_mutex_lock(&h->ckpt_mu);
	for (size_t i = 0; r->def->checkpoint_keep > 0 && i + (size_t)r->def->checkpoint_keep < n; i++)
		if (delete_locked(h, vm, ids[i], NULL) < 0)
			break;
	pthread_mutex_unlock(&h->ckpt_mu);
	gv_strv_free(ids);
	gv_vmrec_free(r);
}

void host_checkpoint_drop_all(gv_host *h, const char *vm)
{
	char **ids = list_ids(h, vm);

	pthread_mutex_lock(&h->ckpt_mu);
	for (char **id = ids; *id; id++)
		if (delete_locked(h, vm, *id, NULL) < 0)
			break;
	pthread_mutex_unlock(&h->ckpt_mu);
	gv_strv_free(ids);
}

int64_t host_checkpoint_last(gv_host *h, const char *vm)
{
	char **ids = list_ids(h, vm);
	size_t n = gv_strv_len(ids);
	json_t *man = NULL;
	int64_t t = 0;

	if (n && load_manifest(h, vm, ids[n - 1], &man, NULL) == 0)
		t = json_integer_value(json_object_get(man, "created"));
	json_decref(man);
	gv_strv_free(ids);
	return t;
}

/* --- restore ------------------------------------------------------ */

/* Write the chunks listed in @chunks, in order, to @fd (a file or a
 * socket: SIGPIPE is ignored by the agent). */
static int write_chunks(gv_chunkstore *cs, json_t *chunks, int fd, const char *what, gv_err *e)
{
	json_t *c;
	size_t i;

	json_array_foreach(chunks, i, c) {
		uint8_t h[32], *data = NULL;
		size_t len = 0, off = 0;
		if (gv_hash_parse(json_string_value(json_array_get(c, 0)), h) < 0 ||
		    gv_chunkstore_get(cs, h, &data, &len) < 0)
			return gv_err_set(e, -EBADMSG, "a %s chunk of the checkpoint is missing "
					  "or damaged", what);
		while (off < len) {
			ssize_t w = write(fd, data + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				free(data);
				return gv_err_set(e, -EIO, "cannot write the %s of the checkpoint: %s",
						  what, w < 0 ? strerror(errno) : "short write");
			}
			off += (size_t)w;
		}
		free(data);
	}
	return 0;
}

/* The chunks of @chunks into a new file at @path (atomically: written
 * beside it, synced, renamed). */
static int chunks_to_file(gv_chunkstore *cs, json_t *chunks, const char *path, const char *what,
			  gv_err *e)
{
	char *tmp = gv_strdupf("%s.restoring", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), r = 0;

	if (fd < 0)
		r = gv_err_set(e, -errno, "cannot create %s: %s", tmp, strerror(errno));
	if (r == 0)
		r = write_chunks(cs, chunks, fd, what, e);
	if (fd >= 0 && r == 0 && fsync(fd) < 0)
		r = gv_err_set(e, -errno, "cannot sync %s", tmp);
	if (fd >= 0)
		close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = gv_err_set(e, -errno, "cannot replace %s", path);
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

/* Connect to QEMU's incoming socket and write the memory stream. */
static int feed_memory(gv_chunkstore *cs, json_t *chunks, const char *sock, gv_err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r = -ECONNREFUSED;
	uint64_t end = gv_now_ms() + 10000;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	while (fd >= 0 && gv_now_ms() < end &&
	       (r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0) < 0)
		usleep(10000);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return gv_err_set(e, r, "cannot connect to QEMU's incoming socket");
	}
	r = write_chunks(cs, chunks, fd, "memory", e);
	close(fd);
	return r;
}

/* The first @len bytes of @src into a new file @dst (atomically). */
static int copy_prefix(const char *src, const char *dst, uint64_t len, gv_err *e)
{
	char *tmp = gv_strdupf("%s.tmp", dst);
	int in = open(src, O_RDONLY | O_CLOEXEC), r = 0;
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	loff_t off = 0;

	if (out < 0 || (in < 0 && (errno != ENOENT || len)))
		r = gv_err_set(e, -errno, "cannot copy the job output: %s", strerror(errno));
	while (r == 0 && (uint64_t)off < len) {
		ssize_t n = copy_file_range(in, &off, out, NULL, (size_t)(len - (uint64_t)off), 0);
		if (n <= 0)
			r = gv_err_set(e, -EIO, "cannot copy the job output%s",
				       n == 0 ? ": shorter than at the checkpoint" : "");
	}
	if (r == 0 && fsync(out) < 0)
		r = gv_err_set(e, -errno, "cannot sync %s", tmp);
	if (r == 0 && rename(tmp, dst) < 0)
		r = gv_err_set(e, -errno, "cannot create %s", dst);
	if (r < 0)
		unlink(tmp);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(tmp);
	return r;
}

/* The checkpoint @id of VM @r as plain files in its directory, for a
 * restore on another host: ckpt.disk (the overlay), ckpt.state (QEMU's
 * stream) and ckpt.jobout (the job output up to the checkpoint). The VM
 * itself is not touched. */
int host_checkpoint_export(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const char *id,
			   gv_err *e)
{
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	char *disk = gv_strdupf("%s/ckpt.disk", p->dir), *state = gv_strdupf("%s/ckpt.state", p->dir);
	char *jobout = gv_strdupf("%s/ckpt.jobout", p->dir);
	gv_chunkstore *cs = NULL;
	json_t *man = NULL;
	int rc = load_chosen(h, r->def->name, id, &man, e);

	if (rc == 0 && (rc = gv_chunkstore_open(csdir, &cs)) < 0)
		gv_err_set(e, rc, "cannot open the chunk store");
	if (rc == 0)
		rc = chunks_to_file(cs, json_object_get(json_object_get(man, "disk"), "chunks"),
				    disk, "disk", e);
	if (rc == 0)
		rc = chunks_to_file(cs, json_object_get(json_object_get(man, "memory"), "chunks"),
				    state, "memory", e);
	if (rc == 0)
		rc = copy_prefix(p->jobout, jobout,
				 (uint64_t)json_integer_value(json_object_get(man, "jobout_bytes")), e);
	if (rc < 0)
		host_checkpoint_unexport(p);
	gv_chunkstore_close(cs);
	json_decref(man);
	free(csdir);
	free(disk);
	free(state);
	free(jobout);
	return rc;
}

void host_checkpoint_unexport(const gv_vmpaths *p)
{
	static const char *const f[] = { "ckpt.disk", "ckpt.state", "ckpt.jobout",
					 ".ckpt-disk.gvidx", ".ckpt-state.gvidx",
					 ".ckpt-jobout.gvidx" };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		char *path = gv_strdupf("%s/%s", p->dir, f[i]);
		unlink(path);
		free(path);
	}
}

static int do_restore(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, json_t *man, gv_err *e)
{
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	char *sock = gv_strdupf("%s/restore.sock", p->dir), *uri = gv_strdupf("unix:%s", sock);
	json_t *args = json_pack("{s:s}", "uri", uri);
	bool run = !strcmp(json_string_value(json_object_get(man, "state")) ?: "", "running");
	uint64_t jobout = (uint64_t)json_integer_value(json_object_get(man, "jobout_bytes"));
	gv_chunkstore *cs = NULL;
	gv_qmp *q = NULL;
	int rc = gv_chunkstore_open(csdir, &cs);

	vm_kill_qemu(r, p);
	if (rc == 0)
		rc = chunks_to_file(cs, json_object_get(json_object_get(man, "disk"), "chunks"),
				    p->disk, "disk", e);
	if (rc == 0 && gv_file_size(p->jobout) > jobout && truncate(p->jobout, (off_t)jobout) < 0)
		rc = gv_err_set(e, -errno, "cannot roll back the job output");
	if (rc == 0)
		rc = vm_spawn_qemu(h, r, p, true, e);
	if (rc == 0)
		rc = host_qmp(p, &q, e);
	unlink(sock);
	if (rc == 0)
		rc = host_qmp_run(q, "migrate-incoming", args, e);
	if (rc == 0)
		rc = feed_memory(cs, json_object_get(json_object_get(man, "memory"), "chunks"),
				 sock, e);
	if (rc == 0)
		rc = host_wait_migration(q, 10 * 60 * 1000, e);
	if (rc == 0 && run)
		rc = host_qmp_run(q, "cont", NULL, e);
	if (rc == 0) {
		r->state = run ? GV_VM_RUNNING : GV_VM_PAUSED;
		r->started = gv_now_s();
		free(r->error);
		r->error = NULL;
		rc = host_put(h, r, e);
	}
	if (rc < 0) {
		vm_kill_qemu(r, p);
		r->state = GV_VM_FAILED;
		free(r->error);
		r->error = gv_strdupf("restore failed: %s", e->msg);
		(void)host_put(h, r, NULL);
	}
	unlink(sock);
	gv_qmp_free(q);
	gv_chunkstore_close(cs);
	json_decref(args);
	free(uri);
	free(sock);
	free(csdir);
	return rc;
}

int gv_checkpoint_restore(gv_host *h, const char *vm, const char *id, gv_err *e)
{
	struct vmlock *l = host_vm_lock(h, vm);
	gv_vmrec *r = NULL;
	gv_vmpaths p;
	json_t *man = NULL;
	int rc = host_get(h, vm, &r, e);

	if (rc == 0 && host_migration_unsettled(h, vm, e))
		rc = -EBUSY;
	if (rc == 0)
		rc = load_chosen(h, vm, id, &man, e);
	if (rc == 0) {
		host_refresh(h, r);
		gv_vmpaths_init(&p, h->datadir, vm);
		rc = do_restore(h, r, &p, man, e);
		gv_vmpaths_clear(&p);
	}
	json_decref(man);
	gv_vmrec_free(r);
	host_vm_unlock(h, l);
	return rc;
}

/* --- checkpoints following their VM to another host -----------------
 * After a migration the source pushes each checkpoint of the VM, oldest
 * first: the destination says which chunk files it lacks (a delta's base
 * is listed before the delta), takes them as they are stored (checked:
 * each must read back as its hash), then the manifest, which it accepts
 * only if every chunk it names is there. */

#define PUSH_BATCH (4u << 20) /* raw chunk bytes per request */

/* The hashes of @man's chunks, each delta's base first, no repeats. */
static json_t *push_list(gv_chunkstore *cs, json_t *man)
{
	json_t *out = json_array(), *seen = json_object();
	const char *parts[] = { "memory", "disk" };

	for (size_t k = 0; k < 2; k++) {
		json_t *c;
		size_t i;
		json_array_foreach(json_object_get(json_object_get(man, parts[k]), "chunks"), i, c) {
			const char *hex = json_string_value(json_array_get(c, 0));
			uint8_t h[32], base[32];
			char bhex[65];
			if (!hex || json_object_get(seen, hex) || gv_hash_parse(hex, h) < 0)
				continue;
			if (gv_chunkstore_base_of(cs, h, base) == 1) {
				gv_hash_hex(base, bhex);
				if (!json_object_get(seen, bhex)) {
					json_object_set_new(seen, bhex, json_true());
					json_array_append_new(out, json_string(bhex));
				}
			}
			json_object_set_new(seen, hex, json_true());
			json_array_append_new(out, json_string(hex));
		}
	}
	json_decref(seen);
	return out;
}

static int push_one(gv_host *h, gv_chunkstore *cs, const char *vm, const char *id,
		    gv_checkpoint_ask ask, void *ud, uint64_t *bytes, gv_err *e)
{
	json_t *man = NULL, *rep = NULL, *batch = NULL;
	size_t i, used = 0;
	json_t *hx, *list = NULL;
	/* the lock (vs. chunk gc) only while reading here, never while the
	 * peer is asked */
	pthread_mutex_lock(&h->ckpt_mu);
	int r = load_manifest(h, vm, id, &man, e);
	if (r == 0)
		list = push_list(cs, man);
	pthread_mutex_unlock(&h->ckpt_mu);

	if (r == 0)
		r = ask(ud, json_pack("{s:s, s:s, s:o}", "op", "ckpt-have", "name", vm, "hashes",
				      list), &rep, e);
	batch = json_array();
	json_array_foreach(r == 0 ? json_object_get(rep, "missing") : NULL, i, hx) {
		uint8_t hh[32], base[32], *buf = NULL;
		size_t len = 0;
		bool delta;
		if (r < 0)
			break;
		pthread_mutex_lock(&h->ckpt_mu);
		int got = gv_hash_parse(json_string_value(hx), hh) < 0
				  ? -EINVAL
				  : gv_chunkstore_raw(cs, hh, &buf, &len, &delta, base);
		pthread_mutex_unlock(&h->ckpt_mu);
		if (got < 0) {
			r = gv_err_set(e, -EBADMSG, "checkpoint %s: chunk %s unreadable here", id,
				       json_string_value(hx) ?: "?");
			break;
		}
		char *b64 = malloc(4 * ((len + 2) / 3) + 1);
		if (!b64) {
			free(buf);
			r = -ENOMEM;
			break;
		}
		EVP_EncodeBlock((unsigned char *)b64, buf, (int)len);
		json_array_append_new(batch, json_pack("[O, s]", hx, b64));
		*bytes += len;
		used += len;
		free(buf);
		free(b64);
		if (used >= PUSH_BATCH || i + 1 == json_array_size(json_object_get(rep, "missing"))) {
			json_t *ok = NULL;
			r = ask(ud, json_pack("{s:s, s:s, s:O}", "op", "ckpt-put", "name", vm,
					      "chunks", batch), &ok, e);
			json_decref(ok);
			json_array_clear(batch);
			used = 0;
		}
	}
	json_decref(batch);
	json_decref(rep);
	rep = NULL;
	if (r == 0)
		r = ask(ud, json_pack("{s:s, s:s, s:s, s:O}", "op", "ckpt-add", "name", vm, "id", id,
				      "manifest", man), &rep, e);
	json_decref(rep);
	json_decref(man);
	return r;
}

int host_checkpoint_push(gv_host *h, const char *vm, gv_checkpoint_ask ask, void *ud,
			 uint64_t *bytes, gv_err *e)
{
	char **ids = list_ids(h, vm), *csdir = gv_strdupf("%s/chunks", h->datadir);
	gv_chunkstore *cs = NULL;
	int n = 0, r = 0;

	*bytes = 0;
	if (*ids && (r = gv_chunkstore_open(csdir, &cs)) < 0)
		gv_err_set(e, r, "cannot open the chunk store");
	for (char **id = ids; r == 0 && *id; id++, n++)
		r = push_one(h, cs, vm, *id, ask, ud, bytes, e);
	gv_chunkstore_close(cs);
	gv_strv_free(ids);
	free(csdir);
	return r < 0 ? r : n;
}

static json_t *recv_err(const char *fmt, const char *arg)
{
	char msg[300];

	snprintf(msg, sizeof(msg), fmt, arg);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

json_t *host_checkpoint_receive(gv_host *h, const char *op, json_t *req)
{
	const char *vm = json_string_value(json_object_get(req, "name"));
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	gv_chunkstore *cs = NULL;
	json_t *rep = NULL, *x;
	size_t i;

	pthread_mutex_lock(&h->ckpt_mu); /* not while chunks are collected */
	if (gv_chunkstore_open(csdir, &cs) < 0) {
		rep = recv_err("cannot open the chunk store %s", csdir);
	} else if (!strcmp(op, "ckpt-have")) {
		json_t *missing = json_array();
		json_array_foreach(json_object_get(req, "hashes"), i, x) {
			uint8_t hh[32];
			if (gv_hash_parse(json_string_value(x), hh) == 0 && !gv_chunkstore_has(cs, hh))
				json_array_append(missing, x);
		}
		rep = json_pack("{s:b, s:o}", "ok", 1, "missing", missing);
	} else if (!strcmp(op, "ckpt-put")) {
		json_array_foreach(json_object_get(req, "chunks"), i, x) {
			const char *hex = json_string_value(json_array_get(x, 0));
			const char *b64 = json_string_value(json_array_get(x, 1));
			uint8_t hh[32], *buf;
			size_t bl = b64 ? strlen(b64) : 0;
			int n;
			if (!hex || !b64 || gv_hash_parse(hex, hh) < 0 || bl % 4) {
				rep = recv_err("bad chunk %s", hex ? hex : "?");
				break;
			}
			buf = malloc(bl / 4 * 3 + 1);
			n = buf ? EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)bl) : -1;
			/* (the decoder counts the padding as bytes) */
			if (n >= 0 && bl >= 1 && b64[bl - 1] == '=')
				n -= 1 + (bl >= 2 && b64[bl - 2] == '=');
			if (n < 0 || gv_chunkstore_put_raw(cs, hh, buf, (size_t)n) < 0)
				rep = recv_err("chunk %s does not check out", hex);
			free(buf);
			if (rep)
				break;
		}
		if (!rep) {
			sync_dir(csdir);
			rep = json_pack("{s:b}", "ok", 1);
		}
	} else if (!strcmp(op, "ckpt-add")) {
		const char *id = json_string_value(json_object_get(req, "id"));
		json_t *man = json_object_get(req, "manifest"), *mem, *disk;
		char *dir = vm ? ckpt_dir(h, vm) : NULL, *path = NULL, *text = NULL;
		mem = json_object_get(json_object_get(man, "memory"), "chunks");
		disk = json_object_get(json_object_get(man, "disk"), "chunks");
		if (!vm || !gv_name_valid(vm) || !id || !gv_name_valid(id) || !json_is_array(mem) ||
		    !json_is_array(disk) ||
		    strcmp(json_string_value(json_object_get(man, "vm")) ?: "", vm))
			rep = recv_err("bad checkpoint %s", id ? id : "?");
		json_t *parts[] = { mem, disk };
		for (size_t k = 0; !rep && k < 2; k++)
			json_array_foreach(parts[k], i, x) {
				uint8_t hh[32];
				if (gv_hash_parse(json_string_value(json_array_get(x, 0)), hh) < 0 ||
				    !gv_chunkstore_has(cs, hh)) {
					rep = recv_err("checkpoint %s lacks a chunk here", id);
					break;
				}
			}
		if (!rep && gv_mkdir_p(dir, 0755) < 0)
			rep = recv_err("cannot create %s", dir);
		if (!rep) {
			path = gv_strdupf("%s/%s.json", dir, id);
			text = json_dumps(man, JSON_INDENT(1));
			if (!text || gv_write_file_atomic(path, text, strlen(text)) < 0)
				rep = recv_err("cannot write %s", path);
		}
		if (!rep) {
			ckpt_index_add(h, cs, vm, id, disk,
				       (uint64_t)json_integer_value(
					       json_object_get(json_object_get(man, "disk"), "bytes")));
			rep = json_pack("{s:b}", "ok", 1);
		}
		free(text);
		free(path);
		free(dir);
	} else {
		rep = recv_err("unknown operation %s", op);
	}
	pthread_mutex_unlock(&h->ckpt_mu);
	gv_chunkstore_close(cs);
	free(csdir);
	return rep;
}
