/* The device math of polopt_cuda.h, run on the host (no GPU needed): each function against polopt.h or a direct
   computation, and the sampler's three kernels emulated with them (tile states, the prefix over tiles, the search
   and the pick) against the exact softmax. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "polopt_cuda.h"

/* Merging states in any grouping gives log sum exp (against polopt_logsumexp, in double). */
static void cuda_lse_merge_is_logsumexp(void)
{
    enum { N = 1000 };
    static float f[N];
    polopt_rng rng;
    size_t i, trial;
    polopt_rng_seed(&rng, 3);
    for (trial = 0; trial < 20; ++trial) {
        const float spread = trial < 10 ? 5.0f : 80.0f; /* exp underflows float for the far ones in the second half */
        polopt_cuda_lse seq, tree[N];
        size_t m = N;
        double want;
        th_fill_uniform(&rng, N, f, -spread, spread);
        if (trial % 3 == 0) f[trial] = -INFINITY; /* an empty slot */
        seq = polopt_cuda_lse_of(-INFINITY);
        for (i = 0; i < N; ++i) seq = polopt_cuda_lse_merge(seq, polopt_cuda_lse_of(f[i]));
        for (i = 0; i < N; ++i) tree[i] = polopt_cuda_lse_of(f[i]);
        while (m > 1) { /* pairwise, as a warp's shuffles reduce */
            for (i = 0; i < m / 2; ++i) tree[i] = polopt_cuda_lse_merge(tree[2 * i], tree[2 * i + 1]);
            if (m % 2) tree[m / 2] = tree[m - 1];
            m = (m + 1) / 2;
        }
        CHECK_OK(polopt_logsumexp(N, f, 1.0f, &want));
        /* float sums of N terms <= 1: relative error below N 2^-24 = 6e-5, so |log| below that */
        CHECK_NEAR(polopt_cuda_lse_log(seq), want, 6e-5);
        CHECK_NEAR(polopt_cuda_lse_log(tree[0]), want, 6e-5);
        CHECK(seq.m == tree[0].m); /* the maximum is exact */
    }
    { /* empty states are the identity; all empty stays empty */
        const polopt_cuda_lse e = polopt_cuda_lse_of(-INFINITY), one = polopt_cuda_lse_of(2.0f);
        polopt_cuda_lse r = polopt_cuda_lse_merge(e, one);
        CHECK(r.m == 2.0f && r.s == 1.0f);
        r = polopt_cuda_lse_merge(one, e);
        CHECK(r.m == 2.0f && r.s == 1.0f);
        r = polopt_cuda_lse_merge(e, e);
        CHECK(r.s == 0.0f && polopt_cuda_lse_log(r) == -INFINITY);
    }
}

/* The counter-based uniforms: in [0, 1), a pure function of (seed, counter), uniform by a chi-square test. */
static void cuda_uniform_counter_stream(void)
{
    enum { BINS = 100, N = 200000 };
    double observed[BINS] = {0}, expected[BINS], impossible, x2;
    size_t i, dof, same = 0;
    for (i = 0; i < BINS; ++i) expected[i] = (double)N / BINS;
    for (i = 0; i < N; ++i) {
        const double u = polopt_cuda_uniform(42, i);
        CHECK(u >= 0.0 && u < 1.0);
        if (u >= 0.0 && u < 1.0) observed[(size_t)(u * BINS)] += 1.0;
        same += u == polopt_cuda_uniform(43, i);
    }
    x2 = th_chi2(BINS, observed, expected, &dof, &impossible);
    CHECK(x2 < th_chi2_critical(dof, 4.0)); /* a 4-sigma bound: fails by chance about 3e-5 of the time */
    CHECK(same == 0);
    CHECK(polopt_cuda_uniform(7, 123) == polopt_cuda_uniform(7, 123));
    CHECK(polopt_cuda_mix64(1) != polopt_cuda_mix64(2) && polopt_cuda_mix64(0) == 0); /* 0 is its fixed point */
}

/* The search and the pick against a linear scan of the same sums. */
static void cuda_search_and_pick(void)
{
    enum { N = 37 };
    double w[N], prefix[N], sum = 0.0;
    polopt_rng rng;
    size_t i, t, trial;
    polopt_rng_seed(&rng, 5);
    for (i = 0; i < N; ++i) {
        w[i] = i % 5 == 2 || i == N - 1 ? 0.0 : polopt_rng_uniform(&rng); /* zero blocks, the last one too */
        sum += w[i];
        prefix[i] = sum;
    }
    for (trial = 0; trial < 5000; ++trial) {
        const double target = polopt_rng_uniform(&rng) * sum;
        size_t want = 0;
        unsigned pick;
        while (!(prefix[want] > target)) ++want;
        t = polopt_cuda_search(N, prefix, target);
        CHECK(t == want && w[t] > 0.0);
        pick = polopt_cuda_pick(N, w, target);
        CHECK(pick == want);
    }
    /* rounding at the top: a target at the total gives the last block of weight > 0, never a zero one */
    t = polopt_cuda_search(N, prefix, sum);
    CHECK(t == N - 2 && w[t] > 0.0);
    CHECK(polopt_cuda_pick(N, w, sum) == N - 2);
    CHECK(polopt_cuda_pick(N, w, 2.0 * sum) == N - 2);
    CHECK(polopt_cuda_search(N, prefix, 0.0) == 0);
    CHECK(polopt_cuda_search(1, prefix, 0.0) == 0);
}

/* The sampler's kernels emulated with the device math: tile states of 32 items, the prefix of their weights
   exp(m_t - M) s_t, a draw = search the tiles, then pick within the tile by exp(f - M).  The frequencies of the
   items are those of the exact softmax (chi-square), and log Z is polopt_logsumexp's. */
static void cuda_sampler_math_draws_from_softmax(void)
{
    enum { P = 150, T = POLOPT_CUDA_TILE, NT = (P + T - 1) / T, S = 60000 };
    float f[P], pi[P];
    double prefix[NT], e[T], observed[P] = {0}, expected[P], impossible, x2, log_z, want;
    polopt_cuda_lse tiles[NT], all;
    float M = -INFINITY;
    polopt_rng rng;
    size_t i, t, s, dof;
    polopt_rng_seed(&rng, 9);
    th_fill_uniform(&rng, P, f, -3.0f, 3.0f);
    f[7] = 6.0f; /* one large item */
    for (t = 0; t < NT; ++t) {
        tiles[t] = polopt_cuda_lse_of(-INFINITY);
        for (i = t * T; i < (t + 1) * T; ++i)
            tiles[t] = polopt_cuda_lse_merge(tiles[t], polopt_cuda_lse_of(i < P ? f[i] : -INFINITY));
        if (tiles[t].s > 0.0f && tiles[t].m > M) M = tiles[t].m;
    }
    for (t = 0; t < NT; ++t)
        prefix[t] = (t ? prefix[t - 1] : 0.0) + (double)tiles[t].s * exp((double)tiles[t].m - (double)M);
    log_z = (double)M + log(prefix[NT - 1]);
    CHECK_OK(polopt_logsumexp(P, f, 1.0f, &want));
    CHECK_NEAR(log_z, want, 1e-5);
    all = tiles[0];
    for (t = 1; t < NT; ++t) all = polopt_cuda_lse_merge(all, tiles[t]);
    CHECK_NEAR(polopt_cuda_lse_log(all), want, 1e-5);
    for (s = 0; s < S; ++s) {
        const double target = polopt_cuda_uniform(11, s) * prefix[NT - 1];
        const size_t tile = polopt_cuda_search(NT, prefix, target);
        const double r = target - (tile ? prefix[tile - 1] : 0.0);
        unsigned lane;
        for (i = 0; i < T; ++i) {
            const size_t a = tile * T + i;
            e[i] = a < P ? exp((double)f[a] - (double)M) : 0.0;
        }
        lane = polopt_cuda_pick(T, e, r);
        CHECK(tile * T + lane < P);
        if (tile * T + lane < P) observed[tile * T + lane] += 1.0;
    }
    CHECK_OK(polopt_softmax(P, f, 1.0f, pi));
    for (i = 0; i < P; ++i) expected[i] = (double)S * pi[i];
    x2 = th_chi2(P, observed, expected, &dof, &impossible);
    CHECK(impossible == 0.0);
    CHECK(x2 < th_chi2_critical(dof, 4.0));
}

/* Merging sorted lists gives polopt_topk of their union, ties (integer scores) going to the smaller id. */
static void cuda_topk_merge_is_topk(void)
{
    enum { N = 300 };
    float x[N], sa[N], sb[N], out_s[N], want_s[N];
    uint32_t ia[N], ib[N], out_i[N], want_i[N];
    polopt_rng rng;
    size_t trial, i;
    polopt_rng_seed(&rng, 17);
    for (trial = 0; trial < 200; ++trial) {
        const size_t na = 1 + polopt_rng_below(&rng, N - 1), nb = N - na, k = 1 + polopt_rng_below(&rng, N);
        for (i = 0; i < N; ++i) x[i] = (float)polopt_rng_below(&rng, 40); /* many ties */
        /* the two halves' own top lists (ids into x: a = 0 .. na-1, b = na .. N-1) */
        CHECK_OK(polopt_topk(na, x, na, ia, sa));
        if (nb) CHECK_OK(polopt_topk(nb, x + na, nb, ib, sb));
        for (i = 0; i < nb; ++i) ib[i] += (uint32_t)na;
        polopt_cuda_topk_merge(k, sa, ia, na, sb, ib, nb, out_s, out_i);
        CHECK_OK(polopt_topk(N, x, k, want_i, want_s));
        CHECK(memcmp(out_i, want_i, k * sizeof(uint32_t)) == 0 && memcmp(out_s, want_s, k * sizeof(float)) == 0);
    }
    CHECK(polopt_cuda_better(1.0f, 5, 0.5f, 1) && polopt_cuda_better(1.0f, 1, 1.0f, 5));
    CHECK(!polopt_cuda_better(1.0f, 5, 1.0f, 5) && !polopt_cuda_better(-INFINITY, 0, 0.0f, 9));
}

/* Adam's element update against polopt_adam_step, ten steps, ascending and with weight decay. */
static void cuda_adam_element_is_polopt_adam(void)
{
    enum { N = 64 };
    float p_host[N], p_dev[N], m[N] = {0}, v[N] = {0}, g[N];
    polopt_adam_config c = polopt_adam_config_default();
    polopt_adam opt;
    polopt_rng rng;
    size_t i, t;
    polopt_rng_seed(&rng, 21);
    c.lr = 0.01f, c.weight_decay = 0.1f, c.maximize = 1;
    th_fill_uniform(&rng, N, p_host, -1.0f, 1.0f);
    memcpy(p_dev, p_host, sizeof p_dev);
    CHECK_OK(polopt_adam_init(&opt, N, &c));
    for (t = 1; t <= 10; ++t) {
        polopt_cuda_adam_consts k;
        const double bc1 = 1.0 - pow((double)c.beta1, (double)t), bc2 = 1.0 - pow((double)c.beta2, (double)t);
        th_fill_uniform(&rng, N, g, -2.0f, 2.0f);
        CHECK_OK(polopt_adam_step(&opt, p_host, g));
        k.beta1 = c.beta1, k.beta2 = c.beta2, k.eps = c.eps;
        k.step = (float)((double)c.lr / bc1), k.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        k.decay = 1.0f - c.lr * c.weight_decay, k.sign = -1.0f;
        for (i = 0; i < N; ++i) polopt_cuda_adam_element(&k, p_dev + i, m + i, v + i, g[i]);
    }
    /* the same expression: equal up to a compiler's contraction of a multiply-add (a few ulp per step) */
    for (i = 0; i < N; ++i) {
        CHECK_NEAR(p_dev[i], p_host[i], 1e-6 * (1.0 + fabs(p_host[i])));
        CHECK_NEAR(m[i], opt.m[i], 1e-6);
        CHECK_NEAR(v[i], opt.v[i], 1e-6);
    }
    polopt_adam_free(&opt);
}

const th_test th_suite_cuda[] = {TH(cuda_lse_merge_is_logsumexp),       TH(cuda_uniform_counter_stream),
                                 TH(cuda_search_and_pick),              TH(cuda_sampler_math_draws_from_softmax),
                                 TH(cuda_topk_merge_is_topk),           TH(cuda_adam_element_is_polopt_adam),
                                 TH_END};
