/* 04_topk_simulation.c - the two 10-item simulations of the top-K off-policy correction paper, with the library's
   correction weights, estimator and trainer.

   What it shows (Chen, Beutel, Covington, Jain, Belletti & Chi, "Top-K Off-Policy Correction for a REINFORCE
   Recommender System", WSDM 2019): a softmax policy pi over 10 items with free logits theta_i, learned from actions
   a_j logged by a behaviour policy b with rewards r(a_j), by the REINFORCE step
       theta_i += eta * w(a_j) * r(a_j) * (1[j = i] - pi(a_i))            (r(a_j) grad_theta_i log pi(a_j), weighted)
   with the weight w of polopt_correction_weights:
       no correction   w = 1                                  fixed point pi(a_i) ~ r(a_i) b(a_i): b's bias is learned
       first order     w = pi(a_j) / b(a_j)                   the gradient of E_pi[r]: all mass on the best item
       top-K           w = pi / b * K (1 - pi(a_j))^(K - 1)   an item already likely enough to be among K draws of pi
                                                              is pushed less, so the mass spreads over good items
     Simulation 1   r(a_i) = i, b(a_i) = (11 - i) / 55 (skewed to the worst items): no correction converges to
                    pi(a_i) = i (11 - i) / 220, first order to a_10.
     Simulation 2   r(a_1) = 10, r(a_2) = 9, the others 1; uniform b; K = 2: first order puts pi(a_1) -> 1, top-K keeps
                    clear mass on a_2 in the right order.  Its fixed point solves r_i (1 - pi_i) = const on {a_1, a_2}:
                    pi(a_1) = 20/38, pi(a_2) = 18/38, the others 0.
   The free logits are a polopt policy: P = 10 items whose embeddings beta are the rows of the 10 x 10 identity (an
   exact MIPS index), D = 1 and every context x = [1], so theta (1 x 10) is the logit vector and f(a_i) = theta_i.

   Each method runs twice:
     expected   the exact expected update, deterministic: every iteration the estimator (EXACT) gives log pi and
                grad_h log pi = e_j - pi of all 10 actions, polopt_correction_weights the weights, and
                theta += eta sum_j b(a_j) w_j r(a_j) (e_j - pi), plain gradient ascent as in the paper.  The step
                size matters for top-K: on {a_1, a_2} the update of u = theta_1 - theta_2 is
                eta 2 pi_1 pi_2 (1 - 19 (pi_1 - pi_2)), whose slope at the fixed point is -eta 76 (pi_1 pi_2)^2 =
                -4.72 eta, so the iteration is stable only for eta < 0.42 (and monotone below 0.21); at eta = 0.5 it
                settles into a 2-cycle between pi(a_1) = 0.70 and 0.37 that never reaches 20/38;
     trainer    polopt_trainer_epoch on a log of N_LOG rows sampled from b (x = 1, a ~ b, return r(a), propensity
                b(a)): minibatches of BATCH, one Adam step each, correction NONE, FIRST_ORDER or TOP_K.  On a finite
                log the fixed points move: b(a_j) becomes the log's frequency n_j / N where it weighs the data (not
                where it divides, as the propensity).  Both sets of fixed points are printed.
   The fixed points, for data drawn from d and propensities b, with g_j = r_j d_j / b_j: no correction pi_j ~ r_j d_j;
   first order, all mass on argmax g_j; top-K, g_j (1 - pi_j)^(K - 1) equal on the items with pi_j > 0 (and smaller
   at the others), which this program solves by bisection (K = 2, d = b uniform: 10 (1 - pi_1) = 9 (1 - pi_2)).

   What to look at: the two tables (final pi of every item against the predicted fixed points) and the two figures,
   topk_sim1.svg and topk_sim2.svg: pi(a_i) over iterations (top row: expected update, log scale) and over epochs
   (bottom row: the trainer), one panel per method, the fixed points as dashed grey lines.  In simulation 1 without
   correction r(a_i) b(a_i) = i (11 - i) / 55 is the same for a_i and a_(11-i), so their curves coincide: a_6..a_10
   are drawn dashed over a_5..a_1.  The trainer's pi keeps moving by a few thousandths around its fixed point: Adam on
   minibatch gradients never settles exactly.

   Run: make examples && build/04_topk_simulation [directory for the SVG files, default .]   (about 2 s) */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P 10            /* items */
#define ITERS 3000      /* iterations of the expected update */
#define ETA 0.2         /* its step size: stable below 0.42 (see above) */
#define DENSE 100       /* the curves keep every one of the first DENSE iterations, then one in EVERY */
#define EVERY 10
#define N_LOG 20000     /* rows of the sampled log */
#define BATCH 500       /* trainer minibatch: N_LOG / BATCH = 40 Adam steps an epoch */
#define EPOCHS 60       /* trainer epochs */
#define LR 0.01f        /* Adam step size */
#define TOP_K 2         /* K of the top-K correction (simulation 2) */
#define LOG_SEED 2019   /* the sampled log */
#define MAX_POINTS (DENSE + ITERS / EVERY + 1)

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "\n%s failed: %s (%s)\n", what, polopt_strerror(rc), message);
        exit(1);
    }
}

/* pi over the course of one run: n points, at iteration (or epoch) t[k]. */
typedef struct curve {
    int n;
    double t[MAX_POINTS];
    double pi[MAX_POINTS][P];
} curve;

/* One simulation: rewards, behaviour, its log, and for each of its two methods the fixed points and the curves. */
typedef struct simulation {
    const char *name, *file, *setting;
    double r[P], b[P], freq[P];  /* rewards, behaviour policy, action frequencies of the sampled log */
    polopt_correction kind[2];   /* the two methods compared */
    const char *method[2];
    double fixed[2][P];          /* fixed point of each method under b */
    double fixed_log[2][P];      /* ... and on the sampled log */
    curve expected[2], trainer[2];
    const char *color[P];        /* line colour of each item */
    const char *legend[P];       /* legend entry of each item, NULL: none (shares the one before) */
    int dashed[P];               /* 1: the item's line is dashed */
} simulation;

static polopt_correction_config correction(polopt_correction kind)
{
    polopt_correction_config c = polopt_correction_config_default(); /* cap 0, no normalisation, no KL */
    c.kind = kind;
    c.K = kind == POLOPT_CORRECTION_TOP_K ? TOP_K : 1;
    return c;
}

/* Where the update with correction kind comes to rest on data drawn from d with propensities b (see the top). */
static void fixed_point(polopt_correction kind, const double *r, const double *d, const double *b, double *out)
{
    double g[P], g_max = 0.0, lo, hi, sum = 0.0;
    int i, best = 0, it;
    for (i = 0; i < P; ++i) {
        g[i] = r[i] * d[i] / b[i];
        if (g[i] > g[best]) best = i;
        g_max = g[i] > g_max ? g[i] : g_max;
    }
    if (kind == POLOPT_CORRECTION_NONE) { /* pi ~ r d */
        for (i = 0; i < P; ++i) sum += r[i] * d[i];
        for (i = 0; i < P; ++i) out[i] = r[i] * d[i] / sum;
        return;
    }
    if (kind == POLOPT_CORRECTION_FIRST_ORDER || TOP_K == 1) {
        for (i = 0; i < P; ++i) out[i] = i == best ? 1.0 : 0.0;
        return;
    }
    /* top-K: pi_i = max(0, 1 - (c / g_i)^(1 / (K - 1))), with c in (0, max g) such that sum pi = 1 */
    lo = 0.0, hi = g_max;
    for (it = 0; it < 200; ++it) {
        const double c = 0.5 * (lo + hi);
        for (sum = 0.0, i = 0; i < P; ++i) sum += c < g[i] ? 1.0 - pow(c / g[i], 1.0 / (TOP_K - 1)) : 0.0;
        if (sum > 1.0) lo = c;
        else hi = c;
    }
    for (i = 0; i < P; ++i) out[i] = lo < g[i] ? 1.0 - pow(lo / g[i], 1.0 / (TOP_K - 1)) : 0.0;
}

/* The free-logit policy: D = 1, L = P, theta = 0 (uniform pi). */
static void logit_policy(polopt_policy *pol)
{
    polopt_policy_config pc = polopt_policy_config_default(1, P);
    pc.init = POLOPT_INIT_RANDOM;
    pc.init_scale = 0.0f;
    check(polopt_policy_init(pol, &pc), "polopt_policy_init", pol->err.message);
}

/* pi = softmax(theta), appended to c at time t. */
static void record(curve *c, double t, const polopt_policy *pol)
{
    float pi[P];
    int i;
    check(polopt_softmax(P, pol->theta, pol->temperature, pi), "polopt_softmax", "theta");
    c->t[c->n] = t;
    for (i = 0; i < P; ++i) c->pi[c->n][i] = pi[i];
    ++c->n;
}

/* The expected update: theta += eta sum_j b_j w_j r_j grad_theta log pi(a_j), exact, for ITERS iterations. */
static void run_expected(const simulation *s, int m, const polopt_mips *index, curve *out)
{
    const polopt_correction_config cc = correction(s->kind[m]);
    const float x = 1.0f;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_estimator est;
    polopt_policy pol;
    uint32_t actions[P];
    float h[P], log_pi[P], grad[P * P], w[P], b[P];
    int it, i, j;
    for (j = 0; j < P; ++j) actions[j] = (uint32_t)j, b[j] = (float)s->b[j];
    ec.method = POLOPT_METHOD_EXACT;
    ec.batch = 1;
    check(polopt_estimator_init(&est, index, &ec), "polopt_estimator_init", est.err.message);
    logit_policy(&pol);
    out->n = 0;
    for (it = 0; it <= ITERS; ++it) {
        if (it < DENSE || it % EVERY == 0) record(out, it, &pol);
        if (it == ITERS) break;
        check(polopt_policy_embed(&pol, 1, &x, 1, h), "polopt_policy_embed", pol.err.message); /* h = theta */
        check(polopt_estimator_set(&est, 1, h, NULL), "polopt_estimator_set", est.err.message);
        /* log pi(a_j) and grad_h log pi(a_j) = beta_j - E_pi[beta] = e_j - pi, row j of grad */
        check(polopt_estimator_log_prob(&est, 0, P, actions, log_pi, grad), "polopt_estimator_log_prob",
              "actions 0..9 of context 0"); /* a const call: its message goes to the log callback, not est.err */
        check(polopt_correction_weights(&cc, P, log_pi, b, w, NULL), "polopt_correction_weights",
              "log pi must be <= 0 and b in (0, 1]");
        for (i = 0; i < P; ++i) {
            double step = 0.0;
            for (j = 0; j < P; ++j) step += s->b[j] * (double)w[j] * s->r[j] * (double)grad[j * P + i];
            pol.theta[i] += (float)(ETA * step);
        }
    }
    polopt_policy_free(&pol);
    polopt_estimator_free(&est);
}

/* The library trainer on the sampled log, EPOCHS epochs. */
static void run_trainer(const simulation *s, int m, const polopt_mips *index, const polopt_dataset *data, curve *out)
{
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_trainer trainer;
    polopt_train_stats stats;
    polopt_policy pol;
    int e;
    tc.estimator.method = POLOPT_METHOD_EXACT;
    tc.estimator.batch = BATCH;
    tc.adam.lr = LR;
    tc.correction = correction(s->kind[m]);
    logit_policy(&pol);
    check(polopt_trainer_init(&trainer, &pol, index, &tc), "polopt_trainer_init", trainer.err.message);
    out->n = 0;
    record(out, 0, &pol);
    for (e = 1; e <= EPOCHS; ++e) {
        check(polopt_trainer_epoch(&trainer, data, &stats), "polopt_trainer_epoch", trainer.err.message);
        record(out, e, &pol);
    }
    polopt_trainer_free(&trainer);
    polopt_policy_free(&pol);
}

/* The log: N_LOG rows with x = 1, a ~ b, return r(a), propensity b(a); its action frequencies into s->freq. */
static void sample_log(simulation *s, uint32_t *action, float *ret, float *propensity)
{
    polopt_rng rng;
    float b[P];
    size_t t;
    int j;
    for (j = 0; j < P; ++j) b[j] = (float)s->b[j], s->freq[j] = 0.0;
    check(polopt_rng_seed(&rng, LOG_SEED), "polopt_rng_seed", "");
    for (t = 0; t < N_LOG; ++t) {
        check(polopt_rng_categorical(&rng, P, b, &action[t]), "polopt_rng_categorical", "b");
        ret[t] = (float)s->r[action[t]];
        propensity[t] = b[action[t]];
        s->freq[action[t]] += 1.0 / N_LOG;
    }
}

/* ---- The figure: a 2 x 2 grid of panels (rows: expected update, trainer; columns: the two methods). */

/* One panel: every item's pi over c's times, the fixed points dashed.  log_x: the x axis is log(1 + t). */
static void panel(FILE *f, const simulation *s, const curve *c, const double *fixed, int log_x, double x0, double y0,
                  double w, double h, const char *title, const char *xlabel)
{
    static const double log_ticks[] = {0, 1, 10, 100, 1000};
    const double t_max = c->t[c->n - 1], x_max = log_x ? log1p(t_max) : t_max;
    double v_max = 0.0, v_step;
    int k, i, t, n_ticks;
    for (k = 0; k < c->n; ++k)
        for (i = 0; i < P; ++i) v_max = c->pi[k][i] > v_max ? c->pi[k][i] : v_max;
    for (i = 0; i < P; ++i) v_max = fixed[i] > v_max ? fixed[i] : v_max;
    /* the y axis: 0 to 1 in steps of 0.2, or a smaller range in steps of 0.05 */
    v_step = v_max > 0.45 ? 0.2 : 0.05;
    n_ticks = (int)ceil(v_max / v_step - 1e-6);
    v_max = v_step * n_ticks;
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' font-size='14'>%s</text>\n", x0 + w / 2, y0 - 8, title);
    for (t = 0; t <= 5; ++t) { /* x grid: 0, 1, 10, 100, 1000 and the end (log), or six even steps */
        const double tv = log_x ? (t < 5 ? log_ticks[t] : t_max) : t_max * t / 5;
        const double gx = x0 + w * (log_x ? log1p(tv) : tv) / x_max;
        if (log_x && t < 5 && tv >= t_max) continue;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", gx, y0, gx, y0 + h);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.0f</text>\n", gx, y0 + h + 16, tv);
    }
    for (t = 0; t <= n_ticks; ++t) { /* y grid */
        const double gy = y0 + h - h * t / n_ticks;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, gy, x0 + w, gy);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.2f</text>\n", x0 - 5, gy + 4, v_step * t);
    }
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='black'/>\n", x0, y0, w, h);
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%s</text>\n", x0 + w / 2, y0 + h + 34, xlabel);
    fprintf(f, "<text transform='translate(%.1f %.1f) rotate(-90)' text-anchor='middle'>pi(a_i)</text>\n", x0 - 44,
            y0 + h / 2);
    for (i = 0; i < P; ++i) { /* the fixed points, each level once */
        int j, seen = 0;
        for (j = 0; j < i; ++j) seen |= fabs(fixed[j] - fixed[i]) < 1e-9;
        if (seen) continue;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#888' stroke-dasharray='5,4'/>\n", x0,
                y0 + h - h * fixed[i] / v_max, x0 + w, y0 + h - h * fixed[i] / v_max);
    }
    for (i = 0; i < P; ++i) { /* the later items on top (dashed where they may hide an earlier one) */
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.8'%s points='", s->color[i],
                s->dashed[i] ? " stroke-dasharray='6,4'" : "");
        for (k = 0; k < c->n; ++k)
            fprintf(f, "%.1f,%.1f ", x0 + w * (log_x ? log1p(c->t[k]) : c->t[k]) / x_max,
                    y0 + h - h * c->pi[k][i] / v_max);
        fprintf(f, "'/>\n");
    }
}

static void write_svg(const char *path, const simulation *s)
{
    const double W = 1120, H = 760, pw = 380, ph = 260, px[2] = {90, 560}, py[2] = {80, 430};
    FILE *f = fopen(path, "w");
    char title[160], xlabel[160];
    int m, i, row;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='24' text-anchor='middle' font-size='16'>%s: %s</text>\n", (px[0] + px[1] + pw) / 2,
            s->name, s->setting);
    fprintf(f, "<text x='%.0f' y='44' text-anchor='middle' fill='#555'>dashed: the fixed points (top row: of b; "
               "bottom row: of the sampled log)</text>\n", (px[0] + px[1] + pw) / 2);
    for (row = 0; row < 2; ++row)
        for (m = 0; m < 2; ++m) {
            if (row == 0) {
                snprintf(title, sizeof title, "%s - expected update (eta = %g)", s->method[m], ETA);
                snprintf(xlabel, sizeof xlabel, "iteration (log scale)");
            } else {
                snprintf(title, sizeof title, "%s - trainer on %d logged rows", s->method[m], N_LOG);
                snprintf(xlabel, sizeof xlabel, "epoch (%d Adam steps of %d rows, lr %g)", N_LOG / BATCH, BATCH,
                         (double)LR);
            }
            panel(f, s, row == 0 ? &s->expected[m] : &s->trainer[m], row == 0 ? s->fixed[m] : s->fixed_log[m],
                  row == 0, px[m], py[row], pw, ph, title, xlabel);
        }
    for (i = 0; i < P; ++i) { /* the legend, right of the panels */
        const double ly = py[0] + 10 + 20 * i;
        if (!s->legend[i]) continue;
        fprintf(f, "<line x1='960' y1='%.1f' x2='985' y2='%.1f' stroke='%s' stroke-width='3'%s/>\n", ly, ly,
                s->color[i], s->dashed[i] ? " stroke-dasharray='6,4'" : "");
        fprintf(f, "<text x='990' y='%.1f'>%s</text>\n", ly + 4, s->legend[i]);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* ---- The tables */

static void print_table(const simulation *s)
{
    int i, m;
    printf("\n%s: %s\n", s->name, s->setting);
    printf("%-5s %3s %7s %7s |", "", "", "", "");
    for (m = 0; m < 2; ++m) printf(" %-35.35s |", s->method[m]);
    printf("\n%-5s %3s %7s %7s |", "", "", "", "log");
    for (m = 0; m < 2; ++m) printf(" %8s %8s | %7s %7s |", "fixed pt", "expected", "fixed pt", "trainer");
    printf("\n%-5s %3s %7s %7s |", "item", "r", "b", "freq.");
    for (m = 0; m < 2; ++m) printf(" %8s %8s | %7s %7s |", "of b", "update", "of log", "");
    printf("\n");
    for (i = 0; i < P; ++i) {
        printf("a_%-3d %3.0f %7.4f %7.4f |", i + 1, s->r[i], s->b[i], s->freq[i]);
        for (m = 0; m < 2; ++m)
            printf(" %8.4f %8.4f | %7.4f %7.4f |", s->fixed[m][i], s->expected[m].pi[s->expected[m].n - 1][i],
                   s->fixed_log[m][i], s->trainer[m].pi[s->trainer[m].n - 1][i]);
        printf("\n");
    }
}

/* max_i |pi_i - fixed_i| at the end of curve c. */
static double distance(const curve *c, const double *fixed)
{
    double d = 0.0;
    int i;
    for (i = 0; i < P; ++i) d = fmax(d, fabs(c->pi[c->n - 1][i] - fixed[i]));
    return d;
}

static simulation sims[2]; /* static: the curves are large */

int main(int argc, char **argv)
{
    static const char *tab10[P] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    static const char *legend1[P] = {"a_1  r=1  b=10/55", "a_2  r=2  b=9/55",  "a_3  r=3  b=8/55",
                                     "a_4  r=4  b=7/55",  "a_5  r=5  b=6/55",  "a_6  r=6  b=5/55",
                                     "a_7  r=7  b=4/55",  "a_8  r=8  b=3/55",  "a_9  r=9  b=2/55",
                                     "a_10 r=10 b=1/55"};
    const char *dir = argc > 1 ? argv[1] : ".";
    static float X[N_LOG], ret[N_LOG], propensity[N_LOG];
    static uint32_t action[N_LOG];
    float identity[P * P];
    polopt_mips index;
    polopt_logged_returns returns;
    polopt_dataset data;
    char path[1024];
    double d;
    int i, k, m, ok = 1;

    /* The catalogue: beta = I (10 x 10), so f(a_i) = h^T beta_i = h_i, and h = theta for x = [1]. */
    memset(identity, 0, sizeof identity);
    for (i = 0; i < P; ++i) identity[i * P + i] = 1.0f;
    check(polopt_mips_init_exact(&index, P, P, identity, 1, NULL), "polopt_mips_init_exact", index.err.message);
    for (k = 0; k < N_LOG; ++k) X[k] = 1.0f;

    /* Simulation 1: r(a_i) = i, b(a_i) = (11 - i) / 55; no correction against the first-order correction. */
    sims[0].name = "simulation 1", sims[0].file = "topk_sim1.svg";
    sims[0].setting = "r(a_i) = i, b(a_i) = (11 - i)/55";
    sims[0].kind[0] = POLOPT_CORRECTION_NONE, sims[0].method[0] = "no correction";
    sims[0].kind[1] = POLOPT_CORRECTION_FIRST_ORDER, sims[0].method[1] = "first-order correction";
    for (i = 0; i < P; ++i) {
        sims[0].r[i] = i + 1, sims[0].b[i] = (10 - i) / 55.0;
        sims[0].color[i] = tab10[i], sims[0].legend[i] = legend1[i], sims[0].dashed[i] = i >= P / 2;
    }
    /* Simulation 2: r = (10, 9, 1, ..., 1), uniform b; the first-order correction against top-K with K = 2. */
    sims[1].name = "simulation 2", sims[1].file = "topk_sim2.svg";
    sims[1].setting = "r(a_1) = 10, r(a_2) = 9, r(a_3..a_10) = 1, uniform b, K = 2";
    sims[1].kind[0] = POLOPT_CORRECTION_FIRST_ORDER, sims[1].method[0] = "first-order correction";
    sims[1].kind[1] = POLOPT_CORRECTION_TOP_K, sims[1].method[1] = "top-K correction (K = 2)";
    for (i = 0; i < P; ++i) {
        sims[1].r[i] = i == 0 ? 10 : i == 1 ? 9 : 1, sims[1].b[i] = 1.0 / P;
        sims[1].color[i] = i == 0 ? "#d62728" : i == 1 ? "#1f77b4" : "#aaaaaa";
        sims[1].legend[i] = i == 0 ? "a_1  r=10" : i == 1 ? "a_2  r=9" : i == 2 ? "a_3..a_10  r=1" : NULL;
    }

    printf("Chen et al. (WSDM 2019), the stateless 10-item simulations.  Softmax over free logits = a polopt policy\n"
           "with D = 1, x = [1], beta = I (10 x 10).\n"
           "  expected update: exact, %d iterations of plain gradient ascent, eta = %g\n"
           "  trainer:         polopt_trainer_epoch, EXACT estimator, %d logged rows drawn from b (seed %d),\n"
           "                   batch %d, Adam lr %g, %d epochs (%d steps)\n",
           ITERS, ETA, N_LOG, LOG_SEED, BATCH, (double)LR, EPOCHS, EPOCHS * (N_LOG / BATCH));

    memset(&returns, 0, sizeof returns);
    returns.action = action, returns.ret = ret, returns.propensity = propensity;
    memset(&data, 0, sizeof data);
    data.n = N_LOG, data.X = X, data.ldx = 1, data.returns = &returns;
    for (k = 0; k < 2; ++k) {
        simulation *s = &sims[k];
        sample_log(s, action, ret, propensity);
        for (m = 0; m < 2; ++m) {
            fixed_point(s->kind[m], s->r, s->b, s->b, s->fixed[m]);
            fixed_point(s->kind[m], s->r, s->freq, s->b, s->fixed_log[m]);
            run_expected(s, m, &index, &s->expected[m]);
            run_trainer(s, m, &index, &data, &s->trainer[m]);
        }
        print_table(s);
        snprintf(path, sizeof path, "%s/%s", dir, s->file);
        write_svg(path, s);
        printf("pi over iterations and epochs: %s\n", path);
    }

    /* The paper's claims on the deterministic expected update; the trainer's distance to the fixed point of its
       log, for information (minibatch Adam keeps it moving by a few thousandths). */
    printf("\nchecks: max_i |pi(a_i) - fixed point| at the end\n");
    for (k = 0; k < 2; ++k)
        for (m = 0; m < 2; ++m) {
            const simulation *s = &sims[k];
            d = distance(&s->expected[m], s->fixed[m]);
            printf("  sim %d, %-25s expected update %.1e %-6s  trainer %.1e\n", k + 1, s->method[m], d,
                   d < 0.01 ? "ok" : "FAILED", distance(&s->trainer[m], s->fixed_log[m]));
            ok &= d < 0.01;
        }
    {
        const double *pi = sims[1].expected[1].pi[sims[1].expected[1].n - 1];
        printf("  sim 2, top-K: pi(a_1) = %.4f, pi(a_2) = %.4f against 20/38 = %.4f, 18/38 = %.4f\n", pi[0], pi[1],
               20.0 / 38, 18.0 / 38);
    }
    polopt_mips_free(&index);
    return ok ? 0 : 1;
}
