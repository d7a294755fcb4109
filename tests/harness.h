/* A tiny test harness: each tests/test_<module>.c defines test functions and a table th_suite_<module>;
   tests/main.c runs every suite and prints "<variant>: N passed, N failed".  A test fails if any CHECK in it
   fails; every failed CHECK prints its file, line and values. */
#ifndef POLOPT_TEST_HARNESS_H
#define POLOPT_TEST_HARNESS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "polopt.h"

typedef struct th_test {
    const char *name;
    void (*fn)(void);
} th_test;

#define TH(fn) {#fn, fn}
#define TH_END {NULL, NULL}

extern const th_test th_suite_rng[];
extern const th_test th_suite_linalg[];
extern const th_test th_suite_numerics[];
extern const th_test th_suite_mips[];
extern const th_test th_suite_learn[];
extern const th_test th_suite_ope[];
extern const th_test th_suite_optim[];
extern const th_test th_suite_synth[];
extern const th_test th_suite_api[];
extern const th_test th_suite_objects[];
extern const th_test th_suite_hardening[];
extern const th_test th_suite_offpolicy[];
extern const th_test th_suite_lpi[];
extern const th_test th_suite_qhead[];
extern const th_test th_suite_interactions[];
extern const th_test th_suite_svd[];
extern const th_test th_suite_completion[];
extern const th_test th_suite_cuda[];
extern const th_test th_suite_slates[];

/* Failed checks in the current test. */
extern int th_failures;

void th_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) th_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);     \
    } while (0)

/* |a - b| <= tol, reporting both values. */
#define CHECK_NEAR(a, b, tol)                                                                            \
    do {                                                                                                 \
        const double th_a_ = (double)(a), th_b_ = (double)(b), th_t_ = (double)(tol);                   \
        if (!(fabs(th_a_ - th_b_) <= th_t_))                                                             \
            th_fail(__FILE__, __LINE__, "%s = %.9g vs %s = %.9g: |diff| %.3g > tol %.3g", #a, th_a_, #b, \
                    th_b_, fabs(th_a_ - th_b_), th_t_);                                                  \
    } while (0)

/* A call returns the expected polopt_result. */
#define CHECK_RC(call, expected)                                                                       \
    do {                                                                                               \
        const polopt_result th_rc_ = (call), th_ex_ = (expected);                                      \
        if (th_rc_ != th_ex_)                                                                          \
            th_fail(__FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", #call, (int)th_rc_, \
                    polopt_strerror(th_rc_), (int)th_ex_, polopt_strerror(th_ex_));                    \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, POLOPT_OK)

/* Pearson's chi-square statistic of observed counts against expected counts, over cells with expected > 0.
   Returns the statistic; *dof gets (cells - 1).  Observed counts in cells with expected 0 are returned in
   *impossible (they must be 0). */
double th_chi2(size_t cells, const double *observed, const double *expected, size_t *dof, double *impossible);
/* Upper critical value of chi-square with dof degrees of freedom at normal quantile z (z = 3.72: p = 1e-4),
   by the Wilson-Hilferty approximation (accurate to a few percent for dof >= 3). */
double th_chi2_critical(size_t dof, double z);
/* Check a chi-square goodness of fit at p = 1e-4 (all seeds are fixed, so a pass is reproducible). */
#define CHECK_CHI2(cells, observed, expected)                                                              \
    do {                                                                                                   \
        size_t th_dof_;                                                                                    \
        double th_imp_;                                                                                    \
        const double th_x2_ = th_chi2((cells), (observed), (expected), &th_dof_, &th_imp_);                \
        const double th_crit_ = th_chi2_critical(th_dof_, 3.72);                                           \
        if (!(th_x2_ <= th_crit_) || th_imp_ != 0.0)                                                       \
            th_fail(__FILE__, __LINE__, "chi-square %.2f > critical %.2f (dof %lu), or %g impossible draws", \
                    th_x2_, th_crit_, (unsigned long)th_dof_, th_imp_);                                    \
    } while (0)

/* The instruction sets whose kernels this build contains and this CPU runs (portable first): the kernel tests
   run each of them.  Returns how many were written to out (at most 8). */
size_t th_isas(polopt_isa *out);

/* A catalogue of P random items (N(0, 1) entries) in L <= 16 dims, one user embedding h (N(0, spread^2) entries), and
   an exact index over the items: the estimator's test bed. */
typedef struct th_cat {
    size_t P, L;
    float *beta, h[16];
    polopt_mips index;
} th_cat;
void th_cat_make(th_cat *c, size_t P, size_t L, float spread, uint64_t seed);
void th_cat_free(th_cat *c);

/* Recompute the payload and header checksums of a saved polopt file after editing it, as a careful forger would
   (payload checksum at byte 80 over the bytes after the 128-byte header, header checksum at 120 over bytes 0..119). */
void th_reseal(unsigned char *buf, size_t size);

/* Deterministic test data: uniform in [lo, hi) from a fixed seed. */
void th_fill_uniform(polopt_rng *rng, size_t n, float *x, float lo, float hi);

/* The test allocator (tests/impl.c routes POLOPT_MALLOC/REALLOC/FREE here: the allocator-override test).
   With ctx NULL it is plain malloc; with ctx a th_allocator it counts live blocks and fails the
   allocation numbered fail_at (0-based), so every failure path can be driven in turn. */
typedef struct th_allocator {
    long fail_at; /* -1: never fail */
    long calls;   /* allocations attempted */
    long live;    /* blocks allocated and not yet freed */
} th_allocator;

/* Every allocation failure of a scenario, in turn: run(&hooks, stage, user) is called with allocation k failing, for
   k = 0, 1, ... until a run completes without reaching the failure point.  Every failed run must answer
   POLOPT_ERR_NO_MEMORY and leak nothing (the scenario frees what it made, as a user would: every object must be
   freeable after a failure); the complete run must answer POLOPT_OK.  The scenario builds its objects with hooks. */
typedef polopt_result (*th_scenario)(const polopt_hooks *hooks, int stage, void *user);
void th_each_allocation_failure(const char *file, int line, const char *name, th_scenario run, int stage, void *user);
#define CHECK_EACH_ALLOCATION_FAILURE(run, stage, user) \
    th_each_allocation_failure(__FILE__, __LINE__, #run, (run), (stage), (user))

void *th_malloc(size_t size, void *ctx);
void *th_realloc(void *p, size_t size, void *ctx);
void th_free(void *p, void *ctx);

#endif
