/* SPDX-License-Identifier: MIT */
/* test-user.c - who asks (base/user.h): a unix socket's peer, owners,
 * who may act on what, the quota file and the quota errors. */
#include <gridvm/base/user.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

static void test_socket_peer(void **state)
{
	int sv[2];
	gv_user u;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(gv_user_of_socket(sv[0], &u), 0);
	assert_int_equal(u.uid, (int64_t)geteuid());
	assert_int_equal(u.gid, (int64_t)getegid());
	assert_true(u.admin); /* the program's own user administers it */
	assert_true(u.name[0] != '\0');
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(gv_user_of_socket(-1, &u), -EBADF);
}

static void test_owners(void **state)
{
	gv_user alice, root, cert;
	json_t *o, *byname = json_pack("{s:n, s:s}", "uid", "name", "alice");

	gv_user_of_uid(0, &root);
	assert_true(root.admin);
	assert_string_equal(root.name, "root");
	memset(&alice, 0, sizeof(alice));
	alice.uid = 4242;
	alice.gid = 4242;
	snprintf(alice.name, sizeof(alice.name), "alice");
	o = gv_user_owner_json(&alice);
	assert_int_equal(json_integer_value(json_object_get(o, "uid")), 4242);
	assert_string_equal(gv_owner_name(o), "alice");
	assert_true(gv_user_is(&alice, o));
	assert_true(gv_user_may(&alice, o));
	assert_false(gv_user_is(&root, o));
	assert_true(gv_user_may(&root, o)); /* an admin */
	/* made before owners: root's */
	assert_true(gv_user_is(&root, NULL));
	assert_false(gv_user_may(&alice, NULL));
	assert_string_equal(gv_owner_name(NULL), "root");
	/* a certificate's user: by name, never an admin */
	gv_user_of_name("alice", &cert);
	assert_int_equal(cert.uid, -1);
	assert_false(cert.admin);
	assert_true(gv_user_is(&cert, o));
	assert_true(gv_user_is(&alice, byname));
	gv_user_of_name("bob", &cert);
	assert_false(gv_user_may(&cert, o));
	/* the same uid under another name is the same user */
	snprintf(alice.name, sizeof(alice.name), "renamed");
	assert_true(gv_user_is(&alice, o));
	json_decref(o);
	json_decref(byname);
}

static char *write_tmp(const char *text)
{
	char *p = strdup("/tmp/test-user-XXXXXX");
	int fd = mkstemp(p);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return p;
}

static void test_quotas(void **state)
{
	gv_user alice, bob, root;
	gv_quota q;
	gv_err e = { "" };
	char *f = write_tmp("{\"default\": {\"vms\": 3, \"vcpus\": 4, \"memory\": \"1G\"},"
			    " \"users\": {\"alice\": {\"vcpus\": 1, \"memory\": null,"
			    " \"disk\": 1048576}}}");

	gv_user_of_name("alice", &alice);
	gv_user_of_name("bob", &bob);
	gv_user_root(&root);
	assert_int_equal(gv_quota_load(f, &alice, &q, &e), 0);
	assert_int_equal(q.limit[GV_QUOTA_VMS], 3);	 /* the default */
	assert_int_equal(q.limit[GV_QUOTA_VCPUS], 1);	 /* hers */
	assert_int_equal(q.limit[GV_QUOTA_MEMORY], -1); /* null: none */
	assert_int_equal(q.limit[GV_QUOTA_DISK], 1 << 20);
	assert_int_equal(q.limit[GV_QUOTA_JOBS], -1);	 /* given nowhere */
	assert_int_equal(gv_quota_load(f, &bob, &q, &e), 0);
	assert_int_equal(q.limit[GV_QUOTA_VCPUS], 4);
	assert_int_equal(q.limit[GV_QUOTA_MEMORY], 1 << 30);
	assert_int_equal(gv_quota_check(&q, &bob, GV_QUOTA_VCPUS, 2, 2, &e), 0);
	assert_int_equal(gv_quota_check(&q, &bob, GV_QUOTA_VCPUS, 2, 3, &e), -EDQUOT);
	assert_string_equal(e.msg, "quota exceeded: vcpus of user bob: limit 4, in use 2, "
			    "this needs 3 more");
	assert_int_equal(gv_quota_check(&q, &bob, GV_QUOTA_MEMORY, 512u << 20, 1u << 30, &e),
			 -EDQUOT);
	assert_string_equal(e.msg, "quota exceeded: memory of user bob: limit 1 GiB, in use "
			    "512 MiB, this needs 1 GiB more");
	/* nothing more asked: what is in use must be below the limit */
	assert_int_equal(gv_quota_check(&q, &bob, GV_QUOTA_VMS, 2, 0, &e), 0);
	assert_int_equal(gv_quota_check(&q, &bob, GV_QUOTA_VMS, 3, 0, &e), -EDQUOT);
	assert_string_equal(e.msg, "quota exceeded: vms of user bob: limit 3, in use 3");
	/* admins have none */
	assert_int_equal(gv_quota_load(f, &root, &q, &e), 0);
	for (int k = 0; k < GV_QUOTA_N; k++)
		assert_int_equal(q.limit[k], -1);
	unlink(f);
	free(f);
	/* no file: no limits */
	assert_int_equal(gv_quota_load("/nonexistent/quotas.json", &bob, &q, &e), 0);
	assert_int_equal(q.limit[GV_QUOTA_VMS], -1);
}

static void test_quota_file_errors(void **state)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{ "{\"default\": {\"cpus\": 2}}", "default: unknown quota 'cpus'" },
		{ "{\"default\": {\"vcpus\": -1}}", "default: vcpus is a count >= 0 or null" },
		{ "{\"default\": {\"vcpus\": \"2G\"}}", "default: vcpus is a count >= 0 or null" },
		{ "{\"users\": {\"bob\": {\"memory\": \"lots\"}}}",
		  "user bob: memory is a size (bytes, or such as \"16G\") or null" },
		{ "{\"users\": []}", "\"users\" is not an object" },
		{ "[1]", "is not a JSON object" },
		{ "{", "line 1" },
	};
	gv_user bob;
	gv_quota q;

	gv_user_of_name("bob", &bob);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gv_err e = { "" };
		char *f = write_tmp(bad[i].text);
		assert_int_equal(gv_quota_load(f, &bob, &q, &e), -EINVAL);
		if (!strstr(e.msg, bad[i].msg) || !strstr(e.msg, f))
			fail_msg("'%s': %s", bad[i].text, e.msg);
		unlink(f);
		free(f);
	}
}

static void test_open_as(void **state)
{
	gv_user me, other;
	char *f = write_tmp("x");
	int fd;

	gv_user_of_uid((uint32_t)geteuid(), &me);
	fd = gv_user_open(&me, f, O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(gv_user_open(&me, "/nonexistent/x", O_RDONLY, 0), -ENOENT);
	gv_user_of_name("cert-user", &other); /* no uid: cannot open anything */
	assert_int_equal(gv_user_open(&other, f, O_RDONLY, 0), -EPERM);
	if (geteuid() == 0) { /* as nobody: a 0600 file of root's is not theirs */
		gv_user_of_uid(65534, &other);
		chmod(f, 0600);
		assert_int_equal(gv_user_open(&other, f, O_RDONLY, 0), -EACCES);
		chmod(f, 0644);
		fd = gv_user_open(&other, f, O_RDONLY, 0);
		assert_true(fd >= 0);
		close(fd);
	}
	unlink(f);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_socket_peer),
		cmocka_unit_test(test_owners),
		cmocka_unit_test(test_quotas),
		cmocka_unit_test(test_quota_file_errors),
		cmocka_unit_test(test_open_as),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
