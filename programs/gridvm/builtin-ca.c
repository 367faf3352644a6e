/* SPDX-License-Identifier: MIT */
/* builtin-ca.c - gridvm ca: the grid's certificate authority (init, issue,
 * revoke) and this host's TLS status. The work is in lib/xfer/xfer_ca.c. */
#include "cli.h"

#include <gridvm/base/util.h>
#include <gridvm/xfer/ca.h>
#include <gridvm/xfer/tls.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *default_dir(const char *opt, const char *leaf)
{
	return opt ? strdup(opt) : gv_strdupf("%s/%s", gv_data_dir(), leaf);
}

static int parse_days(const char *s, int *days)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v < 1 || v > 36500)
		return cli_error("--days wants a number of days (1..36500), not '%s'", s), -1;
	*days = (int)v;
	return 0;
}

static int ca_init(int argc, char **argv)
{
	static const struct option opts[] = { { "dir", required_argument, NULL, 'd' },
					      { "name", required_argument, NULL, 'n' },
					      { "days", required_argument, NULL, 'D' },
					      { NULL, 0, NULL, 0 } };
	const char *dir = NULL, *name = NULL;
	int days = 3650, c;
	gv_err e = { "" };

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm ca init [--dir DIR] [--name NAME] [--days N]\n"
		     "Make the grid's certificate authority: a P-256 key (DIR/ca.key, mode 0600)\n"
		     "and a self-signed certificate (DIR/ca.crt), valid N days (3650), and an\n"
		     "empty revocation list (DIR/crl.pem). DIR defaults to DATA/ca. Keep the key\n"
		     "on one machine; hosts get only ca.crt, with their own certificate\n"
		     "('gridvm ca issue').");
		return 0;
	}
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'd')
			dir = optarg;
		else if (c == 'n')
			name = optarg;
		else if (c != 'D' || parse_days(optarg, &days) < 0)
			return 2;
	}
	if (optind < argc)
		return cli_error("unexpected argument '%s' (see --help)", argv[optind]), 2;
	char *d = default_dir(dir, "ca");
	int r = gv_ca_init(d, name, days, &e);
	if (r < 0)
		cli_error("%s", e.msg);
	else
		printf("made a grid CA in %s (ca.key stays here; give hosts ca.crt with their "
		       "certificates: 'gridvm ca issue HOST --role agent --addr IP')\n", d);
	free(d);
	return r < 0 ? 1 : 0;
}

static int ca_issue(int argc, char **argv)
{
	static const struct option opts[] = { { "role", required_argument, NULL, 'r' },
					      { "addr", required_argument, NULL, 'a' },
					      { "out", required_argument, NULL, 'o' },
					      { "ca", required_argument, NULL, 'c' },
					      { "days", required_argument, NULL, 'D' },
					      { NULL, 0, NULL, 0 } };
	const char *role = NULL, *out = NULL, *ca = NULL, **addrs = NULL;
	size_t naddrs = 0;
	int days = 825, c, r;
	gv_err e = { "" };

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm ca issue HOST --role agent|controller [--addr IP]...\n"
		     "                       [--out DIR] [--ca DIR] [--days N]\n"
		     "       gridvm ca issue USER --role user --out DIR [--ca DIR] [--days N]\n"
		     "A key and a certificate for HOST signed by the grid CA (--ca, default\n"
		     "DATA/ca): CN and subjectAltName name HOST and every --addr (peers check\n"
		     "that the address they dial is listed: give each address the host is\n"
		     "reached at), OU its role. Written with the CA certificate and the current\n"
		     "revocation list to DIR (default DATA/tls, where the agent finds them):\n"
		     "ca.crt, host.crt, host.key (0600), crl.pem. Valid N days (825). With\n"
		     "them the agent talks mutual TLS 1.3 to its peers and its migrations'\n"
		     "memory streams use TLS; see docs/security.md.\n"
		     "A user's certificate (--role user, client use only) lets USER reach the\n"
		     "controller from any machine as USER (GRIDVM_TLS_DIR=DIR gridvm\n"
		     "--controller ADDR:PORT ...); agents refuse it. Give DIR to the user.");
		return 0;
	}
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'r') {
			role = optarg;
		} else if (c == 'a') {
			addrs = realloc(addrs, (naddrs + 1) * sizeof(*addrs));
			addrs[naddrs++] = optarg;
		} else if (c == 'o') {
			out = optarg;
		} else if (c == 'c') {
			ca = optarg;
		} else if (c != 'D' || parse_days(optarg, &days) < 0) {
			free(addrs);
			return 2;
		}
	}
	if (optind + 1 != argc || !role) {
		free(addrs);
		return cli_error("usage: gridvm ca issue HOST --role agent|controller|user "
				 "[--addr IP]... (see --help)"), 2;
	}
	char *cd = default_dir(ca, "ca"), *od = default_dir(out, "tls");
	r = gv_ca_issue(cd, argv[optind], role, addrs, naddrs, days, od, &e);
	if (r < 0)
		cli_error("%s", e.msg);
	else
		printf("issued a certificate for %s (%s) in %s\n", argv[optind], role, od);
	free(cd);
	free(od);
	free(addrs);
	return r < 0 ? 1 : 0;
}

static int ca_revoke(int argc, char **argv)
{
	static const struct option opts[] = { { "ca", required_argument, NULL, 'c' },
					      { NULL, 0, NULL, 0 } };
	const char *ca = NULL;
	char *crl = NULL;
	gv_err e = { "" };
	int c, r;

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm ca revoke HOST [--ca DIR]\n"
		     "Revoke the last certificate issued to HOST and write the CA's revocation\n"
		     "list anew (DIR/crl.pem, DIR default DATA/ca; also DATA/tls/crl.pem if this\n"
		     "host has TLS material). Copy it to every host's DATA/tls/crl.pem: agents\n"
		     "read it again at their next connection and refuse the revoked host.");
		return 0;
	}
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'c')
			return 2;
		ca = optarg;
	}
	if (optind + 1 != argc)
		return cli_error("usage: gridvm ca revoke HOST (see --help)"), 2;
	char *cd = default_dir(ca, "ca");
	r = gv_ca_revoke(cd, argv[optind], &crl, &e);
	if (r < 0) {
		cli_error("%s", e.msg);
	} else {
		char *local = gv_strdupf("%s/tls/crl.pem", gv_data_dir()), *buf = NULL;
		char *lca = gv_strdupf("%s/tls/ca.crt", gv_data_dir());
		size_t len = 0;
		if (access(lca, F_OK) == 0 && gv_read_file(crl, &buf, &len) == 0 &&
		    gv_write_file_atomic(local, buf, len) == 0)
			printf("updated %s\n", local);
		printf("revoked %s; copy %s to every host's DATA/tls/crl.pem\n", argv[optind], crl);
		free(buf);
		free(local);
		free(lca);
	}
	free(cd);
	free(crl);
	return r < 0 ? 1 : 0;
}

static int ca_status(int argc, char **argv)
{
	gv_tls *t = gv_tls_default();
	gv_err e = { "" };
	char name[256], role[32];

	if (cli_wants_help(argc, argv)) {
		puts("Usage: gridvm ca status\n"
		     "Whether this host talks TLS to its peers: its certificate's name and role,\n"
		     "or why not (no material in DATA/tls: the shared grid key is used).");
		return 0;
	}
	if (gv_tls_enabled(t, &e)) {
		gv_tls_identity(t, name, sizeof(name), role, sizeof(role));
		printf("tls: on, this host is %s (%s), material in %s\n", name, role, gv_tls_dir(t));
		return 0;
	}
	if (e.msg[0])
		return cli_error("%s", e.msg), 1;
	printf("tls: off, no certificate in %s (peers authenticate with the shared grid key)\n",
	       gv_tls_dir(t));
	return 0;
}

static const struct cli_cmd ca_cmds[] = {
	{ "init", ca_init, "make the grid's certificate authority (DATA/ca)" },
	{ "issue", ca_issue, "a certificate for a host and its role (to DATA/tls)" },
	{ "revoke", ca_revoke, "revoke a host's certificate; writes the CRL" },
	{ "status", ca_status, "whether this host uses TLS, and as whom" },
	{ NULL, NULL, NULL } };

int cmd_ca(int argc, char **argv)
{
	return cli_dispatch("gridvm ca", ca_cmds, argc, argv);
}
