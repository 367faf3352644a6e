/* SPDX-License-Identifier: MIT */
/*
 * plan.c - plans (what a cycle decided), checking and applying a decision
 * against the state as it is now (optimistic: a plan may have raced), the
 * parameters' defaults and their names.
 */
#include "sched_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- plans ---- */

void gv_sched_plan_init(gv_sched_plan *plan)
{
	memset(plan, 0, sizeof *plan);
}

void gv_sched_plan_clear(gv_sched_plan *plan)
{
	plan->n_acts = plan->n_held = 0;
}

void gv_sched_plan_free(gv_sched_plan *plan)
{
	if (!plan)
		return;
	free(plan->acts);
	free(plan->held);
	gv_sched_plan_init(plan);
}

static int plan_grow(gv_sched_decision **arr, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	gv_sched_decision *n = realloc(*arr, ncap * sizeof *n);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = ncap;
	return 0;
}

int plan_push(gv_sched_plan *plan, bool act, const gv_sched_decision *d)
{
	gv_sched_decision **arr = act ? &plan->acts : &plan->held;
	size_t *n = act ? &plan->n_acts : &plan->n_held;
	size_t *cap = act ? &plan->cap_acts : &plan->cap_held;
	if (plan_grow(arr, cap, *n + 1) < 0)
		return -ENOMEM;
	(*arr)[(*n)++] = *d;
	return 0;
}

/* ---- checking and applying ---- */

enum { STALE_GONE = 1, STALE_STATE, STALE_HOST, STALE_FIT, STALE_MATCH };

static int stale(gv_sched_reason *why, uint32_t host, uint32_t sub)
{
	if (why) {
		memset(why, 0, sizeof *why);
		why->why = GV_WHY_STALE;
		why->host = host;
		why->n[0] = sub;
	}
	return -ESTALE;
}

int gv_sched_check(const gv_sched_state *st, const gv_sched_decision *d,
		   gv_sched_reason *why)
{
	if (d->act != GV_ACT_PLACE && d->act != GV_ACT_MOVE)
		return 0;
	const gv_sched_job *job = gv_sched_job_get(st, d->job);
	if (!job || job->id != d->job_id)
		return stale(why, d->host, STALE_GONE);
	if (d->act == GV_ACT_PLACE && job->state != GV_JOB_QUEUED)
		return stale(why, d->host, STALE_STATE);
	if (d->act == GV_ACT_MOVE &&
	    (job->state != GV_JOB_RUNNING || job->host != d->from))
		return stale(why, d->host, STALE_STATE);
	const gv_sched_host *h = gv_sched_host_get(st, d->host);
	if (!h || h->state != GV_HOST_UP || (d->act == GV_ACT_MOVE && d->host == d->from))
		return stale(why, d->host, STALE_HOST);
	if (h->cpus_free < job->cpus || h->memory_free < job->memory ||
	    (job->disk && h->disk_free < job->disk))
		return stale(why, d->host, STALE_FIT);
	if (!gv_expr_match(job->requires, h->attrs))
		return stale(why, d->host, STALE_MATCH);
	return 0;
}

int gv_sched_apply(gv_sched_state *st, const gv_sched_decision *d, double now,
		   gv_sched_reason *why)
{
	int r = gv_sched_check(st, d, why);

	if (r < 0 || (d->act != GV_ACT_PLACE && d->act != GV_ACT_MOVE))
		return r;
	if (d->act == GV_ACT_PLACE)
		return gv_sched_job_bind(st, d->job, d->host, now);
	r = gv_sched_job_bind(st, d->job, d->host, st->jobs[d->job].pub.start);
	if (r == 0)
		gv_sched_job_set_moved(st, d->job, now);
	return r;
}

int gv_sched_plan_apply(gv_sched_state *st, const gv_sched_plan *plan, double now)
{
	int n = 0;
	for (size_t i = 0; i < plan->n_acts; i++) {
		int r = gv_sched_apply(st, &plan->acts[i], now, NULL);
		if (r == -ENOMEM)
			return r;
		n += r == 0;
	}
	return n;
}

/* ---- parameters ---- */

void gv_sched_params_default(gv_sched_params *p)
{
	memset(p, 0, sizeof *p);
	p->policy = GV_SCHED_PACK;
	p->mode = GV_SCHED_ONLINE;
	p->queue = GV_SCHED_QUEUE_BACKFILL;
	p->reservations = 1;
	p->heuristic = GV_SCHED_MINMIN;
	p->batch_max = 64;
	p->queue_depth = 0;
	p->rank_weight = 0;
	p->aging_per_hour = 1.0;
	p->default_walltime = 3600;
	p->overrun_grace = 60;
	p->default_link_rate = 12.5e6;
	p->max_moves = 2;
	p->max_drain_moves = 0;
	p->min_move_interval = 600;
	p->move_margin = 30;
	/* docs/bench-migration.md, gridvm-live at 100 Mbit/s: 384 MiB of
	 * memory and 24 MiB of disk in 8.8 s, 99.7 MB sent, paused 221 ms */
	p->cost.setup_s = 1.0;
	p->cost.rate_factor = 0.9;
	p->cost.mem_ratio = 0.2;
	p->cost.switchover_s = 0.25;
	p->cost.max_downtime_s = 0.3;
	p->cost.max_rounds = 30;
	p->cost.overhead = 0.2;
}

static const char *const policy_names[] = {"pack", "spread", "load", "locality"};
static const char *const mode_names[] = {"online", "batch"};
static const char *const queue_names[] = {"backfill", "strict", "greedy"};
static const char *const heuristic_names[] = {"min-min", "max-min", "sufferage"};

#define NAME_OF(tab, v) ((unsigned)(v) < sizeof(tab) / sizeof(tab[0]) ? tab[v] : "?")

const char *gv_sched_policy_name(gv_sched_policy p)
{
	return NAME_OF(policy_names, p);
}

const char *gv_sched_mode_name(gv_sched_mode m)
{
	return NAME_OF(mode_names, m);
}

const char *gv_sched_queue_name(gv_sched_queue q)
{
	return NAME_OF(queue_names, q);
}

const char *gv_sched_heuristic_name(gv_sched_heuristic h)
{
	return NAME_OF(heuristic_names, h);
}

static int parse_name(const char *s, const char *const *tab, unsigned n, const char *what,
		      unsigned *out, gv_err *e)
{
	for (unsigned i = 0; s && i < n; i++) {
		if (strcmp(s, tab[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	char list[128] = "";
	size_t len = 0;
	for (unsigned i = 0; i < n && len < sizeof list; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
					i ? ", " : "", tab[i]);
	return gv_err_set(e, -EINVAL, "unknown %s '%s' (one of: %s)", what, s ? s : "",
			  list);
}

int gv_sched_policy_parse(const char *s, gv_sched_policy *out, gv_err *e)
{
	unsigned v;
	int r = parse_name(s, policy_names, 4, "policy", &v, e);
	if (r == 0)
		*out = (gv_sched_policy)v;
	return r;
}

int gv_sched_mode_parse(const char *s, gv_sched_mode *out, gv_err *e)
{
	unsigned v;
	int r = parse_name(s, mode_names, 2, "mode", &v, e);
	if (r == 0)
		*out = (gv_sched_mode)v;
	return r;
}

int gv_sched_queue_parse(const char *s, gv_sched_queue *out, gv_err *e)
{
	unsigned v;
	int r;

	if (s && strcmp(s, "easy") == 0)
		s = "backfill";
	else if (s && strcmp(s, "fcfs") == 0)
		s = "strict";
	r = parse_name(s, queue_names, 3, "queue discipline", &v, e);
	if (r == 0)
		*out = (gv_sched_queue)v;
	return r;
}

int gv_sched_heuristic_parse(const char *s, gv_sched_heuristic *out, gv_err *e)
{
	unsigned v;
	int r = parse_name(s, heuristic_names, 3, "batch heuristic", &v, e);
	if (r == 0)
		*out = (gv_sched_heuristic)v;
	return r;
}
