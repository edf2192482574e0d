/* aggregate.Cell, Moments and Series kept in C, added to exactly as their Python add()
 * methods do (the same float additions, in the same order: the same bits), and handed to
 * Python as plain values at the end (Tally.export, see report/tally.py). */
#include "fastrow.h"

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

struct Tally {
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
};

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
        /* Aggregate.add_facts: (*busbw_key, platform), the key's own model */
        PyObject *tkey =
            size ? PyTuple_Pack(4, j->busbw_model, ranks, size, j->platform) : NULL;
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

int tally_reads(const Tally *t, unsigned char delimiter) {
    return t->ncols > 0 && t->delimiter == delimiter;
}

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
PyObject *tally_bytes(Tally *t, const unsigned char *s, Py_ssize_t n, PyObject *keep) {
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
        j.busbw_model = PyTuple_GET_ITEM(key, 0); /* borrowed, as the fields above */
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

PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "slurm_ai.report._fastrow.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_dealloc = (destructor)tally_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Tally(intervals): a range's Aggregate cells, counted in C."),
    .tp_methods = tally_methods,
    .tp_new = tally_new,
};

