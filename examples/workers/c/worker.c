/*
 * A takefive worker in C, against libzmq only: the T5W1 protocol of
 * docs/protocol.md, for job pools (--connect, PUSH/PULL) and service
 * dispatchers (--service, DEALER with READY and heartbeats).
 *
 * Messages served:
 *   jobs (PULL)      REQUEST, and REQUESTS (a batch of job records in one frame,
 *                    checked whole before any job runs); every job is answered
 *                    with its own REPLY or ERROR, PUSHed to the reply-to endpoint
 *                    (this worker never sends REPLIES, which the protocol allows)
 *   services (DEALER) READY and HEARTBEAT out; REQUEST, HEARTBEAT, DISCONNECT in;
 *                    REPLY or ERROR back on the DEALER. Services do not batch: a
 *                    REQUESTS there is logged and dropped like any unexpected type.
 * Anything malformed (a batch with one bad record included) is logged and dropped.
 *
 * It serves the reference task set (examples/workers/python/tasks.py):
 *   echo   the payload back, same encoding
 *   pid    this process id, as JSON
 *   sleep  sleep for the payload's seconds (a JSON number) and return it
 *   fail   always an ERROR "failed"
 *
 * Build: make -C examples/workers/c        (gcc, Debian's libzmq3-dev)
 * Run:   examples/workers/c/worker --service tcp://127.0.0.1:5555 --heartbeat 1
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define HEADER "T5W1"
#define MAX_FRAMES 16
#define MAX_LINKS 16
#define MAX_REPLY_TO 32
#define MAX_NAME 255

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static void *ctx;
static char info[128];
static double heartbeat = 1.0; /* seconds */
static int liveness = 3;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void logmsg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "c-worker %d: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------ frames */

typedef struct {
    int count;  /* frames received, or MAX_FRAMES + 1 when there were too many */
    int stored; /* frames kept in parts[] */
    zmq_msg_t parts[MAX_FRAMES];
} message_t;

static void message_close(message_t *m) {
    for (int i = 0; i < m->stored; i++) zmq_msg_close(&m->parts[i]);
    m->count = m->stored = 0;
}

/* Receive one multipart message (extra frames beyond MAX_FRAMES are read and
   counted, so the message is rejected as malformed). 0 ok, -1 nothing/error. */
static int message_recv(void *sock, message_t *m, int flags) {
    m->count = m->stored = 0;
    int more = 1, total = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, total ? 0 : flags) < 0) {
            zmq_msg_close(&part);
            message_close(m);
            return -1;
        }
        more = zmq_msg_more(&part);
        if (m->stored < MAX_FRAMES) m->parts[m->stored++] = part;
        else zmq_msg_close(&part);
        total++;
    }
    m->count = total > MAX_FRAMES ? MAX_FRAMES + 1 : total;
    return 0;
}

static size_t fsize(message_t *m, int i) { return zmq_msg_size(&m->parts[i]); }
static const char *fdata(message_t *m, int i) { return (const char *)zmq_msg_data(&m->parts[i]); }
static int feq(message_t *m, int i, const char *s) {
    size_t n = strlen(s);
    return fsize(m, i) == n && memcmp(fdata(m, i), s, n) == 0;
}

/* Send frames given as (pointer, length) pairs; the last one without SNDMORE. */
static int send_frames(void *sock, int n, const void **data, const size_t *len) {
    for (int i = 0; i < n; i++) {
        if (zmq_send(sock, data[i], len[i], i < n - 1 ? ZMQ_SNDMORE : 0) < 0) return -1;
    }
    return 0;
}

static int send_simple(void *sock, const char *type) {
    const void *d[] = {HEADER, type};
    size_t l[] = {4, strlen(type)};
    return send_frames(sock, 2, d, l);
}

/* ------------------------------------------------------------------ service links */

typedef struct {
    const char *endpoint;
    void *sock;
    double last_seen, next_heartbeat, backoff, reconnect_at;
} link_t;

static link_t links[MAX_LINKS];
static int nlinks = 0;

static void link_connect(link_t *l) {
    l->sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(l->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(l->sock, l->endpoint) != 0) {
        logmsg("cannot connect to %s: %s", l->endpoint, zmq_strerror(errno));
        exit(2);
    }
    char ms[16];
    snprintf(ms, sizeof ms, "%ld", lround(heartbeat * 1000));
    const void *d[] = {HEADER, "READY", ms, info, "echo", "fail", "pid", "sleep"};
    size_t len[] = {4, 5, strlen(ms), strlen(info), 4, 4, 3, 5};
    send_frames(l->sock, 8, d, len);
    l->last_seen = now();
    l->next_heartbeat = l->last_seen + heartbeat;
}

static void link_reset(link_t *l, int backoff) {
    if (l->sock) zmq_close(l->sock);
    l->sock = NULL;
    if (backoff) {
        l->backoff = l->backoff < heartbeat ? heartbeat : l->backoff * 2;
        if (l->backoff > 32 * heartbeat) l->backoff = 32 * heartbeat;
        l->reconnect_at = now() + l->backoff;
    } else {
        l->reconnect_at = now();
    }
}

static int has_input(void *sock) {
    int events = 0;
    size_t size = sizeof events;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
}

/* Heartbeats and reconnections that are due; called from the loop and during sleeps. */
static void links_tick(void) {
    double t = now();
    for (int i = 0; i < nlinks; i++) {
        link_t *l = &links[i];
        if (!l->sock) {
            if (!stopping && t >= l->reconnect_at) link_connect(l);
            continue;
        }
        /* Not silent if its messages wait unread (we were busy with a job or a batch). */
        if (t - l->last_seen > heartbeat * liveness && !has_input(l->sock)) {
            logmsg("dispatcher %s silent; reconnecting", l->endpoint);
            link_reset(l, 1);
            continue;
        }
        if (t >= l->next_heartbeat) {
            send_simple(l->sock, "HEARTBEAT");
            l->next_heartbeat = t + heartbeat;
        }
    }
}

/* ------------------------------------------------------------------ result sockets */

static struct { char endpoint[MAX_NAME + 1]; void *sock; } results[MAX_REPLY_TO];
static int nresults = 0;

static void *result_socket(const char *endpoint, size_t n) {
    if (n == 0 || n > MAX_NAME) return NULL;
    for (int i = 0; i < nresults; i++)
        if (strlen(results[i].endpoint) == n && memcmp(results[i].endpoint, endpoint, n) == 0)
            return results[i].sock;
    if (nresults == MAX_REPLY_TO) return NULL;
    memcpy(results[nresults].endpoint, endpoint, n);
    results[nresults].endpoint[n] = 0;
    void *sock = zmq_socket(ctx, ZMQ_PUSH);
    int linger = 2000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(sock, results[nresults].endpoint) != 0) {
        logmsg("cannot connect to reply-to %s", results[nresults].endpoint);
        zmq_close(sock);
        return NULL;
    }
    results[nresults].sock = sock;
    return results[nresults++].sock;
}

/* ------------------------------------------------------------------ the task set */

/* A field of a job: a pointer into a received frame, and its length. */
typedef struct { const char *p; size_t n; } span_t;
typedef struct { span_t id, name, enc, payload; } job_t;

static int valid_name(const char *s, size_t n, int printable_only) {
    if (n == 0 || n > MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (printable_only) {
            if (c < 0x21 || c > 0x7e) return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '.' || c == ':' || c == '/' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* A JSON number and nothing else (leading/trailing blanks allowed). */
static int parse_seconds(const char *s, size_t n, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r') end++;
    if (errno || *end || end == buf || !isfinite(v) || v < 0 || buf[0] == '+') return -1;
    *out = v;
    return 0;
}

/* HEARTBEAT to every dispatcher that is due one, while busy (they would think us dead). */
static void heartbeat_due(void) {
    for (int i = 0; i < nlinks; i++) {
        link_t *l = &links[i];
        if (l->sock && now() >= l->next_heartbeat) {
            send_simple(l->sock, "HEARTBEAT");
            l->next_heartbeat = now() + heartbeat;
        }
    }
}

/* Sleep, still heartbeating every dispatcher. */
static void busy_sleep(double seconds) {
    double until = now() + seconds;
    for (double t = now(); t < until; t = now()) {
        double step = until - t;
        if (step > heartbeat / 4) step = heartbeat / 4;
        struct timespec ts = {(time_t)step, (long)((step - (time_t)step) * 1e9)};
        nanosleep(&ts, NULL);
        heartbeat_due();
    }
}

/* Send ERROR or REPLY for `job` (its job-id echoed unchanged). */
static void send_error(void *sock, const job_t *job, const char *code, const char *text) {
    const void *d[] = {HEADER, "ERROR", job->id.p, code, text};
    size_t l[] = {4, 5, job->id.n, strlen(code), strlen(text)};
    send_frames(sock, 5, d, l);
}

static void send_reply(void *sock, const job_t *job, const char *enc, const void *p, size_t n) {
    const void *d[] = {HEADER, "REPLY", job->id.p, enc, p};
    size_t l[] = {4, 5, job->id.n, strlen(enc), n};
    send_frames(sock, 5, d, l);
}

static int span_eq(span_t s, const char *lit) {
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* The field rules of docs/protocol.md: job-id printable ASCII, name and encoding names. */
static int valid_job(const job_t *job) {
    return valid_name(job->id.p, job->id.n, 1) && valid_name(job->name.p, job->name.n, 0) &&
           valid_name(job->enc.p, job->enc.n, 0);
}

/* Run one valid job and answer it with one REPLY or ERROR on `out`. */
static void run_job(const job_t *job, void *out) {
    char enc[MAX_NAME + 1];
    memcpy(enc, job->enc.p, job->enc.n);
    enc[job->enc.n] = 0;
    int known_enc = !strcmp(enc, "json") || !strcmp(enc, "msgpack") || !strcmp(enc, "raw");
    if (!known_enc) {
        char text[320];
        snprintf(text, sizeof text, "unknown payload encoding '%s'", enc);
        send_error(out, job, "bad-request", text);
    } else if (span_eq(job->name, "echo")) {
        send_reply(out, job, enc, job->payload.p, job->payload.n);
    } else if (span_eq(job->name, "pid")) {
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
        send_reply(out, job, "json", pid, (size_t)n);
    } else if (span_eq(job->name, "sleep")) {
        double seconds;
        if (strcmp(enc, "json") || parse_seconds(job->payload.p, job->payload.n, &seconds)) {
            send_error(out, job, "failed", "ValueError: sleep takes a non-negative number of seconds");
        } else {
            busy_sleep(seconds);
            send_reply(out, job, "json", job->payload.p, job->payload.n);
        }
    } else if (span_eq(job->name, "fail")) {
        send_error(out, job, "failed", "RuntimeError: failed on purpose");
    } else {
        char text[320];
        snprintf(text, sizeof text, "no function '%.*s' here (known: echo, fail, pid, sleep)",
                 (int)job->name.n, job->name.p);
        send_error(out, job, "unknown", text);
    }
}

/* frames: T5W1 REQUEST job-id name encoding payload reply-to.  `out` is the socket to
   answer on (a DEALER), or NULL to answer on the reply-to endpoint (jobs). */
static void handle_request(message_t *m, void *out) {
    if (m->count != 7) {
        logmsg("dropping a malformed REQUEST (%d frames)", m->count);
        return;
    }
    job_t job = {{fdata(m, 2), fsize(m, 2)}, {fdata(m, 3), fsize(m, 3)},
                 {fdata(m, 4), fsize(m, 4)}, {fdata(m, 5), fsize(m, 5)}};
    if (!valid_job(&job)) {
        logmsg("dropping a malformed REQUEST (invalid job-id, name or encoding)");
        return;
    }
    if (!out) {
        out = result_socket(fdata(m, 6), fsize(m, 6));
        if (!out) {
            logmsg("dropping a job without a usable reply-to endpoint");
            return;
        }
    }
    run_job(&job, out);
}

/* Read the job record at body[*pos] (1 byte each: job-id, name and encoding lengths;
   4 bytes payload length, unsigned big-endian; then the four fields) into `job` and
   move *pos past it. NULL when it is valid, else why it is not. */
static const char *next_job(const char *body, size_t end, size_t *pos, job_t *job) {
    const unsigned char *h = (const unsigned char *)body + *pos;
    if (end - *pos < 7) return "a truncated job record";
    size_t id_n = h[0], name_n = h[1], enc_n = h[2];
    uint64_t data_n = (uint64_t)h[3] << 24 | (uint64_t)h[4] << 16 | (uint64_t)h[5] << 8 | h[6];
    size_t at = *pos + 7;
    if ((uint64_t)id_n + name_n + enc_n + data_n > (uint64_t)(end - at))
        return "a job record running past the end";
    job->id = (span_t){body + at, id_n};
    job->name = (span_t){body + at + id_n, name_n};
    job->enc = (span_t){body + at + id_n + name_n, enc_n};
    job->payload = (span_t){body + at + id_n + name_n + enc_n, (size_t)data_n};
    *pos = at + id_n + name_n + enc_n + (size_t)data_n;
    return valid_job(job) ? NULL : "an invalid job-id, name or encoding";
}

/* frames: T5W1 REQUESTS reply-to jobs (docs/protocol.md, Batches). The whole body is
   checked before any job runs: one bad record and none of the batch is answered.
   Each job is then answered with its own REPLY or ERROR to the batch's reply-to.
   Returns the number of jobs run. */
static long handle_requests(message_t *m) {
    if (m->count != 4) {
        logmsg("dropping a malformed REQUESTS (%d frames)", m->count);
        return 0;
    }
    const char *body = fdata(m, 3);
    size_t end = fsize(m, 3), pos = 0;
    long count = 0;
    job_t job;
    if (end == 0) {
        logmsg("dropping a malformed REQUESTS: no job in it");
        return 0;
    }
    while (pos < end) {
        const char *why = next_job(body, end, &pos, &job);
        if (why) {
            logmsg("dropping a malformed REQUESTS: %s (job %ld)", why, count + 1);
            return 0;
        }
        count++;
    }
    void *out = result_socket(fdata(m, 2), fsize(m, 2));
    if (!out) {
        logmsg("dropping a batch of %ld job(s) without a usable reply-to endpoint", count);
        return 0;
    }
    /* A batch read is run to its end, even once stopping: its jobs are ours alone. */
    for (pos = 0; pos < end;) {
        next_job(body, end, &pos, &job);
        run_job(&job, out);
        heartbeat_due(); /* dispatchers of a worker serving both, between quick jobs */
    }
    return count;
}

/* A message from a dispatcher. */
static void handle_link_message(link_t *l, message_t *m) {
    l->last_seen = now();
    l->backoff = 0;
    if (m->count < 2 || m->count > MAX_FRAMES || !feq(m, 0, HEADER)) {
        logmsg("dropping a bad message from %s", l->endpoint);
    } else if (feq(m, 1, "REQUEST")) {
        handle_request(m, l->sock);
        l->next_heartbeat = now() + heartbeat;
    } else if (feq(m, 1, "HEARTBEAT") && m->count == 2) {
        /* alive */
    } else if (feq(m, 1, "DISCONNECT") && m->count == 2) {
        logmsg("dispatcher %s said DISCONNECT; reconnecting", l->endpoint);
        link_reset(l, 0);
    } else if (feq(m, 1, "REQUESTS")) {
        logmsg("dropping a REQUESTS from %s: services do not batch", l->endpoint);
    } else {
        logmsg("dropping an unexpected message from %s", l->endpoint);
    }
}

/* ------------------------------------------------------------------ main */

static long jobs_done = 0;

/* A message from a job pool's PULL socket. */
static void serve_job(message_t *m) {
    int ours = m->count >= 2 && m->count <= MAX_FRAMES && feq(m, 0, HEADER);
    if (ours && feq(m, 1, "REQUEST")) {
        handle_request(m, NULL);
        jobs_done++;
    } else if (ours && feq(m, 1, "REQUESTS")) {
        jobs_done += handle_requests(m);
    } else {
        logmsg("dropping a bad message on the job socket");
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: worker [--connect JOBS_ENDPOINT]... [--service DISPATCHER_ENDPOINT]...\n"
            "              [--heartbeat SECONDS] [--liveness N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *connects[MAX_LINKS];
    int nconnect = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--connect") && nconnect < MAX_LINKS) connects[nconnect++] = argv[++i];
        else if (!strcmp(argv[i], "--service") && nlinks < MAX_LINKS) links[nlinks++].endpoint = argv[++i];
        else if (!strcmp(argv[i], "--heartbeat")) heartbeat = atof(argv[++i]);
        else if (!strcmp(argv[i], "--liveness")) liveness = atoi(argv[++i]);
        else usage();
    }
    if ((!nconnect && !nlinks) || heartbeat <= 0 || liveness < 1) usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(info, sizeof info, "c/%d@%s", (int)getpid(), host);

    ctx = zmq_ctx_new();
    void *pull = NULL;
    if (nconnect) {
        pull = zmq_socket(ctx, ZMQ_PULL);
        int zero = 0, hwm = 20; /* messages taken ahead: lost if this worker dies */
        zmq_setsockopt(pull, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
        for (int i = 0; i < nconnect; i++) {
            if (zmq_connect(pull, connects[i]) != 0) {
                logmsg("cannot connect to %s: %s", connects[i], zmq_strerror(errno));
                return 2;
            }
        }
    }
    for (int i = 0; i < nlinks; i++) link_connect(&links[i]);
    logmsg("%s serving echo, fail, pid, sleep", info);

    message_t m;
    while (!stopping) {
        zmq_pollitem_t items[MAX_LINKS + 1];
        link_t *owner[MAX_LINKS + 1];
        int n = 0;
        if (pull) { items[n] = (zmq_pollitem_t){pull, 0, ZMQ_POLLIN, 0}; owner[n++] = NULL; }
        for (int i = 0; i < nlinks; i++) {
            if (links[i].sock) {
                items[n] = (zmq_pollitem_t){links[i].sock, 0, ZMQ_POLLIN, 0};
                owner[n++] = &links[i];
            }
        }
        long timeout = 100;
        double t = now();
        for (int i = 0; i < nlinks; i++) {
            double due = links[i].sock ? links[i].next_heartbeat : links[i].reconnect_at;
            long ms = (long)ceil((due - t) * 1000);
            if (ms < timeout) timeout = ms < 0 ? 0 : ms;
        }
        int rc = zmq_poll(items, n, timeout);
        if (rc < 0 && errno != EINTR) break;
        /* Once stopping, start no new job (the one that just ran has been answered). */
        for (int i = 0; rc > 0 && i < n && !stopping; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            if (owner[i] == NULL) {
                if (message_recv(pull, &m, ZMQ_DONTWAIT) == 0) {
                    serve_job(&m);
                    message_close(&m);
                }
            } else {
                link_t *l = owner[i];
                while (!stopping && l->sock && message_recv(l->sock, &m, ZMQ_DONTWAIT) == 0) {
                    int was_request = m.count == 7 && feq(&m, 1, "REQUEST");
                    handle_link_message(l, &m);
                    jobs_done += was_request;
                    message_close(&m);
                }
            }
        }
        links_tick();
    }

    /* Clean leave (docs/protocol.md), in this order: read every message already queued
       on the PULL socket (REQUEST and REQUESTS alike: serve_job runs both), then
       disconnect it (libzmq discards what is still queued on a pipe whose endpoint is
       disconnected), say DISCONNECT to each dispatcher (no call
       of theirs is running: their requests still queued here are dropped, and the
       dispatcher retries or fails them), then run the jobs read and send their results. */
    message_t *held = NULL;
    size_t nheld = 0, cap = 0;
    if (pull) {
        for (;;) {
            if (nheld == cap) {
                size_t bigger = cap ? 2 * cap : 16;
                message_t *grown = realloc(held, bigger * sizeof *held);
                if (!grown) {
                    logmsg("out of memory: jobs still queued are dropped");
                    break;
                }
                held = grown;
                cap = bigger;
            }
            if (message_recv(pull, &held[nheld], ZMQ_DONTWAIT) != 0) break;
            nheld++;
        }
        for (int i = 0; i < nconnect; i++) zmq_disconnect(pull, connects[i]);
    }
    for (int i = 0; i < nlinks; i++) {
        if (links[i].sock) {
            send_simple(links[i].sock, "DISCONNECT");
            int linger = 500;
            zmq_setsockopt(links[i].sock, ZMQ_LINGER, &linger, sizeof linger);
            zmq_close(links[i].sock);
            links[i].sock = NULL;
        }
    }
    if (nheld) logmsg("stopping: running the %zu message(s) of jobs already received", nheld);
    for (size_t i = 0; i < nheld; i++) {
        serve_job(&held[i]);
        message_close(&held[i]);
    }
    free(held);
    if (pull) zmq_close(pull);
    for (int i = 0; i < nresults; i++) zmq_close(results[i].sock); /* LINGER 2 s: results get out */
    zmq_ctx_term(ctx);
    logmsg("stopped after %ld job(s)", jobs_done);
    return 0;
}
