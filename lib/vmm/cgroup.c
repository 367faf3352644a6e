/* SPDX-License-Identifier: MIT */
/* cgroup.c - CPU weight and cap per VM, cgroup v2 or v1. */
#include <gridvm/vmm/cgroup.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define V2_ROOT "/sys/fs/cgroup"
#define V1_ROOT "/sys/fs/cgroup/cpu"

static bool v2_has_cpu(void)
{
	char *c = NULL;
	bool ok;

	if (gv_read_file(V2_ROOT "/cgroup.controllers", &c, NULL) < 0)
		return false;
	ok = strstr(c, "cpu") != NULL;
	free(c);
	return ok;
}

const char *gv_cgroup_version(void)
{
	if (v2_has_cpu())
		return "v2";
	if (access(V1_ROOT "/cpu.shares", F_OK) == 0)
		return "v1";
	return NULL;
}

static char scope[16] = "default";

void gv_cgroup_set_scope(const char *datadir)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const char *p = datadir; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(scope, sizeof(scope), "%08x", h);
}

/* gridvm/<scope>-<vm>: agents of different data directories on one
 * machine never share a group, even for VMs of the same name. */
static char *group_dir(const char *vm)
{
	const char *v = gv_cgroup_version();

	if (!v)
		return NULL;
	return gv_strdupf("%s/gridvm/%s-%s", !strcmp(v, "v2") ? V2_ROOT : V1_ROOT, scope, vm);
}

static int write_str(const char *dir, const char *file, const char *val)
{
	char *path = gv_strdupf("%s/%s", dir, file);
	FILE *f = fopen(path, "we");
	int r = 0;

	free(path);
	if (!f)
		return -errno;
	if (fputs(val, f) < 0)
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

int gv_cgroup_apply(const char *vm, int pid, int weight, int cap_pct)
{
	const char *v = gv_cgroup_version();
	char *dir, val[64];
	int r;

	if (!v)
		return -ENOTSUP;
	if (weight <= 0)
		weight = 100;
	dir = group_dir(vm);
	r = gv_mkdir_p(dir, 0755);
	if (r == 0 && !strcmp(v, "v2")) {
		write_str(V2_ROOT, "cgroup.subtree_control", "+cpu");
		write_str(V2_ROOT "/gridvm", "cgroup.subtree_control", "+cpu");
		snprintf(val, sizeof(val), "%d", weight);
		r = write_str(dir, "cpu.weight", val);
		if (r == 0) {
			if (cap_pct > 0)
				snprintf(val, sizeof(val), "%d 100000", cap_pct * 1000);
			else
				snprintf(val, sizeof(val), "max 100000");
			r = write_str(dir, "cpu.max", val);
		}
	} else if (r == 0) {
		snprintf(val, sizeof(val), "%d", weight * 1024 / 100 < 2 ? 2 : weight * 1024 / 100);
		r = write_str(dir, "cpu.shares", val);
		if (r == 0)
			r = write_str(dir, "cpu.cfs_period_us", "100000");
		if (r == 0) {
			snprintf(val, sizeof(val), "%d", cap_pct > 0 ? cap_pct * 1000 : -1);
			r = write_str(dir, "cpu.cfs_quota_us", val);
		}
	}
	if (r == 0) {
		snprintf(val, sizeof(val), "%d", pid);
		r = write_str(dir, "cgroup.procs", val);
	}
	free(dir);
	return r;
}

void gv_cgroup_remove(const char *vm)
{
	char *dir = group_dir(vm);

	if (dir)
		rmdir(dir);
	free(dir);
}

static json_t *read_val(const char *dir, const char *file)
{
	char *path = gv_strdupf("%s/%s", dir, file), *buf = NULL;
	json_t *j = json_null();

	if (gv_read_file(path, &buf, NULL) == 0) {
		buf[strcspn(buf, "\n")] = '\0';
		j = json_string(buf);
	}
	free(buf);
	free(path);
	return j;
}

json_t *gv_cgroup_show(const char *vm)
{
	const char *v = gv_cgroup_version();
	char *dir = group_dir(vm);
	json_t *j;

	if (!dir || access(dir, F_OK) < 0) {
		free(dir);
		return NULL;
	}
	j = json_pack("{s:s, s:s}", "version", v, "path", dir);
	if (!strcmp(v, "v2")) {
		json_object_set_new(j, "cpu.weight", read_val(dir, "cpu.weight"));
		json_object_set_new(j, "cpu.max", read_val(dir, "cpu.max"));
	} else {
		json_object_set_new(j, "cpu.shares", read_val(dir, "cpu.shares"));
		json_object_set_new(j, "cpu.cfs_quota_us", read_val(dir, "cpu.cfs_quota_us"));
		json_object_set_new(j, "cpu.cfs_period_us", read_val(dir, "cpu.cfs_period_us"));
	}
	free(dir);
	return j;
}
