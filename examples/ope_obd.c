/* ope_obd.c - off-policy evaluation on real logs: the Open Bandit Dataset's own benchmark (ZOZOTOWN fashion
   e-commerce; Saito et al. 2021, §5).

   The dataset holds logs of two policies for the same campaign and the same week: uniform random and Bernoulli
   Thompson sampling (BTS).  Each log's click rate is an on-policy measurement of its policy's value.  So each policy
   can be evaluated off-policy on the other's log and the estimate compared with that measurement:
     BTS on the random log      truth: the BTS log's click rate
     random on the BTS log      truth: the random log's click rate
   Both policies fill 3 slots; each row is one (impression, slot), and a policy's probability of an item depends on
   the slot.  The target is therefore given in the Open Bandit Pipeline's layout, n x items x 3 (polopt_ope_evaluate
   with len_list = 3), each row read at its own slot.

   The BTS policy's action distribution is computed as obp computes it (BernoulliTS.compute_batch_action_dist with
   is_zozotown_prior): n_sim simulations, each drawing theta_a ~ Beta(alpha_a, beta_a) for every item from the
   campaign's production prior, ranking the items by theta and counting which item lands in which slot.  The prior
   is obp's (obp/policy/conf/prior_bts.yaml); the draws are polopt's generator and Marsaglia & Tsang's gamma method,
   not numpy's, so the distribution agrees with obp's up to Monte-Carlo error (about 1/sqrt(n_sim) relative).

   Every estimator of polopt.h with its standard error, 95% bootstrap interval, effective sample size and level,
   tuned by SLOPE (config.tune).  The reward model of DM and the doubly robust estimators is a logistic model per
   item on the one-hot user features, cross-fitted (no row is scored by a model that saw it).

   What to look at: the relative error |estimate - truth| / truth of each estimator, and whether its interval covers
   the truth.  10,000 rows and about 46-69 clicks a log: intervals are wide, and that is the honest answer.

   Last, the banner as a slate: the expected clicks of its 3 slots by the slate estimator IIPS (>>slates), the one
   this sample supports.

   Data: ../shared/data/obd (a 10,000-row sample per log, shipped with the Open Bandit Pipeline; Apache-2.0; data by
   ZOZO, Inc.; Saito et al., "Open Bandit Dataset and Pipeline", arXiv:2008.07146).
   Run: build/ope_obd [obd folder] [n_sim]   (after make examples; n_sim 100000 by default, obp's default) */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 3

/* The production prior of the BTS policy per campaign (obp/policy/conf/prior_bts.yaml), item by item. */
static const double men_alpha[34] = {47, 8, 62, 142, 3, 6, 100, 48, 23, 71, 61, 13, 16, 518, 30, 7, 4,
                                     23, 8, 10, 11, 11, 18, 121, 11, 4, 32, 30, 9, 22, 6, 23, 5, 54};
static const double men_beta[34] = {12198, 3566, 15993, 35522, 2367, 3100, 24665, 13210, 7061, 18061, 17449, 5644,
                                    6787, 111326, 8776, 3334, 2271, 7389, 2659, 3665, 4724, 3561, 5085, 27407,
                                    4601, 2923, 8897, 8654, 4000, 6580, 3174, 6766, 2602, 14506};
static const double women_alpha[46] = {12, 7, 984, 13, 15, 15, 11, 14, 9, 200, 72, 3, 14, 49, 1278, 3,
                                       325, 14, 27, 14, 169, 48, 47, 18, 40, 12, 447, 46, 5, 3, 5, 7,
                                       35, 34, 99, 30, 880, 51, 182, 6, 45, 39, 10, 24, 72, 229};
static const double women_beta[46] = {3612, 3173, 204484, 4517, 4765, 5331, 4131, 4728, 4028, 44280, 17918, 2309,
                                      4339, 12922, 270771, 2480, 68475, 5129, 7367, 5819, 38026, 13047, 11604,
                                      5394, 10912, 4439, 94485, 10700, 2679, 2319, 2578, 3288, 9566, 9775, 20120,
                                      7317, 172026, 13673, 37329, 3365, 10911, 10734, 4278, 7574, 16826, 47462};

static const char *const user_features[4] = {"user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"};

static polopt_logged load(const char *dir, const char *policy, const char *campaign)
{
    char path[1024];
    polopt_csv_config c = polopt_csv_config_default();
    polopt_logged d;
    c.action = "item_id", c.propensity = "propensity_score", c.reward = "click";
    c.position = "position", c.position_base = 1; /* slots 1, 2, 3 become 0, 1, 2 */
    c.categorical = user_features, c.n_categorical = 4; /* one-hot user features; no affinity columns (as obp) */
    c.max_levels = 16;
    snprintf(path, sizeof path, "%s/%s/%s/%s.csv", dir, policy, campaign, campaign);
    if (polopt_logged_load_csv(&d, path, &c) != POLOPT_OK) {
        fprintf(stderr, "%s\n", d.err.message);
        exit(1);
    }
    return d;
}

/* Gamma(shape, 1) for shape >= 1: Marsaglia & Tsang (2000), "A simple method for generating gamma variables". */
static double gamma_draw(polopt_rng *rng, double shape)
{
    const double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v, u;
        do {
            x = polopt_rng_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        u = polopt_rng_uniform(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

/* The BTS policy's probability of each item at each slot: out[a * SLOTS + k]. */
static void bts_action_dist(size_t A, const double *alpha, const double *beta, size_t n_sim, uint64_t seed,
                            double *out)
{
    polopt_rng rng;
    double *theta = (double *)malloc(A * sizeof(double));
    size_t s, a, k;
    polopt_rng_seed(&rng, seed);
    memset(out, 0, A * SLOTS * sizeof(double));
    for (s = 0; s < n_sim; ++s) {
        int taken[64] = {0};
        for (a = 0; a < A; ++a) { /* Beta(alpha, beta) = G_a / (G_a + G_b) */
            const double ga = gamma_draw(&rng, alpha[a]), gb = gamma_draw(&rng, beta[a]);
            theta[a] = ga / (ga + gb);
        }
        for (k = 0; k < SLOTS; ++k) { /* the k-th largest theta fills slot k */
            size_t best = A;
            for (a = 0; a < A; ++a)
                if (!taken[a] && (best == A || theta[a] > theta[best])) best = a;
            taken[best] = 1;
            out[best * SLOTS + k] += 1.0 / (double)n_sim;
        }
    }
    free(theta);
}

static double click_rate(const polopt_logged *d)
{
    double c = 0.0;
    size_t i;
    for (i = 0; i < d->n; ++i) c += d->reward[i];
    return c / (double)d->n;
}

/* Evaluate the policy dist (A x SLOTS) on log d, and print the table against the truth. */
static void evaluate(const char *title, const polopt_logged *d, const double *dist, double truth, double truth_se)
{
    const size_t n = d->n, A = d->n_actions;
    double *target = (double *)malloc(n * A * SLOTS * sizeof(double));
    double *q1 = (double *)malloc(n * A * sizeof(double)), *q_hat = (double *)malloc(n * A * SLOTS * sizeof(double));
    polopt_reward_model_config mc = polopt_reward_model_config_default();
    polopt_ope_config oc = polopt_ope_config_default();
    polopt_ope_report rep;
    size_t i, a, k;
    int e;
    mc.kind = POLOPT_MODEL_LOGISTIC, mc.lambda = 10.0f;
    if (polopt_reward_model_crossfit(d, &mc, q1) != POLOPT_OK) exit(1);
    for (i = 0; i < n; ++i) /* the same distribution in every row (a context-free policy); the model per slot */
        for (a = 0; a < A; ++a)
            for (k = 0; k < SLOTS; ++k) {
                target[(i * A + a) * SLOTS + k] = dist[a * SLOTS + k];
                q_hat[(i * A + a) * SLOTS + k] = q1[i * A + a];
            }
    oc.tune = POLOPT_TUNE_SLOPE;
    if (polopt_ope_evaluate(d, target, q_hat, SLOTS, &oc, &rep) != POLOPT_OK) exit(1);
    printf("\n  %s: truth %.5f +- %.5f (the on-policy click rate)\n", title, truth, truth_se);
    printf("  weights: min %.3g, max %.3g, mean %.4f; above 2 / 5 / 10 / 20: %lu / %lu / %lu / %lu of %lu rows\n",
           rep.weights.min, rep.weights.max, rep.weights.mean, (unsigned long)rep.weights.above[0],
           (unsigned long)rep.weights.above[1], (unsigned long)rep.weights.above[2],
           (unsigned long)rep.weights.above[3], (unsigned long)rep.weights.n);
    printf("  %-12s %9s %9s %21s %8s %9s %10s %7s\n", "estimator", "estimate", "std err", "95% interval", "ESS",
           "lambda", "rel. error", "covers");
    for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
        const polopt_ope_estimate *x = rep.est + e;
        printf("  %-12s %9.5f %9.5f   [%8.5f, %8.5f] %8.0f %9.3g %9.1f%% %7s\n",
               polopt_ope_name((polopt_ope_estimator)e), x->value, x->std_error, x->ci_low, x->ci_high, x->ess,
               x->lambda, 100.0 * fabs(x->value - truth) / truth,
               x->ci_low <= truth && truth <= x->ci_high ? "yes" : "no");
    }
    free(target), free(q1), free(q_hat);
}

/* The banner as a slate: its value is the expected clicks of its 3 slots, sum_k E[r_k].  The sample rarely holds all
   3 slots of an impression and the BTS log gives only item-position propensities, so of the slate estimators only
   IIPS (which needs no more) applies: for each slot k, the rows at k form a one-position slate log, and the banner's
   estimate is the sum of the three, its standard error the root of the sum of their squares (the slots' rows are
   different rows).  The truth: the other log's clicks per slot, summed. */
static void banner_iips(const char *title, const polopt_logged *d, const double *dist, const polopt_logged *other)
{
    double *r = (double *)malloc(d->n * sizeof(double)), *p0 = (double *)malloc(d->n * sizeof(double));
    double *p1 = (double *)malloc(d->n * sizeof(double)), value = 0.0, var = 0.0, truth = 0.0, truth_var = 0.0;
    size_t i, k;
    for (k = 0; k < SLOTS; ++k) {
        polopt_slate_log g;
        polopt_slate_report rep;
        size_t m = 0, m_other = 0;
        double clicks = 0.0;
        for (i = 0; i < d->n; ++i)
            if (d->position[i] == k) {
                r[m] = d->reward[i], p0[m] = d->propensity[i], p1[m] = dist[d->action[i] * SLOTS + k];
                ++m;
            }
        for (i = 0; i < other->n; ++i)
            if (other->position[i] == k) clicks += other->reward[i], ++m_other;
        memset(&g, 0, sizeof g);
        g.n = m, g.K = 1, g.reward = r, g.pscore_item_position = p0, g.target_item_position = p1;
        if (polopt_slate_ope_evaluate(&g, NULL, &rep) != POLOPT_OK) exit(1);
        value += rep.est[POLOPT_SLATE_IIPS].value;
        var += rep.est[POLOPT_SLATE_IIPS].std_error * rep.est[POLOPT_SLATE_IIPS].std_error;
        truth += clicks / (double)m_other;
        truth_var += clicks / (double)m_other * (1.0 - clicks / (double)m_other) / (double)m_other;
    }
    printf("  banner (3-slot slate) IIPS, %s: %.5f +- %.5f, truth %.5f +- %.5f, relative error %.1f%%\n", title, value,
           sqrt(var), truth, sqrt(truth_var), 100.0 * fabs(value - truth) / truth);
    free(r), free(p0), free(p1);
}

int main(int argc, char **argv)
{
    static const char *campaigns[2] = {"men", "women"};
    const char *dir = argc > 1 ? argv[1] : "../shared/data/obd";
    const size_t n_sim = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 100000;
    int ci;
    if (n_sim < 1) {
        fprintf(stderr, "n_sim must be a positive integer\n");
        return 2;
    }
    printf("The Open Bandit Dataset's OPE benchmark: each policy evaluated on the other's log (BTS: %lu Thompson "
           "simulations, seed 12345)\n", (unsigned long)n_sim);
    for (ci = 0; ci < 2; ++ci) {
        polopt_logged rnd = load(dir, "random", campaigns[ci]), bts = load(dir, "bts", campaigns[ci]);
        const size_t A = ci == 0 ? 34 : 46;
        double *bts_dist = (double *)malloc(A * SLOTS * sizeof(double));
        double *rnd_dist = (double *)malloc(A * SLOTS * sizeof(double));
        const double t_bts = click_rate(&bts), t_rnd = click_rate(&rnd);
        size_t a;
        rnd.n_actions = bts.n_actions = A; /* both logs of a campaign share its items */
        bts_action_dist(A, ci == 0 ? men_alpha : women_alpha, ci == 0 ? men_beta : women_beta, n_sim, 12345,
                        bts_dist);
        for (a = 0; a < A * SLOTS; ++a) rnd_dist[a] = 1.0 / (double)A;
        printf("\n=== campaign '%s': %lu items, %lu rows in each log\n", campaigns[ci], (unsigned long)A,
               (unsigned long)rnd.n);
        evaluate("BTS evaluated on the random log", &rnd, bts_dist, t_bts,
                 sqrt(t_bts * (1.0 - t_bts) / (double)bts.n));
        evaluate("random evaluated on the BTS log", &bts, rnd_dist, t_rnd,
                 sqrt(t_rnd * (1.0 - t_rnd) / (double)rnd.n));
        printf("\n");
        banner_iips("BTS on the random log", &rnd, bts_dist, &bts);
        banner_iips("random on the BTS log", &bts, rnd_dist, &rnd);
        free(bts_dist), free(rnd_dist);
        polopt_logged_free(&rnd), polopt_logged_free(&bts);
    }
    return 0;
}
