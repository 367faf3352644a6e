/* SPDX-License-Identifier: MIT */
/* jobio.c - a job's input and output disks (jobio.h). */
#include <gridvm/vmm/jobio.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MANIFEST_MAGIC "gridvm-output 1\n"
#define TAR_END 1024u

/* Append input @i (@path) to the tar @tar: its first name component
 * becomes "i", so the guest finds it whatever the host called it. */
static int pack_one(const char *path, size_t i, const char *tar, gv_err *e)
{
	char real[PATH_MAX], dir[PATH_MAX], base[PATH_MAX], xf[64], line[300];
	char *out = NULL;
	struct stat st;
	int r;

	if (!realpath(path, real) || stat(real, &st) < 0)
		return gv_err_set(e, -errno, "input %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return gv_err_set(e, -EINVAL, "input %s: not a file or directory", path);
	if (!strcmp(real, "/"))
		return gv_err_set(e, -EINVAL, "input %s: the root directory cannot be an input",
				  path);
	snprintf(dir, sizeof(dir), "%s", real);
	snprintf(base, sizeof(base), "%s", real);
	snprintf(xf, sizeof(xf), "s,^[^/]*,%zu,S", i);
	/* S: symlink targets keep their names; hard link targets follow */
	char *argv[] = { "tar", i ? "-r" : "-c", "-f", (char *)tar, "--format=gnu",
			 "--transform", xf, "-C", dirname(dir), "--", basename(base), NULL };
	r = gv_run(argv, &out);
	if (r != 0)
		r = gv_err_set(e, -EIO, "input %s: tar failed: %s", path,
			       gv_last_line(out, line, sizeof(line)));
	free(out);
	return r;
}

int gv_jobio_pack_inputs(char *const *inputs, const char *tar, gv_err *e)
{
	char *part = gv_strdupf("%s.part", tar);
	int r = 0;

	unlink(part);
	for (size_t i = 0; r == 0 && inputs && inputs[i]; i++)
		r = pack_one(inputs[i], i, part, e);
	if (r == 0 && rename(part, tar) < 0)
		r = gv_err_set(e, -errno, "cannot create %s: %s", tar, strerror(errno));
	if (r < 0)
		unlink(part);
	free(part);
	return r;
}

int gv_jobio_use_input_tar(const char *src, const char *tar, gv_err *e)
{
	char *part = gv_strdupf("%s.part", tar);
	int in = -1, out = -1, r = 0;
	struct stat st;

	unlink(part);
	if (link(src, part) < 0) { /* another file system: a copy */
		in = open(src, O_RDONLY | O_CLOEXEC);
		out = in < 0 ? -1 : open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (in < 0 || out < 0 || fstat(in, &st) < 0)
			r = -errno;
		for (off_t done = 0; r == 0 && done < st.st_size;) {
			ssize_t n = copy_file_range(in, NULL, out, NULL,
						    (size_t)(st.st_size - done), 0);
			if (n <= 0)
				r = n < 0 ? -errno : -EIO;
			done += n > 0 ? n : 0;
		}
	}
	if (r == 0 && rename(part, tar) < 0)
		r = -errno;
	if (r < 0) {
		gv_err_set(e, r, "input_tar %s: %s", src, strerror(-r));
		unlink(part);
	}
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(part);
	return r;
}

int gv_jobio_output_create(const char *path, uint64_t max, gv_err *e)
{
	uint64_t room = ((max ? max : GV_JOBIO_OUTPUT_MAX_DEFAULT) + (1 << 20) - 1) &
			~(uint64_t)((1 << 20) - 1);
	int fd, r = 0;

	unlink(path); /* a new inode: nothing of an earlier run stays */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return gv_err_set(e, -errno, "cannot create %s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)(room + GV_JOBIO_MANIFEST_SIZE)) < 0)
		r = gv_err_set(e, -errno, "cannot size %s: %s", path, strerror(errno));
	close(fd);
	if (r < 0)
		unlink(path);
	return r;
}

bool gv_jobio_output_written(const char *path)
{
	struct stat st;

	/* created sparse: any block the guest wrote is allocated */
	return stat(path, &st) == 0 && st.st_blocks > 0;
}

json_t *gv_jobio_manifest_parse(const char *text, size_t len)
{
	json_t *outs = json_array(), *m = NULL;
	const char *p = text, *end = text + strnlen(text, len);
	unsigned long long tar = 0;
	bool have_tar = false;

	if ((size_t)(end - p) < strlen(MANIFEST_MAGIC) || memcmp(p, MANIFEST_MAGIC,
								  strlen(MANIFEST_MAGIC))) {
		json_decref(outs);
		return json_pack("{s:b}", "collected", 0);
	}
	p += strlen(MANIFEST_MAGIC);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *sp;
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		sp = memchr(p, ' ', n);
		if (sp && sp - p == 3 && !memcmp(p, "tar", 3)) {
			/* 1 to 18 digits, nothing else */
			size_t k = 0;
			for (tar = 0; k < n - 4 && k <= 18 && sp[1 + k] >= '0' && sp[1 + k] <= '9'; k++)
				tar = tar * 10 + (unsigned)(sp[1 + k] - '0');
			have_tar = k == n - 4 && k > 0 && k <= 18;
		} else if (sp && sp > p && nl) { /* a cut last line is left out */
			json_array_append_new(outs, json_pack("{s:s%, s:s%}", "path", sp + 1,
							      (size_t)(p + n - sp - 1), "status",
							      p, (size_t)(sp - p)));
		}
		p += n + (nl ? 1 : 0);
	}
	if (have_tar && tar >= TAR_END)
		m = json_pack("{s:b, s:I, s:o}", "collected", 1, "tar_bytes", (json_int_t)tar,
			      "outputs", outs);
	else
		json_decref(outs);
	return m ? m : json_pack("{s:b}", "collected", 0);
}

int gv_jobio_output_manifest(const char *path, json_t **out, gv_err *e)
{
	char *buf = calloc(1, GV_JOBIO_MANIFEST_SIZE + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
	struct stat st;
	ssize_t n = 0;

	if (!buf)
		abort();
	if (fd < 0 && errno == ENOENT) /* made at its first boot */
		*out = json_pack("{s:b}", "collected", 0);
	else if (fd < 0 || fstat(fd, &st) < 0)
		r = gv_err_set(e, -errno, "cannot read the output disk %s: %s", path,
			       strerror(errno));
	else if ((uint64_t)st.st_size < GV_JOBIO_MANIFEST_SIZE + TAR_END)
		r = gv_err_set(e, -EINVAL, "%s is no output disk (too small)", path);
	else if ((n = pread(fd, buf, GV_JOBIO_MANIFEST_SIZE,
			    st.st_size - GV_JOBIO_MANIFEST_SIZE)) < 0)
		r = gv_err_set(e, -errno, "cannot read %s: %s", path, strerror(errno));
	if (r == 0 && fd >= 0) {
		*out = gv_jobio_manifest_parse(buf, (size_t)n);
		json_t *t = json_object_get(*out, "tar_bytes");
		/* a tar longer than the room before the manifest is no tar of ours */
		if (t && (uint64_t)json_integer_value(t) >
				 (uint64_t)st.st_size - GV_JOBIO_MANIFEST_SIZE) {
			json_decref(*out);
			*out = json_pack("{s:b}", "collected", 0);
		}
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

struct gv_untar {
	pid_t pid;
	int in;  /* our end of tar's stdin (a socket: no SIGPIPE, MSG_NOSIGNAL) */
	int err; /* tar's stderr, a temporary file */
};

int gv_untar_new(const char *dir, gv_untar **out, gv_err *e)
{
	int sv[2];
	FILE *tmp = tmpfile();
	gv_untar *u;

	if (!tmp || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		int r = -errno;
		if (tmp)
			fclose(tmp);
		return gv_err_set(e, r, "cannot start tar: %s", strerror(-r));
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		abort();
	u->err = dup(fileno(tmp));
	fclose(tmp);
	u->in = sv[0];
	u->pid = fork();
	if (u->pid == 0) {
		char *argv[] = { "tar", "-x", "-f", "-", "-C", (char *)dir, "--no-same-owner",
				 NULL };
		dup2(sv[1], 0);
		dup2(u->err, 1);
		dup2(u->err, 2);
		execvp(argv[0], argv);
		dprintf(2, "cannot run tar: %s\n", strerror(errno));
		_exit(127);
	}
	close(sv[1]);
	if (u->pid < 0) {
		int r = -errno;
		close(u->in);
		close(u->err);
		free(u);
		return gv_err_set(e, r, "cannot start tar: %s", strerror(-r));
	}
	*out = u;
	return 0;
}

/* tar's complaint (its last line) into @e. */
static int untar_error(gv_untar *u, int code, const char *what, gv_err *e)
{
	char buf[4096], line[300];
	ssize_t n = pread(u->err, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return gv_err_set(e, code, "%s: %s", what,
			  n > 0 ? gv_last_line(buf, line, sizeof(line)) : "no message");
}

int gv_untar_write(gv_untar *u, const void *buf, size_t len, gv_err *e)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(u->in, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return untar_error(u, -EIO, "tar stopped reading", e);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int gv_untar_finish(gv_untar *u, gv_err *e)
{
	int st = 0, r = 0;

	if (!u)
		return 0;
	close(u->in);
	while (waitpid(u->pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		r = untar_error(u, -EIO, "cannot unpack the outputs", e);
	close(u->err);
	free(u);
	return r;
}
