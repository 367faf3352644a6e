/* SPDX-License-Identifier: MIT */
/* util.c - small helpers: sizes, names, files, child processes. */
#include <gridvm/base/util.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef GV_DATADIR_DEFAULT
#define GV_DATADIR_DEFAULT "/var/lib/gridvm"
#endif

int gv_parse_size(const char *s, uint64_t default_unit, uint64_t *bytes)
{
	char *end;
	double v;
	uint64_t unit = default_unit;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || v < 0)
		return -EINVAL;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'B': unit = 1; break;
		case 'K': unit = 1ULL << 10; break;
		case 'M': unit = 1ULL << 20; break;
		case 'G': unit = 1ULL << 30; break;
		case 'T': unit = 1ULL << 40; break;
		default: return -EINVAL;
		}
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (v * (double)unit >= 18e18)
		return -ERANGE;
	*bytes = (uint64_t)llround(v * (double)unit);
	return 0;
}

const char *gv_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0 || v == floor(v))
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

int gv_parse_duration_ms(const char *s, uint64_t *ms)
{
	char *end;
	double v, mult = 1000;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || v < 0)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		mult = 1;
	else if (!strcmp(end, "s") || !*end)
		mult = 1000;
	else if (!strcmp(end, "m"))
		mult = 60000;
	else if (!strcmp(end, "h"))
		mult = 3600000;
	else
		return -EINVAL;
	*ms = (uint64_t)llround(v * mult);
	return 0;
}

bool gv_name_valid(const char *name)
{
	size_t n;

	if (!name || !isalnum((unsigned char)name[0]))
		return false;
	for (n = 0; name[n]; n++) {
		unsigned char c = (unsigned char)name[n];
		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return n <= 63;
}

char *gv_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

uint64_t gv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t gv_now_s(void)
{
	return (int64_t)time(NULL);
}

int gv_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int gv_rm_rf(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int r = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *sub = gv_strdupf("%s/%s", path, e->d_name);
		int q = gv_rm_rf(sub);
		if (q < 0 && r == 0)
			r = q;
		free(sub);
	}
	closedir(d);
	if (rmdir(path) < 0 && r == 0)
		r = -errno;
	return r;
}

int gv_write_file_atomic(const char *path, const void *buf, size_t len)
{
	static unsigned long seq;
	char *tmp = gv_strdupf("%s.tmp.%d.%lu", path, (int)getpid(),
			       __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	int fd, r = 0;
	const char *p = buf;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	free(tmp);
	return r;
}

int gv_read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *b = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return -errno;
	for (;;) {
		if (n + 4097 > cap) {
			cap = cap ? cap * 2 : 8192;
			b = realloc(b, cap);
			if (!b)
				abort();
		}
		size_t got = fread(b + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	b[n] = '\0';
	*buf = b;
	if (len)
		*len = n;
	return 0;
}

static char *read_all_fd(int fd)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);

	if (!b)
		abort();
	for (;;) {
		if (n + 1 >= cap) {
			cap *= 2;
			b = realloc(b, cap);
			if (!b)
				abort();
		}
		ssize_t got = read(fd, b + n, cap - n - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	b[n] = '\0';
	return b;
}

int gv_run(char *const argv[], char **output)
{
	int pfd[2] = { -1, -1 }, status;
	pid_t pid;

	if (output && pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int r = -errno;
		if (output) {
			close(pfd[0]);
			close(pfd[1]);
		}
		return r;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(output ? pfd[1] : devnull, 1);
		dup2(output ? pfd[1] : devnull, 2);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (output) {
		close(pfd[1]);
		*output = read_all_fd(pfd[0]);
		close(pfd[0]);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int gv_run_to_fd(char *const argv[], int fd, bool new_session)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (new_session)
			setsid();
		dup2(null, 0);
		dup2(fd >= 0 ? fd : null, 1);
		dup2(fd >= 0 ? fd : null, 2);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int gv_split_words(const char *s, char ***out)
{
	size_t n = 0, cap = 4, len = strlen(s);
	char **v = calloc(cap + 1, sizeof(*v)), *w = malloc(len + 1);
	int r = 0;

	if (!v || !w)
		abort();
	*out = NULL;
	while (r == 0) {
		size_t wl = 0;
		bool any = false;

		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		if (!*s)
			break;
		while (r == 0 && *s && *s != ' ' && *s != '\t' && *s != '\n') {
			any = true;
			if (*s == '\'') {
				const char *end = strchr(s + 1, '\'');
				if (!end) {
					r = -EINVAL;
					break;
				}
				memcpy(w + wl, s + 1, (size_t)(end - s - 1));
				wl += (size_t)(end - s - 1);
				s = end + 1;
			} else if (*s == '"') {
				for (s++; *s && *s != '"'; s++) {
					if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
						s++;
					w[wl++] = *s;
				}
				if (*s != '"')
					r = -EINVAL;
				else
					s++;
			} else if (*s == '\\') {
				if (!s[1])
					r = -EINVAL;
				else
					w[wl++] = s[1];
				s += s[1] ? 2 : 1;
			} else {
				w[wl++] = *s++;
			}
		}
		if (r < 0 || !any)
			break;
		if (n == cap) {
			cap *= 2;
			v = realloc(v, (cap + 1) * sizeof(*v));
			if (!v)
				abort();
		}
		v[n] = malloc(wl + 1);
		if (!v[n])
			abort();
		memcpy(v[n], w, wl);
		v[n][wl] = '\0';
		v[++n] = NULL;
	}
	free(w);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return r;
	}
	*out = v;
	return (int)n;
}

bool gv_pid_alive(pid_t pid)
{
	char path[64], *buf = NULL, *p;
	bool alive = false;

	if (pid <= 0 || kill(pid, 0) < 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (gv_read_file(path, &buf, NULL) < 0)
		return false;
	p = strrchr(buf, ')');
	alive = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	free(buf);
	return alive;
}

const char *gv_data_dir(void)
{
	const char *d = getenv("GRIDVM_DATA");

	return d && *d ? d : GV_DATADIR_DEFAULT;
}

const char *gv_last_line(const char *text, char *buf, size_t len)
{
	const char *end, *start;

	buf[0] = '\0';
	if (!text)
		return buf;
	end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(buf, len, "%.*s", (int)(end - start), start);
	return buf;
}

void gv_hash_hex(const uint8_t hash[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", hash[i]);
}

int gv_hash_parse(const char *hex, uint8_t hash[32])
{
	if (!hex || strspn(hex, "0123456789abcdefABCDEF") != 64 || hex[64])
		return -EINVAL;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		hash[i] = (uint8_t)v;
	}
	return 0;
}

uint64_t gv_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

uint64_t gv_stat_mtime_ns(const struct stat *st)
{
	return (uint64_t)st->st_mtim.tv_sec * 1000000000ULL + (uint64_t)st->st_mtim.tv_nsec;
}

int gv_unix_listen(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	chmod(path, 0600);
	return fd;
}

double gv_load1(void)
{
	FILE *f = fopen("/proc/loadavg", "re");
	double l = 0;

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = 0;
		fclose(f);
	}
	return l;
}

int gv_daemonize(const char *log)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	setsid();
	if (fork() > 0)
		_exit(0);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		close(fd);
	}
	return 0;
}
