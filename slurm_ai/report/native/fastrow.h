/*
 * _fastrow: the report's hot path in C (optional; facts.py has the same rules in Python).
 * What the module's files share; each file says its one job at its top:
 *   token.c    a record token to its JSON (hex digits, inflate)
 *   json.c     the strict JSON reader (the small steps inline, below)
 *   figures.c  a record's figures from its JSON (facts._dict_figures)
 *   summary.c  a v2 record's figures from its summary (facts._summary_figures)
 *   row.c      a sacct row's facts (facts.row_facts) for the usual row
 *   tally.c    Tally: a range's cells counted as aggregate.py counts them
 *   scanner.c  Scanner: a dump range read and cut into rows (dumpfile.py's rule)
 *   module.c   the module: figures(), payload(), the words it shares, its init
 *
 * figures(token) takes an AdminComment token ("sai1:<hex(zlib(json))>") and returns the
 * figures facts._dict_figures computes from the record json.loads would give, as the same
 * tuple, or None ("decline") for anything outside the common case. Python then decides
 * that token exactly as it does without this module: exactness is the rule, so this code
 * declines whenever its answer could differ from json.loads + facts.py, in particular on
 *   - a token that is not ASCII hex, or longer than record.py's one-shot inflate size,
 *   - any inflate error (zlib header, deflate data, Adler-32, truncation, size limit),
 *   - JSON that is not strict RFC 8259 (NaN, Infinity, comments, trailing commas...),
 *     invalid UTF-8 (Python would raise), a UTF-8 encoded surrogate (Python's
 *     surrogatepass would take it), nesting deeper than MAX_DEPTH, an int literal long
 *     enough to hit Python's int digit limit,
 *   - a key with an escape (it could spell a key we read), a repeated key we read
 *     (json.loads keeps the last value at the first position), a string we read with an
 *     escape, more than MAX_NODES nodes (the repeated-name check is quadratic),
 *   - a value facts.py would put through `in frozenset` that is a list or object
 *     (Python raises TypeError there: it must see it), a number we read that is an int
 *     of more than 15 digits (not exact as a double), a version that is not the literal 1
 *     or 2, a v2 record whose summary is missing or not an object (facts.py then reads
 *     its nodes), a record whose "complete" is not true (rare: a job with nodes lost;
 *     facts.py marks it, JobFacts.complete, which the C path does not carry),
 *   - in a v2 summary: a repeated key we read, a count table of more than
 *     MAX_SUMMARY_KEYS keys (or more than MAX_CLASSES classes / MAX_MODELS models that
 *     count), a worst_source that is a list or object.
 * The input is user-influenced (AdminComment): every read is bounds-checked against the
 * end of its buffer, and nothing is written past a buffer's size.
 */
#ifndef SLURM_AI_FASTROW_H
#define SLURM_AI_FASTROW_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#ifdef FASTROW_ISAL
#define FASTROW_INFLATER "isa-l"
#else
#define FASTROW_INFLATER "zlib"
#endif

/* record.py: MAX_JSON_BYTES and _ONE_SHOT_BYTES (larger records: Python's bounded path). */
#define MAX_JSON_BYTES (4 * 1024 * 1024)
/* facts.py FIGURE_MAX: a record figure at or past it counts as missing (NaN fails too). */
#define FIGURE_MAX 1e18
#define ONE_SHOT_BYTES (MAX_JSON_BYTES / 1032 - 1)
#define MAX_DEPTH 64
#define MAX_NODES 256
#define MAX_MODELS 32
#define MAX_CLASSES 32
#define MAX_SUMMARY_KEYS 64 /* keys of one v2 summary count table (summary.py writes <= 17) */
#define MAX_INT_DIGITS 600 /* below the smallest int digit limit Python allows (640) */
#define EXACT_INT_DIGITS 15 /* ints up to 10^15 - 1 are exact as doubles */

/* ------------------------------------------------------------------ token.c */

extern unsigned char *in_buf;  /* ONE_SHOT_BYTES: the token's bytes */
extern unsigned char *out_buf; /* MAX_JSON_BYTES: the record's JSON */
int ensure_buffers(void);
void init_hex(void);
int hex_value(unsigned char c);
Py_ssize_t token_json(const char *tok, Py_ssize_t len);

/* ------------------------------------------------------------------ json.c */

enum { J_NONE, J_NULL, J_TRUE, J_FALSE, J_INT, J_FLOAT, J_STR, J_OBJ, J_ARR };

typedef struct {
    const unsigned char *p, *end;
    int depth;
} Cur;

/* A leaf value as read: its type and (numbers, strings) its text. */
typedef struct {
    int type;
    const unsigned char *s;
    Py_ssize_t n;
    int escaped; /* strings: holds a backslash escape */
} Val;

void init_str_stop(void);
int read_value(Cur *c, Val *v);
int skip_value(Cur *c);
int obj_begin(Cur *c, int *empty);
int obj_key(Cur *c, Val *key);
int obj_after(Cur *c);
int num_value(const Val *v, double *out);

/* The reader's smallest steps, inline where figures.c calls them for every key. */

static inline void skip_ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline int key_is(const Val *key, const char *name) {
    size_t n = strlen(name);
    return (size_t)key->n == n && memcmp(key->s, name, n) == 0;
}

/* A repeated key we read: json.loads keeps the last value; decline (bit per key). */
static inline int first_time(unsigned *seen, unsigned bit) {
    if (*seen & bit) return 0;
    *seen |= bit;
    return 1;
}

static inline int str_is(const Val *v, const char *text) {
    return v->type == J_STR && !v->escaped && key_is(v, text);
}

/* A value facts.py tests with `in` a frozenset or dict: a list or object would raise. */
static inline int hashable(const Val *v) { return v->type != J_OBJ && v->type != J_ARR; }


/* ------------------------------------------------------------------ figures.c */

typedef struct {
    const unsigned char *s;
    Py_ssize_t n;
    long count;
} Name;

typedef struct {
    Py_ssize_t node_count;
    Name node_names[MAX_NODES];
    Name classes[MAX_CLASSES];
    int n_classes;
    Name models[MAX_MODELS];
    int n_models;
    int has_energy;
    double energy, measured, estimated;
    long rec_gpus;
    int has_busbw;
    double busbw, ranks, size; /* ranks, size: _num's value or 0 */
    int busbw_cpu;             /* the busbw key's model: 1 "cpu", 0 the job's (busbw_on_cpu) */
    int health;                /* 0 none, 1 ok, 2 failed */
    int source;                /* 0 none, 1 fresh, 2 cached, 3 unchecked */
    Val units[4];              /* tokens, epochs, samples, requests: a number or J_NONE */
    int unit_order[4], n_units;
    int workload; /* -1 none, else the index in WORKLOADS */
} Figs;

extern const char *const UNIT_NAMES[4], *const WORKLOAD_NAMES[4], *const SOURCE_NAMES[4];
extern Figs figs; /* the one Figs being read (the GIL guards it) */
int read_figures(Py_ssize_t n, Figs *f);
int busbw_on_cpu(const Val *device, const Val *backend);

/* ------------------------------------------------------------------ summary.c */

/* What facts._summary_figures reads of a v2 summary object. */
typedef struct {
    int present;       /* the record had a summary object */
    unsigned seen, seen_gpus, seen_energy, seen_health, seen_verdicts, seen_busbw;
    int has_count;     /* "nodes": an int >= 0 */
    Py_ssize_t count;
    Name keys[MAX_SUMMARY_KEYS]; /* the count table being read (repeats decline) */
    int n_keys;
    Name classes[MAX_CLASSES]; /* platform classes with a positive count */
    int n_classes;
    Name models[MAX_MODELS];   /* GPU models with a positive count, and it */
    int n_models;
    long rec_gpus;
    int has_energy;
    double energy, measured, estimated;
    int health, source; /* as in Figs */
    Val busbw_vals[5];  /* busbw_min: gbps, ranks, size_bytes, device, backend (J_NONE: absent) */
} Summ;

extern Summ summ; /* the one Summ being read (the GIL guards it) */
int read_summary(Cur *c, Summ *s);
int summary_figures(const Summ *s, Py_ssize_t names, Figs *f);

/* ------------------------------------------------------------------ row.c */

enum { A_JOB, A_PART, A_USER, A_ACCOUNT, A_NNODES, A_STATE, A_SUBMIT, A_START, A_END,
       A_ELAPSED, A_TRES, A_COMMENT, A_KEEP, A_COUNT };

/* One job's facts (facts.JobFacts' fields), as row() and Tally read them. */
typedef struct {
    int ok; /* kind: OK (a record), else NONE */
    PyObject *partition, *platform, *model, *gpus, *workload; /* all but workload: owned */
    PyObject *busbw_model; /* the busbw key's model: model or "cpu" (row(): owned) */
    int guessed, completed, has_wait, has_energy, has_busbw, health, source;
    int has_start, has_end;
    double nnodes, gpu_count, elapsed, node_s, gpu_s, wait, energy, measured, estimated;
    double busbw, ranks, size, submit, start, end;
    PyObject *ranks_o, *size_o; /* Tally.add: the busbw_key's ints (borrowed), else NULL */
    int n_units, unit[4];
    double unit_value[4];
} Job;

/* A row's 12 sacct fields (A_JOB..A_COMMENT): ASCII spans (s NULL: not ASCII) and,
 * where the caller has them, the str objects; made on demand otherwise. */
typedef struct {
    const unsigned char *s[A_KEEP];
    Py_ssize_t n[A_KEEP];
    PyObject *obj[A_KEEP]; /* borrowed, or one of made[] */
    PyObject *made[A_KEEP];
} Fields;

/* What row() builds, from facts.py (setup()): its classes, a function and its words. */
extern PyObject *JobFacts, *Outcome, *tres_gpus, *KIND_OK, *KIND_NONE, *NO_RECORD;
void job_clear(Job *j);
void fields_of_args(Fields *fl, PyObject *const *args);
void fields_clear(Fields *fl);
int job_of_row(Fields *fl, PyObject *keep, Job *j);
PyObject *float_or_none(int has, double value);
/* 1, or 0 with an exception: setup() has given row() what it builds. */
int setup_done(void);
/* setup_done() and nargs == want (else a TypeError). */
int ready(Py_ssize_t nargs, Py_ssize_t want);
extern PyMethodDef row_functions[]; /* the module's setup() and row() */

/* ------------------------------------------------------------------ tally.c */

typedef struct Tally Tally;
extern PyTypeObject TallyType;
/* Whether the Tally's text() reads rows of this delimiter (else it declines them all). */
int tally_reads(const Tally *t, unsigned char delimiter);
/* Tally.text() of a row's bytes: True counted, False dropped by keep, None declined. */
PyObject *tally_bytes(Tally *t, const unsigned char *s, Py_ssize_t n, PyObject *keep);

/* ------------------------------------------------------------------ scanner.c */

extern PyTypeObject ScannerType;

/* ------------------------------------------------------------------ module.c */

/* Words made once at import (interned): the facts' values C hands to Python. */
extern PyObject *str_unknown, *str_ok, *str_failed, *str_empty, *str_mixed, *str_cpu,
    *str_question, *str_completed;
extern PyObject *workload_strs[4], *unit_strs[4], *source_strs[4];

#endif
