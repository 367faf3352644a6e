/* SPDX-License-Identifier: MIT */
/* chunk.c - gear-hash content-defined chunking and the chunk store. */
#include <gridvm/blocks/chunk.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

struct gv_cdc {
	uint64_t gear[256];
	uint8_t *buf;  /* the chunk being cut, at most GV_CDC_MAX */
	size_t len;
	uint64_t h;
};

struct gv_chunkstore {
	char *dir;
};

/* A delta chunk's file: DELTA_MAGIC, the base chunk's hash, then a zstd
 * frame made with the base's bytes as prefix (dictionary). A whole
 * chunk's file is a plain zstd frame (its magic differs). */
#define DELTA_MAGIC "GVD1"
#define DELTA_HDR (4 + 32)

gv_cdc *gv_cdc_new(void)
{
	gv_cdc *c = calloc(1, sizeof(*c));
	uint64_t x = 0x67726964766d3031ULL; /* fixed seed: "gridvm01" */

	if (!c || !(c->buf = malloc(GV_CDC_MAX))) {
		free(c);
		return NULL;
	}
	for (int i = 0; i < 256; i++) { /* xorshift64* */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		c->gear[i] = x * 2685821657736338717ULL;
	}
	return c;
}

void gv_cdc_free(gv_cdc *c)
{
	if (c)
		free(c->buf);
	free(c);
}

int gv_cdc_feed(gv_cdc *c, const uint8_t *p, size_t n, gv_chunk_cb cb, void *ud)
{
	/* the top bits of the gear hash decide; 16 bits for a 64 KiB average */
	const uint64_t mask = (uint64_t)(GV_CDC_AVG - 1) << (64 - 16);

	for (size_t i = 0; i < n; i++) {
		c->buf[c->len++] = p[i];
		c->h = (c->h << 1) + c->gear[p[i]];
		if ((c->len >= GV_CDC_MIN && !(c->h & mask)) || c->len == GV_CDC_MAX) {
			int r = cb(ud, c->buf, c->len);
			c->len = 0;
			c->h = 0;
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int gv_cdc_finish(gv_cdc *c, gv_chunk_cb cb, void *ud)
{
	int r = c->len ? cb(ud, c->buf, c->len) : 0;

	c->len = 0;
	c->h = 0;
	return r;
}

int gv_chunkstore_open(const char *dir, gv_chunkstore **out)
{
	gv_chunkstore *s = calloc(1, sizeof(*s));
	int r = gv_mkdir_p(dir, 0755);

	if (!s || r < 0) {
		free(s);
		return r < 0 ? r : -ENOMEM;
	}
	s->dir = strdup(dir);
	*out = s;
	return 0;
}

void gv_chunkstore_close(gv_chunkstore *s)
{
	if (s)
		free(s->dir);
	free(s);
}

static char *chunk_path(gv_chunkstore *s, const uint8_t hash[32])
{
	char hex[65];

	gv_hash_hex(hash, hex);
	return gv_strdupf("%s/%.2s/%s.zst", s->dir, hex, hex);
}

/* Written without fsync: the caller syncs the filesystem once, before
 * the manifest that refers to the chunks is written. */
static int write_new(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, p, n) != (ssize_t)n)
		r = errno ? -errno : -EIO;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

/* Write the file of chunk @hash: @hdr (a delta's header, or nothing)
 * then @z. */
static int store(gv_chunkstore *s, const uint8_t hash[32], const void *hdr, size_t hl,
		 const void *z, size_t zl)
{
	char *path = chunk_path(s, hash);
	char *dir = gv_strdupf("%.*s", (int)(strrchr(path, '/') - path), path);
	char *tmp = gv_strdupf("%s.tmp.%d", path, (int)getpid());
	uint8_t *buf = malloc(hl + zl);
	int r = buf ? 0 : -ENOMEM;

	if (r == 0 && hl)
		memcpy(buf, hdr, hl);
	if (r == 0)
		memcpy(buf + hl, z, zl);
	if (r == 0 && (r = gv_mkdir_p(dir, 0755)) == 0 && (r = write_new(tmp, buf, hl + zl)) == 0 &&
	    rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	free(buf);
	free(tmp);
	free(dir);
	free(path);
	return r;
}

/* Hash @data; true if the store has that chunk already. */
static bool known(gv_chunkstore *s, const uint8_t *data, size_t len, uint8_t hash[32])
{
	EVP_Digest(data, len, hash, NULL, EVP_sha256(), NULL);
	return gv_chunkstore_has(s, hash);
}

/* Is the chunk file at @path a delta (1, its base in @base) or whole (0)?
 * Reads its header only. */
static int delta_base(const char *path, uint8_t base[32])
{
	uint8_t hdr[DELTA_HDR];
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = read(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) && !memcmp(hdr, DELTA_MAGIC, 4);
	if (r)
		memcpy(base, hdr + 4, 32);
	close(fd);
	return r;
}

int gv_chunkstore_base_of(gv_chunkstore *s, const uint8_t hash[32], uint8_t base[32])
{
	char *path = chunk_path(s, hash);
	int r = delta_base(path, base);

	free(path);
	return r;
}

int gv_chunkstore_put(gv_chunkstore *s, const uint8_t *data, size_t len,
		      uint8_t hash[32], uint64_t *added)
{
	size_t cap = ZSTD_compressBound(len), zl;
	uint8_t *z;
	int r = 0;

	*added = 0;
	if (known(s, data, len, hash))
		return 0;
	z = malloc(cap);
	zl = z ? ZSTD_compress(z, cap, data, len, 1) : 0;
	if (!z || ZSTD_isError(zl))
		r = -EIO;
	if (r == 0 && (r = store(s, hash, NULL, 0, z, zl)) == 0)
		*added = zl;
	free(z);
	return r;
}

/* The raw file of chunk @hash, and whether it is a delta (then its
 * base's hash in @base). */
static int load(gv_chunkstore *s, const uint8_t hash[32], char **z, size_t *zl,
		bool *delta, uint8_t base[32])
{
	char *path = chunk_path(s, hash);
	int r = gv_read_file(path, z, zl);

	free(path);
	if (r < 0)
		return r;
	*delta = *zl >= DELTA_HDR && !memcmp(*z, DELTA_MAGIC, 4);
	if (*delta)
		memcpy(base, *z + 4, 32);
	return 0;
}

int gv_chunkstore_put_delta(gv_chunkstore *s, const uint8_t *data, size_t len,
			    const uint8_t base_hash[32], uint8_t hash[32], uint64_t *added)
{
	uint8_t base[32], inner[32], hdr[DELTA_HDR], *bdata = NULL, *z = NULL, *plain = NULL;
	size_t blen = 0, cap = ZSTD_compressBound(len), zl = 0, pl = 0;
	ZSTD_CCtx *cc = NULL;
	char *raw = NULL;
	bool delta = false;
	int r;

	*added = 0;
	if (known(s, data, len, hash))
		return 0;
	memcpy(base, base_hash, 32);
	/* a delta's base is always a whole chunk: one step to restore */
	r = load(s, base, &raw, &zl, &delta, inner);
	free(raw);
	if (r == 0 && delta)
		memcpy(base, inner, 32);
	if (r == 0)
		r = gv_chunkstore_get(s, base, &bdata, &blen);
	if (r < 0) /* no usable base: store it whole */
		return gv_chunkstore_put(s, data, len, hash, added);
	z = malloc(cap);
	plain = malloc(cap);
	cc = ZSTD_createCCtx();
	r = z && plain && cc ? 0 : -ENOMEM;
	if (r == 0 && (ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1)) ||
		       ZSTD_isError(ZSTD_CCtx_refPrefix(cc, bdata, blen)) ||
		       ZSTD_isError(zl = ZSTD_compress2(cc, z, cap, data, len))))
		r = -EIO;
	/* whole, when the delta is not clearly small */
	pl = r == 0 && zl + DELTA_HDR >= len / 8 ? ZSTD_compress(plain, cap, data, len, 1) : len;
	if (r == 0 && ZSTD_isError(pl))
		r = -EIO;
	if (r == 0 && zl + DELTA_HDR < pl) {
		memcpy(hdr, DELTA_MAGIC, 4);
		memcpy(hdr + 4, base, 32);
		if ((r = store(s, hash, hdr, DELTA_HDR, z, zl)) == 0)
			*added = DELTA_HDR + zl;
	} else if (r == 0 && (r = store(s, hash, NULL, 0, plain, pl)) == 0) {
		*added = pl;
	}
	ZSTD_freeCCtx(cc);
	free(bdata);
	free(plain);
	free(z);
	return r;
}

int gv_chunkstore_get(gv_chunkstore *s, const uint8_t hash[32], uint8_t **data,
		      size_t *len)
{
	char *z = NULL, *bz = NULL;
	uint8_t *bdata = NULL, base[32], h[32];
	size_t zl = 0, bzl = 0, blen = 0, off = 0;
	unsigned long long n;
	ZSTD_DCtx *dc = NULL;
	bool delta = false, bdelta = false;
	int r = load(s, hash, &z, &zl, &delta, base);

	if (r < 0)
		return r;
	if (delta) { /* its base: a whole chunk, checked like any other */
		off = DELTA_HDR;
		r = load(s, base, &bz, &bzl, &bdelta, h);
		free(bz);
		if (r == 0 && bdelta)
			r = -EBADMSG;
		if (r == 0)
			r = gv_chunkstore_get(s, base, &bdata, &blen);
		if (r < 0) {
			free(z);
			return r == -ENOENT ? -EBADMSG : r;
		}
	}
	n = ZSTD_getFrameContentSize(z + off, zl - off);
	if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > (64u << 20)) {
		free(z);
		free(bdata);
		return -EBADMSG;
	}
	*data = malloc(n ? n : 1);
	dc = ZSTD_createDCtx();
	if (!*data || !dc || (delta && ZSTD_isError(ZSTD_DCtx_refPrefix(dc, bdata, blen))) ||
	    ZSTD_decompressDCtx(dc, *data, n, z + off, zl - off) != n) {
		ZSTD_freeDCtx(dc);
		free(z);
		free(bdata);
		free(*data);
		*data = NULL;
		return -EBADMSG;
	}
	ZSTD_freeDCtx(dc);
	free(z);
	free(bdata);
	EVP_Digest(*data, n, h, NULL, EVP_sha256(), NULL);
	if (memcmp(h, hash, 32)) {
		free(*data);
		*data = NULL;
		return -EBADMSG;
	}
	*len = n;
	return 0;
}

struct bases {
	uint8_t *h; /* 32 bytes each, sorted after the first pass */
	size_t n, cap;
};

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Call @fn for every chunk file in the store. */
static void each_chunk(gv_chunkstore *s, void (*fn)(gv_chunkstore *s, const char *path,
						    const uint8_t h[32], void *ud), void *ud)
{
	DIR *top = opendir(s->dir);
	struct dirent *e, *f;

	while (top && (e = readdir(top))) {
		char *sub = gv_strdupf("%s/%s", s->dir, e->d_name);
		DIR *d = e->d_name[0] != '.' ? opendir(sub) : NULL;
		while (d && (f = readdir(d))) {
			uint8_t h[32];
			char hex[65];
			snprintf(hex, sizeof(hex), "%.64s", f->d_name);
			if (strlen(f->d_name) != 68 || strcmp(f->d_name + 64, ".zst") ||
			    gv_hash_parse(hex, h) < 0)
				continue;
			char *p = gv_strdupf("%s/%s", sub, f->d_name);
			fn(s, p, h, ud);
			free(p);
		}
		if (d)
			closedir(d);
		free(sub);
	}
	if (top)
		closedir(top);
}

struct gc {
	bool (*keep)(void *ud, const uint8_t hash[32]);
	void *ud;
	struct bases b;
	uint64_t freed;
	int err;
};

/* Pass 1: a kept delta keeps its base. */
static void gc_bases(gv_chunkstore *s, const char *path, const uint8_t h[32], void *ud)
{
	struct gc *g = ud;
	uint8_t base[32];

	(void)s;
	if (g->keep(g->ud, h) && delta_base(path, base) == 1) {
		if (g->b.n == g->b.cap) {
			size_t c = g->b.cap ? g->b.cap * 2 : 256;
			uint8_t *nh = realloc(g->b.h, c * 32);
			if (!nh)
				g->err = -ENOMEM;
			else
				g->b.h = nh, g->b.cap = c;
		}
		if (g->b.n < g->b.cap)
			memcpy(g->b.h + 32 * g->b.n++, base, 32);
	}
}

/* Pass 2: delete what nobody keeps. */
static void gc_delete(gv_chunkstore *s, const char *path, const uint8_t h[32], void *ud)
{
	struct gc *g = ud;
	struct stat st;

	(void)s;
	if (g->keep(g->ud, h) || (g->b.n && bsearch(h, g->b.h, g->b.n, 32, cmp_hash)))
		return;
	if (stat(path, &st) == 0 && unlink(path) == 0)
		g->freed += (uint64_t)st.st_size;
}

int gv_chunkstore_gc(gv_chunkstore *s, bool (*keep)(void *ud, const uint8_t hash[32]),
		     void *ud, uint64_t *freed)
{
	struct gc g = { .keep = keep, .ud = ud };
	DIR *top = opendir(s->dir);

	*freed = 0;
	if (!top)
		return -errno;
	closedir(top);
	each_chunk(s, gc_bases, &g);
	if (g.err == 0) { /* (out of memory: delete nothing) */
		if (g.b.n)
			qsort(g.b.h, g.b.n, 32, cmp_hash);
		each_chunk(s, gc_delete, &g);
	}
	free(g.b.h);
	*freed = g.freed;
	return g.err;
}

bool gv_chunkstore_has(gv_chunkstore *s, const uint8_t hash[32])
{
	char *path = chunk_path(s, hash);
	bool have = access(path, F_OK) == 0;

	free(path);
	return have;
}

int gv_chunkstore_raw(gv_chunkstore *s, const uint8_t hash[32], uint8_t **buf, size_t *len,
		      bool *delta, uint8_t base[32])
{
	char *z = NULL;
	int r = load(s, hash, &z, len, delta, base);

	*buf = (uint8_t *)z;
	return r;
}

int gv_chunkstore_put_raw(gv_chunkstore *s, const uint8_t hash[32], const uint8_t *buf,
			  size_t len)
{
	uint8_t *data = NULL;
	size_t n = 0;
	int r;

	if (gv_chunkstore_has(s, hash))
		return 0;
	r = store(s, hash, NULL, 0, buf, len);
	/* it must read back as @hash (a delta: its base must be here) */
	if (r == 0 && (r = gv_chunkstore_get(s, hash, &data, &n)) < 0) {
		char *path = chunk_path(s, hash);
		unlink(path);
		free(path);
		r = -EBADMSG;
	}
	free(data);
	return r;
}
