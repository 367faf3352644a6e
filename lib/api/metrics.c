/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - Prometheus metrics (metrics.h): the text exposition format
 * written family by family, and a small libmicrohttpd server for
 * GET /metrics on a TCP address.
 */
#include <gridvm/api/metrics.h>

#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sbuf *s, const char *text, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		s->cap = s->cap ? s->cap : 256;
		while (s->len + n + 1 > s->cap)
			s->cap *= 2;
		s->p = realloc(s->p, s->cap);
		if (!s->p)
			abort();
	}
	memcpy(s->p + s->len, text, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void sb_str(struct sbuf *s, const char *text)
{
	sb_add(s, text, strlen(text));
}

/* @text with backslash and newline escaped (HELP), and also the double
 * quote (@quote: a label value). */
static void sb_escaped(struct sbuf *s, const char *text, bool quote)
{
	for (const char *c = text; *c; c++) {
		if (*c == '\\')
			sb_str(s, "\\\\");
		else if (*c == '\n')
			sb_str(s, "\\n");
		else if (*c == '"' && quote)
			sb_str(s, "\\\"");
		else
			sb_add(s, c, 1);
	}
}

struct family {
	char *name;
	const char *type; /* "gauge", "counter", "histogram" */
	struct sbuf text; /* HELP, TYPE and the samples */
};

struct gv_metrics_buf {
	struct family *f;
	size_t n, cap;
	struct sbuf out;
	bool warned;
};

gv_metrics_buf *gv_metrics_buf_new(void)
{
	gv_metrics_buf *b = calloc(1, sizeof(*b));

	if (!b)
		abort();
	return b;
}

void gv_metrics_buf_free(gv_metrics_buf *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->f[i].name);
		free(b->f[i].text.p);
	}
	free(b->f);
	free(b->out.p);
	free(b);
}

const char *gv_metrics_buf_text(gv_metrics_buf *b)
{
	b->out.len = 0;
	sb_add(&b->out, "", 0);
	for (size_t i = 0; i < b->n; i++)
		sb_add(&b->out, b->f[i].text.p, b->f[i].text.len);
	return b->out.p;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]*, without ':' for a label name (nor a leading
 * "__", reserved). */
static bool name_valid(const char *s, bool label)
{
	if (!s || !*s || (label && !strncmp(s, "__", 2)))
		return false;
	for (const char *c = s; *c; c++) {
		bool alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
			     (*c == ':' && !label);
		if (!alpha && !(c > s && *c >= '0' && *c <= '9'))
			return false;
	}
	return true;
}

static void warn(gv_metrics_buf *b, const char *what, const char *name)
{
	if (!b->warned)
		fprintf(stderr, "gridvm: metrics: %s '%s' left out\n", what, name ? name : "(null)");
	b->warned = true;
}

/* The family @name of @type, made (with its HELP and TYPE) if new; NULL
 * if the name is bad or the family has another type. */
static struct family *family(gv_metrics_buf *b, const char *name, const char *type,
			     const char *help)
{
	struct family *f;

	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->f[i].name, name)) {
			if (strcmp(b->f[i].type, type)) {
				warn(b, "a sample of another type in family", name);
				return NULL;
			}
			return &b->f[i];
		}
	if (!name_valid(name, false)) {
		warn(b, "the invalid metric name", name);
		return NULL;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 32;
		b->f = realloc(b->f, b->cap * sizeof(*b->f));
		if (!b->f)
			abort();
	}
	f = &b->f[b->n++];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	if (!f->name)
		abort();
	f->type = type;
	sb_str(&f->text, "# HELP ");
	sb_str(&f->text, name);
	sb_str(&f->text, " ");
	sb_escaped(&f->text, help ? help : "", false);
	sb_str(&f->text, "\n# TYPE ");
	sb_str(&f->text, name);
	sb_str(&f->text, " ");
	sb_str(&f->text, type);
	sb_str(&f->text, "\n");
	return f;
}

static void fmt_value(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (fabs(v) < 1e15 && v == (double)(int64_t)v)
		snprintf(buf, len, "%lld", (long long)v);
	else /* the shortest text that reads back as @v */
		for (int prec = 15; prec <= 17; prec++)
			if (snprintf(buf, len, "%.*g", prec, v) > 0 && strtod(buf, NULL) == v)
				break;
}

/* Up to this many labels on one sample (one more for "le"). */
#define MAX_LABELS 8

struct labels {
	const char *k[MAX_LABELS + 1], *v[MAX_LABELS + 1];
	size_t n;
};

/* The NULL-ended name/value pairs of @ap; false if one is bad. */
static bool labels_read(gv_metrics_buf *b, struct labels *l, va_list ap)
{
	const char *k, *v;

	l->n = 0;
	while ((k = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		if (!name_valid(k, true) || l->n == MAX_LABELS) {
			warn(b, "a sample with the label", k);
			return false;
		}
		if (!v)
			continue;
		l->k[l->n] = k;
		l->v[l->n++] = v;
	}
	return true;
}

/* NAME{labels[,le="..."]} VALUE */
static void sample(struct family *f, const char *name, const struct labels *l, const char *le,
		   double value)
{
	char num[64];

	sb_str(&f->text, name);
	if (l->n || le) {
		sb_str(&f->text, "{");
		for (size_t i = 0; i < l->n; i++) {
			sb_str(&f->text, i ? "," : "");
			sb_str(&f->text, l->k[i]);
			sb_str(&f->text, "=\"");
			sb_escaped(&f->text, l->v[i], true);
			sb_str(&f->text, "\"");
		}
		if (le) {
			sb_str(&f->text, l->n ? ",le=\"" : "le=\"");
			sb_str(&f->text, le);
			sb_str(&f->text, "\"");
		}
		sb_str(&f->text, "}");
	}
	fmt_value(num, sizeof(num), value);
	sb_str(&f->text, " ");
	sb_str(&f->text, num);
	sb_str(&f->text, "\n");
}

static void simple(gv_metrics_buf *b, const char *name, const char *type, const char *help,
		   double value, va_list ap)
{
	struct labels l;
	struct family *f;
	size_t len = name ? strlen(name) : 0;

	if (!strcmp(type, "counter") && (len < 6 || strcmp(name + len - 6, "_total"))) {
		warn(b, "the counter without _total", name);
		return;
	}
	if (!labels_read(b, &l, ap) || !(f = family(b, name, type, help)))
		return;
	sample(f, name, &l, NULL, value);
}

void gv_metrics_gauge(gv_metrics_buf *b, const char *name, const char *help, double value, ...)
{
	va_list ap;

	va_start(ap, value);
	simple(b, name, "gauge", help, value, ap);
	va_end(ap);
}

void gv_metrics_counter(gv_metrics_buf *b, const char *name, const char *help, double value, ...)
{
	va_list ap;

	va_start(ap, value);
	simple(b, name, "counter", help, value, ap);
	va_end(ap);
}

void gv_metrics_hist_init(gv_metrics_hist *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	h->n = n < GV_METRICS_HIST_MAX ? n : GV_METRICS_HIST_MAX;
	memcpy(h->bounds, bounds, h->n * sizeof(*bounds));
}

void gv_metrics_hist_observe(gv_metrics_hist *h, double value)
{
	size_t i = 0;

	while (i < h->n && value > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += value;
}

void gv_metrics_histogram(gv_metrics_buf *b, const char *name, const char *help,
			  const gv_metrics_hist *h, ...)
{
	char *bucket = gv_strdupf("%s_bucket", name ? name : ""), le[64];
	char *sum = gv_strdupf("%s_sum", name ? name : "");
	char *count = gv_strdupf("%s_count", name ? name : "");
	struct family *f = NULL;
	struct labels l;
	uint64_t cum = 0;
	va_list ap;
	bool ok;

	va_start(ap, h);
	ok = labels_read(b, &l, ap);
	va_end(ap);
	if (ok && name)
		f = family(b, name, "histogram", help);
	for (size_t i = 0; f && i <= h->n; i++) {
		cum += h->counts[i];
		if (i < h->n)
			fmt_value(le, sizeof(le), h->bounds[i]);
		sample(f, bucket, &l, i < h->n ? le : "+Inf", (double)cum);
	}
	if (f) {
		sample(f, sum, &l, NULL, h->sum);
		sample(f, count, &l, NULL, (double)h->count);
	}
	free(bucket);
	free(sum);
	free(count);
}

/* ---- the server ---- */

struct gv_metrics_server {
	struct MHD_Daemon *mhd;
	int port;
	gv_metrics_fn fn;
	void *ud;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     char *text)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", type);
	if (status == 405)
		MHD_add_response_header(r, "Allow", "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	static int started;
	gv_metrics_server *s = cls;
	gv_metrics_buf *b;
	char *text;

	if (*con_cls != &started) { /* the headers: wait for the body, if any */
		*con_cls = &started;
		return MHD_YES;
	}
	if (*upload_size) { /* ignored */
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics"))
		return reply(c, 404, "text/plain", strdup("not found: the metrics are at /metrics\n"));
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, 405, "text/plain", strdup("only GET\n"));
	b = gv_metrics_buf_new();
	s->fn(s->ud, b);
	text = strdup(gv_metrics_buf_text(b));
	gv_metrics_buf_free(b);
	if (!text)
		abort();
	return reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}

/* A listening TCP socket on @addr (metrics.h says the forms). */
static int listen_tcp(const char *addr, int *port, gv_err *e)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	char host[256] = "", *end;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	long p = colon ? strtol(colon + 1, &end, 10) : -1;
	int fd, one = 1, r;

	if (!colon || !colon[1] || *end || p < 0 || p > 65535 || colon - addr >= (long)sizeof(host))
		return gv_err_set(e, -EINVAL, "bad metrics address '%s': give HOST:PORT, "
				  "[IPV6]:PORT or :PORT", addr ? addr : "");
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	} else if (strchr(host, ':') || strchr(host, '[')) {
		return gv_err_set(e, -EINVAL, "bad metrics address '%s': an IPv6 address goes "
				  "in brackets: [IPV6]:PORT", addr);
	}
	r = getaddrinfo(*host ? host : NULL, colon + 1, &hints, &ai);
	if (r != 0)
		return gv_err_set(e, -EINVAL, "bad metrics address '%s': %s", addr, gai_strerror(r));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		r = gv_err_set(e, -errno, "cannot serve metrics on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = r;
	} else {
		*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	}
	freeaddrinfo(ai);
	return fd;
}

int gv_metrics_start(const char *addr, gv_metrics_fn fn, void *ud, gv_metrics_server **out,
		     gv_err *e)
{
	gv_metrics_server *s = calloc(1, sizeof(*s));
	int fd;

	if (!s)
		abort();
	fd = listen_tcp(addr, &s->port, e);
	if (fd < 0) {
		free(s);
		return fd;
	}
	s->fn = fn;
	s->ud = ud;
	/* one thread: requests are served one at a time, so @fn never runs
	 * twice at once */
	s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
				  handler, s, MHD_OPTION_LISTEN_SOCKET, fd,
				  MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (!s->mhd) {
		close(fd);
		free(s);
		return gv_err_set(e, -EIO, "cannot start the metrics server on %s", addr);
	}
	*out = s;
	return 0;
}

void gv_metrics_stop(gv_metrics_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->mhd); /* closes the listening socket */
	free(s);
}

int gv_metrics_port(const gv_metrics_server *s)
{
	return s->port;
}
