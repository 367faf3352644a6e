/* SPDX-License-Identifier: MIT */
/*
 * ctl_peers.c - the controllers of one grid know each other (docs/grid.md,
 * "Several controllers"): each one, leading or standing by, registers its
 * address as CTL_KEY_CONTROLLERS ADDR under a lease of its own and keeps
 * the lease alive; one that dies drops out when its lease expires. The
 * leader asks the others, all at once, to copy the job files it relies on
 * (ctl_files.c); any controller asks them for a file it lacks.
 */
#include "ctl_internal.h"

#include <gridvm/base/util.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Register (again) under a new lease: 0, or a negative errno. */
static int enroll(gv_ctl *c, const char *key, const char *val, int64_t *lease, gv_err *e)
{
	int r = gv_kv_lease_grant(c->kv, (int)c->o.leader_ttl_s, lease, e);

	if (r == 0 && (r = gv_kv_put(c->kv, key, val, *lease, NULL, e)) < 0) {
		(void)gv_kv_lease_revoke(c->kv, *lease, NULL);
		*lease = 0;
	}
	if (r < 0)
		*lease = 0;
	return r;
}

void *ctl_peers(void *arg)
{
	gv_ctl *c = arg;
	char *key = gv_strdupf(CTL_KEY_CONTROLLERS "%s", c->listen_addr);
	json_t *me = json_pack("{s:s, s:I}", "addr", c->listen_addr, "pid", (json_int_t)getpid());
	char *val = json_dumps(me, JSON_COMPACT);
	uint64_t period = c->o.leader_ttl_s * 1000ull / 3;
	int64_t lease = 0;
	bool said = false;
	gv_err e;

	json_decref(me);
	do {
		int r = lease ? gv_kv_lease_keepalive(c->kv, lease, &e) : -ENOENT;
		if (r == -ENOENT) /* never registered, or it expired (cut off a while) */
			r = enroll(c, key, val, &lease, &e);
		if (r < 0 && !said)
			fprintf(stderr, "gridvmctld: cannot register among the controllers: %s\n",
				e.msg);
		said = r < 0;
	} while (ctl_sleep(c, period));
	if (lease) /* stopping: the others stop asking at once */
		(void)gv_kv_lease_revoke(c->kv, lease, NULL);
	free(key);
	free(val);
	return NULL;
}

char **ctl_peers_list(gv_ctl *c)
{
	gv_kv_entry *v = NULL;
	size_t n = 0, k = 0;
	int64_t rev;
	char **out;

	if (!c->o.leader_ttl_s || gv_kv_range(c->kv, CTL_KEY_CONTROLLERS, &v, &n, &rev, NULL) < 0)
		n = 0;
	out = calloc(n + 1, sizeof(*out));
	if (!out)
		abort();
	for (size_t i = 0; i < n; i++) {
		json_t *rec = json_loads(v[i].value, 0, NULL);
		const char *addr = json_string_value(json_object_get(rec, "addr"));
		if (addr && *addr && strcmp(addr, c->listen_addr))
			out[k++] = strdup(addr);
		json_decref(rec);
	}
	gv_kv_entries_free(v, n);
	return out;
}

void ctl_peers_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

struct call {
	gv_ctl *c;
	const char *addr;
	json_t *req;
	int timeout_ms;
	int r;
	gv_err e;
	pthread_t th;
	bool started;
};

static void *call_thread(void *arg)
{
	struct call *k = arg;
	json_t *rep = NULL;
	char host[256];
	int port;

	k->r = gv_xfer_peer_parse(k->addr, host, sizeof(host), &port);
	if (k->r < 0)
		gv_err_set(&k->e, k->r, "bad address");
	else
		k->r = gv_xfer_control(host, port, k->c->key, k->req, k->timeout_ms, &rep, &k->e);
	if (k->r == 0 && !json_is_true(json_object_get(rep, "ok")))
		k->r = gv_err_set(&k->e, (int)json_integer_value(json_object_get(rep, "errno")) ?: -EIO,
				  "%s", json_string_value(json_object_get(rep, "error")) ?: "refused");
	json_decref(rep);
	return NULL;
}

int ctl_peers_call(gv_ctl *c, json_t *req, int timeout_ms, unsigned *asked, char *why,
		   size_t len)
{
	char **peers = ctl_peers_list(c);
	size_t n = 0;
	struct call *calls;
	int ok = 0;

	while (peers[n])
		n++;
	calls = calloc(n ? n : 1, sizeof(*calls));
	if (!calls)
		abort();
	if (len)
		why[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		/* a copy each: the threads encode it at once */
		calls[i] = (struct call){ .c = c, .addr = peers[i], .req = json_deep_copy(req),
					  .timeout_ms = timeout_ms };
		calls[i].started = pthread_create(&calls[i].th, NULL, call_thread, &calls[i]) == 0;
		if (!calls[i].started)
			call_thread(&calls[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (calls[i].started)
			pthread_join(calls[i].th, NULL);
		json_decref(calls[i].req);
		if (calls[i].r == 0)
			ok++;
		else if (len > strlen(why))
			snprintf(why + strlen(why), len - strlen(why), "%s%.100s: %.200s",
				 *why ? "; " : "", peers[i], calls[i].e.msg);
	}
	*asked = (unsigned)n;
	free(calls);
	ctl_peers_free(peers);
	return ok;
}
