/* SPDX-License-Identifier: MIT */
/*
 * queue.c - the queued jobs in priority order with aging. The sort key
 * priority - aging * submit / 3600 orders waiting jobs the same at every
 * time, so the queue stays sorted: new entries are sorted and merged in at
 * the next cycle, entries of jobs gone or bound are dropped then.
 */
#include "sched_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double sched_qkey(const gv_sched_job *job, double aging)
{
	/* priority + aging * (now - submit) / 3600 orders the same for every
	 * now: the order of waiting jobs does not change with time */
	return job->priority - (isnan(aging) ? 0 : aging) / 3600.0 * job->submit;
}

int sched_queue_push(gv_sched_state *st, uint32_t j)
{
	struct sched_job *J = &st->jobs[j];

	if (J->queued_in)
		return 0;
	if (sched_grow((void **)&st->pend, &st->cap_pend, st->n_pend + 1,
		       sizeof *st->pend) < 0)
		return -ENOMEM;
	J->qkey = sched_qkey(&J->pub, st->q_aging);
	st->pend[st->n_pend++] =
	    (struct sched_qent){j, J->gen, J->qkey, J->pub.submit, J->pub.id};
	J->queued_in = true;
	return 0;
}

/* ---- the queue ---- */

static int qent_cmp(const void *a, const void *b)
{
	const struct sched_qent *x = a, *y = b;
	if (x->key != y->key)
		return x->key > y->key ? -1 : 1;
	if (x->submit != y->submit)
		return x->submit < y->submit ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool qent_live(const gv_sched_state *st, const struct sched_qent *q)
{
	const struct sched_job *J = &st->jobs[q->idx];
	return J->gen == q->gen && J->alive;
}

const uint32_t *sched_queue_order(gv_sched_state *st, const gv_sched_params *p,
				  uint32_t *n)
{
	*n = 0;
	if (st->q_aging != p->aging_per_hour) {
		st->q_aging = p->aging_per_hour;
		st->q_resort = true;
	}
	if (st->q_resort) {
		/* jobs queued again without a queue entry (out of memory then) */
		for (uint32_t j = 0; j < st->n_jobs; j++)
			if (st->jobs[j].alive && st->jobs[j].pub.state == GV_JOB_QUEUED &&
			    !st->jobs[j].queued_in && sched_queue_push(st, j) < 0)
				return NULL;
	}
	/* (one more than needed: an empty queue is an empty array, not NULL,
	 * which the callers take for out-of-memory) */
	if (sched_grow((void **)&st->q, &st->cap_q, st->n_q + st->n_pend + 1, sizeof *st->q) <
		0 ||
	    sched_grow((void **)&st->q2, &st->cap_q2, st->n_q + st->n_pend + 1,
		       sizeof *st->q2) < 0)
		return NULL;
	if (sched_grow((void **)&st->order, &st->cap_order, st->n_q + st->n_pend + 1,
		       sizeof *st->order) < 0)
		return NULL;
	for (uint32_t i = 0; i < st->n_pend; i++)
		st->pend[i].key = sched_qkey(&st->jobs[st->pend[i].idx].pub, st->q_aging);
	if (st->q_resort) {
		if (st->n_pend) /* (pend may be NULL: memcpy must not see it) */
			memcpy(&st->q[st->n_q], st->pend, st->n_pend * sizeof *st->pend);
		st->n_q += st->n_pend;
		for (uint32_t i = 0; i < st->n_q; i++)
			if (qent_live(st, &st->q[i]))
				st->q[i].key =
				    sched_qkey(&st->jobs[st->q[i].idx].pub, st->q_aging);
		qsort(st->q, st->n_q, sizeof *st->q, qent_cmp);
		st->q_resort = false;
	} else if (st->n_pend) {
		qsort(st->pend, st->n_pend, sizeof *st->pend, qent_cmp);
		uint32_t a = 0, b = 0, o = 0;
		while (a < st->n_q || b < st->n_pend) {
			if (b == st->n_pend ||
			    (a < st->n_q && qent_cmp(&st->q[a], &st->pend[b]) <= 0))
				st->q2[o++] = st->q[a++];
			else
				st->q2[o++] = st->pend[b++];
		}
		struct sched_qent *t = st->q;
		uint32_t tc = st->cap_q;
		st->q = st->q2;
		st->cap_q = st->cap_q2;
		st->q2 = t;
		st->cap_q2 = tc;
		st->n_q = o;
	}
	st->n_pend = 0;
	/* drop entries of jobs gone or no longer queued */
	uint32_t o = 0;
	for (uint32_t i = 0; i < st->n_q; i++) {
		struct sched_qent *q = &st->q[i];
		if (!qent_live(st, q))
			continue;
		struct sched_job *J = &st->jobs[q->idx];
		if (J->pub.state != GV_JOB_QUEUED) {
			J->queued_in = false;
			continue;
		}
		st->q[o] = *q;
		st->order[o++] = q->idx;
	}
	st->n_q = o;
	*n = o;
	return st->order;
}

double gv_sched_priority(const gv_sched_job *job, double now, const gv_sched_params *p)
{
	double waited = now > job->submit ? now - job->submit : 0;
	return job->priority + p->aging_per_hour * waited / 3600.0;
}
