/*
 * sai_bind.c: parse the Prolog's plan file and compute one task's binding.
 * The rules and why they hold are in sai_bind.h; nothing here touches the
 * process (sai_spank.c applies the result, sai_bind_harness.c prints it).
 */
#include "sai_bind.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048
#define PLAN_MAGIC "sai-task-plan"

static void say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void warn(struct sai_task *t, const char *fmt, ...)
{
	va_list ap;

	if (t->nwarnings >= SAI_MAX_WARNINGS)
		return;
	va_start(ap, fmt);
	vsnprintf(t->warning[t->nwarnings++], SAI_WARNING_MAX, fmt, ap);
	va_end(ap);
}

/* A decimal int in [lo, hi]; -1 when not. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* Same character sets as slurm_ai/topology/taskenv.py. */
static int valid_name(const char *s)
{
	if (!*s || !(isupper((unsigned char)*s) || *s == '_'))
		return 0;
	for (; *s; s++)
		if (!(isupper((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
			return 0;
	return 1;
}

static int valid_value(const char *s)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.,:=/+@-", *s))
			return 0;
	return 1;
}

static int env_add(struct sai_envset *set, const char *name, const char *value)
{
	struct sai_env *e;

	if (set->count >= SAI_MAX_ENV || strlen(name) >= SAI_NAME_MAX ||
	    strlen(value) >= SAI_VALUE_MAX || !valid_name(name) || !valid_value(value))
		return -1;
	e = &set->item[set->count++];
	strcpy(e->name, name);
	strcpy(e->value, value);
	return 0;
}

/* The next "A" or "A-B" of a "0-3,8" list: 1 found, 0 at the end, -1 garbage. */
static int next_range(const char **pp, long *lo, long *hi)
{
	const char *p = *pp;
	char *end;

	while (*p == ',' || isspace((unsigned char)*p))
		p++;
	if (!*p)
		return 0;
	if (!isdigit((unsigned char)*p))
		return -1;
	*lo = *hi = strtol(p, &end, 10);
	p = end;
	if (*p == '-') {
		if (!isdigit((unsigned char)p[1]))
			return -1;
		*hi = strtol(p + 1, &end, 10);
		p = end;
	}
	if (*lo < 0 || *hi < *lo || *hi >= SAI_MAX_CPUS || (*p && *p != ',' && !isspace((unsigned char)*p)))
		return -1;
	*pp = p;
	return 1;
}

int sai_parse_cpu_list(const char *text, unsigned char *flags)
{
	long lo, hi;
	int rc;

	while ((rc = next_range(&text, &lo, &hi)) > 0)
		for (long c = lo; c <= hi; c++)
			flags[c] = 1;
	return rc;
}

/*
 * map_cpu and mask_cpu lists as Slurm's node side reads them (task/affinity:
 * get_cpuset() and task_str_to_cpuset()): a map entry is one CPU id, hex after
 * "0x" and decimal otherwise; a mask entry is hex, with or without "0x". srun
 * 22.05.8 and 24.11.5 refuse a hex map entry and strip "0x" off masks before
 * sending them, but the node takes both, and Slurm's own automatic binding
 * writes "0x" masks. An "N*count" entry (srun expands those) is read as N.
 * Anything else makes the whole list bad: the caller does not guess.
 */
static int list_entries(const char *p, size_t len, int mask, unsigned char *flags)
{
	const char *stop = p + len;

	while (p < stop) {
		const char *start, *end;
		int hex = mask;

		if (*p == ',') { /* empty entries: strtok_r() in Slurm skips them */
			p++;
			continue;
		}
		if (stop - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
			hex = 1;
			p += 2;
		}
		start = p;
		while (p < stop && (hex ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p)))
			p++;
		end = p;
		if (end == start)
			return -1;
		if (p < stop && *p == '*') { /* a repeat count: at least 1 */
			int nonzero = 0;

			for (p++; p < stop && isdigit((unsigned char)*p); p++)
				nonzero |= *p != '0';
			if (!nonzero)
				return -1;
		}
		if (p < stop && *p != ',')
			return -1;
		if (mask) {
			/* Lowest CPU in the last hex digit. */
			for (size_t bit = 0; end > start; end--, bit += 4) {
				int d = isdigit((unsigned char)end[-1]) ? end[-1] - '0'
					: tolower((unsigned char)end[-1]) - 'a' + 10;

				for (int k = 0; k < 4; k++)
					if (d >> k & 1) {
						if (bit + (size_t)k >= SAI_MAX_CPUS)
							return -1;
						flags[bit + (size_t)k] = 1;
					}
			}
		} else {
			long cpu = 0;

			for (const char *c = start; c < end; c++) {
				int d = isdigit((unsigned char)*c) ? *c - '0'
					: tolower((unsigned char)*c) - 'a' + 10;

				cpu = cpu * (hex ? 16 : 10) + d;
				if (cpu >= SAI_MAX_CPUS)
					return -1;
			}
			flags[cpu] = 1;
		}
	}
	return 0;
}

int sai_parse_mask_list(const char *text, unsigned char *flags)
{
	return list_entries(text, strlen(text), 1, flags);
}

int sai_parse_map_list(const char *text, unsigned char *flags)
{
	return list_entries(text, strlen(text), 0, flags);
}

enum { KIND_NONE, KIND_MAP, KIND_MASK };

/* "map_cpu:" / "mask_cpu:" at the start of a word ("map_cpu" alone in a
 * SLURM_CPU_BIND_TYPE): the kind, and in *rest what follows the ':' or '='. */
static int bind_kind(const char *word, const char **rest)
{
	static const struct {
		const char *name;
		int kind;
	} kinds[] = { { "map_cpu", KIND_MAP }, { "mask_cpu", KIND_MASK } };

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].name);

		if (strncasecmp(word, kinds[i].name, n))
			continue;
		if (word[n] == ':' || word[n] == '=') {
			*rest = word + n + 1;
			return kinds[i].kind;
		}
		if (word[n] == ',' || !word[n]) {
			*rest = word + n;
			return kinds[i].kind;
		}
	}
	return KIND_NONE;
}

/* The kind a comma-separated SLURM_CPU_BIND_TYPE names ("mask_cpu:", or
 * "cores,mask_cpu:" where Slurm keeps the unit it bound to). */
static int type_kind(const char *type)
{
	for (const char *w = type; *w;) {
		const char *rest;
		int kind = bind_kind(w, &rest);

		if (kind)
			return kind;
		w += strcspn(w, ",");
		w += *w == ',';
	}
	return KIND_NONE;
}

/* Slurm's _isvalue(): after a ',' a list goes on ("1,0x3,ff") or a word
 * starts ("...,verbose"). */
static int list_goes_on(const char *p)
{
	if (isdigit((unsigned char)*p))
		return 1;
	while (isxdigit((unsigned char)*p))
		p++;
	return *p == ',' || !*p;
}

/* A reason quoting the task's variables: printable only (slurmd's log). */
static void say_printable(char *err, size_t errlen, const char *what, const char *value)
{
	say(err, errlen, "%s %.40s not understood", what, value);
	for (char *c = err; c && errlen && *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
}

int sai_bind_masks(const char *type, const char *list, const char *bind, unsigned char *flags,
		   char *err, size_t errlen)
{
	int kind = type ? type_kind(type) : KIND_NONE;

	if (kind && list && *list) {
		if (list_entries(list, strlen(list), kind == KIND_MASK, flags)) {
			say_printable(err, errlen, "SLURM_CPU_BIND_LIST", list);
			return -1;
		}
		return 0;
	}
	/* No list: SLURM_CPU_BIND ("quiet,mask_cpu:0x1,0x2", "verbose,cores,
	 * mask_cpu:0x3") holds the same binding in one variable. */
	for (const char *w = bind ? bind : ""; *w;) {
		const char *rest, *end;
		int found = bind_kind(w, &rest);

		if (found) {
			for (end = rest; *end; end++)
				if (*end == ',' && !list_goes_on(end + 1))
					break;
			if (end == rest ||
			    list_entries(rest, (size_t)(end - rest), found == KIND_MASK, flags)) {
				say_printable(err, errlen, "SLURM_CPU_BIND", bind);
				return -1;
			}
			return 0;
		}
		w += strcspn(w, ",");
		w += *w == ',';
	}
	if (kind) {
		say(err, errlen, "SLURM_CPU_BIND_TYPE names a list, and there is none");
		return -1;
	}
	return 0;
}

const char sai_env_unreadable[] = "";

const char *sai_env_read(struct sai_envreader *r, const char *name)
{
	size_t max = r->max ? r->max : SAI_ENV_MAX_BYTES;
	size_t want = r->cap ? r->cap : 8192;

	for (;;) {
		int rc;

		if (want > max)
			want = max;
		if (want > r->cap) {
			char *grown = realloc(r->buf, want);

			if (!grown)
				return sai_env_unreadable;
			r->buf = grown;
			r->cap = want;
		}
		rc = r->copy(r->ctx, name, r->buf, r->cap);
		if (rc < 0)
			return NULL;
		if (rc == 0)
			return r->buf;
		if (r->cap >= max)
			return sai_env_unreadable;
		want = r->cap * 2;
	}
}

void sai_env_done(struct sai_envreader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
}

void sai_format_cpu_list(const int *cpus, int n, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && used < len;) {
		int j = i;
		int w;

		while (j + 1 < n && cpus[j + 1] == cpus[j] + 1)
			j++;
		if (j == i)
			w = snprintf(buf + used, len - used, "%s%d", used ? "," : "", cpus[i]);
		else
			w = snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "",
				     cpus[i], cpus[j]);
		if (w < 0)
			break;
		used += (size_t)w;
		i = j + 1;
	}
}

static struct sai_unit *find_unit(struct sai_layout *l, int index)
{
	for (int i = 0; i < l->nunits; i++)
		if (l->unit[i].index == index)
			return &l->unit[i];
	return NULL;
}

/* "0,1,3" or "0-3" GPU indices, in the order given and without repeats, as
 * slurmenv.parse_index_list() reads them; returns the count, -1 on garbage. */
static int parse_index_list(const char *text, int *out, int max)
{
	unsigned char seen[SAI_MAX_CPUS] = { 0 };
	long lo, hi;
	int n = 0, rc;

	while ((rc = next_range(&text, &lo, &hi)) > 0)
		for (long v = lo; v <= hi; v++) {
			if (seen[v])
				continue;
			if (n >= max)
				return -1;
			seen[v] = 1;
			out[n++] = (int)v;
		}
	return rc < 0 ? -1 : n;
}

static int parse_line(char *line, struct sai_layout *l, char *err, size_t errlen)
{
	char *save = NULL;
	char *key = strtok_r(line, " \t", &save);
	char *a[4];
	int n = 0;
	int x, y, z;

	if (!key || key[0] == '#')
		return 0;
	while (n < 4 && (a[n] = strtok_r(NULL, " \t", &save)))
		n++;
	if (strtok_r(NULL, " \t", &save)) {
		say(err, errlen, "too many fields after '%.20s'", key);
		return -1;
	}
	if (!strcmp(key, "cpu") && n == 3) {
		if (parse_int(a[0], 0, SAI_MAX_CPUS - 1, &x) || parse_int(a[1], -1, SAI_MAX_NODES - 1, &y) ||
		    parse_int(a[2], 0, SAI_MAX_CPUS - 1, &z))
			goto bad;
		l->online[x] = 1;
		l->numa[x] = (short)y;
		l->core[x] = (short)z;
	} else if (!strcmp(key, "dist") && n == 3) {
		if (parse_int(a[0], 0, SAI_MAX_NODES - 1, &x) || parse_int(a[1], 0, SAI_MAX_NODES - 1, &y) ||
		    parse_int(a[2], 1, 1000, &z))
			goto bad;
		l->dist[x][y] = (short)z;
	} else if (!strcmp(key, "gpu") && n == 4) {
		struct sai_unit *u;

		if (l->nunits >= SAI_MAX_UNITS) {
			say(err, errlen, "more than %d GPU units", SAI_MAX_UNITS);
			return -1;
		}
		u = &l->unit[l->nunits];
		if (parse_int(a[0], 0, SAI_MAX_CPUS - 1, &u->index) ||
		    parse_int(a[1], -1, SAI_MAX_NODES - 1, &u->numa) || parse_int(a[2], 0, 1, &u->mig) ||
		    strlen(a[3]) >= SAI_UUID_MAX || !valid_value(a[3]))
			goto bad;
		strcpy(u->uuid, strcmp(a[3], "-") ? a[3] : "");
		l->nunits++;
	} else if (!strcmp(key, "gpu_dev") && n == 2) {
		struct sai_unit *u;

		if (parse_int(a[0], 0, SAI_MAX_CPUS - 1, &x) || !(u = find_unit(l, x)) ||
		    a[1][0] != '/' || strlen(a[1]) >= SAI_DEV_MAX || !valid_value(a[1]))
			goto bad;
		strcpy(u->dev, a[1]);
	} else if (!strcmp(key, "gpu_env") && n == 3) {
		struct sai_unit *u;

		if (parse_int(a[0], 0, SAI_MAX_CPUS - 1, &x) || !(u = find_unit(l, x)) ||
		    env_add(&u->env, a[1], a[2]))
			goto bad;
	} else if (!strcmp(key, "node_env") && n == 3) {
		if (parse_int(a[0], -1, SAI_MAX_NODES - 1, &x) || env_add(&l->node_env[x + 1], a[1], a[2]))
			goto bad;
	} else if (!strcmp(key, "job_gpus") && n == 1) {
		l->njob_gpus = strcmp(a[0], "-") ? parse_index_list(a[0], l->job_gpus, SAI_MAX_UNITS) : 0;
		if (l->njob_gpus < 0)
			goto bad;
	} else if (!strcmp(key, "option") && n == 2) {
		if (!strcmp(a[0], "visible")) {
			if (strcmp(a[1], "auto") && strcmp(a[1], "index") && strcmp(a[1], "relative") &&
			    strcmp(a[1], "uuid"))
				goto bad;
			strcpy(l->visible, a[1]);
		} else if (!strcmp(a[0], "own_gpu_only")) {
			if (parse_int(a[1], 0, 1, &l->own_gpu_only))
				goto bad;
		} else if (!strcmp(a[0], "override_user_env")) {
			if (parse_int(a[1], 0, 1, &l->override_user_env))
				goto bad;
		} else if (!strcmp(a[0], "gpu_runtime")) {
			if (strcmp(a[1], "cuda") && strcmp(a[1], "rocm"))
				goto bad;
			l->rocm = !strcmp(a[1], "rocm");
		} /* unknown options: from a newer writer, ignored */
	} else if (strcmp(key, "cpu") && strcmp(key, "dist") && strcmp(key, "gpu") &&
		   strcmp(key, "gpu_dev") && strcmp(key, "gpu_env") && strcmp(key, "node_env") &&
		   strcmp(key, "job_gpus") && strcmp(key, "option")) {
		return 0; /* unknown line kind: from a newer writer, ignored */
	} else {
		goto bad;
	}
	return 0;
bad:
	say(err, errlen, "bad '%.20s' line", key);
	return -1;
}

int sai_parse_plan(const char *text, size_t len, struct sai_layout *l, char *err, size_t errlen)
{
	char line[LINE_MAX_BYTES];
	size_t pos = 0;
	int lineno = 0;
	int nodes[SAI_MAX_NODES + 1] = {0};

	memset(l, 0, sizeof(*l));
	strcpy(l->visible, "auto");
	if (len > SAI_PLAN_MAX_BYTES) {
		say(err, errlen, "plan of %zu bytes exceeds %d", len, SAI_PLAN_MAX_BYTES);
		return -1;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		if (!nl) {
			say(err, errlen, "line %d: no final newline (truncated plan?)", lineno + 1);
			return -1;
		}
		if (n >= sizeof(line) || memchr(text + pos, '\0', n)) {
			say(err, errlen, "line %d: too long or binary", lineno + 1);
			return -1;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + 1;
		lineno++;
		if (lineno == 1) {
			char want[32];

			snprintf(want, sizeof(want), "%s %d", PLAN_MAGIC, SAI_PLAN_VERSION);
			if (strcmp(line, want)) {
				say(err, errlen, "not a version %d plan file", SAI_PLAN_VERSION);
				return -1;
			}
			continue;
		}
		if (parse_line(line, l, err, errlen) < 0) {
			size_t used = err ? strlen(err) : 0;

			if (err && used + 16 < errlen)
				snprintf(err + used, errlen - used, " (line %d)", lineno);
			return -1;
		}
	}
	if (lineno == 0) {
		say(err, errlen, "empty plan file");
		return -1;
	}
	for (int c = 0; c < SAI_MAX_CPUS; c++)
		if (l->online[c] && l->numa[c] >= 0 && !nodes[l->numa[c]]++)
			l->nnodes++;
	return 0;
}

int sai_read_plan(const char *path, int require_root, struct sai_layout *out, char *err,
		  size_t errlen)
{
	struct stat st;
	char *buf;
	ssize_t got = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	int rc = -1;

	if (fd < 0) {
		say(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		say(err, errlen, "%s is not a regular file", path);
		goto out;
	}
	if (require_root && (st.st_uid != 0 || st.st_mode & (S_IWGRP | S_IWOTH))) {
		say(err, errlen, "%s is not root-owned and private", path);
		goto out;
	}
	if (st.st_size > SAI_PLAN_MAX_BYTES) {
		say(err, errlen, "%s is %lld bytes, over the %d limit", path, (long long)st.st_size,
		    SAI_PLAN_MAX_BYTES);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		say(err, errlen, "out of memory");
		goto out;
	}
	while (got < st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)(st.st_size - got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	if (got != st.st_size)
		say(err, errlen, "short read of %s", path);
	else
		rc = sai_parse_plan(buf, (size_t)got, out, err, errlen);
	free(buf);
out:
	close(fd);
	return rc;
}

/* ---- planning ---------------------------------------------------------- */

/* Working state of one sai_plan_task() call (static: about 100 KiB). */
struct work {
	int ncores;
	int core_start[SAI_MAX_CPUS], core_len[SAI_MAX_CPUS], core_node[SAI_MAX_CPUS];
	int core_cpu[SAI_MAX_CPUS]; /* the cores' CPUs, core after core */
	int nnodes;
	int node[SAI_MAX_NODES + 1];       /* nodes with cores, ascending (-1 first) */
	int node_ncores[SAI_MAX_NODES + 1];
	int next[SAI_MAX_CPUS], head[SAI_MAX_CPUS], tail[SAI_MAX_CPUS];
};

/* A CPU outside the layout is a core of its own, as in CpuTopology.cores(). */
static int core_key(const struct sai_layout *l, int cpu)
{
	return l->online[cpu] ? l->core[cpu] : cpu;
}

/* Group the flagged CPUs into cores (SMT groups), ordered by first CPU. */
static void group_cores(const struct sai_layout *l, const unsigned char *want, struct work *w)
{
	int used = 0;

	w->ncores = 0;
	for (int c = 0; c < SAI_MAX_CPUS; c++)
		w->head[c] = w->tail[c] = -1;
	for (int c = 0; c < SAI_MAX_CPUS; c++) {
		int key;

		if (!want[c])
			continue;
		key = core_key(l, c);
		w->next[c] = -1;
		if (w->head[key] < 0)
			w->head[key] = c;
		else
			w->next[w->tail[key]] = c;
		w->tail[key] = c;
	}
	for (int c = 0; c < SAI_MAX_CPUS; c++) {
		int k;

		if (!want[c] || w->head[core_key(l, c)] != c)
			continue;
		k = w->ncores++;
		w->core_start[k] = used;
		w->core_len[k] = 0;
		w->core_node[k] = l->online[c] ? l->numa[c] : -1;
		for (int m = c; m >= 0; m = w->next[m]) {
			w->core_cpu[used++] = m;
			w->core_len[k]++;
		}
	}
}

static int distance(const struct sai_layout *l, int a, int b)
{
	if (a == b)
		return 10;
	if (a < 0 || b < 0 || !l->dist[a][b])
		return 20;
	return l->dist[a][b];
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Chunk i of `n` items split in `parts` contiguous chunks (sizes differ by 1). */
static void chunk(int n, int parts, int i, int *start, int *len)
{
	int size = n / parts, extra = n % parts;

	*start = i * size + (i < extra ? i : extra);
	*len = size + (i < extra ? 1 : 0);
}

static int node_pos(const struct work *w, int node)
{
	for (int i = 0; i < w->nnodes; i++)
		if (w->node[i] == node)
			return i;
	return -1;
}

/* The job unit (position in `ju`) of rank r's first GPU; -1: none. */
static int first_unit(int r, int ntasks, int nju)
{
	if (!nju)
		return -1;
	if (ntasks >= nju)
		return (int)((long)r * nju / ntasks);
	for (int k = 0; k < nju; k++)
		if ((long)k * ntasks / nju == r)
			return k;
	return -1;
}

/* Home of each rank as a range [start, start + len) of w->node. */
static void homes(const struct sai_layout *l, struct work *w, const struct sai_unit **ju, int nju,
		  int ntasks, int me, int *hstart, int *hlen, struct sai_task *t)
{
	int nfree = 0;

	for (int r = 0; r < ntasks; r++) {
		int k = first_unit(r, ntasks, nju);
		int numa = k >= 0 ? ju[k]->numa : -1;
		int pos;

		hlen[r] = 0;
		if (k < 0)
			continue;
		if (numa < 0) {
			if (r == me)
				warn(t, "NUMA node of GPU %d unknown; rank CPUs spread over the "
				     "job's NUMA nodes", ju[k]->index);
			continue;
		}
		pos = node_pos(w, numa);
		if (pos < 0) {
			pos = 0;
			for (int i = 1; i < w->nnodes; i++) {
				int d = distance(l, numa, w->node[i]), best = distance(l, numa, w->node[pos]);

				if (d < best || (d == best && w->node_ncores[i] > w->node_ncores[pos]))
					pos = i;
			}
			if (r == me)
				warn(t, "GPU %d is on NUMA node %d, where the job has no CPUs: rank %d "
				     "uses CPUs of the nearest NUMA node %d", ju[k]->index, numa, r,
				     w->node[pos]);
		}
		hstart[r] = pos;
		hlen[r] = 1;
	}
	for (int r = 0; r < ntasks; r++)
		nfree += !hlen[r];
	for (int r = 0, i = 0; r < ntasks; r++) {
		if (hlen[r])
			continue;
		if (nfree >= w->nnodes) {
			hstart[r] = (int)((long)i * w->nnodes / nfree);
			hlen[r] = 1;
		} else {
			chunk(w->nnodes, nfree, i, &hstart[r], &hlen[r]);
		}
		i++;
	}
}

/* Split a home's cores between its ranks; this rank is member `pos` of `m`. */
static void assign_cpus(const struct work *w, int hstart, int hlen, int pos, int m,
			struct sai_task *t)
{
	static int threads[SAI_MAX_CPUS];
	int order[SAI_MAX_CPUS];
	int nthreads = 0, ncores = 0;
	int start, len;

	for (int p = hstart; p < hstart + hlen; p++)
		for (int k = 0; k < w->ncores; k++)
			if (w->core_node[k] == w->node[p])
				order[ncores++] = k;
	for (int i = 0; i < ncores; i++)
		for (int j = 0; j < w->core_len[order[i]]; j++)
			threads[nthreads++] = w->core_cpu[w->core_start[order[i]] + j];
	t->ncpus = 0;
	if (m <= ncores) {
		chunk(ncores, m, pos, &start, &len);
		for (int i = start; i < start + len; i++)
			for (int j = 0; j < w->core_len[order[i]]; j++)
				t->cpus[t->ncpus++] = w->core_cpu[w->core_start[order[i]] + j];
	} else if (m <= nthreads) {
		warn(t, "%d ranks on %d cores: SMT siblings split between ranks", m, ncores);
		chunk(nthreads, m, pos, &start, &len);
		for (int i = start; i < start + len; i++)
			t->cpus[t->ncpus++] = threads[i];
	} else {
		warn(t, "%d ranks on %d CPUs: ranks share CPUs", m, nthreads);
		if (nthreads)
			t->cpus[t->ncpus++] = threads[pos % nthreads];
	}
	qsort(t->cpus, (size_t)t->ncpus, sizeof(int), cmp_int);
}

/* visible_style() of slurm_ai/topology/alloc.py, for `auto`; NULL when the
 * task's CUDA_VISIBLE_DEVICES is set but could not be read. On an AMD node
 * without it (gres.conf AutoDetect=rsmi sets only ROCR_VISIBLE_DEVICES), Slurm's
 * ROCR_VISIBLE_DEVICES says the same. */
static const char *visible_style(const struct sai_layout *l, const struct sai_request *req,
				 const int *gpus, int ngpus)
{
	const char *seen = req->getenv ? req->getenv(req->getenv_ctx, "CUDA_VISIBLE_DEVICES") : NULL;

	if (!seen && l->rocm && req->getenv)
		seen = req->getenv(req->getenv_ctx, "ROCR_VISIBLE_DEVICES");
	int idx[SAI_MAX_UNITS];
	int n, any = 0, entries = 0, all_uuid = 1, sorted_is_range = 1;

	if (seen == sai_env_unreadable)
		return NULL; /* whatever it says, it is not ours to replace blind */
	if (strcmp(l->visible, "auto"))
		return l->visible;
	if (!seen)
		return "index";
	for (const char *p = seen; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		if (len) {
			any = 1;
			entries++;
			if (strncmp(p, "GPU-", 4) && strncmp(p, "MIG-", 4))
				all_uuid = 0;
		}
		p += len;
		if (*p == ',')
			p++;
		else
			while (*p && *p != ',')
				p++;
	}
	/* Slurm bound GPUs per task (--gpus-per-task, --ntasks-per-gpu, --gpu-bind): the
	 * task's list is Slurm's choice, and under ConstrainDevices it counts from 0
	 * among the GPUs the task can open. Kept as Slurm wrote it. */
	if (ngpus > 0 && entries > 0 && entries < ngpus)
		return "slurm";
	if (any && all_uuid)
		return "uuid";
	n = parse_index_list(seen, idx, SAI_MAX_UNITS);
	if (ngpus <= 0 || ngpus > SAI_MAX_UNITS || n != ngpus)
		return "index";
	for (int i = 0; i < n; i++)
		if (idx[i] != i)
			return "index";
	{
		int sorted[SAI_MAX_UNITS];

		memcpy(sorted, gpus, sizeof(int) * (size_t)ngpus);
		qsort(sorted, (size_t)ngpus, sizeof(int), cmp_int);
		for (int i = 0; i < ngpus; i++)
			if (sorted[i] != i)
				sorted_is_range = 0;
	}
	return sorted_is_range ? "index" : "relative";
}

static void label(const struct sai_unit *u, const char *style, const struct sai_unit **ju, int nju,
		  char *buf, size_t len)
{
	if (!strcmp(style, "uuid") && u->uuid[0]) {
		snprintf(buf, len, "%s", u->uuid);
	} else if (!strcmp(style, "relative")) {
		int below = 0;

		for (int k = 0; k < nju; k++)
			below += ju[k]->index < u->index;
		snprintf(buf, len, "%d", below);
	} else {
		snprintf(buf, len, "%d", u->index);
	}
}

/* Append ",item" only if all of it fits: a cut-off GPU UUID would name no GPU. */
static int append(char *buf, size_t len, const char *item)
{
	size_t used = strlen(buf), n = strlen(item), comma = used ? 1 : 0;

	if (used + comma + n >= len)
		return -1;
	/* memcpy, not snprintf: it fits (checked above), and gcc 14 warns that an
	 * snprintf of a string as long as the buffer may be cut (-Wformat-truncation) */
	if (comma)
		buf[used++] = ',';
	memcpy(buf + used, item, n + 1);
	return 0;
}

/* task_env() of slurm_ai/topology/taskenv.py: the user's own choices win. */
static void put_env(const struct sai_layout *l, const struct sai_request *req, struct sai_task *t,
		    const char *name, const char *value)
{
	if (!valid_name(name) || !valid_value(value)) {
		warn(t, "not exporting %.40s: unsafe value", name);
		return;
	}
	/* Slurm sets these two itself: ours replaces them (same GPUs, reordered). */
	if (strcmp(name, "CUDA_VISIBLE_DEVICES") && strcmp(name, "ROCR_VISIBLE_DEVICES") &&
	    !l->override_user_env && req->getenv && req->getenv(req->getenv_ctx, name))
		return;
	if (env_add(&t->env, name, value))
		warn(t, "not exporting %.40s: too long or too many variables", name);
}

int sai_confined_gpus(const struct sai_layout *l, int (*may_open)(const char *path), int *out)
{
	int n = 0;

	for (int i = 0; i < l->njob_gpus && i < SAI_MAX_UNITS; i++) {
		const struct sai_unit *u = find_unit((struct sai_layout *)l, l->job_gpus[i]);

		if (!u || !u->dev[0])
			return 0; /* cannot tell: Slurm's variables as they are */
		if (may_open(u->dev))
			out[n++] = u->index;
	}
	return n > 0 && n < l->njob_gpus ? n : 0;
}

int sai_plan_task(const struct sai_layout *l, const struct sai_request *req, struct sai_task *t,
		  char *err, size_t errlen)
{
	static struct work w;
	static unsigned char job[SAI_MAX_CPUS];
	static int hstart[SAI_MAX_CPUS], hlen[SAI_MAX_CPUS];
	const struct sai_unit *ju[SAI_MAX_UNITS], *mine[SAI_MAX_UNITS];
	int gpus[SAI_MAX_UNITS];
	int ngpus, nju = 0, nmine = 0, njob = 0;
	int ntasks = req->ntasks > 0 ? req->ntasks : 1;
	int rank = req->rank;

	t->ncpus = 0;
	t->numa = -1;
	t->ngpus = 0;
	t->env.count = 0;
	t->nwarnings = 0;
	if (rank < 0) {
		say(err, errlen, "negative rank %d", rank);
		return -1;
	}
	if (ntasks > SAI_MAX_CPUS) {
		/* The per-rank tables hold SAI_MAX_CPUS ranks; more tasks than CPUs a
		 * plan can describe has no pinning to give anyway. */
		say(err, errlen, "%d tasks on the node, over the %d a plan covers", ntasks,
		    SAI_MAX_CPUS);
		return -1;
	}
	if (rank >= ntasks) {
		warn(t, "local id %d beyond the %d planned ranks; wrapping", rank, ntasks);
		rank %= ntasks;
	}

	/* The job's GPU units. */
	if (req->gpus) {
		ngpus = parse_index_list(req->gpus, gpus, SAI_MAX_UNITS);
		if (ngpus < 0) {
			warn(t, "GPU list %.40s not understood: no GPU variables", req->gpus);
			ngpus = 0;
		}
	} else {
		ngpus = l->njob_gpus > 0 && l->njob_gpus <= SAI_MAX_UNITS ? l->njob_gpus : 0;
		memcpy(gpus, l->job_gpus, sizeof(int) * (size_t)ngpus);
	}
	for (int i = 0; i < ngpus; i++) {
		const struct sai_unit *u = find_unit((struct sai_layout *)l, gpus[i]);

		if (u)
			ju[nju++] = u;
		else
			warn(t, "GPU %d of the job is not on this node (%d GPUs)", gpus[i], l->nunits);
	}

	/* The job's CPUs: allowed and online. */
	for (int c = 0; c < SAI_MAX_CPUS; c++) {
		job[c] = req->allowed[c] && l->online[c];
		njob += job[c];
	}
	if (!njob) {
		int all[SAI_MAX_CPUS], n = 0, start, len;

		for (int c = 0; c < SAI_MAX_CPUS; c++)
			if (req->allowed[c])
				all[n++] = c;
		if (!n) {
			say(err, errlen, "the task may run on no CPU");
			return -1;
		}
		warn(t, "no allowed CPU is in the plan: allowed CPUs split evenly");
		chunk(n, ntasks, rank, &start, &len);
		if (!len) {
			start = rank % n;
			len = 1;
		}
		for (int i = start; i < start + len; i++)
			t->cpus[t->ncpus++] = all[i];
	} else {
		int members = 0, pos = 0;

		group_cores(l, job, &w);
		w.nnodes = 0;
		for (int node = -1; node < SAI_MAX_NODES; node++) {
			int count = 0;

			for (int k = 0; k < w.ncores; k++)
				count += w.core_node[k] == node;
			if (count) {
				w.node_ncores[w.nnodes] = count;
				w.node[w.nnodes++] = node;
			}
		}
		homes(l, &w, ju, nju, ntasks, rank, hstart, hlen, t);
		for (int r = 0; r < ntasks; r++) {
			if (hstart[r] != hstart[rank] || hlen[r] != hlen[rank])
				continue;
			if (r == rank)
				pos = members;
			members++;
		}
		assign_cpus(&w, hstart[rank], hlen[rank], pos, members, t);
		if (hlen[rank] == 1 && w.node[hstart[rank]] >= 0)
			t->numa = w.node[hstart[rank]];
	}

	/* The rank's own GPUs. */
	if (nju && ntasks >= nju)
		mine[nmine++] = ju[first_unit(rank, ntasks, nju)];
	else
		for (int k = 0; k < nju; k++)
			if ((long)k * ntasks / nju == rank)
				mine[nmine++] = ju[k];
	for (int i = 0; i < nmine; i++)
		t->gpus[t->ngpus++] = mine[i]->index;
	if (nmine) {
		char value[SAI_VALUE_MAX] = "", one[SAI_UUID_MAX];
		const char *style = visible_style(l, req, gpus, ngpus);
		int mig = 0, full = 0, slurms = style && !strcmp(style, "slurm");

		for (int i = 0; i < nmine; i++)
			mig |= mine[i]->mig;
		for (int i = 0; style && !slurms && i < (mig ? 1 : nmine) && !full; i++) {
			label(mine[i], style, ju, nju, one, sizeof(one));
			full = append(value, sizeof(value), one);
		}
		for (int k = 0; style && !slurms && k < nju && !mig && !l->own_gpu_only && !full;
		     k++) {
			int own = 0;

			for (int i = 0; i < nmine; i++)
				own |= mine[i] == ju[k];
			if (own)
				continue;
			label(ju[k], style, ju, nju, one, sizeof(one));
			full = append(value, sizeof(value), one);
		}
		if (full)
			warn(t, "CUDA_VISIBLE_DEVICES longer than %d characters: the job's other GPUs "
				"after the last that fits are not listed", SAI_VALUE_MAX - 1);
		if (slurms) {
			/* the task's GPUs stay as Slurm named them */
		} else if (style && l->rocm) {
			/* ROCr takes the list; HIP counts inside it (HIP_VISIBLE_DEVICES, and
			 * CUDA_VISIBLE_DEVICES, which HIP also reads): 0..n-1, ROCr's order. */
			char ordinals[SAI_VALUE_MAX] = "";
			int count = value[0] != '\0';

			for (const char *p = value; *p; p++)
				count += *p == ',';
			for (int i = 0; i < count; i++) {
				snprintf(one, sizeof(one), "%d", i);
				append(ordinals, sizeof(ordinals), one);
			}
			put_env(l, req, t, "ROCR_VISIBLE_DEVICES", value);
			put_env(l, req, t, "HIP_VISIBLE_DEVICES", ordinals);
			put_env(l, req, t, "CUDA_VISIBLE_DEVICES", ordinals);
		} else if (style)
			put_env(l, req, t, "CUDA_VISIBLE_DEVICES", value);
		else
			warn(t, "the task's CUDA_VISIBLE_DEVICES is too long to read: left as it is");
	}
	{
		const struct sai_envset *nic = nmine ? &mine[0]->env : &l->node_env[t->numa + 1];

		for (int i = 0; i < nic->count; i++)
			put_env(l, req, t, nic->item[i].name, nic->item[i].value);
	}
	if (t->ncpus) {
		static unsigned char flags[SAI_MAX_CPUS];
		char value[16];

		memset(flags, 0, sizeof(flags));
		for (int i = 0; i < t->ncpus; i++)
			flags[t->cpus[i]] = 1;
		group_cores(l, flags, &w);
		snprintf(value, sizeof(value), "%d", w.ncores > 0 ? w.ncores : 1);
		put_env(l, req, t, "OMP_NUM_THREADS", value);
	}
	return 0;
}

int sai_memory_policy_set(void)
{
	int mode = 0;

	/* get_mempolicy(2) without libnuma: mode only (no node mask, no address) */
	if (syscall(SYS_get_mempolicy, &mode, NULL, 0UL, NULL, 0UL))
		return -1;
	return mode != 0; /* MPOL_DEFAULT */
}
