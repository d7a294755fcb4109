/* 07_lpi_bandit.c - local policy improvement against the IPS cross-entropy and the logging policy: the pattern of
   Table 1 of Liang & Vlassis, on a catalogue whose rewards are known exactly and on real logs, and the trade-off
   between moving away from the logging policy and gaining reward as a curve over beta_kl.

   What it shows (Liang & Vlassis, "Local Policy Improvement for Recommender Systems", 2023, §3.2 and §4.1): logged
   bandit data (x_i, a_i, r_i) from a logging policy mu, and four ways to learn a softmax policy from it, each a
   weighted cross-entropy sum_i w_i log pi(a_i | x_i) trained by the library's trainer on logged returns:
     mu_hat      w = 1                                  maximum likelihood: the estimate of mu itself
     L_mu        w = r_i                                the reward-weighted cross-entropy (their Eq. 4/6)
     IPS         w = min(pi / mu_hat, 30) r_i           the importance-weighted cross-entropy (their Eq. 9), the
                                                        weight held constant, clipped at 30 as in the paper, with
                                                        mu_hat's propensities (the paper's auxiliary head)
     LPI         w = exp(A_hat(x_i, a_i) / beta_kl)     (their Eq. 8), beta_kl from 0.001 to 1000; A_hat from a
                                                        reward model r_hat and mu_hat (polopt_lpi_advantages)
   Every policy starts from the same point (theta ~ N(0, 0.01^2 / D)) and trains 4 epochs, Adam, batches of 32.
   On held-out contexts (mean +- standard error):
     AR@1        mean r_i 1[a_i = the greedy action]: the observational metric (polopt_action_reward)
     iAR@1       mean r_hat(x, a*) of the greedy action a*: its imputed reward
     value       E_{a~pi}[r_hat(x, a)]: the imputed reward of the stochastic policy (exact, O(P) a context)
     JS          JS(pi_hat || mu_hat), exact over the catalogue (polopt_policy_divergence): how far it moved
   The paper's claims, to check and not to force: JS grows as beta_kl shrinks; IPS moves furthest from mu_hat; a
   moderate beta_kl improves iAR@1 over mu_hat while AR@1 stays close.

   1. Semi-synthetic (the truth is known, so "imputed" means exact):
     catalogue   P = 10,000 synthetic items (polopt_synth, L = 32, an HNSW index); a user's context x_u is the mean
                 embedding of 10 items it consumed; its hidden taste t_u gives the true reward of every item,
                 r(a, u) = sigmoid(-3 + 2 t_u^T beta_a): the probability of a click.
     logging     mu(a | x) = softmax(x^T beta_a / 0.2): decent (it favours items like the consumed ones) but not
                 optimal (it does not know the taste); 20,000 training users and 2,000 held-out users each logged
                 one action from mu and a click r ~ Bernoulli(r(a, u)).
     r_hat       the truth r(a, u), standing for the paper's imputation model: a perfect reward model, only mu
                 unknown.  A_hat = r(a_i, u) - max_a r(a, u) (POLOPT_LPI_MAX, exact over the catalogue): every
                 weight <= 1, which beta_kl = 0.001 needs (exp(0.7 / 0.001) overflows), and the same optimum.
     training    the estimator at catalogue scale: SNIS, S = 256 draws from the eps-mixture (eps = 0.5) around the
                 HNSW top-64; lr 0.01.
   2. The Open Bandit Dataset sample (../shared/data/obd; ZOZOTOWN, the Bernoulli Thompson sampling logs of the "men"
     and "women" campaigns, 34 and 46 items, 10,000 rows each, a click rate near 0.5%):
     policy      beta = the identity over the items (free logits per item and one-hot user feature, as in
                 06_topk_obd.c); x = the 4 one-hot user features and a constant; the exact estimator; lr 0.02.
     split       alternate blocks of 1,000 rows: the even blocks train, the odd ones are held out.
     r_hat       the library's logistic reward model per item, cross-fitted (polopt_reward_model_crossfit: no row is
                 scored by a model that saw it); A_hat = r_hat(x, a_i) - E_mu_hat[r_hat(x, .)] (POLOPT_LPI_MEAN,
                 the paper's advantage; r_hat < 0.1 here, so even beta_kl = 0.001 cannot overflow).
   The frontier of each task (JS against iAR@1 and against the value, over beta_kl, with mu_hat, L_mu and IPS as
   points) is written to lpi_frontier_<task>.svg.

   Run: build/07_lpi_bandit [output directory] [obd folder]   (about two minutes on two cores) */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BETAS 11
#define N_ROWS (4 + N_BETAS) /* the logging policy (when known), mu_hat, L_mu, IPS, then LPI */
#define EPOCHS 4

static const float betas[N_BETAS] = {0.001f, 0.002f, 0.005f, 0.01f, 0.02f, 0.05f, 0.1f, 0.2f, 0.5f, 1.0f, 1000.0f};

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "\n%s failed: %s (%s)\n", what, polopt_strerror(rc), message);
        exit(1);
    }
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* A log to learn from: contexts (training rows first, then held-out ones), the logged actions and rewards, the
   catalogue, and the reward model r_hat of each part; how to train on it. */
typedef struct task {
    const char *name;
    size_t D, n_train, n_test;
    float *X;                         /* (n_train + n_test) x D */
    uint32_t *act;
    float *click;
    polopt_mips index;                /* beta */
    polopt_reward_fn r_hat;           /* r_hat(i, a) of training row i (user r_train) or held-out row i (r_test) */
    void *r_train, *r_test;
    polopt_lpi_baseline baseline;
    polopt_estimator_config estimator; /* of training */
    float lr;
    const polopt_policy *logging;     /* mu, when known */
    double best;                      /* the iAR@1 of the best greedy policy, when known (0 otherwise) */
} task;

/* One policy and its held-out readings. */
typedef struct row {
    char name[32];
    polopt_policy pi;
    polopt_eval ar1, iar1;
    double value;
    polopt_divergence js;
} row;

/* Train a fresh policy on sum_i w_i ret_i log pi(a_i | x_i) over the training rows: w = 1 (correction NONE), or
   min(pi / propensity, 30) (FIRST_ORDER with cap 30: the IPS cross-entropy). */
static void train(const task *t, polopt_policy *pi, const float *ret, const float *propensity, polopt_correction kind)
{
    polopt_policy_config pc = polopt_policy_config_default(t->D, t->index.dim);
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_trainer tr;
    polopt_logged_returns lr;
    polopt_dataset d;
    int e;
    pc.init = POLOPT_INIT_RANDOM, pc.init_scale = 0.01f, pc.seed = 5;
    check(polopt_policy_init(pi, &pc), "polopt_policy_init", pi->err.message);
    tc.estimator = t->estimator;
    tc.adam.lr = t->lr;
    tc.correction.kind = kind;
    tc.correction.cap = 30.0f;
    check(polopt_trainer_init(&tr, pi, &t->index, &tc), "polopt_trainer_init", tr.err.message);
    lr.action = t->act, lr.ret = ret, lr.propensity = propensity;
    memset(&d, 0, sizeof d);
    d.n = t->n_train, d.X = t->X, d.ldx = t->D, d.returns = &lr;
    for (e = 0; e < EPOCHS; ++e) check(polopt_trainer_epoch(&tr, &d, NULL), "polopt_trainer_epoch", tr.err.message);
    polopt_trainer_free(&tr);
}

/* The held-out readings of a policy, JS against mu_hat. */
static void evaluate(const task *t, row *r, const polopt_policy *mu_hat, polopt_mips_scratch *scratch)
{
    const float *X = t->X + t->n_train * t->D;
    polopt_action_task logged;
    polopt_dataset d;
    logged.action = t->act + t->n_train, logged.reward = t->click + t->n_train, logged.n = t->n_test;
    memset(&d, 0, sizeof d);
    d.n = t->n_test, d.X = X, d.ldx = t->D;
    d.reward = polopt_action_reward, d.reward_user = &logged;
    check(polopt_evaluate(&r->pi, &t->index, scratch, &d, 1, 128, &r->ar1), "AR@1", r->pi.err.message);
    d.reward = t->r_hat, d.reward_user = t->r_test;
    check(polopt_evaluate(&r->pi, &t->index, scratch, &d, 1, 128, &r->iar1), "iAR@1", r->pi.err.message);
    check(polopt_policy_value(&r->pi, &t->index, &d, &r->value), "polopt_policy_value", r->pi.err.message);
    check(polopt_policy_divergence(&r->pi, mu_hat, &t->index, NULL, t->n_test, X, t->D, &r->js),
          "polopt_policy_divergence", "");
}

/* mu_hat(a_i | x_i) of the training rows, from an exact estimator set with mu_hat's embeddings 32 at a time. */
static void propensities(const task *t, const polopt_policy *mu_hat, float *out)
{
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_estimator est;
    float *H = (float *)xcalloc(32 * t->index.dim, sizeof(float));
    size_t b, c;
    ec.method = POLOPT_METHOD_EXACT;
    check(polopt_estimator_init(&est, &t->index, &ec), "polopt_estimator_init", est.err.message);
    for (b = 0; b < t->n_train; b += 32) {
        const size_t m = t->n_train - b < 32 ? t->n_train - b : 32;
        check(polopt_policy_embed(mu_hat, m, t->X + b * t->D, t->D, H), "polopt_policy_embed", "");
        check(polopt_estimator_set(&est, m, H, NULL), "polopt_estimator_set", est.err.message);
        for (c = 0; c < m; ++c) {
            float lp;
            check(polopt_estimator_log_prob(&est, c, 1, t->act + b + c, &lp, NULL), "polopt_estimator_log_prob", "");
            out[b + c] = expf(lp) > 1e-30f ? expf(lp) : 1e-30f; /* mu_hat(a_i | x_i) */
        }
    }
    polopt_estimator_free(&est);
    free(H);
}

/* A_hat of the training rows: r_hat(x_i, a_i) - g(x_i), g from mu_hat's exact distribution (MEAN) or the maximum. */
static void advantages(const task *t, const polopt_policy *mu_hat, float *out)
{
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_estimator est;
    float *H = (float *)xcalloc(t->n_train * t->index.dim, sizeof(float));
    ec.method = POLOPT_METHOD_EXACT;
    check(polopt_estimator_init(&est, &t->index, &ec), "polopt_estimator_init", est.err.message);
    check(polopt_policy_embed(mu_hat, t->n_train, t->X, t->D, H), "polopt_policy_embed", "");
    check(polopt_lpi_advantages(&est, t->n_train, H, NULL, t->act, t->r_hat, t->r_train, t->baseline, out),
          "polopt_lpi_advantages", "");
    polopt_estimator_free(&est);
    free(H);
}

/* One panel: JS on x, metric m (0: iAR@1, 1: value) on y; LPI as a line, the other rows as points. */
static void panel(FILE *f, const row *rows, size_t n, size_t first_lpi, int m, double x0, double y0, double w, double h)
{
    double xmax = 0.0, ymin = INFINITY, ymax = -INFINITY;
    size_t i;
    int t;
#define VAL(r) (m ? (r).value : (r).iar1.reward)
    for (i = 0; i < n; ++i) {
        const double se = m ? 0.0 : rows[i].iar1.reward_se;
        xmax = rows[i].js.js > xmax ? rows[i].js.js : xmax;
        ymin = VAL(rows[i]) - 2 * se < ymin ? VAL(rows[i]) - 2 * se : ymin;
        ymax = VAL(rows[i]) + 2 * se > ymax ? VAL(rows[i]) + 2 * se : ymax;
    }
    xmax = xmax > 0.0 ? xmax * 1.1 : 0.1;
    ymin -= 0.05 * (ymax - ymin) + 1e-9, ymax += 0.05 * (ymax - ymin) + 1e-9;
#define SX(v) (x0 + w * (v) / xmax)
#define SY(v) (y0 + h - h * ((v) - ymin) / (ymax - ymin))
    for (t = 0; t <= 4; ++t) {
        const double gx = x0 + w * t / 4, gy = y0 + h - h * t / 4;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", gx, y0, gx, y0 + h);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, gy, x0 + w, gy);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.3f</text>\n", gx, y0 + h + 16, xmax * t / 4);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.4f</text>\n", x0 - 5, gy + 4,
                ymin + (ymax - ymin) * t / 4);
    }
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n", x0, y0, w, h);
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>JS(pi_hat || mu_hat) on held-out contexts</text>\n",
            x0 + w / 2, y0 + h + 34);
    fprintf(f, "<text transform='translate(%.0f %.0f) rotate(-90)' text-anchor='middle'>%s</text>\n", x0 - 58,
            y0 + h / 2, m ? "value: E_pi[r_hat] of the stochastic policy" : "iAR@1: r_hat of the greedy action");
    fprintf(f, "<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='");
    for (i = first_lpi; i < n; ++i) fprintf(f, "%.1f,%.1f ", SX(rows[i].js.js), SY(VAL(rows[i])));
    fprintf(f, "'/>\n");
    for (i = 0; i < n; ++i) {
        const double px = SX(rows[i].js.js), py = SY(VAL(rows[i]));
        const char *color = i < first_lpi ? "#d62728" : "#1f77b4";
        if (!m) {
            const double e = h * 2 * rows[i].iar1.reward_se / (ymax - ymin);
            fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s'/>\n", px, py - e, px, py + e, color);
        }
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3.5' fill='%s'/>\n", px, py, color);
        if (i < first_lpi || fabs(log10(betas[i - first_lpi]) - floor(log10(betas[i - first_lpi]) + 0.5)) < 1e-3)
            /* only powers of ten of beta_kl, to stay readable */
            fprintf(f, "<text x='%.1f' y='%.1f' font-size='10'>%s</text>\n", px + 5, py - 5,
                    i < first_lpi ? rows[i].name : rows[i].name + 4);
    }
#undef SX
#undef SY
#undef VAL
}

static void write_svg(const char *path, const char *title, const row *rows, size_t n, size_t first_lpi)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='1100' height='470' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n");
    fprintf(f, "<text x='550' y='20' text-anchor='middle' font-size='15'>%s: LPI over beta_kl (blue) and the "
               "baselines (red); bars +- 2 se</text>\n", title);
    panel(f, rows, n, first_lpi, 0, 90, 45, 420, 360);
    panel(f, rows, n, first_lpi, 1, 640, 45, 420, 360);
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* Train every method on the task, print the table, write the plot. */
static void run(const task *t, const char *dir)
{
    static row rows[N_ROWS];
    const size_t first = t->logging ? 0 : 1, first_lpi = 4;
    float *ret = (float *)xcalloc(t->n_train, sizeof(float)), *prop = (float *)xcalloc(t->n_train, sizeof(float));
    float *adv = (float *)xcalloc(t->n_train, sizeof(float));
    polopt_mips_scratch scratch;
    char path[1024];
    size_t i, k, small;
    double clicks = 0.0;
    for (i = 0; i < t->n_train; ++i) clicks += t->click[i];
    printf("\n=== %s: P = %lu items, D = %lu, %lu training rows (click rate %.4f), %lu held out; %d epochs each\n",
           t->name, (unsigned long)t->index.n, (unsigned long)t->D, (unsigned long)t->n_train, clicks / t->n_train,
           (unsigned long)t->n_test, EPOCHS);
    if (t->best > 0.0) printf("  (the best greedy policy, argmax_a r_hat(x, a), has iAR@1 = %.4f)\n", t->best);
    memset(rows, 0, sizeof rows);
    check(polopt_mips_scratch_init(&scratch, &t->index, 128, NULL), "polopt_mips_scratch_init", "");
    if (t->logging) {
        strcpy(rows[0].name, "mu (logging)");
        rows[0].pi = *t->logging; /* read only: not freed here */
    }
    for (i = 0; i < t->n_train; ++i) ret[i] = 1.0f;
    strcpy(rows[1].name, "mu_hat (CE)");
    train(t, &rows[1].pi, ret, NULL, POLOPT_CORRECTION_NONE);
    strcpy(rows[2].name, "L_mu");
    train(t, &rows[2].pi, t->click, NULL, POLOPT_CORRECTION_NONE);
    propensities(t, &rows[1].pi, prop);
    strcpy(rows[3].name, "IPS (clip 30)");
    train(t, &rows[3].pi, t->click, prop, POLOPT_CORRECTION_FIRST_ORDER);
    advantages(t, &rows[1].pi, adv);
    for (k = 0; k < N_BETAS; ++k) {
        row *r = rows + first_lpi + k;
        check(polopt_lpi_weights(t->n_train, adv, betas[k], ret, NULL), "polopt_lpi_weights", "");
        for (small = 0, i = 0; i < t->n_train; ++i) small += ret[i] < 1e-6f;
        snprintf(r->name, sizeof r->name, "LPI beta_kl = %g", (double)betas[k]);
        train(t, &r->pi, ret, NULL, POLOPT_CORRECTION_NONE);
        if (small) printf("  (%s: %lu of %lu weights below 1e-6)\n", r->name, (unsigned long)small,
                          (unsigned long)t->n_train);
    }
    printf("  %-20s %-17s  %-17s  %-7s  %s\n", "policy", "AR@1", "iAR@1", "value", "JS(pi_hat || mu_hat)");
    for (i = first; i < N_ROWS; ++i) {
        const row *r = rows + i;
        evaluate(t, rows + i, &rows[1].pi, &scratch);
        printf("  %-20s %.4f +- %.4f  %.4f +- %.4f  %.4f   %.4f +- %.4f\n", r->name, r->ar1.reward, r->ar1.reward_se,
               r->iar1.reward, r->iar1.reward_se, r->value, r->js.js, r->js.js_se);
    }
    snprintf(path, sizeof path, "%s/lpi_frontier_%s.svg", dir, t->name);
    write_svg(path, t->name, rows + 1, N_ROWS - 1, first_lpi - 1);
    printf("  wrote %s\n", path);
    for (i = 1; i < N_ROWS; ++i) polopt_policy_free(&rows[i].pi);
    polopt_mips_scratch_free(&scratch);
    free(ret), free(prop), free(adv);
}

/* ---- 1. the semi-synthetic task ---- */
#define SYN_P 10000
#define SYN_L 32
#define SYN_TRAIN 20000
#define SYN_TEST 2000

static void synthetic(task *t, polopt_synth *synth, polopt_policy *mu, polopt_synth_task truth[2], float **taste)
{
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_policy_config pc = polopt_policy_config_default(SYN_L, SYN_L);
    polopt_estimator draw;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_rng rng;
    const size_t N = SYN_TRAIN + SYN_TEST;
    float *items = (float *)xcalloc((size_t)SYN_P * SYN_L, sizeof(float)), H[32 * SYN_L];
    double best = 0.0;
    size_t u, b, c, a;
    memset(t, 0, sizeof *t);
    t->name = "synthetic", t->D = SYN_L, t->n_train = SYN_TRAIN, t->n_test = SYN_TEST;
    sc.n_items = SYN_P, sc.dim = SYN_L, sc.context_mixing = 0.0; /* x_u = the mean of the consumed items */
    sc.reward_bias = -3.0, sc.reward_scale = 2.0;
    check(polopt_synth_init(synth, &sc), "polopt_synth_init", synth->err.message);
    check(polopt_synth_items(synth, 0, SYN_P, items), "polopt_synth_items", synth->err.message);
    hc.seed = 7;
    check(polopt_mips_init_hnsw(&t->index, SYN_P, SYN_L, items, 1, &hc), "polopt_mips_init_hnsw", t->index.err.message);
    free(items);
    t->X = (float *)xcalloc(N * SYN_L, sizeof(float));
    *taste = (float *)xcalloc(N * SYN_L, sizeof(float));
    t->act = (uint32_t *)xcalloc(N, sizeof(uint32_t));
    t->click = (float *)xcalloc(N, sizeof(float));
    for (u = 0; u < N; ++u)
        check(polopt_synth_user(synth, u, t->X + u * SYN_L, *taste + u * SYN_L), "polopt_synth_user",
              synth->err.message);
    truth[0].synth = synth, truth[0].items = t->index.vectors, truth[0].tastes = *taste, truth[0].n = SYN_TRAIN;
    truth[1] = truth[0];
    truth[1].tastes = *taste + (size_t)SYN_TRAIN * SYN_L, truth[1].n = SYN_TEST;
    t->r_hat = polopt_synth_reward, t->r_train = truth, t->r_test = truth + 1;
    /* the logging policy mu = softmax(x^T beta / 0.2), one exact draw per user (REINFORCE draws exactly) */
    pc.temperature = 0.2f;
    check(polopt_policy_init(mu, &pc), "polopt_policy_init", mu->err.message);
    ec.method = POLOPT_METHOD_REINFORCE, ec.S = 2, ec.temperature = pc.temperature, ec.seed = 11;
    check(polopt_estimator_init(&draw, &t->index, &ec), "polopt_estimator_init", draw.err.message);
    polopt_rng_seed(&rng, 12);
    for (b = 0; b < N; b += 32) {
        const size_t m = N - b < 32 ? N - b : 32;
        check(polopt_policy_embed(mu, m, t->X + b * SYN_L, SYN_L, H), "polopt_policy_embed", mu->err.message);
        check(polopt_estimator_set(&draw, m, H, NULL), "polopt_estimator_set", draw.err.message);
        for (c = 0; c < m; ++c) {
            polopt_draws d;
            float r = 0.0f;
            check(polopt_estimator_draws(&draw, c, &d), "polopt_estimator_draws", draw.err.message);
            t->act[b + c] = d.ids[0];
            check(polopt_synth_rewards(synth, *taste + (b + c) * SYN_L, 1, t->index.vectors + (size_t)d.ids[0] * SYN_L,
                                       &r), "polopt_synth_rewards", synth->err.message);
            t->click[b + c] = polopt_rng_uniform(&rng) < r ? 1.0f : 0.0f;
        }
    }
    polopt_estimator_free(&draw);
    t->logging = mu;
    t->baseline = POLOPT_LPI_MAX;
    t->estimator = polopt_estimator_config_default();
    t->estimator.K = 64, t->estimator.S = 256, t->estimator.epsilon = 0.5f, t->estimator.seed = 3;
    t->lr = 0.01f;
    { /* the best any greedy policy could do on the held-out users: mean max_a r(a, u) */
        float *r = (float *)xcalloc(SYN_P, sizeof(float));
        for (u = 0; u < SYN_TEST; ++u) {
            double mx = 0.0;
            check(polopt_synth_rewards(synth, truth[1].tastes + u * SYN_L, SYN_P, t->index.vectors, r), "rewards", "");
            for (a = 0; a < SYN_P; ++a) mx = r[a] > mx ? r[a] : mx;
            best += mx / SYN_TEST;
        }
        free(r);
        t->best = best;
    }
}

/* ---- 2. the Open Bandit Dataset sample ---- */
static const char *const user_features[4] = {"user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"};

/* The bts log of a campaign: one-hot user features and a constant, rows reordered so that the even 1,000-row blocks
   (training) come first; the cross-fitted logistic reward model's predictions r_hat(x_i, a) = U_i^T e_a. */
static int obd(task *t, const char *dir, const char *campaign, polopt_linear_task lin[2], float **U_out,
               float **beta_out)
{
    polopt_csv_config cc = polopt_csv_config_default();
    polopt_reward_model_config mc = polopt_reward_model_config_default();
    polopt_logged lg;
    char path[1024];
    double *q;
    float *U, *beta;
    size_t i, j, A, at;
    int pass;
    memset(t, 0, sizeof *t);
    cc.action = "item_id", cc.propensity = "propensity_score", cc.reward = "click";
    cc.categorical = user_features, cc.n_categorical = 4, cc.max_levels = 16;
    snprintf(path, sizeof path, "%s/bts/%s/%s.csv", dir, campaign, campaign);
    if (polopt_logged_load_csv(&lg, path, &cc) != POLOPT_OK) {
        printf("\n=== obd-%s: skipped (%s)\n", campaign, lg.err.message);
        return 0;
    }
    A = lg.n_actions;
    t->name = strcmp(campaign, "men") == 0 ? "obd-men" : "obd-women";
    t->D = lg.dim + 1;
    q = (double *)xcalloc(lg.n * A, sizeof(double));
    mc.kind = POLOPT_MODEL_LOGISTIC, mc.lambda = 10.0f; /* as ope_obd.c */
    check(polopt_reward_model_crossfit(&lg, &mc, q), "polopt_reward_model_crossfit", "");
    t->X = (float *)xcalloc(lg.n * t->D, sizeof(float));
    t->act = (uint32_t *)xcalloc(lg.n, sizeof(uint32_t));
    t->click = (float *)xcalloc(lg.n, sizeof(float));
    U = (float *)xcalloc(lg.n * A, sizeof(float));
    for (at = 0, pass = 0; pass < 2; ++pass) /* the even blocks, then the odd ones */
        for (i = 0; i < lg.n; ++i) {
            if ((int)((i / 1000) % 2) != pass) continue;
            for (j = 0; j < lg.dim; ++j) t->X[at * t->D + j] = lg.X[i * lg.dim + j];
            t->X[at * t->D + lg.dim] = 1.0f;
            t->act[at] = lg.action[i], t->click[at] = lg.reward[i];
            for (j = 0; j < A; ++j) U[at * A + j] = (float)q[i * A + j];
            if (pass == 0) ++t->n_train;
            ++at;
        }
    t->n_test = lg.n - t->n_train;
    beta = (float *)xcalloc(A * A, sizeof(float));
    for (j = 0; j < A; ++j) beta[j * A + j] = 1.0f;
    check(polopt_mips_init_exact(&t->index, A, A, beta, 0, NULL), "polopt_mips_init_exact", t->index.err.message);
    lin[0].U = U, lin[0].items = beta, lin[0].n = t->n_train, lin[0].P = A, lin[0].L = A, lin[0].bias = 0.0f;
    lin[1] = lin[0];
    lin[1].U = U + t->n_train * A, lin[1].n = t->n_test;
    t->r_hat = polopt_linear_reward, t->r_train = lin, t->r_test = lin + 1;
    t->baseline = POLOPT_LPI_MEAN;
    t->estimator = polopt_estimator_config_default();
    t->estimator.method = POLOPT_METHOD_EXACT;
    t->lr = 0.02f;
    *U_out = U, *beta_out = beta;
    free(q);
    polopt_logged_free(&lg);
    return 1;
}

static void task_free(task *t)
{
    polopt_mips_free(&t->index);
    free(t->X), free(t->act), free(t->click);
}

int main(int argc, char **argv)
{
    static const char *campaigns[2] = {"men", "women"};
    const char *dir = argc > 1 ? argv[1] : ".", *obd_dir = argc > 2 ? argv[2] : "../shared/data/obd";
    polopt_synth synth;
    polopt_policy mu;
    polopt_synth_task truth[2];
    polopt_linear_task lin[2];
    float *taste, *U, *beta;
    task t;
    int c;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("Local policy improvement (Liang & Vlassis 2023) against mu_hat, L_mu and the IPS cross-entropy");
    synthetic(&t, &synth, &mu, truth, &taste);
    run(&t, dir);
    task_free(&t);
    polopt_policy_free(&mu);
    polopt_synth_free(&synth);
    free(taste);
    for (c = 0; c < 2; ++c)
        if (obd(&t, obd_dir, campaigns[c], lin, &U, &beta)) {
            run(&t, dir);
            task_free(&t);
            free(U), free(beta);
        }
    return 0;
}
