/* ope_obd.c - off-policy evaluation on real logs: the Open Bandit Dataset (ZOZOTOWN fashion e-commerce).

   What it shows: how to estimate, from a log collected by one policy, the click rate another policy would get -
   here from the uniform random policy's log of a campaign, for three target policies:
     uniform      the logging policy itself (every estimator should find the log's own click rate);
     BTS          the Bernoulli Thompson sampling policy, given by the per-slot item frequencies of its own log of the
                  same campaign.  Its log's click rate is a real, on-policy measurement of its value: the ground truth;
     greedy       always the item a logistic reward model rates best for the user (no ground truth; the model of
                  each row is one that did not see it, so the estimate is not flattered by overfitting).
   Every estimator of polopt.h (SPEC §4) with its standard error, 95% bootstrap interval and effective sample size.
   The reward model of DM and the doubly robust estimators is cross-fitted (2 folds: no round is scored by a model
   that saw it).  Slates follow the Open Bandit Pipeline: one row per (impression, slot), each row's weight read at
   its own slot, every estimate a mean over rows.

   What to look at: how close each estimator gets to BTS's measured click rate, and whether its interval covers it.
   The sample is small (10,000 rows, about 46 clicks a log): intervals are wide, and that is the honest answer.
   DM's interval is narrow because it only reflects how the model's predictions vary over rows, not how wrong the
   model is: with 46 clicks to learn from, DM mostly returns the mean click rate.

   Data: ../shared/data/obd (a 10,000-row sample per log, shipped with the Open Bandit Pipeline; Apache-2.0; data by
   ZOZO, Inc.; Saito et al., "Open Bandit Dataset and Pipeline", arXiv:2008.07146).
   Run: build/ope_obd [path to the obd folder]   (after make examples) */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const user_features[4] = {"user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"};

static polopt_logged load(const char *dir, const char *policy, const char *campaign)
{
    char path[1024];
    polopt_csv_config c = polopt_csv_config_default();
    polopt_logged d;
    c.action = "item_id";
    c.propensity = "propensity_score";
    c.reward = "click";
    c.position = "position";
    c.position_base = 1; /* slots 1, 2, 3 become 0, 1, 2 */
    c.categorical = user_features;
    c.n_categorical = 4; /* one-hot user features; the affinity columns are not used (as in obp) */
    c.max_levels = 16;
    snprintf(path, sizeof path, "%s/%s/%s/%s.csv", dir, policy, campaign, campaign);
    if (polopt_logged_load_csv(&d, path, &c) != POLOPT_OK) {
        fprintf(stderr, "%s\n", d.err.message);
        exit(1);
    }
    return d;
}

static void print_table(const char *title, const polopt_ope_estimate *est, double truth, int has_truth)
{
    int e;
    printf("\n  target: %s\n", title);
    printf("  %-12s %9s %9s %21s %9s%s\n", "estimator", "estimate", "std err", "95% interval", "ESS",
           has_truth ? "   rel. error  covers truth" : "");
    for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
        const polopt_ope_estimate *x = est + e;
        if (!x->available) continue;
        printf("  %-12s %9.5f %9.5f   [%8.5f, %8.5f] %9.0f", polopt_ope_name((polopt_ope_estimator)e), x->value,
               x->std_error, x->ci_low, x->ci_high, x->ess);
        if (has_truth)
            printf("   %+9.1f%%  %s", 100.0 * (x->value - truth) / truth,
                   x->ci_low <= truth && truth <= x->ci_high ? "yes" : "no");
        printf("\n");
    }
}

int main(int argc, char **argv)
{
    static const char *campaigns[2] = {"men", "women"};
    const char *dir = argc > 1 ? argv[1] : "../shared/data/obd";
    int ci;
    printf("Off-policy evaluation on the Open Bandit Dataset sample (ZOZOTOWN), from the uniform random log\n");
    for (ci = 0; ci < 2; ++ci) {
        polopt_logged rnd = load(dir, "random", campaigns[ci]), bts = load(dir, "bts", campaigns[ci]);
        const size_t A = rnd.n_actions > bts.n_actions ? rnd.n_actions : bts.n_actions, n = rnd.n, S = 3;
        float *uniform = (float *)malloc(n * A * sizeof(float)), *freq = (float *)malloc(n * A * sizeof(float));
        float *greedy = (float *)malloc(n * A * sizeof(float)), *q_hat = (float *)malloc(n * A * sizeof(float));
        double *count = (double *)calloc(S * A, sizeof(double)), clicks = 0.0, truth, truth_se, ctr = 0.0;
        polopt_reward_model_config mc = polopt_reward_model_config_default();
        polopt_ope_config oc = polopt_ope_config_default();
        polopt_ope_estimate est[POLOPT_OPE_COUNT];
        size_t i, a;
        rnd.n_actions = A; /* both logs of a campaign share its items */
        /* ground truth: the on-policy click rate of the BTS log, with its binomial standard error */
        for (i = 0; i < bts.n; ++i) clicks += bts.reward[i];
        truth = clicks / (double)bts.n;
        truth_se = sqrt(truth * (1.0 - truth) / (double)bts.n);
        for (i = 0; i < n; ++i) ctr += rnd.reward[i];
        printf("\n=== campaign '%s': %lu items, %lu rows in each log; random log click rate %.5f; BTS log click rate "
               "%.5f +- %.5f (the ground truth)\n", campaigns[ci], (unsigned long)A, (unsigned long)n, ctr / (double)n,
               truth, truth_se);
        /* the three targets, as each row's distribution over items at its own slot */
        for (i = 0; i < bts.n; ++i) count[bts.position[i] * A + bts.action[i]] += 1.0;
        for (i = 0; i < S; ++i) {
            double total = 0.0;
            for (a = 0; a < A; ++a) total += count[i * A + a];
            for (a = 0; a < A; ++a) count[i * A + a] = total > 0 ? count[i * A + a] / total : 1.0 / (double)A;
        }
        /* the reward model of DM and DR, and of the greedy target: a logistic model per item on the one-hot user
           features, its predictions out of fold */
        mc.kind = POLOPT_MODEL_LOGISTIC;
        mc.lambda = 10.0f;
        if (polopt_reward_model_crossfit(&rnd, &mc, q_hat) != POLOPT_OK) {
            fprintf(stderr, "cross-fitting failed\n");
            return 1;
        }
        for (i = 0; i < n; ++i) {
            size_t best = 0;
            for (a = 0; a < A; ++a) {
                uniform[i * A + a] = 1.0f / (float)A;
                freq[i * A + a] = (float)count[(rnd.position[i] < S ? rnd.position[i] : 0) * A + a];
                greedy[i * A + a] = 0.0f;
                if (q_hat[i * A + a] > q_hat[i * A + best]) best = a;
            }
            greedy[i * A + best] = 1.0f;
        }
        if (polopt_ope_evaluate(&rnd, uniform, q_hat, &oc, est) != POLOPT_OK) return 1;
        print_table("uniform (the logging policy itself: IPS must give the log's click rate)", est, ctr / (double)n, 1);
        if (polopt_ope_evaluate(&rnd, freq, q_hat, &oc, est) != POLOPT_OK) return 1;
        print_table("BTS, as per-slot item frequencies of its log (ground truth: its click rate)", est, truth, 1);
        if (polopt_ope_evaluate(&rnd, greedy, q_hat, &oc, est) != POLOPT_OK) return 1;
        print_table("greedy on a logistic reward model (no ground truth)", est, 0.0, 0);
        free(uniform), free(freq), free(greedy), free(q_hat), free(count);
        polopt_logged_free(&rnd);
        polopt_logged_free(&bts);
    }
    return 0;
}
