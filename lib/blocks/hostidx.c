/* SPDX-License-Identifier: MIT */
/* hostidx.c - the host-wide block index: an mmapped open-addressing table. */
#include <gridvm/blocks/hostidx.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAB_MAGIC "GVHIDX\0\1"
#define TAB_VERSION 1
#define MIN_SLOTS (1ULL << 16)

struct tab_hdr {
	char magic[8];
	uint32_t version;
	uint32_t dirty;      /* set while a change is being written */
	uint64_t nslots;     /* a power of two */
	uint64_t used;
	uint8_t reserved[32];
};

struct slot {
	uint64_t key;        /* first 8 bytes of the SHA-256 */
	uint32_t source1;    /* source id + 1; 0 = empty slot */
	uint32_t block;
};

struct source {
	uint32_t id, shift;
	char *name, *path, *idx;
	uint8_t sha[32]; /* the image's whole SHA-256 when it was added */
};

struct gv_hostidx {
	pthread_rwlock_t lock;
	char *tab_path, *src_path;
	int fd;
	size_t map_len;
	struct tab_hdr *hdr;
	struct slot *slots;
	struct source *src;
	size_t nsrc;
	uint32_t next_id;
};

_Static_assert(sizeof(struct tab_hdr) == 64, "header layout");
_Static_assert(sizeof(struct slot) == 16, "slot layout");

static uint64_t hash_key(const uint8_t *hash)
{
	uint64_t k;

	memcpy(&k, hash, sizeof(k));
	return k;
}

/* Create an empty table file of @nslots at @path, mapped; the caller
 * fills it. */
static int tab_create(const char *path, uint64_t nslots, int *fd,
		      struct tab_hdr **hdr, size_t *len)
{
	*len = sizeof(struct tab_hdr) + nslots * sizeof(struct slot);
	*fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)*len) < 0)
		goto fail;
	*hdr = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (*hdr == MAP_FAILED)
		goto fail;
	memcpy((*hdr)->magic, TAB_MAGIC, 8);
	(*hdr)->version = TAB_VERSION;
	(*hdr)->nslots = nslots;
	return 0;
fail: {
	int r = -errno;
	close(*fd);
	unlink(path);
	return r;
}
}

static void tab_unmap(gv_hostidx *h)
{
	if (h->hdr) {
		msync(h->hdr, h->map_len, MS_SYNC);
		munmap(h->hdr, h->map_len);
	}
	if (h->fd >= 0)
		close(h->fd);
	h->hdr = NULL;
	h->slots = NULL;
	h->fd = -1;
}

/* Insert into a table; an existing key keeps its first location. */
static void slot_put(struct tab_hdr *hdr, uint64_t key, uint32_t source,
		     uint32_t block)
{
	struct slot *s = (struct slot *)(hdr + 1);
	uint64_t mask = hdr->nslots - 1;

	for (uint64_t i = key & mask, n = 0; n < hdr->nslots; i = (i + 1) & mask, n++) {
		if (!s[i].source1) {
			s[i] = (struct slot){ key, source + 1, block };
			hdr->used++;
			return;
		}
		if (s[i].key == key)
			return;
	}
}

/* Replace the table with one of @nslots holding the old entries. */
static int tab_resize(gv_hostidx *h, uint64_t nslots)
{
	char *tmp = gv_strdupf("%s.tmp", h->tab_path);
	struct tab_hdr *nh;
	size_t len;
	int fd, r = tab_create(tmp, nslots, &fd, &nh, &len);

	if (r < 0) {
		free(tmp);
		return r;
	}
	nh->dirty = 1;
	for (uint64_t i = 0; h->hdr && i < h->hdr->nslots; i++)
		if (h->slots[i].source1)
			slot_put(nh, h->slots[i].key, h->slots[i].source1 - 1,
				 h->slots[i].block);
	if (rename(tmp, h->tab_path) < 0) {
		r = -errno;
		munmap(nh, len);
		close(fd);
		unlink(tmp);
		free(tmp);
		return r;
	}
	free(tmp);
	tab_unmap(h);
	h->fd = fd;
	h->hdr = nh;
	h->map_len = len;
	h->slots = (struct slot *)(nh + 1);
	return 0;
}

static void mark(gv_hostidx *h, uint32_t dirty)
{
	h->hdr->dirty = dirty;
	msync(h->hdr, h->map_len, MS_SYNC);
}

static int add_blocks(gv_hostidx *h, uint32_t id, const gv_blockidx *bi)
{
	for (uint64_t b = 0; b < bi->nblocks && b <= UINT32_MAX; b++) {
		if (gv_blockidx_is_zero(bi, b))
			continue;
		if ((h->hdr->used + 1) * 10 > h->hdr->nslots * 7) {
			int r = tab_resize(h, h->hdr->nslots * 2);
			if (r < 0)
				return r;
		}
		slot_put(h->hdr, hash_key(bi->hashes + b * GV_HASH_LEN), id, (uint32_t)b);
	}
	return 0;
}

static void source_clear(struct source *s)
{
	free(s->name);
	free(s->path);
	free(s->idx);
}

static int sources_save(gv_hostidx *h)
{
	json_t *a = json_array(), *j;
	char *text;
	int r;

	for (size_t i = 0; i < h->nsrc; i++) {
		char hex[65];
		gv_hash_hex(h->src[i].sha, hex);
		json_array_append_new(a, json_pack("{s:i, s:s, s:s, s:s, s:i, s:s}", "id",
						   h->src[i].id, "name", h->src[i].name,
						   "path", h->src[i].path, "idx", h->src[i].idx,
						   "block_shift", h->src[i].shift, "sha256", hex));
	}
	j = json_pack("{s:i, s:i, s:o}", "version", 1, "next_id", h->next_id, "sources", a);
	text = json_dumps(j, JSON_INDENT(1));
	r = gv_write_file_atomic(h->src_path, text, strlen(text));
	free(text);
	json_decref(j);
	return r;
}

static void sources_load(gv_hostidx *h)
{
	json_t *j = json_load_file(h->src_path, 0, NULL), *e;
	size_t i;

	h->next_id = (uint32_t)json_integer_value(json_object_get(j, "next_id"));
	json_array_foreach(json_object_get(j, "sources"), i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		const char *p = json_string_value(json_object_get(e, "path"));
		const char *x = json_string_value(json_object_get(e, "idx"));
		if (!n || !p || !x)
			continue;
		h->src = realloc(h->src, (h->nsrc + 1) * sizeof(*h->src));
		if (!h->src)
			abort();
		h->src[h->nsrc++] = (struct source){
			(uint32_t)json_integer_value(json_object_get(e, "id")),
			(uint32_t)json_integer_value(json_object_get(e, "block_shift")),
			strdup(n), strdup(p), strdup(x), { 0 } };
		if (gv_hash_parse(json_string_value(json_object_get(e, "sha256")),
				  h->src[h->nsrc - 1].sha) < 0)
			memset(h->src[h->nsrc - 1].sha, 0, 32); /* unknown: re-add rebuilds */
	}
	json_decref(j);
}

/* A source's block index. A source whose path is a manifest (".json",
 * a checkpoint: its blocks live in the chunk store) has the index file as
 * its only record; for an image file the index is checked against the
 * file and rebuilt if stale. */
static int source_index(const struct source *s, gv_blockidx **bi)
{
	if (gv_hostidx_is_manifest(s->path))
		return access(s->path, F_OK) < 0 ? -errno : gv_blockidx_load(s->idx, bi);
	return gv_blockidx_get(s->path, s->idx, s->shift, bi);
}

/* Rebuild the table from every source's block index; sources whose index
 * cannot be had any more (image gone) are dropped. */
static int rebuild(gv_hostidx *h)
{
	uint64_t slots = MIN_SLOTS;
	size_t keep = 0;
	int r;

	tab_unmap(h);
	r = tab_resize(h, slots);
	for (size_t i = 0; i < h->nsrc; i++) {
		gv_blockidx *bi = NULL;
		struct source *s = &h->src[i];
		if (r < 0 || source_index(s, &bi) < 0) {
			source_clear(s); /* gone, or no room left to index it */
			continue;
		}
		r = add_blocks(h, s->id, bi);
		gv_blockidx_free(bi);
		if (r < 0) {
			source_clear(s);
			continue;
		}
		h->src[keep++] = *s;
	}
	h->nsrc = keep;
	if (r < 0)
		return r;
	r = sources_save(h);
	mark(h, 0);
	return r;
}

static int tab_open(gv_hostidx *h)
{
	struct stat st;

	h->fd = open(h->tab_path, O_RDWR | O_CLOEXEC);
	if (h->fd < 0 || fstat(h->fd, &st) < 0 || (size_t)st.st_size < sizeof(struct tab_hdr))
		return -EBADMSG;
	h->map_len = (size_t)st.st_size;
	h->hdr = mmap(NULL, h->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
	if (h->hdr == MAP_FAILED) {
		h->hdr = NULL;
		return -errno;
	}
	h->slots = (struct slot *)(h->hdr + 1);
	if (memcmp(h->hdr->magic, TAB_MAGIC, 8) || h->hdr->version != TAB_VERSION ||
	    h->hdr->dirty || h->hdr->nslots < MIN_SLOTS ||
	    (h->hdr->nslots & (h->hdr->nslots - 1)) ||
	    h->map_len != sizeof(struct tab_hdr) + h->hdr->nslots * sizeof(struct slot))
		return -EBADMSG;
	return 0;
}

int gv_hostidx_open(const char *dir, gv_hostidx **out)
{
	gv_hostidx *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return -ENOMEM;
	h->fd = -1;
	pthread_rwlock_init(&h->lock, NULL);
	h->tab_path = gv_strdupf("%s/hostidx.tab", dir);
	h->src_path = gv_strdupf("%s/hostidx.sources", dir);
	r = gv_mkdir_p(dir, 0755);
	if (r == 0) {
		sources_load(h);
		if (tab_open(h) < 0)
			r = rebuild(h);
	}
	if (r < 0) {
		gv_hostidx_close(h);
		return r;
	}
	*out = h;
	return 0;
}

void gv_hostidx_close(gv_hostidx *h)
{
	if (!h)
		return;
	tab_unmap(h);
	for (size_t i = 0; i < h->nsrc; i++)
		source_clear(&h->src[i]);
	free(h->src);
	free(h->tab_path);
	free(h->src_path);
	pthread_rwlock_destroy(&h->lock);
	free(h);
}

static ssize_t find_source(gv_hostidx *h, const char *name)
{
	for (size_t i = 0; i < h->nsrc; i++)
		if (!strcmp(h->src[i].name, name))
			return (ssize_t)i;
	return -1;
}

static int remove_locked(gv_hostidx *h, const char *name)
{
	ssize_t i = find_source(h, name);

	if (i < 0)
		return -ENOENT;
	source_clear(&h->src[i]);
	h->src[i] = h->src[--h->nsrc];
	return rebuild(h);
}

int gv_hostidx_remove(gv_hostidx *h, const char *name)
{
	int r;

	pthread_rwlock_wrlock(&h->lock);
	r = remove_locked(h, name);
	pthread_rwlock_unlock(&h->lock);
	return r;
}

static int add_locked(gv_hostidx *h, const char *name, const char *path,
		      const char *idx_path, const gv_blockidx *bi, uint32_t *id)
{
	uint32_t nid;
	int r;

	if (!h->hdr)
		return -EIO; /* an earlier failure left no table */
	ssize_t old = find_source(h, name);
	/* the same image again (same file, same content): nothing to do, no
	 * rebuild of the table */
	if (old >= 0 && !strcmp(h->src[old].path, path) &&
	    !memcmp(h->src[old].sha, bi->image_sha256, 32) && !h->hdr->dirty) {
		if (id)
			*id = h->src[old].id;
		return 0;
	}
	if (old >= 0 && (r = remove_locked(h, name)) < 0)
		return r;
	nid = h->next_id++;
	mark(h, 1);
	r = add_blocks(h, nid, bi);
	if (r < 0)
		return r;
	h->src = realloc(h->src, (h->nsrc + 1) * sizeof(*h->src));
	if (!h->src)
		abort();
	h->src[h->nsrc] = (struct source){ nid, bi->block_shift, strdup(name),
					   strdup(path), strdup(idx_path), { 0 } };
	memcpy(h->src[h->nsrc++].sha, bi->image_sha256, 32);
	r = sources_save(h);
	if (r < 0)
		return r;
	mark(h, 0);
	if (id)
		*id = nid;
	return 0;
}

int gv_hostidx_add(gv_hostidx *h, const char *name, const char *path,
		   const char *idx_path, const gv_blockidx *bi, uint32_t *id)
{
	int r;

	pthread_rwlock_wrlock(&h->lock);
	r = add_locked(h, name, path, idx_path, bi, id);
	pthread_rwlock_unlock(&h->lock);
	return r;
}

int gv_hostidx_lookup(gv_hostidx *h, const uint8_t hash[GV_HASH_LEN],
		      gv_hostidx_loc *loc)
{
	uint64_t key = hash_key(hash), mask;
	int r = -ENOENT;

	pthread_rwlock_rdlock(&h->lock);
	mask = h->hdr ? h->hdr->nslots - 1 : 0;
	for (uint64_t i = key & mask, n = 0; h->hdr && n <= mask; i = (i + 1) & mask, n++) {
		const struct slot *s = &h->slots[i];
		if (!s->source1)
			break;
		if (s->key == key) {
			loc->source = s->source1 - 1;
			loc->block = s->block;
			r = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&h->lock);
	return r;
}

int gv_hostidx_source(gv_hostidx *h, uint32_t id, char **name, char **path,
		      uint32_t *block_shift)
{
	int r = -ENOENT;

	pthread_rwlock_rdlock(&h->lock);
	for (size_t i = 0; i < h->nsrc; i++) {
		if (h->src[i].id != id)
			continue;
		if (name)
			*name = strdup(h->src[i].name);
		if (path)
			*path = strdup(h->src[i].path);
		if (block_shift)
			*block_shift = h->src[i].shift;
		r = 0;
		break;
	}
	pthread_rwlock_unlock(&h->lock);
	return r;
}

void gv_hostidx_stats_get(gv_hostidx *h, gv_hostidx_stats *st)
{
	pthread_rwlock_rdlock(&h->lock);
	st->slots = h->hdr ? h->hdr->nslots : 0;
	st->used = h->hdr ? h->hdr->used : 0;
	st->sources = h->nsrc;
	st->file_bytes = h->map_len;
	pthread_rwlock_unlock(&h->lock);
}
