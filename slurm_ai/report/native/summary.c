/* A v2 record's summary object (accounting/summary.py) read into Summ, and its figures put
 * into Figs as facts._summary_figures computes them. A v2 record's figures come from its
 * summary whichever form it has (every node in full, or summarised with a detail file), so
 * its nodes are not read here. Anything facts.py could read otherwise declines (-1):
 * a repeated key we read, more keys than we keep, an int too long to be exact, a
 * worst_source that is a list or object (`in` a dict raises TypeError in Python). */
#include "fastrow.h"

Summ summ; /* large (key names): not on the stack; the GIL guards it */

/* A key not seen before in this object (else -1: json.loads keeps the last value). */
static int new_key(Name *keys, int *count, const Val *key) {
    for (int i = 0; i < *count; i++)
        if (keys[i].n == key->n && memcmp(keys[i].s, key->s, (size_t)key->n) == 0) return -1;
    if (*count >= MAX_SUMMARY_KEYS) return -1;
    keys[*count].s = key->s;
    keys[*count].n = key->n;
    keys[*count].count = 0;
    (*count)++;
    return 0;
}

/* `type(v) is int and v > 0`, from the literal (no digit limit needed): 1 or 0. */
static int positive_int(const Val *v) {
    return v->type == J_INT && v->s[0] != '-' && !(v->n == 1 && v->s[0] == '0');
}

/* `type(v) is int and v >= 0`: 1 with its value, 0 not, -1 decline (too long). */
static int count_value(const Val *v, double *out) {
    if (v->type != J_INT) return 0;
    int r = num_value(v, out);
    if (r <= 0) return r;
    return *out >= 0;
}

/* facts: `type(x) in _NUM and 0 <= x < _INF` (_INF is FIGURE_MAX) */
static int usable_total(const Val *v, double *out) {
    int r = num_value(v, out);
    if (r <= 0) return r;
    return *out >= 0 && *out < FIGURE_MAX;
}

/* facts: `_num(x) or 0.0` (a number inside +-FIGURE_MAX, negative too; zero of either
 * sign is 0.0). */
static int finite_or_zero(const Val *v, double *out) {
    double d;
    int r = num_value(v, &d);
    if (r < 0) return -1;
    *out = (r && d < FIGURE_MAX && d > -FIGURE_MAX && d != 0) ? d : 0.0;
    return 0;
}

/* Members of the object at c->p, each passed to `member` (at its value; it consumes it);
 * a value that is not an object is skipped (facts' _dict reads it as {}). */
typedef int (*SumMemberFn)(Cur *c, const Val *key, Summ *s);

static int members(Cur *c, SumMemberFn member, Summ *s) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{') return skip_value(c);
    int empty;
    if (obj_begin(c, &empty) < 0) return -1;
    while (!empty) {
        Val key;
        if (obj_key(c, &key) < 0 || member(c, &key, s) < 0) return -1;
        int more = obj_after(c);
        if (more < 0) return -1;
        empty = !more;
    }
    return 0;
}

/* platform: {class: nodes}; a class counts when its count is a positive int. */
static int platform_member(Cur *c, const Val *key, Summ *s) {
    Val v;
    if (new_key(s->keys, &s->n_keys, key) < 0 || read_value(c, &v) < 0) return -1;
    if (!positive_int(&v)) return 0;
    if (s->n_classes >= MAX_CLASSES) return -1;
    s->classes[s->n_classes++] = (Name){key->s, key->n, 1};
    return 0;
}

/* gpus.models: {model: GPUs}; a model counts when its count is a positive int. */
static int models_member(Cur *c, const Val *key, Summ *s) {
    Val v;
    if (new_key(s->keys, &s->n_keys, key) < 0 || read_value(c, &v) < 0) return -1;
    if (!positive_int(&v)) return 0;
    double d;
    if (num_value(&v, &d) < 0) return -1; /* pick_model compares counts: exact ints only */
    if (s->n_models >= MAX_MODELS) return -1;
    s->models[s->n_models++] = (Name){key->s, key->n, (long)d};
    return 0;
}

static int gpus_member(Cur *c, const Val *key, Summ *s) {
    if (key_is(key, "count")) {
        if (!first_time(&s->seen_gpus, 1)) return -1;
        Val v;
        double d;
        if (read_value(c, &v) < 0) return -1;
        int r = count_value(&v, &d);
        if (r < 0) return -1;
        s->rec_gpus = r ? (long)d : 0;
        return 0;
    }
    if (key_is(key, "models")) {
        if (!first_time(&s->seen_gpus, 2)) return -1;
        s->n_keys = 0;
        return members(c, models_member, s);
    }
    return skip_value(c);
}

static int energy_member(Cur *c, const Val *key, Summ *s) {
    static const char *const names[] = {"total_j", "measured_j", "estimated_j"};
    for (int i = 0; i < 3; i++) {
        if (!key_is(key, names[i])) continue;
        if (!first_time(&s->seen_energy, 1u << i)) return -1;
        Val v;
        if (read_value(c, &v) < 0) return -1;
        if (i == 0) {
            int r = usable_total(&v, &s->energy);
            if (r < 0) return -1;
            s->has_energy = r;
            return 0;
        }
        return finite_or_zero(&v, i == 1 ? &s->measured : &s->estimated);
    }
    return skip_value(c);
}

/* health.verdicts: {verdict: nodes}; "failed" when fail or timeout counts, else "ok" when
 * pass or warn does (facts: any order gives the same answer). */
static int verdicts_member(Cur *c, const Val *key, Summ *s) {
    static const char *const checked[] = {"pass", "warn", "fail", "timeout"};
    Val v;
    if (read_value(c, &v) < 0) return -1;
    for (int i = 0; i < 4; i++) {
        if (!key_is(key, checked[i])) continue;
        if (!first_time(&s->seen_verdicts, 1u << i)) return -1;
        if (!positive_int(&v)) return 0;
        if (i >= 2)
            s->health = 2;
        else if (s->health == 0)
            s->health = 1;
        return 0;
    }
    return 0; /* another verdict: facts.py does not count it (a repeat changes nothing) */
}

static int busbw_member(Cur *c, const Val *key, Summ *s) {
    static const char *const names[] = {"gbps", "ranks", "size_bytes", "device", "backend"};
    for (int i = 0; i < 5; i++) {
        if (!key_is(key, names[i])) continue;
        if (!first_time(&s->seen_busbw, 1u << i)) return -1;
        return read_value(c, &s->busbw_vals[i]);
    }
    return skip_value(c);
}

static int health_member(Cur *c, const Val *key, Summ *s) {
    if (key_is(key, "verdicts")) {
        if (!first_time(&s->seen_health, 1)) return -1;
        return members(c, verdicts_member, s);
    }
    if (key_is(key, "busbw_min")) {
        if (!first_time(&s->seen_health, 2)) return -1;
        return members(c, busbw_member, s);
    }
    if (key_is(key, "worst_source")) {
        if (!first_time(&s->seen_health, 4)) return -1;
        Val v;
        if (read_value(c, &v) < 0) return -1;
        if (!hashable(&v) || (v.type == J_STR && v.escaped)) return -1;
        for (int r = 1; r <= 3; r++)
            if (str_is(&v, SOURCE_NAMES[r])) s->source = r;
        return 0;
    }
    return skip_value(c);
}

static int summary_member(Cur *c, const Val *key, Summ *s) {
    if (key_is(key, "nodes")) {
        if (!first_time(&s->seen, 1)) return -1;
        Val v;
        double d;
        if (read_value(c, &v) < 0) return -1;
        int r = count_value(&v, &d);
        if (r < 0) return -1;
        s->has_count = r;
        s->count = r ? (Py_ssize_t)d : 0;
        return 0;
    }
    if (key_is(key, "platform")) {
        if (!first_time(&s->seen, 2)) return -1;
        s->n_keys = 0;
        return members(c, platform_member, s);
    }
    if (key_is(key, "gpus")) {
        if (!first_time(&s->seen, 4)) return -1;
        return members(c, gpus_member, s);
    }
    if (key_is(key, "energy")) {
        if (!first_time(&s->seen, 8)) return -1;
        return members(c, energy_member, s);
    }
    if (key_is(key, "health")) {
        if (!first_time(&s->seen, 16)) return -1;
        return members(c, health_member, s);
    }
    return skip_value(c);
}

int read_summary(Cur *c, Summ *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 5; i++) s->busbw_vals[i].type = J_NONE;
    s->present = 1;
    return members(c, summary_member, s);
}

/* facts._summary_figures: the node figures of f replaced by the summary's; `names` is the
 * record's node count (len of its nodes object), used when the summary has no count. */
int summary_figures(const Summ *s, Py_ssize_t names, Figs *f) {
    f->node_count = s->has_count ? s->count : names;
    memcpy(f->classes, s->classes, sizeof(Name) * (size_t)s->n_classes);
    f->n_classes = s->n_classes;
    memcpy(f->models, s->models, sizeof(Name) * (size_t)s->n_models);
    f->n_models = s->n_models;
    f->rec_gpus = s->rec_gpus;
    f->has_energy = s->has_energy;
    f->energy = s->energy;
    f->measured = s->measured;
    f->estimated = s->estimated;
    f->health = s->health;
    f->source = s->source;
    f->has_busbw = f->busbw_cpu = 0;
    f->busbw = f->ranks = f->size = 0;
    int r = usable_total(&s->busbw_vals[0], &f->busbw);
    if (r < 0) return -1;
    if (r) {
        f->has_busbw = 1;
        if (finite_or_zero(&s->busbw_vals[1], &f->ranks) < 0 ||
            finite_or_zero(&s->busbw_vals[2], &f->size) < 0)
            return -1;
        if ((f->busbw_cpu = busbw_on_cpu(&s->busbw_vals[3], &s->busbw_vals[4])) < 0) return -1;
    }
    return 0;
}
