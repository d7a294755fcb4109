/* Softmax family against double-precision references, extreme logits, top-k against a full sort. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* softmax(x / T) and log-softmax in double, the straightforward way (max-shifted). */
static void ref_softmax(size_t n, const float *x, double t, double *p, double *logp, double *lse)
{
    double mx = -INFINITY, s = 0;
    size_t i;
    for (i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    for (i = 0; i < n; ++i) s += exp(((double)x[i] - mx) / t);
    for (i = 0; i < n; ++i) {
        p[i] = exp(((double)x[i] - mx) / t) / s;
        logp[i] = ((double)x[i] - mx) / t - log(s);
    }
    *lse = mx / t + log(s);
}

static void numerics_softmax_matches_double(void)
{
    static const size_t sizes[] = {1, 2, 7, 16, 1000, 100001};
    static const float temps[] = {1.0f, 0.25f, 3.0f};
    polopt_rng rng;
    size_t s, t, i;
    polopt_rng_seed(&rng, 1);
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
        for (t = 0; t < 3; ++t) {
            const size_t n = sizes[s];
            float *x = (float *)malloc(n * sizeof *x), *p = (float *)malloc(n * sizeof *p);
            float *lp = (float *)malloc(n * sizeof *lp);
            double *rp = (double *)malloc(n * sizeof *rp), *rlp = (double *)malloc(n * sizeof *rlp), lse, rlse;
            double sum = 0;
            float mx = -INFINITY;
            th_fill_uniform(&rng, n, x, -20.0f, 20.0f);
            for (i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
            ref_softmax(n, x, temps[t], rp, rlp, &rlse);
            CHECK_OK(polopt_softmax(n, x, temps[t], p));
            CHECK_OK(polopt_log_softmax(n, x, temps[t], lp));
            CHECK_OK(polopt_logsumexp(n, x, temps[t], &lse));
            /* p_i = exp(y_i) / sum with y_i = (x_i - max) / T.  Computing y_i in float rounds it three times
               (subtraction, 1/T, product): an absolute error of 3 * 2^-24 |y_i|, hence a relative error of
               3 * 2^-24 |y_i| in p_i; the float exp, the division and the output rounding add under 1e-6.
               Values of exp below 2^-126 are flushed to zero (documented), so 2e-38 absolute on top. */
            for (i = 0; i < n; ++i) {
                const double y = ((double)mx - x[i]) / temps[t];
                CHECK_NEAR(p[i], rp[i], (1e-6 + 3.0 * y / 16777216.0) * rp[i] + 2e-38);
                /* log p: the float subtraction of two values of size |x|/T loses at most an ulp of them */
                CHECK_NEAR(lp[i], rlp[i], 4e-7 * (fabs(x[i]) / temps[t] + fabs(rlse)) + 1e-6);
                sum += p[i];
            }
            CHECK_NEAR(sum, 1.0, 1e-6 + n * 1e-7);
            CHECK_NEAR(lse, rlse, 1e-6 * fabs(rlse) + 1e-6);
            free(x);
            free(p);
            free(lp);
            free(rp);
            free(rlp);
        }
}

/* The max and sum-of-exponentials kernels of every instruction set: sizes around the vector widths and the chunks
   of 256 terms, masked entries (-inf), entries far below the max (exp underflows to 0), and NaN or +inf at the
   first, a middle and the last position (the tail loops), which must be reported with the output untouched. */
static void numerics_kernels_agree(void)
{
    static const size_t sizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257, 1000, 4099};
    polopt_isa isas[8];
    const size_t nk = th_isas(isas);
    polopt_rng rng;
    size_t s, q, i, w;
    polopt_rng_seed(&rng, 7);
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
        const size_t n = sizes[s];
        float *x = (float *)malloc(n * sizeof *x), *p = (float *)malloc(n * sizeof *p), *keep;
        double *rp = (double *)malloc(n * sizeof *rp), *rlp = (double *)malloc(n * sizeof *rlp), rlse, lse;
        float mx = -INFINITY;
        th_fill_uniform(&rng, n, x, -30.0f, 30.0f);
        for (i = 3; i < n; i += 7) x[i] = -INFINITY; /* masked */
        if (n > 5) x[5] = -200.0f;                    /* exp(-200 - max) underflows */
        for (i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
        ref_softmax(n, x, 2.0, rp, rlp, &rlse);
        for (q = 0; q < nk; ++q) {
            int bad = 0;
            CHECK_OK(polopt_softmax_isa(isas[q], n, x, 2.0f, p));
            CHECK_OK(polopt_logsumexp_isa(isas[q], n, x, 2.0f, &lse));
            for (i = 0; i < n; ++i) {
                const double y = ((double)mx - x[i]) / 2.0;
                if (x[i] == -INFINITY) bad += p[i] != 0.0f;
                else bad += !(fabs(p[i] - rp[i]) <= (1e-6 + 3.0 * y / 16777216.0) * rp[i] + 2e-38);
            }
            if (bad || !(fabs(lse - rlse) <= 1e-6 * fabs(rlse) + 1e-6))
                th_fail(__FILE__, __LINE__, "softmax %s n = %lu: %d wrong, logsumexp %.9g vs %.9g",
                        polopt_isa_name(isas[q]), (unsigned long)n, bad, lse, rlse);
        }
        keep = (float *)malloc(n * sizeof *keep);
        for (w = 0; w < 3; ++w) {
            const size_t at = w == 0 ? 0 : (w == 1 ? n / 2 : n - 1);
            const float saved = x[at];
            x[at] = w == 1 ? INFINITY : NAN;
            memcpy(keep, x, n * sizeof *x);
            for (q = 0; q < nk; ++q) {
                CHECK_RC(polopt_softmax_isa(isas[q], n, x, 1.0f, x), POLOPT_ERR_NONFINITE);
                CHECK(memcmp(keep, x, n * sizeof *x) == 0);
                CHECK_RC(polopt_logsumexp_isa(isas[q], n, x, 1.0f, &lse), POLOPT_ERR_NONFINITE);
            }
            x[at] = saved;
        }
        free(x);
        free(p);
        free(keep);
        free(rp);
        free(rlp);
    }
}

static void numerics_extreme_logits(void)
{
    float x[4] = {1e30f, -1e30f, -INFINITY, 1e30f}, p[4], lp[4];
    double lse;
    /* two equal huge logits share the mass; -1e30 and -inf get exactly 0 */
    CHECK_OK(polopt_softmax(4, x, 1.0f, p));
    CHECK(p[0] == 0.5f && p[1] == 0.0f && p[2] == 0.0f && p[3] == 0.5f);
    CHECK_OK(polopt_log_softmax(4, x, 1.0f, lp));
    CHECK_NEAR(lp[0], -log(2.0), 1e-7);
    CHECK(lp[1] < -1e29f && lp[2] == -INFINITY);
    CHECK_OK(polopt_logsumexp(4, x, 1.0f, &lse));
    CHECK_NEAR(lse, 1e30, 1e30 * 1e-7); /* 1e30 + log 2 */
    /* a tiny temperature must not overflow: x / T = 1e40 is beyond float, the shifted values are not */
    CHECK_OK(polopt_softmax(4, x, 1e-10f, p));
    CHECK(p[0] == 0.5f && p[3] == 0.5f);
    CHECK_OK(polopt_logsumexp(4, x, 1e-10f, &lse));
    CHECK_NEAR(lse, 1e40, 1e40 * 1e-6);
    /* a logit only slightly below the max under a big temperature keeps its share */
    {
        float y[2] = {0.0f, -1.0f};
        CHECK_OK(polopt_softmax(2, y, 1e6f, p));
        CHECK_NEAR(p[1], 0.5 - 2.5e-7, 1e-7);
    }
}

static void numerics_masks_and_errors(void)
{
    float all_masked[3] = {-INFINITY, -INFINITY, -INFINITY}, p[3], out = 0;
    float bad[3] = {0.5f, NAN, 1.0f}, inf_[3] = {0.5f, INFINITY, 1.0f}, copy[3];
    double lse = 0;
    uint32_t idx;
    size_t where = 0;
    CHECK_RC(polopt_softmax(3, all_masked, 1.0f, p), POLOPT_ERR_DOMAIN);
    CHECK_RC(polopt_log_softmax(3, all_masked, 1.0f, p), POLOPT_ERR_DOMAIN);
    CHECK_OK(polopt_logsumexp(3, all_masked, 1.0f, &lse));
    CHECK(lse == -INFINITY);
    /* NaN and +inf are rejected before anything is written, even in place */
    memcpy(copy, bad, sizeof bad);
    CHECK_RC(polopt_softmax(3, bad, 1.0f, bad), POLOPT_ERR_NONFINITE);
    CHECK(memcmp(copy, bad, sizeof bad) == 0);
    memcpy(copy, inf_, sizeof inf_);
    CHECK_RC(polopt_log_softmax(3, inf_, 1.0f, inf_), POLOPT_ERR_NONFINITE);
    CHECK(memcmp(copy, inf_, sizeof inf_) == 0);
    CHECK_RC(polopt_logsumexp(3, bad, 1.0f, &lse), POLOPT_ERR_NONFINITE);
    CHECK_RC(polopt_softmax(3, copy, 0.0f, p), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_softmax(3, copy, -1.0f, p), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_softmax(3, copy, NAN, p), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_softmax(0, copy, 1.0f, p), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_softmax(3, copy, 1.0f, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_argmax(3, bad, &idx), POLOPT_ERR_NONFINITE);
    CHECK_RC(polopt_check_finite(3, inf_, &where), POLOPT_ERR_NONFINITE);
    CHECK(where == 1);
    CHECK_RC(polopt_check_finite(3, bad, NULL), POLOPT_ERR_NONFINITE);
    CHECK_RC(polopt_check_finite(3, all_masked, &where), POLOPT_ERR_NONFINITE);
    CHECK(where == 0);
    CHECK_OK(polopt_check_finite(1, &out, NULL));
}

/* Reference order: value descending, then index ascending. */
static const float *g_keys;
static int ref_order(const void *a, const void *b)
{
    const uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (g_keys[i] != g_keys[j]) return g_keys[i] > g_keys[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static void numerics_topk_matches_sort(void)
{
    static const size_t sizes[] = {1, 5, 64, 1000, 50000};
    static const size_t ks[] = {1, 3, 10, 256, 0};
    polopt_rng rng;
    size_t s, t, i;
    polopt_rng_seed(&rng, 2);
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
        for (t = 0; t < 5; ++t) {
            const size_t n = sizes[s], k = ks[t] == 0 ? n : (ks[t] > n ? n : ks[t]);
            float *x = (float *)malloc(n * sizeof *x), *val = (float *)malloc(n * sizeof *val);
            uint32_t *idx = (uint32_t *)malloc(n * sizeof *idx), *order = (uint32_t *)malloc(n * sizeof *order);
            int bad = 0;
            for (i = 0; i < n; ++i) /* few distinct values: many ties; some masked */
                x[i] = (i % 17 == 5) ? -INFINITY : (float)polopt_rng_below(&rng, 40);
            for (i = 0; i < n; ++i) order[i] = (uint32_t)i;
            g_keys = x;
            qsort(order, n, sizeof *order, ref_order);
            CHECK_OK(polopt_topk(n, x, k, idx, val));
            for (i = 0; i < k; ++i) bad += idx[i] != order[i] || val[i] != x[order[i]];
            if (bad) th_fail(__FILE__, __LINE__, "topk n=%lu k=%lu: %d entries differ from the sort", (unsigned long)n,
                             (unsigned long)k, bad);
            CHECK_OK(polopt_argmax(n, x, idx));
            CHECK(idx[0] == order[0]);
            free(x);
            free(val);
            free(idx);
            free(order);
        }
}

static void numerics_topk_edge_cases(void)
{
    float x[4] = {INFINITY, -INFINITY, 2.0f, NAN};
    uint32_t idx[4];
    CHECK_OK(polopt_topk(3, x, 3, idx, NULL)); /* +-inf are ordered values */
    CHECK(idx[0] == 0 && idx[1] == 2 && idx[2] == 1);
    CHECK_RC(polopt_topk(4, x, 2, idx, NULL), POLOPT_ERR_NONFINITE);
    CHECK_RC(polopt_topk(3, x, 4, idx, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_topk(3, x, 0, NULL, NULL), POLOPT_ERR_INVALID_ARG); /* k = 0 asks for nothing: a caller bug */
    CHECK_RC(polopt_argmax(0, x, idx), POLOPT_ERR_INVALID_ARG);
}

const th_test th_suite_numerics[] = {TH(numerics_softmax_matches_double), TH(numerics_kernels_agree), TH(numerics_extreme_logits),
                                     TH(numerics_masks_and_errors), TH(numerics_topk_matches_sort),
                                     TH(numerics_topk_edge_cases), TH_END};
