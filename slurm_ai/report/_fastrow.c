/*
 * _fastrow: the report's hot path in C (optional; facts.py has the same rules in Python).
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
 *     of more than 15 digits (not exact as a double), a version that is not the literal 1.
 * The input is user-influenced (AdminComment): every read is bounds-checked against the
 * end of its buffer, and nothing is written past a buffer's size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifdef FASTROW_ISAL
#include <isa-l/igzip_lib.h>
#define FASTROW_INFLATER "isa-l"
#else
#include <zlib.h>
#define FASTROW_INFLATER "zlib"
#endif

/* record.py: MAX_JSON_BYTES and _ONE_SHOT_BYTES (larger records: Python's bounded path). */
#define MAX_JSON_BYTES (4 * 1024 * 1024)
#define ONE_SHOT_BYTES (MAX_JSON_BYTES / 1032 - 1)
#define MAX_DEPTH 64
#define MAX_NODES 256
#define MAX_MODELS 32
#define MAX_CLASSES 32
#define MAX_INT_DIGITS 600 /* below the smallest int digit limit Python allows (640) */
#define EXACT_INT_DIGITS 15 /* ints up to 10^15 - 1 are exact as doubles */

static unsigned char *in_buf;  /* ONE_SHOT_BYTES: the token's bytes */
static unsigned char *out_buf; /* MAX_JSON_BYTES: the record's JSON */

/* ------------------------------------------------------------------ token -> JSON */

/* Hex digit -> value; 0xff: not a hex digit (a table: the token is ~1.6k digits). */
static unsigned char HEX[256];

static void init_hex(void) {
    memset(HEX, 0xff, sizeof HEX);
    for (int i = 0; i < 10; i++) HEX['0' + i] = (unsigned char)i;
    for (int i = 0; i < 6; i++) HEX['a' + i] = HEX['A' + i] = (unsigned char)(10 + i);
}

static int hex_value(unsigned char c) { return HEX[c] == 0xff ? -1 : HEX[c]; }

/* token -> its JSON in out_buf; the JSON's length, or -1: decline. */
static Py_ssize_t token_json(const char *tok, Py_ssize_t len) {
    static const char prefix[] = "sai1:";
    if (len < 5) return -1;
    for (int i = 0; i < 5; i++) {
        char c = tok[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != prefix[i]) return -1;
    }
    Py_ssize_t hex_len = len - 5;
    /* odd length or empty: binascii/zlib raise; larger: Python's bounded path decides */
    if (hex_len <= 0 || hex_len % 2 || hex_len / 2 > ONE_SHOT_BYTES) return -1;
    Py_ssize_t n = hex_len / 2;
    const unsigned char *h = (const unsigned char *)tok + 5;
    unsigned bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned hi = HEX[h[2 * i]], lo = HEX[h[2 * i + 1]];
        bad |= hi | lo; /* 0xff marks a non-digit: checked once, after the loop */
        in_buf[i] = (unsigned char)(hi << 4 | (lo & 0x0f));
    }
    if (bad & 0xf0) return -1;
    /* zlib header as zlib.decompress (wbits 15) takes it: deflate, a 32 KiB window (the
     * only one both inflaters treat alike), check bits, no preset dictionary. */
    if (n < 2 || (in_buf[0] & 0x0f) != 8 || (in_buf[0] >> 4) != 7 ||
        ((in_buf[0] << 8) | in_buf[1]) % 31 != 0 || (in_buf[1] & 0x20))
        return -1;
#ifdef FASTROW_ISAL
    struct inflate_state state;
    isal_inflate_init(&state);
    state.next_in = in_buf;
    state.avail_in = (uint32_t)n;
    state.next_out = out_buf;
    state.avail_out = MAX_JSON_BYTES;
    state.crc_flag = ISAL_ZLIB; /* parses the header, verifies the Adler-32 */
    if (isal_inflate_stateless(&state) != ISAL_DECOMP_OK) return -1;
    if (state.block_state != ISAL_BLOCK_FINISH) return -1;
    Py_ssize_t out_len = (Py_ssize_t)state.total_out;
#else
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return -1;
    zs.next_in = in_buf;
    zs.avail_in = (uInt)n;
    zs.next_out = out_buf;
    zs.avail_out = MAX_JSON_BYTES;
    int rc = inflate(&zs, Z_FINISH);
    Py_ssize_t out_len = (Py_ssize_t)zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) return -1;
#endif
    /* record.py: a record of MAX_JSON_BYTES or more is the bounded path's to word */
    if (out_len < 0 || out_len >= MAX_JSON_BYTES) return -1;
    return out_len;
}

/* ------------------------------------------------------------------ JSON reader */

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

static void skip_ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int is_hex(unsigned char ch) { return hex_value(ch) >= 0; }

/* A string at c->p (the opening quote); its content's span. 0, or -1: decline. */
static int read_string(Cur *c, Val *v) {
    if (c->p >= c->end || *c->p != '"') return -1;
    const unsigned char *p = ++c->p, *end = c->end;
    int escaped = 0;
    while (p < end) {
        unsigned char ch = *p;
        if (ch == '"') {
            v->type = J_STR;
            v->s = c->p;
            v->n = p - c->p;
            v->escaped = escaped;
            c->p = p + 1;
            return 0;
        }
        if (ch < 0x20) return -1; /* json.loads (strict) refuses control characters */
        if (ch == '\\') {
            escaped = 1;
            if (end - p < 2) return -1;
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6) return -1;
                for (int i = 2; i < 6; i++)
                    if (!is_hex(p[i])) return -1;
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return -1;
            }
            continue;
        }
        if (ch < 0x80) {
            p++;
            continue;
        }
        /* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
        Py_ssize_t left = end - p;
        if (ch >= 0xc2 && ch <= 0xdf) {
            if (left < 2 || (p[1] & 0xc0) != 0x80) return -1;
            p += 2;
        } else if (ch >= 0xe0 && ch <= 0xef) {
            if (left < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return -1;
            if (ch == 0xe0 && p[1] < 0xa0) return -1;
            if (ch == 0xed && p[1] >= 0xa0) return -1; /* surrogates */
            p += 3;
        } else if (ch >= 0xf0 && ch <= 0xf4) {
            if (left < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
                (p[3] & 0xc0) != 0x80)
                return -1;
            if (ch == 0xf0 && p[1] < 0x90) return -1;
            if (ch == 0xf4 && p[1] >= 0x90) return -1;
            p += 4;
        } else {
            return -1;
        }
    }
    return -1; /* unterminated */
}

/* A number at c->p, RFC 8259 grammar (json.loads' too, less NaN and Infinity). */
static int read_number(Cur *c, Val *v) {
    const unsigned char *p = c->p, *end = c->end, *start = p;
    int is_float = 0;
    if (p < end && *p == '-') p++;
    if (p >= end) return -1;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
        is_float = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
        is_float = 1;
    }
    if (!is_float && p - start > MAX_INT_DIGITS) return -1;
    v->type = is_float ? J_FLOAT : J_INT;
    v->s = start;
    v->n = p - start;
    v->escaped = 0;
    c->p = p;
    return 0;
}

static int skip_value(Cur *c);

static int skip_container(Cur *c, unsigned char close, int object) {
    if (++c->depth > MAX_DEPTH) return -1;
    c->p++; /* the opening bracket */
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return 0;
    }
    for (;;) {
        if (object) {
            Val key;
            if (read_string(c, &key) < 0) return -1;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return -1;
            c->p++;
        }
        if (skip_value(c) < 0) return -1;
        skip_ws(c);
        if (c->p >= c->end) return -1;
        if (*c->p == ',') {
            c->p++;
            skip_ws(c);
            continue;
        }
        if (*c->p != close) return -1;
        c->p++;
        c->depth--;
        return 0;
    }
}

static int literal(Cur *c, const char *word, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, word, (size_t)n) != 0) return -1;
    c->p += n;
    return 0;
}

/* Any value at c->p (whitespace skipped): validated and passed over; leaves as Val. */
static int read_value(Cur *c, Val *v) {
    skip_ws(c);
    if (c->p >= c->end) return -1;
    v->s = c->p;
    v->n = 0;
    v->escaped = 0;
    switch (*c->p) {
    case '"':
        return read_string(c, v);
    case '{':
        v->type = J_OBJ;
        return skip_container(c, '}', 1);
    case '[':
        v->type = J_ARR;
        return skip_container(c, ']', 0);
    case 't':
        v->type = J_TRUE;
        return literal(c, "true", 4);
    case 'f':
        v->type = J_FALSE;
        return literal(c, "false", 5);
    case 'n':
        v->type = J_NULL;
        return literal(c, "null", 4);
    default:
        return read_number(c, v);
    }
}

static int skip_value(Cur *c) {
    Val v;
    return read_value(c, &v);
}

/* Object iteration: `{` consumed by obj_begin; obj_next gives each key, at its value. */
static int obj_begin(Cur *c, int *empty) {
    if (++c->depth > MAX_DEPTH) return -1;
    c->p++;
    skip_ws(c);
    *empty = c->p < c->end && *c->p == '}';
    if (*empty) {
        c->p++;
        c->depth--;
    }
    return 0;
}

/* Key of the next member (escapes decline: one could spell a key we read). */
static int obj_key(Cur *c, Val *key) {
    skip_ws(c);
    if (read_string(c, key) < 0 || key->escaped) return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') return -1;
    c->p++;
    skip_ws(c);
    return 0;
}

/* After a member's value: 1 another member follows, 0 the object ended, -1 decline. */
static int obj_after(Cur *c) {
    skip_ws(c);
    if (c->p >= c->end) return -1;
    if (*c->p == ',') {
        c->p++;
        return 1;
    }
    if (*c->p == '}') {
        c->p++;
        c->depth--;
        return 0;
    }
    return -1;
}

static int key_is(const Val *key, const char *name) {
    size_t n = strlen(name);
    return (size_t)key->n == n && memcmp(key->s, name, n) == 0;
}

/* A repeated key we read: json.loads keeps the last value; decline (bit per key). */
static int first_time(unsigned *seen, unsigned bit) {
    if (*seen & bit) return 0;
    *seen |= bit;
    return 1;
}

static int str_is(const Val *v, const char *text) {
    return v->type == J_STR && !v->escaped && key_is(v, text);
}

/* A number facts.py reads (type(x) in (int, float)): its double, exact. 1 a number,
 * 0 not a number (bool, string, null...), -1 decline (an int too long to be exact). */
static int num_value(const Val *v, double *out) {
    char buf[400];
    if (v->type == J_INT) {
        Py_ssize_t digits = v->n - (v->s[0] == '-');
        if (digits > EXACT_INT_DIGITS) return -1;
        double d = 0;
        for (Py_ssize_t i = v->s[0] == '-'; i < v->n; i++) d = d * 10 + (v->s[i] - '0');
        *out = v->s[0] == '-' ? -d : d;
        return 1;
    }
    if (v->type == J_FLOAT) {
        if (v->n >= (Py_ssize_t)sizeof buf) return -1;
        memcpy(buf, v->s, (size_t)v->n);
        buf[v->n] = 0;
        char *endp = NULL;
        /* Python's own float(): correctly rounded, locale-free; overflow gives +-inf */
        double d = PyOS_string_to_double(buf, &endp, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        if (endp != buf + v->n) return -1;
        *out = d;
        return 1;
    }
    return 0;
}

/* A value facts.py tests with `in` a frozenset or dict: a list or object would raise. */
static int hashable(const Val *v) { return v->type != J_OBJ && v->type != J_ARR; }

/* ------------------------------------------------------------------ figures */

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
    int health;                /* 0 none, 1 ok, 2 failed */
    int source;                /* 0 none, 1 fresh, 2 cached, 3 unchecked */
    Val units[4];              /* tokens, epochs, samples, requests: a number or J_NONE */
    int unit_order[4], n_units;
    int workload; /* -1 none, else the index in WORKLOADS */
} Figs;

static const char *const UNIT_NAMES[4] = {"tokens", "epochs", "samples", "requests"};
static const char *const WORKLOAD_NAMES[4] = {"training", "fine-tuning", "inference",
                                              "data-science"};
static const char *const SOURCE_NAMES[4] = {NULL, "fresh", "cached", "unchecked"};

static int add_name(Name *names, int *count, int cap, const unsigned char *s, Py_ssize_t n) {
    for (int i = 0; i < *count; i++) {
        if (names[i].n == n && memcmp(names[i].s, s, (size_t)n) == 0) {
            names[i].count++;
            return 0;
        }
    }
    if (*count >= cap) return -1;
    names[*count].s = s;
    names[*count].n = n;
    names[*count].count = 1;
    (*count)++;
    return 0;
}

/* An object's members, each key passed to `member` (at the value; it must consume it). */
typedef int (*MemberFn)(Cur *c, const Val *key, void *ctx);

static int each_member(Cur *c, MemberFn member, void *ctx) {
    int empty;
    if (obj_begin(c, &empty) < 0) return -1;
    if (empty) return 0;
    for (;;) {
        Val key;
        if (obj_key(c, &key) < 0) return -1;
        if (member(c, &key, ctx) < 0) return -1;
        int more = obj_after(c);
        if (more < 0) return -1;
        if (!more) return 0;
    }
}

/* One leaf member read by key into vals[i] (names[i]); others skipped. */
typedef struct {
    const char *const *names;
    int count;
    Val *vals;
    unsigned seen;
} Leaves;

static int leaf_member(Cur *c, const Val *key, void *ctx) {
    Leaves *l = ctx;
    for (int i = 0; i < l->count; i++) {
        if (key_is(key, l->names[i])) {
            if (!first_time(&l->seen, 1u << i)) return -1;
            return read_value(c, &l->vals[i]);
        }
    }
    return skip_value(c);
}

/* The leaves `names` of the object at c->p (vals[i].type J_NONE: absent). */
static int read_leaves(Cur *c, const char *const *names, int count, Val *vals) {
    for (int i = 0; i < count; i++) vals[i].type = J_NONE;
    Leaves l = {names, count, vals, 0};
    return each_member(c, leaf_member, &l);
}

static int at_object(Cur *c) {
    skip_ws(c);
    return c->p < c->end && *c->p == '{';
}

static int at_array(Cur *c) {
    skip_ws(c);
    return c->p < c->end && *c->p == '[';
}

/* facts: `if type(x) in _NUM and 0 <= x < _INF` */
static int usable(const Val *v, double *out) {
    int r = num_value(v, out);
    if (r <= 0) return r;
    return *out >= 0 && *out < Py_HUGE_VAL;
}

/* A list's elements, each passed to `elem` (at the element; it must consume it). */
typedef int (*ElemFn)(Cur *c, void *ctx);

static int each_element(Cur *c, ElemFn elem, void *ctx) {
    if (++c->depth > MAX_DEPTH) return -1;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        c->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(c);
        if (elem(c, ctx) < 0) return -1;
        skip_ws(c);
        if (c->p >= c->end) return -1;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p != ']') return -1;
        c->p++;
        c->depth--;
        return 0;
    }
}

static const char *const GPU_KEYS[] = {"model"};

static int gpu_elem(Cur *c, void *ctx) {
    Figs *f = ctx;
    f->rec_gpus++;
    if (!at_object(c)) return skip_value(c);
    Val model;
    if (read_leaves(c, GPU_KEYS, 1, &model) < 0) return -1;
    if (model.type == J_STR && model.n > 0) {
        if (model.escaped) return -1;
        if (add_name(f->models, &f->n_models, MAX_MODELS, model.s, model.n) < 0) return -1;
    }
    return 0;
}

static const char *const SOURCE_KEYS[] = {"joules", "quality"};

static int source_elem(Cur *c, void *ctx) {
    Figs *f = ctx;
    if (!at_object(c)) return skip_value(c);
    Val v[2];
    if (read_leaves(c, SOURCE_KEYS, 2, v) < 0) return -1;
    double joules;
    int r = usable(&v[0], &joules);
    if (r < 0) return -1;
    if (r) {
        if (v[1].type == J_STR && v[1].escaped) return -1;
        if (str_is(&v[1], "measured"))
            f->measured += joules;
        else if (str_is(&v[1], "estimated"))
            f->estimated += joules;
    }
    return 0;
}

/* A node's energy: total_j first, then the sources, as facts.py adds them. Both are read
 * in one pass; total_j goes to f->energy once the object ends (a node has one). */
typedef struct {
    Figs *f;
    Val total;
    unsigned seen;
} EnergyCtx;

static int energy_member(Cur *c, const Val *key, void *ctx) {
    EnergyCtx *e = ctx;
    if (key_is(key, "total_j")) {
        if (!first_time(&e->seen, 1)) return -1;
        return read_value(c, &e->total);
    }
    if (key_is(key, "sources")) {
        /* sources that come twice: the last would win; their sums are kept as read */
        if (!first_time(&e->seen, 2)) return -1;
        if (!at_array(c)) return skip_value(c);
        return each_element(c, source_elem, e->f);
    }
    return skip_value(c);
}

static const char *const PROVENANCE_KEYS[] = {"source"};
static const char *const HEALTH_KEYS[] = {"verdict", "busbw_gbps", "ranks", "size_bytes"};

typedef struct {
    Figs *f;
    unsigned seen;
    int is_dict[4]; /* platform, gpus(list), energy, health present as the right type */
    Val cls;
    Val health[4];
    int has_provenance;
    Val source;
} NodeCtx;

static int node_member(Cur *c, const Val *key, void *ctx) {
    NodeCtx *n = ctx;
    Figs *f = n->f;
    if (key_is(key, "platform")) {
        if (!first_time(&n->seen, 1)) return -1;
        if (!at_object(c)) return skip_value(c);
        n->is_dict[0] = 1;
        static const char *const names[] = {"class"};
        return read_leaves(c, names, 1, &n->cls);
    }
    if (key_is(key, "gpus")) {
        if (!first_time(&n->seen, 2)) return -1;
        if (!at_array(c)) return skip_value(c);
        return each_element(c, gpu_elem, f);
    }
    if (key_is(key, "energy")) {
        if (!first_time(&n->seen, 4)) return -1;
        if (!at_object(c)) return skip_value(c);
        EnergyCtx e = {f, {J_NONE, NULL, 0, 0}, 0};
        /* sources add as they are read; total_j when the object ends: the sums are
         * separate, so the order of keys in the object changes no figure */
        if (each_member(c, energy_member, &e) < 0) return -1;
        double total;
        int r = usable(&e.total, &total);
        if (r < 0) return -1;
        if (r) {
            f->energy = (f->has_energy ? f->energy : 0.0) + total;
            f->has_energy = 1;
        }
        return 0;
    }
    if (key_is(key, "health")) {
        if (!first_time(&n->seen, 8)) return -1;
        if (!at_object(c)) return skip_value(c);
        n->is_dict[3] = 1;
        /* health's leaves and provenance.source */
        int empty;
        for (int i = 0; i < 4; i++) n->health[i].type = J_NONE;
        n->source.type = J_NONE;
        if (obj_begin(c, &empty) < 0) return -1;
        unsigned seen = 0;
        while (!empty) {
            Val k;
            if (obj_key(c, &k) < 0) return -1;
            int done = 0;
            for (int i = 0; i < 4; i++) {
                if (key_is(&k, HEALTH_KEYS[i])) {
                    if (!first_time(&seen, 1u << i)) return -1;
                    if (read_value(c, &n->health[i]) < 0) return -1;
                    done = 1;
                    break;
                }
            }
            if (!done && key_is(&k, "provenance")) {
                if (!first_time(&seen, 16)) return -1;
                if (at_object(c)) {
                    n->has_provenance = 1;
                    if (read_leaves(c, PROVENANCE_KEYS, 1, &n->source) < 0) return -1;
                } else if (skip_value(c) < 0) {
                    return -1;
                }
                done = 1;
            }
            if (!done && skip_value(c) < 0) return -1;
            int more = obj_after(c);
            if (more < 0) return -1;
            empty = !more;
        }
        return 0;
    }
    return skip_value(c);
}

static int verdict_is(const Val *v, const char *const *set, int count) {
    for (int i = 0; i < count; i++)
        if (str_is(v, set[i])) return 1;
    return 0;
}

/* _num(): a finite number's double, else None (here: 0, as `int(x or 0)` reads it). */
static int num_or_zero(const Val *v, double *out) {
    double d;
    int r = num_value(v, &d);
    if (r < 0) return -1;
    *out = (r && d < Py_HUGE_VAL && d > -Py_HUGE_VAL) ? d : 0.0;
    return 0;
}

static int node_done(NodeCtx *n) {
    Figs *f = n->f;
    /* class: a non-empty string, else "unknown" (n->cls J_NONE) */
    if (n->is_dict[0] && n->cls.type == J_STR && n->cls.n > 0) {
        if (n->cls.escaped) return -1;
        if (add_name(f->classes, &f->n_classes, MAX_CLASSES, n->cls.s, n->cls.n) < 0)
            return -1;
    } else if (add_name(f->classes, &f->n_classes, MAX_CLASSES,
                        (const unsigned char *)"unknown", 7) < 0) {
        return -1;
    }
    if (!n->is_dict[3]) return 0;
    /* _worse_source: provenance.source in {"fresh","cached","unchecked"} */
    if (n->has_provenance && n->source.type != J_NONE) {
        if (!hashable(&n->source)) return -1;
        if (n->source.type == J_STR && n->source.escaped) return -1;
        for (int r = 1; r <= 3; r++)
            if (str_is(&n->source, SOURCE_NAMES[r]) && r > f->source) f->source = r;
    }
    const Val *verdict = &n->health[0];
    if (!hashable(verdict)) return -1;
    if (verdict->type == J_STR && verdict->escaped) return -1;
    static const char *const checked[] = {"pass", "warn", "fail", "timeout"};
    static const char *const failed[] = {"fail", "timeout"};
    if (verdict_is(verdict, checked, 4)) {
        if (verdict_is(verdict, failed, 2))
            f->health = 2;
        else if (f->health == 0)
            f->health = 1;
    }
    if (verdict_is(verdict, checked, 3)) { /* pass, warn, fail: measured */
        double bw;
        int r = usable(&n->health[1], &bw);
        if (r < 0) return -1;
        if (r && (!f->has_busbw || bw < f->busbw)) {
            f->has_busbw = 1;
            f->busbw = bw;
            if (num_or_zero(&n->health[2], &f->ranks) < 0) return -1;
            if (num_or_zero(&n->health[3], &f->size) < 0) return -1;
        }
    }
    return 0;
}

static int nodes_member(Cur *c, const Val *key, void *ctx) {
    Figs *f = ctx;
    /* a repeated node name: json.loads keeps one node (the last, at the first place) */
    for (Py_ssize_t i = 0; i < f->node_count; i++)
        if (f->node_names[i].n == key->n && memcmp(f->node_names[i].s, key->s, (size_t)key->n) == 0)
            return -1;
    if (f->node_count >= MAX_NODES) return -1;
    f->node_names[f->node_count].s = key->s;
    f->node_names[f->node_count].n = key->n;
    f->node_count++;
    NodeCtx n;
    memset(&n, 0, sizeof n);
    n.f = f;
    n.cls.type = J_NONE;
    if (!at_object(c)) {
        if (skip_value(c) < 0) return -1;
        return add_name(f->classes, &f->n_classes, MAX_CLASSES,
                        (const unsigned char *)"unknown", 7);
    }
    if (each_member(c, node_member, &n) < 0) return -1;
    return node_done(&n);
}

static int units_member(Cur *c, const Val *key, void *ctx) {
    Figs *f = ctx;
    for (int i = 0; i < 4; i++) {
        if (key_is(key, UNIT_NAMES[i])) {
            if (f->units[i].type != J_NONE) return -1; /* repeated */
            Val v;
            if (read_value(c, &v) < 0) return -1;
            if (v.type == J_INT || v.type == J_FLOAT) {
                f->units[i] = v;
            } else {
                /* not a number: facts.py skips it; mark it seen with a null */
                f->units[i].type = J_NULL;
            }
            f->unit_order[f->n_units++] = i;
            return 0;
        }
    }
    return skip_value(c);
}

static const char *const JOB_KEYS[] = {"workload"};

typedef struct {
    Figs *f;
    unsigned seen;
    int version_ok;
} RecordCtx;

static int record_member(Cur *c, const Val *key, void *ctx) {
    RecordCtx *r = ctx;
    Figs *f = r->f;
    if (key_is(key, "v")) {
        if (!first_time(&r->seen, 1)) return -1;
        Val v;
        if (read_value(c, &v) < 0) return -1;
        r->version_ok = v.type == J_INT && v.n == 1 && v.s[0] == '1';
        return 0;
    }
    if (key_is(key, "job")) {
        if (!first_time(&r->seen, 2)) return -1;
        if (!at_object(c)) return skip_value(c);
        Val w;
        if (read_leaves(c, JOB_KEYS, 1, &w) < 0) return -1;
        if (w.type == J_STR && w.escaped) return -1;
        for (int i = 0; i < 4; i++)
            if (str_is(&w, WORKLOAD_NAMES[i])) f->workload = i;
        return 0;
    }
    if (key_is(key, "nodes")) {
        if (!first_time(&r->seen, 4)) return -1;
        if (!at_object(c)) return skip_value(c);
        return each_member(c, nodes_member, f);
    }
    if (key_is(key, "units")) {
        if (!first_time(&r->seen, 8)) return -1;
        if (!at_object(c)) return skip_value(c);
        return each_member(c, units_member, f);
    }
    return skip_value(c);
}

/* The figures of the JSON in out_buf[0:n]; 0, or -1: decline. */
static int read_figures(Py_ssize_t n, Figs *f) {
    Cur c = {out_buf, out_buf + n, 0};
    memset(f, 0, sizeof *f);
    f->workload = -1;
    for (int i = 0; i < 4; i++) f->units[i].type = J_NONE;
    /* json.loads(bytes) picks UTF-16/32 from NULs and BOMs: the first byte must be
     * ASCII '{' or whitespace, and no NUL passes the reader below. */
    if (!at_object(&c)) return -1;
    RecordCtx r = {f, 0, 0};
    if (each_member(&c, record_member, &r) < 0) return -1;
    skip_ws(&c);
    if (c.p != c.end) return -1; /* json.loads: "Extra data" */
    if (!r.version_ok) return -1;
    return 0;
}

/* ------------------------------------------------------------------ Python objects */

static PyObject *str_unknown, *str_ok, *str_failed, *str_empty;
static PyObject *workload_strs[4], *unit_strs[4], *source_strs[4];

static PyObject *number_object(const Val *v) {
    double d;
    if (v->type == J_INT) {
        if (num_value(v, &d) < 0) return NULL; /* too long: declined by the caller */
        return PyLong_FromDouble(d);
    }
    if (num_value(v, &d) < 0) return NULL;
    return PyFloat_FromDouble(d);
}

/* The _Figures tuple of facts.py. NULL with no exception set: decline. */
static PyObject *figures_tuple(Figs *f) {
    PyObject *classes = NULL, *models = NULL, *units = NULL, *key = NULL;
    /* the unit values facts.py would read; ints too long to be exact: decline */
    for (int i = 0; i < f->n_units; i++) {
        const Val *v = &f->units[f->unit_order[i]];
        if (v->type == J_INT && v->n - (v->s[0] == '-') > EXACT_INT_DIGITS) return NULL;
    }
    classes = PySet_New(NULL);
    models = PyDict_New();
    units = PyDict_New();
    if (!classes || !models || !units) goto fail;
    for (int i = 0; i < f->n_classes; i++) {
        PyObject *s = (f->classes[i].n == 7 && memcmp(f->classes[i].s, "unknown", 7) == 0)
                          ? Py_NewRef(str_unknown)
                          : PyUnicode_DecodeUTF8((const char *)f->classes[i].s,
                                                 f->classes[i].n, "strict");
        if (!s || PySet_Add(classes, s) < 0) {
            Py_XDECREF(s);
            goto fail;
        }
        Py_DECREF(s);
    }
    for (int i = 0; i < f->n_models; i++) {
        PyObject *s =
            PyUnicode_DecodeUTF8((const char *)f->models[i].s, f->models[i].n, "strict");
        PyObject *count = s ? PyLong_FromLong(f->models[i].count) : NULL;
        if (!count || PyDict_SetItem(models, s, count) < 0) {
            Py_XDECREF(s);
            Py_XDECREF(count);
            goto fail;
        }
        Py_DECREF(s);
        Py_DECREF(count);
    }
    for (int i = 0; i < f->n_units; i++) {
        int u = f->unit_order[i];
        if (f->units[u].type == J_NULL) continue;
        PyObject *num = number_object(&f->units[u]);
        if (!num || PyDict_SetItem(units, unit_strs[u], num) < 0) {
            Py_XDECREF(num);
            goto fail;
        }
        Py_DECREF(num);
    }
    if (f->has_busbw) {
        PyObject *ranks = PyLong_FromDouble(f->ranks);
        PyObject *size = ranks ? PyLong_FromDouble(f->size) : NULL;
        key = size ? PyTuple_Pack(3, str_empty, ranks, size) : NULL;
        Py_XDECREF(ranks);
        Py_XDECREF(size);
        if (!key) goto fail;
    }
    PyObject *energy = f->has_energy ? PyFloat_FromDouble(f->energy) : Py_NewRef(Py_None);
    PyObject *busbw = f->has_busbw ? PyFloat_FromDouble(f->busbw) : Py_NewRef(Py_None);
    PyObject *result = Py_BuildValue(
        "(nNNNddlNNONNN)", f->node_count, classes, models, energy, f->measured, f->estimated,
        (long)f->rec_gpus, busbw, key ? key : Py_NewRef(Py_None),
        f->health == 2 ? str_failed : (f->health == 1 ? str_ok : Py_None), units,
        f->workload >= 0 ? Py_NewRef(workload_strs[f->workload]) : Py_NewRef(Py_None),
        f->source ? Py_NewRef(source_strs[f->source]) : Py_NewRef(Py_None));
    return result;
fail:
    Py_XDECREF(classes);
    Py_XDECREF(models);
    Py_XDECREF(units);
    Py_XDECREF(key);
    return NULL;
}

static Figs figs; /* large (node names): static, not on the stack; the GIL guards it */

static int ensure_buffers(void) {
    if (!in_buf) in_buf = PyMem_RawMalloc(ONE_SHOT_BYTES);
    if (!out_buf) out_buf = PyMem_RawMalloc(MAX_JSON_BYTES);
    if (!in_buf || !out_buf) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *token_bytes(PyObject *token, Py_ssize_t *out_len) {
    if (!PyUnicode_Check(token)) {
        PyErr_SetString(PyExc_TypeError, "token must be a str");
        return NULL;
    }
    if (ensure_buffers() < 0) return NULL;
    *out_len = -1;
    if (!PyUnicode_IS_ASCII(token)) return Py_None; /* binascii's error: Python's words */
    Py_ssize_t len = PyUnicode_GET_LENGTH(token);
    *out_len = token_json((const char *)PyUnicode_DATA(token), len);
    return Py_None;
}

PyDoc_STRVAR(figures_doc,
             "figures(token, /)\n--\n\n"
             "facts._dict_figures of the token's record as a tuple, or None: decline\n"
             "(facts.py then decodes it as without this module).");

static PyObject *fastrow_figures(PyObject *self, PyObject *token) {
    Py_ssize_t n;
    if (!token_bytes(token, &n)) return NULL;
    if (n < 0 || read_figures(n, &figs) < 0) Py_RETURN_NONE;
    PyObject *result = figures_tuple(&figs);
    if (!result && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

PyDoc_STRVAR(payload_doc,
             "payload(token, /)\n--\n\n"
             "The token's record JSON as bytes, or None where figures() declines before\n"
             "reading the JSON (tests compare it with record.token_payload).");

static PyObject *fastrow_payload(PyObject *self, PyObject *token) {
    Py_ssize_t n;
    if (!token_bytes(token, &n)) return NULL;
    if (n < 0) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)out_buf, n);
}

/* ------------------------------------------------------------------ a whole row */

/* What row() builds, from facts.py (setup()): its classes, a function and its words. */
static PyObject *JobFacts, *Outcome, *tres_gpus, *KIND_OK, *KIND_NONE, *NO_RECORD;
static PyObject *str_mixed, *str_cpu, *str_question, *str_completed;

PyDoc_STRVAR(setup_doc,
             "setup(job_facts, outcome, tres_gpus, ok, none, no_record, /)\n--\n\n"
             "The classes, function and words of facts.py that row() uses.");

static PyObject *fastrow_setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "setup() takes 6 arguments");
        return NULL;
    }
    PyObject **slots[6] = {&JobFacts, &Outcome, &tres_gpus, &KIND_OK, &KIND_NONE, &NO_RECORD};
    for (int i = 0; i < 6; i++) Py_XSETREF(*slots[i], Py_NewRef(args[i]));
    Py_RETURN_NONE;
}

/* An ASCII decimal field as sacct writes it: its value, exact (at most 15 digits).
 * 1 a value, 0 empty, -1 anything else (the caller declines). */
static int decimal_field(PyObject *text, double *out) {
    if (!PyUnicode_IS_ASCII(text)) return -1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const unsigned char *s = PyUnicode_DATA(text);
    if (n == 0) return 0;
    if (n > EXACT_INT_DIGITS) return -1;
    double d = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        d = d * 10 + (s[i] - '0');
    }
    *out = d;
    return 1;
}

/* The model of the most GPUs; on a tie the first by name (code points: UTF-8 bytes). */
static int pick_model(const Figs *f) {
    int best = 0;
    for (int i = 1; i < f->n_models; i++) {
        const Name *a = &f->models[i], *b = &f->models[best];
        if (a->count < b->count) continue;
        if (a->count > b->count) {
            best = i;
            continue;
        }
        Py_ssize_t n = a->n < b->n ? a->n : b->n;
        int cmp = memcmp(a->s, b->s, (size_t)n);
        if (cmp < 0 || (cmp == 0 && a->n < b->n)) best = i;
    }
    return best;
}

static PyObject *utf8(const Name *name) {
    return PyUnicode_DecodeUTF8((const char *)name->s, name->n, "strict");
}

enum { A_JOB, A_PART, A_USER, A_ACCOUNT, A_NNODES, A_STATE, A_SUBMIT, A_START, A_END,
       A_ELAPSED, A_TRES, A_COMMENT, A_KEEP, A_COUNT };

PyDoc_STRVAR(row_doc,
             "row(job_id, partition, user, account, nnodes, state, submit, start, end,\n"
             "    elapsed, alloc_tres, admin_comment, keep, /)\n--\n\n"
             "facts.row_facts of the usual row (epoch times, a token or nothing in\n"
             "AdminComment): its Outcome; False where `keep` drops the job; None: decline\n"
             "(row_facts decides).");

static PyObject *fastrow_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != A_COUNT) {
        PyErr_SetString(PyExc_TypeError, "row() takes 13 arguments");
        return NULL;
    }
    if (!JobFacts) {
        PyErr_SetString(PyExc_RuntimeError, "_fastrow.setup() was not called");
        return NULL;
    }
    for (int i = 0; i < A_KEEP; i++)
        if (!PyUnicode_CheckExact(args[i])) Py_RETURN_NONE;
    if (ensure_buffers() < 0) return NULL;
    /* a step (job id with a dot): row_facts counts it */
    if (PyUnicode_FindChar(args[A_JOB], '.', 0, PY_SSIZE_T_MAX, 1) != -1) Py_RETURN_NONE;
    double submit, start, end, elapsed = 0, nnodes = 0;
    if (decimal_field(args[A_SUBMIT], &submit) != 1 || decimal_field(args[A_START], &start) != 1 ||
        decimal_field(args[A_END], &end) != 1)
        Py_RETURN_NONE;
    if (decimal_field(args[A_ELAPSED], &elapsed) < 0 || decimal_field(args[A_NNODES], &nnodes) < 0)
        Py_RETURN_NONE;
    PyObject *partition = PyUnicode_GET_LENGTH(args[A_PART]) ? args[A_PART] : str_question;
    PyObject *submit_o = NULL, *start_o = NULL, *end_o = NULL;
    PyObject *result = NULL;
    PyObject *keep = args[A_KEEP];
    submit_o = PyFloat_FromDouble(submit);
    start_o = PyFloat_FromDouble(start);
    end_o = PyFloat_FromDouble(end);
    if (!submit_o || !start_o || !end_o) goto done;
    if (keep != Py_None) {
        PyObject *kargs[6] = {partition, args[A_USER], args[A_ACCOUNT], submit_o, start_o, end_o};
        PyObject *kept = PyObject_Vectorcall(keep, kargs, 6, NULL);
        if (!kept) goto done;
        int truth = PyObject_IsTrue(kept);
        Py_DECREF(kept);
        if (truth < 0) goto done;
        if (!truth) {
            result = Py_NewRef(Py_False);
            goto done;
        }
    }
    PyObject *comment = args[A_COMMENT];
    int has_record = PyUnicode_GET_LENGTH(comment) > 0;
    if (has_record) {
        /* our token alone (row_facts' usual case): anything else, row_facts splits */
        if (!PyUnicode_IS_ASCII(comment)) goto decline;
        Py_ssize_t n =
            token_json((const char *)PyUnicode_DATA(comment), PyUnicode_GET_LENGTH(comment));
        if (n < 0 || read_figures(n, &figs) < 0) goto decline;
        for (int i = 0; i < figs.n_units; i++) {
            const Val *v = &figs.units[figs.unit_order[i]];
            if (v->type == J_INT && v->n - (v->s[0] == '-') > EXACT_INT_DIGITS) goto decline;
        }
    } else {
        memset(&figs, 0, sizeof figs);
        figs.workload = -1;
    }
    Figs *f = &figs;
    if (nnodes == 0) nnodes = f->node_count > 1 ? (double)f->node_count : 1;
    double wait = start - submit;

    PyObject *platform, *model, *gpus = NULL, *units = NULL, *key = NULL, *facts = NULL;
    PyObject *nnodes_o = NULL, *elapsed_o = NULL, *wait_o = NULL, *energy_o = NULL;
    PyObject *measured_o = NULL, *estimated_o = NULL, *busbw_o = NULL;
    int ok = 0;
    if (!has_record)
        platform = Py_NewRef(NO_RECORD);
    else if (f->n_classes == 1)
        platform = utf8(&f->classes[0]);
    else
        platform = Py_NewRef(f->n_classes ? str_mixed : str_unknown);
    model = f->n_models ? utf8(&f->models[pick_model(f)]) : Py_NewRef(str_cpu);
    if (!platform || !model) goto build_done;
    gpus = PyObject_CallOneArg(tres_gpus, args[A_TRES]);
    if (!gpus) goto build_done;
    if (gpus == Py_None) {
        Py_SETREF(gpus, PyLong_FromLong(f->rec_gpus));
        if (!gpus) goto build_done;
    } else if (!PyLong_CheckExact(gpus)) {
        goto build_done; /* not what tres_gpus returns: decline below */
    }
    int overflow;
    long gpu_count = PyLong_AsLongAndOverflow(gpus, &overflow);
    if (overflow || (gpu_count == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        goto build_done;
    }
    if (f->has_busbw) {
        PyObject *ranks = PyLong_FromDouble(f->ranks);
        PyObject *size = ranks ? PyLong_FromDouble(f->size) : NULL;
        key = size ? PyTuple_Pack(3, model, ranks, size) : NULL;
        Py_XDECREF(ranks);
        Py_XDECREF(size);
        if (!key) goto build_done;
    }
    units = PyDict_New();
    if (!units) goto build_done;
    int has_requests = 0;
    for (int i = 0; i < f->n_units; i++) {
        int u = f->unit_order[i];
        double num;
        if (f->units[u].type == J_NULL || num_value(&f->units[u], &num) != 1) continue;
        if (!(num > 0 && num < Py_HUGE_VAL)) continue;
        PyObject *value = PyFloat_FromDouble(num);
        if (!value || PyDict_SetItem(units, unit_strs[u], value) < 0) {
            Py_XDECREF(value);
            goto build_done;
        }
        Py_DECREF(value);
        has_requests |= u == 3;
    }
    int workload = f->workload, guessed = workload < 0;
    if (guessed) /* facts.guess_workload */
        workload = has_requests ? 2 : gpu_count == 0 ? 3 : (nnodes > 1 || gpu_count >= 8) ? 0 : 1;
    nnodes_o = PyLong_FromDouble(nnodes);
    elapsed_o = PyFloat_FromDouble(elapsed);
    wait_o = wait >= 0 ? PyFloat_FromDouble(wait) : Py_NewRef(Py_None);
    energy_o = f->has_energy ? PyFloat_FromDouble(f->energy) : Py_NewRef(Py_None);
    measured_o = PyFloat_FromDouble(f->measured);
    estimated_o = PyFloat_FromDouble(f->estimated);
    busbw_o = f->has_busbw ? PyFloat_FromDouble(f->busbw) : Py_NewRef(Py_None);
    if (!nnodes_o || !elapsed_o || !wait_o || !energy_o || !measured_o || !estimated_o ||
        !busbw_o)
        goto build_done;
    int completed = PyUnicode_Tailmatch(args[A_STATE], str_completed, 0, PY_SSIZE_T_MAX, -1);
    if (completed < 0) goto build_done;
    /* JobFacts' field order (facts.py) */
    PyObject *fargs[24] = {
        args[A_JOB], partition, platform, workload_strs[workload],
        guessed ? Py_True : Py_False, model, nnodes_o, gpus, elapsed_o, wait_o,
        completed ? Py_True : Py_False, energy_o, measured_o, estimated_o, busbw_o,
        key ? key : Py_None, f->health == 2 ? str_failed : (f->health == 1 ? str_ok : Py_None),
        units, args[A_USER], args[A_ACCOUNT], submit_o, start_o, end_o,
        f->source ? source_strs[f->source] : Py_None,
    };
    facts = PyObject_Vectorcall(JobFacts, fargs, 24, NULL);
    if (!facts) goto build_done;
    PyObject *oargs[4] = {has_record ? KIND_OK : KIND_NONE, facts, str_empty, Py_False};
    result = PyObject_Vectorcall(Outcome, oargs, 4, NULL);
    ok = 1;
build_done:
    Py_XDECREF(platform);
    Py_XDECREF(model);
    Py_XDECREF(gpus);
    Py_XDECREF(units);
    Py_XDECREF(key);
    Py_XDECREF(facts);
    Py_XDECREF(nnodes_o);
    Py_XDECREF(elapsed_o);
    Py_XDECREF(wait_o);
    Py_XDECREF(energy_o);
    Py_XDECREF(measured_o);
    Py_XDECREF(estimated_o);
    Py_XDECREF(busbw_o);
    if (!ok && !PyErr_Occurred()) goto decline;
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(submit_o);
    Py_XDECREF(start_o);
    Py_XDECREF(end_o);
    return result;
}

static PyMethodDef methods[] = {
    {"figures", fastrow_figures, METH_O, figures_doc},
    {"payload", fastrow_payload, METH_O, payload_doc},
    {"setup", (PyCFunction)(void (*)(void))fastrow_setup, METH_FASTCALL, setup_doc},
    {"row", (PyCFunction)(void (*)(void))fastrow_row, METH_FASTCALL, row_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastrow",
    "The report's per-record decode in C (see facts.py and docs/report.md).", -1, methods,
    NULL, NULL, NULL, NULL,
};

static PyObject *intern(const char *s) {
    PyObject *o = PyUnicode_InternFromString(s);
    return o;
}

PyMODINIT_FUNC PyInit__fastrow(void) {
    init_hex();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    str_unknown = intern("unknown");
    str_ok = intern("ok");
    str_failed = intern("failed");
    str_empty = intern("");
    str_mixed = intern("mixed");
    str_cpu = intern("cpu");
    str_question = intern("?");
    str_completed = intern("COMPLETED");
    for (int i = 0; i < 4; i++) {
        workload_strs[i] = intern(WORKLOAD_NAMES[i]);
        unit_strs[i] = intern(UNIT_NAMES[i]);
        source_strs[i] = i ? intern(SOURCE_NAMES[i]) : NULL;
    }
    if (!str_unknown || !str_ok || !str_failed || !str_empty ||
        PyModule_AddStringConstant(m, "INFLATER", FASTROW_INFLATER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
