/* The handler-only load generator: C speed, so the handler is the bottleneck.
 *
 *   feeder FRAMES_FILE PUSH_ENDPOINT SUB_ENDPOINT TIMEOUT_SECONDS [WINDOW]
 *
 * FRAMES_FILE holds pre-built Mongrel2 request frames, each as a 4-byte big-endian
 * length followed by the frame. The feeder binds PUSH (the handler's send_spec) and
 * SUB (its recv_spec), probes with the first frame until a reply comes back (both
 * directions connected), prints READY, then pushes every frame as fast as the PUSH
 * socket takes them, with at most WINDOW (default 1000) requests unanswered, while
 * counting replies. It stops when all replies are in, when none came for 2 s, or when
 * the timeout passes, and prints one JSON line. Build: gcc -O2 feeder.c -lzmq
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int drain(void *sub) {
    int got = 0;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, sub, ZMQ_DONTWAIT) >= 0) got++;
    zmq_msg_close(&msg);
    return got;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s FRAMES_FILE PUSH_ENDPOINT SUB_ENDPOINT TIMEOUT_SECONDS [WINDOW]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size);
    if (!data || fread(data, 1, size, f) != (size_t)size) { fprintf(stderr, "cannot read frames\n"); return 2; }
    fclose(f);
    long count = 0, cap = 1024;
    unsigned char **frames = malloc(cap * sizeof *frames);
    size_t *lengths = malloc(cap * sizeof *lengths);
    for (long pos = 0; pos + 4 <= size;) {
        uint32_t len = (uint32_t)data[pos] << 24 | data[pos + 1] << 16 | data[pos + 2] << 8 | data[pos + 3];
        pos += 4;
        if (pos + len > size) { fprintf(stderr, "truncated frames file\n"); return 2; }
        if (count == cap) {
            cap *= 2;
            frames = realloc(frames, cap * sizeof *frames);
            lengths = realloc(lengths, cap * sizeof *lengths);
        }
        frames[count] = data + pos;
        lengths[count++] = len;
        pos += len;
    }
    if (count == 0) { fprintf(stderr, "no frames\n"); return 2; }
    double timeout = atof(argv[4]);
    long window = argc == 6 ? atol(argv[5]) : 1000;

    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_setsockopt(push, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(push, argv[2]) != 0 || zmq_bind(sub, argv[3]) != 0) {
        fprintf(stderr, "bind: %s\n", zmq_strerror(errno));
        return 2;
    }

    /* Probe until one reply arrives: the handler is connected both ways. */
    double deadline = now() + timeout;
    int ready = 0;
    zmq_pollitem_t probe[] = {{sub, 0, ZMQ_POLLIN, 0}};
    while (!ready && now() < deadline) {
        zmq_send(push, frames[0], lengths[0], ZMQ_DONTWAIT);
        if (zmq_poll(probe, 1, 100) > 0) ready = drain(sub) > 0;
    }
    if (!ready) {
        printf("{\"error\": \"no reply to the probe within %.0f s\"}\n", timeout);
        return 1;
    }
    /* Replies to probes still in flight: let them arrive and drop them. */
    double settle = now() + 0.3;
    while (now() < settle) {
        if (zmq_poll(probe, 1, 50) > 0) drain(sub);
    }
    printf("READY\n");
    fflush(stdout);

    long sent = 0, received = 0;
    double start = now(), last = start;
    deadline = start + timeout;
    zmq_pollitem_t items[] = {{sub, 0, ZMQ_POLLIN, 0}, {push, 0, ZMQ_POLLOUT, 0}};
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (received < count) {
        double t = now();
        if (t > deadline || t - last > 2.0) break;
        int sending = sent < count && sent - received < window;
        int n = zmq_poll(items, sending ? 2 : 1, 100);
        if (n < 0) break;
        if (items[1].revents & ZMQ_POLLOUT) {
            for (int i = 0; i < 1000 && sent < count && sent - received < window; i++) {
                if (zmq_send(push, frames[sent], lengths[sent], ZMQ_DONTWAIT) < 0) break;
                sent++;
            }
        }
        if (items[0].revents & ZMQ_POLLIN) {
            while (zmq_msg_recv(&msg, sub, ZMQ_DONTWAIT) >= 0) received++;
            last = now();
        }
        items[0].revents = items[1].revents = 0;
    }
    zmq_msg_close(&msg);
    double seconds = last - start;
    printf("{\"messages\": %ld, \"sent\": %ld, \"received\": %ld, \"seconds\": %.6f, "
           "\"msgs_per_s\": %.1f, \"window\": %ld, \"timed_out\": %s}\n",
           count, sent, received, seconds, seconds > 0 ? received / seconds : 0.0, window,
           received < count ? "true" : "false");
    zmq_close(push);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return received < count ? 1 : 0;
}
