/* SPDX-License-Identifier: MIT */
/* imageidx.c - block indexes of the store's images, the host-wide block
 * index that knows them all, and the similarity report. */
#include "host_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/blocks/similarity.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Load or build the block index of raw image @name. */
static int image_blockidx(gv_host *h, const char *name, char **path, char **idx_path,
			  gv_blockidx **bi, gv_err *e)
{
	const char *fmt;
	int r = gv_image_resolve(h->datadir, name, path, &fmt);

	if (r < 0)
		return gv_err_set(e, r, "no such image: %s", name);
	if (strcmp(fmt, "raw")) {
		free(*path);
		return gv_err_set(e, -ENOTSUP, "image %s is %s; block indexes are made of "
				  "raw images", name, fmt);
	}
	*idx_path = gv_strdupf("%s/images/%s.gvidx", h->datadir, name);
	r = gv_blockidx_get(*path, *idx_path, GV_BLOCKIDX_DEFAULT_SHIFT, bi);
	if (r < 0) {
		gv_err_set(e, r, "cannot index image %s: %s", name, strerror(-r));
		free(*path);
		free(*idx_path);
	}
	return r;
}

int gv_image_index(gv_host *h, const char *name, json_t **summary, gv_err *e)
{
	char *path = NULL, *idx_path = NULL, sha[65];
	gv_blockidx *bi = NULL;
	uint64_t t0 = gv_now_ms();
	struct stat st;
	bool had = false;
	int r;

	if (!gv_name_valid(name))
		return gv_err_set(e, -ENOENT, "no such image: %s", name);
	{
		char *p = gv_strdupf("%s/images/%s.gvidx", h->datadir, name);
		had = stat(p, &st) == 0;
		free(p);
	}
	r = image_blockidx(h, name, &path, &idx_path, &bi, e);
	if (r < 0)
		return r;
	r = host_hostidx_add(h, name, path, idx_path, bi, e);
	if (r == 0) {
		gv_hash_hex(bi->image_sha256, sha);
		*summary = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:f, s:s}", "name", name,
				     "block_size", (json_int_t)1 << bi->block_shift,
				     "image_size", (json_int_t)bi->image_size,
				     "blocks", (json_int_t)bi->nblocks,
				     "zero_blocks", (json_int_t)bi->zero_blocks,
				     "image_sha256", sha, "seconds",
				     (double)(gv_now_ms() - t0) / 1000.0, "index", idx_path);
		json_object_set_new(*summary, "was_indexed", json_boolean(had));
	}
	gv_blockidx_free(bi);
	free(path);
	free(idx_path);
	return r;
}

static json_t *similarity_json(char *const *names, const gv_similarity *s,
			       uint32_t shift)
{
	json_t *rows = json_array();

	for (size_t i = 0; i < s->n; i++) {
		json_t *in = json_object();
		double nz = s->nonzero[i] ? (double)s->nonzero[i] : 1.0;
		for (size_t j = 0; j < s->n; j++)
			if (j != i)
				json_object_set_new(in, names[j],
						    json_real((double)s->in[i * s->n + j] / nz));
		json_array_append_new(rows, json_pack("{s:s, s:I, s:o, s:f}", "name", names[i],
						      "nonzero_blocks", (json_int_t)s->nonzero[i],
						      "in", in, "in_all_others",
						      (double)s->in_others[i] / nz));
	}
	return json_pack("{s:I, s:o}", "block_size", (json_int_t)1 << shift, "rows", rows);
}

int gv_image_similarity(gv_host *h, char *const *names, size_t n, json_t **out,
			gv_err *e)
{
	gv_blockidx **bi = calloc(n, sizeof(*bi));
	gv_similarity *s = NULL;
	int r = 0;

	if (!bi)
		abort();
	if (n < 2 || n > GV_SIMILARITY_MAX)
		r = gv_err_set(e, -EINVAL, "compare 2 to %d images", GV_SIMILARITY_MAX);
	for (size_t i = 0; r == 0 && i < n; i++) {
		char *path = NULL, *idx = NULL;
		r = image_blockidx(h, names[i], &path, &idx, &bi[i], e);
		if (r == 0) {
			free(path);
			free(idx);
		}
	}
	if (r == 0 && (r = gv_similarity_compute(bi, n, &s)) < 0)
		gv_err_set(e, r, "cannot compare the images: %s", strerror(-r));
	if (r == 0)
		*out = similarity_json(names, s, bi[0]->block_shift);
	gv_similarity_free(s);
	for (size_t i = 0; i < n; i++)
		gv_blockidx_free(bi[i]);
	free(bi);
	return r;
}

/* Called when an image leaves the store. */
void image_unindex(gv_host *h, const char *name)
{
	char *idx = gv_strdupf("%s/images/%s.gvidx", h->datadir, name);

	host_hostidx_drop(h, name, idx);
	free(idx);
}
