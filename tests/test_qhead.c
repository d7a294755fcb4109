/* The action-value head of LPI-RL (polopt_qhead) against independent references: the TD step's targets, loss and
   gradient against a brute-force computation in double (the max over all P items by a loop, the gradient by central
   differences of (1/2n) sum delta^2) and its first Adam step against Adam's closed form; with gamma = 0 the head
   against the least-squares fit of the rewards (normal equations solved here); on a deterministic chain MDP, fitted
   Q-iteration with the head against Q* from value iteration, with and without double Q; the target head's refresh;
   bad input rejected with a message and no parameter touched; every allocation failure clean. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A random exact index of P items in L dims (the caller frees beta and the index). */
static float *qh_items(polopt_mips *index, size_t P, size_t L, uint64_t seed)
{
    polopt_rng rng;
    float *beta = (float *)malloc(P * L * sizeof(float));
    polopt_rng_seed(&rng, seed);
    polopt_rng_normals(&rng, P * L, beta);
    CHECK_OK(polopt_mips_init_exact(index, P, L, beta, 0, NULL));
    return beta;
}

/* u^T beta_a in double for u = x^T theta (theta D x L). */
static double qh_q(const float *theta, const float *x, const float *beta_a, size_t D, size_t L)
{
    double s = 0.0;
    size_t d, j;
    for (d = 0; d < D; ++d)
        for (j = 0; j < L; ++j) s += (double)x[d] * theta[d * L + j] * beta_a[j];
    return s;
}

/* The TD target of one transition by brute force: the chooser's argmax over all P (ties: the lower id), valued by the
   target's theta. */
static double qh_target(const float *chooser, const float *valuer, const float *beta, size_t P, size_t D, size_t L,
                        const float *x_next, float r, int done, double gamma)
{
    double best = -INFINITY;
    size_t a, arg = 0;
    if (done) return r;
    for (a = 0; a < P; ++a) {
        const double v = qh_q(chooser, x_next, beta + a * L, D, L);
        if (v > best) best = v, arg = a;
    }
    return r + gamma * qh_q(valuer, x_next, beta + arg * L, D, L);
}

/* (a) On a tiny problem (P = 7 items, D = 4, L = 3, n = 5 transitions, two terminal), with a target head that
   differs from the online head: the loss equals the brute-force mean squared TD error, the gradient left in q.grad
   equals central differences of J(theta) = (1/2n) sum (x_t^T theta beta_{a_t} - y_t)^2 with y held fixed (J is
   quadratic, so central differences are exact up to rounding: tolerance 1e-4 of the largest entry), and theta
   moved by Adam's first step, lr g / (|g| + eps) (bias-corrected moments m_hat = g, v_hat = g^2). */
static void qhead_td_step_matches_brute_force(void)
{
    enum { P = 7, D = 4, L = 3, N = 5 };
    const unsigned char done[N] = {0, 1, 0, 0, 1};
    const uint32_t actions[N] = {3, 0, 6, 3, 2};
    float *beta, X[N * D], Xn[N * D], r[N], theta0[D * L], theta_t[D * L];
    polopt_mips index;
    polopt_rng rng;
    int dq;
    beta = qh_items(&index, P, L, 11);
    polopt_rng_seed(&rng, 12);
    th_fill_uniform(&rng, N * D, X, -1.0f, 1.0f);
    th_fill_uniform(&rng, N * D, Xn, -1.0f, 1.0f);
    th_fill_uniform(&rng, N, r, 0.0f, 1.0f);
    for (dq = 0; dq < 2; ++dq) {
        polopt_qhead q;
        polopt_qhead_config c = polopt_qhead_config_default();
        double y[N], loss = 0.0, lib_loss = -1.0, gmax = 0.0;
        size_t i, e;
        c.gamma = 0.8f, c.double_q = dq, c.init_scale = 1.0f, c.seed = 3, c.batch = 8, c.target_every = 1000;
        CHECK_OK(polopt_qhead_init(&q, &index, D, &c));
        th_fill_uniform(&rng, D * L, q.target.theta, -1.0f, 1.0f); /* a target head apart from the online one */
        memcpy(theta0, q.online.theta, sizeof theta0);
        memcpy(theta_t, q.target.theta, sizeof theta_t);
        for (i = 0; i < N; ++i) {
            const double qa = qh_q(theta0, X + i * D, beta + actions[i] * L, D, L);
            y[i] = qh_target(dq ? theta0 : theta_t, theta_t, beta, P, D, L, Xn + i * D, r[i], done[i], 0.8);
            loss += (qa - y[i]) * (qa - y[i]) / N;
        }
        CHECK_OK(polopt_qhead_td_step(&q, N, X, D, actions, r, Xn, D, done, &lib_loss));
        CHECK_NEAR(lib_loss, loss, 1e-5 * (1.0 + loss));
        for (e = 0; e < D * L; ++e) gmax = fabs(q.grad[e]) > gmax ? fabs(q.grad[e]) : gmax;
        CHECK(gmax > 1e-3);
        for (e = 0; e < D * L; ++e) {
            const double h = 1e-3;
            float th[D * L];
            double jp = 0.0, jm = 0.0, step;
            memcpy(th, theta0, sizeof th);
            th[e] = (float)(theta0[e] + h);
            for (i = 0; i < N; ++i) jp += 0.5 / N * pow(qh_q(th, X + i * D, beta + actions[i] * L, D, L) - y[i], 2);
            th[e] = (float)(theta0[e] - h);
            for (i = 0; i < N; ++i) jm += 0.5 / N * pow(qh_q(th, X + i * D, beta + actions[i] * L, D, L) - y[i], 2);
            /* the perturbation actually applied in float: (theta0 + h) - (theta0 - h) */
            CHECK_NEAR(q.grad[e], (jp - jm) / ((double)(float)(theta0[e] + h) - (float)(theta0[e] - h)), 1e-4 * gmax);
            step = 1e-3 * q.grad[e] / (fabs(q.grad[e]) + 1e-8); /* Adam's first step, lr 1e-3 */
            CHECK_NEAR(q.online.theta[e], theta0[e] - step, 1e-6);
            CHECK(q.target.theta[e] == theta_t[e]); /* the target moves only every target_every steps */
        }
        CHECK(q.steps == 1);
        polopt_qhead_free(&q);
    }
    polopt_mips_free(&index);
    free(beta);
}

/* The target head is a copy of the online head from the start and again after every target_every steps, and only
   then; polopt_qhead_update_target copies at once. */
static void qhead_target_refresh(void)
{
    enum { P = 9, D = 3, L = 2, N = 4 };
    const unsigned char done[N] = {0, 0, 0, 0};
    const uint32_t actions[N] = {1, 2, 8, 0};
    float *beta, X[N * D], r[N] = {1.0f, 0.0f, 0.5f, 0.25f};
    polopt_mips index;
    polopt_qhead q;
    polopt_qhead_config c = polopt_qhead_config_default();
    polopt_rng rng;
    size_t s;
    beta = qh_items(&index, P, L, 5);
    polopt_rng_seed(&rng, 6);
    th_fill_uniform(&rng, N * D, X, -1.0f, 1.0f);
    c.target_every = 3, c.batch = N;
    CHECK_OK(polopt_qhead_init(&q, &index, D, &c));
    CHECK(memcmp(q.online.theta, q.target.theta, D * L * sizeof(float)) == 0);
    for (s = 1; s <= 7; ++s) {
        CHECK_OK(polopt_qhead_td_step(&q, N, X, D, actions, r, X, D, done, NULL));
        CHECK((memcmp(q.online.theta, q.target.theta, D * L * sizeof(float)) == 0) == (s % 3 == 0));
    }
    CHECK_OK(polopt_qhead_update_target(&q));
    CHECK(memcmp(q.online.theta, q.target.theta, D * L * sizeof(float)) == 0);
    polopt_qhead_free(&q);
    polopt_mips_free(&index);
    free(beta);
}

/* Solve the k x k system A z = b in place (Gaussian elimination with partial pivoting, double). */
static void qh_solve(size_t k, double *A, double *b)
{
    size_t i, j, r;
    for (i = 0; i < k; ++i) {
        size_t piv = i;
        for (r = i + 1; r < k; ++r)
            if (fabs(A[r * k + i]) > fabs(A[piv * k + i])) piv = r;
        for (j = 0; j < k; ++j) {
            const double t = A[i * k + j];
            A[i * k + j] = A[piv * k + j], A[piv * k + j] = t;
        }
        {
            const double t = b[i];
            b[i] = b[piv], b[piv] = t;
        }
        for (r = i + 1; r < k; ++r) {
            const double f = A[r * k + i] / A[i * k + i];
            for (j = i; j < k; ++j) A[r * k + j] -= f * A[i * k + j];
            b[r] -= f * b[i];
        }
    }
    for (i = k; i-- > 0;) {
        for (j = i + 1; j < k; ++j) b[i] -= A[i * k + j] * b[j];
        b[i] /= A[i * k + i];
    }
}

/* (b) With gamma = 0 the TD target is the reward itself, so the TD loss is the squared error of the bilinear model
   Q(x, a) = x^T theta beta_a: a linear least-squares problem in vec(theta) with features phi_t = x_t beta_{a_t}^T.
   Rewards from a planted theta plus noise; the normal equations, solved here in double, give the minimiser.  After
   6000 full-batch Adam steps the head's Q on every transition agrees with the least-squares fit within 2e-3 (the
   residual noise is 0.1, the signal about 1) and its loss exceeds the least-squares minimum by less than 1e-4. */
static void qhead_gamma_zero_is_least_squares(void)
{
    enum { P = 10, D = 3, L = 4, N = 60, K = D * L };
    float *beta, X[N * D], r[N], planted[D * L], qv[N];
    double A[K * K], b[K], min_loss = 0.0, loss = 0.0;
    unsigned char done[N];
    uint32_t actions[N];
    polopt_mips index;
    polopt_qhead q;
    polopt_qhead_config c = polopt_qhead_config_default();
    polopt_rng rng;
    size_t i, j, k, s;
    beta = qh_items(&index, P, L, 21);
    polopt_rng_seed(&rng, 22);
    th_fill_uniform(&rng, N * D, X, -1.0f, 1.0f);
    th_fill_uniform(&rng, D * L, planted, -1.0f, 1.0f);
    memset(A, 0, sizeof A);
    memset(b, 0, sizeof b);
    for (i = 0; i < N; ++i) {
        double phi[K];
        actions[i] = (uint32_t)polopt_rng_below(&rng, P);
        done[i] = (unsigned char)(i % 2); /* irrelevant with gamma = 0 */
        r[i] = (float)(qh_q(planted, X + i * D, beta + actions[i] * L, D, L) + 0.1 * polopt_rng_normal(&rng));
        for (j = 0; j < D; ++j)
            for (k = 0; k < L; ++k) phi[j * L + k] = (double)X[i * D + j] * beta[actions[i] * L + k];
        for (j = 0; j < K; ++j) {
            for (k = 0; k < K; ++k) A[j * K + k] += phi[j] * phi[k];
            b[j] += phi[j] * r[i];
        }
    }
    qh_solve(K, A, b); /* b is now the least-squares vec(theta) */
    c.gamma = 0.0f, c.batch = N, c.adam.lr = 0.01f;
    CHECK_OK(polopt_qhead_init(&q, &index, D, &c));
    for (s = 0; s < 6000; ++s) CHECK_OK(polopt_qhead_td_step(&q, N, X, D, actions, r, X, D, done, NULL));
    CHECK_OK(polopt_qhead_values(&q, N, X, D, actions, qv));
    for (i = 0; i < N; ++i) {
        double ls = 0.0;
        for (j = 0; j < D; ++j)
            for (k = 0; k < L; ++k) ls += (double)X[i * D + j] * b[j * L + k] * beta[actions[i] * L + k];
        CHECK_NEAR(qv[i], ls, 2e-3);
        min_loss += (ls - r[i]) * (ls - r[i]) / N;
        loss += ((double)qv[i] - r[i]) * ((double)qv[i] - r[i]) / N;
    }
    CHECK(loss >= min_loss - 1e-9 && loss <= min_loss + 1e-4);
    CHECK(min_loss > 0.005 && min_loss < 0.02); /* the noise variance 0.01, less what 12 parameters absorb */
    polopt_qhead_free(&q);
    polopt_mips_free(&index);
    free(beta);
}

/* (c) A deterministic chain: states 0..4 (one-hot contexts, D = 5) and a goal 5 (terminal); items = actions left,
   right, stay (beta = the 3 x 3 identity, so Q(s, a) = theta[s][a] is a table and any Q* is representable).  right
   from 4 reaches the goal: reward 1, done; stay earns 0.05 (a myopic temptation); left at 0 hits the wall.  gamma
   0.9.  Q* comes from value iteration here (to 1e-12).  Fitted Q-iteration with the head: every step takes all 15
   transitions, the target head is refreshed every M = 150 steps (one regression), for 150 regressions.
   Tolerance, from the classical bound for approximate value iteration: if regression k misses its target T Q_k by
   at most eps_k, then ||Q_K - Q*|| <= gamma^K ||Q_0 - Q*|| + sum_k gamma^(K-1-k) eps_k.  eps_k is measured by the run
   itself: max |delta| <= sqrt(n loss), with the loss of the regression's last step (taken one step before its end,
   hence a factor 2 of slack).  The plain head must satisfy this bound; double Q (whose backup mixes the online and
   target heads mid-regression, so the bound does not apply verbatim) and the plain head must both be within 1e-4 of
   Q* (1/500 of the smallest gap between two actions' values, 0.05, so the greedy policy is exactly right).  The
   greedy action must be "right" everywhere. */
static void qhead_chain_fitted_q_iteration(void)
{
    enum { S = 5, A = 3, N = S * A, M = 150, K = 150 };
    static const float beta[A * A] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    float X[N * S], Xn[N * S], r[N], qv[N];
    unsigned char done[N];
    uint32_t actions[N];
    double qstar[S * A], v[S + 1];
    polopt_mips index;
    int dq;
    size_t s, a, i, it;
    CHECK_OK(polopt_mips_init_exact(&index, A, A, beta, 0, NULL));
    memset(X, 0, sizeof X);
    memset(Xn, 0, sizeof Xn);
    for (s = 0; s < S; ++s)
        for (a = 0; a < A; ++a) {
            const size_t t = s * A + a, next = a == 0 ? (s ? s - 1 : 0) : a == 1 ? s + 1 : s;
            X[t * S + s] = 1.0f;
            actions[t] = (uint32_t)a;
            r[t] = a == 1 && next == S ? 1.0f : a == 2 ? 0.05f : 0.0f;
            done[t] = (unsigned char)(next == S);
            Xn[t * S + (next == S ? s : next)] = 1.0f; /* a terminal's next context is never used: x_t again */
        }
    for (s = 0; s <= S; ++s) v[s] = 0.0;
    for (it = 0; it < 1000; ++it) /* value iteration: gamma^1000 is far below 1e-12 */
        for (s = 0; s < S; ++s) {
            double best = -INFINITY;
            for (a = 0; a < A; ++a) {
                const size_t t = s * A + a, next = a == 0 ? (s ? s - 1 : 0) : a == 1 ? s + 1 : s;
                qstar[t] = r[t] + (done[t] ? 0.0 : 0.9 * v[next]);
                best = qstar[t] > best ? qstar[t] : best;
            }
            v[s] = best;
        }
    for (dq = 0; dq < 2; ++dq) {
        polopt_qhead q;
        polopt_qhead_config c = polopt_qhead_config_default();
        double err0 = 0.0, err = 0.0, bound = 0.0, loss = 0.0;
        c.gamma = 0.9f, c.double_q = dq, c.batch = N, c.target_every = M, c.adam.lr = 0.01f;
        CHECK_OK(polopt_qhead_init(&q, &index, S, &c));
        CHECK_OK(polopt_qhead_values(&q, N, X, S, actions, qv));
        for (i = 0; i < N; ++i) err0 = fabs(qv[i] - qstar[i]) > err0 ? fabs(qv[i] - qstar[i]) : err0;
        for (it = 0; it < K; ++it) {
            for (s = 0; s < M; ++s) CHECK_OK(polopt_qhead_td_step(&q, N, X, S, actions, r, Xn, S, done, &loss));
            bound = 0.9 * bound + 2.0 * sqrt(N * loss); /* sum_k gamma^(K-1-k) eps_k, accumulated */
        }
        bound += pow(0.9, K) * err0;
        CHECK_OK(polopt_qhead_values(&q, N, X, S, actions, qv));
        for (i = 0; i < N; ++i) err = fabs(qv[i] - qstar[i]) > err ? fabs(qv[i] - qstar[i]) : err;
        printf("    double_q %d: max |Q - Q*| = %.2e (start %.2f), approximate value iteration bound %.2e\n", dq, err,
               err0, bound);
        if (!dq) CHECK(err <= bound);
        CHECK(err <= 1e-4);
        for (s = 0; s < S; ++s) {
            uint32_t best;
            CHECK_OK(polopt_argmax(A, qv + s * A, &best));
            CHECK(best == 1);
        }
        polopt_qhead_free(&q);
    }
    polopt_mips_free(&index);
}

/* A log callback that counts the messages. */
static void qh_log(void *user, polopt_result code, const char *message)
{
    (void)code;
    (void)message;
    ++*(int *)user;
}

/* (d) Bad configurations and bad transitions are rejected with a message naming what is wrong (also sent to the log
   callback); a rejected step leaves both heads, Adam's state and the step count untouched; a failed init leaves the
   head zeroed (freeable, and every call on it answers INVALID_ARG). */
static void qhead_bad_input(void)
{
    enum { P = 7, D = 4, L = 3, N = 3 };
    const uint32_t actions[N] = {1, 2, 3}, bad_action[N] = {1, P, 3};
    const unsigned char done[N] = {0, 0, 1}, bad_done[N] = {0, 2, 1};
    float *beta, X[N * D], Xn[N * D], r[N] = {1.0f, 0.0f, 0.5f}, tmp[N * D], rb[N], theta[D * L], theta_t[D * L];
    polopt_mips index;
    polopt_qhead q;
    polopt_qhead_config c;
    polopt_rng rng;
    int logged = 0;
    size_t i;
    double loss;
    beta = qh_items(&index, P, L, 31);
    polopt_rng_seed(&rng, 32);
    th_fill_uniform(&rng, N * D, X, -1.0f, 1.0f);
    th_fill_uniform(&rng, N * D, Xn, -1.0f, 1.0f);
    { /* configurations */
        static const char *expect[] = {"gamma", "gamma", "gamma", "target_every", "ef", "batch", "double_q",
                                       "D = 0", "identity", "lr", "init_scale"};
        size_t k;
        for (k = 0; k < sizeof expect / sizeof expect[0]; ++k) {
            size_t d = D;
            c = polopt_qhead_config_default();
            c.hooks.log = qh_log, c.hooks.log_user = &logged;
            if (k == 0) c.gamma = 1.0f;
            if (k == 1) c.gamma = -0.1f;
            if (k == 2) c.gamma = NAN;
            if (k == 3) c.target_every = 0;
            if (k == 4) c.ef = 0;
            if (k == 5) c.batch = 0;
            if (k == 6) c.double_q = 2;
            if (k == 7) d = 0;
            if (k == 8) c.init = POLOPT_INIT_IDENTITY;
            if (k == 9) c.adam.lr = 0.0f;
            if (k == 10) c.init_scale = -1.0f;
            logged = 0;
            CHECK_RC(polopt_qhead_init(&q, &index, d, &c), POLOPT_ERR_INVALID_ARG);
            if (!strstr(q.err.message, expect[k]))
                th_fail(__FILE__, __LINE__, "case %lu: message \"%s\"", (unsigned long)k, q.err.message);
            CHECK(logged == 1);
            CHECK(q.block == NULL && q.online.theta == NULL && q.adam.m == NULL);
            CHECK_RC(polopt_qhead_td_step(&q, N, X, D, actions, r, Xn, D, done, NULL), POLOPT_ERR_INVALID_ARG);
            CHECK(strstr(q.err.message, "not initialised") != NULL);
            polopt_qhead_free(&q);
            polopt_qhead_free(&q);
        }
        CHECK_RC(polopt_qhead_init(&q, NULL, D, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(q.err.message, "index") != NULL);
        CHECK_RC(polopt_qhead_init(NULL, &index, D, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_qhead_values(NULL, 1, X, D, actions, tmp), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_qhead_update_target(&q), POLOPT_ERR_INVALID_ARG);
    }
    c = polopt_qhead_config_default();
    c.batch = N, c.init_scale = 1.0f;
    c.hooks.log = qh_log, c.hooks.log_user = &logged;
    CHECK_OK(polopt_qhead_init(&q, &index, D, &c));
    CHECK_OK(polopt_qhead_td_step(&q, N, X, D, actions, r, Xn, D, done, NULL)); /* a good step first */
    th_fill_uniform(&rng, D * L, q.target.theta, -1.0f, 1.0f);
    memcpy(theta, q.online.theta, sizeof theta);
    memcpy(theta_t, q.target.theta, sizeof theta_t);
    for (i = 0; i < 12; ++i) {
        static const char *expect[] = {"n = 0", "n = 4", "NULL", "ldx", "actions[1] = 7", "rewards[1]", "rewards[2]",
                                       "done[1] = 2", "u_online(x)", "u_target(x_next)", "gradient", "ldx_next"};
        static const polopt_result code[] = {POLOPT_ERR_INVALID_ARG, POLOPT_ERR_INVALID_ARG, POLOPT_ERR_INVALID_ARG,
                                             POLOPT_ERR_INVALID_ARG, POLOPT_ERR_INVALID_ARG, POLOPT_ERR_NONFINITE,
                                             POLOPT_ERR_NONFINITE,   POLOPT_ERR_INVALID_ARG, POLOPT_ERR_NONFINITE,
                                             POLOPT_ERR_NONFINITE,   POLOPT_ERR_NONFINITE,   POLOPT_ERR_INVALID_ARG};
        size_t n = N, ldx = D, ldn = D;
        const float *x = X, *xn = Xn;
        const uint32_t *act = actions;
        const unsigned char *dn = done;
        polopt_result rc;
        memcpy(rb, r, sizeof rb);
        memcpy(tmp, X, sizeof tmp);
        if (i == 0) n = 0;
        if (i == 1) n = N + 1;
        if (i == 2) x = NULL;
        if (i == 3) ldx = D - 1;
        if (i == 4) act = bad_action;
        if (i == 5) rb[1] = NAN;
        if (i == 6) rb[2] = INFINITY;
        if (i == 7) dn = bad_done;
        if (i == 8) tmp[D + 2] = NAN, x = tmp;
        if (i == 9) tmp[2 * D] = INFINITY, xn = tmp;
        if (i == 10) { /* finite everything, but the gradient overflows float: delta ~ -FLT_MAX */
            size_t e;
            for (e = 0; e < N * D; ++e) tmp[e] = 30.0f;
            x = tmp, rb[0] = rb[1] = rb[2] = FLT_MAX / 2, dn = done;
        }
        if (i == 11) ldn = 1;
        logged = 0;
        rc = polopt_qhead_td_step(&q, n, x, ldx, act, rb, xn, ldn, dn, &loss);
        if (rc != code[i]) th_fail(__FILE__, __LINE__, "case %lu: %s", (unsigned long)i, polopt_strerror(rc));
        if (!strstr(q.err.message, expect[i]))
            th_fail(__FILE__, __LINE__, "case %lu: message \"%s\" lacks \"%s\"", (unsigned long)i, q.err.message,
                    expect[i]);
        CHECK(logged >= 1);
        CHECK(memcmp(theta, q.online.theta, sizeof theta) == 0);
        CHECK(memcmp(theta_t, q.target.theta, sizeof theta_t) == 0);
        CHECK(q.steps == 1 && q.adam.t == 1);
    }
    CHECK_RC(polopt_qhead_values(&q, N, X, D, bad_action, tmp), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(q.err.message, "actions[1]") != NULL);
    CHECK_RC(polopt_qhead_values(&q, N, X, D - 1, actions, tmp), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_qhead_values(&q, N, NULL, D, actions, tmp), POLOPT_ERR_INVALID_ARG);
    CHECK_OK(polopt_qhead_values(&q, 0, NULL, D, NULL, NULL));
    CHECK_OK(polopt_qhead_td_step(&q, N, X, D, actions, r, Xn, D, done, &loss)); /* still usable */
    CHECK(q.err.message[0] == '\0' && q.steps == 2);
    polopt_qhead_free(&q);
    polopt_qhead_free(&q); /* twice is fine */
    polopt_mips_free(&index);
    free(beta);
}

/* (e) Every allocation of a head (two thetas, Adam's moments, the MIPS scratch, the step block) fails cleanly, on an
   exact index and on an HNSW index (whose scratch differs); a complete run takes steps and reads values. */
static polopt_result qh_alloc_scenario(const polopt_hooks *h, int stage, void *user)
{
    enum { D = 4, N = 6 };
    const polopt_mips *index = (const polopt_mips *)user + stage;
    const uint32_t actions[N] = {0, 5, 9, 17, 33, 63};
    const unsigned char done[N] = {0, 0, 1, 0, 0, 1};
    float X[N * D], r[N], qv[N];
    polopt_qhead q;
    polopt_qhead_config c = polopt_qhead_config_default();
    polopt_result rc;
    size_t i;
    for (i = 0; i < N * D; ++i) X[i] = (float)(i % 7) * 0.2f - 0.6f;
    for (i = 0; i < N; ++i) r[i] = (float)(i % 2);
    c.batch = N, c.ef = 16, c.double_q = stage, c.hooks = *h;
    rc = polopt_qhead_init(&q, index, D, &c);
    for (i = 0; i < 3 && rc == POLOPT_OK; ++i) rc = polopt_qhead_td_step(&q, N, X, D, actions, r, X, D, done, NULL);
    if (rc == POLOPT_OK) rc = polopt_qhead_values(&q, N, X, D, actions, qv);
    polopt_qhead_free(&q);
    return rc;
}

static void qhead_allocation_failures_are_clean(void)
{
    enum { P = 64, L = 5 };
    polopt_mips ix[2];
    float *beta = qh_items(&ix[0], P, L, 41);
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    int stage;
    hc.M = 8, hc.ef_construction = 32;
    CHECK_OK(polopt_mips_init_hnsw(&ix[1], P, L, beta, 0, &hc));
    for (stage = 0; stage < 2; ++stage) CHECK_EACH_ALLOCATION_FAILURE(qh_alloc_scenario, stage, ix);
    polopt_mips_free(&ix[0]);
    polopt_mips_free(&ix[1]);
    free(beta);
}

const th_test th_suite_qhead[] = {TH(qhead_td_step_matches_brute_force),
                                  TH(qhead_target_refresh),
                                  TH(qhead_gamma_zero_is_least_squares),
                                  TH(qhead_chain_fitted_q_iteration),
                                  TH(qhead_bad_input),
                                  TH(qhead_allocation_failures_are_clean),
                                  TH_END};
