/*
 * ringproof.c: the segment lifecycle and the SPSC protocol, from
 * docs/LAYOUT.md (layout version 2). Section names in comments refer to it.
 *
 * Shared words are accessed through C11 atomics on the mapping. The
 * segment's atomics must be lock-free (and so address-free) for two
 * processes to share them; the static assertions below check it.
 */
#define _GNU_SOURCE
#include "ringproof.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
               "atomics must have the size of the words they cover");

/* How many times a waiting side re-checks before it parks (not part of the
 * protocol: any number works). */
#define RP_SPINS 256
/* How many times taking a role starts over when the name changes under it. */
#define RP_NAME_RETRIES 8
/* Waiting for an uninitialised segment whose creator is gone: 2 s in 1 ms steps. */
#define RP_INIT_WAIT_NS 2000000000LL
#define RP_INIT_POLL_NS 1000000L

const char *rp_prog = "ringproof-c";

_Noreturn void rp_fail(int code, const char *fmt, ...) {
    va_list args;
    fflush(stdout);
    fprintf(stderr, "%s: ", rp_prog);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    exit(code);
}

static _Noreturn void os_fail(const char *what, const char *name) {
    rp_fail(RP_EXIT_UNEXPECTED, "%s(%s): %s", what, name, strerror(errno));
}

static _Noreturn void corrupt(const char *what) {
    rp_fail(RP_EXIT_INVALID, "ring is corrupted: %s", what);
}

uint64_t rp_parse_size(const char *text, const char *what) {
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value == 0)
        rp_fail(RP_EXIT_INVALID, "invalid %s %s: give a number of bytes", what, text);
    return (uint64_t)value;
}

uint64_t rp_max_message(uint64_t capacity) { return capacity / 2 - RP_RECORD_HEADER; }

static uint64_t record_size(uint64_t len) { return RP_RECORD_HEADER + (len + 7) / 8 * 8; }

static int capacity_ok(uint64_t capacity) {
    return capacity >= RP_MIN_CAPACITY && capacity <= RP_MAX_CAPACITY &&
           (capacity & (capacity - 1)) == 0;
}

/* "Records": lap = (uint32_t)(position >> log2(capacity)). */
static uint32_t lap(uint64_t position, uint64_t capacity) {
    return (uint32_t)(position >> __builtin_ctzll(capacity));
}

/* "Checksum": FNV-1a 64 over header bytes 0..24 as stored. */
static uint64_t checksum(const unsigned char *bytes) {
    uint64_t hash = 0xcbf29ce484222325ull;
    for (int i = 0; i < RP_OFF_CHECKSUM; i++) {
        hash ^= bytes[i];
        hash *= 0x100000001b3ull;
    }
    return hash;
}

static uint64_t magic_word(void) {
    uint64_t word;
    memcpy(&word, "RINGPRF\0", 8);
    return word;
}

static _Atomic uint64_t *word64(const struct rp_seg *s, size_t offset) {
    return (_Atomic uint64_t *)(void *)(s->base + offset);
}

static _Atomic uint32_t *word32(const struct rp_seg *s, size_t offset) {
    return (_Atomic uint32_t *)(void *)(s->base + offset);
}

static size_t gen_offset(enum rp_role role) {
    return role == RP_PRODUCER ? RP_OFF_PRODUCER_GEN : RP_OFF_CONSUMER_GEN;
}

static short role_byte(enum rp_role role) {
    return role == RP_PRODUCER ? RP_PRODUCER_BYTE : RP_CONSUMER_BYTE;
}

static const char *role_name(enum rp_role role) {
    return role == RP_PRODUCER ? "producer" : "consumer";
}

static void sleep_ns(long ns) {
    struct timespec t = {0, ns};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* ---- Names ---------------------------------------------------------------- */

/* "The segment": 1 to 255 characters, no '/' but a leading one, no NUL. */
static void normalise_name(const char *name, char out[258]) {
    const char *bare = name[0] == '/' ? name + 1 : name;
    size_t n = strlen(bare);
    if (n == 0 || n > 255 || strchr(bare, '/') != NULL || strcmp(bare, ".") == 0 ||
        strcmp(bare, "..") == 0)
        rp_fail(RP_EXIT_INVALID, "invalid segment name \"%s\"", name);
    out[0] = '/';
    memcpy(out + 1, bare, n + 1);
}

/* ---- Locks ("Leases and the name lock") ---------------------------------- */

static int ofd_lock(int fd, int cmd, short type, short byte) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = byte;
    lock.l_len = 1;
    lock.l_pid = 0; /* required by F_OFD_* */
    return fcntl(fd, cmd, &lock);
}

/* Whether a lock held through another open file description covers `byte`. */
static int byte_locked(int fd, short byte, const char *name) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = byte;
    lock.l_len = 1;
    lock.l_pid = 0;
    if (fcntl(fd, F_OFD_GETLK, &lock) != 0)
        os_fail("fcntl(F_OFD_GETLK)", name);
    return lock.l_type != F_UNLCK;
}

static int role_held(const struct rp_seg *s, enum rp_role role) {
    return byte_locked(s->fd, role_byte(role), s->name);
}

static int any_role_held(int fd, const char *name) {
    return byte_locked(fd, RP_PRODUCER_BYTE, name) || byte_locked(fd, RP_CONSUMER_BYTE, name);
}

/* Claims `role`: 0, or the errno of F_OFD_SETLK (EAGAIN or EACCES: taken). */
static int try_claim_role(int fd, enum rp_role role) {
    return ofd_lock(fd, F_OFD_SETLK, F_WRLCK, role_byte(role)) == 0 ? 0 : errno;
}

static _Noreturn void claim_failed(int error, enum rp_role role, const char *name) {
    if (error == EAGAIN || error == EACCES)
        rp_fail(RP_EXIT_INVALID,
                "the %s role is held by another live process (one %s at a time)",
                role_name(role), role_name(role));
    errno = error;
    os_fail("fcntl(F_OFD_SETLK)", name);
}

static void name_lock(int fd, const char *name) {
    while (ofd_lock(fd, F_OFD_SETLKW, F_WRLCK, RP_NAME_LOCK_BYTE) != 0) {
        if (errno != EINTR)
            os_fail("fcntl(F_OFD_SETLKW)", name);
    }
}

static void name_unlock(int fd) { (void)ofd_lock(fd, F_OFD_SETLK, F_UNLCK, RP_NAME_LOCK_BYTE); }

/* Whether `name` refers now to the file (dev, ino). Call under the name lock. */
static int named(const char *name, dev_t dev, ino_t ino) {
    int fd = shm_open(name, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        os_fail("shm_open", name);
    }
    struct stat st;
    int ok = fstat(fd, &st) == 0;
    close(fd);
    if (!ok)
        os_fail("fstat", name);
    return st.st_dev == dev && st.st_ino == ino;
}

/* "Taking a role": after the lease, check under the name lock that the name
 * still refers to our file. */
static int confirm(const struct rp_seg *s) {
    name_lock(s->fd, s->name);
    int ok = named(s->name, s->dev, s->ino);
    name_unlock(s->fd);
    return ok;
}

/* Removes the name of a file we created and could not finish. */
static void remove_if_named(int fd, const char *name, dev_t dev, ino_t ino) {
    name_lock(fd, name);
    if (named(name, dev, ino))
        (void)shm_unlink(name);
    name_unlock(fd);
}

static void bump_generation(const struct rp_seg *s) {
    /* Relaxed: a counter; whoever reads it (a peer deciding whether the role
     * was ever taken) reads no other memory on the strength of it. */
    atomic_fetch_add_explicit(word32(s, gen_offset(s->role)), 1, memory_order_relaxed);
}

static void unmap(struct rp_seg *s) {
    if (s->base != NULL)
        munmap(s->base, s->len);
    s->base = NULL;
    if (s->fd >= 0)
        close(s->fd); /* drops every lock this description holds */
    s->fd = -1;
}

/* ---- File and header checks ("Opening", "Validation") --------------------- */

static void check_file(const struct stat *st, const char *name) {
    if (!S_ISREG(st->st_mode))
        rp_fail(RP_EXIT_INVALID, "%s is not a regular file, not a shared-memory segment", name);
    if (st->st_uid != geteuid())
        rp_fail(RP_EXIT_INVALID, "refusing segment %s: it is owned by uid %u, not by uid %u",
                name, (unsigned)st->st_uid, (unsigned)geteuid());
    if ((st->st_mode & 077) != 0)
        rp_fail(RP_EXIT_INVALID, "refusing segment %s: its mode %04o lets other users in", name,
                (unsigned)(st->st_mode & 07777));
}

/* The attach checks, each immutable byte read once. Returns the capacity. */
static uint64_t check_header(const unsigned char *base, size_t len) {
    unsigned char h[32];
    const volatile unsigned char *src = base;
    for (int i = 0; i < 32; i++)
        h[i] = src[i];
    uint32_t version, header_size;
    uint64_t magic, capacity, stored;
    memcpy(&magic, h, 8);
    memcpy(&version, h + RP_OFF_VERSION, 4);
    memcpy(&header_size, h + RP_OFF_HEADER_SIZE, 4);
    memcpy(&capacity, h + RP_OFF_CAPACITY, 8);
    memcpy(&stored, h + RP_OFF_CHECKSUM, 8);
    if (magic != magic_word())
        rp_fail(RP_EXIT_INVALID, "invalid segment: not a ringproof segment (bad magic)");
    if (version != RP_LAYOUT_VERSION)
        rp_fail(RP_EXIT_INVALID, "invalid segment: unsupported layout version %u (this peer reads %u)",
                version, RP_LAYOUT_VERSION);
    if (header_size != RP_HEADER_SIZE)
        rp_fail(RP_EXIT_INVALID, "invalid segment: bad header size %u", header_size);
    if (!capacity_ok(capacity))
        rp_fail(RP_EXIT_INVALID, "invalid segment: bad capacity %llu", (unsigned long long)capacity);
    if (checksum(h) != stored)
        rp_fail(RP_EXIT_INVALID, "invalid segment: header checksum mismatch");
    if (RP_HEADER_SIZE + capacity != (uint64_t)len)
        rp_fail(RP_EXIT_INVALID, "invalid segment: header says %llu bytes, segment has %zu",
                (unsigned long long)(RP_HEADER_SIZE + capacity), len);
    return capacity;
}

/* "Positions": what a side checks when it takes over. */
static void check_positions(uint64_t head, uint64_t tail, uint64_t capacity) {
    if (head % 8 != 0 || head > RP_MAX_POSITION)
        corrupt("head index out of range");
    if (tail % 8 != 0 || tail > RP_MAX_POSITION || tail - head > capacity)
        corrupt("tail index out of range");
}

/* ---- Create ("Creation") -------------------------------------------------- */

enum take { TAKEN, RETRY, EXISTS, ABSENT };

static enum take create(struct rp_seg *s, uint64_t capacity) {
    if (!capacity_ok(capacity))
        rp_fail(RP_EXIT_INVALID, "invalid ring size %llu: a power of two from 32 to 2^40",
                (unsigned long long)capacity);
    int fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return EXISTS;
        os_fail("shm_open", s->name);
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        os_fail("fstat", s->name);
    /* The role first: an opener that finds the file empty waits for as long
     * as a role is held. */
    int e = try_claim_role(fd, s->role);
    if (e != 0) {
        remove_if_named(fd, s->name, st.st_dev, st.st_ino);
        claim_failed(e, s->role, s->name);
    }
    size_t len = RP_HEADER_SIZE + capacity;
    if (ftruncate(fd, (off_t)len) != 0) {
        e = errno;
        remove_if_named(fd, s->name, st.st_dev, st.st_ino);
        errno = e;
        os_fail("ftruncate", s->name);
    }
    e = posix_fallocate(fd, 0, (off_t)len);
    if (e != 0) {
        remove_if_named(fd, s->name, st.st_dev, st.st_ino);
        if (e == ENOSPC)
            rp_fail(RP_EXIT_INVALID, "not enough space in /dev/shm for a %zu-byte segment", len);
        errno = e;
        os_fail("posix_fallocate", s->name);
    }
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        e = errno;
        remove_if_named(fd, s->name, st.st_dev, st.st_ino);
        errno = e;
        os_fail("mmap", s->name);
    }
    s->fd = fd;
    s->base = map;
    s->len = len;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->capacity = capacity;

    /* Every header byte but the magic; the file is fresh, so the rest is zero. */
    unsigned char h[RP_HEADER_SIZE];
    memset(h, 0, sizeof h);
    uint64_t magic = magic_word();
    uint32_t version = RP_LAYOUT_VERSION, header_size = RP_HEADER_SIZE;
    memcpy(h, &magic, 8);
    memcpy(h + RP_OFF_VERSION, &version, 4);
    memcpy(h + RP_OFF_HEADER_SIZE, &header_size, 4);
    memcpy(h + RP_OFF_CAPACITY, &capacity, 8);
    uint64_t sum = checksum(h);
    memcpy(h + RP_OFF_CHECKSUM, &sum, 8);
    memcpy(s->base + 8, h + 8, RP_HEADER_SIZE - 8);
    /* Release: publishes the header bytes written above; pairs with the
     * openers' Acquire load of the magic (open_once). */
    atomic_store_explicit(word64(s, 0), magic, memory_order_release);
    bump_generation(s);
    if (!confirm(s)) {
        /* Someone removed the name before our role was held: start over. */
        unmap(s);
        return RETRY;
    }
    return TAKEN;
}

/* ---- Open ("Opening") ----------------------------------------------------- */

enum look { READY, INITIALISING_ALIVE, INITIALISING_GONE, GONE };

static enum look open_once(struct rp_seg *s) {
    int fd = shm_open(s->name, O_RDWR | O_NONBLOCK, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return GONE;
        if (errno == EACCES)
            rp_fail(RP_EXIT_INVALID, "permission denied for segment %s", s->name);
        os_fail("shm_open", s->name);
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        os_fail("fstat", s->name);
    check_file(&st, s->name);
    if (st.st_size == 0) {
        int alive = any_role_held(fd, s->name);
        close(fd);
        return alive ? INITIALISING_ALIVE : INITIALISING_GONE;
    }
    if ((uint64_t)st.st_size < RP_HEADER_SIZE)
        rp_fail(RP_EXIT_INVALID, "invalid segment: %lld bytes, shorter than the header",
                (long long)st.st_size);
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        os_fail("mmap", s->name);
    s->fd = fd;
    s->base = map;
    s->len = len;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    /* Acquire: pairs with the creator's Release store of the magic (create);
     * the header bytes are visible once we see it. */
    if (atomic_load_explicit(word64(s, 0), memory_order_acquire) == 0) {
        int alive = any_role_held(fd, s->name);
        unmap(s);
        return alive ? INITIALISING_ALIVE : INITIALISING_GONE;
    }
    /* The creator allocated every page before publishing: a hole now is not
     * a creator at work. */
    if (fstat(fd, &st) != 0)
        os_fail("fstat", s->name);
    if ((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size)
        rp_fail(RP_EXIT_INVALID, "refusing segment %s: not fully allocated", s->name);
    s->capacity = check_header(s->base, s->len);
    return READY;
}

static enum take open_role(struct rp_seg *s) {
    long long gone_since = -1;
    for (;;) {
        enum look look = open_once(s);
        if (look == READY)
            break;
        if (look == GONE)
            return ABSENT;
        if (look == INITIALISING_ALIVE) {
            gone_since = -1;
        } else if (gone_since < 0) {
            gone_since = now_ns();
        } else if (now_ns() - gone_since >= RP_INIT_WAIT_NS) {
            rp_fail(RP_EXIT_INVALID,
                    "segment %s was never initialised and its creator is gone", s->name);
        }
        sleep_ns(RP_INIT_POLL_NS);
    }
    int e = try_claim_role(s->fd, s->role);
    if (e != 0)
        claim_failed(e, s->role, s->name);
    if (!confirm(s)) {
        unmap(s);
        return RETRY;
    }
    bump_generation(s);
    return TAKEN;
}

/* "Producer reclaim": the stream under the name is finished (closed and
 * drained) and no consumer holds it: remove the name. Under the name lock. */
static int reclaim(struct rp_seg *s) {
    name_lock(s->fd, s->name);
    /* Relaxed (the three loads): a decision about the name only; the name
     * lock orders them after the stores of whoever took it before us. */
    uint32_t closed = atomic_load_explicit(word32(s, RP_OFF_CLOSED), memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(word64(s, RP_OFF_TAIL), memory_order_relaxed);
    uint64_t head = atomic_load_explicit(word64(s, RP_OFF_HEAD), memory_order_relaxed);
    int removed = 0;
    if (closed == 1 && head == tail && !role_held(s, RP_CONSUMER) &&
        named(s->name, s->dev, s->ino)) {
        if (shm_unlink(s->name) != 0 && errno != ENOENT)
            os_fail("shm_unlink", s->name);
        removed = 1;
    }
    name_unlock(s->fd);
    return removed;
}

static void take_role(struct rp_seg *s, const char *name, uint64_t capacity, enum rp_role role) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->role = role;
    normalise_name(name, s->name);
    for (int i = 0; i < RP_NAME_RETRIES; i++) {
        enum take t = create(s, capacity);
        if (t == TAKEN)
            return;
        if (t == RETRY)
            continue;
        t = open_role(s);
        if (t != TAKEN)
            continue; /* removed or replaced meanwhile */
        if (role == RP_PRODUCER && reclaim(s)) {
            unmap(s);
            continue; /* create a fresh segment */
        }
        return;
    }
    rp_fail(RP_EXIT_UNEXPECTED, "taking a role of %s: the name keeps changing", s->name);
}

/* ---- Parking ("Parking") -------------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
    struct timespec timeout = {0, RP_PARK_NS};
    /* Shared (not FUTEX_PRIVATE_FLAG): the waker is another process. Every
     * outcome (woken, EAGAIN, ETIMEDOUT, EINTR) means "re-check". */
    (void)syscall(SYS_futex, (uint32_t *)(void *)word, FUTEX_WAIT, expected, &timeout, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word) {
    (void)syscall(SYS_futex, (uint32_t *)(void *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The waker's half of the handshake, after a Release store of an index. */
static void wake(const struct rp_seg *s, size_t wait_offset) {
    /* SeqCst fence: orders our index store before the load of the other
     * side's wait word; pairs with the SeqCst fence the waiter issues between
     * its store of 1 and its re-check (consumer_wait_ready / wait_room). */
    atomic_thread_fence(memory_order_seq_cst);
    _Atomic uint32_t *word = word32(s, wait_offset);
    /* Relaxed: ordered by the fence above. */
    if (atomic_load_explicit(word, memory_order_relaxed) != 0) {
        /* Relaxed: the futex call orders it; the waiter re-checks anyway. */
        atomic_store_explicit(word, 0, memory_order_relaxed);
        futex_wake(word);
    }
}

/* ---- Producer ("Producer") ------------------------------------------------ */

void rp_producer_open(struct rp_producer *p, const char *name, uint64_t capacity) {
    memset(p, 0, sizeof *p);
    take_role(&p->seg, name, capacity, RP_PRODUCER);
    /* Acquire: pairs with the consumer's Release store of head (rp_release_to):
     * its reads of released bytes happen before we overwrite them. */
    uint64_t head = atomic_load_explicit(word64(&p->seg, RP_OFF_HEAD), memory_order_acquire);
    /* Relaxed: our own index; a previous producer's stores are ordered before
     * us by the role lease it released. */
    uint64_t tail = atomic_load_explicit(word64(&p->seg, RP_OFF_TAIL), memory_order_relaxed);
    check_positions(head, tail, p->seg.capacity);
    p->tail = tail;
    p->cached_head = head;
    /* Relaxed: a closed stream only makes us refuse to send. */
    if (atomic_load_explicit(word32(&p->seg, RP_OFF_CLOSED), memory_order_relaxed) != 0)
        rp_fail(RP_EXIT_INVALID,
                "segment %s holds a closed stream not read to its end yet", p->seg.name);
}

static void check_own_tail(const struct rp_producer *p) {
    /* Relaxed: our own index, only compared with the value we stored. */
    if (atomic_load_explicit(word64(&p->seg, RP_OFF_TAIL), memory_order_relaxed) != p->tail)
        corrupt("own index overwritten by another writer");
}

static void refresh_head(struct rp_producer *p) {
    /* Acquire: pairs with the consumer's Release store of head; its reads of
     * the released bytes happen before we overwrite them. */
    uint64_t untrusted = atomic_load_explicit(word64(&p->seg, RP_OFF_HEAD), memory_order_acquire);
    if (untrusted % 8 != 0 || untrusted - p->cached_head > p->tail - p->cached_head)
        corrupt("head index out of range");
    p->cached_head = untrusted;
}

static int has_room(const struct rp_producer *p, uint64_t need) {
    return p->tail + need - p->cached_head <= p->seg.capacity;
}

/* Waits until `need` bytes past tail are free. */
static void wait_room(struct rp_producer *p, uint64_t need) {
    _Atomic uint32_t *wait_word = word32(&p->seg, RP_OFF_PRODUCER_WAIT);
    for (;;) {
        for (int i = 0; i < RP_SPINS; i++) {
            refresh_head(p);
            if (has_room(p, need))
                return;
        }
        /* Relaxed: ordered by the fence below. */
        atomic_store_explicit(wait_word, 1, memory_order_relaxed);
        /* SeqCst fence: orders our store of producer_wait before the re-check
         * of head; pairs with the consumer's fence after its head store
         * (wake, called from rp_release_to). */
        atomic_thread_fence(memory_order_seq_cst);
        refresh_head(p);
        if (!has_room(p, need)) {
            futex_wait(wait_word, 1);
            refresh_head(p);
        }
        /* Relaxed: a hint to the consumer only; it re-checks after its fence. */
        atomic_store_explicit(wait_word, 0, memory_order_relaxed);
        if (has_room(p, need))
            return;
        /* Only we close the stream: closed set by anyone else means nobody
         * will read what we wait to write. A dead consumer does not end the
         * wait: a successor takes its role over.
         * Relaxed: nothing is read on the strength of it. */
        if (atomic_load_explicit(word32(&p->seg, RP_OFF_CLOSED), memory_order_relaxed) != 0)
            rp_fail(RP_EXIT_INVALID, "the stream was closed by another process");
        check_own_tail(p);
    }
}

static void write_record_header(struct rp_producer *p, uint64_t position, uint32_t len,
                                uint32_t kind) {
    uint32_t tag = kind ^ lap(position, p->seg.capacity);
    unsigned char *at = p->seg.base + RP_HEADER_SIZE + (position & (p->seg.capacity - 1));
    memcpy(at, &len, 4);
    memcpy(at + 4, &tag, 4);
}

void rp_push(struct rp_producer *p, const void *msg, size_t len) {
    uint64_t capacity = p->seg.capacity;
    if (len > rp_max_message(capacity))
        rp_fail(RP_EXIT_INVALID, "message of %zu bytes exceeds this ring's maximum of %llu bytes",
                len, (unsigned long long)rp_max_message(capacity));
    check_own_tail(p);
    uint64_t record = record_size(len);
    uint64_t offset = p->tail & (capacity - 1);
    uint64_t to_end = capacity - offset;
    uint64_t padding = record <= to_end ? 0 : to_end;
    uint64_t end = p->tail + padding + record;
    if (end > RP_MAX_POSITION)
        corrupt("tail index out of range");
    if (end - p->cached_head > capacity) {
        refresh_head(p);
        if (end - p->cached_head > capacity)
            wait_room(p, padding + record);
    }
    /* [tail, end) is free space, ours to write. */
    if (padding != 0) {
        write_record_header(p, p->tail, (uint32_t)(padding - RP_RECORD_HEADER), RP_RECORD_PADDING);
        p->paddings++;
    }
    uint64_t at = p->tail + padding;
    write_record_header(p, at, (uint32_t)len, RP_RECORD_MESSAGE);
    memcpy(p->seg.base + RP_HEADER_SIZE + (at & (capacity - 1)) + RP_RECORD_HEADER, msg, len);
    /* Release: the commit point; publishes the record headers and payload
     * written above; pairs with the consumer's Acquire load of tail
     * (refresh_tail). */
    atomic_store_explicit(word64(&p->seg, RP_OFF_TAIL), end, memory_order_release);
    p->tail = end;
    p->messages++;
    wake(&p->seg, RP_OFF_CONSUMER_WAIT);
}

void rp_close(struct rp_producer *p) {
    check_own_tail(p);
    /* Release: orders every tail store before it; pairs with the consumer's
     * Acquire load of closed in rp_find, which then sees the final tail. */
    atomic_store_explicit(word32(&p->seg, RP_OFF_CLOSED), 1, memory_order_release);
    wake(&p->seg, RP_OFF_CONSUMER_WAIT);
}

/* ---- Consumer ("Consumer") ------------------------------------------------ */

void rp_consumer_open(struct rp_consumer *c, const char *name, uint64_t capacity) {
    memset(c, 0, sizeof *c);
    take_role(&c->seg, name, capacity, RP_CONSUMER);
    /* Relaxed: our own index; a previous consumer's stores are ordered before
     * us by the role lease it released. */
    uint64_t head = atomic_load_explicit(word64(&c->seg, RP_OFF_HEAD), memory_order_relaxed);
    /* Acquire: pairs with the producer's Release store of tail (rp_push). */
    uint64_t tail = atomic_load_explicit(word64(&c->seg, RP_OFF_TAIL), memory_order_acquire);
    check_positions(head, tail, c->seg.capacity);
    c->head = head;
    c->cached_tail = tail;
}

static void check_own_head(const struct rp_consumer *c) {
    /* Relaxed: our own index, only compared with the value we stored. */
    if (atomic_load_explicit(word64(&c->seg, RP_OFF_HEAD), memory_order_relaxed) != c->head)
        corrupt("own index overwritten by another writer");
}

static void refresh_tail(struct rp_consumer *c) {
    /* Acquire: pairs with the producer's Release store of tail (rp_push); the
     * records below the new tail are fully written. */
    uint64_t untrusted = atomic_load_explicit(word64(&c->seg, RP_OFF_TAIL), memory_order_acquire);
    uint64_t room = c->head + c->seg.capacity - c->cached_tail;
    if (untrusted % 8 != 0 || untrusted - c->cached_tail > room || untrusted > RP_MAX_POSITION)
        corrupt("tail index out of range");
    c->cached_tail = untrusted;
}

enum rp_find_result rp_find(struct rp_consumer *c, uint64_t from, struct rp_found *out) {
    uint64_t capacity = c->seg.capacity;
    for (;;) {
        if (from == c->cached_tail) {
            refresh_tail(c);
            if (from == c->cached_tail) {
                /* Acquire: pairs with the producer's Release store of closed
                 * (rp_close), which follows its last tail store. */
                if (atomic_load_explicit(word32(&c->seg, RP_OFF_CLOSED), memory_order_acquire) == 0)
                    return RP_EMPTY;
                refresh_tail(c);
                if (from == c->cached_tail)
                    return RP_END;
            }
        }
        uint64_t available = c->cached_tail - from;
        uint64_t offset = from & (capacity - 1);
        uint64_t to_end = capacity - offset;
        const unsigned char *at = c->seg.base + RP_HEADER_SIZE + offset;
        /* The 8 header bytes, read exactly once (one aligned load). */
        uint64_t word = *(const volatile uint64_t *)(const void *)at;
        uint32_t untrusted_len, tag;
        memcpy(&untrusted_len, &word, 4);
        memcpy(&tag, (const unsigned char *)&word + 4, 4);
        /* A record of another lap gives no known kind back. */
        uint32_t kind = tag ^ lap(from, capacity);
        if (kind == RP_RECORD_PADDING) {
            if ((uint64_t)untrusted_len + RP_RECORD_HEADER != to_end || to_end > available)
                corrupt("record length out of range");
            c->paddings++;
            from += to_end;
        } else if (kind == RP_RECORD_MESSAGE) {
            uint64_t record = record_size(untrusted_len);
            if (untrusted_len > rp_max_message(capacity) || record > available || record > to_end)
                corrupt("record length out of range");
            out->payload = at + RP_RECORD_HEADER;
            out->len = untrusted_len;
            out->next = from + record;
            c->messages++;
            return RP_FOUND;
        } else {
            corrupt("unknown record kind");
        }
    }
}

void rp_release_to(struct rp_consumer *c, uint64_t to) {
    check_own_head(c);
    /* Release: our reads of the released records happen before the producer
     * reuses their bytes; pairs with the producer's Acquire load of head
     * (refresh_head). */
    atomic_store_explicit(word64(&c->seg, RP_OFF_HEAD), to, memory_order_release);
    c->head = to;
    wake(&c->seg, RP_OFF_PRODUCER_WAIT);
}

/* Whether a message or the end of stream is there at head. */
static int readable(struct rp_consumer *c) {
    if (c->head != c->cached_tail)
        return 1;
    refresh_tail(c);
    /* Relaxed: only decides whether to park; rp_find re-loads closed with
     * Acquire before it reports the end of stream. */
    return c->head != c->cached_tail ||
           atomic_load_explicit(word32(&c->seg, RP_OFF_CLOSED), memory_order_relaxed) != 0;
}

static int consumer_wait_ready(struct rp_consumer *c) {
    _Atomic uint32_t *wait_word = word32(&c->seg, RP_OFF_CONSUMER_WAIT);
    for (int i = 0; i < RP_SPINS; i++) {
        if (readable(c))
            return 1;
    }
    /* Relaxed: ordered by the fence below. */
    atomic_store_explicit(wait_word, 1, memory_order_relaxed);
    /* SeqCst fence: orders our store of consumer_wait before the re-check of
     * tail and closed; pairs with the producer's fence after its tail or
     * closed store (wake, called from rp_push and rp_close). */
    atomic_thread_fence(memory_order_seq_cst);
    if (!readable(c))
        futex_wait(wait_word, 1);
    /* Relaxed: a hint to the producer only; it re-checks after its fence. */
    atomic_store_explicit(wait_word, 0, memory_order_relaxed);
    return readable(c);
}

/* "Peer death": the producer came (role seen held, or generation != 0) and
 * its role is not held now. */
static int producer_gone(struct rp_consumer *c) {
    if (role_held(&c->seg, RP_PRODUCER)) {
        c->producer_came = 1;
        return 0;
    }
    /* Relaxed: see bump_generation. */
    if (atomic_load_explicit(word32(&c->seg, RP_OFF_PRODUCER_GEN), memory_order_relaxed) != 0)
        c->producer_came = 1;
    return c->producer_came;
}

void rp_wait_message(struct rp_consumer *c) {
    check_own_head(c);
    for (;;) {
        if (consumer_wait_ready(c))
            return;
        /* The producer's last commit happens before its lease is released:
         * look once more after finding it gone. */
        if (producer_gone(c) && !readable(c))
            rp_fail(RP_EXIT_PEER_DIED,
                    "the producer died without closing the ring (every message it committed was delivered)");
    }
}

/* ---- Leaving ("Closing and leaving") -------------------------------------- */

void rp_leave(struct rp_seg *s) {
    enum rp_role other = s->role == RP_PRODUCER ? RP_CONSUMER : RP_PRODUCER;
    name_lock(s->fd, s->name);
    /* Our lease goes while we hold the name lock: a side leaving at the same
     * time that took the lock before us saw our role held and kept the name. */
    (void)ofd_lock(s->fd, F_OFD_SETLK, F_UNLCK, role_byte(s->role));
    /* Relaxed (all loads here): a decision about the name only; the name
     * lock orders them after the other side's stores if it left before us. */
    uint32_t closed = atomic_load_explicit(word32(s, RP_OFF_CLOSED), memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(word64(s, RP_OFF_TAIL), memory_order_relaxed);
    uint64_t head = atomic_load_explicit(word64(s, RP_OFF_HEAD), memory_order_relaxed);
    uint32_t other_gen = atomic_load_explicit(word32(s, gen_offset(other)), memory_order_relaxed);
    if (closed == 1 && head == tail && other_gen != 0 && !role_held(s, other) &&
        named(s->name, s->dev, s->ino)) {
        if (shm_unlink(s->name) != 0 && errno != ENOENT)
            os_fail("shm_unlink", s->name);
    }
    name_unlock(s->fd);
    unmap(s);
}
