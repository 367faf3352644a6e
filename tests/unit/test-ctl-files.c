/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-files.c - a job's input on every controller (ctl_peers.c,
 * ctl_files.c; docs/grid.md "Several controllers"), in one process on a
 * real etcd (etcd.h): the controllers register; a submission whose
 * upload is not what the client hashed is refused; one with an input is
 * answered only once the others hold a copy (their background
 * copying off: fault grid.ctl.files-sync), and refused (its
 * input dropped) when a registered one cannot take it; the leader stopped
 * and its data directory deleted, the new leader serves the input to an
 * agent ("job:ID:input"); a controller started on an empty data
 * directory copies it in the background; a copy asked over TLS by a
 * certificate that is not a controller's is refused. Waits are polls with
 * bounded deadlines, never fixed sleeps.
 */
#include <gridvm/api/ctlcall.h>
#include <gridvm/base/b64.h>
#include <gridvm/base/fault.h>
#include <gridvm/base/util.h>
#include <gridvm/grid/ctl.h>
#include <gridvm/grid/kv.h>

#include "../../lib/grid/ctl_internal.h"
#include "etcd.h"

#include <errno.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];
static uint8_t key[GV_XFER_KEY_LEN];

static char *data_of(const char *name)
{
	return gv_strdupf("%s/%s", dir, name);
}

/* A controller on the test etcd, campaigning with a lease of 2 s. */
static gv_ctl *ctl_new(const char *name)
{
	char *data = data_of(name), *keyfile = gv_strdupf("%s/grid.key", dir);
	char *listen = gv_strdupf("127.0.0.1:%d", free_port());
	gv_ctl_opts o;
	gv_ctl *c = NULL;
	gv_err e = { "" };

	gv_ctl_opts_default(&o);
	o.listen = listen;
	o.store = etcd_url();
	o.datadir = data;
	o.grid_key = keyfile;
	o.leader_ttl_s = 2;
	if (gv_ctl_start(&o, &c, &e) < 0)
		fail_msg("controller %s: %s", name, e.msg);
	free(data);
	free(keyfile);
	free(listen);
	return c;
}

/* Poll until @ok(@arg) (15 s at most). */
static bool until(bool (*ok)(void *), void *arg)
{
	uint64_t t0 = gv_now_ms();

	while (!ok(arg) && gv_now_ms() - t0 < 15000)
		usleep(20 * 1000);
	return ok(arg);
}

static bool leads(void *c)
{
	return gv_ctl_leading(c);
}

/* How many controllers are registered. */
static size_t registered(void)
{
	gv_kv *kv = NULL;
	gv_kv_entry *v = NULL;
	size_t n = 0;
	int64_t rev;
	gv_err e;

	assert_int_equal(gv_kv_open(etcd_url(), &kv, &e), 0);
	if (gv_kv_range(kv, "/grid/controllers/", &v, &n, &rev, &e) < 0)
		n = 0;
	gv_kv_entries_free(v, n);
	gv_kv_close(kv);
	return n;
}

static bool three_registered(void *arg)
{
	(void)arg;
	return registered() == 3;
}

/* A request to the grid's leader through @addrs: the reply (ok or not). */
static json_t *call(const char *addrs, json_t *req)
{
	char leader[300] = "";
	json_t *rep = NULL;
	gv_err e = { "" };

	if (gv_ctl_call(addrs, leader, sizeof(leader), key, req, 20000, &rep, &e) < 0)
		fail_msg("%s: %s", addrs, e.msg);
	json_decref(req);
	return rep;
}

/* Upload @len bytes of @buf as @token and submit a job with it, saying
 * its SHA-256 is that of @said (@buf if NULL): the reply. */
static json_t *submit(const char *addrs, const char *token, const uint8_t *buf, size_t len,
		      const uint8_t *said)
{
	char *b64 = gv_b64_encode(buf, len), hex[65];
	uint8_t sha[32];
	json_t *rep = call(addrs, json_pack("{s:s, s:s, s:i, s:s}", "op", "input-put", "upload",
					    token, "offset", 0, "data", b64));

	free(b64);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	assert_int_equal(EVP_Digest(said ? said : buf, len, sha, NULL, EVP_sha256(), NULL), 1);
	gv_hash_hex(sha, hex);
	return call(addrs, json_pack("{s:s, s:[s], s:s, s:I, s:s, s:[s]}", "op", "submit", "cmd",
				     "true", "upload", token, "input_bytes", (json_int_t)len,
				     "input_sha256", hex, "input_paths", "in"));
}

/* Whether the file at @path holds exactly @len bytes of @buf. */
static bool holds(const char *path, const uint8_t *buf, size_t len)
{
	char *got = NULL;
	size_t n = 0;
	bool same;

	if (gv_read_file(path, &got, &n) < 0)
		return false;
	same = n == len && !memcmp(got, buf, len);
	free(got);
	return same;
}

struct want {
	char *path;
	const uint8_t *buf;
	size_t len;
};

static bool holds_want(void *arg)
{
	struct want *w = arg;

	return holds(w->path, w->buf, w->len);
}

static void test_files(void **state)
{
	static uint8_t input[300 * 1000 + 17];
	const char *token = "0123456789abcdef0123456789abcdef";
	gv_ctl *a, *b, *c, *lead;
	json_t *rep;
	gv_err e = { "" };
	gv_kv *kv = NULL;
	int64_t fake = 0;
	char addrs[1000], host[256], *path;
	int port;

	(void)state;
	for (size_t i = 0; i < sizeof(input); i++)
		input[i] = (uint8_t)(i * 2654435761u >> 13);
	a = ctl_new("a");
	assert_true(until(leads, a));

	/* an upload that is not what the client sent (as when pieces of it
	 * went to a leader lost meanwhile): refused, nothing kept */
	{
		static uint8_t other[sizeof(input)];
		rep = submit(gv_ctl_addr(a), token, input, sizeof(input), other);
		assert_false(json_is_true(json_object_get(rep, "ok")));
		assert_non_null(strstr(json_string_value(json_object_get(rep, "error")),
				       "incomplete or damaged"));
		json_decref(rep);
		path = gv_strdupf("%s/a/inputs/%s.tar", dir, token);
		assert_int_equal(access(path, F_OK), -1);
		free(path);
	}

	/* a registered controller that cannot take a copy: refused, and the
	 * input is not kept (a later submission uploads it again) */
	assert_int_equal(gv_kv_open(etcd_url(), &kv, &e), 0);
	assert_int_equal(gv_kv_lease_grant(kv, 30, &fake, &e), 0);
	assert_int_equal(gv_kv_put(kv, "/grid/controllers/127.0.0.1:1",
				   "{\"addr\": \"127.0.0.1:1\"}", fake, NULL, &e), 0);
	rep = submit(gv_ctl_addr(a), token, input, sizeof(input), NULL);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	assert_non_null(strstr(json_string_value(json_object_get(rep, "error")),
			       "no other controller took a copy"));
	json_decref(rep);
	path = gv_strdupf("%s/a/inputs/%s.tar", dir, token);
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	assert_int_equal(gv_kv_lease_revoke(kv, fake, &e), 0);
	gv_kv_close(kv);

	/* with b and c registered, the submission is answered once both
	 * hold the input (no wait: the answer says they do; their own
	 * background copies are off, so the copies are the leader's doing) */
	setenv("GRIDVM_FAULT", "grid.ctl.files-sync=fail", 1);
	gv_fault_reset();
	b = ctl_new("b");
	c = ctl_new("c");
	assert_true(until(three_registered, NULL));
	snprintf(addrs, sizeof(addrs), "%s,%s,%s", gv_ctl_addr(a), gv_ctl_addr(b), gv_ctl_addr(c));
	rep = submit(addrs, token, input, sizeof(input), NULL);
	if (!json_is_true(json_object_get(rep, "ok")))
		fail_msg("submit: %s", json_string_value(json_object_get(rep, "error")));
	json_int_t id = json_integer_value(json_object_get(rep, "id"));
	json_decref(rep);
	for (const char *n = "abc"; *n; n++) {
		path = gv_strdupf("%s/%c/inputs/%s.tar", dir, *n, token);
		if (!holds(path, input, sizeof(input)))
			fail_msg("controller %c lacks the input once the submission was answered",
				 *n);
		free(path);
	}

	/* a stops and its data directory goes: the new leader serves the
	 * input to an agent, verified by the transfer, the same bytes */
	gv_ctl_stop(a);
	path = data_of("a");
	gv_rm_rf(path);
	free(path);
	uint64_t t0 = gv_now_ms();
	while (!gv_ctl_leading(b) && !gv_ctl_leading(c) && gv_now_ms() - t0 < 15000)
		usleep(20 * 1000);
	lead = gv_ctl_leading(b) ? b : c;
	assert_true(gv_ctl_leading(lead));
	assert_int_equal(gv_xfer_peer_parse(gv_ctl_addr(lead), host, sizeof(host), &port), 0);
	{
		char *name = gv_strdupf("job:%lld:input", (long long)id);
		char *dest = gv_strdupf("%s/fetched.tar", dir);
		gv_fetch_opts fo = { .host = host, .port = port, .image = name, .dest = dest,
				     .key = key };
		json_t *sum = NULL;
		if (gv_fetch(&fo, &sum, &e) < 0)
			fail_msg("job %lld's input from the new leader: %s", (long long)id, e.msg);
		assert_true(holds(dest, input, sizeof(input)));
		json_decref(sum);
		free(name);
		free(dest);
	}

	/* a controller on an empty data directory copies it in the
	 * background (the job is queued: its input is still needed) */
	unsetenv("GRIDVM_FAULT");
	gv_fault_reset();
	a = ctl_new("a");
	struct want w = { gv_strdupf("%s/a/inputs/%s.tar", dir, token), input, sizeof(input) };
	if (!until(holds_want, &w))
		fail_msg("a new controller did not copy the input of job %lld", (long long)id);
	free(w.path);

	/* over TLS, a copy asked with an agent's certificate is refused; a
	 * bad name is refused */
	json_t *req = json_pack("{s:s, s:s, s:s, s:{s:b, s:s, s:s}}", "kind", "input", "arg", token,
				"from", gv_ctl_addr(a), "_peer", "tls", 1, "name", "h1", "role",
				"agent");
	rep = ctl_files_op(lead, req); /* (the request stays the caller's) */
	json_decref(req);
	assert_int_equal(json_integer_value(json_object_get(rep, "errno")), EACCES);
	json_decref(rep);
	req = json_pack("{s:s, s:s, s:s}", "kind", "input", "arg", "../x", "from", gv_ctl_addr(a));
	rep = ctl_files_op(lead, req);
	json_decref(req);
	assert_int_equal(json_integer_value(json_object_get(rep, "errno")), EINVAL);
	json_decref(rep);

	gv_ctl_stop(a);
	gv_ctl_stop(b);
	gv_ctl_stop(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),
	};
	int have = etcd_setup(), failed = 0;
	char *kf;
	FILE *f;

	if (have != 0)
		return have < 0 ? 1 : 0;
	strcpy(dir, "/tmp/gv-ctlfiles-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	kf = gv_strdupf("%s/grid.key", dir);
	f = fopen(kf, "w");
	for (int i = 0; f && i < GV_XFER_KEY_LEN; i++) {
		key[i] = (uint8_t)(i * 7 + 1);
		fprintf(f, "%02x", key[i]);
	}
	if (!f || fputc('\n', f) == EOF || fclose(f) != 0)
		return 1;
	free(kf);
	failed = cmocka_run_group_tests_name("ctl-files", tests, NULL, NULL);
	etcd_teardown();
	gv_rm_rf(dir);
	return failed ? 1 : 0;
}
