/* SPDX-License-Identifier: MIT */
/* builtin-image.c - `gridvm image VERB`: the host's image store. */
#include "cli.h"

#include <getopt.h>
#include <gridvm/base/util.h>
#include <gridvm/vmm/vmdef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int img_usage(FILE *f, const char *text)
{
	fputs(text, f);
	return f == stdout ? 0 : 2;
}

static void on_build_text(void *ud, const char *line)
{
	fprintf(stderr, "  %s\n", line);
}

static int image_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "suite", required_argument, NULL, 's' },
		{ "packages", required_argument, NULL, 'p' },
		{ "mirror", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	static const char help[] =
		"Usage: gridvm image build NAME --suite SUITE [--packages P1,P2]\n"
		"Build a Debian root filesystem image with debootstrap (minbase) as a\n"
		"raw ext4 disk. Jobs in VMs using it run with its own software.\n\n"
		"  -s, --suite SUITE     bullseye, bookworm, trixie, ...\n"
		"  -p, --packages LIST   extra packages, comma separated\n"
		"      --mirror URL      Debian mirror (default http://deb.debian.org/debian)\n";
	json_t *body = json_object(), *sum = NULL;
	int c, rc;
	gv_client *cl;

	while ((c = getopt_long(argc, argv, "s:p:h", opts, NULL)) != -1) {
		if (c == 's')
			json_object_set_new(body, "suite", json_string(optarg));
		else if (c == 'p')
			json_object_set_new(body, "packages", json_string(optarg));
		else if (c == 'M')
			json_object_set_new(body, "mirror", json_string(optarg));
		else
			return img_usage(c == 'h' ? stdout : stderr, help);
	}
	if (optind >= argc)
		return cli_error("missing image name"), 2;
	if (!cli_name_ok(argv[optind], "image"))
		return 2;
	if (!json_object_get(body, "suite"))
		json_object_set_new(body, "suite", json_string(argv[optind]));
	json_object_set_new(body, "name", json_string(argv[optind]));
	cl = cli_connect();
	fprintf(stderr, "gridvm: building image %s (debootstrap %s)...\n", argv[optind],
		json_string_value(json_object_get(body, "suite")));
	rc = cli_stream(cl, "/v1/images/build", body, NULL, on_build_text, NULL, &sum);
	if (rc == 0)
		printf("built image %s\n", argv[optind]);
	json_decref(sum);
	json_decref(body);
	gv_client_free(cl);
	return rc == 0 ? 0 : 1;
}

static int image_list(int argc, char **argv)
{
	json_t *imgs = NULL, *im;
	size_t i;
	gv_client *cl;

	if (cli_wants_help(argc, argv))
		return img_usage(stdout, "Usage: gridvm image list [--json]\n"
					 "List the images of this host.\n");
	cl = cli_connect();
	if (cli_call(cl, "GET", "/v1/images", NULL, &imgs) < 0)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "--json")) {
		cli_print_json(imgs);
	} else {
		printf("%-20s %-6s %10s %10s\n", "NAME", "FORMAT", "SIZE", "ON DISK");
		json_array_foreach(imgs, i, im) {
			char a[32], b[32];
			printf("%-20s %-6s %10s %10s\n",
			       json_string_value(json_object_get(im, "name")),
			       json_string_value(json_object_get(im, "format")),
			       gv_fmt_size((uint64_t)json_integer_value(json_object_get(im, "size")), a, sizeof(a)),
			       gv_fmt_size((uint64_t)json_integer_value(json_object_get(im, "allocated")), b, sizeof(b)));
		}
	}
	json_decref(imgs);
	gv_client_free(cl);
	return 0;
}

static int image_import(int argc, char **argv)
{
	json_t *body;
	char *abs;
	gv_client *cl;
	int rc;

	if (cli_wants_help(argc, argv))
		return img_usage(stdout, "Usage: gridvm image import NAME FILE\n"
					 "Copy a raw or qcow2 disk image into the store.\n");
	if (argc != 3)
		return cli_error("usage: gridvm image import NAME FILE"), 2;
	if (!cli_name_ok(argv[1], "image"))
		return 2;
	abs = cli_abspath(argv[2]);
	if (!abs)
		return cli_error("no such file: %s", argv[2]), 1;
	body = json_pack("{s:s, s:s}", "name", argv[1], "file", abs);
	cl = cli_connect();
	rc = cli_call(cl, "POST", "/v1/images/import", body, NULL) < 0 ? 1 : 0;
	if (rc == 0)
		printf("imported image %s\n", argv[1]);
	json_decref(body);
	free(abs);
	gv_client_free(cl);
	return rc;
}

static int image_delete(int argc, char **argv)
{
	char *path;
	gv_client *cl;
	int rc;

	if (cli_wants_help(argc, argv))
		return img_usage(stdout, "Usage: gridvm image delete NAME\n"
					 "Delete an image that no VM uses.\n");
	if (argc != 2)
		return cli_error("usage: gridvm image delete NAME"), 2;
	if (!cli_name_ok(argv[1], "image"))
		return 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/images/%s", argv[1]);
	rc = cli_call(cl, "DELETE", path, NULL, NULL) < 0 ? 1 : 0;
	if (rc == 0)
		printf("deleted image %s\n", argv[1]);
	free(path);
	gv_client_free(cl);
	return rc;
}

static int image_index(int argc, char **argv)
{
	json_t *out = NULL;
	char *path;
	gv_client *cl;
	int rc;
	bool json = argc > 2 && !strcmp(argv[2], "--json");

	if (cli_wants_help(argc, argv))
		return img_usage(stdout, "Usage: gridvm image index NAME [--json]\n"
					 "Hash every 4 KiB block of a raw image (SHA-256, zero blocks\n"
					 "marked), keep the index next to the image, and add the image\n"
					 "to this host's block index.\n");
	if (argc < 2 || argv[1][0] == '-')
		return cli_error("usage: gridvm image index NAME [--json]"), 2;
	if (!cli_name_ok(argv[1], "image"))
		return 2;
	cl = cli_connect();
	path = gv_strdupf("/v1/images/%s/index", argv[1]);
	rc = cli_call(cl, "POST", path, NULL, &out) < 0 ? 1 : 0;
	if (rc == 0 && json) {
		cli_print_json(out);
	} else if (rc == 0) {
		char a[32];
		uint64_t size = (uint64_t)json_integer_value(json_object_get(out, "image_size"));
		double secs = json_real_value(json_object_get(out, "seconds"));
		printf("%s: %s, %lld blocks of %lld bytes, %lld zero\nsha256 %s\n"
		       "index %s (%.2f s%s)\n", argv[1], gv_fmt_size(size, a, sizeof(a)),
		       json_integer_value(json_object_get(out, "blocks")),
		       json_integer_value(json_object_get(out, "block_size")),
		       json_integer_value(json_object_get(out, "zero_blocks")),
		       json_string_value(json_object_get(out, "image_sha256")),
		       json_string_value(json_object_get(out, "index")), secs,
		       json_is_true(json_object_get(out, "was_indexed")) ? "" : ", new");
	}
	json_decref(out);
	free(path);
	gv_client_free(cl);
	return rc;
}

static int image_similarity(int argc, char **argv)
{
	json_t *body = json_pack("{s:[]}", "names"), *out = NULL, *row;
	bool json = false;
	size_t i;
	int rc;
	gv_client *cl;

	if (cli_wants_help(argc, argv))
		return img_usage(stdout, "Usage: gridvm image similarity A B [C...] [--json]\n"
					 "For each image, the share of its non-zero blocks found in\n"
					 "each other image and in all the others together.\n");
	for (int k = 1; k < argc; k++) {
		if (!strcmp(argv[k], "--json"))
			json = true;
		else if (cli_name_ok(argv[k], "image"))
			json_array_append_new(json_object_get(body, "names"), json_string(argv[k]));
		else
			return 2;
	}
	if (json_array_size(json_object_get(body, "names")) < 2)
		return cli_error("name two images or more"), 2;
	cl = cli_connect();
	rc = cli_call(cl, "POST", "/v1/images/similarity", body, &out) < 0 ? 1 : 0;
	if (rc == 0 && json)
		cli_print_json(out);
	else if (rc == 0) {
		json_t *rows = json_object_get(out, "rows");
		printf("%-16s %12s", "image", "blocks");
		json_array_foreach(rows, i, row)
			printf(" %12s", json_string_value(json_object_get(row, "name")));
		printf(" %12s\n", "all others");
		json_array_foreach(rows, i, row) {
			json_t *in = json_object_get(row, "in"), *r2;
			size_t j;
			printf("%-16s %12lld", json_string_value(json_object_get(row, "name")),
			       json_integer_value(json_object_get(row, "nonzero_blocks")));
			json_array_foreach(rows, j, r2) {
				json_t *v = json_object_get(in, json_string_value(json_object_get(r2, "name")));
				if (j == i)
					printf(" %12s", "-");
				else
					printf(" %11.1f%%", 100 * json_real_value(v));
			}
			printf(" %11.1f%%\n", 100 * json_real_value(json_object_get(row, "in_all_others")));
		}
	}
	json_decref(body);
	json_decref(out);
	gv_client_free(cl);
	return rc;
}

static void progress_bar(const json_t *p)
{
	double total = (double)json_integer_value(json_object_get(p, "blocks_total"));
	double done = (double)json_integer_value(json_object_get(p, "blocks_done"));
	double local = (double)json_integer_value(json_object_get(p, "blocks_local"));
	double secs = json_real_value(json_object_get(p, "seconds"));
	double wire = (double)json_integer_value(json_object_get(p, "bytes_on_wire"));
	double frac = total > 0 ? done / total : 0, rate = secs > 0 ? wire / secs : 0;
	double eta = frac > 0.001 ? secs / frac - secs : 0;
	char bar[31], w[32];
	int fill = (int)(frac * 30);

	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(30 - fill));
	bar[30] = '\0';
	fprintf(stderr, "\r%-7s [%s] %5.1f%%  %9s on wire  %7.2f MB/s  local %4.1f%%  ETA %3.0fs ",
		json_string_value(json_object_get(p, "phase")), bar, 100 * frac,
		gv_fmt_size((uint64_t)wire, w, sizeof(w)), rate / 1e6,
		total > 0 ? 100 * local / total : 0, eta);
}

static void on_fetch_progress(void *ud, json_t *p)
{
	if (*(bool *)ud)
		progress_bar(p);
}

static void print_fetch_summary(const char *name, json_t *s)
{
	char a[32], b[32];

#define I(k) ((long long)json_integer_value(json_object_get(s, k)))
	printf("fetched %s: %s in %.2f s, %s on the wire\n", name,
	       gv_fmt_size((uint64_t)I("image_size"), a, sizeof(a)),
	       json_real_value(json_object_get(s, "seconds")),
	       gv_fmt_size((uint64_t)I("bytes_on_wire"), b, sizeof(b)));
	printf("blocks: %lld total, %lld zero, %lld found locally, %lld resumed, "
	       "%lld sent (%s)\nsha256 %s\n", I("blocks_total"), I("blocks_zero"),
	       I("blocks_local"), I("blocks_resumed"), I("blocks_remote"),
	       json_string_value(json_object_get(s, "codec")),
	       json_string_value(json_object_get(s, "image_sha256")));
	json_t *passes = json_object_get(s, "passes"), *p;
	size_t i;
	json_array_foreach(passes, i, p)
		printf("pass %lld%s: %lld blocks changed, %lld sent, %s on the wire, %.2f s\n",
		       (long long)json_integer_value(json_object_get(p, "pass")),
		       json_is_true(json_object_get(p, "frozen")) ? " (writer frozen)" : "",
		       (long long)json_integer_value(json_object_get(p, "blocks_changed")),
		       (long long)json_integer_value(json_object_get(p, "blocks_sent")),
		       gv_fmt_size((uint64_t)json_integer_value(json_object_get(p, "bytes_on_wire")),
				   a, sizeof(a)),
		       json_real_value(json_object_get(p, "seconds")));
#undef I
}

static int image_fetch(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "as", required_argument, NULL, 'a' },
		{ "compress", required_argument, NULL, 'c' },
		{ "no-local", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'J' },
		{ "iterative", no_argument, NULL, 'i' },
		{ "freeze-cmd", required_argument, NULL, 'F' },
		{ "thaw-cmd", required_argument, NULL, 'T' },
		{ "max-passes", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' }, { 0 } };
	static const char help[] =
		"Usage: gridvm image fetch NAME --from HOST[:PORT] [OPTIONS]\n"
		"Copy image NAME from another host's agent, sending only the blocks\n"
		"this host does not hold already. Resumes when re-run after a failure.\n\n"
		"  -f, --from HOST[:PORT]   the source agent (port 7878 by default)\n"
		"  -a, --as NAME            local name (default: the same)\n"
		"  -c, --compress C[:LEVEL] none, zlib, lz4 or zstd (default zstd)\n"
		"      --no-local           do not reuse local blocks (for comparisons)\n"
		"      --timeout DUR        give up when the peer is silent this long (30s)\n"
		"      --iterative          the source image is being written: copy it in\n"
		"                           passes that send only what changed, then a\n"
		"                           last pass with the writer frozen\n"
		"      --freeze-cmd CMD     command that freezes the writer (run by this\n"
		"                           host's agent before the last pass; its words\n"
		"                           split as a shell would, with quotes, but no\n"
		"                           shell runs it: for pipes or ';', name a script\n"
		"                           or write sh -c '...' yourself)\n"
		"      --thaw-cmd CMD       command that lets the writer go on (the same)\n"
		"      --max-passes N       passes before freezing at the latest (5)\n"
		"      --json               print the summary as JSON\n";
	json_t *body = json_object(), *sum = NULL;
	bool tty = isatty(2), json = false;
	char *colon;
	uint64_t ms;
	int c, rc;
	gv_client *cl;

	while ((c = getopt_long(argc, argv, "f:a:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': json_object_set_new(body, "from", json_string(optarg)); break;
		case 'a': json_object_set_new(body, "as", json_string(optarg)); break;
		case 'n': json_object_set_new(body, "no_local", json_true()); break;
		case 'J': json = true; break;
		case 'i': json_object_set_new(body, "iterative", json_true()); break;
		case 'F':
		case 'T': {
			char **w = NULL;
			json_t *a = json_array();
			if (gv_split_words(optarg, &w) <= 0) {
				json_decref(a);
				return cli_error("--%s '%s': not a command (an unclosed quote?)",
						 c == 'F' ? "freeze-cmd" : "thaw-cmd", optarg), 2;
			}
			for (char **x = w; *x; x++)
				json_array_append_new(a, json_string(*x));
			gv_strv_free(w);
			json_object_set_new(body, c == 'F' ? "freeze_argv" : "thaw_argv", a);
			break;
		}
		case 'P': json_object_set_new(body, "max_passes", json_integer(atoi(optarg))); break;
		case 'c':
			colon = strchr(optarg, ':');
			if (colon) {
				json_object_set_new(body, "level", json_integer(atoi(colon + 1)));
				*colon = '\0';
			}
			json_object_set_new(body, "codec", json_string(optarg));
			break;
		case 't':
			if (gv_parse_duration_ms(optarg, &ms) < 0)
				return cli_error("invalid --timeout '%s'", optarg), 2;
			json_object_set_new(body, "timeout_ms", json_integer((json_int_t)ms));
			break;
		default:
			return img_usage(c == 'h' ? stdout : stderr, help);
		}
	}
	if (optind >= argc || !json_object_get(body, "from"))
		return cli_error("usage: gridvm image fetch NAME --from HOST[:PORT]"), 2;
	if (!cli_name_ok(argv[optind], "image"))
		return 2;
	json_object_set_new(body, "name", json_string(argv[optind]));
	cl = cli_connect();
	rc = cli_stream(cl, "/v1/images/fetch", body, on_fetch_progress, NULL, &tty, &sum);
	if (tty)
		fputc('\n', stderr);
	if (rc == 0 && json)
		cli_print_json(sum);
	else if (rc == 0)
		print_fetch_summary(argv[optind], sum);
	json_decref(sum);
	json_decref(body);
	gv_client_free(cl);
	return rc == 0 ? 0 : 1;
}

static const struct cli_cmd image_cmds[] = {
	{ "build", image_build, "build a Debian image with debootstrap" },
	{ "list", image_list, "list images (--json)" },
	{ "import", image_import, "import a raw or qcow2 image file" },
	{ "delete", image_delete, "delete an unused image" },
	{ "fetch", image_fetch, "copy an image from another host (dedup transfer)" },
	{ "index", image_index, "hash an image's blocks into its block index" },
	{ "similarity", image_similarity, "share of blocks images have in common" },
	{ NULL, NULL, NULL } };

int cmd_image(int argc, char **argv)
{
	return cli_dispatch("gridvm image", image_cmds, argc, argv);
}
