/* A record's figures (facts._dict_figures) read from its JSON: node names, platform
 * classes, GPU models, energy, health, units and workload, as facts.py reads them; a v2
 * record's node figures from its summary (summary.c). */
#include "fastrow.h"

const char *const UNIT_NAMES[4] = {"tokens", "epochs", "samples", "requests"};
const char *const WORKLOAD_NAMES[4] = {"training", "fine-tuning", "inference",
                                       "data-science"};
const char *const SOURCE_NAMES[4] = {NULL, "fresh", "cached", "unchecked"};

Figs figs; /* large (node names): not on the stack; the GIL guards it */

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
    return *out >= 0 && *out < FIGURE_MAX;
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
#define N_HEALTH 6
static const char *const HEALTH_KEYS[N_HEALTH] = {"verdict", "busbw_gbps", "ranks",
                                                  "size_bytes", "device", "backend"};
#define PROVENANCE_SEEN (1u << N_HEALTH)

typedef struct {
    Figs *f;
    unsigned seen;
    int is_dict[4]; /* platform, gpus(list), energy, health present as the right type */
    Val cls;
    Val health[N_HEALTH];
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
        for (int i = 0; i < N_HEALTH; i++) n->health[i].type = J_NONE;
        n->source.type = J_NONE;
        if (obj_begin(c, &empty) < 0) return -1;
        unsigned seen = 0;
        while (!empty) {
            Val k;
            if (obj_key(c, &k) < 0) return -1;
            int done = 0;
            for (int i = 0; i < N_HEALTH; i++) {
                if (key_is(&k, HEALTH_KEYS[i])) {
                    if (!first_time(&seen, 1u << i)) return -1;
                    if (read_value(c, &n->health[i]) < 0) return -1;
                    done = 1;
                    break;
                }
            }
            if (!done && key_is(&k, "provenance")) {
                if (!first_time(&seen, PROVENANCE_SEEN)) return -1;
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

/* facts.busbw_model: 1 "cpu" (the all-reduce ran on CPUs), 0 "" (the job's GPU model), -1
 * decline (a string with an escape: it could spell a word compared here). The device when it
 * says cpu or gpu, else the backend (records before "device"): gloo is a CPU run. Any other
 * value, of any type, reads as absent, as `==` reads it in Python. */
int busbw_on_cpu(const Val *device, const Val *backend) {
    if ((device->type == J_STR && device->escaped) || (backend->type == J_STR && backend->escaped))
        return -1;
    if (str_is(device, "cpu")) return 1;
    if (str_is(device, "gpu")) return 0;
    return str_is(backend, "gloo");
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
    *out = (r && d < FIGURE_MAX && d > -FIGURE_MAX) ? d : 0.0;
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
            if ((f->busbw_cpu = busbw_on_cpu(&n->health[4], &n->health[5])) < 0) return -1;
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
    int version; /* 0 not read (yet), 1 or 2 */
    int decline; /* a form facts.py reads its own way */
    int light;   /* v2: node names counted only (f->node_count; names kept up to MAX_NODES) */
} RecordCtx;

/* A v2 record's node: its name counted, its record skipped (the summary has its figures). */
static int node_name_member(Cur *c, const Val *key, void *ctx) {
    RecordCtx *r = ctx;
    Figs *f = r->f;
    r->light = 1;
    if (f->node_count < MAX_NODES) f->node_names[f->node_count] = (Name){key->s, key->n, 0};
    f->node_count++;
    return skip_value(c);
}

/* len() of the v2 record's nodes object as json.loads builds it (repeated names count
 * once): the count, or -1 (decline) when a name repeats or there were too many to check. */
static Py_ssize_t node_names(const RecordCtx *r) {
    const Figs *f = r->f;
    if (!r->light) return f->node_count; /* read as v1's: repeated names declined there */
    if (f->node_count > MAX_NODES) return -1;
    for (Py_ssize_t i = 0; i < f->node_count; i++)
        for (Py_ssize_t j = 0; j < i; j++)
            if (f->node_names[i].n == f->node_names[j].n &&
                memcmp(f->node_names[i].s, f->node_names[j].s, (size_t)f->node_names[i].n) == 0)
                return -1;
    return f->node_count;
}

static int record_member(Cur *c, const Val *key, void *ctx) {
    RecordCtx *r = ctx;
    Figs *f = r->f;
    if (key_is(key, "v")) {
        if (!first_time(&r->seen, 1)) return -1;
        Val v;
        if (read_value(c, &v) < 0) return -1;
        /* the literal 1 or 2; record.py writes "v" first, so a v2 record's nodes are
         * only counted (its figures are its summary's); else they are read as v1's */
        if (v.type != J_INT || v.n != 1 || (v.s[0] != '1' && v.s[0] != '2')) return -1;
        r->version = v.s[0] - '0';
        return 0;
    }
    if (key_is(key, "complete")) {
        /* Only complete records here: facts.py marks the others (JobFacts.complete). */
        Val v;
        if (read_value(c, &v) < 0) return -1;
        if (v.type != J_TRUE) r->decline = 1;
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
        if (r->version == 2) return each_member(c, node_name_member, r);
        return each_member(c, nodes_member, f);
    }
    if (key_is(key, "summary")) {
        /* v1: not read by facts.py; v2 (or "v" not read yet): its figures */
        if (!first_time(&r->seen, 16)) return -1;
        if (r->version == 1 || !at_object(c)) return skip_value(c);
        return read_summary(c, &summ);
    }
    if (key_is(key, "units")) {
        if (!first_time(&r->seen, 8)) return -1;
        if (!at_object(c)) return skip_value(c);
        return each_member(c, units_member, f);
    }
    return skip_value(c);
}

/* The figures of the JSON in out_buf[0:n]; 0, or -1: decline. */
int read_figures(Py_ssize_t n, Figs *f) {
    Cur c = {out_buf, out_buf + n, 0};
    memset(f, 0, sizeof *f);
    f->workload = -1;
    for (int i = 0; i < 4; i++) f->units[i].type = J_NONE;
    /* json.loads(bytes) picks UTF-16/32 from NULs and BOMs: the first byte must be
     * ASCII '{' or whitespace, and no NUL passes the reader below. */
    if (!at_object(&c)) return -1;
    RecordCtx r = {f, 0, 0, 0, 0};
    summ.present = 0;
    if (each_member(&c, record_member, &r) < 0) return -1;
    skip_ws(&c);
    if (c.p != c.end) return -1; /* json.loads: "Extra data" */
    if (!r.version || r.decline) return -1;
    if (r.version == 2) {
        /* facts.py reads a v2 record without a summary object node by node: decline */
        if (!summ.present) return -1;
        Py_ssize_t names = summ.has_count ? 0 : node_names(&r);
        if (names < 0) return -1;
        return summary_figures(&summ, names, f);
    }
    return 0;
}

