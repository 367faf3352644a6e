/* SPDX-License-Identifier: MIT */
/*
 * util.h - small helpers shared by the library and the programs: sizes,
 * names, paths, files written atomically, running helper programs.
 */
#ifndef GRIDVM_UTIL_H
#define GRIDVM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GV_WUR __attribute__((warn_unused_result))

/* Parse "512M", "1G", "2048K", "1.5G" or a plain number of @default_unit
 * bytes (1 for bytes, 1<<20 for MiB). @return 0 or -EINVAL. */
int gv_parse_size(const char *s, uint64_t default_unit, uint64_t *bytes) GV_WUR;

/* Format @bytes as "512 MiB" style text into @buf. */
const char *gv_fmt_size(uint64_t bytes, char *buf, size_t len);

/* Parse durations like "10s", "500ms", "2m", "1h" (plain = seconds). */
int gv_parse_duration_ms(const char *s, uint64_t *ms) GV_WUR;

/* A VM or image name: 1..63 chars of [A-Za-z0-9_.-], starting with an
 * alphanumeric character. */
bool gv_name_valid(const char *name);

/* malloc'd printf; aborts on out-of-memory (the only sane reaction). */
char *gv_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t gv_now_ms(void);
/* Wall-clock time in seconds since the epoch. */
int64_t gv_now_s(void);

int gv_mkdir_p(const char *path, mode_t mode) GV_WUR;
/* Remove @path and everything below it; missing is not an error. */
int gv_rm_rf(const char *path);

/* Write @len bytes to @path through a temporary file and rename(2). */
int gv_write_file_atomic(const char *path, const void *buf, size_t len) GV_WUR;
/* Read a whole file; *buf is NUL terminated and malloc'd. */
int gv_read_file(const char *path, char **buf, size_t *len) GV_WUR;

/* Run @argv (argv[0] looked up in PATH), wait for it. If @output is not
 * NULL it receives the combined stdout+stderr (malloc'd). @return the exit
 * status (0..255), 128+signal, or a negative errno if it could not run. */
int gv_run(char *const argv[], char **output) GV_WUR;

/* Run @argv with stdin from /dev/null and stdout+stderr to @fd (or
 * /dev/null if @fd < 0), in a new session if @setsid; wait for it.
 * @return as gv_run. */
int gv_run_to_fd(char *const argv[], int fd, bool new_session) GV_WUR;

/* Split @s into words as a shell would split a simple command, and do
 * nothing else: blanks separate words, '...' keeps everything literally,
 * "..." too except \" and \\, a backslash outside quotes escapes the
 * next character; no variables, globs, redirections or operators (";"
 * and "&&" are plain words). *out: NULL-terminated, each word and the
 * array malloc'd (gv_strv_free frees them). @return the number of words, or -EINVAL (an unclosed
 * quote, a trailing backslash). */
int gv_split_words(const char *s, char ***out) GV_WUR;

/* Is the process alive (and not a zombie)? */
bool gv_pid_alive(pid_t pid);

/* The data directory: $GRIDVM_DATA, else the built-in default. */
const char *gv_data_dir(void);

/* A 32-byte hash as 64 lowercase hex digits (+ NUL), and back: exactly
 * 64 hex digits, -EINVAL otherwise. */
void gv_hash_hex(const uint8_t hash[32], char out[65]);
int gv_hash_parse(const char *hex, uint8_t hash[32]) GV_WUR;

/* Size of a file, 0 if it does not exist. */
uint64_t gv_file_size(const char *path);
/* A file's modification time in ns (what block indexes record to know
 * they are current), from its stat. */
struct stat;
uint64_t gv_stat_mtime_ns(const struct stat *st);

/* A listening unix stream socket at @path (a stale one is replaced),
 * mode 0600; the fd, or a negative errno. */
int gv_unix_listen(const char *path, int backlog) GV_WUR;

/* Last line of @text (without newline) copied to @buf; for error messages
 * that quote a helper program's complaint. */
const char *gv_last_line(const char *text, char *buf, size_t len);

/* The host's 1-minute load average (/proc/loadavg; 0 if unreadable). */
double gv_load1(void);

/* Detach as a daemon (fork twice, new session); stdout and stderr append
 * to @log, stdin is /dev/null. Returns in the daemon: 0, or a negative
 * errno if the first fork failed (still in the caller). */
int gv_daemonize(const char *log) GV_WUR;

#endif
