/* SPDX-License-Identifier: MIT */
/* test-jobio.c - a job's input disk (the tar the guest unpacks), its
 * output disk (created empty, its manifest read back) and the unpacking
 * of a tar stream into a directory. */
#include <gridvm/vmm/jobio.h>

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/test-jobio.XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return strdup(tmpl);
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *slurp(const char *path)
{
	char *buf = NULL;

	assert_int_equal(gv_read_file(path, &buf, NULL), 0);
	return buf;
}

static void test_manifest_parse(void **state)
{
	const char good[] = "gridvm-output 1\ntar 3072\nok out.txt\nmissing /root/no such\n"
			    "toolarge big\nerror cut";
	json_t *m = gv_jobio_manifest_parse(good, sizeof(good));
	json_t *o = json_object_get(m, "outputs");

	assert_true(json_is_true(json_object_get(m, "collected")));
	assert_int_equal(json_integer_value(json_object_get(m, "tar_bytes")), 3072);
	assert_int_equal(json_array_size(o), 3); /* a line without its newline is cut */
	assert_string_equal(json_string_value(json_object_get(json_array_get(o, 1), "path")),
			    "/root/no such");
	assert_string_equal(json_string_value(json_object_get(json_array_get(o, 1), "status")),
			    "missing");
	json_decref(m);

	static const char *const bad[] = { "", "gridvm-output 2\ntar 3072\n",
					   "gridvm-output 1\nok x\n", /* no tar line */
					   "gridvm-output 1\ntar 512\n" }; /* shorter than an end */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = gv_jobio_manifest_parse(bad[i], strlen(bad[i]));
		assert_false(json_is_true(json_object_get(m, "collected")));
		assert_null(json_object_get(m, "outputs"));
		json_decref(m);
	}
}

static void test_output_disk(void **state)
{
	char *dir = tmpdir(), *disk = gv_strdupf("%s/output.tar", dir);
	const char man[] = "gridvm-output 1\ntar 1024\nmissing r\n";
	json_t *m = NULL;
	struct stat st;
	gv_err e;
	int fd;

	assert_int_equal(gv_jobio_output_manifest(disk, &m, &e), 0); /* none yet */
	assert_false(json_is_true(json_object_get(m, "collected")));
	json_decref(m);
	assert_int_equal(gv_jobio_output_create(disk, 3 << 20, &e), 0);
	assert_int_equal(stat(disk, &st), 0);
	assert_int_equal(st.st_size, (3 << 20) + GV_JOBIO_MANIFEST_SIZE);
	assert_false(gv_jobio_output_written(disk)); /* sparse, nothing written */
	assert_int_equal(gv_jobio_output_manifest(disk, &m, &e), 0);
	assert_false(json_is_true(json_object_get(m, "collected")));
	json_decref(m);

	fd = open(disk, O_WRONLY);
	assert_true(pwrite(fd, man, strlen(man), st.st_size - GV_JOBIO_MANIFEST_SIZE) > 0);
	close(fd);
	assert_true(gv_jobio_output_written(disk));
	assert_int_equal(gv_jobio_output_manifest(disk, &m, &e), 0);
	assert_true(json_is_true(json_object_get(m, "collected")));
	json_decref(m);

	/* a fresh disk forgets the last run */
	assert_int_equal(gv_jobio_output_create(disk, 0, &e), 0);
	assert_false(gv_jobio_output_written(disk));
	assert_int_equal(stat(disk, &st), 0);
	assert_int_equal(st.st_size, GV_JOBIO_OUTPUT_MAX_DEFAULT + GV_JOBIO_MANIFEST_SIZE);
	gv_rm_rf(dir);
	free(disk);
	free(dir);
}

static void test_pack_inputs(void **state)
{
	char *dir = tmpdir(), *a = gv_strdupf("%s/a", dir), *b = gv_strdupf("%s/b", dir);
	char *tar = gv_strdupf("%s/input.tar", dir), *list = NULL;
	char *fa = gv_strdupf("%s/data", a), *fb = gv_strdupf("%s/data", b);
	char *sub = gv_strdupf("%s/tree", a), *subf = gv_strdupf("%s/tree/f", a);
	char *missing = gv_strdupf("%s/nope", dir);
	gv_err e;

	assert_int_equal(mkdir(a, 0755), 0);
	assert_int_equal(mkdir(b, 0755), 0);
	assert_int_equal(mkdir(sub, 0755), 0);
	put(fa, "from a\n");
	put(fb, "from b\n");
	put(subf, "leaf\n");
	/* two inputs with the same basename, and a directory */
	char *in[] = { fa, fb, sub, NULL };
	assert_int_equal(gv_jobio_pack_inputs(in, tar, &e), 0);
	char *argv[] = { "tar", "-tf", tar, NULL };
	assert_int_equal(gv_run(argv, &list), 0);
	assert_string_equal(list, "0\n1\n2/\n2/f\n");
	free(list);

	char *bad[] = { fa, missing, NULL };
	assert_true(gv_jobio_pack_inputs(bad, tar, &e) < 0);
	assert_non_null(strstr(e.msg, "/nope: No such file or directory"));
	assert_int_equal(access(tar, F_OK), 0); /* the earlier one is left as it was */
	gv_rm_rf(dir);
	free(dir), free(a), free(b), free(tar), free(fa), free(fb), free(sub), free(subf);
	free(missing);
}

static void test_untar(void **state)
{
	char *dir = tmpdir(), *src = gv_strdupf("%s/src", dir), *dst = gv_strdupf("%s/dst", dir);
	char *f = gv_strdupf("%s/res.txt", src), *tar = gv_strdupf("%s/t.tar", dir), *got;
	char *data = NULL, *out = NULL;
	size_t len = 0;
	gv_untar *u = NULL;
	gv_err e;

	assert_int_equal(mkdir(src, 0755), 0);
	assert_int_equal(mkdir(dst, 0755), 0);
	put(f, "result 42\n");
	char *argv[] = { "tar", "-cf", tar, "-C", src, "res.txt", NULL };
	assert_int_equal(gv_run(argv, &out), 0);
	free(out);
	assert_int_equal(gv_read_file(tar, &data, &len), 0);
	assert_int_equal(gv_untar_new(dst, &u, &e), 0);
	assert_int_equal(gv_untar_write(u, data, len / 2, &e), 0); /* in pieces */
	assert_int_equal(gv_untar_write(u, data + len / 2, len - len / 2, &e), 0);
	assert_int_equal(gv_untar_finish(u, &e), 0);
	free(f);
	f = gv_strdupf("%s/res.txt", dst);
	got = slurp(f);
	assert_string_equal(got, "result 42\n");
	free(got);

	/* not a tar: tar's complaint comes back */
	assert_int_equal(gv_untar_new(dst, &u, &e), 0);
	assert_int_equal(gv_untar_write(u, "garbage, not a tar archive at all", 33, &e), 0);
	assert_true(gv_untar_finish(u, &e) < 0);
	assert_non_null(strstr(e.msg, "cannot unpack the outputs: "));
	free(data);
	gv_rm_rf(dir);
	free(dir), free(src), free(dst), free(f), free(tar);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_parse),
		cmocka_unit_test(test_output_disk),
		cmocka_unit_test(test_pack_inputs),
		cmocka_unit_test(test_untar),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
