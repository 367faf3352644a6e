/* SPDX-License-Identifier: MIT */
/*
 * reason.c - a decision's reason as one line a user reads in `gridvm jobs`
 * and `gridvm job events`. The numbers come from the reason itself (taken
 * when the decision was made); the state gives only names (hosts, the
 * job's requirements).
 */
#include "sched_internal.h"

#include <gridvm/base/util.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct out {
	char *buf;
	size_t len, at;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->at >= o->len)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->at, o->len - o->at, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->at += (size_t)n;
}

static const char *host_name(const gv_sched_state *st, uint32_t h)
{
	const gv_sched_host *H = gv_sched_host_get(st, h);
	return H ? H->name : "?";
}

static const char *size(double bytes, char *b, size_t len)
{
	return gv_fmt_size(bytes > 0 ? (uint64_t)bytes : 0, b, len);
}

static const char *secs(double s, char *b, size_t len)
{
	if (isinf(s))
		snprintf(b, len, "never");
	else if (s < 10)
		snprintf(b, len, "%.1f s", s);
	else if (s < 120)
		snprintf(b, len, "%.0f s", s);
	else if (s < 7200)
		snprintf(b, len, "%.0f min", s / 60);
	else
		snprintf(b, len, "%.1f h", s / 3600);
	return b;
}

/* "host h2 has 2 of 8 cpus and 3.0 GiB of 16 GiB free, fetches 0 B" */
static void put_free(struct out *o, const gv_sched_state *st, const gv_sched_reason *r)
{
	char a[32], b[32], c[32];

	put(o, "host %s has %.0f of %.0f cpus and %s of %s free, fetches %s",
	    host_name(st, r->host), r->v[0], r->v[1], size(r->v[2], a, sizeof a),
	    size(r->v[3], b, sizeof b), size(r->v[4], c, sizeof c));
	if (r->v[4] > 0)
		put(o, " (%s)", secs(r->v[5], a, sizeof a));
	if (r->n[0])
		put(o, ", rank %g", r->v[6]);
}

static void put_place(struct out *o, const gv_sched_state *st, const gv_sched_reason *r)
{
	char a[32], b[32];

	switch (r->policy) {
	case GV_SCHED_LOAD:
		put(o, "load: host %s has load %.2f on %.0f cpus; ",
		    host_name(st, r->host), r->v[7], r->v[1]);
		break;
	case GV_SCHED_LOCALITY:
		put(o, "locality: host %s starts it soonest (fetches %s, %s); ",
		    host_name(st, r->host), size(r->v[4], a, sizeof a),
		    secs(r->v[5], b, sizeof b));
		break;
	default:
		put(o, "%s: ", gv_sched_policy_name((gv_sched_policy)r->policy));
		break;
	}
	put_free(o, st, r);
}

static const char *res_name(int k)
{
	return k == GV_RES_CPUS ? "cpus" : k == GV_RES_MEMORY ? "memory" : "disk";
}

/* "4 cpus", "8 GiB memory" (without the name: "8 GiB") */
static void put_amount(struct out *o, int k, double v, bool named)
{
	char a[32];
	if (k == GV_RES_CPUS)
		put(o, "%.0f cpus", v);
	else
		put(o, "%s%s%s", size(v, a, sizeof a), named ? " " : "",
		    named ? res_name(k) : "");
}

static void put_never(struct out *o, const gv_sched_state *st, const gv_sched_decision *d)
{
	const gv_sched_reason *r = &d->reason;
	const gv_sched_job *job = gv_sched_job_get(st, d->job);
	const char *x =
	    job && job->id == d->job_id ? gv_expr_source(job->requires) : NULL;

	put(o, "no host can ever satisfy the requirements (");
	if (r->why == GV_WHY_NEVER_NO_HOSTS) {
		put(o, "the grid has no hosts)");
		return;
	}
	if (r->why == GV_WHY_NEVER_EXPR) {
		put(o, "none of the %u hosts matches `%s`)", r->n[1], x ? x : "?");
		return;
	}
	if (r->resource == GV_RES_ALL) {
		put(o, "needs ");
		put_amount(o, GV_RES_CPUS, r->v[0], true);
		put(o, " and ");
		put_amount(o, GV_RES_MEMORY, r->v[1], true);
		if (r->v[2] > 0) {
			put(o, " and ");
			put_amount(o, GV_RES_DISK, r->v[2], true);
		}
		put(o, " on one host; no host%s%s%s has all of them)",
		    x ? " matching `" : "", x ? x : "", x ? "`" : "");
		return;
	}
	put(o, "needs ");
	put_amount(o, r->resource, r->v[0], true);
	if (x)
		put(o, ", the largest of the %u hosts matching `%s` has ", r->n[0], x);
	else
		put(o, ", the largest host has ");
	put_amount(o, r->resource, r->v[1], false);
	put(o, ")");
}

static void put_wait_resources(struct out *o, const gv_sched_reason *r)
{
	put(o, "waiting for resources: needs ");
	put_amount(o, GV_RES_CPUS, r->v[0], true);
	put(o, " and ");
	put_amount(o, GV_RES_MEMORY, r->v[1], true);
	if (r->v[2] > 0) {
		put(o, " and ");
		put_amount(o, GV_RES_DISK, r->v[2], true);
	}
	put(o, "; none of the %u hosts that could run it has that free now", r->n[0]);
	if (r->v[3] >= 0) {
		const char *sep = " (";
		for (int k = 0; k < 3; k++) {
			if (r->v[3 + k] > 0) {
				put(o, "%s%.0f short of %s", sep, r->v[3 + k],
				    res_name(k));
				sep = ", ";
			}
		}
		if (*sep == ',')
			put(o, ")");
	}
}

static void put_move(struct out *o, const gv_sched_state *st, const gv_sched_decision *d)
{
	const gv_sched_reason *r = &d->reason;
	char a[32], b[32], c[32], e[32];

	if (r->why == GV_WHY_MOVE_DRAIN)
		put(o, "host %s is draining: move to %s", host_name(st, d->from),
		    host_name(st, r->host));
	else
		put(o, "move from %s to %s: gain %s > cost %s", host_name(st, d->from),
		    host_name(st, r->host), secs(r->v[0], a, sizeof a),
		    secs(r->v[1], b, sizeof b));
	put(o, " (copy %s while it runs, downtime %s, %s)", secs(r->v[2], c, sizeof c),
	    secs(r->v[3], e, sizeof e), size(r->v[4], a, sizeof a));
}

static void put_stay(struct out *o, const gv_sched_state *st, const gv_sched_decision *d)
{
	const gv_sched_reason *r = &d->reason;
	const char *from = host_name(st, d->from);
	char a[32], b[32], c[32];

	switch (r->why) {
	case GV_WHY_STAY_NO_GAIN:
		if (r->host == GV_SCHED_NONE)
			put(o, "stays on %s: no host would run it faster", from);
		else
			put(o,
			    "stays on %s: moving to %s would gain %s but cost %s (margin "
			    "%s)",
			    from, host_name(st, r->host), secs(r->v[0], a, sizeof a),
			    secs(r->v[1], b, sizeof b), secs(r->v[7], c, sizeof c));
		break;
	case GV_WHY_STAY_NO_DEST:
		if (r->n[1])
			put(o, "host %s is draining, but no other host can take it now",
			    from);
		else
			put(o, "stays on %s: no other host can take it now", from);
		break;
	case GV_WHY_STAY_INTERVAL:
		put(o, "stays on %s: moved %s ago (one move per %s at most)", from,
		    secs(r->v[0], a, sizeof a), secs(r->v[1], b, sizeof b));
		break;
	case GV_WHY_STAY_BUDGET:
		if (r->n[1])
			put(o,
			    "host %s is draining; this cycle's %u drain moves are used, "
			    "it moves next",
			    from, r->n[0]);
		else
			put(o,
			    "stays on %s this cycle: moving to %s would gain %s for %s, "
			    "but the "
			    "cycle's %u moves are used",
			    from, host_name(st, r->host), secs(r->v[0], a, sizeof a),
			    secs(r->v[1], b, sizeof b), r->n[0]);
		break;
	default: /* GV_WHY_STAY_HOST_DOWN */
		put(o, "its host %s is down: recovery from a checkpoint, not a move",
		    from);
		break;
	}
}

static void put_stale(struct out *o, const gv_sched_state *st, const gv_sched_reason *r)
{
	const char *h = host_name(st, r->host);

	switch (r->n[0]) {
	case 1:
		put(o, "the job is gone");
		break;
	case 2:
		put(o, "the job's state changed");
		break;
	case 3:
		put(o, "host %s is no longer up", h);
		break;
	case 4:
		put(o, "the job no longer fits on host %s", h);
		break;
	case 5:
		put(o, "host %s no longer matches the job's requirements", h);
		break;
	default:
		put(o, "the decision no longer holds");
		break;
	}
}

const char *gv_sched_reason_text(const gv_sched_state *st, const gv_sched_decision *d,
				 char *buf, size_t len)
{
	const gv_sched_reason *r = &d->reason;
	struct out o = {buf, len, 0};
	char a[32], b[32];

	if (!len)
		return buf;
	buf[0] = 0;
	switch (r->why) {
	case GV_WHY_PLACE:
		put_place(&o, st, r);
		break;
	case GV_WHY_BACKFILL:
		put(&o, "backfill ahead of job %llu without delaying it: ",
		    (unsigned long long)r->other);
		put_free(&o, st, r);
		break;
	case GV_WHY_BATCH:
	case GV_WHY_WAIT_BATCH:
		if (r->why == GV_WHY_BATCH)
			put(&o, "%s: host %s completes it soonest, in %s",
			    gv_sched_heuristic_name((gv_sched_heuristic)r->policy),
			    host_name(st, r->host), secs(r->v[0], a, sizeof a));
		else
			put(&o,
			    "planned by the batch (%s): starts on %s in %s, done in %s",
			    gv_sched_heuristic_name((gv_sched_heuristic)r->policy),
			    host_name(st, r->host), secs(r->v[3], a, sizeof a),
			    secs(r->v[0], b, sizeof b));
		put(&o, " (staging %s, ", secs(r->v[1], a, sizeof a));
		put(&o, "run %s)", secs(r->v[2], a, sizeof a));
		break;
	case GV_WHY_MOVE_GAIN:
	case GV_WHY_MOVE_DRAIN:
		put_move(&o, st, d);
		break;
	case GV_WHY_NEVER_NO_HOSTS:
	case GV_WHY_NEVER_EXPR:
	case GV_WHY_NEVER_SIZE:
		put_never(&o, st, d);
		break;
	case GV_WHY_WAIT_HOSTS_DOWN:
		put(&o, "waiting: the %u host%s that could run it %s draining or down",
		    r->n[0], r->n[0] == 1 ? "" : "s", r->n[0] == 1 ? "is" : "are");
		break;
	case GV_WHY_WAIT_RESOURCES:
		put_wait_resources(&o, r);
		break;
	case GV_WHY_WAIT_ORDER:
		put(&o,
		    "waiting behind job %llu (strict order: no job passes an earlier "
		    "one)",
		    (unsigned long long)r->other);
		break;
	case GV_WHY_WAIT_RESERVATION:
		put(&o,
		    "held back by backfill reservation for job %llu (it fits now only "
		    "where it "
		    "would delay that job)",
		    (unsigned long long)r->other);
		break;
	case GV_WHY_RESERVED:
		put(&o,
		    "waiting for resources; backfill reserves host %s for it, to start "
		    "in %s "
		    "(when running jobs end)",
		    host_name(st, r->host), secs(r->v[0], a, sizeof a));
		break;
	case GV_WHY_WAIT_NEXT_BATCH:
		put(&o, "waiting for the next batch (this one took the first %u jobs)",
		    r->n[0]);
		break;
	case GV_WHY_WAIT_LOCALITY:
		put(&o,
		    "waiting for a host that holds its image (locality wait: %s left of ",
		    secs(r->v[0], a, sizeof a));
		put(&o, "%s): host %s lacks %s of it but has no room; ", secs(r->v[1], a, sizeof a),
		    host_name(st, r->host), size(r->v[2], b, sizeof b));
		put(&o, "the %u host%s with room lack%s %s or more", r->n[0],
		    r->n[0] == 1 ? "" : "s", r->n[0] == 1 ? "s" : "", size(r->v[3], a, sizeof a));
		break;
	case GV_WHY_STAY_NO_GAIN:
	case GV_WHY_STAY_NO_DEST:
	case GV_WHY_STAY_INTERVAL:
	case GV_WHY_STAY_BUDGET:
	case GV_WHY_STAY_HOST_DOWN:
		put_stay(&o, st, d);
		break;
	case GV_WHY_STALE:
		put_stale(&o, st, r);
		break;
	}
	return buf;
}

const char *gv_sched_why_name(gv_sched_why why)
{
	static const char *const names[] = {
	    [GV_WHY_PLACE] = "place",
	    [GV_WHY_BACKFILL] = "backfill",
	    [GV_WHY_BATCH] = "batch",
	    [GV_WHY_MOVE_GAIN] = "move",
	    [GV_WHY_MOVE_DRAIN] = "drain",
	    [GV_WHY_NEVER_NO_HOSTS] = "never-no-hosts",
	    [GV_WHY_NEVER_EXPR] = "never-requirements",
	    [GV_WHY_NEVER_SIZE] = "never-size",
	    [GV_WHY_WAIT_HOSTS_DOWN] = "hosts-down",
	    [GV_WHY_WAIT_RESOURCES] = "resources",
	    [GV_WHY_WAIT_ORDER] = "order",
	    [GV_WHY_WAIT_RESERVATION] = "reservation",
	    [GV_WHY_RESERVED] = "reserved",
	    [GV_WHY_WAIT_BATCH] = "batch-planned",
	    [GV_WHY_WAIT_NEXT_BATCH] = "next-batch",
	    [GV_WHY_WAIT_LOCALITY] = "locality",
	    [GV_WHY_STAY_NO_GAIN] = "no-gain",
	    [GV_WHY_STAY_NO_DEST] = "no-destination",
	    [GV_WHY_STAY_INTERVAL] = "interval",
	    [GV_WHY_STAY_BUDGET] = "budget",
	    [GV_WHY_STAY_HOST_DOWN] = "host-down",
	    [GV_WHY_STALE] = "stale",
	};
	return (unsigned)why < sizeof names / sizeof names[0] && names[why] ? names[why]
									    : "?";
}

bool gv_sched_why_is_never(gv_sched_why why)
{
	return why == GV_WHY_NEVER_NO_HOSTS || why == GV_WHY_NEVER_EXPR ||
	       why == GV_WHY_NEVER_SIZE;
}
