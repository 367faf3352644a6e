/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - Prometheus metrics: an HTTP server on a TCP address that
 * answers GET /metrics with the text exposition format (version 0.0.4),
 * built on each request by the caller's callback, and the writers that
 * callback uses.
 *
 * The writers keep the format's rules so callers need not: a family's
 * HELP and TYPE lines come once, before its first sample, and all its
 * samples stay together (in the order written) wherever the callback
 * wrote them; label values and HELP texts are escaped; names that are not
 * valid metric or label names are dropped (a bug, said on stderr once per
 * request). Names follow the conventions: the "gridvm_" prefix, base
 * units (_seconds, _bytes), counters end in "_total". docs/grid.md lists
 * the metrics of the agent and the controller.
 */
#ifndef GRIDVM_API_METRICS_H
#define GRIDVM_API_METRICS_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>

#include <stddef.h>
#include <stdint.h>

typedef struct gv_metrics_buf gv_metrics_buf;
typedef struct gv_metrics_server gv_metrics_server;

/* Writes the current values into @b (called on the server's thread, once
 * per request; it takes whatever locks its data needs). */
typedef void (*gv_metrics_fn)(void *ud, gv_metrics_buf *b);

/* Serve GET /metrics on @addr, "HOST:PORT", "[V6]:PORT" or ":PORT" (every
 * address; port 0 picks a free one), with @fn(@ud) writing the values;
 * any other path is 404, any other method 405. @ud stays the caller's
 * and must outlive the server.
 * @return 0, or a negative errno with @e saying why. */
int gv_metrics_start(const char *addr, gv_metrics_fn fn, void *ud, gv_metrics_server **out,
		     gv_err *e) GV_WUR;
/* Stop serving (waits for a request in progress); NULL is fine. */
void gv_metrics_stop(gv_metrics_server *s);
/* The TCP port it listens on (useful after asking for port 0). */
int gv_metrics_port(const gv_metrics_server *s);

/* ---- writing the exposition ---- */

/* An empty exposition (for tests and for other servers). */
gv_metrics_buf *gv_metrics_buf_new(void);
void gv_metrics_buf_free(gv_metrics_buf *b);
/* The text so far, families in the order first written (owned by @b,
 * valid until the next write or free). */
const char *gv_metrics_buf_text(gv_metrics_buf *b);

/* One sample of a gauge or a counter (@name must end in "_total"). The
 * variable arguments are label name and value pairs (const char *),
 * ended by NULL; a NULL value drops its label. @help is used by the
 * family's first sample. */
void gv_metrics_gauge(gv_metrics_buf *b, const char *name, const char *help, double value, ...)
	__attribute__((sentinel));
void gv_metrics_counter(gv_metrics_buf *b, const char *name, const char *help, double value, ...)
	__attribute__((sentinel));

/* A histogram kept by the caller (under the caller's lock): fixed
 * upper bounds, counts per bucket, the sum and the count. */
#define GV_METRICS_HIST_MAX 16
typedef struct gv_metrics_hist {
	size_t n;				  /* bounds in use */
	double bounds[GV_METRICS_HIST_MAX];	  /* ascending upper bounds (le) */
	uint64_t counts[GV_METRICS_HIST_MAX + 1]; /* per bucket; the last is +Inf */
	uint64_t count;
	double sum;
} gv_metrics_hist;

/* @n bounds (at most GV_METRICS_HIST_MAX, ascending) and no observation. */
void gv_metrics_hist_init(gv_metrics_hist *h, const double *bounds, size_t n);
void gv_metrics_hist_observe(gv_metrics_hist *h, double value);
/* NAME_bucket{le=...} (cumulative, ending with le="+Inf"), NAME_sum and
 * NAME_count, with the labels given as for gv_metrics_gauge. */
void gv_metrics_histogram(gv_metrics_buf *b, const char *name, const char *help,
			  const gv_metrics_hist *h, ...) __attribute__((sentinel));

#endif
