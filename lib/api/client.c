/* SPDX-License-Identifier: MIT */
/* client.c - HTTP+JSON client of the node agent over its unix socket. */
#include <gridvm/api/client.h>
#include <gridvm/base/user.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct gv_client {
	char *sock;
	CURL *curl;
};

struct sink {
	char *p;
	size_t len;
	char state[16];
	uint64_t offset;
	gv_line_cb cb;
	void *ud;
};

char *gv_client_socket_path(void)
{
	const char *s = getenv("GRIDVM_SOCKET");

	return s && *s ? strdup(s) : gv_strdupf("%s/gridvmd.sock", gv_data_dir());
}

/* 0 if an agent answers on @sock, else the errno of the connect */
static int agent_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	r = fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	return r;
}

static bool agent_answers(const char *sock)
{
	return agent_connect(sock) == 0;
}

static int autostart(const char *bin, const char *sock, gv_err *e)
{
	pid_t pid = fork();
	uint64_t end;

	if (pid < 0)
		return gv_err_set(e, -errno, "cannot start %s: %s", bin, strerror(errno));
	if (pid == 0) {
		char *argv[] = { (char *)bin, "--daemon", "--socket", (char *)sock, NULL };
		execv(bin, argv);
		_exit(127);
	}
	waitpid(pid, NULL, 0); /* --daemon forks and returns at once */
	end = gv_now_ms() + 10000;
	while (gv_now_ms() < end) {
		if (agent_answers(sock))
			return 0;
		usleep(20000);
	}
	return gv_err_set(e, -ETIMEDOUT, "started %s but it does not answer on %s (see "
			  "%s/gridvmd.log)", bin, sock, gv_data_dir());
}

int gv_client_new(const char *sock, const char *autostart_bin, gv_client **out,
		  gv_err *e)
{
	gv_client *c;

	if (agent_connect(sock) == EACCES) /* it runs, not for us */
		return gv_err_set(e, -EACCES, "cannot use the gridvm agent on %s: permission "
				  "denied (only root and the members of group %s may here)", sock,
				  GV_USE_GROUP);
	if (!agent_answers(sock)) {
		if (!autostart_bin)
			return gv_err_set(e, -ECONNREFUSED, "the gridvm agent is not running "
					  "(no answer on %s)", sock);
		int r = autostart(autostart_bin, sock, e);
		if (r < 0)
			return r;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->sock = strdup(sock);
	c->curl = curl_easy_init();
	*out = c;
	return 0;
}

void gv_client_free(gv_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c->sock);
	free(c);
}

static void sink_lines(struct sink *s)
{
	char *nl;

	while ((nl = memchr(s->p, '\n', s->len))) {
		*nl = '\0';
		s->cb(s->ud, s->p);
		s->len -= (size_t)(nl + 1 - s->p);
		memmove(s->p, nl + 1, s->len);
	}
}

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;

	s->p = realloc(s->p, s->len + size * n + 1);
	if (!s->p)
		abort();
	memcpy(s->p + s->len, ptr, size * n);
	s->len += size * n;
	s->p[s->len] = '\0';
	if (s->cb)
		sink_lines(s);
	return size * n;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t len = size * n;

	if (len > 16 && !strncasecmp(buf, "X-Gridvm-State: ", 16))
		sscanf(buf + 16, "%15s", s->state);
	if (len > 17 && !strncasecmp(buf, "X-Gridvm-Offset: ", 17))
		s->offset = strtoull(buf + 17, NULL, 10);
	return len;
}

static int perform(gv_client *c, const char *method, const char *path,
		   json_t *body, struct sink *s, long *status, gv_err *e)
{
	char *url = gv_strdupf("http://gridvmd%s", path), *b = NULL;
	struct curl_slist *h = NULL;
	CURLcode rc;

	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->sock);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		b = json_dumps(body, JSON_COMPACT);
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, b);
	}
	rc = curl_easy_perform(c->curl);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	free(b);
	free(url);
	if (rc != CURLE_OK)
		return gv_err_set(e, -ECONNREFUSED, "cannot reach the gridvm agent on %s: %s",
				  c->sock, curl_easy_strerror(rc));
	return 0;
}

/* An error reply: its "error" member (gv_err_json on the agent's side). */
static int api_error(struct sink *s, long status, gv_err *e)
{
	json_t *j = s->p ? json_loads(s->p, 0, NULL) : NULL;
	const char *m = json_string_value(json_object_get(j, "error"));
	int r = status == 404 ? -ENOENT : status == 409 ? -EBUSY : status == 403 ? -EACCES : -EIO;

	if (m)
		gv_err_set(e, r, "%s", m);
	else
		gv_err_set(e, r, "the agent answered HTTP %ld", status);
	json_decref(j);
	return r;
}

int gv_client_call(gv_client *c, const char *method, const char *path,
		   json_t *body, json_t **resp, gv_err *e)
{
	struct sink s = { 0 };
	long status = 0;
	int r = perform(c, method, path, body, &s, &status, e);

	if (r == 0 && (status < 200 || status > 299))
		r = api_error(&s, status, e);
	else if (r == 0 && resp)
		*resp = s.p ? json_loads(s.p, 0, NULL) : NULL;
	free(s.p);
	return r;
}

int gv_client_get_raw(gv_client *c, const char *path, char **data, size_t *len,
		      char state[16], uint64_t *next_offset, gv_err *e)
{
	struct sink s = { 0 };
	long status = 0;
	int r = perform(c, "GET", path, NULL, &s, &status, e);

	if (r == 0 && (status < 200 || status > 299)) {
		r = api_error(&s, status, e);
		free(s.p);
		return r;
	}
	if (r < 0) {
		free(s.p);
		return r;
	}
	*data = s.p;
	*len = s.len;
	memcpy(state, s.state, 16);
	*next_offset = s.offset;
	return 0;
}

int gv_client_stream(gv_client *c, const char *path, json_t *body, gv_line_cb cb,
		     void *ud, gv_err *e)
{
	struct sink s = { .cb = cb, .ud = ud };
	long status = 0;
	int r = perform(c, "POST", path, body, &s, &status, e);

	if (r == 0 && (status < 200 || status > 299))
		r = api_error(&s, status, e);
	else if (r == 0 && s.len)
		cb(ud, s.p);
	free(s.p);
	return r;
}
