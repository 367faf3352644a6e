/* SPDX-License-Identifier: MIT */
/* job.c - a grid job's record: validation of a submission, states (job.h). */
#include <gridvm/grid/job.h>

#include <gridvm/base/util.h>
#include <gridvm/sched/expr.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
	[GV_JOB_S_QUEUED] = "queued",	    [GV_JOB_S_SCHEDULED] = "scheduled",
	[GV_JOB_S_STAGING] = "staging",	    [GV_JOB_S_RUNNING] = "running",
	[GV_JOB_S_MIGRATING] = "migrating", [GV_JOB_S_COMPLETED] = "completed",
	[GV_JOB_S_FAILED] = "failed",	    [GV_JOB_S_CANCELLED] = "cancelled",
};

const char *gv_job_state_name(gv_job_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

int gv_job_state_parse(const char *name, gv_job_state *out)
{
	for (size_t i = 0; name && i < sizeof(state_names) / sizeof(state_names[0]); i++)
		if (!strcmp(name, state_names[i])) {
			*out = (gv_job_state)i;
			return 0;
		}
	return -EINVAL;
}

bool gv_job_state_final(gv_job_state s)
{
	return s == GV_JOB_S_COMPLETED || s == GV_JOB_S_FAILED || s == GV_JOB_S_CANCELLED;
}

gv_job_state gv_job_record_state(const json_t *rec)
{
	gv_job_state s = GV_JOB_S_QUEUED;

	(void)gv_job_state_parse(json_string_value(json_object_get(rec, "state")), &s);
	return s;
}

/* A size given as a number of bytes or a string with a unit. */
static int get_size(const json_t *req, const char *key, uint64_t def, uint64_t *out,
		    gv_err *e)
{
	json_t *v = json_object_get(req, key);

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v) && gv_parse_size(json_string_value(v), 1, out) == 0 && *out > 0)
		return 0;
	return gv_err_set(e, -EINVAL, "invalid %s: a size such as 512M or 2G", key);
}

/* A duration given as seconds or a string ("90m"). */
static int get_duration(const json_t *req, const char *key, int64_t *out, gv_err *e)
{
	json_t *v = json_object_get(req, key);
	uint64_t ms;

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v) && gv_parse_duration_ms(json_string_value(v), &ms) == 0) {
		*out = (int64_t)((ms + 999) / 1000);
		return 0;
	}
	return gv_err_set(e, -EINVAL, "invalid %s: a duration such as 90s, 30m or 2h", key);
}

static int get_expr(const json_t *req, const char *key, const char *what, json_t *rec,
		    gv_err *e)
{
	const char *src = json_string_value(json_object_get(req, key));
	gv_expr *x = NULL;
	int r;

	if (json_object_get(req, key) && !json_is_null(json_object_get(req, key)) && !src)
		return gv_err_set(e, -EINVAL, "invalid %s: it must be a string", what);
	if (!src || !*src)
		return 0;
	if ((r = gv_expr_parse(src, &x, e)) < 0)
		return gv_err_wrap(e, r, what);
	gv_expr_free(x);
	json_object_set_new(rec, key, json_string(src));
	return 0;
}

/* A guest path (absolute, or relative to the job's working directory):
 * no ".." component, one line, not too long. */
static bool guest_path_ok(const char *p)
{
	size_t n = p ? strlen(p) : 0;

	if (!n || n >= 1024 || strpbrk(p, "\n\r"))
		return false;
	for (const char *c = p; (c = strstr(c, "..")); c += 2)
		if ((c == p || c[-1] == '/') && (c[2] == '/' || c[2] == '\0'))
			return false;
	return true;
}

static int get_strings(const json_t *req, const char *key, bool paths, json_t *rec, gv_err *e)
{
	json_t *v = json_object_get(req, key), *x, *out;
	size_t i;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return gv_err_set(e, -EINVAL, "invalid %s: a list of strings", key);
	out = json_array();
	json_array_foreach(v, i, x) {
		const char *s = json_string_value(x);
		if (!s || (paths && !guest_path_ok(s))) {
			json_decref(out);
			return gv_err_set(e, -EINVAL, "invalid %s entry %zu: %s", key, i + 1,
					  paths ? "a guest path without '..'" : "a string");
		}
		json_array_append_new(out, json_string(s));
	}
	json_object_set_new(rec, key, out);
	return 0;
}

static int get_checkpoint(const json_t *req, json_t *rec, gv_err *e)
{
	json_t *keep = json_object_get(req, "checkpoint_keep");
	int64_t every;
	json_int_t n = 0; /* 0: keep all */
	int r = get_duration(req, "checkpoint_every", &every, e);

	if (r < 0)
		return r;
	if (json_is_string(keep) && strcmp(json_string_value(keep), "all")) {
		char *end;
		long v = strtol(json_string_value(keep), &end, 10);
		if (*end || v < 1)
			return gv_err_set(e, -EINVAL, "invalid checkpoint_keep: all or a count >= 1");
		n = v;
	} else if (json_is_integer(keep)) {
		if (json_integer_value(keep) < 0)
			return gv_err_set(e, -EINVAL, "invalid checkpoint_keep: all or a count >= 1");
		n = json_integer_value(keep);
	} else if (keep && !json_is_null(keep) && !json_is_string(keep)) {
		return gv_err_set(e, -EINVAL, "invalid checkpoint_keep: all or a count >= 1");
	}
	if (every > 0 && every < 5)
		return gv_err_set(e, -EINVAL, "invalid checkpoint_every: at least 5 s");
	/* hosts its checkpoints are copied to (absent: the grid's
	 * --checkpoint-replicas) */
	json_t *reps = json_object_get(req, "checkpoint_replicas");
	json_int_t nrep = -1;
	if (json_is_string(reps)) {
		char *end;
		long v = strtol(json_string_value(reps), &end, 10);
		nrep = *end || end == json_string_value(reps) || v < 0 ? -2 : v;
	} else if (json_is_integer(reps)) {
		nrep = json_integer_value(reps) < 0 ? -2 : json_integer_value(reps);
	} else if (reps && !json_is_null(reps)) {
		nrep = -2;
	}
	if (nrep < -1 || nrep > 8)
		return gv_err_set(e, -EINVAL, "invalid checkpoint_replicas: 0 to 8 hosts");
	json_t *ck = json_pack("{s:I, s:I, s:b}", "every", (json_int_t)every, "keep", n,
			       "drop_on_success",
			       json_is_true(json_object_get(req, "checkpoint_drop_on_success")));
	if (nrep >= 0)
		json_object_set_new(ck, "replicas", json_integer(nrep));
	json_object_set_new(rec, "checkpoint", ck);
	return 0;
}

int gv_job_from_submit(const json_t *req, uint64_t id, uint32_t uid, double now, json_t **out,
		       gv_err *e)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	const char *image = json_string_value(json_object_get(req, "image"));
	json_t *cmd = json_object_get(req, "cmd"), *rec, *pri = json_object_get(req, "priority");
	json_t *cpus_j = json_object_get(req, "cpus");
	uint64_t memory;
	int64_t walltime;
	json_int_t cpus = 1;
	int r = 0;

	*out = NULL;
	if (!json_is_object(req))
		return gv_err_set(e, -EINVAL, "a submission is a JSON object");
	if (name && (!*name || strlen(name) > 63 || strpbrk(name, "\n\r\t")))
		return gv_err_set(e, -EINVAL, "invalid name: 1 to 63 characters, one line");
	if (!image)
		image = "default";
	if (!gv_name_valid(image))
		return gv_err_set(e, -EINVAL, "invalid image name '%s'", image);
	if (!json_is_array(cmd) || json_array_size(cmd) == 0)
		return gv_err_set(e, -EINVAL, "no command: give it after --");
	for (size_t i = 0; i < json_array_size(cmd); i++)
		if (!json_is_string(json_array_get(cmd, i)))
			return gv_err_set(e, -EINVAL, "the command is a list of strings");
	if (cpus_j && !json_is_null(cpus_j)) {
		if (!json_is_integer(cpus_j) || json_integer_value(cpus_j) < 1 ||
		    json_integer_value(cpus_j) > 64)
			return gv_err_set(e, -EINVAL, "invalid cpus: 1 to 64");
		cpus = json_integer_value(cpus_j);
	}
	if (pri && !json_is_null(pri) &&
	    (!json_is_integer(pri) || llabs(json_integer_value(pri)) > 1000000))
		return gv_err_set(e, -EINVAL, "invalid priority: an integer (higher runs first)");
	if ((r = get_size(req, "memory", 512ull << 20, &memory, e)) < 0)
		return r;
	if (memory < (64ull << 20) || memory > (1ull << 40))
		return gv_err_set(e, -EINVAL, "invalid memory: 64M to 1T");
	if ((r = get_duration(req, "walltime", &walltime, e)) < 0)
		return r;
	rec = json_pack("{s:I, s:s, s:i, s:s, s:I, s:I, s:O, s:I, s:I, s:f, s:s, s:i}", "id",
			(json_int_t)id, "name", name ? name : "", "user", (int)uid, "image", image,
			"cpus", cpus, "memory", (json_int_t)memory, "cmd", cmd, "priority",
			pri ? json_integer_value(pri) : 0, "walltime", (json_int_t)walltime,
			"submitted", now, "state", "queued", "moves", 0);
	if (!rec)
		return gv_err_set(e, -ENOMEM, "out of memory");
	if ((r = get_expr(req, "requires", "requirements", rec, e)) < 0 ||
	    (r = get_expr(req, "rank", "rank", rec, e)) < 0 ||
	    (r = get_strings(req, "outputs", true, rec, e)) < 0 ||
	    (r = get_strings(req, "input_paths", true, rec, e)) < 0 ||
	    (r = get_strings(req, "env", false, rec, e)) < 0 || (r = get_checkpoint(req, rec, e)) < 0) {
		json_decref(rec);
		return r;
	}
	for (size_t i = 0; i < json_array_size(json_object_get(rec, "env")); i++)
		if (!strchr(json_string_value(json_array_get(json_object_get(rec, "env"), i)), '=')) {
			json_decref(rec);
			return gv_err_set(e, -EINVAL, "invalid env entry %zu: NAME=VALUE", i + 1);
		}
	json_object_set_new(rec, "input_bytes",
			    json_integer(json_integer_value(json_object_get(req, "input_bytes"))));
	*out = rec;
	return 0;
}

json_t *gv_job_vmdef(const json_t *rec, const char *vm_name)
{
	json_t *ck = json_object_get(rec, "checkpoint");
	json_t *d = json_pack("{s:s, s:I, s:I, s:s, s:O, s:I, s:I, s:b}", "name", vm_name, "vcpus",
			      json_integer_value(json_object_get(rec, "cpus")), "memory_mib",
			      json_integer_value(json_object_get(rec, "memory")) >> 20, "image",
			      json_string_value(json_object_get(rec, "image")), "job",
			      json_object_get(rec, "cmd"), "checkpoint_every_s",
			      json_integer_value(json_object_get(ck, "every")), "checkpoint_keep",
			      json_integer_value(json_object_get(ck, "keep")),
			      "checkpoint_drop_on_success",
			      json_is_true(json_object_get(ck, "drop_on_success")));

	if (json_object_get(rec, "env"))
		json_object_set(d, "env", json_object_get(rec, "env"));
	if (json_object_get(rec, "outputs"))
		json_object_set(d, "outputs", json_object_get(rec, "outputs"));
	/* the inputs arrive packed (the agent fetches them and names the
	 * file in "input_tar"); here only where each goes in the guest */
	if (json_array_size(json_object_get(rec, "input_paths"))) {
		json_t *in = json_array(), *p;
		size_t i;
		json_array_foreach(json_object_get(rec, "input_paths"), i, p)
			json_array_append_new(in, json_pack("{s:O}", "guest", p));
		json_object_set_new(d, "inputs", in);
	}
	return d;
}

const char *gv_job_vm_name(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "job-%" PRIu64, id);
	return buf;
}

uint64_t gv_job_id_of_vm(const char *vm)
{
	char *end;
	unsigned long long id;

	if (!vm || strncmp(vm, "job-", 4) || !vm[4] || vm[4] == '0')
		return 0;
	id = strtoull(vm + 4, &end, 10);
	return *end ? 0 : (uint64_t)id;
}
