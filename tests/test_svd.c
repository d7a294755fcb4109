/* The randomized truncated SVD against a dense SVD computed here (the eigendecomposition of A^T A by Jacobi rotations
   in double): singular values and the principal angles between the singular subspaces, on a matrix of exact low
   rank (recovered to rounding), on random sparse binary matrices (accurate where the spectrum has gaps), and on a
   matrix of rank below the sketch (the random directions that stand in for the missing ones stay orthonormal); the
   identities A V = U diag(s) and A^T U = V diag(s); signs; embeddings; bad input; every allocation failure. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A dense matrix as compressed rows (every entry stored), and the owner of the arrays. */
typedef struct dense_csr {
    polopt_csr A;
    size_t *offsets;
    uint32_t *cols;
    float *values;
} dense_csr;

static dense_csr to_csr(size_t m, size_t n, const double *D, int keep_zeros)
{
    dense_csr d;
    size_t i, j, nnz = 0;
    d.offsets = (size_t *)malloc((m + 1) * sizeof(size_t));
    d.cols = (uint32_t *)malloc(m * n * sizeof(uint32_t));
    d.values = (float *)malloc(m * n * sizeof(float));
    d.offsets[0] = 0;
    for (i = 0; i < m; ++i) {
        for (j = 0; j < n; ++j)
            if (keep_zeros || D[i * n + j] != 0.0) d.cols[nnz] = (uint32_t)j, d.values[nnz++] = (float)D[i * n + j];
        d.offsets[i + 1] = nnz;
    }
    d.A.n_rows = m, d.A.n_cols = n, d.A.offsets = d.offsets, d.A.cols = d.cols, d.A.values = d.values;
    return d;
}

static void dense_free(dense_csr *d)
{
    free(d->offsets), free(d->cols), free(d->values);
}

/* The reference: A^T A = V diag(s^2) V^T by cyclic Jacobi in double, sorted decreasing.  V: n x n. */
static void reference_svd(size_t m, size_t n, const double *D, double *s, double *V)
{
    double *G = (double *)malloc(n * n * sizeof(double));
    size_t i, j, k, sweep;
    for (i = 0; i < n; ++i)
        for (j = 0; j < n; ++j) {
            double g = 0.0;
            for (k = 0; k < m; ++k) g += D[k * n + i] * D[k * n + j];
            G[i * n + j] = g;
            V[i * n + j] = i == j;
        }
    for (sweep = 0; sweep < 60; ++sweep)
        for (i = 0; i < n; ++i)
            for (j = i + 1; j < n; ++j) {
                double th, t, c, sn, a, b;
                if (fabs(G[i * n + j]) < 1e-300) continue;
                th = (G[j * n + j] - G[i * n + i]) / (2 * G[i * n + j]);
                t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                c = 1 / sqrt(t * t + 1), sn = t * c;
                for (k = 0; k < n; ++k) a = G[k * n + i], b = G[k * n + j], G[k * n + i] = c * a - sn * b, G[k * n + j] = sn * a + c * b;
                for (k = 0; k < n; ++k) a = G[i * n + k], b = G[j * n + k], G[i * n + k] = c * a - sn * b, G[j * n + k] = sn * a + c * b;
                for (k = 0; k < n; ++k) a = V[k * n + i], b = V[k * n + j], V[k * n + i] = c * a - sn * b, V[k * n + j] = sn * a + c * b;
            }
    for (i = 0; i < n; ++i) s[i] = sqrt(G[i * n + i] > 0 ? G[i * n + i] : 0);
    for (i = 0; i < n; ++i) { /* selection sort of the columns by s, decreasing */
        size_t best = i;
        for (j = i + 1; j < n; ++j)
            if (s[j] > s[best]) best = j;
        if (best != i) {
            const double t = s[i];
            s[i] = s[best], s[best] = t;
            for (k = 0; k < n; ++k) {
                const double v = V[k * n + i];
                V[k * n + i] = V[k * n + best], V[k * n + best] = v;
            }
        }
    }
    free(G);
}

/* sin of the largest principal angle between span(V) (n x k, floats, orthonormal) and span(Vr[:, :k]) (the first
   k columns of the n x n doubles Vr): the norm of the part of V outside span(Vr_k), ||(I - Vr_k Vr_k^T) V||_2,
   by power iteration on the k x k matrix P^T P. */
static double max_sin_angle(size_t n, size_t k, const float *V, const double *Vr)
{
    double *P = (double *)malloc(n * k * sizeof(double)), C[64 * 64], x[64], y[64], lam = 0.0;
    size_t a, b, i, it;
    for (i = 0; i < n * k; ++i) P[i] = V[i];
    for (a = 0; a < k; ++a) /* P -= Vr_k (Vr_k^T V) */
        for (b = 0; b < k; ++b) {
            double d = 0.0;
            for (i = 0; i < n; ++i) d += Vr[i * n + a] * V[i * k + b];
            for (i = 0; i < n; ++i) P[i * k + b] -= Vr[i * n + a] * d;
        }
    for (a = 0; a < k; ++a)
        for (b = 0; b < k; ++b) {
            double d = 0.0;
            for (i = 0; i < n; ++i) d += P[i * k + a] * P[i * k + b];
            C[a * k + b] = d;
        }
    for (a = 0; a < k; ++a) x[a] = (1.0 + 0.01 * (double)a) / sqrt((double)k);
    for (it = 0; it < 500; ++it) {
        double norm = 0.0;
        for (a = 0; a < k; ++a) {
            y[a] = 0.0;
            for (b = 0; b < k; ++b) y[a] += C[a * k + b] * x[b];
            norm += y[a] * y[a];
        }
        lam = norm = sqrt(norm);
        if (norm == 0.0) break;
        for (a = 0; a < k; ++a) x[a] = y[a] / norm;
    }
    free(P);
    return sqrt(lam);
}

/* ||V^T V - I||_max of an n x k float matrix. */
static double orth_error(size_t n, size_t k, const float *V)
{
    double worst = 0.0;
    size_t a, b, i;
    for (a = 0; a < k; ++a)
        for (b = 0; b < k; ++b) {
            double d = 0.0;
            for (i = 0; i < n; ++i) d += (double)V[i * k + a] * V[i * k + b];
            worst = fmax(worst, fabs(d - (a == b)));
        }
    return worst;
}

/* Orthonormal columns (n x r, doubles) from Gaussian ones by Gram-Schmidt twice. */
static void random_orthonormal(polopt_rng *rng, size_t n, size_t r, double *Q)
{
    size_t i, j, k, pass;
    for (i = 0; i < n * r; ++i) Q[i] = polopt_rng_normal(rng);
    for (j = 0; j < r; ++j)
        for (pass = 0; pass < 2; ++pass) {
            double norm = 0.0;
            for (k = 0; k < j; ++k) {
                double d = 0.0;
                for (i = 0; i < n; ++i) d += Q[i * r + k] * Q[i * r + j];
                for (i = 0; i < n; ++i) Q[i * r + j] -= d * Q[i * r + k];
            }
            for (i = 0; i < n; ++i) norm += Q[i * r + j] * Q[i * r + j];
            for (i = 0; i < n; ++i) Q[i * r + j] /= sqrt(norm);
        }
}

/* A = U0 diag(sigma) V0^T of rank 12 (sigma from 10 down to 1.2), stored densely: rank 8 with oversample 4 covers
   the whole range, so the sketch is exact and what is left is rounding (float data, float products): singular
   values to 1e-5 relative (measured 2.5e-7), the sine of the largest subspace angle below 1e-5 (measured 7e-7), V
   and U orthonormal to 1e-5, A V = U diag(s) to 1e-5 of sigma_1. */
static void svd_exact_low_rank(void)
{
    enum { M = 70, N = 50, R = 12, K = 8 };
    double U0[M * R], V0[N * R], D[M * N], s_ref[N], *V_ref = (double *)malloc(N * N * sizeof(double)), worst = 0.0;
    float s[K], V[N * K], U[M * K];
    polopt_rng rng;
    polopt_svd_config c = polopt_svd_config_default(K);
    dense_csr d;
    size_t i, j, r;
    polopt_rng_seed(&rng, 5);
    random_orthonormal(&rng, M, R, U0);
    random_orthonormal(&rng, N, R, V0);
    for (i = 0; i < M; ++i)
        for (j = 0; j < N; ++j) {
            double v = 0.0;
            for (r = 0; r < R; ++r) v += U0[i * R + r] * (10.0 * pow(0.8, (double)r)) * V0[j * R + r];
            D[i * N + j] = v;
        }
    d = to_csr(M, N, D, 1);
    reference_svd(M, N, D, s_ref, V_ref);
    c.oversample = 4, c.power_iters = 0;
    CHECK_OK(polopt_svd_sparse(&d.A, &c, s, V, U));
    for (j = 0; j < K; ++j) { /* plain ifs: aarch64 gcc 12 -O2 crashed vectorising fmax reductions here */
        const double e = fabs(s[j] - s_ref[j]) / s_ref[j];
        if (e > worst) worst = e;
    }
    printf("    exact rank 12, k = 8, no power pass: max relative error of s %.2g, sin of the largest angle %.2g\n",
           worst, max_sin_angle(N, K, V, V_ref));
    CHECK(worst < 1e-5);
    CHECK(max_sin_angle(N, K, V, V_ref) < 1e-5);
    CHECK(orth_error(N, K, V) < 1e-5 && orth_error(M, K, U) < 1e-5);
    for (worst = 0.0, i = 0; i < M; ++i) /* A V = U diag(s) */
        for (j = 0; j < K; ++j) {
            double av = 0.0;
            for (r = 0; r < N; ++r) av += D[i * N + r] * V[r * K + j];
            if (fabs(av - (double)U[i * K + j] * s[j]) > worst) worst = fabs(av - (double)U[i * K + j] * s[j]);
        }
    CHECK(worst < 1e-5 * s[0]);
    for (j = 0; j < K; ++j) { /* the sign convention: the largest entry of each column of V is positive */
        size_t at = 0;
        for (i = 1; i < N; ++i)
            if (fabsf(V[i * K + j]) > fabsf(V[at * K + j])) at = i;
        CHECK(V[at * K + j] > 0.0f);
    }
    dense_free(&d);
    free(V_ref);
}

/* Sparse binary matrices with structure (200 x 120: five groups of rows, each clicking a column block with
   probability 0.5, over a background of 0.04): five singular values stand out of a random bulk.  With power passes
   the top five converge to the dense SVD's, singular values and subspace, errors falling with q; the bulk below
   has no gaps and converges slowly (printed).  Tolerances at q = 6: 1e-5 relative for s_1..s_5 (measured 5e-7) and
   1e-4 for the sine of the largest angle between the top-5 subspaces (measured 1.5e-6). */
static void svd_sparse_binary_converges(void)
{
    enum { M = 200, N = 120, K = 10 };
    static double D[M * N], V_ref[N * N];
    double s_ref[N], err[3], ang[3], bulk[3];
    static const size_t qs[3] = {0, 2, 6};
    float s[K], V[N * K];
    polopt_rng rng;
    dense_csr d;
    size_t i, j, t;
    polopt_rng_seed(&rng, 17);
    for (i = 0; i < M; ++i)
        for (j = 0; j < N; ++j) D[i * N + j] = polopt_rng_uniform(&rng) < ((j / 24) == (i % 5) ? 0.5 : 0.04);
    d = to_csr(M, N, D, 0);
    reference_svd(M, N, D, s_ref, V_ref);
    printf("    reference s_1..s_7: %.3f %.3f %.3f %.3f %.3f | %.3f %.3f\n", s_ref[0], s_ref[1], s_ref[2], s_ref[3],
           s_ref[4], s_ref[5], s_ref[6]);
    CHECK(s_ref[4] >= 1.3 * s_ref[5]);
    for (t = 0; t < 3; ++t) {
        polopt_svd_config c = polopt_svd_config_default(K);
        float V5[N * 5];
        c.power_iters = qs[t];
        CHECK_OK(polopt_svd_sparse(&d.A, &c, s, V, NULL));
        for (err[t] = 0.0, j = 0; j < 5; ++j) err[t] = fmax(err[t], fabs(s[j] - s_ref[j]) / s_ref[j]);
        for (bulk[t] = 0.0, j = 5; j < K; ++j) bulk[t] = fmax(bulk[t], fabs(s[j] - s_ref[j]) / s_ref[j]);
        for (i = 0; i < N; ++i)
            for (j = 0; j < 5; ++j) V5[i * 5 + j] = V[i * K + j];
        ang[t] = max_sin_angle(N, 5, V5, V_ref);
        printf("    q = %lu: max relative error of s_1..s_5 %.2g (s_6..s_10 %.2g), top-5 angle sine %.2g\n",
               (unsigned long)qs[t], err[t], bulk[t], ang[t]);
        CHECK(orth_error(N, K, V) < 1e-5);
    }
    CHECK(err[2] < 1e-5 && ang[2] < 1e-4);
    CHECK(err[1] < err[0] && ang[1] < ang[0] && bulk[2] < bulk[0]);
    dense_free(&d);
}

/* A matrix of rank 3 (three distinct row patterns) asked for rank 5 with oversample 10: the sketch of 15 exceeds the
   rank, dependent directions are replaced by random ones, and the result is still orthonormal: s_1..s_3 as the
   reference, s_4 and s_5 zero to rounding. */
static void svd_rank_below_sketch(void)
{
    enum { M = 60, N = 40, K = 5 };
    double D[M * N], s_ref[N], *V_ref = (double *)malloc(N * N * sizeof(double));
    float s[K], V[N * K], U[M * K];
    polopt_svd_config c = polopt_svd_config_default(K);
    dense_csr d;
    size_t i, j;
    for (i = 0; i < M; ++i)
        for (j = 0; j < N; ++j) D[i * N + j] = (i % 3 == 0 && j < 10) || (i % 3 == 1 && j % 4 == 1) || (i % 3 == 2 && j > 30);
    d = to_csr(M, N, D, 0);
    reference_svd(M, N, D, s_ref, V_ref);
    CHECK_OK(polopt_svd_sparse(&d.A, &c, s, V, U));
    printf("    rank 3 asked for 5: s = %.4g %.4g %.4g %.2g %.2g (reference %.4g %.4g %.4g)\n", s[0], s[1], s[2], s[3],
           s[4], s_ref[0], s_ref[1], s_ref[2]);
    for (j = 0; j < 3; ++j) CHECK_NEAR(s[j], s_ref[j], 1e-5 * s_ref[0]);
    CHECK(s[3] < 1e-4 * s[0] && s[4] < 1e-4 * s[0]);
    CHECK(orth_error(N, K, V) < 1e-5);
    { /* U's last two columns belong to zero singular values; its first three are orthonormal */
        double worst = 0.0;
        size_t a, b;
        for (a = 0; a < 3; ++a)
            for (b = 0; b < 3; ++b) {
                double dd = 0.0;
                for (i = 0; i < M; ++i) dd += (double)U[i * K + a] * U[i * K + b];
                worst = fmax(worst, fabs(dd - (a == b)));
            }
        CHECK(worst < 1e-5);
    }
    dense_free(&d);
    free(V_ref);
}

/* Embeddings, determinism, a sketch wider than the matrix (clamped), bad input. */
static void svd_embed_and_bad_input(void)
{
    enum { M = 30, N = 20, K = 4 };
    double D[M * N];
    float s[K], V[N * K], V2[N * K], s2[K], B[N * K];
    polopt_svd_config c = polopt_svd_config_default(K);
    polopt_rng rng;
    dense_csr d;
    size_t i, j, bad_offsets[M + 1];
    polopt_csr A;
    polopt_rng_seed(&rng, 3);
    for (i = 0; i < M * N; ++i) D[i] = polopt_rng_uniform(&rng) < 0.3 ? polopt_rng_uniform(&rng) : 0.0;
    d = to_csr(M, N, D, 0);
    c.oversample = 100; /* wider than the matrix: the sketch is min(m, n) */
    CHECK_OK(polopt_svd_sparse(&d.A, &c, s, V, NULL));
    CHECK_OK(polopt_svd_sparse(&d.A, &c, s2, V2, NULL));
    CHECK(memcmp(V, V2, sizeof V) == 0 && memcmp(s, s2, sizeof s) == 0); /* the same seed, the same result */
    CHECK_OK(polopt_svd_embed(N, K, V, s, 0.5, B));
    for (i = 0; i < N; ++i)
        for (j = 0; j < K; ++j) CHECK_NEAR(B[i * K + j], V[i * K + j] * sqrt((double)s[j]), 1e-6);
    memcpy(V2, V, sizeof V);
    CHECK_OK(polopt_svd_embed(N, K, V2, s, 1.0, V2)); /* in place */
    CHECK_NEAR(V2[3], V[3] * s[3], 1e-5);
    CHECK_RC(polopt_svd_embed(N, K, V, s, NAN, B), POLOPT_ERR_INVALID_ARG);
    s2[1] = -1.0f;
    CHECK_RC(polopt_svd_embed(N, K, V, s2, 0.5, B), POLOPT_ERR_DOMAIN);
    c = polopt_svd_config_default(0);
    CHECK_RC(polopt_svd_sparse(&d.A, &c, s, V, NULL), POLOPT_ERR_INVALID_ARG);
    c = polopt_svd_config_default(N + 1);
    CHECK_RC(polopt_svd_sparse(&d.A, &c, s, V, NULL), POLOPT_ERR_INVALID_ARG);
    c = polopt_svd_config_default(K);
    CHECK_RC(polopt_svd_sparse(&d.A, &c, NULL, V, NULL), POLOPT_ERR_INVALID_ARG);
    A = d.A;
    memcpy(bad_offsets, d.offsets, sizeof bad_offsets);
    bad_offsets[5] = bad_offsets[6] + 1; /* decreasing */
    A.offsets = bad_offsets;
    CHECK_RC(polopt_svd_sparse(&A, &c, s, V, NULL), POLOPT_ERR_INVALID_ARG);
    A = d.A, A.n_cols = 3; /* columns out of range */
    CHECK_RC(polopt_svd_sparse(&A, &c, s, V, NULL), POLOPT_ERR_INVALID_ARG);
    d.values[2] = NAN;
    CHECK_RC(polopt_svd_sparse(&d.A, &c, s, V, NULL), POLOPT_ERR_INVALID_ARG);
    d.values[2] = 3e38f; /* finite, but A^T A overflows */
    d.values[3] = 3e38f;
    CHECK(polopt_svd_sparse(&d.A, &c, s, V, NULL) != POLOPT_OK);
    dense_free(&d);
}

static polopt_result svd_alloc_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    const size_t offsets[4] = {0, 2, 3, 5};
    const uint32_t cols[5] = {0, 2, 1, 0, 3};
    polopt_csr A;
    polopt_svd_config c = polopt_svd_config_default(2);
    float s[2], V[4 * 2], U[3 * 2];
    (void)stage, (void)user;
    A.n_rows = 3, A.n_cols = 4, A.offsets = offsets, A.cols = cols, A.values = NULL;
    c.hooks = *hooks;
    return polopt_svd_sparse(&A, &c, s, V, U);
}

static void svd_allocation_failures(void)
{
    CHECK_EACH_ALLOCATION_FAILURE(svd_alloc_scenario, 0, NULL);
}

const th_test th_suite_svd[] = {TH(svd_exact_low_rank), TH(svd_sparse_binary_converges), TH(svd_rank_below_sketch),
                                TH(svd_embed_and_bad_input), TH(svd_allocation_failures), TH_END};
