/* SPDX-License-Identifier: MIT */
/*
 * gridvm-init: PID 1 of the gridvm guest initramfs.
 *
 * Mounts the pseudo filesystems, loads the virtio, fw_cfg, ACPI button and
 * evdev modules, reads the job spec from fw_cfg, runs the job once
 * (optionally chrooted into an ext4 disk), streams its output to the host
 * over a virtio-serial port and powers the VM off.  Built static:
 * gcc -std=c17 -static -Os.
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
 *     input=PATH         where input N (the Nth input= line, from 0) goes,
 *                        relative to the workdir unless absolute; the
 *                        input disk (virtio serial "gridvm-input") holds a
 *                        tar whose member N (and N/...) is that input
 *     output=PATH        a path (relative to the workdir unless absolute)
 *                        collected onto the output disk (virtio serial
 *                        "gridvm-output") when the job ends; repeatable
 *     template=1         this boot makes a template (alone, no command):
 *                        once ready, send 'R' and wait for the job spec on
 *                        the control port "org.gridvm.ctl" (a 'J' frame);
 *                        the VM is saved while it waits and every restore
 *                        of it continues there with a job of its own
 *     clock=SEC.NSEC     set the clock (a restored template's is stale)
 *     seed=HEX           bytes from the host's RNG: credited to the
 *                        kernel's pool, which is then reseeded (instances
 *                        of one template must not share random numbers)
 *   root=serial:NAME names the virtio disk with that serial (hot-plugged
 *   disks of a restored template have no fixed names).
 *   Unknown keys and malformed lines are errors (no '\r' handling).
 *   body: the job's argv, each string terminated by a NUL byte (the final
 *     NUL may be omitted), up to the end of the file; at least one string.
 *   Example: "root=/dev/vda\nenv=A=1\n\nsh\0-c\0echo $A\0"
 *
 * Port protocol: virtio-serial port named "org.gridvm.job", guest -> host
 * only, a sequence of frames: 1 byte type, 4 bytes big-endian payload
 * length, payload (at most 64 KiB).
 *   'S' job started (exec succeeded), empty    'O' stdout bytes
 *   'M' message from init, human text          'E' stderr bytes
 *   'X' exit: 4-byte big-endian int, the exit status or 128+signal; it is
 *       the last frame and is sent after the job's filesystems were synced
 *       and unmounted.
 *   'R' (template boots only) ready: waiting for the job on the control port
 * If the job cannot be run at all: 'M' then 'X' with 127 (command not
 * found), 126 (found but not executable) or 125 (any other setup failure).
 * The job ends when its main process exits: then every process left is
 * killed, the pipes are drained and the exit frame is sent.
 *
 * Inputs and outputs (input=, output=): jobio.c.
 *
 * Graceful stop: the host presses the ACPI power button (QMP
 * system_powerdown).  The first press sends SIGTERM to the job's process
 * group, a second one SIGKILL, each announced by an 'M' frame; the job then
 * ends as above (exit 143 unless it handles SIGTERM).  A press during setup
 * is seen once setup is done: 'M', 'X' 143 and power off, the job never runs.
 * A press before the button module is loaded (early boot) is lost.  Every
 * /dev/input/event* device with a KEY_POWER key counts as a power button.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

#define JOB_SPEC "/sys/firmware/qemu_fw_cfg/by_name/opt/gridvm/job/raw"
#define PORT_NAME "org.gridvm.job"
#define CTL_PORT_NAME "org.gridvm.ctl"
#define VPORTS "/sys/class/virtio-ports"
#define INPUT_DIR "/dev/input"
#define MAX_BUTTONS 4
#define SPEC_MAX (1u << 20)

enum { EXIT_SETUP = 125, EXIT_NOEXEC = 126, EXIT_NOTFOUND = 127 };
enum { EXIT_STOPPED = 128 + SIGTERM }; /* power button before the job started */
enum { STAGE_STDIO, STAGE_CHROOT, STAGE_CHDIR, STAGE_EXEC };

extern char **environ;

static const char *const modules[] = {
	/* virtio needs virtio_ring's symbols, so virtio_ring goes first */
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
	"virtio_pci", "virtio_blk", "virtio_console", "qemu_fw_cfg",
};
/* the power button; without them a stop is a forced kill, the job still runs */
static const char *const button_modules[] = { "button", "evdev" };
static const char *const root_mounts[][2] = {
	{ "proc", "proc" }, { "sys", "sysfs" }, { "dev", "devtmpfs" }, { "tmp", "tmpfs" },
};
#define N_ROOT_MOUNTS (sizeof(root_mounts) / sizeof(root_mounts[0]))

static int port_fd = -1;
static int button_fds[MAX_BUTTONS]; /* evdev devices with a power key */
static int n_buttons;
bool root_mounted;
static char pending[1024]; /* messages from before the port was open */
static unsigned char frame_buf[5 + CHUNK];
static const struct job *cur_job; /* once parsed: its outputs are collected at the end */

long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* Sleep a tick; false once the deadline end (from now_ms()) has passed. */
bool tick_until(long end)
{
	const struct timespec tick = { 0, 5 * 1000000 };

	if (now_ms() >= end)
		return false;
	nanosleep(&tick, NULL);
	return true;
}

void logmsg(const char *fmt, ...)
{
	char line[600];
	long ms = now_ms();
	int n = snprintf(line, sizeof(line), "gridvm-init: [%ld.%03ld] ", ms / 1000, ms % 1000);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* the console is all we have */
	}
}

/* Write everything, retrying on EINTR, partial writes and EAGAIN. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			poll(&pfd, 1, 1000);
		} else if (n < 0 && errno != EINTR) {
			return -errno;
		} else if (n > 0) {
			p += n;
			len -= n;
		}
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

/* Send one frame (payload truncated to CHUNK); a port error closes the port. */
static void send_frame(char type, const void *payload, size_t len)
{
	int r;

	if (port_fd < 0)
		return;
	if (len > CHUNK)
		len = CHUNK;
	frame_buf[0] = type;
	put_be32(frame_buf + 1, len);
	if (len && payload != frame_buf + 5)
		memmove(frame_buf + 5, payload, len);
	r = write_all(port_fd, frame_buf, 5 + len);
	if (r < 0) {
		logmsg("cannot write to the job port: %s", strerror(-r));
		close(port_fd);
		port_fd = -1;
	}
}

/* Log on the console and send as an 'M' frame (kept until the port opens). */
void send_msg(const char *fmt, ...)
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

static void mount_early(const char *dir, const char *type, unsigned long flags)
{
	mkdir(dir, 0755);
	if (mount(type, dir, type, flags, NULL) < 0 && errno != EBUSY)
		logmsg("cannot mount %s on %s: %s", type, dir, strerror(errno));
}

static void setup_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);

	for (int i = 0; fd >= 0 && i < 3; i++)
		if (fd != i)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

/* Load /lib/modules/name.ko; 0 (also if already loaded) or negative errno. */
static int load_module(const char *name)
{
	char path[128];
	int fd, r = 0;

	snprintf(path, sizeof(path), "/lib/modules/%s.ko", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
		r = -errno;
	close(fd);
	return r;
}

static void load_modules(void)
{
	int r;

	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++)
		if ((r = load_module(modules[i])) < 0)
			send_msg("cannot load module %s: %s", modules[i], strerror(-r));
	for (size_t i = 0; i < sizeof(button_modules) / sizeof(button_modules[0]); i++)
		if ((r = load_module(button_modules[i])) < 0)
			logmsg("cannot load module %s: %s; the power button will not work",
			       button_modules[i], strerror(-r));
}

/* True if the evdev device fd has a KEY_POWER key. */
static bool has_power_key(int fd)
{
	enum { LBITS = 8 * sizeof(unsigned long) };
	unsigned long keys[KEY_MAX / LBITS + 1] = { 0 };

	if (ioctl(fd, EVIOCGBIT(EV_KEY, sizeof(keys)), keys) < 0)
		return false;
	return keys[KEY_POWER / LBITS] >> (KEY_POWER % LBITS) & 1;
}

/* Open every INPUT_DIR/event* with a power key into button_fds. */
static void buttons_open(void)
{
	DIR *d = opendir(INPUT_DIR);
	struct dirent *de;

	while (d && n_buttons < MAX_BUTTONS && (de = readdir(d))) {
		char path[300], name[64] = "";
		int fd;

		if (strncmp(de->d_name, "event", 5))
			continue;
		snprintf(path, sizeof(path), INPUT_DIR "/%s", de->d_name);
		if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
			continue;
		if (!has_power_key(fd)) {
			close(fd);
			continue;
		}
		ioctl(fd, EVIOCGNAME(sizeof(name) - 1), name);
		logmsg("watching %s \"%s\" for the power key", path, name);
		button_fds[n_buttons++] = fd;
	}
	if (d)
		closedir(d);
	if (n_buttons == 0)
		logmsg("no power button found; a stop will be a forced kill");
}

/* Power key presses pending on a button fd; -1 if it failed (e.g. vanished). */
static int button_presses(int fd)
{
	struct input_event ev[16];
	int presses = 0;
	ssize_t n;

	while ((n = read(fd, ev, sizeof(ev))) > 0 || (n < 0 && errno == EINTR))
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(ev[0]); i++)
			presses += ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1;
	if (n < 0 && errno != EAGAIN && presses == 0)
		return -1;
	return presses;
}

/* Open /dev/<port> for the port named name in sysfs; -1 if there is none. */
static int open_named_port(const char *name, int mode)
{
	DIR *d = opendir(VPORTS);
	struct dirent *de;
	int fd = -1;

	while (d && fd < 0 && (de = readdir(d))) {
		char path[300], buf[64] = "";
		FILE *f;

		snprintf(path, sizeof(path), VPORTS "/%s/name", de->d_name);
		if (de->d_name[0] == '.' || !(f = fopen(path, "re")))
			continue;
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
		buf[strcspn(buf, "\n")] = 0;
		snprintf(path, sizeof(path), "/dev/%s", de->d_name);
		if (!strcmp(buf, name))
			fd = open(path, mode | O_CLOEXEC | O_NOCTTY);
	}
	if (d)
		closedir(d);
	return fd;
}

/* Read the whole job spec into a NUL-terminated heap buffer, or NULL. */
static char *read_spec(size_t *len)
{
	long end = now_ms() + 30000; /* generous: a loaded host runs guests slowly */
	char *buf = malloc(SPEC_MAX + 1);
	ssize_t r = 1;
	int fd;

	while ((fd = open(JOB_SPEC, O_RDONLY | O_CLOEXEC)) < 0 && tick_until(end))
		;
	if (fd < 0 || !buf) {
		free(buf);
		return NULL;
	}
	for (*len = 0; *len < SPEC_MAX && (r > 0 || (r < 0 && errno == EINTR));)
		if ((r = read(fd, buf + *len, SPEC_MAX - *len)) > 0)
			*len += r;
	close(fd);
	if (r < 0) {
		free(buf);
		return NULL;
	}
	buf[*len] = 0;
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

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* clock= and seed=: what makes a restored template's guest an instance
 * of its own; 0 or -1 after an 'M'. */
static int fresh_instance(const char *key, const char *val)
{
	struct {
		struct rand_pool_info info;
		unsigned char buf[256];
	} pool = { { 0, 0 }, { 0 } };
	size_t n = strlen(val) / 2;
	int fd, r = 0;

	if (!strcmp(key, "clock")) {
		char *end;
		struct timespec ts = { strtoll(val, &end, 10), 0 };
		if (*end == '.')
			ts.tv_nsec = strtol(end + 1, &end, 10);
		if (*end || ts.tv_nsec < 0 || ts.tv_nsec > 999999999 ||
		    clock_settime(CLOCK_REALTIME, &ts) < 0) {
			send_msg("job spec: cannot set the clock to '%s'", val);
			return -1;
		}
		return 0;
	}
	if (n == 0 || n > sizeof(pool.buf) || strlen(val) % 2) {
		send_msg("job spec: bad seed");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(val[2 * i]), lo = hexval(val[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			send_msg("job spec: bad seed");
			return -1;
		}
		pool.buf[i] = (unsigned char)(hi << 4 | lo);
	}
	pool.info.entropy_count = (int)n * 8;
	pool.info.buf_size = (int)n;
	fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	if (r < 0)
		send_msg("cannot reseed the kernel's RNG: %s", strerror(-r));
	return r < 0 ? -1 : 0;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A template boot: say 'R', then wait (as long as it takes: the VM is
 * saved meanwhile) for the job spec on the control port, a 'J' frame.
 * Reads return 0 while no one is connected to the port on the host, so
 * this polls; the wait lasts only while a template is made. The new
 * spec replaces *spec; 0, or -1 after an 'M'. */
static int template_wait(char **spec, size_t *len)
{
	const struct timespec tick = { 0, 1000000 };
	long end = now_ms() + 60000;
	unsigned char hdr[5];
	size_t got = 0, want = sizeof(hdr);
	char *buf = NULL;
	int fd;

	while ((fd = open_named_port(CTL_PORT_NAME, O_RDONLY)) < 0 && tick_until(end))
		;
	if (fd < 0) {
		send_msg("cannot find the control port " CTL_PORT_NAME);
		return -1;
	}
	send_frame('R', NULL, 0);
	logmsg("template ready: waiting for a job");
	while (got < want) {
		ssize_t n = read(fd, buf ? buf + got - sizeof(hdr) : (char *)hdr + got,
				 want - got);
		if (n < 0 && errno != EINTR && errno != EAGAIN) {
			send_msg("cannot read the control port: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (n <= 0) {
			nanosleep(&tick, NULL);
			continue;
		}
		got += (size_t)n;
		if (!buf && got == sizeof(hdr)) {
			uint32_t plen = get_be32(hdr + 1);
			if (hdr[0] != 'J' || plen > SPEC_MAX || !(buf = malloc(plen + 1))) {
				send_msg("control port: bad frame");
				close(fd);
				return -1;
			}
			want += plen;
		}
	}
	close(fd);
	free(*spec);
	*len = want - sizeof(hdr);
	buf[*len] = 0;
	*spec = buf;
	logmsg("job received");
	return 0;
}

/* Parse spec (modified in place, must outlive job); 0, or -1 after an 'M'. */
static int job_parse(char *spec, size_t len, struct job *job)
{
	static char *defaults[] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "TERM=dumb",
	};
	size_t nenv = 0, nargs = 0, pos = 0, nin = 0, nout = 0;

	*job = (struct job){ .env = calloc(3 + len / 2 + 1, sizeof(char *)),
			     .argv = calloc(len / 2 + 2, sizeof(char *)),
			     .inputs = calloc(len / 2 + 1, sizeof(char *)),
			     .outputs = calloc(len / 2 + 1, sizeof(char *)) };
	if (!job->env || !job->argv || !job->inputs || !job->outputs) {
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
		if (!(val = strchr(line, '='))) {
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
		} else if (!strcmp(line, "input") && *val) {
			job->inputs[nin++] = val;
		} else if (!strcmp(line, "output") && *val) {
			job->outputs[nout++] = val;
		} else if (!strcmp(line, "clock") || !strcmp(line, "seed")) {
			if (fresh_instance(line, val) < 0)
				return -1;
		} else if (strcmp(line, "env")) {
			send_msg("job spec: unknown key '%s'", line);
			return -1;
		} else if (env_set(job->env, &nenv, val) < 0) {
			send_msg("job spec: bad env entry '%s'", val);
			return -1;
		}
	}
	for (; pos < len; pos += strlen(spec + pos) + 1)
		job->argv[nargs++] = spec + pos;
	if (nargs == 0 || !job->argv[0][0]) {
		send_msg("job spec: no command");
		return -1;
	}
	return 0;
}

/* Mount dev at NEWROOT with proc, sys, dev and tmp inside; 0 or -1 after 'M'. */
static int setup_root(const char *dev)
{
	long end = now_ms() + 60000; /* generous: a loaded host probes slowly */

	while (access(dev, F_OK) < 0) {
		if (!tick_until(end)) {
			send_msg("cannot mount %s: device did not appear", dev);
			return -1;
		}
	}
	mkdir(NEWROOT, 0755);
	if (mount(dev, NEWROOT, "ext4", 0, NULL) < 0) {
		send_msg("cannot mount %s: %s", dev, strerror(errno));
		return -1;
	}
	root_mounted = true;
	for (size_t i = 0; i < N_ROOT_MOUNTS; i++) {
		const char *type = root_mounts[i][1];
		char dir[64];

		snprintf(dir, sizeof(dir), NEWROOT "/%s", root_mounts[i][0]);
		if ((mkdir(dir, 0755) < 0 && errno != EEXIST) ||
		    mount(type, dir, type, MS_NOSUID, i == 3 ? "mode=1777" : NULL) < 0) {
			send_msg("cannot mount %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void teardown_root(void)
{
	for (size_t i = N_ROOT_MOUNTS; root_mounted && i-- > 0;) {
		char dir[64];

		snprintf(dir, sizeof(dir), NEWROOT "/%s", root_mounts[i][0]);
		if (umount2(dir, 0) < 0)
			umount2(dir, MNT_DETACH);
	}
	if (root_mounted && umount2(NEWROOT, 0) < 0) {
		logmsg("cannot unmount " NEWROOT ": %s; remounting read-only", strerror(errno));
		mount(NULL, NEWROOT, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	}
	root_mounted = false;
}

/* In the forked child: set up and exec; on failure report {stage, errno}. */
static void __attribute__((noreturn)) child_exec(const struct job *job, int out, int err,
						  int status)
{
	const char *wd;
	int rep[2] = { STAGE_STDIO, 0 };
	sigset_t none;
	int null;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		goto fail;
	rep[0] = STAGE_CHROOT;
	if (job->root && chroot(NEWROOT) < 0)
		goto fail;
	rep[0] = STAGE_CHDIR;
	wd = job_workdir(job);
	if (chdir(wd) < 0)
		goto fail;
	rep[0] = STAGE_EXEC;
	environ = job->env;
	execvp(job->argv[0], job->argv);
fail:
	rep[1] = errno;
	if (write(status, rep, sizeof(rep)) < 0) {
		/* the parent sees a short report */
	}
	_exit(rep[0] != STAGE_EXEC ? EXIT_SETUP : rep[1] == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC);
}

/* A power button press while the job runs: SIGTERM its group, then SIGKILL. */
static void job_power_pressed(pid_t pgid)
{
	static int presses;

	if (presses++ == 0) {
		send_msg("power button pressed: sending SIGTERM to the job");
		kill(-pgid, SIGTERM);
	} else {
		send_msg("power button pressed again: sending SIGKILL to the job");
		kill(-pgid, SIGKILL);
	}
}

/* Reap all exited children; true if pid was one of them (status in *status). */
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

/* Send what the job's pipes p[0] and p[1] have as frames; close them at EOF. */
static void relay_pipes(struct pollfd *p)
{
	for (int i = 0; i < 2; i++) {
		ssize_t n = p[i].revents ? read(p[i].fd, frame_buf + 5, CHUNK) : -1;

		if (n > 0) {
			send_frame(i ? 'E' : 'O', frame_buf + 5, n);
		} else if (p[i].revents && (n == 0 || (errno != EINTR && errno != EAGAIN))) {
			close(p[i].fd);
			p[i].fd = -1;
		}
	}
}

/* Handle the power buttons in p[0..n-1]; one that fails is no longer polled. */
static void relay_buttons(struct pollfd *p, int n, pid_t pgid)
{
	for (int i = 0; i < n; i++) {
		int presses = p[i].revents ? button_presses(p[i].fd) : 0;

		if (presses < 0)
			p[i].fd = -1;
		while (presses-- > 0)
			job_power_pressed(pgid);
	}
}

/* Relay the job's pipes to the port until both close and pid has exited;
 * pid leads its own process group, which the power buttons signal. */
static int job_relay(pid_t pid, int out, int err, int sigfd)
{
	struct pollfd p[3 + MAX_BUTTONS] = { { out, POLLIN, 0 }, { err, POLLIN, 0 },
					     { sigfd, POLLIN, 0 } };
	bool exited = false;
	int status = 0;

	for (int i = 0; i < n_buttons; i++)
		p[3 + i] = (struct pollfd){ button_fds[i], POLLIN, 0 };
	while (p[0].fd >= 0 || p[1].fd >= 0 || !exited) {
		if (poll(p, 3 + n_buttons, -1) < 0) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			break;
		}
		relay_pipes(p);
		relay_buttons(p + 3, n_buttons, pid);
		if (p[2].revents) {
			struct signalfd_siginfo si;

			while (read(sigfd, &si, sizeof(si)) > 0)
				;
			if (reap(pid, &status)) {
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
	static const char *const what[] = { "set up stdio", "chroot to " NEWROOT,
					    "chdir to the workdir" };
	int out[2], err[2], status[2], rep[2], st = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    pipe2(status, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		send_msg("cannot start the job: %s", strerror(errno));
		return EXIT_SETUP;
	}
	if (pid == 0)
		child_exec(job, out[1], err[1], status[1]);
	close(out[1]);
	close(err[1]);
	close(status[1]);
	do
		n = read(status[0], rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	close(status[0]);
	if (n == 0) {
		send_frame('S', NULL, 0);
		logmsg("job started: %s", job->argv[0]);
		return job_relay(pid, out[0], err[0], sigfd);
	}
	waitpid(pid, &st, 0);
	if (n != sizeof(rep) || rep[0] < STAGE_STDIO || rep[0] > STAGE_EXEC)
		memcpy(rep, (int[2]){ STAGE_STDIO, EIO }, sizeof(rep));
	if (rep[0] == STAGE_EXEC)
		send_msg("cannot execute %s: %s", job->argv[0], strerror(rep[1]));
	else
		send_msg("cannot %s: %s", what[rep[0]], strerror(rep[1]));
	close(out[0]);
	close(err[0]);
	return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_SETUP;
}

/* Kill what is left, sync, unmount, send the exit frame (code >= 0), power off. */
static void __attribute__((noreturn)) finish(int code)
{
	long end = now_ms() + 2000;
	unsigned char be[4];

	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, WNOHANG) >= 0 && tick_until(end))
		;
	sync();
	if (code >= 0 && cur_job)
		outputs_collect(cur_job);
	teardown_root();
	sync();
	if (code >= 0) {
		logmsg("job exited with %d", code);
		put_be32(be, (uint32_t)code);
		send_frame('X', be, sizeof(be));
	}
	if (port_fd >= 0)
		close(port_fd);
	logmsg("powering off");
	reboot(RB_POWER_OFF);
	logmsg("power off failed: %s", strerror(errno));
	_exit(1); /* the kernel panics; with panic=-1 and -no-reboot QEMU exits */
}

/* A press before the job started (buffered since buttons_open): power off. */
static void check_early_press(void)
{
	for (int i = 0; i < n_buttons; i++) {
		if (button_presses(button_fds[i]) > 0) {
			send_msg("power button pressed before the job started: powering off");
			finish(EXIT_STOPPED);
		}
	}
}

int main(void)
{
	long end;
	struct job job;
	sigset_t chld;
	size_t len;
	char *spec;
	int sigfd;

	mount_early("/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_early("/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_early("/dev", "devtmpfs", MS_NOSUID);
	setup_console();
	logmsg("loading modules");
	load_modules();
	buttons_open();
	/* generous: on a loaded host (TCG guests on busy cores) the port
	 * may take long to appear; the wait only bounds a broken VM */
	end = now_ms() + 60000;
	while ((port_fd = open_named_port(PORT_NAME, O_WRONLY)) < 0 && tick_until(end))
		;
	if (port_fd < 0) {
		logmsg("cannot find virtio-serial port " PORT_NAME);
		finish(-1);
	}
	if (pending[0])
		send_frame('M', pending, strlen(pending) - 1);
	if (!(spec = read_spec(&len))) {
		send_msg("cannot read the job spec " JOB_SPEC ": %s", strerror(errno));
		finish(EXIT_SETUP);
	}
	if (!strncmp(spec, "template=1\n\n", 12) && template_wait(&spec, &len) < 0)
		finish(EXIT_SETUP);
	if (job_parse(spec, len, &job) < 0)
		finish(EXIT_SETUP);
	cur_job = &job;
	if (jobio_init(&job) < 0)
		finish(EXIT_SETUP);
	if (job.hostname && sethostname(job.hostname, strlen(job.hostname)) < 0) {
		send_msg("cannot set hostname '%s': %s", job.hostname, strerror(errno));
		finish(EXIT_SETUP);
	}
	if (job.root && !strncmp(job.root, "serial:", 7)) {
		static char dev[64];
		if (!find_disk(job.root + 7, dev, sizeof(dev))) {
			send_msg("the root disk (serial %s) did not appear", job.root + 7);
			finish(EXIT_SETUP);
		}
		job.root = dev;
	}
	if (job.root && setup_root(job.root) < 0)
		finish(EXIT_SETUP);
	if (inputs_setup(&job) < 0)
		finish(EXIT_SETUP);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	if ((sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		send_msg("signalfd: %s", strerror(errno));
		finish(EXIT_SETUP);
	}
	check_early_press();
	finish(job_run(&job, sigfd));
}
