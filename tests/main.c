/* Runs every suite; prints failures and a closing "<variant>: N passed, N failed".  Arguments run only the tests
   whose "suite.name" contains one of them (e.g. "linalg numerics"). */
#define _POSIX_C_SOURCE 200809L /* mkdir, chdir */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#ifndef TH_VARIANT
#define TH_VARIANT "tests"
#endif

int th_failures = 0;
static const char *th_current = "";

void th_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    if (th_failures < 10) { /* enough to diagnose; a loop of failures stays readable */
        printf("  FAIL %s  %s:%d: ", th_current, file, line);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
    }
    ++th_failures;
}

double th_chi2(size_t cells, const double *observed, const double *expected, size_t *dof, double *impossible)
{
    double x2 = 0.0;
    size_t i, used = 0;
    *impossible = 0.0;
    for (i = 0; i < cells; ++i) {
        if (expected[i] > 0.0) {
            const double d = observed[i] - expected[i];
            x2 += d * d / expected[i];
            ++used;
        } else {
            *impossible += observed[i];
        }
    }
    *dof = used > 1 ? used - 1 : 1;
    return x2;
}

double th_chi2_critical(size_t dof, double z)
{
    const double k = (double)dof, h = 2.0 / (9.0 * k), c = 1.0 - h + z * sqrt(h);
    return k * c * c * c;
}

size_t th_isas(polopt_isa *out)
{
    static const polopt_isa all[] = {POLOPT_ISA_PORTABLE, POLOPT_ISA_AVX2, POLOPT_ISA_AVX512, POLOPT_ISA_NEON};
    size_t i, n = 0;
    for (i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (polopt_isa_supported(all[i])) out[n++] = all[i];
    return n;
}

void th_reseal(unsigned char *buf, size_t size)
{
    uint64_t ck;
    int i;
    polopt_checksum64(buf + 128, size - 128, &ck);
    for (i = 0; i < 8; ++i) buf[80 + i] = (unsigned char)(ck >> (8 * i));
    polopt_checksum64(buf, 120, &ck);
    for (i = 0; i < 8; ++i) buf[120 + i] = (unsigned char)(ck >> (8 * i));
}

void th_cat_make(th_cat *c, size_t P, size_t L, float spread, uint64_t seed)
{
    polopt_rng rng;
    size_t j;
    c->P = P, c->L = L;
    c->beta = (float *)malloc(P * L * sizeof(float));
    polopt_rng_seed(&rng, seed);
    polopt_rng_normals(&rng, P * L, c->beta);
    polopt_rng_normals(&rng, L, c->h);
    for (j = 0; j < L; ++j) c->h[j] *= spread;
    CHECK_OK(polopt_mips_init_exact(&c->index, P, L, c->beta, 0, NULL));
}

void th_cat_free(th_cat *c)
{
    polopt_mips_free(&c->index);
    free(c->beta);
}

void th_fill_uniform(polopt_rng *rng, size_t n, float *x, float lo, float hi)
{
    size_t i;
    for (i = 0; i < n; ++i) x[i] = lo + (hi - lo) * polopt_rng_uniformf(rng);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        const th_test *tests;
    } suites[] = {{"rng", th_suite_rng},           {"linalg", th_suite_linalg}, {"numerics", th_suite_numerics},
                  {"mips", th_suite_mips},           {"learn", th_suite_learn},
                  {"ope", th_suite_ope},         {"optim", th_suite_optim},       {"synth", th_suite_synth},   {"api", th_suite_api},
                  {"objects", th_suite_objects}, {"hardening", th_suite_hardening}, {"offpolicy", th_suite_offpolicy},
                  {"lpi", th_suite_lpi},         {"qhead", th_suite_qhead},       {"interactions", th_suite_interactions},
                  {"svd", th_suite_svd},         {"completion", th_suite_completion}, {"cuda", th_suite_cuda},
                  {"slates", th_suite_slates}};
    int passed = 0, failed = 0, a, wanted;
    size_t s;
    char name[256];
    setvbuf(stdout, NULL, _IONBF, 0);
    /* make test runs the variants at once, and the tests write files under build/: each variant works in a directory
       of its own, build/run-<variant>/, whose build/ then holds its files (two variants writing one index file
       made one of them read the other's) */
    mkdir("build", 0777), mkdir("build/run-" TH_VARIANT, 0777);
    if (chdir("build/run-" TH_VARIANT) != 0 || (mkdir("build", 0777) != 0 && access("build", W_OK) != 0)) {
        printf("%s: cannot work in build/run-%s\n%s: 0 passed, 1 failed\n", TH_VARIANT, TH_VARIANT, TH_VARIANT);
        return 1;
    }
    for (s = 0; s < sizeof suites / sizeof suites[0]; ++s) {
        const th_test *t;
        for (t = suites[s].tests; t->name; ++t) {
            snprintf(name, sizeof name, "%s.%s", suites[s].name, t->name);
            for (wanted = argc <= 1, a = 1; a < argc && !wanted; ++a) wanted = strstr(name, argv[a]) != NULL;
            if (!wanted) continue;
            th_current = name;
            th_failures = 0;
            t->fn();
            if (th_failures) {
                printf("FAILED %s (%d failed checks)\n", name, th_failures);
                ++failed;
            } else {
                ++passed;
            }
        }
    }
    printf("%s: %d passed, %d failed\n", TH_VARIANT, passed, failed);
    return failed ? 1 : 0;
}

void th_each_allocation_failure(const char *file, int line, const char *name, th_scenario run, int stage, void *user)
{
    long k;
    for (k = 0; k < 100000; ++k) {
        th_allocator a;
        polopt_hooks h;
        polopt_result rc;
        a.fail_at = k, a.calls = 0, a.live = 0;
        memset(&h, 0, sizeof h);
        h.alloc_ctx = &a;
        rc = run(&h, stage, user);
        if (a.live != 0) th_fail(file, line, "%s, stage %d: %ld blocks leaked when allocation %ld failed", name, stage, a.live, k);
        if (a.calls <= k) { /* the failure point was never reached: the scenario ran to its end */
            if (rc != POLOPT_OK)
                th_fail(file, line, "%s, stage %d: the complete run answered %s", name, stage, polopt_strerror(rc));
            return;
        }
        if (rc != POLOPT_ERR_NO_MEMORY)
            th_fail(file, line, "%s, stage %d: allocation %ld failed, the result was %s", name, stage, k,
                    polopt_strerror(rc));
    }
    th_fail(file, line, "%s, stage %d: more than 100000 allocations", name, stage);
}

void *th_malloc(size_t size, void *ctx)
{
    th_allocator *a = (th_allocator *)ctx;
    void *p;
    if (!a) return malloc(size);
    if (a->calls++ == a->fail_at) return NULL;
    p = malloc(size);
    if (p) ++a->live;
    return p;
}

void *th_realloc(void *p, size_t size, void *ctx)
{
    th_allocator *a = (th_allocator *)ctx;
    void *q;
    if (!a) return realloc(p, size);
    if (a->calls++ == a->fail_at) return NULL;
    q = realloc(p, size);
    if (q && !p) ++a->live;
    return q;
}

void th_free(void *p, void *ctx)
{
    th_allocator *a = (th_allocator *)ctx;
    if (a && p) --a->live;
    free(p);
}
