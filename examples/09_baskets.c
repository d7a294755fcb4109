/* 09_baskets.c - the paper's experiment on real basket data, from a CSV to per-epoch metrics: the session-completion
   protocol, item embeddings from a randomized SVD, and REINFORCE against the paper's proposals.

   What it shows (Sakhi, Rohde & Gilotte, "Fast Offline Policy Optimization for Large Scale Recommendation", AAAI
   2023, §5, on data of your own): the whole pipeline a user with an interaction log needs, each step one call of
   polopt.h:
     1. the log          polopt_interactions_load_csv: 25,546 Debian packages (baskets), each with the packages it
                         depends on or recommends (items: 17,840); ids mapped to indices both ways
     2. the protocol     polopt_completion_init: baskets split at random into train / validation / test (80/10/10),
                         each basket's items into the observed half X and the held-out half Y
     3. embeddings       polopt_svd_sparse on the observed halves X of the training baskets, as in the paper
                         (rank L = 64, randomized subspace iteration), beta = V diag(s)^(1/2) (polopt_svd_embed);
                         an item never in a training basket's X has beta = 0
     4. the policy       pi(a | x) = softmax(x^T theta beta_a), x = the mean of beta over X, theta random
                         (entries 0.005 N(0, 1)); the reward r(x, a) = 1[a in Y]
     5. training         20 epochs of Adam (lr 1e-3, batches of 32) with each estimator of the gradient:
                           REINFORCE     all P items scored, S = 1000 exact draws
                           eps = 1       S = 1000 uniform draws, self-normalised importance sampling
                           eps = 0.8     the paper's mixture around the MIPS top-256 (HNSW), warm-started searches
                           adaptive eps  the same, eps moved towards the best effective sample size
     6. metrics          on validation and test baskets after every epoch: E_pi[r] (exact: the probability pi gives
                         to Y), R@1 over all items (the greedy item is in Y), and with X excluded (as a recommender
                         serves: never an item the basket already has) R@1, HR@10 and nDCG@10
   What to look at: the table of the last epoch beside a reference run of the same protocol in PyTorch (test
   E_pi[r] / R@1 ex-X at epoch 20, three seeds: REINFORCE 0.430 +- 0.014 / 0.497 +- 0.024, eps = 0.8 0.433 +-
   0.004 / 0.502 +- 0.013, eps = 1 0.405 +- 0.003 / 0.529 +- 0.011; one thread: REINFORCE 3.7-5.3 s an epoch,
   eps = 0.8 8.0-9.4 s, eps = 1 about 3.3 s); the seconds per epoch; and the two kinds of metric, which need not
   agree: training maximises E_pi[r] over all items, while a served recommendation excludes X.  The start row
   (theta = identity, untrained: x^T beta already ranks the co-occurring items first) shows how well the embeddings
   alone complete a basket.  baskets.svg plots E_pi[r] and R@1 ex-X against epochs and against training time.

   What three seeds gave on one split (README, "The paper's experiment on these baskets"): every method within
   the reference's standard deviation in R@1 ex-X; in E_pi[r], eps = 0.8 0.010 below the reference, REINFORCE 0.020
   and eps = 1 0.024 below, less than a split moves them (about 0.01-0.02 over eight splits); on one AVX-512 core,
   eps = 1 20.8 times the reference's speed (0.16 s an epoch), eps = 0.8 11.1 times (0.72 s), REINFORCE 2.6 times
   (1.40 s: its score gemm alone is 0.57 s at the core's peak).

   Run: build/09_baskets [output directory] [seeds] [interactions CSV]
        (one seed by default: 5 to 8 minutes on one core; three give the mean and standard deviation) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define L 64
#define EPOCHS 20
#define N_METHODS 4
#define MAX_SEEDS 5
#define K_EVAL 10

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, polopt_strerror(rc), message ? message : "");
        exit(1);
    }
}

/* The metrics of one policy on one part. */
typedef struct metrics {
    double value, r1_all, r1, hr, ndcg; /* E_pi[r]; R@1 over all items; R@1, HR@10, nDCG@10 with X excluded */
} metrics;

/* One part of the protocol, ready to evaluate: its contexts and its dataset. */
typedef struct part {
    polopt_part which;
    float *X;
    polopt_dataset data;
} part;

static void part_make(part *p, const polopt_completion *split, polopt_part which, const float *beta)
{
    p->which = which;
    p->X = (float *)malloc(split->n[which] * L * sizeof(float));
    if (!p->X) check(POLOPT_ERR_NO_MEMORY, "allocation", "");
    check(polopt_completion_contexts(split, which, beta, L, p->X), "contexts", split->err.message);
    p->data = polopt_completion_dataset(split, which, p->X, L);
}

/* Greedy metrics with the exact index: the served argmax must be the true one. */
static metrics evaluate(const polopt_policy *pol, const polopt_mips *exact, polopt_mips_scratch *scratch,
                        const polopt_completion *split, const part *p)
{
    metrics m;
    polopt_eval all, ex;
    check(polopt_policy_value(pol, exact, &p->data, &m.value), "E_pi[r]", pol->err.message);
    check(polopt_evaluate(pol, exact, scratch, &p->data, 1, 0, &all), "R@1", pol->err.message);
    check(polopt_evaluate_excluding(pol, exact, scratch, &p->data, &split->observed[p->which], K_EVAL, 0, &ex),
          "metrics ex-X", pol->err.message);
    m.r1_all = all.reward, m.r1 = ex.reward, m.hr = ex.hit_rate, m.ndcg = ex.ndcg;
    return m;
}

/* What a method measured over the epochs of one seed. */
typedef struct run {
    const char *name;
    metrics val[EPOCHS], test[EPOCHS];
    double seconds[EPOCHS], elapsed[EPOCHS]; /* wall seconds of each epoch's training, and their running sum */
} run;

static void configure(int method, polopt_trainer_config *tc)
{
    *tc = polopt_trainer_config_default();
    tc->adam.lr = 1e-3f;
    tc->estimator.S = 1000;
    tc->estimator.K = 256;
    tc->estimator.batch = 32;
    if (method == 0) tc->estimator.method = POLOPT_METHOD_REINFORCE;
    if (method == 1) tc->estimator.epsilon = 1.0f;
    if (method == 2) tc->estimator.epsilon = 0.8f, tc->warm_start = 1;
    if (method == 3) tc->estimator.adaptive_epsilon = 1, tc->warm_start = 1;
}

static const char *method_names[N_METHODS] = {"REINFORCE", "eps = 1", "eps = 0.8", "adaptive eps"};

/* Train one method for EPOCHS epochs from a random theta, measuring after each. */
static void train_method(int method, uint64_t seed, const polopt_mips *hnsw, const polopt_mips *exact,
                         polopt_mips_scratch *scratch, const polopt_completion *split, const part *train,
                         const part *val, const part *test, run *out)
{
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    polopt_trainer_config tc;
    polopt_policy pol;
    polopt_trainer tr;
    int e;
    pc.init = POLOPT_INIT_RANDOM;
    pc.init_scale = 0.005f * sqrtf((float)L); /* entries 0.005 N(0, 1): the scale is divided by sqrt(D) */
    pc.seed = seed;
    check(polopt_policy_init(&pol, &pc), "policy", pol.err.message);
    configure(method, &tc);
    tc.estimator.seed = seed;
    check(polopt_trainer_init(&tr, &pol, hnsw, &tc), "trainer", tr.err.message);
    out->name = method_names[method];
    for (e = 0; e < EPOCHS; ++e) {
        const double t0 = now();
        check(polopt_trainer_epoch(&tr, &train->data, NULL), "epoch", tr.err.message);
        out->seconds[e] = now() - t0;
        out->elapsed[e] = out->seconds[e] + (e ? out->elapsed[e - 1] : 0.0);
        out->val[e] = evaluate(&pol, exact, scratch, split, val);
        out->test[e] = evaluate(&pol, exact, scratch, split, test);
        printf("  %-12s epoch %2d  %5.2f s   val E_pi[r] %.4f   test E_pi[r] %.4f  R@1 %.4f  R@1 ex-X %.4f  "
               "HR@10 ex-X %.4f\n", out->name, e + 1, out->seconds[e], out->val[e].value, out->test[e].value,
               out->test[e].r1_all, out->test[e].r1, out->test[e].hr);
    }
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
}

static void mean_sd(const double *x, int n, double *mean, double *sd)
{
    double s = 0.0, s2 = 0.0;
    int i;
    for (i = 0; i < n; ++i) s += x[i];
    *mean = s / n;
    for (i = 0; i < n; ++i) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0.0;
}

/* Four panels: E_pi[r] and R@1 ex-X (test, the first seed) against epochs and against training time; the
   untrained start (theta = identity) as a dashed line. */
static void write_svg(const char *path, const run *runs, int n_runs, const metrics *start)
{
    static const char *colors[N_METHODS] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e"};
    const double W = 980, H = 700, pw = 400, ph = 250;
    FILE *f = fopen(path, "w");
    int panel, r, e, t;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='22' text-anchor='middle' font-size='15'>Debian baskets: test metrics of each "
               "gradient estimator</text>\n", W / 2);
    for (panel = 0; panel < 4; ++panel) {
        const int by_time = panel % 2, recall = panel / 2;
        const double x0 = 70 + (pw + 90) * by_time, y0 = 50 + (ph + 80) * recall;
        double x_max = by_time ? 0.0 : EPOCHS, y_max = 0.0;
        for (r = 0; r < n_runs; ++r)
            for (e = 0; e < EPOCHS; ++e) {
                const double y = recall ? runs[r].test[e].r1 : runs[r].test[e].value;
                y_max = y > y_max ? y : y_max;
                if (by_time && runs[r].elapsed[e] > x_max) x_max = runs[r].elapsed[e];
            }
        y_max = (recall ? start->r1 : start->value) > y_max ? (recall ? start->r1 : start->value) : y_max;
        y_max *= 1.1;
        for (t = 0; t <= 4; ++t) {
            const double gx = x0 + pw * t / 4, gy = y0 + ph - ph * t / 4;
            fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", gx, y0, gx, y0 + ph);
            fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, gy, x0 + pw, gy);
            fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.*f</text>\n", gx, y0 + ph + 16,
                    by_time ? 0 : 0, x_max * t / 4);
            fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.2f</text>\n", x0 - 5, gy + 4, y_max * t / 4);
        }
        fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n", x0, y0, pw, ph);
        fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>%s</text>\n", x0 + pw / 2, y0 + ph + 34,
                by_time ? "training time (s)" : "epoch");
        fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>%s</text>\n", x0 + pw / 2, y0 - 6,
                recall ? "R@1 with the observed items excluded" : "E_pi[r], the probability of the held-out items");
        {
            const double y = y0 + ph - ph * (recall ? start->r1 : start->value) / y_max;
            fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#777' stroke-dasharray='6,4'/>\n", x0, y,
                    x0 + pw, y);
            fprintf(f, "<text x='%.1f' y='%.1f' fill='#777' text-anchor='end'>start, theta = I</text>\n", x0 + pw - 4,
                    y - 4);
        }
        for (r = 0; r < n_runs; ++r) {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[r]);
            for (e = 0; e < EPOCHS; ++e) {
                const double x = by_time ? runs[r].elapsed[e] : e + 1;
                const double y = recall ? runs[r].test[e].r1 : runs[r].test[e].value;
                fprintf(f, "%.1f,%.1f ", x0 + pw * x / x_max, y0 + ph - ph * y / y_max);
            }
            fprintf(f, "'/>\n");
            if (panel == 0)
                fprintf(f, "<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", x0 + pw - 100, y0 + ph - 16 * (n_runs - r),
                        colors[r], runs[r].name);
        }
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    static const double ref_value[3] = {0.430, 0.405, 0.433}, ref_value_sd[3] = {0.014, 0.003, 0.004};
    static const double ref_r1[3] = {0.497, 0.529, 0.502}, ref_r1_sd[3] = {0.024, 0.011, 0.013};
    static const char *ref_seconds[3] = {"3.7-5.3", "3.3", "8.0-9.4"};
    static const double ref_fastest[3] = {3.7, 3.3, 8.0};
    const char *dir = argc > 1 ? argv[1] : ".";
    const int n_seeds = argc > 2 ? atoi(argv[2]) : 1;
    const char *csv = argc > 3 ? argv[3] : "../shared/data/debian-baskets/depends/baskets.csv";
    static run runs[MAX_SEEDS][N_METHODS];
    polopt_interactions_config ic = polopt_interactions_config_default();
    polopt_interactions log;
    polopt_completion split;
    polopt_svd_config svc = polopt_svd_config_default(L);
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_mips hnsw, exact;
    polopt_mips_scratch scratch;
    polopt_policy identity;
    metrics start;
    part train, val, test;
    float *beta, s[L];
    char path[1024];
    double t0;
    size_t a, zero = 0;
    int seed, m;
    if (n_seeds < 1 || n_seeds > MAX_SEEDS) {
        fprintf(stderr, "seeds must be in [1, %d]\n", MAX_SEEDS);
        return 2;
    }

    /* 1-2. The log and the protocol. */
    ic.session = "basket";
    check(polopt_interactions_load_csv(&log, csv, &ic), "reading the log", log.err.message);
    check(polopt_completion_init(&split, &log, NULL), "the split", split.err.message);
    printf("1. %s: %lu baskets, %lu items, %lu (basket, item) pairs\n", csv, (unsigned long)log.n_sessions,
           (unsigned long)log.n_items, (unsigned long)log.nnz);
    printf("2. baskets: %lu train, %lu validation, %lu test (%lu of one item skipped); kernels: %s\n",
           (unsigned long)split.n[0], (unsigned long)split.n[1], (unsigned long)split.n[2],
           (unsigned long)split.skipped, polopt_isa_name(polopt_isa_detect()));

    /* 3. Item embeddings from the training baskets, and the two indexes: HNSW for the proposal, exact for the
       greedy metrics. */
    beta = (float *)malloc(log.n_items * L * sizeof(float));
    if (!beta) check(POLOPT_ERR_NO_MEMORY, "allocation", "");
    t0 = now();
    {
        /* the paper's input: the observed halves (polopt_completion_matrix gives the baskets whole) */
        const polopt_csr A = polopt_sets_matrix(&split.observed[POLOPT_PART_TRAIN], log.n_items);
        check(polopt_svd_sparse(&A, &svc, s, beta, NULL), "SVD", "");
    }
    check(polopt_svd_embed(log.n_items, L, beta, s, 0.5, beta), "embeddings", "");
    for (a = 0; a < log.n_items; ++a) {
        size_t j;
        int nonzero = 0;
        for (j = 0; j < L; ++j) nonzero |= beta[a * L + j] != 0.0f;
        zero += !nonzero;
    }
    printf("3. rank-%d SVD of the training baskets' observed halves in %.2f s: s_1 = %.1f, s_%d = %.1f; %lu items "
           "never in them have beta = 0\n", L, now() - t0, (double)s[0], L, (double)s[L - 1], (unsigned long)zero);
    t0 = now();
    check(polopt_mips_init_hnsw(&hnsw, log.n_items, L, beta, 1, &hc), "HNSW index", hnsw.err.message);
    check(polopt_mips_init_exact(&exact, log.n_items, L, beta, 1, NULL), "exact index", exact.err.message);
    check(polopt_mips_scratch_init(&scratch, &exact, 512, NULL), "scratch", scratch.err.message);
    printf("   HNSW index built in %.2f s\n", now() - t0);
    part_make(&train, &split, POLOPT_PART_TRAIN, beta);
    part_make(&val, &split, POLOPT_PART_VAL, beta);
    part_make(&test, &split, POLOPT_PART_TEST, beta);
    {
        polopt_policy_config pc = polopt_policy_config_default(L, L); /* theta = I */
        check(polopt_policy_init(&identity, &pc), "policy", identity.err.message);
        start = evaluate(&identity, &exact, &scratch, &split, &test);
        printf("4. start, theta = identity (untrained): test E_pi[r] %.4f  R@1 %.4f  R@1 ex-X %.4f  HR@10 ex-X %.4f  "
               "nDCG@10 ex-X %.4f\n", start.value, start.r1_all, start.r1, start.hr, start.ndcg);
        polopt_policy_free(&identity);
    }

    /* 5-6. Each method, each seed. */
    for (seed = 0; seed < n_seeds; ++seed) {
        printf("5. seed %d: %d epochs of each method from a random theta\n", seed + 1, EPOCHS);
        for (m = 0; m < N_METHODS; ++m)
            train_method(m, 1000 + (uint64_t)seed, &hnsw, &exact, &scratch, &split, &train, &val, &test,
                         &runs[seed][m]);
    }

    printf("\nAt epoch %d, test (mean +- sd over %d seed%s; the reference: PyTorch, three seeds)\n", EPOCHS, n_seeds,
           n_seeds > 1 ? "s" : "");
    printf("%-13s %-17s %-15s %-17s %-15s %-9s %-9s %-9s %-10s %-11s %s\n", "method", "E_pi[r]", "reference",
           "R@1 ex-X", "reference", "R@1 all", "HR@10", "nDCG@10", "s/epoch", "reference", "speed-up");
    for (m = 0; m < N_METHODS; ++m) {
        double v[MAX_SEEDS], r1[MAX_SEEDS], ra[MAX_SEEDS], hr[MAX_SEEDS], nd[MAX_SEEDS], sec[MAX_SEEDS];
        double vm, vs, rm, rs, am, as, hm, hs, nm, ns, sm, ss;
        const int ref = m < 3 ? (m == 0 ? 0 : m == 1 ? 1 : 2) : -1;
        for (seed = 0; seed < n_seeds; ++seed) {
            const run *r = &runs[seed][m];
            v[seed] = r->test[EPOCHS - 1].value, r1[seed] = r->test[EPOCHS - 1].r1;
            ra[seed] = r->test[EPOCHS - 1].r1_all, hr[seed] = r->test[EPOCHS - 1].hr;
            nd[seed] = r->test[EPOCHS - 1].ndcg, sec[seed] = r->elapsed[EPOCHS - 1] / EPOCHS;
        }
        mean_sd(v, n_seeds, &vm, &vs), mean_sd(r1, n_seeds, &rm, &rs), mean_sd(ra, n_seeds, &am, &as);
        mean_sd(hr, n_seeds, &hm, &hs), mean_sd(nd, n_seeds, &nm, &ns), mean_sd(sec, n_seeds, &sm, &ss);
        (void)as, (void)hs, (void)ns, (void)ss;
        printf("%-13s %.3f +- %.3f   ", method_names[m], vm, vs);
        if (ref >= 0) printf("%.3f +- %.3f   ", ref_value[ref], ref_value_sd[ref]);
        else printf("%-15s ", "-");
        printf("%.3f +- %.3f   ", rm, rs);
        if (ref >= 0) printf("%.3f +- %.3f   ", ref_r1[ref], ref_r1_sd[ref]);
        else printf("%-15s ", "-");
        printf("%-9.3f %-9.3f %-9.3f %-10.2f %-11s ", am, hm, nm, sm, ref >= 0 ? ref_seconds[ref] : "-");
        if (ref >= 0) printf("%.1fx or more\n", ref_fastest[ref] / sm);
        else printf("-\n");
    }
    printf("(E_pi[r] and R@1 ex-X are within one reference standard deviation of the reference mean where |mean - "
           "reference| <= sd; the speed-up divides the reference's fastest seconds per epoch by ours.)\n");
    snprintf(path, sizeof path, "%s/baskets.svg", dir);
    write_svg(path, runs[0], N_METHODS, &start);
    printf("wrote %s\n", path);

    free(train.X), free(val.X), free(test.X), free(beta);
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&hnsw);
    polopt_mips_free(&exact);
    polopt_completion_free(&split);
    polopt_interactions_free(&log);
    return 0;
}
