/* SPDX-License-Identifier: MIT */
/*
 * etcd.h - a real etcd for the unit tests (test-kv.c, test-ctl-elect.c):
 * the etcd binary ($GV_ETCD, else "etcd" on PATH) started on 127.0.0.1
 * on two free ports with a data directory of its own in /tmp, killed with
 * the test (its parent-death signal) or by etcd_kill. Without a binary the
 * caller skips its etcd tests with a line saying so, unless
 * GV_TEST_ETCD=require (scripts/test.sh sets it: setup.sh installs etcd),
 * when that is a failure.
 */
#ifndef GRIDVM_TEST_ETCD_H
#define GRIDVM_TEST_ETCD_H

#include <gridvm/base/util.h>
#include <gridvm/grid/kv.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct {
	char bin[512];
	char dir[64];
	int client_port, peer_port;
	pid_t pid;
} etcd;

/* A port nothing listens on now (the kernel's pick). */
static inline int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* The etcd binary: $GV_ETCD, else "etcd" on PATH. */
static inline bool etcd_find(void)
{
	const char *env = getenv("GV_ETCD"), *path = getenv("PATH");

	if (env && *env) {
		snprintf(etcd.bin, sizeof(etcd.bin), "%s", env);
		return access(etcd.bin, X_OK) == 0;
	}
	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(etcd.bin, sizeof(etcd.bin), "%.*s/etcd", (int)len, path);
		if (len && access(etcd.bin, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

/* Start etcd on etcd.dir and its ports (again, after a kill: same data)
 * and wait until it answers (polling, up to 30 s). */
static inline int etcd_start(void)
{
	char client[64], peer[64], cluster[80], data[80], log[80], url[64];
	uint64_t t0 = gv_now_ms();
	gv_kv *kv = NULL;
	gv_err e;

	snprintf(client, sizeof(client), "http://127.0.0.1:%d", etcd.client_port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", etcd.peer_port);
	snprintf(cluster, sizeof(cluster), "t=%s", peer);
	snprintf(data, sizeof(data), "%s/data", etcd.dir);
	snprintf(log, sizeof(log), "%s/etcd.log", etcd.dir);
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d", etcd.client_port);
	etcd.pid = fork();
	if (etcd.pid < 0)
		return -1;
	if (etcd.pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(etcd.bin, "etcd", "--name", "t", "--data-dir", data,
		      "--listen-client-urls", client, "--advertise-client-urls", client,
		      "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		      "--initial-cluster", cluster, "--logger", "zap", "--log-outputs", "stderr",
		      (char *)NULL);
		_exit(127);
	}
	while (gv_now_ms() - t0 < 30000) {
		if (gv_kv_open(url, &kv, &e) == 0) {
			gv_kv_close(kv);
			return 0;
		}
		if (waitpid(etcd.pid, NULL, WNOHANG) == etcd.pid) {
			etcd.pid = 0;
			break;
		}
	}
	fprintf(stderr, "etcd did not start (see %s): %s\n", log, e.msg);
	return -1;
}

static inline void etcd_kill(void)
{
	if (etcd.pid > 0) {
		kill(etcd.pid, SIGKILL);
		waitpid(etcd.pid, NULL, 0);
	}
	etcd.pid = 0;
}

/* The count of watchers of the etcd on @port (its /metrics), -1 if it
 * does not say. */
static inline int etcd_watchers_on(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	static char buf[1 << 20];
	const char *req = "GET /metrics HTTP/1.0\r\n\r\n", *m;
	int fd = socket(AF_INET, SOCK_STREAM, 0), n = -1;
	size_t len = 0;
	ssize_t k;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
		while (len < sizeof(buf) - 1 && (k = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t)k;
		buf[len] = '\0';
		m = strstr(buf, "\netcd_debugging_mvcc_watcher_total ");
		if (m)
			n = atoi(m + strlen("\netcd_debugging_mvcc_watcher_total "));
	}
	close(fd);
	return n;
}

/* etcd's count of its watchers, for the test etcd */
static inline int etcd_watchers(void)
{
	return etcd_watchers_on(etcd.client_port);
}

/* Start the test etcd (0), or say why not: 1 skipped, -1 a failure. */
static inline int etcd_setup(void)
{
	bool required = getenv("GV_TEST_ETCD") && !strcmp(getenv("GV_TEST_ETCD"), "require");

	if (!etcd_find()) {
		fprintf(stderr, "%s: no etcd binary ($GV_ETCD or etcd on PATH; Debian: etcd-server)%s\n",
			required ? "FAIL" : "SKIP the etcd group",
			required ? ", and GV_TEST_ETCD=require" : "");
		return required ? -1 : 1;
	}
	strcpy(etcd.dir, "/tmp/gv-etcd-XXXXXX");
	etcd.client_port = free_port();
	etcd.peer_port = free_port();
	if (!mkdtemp(etcd.dir) || etcd.client_port < 0 || etcd.peer_port < 0 ||
	    etcd.client_port == etcd.peer_port || etcd_start() < 0)
		return -1;
	fprintf(stderr, "etcd %s on 127.0.0.1:%d (data in %s)\n", etcd.bin, etcd.client_port,
		etcd.dir);
	return 0;
}

/* "etcd://127.0.0.1:PORT" of the test etcd (a static buffer) */
static inline const char *etcd_url(void)
{
	static char url[64];

	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d", etcd.client_port);
	return url;
}

/* Kill it and remove its data (after etcd_setup returned 0). */
static inline void etcd_teardown(void)
{
	etcd_kill();
	if (etcd.dir[0])
		gv_rm_rf(etcd.dir);
}

#endif
