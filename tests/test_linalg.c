/* Linear algebra against naive double-precision loops.  Tolerances are the standard forward error bounds of
   floating-point summation: a float sum of k products of magnitude sum |a_p b_p| is within about
   (k + 2) * 2^-24 * sum |a_p b_p| of the exact value, whatever the order of the additions. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define U24 (1.0 / 16777216.0)

static float *rand_array(polopt_rng *rng, size_t n)
{
    float *x = (float *)malloc((n ? n : 1) * sizeof *x);
    th_fill_uniform(rng, n, x, -1.0f, 1.0f);
    return x;
}

static void linalg_dot_axpy_scale(void)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 100003};
    polopt_rng rng;
    size_t t, i;
    polopt_rng_seed(&rng, 1);
    for (t = 0; t < sizeof sizes / sizeof sizes[0]; ++t) {
        const size_t n = sizes[t];
        float *x = rand_array(&rng, n), *y = rand_array(&rng, n), *y0 = rand_array(&rng, n), d;
        double ref = 0, mag = 0;
        for (i = 0; i < n; ++i) {
            ref += (double)x[i] * y[i];
            mag += fabs((double)x[i] * y[i]);
        }
        CHECK_OK(polopt_dot(n, x, y, &d));
        CHECK_NEAR(d, ref, (n + 2) * U24 * mag);
        memcpy(y0, y, n * sizeof *y);
        CHECK_OK(polopt_axpy(n, -0.75f, x, y));
        for (i = 0; i < n; ++i) CHECK_NEAR(y[i], y0[i] - 0.75 * x[i], 2 * U24 * (fabs(y0[i]) + fabs(x[i])));
        memcpy(y0, y, n * sizeof *y);
        CHECK_OK(polopt_scale(n, 3.0f, y));
        for (i = 0; i < n; ++i) CHECK(y[i] == 3.0f * y0[i]); /* one rounding each: exact */
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
}

static void linalg_scale_exact(void)
{
    float x[5] = {1.5f, -2.0f, 0.25f, 0.0f, 1e30f};
    CHECK_OK(polopt_scale(5, 2.0f, x));
    CHECK(x[0] == 3.0f && x[1] == -4.0f && x[2] == 0.5f && x[3] == 0.0f && x[4] == 2e30f);
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
    static const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 16, 16}, {17, 33, 40}, {100, 64, 64}, {7, 1, 3}};
    static const float betas[] = {0.0f, 1.0f, -0.5f};
    polopt_rng rng;
    size_t s, b, i;
    int trans;
    polopt_rng_seed(&rng, 3);
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (trans = 0; trans < 2; ++trans)
            for (b = 0; b < 3; ++b) {
                const size_t m = shapes[s][0], n = shapes[s][1], lda = shapes[s][2];
                const size_t ny = trans ? n : m, nx = trans ? m : n;
                float *A = rand_array(&rng, m * lda), *x = rand_array(&rng, nx), *y = rand_array(&rng, ny);
                float *y0 = rand_array(&rng, ny);
                double *ref = (double *)malloc(ny * sizeof *ref), *mag = (double *)malloc(ny * sizeof *mag);
                if (betas[b] == 0.0f) y[0] = NAN; /* beta = 0 must ignore what y held */
                memcpy(y0, y, ny * sizeof *y);
                ref_gemv(trans, m, n, -1.25, A, lda, x, betas[b], y0, ref, mag);
                CHECK_OK(polopt_gemv(trans ? POLOPT_TRANS : POLOPT_NO_TRANS, m, n, -1.25f, A, lda, x, betas[b], y));
                for (i = 0; i < ny; ++i) CHECK_NEAR(y[i], ref[i], (nx + 4) * U24 * mag[i] + 1e-30);
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
        CHECK_RC(polopt_gemv((polopt_trans)7, 2, 3, 1.0f, A, 3, x, 0.0f, y), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_gemv(POLOPT_NO_TRANS, 2, 3, 1.0f, NULL, 3, x, 0.0f, y), POLOPT_ERR_INVALID_ARG);
        y[0] = 2.0f;
        y[1] = 4.0f;
        CHECK_OK(polopt_gemv(POLOPT_NO_TRANS, 2, 0, 1.0f, A, 1, x, 0.5f, y)); /* empty inner dimension */
        CHECK(y[0] == 1.0f && y[1] == 2.0f);
    }
}

/* Every transpose combination, shapes around the kernel's tile sizes (MR up to 8, NR up to 32, KC = 128),
   leading dimensions larger than the rows. */
static void linalg_gemm_all_transposes(void)
{
    static const size_t shapes[][3] = {{1, 1, 1},   {2, 3, 4},    {8, 32, 16},  {9, 33, 17},  {32, 100, 64},
                                       {7, 5, 300}, {33, 65, 129}, {100, 7, 3}, {1, 200, 32}, {97, 31, 260}};
    static const float betas[] = {0.0f, 0.5f};
    polopt_rng rng;
    size_t s, b, i, j, p;
    int ta, tb;
    polopt_rng_seed(&rng, 4);
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (ta = 0; ta < 2; ++ta)
            for (tb = 0; tb < 2; ++tb)
                for (b = 0; b < 2; ++b) {
                    const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                    const size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
                    float *A = rand_array(&rng, (ta ? k : m) * lda), *B = rand_array(&rng, (tb ? n : k) * ldb);
                    float *C = rand_array(&rng, m * ldc), *C0 = (float *)malloc(m * ldc * sizeof *C0);
                    const float alpha = 0.75f, beta = betas[b];
                    int bad = 0;
                    if (beta == 0.0f) C[0] = NAN;
                    memcpy(C0, C, m * ldc * sizeof *C);
                    CHECK_OK(polopt_gemm(ta ? POLOPT_TRANS : POLOPT_NO_TRANS, tb ? POLOPT_TRANS : POLOPT_NO_TRANS, m,
                                         n, k, alpha, A, lda, B, ldb, beta, C, ldc));
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
                            tol = (k + 4) * U24 * (alpha * mag + (beta == 0.0f ? 0.0 : fabs(beta * C0[i * ldc + j])));
                            if (!(fabs(C[i * ldc + j] - ref) <= tol)) ++bad;
                        }
                    /* the padding between rows of C is never written */
                    for (i = 0; i < m; ++i)
                        for (j = n; j < ldc; ++j) bad += memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof *C) != 0;
                    if (bad) th_fail(__FILE__, __LINE__, "gemm %c%c %lux%lux%lu beta %g: %d wrong entries",
                                     ta ? 'T' : 'N', tb ? 'T' : 'N', (unsigned long)m, (unsigned long)n,
                                     (unsigned long)k, (double)beta, bad);
                    free(A);
                    free(B);
                    free(C);
                    free(C0);
                }
}

static void linalg_gemm_edge_cases(void)
{
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4] = {1, 2, 3, 4};
    /* k = 0 or alpha = 0: C = beta C */
    CHECK_OK(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, C, 2));
    CHECK(C[0] == 2 && C[1] == 4 && C[2] == 6 && C[3] == 8);
    CHECK_OK(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 0.0f, A, 3, B, 2, 0.5f, C, 2));
    CHECK(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);
    /* exact small product: [1 2 3; 4 5 6] [1 0; 0 1; 1 1] = [4 5; 10 11] */
    CHECK_OK(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2));
    CHECK(C[0] == 4 && C[1] == 5 && C[2] == 10 && C[3] == 11);
    CHECK_OK(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, 0, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2));
    CHECK_RC(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 1.0f, A, 2, B, 2, 0.0f, C, 2),
             POLOPT_ERR_INVALID_ARG); /* lda < k */
    CHECK_RC(polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2),
             POLOPT_ERR_INVALID_ARG); /* B^T is 3 x 2 stored 2 x 3: ldb < 3 */
    CHECK_RC(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, NULL, 2),
             POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, (size_t)1 << 40, (size_t)1 << 40, 3, 1.0f, A, 3, B,
                         (size_t)1 << 40, 0.0f, C, (size_t)1 << 40),
             POLOPT_ERR_INVALID_ARG); /* C would not be addressable */
}

const th_test th_suite_linalg[] = {TH(linalg_dot_axpy_scale),  TH(linalg_scale_exact),
                                   TH(linalg_nrm2_no_overflow), TH(linalg_gemv_both_ways),
                                   TH(linalg_gemm_all_transposes), TH(linalg_gemm_edge_cases), TH_END};
