/* 10_slates.c - a simulated A/B test of slate recommenders (Aouali et al. 2022, KDD tutorial "Reward Optimizing
   Recommendation using Deep Learning and Fast Maximum Inner Product Search", §3.2-3.4).

   The world.  A catalogue of P items (polopt_synth: clustered embeddings beta_a, users with a hidden taste t_u and
   a context x_u that only hints at it).  A page shows a slate of K = 4 items; the user clicks at most one, by a known
   click model with position bias:
       P(click at k | u, s) = kappa_k exp(gamma t_u^T beta_{a_k}) / (nu + sum_j kappa_j exp(gamma t_u^T beta_{a_j}))
   kappa = (1, 0.7, 0.5, 0.35) the chance a position is looked at, gamma = 4, and nu set so that the production
   policy's slates are clicked 5% of the time.  The reward of a slate is
   whether it was clicked, and its online value for a user is 1 - P(no click), computed exactly.

   The log.  A production policy pi0 that does not look at the user: Plackett-Luce over a fixed score per item (its
   norm, a proxy for popularity, plus noise), 20,000 users, one slate each, with its clicks and its probability.

   Four ways to learn a better policy from that log, each a linear user model h(x) = theta^T x served by one MIPS
   query (the K items of largest h(x)^T beta_a, best first), each from the same start:
     IPS         the slate Horvitz-Thompson estimate (1/n) sum_i c_i pi(s_i | x_i) / pi0(s_i | x_i), maximised by
                 gradient ascent; pi is the Plackett-Luce policy over softmax(h^T beta) and its log-probability and
                 gradient come from polopt_estimator_slate_log_prob (SNIS: O(S L + log P) per slate).  The whole-
                 slate weight is a product of K ratios: high variance, hence a cap of 100.
     top-K       Chen et al. (2019)'s heuristic: the clicked item alone, as a single-item REINFORCE step with the
                 top-K correction lambda_K pi / b (polopt_correction_weights), b the logger's first-draw probability.
     PL-REINFORCE  REINFORCE over slates sampled from pi, rewarded by the PRR model below (P(click | x, s) from the
                 fitted model; polopt_estimator_slate_gradient, 4 slates a context with a leave-one-out baseline):
                 a model-based objective, every logged context used.
     PRR         the probabilistic rank and reward model fitted to the log by maximum likelihood (polopt_prr_fit),
                 served by its own decision rule (polopt_prr_slate): no policy gradient at all.
   Beside them, the logger itself and a taste oracle (the K best items for the hidden taste, found by MIPS): the
   floor and the ceiling of the table.

   What to look at: the online click rate of each policy on 2,000 new users (the "A/B test": exact expected clicks
   under the click model), the training time per epoch, and the serving time per slate, at P = 10^5 and 10^6.  The
   tutorial's claim is that PRR, which learns from both the click and its position, beats the importance-weighted
   methods (IPS: variance; top-K: it ignores the slate) and is the cheapest to train and serve.

   Output: the table on stdout, build/slates_ab.svg (online click rate against epochs, one panel per P) and
   build/slates_ab.csv.
   Run: build/10_slates [--quick]   (after make examples; --quick: P = 10^5 only.  About 4 minutes on two cores.) */
#define _POSIX_C_SOURCE 199309L
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define L 32         /* item embeddings, contexts and h(x) */
#define SLOTS 4      /* positions of a slate (K) */
#define N_LOG 20000  /* logged slates */
#define N_TEST 2000  /* users of the A/B test */
#define EPOCHS 5
#define BATCH 32
#define SAMPLES 4    /* slates sampled per context by PL-REINFORCE */
#define CAP 100.0    /* the cap on importance weights (IPS, top-K) */
#define GAMMA 4.0
#define N_METHODS 4
#define EF 64        /* the MIPS beam at serving */

static const double kappa[SLOTS] = {1.0, 0.7, 0.5, 0.35};
static const char *const method_names[N_METHODS] = {"IPS", "top-K", "PL-REINFORCE", "PRR"};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc == POLOPT_OK) return;
    fprintf(stderr, "%s: %s (%s)\n", what, polopt_strerror(rc), message);
    exit(1);
}

typedef struct world {
    size_t P;
    polopt_mips index;
    polopt_mips_scratch scratch;
    float *X, *T, *Xt, *Tt;  /* contexts and hidden tastes: the log's users, the test's users */
    double *s0, log_z0;      /* the logger's scores, log of sum exp s0 */
    polopt_alias logger;     /* first-draw distribution of the logger */
    uint32_t *items;         /* N_LOG x SLOTS: the logged slates */
    int32_t *click;          /* N_LOG: position clicked or -1 */
    double *log_pscore;      /* N_LOG: log pi0(slate) */
    double nu;               /* the weight of no click */
} world;

/* The click model: P(no click), then each position. */
static void click_probs(const world *w, const float *taste, const uint32_t *s, double *p)
{
    double z = w->nu;
    int k;
    for (k = 0; k < SLOTS; ++k) {
        double d = 0.0;
        int j;
        for (j = 0; j < L; ++j) d += (double)taste[j] * w->index.vectors[(size_t)s[k] * L + j];
        z += p[1 + k] = kappa[k] * exp(GAMMA * d);
    }
    p[0] = w->nu;
    for (k = 0; k <= SLOTS; ++k) p[k] /= z;
}

/* A slate from the logger (Plackett-Luce over s0, by draws from the first-draw table with repeats rejected) and its
   log-probability. */
static double logger_slate(const world *w, polopt_rng *rng, uint32_t *s)
{
    double lp = 0.0, removed = 0.0;
    int k, j;
    for (k = 0; k < SLOTS; ++k) {
        uint32_t a;
        int again;
        do {
            a = polopt_alias_draw(&w->logger, rng);
            for (again = 0, j = 0; j < k; ++j) again |= s[j] == a;
        } while (again);
        s[k] = a;
        lp += w->s0[a] - w->log_z0 - log(1.0 - removed);
        removed += exp(w->s0[a] - w->log_z0);
    }
    return lp;
}

/* h = theta^T x (theta D x L with D = L). */
static void embed(const float *theta, const float *x, float *h)
{
    polopt_gemv(POLOPT_TRANS, L, L, 1.0f, theta, L, x, 0.0f, h);
}

/* A policy's slate for context x: the top K of h^T beta by MIPS (best first), or PRR's decision. */
static void serve(world *w, const float *theta, const polopt_prr *prr, const float *x, uint32_t *s)
{
    float h[L];
    if (prr) {
        check(polopt_prr_slate(prr, &w->index, &w->scratch, x, EF, s), "serve", "");
        return;
    }
    embed(theta, x, h);
    check(polopt_mips_search(&w->index, &w->scratch, h, SLOTS, EF, s, NULL), "serve", w->scratch.err.message);
}

/* The A/B test: every test user served once (timed: the serving cost per slate), then the mean online value of the
   slates served. */
static double ab_test(world *w, const float *theta, const polopt_prr *prr, double *us_per_slate)
{
    static uint32_t served[N_TEST * SLOTS];
    double v = 0.0, t, p[SLOTS + 1];
    size_t u;
    t = now();
    for (u = 0; u < N_TEST; ++u) serve(w, theta, prr, w->Xt + u * L, served + u * SLOTS);
    if (us_per_slate) *us_per_slate = (now() - t) / N_TEST * 1e6;
    for (u = 0; u < N_TEST; ++u) {
        click_probs(w, w->Tt + u * L, served + u * SLOTS, p);
        v += 1.0 - p[0];
    }
    return v / N_TEST;
}

static void world_make(world *w, size_t P, uint64_t seed)
{
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_rng rng;
    float *beta = (float *)malloc(P * L * sizeof(float)), *wf = (float *)malloc(P * sizeof(float));
    double m = -HUGE_VAL, z = 0.0, t0, ctr = 0.0;
    size_t a, u;
    w->P = P;
    w->X = (float *)malloc(N_LOG * L * sizeof(float)), w->T = (float *)malloc(N_LOG * L * sizeof(float));
    w->Xt = (float *)malloc(N_TEST * L * sizeof(float)), w->Tt = (float *)malloc(N_TEST * L * sizeof(float));
    w->s0 = (double *)malloc(P * sizeof(double));
    w->items = (uint32_t *)malloc(N_LOG * SLOTS * sizeof(uint32_t));
    w->click = (int32_t *)malloc(N_LOG * sizeof(int32_t)), w->log_pscore = (double *)malloc(N_LOG * sizeof(double));
    if (!beta || !wf || !w->X || !w->T || !w->Xt || !w->Tt || !w->s0 || !w->items || !w->click || !w->log_pscore)
        check(POLOPT_ERR_NO_MEMORY, "allocation", "");
    sc.n_items = P, sc.dim = L, sc.seed = seed;
    check(polopt_synth_init(&cat, &sc), "catalogue", cat.err.message);
    check(polopt_synth_items(&cat, 0, P, beta), "items", cat.err.message);
    for (u = 0; u < N_LOG; ++u) check(polopt_synth_user(&cat, u, w->X + u * L, w->T + u * L), "user", cat.err.message);
    for (u = 0; u < N_TEST; ++u)
        check(polopt_synth_user(&cat, 90000000 + u, w->Xt + u * L, w->Tt + u * L), "user", cat.err.message);
    polopt_synth_free(&cat);
    printf("P = %lu: building the HNSW index... ", (unsigned long)P);
    fflush(stdout);
    hc.ef_construction = 100, hc.n_threads = 2;
    t0 = now();
    check(polopt_mips_init_hnsw(&w->index, P, L, beta, 1, &hc), "index", w->index.err.message);
    printf("%.1f s; ", now() - t0);
    check(polopt_mips_scratch_init(&w->scratch, &w->index, 256, NULL), "scratch", w->scratch.err.message);
    /* the logger: s0 = 3 ||beta_a|| + N(0, 0.5^2), fixed per item */
    polopt_rng_seed(&rng, seed + 7);
    for (a = 0; a < P; ++a) {
        double n2 = 0.0;
        int j;
        for (j = 0; j < L; ++j) n2 += (double)beta[a * L + j] * beta[a * L + j];
        w->s0[a] = 3.0 * sqrt(n2) + 0.5 * polopt_rng_normal(&rng);
        if (w->s0[a] > m) m = w->s0[a];
    }
    for (a = 0; a < P; ++a) z += wf[a] = (float)exp(w->s0[a] - m);
    w->log_z0 = m + log(z);
    check(polopt_alias_init(&w->logger, P, wf, NULL), "alias", "");
    /* the log: one logger slate per user; nu set (by bisection on log nu) so that the logger's slates are clicked
       5% of the time on average, then the clicks drawn from the click model */
    {
        double *W = (double *)malloc(N_LOG * sizeof(double)), lo = -10.0, hi = 30.0;
        int it;
        if (!W) check(POLOPT_ERR_NO_MEMORY, "allocation", "");
        w->nu = 1.0;
        for (u = 0; u < N_LOG; ++u) {
            double p[SLOTS + 1];
            w->log_pscore[u] = logger_slate(w, &rng, w->items + u * SLOTS);
            click_probs(w, w->T + u * L, w->items + u * SLOTS, p);
            W[u] = (1.0 - p[0]) / p[0]; /* sum_k kappa_k exp(gamma t^T beta_{a_k}) */
        }
        for (it = 0; it < 60; ++it) {
            const double mid = 0.5 * (lo + hi), nu = exp(mid);
            double rate = 0.0;
            for (u = 0; u < N_LOG; ++u) rate += W[u] / (nu + W[u]) / N_LOG;
            if (rate > 0.05) lo = mid;
            else hi = mid;
        }
        w->nu = exp(0.5 * (lo + hi));
        free(W);
    }
    for (u = 0; u < N_LOG; ++u) {
        double p[SLOTS + 1], r = polopt_rng_uniform(&rng), run = 0.0;
        int k;
        click_probs(w, w->T + u * L, w->items + u * SLOTS, p);
        w->click[u] = -1;
        for (k = 0; k <= SLOTS; ++k)
            if ((run += p[k]) > r) {
                w->click[u] = k - 1;
                break;
            }
        ctr += w->click[u] >= 0;
    }
    printf("log: %d slates, %.0f clicked (%.2f%%)\n", N_LOG, ctr, 100.0 * ctr / N_LOG);
    free(beta), free(wf);
}

static void world_free(world *w)
{
    polopt_mips_scratch_free(&w->scratch);
    polopt_mips_free(&w->index);
    polopt_alias_free(&w->logger);
    free(w->X), free(w->T), free(w->Xt), free(w->Tt), free(w->s0), free(w->items), free(w->click), free(w->log_pscore);
}

typedef struct result {
    double value[EPOCHS + 1]; /* online value at the start and after each epoch */
    double seconds_per_epoch, us_per_slate;
} result;

/* The PRR model's click probability as a slate reward estimator: context b of the batch is log row rows[b]. */
typedef struct prr_reward_ctx {
    const world *w;
    const polopt_prr *prr;
    const uint32_t *rows;
} prr_reward_ctx;

static polopt_result prr_reward(void *user, size_t context, size_t K, const uint32_t *slate, double *out)
{
    const prr_reward_ctx *c = (const prr_reward_ctx *)user;
    double p[SLOTS + 1];
    polopt_result rc;
    (void)K;
    rc = polopt_prr_probs(c->prr, &c->w->index, c->w->X + (size_t)c->rows[context] * L, slate, p);
    *out = 1.0 - p[0];
    return rc;
}

/* One epoch of a policy-gradient method over the rows of the log, batch by batch: the estimator is set on the
   batch's contexts, each context's gradient g with respect to h is formed, theta ascends on sum x g^T / batch. */
static void pg_epoch(world *w, int method, float *theta, polopt_adam *adam, polopt_estimator *est, const polopt_prr *prr,
                     const uint32_t *rows, size_t n_rows, polopt_rng *rng, float *grad)
{
    float H[BATCH * L], g[L], lp[SLOTS], G[SLOTS * L];
    polopt_correction_config cc = polopt_correction_config_default();
    size_t first, b, j, d;
    cc.kind = POLOPT_CORRECTION_TOP_K, cc.K = SLOTS, cc.cap = (float)CAP;
    for (first = 0; first < n_rows; first += BATCH) {
        const size_t m = n_rows - first < BATCH ? n_rows - first : BATCH;
        memset(grad, 0, L * L * sizeof *grad);
        for (b = 0; b < m; ++b) embed(theta, w->X + (size_t)rows[first + b] * L, H + b * L);
        check(polopt_estimator_set(est, m, H, NULL), "estimator", est->err.message);
        for (b = 0; b < m; ++b) {
            const size_t i = rows[first + b];
            const uint32_t *s = w->items + i * SLOTS;
            memset(g, 0, sizeof g);
            if (method == 0) { /* IPS: c_i min(pi / pi0, CAP) grad log pi(s_i) (the rows are the clicked ones) */
                double lw;
                check(polopt_estimator_slate_log_prob(est, b, SLOTS, s, lp, G), "slate log pi", "");
                lw = lp[SLOTS - 1] - w->log_pscore[i];
                for (j = 0; j < L; ++j) g[j] = (float)exp(lw < log(CAP) ? lw : log(CAP)) * G[(SLOTS - 1) * L + j];
            } else if (method == 1) { /* top-K: lambda_K pi / b grad log pi(a) for the clicked item a */
                const uint32_t a = s[w->click[i]];
                float b0 = (float)exp(w->s0[a] - w->log_z0), wt = 0.0f, lpa = 0.0f;
                check(polopt_estimator_log_prob(est, b, 1, &a, &lpa, g), "log pi", "");
                check(polopt_correction_weights(&cc, 1, &lpa, &b0, &wt, NULL), "correction", "");
                for (j = 0; j < L; ++j) g[j] *= wt;
            } else { /* PL-REINFORCE: slates sampled from pi, rewarded by the PRR model (polopt_slate_reward_fn) */
                prr_reward_ctx rc;
                rc.w = w, rc.prr = prr, rc.rows = rows + first;
                check(polopt_estimator_slate_gradient(est, b, SLOTS, SAMPLES, prr_reward, &rc, rng, g, NULL),
                      "slate gradient", "");
            }
            for (d = 0; d < L; ++d) /* d/dtheta of g^T theta^T x = x g^T */
                for (j = 0; j < L; ++j) grad[d * L + j] += w->X[i * L + d] * g[j] / (float)m;
        }
        check(polopt_adam_step(adam, theta, grad), "adam", adam->err.message);
    }
}

static void run_methods(world *w, result *res, double *logger_value, double *oracle_value, double *oracle_us)
{
    float theta0[L * L], *grad = (float *)malloc(L * L * sizeof(float));
    uint32_t *all = (uint32_t *)malloc(N_LOG * sizeof(uint32_t)), *clicked = (uint32_t *)malloc(N_LOG * sizeof(uint32_t));
    size_t n_clicked = 0, i, e;
    polopt_rng rng;
    polopt_prr prr;
    polopt_prr_config pc = polopt_prr_config_default(L, L, SLOTS);
    polopt_slate_clicks data;
    int method;
    polopt_rng_seed(&rng, 11);
    polopt_rng_normals(&rng, L * L, theta0);
    for (i = 0; i < L * L; ++i) theta0[i] *= 0.05f; /* the common start */
    for (i = 0; i < N_LOG; ++i) {
        all[i] = (uint32_t)i;
        if (w->click[i] >= 0) clicked[n_clicked++] = (uint32_t)i;
    }
    { /* the floor and the ceiling: the logger (4 of its slates per test user) and the taste oracle */
        double v = 0.0, p[SLOTS + 1], t;
        uint32_t s[SLOTS];
        size_t u;
        int r;
        for (u = 0; u < N_TEST; ++u)
            for (r = 0; r < 4; ++r) {
                logger_slate(w, &rng, s);
                click_probs(w, w->Tt + u * L, s, p);
                v += (1.0 - p[0]) / 4;
            }
        *logger_value = v / N_TEST;
        v = 0.0, t = now();
        for (u = 0; u < N_TEST; ++u) {
            check(polopt_mips_search(&w->index, &w->scratch, w->Tt + u * L, SLOTS, 256, s, NULL), "oracle", "");
            click_probs(w, w->Tt + u * L, s, p);
            v += 1.0 - p[0];
        }
        *oracle_us = (now() - t) / N_TEST * 1e6;
        *oracle_value = v / N_TEST;
    }
    /* PRR first: PL-REINFORCE uses it as its reward model */
    data.n = N_LOG, data.X = w->X, data.items = w->items, data.click = w->click;
    pc.epochs = 1, pc.lr = 0.01f, pc.batch = 64;
    check(polopt_prr_init(&prr, &pc), "prr", prr.err.message);
    memcpy(prr.params, theta0, sizeof theta0);
    res[3].value[0] = ab_test(w, NULL, &prr, NULL);
    res[3].seconds_per_epoch = 0.0;
    for (e = 1; e <= EPOCHS; ++e) {
        double t = now(), nll;
        check(polopt_prr_fit(&prr, &w->index, &data, &nll), "prr fit", prr.err.message);
        res[3].seconds_per_epoch += (now() - t) / EPOCHS;
        res[3].value[e] = ab_test(w, NULL, &prr, &res[3].us_per_slate);
    }
    for (method = 0; method < 3; ++method) {
        float theta[L * L];
        polopt_adam adam;
        polopt_adam_config ac = polopt_adam_config_default();
        polopt_estimator est;
        polopt_estimator_config ec = polopt_estimator_config_default();
        result *r = res + method;
        ac.lr = 0.01f, ac.maximize = 1;
        ec.K = 64, ec.S = 500, ec.batch = BATCH, ec.seed = 5 + method;
        check(polopt_adam_init(&adam, L * L, &ac), "adam", adam.err.message);
        check(polopt_estimator_init(&est, &w->index, &ec), "estimator", est.err.message);
        memcpy(theta, theta0, sizeof theta);
        r->value[0] = ab_test(w, theta, NULL, NULL);
        r->seconds_per_epoch = 0.0;
        for (e = 1; e <= EPOCHS; ++e) {
            double t = now();
            if (method < 2) polopt_rng_shuffle(&rng, n_clicked, clicked);
            else polopt_rng_shuffle(&rng, N_LOG, all);
            pg_epoch(w, method, theta, &adam, &est, &prr, method < 2 ? clicked : all, method < 2 ? n_clicked : N_LOG,
                     &rng, grad);
            r->seconds_per_epoch += (now() - t) / EPOCHS;
            r->value[e] = ab_test(w, theta, NULL, &r->us_per_slate);
        }
        polopt_estimator_free(&est);
        polopt_adam_free(&adam);
    }
    polopt_prr_free(&prr);
    free(grad), free(all), free(clicked);
}

static void write_svg(const char *path, int n_panels, const size_t *Ps, result (*res)[N_METHODS],
                      const double *logger, const double *oracle)
{
    static const char *const colors[N_METHODS] = {"#d62728", "#ff7f0e", "#1f77b4", "#2ca02c"};
    const double pw = 360, ph = 260, x0 = 60, y0 = 50;
    FILE *f = fopen(path, "w");
    double vmax = 0.0;
    int p, m, e;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    for (p = 0; p < n_panels; ++p) {
        if (oracle[p] > vmax) vmax = oracle[p];
        for (m = 0; m < N_METHODS; ++m)
            for (e = 0; e <= EPOCHS; ++e)
                if (res[p][m].value[e] > vmax) vmax = res[p][m].value[e];
    }
    vmax *= 1.1;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif'>\n",
            x0 + n_panels * (pw + 40) + 130, y0 + ph + 60);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
    fprintf(f, "<text x='%.0f' y='24' font-size='14'>Simulated A/B test: online click rate of the served slate "
               "(K = %d) against training epochs</text>\n", x0, SLOTS);
    for (p = 0; p < n_panels; ++p) {
        const double left = x0 + p * (pw + 40);
        fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#444'/>\n", left, y0, pw, ph);
        fprintf(f, "<text x='%.0f' y='%.0f' font-size='12' text-anchor='middle'>P = %lu items</text>\n", left + pw / 2,
                y0 - 6, (unsigned long)Ps[p]);
        for (e = 0; e <= EPOCHS; ++e)
            fprintf(f, "<text x='%.1f' y='%.0f' font-size='10' text-anchor='middle'>%d</text>\n",
                    left + pw * e / EPOCHS, y0 + ph + 14, e);
        fprintf(f, "<text x='%.0f' y='%.0f' font-size='11' text-anchor='middle'>epoch</text>\n", left + pw / 2,
                y0 + ph + 30);
        for (e = 0; e <= 4; ++e)
            fprintf(f, "<text x='%.0f' y='%.1f' font-size='10' text-anchor='end'>%.2f</text>\n", left - 4,
                    y0 + ph - ph * e / 4 + 3, vmax * e / 4);
        /* the floor and the ceiling */
        fprintf(f, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#888' stroke-dasharray='4 3'/>\n", left,
                left + pw, y0 + ph - ph * logger[p] / vmax, y0 + ph - ph * logger[p] / vmax);
        fprintf(f, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#000' stroke-dasharray='4 3'/>\n", left,
                left + pw, y0 + ph - ph * oracle[p] / vmax, y0 + ph - ph * oracle[p] / vmax);
        for (m = 0; m < N_METHODS; ++m) {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[m]);
            for (e = 0; e <= EPOCHS; ++e)
                fprintf(f, "%.1f,%.1f ", left + pw * e / EPOCHS, y0 + ph - ph * res[p][m].value[e] / vmax);
            fprintf(f, "'/>\n");
        }
    }
    for (m = 0; m < N_METHODS + 2; ++m) {
        const double lx = x0 + n_panels * (pw + 40) - 10, ly = y0 + 14 + 18 * m;
        if (m < N_METHODS)
            fprintf(f, "<line x1='%.0f' x2='%.0f' y1='%.0f' y2='%.0f' stroke='%s' stroke-width='2'/>", lx, lx + 20, ly, ly,
                    colors[m]);
        else
            fprintf(f, "<line x1='%.0f' x2='%.0f' y1='%.0f' y2='%.0f' stroke='%s' stroke-dasharray='4 3'/>", lx, lx + 20,
                    ly, ly, m == N_METHODS ? "#888" : "#000");
        fprintf(f, "<text x='%.0f' y='%.0f' font-size='11'>%s</text>\n", lx + 26, ly + 4,
                m < N_METHODS ? method_names[m] : m == N_METHODS ? "logger" : "taste oracle");
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    static const size_t Ps[2] = {100000, 1000000};
    result res[2][N_METHODS];
    double logger[2], oracle[2], oracle_us[2], t_start = now();
    int n_panels = 2, p, m, a;
    FILE *csv;
    for (a = 1; a < argc; ++a) {
        if (!strcmp(argv[a], "--quick")) n_panels = 1;
        else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }
    printf("A simulated A/B test of slate recommenders (K = %d, %d logged slates, %d test users; kernels: %s)\n\n", SLOTS,
           N_LOG, N_TEST, polopt_isa_name(polopt_isa_detect()));
    for (p = 0; p < n_panels; ++p) {
        world w;
        world_make(&w, Ps[p], 1);
        run_methods(&w, res[p], &logger[p], &oracle[p], &oracle_us[p]);
        world_free(&w);
    }
    csv = fopen("build/slates_ab.csv", "w");
    if (csv) fprintf(csv, "P,method,epoch,online_value\n");
    for (p = 0; p < n_panels; ++p) {
        printf("\nP = %lu items\n", (unsigned long)Ps[p]);
        printf("  %-14s %12s %12s %14s %14s\n", "policy", "click rate", "vs logger", "train s/epoch", "serve us/slate");
        printf("  %-14s %12.4f %12s %14s %14s\n", "logger", logger[p], "1.00x", "-", "-");
        printf("  %-14s %12.4f %11.2fx %14s %14s\n", "start", res[p][0].value[0], res[p][0].value[0] / logger[p], "-",
               "-");
        for (m = 0; m < N_METHODS; ++m) {
            const result *r = &res[p][m];
            int e;
            printf("  %-14s %12.4f %11.2fx %14.2f %14.1f\n", method_names[m], r->value[EPOCHS],
                   r->value[EPOCHS] / logger[p], r->seconds_per_epoch, r->us_per_slate);
            for (e = 0; csv && e <= EPOCHS; ++e)
                fprintf(csv, "%lu,%s,%d,%.6f\n", (unsigned long)Ps[p], method_names[m], e, r->value[e]);
        }
        printf("  %-14s %12.4f %11.2fx %14s %14.1f\n", "taste oracle", oracle[p], oracle[p] / logger[p], "-",
               oracle_us[p]);
    }
    if (csv) fclose(csv);
    write_svg("build/slates_ab.svg", n_panels, Ps, res, logger, oracle);
    printf("\nonline click rate against epochs: build/slates_ab.svg (and build/slates_ab.csv); total %.0f s\n",
           now() - t_start);
    return 0;
}
