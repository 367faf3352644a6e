/* SPDX-License-Identifier: MIT */
/*
 * builtin-job.c - `gridvm jobs` and `gridvm job show|logs|wait|cancel|
 * events|output`: the jobs of the grid, through its controller.
 */
#include "cli.h"

#include <errno.h>
#include <gridvm/base/b64.h>
#include <gridvm/base/user.h>
#include <gridvm/base/util.h>
#include <gridvm/xfer/xfer.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static bool has_flag(int argc, char **argv, const char *flag)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], flag))
			return true;
	return false;
}

/* The first argument that is not an option, as a job id (0: none). */
static long long job_arg(int argc, char **argv, const char *usage)
{
	for (int i = 1; i < argc; i++) {
		char *end;
		long long id;
		if (argv[i][0] == '-')
			continue;
		id = strtoll(argv[i], &end, 10);
		if (*end || id <= 0) {
			cli_error("invalid job id '%s' (see 'gridvm jobs')", argv[i]);
			return 0;
		}
		return id;
	}
	cli_error("usage: %s", usage);
	return 0;
}

static json_t *job_req(const char *op, long long id)
{
	return json_pack("{s:s, s:I}", "op", op, "id", (json_int_t)id);
}

static const char *fmt_dur(double s, char *buf, size_t len)
{
	if (s <= 0)
		snprintf(buf, len, "-");
	else if (s < 120)
		snprintf(buf, len, "%.0fs", s);
	else if (s < 7200)
		snprintf(buf, len, "%.0fm", s / 60);
	else
		snprintf(buf, len, "%.1fh", s / 3600);
	return buf;
}

int cmd_jobs(int argc, char **argv)
{
	json_t *rep = NULL, *j;
	size_t i;
	char d[32];

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm jobs [--json]\n"
		     "The grid's jobs (yours; every job for an administrator): owner, state,\n"
		     "host, run time, exit code, and why a job waits.");
		return 0;
	}
	if (cli_grid_call(json_pack("{s:s}", "op", "jobs"), &rep) < 0)
		return 1;
	if (has_flag(argc, argv, "--json")) {
		cli_print_json(json_object_get(rep, "jobs"));
		json_decref(rep);
		return 0;
	}
	printf("%-6s %-14s %-10s %-10s %-10s %-7s %-5s %s\n", "ID", "NAME", "USER", "STATE",
	       "HOST", "RUN", "EXIT", "REASON");
	json_array_foreach(json_object_get(rep, "jobs"), i, j) {
		json_t *code = json_object_get(j, "exit_code");
		char exit[16] = "-";
		const char *state = json_string_value(json_object_get(j, "state")) ?: "?";
		const char *reason = json_string_value(json_object_get(j, "reason"));
		if (json_is_integer(code))
			snprintf(exit, sizeof(exit), "%lld", (long long)json_integer_value(code));
		if (!reason && json_string_value(json_object_get(j, "error")))
			reason = json_string_value(json_object_get(j, "error"));
		if (!strcmp(state, "migrating") && json_string_value(json_object_get(j, "migrate_to")))
			reason = json_string_value(json_object_get(j, "migrate_to"));
		printf("%-6lld %-14.14s %-10.10s %-10s %-10.10s %-7s %-5s %s\n",
		       (long long)json_integer_value(json_object_get(j, "id")),
		       json_string_value(json_object_get(j, "name")) ?: "",
		       gv_owner_name(json_object_get(j, "owner")), state,
		       json_string_value(json_object_get(j, "host")) ?: "-",
		       fmt_dur(json_number_value(json_object_get(j, "runtime")), d, sizeof(d)),
		       exit, reason && strcmp(state, "running") ? reason : "");
	}
	json_decref(rep);
	return 0;
}

static int job_show(int argc, char **argv)
{
	const char *u = "gridvm job show ID [--json]";
	json_t *rep = NULL, *j, *v;
	const char *k;
	long long id;

	if (cli_wants_help(argc, argv))
		return printf("Usage: %s\nEverything the controller keeps about a job.\n", u), 0;
	if (!(id = job_arg(argc, argv, u)) || cli_grid_call(job_req("job-show", id), &rep) < 0)
		return 1;
	j = json_object_get(rep, "job");
	if (has_flag(argc, argv, "--json")) {
		cli_print_json(j);
	} else {
		json_object_foreach(j, k, v) {
			char *s = json_is_string(v) ? strdup(json_string_value(v))
						    : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			printf("%-16s %s\n", k, s ? s : "");
			free(s);
		}
	}
	json_decref(rep);
	return 0;
}

static int job_events(int argc, char **argv)
{
	const char *u = "gridvm job events ID [--json]";
	json_t *rep = NULL, *ev;
	long long id;
	size_t i;

	if (cli_wants_help(argc, argv))
		return printf("Usage: %s\nEvery decision about a job (placed, waits and why, "
			      "moved, state changes).\n", u), 0;
	if (!(id = job_arg(argc, argv, u)) || cli_grid_call(job_req("job-events", id), &rep) < 0)
		return 1;
	if (has_flag(argc, argv, "--json")) {
		cli_print_json(json_object_get(rep, "events"));
	} else {
		json_array_foreach(json_object_get(rep, "events"), i, ev) {
			time_t t = (time_t)json_number_value(json_object_get(ev, "time"));
			char when[32];
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
			printf("%s %-7s %s\n", when, json_string_value(json_object_get(ev, "kind")),
			       json_string_value(json_object_get(ev, "text")));
		}
	}
	json_decref(rep);
	return 0;
}

static int job_cancel(int argc, char **argv)
{
	const char *u = "gridvm job cancel ID";
	json_t *rep = NULL;
	long long id;

	if (cli_wants_help(argc, argv))
		return printf("Usage: %s\nStop a job (its VM is dropped, nothing is collected).\n",
			      u), 0;
	if (!(id = job_arg(argc, argv, u)) || cli_grid_call(job_req("job-cancel", id), &rep) < 0)
		return 1;
	json_decref(rep);
	return 0;
}

/* Print the job's output from the start; with @follow until it ends. */
static int follow_log(long long id, bool follow)
{
	json_int_t off = 0;
	uint8_t *pend = NULL;
	size_t plen = 0;
	int exit_code = -1, rc = 0;

	while (!cli_interrupted) {
		json_t *req = json_pack("{s:s, s:I, s:I, s:i}", "op", "job-log", "id", (json_int_t)id,
					"offset", off, "wait_ms", follow ? 2000 : 0), *rep = NULL;
		const char *b64;
		uint8_t *data = NULL;
		size_t n = 0;
		uint64_t t0 = gv_now_ms();
		if (cli_grid_call(req, &rep) < 0) {
			rc = 1;
			break;
		}
		uint64_t took = gv_now_ms() - t0;
		b64 = json_string_value(json_object_get(rep, "data")) ?: "";
		if (gv_b64_decode(b64, strlen(b64), &data, &n) < 0) {
			cli_error("the controller sent a damaged log");
			json_decref(rep);
			rc = 1;
			break;
		}
		off = json_integer_value(json_object_get(rep, "next"));
		bool final = json_is_true(json_object_get(rep, "final"));
		json_decref(rep);
		if (n) {
			pend = realloc(pend, plen + n);
			memcpy(pend + plen, data, n);
			plen += n;
			size_t used = cli_frames_out(pend, plen, &exit_code);
			memmove(pend, pend + used, plen - used);
			plen -= used;
		}
		free(data);
		if (n == 0 && (final || !follow))
			break;
		if (n == 0 && took < 500) { /* an empty answer at once (no VM yet:
					      * queued, staging, moving): wait; an
					      * empty long poll has waited already */
			struct timespec ts = { 1, 0 };
			nanosleep(&ts, NULL);
		}
	}
	free(pend);
	return rc;
}

static int job_logs(int argc, char **argv)
{
	const char *u = "gridvm job logs ID [--follow]";
	long long id;

	if (cli_wants_help(argc, argv))
		return printf("Usage: %s\nThe job's output (stdout and stderr), wherever it runs "
			      "or ran;\n--follow keeps printing until it ends, across moves.\n", u), 0;
	if (!(id = job_arg(argc, argv, u)))
		return 1;
	return follow_log(id, has_flag(argc, argv, "--follow") || has_flag(argc, argv, "-f"));
}

static int job_wait(int argc, char **argv)
{
	const char *u = "gridvm job wait ID";
	long long id;

	if (cli_wants_help(argc, argv))
		return printf("Usage: %s\nWait until the job ends; exit with its exit code (125 "
			      "if it failed\nor was cancelled without one).\n", u), 0;
	if (!(id = job_arg(argc, argv, u)))
		return 1;
	while (!cli_interrupted) {
		json_t *rep = NULL, *j, *code;
		const char *state;
		if (cli_grid_call(job_req("job-show", id), &rep) < 0)
			return 125;
		j = json_object_get(rep, "job");
		state = json_string_value(json_object_get(j, "state")) ?: "";
		code = json_object_get(j, "exit_code");
		if (!strcmp(state, "completed") && json_is_integer(code)) {
			int rc = (int)json_integer_value(code);
			json_decref(rep);
			return rc;
		}
		if (!strcmp(state, "failed") || !strcmp(state, "cancelled")) {
			cli_error("job %lld %s%s%s", id, state,
				  json_string_value(json_object_get(j, "error")) ? ": " : "",
				  json_string_value(json_object_get(j, "error")) ?: "");
			json_decref(rep);
			return 125;
		}
		json_decref(rep);
		struct timespec ts = { 1, 0 };
		nanosleep(&ts, NULL);
	}
	return 130;
}

static int job_output(int argc, char **argv)
{
	const char *u = "gridvm job output ID DIR";
	json_t *rep = NULL, *miss;
	char host[256], *dir, *tar;
	uint8_t key[32];
	long long id;
	int port, r;
	size_t i;
	gv_err e = { "" };

	if (cli_wants_help(argc, argv))
		return printf("Usage: %s\nFetch the files the job wrote to its --output paths "
			      "into DIR\n(after it ended; verified by the transfer's hashes).\n", u), 0;
	if (argc != 3)
		return cli_error("usage: %s", u), 2;
	if (!(id = job_arg(argc - 1, argv, u)))
		return 1;
	if (gv_mkdir_p(argv[2], 0755) < 0)
		return cli_error("cannot create %s: %s", argv[2], strerror(errno)), 1;
	if (cli_grid_call(job_req("job-output", id), &rep) < 0 ||
	    cli_grid_peer(host, sizeof(host), &port, key) < 0) {
		json_decref(rep);
		return 1;
	}
	dir = cli_abspath(argv[2]);
	tar = gv_strdupf("%s/.gridvm-output-%lld.tar", argv[2], id);
	gv_fetch_opts fo = { .host = host, .port = port,
			     .image = json_string_value(json_object_get(rep, "name")), .dest = tar,
			     .codec = GV_CODEC_ZSTD, .key = key };
	json_t *sum = NULL;
	r = gv_fetch(&fo, &sum, &e);
	json_decref(sum);
	if (r < 0) {
		cli_error("cannot fetch the output of job %lld: %s", id, e.msg);
	} else {
		char *argv_tar[] = { "tar", "-x", "--no-same-owner", "-f", tar, "-C", dir, NULL };
		char *out = NULL;
		r = gv_run(argv_tar, &out);
		if (r != 0) {
			char line[256];
			cli_error("cannot unpack the output: %s", gv_last_line(out ? out : "", line,
									       sizeof(line)));
			r = -1;
		}
		free(out);
	}
	json_array_foreach(json_object_get(rep, "missing"), i, miss)
		fprintf(stderr, "gridvm: the job did not write %s\n", json_string_value(miss));
	unlink(tar);
	free(tar);
	free(dir);
	json_decref(rep);
	return r < 0 ? 1 : 0;
}

static const struct cli_cmd job_cmds[] = {
	{ "show", job_show, "everything about a job" },
	{ "logs", job_logs, "its output; --follow until it ends" },
	{ "wait", job_wait, "wait for it to end; exit with its exit code" },
	{ "cancel", job_cancel, "stop it" },
	{ "events", job_events, "every decision about it, with its reason" },
	{ "output", job_output, "fetch its output files into a directory" },
	{ NULL, NULL, NULL } };

int cmd_job(int argc, char **argv)
{
	return cli_dispatch("gridvm job", job_cmds, argc, argv);
}
