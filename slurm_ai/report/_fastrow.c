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
#include <errno.h>
#include <string.h>
#include <unistd.h>

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

/* Bytes a string's plain run stops at: '"', '\\', control characters, non-ASCII. Most
 * of a record is strings the report skips: this table keeps their scan at a load and a
 * test a byte. */
static unsigned char STR_STOP[256];

static void init_str_stop(void) {
    for (int c = 0; c < 256; c++) STR_STOP[c] = c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
}

/* A string at c->p (the opening quote); its content's span. 0, or -1: decline. */
static int read_string(Cur *c, Val *v) {
    if (c->p >= c->end || *c->p != '"') return -1;
    const unsigned char *p = ++c->p, *end = c->end;
    int escaped = 0;
    while (p < end) {
        while (p < end && !STR_STOP[*p]) p++;
        if (p >= end) break;
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

static inline int key_is(const Val *key, const char *name) {
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

/* A float literal's double when one IEEE operation gives it exactly (Clinger's fast
 * path): at most 15 significant digits (an integer M < 2^53, exact) and a power of ten
 * 10^k with |k| <= 22 (exact), so M * 10^k or M / 10^k is the correctly rounded value,
 * the one float() gives. 0: not such a literal (Python's own strtod decides). */
static int fast_float(const Val *v, double *out) {
    static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const unsigned char *p = v->s, *end = v->s + v->n;
    int neg = p < end && *p == '-';
    p += neg;
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (m || *p != '0') digits++;
        m = m * 10 + (uint64_t)(*p - '0');
        if (digits > 15) return 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (m || *p != '0') digits++;
            m = m * 10 + (uint64_t)(*p - '0');
            exp10--;
            if (digits > 15) return 0;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = p < end && *p == '-';
        if (p < end && (*p == '+' || *p == '-')) p++;
        int e = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (e > 1000) return 0;
            e = e * 10 + (*p - '0');
        }
        exp10 += eneg ? -e : e;
    }
    if (p != end || exp10 < -22 || exp10 > 22) return 0;
    double d = (double)m; /* m < 10^15 < 2^53: exact */
    d = exp10 < 0 ? d / POW10[-exp10] : d * POW10[exp10];
    *out = neg ? -d : d;
    return 1;
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
        /* an int has no negative zero: "-0" is 0, whose float is 0.0, not -0.0 */
        *out = v->s[0] == '-' && d != 0 ? -d : d;
        return 1;
    }
    if (v->type == J_FLOAT) {
        if (fast_float(v, out)) return 1;
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
 * 1 a value, 0 empty, -1 anything else (the caller declines). s NULL: not ASCII. */
static int decimal_span(const unsigned char *s, Py_ssize_t n, double *out) {
    if (!s) return -1;
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

/* Small caches of str objects by their UTF-8 bytes (partitions, classes, models): a dump
 * has few of each, and a str made once keeps its hash for the cell key's lookups. */
#define CACHE_SLOTS 16
#define CACHE_BYTES 64
typedef struct {
    unsigned char bytes[CACHE_SLOTS][CACHE_BYTES];
    Py_ssize_t n[CACHE_SLOTS];
    PyObject *obj[CACHE_SLOTS];
    int next;
} StrCache;

static StrCache partition_cache, class_cache, model_cache;

/* The str of UTF-8 bytes s[0:n] (validated), new reference. */
static PyObject *cached_str(StrCache *c, const unsigned char *s, Py_ssize_t n) {
    if (n <= CACHE_BYTES) {
        for (int i = 0; i < CACHE_SLOTS; i++)
            if (c->obj[i] && c->n[i] == n && memcmp(c->bytes[i], s, (size_t)n) == 0)
                return Py_NewRef(c->obj[i]);
    }
    PyObject *o = PyUnicode_DecodeUTF8((const char *)s, n, "strict");
    if (o && n <= CACHE_BYTES) {
        int i = c->next;
        c->next = (i + 1) % CACHE_SLOTS;
        Py_XSETREF(c->obj[i], Py_NewRef(o));
        memcpy(c->bytes[i], s, (size_t)n);
        c->n[i] = n;
    }
    return o;
}

/* sacct.tres_gpus (pure, lru-cached there) by AllocTRES bytes: skips the call. */
#define TRES_BYTES 256
static struct {
    unsigned char bytes[CACHE_SLOTS][TRES_BYTES];
    Py_ssize_t n[CACHE_SLOTS];
    PyObject *result[CACHE_SLOTS];
    int next;
} tres_cache;

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

enum { A_JOB, A_PART, A_USER, A_ACCOUNT, A_NNODES, A_STATE, A_SUBMIT, A_START, A_END,
       A_ELAPSED, A_TRES, A_COMMENT, A_KEEP, A_COUNT };

/* One job's facts (facts.JobFacts' fields), as row() and Tally read them. */
typedef struct {
    int ok; /* kind: OK (a record), else NONE */
    PyObject *partition, *platform, *model, *gpus, *workload; /* all but workload: owned */
    int guessed, completed, has_wait, has_energy, has_busbw, health, source;
    int has_start, has_end;
    double nnodes, gpu_count, elapsed, node_s, gpu_s, wait, energy, measured, estimated;
    double busbw, ranks, size, submit, start, end;
    PyObject *ranks_o, *size_o; /* Tally.add: the busbw_key's ints (borrowed), else NULL */
    int n_units, unit[4];
    double unit_value[4];
} Job;

static void job_clear(Job *j) {
    Py_CLEAR(j->partition);
    Py_CLEAR(j->platform);
    Py_CLEAR(j->model);
    Py_CLEAR(j->gpus);
}

/* A row's 12 sacct fields (A_JOB..A_COMMENT): ASCII spans (s NULL: not ASCII) and,
 * where the caller has them, the str objects; made on demand otherwise. */
typedef struct {
    const unsigned char *s[A_KEEP];
    Py_ssize_t n[A_KEEP];
    PyObject *obj[A_KEEP]; /* borrowed, or one of made[] */
    PyObject *made[A_KEEP];
} Fields;

static void fields_of_args(Fields *fl, PyObject *const *args) {
    memset(fl, 0, sizeof *fl);
    for (int i = 0; i < A_KEEP; i++) {
        fl->obj[i] = args[i];
        if (PyUnicode_IS_ASCII(args[i])) {
            fl->s[i] = PyUnicode_DATA(args[i]);
            fl->n[i] = PyUnicode_GET_LENGTH(args[i]);
        }
    }
}

static void fields_clear(Fields *fl) {
    for (int i = 0; i < A_KEEP; i++) Py_CLEAR(fl->made[i]);
}

/* Field i as a str (borrowed: the Fields own it). */
static PyObject *field_obj(Fields *fl, int i) {
    if (!fl->obj[i])
        fl->obj[i] = fl->made[i] = PyUnicode_DecodeASCII((const char *)fl->s[i], fl->n[i], NULL);
    return fl->obj[i];
}

static int field_is_step(Fields *fl) {
    if (fl->s[A_JOB]) return memchr(fl->s[A_JOB], '.', (size_t)fl->n[A_JOB]) != NULL;
    return PyUnicode_FindChar(fl->obj[A_JOB], '.', 0, PY_SSIZE_T_MAX, 1) != -1;
}

/* tres_gpus(AllocTRES): a new reference, NULL with an exception. */
static PyObject *gpus_of(Fields *fl) {
    const unsigned char *s = fl->s[A_TRES];
    Py_ssize_t n = fl->n[A_TRES];
    int cacheable = s && n <= TRES_BYTES;
    if (cacheable)
        for (int i = 0; i < CACHE_SLOTS; i++)
            if (tres_cache.result[i] && tres_cache.n[i] == n &&
                memcmp(tres_cache.bytes[i], s, (size_t)n) == 0)
                return Py_NewRef(tres_cache.result[i]);
    PyObject *text = field_obj(fl, A_TRES);
    PyObject *r = text ? PyObject_CallOneArg(tres_gpus, text) : NULL;
    if (r && cacheable) {
        int i = tres_cache.next;
        tres_cache.next = (i + 1) % CACHE_SLOTS;
        Py_XSETREF(tres_cache.result[i], Py_NewRef(r));
        memcpy(tres_cache.bytes[i], s, (size_t)n);
        tres_cache.n[i] = n;
    }
    return r;
}

/* facts.row_facts of the usual row into *j: 1 done, 0 the filter dropped it,
 * -1 decline (no exception), -2 error (exception set). */
static int job_of_row(Fields *fl, PyObject *keep, Job *j) {
    memset(j, 0, sizeof *j);
    if (ensure_buffers() < 0) return -2;
    /* a step (job id with a dot): row_facts counts it */
    if (field_is_step(fl)) return -1;
    double elapsed = 0, nnodes = 0;
    if (decimal_span(fl->s[A_SUBMIT], fl->n[A_SUBMIT], &j->submit) != 1 ||
        decimal_span(fl->s[A_START], fl->n[A_START], &j->start) != 1 ||
        decimal_span(fl->s[A_END], fl->n[A_END], &j->end) != 1)
        return -1;
    if (decimal_span(fl->s[A_ELAPSED], fl->n[A_ELAPSED], &elapsed) < 0 ||
        decimal_span(fl->s[A_NNODES], fl->n[A_NNODES], &nnodes) < 0)
        return -1;
    if (fl->s[A_PART] && fl->n[A_PART] == 0)
        j->partition = Py_NewRef(str_question); /* row_facts: partition or "?" */
    else if (fl->s[A_PART])
        j->partition = cached_str(&partition_cache, fl->s[A_PART], fl->n[A_PART]);
    else
        j->partition = Py_NewRef(fl->obj[A_PART]);
    if (!j->partition) return -2;
    if (keep != Py_None) {
        PyObject *user = field_obj(fl, A_USER), *account = field_obj(fl, A_ACCOUNT);
        if (!user || !account) return -2;
        PyObject *times[3] = {PyFloat_FromDouble(j->submit), PyFloat_FromDouble(j->start),
                              PyFloat_FromDouble(j->end)};
        int truth = -1;
        if (times[0] && times[1] && times[2]) {
            PyObject *kargs[6] = {j->partition, user, account, times[0], times[1], times[2]};
            PyObject *kept = PyObject_Vectorcall(keep, kargs, 6, NULL);
            truth = kept ? PyObject_IsTrue(kept) : -1;
            Py_XDECREF(kept);
        }
        for (int i = 0; i < 3; i++) Py_XDECREF(times[i]);
        if (truth < 0) return -2;
        if (!truth) return 0;
    }
    Figs *f = &figs;
    /* our token alone (row_facts' usual case) or nothing: anything else, row_facts splits */
    if (!fl->s[A_COMMENT]) return -1;
    j->ok = fl->n[A_COMMENT] > 0;
    if (j->ok) {
        Py_ssize_t n = token_json((const char *)fl->s[A_COMMENT], fl->n[A_COMMENT]);
        if (n < 0 || read_figures(n, f) < 0) return -1;
    } else {
        memset(f, 0, sizeof *f);
        f->workload = -1;
    }
    j->nnodes = nnodes ? nnodes : (f->node_count > 1 ? (double)f->node_count : 1);
    j->elapsed = elapsed;
    j->wait = j->start - j->submit;
    j->has_wait = j->wait >= 0;
    if (!j->ok) {
        j->platform = Py_NewRef(NO_RECORD);
    } else if (f->n_classes == 1) {
        const Name *c = &f->classes[0];
        j->platform = cached_str(&class_cache, c->s, c->n);
    } else {
        j->platform = Py_NewRef(f->n_classes ? str_mixed : str_unknown);
    }
    if (f->n_models) {
        const Name *m = &f->models[pick_model(f)];
        j->model = cached_str(&model_cache, m->s, m->n);
    } else {
        j->model = Py_NewRef(str_cpu);
    }
    if (!j->platform || !j->model) return -2;
    j->has_start = j->has_end = 1;
    j->has_busbw = f->has_busbw;
    j->busbw = f->busbw;
    j->ranks = f->ranks;
    j->size = f->size;
    j->has_energy = f->has_energy;
    j->energy = f->energy;
    j->measured = f->measured;
    j->estimated = f->estimated;
    j->health = f->health;
    j->source = f->source;
    int has_requests = 0;
    for (int i = 0; i < f->n_units; i++) {
        int u = f->unit_order[i];
        double num;
        if (f->units[u].type == J_NULL) continue;
        int r = num_value(&f->units[u], &num);
        if (r < 0) return -1; /* an int too long to be exact */
        if (r == 0 || !(num > 0 && num < Py_HUGE_VAL)) continue;
        j->unit[j->n_units] = u;
        j->unit_value[j->n_units++] = num;
        has_requests |= u == 3;
    }
    int workload = f->workload;
    long rec_gpus = f->rec_gpus;
    /* figs holds nothing needed past here: tres_gpus (Python) may run anything */
    j->gpus = gpus_of(fl);
    if (!j->gpus) return -2;
    if (j->gpus == Py_None) {
        Py_SETREF(j->gpus, PyLong_FromLong(rec_gpus));
        if (!j->gpus) return -2;
    } else if (!PyLong_CheckExact(j->gpus)) {
        return -1;
    }
    int overflow;
    long long gpus = PyLong_AsLongLongAndOverflow(j->gpus, &overflow);
    if (overflow || gpus < 0 || gpus > (1LL << 53)) return -1; /* not exact as a double */
    if (gpus == -1 && PyErr_Occurred()) return -2;
    j->gpu_count = (double)gpus;
    /* Cell.add's f.nnodes * elapsed and f.gpus * elapsed: small ints, exact as doubles */
    j->node_s = j->nnodes * elapsed;
    j->gpu_s = j->gpu_count * elapsed;
    j->guessed = workload < 0;
    if (j->guessed) /* facts.guess_workload */
        workload = has_requests        ? 2
                   : gpus == 0         ? 3
                   : (j->nnodes > 1 || gpus >= 8) ? 0
                                       : 1;
    j->workload = workload_strs[workload];
    if (fl->s[A_STATE]) {
        j->completed = fl->n[A_STATE] >= 9 && memcmp(fl->s[A_STATE], "COMPLETED", 9) == 0;
    } else {
        int completed =
            PyUnicode_Tailmatch(fl->obj[A_STATE], str_completed, 0, PY_SSIZE_T_MAX, -1);
        if (completed < 0) return -2;
        j->completed = completed;
    }
    return 1;
}

static PyObject *float_or_none(int has, double value) {
    return has ? PyFloat_FromDouble(value) : Py_NewRef(Py_None);
}

/* facts.JobFacts and Outcome of *j. */
static PyObject *job_outcome(PyObject *const *args, Job *j) {
    PyObject *obj[12] = {NULL};
    PyObject *result = NULL, *facts = NULL;
    obj[0] = PyLong_FromDouble(j->nnodes);
    obj[1] = PyFloat_FromDouble(j->elapsed);
    obj[2] = float_or_none(j->has_wait, j->wait);
    obj[3] = float_or_none(j->has_energy, j->energy);
    obj[4] = PyFloat_FromDouble(j->measured);
    obj[5] = PyFloat_FromDouble(j->estimated);
    obj[6] = float_or_none(j->has_busbw, j->busbw);
    obj[7] = PyFloat_FromDouble(j->submit);
    obj[8] = PyFloat_FromDouble(j->start);
    obj[9] = PyFloat_FromDouble(j->end);
    obj[10] = PyDict_New();
    if (j->has_busbw) {
        PyObject *ranks = PyLong_FromDouble(j->ranks);
        PyObject *size = ranks ? PyLong_FromDouble(j->size) : NULL;
        obj[11] = size ? PyTuple_Pack(3, j->model, ranks, size) : NULL;
        Py_XDECREF(ranks);
        Py_XDECREF(size);
    } else {
        obj[11] = Py_NewRef(Py_None);
    }
    for (int i = 0; i < 12; i++)
        if (!obj[i]) goto done;
    for (int i = 0; i < j->n_units; i++) {
        PyObject *value = PyFloat_FromDouble(j->unit_value[i]);
        if (!value || PyDict_SetItem(obj[10], unit_strs[j->unit[i]], value) < 0) {
            Py_XDECREF(value);
            goto done;
        }
        Py_DECREF(value);
    }
    /* JobFacts' field order (facts.py) */
    PyObject *fargs[24] = {
        args[A_JOB], j->partition, j->platform, j->workload, j->guessed ? Py_True : Py_False,
        j->model, obj[0], j->gpus, obj[1], obj[2], j->completed ? Py_True : Py_False, obj[3],
        obj[4], obj[5], obj[6], obj[11],
        j->health == 2 ? str_failed : (j->health == 1 ? str_ok : Py_None), obj[10],
        args[A_USER], args[A_ACCOUNT], obj[7], obj[8], obj[9],
        j->source ? source_strs[j->source] : Py_None,
    };
    facts = PyObject_Vectorcall(JobFacts, fargs, 24, NULL);
    if (!facts) goto done;
    PyObject *oargs[4] = {j->ok ? KIND_OK : KIND_NONE, facts, str_empty, Py_False};
    result = PyObject_Vectorcall(Outcome, oargs, 4, NULL);
done:
    Py_XDECREF(facts);
    for (int i = 0; i < 12; i++) Py_XDECREF(obj[i]);
    return result;
}

static int ready(Py_ssize_t nargs, Py_ssize_t want) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "takes %zd arguments", want);
        return 0;
    }
    if (!JobFacts) {
        PyErr_SetString(PyExc_RuntimeError, "_fastrow.setup() was not called");
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(row_doc,
             "row(job_id, partition, user, account, nnodes, state, submit, start, end,\n"
             "    elapsed, alloc_tres, admin_comment, keep, /)\n--\n\n"
             "facts.row_facts of the usual row (epoch times, a token or nothing in\n"
             "AdminComment): its Outcome; False where `keep` drops the job; None: decline\n"
             "(row_facts decides).");

static PyObject *fastrow_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(nargs, A_COUNT)) return NULL;
    for (int i = 0; i < A_KEEP; i++)
        if (!PyUnicode_CheckExact(args[i])) Py_RETURN_NONE;
    Job j;
    Fields fl;
    fields_of_args(&fl, args);
    int r = job_of_row(&fl, args[A_KEEP], &j);
    fields_clear(&fl);
    PyObject *result = r == 1   ? job_outcome(args, &j)
                       : r == 0 ? Py_NewRef(Py_False)
                       : r == -1 ? Py_NewRef(Py_None)
                                 : NULL;
    job_clear(&j);
    return result;
}

/* ------------------------------------------------------------------ Tally */

/* aggregate.Cell, Moments and Series kept in C, added to exactly as their Python add()
 * methods do (the same float additions, in the same order: the same bits), and handed to
 * Python as plain values at the end (Tally.export, see report/tally.py). */

typedef struct {
    double *v;
    Py_ssize_t n, cap;
} Vec;

static int vec_add(Vec *vec, double value) {
    if (vec->n == vec->cap) {
        Py_ssize_t cap = vec->cap ? vec->cap * 2 : 64;
        double *v = PyMem_RawRealloc(vec->v, (size_t)cap * sizeof(double));
        if (!v) {
            PyErr_NoMemory();
            return -1;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = value;
    return 0;
}

typedef struct {
    long long jobs;
    double s[14]; /* u e n g uu ue un ug ee en eg nn ng gg: Moments' field order */
} Mom;

static void mom_add(Mom *m, double u, double e, double n, double g, int intervals) {
    m->jobs += 1;
    m->s[0] += u;
    m->s[1] += e;
    m->s[2] += n;
    m->s[3] += g;
    if (!intervals) return; /* Moments.add_sums */
    m->s[4] += u * u;
    m->s[5] += u * e;
    m->s[6] += u * n;
    m->s[7] += u * g;
    m->s[8] += e * e;
    m->s[9] += e * n;
    m->s[10] += e * g;
    m->s[11] += n * n;
    m->s[12] += n * g;
    m->s[13] += g * g;
}

typedef struct {
    long long jobs, guessed, energy_jobs, checked, failed, fresh, cached, unchecked;
    double node_s, gpu_s, energy_j, energy_gpu_s, measured_j, estimated_j;
    Vec elapsed, wait, busbw;
    Mom per_job, units[4];
    int unit_order[4], n_units; /* units in the order a job first brought them */
} CellAcc;

#define MAX_COLUMNS 64

typedef struct {
    PyObject_HEAD
    int intervals;
    int ncols;               /* text(): the layout's columns, 0: text() declines */
    unsigned char delimiter; /* text(): the layout's delimiter (one ASCII character) */
    int columns[A_KEEP];     /* text(): the column of each row() field, -1: missing */
    long long rows, no_record;
    int has_first, has_last;
    double first_start, last_end;
    PyObject *cell_index; /* (partition, platform, workload, model) -> index */
    CellAcc *cells;
    Py_ssize_t n_cells, cap_cells;
    PyObject *tax_index; /* (model, ranks, size_bytes, platform) -> index */
    Vec *tax;
    Py_ssize_t n_tax, cap_tax;
} Tally;

static void tally_dealloc(Tally *t) {
    for (Py_ssize_t i = 0; i < t->n_cells; i++) {
        PyMem_RawFree(t->cells[i].elapsed.v);
        PyMem_RawFree(t->cells[i].wait.v);
        PyMem_RawFree(t->cells[i].busbw.v);
    }
    for (Py_ssize_t i = 0; i < t->n_tax; i++) PyMem_RawFree(t->tax[i].v);
    PyMem_RawFree(t->cells);
    PyMem_RawFree(t->tax);
    Py_XDECREF(t->cell_index);
    Py_XDECREF(t->tax_index);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *tally_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    int intervals = 1;
    PyObject *delimiter = NULL, *columns = NULL;
    Py_ssize_t ncols = 0;
    static char *names[] = {"intervals", "delimiter", "columns", "ncols", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "p|UO!n", names, &intervals, &delimiter,
                                     &PyTuple_Type, &columns, &ncols))
        return NULL;
    Tally *t = (Tally *)type->tp_alloc(type, 0);
    if (!t) return NULL;
    t->intervals = intervals;
    /* text() only for a one-character ASCII delimiter and a layout it can map */
    if (delimiter && columns && PyUnicode_GET_LENGTH(delimiter) == 1 &&
        PyUnicode_IS_ASCII(delimiter) && PyTuple_GET_SIZE(columns) == A_KEEP && ncols > 0 &&
        ncols <= MAX_COLUMNS) {
        t->delimiter = ((const unsigned char *)PyUnicode_DATA(delimiter))[0];
        t->ncols = (int)ncols;
        for (int i = 0; i < A_KEEP; i++) {
            Py_ssize_t c = PyLong_AsSsize_t(PyTuple_GET_ITEM(columns, i));
            if (c == -1 && PyErr_Occurred()) {
                Py_DECREF(t);
                return NULL;
            }
            t->columns[i] = c >= 0 && c < ncols ? (int)c : -1;
        }
    }
    t->cell_index = PyDict_New();
    t->tax_index = PyDict_New();
    if (!t->cell_index || !t->tax_index) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

/* The index of key in index (a dict), appending a zeroed slot to *items when new. */
static Py_ssize_t slot(PyObject *index, PyObject *key, void **items, Py_ssize_t *n,
                       Py_ssize_t *cap, size_t size) {
    PyObject *found = PyDict_GetItemWithError(index, key);
    if (found) return PyLong_AsSsize_t(found);
    if (PyErr_Occurred()) return -1;
    if (*n == *cap) {
        Py_ssize_t new_cap = *cap ? *cap * 2 : 16;
        void *p = PyMem_RawRealloc(*items, (size_t)new_cap * size);
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        *items = p;
        *cap = new_cap;
    }
    memset((char *)*items + (size_t)*n * size, 0, size);
    PyObject *at = PyLong_FromSsize_t(*n);
    if (!at || PyDict_SetItem(index, key, at) < 0) {
        Py_XDECREF(at);
        return -1;
    }
    Py_DECREF(at);
    return (*n)++;
}

/* Aggregate.add's cell part and Cell.add, for one job. */
static int tally_job(Tally *t, const Job *j) {
    PyObject *key = PyTuple_Pack(4, j->partition, j->platform, j->workload, j->model);
    if (!key) return -1;
    Py_ssize_t at = slot(t->cell_index, key, (void **)&t->cells, &t->n_cells, &t->cap_cells,
                         sizeof(CellAcc));
    Py_DECREF(key);
    if (at < 0) return -1;
    CellAcc *c = &t->cells[at];
    c->jobs += 1;
    c->guessed += j->guessed;
    double elapsed = j->elapsed;
    double node_s = j->node_s, gpu_s = j->gpu_s;
    c->node_s += node_s;
    c->gpu_s += gpu_s;
    double energy = j->has_energy && j->energy != 0.0 ? j->energy : 0.0; /* energy_j or 0.0 */
    if (j->has_energy) {
        c->energy_j += j->energy;
        c->energy_jobs += 1;
        c->energy_gpu_s += gpu_s;
    }
    c->measured_j += j->measured;
    c->estimated_j += j->estimated;
    if (j->health) {
        c->checked += 1;
        c->failed += j->health == 2;
    }
    if (j->source == 1) c->fresh += 1;
    if (j->source == 2) c->cached += 1;
    if (j->source == 3) c->unchecked += 1;
    if (j->completed && vec_add(&c->elapsed, elapsed) < 0) return -1;
    if (j->has_wait && vec_add(&c->wait, j->wait) < 0) return -1;
    if (j->has_busbw && vec_add(&c->busbw, j->busbw) < 0) return -1;
    if (t->intervals) mom_add(&c->per_job, 1.0, energy, node_s, gpu_s, 1);
    for (int i = 0; i < j->n_units; i++) {
        int u = j->unit[i];
        if (c->units[u].jobs == 0) {
            int seen = 0;
            for (int k = 0; k < c->n_units; k++) seen |= c->unit_order[k] == u;
            if (!seen) c->unit_order[c->n_units++] = u;
        }
        mom_add(&c->units[u], j->unit_value[i], energy, node_s, gpu_s, t->intervals);
    }
    if (j->ok && j->has_busbw) {
        PyObject *ranks = j->ranks_o ? Py_NewRef(j->ranks_o) : PyLong_FromDouble(j->ranks);
        PyObject *size = !ranks ? NULL
                         : j->size_o ? Py_NewRef(j->size_o)
                                     : PyLong_FromDouble(j->size);
        PyObject *tkey = size ? PyTuple_Pack(4, j->model, ranks, size, j->platform) : NULL;
        Py_XDECREF(ranks);
        Py_XDECREF(size);
        if (!tkey) return -1;
        Py_ssize_t ti =
            slot(t->tax_index, tkey, (void **)&t->tax, &t->n_tax, &t->cap_tax, sizeof(Vec));
        Py_DECREF(tkey);
        if (ti < 0 || vec_add(&t->tax[ti], j->busbw) < 0) return -1;
    }
    if (j->has_start && (!t->has_first || j->start < t->first_start)) {
        t->first_start = j->start;
        t->has_first = 1;
    }
    if (j->has_end && (!t->has_last || j->end > t->last_end)) {
        t->last_end = j->end;
        t->has_last = 1;
    }
    return 0;
}

PyDoc_STRVAR(tally_row_doc,
             "row(job_id, ..., admin_comment, keep, /)\n--\n\n"
             "_fastrow.row's row, counted here: True counted, False dropped by `keep`,\n"
             "None: decline (row_facts decides; its Outcome comes back through add()).");

static PyObject *tally_fields(Tally *t, Fields *fl, PyObject *keep) {
    Job j;
    int r = job_of_row(fl, keep, &j);
    PyObject *result = NULL;
    if (r == 1) {
        if (tally_job(t, &j) == 0) {
            t->rows += 1;
            t->no_record += !j.ok;
            result = Py_NewRef(Py_True);
        }
    } else if (r == 0) {
        result = Py_NewRef(Py_False);
    } else if (r == -1) {
        result = Py_NewRef(Py_None);
    }
    job_clear(&j);
    return result;
}

static PyObject *tally_row(Tally *t, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(nargs, A_COUNT)) return NULL;
    for (int i = 0; i < A_KEEP; i++)
        if (!PyUnicode_CheckExact(args[i])) Py_RETURN_NONE;
    Fields fl;
    fields_of_args(&fl, args);
    PyObject *result = tally_fields(t, &fl, args[A_KEEP]);
    fields_clear(&fl);
    return result;
}

PyDoc_STRVAR(tally_text_doc,
             "text(row, keep, /)\n--\n\n"
             "row() of a whole row's text, split here as str.split(delimiter) splits it,\n"
             "when it is ASCII with exactly ncols - 1 delimiters; None otherwise too\n"
             "(the caller splits it and asks row()).");

/* A byte with the high bit set in any of the n bytes at s (a word at a time). */
static int any_high_bit(const unsigned char *s, Py_ssize_t n) {
    uint64_t acc = 0, word;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&word, s + i, 8);
        acc |= word;
    }
    for (; i < n; i++) acc |= s[i];
    return (acc & UINT64_C(0x8080808080808080)) != 0;
}

/* text() of the row's bytes s[0:n]: True counted, False dropped, None declined (not
 * ASCII, or not exactly ncols - 1 delimiters), NULL error. */
static PyObject *tally_bytes(Tally *t, const unsigned char *s, Py_ssize_t n, PyObject *keep) {
    if (t->ncols <= 0 || any_high_bit(s, n)) Py_RETURN_NONE;
    const unsigned char *start[MAX_COLUMNS];
    Py_ssize_t len[MAX_COLUMNS];
    int col = 0;
    const unsigned char *at = s, *end = s + n, *hit;
    /* memchr finds the few delimiters of a row whose bulk is its token's hex digits */
    while ((hit = memchr(at, t->delimiter, (size_t)(end - at))) != NULL) {
        if (col >= t->ncols - 1) Py_RETURN_NONE; /* more delimiters than a row has */
        start[col] = at;
        len[col++] = hit - at;
        at = hit + 1;
    }
    if (col != t->ncols - 1) Py_RETURN_NONE;
    start[col] = at;
    len[col] = end - at;
    Fields fl;
    memset(&fl, 0, sizeof fl);
    for (int i = 0; i < A_KEEP; i++) {
        int c = t->columns[i];
        fl.s[i] = c >= 0 ? start[c] : (const unsigned char *)"";
        fl.n[i] = c >= 0 ? len[c] : 0;
    }
    PyObject *result = tally_fields(t, &fl, keep);
    fields_clear(&fl);
    return result;
}

static PyObject *tally_text(Tally *t, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(nargs, 2)) return NULL;
    PyObject *row = args[0];
    if (!PyUnicode_CheckExact(row) || !PyUnicode_IS_ASCII(row)) Py_RETURN_NONE;
    return tally_bytes(t, PyUnicode_DATA(row), PyUnicode_GET_LENGTH(row), args[1]);
}

/* A float attribute of a JobFacts that may be None: *has, *value. */
static int opt_float(PyObject *v, int *has, double *value) {
    *has = v != Py_None;
    *value = *has ? PyFloat_AsDouble(v) : 0.0;
    return *has && *value == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* x * elapsed as Cell.add computes it (an int or float times a float), as a double. */
static int product(PyObject *x, PyObject *elapsed, double *out) {
    PyObject *p = PyNumber_Multiply(x, elapsed);
    if (!p) return -1;
    *out = PyFloat_AsDouble(p);
    Py_DECREF(p);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

enum { F_PART, F_PLATFORM, F_WORKLOAD, F_MODEL, F_NNODES, F_GPUS, F_ELAPSED, F_WAIT,
       F_COMPLETED, F_ENERGY, F_MEASURED, F_ESTIMATED, F_BUSBW, F_KEY, F_HEALTH, F_UNITS,
       F_START, F_END, F_SOURCE, F_GUESSED, F_COUNT };
static const char *const FACT_NAMES[F_COUNT] = {
    "partition", "platform", "workload", "model", "nnodes", "gpus", "elapsed_s", "wait_s",
    "completed", "energy_j", "measured_j", "estimated_j", "busbw_gbps", "busbw_key",
    "health", "units", "start", "end", "health_source", "workload_guessed"};

PyDoc_STRVAR(tally_add_doc,
             "add(facts, ok, /)\n--\n\n"
             "Aggregate.add's cell part for a JobFacts that row_facts made (ok: its kind is\n"
             "OK), in row order with the rows counted here (Aggregate.add_counts the rest).");

static PyObject *tally_add(Tally *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add() takes 2 arguments");
        return NULL;
    }
    PyObject *facts = args[0], *v[F_COUNT] = {NULL}, *result = NULL;
    Job j;
    memset(&j, 0, sizeof j);
    if ((j.ok = PyObject_IsTrue(args[1])) < 0) return NULL;
    for (int i = 0; i < F_COUNT; i++)
        if (!(v[i] = PyObject_GetAttrString(facts, FACT_NAMES[i]))) goto done;
    if (!PyFloat_CheckExact(v[F_ELAPSED]) || !PyDict_Check(v[F_UNITS])) {
        PyErr_SetString(PyExc_TypeError, "Tally.add: not a JobFacts of row_facts");
        goto done;
    }
    j.partition = v[F_PART];
    j.platform = v[F_PLATFORM];
    j.workload = v[F_WORKLOAD];
    j.model = v[F_MODEL];
    j.elapsed = PyFloat_AS_DOUBLE(v[F_ELAPSED]);
    int has;
    if (product(v[F_NNODES], v[F_ELAPSED], &j.node_s) < 0 ||
        product(v[F_GPUS], v[F_ELAPSED], &j.gpu_s) < 0 ||
        opt_float(v[F_WAIT], &j.has_wait, &j.wait) < 0 ||
        opt_float(v[F_ENERGY], &j.has_energy, &j.energy) < 0 ||
        opt_float(v[F_MEASURED], &has, &j.measured) < 0 ||
        opt_float(v[F_ESTIMATED], &has, &j.estimated) < 0 ||
        opt_float(v[F_BUSBW], &j.has_busbw, &j.busbw) < 0 ||
        opt_float(v[F_START], &j.has_start, &j.start) < 0 ||
        opt_float(v[F_END], &j.has_end, &j.end) < 0)
        goto done;
    if ((j.completed = PyObject_IsTrue(v[F_COMPLETED])) < 0 ||
        (j.guessed = PyObject_IsTrue(v[F_GUESSED])) < 0)
        goto done;
    if (v[F_HEALTH] != Py_None)
        j.health = PyUnicode_Check(v[F_HEALTH]) &&
                           PyUnicode_CompareWithASCIIString(v[F_HEALTH], "failed") == 0
                       ? 2
                       : 1;
    for (int r = 1; r <= 3; r++)
        if (PyUnicode_Check(v[F_SOURCE]) &&
            PyUnicode_CompareWithASCIIString(v[F_SOURCE], SOURCE_NAMES[r]) == 0)
            j.source = r;
    if (v[F_SOURCE] != Py_None && !j.source) {
        PyErr_SetString(PyExc_ValueError, "Tally.add: an unknown health_source");
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(v[F_UNITS], &pos, &name, &value)) {
        int u = -1;
        for (int k = 0; k < 4; k++)
            if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, UNIT_NAMES[k]) == 0)
                u = k;
        if (u < 0 || j.n_units >= 4 || !PyFloat_CheckExact(value)) {
            PyErr_SetString(PyExc_ValueError, "Tally.add: units not as row_facts makes them");
            goto done;
        }
        j.unit[j.n_units] = u;
        j.unit_value[j.n_units++] = PyFloat_AS_DOUBLE(value);
    }
    /* Aggregate.add: a tax series needs the key too */
    PyObject *key = v[F_KEY];
    if (key != Py_None && PyTuple_Check(key) && PyTuple_GET_SIZE(key) == 3) {
        j.ranks_o = PyTuple_GET_ITEM(key, 1);
        j.size_o = PyTuple_GET_ITEM(key, 2);
    } else {
        j.ok = 0; /* no key: no tax series; ok matters for nothing else in tally_job */
    }
    if (tally_job(t, &j) == 0) result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < F_COUNT; i++) Py_XDECREF(v[i]);
    return result;
}

static PyObject *vec_bytes(const Vec *vec) {
    return PyBytes_FromStringAndSize((const char *)vec->v, vec->n * (Py_ssize_t)sizeof(double));
}

static PyObject *mom_tuple(const Mom *m) {
    PyObject *t = PyTuple_New(15);
    if (!t) return NULL;
    PyObject *jobs = PyLong_FromLongLong(m->jobs);
    if (!jobs) goto fail;
    PyTuple_SET_ITEM(t, 0, jobs);
    for (int i = 0; i < 14; i++) {
        PyObject *f = PyFloat_FromDouble(m->s[i]);
        if (!f) goto fail;
        PyTuple_SET_ITEM(t, i + 1, f);
    }
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

PyDoc_STRVAR(tally_export_doc,
             "export()\n--\n\n"
             "(rows, no_record, first_start, last_end, cells, tax): cells a list of\n"
             "(key, ints, floats, elapsed, wait, busbw, per_job, units), series as bytes of\n"
             "doubles, Moments as tuples in field order; tax a list of (key, bytes).\n"
             "See report/tally.py, which makes Cells of them.");

static PyObject *tally_export(Tally *t, PyObject *unused) {
    PyObject *cells = PyList_New(0), *tax = PyList_New(0), *result = NULL;
    if (!cells || !tax) goto done;
    PyObject *key, *index;
    Py_ssize_t pos = 0;
    while (PyDict_Next(t->cell_index, &pos, &key, &index)) { /* insertion order */
        CellAcc *c = &t->cells[PyLong_AsSsize_t(index)];
        PyObject *units = PyList_New(0);
        if (!units) goto done;
        for (int k = 0; k < c->n_units; k++) {
            int u = c->unit_order[k];
            PyObject *item = Py_BuildValue("(ON)", unit_strs[u], mom_tuple(&c->units[u]));
            if (!item || PyList_Append(units, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(units);
                goto done;
            }
            Py_DECREF(item);
        }
        PyObject *item = Py_BuildValue(
            "(O(LLLLLLLL)(dddddd)NNNNN)", key, c->jobs, c->guessed, c->energy_jobs, c->checked,
            c->failed, c->fresh, c->cached, c->unchecked, c->node_s, c->gpu_s, c->energy_j,
            c->energy_gpu_s, c->measured_j, c->estimated_j, vec_bytes(&c->elapsed),
            vec_bytes(&c->wait), vec_bytes(&c->busbw),
            t->intervals ? mom_tuple(&c->per_job) : Py_NewRef(Py_None), units);
        if (!item || PyList_Append(cells, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    pos = 0;
    while (PyDict_Next(t->tax_index, &pos, &key, &index)) {
        PyObject *item = Py_BuildValue("(ON)", key, vec_bytes(&t->tax[PyLong_AsSsize_t(index)]));
        if (!item || PyList_Append(tax, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    result = Py_BuildValue("(LLNNOO)", t->rows, t->no_record,
                           float_or_none(t->has_first, t->first_start),
                           float_or_none(t->has_last, t->last_end), cells, tax);
done:
    Py_XDECREF(cells);
    Py_XDECREF(tax);
    return result;
}

static PyMethodDef tally_methods[] = {
    {"row", (PyCFunction)(void (*)(void))tally_row, METH_FASTCALL, tally_row_doc},
    {"text", (PyCFunction)(void (*)(void))tally_text, METH_FASTCALL, tally_text_doc},
    {"add", (PyCFunction)(void (*)(void))tally_add, METH_FASTCALL, tally_add_doc},
    {"export", (PyCFunction)tally_export, METH_NOARGS, tally_export_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "slurm_ai.report._fastrow.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_dealloc = (destructor)tally_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Tally(intervals): a range's Aggregate cells, counted in C."),
    .tp_methods = tally_methods,
    .tp_new = tally_new,
};

/* ------------------------------------------------------------------ Scanner */

/* dumpfile.rows_in_range in C, reading the file itself: the same lines as
 * dumpfile._blocks, the same rule for where a row starts, the same rows (dumpfile's
 * docstring says why the rule is certain). next(tally, keep) counts the rows the Tally
 * takes without making a Python object for them and returns the next row it does not
 * take (every row when tally is None), so rows still reach the Tally in file order. The
 * file is read block by block into one reused buffer, and a row is read where it lies. */

typedef struct {
    PyObject_HEAD
    int fd; /* the caller's: it keeps the file open while it scans */
    unsigned char delim;
    Py_ssize_t need, fixed;
    long long a, b, prev_pos;
    Py_ssize_t prev_count;
    int searching, done, eof, started;
    unsigned char *buf;        /* file bytes [base, base + len) */
    Py_ssize_t cap, len, scan; /* scan: where the next line starts in buf */
    long long base, read_at;   /* file offsets of buf[0] and of the next read */
    /* The row being assembled, lines buf[pstart:pend] (the last one's "\r" not in it);
     * plines 0: none yet. */
    Py_ssize_t pstart, pend, plines, pcount;
    unsigned char *joined; /* a row of several lines, "\r"s dropped (scratch) */
    Py_ssize_t joined_cap;
} Scanner;

/* A byte of sacct._ROW_START's job id class: [0-9_.+A-Za-z\[\]-]. */
static int id_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           c == '_' || c == '.' || c == '+' || c == '[' || c == ']' || c == '-';
}

/* dumpfile._Rules.start_match (rb"[0-9]+[0-9_.+A-Za-z\[\]-]*" + delim) for a delimiter
 * outside the class (the constructor checks): the regex cannot backtrack into the run. */
static int row_start(const unsigned char *s, Py_ssize_t n, unsigned char delim) {
    if (n < 1 || s[0] < '0' || s[0] > '9') return 0;
    Py_ssize_t i = 1;
    while (i < n && id_byte(s[i])) i++;
    return i < n && s[i] == delim;
}

static void scanner_dealloc(Scanner *self) {
    PyMem_RawFree(self->buf);
    PyMem_RawFree(self->joined);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *scanner_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    const char *delim;
    Py_ssize_t delim_len, need, fixed, block;
    long long a, b;
    int fd, searching;
    static char *names[] = {"fd", "delim", "need", "fixed", "a", "b", "searching", "block",
                            NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iy#nnLLpn", names, &fd, &delim, &delim_len,
                                     &need, &fixed, &a, &b, &searching, &block))
        return NULL;
    if (delim_len != 1 || id_byte((unsigned char)delim[0]) || delim[0] == '\n') {
        PyErr_SetString(PyExc_ValueError, "Scanner: the delimiter must be one byte, no id byte");
        return NULL;
    }
    if (fd < 0 || a < 0 || block < 1) {
        PyErr_SetString(PyExc_ValueError, "Scanner: fd, a and block must not be negative");
        return NULL;
    }
    Scanner *self = (Scanner *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    self->fd = fd;
    self->delim = (unsigned char)delim[0];
    self->need = need;
    self->fixed = fixed;
    self->a = a;
    self->b = b;
    self->searching = searching;
    self->prev_pos = -1;
    self->prev_count = -1;
    self->cap = block;
    /* As _blocks: a line begun before a is skipped unless a starts one, so reading starts
     * at a - 1 and drops the bytes up to the first "\n" (that byte alone when it is one). */
    self->base = self->read_at = a > 0 ? a - 1 : 0;
    self->started = a == 0;
    self->buf = PyMem_RawMalloc((size_t)block);
    if (!self->buf) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

/* More of the file into buf, keeping the row being assembled and the unfinished line:
 * 1 read some, 0 end of file, -1 error (exception set). */
static int scanner_fill(Scanner *self) {
    Py_ssize_t keep = self->plines ? self->pstart : self->scan;
    if (keep > 0) {
        memmove(self->buf, self->buf + keep, (size_t)(self->len - keep));
        self->len -= keep;
        self->scan -= keep;
        self->pstart -= keep;
        self->pend -= keep;
        self->base += keep;
    }
    if (self->len == self->cap) { /* a line or row longer than the buffer: grow it */
        unsigned char *p = self->cap < PY_SSIZE_T_MAX / 2
                               ? PyMem_RawRealloc(self->buf, (size_t)self->cap * 2)
                               : NULL;
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        self->buf = p;
        self->cap *= 2;
    }
    for (;;) {
        ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = pread(self->fd, self->buf + self->len, (size_t)(self->cap - self->len),
                    (off_t)self->read_at);
        Py_END_ALLOW_THREADS
        if (got >= 0) {
            self->len += got;
            self->read_at += got;
            return got > 0;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

/* The pending row: one line where it lies, several joined by "\n" with each line's
 * trailing "\r" dropped (as b"\n".join of the lines). NULL: no memory (exception set). */
static const unsigned char *pending_bytes(Scanner *self, Py_ssize_t *n) {
    const unsigned char *s = self->buf + self->pstart;
    Py_ssize_t raw = self->pend - self->pstart;
    *n = raw;
    if (self->plines == 1) return s;
    if (self->joined_cap < raw) {
        unsigned char *p = PyMem_RawRealloc(self->joined, (size_t)raw);
        if (!p) {
            PyErr_NoMemory();
            return NULL;
        }
        self->joined = p;
        self->joined_cap = raw;
    }
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < raw; i++) {
        if (s[i] == '\n' && w > 0 && self->joined[w - 1] == '\r') w--;
        self->joined[w++] = s[i];
    }
    *n = w;
    return self->joined;
}

static void pending_start(Scanner *self, Py_ssize_t at, Py_ssize_t end, Py_ssize_t count) {
    self->pstart = at;
    self->pend = end;
    self->plines = 1;
    self->pcount = count;
}

/* A finished row: counted by the tally (True, or False when keep dropped it), or given
 * back as (row, delimiter count); NULL with an exception. */
static PyObject *finished_row(Scanner *self, Tally *tally, PyObject *keep) {
    Py_ssize_t n;
    const unsigned char *s = pending_bytes(self, &n);
    if (!s) return NULL;
    if (tally) {
        PyObject *r = tally_bytes(tally, s, n, keep);
        if (r != Py_None) return r;
        Py_DECREF(r);
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s, n, "replace");
    return text ? Py_BuildValue("(Nn)", text, self->pcount) : NULL;
}

PyDoc_STRVAR(scanner_next_doc,
             "next(tally, keep, /)\n--\n\n"
             "The next (row, delimiter count) of the range that `tally` does not count\n"
             "(Tally.text's rule; tally None: every row); None after the range's last row.");

static PyObject *scanner_next(Scanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "next(tally, keep)");
        return NULL;
    }
    Tally *tally = NULL;
    PyObject *keep = args[1];
    if (args[0] != Py_None) {
        if (!PyObject_TypeCheck(args[0], &TallyType)) {
            PyErr_SetString(PyExc_TypeError, "next: tally must be a Tally or None");
            return NULL;
        }
        if (!ready(2, 2)) return NULL;
        tally = (Tally *)args[0];
        if (tally->delimiter != self->delim) tally = NULL; /* its text() would decline */
    }
    unsigned char *buf;
    while (!self->done) {
        buf = self->buf;
        const unsigned char *nl =
            memchr(buf + self->scan, '\n', (size_t)(self->len - self->scan));
        Py_ssize_t at = self->scan, end, next;
        if (nl) {
            end = nl - buf;
            next = end + 1;
        } else if (!self->eof) {
            int r = scanner_fill(self);
            if (r < 0) return NULL;
            self->eof = r == 0;
            continue;
        } else if (self->scan < self->len) {
            end = next = self->len; /* the last line, with no "\n" after it */
        } else {
            /* the end of the file: the row being assembled, unless it is one empty line */
            self->done = 1;
            if (self->searching || !self->plines || (self->plines == 1 && self->pend == self->pstart))
                break;
            PyObject *r = finished_row(self, tally, keep);
            if (r == Py_True || r == Py_False) {
                Py_DECREF(r);
                break;
            }
            return r;
        }
        self->scan = next;
        if (!self->started) { /* the line begun before a */
            self->started = 1;
            continue;
        }
        long long pos = self->base + at;
        if (end > at && buf[end - 1] == '\r') end--; /* a trailing "\r" is dropped */
        Py_ssize_t count = 0;
        for (const unsigned char *p = buf + at, *e = buf + end;
             (p = memchr(p, self->delim, (size_t)(e - p))) != NULL; p++)
            count++;
        int is_start = count >= self->fixed && row_start(buf + at, end - at, self->delim);
        PyObject *row = NULL;
        if (self->searching) {
            /* looking for B(a): P must start at or after a */
            if (is_start && self->prev_pos >= self->a && self->prev_count >= self->need) {
                if (self->prev_pos >= self->b) {
                    self->done = 1; /* B(a) is B(b): this range owns no row */
                    break;
                }
                self->searching = 0;
                pending_start(self, at, end, count);
            }
        } else if (!self->plines) {
            pending_start(self, at, end, count); /* the first row of the data */
        } else if (is_start && self->pcount >= self->need) {
            row = finished_row(self, tally, keep);
            if (!row) return NULL;
            if (self->prev_pos >= self->b && self->prev_count >= self->need)
                self->done = 1; /* B(b): the next range's first row */
            else
                pending_start(self, at, end, count);
        } else {
            self->plines++; /* a newline inside JobName or AdminComment */
            self->pend = end;
            self->pcount += count;
        }
        self->prev_pos = pos;
        self->prev_count = count;
        if (row == Py_True || row == Py_False)
            Py_DECREF(row); /* counted, or dropped by keep */
        else if (row)
            return row;
    }
    Py_RETURN_NONE;
}

static PyMethodDef scanner_methods[] = {
    {"next", (PyCFunction)(void (*)(void))scanner_next, METH_FASTCALL, scanner_next_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "slurm_ai.report._fastrow.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Scanner(fd, delim, need, fixed, a, b, searching, block): the rows "
                        "of dump range [a, b), read from fd."),
    .tp_methods = scanner_methods,
    .tp_new = scanner_new,
};

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
    init_str_stop();
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
        PyModule_AddStringConstant(m, "INFLATER", FASTROW_INFLATER) < 0 ||
        PyType_Ready(&TallyType) < 0 || PyType_Ready(&ScannerType) < 0 ||
        PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0 ||
        PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
