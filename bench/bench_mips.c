/* bench_mips: the MIPS index on the synthetic catalogue (clustered, unequal norms), L = 64, single thread.
   For each P: build time and bytes per item; for K in {10, 256} and a sweep of ef, recall@K against exact search
   and queries per second; exact search per query and its bandwidth next to the machine's copy bandwidth; and the
   same data through hnswlib (Debian's libhnswlib-dev, inner-product space, same M and ef_construction) when its
   header is present.
   Usage: bench_mips [P ...]   (default: 100000 1000000) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define L 64
#define NQ 200
#define M_LINKS 16
#define EF_CONSTRUCTION 200

#ifdef BENCH_HAVE_CBLAS
int bench_cblas_exact_open(size_t n, size_t dim, const float *vectors, size_t k);
double bench_cblas_exact_search(size_t n_queries, const float *queries, size_t k, uint32_t *out_ids);
void bench_cblas_exact_close(void);
#endif

#ifdef BENCH_HAVE_HNSWLIB
void *peer_build(const float *data, size_t n, size_t dim, size_t M, size_t efc, double *bytes_per_item);
void peer_search(void *handle, const float *query, size_t k, size_t ef, uint32_t *out);
void peer_free(void *handle);
#endif



/* Exact top-256 for a batch of 32 queries, the built-in kernels against OpenBLAS's sgemm feeding the same heaps (a
   CBLAS build of the same library), alternating, median of 5 each: milliseconds per batch into *ms_builtin and
   *ms_cblas (0 without CBLAS); the fraction of ids the two agree on into *agree. */
static void exact_batch_vs_cblas(const polopt_mips *exact, polopt_mips_scratch *sx, const float *beta, const float *Q,
                                 double *ms_builtin, double *ms_cblas, double *agree)
{
    static uint32_t a[32 * 256], b[32 * 256];
    double tb[5], tc[5];
    size_t i, same = 0;
    int r, with_cblas = 0;
#ifdef BENCH_HAVE_CBLAS
    with_cblas = bench_cblas_exact_open(exact->n, L, beta, 256);
    if (with_cblas) bench_cblas_exact_search(32, Q, 256, b); /* warm-up: first touch of the scratch */
#else
    (void)beta;
#endif
    polopt_mips_search_batch(exact, sx, 32, Q, L, 256, 0, a, NULL);
    for (r = 0; r < 5; ++r) {
        const double t0 = bench_now();
        polopt_mips_search_batch(exact, sx, 32, Q, L, 256, 0, a, NULL);
        tb[r] = bench_now() - t0;
        tc[r] = 0.0;
#ifdef BENCH_HAVE_CBLAS
        if (with_cblas) tc[r] = bench_cblas_exact_search(32, Q, 256, b);
#endif
    }
    *ms_builtin = 1e3 * bench_median(tb, 5);
    *ms_cblas = 1e3 * bench_median(tc, 5);
    for (i = 0; with_cblas && i < 32 * 256; ++i) same += a[i] == b[i];
    *agree = with_cblas ? (double)same / (32.0 * 256.0) : 1.0;
#ifdef BENCH_HAVE_CBLAS
    if (with_cblas) bench_cblas_exact_close();
#endif
}

/* Median GB/s of memcpy over a buffer already touched, counting the bytes read and written (as STREAM does). */
static double copy_bandwidth(size_t bytes)
{
    char *a = (char *)malloc(bytes), *b = (char *)malloc(bytes);
    double t[5];
    int r;
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    for (r = 0; r < 5; ++r) {
        const double t0 = bench_now();
        memcpy(b, a, bytes);
        t[r] = bench_now() - t0;
        a[r] = b[bytes - 1 - r]; /* keep the copies observable */
    }
    free(a);
    free(b);
    return 2.0 * (double)bytes / bench_median(t, 5) * 1e-9;
}

typedef struct method {
    const char *name;
    const polopt_mips *ix; /* polopt, or NULL for the peer */
    polopt_mips_scratch *sc;
    void *peer;
} method;

static void search(const method *m, const float *q, size_t k, size_t ef, uint32_t *out)
{
#ifdef BENCH_HAVE_HNSWLIB
    if (m->peer) {
        peer_search(m->peer, q, k, ef, out);
        return;
    }
#endif
    polopt_mips_search(m->ix, m->sc, q, k, ef, out, NULL);
}

/* recall@k of NQ queries and queries per second (median of 3 passes) */
static void measure(const method *m, const float *Q, const uint32_t *truth, size_t k, size_t ef, double *out_recall,
                    double *out_qps)
{
    uint32_t out[2048];
    double t[3];
    size_t u, i, j, hits = 0;
    int r;
    for (r = 0; r < 3; ++r) {
        const double t0 = bench_now();
        for (u = 0; u < NQ; ++u) {
            search(m, Q + u * L, k, ef, out);
            if (r == 0)
                for (i = 0; i < k; ++i)
                    for (j = 0; j < k; ++j)
                        if (out[i] == truth[u * 256 + j]) {
                            ++hits;
                            break;
                        }
        }
        t[r] = bench_now() - t0;
    }
    *out_recall = (double)hits / (double)(NQ * k);
    *out_qps = NQ / bench_median(t, 3);
}

/* Queries per second at recall 0.95, interpolated between the two ef that bracket it (0 if never reached). */
static double qps_at(const double *rec, const double *qps, int n, double target)
{
    int i;
    for (i = 0; i < n; ++i)
        if (rec[i] >= target) {
            if (i == 0) return qps[0];
            return qps[i - 1] + (qps[i] - qps[i - 1]) * (target - rec[i - 1]) / (rec[i] - rec[i - 1]);
        }
    return 0.0;
}

static const size_t efs10[] = {10, 16, 24, 32, 48, 64, 96, 128, 256};
static const size_t efs256[] = {256, 384, 512, 768, 1024, 2048};
#define N10 ((int)(sizeof efs10 / sizeof efs10[0]))
#define N256 ((int)(sizeof efs256 / sizeof efs256[0]))

int main(int argc, char **argv)
{
    size_t sizes[8] = {100000, 1000000};
    int n_sizes = 2, si;
    char keys[2048] = "";
    if (argc > 1) {
        for (n_sizes = 0; n_sizes < argc - 1 && n_sizes < 8; ++n_sizes) sizes[n_sizes] = (size_t)strtoul(argv[1 + n_sizes], NULL, 10);
    }
    printf("bench_mips: synthetic catalogue, L = %d, M = %d, ef_construction = %d, %d queries (held-out users), one "
           "thread\n", L, M_LINKS, EF_CONSTRUCTION, NQ);
#ifndef BENCH_HAVE_HNSWLIB
    printf("hnswlib: skipped (libhnswlib-dev is not installed: apt-get install libhnswlib-dev)\n");
#endif
    for (si = 0; si < n_sizes; ++si) {
        const size_t P = sizes[si];
        polopt_synth_config sc = polopt_synth_config_default();
        polopt_synth cat;
        polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
        polopt_mips exact, hnsw;
        polopt_mips_scratch sx, sh;
        float *beta, *Q;
        uint32_t *truth, top10[10];
        double t0, t_build, t_exact_batch, t_exact_single, copy_gbs, bytes, formula, ms_b32, ms_b32_cblas, agree;
        double rec10[2][N10], qps10[2][N10], rec256[2][N256], qps256[2][N256], peer_build_s = 0, peer_bytes = 0;
        method ms[2];
        int n_methods = 1, mi, e;
        size_t u;
        char line[512];
        sc.n_items = P, sc.dim = L;
        if (P < 1000 || polopt_synth_init(&cat, &sc) != POLOPT_OK) {
            fprintf(stderr, "bench_mips: P = %lu: need at least 1000 items\n", (unsigned long)P);
            return 2;
        }
        beta = (float *)malloc(P * L * sizeof *beta);
        Q = (float *)malloc(NQ * L * sizeof *Q);
        truth = (uint32_t *)malloc(NQ * 256 * sizeof *truth);
        polopt_synth_items(&cat, 0, P, beta);
        for (u = 0; u < NQ; ++u) polopt_synth_user(&cat, 10000000 + u, Q + u * L, NULL);
        copy_gbs = copy_bandwidth(P * L * sizeof(float));

        /* exact search: the ground truth, and the baseline */
        polopt_mips_init_exact(&exact, P, L, beta, 0, NULL);
        polopt_mips_scratch_init(&sx, &exact, 256, NULL);
        polopt_mips_search_batch(&exact, &sx, NQ, Q, L, 256, 0, truth, NULL); /* warm-up */
        t0 = bench_now();
        polopt_mips_search_batch(&exact, &sx, NQ, Q, L, 256, 0, truth, NULL);
        t_exact_batch = (bench_now() - t0) / NQ;
        t0 = bench_now();
        for (u = 0; u < 20; ++u) polopt_mips_search(&exact, &sx, Q + u * L, 10, 0, top10, NULL);
        t_exact_single = (bench_now() - t0) / 20;
        exact_batch_vs_cblas(&exact, &sx, beta, Q, &ms_b32, &ms_b32_cblas, &agree);

        /* polopt HNSW */
        hc.M = M_LINKS, hc.ef_construction = EF_CONSTRUCTION;
        t0 = bench_now();
        if (polopt_mips_init_hnsw(&hnsw, P, L, beta, 0, &hc) != POLOPT_OK) {
            fprintf(stderr, "bench_mips: %s\n", hnsw.err.message);
            return 1;
        }
        t_build = bench_now() - t0;
        polopt_mips_scratch_init(&sh, &hnsw, 2048, NULL);
        /* the bytes the index holds (it borrows the vectors): every per-item array and the upper levels used */
        bytes = (double)hnsw.n * (4.0 * (1 + 2 * hnsw.M) + 4 + 1 + 4) + 4.0 * (double)hnsw.upper_size;
        formula = 4.0 * (1 + 2 * M_LINKS) + 4 + 1 + 4 + 4.0 * (1 + M_LINKS) / (M_LINKS - 1);
        ms[0].name = "polopt", ms[0].ix = &hnsw, ms[0].sc = &sh, ms[0].peer = NULL;
#ifdef BENCH_HAVE_HNSWLIB
        t0 = bench_now();
        ms[1].peer = peer_build(beta, P, L, M_LINKS, EF_CONSTRUCTION, &peer_bytes);
        peer_build_s = bench_now() - t0;
        ms[1].name = "hnswlib", ms[1].ix = NULL, ms[1].sc = NULL;
        if (ms[1].peer) n_methods = 2;
#endif
        for (mi = 0; mi < n_methods; ++mi) {
            for (e = 0; e < N10; ++e) measure(&ms[mi], Q, truth, 10, efs10[e], &rec10[mi][e], &qps10[mi][e]);
            for (e = 0; e < N256; ++e) measure(&ms[mi], Q, truth, 256, efs256[e], &rec256[mi][e], &qps256[mi][e]);
        }

        printf("\nP = %lu\n", (unsigned long)P);
        printf("  copy bandwidth (memcpy, read + write): %.1f GB/s\n", copy_gbs);
        printf("  exact search: %.2f ms/query one at a time (%.1f GB/s of items read, %.0f%% of copy bandwidth); "
               "%.3f ms/query in batches of 32\n", 1e3 * t_exact_single,
               (double)P * L * 4 / t_exact_single * 1e-9, 100.0 * ((double)P * L * 4 / t_exact_single * 1e-9) / copy_gbs,
               1e3 * t_exact_batch);
        if (ms_b32_cblas > 0)
            printf("  exact top-256, batch of 32 queries: built-in (%s) %.1f ms, OpenBLAS sgemm + the same heaps %.1f ms: "
                   "ratio %.2f (OpenBLAS time / built-in time); results agree on %.1f%% of ids\n",
                   polopt_isa_name(polopt_isa_detect()), ms_b32, ms_b32_cblas, ms_b32_cblas / ms_b32, 100.0 * agree);
        else
            printf("  exact top-256, batch of 32 queries: built-in (%s) %.1f ms; OpenBLAS: skipped (no libopenblas-dev)\n",
                   polopt_isa_name(polopt_isa_detect()), ms_b32);
        printf("  %-8s build %7.1f s   graph bytes/item %6.1f (header formula %.1f) + %d for vectors if copied\n", "polopt",
               t_build, bytes / (double)P, formula, 4 * L);
        if (n_methods == 2)
            printf("  %-8s build %7.1f s   bytes/item %6.1f (links, vector and label)\n", "hnswlib", peer_build_s, peer_bytes);
        printf("  %4s %6s", "K", "ef");
        for (mi = 0; mi < n_methods; ++mi) printf("   %8s recall      qps", ms[mi].name);
        printf("\n");
        for (e = 0; e < N10 + N256; ++e) {
            const int big = e >= N10, i = big ? e - N10 : e;
            printf("  %4d %6lu", big ? 256 : 10, (unsigned long)(big ? efs256[i] : efs10[i]));
            for (mi = 0; mi < n_methods; ++mi)
                printf("   %15.3f %8.0f", big ? rec256[mi][i] : rec10[mi][i], big ? qps256[mi][i] : qps10[mi][i]);
            printf("\n");
        }
        {
            const double ours = qps_at(rec10[0], qps10[0], N10, 0.95);
            double best256 = 0;
            for (e = 0; e < N256; ++e) best256 = rec256[0][e] > best256 ? rec256[0][e] : best256;
            sprintf(line, " P%lu_build_s=%.1f P%lu_bytes_per_item=%.1f P%lu_qps_at_recall10_095=%.0f P%lu_recall256_max=%.3f "
                          "P%lu_exact_ms=%.2f P%lu_exact_copy_bw_frac=%.2f",
                    (unsigned long)P, t_build, (unsigned long)P, bytes / (double)P, (unsigned long)P, ours,
                    (unsigned long)P, best256, (unsigned long)P, 1e3 * t_exact_single, (unsigned long)P,
                    ((double)P * L * 4 / t_exact_single * 1e-9) / copy_gbs);
            strcat(keys, line);
            sprintf(line, " P%lu_exact_batch32_ms=%.1f", (unsigned long)P, ms_b32);
            strcat(keys, line);
            if (ms_b32_cblas > 0) {
                sprintf(line, " P%lu_exact_batch32_ratio_vs_cblas=%.2f", (unsigned long)P, ms_b32_cblas / ms_b32);
                strcat(keys, line);
            }
            if (n_methods == 2) {
                const double theirs = qps_at(rec10[1], qps10[1], N10, 0.95);
                printf("  at recall@10 = 0.95: polopt %.0f qps, hnswlib %.0f qps (ratio %.2f); build time ratio %.2f\n",
                       ours, theirs, theirs > 0 ? ours / theirs : 0.0, t_build / peer_build_s);
                sprintf(line, " P%lu_qps_ratio_vs_hnswlib=%.2f P%lu_build_ratio_vs_hnswlib=%.2f", (unsigned long)P,
                        theirs > 0 ? ours / theirs : 0.0, (unsigned long)P, t_build / peer_build_s);
                strcat(keys, line);
                if (si == n_sizes - 1) { /* the headline figures: the largest catalogue */
                    sprintf(line, " qps_ratio_vs_hnswlib=%.2f build_ratio_vs_hnswlib=%.2f",
                            theirs > 0 ? ours / theirs : 0.0, t_build / peer_build_s);
                    strcat(keys, line);
                }
            }
        }
#ifdef BENCH_HAVE_HNSWLIB
        if (n_methods == 2) peer_free(ms[1].peer);
#endif
        polopt_mips_scratch_free(&sx);
        polopt_mips_scratch_free(&sh);
        polopt_mips_free(&exact);
        polopt_mips_free(&hnsw);
        polopt_synth_free(&cat);
        free(beta), free(Q), free(truth);
    }
    printf("\nbench:%s%s\n", keys,
#ifdef BENCH_HAVE_HNSWLIB
           ""
#else
           " hnswlib=absent"
#endif
    );
    return 0;
}
