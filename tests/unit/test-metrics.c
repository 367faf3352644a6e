/* SPDX-License-Identifier: MIT */
/*
 * test-metrics.c - the Prometheus exposition writers and server
 * (metrics.h): HELP and TYPE once per family, a family's samples kept
 * together whatever order they were written in, escaping, values,
 * histograms, names that break the format left out; the server answers
 * GET /metrics on its TCP port and nothing else. (promtool checks a real
 * agent's and controller's output in tests/e2e/test-metrics.sh.)
 */
#include <gridvm/api/metrics.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

static void test_families(void **state)
{
	gv_metrics_buf *b = gv_metrics_buf_new();

	gv_metrics_gauge(b, "gridvm_vms", "VMs by state.", 2, "state", "running", NULL);
	gv_metrics_counter(b, "gridvm_things_total", "Things.", 7, NULL);
	gv_metrics_gauge(b, "gridvm_vms", "ignored: the first HELP counts", 0, "state", "saved",
			 NULL);
	assert_string_equal(gv_metrics_buf_text(b),
			    "# HELP gridvm_vms VMs by state.\n"
			    "# TYPE gridvm_vms gauge\n"
			    "gridvm_vms{state=\"running\"} 2\n"
			    "gridvm_vms{state=\"saved\"} 0\n"
			    "# HELP gridvm_things_total Things.\n"
			    "# TYPE gridvm_things_total counter\n"
			    "gridvm_things_total 7\n");
	gv_metrics_buf_free(b);
	gv_metrics_buf_free(NULL);
}

static void test_escaping_and_values(void **state)
{
	gv_metrics_buf *b = gv_metrics_buf_new();

	gv_metrics_gauge(b, "gridvm_x", "a \\ b\nc \"q\"", 0.25, "host", "h\"1\\\n", "drop", NULL,
			 "site", "", NULL);
	gv_metrics_gauge(b, "gridvm_x", NULL, NAN, NULL);
	gv_metrics_gauge(b, "gridvm_x", NULL, INFINITY, "k", "v", NULL);
	gv_metrics_gauge(b, "gridvm_x", NULL, -INFINITY, "k", "w", NULL);
	gv_metrics_gauge(b, "gridvm_x", NULL, 17179869184.0, "k", "big", NULL);
	gv_metrics_gauge(b, "gridvm_x", NULL, 1e300, "k", "huge", NULL);
	assert_string_equal(gv_metrics_buf_text(b),
			    "# HELP gridvm_x a \\\\ b\\nc \"q\"\n"
			    "# TYPE gridvm_x gauge\n"
			    "gridvm_x{host=\"h\\\"1\\\\\\n\",site=\"\"} 0.25\n"
			    "gridvm_x NaN\n"
			    "gridvm_x{k=\"v\"} +Inf\n"
			    "gridvm_x{k=\"w\"} -Inf\n"
			    "gridvm_x{k=\"big\"} 17179869184\n"
			    "gridvm_x{k=\"huge\"} 1e+300\n");
	gv_metrics_buf_free(b);
}

/* Names that would break the exposition are left out, not written. */
static void test_bad_names(void **state)
{
	gv_metrics_buf *b = gv_metrics_buf_new();

	gv_metrics_gauge(b, "gridvm-bad", "x", 1, NULL);
	gv_metrics_gauge(b, "9gridvm", "x", 1, NULL);
	gv_metrics_gauge(b, "", "x", 1, NULL);
	gv_metrics_gauge(b, "gridvm_ok", "x", 1, "bad-label", "v", NULL);
	gv_metrics_gauge(b, "gridvm_ok", "x", 1, "__reserved", "v", NULL);
	gv_metrics_gauge(b, "gridvm_ok", "x", 1, "a:b", "v", NULL);
	gv_metrics_counter(b, "gridvm_no_suffix", "x", 1, NULL);
	assert_string_equal(gv_metrics_buf_text(b), "");
	gv_metrics_counter(b, "gridvm_c_total", "x", 1, NULL);
	gv_metrics_gauge(b, "gridvm_c_total", "a gauge of a counter's name", 1, NULL);
	assert_string_equal(gv_metrics_buf_text(b), "# HELP gridvm_c_total x\n"
						    "# TYPE gridvm_c_total counter\n"
						    "gridvm_c_total 1\n");
	gv_metrics_buf_free(b);
}

static void test_histogram(void **state)
{
	static const double bounds[] = { 0.001, 0.01, 0.1 };
	gv_metrics_buf *b = gv_metrics_buf_new();
	gv_metrics_hist h;

	gv_metrics_hist_init(&h, bounds, 3);
	gv_metrics_histogram(b, "gridvm_empty_seconds", "Nothing yet.", &h, NULL);
	gv_metrics_hist_observe(&h, 0.0005);
	gv_metrics_hist_observe(&h, 0.001); /* le is inclusive */
	gv_metrics_hist_observe(&h, 0.05);
	gv_metrics_hist_observe(&h, 3);
	gv_metrics_histogram(b, "gridvm_t_seconds", "Time.", &h, "mode", "online", NULL);
	assert_string_equal(gv_metrics_buf_text(b),
			    "# HELP gridvm_empty_seconds Nothing yet.\n"
			    "# TYPE gridvm_empty_seconds histogram\n"
			    "gridvm_empty_seconds_bucket{le=\"0.001\"} 0\n"
			    "gridvm_empty_seconds_bucket{le=\"0.01\"} 0\n"
			    "gridvm_empty_seconds_bucket{le=\"0.1\"} 0\n"
			    "gridvm_empty_seconds_bucket{le=\"+Inf\"} 0\n"
			    "gridvm_empty_seconds_sum 0\n"
			    "gridvm_empty_seconds_count 0\n"
			    "# HELP gridvm_t_seconds Time.\n"
			    "# TYPE gridvm_t_seconds histogram\n"
			    "gridvm_t_seconds_bucket{mode=\"online\",le=\"0.001\"} 2\n"
			    "gridvm_t_seconds_bucket{mode=\"online\",le=\"0.01\"} 2\n"
			    "gridvm_t_seconds_bucket{mode=\"online\",le=\"0.1\"} 3\n"
			    "gridvm_t_seconds_bucket{mode=\"online\",le=\"+Inf\"} 4\n"
			    "gridvm_t_seconds_sum{mode=\"online\"} 3.0515\n"
			    "gridvm_t_seconds_count{mode=\"online\"} 4\n");
	gv_metrics_buf_free(b);
}

/* ---- the server ---- */

static int calls;

static void writer(void *ud, gv_metrics_buf *b)
{
	calls++;
	gv_metrics_gauge(b, "gridvm_test", "A test value.", *(double *)ud, NULL);
}

/* One HTTP/1.0 request to 127.0.0.1:@port; the whole reply (malloc'd). */
static char *http(int port, const char *method, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char req[256], *out = calloc(1, 65536);
	size_t len = 0;
	ssize_t n;

	assert_non_null(out);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (len < 65535 && (n = read(fd, out + len, 65535 - len)) > 0)
		len += (size_t)n;
	close(fd);
	return out;
}

static void test_server(void **state)
{
	gv_metrics_server *s = NULL;
	double value = 42;
	gv_err e = { "" };
	char *rep;

	assert_int_equal(gv_metrics_start("127.0.0.1:0", writer, &value, &s, &e), 0);
	assert_true(gv_metrics_port(s) > 0);
	rep = http(gv_metrics_port(s), "GET", "/metrics");
	assert_non_null(strstr(rep, "HTTP/1.0 200") ? rep : strstr(rep, "HTTP/1.1 200"));
	assert_non_null(strstr(rep, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(rep, "\r\n\r\n# HELP gridvm_test A test value.\n"
				    "# TYPE gridvm_test gauge\ngridvm_test 42\n"));
	free(rep);
	value = 43; /* built again on every request */
	rep = http(gv_metrics_port(s), "GET", "/metrics?x=1");
	assert_non_null(strstr(rep, "gridvm_test 43\n"));
	free(rep);
	rep = http(gv_metrics_port(s), "GET", "/");
	assert_non_null(strstr(rep, " 404 "));
	free(rep);
	rep = http(gv_metrics_port(s), "GET", "/metrics/x");
	assert_non_null(strstr(rep, " 404 "));
	free(rep);
	rep = http(gv_metrics_port(s), "POST", "/metrics");
	assert_non_null(strstr(rep, " 405 "));
	free(rep);
	assert_int_equal(calls, 2);
	gv_metrics_stop(s);
	gv_metrics_stop(NULL);
}

static void test_bad_address(void **state)
{
	static const char *const bad[] = { "127.0.0.1", "127.0.0.1:", "127.0.0.1:http",
					   "127.0.0.1:70000", "::1", "::1:9100", "[::1:9100",
					   "" };
	gv_metrics_server *s = NULL, *s2 = NULL;
	gv_err e = { "" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.msg[0] = '\0';
		assert_true(gv_metrics_start(bad[i], writer, NULL, &s, &e) < 0);
		assert_true(strlen(e.msg) > 0);
	}
	assert_true(gv_metrics_start(NULL, writer, NULL, &s, &e) < 0);
	/* a port in use */
	assert_int_equal(gv_metrics_start("127.0.0.1:0", writer, NULL, &s, &e), 0);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", gv_metrics_port(s));
	assert_true(gv_metrics_start(addr, writer, NULL, &s2, &e) < 0);
	assert_non_null(strstr(e.msg, "cannot serve metrics on"));
	gv_metrics_stop(s);
	/* IPv6 in brackets and every address */
	if (gv_metrics_start("[::1]:0", writer, NULL, &s, &e) == 0)
		gv_metrics_stop(s);
	assert_int_equal(gv_metrics_start(":0", writer, NULL, &s, &e), 0);
	gv_metrics_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_families),
		cmocka_unit_test(test_escaping_and_values),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_bad_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
