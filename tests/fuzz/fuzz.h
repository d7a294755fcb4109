/* Shared by the fuzz drivers (tests/fuzz/fuzz_*.c): each driver is one translation unit that defines
   POLOPT_IMPLEMENTATION and includes this file, which includes polopt.h after setting its allocator.  It provides
     - the library's allocator (POLOPT_MALLOC/REALLOC/FREE): it fills fresh memory with fuzz_fill (so that a file
       which depends on uninitialised memory changes with it), and refuses absurd sizes (a loader must check the
       sizes of a header against the input before it allocates);
     - FUZZ_CHECK: an invariant, whose violation aborts (the fuzzer reports it, the replay program counts it);
     - a small generator seeded from the input, checksum resealing of the 128-byte polopt header, and a scratch
       file per process (the CSV reader and the loaders from a path take a file name). */
#ifndef POLOPT_FUZZ_H
#define POLOPT_FUZZ_H

#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getpid */
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h> /* malloc_usable_size */
#define FUZZ_USABLE(p, n) malloc_usable_size(p)
#else
#define FUZZ_USABLE(p, n) (n)
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- Allocator.  No single allocation of a fuzz input may be larger than this. */
#define FUZZ_MAX_ALLOC ((size_t)256 << 20)

static unsigned char fuzz_fill = 0xbe;

static inline void fuzz_oversized(size_t n)
{
    fprintf(stderr, "fuzz: the library asked for %lu bytes in one allocation (limit %lu)\n", (unsigned long)n,
            (unsigned long)FUZZ_MAX_ALLOC);
    abort();
}

static inline void *fuzz_malloc(size_t n, void *ctx)
{
    void *p;
    (void)ctx;
    if (n > FUZZ_MAX_ALLOC) fuzz_oversized(n);
    p = malloc(n);
    if (p) memset(p, fuzz_fill, FUZZ_USABLE(p, n));
    return p;
}

static inline void *fuzz_realloc(void *p, size_t n, void *ctx)
{
    size_t old = p ? FUZZ_USABLE(p, 0) : 0, now;
    void *q;
    (void)ctx;
    if (n > FUZZ_MAX_ALLOC) fuzz_oversized(n);
    q = realloc(p, n);
    if (!q) return NULL;
    now = FUZZ_USABLE(q, n);
    if (now > old) memset((unsigned char *)q + old, fuzz_fill, now - old);
    return q;
}

static inline void fuzz_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

#define POLOPT_MALLOC(size, ctx) fuzz_malloc((size), (ctx))
#define POLOPT_REALLOC(p, size, ctx) fuzz_realloc((p), (size), (ctx))
#define POLOPT_FREE(p, ctx) fuzz_free((p), (ctx))
#include "polopt.h"

/* ---- Invariants */
#define FUZZ_CHECK(cond, what)                                                                           \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "fuzz: invariant violated at %s:%d: %s [%s]\n", __FILE__, __LINE__, (what), #cond); \
            abort();                                                                                     \
        }                                                                                                \
    } while (0)

/* ---- A generator of the choices a driver makes, seeded from the input (the same input, the same run). */
typedef struct fuzz_rng {
    uint64_t s;
} fuzz_rng;

static inline uint64_t fuzz_next(fuzz_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline fuzz_rng fuzz_seed(const uint8_t *data, size_t size)
{
    fuzz_rng r;
    size_t i;
    r.s = 0x243f6a8885a308d3ULL ^ size;
    for (i = 0; i < size; ++i) r.s = (r.s ^ data[i]) * 0x100000001b3ULL;
    return r;
}

static inline size_t fuzz_below(fuzz_rng *r, size_t n) { return n ? (size_t)(fuzz_next(r) % n) : 0; }

/* A float in [-a, a], sometimes one of the values that break arithmetic: 0, -0, tiny, huge. */
static inline float fuzz_float(fuzz_rng *r, float a)
{
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-30f, -1e-38f, 1e-45f, 3e38f, -3e38f, 65504.0f};
    const uint64_t v = fuzz_next(r);
    if ((v & 15) == 0) return special[(v >> 4) % (sizeof special / sizeof special[0])];
    return (float)(((double)(v >> 11) * (1.0 / 9007199254740992.0)) * 2.0 - 1.0) * a;
}

/* ---- Headers: every polopt file starts with 128 bytes; 72 u64 payload bytes, 80 u64 payload checksum,
   120 u64 checksum of bytes 0..119, little-endian. */
#define FUZZ_HEADER 128

static inline void fuzz_put_u64(unsigned char *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t fuzz_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

/* A copy of data with the checksums recomputed (and, if fix_size, the payload size set to what follows the
   header), so that mutations get past the checksums to the structural checks.  NULL if data has no header. */
static inline unsigned char *fuzz_resealed(const uint8_t *data, size_t size, int fix_size)
{
    unsigned char *b;
    uint64_t ck = 0;
    if (size < FUZZ_HEADER) return NULL;
    b = (unsigned char *)malloc(size);
    FUZZ_CHECK(b != NULL, "out of memory in the driver");
    memcpy(b, data, size);
    if (fix_size) fuzz_put_u64(b + 72, (uint64_t)(size - FUZZ_HEADER));
    FUZZ_CHECK(polopt_checksum64(b + FUZZ_HEADER, size - FUZZ_HEADER, &ck) == POLOPT_OK, "polopt_checksum64");
    fuzz_put_u64(b + 80, ck);
    FUZZ_CHECK(polopt_checksum64(b, 120, &ck) == POLOPT_OK, "polopt_checksum64");
    fuzz_put_u64(b + 120, ck);
    return b;
}

/* ---- A scratch file of this process: $TMPDIR/polopt-fuzz-<tag>-<pid>, rewritten for every input, removed at exit.
   The name follows the pid, so a forked child (the replay program) gets its own. */
static char fuzz_path_buf[4096];
static long fuzz_path_pid = -1;

static inline void fuzz_remove_path(void)
{
    if (fuzz_path_pid == (long)getpid()) {
        remove(fuzz_path_buf);
        fuzz_path_pid = -1;
    }
}

static inline const char *fuzz_path(const char *tag)
{
    if (fuzz_path_pid != (long)getpid()) {
        const char *dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
        snprintf(fuzz_path_buf, sizeof fuzz_path_buf, "%s/polopt-fuzz-%s-%ld", dir, tag, (long)getpid());
        if (fuzz_path_pid == -1) atexit(fuzz_remove_path);
        fuzz_path_pid = (long)getpid();
    }
    return fuzz_path_buf;
}

/* Write data to the scratch file; returns its name. */
static inline const char *fuzz_write_file(const char *tag, const void *data, size_t size)
{
    const char *path = fuzz_path(tag);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot create the scratch file");
    FUZZ_CHECK(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write the scratch file");
    return path;
}

/* The whole content of a file (malloc'ed), or NULL. */
static inline unsigned char *fuzz_read_file(const char *path, size_t *out_size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    size_t cap = 0, n = 0, got;
    *out_size = 0;
    if (!f) return NULL;
    do {
        if (n == cap) {
            unsigned char *nb = (unsigned char *)realloc(b, cap = cap ? 2 * cap : 4096);
            FUZZ_CHECK(nb != NULL, "out of memory in the driver");
            b = nb;
        }
        got = fread(b + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *out_size = n;
    return b;
}

/* A failed call must say why: the code returned, kept with a message from the library (it names the function that
   failed, possibly one called by the function called). */
#define FUZZ_CHECK_FAILURE(rc, err, fn)                                                                     \
    do {                                                                                                    \
        FUZZ_CHECK((err).code == (rc), fn ": the error code kept differs from the one returned");         \
        FUZZ_CHECK(strncmp((err).message, "polopt_", 7) == 0, fn ": the error message does not name a function"); \
    } while (0)


/* ---- Saved bytes, compared. */
typedef struct fuzz_bytes {
    unsigned char *p;
    size_t n;
} fuzz_bytes;

static inline int same_bytes(fuzz_bytes a, fuzz_bytes b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

/* static fuzz_bytes name(const type *x): x saved to a malloc'ed buffer through save_buffer (size query, a buffer one
   byte short that must be refused, then the real save), for both file types. */
#define FUZZ_DEFINE_SAVER(name, type, save_buffer)                                                          \
    static fuzz_bytes name(const type *x)                                                                   \
    {                                                                                                       \
        fuzz_bytes b;                                                                                       \
        size_t need = 0, again = 0;                                                                         \
        polopt_result rc = save_buffer(x, NULL, 0, &need, NULL);                                            \
        FUZZ_CHECK(rc == POLOPT_OK && need > FUZZ_HEADER, #save_buffer " (size) fails on a valid object");  \
        b.p = (unsigned char *)malloc(need);                                                                \
        b.n = need;                                                                                         \
        FUZZ_CHECK(b.p != NULL, "out of memory in the driver");                                             \
        rc = save_buffer(x, b.p, need - 1, &again, NULL);                                                   \
        FUZZ_CHECK(rc != POLOPT_OK, #save_buffer " accepts a buffer one byte short");                       \
        rc = save_buffer(x, b.p, need, &again, NULL);                                                       \
        FUZZ_CHECK(rc == POLOPT_OK && again == need, #save_buffer " fails on a valid object");              \
        return b;                                                                                           \
    }

/* The largest |x_i| (0 for n = 0), to bound products before expecting them finite. */
static inline double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    size_t i;
    for (i = 0; i < n; ++i)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

#endif
