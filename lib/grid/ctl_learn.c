/* SPDX-License-Identifier: MIT */
/*
 * ctl_learn.c - what the controller learns from its agents for the
 * scheduler (docs/scheduling.md):
 *
 * - locality: each agent sends a block sample of every image it holds
 *   (blocksample.h), once and again when they change. The first sample
 *   seen of an image name is the grid's reference for it; the bytes a
 *   host lacks of an image it does not hold are estimated from the
 *   reference and the samples of the images it does hold (the transfer
 *   fetches only the blocks a host lacks, whatever image holds them).
 * - the move cost model: each agent reports the moves it made (time,
 *   pause, bytes of memory and disk sent); the controller keeps the last
 *   CTL_MOVE_SAMPLES in the store and fits the model to them
 *   (gv_sched_cost_calibrate), starting over from the configured model
 *   each time, so old measurements age out.
 * - link rates: a host's agent measures its staging rate; the moves into
 *   a host measure the rate into it too (used when the agent has none).
 * - per job: the disk it has written, the memory it dirties (measured by
 *   its last move), for the next move's estimate.
 * And what it tells them back beyond their orders: the job sizes in demand,
 * for which they keep templates warm (docs/templates.md).
 */
#include "ctl_internal.h"

#include <gridvm/base/util.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_KEY_MOVES "/grid/moves/"

/* ---- image samples ---- */

static void samples_free(struct ctl_sample *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gv_blocksample_clear(&v[i].s);
	free(v);
}

static struct ctl_sample *sample_find(struct ctl_sample *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

/* The report carries the host's samples: they replace what it had. */
static void learn_samples(gv_ctl *c, struct ctl_host *h, json_t *req)
{
	json_t *images = json_object_get(req, "images"), *im;
	struct ctl_sample *v = calloc(json_array_size(images) + 1, sizeof(*v));
	size_t n = 0, i;

	if (!v)
		abort();
	json_array_foreach(images, i, im) {
		const char *name = json_string_value(json_object_get(im, "name"));
		const char *text = json_string_value(json_object_get(im, "sample"));
		if (!name || !text || strlen(name) >= sizeof(v[n].name))
			continue;
		if (gv_blocksample_decode(text, &v[n].s) < 0) {
			fprintf(stderr, "gridvmctld: host %s: a damaged sample of image %s\n",
				h->name, name);
			continue;
		}
		snprintf(v[n].name, sizeof(v[n].name), "%s", name);
		/* the grid's reference for an image: the first sample seen */
		if (!sample_find(c->cat, c->ncat, name)) {
			struct ctl_sample *cat = realloc(c->cat, (c->ncat + 1) * sizeof(*cat));
			if (!cat)
				abort();
			c->cat = cat;
			struct ctl_sample *s = &c->cat[c->ncat];
			memset(s, 0, sizeof(*s));
			snprintf(s->name, sizeof(s->name), "%s", name);
			s->s = v[n].s;
			s->s.h = malloc(v[n].s.n * sizeof(uint64_t) + 1);
			if (!s->s.h)
				abort();
			memcpy(s->s.h, v[n].s.h, v[n].s.n * sizeof(uint64_t));
			c->ncat++;
			c->cat_gen++;
		}
		n++;
	}
	samples_free(h->samples, h->nsamples);
	h->samples = v;
	h->nsamples = n;
	h->samples_known = true;
	h->samples_gen++;
}

static bool host_holds(const struct ctl_host *h, const char *image)
{
	json_t *im;
	size_t k;

	json_array_foreach(json_object_get(h->report, "images"), k, im)
		if (!strcmp(json_string_value(json_object_get(im, "name")) ?: "", image))
			return true;
	return false;
}

void ctl_host_images_to_sched(gv_ctl *c, struct ctl_host *h)
{
	json_t *im;
	size_t i;

	gv_sched_host_clear_images(c->st, h->sidx); /* what it holds now */
	json_array_foreach(json_object_get(h->report, "images"), i, im) {
		const char *name = json_string_value(json_object_get(im, "name"));
		if (name && gv_sched_host_set_image(c->st, h->sidx, name, 0) < 0)
			fprintf(stderr, "gridvmctld: out of memory\n");
	}
	ctl_recover_holdings(c, h);
	/* the others: what its blocks do not cover, estimated again only when
	 * its samples or the grid's references changed */
	if (h->missing_host_gen != h->samples_gen || h->missing_cat_gen != c->cat_gen ||
	    h->nmissing != c->ncat) {
		const gv_blocksample **have = calloc(h->nsamples + 1, sizeof(*have));
		int64_t *m = realloc(h->missing, (c->ncat + 1) * sizeof(*m));
		if (!have || !m)
			abort();
		for (size_t k = 0; k < h->nsamples; k++)
			have[k] = &h->samples[k].s;
		for (size_t k = 0; k < c->ncat; k++) {
			double cov = gv_blocksample_covered(&c->cat[k].s, have, h->nsamples);
			m[k] = cov < 0 ? -1
				       : (int64_t)((1 - cov) * (double)c->cat[k].s.nonzero *
						   (double)c->cat[k].s.block_size + 0.5);
		}
		free(have);
		h->missing = m;
		h->nmissing = c->ncat;
		h->missing_host_gen = h->samples_gen;
		h->missing_cat_gen = c->cat_gen;
	}
	for (size_t k = 0; k < h->nmissing; k++)
		if (h->missing[k] >= 0 && !host_holds(h, c->cat[k].name) &&
		    gv_sched_host_set_image(c->st, h->sidx, c->cat[k].name,
					    (uint64_t)h->missing[k]) < 0)
			fprintf(stderr, "gridvmctld: out of memory\n");
}

/* A recovered job's checkpoint, as the scheduler sees it: an item its
 * holders have and the others fetch (the job's memory, about), so that
 * the job goes preferably where its checkpoint is. */
static void recover_name(struct ctl_job *j, char *buf, size_t len)
{
	snprintf(buf, len, "checkpoint:%" PRIu64, j->id);
}

void ctl_recover_sched(gv_ctl *c, struct ctl_job *j)
{
	json_t *rc = json_object_get(j->rec, "recover"), *v;
	char name[64];
	size_t i;

	if (j->sidx == GV_SCHED_NONE)
		return;
	if (!json_object_get(rc, "checkpoint")) {
		if (gv_sched_job_set_checkpoint(c->st, j->sidx, NULL, 0) < 0)
			abort();
		return;
	}
	recover_name(j, name, sizeof(name));
	if (gv_sched_job_set_checkpoint(c->st, j->sidx, name, (uint64_t)json_integer_value(
							json_object_get(j->rec, "memory"))) < 0)
		fprintf(stderr, "gridvmctld: out of memory\n");
	json_array_foreach(json_object_get(rc, "on"), i, v) {
		struct ctl_host *r = ctl_host_find(c, json_string_value(v) ?: "");
		if (r && r->sidx != GV_SCHED_NONE &&
		    gv_sched_host_set_image(c->st, r->sidx, name, 0) < 0)
			fprintf(stderr, "gridvmctld: out of memory\n");
	}
	c->recover_hint = true;
}

void ctl_recover_holdings(gv_ctl *c, struct ctl_host *h)
{
	bool any = false;

	if (!c->recover_hint || h->sidx == GV_SCHED_NONE)
		return;
	for (size_t k = 0; k < c->njobs; k++) {
		struct ctl_job *j = c->jobs[k];
		json_t *rc = json_object_get(j->rec, "recover"), *v;
		char name[64];
		size_t i;

		if (!json_object_get(rc, "checkpoint"))
			continue;
		any = true;
		recover_name(j, name, sizeof(name));
		json_array_foreach(json_object_get(rc, "on"), i, v)
			if (!strcmp(json_string_value(v) ?: "", h->name) &&
			    gv_sched_host_set_image(c->st, h->sidx, name, 0) < 0)
				fprintf(stderr, "gridvmctld: out of memory\n");
	}
	c->recover_hint = any;
}

json_t *ctl_host_missing_json(gv_ctl *c, struct ctl_host *h)
{
	json_t *o = json_object();

	for (size_t k = 0; k < h->nmissing && k < c->ncat; k++)
		if (h->missing[k] >= 0 && !host_holds(h, c->cat[k].name))
			json_object_set_new(o, c->cat[k].name, json_integer(h->missing[k]));
	return o;
}

/* ---- measured moves and the cost model ---- */

static void calibrate(gv_ctl *c)
{
	gv_sched_cost cost = c->cost_base;

	if (c->nmoves && gv_sched_cost_calibrate(&cost, c->moves, c->nmoves) == 0)
		c->o.params.cost = cost;
}

static json_t *sample_json(const gv_sched_move_sample *s)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "bytes", s->bytes, "rate", s->rate,
			 "total_s", s->total_s, "downtime_s", s->downtime_s, "memory", s->memory,
			 "disk_bytes", s->disk_bytes);
}

static void sample_keep(gv_ctl *c, const gv_sched_move_sample *s)
{
	if (c->nmoves < CTL_MOVE_SAMPLES) {
		c->moves[c->nmoves++] = *s;
	} else {
		memmove(c->moves, c->moves + 1, (CTL_MOVE_SAMPLES - 1) * sizeof(*c->moves));
		c->moves[CTL_MOVE_SAMPLES - 1] = *s;
	}
}

/* In the store: the last CTL_MOVE_SAMPLES, so a restart keeps the model. */
static void sample_save(gv_ctl *c, const gv_sched_move_sample *s)
{
	json_t *j = sample_json(s);
	char *text = json_dumps(j, JSON_COMPACT);
	char *key = gv_strdupf(CTL_KEY_MOVES "%020" PRIu64, c->moves_measured);
	gv_err e;

	if (text && gv_kv_put(c->kv, key, text, 0, NULL, &e) < 0)
		fprintf(stderr, "gridvmctld: cannot keep a move's measurement: %s\n", e.msg);
	free(key);
	if (c->moves_measured >= CTL_MOVE_SAMPLES) {
		key = gv_strdupf(CTL_KEY_MOVES "%020" PRIu64,
				 c->moves_measured - CTL_MOVE_SAMPLES);
		(void)gv_kv_delete(c->kv, key, NULL, NULL);
		free(key);
	}
	free(text);
	json_decref(j);
}

void ctl_learn_load(gv_ctl *c)
{
	gv_kv_entry *v = NULL;
	size_t n = 0;
	int64_t rev;

	c->cost_base = c->o.params.cost;
	if (gv_kv_range(c->kv, CTL_KEY_MOVES, &v, &n, &rev, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		json_t *j = json_loads(v[i].value, 0, NULL);
		gv_sched_move_sample s = {
			.bytes = json_number_value(json_object_get(j, "bytes")),
			.rate = json_number_value(json_object_get(j, "rate")),
			.total_s = json_number_value(json_object_get(j, "total_s")),
			.downtime_s = json_number_value(json_object_get(j, "downtime_s")),
			.memory = json_number_value(json_object_get(j, "memory")),
			.disk_bytes = json_number_value(json_object_get(j, "disk_bytes")),
		};
		uint64_t seq = strtoull(v[i].key + strlen(CTL_KEY_MOVES), NULL, 10);
		if (j && s.rate > 0 && s.total_s > 0)
			sample_keep(c, &s);
		if (seq + 1 > c->moves_measured)
			c->moves_measured = seq + 1;
		json_decref(j);
	}
	gv_kv_entries_free(v, n);
	calibrate(c);
}

/* A move the agent @src made: its measurement, against the estimate. */
static void learn_move(gv_ctl *c, struct ctl_host *src, json_t *m)
{
	uint64_t id = (uint64_t)json_integer_value(json_object_get(m, "id"));
	const char *to = json_string_value(json_object_get(m, "to")) ?: "";
	struct ctl_job *j = ctl_job_find(c, id);
	struct ctl_host *dst = NULL;
	double ram = json_number_value(json_object_get(m, "ram_bytes"));
	double disk = json_number_value(json_object_get(m, "disk_bytes"));
	double paused = json_number_value(json_object_get(m, "paused_ms"));

	for (size_t i = 0; i < c->nhosts; i++)
		if (!strcmp(c->hosts[i].addr, to))
			dst = &c->hosts[i];
	const gv_sched_host *sh = dst ? gv_sched_host_get(c->st, dst->sidx) : NULL;
	gv_sched_move_sample s = {
		.bytes = ram + disk,
		.rate = sh && sh->link_rate > 0 ? sh->link_rate : c->o.params.default_link_rate,
		.total_s = json_number_value(json_object_get(m, "seconds")),
		.downtime_s = json_is_number(json_object_get(m, "paused_ms")) ? paused / 1000 : -1,
		.memory = json_number_value(json_object_get(m, "memory")),
		.disk_bytes = disk,
	};
	const char *mode = json_string_value(json_object_get(m, "mode")) ?: "live";
	bool live = !strcmp(mode, "live");
	if (!(s.total_s > 0) || !(s.rate > 0))
		return;
	if (!live) { /* the model is of live moves: a cold one is only told */
		if (j)
			ctl_event(c, j, "measured", "its cold move from %s took %.1f s (the guest "
				  "paused throughout)", src->name, s.total_s);
		return;
	}
	sample_keep(c, &s);
	sample_save(c, &s);
	c->moves_measured++;
	calibrate(c);
	/* and the rate into the destination, for a host whose agent measured
	 * none (ctl_host_to_sched) */
	if (dst && s.bytes >= (1 << 20)) {
		double r = s.bytes / s.total_s;
		dst->move_rate = dst->move_rate > 0 ? 0.7 * dst->move_rate + 0.3 * r : r;
	}
	if (!j)
		return;
	double dirty = json_number_value(json_object_get(m, "dirty_rate"));
	if (dirty > 0)
		json_object_set_new(j->rec, "dirty_rate", json_real(dirty));
	const gv_sched_job *sj = gv_sched_job_get(c->st, j->sidx);
	if (sj && sj->id == id)
		gv_sched_job_set_estimates(c->st, j->sidx, sj->walltime,
					   dirty > 0 ? dirty : sj->dirty_rate, sj->disk_written);
	json_t *est = json_object_get(j->rec, "move_est");
	const gv_sched_cost *k = &c->o.params.cost;
	char a[16], b[16];
	ctl_event(c, j, "measured",
		  "its move from %s took %.1f s (estimated %.1f s), paused %.0f ms (estimated "
		  "%.0f ms), sent %s of memory and %s of disk; the cost model from %zu moves: "
		  "setup %.1f s, %.0f%% of the link rate, downtime %.0f ms",
		  src->name, s.total_s, json_number_value(json_object_get(est, "total_s")), paused,
		  json_number_value(json_object_get(est, "downtime_s")) * 1000,
		  gv_fmt_size((uint64_t)ram, a, sizeof(a)), gv_fmt_size((uint64_t)disk, b, sizeof(b)),
		  c->nmoves, k->setup_s, k->rate_factor * 100, k->switchover_s * 1000);
	json_object_del(j->rec, "move_est");
	(void)ctl_job_save(c, j, NULL);
}

void ctl_learn_report(gv_ctl *c, struct ctl_host *h, json_t *req)
{
	json_t *m, *vm;
	size_t i;

	if (json_is_true(json_object_get(req, "samples")))
		learn_samples(c, h, req);
	json_array_foreach(json_object_get(req, "moved"), i, m)
		learn_move(c, h, m);
	/* the disk each running job has written: a move copies it */
	json_array_foreach(json_object_get(req, "vms"), i, vm) {
		json_t *w = json_object_get(vm, "disk_written");
		uint64_t id = gv_job_id_of_vm(json_string_value(json_object_get(vm, "name")));
		struct ctl_job *j = id && json_is_integer(w) ? ctl_job_find(c, id) : NULL;
		const gv_sched_job *sj = j ? gv_sched_job_get(c->st, j->sidx) : NULL;
		if (sj && sj->id == id)
			gv_sched_job_set_estimates(c->st, j->sidx, sj->walltime, sj->dirty_rate,
						   (uint64_t)json_integer_value(w));
	}
}

json_t *ctl_cost_json(gv_ctl *c)
{
	const gv_sched_cost *k = &c->o.params.cost;
	json_t *last = json_array();

	for (size_t i = 0; i < c->nmoves; i++)
		json_array_append_new(last, sample_json(&c->moves[i]));
	return json_pack("{s:I, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:i, s:f}}", "moves_measured",
			 (json_int_t)c->moves_measured, "samples", last, "model", "setup_s",
			 k->setup_s, "rate_factor", k->rate_factor, "mem_ratio", k->mem_ratio,
			 "switchover_s", k->switchover_s, "max_downtime_s", k->max_downtime_s,
			 "max_rounds", (int)k->max_rounds, "overhead", k->overhead);
}

/* ---- the job sizes in demand: templates the agents keep warm ---- */

#define DEMAND_TOP 3

json_t *ctl_templates_wanted(gv_ctl *c)
{
	struct size_count {
		uint32_t cpus;
		uint64_t mib;
		size_t n;
	} top[64];
	size_t ntop = 0;

	if (c->demand && gv_now_ms() - c->demand_ms < 1000)
		return json_incref(c->demand);
	for (size_t i = 0; i < c->njobs; i++) {
		const json_t *rec = c->jobs[i]->rec;
		if (gv_job_state_final(gv_job_record_state(rec)))
			continue;
		uint32_t cpus = (uint32_t)json_integer_value(json_object_get(rec, "cpus"));
		uint64_t mib = (uint64_t)json_integer_value(json_object_get(rec, "memory")) >> 20;
		size_t k = 0;
		while (k < ntop && (top[k].cpus != cpus || top[k].mib != mib))
			k++;
		if (k == ntop && ntop < sizeof(top) / sizeof(top[0]))
			top[ntop++] = (struct size_count){ cpus, mib, 0 };
		if (k < ntop)
			top[k].n++;
	}
	json_decref(c->demand);
	c->demand = json_array();
	c->demand_ms = gv_now_ms();
	for (int pick = 0; pick < DEMAND_TOP; pick++) { /* the most common first */
		size_t best = ntop;
		for (size_t k = 0; k < ntop; k++)
			if (top[k].n && (best == ntop || top[k].n > top[best].n))
				best = k;
		if (best == ntop)
			break;
		json_array_append_new(c->demand, json_pack("{s:i, s:I}", "cpus", (int)top[best].cpus,
							   "memory_mib", (json_int_t)top[best].mib));
		top[best].n = 0;
	}
	return json_incref(c->demand);
}

void ctl_learn_free(gv_ctl *c)
{
	json_decref(c->demand);
	for (size_t i = 0; i < c->nhosts; i++) {
		samples_free(c->hosts[i].samples, c->hosts[i].nsamples);
		free(c->hosts[i].missing);
	}
	samples_free(c->cat, c->ncat);
}
