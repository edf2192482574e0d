/* A strict RFC 8259 reader for the report's records: it reads the leaves the report
 * needs and skips the rest, and fails (-1: the caller declines) wherever json.loads could
 * answer otherwise (see fastrow.h). Every read is checked against the cursor's end. */
#include "fastrow.h"

static int is_hex(unsigned char ch) { return hex_value(ch) >= 0; }

/* Bytes a string's plain run stops at: '"', '\\', control characters, non-ASCII. Most
 * of a record is strings the report skips: this table keeps their scan at a load and a
 * test a byte. */
static unsigned char STR_STOP[256];

void init_str_stop(void) {
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
int read_value(Cur *c, Val *v) {
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

int skip_value(Cur *c) {
    Val v;
    return read_value(c, &v);
}

/* Object iteration: `{` consumed by obj_begin; obj_next gives each key, at its value. */
int obj_begin(Cur *c, int *empty) {
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
int obj_key(Cur *c, Val *key) {
    skip_ws(c);
    if (read_string(c, key) < 0 || key->escaped) return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') return -1;
    c->p++;
    skip_ws(c);
    return 0;
}

/* After a member's value: 1 another member follows, 0 the object ended, -1 decline. */
int obj_after(Cur *c) {
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
int num_value(const Val *v, double *out) {
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

