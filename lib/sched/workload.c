/* SPDX-License-Identifier: MIT */
/*
 * workload.c - SWF lines read and written, the deterministic PRNG, and the
 * synthetic trace generator (workload.h; distributions in
 * docs/simulator.md).
 */
#include <gridvm/sched/workload.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const swf_names[GV_SWF_FIELDS] = {
    "job number",	   "submit time",	"wait time",	     "run time",
    "allocated processors", "average CPU time",	"used memory",	     "requested processors",
    "requested time",	   "requested memory", "status",		     "user id",
    "group id",		   "application number", "queue number",	     "partition number",
    "preceding job number", "think time"};

/* Fields that are integers in the format (the others may have decimals). */
static const unsigned char swf_is_int[GV_SWF_FIELDS] = {1, 0, 0, 0, 1, 0, 1, 1, 0,
							 1, 1, 1, 1, 1, 1, 1, 1, 0};

const char *gv_swf_field_name(unsigned field)
{
	return field >= 1 && field <= GV_SWF_FIELDS ? swf_names[field - 1] : NULL;
}

static int field_err(gv_err *e, unsigned f, const char *tok, size_t n, const char *why)
{
	return gv_err_set(e, -EINVAL, "field %u (%s): \"%.*s\" %s", f + 1, swf_names[f],
			  (int)(n > 40 ? 40 : n), tok, why);
}

int gv_swf_parse_line(const char *line, gv_swf_job *out, gv_err *e)
{
	double v[GV_SWF_FIELDS];
	unsigned f = 0;
	const char *p = line;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == ';' || *p == '\0' || *p == '\n' || *p == '\r')
		return 0;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (!*p)
			break;
		const char *tok = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			p++;
		size_t n = (size_t)(p - tok);
		if (f == GV_SWF_FIELDS)
			return gv_err_set(e, -EINVAL,
					  "more than %d fields (an SWF line has %d): \"%.*s\"",
					  GV_SWF_FIELDS, GV_SWF_FIELDS, (int)(n > 40 ? 40 : n), tok);
		char buf[64], *end;
		if (n >= sizeof buf)
			return field_err(e, f, tok, n, "is too long for a number");
		memcpy(buf, tok, n);
		buf[n] = '\0';
		errno = 0;
		double d = strtod(buf, &end);
		if (*end || end == buf || errno == ERANGE || !isfinite(d))
			return field_err(e, f, tok, n, "is not a number");
		if (swf_is_int[f] && d != floor(d))
			return field_err(e, f, tok, n, "is not a whole number");
		if (d < -1)
			return field_err(e, f, tok, n, "is below -1 (-1 means unknown)");
		if (fabs(d) > 9e15)
			return field_err(e, f, tok, n, "is too large");
		v[f++] = d;
	}
	if (f < GV_SWF_FIELDS)
		return gv_err_set(e, -EINVAL, "%u fields, an SWF line has %d: field %u (%s) is missing",
				  f, GV_SWF_FIELDS, f + 1, swf_names[f]);
	*out = (gv_swf_job){
	    .id = (int64_t)v[0],	 .submit = v[1],	    .wait = v[2],
	    .run = v[3],		 .procs = (int64_t)v[4],    .avg_cpu = v[5],
	    .used_mem = (int64_t)v[6],	 .req_procs = (int64_t)v[7], .req_time = v[8],
	    .req_mem = (int64_t)v[9],	 .status = (int64_t)v[10],  .user = (int64_t)v[11],
	    .group = (int64_t)v[12],	 .app = (int64_t)v[13],	    .queue = (int64_t)v[14],
	    .partition = (int64_t)v[15], .preceding = (int64_t)v[16], .think = v[17]};
	return 1;
}

/* %g would print large times in exponent form; SWF readers expect plain
 * numbers: whole values without decimals, others with two. */
static int put_num(char *buf, size_t len, double d)
{
	if (d == floor(d))
		return snprintf(buf, len, "%.0f", d);
	return snprintf(buf, len, "%.2f", d);
}

int gv_swf_format(const gv_swf_job *j, char *buf, size_t len)
{
	double v[GV_SWF_FIELDS] = {(double)j->id,	 j->submit,
				   j->wait,		 j->run,
				   (double)j->procs,	 j->avg_cpu,
				   (double)j->used_mem,	 (double)j->req_procs,
				   j->req_time,		 (double)j->req_mem,
				   (double)j->status,	 (double)j->user,
				   (double)j->group,	 (double)j->app,
				   (double)j->queue,	 (double)j->partition,
				   (double)j->preceding, j->think};
	size_t n = 0;
	char tmp[64];

	for (unsigned f = 0; f < GV_SWF_FIELDS; f++) {
		int k = put_num(tmp, sizeof tmp, v[f]);
		int w = snprintf(n < len ? buf + n : NULL, n < len ? len - n : 0, "%s%s",
				 f ? " " : "", tmp);
		(void)k;
		n += (size_t)w;
	}
	int w = snprintf(n < len ? buf + n : NULL, n < len ? len - n : 0, "\n");
	return (int)(n + (size_t)w);
}

/* ---- PRNG ---- */

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void gv_rng_seed(gv_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t gv_rng_next(gv_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double gv_rng_unit(gv_rng *r)
{
	return (double)(gv_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t gv_rng_below(gv_rng *r, uint64_t n)
{
	/* rejection: no modulo bias */
	uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
	do
		x = gv_rng_next(r);
	while (x >= lim);
	return x % n;
}

double gv_rng_exp(gv_rng *r, double mean)
{
	return -mean * log1p(-gv_rng_unit(r));
}

double gv_rng_normal(gv_rng *r)
{
	double u = gv_rng_unit(r), v = gv_rng_unit(r);
	return sqrt(-2 * log1p(-u)) * cos(2 * M_PI * v);
}

unsigned gv_rng_pick(gv_rng *r, const double *w, unsigned n)
{
	double sum = 0;
	for (unsigned i = 0; i < n; i++)
		sum += w[i];
	double x = gv_rng_unit(r) * sum;
	for (unsigned i = 0; i < n; i++) {
		if (x < w[i])
			return i;
		x -= w[i];
	}
	return n - 1;
}

/* ---- the generator ---- */

void gv_workload_opts_fill(gv_workload_opts *o)
{
	if (o->rate <= 0)
		o->rate = 500;
	if (o->burst_p <= 0)
		o->burst_p = 0.3;
	if (o->burst_p > 1)
		o->burst_p = 1;
	if (o->run_median <= 0)
		o->run_median = 1200;
	if (o->run_sigma <= 0)
		o->run_sigma = 1.5;
	if (!o->users)
		o->users = 200;
	if (!o->images)
		o->images = 8;
}

/* Zipf-like over 1..n: weight 1/k. */
static unsigned zipf(gv_rng *r, unsigned n)
{
	double h = 0;
	for (unsigned k = 1; k <= n; k++)
		h += 1.0 / k;
	double x = gv_rng_unit(r) * h;
	for (unsigned k = 1; k <= n; k++) {
		x -= 1.0 / k;
		if (x < 0)
			return k;
	}
	return n;
}

int gv_workload_init(gv_workload *w, const gv_workload_opts *o)
{
	memset(w, 0, sizeof *w);
	w->o = *o;
	gv_workload_opts_fill(&w->o);
	gv_rng_seed(&w->rng, w->o.seed);
	w->fav = calloc(w->o.users, sizeof *w->fav);
	if (!w->fav)
		return -ENOMEM;
	for (unsigned u = 0; u < w->o.users; u++)
		w->fav[u] = zipf(&w->rng, w->o.images);
	return 0;
}

void gv_workload_free(gv_workload *w)
{
	free(w->fav);
	w->fav = NULL;
}

#define BURST_MIN 2
#define BURST_MAX 20
#define BURST_GAP 10.0
#define DAY 86400.0

/* Jobs of a burst come 0..10 s apart, closer when jobs come faster than
 * one per 10 s on average (so bursts never outrun the rate). */
static double burst_gap(const gv_workload *w)
{
	return fmin(BURST_GAP, 3600.0 / w->o.rate);
}

/* The next arrival of the daily-cycle Poisson process (thinning). Its
 * mean rate is set so that, bursts' own spans included, jobs come at
 * `rate` per hour on average (or as fast as the bursts allow). */
static double next_arrival(gv_workload *w)
{
	double burst_jobs = (BURST_MIN + BURST_MAX) / 2.0;
	double mean_jobs = w->o.burst_p * burst_jobs + (1 - w->o.burst_p);
	double gap = mean_jobs * 3600.0 / w->o.rate -
		     w->o.burst_p * (burst_jobs - 1) * burst_gap(w) / 2;
	double lam = 1 / (gap > 1e-3 ? gap : 1e-3), lam_max = 1.5 * lam, t = w->t;
	for (;;) {
		t += gv_rng_exp(&w->rng, 1 / lam_max);
		double now = lam * (1 + 0.5 * sin(2 * M_PI * (t / DAY - 8.0 / 24)));
		if (gv_rng_unit(&w->rng) * lam_max < now)
			return t;
	}
}

void gv_workload_next(gv_workload *w, gv_swf_job *j)
{
	static const double procs_w[] = {40, 20, 15, 12, 8, 5};
	static const double mem_w[] = {30, 35, 25, 10};
	static const int64_t mem_kb[] = {512 * 1024, 1024 * 1024, 2048 * 1024, 4096 * 1024};
	gv_rng *r = &w->rng;
	int64_t user, app;

	if (w->burst_left) {
		w->burst_left--;
		w->t += gv_rng_unit(r) * burst_gap(w);
		user = w->burst_user;
		app = w->burst_app;
	} else {
		w->t = w->made ? next_arrival(w) : 0;
		user = zipf(r, w->o.users);
		app = gv_rng_unit(r) < 0.8 ? w->fav[user - 1] : zipf(r, w->o.images);
		if (gv_rng_unit(r) < w->o.burst_p) {
			w->burst_left =
			    BURST_MIN - 1 + (unsigned)gv_rng_below(r, BURST_MAX - BURST_MIN + 1);
			w->burst_user = user;
			w->burst_app = app;
		}
	}
	int64_t procs = 1ll << gv_rng_pick(r, procs_w, 6);
	double run = round(w->o.run_median * exp(w->o.run_sigma * gv_rng_normal(r)));
	if (run < 10)
		run = 10;
	if (run > 48 * 3600.0)
		run = 48 * 3600.0;
	double u = gv_rng_unit(r);
	double req = gv_rng_unit(r) < 0.1 ? run : run * (1 + 3 * u * u);
	req = ceil(req / 900) * 900;
	int64_t mem = mem_kb[gv_rng_pick(r, mem_w, 4)];

	*j = (gv_swf_job){.id = (int64_t)++w->made,
			  .submit = round(w->t),
			  .wait = -1,
			  .run = run,
			  .procs = procs,
			  .avg_cpu = -1,
			  .used_mem = mem,
			  .req_procs = procs,
			  .req_time = req,
			  .req_mem = mem,
			  .status = 1,
			  .user = user,
			  .group = 1 + (user - 1) % 10,
			  .app = app,
			  .queue = 1,
			  .partition = 1,
			  .preceding = -1,
			  .think = -1};
}
