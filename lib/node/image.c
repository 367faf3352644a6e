/* SPDX-License-Identifier: MIT */
/* image.c - the image store: resolve, list, import, debootstrap build. */
#include "host_internal.h"

#include <gridvm/node/image.h>
#include <gridvm/blocks/similarity.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void image_unindex(gv_host *h, const char *name);

static const char *const formats[][2] = { { "img", "raw" }, { "qcow2", "qcow2" } };

int gv_image_resolve(const char *datadir, const char *name, char **path,
		     const char **format)
{
	if (!gv_name_valid(name))
		return -ENOENT;
	for (size_t i = 0; i < 2; i++) {
		char *p = gv_strdupf("%s/images/%s.%s", datadir, name, formats[i][0]);
		if (access(p, R_OK) == 0) {
			*path = p;
			*format = formats[i][1];
			return 0;
		}
		free(p);
	}
	return -ENOENT;
}

json_t *gv_image_list(const char *datadir)
{
	char *dir = gv_strdupf("%s/images", datadir);
	json_t *a = json_array();
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		char name[256], *dot, *path = NULL;
		const char *fmt;
		struct stat st;
		snprintf(name, sizeof(name), "%s", ents[i]->d_name);
		dot = strrchr(name, '.');
		if (dot && (!strcmp(dot, ".img") || !strcmp(dot, ".qcow2"))) {
			*dot = '\0';
			if (gv_image_resolve(datadir, name, &path, &fmt) == 0 &&
			    stat(path, &st) == 0)
				json_array_append_new(
					a, json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "name", name,
						     "format", fmt, "path", path,
						     "size", (json_int_t)st.st_size,
						     "allocated", (json_int_t)st.st_blocks * 512,
						     "owner", gv_image_owner(datadir, name)));
			free(path);
		}
		free(ents[i]);
	}
	free(ents);
	free(dir);
	return a;
}

static char *owner_path(const char *datadir, const char *name)
{
	return gv_strdupf("%s/images/.%s.owner", datadir, name);
}

json_t *gv_image_owner(const char *datadir, const char *name)
{
	char *p = owner_path(datadir, name);
	json_t *o = json_load_file(p, 0, NULL);

	free(p);
	if (json_is_object(o) && json_is_string(json_object_get(o, "name")))
		return o;
	json_decref(o);
	return json_pack("{s:i, s:s}", "uid", 0, "name", "root");
}

int gv_image_set_owner(const char *datadir, const char *name, const json_t *owner)
{
	char *p = owner_path(datadir, name), *text = json_dumps(owner, JSON_COMPACT);
	int r = text ? gv_write_file_atomic(p, text, strlen(text)) : -ENOMEM;

	free(text);
	free(p);
	return r;
}

static int check_new_name(gv_host *h, const char *name, gv_err *e)
{
	char *path = NULL;
	const char *fmt;

	if (!gv_name_valid(name))
		return gv_err_set(e, -EINVAL, "invalid image name '%s'", name);
	if (gv_image_resolve(h->datadir, name, &path, &fmt) == 0) {
		free(path);
		return gv_err_set(e, -EEXIST, "an image named %s exists already", name);
	}
	return 0;
}

static int detect_format(const char *file, const char **fmt, gv_err *e)
{
	char *argv[] = { "qemu-img", "info", "--output=json", (char *)file, NULL };
	char *out = NULL, line[300];
	json_t *j;
	int r = gv_run(argv, &out);

	if (r != 0) {
		r = gv_err_set(e, -EINVAL, "cannot read %s: %s", file,
			       gv_last_line(out, line, sizeof(line)));
		free(out);
		return r;
	}
	j = json_loads(out, 0, NULL);
	free(out);
	const char *f = json_string_value(json_object_get(j, "format"));
	if (f && !strcmp(f, "raw"))
		*fmt = "raw";
	else if (f && !strcmp(f, "qcow2"))
		*fmt = "qcow2";
	else
		r = gv_err_set(e, -EINVAL, "%s is %s; only raw and qcow2 images can be "
			       "imported", file, f ? f : "of an unknown format");
	if (j && json_object_get(json_object_get(json_object_get(j, "format-specific"), "data"),
				 "data-file"))
		r = gv_err_set(e, -EINVAL, "%s keeps its data in another file; import a "
			       "standalone image (qemu-img convert it first)", file);
	if (j && json_object_get(j, "backing-filename"))
		r = gv_err_set(e, -EINVAL, "%s has a backing file; import a standalone "
			       "image (qemu-img convert it first)", file);
	json_decref(j);
	return r;
}

int gv_image_import(gv_host *h, const char *name, const char *file, gv_err *e)
{
	const char *fmt = NULL;
	char *dir = gv_strdupf("%s/images", h->datadir), *dst, *tmp, *out = NULL;
	char line[300];
	int r = check_new_name(h, name, e);

	if (r == 0)
		r = detect_format(file, &fmt, e);
	if (r < 0) {
		free(dir);
		return r;
	}
	if ((r = gv_mkdir_p(dir, 0755)) < 0) {
		free(dir);
		return gv_err_set(e, r, "cannot create the image store: %s", strerror(-r));
	}
	dst = gv_strdupf("%s/%s.%s", dir, name, strcmp(fmt, "raw") ? "qcow2" : "img");
	tmp = gv_strdupf("%s/.%s.importing", dir, name);
	{
		char *argv[] = { "cp", "--sparse=always", (char *)file, tmp, NULL };
		r = gv_run(argv, &out);
	}
	if (r != 0)
		r = gv_err_set(e, -EIO, "cannot copy %s: %s", file,
			       gv_last_line(out, line, sizeof(line)));
	else if (rename(tmp, dst) < 0)
		r = gv_err_set(e, -errno, "cannot rename into %s", dst);
	if (r < 0)
		unlink(tmp);
	free(out);
	free(dir);
	free(dst);
	free(tmp);
	return r;
}

static uint64_t du_bytes(const char *dir)
{
	char *argv[] = { "du", "-sxb", (char *)dir, NULL }, *out = NULL;
	uint64_t n = 0;

	if (gv_run(argv, &out) == 0)
		n = strtoull(out, NULL, 10);
	free(out);
	return n;
}

static int make_ext4(const char *root, const char *img, int log_fd, gv_err *e)
{
	uint64_t used = du_bytes(root);
	uint64_t size = (used + used / 3 + (256ULL << 20)) >> 20; /* MiB */
	char sz[32];
	int r;

	snprintf(sz, sizeof(sz), "%lluM", (unsigned long long)size);
	char *argv[] = { "mkfs.ext4", "-q", "-F", "-L", "gridvm-root", "-d",
			 (char *)root, (char *)img, sz, NULL };
	dprintf(log_fd, "gridvm: making a %s ext4 image from %s\n", sz, root);
	r = gv_run_to_fd(argv, log_fd, false);
	if (r != 0)
		return gv_err_set(e, -EIO, "mkfs.ext4 failed (exit %d)", r);
	return 0;
}

int gv_image_build(gv_host *h, const char *name, const char *suite,
		   const char *packages, const char *mirror, int log_fd,
		   gv_err *e)
{
	char *dir = gv_strdupf("%s/images", h->datadir);
	char *root = gv_strdupf("%s/.%s.rootfs", dir, name);
	char *tmp = gv_strdupf("%s/.%s.building", dir, name);
	char *dst = gv_strdupf("%s/%s.img", dir, name);
	char *incl = packages && *packages ? gv_strdupf("--include=%s", packages)
					   : strdup("--variant=minbase");
	int r = check_new_name(h, name, e);

	if (r < 0)
		goto out;
	if (!suite || !gv_name_valid(suite)) {
		r = gv_err_set(e, -EINVAL, "invalid suite '%s'", suite ? suite : "");
		goto out;
	}
	if ((r = gv_mkdir_p(dir, 0755)) < 0) {
		gv_err_set(e, r, "cannot create the image store: %s", strerror(-r));
		goto out;
	}
	gv_rm_rf(root);
	char *argv[] = { "debootstrap", "--variant=minbase", incl, (char *)suite, root,
			 (char *)(mirror && *mirror ? mirror : "http://deb.debian.org/debian"),
			 NULL };
	dprintf(log_fd, "gridvm: debootstrap %s into %s (this takes minutes)\n", suite,
		root);
	r = gv_run_to_fd(argv, log_fd, false);
	if (r != 0) {
		r = gv_err_set(e, -EIO, "debootstrap %s failed (exit %d); see the log "
			       "above", suite, r);
		goto out;
	}
	r = make_ext4(root, tmp, log_fd, e);
	if (r == 0 && rename(tmp, dst) < 0)
		r = gv_err_set(e, -errno, "cannot rename into %s", dst);
	if (r == 0)
		dprintf(log_fd, "gridvm: image %s ready: %s\n", name, dst);
out:
	unlink(tmp);
	gv_rm_rf(root);
	free(dir);
	free(root);
	free(tmp);
	free(dst);
	free(incl);
	return r;
}

int gv_image_delete(gv_host *h, const char *name, gv_err *e)
{
	char *path = NULL, **names = NULL;
	const char *fmt;
	int r = gv_image_resolve(h->datadir, name, &path, &fmt);

	if (r < 0)
		return gv_err_set(e, r, "no such image: %s", name);
	if (gv_store_vm_names(h->store, &names) == 0) {
		for (char **n = names; *n && r == 0; n++) {
			gv_vmrec *rec = NULL;
			if (gv_store_vm_get(h->store, *n, &rec) == 0 && rec->def->image &&
			    !strcmp(rec->def->image, name))
				r = gv_err_set(e, -EBUSY, "image %s is used by VM %s", name, *n);
			gv_vmrec_free(rec);
		}
	}
	gv_strv_free(names);
	if (r == 0 && unlink(path) < 0)
		r = gv_err_set(e, -errno, "cannot delete %s: %s", path, strerror(errno));
	if (r == 0) {
		char *o = owner_path(h->datadir, name);
		unlink(o);
		free(o);
		image_unindex(h, name);
	}
	free(path);
	return r;
}

/* ---- block indexes of the store's images, the host-wide block index
 * that knows them all, and the similarity report ---- */

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
static void image_unindex(gv_host *h, const char *name)
{
	char *idx = gv_strdupf("%s/images/%s.gvidx", h->datadir, name);

	host_hostidx_drop(h, name, idx);
	free(idx);
}
