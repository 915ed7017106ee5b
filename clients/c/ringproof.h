/*
 * ringproof.h: a ringproof peer in C11, written from docs/LAYOUT.md
 * (layout version 2). One producer or one consumer per process.
 *
 * Everything read from the segment is untrusted: each live value is loaded
 * once into a local, checked, and only then used. A broken rule ends the
 * process with exit code 2 and one line on stderr (rp_fail).
 */
#ifndef RINGPROOF_H
#define RINGPROOF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit codes, the same as the ringproof CLI's. */
enum {
    RP_EXIT_OK = 0,         /* success; rp_recv: end of stream reached */
    RP_EXIT_UNEXPECTED = 1, /* an OS call failed unexpectedly */
    RP_EXIT_INVALID = 2,    /* bad argument or name, corrupt segment, role taken, ... */
    RP_EXIT_PEER_DIED = 3,  /* rp_recv: the producer died without closing */
};

/* Header (docs/LAYOUT.md, "The segment"). */
#define RP_LAYOUT_VERSION 2u
#define RP_HEADER_SIZE 384u
#define RP_MIN_CAPACITY 32ull
#define RP_MAX_CAPACITY (1ull << 40)
#define RP_MAX_POSITION (1ull << 62)
#define RP_OFF_VERSION 8
#define RP_OFF_HEADER_SIZE 12
#define RP_OFF_CAPACITY 16
#define RP_OFF_CHECKSUM 24
#define RP_OFF_PRODUCER_GEN 32
#define RP_OFF_CONSUMER_GEN 36
#define RP_OFF_HEAD 128
#define RP_OFF_PRODUCER_WAIT 136
#define RP_OFF_TAIL 256
#define RP_OFF_CONSUMER_WAIT 264
#define RP_OFF_CLOSED 268

/* Records (docs/LAYOUT.md, "Records"). */
#define RP_RECORD_HEADER 8ull
#define RP_RECORD_MESSAGE 0x4D534701u
#define RP_RECORD_PADDING 0x50414401u

/* Lock bytes of the segment file (docs/LAYOUT.md, "Leases and the name lock"). */
#define RP_PRODUCER_BYTE 0
#define RP_CONSUMER_BYTE 1
#define RP_NAME_LOCK_BYTE 2

/* The longest single futex wait. */
#define RP_PARK_NS 50000000L

enum rp_role { RP_PRODUCER = 0, RP_CONSUMER = 1 };

/* A mapped segment whose header passed every check, with one role held. */
struct rp_seg {
    char name[258];       /* with its leading '/' */
    int fd;               /* the open file description that holds our locks */
    unsigned char *base;  /* the mapping, len bytes */
    size_t len;
    dev_t dev;            /* identity of the file, to tell whether the name */
    ino_t ino;            /* still refers to it */
    uint64_t capacity;    /* checked: a power of two in range */
    enum rp_role role;
};

struct rp_producer {
    struct rp_seg seg;
    uint64_t tail;        /* the tail we last stored */
    uint64_t cached_head; /* the last head seen; tail - cached_head <= capacity */
    uint64_t messages;    /* statistics (RP_STATS=1) */
    uint64_t paddings;
};

struct rp_consumer {
    struct rp_seg seg;
    uint64_t head;        /* the head we last stored */
    uint64_t cached_tail; /* the last tail seen; cached_tail - head <= capacity */
    int producer_came;    /* a producer was seen once (role held or generation != 0) */
    uint64_t messages;    /* statistics (RP_STATS=1) */
    uint64_t paddings;
};

/* One message found by rp_find. */
struct rp_found {
    const unsigned char *payload;
    uint32_t len;
    uint64_t next; /* position just past the record */
};

enum rp_find_result { RP_FOUND, RP_EMPTY, RP_END };

/* Prefix of every error line ("rp_send", "rp_recv"). */
extern const char *rp_prog;

/* Prints "<rp_prog>: <message>" on one line and exits with `code`. */
_Noreturn void rp_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a decimal byte count; exits 2 on anything else. */
uint64_t rp_parse_size(const char *text, const char *what);

/* Creates the ring or opens it, and takes the role (mode CreateOrOpen). A
 * producer that finds a finished stream (closed, drained, no consumer)
 * removes its name and creates a fresh ring. */
void rp_producer_open(struct rp_producer *p, const char *name, uint64_t capacity);
void rp_consumer_open(struct rp_consumer *c, const char *name, uint64_t capacity);

/* Largest payload of this ring: capacity / 2 - 8. */
uint64_t rp_max_message(uint64_t capacity);

/* Copies one message into the ring and commits it, waiting for room while
 * the ring is full (for a successor if the consumer died). */
void rp_push(struct rp_producer *p, const void *msg, size_t len);
/* Marks the end of stream. */
void rp_close(struct rp_producer *p);

/* The message at position `from` (skipping padding), or empty, or the end
 * of stream. */
enum rp_find_result rp_find(struct rp_consumer *c, uint64_t from, struct rp_found *out);
/* Gives back everything before `to`. */
void rp_release_to(struct rp_consumer *c, uint64_t to);
/* Waits until a message or the end of stream can be read; exits 3 once the
 * producer is gone without closing and nothing is left to read. */
void rp_wait_message(struct rp_consumer *c);

/* Leaves the ring: drops the role and removes the name when the stream is
 * finished and the other side is gone too. */
void rp_leave(struct rp_seg *s);

#endif
