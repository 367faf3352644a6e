/* SPDX-License-Identifier: MIT */
/*
 * checkpoint_restore.c - a VM continues from one of its checkpoints, here
 * or (exported as files another agent pulls) on another host.
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
/* The memory stream into QEMU: @fd is our end of a socketpair whose
 * other end QEMU reads as its incoming migration; closed here (the end
 * of the stream). */
static int feed_memory(gv_chunkstore *cs, json_t *chunks, int fd, gv_err *e)
{
	int r = write_chunks(cs, chunks, fd, "memory", e);

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
	int rc = ckpt_load_chosen(h, r->def->name, id, &man, e);

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

/* The machine the checkpoint was taken of: one started from a template
 * has the template layout (lib/node/template.c), whatever the record of a
 * VM made anew for the restore (a replica's host) says. */
static void adopt_layout(gv_vmdef *d, json_t *def)
{
	const char *t = json_string_value(json_object_get(def, "template"));

	if (!def || (t && d->tmpl && !strcmp(t, d->tmpl)) || (!t && !d->tmpl))
		return;
	free(d->tmpl);
	d->tmpl = t ? strdup(t) : NULL;
}

static int do_restore(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, json_t *man, gv_err *e)
{
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	int sv[2] = { -1, -1 };
	bool run = !strcmp(json_string_value(json_object_get(man, "state")) ?: "", "running");
	uint64_t jobout = (uint64_t)json_integer_value(json_object_get(man, "jobout_bytes"));
	gv_chunkstore *cs = NULL;
	gv_qmp *q = NULL;
	int rc = gv_chunkstore_open(csdir, &cs);

	vm_kill_qemu(r, p);
	/* at the checkpoint the job ran and its output disk was empty: so
	 * it is again (vm_spawn_qemu makes an empty one) */
	if (r->def->outputs)
		unlink(p->output);
	if (rc == 0)
		rc = chunks_to_file(cs, json_object_get(json_object_get(man, "disk"), "chunks"),
				    p->disk, "disk", e);
	/* the job output as of the checkpoint: cut back here, or (a host
	 * that never ran it: a replica's checkpoint) written from its chunks */
	json_t *jo_chunks = json_object_get(json_object_get(man, "jobout"), "chunks");
	if (rc == 0 && gv_file_size(p->jobout) < jobout && json_array_size(jo_chunks))
		rc = chunks_to_file(cs, jo_chunks, p->jobout, "job output", e);
	if (rc == 0 && gv_file_size(p->jobout) > jobout && truncate(p->jobout, (off_t)jobout) < 0)
		rc = gv_err_set(e, -errno, "cannot roll back the job output");
	if (rc == 0)
		adopt_layout(r->def, json_object_get(man, "def"));
	if (rc == 0)
		rc = vm_spawn_qemu(h, r, p, true, e);
	if (rc == 0)
		rc = host_qmp(p, &q, e);
	if (rc == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		rc = gv_err_set(e, -errno, "cannot make the stream's socket: %s", strerror(errno));
	if (rc == 0)
		rc = host_migrate_fd(q, true, sv[1], e);
	if (sv[1] >= 0)
		close(sv[1]);
	if (rc == 0) {
		rc = feed_memory(cs, json_object_get(json_object_get(man, "memory"), "chunks"),
				 sv[0], e);
		sv[0] = -1;
	}
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
	if (sv[0] >= 0)
		close(sv[0]);
	gv_qmp_free(q);
	gv_chunkstore_close(cs);
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

	if (rc == 0 && !host_may_run(h, vm, e))
		rc = -EBUSY;
	if (rc == 0)
		rc = ckpt_load_chosen(h, vm, id, &man, e);
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
