/* dumpfile.rows_in_range in C, reading the file itself: the same lines as
 * dumpfile._blocks, the same rule for where a row starts, the same rows (dumpfile's
 * docstring says why the rule is certain). next(tally, keep) counts the rows the Tally
 * takes without making a Python object for them and returns the next row it does not
 * take (every row when tally is None), so rows still reach the Tally in file order. The
 * file is read block by block into one reused buffer, and a row is read where it lies. */
#include "fastrow.h"

typedef struct {
    PyObject_HEAD
    int fd; /* the caller's: it keeps the file open while it scans */
    unsigned char delim;
    Py_ssize_t need, fixed;
    long long a, b, prev_pos;
    Py_ssize_t prev_count;
    int searching, done, eof, started;
    int busy; /* in next(): its pread lets other threads run, which must not scan too */
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

/* The next row that tally does not count (every row without one), or Py_None at the end
 * of the range; NULL with an exception. */
static PyObject *next_row(Scanner *self, Tally *tally, PyObject *keep) {
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
    if (args[0] != Py_None) {
        if (!PyObject_TypeCheck(args[0], &TallyType)) {
            PyErr_SetString(PyExc_TypeError, "next: tally must be a Tally or None");
            return NULL;
        }
        if (!setup_done()) return NULL; /* the Tally's rows need row()'s classes */
        tally = (Tally *)args[0];
        if (!tally_reads(tally, self->delim)) tally = NULL; /* its text() would decline */
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner.next() is already running (another thread)");
        return NULL;
    }
    self->busy = 1;
    PyObject *row = next_row(self, tally, args[1]);
    self->busy = 0;
    return row;
}

static PyMethodDef scanner_methods[] = {
    {"next", (PyCFunction)(void (*)(void))scanner_next, METH_FASTCALL, scanner_next_doc},
    {NULL, NULL, 0, NULL},
};

PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "slurm_ai.report._fastrow.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Scanner(fd, delim, need, fixed, a, b, searching, block): the rows "
                        "of dump range [a, b), read from fd."),
    .tp_methods = scanner_methods,
    .tp_new = scanner_new,
};

