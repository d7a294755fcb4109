/* 08_lpi_rl.c - local policy improvement on sequences (LPI-RL) against its baselines, on a synthetic sequential task
   whose true value every policy can be simulated for.

   What it shows (Liang & Vlassis, "Local Policy Improvement for Recommender Systems", 2023, §3.2-3.3 and §4.2): from
   sessions logged by a softmax policy mu, learn a new softmax policy pi by a weighted cross-entropy
   sum_t w_t log pi(a_t | x_t), where the weight decides the method:
       mu_hat    w = 1                                     maximum likelihood: the estimated logging policy
       sqn       w = 1, plus a TD loss on a Q head          (Xin et al. 2020)
       sac       w = max(Q(x_t, a_t), 0), plus the TD loss  (Xin et al. 2020)
       rwCE      w = r_t                                    the reward-weighted cross-entropy L_mu (their Eq. 4)
       PG        w = R_t, the discounted reward-to-go       REINFORCE as if the log were on-policy
       IPS-PG    w = min(pi / mu_hat, 30) R_t               the off-policy correction (Chen et al. 2019)
       LPI-RL    w = exp(A(x_t, a_t) / beta_kl)             A = Q - E_{a~mu_hat} Q, Q from the TD head (Eq. 10-11)
   The Q head is polopt_qhead: Q(x, a) = u(x)^T beta_a, u linear, trained by double Q-learning with a target head.
   An honest difference from the paper: there the policy and the Q head share a SASRec backbone, so the TD loss also
   shapes pi's features.  Here h(x) = theta^T x is linear and has no backbone to share: the TD loss reaches pi only
   through the weights.  So sqn IS mu_hat in this program (its row repeats mu_hat's), and sac and LPI-RL use Q only
   as a weight.

   The task: the library's users with state, polopt_synth_session.  A catalogue of P items (polopt_synth: clustered
   embeddings beta_a).  A user u has a hidden taste t_u and a static context c_u (polopt_synth_user); she has consumed
   a history whose last M items have mean embedding m_t.  Her state is z_t = (1 - LAMBDA) t_u + LAMBDA m_t / ||m_t||;
   recommended item a, she clicks with probability sigmoid(R_BIAS + R_SCALE z_t^T beta_a) = sigmoid(-3 + 2.5 z_t^T
   beta_a) (the catalogue's reward model with z_t as the taste), never on an item already recommended in the session.
   A click appends a to her history: the state moves towards what she clicks.  The context the recommender sees is
   x_t = [m_t, c_u] (D = 2L).  The logging policy mu is
   a known softmax over h_mu(x) = m_t + G^T c_u (G: the catalogue's context matrix, so G^T c_u is a noisy view of the
   taste) at temperature T_MU = 0.5, over the items not yet shown in the session: decent (8.7 clicks of 15; the
   oracle 11.0, uniform 1.2), not optimal.  (The masking makes mu's propensities differ slightly from a plain softmax
   of x, the family mu_hat is fitted in.)  Sessions last T_STEPS recommendations; reward r_t = click.  Because the
   model is known, the true value of any policy is simulated on fresh users: the expected clicks per session of the
   greedy policy (its best item not yet shown), with common random numbers across policies.

   What to look at: the table (HR@k and nDCG@k of the next clicked item in held-out logged sessions, the JS
   divergence from mu_hat, the simulated true value, each with its standard error) and lpi_rl.svg (true value and JS
   per method).  The values of all policies are simulated with the same users and random numbers, so differences
   between two rows are more precise than each row's standard error suggests.  The ranking metrics reward agreeing
   with mu's clicked choices; the true value asks what the policy would earn.  They need not agree, which is the
   paper's point about offline metrics.  Nothing here is tuned to make any method win.  What this run gives: serving
   greedily is most of the gain (greedy mu_hat 9.6 clicks against the sampled mu's 8.7); rwCE, PG, sac and LPI-RL at
   beta_kl = 1 stay within JS 0.02 of mu_hat and within 0.1 click of it; LPI-RL at beta_kl = 0.2 moves further (JS
   0.20) and has the highest value of the learned policies (9.8), with ranking metrics unchanged; at beta_kl = 0.05 a
   few weights of exp(38) dominate and the policy collapses (3.9, JS 0.41); IPS-PG moves furthest (JS 0.44) and loses
   value (7.9) and ranking metrics, as in the paper's Table 3.  The Q head behind sac and LPI-RL is an early-stopped
   Q-learning estimate (see train_qhead: trained longer, it diverges here).

   Run: build/08_lpi_rl [output directory]   (about a minute on one core; after make examples) */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    P = 3000,       /* items */
    L = 16,         /* embedding dimension */
    D = 2 * L,      /* context: [m_t, c_u] */
    M = 5,          /* the state remembers the last M consumed items */
    T_STEPS = 15,   /* recommendations per session */
    N_TRAIN = 1500, /* logged training users */
    N_TEST = 500,   /* held-out logged users (ranking metrics, JS) */
    N_SIM = 1000,   /* fresh users for the true value */
    EPOCHS = 10,    /* policy training */
    Q_EPOCHS = 10,  /* Q head training: longer diverges here (see train_qhead) */
    BATCH = 256,
    KMAX = 20,
    N_BETA = 3
};
#ifndef LAMBDA
#define LAMBDA 0.5f /* weight of the recent history in the state */
#endif
#ifndef T_MU
#define T_MU 0.5f   /* temperature of the logging policy */
#endif
#ifndef Q_LR
#define Q_LR 1e-3f /* the Q head's Adam */
#endif
#ifndef Q_WD
#define Q_WD 0.0f
#endif
#ifndef Q_TARGET_EVERY
#define Q_TARGET_EVERY 500
#endif
#ifndef R_BIAS
#define R_BIAS -3.0 /* click probability sigmoid(R_BIAS + R_SCALE z^T beta_a) */
#endif
#ifndef R_SCALE
#define R_SCALE 2.5
#endif
#ifndef GAMMA
#define GAMMA 0.9f /* discount of returns and of the Q head */
#endif
#define LR 0.01f    /* Adam step size of every policy */
static const float beta_grid[N_BETA] = {0.05f, 0.2f, 1.0f};

static void die(const char *what, polopt_result rc, const char *message)
{
    fprintf(stderr, "%s failed: %s (%s)\n", what, polopt_strerror(rc), message ? message : "");
    exit(1);
}
#define TRY(call, what, msg)                                   \
    do {                                                       \
        const polopt_result rc_ = (call);                      \
        if (rc_ != POLOPT_OK) die((what), rc_, (msg));         \
    } while (0)

/* ---- the environment ---------------------------------------------------------------------------------------- */

typedef struct world {
    polopt_synth synth;
    float *beta; /* P x L */
    polopt_mips index;
    polopt_mips_scratch scratch;
    polopt_policy mu; /* the logging policy (temperature T_MU) */
} world;

/* A session of the environment: polopt_synth_session with the task's memory, recency and length. */
static void session_init(const world *w, polopt_synth_session *s)
{
    polopt_synth_session_config c = polopt_synth_session_config_default();
    c.memory = M, c.recency = LAMBDA, c.max_steps = T_STEPS;
    TRY(polopt_synth_session_init(s, &w->synth, w->beta, &c), "polopt_synth_session_init", s->err.message);
}

/* ---- the logged data ---------------------------------------------------------------------------------------- */

typedef struct log_data {
    size_t n;             /* transitions: users x T_STEPS, in session order */
    float *X, *X_next;    /* n x D */
    uint32_t *action, *traj;
    float *reward, *ret;  /* r_t (click) and the discounted reward-to-go R_t */
    unsigned char *done;
} log_data;

/* Draw a ~ mu(. | x) among the items not yet shown in the session (a served system filters what the user has already
   been shown: without it a sharp mu repeats its favourite, which never gets a second click): the exact softmax over
   all P items (small P: a linear scan), the shown ones masked. */
static uint32_t sample_mu(const world *w, polopt_rng *rng, const polopt_synth_session *s, const float *x,
                          float *scores)
{
    float h[L];
    uint32_t a;
    size_t j;
    TRY(polopt_policy_embed(&w->mu, 1, x, D, h), "polopt_policy_embed", NULL);
    TRY(polopt_gemv(POLOPT_NO_TRANS, P, L, 1.0f, w->beta, L, h, 0.0f, scores), "polopt_gemv", NULL);
    for (j = 0; j < s->steps; ++j) scores[s->shown[j]] = -INFINITY;
    TRY(polopt_softmax(P, scores, T_MU, scores), "polopt_softmax", NULL);
    TRY(polopt_rng_categorical(rng, P, scores, &a), "polopt_rng_categorical", NULL);
    return a;
}

static void log_sessions(const world *w, log_data *d, uint64_t first_user, size_t users, uint64_t seed)
{
    float *scores = (float *)malloc(P * sizeof(float));
    polopt_synth_session s;
    polopt_rng rng;
    size_t u, t, i = 0;
    session_init(w, &s);
    d->n = users * T_STEPS;
    d->X = (float *)malloc(d->n * D * sizeof(float));
    d->X_next = (float *)malloc(d->n * D * sizeof(float));
    d->action = (uint32_t *)malloc(d->n * sizeof(uint32_t));
    d->traj = (uint32_t *)malloc(d->n * sizeof(uint32_t));
    d->reward = (float *)malloc(d->n * sizeof(float));
    d->ret = (float *)malloc(d->n * sizeof(float));
    d->done = (unsigned char *)malloc(d->n);
    polopt_rng_seed(&rng, seed);
    for (u = 0; u < users; ++u) {
        TRY(polopt_synth_session_start(&s, first_user + u, seed), "polopt_synth_session_start", s.err.message);
        for (t = 0; t < T_STEPS; ++t, ++i) {
            int clicked = 0;
            TRY(polopt_synth_session_context(&s, d->X + i * D), "polopt_synth_session_context", NULL);
            d->action[i] = sample_mu(w, &rng, &s, d->X + i * D, scores);
            TRY(polopt_synth_session_step(&s, d->action[i], &clicked, NULL), "polopt_synth_session_step",
                s.err.message);
            d->reward[i] = (float)clicked;
            d->traj[i] = (uint32_t)u;
            TRY(polopt_synth_session_context(&s, d->X_next + i * D), "polopt_synth_session_context", NULL);
            d->done[i] = 0; /* the log is censored, the user goes on: the TD target bootstraps at the end too */
        }
    }
    TRY(polopt_discounted_returns(d->n, d->traj, d->reward, GAMMA, d->ret, NULL), "polopt_discounted_returns", NULL);
    polopt_synth_session_free(&s);
    free(scores);
}

static void log_free(log_data *d)
{
    free(d->X), free(d->X_next), free(d->action), free(d->traj), free(d->reward), free(d->ret), free(d->done);
}

/* ---- training ----------------------------------------------------------------------------------------------- */

/* A policy trained by the library's trainer on the weighted cross-entropy sum_t w_t log pi(a_t | x_t) (logged
   returns with ret = w and correction NONE), or IPS-PG (ret = R_t, FIRST_ORDER correction capped at 30, mu_hat learned
   by the trainer's behaviour head).  EXACT estimator: P is small, and the comparison is then about objectives, not
   sampling noise. */
static void train_policy(const world *w, const log_data *d, const float *weight, int ips, polopt_policy *pi)
{
    polopt_policy_config pc = polopt_policy_config_default(D, L);
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_trainer tr;
    polopt_logged_returns lr;
    polopt_dataset ds;
    size_t e;
    pc.init = POLOPT_INIT_RANDOM, pc.init_scale = 0.1f, pc.seed = 7;
    TRY(polopt_policy_init(pi, &pc), "polopt_policy_init", pi->err.message);
    tc.estimator.method = POLOPT_METHOD_EXACT;
    tc.estimator.batch = BATCH;
    tc.estimator.seed = 3;
    tc.adam.lr = LR;
    tc.behaviour_adam.lr = LR;
    tc.correction.kind = ips ? POLOPT_CORRECTION_FIRST_ORDER : POLOPT_CORRECTION_NONE;
    tc.correction.cap = 30.0f;
    tc.learn_behaviour = ips;
    TRY(polopt_trainer_init(&tr, pi, &w->index, &tc), "polopt_trainer_init", tr.err.message);
    lr.action = d->action, lr.ret = weight, lr.propensity = NULL;
    memset(&ds, 0, sizeof ds);
    ds.n = d->n, ds.X = d->X, ds.ldx = D, ds.returns = &lr;
    for (e = 0; e < EPOCHS; ++e) TRY(polopt_trainer_epoch(&tr, &ds, NULL), "polopt_trainer_epoch", tr.err.message);
    polopt_trainer_free(&tr);
}

/* The Q head by double Q-learning on the logged transitions, shuffled minibatches; prints its TD loss.  A warning
   from this setting, measured: offline Q-learning with a max over all P items diverges here.  The max of a bilinear
   Q ranges over items the log never shows in a state, whose values only the linear form extrapolates; each target
   refresh raises them, and the targets chase them (function approximation, bootstrapping and off-policy data: the
   "deadly triad" of Sutton & Barto).  With the target refreshed every 100 steps the TD error grew from 0.27 to 2000
   in 30 epochs; every 500 steps it fell to 0.23 by epoch 10, then grew to 9.8 by epoch 30; gamma = 0.5 only slows
   it; weight decay barely helps.  So the head is trained for Q_EPOCHS = 10 epochs (about two target refreshes): an
   early-stopped fitted Q-iteration, a short-horizon estimate, not Q*.  Double Q is on (the paper's choice). */
static void train_qhead(const world *w, const log_data *d, polopt_qhead *q)
{
    polopt_qhead_config qc = polopt_qhead_config_default();
    float *xb = (float *)malloc(BATCH * D * sizeof(float)), *xn = (float *)malloc(BATCH * D * sizeof(float));
    float rb[BATCH];
    uint32_t ab[BATCH], *order = (uint32_t *)malloc(d->n * sizeof(uint32_t));
    unsigned char db[BATCH];
    polopt_rng rng;
    size_t e, i, c;
    qc.gamma = GAMMA, qc.batch = BATCH, qc.adam.lr = Q_LR, qc.target_every = Q_TARGET_EVERY;
    qc.adam.weight_decay = Q_WD;
    TRY(polopt_qhead_init(q, &w->index, D, &qc), "polopt_qhead_init", q->err.message);
    polopt_rng_seed(&rng, 99);
    for (i = 0; i < d->n; ++i) order[i] = (uint32_t)i;
    printf("Q head (double Q-learning, gamma %.2f, target every %lu steps): mean squared TD error per epoch\n ",
           (double)GAMMA, (unsigned long)qc.target_every);
    for (e = 0; e < Q_EPOCHS; ++e) {
        double sum = 0.0, loss = 0.0;
        size_t steps = 0;
        polopt_rng_shuffle(&rng, d->n, order);
        for (i = 0; i < d->n; i += BATCH) {
            const size_t nb = d->n - i < (size_t)BATCH ? d->n - i : (size_t)BATCH;
            for (c = 0; c < nb; ++c) {
                const size_t t = order[i + c];
                memcpy(xb + c * D, d->X + t * D, D * sizeof(float));
                memcpy(xn + c * D, d->X_next + t * D, D * sizeof(float));
                ab[c] = d->action[t], rb[c] = d->reward[t], db[c] = d->done[t];
            }
            TRY(polopt_qhead_td_step(q, nb, xb, D, ab, rb, xn, D, db, &loss), "polopt_qhead_td_step", q->err.message);
            sum += loss, ++steps;
        }
        printf(" %lu: %.3f", (unsigned long)e, sum / (double)steps);
    }
    printf("\n");
    free(xb), free(xn), free(order);
}

/* LPI-RL's advantages A_t = Q(x_t, a_t) - E_{a~mu_hat}[Q(x_t, a)] (gradients cut: plain numbers), by
   polopt_lpi_advantages with the linear reward u(x)^T beta_a of the Q head and an EXACT estimator of mu_hat. */
static void lpi_advantages(const world *w, const log_data *d, polopt_qhead *q, const polopt_policy *mu_hat, float *A)
{
    float *U = (float *)malloc(d->n * L * sizeof(float)), *H = (float *)malloc(d->n * L * sizeof(float));
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_linear_task task;
    ec.method = POLOPT_METHOD_EXACT, ec.batch = BATCH, ec.temperature = mu_hat->temperature;
    TRY(polopt_estimator_init(&est, &w->index, &ec), "polopt_estimator_init", est.err.message);
    TRY(polopt_policy_embed(&q->online, d->n, d->X, D, U), "polopt_policy_embed", NULL);
    TRY(polopt_policy_embed(mu_hat, d->n, d->X, D, H), "polopt_policy_embed", NULL);
    task.U = U, task.items = w->beta, task.n = d->n, task.P = P, task.L = L, task.bias = 0.0f;
    TRY(polopt_lpi_advantages(&est, d->n, H, NULL, d->action, polopt_linear_reward, &task, POLOPT_LPI_MEAN, A),
        "polopt_lpi_advantages", NULL);
    polopt_estimator_free(&est);
    free(U), free(H);
}

/* ---- evaluation --------------------------------------------------------------------------------------------- */

typedef struct result {
    const char *name;
    double hr[3], hr_se[3], ndcg[3], ndcg_se[3]; /* k = 5, 10, 20 */
    double js, js_se, value, value_se;
    int has_js, has_ranking;
} result;

static const size_t ks[3] = {5, 10, 20};

/* HR@k and nDCG@k of the clicked item at every click of the held-out log: the rank of a_t in pi's top 20. */
static void ranking_metrics(world *w, const log_data *test, const polopt_policy *pi, result *r)
{
    double s[3] = {0}, s2[3] = {0}, g[3] = {0}, g2[3] = {0};
    size_t i, k, n = 0, rank;
    uint32_t top[KMAX];
    for (i = 0; i < test->n; ++i) {
        if (test->reward[i] == 0.0f) continue;
        TRY(polopt_policy_topk(pi, &w->index, &w->scratch, test->X + i * D, KMAX, KMAX, top, NULL),
            "polopt_policy_topk", NULL);
        for (rank = 0; rank < KMAX && top[rank] != test->action[i]; ++rank) {}
        for (k = 0; k < 3; ++k) {
            const double hit = rank < ks[k], gain = hit ? 1.0 / log2((double)rank + 2.0) : 0.0;
            s[k] += hit, s2[k] += hit * hit, g[k] += gain, g2[k] += gain * gain;
        }
        ++n;
    }
    for (k = 0; k < 3; ++k) {
        r->hr[k] = s[k] / (double)n, r->ndcg[k] = g[k] / (double)n;
        r->hr_se[k] = sqrt((s2[k] / (double)n - r->hr[k] * r->hr[k]) / (double)n);
        r->ndcg_se[k] = sqrt((g2[k] / (double)n - r->ndcg[k] * r->ndcg[k]) / (double)n);
    }
    r->has_ranking = 1;
}

/* The true value: expected clicks per session on N_SIM fresh users (the sum of the click probabilities, the clicks
   themselves drawn with the same random numbers for every policy).  kind 0: greedy pi (its best item not yet shown,
   by MIPS); 1: the logging policy mu (sampled); 2: the oracle, greedy on the true click probability (knows z_t);
   3: uniformly random items. */
static void true_value(world *w, const polopt_policy *pi, int kind, result *r)
{
    float *scores = (float *)malloc(P * sizeof(float));
    double sum = 0.0, sum2 = 0.0;
    polopt_synth_session s;
    polopt_rng rng;
    size_t u, t, j;
    session_init(w, &s);
    polopt_rng_seed(&rng, 1234);
    for (u = 0; u < N_SIM; ++u) {
        double v = 0.0;
        TRY(polopt_synth_session_start(&s, 1000000 + u, 4321), "polopt_synth_session_start", s.err.message);
        for (t = 0; t < T_STEPS; ++t) {
            float x[D], p = 0.0f;
            uint32_t top[T_STEPS + 1], a = 0;
            int clicked = 0;
            TRY(polopt_synth_session_context(&s, x), "polopt_synth_session_context", NULL);
            if (kind == 0) { /* pi's best item not shown yet: among its top t + 1 (t items were shown) */
                TRY(polopt_policy_topk(pi, &w->index, &w->scratch, x, t + 1, KMAX, top, NULL), "topk", NULL);
                for (j = 0; j <= t; ++j) {
                    size_t k;
                    for (k = 0; k < s.steps && s.shown[k] != top[j]; ++k) {}
                    if (k == s.steps) break;
                }
                a = top[j];
            } else if (kind == 2) { /* every item's click probability (shown ones are 0), the best */
                TRY(polopt_synth_session_click_probs(&s, 0, P, scores), "polopt_synth_session_click_probs", NULL);
                TRY(polopt_argmax(P, scores, &a), "polopt_argmax", NULL);
            } else if (kind == 1) {
                a = sample_mu(w, &rng, &s, x, scores);
            } else {
                a = (uint32_t)polopt_rng_below(&rng, P);
            }
            TRY(polopt_synth_session_step(&s, a, &clicked, &p), "polopt_synth_session_step", s.err.message);
            v += p;
        }
        sum += v, sum2 += v * v;
    }
    polopt_synth_session_free(&s);
    r->value = sum / N_SIM;
    r->value_se = sqrt((sum2 / N_SIM - r->value * r->value) / N_SIM);
    free(scores);
}

static void divergence(const world *w, const log_data *test, const polopt_policy *pi, const polopt_policy *mu_hat,
                       result *r)
{
    polopt_divergence dv;
    TRY(polopt_policy_divergence(pi, mu_hat, &w->index, NULL, test->n, test->X, D, &dv), "polopt_policy_divergence",
        NULL);
    r->js = dv.js, r->js_se = dv.js_se, r->has_js = 1;
}

/* ---- output ------------------------------------------------------------------------------------------------- */

static void print_table(const result *res, size_t n)
{
    size_t i, k;
    printf("\n%-16s", "policy");
    for (k = 0; k < 3; ++k) printf("   HR@%-2lu     ", (unsigned long)ks[k]);
    for (k = 0; k < 3; ++k) printf(" nDCG@%-2lu    ", (unsigned long)ks[k]);
    printf(" JS(pi||mu_hat)     true value (clicks/session)\n");
    for (i = 0; i < n; ++i) {
        const result *r = res + i;
        printf("%-16s", r->name);
        for (k = 0; k < 3; ++k) {
            if (r->has_ranking) printf(" %.3f+-%.3f", r->hr[k], r->hr_se[k]);
            else printf(" %11s", "-");
        }
        for (k = 0; k < 3; ++k) {
            if (r->has_ranking) printf(" %.3f+-%.3f", r->ndcg[k], r->ndcg_se[k]);
            else printf(" %11s", "-");
        }
        if (r->has_js) printf("  %.4f+-%.4f", r->js, r->js_se);
        else printf("  %13s", "-");
        printf("   %.3f+-%.3f\n", r->value, r->value_se);
    }
    printf("(+- one standard error: over held-out clicks for HR and nDCG, over held-out contexts for JS, over %d "
           "simulated users for the value)\n", N_SIM);
}

/* Two bar panels: the true value (with +- 2 SE) and JS, one bar per policy. */
static void write_svg(const char *path, const result *res, size_t n)
{
    const double W = 1000, H = 470, pw = 400, ph = 300, px[2] = {80, 560}, py = 60;
    FILE *f = fopen(path, "w");
    size_t i;
    int panel;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='28' text-anchor='middle' font-size='16'>LPI-RL and its baselines on simulated "
               "sessions</text>\n", W / 2);
    for (panel = 0; panel < 2; ++panel) {
        double vmax = 0.0;
        const double bw = pw / (double)n;
        for (i = 0; i < n; ++i) {
            const double v = panel == 0 ? res[i].value + 2 * res[i].value_se : res[i].js + 2 * res[i].js_se;
            vmax = v > vmax ? v : vmax;
        }
        vmax *= 1.1;
        fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>%s</text>\n", px[panel] + pw / 2, py - 8,
                panel == 0 ? "true value: expected clicks per session (+- 2 SE)"
                           : "JS(pi || mu_hat) on held-out contexts (+- 2 SE)");
        fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='black'/>\n", px[panel], py + ph,
                px[panel] + pw, py + ph);
        fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='black'/>\n", px[panel], py, px[panel],
                py + ph);
        fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='end'>%.3g</text>\n", px[panel] - 4, py + 4, vmax);
        fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='end'>0</text>\n", px[panel] - 4, py + ph + 4);
        for (i = 0; i < n; ++i) {
            const double v = panel == 0 ? res[i].value : res[i].js, se = panel == 0 ? res[i].value_se : res[i].js_se;
            const double x = px[panel] + bw * (double)i + 0.15 * bw, h = v / vmax * ph;
            const double top = py + ph - (v + 2 * se) / vmax * ph, bot = py + ph - (v - 2 * se) / vmax * ph;
            if (panel == 1 && !res[i].has_js) continue;
            fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'/>\n", x, py + ph - h, 0.7 * bw, h,
                    strncmp(res[i].name, "LPI", 3) == 0 ? "#c0392b" : "#5d7fa3");
            fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='black'/>\n", x + 0.35 * bw, top,
                    x + 0.35 * bw, bot);
            fprintf(f, "<text transform='translate(%.1f,%.0f) rotate(45)' font-size='11'>%s</text>\n", x + 0.2 * bw,
                    py + ph + 12, res[i].name);
        }
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    char path[1024];
    static world w;
    static result res[16];
    static char names[N_BETA][32];
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_policy_config pc = polopt_policy_config_default(D, L);
    polopt_policy mu_hat, pi;
    polopt_qhead q;
    log_data train, test;
    float *weight, *A;
    size_t i, j, nres = 0, nres_mu;

    /* the catalogue, its exact MIPS index, and the logging policy theta_mu = [I; G] at temperature T_MU */
    sc.n_items = P, sc.dim = L, sc.seed = 8, sc.reward_bias = R_BIAS, sc.reward_scale = R_SCALE;
    TRY(polopt_synth_init(&w.synth, &sc), "polopt_synth_init", w.synth.err.message);
    w.beta = (float *)malloc((size_t)P * L * sizeof(float));
    TRY(polopt_synth_items(&w.synth, 0, P, w.beta), "polopt_synth_items", w.synth.err.message);
    TRY(polopt_mips_init_exact(&w.index, P, L, w.beta, 0, NULL), "polopt_mips_init_exact", w.index.err.message);
    TRY(polopt_mips_scratch_init(&w.scratch, &w.index, KMAX, NULL), "polopt_mips_scratch_init", w.scratch.err.message);
    pc.init = POLOPT_INIT_RANDOM, pc.init_scale = 0.0f, pc.temperature = T_MU;
    TRY(polopt_policy_init(&w.mu, &pc), "polopt_policy_init", w.mu.err.message);
    for (i = 0; i < L; ++i) w.mu.theta[i * L + i] = 1.0f;                           /* m_t */
    for (i = 0; i < L; ++i)
        for (j = 0; j < L; ++j) w.mu.theta[(L + i) * L + j] = w.synth.mixing[i * L + j]; /* G^T c_u */

    log_sessions(&w, &train, 0, N_TRAIN, 11);
    log_sessions(&w, &test, 500000, N_TEST, 12);
    {
        double clicks = 0.0;
        for (i = 0; i < train.n; ++i) clicks += train.reward[i];
        printf("P = %d items, L = %d, D = %d; %d training and %d held-out logged sessions of %d steps; click rate of "
               "mu in the log %.3f\n", P, L, D, N_TRAIN, N_TEST, T_STEPS, clicks / (double)train.n);
    }
    weight = (float *)malloc(train.n * sizeof(float));
    A = (float *)malloc(train.n * sizeof(float));

    /* references: the oracle, the logging policy, uniform */
    res[nres].name = "oracle (knows z)", true_value(&w, NULL, 2, &res[nres]), ++nres;
    res[nres].name = "mu (logging)", true_value(&w, NULL, 1, &res[nres]);
    nres_mu = nres++;
    res[nres].name = "uniform", true_value(&w, NULL, 3, &res[nres]), ++nres;

    /* mu_hat = sqn's policy: the plain cross-entropy */
    for (i = 0; i < train.n; ++i) weight[i] = 1.0f;
    train_policy(&w, &train, weight, 0, &mu_hat);
    res[nres].name = "mu_hat (CE)";
    ranking_metrics(&w, &test, &mu_hat, &res[nres]);
    true_value(&w, &mu_hat, 0, &res[nres]);
    ranking_metrics(&w, &test, &w.mu, &res[nres_mu]); /* how mu itself ranks, and how far mu_hat is from it */
    divergence(&w, &test, &w.mu, &mu_hat, &res[nres_mu]);
    res[nres + 1] = res[nres];
    res[nres + 1].name = "sqn (= mu_hat)";
    nres += 2;

    /* the Q head, shared by sac and LPI-RL */
    train_qhead(&w, &train, &q);

    for (i = 0; i < 4 + N_BETA; ++i) {
        int ips = 0;
        if (i == 0) { /* rwCE: w = r */
            res[nres].name = "rwCE (L_mu)";
            memcpy(weight, train.reward, train.n * sizeof(float));
        } else if (i == 1) { /* PG: w = R */
            res[nres].name = "PG";
            memcpy(weight, train.ret, train.n * sizeof(float));
        } else if (i == 2) { /* IPS-PG: ret = R, the trainer's first-order correction against its mu_hat head */
            res[nres].name = "IPS-PG";
            memcpy(weight, train.ret, train.n * sizeof(float));
            ips = 1;
        } else if (i == 3) { /* sac: w = max(Q(x, a), 0) */
            res[nres].name = "sac";
            TRY(polopt_qhead_values(&q, train.n, train.X, D, train.action, weight), "polopt_qhead_values",
                q.err.message);
            for (j = 0; j < train.n; ++j) weight[j] = weight[j] > 0.0f ? weight[j] : 0.0f;
        } else { /* LPI-RL: w = exp(A / beta_kl) */
            const float b = beta_grid[i - 4];
            double amax = -INFINITY;
            if (i == 4) lpi_advantages(&w, &train, &q, &mu_hat, A);
            for (j = 0; j < train.n; ++j) amax = A[j] > amax ? A[j] : amax;
            snprintf(names[i - 4], sizeof names[i - 4], "LPI-RL b=%g", (double)b);
            res[nres].name = names[i - 4];
            /* exp((A - max A) / beta_kl): one constant factor for every weight, so the optimum is the same and no
               weight can overflow at small beta_kl (Adam's steps barely depend on the gradient's scale) */
            for (j = 0; j < train.n; ++j) weight[j] = (float)(A[j] - amax);
            TRY(polopt_lpi_weights(train.n, weight, b, weight, NULL), "polopt_lpi_weights", NULL);
            if (i == 4) printf("advantages: max %.3f (the largest weight at beta_kl = %g is exp(%.1f))\n", amax,
                               (double)b, amax / b);
        }
        train_policy(&w, &train, weight, ips, &pi);
        ranking_metrics(&w, &test, &pi, &res[nres]);
        divergence(&w, &test, &pi, &mu_hat, &res[nres]);
        true_value(&w, &pi, 0, &res[nres]);
        polopt_policy_free(&pi);
        ++nres;
    }
    print_table(res, nres);
    printf("sqn repeats mu_hat: with a linear h the policy and the Q head share no backbone, so sqn's TD term never "
           "reaches pi.\nsac and LPI-RL use the Q head only through their weights.\n");
    snprintf(path, sizeof path, "%s/lpi_rl.svg", dir);
    write_svg(path, res, nres);
    printf("wrote %s\n", path);

    polopt_qhead_free(&q);
    polopt_policy_free(&mu_hat);
    polopt_policy_free(&w.mu);
    polopt_mips_scratch_free(&w.scratch);
    polopt_mips_free(&w.index);
    polopt_synth_free(&w.synth);
    log_free(&train), log_free(&test);
    free(w.beta), free(weight), free(A);
    return 0;
}
