/*
 * rp_recv NAME [SIZE]: the payloads of a ringproof ring's messages on
 * standard output, byte-exact, until end of stream, as
 * `ringproof recv --name NAME --size SIZE` does. Creates the ring (SIZE,
 * default 1048576) when it does not exist, so either side may start first.
 *
 * Messages are released only after their bytes are written out, in batches
 * of about 256 KiB: a successor of a killed rp_recv resumes with no gap.
 * Exit 0 at end of stream, 3 when the producer died without closing (after
 * writing every message it committed), 2 on a corrupt segment.
 */
#define _GNU_SOURCE
#include "ringproof.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELEASE_EVERY (256 * 1024)

static unsigned char out_buf[RELEASE_EVERY];
static size_t out_len;

/* Writes it all; 0 when the reader of standard output went away. */
static int write_all(const unsigned char *bytes, size_t len) {
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, bytes, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE)
                return 0;
            rp_fail(RP_EXIT_UNEXPECTED, "writing standard output: %s", strerror(errno));
        }
        bytes += n;
        len -= (size_t)n;
    }
    return 1;
}

static int flush_out(void) {
    int ok = write_all(out_buf, out_len);
    out_len = 0;
    return ok;
}

/* Copies a payload out (it is in [head, tail), ours until released). */
static int emit(const unsigned char *payload, size_t len) {
    if (out_len + len > sizeof out_buf && !flush_out())
        return 0;
    if (len > sizeof out_buf)
        return write_all(payload, len);
    memcpy(out_buf + out_len, payload, len);
    out_len += len;
    return 1;
}

static void stats(const struct rp_consumer *c) {
    if (getenv("RP_STATS") != NULL)
        fprintf(stderr, "rp_recv: stats messages=%llu padding=%llu head=%llu capacity=%llu\n",
                (unsigned long long)c->messages, (unsigned long long)c->paddings,
                (unsigned long long)c->head, (unsigned long long)c->seg.capacity);
}

int main(int argc, char **argv) {
    rp_prog = "rp_recv";
    if (argc < 2 || argc > 3)
        rp_fail(RP_EXIT_INVALID, "usage: rp_recv NAME [SIZE]");
    uint64_t size = argc > 2 ? rp_parse_size(argv[2], "ring size") : 1048576;
    /* A closed standard output is EPIPE, not death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    struct rp_consumer c;
    rp_consumer_open(&c, argv[1], size);
    for (;;) {
        uint64_t next = c.head;
        size_t batch = 0;
        enum rp_find_result r;
        struct rp_found found;
        while ((r = rp_find(&c, next, &found)) == RP_FOUND) {
            if (!emit(found.payload, found.len)) {
                /* Not delivered: the batch stays in the ring for another reader. */
                rp_leave(&c.seg);
                return RP_EXIT_OK;
            }
            next = found.next;
            batch += found.len;
            if (batch >= RELEASE_EVERY)
                break;
        }
        if (!flush_out()) {
            rp_leave(&c.seg);
            return RP_EXIT_OK;
        }
        if (next != c.head)
            rp_release_to(&c, next);
        if (r == RP_END) {
            stats(&c);
            rp_leave(&c.seg);
            return RP_EXIT_OK;
        }
        if (r == RP_EMPTY)
            rp_wait_message(&c);
    }
}
