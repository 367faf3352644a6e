/* SPDX-License-Identifier: MIT */
/*
 * kv_sqlite_commit.c - the SQLite store's write transactions and batches,
 * and its group commit (docs/kv.md): a commit writes the WAL without a
 * sync (synchronous=NORMAL); sq_sync then fdatasyncs the WAL from the
 * handle's own descriptor, without holding the handle's mutex, so that
 * other threads go on committing, and one sync serves every thread that
 * waits for it. Every operation but gv_kv_batch_commit syncs before it
 * returns (sq_op_end).
 */
#include "kv_sqlite_internal.h"

#include <gridvm/base/fault.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* a checkpoint once the WAL holds this many pages (SQLite's default) */
#define CHECKPOINT_PAGES 1000

/* A transaction was committed (mu held): count it when it wrote. */
void sq_note_commit(gv_kv_backend *b)
{
	int64_t n = sqlite3_total_changes64(b->db);

	if (b->group && n != b->changes) {
		b->changes = n;
		b->committed++;
	}
}

/* COMMIT a write transaction (the caller rolls back when it fails).
 * Fault point kv.sqlite.commit: a commit that fails, as on a full or
 * failing disk (docs/fault-injection.md). */
static int commit(gv_kv_backend *b, gv_err *e)
{
	int r = gv_fault("kv.sqlite.commit", e);

	return r < 0 ? r : sq_exec(b, "COMMIT", e);
}

int sq_begin_write(gv_kv_backend *b, gv_err *e)
{
	b->wrote = false;
	return sq_exec(b, b->batch ? "SAVEPOINT w" : "BEGIN IMMEDIATE", e);
}

/* Commit when @r >= 0, else roll back; wake this handle's watches when
 * keys changed. In a batch, release or roll back the change's savepoint
 * (the batch's end commits). @return @r or the commit's error. */
int sq_end_write(gv_kv_backend *b, int r, gv_err *e)
{
	if (b->batch) {
		if (r >= 0)
			r = sq_exec(b, "RELEASE w", e);
		if (r < 0) {
			sqlite3_exec(b->db, "ROLLBACK TO w", NULL, NULL, NULL);
			sqlite3_exec(b->db, "RELEASE w", NULL, NULL, NULL);
		} else if (b->wrote) {
			b->batch_wrote = true;
		}
		b->wrote = false;
		return r;
	}
	if (r >= 0) {
		r = commit(b, e);
		if (r == 0)
			sq_note_commit(b);
		if (r == 0 && b->wrote)
			pthread_cond_broadcast(&b->changed);
	}
	if (r < 0)
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	b->wrote = false;
	return r;
}

/* gv_kv_batch_begin / gv_kv_batch_commit: one transaction for the
 * changes until the outermost end, which commits it (the sync is
 * sq_sync's). A begin that fails leaves each change its own transaction. */
int sq_batch(gv_kv_backend *b, bool begin, gv_err *e)
{
	int r = 0;

	pthread_mutex_lock(&b->mu);
	if (begin) {
		if (b->batch || (r = sq_exec(b, "BEGIN IMMEDIATE", e)) == 0)
			b->batch++;
	} else if (b->batch && --b->batch == 0) {
		r = commit(b, e);
		if (r < 0) {
			sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
		} else {
			sq_note_commit(b);
			if (b->batch_wrote)
				pthread_cond_broadcast(&b->changed);
		}
		b->batch_wrote = false;
	}
	pthread_mutex_unlock(&b->mu);
	return r;
}

/* fdatasync the WAL (the syncing thread only, without mu); the file
 * opened again (and its directory synced) if SQLite made a new one. */
int sq_wal_sync(gv_kv_backend *b, char *msg, size_t len)
{
	struct stat mine, now;
	int fd;

	if (b->wal_fd >= 0 && (fstat(b->wal_fd, &mine) < 0 || stat(b->wal_path, &now) < 0 ||
			       mine.st_ino != now.st_ino || mine.st_dev != now.st_dev)) {
		close(b->wal_fd);
		b->wal_fd = -1;
	}
	if (b->wal_fd < 0) {
		char *dir = strdup(b->wal_path), *slash = dir ? strrchr(dir, '/') : NULL;
		int dfd;
		if (!dir) {
			snprintf(msg, len, "out of memory");
			return -ENOMEM;
		}
		if (slash)
			*(slash == dir ? slash + 1 : slash) = '\0';
		fd = open(b->wal_path, O_RDONLY | O_CLOEXEC);
		dfd = fd < 0 ? -1 : open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || dfd < 0 || fsync(dfd) < 0) {
			int err = errno;
			snprintf(msg, len, "store sqlite:%s: cannot sync its log %s: %s", b->path,
				 b->wal_path, strerror(err));
			if (fd >= 0)
				close(fd);
			if (dfd >= 0)
				close(dfd);
			free(dir);
			return -err;
		}
		close(dfd);
		free(dir);
		b->wal_fd = fd;
	}
	gv_err fe;
	if (gv_fault("kv.sqlite.sync", &fe) < 0) { /* an fdatasync that fails */
		snprintf(msg, len, "%s", fe.msg);
		return -EIO;
	}
	if (fdatasync(b->wal_fd) < 0) {
		int err = errno;
		snprintf(msg, len, "store sqlite:%s: cannot sync its log: %s", b->path,
			 strerror(err));
		return -err;
	}
	return 0;
}

/* Wait until every commit of this handle so far is on disk; threads that
 * wait at once share one fdatasync. A failed sync is final: the disk may
 * have dropped what it was to write, so nothing is reported durable
 * again (reopen the store: SQLite recovers what the WAL holds). */
int sq_sync(gv_kv_backend *b, gv_err *e)
{
	char msg[sizeof(b->sync_msg)];
	uint64_t want, upto;
	int r;

	pthread_mutex_lock(&b->mu);
	want = b->committed;
	while (!b->sync_err && b->synced < want) {
		if (b->syncing) {
			pthread_cond_wait(&b->sync_done, &b->mu);
			continue;
		}
		b->syncing = true;
		upto = b->committed;
		pthread_mutex_unlock(&b->mu);
		r = sq_wal_sync(b, msg, sizeof(msg));
		pthread_mutex_lock(&b->mu);
		b->syncing = false;
		if (r < 0) {
			b->sync_err = r;
			snprintf(b->sync_msg, sizeof(b->sync_msg), "%s", msg);
		} else if (upto > b->synced) {
			b->synced = upto;
		}
		pthread_cond_broadcast(&b->sync_done);
	}
	r = b->sync_err ? gv_err_set(e, b->sync_err, "%s", b->sync_msg) : 0;
	/* the WAL copied into the database once it is long, on the
	 * checkpoints' own connection: other threads go on committing
	 * (PASSIVE waits for no reader or writer) instead of waiting inside
	 * a commit as with SQLite's automatic checkpoints */
	if (r == 0 && b->ckpt && !b->checkpointing && b->wal_pages >= CHECKPOINT_PAGES) {
		b->checkpointing = true;
		pthread_mutex_unlock(&b->mu);
		(void)sqlite3_wal_checkpoint_v2(b->ckpt, "main", SQLITE_CHECKPOINT_PASSIVE, NULL,
						NULL); /* partial or busy: the next one goes on */
		pthread_mutex_lock(&b->mu);
		b->checkpointing = false;
	}
	pthread_mutex_unlock(&b->mu);
	return r;
}

/* After each commit of the handle's connection (mu held). */
static int wal_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
	(void)db, (void)name;
	((gv_kv_backend *)ud)->wal_pages = pages;
	return SQLITE_OK;
}

void sq_checkpointer(gv_kv_backend *b)
{
	/* (a read first: a connection knows the file is in WAL mode only
	 * once it has read it, and checkpoints nothing before) */
	if (sqlite3_open_v2(b->path, &b->ckpt, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_exec(b->ckpt, "SELECT revision FROM meta", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(b->ckpt); /* SQLite's own checkpoints stay */
		b->ckpt = NULL;
		return;
	}
	sqlite3_busy_timeout(b->ckpt, BUSY_TIMEOUT_MS);
	sqlite3_wal_hook(b->db, wal_hook, b); /* (ends the automatic checkpoints) */
}

/* Each operation notes the commit count when it starts (mu held) and,
 * once it let go of mu, syncs if it committed something itself (a
 * change, or leases it expired on the way): it reports a change done
 * only when it is on disk. */
int sq_op_end(gv_kv_backend *b, uint64_t c0, int r, gv_err *e)
{
	bool wrote = b->committed != c0;

	pthread_mutex_unlock(&b->mu);
	return r == 0 && wrote ? sq_sync(b, e) : r;
}
