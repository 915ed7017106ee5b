/*
 * rp_send NAME [SIZE [MESSAGE_SIZE]]: standard input into a ringproof ring,
 * as `ringproof send --name NAME --size SIZE --message-size MESSAGE_SIZE`
 * does: each read(2) of at most MESSAGE_SIZE bytes (clamped to the ring's
 * largest message) is one message; at end of input the stream is closed.
 * SIZE (default 1048576) is used only when this side creates the ring.
 */
#define _GNU_SOURCE
#include "ringproof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    rp_prog = "rp_send";
    if (argc < 2 || argc > 4)
        rp_fail(RP_EXIT_INVALID, "usage: rp_send NAME [SIZE [MESSAGE_SIZE]]");
    uint64_t size = argc > 2 ? rp_parse_size(argv[2], "ring size") : 1048576;
    uint64_t message_size = argc > 3 ? rp_parse_size(argv[3], "message size") : 65536;

    struct rp_producer p;
    rp_producer_open(&p, argv[1], size);
    uint64_t max = rp_max_message(p.seg.capacity);
    size_t chunk = (size_t)(message_size < max ? message_size : max);
    unsigned char *buf = malloc(chunk);
    if (buf == NULL)
        rp_fail(RP_EXIT_UNEXPECTED, "out of memory");
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, chunk);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rp_fail(RP_EXIT_UNEXPECTED, "reading standard input: %s", strerror(errno));
        }
        rp_push(&p, buf, (size_t)n);
    }
    rp_close(&p);
    if (getenv("RP_STATS") != NULL)
        fprintf(stderr, "rp_send: stats messages=%llu padding=%llu tail=%llu capacity=%llu\n",
                (unsigned long long)p.messages, (unsigned long long)p.paddings,
                (unsigned long long)p.tail, (unsigned long long)p.seg.capacity);
    rp_leave(&p.seg);
    free(buf);
    return RP_EXIT_OK;
}
