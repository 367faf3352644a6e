/* SPDX-License-Identifier: MIT */
/* chunk.c - gear-hash content-defined chunking and the chunk store. */
#include <gridvm/chunk.h>

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

int gv_chunkstore_put(gv_chunkstore *s, const uint8_t *data, size_t len,
		      uint8_t hash[32], uint64_t *added)
{
	char *path, *dir, *tmp;
	size_t cap = ZSTD_compressBound(len), zl;
	uint8_t *z;
	int r = 0;

	EVP_Digest(data, len, hash, NULL, EVP_sha256(), NULL);
	*added = 0;
	path = chunk_path(s, hash);
	if (access(path, F_OK) == 0) {
		free(path);
		return 0;
	}
	dir = gv_strdupf("%.*s", (int)(strrchr(path, '/') - path), path);
	tmp = gv_strdupf("%s.tmp.%d", path, (int)getpid());
	z = malloc(cap);
	zl = z ? ZSTD_compress(z, cap, data, len, 1) : 0;
	if (!z || ZSTD_isError(zl))
		r = -EIO;
	if (r == 0 && (r = gv_mkdir_p(dir, 0755)) == 0 && (r = write_new(tmp, z, zl)) == 0 &&
	    rename(tmp, path) < 0)
		r = -errno;
	if (r == 0)
		*added = zl;
	else
		unlink(tmp);
	free(z);
	free(tmp);
	free(dir);
	free(path);
	return r;
}

int gv_chunkstore_get(gv_chunkstore *s, const uint8_t hash[32], uint8_t **data,
		      size_t *len)
{
	char *path = chunk_path(s, hash), *z = NULL;
	size_t zl = 0;
	unsigned long long n;
	uint8_t h[32];
	int r = gv_read_file(path, &z, &zl);

	free(path);
	if (r < 0)
		return r;
	n = ZSTD_getFrameContentSize(z, zl);
	if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > (64u << 20)) {
		free(z);
		return -EBADMSG;
	}
	*data = malloc(n ? n : 1);
	if (!*data || ZSTD_decompress(*data, n, z, zl) != n) {
		free(z);
		free(*data);
		return -EBADMSG;
	}
	free(z);
	EVP_Digest(*data, n, h, NULL, EVP_sha256(), NULL);
	if (memcmp(h, hash, 32)) {
		free(*data);
		return -EBADMSG;
	}
	*len = n;
	return 0;
}

int gv_chunkstore_gc(gv_chunkstore *s, bool (*keep)(void *ud, const uint8_t hash[32]),
		     void *ud, uint64_t *freed)
{
	DIR *top = opendir(s->dir);
	struct dirent *e, *f;

	*freed = 0;
	if (!top)
		return -errno;
	while ((e = readdir(top))) {
		char *sub = gv_strdupf("%s/%s", s->dir, e->d_name);
		DIR *d = e->d_name[0] != '.' ? opendir(sub) : NULL;
		while (d && (f = readdir(d))) {
			uint8_t h[32];
			char hex[65];
			struct stat st;
			snprintf(hex, sizeof(hex), "%.64s", f->d_name);
			if (strlen(f->d_name) != 68 || gv_hash_parse(hex, h) < 0 || keep(ud, h))
				continue;
			char *p = gv_strdupf("%s/%s", sub, f->d_name);
			if (stat(p, &st) == 0 && unlink(p) == 0)
				*freed += (uint64_t)st.st_size;
			free(p);
		}
		if (d)
			closedir(d);
		free(sub);
	}
	closedir(top);
	return 0;
}
