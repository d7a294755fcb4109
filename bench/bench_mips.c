/* bench_mips: the MIPS index on the synthetic catalogue (clustered, unequal norms), L = 64, single thread.
   For each P: build time and bytes per item; for K in {10, 256} and a sweep of ef, recall@K against exact search
   and queries per second; exact search per query and its bandwidth next to the machine's copy bandwidth; and the
   same data through hnswlib (Debian's libhnswlib-dev, inner-product space, same M and ef_construction) when its
   header is present.  On embeddings from a file (--vectors: the items of any polopt index file, such as the
   embeddings `polopt embed` writes), also how often each index returns an exact argmax (top-1), which serving the
   greedy action needs.  Ties count as found (see reaches below): real interaction data has many.
   Usage: bench_mips [P ...]                             synthetic catalogues (default: 100000 1000000)
          bench_mips --vectors FILE [--queries FILE]     queries: the rows of another index file (e.g. the contexts
                                                         `polopt embed` writes); default 2000 means of 8 items */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define L 64   /* of the synthetic catalogue */
#define NQ 200 /* queries of the synthetic catalogue */
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
    const size_t dim = exact->dim;
    static uint32_t a[32 * 256], b[32 * 256];
    double tb[5], tc[5];
    size_t i, same = 0;
    int r, with_cblas = 0;
#ifdef BENCH_HAVE_CBLAS
    with_cblas = bench_cblas_exact_open(exact->n, dim, beta, 256);
    if (with_cblas) bench_cblas_exact_search(32, Q, 256, b); /* warm-up: first touch of the scratch */
#else
    (void)beta;
#endif
    polopt_mips_search_batch(exact, sx, 32, Q, dim, 256, 0, a, NULL);
    for (r = 0; r < 5; ++r) {
        const double t0 = bench_now();
        polopt_mips_search_batch(exact, sx, 32, Q, dim, 256, 0, a, NULL);
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

/* The queries and their exact top-256 (and top-1). */
typedef struct queries {
    size_t n, dim;
    const float *Q;
    const float *items; /* the catalogue, to score what an index returns */
    uint32_t *truth;    /* n x 256 */
    double *score;      /* n x 256: the scores of truth, in double */
} queries;

static double dot_double(const float *a, const float *b, size_t d)
{
    double s = 0.0;
    size_t j;
    for (j = 0; j < d; ++j) s += (double)a[j] * (double)b[j];
    return s;
}

static int by_decreasing(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Ties count as found: an item is among the top k when its score reaches the k-th largest, less a rounding margin
   (1e-6 of the largest score's size, far above float's error on these dot products and far below the gaps between
   distinct scores).  Sparse interaction data has many: items of the same few baskets get identical rows of beta,
   and a context whose observed items all have zero rows scores every item 0, so any item is its argmax. */
static int reaches(const queries *qs, size_t u, uint32_t id, size_t k)
{
    const double top = qs->score[u * 256], margin = 1e-6 * (top < 0 ? -top : top);
    return dot_double(qs->Q + u * qs->dim, qs->items + (size_t)id * qs->dim, qs->dim) >=
           qs->score[u * 256 + k - 1] - margin;
}

/* recall@k of the queries (the share of the k results that reach the exact k-th score) and queries per second
   (median of 3 passes); with top1, the fraction of queries whose first result is an exact argmax. */
static void measure(const method *m, const queries *qs, size_t k, size_t ef, double *out_recall, double *out_qps,
                    double *out_top1)
{
    uint32_t out[2048];
    double t[3];
    size_t u, i, hits = 0, top1 = 0;
    int r;
    for (r = 0; r < 3; ++r) {
        const double t0 = bench_now();
        for (u = 0; u < qs->n; ++u) {
            search(m, qs->Q + u * qs->dim, k, ef, out);
            if (r > 0) continue; /* scored outside the timed passes */
            top1 += reaches(qs, u, out[0], 1);
            for (i = 0; i < k; ++i) hits += out[i] != POLOPT_NO_ITEM && reaches(qs, u, out[i], k);
        }
        t[r] = bench_now() - t0;
    }
    *out_recall = (double)hits / (double)(qs->n * k);
    *out_qps = (double)qs->n / bench_median(t, 3);
    if (out_top1) *out_top1 = (double)top1 / (double)qs->n;
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
static const size_t efs1[] = {16, 64, 256};
#define N10 ((int)(sizeof efs10 / sizeof efs10[0]))
#define N256 ((int)(sizeof efs256 / sizeof efs256[0]))
#define N1 ((int)(sizeof efs1 / sizeof efs1[0]))

/* Everything about one catalogue (P items of beta, d floats each) and its queries; appends its bench keys to keys
   under the prefix tag (e.g. "P1000000_"); top1: also the argmax table. */
static int bench_catalogue(const char *tag, size_t P, size_t d, const float *beta, queries *qs, int top1, int last,
                           char *keys)
{
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_mips exact, hnsw;
    polopt_mips_scratch sx, sh;
    uint32_t top10[10];
    double t0, t_build, t_exact_batch, t_exact_single, copy_gbs, bytes, formula, ms_b32, ms_b32_cblas, agree;
    double rec10[2][N10], qps10[2][N10], rec256[2][N256], qps256[2][N256], t256[2][N256], peer_build_s = 0;
    double rec1[2][N1], qps1[2][N1], t1[2][N1], peer_bytes = 0;
    method ms[2];
    int n_methods = 1, mi, e;
    size_t u, n_tied = 0;
    char line[1024];
    copy_gbs = copy_bandwidth(P * d * sizeof(float));

    /* exact search: the ground truth, and the baseline */
    polopt_mips_init_exact(&exact, P, d, beta, 0, NULL);
    polopt_mips_scratch_init(&sx, &exact, 256, NULL);
    polopt_mips_search_batch(&exact, &sx, qs->n, qs->Q, d, 256, 0, qs->truth, NULL); /* warm-up */
    t0 = bench_now();
    polopt_mips_search_batch(&exact, &sx, qs->n, qs->Q, d, 256, 0, qs->truth, NULL);
    t_exact_batch = (bench_now() - t0) / (double)qs->n;
    qs->items = beta;
    for (u = 0; u < qs->n; ++u) { /* the exact scores in double, sorted (float may order near-ties either way) */
        double *sc = qs->score + u * 256;
        size_t i;
        for (i = 0; i < 256; ++i) sc[i] = dot_double(qs->Q + u * d, beta + (size_t)qs->truth[u * 256 + i] * d, d);
        qsort(sc, 256, sizeof *sc, by_decreasing);
        n_tied += reaches(qs, u, qs->truth[u * 256 + 1], 1); /* the second best reaches the top score */
    }
    t0 = bench_now();
    for (u = 0; u < 20; ++u) polopt_mips_search(&exact, &sx, qs->Q + (u % qs->n) * d, 10, 0, top10, NULL);
    t_exact_single = (bench_now() - t0) / 20;
    if (qs->n >= 32) exact_batch_vs_cblas(&exact, &sx, beta, qs->Q, &ms_b32, &ms_b32_cblas, &agree);
    else ms_b32 = ms_b32_cblas = 0.0, agree = 1.0;

    /* polopt HNSW */
    hc.M = M_LINKS, hc.ef_construction = EF_CONSTRUCTION;
    t0 = bench_now();
    if (polopt_mips_init_hnsw(&hnsw, P, d, beta, 0, &hc) != POLOPT_OK) {
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
    ms[1].peer = peer_build(beta, P, d, M_LINKS, EF_CONSTRUCTION, &peer_bytes);
    peer_build_s = bench_now() - t0;
    ms[1].name = "hnswlib", ms[1].ix = NULL, ms[1].sc = NULL;
    if (ms[1].peer) n_methods = 2;
#endif
    for (mi = 0; mi < n_methods; ++mi) {
        for (e = 0; e < N10; ++e) measure(&ms[mi], qs, 10, efs10[e], &rec10[mi][e], &qps10[mi][e], NULL);
        for (e = 0; e < N256; ++e) measure(&ms[mi], qs, 256, efs256[e], &rec256[mi][e], &qps256[mi][e], &t256[mi][e]);
        for (e = 0; top1 && e < N1; ++e) measure(&ms[mi], qs, 1, efs1[e], &rec1[mi][e], &qps1[mi][e], &t1[mi][e]);
    }

    printf("\n%s: P = %lu items of dimension %lu, %lu queries\n", tag, (unsigned long)P, (unsigned long)d,
           (unsigned long)qs->n);
    printf("  copy bandwidth (memcpy, read + write): %.1f GB/s\n", copy_gbs);
    printf("  queries whose argmax is tied (two or more items with the top score; any of them counts as found): %lu\n",
           (unsigned long)n_tied);
    printf("  exact search: %.2f ms/query one at a time (%.1f GB/s of items read, %.0f%% of copy bandwidth); "
           "%.3f ms/query in batches of 32\n", 1e3 * t_exact_single,
           (double)P * d * 4 / t_exact_single * 1e-9, 100.0 * ((double)P * d * 4 / t_exact_single * 1e-9) / copy_gbs,
           1e3 * t_exact_batch);
    if (ms_b32_cblas > 0)
        printf("  exact top-256, batch of 32 queries: built-in (%s) %.1f ms, OpenBLAS sgemm + the same heaps %.1f ms: "
               "ratio %.2f (OpenBLAS time / built-in time); results agree on %.1f%% of ids\n",
               polopt_isa_name(polopt_isa_detect()), ms_b32, ms_b32_cblas, ms_b32_cblas / ms_b32, 100.0 * agree);
    else
        printf("  exact top-256, batch of 32 queries: built-in (%s) %.1f ms; OpenBLAS: skipped (no libopenblas-dev)\n",
               polopt_isa_name(polopt_isa_detect()), ms_b32);
    printf("  %-8s build %7.1f s   graph bytes/item %6.1f (header formula %.1f) + %lu for vectors if copied\n",
           "polopt", t_build, bytes / (double)P, formula, (unsigned long)(4 * d));
    if (n_methods == 2)
        printf("  %-8s build %7.1f s   bytes/item %6.1f (links, vector and label)\n", "hnswlib", peer_build_s, peer_bytes);
    printf("  %4s %6s", "K", "ef");
    for (mi = 0; mi < n_methods; ++mi) printf("   %8s recall      qps   top-1", ms[mi].name);
    printf("\n");
    for (e = 0; e < N10 + N256 + (top1 ? N1 : 0); ++e) {
        const int part = e < N10 ? 0 : e < N10 + N256 ? 1 : 2, i = part == 0 ? e : part == 1 ? e - N10 : e - N10 - N256;
        const size_t K = part == 0 ? 10 : part == 1 ? 256 : 1;
        printf("  %4lu %6lu", (unsigned long)K, (unsigned long)(part == 0 ? efs10[i] : part == 1 ? efs256[i] : efs1[i]));
        for (mi = 0; mi < n_methods; ++mi) {
            const double rec = part == 0 ? rec10[mi][i] : part == 1 ? rec256[mi][i] : rec1[mi][i];
            const double qps = part == 0 ? qps10[mi][i] : part == 1 ? qps256[mi][i] : qps1[mi][i];
            printf("   %15.3f %8.0f", rec, qps);
            if (part == 0) printf("        ");
            else printf("  %6.4f", part == 1 ? t256[mi][i] : t1[mi][i]);
        }
        printf("\n");
    }
    {
        const double ours = qps_at(rec10[0], qps10[0], N10, 0.95);
        double best256 = 0;
        for (e = 0; e < N256; ++e) best256 = rec256[0][e] > best256 ? rec256[0][e] : best256;
        snprintf(line, sizeof line, " %sbuild_s=%.1f %sbytes_per_item=%.1f %sqps_at_recall10_095=%.0f %srecall256_max=%.3f "
                      "%srecall256_ef256=%.3f %sexact_ms=%.2f %sexact_copy_bw_frac=%.2f", tag, t_build, tag,
                bytes / (double)P, tag, ours, tag, best256, tag, rec256[0][0], tag, 1e3 * t_exact_single, tag,
                ((double)P * d * 4 / t_exact_single * 1e-9) / copy_gbs);
        strcat(keys, line);
        if (top1) {
            snprintf(line, sizeof line, " %stop1_exact_k1_ef64=%.4f %stop1_exact_k256_ef256=%.4f", tag, t1[0][1], tag, t256[0][0]);
            strcat(keys, line);
        }
        snprintf(line, sizeof line, " %sexact_batch32_ms=%.1f", tag, ms_b32);
        strcat(keys, line);
        if (ms_b32_cblas > 0) {
            snprintf(line, sizeof line, " %sexact_batch32_ratio_vs_cblas=%.2f", tag, ms_b32_cblas / ms_b32);
            strcat(keys, line);
        }
        if (n_methods == 2) {
            const double theirs = qps_at(rec10[1], qps10[1], N10, 0.95);
            printf("  at recall@10 = 0.95: polopt %.0f qps, hnswlib %.0f qps (ratio %.2f); build time ratio %.2f\n",
                   ours, theirs, theirs > 0 ? ours / theirs : 0.0, t_build / peer_build_s);
            snprintf(line, sizeof line, " %sqps_ratio_vs_hnswlib=%.2f %sbuild_ratio_vs_hnswlib=%.2f %shnswlib_recall256_ef256=%.3f",
                    tag, theirs > 0 ? ours / theirs : 0.0, tag, t_build / peer_build_s, tag, rec256[1][0]);
            strcat(keys, line);
            if (top1) {
                snprintf(line, sizeof line, " %shnswlib_top1_exact_k1_ef64=%.4f", tag, t1[1][1]);
                strcat(keys, line);
            }
            if (last) { /* the headline figures: the last catalogue */
                snprintf(line, sizeof line, " qps_ratio_vs_hnswlib=%.2f build_ratio_vs_hnswlib=%.2f",
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
    return 0;
}

/* The rows of an index file (any kind), copied out. */
static float *load_rows(const char *path, size_t *n, size_t *d)
{
    polopt_mips ix;
    float *out;
    if (polopt_mips_load(&ix, path, NULL) != POLOPT_OK) {
        fprintf(stderr, "bench_mips: %s\n", ix.err.message);
        return NULL;
    }
    *n = ix.n, *d = ix.dim;
    out = (float *)malloc(ix.n * ix.dim * sizeof(float));
    if (out) memcpy(out, ix.vectors, ix.n * ix.dim * sizeof(float));
    polopt_mips_free(&ix);
    return out;
}

int main(int argc, char **argv)
{
    size_t sizes[8] = {100000, 1000000};
    int n_sizes = 2, si;
    static char keys[8192] = "";
    const char *vectors = NULL, *queries_path = NULL;
    if (argc > 1 && strcmp(argv[1], "--vectors") == 0) {
        vectors = argc > 2 ? argv[2] : NULL;
        if (argc > 4 && strcmp(argv[3], "--queries") == 0) queries_path = argv[4];
        if (!vectors || (argc > 3 && !queries_path)) {
            fprintf(stderr, "usage: bench_mips [P ...] | --vectors FILE [--queries FILE]\n");
            return 2;
        }
    } else if (argc > 1) {
        for (n_sizes = 0; n_sizes < argc - 1 && n_sizes < 8; ++n_sizes) sizes[n_sizes] = (size_t)strtoul(argv[1 + n_sizes], NULL, 10);
    }
    printf("bench_mips: M = %d, ef_construction = %d, one thread\n", M_LINKS, EF_CONSTRUCTION);
#ifndef BENCH_HAVE_HNSWLIB
    printf("hnswlib: skipped (libhnswlib-dev is not installed: apt-get install libhnswlib-dev)\n");
#endif
    if (vectors) { /* real embeddings: their rows, and queries from a file or means of 8 random items */
        size_t P, d, nq = 2000, qd, u, j, t;
        float *beta = load_rows(vectors, &P, &d), *Q = NULL;
        queries qs;
        polopt_rng rng;
        if (!beta) return 1;
        if (queries_path) {
            Q = load_rows(queries_path, &nq, &qd);
            if (!Q) return 1;
            if (qd != d) {
                fprintf(stderr, "bench_mips: the queries have dimension %lu, the items %lu\n", (unsigned long)qd,
                        (unsigned long)d);
                return 2;
            }
            if (nq > 5000) nq = 5000; /* enough for a top-1 rate to 0.1% */
        } else {
            Q = (float *)calloc(nq * d, sizeof(float));
            polopt_rng_seed(&rng, 5);
            for (u = 0; u < nq; ++u)
                for (t = 0; t < 8; ++t) {
                    const float *b = beta + polopt_rng_below(&rng, P) * d;
                    for (j = 0; j < d; ++j) Q[u * d + j] += b[j] / 8.0f;
                }
        }
        if (P < 256) {
            fprintf(stderr, "bench_mips: %s has %lu items; at least 256 are needed\n", vectors, (unsigned long)P);
            return 2;
        }
        qs.n = nq, qs.dim = d, qs.Q = Q, qs.truth = (uint32_t *)malloc(nq * 256 * sizeof(uint32_t));
        qs.score = (double *)malloc(nq * 256 * sizeof(double));
        printf("vectors: %s%s%s\n", vectors, queries_path ? ", queries: " : " (queries: means of 8 random items)",
               queries_path ? queries_path : "");
        if (bench_catalogue("file_", P, d, beta, &qs, 1, 1, keys)) return 1;
        free(beta), free(Q), free(qs.truth), free(qs.score);
    }
    for (si = 0; !vectors && si < n_sizes; ++si) {
        const size_t P = sizes[si];
        polopt_synth_config sc = polopt_synth_config_default();
        polopt_synth cat;
        float *beta, *Q;
        queries qs;
        char tag[64];
        size_t u;
        sc.n_items = P, sc.dim = L;
        if (P < 1000 || polopt_synth_init(&cat, &sc) != POLOPT_OK) {
            fprintf(stderr, "bench_mips: P = %lu: need at least 1000 items\n", (unsigned long)P);
            return 2;
        }
        beta = (float *)malloc(P * L * sizeof *beta);
        Q = (float *)malloc(NQ * L * sizeof *Q);
        polopt_synth_items(&cat, 0, P, beta);
        for (u = 0; u < NQ; ++u) polopt_synth_user(&cat, 10000000 + u, Q + u * L, NULL);
        qs.n = NQ, qs.dim = L, qs.Q = Q, qs.truth = (uint32_t *)malloc(NQ * 256 * sizeof(uint32_t));
        qs.score = (double *)malloc(NQ * 256 * sizeof(double));
        sprintf(tag, "P%lu_", (unsigned long)P);
        printf("synthetic catalogue (clustered, unequal norms), queries: held-out users\n");
        if (bench_catalogue(tag, P, L, beta, &qs, 0, si == n_sizes - 1, keys)) return 1;
        polopt_synth_free(&cat);
        free(beta), free(Q), free(qs.truth), free(qs.score);
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
