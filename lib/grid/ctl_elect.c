/* SPDX-License-Identifier: MIT */
/*
 * ctl_elect.c - several controllers on one store: one leads, the others
 * stand by (docs/grid.md, "Several controllers").
 *
 * The leader holds CTL_KEY_LEADER ({"addr": ADDR:PORT}) under a lease of
 * leader_ttl_s seconds, created by compare-and-swap on its absence, and
 * keeps the lease alive every third of its TTL. Every change it writes
 * is fenced on that key's revision (gv_kv_fence): once the lease expired
 * and the key went (or another leader created it anew), its writes fail.
 * It also stops acting on its own clock before etcd can let the lease
 * expire: it acts only until the time it *sent* its last successful
 * keepalive plus the TTL (lead_until), which is no later than etcd's
 * expiry (etcd counts from when it received the keepalive). A leader
 * that loses its lease is deposed for good (gv_ctl_deposed): its memory
 * of the grid may be stale, so the program starts a new controller, which
 * stands by. A leader stopped cleanly revokes its lease, so a standby
 * takes over at once.
 *
 * A standby loads nothing; it watches the leader key and campaigns when
 * the key is deleted. It answers every request with a redirect to the
 * leader it read from the key (ctl_standby_reply, ctlcall.h).
 */
#include "ctl_internal.h"

#include <gridvm/base/util.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RETRY_MS 500 /* after a failed step of the election */

bool ctl_leading(gv_ctl *c)
{
	return c->leading && gv_now_ms() < c->lead_until;
}

bool gv_ctl_leading(gv_ctl *c)
{
	bool yes;

	pthread_mutex_lock(&c->mu);
	yes = ctl_leading(c);
	pthread_mutex_unlock(&c->mu);
	return yes;
}

bool gv_ctl_deposed(gv_ctl *c)
{
	bool yes;

	pthread_mutex_lock(&c->mu);
	yes = c->deposed || (c->leading && gv_now_ms() >= c->lead_until);
	pthread_mutex_unlock(&c->mu);
	return yes;
}

json_t *ctl_standby_reply(gv_ctl *c)
{
	json_t *rep = NULL;

	pthread_mutex_lock(&c->mu);
	if (!ctl_leading(c) && c->store_failed) {
		rep = gv_err_jsonf(-EAGAIN, "this controller's store failed: it starts again from "
				   "the store; ask again");
		json_object_set_new(rep, "standby", json_true());
		json_object_set_new(rep, "leader", json_null());
	} else if (!ctl_leading(c)) {
		rep = c->leader[0]
			      ? gv_err_jsonf(-EAGAIN, "this controller stands by; %s leads",
					     c->leader)
			      : gv_err_jsonf(-EAGAIN, "no controller leads the grid yet (an "
						      "election is under way)");
		json_object_set_new(rep, "standby", json_true());
		json_object_set_new(rep, "leader", c->leader[0] ? json_string(c->leader)
								: json_null());
	}
	pthread_mutex_unlock(&c->mu);
	return rep;
}

json_t *ctl_fenced_reply(gv_ctl *c, json_t *rep)
{
	if (json_integer_value(json_object_get(rep, "errno")) != ESTALE ||
	    json_is_true(json_object_get(rep, "ok")))
		return rep;
	pthread_mutex_lock(&c->mu);
	if (c->o.leader_ttl_s && c->leading) {
		fprintf(stderr, "gridvmctld: lost the leadership: a write was fenced (%s); it "
				"acts no more\n",
			json_string_value(json_object_get(rep, "error")) ?: "?");
		c->leading = false;
		c->deposed = true;
		c->leader[0] = '\0';
	}
	pthread_mutex_unlock(&c->mu);
	if (!c->o.leader_ttl_s)
		return rep;
	json_decref(rep);
	return ctl_standby_reply(c);
}

bool ctl_sleep(gv_ctl *c, uint64_t ms)
{
	struct timespec until;
	bool go;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	if (!c->stopping)
		pthread_cond_timedwait(&c->elect_wake, &c->mu, &until);
	go = !c->stopping;
	pthread_mutex_unlock(&c->mu);
	return go;
}

bool ctl_stopping(gv_ctl *c)
{
	bool yes;

	pthread_mutex_lock(&c->mu);
	yes = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return yes;
}

/* Try once to become the leader: 1 won (the grid loaded, fenced, acting),
 * 0 someone else leads, < 0 an error. */
static int campaign(gv_ctl *c, int64_t *lease)
{
	unsigned ttl = c->o.leader_ttl_s;
	uint64_t t0 = gv_now_ms();
	json_t *me = json_pack("{s:s, s:I}", "addr", c->listen_addr, "pid", (json_int_t)getpid());
	char *val = json_dumps(me, JSON_COMPACT);
	gv_kv_cmp cmp = { CTL_KEY_LEADER, 0 };
	gv_kv_op op = { GV_KV_PUT, CTL_KEY_LEADER, val, 0 };
	int64_t rev = 0;
	bool ok = false;
	gv_err e;
	int r;

	json_decref(me);
	r = gv_kv_lease_grant(c->kv, (int)ttl, lease, &e);
	if (r == 0) {
		op.lease = *lease;
		r = gv_kv_txn(c->kv, &cmp, 1, &op, 1, &ok, &rev, &e);
	}
	free(val);
	if (r == 0 && !ok) {
		(void)gv_kv_lease_revoke(c->kv, *lease, NULL);
		return 0;
	}
	if (r == 0)
		r = gv_kv_fence(c->kv, CTL_KEY_LEADER, rev, &e);
	if (r == 0) {
		pthread_mutex_lock(&c->mu);
		r = ctl_load(c, &e);
		if (r == 0 && c->deposed) /* a write while loading failed */
			r = gv_err_set(&e, -EIO, "the store failed while the grid was loaded");
		if (r == 0) {
			c->leading = true;
			c->lead_until = t0 + ttl * 1000ull;
			snprintf(c->leader, sizeof(c->leader), "%s", c->listen_addr);
		}
		pthread_mutex_unlock(&c->mu);
	}
	if (r < 0) {
		fprintf(stderr, "gridvmctld: election: %s\n", e.msg);
		if (*lease)
			(void)gv_kv_lease_revoke(c->kv, *lease, NULL);
		return r;
	}
	fprintf(stderr, "gridvmctld: leads the grid (leader key at revision %" PRId64
			", lease %u s)\n", rev, ttl);
	ctl_kick(c);
	return 1;
}

/* Lead: keep the lease alive until it is lost or the controller stops. */
static void hold(gv_ctl *c, int64_t lease)
{
	unsigned ttl = c->o.leader_ttl_s;
	const char *why = NULL;
	gv_err e;

	while (ctl_sleep(c, ttl * 1000ull / 3)) {
		uint64_t sent = gv_now_ms();
		int r = gv_kv_lease_keepalive(c->kv, lease, &e);

		pthread_mutex_lock(&c->mu);
		if (r == 0 && sent + ttl * 1000ull > c->lead_until)
			c->lead_until = sent + ttl * 1000ull;
		if (r == -ENOENT)
			why = "its lease expired";
		else if (gv_now_ms() >= c->lead_until)
			why = "it could not renew its lease in time";
		if (why) {
			c->leading = false;
			c->deposed = true;
			c->leader[0] = '\0';
		}
		pthread_mutex_unlock(&c->mu);
		if (why) {
			fprintf(stderr, "gridvmctld: lost the leadership: %s%s%s; it acts no more\n",
				why, r < 0 ? ": " : "", r < 0 ? e.msg : "");
			return;
		}
	}
	/* stopping: hand over at once */
	pthread_mutex_lock(&c->mu);
	c->leading = false;
	pthread_mutex_unlock(&c->mu);
	(void)gv_kv_lease_revoke(c->kv, lease, NULL);
}

/* Stand by: learn who leads, wait until the leader key goes. */
static void follow(gv_ctl *c)
{
	gv_kv_entry *en = NULL;
	int64_t from;
	gv_err e;

	if (gv_kv_get(c->kv, CTL_KEY_LEADER, &en, &e) < 0)
		return; /* gone already (or the store failed): campaign */
	{
		json_t *v = json_loads(en->value, 0, NULL);
		const char *addr = json_string_value(json_object_get(v, "addr"));
		bool news;

		pthread_mutex_lock(&c->mu);
		news = strcmp(c->leader, addr ? addr : "") != 0;
		snprintf(c->leader, sizeof(c->leader), "%s", addr ? addr : "");
		pthread_mutex_unlock(&c->mu);
		if (news)
			fprintf(stderr, "gridvmctld: stands by; %s leads\n", addr ? addr : "?");
		json_decref(v);
	}
	from = en->mod_rev + 1;
	gv_kv_entries_free(en, 1);
	while (!ctl_stopping(c)) {
		gv_kv_event *ev = NULL;
		size_t n = 0;
		bool gone = false;
		int r = gv_kv_watch(c->kv, CTL_KEY_LEADER, from, 1000, &ev, &n, &from, &e);

		for (size_t i = 0; r == 0 && i < n; i++)
			if (!strcmp(ev[i].kv.key, CTL_KEY_LEADER))
				gone = ev[i].kind == GV_KV_EV_DELETE;
		gv_kv_events_free(ev, n);
		if (r < 0 || gone) {
			pthread_mutex_lock(&c->mu);
			c->leader[0] = '\0';
			pthread_mutex_unlock(&c->mu);
			if (r < 0)
				(void)ctl_sleep(c, RETRY_MS);
			return;
		}
	}
}

void *ctl_elect(void *arg)
{
	gv_ctl *c = arg;

	while (!ctl_stopping(c)) {
		int64_t lease = 0;
		int r = campaign(c, &lease);

		if (r > 0) {
			hold(c, lease);
			break; /* deposed or stopping: never leads again */
		}
		if (r < 0) {
			if (!ctl_sleep(c, RETRY_MS))
				break;
			continue;
		}
		follow(c);
	}
	return NULL;
}
