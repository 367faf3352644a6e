/* SPDX-License-Identifier: MIT */
/*
 * gridvmd - the node agent. Owns the VMs of this host and serves the
 * gridvm API on a unix socket. Stopping it leaves the VMs running; the next
 * gridvmd reattaches to them.
 */
#include <gridvm/vmm/confine.h>
#include <gridvm/api/agent.h>
#include <gridvm/api/client.h>
#include <gridvm/api/gridagent.h>
#include <gridvm/api/metrics.h>
#include <gridvm/node/image.h>
#include <gridvm/node/migrate.h>
#include <gridvm/xfer/tls.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
	quit = sig;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gridvmd [OPTIONS]\n"
		"The gridvm node agent: runs this host's VMs and serves the API.\n\n"
		"  -d, --data-dir DIR  data directory (default $GRIDVM_DATA or %s)\n"
		"  -s, --socket PATH   API socket (default DATA/gridvmd.sock); every local\n"
		"                      user may use it, each as themselves (only group\n"
		"                      gridvm's members if that group exists)\n"
		"      --quotas FILE   the users' quotas (default DATA/quotas.json;\n"
		"                      docs/security.md#users)\n"
		"      --daemon        detach and log to DATA/gridvmd.log\n"
		"  -l, --listen ADDR   serve images to peer hosts on ADDR[:PORT] (TCP,\n"
		"                      port %d); peers must hold the grid key\n"
		"  -k, --grid-key FILE the grid's shared key (default DATA/grid.key;\n"
		"                      make one with 'gridvm host keygen')\n"
		"  -c, --controller ADDR:PORT  join the grid of this controller (needs\n"
		"                      --listen): report to it, run the jobs it binds here\n"
		"      --name NAME     this host's name in the grid (default: hostname)\n"
		"      --site SITE     the host's site (attribute 'site')\n"
		"      --label K=V,... attributes the host starts with (K alone: true)\n"
		"      --grid-cpus N   vcpus offered to the grid (default: all online)\n"
		"      --grid-memory SIZE  memory offered to the grid (default: all but 512M)\n"
		"      --grid-speed X  CPU speed relative to the grid's reference host\n"
		"                      (default 1; the scheduler moves jobs to faster hosts)\n"
		"      --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"  -h, --help          show this help\n",
		gv_data_dir(), GV_XFER_PORT);
}

/* One agent per data directory. */
static int take_lock(const char *datadir)
{
	char *path = gv_strdupf("%s/gridvmd.lock", datadir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	free(path);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
		return -1;
	return fd;
}

/* The agent's metrics, and its membership of the grid if it joined one. */
struct metrics_ctx {
	gv_host *h;
	gv_gridagent *ga;
};

static void metrics(void *ud, gv_metrics_buf *b)
{
	struct metrics_ctx *m = ud;

	gv_agent_metrics(m->h, b);
	if (m->ga)
		gv_metrics_gauge(b, "gridvm_grid_joined",
				 "1 if the controller answered this agent's last report, else 0.",
				 gv_gridagent_joined(m->ga), NULL);
}

static int start_transfer(gv_host *h, const char *addr, gv_xfer_server **xs, gv_err *e)
{
	uint8_t key[GV_XFER_KEY_LEN];
	int r = gv_xfer_key_load(gv_host_grid_key(h), key);

	if (r < 0)
		return gv_err_set(e, r, "cannot read the grid key %s (%s); give this host a "
				  "certificate of the grid CA ('gridvm ca issue'), or create a key "
				  "with 'gridvm host keygen' and copy it to every host",
				  gv_host_grid_key(h), strerror(-r));
	r = gv_xfer_server_start(addr, key, gv_image_xfer_resolve, h, xs, e);
	if (r == 0) {
		char full[300];
		snprintf(full, sizeof(full), strchr(addr, ':') ? "%s" : "%s:%d", addr,
			 GV_XFER_PORT);
		gv_host_set_xfer_addr(h, full);
		gv_xfer_server_set_control(*xs, gv_gridagent_control);
		gv_xfer_server_set_dirty(*xs, gv_host_disk_dirty);
		char name[256] = "", role[32] = "";
		gv_err why = { "" };
		bool tls = gv_tls_enabled(gv_tls_default(), &why);
		if (tls) {
			gv_tls_identity(gv_tls_default(), name, sizeof(name), role, sizeof(role));
			fprintf(stderr, "gridvmd: serving images and migrations on %s, mutual TLS "
				"as %s (%s)\n", full, name, role);
		} else {
			fprintf(stderr, "gridvmd: serving images and migrations on %s, peers with "
				"the shared grid key%s%s\n", full, why.msg[0] ? "; " : "", why.msg);
		}
	}
	return r;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "daemon", no_argument, NULL, 'D' },
		{ "listen", required_argument, NULL, 'l' },
		{ "grid-key", required_argument, NULL, 'k' },
		{ "controller", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'N' },
		{ "site", required_argument, NULL, 'S' },
		{ "label", required_argument, NULL, 'L' },
		{ "grid-cpus", required_argument, NULL, 'C' },
		{ "grid-memory", required_argument, NULL, 'M' },
		{ "grid-speed", required_argument, NULL, 'V' },
		{ "metrics", required_argument, NULL, 'P' },
		{ "quotas", required_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	char *sock = NULL, *listen = NULL, *keyfile = NULL;
	gv_xfer_server *xs = NULL;
	bool daemon = false;
	gv_host *h = NULL;
	gv_agent *a = NULL;
	gv_gridagent *ga = NULL;
	gv_gridagent_opts go = { 0 };
	const char *metrics_addr = NULL, *quotas = NULL;
	gv_metrics_server *ms = NULL;
	struct metrics_ctx mc = { 0 };
	gv_err e = { "" };
	int c, r;

	/* (the fence keeper an agent in a grid starts: lib/api/gridagent_keeper.c) */
	if (argc == 3 && !strcmp(argv[1], "--fence-keeper"))
		return gv_fence_keeper_main(argv[2]) < 0 ? 1 : 0;
	while ((c = getopt_long(argc, argv, "d:s:l:k:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': setenv("GRIDVM_DATA", optarg, 1); break;
		case 's': sock = strdup(optarg); break;
		case 'D': daemon = true; break;
		case 'l': listen = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'c': go.controller = optarg; break;
		case 'N': go.name = optarg; break;
		case 'S': go.site = optarg; break;
		case 'L': go.labels = optarg; break;
		case 'C': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 4096) {
				fprintf(stderr, "gridvmd: invalid --grid-cpus '%s'\n", optarg);
				return 2;
			}
			go.cpus = (unsigned)n;
			break;
		}
		case 'M':
			if (gv_parse_size(optarg, 1 << 20, &go.memory) < 0 || go.memory < (64 << 20)) {
				fprintf(stderr, "gridvmd: invalid --grid-memory '%s'\n", optarg);
				return 2;
			}
			break;
		case 'V': {
			char *end;
			go.speed = strtod(optarg, &end);
			if (*end || !(go.speed >= 0.01 && go.speed <= 100)) {
				fprintf(stderr, "gridvmd: invalid --grid-speed '%s' (0.01 to 100)\n",
					optarg);
				return 2;
			}
			break;
		}
		case 'P': metrics_addr = optarg; break;
		case 'Q': quotas = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!sock)
		sock = gv_client_socket_path();
	if (gv_mkdir_p(gv_data_dir(), 0755) < 0) {
		fprintf(stderr, "gridvmd: cannot create %s: %s\n", gv_data_dir(),
			strerror(errno));
		return 1;
	}
	if (take_lock(gv_data_dir()) < 0) {
		fprintf(stderr, "gridvmd: another agent runs on %s\n", gv_data_dir());
		return 1;
	}
	if (daemon) {
		char *log = gv_strdupf("%s/gridvmd.log", gv_data_dir());
		int d = gv_daemonize(log);
		free(log);
		if (d < 0)
			return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	r = gv_host_open(gv_data_dir(), &h, &e);
	if (r == 0) {
		gv_host_reattach(h);
		r = gv_agent_start(h, sock, &a, &e);
	}
	if (r == 0 && quotas)
		gv_agent_set_quotas(a, quotas);
	if (r == 0 && keyfile)
		gv_host_set_grid_key(h, keyfile);
	if (r == 0 && listen)
		r = start_transfer(h, listen, &xs, &e);
	if (r == 0 && go.controller) {
		char full[300];
		if (!listen) {
			r = gv_err_set(&e, -EINVAL, "--controller needs --listen ADDR: the controller "
				       "and the other hosts reach this agent there");
		} else {
			snprintf(full, sizeof(full), strchr(listen, ':') ? "%s" : "%s:%d", listen,
				 GV_XFER_PORT);
			go.addr = full;
			r = gv_gridagent_start(h, &go, &ga, &e);
		}
	}
	if (r == 0 && metrics_addr) {
		mc = (struct metrics_ctx){ h, ga };
		r = gv_metrics_start(metrics_addr, metrics, &mc, &ms, &e);
		if (r == 0)
			fprintf(stderr, "gridvmd: metrics on http://%s/metrics\n", metrics_addr);
	}
	if (r < 0) {
		fprintf(stderr, "gridvmd: %s\n", e.msg);
		gv_gridagent_stop(ga);
		gv_xfer_server_stop(xs);
		gv_agent_stop(a);
		gv_host_close(h);
		return 1;
	}
	fprintf(stderr, "gridvmd: serving %s on %s\n", gv_data_dir(), sock);
	{ /* an administrator reads here how QEMU runs, or why no VM can start */
		gv_qemu_users u;
		gv_err qe = { "" };
		if (gv_qemu_users_load(&u, &qe) < 0)
			fprintf(stderr, "gridvmd: warning: no VM can start: %s\n", qe.msg);
		else if (!u.confined)
			fprintf(stderr, "gridvmd: warning: QEMU is not confined: %s\n", u.why);
		else
			fprintf(stderr, "gridvmd: QEMU runs confined: VMs as uids %u-%u of %s\n",
				(unsigned)u.first_uid, (unsigned)(u.first_uid + u.count - 1), u.name);
	}
	while (!quit) {
		sleep(1);
		gv_host_refresh_all(h);
	}
	fprintf(stderr, "gridvmd: signal %d, stopping (VMs keep running)\n", (int)quit);
	gv_metrics_stop(ms);
	gv_gridagent_stop(ga);
	gv_xfer_server_stop(xs);
	gv_agent_stop(a);
	gv_host_close(h);
	free(sock);
	return 0;
}
