/* Optimisers against their update rules worked out by hand in double precision, on a quadratic
   f(p) = 1/2 sum_i c_i (p_i - t_i)^2 whose gradient is c_i (p_i - t_i). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { N = 4 };
static const double curv[N] = {1.0, 10.0, 0.1, 3.0}, target[N] = {1.0, -2.0, 0.5, 0.0};

static void quad_grad(const float *p, float *g)
{
    int i;
    for (i = 0; i < N; ++i) g[i] = (float)(curv[i] * (p[i] - target[i]));
}

static void optim_adam_first_steps_by_hand(void)
{
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    float p[N] = {0.0f, 0.0f, 3.0f, 0.5f}, g[N];
    double q[N], m[N], v[N], g2[N];
    polopt_adam_config cfg = polopt_adam_config_default();
    polopt_adam opt;
    int i;
    cfg.lr = (float)lr;
    CHECK_OK(polopt_adam_init(&opt, N, &cfg));
    for (i = 0; i < N; ++i) q[i] = p[i];
    /* step 1: m = (1-b1) g, v = (1-b2) g^2, so m_hat = g and v_hat = g^2: each p moves by lr * g / (|g| + eps) */
    quad_grad(p, g);
    CHECK_OK(polopt_adam_step(&opt, p, g));
    for (i = 0; i < N; ++i) {
        m[i] = (1 - b1) * g[i];
        v[i] = (1 - b2) * g[i] * g[i];
        q[i] -= lr * g[i] / (fabs(g[i]) + eps);
        CHECK_NEAR(p[i], q[i], 1e-6);
    }
    /* step 2, with the bias corrections 1 - b1^2 and 1 - b2^2 */
    quad_grad(p, g);
    for (i = 0; i < N; ++i) g2[i] = g[i];
    CHECK_OK(polopt_adam_step(&opt, p, g));
    for (i = 0; i < N; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g2[i];
        v[i] = b2 * v[i] + (1 - b2) * g2[i] * g2[i];
        q[i] -= lr * (m[i] / (1 - b1 * b1)) / (sqrt(v[i] / (1 - b2 * b2)) + eps);
        CHECK_NEAR(p[i], q[i], 1e-6);
    }
    CHECK(opt.t == 2);
    polopt_adam_free(&opt);
}

static void optim_adam_converges_and_maximises(void)
{
    float p[N] = {5.0f, 5.0f, -5.0f, 2.0f}, g[N];
    polopt_adam_config cfg = polopt_adam_config_default();
    polopt_adam opt;
    int i, it;
    cfg.lr = 0.05f;
    CHECK_OK(polopt_adam_init(&opt, N, &cfg));
    for (it = 0; it < 4000; ++it) {
        quad_grad(p, g);
        CHECK_OK(polopt_adam_step(&opt, p, g));
    }
    for (i = 0; i < N; ++i) CHECK_NEAR(p[i], target[i], 0.02);
    polopt_adam_free(&opt);
    /* maximise -f: the same optimum, reached by ascending the negated gradient */
    cfg.maximize = 1;
    CHECK_OK(polopt_adam_init(&opt, N, &cfg));
    p[0] = 5.0f, p[1] = 5.0f, p[2] = -5.0f, p[3] = 2.0f;
    for (it = 0; it < 4000; ++it) {
        quad_grad(p, g);
        for (i = 0; i < N; ++i) g[i] = -g[i];
        CHECK_OK(polopt_adam_step(&opt, p, g));
    }
    for (i = 0; i < N; ++i) CHECK_NEAR(p[i], target[i], 0.02);
    polopt_adam_free(&opt);
}

static void optim_adamw_decay_is_decoupled(void)
{
    float p[N] = {1.0f, -2.0f, 4.0f, 0.0f}, zero[N] = {0, 0, 0, 0};
    polopt_adam_config cfg = polopt_adam_config_default();
    polopt_adam opt;
    int i;
    cfg.lr = 0.1f;
    cfg.weight_decay = 0.5f;
    CHECK_OK(polopt_adam_init(&opt, N, &cfg));
    /* zero gradient: the Adam term is 0 / (0 + eps) = 0, only the decay p * (1 - lr wd) = 0.95 p acts */
    CHECK_OK(polopt_adam_step(&opt, p, zero));
    /* (float) casts: where float expressions carry excess precision (x87), a constant may too */
    CHECK(p[0] == (float)0.95f && p[1] == (float)-1.9f && p[2] == (float)3.8f && p[3] == 0.0f);
    for (i = 0; i < N; ++i) CHECK(opt.m[i] == 0.0f && opt.v[i] == 0.0f);
    polopt_adam_free(&opt);
}

static void optim_nonfinite_gradient_changes_nothing(void)
{
    float p[N] = {1, 2, 3, 4}, g[N] = {0.5f, NAN, 1.0f, 1.0f}, p0[N], m0[N];
    polopt_adam opt;
    polopt_sgd sgd;
    polopt_sgd_config scfg = polopt_sgd_config_default();
    CHECK_OK(polopt_adam_init(&opt, N, NULL));
    memcpy(p0, p, sizeof p);
    memcpy(m0, opt.m, sizeof m0);
    CHECK_RC(polopt_adam_step(&opt, p, g), POLOPT_ERR_NONFINITE);
    CHECK(memcmp(p, p0, sizeof p) == 0 && memcmp(opt.m, m0, sizeof m0) == 0 && opt.t == 0);
    CHECK(strstr(opt.err.message, "grad[1]") != NULL);
    g[1] = 0.0f;
    p[2] = INFINITY;
    CHECK_RC(polopt_adam_step(&opt, p, g), POLOPT_ERR_NONFINITE);
    CHECK(strstr(opt.err.message, "params[2]") != NULL);
    CHECK_RC(polopt_adam_step(&opt, NULL, g), POLOPT_ERR_INVALID_ARG);
    polopt_adam_free(&opt);
    scfg.momentum = 0.9f;
    CHECK_OK(polopt_sgd_init(&sgd, N, &scfg));
    g[3] = -INFINITY;
    p[2] = 3.0f;
    memcpy(p0, p, sizeof p);
    CHECK_RC(polopt_sgd_step(&sgd, p, g), POLOPT_ERR_NONFINITE);
    CHECK(memcmp(p, p0, sizeof p) == 0 && sgd.t == 0);
    polopt_sgd_free(&sgd);
}

static void optim_config_validation(void)
{
    polopt_adam opt;
    polopt_sgd sgd;
    polopt_adam_config cfg = polopt_adam_config_default();
    polopt_sgd_config scfg = polopt_sgd_config_default();
    cfg.beta2 = 1.5f;
    CHECK_RC(polopt_adam_init(&opt, N, &cfg), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(opt.err.message, "beta2 = 1.5") != NULL);
    cfg = polopt_adam_config_default();
    cfg.lr = NAN;
    CHECK_RC(polopt_adam_init(&opt, N, &cfg), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(opt.err.message, "lr") != NULL);
    cfg = polopt_adam_config_default();
    cfg.weight_decay = -1.0f;
    CHECK_RC(polopt_adam_init(&opt, N, &cfg), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_adam_init(&opt, 0, NULL), POLOPT_ERR_INVALID_ARG);
    scfg.momentum = 1.0f;
    CHECK_RC(polopt_sgd_init(&sgd, N, &scfg), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(sgd.err.message, "momentum") != NULL);
    polopt_adam_free(&opt); /* freeing a failed init is safe */
    polopt_sgd_free(&sgd);
}

static void optim_sgd_steps_by_hand(void)
{
    const double lr = 0.1, mu = 0.9, wd = 0.01;
    float p[N] = {0.0f, 1.0f, -1.0f, 2.0f}, g[N];
    double q[N], buf[N] = {0, 0, 0, 0};
    polopt_sgd_config cfg = polopt_sgd_config_default();
    polopt_sgd opt;
    int i, step;
    /* plain SGD: p -= lr g, exactly as float arithmetic does it */
    cfg.lr = (float)lr;
    CHECK_OK(polopt_sgd_init(&opt, N, &cfg));
    quad_grad(p, g);
    for (i = 0; i < N; ++i) q[i] = p[i] - cfg.lr * g[i];
    CHECK_OK(polopt_sgd_step(&opt, p, g));
    for (i = 0; i < N; ++i) CHECK_NEAR(p[i], q[i], 1e-6);
    polopt_sgd_free(&opt);
    /* momentum and weight decay: g' = g + wd p; buf = g' at the first step, then mu buf + g'; p -= lr buf */
    cfg.momentum = (float)mu;
    cfg.weight_decay = (float)wd;
    CHECK_OK(polopt_sgd_init(&opt, N, &cfg));
    for (i = 0; i < N; ++i) q[i] = p[i];
    for (step = 0; step < 3; ++step) {
        quad_grad(p, g);
        for (i = 0; i < N; ++i) {
            const double gp = g[i] + wd * q[i];
            buf[i] = step == 0 ? gp : mu * buf[i] + gp;
            q[i] -= lr * buf[i];
        }
        CHECK_OK(polopt_sgd_step(&opt, p, g));
        for (i = 0; i < N; ++i) CHECK_NEAR(p[i], q[i], 1e-5);
    }
    polopt_sgd_free(&opt);
}

const th_test th_suite_optim[] = {TH(optim_adam_first_steps_by_hand),     TH(optim_adam_converges_and_maximises),
                                  TH(optim_adamw_decay_is_decoupled),     TH(optim_nonfinite_gradient_changes_nothing),
                                  TH(optim_config_validation),            TH(optim_sgd_steps_by_hand),
                                  TH_END};
