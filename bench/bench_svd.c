/* bench_svd: the randomized truncated SVD (polopt_svd_sparse) of interaction matrices: seconds, peak memory and
   accuracy against the number of power passes, with a many-pass run of the same matrix as the reference and the
   time of a pass-free sketch as the baseline (the ratio column), in one run, one thread.
     baskets   the Debian dependency baskets shipped in ../shared (25,546 x 17,840, 224,062 ones), or any CSV given
     synthetic sessions x items with a popular head, clustered tastes and a long tail (default 10^6 x 10^6, 8 to 12
               items a session): the size a large catalogue's log has
   Rank 64, oversample 20.  Accuracy: the largest relative error of s_1..s_64 against the reference (q = 20 for
   the baskets; at 10^6 x 10^6, q = 12, the time a reference costs there).
   Usage: bench_svd [--csv FILE --session COL] [--sessions N --items N]   (defaults: the baskets, then 10^6 x 10^6)
          bench_svd --quick   (the baskets, and a 10^5 x 10^5 synthetic matrix) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define RANK 64

/* Peak resident memory of this process so far, in MiB (Linux reports kilobytes). */
static double peak_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* One matrix: the SVD at each q of qs (the first is the baseline, the last the reference), a table, bench keys. */
static void bench_matrix(const char *tag, const polopt_csr *A, const size_t *qs, int n_q, char *keys)
{
    static float s[8][RANK];
    float *V = (float *)malloc(A->n_cols * RANK * sizeof(float));
    double seconds[8], before = peak_mib(), peak = 0.0;
    char line[512];
    int i, j;
    if (!V) {
        fprintf(stderr, "bench_svd: out of memory\n");
        exit(1);
    }
    printf("\n%s: %lu x %lu, %lu nonzeros, rank %d, oversample 20\n", tag, (unsigned long)A->n_rows,
           (unsigned long)A->n_cols, (unsigned long)A->offsets[A->n_rows], RANK);
    for (i = 0; i < n_q; ++i) {
        polopt_svd_config c = polopt_svd_config_default(RANK);
        double t0;
        c.power_iters = qs[i];
        t0 = bench_now();
        if (polopt_svd_sparse(A, &c, s[i], V, NULL) != POLOPT_OK) {
            fprintf(stderr, "bench_svd: the SVD failed\n");
            exit(1);
        }
        seconds[i] = bench_now() - t0;
        peak = peak_mib();
    }
    printf("  %13s %10s %12s %24s\n", "power passes", "seconds", "vs q = 0", "max rel. error of s_1..s_64");
    for (i = 0; i < n_q; ++i) {
        double worst = 0.0;
        for (j = 0; j < RANK; ++j) {
            const double e = fabs((double)s[i][j] - s[n_q - 1][j]) / s[n_q - 1][j];
            worst = e > worst ? e : worst;
        }
        printf("  %13lu %10.2f %11.2fx %24.2g%s\n", (unsigned long)qs[i], seconds[i], seconds[i] / seconds[0], worst,
               i == n_q - 1 ? "  (the reference)" : qs[i] == 6 ? "  (the default)" : "");
        if (qs[i] == 6) {
            snprintf(line, sizeof line, " %s_seconds=%.2f %s_vs_q0=%.2f %s_max_rel_err=%.2g", tag, seconds[i], tag,
                     seconds[i] / seconds[0], tag, worst);
            strcat(keys, line);
        }
    }
    printf("  peak resident memory: %.0f MiB (%.0f MiB before the SVDs; the matrix and V of %lu x %d floats are the "
           "caller's)\n", peak, before, (unsigned long)A->n_cols, RANK);
    snprintf(line, sizeof line, " %s_peak_mib=%.0f", tag, peak);
    strcat(keys, line);
    printf("  s_1 = %.1f, s_64 = %.1f\n", (double)s[n_q - 1][0], (double)s[n_q - 1][RANK - 1]);
    free(V);
}

/* A synthetic log of n_sessions x n_items: each session draws 8 to 12 items, a third from a popular head (the first
   1% of the items, Zipf-like), the rest from one of 1000 themes, a contiguous block of the catalogue, favouring its
   first items.  Duplicates within a session are dropped by polopt_interactions_init. */
static void synthetic(size_t n_sessions, size_t n_items, polopt_interactions *log)
{
    const size_t head = n_items / 100 > 1 ? n_items / 100 : 1, themes = 1000, block = (n_items - head) / themes;
    size_t cap = n_sessions * 12, n = 0, i, t;
    uint32_t *sess = (uint32_t *)malloc(cap * sizeof(uint32_t)), *item = (uint32_t *)malloc(cap * sizeof(uint32_t));
    polopt_rng rng;
    if (!sess || !item) {
        fprintf(stderr, "bench_svd: out of memory\n");
        exit(1);
    }
    polopt_rng_seed(&rng, 2026);
    for (i = 0; i < n_sessions; ++i) {
        const size_t len = 8 + (size_t)polopt_rng_below(&rng, 5), theme = (size_t)polopt_rng_below(&rng, themes);
        for (t = 0; t < len; ++t) {
            const double u = polopt_rng_uniform(&rng);
            sess[n] = (uint32_t)i;
            item[n++] = (uint32_t)(u < 0.33 ? (size_t)(head * u * u * 9.0) % head
                                            : head + theme * block + (size_t)((double)block * u * u) % block);
        }
    }
    if (polopt_interactions_init(log, n, sess, item, NULL, NULL) != POLOPT_OK) {
        fprintf(stderr, "bench_svd: %s\n", log->err.message);
        exit(1);
    }
    free(sess), free(item);
}

int main(int argc, char **argv)
{
    static char keys[4096] = "";
    static const size_t qs_small[] = {0, 2, 6, 20}, qs_large[] = {0, 2, 6, 12};
    const char *csv = "../shared/data/debian-baskets/depends/baskets.csv", *session = "basket";
    size_t n_sessions = 1000000, n_items = 1000000;
    int i, quick = 0;
    for (i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--quick")) quick = 1, n_sessions = n_items = 100000;
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
        else if (!strcmp(argv[i], "--session") && i + 1 < argc) session = argv[++i];
        else if (!strcmp(argv[i], "--sessions") && i + 1 < argc) n_sessions = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--items") && i + 1 < argc) n_items = (size_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_svd [--quick] [--csv FILE --session COL] [--sessions N --items N]\n");
            return 2;
        }
    }
    if (n_items < 200000 / 100 || n_sessions < RANK) {
        fprintf(stderr, "bench_svd: at least 2000 items and 64 sessions\n");
        return 2;
    }
    printf("bench_svd: polopt_svd_sparse, one thread, kernels: %s\n", polopt_isa_name(polopt_isa_detect()));
    {
        polopt_interactions log;
        polopt_interactions_config c = polopt_interactions_config_default();
        c.session = session;
        if (polopt_interactions_load_csv(&log, csv, &c) != POLOPT_OK) {
            printf("\nbaskets: skipped (%s)\n", log.err.message);
        } else {
            const polopt_csr A = polopt_interactions_matrix(&log);
            bench_matrix("baskets", &A, qs_small, 4, keys);
            polopt_interactions_free(&log);
        }
    }
    {
        polopt_interactions log;
        polopt_csr A;
        double t0 = bench_now();
        synthetic(n_sessions, n_items, &log);
        printf("\n(the synthetic log: %.1f s to generate and compress)", bench_now() - t0);
        A = polopt_interactions_matrix(&log);
        bench_matrix(quick ? "synthetic_1e5" : "synthetic", &A, qs_large, 4, keys);
        polopt_interactions_free(&log);
    }
    printf("\nbench:%s\n", keys);
    return 0;
}
