/* SPDX-License-Identifier: MIT */
/* vmopts.h - the VM options shared by `gridvm run` and `gridvm vm create`,
 * and the fetching of a job's outputs. */
#ifndef GRIDVM_VMOPTS_H
#define GRIDVM_VMOPTS_H

#include <getopt.h>
#include <gridvm/api/client.h>
#include <jansson.h>

#define VMOPTS_HELP \
	"  -i, --image NAME      image for the VM's disk (default: default)\n" \
	"  -c, --cpus N          virtual CPUs (default 1)\n" \
	"  -m, --memory SIZE     memory, e.g. 512M or 1G (default 256M)\n" \
	"  -e, --env NAME=VALUE  environment of the job (repeatable)\n" \
	"  -w, --workdir DIR     working directory of the job\n" \
	"      --cpu-weight N    relative CPU share, 1-10000 (default 100)\n" \
	"      --cpu-cap PCT     CPU cap in percent of one core (e.g. 50)\n" \
	"      --disk-iops N     disk I/O operations per second limit\n" \
	"      --disk-bps SIZE   disk bytes per second limit (e.g. 20M)\n" \
	"      --accel A         auto, kvm or tcg (default auto)\n" \
	"      --boot disk       boot the image through the firmware (a bootable\n" \
	"                        disk with its own OS) instead of the gridvm guest\n" \
	"      --kernel FILE     boot this kernel instead of the gridvm guest's\n" \
	"      --initrd FILE     with this initramfs\n" \
	"      --append STRING   and this kernel command line\n" \
	"      --checkpoint-every DUR  checkpoint the VM periodically (e.g. 10m)\n" \
	"      --checkpoint-keep N     keep only the last N checkpoints\n" \
	"      --checkpoint-drop-on-success  delete the checkpoints when the job\n" \
	"                        exits with 0\n" \
	"      --input PATH[:GUEST_PATH]  a file or directory of this host the job\n" \
	"                        reads (repeatable), copied when the VM is created;\n" \
	"                        GUEST_PATH default: its basename in the job's\n" \
	"                        working directory (/root, or --workdir); a relative\n" \
	"                        GUEST_PATH is relative to it; what is there is replaced\n" \
	"      --output GUEST_PATH  a file or directory the job writes (repeatable;\n" \
	"                        relative to its working directory), collected when\n" \
	"                        the job ends, also when it fails\n" \
	"      --output-max SIZE  room for the outputs (default 1G)\n" \
	"      --cold            boot the guest instead of starting it from a\n" \
	"                        template (a pre-booted guest, see 'gridvm template')\n" \
	"      --start MODE      auto (a template where one fits, the default),\n" \
	"                        cold, or template (fail if none fits); the\n" \
	"                        default comes from $GRIDVM_START if set\n"

#define VMOPTS_LONG \
	{ "image", required_argument, NULL, 'i' }, \
	{ "cpus", required_argument, NULL, 'c' }, \
	{ "memory", required_argument, NULL, 'm' }, \
	{ "env", required_argument, NULL, 'e' }, \
	{ "workdir", required_argument, NULL, 'w' }, \
	{ "cpu-weight", required_argument, NULL, 1001 }, \
	{ "cpu-cap", required_argument, NULL, 1002 }, \
	{ "disk-iops", required_argument, NULL, 1003 }, \
	{ "disk-bps", required_argument, NULL, 1004 }, \
	{ "accel", required_argument, NULL, 1005 }, \
	{ "boot", required_argument, NULL, 1006 }, \
	{ "kernel", required_argument, NULL, 1007 }, \
	{ "initrd", required_argument, NULL, 1008 }, \
	{ "append", required_argument, NULL, 1009 }, \
	{ "checkpoint-every", required_argument, NULL, 1010 }, \
	{ "checkpoint-keep", required_argument, NULL, 1011 }, \
	{ "checkpoint-drop-on-success", no_argument, NULL, 1012 }, \
	{ "input", required_argument, NULL, 1013 }, \
	{ "output", required_argument, NULL, 1014 }, \
	{ "output-max", required_argument, NULL, 1015 }, \
	{ "cold", no_argument, NULL, 1016 }, \
	{ "start", required_argument, NULL, 1017 }

#define VMOPTS_SHORT "i:c:m:e:w:"

/* Apply option @c with @arg to the definition @d. @return 1 if handled,
 * 0 if not a VM option, -1 after printing an error. */
int vmopts_apply(json_t *d, int c, const char *arg);
/* A new definition's defaults from the environment ($GRIDVM_START). */
void vmopts_init(json_t *d);

/* Fetch the outputs of VM @name's job into @dir (created if missing);
 * print each output that did not arrive. @return 0, or -1 after an
 * error (none collected, the transfer or the unpacking failed). */
int vm_fetch_outputs(gv_client *c, const char *name, const char *dir);

#endif
