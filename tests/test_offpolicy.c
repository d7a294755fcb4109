/* The estimator and learning from logged actions, against independent references: the ratio estimate of
   pi(a | x) from Z_hat against its delta-method bias chi2(pi || q) / S (q and pi computed exactly here, in double);
   grad log pi against the exact value as S grows; the preallocated estimator against the allocating one; the
   correction weights and discounted returns against their formulas; the two 10-item simulations of Chen et al.
   (2019) iterated with exact expectations against their closed-form fixed points; training from logged returns
   against the true value of the policy; Boltzmann exploration against the exact distribution of the slate. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static double exact_pi(const th_cat *c, double *pi)
{
    double mx = -INFINITY, Z = 0;
    size_t a, j;
    for (a = 0; a < c->P; ++a) {
        double s = 0;
        for (j = 0; j < c->L; ++j) s += (double)c->h[j] * c->beta[a * c->L + j];
        pi[a] = s;
        mx = s > mx ? s : mx;
    }
    for (a = 0; a < c->P; ++a) Z += (pi[a] = exp(pi[a] - mx));
    for (a = 0; a < c->P; ++a) pi[a] /= Z;
    return mx + log(Z);
}

/* The eps-mixture q of the exact top K, in double: chi2(pi || q) = sum pi^2 / q - 1 (into *chi2, the relative
   variance of one draw's weight pi / q), and, returned, what remains of it when the draws are stratified, eps S from
   the uniform component U and the rest from kappa, as the estimator draws them: eps Var_U(pi / q) + (1 - eps)
   Var_kappa(pi / q) (the law of total variance: chi2 less the spread of the components' means). */
static double mixture_variance(const th_cat *c, const double *pi, size_t K, double eps, double *chi2)
{
    double *q = (double *)malloc(c->P * sizeof(double)), kz = 0, mu = 0, mu2 = 0, mk = 0, mk2 = 0;
    uint32_t *top = (uint32_t *)malloc(K * sizeof(uint32_t));
    float *pf = (float *)malloc(c->P * sizeof(float));
    size_t a, i;
    for (a = 0; a < c->P; ++a) pf[a] = (float)log(pi[a]), q[a] = eps / (double)c->P;
    CHECK_OK(polopt_topk(c->P, pf, K, top, NULL));
    for (i = 0; i < K; ++i) kz += pi[top[i]];
    for (i = 0; i < K; ++i) q[top[i]] += (1.0 - eps) * pi[top[i]] / kz; /* kappa: pi renormalised on the top K */
    for (a = 0; a < c->P; ++a) { /* the uniform component's moments of pi / q */
        mu += pi[a] / q[a] / (double)c->P;
        mu2 += pi[a] * pi[a] / (q[a] * q[a]) / (double)c->P;
    }
    for (i = 0; i < K; ++i) { /* kappa's */
        const double k = pi[top[i]] / kz, u = pi[top[i]] / q[top[i]];
        mk += k * u;
        mk2 += k * u * u;
    }
    *chi2 = eps * mu2 + (1.0 - eps) * mk2 - 1.0;
    free(q), free(top), free(pf);
    return eps * (mu2 - mu * mu) + (1.0 - eps) * (mk2 - mk * mk);
}

/* SNIS's pi_hat(a) = exp f(a) / Z_hat is a ratio estimate, biased upwards by about Var(Z_hat) / Z^2 (the delta
   method: E[Z / Z_hat] - 1 ~ Var(Z_hat) / Z^2), which is chi2(pi || q) / S for independent draws and, for the
   estimator's stratified draws, the within-component variance over S (mixture_variance).  For S = 16, 64, 256 and
   5120 independent estimates each, the mean of pi_hat / pi - 1 for an item outside the top K is within 4.5
   standard errors plus 25% (the second-order terms of the expansion) of that; the bias falls with S; REINFORCE and
   EXACT give log pi exactly. */
static void offpolicy_ratio_bias_follows_delta_method(void)
{
    enum { P = 2000, L = 8, K = 32, B = 256, ROUNDS = 20 };
    static const size_t S_values[3] = {16, 64, 256};
    th_cat c;
    double pi[P], chi2, var_strat, last_bias = INFINITY;
    float *H = (float *)malloc(B * L * sizeof(float)), lp;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    size_t si, r, b, j;
    uint32_t a;
    const int methods[2] = {POLOPT_METHOD_REINFORCE, POLOPT_METHOD_EXACT};
    int m;
    th_cat_make(&c, P, L, 0.9f, 21);
    exact_pi(&c, pi);
    {   /* the item of rank 100: outside the top K, probability large enough to matter */
        float pf[P];
        uint32_t top[100];
        for (j = 0; j < P; ++j) pf[j] = (float)pi[j];
        CHECK_OK(polopt_topk(P, pf, 100, top, NULL));
        a = top[99];
    }
    var_strat = mixture_variance(&c, pi, K, 0.5, &chi2);
    for (b = 0; b < B; ++b) memcpy(H + b * L, c.h, L * sizeof(float));
    for (si = 0; si < 3; ++si) {
        const double S = (double)S_values[si], predicted = var_strat / S;
        double sum = 0, sq = 0, mean, se;
        ec.K = K, ec.S = S_values[si], ec.epsilon = 0.5f, ec.batch = B, ec.seed = 5 + si;
        CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
        for (r = 0; r < ROUNDS; ++r) {
            CHECK_OK(polopt_estimator_set(&est, B, H, NULL));
            for (b = 0; b < B; ++b) {
                double x;
                CHECK_OK(polopt_estimator_log_prob(&est, b, 1, &a, &lp, NULL));
                x = exp((double)lp) / pi[a] - 1.0;
                sum += x, sq += x * x;
            }
        }
        mean = sum / (B * ROUNDS);
        se = sqrt((sq / (B * ROUNDS) - mean * mean) / (B * ROUNDS));
        printf("    S = %4.0f: E[pi_hat / pi] - 1 = %.4f +- %.4f, delta method %.4f (stratified; %.4f for independent "
               "draws, chi2 = %.2f)\n", S, mean, se, predicted, chi2 / S, chi2);
        CHECK(fabs(mean - predicted) <= 4.5 * se + 0.25 * predicted);
        CHECK(mean < last_bias);
        last_bias = mean;
        polopt_estimator_free(&est);
    }
    for (m = 0; m < 2; ++m) { /* the O(P) methods know Z */
        ec = polopt_estimator_config_default();
        ec.method = (polopt_method)methods[m], ec.batch = 1, ec.S = 4;
        CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
        CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
        CHECK_OK(polopt_estimator_log_prob(&est, 0, 1, &a, &lp, NULL));
        CHECK_NEAR(lp, log(pi[a]), 2e-5 * fabs(log(pi[a]))); /* float scores and sums over 2000 items */
        polopt_estimator_free(&est);
    }
    free(H);
    th_cat_free(&c);
}

/* grad_h log pi(a) = beta_a - E_pi beta: the SNIS estimate's mean relative error against the exact value falls
   like 1 / sqrt(S) (from S = 64 to 1024: a factor of 4, accepted in [2.5, 6.5]), and is below 0.1 at S = 4096. */
static void offpolicy_grad_log_pi_converges(void)
{
    enum { P = 3000, L = 8, REPS = 64 };
    static const size_t S_values[3] = {64, 1024, 4096};
    th_cat c;
    double pi[P], exact[L], err[3];
    float g[L];
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    size_t si, r, j, a;
    const uint32_t act = 17;
    th_cat_make(&c, P, L, 0.8f, 33);
    exact_pi(&c, pi);
    for (j = 0; j < L; ++j) {
        double bb = 0;
        for (a = 0; a < P; ++a) bb += pi[a] * c.beta[a * L + j];
        exact[j] = c.beta[act * L + j] - bb;
    }
    for (si = 0; si < 3; ++si) {
        ec.K = 64, ec.S = S_values[si], ec.epsilon = 0.5f, ec.batch = 1, ec.seed = 9;
        CHECK_OK(polopt_estimator_init(&est, &c.index, &ec));
        err[si] = 0;
        for (r = 0; r < REPS; ++r) {
            double d = 0, n = 0;
            CHECK_OK(polopt_estimator_set(&est, 1, c.h, NULL));
            CHECK_OK(polopt_estimator_log_prob(&est, 0, 1, &act, NULL, g));
            for (j = 0; j < L; ++j) d += (g[j] - exact[j]) * (g[j] - exact[j]), n += exact[j] * exact[j];
            err[si] += sqrt(d / n) / REPS;
        }
        polopt_estimator_free(&est);
    }
    printf("    grad log pi, mean relative error: S = 64 %.4f, S = 1024 %.4f, S = 4096 %.4f\n", err[0], err[1], err[2]);
    CHECK(err[0] / err[1] > 2.5 && err[0] / err[1] < 6.5);
    CHECK(err[2] < 0.1);
    th_cat_free(&c);
}

/* The caller's-memory estimator makes the same draws and gradients as the allocating one, allocates nothing (the
   counting allocator sees no call), refuses a heap one byte short, and every allocation failure of the allocating
   one is clean. */
static polopt_result estimator_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    const th_cat *c = (const th_cat *)user;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_result rc;
    ec.method = (polopt_method)stage, ec.K = 8, ec.S = 50, ec.batch = 2, ec.hooks = *hooks;
    rc = polopt_estimator_init(&est, &c->index, &ec);
    polopt_estimator_free(&est);
    return rc;
}

static void offpolicy_preallocated_estimator(void)
{
    th_cat c;
    int m;
    th_cat_make(&c, 500, 6, 1.0f, 3);
    for (m = 0; m < 3; ++m) {
        polopt_estimator a, b;
        polopt_estimator_config ec = polopt_estimator_config_default();
        th_allocator counter = {-1, 0, 0};
        size_t bytes = 0, s;
        unsigned char *heap;
        float H[12], r[500], ga[6], gb[6];
        polopt_draws da, db;
        memcpy(H, c.h, 6 * sizeof(float));
        memcpy(H + 6, c.beta, 6 * sizeof(float));
        ec.method = (polopt_method)m, ec.K = 8, ec.S = 50, ec.batch = 2, ec.seed = 77;
        CHECK_OK(polopt_estimator_heap_size(&c.index, &ec, &bytes));
        heap = (unsigned char *)malloc(bytes + 1);
        CHECK_OK(polopt_estimator_init(&a, &c.index, &ec));
        ec.hooks.alloc_ctx = &counter;
        CHECK_RC(polopt_estimator_init_preallocated(&b, &c.index, &ec, heap + 1, bytes - 1), POLOPT_ERR_INVALID_ARG);
        CHECK(b.H == NULL && b.err.code == POLOPT_ERR_INVALID_ARG);
        CHECK_OK(polopt_estimator_init_preallocated(&b, &c.index, &ec, heap + 1, bytes)); /* any alignment */
        CHECK_OK(polopt_estimator_set(&a, 2, H, NULL));
        CHECK_OK(polopt_estimator_set(&b, 2, H, NULL));
        CHECK_OK(polopt_estimator_draws(&a, 1, &da));
        CHECK_OK(polopt_estimator_draws(&b, 1, &db));
        CHECK(da.S == db.S && memcmp(da.ids, db.ids, da.S * sizeof(uint32_t)) == 0 &&
              memcmp(da.weights, db.weights, da.S * sizeof(float)) == 0);
        for (s = 0; s < da.S; ++s) r[s] = (float)(da.ids[s] % 7);
        CHECK_OK(polopt_estimator_gradient(&a, 1, r, ga, NULL));
        CHECK_OK(polopt_estimator_gradient(&b, 1, r, gb, NULL));
        CHECK(memcmp(ga, gb, sizeof ga) == 0);
        CHECK(counter.calls == 0);
        polopt_estimator_free(&b);
        polopt_estimator_free(&b); /* twice: harmless */
        CHECK_RC(polopt_estimator_set(&b, 1, H, NULL), POLOPT_ERR_INVALID_ARG); /* freed: zeroed */
        polopt_estimator_free(&a);
        free(heap);
        CHECK_EACH_ALLOCATION_FAILURE(estimator_scenario, m, &c);
    }
    {   /* bad arguments leave a clear message */
        polopt_estimator e;
        polopt_estimator_config ec = polopt_estimator_config_default();
        float nan_h[6] = {0, 0, NAN, 0, 0, 0};
        ec.K = 501;
        CHECK_RC(polopt_estimator_init(&e, &c.index, &ec), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(e.err.message, "config.K") != NULL);
        ec.K = 8, ec.batch = 1;
        CHECK_OK(polopt_estimator_init(&e, &c.index, &ec));
        CHECK_RC(polopt_estimator_set(&e, 2, c.h, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_estimator_set(&e, 1, nan_h, NULL), POLOPT_ERR_NONFINITE);
        CHECK(strstr(e.err.message, "H[0][2]") != NULL);
        polopt_estimator_free(&e);
    }
    th_cat_free(&c);
}

static char last_message[POLOPT_ERROR_MESSAGE_SIZE];
static void keep_message(void *user, polopt_result code, const char *message)
{
    (void)user, (void)code;
    strncpy(last_message, message, sizeof last_message - 1);
}

/* The weights of Chen et al. (2019, Eq. 4 and 7-8) written out, and their argument checks. */
static void offpolicy_correction_weights(void)
{
    const float log_pi[4] = {logf(0.5f), logf(0.01f), 0.0f, logf(0.2f)}, b[4] = {0.25f, 0.1f, 0.5f, 0.01f};
    float w[4];
    polopt_correction_config c = polopt_correction_config_default();
    size_t i;
    c.kind = POLOPT_CORRECTION_NONE;
    CHECK_OK(polopt_correction_weights(&c, 4, log_pi, b, w, NULL));
    for (i = 0; i < 4; ++i) CHECK(w[i] == 1.0f);
    c.kind = POLOPT_CORRECTION_FIRST_ORDER;
    CHECK_OK(polopt_correction_weights(&c, 4, log_pi, b, w, NULL));
    for (i = 0; i < 4; ++i) CHECK_NEAR(w[i], exp(log_pi[i]) / b[i], 1e-6 * exp(log_pi[i]) / b[i]);
    c.kind = POLOPT_CORRECTION_TOP_K, c.K = 1; /* K = 1: the first-order weight */
    CHECK_OK(polopt_correction_weights(&c, 4, log_pi, b, w, NULL));
    for (i = 0; i < 4; ++i) CHECK_NEAR(w[i], exp(log_pi[i]) / b[i], 1e-6 * exp(log_pi[i]) / b[i]);
    c.K = 5;
    CHECK_OK(polopt_correction_weights(&c, 4, log_pi, b, w, NULL));
    for (i = 0; i < 4; ++i) {
        const double p = exp(log_pi[i]), want = p / b[i] * 5.0 * pow(1.0 - p, 4.0);
        CHECK_NEAR(w[i], want, 1e-5 * (want + 1e-30));
    }
    CHECK(w[2] == 0.0f); /* pi = 1: the item is in every slate already */
    c.cap = 3.0f;        /* min(pi / b, 3) lambda_K: item 3 has pi / b = 20 */
    CHECK_OK(polopt_correction_weights(&c, 4, log_pi, b, w, NULL));
    CHECK_NEAR(w[3], 3.0 * 5.0 * pow(0.8, 4.0), 1e-5);
    {
        const float bad_b[1] = {0.0f}, bad_lp[1] = {0.1f};
        polopt_hooks h;
        memset(&h, 0, sizeof h);
        h.log = keep_message;
        CHECK_RC(polopt_correction_weights(&c, 1, log_pi, bad_b, w, &h), POLOPT_ERR_DOMAIN);
        CHECK(strstr(last_message, "entry 0") != NULL && strstr(last_message, "b = 0") != NULL);
        CHECK_RC(polopt_correction_weights(&c, 1, bad_lp, b, w, NULL), POLOPT_ERR_DOMAIN);
        c.K = 0;
        CHECK_RC(polopt_correction_weights(&c, 1, log_pi, b, w, NULL), POLOPT_ERR_INVALID_ARG);
    }
}

static void offpolicy_discounted_returns(void)
{
    const uint32_t traj[6] = {4, 4, 4, 9, 9, 2};
    const float r[6] = {1, 0, 2, 3, 1, 5};
    float R[6];
    CHECK_OK(polopt_discounted_returns(6, traj, r, 0.5f, R, NULL));
    CHECK_NEAR(R[0], 1 + 0.5 * (0 + 0.5 * 2), 1e-6);
    CHECK_NEAR(R[1], 0 + 0.5 * 2, 1e-6);
    CHECK_NEAR(R[2], 2, 1e-6);
    CHECK_NEAR(R[3], 3 + 0.5 * 1, 1e-6);
    CHECK_NEAR(R[4], 1, 1e-6);
    CHECK_NEAR(R[5], 5, 1e-6);
    memcpy(R, r, sizeof R); /* in place, gamma = 1: suffix sums */
    CHECK_OK(polopt_discounted_returns(6, traj, R, 1.0f, R, NULL));
    CHECK_NEAR(R[0], 3, 1e-6);
    CHECK_RC(polopt_discounted_returns(6, traj, r, 1.5f, R, NULL), POLOPT_ERR_DOMAIN);
}

/* The two 10-item simulations of Chen et al. (2019, §6.1), free logits (beta = I, T = 1, so grad_h log pi(a_j) =
   e_j - pi), SGD on the exact expected update sum_j b_j w_j r_j grad log pi(a_j), with the library's estimator
   (EXACT) and weights.  The fixed points in closed form: without correction pi ~ r b; with the first-order
   correction the best item; with the top-K correction (K = 2, r = 10, 9, 1, ...) the stationary point has
   lambda_K(pi_1) r_1 = lambda_K(pi_2) r_2 and the others at 0: pi_1 = 20/38, pi_2 = 18/38. */
static void simulate(const float *r, const float *b, polopt_correction kind, size_t K, size_t iters, double *pi)
{ /* SGD step 0.05: small enough that the iteration follows the expected flow instead of oscillating around it */
    float beta[100], theta[10], lp[10], grad[100], w[10];
    const uint32_t all[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    polopt_mips ix;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_correction_config cc = polopt_correction_config_default();
    size_t i, j, t;
    memset(beta, 0, sizeof beta);
    for (i = 0; i < 10; ++i) beta[i * 10 + i] = 1.0f, theta[i] = 0.0f;
    CHECK_OK(polopt_mips_init_exact(&ix, 10, 10, beta, 0, NULL));
    ec.method = POLOPT_METHOD_EXACT, ec.batch = 1;
    CHECK_OK(polopt_estimator_init(&est, &ix, &ec));
    cc.kind = kind, cc.K = K;
    for (t = 0; t < iters; ++t) {
        CHECK_OK(polopt_estimator_set(&est, 1, theta, NULL));
        CHECK_OK(polopt_estimator_log_prob(&est, 0, 10, all, lp, grad));
        CHECK_OK(polopt_correction_weights(&cc, 10, lp, b, w, NULL));
        for (j = 0; j < 10; ++j)
            for (i = 0; i < 10; ++i) theta[i] += 0.05f * b[j] * w[j] * r[j] * grad[j * 10 + i];
    }
    CHECK_OK(polopt_estimator_set(&est, 1, theta, NULL));
    CHECK_OK(polopt_estimator_log_prob(&est, 0, 10, all, lp, NULL));
    for (i = 0; i < 10; ++i) pi[i] = exp(lp[i]);
    polopt_estimator_free(&est);
    polopt_mips_free(&ix);
}

static void offpolicy_topk_simulations(void)
{
    float r1[10], b1[10], r2[10], b2[10];
    double pi[10], rb[10], Z = 0;
    size_t i;
    for (i = 0; i < 10; ++i) {
        r1[i] = (float)(i + 1), b1[i] = (float)(10 - i) / 55.0f; /* behaviour skewed to the low rewards */
        r2[i] = i == 0 ? 10.0f : i == 1 ? 9.0f : 1.0f, b2[i] = 0.1f;
        Z += (rb[i] = (double)r1[i] * b1[i]);
    }
    simulate(r1, b1, POLOPT_CORRECTION_NONE, 1, 5000, pi);
    printf("    simulation 1, no correction: pi(a_1..a_10) =");
    for (i = 0; i < 10; ++i) printf(" %.3f", pi[i]);
    printf("\n      (r b normalised:                    ");
    for (i = 0; i < 10; ++i) printf(" %.3f", rb[i] / Z);
    printf(")\n");
    for (i = 0; i < 10; ++i) CHECK_NEAR(pi[i], rb[i] / Z, 2e-3);
    simulate(r1, b1, POLOPT_CORRECTION_FIRST_ORDER, 1, 20000, pi);
    printf("    simulation 1, first-order correction: pi(a_10) = %.4f\n", pi[9]);
    CHECK(pi[9] > 0.98);
    simulate(r2, b2, POLOPT_CORRECTION_FIRST_ORDER, 1, 20000, pi);
    printf("    simulation 2, first-order correction: pi(a_1) = %.4f, pi(a_2) = %.4f\n", pi[0], pi[1]);
    CHECK(pi[0] > 0.97);
    simulate(r2, b2, POLOPT_CORRECTION_TOP_K, 2, 20000, pi);
    printf("    simulation 2, top-K correction (K = 2): pi(a_1) = %.4f, pi(a_2) = %.4f (fixed point %.4f, %.4f)\n",
           pi[0], pi[1], 20.0 / 38.0, 18.0 / 38.0);
    CHECK_NEAR(pi[0], 20.0 / 38.0, 0.02);
    CHECK_NEAR(pi[1], 18.0 / 38.0, 0.02);
    CHECK(pi[0] > pi[1]);
}

/* Training from logged returns, end to end: 60 items, contexts in 8 dims, a reward probability table, and a
   behaviour policy that prefers the items with low reward.  With known propensities, the first-order and top-K
   corrected trainers reach a higher true value (exact, over all items) than REINFORCE on the raw log, which
   follows the behaviour's bias; a learned behaviour head b_hat recovers b (mean |log b_hat - log b| over the
   logged actions below 0.25) and trains almost as well; normalised weights and the KL penalty stay finite. */
typedef struct logged_task {
    size_t P, L, n;
    float *beta, *X, *prob, *beh_logit;
} logged_task;

static polopt_result prob_reward(void *user, uint32_t ctx, size_t n, const uint32_t *items, float *out)
{
    const logged_task *t = (const logged_task *)user;
    size_t s;
    for (s = 0; s < n; ++s) out[s] = t->prob[(size_t)ctx * t->P + items[s]];
    return POLOPT_OK;
}

static double train_logged_seed(const logged_task *t, polopt_mips *ix, const polopt_dataset *logged,
                                polopt_correction kind, int learn, float kl, int normalise, double *b_err,
                                uint64_t seed)
{
    polopt_policy pol;
    polopt_policy_config pc = polopt_policy_config_default(t->L, t->L);
    polopt_trainer tr;
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_dataset truth;
    double v = -1;
    int e;
    pc.init_scale = 0.0f, pc.init = POLOPT_INIT_RANDOM;
    CHECK_OK(polopt_policy_init(&pol, &pc));
    tc.estimator.K = 16, tc.estimator.S = 200, tc.estimator.epsilon = 0.5f, tc.estimator.seed = seed;
    tc.adam.lr = 0.05f;
    tc.correction.kind = kind, tc.correction.K = 4, tc.correction.cap = 50.0f, tc.correction.kl = kl;
    tc.correction.normalise = normalise;
    tc.learn_behaviour = learn, tc.behaviour_adam.lr = 0.01f;
    CHECK_OK(polopt_trainer_init(&tr, &pol, ix, &tc));
    for (e = 0; e < 15; ++e) CHECK_OK(polopt_trainer_epoch(&tr, logged, NULL));
    truth.n = t->n, truth.X = t->X, truth.ldx = t->L, truth.reward = prob_reward, truth.reward_user = (void *)t;
    truth.relevant = NULL, truth.feedback = NULL, truth.returns = NULL;
    CHECK_OK(polopt_policy_value(&pol, ix, &truth, &v));
    if (b_err && learn) { /* b_hat against b on the logged actions */
        float h[8];
        double err = 0;
        size_t i, a;
        for (i = 0; i < t->n; ++i) {
            double mx = -INFINITY, Z = 0, lb, f = 0, z2 = 0, mx2 = -INFINITY;
            const uint32_t act = logged->returns->action[i];
            CHECK_OK(polopt_policy_embed(&tr.behaviour, 1, t->X + i * t->L, t->L, h));
            for (a = 0; a < t->P; ++a) {
                double s = 0;
                size_t j;
                for (j = 0; j < t->L; ++j) s += (double)h[j] * t->beta[a * t->L + j];
                if (a == act) f = s;
                mx = s > mx ? s : mx;
                mx2 = t->beh_logit[i * t->P + a] > mx2 ? t->beh_logit[i * t->P + a] : mx2;
            }
            for (a = 0; a < t->P; ++a) {
                double s = 0;
                size_t j;
                for (j = 0; j < t->L; ++j) s += (double)h[j] * t->beta[a * t->L + j];
                Z += exp(s - mx);
                z2 += exp(t->beh_logit[i * t->P + a] - mx2);
            }
            lb = f - mx - log(Z);
            err += fabs(lb - (t->beh_logit[i * t->P + act] - mx2 - log(z2))) / (double)t->n;
        }
        *b_err = err;
    }
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    return v;
}

static double train_logged(const logged_task *t, polopt_mips *ix, const polopt_dataset *logged,
                           polopt_correction kind, int learn, float kl, int normalise, double *b_err)
{
    return train_logged_seed(t, ix, logged, kind, learn, kl, normalise, b_err, 3);
}

/* Every allocation failure of a trainer with a behaviour head and warm starts, through its first epoch on logged
   returns without propensities (the top-K caches of pi and b_hat are allocated there), is clean. */
static polopt_result trainer_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    const polopt_dataset *logged = (const polopt_dataset *)user;
    polopt_mips ix;
    polopt_policy pol;
    polopt_policy_config pc = polopt_policy_config_default(8, 8);
    polopt_trainer tr;
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_dataset d = *logged;
    polopt_result rc;
    (void)stage;
    d.n = 64;
    pc.hooks = *hooks;
    tc.estimator.K = 8, tc.estimator.S = 16, tc.warm_start = 1, tc.learn_behaviour = 1, tc.hooks = *hooks;
    memset(&tr, 0, sizeof tr);
    memset(&pol, 0, sizeof pol);
    rc = polopt_mips_init_exact(&ix, 60, 8, logged->X, 0, hooks); /* any 60 rows of 8 floats serve as items */
    if (rc == POLOPT_OK) rc = polopt_policy_init(&pol, &pc);
    if (rc == POLOPT_OK) rc = polopt_trainer_init(&tr, &pol, &ix, &tc);
    if (rc == POLOPT_OK) rc = polopt_trainer_epoch(&tr, &d, NULL);
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    polopt_mips_free(&ix);
    return rc;
}

static void offpolicy_training_from_logged_returns(void)
{
    logged_task t;
    polopt_mips ix;
    polopt_rng rng;
    polopt_logged_returns lr, lr_unknown;
    polopt_dataset logged;
    uint32_t *act;
    float *ret, *prop;
    double v_none, v_first, v_topk, v_learned, v_extra, b_err = 1e9, v_behaviour = 0;
    size_t i, a, j;
    t.P = 60, t.L = 8, t.n = 3000;
    t.beta = (float *)malloc(t.P * t.L * sizeof(float));
    t.X = (float *)malloc(t.n * t.L * sizeof(float));
    t.prob = (float *)malloc(t.n * t.P * sizeof(float));
    t.beh_logit = (float *)malloc(t.n * t.P * sizeof(float));
    act = (uint32_t *)malloc(t.n * sizeof(uint32_t));
    ret = (float *)malloc(t.n * sizeof(float));
    prop = (float *)malloc(t.n * sizeof(float));
    polopt_rng_seed(&rng, 8);
    polopt_rng_normals(&rng, t.P * t.L, t.beta);
    polopt_rng_normals(&rng, t.n * t.L, t.X);
    for (i = 0; i < t.n; ++i) t.X[i * t.L] = 1.0f; /* a constant feature: theta's first row is a context-free bias */
    for (i = 0; i < t.n; ++i) { /* the reward follows the user's taste x^T beta_a; the behaviour mostly recommends
                                   what is popular, u^T beta_a, whoever the user is */
        double mx = -INFINITY, Z = 0, u, acc = 0;
        for (a = 0; a < t.P; ++a) {
            double s = 0, pop = 0;
            for (j = 1; j < t.L; ++j) s += (double)t.X[i * t.L + j] * t.beta[a * t.L + j];
            for (j = 0; j < t.L; ++j) pop += (j % 2 ? 1.0 : -1.0) * t.beta[a * t.L + j];
            t.prob[i * t.P + a] = (float)(1.0 / (1.0 + exp(-(s - 2.0))));
            t.beh_logit[i * t.P + a] = (float)(0.8 * pop + 0.2 * s);
            mx = t.beh_logit[i * t.P + a] > mx ? t.beh_logit[i * t.P + a] : mx;
        }
        for (a = 0; a < t.P; ++a) Z += exp(t.beh_logit[i * t.P + a] - mx);
        u = polopt_rng_uniform(&rng) * Z;
        for (a = 0; a < t.P - 1 && (acc += exp(t.beh_logit[i * t.P + a] - mx)) < u; ++a) {}
        act[i] = (uint32_t)a;
        prop[i] = (float)(exp(t.beh_logit[i * t.P + a] - mx) / Z);
        ret[i] = polopt_rng_uniform(&rng) < t.prob[i * t.P + a] ? 1.0f : 0.0f;
        for (a = 0; a < t.P; ++a) v_behaviour += exp(t.beh_logit[i * t.P + a] - mx) / Z * t.prob[i * t.P + a] / (double)t.n;
    }
    CHECK_OK(polopt_mips_init_exact(&ix, t.P, t.L, t.beta, 0, NULL));
    lr.action = act, lr.ret = ret, lr.propensity = prop;
    lr_unknown = lr, lr_unknown.propensity = NULL;
    memset(&logged, 0, sizeof logged);
    logged.n = t.n, logged.X = t.X, logged.ldx = t.L, logged.returns = &lr;
    v_none = train_logged(&t, &ix, &logged, POLOPT_CORRECTION_NONE, 0, 0.0f, 0, NULL);
    v_first = train_logged(&t, &ix, &logged, POLOPT_CORRECTION_FIRST_ORDER, 0, 0.0f, 0, NULL);
    /* the top-K objective's 15 epochs at lr 0.05 end anywhere in 0.54-0.66 with the draws (a kernel's rounding
       is enough to move them): its value is the mean of three seeds */
    v_topk = (train_logged_seed(&t, &ix, &logged, POLOPT_CORRECTION_TOP_K, 0, 0.0f, 0, NULL, 3) +
              train_logged_seed(&t, &ix, &logged, POLOPT_CORRECTION_TOP_K, 0, 0.0f, 0, NULL, 4) +
              train_logged_seed(&t, &ix, &logged, POLOPT_CORRECTION_TOP_K, 0, 0.0f, 0, NULL, 5)) /
             3.0;
    logged.returns = &lr_unknown;
    v_learned = train_logged(&t, &ix, &logged, POLOPT_CORRECTION_FIRST_ORDER, 1, 0.0f, 0, &b_err);
    v_extra = train_logged(&t, &ix, &logged, POLOPT_CORRECTION_TOP_K, 1, 0.1f, 1, NULL);
    printf("    logged returns: true value of the behaviour %.4f; trained with no correction %.4f, first-order %.4f, "
           "top-K %.4f (mean of 3 seeds), first-order with b_hat %.4f (mean |log b_hat - log b| %.3f), "
           "top-K + normalised + KL %.4f\n",
           v_behaviour, v_none, v_first, v_topk, v_learned, b_err, v_extra);
    CHECK(v_first > v_none + 0.02);
    CHECK(v_topk > v_none + 0.02);
    CHECK(v_learned > v_none + 0.01);
    CHECK(b_err < 0.25);
    CHECK(v_extra == v_extra && v_extra > v_behaviour);
    CHECK_EACH_ALLOCATION_FAILURE(trainer_scenario, 0, &logged);
    {   /* a dataset that mixes objectives, or lacks propensities without a behaviour head, is refused */
        polopt_policy pol;
        polopt_policy_config pc = polopt_policy_config_default(t.L, t.L);
        polopt_trainer tr;
        CHECK_OK(polopt_policy_init(&pol, &pc));
        polopt_trainer_config tc = polopt_trainer_config_default();
        tc.estimator.K = 16;
        CHECK_OK(polopt_trainer_init(&tr, &pol, &ix, &tc));
        CHECK_RC(polopt_trainer_epoch(&tr, &logged, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(tr.err.message, "learn_behaviour") != NULL);
        logged.returns = &lr, logged.reward = prob_reward;
        CHECK_RC(polopt_trainer_epoch(&tr, &logged, NULL), POLOPT_ERR_INVALID_ARG);
        logged.reward = NULL;
        prop[5] = 0.0f;
        CHECK_RC(polopt_trainer_epoch(&tr, &logged, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(tr.err.message, "logged step 5") != NULL);
        polopt_trainer_free(&tr);
        polopt_policy_free(&pol);
    }
    polopt_mips_free(&ix);
    free(t.beta), free(t.X), free(t.prob), free(t.beh_logit), free(act), free(ret), free(prop);
}

/* Boltzmann exploration: with M = 6, K = 3, K_top = 1, the slate is the best item, then an ordered pair drawn
   without replacement from the other 5 with probabilities ~ exp(f / T).  The 20 ordered pairs' frequencies over
   40000 slates fit their exact probabilities (chi-square, p = 1e-4). */
static void offpolicy_explore_matches_exact(void)
{
    enum { P = 8, N = 40000 };
    static const float beta[P] = {0.1f, 1.5f, -0.3f, 0.9f, 0.4f, 2.0f, -1.0f, 0.7f};
    polopt_mips ix;
    polopt_mips_scratch sc;
    polopt_policy pol;
    polopt_policy_config pc = polopt_policy_config_default(1, 1);
    polopt_rng rng;
    const float x = 1.0f, T = 0.7f;
    uint32_t ids[6], order[6], top[P];
    float work[6], f[P];
    double obs[36], expect[36], p[6], Z = 0;
    size_t i, j, n;
    CHECK_OK(polopt_mips_init_exact(&ix, P, 1, beta, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 8, NULL));
    CHECK_OK(polopt_policy_init(&pol, &pc)); /* theta = 1: f = beta */
    for (i = 0; i < P; ++i) f[i] = beta[i];
    CHECK_OK(polopt_topk(P, f, 6, top, NULL));
    for (i = 1; i < 6; ++i) Z += (p[i] = exp(beta[top[i]] / T)); /* the candidates after the best one */
    memset(obs, 0, sizeof obs), memset(expect, 0, sizeof expect);
    for (i = 1; i < 6; ++i)
        for (j = 1; j < 6; ++j)
            if (i != j) expect[i * 6 + j] = N * (p[i] / Z) * (p[j] / (Z - p[i]));
    polopt_rng_seed(&rng, 12);
    for (n = 0; n < N; ++n) {
        size_t s0 = 0, s1 = 0;
        CHECK_OK(polopt_policy_explore(&pol, &ix, &sc, &rng, &x, 6, 3, 1, T, 8, ids, work));
        if (ids[0] != top[0]) {
            CHECK(ids[0] == top[0]);
            break;
        }
        for (i = 0; i < 6; ++i) order[i] = top[i];
        for (i = 1; i < 6; ++i) {
            if (ids[1] == order[i]) s0 = i;
            if (ids[2] == order[i]) s1 = i;
        }
        obs[s0 * 6 + s1] += 1;
    }
    CHECK_CHI2(36, obs, expect);
    CHECK_RC(polopt_policy_explore(&pol, &ix, &sc, &rng, &x, 6, 7, 1, T, 8, ids, work), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_policy_explore(&pol, &ix, &sc, &rng, &x, 6, 3, 4, T, 8, ids, work), POLOPT_ERR_INVALID_ARG);
    polopt_policy_free(&pol);
    polopt_mips_scratch_free(&sc);
    polopt_mips_free(&ix);
}

const th_test th_suite_offpolicy[] = {TH(offpolicy_ratio_bias_follows_delta_method),
                                      TH(offpolicy_grad_log_pi_converges),
                                      TH(offpolicy_preallocated_estimator),
                                      TH(offpolicy_correction_weights),
                                      TH(offpolicy_discounted_returns),
                                      TH(offpolicy_topk_simulations),
                                      TH(offpolicy_training_from_logged_returns),
                                      TH(offpolicy_explore_matches_exact),
                                      TH_END};
