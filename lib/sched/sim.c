/* SPDX-License-Identifier: MIT */
/*
 * sim.c - the simulator's engine (sim.h): a heap of timed events, the
 * hosts' and jobs' life between decisions, and the decisions themselves
 * taken by the scheduling library and applied as gridvmctld applies them
 * (lib/grid/ctl_loop.c: gv_sched_schedule then gv_sched_apply per PLACE
 * act; gv_sched_replan then gv_sched_apply per MOVE act).
 */
#include "sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the event heap: by time, then class (state changes before
 * decisions at the same instant), then order of insertion ---- */

static bool ev_less(const struct sim_ev *a, const struct sim_ev *b)
{
	if (a->t != b->t)
		return a->t < b->t;
	if (a->cls != b->cls)
		return a->cls < b->cls;
	return a->seq < b->seq;
}

int sim_push(gv_sim *s, double t, enum sim_ev_type type, uint32_t idx, uint32_t ver)
{
	if (s->n_ev == s->cap_ev) {
		size_t cap = s->cap_ev ? s->cap_ev * 2 : 1024;
		struct sim_ev *n = realloc(s->ev, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		s->ev = n;
		s->cap_ev = cap;
	}
	struct sim_ev e = {.t = t,
			   .seq = s->seq++,
			   .type = type,
			   .cls = type == EV_CYCLE || type == EV_REPLAN,
			   .idx = idx,
			   .ver = ver};
	size_t i = s->n_ev++;
	while (i > 0 && ev_less(&e, &s->ev[(i - 1) / 2])) {
		s->ev[i] = s->ev[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->ev[i] = e;
	return 0;
}

static struct sim_ev pop(gv_sim *s)
{
	struct sim_ev top = s->ev[0], last = s->ev[--s->n_ev];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->n_ev)
			break;
		if (c + 1 < s->n_ev && ev_less(&s->ev[c + 1], &s->ev[c]))
			c++;
		if (!ev_less(&s->ev[c], &last))
			break;
		s->ev[i] = s->ev[c];
		i = c;
	}
	if (s->n_ev)
		s->ev[i] = last;
	return top;
}

/* ---- setup ---- */

void gv_sim_opts_default(gv_sim_opts *o)
{
	memset(o, 0, sizeof *o);
	gv_sched_params_default(&o->params);
	gv_sim_cost_calibrated(&o->params.cost);
	o->cycle_s = 1;
	o->replan_s = 10;
	o->batch_wait_s = 10;
	o->repair_s = 3600;
	o->load_every = 1800;
}

gv_sim *gv_sim_new(const gv_sim_opts *o)
{
	gv_sim *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	s->o = *o;
	if (!(s->o.cycle_s >= 0))
		s->o.cycle_s = 0;
	if (!(s->o.replan_s > 0))
		s->o.replan_s = 10;
	if (!(s->o.repair_s > 0))
		s->o.repair_s = 3600;
	if (!(s->o.load_every > 0))
		s->o.load_every = 1800;
	s->st = gv_sched_state_new();
	if (!s->st) {
		free(s);
		return NULL;
	}
	gv_rng_seed(&s->rng, o->seed ^ 0x73696d756c61746full);
	gv_sched_plan_init(&s->plan);
	s->cycle_at = -1;
	s->first_submit = INFINITY;
	return s;
}

void gv_sim_free(gv_sim *s)
{
	if (!s)
		return;
	gv_sched_state_free(s->st);
	gv_sched_plan_free(&s->plan);
	for (uint32_t i = 0; i < s->n_hosts; i++)
		free(s->hosts[i].run);
	free(s->hosts);
	free(s->jobs);
	free(s->queued);
	free(s->dirty_hosts);
	free(s->ev);
	free(s->lat);
	free(s);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

/* Tell the library which images host @h lacks, and how much of each. */
static int host_images(gv_sim *s, uint32_t h)
{
	for (unsigned i = 0; i < gv_sim_image_count(); i++)
		if (gv_sched_host_set_image(s->st, s->hosts[h].sidx, gv_sim_image_name(i),
					    gv_sim_image_missing(i, s->hosts[h].layers)) < 0)
			return -ENOMEM;
	return 0;
}

int gv_sim_add_host(gv_sim *s, const gv_sim_host *spec, gv_err *e)
{
	const gv_sim_site *site = gv_sim_site_get(spec->site);
	size_t cap = s->cap_hosts;

	if (!site || !spec->cpus || !spec->memory)
		return gv_err_set(e, -EINVAL, "host %s: needs cpus, memory and a known site",
				  spec->name);
	if (grow((void **)&s->hosts, &cap, s->n_hosts + 1, sizeof *s->hosts) < 0)
		return gv_err_set(e, -ENOMEM, "out of memory");
	s->cap_hosts = (uint32_t)cap;
	struct sim_host *h = &s->hosts[s->n_hosts];
	memset(h, 0, sizeof *h);
	h->spec = *spec;
	h->link = spec->link_rate > 0 ? spec->link_rate : site->link_rate;
	h->layers = spec->layers;
	h->up = !(spec->join_at > 0);
	json_t *attrs = json_pack("{s:s, s:s, s:i}", "site", site->name, "arch", "x86_64",
				  "cpus", (int)spec->cpus);
	gv_sched_host hs = {.name = spec->name,
			    .state = h->up ? GV_HOST_UP : GV_HOST_DOWN,
			    .cpus = spec->cpus,
			    .memory = spec->memory,
			    .speed = spec->speed > 0 ? spec->speed : 1.0,
			    .link_rate = h->link,
			    .attrs = attrs};
	int r = attrs ? gv_sched_host_add(s->st, &hs, &h->sidx, e)
		      : gv_err_set(e, -ENOMEM, "out of memory");
	json_decref(attrs);
	if (r < 0)
		return r;
	s->n_hosts++;
	if (h->up)
		s->up_cpus += spec->cpus;
	if (host_images(s, s->n_hosts - 1) < 0)
		return gv_err_set(e, -ENOMEM, "out of memory");
	return 0;
}

int gv_sim_add_job(gv_sim *s, const gv_sim_job *spec, gv_err *e)
{
	size_t cap = s->cap_jobs;

	if (!spec->cpus || !(spec->runtime > 0) || !isfinite(spec->submit) ||
	    spec->submit < 0 || !(spec->walltime >= 0) ||
	    spec->image >= (int)gv_sim_image_count())
		return gv_err_set(e, -EINVAL,
				  "job %llu: needs cpus, a run time > 0, a submit time >= 0 "
				  "and an image of the mix",
				  (unsigned long long)spec->id);
	if (grow((void **)&s->jobs, &cap, s->n_jobs + 1, sizeof *s->jobs) < 0)
		return gv_err_set(e, -ENOMEM, "out of memory");
	s->cap_jobs = (uint32_t)cap;
	struct sim_job *j = &s->jobs[s->n_jobs];
	memset(j, 0, sizeof *j);
	j->spec = *spec;
	j->sidx = GV_SCHED_NONE;
	j->host = j->dest = GV_SCHED_NONE;
	j->first_start = j->end = -1;
	j->work = j->ckpt_work = spec->runtime;
	if (sim_push(s, spec->submit, EV_ARRIVE, s->n_jobs, 0) < 0)
		return gv_err_set(e, -ENOMEM, "out of memory");
	if (spec->submit < s->first_submit)
		s->first_submit = spec->submit;
	s->n_jobs++;
	return 0;
}

int gv_sim_result_get(const gv_sim *s, size_t i, gv_sim_result *out)
{
	if (i >= s->n_jobs)
		return -EINVAL;
	const struct sim_job *j = &s->jobs[i];
	out->start = j->first_start;
	out->end = j->end;
	out->host = j->st == SJ_DONE ? j->host : GV_SCHED_NONE;
	out->starts = j->starts;
	out->moves = j->moves;
	return 0;
}

/* ---- the run ---- */

static bool finished(const gv_sim *s)
{
	return s->n_done + s->n_never == s->n_jobs;
}

static int dispatch(gv_sim *s, const struct sim_ev *ev)
{
	struct sim_job *j = ev->idx < s->n_jobs ? &s->jobs[ev->idx] : NULL;

	switch (ev->type) {
	case EV_ARRIVE:
		return sim_job_arrive(s, ev->idx);
	case EV_STAGED:
		return j->st == SJ_STAGING && j->ver == ev->ver ? sim_job_run(s, ev->idx) : 0;
	case EV_END:
		return j->endv == ev->ver && (j->st == SJ_RUNNING || j->st == SJ_MIGRATING)
			   ? sim_job_end(s, ev->idx)
			   : 0;
	case EV_CKPT:
		return j->ver == ev->ver && (j->st == SJ_RUNNING || j->st == SJ_MIGRATING)
			   ? sim_job_checkpoint(s, ev->idx)
			   : 0;
	case EV_SWITCH:
		return j->ver == ev->ver && j->st == SJ_MIGRATING ? sim_job_switch(s, ev->idx)
								   : 0;
	case EV_ARRIVED:
		return j->ver == ev->ver && j->st == SJ_PAUSED ? sim_job_arrived(s, ev->idx)
								: 0;
	case EV_FAIL:
		return sim_host_fail(s, ev->idx);
	case EV_JOIN:
		return sim_host_join(s, ev->idx);
	case EV_LOAD:
		return sim_host_load(s, ev->idx);
	case EV_CYCLE:
		if (ev->ver != s->cycle_ver)
			return 0;
		s->cycle_at = -1;
		return sim_cycle(s);
	case EV_REPLAN:
		return sim_replan(s);
	}
	return 0;
}

/* A cycle when something changed: at most one per cycle_s; in batch mode
 * only when a batch is due (as gridvmctld's batch_due), else when the
 * oldest queued job will have waited batch_wait_s. */
int sim_want_cycle(gv_sim *s)
{
	double t = s->now;

	if (!s->n_queued)
		return 0;
	if (s->o.params.mode == GV_SCHED_BATCH && s->n_queued < s->o.params.batch_max) {
		double oldest = INFINITY;
		for (uint32_t i = 0; i < s->n_queued; i++)
			if (s->jobs[s->queued[i]].spec.submit < oldest)
				oldest = s->jobs[s->queued[i]].spec.submit;
		if (oldest + s->o.batch_wait_s > t)
			t = oldest + s->o.batch_wait_s;
	}
	if (s->last_cycle >= 0 && t < s->last_cycle + s->o.cycle_s)
		t = s->last_cycle + s->o.cycle_s;
	if (s->cycle_at >= 0 && s->cycle_at <= t)
		return 0;
	s->cycle_at = t;
	return sim_push(s, t, EV_CYCLE, 0, ++s->cycle_ver);
}

int gv_sim_run(gv_sim *s, gv_err *e)
{
	int r = 0;

	s->last_cycle = -1;
	if (isfinite(s->first_submit))
		s->now = s->first_submit;
	for (uint32_t h = 0; h < s->n_hosts && r == 0; h++) {
		struct sim_host *H = &s->hosts[h];
		if (!H->up)
			r = sim_push(s, H->spec.join_at, EV_JOIN, h, 0);
		else
			r = sim_host_arm(s, h);
		if (r == 0 && H->spec.fail_at > 0)
			r = sim_push(s, H->spec.fail_at, EV_FAIL, h, 0);
	}
	if (r == 0 && s->o.replan && s->n_jobs)
		r = sim_push(s, s->first_submit + s->o.replan_s, EV_REPLAN, 0, 0);
	while (r == 0 && s->n_ev && !finished(s)) {
		struct sim_ev ev = pop(s);
		sim_advance(s, ev.t);
		r = dispatch(s, &ev);
		if (r == 0 && s->dirty && ev.type != EV_CYCLE) {
			s->dirty = false;
			r = sim_want_cycle(s);
		}
		if (r == 0 && s->o.check)
			r = sim_check(s, e);
	}
	sim_advance(s, s->now);
	if (r == -ENOMEM)
		return gv_err_set(e, r, "out of memory");
	if (r < 0 && r != -EPROTO)
		return gv_err_set(e, r, "the simulation failed (%d)", r);
	return r;
}
