/* SPDX-License-Identifier: MIT */
/*
 * jobio.c - the job's files in and out of the guest (docs/guest-protocol.md).
 *
 * Inputs: before the job starts, the input disk (virtio serial
 * "gridvm-input", read-only) is unpacked with busybox tar, inside the
 * job's root, into /.gridvm-input; its member N (and N/...) is moved to
 * the Nth input= path (relative to the job's working directory unless
 * absolute), replacing what was there. A failure is a setup failure (125).
 *
 * Outputs: when the job has ended (whatever its status; its leftover
 * processes killed, its root still mounted), each output= path is packed
 * by busybox tar -C DIRNAME BASENAME, inside the job's root. The streams,
 * each without its end marker, follow one another from offset 0 of the
 * output disk (serial "gridvm-output"), and one end marker closes them:
 * one tar, members BASENAME[/...]. The disk's last 64 KiB then get the
 * manifest, text, NUL-padded:
 *   gridvm-output 1
 *   tar BYTES            the tar's length, end marker included
 *   STATUS PATH          per output, in order: ok, missing, toolarge, error
 * and the disk is synced: all before the exit frame is sent. An output
 * that fails leaves nothing of itself in the tar.
 *
 * The helpers (busybox from the initramfs, also run inside the job's
 * root through an fd opened early) run in children, so init itself never
 * enters the job's root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

#define BUSYBOX "/bin/busybox"
#define INPUT_SERIAL "gridvm-input"
#define OUTPUT_SERIAL "gridvm-output"
#define INPUT_STAGE "/.gridvm-input" /* in the job's root */
#define MANIFEST_SIZE 65536u          /* the output disk's last bytes */
#define TAR_END 1024u                 /* a tar ends with two zero blocks */

/* How an output fared (the manifest's words). */
enum { OUT_OK, OUT_MISSING, OUT_TOOLARGE, OUT_ERROR };
static const char *const out_status[] = { "ok", "missing", "toolarge", "error" };
enum { CHILD_MISSING = 100, CHILD_SETUP = 101 }; /* exit codes of our helpers */

extern char **environ;
static int busybox_fd = -1;

/* The working directory of the job, inside its root (after the chroot). */
const char *job_workdir(const struct job *job)
{
	if (job->workdir)
		return job->workdir;
	return access("/root", X_OK) == 0 ? "/root" : "/";
}

/* In a helper child: enter the job's root and working directory, as the
 * job sees them; 0, or -1 after an 'M'. */
static int enter_job(const struct job *job)
{
	const char *wd;

	if (job->root && chroot(NEWROOT) < 0) {
		send_msg("cannot chroot to " NEWROOT ": %s", strerror(errno));
		return -1;
	}
	wd = job_workdir(job);
	if (chdir(wd) < 0) {
		send_msg("cannot chdir to the workdir %s: %s", wd, strerror(errno));
		return -1;
	}
	return 0;
}

int jobio_init(const struct job *job)
{
	if (!job->inputs[0] && !job->outputs[0])
		return 0;
	busybox_fd = open(BUSYBOX, O_RDONLY | O_CLOEXEC);
	if (busybox_fd < 0) {
		send_msg("cannot open " BUSYBOX ": %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Run the busybox applet argv[0] (the initramfs's busybox, also from
 * inside the job's root) with stdout @out (-1: the console); its exit
 * status, 128+signal, or -1. */
static int busybox(char *const argv[], int out)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (out >= 0)
			dup2(out, 1);
		fexecve(busybox_fd, argv, environ);
		logmsg("cannot run busybox %s: %s", argv[0], strerror(errno));
		_exit(CHILD_SETUP);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* Wait for a child; its exit status, or -1. */
static int wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* (init.h) up to 60 s: a loaded host probes slowly */
bool find_disk(const char *serial, char *dev, size_t len)
{
	long end = now_ms() + 60000;

	do {
		DIR *d = opendir("/sys/block");
		struct dirent *de;
		bool found = false;

		while (d && !found && (de = readdir(d))) {
			char path[300], buf[64] = "";
			FILE *f;

			snprintf(path, sizeof(path), "/sys/block/%s/serial", de->d_name);
			if (strncmp(de->d_name, "vd", 2) || !(f = fopen(path, "re")))
				continue;
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
			buf[strcspn(buf, "\n")] = 0;
			snprintf(dev, len, "/dev/%.32s", de->d_name);
			found = !strcmp(buf, serial);
		}
		if (d)
			closedir(d);
		if (found && access(dev, F_OK) == 0)
			return true;
	} while (tick_until(end));
	return false;
}

/* mkdir -p of the directory part of @path (relative to the cwd). */
static int mkdir_parents(const char *path)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

/* In the child: unpack the input disk @dev into INPUT_STAGE and move
 * member N to inputs[N], replacing what is there. 0 or -1 after an 'M'. */
static int inputs_place(const struct job *job, const char *dev)
{
	char *rm[] = { "rm", "-rf", INPUT_STAGE, NULL };
	char *untar[] = { "tar", "-x", "-o", "-f", (char *)dev, "-C", INPUT_STAGE, NULL };
	struct stat st;

	if (enter_job(job) < 0)
		return -1;
	if ((lstat(INPUT_STAGE, &st) == 0 && busybox(rm, -1) != 0) ||
	    mkdir(INPUT_STAGE, 0700) < 0) {
		send_msg("cannot create " INPUT_STAGE ": %s", strerror(errno));
		return -1;
	}
	if (busybox(untar, -1) != 0) {
		send_msg("cannot unpack the input disk (see the console)");
		return -1;
	}
	for (size_t i = 0; job->inputs[i]; i++) {
		const char *to = job->inputs[i];
		char from[64];
		char *del[] = { "rm", "-rf", (char *)to, NULL };
		char *mv[] = { "mv", from, (char *)to, NULL };

		snprintf(from, sizeof(from), INPUT_STAGE "/%zu", i);
		if (lstat(from, &st) < 0) {
			send_msg("input %s: not on the input disk", to);
			return -1;
		}
		if (mkdir_parents(to) < 0 || (lstat(to, &st) == 0 && busybox(del, -1) != 0)) {
			send_msg("input %s: cannot make room for it: %s", to, strerror(errno));
			return -1;
		}
		/* across file systems (e.g. to /tmp) mv copies */
		if (rename(from, to) < 0 && (errno != EXDEV || busybox(mv, -1) != 0)) {
			send_msg("input %s: cannot move it into place: %s", to, strerror(errno));
			return -1;
		}
	}
	rmdir(INPUT_STAGE);
	return 0;
}

/* Place the job's inputs (a child does it, inside the job's root); 0 or
 * -1 after an 'M'. */
int inputs_setup(const struct job *job)
{
	char dev[64];
	pid_t pid;

	if (!job->inputs[0])
		return 0;
	if (!find_disk(INPUT_SERIAL, dev, sizeof(dev))) {
		send_msg("the input disk (serial " INPUT_SERIAL ") did not appear");
		return -1;
	}
	if ((pid = fork()) < 0) {
		send_msg("cannot place the inputs: %s", strerror(errno));
		return -1;
	}
	if (pid == 0)
		_exit(inputs_place(job, dev) < 0 ? 1 : 0);
	if (wait_child(pid) != 0)
		return -1;
	logmsg("inputs placed");
	return 0;
}

/* In the child: busybox tar of output @path to @out, from its directory;
 * exits CHILD_MISSING if it is not there. */
static void __attribute__((noreturn)) output_child(const struct job *job, const char *path,
						    int out)
{
	char dir[4096], base[4100], *slash;
	struct stat st;

	if (enter_job(job) < 0)
		_exit(CHILD_SETUP);
	if (lstat(path, &st) < 0)
		_exit(errno == ENOENT || errno == ENOTDIR ? CHILD_MISSING : CHILD_SETUP);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	/* a name starting with '-' must not look like an option */
	snprintf(base, sizeof(base), "%s%s", (slash ? slash[1] : dir[0]) == '-' ? "./" : "",
		 slash ? slash + 1 : dir);
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	char *tar[] = { "tar", "-c", "-f", "-", "-C", dir, base, NULL };
	_exit(busybox(tar, out) == 0 ? 0 : CHILD_SETUP);
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Pack output @path onto the disk @fd at *off, below @cap; on success *off
 * is where its end marker begins (the next stream goes there). */
static int output_pack(const struct job *job, const char *path, int fd, uint64_t *off,
		       uint64_t cap)
{
	static unsigned char buf[CHUNK];
	uint64_t start = *off;
	bool full = false, failed = false;
	int p[2], st;
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0)
		return OUT_ERROR;
	if (pid == 0)
		output_child(job, path, p[1]);
	close(p[1]);
	while ((n = read(p[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (full || failed)
			continue; /* drain, the child is being killed */
		if (*off + (uint64_t)n > cap)
			full = true;
		else if (pwrite_all(fd, buf, (size_t)n, *off) < 0)
			failed = true;
		else
			*off += (uint64_t)n;
		if (full || failed)
			kill(pid, SIGKILL);
	}
	close(p[0]);
	st = wait_child(pid);
	if (full || failed || st != 0 || *off - start < TAR_END) {
		*off = start;
		return full ? OUT_TOOLARGE : st == CHILD_MISSING ? OUT_MISSING : OUT_ERROR;
	}
	*off -= TAR_END;
	return OUT_OK;
}

/* Collect the job's outputs onto the output disk: one tar from offset 0,
 * the manifest in its last MANIFEST_SIZE bytes, synced. */
void outputs_collect(const struct job *job)
{
	static char man[MANIFEST_SIZE];
	static const unsigned char end[TAR_END];
	char dev[64], list[MANIFEST_SIZE - 64] = "";
	uint64_t size = 0, off = 0;
	size_t used = 0;
	int fd = -1;

	if (!job->outputs[0])
		return;
	if (!find_disk(OUTPUT_SERIAL, dev, sizeof(dev)) ||
	    (fd = open(dev, O_RDWR | O_CLOEXEC)) < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0 ||
	    size < MANIFEST_SIZE + 2 * TAR_END) {
		send_msg("cannot use the output disk (serial " OUTPUT_SERIAL "): %s",
			 fd < 0 ? strerror(errno) : "too small");
		if (fd >= 0)
			close(fd);
		return;
	}
	for (size_t i = 0; job->outputs[i]; i++) {
		const char *path = job->outputs[i];
		/* a root disk that did not mount: nothing to collect from */
		int s = job->root && !root_mounted
				? OUT_ERROR
				: output_pack(job, path, fd, &off, size - MANIFEST_SIZE - TAR_END);
		int n = snprintf(list + used, sizeof(list) - used, "%s %s\n", out_status[s], path);

		if (n > 0 && (size_t)n < sizeof(list) - used)
			used += (size_t)n;
		if (s == OUT_TOOLARGE) /* the host names it; the console says more */
			logmsg("output %s does not fit on the output disk", path);
		else if (s == OUT_ERROR)
			send_msg("output %s: cannot be packed (see the console)", path);
	}
	memset(man, 0, sizeof(man));
	snprintf(man, sizeof(man), "gridvm-output 1\ntar %llu\n%s",
		 (unsigned long long)(off + TAR_END), list);
	if (pwrite_all(fd, end, sizeof(end), off) < 0 || fsync(fd) < 0 ||
	    pwrite_all(fd, man, sizeof(man), size - MANIFEST_SIZE) < 0 || fsync(fd) < 0)
		send_msg("cannot write the output disk: %s", strerror(errno));
	else
		logmsg("outputs collected: %llu bytes", (unsigned long long)(off + TAR_END));
	close(fd);
}
