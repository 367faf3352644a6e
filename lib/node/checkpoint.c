/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.c - making checkpoints of VMs into the chunk store
 * (checkpoint.h). The catalogue is checkpoint_store.c, restoring
 * checkpoint_restore.c, copying them to other hosts checkpoint_push.c.
 *
 * Create: QEMU migrates the running guest into a socketpair; a thread
 * cuts the stream into content-defined chunks as it arrives. Under KVM
 * the guest runs meanwhile (a live pre-copy); under TCG it is stopped
 * first (vm_precopy_prepare: TCG's pre-copy loses writes) and the stream
 * goes to an unlinked file, cut into chunks once the guest runs again.
 * When QEMU reports completion the guest is stopped; the agent stores the
 * disk overlay (fixed 64 KiB chunks, qcow2's cluster size), notes how
 * much job output exists and lets the guest go on; then the chunks are
 * synced, before the manifest names them. The pause is QEMU's downtime
 * (under TCG: the whole memory copy) plus that disk step; both are
 * reported.
 */
#include "checkpoint_internal.h"

#include <gridvm/node/checkpoint.h>
#include <gridvm/blocks/chunk.h>
#include <gridvm/vmm/jobio.h>

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


struct capture {
	gv_chunkstore *cs;
	json_t *chunks; /* [[sha256 hex, length], ...] */
	uint64_t bytes, added;
	int err;
	/* the previous checkpoint's memory stream: chunk k starts at
	 * prev_off[k] (prev_off[nprev] = its end); new chunks are stored as
	 * deltas to the one at the same place */
	uint8_t *prev;
	uint64_t *prev_off;
	size_t nprev;
};

/* The previous stream's chunk that overlaps [off, off + n) most, or -1. */
static long prev_at(const struct capture *c, uint64_t off, size_t n)
{
	size_t lo = 0, hi = c->nprev;
	long best = -1;
	uint64_t most = 0;

	if (!c->nprev || off >= c->prev_off[c->nprev])
		return -1;
	while (hi - lo > 1) { /* the last chunk starting at or before off */
		size_t mid = (lo + hi) / 2;
		if (c->prev_off[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (size_t k = lo; k < c->nprev && c->prev_off[k] < off + n; k++) {
		uint64_t a = off > c->prev_off[k] ? off : c->prev_off[k];
		uint64_t b = off + n < c->prev_off[k + 1] ? off + n : c->prev_off[k + 1];
		if (b > a && b - a > most) {
			most = b - a;
			best = (long)k;
		}
	}
	return best;
}

static int capture_chunk(void *ud, const uint8_t *d, size_t n)
{
	struct capture *c = ud;
	uint8_t h[32];
	char hex[65];
	uint64_t added;
	long k = prev_at(c, c->bytes, n);
	int r = k >= 0 ? gv_chunkstore_put_delta(c->cs, d, n, c->prev + 32 * k, h, &added)
		       : gv_chunkstore_put(c->cs, d, n, h, &added);

	if (r < 0)
		return c->err = r;
	gv_hash_hex(h, hex);
	json_array_append_new(c->chunks, json_pack("[s, I]", hex, (json_int_t)n));
	c->bytes += n;
	c->added += added;
	return 0;
}

struct memcap {
	int fd; /* our end of the stream's socketpair */
	/* >= 0: the stream is written to this file as it comes and cut into
	 * chunks once the guest runs again: a guest stopped for the copy of
	 * its memory (TCG) waits for QEMU only, not for the chunk store */
	int spool;
	struct capture cap;
	pthread_t thread;
};

/* Cut what @fd gives, to its end, into chunks of @c; 0 or -errno. */
static int chunk_stream(struct capture *c, int fd)
{
	gv_cdc *cdc = gv_cdc_new();
	uint8_t *buf = malloc(1 << 20);
	ssize_t n = 0;
	int r = cdc && buf ? 0 : -ENOMEM;

	while (r == 0 && (n = read(fd, buf, 1 << 20)) > 0)
		if (gv_cdc_feed(cdc, buf, (size_t)n, capture_chunk, c) < 0)
			r = c->err ? c->err : -EIO;
	if (r == 0 && n < 0)
		r = -errno;
	if (r == 0 && gv_cdc_finish(cdc, capture_chunk, c) < 0)
		r = c->err ? c->err : -EIO;
	free(buf);
	gv_cdc_free(cdc);
	return r;
}

/* Copy what @from gives, to its end, to @to; 0 or -errno. */
static int copy_stream(int from, int to)
{
	uint8_t *buf = malloc(1 << 20);
	ssize_t n = 0;
	int r = buf ? 0 : -ENOMEM;

	while (r == 0 && (n = read(from, buf, 1 << 20)) > 0)
		for (ssize_t off = 0, w; r == 0 && off < n; off += w)
			if ((w = write(to, buf + off, (size_t)(n - off))) <= 0)
				r = w < 0 ? -errno : -EIO;
	if (r == 0 && n < 0)
		r = -errno;
	free(buf);
	return r;
}

static void *memcap_thread(void *arg)
{
	struct memcap *m = arg;
	int r = m->spool >= 0 ? copy_stream(m->fd, m->spool) : chunk_stream(&m->cap, m->fd);

	if (r < 0)
		m->cap.err = r;
	return NULL;
}

/* An unlinked file in @dir for the stream (0600: it holds the guest's
 * memory); the fd or -errno. */
static int spool_open(const char *dir)
{
	char *path;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd >= 0 ? fd : -errno;
	path = gv_strdupf("%s/ckpt.stream", dir); /* a file system without O_TMPFILE */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = -errno;
	else
		unlink(path);
	free(path);
	return fd;
}

static int capture_disk(struct capture *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf = malloc(DISK_CHUNK);
	ssize_t n;
	int r = 0;

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return fd < 0 ? -errno : -ENOMEM;
	}
	while (r == 0 && (n = read(fd, buf, DISK_CHUNK)) > 0)
		r = capture_chunk(c, buf, (size_t)n);
	close(fd);
	free(buf);
	return r;
}


static char *new_id(void)
{
	struct timespec ts;
	struct tm tm;
	char buf[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
	return gv_strdupf("%s-%03ld", buf, ts.tv_nsec / 1000000);
}

/* Run the migration into the capture thread, over a socketpair whose
 * other end QEMU gets as a file descriptor; on return the guest is
 * stopped (postmigrate) if it succeeded. */
static int capture_memory(gv_qmp *q, struct memcap *m, json_t **migstat, gv_err *e)
{
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return gv_err_set(e, -errno, "cannot make the stream's socket: %s",
				  strerror(errno));
	m->fd = sv[0];
	pthread_create(&m->thread, NULL, memcap_thread, m);
	r = vm_migration_plain(q, e);
	if (r == 0)
		r = host_migrate_fd(q, false, sv[1], e);
	close(sv[1]); /* QEMU's copy is the only one left: its close ends the stream */
	if (r == 0)
		r = host_wait_migration(q, 30 * 60 * 1000, e);
	if (r < 0)
		(void)host_qmp_run(q, "migrate_cancel", NULL, NULL);
	if (r == 0 && gv_qmp_execute(q, "query-migrate", NULL, 5000, migstat, NULL) < 0)
		*migstat = NULL;
	if (r < 0)
		shutdown(m->fd, SHUT_RDWR);
	pthread_join(m->thread, NULL);
	close(m->fd);
	if (r == 0 && m->cap.err < 0)
		r = gv_err_set(e, m->cap.err, "cannot store the memory stream: %s",
			       strerror(-m->cap.err));
	return r;
}


/* The manifest: what was captured and what it cost. */
static json_t *manifest(gv_vmrec *r, const char *id, struct memcap *m, struct capture *d,
			struct capture *jo, json_t *migstat, uint64_t jobout, double pause_ms,
			double secs)
{
	json_t *ram = json_object_get(migstat, "ram");
	json_t *j = json_pack("{s:i, s:s, s:s, s:I, s:s, s:I, s:f, s:f}", "version", 1,
			      "id", id, "vm", r->def->name, "created", (json_int_t)gv_now_s(),
			      "state", gv_vmstate_name(r->state), "jobout_bytes",
			      (json_int_t)jobout, "pause_ms", pause_ms, "seconds", secs);

	json_object_set_new(j, "def", gv_vmdef_to_json(r->def));
	json_object_set_new(j, "qemu_downtime_ms", json_incref(json_object_get(migstat, "downtime")));
	json_object_set_new(j, "memory", json_pack("{s:I, s:O, s:O}", "bytes",
						   (json_int_t)m->cap.bytes, "chunks", m->cap.chunks,
						   "qemu_ram", ram ? ram : json_null()));
	json_object_set_new(j, "disk", json_pack("{s:s, s:I, s:i, s:O}", "file", "disk.qcow2",
						 "bytes", (json_int_t)d->bytes, "chunk_size",
						 DISK_CHUNK, "chunks", d->chunks));
	/* the job's output up to this instant, so the checkpoint carries it
	 * to a host that never ran the job (a replica, a recovery) */
	json_object_set_new(j, "jobout", json_pack("{s:I, s:i, s:O}", "bytes", (json_int_t)jo->bytes,
						   "chunk_size", DISK_CHUNK, "chunks", jo->chunks));
	json_object_set_new(j, "bytes_added",
			    json_integer((json_int_t)(m->cap.added + d->added + jo->added)));
	return j;
}

/* The chunks of @vm's latest checkpoint's memory stream, for deltas.
 * None (first checkpoint, unreadable manifest): chunks are stored whole. */
static void prev_stream(gv_host *h, const char *vm, struct capture *c)
{
	json_t *man = NULL, *list, *ch;
	uint64_t off = 0;
	size_t i, n;

	if (ckpt_load_chosen(h, vm, NULL, &man, NULL) < 0)
		return;
	list = json_object_get(json_object_get(man, "memory"), "chunks");
	n = json_array_size(list);
	c->prev = malloc(32 * (n ? n : 1));
	c->prev_off = malloc(sizeof(uint64_t) * (n + 1));
	if (!c->prev || !c->prev_off)
		n = 0;
	json_array_foreach(list, i, ch) {
		if (i >= n || gv_hash_parse(json_string_value(json_array_get(ch, 0)),
					    c->prev + 32 * i) < 0) {
			n = 0;
			break;
		}
		c->prev_off[i] = off;
		off += (uint64_t)json_integer_value(json_array_get(ch, 1));
	}
	if (n)
		c->prev_off[n] = off;
	c->nprev = n;
	json_decref(man);
}

static int do_create(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, json_t **out, gv_err *e)
{
	struct memcap m = { .fd = -1, .spool = -1 };
	struct capture d = { 0 }, jo = { 0 };
	char *dir = ckpt_dir(h, r->def->name), *id = new_id(), *path = NULL, *text;
	char *csdir = gv_strdupf("%s/chunks", h->datadir);
	bool was_running = r->state == GV_VM_RUNNING, stopped = false;
	json_t *migstat = NULL, *man = NULL;
	uint64_t t0 = gv_now_ms(), t_paused = 0, t_stop = 0, t_cont = 0, jobout = 0;
	gv_qmp *q = NULL;
	int rc = gv_chunkstore_open(csdir, &m.cap.cs);

	m.cap.chunks = json_array();
	d.chunks = json_array();
	d.cs = m.cap.cs;
	jo.chunks = json_array();
	jo.cs = m.cap.cs;
	prev_stream(h, r->def->name, &m.cap);
	if (rc == 0)
		rc = gv_mkdir_p(dir, 0755);
	if (rc < 0) {
		gv_err_set(e, rc, "cannot prepare the checkpoint store: %s", strerror(-rc));
		goto out;
	}
	rc = host_qmp(p, &q, e);
	if (rc == 0 && was_running)
		rc = vm_precopy_prepare(q, &stopped, e);
	t_paused = gv_now_ms();
	if (rc == 0 && stopped && (m.spool = spool_open(p->dir)) < 0)
		rc = gv_err_set(e, m.spool, "cannot make a file in %s: %s", p->dir,
				strerror(-m.spool));
	if (rc == 0)
		rc = capture_memory(q, &m, &migstat, e);
	t_stop = gv_now_ms();
	/* the guest is stopped: one that began to write its job's outputs
	 * (its job ended) is not checkpointed, a restore gives it an empty
	 * output disk again */
	if (rc == 0 && r->def->outputs && gv_jobio_output_written(p->output))
		rc = gv_err_set(e, -EBUSY, "the job of %s has ended and its guest is writing "
				"its outputs: no checkpoint now", r->def->name);
	if (rc == 0 && (rc = capture_disk(&d, p->disk)) < 0)
		gv_err_set(e, rc, "cannot store the disk: %s", strerror(-rc));
	/* the guest is stopped: its output ends here (fixed chunks: the
	 * next checkpoint shares all but the last) */
	if (rc == 0 && access(p->jobout, F_OK) == 0 && (rc = capture_disk(&jo, p->jobout)) < 0)
		gv_err_set(e, rc, "cannot store the job output: %s", strerror(-rc));
	jobout = jo.bytes;
	if (q && was_running && host_qmp_run(q, "cont", NULL, rc == 0 ? e : NULL) < 0 && rc == 0)
		rc = -EIO;
	t_cont = gv_now_ms();
	/* the guest runs again: the spooled stream into chunks, then every
	 * chunk synced once, before the manifest that names them */
	if (rc == 0 && m.spool >= 0 &&
	    (rc = lseek(m.spool, 0, SEEK_SET) < 0 ? -errno : chunk_stream(&m.cap, m.spool)) < 0)
		gv_err_set(e, rc, "cannot store the memory stream: %s", strerror(-rc));
	if (rc == 0)
		ckpt_sync_dir(csdir);
	if (rc < 0)
		goto out;
	double downtime = (double)json_integer_value(json_object_get(migstat, "downtime"));
	double pause = !was_running ? 0
		       : stopped    ? (double)(t_cont - t_paused)
				    : downtime + (double)(t_cont - t_stop);
	man = manifest(r, id, &m, &d, &jo, migstat, jobout, pause,
		       (double)(gv_now_ms() - t0) / 1000.0);
	path = gv_strdupf("%s/%s.json", dir, id);
	text = json_dumps(man, JSON_INDENT(1));
	rc = gv_write_file_atomic(path, text, strlen(text));
	free(text);
	if (rc < 0)
		gv_err_set(e, rc, "cannot write %s", path);
	if (rc == 0)
		ckpt_index_add(h, m.cap.cs, r->def->name, id, d.chunks, d.bytes);
out:
	if (rc == 0) {
		json_object_del(man, "def");
		json_object_del(json_object_get(man, "memory"), "chunks");
		json_object_del(json_object_get(man, "disk"), "chunks");
		json_object_del(json_object_get(man, "jobout"), "chunks");
		*out = man;
	} else {
		json_decref(man);
	}
	gv_qmp_free(q);
	if (m.spool >= 0)
		close(m.spool);
	gv_chunkstore_close(m.cap.cs);
	json_decref(m.cap.chunks);
	json_decref(d.chunks);
	json_decref(jo.chunks);
	free(m.cap.prev);
	free(m.cap.prev_off);
	json_decref(migstat);
	free(dir);
	free(id);
	free(path);
	free(csdir);
	return rc;
}

static int create_verb(gv_host *h, gv_vmrec *r, const gv_vmpaths *p, const void *out,
		       gv_err *e)
{
	int rc;

	if (r->state != GV_VM_RUNNING && r->state != GV_VM_PAUSED)
		return host_bad_state(r, "checkpoint", e);
	pthread_mutex_lock(&h->ckpt_mu);
	rc = do_create(h, r, p, (json_t **)out, e);
	pthread_mutex_unlock(&h->ckpt_mu);
	return rc;
}

int gv_checkpoint_create(gv_host *h, const char *vm, json_t **manifest_out, gv_err *e)
{
	int rc = host_with_vm(h, vm, create_verb, manifest_out, e);

	if (rc == 0)
		host_checkpoint_retain(h, vm);
	return rc;
}

/* Periodic checkpoints of the running VMs that ask for them. */
static void periodic_checkpoints(gv_host *h)
{
	char **names = NULL;

	if (gv_store_vm_names(h->store, &names) < 0)
		return;
	for (char **n = names; *n; n++) {
		gv_vmrec *r = NULL;
		json_t *man = NULL;
		int64_t last = 0;
		if (gv_store_vm_get(h->store, *n, &r) == 0 && r->state == GV_VM_RUNNING &&
		    r->def->checkpoint_every_s > 0 &&
		    (last = host_checkpoint_last(h, *n)) < r->started)
			last = r->started;
		if (last && gv_now_s() - last >= r->def->checkpoint_every_s) {
			gv_err e;
			if (gv_checkpoint_create(h, *n, &man, &e) < 0)
				fprintf(stderr, "gridvmd: periodic checkpoint of %s: %s\n", *n, e.msg);
		}
		json_decref(man);
		gv_vmrec_free(r);
	}
	gv_strv_free(names);
}

/* A job that succeeded drops its checkpoints when it asked so. */
static void checkpoint_job_ended(gv_host *h, const gv_vmrec *r)
{
	if (r->state == GV_VM_STOPPED && r->exit_code == 0 && r->def->checkpoint_drop_on_success)
		host_checkpoint_drop_all(h, r->def->name);
}

const host_module host_checkpoint_module = {
	.name = "checkpoint",
	.job_ended = checkpoint_job_ended,
	.may_run = NULL,
	.tick = periodic_checkpoints,
	.tick_every = 1,
};
