/*
 * signer.hsm._p11batch: sign a whole batch in one call into the PKCS#11 module, with the GIL
 * released once for the batch.
 *
 * Why: python-pkcs11 releases the GIL around each of the two or three PKCS#11 calls of a sign
 * and must take it back after each. Under HTTP load the event loop holds the GIL most of the
 * time, so the PKCS#11 thread waited for it once per call, and those waits, not SoftHSM's
 * ECDSA, set the sign latency (docs/performance.md). Here the thread drops the GIL once, runs
 * C_SignInit and C_Sign for every job, and takes it back once.
 *
 * Only mechanisms without parameters are signed here (ECDSA, EdDSA, RSA PKCS#1 v1.5). The
 * module's own C_SignInit and C_Sign are passed in as addresses read from its
 * CK_FUNCTION_LIST, and the session and key handles are python-pkcs11's: this code opens,
 * finds and logs in nothing. A job that fails reports its CK_RV, and the caller signs it again
 * through python-pkcs11 to raise the right exception.
 *
 * Calls must not overlap (the module runs without locks): the caller holds the one PKCS#11
 * thread, as for every other call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* PKCS#11 v2.40 §3: CK_ULONG is an unsigned long; structures use the platform's packing. */
typedef unsigned long ck_ulong;
typedef struct {
    ck_ulong mechanism;
    void *parameter;
    ck_ulong parameter_len;
} ck_mechanism;
typedef ck_ulong (*sign_init_fn)(ck_ulong session, ck_mechanism *mechanism, ck_ulong key);
typedef ck_ulong (*sign_fn)(ck_ulong session, unsigned char *data, ck_ulong data_len,
                            unsigned char *signature, ck_ulong *signature_len);

#define CKR_OK 0UL
#define CKR_BUFFER_TOO_SMALL 0x150UL

typedef struct {
    ck_ulong key;
    ck_ulong mechanism;
    Py_buffer data;
    PyObject *signature; /* a bytes object of the job's capacity, shrunk after signing */
    ck_ulong signature_len;
    ck_ulong rv;
} job_t;

static void release_jobs(job_t *jobs, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        PyBuffer_Release(&jobs[i].data);
        Py_XDECREF(jobs[i].signature);
    }
    PyMem_Free(jobs);
}

/* Parse one (key handle, mechanism, data, capacity) tuple; 0 on success. */
static int parse_job(PyObject *item, job_t *job) {
    Py_ssize_t capacity;
    if (!PyArg_ParseTuple(item, "kky*n", &job->key, &job->mechanism, &job->data, &capacity)) {
        return -1;
    }
    if (capacity <= 0 || capacity > 65536) {
        PyBuffer_Release(&job->data);
        PyErr_SetString(PyExc_ValueError, "a signature capacity is 1 to 65536 bytes");
        return -1;
    }
    job->signature = PyBytes_FromStringAndSize(NULL, capacity);
    if (job->signature == NULL) {
        PyBuffer_Release(&job->data);
        return -1;
    }
    job->signature_len = (ck_ulong)capacity;
    return 0;
}

PyDoc_STRVAR(sign_batch_doc,
             "sign_batch(sign_init, sign, session, jobs) -> list\n\n"
             "Sign each (key handle, mechanism, data, capacity) job in turn with the module's\n"
             "C_SignInit and C_Sign (given as addresses) on one session, releasing the GIL once.\n"
             "Each result is the signature (bytes) or the job's nonzero CK_RV (int).");

static PyObject *sign_batch(PyObject *self, PyObject *args) {
    unsigned long long init_address, sign_address;
    ck_ulong session;
    PyObject *sequence;
    if (!PyArg_ParseTuple(args, "KKkO", &init_address, &sign_address, &session, &sequence)) {
        return NULL;
    }
    if (init_address == 0 || sign_address == 0) {
        PyErr_SetString(PyExc_ValueError, "C_SignInit and C_Sign must be non-null addresses");
        return NULL;
    }
    PyObject *items = PySequence_Fast(sequence, "jobs must be a sequence");
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    job_t *jobs = PyMem_Calloc(count > 0 ? (size_t)count : 1, sizeof(job_t));
    if (jobs == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    Py_ssize_t parsed = 0;
    for (; parsed < count; parsed++) {
        if (parse_job(PySequence_Fast_GET_ITEM(items, parsed), &jobs[parsed]) != 0) {
            release_jobs(jobs, parsed);
            Py_DECREF(items);
            return NULL;
        }
    }
    Py_DECREF(items); /* the buffers hold their own references to the data */

    sign_init_fn sign_init = (sign_init_fn)(uintptr_t)init_address;
    sign_fn sign = (sign_fn)(uintptr_t)sign_address;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        job_t *job = &jobs[i];
        ck_mechanism mechanism = {job->mechanism, NULL, 0};
        job->rv = sign_init(session, &mechanism, job->key);
        if (job->rv == CKR_OK) {
            job->rv = sign(session, (unsigned char *)job->data.buf, (ck_ulong)job->data.len,
                           (unsigned char *)PyBytes_AS_STRING(job->signature),
                           &job->signature_len);
        }
        if (job->rv == CKR_BUFFER_TOO_SMALL) {
            /* PKCS#11 v2.40 §5.2: the operation stays active after a short buffer, and would
             * refuse every later C_SignInit on the session. Finish it into a scratch buffer of
             * the length the module asked for; the job still reports the short buffer. */
            unsigned char *scratch = malloc(job->signature_len > 0 ? job->signature_len : 1);
            ck_ulong scratch_len = job->signature_len;
            if (scratch != NULL) {
                sign(session, (unsigned char *)job->data.buf, (ck_ulong)job->data.len, scratch,
                     &scratch_len);
                free(scratch);
            }
        }
    }
    Py_END_ALLOW_THREADS

    PyObject *results = PyList_New(count);
    if (results == NULL) {
        release_jobs(jobs, count);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        job_t *job = &jobs[i];
        PyObject *result;
        if (job->rv != CKR_OK) {
            result = PyLong_FromUnsignedLong(job->rv);
        } else if (_PyBytes_Resize(&job->signature, (Py_ssize_t)job->signature_len) == 0) {
            result = job->signature;
            job->signature = NULL; /* the list owns it now */
        } else {
            result = NULL; /* _PyBytes_Resize freed it and set the error */
        }
        if (result == NULL) {
            Py_DECREF(results);
            release_jobs(jobs, count);
            return NULL;
        }
        PyList_SET_ITEM(results, i, result);
    }
    release_jobs(jobs, count);
    return results;
}

static PyMethodDef methods[] = {
    {"sign_batch", sign_batch, METH_VARARGS, sign_batch_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "signer.hsm._p11batch",
    .m_doc = "Batch signing through a PKCS#11 module with the GIL released once per batch.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__p11batch(void) { return PyModule_Create(&module); }
