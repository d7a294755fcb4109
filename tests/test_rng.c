/* Random numbers: reference values from an independent implementation, the jump polynomial against the
   transition matrix, and chi-square goodness of fit (p = 1e-4, fixed seeds) for every sampler. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* First outputs of xoshiro256** seeded through splitmix64, computed with an independent Python
   implementation of both published algorithms. */
static void rng_reference_values(void)
{
    static const uint64_t seed0[4] = {0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL, 0x1a5f849d4933e6e0ULL,
                                      0x6aa594f1262d2d2cULL};
    static const uint64_t seed42[4] = {0x15780b2e0c2ec716ULL, 0x6104d9866d113a7eULL, 0xae17533239e499a1ULL,
                                       0xecb8ad4703b360a1ULL};
    polopt_rng rng;
    int i;
    CHECK_OK(polopt_rng_seed(&rng, 0));
    /* splitmix64's first output for state 0, as published with the algorithm */
    CHECK(rng.s[0] == 0xe220a8397b1dcdafULL);
    for (i = 0; i < 4; ++i) CHECK(polopt_rng_next(&rng) == seed0[i]);
    CHECK_OK(polopt_rng_seed(&rng, 42));
    for (i = 0; i < 4; ++i) CHECK(polopt_rng_next(&rng) == seed42[i]);
    CHECK_RC(polopt_rng_seed(NULL, 1), POLOPT_ERR_INVALID_ARG);
}

/* The state update of xoshiro256, written out again here: it is linear over GF(2). */
static void xoshiro_step(uint64_t s[4])
{
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
}

typedef uint64_t gf2_matrix[256][4]; /* column j: the image of basis vector e_j */

static void gf2_apply(const gf2_matrix m, const uint64_t v[4], uint64_t out[4])
{
    int i, w;
    out[0] = out[1] = out[2] = out[3] = 0;
    for (i = 0; i < 256; ++i)
        if (v[i / 64] >> (i % 64) & 1)
            for (w = 0; w < 4; ++w) out[w] ^= m[i][w];
}

/* polopt_rng_jump must equal 2^128 steps: T^(2^128) by 128 squarings of the transition matrix T. */
static void rng_jump_is_2_pow_128_steps(void)
{
    gf2_matrix *t = (gf2_matrix *)malloc(sizeof(gf2_matrix)), *sq = (gf2_matrix *)malloc(sizeof(gf2_matrix));
    uint64_t expect[4];
    polopt_rng rng;
    int i, j;
    for (j = 0; j < 256; ++j) {
        uint64_t e[4] = {0, 0, 0, 0};
        e[j / 64] = (uint64_t)1 << (j % 64);
        xoshiro_step(e);
        memcpy((*t)[j], e, sizeof e);
    }
    for (i = 0; i < 128; ++i) {
        for (j = 0; j < 256; ++j) gf2_apply((const uint64_t(*)[4]) * t, (*t)[j], (*sq)[j]);
        memcpy(*t, *sq, sizeof(gf2_matrix));
    }
    polopt_rng_seed(&rng, 12345);
    gf2_apply((const uint64_t(*)[4]) * t, rng.s, expect);
    CHECK_OK(polopt_rng_jump(&rng));
    for (i = 0; i < 4; ++i) CHECK(rng.s[i] == expect[i]);
    free(t);
    free(sq);
}

static void rng_split_gives_consecutive_blocks(void)
{
    polopt_rng a, b, child;
    polopt_rng_seed(&a, 7);
    b = a;
    CHECK_OK(polopt_rng_split(&a, &child));
    CHECK(memcmp(&child, &b, sizeof b) == 0); /* the child continues the parent's stream */
    polopt_rng_jump(&b);
    CHECK(memcmp(&a, &b, sizeof b) == 0); /* the parent moved on by 2^128 */
    CHECK_RC(polopt_rng_split(&a, &a), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_rng_split(&a, NULL), POLOPT_ERR_INVALID_ARG);
}

static void rng_uniform_moments_and_range(void)
{
    polopt_rng rng;
    const int n = 400000;
    double s = 0, s2 = 0, f = 0;
    int i, bad = 0;
    polopt_rng_seed(&rng, 3);
    for (i = 0; i < n; ++i) {
        const double u = polopt_rng_uniform(&rng);
        const float uf = polopt_rng_uniformf(&rng);
        bad += !(u >= 0.0 && u < 1.0) + !(uf >= 0.0f && uf < 1.0f);
        s += u;
        s2 += u * u;
        f += uf;
    }
    CHECK(bad == 0);
    /* mean 1/2 and variance 1/12; standard errors sqrt(1/12 / n) = 4.6e-4 and about 2.4e-4 */
    CHECK_NEAR(s / n, 0.5, 5 * 4.6e-4);
    CHECK_NEAR(f / n, 0.5, 5 * 4.6e-4);
    CHECK_NEAR(s2 / n - (s / n) * (s / n), 1.0 / 12.0, 5 * 2.4e-4);
}

static void rng_below_is_unbiased(void)
{
    polopt_rng rng;
    double obs[7] = {0}, exp_[7];
    const int n = 700000;
    int i;
    uint64_t big = 3ULL << 62, low = 0;
    polopt_rng_seed(&rng, 11);
    for (i = 0; i < n; ++i) obs[polopt_rng_below(&rng, 7)] += 1;
    for (i = 0; i < 7; ++i) exp_[i] = n / 7.0;
    CHECK_CHI2(7, obs, exp_);
    /* n = 3 * 2^62: "x mod n" would put 62.5% of draws below n/2; an unbiased draw puts 50% +- 0.08% */
    for (i = 0; i < 400000; ++i) low += polopt_rng_below(&rng, big) < big / 2;
    CHECK_NEAR((double)low / 400000.0, 0.5, 5 * 0.00079);
    /* and a multiply-shift without Lemire's rejection step would give v = 0 mod 3 half of the time, not 1/3 */
    for (low = 0, i = 0; i < 400000; ++i) low += polopt_rng_below(&rng, big) % 3 == 0;
    CHECK_NEAR((double)low / 400000.0, 1.0 / 3.0, 5 * 0.00075);
    CHECK(polopt_rng_below(&rng, 1) == 0);
    CHECK(polopt_rng_below(&rng, 0) == 0);
}

/* Draws binned on [-4, 4] in steps of 0.25 plus two tails, against exact bin probabilities. */
static void check_binned(double (*cdf)(double), const double *draws, int n, double lo, double hi)
{
    enum { BINS = 34 };
    double obs[BINS] = {0}, exp_[BINS];
    const double w = (hi - lo) / (BINS - 2);
    int i;
    for (i = 0; i < n; ++i) {
        int b = draws[i] < lo ? 0 : (draws[i] >= hi ? BINS - 1 : 1 + (int)((draws[i] - lo) / w));
        if (b > BINS - 2 && draws[i] < hi) b = BINS - 2;
        obs[b] += 1;
    }
    for (i = 0; i < BINS; ++i) {
        const double a = i == 0 ? -INFINITY : lo + (i - 1) * w, b = i == BINS - 1 ? INFINITY : lo + i * w;
        exp_[i] = n * (cdf(b) - cdf(a));
    }
    CHECK_CHI2(BINS, obs, exp_);
}

static double normal_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

static double gumbel_cdf(double x)
{
    return exp(-exp(-x));
}

static void rng_normal_and_gumbel_fit(void)
{
    const int n = 300000;
    double *d = (double *)malloc(n * sizeof *d);
    float *f = (float *)malloc(n * sizeof *f);
    polopt_rng rng;
    int i;
    polopt_rng_seed(&rng, 5);
    for (i = 0; i < n; ++i) d[i] = polopt_rng_normal(&rng);
    check_binned(normal_cdf, d, n, -4.0, 4.0);
    CHECK_OK(polopt_rng_normals(&rng, n, f));
    for (i = 0; i < n; ++i) d[i] = f[i];
    check_binned(normal_cdf, d, n, -4.0, 4.0);
    CHECK_OK(polopt_rng_normals(&rng, 3, f)); /* odd counts are fine */
    for (i = 0; i < n; ++i) d[i] = polopt_rng_gumbel(&rng);
    check_binned(gumbel_cdf, d, n, -2.5, 6.0);
    CHECK_RC(polopt_rng_normals(&rng, 5, NULL), POLOPT_ERR_INVALID_ARG);
    free(d);
    free(f);
}

static void rng_categorical_fit(void)
{
    static const float w[6] = {0.5f, 0.0f, 2.0f, 1.0f, 0.0f, 3.5f};
    double obs[6] = {0}, exp_[6];
    polopt_rng rng;
    uint32_t k;
    const int n = 200000;
    int i;
    polopt_rng_seed(&rng, 9);
    for (i = 0; i < n; ++i) {
        CHECK_OK(polopt_rng_categorical(&rng, 6, w, &k));
        obs[k] += 1;
    }
    for (i = 0; i < 6; ++i) exp_[i] = n * w[i] / 7.0;
    CHECK_CHI2(6, obs, exp_); /* zero weights are "impossible" cells: never drawn */
    {
        const float zeros[3] = {0, 0, 0}, neg[2] = {1.0f, -1.0f}, nan_[2] = {1.0f, NAN};
        CHECK_RC(polopt_rng_categorical(&rng, 3, zeros, &k), POLOPT_ERR_DOMAIN);
        CHECK_RC(polopt_rng_categorical(&rng, 2, neg, &k), POLOPT_ERR_DOMAIN);
        CHECK_RC(polopt_rng_categorical(&rng, 2, nan_, &k), POLOPT_ERR_NONFINITE);
        CHECK_RC(polopt_rng_categorical(&rng, 0, w, &k), POLOPT_ERR_INVALID_ARG);
    }
}

static void rng_alias_fit(void)
{
    enum { N = 50 };
    float w[N];
    double obs[N] = {0}, exp_[N], total = 0;
    polopt_alias table;
    polopt_rng rng;
    const int n = 1000000;
    int i;
    polopt_rng_seed(&rng, 13);
    for (i = 0; i < N; ++i) {
        w[i] = (i % 7 == 3) ? 0.0f : (float)polopt_rng_uniform(&rng) * (i < 5 ? 50.0f : 1.0f);
        total += w[i];
    }
    CHECK_OK(polopt_alias_init(&table, N, w, NULL));
    for (i = 0; i < n; ++i) obs[polopt_alias_draw(&table, &rng)] += 1;
    for (i = 0; i < N; ++i) exp_[i] = n * w[i] / total;
    CHECK_CHI2(N, obs, exp_);
    polopt_alias_free(&table);
    /* one item */
    CHECK_OK(polopt_alias_init(&table, 1, w, NULL));
    CHECK(polopt_alias_draw(&table, &rng) == 0);
    polopt_alias_free(&table);
    /* bad weights: a message that names the entry */
    w[17] = -2.0f;
    CHECK_RC(polopt_alias_init(&table, N, w, NULL), POLOPT_ERR_DOMAIN);
    CHECK(strstr(table.err.message, "weights[17]") != NULL);
    CHECK(table.prob == NULL);
    CHECK_RC(polopt_alias_init(&table, 0, w, NULL), POLOPT_ERR_INVALID_ARG);
    polopt_alias_free(&table);
}

/* Index of a k-subset of {0..n-1} (sorted) among all C(n, k), lexicographic through a bit mask. */
static int subset_code(const uint32_t *s, size_t k)
{
    int code = 0;
    size_t i;
    for (i = 0; i < k; ++i) code |= 1 << s[i];
    return code;
}

static void check_choose_uniform(size_t n, size_t k, int draws)
{
    double obs[1024] = {0}, exp_[1024] = {0};
    uint32_t s[10];
    polopt_rng rng;
    int i, mask, subsets = 0;
    size_t j;
    polopt_rng_seed(&rng, 17 + n * 31 + k);
    for (mask = 0; mask < (1 << n); ++mask) {
        int bits = 0, b;
        for (b = 0; b < (int)n; ++b) bits += mask >> b & 1;
        subsets += bits == (int)k;
    }
    for (mask = 0; mask < (1 << n); ++mask) {
        int bits = 0, b;
        for (b = 0; b < (int)n; ++b) bits += mask >> b & 1;
        if (bits == (int)k) exp_[mask] = (double)draws / subsets;
    }
    for (i = 0; i < draws; ++i) {
        CHECK_OK(polopt_rng_choose(&rng, n, k, s));
        for (j = 1; j < k; ++j) CHECK(s[j - 1] < s[j]);
        obs[subset_code(s, k)] += 1;
    }
    CHECK_CHI2((size_t)1 << n, obs, exp_);
}

static void rng_choose_uniform_subsets(void)
{
    uint32_t *big = (uint32_t *)malloc(5000 * sizeof *big);
    polopt_rng rng;
    size_t i;
    check_choose_uniform(10, 3, 120000); /* the draw-and-deduplicate path */
    check_choose_uniform(10, 7, 120000); /* the selection-sampling path */
    check_choose_uniform(6, 6, 100);     /* everything */
    polopt_rng_seed(&rng, 1);
    CHECK_OK(polopt_rng_choose(&rng, 1000000000, 5000, big));
    for (i = 1; i < 5000; ++i) CHECK(big[i - 1] < big[i]);
    CHECK(big[4999] < 1000000000u);
    CHECK_OK(polopt_rng_choose(&rng, 4, 0, NULL));
    CHECK_RC(polopt_rng_choose(&rng, 4, 5, big), POLOPT_ERR_INVALID_ARG);
    free(big);
}

static void rng_shuffle_uniform_permutations(void)
{
    double obs[256] = {0}, exp_[256] = {0};
    polopt_rng rng;
    const int n = 96000;
    int i, j;
    polopt_rng_seed(&rng, 23);
    for (i = 0; i < n; ++i) {
        uint32_t a[4] = {0, 1, 2, 3};
        CHECK_OK(polopt_rng_shuffle(&rng, 4, a));
        obs[a[0] | a[1] << 2 | a[2] << 4 | a[3] << 6] += 1;
    }
    for (i = 0; i < 256; ++i) { /* the 24 codes that are permutations */
        int seen = 0;
        for (j = 0; j < 4; ++j) seen |= 1 << (i >> (2 * j) & 3);
        if (seen == 15) exp_[i] = n / 24.0;
    }
    CHECK_CHI2(256, obs, exp_);
}

static void rng_same_seed_same_stream(void)
{
    polopt_rng a, b;
    int i, same = 1, differ = 0;
    polopt_rng_seed(&a, 99);
    polopt_rng_seed(&b, 99);
    for (i = 0; i < 1000; ++i) same &= polopt_rng_next(&a) == polopt_rng_next(&b);
    CHECK(same);
    polopt_rng_seed(&b, 100);
    for (i = 0; i < 1000; ++i) differ += polopt_rng_next(&a) != polopt_rng_next(&b);
    CHECK(differ == 1000);
}

const th_test th_suite_rng[] = {TH(rng_reference_values),
                                TH(rng_jump_is_2_pow_128_steps),
                                TH(rng_split_gives_consecutive_blocks),
                                TH(rng_uniform_moments_and_range),
                                TH(rng_below_is_unbiased),
                                TH(rng_normal_and_gumbel_fit),
                                TH(rng_categorical_fit),
                                TH(rng_alias_fit),
                                TH(rng_choose_uniform_subsets),
                                TH(rng_shuffle_uniform_permutations),
                                TH(rng_same_seed_same_stream),
                                TH_END};
