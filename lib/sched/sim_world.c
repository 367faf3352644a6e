/* SPDX-License-Identifier: MIT */
/*
 * sim_world.c - the simulated grid's fixed parts: the image mix and its
 * layers, the sites and their links, the default heterogeneous hosts, how
 * an SWF record becomes a job, the calibrated migration cost model, and
 * the metrics as JSON (sim.h; the numbers' sources in docs/simulator.md).
 */
#include <gridvm/sched/sim.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MB 1000000ull
#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* Layers, in wire bytes (zstd-compressed distinct non-zero blocks). The
 * Debian ones follow bench-transfer.md: bookworm-plus (python3, perl) is
 * 133 MB on the wire with no local blocks and shares 64.5 % with bookworm,
 * which it holds 97.4 % of; releases share about 5 % of their blocks. */
enum { L_COMMON, L_BULLSEYE, L_BOOKWORM, L_TRIXIE, L_PYPERL, L_SCI, L_CUDA, L_R,
       L_LEGACY, L_N };
static const uint64_t layer_bytes[L_N] = {
    [L_COMMON] = 4500 * 1000ull, [L_BULLSEYE] = 88 * MB, [L_BOOKWORM] = 84500 * 1000ull,
    [L_TRIXIE] = 88 * MB,	 [L_PYPERL] = 44 * MB,	 [L_SCI] = 1100 * MB,
    [L_CUDA] = 2900 * MB,	 [L_R] = 500 * MB,	 [L_LEGACY] = 300 * MB};

#define B(l) (1u << (l))
static const struct {
	const char *name;
	uint32_t layers;
} images[] = {
    {"bookworm", B(L_COMMON) | B(L_BOOKWORM)},
    {"bookworm-plus", B(L_COMMON) | B(L_BOOKWORM) | B(L_PYPERL)},
    {"bullseye", B(L_COMMON) | B(L_BULLSEYE)},
    {"trixie", B(L_COMMON) | B(L_TRIXIE)},
    {"bookworm-sci", B(L_COMMON) | B(L_BOOKWORM) | B(L_PYPERL) | B(L_SCI)},
    {"bookworm-cuda", B(L_COMMON) | B(L_BOOKWORM) | B(L_PYPERL) | B(L_CUDA)},
    {"trixie-r", B(L_COMMON) | B(L_TRIXIE) | B(L_R)},
    {"bullseye-legacy", B(L_COMMON) | B(L_BULLSEYE) | B(L_LEGACY)},
};
#define N_IMAGES (sizeof images / sizeof images[0])

unsigned gv_sim_image_count(void)
{
	return N_IMAGES;
}

const char *gv_sim_image_name(unsigned i)
{
	return i < N_IMAGES ? images[i].name : NULL;
}

uint32_t gv_sim_image_layers(unsigned i)
{
	return i < N_IMAGES ? images[i].layers : 0;
}

uint64_t gv_sim_image_missing(unsigned i, uint32_t have)
{
	uint64_t n = 0;
	if (i >= N_IMAGES)
		return 0;
	for (unsigned l = 0; l < L_N; l++)
		if ((images[i].layers & B(l)) && !(have & B(l)))
			n += layer_bytes[l];
	return n;
}

uint64_t gv_sim_image_bytes(unsigned i)
{
	return gv_sim_image_missing(i, 0);
}

/* Sites: the links of the original study (100 and 2 Mbit/s), the
 * benchmarks' (100 and 20 Mbit/s), and a campus gigabit. */
static const gv_sim_site sites[] = {
    {"campus", 125e6},	 /* 1 Gbit/s */
    {"regional", 12.5e6}, /* 100 Mbit/s */
    {"remote", 2.5e6},	 /* 20 Mbit/s */
    {"far", 0.25e6},	 /* 2 Mbit/s */
};
static const double site_share[] = {40, 30, 20, 10};

unsigned gv_sim_site_count(void)
{
	return sizeof sites / sizeof sites[0];
}

const gv_sim_site *gv_sim_site_get(unsigned i)
{
	return i < gv_sim_site_count() ? &sites[i] : NULL;
}

unsigned gv_sim_grid_make(gv_sim_host *out, unsigned n, uint64_t seed)
{
	static const double cpu_w[] = {50, 35, 15}, speed_w[] = {25, 50, 25};
	static const uint32_t cpu_v[] = {16, 32, 64};
	static const double speed_v[] = {0.8, 1.0, 1.25};
	/* the images a site's hosts start with: popular bases (Zipf-ish) */
	static const double img_w[] = {30, 25, 10, 15, 8, 4, 4, 4};
	gv_rng r;

	gv_rng_seed(&r, seed ^ 0x6772696468737473ull);
	for (unsigned i = 0; i < n; i++) {
		gv_sim_host *h = &out[i];
		memset(h, 0, sizeof *h);
		snprintf(h->name, sizeof h->name, "h%05u", i);
		h->cpus = cpu_v[gv_rng_pick(&r, cpu_w, 3)];
		h->memory = (uint64_t)h->cpus * 4 * GiB;
		h->speed = speed_v[gv_rng_pick(&r, speed_w, 3)];
		h->site = gv_rng_pick(&r, site_share, 4);
		h->shared = gv_rng_unit(&r) < 0.2;
		h->layers = gv_sim_image_layers(gv_rng_pick(&r, img_w, N_IMAGES));
		if (gv_rng_unit(&r) < 0.5)
			h->layers |= gv_sim_image_layers(gv_rng_pick(&r, img_w, N_IMAGES));
	}
	return n;
}

int gv_sim_job_from_swf(const gv_swf_job *s, const gv_sim_swf_opts *o, gv_sim_job *out,
			bool *cut)
{
	int64_t procs = s->procs > 0 ? s->procs : s->req_procs;
	int64_t kb = s->used_mem > 0 ? s->used_mem : s->req_mem;

	*cut = false;
	if (!(s->run > 0) || procs <= 0 || s->submit < 0)
		return 0;
	if (kb <= 0)
		kb = o->default_mem_kb ? (int64_t)o->default_mem_kb : 2 * 1024 * 1024;
	memset(out, 0, sizeof *out);
	out->id = s->id > 0 ? (uint64_t)s->id : 0;
	out->submit = s->submit;
	out->runtime = s->run;
	out->walltime = s->req_time > 0 ? s->req_time : 0;
	out->cpus = procs > UINT32_MAX ? UINT32_MAX : (uint32_t)procs;
	if (o->max_cpus && out->cpus > o->max_cpus) {
		out->cpus = o->max_cpus;
		*cut = true;
	}
	out->memory = (uint64_t)kb * 1024 * out->cpus;
	if (o->max_memory && out->memory > o->max_memory) {
		out->memory = o->max_memory;
		*cut = true;
	}
	int64_t key = s->app > 0 ? s->app - 1 : s->user > 0 ? s->user - 1 : s->id;
	out->image = (int)((key < 0 ? -key : key) % (int64_t)N_IMAGES);
	out->user = s->user > 0 ? (uint32_t)s->user : 0;
	return 1;
}

void gv_sim_cost_calibrated(gv_sched_cost *c)
{
	/* bench-migration.md, gridvm-live: a 384 MiB VM with 24 MiB of fresh
	 * disk writes, at 100 and 20 Mbit/s */
	const gv_sched_move_sample runs[] = {
	    {.bytes = 99.7e6, .rate = 100e6 / 8, .total_s = 8.8, .downtime_s = 0.221,
	     .memory = 384.0 * MiB, .disk_bytes = 24.0 * MiB},
	    {.bytes = 101.8e6, .rate = 20e6 / 8, .total_s = 41.4, .downtime_s = 0.490,
	     .memory = 384.0 * MiB, .disk_bytes = 24.0 * MiB},
	};
	gv_sched_params p;

	gv_sched_params_default(&p);
	*c = p.cost;
	if (gv_sched_cost_calibrate(c, runs, 2) < 0)
		*c = p.cost;
}

json_t *gv_sim_metrics_json(const gv_sim_metrics *m)
{
	return json_pack(
	    "{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:f,"
	    " s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
	    "jobs", (json_int_t)m->jobs, "jobs_completed", (json_int_t)m->jobs_completed,
	    "jobs_never", (json_int_t)m->jobs_never, "decisions_per_second",
	    m->decisions_per_second, "decision_ms_p50", m->decision_ms_p50,
	    "decision_ms_p99", m->decision_ms_p99, "utilization", m->utilization,
	    "makespan_s", m->makespan_s, "wait_s_mean", m->wait_s_mean, "wait_s_p95",
	    m->wait_s_p95, "bounded_slowdown_mean", m->bounded_slowdown_mean,
	    "turnaround_s_mean", m->turnaround_s_mean, "decision_ms_max", m->decision_ms_max,
	    "migrations", (json_int_t)m->migrations, "bytes_staged", m->bytes_staged,
	    "bytes_migrated", m->bytes_migrated, "bytes_checkpointed", m->bytes_checkpointed,
	    "host_hours", m->host_hours, "work_lost_s", m->work_lost_s, "placements",
	    (json_int_t)m->placements, "cycles", (json_int_t)m->cycles, "replans",
	    (json_int_t)m->replans, "failures", (json_int_t)m->failures, "restarts",
	    (json_int_t)m->restarts, "checkpoints", (json_int_t)m->checkpoints,
	    "capacity_violations", (json_int_t)m->capacity_violations, "decision_s_total",
	    m->decision_s_total);
}
