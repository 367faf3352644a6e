/* SPDX-License-Identifier: MIT */
/*
 * kv_etcd_http.c - the etcd backend's transport: JSON requests to etcd's
 * gRPC gateway (POST /v3/...) with libcurl, one answer or a stream of
 * them, failing over among the endpoints of an etcd:// URL, and the few
 * helpers etcd's JSON needs (kv_etcd_internal.h).
 *
 * Easy handles are pooled per connection so that requests reuse their
 * TCP connections; a stream gets a handle of its own under a multi handle
 * (its deadline is ours to check, to the millisecond). The endpoint that
 * answered last is tried first; a request that surely did not reach etcd
 * (no connection) is tried on the next one, and a read on any failure.
 */
#include "kv_etcd_internal.h"

#include <gridvm/base/b64.h>
#include <gridvm/base/util.h>
#include <gridvm/xfer/tls.h>

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL 8
#define CONNECT_MS 2000L
#define REQUEST_MS 10000L
/* how long a request keeps trying while no endpoint answers (etcd
 * restarting, a leader being elected), with a pause between rounds */
#define RETRY_MS 5000
#define RETRY_PAUSE_MS 200

struct etcd_conn {
	char **base; /* "http://HOST:PORT" per endpoint */
	size_t n;
	char *ca, *cert, *key, *crl; /* etcds://: TLS files; NULL: plain http */
	pthread_mutex_t mu; /* cur, idle */
	size_t cur;	    /* the endpoint that answered last */
	CURL *idle[POOL];
	size_t nidle;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* One "HOST:PORT" (HOST may be "[v6]"): 0 with the base URL, or -EINVAL. */
static int endpoint_parse(const char *s, size_t len, bool tls, char **base)
{
	const char *colon = NULL;
	char *end;
	long port;

	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon || colon == s || (s[0] == '[' && colon[-1] != ']'))
		return -EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (end != s + len || end == colon + 1 || port <= 0 || port > 65535)
		return -EINVAL;
	for (const char *p = s; p < colon; p++)
		if (*p == '/' || *p == '@' || *p == ' ')
			return -EINVAL;
	*base = gv_strdupf("%s://%.*s", tls ? "https" : "http", (int)len, s);
	return 0;
}

/* etcds://: this host's certificate material (gv_tls_default: the
 * controller's, as for the hosts' channel). */
static int tls_files(etcd_conn *c, gv_err *e)
{
	const char *dir = gv_tls_dir(gv_tls_default());
	gv_err te = { "" };

	if (!gv_tls_enabled(gv_tls_default(), &te))
		return gv_err_set(e, -ENOENT, "etcds:// needs this controller's certificate in %s "
				  "(gridvm ca issue NAME --role controller): %s", dir,
				  te.msg[0] ? te.msg : "none there");
	c->ca = gv_strdupf("%s/ca.crt", dir);
	c->cert = gv_strdupf("%s/host.crt", dir);
	c->key = gv_strdupf("%s/host.key", dir);
	c->crl = gv_strdupf("%s/crl.pem", dir);
	if (access(c->crl, R_OK) < 0) {
		free(c->crl);
		c->crl = NULL;
	}
	return 0;
}

int etcd_conn_new(const char *where, bool tls, etcd_conn **out, gv_err *e)
{
	etcd_conn *c = calloc(1, sizeof(*c));
	const char *p = where;
	int r;

	*out = NULL;
	if (!c)
		return gv_err_set(e, -ENOMEM, "out of memory");
	pthread_once(&curl_once, curl_init);
	pthread_mutex_init(&c->mu, NULL);
	if (tls && (r = tls_files(c, e)) < 0) {
		etcd_conn_free(c);
		return r;
	}
	while (*p) {
		size_t len = strcspn(p, ",");
		char **nb = realloc(c->base, (c->n + 1) * sizeof(*nb));

		if (!nb)
			abort();
		c->base = nb;
		if (endpoint_parse(p, len, tls, &c->base[c->n]) < 0) {
			gv_err_set(e, -EINVAL, "etcd endpoint '%.*s': expected HOST:PORT", (int)len,
				   p);
			etcd_conn_free(c);
			return -EINVAL;
		}
		c->n++;
		p += len;
		if (*p == ',')
			p++;
	}
	if (c->n == 0) {
		etcd_conn_free(c);
		return gv_err_set(e, -EINVAL, "no etcd endpoint (expected HOST:PORT[,HOST:PORT...])");
	}
	*out = c;
	return 0;
}

void etcd_conn_free(etcd_conn *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nidle; i++)
		curl_easy_cleanup(c->idle[i]);
	for (size_t i = 0; i < c->n; i++)
		free(c->base[i]);
	free(c->base);
	free(c->ca);
	free(c->cert);
	free(c->key);
	free(c->crl);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static CURL *handle_take(etcd_conn *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->mu);
	if (c->nidle)
		h = c->idle[--c->nidle];
	pthread_mutex_unlock(&c->mu);
	if (!h && !(h = curl_easy_init()))
		abort();
	curl_easy_reset(h); /* keeps its connection */
	return h;
}

static void handle_give(etcd_conn *c, CURL *h)
{
	pthread_mutex_lock(&c->mu);
	if (c->nidle < POOL) {
		c->idle[c->nidle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (h)
		curl_easy_cleanup(h);
}

static size_t first_endpoint(etcd_conn *c)
{
	size_t i;

	pthread_mutex_lock(&c->mu);
	i = c->cur;
	pthread_mutex_unlock(&c->mu);
	return i;
}

static void answered(etcd_conn *c, size_t i)
{
	pthread_mutex_lock(&c->mu);
	c->cur = i;
	pthread_mutex_unlock(&c->mu);
}

/* etcd's error answer {"error": MSG, "code": GRPC_CODE} (a stream's:
 * {"error": {"grpc_code": N, "message": MSG}}) as a negative errno. */
static int etcd_error(const json_t *err, const json_t *code, gv_err *e)
{
	const char *msg = json_string_value(err);
	int64_t g = json_integer_value(code);
	int r = -EIO;

	if (json_is_object(err)) {
		msg = json_string_value(json_object_get(err, "message"));
		g = json_integer_value(json_object_get(err, "grpc_code"));
	}
	if (!msg)
		msg = "(no message)";
	switch (g) {
	case 3: /* InvalidArgument */
		r = -EINVAL;
		break;
	case 4: /* DeadlineExceeded */
		r = -ETIMEDOUT;
		break;
	case 5: /* NotFound */
		r = -ENOENT;
		break;
	case 11: /* OutOfRange: compacted, or a future revision */
		r = strstr(msg, "future") ? -EINVAL : -ERANGE;
		break;
	case 14: /* Unavailable: no leader, stopping */
		r = -EAGAIN;
		break;
	}
	return gv_err_set(e, r, "etcd: %s", msg);
}

struct buf {
	char *p;
	size_t len;
};

static size_t buf_add(char *ptr, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;
	char *np = realloc(b->p, b->len + size * n + 1);

	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->len, ptr, size * n);
	b->len += size * n;
	b->p[b->len] = '\0';
	return size * n;
}

static void request_setup(etcd_conn *c, CURL *h, const char *url, const char *body,
			  struct curl_slist *hdr)
{
	if (c->ca) { /* mutual TLS 1.3, etcd's certificate from the grid CA */
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
		curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		if (c->crl)
			curl_easy_setopt(h, CURLOPT_CRLFILE, c->crl);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_MS);
}

/* the request surely did not reach etcd */
static bool not_sent(CURLcode rc)
{
	return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* One request to endpoint @i: 0 and *resp, an etcd error (*answered
 * set), or a transport failure (*rc). */
static int call_one(etcd_conn *c, size_t i, const char *path, const char *body,
		    struct curl_slist *hdr, json_t **resp, CURLcode *rc, bool *got_answer,
		    gv_err *e)
{
	char *url = gv_strdupf("%s/v3/%s", c->base[i], path);
	CURL *h = handle_take(c);
	struct buf b = { NULL, 0 };
	long status = 0;
	json_t *j = NULL, *err;
	int r;

	*got_answer = false;
	request_setup(c, h, url, body, hdr);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_MS);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_add);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	*rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	handle_give(c, h);
	if (*rc != CURLE_OK) {
		r = gv_err_set(e, -EIO, "etcd at %s: %s", c->base[i], curl_easy_strerror(*rc));
		goto out;
	}
	*got_answer = true;
	j = b.p ? json_loads(b.p, 0, NULL) : NULL;
	if (!json_is_object(j)) {
		r = gv_err_set(e, -EIO, "etcd at %s: /v3/%s answered HTTP %ld, not JSON: %.100s",
			       c->base[i], path, status, b.p ? b.p : "");
		goto out;
	}
	err = json_object_get(j, "error");
	if (err) {
		r = etcd_error(err, json_object_get(j, "code"), e);
		goto out;
	}
	if (status != 200) {
		r = gv_err_set(e, -EIO, "etcd at %s: /v3/%s answered HTTP %ld", c->base[i], path,
			       status);
		goto out;
	}
	*resp = j;
	j = NULL;
	r = 0;
out:
	json_decref(j);
	free(b.p);
	free(url);
	return r;
}

int etcd_call(etcd_conn *c, const char *path, json_t *req, etcd_retry retry, json_t **resp,
	      gv_err *e)
{
	char *body = json_dumps(req, JSON_COMPACT);
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	uint64_t until = gv_now_ms() + RETRY_MS;
	size_t first = first_endpoint(c);
	int r = -EIO;

	*resp = NULL;
	if (!body || !hdr)
		abort();
	for (;;) {
		bool again = false;

		for (size_t k = 0; k < c->n; k++) {
			size_t i = (first + k) % c->n;
			bool got;
			CURLcode rc;

			r = call_one(c, i, path, body, hdr, resp, &rc, &got, e);
			if (got)
				answered(c, i);
			/* etcd answered (possibly with an error of its own,
			 * which another member would repeat), except when it
			 * is unavailable: a read asks another member, and so
			 * does a change that it refused for want of a leader
			 * (not proposed: it surely did not apply) */
			if (got && !(r == -EAGAIN && (retry == ETCD_IDEMPOTENT ||
						      (e && strstr(e->msg, "no leader")))))
				goto done;
			if (!got && !not_sent(rc) && retry == ETCD_ONCE)
				goto done; /* it may have been applied */
			again = true;
		}
		if (!again || gv_now_ms() >= until)
			break;
		pause_ms(RETRY_PAUSE_MS);
	}
	if (r == -EIO && c->n > 1)
		gv_err_wrap(e, r, "no etcd endpoint answers");
done:
	curl_slist_free_all(hdr);
	free(body);
	return r;
}

/* --- streams --- */

struct stream {
	etcd_stream_fn fn;
	void *ud;
	struct buf b;
	unsigned *got;
	int stop; /* 0 running; 1 done; < 0 an error (in e) */
	gv_err *e;
};

/* Each line of the stream is one JSON object: {"result": ...} or
 * {"error": ...}. */
static int stream_line(struct stream *s, const char *line, size_t len)
{
	json_t *j = json_loadb(line, len, 0, NULL), *res, *err;
	int r;

	if (!json_is_object(j)) {
		json_decref(j);
		return gv_err_set(s->e, -EIO, "etcd: a stream sent something not JSON: %.100s",
				  line);
	}
	err = json_object_get(j, "error");
	res = json_object_get(j, "result");
	if (err)
		r = etcd_error(err, json_object_get(j, "code"), s->e);
	else if (!res)
		r = gv_err_set(s->e, -EIO, "etcd: a stream's message has no result");
	else {
		(*s->got)++;
		r = s->fn(s->ud, res);
	}
	json_decref(j);
	return r;
}

static size_t stream_data(char *ptr, size_t size, size_t n, void *ud)
{
	struct stream *s = ud;
	char *nl;

	if (s->stop || buf_add(ptr, size, n, &s->b) != size * n)
		return 0;
	while (!s->stop && (nl = memchr(s->b.p, '\n', s->b.len))) {
		size_t len = (size_t)(nl - s->b.p);
		int r = len ? stream_line(s, s->b.p, len) : 0;

		s->b.len -= len + 1;
		memmove(s->b.p, nl + 1, s->b.len + 1);
		if (r != 0)
			s->stop = r;
	}
	return s->stop ? 0 : size * n;
}

/* One stream from endpoint @i until @fn stops it, the deadline, or a
 * transport failure (-EIO, *rc set). */
static int stream_one(etcd_conn *c, size_t i, const char *path, const char *body,
		      struct curl_slist *hdr, struct stream *s, int64_t *deadline,
		      CURLcode *rc)
{
	char *url = gv_strdupf("%s/v3/%s", c->base[i], path);
	CURL *h = curl_easy_init();
	CURLM *m = curl_multi_init();
	int running = 1, r;

	if (!h || !m)
		abort();
	*rc = CURLE_OK;
	request_setup(c, h, url, body, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_multi_add_handle(m, h);
	for (;;) {
		int64_t left;
		CURLMsg *msg;
		int q;

		curl_multi_perform(m, &running);
		if (s->stop)
			break;
		while ((msg = curl_multi_info_read(m, &q)))
			if (msg->msg == CURLMSG_DONE)
				*rc = msg->data.result;
		if (!running) {
			if (*rc == CURLE_OK)
				*rc = CURLE_GOT_NOTHING; /* etcd ended the stream */
			break;
		}
		left = *deadline - (int64_t)gv_now_ms();
		if (left <= 0)
			break;
		curl_multi_poll(m, NULL, 0, left > 1000 ? 1000 : (int)left, NULL);
	}
	if (s->stop)
		r = s->stop < 0 ? s->stop : 0;
	else if (*rc != CURLE_OK)
		r = gv_err_set(s->e, -EIO, "etcd at %s: the stream broke: %s", c->base[i],
			       curl_easy_strerror(*rc));
	else
		r = gv_err_set(s->e, -ETIMEDOUT, "etcd at %s: no answer in time", c->base[i]);
	curl_multi_remove_handle(m, h);
	curl_easy_cleanup(h);
	curl_multi_cleanup(m);
	free(url);
	s->b.len = 0;
	return r;
}

int etcd_stream(etcd_conn *c, const char *path, json_t *req, etcd_stream_fn fn, void *ud,
		int64_t *deadline_ms, unsigned *got, gv_err *e)
{
	char *body = json_dumps(req, JSON_COMPACT);
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	struct stream s = { fn, ud, { NULL, 0 }, got, 0, e };
	size_t first = first_endpoint(c);
	int r = -EIO;

	*got = 0;
	if (!body || !hdr)
		abort();
	for (unsigned k = 0;; k++) {
		size_t i = (first + k) % c->n;
		CURLcode rc;

		r = stream_one(c, i, path, body, hdr, &s, deadline_ms, &rc);
		if (*got)
			answered(c, i);
		if (r != -EIO || *got)
			break;
		/* nothing came from this endpoint: the next one, pausing
		 * after each round, while the deadline allows */
		if ((k + 1) % c->n == 0) {
			int64_t left = *deadline_ms - (int64_t)gv_now_ms();
			if (left <= 0)
				break;
			pause_ms(left < RETRY_PAUSE_MS ? (int)left : RETRY_PAUSE_MS);
		}
	}
	curl_slist_free_all(hdr);
	free(s.b.p);
	free(body);
	return r;
}

/* --- JSON helpers --- */

int64_t etcd_i64(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

json_t *etcd_i64_json(int64_t v)
{
	char s[32];

	snprintf(s, sizeof(s), "%lld", (long long)v);
	return json_string(s);
}

json_t *etcd_b64_json(const char *s, size_t len)
{
	char *t = gv_b64_encode(s, len);
	json_t *j;

	if (!t)
		abort();
	j = json_string(t);
	free(t);
	return j;
}

char *etcd_b64_str(const json_t *obj, const char *name, size_t *len)
{
	const char *t = json_string_value(json_object_get(obj, name));
	uint8_t *raw = NULL;
	size_t n = 0;
	char *s;

	if (!t)
		t = "";
	if (gv_b64_decode(t, strlen(t), &raw, &n) < 0)
		return NULL;
	s = malloc(n + 1);
	if (!s)
		abort();
	if (n)
		memcpy(s, raw, n);
	s[n] = '\0';
	free(raw);
	if (len)
		*len = n;
	return s;
}

char *etcd_prefix_end(const char *prefix, size_t *len)
{
	size_t n = strlen(prefix);
	char *end = malloc(n + 1);

	if (!end)
		abort();
	memcpy(end, prefix, n + 1);
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n == 0) {
		end[0] = '\0';
		*len = 1; /* "\0": to the end of the keyspace */
		return end;
	}
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	end[n] = '\0';
	*len = n;
	return end;
}
