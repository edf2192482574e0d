/* A sacct row's facts (facts.row_facts) for the usual row: epoch times, digits where
 * sacct writes numbers, and in AdminComment our token alone or nothing; anything else is
 * declined and row_facts decides. */
#include "fastrow.h"

/* What row() builds, from facts.py (setup()): its classes, a function and its words. */
PyObject *JobFacts, *Outcome, *tres_gpus, *KIND_OK, *KIND_NONE, *NO_RECORD;

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

void job_clear(Job *j) {
    Py_CLEAR(j->partition);
    Py_CLEAR(j->platform);
    Py_CLEAR(j->model);
    Py_CLEAR(j->busbw_model);
    Py_CLEAR(j->gpus);
}

void fields_of_args(Fields *fl, PyObject *const *args) {
    memset(fl, 0, sizeof *fl);
    for (int i = 0; i < A_KEEP; i++) {
        fl->obj[i] = args[i];
        if (PyUnicode_IS_ASCII(args[i])) {
            fl->s[i] = PyUnicode_DATA(args[i]);
            fl->n[i] = PyUnicode_GET_LENGTH(args[i]);
        }
    }
}

void fields_clear(Fields *fl) {
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
int job_of_row(Fields *fl, PyObject *keep, Job *j) {
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
    /* row_facts: the busbw key's model is the job's unless the all-reduce ran on CPUs */
    j->busbw_model = Py_NewRef(f->busbw_cpu ? str_cpu : j->model);
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
        if (r == 0 || !(num > 0 && num < FIGURE_MAX)) continue;
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

PyObject *float_or_none(int has, double value) {
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
        obj[11] = size ? PyTuple_Pack(3, j->busbw_model, ranks, size) : NULL;
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

int setup_done(void) {
    if (!JobFacts) {
        PyErr_SetString(PyExc_RuntimeError, "_fastrow.setup() was not called");
        return 0;
    }
    return 1;
}

int ready(Py_ssize_t nargs, Py_ssize_t want) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "takes %zd arguments", want);
        return 0;
    }
    return setup_done();
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

PyMethodDef row_functions[] = {
    {"setup", (PyCFunction)(void (*)(void))fastrow_setup, METH_FASTCALL, setup_doc},
    {"row", (PyCFunction)(void (*)(void))fastrow_row, METH_FASTCALL, row_doc},
    {NULL, NULL, 0, NULL},
};
