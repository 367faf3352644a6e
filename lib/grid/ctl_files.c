/* SPDX-License-Identifier: MIT */
/*
 * ctl_files.c - a job's files on every controller (docs/grid.md, "Several
 * controllers"): its input archive, and once it ended its log and output
 * archive. The controller that leads when one arrives keeps it in its
 * data directory and has the other controllers copy it (each pulls it
 * with the transfer, lib/xfer) before it relies on it: before it accepts
 * the submission, before the job's record says the log and outputs are
 * kept (its host then drops the VM). A controller that lacks one (it was
 * down, or cut off, or its data directory is new) fetches it from a peer
 * that holds it: when asked for it, and in the background (ctl_files_sync
 * reads the job records and copies what it misses).
 *
 * Files, and the names they are served under:
 *   DATA/inputs/TOKEN.tar  (TOKEN: the upload's, in the record as "upload")
 *                          "job:ID:input" (agents), "peer:input:TOKEN"
 *   DATA/jobs/ID/job.out    "peer:log:ID"
 *   DATA/jobs/ID/output.tar "job:ID:output" (users), "peer:output:ID"
 * A "peer:" name is served only from what this controller holds; a "job:"
 * name it lacks is fetched from the peers first (they are asked for the
 * "peer:" name, so two controllers that both lack it never ask each
 * other in turn). A name holds one content for good: an input by its
 * random token, a log and an output by their job (collected once its VM
 * ended, from that VM).
 */
#include "ctl_internal.h"

#include <gridvm/base/fault.h>
#include <gridvm/base/util.h>
#include <gridvm/blocks/blockidx.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long the leader waits for a peer's copy (the peer fetches the whole
 * file before it answers): 30 s, and 1 s per 4 MiB of the file. A peer
 * that takes longer copies it in the background later. */
#define COPY_BASE_MS 30000
#define COPY_BYTES_PER_MS 4194
/* The background copy tries a missing file again after 5 s, doubling up
 * to 5 min. */
#define RETRY_MIN_MS 5000
#define RETRY_MAX_MS 300000

struct ctl_fetching { /* a file being fetched from a peer (c->fetching) */
	char *path;
	struct ctl_fetching *next;
};

static bool token_ok(const char *t)
{
	if (!t || strlen(t) != 32)
		return false;
	for (; *t; t++)
		if (!((*t >= '0' && *t <= '9') || (*t >= 'a' && *t <= 'f')))
			return false;
	return true;
}

/* A job id in decimal, no sign, no leading zero. */
static bool id_ok(const char *s)
{
	if (!s || !*s || *s == '0' || strlen(s) > 20)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* DATA's path of a file ("input" TOKEN, "log" ID, "output" ID) and of the
 * transfer's index of it; -EINVAL for any other. */
static int file_paths(gv_ctl *c, const char *kind, const char *arg, char **path, char **idx)
{
	if (!strcmp(kind, "input") && token_ok(arg)) {
		*path = gv_strdupf("%s/inputs/%s.tar", c->datadir, arg);
		*idx = gv_strdupf("%s/inputs/.%s.gvidx", c->datadir, arg);
	} else if (!strcmp(kind, "log") && id_ok(arg)) {
		*path = gv_strdupf("%s/jobs/%s/job.out", c->datadir, arg);
		*idx = gv_strdupf("%s/jobs/%s/.log.gvidx", c->datadir, arg);
	} else if (!strcmp(kind, "output") && id_ok(arg)) {
		*path = gv_strdupf("%s/jobs/%s/output.tar", c->datadir, arg);
		*idx = gv_strdupf("%s/jobs/%s/.output.gvidx", c->datadir, arg);
	} else {
		return -EINVAL;
	}
	return 0;
}

/* Fetch @kind @arg from the peer at @addr into @path. */
static int fetch_from(gv_ctl *c, const char *addr, const char *kind, const char *arg,
		      const char *path, gv_err *e)
{
	char host[256], *name = gv_strdupf("peer:%s:%s", kind, arg), *dir = strdup(path);
	json_t *sum = NULL;
	int port, r;

	*strrchr(dir, '/') = '\0';
	if ((r = gv_xfer_peer_parse(addr, host, sizeof(host), &port)) < 0)
		gv_err_set(e, r, "bad address %s", addr);
	else if ((r = gv_mkdir_p(dir, 0700)) < 0)
		gv_err_set(e, r, "cannot create %s", dir);
	if (r == 0) {
		gv_fetch_opts fo = { .host = host, .port = port, .image = name, .dest = path,
				     .codec = GV_CODEC_ZSTD, .key = c->key };
		r = gv_fetch(&fo, &sum, e);
	}
	json_decref(sum);
	free(name);
	free(dir);
	return r;
}

/* Claim @path for a fetch (false: another thread fetched it meanwhile,
 * waited for); mu not held. */
static bool fetch_claim(gv_ctl *c, const char *path)
{
	bool busy;

	pthread_mutex_lock(&c->mu);
	do {
		busy = false;
		for (struct ctl_fetching *f = c->fetching; f && !busy; f = f->next)
			busy = !strcmp(f->path, path);
		if (busy)
			pthread_cond_wait(&c->files_cv, &c->mu);
	} while (busy);
	bool claim = access(path, R_OK) < 0;
	if (claim) {
		struct ctl_fetching *f = calloc(1, sizeof(*f));
		if (!f)
			abort();
		f->path = strdup(path);
		f->next = c->fetching;
		c->fetching = f;
	}
	pthread_mutex_unlock(&c->mu);
	return claim;
}

static void fetch_release(gv_ctl *c, const char *path)
{
	pthread_mutex_lock(&c->mu);
	for (struct ctl_fetching **p = &c->fetching; *p; p = &(*p)->next)
		if (!strcmp((*p)->path, path)) {
			struct ctl_fetching *f = *p;
			*p = f->next;
			free(f->path);
			free(f);
			break;
		}
	pthread_cond_broadcast(&c->files_cv);
	pthread_mutex_unlock(&c->mu);
}

int ctl_files_ensure(gv_ctl *c, const char *kind, const char *arg, const char *from, gv_err *e)
{
	char *path = NULL, *idx = NULL, **peers = NULL;
	char why[400] = "";
	int r;

	if ((r = file_paths(c, kind, arg, &path, &idx)) < 0)
		return gv_err_set(e, r, "no such job file: %s %s", kind, arg ? arg : "");
	if (access(path, R_OK) == 0 || !fetch_claim(c, path))
		goto out; /* held (or fetched by another thread meanwhile) */
	r = -ENOENT;
	if (from && *from && strcmp(from, c->listen_addr)) {
		gv_err fe;
		if ((r = fetch_from(c, from, kind, arg, path, &fe)) < 0)
			snprintf(why, sizeof(why), "%.100s: %.200s", from, fe.msg);
	}
	peers = ctl_peers_list(c);
	for (size_t i = 0; r < 0 && peers[i]; i++) {
		gv_err fe;
		if (from && !strcmp(peers[i], from))
			continue;
		if ((r = fetch_from(c, peers[i], kind, arg, path, &fe)) < 0 &&
		    sizeof(why) > strlen(why))
			snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%.100s: %.200s",
				 *why ? "; " : "", peers[i], fe.msg);
	}
	if (r == 0)
		fprintf(stderr, "gridvmctld: copied the %s of %s %s from another controller\n", kind,
			strcmp(kind, "input") ? "job" : "upload", arg);
	else
		gv_err_set(e, -ENOENT, "this controller lacks the %s of %s %s, and no other "
			   "controller sent it (%s)", kind, strcmp(kind, "input") ? "job" : "upload",
			   arg, *why ? why : "none is registered");
	fetch_release(c, path);
out:
	ctl_peers_free(peers);
	free(path);
	free(idx);
	return r;
}

int ctl_files_push(gv_ctl *c, const char *kind, const char *arg, gv_err *e)
{
	json_t *req = json_pack("{s:s, s:s, s:s, s:s}", "op", "ctl-file-get", "kind", kind, "arg",
				arg, "from", c->listen_addr);
	char why[400], *path = NULL, *idx = NULL;
	unsigned asked = 0;
	uint64_t ms = COPY_BASE_MS;

	if (file_paths(c, kind, arg, &path, &idx) == 0)
		ms += gv_file_size(path) / COPY_BYTES_PER_MS;
	free(path);
	free(idx);
	int ok = ctl_peers_call(c, req, ms < INT32_MAX ? (int)ms : INT32_MAX, &asked, why,
				sizeof(why));

	json_decref(req);
	if (asked && !ok)
		return gv_err_set(e, -EIO, "no other controller took a copy of the %s (%s)", kind,
				  why);
	if (ok < (int)asked)
		fprintf(stderr, "gridvmctld: the %s of %s %s is on %d controllers: %s\n", kind,
			strcmp(kind, "input") ? "job" : "upload", arg, ok + 1, why);
	return 0;
}

int ctl_input_adopt(gv_ctl *c, const char *token, int64_t bytes, const char *sha256,
		    gv_err *e)
{
	char *up = gv_strdupf("%s/uploads/%s.tar", c->datadir, token);
	char *in = gv_strdupf("%s/inputs/%s.tar", c->datadir, token);
	char *idx = gv_strdupf("%s/inputs/.%s.gvidx", c->datadir, token);
	char *dir = gv_strdupf("%s/inputs", c->datadir);
	gv_blockidx *bi = NULL;
	char got[65];
	int r = 0;

	/* uploaded here; or, when a submission is sent again after the
	 * leader changed, copied here by the one that took it first */
	if (gv_file_size(up) != (uint64_t)bytes && gv_file_size(in) != (uint64_t)bytes)
		r = gv_err_set(e, -EIO, "the input upload is incomplete");
	else if (access(in, R_OK) < 0 && ((r = gv_mkdir_p(dir, 0700)) < 0 || rename(up, in) < 0))
		r = gv_err_set(e, r < 0 ? r : -errno, "cannot keep the input: %s",
			       strerror(r < 0 ? -r : errno));
	/* the whole of it (pieces sent to a leader lost meanwhile left holes
	 * of the right size): its digest, from the index the transfer serves */
	if (r == 0 && sha256 &&
	    (r = gv_blockidx_get(in, idx, GV_BLOCKIDX_DEFAULT_SHIFT, &bi)) < 0)
		gv_err_set(e, r, "cannot read the input: %s", strerror(-r));
	if (r == 0 && sha256) {
		gv_hash_hex(bi->image_sha256, got);
		if (strcmp(got, sha256))
			r = gv_err_set(e, -EIO, "the input upload is incomplete or damaged (its "
				       "SHA-256 is not the one sent)");
	}
	if (r == 0)
		r = ctl_files_push(c, "input", token, e);
	if (r < 0) { /* the submission fails: sent again, it is uploaded again */
		unlink(in);
		unlink(idx);
	}
	gv_blockidx_free(bi);
	free(up);
	free(in);
	free(idx);
	free(dir);
	return r;
}

void ctl_input_drop(gv_ctl *c, const char *token)
{
	char *in = gv_strdupf("%s/inputs/%s.tar", c->datadir, token);
	char *idx = gv_strdupf("%s/inputs/.%s.gvidx", c->datadir, token);

	unlink(in);
	unlink(idx);
	free(in);
	free(idx);
}

json_t *ctl_files_op(gv_ctl *c, json_t *req)
{
	json_t *peer = json_object_get(req, "_peer");
	const char *role = json_string_value(json_object_get(peer, "role"));
	const char *kind = json_string_value(json_object_get(req, "kind"));
	const char *arg = json_string_value(json_object_get(req, "arg"));
	const char *from = json_string_value(json_object_get(req, "from"));
	char *path = NULL, *idx = NULL;
	gv_err e;

	/* over TLS only another controller asks this */
	if (peer && (!role || strcmp(role, "controller")))
		return gv_err_jsonf(-EACCES, "a copy of a job's file asked by the certificate of "
				    "%s (%s) is refused: only a controller asks for one",
				    json_string_value(json_object_get(peer, "name")) ?: "?",
				    role ? role : "no role");
	if (!kind || !arg || !from || file_paths(c, kind, arg, &path, &idx) < 0)
		return gv_err_jsonf(-EINVAL, "bad request for a copy of a job's file");
	free(path);
	free(idx);
	if (ctl_files_ensure(c, kind, arg, from, &e) < 0)
		return gv_err_json(-EIO, e.msg);
	return json_pack("{s:b}", "ok", 1);
}

/* The upload token of job @id's input (malloc'd; NULL: none): from
 * memory while leading, else from the store. */
static char *input_token(gv_ctl *c, uint64_t id)
{
	char *token = NULL, *key;
	gv_kv_entry *en = NULL;
	bool known;

	pthread_mutex_lock(&c->mu);
	struct ctl_job *j = ctl_job_find(c, id);
	known = j != NULL;
	if (j && json_string_value(json_object_get(j->rec, "upload")))
		token = strdup(json_string_value(json_object_get(j->rec, "upload")));
	pthread_mutex_unlock(&c->mu);
	if (known)
		return token;
	key = gv_strdupf(CTL_KEY_JOBS "%020" PRIu64, id);
	if (gv_kv_get(c->kv, key, &en, NULL) == 0) {
		json_t *rec = json_loads(en->value, 0, NULL);
		const char *t = json_string_value(json_object_get(rec, "upload"));
		token = t ? strdup(t) : NULL;
		json_decref(rec);
		gv_kv_entries_free(en, 1);
	}
	free(key);
	return token;
}

/* The transfer server's resolver (ctl_internal.h). */
int ctl_resolve(void *ud, const char *name, char **path, char **idx_path)
{
	gv_ctl *c = ud;
	char kind[16], arg[64], *token = NULL;
	const char *colon;
	bool local = false;
	gv_err e;
	int r;

	*path = *idx_path = NULL;
	if (!strncmp(name, "peer:", 5)) { /* peer:KIND:ARG */
		local = true;
		name += 5;
		colon = strchr(name, ':');
		if (!colon || (size_t)(colon - name) >= sizeof(kind) || strlen(colon + 1) >= sizeof(arg))
			return -ENOENT;
		snprintf(kind, sizeof(kind), "%.*s", (int)(colon - name), name);
		snprintf(arg, sizeof(arg), "%s", colon + 1);
	} else if (!strncmp(name, "job:", 4)) { /* job:ID:input, job:ID:output */
		name += 4;
		colon = strchr(name, ':');
		if (!colon || (size_t)(colon - name) >= sizeof(arg) ||
		    strlen(colon + 1) >= sizeof(kind))
			return -ENOENT;
		snprintf(arg, sizeof(arg), "%.*s", (int)(colon - name), name);
		snprintf(kind, sizeof(kind), "%s", colon + 1);
		if (!id_ok(arg) || (strcmp(kind, "input") && strcmp(kind, "output")))
			return -ENOENT;
		if (!strcmp(kind, "input")) {
			token = input_token(c, strtoull(arg, NULL, 10));
			if (!token) { /* submitted before inputs were kept by token */
				*path = gv_strdupf("%s/jobs/%s/input.tar", c->datadir, arg);
				*idx_path = gv_strdupf("%s/jobs/%s/.input.gvidx", c->datadir, arg);
				goto check;
			}
			snprintf(arg, sizeof(arg), "%s", token);
			free(token);
		}
	} else {
		return -ENOENT;
	}
	if (file_paths(c, kind, arg, path, idx_path) < 0)
		return -ENOENT;
	if (!local && access(*path, R_OK) < 0 && (r = ctl_files_ensure(c, kind, arg, NULL, &e)) < 0)
		fprintf(stderr, "gridvmctld: %s\n", e.msg);
check:
	if (access(*path, R_OK) < 0) {
		free(*path);
		free(*idx_path);
		*path = *idx_path = NULL;
		return -ENOENT;
	}
	return 0;
}

/* ---- copying in the background what this controller lacks ---- */

struct wanted {
	char kind[8], arg[40];
	unsigned tries;
	uint64_t next_ms;
};

struct sync {
	gv_ctl *c;
	struct wanted *w;
	size_t n, cap;
};

/* Copy @kind @arg now if missing; if that fails, again later. */
static void want(struct sync *s, const char *kind, const char *arg)
{
	gv_ctl *c = s->c;
	char *path = NULL, *idx = NULL;
	gv_err e;

	if (file_paths(c, kind, arg, &path, &idx) < 0 || access(path, R_OK) == 0)
		goto out;
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->w[i].kind, kind) && !strcmp(s->w[i].arg, arg))
			goto out; /* tried again in its time */
	if (gv_fault("grid.ctl.files-sync", &e) == 0 && ctl_files_ensure(c, kind, arg, NULL, &e) == 0)
		goto out;
	fprintf(stderr, "gridvmctld: %s (trying again later)\n", e.msg);
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->w = realloc(s->w, s->cap * sizeof(*s->w));
		if (!s->w)
			abort();
	}
	struct wanted *w = &s->w[s->n++];
	memset(w, 0, sizeof(*w));
	snprintf(w->kind, sizeof(w->kind), "%s", kind);
	snprintf(w->arg, sizeof(w->arg), "%s", arg);
	w->next_ms = gv_now_ms() + RETRY_MIN_MS;
out:
	free(path);
	free(idx);
}

/* The files a job record says this controller should hold. */
static void check_record(struct sync *s, const char *text)
{
	json_t *rec;
	char id[24];

	/* most records changes are of jobs with none: skip them unparsed */
	if (!strstr(text, "\"upload\"") && !strstr(text, "_kept\":true"))
		return;
	if (!(rec = json_loads(text, 0, NULL)))
		return;
	snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(rec, "id")));
	const char *token = json_string_value(json_object_get(rec, "upload"));
	/* an input only until its job ends */
	if (token && !gv_job_state_final(gv_job_record_state(rec)))
		want(s, "input", token);
	if (json_is_true(json_object_get(rec, "log_kept")))
		want(s, "log", id);
	if (json_is_true(json_object_get(rec, "output_kept")))
		want(s, "output", id);
	json_decref(rec);
}

static void retry_wanted(struct sync *s)
{
	uint64_t now = gv_now_ms();
	gv_err e;

	for (size_t i = 0; i < s->n;) {
		struct wanted *w = &s->w[i];
		if (w->next_ms > now) {
			i++;
			continue;
		}
		if (gv_fault("grid.ctl.files-sync", &e) == 0 &&
		    ctl_files_ensure(s->c, w->kind, w->arg, NULL, &e) == 0) {
			s->w[i] = s->w[--s->n];
			continue;
		}
		uint64_t wait = (uint64_t)RETRY_MIN_MS << (w->tries < 6 ? ++w->tries : 6);
		w->next_ms = now + (wait < RETRY_MAX_MS ? wait : RETRY_MAX_MS);
		i++;
	}
}

/* Every job record in the store: 0 and *rev, the revision to watch from. */
static int scan(struct sync *s, int64_t *rev)
{
	gv_kv_entry *v = NULL;
	size_t n = 0;
	gv_err e;
	int r = gv_kv_range(s->c->kv, CTL_KEY_JOBS, &v, &n, rev, &e);

	for (size_t i = 0; r == 0 && i < n && !ctl_stopping(s->c); i++)
		check_record(s, v[i].value);
	gv_kv_entries_free(v, n);
	return r;
}

void *ctl_files_sync(void *arg)
{
	struct sync s = { .c = arg };
	gv_ctl *c = s.c;
	int64_t from = 0;
	bool rescan = true, led = false;

	while (!ctl_stopping(c)) {
		pthread_mutex_lock(&c->mu);
		bool leading = ctl_leading(c);
		pthread_mutex_unlock(&c->mu);
		/* once more on taking the lead: what it missed while it stood
		 * by; from then on it makes the files itself */
		if (leading && !led)
			rescan = led = true;
		if (rescan) {
			int64_t rev = 0;
			if (scan(&s, &rev) == 0) {
				rescan = false;
				from = rev + 1;
			} else if (!ctl_sleep(c, 1000)) {
				break;
			}
		}
		retry_wanted(&s);
		if (leading) {
			(void)ctl_sleep(c, 1000);
			continue;
		}
		/* standing by: every record that changes (the job's files are
		 * on this controller already when the leader writes that it
		 * relies on them, unless it missed the copy) */
		gv_kv_event *ev = NULL;
		size_t n = 0;
		gv_err e;
		int r = gv_kv_watch(c->kv, CTL_KEY_JOBS, from, 1000, &ev, &n, &from, &e);
		for (size_t i = 0; r == 0 && i < n; i++)
			if (ev[i].kind == GV_KV_EV_PUT)
				check_record(&s, ev[i].kv.value);
		gv_kv_events_free(ev, n);
		if (r == -ERANGE)
			rescan = true;
		else if (r < 0)
			(void)ctl_sleep(c, 1000);
	}
	free(s.w);
	return NULL;
}
