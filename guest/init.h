/* SPDX-License-Identifier: MIT */
/*
 * init.h - what the parts of gridvm-init share: the job (init.c parses
 * its spec), the console and job-port messages, the job's inputs and
 * outputs (jobio.c).
 */
#ifndef GRIDVM_GUEST_INIT_H
#define GRIDVM_GUEST_INIT_H

#include <stdbool.h>

#define NEWROOT "/newroot"
#define CHUNK 65536 /* bytes read from a job pipe at a time = max frame payload */
#define PRINTF(f, a) __attribute__((format(printf, f, a)))

struct job {
	const char *root;     /* block device, NULL: run in the initramfs */
	const char *workdir;  /* NULL: default */
	const char *hostname; /* NULL: leave as is */
	char **env;           /* NULL-terminated */
	char **argv;          /* NULL-terminated, at least one entry */
	char **inputs;        /* input= paths, NULL-terminated */
	char **outputs;       /* output= paths, NULL-terminated */
};

/* init.c */
extern bool root_mounted; /* the job's root disk is mounted at NEWROOT */
long now_ms(void);
/* Sleep a tick; false once the deadline end (from now_ms()) has passed. */
bool tick_until(long end);
/* A line on the console. */
void PRINTF(1, 2) logmsg(const char *fmt, ...);
/* On the console and as an 'M' frame. */
void PRINTF(1, 2) send_msg(const char *fmt, ...);

/* jobio.c */
/* The job's working directory inside its root (call after the chroot). */
const char *job_workdir(const struct job *job);
/* Before anything else of the job's inputs and outputs; 0 or -1 after 'M'. */
int jobio_init(const struct job *job);
/* Place the inputs (root mounted, job not started); 0 or -1 after 'M'. */
int inputs_setup(const struct job *job);
/* /dev/vdX of the virtio disk with QEMU serial @serial into @dev, waiting
 * up to 60 s for it; false if it never appears. */
bool find_disk(const char *serial, char *dev, size_t len);
/* Collect the outputs onto the output disk, synced (the job has ended). */
void outputs_collect(const struct job *job);

#endif
