/* SPDX-License-Identifier: MIT */
/* builtin-submit.c - `gridvm submit`: a job to the grid; prints its id. */
#include "cli.h"

#include <getopt.h>
#include <gridvm/base/b64.h>
#include <gridvm/base/util.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fputs("Usage: gridvm [--controller ADDR:PORT] submit [OPTIONS] -- CMD [ARG...]\n"
	      "Submit a job to the grid: CMD runs in a VM on a host the controller\n"
	      "chooses. Prints the job's id ('gridvm job wait ID' returns its exit code).\n\n"
	      "  -n, --name NAME            a name to recognise it by\n"
	      "  -i, --image IMAGE          the VM image (default: default)\n"
	      "  -c, --cpus N               vCPUs (default 1)\n"
	      "  -m, --memory SIZE          guest memory (default 512M)\n"
	      "      --requires EXPR        hosts it may run on, e.g.\n"
	      "                             'memory >= 4G && \"cell\" in labels'\n"
	      "      --rank EXPR            hosts it prefers (higher is better)\n"
	      "      --priority P           higher runs first (default 0)\n"
	      "      --walltime D           how long it runs, about (helps backfill)\n"
	      "      --checkpoint-every D   checkpoint it this often\n"
	      "      --checkpoint-keep all|N  keep all checkpoints or the last N\n"
	      "      --checkpoint-drop-on-success  delete them when it exits 0\n"
	      "      --checkpoint-replicas N  copy them to N other hosts as they are made\n"
	      "                             (0 to 8; default: the controller's, 1)\n"
	      "      --input PATH[:GUEST_PATH]  a file or directory it reads\n"
	      "      --output GUEST_PATH    a file or directory to collect when it ends\n"
	      "                             ('gridvm job output ID DIR')\n"
	      "  -e, --env NAME=VALUE       environment of the command\n"
	      "      --json                 print {\"id\": N}\n"
	      "Expressions: docs/expressions.md. Sizes: 512M, 2G; durations: 90s, 30m, 2h.\n",
	      f);
}

int cmd_submit(int argc, char **argv)
{
	enum { O_REQ = 256, O_RANK, O_PRI, O_WALL, O_CKE, O_CKK, O_CKD, O_CKR, O_IN, O_OUT, O_JSON };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "image", required_argument, NULL, 'i' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "env", required_argument, NULL, 'e' },
		{ "requires", required_argument, NULL, O_REQ },
		{ "rank", required_argument, NULL, O_RANK },
		{ "priority", required_argument, NULL, O_PRI },
		{ "walltime", required_argument, NULL, O_WALL },
		{ "checkpoint-every", required_argument, NULL, O_CKE },
		{ "checkpoint-keep", required_argument, NULL, O_CKK },
		{ "checkpoint-drop-on-success", no_argument, NULL, O_CKD },
		{ "checkpoint-replicas", required_argument, NULL, O_CKR },
		{ "input", required_argument, NULL, O_IN },
		{ "output", required_argument, NULL, O_OUT },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	json_t *req = json_object(), *cmd = json_array(), *outs = json_array(), *env = json_array();
	json_t *inputs = json_array(), *rep = NULL;
	bool as_json = false;
	int ch, rc = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "+n:i:c:m:e:h", opts, NULL)) != -1) {
		char *end;
		long n;
		switch (ch) {
		case 'n': json_object_set_new(req, "name", json_string(optarg)); break;
		case 'i': json_object_set_new(req, "image", json_string(optarg)); break;
		case 'c':
			n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 64) {
				cli_error("invalid --cpus '%s' (1 to 64)", optarg);
				goto out;
			}
			json_object_set_new(req, "cpus", json_integer(n));
			break;
		case 'm': json_object_set_new(req, "memory", json_string(optarg)); break;
		case 'e': json_array_append_new(env, json_string(optarg)); break;
		case O_REQ: json_object_set_new(req, "requires", json_string(optarg)); break;
		case O_RANK: json_object_set_new(req, "rank", json_string(optarg)); break;
		case O_PRI:
			n = strtol(optarg, &end, 10);
			if (*end || !*optarg) {
				cli_error("invalid --priority '%s' (an integer)", optarg);
				goto out;
			}
			json_object_set_new(req, "priority", json_integer(n));
			break;
		case O_WALL: json_object_set_new(req, "walltime", json_string(optarg)); break;
		case O_CKE: json_object_set_new(req, "checkpoint_every", json_string(optarg)); break;
		case O_CKK: json_object_set_new(req, "checkpoint_keep", json_string(optarg)); break;
		case O_CKD: json_object_set_new(req, "checkpoint_drop_on_success", json_true()); break;
		case O_CKR: json_object_set_new(req, "checkpoint_replicas", json_string(optarg)); break;
		case O_IN: json_array_append_new(inputs, json_string(optarg)); break;
		case O_OUT: json_array_append_new(outs, json_string(optarg)); break;
		case O_JSON: as_json = true; break;
		case 'h': usage(stdout); rc = 0; goto out;
		default: usage(stderr); rc = 2; goto out;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc) {
		cli_error("no command: gridvm submit [OPTIONS] -- CMD [ARG...]");
		rc = 2;
		goto out;
	}
	for (int i = optind; i < argc; i++)
		json_array_append_new(cmd, json_string(argv[i]));
	json_object_set_new(req, "cmd", cmd);
	cmd = NULL;
	if (json_array_size(outs))
		json_object_set(req, "outputs", outs);
	if (json_array_size(env))
		json_object_set(req, "env", env);
	if (json_array_size(inputs) && cli_grid_upload_inputs(inputs, req) < 0)
		goto out;
	json_object_set_new(req, "uid", json_integer((json_int_t)getuid()));
	json_object_set_new(req, "op", json_string("submit"));
	/* with an input, the controller answers once the other controllers
	 * copied it (docs/grid.md): a minute, and a second per 4 MiB */
	json_int_t in_bytes = json_integer_value(json_object_get(req, "input_bytes"));
	if (cli_grid_call_within(json_incref(req), &rep, 60000 + (int)(in_bytes / 4194)) < 0)
		goto out;
	if (as_json)
		cli_print_json(json_pack("{s:O}", "id", json_object_get(rep, "id")));
	else
		printf("%lld\n", (long long)json_integer_value(json_object_get(rep, "id")));
	rc = 0;
out:
	json_decref(rep);
	json_decref(req);
	json_decref(cmd);
	json_decref(outs);
	json_decref(env);
	json_decref(inputs);
	return rc;
}
