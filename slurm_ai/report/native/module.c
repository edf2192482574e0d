/* The module slurm_ai.report._fastrow: figures(token) and payload(token) with Python
 * objects out, the words every file shares, and the init that makes them and adds the
 * functions of row.c and the types Tally and Scanner. What declines and why: fastrow.h. */
#include "fastrow.h"

PyObject *str_unknown, *str_ok, *str_failed, *str_empty, *str_mixed, *str_cpu, *str_question,
    *str_completed;
PyObject *workload_strs[4], *unit_strs[4], *source_strs[4];

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
        key = size ? PyTuple_Pack(3, f->busbw_cpu ? str_cpu : str_empty, ranks, size) : NULL;
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


static PyMethodDef methods[] = {
    {"figures", fastrow_figures, METH_O, figures_doc},
    {"payload", fastrow_payload, METH_O, payload_doc},
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
    if (!str_unknown || !str_ok || !str_failed || !str_empty || !str_cpu ||
        PyModule_AddFunctions(m, row_functions) < 0 ||
        PyModule_AddStringConstant(m, "INFLATER", FASTROW_INFLATER) < 0 ||
        PyType_Ready(&TallyType) < 0 || PyType_Ready(&ScannerType) < 0 ||
        PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0 ||
        PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
