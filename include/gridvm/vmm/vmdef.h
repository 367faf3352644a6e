/* SPDX-License-Identifier: MIT */
/*
 * vmdef.h - a VM definition and its translation to a QEMU command line.
 *
 * The definition is what a user asked for (name, vCPUs, memory, image,
 * job, resource limits). It round-trips through JSON for the agent's
 * database and API. gv_vmdef_qemu_argv() turns it, plus the paths of the
 * VM's files, into the argv of one qemu-system-x86_64 process.
 */
#ifndef GRIDVM_VMDEF_H
#define GRIDVM_VMDEF_H

#include <gridvm/base/err.h>
#include <gridvm/base/util.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gv_vmdef {
	char *name;
	int vcpus;             /* 1..64 */
	uint64_t memory_mib;   /* guest RAM */
	char *image;           /* image in the store, NULL = initramfs only */
	char **job;            /* job argv, NULL-terminated; NULL = no job */
	char **env;            /* NAME=VALUE, NULL-terminated, may be NULL */
	char *workdir;         /* NULL = guest default */
	int cpu_weight;        /* relative CPU share 1..10000, 0 = default 100 */
	int cpu_cap_pct;       /* max CPU in % of one core, 0 = no cap */
	uint64_t disk_iops;    /* total I/O operations per second, 0 = none */
	uint64_t disk_bps;     /* total bytes per second, 0 = none */
	char *accel;           /* NULL/"auto", "kvm" or "tcg" */
	bool boot_disk;        /* firmware boot of the (bootable) disk */
	char *kernel;          /* direct kernel boot: NULL = the gridvm guest */
	char *initrd;          /* NULL = the gridvm initramfs */
	char *append;          /* kernel command line, NULL = the default */
	bool ephemeral;        /* created by `gridvm run`, deleted after */
	int checkpoint_every_s;   /* periodic checkpoints, 0 = none */
	int checkpoint_keep;      /* keep the last N, 0 = all */
	bool checkpoint_drop_on_success; /* delete them when the job exits 0 */
	/* the job's files (guest/jobio.c, <gridvm/vmm/jobio.h>) */
	char **input_guest;    /* where each input arrives in the guest,
				* NULL-terminated; NULL = no inputs */
	char **inputs;         /* their host paths, absolute (parallel), or NULL: */
	char *input_tar;       /* the inputs packed already (jobio.h's layout) */
	char **outputs;        /* guest paths collected when the job ends; NULL = none */
	uint64_t output_max;   /* room for the outputs in bytes, 0 = the default */
	/* instant start (lib/node/template.c) */
	int start_mode;        /* GV_START_AUTO, _COLD or _TEMPLATE */
	char *tmpl;            /* the template the VM was started from, NULL =
				* booted cold: its machine has the template
				* layout (root ports, control port, vmgenid) */
	char *boot_note;       /* how its last start went, for people */
	json_t *owner;         /* who owns it, {"uid", "name"} (base/user.h),
				* set by the agent; NULL: root (also VMs made
				* before owners) */
} gv_vmdef;

/* How a VM starts: from a template where one fits (auto), always cold,
 * or from a template or not at all (template: tests and benchmarks). */
enum { GV_START_AUTO, GV_START_COLD, GV_START_TEMPLATE };
/* The serial of the root disk in the template layout (it is hot-plugged
 * with the job's disks, so the guest finds it by serial, not as vda). */
#define GV_ROOT_SERIAL "gridvm-root"

/* The file descriptors QEMU is started with (lib/node/vmspawn.c): the
 * listening sockets of its monitors and control port, bound by the agent
 * at the paths below, and a template's RAM. */
#define GV_QEMU_FD_QMP 3
#define GV_QEMU_FD_FENCE 4
#define GV_QEMU_FD_BLKMON 5
#define GV_QEMU_FD_CTL 6
#define GV_QEMU_FD_MEM 7
#define GV_QEMU_FD_BASE 8
#define GV_QEMU_NFDS 6
/* The base image, opened read-only by the agent (QEMU's user may not
 * read it: a user's image is 0600): fd set 1 (-add-fd, or QMP add-fd
 * before a hot-plug), which QEMU opens as this path. */
#define GV_QEMU_BASE_FDSET 1
#define GV_QEMU_BASE_PATH "/dev/fdset/1"

/* QEMU's seccomp filter, on every QEMU. */
#define GV_QEMU_SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

/* Paths of the files one VM uses, all inside its directory. */
typedef struct gv_vmpaths {
	char *dir, *disk, *qmp, *pidfile, *console, *jobout, *jobspec, *qemulog;
	char *kernel, *initrd;
	char *blkmon; /* a second QMP monitor, for the disk's dirty bitmap */
	char *input, *output; /* the job's input and output disks */
	/* the base image and its format, if the caller set them (not owned,
	 * not freed by gv_vmpaths_clear): then QEMU opens it as we say */
	const char *base, *base_fmt;
	bool base_from_fd; /* QEMU gets it as GV_QEMU_BASE_PATH, not @base */
	/* the template layout (d->tmpl, or building a template): guest RAM
	 * from @mem_file (a template's), shared with it only while a template
	 * is built (@mem_shared); @no_disks: the disks are hot-plugged after
	 * the restore. Set by the caller, not owned. */
	const char *mem_file;
	bool mem_shared, no_disks, tmpl_layout;
	/* the RAM from the file descriptor GV_QEMU_FD_MEM instead (a
	 * template's sealed copy in memory, mapped copy-on-write) */
	bool mem_from_fd;
	int mem_fd; /* that fd in the agent (borrowed) */
	char *ctl; /* the control port's socket (template layout) */
	/* a third QMP monitor, the fence keeper's alone: it pauses the VM
	 * when the agent is away past its grid lease (docs/host-loss.md) */
	char *fence;
} gv_vmpaths;

void gv_vmdef_free(gv_vmdef *d);

/* Build from JSON; on error returns -EINVAL and @e says what is wrong. */
int gv_vmdef_from_json(json_t *j, gv_vmdef **out, gv_err *e) GV_WUR;
json_t *gv_vmdef_to_json(const gv_vmdef *d);

/* Fill @p for VM @name below @datadir; free with gv_vmpaths_clear. */
void gv_vmpaths_init(gv_vmpaths *p, const char *datadir, const char *name);
void gv_vmpaths_clear(gv_vmpaths *p);

/* The job spec the in-guest init reads through fw_cfg (see guest/init.c):
 * key=value lines, an empty line, then the argv NUL separated.
 * @return malloc'd buffer and its length in *len. */
char *gv_vmdef_jobspec(const gv_vmdef *d, size_t *len);

/* The QEMU argv (NULL-terminated, free with gv_strv_free). @accel_arg is
 * the -accel value, @incoming non-zero adds "-incoming defer". QEMU runs
 * in the foreground, paused (-S), under -sandbox, its monitors on the
 * file descriptors GV_QEMU_FD_*; it writes no pidfile. */
char **gv_vmdef_qemu_argv(const gv_vmdef *d, const gv_vmpaths *p,
			  const char *accel_arg, bool incoming);

/* The template layout's disks, hot-plugged after a restore, as the QMP
 * commands that add them (blockdev-add, device_add): a JSON array of
 * {"execute", "arguments"}, the same node names and PCI slots as on the
 * command line of the layout. */
json_t *gv_vmdef_hotplug_cmds(const gv_vmdef *d, const gv_vmpaths *p);

void gv_strv_free(char **v);
size_t gv_strv_len(char *const *v);
char **gv_strv_dup(char *const *v);

#endif
