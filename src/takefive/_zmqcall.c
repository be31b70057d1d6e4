/*
 * takefive._zmqcall: non-blocking receive and send straight through libzmq, for the
 * handler runner's hot path. Optional: takefive._zmqutil falls back to pyzmq.
 *
 * Why: reading an empty socket with pyzmq raises zmq.Again, and building that exception
 * through Cython frames costs about 25,000 CPU instructions; the runner ends every turn
 * of its reader on one, or asks zmq_poll (a poll() system call) before each read to
 * avoid it. Here an empty socket returns None, and a read or a send costs a C call.
 *
 * No libzmq header or library is needed at build time. The functions are the ones pyzmq
 * itself calls, looked up at run time in pyzmq's own backend (ctypes, see
 * takefive/_zmqutil.py) and handed to bind() as addresses, so the socket handles of
 * pyzmq's sockets are used by the same libzmq that made them. Only libzmq >= 4.1 is
 * bound (zmq_msg_t is 64 bytes there).
 *
 * A Socket does not own its libzmq socket. It holds the pyzmq socket it was made from
 * (which may be a shadow that owns nothing either): whoever closes the libzmq socket
 * must call detach() first. After detach() every call raises.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stddef.h>

#define ZMQ_DONTWAIT 1

/* libzmq's zmq_msg_t: 64 opaque bytes, pointer-aligned. */
typedef struct {
    _Alignas(16) unsigned char _[64];
} zmsg_t;

typedef int (*msg_init_fn)(zmsg_t *);
typedef int (*msg_recv_fn)(zmsg_t *, void *, int);
typedef void *(*msg_data_fn)(zmsg_t *);
typedef size_t (*msg_size_fn)(const zmsg_t *);
typedef int (*msg_close_fn)(zmsg_t *);
typedef int (*send_fn)(void *, const void *, size_t, int);
typedef int (*errno_fn)(void);

static msg_init_fn z_msg_init = NULL;
static msg_recv_fn z_msg_recv = NULL;
static msg_data_fn z_msg_data = NULL;
static msg_size_fn z_msg_size = NULL;
static msg_close_fn z_msg_close = NULL;
static send_fn z_send = NULL;
static errno_fn z_errno = NULL;     /* zmq_errno: libzmq's errno (its C runtime's) */
static PyObject *error_of = NULL;   /* errno -> the exception to raise (zmq.Again, ...) */

static PyObject *
raise_errno(int err)
{
    if (error_of == NULL) { /* bind() not called: only a Socket never made by __init__ */
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *exc = PyObject_CallFunction(error_of, "i", err);
    if (exc == NULL)
        return NULL;
    if (PyExceptionInstance_Check(exc))
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    else
        PyErr_Format(PyExc_TypeError, "error_of(%d) returned %R, not an exception", err, exc);
    Py_DECREF(exc);
    return NULL;
}

static void *
address_of(PyObject *value, const char *what)
{
    void *p = PyLong_AsVoidPtr(value);
    if (p == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "%s: a null address", what);
    return p;
}

PyDoc_STRVAR(bind_doc,
"bind(msg_init, msg_recv, msg_data, msg_size, msg_close, send, errno, error_of)\n\n"
"Addresses of libzmq's zmq_msg_init, zmq_msg_recv, zmq_msg_data, zmq_msg_size,\n"
"zmq_msg_close, zmq_send and zmq_errno (the library pyzmq uses), and error_of(errno),\n"
"which gives the exception to raise (zmq.Again, zmq.ContextTerminated, zmq.ZMQError).");

static PyObject *
bind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "bind() takes 8 arguments");
        return NULL;
    }
    void *fns[7];
    static const char *const names[7] = {"msg_init", "msg_recv", "msg_data", "msg_size",
                                         "msg_close", "send", "errno"};
    for (int i = 0; i < 7; i++) {
        fns[i] = address_of(args[i], names[i]);
        if (fns[i] == NULL)
            return NULL;
    }
    if (!PyCallable_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "bind(): error_of must be callable");
        return NULL;
    }
    z_msg_init = (msg_init_fn)fns[0];
    z_msg_recv = (msg_recv_fn)fns[1];
    z_msg_data = (msg_data_fn)fns[2];
    z_msg_size = (msg_size_fn)fns[3];
    z_msg_close = (msg_close_fn)fns[4];
    z_send = (send_fn)fns[5];
    z_errno = (errno_fn)fns[6];
    Py_INCREF(args[7]);
    Py_XSETREF(error_of, args[7]);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------- Socket */

typedef struct {
    PyObject_HEAD
    void *handle;    /* the libzmq socket; NULL once detached */
    PyObject *owner; /* the pyzmq socket that owns it */
} SocketObject;

static int
socket_init(SocketObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *owner;
    static char *kwlist[] = {"owner", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Socket", kwlist, &owner))
        return -1;
    if (z_msg_recv == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "takefive._zmqcall: bind() was not called");
        return -1;
    }
    PyObject *underlying = PyObject_GetAttrString(owner, "underlying");
    if (underlying == NULL)
        return -1;
    void *handle = address_of(underlying, "underlying");
    Py_DECREF(underlying);
    if (handle == NULL)
        return -1;
    self->handle = handle;
    Py_INCREF(owner);
    Py_XSETREF(self->owner, owner);
    return 0;
}

static int
socket_traverse(SocketObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->owner);
    return 0;
}

static int
socket_clear(SocketObject *self)
{
    self->handle = NULL;
    Py_CLEAR(self->owner);
    return 0;
}

static void
socket_dealloc(SocketObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    socket_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* 1 while the socket may be used; else raises ZMQError(ENOTSOCK) and returns 0. Checked
 * again after every signal handler, which may have detached it. */
static int
attached(SocketObject *self)
{
    if (self->handle != NULL)
        return 1;
    raise_errno(ENOTSOCK);
    return 0;
}

PyDoc_STRVAR(recv_doc,
"recv() -> bytes | None\n\n"
"The next frame, or None when none is waiting (never blocks, never raises zmq.Again).\n"
"A multipart message comes one frame per call, as with pyzmq's recv().");

static PyObject *
socket_recv(SocketObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!attached(self))
        return NULL;
    zmsg_t msg;
    z_msg_init(&msg);
    for (;;) {
        if (z_msg_recv(&msg, self->handle, ZMQ_DONTWAIT) >= 0)
            break;
        int err = z_errno();
        if (err == EINTR) { /* a signal: let Python see it, then read on */
            if (PyErr_CheckSignals() < 0 || !attached(self)) {
                z_msg_close(&msg);
                return NULL;
            }
            continue;
        }
        z_msg_close(&msg);
        if (err == EAGAIN)
            Py_RETURN_NONE;
        return raise_errno(err);
    }
    PyObject *frame = PyBytes_FromStringAndSize((const char *)z_msg_data(&msg),
                                                (Py_ssize_t)z_msg_size(&msg));
    z_msg_close(&msg);
    return frame;
}

PyDoc_STRVAR(send_doc,
"send(data) -> None\n\n"
"Sends bytes as one frame, copied, without blocking: zmq.Again if the socket cannot\n"
"take it now (a PUB socket never says so: past its high-water mark it drops).");

static PyObject *
socket_send(SocketObject *self, PyObject *data)
{
    if (!attached(self))
        return NULL;
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "send() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    for (;;) {
        if (z_send(self->handle, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data),
                   ZMQ_DONTWAIT) >= 0)
            Py_RETURN_NONE;
        int err = z_errno();
        if (err != EINTR)
            return raise_errno(err);
        if (PyErr_CheckSignals() < 0 || !attached(self))
            return NULL;
    }
}

PyDoc_STRVAR(detach_doc,
"detach() -> None\n\nForget the libzmq socket (before its owner closes it): every later\n"
"call raises zmq.ZMQError(ENOTSOCK).");

static PyObject *
socket_detach(SocketObject *self, PyObject *Py_UNUSED(ignored))
{
    self->handle = NULL;
    Py_RETURN_NONE;
}

static PyObject *
socket_get_owner(SocketObject *self, void *Py_UNUSED(closure))
{
    if (self->owner == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->owner);
}

static PyObject *
socket_get_attached(SocketObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->handle != NULL);
}

static PyMethodDef socket_methods[] = {
    {"recv", (PyCFunction)socket_recv, METH_NOARGS, recv_doc},
    {"send", (PyCFunction)socket_send, METH_O, send_doc},
    {"detach", (PyCFunction)socket_detach, METH_NOARGS, detach_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef socket_getset[] = {
    {"owner", (getter)socket_get_owner, NULL, "the pyzmq socket that owns this one", NULL},
    {"attached", (getter)socket_get_attached, NULL, "False once detach() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(socket_doc,
"Socket(owner)\n\nNon-blocking recv() and send() on the libzmq socket of ``owner`` (a\n"
"pyzmq socket), straight through libzmq. Call detach() before the owner is closed.");

static PyType_Slot socket_slots[] = {
    {Py_tp_doc, (void *)socket_doc},
    {Py_tp_init, (void *)socket_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)socket_dealloc},
    {Py_tp_traverse, (void *)socket_traverse},
    {Py_tp_clear, (void *)socket_clear},
    {Py_tp_methods, (void *)socket_methods},
    {Py_tp_getset, (void *)socket_getset},
    {0, NULL},
};

static PyType_Spec socket_spec = {
    .name = "takefive._zmqcall.Socket",
    .basicsize = sizeof(SocketObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = socket_slots,
};

/* ------------------------------------------------------------------------- module */

static PyMethodDef zmqcall_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL, bind_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef zmqcall_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "takefive._zmqcall",
    .m_doc = "Non-blocking libzmq calls for the runner's hot path (optional).",
    .m_size = -1,
    .m_methods = zmqcall_methods,
};

PyMODINIT_FUNC
PyInit__zmqcall(void)
{
    PyObject *module = PyModule_Create(&zmqcall_module);
    if (module == NULL)
        return NULL;
    PyObject *type = PyType_FromSpec(&socket_spec);
    if (type == NULL || PyModule_AddObject(module, "Socket", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
