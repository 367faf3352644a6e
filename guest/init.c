/* SPDX-License-Identifier: MIT */
/*
 * gridvm-init: PID 1 of the gridvm guest initramfs.
 *
 * Mounts the pseudo filesystems, loads the virtio and fw_cfg modules, reads
 * the job spec from fw_cfg, runs the job once (optionally chrooted into an
 * ext4 disk), streams its output to the host over a virtio-serial port and
 * powers the VM off.  Built static: gcc -std=c17 -static -Os.
 *
 * Job spec: fw_cfg file "opt/gridvm/job", read from
 * /sys/firmware/qemu_fw_cfg/by_name/opt/gridvm/job/raw.
 *   header: lines "key=value\n", ended by an empty line ("\n");
 *     root=/dev/vda      ext4 block device to mount rw at /newroot and chroot
 *                        into; absent: the job runs in the initramfs
 *     workdir=/path      working directory inside the job root
 *                        (default /root if it exists there, else /)
 *     env=NAME=VALUE     environment entry, repeatable, overrides defaults
 *                        (PATH=/usr/local/sbin:...:/bin HOME=/root TERM=dumb)
 *     hostname=NAME      hostname of the VM
 *   Unknown keys and malformed lines are errors (no '\r' handling).
 *   body: the job's argv, each string terminated by a NUL byte (the final
 *     NUL may be omitted), up to the end of the file; at least one string.
 *   Example: "root=/dev/vda\nenv=A=1\n\nsh\0-c\0echo $A\0"
 *
 * Port protocol: virtio-serial port named "org.gridvm.job", guest -> host
 * only, a sequence of frames: 1 byte type, 4 bytes big-endian payload
 * length, payload.
 *   'S' job started (exec succeeded), empty    'O' stdout bytes
 *   'M' message from init, human text          'E' stderr bytes
 *   'X' exit: 4-byte big-endian int, the exit status or 128+signal; it is
 *       the last frame and is sent after the job's filesystems were synced
 *       and unmounted.
 * If the job cannot be run at all: 'M' then 'X' with 127 (command not
 * found), 126 (found but not executable) or 125 (any other setup failure).
 * The job ends when its main process exits: then every process left is
 * killed, the pipes are drained and the exit frame is sent.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JOB_SPEC "/sys/firmware/qemu_fw_cfg/by_name/opt/gridvm/job/raw"
#define PORT_NAME "org.gridvm.job"
#define VPORTS "/sys/class/virtio-ports"
#define NEWROOT "/newroot"
#define SPEC_MAX (1u << 20)
#define CHUNK 65536 /* bytes read from a job pipe at a time = max frame payload */

enum { EXIT_SETUP = 125, EXIT_NOEXEC = 126, EXIT_NOTFOUND = 127 };
enum child_stage { STAGE_STDIO, STAGE_CHROOT, STAGE_CHDIR, STAGE_EXEC };

struct job {
	const char *root;     /* block device, NULL: run in the initramfs */
	const char *workdir;  /* NULL: default */
	const char *hostname; /* NULL: leave as is */
	char **env;           /* NULL-terminated */
	char **argv;          /* NULL-terminated, at least one entry */
};

/* Reported by the child through a CLOEXEC pipe when it fails before exec. */
struct child_report {
	int stage;
	int err;
};

extern char **environ;

static const char *const modules[] = {
	/* virtio needs virtio_ring's symbols, so virtio_ring goes first */
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
	"virtio_pci", "virtio_blk", "virtio_console", "qemu_fw_cfg",
};
static const char *const root_mounts[][2] = {
	{ "proc", "proc" }, { "sys", "sysfs" }, { "dev", "devtmpfs" }, { "tmp", "tmpfs" },
};

static int port_fd = -1;
static bool root_mounted;
static char pending[1024]; /* messages logged before the port was open */
static unsigned char frame_buf[5 + CHUNK];

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void send_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logmsg(const char *fmt, ...)
{
	char line[600];
	struct timespec ts;
	va_list ap;
	int n;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	n = snprintf(line, sizeof(line), "gridvm-init: [%ld.%03ld] ", (long)ts.tv_sec,
		     ts.tv_nsec / 1000000);

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere else to report it */
	}
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* Poll until path exists; returns 0, or -1 after timeout_ms. */
static int wait_for_path(const char *path, long timeout_ms)
{
	long end = now_ms() + timeout_ms;
	const struct timespec tick = { 0, 5 * 1000000 };

	while (access(path, F_OK) < 0) {
		if (now_ms() >= end)
			return -1;
		nanosleep(&tick, NULL);
	}
	return 0;
}

/* Write everything, retrying on EINTR, partial writes and EAGAIN. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };

				poll(&pfd, 1, 1000);
				continue;
			}
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Send one frame; payloads longer than CHUNK are split into several frames. */
static void send_frame(char type, const void *payload, size_t len)
{
	const char *p = payload;

	do {
		size_t n = len < CHUNK ? len : CHUNK;

		if (port_fd < 0)
			return;
		frame_buf[0] = type;
		put_be32(frame_buf + 1, n);
		if (n && p != (const char *)frame_buf + 5)
			memmove(frame_buf + 5, p, n);
		int r = write_all(port_fd, frame_buf, 5 + n);
		if (r < 0) {
			logmsg("cannot write to the job port: %s", strerror(-r));
			close(port_fd);
			port_fd = -1;
			return;
		}
		p += n;
		len -= n;
	} while (len > 0);
}

/* Log a message on the console and send it as an 'M' frame (or keep it). */
static void send_msg(const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	logmsg("%s", text);
	if (port_fd >= 0) {
		send_frame('M', text, strlen(text));
	} else if (strlen(pending) + strlen(text) + 2 < sizeof(pending)) {
		strcat(pending, text);
		strcat(pending, "\n");
	}
}

static void send_exit(int code)
{
	unsigned char be[4];

	put_be32(be, (uint32_t)code);
	send_frame('X', be, sizeof(be));
}

static void mount_or_log(const char *src, const char *dir, const char *type,
			 unsigned long flags, const char *data)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
		logmsg("cannot mount %s on %s: %s", type, dir, strerror(errno));
}

static void setup_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);

	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		if (fd != i)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

static void load_modules(void)
{
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		char path[128];
		int fd;

		snprintf(path, sizeof(path), "/lib/modules/%s.ko", modules[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			send_msg("cannot open module %s: %s", path, strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			send_msg("cannot load module %s: %s", modules[i], strerror(errno));
		close(fd);
	}
}

/* Find the job port by its name; returns an fd or -1 after timeout_ms. */
static int open_port(long timeout_ms)
{
	long end = now_ms() + timeout_ms;
	const struct timespec tick = { 0, 5 * 1000000 };

	do {
		DIR *d = opendir(VPORTS);
		struct dirent *de;

		while (d && (de = readdir(d))) {
			char path[300], name[64] = "";
			FILE *f;

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), VPORTS "/%s/name", de->d_name);
			f = fopen(path, "re");
			if (!f)
				continue;
			if (!fgets(name, sizeof(name), f))
				name[0] = 0;
			fclose(f);
			name[strcspn(name, "\n")] = 0;
			if (strcmp(name, PORT_NAME))
				continue;
			snprintf(path, sizeof(path), "/dev/%s", de->d_name);
			int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
			if (fd >= 0) {
				closedir(d);
				return fd;
			}
		}
		if (d)
			closedir(d);
		nanosleep(&tick, NULL);
	} while (now_ms() < end);
	return -1;
}

/* Read the whole job spec into a NUL-terminated heap buffer. */
static char *read_spec(size_t *len)
{
	char *buf = malloc(SPEC_MAX + 1);
	size_t n = 0;
	int fd;

	if (!buf || wait_for_path(JOB_SPEC, 2000) < 0 ||
	    (fd = open(JOB_SPEC, O_RDONLY | O_CLOEXEC)) < 0) {
		free(buf);
		return NULL;
	}
	for (;;) {
		ssize_t r = read(fd, buf + n, SPEC_MAX - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (n += r) == SPEC_MAX)
			break;
	}
	close(fd);
	buf[n] = 0;
	*len = n;
	return buf;
}

/* Add or replace NAME=VALUE in env (which has room for one more entry). */
static int env_set(char **env, size_t *count, char *entry)
{
	size_t klen = strcspn(entry, "=");

	if (klen == 0 || entry[klen] != '=')
		return -1;
	for (size_t i = 0; i < *count; i++) {
		if (!strncmp(env[i], entry, klen + 1)) {
			env[i] = entry;
			return 0;
		}
	}
	env[(*count)++] = entry;
	env[*count] = NULL;
	return 0;
}

/* Parse spec (modified in place, must outlive job); 0 or -1 with a message. */
static int job_parse(char *spec, size_t len, struct job *job)
{
	static char *defaults[] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "TERM=dumb",
	};
	size_t nenv = 0, nargs = 0, pos = 0;

	*job = (struct job){ 0 };
	job->env = calloc(3 + len / 2 + 1, sizeof(char *));
	job->argv = calloc(len / 2 + 2, sizeof(char *));
	if (!job->env || !job->argv) {
		send_msg("job spec: out of memory");
		return -1;
	}
	for (size_t i = 0; i < 3; i++)
		env_set(job->env, &nenv, defaults[i]);
	for (;;) {
		char *line = spec + pos, *nl = memchr(line, '\n', len - pos), *val;

		if (!nl) {
			send_msg("job spec: no empty line after the header");
			return -1;
		}
		*nl = 0;
		pos = nl + 1 - spec;
		if (!*line)
			break;
		val = strchr(line, '=');
		if (!val) {
			send_msg("job spec: bad header line '%s'", line);
			return -1;
		}
		*val++ = 0;
		if (!strcmp(line, "root")) {
			job->root = val;
		} else if (!strcmp(line, "workdir")) {
			job->workdir = val;
		} else if (!strcmp(line, "hostname")) {
			job->hostname = val;
		} else if (!strcmp(line, "env")) {
			if (env_set(job->env, &nenv, val) < 0) {
				send_msg("job spec: bad env entry '%s'", val);
				return -1;
			}
		} else {
			send_msg("job spec: unknown key '%s'", line);
			return -1;
		}
	}
	while (pos < len) {
		job->argv[nargs++] = spec + pos;
		pos += strlen(spec + pos) + 1;
	}
	if (nargs == 0 || !job->argv[0][0]) {
		send_msg("job spec: no command");
		return -1;
	}
	return 0;
}

static int setup_root(const char *dev)
{
	if (wait_for_path(dev, 10000) < 0) {
		send_msg("cannot mount %s: device did not appear", dev);
		return -1;
	}
	mkdir(NEWROOT, 0755);
	if (mount(dev, NEWROOT, "ext4", 0, NULL) < 0) {
		send_msg("cannot mount %s: %s", dev, strerror(errno));
		return -1;
	}
	root_mounted = true;
	for (size_t i = 0; i < sizeof(root_mounts) / sizeof(root_mounts[0]); i++) {
		char dir[64];

		snprintf(dir, sizeof(dir), NEWROOT "/%s", root_mounts[i][0]);
		if ((mkdir(dir, 0755) < 0 && errno != EEXIST) ||
		    mount(root_mounts[i][1], dir, root_mounts[i][1], MS_NOSUID,
			  i == 3 ? "mode=1777" : NULL) < 0) {
			send_msg("cannot mount %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void teardown_root(void)
{
	if (!root_mounted)
		return;
	for (size_t i = sizeof(root_mounts) / sizeof(root_mounts[0]); i-- > 0;) {
		char dir[64];

		snprintf(dir, sizeof(dir), NEWROOT "/%s", root_mounts[i][0]);
		if (umount2(dir, 0) < 0)
			umount2(dir, MNT_DETACH);
	}
	if (umount2(NEWROOT, 0) < 0) {
		logmsg("cannot unmount " NEWROOT ": %s; remounting read-only", strerror(errno));
		mount(NULL, NEWROOT, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	}
	root_mounted = false;
}

/* In the forked child: set up and exec; on failure report through status. */
static void __attribute__((noreturn)) child_exec(const struct job *job, int out, int err, int status)
{
	struct child_report rep = { STAGE_STDIO, 0 };
	const char *wd = job->workdir;
	sigset_t none;
	int null;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		goto fail;
	rep.stage = STAGE_CHROOT;
	if (job->root && chroot(NEWROOT) < 0)
		goto fail;
	rep.stage = STAGE_CHDIR;
	if (!wd)
		wd = access("/root", X_OK) == 0 ? "/root" : "/";
	if (chdir(wd) < 0)
		goto fail;
	rep.stage = STAGE_EXEC;
	environ = job->env;
	execvp(job->argv[0], job->argv);
fail:
	rep.err = errno;
	if (write(status, &rep, sizeof(rep)) < 0) {
		/* the parent will see a short report */
	}
	_exit(rep.stage != STAGE_EXEC ? EXIT_SETUP :
	      rep.err == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC);
}

/* Reap children; returns true when pid has exited (its status in *status). */
static bool reap(pid_t pid, int *status)
{
	bool found = false;
	pid_t w;
	int st;

	while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
		if (w == pid) {
			*status = st;
			found = true;
		}
	}
	return found;
}

/* Relay the job's pipes to the port until both close and pid has exited. */
static int job_relay(pid_t pid, int out, int err, int sigfd)
{
	struct pollfd p[3] = { { out, POLLIN, 0 }, { err, POLLIN, 0 }, { sigfd, POLLIN, 0 } };
	bool exited = false;
	int status = 0;

	while (p[0].fd >= 0 || p[1].fd >= 0 || !exited) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			ssize_t n = read(p[i].fd, frame_buf + 5, CHUNK);
			if (n > 0) {
				send_frame(i ? 'E' : 'O', frame_buf + 5, n);
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(p[i].fd);
				p[i].fd = -1;
			}
		}
		if (p[2].revents) {
			struct signalfd_siginfo si;

			while (read(sigfd, &si, sizeof(si)) > 0)
				;
			if (!exited && reap(pid, &status)) {
				exited = true;
				kill(-1, SIGKILL); /* leftovers would keep the pipes open */
			}
		}
	}
	if (!exited)
		waitpid(pid, &status, 0);
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Run the job; returns its exit code (or 125/126/127 after an 'M' frame). */
static int job_run(const struct job *job, int sigfd)
{
	int out[2], err[2], status[2];
	struct child_report rep;
	ssize_t n;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    pipe2(status, O_CLOEXEC) < 0) {
		send_msg("cannot create pipes: %s", strerror(errno));
		return EXIT_SETUP;
	}
	pid = fork();
	if (pid < 0) {
		send_msg("cannot fork: %s", strerror(errno));
		return EXIT_SETUP;
	}
	if (pid == 0)
		child_exec(job, out[1], err[1], status[1]);
	close(out[1]);
	close(err[1]);
	close(status[1]);
	do
		n = read(status[0], &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	close(status[0]);
	if (n != 0) {
		static const char *const what[] = { "set up stdio", "chroot to " NEWROOT,
						    "chdir to", "execute" };
		int st = 0;

		waitpid(pid, &st, 0);
		if (n != sizeof(rep))
			rep = (struct child_report){ STAGE_STDIO, EIO };
		send_msg("cannot %s %s: %s", what[rep.stage],
			 rep.stage == STAGE_CHDIR ? (job->workdir ? job->workdir : "/root")
			 : rep.stage == STAGE_EXEC ? job->argv[0] : "",
			 strerror(rep.err));
		close(out[0]);
		close(err[0]);
		return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_SETUP;
	}
	send_frame('S', NULL, 0);
	logmsg("job started: %s", job->argv[0]);
	return job_relay(pid, out[0], err[0], sigfd);
}

/* Kill what is left, sync, unmount, send the exit frame and power off. */
static void __attribute__((noreturn)) finish(int code)
{
	long end = now_ms() + 2000;
	const struct timespec tick = { 0, 5 * 1000000 };

	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, WNOHANG) >= 0 && now_ms() < end)
		nanosleep(&tick, NULL);
	sync();
	teardown_root();
	sync();
	if (code >= 0) {
		logmsg("job exited with %d", code);
		send_exit(code);
	}
	if (port_fd >= 0)
		close(port_fd);
	logmsg("powering off");
	reboot(RB_POWER_OFF);
	logmsg("power off failed: %s", strerror(errno));
	_exit(1); /* the kernel panics; with panic=-1 and -no-reboot QEMU exits */
}

int main(void)
{
	struct job job;
	sigset_t chld;
	size_t len;
	char *spec;
	int sigfd;

	mount_or_log("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_or_log("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_or_log("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	setup_console();
	logmsg("loading modules");
	load_modules();
	port_fd = open_port(5000);
	if (port_fd < 0) {
		logmsg("cannot find virtio-serial port " PORT_NAME);
		finish(-1);
	}
	if (pending[0])
		send_frame('M', pending, strlen(pending) - 1);
	spec = read_spec(&len);
	if (!spec) {
		send_msg("cannot read the job spec " JOB_SPEC ": %s", strerror(errno));
		finish(EXIT_SETUP);
	}
	if (job_parse(spec, len, &job) < 0)
		finish(EXIT_SETUP);
	if (job.hostname && sethostname(job.hostname, strlen(job.hostname)) < 0) {
		send_msg("cannot set hostname '%s': %s", job.hostname, strerror(errno));
		finish(EXIT_SETUP);
	}
	if (job.root && setup_root(job.root) < 0)
		finish(EXIT_SETUP);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0) {
		send_msg("signalfd: %s", strerror(errno));
		finish(EXIT_SETUP);
	}
	finish(job_run(&job, sigfd));
}
