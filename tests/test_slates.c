/* Slates, against independent references: the Plackett-Luce log-probability of a slate and its gradient from the
   estimator (EXACT: to float rounding; SNIS: converging as 1/sqrt(S)) against sums over the whole catalogue in
   double and against finite differences; sampled slates against the enumerated Plackett-Luce distribution. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The reference, by the definition: log pi(a_1..a_k) = sum_{j<=k} [f(a_j) - log sum_{a not in a_1..a_{j-1}} exp f(a)],
   every sum over the catalogue in double, for h given in double (so finite differences can move it).  grad (K x L,
   may be NULL): the cumulative sums of beta_{a_j} - E_{pi_j}[beta], also over the catalogue. */
static void slate_reference(const th_cat *c, const double *h, size_t K, const uint32_t *slate, double *log_pi,
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
    th_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    double h[L], ref[K], ref_g[K * L], lp_plus[K], lp_minus[K];
    float lp[K], g[K * L];
    size_t k, j;
    th_cat_make(&c, P, L, 0.9f, 5);
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
    th_cat_free(&c);
}

/* SNIS: one set of draws serves every step; the error of the slate's log pi and gradient falls as 1/sqrt(S), is at
   most K times the error of log Z_hat it comes from, and every prefix probability stays at most 1 (each Z_k holds
   its own item exactly). */
static void slates_log_prob_snis_converges(void)
{
    enum { P = 3000, L = 8, K = 5, REPS = 48 };
    static const size_t S_values[2] = {256, 4096};
    static const uint32_t slate[K] = {11, 480, 2999, 7, 1234};
    th_cat c;
    double h[L], ref[K], ref_g[K * L], err_lp[2], err_g[2], err_z[2], log_z = 0.0, zmax = -HUGE_VAL;
    float lp[K], g[K * L];
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    size_t si, r, k, j;
    int bounded = 1;
    th_cat_make(&c, P, L, 0.8f, 8);
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
    th_cat_free(&c);
}

/* EXACT sampling is exact Plackett-Luce: the frequencies of every ordered pair over 60,000 slates against
   pi(a) pi(b) / (1 - pi(a)), chi-square at p = 1e-4; SNIS sampling of a 2-item slate from a small catalogue
   (the draws cover it) lands near the same distribution. */
static void slates_sample_plackett_luce(void)
{
    enum { P = 6, L = 3, N = 60000 };
    th_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_rng rng;
    double pi[P], z = 0.0, expected[P * P], observed[P * P];
    size_t a, b, n;
    int method;
    th_cat_make(&c, P, L, 0.7f, 3);
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
    th_cat_free(&c);
}

/* A slate reward for the gradient tests: records the slates it is asked about; kind 0 pays 1 to the first slate
   and 0 to the others, kind 1 pays by the reference's function of the slate. */
typedef struct slate_recorder {
    int kind;
    size_t n;
    uint32_t slates[POLOPT_SLATE_SAMPLES_MAX][4];
} slate_recorder;

static double reference_slate_reward(const uint32_t *s) { return (double)((s[0] * 3 + s[1]) % 5) / 4.0; }

static polopt_result record_reward(void *user, size_t context, size_t K, const uint32_t *slate, double *out)
{
    slate_recorder *r = (slate_recorder *)user;
    size_t k;
    (void)context;
    for (k = 0; k < K; ++k) r->slates[r->n][k] = slate[k];
    *out = r->kind == 0 ? (r->n == 0 ? 1.0 : 0.0) : reference_slate_reward(slate);
    r->n++;
    return POLOPT_OK;
}

/* polopt_estimator_slate_gradient: its score of each slate is polopt_estimator_slate_log_prob's last row (SNIS,
   rewards 1 and 0: g = (score_1 - score_2) / 2); and with EXACT its mean over 4000 calls of 8 slates is the exact
   gradient sum_s pi(s) R(s) grad log pi(s), enumerated over the 30 slates, within 4 standard errors, and its mean
   reward the exact E_pi[R]. */
static void slates_gradient_reinforce(void)
{
    enum { L = 3 };
    th_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_rng rng;
    slate_recorder rec;
    float g[L], lp[2], G1[2 * L], G2[2 * L];
    size_t j;
    th_cat_make(&c, 500, L, 0.8f, 12);
    ec.batch = 1, ec.K = 32, ec.S = 300;
    polopt_rng_seed(&rng, 4);
    CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
    CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
    memset(&rec, 0, sizeof rec);
    CHECK_OK(polopt_estimator_slate_gradient(&est, 0, 2, 2, record_reward, &rec, &rng, g, NULL));
    CHECK(rec.n == 2);
    CHECK_OK(polopt_estimator_slate_log_prob(&est, 0, 2, rec.slates[0], lp, G1));
    CHECK_OK(polopt_estimator_slate_log_prob(&est, 0, 2, rec.slates[1], lp, G2));
    for (j = 0; j < L; ++j) CHECK_NEAR(g[j], 0.5 * (G1[L + j] - G2[L + j]), 1e-5 * (1.0 + fabs(G1[L + j])));
    rec.n = 0;
    CHECK_RC(polopt_estimator_slate_gradient(&est, 0, 2, 1, record_reward, &rec, &rng, g, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_estimator_slate_gradient(&est, 0, 2, 33, record_reward, &rec, &rng, g, NULL), POLOPT_ERR_INVALID_ARG);
    polopt_estimator_free(&est);
    th_cat_free(&c);
    { /* EXACT, in expectation */
        enum { P = 6, CALLS = 4000, M = 8 };
        double h[L], exact[L] = {0}, mean[L] = {0}, sq[L] = {0}, value = 0.0, exact_value = 0.0;
        size_t a, b, n;
        th_cat_make(&c, P, L, 0.7f, 3);
        for (j = 0; j < L; ++j) h[j] = c.h[j];
        for (a = 0; a < P; ++a)
            for (b = 0; b < P; ++b) {
                uint32_t s[2];
                double lps[2], grad[2 * L];
                if (a == b) continue;
                s[0] = (uint32_t)a, s[1] = (uint32_t)b;
                slate_reference(&c, h, 2, s, lps, grad);
                exact_value += exp(lps[1]) * reference_slate_reward(s);
                for (j = 0; j < L; ++j) exact[j] += exp(lps[1]) * reference_slate_reward(s) * grad[L + j];
            }
        ec.method = POLOPT_METHOD_EXACT;
        CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
        CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
        rec.kind = 1;
        for (n = 0; n < CALLS; ++n) {
            double v;
            rec.n = 0;
            CHECK_OK(polopt_estimator_slate_gradient(&est, 0, 2, M, record_reward, &rec, &rng, g, &v));
            value += v / CALLS;
            for (j = 0; j < L; ++j) mean[j] += g[j], sq[j] += (double)g[j] * g[j];
        }
        for (j = 0; j < L; ++j) {
            const double m = mean[j] / CALLS, se = sqrt((sq[j] / CALLS - m * m) / CALLS);
            CHECK(fabs(m - exact[j]) <= 4.0 * se + 1e-6);
        }
        /* the mean reward of the 32,000 sampled slates: rewards in [0, 1], so a standard error below 0.0028 */
        CHECK_NEAR(value, exact_value, 4.0 * 0.0028);
        polopt_estimator_free(&est);
        th_cat_free(&c);
    }
}

/* Every misuse is refused with a message, nothing written. */
static void slates_estimator_misuse(void)
{
    enum { P = 10, L = 3 };
    th_cat c;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_rng rng;
    uint32_t dup[3] = {1, 4, 1}, far[2] = {3, P}, ok[2] = {3, 4}, out[3] = {99, 99, 99};
    float lp[3] = {5, 5, 5};
    th_cat_make(&c, P, L, 0.5f, 1);
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
    th_cat_free(&c);
}

/* ---- Slate off-policy estimators: a 5-item, 2-position world enumerated exactly (20 ordered slates). */
enum { OPE_M = 5, OPE_K = 2, OPE_SLATES = OPE_M * (OPE_M - 1) };

typedef struct slate_world {
    uint32_t s[OPE_SLATES][OPE_K];
    double mu[OPE_SLATES], pi[OPE_SLATES];           /* whole-slate probabilities */
    double mu1[OPE_SLATES], pi1[OPE_SLATES];         /* of the first position (the cascade's first prefix) */
    double mu_at[OPE_K][OPE_M], pi_at[OPE_K][OPE_M]; /* item-position marginals */
    double gamma[OPE_K * OPE_M * OPE_K * OPE_M];     /* E_mu[1_s 1_s^T] */
} slate_world;

/* Plackett-Luce over scores v: P(a, b) = e^{v_a} / Z * e^{v_b} / (Z - e^{v_a}). */
static void pl_pair(const double *v, uint32_t a, uint32_t b, double *p_first, double *p_pair)
{
    double z = 0.0;
    size_t i;
    for (i = 0; i < OPE_M; ++i) z += exp(v[i]);
    *p_first = exp(v[a]) / z;
    *p_pair = *p_first * exp(v[b]) / (z - exp(v[a]));
}

static void slate_world_make(slate_world *w)
{
    static const double v_mu[OPE_M] = {0.3, -0.2, 0.1, 0.0, -0.4}, v_pi[OPE_M] = {-1.0, 1.2, 0.4, -0.3, 0.9};
    size_t n = 0, a, b, i, j;
    memset(w, 0, sizeof *w);
    for (a = 0; a < OPE_M; ++a)
        for (b = 0; b < OPE_M; ++b) {
            if (a == b) continue;
            w->s[n][0] = (uint32_t)a, w->s[n][1] = (uint32_t)b;
            pl_pair(v_mu, (uint32_t)a, (uint32_t)b, &w->mu1[n], &w->mu[n]);
            pl_pair(v_pi, (uint32_t)a, (uint32_t)b, &w->pi1[n], &w->pi[n]);
            w->mu_at[0][a] += w->mu[n], w->mu_at[1][b] += w->mu[n];
            w->pi_at[0][a] += w->pi[n], w->pi_at[1][b] += w->pi[n];
            for (i = 0; i < OPE_K; ++i)
                for (j = 0; j < OPE_K; ++j)
                    w->gamma[(i * OPE_M + w->s[n][i]) * OPE_K * OPE_M + j * OPE_M + w->s[n][j]] += w->mu[n];
            ++n;
        }
}

/* Three reward structures, E[r_k | s]: 0 additive (r_k depends on the item at k), 1 a cascade (r_2 also on the item
   above it), 2 general (r_1 also on the item below it). */
static double slate_mean_reward(int kind, const uint32_t *s, size_t k)
{
    static const double phi[OPE_K][OPE_M] = {{0.30, 0.10, 0.50, 0.20, 0.05}, {0.15, 0.40, 0.05, 0.25, 0.30}};
    double r = phi[k][s[k]];
    if (kind == 1 && k == 1) r *= s[0] == 2 ? 0.2 : 1.3; /* a strong first item takes the clicks of the second */
    if (kind == 2 && k == 0) r *= s[1] == 1 ? 0.3 : 1.2;
    return r;
}

/* The log's probability arrays for the rows of slates idx[0..n-1] of the world; PI weights from the exact Gamma. */
static void slate_world_log(const slate_world *w, size_t n, const size_t *idx, double *cas0, double *cas1,
                            double *ip0, double *ip1, double *piw)
{
    double pinv[OPE_K * OPE_M * OPE_K * OPE_M], q[OPE_K * OPE_M];
    uint32_t *items = (uint32_t *)malloc(n * OPE_K * sizeof(uint32_t));
    size_t i, k;
    for (k = 0; k < OPE_K; ++k)
        for (i = 0; i < OPE_M; ++i) q[k * OPE_M + i] = w->pi_at[k][i];
    CHECK_OK(polopt_slate_pinv(OPE_K * OPE_M, w->gamma, pinv, NULL));
    for (i = 0; i < n; ++i) {
        const size_t j = idx[i];
        cas0[i * 2] = w->mu1[j], cas0[i * 2 + 1] = w->mu[j];
        cas1[i * 2] = w->pi1[j], cas1[i * 2 + 1] = w->pi[j];
        for (k = 0; k < OPE_K; ++k) {
            ip0[i * 2 + k] = w->mu_at[k][w->s[j][k]], ip1[i * 2 + k] = w->pi_at[k][w->s[j][k]];
            items[i * 2 + k] = w->s[j][k];
        }
    }
    CHECK_OK(polopt_slate_pi_weights(n, OPE_K, OPE_M, items, pinv, q, 0, piw, NULL));
    free(items);
}

/* In expectation, exactly: a log holding every slate once, its rewards scaled by (number of slates) mu(s), has mean
   sum_s mu(s) r(s) w(s), the expectation of each estimator.  Against the true value sum_s pi(s) sum_k r_k(s):
   all four are unbiased for additive rewards; SIPS and RIPS (not IIPS and PI) for the cascade; only SIPS for the
   general reward. */
static void slates_ope_unbiased_in_expectation(void)
{
    slate_world w;
    size_t idx[OPE_SLATES], i, k;
    double cas0[OPE_SLATES * 2], cas1[OPE_SLATES * 2], ip0[OPE_SLATES * 2], ip1[OPE_SLATES * 2], piw[OPE_SLATES];
    double r[OPE_SLATES * 2];
    int kind, e;
    slate_world_make(&w);
    for (i = 0; i < OPE_SLATES; ++i) idx[i] = i;
    slate_world_log(&w, OPE_SLATES, idx, cas0, cas1, ip0, ip1, piw);
    for (kind = 0; kind < 3; ++kind) {
        polopt_slate_log g;
        polopt_slate_report rep;
        polopt_slate_ope_config c = polopt_slate_ope_config_default();
        double truth = 0.0;
        static const int unbiased[3][POLOPT_SLATE_COUNT] = {{1, 1, 1, 1}, {1, 0, 1, 0}, {1, 0, 0, 0}};
        for (i = 0; i < OPE_SLATES; ++i)
            for (k = 0; k < OPE_K; ++k) {
                const double m = slate_mean_reward(kind, w.s[i], k);
                truth += w.pi[i] * m;
                r[i * 2 + k] = OPE_SLATES * w.mu[i] * m;
            }
        memset(&g, 0, sizeof g);
        g.n = OPE_SLATES, g.K = OPE_K, g.reward = r;
        g.pscore_cascade = cas0, g.target_cascade = cas1, g.pscore_item_position = ip0, g.target_item_position = ip1;
        g.pi_weight = piw;
        c.bootstrap = 0;
        CHECK_OK(polopt_slate_ope_evaluate(&g, &c, &rep));
        for (e = 0; e < POLOPT_SLATE_COUNT; ++e) {
            const double err = fabs(rep.est[e].value - truth);
            CHECK(rep.est[e].available);
            if (unbiased[kind][e]) CHECK_NEAR(rep.est[e].value, truth, 1e-12);
            else if (!(err > 1e-3)) th_fail(__FILE__, __LINE__, "%s is unbiased for reward %d (%g)", polopt_slate_name((polopt_slate_estimator)e), kind, err);
        }
    }
}

/* Sampled logs: 40,000 slates from mu with Bernoulli rewards (additive means).  Every estimate within 4 standard
   errors of the truth; the bootstrap interval brackets the estimate; PI's and IIPS's standard errors below SIPS's;
   and Gamma estimated from the logged slates is near the exact one. */
static void slates_ope_sampled(void)
{
    enum { N = 40000 };
    slate_world w;
    polopt_rng rng;
    size_t *idx = (size_t *)malloc(N * sizeof(size_t)), i, k;
    double *cas0 = (double *)malloc(N * 2 * sizeof(double)), *cas1 = (double *)malloc(N * 2 * sizeof(double));
    double *ip0 = (double *)malloc(N * 2 * sizeof(double)), *ip1 = (double *)malloc(N * 2 * sizeof(double));
    double *piw = (double *)malloc(N * sizeof(double)), *r = (double *)malloc(N * 2 * sizeof(double));
    uint32_t *items = (uint32_t *)malloc(N * 2 * sizeof(uint32_t));
    double gamma_hat[OPE_K * OPE_M * OPE_K * OPE_M], truth = 0.0, worst = 0.0;
    polopt_slate_log g;
    polopt_slate_report rep;
    int e;
    slate_world_make(&w);
    polopt_rng_seed(&rng, 2024);
    for (i = 0; i < OPE_SLATES; ++i)
        for (k = 0; k < OPE_K; ++k) truth += w.pi[i] * slate_mean_reward(0, w.s[i], k);
    for (i = 0; i < N; ++i) { /* a slate from mu by inversion, then its rewards */
        double u = polopt_rng_uniform(&rng), run = 0.0;
        size_t j = 0;
        while (j + 1 < OPE_SLATES && (run += w.mu[j]) <= u) ++j;
        idx[i] = j;
        for (k = 0; k < OPE_K; ++k) {
            items[i * 2 + k] = w.s[j][k];
            r[i * 2 + k] = polopt_rng_uniform(&rng) < slate_mean_reward(0, w.s[j], k) ? 1.0 : 0.0;
        }
    }
    slate_world_log(&w, N, idx, cas0, cas1, ip0, ip1, piw);
    memset(&g, 0, sizeof g);
    g.n = N, g.K = OPE_K, g.reward = r;
    g.pscore_cascade = cas0, g.target_cascade = cas1, g.pscore_item_position = ip0, g.target_item_position = ip1;
    g.pi_weight = piw;
    CHECK_OK(polopt_slate_ope_evaluate(&g, NULL, &rep));
    for (e = 0; e < POLOPT_SLATE_COUNT; ++e) {
        const polopt_ope_estimate *x = rep.est + e;
        printf("    %-4s %.4f +- %.4f  [%.4f, %.4f]  (truth %.4f)\n", polopt_slate_name((polopt_slate_estimator)e),
               x->value, x->std_error, x->ci_low, x->ci_high, truth);
        CHECK(fabs(x->value - truth) <= 4.0 * x->std_error);
        CHECK(x->ci_low <= x->value && x->value <= x->ci_high && x->ci_low < x->ci_high);
        /* the percentile interval is about +- 1.96 standard errors */
        CHECK_NEAR((x->ci_high - x->ci_low) / (2 * 1.96 * x->std_error), 1.0, 0.25);
    }
    CHECK(rep.est[POLOPT_SLATE_PI].std_error < rep.est[POLOPT_SLATE_SIPS].std_error);
    CHECK(rep.est[POLOPT_SLATE_IIPS].std_error < rep.est[POLOPT_SLATE_SIPS].std_error);
    CHECK_OK(polopt_slate_gamma(N, OPE_K, OPE_M, items, gamma_hat, NULL));
    for (i = 0; i < OPE_K * OPE_M * OPE_K * OPE_M; ++i)
        if (fabs(gamma_hat[i] - w.gamma[i]) > worst) worst = fabs(gamma_hat[i] - w.gamma[i]);
    CHECK(worst < 4.0 * sqrt(0.25 / N) * 1.5); /* a few binomial standard errors */
    free(idx), free(cas0), free(cas1), free(ip0), free(ip1), free(piw), free(r), free(items);
}

/* The pseudo-inverse satisfies the Moore-Penrose conditions G G+ G = G and G+ G G+ = G+ on the rank-deficient
   Gamma of the world; and misuse is refused. */
static void slates_pinv_and_misuse(void)
{
    enum { D = OPE_K * OPE_M };
    slate_world w;
    double pinv[D * D], t[D * D], t2[D * D], worst1 = 0.0, worst2 = 0.0, r[4] = {0, 1, 0, 0};
    double p0[4] = {0.5, 0.2, 0.4, 0.1}, p1[4] = {0.3, 0.1, 1.5, 0.1};
    size_t i, j, k;
    polopt_slate_log g;
    polopt_slate_report rep;
    uint32_t bad_items[2] = {0, OPE_M};
    slate_world_make(&w);
    CHECK_OK(polopt_slate_pinv(D, w.gamma, pinv, NULL));
    for (i = 0; i < D; ++i)
        for (j = 0; j < D; ++j) {
            double s = 0.0;
            for (k = 0; k < D; ++k) s += w.gamma[i * D + k] * pinv[k * D + j];
            t[i * D + j] = s; /* G G+ */
        }
    for (i = 0; i < D; ++i)
        for (j = 0; j < D; ++j) {
            double s = 0.0, s2 = 0.0;
            for (k = 0; k < D; ++k) s += t[i * D + k] * w.gamma[k * D + j], s2 += pinv[i * D + k] * t[k * D + j];
            t2[i * D + j] = s2;
            if (fabs(s - w.gamma[i * D + j]) > worst1) worst1 = fabs(s - w.gamma[i * D + j]);
        }
    for (i = 0; i < D * D; ++i)
        if (fabs(t2[i] - pinv[i]) > worst2 * 1.0) worst2 = fabs(t2[i] - pinv[i]);
    CHECK(worst1 < 1e-12);
    CHECK(worst2 < 1e-9);
    memset(&g, 0, sizeof g);
    g.n = 2, g.K = 2, g.reward = r, g.pscore_cascade = p0, g.target_cascade = p1;
    CHECK_RC(polopt_slate_ope_evaluate(&g, NULL, &rep), POLOPT_ERR_INVALID_ARG); /* 1.5 is no probability */
    p1[2] = 0.5, p0[1] = 0.0;
    CHECK_RC(polopt_slate_ope_evaluate(&g, NULL, &rep), POLOPT_ERR_INVALID_ARG); /* a logger's 0 */
    p0[1] = 0.2, r[1] = HUGE_VAL;
    CHECK_RC(polopt_slate_ope_evaluate(&g, NULL, &rep), POLOPT_ERR_NONFINITE);
    r[1] = 1.0, g.target_cascade = NULL;
    CHECK_RC(polopt_slate_ope_evaluate(&g, NULL, &rep), POLOPT_ERR_INVALID_ARG); /* half a pair */
    g.target_cascade = p1, g.n = 1;
    CHECK_RC(polopt_slate_ope_evaluate(&g, NULL, &rep), POLOPT_ERR_INVALID_ARG);
    g.n = 2;
    CHECK_OK(polopt_slate_ope_evaluate(&g, NULL, &rep));
    CHECK(!rep.est[POLOPT_SLATE_IIPS].available && !rep.est[POLOPT_SLATE_PI].available);
    CHECK_RC(polopt_slate_gamma(1, 2, OPE_M, bad_items, t, NULL), POLOPT_ERR_INVALID_ARG);
    w.gamma[1] += 0.1; /* not symmetric */
    CHECK_RC(polopt_slate_pinv(D, w.gamma, pinv, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_slate_pinv(600, w.gamma, pinv, NULL), POLOPT_ERR_INVALID_ARG);
}

/* ---- PRR: data drawn from a known PRR model (P = 40 items, D = L = 3, K = 3). */
enum { PRR_P = 40, PRR_D = 3, PRR_L = 3, PRR_K = 3 };

static void prr_truth(float *params)
{
    static const float theta[PRR_D * PRR_L] = {1.0f, -0.5f, 0.2f, 0.3f, 0.8f, -0.6f, -0.4f, 0.1f, 0.9f};
    static const float b[PRR_K] = {0.6f, 0.0f, -0.7f}, w[PRR_D + 1] = {0.5f, -0.3f, 0.2f, -1.5f};
    memcpy(params, theta, sizeof theta);
    memcpy(params + PRR_D * PRR_L, b, sizeof b);
    memcpy(params + PRR_D * PRR_L + PRR_K, w, sizeof w);
}

/* probs against the formula by hand; the fit recovers the model that made the data (its likelihood on the data is
   no worse than the truth's, as a maximum likelihood must be; its position biases within 0.05 of the truth's, its
   theta within 0.1: a few standard errors at 30,000 slates); the decision is the brute-force best slate. */
static void slates_prr_fit_recovers_the_model(void)
{
    enum { N = 30000 };
    float beta[PRR_P * PRR_L], *X = (float *)malloc(N * PRR_D * sizeof(float)), truth[PRR_D * PRR_L + PRR_K + PRR_D + 1];
    uint32_t *items = (uint32_t *)malloc(N * PRR_K * sizeof(uint32_t)), best[PRR_K];
    int32_t *click = (int32_t *)malloc(N * sizeof(int32_t));
    polopt_mips index;
    polopt_prr model, true_model;
    polopt_prr_config pc = polopt_prr_config_default(PRR_D, PRR_L, PRR_K);
    polopt_slate_clicks data;
    polopt_rng rng;
    polopt_mips_scratch sc;
    double p[PRR_K + 1], nll_fit, nll_true = 0.0, worst_b = 0.0, worst_t = 0.0;
    size_t i, k;
    polopt_rng_seed(&rng, 99);
    polopt_rng_normals(&rng, PRR_P * PRR_L, beta);
    polopt_rng_normals(&rng, N * PRR_D, X);
    CHECK_OK(polopt_mips_init_exact(&index, PRR_P, PRR_L, beta, 0, NULL));
    CHECK_OK(polopt_prr_init(&true_model, &pc));
    prr_truth(truth);
    memcpy(true_model.params, truth, sizeof truth);
    { /* probs by hand for one slate */
        const uint32_t s[PRR_K] = {4, 17, 30};
        double u[PRR_K], z = 1.0;
        for (k = 0; k < PRR_K; ++k) {
            size_t d, l;
            u[k] = truth[PRR_D * PRR_L + k] + truth[PRR_D * PRR_L + PRR_K + PRR_D];
            for (d = 0; d < PRR_D; ++d) u[k] += truth[PRR_D * PRR_L + PRR_K + d] * X[d];
            for (d = 0; d < PRR_D; ++d)
                for (l = 0; l < PRR_L; ++l) u[k] += X[d] * truth[d * PRR_L + l] * beta[s[k] * PRR_L + l];
            z += exp(u[k]);
        }
        CHECK_OK(polopt_prr_probs(&true_model, &index, X, s, p));
        CHECK_NEAR(p[0], 1.0 / z, 1e-6);
        for (k = 0; k < PRR_K; ++k) CHECK_NEAR(p[1 + k], exp(u[k]) / z, 1e-6);
    }
    for (i = 0; i < N; ++i) { /* a random slate; the outcome from the true model */
        double u, run = 0.0;
        CHECK_OK(polopt_rng_choose(&rng, PRR_P, PRR_K, items + i * PRR_K));
        CHECK_OK(polopt_prr_probs(&true_model, &index, X + i * PRR_D, items + i * PRR_K, p));
        u = polopt_rng_uniform(&rng);
        click[i] = -1;
        for (k = 0; k <= PRR_K; ++k)
            if ((run += p[k]) > u) {
                click[i] = (int32_t)k - 1;
                break;
            }
        nll_true -= log(p[click[i] + 1]) / N;
    }
    data.n = N, data.X = X, data.items = items, data.click = click;
    pc.epochs = 150, pc.l2 = 0.0f, pc.lr = 0.003f, pc.batch = 1024;
    CHECK_OK(polopt_prr_init(&model, &pc));
    CHECK_OK(polopt_prr_fit(&model, &index, &data, &nll_fit));
    printf("    PRR: mean NLL fitted %.5f, truth %.5f\n", nll_fit, nll_true);
    CHECK(nll_fit <= nll_true + 1e-4); /* the maximum of the likelihood is at least the truth's */
    for (k = 0; k < PRR_K; ++k) { /* the biases are identified up to the engagement's constant: compare differences */
        const double d = (model.params[PRR_D * PRR_L + k] - model.params[PRR_D * PRR_L]) -
                         (truth[PRR_D * PRR_L + k] - truth[PRR_D * PRR_L]);
        if (fabs(d) > worst_b) worst_b = fabs(d);
    }
    for (k = 0; k < PRR_D * PRR_L; ++k)
        if (fabs(model.params[k] - truth[k]) > worst_t) worst_t = fabs(model.params[k] - truth[k]);
    printf("    PRR: largest error of the position biases %.3f, of theta %.3f\n", worst_b, worst_t);
    CHECK(worst_b < 0.05);
    CHECK(worst_t < 0.1);
    { /* the decision: brute force over the top items by h^T beta, placed by bias (here b_0 > b_1 > b_2) */
        float h[PRR_L] = {0};
        double sc_best[PRR_K] = {-HUGE_VAL, -HUGE_VAL, -HUGE_VAL};
        uint32_t top[PRR_K] = {0, 0, 0};
        size_t a, d, l;
        for (l = 0; l < PRR_L; ++l)
            for (d = 0; d < PRR_D; ++d) h[l] += X[d] * truth[d * PRR_L + l];
        for (a = 0; a < PRR_P; ++a) {
            double v = 0.0;
            for (l = 0; l < PRR_L; ++l) v += (double)h[l] * beta[a * PRR_L + l];
            for (k = 0; k < PRR_K; ++k)
                if (v > sc_best[k]) {
                    size_t m;
                    for (m = PRR_K - 1; m > k; --m) sc_best[m] = sc_best[m - 1], top[m] = top[m - 1];
                    sc_best[k] = v, top[k] = (uint32_t)a;
                    break;
                }
        }
        CHECK_OK(polopt_mips_scratch_init(&sc, &index, PRR_K, NULL));
        CHECK_OK(polopt_prr_slate(&true_model, &index, &sc, X, 0, best));
        for (k = 0; k < PRR_K; ++k) CHECK(best[k] == top[k]);
        polopt_mips_scratch_free(&sc);
    }
    click[5] = PRR_K; /* misuse: a position that is not there; the model is untouched */
    {
        const float before = model.params[0];
        CHECK_RC(polopt_prr_fit(&model, &index, &data, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK(model.params[0] == before);
    }
    polopt_prr_free(&model);
    polopt_prr_free(&true_model);
    polopt_mips_free(&index);
    free(X), free(items), free(click);
}

const th_test th_suite_slates[] = {TH(slates_log_prob_exact), TH(slates_log_prob_snis_converges),
                                   TH(slates_sample_plackett_luce), TH(slates_gradient_reinforce), TH(slates_estimator_misuse),
                                   TH(slates_ope_unbiased_in_expectation), TH(slates_ope_sampled),
                                   TH(slates_pinv_and_misuse), TH(slates_prr_fit_recovers_the_model), TH_END};
