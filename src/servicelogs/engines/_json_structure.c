/* The bytes that shape a JSON text, in one pass, and each record's valued members: the compiled form of
 * engines/json_split.py's numpy scan and count.
 *
 * `structure(buffer, starts)` gives three int64 arrays, as bytearrays numpy reads without a copy:
 *   - the positions of the structural bytes ({ } [ ] ,) outside strings,
 *   - the depth after each of them (a bracket or brace opening counts 1, closing -1),
 *   - the positions of the quotes that open or close a string: those not after an odd run of backslashes.
 * The rules are json_split's, byte for byte, valid JSON or not (tests/test_json_structure.py runs both on the
 * same texts): a byte is inside a string when an odd number of those quotes precede it. `starts`, sorted offsets or
 * None, are where objects joined in one buffer begin: there the string state and the depth start again, so one
 * object's open string or bracket does not shift the next one's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    int64_t *values;
    size_t length, capacity;
} Vector;

static inline int push(Vector *v, int64_t value) {
    if (v->length == v->capacity) {
        size_t capacity = v->capacity ? 2 * v->capacity : 4096;
        int64_t *values = realloc(v->values, capacity * sizeof(int64_t));
        if (!values) return -1;
        v->values = values, v->capacity = capacity;
    }
    v->values[v->length++] = value;
    return 0;
}

typedef struct {
    const unsigned char *data;
    const int64_t *starts;
    size_t starts_length, next_start;
    int64_t depth;
    int in_string;
    Vector *positions, *depths, *quotes;
} Scan;

/* Kept from call to call (a worker scans block after block): memory fresh from the system costs a page fault a
 * page, which measured as much as the scan itself. Only the results' copies are new. Calls hold the GIL while
 * they use these. */
static Vector scratch_positions, scratch_depths, scratch_quotes;

/* One byte that may shape the text: a quote, a bracket or brace, a comma. */
static inline int shape(Scan *s, size_t at) {
    while (s->next_start < s->starts_length && (int64_t)at >= s->starts[s->next_start]) {
        s->in_string = 0, s->depth = 0;
        s->next_start++;
    }
    unsigned char c = s->data[at];
    if (c == '"') {
        size_t run = 0; /* backslashes right before it: short, so walked back only here */
        while (run < at && s->data[at - 1 - run] == '\\') run++;
        if (run & 1) return 0;
        s->in_string ^= 1;
        return push(s->quotes, (int64_t)at);
    }
    if (s->in_string) return 0;
    s->depth += (c == '{' || c == '[') ? 1 : (c == ',' ? 0 : -1);
    return push(s->positions, (int64_t)at) | push(s->depths, s->depth);
}

static int scan(Scan *s, size_t n) {
    const unsigned char *data = s->data;
    size_t at = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), comma = _mm_set1_epi8(','), open = _mm_set1_epi8('['),
                  close = _mm_set1_epi8(']'), fold = _mm_set1_epi8((char)0xDF);
    for (; at + 16 <= n; at += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(data + at));
        __m128i folded = _mm_and_si128(v, fold); /* "{" -> "[", "}" -> "]", and no other byte */
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, comma)),
                                   _mm_or_si128(_mm_cmpeq_epi8(folded, open), _mm_cmpeq_epi8(folded, close)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        while (mask) {
            if (shape(s, at + (size_t)__builtin_ctz(mask)) < 0) return -1;
            mask &= mask - 1;
        }
    }
#endif
    for (; at < n; at++) {
        unsigned char c = data[at], folded = c & 0xDF;
        if ((c == '"' || c == ',' || folded == '[' || folded == ']') && shape(s, at) < 0) return -1;
    }
    return 0;
}

static PyObject *as_bytearray(const Vector *v) {
    return PyByteArray_FromStringAndSize((const char *)v->values, (Py_ssize_t)(v->length * sizeof(int64_t)));
}

static PyObject *structure(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buffer, starts = {0};
    PyObject *starts_object, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*O", &buffer, &starts_object)) return NULL;
    scratch_positions.length = scratch_depths.length = scratch_quotes.length = 0;
    Scan s = {buffer.buf, NULL, 0, 0, 0, 0, &scratch_positions, &scratch_depths, &scratch_quotes};
    if (starts_object != Py_None) {
        if (PyObject_GetBuffer(starts_object, &starts, PyBUF_SIMPLE) < 0) goto done;
        if (starts.len % (Py_ssize_t)sizeof(int64_t)) {
            PyErr_SetString(PyExc_ValueError, "structure: starts must be int64 offsets");
            goto done;
        }
        s.starts = starts.buf;
        s.starts_length = (size_t)starts.len / sizeof(int64_t);
    }
    if (scan(&s, (size_t)buffer.len) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *positions = as_bytearray(s.positions), *depths = as_bytearray(s.depths), *quotes = as_bytearray(s.quotes);
    if (positions && depths && quotes) result = PyTuple_Pack(3, positions, depths, quotes);
    Py_XDECREF(positions);
    Py_XDECREF(depths);
    Py_XDECREF(quotes);
done:
    if (starts.obj) PyBuffer_Release(&starts);
    PyBuffer_Release(&buffer);
    return result;
}

/* Per record, its valued members: json_split._valued_members' rule, in one pass over the shaping bytes.
 *
 * Record i is buffer[offsets[i]:offsets[i+1]]; `positions` and `depths` are the structure's bytes within the
 * records, `quotes` every string edge of the buffer. A record's members are the commas at its own level plus
 * one, less those whose value is `null` right before their separator (a comma at that level, or the record's
 * closing brace). Such a member's key lies between the two quotes before its `null`; the record's count is
 * lost (`lost[i]`) where that key is not in `known`, or where those quotes come before `floors[i]` (the index
 * of the record's buffer's first quote: they are not the record's). */
static PyObject *valued_members(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buffer, offsets, positions, depths, quotes, floors;
    PyObject *known, *result = NULL, *members_object = NULL, *lost_object = NULL;
    int record_depth;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*iO!", &buffer, &offsets, &positions, &depths, &quotes, &floors,
                          &record_depth, &PyTuple_Type, &known))
        return NULL;
    const unsigned char *b = buffer.buf;
    const int64_t *bounds = offsets.buf, *at = positions.buf, *depth = depths.buf, *quote = quotes.buf,
                  *floor = floors.buf;
    Py_ssize_t n = offsets.len / 8 - 1, count = positions.len / 8, quote_count = quotes.len / 8;
    if (n < 0 || depths.len != positions.len || floors.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "valued_members: int64 offsets, positions and depths alike, a floor a record");
        goto done;
    }
    members_object = PyByteArray_FromStringAndSize(NULL, n * 8);
    lost_object = PyByteArray_FromStringAndSize(NULL, n);
    if (!members_object || !lost_object) goto done;
    int64_t *members = (int64_t *)PyByteArray_AS_STRING(members_object);
    char *lost = PyByteArray_AS_STRING(lost_object);
    for (Py_ssize_t i = 0; i < n; i++) members[i] = 1, lost[i] = 0;
    if (n == 0) count = 0;
    Py_ssize_t record = 0, q = 0; /* the record of the position at hand; the quotes before its `null` */
    for (Py_ssize_t k = 0; k < count; k++) {
        int64_t p = at[k];
        if (p < 0 || p >= buffer.len) goto outside;
        unsigned char c = b[p];
        int comma = c == ',' && depth[k] == record_depth + 1;
        if (!comma && !(c == '}' && depth[k] == record_depth)) continue;
        while (record + 1 < n && bounds[record + 1] <= p) record++;
        if (comma) members[record]++;
        if (p < 5 || memcmp(b + p - 4, "null", 4) != 0) continue;
        members[record]--;
        while (q < quote_count && quote[q] < p - 4) q++;
        Py_ssize_t closing = q - 1; /* the quote that closes the member's key */
        if (closing < 1 || closing < floor[record] + 1) {
            lost[record] = 1;
            continue;
        }
        if (quote[closing - 1] < 0 || quote[closing] >= buffer.len) goto outside;
        const unsigned char *key = b + quote[closing - 1] + 1;
        Py_ssize_t length = (Py_ssize_t)(quote[closing] - quote[closing - 1] - 1), j = 0;
        for (; j < PyTuple_GET_SIZE(known); j++) {
            PyObject *name = PyTuple_GET_ITEM(known, j);
            if (PyBytes_GET_SIZE(name) == length && memcmp(PyBytes_AS_STRING(name), key, (size_t)length) == 0) break;
        }
        if (j == PyTuple_GET_SIZE(known)) lost[record] = 1;
    }
    result = PyTuple_Pack(2, members_object, lost_object);
    goto done;
outside:
    PyErr_SetString(PyExc_ValueError, "valued_members: a position or quote outside the buffer");
done:
    Py_XDECREF(members_object);
    Py_XDECREF(lost_object);
    PyBuffer_Release(&buffer);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&positions);
    PyBuffer_Release(&depths);
    PyBuffer_Release(&quotes);
    PyBuffer_Release(&floors);
    return result;
}

static PyMethodDef methods[] = {
    {"structure", structure, METH_VARARGS,
     "structure(buffer, starts) -> (positions, depths, quotes): the JSON text's shaping bytes, as int64 bytearrays"},
    {"valued_members", valued_members, METH_VARARGS,
     "valued_members(buffer, offsets, positions, depths, quotes, floors, record_depth, known) -> (members, lost)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_json_structure", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__json_structure(void) { return PyModule_Create(&module); }
