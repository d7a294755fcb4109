/* bench_linalg: GFLOP/s of polopt's built-in kernels against CBLAS (OpenBLAS, one thread) in the same run, for the
   shapes the policy learners use:
     score   C = H beta^T   gemm NO_TRANS/TRANS, H a batch of 32 user embeddings (32 x L), beta the catalogue
                            (P x L): REINFORCE's scores for a minibatch, and exact MIPS.
     query   y = beta h     gemv NO_TRANS: one user against the catalogue.
     grad    g = beta^T w   gemv TRANS: the exact gradient sum_a w_a beta_a.
   The built-in side runs the kernel that polopt picks at run time on this CPU (printed); a second table times the
   score gemm on every kernel this CPU supports, the portable C one included, so the gain of each instruction set
   shows.  Usage: bench_linalg [P]   (default P = 1,000,000; L in {32, 64, 128, 256}).  Each figure is the median
   of repeated runs after a warm-up; the built-in and CBLAS runs alternate, so a drift of the machine's speed hits
   both alike (the buffers are touched before timing: first-touch page faults cost more than the arithmetic). */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef BENCH_HAVE_CBLAS
#include <cblas.h>
void openblas_set_num_threads(int n); /* OpenBLAS extension; the Makefile links OpenBLAS */
#endif

#define BATCH 32
#define REPS 11

enum { OP_SCORE, OP_QUERY, OP_GRAD, N_OPS };
static const char *op_names[N_OPS] = {"score gemm 32xP", "query gemv", "grad gemv^T"};

typedef struct {
    size_t P, L;
    const float *beta, *H, *w;
    float *C, *y, *g;
} work;

/* One run of op on the built-in kernels of isa (POLOPT_ISA_AUTO: the one polopt picks), or on CBLAS (cblas = 1). */
static void run(const work *k, int op, polopt_isa isa, int cblas)
{
#ifdef BENCH_HAVE_CBLAS
    const int P = (int)k->P, L = (int)k->L;
    if (cblas) {
        if (op == OP_SCORE)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BATCH, P, L, 1.0f, k->H, L, k->beta, L, 0.0f, k->C, P);
        else if (op == OP_QUERY)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, P, L, 1.0f, k->beta, L, k->H, 1, 0.0f, k->y, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, P, L, 1.0f, k->beta, L, k->w, 1, 0.0f, k->g, 1);
        return;
    }
#else
    (void)cblas;
#endif
    if (op == OP_SCORE)
        polopt_gemm_isa(isa, POLOPT_NO_TRANS, POLOPT_TRANS, BATCH, k->P, k->L, 1.0f, k->H, k->L, k->beta, k->L, 0.0f,
                        k->C, k->P);
    else if (op == OP_QUERY)
        polopt_gemv_isa(isa, POLOPT_NO_TRANS, k->P, k->L, 1.0f, k->beta, k->L, k->H, 0.0f, k->y);
    else
        polopt_gemv_isa(isa, POLOPT_TRANS, k->P, k->L, 1.0f, k->beta, k->L, k->w, 0.0f, k->g);
}

/* Median seconds of the built-in kernels of isa (*tb) and of CBLAS (*tc, if with_cblas), REPS runs each after one
   warm-up, the two alternating. */
static void time_pair(const work *k, int op, polopt_isa isa, int with_cblas, double *tb, double *tc)
{
    double a[REPS], b[REPS];
    int r;
    run(k, op, isa, 0);
    if (with_cblas) run(k, op, isa, 1);
    for (r = 0; r < REPS; ++r) {
        double t0 = bench_now();
        run(k, op, isa, 0);
        a[r] = bench_now() - t0;
        if (with_cblas) {
            t0 = bench_now();
            run(k, op, isa, 1);
            b[r] = bench_now() - t0;
        }
    }
    *tb = bench_median(a, REPS);
    *tc = with_cblas ? bench_median(b, REPS) : 0.0;
}

static float max_rel_diff(size_t n, const float *a, const float *b)
{
    float worst = 0.0f, scale = 0.0f;
    size_t i;
    for (i = 0; i < n; ++i) scale = fabsf(b[i]) > scale ? fabsf(b[i]) : scale;
    for (i = 0; i < n; ++i) worst = fabsf(a[i] - b[i]) > worst ? fabsf(a[i] - b[i]) : worst;
    return scale > 0.0f ? worst / scale : worst;
}

/* Largest difference between the built-in result of isa and CBLAS's (or the portable kernel's, without CBLAS). */
static float agreement(const work *k, int op, polopt_isa isa, int have_cblas)
{
    const size_t n = op == OP_SCORE ? (size_t)BATCH * k->P : (op == OP_QUERY ? k->P : k->L);
    float *out = op == OP_SCORE ? k->C : (op == OP_QUERY ? k->y : k->g), *keep = (float *)malloc(n * sizeof *keep);
    float d;
    if (!keep) return -1.0f;
    run(k, op, isa, 0);
    memcpy(keep, out, n * sizeof *keep);
    run(k, op, POLOPT_ISA_PORTABLE, have_cblas);
    d = max_rel_diff(n, keep, out);
    free(keep);
    return d;
}

int main(int argc, char **argv)
{
    static const size_t Ls[] = {32, 64, 128, 256};
    static const polopt_isa isas[] = {POLOPT_ISA_PORTABLE, POLOPT_ISA_AVX2, POLOPT_ISA_AVX512, POLOPT_ISA_NEON};
    const size_t P = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    const polopt_isa chosen = polopt_isa_detect();
    double ratio[N_OPS][4], geo[N_OPS] = {0, 0, 0}, portable_gf[4] = {0, 0, 0, 0};
    int have_cblas = 0, li, op;
    size_t ii;
    polopt_rng rng;
    work k;
    float *beta, *H, *w, *C, *y, *g;
    if (P < 1000) {
        fprintf(stderr, "bench_linalg: P = %lu is too small (at least 1000)\n", (unsigned long)P);
        return 2;
    }
#ifdef BENCH_HAVE_CBLAS
    have_cblas = 1;
    openblas_set_num_threads(1);
#endif
    beta = (float *)malloc(P * 256 * sizeof *beta);
    C = (float *)malloc(P * BATCH * sizeof *C);
    H = (float *)malloc(BATCH * 256 * sizeof *H);
    w = (float *)malloc(P * sizeof *w);
    y = (float *)malloc(P * sizeof *y);
    g = (float *)malloc(256 * sizeof *g);
    if (!beta || !C || !H || !w || !y || !g) {
        fprintf(stderr, "bench_linalg: out of memory for P = %lu\n", (unsigned long)P);
        return 1;
    }
    polopt_rng_seed(&rng, 1);
    /* random data: the kernels' speed does not depend on the values; every buffer is touched here */
    polopt_rng_normals(&rng, P * 256, beta);
    polopt_rng_normals(&rng, BATCH * 256, H);
    polopt_rng_normals(&rng, P, w);
    memset(C, 0, P * BATCH * sizeof *C);
    memset(y, 0, P * sizeof *y);
    printf("bench_linalg: P = %lu rows, batch %d, single thread, median of %d runs; built-in kernel: %s; %s\n",
           (unsigned long)P, BATCH, REPS, polopt_isa_name(chosen),
           have_cblas ? "CBLAS = OpenBLAS" : "no CBLAS found: built-in only");
    printf("%-18s %5s %-9s %12s %12s %10s %12s\n", "operation", "L", "kernel", "built-in", "CBLAS", "ratio",
           have_cblas ? "vs CBLAS" : "vs portable");
    for (op = 0; op < N_OPS; ++op)
        for (li = 0; li < 4; ++li) {
            const size_t L = Ls[li];
            const double flops = 2.0 * (double)P * (double)L * (op == OP_SCORE ? BATCH : 1);
            double tb, tc;
            float diff;
            k.P = P, k.L = L, k.beta = beta, k.H = H, k.w = w, k.C = C, k.y = y, k.g = g;
            time_pair(&k, op, chosen, have_cblas, &tb, &tc);
            diff = agreement(&k, op, chosen, have_cblas);
            ratio[op][li] = tc > 0.0 ? tc / tb : 0.0;
            geo[op] += log(ratio[op][li] > 0.0 ? ratio[op][li] : 1.0) / 4.0;
            if (have_cblas)
                printf("%-18s %5lu %-9s %7.1f GF/s %7.1f GF/s %9.2fx %12.1e\n", op_names[op], (unsigned long)L,
                       polopt_isa_name(chosen), flops / tb * 1e-9, flops / tc * 1e-9, ratio[op][li], (double)diff);
            else
                printf("%-18s %5lu %-9s %7.1f GF/s %12s %10s %12.1e\n", op_names[op], (unsigned long)L,
                       polopt_isa_name(chosen), flops / tb * 1e-9, "-", "-", (double)diff);
        }
    printf("ratio = CBLAS time / built-in time (above 1: the built-in is faster); the last column is the largest "
           "difference relative to the largest entry\n\n");

    printf("score gemm 32xP on each kernel this CPU supports (GF/s; speed-up over the portable C kernel)\n%-9s", "kernel");
    for (li = 0; li < 4; ++li) printf("   L = %-10lu", (unsigned long)Ls[li]);
    printf("\n");
    for (ii = 0; ii < sizeof isas / sizeof isas[0]; ++ii) {
        if (!polopt_isa_supported(isas[ii])) continue;
        printf("%-9s", polopt_isa_name(isas[ii]));
        for (li = 0; li < 4; ++li) {
            const double flops = 2.0 * (double)P * (double)Ls[li] * BATCH;
            double tb, unused;
            k.P = P, k.L = Ls[li], k.beta = beta, k.H = H, k.w = w, k.C = C, k.y = y, k.g = g;
            time_pair(&k, OP_SCORE, isas[ii], 0, &tb, &unused);
            if (isas[ii] == POLOPT_ISA_PORTABLE) portable_gf[li] = flops / tb * 1e-9;
            printf("   %5.1f (%4.1fx)", flops / tb * 1e-9, flops / tb * 1e-9 / portable_gf[li]);
        }
        printf("\n");
    }

    if (have_cblas) {
        printf("bench: P=%lu kernel=%s", (unsigned long)P, polopt_isa_name(chosen));
        for (li = 0; li < 4; ++li) printf(" gemm_ratio_L%lu=%.2f", (unsigned long)Ls[li], ratio[OP_SCORE][li]);
        for (li = 0; li < 4; ++li) printf(" gemv_ratio_L%lu=%.2f", (unsigned long)Ls[li], ratio[OP_QUERY][li]);
        for (li = 0; li < 4; ++li) printf(" gemvT_ratio_L%lu=%.2f", (unsigned long)Ls[li], ratio[OP_GRAD][li]);
        printf(" gemm_ratio_geomean=%.2f gemv_ratio_geomean=%.2f gemvT_ratio_geomean=%.2f\n", exp(geo[OP_SCORE]),
               exp(geo[OP_QUERY]), exp(geo[OP_GRAD]));
    } else {
        printf("bench: P=%lu kernel=%s cblas=absent\n", (unsigned long)P, polopt_isa_name(chosen));
    }
    free(beta);
    free(C);
    free(H);
    free(w);
    free(y);
    free(g);
    return 0;
}
