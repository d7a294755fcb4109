/* bench_slates: what a Plackett-Luce slate costs as the catalogue grows.  Per batch of 32 contexts (L = 32, slates
   of K = 4): setting the estimator, then for every context the log-probability and gradient of a slate
   (polopt_estimator_slate_log_prob) and one sampled slate (polopt_estimator_sample_slate):
     EXACT       the baseline: all P items scored, pi computed, every step's expectation exact; O(P L)
     SNIS        eps = 0.8, a proposal over the HNSW top-64, S = 1000 draws shared by the K steps; O(S L + log P)
   and, beside them, the single-item log pi and gradient of the same estimator (polopt_estimator_log_prob), which
   shows what the K steps add; and a PRR fitting step per slate (polopt_prr_fit), which never sees the catalogue.
   Each figure is the median of 7 repetitions, in the same process.
   Usage: bench_slates [--quick] [P ...]   (default P: 10000 100000 1000000; --quick: 10000 100000) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L 32
#define B 32
#define SLOTS 4
#define REPS 7

static void check(polopt_result rc, const char *what)
{
    if (rc == POLOPT_OK) return;
    fprintf(stderr, "%s: %s\n", what, polopt_strerror(rc));
    exit(1);
}

/* Milliseconds per batch (median of REPS): set + per context a slate's log pi and gradient (slate = 1) or the
   single-item ones (slate = 0), and a sampled slate. */
static double time_batch(polopt_estimator *est, const float *H, const uint32_t *slates, int slate, polopt_rng *rng)
{
    double t[REPS];
    float lp[SLOTS], g[SLOTS * L];
    uint32_t s[SLOTS];
    int r;
    size_t c;
    for (r = 0; r < REPS; ++r) {
        const double t0 = bench_now();
        check(polopt_estimator_set(est, B, H, NULL), "set");
        for (c = 0; c < B; ++c) {
            if (slate) {
                check(polopt_estimator_slate_log_prob(est, c, SLOTS, slates + c * SLOTS, lp, g), "slate log pi");
                check(polopt_estimator_sample_slate(est, c, SLOTS, rng, s), "sample");
            } else {
                check(polopt_estimator_log_prob(est, c, 1, slates + c * SLOTS, lp, g), "log pi");
            }
        }
        t[r] = (bench_now() - t0) * 1e3;
    }
    return bench_median(t, REPS);
}

int main(int argc, char **argv)
{
    size_t Ps[8], n_p = 0, i;
    int a, quick = 0;
    char keys[1024] = "";
    double prr_us;
    for (a = 1; a < argc; ++a) {
        if (!strcmp(argv[a], "--quick")) quick = 1;
        else if (n_p < 8) Ps[n_p++] = (size_t)strtoul(argv[a], NULL, 10);
    }
    if (!n_p) {
        Ps[n_p++] = 10000, Ps[n_p++] = 100000;
        if (!quick) Ps[n_p++] = 1000000;
    }
    printf("bench_slates: ms per batch of %d contexts, slates of K = %d, L = %d (kernels: %s)\n\n", B, SLOTS, L,
           polopt_isa_name(polopt_isa_detect()));
    printf("%10s %14s %14s %10s %16s %16s\n", "P", "EXACT slate", "SNIS slate", "speed-up", "SNIS single item",
           "slate / single");
    for (i = 0; i < n_p; ++i) {
        const size_t P = Ps[i];
        polopt_synth_config sc = polopt_synth_config_default();
        polopt_synth cat;
        polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
        polopt_mips index;
        polopt_estimator exact, snis;
        polopt_estimator_config ec = polopt_estimator_config_default();
        polopt_rng rng;
        float *beta = (float *)malloc(P * L * sizeof(float)), H[B * L];
        uint32_t slates[B * SLOTS];
        double t_exact, t_snis, t_single;
        size_t c;
        if (!beta) check(POLOPT_ERR_NO_MEMORY, "allocation");
        sc.n_items = P, sc.dim = L;
        check(polopt_synth_init(&cat, &sc), "catalogue");
        check(polopt_synth_items(&cat, 0, P, beta), "items");
        for (c = 0; c < B; ++c) check(polopt_synth_user(&cat, c, H + c * L, NULL), "user");
        polopt_synth_free(&cat);
        hc.ef_construction = 100, hc.n_threads = 2;
        check(polopt_mips_init_hnsw(&index, P, L, beta, 1, &hc), "index");
        free(beta);
        polopt_rng_seed(&rng, 3);
        for (c = 0; c < B; ++c) check(polopt_rng_choose(&rng, P, SLOTS, slates + c * SLOTS), "slates");
        ec.batch = B, ec.K = 64, ec.S = 1000;
        check(polopt_estimator_init(&snis, &index, &ec), "SNIS");
        ec.method = POLOPT_METHOD_EXACT;
        check(polopt_estimator_init(&exact, &index, &ec), "EXACT");
        t_exact = time_batch(&exact, H, slates, 1, &rng);
        t_snis = time_batch(&snis, H, slates, 1, &rng);
        t_single = time_batch(&snis, H, slates, 0, &rng);
        printf("%10lu %14.2f %14.2f %9.1fx %16.2f %15.2fx\n", (unsigned long)P, t_exact, t_snis, t_exact / t_snis,
               t_single, t_snis / t_single);
        snprintf(keys + strlen(keys), sizeof keys - strlen(keys), " p%lu_exact_ms=%.3f p%lu_snis_ms=%.3f p%lu_speedup=%.1f",
                 (unsigned long)P, t_exact, (unsigned long)P, t_snis, (unsigned long)P, t_exact / t_snis);
        polopt_estimator_free(&snis);
        polopt_estimator_free(&exact);
        polopt_mips_free(&index);
    }
    { /* PRR: one pass over 20,000 random slates of a 1000-item catalogue (the catalogue size does not enter) */
        enum { N = 20000, P = 1000 };
        float *beta = (float *)malloc(P * L * sizeof(float)), *X = (float *)malloc(N * L * sizeof(float));
        uint32_t *items = (uint32_t *)malloc(N * SLOTS * sizeof(uint32_t));
        int32_t *click = (int32_t *)malloc(N * sizeof(int32_t));
        polopt_mips index;
        polopt_prr prr;
        polopt_prr_config pc = polopt_prr_config_default(L, L, SLOTS);
        polopt_slate_clicks d;
        polopt_rng rng;
        double t[REPS];
        int r;
        size_t n;
        if (!beta || !X || !items || !click) check(POLOPT_ERR_NO_MEMORY, "allocation");
        polopt_rng_seed(&rng, 5);
        polopt_rng_normals(&rng, P * L, beta);
        polopt_rng_normals(&rng, N * L, X);
        for (n = 0; n < N; ++n) {
            check(polopt_rng_choose(&rng, P, SLOTS, items + n * SLOTS), "slates");
            click[n] = polopt_rng_below(&rng, 3) ? -1 : (int32_t)polopt_rng_below(&rng, SLOTS); /* a third clicked */
        }
        check(polopt_mips_init_exact(&index, P, L, beta, 1, NULL), "index");
        pc.epochs = 1;
        d.n = N, d.X = X, d.items = items, d.click = click;
        check(polopt_prr_init(&prr, &pc), "prr");
        for (r = 0; r < REPS; ++r) {
            const double t0 = bench_now();
            check(polopt_prr_fit(&prr, &index, &d, NULL), "prr fit");
            t[r] = (bench_now() - t0) / N * 1e6;
        }
        prr_us = bench_median(t, REPS);
        printf("\nPRR fitting: %.2f us per slate (D = L = %d, K = %d), whatever P\n", prr_us, L, SLOTS);
        polopt_prr_free(&prr);
        polopt_mips_free(&index);
        free(beta), free(X), free(items), free(click);
    }
    printf("\nbench:%s prr_us_per_slate=%.3f\n", keys, prr_us);
    return 0;
}
