/* Slates, against independent references: the Plackett-Luce log-probability of a slate and its gradient from the
   estimator (EXACT: to float rounding; SNIS: converging as 1/sqrt(S)) against sums over the whole catalogue in
   double and against finite differences; sampled slates against the enumerated Plackett-Luce distribution. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct slate_cat {
    size_t P, L;
    float *beta, h[8];
    polopt_mips index;
} slate_cat;

static void slate_cat_make(slate_cat *c, size_t P, size_t L, float spread, uint64_t seed)
{
    polopt_rng rng;
    size_t j;
    c->P = P, c->L = L;
    c->beta = (float *)malloc(P * L * sizeof(float));
    polopt_rng_seed(&rng, seed);
    polopt_rng_normals(&rng, P * L, c->beta);
    polopt_rng_normals(&rng, L, c->h);
    for (j = 0; j < L; ++j) c->h[j] *= spread;
    CHECK_OK(polopt_mips_init_exact(&c->index, P, L, c->beta, 0, NULL));
}

static void slate_cat_free(slate_cat *c)
{
    polopt_mips_free(&c->index);
    free(c->beta);
}

/* The reference, by the definition: log pi(a_1..a_k) = sum_{j<=k} [f(a_j) - log sum_{a not in a_1..a_{j-1}} exp f(a)],
   every sum over the catalogue in double, for h given in double (so finite differences can move it).  grad (K x L,
   may be NULL): the cumulative sums of beta_{a_j} - E_{pi_j}[beta], also over the catalogue. */
static void slate_reference(const slate_cat *c, const double *h, size_t K, const uint32_t *slate, double *log_pi,
                            double *grad)
{
    size_t k, a, j, i;
    double *f = (double *)malloc(c->P * sizeof(double)), acc = 0.0, m = -HUGE_VAL;
    for (a = 0; a < c->P; ++a) {
        f[a] = 0.0;
        for (j = 0; j < c->L; ++j) f[a] += h[j] * c->beta[a * c->L + j];
        if (f[a] > m) m = f[a];
    }
    for (k = 0; k < K; ++k) {
        double z = 0.0, mean[8] = {0};
        for (a = 0; a < c->P; ++a) {
            int placed = 0;
            for (i = 0; i < k; ++i) placed |= slate[i] == a;
            if (placed) continue;
            z += exp(f[a] - m);
            for (j = 0; j < c->L; ++j) mean[j] += exp(f[a] - m) * c->beta[a * c->L + j];
        }
        acc += f[slate[k]] - m - log(z);
        log_pi[k] = acc;
        if (grad)
            for (j = 0; j < c->L; ++j)
                grad[k * c->L + j] = (k ? grad[(k - 1) * c->L + j] : 0.0) + c->beta[slate[k] * c->L + j] - mean[j] / z;
    }
    free(f);
}

/* EXACT: the estimator's slate log-probabilities and gradients equal the catalogue sums to float rounding, and the
   reference's gradient is the derivative of its log-probability (central differences). */
static void slates_log_prob_exact(void)
{
    enum { P = 40, L = 5, K = 4 };
    static const uint32_t slate[K] = {7, 31, 2, 18};
    slate_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    double h[L], ref[K], ref_g[K * L], lp_plus[K], lp_minus[K];
    float lp[K], g[K * L];
    size_t k, j;
    slate_cat_make(&c, P, L, 0.9f, 5);
    for (j = 0; j < L; ++j) h[j] = c.h[j];
    ec.method = POLOPT_METHOD_EXACT, ec.batch = 1;
    CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
    CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
    CHECK_OK(polopt_estimator_slate_log_prob(&est, 0, K, slate, lp, g));
    slate_reference(&c, h, K, slate, ref, ref_g);
    for (k = 0; k < K; ++k) {
        CHECK_NEAR(lp[k], ref[k], 2e-5 * (1.0 + fabs(ref[k])));
        for (j = 0; j < L; ++j) CHECK_NEAR(g[k * L + j], ref_g[k * L + j], 2e-5);
    }
    for (j = 0; j < L; ++j) { /* d log pi(a_1..a_K) / dh_j by central differences of the definition */
        const double step = 1e-5, save = h[j];
        h[j] = save + step;
        slate_reference(&c, h, K, slate, lp_plus, NULL);
        h[j] = save - step;
        slate_reference(&c, h, K, slate, lp_minus, NULL);
        h[j] = save;
        for (k = 0; k < K; ++k) CHECK_NEAR((lp_plus[k] - lp_minus[k]) / (2 * step), ref_g[k * L + j], 1e-6);
    }
    { /* K = 1 is the single-item log pi and grad log pi */
        float lp1, g1[L];
        CHECK_OK(polopt_estimator_log_prob(&est, 0, 1, slate, &lp1, g1));
        CHECK_NEAR(lp[0], lp1, 1e-5);
        for (j = 0; j < L; ++j) CHECK_NEAR(g[j], g1[j], 1e-5);
    }
    polopt_estimator_free(&est);
    slate_cat_free(&c);
}

/* SNIS: one set of draws serves every step; the error of the slate's log pi and gradient falls as 1/sqrt(S), is at
   most K times the error of log Z_hat it comes from, and every prefix probability stays at most 1 (each Z_k holds
   its own item exactly). */
static void slates_log_prob_snis_converges(void)
{
    enum { P = 3000, L = 8, K = 5, REPS = 48 };
    static const size_t S_values[2] = {256, 4096};
    static const uint32_t slate[K] = {11, 480, 2999, 7, 1234};
    slate_cat c;
    double h[L], ref[K], ref_g[K * L], err_lp[2], err_g[2], err_z[2], log_z = 0.0, zmax = -HUGE_VAL;
    float lp[K], g[K * L];
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    size_t si, r, k, j;
    int bounded = 1;
    slate_cat_make(&c, P, L, 0.8f, 8);
    for (j = 0; j < L; ++j) h[j] = c.h[j];
    slate_reference(&c, h, K, slate, ref, ref_g);
    for (k = 0; k < P; ++k) { /* the exact log Z, in double */
        double f = 0.0;
        for (j = 0; j < L; ++j) f += h[j] * c.beta[k * L + j];
        if (f > zmax) zmax = f;
    }
    for (k = 0; k < P; ++k) {
        double f = 0.0;
        for (j = 0; j < L; ++j) f += h[j] * c.beta[k * L + j];
        log_z += exp(f - zmax);
    }
    log_z = zmax + log(log_z);
    for (si = 0; si < 2; ++si) {
        ec.K = 64, ec.S = S_values[si], ec.epsilon = 0.5f, ec.batch = 1, ec.seed = 21;
        CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
        err_lp[si] = err_g[si] = err_z[si] = 0.0;
        for (r = 0; r < REPS; ++r) {
            double d = 0.0, n = 0.0;
            polopt_draws dr;
            CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
            CHECK_OK(polopt_estimator_draws(&est, 0, &dr));
            err_z[si] += fabs(dr.log_z - log_z) / REPS;
            CHECK_OK(polopt_estimator_slate_log_prob(&est, 0, K, slate, lp, g));
            for (k = 0; k < K; ++k) bounded &= lp[k] <= 0.0f && (k == 0 || lp[k] <= lp[k - 1]);
            err_lp[si] += fabs(lp[K - 1] - ref[K - 1]) / REPS;
            for (j = 0; j < K * L; ++j) d += (g[j] - ref_g[j]) * (g[j] - ref_g[j]), n += ref_g[j] * ref_g[j];
            err_g[si] += sqrt(d / n) / REPS;
        }
        polopt_estimator_free(&est);
    }
    printf("    slate log pi, mean |error|: S = 256 %.4f, S = 4096 %.4f (log Z_hat: %.4f, %.4f); gradient relative: "
           "%.4f, %.4f\n", err_lp[0], err_lp[1], err_z[0], err_z[1], err_g[0], err_g[1]);
    CHECK(bounded);
    /* 16 times the draws: sqrt(16) = 4 times smaller errors, within the spread of 48 repetitions */
    CHECK(err_lp[0] / err_lp[1] > 2.0 && err_lp[0] / err_lp[1] < 8.0);
    CHECK(err_g[0] / err_g[1] > 2.0 && err_g[0] / err_g[1] < 8.0);
    /* the slate's log pi is K steps, each with the error of one Z estimate: K times it when the slate holds little of
       pi's mass (as here), less when its items, counted exactly, hold more */
    CHECK(err_lp[0] <= 1.05 * K * err_z[0] && err_lp[1] <= 1.05 * K * err_z[1]);
    CHECK(err_g[1] < 0.05);
    slate_cat_free(&c);
}

/* EXACT sampling is exact Plackett-Luce: the frequencies of every ordered pair over 60,000 slates against
   pi(a) pi(b) / (1 - pi(a)), chi-square at p = 1e-4; SNIS sampling of a 2-item slate from a small catalogue
   (the draws cover it) lands near the same distribution. */
static void slates_sample_plackett_luce(void)
{
    enum { P = 6, L = 3, N = 60000 };
    slate_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_rng rng;
    double pi[P], z = 0.0, expected[P * P], observed[P * P];
    size_t a, b, n;
    int method;
    slate_cat_make(&c, P, L, 0.7f, 3);
    for (a = 0; a < P; ++a) {
        double f = 0.0;
        size_t j;
        for (j = 0; j < L; ++j) f += (double)c.h[j] * c.beta[a * L + j];
        z += pi[a] = exp(f);
    }
    for (a = 0; a < P; ++a) pi[a] /= z;
    for (a = 0; a < P; ++a)
        for (b = 0; b < P; ++b) expected[a * P + b] = a == b ? 0.0 : N * pi[a] * pi[b] / (1.0 - pi[a]);
    for (method = 0; method < 2; ++method) {
        ec.method = method ? POLOPT_METHOD_SNIS : POLOPT_METHOD_EXACT, ec.batch = 1, ec.K = 2, ec.S = 4096;
        ec.epsilon = 0.5f;
        CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
        polopt_rng_seed(&rng, 77);
        memset(observed, 0, sizeof observed);
        for (n = 0; n < N; ++n) {
            uint32_t s[2];
            if (method == 0 && n == 0) CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
            if (method == 1 && n % 100 == 0) CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL)); /* fresh draws */
            CHECK_OK(polopt_estimator_sample_slate(&est, 0, 2, &rng, s));
            CHECK(s[0] != s[1]);
            observed[s[0] * P + s[1]] += 1.0;
        }
        if (method == 0) {
            CHECK_CHI2(P * P, observed, expected);
        } else { /* SIR from 4096 draws: each cell within 5% of its share, relative (the draws' own error) */
            for (a = 0; a < P * P; ++a)
                if (expected[a] > 1000.0) CHECK_NEAR(observed[a] / expected[a], 1.0, 0.05);
        }
        polopt_estimator_free(&est);
    }
    slate_cat_free(&c);
}

/* Every misuse is refused with a message, nothing written. */
static void slates_estimator_misuse(void)
{
    enum { P = 10, L = 3 };
    slate_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_rng rng;
    uint32_t dup[3] = {1, 4, 1}, far[2] = {3, P}, ok[2] = {3, 4}, out[3] = {99, 99, 99};
    float lp[3] = {5, 5, 5};
    slate_cat_make(&c, P, L, 0.5f, 1);
    ec.method = POLOPT_METHOD_EXACT, ec.batch = 1;
    polopt_rng_seed(&rng, 1);
    CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
    CHECK_RC(polopt_estimator_slate_log_prob(&est, 0, 2, ok, lp, NULL), POLOPT_ERR_INVALID_ARG); /* nothing set */
    CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
    CHECK_RC(polopt_estimator_slate_log_prob(&est, 0, 3, dup, lp, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_estimator_slate_log_prob(&est, 0, 2, far, lp, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_estimator_slate_log_prob(&est, 0, 0, ok, lp, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_estimator_slate_log_prob(&est, 0, 2, NULL, lp, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_estimator_slate_log_prob(&est, 1, 2, ok, lp, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK(lp[0] == 5 && lp[1] == 5 && lp[2] == 5);
    CHECK_RC(polopt_estimator_sample_slate(&est, 0, P + 1, &rng, out), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_estimator_sample_slate(&est, 0, 2, NULL, out), POLOPT_ERR_INVALID_ARG);
    CHECK(out[0] == 99);
    { /* K = P: a permutation of the catalogue */
        uint32_t all[P];
        int seen[P] = {0}, i, perm = 1;
        CHECK_OK(polopt_estimator_sample_slate(&est, 0, P, &rng, all));
        for (i = 0; i < P; ++i) seen[all[i] < P ? all[i] : 0]++;
        for (i = 0; i < P; ++i) perm &= seen[i] == 1;
        CHECK(perm);
    }
    polopt_estimator_free(&est);
    slate_cat_free(&c);
}

const th_test th_suite_slates[] = {TH(slates_log_prob_exact), TH(slates_log_prob_snis_converges),
                                   TH(slates_sample_plackett_luce), TH(slates_estimator_misuse), TH_END};
