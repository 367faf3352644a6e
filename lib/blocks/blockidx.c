/* SPDX-License-Identifier: MIT */
/*
 * blockidx.c - the block index of an image: the SHA-256 of every block and
 * of the whole image, built by worker threads beside one thread that
 * streams the whole-image digest; the index file format with its checksum.
 * Format and design: docs/blockidx.md.
 */
#include <gridvm/blocks/blockidx.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR_LEN 128
#define MAGIC "GVBIDX\0\1"
#define VERSION 1
#define CHUNK (1u << 20) /* bytes per read; stays in L2 while it is hashed */
#define PROGRESS_MS 100
#define MAX_THREADS 64

struct build {
	int fd;
	uint64_t size, nchunks;
	size_t chunk; /* multiple of the block size */
	gv_blockidx *x;
	void (*progress)(void *ud, uint64_t done, uint64_t total);
	void *ud;
	_Atomic uint64_t next;	 /* next chunk a worker claims */
	_Atomic uint64_t zero;	 /* zero blocks found */
	_Atomic uint64_t hashed; /* bytes block-hashed */
	_Atomic int err;
};

static const EVP_MD *sha256_md;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *md_get(void)
{
	pthread_once(&md_once, md_fetch);
	return sha256_md;
}

static int sha256(EVP_MD_CTX *c, const void *p, size_t n, uint8_t *out)
{
	if (!EVP_DigestInit_ex2(c, md_get(), NULL) || !EVP_DigestUpdate(c, p, n) ||
	    !EVP_DigestFinal_ex(c, out, NULL))
		return -EIO;
	return 0;
}

gv_blockidx *gv_blockidx_dup(const gv_blockidx *x)
{
	gv_blockidx *d = malloc(sizeof(*d));

	if (!d)
		return NULL;
	*d = *x;
	d->hashes = malloc(x->nblocks ? x->nblocks * GV_HASH_LEN : 1);
	if (!d->hashes) {
		free(d);
		return NULL;
	}
	memcpy(d->hashes, x->hashes, x->nblocks * GV_HASH_LEN);
	return d;
}

void gv_blockidx_free(gv_blockidx *x)
{
	if (x)
		free(x->hashes);
	free(x);
}

/* Read exactly @len bytes at @off; a short file means it changed. */
static int read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EAGAIN;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Hash the blocks of chunk @k, held in @buf. A zero block (also a short
 * last one) keeps its all-zero hash from calloc. */
static int hash_blocks(struct build *b, EVP_MD_CTX *c, const uint8_t *buf, uint64_t k,
		       size_t len)
{
	uint32_t shift = b->x->block_shift;
	size_t bs = (size_t)1 << shift;
	uint64_t blk = k * b->chunk >> shift, zero = 0;
	int r = 0;

	for (size_t o = 0; o < len && r == 0; o += bs, blk++) {
		size_t n = len - o < bs ? len - o : bs;

		if (buf[o] == 0 && memcmp(buf + o, buf + o + 1, n - 1) == 0)
			zero++; /* all zero */
		else
			r = sha256(c, buf + o, n, b->x->hashes + blk * GV_HASH_LEN);
	}
	atomic_fetch_add(&b->zero, zero);
	atomic_fetch_add(&b->hashed, len);
	return r;
}

static size_t chunk_len(const struct build *b, uint64_t k)
{
	uint64_t left = b->size - k * b->chunk;

	return left < b->chunk ? (size_t)left : b->chunk;
}

/* A block worker: claims chunks in turn, reads and hashes their blocks. */
static void *worker(void *arg)
{
	struct build *b = arg;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t *buf = malloc(b->chunk);
	int r = c && buf ? 0 : -ENOMEM;
	uint64_t k;

	while (r == 0 && !atomic_load(&b->err) &&
	       (k = atomic_fetch_add(&b->next, 1)) < b->nchunks) {
		r = read_full(b->fd, buf, chunk_len(b, k), k * b->chunk);
		if (r == 0)
			r = hash_blocks(b, c, buf, k, chunk_len(b, k));
	}
	if (r < 0)
		atomic_store(&b->err, r);
	free(buf);
	EVP_MD_CTX_free(c);
	return NULL;
}

/* The caller's part: read the image in order into the whole-image digest
 * @img (and, if @blocks, hash the blocks too); report progress. */
static int digest_pass(struct build *b, EVP_MD_CTX *img, EVP_MD_CTX *c, uint8_t *buf,
		       bool blocks)
{
	uint64_t last = gv_now_ms();
	int r = 0;

	for (uint64_t k = 0; r == 0 && k < b->nchunks && !atomic_load(&b->err); k++) {
		size_t len = chunk_len(b, k);

		r = read_full(b->fd, buf, len, k * b->chunk);
		if (r == 0 && !EVP_DigestUpdate(img, buf, len))
			r = -EIO;
		if (r == 0 && blocks)
			r = hash_blocks(b, c, buf, k, len);
		if (b->progress && gv_now_ms() - last >= PROGRESS_MS) {
			uint64_t h = atomic_load(&b->hashed), d = k * b->chunk + len;

			b->progress(b->ud, h < d ? h : d, b->size);
			last = gv_now_ms();
		}
	}
	if (r < 0)
		atomic_store(&b->err, r); /* stops the workers */
	return atomic_load(&b->err);
}

static int run_threads(struct build *b, unsigned threads, bool whole)
{
	pthread_t tid[MAX_THREADS];
	unsigned n = 0;
	EVP_MD_CTX *img = EVP_MD_CTX_new(), *c = EVP_MD_CTX_new();
	uint8_t *buf = malloc(b->chunk);
	int r = img && c && buf ? 0 : -ENOMEM;

	if (r == 0 && whole && !EVP_DigestInit_ex2(img, md_get(), NULL))
		r = -EIO;
	while (r == 0 && n + 1 < threads && pthread_create(&tid[n], NULL, worker, b) == 0)
		n++; /* with fewer workers than asked for, they just take longer */
	if (r == 0 && whole)
		r = digest_pass(b, img, c, buf, n == 0);
	else if (r == 0) /* no whole-image digest: this thread hashes blocks too */
		worker(b);
	while (n > 0)
		pthread_join(tid[--n], NULL);
	if (r == 0)
		r = atomic_load(&b->err);
	if (r == 0 && whole && !EVP_DigestFinal_ex(img, b->x->image_sha256, NULL))
		r = -EIO;
	free(buf);
	EVP_MD_CTX_free(c);
	EVP_MD_CTX_free(img);
	return r;
}

static unsigned pick_threads(unsigned threads, uint64_t nchunks)
{
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned)n : 1;
	}
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	return nchunks + 1 < threads ? (unsigned)nchunks + 1 : threads;
}

static uint64_t nblocks_of(uint64_t size, uint32_t shift)
{
	return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

/* Allocate the index for an image of @size bytes. */
static int idx_new(uint32_t shift, uint64_t size, gv_blockidx **out)
{
	gv_blockidx *x = calloc(1, sizeof(*x));
	uint64_t n = nblocks_of(size, shift);

	if (!x)
		return -ENOMEM;
	x->block_shift = shift;
	x->image_size = size;
	x->nblocks = n;
	if (n > SIZE_MAX / GV_HASH_LEN ||
	    (n && !(x->hashes = calloc((size_t)n, GV_HASH_LEN)))) {
		free(x);
		return -ENOMEM;
	}
	*out = x;
	return 0;
}

/* Open the image @path and set up @b for it; *st is its state now. */
static int build_open(struct build *b, const char *path, uint32_t shift, struct stat *st)
{
	int r;

	b->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (b->fd < 0 || fstat(b->fd, st) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode))
		return -EINVAL;
	r = idx_new(shift, (uint64_t)st->st_size, &b->x);
	if (r < 0)
		return r;
	b->x->image_mtime_ns = gv_stat_mtime_ns(st);
	b->size = b->x->image_size;
	b->chunk = CHUNK > (1u << shift) ? CHUNK : (size_t)1 << shift;
	b->nchunks = (b->size + b->chunk - 1) / b->chunk;
	posix_fadvise(b->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return 0;
}

static int build(const char *path, uint32_t block_shift, unsigned threads,
		 void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud,
		 bool strict, gv_blockidx **out)
{
	struct build b = {.fd = -1, .progress = progress, .ud = ud};
	struct stat st, now;
	int r;

	*out = NULL;
	if (block_shift < 9 || block_shift > 24)
		return -EINVAL;
	if (!md_get())
		return -EIO;
	r = build_open(&b, path, block_shift, &st);
	if (r == 0 && progress)
		progress(ud, 0, b.size);
	if (r == 0)
		r = run_threads(&b, pick_threads(threads, b.nchunks), strict);
	if (r == 0 && fstat(b.fd, &now) < 0)
		r = -errno;
	if (r == 0 && strict &&
	    (now.st_size != st.st_size || gv_stat_mtime_ns(&now) != gv_stat_mtime_ns(&st)))
		r = -EAGAIN; /* the image was written while we read it */
	if (r == 0) {
		b.x->zero_blocks = atomic_load(&b.zero);
		if (progress)
			progress(ud, b.size, b.size);
		*out = b.x;
		b.x = NULL;
	}
	gv_blockidx_free(b.x);
	if (b.fd >= 0)
		close(b.fd);
	return r;
}

int gv_blockidx_build(const char *path, uint32_t block_shift, unsigned threads,
		      void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud,
		      gv_blockidx **out)
{
	return build(path, block_shift, threads, progress, ud, true, out);
}

int gv_blockidx_build_live(const char *path, uint32_t block_shift, gv_blockidx **out)
{
	return build(path, block_shift, 0, NULL, NULL, false, out);
}

/* Rehash blocks [@first, @end) of @b->x, reading runs of up to CHUNK. */
static int rehash_run(struct build *b, EVP_MD_CTX *c, uint8_t *buf, uint64_t first,
		      uint64_t end)
{
	uint32_t shift = b->x->block_shift;
	uint64_t per = CHUNK >> shift ? CHUNK >> shift : 1;
	int r = 0;

	for (uint64_t k = first; k < end && r == 0; k += per) {
		uint64_t n = end - k < per ? end - k : per, off = k << shift;
		size_t len = (size_t)(n << shift);

		if (off + len > b->size)
			len = (size_t)(b->size - off);
		memset(b->x->hashes + k * GV_HASH_LEN, 0, (size_t)n * GV_HASH_LEN);
		r = read_full(b->fd, buf, len, off);
		if (r == 0)
			r = hash_blocks(b, c, buf, k, len);
	}
	return r;
}

int gv_blockidx_update(const char *path, const gv_blockidx *base, const gv_extent *ext,
		       size_t n, gv_blockidx **out, uint64_t *rehashed)
{
	uint32_t shift = base->block_shift;
	struct build b = { .fd = -1 };
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t *mark = NULL, *buf = malloc(CHUNK > (1u << shift) ? CHUNK : 1u << shift);
	struct stat st;
	uint64_t keep = 0, nb = 0, done = 0;
	int r = !c || !buf ? -ENOMEM : md_get() ? 0 : -EIO;

	*out = NULL;
	if (r == 0)
		r = build_open(&b, path, shift, &st);
	if (r == 0) {
		nb = b.x->nblocks;
		b.chunk = (size_t)1 << shift; /* hash_blocks' block numbering */
		/* whole blocks in both; a short last one may have grown, or
		 * the file shrunk to end inside a block */
		keep = base->image_size >> shift;
		if (keep > b.size >> shift)
			keep = b.size >> shift;
		if (b.size == base->image_size)
			keep = nb;
		if (keep)
			memcpy(b.x->hashes, base->hashes, (size_t)keep * GV_HASH_LEN);
		if (!(mark = calloc(1, (size_t)(nb / 8 + 1))))
			r = -ENOMEM;
	}
	for (uint64_t k = keep; r == 0 && k < nb; k++)
		mark[k / 8] |= (uint8_t)(1u << (k % 8));
	for (size_t i = 0; r == 0 && i < n; i++) {
		uint64_t lo = ext[i].off >> shift, hi;

		if (ext[i].len == 0 || ext[i].off >= b.size)
			continue;
		hi = nblocks_of(ext[i].off + ext[i].len, shift);
		for (uint64_t k = lo; k < hi && k < nb; k++)
			mark[k / 8] |= (uint8_t)(1u << (k % 8));
	}
	for (uint64_t k = 0; r == 0 && k < nb;) {
		uint64_t e = k;

		if (!(mark[k / 8] & (1u << (k % 8)))) {
			k++;
			continue;
		}
		while (e < nb && mark[e / 8] & (1u << (e % 8)))
			e++;
		r = rehash_run(&b, c, buf, k, e);
		done += e - k;
		k = e;
	}
	if (r == 0) {
		for (uint64_t k = 0; k < nb; k++)
			b.x->zero_blocks += gv_blockidx_is_zero(b.x, k);
		if (rehashed)
			*rehashed = done;
		*out = b.x;
		b.x = NULL;
	}
	gv_blockidx_free(b.x);
	if (b.fd >= 0)
		close(b.fd);
	EVP_MD_CTX_free(c);
	free(mark);
	free(buf);
	return r;
}

/* ---- the file format (docs/blockidx.md) ---- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

/* The serialized length for @nblocks, or 0 on overflow. */
static size_t file_len(uint64_t nblocks)
{
	if (nblocks > (SIZE_MAX - HDR_LEN - GV_HASH_LEN) / GV_HASH_LEN)
		return 0;
	return HDR_LEN + (size_t)nblocks * GV_HASH_LEN + GV_HASH_LEN;
}

static int sha256_once(const void *p, size_t n, uint8_t *out)
{
	return md_get() && EVP_Digest(p, n, out, NULL, md_get(), NULL) ? 0 : -EIO;
}

int gv_blockidx_serialize(const gv_blockidx *x, uint8_t **buf, size_t *len)
{
	size_t n = file_len(x->nblocks), hl = n - HDR_LEN - GV_HASH_LEN;
	uint8_t *p;
	int r;

	if (n == 0)
		return -EOVERFLOW;
	p = calloc(1, n);
	if (!p)
		return -ENOMEM;
	memcpy(p, MAGIC, 8);
	put_le(p + 8, VERSION, 4);
	put_le(p + 12, x->block_shift, 4);
	put_le(p + 16, x->image_size, 8);
	put_le(p + 24, x->nblocks, 8);
	put_le(p + 32, x->image_mtime_ns, 8);
	put_le(p + 40, x->zero_blocks, 8);
	memcpy(p + 48, x->image_sha256, GV_HASH_LEN);
	if (hl)
		memcpy(p + HDR_LEN, x->hashes, hl);
	r = sha256_once(p, n - GV_HASH_LEN, p + n - GV_HASH_LEN);
	if (r < 0) {
		free(p);
		return r;
	}
	*buf = p;
	*len = n;
	return 0;
}

/* Check the header of @buf; sets the expected file length in *need. */
static int parse_header(const uint8_t *buf, size_t len, size_t *need)
{
	static const uint8_t zero[HDR_LEN - 80];
	uint32_t shift;
	uint64_t n;

	if (len < HDR_LEN || memcmp(buf, MAGIC, 8) != 0 ||
	    get_le(buf + 8, 4) != VERSION || memcmp(buf + 80, zero, sizeof(zero)) != 0)
		return -EBADMSG;
	shift = (uint32_t)get_le(buf + 12, 4);
	n = get_le(buf + 24, 8);
	if (shift < 9 || shift > 24 || n != nblocks_of(get_le(buf + 16, 8), shift))
		return -EBADMSG;
	*need = file_len(n);
	return *need ? 0 : -EBADMSG;
}

int gv_blockidx_parse(const uint8_t *buf, size_t len, gv_blockidx **out)
{
	uint8_t sum[GV_HASH_LEN];
	gv_blockidx *x;
	uint64_t zero = 0;
	size_t need;
	int r;

	*out = NULL;
	if (parse_header(buf, len, &need) < 0 || need != len)
		return -EBADMSG;
	r = sha256_once(buf, len - GV_HASH_LEN, sum);
	if (r < 0)
		return r;
	if (memcmp(sum, buf + len - GV_HASH_LEN, GV_HASH_LEN) != 0)
		return -EBADMSG;
	r = idx_new((uint32_t)get_le(buf + 12, 4), get_le(buf + 16, 8), &x);
	if (r < 0)
		return r;
	x->image_mtime_ns = get_le(buf + 32, 8);
	x->zero_blocks = get_le(buf + 40, 8);
	memcpy(x->image_sha256, buf + 48, GV_HASH_LEN);
	if (x->nblocks)
		memcpy(x->hashes, buf + HDR_LEN, len - HDR_LEN - GV_HASH_LEN);
	for (uint64_t i = 0; i < x->nblocks; i++)
		zero += gv_blockidx_is_zero(x, i);
	if (zero != x->zero_blocks) {
		gv_blockidx_free(x);
		return -EBADMSG;
	}
	*out = x;
	return 0;
}

int gv_blockidx_save(const gv_blockidx *x, const char *path)
{
	uint8_t *buf;
	size_t len;
	int r = gv_blockidx_serialize(x, &buf, &len);

	if (r < 0)
		return r;
	r = gv_write_file_atomic(path, buf, len);
	free(buf);
	return r;
}

/* Read the index file; its header gives the length to expect, so a huge
 * foreign file is rejected before it is read. */
int gv_blockidx_load(const char *path, gv_blockidx **out)
{
	uint8_t hdr[HDR_LEN], *buf = NULL;
	struct stat st;
	size_t need = 0;
	int fd, r;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EBADMSG;
	if (r == 0 &&
	    (st.st_size < HDR_LEN || read_full(fd, hdr, HDR_LEN, 0) < 0 ||
	     parse_header(hdr, HDR_LEN, &need) < 0 || (uint64_t)st.st_size != need))
		r = -EBADMSG;
	if (r == 0 && !(buf = malloc(need)))
		r = -ENOMEM;
	if (r == 0 && (r = read_full(fd, buf, need, 0)) == -EAGAIN)
		r = -EBADMSG; /* shrank under us */
	if (r == 0)
		r = gv_blockidx_parse(buf, need, out);
	free(buf);
	close(fd);
	return r;
}

int gv_blockidx_load_current(const char *image_path, const char *idx_path, uint32_t block_shift,
			     gv_blockidx **out)
{
	gv_blockidx *x = NULL;
	struct stat st;
	int r;

	*out = NULL;
	if (stat(image_path, &st) < 0)
		return -errno;
	r = gv_blockidx_load(idx_path, &x);
	if (r < 0)
		return r;
	if (x->block_shift != block_shift || x->image_size != (uint64_t)st.st_size ||
	    x->image_mtime_ns != gv_stat_mtime_ns(&st)) {
		gv_blockidx_free(x);
		return -ESTALE;
	}
	*out = x;
	return 0;
}

int gv_blockidx_get(const char *image_path, const char *idx_path, uint32_t block_shift,
		    gv_blockidx **out)
{
	gv_blockidx *x = NULL;
	int r = gv_blockidx_load_current(image_path, idx_path, block_shift, out);

	if (r == 0 || (r != -ESTALE && r != -ENOENT && r != -EBADMSG))
		return r;
	r = gv_blockidx_build(image_path, block_shift, 0, NULL, NULL, &x);
	if (r == 0 && (r = gv_blockidx_save(x, idx_path)) < 0)
		gv_blockidx_free(x);
	else
		*out = x;
	return r;
}
