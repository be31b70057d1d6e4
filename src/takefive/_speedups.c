/*
 * takefive._speedups: optional C versions of the Mongrel2 wire hot path.
 *
 * Each function here is a faster copy of a pure-Python function in takefive/wire.py,
 * which stays the reference: the Python code is used whenever this module is not
 * built (no C compiler) or TAKEFIVE_NO_EXTENSIONS is set, and the tests check that
 * both give the same answer for the same input, byte for byte.
 *
 * Nothing here decides what is valid. Each function handles only the common, well
 * formed case and returns None for anything else; the Python code then decides
 * (and words the ProtocolError). Every length is checked against the bytes present
 * before anything is read.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

/* A length prefix never has more digits than this (10 digits > 4 GiB), as in wire.py. */
#define MAX_PREFIX_DIGITS 10

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Reads 1 to MAX_PREFIX_DIGITS digits at data[*pos] followed by ':'.
 * On success stores the number, moves *pos past the colon and returns 1; else 0.
 */
static int
read_prefix(const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos, long long *value)
{
    Py_ssize_t i = *pos;
    long long n = 0;
    int digits = 0;
    while (i < size && is_digit(data[i])) {
        if (++digits > MAX_PREFIX_DIGITS)
            return 0;
        n = n * 10 + (data[i] - '0');
        i++;
    }
    if (digits == 0 || i >= size || data[i] != ':')
        return 0;
    *pos = i + 1;
    *value = n;
    return 1;
}

/* The first space at or after start, or -1. */
static Py_ssize_t
find_space(const unsigned char *data, Py_ssize_t start, Py_ssize_t size)
{
    if (start >= size)
        return -1;
    const unsigned char *hit = memchr(data + start, ' ', (size_t)(size - start));
    return hit == NULL ? -1 : (Py_ssize_t)(hit - data);
}

PyDoc_STRVAR(parse_common_doc,
"parse_common(data, senders, known_headers, message_type) -> message or None\n\n"
"wire._parse_common for a front end and a header block seen before: the sender's\n"
"raw bytes must be a key of ``senders`` (raw -> str) and the header block's bytes a\n"
"key of ``known_headers`` (raw -> dict, copied for the message). Returns None for\n"
"anything else, and the Python code decides.");

/*
 * The last raw key found in a dict, and its value: the next frame from the same front
 * end, with the same header block, is decoded without hashing either again. A value is
 * a pure function of its key (the sender's str, the parsed header block), so a hit is
 * right whatever the dict holds since. Only parse_request uses them, with the dicts of
 * setup_parse.
 */
typedef struct {
    PyObject *raw;   /* bytes */
    PyObject *value; /* what the dict held for it */
} LastKey;

static LastKey last_sender = {NULL, NULL}, last_headers = {NULL, NULL};

/*
 * dict[data[0:size]] (borrowed), through last when given; NULL with no exception when
 * absent, NULL with an exception on failure. Runs no Python code (a bytes key).
 */
static PyObject *
find_raw(PyObject *dict, const unsigned char *data, Py_ssize_t size, LastKey *last)
{
    if (last != NULL && last->raw != NULL && PyBytes_GET_SIZE(last->raw) == size &&
        memcmp(PyBytes_AS_STRING(last->raw), data, (size_t)size) == 0)
        return last->value;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)data, size);
    if (raw == NULL)
        return NULL;
    PyObject *value = PyDict_GetItemWithError(dict, raw); /* borrowed */
    if (value != NULL && last != NULL) {
        Py_INCREF(value);
        Py_XSETREF(last->value, value); /* the old ones: bytes, and a str or a dict of str */
        Py_XSETREF(last->raw, raw);
        return value;
    }
    Py_DECREF(raw);
    return value;
}

static PyObject *
parse_frame(PyObject *frame, PyObject *senders, PyObject *known, PyObject *message_type,
            int remember)
{
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(frame);
    Py_ssize_t size = PyBytes_GET_SIZE(frame);

    /* "SENDER ID PATH LEN:" with no empty part; ID all digits. */
    Py_ssize_t sp1 = find_space(data, 0, size);
    if (sp1 <= 0)
        Py_RETURN_NONE;
    Py_ssize_t sp2 = find_space(data, sp1 + 1, size);
    if (sp2 < 0 || sp2 == sp1 + 1)
        Py_RETURN_NONE;
    for (Py_ssize_t i = sp1 + 1; i < sp2; i++) {
        if (!is_digit(data[i]))
            Py_RETURN_NONE;
    }
    Py_ssize_t sp3 = find_space(data, sp2 + 1, size);
    if (sp3 < 0 || sp3 == sp2 + 1)
        Py_RETURN_NONE;
    Py_ssize_t head = sp3 + 1;
    long long head_len;
    if (!read_prefix(data, size, &head, &head_len))
        Py_RETURN_NONE;
    /* The header block and its ',' must be there: head + head_len < size. */
    if (head_len >= size - head || data[head + head_len] != ',')
        Py_RETURN_NONE;
    Py_ssize_t head_end = head + (Py_ssize_t)head_len;

    /* The body: "LEN:BODY," ending the frame exactly. */
    Py_ssize_t body = head_end + 1;
    long long body_len;
    if (!read_prefix(data, size, &body, &body_len))
        Py_RETURN_NONE;
    if (body_len != (long long)(size - body - 1) || data[size - 1] != ',')
        Py_RETURN_NONE;

    /* Known sender, known header block: else the Python code (which learns them). */
    PyObject *sender = find_raw(senders, data, sp1, remember ? &last_sender : NULL);
    if (sender == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(sender); /* held across the calls below, which may run Python code */
    PyObject *template = find_raw(known, data + head, head_end - head,
                                  remember ? &last_headers : NULL);
    if (template == NULL || !PyDict_CheckExact(template)) {
        Py_DECREF(sender);
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(template);

    PyObject *conn_id = NULL, *path = NULL, *headers = NULL, *payload = NULL, *message = NULL;
    conn_id = PyUnicode_DecodeASCII((const char *)data + sp1 + 1, sp2 - sp1 - 1, "strict");
    if (conn_id == NULL)
        goto done;
    path = PyUnicode_DecodeUTF8((const char *)data + sp2 + 1, sp3 - sp2 - 1, "surrogateescape");
    if (path == NULL)
        goto done;
    headers = PyDict_Copy(template); /* each message owns its dict */
    Py_CLEAR(template);
    if (headers == NULL)
        goto done;
    payload = PyBytes_FromStringAndSize((const char *)data + body, (Py_ssize_t)body_len);
    if (payload == NULL)
        goto done;
#if PY_VERSION_HEX < 0x030E0000
    message = ((PyTypeObject *)message_type)->tp_alloc((PyTypeObject *)message_type, 5);
    if (message == NULL)
        goto done;
    /* The tuple takes over the references. */
    PyTuple_SET_ITEM(message, 0, sender);
    PyTuple_SET_ITEM(message, 1, conn_id);
    PyTuple_SET_ITEM(message, 2, path);
    PyTuple_SET_ITEM(message, 3, headers);
    PyTuple_SET_ITEM(message, 4, payload);
    return message;
#else
    /* 3.14 tuples cache their hash in a field tp_alloc does not set: let tuple.__new__
       build the message. */
    {
        PyObject *items = PyTuple_Pack(5, sender, conn_id, path, headers, payload);
        PyObject *call_args = items == NULL ? NULL : PyTuple_Pack(1, items);
        if (call_args != NULL)
            message = PyTuple_Type.tp_new((PyTypeObject *)message_type, call_args, NULL);
        Py_XDECREF(call_args);
        Py_XDECREF(items);
        Py_DECREF(sender);
        Py_DECREF(conn_id);
        Py_DECREF(path);
        Py_DECREF(headers);
        Py_DECREF(payload);
        return message;
    }
#endif

done:
    Py_DECREF(sender);
    Py_XDECREF(template);
    Py_XDECREF(conn_id);
    Py_XDECREF(path);
    Py_XDECREF(headers);
    Py_XDECREF(payload);
    return NULL;
}

static PyObject *
parse_common(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "parse_common takes 4 arguments");
        return NULL;
    }
    PyObject *frame = args[0], *senders = args[1], *known = args[2], *message_type = args[3];
    if (!PyBytes_CheckExact(frame) || !PyDict_CheckExact(senders) ||
        !PyDict_CheckExact(known) || !PyType_Check(message_type) ||
        !PyType_IsSubtype((PyTypeObject *)message_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_common(bytes, dict, dict, a tuple subclass)");
        return NULL;
    }
    return parse_frame(frame, senders, known, message_type, 0);
}

/* ------------------------------------------------------------------ parse_request */

static PyObject *parse_senders = NULL;      /* wire._senders */
static PyObject *parse_known = NULL;        /* wire._known_headers */
static PyObject *parse_message_type = NULL; /* wire.Message */
static PyObject *parse_fallback = NULL;     /* the Python decoder, for anything else */

PyDoc_STRVAR(setup_parse_doc,
"setup_parse(senders, known_headers, message_type, fallback) -> None\n\n"
"What parse_request() needs: parse_common's dicts and message type, and the Python\n"
"decoder it hands every other frame to.");

static PyObject *
setup_parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
        !PyType_Check(args[2]) || !PyType_IsSubtype((PyTypeObject *)args[2], &PyTuple_Type) ||
        !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_parse(dict, dict, a tuple subclass, a callable)");
        return NULL;
    }
    Py_XSETREF(parse_senders, Py_NewRef(args[0]));
    Py_XSETREF(parse_known, Py_NewRef(args[1]));
    Py_XSETREF(parse_message_type, Py_NewRef(args[2]));
    Py_XSETREF(parse_fallback, Py_NewRef(args[3]));
    Py_CLEAR(last_sender.raw);
    Py_CLEAR(last_sender.value);
    Py_CLEAR(last_headers.raw);
    Py_CLEAR(last_headers.value);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(parse_request_doc,
"parse_request(data) -> Message\n\n"
"Decode one front end -> handler message: parse_common for a known sender and header\n"
"block (the last ones found are compared before anything is hashed), the Python\n"
"decoder (which decides, and raises ProtocolError) for the rest.");

static PyObject *
parse_request(PyObject *module, PyObject *data)
{
    if (parse_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "parse_request: setup_parse() first");
        return NULL;
    }
    if (PyBytes_CheckExact(data)) {
        PyObject *message = parse_frame(data, parse_senders, parse_known, parse_message_type, 1);
        if (message != Py_None)
            return message; /* a message, or NULL with an exception set */
        Py_DECREF(message);
    }
    return PyObject_CallOneArg(parse_fallback, data);
}

/* Writes n (>= 0) in decimal at buf (room for 20 digits); returns the digit count. */
static int
format_size(char *buf, Py_ssize_t n)
{
    char tmp[24];
    int len = 0;
    do {
        tmp[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    for (int i = 0; i < len; i++)
        buf[i] = tmp[len - 1 - i];
    return len;
}

/* A connection id on the fast path: a str of 1 to 64 ASCII digits. Its bytes, or NULL
   (no exception set, except for a legacy string that could not be readied). */
static const char *
digit_id(PyObject *conn_id, Py_ssize_t *id_len)
{
    if (!PyUnicode_CheckExact(conn_id))
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(conn_id) < 0) /* a legacy string made by a deprecated API */
        return NULL;
#endif
    if (!PyUnicode_IS_ASCII(conn_id))
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(conn_id);
    const char *id = (const char *)PyUnicode_1BYTE_DATA(conn_id);
    if (len == 0 || len > 64)
        return NULL;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)id[i]))
            return NULL;
    }
    *id_len = len;
    return id;
}

/*
 * The frame "UUID SP LEN ':' ID ',' SP HEAD [DIGITS CRLF CRLF] BODY": one reply to one
 * connection. With sized, DIGITS is the length of BODY in decimal (HEAD then ends with
 * "Content-Length: "). Returns a new reference, or NULL with an exception set.
 */
static PyObject *
build_reply(PyObject *uuid, const char *id, Py_ssize_t id_len, PyObject *head, PyObject *body,
            int sized)
{
    char id_digits[24], size_digits[24];
    int n_id_digits = format_size(id_digits, id_len);
    Py_ssize_t uuid_len = PyBytes_GET_SIZE(uuid);
    Py_ssize_t head_len = PyBytes_GET_SIZE(head);
    Py_ssize_t body_len = body == NULL ? 0 : PyBytes_GET_SIZE(body);
    int n_size_digits = sized ? format_size(size_digits, body_len) : 0;
    /* uuid SP LEN ':' ID ',' SP: small; then HEAD, the size and CRLF CRLF, BODY */
    Py_ssize_t total = uuid_len + 1 + n_id_digits + 1 + id_len + 2 + (sized ? n_size_digits + 4 : 0);
    if (head_len > PY_SSIZE_T_MAX - total || body_len > PY_SSIZE_T_MAX - total - head_len)
        return PyErr_NoMemory();
    total += head_len + body_len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(out);
    memcpy(p, PyBytes_AS_STRING(uuid), (size_t)uuid_len);
    p += uuid_len;
    *p++ = ' ';
    memcpy(p, id_digits, (size_t)n_id_digits);
    p += n_id_digits;
    *p++ = ':';
    memcpy(p, id, (size_t)id_len);
    p += id_len;
    *p++ = ',';
    *p++ = ' ';
    memcpy(p, PyBytes_AS_STRING(head), (size_t)head_len);
    p += head_len;
    if (sized) {
        memcpy(p, size_digits, (size_t)n_size_digits);
        p += n_size_digits;
        memcpy(p, "\r\n\r\n", 4);
        p += 4;
    }
    if (body_len > 0)
        memcpy(p, PyBytes_AS_STRING(body), (size_t)body_len);
    return out;
}

PyDoc_STRVAR(encode_reply_doc,
"encode_reply(uuid, conn_id, data) -> bytes or None\n\n"
"b'%b %d:%b, %b' % (uuid, len(conn_id), conn_id, data) for one connection id that\n"
"is a non-empty str of ASCII digits (the fast path of wire.encode_response);\n"
"None for anything else. ``uuid`` is the sender's checked bytes.");

static PyObject *
encode_reply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "encode_reply takes 3 arguments");
        return NULL;
    }
    PyObject *uuid = args[0], *conn_id = args[1], *data = args[2];
    if (!PyBytes_CheckExact(uuid) || !PyBytes_CheckExact(data))
        Py_RETURN_NONE;
    Py_ssize_t id_len;
    const char *id = digit_id(conn_id, &id_len);
    if (id == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    return build_reply(uuid, id, id_len, data, NULL, 0);
}

/*
 * The frame "UUID SP LEN ':' ID ',' SP HEAD DIGITS CRLF CRLF BODY" for a sender already
 * checked (senders[sender] is its bytes) and a connection id of ASCII digits: a new
 * reference; None (a new reference) for any other sender or id; NULL with an exception
 * set on failure. Runs no Python code (exact str keys in an exact dict).
 */
static PyObject *
sized_reply(PyObject *senders, PyObject *sender, PyObject *conn_id, PyObject *head,
            PyObject *body)
{
    PyObject *uuid = PyDict_GetItemWithError(senders, sender); /* borrowed */
    if (uuid == NULL || !PyBytes_CheckExact(uuid))
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    Py_ssize_t id_len;
    const char *id = digit_id(conn_id, &id_len);
    if (id == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return build_reply(uuid, id, id_len, head, body, 1);
}

PyDoc_STRVAR(encode_sized_reply_doc,
"encode_sized_reply(senders, sender, conn_id, head, body) -> bytes or None\n\n"
"wire.encode_sized_reply for a sender already checked (``senders[sender]`` is its\n"
"raw bytes) and a connection id that is a non-empty str of ASCII digits: the reply\n"
"frame whose data is head + the length of body in decimal + CRLF CRLF + body.\n"
"None for anything else.");

static PyObject *
encode_sized_reply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "encode_sized_reply takes 5 arguments");
        return NULL;
    }
    PyObject *senders = args[0], *sender = args[1], *conn_id = args[2];
    PyObject *head = args[3], *body = args[4];
    if (!PyDict_CheckExact(senders)) {
        PyErr_SetString(PyExc_TypeError, "encode_sized_reply: senders must be a dict");
        return NULL;
    }
    if (!PyUnicode_CheckExact(sender) || !PyBytes_CheckExact(head) || !PyBytes_CheckExact(body))
        Py_RETURN_NONE;
    return sized_reply(senders, sender, conn_id, head, body);
}

/*
 * The offsets of the object slots ``names`` of cls, a class defined in Python, read from
 * the member descriptors it has or inherits. Returns 0, or -1 with a TypeError (naming
 * ``who``) set.
 */
static int
slot_offsets(PyTypeObject *cls, const char *const *names, int count, Py_ssize_t *offsets,
             const char *who)
{
    if (!PyType_HasFeature(cls, Py_TPFLAGS_HEAPTYPE)) { /* a builtin's tp_dict may be NULL */
        PyErr_Format(PyExc_TypeError, "%s: not a Python class", who);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL)
            return -1;
        PyObject *descr = _PyType_Lookup(cls, name); /* borrowed; through the MRO */
        Py_DECREF(name);
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s: no slot %s", who, names[i]);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY) ||
            member->offset < (Py_ssize_t)sizeof(PyObject) ||
            member->offset > cls->tp_basicsize - (Py_ssize_t)sizeof(PyObject *)) {
            PyErr_Format(PyExc_TypeError, "%s: slot %s is not an object slot", who, names[i]);
            return -1;
        }
        offsets[i] = member->offset;
    }
    return 0;
}

/* ------------------------------------------------------------------ Request */

/*
 * request_from(message): takefive.request.Request(message) for the common request,
 * written straight into the instance's slots (no __init__ call). The slots are found
 * once, by setup_request(), from the class's own member descriptors; the Python
 * __init__ stays the reference, and the tests compare every slot of both.
 */

enum {
    R_COOKIES, R_FORM, R_HEADERS, R_HTTP10, R_JSON, R_QUERY, R_RAW, R_APP, R_BODY, R_CONN_ID,
    R_KEEP_ALIVE, R_MESSAGE, R_METHOD, R_PATH, R_PATH_PARAMS, R_SENDER, R_STATE, R_COUNT
};

static const char *const request_slots[R_COUNT] = {
    "_cookies", "_form", "_headers", "_http10", "_json", "_query", "_raw", "app", "body", "conn_id",
    "keep_alive", "message", "method", "path", "_path_params", "sender", "_state",
};

static PyTypeObject *request_type = NULL;
static PyTypeObject *message_type = NULL; /* wire.Message: the only input built here */
static PyObject *upper_methods = NULL; /* frozenset of methods already upper-case */
static PyObject *missing = NULL;       /* request._MISSING: _json not parsed yet */
static Py_ssize_t request_offsets[R_COUNT];
static PyObject *key_method, *key_path, *key_version, *key_connection, *http10;

PyDoc_STRVAR(setup_request_doc,
"setup_request(cls, message_type, upper_methods, missing) -> None\n\n"
"Learn where the slots of takefive.request.Request are; ``request_slots()`` names\n"
"them. Raises TypeError if ``cls`` does not have exactly these object slots.\n"
"Only messages of exactly ``message_type`` (wire.Message) are built in C.");

static PyObject *
setup_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type) ||
        !PyFrozenSet_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_request(cls, a tuple subclass, frozenset, missing)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    Py_ssize_t offsets[R_COUNT];
    if (slot_offsets(cls, request_slots, R_COUNT, offsets, "setup_request") < 0)
        return NULL;
    /* Exactly our slots, each an object slot of cls itself, and nothing more (no
       __dict__, no other slot a C-built instance would leave unset). */
    if (cls->tp_dictoffset != 0 || cls->tp_itemsize != 0 ||
        cls->tp_basicsize != (Py_ssize_t)(sizeof(PyObject) + R_COUNT * sizeof(PyObject *))) {
        PyErr_SetString(PyExc_TypeError, "setup_request: unexpected layout");
        return NULL;
    }
    memcpy(request_offsets, offsets, sizeof offsets);
    Py_INCREF(cls);
    Py_XSETREF(request_type, cls);
    Py_INCREF(args[1]);
    Py_XSETREF(message_type, (PyTypeObject *)args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(upper_methods, args[2]);
    Py_INCREF(args[3]);
    Py_XSETREF(missing, args[3]);
    Py_RETURN_NONE;
}

static PyObject *
request_slot_names(PyObject *module, PyObject *unused)
{
    PyObject *names = PyTuple_New(R_COUNT);
    if (names == NULL)
        return NULL;
    for (int i = 0; i < R_COUNT; i++) {
        PyObject *name = PyUnicode_FromString(request_slots[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

/* headers[key] if it is an exact str, else NULL (borrowed; no exception unless one was
   raised by the lookup). */
static PyObject *
str_header(PyObject *headers, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(headers, key);
    if (value == NULL || !PyUnicode_CheckExact(value))
        return NULL;
    return value;
}

/*
 * Builds Request(message) for the common request into *out (a new reference) and
 * returns 1; returns 0 for any other message (the Python constructor decides), -1 with
 * an exception set on failure.
 */
static int
build_request(PyObject *message, PyObject **out)
{
    if (!Py_IS_TYPE(message, message_type) || PyTuple_GET_SIZE(message) != 5)
        return 0;
    PyObject *sender = PyTuple_GET_ITEM(message, 0), *conn_id = PyTuple_GET_ITEM(message, 1);
    PyObject *headers = PyTuple_GET_ITEM(message, 3), *body = PyTuple_GET_ITEM(message, 4);
    if (!PyDict_CheckExact(headers) || !PyUnicode_CheckExact(sender) ||
        !PyUnicode_CheckExact(conn_id) || !PyBytes_CheckExact(body))
        return 0;
    /* Lookups of exact str keys in an exact dict: no Python code runs until the
       allocations below. */
    PyObject *method = str_header(headers, key_method);
    if (method == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int known = PySet_Contains(upper_methods, method);
    if (known <= 0)
        return known;
    PyObject *path = str_header(headers, key_path);
    if (path == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (PyUnicode_GET_LENGTH(path) == 0)
        return 0;
    Py_ssize_t percent = PyUnicode_FindChar(path, '%', 0, PyUnicode_GET_LENGTH(path), 1);
    if (percent != -1)
        return percent == -2 ? -1 : 0;
    int has_connection = PyDict_Contains(headers, key_connection);
    if (has_connection != 0)
        return has_connection < 0 ? -1 : 0;
    int keep_alive = 1;
    PyObject *version = PyDict_GetItemWithError(headers, key_version);
    if (version == NULL && PyErr_Occurred())
        return -1;
    if (version != NULL) {
        if (!PyUnicode_CheckExact(version))
            return 0; /* a list or another type: the Python code decides */
        int order = PyUnicode_Compare(version, http10); /* two exact str: no error */
        if (order == -1 && PyErr_Occurred())
            return -1;
        keep_alive = order != 0;
    }

    /* method and path are the headers dict's: hold them while allocating (a collection
       there may run a finalizer, which could change the dict). The message tuple holds
       the rest, and the caller holds the message. */
    Py_INCREF(method);
    Py_INCREF(path);
    PyObject *self = request_type->tp_alloc(request_type, 0);
    if (self == NULL) {
        Py_DECREF(method);
        Py_DECREF(path);
        return -1;
    }
    PyObject *values[R_COUNT];
    values[R_COOKIES] = Py_NewRef(Py_None);
    values[R_FORM] = Py_NewRef(Py_None);
    values[R_HEADERS] = Py_NewRef(Py_None);
    values[R_HTTP10] = Py_NewRef(keep_alive ? Py_False : Py_True); /* no Connection header */
    values[R_JSON] = Py_NewRef(missing);
    values[R_QUERY] = Py_NewRef(Py_None);
    values[R_RAW] = Py_NewRef(headers);
    values[R_APP] = Py_NewRef(Py_None);
    values[R_BODY] = Py_NewRef(body);
    values[R_CONN_ID] = Py_NewRef(conn_id);
    values[R_KEEP_ALIVE] = Py_NewRef(keep_alive ? Py_True : Py_False);
    values[R_MESSAGE] = Py_NewRef(message);
    values[R_METHOD] = method; /* the references taken above */
    values[R_PATH] = path;
    values[R_PATH_PARAMS] = Py_NewRef(Py_None); /* {} when first asked for */
    values[R_SENDER] = Py_NewRef(sender);
    values[R_STATE] = Py_NewRef(Py_None);
    for (int i = 0; i < R_COUNT; i++)
        *(PyObject **)((char *)self + request_offsets[i]) = values[i];
    *out = self;
    return 1;
}

PyDoc_STRVAR(request_from_doc,
"request_from(message) -> Request\n\n"
"Request(message). For a message whose METHOD is an upper-case method, whose PATH is a\n"
"non-empty str without '%', and which has no Connection header, the slots are written\n"
"directly; any other message goes to the class (its __init__ decides).");

static PyObject *
request_from(PyObject *module, PyObject *message)
{
    if (request_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "request_from: setup_request() first");
        return NULL;
    }
    PyObject *request = NULL;
    int built = build_request(message, &request);
    if (built != 0)
        return built > 0 ? request : NULL;
    return PyObject_CallOneArg((PyObject *)request_type, message);
}

/* ------------------------------------------------------------------ Response */

/*
 * response_frame(sender, conn_id, response): wire.encode_sized_reply(sender, conn_id,
 * response.length_prefix(), response.body) for a response whose prefix is already in
 * response._PREFIXES and a sender already in wire._sender_raw (both dicts handed over
 * by setup_response); None for anything else, and the Python code decides.
 */

enum { S_CTYPE, S_HEADERS, S_BODY, S_STATUS, S_COUNT };

static const char *const response_slots[S_COUNT] = {"_ctype", "_headers", "body", "status"};

static PyTypeObject *response_type = NULL;
static PyObject *length_prefixes = NULL; /* response._PREFIXES: (status, ctype) -> bytes */
static PyObject *checked_senders = NULL; /* wire._sender_raw: sender -> its bytes */
static PyObject *framed_types = NULL;    /* runner._FRAMED_TYPES: classes rendering as Response */
static PyObject *reply_fallback = NULL;  /* runner._reply_frame, for anything else */
/* The last (status, ctype) found in length_prefixes, and its prefix (all held). */
static struct {
    PyObject *status, *ctype, *prefix;
} last_prefix = {NULL, NULL, NULL};
static Py_ssize_t response_offsets[S_COUNT];

PyDoc_STRVAR(setup_response_doc,
"setup_response(cls, prefixes, senders, framed_types, fallback) -> None\n\n"
"Learn where the slots of takefive.response.Response are, the dicts of cached\n"
"length prefixes and checked senders, the set of the Response classes that render\n"
"as Response does, and reply_frame's Python fallback. Raises TypeError if cls lacks\n"
"these slots.");

static PyObject *
setup_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyType_Check(args[0]) || !PyDict_CheckExact(args[1]) ||
        !PyDict_CheckExact(args[2]) || !PySet_CheckExact(args[3]) || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "setup_response(cls, dict, dict, set, callable)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    Py_ssize_t offsets[S_COUNT];
    if (slot_offsets(cls, response_slots, S_COUNT, offsets, "setup_response") < 0)
        return NULL;
    memcpy(response_offsets, offsets, sizeof offsets);
    Py_INCREF(cls);
    Py_XSETREF(response_type, cls);
    Py_INCREF(args[1]);
    Py_XSETREF(length_prefixes, args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(checked_senders, args[2]);
    Py_INCREF(args[3]);
    Py_XSETREF(framed_types, args[3]);
    Py_XSETREF(reply_fallback, Py_NewRef(args[4]));
    Py_CLEAR(last_prefix.status);
    Py_CLEAR(last_prefix.ctype);
    Py_CLEAR(last_prefix.prefix);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(response_frame_doc,
"response_frame(sender, conn_id, response) -> bytes or None\n\n"
"The reply frame for a Response of a class in framed_types (one that renders as\n"
"Response does) whose headers are its Content-Type alone, whose length prefix is\n"
"cached and whose sender is known; None for anything else. The caller has checked\n"
"keep-alive and not HEAD.");

/*
 * The frame for response to (sender, conn_id): a new reference; None (a new reference)
 * when the response or the sender is not a common one already cached; NULL with an
 * exception set on failure.
 */
static PyObject *
frame_of(PyObject *sender, PyObject *conn_id, PyObject *response)
{
    if (response_type == NULL || !PyUnicode_CheckExact(sender) ||
        !PyObject_TypeCheck(response, response_type))
        Py_RETURN_NONE;
    int framed = PySet_Contains(framed_types, (PyObject *)Py_TYPE(response));
    if (framed <= 0)
        return framed < 0 ? NULL : Py_NewRef(Py_None);
    /* Borrowed from the response, which the caller holds. */
    PyObject *slot[S_COUNT];
    for (int i = 0; i < S_COUNT; i++) {
        slot[i] = *(PyObject **)((char *)response + response_offsets[i]);
        if (slot[i] == NULL) /* not set (a subclass that skipped the constructor) */
            Py_RETURN_NONE;
    }
    PyObject *ctype = slot[S_CTYPE], *status = slot[S_STATUS], *body = slot[S_BODY];
    if (slot[S_HEADERS] != Py_None || !PyLong_CheckExact(status) || !PyBytes_CheckExact(body) ||
        !(ctype == Py_None || PyUnicode_CheckExact(ctype)))
        Py_RETURN_NONE;
    /* The prefix cached for (status, ctype): the last one found when both are the same
       objects (a prefix is a pure function of the two, immutable, values). The three are
       held from here on: the key tuple's allocation may run a collection, whose finalizers
       could change the response and free what it held. */
    Py_INCREF(body);
    Py_INCREF(status);
    Py_INCREF(ctype);
    PyObject *prefix;
    if (status == last_prefix.status && ctype == last_prefix.ctype)
        prefix = last_prefix.prefix;
    else {
        /* After the key tuple, only lookups of exact int, str and tuple keys in exact
           dicts and a bytes allocation (no collection): no Python code runs. */
        PyObject *key = PyTuple_Pack(2, status, ctype);
        if (key == NULL) {
            Py_DECREF(body);
            Py_DECREF(status);
            Py_DECREF(ctype);
            return NULL;
        }
        prefix = PyDict_GetItemWithError(length_prefixes, key); /* borrowed */
        Py_DECREF(key);
        if (prefix != NULL && PyBytes_CheckExact(prefix)) {
            Py_INCREF(status);
            Py_INCREF(ctype);
            Py_INCREF(prefix);
            Py_XSETREF(last_prefix.status, status); /* the old ones: an int, a str, bytes */
            Py_XSETREF(last_prefix.ctype, ctype);
            Py_XSETREF(last_prefix.prefix, prefix);
        }
    }
    PyObject *out;
    if (prefix == NULL || !PyBytes_CheckExact(prefix)) /* None: a status without a body */
        out = PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    else
        out = sized_reply(checked_senders, sender, conn_id, prefix, body);
    Py_DECREF(body);
    Py_DECREF(status);
    Py_DECREF(ctype);
    return out;
}

static PyObject *
response_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "response_frame takes 3 arguments");
        return NULL;
    }
    return frame_of(args[0], args[1], args[2]);
}

PyDoc_STRVAR(reply_frame_doc,
"reply_frame(request, response) -> bytes or None\n\n"
"runner._reply_frame: the frame answering request with response in one copy, or None\n"
"when it must be rendered (no keep-alive, HEAD, an uncommon response). response_frame\n"
"for a Request built as request_from builds it; the Python function for the rest.");

static PyObject *
reply_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "reply_frame takes 2 arguments");
        return NULL;
    }
    PyObject *request = args[0], *response = args[1];
    if (reply_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "reply_frame: setup_response() first");
        return NULL;
    }
    if (request_type != NULL && Py_IS_TYPE(request, request_type)) {
        /* Borrowed from the request, which the caller holds. */
        PyObject *keep_alive = *(PyObject **)((char *)request + request_offsets[R_KEEP_ALIVE]);
        PyObject *method = *(PyObject **)((char *)request + request_offsets[R_METHOD]);
        PyObject *sender = *(PyObject **)((char *)request + request_offsets[R_SENDER]);
        PyObject *conn_id = *(PyObject **)((char *)request + request_offsets[R_CONN_ID]);
        if (keep_alive == Py_False)
            Py_RETURN_NONE;
        if (keep_alive == Py_True && method != NULL && PyUnicode_CheckExact(method) &&
            sender != NULL && conn_id != NULL) {
            if (PyUnicode_GET_LENGTH(method) == 4 && PyUnicode_KIND(method) == PyUnicode_1BYTE_KIND &&
                memcmp(PyUnicode_DATA(method), "HEAD", 4) == 0)
                Py_RETURN_NONE;
            Py_INCREF(sender); /* borrowed from the request: held across allocations */
            Py_INCREF(conn_id);
            PyObject *frame = frame_of(sender, conn_id, response);
            Py_DECREF(sender);
            Py_DECREF(conn_id);
            if (frame != Py_None)
                return frame; /* the frame, or NULL with an exception set */
            Py_DECREF(frame);
        }
    }
    PyObject *call_args[2] = {request, response};
    return PyObject_Vectorcall(reply_fallback, call_args, 2, NULL);
}

/* ------------------------------------------------------------------ ResponseBase */

/*
 * ResponseBase: the base class of takefive.response.Response when the extension is
 * built. It holds Response's four slots and its constructor: the common construction
 * (a str or bytes body, no headers, a known int status) in C, everything else by the
 * Python __init__ it replaces (response._response_init, or response._text_init for the
 * text responses), so that one decides and words the errors. The tests compare both.
 */

typedef struct {
    PyObject_HEAD
    PyObject *ctype;   /* _ctype */
    PyObject *headers; /* _headers */
    PyObject *body;
    PyObject *status;
} ResponseBaseObject;

static PyTypeObject *response_base_type = NULL; /* ResponseBase itself */
static PyObject *init_reference = NULL; /* response._response_init */
static PyObject *text_reference = NULL; /* response._text_init */
static PyTypeObject *text_class = NULL; /* response._TextResponse */
static PyObject *status_lines = NULL;   /* response._STATUS_LINES: the known statuses */
static PyObject *checked_types = NULL;  /* response._CHECKED_TYPES */
static PyObject *octets = NULL;         /* response.OCTETS */
static PyObject *key_body, *key_content, *key_status, *key_headers, *key_content_type;
static PyObject *key_text_type, *default_status, *empty_bytes, *empty_str;

static int
response_traverse(ResponseBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->ctype);
    Py_VISIT(self->headers);
    Py_VISIT(self->body);
    Py_VISIT(self->status);
    return 0;
}

static int
response_clear(ResponseBaseObject *self)
{
    Py_CLEAR(self->ctype);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->body);
    Py_CLEAR(self->status);
    return 0;
}

static void
response_dealloc(ResponseBaseObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    response_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The Python constructor: reference(self, *args, **kwds); 0, or -1 with its error. */
static int
call_reference(PyObject *reference, PyObject *self, PyObject *args, PyObject *kwds)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *all = PyTuple_New(n + 1);
    if (all == NULL)
        return -1;
    PyTuple_SET_ITEM(all, 0, Py_NewRef(self));
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(all, i + 1, Py_NewRef(PyTuple_GET_ITEM(args, i)));
    PyObject *result = PyObject_Call(reference, all, kwds);
    Py_DECREF(all);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* body.encode("utf-8", "surrogateescape"), or NULL with no exception set on failure
   (the Python constructor then raises it). */
static PyObject *
encode_body(PyObject *text)
{
    if (PyUnicode_IS_ASCII(text)) /* its UTF-8 is its data */
        return PyBytes_FromStringAndSize((const char *)PyUnicode_DATA(text),
                                         PyUnicode_GET_LENGTH(text));
    PyObject *data = PyUnicode_AsEncodedString(text, "utf-8", "surrogateescape");
    if (data == NULL)
        PyErr_Clear();
    return data;
}

/* self.text_type (a new reference): straight from the class when that is a plain str,
   the instance has no __dict__ to shadow it and its class no __getattribute__ of its own. */
static PyObject *
text_type_of(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (tp->tp_dictoffset == 0 && tp->tp_getattro == PyObject_GenericGetAttr) {
        PyObject *value = _PyType_Lookup(tp, key_text_type); /* borrowed */
        if (value != NULL && PyUnicode_CheckExact(value))
            return Py_NewRef(value);
    }
    return PyObject_GetAttr(self, key_text_type);
}

static int
response_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    ResponseBaseObject *self = (ResponseBaseObject *)op;
    if (init_reference == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ResponseBase: setup_response_init() first");
        return -1;
    }
    if (Py_IS_TYPE(op, response_base_type)) { /* only its subclasses are responses */
        PyErr_SetString(PyExc_TypeError,
                        "ResponseBase is the base of takefive.response.Response: use that");
        return -1;
    }
    int text = PyType_IsSubtype(Py_TYPE(op), text_class);
    PyObject *reference = text ? text_reference : init_reference;
    /* The arguments: (body or content, status, headers, content_type), each by position
       or by name; anything else (too many, unknown or repeated names) is the Python
       constructor's to refuse. Borrowed: the caller holds args and kwds. */
    PyObject *given[4] = {NULL, NULL, NULL, NULL};
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs > 4)
        return call_reference(reference, op, args, kwds);
    for (Py_ssize_t i = 0; i < nargs; i++)
        given[i] = PyTuple_GET_ITEM(args, i);
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyObject *names[4] = {text ? key_content : key_body, key_status, key_headers,
                              key_content_type};
        Py_ssize_t found = 0;
        for (int i = 0; i < 4; i++) {
            PyObject *value = PyDict_GetItemWithError(kwds, names[i]);
            if (value == NULL) {
                if (PyErr_Occurred())
                    return -1;
                continue;
            }
            if (given[i] != NULL) /* by position and by name */
                return call_reference(reference, op, args, kwds);
            given[i] = value;
            found++;
        }
        if (found != PyDict_GET_SIZE(kwds)) /* a name it does not take */
            return call_reference(reference, op, args, kwds);
    }
    PyObject *body = given[0], *status = given[1] != NULL ? given[1] : default_status;
    PyObject *content_type = given[3];
    if (body == NULL)
        body = text ? empty_str : empty_bytes;
    if ((given[2] != NULL && given[2] != Py_None) || !PyLong_CheckExact(status))
        return call_reference(reference, op, args, kwds);
    int known = PyDict_Contains(status_lines, status); /* exact int key: no Python code */
    if (known <= 0)
        return known < 0 ? -1 : call_reference(reference, op, args, kwds);
    if (content_type == Py_None)
        content_type = NULL;

    PyObject *data, *ctype;
    if (text) { /* _text_init's common case: a str, no content_type */
        if (!PyUnicode_CheckExact(body) || content_type != NULL)
            return call_reference(reference, op, args, kwds);
        ctype = text_type_of(op); /* self.text_type */
        if (ctype == NULL)
            return -1;
        data = encode_body(body);
        if (data == NULL) {
            Py_DECREF(ctype);
            return call_reference(reference, op, args, kwds);
        }
    }
    else { /* _response_init's: a str or bytes body, a content type checked before */
        if (PyUnicode_CheckExact(body)) { /* in the Python code's order: encode, then */
            data = encode_body(body);     /* read text_type, even when content_type wins */
            if (data == NULL)
                return call_reference(reference, op, args, kwds);
            ctype = text_type_of(op);
            if (ctype == NULL) {
                Py_DECREF(data);
                return -1;
            }
            if (content_type != NULL)
                Py_SETREF(ctype, Py_NewRef(content_type));
        }
        else if (PyBytes_CheckExact(body)) {
            data = Py_NewRef(body);
            ctype = Py_NewRef(content_type != NULL ? content_type
                              : PyBytes_GET_SIZE(body) ? octets : Py_None);
        }
        else
            return call_reference(reference, op, args, kwds);
        int checked = ctype == Py_None;
        if (!checked && PyUnicode_CheckExact(ctype)) {
            checked = PySet_Contains(checked_types, ctype); /* exact str: no Python code */
            if (checked < 0) {
                Py_DECREF(ctype);
                Py_DECREF(data);
                return -1;
            }
        }
        if (!checked) {
            Py_DECREF(ctype);
            Py_DECREF(data);
            return call_reference(reference, op, args, kwds);
        }
    }
    /* As the Python code: status, body, then the headers (none but the type). */
    Py_XSETREF(self->status, Py_NewRef(status));
    Py_XSETREF(self->body, data);
    Py_XSETREF(self->headers, Py_NewRef(Py_None));
    Py_XSETREF(self->ctype, ctype);
    return 0;
}

static PyMemberDef response_members[] = {
    {"_ctype", T_OBJECT_EX, offsetof(ResponseBaseObject, ctype), 0, NULL},
    {"_headers", T_OBJECT_EX, offsetof(ResponseBaseObject, headers), 0, NULL},
    {"body", T_OBJECT_EX, offsetof(ResponseBaseObject, body), 0, NULL},
    {"status", T_OBJECT_EX, offsetof(ResponseBaseObject, status), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot response_type_slots[] = {
    {Py_tp_doc, "The slots and the common constructor of takefive.response.Response."},
    {Py_tp_init, response_init},
    {Py_tp_dealloc, response_dealloc},
    {Py_tp_traverse, response_traverse},
    {Py_tp_clear, response_clear},
    {Py_tp_members, response_members},
    {0, NULL},
};

static PyType_Spec response_type_spec = {
    "takefive._speedups.ResponseBase",
    sizeof(ResponseBaseObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    response_type_slots,
};

PyDoc_STRVAR(setup_response_init_doc,
"setup_response_init(response_init, text_init, text_class, status_lines, checked_types,\n"
"                    octets) -> None\n\n"
"What ResponseBase's constructor needs: the Python constructors it stands for (of\n"
"Response, and of text_class and its subclasses), the known statuses, the checked\n"
"content types and the type of a non-empty bytes body.");

static PyObject *
setup_response_init(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
        !PyType_Check(args[2]) || !PyDict_CheckExact(args[3]) || !PySet_CheckExact(args[4]) ||
        !PyUnicode_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_response_init(callable, callable, type, dict, set, str)");
        return NULL;
    }
    Py_XSETREF(init_reference, Py_NewRef(args[0]));
    Py_XSETREF(text_reference, Py_NewRef(args[1]));
    Py_XSETREF(text_class, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(status_lines, Py_NewRef(args[3]));
    Py_XSETREF(checked_types, Py_NewRef(args[4]));
    Py_XSETREF(octets, Py_NewRef(args[5]));
    Py_RETURN_NONE;
}

static PyMethodDef speedups_methods[] = {
    {"parse_common", (PyCFunction)(void (*)(void))parse_common, METH_FASTCALL, parse_common_doc},
    {"setup_parse", (PyCFunction)(void (*)(void))setup_parse, METH_FASTCALL, setup_parse_doc},
    {"parse_request", parse_request, METH_O, parse_request_doc},
    {"encode_reply", (PyCFunction)(void (*)(void))encode_reply, METH_FASTCALL, encode_reply_doc},
    {"encode_sized_reply", (PyCFunction)(void (*)(void))encode_sized_reply, METH_FASTCALL,
     encode_sized_reply_doc},
    {"setup_request", (PyCFunction)(void (*)(void))setup_request, METH_FASTCALL,
     setup_request_doc},
    {"request_slots", request_slot_names, METH_NOARGS,
     "The names of the Request slots request_from() fills."},
    {"request_from", request_from, METH_O, request_from_doc},
    {"setup_response", (PyCFunction)(void (*)(void))setup_response, METH_FASTCALL,
     setup_response_doc},
    {"response_frame", (PyCFunction)(void (*)(void))response_frame, METH_FASTCALL,
     response_frame_doc},
    {"reply_frame", (PyCFunction)(void (*)(void))reply_frame, METH_FASTCALL, reply_frame_doc},
    {"setup_response_init", (PyCFunction)(void (*)(void))setup_response_init, METH_FASTCALL,
     setup_response_init_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "takefive._speedups",
    "Optional C versions of takefive.wire's hot path (see wire.py for the reference).",
    0,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    key_method = PyUnicode_InternFromString("METHOD");
    key_path = PyUnicode_InternFromString("PATH");
    key_version = PyUnicode_InternFromString("VERSION");
    key_connection = PyUnicode_InternFromString("connection");
    http10 = PyUnicode_InternFromString("HTTP/1.0");
    if (!key_method || !key_path || !key_version || !key_connection || !http10)
        return NULL;
    key_body = PyUnicode_InternFromString("body");
    key_content = PyUnicode_InternFromString("content");
    key_status = PyUnicode_InternFromString("status");
    key_headers = PyUnicode_InternFromString("headers");
    key_content_type = PyUnicode_InternFromString("content_type");
    key_text_type = PyUnicode_InternFromString("text_type");
    default_status = PyLong_FromLong(200);
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    empty_str = PyUnicode_FromStringAndSize(NULL, 0);
    if (!key_body || !key_content || !key_status || !key_headers || !key_content_type ||
        !key_text_type || !default_status || !empty_bytes || !empty_str)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    PyObject *base = PyType_FromSpec(&response_type_spec);
    /* Its slots by name, as a Python class has them: copy and pickle read __slots__. */
    PyObject *slots = base == NULL ? NULL
        : Py_BuildValue("(ssss)", "_ctype", "_headers", "body", "status");
    if (slots == NULL || PyObject_SetAttrString(base, "__slots__", slots) < 0 ||
        PyModule_AddObjectRef(module, "ResponseBase", base) < 0) {
        Py_XDECREF(slots);
        Py_XDECREF(base);
        Py_DECREF(module);
        return NULL;
    }
    Py_DECREF(slots);
    response_base_type = (PyTypeObject *)base; /* the module holds it */
    Py_DECREF(base);
    return module;
}
