/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-elect.c - several controllers on one etcd (ctl_elect.c,
 * ctlcall.c; docs/grid.md "Several controllers"), in one process, on a
 * real etcd the test starts (etcd.h): one leads, another stands by and
 * redirects; when the leader's lease goes (revoked from outside, as etcd
 * does when it expires) the standby takes over and the old leader knows
 * it is deposed; a leader stopped cleanly hands over at once. Waits are
 * polls with bounded deadlines, never fixed sleeps.
 */
#include <gridvm/api/ctlcall.h>
#include <gridvm/base/util.h>
#include <gridvm/grid/ctl.h>
#include <gridvm/grid/kv.h>

#include "etcd.h"

#include <errno.h>
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

/* A controller on the test etcd, campaigning with a lease of 2 s. */
static gv_ctl *ctl_new(const char *name)
{
	char *data = gv_strdupf("%s/%s", dir, name), *keyfile = gv_strdupf("%s/grid.key", dir);
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

/* Poll @what of @c until it is @want (15 s at most). */
static bool until(bool (*what)(gv_ctl *), gv_ctl *c, bool want)
{
	uint64_t t0 = gv_now_ms();

	while (what(c) != want && gv_now_ms() - t0 < 15000)
		usleep(20 * 1000);
	return what(c) == want;
}

/* The leader key's value and lease ("" / 0 when none). */
static int64_t leader_key(char *addr, size_t len)
{
	gv_kv *kv = NULL;
	gv_kv_entry *en = NULL;
	gv_err e;
	int64_t lease = 0;

	addr[0] = '\0';
	assert_int_equal(gv_kv_open(etcd_url(), &kv, &e), 0);
	if (gv_kv_get(kv, "/grid/leader", &en, &e) == 0) {
		json_t *v = json_loads(en->value, 0, NULL);
		snprintf(addr, len, "%s", json_string_value(json_object_get(v, "addr")) ?: "?");
		lease = en->lease;
		json_decref(v);
		gv_kv_entries_free(en, 1);
	}
	gv_kv_close(kv);
	return lease;
}

/* A request through gv_ctl_call given only @addr: 0 and the answering
 * controller in @leader, or the error. */
static int call(const char *addr, char *leader, size_t len)
{
	json_t *req = json_pack("{s:s}", "op", "jobs"), *rep = NULL;
	gv_err e = { "" };
	int r;

	leader[0] = '\0';
	r = gv_ctl_call(addr, leader, len, key, req, 10000, &rep, &e);
	if (r == 0 && !json_is_true(json_object_get(rep, "ok")))
		r = -EIO;
	json_decref(req);
	json_decref(rep);
	return r;
}

static void test_elect(void **state)
{
	char addr[300], answered[300];
	gv_ctl *a, *b;
	json_t *req, *rep = NULL;
	gv_err e = { "" };
	char host[256];
	int port;
	int64_t lease;

	(void)state;
	/* a leads; b stands by */
	a = ctl_new("a");
	assert_true(until(gv_ctl_leading, a, true));
	b = ctl_new("b");
	lease = leader_key(addr, sizeof(addr));
	assert_string_equal(addr, gv_ctl_addr(a));
	assert_true(lease != 0);
	assert_false(gv_ctl_leading(b));
	assert_false(gv_ctl_deposed(a));

	/* b answers a bare request with a redirect to a (once it read the key) */
	assert_int_equal(gv_xfer_peer_parse(gv_ctl_addr(b), host, sizeof(host), &port), 0);
	req = json_pack("{s:s}", "op", "jobs");
	for (uint64_t t0 = gv_now_ms(); gv_now_ms() - t0 < 15000; usleep(20 * 1000)) {
		json_decref(rep);
		rep = NULL;
		if (gv_xfer_control(host, port, key, req, 10000, &rep, &e) < 0)
			fail_msg("%s: %s", gv_ctl_addr(b), e.msg);
		if (json_string_value(json_object_get(rep, "leader")))
			break;
	}
	json_decref(req);
	assert_true(gv_ctl_reply_standby(rep));
	assert_string_equal(json_string_value(json_object_get(rep, "leader")), gv_ctl_addr(a));
	json_decref(rep);
	/* gv_ctl_call given only b reaches a */
	assert_int_equal(call(gv_ctl_addr(b), answered, sizeof(answered)), 0);
	assert_string_equal(answered, gv_ctl_addr(a));

	/* a's lease goes (as when etcd expires it): b leads, a is deposed */
	{
		gv_kv *kv = NULL;

		assert_int_equal(gv_kv_open(etcd_url(), &kv, &e), 0);
		assert_int_equal(gv_kv_lease_revoke(kv, lease, &e), 0);
		gv_kv_close(kv);
	}
	assert_true(until(gv_ctl_leading, b, true));
	assert_true(until(gv_ctl_deposed, a, true));
	assert_false(gv_ctl_leading(a));
	leader_key(addr, sizeof(addr));
	assert_string_equal(addr, gv_ctl_addr(b));
	/* a deposed controller answers as a standby, never as the leader;
	 * one given both finds b */
	assert_int_equal(gv_xfer_peer_parse(gv_ctl_addr(a), host, sizeof(host), &port), 0);
	req = json_pack("{s:s}", "op", "jobs");
	assert_int_equal(gv_xfer_control(host, port, key, req, 10000, &rep, &e), 0);
	json_decref(req);
	assert_true(gv_ctl_reply_standby(rep));
	json_decref(rep);
	snprintf(addr, sizeof(addr), "%s,%s", gv_ctl_addr(a), gv_ctl_addr(b));
	assert_int_equal(call(addr, answered, sizeof(answered)), 0);
	assert_string_equal(answered, gv_ctl_addr(b));
	gv_ctl_stop(a);

	/* b stops cleanly: it revokes its lease, the key is gone at once */
	gv_ctl_stop(b);
	assert_int_equal(leader_key(addr, sizeof(addr)), 0);
	assert_string_equal(addr, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elect),
	};
	int have = etcd_setup(), failed = 0;
	char *kf;
	FILE *f;

	if (have != 0)
		return have < 0 ? 1 : 0;
	strcpy(dir, "/tmp/gv-elect-XXXXXX");
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
	failed = cmocka_run_group_tests_name("ctl-elect", tests, NULL, NULL);
	etcd_teardown();
	gv_rm_rf(dir);
	return failed ? 1 : 0;
}
