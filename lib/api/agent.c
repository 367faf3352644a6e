/* SPDX-License-Identifier: MIT */
/* agent.c - HTTP+JSON API of gridvmd (libmicrohttpd on a unix socket);
 * every request is the peer's user's (SO_PEERCRED), who may do what is
 * agent_users.c's. */
#include "agent_internal.h"

#include <gridvm/base/user.h>
#include <gridvm/node/checkpoint.h>
#include <gridvm/node/image.h>
#include <gridvm/node/migrate.h>
#include <gridvm/node/template.h>

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct stream_job;

struct req {
	char *body;
	size_t len;
	bool too_big; /* its body passed MAX_BODY */
	gv_user user; /* who asks (the socket's peer) */
	bool known;   /* @user was found */
};

static enum MHD_Result send_bytes(struct MHD_Connection *c, unsigned status,
				  const char *type, void *data, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, data, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Sends @j (reference stolen). */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	return send_bytes(c, status, "application/json", s, strlen(s));
}

/* An error body (gv_err_json: {"ok": false, "error", "errno"}) with HTTP
 * @status; clients read "error". */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, int code,
				  const char *msg)
{
	return send_json(c, status, gv_err_json(code, msg));
}

static unsigned status_of(int rc)
{
	switch (rc) {
	case -ENOENT: return 404;
	case -EEXIST:
	case -EBUSY: return 409;
	case -EINVAL: return 400;
	case -EACCES:
	case -EPERM:
	case -EDQUOT: return 403;
	default: return 500;
	}
}

static enum MHD_Result send_result(struct MHD_Connection *c, int rc, gv_err *e,
				   json_t *ok)
{
	if (rc < 0) {
		json_decref(ok);
		return send_error(c, status_of(rc), rc, e->msg);
	}
	return send_json(c, 200, ok ? ok : json_object());
}

static const char *jstr(json_t *j, const char *k)
{
	return json_string_value(json_object_get(j, k));
}

static enum MHD_Result vm_verb(gv_agent *a, struct MHD_Connection *c, const gv_user *u,
			       const char *name, const char *verb, json_t *body)
{
	bool runs = !strcmp(verb, "start") || !strcmp(verb, "restore");
	struct agent_ulock *l = NULL;
	gv_err e = { "" };
	json_t *out = NULL;
	int rc = 0;

	/* QEMU writes and reads a state file with the agent's rights */
	if ((!strcmp(verb, "save") || !strcmp(verb, "restore")) && jstr(body, "path"))
		rc = agent_need_admin(u, "a state file at a path of your choice (omit it: the "
				      "VM's own directory)", &e);
	if (rc == 0 && runs) {
		l = agent_user_lock(a, u);
		rc = agent_run_admit(a, u, name, &e);
	}
	if (rc < 0)
		;
	else if (!strcmp(verb, "start"))
		rc = gv_vm_start(a->h, name, &e);
	else if (!strcmp(verb, "pause"))
		rc = gv_vm_pause(a->h, name, &e);
	else if (!strcmp(verb, "resume"))
		rc = gv_vm_resume(a->h, name, &e);
	else if (!strcmp(verb, "stop")) {
		json_t *t = json_object_get(body, "timeout_ms");
		rc = gv_vm_stop(a->h, name, t ? (uint64_t)json_integer_value(t) : 10000, &e);
	} else if (!strcmp(verb, "save"))
		rc = gv_vm_save(a->h, name, jstr(body, "path"), &e);
	else if (!strcmp(verb, "restore"))
		rc = gv_vm_restore(a->h, name, jstr(body, "path"), &e);
	else
		return send_error(c, 404, -ENOENT, "unknown verb");
	agent_user_unlock(a, l);
	if (rc == 0)
		rc = gv_vm_show(a->h, name, &out, &e);
	return send_result(c, rc, &e, out);
}

static enum MHD_Result vm_log(gv_agent *a, struct MHD_Connection *c,
			      const char *name, const char *which)
{
	const char *off = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset");
	const char *wait = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "wait");
	uint64_t offset = off ? strtoull(off, NULL, 10) : 0;
	uint64_t wait_ms = wait ? strtoull(wait, NULL, 10) : 0;
	gv_vmstate st;
	gv_err e = { "" };
	char *data = NULL, hdr[32];
	size_t len = 0;
	int rc;

	if (wait_ms > 60000)
		wait_ms = 60000;
	rc = gv_vm_read_log(a->h, name, which, offset, wait_ms, 1 << 20, &data, &len,
			    &st, &e);
	if (rc < 0) {
		free(data);
		return send_result(c, rc, &e, NULL);
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(len, data,
								 MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/octet-stream");
	MHD_add_response_header(r, "X-Gridvm-State", gv_vmstate_name(st));
	snprintf(hdr, sizeof(hdr), "%llu", (unsigned long long)(offset + len));
	MHD_add_response_header(r, "X-Gridvm-Offset", hdr);
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* GET /v1/vms/NAME/output: the outputs' manifest; GET .../output/tar
 * ?offset=N: the next bytes of their tar (none at its end), the offset
 * after them in X-Gridvm-Offset. */
static enum MHD_Result vm_output(gv_agent *a, struct MHD_Connection *c, const char *name,
				 const char *which)
{
	const char *off = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset");
	uint64_t offset = off ? strtoull(off, NULL, 10) : 0;
	gv_err e = { "" };
	json_t *m = NULL;
	char *data = NULL, hdr[32];
	size_t len = 0;
	int rc;

	if (!*which) {
		rc = gv_vm_output(a->h, name, &m, &e);
		return send_result(c, rc, &e, m);
	}
	if (strcmp(which, "tar"))
		return send_json(c, 404, json_pack("{s:s}", "error", "no such route"));
	rc = gv_vm_output_read(a->h, name, offset, 4 << 20, &data, &len, &e);
	if (rc < 0)
		return send_result(c, rc, &e, NULL);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, data,
								 MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/x-tar");
	snprintf(hdr, sizeof(hdr), "%llu", (unsigned long long)(offset + len));
	MHD_add_response_header(r, "X-Gridvm-Offset", hdr);
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* /v1/vms/NAME/checkpoints[/ID]: POST creates, GET lists or shows,
 * DELETE deletes; POST /v1/vms/NAME/checkpoints/restore {"id"} restores. */
static enum MHD_Result vm_checkpoints(gv_agent *a, struct MHD_Connection *c,
				      const gv_user *u, const char *method, const char *name,
				      const char *id, json_t *body)
{
	gv_err e = { "" };
	json_t *out = NULL;
	int rc;

	if (!strcmp(id, "restore") && !strcmp(method, "POST")) {
		struct agent_ulock *l = agent_user_lock(a, u);
		rc = agent_run_admit(a, u, name, &e);
		if (rc == 0)
			rc = gv_checkpoint_restore(a->h, name, jstr(body, "id"), &e);
		agent_user_unlock(a, l);
		return send_result(c, rc, &e, NULL);
	}
	if (!*id && !strcmp(method, "POST"))
		rc = gv_checkpoint_create(a->h, name, &out, &e);
	else if (!*id && !strcmp(method, "GET"))
		return send_json(c, 200, gv_checkpoint_list(a->h, name));
	else if (!strcmp(method, "GET"))
		rc = gv_checkpoint_show(a->h, name, id, &out, &e);
	else if (!strcmp(method, "DELETE"))
		rc = gv_checkpoint_delete(a->h, name, id, &e);
	else
		return send_error(c, 404, -ENOENT, "no such route");
	return send_result(c, rc, &e, out);
}

static enum MHD_Result vm_create(gv_agent *a, struct MHD_Connection *c, const gv_user *u,
				 json_t *body)
{
	struct agent_ulock *l = agent_user_lock(a, u);
	gv_vmdef *d = NULL;
	gv_err e = { "" };
	json_t *out = NULL;
	char *tmp = NULL, *name = NULL;
	int rc = agent_vm_admit(a, u, body, &tmp, &e);

	if (rc == 0)
		rc = gv_vmdef_from_json(body, &d, &e);
	if (rc == 0) {
		name = strdup(d->name);
		rc = gv_vm_create(a->h, d, &e);
	}
	agent_user_unlock(a, l);
	if (tmp)
		unlink(tmp);
	if (rc == 0)
		rc = gv_vm_show(a->h, name, &out, &e);
	free(tmp);
	free(name);
	return send_result(c, rc, &e, out);
}

static enum MHD_Result stream(gv_agent *a, struct MHD_Connection *c, json_t *body,
			      json_t *(*fn)(struct stream_job *j));
static json_t *migrate_job(struct stream_job *j);

static enum MHD_Result route_vms(gv_agent *a, struct MHD_Connection *c, const gv_user *u,
				 const char *method, const char *rest, json_t *body)
{
	char name[128] = "", sub[64] = "", which[64] = "";
	gv_err e = { "" };
	json_t *out = NULL;
	int rc;

	if (!*rest) {
		if (!strcmp(method, "GET"))
			return send_json(c, 200, agent_filter(a, u, gv_vm_list(a->h), NULL));
		if (!strcmp(method, "POST"))
			return vm_create(a, c, u, body);
		return send_error(c, 405, -EINVAL, "method not allowed");
	}
	sscanf(rest, "/%127[^/]/%63[^/]/%63s", name, sub, which);
	/* another user's VM is, to this user, no VM at all */
	if (!agent_vm_visible(a, u, name))
		return send_result(c, agent_no_vm(name, &e), &e, NULL);
	if (!*sub && !strcmp(method, "GET")) {
		rc = gv_vm_show(a->h, name, &out, &e);
		return send_result(c, rc, &e, out);
	}
	if (!*sub && !strcmp(method, "DELETE")) {
		const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "force");
		rc = gv_vm_delete(a->h, name, f && !strcmp(f, "1"), &e);
		return send_result(c, rc, &e, NULL);
	}
	if (!strcmp(sub, "log") && !strcmp(method, "GET"))
		return vm_log(a, c, name, which);
	if (!strcmp(sub, "output") && !strcmp(method, "GET"))
		return vm_output(a, c, name, which);
	if (!strcmp(sub, "checkpoints"))
		return vm_checkpoints(a, c, u, method, name, which, body);
	if (!strcmp(sub, "migrate-adopt") && !strcmp(method, "POST")) {
		json_t *out = NULL;
		rc = gv_migrate_adopt(a->h, name, &out, &e);
		return send_result(c, rc, &e, out);
	}
	if (!strcmp(sub, "migrate-cancel") && !strcmp(method, "POST")) {
		rc = gv_migrate_cancel(a->h, name, &e);
		return send_result(c, rc, &e, NULL);
	}
	if (!strcmp(sub, "migrate") && !strcmp(method, "POST")) {
		json_t *b = json_is_object(body) ? json_incref(body) : json_object();
		enum MHD_Result ret;
		json_object_set_new(b, "name", json_string(name));
		ret = stream(a, c, b, migrate_job);
		json_decref(b);
		return ret;
	}
	if (*sub && !strcmp(method, "POST"))
		return vm_verb(a, c, u, name, sub, body);
	return send_error(c, 404, -ENOENT, "no such route");
}

/* Long jobs (image build, image fetch) stream their log lines through a
 * pipe into the response; the last line is "GRIDVM-RESULT <json>". */
typedef json_t *(*stream_fn)(struct stream_job *j);

struct stream_job {
	gv_agent *a;
	json_t *body;
	int wfd, rfd;
	stream_fn fn;
	int refs; /* the thread and the response; the last one frees */
	pthread_mutex_t mu;
};

static void stream_unref(struct stream_job *j)
{
	pthread_mutex_lock(&j->mu);
	bool last = --j->refs == 0;
	pthread_mutex_unlock(&j->mu);
	if (last) {
		pthread_mutex_destroy(&j->mu);
		free(j);
	}
}

/* The GRIDVM-RESULT line: {"ok": true} or gv_err_json's error, and the
 * job's summary (@extra, stolen) if there is one. */
static json_t *job_result(int rc, gv_err *e, json_t *extra)
{
	json_t *res = rc < 0 ? gv_err_json(rc, e->msg) : json_pack("{s:b}", "ok", 1);

	if (extra)
		json_object_set_new(res, "summary", extra);
	return res;
}

static json_t *build_job(struct stream_job *j)
{
	gv_err e = { "" };
	const char *name = jstr(j->body, "name");
	int rc = gv_image_build(j->a->h, name ? name : "", jstr(j->body, "suite"),
				jstr(j->body, "packages"), jstr(j->body, "mirror"), j->wfd, &e);

	return job_result(rc, &e, NULL);
}

static void fetch_progress(void *ud, const json_t *p)
{
	struct stream_job *j = ud;
	char *s = json_dumps(p, JSON_COMPACT);

	dprintf(j->wfd, "PROGRESS %s\n", s);
	free(s);
}

/* 0 = the default; else 1 s .. 1 h */
static int clamp_ms(json_int_t v)
{
	return v <= 0 ? 0 : v < 1000 ? 1000 : v > 3600000 ? 3600000 : (int)v;
}

/* "freeze_argv": ["cmd", "arg", ...] as a NULL-terminated argv (NULL if
 * absent); -EINVAL if it is not an array of strings. */
static int argv_of(json_t *body, const char *key, char ***out, gv_err *e)
{
	json_t *a = json_object_get(body, key), *v;
	size_t i;

	*out = NULL;
	if (!a)
		return 0;
	if (!json_is_array(a) || !json_array_size(a))
		return gv_err_set(e, -EINVAL, "%s must be a non-empty array of strings (the "
				  "command and its arguments)", key);
	*out = calloc(json_array_size(a) + 1, sizeof(char *));
	if (!*out)
		abort();
	json_array_foreach(a, i, v) {
		if (!json_is_string(v))
			return gv_err_set(e, -EINVAL, "%s must be an array of strings", key);
		(*out)[i] = strdup(json_string_value(v));
	}
	return 0;
}

static json_t *fetch_job(struct stream_job *j)
{
	gv_err e = { "" };
	json_t *sum = NULL;
	char **freeze = NULL, **thaw = NULL;
	int rc = 0;

	/* the agent runs no shell with a client's text: hooks come as argv */
	if (json_object_get(j->body, "freeze_cmd") || json_object_get(j->body, "thaw_cmd"))
		rc = gv_err_set(&e, -EINVAL, "freeze_cmd and thaw_cmd (shell command lines) are "
				"no longer taken: send freeze_argv and thaw_argv, each the command "
				"and its arguments (the CLI's --freeze-cmd splits its text so)");
	if (rc == 0)
		rc = argv_of(j->body, "freeze_argv", &freeze, &e);
	if (rc == 0)
		rc = argv_of(j->body, "thaw_argv", &thaw, &e);
	gv_image_fetch_opts o = {
		.name = jstr(j->body, "name"), .from = jstr(j->body, "from"),
		.as = jstr(j->body, "as"), .codec = jstr(j->body, "codec"),
		.level = (int)json_integer_value(json_object_get(j->body, "level")),
		.timeout_ms = clamp_ms(json_integer_value(json_object_get(j->body, "timeout_ms"))),
		.no_local = json_is_true(json_object_get(j->body, "no_local")),
		.iterative = json_is_true(json_object_get(j->body, "iterative")),
		.freeze_argv = freeze, .thaw_argv = thaw,
		.max_passes = (unsigned)json_integer_value(json_object_get(j->body, "max_passes")),
		.progress = fetch_progress, .ud = j };
	if (rc == 0)
		rc = gv_image_fetch(j->a->h, &o, &sum, &e);
	gv_strv_free(freeze);
	gv_strv_free(thaw);
	return job_result(rc, &e, sum);
}

static void migrate_progress(void *ud, const char *phase, const json_t *info)
{
	struct stream_job *j = ud;
	json_t *p = json_pack("{s:s, s:O?}", "phase", phase, "info", (json_t *)info);
	char *s = json_dumps(p, JSON_COMPACT);

	dprintf(j->wfd, "PROGRESS %s\n", s);
	free(s);
	json_decref(p);
}

static json_t *migrate_job(struct stream_job *j)
{
	gv_err e = { "" };
	json_t *sum = NULL;
	gv_migrate_opts o = { .to = jstr(j->body, "to"),
			      .cold = json_is_true(json_object_get(j->body, "cold")),
			      .checkpoint = jstr(j->body, "checkpoint"),
			      .compress = jstr(j->body, "compress"),
			      .keep_checkpoints = json_is_true(
				      json_object_get(j->body, "keep_checkpoints")),
			      .progress = migrate_progress, .ud = j };
	int rc = gv_vm_migrate(j->a->h, jstr(j->body, "name"), &o, &sum, &e);

	return job_result(rc, &e, sum);
}

static void *stream_thread(void *arg)
{
	struct stream_job *j = arg;
	json_t *res = j->fn(j);
	char *s = json_dumps(res, JSON_COMPACT);

	dprintf(j->wfd, "GRIDVM-RESULT %s\n", s);
	free(s);
	json_decref(res);
	json_decref(j->body);
	close(j->wfd); /* a reader that went away only makes writes fail */
	stream_unref(j);
	return NULL;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream_job *j = cls;
	ssize_t n;

	do
		n = read(j->rfd, buf, max);
	while (n < 0 && errno == EINTR);
	return n > 0 ? n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls)
{
	struct stream_job *j = cls;

	close(j->rfd);
	stream_unref(j);
}

static enum MHD_Result stream(gv_agent *a, struct MHD_Connection *c, json_t *body,
			      stream_fn fn)
{
	struct stream_job *j = calloc(1, sizeof(*j));
	int p[2];
	pthread_t t;

	if (!j || pipe2(p, O_CLOEXEC) < 0)
		abort();
	signal(SIGPIPE, SIG_IGN); /* a client that goes away must not kill us */
	*j = (struct stream_job){ .a = a, .body = json_incref(body), .wfd = p[1],
				  .rfd = p[0], .fn = fn, .refs = 2 };
	pthread_mutex_init(&j->mu, NULL);
	if (pthread_create(&t, NULL, stream_thread, j) != 0) {
		close(p[0]);
		close(p[1]);
		json_decref(j->body);
		pthread_mutex_destroy(&j->mu);
		free(j);
		return send_error(c, 500, -EAGAIN, "cannot start a thread");
	}
	pthread_detach(t);
	struct MHD_Response *r = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
	MHD_add_response_header(r, "Content-Type", "text/plain");
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result image_similarity(gv_agent *a, struct MHD_Connection *c,
					const gv_user *u, json_t *body)
{
	json_t *names = json_object_get(body, "names"), *v, *out = NULL;
	char **n = calloc(json_array_size(names) + 1, sizeof(*n));
	gv_err e = { "" };
	size_t i;
	int rc = 0;

	if (!n)
		abort();
	json_array_foreach(names, i, v) {
		n[i] = (char *)(json_string_value(v) ? json_string_value(v) : "");
		if (rc == 0 && !agent_image_visible(a, u, n[i]))
			rc = gv_err_set(&e, -ENOENT, "no such image: %s", n[i]);
	}
	if (rc == 0)
		rc = gv_image_similarity(a->h, n, json_array_size(names), &out, &e);
	free(n);
	return send_result(c, rc, &e, out);
}

/* POST /v1/images/import {"name", "file"}: a user's file is read with
 * the user's rights, and the image is theirs (agent_users.c). */
static enum MHD_Result image_import(gv_agent *a, struct MHD_Connection *c, const gv_user *u,
				    json_t *body)
{
	const char *n = jstr(body, "name"), *f = jstr(body, "file");
	const char *fmt, *dd = gv_host_datadir(a->h);
	char *tmp = NULL, *path = NULL;
	json_t *owner = gv_user_owner_json(u);
	gv_err e = { "" };
	int rc;

	if (!n || !f) {
		json_decref(owner);
		return send_error(c, 400, -EINVAL, "name and file are required");
	}
	pthread_mutex_lock(&a->import_mu); /* the name's check, its owner, the import */
	rc = agent_import_admit(a, u, f, &tmp, &e);
	if (rc == 0 && gv_name_valid(n) && gv_image_resolve(dd, n, &path, &fmt) == 0)
		rc = gv_err_set(&e, -EEXIST, "an image named %s exists already", n);
	/* the owner first: the image is never seen without it */
	if (rc == 0 && !u->admin && gv_name_valid(n) &&
	    (rc = gv_image_set_owner(dd, n, owner)) < 0)
		gv_err_set(&e, rc, "cannot record the owner of image %s", n);
	if (rc == 0)
		rc = gv_image_import(a->h, n, tmp ? tmp : f, &e);
	if (rc < 0 && !u->admin && gv_name_valid(n) && rc != -EEXIST) {
		char *o = gv_strdupf("%s/images/.%s.owner", dd, n);
		unlink(o);
		free(o);
	}
	free(path);
	path = NULL;
	if (rc == 0 && !u->admin && gv_image_resolve(dd, n, &path, &fmt) == 0)
		(void)chmod(path, 0600); /* a user's image: theirs to read */
	pthread_mutex_unlock(&a->import_mu);
	if (tmp)
		unlink(tmp);
	free(tmp);
	free(path);
	json_decref(owner);
	return send_result(c, rc, &e, NULL);
}

static enum MHD_Result route_images(gv_agent *a, struct MHD_Connection *c, const gv_user *u,
				    const char *method, const char *rest, json_t *body)
{
	gv_err e = { "" };
	int rc;

	if (!*rest && !strcmp(method, "GET"))
		return send_json(c, 200, agent_filter(a, u, gv_image_list(gv_host_datadir(a->h)),
						      NULL));
	if (!strcmp(rest, "/import") && !strcmp(method, "POST"))
		return image_import(a, c, u, body);
	/* debootstrap runs the packages' scripts as root; a fetch uses this
	 * host's credentials with any peer and may run freeze/thaw hooks */
	if (!strcmp(rest, "/build") && !strcmp(method, "POST"))
		return (rc = agent_need_admin(u, "building an image", &e)) < 0
			       ? send_result(c, rc, &e, NULL)
			       : stream(a, c, body, build_job);
	if (!strcmp(rest, "/fetch") && !strcmp(method, "POST"))
		return (rc = agent_need_admin(u, "fetching an image from another host", &e)) < 0
			       ? send_result(c, rc, &e, NULL)
			       : stream(a, c, body, fetch_job);
	if (!strcmp(rest, "/similarity") && !strcmp(method, "POST"))
		return image_similarity(a, c, u, body);
	if (*rest == '/' && strlen(rest) > 7 && !strcmp(rest + strlen(rest) - 6, "/index") &&
	    !strcmp(method, "POST")) {
		char name[128];
		json_t *out = NULL;
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(rest) - 7), rest + 1);
		rc = agent_image_visible(a, u, name)
			     ? gv_image_index(a->h, name, &out, &e)
			     : gv_err_set(&e, -ENOENT, "no such image: %s", name);
		return send_result(c, rc, &e, out);
	}
	if (*rest == '/' && !strcmp(method, "DELETE")) {
		json_t *o = gv_image_owner(gv_host_datadir(a->h), rest + 1);
		if (!agent_image_visible(a, u, rest + 1))
			rc = gv_err_set(&e, -ENOENT, "no such image: %s", rest + 1);
		else if (!gv_user_may(u, o)) /* root's, used by all */
			rc = agent_need_admin(u, "deleting one of root's images", &e);
		else
			rc = gv_image_delete(a->h, rest + 1, &e);
		json_decref(o);
		return send_result(c, rc, &e, NULL);
	}
	return send_error(c, 404, -ENOENT, "no such route");
}

/* /v1/templates: GET the list, POST {vcpus, memory_mib, accel} builds
 * one, DELETE /NAME. */
static enum MHD_Result route_templates(gv_agent *a, struct MHD_Connection *c,
				       const gv_user *u, const char *method, const char *rest,
				       json_t *body)
{
	json_t *out = NULL, *m = json_object_get(body, "memory_mib");
	gv_err e = { "" };
	int rc;

	if (!*rest && !strcmp(method, "GET"))
		return send_json(c, 200, gv_template_list(a->h));
	/* templates are shared by every user's VMs (they are built when
	 * needed without asking) */
	if ((rc = agent_need_admin(u, "building or deleting a template", &e)) < 0)
		return send_result(c, rc, &e, NULL);
	if (!*rest && !strcmp(method, "POST")) {
		json_t *v = json_object_get(body, "vcpus");
		rc = gv_template_build(a->h, v ? (int)json_integer_value(v) : 1,
				       m ? (uint64_t)json_integer_value(m) : 256,
				       jstr(body, "accel"), &out, &e);
		return send_result(c, rc, &e, out);
	}
	if (*rest == '/' && !strcmp(method, "DELETE")) {
		rc = gv_template_delete(a->h, rest + 1, &e);
		return send_result(c, rc, &e, NULL);
	}
	return send_error(c, 404, -ENOENT, "no such route");
}

/* Requests are small JSON documents; bulk data goes through files. */
#define MAX_BODY (16u << 20)

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version,
			       const char *upload, size_t *upload_size, void **con_cls)
{
	gv_agent *a = cls;
	struct req *rq = *con_cls;
	json_t *body = NULL;
	enum MHD_Result ret;

	if (!rq) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		*con_cls = rq = calloc(1, sizeof(*rq));
		if (rq)
			rq->known = ci && gv_user_of_socket(ci->connect_fd, &rq->user) == 0;
		return rq ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		/* a body past the limit is read and dropped, then refused */
		char *b = rq->too_big || rq->len + *upload_size > MAX_BODY
				  ? NULL : realloc(rq->body, rq->len + *upload_size + 1);
		if (b) {
			rq->body = b;
			memcpy(rq->body + rq->len, upload, *upload_size);
			rq->len += *upload_size;
			rq->body[rq->len] = '\0';
		} else {
			rq->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->too_big)
		return send_error(c, 413, -E2BIG, "request body too large (the limit is 16 MiB)");
	if (!rq->known)
		return send_error(c, 403, -EACCES, "cannot tell which user is asking (no peer "
				  "credentials on the socket)");
	if (rq->len) {
		body = json_loadb(rq->body, rq->len, 0, NULL);
		if (!body)
			return send_error(c, 400, -EINVAL, "request body is not JSON");
	}
	const gv_user *u = &rq->user;
	if (!strcmp(url, "/v1/migrations") && !strcmp(method, "GET"))
		ret = send_json(c, 200, agent_filter(a, u, gv_migrate_status(a->h), "vm"));
	else if (!strcmp(url, "/v1/checkpoints") && !strcmp(method, "GET"))
		ret = send_json(c, 200, agent_filter(a, u, gv_checkpoint_list(a->h, NULL), NULL));
	else if (!strcmp(url, "/v1/host") && !strcmp(method, "GET"))
		ret = send_json(c, 200, gv_host_info(a->h));
	else if (!strncmp(url, "/v1/vms", 7))
		ret = route_vms(a, c, u, method, url + 7, body);
	else if (!strncmp(url, "/v1/images", 10))
		ret = route_images(a, c, u, method, url + 10, body);
	else if (!strncmp(url, "/v1/templates", 13))
		ret = route_templates(a, c, u, method, url + 13, body);
	else
		ret = send_error(c, 404, -ENOENT, "no such route");
	json_decref(body);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *con_cls;

	if (rq) {
		free(rq->body);
		free(rq);
	}
	*con_cls = NULL;
}

void gv_agent_set_quotas(gv_agent *a, const char *path)
{
	free(a->quotas);
	a->quotas = path ? strdup(path) : gv_strdupf("%s/quotas.json", gv_host_datadir(a->h));
}

int gv_agent_start(gv_host *h, const char *sock_path, gv_agent **out, gv_err *e)
{
	gv_agent *a = calloc(1, sizeof(*a));
	int fd = gv_unix_listen(sock_path, 64), r;

	if (!a)
		abort();
	if (fd < 0) {
		free(a);
		return gv_err_set(e, fd, "cannot listen on %s: %s", sock_path, strerror(-fd));
	}
	if ((r = gv_user_socket_access(sock_path, e)) < 0) {
		close(fd);
		free(a);
		return r;
	}
	a->h = h;
	a->fd = fd;
	a->sock = strdup(sock_path);
	gv_agent_set_quotas(a, NULL);
	pthread_mutex_init(&a->ulocks_mu, NULL);
	pthread_mutex_init(&a->import_mu, NULL);
	a->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
					  MHD_USE_INTERNAL_POLLING_THREAD,
				  0, NULL, NULL, handler, a,
				  MHD_OPTION_LISTEN_SOCKET, fd,
				  MHD_OPTION_NOTIFY_COMPLETED, completed, a,
				  MHD_OPTION_CONNECTION_TIMEOUT, 0u, MHD_OPTION_END);
	if (!a->mhd) {
		close(fd);
		free(a->sock);
		free(a->quotas);
		free(a);
		return gv_err_set(e, -EIO, "cannot start the HTTP server");
	}
	*out = a;
	return 0;
}

void gv_agent_stop(gv_agent *a)
{
	if (!a)
		return;
	MHD_stop_daemon(a->mhd); /* closes the listening socket */
	unlink(a->sock);
	free(a->sock);
	free(a->quotas);
	free(a);
}
