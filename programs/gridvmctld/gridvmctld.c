/* SPDX-License-Identifier: MIT */
/*
 * gridvmctld - the grid controller: takes jobs from users, decides where
 * and when they run, follows them (as slurmctld is to slurmd). Agents join
 * it with `gridvmd --controller ADDR:PORT`; users reach it with
 * `gridvm --controller ADDR:PORT ...`. All the logic is lib/grid.
 */
#include <gridvm/base/util.h>
#include <gridvm/grid/ctl.h>
#include <gridvm/xfer/xfer.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
	quit = sig;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gridvmctld --listen ADDR:PORT [OPTIONS]\n"
		"The gridvm grid controller: schedules jobs over the agents that join it.\n\n"
		"  -l, --listen ADDR:PORT  where agents and users reach it (TCP, port %d if\n"
		"                          omitted); they must hold the grid key\n"
		"      --socket PATH       where this machine's users reach it, each as\n"
		"                          themselves (a unix socket; default\n"
		"                          $GRIDVM_DATA/gridvmctld.sock unless --data-dir is\n"
		"                          given; 'none': no socket; docs/security.md#users)\n"
		"      --quotas FILE       the users' quotas on jobs (default DIR/quotas.json)\n"
		"  -s, --store URL         the grid's state: sqlite:PATH (default\n"
		"                          sqlite:DATA/controller.db) or\n"
		"                          etcd://HOST:PORT[,HOST:PORT...] (docs/kv.md), or\n"
		"                          etcds://... over mutual TLS with this controller's\n"
		"                          certificate (gridvm ca issue NAME --role controller)\n"
		"  -d, --data-dir DIR      jobs' inputs, outputs and logs (default\n"
		"                          $GRIDVM_DATA/controller, or %s/controller)\n"
		"  -k, --grid-key FILE     the grid's shared key (default $GRIDVM_DATA/grid.key)\n"
		"      --policy P          pack, spread, load or locality (default pack)\n"
		"      --mode M            online (place each job on arrival) or batch\n"
		"      --queue Q           backfill (default), strict or greedy\n"
		"      --heuristic H       batch: min-min (default), max-min or sufferage\n"
		"      --batch-size N      batch: plan when N jobs wait (default 64)\n"
		"      --batch-wait D      batch: or when the oldest waited D (default 10s)\n"
		"      --report-interval D agents report this often (default 2s)\n"
		"      --replan-interval D consider moving running jobs this often (10s)\n"
		"      --max-moves N       moves per re-plan for gain (default 2; 0: none)\n"
		"      --locality-wait D   online: a job may wait up to D for a host that holds\n"
		"                          its image (delay scheduling; default 0: off)\n"
		"      --host-lease D      a host not heard from for D is suspect and its\n"
		"                          agent pauses its VMs (default 10s)\n"
		"      --host-grace D      lost after the lease and D more: its jobs are\n"
		"                          recovered elsewhere (default: the lease)\n"
		"      --checkpoint-replicas N  hosts each job's checkpoints are copied to\n"
		"                          (default 1; 0: none)\n"
		"      --metrics ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"      --leader-lease D    several controllers on one etcd store: one leads\n"
		"                          while it renews a lease of D, the others stand by\n"
		"                          and redirect (default 5s with etcd; the --listen\n"
		"                          address is what clients are sent to)\n"
		"      --daemon            detach and log to DATA/gridvmctld.log\n"
		"  -h, --help              show this help\n",
		GV_XFER_PORT, gv_data_dir());
}

static int seconds(const char *opt, const char *s, unsigned *out)
{
	uint64_t ms;

	if (gv_parse_duration_ms(s, &ms) < 0 || ms < 1000 || ms > 86400000ull) {
		fprintf(stderr, "gridvmctld: invalid %s '%s' (a duration such as 2s or 1m)\n", opt, s);
		return -1;
	}
	*out = (unsigned)(ms / 1000);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_POLICY = 256, O_MODE, O_QUEUE, O_HEUR, O_BSIZE, O_BWAIT, O_REPORT, O_REPLAN,
	       O_MOVES, O_DAEMON, O_METRICS, O_LEASE, O_GRACE, O_REPLICAS, O_LEADER,
	       O_LWAIT, O_SOCKET, O_QUOTAS };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "store", required_argument, NULL, 's' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "grid-key", required_argument, NULL, 'k' },
		{ "policy", required_argument, NULL, O_POLICY },
		{ "mode", required_argument, NULL, O_MODE },
		{ "queue", required_argument, NULL, O_QUEUE },
		{ "heuristic", required_argument, NULL, O_HEUR },
		{ "batch-size", required_argument, NULL, O_BSIZE },
		{ "batch-wait", required_argument, NULL, O_BWAIT },
		{ "report-interval", required_argument, NULL, O_REPORT },
		{ "replan-interval", required_argument, NULL, O_REPLAN },
		{ "max-moves", required_argument, NULL, O_MOVES },
		{ "locality-wait", required_argument, NULL, O_LWAIT },
		{ "host-lease", required_argument, NULL, O_LEASE },
		{ "host-grace", required_argument, NULL, O_GRACE },
		{ "checkpoint-replicas", required_argument, NULL, O_REPLICAS },
		{ "leader-lease", required_argument, NULL, O_LEADER },
		{ "daemon", no_argument, NULL, O_DAEMON },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "quotas", required_argument, NULL, O_QUOTAS },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	gv_ctl_opts o;
	gv_ctl *c = NULL;
	gv_err e = { "" };
	char *datadir = NULL, *keyfile = NULL, *lockpath, *sock = NULL;
	bool daemon = false, leader_set = false, again = false;
	int ch, r, lock;
	long n;

	gv_ctl_opts_default(&o);
	while ((ch = getopt_long(argc, argv, "l:s:d:k:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': o.listen = optarg; break;
		case 's': o.store = optarg; break;
		case 'd': datadir = strdup(optarg); break;
		case 'k': keyfile = strdup(optarg); break;
		case O_POLICY:
			if (gv_sched_policy_parse(optarg, &o.params.policy, &e) < 0)
				goto bad;
			break;
		case O_MODE:
			if (gv_sched_mode_parse(optarg, &o.params.mode, &e) < 0)
				goto bad;
			break;
		case O_QUEUE:
			if (gv_sched_queue_parse(optarg, &o.params.queue, &e) < 0)
				goto bad;
			break;
		case O_HEUR:
			if (gv_sched_heuristic_parse(optarg, &o.params.heuristic, &e) < 0)
				goto bad;
			break;
		case O_BSIZE:
		case O_MOVES:
		case O_REPLICAS: {
			char *end;
			n = strtol(optarg, &end, 10);
			if (*end || n < (ch == O_BSIZE ? 1 : 0) || n > (ch == O_REPLICAS ? 8 : 100000)) {
				fprintf(stderr, "gridvmctld: invalid --%s '%s'\n",
					ch == O_MOVES ? "max-moves" : ch == O_REPLICAS
					? "checkpoint-replicas" : "batch-size", optarg);
				return 2;
			}
			if (ch == O_MOVES)
				o.params.max_moves = (unsigned)n;
			else if (ch == O_REPLICAS)
				o.replicas = (unsigned)n;
			else
				o.params.batch_max = (unsigned)n;
			break;
		}
		case O_LEASE:
			if (seconds("--host-lease", optarg, &o.host_lease_s) < 0)
				return 2;
			break;
		case O_GRACE:
			if (seconds("--host-grace", optarg, &o.host_grace_s) < 0)
				return 2;
			break;
		case O_BWAIT:
			if (seconds("--batch-wait", optarg, &o.batch_wait_s) < 0)
				return 2;
			break;
		case O_REPORT:
			if (seconds("--report-interval", optarg, &o.report_s) < 0)
				return 2;
			break;
		case O_REPLAN:
			if (seconds("--replan-interval", optarg, &o.replan_s) < 0)
				return 2;
			break;
		case O_LWAIT: {
			uint64_t ms;
			if (gv_parse_duration_ms(optarg, &ms) < 0 || ms > 86400000ull) {
				fprintf(stderr, "gridvmctld: invalid --locality-wait '%s' (a duration "
					"such as 30s, up to a day; 0: off)\n", optarg);
				return 2;
			}
			o.params.locality_wait = (double)ms / 1000;
			break;
		}
		case O_DAEMON: daemon = true; break;
		case O_METRICS: o.metrics = optarg; break;
		case O_SOCKET: sock = strdup(optarg); break;
		case O_QUOTAS: o.quotas = optarg; break;
		case O_LEADER:
			if (seconds("--leader-lease", optarg, &o.leader_ttl_s) < 0)
				return 2;
			leader_set = true;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gridvmctld: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (!o.listen) {
		fprintf(stderr, "gridvmctld: --listen ADDR:PORT is required (see --help)\n");
		return 2;
	}
	if (!leader_set && o.store &&
	    (!strncmp(o.store, "etcd://", 7) || !strncmp(o.store, "etcds://", 8)))
		o.leader_ttl_s = 5; /* a replicated store: elect (docs/grid.md) */
	if (!sock && !datadir) /* the controller of this machine's data directory */
		sock = gv_strdupf("%s/gridvmctld.sock", gv_data_dir());
	if (sock && strcmp(sock, "none") && sock[0] != '/') {
		fprintf(stderr, "gridvmctld: --socket wants an absolute path or 'none'\n");
		return 2;
	}
	o.socket = sock && strcmp(sock, "none") ? sock : NULL;
	if (!datadir)
		datadir = gv_strdupf("%s/controller", gv_data_dir());
	if (!keyfile)
		keyfile = gv_strdupf("%s/grid.key", gv_data_dir());
	o.datadir = datadir;
	o.grid_key = keyfile;
	if (gv_mkdir_p(datadir, 0700) < 0) {
		fprintf(stderr, "gridvmctld: cannot create %s: %s\n", datadir, strerror(errno));
		return 1;
	}
	lockpath = gv_strdupf("%s/gridvmctld.lock", datadir);
	lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lockpath);
	if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "gridvmctld: another controller runs on %s\n", datadir);
		return 1;
	}
	if (daemon) {
		char *log = gv_strdupf("%s/gridvmctld.log", datadir);
		int d = gv_daemonize(log);
		free(log);
		if (d < 0)
			return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	/* a controller deposed (it lost the leadership, or its store failed)
	 * is replaced by a new one, which loads the grid from the store and
	 * stands by (or leads at once, without an election: gv_ctl_deposed) */
	while (!quit) {
		r = gv_ctl_start(&o, &c, &e);
		if (r < 0 && !again) {
			fprintf(stderr, "gridvmctld: %s\n", e.msg);
			return 1;
		}
		if (r < 0) { /* after a deposition: keep trying */
			fprintf(stderr, "gridvmctld: %s (trying again)\n", e.msg);
			poll(NULL, 0, 1000);
			continue;
		}
		if (!again)
			fprintf(stderr, "gridvmctld: controller on %s%s%s (%s, %s), data in %s%s\n",
				gv_ctl_addr(c), o.socket ? " and " : "", o.socket ? o.socket : "",
				gv_sched_policy_name(o.params.policy),
				gv_sched_mode_name(o.params.mode), datadir,
				o.leader_ttl_s ? "; campaigning for the leadership" : "");
		if (o.metrics && !again)
			fprintf(stderr, "gridvmctld: metrics on http://%s/metrics\n", o.metrics);
		while (!quit && !gv_ctl_deposed(c))
			poll(NULL, 0, 100); /* (a signal ends it) */
		if (quit)
			break;
		fprintf(stderr, "gridvmctld: deposed: starting again%s\n",
			o.leader_ttl_s ? ", as a standby" : " from the store");
		gv_ctl_stop(c);
		c = NULL;
		again = true;
	}
	fprintf(stderr, "gridvmctld: signal %d, stopping (jobs keep running on their hosts)\n",
		(int)quit);
	gv_ctl_stop(c);
	free(datadir);
	free(keyfile);
	free(sock);
	return 0;
bad:
	fprintf(stderr, "gridvmctld: %s\n", e.msg);
	return 2;
}
