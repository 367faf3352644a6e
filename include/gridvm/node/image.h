/* SPDX-License-Identifier: MIT */
/*
 * image.h - the host's image store: DATADIR/images/NAME.img (raw) or
 * NAME.qcow2. VMs never write an image; each gets a qcow2 overlay with the
 * image as its backing file. Images appear under their name only when
 * complete (built or copied under a temporary name, then renamed).
 */
#ifndef GRIDVM_IMAGE_H
#define GRIDVM_IMAGE_H

#include <gridvm/node/host.h>

/* Path and format ("raw"/"qcow2") of image @name; -ENOENT if unknown.
 * *path is malloc'd. */
int gv_image_resolve(const char *datadir, const char *name, char **path,
		     const char **format) GV_WUR;

/* All images as a JSON array of {name, format, path, size, allocated,
 * owner}. */
json_t *gv_image_list(const char *datadir);

/* Who owns image @name: {"uid", "name"} (base/user.h), new reference;
 * images without an owner (built, fetched or imported by root) are
 * root's. The owner of an image imported for a user is kept beside it
 * (DATADIR/images/.NAME.owner); gv_image_delete removes it. */
json_t *gv_image_owner(const char *datadir, const char *name);
int gv_image_set_owner(const char *datadir, const char *name, const json_t *owner) GV_WUR;

/* Copy @file (raw or qcow2, detected by qemu-img) into the store. */
int gv_image_import(gv_host *h, const char *name, const char *file, gv_err *e) GV_WUR;

/* debootstrap @suite (with extra @packages, comma separated, may be NULL)
 * into a raw ext4 image @name. Progress lines go to @log_fd if >= 0. */
int gv_image_build(gv_host *h, const char *name, const char *suite,
		   const char *packages, const char *mirror, int log_fd,
		   gv_err *e) GV_WUR;

/* Build (or load, if current) the block index of raw image @name, next
 * to it as NAME.gvidx, and register the image in the host-wide block
 * index. *summary: name, block_size, blocks, zero_blocks, image_sha256,
 * seconds, rebuilt. */
int gv_image_index(gv_host *h, const char *name, json_t **summary, gv_err *e) GV_WUR;

/* The similarity table of @n images (their block indexes are built if
 * needed). *out: {"images": [...], "block_size": N, "rows": [{"name",
 * "nonzero_blocks", "in": {other: share...}, "in_all_others": share}]}. */
int gv_image_similarity(gv_host *h, char *const *names, size_t n, json_t **out,
			gv_err *e) GV_WUR;

typedef struct gv_image_fetch_opts {
	const char *name;     /* image on the source */
	const char *from;     /* HOST or HOST:PORT of the source agent */
	const char *as;       /* local name, NULL = the same */
	const char *codec;    /* none, zlib, lz4, zstd (default zstd) */
	int level;
	int timeout_ms;
	bool no_local;        /* do not use blocks this host holds */
	bool iterative;       /* the source is being written: passes, then */
	/* this command stops the writer, and this one lets it go on: argv
	 * arrays (NULL-terminated), run as they are, without a shell */
	char *const *freeze_argv;
	char *const *thaw_argv;
	unsigned max_passes;
	void (*progress)(void *ud, const json_t *p);
	void *ud;
} gv_image_fetch_opts;

/* Fetch an image from another host's agent with the deduplicating
 * transfer (xfer.h); the image is indexed on arrival. */
int gv_image_fetch(gv_host *h, const gv_image_fetch_opts *o, json_t **summary,
		   gv_err *e) GV_WUR;

/* The transfer server's resolver (gv_xfer_resolve_fn) over the store of
 * the gv_host passed as @ud: raw images only. */
int gv_image_xfer_resolve(void *ud, const char *name, char **path, char **idx_path);

/* Delete an image no VM uses. */
int gv_image_delete(gv_host *h, const char *name, gv_err *e) GV_WUR;

#endif
