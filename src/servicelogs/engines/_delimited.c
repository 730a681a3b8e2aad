/* Delimited log lines -> Arrow column buffers, in one pass over a block of whole lines.
 *
 * The bulk path of engines/arrow_parse.py: a line is a row only when it is plainly well formed (valid UTF-8,
 * no carriage return, quoted tokens closed and followed by the delimiter, no escape or stray quote, a non-empty
 * first token, the expected token count). Every other line is handed back, by its offset in the block, to the
 * exact per-line path, which alone decides what odd lines mean: so this code never has to agree with it on
 * anything but plain lines.
 *
 * Columns come back as the buffers of Arrow arrays (validity bitmap, offsets and data, or values), built in
 * bytearrays that pyarrow wraps without a copy. A typed column (integers, doubles, ISO timestamps) is parsed
 * here too; a value this parser does not take (it takes only the plain spellings) makes the call return None,
 * and the caller reads the block again as text, where the typing kernels judge and name the value.
 *
 * Also one string kernel for the typing kernels (arrow_kernels._split_once): a value cut in two at its first or
 * last separator, in one pass, where Arrow's split_pattern builds a list per value that is then taken apart.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* memrchr */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    uint32_t start, length;
} Span;

/* Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF), as CPython's and Arrow's decoders. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + need >= n) return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int parse_int64(const unsigned char *s, uint32_t n, int64_t lo, int64_t hi, int64_t *value) {
    uint32_t i = 0;
    int negative = 0;
    if (n && s[0] == '-') {
        negative = 1;
        i = 1;
    }
    if (i == n || n - i > 19) return 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    if (negative) {
        if (v > (uint64_t)(-(lo + 1)) + 1) return 0;
        *value = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)hi) return 0;
        *value = (int64_t)v;
    }
    return 1;
}

/* -?digits[.digits][e[+-]digits], correctly rounded as Arrow's parser is: one exact operation when the digits and
 * the power of ten are both exact doubles (Clinger's fast path, nearly every value in a log), else strtod. */
static int parse_double(const unsigned char *s, uint32_t n, double *value) {
    static const double powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    char buffer[64];
    uint32_t i = 0;
    int negative = 0, exponent = 0, exponent_negative = 0;
    uint64_t mantissa = 0;
    uint32_t digits = 0, fraction = 0;
    if (n == 0 || n >= sizeof buffer) return 0;
    if (s[i] == '-') negative = 1, i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++, fraction++)
            mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
    }
    if (digits == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        uint32_t exponent_digits = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) exponent_negative = s[i] == '-', i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, exponent_digits++)
            if (exponent < 10000) exponent = exponent * 10 + (s[i] - '0');
        if (exponent_digits == 0) return 0;
    }
    if (i != n) return 0;
    int power = (exponent_negative ? -exponent : exponent) - (int)fraction;
    if (digits <= 15 && power >= -22 && power <= 22) {
        double v = (double)mantissa;
        v = power < 0 ? v / powers[-power] : v * powers[power];
        *value = negative ? -v : v;
        return 1;
    }
    memcpy(buffer, s, n);
    buffer[n] = 0;
    *value = strtod(buffer, NULL);
    return 1;
}

static int digits_at(const unsigned char *s, int count, int *value) {
    int v = 0;
    for (int i = 0; i < count; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9) return 0;
        v = v * 10 + (int)d;
    }
    *value = v;
    return 1;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z -> microseconds since the epoch. */
static int parse_timestamp(const unsigned char *s, uint32_t n, int64_t *value) {
    int year, month, day, hour, minute, second;
    if (n < 20 || s[n - 1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return 0;
    if (!digits_at(s, 4, &year) || !digits_at(s + 5, 2, &month) || !digits_at(s + 8, 2, &day) ||
        !digits_at(s + 11, 2, &hour) || !digits_at(s + 14, 2, &minute) || !digits_at(s + 17, 2, &second))
        return 0;
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1] || hour > 23 || minute > 59 || second > 59)
        return 0;
    if (month == 2 && day == 29 && !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) return 0;
    int64_t micros = 0;
    uint32_t fraction = n - 20; /* the fraction with its point */
    if (fraction) {
        if (s[19] != '.' || fraction < 2 || fraction > 7) return 0;
        int digits;
        if (!digits_at(s + 20, (int)fraction - 1, &digits)) return 0;
        micros = digits;
        for (uint32_t k = fraction - 1; k < 6; k++) micros *= 10;
    } else if (n != 20) {
        return 0;
    }
    int64_t days = days_from_civil(year, (unsigned)month, (unsigned)day);
    *value = ((days * 24 + hour) * 60 + minute) * 60 * 1000000LL + second * 1000000LL + micros;
    return 1;
}

static PyObject *new_buffer(Py_ssize_t size) { return PyByteArray_FromStringAndSize(NULL, size); }

static inline int is_null(const unsigned char *s, uint32_t length, const unsigned char *null, Py_ssize_t null_length) {
    return null && length == (uint32_t)null_length &&
           (null_length == 1 ? s[0] == null[0] : memcmp(s, null, (size_t)null_length) == 0);
}

#define COPY_SLACK 32
/* Most tokens are short: copied as one or two fixed 16-byte moves (the bytes past the token are overwritten by the
 * next one, or land in the buffer's slack), not a call of memcpy per token. */
static inline void copy_token(char *to, const unsigned char *from, uint32_t length, const unsigned char *end) {
    if (length <= 16 && from + 16 <= end) {
        memcpy(to, from, 16);
    } else if (length <= COPY_SLACK && from + COPY_SLACK <= end) {
        memcpy(to, from, 16);
        memcpy(to + 16, from + 16, 16);
    } else {
        memcpy(to, from, length);
    }
}

/* One column of `rows` rows from its spans; returns (validity or None, null count,
 * buffer, data or None), or Py_None if a typed value is refused. */
static PyObject *build_column(const unsigned char *data, size_t n, const Span *spans, Py_ssize_t rows, char kind,
                              const unsigned char *null, Py_ssize_t null_length) {
    Py_ssize_t nulls = 0, bytes = 0;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const Span *t = &spans[r];
        if (is_null(data + t->start, t->length, null, null_length))
            nulls++;
        else
            bytes += t->length;
    }
    PyObject *validity = Py_None, *values = NULL, *strings = Py_None;
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    unsigned char *valid = NULL;
    if (nulls) {
        Py_DECREF(validity);
        validity = new_buffer((rows + 7) / 8);
        if (!validity) goto fail;
        valid = (unsigned char *)PyByteArray_AS_STRING(validity);
        memset(valid, 0, (size_t)(rows + 7) / 8);
    }
    size_t item = kind == 's' || kind == 'i' ? 4 : 8;
    values = new_buffer((kind == 's' ? rows + 1 : rows) * (Py_ssize_t)item);
    if (!values) goto fail;
    char *out = PyByteArray_AS_STRING(values);
    if (kind == 's') {
        Py_DECREF(strings);
        strings = new_buffer(bytes + COPY_SLACK);
        if (!strings) goto fail;
        char *text = PyByteArray_AS_STRING(strings);
        int32_t *offsets = (int32_t *)out;
        int32_t at = 0;
        for (Py_ssize_t r = 0; r < rows; r++) {
            const Span *t = &spans[r];
            offsets[r] = at;
            if (valid && is_null(data + t->start, t->length, null, null_length)) continue;
            if (valid) valid[r >> 3] |= (unsigned char)(1u << (r & 7));
            copy_token(text + at, data + t->start, t->length, data + n);
            at += (int32_t)t->length;
        }
        offsets[rows] = at;
    } else {
        for (Py_ssize_t r = 0; r < rows; r++) {
            const Span *t = &spans[r];
            const unsigned char *s = data + t->start;
            if (valid && is_null(s, t->length, null, null_length)) {
                memset(out + r * (Py_ssize_t)item, 0, item);
                continue;
            }
            if (valid) valid[r >> 3] |= (unsigned char)(1u << (r & 7));
            int64_t v = 0;
            int ok;
            if (kind == 'i') {
                ok = parse_int64(s, t->length, INT32_MIN, INT32_MAX, &v);
                ((int32_t *)out)[r] = (int32_t)v;
            } else if (kind == 'l') {
                ok = parse_int64(s, t->length, INT64_MIN, INT64_MAX, &v);
                ((int64_t *)out)[r] = v;
            } else if (kind == 'd') {
                ok = parse_double(s, t->length, &((double *)out)[r]);
            } else {
                ok = parse_timestamp(s, t->length, &v);
                ((int64_t *)out)[r] = v;
            }
            if (!ok) {
                Py_DECREF(validity);
                Py_DECREF(values);
                Py_DECREF(strings);
                Py_RETURN_NONE;
            }
        }
    }
    return Py_BuildValue("(NnNN)", validity, nulls, values, strings);
fail:
    Py_XDECREF(validity);
    Py_XDECREF(values);
    Py_XDECREF(strings);
    return NULL;
}

/* The state of the scan of one line. */
typedef struct {
    size_t line_start, token_start, quote_close;
    int count, in_quote, bad, non_ascii;
} Line;

/* The outcome of a chunk's lines: its rows' spans, column by column (`stride` a column), and line offsets; the
 * other lines, of the whole block, as Python lists. */
typedef struct {
    Span *spans;
    size_t stride;
    int64_t *row_lines;
    Py_ssize_t rows, index;
    int width;
    PyObject *others, *slow;
} Lines;

static inline void end_token(Line *l, Lines *out, size_t at) {
    size_t start = l->token_start, end = at;
    if (l->quote_close) start++, end = l->quote_close;
    if (l->count == 0 && end == start) l->bad = 1; /* an empty first token, or an empty line */
    if (l->count < out->width) /* a row's spans go straight to their place; a line of another width's are overwritten */
        out->spans[(size_t)l->count * out->stride + (size_t)out->rows] = (Span){(uint32_t)start, (uint32_t)(end - start)};
    l->count++;
    l->token_start = at + 1;
    l->quote_close = 0;
}

/* The line ending at `at` (its newline, or the block's end) is done: a row, another width, or the exact path's. */
static inline int end_line(Line *l, Lines *out, const unsigned char *data, size_t at) {
    if (!l->bad) end_token(l, out, at);
    if (!l->bad && (l->in_quote || (l->non_ascii && !valid_utf8(data + l->line_start, at - l->line_start))))
        l->bad = 1;
    if (!l->bad && l->count == out->width) {
        out->row_lines[out->rows++] = out->index;
    } else {
        PyObject *item = l->bad ? PyLong_FromSsize_t(out->index) : Py_BuildValue("(ni)", out->index, l->count);
        if (!item || PyList_Append(l->bad ? out->slow : out->others, item) < 0) {
            Py_XDECREF(item);
            return -1;
        }
        Py_DECREF(item);
    }
    out->index++;
    *l = (Line){at + 1, at + 1, 0, 0, 0, 0, 0};
    return 0;
}

/* One character that may change the scan's state: a delimiter, a quote, a newline, a backslash, a carriage
 * return, a byte past ASCII. */
static inline int structural(Line *l, Lines *out, const unsigned char *data, size_t n, size_t at, unsigned char c,
                             unsigned char delimiter, int quote) {
    if (c == '\n') return end_line(l, out, data, at);
    if (l->bad) return 0;
    if (c == delimiter) {
        if (!l->in_quote) end_token(l, out, at);
    } else if ((int)c == quote) {
        if (l->in_quote) { /* a closing quote: the token must end here */
            l->in_quote = 0;
            l->quote_close = at;
            if (at + 1 < n && data[at + 1] != delimiter && data[at + 1] != '\n') l->bad = 1;
        } else if (at == l->token_start) {
            l->in_quote = 1;
        } else {
            l->bad = 1; /* a stray quote */
        }
    } else if (c == '\\') {
        if (l->in_quote) l->bad = 1; /* an escape: the exact path unescapes */
    } else if (c == '\r') {
        l->bad = 1;
    } else {
        l->non_ascii = 1;
    }
    return 0;
}

/* The lines of data[start:end], which ends with a newline or at the block's end (`n`). */
static int scan(const unsigned char *data, size_t start, size_t end, size_t n, unsigned char delimiter, int quote,
                Lines *out) {
    Line l = {start, start, 0, 0, 0, 0, 0};
    unsigned char special[256] = {0};
    special[delimiter] = special['\n'] = special['\r'] = special['\\'] = 1;
    if (quote >= 0) special[quote] = 1;
    for (int c = 0x80; c < 0x100; c++) special[c] = 1;
    size_t at = start;
#if defined(__SSE2__)
    const __m128i d = _mm_set1_epi8((char)delimiter), q = _mm_set1_epi8((char)(quote >= 0 ? quote : '\n')),
                  newline = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'), backslash = _mm_set1_epi8('\\');
    for (; at + 16 <= end; at += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(data + at));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, d), _mm_cmpeq_epi8(v, q)),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, newline), _mm_cmpeq_epi8(v, cr)));
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, backslash));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit) | (unsigned)_mm_movemask_epi8(v); /* v: the high bits */
        while (mask) {
            size_t p = at + (size_t)__builtin_ctz(mask);
            mask &= mask - 1;
            if (structural(&l, out, data, n, p, data[p], delimiter, quote) < 0) return -1;
        }
    }
#endif
    for (; at < end; at++)
        if (special[data[at]] && structural(&l, out, data, n, at, data[at], delimiter, quote) < 0) return -1;
    if (end > start && data[end - 1] != '\n' && end_line(&l, out, data, end) < 0) return -1;
    return 0;
}

/* The newlines in data[0:length]: memchr from one to the next (glibc's reads 32-64 bytes at a time; measured on 8 MB
 * of log lines, 0.05-0.07 ms/MB against 0.13-0.15 for a 16-byte SSE2 compare and popcount). */
static size_t count_newlines(const unsigned char *data, size_t length) {
    size_t count = 0;
    for (const unsigned char *p = data; (p = memchr(p, '\n', length - (size_t)(p - data))) != NULL; p++) count++;
    return count;
}

/* Lines are scanned and their columns built a chunk of about this much text at a time: the chunk, and its spans,
 * stay in cache while its columns are built one after the other. */
#define CHUNK_BYTES (1 << 20)

static PyObject *tokenize(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buffer, null_buffer = {0};
    int delimiter, quote, width;
    const char *kinds;
    Py_ssize_t kinds_length;
    PyObject *null_object;
    if (!PyArg_ParseTuple(args, "y*iiiOy#", &buffer, &delimiter, &quote, &width, &null_object, &kinds, &kinds_length))
        return NULL;
    PyObject *result = NULL, *chunks = NULL;
    Lines out = {0};
    const unsigned char *null = NULL;
    Py_ssize_t null_length = -1;
    if (null_object != Py_None) {
        if (PyObject_GetBuffer(null_object, &null_buffer, PyBUF_SIMPLE) < 0) goto done;
        null = null_buffer.buf;
        null_length = null_buffer.len;
    }
    if (width < 1 || kinds_length != width || buffer.len >= UINT32_MAX || delimiter < 0 || delimiter > 127 ||
        quote > 127 || delimiter == '\n' || delimiter == quote) {
        PyErr_SetString(PyExc_ValueError, "tokenize: an ASCII delimiter and quote, kinds for each of `width` "
                                          "columns, and a block under 4 GB");
        goto done;
    }
    const unsigned char *data = buffer.buf;
    size_t n = (size_t)buffer.len;
    out.width = width;
    out.others = PyList_New(0);
    out.slow = PyList_New(0);
    chunks = PyList_New(0);
    if (!out.others || !out.slow || !chunks) goto done;
    for (size_t start = 0; start < n;) {
        size_t end = start + CHUNK_BYTES < n ? start + CHUNK_BYTES : n;
        const unsigned char *newline = end < n ? memchr(data + end, '\n', n - end) : NULL;
        end = end < n ? (newline ? (size_t)(newline - data) + 1 : n) : n;
        size_t lines = count_newlines(data + start, end - start) + (data[end - 1] != '\n');
        out.stride = lines;
        out.rows = 0;
        out.spans = malloc(sizeof(Span) * (lines * (size_t)width + 1));
        PyObject *row_lines = new_buffer((Py_ssize_t)(lines * sizeof(int64_t)));
        PyObject *columns = PyList_New(width);
        if (!out.spans || !row_lines || !columns) {
            Py_XDECREF(row_lines);
            Py_XDECREF(columns);
            if (!PyErr_Occurred()) PyErr_NoMemory();
            goto done;
        }
        out.row_lines = (int64_t *)PyByteArray_AS_STRING(row_lines);
        PyObject *chunk = NULL;
        if (scan(data, start, end, n, (unsigned char)delimiter, quote, &out) == 0) {
            int c = 0;
            for (; c < width; c++) {
                PyObject *column =
                    build_column(data, n, out.spans + (size_t)c * out.stride, out.rows, kinds[c], null, null_length);
                if (!column || column == Py_None) {
                    result = column;
                    break;
                }
                PyList_SET_ITEM(columns, c, column);
            }
            if (c == width && PyByteArray_Resize(row_lines, out.rows * (Py_ssize_t)sizeof(int64_t)) == 0)
                chunk = Py_BuildValue("(nOO)", out.rows, columns, row_lines);
        }
        Py_DECREF(row_lines);
        Py_DECREF(columns);
        free(out.spans);
        out.spans = NULL;
        if (!chunk) goto done; /* an error, or a refused value (result is None) */
        int appended = PyList_Append(chunks, chunk);
        Py_DECREF(chunk);
        if (appended < 0) goto done;
        start = end;
    }
    result = Py_BuildValue("(OOO)", chunks, out.others, out.slow);
done:
    Py_XDECREF(chunks);
    Py_XDECREF(out.others);
    Py_XDECREF(out.slow);
    if (null_buffer.obj) PyBuffer_Release(&null_buffer);
    PyBuffer_Release(&buffer);
    return result;
}

/* The newlines of each text, as a list of counts: the line counts of whole objects parsed together, which map each
 * row back to its object. bytes.count looks at a byte at a time (a third of the tokenizer's own time on 500 KB
 * objects). */
static PyObject *line_counts(PyObject *Py_UNUSED(self), PyObject *texts) {
    PyObject *seq = PySequence_Fast(texts, "line_counts: a sequence of bytes");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; result && i < n; i++) {
        Py_buffer buffer;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &buffer, PyBUF_SIMPLE) < 0) {
            Py_CLEAR(result);
            break;
        }
        size_t count = count_newlines(buffer.buf, (size_t)buffer.len);
        PyBuffer_Release(&buffer);
        PyObject *value = PyLong_FromSize_t(count);
        if (!value) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, value);
    }
    Py_DECREF(seq);
    return result;
}

/* The string array's values cut at their first (or last) `separator`: (head, tail) as the buffers of two string
 * arrays; a value without the separator is all head and a null tail; a null value, two nulls. */
static PyObject *split_once(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *validity_object;
    Py_buffer offsets_buffer, data_buffer, validity = {0};
    Py_ssize_t length, offset;
    int separator, reverse;
    if (!PyArg_ParseTuple(args, "Oy*y*nnip", &validity_object, &offsets_buffer, &data_buffer, &length, &offset,
                          &separator, &reverse))
        return NULL;
    PyObject *result = NULL, *parts[2][3] = {{NULL}};
    Py_ssize_t nulls[2] = {0, 0};
    if (validity_object != Py_None && PyObject_GetBuffer(validity_object, &validity, PyBUF_SIMPLE) < 0) goto done;
    const int32_t *offsets = (const int32_t *)offsets_buffer.buf + offset;
    const unsigned char *data = data_buffer.buf, *valid_in = validity.obj ? validity.buf : NULL;
    if (length < 0 || offset < 0 || (size_t)offsets_buffer.len < (size_t)(offset + length + 1) * 4) {
        PyErr_SetString(PyExc_ValueError, "split_once: offsets shorter than the array");
        goto done;
    }
    Py_ssize_t bytes = offsets[length] - offsets[0];
    for (int p = 0; p < 2; p++) {
        parts[p][0] = new_buffer((length + 7) / 8);
        parts[p][1] = new_buffer((length + 1) * 4);
        parts[p][2] = new_buffer(bytes + COPY_SLACK);
        if (!parts[p][0] || !parts[p][1] || !parts[p][2]) goto done;
        memset(PyByteArray_AS_STRING(parts[p][0]), 0, (size_t)(length + 7) / 8);
    }
    unsigned char *valid[2] = {(unsigned char *)PyByteArray_AS_STRING(parts[0][0]),
                               (unsigned char *)PyByteArray_AS_STRING(parts[1][0])};
    int32_t *out_offsets[2] = {(int32_t *)PyByteArray_AS_STRING(parts[0][1]),
                               (int32_t *)PyByteArray_AS_STRING(parts[1][1])};
    char *text[2] = {PyByteArray_AS_STRING(parts[0][2]), PyByteArray_AS_STRING(parts[1][2])};
    int32_t at[2] = {0, 0};
    const unsigned char *end = data + offsets[length];
    for (Py_ssize_t i = 0; i < length; i++) {
        out_offsets[0][i] = at[0];
        out_offsets[1][i] = at[1];
        Py_ssize_t bit = offset + i;
        if (valid_in && !(valid_in[bit >> 3] & (1u << (bit & 7)))) {
            nulls[0]++, nulls[1]++;
            continue;
        }
        const unsigned char *s = data + offsets[i];
        uint32_t n = (uint32_t)(offsets[i + 1] - offsets[i]);
        const unsigned char *cut = reverse ? memrchr(s, separator, n) : memchr(s, separator, n);
        uint32_t head = cut ? (uint32_t)(cut - s) : n;
        valid[0][i >> 3] |= (unsigned char)(1u << (i & 7));
        copy_token(text[0] + at[0], s, head, end);
        at[0] += (int32_t)head;
        if (!cut) {
            nulls[1]++;
            continue;
        }
        valid[1][i >> 3] |= (unsigned char)(1u << (i & 7));
        copy_token(text[1] + at[1], cut + 1, n - head - 1, end);
        at[1] += (int32_t)(n - head - 1);
    }
    out_offsets[0][length] = at[0];
    out_offsets[1][length] = at[1];
    result = Py_BuildValue("((OnOO)(OnOO))", parts[0][0], nulls[0], parts[0][1], parts[0][2], parts[1][0], nulls[1],
                           parts[1][1], parts[1][2]);
done:
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 3; k++) Py_XDECREF(parts[p][k]);
    if (validity.obj) PyBuffer_Release(&validity);
    PyBuffer_Release(&offsets_buffer);
    PyBuffer_Release(&data_buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"tokenize", tokenize, METH_VARARGS,
     "tokenize(block, delimiter, quote, width, null, kinds) -> (chunks, others, slow), or None if a typed value is refused"},
    {"line_counts", line_counts, METH_O, "line_counts(texts) -> [the newlines in each text]"},
    {"split_once", split_once, METH_VARARGS,
     "split_once(validity, offsets, data, length, offset, separator, reverse) -> (head, tail) buffers"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_delimited", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__delimited(void) { return PyModule_Create(&module); }
