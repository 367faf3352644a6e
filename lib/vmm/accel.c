/* SPDX-License-Identifier: MIT */
/* accel.c - KVM where hardware virtualization is exposed, else TCG. */
#include <gridvm/vmm/accel.h>
#include <gridvm/base/util.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Does a "flags" line of @cpuinfo contain @flag as a whole word? */
static bool cpuinfo_has_flag(const char *cpuinfo, const char *flag)
{
	size_t fl = strlen(flag);
	const char *line = cpuinfo;

	while (line && *line) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		if (!strncmp(line, "flags", 5)) {
			for (const char *p = line; p + fl <= line + len; p++) {
				bool start = p == line || p[-1] == ' ' || p[-1] == '\t';
				bool end = p + fl == line + len || p[fl] == ' ';
				if (start && end && !strncmp(p, flag, fl))
					return true;
			}
		}
		line = eol ? eol + 1 : NULL;
	}
	return false;
}

int gv_accel_decide(const char *override, const char *cpuinfo, bool kvm_works,
		    gv_accel *out)
{
	bool hw;

	if (override && *override && strcmp(override, "auto")) {
		if (strcmp(override, "kvm") && strcmp(override, "tcg"))
			return -EINVAL;
		snprintf(out->name, sizeof(out->name), "%s", override);
		snprintf(out->reason, sizeof(out->reason),
			 "explicit override (--accel or GRIDVM_ACCEL)");
		return 0;
	}
	hw = cpuinfo && (cpuinfo_has_flag(cpuinfo, "vmx") ||
			 cpuinfo_has_flag(cpuinfo, "svm"));
	if (hw && kvm_works) {
		snprintf(out->name, sizeof(out->name), "kvm");
		snprintf(out->reason, sizeof(out->reason),
			 "CPU exposes hardware virtualization and /dev/kvm works");
	} else if (hw) {
		snprintf(out->name, sizeof(out->name), "tcg");
		snprintf(out->reason, sizeof(out->reason),
			 "CPU has vmx/svm but /dev/kvm is missing or unusable");
	} else {
		snprintf(out->name, sizeof(out->name), "tcg");
		snprintf(out->reason, sizeof(out->reason),
			 "CPU flags show no vmx/svm%s",
			 kvm_works ? "; /dev/kvm is a paravirtual backend "
				     "(e.g. PVM) where stock kernels hang"
				   : "");
	}
	return 0;
}

static bool kvm_probe(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
	close(fd);
	return ok;
}

int gv_accel_choose(const char *override, gv_accel *out)
{
	char *cpuinfo = NULL;
	int r;

	if (!override)
		override = getenv("GRIDVM_ACCEL");
	if (gv_read_file("/proc/cpuinfo", &cpuinfo, NULL) < 0)
		cpuinfo = NULL;
	r = gv_accel_decide(override, cpuinfo, kvm_probe(), out);
	free(cpuinfo);
	return r;
}

const char *gv_accel_qemu_arg(const gv_accel *a)
{
	return strcmp(a->name, "kvm") ? "tcg,thread=multi" : "kvm";
}
