/* SPDX-License-Identifier: MIT */
/*
 * gridagent_keeper.c - the fence keeper: a small process of its own that
 * outlives the agent, so that a grid VM stops when its host's lease runs
 * out even if the agent that should have paused it is dead or frozen.
 *
 * The agent's watchdog fences its VMs itself (gridagent_lease.c). That
 * fails if the agent is SIGKILLed, crashes or is stopped while its QEMUs
 * live on and its link is cut: the controller then recovers the job
 * elsewhere, and two copies would run. So the agent starts a keeper
 * (gridvmd --fence-keeper DATA, in a session of its own) and tells it,
 * through a pipe, its lease deadline at each watchdog tick. The keeper
 * acts when the deadline has passed and the agent is gone (the pipe
 * closed) or silent: it pauses every running grid VM through the VM's
 * fence monitor (a QMP socket no one else uses, so a dead agent's
 * half-done call cannot block it), and writes the VMs it paused to
 * DATA/grid/keeper-fenced.json. The agent, back or restarted, takes that
 * file over and holds those VMs as fenced: they go on only when the
 * controller confirms they are still bound here (gridagent_lease.c).
 *
 * A keeper whose agent is gone exits once it has fenced, or at once if
 * no lease is held. A new agent kills the keeper its predecessor left
 * (DATA/grid/keeper.pid) once its own is running. docs/host-loss.md.
 */
#include "gridagent_internal.h"

#include <gridvm/base/util.h>
#include <gridvm/vmm/qmp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The agent is taken as away when it has not written for this long
 * (its watchdog writes every 100 ms). */
#define SILENT_MS 2000
#define KEEPER_FD 3

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char ts[32];
	time_t t = time(NULL);
	struct tm tm;
	va_list ap;

	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s gridvmd fence keeper[%d]: ", ts, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* Add @name to DATA/grid/keeper-fenced.json (a JSON array). */
static void note_fenced(const char *datadir, const char *name)
{
	char *path = gv_strdupf("%s/grid/keeper-fenced.json", datadir), *text;
	json_t *a = json_load_file(path, 0, NULL);

	if (!json_is_array(a)) {
		json_decref(a);
		a = json_array();
	}
	json_array_append_new(a, json_string(name));
	text = json_dumps(a, JSON_COMPACT);
	if (!text || gv_write_file_atomic(path, text, strlen(text)) < 0)
		say("cannot write %s", path);
	free(text);
	json_decref(a);
	free(path);
}

/* Pause every running grid VM (job-*) of @datadir through its fence
 * monitor. Returns how many it could not ask. */
static unsigned fence_all(const char *datadir)
{
	char *vms = gv_strdupf("%s/vms", datadir);
	DIR *d = opendir(vms);
	struct dirent *de;
	unsigned failed = 0;

	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "job-", 4))
			continue;
		char *sock = gv_strdupf("%s/%s/fence.sock", vms, de->d_name);
		json_t *st = NULL;
		gv_qmp *q = NULL;
		int r;

		if (access(sock, F_OK) < 0) { /* (not running) */
			free(sock);
			continue;
		}
		r = gv_qmp_connect(sock, 2000, &q);
		if (r == 0)
			r = gv_qmp_execute(q, "query-status", NULL, 2000, &st, NULL);
		const char *status = r == 0 ? json_string_value(json_object_get(st, "status")) : NULL;
		if (r == 0 && status && !strcmp(status, "running")) {
			r = gv_qmp_execute(q, "stop", NULL, 5000, NULL, NULL);
			if (r == 0) {
				say("paused %s: the agent is away and the lease ran out", de->d_name);
				note_fenced(datadir, de->d_name);
			}
		}
		/* (refused, gone: its QEMU has ended) */
		if (r < 0 && r != -ECONNREFUSED && r != -ENOENT) {
			say("cannot fence %s: %s", de->d_name, strerror(-r));
			failed++;
		}
		json_decref(st);
		gv_qmp_free(q);
		free(sock);
	}
	if (d)
		closedir(d);
	free(vms);
	return failed;
}

/* The deadline the agent last wrote down (lease.json), on this boot. */
static uint64_t saved_deadline(const char *datadir)
{
	char *path = gv_strdupf("%s/grid/lease.json", datadir), *boot = NULL;
	json_t *o = json_load_file(path, 0, NULL);
	uint64_t until = 0;

	if (gv_read_file("/proc/sys/kernel/random/boot_id", &boot, NULL) == 0) {
		boot[strcspn(boot, "\n")] = '\0';
		if (!strcmp(json_string_value(json_object_get(o, "boot")) ?: "-", boot))
			until = (uint64_t)json_integer_value(json_object_get(o, "until_ms"));
	}
	free(boot);
	json_decref(o);
	free(path);
	return until;
}

int gv_fence_keeper_main(const char *datadir)
{
	char *grid = gv_strdupf("%s/grid", datadir);
	uint64_t until = saved_deadline(datadir), heard = ga_mono_ms();
	bool gone = false, acted = false;
	int fd = KEEPER_FD, tries = 0;
	struct stat sb;

	signal(SIGPIPE, SIG_IGN);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	say("watching the agent's lease for %s", datadir);
	while (stat(grid, &sb) == 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t v[64], now;
		ssize_t k;

		if (!gone)
			(void)poll(&pfd, 1, 100);
		else
			(void)nanosleep(&(struct timespec){ 0, 100 * 1000000L }, NULL);
		while (!gone && (k = read(fd, v, sizeof(v))) != 0) {
			if (k < 0) {
				if (errno == EINTR)
					continue;
				break; /* EAGAIN: all read */
			}
			if (k >= (ssize_t)sizeof(v[0])) {
				until = v[k / sizeof(v[0]) - 1];
				heard = ga_mono_ms();
			}
		}
		if (!gone && k == 0) {
			gone = true;
			close(fd);
			say("the agent is gone; %s", until ? "the grid's VMs are paused when its lease "
				"runs out" : "it held no lease");
		}
		now = ga_mono_ms();
		if (now < until || (!gone && now - heard < SILENT_MS)) {
			acted = false;
			continue;
		}
		if (!acted && !gone)
			say("the agent has been silent for %" PRIu64 " ms and its lease ran out",
			    now - heard);
		/* (alone: done once every VM was asked; tried again a while
		 * for one that could not be) */
		if (fence_all(datadir) == 0 || ++tries >= 100) {
			if (gone)
				break;
		}
		acted = true;
	}
	say("done");
	free(grid);
	return 0;
}

/* The keeper a previous agent left, if it still runs: killed. */
static void kill_old_keeper(const char *pidfile, pid_t except)
{
	char *s = NULL, path[64], *cmd = NULL;
	size_t len = 0;
	pid_t pid;

	if (gv_read_file(pidfile, &s, NULL) < 0)
		return;
	pid = (pid_t)atoi(s);
	free(s);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (pid <= 1 || pid == except || gv_read_file(path, &cmd, &len) < 0)
		return;
	for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
		if (!strcmp(cmd + i, "--fence-keeper")) {
			kill(pid, SIGKILL);
			break;
		}
	free(cmd);
}

int ga_keeper_start(gv_gridagent *g)
{
	const char *datadir = gv_host_datadir(g->h);
	char *dir = gv_strdupf("%s/grid", datadir), *log = gv_strdupf("%s/keeper.log", dir);
	char *pidfile = gv_strdupf("%s/keeper.pid", dir), *text, exe[4096];
	char *argv[] = { "gridvmd", "--fence-keeper", (char *)datadir, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	int p[2] = { -1, -1 }, r;
	pid_t pid = 0;

	if (gv_mkdir_p(dir, 0700) < 0 || pipe2(p, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[0], KEEPER_FD);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	/* a session of its own: a signal to the agent's group spares it */
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
				 POSIX_SPAWN_SETSIGDEF);
	/* (this very program, by its path: it is named gridvmd in ps) */
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	/* (replaced since it started: "PATH (deleted)") */
	if (n <= 0 || access(exe, X_OK) < 0)
		snprintf(exe, sizeof(exe), "/proc/self/exe");
	r = -posix_spawn(&pid, exe, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(p[0]);
	if (r < 0) {
		close(p[1]);
		goto out;
	}
	fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
	kill_old_keeper(pidfile, pid);
	text = gv_strdupf("%d\n", (int)pid);
	if (gv_write_file_atomic(pidfile, text, strlen(text)) < 0)
		fprintf(stderr, "gridvmd: cannot write %s\n", pidfile);
	free(text);
	g->keeper_fd = p[1];
	g->keeper_pid = pid;
out:
	free(dir);
	free(log);
	free(pidfile);
	return r;
}

void ga_keeper_beat(gv_gridagent *g)
{
	uint64_t until = g->lease_until;

	/* (a full pipe or a dead keeper: nothing to do about it here) */
	if (g->keeper_fd > 0 && write(g->keeper_fd, &until, sizeof(until)) < 0)
		(void)errno;
	if (g->keeper_pid > 0 && waitpid(g->keeper_pid, NULL, WNOHANG) == g->keeper_pid) {
		fprintf(stderr, "gridvmd: the fence keeper (pid %d) ended\n", (int)g->keeper_pid);
		g->keeper_pid = 0;
	}
}

void ga_keeper_stop(gv_gridagent *g)
{
	if (g->keeper_fd > 0)
		close(g->keeper_fd); /* it goes on alone: it fences when the lease runs out */
	g->keeper_fd = -1;
}

/* The VMs the keeper paused while this agent (or its predecessor) was
 * away: held as fenced, so they go on only when the controller confirms
 * them (ga_settle). mu free. */
void ga_keeper_claim(gv_gridagent *g)
{
	char *path = gv_strdupf("%s/grid/keeper-fenced.json", gv_host_datadir(g->h));
	char *taken = gv_strdupf("%s.taken", path);
	json_t *a = NULL, *v;
	size_t i;

	if (rename(path, taken) == 0)
		a = json_load_file(taken, 0, NULL);
	json_array_foreach(a, i, v) {
		const char *name = json_string_value(v) ?: "";
		uint64_t id = strncmp(name, "job-", 4) ? 0 : strtoull(name + 4, NULL, 10);
		gv_err e = { "" };

		if (!id)
			continue;
		/* the VM's record says what QEMU is: paused (an error if it
		 * was already, or is gone: nothing to do then) */
		if (gv_vm_pause(g->h, name, &e) < 0)
			e.msg[0] = '\0';
		pthread_mutex_lock(&g->mu);
		struct gjob *j = gjob_find(g, id, true);
		if (j && !j->fenced) {
			j->fenced = true;
			ga_held_save(g);
			fprintf(stderr, "gridvmd: fenced %s (paused by the fence keeper while the "
				"agent was away)\n", name);
		}
		pthread_mutex_unlock(&g->mu);
	}
	if (a)
		unlink(taken);
	json_decref(a);
	free(taken);
	free(path);
}
