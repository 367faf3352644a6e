/* SPDX-License-Identifier: MIT */
/*
 * test-qmp.c - unit tests for the QMP client.
 *
 * Most tests run the real client against a scripted fake QEMU: a thread
 * on the other end of a socketpair that sends canned bytes (greeting,
 * replies, events, garbage; whole, byte by byte or glued together) and
 * checks the commands it receives. One test drives a real
 * qemu-system-x86_64 and is skipped when that is not installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, strdup, MSG_NOSIGNAL, ... */
#endif
#include <gridvm/vmm/qmp.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- the scripted peer ---- */

enum step_kind {
	STEP_DONE,     /* end of script: read until the client closes */
	STEP_EXPECT,   /* read one command, check its "execute" is .text */
	STEP_SEND,     /* write .text at once; @ID@ / @PREV@ become the ids
			* of the last / second-to-last command read */
	STEP_TRICKLE,  /* like SEND, one byte per write */
	STEP_SEND_BIG, /* a reply whose "blob" string is .n bytes long */
	STEP_PAUSE,    /* sleep .n ms */
	STEP_CLOSE,    /* close the connection now */
};

struct step {
	enum step_kind kind;
	const char *text;
	int n;
};

struct peer {
	int fd, listen_fd;
	const struct step *script;
	pthread_t thread;
	bool running;
	char error[256];      /* first problem the peer saw, "" if none */
	json_t *cmds;         /* every command received, in order */
	char id[64], prev[64];
};

struct fixture {
	struct peer p;
	gv_qmp *q;
	pid_t pid;            /* a real QEMU, if > 0 */
	char dir[64];         /* temporary directory for sockets, or "" */
	char sock[100];       /* fits a sockaddr_un */
};

#define EXPECT(cmd) { .kind = STEP_EXPECT, .text = (cmd) }
#define SEND(txt) { .kind = STEP_SEND, .text = (txt) }
#define TRICKLE(txt) { .kind = STEP_TRICKLE, .text = (txt) }
#define SEND_BIG(len) { .kind = STEP_SEND_BIG, .n = (len) }
#define PAUSE(ms) { .kind = STEP_PAUSE, .n = (ms) }
#define CLOSE { .kind = STEP_CLOSE }
#define DONE { .kind = STEP_DONE }

#define GREETING                                                        \
	SEND("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "      \
	     "\"minor\": 2, \"major\": 7}, \"package\": \"\"}, "         \
	     "\"capabilities\": [\"oob\"]}}\r\n")
#define CAPS                                                            \
	EXPECT("qmp_capabilities"),                                     \
	SEND("{\"return\": {}, \"id\": \"@ID@\"}\r\n")
#define HELLO GREETING, CAPS
#define OK_REPLY "{\"return\": {}, \"id\": \"@ID@\"}\r\n"

static void peer_fail(struct peer *p, const char *fmt, ...)
{
	va_list ap;

	if (p->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(p->error, sizeof(p->error), fmt, ap);
	va_end(ap);
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Replace @ID@ and @PREV@ in @text; returns a malloc'd string.
 * (No cmocka asserts here: they are not thread safe.) */
static char *expand(const struct peer *p, const char *text)
{
	size_t tokens = 0;
	char *out, *o;

	for (const char *t = text; (t = strchr(t, '@')); t++)
		tokens++;
	out = o = malloc(strlen(text) + tokens * sizeof(p->id) + 1);
	if (!out)
		abort();
	while (*text) {
		if (strncmp(text, "@ID@", 4) == 0) {
			o = stpcpy(o, p->id);
			text += 4;
		} else if (strncmp(text, "@PREV@", 6) == 0) {
			o = stpcpy(o, p->prev);
			text += 6;
		} else {
			*o++ = *text++;
		}
	}
	*o = '\0';
	return out;
}

static void peer_expect(struct peer *p, const char *cmd)
{
	json_error_t jerr;
	json_t *req = json_loadfd(p->fd, JSON_DISABLE_EOF_CHECK, &jerr);
	const char *exec = json_string_value(json_object_get(req, "execute"));
	const char *id = json_string_value(json_object_get(req, "id"));

	if (!req) {
		peer_fail(p, "expected %s, read: %s", cmd, jerr.text);
		return;
	}
	if (!exec || strcmp(exec, cmd) != 0)
		peer_fail(p, "expected %s, got %s", cmd, exec ? exec : "?");
	else if (!id)
		peer_fail(p, "%s came without an id", cmd);
	snprintf(p->prev, sizeof(p->prev), "%s", p->id);
	snprintf(p->id, sizeof(p->id), "%s", id ? id : "");
	json_array_append_new(p->cmds, req);
}

static void peer_send(struct peer *p, const char *text, bool trickle)
{
	char *s = expand(p, text);
	size_t len = strlen(s);
	int r = 0;

	for (size_t i = 0; trickle && i < len && r == 0; i++) {
		r = write_all(p->fd, s + i, 1);
		usleep(300);
	}
	if (!trickle)
		r = write_all(p->fd, s, len);
	if (r < 0 && r != -EPIPE) /* a client done reading may hang up */
		peer_fail(p, "send: %s", strerror(-r));
	free(s);
}

static void peer_send_big(struct peer *p, size_t n)
{
	json_t *reply = json_object();
	char *blob = malloc(n + 1), *s;

	if (!blob)
		abort();
	memset(blob, 'x', n);
	blob[n] = '\0';
	json_object_set_new(reply, "return", json_pack("{s:s}", "blob", blob));
	json_object_set_new(reply, "id", json_string(p->id));
	s = json_dumps(reply, JSON_COMPACT);
	if (write_all(p->fd, s, strlen(s)) < 0)
		peer_fail(p, "send big reply failed");
	free(s);
	free(blob);
	json_decref(reply);
}

/* After the script: swallow whatever comes until the client hangs up. */
static void peer_drain(struct peer *p)
{
	char buf[256];

	while (read(p->fd, buf, sizeof(buf)) > 0)
		;
}

static void peer_step(struct peer *p, const struct step *s)
{
	switch (s->kind) {
	case STEP_EXPECT: peer_expect(p, s->text); break;
	case STEP_SEND: peer_send(p, s->text, false); break;
	case STEP_TRICKLE: peer_send(p, s->text, true); break;
	case STEP_SEND_BIG: peer_send_big(p, (size_t)s->n); break;
	case STEP_PAUSE: usleep((useconds_t)s->n * 1000); break;
	case STEP_CLOSE: close(p->fd); p->fd = -1; break;
	case STEP_DONE: peer_drain(p); break;
	}
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	struct timeval tv = { .tv_sec = 5 }; /* a stuck test must not hang */
	const struct step *s = p->script;

	if (p->listen_fd >= 0) {
		p->fd = accept(p->listen_fd, NULL, NULL);
		if (p->fd < 0) {
			peer_fail(p, "accept: %s", strerror(errno));
			return NULL;
		}
	}
	setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (; p->fd >= 0; s++) {
		peer_step(p, s);
		if (s->kind == STEP_DONE)
			break;
	}
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	return NULL;
}

static void peer_start(struct peer *p)
{
	p->cmds = json_array();
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
	p->running = true;
}

/* Start the peer on a socketpair; returns the client's end. */
static int peer_pair(struct fixture *f, const struct step *script)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	f->p.fd = sv[1];
	f->p.script = script;
	peer_start(&f->p);
	return sv[0];
}

static void open_client(struct fixture *f, const struct step *script)
{
	int fd = peer_pair(f, script);

	assert_int_equal(gv_qmp_open_fd(fd, 1000, &f->q), 0);
	assert_non_null(f->q);
	assert_int_equal(gv_qmp_fd(f->q), fd);
}

/* Hang up, wait for the peer and check it saw what it expected. */
static void peer_finish(struct fixture *f)
{
	gv_qmp_free(f->q);
	f->q = NULL;
	if (f->p.running)
		pthread_join(f->p.thread, NULL);
	f->p.running = false;
	if (f->p.error[0])
		fail_msg("peer: %s", f->p.error);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->p.fd = -1;
	f->p.listen_fd = -1;
	f->pid = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	gv_qmp_free(f->q);
	if (f->p.listen_fd >= 0) {
		shutdown(f->p.listen_fd, SHUT_RDWR); /* wakes a pending accept */
		close(f->p.listen_fd);
	}
	if (f->p.running)
		pthread_join(f->p.thread, NULL);
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
	}
	if (f->sock[0])
		unlink(f->sock);
	if (f->dir[0])
		rmdir(f->dir);
	json_decref(f->p.cmds);
	free(f);
	return 0;
}

/* A fresh directory for a socket; both are removed in teardown. */
static void make_sock_path(struct fixture *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/gv-test-qmp-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/qmp.sock", f->dir);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *str_at(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* Run @cmd, expect success, return the "return" member (caller frees). */
static json_t *run_ok(gv_qmp *q, const char *cmd, json_t *args)
{
	json_t *ret = NULL;
	gv_err e = { "" };
	int r = gv_qmp_execute(q, cmd, args, 1000, &ret, &e);

	if (r != 0)
		fail_msg("%s: %s (%s)", cmd, strerror(-r), e.msg);
	assert_string_equal(e.msg, ""); /* untouched on success */
	assert_non_null(ret);
	return ret;
}

static void test_handshake_and_return(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-status"),
		SEND("{\"return\": {\"status\": \"running\", \"singlestep\": "
			"false, \"running\": true}, \"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ret, *caps, *cmd;

	open_client(f, script);
	ret = run_ok(f->q, "query-status", NULL);
	assert_string_equal(str_at(ret, "status"), "running");
	assert_true(json_is_true(json_object_get(ret, "running")));
	json_decref(ret);
	peer_finish(f);

	assert_int_equal(json_array_size(f->p.cmds), 2);
	caps = json_array_get(f->p.cmds, 0);
	cmd = json_array_get(f->p.cmds, 1);
	assert_null(json_object_get(caps, "arguments"));
	assert_null(json_object_get(cmd, "arguments"));
	assert_string_not_equal(str_at(caps, "id"), str_at(cmd, "id"));
}

static void test_greeting_without_qmp(void **state)
{
	static const struct step script[] = {
		SEND("{\"hello\": {\"version\": {}}}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	gv_qmp *q = NULL;

	assert_int_equal(gv_qmp_open_fd(peer_pair(f, script), 1000, &q),
			 -EPROTO);
	assert_null(q);
	peer_finish(f);
	assert_int_equal(json_array_size(f->p.cmds), 0);
}

static void test_capabilities_refused(void **state)
{
	static const struct step script[] = {
		GREETING,
		EXPECT("qmp_capabilities"),
		SEND("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
			"\"Capabilities negotiation is already complete\"}, "
			"\"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	gv_qmp *q = NULL;

	assert_int_equal(gv_qmp_open_fd(peer_pair(f, script), 1000, &q),
			 -EPROTO);
	assert_null(q);
	peer_finish(f);
}

static void test_silent_peer_handshake_timeout(void **state)
{
	static const struct step script[] = { DONE };
	struct fixture *f = *state;
	gv_qmp *q = NULL;
	int64_t t0 = now_ms();

	assert_int_equal(gv_qmp_open_fd(peer_pair(f, script), 200, &q),
			 -ETIMEDOUT);
	assert_in_range(now_ms() - t0, 190, 1000);
	assert_null(q);
	peer_finish(f);
}

static void test_connect_unix_path(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-name"),
		SEND("{\"return\": {\"name\": \"vm0\"}, \"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *ret;
	gv_qmp *q = NULL;

	make_sock_path(f);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	assert_int_equal(gv_qmp_connect(f->sock, 200, &q), -ENOENT);
	assert_null(q);
	f->p.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(f->p.listen_fd, (struct sockaddr *)&sa,
			      sizeof(sa)), 0);
	assert_int_equal(listen(f->p.listen_fd, 1), 0);
	f->p.script = script;
	peer_start(&f->p);

	assert_int_equal(gv_qmp_connect(f->sock, 1000, &f->q), 0);
	ret = run_ok(f->q, "query-name", NULL);
	assert_string_equal(str_at(ret, "name"), "vm0");
	json_decref(ret);
	peer_finish(f);
}

static void test_reply_trickled_byte_by_byte(void **state)
{
	static const struct step script[] = {
		GREETING,
		EXPECT("qmp_capabilities"),
		TRICKLE(OK_REPLY),
		EXPECT("human-monitor-command"),
		TRICKLE("{\"return\": \"a \\\"}{\\\" [b]\\\\\\n\", "
			   "\"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *args = json_pack("{s:s}", "command-line", "info status");
	json_t *ret;

	open_client(f, script);
	ret = run_ok(f->q, "human-monitor-command", args);
	assert_string_equal(json_string_value(ret), "a \"}{\" [b]\\\n");
	json_decref(ret);
	json_decref(args);
	peer_finish(f);
}

static void test_two_objects_in_one_write(void **state)
{
	static const struct step script[] = {
		GREETING,
		EXPECT("qmp_capabilities"),
		/* reply and an event glued together, no separator */
		SEND("{\"return\": {}, \"id\": \"@ID@\"}{\"event\": \"STOP\", "
			"\"timestamp\": {\"seconds\": 1, "
			"\"microseconds\": 2}}"),
		EXPECT("query-kvm"),
		SEND("{\"event\": \"RESUME\"}\r\n{\"return\": {\"enabled\": "
			"true, \"present\": true}, \"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ret, *ev;

	open_client(f, script);
	ret = run_ok(f->q, "query-kvm", NULL);
	assert_true(json_is_true(json_object_get(ret, "enabled")));
	json_decref(ret);

	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, &ev), 0);
	assert_string_equal(str_at(ev, "event"), "STOP");
	assert_int_equal(json_integer_value(json_object_get(
			 json_object_get(ev, "timestamp"), "microseconds")), 2);
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, &ev), 0);
	assert_string_equal(str_at(ev, "event"), "RESUME");
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, NULL), -ETIMEDOUT);
	peer_finish(f);
}

static void test_large_reply(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-qmp-schema"),
		SEND_BIG(300000),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ret;

	open_client(f, script);
	ret = run_ok(f->q, "query-qmp-schema", NULL);
	assert_int_equal(strlen(str_at(ret, "blob")), 300000);
	json_decref(ret);
	peer_finish(f);
}

static void test_arguments_are_escaped(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("human-monitor-command"),
		SEND(OK_REPLY),
		DONE,
	};
	struct fixture *f = *state;
	json_t *args = json_pack("{s:s, s:i}", "command-line",
				 "say \"}{\" \\ \n caf\xc3\xa9", "n", 42);
	json_t *ret;

	open_client(f, script);
	ret = run_ok(f->q, "human-monitor-command", args);
	assert_int_equal(json_object_size(ret), 0);
	json_decref(ret);
	peer_finish(f);
	assert_true(json_equal(json_object_get(json_array_get(f->p.cmds, 1),
					       "arguments"), args));
	json_decref(args);
}

static void test_error_reply(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("device_del"),
		SEND("{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
			"\"Device 'nic9' not found\"}, \"id\": \"@ID@\"}\r\n"),
		EXPECT("query-name"),
		SEND("{\"return\": {}, \"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *args = json_pack("{s:s}", "id", "nic9");
	json_t *ret = NULL;
	gv_err e;

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "device_del", args, 1000, &ret,
					&e), -EIO);
	assert_null(ret);
	assert_string_equal(e.msg, "Device 'nic9' not found");
	/* the connection stays usable after an error reply */
	json_decref(run_ok(f->q, "query-name", NULL));
	json_decref(args);
	peer_finish(f);
}

static void test_foreign_and_idless_replies_ignored(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-name"),
		SEND("{\"return\": {\"name\": \"wrong\"}, \"id\": \"x-1\"}\r\n"
			"{\"return\": {\"name\": \"no-id\"}}\r\n"
			"{\"error\": {\"class\": \"GenericError\", \"desc\": "
			"\"not ours\"}, \"id\": 7}\r\n"),
		PAUSE(20),
		SEND("{\"return\": {\"name\": \"right\"}, \"id\": \"@ID@\"}"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ret;

	open_client(f, script);
	ret = run_ok(f->q, "query-name", NULL);
	assert_string_equal(str_at(ret, "name"), "right");
	json_decref(ret);
	peer_finish(f);
}

static void test_idless_error_answers_pending(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-name"),
		SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": "
			"\"JSON parse error, invalid keyword\"}}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	gv_err e;

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "query-name", NULL, 1000, NULL,
					&e), -EIO);
	assert_string_equal(e.msg, "JSON parse error, invalid keyword");
	peer_finish(f);
}

static void test_timeout_then_stale_reply(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-status"), /* never answered in time */
		EXPECT("query-name"),
		SEND("{\"return\": {\"status\": \"late\"}, \"id\": "
			"\"@PREV@\"}\r\n"),
		SEND("{\"return\": {\"name\": \"vm0\"}, \"id\": \"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ret = NULL;
	gv_err e;
	int64_t t0 = now_ms();

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "query-status", NULL, 200, &ret,
					&e), -ETIMEDOUT);
	assert_in_range(now_ms() - t0, 190, 1000);
	assert_null(ret);
	assert_string_equal(e.msg, strerror(ETIMEDOUT));
	ret = run_ok(f->q, "query-name", NULL);
	assert_string_equal(str_at(ret, "name"), "vm0");
	json_decref(ret);
	peer_finish(f);
}

static void test_close_mid_reply(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-status"),
		TRICKLE("{\"return\": {\"status\": \"runn"),
		CLOSE,
	};
	struct fixture *f = *state;
	json_t *ret = NULL;

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "query-status", NULL, 1000, &ret,
					NULL), -ECONNRESET);
	assert_null(ret);
	/* sticky: no new command goes out on a dead stream */
	assert_int_equal(gv_qmp_execute(f->q, "query-name", NULL, 1000, NULL,
					NULL), -ECONNRESET);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 1000, NULL),
			 -ECONNRESET);
	peer_finish(f);
	assert_int_equal(json_array_size(f->p.cmds), 2);
}

static void test_send_to_closed_peer(void **state)
{
	static const struct step script[] = { HELLO, CLOSE };
	struct fixture *f = *state;

	open_client(f, script);
	usleep(50 * 1000); /* the write below must hit a closed socket */
	assert_int_equal(gv_qmp_execute(f->q, "query-status", NULL, 1000, NULL,
					NULL), -ECONNRESET);
	peer_finish(f);
}

static void test_garbage(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-status"),
		SEND("{\"event\": \"STOP\"}\r\nSegmentation fault\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ev = NULL;

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "query-status", NULL, 1000, NULL,
					NULL), -EPROTO);
	/* what arrived before the garbage is still delivered */
	assert_int_equal(gv_qmp_wait_event(f->q, "STOP", 0, &ev), 0);
	assert_string_equal(str_at(ev, "event"), "STOP");
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, NULL), -EPROTO);
	assert_int_equal(gv_qmp_execute(f->q, "query-status", NULL, 1000, NULL,
					NULL), -EPROTO);
	peer_finish(f);
}

static void test_malformed_object(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("query-status"),
		SEND("{\"return\": {\"status\" \"running\"}, \"id\": "
			"\"@ID@\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "query-status", NULL, 1000, NULL,
					NULL), -EPROTO);
	peer_finish(f);
}

static void test_events_interleaved(void **state)
{
	static const struct step script[] = {
		HELLO,
		EXPECT("stop"),
		SEND("{\"event\": \"STOP\"}\r\n"),
		TRICKLE("{\"event\": \"DEVICE_DELETED\", \"data\": "
			   "{\"device\": \"nic0\", \"path\": \"/m/p\"}}\r\n"),
		SEND(OK_REPLY),
		EXPECT("cont"),
		SEND(OK_REPLY),
		PAUSE(50),
		SEND("{\"event\": \"RESUME\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	json_t *ev;

	open_client(f, script);
	json_decref(run_ok(f->q, "stop", NULL));
	json_decref(run_ok(f->q, "cont", NULL));

	/* waits for RESUME, leaving the earlier events queued */
	assert_int_equal(gv_qmp_wait_event(f->q, "RESUME", 1000, &ev), 0);
	assert_string_equal(str_at(ev, "event"), "RESUME");
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, "DEVICE_DELETED", 0, &ev), 0);
	assert_string_equal(str_at(json_object_get(ev, "data"), "device"),
			    "nic0");
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, &ev), 0);
	assert_string_equal(str_at(ev, "event"), "STOP");
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, &ev), -ETIMEDOUT);
	assert_null(ev);
	peer_finish(f);
}

static void test_wait_event_timeout(void **state)
{
	static const struct step script[] = {
		HELLO,
		SEND("{\"event\": \"STOP\"}\r\n"),
		DONE,
	};
	struct fixture *f = *state;
	int64_t t0;

	open_client(f, script);
	t0 = now_ms();
	assert_int_equal(gv_qmp_wait_event(f->q, "RESUME", 200, NULL),
			 -ETIMEDOUT);
	assert_in_range(now_ms() - t0, 190, 1000);
	/* the non-matching event stayed queued */
	assert_int_equal(gv_qmp_wait_event(f->q, "STOP", 0, NULL), 0);
	peer_finish(f);
}

static void test_events_survive_close(void **state)
{
	static const struct step script[] = {
		HELLO,
		SEND("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, "
			"\"reason\": \"host-qmp-quit\"}}\r\n"),
		CLOSE,
	};
	struct fixture *f = *state;
	json_t *ev = NULL;

	open_client(f, script);
	assert_int_equal(gv_qmp_wait_event(f->q, "RESUME", 1000, NULL),
			 -ECONNRESET);
	assert_int_equal(gv_qmp_wait_event(f->q, "SHUTDOWN", 1000, &ev), 0);
	assert_string_equal(str_at(json_object_get(ev, "data"), "reason"),
			    "host-qmp-quit");
	json_decref(ev);
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 1000, NULL),
			 -ECONNRESET);
	peer_finish(f);
}

static void test_event_queue_is_bounded(void **state)
{
	static char flood[32768];
	const struct step script[] = { HELLO, SEND(flood), DONE };
	struct fixture *f = *state;
	char name[16];
	size_t len = 0;
	json_t *ev;
	int i;

	for (i = 0; i < 1100; i++)
		len += (size_t)snprintf(flood + len, sizeof(flood) - len,
					"{\"event\": \"E%d\"}", i);
	assert_true(len < sizeof(flood));
	open_client(f, script);
	/* waiting for something else reads (and queues) all 1100 ... */
	assert_int_equal(gv_qmp_wait_event(f->q, "NOPE", 200, NULL),
			 -ETIMEDOUT);
	/* ... of which the oldest 76 were dropped to keep 1024 */
	for (i = 76; i < 1100; i++) {
		assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, &ev), 0);
		snprintf(name, sizeof(name), "E%d", i);
		assert_string_equal(str_at(ev, "event"), name);
		json_decref(ev);
	}
	assert_int_equal(gv_qmp_wait_event(f->q, NULL, 0, NULL), -ETIMEDOUT);
	peer_finish(f);
}

static void test_bad_arguments(void **state)
{
	static const struct step script[] = { HELLO, DONE };
	struct fixture *f = *state;
	json_t *arr = json_array();
	json_t *ret = json_true();
	gv_err e = { "sentinel" };

	open_client(f, script);
	assert_int_equal(gv_qmp_execute(f->q, "stop", arr, 100, &ret, &e),
			 -EINVAL);
	assert_null(ret);
	assert_string_equal(e.msg, strerror(EINVAL));
	assert_int_equal(gv_qmp_execute(f->q, NULL, NULL, 100, NULL, NULL),
			 -EINVAL);
	assert_int_equal(gv_qmp_execute(NULL, "stop", NULL, 100, NULL, NULL),
			 -EINVAL);
	json_decref(arr);
	gv_qmp_free(NULL);
	peer_finish(f);
	assert_int_equal(json_array_size(f->p.cmds), 1);
}

/* ---- real QEMU ---- */

static void qemu_spawn(struct fixture *f)
{
	char qmp[160];

	make_sock_path(f);
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", f->sock);
	f->pid = fork();
	assert_true(f->pid >= 0);
	if (f->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-S",
		       "-machine", "pc", "-accel", "tcg", "-nodefaults",
		       "-display", "none", "-qmp", qmp, (char *)NULL);
		_exit(127);
	}
}

/* QEMU creates the socket a moment after it starts: retry until then. */
static void qemu_connect(struct fixture *f)
{
	int64_t deadline = now_ms() + 10000;
	int r;

	for (;;) {
		r = gv_qmp_connect(f->sock, 2000, &f->q);
		if (r == 0)
			return;
		if ((r != -ENOENT && r != -ECONNREFUSED) || now_ms() > deadline)
			fail_msg("connect %s: %s", f->sock, strerror(-r));
		if (waitpid(f->pid, NULL, WNOHANG) == f->pid) {
			f->pid = -1;
			fail_msg("qemu exited before its monitor came up");
		}
		usleep(20 * 1000);
	}
}

static void expect_status(gv_qmp *q, const char *status, bool running)
{
	json_t *ret = run_ok(q, "query-status", NULL);

	assert_string_equal(str_at(ret, "status"), status);
	assert_int_equal(json_is_true(json_object_get(ret, "running")),
			 running);
	json_decref(ret);
}

static void run_and_wait(gv_qmp *q, const char *cmd, const char *event)
{
	json_decref(run_ok(q, cmd, NULL));
	assert_int_equal(gv_qmp_wait_event(q, event, 5000, NULL), 0);
}

static int wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int status;

	while (now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10 * 1000);
	}
	return -1;
}

static void test_real_qemu(void **state)
{
	struct fixture *f = *state;
	gv_err e;
	json_t *ev = NULL;
	int r;

	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
		skip();
	qemu_spawn(f);
	qemu_connect(f);

	expect_status(f->q, "prelaunch", false);
	run_and_wait(f->q, "cont", "RESUME");
	expect_status(f->q, "running", true);
	run_and_wait(f->q, "stop", "STOP");
	expect_status(f->q, "paused", false);
	run_and_wait(f->q, "cont", "RESUME");

	assert_int_equal(gv_qmp_execute(f->q, "no-such-command", NULL, 1000,
					NULL, &e), -EIO);
	assert_non_null(strstr(e.msg, "no-such-command"));

	r = gv_qmp_execute(f->q, "quit", NULL, 5000, NULL, NULL);
	assert_true(r == 0 || r == -ECONNRESET);
	r = gv_qmp_wait_event(f->q, "SHUTDOWN", 5000, &ev);
	assert_true(r == 0 || r == -ECONNRESET);
	if (r == 0)
		assert_false(json_is_true(json_object_get(
			json_object_get(ev, "data"), "guest")));
	json_decref(ev);
	do
		r = gv_qmp_wait_event(f->q, NULL, 5000, NULL);
	while (r == 0);
	assert_int_equal(r, -ECONNRESET);
	assert_int_equal(wait_exit(f->pid, 5000), 0);
	f->pid = -1;
}

/* A pipe's write end passed with getfd carries the machine's migration
 * stream ("fd:NAME", no shell and no path involved): QEMU's stream
 * starts with "QEVM". Without the fd attached QEMU refuses getfd. */
static void test_real_qemu_getfd(void **state)
{
	struct fixture *f = *state;
	json_t *args = json_pack("{s:s}", "uri", "fd:gv-test");
	gv_err e = { "" };
	char magic[4] = "";
	int pfd[2], r;

	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
		skip();
	qemu_spawn(f);
	qemu_connect(f);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(gv_qmp_getfd(f->q, "gv-test", -1, 1000, &e), -EINVAL);
	/* the command without SCM_RIGHTS: QEMU says it got no fd */
	json_t *noarg = json_pack("{s:s}", "fdname", "gv-none");
	assert_int_equal(gv_qmp_execute(f->q, "getfd", noarg, 2000, NULL, &e), -EIO);
	json_decref(noarg);
	r = gv_qmp_getfd(f->q, "gv-test", pfd[1], 2000, &e);
	if (r != 0)
		fail_msg("getfd: %s", e.msg);
	close(pfd[1]);
	json_decref(run_ok(f->q, "migrate", args));
	assert_int_equal(read(pfd[0], magic, 4), 4);
	assert_memory_equal(magic, "QEVM", 4);
	close(pfd[0]);
	json_decref(args);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_handshake_and_return),
		TEST(test_greeting_without_qmp),
		TEST(test_capabilities_refused),
		TEST(test_silent_peer_handshake_timeout),
		TEST(test_connect_unix_path),
		TEST(test_reply_trickled_byte_by_byte),
		TEST(test_two_objects_in_one_write),
		TEST(test_large_reply),
		TEST(test_arguments_are_escaped),
		TEST(test_error_reply),
		TEST(test_foreign_and_idless_replies_ignored),
		TEST(test_idless_error_answers_pending),
		TEST(test_timeout_then_stale_reply),
		TEST(test_close_mid_reply),
		TEST(test_send_to_closed_peer),
		TEST(test_garbage),
		TEST(test_malformed_object),
		TEST(test_events_interleaved),
		TEST(test_wait_event_timeout),
		TEST(test_events_survive_close),
		TEST(test_event_queue_is_bounded),
		TEST(test_bad_arguments),
		TEST(test_real_qemu),
		TEST(test_real_qemu_getfd),
	};

	/* SIGPIPE keeps its default action: a client write without
	 * MSG_NOSIGNAL to a closed peer would kill this test binary. */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
