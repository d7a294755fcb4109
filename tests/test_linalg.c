/* Linear algebra against naive double-precision loops, on every kernel (instruction set) this CPU runs: the portable
   C kernels and each SIMD one, through the _isa functions, and the plain functions (the kernel chosen at run time,
   or CBLAS in the CBLAS build).  Sizes straddle every vector width, register tile (MR up to 8, NR up to 32), the
   gemm's k slices (KC = 256) and row blocks (MC = 32), with leading dimensions larger than the rows.
   Tolerances are the standard forward error bounds of floating-point summation: a float sum of k products of
   magnitude sum |a_p b_p| is within about (k + 2) * 2^-24 * sum |a_p b_p| of the exact value, whatever the order of
   the additions (and with or without fused multiply-adds). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define U24 (1.0 / 16777216.0)
#define PLAIN ((polopt_isa)-1) /* "the function without _isa" in the loops below */

static float *rand_array(polopt_rng *rng, size_t n)
{
    float *x = (float *)malloc((n ? n : 1) * sizeof *x);
    th_fill_uniform(rng, n, x, -1.0f, 1.0f);
    return x;
}

/* The kernels to test: every supported instruction set, then the plain functions.  Returns the count. */
static size_t kernels(polopt_isa *out)
{
    size_t n = th_isas(out);
    out[n++] = PLAIN;
    return n;
}

static const char *kname(polopt_isa isa)
{
    return isa == PLAIN ? "plain" : polopt_isa_name(isa);
}

static polopt_result dot_k(polopt_isa isa, size_t n, const float *x, const float *y, float *out)
{
    return isa == PLAIN ? polopt_dot(n, x, y, out) : polopt_dot_isa(isa, n, x, y, out);
}

static polopt_result axpy_k(polopt_isa isa, size_t n, float alpha, const float *x, float *y)
{
    return isa == PLAIN ? polopt_axpy(n, alpha, x, y) : polopt_axpy_isa(isa, n, alpha, x, y);
}

static polopt_result gemv_k(polopt_isa isa, polopt_trans t, size_t m, size_t n, float alpha, const float *A,
                            size_t lda, const float *x, float beta, float *y)
{
    return isa == PLAIN ? polopt_gemv(t, m, n, alpha, A, lda, x, beta, y)
                        : polopt_gemv_isa(isa, t, m, n, alpha, A, lda, x, beta, y);
}

static polopt_result gemm_k(polopt_isa isa, polopt_trans ta, polopt_trans tb, size_t m, size_t n, size_t k,
                            float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                            size_t ldc)
{
    return isa == PLAIN ? polopt_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
                        : polopt_gemm_isa(isa, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void linalg_isa_choice(void)
{
    polopt_isa isas[8];
    const size_t n = th_isas(isas);
    const polopt_isa best = polopt_isa_detect();
    float x = 1.0f, d = 0.0f;
    size_t i;
    printf("    kernels tested:");
    for (i = 0; i < n; ++i) printf(" %s", polopt_isa_name(isas[i]));
    printf(" (chosen at run time: %s)\n", polopt_isa_name(best));
    CHECK(best != POLOPT_ISA_AUTO && polopt_isa_supported(best));
    CHECK(polopt_isa_supported(POLOPT_ISA_AUTO) && polopt_isa_supported(POLOPT_ISA_PORTABLE));
    CHECK(n >= 1 && isas[0] == POLOPT_ISA_PORTABLE);
    CHECK(!polopt_isa_supported((polopt_isa)99) && strcmp(polopt_isa_name((polopt_isa)99), "unknown") == 0);
    CHECK(strcmp(polopt_isa_name(POLOPT_ISA_AVX2), "avx2") == 0 && strcmp(polopt_isa_name(POLOPT_ISA_AUTO), "auto") == 0);
#if defined(__x86_64__) && !defined(POLOPT_NO_SIMD)
    /* an x86-64 CPU without AVX2 is possible, but gcc and clang builds always contain the AVX2 kernels */
    CHECK(!polopt_isa_supported(POLOPT_ISA_NEON));
    CHECK_RC(polopt_dot_isa(POLOPT_ISA_NEON, 1, &x, &x, &d), POLOPT_ERR_UNSUPPORTED);
    CHECK_RC(polopt_gemm_isa(POLOPT_ISA_NEON, POLOPT_NO_TRANS, POLOPT_NO_TRANS, 1, 1, 1, 1, &x, 1, &x, 1, 0, &d, 1),
             POLOPT_ERR_UNSUPPORTED);
#elif defined(__aarch64__) && !defined(POLOPT_NO_SIMD)
    CHECK(best == POLOPT_ISA_NEON && !polopt_isa_supported(POLOPT_ISA_AVX2));
    CHECK_RC(polopt_dot_isa(POLOPT_ISA_AVX2, 1, &x, &x, &d), POLOPT_ERR_UNSUPPORTED);
#else
    CHECK(best == POLOPT_ISA_PORTABLE); /* POLOPT_NO_SIMD, or a target without SIMD kernels */
    CHECK_RC(polopt_axpy_isa(POLOPT_ISA_AVX512, 1, 1.0f, &x, &d), POLOPT_ERR_UNSUPPORTED);
#endif
    CHECK_RC(polopt_softmax_isa((polopt_isa)99, 1, &x, 1.0f, &d), POLOPT_ERR_UNSUPPORTED);
    CHECK_OK(polopt_dot_isa(POLOPT_ISA_AUTO, 1, &x, &x, &d));
    CHECK(d == 1.0f);
}

static void linalg_dot_axpy_scale(void)
{
    static const size_t sizes[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 1000, 100003};
    polopt_isa isas[9];
    const size_t nk = kernels(isas);
    polopt_rng rng;
    size_t t, i, q;
    polopt_rng_seed(&rng, 1);
    for (t = 0; t < sizeof sizes / sizeof sizes[0]; ++t) {
        const size_t n = sizes[t];
        float *x = rand_array(&rng, n + 1), *y = rand_array(&rng, n + 1), *y0 = rand_array(&rng, n + 1), d;
        double ref = 0, mag = 0;
        for (i = 0; i < n; ++i) {
            ref += (double)x[i] * y[i];
            mag += fabs((double)x[i] * y[i]);
        }
        memcpy(y0, y, (n + 1) * sizeof *y);
        for (q = 0; q < nk; ++q) {
            int bad = 0;
            CHECK_OK(dot_k(isas[q], n, x, y, &d));
            if (!(fabs(d - ref) <= (n + 2) * U24 * mag))
                th_fail(__FILE__, __LINE__, "dot %s n = %lu: %.9g vs %.9g", kname(isas[q]), (unsigned long)n, (double)d, ref);
            CHECK_OK(axpy_k(isas[q], n, -0.75f, x, y));
            for (i = 0; i < n; ++i) bad += !(fabs(y[i] - (y0[i] - 0.75 * x[i])) <= 2 * U24 * (fabs(y0[i]) + fabs(x[i])));
            bad += y[n] != y0[n]; /* nothing written past the end */
            if (bad) th_fail(__FILE__, __LINE__, "axpy %s n = %lu: %d wrong entries", kname(isas[q]), (unsigned long)n, bad);
            memcpy(y, y0, (n + 1) * sizeof *y);
        }
        CHECK_OK(polopt_scale(n, 3.0f, y));
        for (i = 0; i < n; ++i) CHECK(y[i] == (float)(3.0f * y0[i])); /* one rounding each: exact */
        free(x);
        free(y);
        free(y0);
    }
    {
        float nan_[3] = {NAN, 1.0f, -2.0f};
        CHECK_OK(polopt_scale(3, 0.0f, nan_)); /* BLAS convention: alpha = 0 clears, NaN included */
        CHECK(nan_[0] == 0.0f && nan_[1] == 0.0f && nan_[2] == 0.0f);
    }
    CHECK_RC(polopt_dot(3, NULL, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_axpy(3, 1.0f, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_dot_isa(POLOPT_ISA_PORTABLE, 3, NULL, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_axpy_isa(POLOPT_ISA_PORTABLE, 3, 1.0f, NULL, NULL), POLOPT_ERR_INVALID_ARG);
}

static void linalg_scale_exact(void)
{
    float x[5] = {1.5f, -2.0f, 0.25f, 0.0f, 1e30f};
    CHECK_OK(polopt_scale(5, 2.0f, x));
    CHECK(x[0] == 3.0f && x[1] == -4.0f && x[2] == 0.5f && x[3] == 0.0f && x[4] == (float)2e30f);
}

static void linalg_nrm2_no_overflow(void)
{
    float big[4] = {3e30f, 4e30f, 0, 0}, tiny[2] = {3e-30f, 4e-30f}, r;
    polopt_rng rng;
    float *x;
    double ref = 0;
    size_t i;
    CHECK_OK(polopt_nrm2(4, big, &r));
    CHECK_NEAR(r, 5e30, 5e30 * 4 * U24);
    CHECK_OK(polopt_nrm2(2, tiny, &r));
    CHECK_NEAR(r, 5e-30, 5e-30 * 4 * U24);
    polopt_rng_seed(&rng, 2);
    x = rand_array(&rng, 1001);
    for (i = 0; i < 1001; ++i) ref += (double)x[i] * x[i];
    CHECK_OK(polopt_nrm2(1001, x, &r));
    CHECK_NEAR(r, sqrt(ref), 2 * U24 * sqrt(ref));
    CHECK_OK(polopt_nrm2(0, NULL, &r));
    CHECK(r == 0.0f);
    free(x);
}

/* y = alpha op(A) x + beta y in double, as the reference; also returns the magnitude bound per entry. */
static void ref_gemv(int trans, size_t m, size_t n, double alpha, const float *A, size_t lda, const float *x,
                     double beta, const float *y0, double *out, double *mag)
{
    const size_t rows = trans ? n : m, inner = trans ? m : n;
    size_t i, p;
    for (i = 0; i < rows; ++i) {
        double s = 0, a = 0;
        for (p = 0; p < inner; ++p) {
            const double v = (double)(trans ? A[p * lda + i] : A[i * lda + p]) * x[p];
            s += v;
            a += fabs(v);
        }
        out[i] = alpha * s + (beta == 0 ? 0 : beta * y0[i]);
        mag[i] = fabs(alpha) * a + fabs(beta * (beta == 0 ? 0 : y0[i]));
    }
}

static void linalg_gemv_both_ways(void)
{
    /* m around the 4- and 8-row blocks and the prefetch distance (16 rows ahead), n around 4, 8, 16 lanes */
    static const size_t shapes[][3] = {{1, 1, 1},   {3, 5, 7},     {4, 16, 16},  {8, 8, 8},   {9, 9, 11},
                                       {17, 33, 40}, {100, 64, 64}, {7, 1, 3},    {31, 17, 17}, {64, 255, 260},
                                       {1000, 32, 32}};
    static const float betas[] = {0.0f, 1.0f, -0.5f};
    polopt_isa isas[9];
    const size_t nk = kernels(isas);
    polopt_rng rng;
    size_t s, b, i, q;
    int trans;
    polopt_rng_seed(&rng, 3);
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (trans = 0; trans < 2; ++trans)
            for (b = 0; b < 3; ++b) {
                const size_t m = shapes[s][0], n = shapes[s][1], lda = shapes[s][2];
                const size_t ny = trans ? n : m, nx = trans ? m : n;
                float *A = rand_array(&rng, m * lda), *x = rand_array(&rng, nx), *y = rand_array(&rng, ny + 1);
                float *y0 = rand_array(&rng, ny + 1);
                double *ref = (double *)malloc((ny + 1) * sizeof *ref), *mag = (double *)malloc((ny + 1) * sizeof *mag);
                if (betas[b] == 0.0f) y[0] = NAN; /* beta = 0 must ignore what y held */
                memcpy(y0, y, (ny + 1) * sizeof *y);
                ref_gemv(trans, m, n, -1.25, A, lda, x, betas[b], y0, ref, mag);
                for (q = 0; q < nk; ++q) {
                    int bad = 0;
                    memcpy(y, y0, (ny + 1) * sizeof *y);
                    CHECK_OK(gemv_k(isas[q], trans ? POLOPT_TRANS : POLOPT_NO_TRANS, m, n, -1.25f, A, lda, x,
                                    betas[b], y));
                    for (i = 0; i < ny; ++i) bad += !(fabs(y[i] - ref[i]) <= (nx + 4) * U24 * mag[i] + 1e-30);
                    bad += memcmp(&y[ny], &y0[ny], sizeof *y) != 0; /* nothing written past the end */
                    if (bad)
                        th_fail(__FILE__, __LINE__, "gemv %s %c %lux%lu lda %lu beta %g: %d wrong entries",
                                kname(isas[q]), trans ? 'T' : 'N', (unsigned long)m, (unsigned long)n,
                                (unsigned long)lda, (double)betas[b], bad);
                }
                free(A);
                free(x);
                free(y);
                free(y0);
                free(ref);
                free(mag);
            }
    {
        float A[6] = {0}, x[3] = {0}, y[2] = {0};
        CHECK_RC(polopt_gemv(POLOPT_NO_TRANS, 2, 3, 1.0f, A, 2, x, 0.0f, y), POLOPT_ERR_INVALID_ARG); /* lda < n */
        CHECK_RC(polopt_gemv_isa(POLOPT_ISA_PORTABLE, POLOPT_NO_TRANS, 2, 3, 1.0f, A, 2, x, 0.0f, y),
                 POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_gemv((polopt_trans)7, 2, 3, 1.0f, A, 3, x, 0.0f, y), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_gemv(POLOPT_NO_TRANS, 2, 3, 1.0f, NULL, 3, x, 0.0f, y), POLOPT_ERR_INVALID_ARG);
        y[0] = 2.0f;
        y[1] = 4.0f;
        CHECK_OK(polopt_gemv(POLOPT_NO_TRANS, 2, 0, 1.0f, A, 1, x, 0.5f, y)); /* empty inner dimension */
        CHECK(y[0] == 1.0f && y[1] == 2.0f);
    }
}

/* Picked rows, both ways: y_i = A[rows_i] . x (gemv_rows) and y += sum_i x_i A[rows_i] (gemv_rows_t), against
   double loops, on k row indices with repeats and the first and the last row of A.  Shapes around the blocks of
   eight rows, the prefetch distance (16 ahead), the register paths of the transpose (n a multiple of the vector
   width, up to 64 or 128) and the tails. */
static void linalg_gemv_rows_both_ways(void)
{
    static const size_t shapes[][4] = {/* m, n, lda, k */
                                       {1, 1, 1, 1},        {5, 3, 4, 7},      {40, 16, 16, 8},
                                       {40, 17, 20, 9},     {300, 64, 64, 23}, {300, 64, 70, 24},
                                       {1000, 33, 33, 25},  {1000, 128, 128, 1000},
                                       {300, 136, 136, 40}, {50, 8, 8, 0}};
    polopt_isa isas[9];
    const size_t nk = th_isas(isas);
    polopt_rng rng;
    size_t s, i, q, p;
    int t;
    polopt_rng_seed(&rng, 11);
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (t = 0; t < 2; ++t) {
            const size_t m = shapes[s][0], n = shapes[s][1], lda = shapes[s][2], k = shapes[s][3];
            const size_t nx = t ? k : n, ny = t ? n : k; /* t: the transpose */
            float *A = rand_array(&rng, m * lda), *x = rand_array(&rng, nx), *y0 = rand_array(&rng, ny + 1);
            float *y = (float *)malloc((ny + 1) * sizeof *y);
            uint32_t *rows = (uint32_t *)malloc((k ? k : 1) * sizeof *rows);
            for (i = 0; i < k; ++i) rows[i] = (uint32_t)(polopt_rng_next(&rng) % m);
            if (k > 2) rows[0] = 0, rows[1] = (uint32_t)(m - 1), rows[2] = rows[1]; /* the ends of A, a repeat */
            for (q = 0; q < nk + 1; ++q) {
                int bad = 0;
                memcpy(y, y0, (ny + 1) * sizeof *y);
                if (t)
                    CHECK_OK(q < nk ? polopt_gemv_rows_t_isa(isas[q], m, n, A, lda, k, rows, x, y)
                                    : polopt_gemv_rows_t(m, n, A, lda, k, rows, x, y));
                else
                    CHECK_OK(q < nk ? polopt_gemv_rows_isa(isas[q], m, n, A, lda, k, rows, x, y)
                                    : polopt_gemv_rows(m, n, A, lda, k, rows, x, y));
                for (i = 0; i < ny; ++i) { /* y_i: the dot of row rows_i, or column i's weighted sum */
                    double ref = t ? y0[i] : 0.0, mag = t ? fabs(y0[i]) : 0.0;
                    for (p = 0; p < (t ? k : n); ++p) {
                        const double v = t ? (double)x[p] * A[rows[p] * lda + i] : (double)A[rows[i] * lda + p] * x[p];
                        ref += v;
                        mag += fabs(v);
                    }
                    bad += !(fabs(y[i] - ref) <= (nx + 2) * U24 * mag + 1e-30);
                }
                bad += memcmp(&y[ny], &y0[ny], sizeof *y) != 0; /* nothing written past the end */
                if (bad)
                    th_fail(__FILE__, __LINE__, "gemv_rows%s %s %lux%lu lda %lu k %lu: %d wrong entries", t ? "_t" : "",
                            q < nk ? kname(isas[q]) : "plain", (unsigned long)m, (unsigned long)n, (unsigned long)lda,
                            (unsigned long)k, bad);
            }
            free(A);
            free(x);
            free(y);
            free(y0);
            free(rows);
        }
    {
        float A[6] = {1, 2, 3, 4, 5, 6}, x[3] = {1, 1, 1}, y[3] = {7, 7, 7};
        uint32_t rows[2] = {1, 2};
        CHECK_RC(polopt_gemv_rows(2, 3, A, 3, 2, rows, x, y), POLOPT_ERR_INVALID_ARG); /* row 2 of 2 rows */
        CHECK_RC(polopt_gemv_rows_t(2, 3, A, 3, 2, rows, x, y), POLOPT_ERR_INVALID_ARG);
        CHECK(y[0] == 7.0f && y[1] == 7.0f && y[2] == 7.0f); /* y untouched */
        CHECK_RC(polopt_gemv_rows(2, 3, A, 2, 1, rows, x, y), POLOPT_ERR_INVALID_ARG); /* lda < n */
        CHECK_RC(polopt_gemv_rows(2, 3, A, 3, 1, NULL, x, y), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_gemv_rows(2, 3, NULL, 3, 1, rows, x, y), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_gemv_rows_t(2, 3, A, 3, 1, rows, NULL, y), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_gemv_rows_t(2, 3, A, 3, 1, rows, x, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK_OK(polopt_gemv_rows(2, 3, A, 3, 0, NULL, NULL, NULL)); /* nothing to do */
        CHECK_OK(polopt_gemv_rows_t(2, 3, A, 3, 0, NULL, NULL, y));
        CHECK_OK(polopt_gemv_rows(2, 0, A, 3, 1, rows, NULL, y)); /* empty rows: dot products 0 */
        CHECK(y[0] == 0.0f);
        CHECK_OK(polopt_gemv_rows(2, 3, A, 3, 1, rows, x, y));
        CHECK(y[0] == 15.0f);
        y[0] = y[1] = y[2] = 1.0f, rows[1] = 0, x[1] = 2.0f;
        CHECK_OK(polopt_gemv_rows_t(2, 3, A, 3, 2, rows, x, y)); /* y += 1 (4 5 6) + 2 (1 2 3) */
        CHECK(y[0] == 7.0f && y[1] == 10.0f && y[2] == 13.0f);
    }
}

/* One gemm against the double reference; returns the number of wrong entries (the padding of C included). */
static int check_gemm(polopt_isa isa, int ta, int tb, size_t m, size_t n, size_t k, float alpha, float beta,
                      polopt_rng *rng)
{
    const size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    float *A = rand_array(rng, (ta ? k : m) * lda), *B = rand_array(rng, (tb ? n : k) * ldb);
    float *C = rand_array(rng, m * ldc), *C0 = (float *)malloc(m * ldc * sizeof *C0);
    size_t i, j, p;
    int bad = 0;
    if (beta == 0.0f) C[0] = NAN, C[m * ldc - 3] = NAN; /* beta = 0 must ignore what C held */
    memcpy(C0, C, m * ldc * sizeof *C);
    if (gemm_k(isa, ta ? POLOPT_TRANS : POLOPT_NO_TRANS, tb ? POLOPT_TRANS : POLOPT_NO_TRANS, m, n, k, alpha, A, lda,
               B, ldb, beta, C, ldc) != POLOPT_OK)
        ++bad;
    for (i = 0; i < m; ++i)
        for (j = 0; j < n; ++j) {
            double sum = 0, mag = 0, ref, tol;
            for (p = 0; p < k; ++p) {
                const double v = (double)(ta ? A[p * lda + i] : A[i * lda + p]) *
                                 (double)(tb ? B[j * ldb + p] : B[p * ldb + j]);
                sum += v;
                mag += fabs(v);
            }
            ref = alpha * sum + (beta == 0.0f ? 0.0 : beta * (double)C0[i * ldc + j]);
            tol = (k + 4) * U24 * (fabs(alpha) * mag + (beta == 0.0f ? 0.0 : fabs(beta * C0[i * ldc + j])));
            if (!(fabs(C[i * ldc + j] - ref) <= tol)) ++bad;
        }
    /* the padding between rows of C is never written */
    for (i = 0; i < m; ++i)
        for (j = n; j < ldc; ++j) bad += memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof *C) != 0;
    if (bad)
        th_fail(__FILE__, __LINE__, "gemm %s %c%c %lux%lux%lu alpha %g beta %g: %d wrong entries", kname(isa),
                ta ? 'T' : 'N', tb ? 'T' : 'N', (unsigned long)m, (unsigned long)n, (unsigned long)k, (double)alpha,
                (double)beta, bad);
    free(A);
    free(B);
    free(C);
    free(C0);
    return bad;
}

/* Every transpose combination, shapes around the tiles: m across MR (4, 8) and MC (32), n across NR (8, 24, 32),
   k across the 8 x 8 transposes and KC (256); m = 1 takes the gemv shortcut. */
static void linalg_gemm_all_transposes(void)
{
    static const size_t shapes[][3] = {{1, 1, 1},    {2, 3, 4},      {8, 32, 16},  {9, 33, 17},   {32, 100, 64},
                                       {7, 5, 300},  {33, 65, 129},  {100, 7, 3},  {1, 200, 32},  {97, 31, 260},
                                       {4, 24, 8},   {5, 25, 9},     {3, 23, 7},   {32, 48, 256}, {31, 47, 257},
                                       {70, 64, 513}, {1, 1, 1000},  {12, 96, 31}};
    static const float alphas[] = {0.75f, -1.0f}, betas[] = {0.0f, 0.5f, 1.0f};
    polopt_isa isas[9];
    const size_t nk = kernels(isas);
    polopt_rng rng;
    size_t s, q, a, b;
    int ta, tb;
    polopt_rng_seed(&rng, 4);
    for (q = 0; q < nk; ++q)
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
            for (ta = 0; ta < 2; ++ta)
                for (tb = 0; tb < 2; ++tb)
                    for (a = 0; a < 2; ++a)
                        for (b = 0; b < 3; ++b)
                            check_gemm(isas[q], ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], alphas[a], betas[b],
                                       &rng);
}

/* The score gemm of the trainer and of exact MIPS at a realistic size: batch 32 against 5000 items, L = 64. */
static void linalg_gemm_score_shape(void)
{
    polopt_isa isas[9];
    const size_t nk = kernels(isas);
    polopt_rng rng;
    size_t q;
    polopt_rng_seed(&rng, 5);
    for (q = 0; q < nk; ++q) check_gemm(isas[q], 0, 1, 32, 5000, 64, 1.0f, 0.0f, &rng);
}

static void linalg_gemm_edge_cases(void)
{
    const size_t huge = (size_t)1 << (sizeof(size_t) * 4 + 4); /* huge * huge overflows size_t (32 or 64 bits) */
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4] = {1, 2, 3, 4};
    polopt_isa isas[9];
    const size_t nk = kernels(isas);
    size_t q;
    for (q = 0; q < nk; ++q) {
        C[0] = 1, C[1] = 2, C[2] = 3, C[3] = 4;
        /* k = 0 or alpha = 0: C = beta C */
        CHECK_OK(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, C, 2));
        CHECK(C[0] == 2 && C[1] == 4 && C[2] == 6 && C[3] == 8);
        CHECK_OK(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 0.0f, A, 3, B, 2, 0.5f, C, 2));
        CHECK(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);
        /* exact small product: [1 2 3; 4 5 6] [1 0; 0 1; 1 1] = [4 5; 10 11] */
        CHECK_OK(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2));
        CHECK(C[0] == 4 && C[1] == 5 && C[2] == 10 && C[3] == 11);
        CHECK_OK(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, 0, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2));
        CHECK_RC(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 1.0f, A, 2, B, 2, 0.0f, C, 2),
                 POLOPT_ERR_INVALID_ARG); /* lda < k */
        CHECK_RC(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_TRANS, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2),
                 POLOPT_ERR_INVALID_ARG); /* B^T is 3 x 2 stored 2 x 3: ldb < 3 */
        CHECK_RC(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, NULL, 2),
                 POLOPT_ERR_INVALID_ARG);
        CHECK_RC(gemm_k(isas[q], POLOPT_NO_TRANS, POLOPT_NO_TRANS, huge, huge, 3, 1.0f, A, 3, B, huge, 0.0f, C, huge),
                 POLOPT_ERR_INVALID_ARG); /* C would not be addressable */
    }
}

const th_test th_suite_linalg[] = {TH(linalg_isa_choice),          TH(linalg_dot_axpy_scale),
                                   TH(linalg_scale_exact),         TH(linalg_nrm2_no_overflow),
                                   TH(linalg_gemv_both_ways),      TH(linalg_gemv_rows_both_ways),
                                   TH(linalg_gemm_all_transposes), TH(linalg_gemm_score_shape),
                                   TH(linalg_gemm_edge_cases),     TH_END};
