/* SPDX-License-Identifier: MIT */
/*
 * checkpoint_store.c - the catalogue of a host's checkpoints: listing,
 * showing, deleting, retention, the garbage collection of chunks nothing
 * refers to, and checkpoints as sources of the host-wide block index.
 */
#include "checkpoint_internal.h"

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

char *ckpt_dir(gv_host *h, const char *vm)
{
	return gv_strdupf("%s/checkpoints/%s", h->datadir, vm);
}

void ckpt_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
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
void ckpt_index_add(gv_host *h, gv_chunkstore *cs, const char *vm, const char *id,
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

void ckpt_index_remove(gv_host *h, const char *vm, const char *id)
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

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Manifest ids of @vm, oldest first (ids sort by time). */
char **ckpt_list_ids(gv_host *h, const char *vm)
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

int ckpt_load_manifest(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e)
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
int ckpt_load_chosen(gv_host *h, const char *vm, const char *id, json_t **out, gv_err *e)
{
	char **ids = id ? NULL : ckpt_list_ids(h, vm);
	size_t n = gv_strv_len(ids);
	int r = id || n ? ckpt_load_manifest(h, vm, id ? id : ids[n - 1], out, e)
			: gv_err_set(e, -ENOENT, "VM %s has no checkpoints", vm);

	gv_strv_free(ids);
	return r;
}

static json_t *summary_of(json_t *man)
{
	json_t *s = json_deep_copy(man), *owner = json_object_get(json_object_get(man, "def"), "owner");

	/* the VM's owner is the checkpoint's (none: root's, base/user.h) */
	json_object_set_new(s, "owner", json_is_object(owner) ? json_deep_copy(owner)
			    : json_pack("{s:i, s:s}", "uid", 0, "name", "root"));
	json_object_del(s, "def");
	json_object_del(json_object_get(s, "memory"), "chunks");
	json_object_del(json_object_get(s, "disk"), "chunks");
	json_object_del(json_object_get(s, "jobout"), "chunks");
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
		ids = ckpt_list_ids(h, name);
		for (char **id = ids; *id; id++) {
			json_t *man = NULL;
			if (ckpt_load_manifest(h, name, *id, &man, NULL) == 0)
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
	int r = ckpt_load_manifest(h, vm, id, &man, e);

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

	return rf->n && bsearch(hash, rf->h, rf->n, 32, cmp32) != NULL;
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
		if (ckpt_load_manifest(h, json_string_value(json_object_get(s, "vm")),
				  json_string_value(json_object_get(s, "id")), &man, NULL) < 0)
			continue;
		refs_add_list(&rf, json_object_get(json_object_get(man, "memory"), "chunks"));
		refs_add_list(&rf, json_object_get(json_object_get(man, "disk"), "chunks"));
		refs_add_list(&rf, json_object_get(json_object_get(man, "jobout"), "chunks"));
		json_decref(man);
	}
	if (rf.n) /* (none referenced: qsort may not be given NULL) */
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
	int r = ckpt_load_manifest(h, vm, id, &man, e);

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
	ids = ckpt_list_ids(h, vm);
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
	char **ids = ckpt_list_ids(h, vm);

	pthread_mutex_lock(&h->ckpt_mu);
	for (char **id = ids; *id; id++)
		if (delete_locked(h, vm, *id, NULL) < 0)
			break;
	pthread_mutex_unlock(&h->ckpt_mu);
	gv_strv_free(ids);
}

int64_t host_checkpoint_last(gv_host *h, const char *vm)
{
	char **ids = ckpt_list_ids(h, vm);
	size_t n = gv_strv_len(ids);
	json_t *man = NULL;
	int64_t t = 0;

	if (n && ckpt_load_manifest(h, vm, ids[n - 1], &man, NULL) == 0)
		t = json_integer_value(json_object_get(man, "created"));
	json_decref(man);
	gv_strv_free(ids);
	return t;
}
