/* SPDX-License-Identifier: MIT */
/*
 * sched.c - the scheduling library's model of the grid: hosts, jobs, the
 * images hosts lack, cached expression evaluations, the priority queue.
 */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

int sched_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint32_t ncap = *cap ? *cap : 8;
	while (ncap < need) {
		if (ncap > UINT32_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	void *n = realloc(*arr, (size_t)ncap * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = ncap;
	return 0;
}

uint64_t sched_hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

uint64_t sched_hash_u64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* ---- the index maps ---- */

static int map_resize(struct sched_map *m, uint32_t ncap)
{
	struct sched_map_slot *ns = calloc(ncap, sizeof *ns);

	if (!ns)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->cap; i++) {
		if (m->s[i].v < 2)
			continue;
		uint32_t k = (uint32_t)m->s[i].h & (ncap - 1);
		while (ns[k].v)
			k = (k + 1) & (ncap - 1);
		ns[k] = m->s[i];
	}
	free(m->s);
	m->s = ns;
	m->cap = ncap;
	m->tombs = 0;
	return 0;
}

int sched_map_put(struct sched_map *m, uint64_t h, uint32_t idx)
{
	if ((uint64_t)(m->used + m->tombs + 1) * 4 >= (uint64_t)m->cap * 3) {
		uint32_t ncap = 16;
		while (ncap < (m->used + 1) * 2)
			ncap *= 2;
		if (map_resize(m, ncap) < 0)
			return -ENOMEM;
	}
	uint32_t k = (uint32_t)h & (m->cap - 1);
	while (m->s[k].v >= 2)
		k = (k + 1) & (m->cap - 1);
	if (m->s[k].v == 1)
		m->tombs--;
	m->s[k].h = h;
	m->s[k].v = idx + 2;
	m->used++;
	return 0;
}

void sched_map_del(struct sched_map *m, uint64_t h, uint32_t idx)
{
	if (!m->cap)
		return;
	for (uint32_t k = (uint32_t)h & (m->cap - 1); m->s[k].v;
	     k = (k + 1) & (m->cap - 1)) {
		if (m->s[k].h == h && m->s[k].v == idx + 2) {
			m->s[k].v = 1;
			m->used--;
			m->tombs++;
			return;
		}
	}
}

typedef bool (*map_eq_fn)(const gv_sched_state *st, uint32_t idx, const void *key);

static uint32_t map_find(const struct sched_map *m, uint64_t h, map_eq_fn eq,
			 const gv_sched_state *st, const void *key)
{
	if (!m->cap)
		return GV_SCHED_NONE;
	for (uint32_t k = (uint32_t)h & (m->cap - 1); m->s[k].v;
	     k = (k + 1) & (m->cap - 1))
		if (m->s[k].v >= 2 && m->s[k].h == h && eq(st, m->s[k].v - 2, key))
			return m->s[k].v - 2;
	return GV_SCHED_NONE;
}

static bool host_eq(const gv_sched_state *st, uint32_t i, const void *key)
{
	return strcmp(st->hosts[i].name, key) == 0;
}

static bool job_eq(const gv_sched_state *st, uint32_t i, const void *key)
{
	return st->jobs[i].alive && st->jobs[i].pub.id == *(const uint64_t *)key;
}

static bool img_eq(const gv_sched_state *st, uint32_t i, const void *key)
{
	return strcmp(st->imgs[i], key) == 0;
}

static bool x_eq(const gv_sched_state *st, uint32_t i, const void *key)
{
	return st->xc[i].x == key;
}

/* ---- state ---- */

gv_sched_state *gv_sched_state_new(void)
{
	gv_sched_state *st = calloc(1, sizeof *st);

	if (!st)
		return NULL;
	st->empty = json_object();
	if (!st->empty) {
		free(st);
		return NULL;
	}
	st->epoch = 1;
	st->q_aging = NAN;
	return st;
}

void gv_sched_state_free(gv_sched_state *st)
{
	if (!st)
		return;
	for (uint32_t i = 0; i < st->n_hosts; i++) {
		free(st->hosts[i].name);
		json_decref(st->hosts[i].attrs);
		free(st->hosts[i].imgs);
		free(st->hosts[i].jobs);
	}
	for (uint32_t i = 0; i < st->cap_prof; i++) {
		free(st->prof[i].v);
		free(st->prof[i].ev);
	}
	for (uint32_t i = 0; i < st->n_imgs; i++)
		free(st->imgs[i]);
	for (uint32_t i = 0; i < st->n_xc; i++) {
		free(st->xc[i].bits);
		free(st->xc[i].vals);
	}
	free(st->hosts);
	free(st->host_map.s);
	free(st->jobs);
	free(st->free_slots);
	free(st->job_map.s);
	free(st->imgs);
	free(st->img_map.s);
	free(st->xc);
	free(st->xc_free);
	free(st->x_map.s);
	free(st->q);
	free(st->q2);
	free(st->pend);
	free(st->order);
	free(st->scr);
	free(st->prof);
	free(st->tmp);
	json_decref(st->empty);
	free(st);
}

/* ---- hosts ---- */

static void host_refree(struct sched_host *h)
{
	gv_sched_host *p = &h->pub;
	p->cpus_free = p->cpus > h->used_cpus ? p->cpus - h->used_cpus : 0;
	p->memory_free = p->memory > h->used_mem ? p->memory - h->used_mem : 0;
	p->disk_free = p->disk > h->used_disk ? p->disk - h->used_disk : 0;
}

static int host_spec_ok(const gv_sched_host *spec, gv_err *e)
{
	if (!(spec->load >= 0) || !(spec->speed >= 0) || !(spec->link_rate >= 0) ||
	    isinf(spec->load) || isinf(spec->speed) || isinf(spec->link_rate))
		return gv_err_set(
		    e, -EINVAL,
		    "host %s: load, speed and link rate must be finite and >= 0",
		    spec->name ? spec->name : "?");
	if (spec->attrs && !json_is_object(spec->attrs))
		return gv_err_set(e, -EINVAL, "host %s: attributes must be a JSON object",
				  spec->name ? spec->name : "?");
	if (spec->state > GV_HOST_DOWN)
		return gv_err_set(e, -EINVAL, "host %s: unknown state %d",
				  spec->name ? spec->name : "?", (int)spec->state);
	return 0;
}

static void host_take(gv_sched_state *st, struct sched_host *h, const gv_sched_host *spec)
{
	gv_sched_host *p = &h->pub;
	bool attrs_changed =
	    h->attrs != spec->attrs &&
	    !(h->attrs && spec->attrs && json_equal(h->attrs, spec->attrs));

	if (p->cpus != spec->cpus || p->memory != spec->memory || p->disk != spec->disk ||
	    attrs_changed)
		st->epoch++;
	if (h->attrs != spec->attrs) {
		json_decref(h->attrs);
		h->attrs = spec->attrs ? json_incref((json_t *)spec->attrs) : NULL;
	}
	p->state = spec->state;
	p->cpus = spec->cpus;
	p->memory = spec->memory;
	p->disk = spec->disk;
	p->load = spec->load;
	p->speed = spec->speed > 0 ? spec->speed : 1.0;
	p->link_rate = spec->link_rate;
	p->attrs = h->attrs ? h->attrs : st->empty;
	host_refree(h);
}

int gv_sched_host_add(gv_sched_state *st, const gv_sched_host *spec, uint32_t *idx,
		      gv_err *e)
{
	int r;

	if (!spec->name || !*spec->name)
		return gv_err_set(e, -EINVAL, "a host needs a name");
	if ((r = host_spec_ok(spec, e)) < 0)
		return r;
	uint64_t hh = sched_hash_str(spec->name);
	if (map_find(&st->host_map, hh, host_eq, st, spec->name) != GV_SCHED_NONE)
		return gv_err_set(e, -EEXIST, "host %s is already in the grid",
				  spec->name);
	if (sched_grow((void **)&st->hosts, &st->cap_hosts, st->n_hosts + 1,
		       sizeof *st->hosts) < 0)
		return gv_err_set(e, -ENOMEM, "out of memory");
	struct sched_host *h = &st->hosts[st->n_hosts];
	memset(h, 0, sizeof *h);
	h->name = strdup(spec->name);
	if (!h->name || sched_map_put(&st->host_map, hh, st->n_hosts) < 0) {
		free(h->name);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	h->pub.name = h->name;
	host_take(st, h, spec);
	st->epoch++;
	*idx = st->n_hosts++;
	return 0;
}

int gv_sched_host_update(gv_sched_state *st, uint32_t h, const gv_sched_host *spec,
			 gv_err *e)
{
	int r;

	if (h >= st->n_hosts)
		return gv_err_set(e, -EINVAL, "no host %u", h);
	if ((r = host_spec_ok(spec, e)) < 0)
		return r;
	host_take(st, &st->hosts[h], spec);
	return 0;
}

void gv_sched_host_set_state(gv_sched_state *st, uint32_t h, gv_sched_host_state s)
{
	if (h < st->n_hosts && s <= GV_HOST_DOWN)
		st->hosts[h].pub.state = s;
}

void gv_sched_host_set_load(gv_sched_state *st, uint32_t h, double load)
{
	if (h < st->n_hosts && load >= 0 && !isinf(load))
		st->hosts[h].pub.load = load;
}

uint32_t gv_sched_host_find(const gv_sched_state *st, const char *name)
{
	return map_find(&st->host_map, sched_hash_str(name), host_eq, st, name);
}

uint32_t gv_sched_host_count(const gv_sched_state *st)
{
	return st->n_hosts;
}

const gv_sched_host *gv_sched_host_get(const gv_sched_state *st, uint32_t h)
{
	return h < st->n_hosts ? &st->hosts[h].pub : NULL;
}

const json_t *sched_attrs(const gv_sched_state *st, uint32_t h)
{
	return st->hosts[h].pub.attrs;
}

/* ---- images ---- */

static uint32_t img_intern(gv_sched_state *st, const char *name)
{
	uint64_t hh = sched_hash_str(name);
	uint32_t i = map_find(&st->img_map, hh, img_eq, st, name);

	if (i != GV_SCHED_NONE)
		return i;
	if (sched_grow((void **)&st->imgs, &st->cap_imgs, st->n_imgs + 1,
		       sizeof *st->imgs) < 0)
		return GV_SCHED_NONE;
	char *copy = strdup(name);
	if (!copy || sched_map_put(&st->img_map, hh, st->n_imgs) < 0) {
		free(copy);
		return GV_SCHED_NONE;
	}
	st->imgs[st->n_imgs] = copy;
	return st->n_imgs++;
}

/* Position of @img in @h's table, or where it would go. */
static uint32_t have_pos(const struct sched_host *h, uint32_t img)
{
	uint32_t lo = 0, hi = h->n_imgs;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (h->imgs[mid].img < img)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int gv_sched_host_set_image(gv_sched_state *st, uint32_t h, const char *image,
			    uint64_t missing)
{
	if (h >= st->n_hosts || !image || !*image)
		return -EINVAL;
	uint32_t img = img_intern(st, image);
	if (img == GV_SCHED_NONE)
		return -ENOMEM;
	struct sched_host *H = &st->hosts[h];
	uint32_t k = have_pos(H, img);
	if (k < H->n_imgs && H->imgs[k].img == img) {
		H->imgs[k].missing = missing;
		return 0;
	}
	if (sched_grow((void **)&H->imgs, &H->cap_imgs, H->n_imgs + 1, sizeof *H->imgs) <
	    0)
		return -ENOMEM;
	memmove(&H->imgs[k + 1], &H->imgs[k], (H->n_imgs - k) * sizeof *H->imgs);
	H->imgs[k].img = img;
	H->imgs[k].missing = missing;
	H->n_imgs++;
	return 0;
}

void gv_sched_host_clear_images(gv_sched_state *st, uint32_t h)
{
	if (h < st->n_hosts)
		st->hosts[h].n_imgs = 0;
}

static uint64_t img_missing(const struct sched_host *H, uint32_t img, uint64_t size)
{
	uint32_t k = have_pos(H, img);
	if (k < H->n_imgs && H->imgs[k].img == img)
		return H->imgs[k].missing < size ? H->imgs[k].missing : size;
	return size;
}

uint64_t gv_sched_host_missing(const gv_sched_state *st, uint32_t h, uint32_t j)
{
	const struct sched_job *J = &st->jobs[j];
	const struct sched_host *H = &st->hosts[h];
	uint64_t m = 0;
	if (J->img != GV_SCHED_NONE)
		m = img_missing(H, J->img, J->pub.image_size);
	if (J->ckpt != GV_SCHED_NONE)
		m += img_missing(H, J->ckpt, J->ckpt_size);
	return m;
}

bool sched_host_holds(const gv_sched_state *st, uint32_t h, uint32_t img)
{
	const struct sched_host *H = &st->hosts[h];
	uint32_t k = have_pos(H, img);
	return k < H->n_imgs && H->imgs[k].img == img && H->imgs[k].missing == 0;
}

int gv_sched_job_set_checkpoint(gv_sched_state *st, uint32_t j, const char *name,
				uint64_t size)
{
	struct sched_job *J = &st->jobs[j];
	uint32_t id = GV_SCHED_NONE;

	if (name && (id = img_intern(st, name)) == GV_SCHED_NONE)
		return -ENOMEM;
	J->ckpt = id;
	J->ckpt_size = name ? size : 0;
	return 0;
}

/* ---- expression caches ---- */

static uint32_t xc_ref(gv_sched_state *st, const gv_expr *x)
{
	if (!x)
		return GV_SCHED_NONE;
	uint64_t hh = sched_hash_u64((uint64_t)(uintptr_t)x);
	uint32_t i = map_find(&st->x_map, hh, x_eq, st, x);
	if (i != GV_SCHED_NONE) {
		st->xc[i].refs++;
		return i;
	}
	bool reused = st->n_xc_free > 0;
	if (reused) {
		i = st->xc_free[--st->n_xc_free];
	} else {
		if (sched_grow((void **)&st->xc, &st->cap_xc, st->n_xc + 1,
			       sizeof *st->xc) < 0)
			return GV_SCHED_NONE - 1;
		i = st->n_xc++;
	}
	memset(&st->xc[i], 0, sizeof st->xc[i]);
	if (sched_map_put(&st->x_map, hh, i) < 0) {
		if (reused)
			st->n_xc_free++; /* still there */
		else
			st->n_xc--;
		return GV_SCHED_NONE - 1;
	}
	st->xc[i].x = x;
	st->xc[i].refs = 1;
	return i;
}

static void xc_unref(gv_sched_state *st, uint32_t i)
{
	if (i == GV_SCHED_NONE || --st->xc[i].refs)
		return;
	struct sched_xcache *c = &st->xc[i];
	sched_map_del(&st->x_map, sched_hash_u64((uint64_t)(uintptr_t)c->x), i);
	free(c->bits);
	free(c->vals);
	memset(c, 0, sizeof *c);
	/* a free entry always has room on the free list: it grew with n_xc */
	if (sched_grow((void **)&st->xc_free, &st->cap_xc_free, st->n_xc_free + 1,
		       sizeof *st->xc_free) == 0)
		st->xc_free[st->n_xc_free++] = i;
}

static bool xc_room(struct sched_xcache *c, uint32_t n_hosts)
{
	if (c->cap >= n_hosts && c->bits && c->vals)
		return true;
	uint32_t cap = n_hosts < 64 ? 64 : n_hosts;
	uint64_t *b = realloc(c->bits, ((cap + 63) / 64) * sizeof *b);
	if (b)
		c->bits = b;
	double *v = realloc(c->vals, cap * sizeof *v);
	if (v)
		c->vals = v;
	if (!b || !v)
		return false;
	c->cap = cap;
	return true;
}

bool sched_match(gv_sched_state *st, uint32_t xi, uint32_t h)
{
	if (xi == GV_SCHED_NONE)
		return true;
	struct sched_xcache *c = &st->xc[xi];
	if (c->ep_match != st->epoch) {
		if (!xc_room(c, st->n_hosts)) /* no memory for the cache: evaluate */
			return gv_expr_match(c->x, sched_attrs(st, h));
		memset(c->bits, 0, ((c->cap + 63) / 64) * sizeof *c->bits);
		for (uint32_t i = 0; i < st->n_hosts; i++)
			if (gv_expr_match(c->x, sched_attrs(st, i)))
				c->bits[i / 64] |= 1ull << (i % 64);
		c->ep_match = st->epoch;
	}
	return c->bits[h / 64] >> (h % 64) & 1;
}

double sched_rank(gv_sched_state *st, uint32_t xi, uint32_t h)
{
	if (xi == GV_SCHED_NONE)
		return 0;
	struct sched_xcache *c = &st->xc[xi];
	if (c->ep_rank != st->epoch) {
		if (!xc_room(c, st->n_hosts))
			return gv_expr_rank(c->x, sched_attrs(st, h));
		for (uint32_t i = 0; i < st->n_hosts; i++)
			c->vals[i] = gv_expr_rank(c->x, sched_attrs(st, i));
		c->ep_rank = st->epoch;
	}
	return c->vals[h];
}

/* ---- jobs ---- */

int gv_sched_job_add(gv_sched_state *st, const gv_sched_job *spec, uint32_t *idx,
		     gv_err *e)
{
	if (!isfinite(spec->submit) || !(spec->walltime >= 0) || isinf(spec->walltime) ||
	    !(spec->dirty_rate >= 0) || isinf(spec->dirty_rate))
		return gv_err_set(e, -EINVAL,
				  "job %llu: submit time, walltime and dirty rate must "
				  "be finite (and >= 0)",
				  (unsigned long long)spec->id);
	if (gv_sched_job_find(st, spec->id) != GV_SCHED_NONE)
		return gv_err_set(e, -EEXIST, "job %llu is already known",
				  (unsigned long long)spec->id);
	uint32_t j;
	if (st->n_free) {
		j = st->free_slots[st->n_free - 1];
	} else {
		if (sched_grow((void **)&st->jobs, &st->cap_jobs, st->n_jobs + 1,
			       sizeof *st->jobs) < 0)
			return gv_err_set(e, -ENOMEM, "out of memory");
		j = st->n_jobs;
		memset(&st->jobs[j], 0, sizeof st->jobs[j]);
	}
	struct sched_job *J = &st->jobs[j];
	uint32_t gen = J->gen;
	memset(J, 0, sizeof *J);
	J->gen = gen;
	J->pub = *spec;
	J->img = GV_SCHED_NONE;
	J->ckpt = GV_SCHED_NONE;
	J->ckpt_size = 0;
	J->xreq = J->xrank = GV_SCHED_NONE;
	if (spec->image && *spec->image) {
		J->img = img_intern(st, spec->image);
		if (J->img == GV_SCHED_NONE)
			return gv_err_set(e, -ENOMEM, "out of memory");
		J->pub.image = st->imgs[J->img];
	} else {
		J->pub.image = NULL;
	}
	J->xreq = xc_ref(st, spec->requires);
	J->xrank = xc_ref(st, spec->rank);
	if (J->xreq == GV_SCHED_NONE - 1 || J->xrank == GV_SCHED_NONE - 1) {
		if (J->xreq < GV_SCHED_NONE - 1)
			xc_unref(st, J->xreq);
		if (J->xrank < GV_SCHED_NONE - 1)
			xc_unref(st, J->xrank);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	J->pub.state = GV_JOB_QUEUED;
	J->pub.host = GV_SCHED_NONE;
	J->pub.start = 0;
	J->pub.moved = false;
	J->pub.last_move = 0;
	if (sched_map_put(&st->job_map, sched_hash_u64(spec->id), j) < 0 ||
	    sched_queue_push(st, j) < 0) {
		sched_map_del(&st->job_map, sched_hash_u64(spec->id), j);
		xc_unref(st, J->xreq);
		xc_unref(st, J->xrank);
		return gv_err_set(e, -ENOMEM, "out of memory");
	}
	J->alive = true;
	if (st->n_free)
		st->n_free--;
	else
		st->n_jobs++;
	*idx = j;
	return 0;
}

static void host_detach(gv_sched_state *st, uint32_t j)
{
	struct sched_job *J = &st->jobs[j];
	if (J->pub.state != GV_JOB_RUNNING || J->pub.host >= st->n_hosts)
		return;
	struct sched_host *H = &st->hosts[J->pub.host];
	H->used_cpus -= J->pub.cpus;
	H->used_mem -= J->pub.memory;
	H->used_disk -= J->pub.disk;
	uint32_t last = H->jobs[--H->pub.n_jobs];
	H->jobs[J->hpos] = last;
	st->jobs[last].hpos = J->hpos;
	host_refree(H);
	J->pub.host = GV_SCHED_NONE;
}

int gv_sched_job_bind(gv_sched_state *st, uint32_t j, uint32_t h, double start)
{
	if (!gv_sched_job_get(st, j) || h >= st->n_hosts || !isfinite(start))
		return -EINVAL;
	struct sched_host *H = &st->hosts[h];
	if (sched_grow((void **)&H->jobs, &H->cap_jobs, H->pub.n_jobs + 1,
		       sizeof *H->jobs) < 0)
		return -ENOMEM;
	struct sched_job *J = &st->jobs[j];
	host_detach(st, j);
	J->hpos = H->pub.n_jobs;
	H->jobs[H->pub.n_jobs++] = j;
	H->used_cpus += J->pub.cpus;
	H->used_mem += J->pub.memory;
	H->used_disk += J->pub.disk;
	host_refree(H);
	J->pub.state = GV_JOB_RUNNING;
	J->pub.host = h;
	J->pub.start = start;
	J->loc_waiting = false; /* queued again later, it waits anew */
	return 0;
}

void gv_sched_job_unbind(gv_sched_state *st, uint32_t j)
{
	if (!gv_sched_job_get(st, j) || st->jobs[j].pub.state != GV_JOB_RUNNING)
		return;
	host_detach(st, j);
	st->jobs[j].pub.state = GV_JOB_QUEUED;
	/* without memory for its queue entry the job is still queued in the
	 * model; the next cycle's compaction cannot find it, so retry there */
	if (sched_queue_push(st, j) < 0)
		st->q_resort = true;
}

void gv_sched_job_set_moved(gv_sched_state *st, uint32_t j, double when)
{
	if (gv_sched_job_get(st, j)) {
		st->jobs[j].pub.moved = when >= 0;
		st->jobs[j].pub.last_move = when >= 0 ? when : 0;
	}
}

void gv_sched_job_set_estimates(gv_sched_state *st, uint32_t j, double walltime,
				double dirty_rate, uint64_t disk_written)
{
	if (!gv_sched_job_get(st, j))
		return;
	gv_sched_job *p = &st->jobs[j].pub;
	if (walltime >= 0 && !isinf(walltime))
		p->walltime = walltime;
	if (dirty_rate >= 0 && !isinf(dirty_rate))
		p->dirty_rate = dirty_rate;
	p->disk_written = disk_written;
}

void gv_sched_job_set_priority(gv_sched_state *st, uint32_t j, int32_t priority)
{
	if (!gv_sched_job_get(st, j) || st->jobs[j].pub.priority == priority)
		return;
	st->jobs[j].pub.priority = priority;
	st->q_resort = true;
}

void gv_sched_job_remove(gv_sched_state *st, uint32_t j)
{
	if (!gv_sched_job_get(st, j))
		return;
	if (sched_grow((void **)&st->free_slots, &st->cap_free, st->n_free + 1,
		       sizeof *st->free_slots) < 0)
		return; /* kept: better than a slot lost for ever */
	struct sched_job *J = &st->jobs[j];
	host_detach(st, j);
	sched_map_del(&st->job_map, sched_hash_u64(J->pub.id), j);
	xc_unref(st, J->xreq);
	xc_unref(st, J->xrank);
	J->alive = false;
	J->queued_in = false;
	J->gen++;
	st->free_slots[st->n_free++] = j;
}

uint32_t gv_sched_job_find(const gv_sched_state *st, uint64_t id)
{
	return map_find(&st->job_map, sched_hash_u64(id), job_eq, st, &id);
}

uint32_t gv_sched_job_limit(const gv_sched_state *st)
{
	return st->n_jobs;
}

const gv_sched_job *gv_sched_job_get(const gv_sched_state *st, uint32_t j)
{
	return j < st->n_jobs && st->jobs[j].alive ? &st->jobs[j].pub : NULL;
}
