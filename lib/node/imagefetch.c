/* SPDX-License-Identifier: MIT */
/* imagefetch.c - an image from another host: the store's side of the
 * deduplicating transfer, and the resolver its server uses. */
#include "checkpoint_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>




/* A hook is an argv run as it is (execvp, no shell). */
static int run_hook(char *const *argv)
{
	return argv && argv[0] ? (gv_run(argv, NULL) == 0 ? 0 : -ECANCELED) : 0;
}

static int freeze_hook(void *ud)
{
	return run_hook(((const gv_image_fetch_opts *)ud)->freeze_argv);
}

static void thaw_hook(void *ud)
{
	int r = run_hook(((const gv_image_fetch_opts *)ud)->thaw_argv);

	(void)r;
}

/* gv_fetch has one user pointer: progress and hooks share it. */
static void progress_hook(void *ud, const json_t *p)
{
	const gv_image_fetch_opts *o = ud;

	if (o->progress)
		o->progress(o->ud, p);
}

int gv_image_fetch(gv_host *h, const gv_image_fetch_opts *o, json_t **summary,
		   gv_err *e)
{
	const char *as = o->as && *o->as ? o->as : o->name, *fmt;
	uint8_t key[GV_XFER_KEY_LEN];
	char host[256], *dst, *idxdst, *existing = NULL;
	gv_fetch_opts fo = { 0 };
	gv_hostidx *hi = NULL;
	json_t *idx = NULL;
	int port, codec, r;

	if (!o->name || !gv_name_valid(o->name) || !gv_name_valid(as))
		return gv_err_set(e, -EINVAL, "invalid image name '%s'", o->name ? o->name : "");
	if (!o->from || gv_xfer_peer_parse(o->from, host, sizeof(host), &port) < 0)
		return gv_err_set(e, -EINVAL, "invalid source host '%s' (HOST[:PORT])",
				  o->from ? o->from : "");
	codec = gv_codec_parse(o->codec && *o->codec ? o->codec : "zstd");
	if (codec < 0)
		return gv_err_set(e, -EINVAL, "unknown compression '%s' (none, zlib, lz4, "
				  "zstd)", o->codec);
	if (gv_image_resolve(h->datadir, as, &existing, &fmt) == 0) {
		free(existing);
		return gv_err_set(e, -EEXIST, "an image named %s exists already", as);
	}
	r = gv_xfer_key_load(h->grid_key, key);
	if (r < 0)
		return gv_err_set(e, r, "cannot read the grid key %s: %s", h->grid_key,
				  strerror(-r));
	dst = gv_strdupf("%s/images/%s.img", h->datadir, as);
	idxdst = gv_strdupf("%s/images/%s.gvidx", h->datadir, as);
	fo = (gv_fetch_opts){ .host = host, .port = port, .image = o->name, .dest = dst,
			      .codec = (gv_codec)codec, .level = o->level, .key = key,
			      .index_dest = idxdst,
			      .timeout_ms = o->timeout_ms, .progress = progress_hook,
			      .ud = (void *)o, .iterative = o->iterative,
			      .max_passes = o->max_passes, .freeze = freeze_hook,
			      .thaw = thaw_hook };
	pthread_mutex_lock(&h->idx_mu);
	if (!o->no_local && host_hostidx(h, &hi, NULL) == 0)
		fo.hostidx = hi; /* thread-safe: no lock held during the fetch */
	pthread_mutex_unlock(&h->idx_mu);
	if (fo.hostidx && (fo.local_ud = host_checkpoint_reader(h)))
		fo.local_read = host_checkpoint_read;
	r = gv_fetch(&fo, summary, e);
	host_checkpoint_reader_free(fo.local_ud);
	OPENSSL_cleanse(key, sizeof(key));
	if (r == 0 && gv_image_index(h, as, &idx, e) < 0)
		json_object_set_new(*summary, "index_error", json_string(e->msg));
	json_decref(idx);
	free(dst);
	free(idxdst);
	return r;
}

/* "vm:NAME:KIND": a migrating VM's files (see migrate.c); ckpt-* are a
 * checkpoint exported for a restore on another host; input and output
 * are its job's disks (a controller pulls the output when the job ended). */
static int resolve_vm_file(gv_host *h, const char *name, char **path, char **idx_path)
{
	char vm[64], kind[16];
	static const char *const files[][2] = { { "disk", "disk.qcow2" },
						{ "state", "migrate.state" },
						{ "jobout", "job.out" },
						{ "ckpt-disk", "ckpt.disk" },
						{ "ckpt-state", "ckpt.state" },
						{ "ckpt-jobout", "ckpt.jobout" },
						{ "input", "input.tar" },
						{ "output", "output.tar" } };

	if (sscanf(name, "vm:%63[^:]:%15s", vm, kind) != 2 || !gv_name_valid(vm))
		return -ENOENT;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (strcmp(kind, files[i][0]))
			continue;
		*path = gv_strdupf("%s/vms/%s/%s", h->datadir, vm, files[i][1]);
		*idx_path = gv_strdupf("%s/vms/%s/.%s.gvidx", h->datadir, vm, kind);
		if (access(*path, R_OK) == 0)
			return 0;
		free(*path);
		free(*idx_path);
	}
	return -ENOENT;
}

int gv_image_xfer_resolve(void *ud, const char *name, char **path, char **idx_path)
{
	gv_host *h = ud;
	const char *fmt;
	int r;

	if (!strncmp(name, "vm:", 3))
		return resolve_vm_file(h, name, path, idx_path);
	r = gv_image_resolve(h->datadir, name, path, &fmt);

	if (r < 0)
		return r;
	if (strcmp(fmt, "raw")) {
		free(*path);
		return -ENOTSUP;
	}
	*idx_path = gv_strdupf("%s/images/%s.gvidx", h->datadir, name);
	return 0;
}
