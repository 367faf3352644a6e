/* SPDX-License-Identifier: MIT */
/*
 * ctlcall.c - requests to the grid's leading controller: try the leader
 * found last, follow a standby's redirect, fall back to the controllers
 * given, wait through an election (ctlcall.h; docs/grid.md).
 */
#include <gridvm/api/ctlcall.h>

#include <gridvm/base/util.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HOPS 3		    /* redirects followed in a row */
#define ELECTION_PAUSE_MS 300 /* between rounds while none leads */

bool gv_ctl_reply_standby(const json_t *rep)
{
	return json_is_true(json_object_get(rep, "standby")) &&
	       !json_is_true(json_object_get(rep, "ok"));
}

/* One controller, following redirects: 0 with *rep (a leader's answer,
 * or a standby's: one that names no other leader, or one whose leader
 * did not answer, as when it just died), or a transport error. */
static int ask(const char *addr, char *leader, size_t len, const uint8_t *key, json_t *req,
	       int timeout_ms, json_t **rep, gv_err *e)
{
	char at[300], host[256];
	int port, r = 0;

	*rep = NULL;
	snprintf(at, sizeof(at), "%s", addr);
	for (int hop = 0; hop <= HOPS; hop++) {
		json_t *got = NULL;
		const char *next;

		if ((r = gv_xfer_peer_parse(at, host, sizeof(host), &port)) < 0)
			r = gv_err_set(e, r, "invalid controller address '%s' (HOST:PORT)", at);
		else
			r = gv_xfer_control(host, port, key, req, timeout_ms, &got, e);
		if (r < 0)
			return *rep ? 0 : r; /* a redirect to nowhere: the standby's answer */
		json_decref(*rep);
		*rep = got;
		snprintf(leader, len, "%s", at);
		next = json_string_value(json_object_get(got, "leader"));
		if (!gv_ctl_reply_standby(got) || !next || !*next || !strcmp(next, at))
			return 0;
		snprintf(at, sizeof(at), "%s", next); /* redirected */
	}
	return 0;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int gv_ctl_call(const char *controllers, char *leader, size_t len,
		const uint8_t key[GV_XFER_KEY_LEN], json_t *req, int timeout_ms, json_t **rep,
		gv_err *e)
{
	uint64_t until = gv_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	int r = -EINVAL;

	*rep = NULL;
	if (!controllers || !*controllers)
		return gv_err_set(e, -EINVAL, "no controller address");
	for (;;) {
		const char *p = controllers;
		bool standby = false;

		/* the leader found last time, then each one given */
		if (leader && *leader) {
			r = ask(leader, leader, len, key, req, timeout_ms, rep, e);
			if (r == 0 && !gv_ctl_reply_standby(*rep))
				return 0;
			standby |= r == 0;
		}
		while (*p) {
			size_t n = strcspn(p, ",");
			char one[300];

			snprintf(one, sizeof(one), "%.*s", (int)n, p);
			p += n + (p[n] == ',');
			json_decref(*rep);
			*rep = NULL;
			r = ask(one, leader, len, key, req, timeout_ms, rep, e);
			if (r == 0 && !gv_ctl_reply_standby(*rep))
				return 0;
			standby |= r == 0;
		}
		/* a standby answered but none leads (an election): again, a
		 * while; when none answers at all, that is the answer */
		if (!standby || gv_now_ms() + ELECTION_PAUSE_MS >= until)
			break;
		json_decref(*rep);
		*rep = NULL;
		pause_ms(ELECTION_PAUSE_MS);
	}
	if (leader)
		leader[0] = '\0';
	return *rep ? 0 : r;
}
