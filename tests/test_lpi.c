/* Local policy improvement (Liang & Vlassis 2023) against independent references: training on the LPI loss with
   free logits reaches the closed-form optimum pi ~ mu exp(A / beta_kl) for several beta_kl and both baselines; the
   advantages against sums written out here in double; KL and JS of two policies against a direct O(P) computation in
   double, and the SNIS estimate converging to it as S grows; mu_hat fitted by maximum likelihood through SNIS
   against the same fit through the exact gradient; AR@1 and iAR@1 against hand counts; bad input. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* softmax of n logits in double, into out */
static void softmax_d(size_t n, const double *logit, double *out)
{
    double mx = -INFINITY, Z = 0.0;
    size_t a;
    for (a = 0; a < n; ++a) mx = logit[a] > mx ? logit[a] : mx;
    for (a = 0; a < n; ++a) Z += (out[a] = exp(logit[a] - mx));
    for (a = 0; a < n; ++a) out[a] /= Z;
}

/* pi(. | x) of a linear policy in double, from its float embedding h = theta^T x (computed by the library: the
   reference recomputes only the softmax and what follows). */
static void policy_pi(const polopt_policy *p, const float *beta, size_t P, const float *x, double *out)
{
    float h[64];
    double *f = (double *)malloc(P * sizeof(double));
    size_t a, j;
    CHECK_OK(polopt_policy_embed(p, 1, x, p->D, h));
    for (a = 0; a < P; ++a) {
        double s = 0.0;
        for (j = 0; j < p->L; ++j) s += (double)h[j] * beta[a * p->L + j];
        f[a] = s / p->temperature;
    }
    softmax_d(P, f, out);
    free(f);
}

static void kl_js_d(size_t P, const double *p, const double *q, double *kl, double *js)
{
    size_t a;
    *kl = *js = 0.0;
    for (a = 0; a < P; ++a) {
        const double m = 0.5 * (p[a] + q[a]);
        if (p[a] > 0.0) *kl += p[a] * log(p[a] / q[a]), *js += 0.5 * p[a] * log(p[a] / m);
        if (q[a] > 0.0) *js += 0.5 * q[a] * log(q[a] / m);
    }
}

/* A random policy with D = L. */
static void random_policy(polopt_policy *p, size_t L, float scale, uint64_t seed)
{
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    pc.init = POLOPT_INIT_RANDOM;
    pc.init_scale = scale;
    pc.seed = seed;
    CHECK_OK(polopt_policy_init(p, &pc));
}

/* The closed-form optimum (Liang & Vlassis 2023, Eq. 7-8).  C contexts with free logits (one-hot x, beta = I, so
   f(a, x_c) = theta[c][a]), a known logging policy mu, full-information rewards r(c, a) in [0, 1], 60 logged actions
   per context.  The LPI loss sum_i exp(A_i / beta_kl) log pi(a_i | c_i) over the simplex is maximised by
       pi*(a | c)  ~  n(c, a) exp(A(c, a) / beta_kl)  =  mu~(a | c) exp(A(c, a) / beta_kl)
   (mu~ the empirical logging policy: each (c, a) weighs its count times one weight), the paper's pi ~ mu exp(r /
   beta_kl), since A and r differ by a function of c.  The trainer (EXACT method, full batch, Adam with a decaying
   step) must reach pi* within total variation 0.003 in every context (measured 4e-4), for beta_kl = 0.1, 0.5, 2 and
   both baselines (the same optimum); the advantages themselves match the sums written out here. */
static void lpi_closed_form_optimum(void)
{
    enum { C = 4, P = 8, PER = 60, N = C * PER };
    static const float betas[3] = {0.1f, 0.5f, 2.0f};
    polopt_rng rng;
    float beta[P * P], X[N * C], U[N * P], A[N], w[N], H[N * P], ret[N];
    double mu[C][P], r[C][P], count[C][P];
    uint32_t act[N];
    polopt_policy mu_pol;
    polopt_policy_config pc = polopt_policy_config_default(C, P);
    polopt_mips index;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_linear_task task;
    size_t c, a, i, b, k;
    memset(beta, 0, sizeof beta);
    for (a = 0; a < P; ++a) beta[a * P + a] = 1.0f;
    CHECK_OK(polopt_mips_init_exact(&index, P, P, beta, 1, NULL));
    polopt_rng_seed(&rng, 11);
    CHECK_OK(polopt_policy_init(&mu_pol, &pc));
    memset(count, 0, sizeof count);
    for (c = 0; c < C; ++c) {
        double logit[P];
        for (a = 0; a < P; ++a) {
            logit[a] = polopt_rng_normal(&rng);
            mu_pol.theta[c * P + a] = (float)logit[a];
            r[c][a] = polopt_rng_uniform(&rng);
        }
        for (a = 0; a < P; ++a) logit[a] = mu_pol.theta[c * P + a]; /* mu from the float logits the policy holds */
        softmax_d(P, logit, mu[c]);
    }
    memset(X, 0, sizeof X);
    for (i = 0; i < N; ++i) { /* PER draws of mu per context */
        float m[P];
        c = i / PER;
        for (a = 0; a < P; ++a) m[a] = (float)mu[c][a];
        CHECK_OK(polopt_rng_categorical(&rng, P, m, act + i));
        X[i * C + c] = 1.0f;
        count[c][act[i]] += 1.0;
        for (a = 0; a < P; ++a) U[i * P + a] = (float)r[c][a]; /* r_hat(i, a) = U_i^T beta_a = r(c, a) */
    }
    task.U = U, task.items = beta, task.n = N, task.P = P, task.L = P, task.bias = 0.0f;
    ec.method = POLOPT_METHOD_EXACT;
    ec.batch = 64;
    CHECK_OK(polopt_estimator_init(&est, &index, &ec));
    CHECK_OK(polopt_policy_embed(&mu_pol, N, X, C, H));
    for (b = 0; b < 2; ++b) {
        const polopt_lpi_baseline base = b ? POLOPT_LPI_MAX : POLOPT_LPI_MEAN;
        CHECK_OK(polopt_lpi_advantages(&est, N, H, NULL, act, polopt_linear_reward, &task, base, A));
        for (i = 0; i < N; ++i) {
            double g = 0.0;
            c = i / PER;
            for (a = 0; a < P; ++a) g = b ? (r[c][a] > g ? r[c][a] : g) : g + mu[c][a] * r[c][a];
            CHECK_NEAR(A[i], r[c][act[i]] - g, 2e-6);
        }
        for (k = 0; k < 3; ++k) {
            polopt_policy pi;
            polopt_trainer tr;
            polopt_trainer_config tc = polopt_trainer_config_default();
            polopt_logged_returns lr;
            polopt_dataset d;
            double worst = 0.0;
            size_t e;
            CHECK_OK(polopt_lpi_weights(N, A, betas[k], w, NULL));
            memcpy(ret, w, sizeof ret);
            lr.action = act, lr.ret = ret, lr.propensity = NULL;
            memset(&d, 0, sizeof d);
            d.n = N, d.X = X, d.ldx = C, d.returns = &lr;
            pc.init = POLOPT_INIT_RANDOM;
            pc.init_scale = 0.01f;
            CHECK_OK(polopt_policy_init(&pi, &pc));
            tc.estimator.method = POLOPT_METHOD_EXACT;
            tc.estimator.batch = N; /* full batch: the optimum of the whole sum, not of a minibatch's */
            tc.correction.kind = POLOPT_CORRECTION_NONE;
            tc.adam.lr = 0.05f;
            CHECK_OK(polopt_trainer_init(&tr, &pi, &index, &tc));
            for (e = 0; e < 2400; ++e) {
                if (e == 1200 || e == 1800 || e == 2200) tr.adam.config.lr *= 0.1f;
                CHECK_OK(polopt_trainer_epoch(&tr, &d, NULL));
            }
            for (c = 0; c < C; ++c) {
                double logit[P], got[P], want[P], Z = 0.0, tv = 0.0;
                for (a = 0; a < P; ++a) logit[a] = pi.theta[c * P + a];
                softmax_d(P, logit, got);
                for (a = 0; a < P; ++a) {
                    /* every logged (c, a) has the same A, so its weights sum to count * exp(A / beta_kl) */
                    double g = 0.0, Aa;
                    size_t bb;
                    for (bb = 0; bb < P; ++bb) g = b ? (r[c][bb] > g ? r[c][bb] : g) : g + mu[c][bb] * r[c][bb];
                    Aa = r[c][a] - g;
                    Z += (want[a] = count[c][a] * exp(Aa / betas[k]));
                }
                for (a = 0; a < P; ++a) tv += 0.5 * fabs(got[a] - want[a] / Z);
                worst = tv > worst ? tv : worst;
            }
            printf("    %s baseline, beta_kl = %.1f: total variation from the closed form %.2g\n", b ? "max" : "mean",
                   (double)betas[k], worst);
            if (!(worst <= 0.003))
                th_fail(__FILE__, __LINE__, "baseline %lu, beta_kl = %g: total variation %.4f from the closed form",
                        (unsigned long)b, (double)betas[k], worst);
            polopt_trainer_free(&tr);
            polopt_policy_free(&pi);
        }
    }
    polopt_estimator_free(&est);
    polopt_policy_free(&mu_pol);
    polopt_mips_free(&index);
}

/* The LPI weights against exp(A / beta_kl); an overflowing weight, a NaN advantage or a bad beta_kl is an error that
   leaves the output untouched; the MAX baseline needs an EXACT estimator; actions out of range are rejected. */
static void lpi_weights_and_bad_input(void)
{
    const float A[4] = {0.0f, -1.0f, 0.5f, -30.0f};
    float w[4], keep[4] = {7.0f, 7.0f, 7.0f, 7.0f}, big[2] = {0.0f, 1.0f}, nan_a[2] = {0.0f, NAN};
    float beta[6 * 2], H[2 * 2] = {0.1f, 0.2f, 0.3f, 0.4f}, out[2];
    uint32_t act[2] = {0, 6};
    polopt_mips index;
    polopt_estimator est;
    size_t i;
    CHECK_OK(polopt_lpi_weights(4, A, 0.5f, w, NULL));
    for (i = 0; i < 4; ++i) CHECK_NEAR(w[i], exp(A[i] / 0.5), 1e-6 * exp(A[i] / 0.5));
    memcpy(w, keep, sizeof w);
    CHECK_RC(polopt_lpi_weights(2, big, 0.001f, w, NULL), POLOPT_ERR_DOMAIN); /* exp(1000) */
    CHECK_RC(polopt_lpi_weights(2, nan_a, 1.0f, w, NULL), POLOPT_ERR_NONFINITE);
    CHECK_RC(polopt_lpi_weights(2, big, 0.0f, w, NULL), POLOPT_ERR_DOMAIN);
    CHECK_RC(polopt_lpi_weights(2, big, NAN, w, NULL), POLOPT_ERR_DOMAIN);
    CHECK_RC(polopt_lpi_weights(2, NULL, 1.0f, w, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK(memcmp(w, keep, sizeof w) == 0);
    for (i = 0; i < 12; ++i) beta[i] = (float)i / 12.0f;
    CHECK_OK(polopt_mips_init_exact(&index, 6, 2, beta, 0, NULL));
    {
        polopt_estimator_config ec = polopt_estimator_config_default(); /* SNIS */
        ec.K = 4, ec.S = 16;
        CHECK_OK(polopt_estimator_init(&est, &index, &ec));
    }
    {
        float U[2 * 2] = {1, 0, 0, 1};
        polopt_linear_task task;
        task.U = U, task.items = beta, task.n = 2, task.P = 6, task.L = 2, task.bias = 0.0f;
        CHECK_RC(polopt_lpi_advantages(&est, 2, H, NULL, act, polopt_linear_reward, &task, POLOPT_LPI_MAX, out),
                 POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_lpi_advantages(&est, 2, H, NULL, act, polopt_linear_reward, &task, POLOPT_LPI_MEAN, out),
                 POLOPT_ERR_INVALID_ARG); /* action 6 of 6 */
        act[1] = 5;
        CHECK_RC(polopt_lpi_advantages(&est, 2, H, NULL, act, NULL, &task, POLOPT_LPI_MEAN, out),
                 POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_lpi_advantages(&est, 2, H, NULL, act, polopt_linear_reward, NULL, POLOPT_LPI_MEAN, out),
                 POLOPT_ERR_INVALID_ARG); /* the callback's own error, passed on */
        CHECK_OK(polopt_lpi_advantages(&est, 2, H, NULL, act, polopt_linear_reward, &task, POLOPT_LPI_MEAN, out));
    }
    polopt_estimator_free(&est);
    CHECK_RC(polopt_lpi_advantages(&est, 1, H, NULL, act, polopt_linear_reward, NULL, POLOPT_LPI_MEAN, out),
             POLOPT_ERR_INVALID_ARG); /* freed: not ready */
    polopt_mips_free(&index);
}

/* KL and JS of two random policies over P = 50 items, exactly (config NULL: EXACT), against the sums over all P in
   double: within 1e-5 (the scores are single precision, relative 1e-7, and pi ~ 1/50).  KL(p || p) = JS(p || p) = 0;
   JS of two far-apart policies stays in [0, ln 2]. */
static void lpi_divergence_exact(void)
{
    enum { P = 50, L = 8, N = 12 };
    polopt_rng rng;
    float beta[P * L], X[N * L];
    double pd[P], qd[P], kl = 0.0, js = 0.0, k1, j1;
    polopt_policy p, q, far;
    polopt_mips index;
    polopt_divergence dv;
    size_t i;
    polopt_rng_seed(&rng, 5);
    polopt_rng_normals(&rng, P * L, beta);
    polopt_rng_normals(&rng, N * L, X);
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    random_policy(&p, L, 1.0f, 1);
    random_policy(&q, L, 1.0f, 2);
    random_policy(&far, L, 30.0f, 3);
    for (i = 0; i < N; ++i) {
        policy_pi(&p, beta, P, X + i * L, pd);
        policy_pi(&q, beta, P, X + i * L, qd);
        kl_js_d(P, pd, qd, &k1, &j1);
        kl += k1 / N, js += j1 / N;
    }
    CHECK_OK(polopt_policy_divergence(&p, &q, &index, NULL, N, X, L, &dv));
    CHECK_NEAR(dv.kl, kl, 1e-5);
    CHECK_NEAR(dv.js, js, 1e-5);
    CHECK(dv.n == N && dv.kl_se > 0.0 && dv.js_se > 0.0);
    CHECK(kl > 0.05); /* the two policies do differ */
    CHECK_OK(polopt_policy_divergence(&p, &p, &index, NULL, N, X, L, &dv));
    CHECK_NEAR(dv.kl, 0.0, 1e-6);
    CHECK_NEAR(dv.js, 0.0, 1e-6);
    CHECK_OK(polopt_policy_divergence(&far, &p, &index, NULL, N, X, L, &dv));
    CHECK(dv.js >= 0.0 && dv.js <= log(2.0) + 1e-6 && dv.js > 0.3);
    CHECK_RC(polopt_policy_divergence(&p, &q, &index, NULL, N, X, L - 1, &dv), POLOPT_ERR_INVALID_ARG); /* ldx < D */
    polopt_policy_free(&p);
    polopt_policy_free(&q);
    polopt_policy_free(&far);
    polopt_mips_free(&index);
}

/* Per context, the SNIS estimate of KL and JS (eps-mixture around the top 64, eps = 0.5) of two policies over a
   4000-item catalogue converges to the exact value (EXACT estimators).  Over 128 contexts the mean absolute error falls
   at least fivefold from S = 32 to S = 2048 (the 1/sqrt(S) rate gives eightfold; measured 8.5 for KL, 8.6 for JS) and
   at S = 2048 is below 6% of the mean value (measured 4.1% and 3.7%); the mean over the contexts, where the errors
   average out, is within 1% (measured 0.2%); polopt_policy_divergence's means agree with the per-context ones. */
static void lpi_divergence_snis_converges(void)
{
    enum { P = 4000, L = 16, N = 128, B = 32 };
    static const size_t S_values[3] = {32, 256, 2048};
    polopt_rng rng;
    float *beta = (float *)malloc(P * L * sizeof(float)), X[N * L], Hp[N * L], Hq[N * L];
    double kl_x[N], js_x[N], mean_kl = 0.0, mean_js = 0.0, err_kl[3], err_js[3], sum_kl[3];
    polopt_policy p, q;
    polopt_mips index;
    polopt_estimator xp, xq;
    polopt_divergence dv;
    polopt_estimator_config ec = polopt_estimator_config_default();
    size_t k, i0, c;
    polopt_rng_seed(&rng, 9);
    polopt_rng_normals(&rng, P * L, beta);
    polopt_rng_normals(&rng, N * L, X);
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    random_policy(&p, L, 0.25f, 21);
    random_policy(&q, L, 0.25f, 22);
    CHECK_OK(polopt_policy_embed(&p, N, X, L, Hp));
    CHECK_OK(polopt_policy_embed(&q, N, X, L, Hq));
    ec.method = POLOPT_METHOD_EXACT, ec.batch = B;
    CHECK_OK(polopt_estimator_init(&xp, &index, &ec));
    CHECK_OK(polopt_estimator_init(&xq, &index, &ec));
    for (i0 = 0; i0 < N; i0 += B) {
        CHECK_OK(polopt_estimator_set(&xp, B, Hp + i0 * L, NULL));
        CHECK_OK(polopt_estimator_set(&xq, B, Hq + i0 * L, NULL));
        for (c = 0; c < B; ++c) {
            CHECK_OK(polopt_estimator_divergence(&xp, &xq, c, kl_x + i0 + c, js_x + i0 + c));
            mean_kl += kl_x[i0 + c] / N, mean_js += js_x[i0 + c] / N;
        }
    }
    polopt_estimator_free(&xp);
    polopt_estimator_free(&xq);
    ec.method = POLOPT_METHOD_SNIS, ec.K = 64, ec.epsilon = 0.5f;
    for (k = 0; k < 3; ++k) {
        ec.S = S_values[k];
        ec.seed = 3;
        CHECK_OK(polopt_estimator_init(&xp, &index, &ec));
        ec.seed = 4;
        CHECK_OK(polopt_estimator_init(&xq, &index, &ec));
        err_kl[k] = err_js[k] = sum_kl[k] = 0.0;
        for (i0 = 0; i0 < N; i0 += B) {
            CHECK_OK(polopt_estimator_set(&xp, B, Hp + i0 * L, NULL));
            CHECK_OK(polopt_estimator_set(&xq, B, Hq + i0 * L, NULL));
            for (c = 0; c < B; ++c) {
                double kl, js;
                CHECK_OK(polopt_estimator_divergence(&xp, &xq, c, &kl, &js));
                err_kl[k] += fabs(kl - kl_x[i0 + c]) / N, err_js[k] += fabs(js - js_x[i0 + c]) / N;
                sum_kl[k] += kl / N;
            }
        }
        polopt_estimator_free(&xp);
        polopt_estimator_free(&xq);
        printf("    S = %4lu: mean |KL error| %.4f (mean KL %.4f), mean |JS error| %.4f (mean JS %.4f)\n",
               (unsigned long)ec.S, err_kl[k], mean_kl, err_js[k], mean_js);
    }
    CHECK(mean_kl > 0.3 && mean_js > 0.05);
    CHECK(err_kl[2] < 0.06 * mean_kl && err_js[2] < 0.06 * mean_js);
    CHECK(err_kl[2] * 5.0 < err_kl[0] && err_js[2] * 5.0 < err_js[0]);
    CHECK_NEAR(sum_kl[2], mean_kl, 0.01 * mean_kl);
    ec.seed = 3;
    CHECK_OK(polopt_policy_divergence(&p, &q, &index, &ec, N, X, L, &dv)); /* the same draws as the loop's last S */
    CHECK_NEAR(dv.kl, sum_kl[2], 1e-9 + 1e-6 * sum_kl[2]);
    CHECK_OK(polopt_policy_divergence(&p, &q, &index, NULL, N, X, L, &dv));
    CHECK_NEAR(dv.kl, mean_kl, 1e-9 + 1e-6 * mean_kl);
    CHECK_NEAR(dv.js, mean_js, 1e-9 + 1e-6 * mean_js);
    polopt_policy_free(&p);
    polopt_policy_free(&q);
    polopt_mips_free(&index);
    free(beta);
}

/* mu_hat by maximum likelihood (plain cross-entropy: ret = 1, no correction) on 3000 actions logged by a known linear
   softmax mu over 3000 items: trained through SNIS (eps-mixture, S = 256) it ends as close to mu, in exact
   KL(mu || mu_hat) on held-out contexts, as the same training through the exact gradient (within 25% + 0.01), and much
   closer than where it started. */
static void lpi_mu_hat_by_maximum_likelihood(void)
{
    enum { P = 3000, L = 16, N = 3000, T = 200 };
    polopt_rng rng;
    float *beta = (float *)malloc(P * L * sizeof(float)), *X = (float *)malloc((N + T) * L * sizeof(float));
    float *ones = (float *)malloc(N * sizeof(float)), *pif = (float *)malloc(P * sizeof(float));
    double *pd = (double *)malloc(P * sizeof(double));
    uint32_t *act = (uint32_t *)malloc(N * sizeof(uint32_t));
    polopt_policy mu, fit[2];
    polopt_mips index;
    polopt_divergence start, end[2];
    polopt_logged_returns lr;
    polopt_dataset d;
    size_t i, a, m;
    polopt_rng_seed(&rng, 17);
    polopt_rng_normals(&rng, P * L, beta);
    polopt_rng_normals(&rng, (N + T) * L, X);
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    random_policy(&mu, L, 0.7f, 40);
    for (i = 0; i < N; ++i) {
        policy_pi(&mu, beta, P, X + i * L, pd);
        for (a = 0; a < P; ++a) pif[a] = (float)pd[a];
        CHECK_OK(polopt_rng_categorical(&rng, P, pif, act + i));
        ones[i] = 1.0f;
    }
    lr.action = act, lr.ret = ones, lr.propensity = NULL;
    memset(&d, 0, sizeof d);
    d.n = N, d.X = X, d.ldx = L, d.returns = &lr;
    for (m = 0; m < 2; ++m) {
        polopt_trainer tr;
        polopt_trainer_config tc = polopt_trainer_config_default();
        size_t e;
        random_policy(&fit[m], L, 0.1f, 41);
        if (m == 0) CHECK_OK(polopt_policy_divergence(&mu, &fit[m], &index, NULL, T, X + N * L, L, &start));
        tc.estimator.method = m ? POLOPT_METHOD_EXACT : POLOPT_METHOD_SNIS;
        tc.estimator.K = 64, tc.estimator.S = 256, tc.estimator.epsilon = 0.5f;
        tc.correction.kind = POLOPT_CORRECTION_NONE;
        tc.adam.lr = 0.01f;
        CHECK_OK(polopt_trainer_init(&tr, &fit[m], &index, &tc));
        for (e = 0; e < 6; ++e) CHECK_OK(polopt_trainer_epoch(&tr, &d, NULL));
        polopt_trainer_free(&tr);
        CHECK_OK(polopt_policy_divergence(&mu, &fit[m], &index, NULL, T, X + N * L, L, &end[m]));
    }
    printf("    KL(mu || mu_hat) on held-out contexts: start %.4f, SNIS %.4f, exact %.4f\n", start.kl, end[0].kl,
               end[1].kl);
    CHECK(end[0].kl <= 1.25 * end[1].kl + 0.01);
    CHECK(end[0].kl < 0.25 * start.kl);
    polopt_policy_free(&mu);
    polopt_policy_free(&fit[0]);
    polopt_policy_free(&fit[1]);
    polopt_mips_free(&index);
    free(beta), free(X), free(ones), free(pif), free(pd), free(act);
}

/* AR@1 and iAR@1 through polopt_evaluate (greedy action by exact MIPS) against counts made here: AR@1 = mean r_i
   1[a_i = argmax], iAR@1 = mean r_hat(i, argmax) with a linear reward model; their standard errors against the
   sample formula. */
static void lpi_ar1_and_iar1(void)
{
    enum { P = 40, L = 6, N = 64 };
    polopt_rng rng;
    float beta[P * L], X[N * L], U[N * L], rew[N], h[L];
    uint32_t act[N];
    polopt_policy p;
    polopt_mips index;
    polopt_mips_scratch scratch;
    polopt_action_task at;
    polopt_linear_task lt;
    polopt_dataset d;
    polopt_eval ev;
    double ar = 0.0, ar2 = 0.0, iar = 0.0, iar2 = 0.0, se;
    size_t i, a, j;
    polopt_rng_seed(&rng, 23);
    polopt_rng_normals(&rng, P * L, beta);
    polopt_rng_normals(&rng, N * L, X);
    polopt_rng_normals(&rng, N * L, U);
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&scratch, &index, 8, NULL));
    random_policy(&p, L, 1.0f, 7);
    for (i = 0; i < N; ++i) {
        size_t best = 0;
        double bs = -INFINITY, ri;
        CHECK_OK(polopt_policy_embed(&p, 1, X + i * L, L, h));
        for (a = 0; a < P; ++a) {
            double s = 0.0;
            for (j = 0; j < L; ++j) s += (double)h[j] * beta[a * L + j];
            if (s > bs) bs = s, best = a;
        }
        act[i] = (uint32_t)(i % 3 == 0 ? best : polopt_rng_below(&rng, P)); /* a third logged at the argmax */
        rew[i] = (float)polopt_rng_uniform(&rng);
        ri = act[i] == best ? rew[i] : 0.0;
        ar += ri, ar2 += ri * ri;
        for (ri = 0.0, j = 0; j < L; ++j) ri += (double)U[i * L + j] * beta[best * L + j];
        iar += ri, iar2 += ri * ri;
    }
    at.action = act, at.reward = rew, at.n = N;
    lt.U = U, lt.items = beta, lt.n = N, lt.P = P, lt.L = L, lt.bias = 0.0f;
    memset(&d, 0, sizeof d);
    d.n = N, d.X = X, d.ldx = L, d.reward = polopt_action_reward, d.reward_user = &at;
    CHECK_OK(polopt_evaluate(&p, &index, &scratch, &d, 1, 8, &ev));
    se = sqrt((ar2 - ar * ar / N) / (N - 1.0) / N);
    CHECK_NEAR(ev.reward, ar / N, 1e-6);
    CHECK_NEAR(ev.reward_se, se, 1e-6);
    CHECK(ar > 0.0);
    d.reward = polopt_linear_reward, d.reward_user = &lt;
    CHECK_OK(polopt_evaluate(&p, &index, &scratch, &d, 1, 8, &ev));
    se = sqrt((iar2 - iar * iar / N) / (N - 1.0) / N);
    CHECK_NEAR(ev.reward, iar / N, 1e-5);
    CHECK_NEAR(ev.reward_se, se, 1e-5);
    lt.n = 3; /* context 3 is past the task's rows: the callback refuses, evaluate passes it on */
    CHECK_RC(polopt_evaluate(&p, &index, &scratch, &d, 1, 8, &ev), POLOPT_ERR_INVALID_ARG);
    polopt_policy_free(&p);
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&index);
}

/* The trainer accepts logged returns without propensities when no correction needs them, and refuses them (with a
   message) when one does. */
static void lpi_trainer_needs_propensities_only_to_correct(void)
{
    enum { P = 10, L = 4, N = 8 };
    float beta[P * L], X[N * L], ret[N];
    uint32_t act[N];
    polopt_policy p;
    polopt_mips index;
    polopt_trainer tr;
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_logged_returns lr;
    polopt_dataset d;
    polopt_rng rng;
    size_t i;
    polopt_rng_seed(&rng, 2);
    polopt_rng_normals(&rng, P * L, beta);
    polopt_rng_normals(&rng, N * L, X);
    for (i = 0; i < N; ++i) act[i] = (uint32_t)i, ret[i] = 1.0f;
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    random_policy(&p, L, 0.1f, 3);
    lr.action = act, lr.ret = ret, lr.propensity = NULL;
    memset(&d, 0, sizeof d);
    d.n = N, d.X = X, d.ldx = L, d.returns = &lr;
    tc.estimator.method = POLOPT_METHOD_EXACT;
    tc.correction.kind = POLOPT_CORRECTION_NONE;
    CHECK_OK(polopt_trainer_init(&tr, &p, &index, &tc));
    CHECK_OK(polopt_trainer_epoch(&tr, &d, NULL));
    polopt_trainer_free(&tr);
    tc.correction.kind = POLOPT_CORRECTION_FIRST_ORDER;
    CHECK_OK(polopt_trainer_init(&tr, &p, &index, &tc));
    CHECK_RC(polopt_trainer_epoch(&tr, &d, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(tr.err.message, "propensities") != NULL);
    polopt_trainer_free(&tr);
    polopt_policy_free(&p);
    polopt_mips_free(&index);
}

/* Every allocation failure of the LPI functions that allocate (the divergence's two estimators and its embeddings;
   the advantages' reward buffer) answers POLOPT_ERR_NO_MEMORY and leaks nothing. */
static polopt_result lpi_alloc_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    enum { P = 30, L = 4, N = 40 };
    float beta[P * L], X[N * L], H[N * L], A[N];
    uint32_t act[N];
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_policy p, q;
    polopt_mips index;
    polopt_estimator est;
    polopt_divergence dv;
    polopt_linear_task task;
    polopt_rng rng;
    polopt_result rc;
    size_t i;
    (void)user;
    polopt_rng_seed(&rng, 1);
    polopt_rng_normals(&rng, P * L, beta);
    polopt_rng_normals(&rng, N * L, X);
    for (i = 0; i < N; ++i) act[i] = (uint32_t)(i % P);
    memset(&p, 0, sizeof p), memset(&q, 0, sizeof q), memset(&est, 0, sizeof est), memset(&index, 0, sizeof index);
    pc.init = POLOPT_INIT_RANDOM, pc.hooks = *hooks;
    ec.K = 8, ec.S = 16, ec.batch = 16, ec.hooks = *hooks;
    if (stage == 2) ec.method = POLOPT_METHOD_EXACT;
    rc = polopt_mips_init_exact(&index, P, L, beta, 1, hooks);
    if (rc == POLOPT_OK) rc = polopt_policy_init(&p, &pc);
    pc.seed = 2;
    if (rc == POLOPT_OK) rc = polopt_policy_init(&q, &pc);
    if (rc == POLOPT_OK && stage < 2) rc = polopt_policy_divergence(&p, &q, &index, stage ? &ec : NULL, N, X, L, &dv);
    if (rc == POLOPT_OK && stage == 2) rc = polopt_estimator_init(&est, &index, &ec);
    if (rc == POLOPT_OK && stage == 2) rc = polopt_policy_embed(&q, N, X, L, H);
    task.U = X, task.items = beta, task.n = N, task.P = P, task.L = L, task.bias = 0.0f;
    if (rc == POLOPT_OK && stage == 2)
        rc = polopt_lpi_advantages(&est, N, H, NULL, act, polopt_linear_reward, &task, POLOPT_LPI_MAX, A);
    polopt_estimator_free(&est);
    polopt_policy_free(&p);
    polopt_policy_free(&q);
    polopt_mips_free(&index);
    return rc;
}

static void lpi_allocation_failures(void)
{
    int stage;
    for (stage = 0; stage < 3; ++stage) CHECK_EACH_ALLOCATION_FAILURE(lpi_alloc_scenario, stage, NULL);
}

const th_test th_suite_lpi[] = {TH(lpi_closed_form_optimum),
                                TH(lpi_weights_and_bad_input),
                                TH(lpi_divergence_exact),
                                TH(lpi_divergence_snis_converges),
                                TH(lpi_mu_hat_by_maximum_likelihood),
                                TH(lpi_ar1_and_iar1),
                                TH(lpi_trainer_needs_propensities_only_to_correct),
                                TH(lpi_allocation_failures),
                                TH_END};
