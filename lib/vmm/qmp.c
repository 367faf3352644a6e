/* SPDX-License-Identifier: MIT */
/*
 * qmp.c - QEMU Machine Protocol client (see <gridvm/qmp.h>).
 *
 * Bytes read from the socket go into one buffer; a small scanner that
 * knows about strings, escapes and nesting cuts complete top-level JSON
 * objects out of it, and each object is parsed with jansson and sorted:
 * the greeting, the reply to the command in flight (matched by "id"),
 * or an event, which goes to a FIFO. Everything blocking is a poll() on
 * a CLOCK_MONOTONIC deadline. Once the stream is broken (peer closed,
 * garbage, half-written command) the error sticks to the handle.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, strdup, MSG_NOSIGNAL, ... */
#endif
#include <gridvm/vmm/qmp.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_READ_CHUNK 4096
#define QMP_MAX_MESSAGE (16u * 1024 * 1024) /* larger object => -EPROTO */
#define QMP_MAX_EVENTS 1024                 /* oldest dropped beyond this */

struct gv_qmp {
	int fd;
	int err;              /* sticky error once the stream is unusable */
	unsigned long next_id;
	char pending[32];     /* id of the command in flight, "" if none */
	json_t *reply;        /* its reply, once it arrived */
	bool greeted;
	json_t *events;       /* FIFO of event objects (json array) */
	char *buf;            /* unparsed bytes are buf[head..len) */
	size_t head, len, cap;
	size_t scan;          /* scanner position, state below */
	int depth;
	bool in_str, esc;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A negative timeout means no deadline (-1). */
static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, remaining_ms(deadline));

		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Record @err as the sticky error (a timeout is not one) and return it. */
static int fail(gv_qmp *q, int err)
{
	if (err != -ETIMEDOUT && !q->err)
		q->err = err;
	return err;
}

static bool is_our_reply(const gv_qmp *q, json_t *obj)
{
	json_t *id = json_object_get(obj, "id");

	if (!q->pending[0] || q->reply || (!json_object_get(obj, "return") &&
					   !json_object_get(obj, "error")))
		return false;
	if (json_is_string(id))
		return strcmp(json_string_value(id), q->pending) == 0;
	/* QEMU drops the id only when it could not parse the request; with
	 * one command in flight, such an error can only be ours. */
	return !id && json_object_get(obj, "error") != NULL;
}

static int classify(gv_qmp *q, json_t *obj)
{
	if (!q->greeted) {
		q->greeted = json_is_object(json_object_get(obj, "QMP"));
		return q->greeted ? 0 : -EPROTO;
	}
	if (json_is_string(json_object_get(obj, "event"))) {
		if (json_array_size(q->events) >= QMP_MAX_EVENTS)
			json_array_remove(q->events, 0);
		return json_array_append(q->events, obj) ? -ENOMEM : 0;
	}
	if (is_our_reply(q, obj))
		q->reply = json_incref(obj);
	return 0; /* stale replies and unknown messages are dropped */
}

static int dispatch(gv_qmp *q, const char *text, size_t len)
{
	json_t *obj = json_loadb(text, len, 0, NULL);
	int r = json_is_object(obj) ? classify(q, obj) : -EPROTO;

	json_decref(obj);
	return r;
}

/* Find the end of the top-level object that starts at q->head.
 * @return 1 with *end just past its closing brace, 0 if it is not
 * complete yet, -EPROTO if something other than an object shows up. */
static int scan_object(gv_qmp *q, size_t *end)
{
	for (; q->scan < q->len; q->scan++) {
		char c = q->buf[q->scan];

		if (q->depth == 0) {
			if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				q->head = q->scan + 1;
				continue;
			}
			if (c != '{')
				return -EPROTO;
		}
		if (q->in_str) {
			if (q->esc)
				q->esc = false;
			else if (c == '\\')
				q->esc = true;
			else if (c == '"')
				q->in_str = false;
		} else if (c == '"') {
			q->in_str = true;
		} else if (c == '{' || c == '[') {
			q->depth++;
		} else if ((c == '}' || c == ']') && --q->depth == 0) {
			*end = ++q->scan;
			return 1;
		}
	}
	return 0;
}

/* Dispatch every complete object in the buffer, then compact it. */
static int drain(gv_qmp *q)
{
	size_t end;
	int r;

	while ((r = scan_object(q, &end)) > 0) {
		r = dispatch(q, q->buf + q->head, end - q->head);
		q->head = end;
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	memmove(q->buf, q->buf + q->head, q->len - q->head);
	q->len -= q->head;
	q->scan -= q->head;
	q->head = 0;
	return q->len > QMP_MAX_MESSAGE ? -EPROTO : 0;
}

/* Make room for one more read chunk. */
static int reserve(gv_qmp *q)
{
	size_t cap = q->cap ? q->cap * 2 : QMP_READ_CHUNK;
	char *buf;

	if (q->cap - q->len >= QMP_READ_CHUNK)
		return 0;
	buf = realloc(q->buf, cap);
	if (!buf)
		return -ENOMEM;
	q->buf = buf;
	q->cap = cap;
	return 0;
}

/* Wait for input until @deadline, read what is there and dispatch it. */
static int fill(gv_qmp *q, int64_t deadline)
{
	ssize_t n;
	int r;

	r = wait_fd(q->fd, POLLIN, deadline);
	if (r == 0)
		r = reserve(q);
	if (r < 0)
		return r;
	n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	q->len += (size_t)n;
	return drain(q);
}

/* Read until @done returns >= 0, which is returned. What arrived before
 * a broken stream still counts: @done is asked before the sticky error. */
static int wait_until(gv_qmp *q, int64_t deadline,
		      int (*done)(gv_qmp *, const char *), const char *arg)
{
	int r;

	while ((r = done(q, arg)) < 0) {
		if (q->err)
			return q->err;
		r = fill(q, deadline);
		if (r == -ETIMEDOUT)
			return r;
		if (r < 0)
			fail(q, r);
	}
	return r;
}

/* Send @len bytes; @pass_fd >= 0 goes along with the first bytes that
 * leave (SCM_RIGHTS), which is where QEMU looks for it. */
static int send_all(gv_qmp *q, const char *s, size_t len, int pass_fd, int64_t deadline)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n;
		int r;

		if (pass_fd >= 0) {
			union {
				char buf[CMSG_SPACE(sizeof(int))];
				struct cmsghdr align;
			} c = { 0 };
			struct iovec iov = { .iov_base = (char *)s + off, .iov_len = len - off };
			struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
					    .msg_control = c.buf, .msg_controllen = sizeof(c.buf) };
			struct cmsghdr *h = CMSG_FIRSTHDR(&m);

			h->cmsg_level = SOL_SOCKET;
			h->cmsg_type = SCM_RIGHTS;
			h->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(h), &pass_fd, sizeof(int));
			n = sendmsg(q->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				pass_fd = -1;
		} else {
			n = send(q->fd, s + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		}

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EAGAIN || errno == EINTR)
			r = wait_fd(q->fd, POLLOUT, deadline);
		else
			r = errno == EPIPE ? -ECONNRESET : -errno;
		if (r == -ETIMEDOUT && off > 0)
			q->err = -EPROTO; /* half a command is on the wire */
		if (r < 0)
			return fail(q, r);
	}
	return 0;
}

static int send_command(gv_qmp *q, const char *cmd, json_t *args, int pass_fd,
			int64_t deadline)
{
	json_t *req;
	char *text;
	int r;

	snprintf(q->pending, sizeof(q->pending), "gv-%lu", ++q->next_id);
	req = json_pack("{s:s, s:s, s:O*}", "execute", cmd, "id", q->pending,
			"arguments", args);
	if (!req)
		return -EINVAL; /* e.g. @cmd is not valid UTF-8 */
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		return -ENOMEM;
	r = send_all(q, text, strlen(text), pass_fd, deadline);
	free(text);
	return r;
}

static int have_reply(gv_qmp *q, const char *unused __attribute__((unused)))
{
	return q->reply ? 0 : -1;
}

static int take_reply(json_t *reply, json_t **ret, gv_err *e)
{
	json_t *err = json_object_get(reply, "error");
	const char *desc;

	if (!err) {
		if (ret)
			*ret = json_incref(json_object_get(reply, "return"));
		return 0;
	}
	desc = json_string_value(json_object_get(err, "desc"));
	return gv_err_set(e, -EIO, "%s", desc ? desc : "unknown QMP error");
}

static int execute(gv_qmp *q, const char *cmd, json_t *args, int pass_fd,
		   int64_t deadline, json_t **ret, gv_err *e)
{
	int r;

	r = q->err;
	if (r == 0)
		r = send_command(q, cmd, args, pass_fd, deadline);
	if (r == 0)
		r = wait_until(q, deadline, have_reply, NULL);
	if (r < 0)
		gv_err_set(e, r, "%s", strerror(-r));
	else
		r = take_reply(q->reply, ret, e);
	json_decref(q->reply);
	q->reply = NULL;
	q->pending[0] = '\0';
	return r;
}

int gv_qmp_execute(gv_qmp *q, const char *cmd, json_t *args, int timeout_ms,
		   json_t **ret, gv_err *e)
{
	if (ret)
		*ret = NULL;
	if (!q || !cmd || (args && !json_is_object(args)))
		return gv_err_set(e, -EINVAL, "%s", strerror(EINVAL));
	return execute(q, cmd, args, -1, deadline_after(timeout_ms), ret, e);
}

int gv_qmp_execute_fd(gv_qmp *q, const char *cmd, json_t *args, int fd, int timeout_ms,
		      json_t **ret, gv_err *e)
{
	if (ret)
		*ret = NULL;
	if (!q || !cmd || fd < 0 || (args && !json_is_object(args)))
		return gv_err_set(e, -EINVAL, "%s", strerror(EINVAL));
	return execute(q, cmd, args, fd, deadline_after(timeout_ms), ret, e);
}

int gv_qmp_getfd(gv_qmp *q, const char *fdname, int fd, int timeout_ms, gv_err *e)
{
	json_t *args;
	int r;

	if (!fdname)
		return gv_err_set(e, -EINVAL, "%s", strerror(EINVAL));
	args = json_pack("{s:s}", "fdname", fdname);
	r = gv_qmp_execute_fd(q, "getfd", args, fd, timeout_ms, NULL, e);
	json_decref(args);
	return r;
}

static int find_event(gv_qmp *q, const char *name)
{
	size_t i;
	json_t *ev;

	json_array_foreach(q->events, i, ev) {
		const char *n = json_string_value(json_object_get(ev, "event"));

		if (!name || strcmp(n, name) == 0)
			return (int)i;
	}
	return -1;
}

int gv_qmp_wait_event(gv_qmp *q, const char *name, int timeout_ms,
		      json_t **event)
{
	int i;

	if (event)
		*event = NULL;
	if (!q)
		return -EINVAL;
	i = wait_until(q, deadline_after(timeout_ms), find_event, name);
	if (i < 0)
		return i;
	if (event)
		*event = json_incref(json_array_get(q->events, (size_t)i));
	json_array_remove(q->events, (size_t)i);
	return 0;
}

static int have_greeting(gv_qmp *q,
			 const char *unused __attribute__((unused)))
{
	return q->greeted ? 0 : -1;
}

static int handshake(gv_qmp *q, int timeout_ms)
{
	int64_t deadline = deadline_after(timeout_ms);
	json_t *ret = NULL;
	int r;

	r = wait_until(q, deadline, have_greeting, NULL);
	if (r == 0)
		r = execute(q, "qmp_capabilities", NULL, -1, deadline, &ret, NULL);
	if (r == -EIO || (r == 0 && !json_is_object(ret)))
		r = -EPROTO;
	json_decref(ret);
	return r;
}

int gv_qmp_open_fd(int fd, int timeout_ms, gv_qmp **out)
{
	gv_qmp *q;
	int r;

	*out = NULL;
	if (fd < 0)
		return -EBADF;
	q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return -ENOMEM;
	}
	q->fd = fd;
	q->events = json_array();
	r = q->events ? handshake(q, timeout_ms) : -ENOMEM;
	if (r < 0) {
		gv_qmp_free(q);
		return r;
	}
	*out = q;
	return 0;
}

/* Connect a non-blocking unix socket; a full backlog (EAGAIN) is retried
 * until @deadline instead of blocking. */
static int connect_unix(const char *path, int64_t deadline)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		if (r != -EAGAIN || remaining_ms(deadline) == 0) {
			close(fd);
			return r == -EAGAIN ? -ETIMEDOUT : r;
		}
		poll(NULL, 0, 10);
	}
	return fd;
}

int gv_qmp_connect(const char *path, int timeout_ms, gv_qmp **out)
{
	int64_t deadline = deadline_after(timeout_ms);
	int fd;

	*out = NULL;
	if (!path)
		return -EINVAL;
	fd = connect_unix(path, deadline);
	if (fd < 0)
		return fd;
	return gv_qmp_open_fd(fd, remaining_ms(deadline), out);
}

void gv_qmp_free(gv_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	json_decref(q->reply);
	json_decref(q->events);
	free(q->buf);
	free(q);
}

int gv_qmp_fd(const gv_qmp *q)
{
	return q ? q->fd : -EBADF;
}
