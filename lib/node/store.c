/* SPDX-License-Identifier: MIT */
/* store.c - VM records in SQLite. */
#include <gridvm/node/store.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct gv_store {
	sqlite3 *db;
};

static const char *state_names[] = { "defined", "running", "paused",
				     "saved",   "stopped", "failed" };

const char *gv_vmstate_name(gv_vmstate s)
{
	return (unsigned)s < 6 ? state_names[s] : "unknown";
}

int gv_vmstate_parse(const char *s)
{
	for (int i = 0; i < 6; i++)
		if (s && !strcmp(s, state_names[i]))
			return i;
	return -EINVAL;
}

void gv_vmrec_free(gv_vmrec *r)
{
	if (!r)
		return;
	gv_vmdef_free(r->def);
	free(r->state_file);
	free(r->error);
	free(r);
}

json_t *gv_vmrec_to_json(const gv_vmrec *r)
{
	json_t *j = gv_vmdef_to_json(r->def);

	json_object_set_new(j, "state", json_string(gv_vmstate_name(r->state)));
	json_object_set_new(j, "pid", r->pid > 0 ? json_integer(r->pid) : json_null());
	json_object_set_new(j, "exit_code",
			    r->exit_code >= 0 ? json_integer(r->exit_code) : json_null());
	json_object_set_new(j, "state_file",
			    r->state_file ? json_string(r->state_file) : json_null());
	json_object_set_new(j, "error", r->error ? json_string(r->error) : json_null());
	json_object_set_new(j, "created", json_integer(r->created));
	json_object_set_new(j, "started", r->started ? json_integer(r->started) : json_null());
	return j;
}

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"CREATE TABLE IF NOT EXISTS vms ("
	" name TEXT PRIMARY KEY, def TEXT NOT NULL, state TEXT NOT NULL,"
	" pid INTEGER, exit_code INTEGER, state_file TEXT, error TEXT,"
	" created INTEGER, started INTEGER);";

int gv_store_open(const char *path, gv_store **out)
{
	gv_store *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(s->db, 5000);
		rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		gv_store_close(s);
		return -EIO;
	}
	*out = s;
	return 0;
}

void gv_store_close(gv_store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	free(s);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static int write_rec(gv_store *s, const gv_vmrec *r, const char *sql)
{
	sqlite3_stmt *st;
	json_t *def = gv_vmdef_to_json(r->def);
	char *deftext = json_dumps(def, JSON_COMPACT);
	int rc, ret = 0;

	json_decref(def);
	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		free(deftext);
		return -EIO;
	}
	sqlite3_bind_text(st, 1, r->def->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, deftext, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, gv_vmstate_name(r->state), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, r->pid);
	sqlite3_bind_int(st, 5, r->exit_code);
	bind_text_or_null(st, 6, r->state_file);
	bind_text_or_null(st, 7, r->error);
	sqlite3_bind_int64(st, 8, r->created);
	sqlite3_bind_int64(st, 9, r->started);
	rc = sqlite3_step(st);
	if (rc == SQLITE_CONSTRAINT)
		ret = -EEXIST;
	else if (rc != SQLITE_DONE)
		ret = -EIO;
	else if (sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	sqlite3_finalize(st);
	free(deftext);
	return ret;
}

int gv_store_vm_insert(gv_store *s, const gv_vmrec *r)
{
	return write_rec(s, r,
			 "INSERT INTO vms (name, def, state, pid, exit_code,"
			 " state_file, error, created, started)"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
}

int gv_store_vm_update(gv_store *s, const gv_vmrec *r)
{
	return write_rec(s, r,
			 "UPDATE vms SET def = ?2, state = ?3, pid = ?4,"
			 " exit_code = ?5, state_file = ?6, error = ?7,"
			 " created = ?8, started = ?9 WHERE name = ?1");
}

static char *col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t ? strdup((const char *)t) : NULL;
}

static int rec_from_row(sqlite3_stmt *st, gv_vmrec **out)
{
	gv_vmrec *r = calloc(1, sizeof(*r));
	json_t *j = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
	int rc;

	if (!r)
		abort();
	rc = j ? gv_vmdef_from_json(j, &r->def, NULL) : -EINVAL;
	json_decref(j);
	if (rc < 0) {
		free(r);
		return -EIO;
	}
	rc = gv_vmstate_parse((const char *)sqlite3_column_text(st, 2));
	r->state = rc < 0 ? GV_VM_FAILED : (gv_vmstate)rc;
	r->pid = sqlite3_column_int(st, 3);
	r->exit_code = sqlite3_column_int(st, 4);
	r->state_file = col_str(st, 5);
	r->error = col_str(st, 6);
	r->created = sqlite3_column_int64(st, 7);
	r->started = sqlite3_column_int64(st, 8);
	*out = r;
	return 0;
}

int gv_store_vm_get(gv_store *s, const char *name, gv_vmrec **out)
{
	sqlite3_stmt *st;
	int rc, ret;

	rc = sqlite3_prepare_v2(s->db,
				"SELECT name, def, state, pid, exit_code, state_file,"
				" error, created, started FROM vms WHERE name = ?1",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = rec_from_row(st, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : -EIO;
	sqlite3_finalize(st);
	return ret;
}

int gv_store_vm_delete(gv_store *s, const char *name)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "DELETE FROM vms WHERE name = ?1", -1, &st,
			       NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -EIO;
	return sqlite3_changes(s->db) ? 0 : -ENOENT;
}

int gv_store_vm_names(gv_store *s, char ***names)
{
	sqlite3_stmt *st;
	char **v = NULL;
	size_t n = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT name FROM vms ORDER BY name", -1,
			       &st, NULL) != SQLITE_OK)
		return -EIO;
	v = calloc(1, sizeof(*v));
	while (sqlite3_step(st) == SQLITE_ROW) {
		v = realloc(v, (n + 2) * sizeof(*v));
		if (!v)
			abort();
		v[n++] = col_str(st, 0);
		v[n] = NULL;
	}
	sqlite3_finalize(st);
	*names = v;
	return 0;
}
