/* 05_topk_catalogue.c - the top-K off-policy correction of Chen et al. (WSDM 2019) on a million items, with a
   known behaviour policy and the exact value of every slate.

   What it shows (Chen, Beutel, Covington, Jain, Belletti & Chi, "Top-K Off-Policy Correction for a REINFORCE
   Recommender System", WSDM 2019, Eq. 3-8 and Section 4.4): a softmax policy pi(a | x) = softmax(h_theta(x)^T beta)
   over P = 1,000,000 items learns from a log that another policy wrote.  The log:
     - a behaviour policy b(a | x) = softmax(h_b(x)^T beta / T_b), theta_b = I + a fixed random matrix (the start
       policy of the library, distorted the same way for every user: b's bias), T_b calibrated on pilot users so
       that about TARGET_RATE of its actions are rewarded;
     - N users (contexts) of the synthetic generator, one logged step each: an action drawn exactly from b (the
       REINFORCE estimator scores all P items and inverts the cumulative distribution), its exact propensity
       b(a | x) (polopt_estimator_log_prob: the exact log-normaliser), and the reward 1[a in Y_u], Y_u the 5 items
       the user's hidden taste rates highest (polopt_synth_relevant).  One step per user: the return is the reward.
   A fresh policy (theta = I, the library's start) is trained on this log with the paper's SNIS estimator (K = 256
   MIPS items, S draws, HNSW) under each correction of polopt_correction_config:
       none          w = 1                                  (REINFORCE as if on-policy: it learns b's preferences)
       first-order   w = pi / b                             (the off-policy correction, Eq. 4)
       top-K         w = pi / b * K (1 - pi)^(K - 1)        (Eq. 7-8, for slates of K)
   each with and without the cap pi / b <= e^3 of the paper's production system, and with b known (the logged
   propensities) or learned (propensity NULL: the trainer fits a behaviour head b_hat by maximum likelihood).  The
   9 runs: none; first-order and top-K (K = 4, 16), each capped and uncapped, with b known; first-order and top-K
   (K = 16), capped, with b learned.  All start from the same theta and see the same minibatches.

   What is measured, on 2000 held-out users with their exact Y_u:
     hit@K    the policy serves the greedy slate of its K best items (MIPS, HNSW); the slate's true expected reward
              is the probability that it holds a relevant item: hit-rate@K of polopt_evaluate (exact given the slate;
              the slate itself is as good as the HNSW search that serves it);
     draw@K   the slate of K independent draws from pi, the one Chen et al.'s top-K objective is written for: its
              expected reward 1 - (1 - pi(Y_u | x_u))^K, exact (all P scores and log Z); draw@1 = E_pi[r];
     agree@K  the share of the greedy slate that b's own greedy slate also holds: how much of b's preferences the
              policy took over;
   for K = 1, 4 and 16, and for each run the effective sample size of the correction weights per minibatch of 32
   (stats.weight_ess) and the wall time per epoch.  The behaviour policy and the start policy are the references.
   Nothing is tuned to the order the methods come out in: it is the result of the run.

   Output: the table on stdout, topk_catalogue.svg (both slate values, grouped by K) and topk_catalogue.csv in the
   output directory.

   Run: build/05_topk_catalogue [options] [DIR]
     --quick        P = 100,000 and N = 20,000 (other options still apply): about 2 minutes on two cores
     --items P      catalogue size (default 1,000,000: about 6.5 minutes on two cores, 45 s of them for the index)
     --logged N     logged steps (default 30,000)
     --epochs E     epochs per run (default 6)
     --lr LR        Adam step of the policy (default 0.005)
     --samples S    SNIS draws per context (default 1000)
     --seed SEED    the log's draws and the trainers' draws and minibatches (default 1; b and the users stay)
     --threads T    logging blocks and runs handled side by side (default 2; 1 gives uncontended times per epoch)
     --index FILE   keep the HNSW index in FILE: loaded when it holds this catalogue, else built and saved there
     DIR            where the SVG and the CSV go (default: the current directory) */
#define _POSIX_C_SOURCE 200112L /* clock_gettime, pthreads */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define L 32              /* embedding dimension; contexts have D = L */
#define K_RELEVANT 5      /* |Y_u| */
#define N_TEST 2000       /* held-out users */
#define N_PILOT 256       /* users that calibrate T_b */
#define TARGET_RATE 0.10  /* the share of b's actions that should be rewarded */
#define THETA_NOISE 0.6   /* theta_b = I + THETA_NOISE * Z / sqrt(L), Z ~ N(0, 1) */
#define BLOCK 256         /* logged users per work item of the logging threads */
#define BATCH 32
#define EVAL_EF 128       /* HNSW beam of the served slates */
#define CAP 20.0855369f   /* e^3, the cap of Chen et al. (2019, Section 4.4) */
#define N_SLATES 3
#define MAX_RUNS 16
#define MAX_THREADS 8
#define TEST_USER0 90000000u  /* held-out users' ids */
#define PILOT_USER0 50000000u /* pilot users' ids */

static const size_t slate_k[N_SLATES] = {1, 4, 16};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "\n%s failed: %s (%s)\n", what, polopt_strerror(rc), message && *message ? message : "-");
        exit(1);
    }
}

/* Functions without an error object of their own (polopt_evaluate, polopt_synth_relevant, the queries of an
   estimator) send their message to the hooks of the object they work on: print it. */
static void log_message(void *user, polopt_result code, const char *message)
{
    (void)user;
    fprintf(stderr, "polopt: %s: %s\n", polopt_strerror(code), message);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%lu bytes)\n", (unsigned long)n);
        exit(1);
    }
    return p;
}

/* ---- the log -------------------------------------------------------------------------------------------- */

/* Everything the logging threads share; each thread takes blocks of BLOCK users. */
typedef struct logger {
    const polopt_synth *cat;
    const polopt_mips *index;
    const polopt_policy *behaviour; /* theta_b; its temperature is T_b */
    size_t n;
    const float *X, *T; /* contexts and hidden tastes, n x L */
    uint32_t *action;
    float *propensity, *reward;
    double *b_rel; /* b(Y_u | x_u): b's exact expected reward for each logged user */
    uint64_t seed;      /* of the draws: block k draws from seed * 2^20 + k */
    size_t next_block;
    pthread_mutex_t lock;
} logger;

static void *log_worker(void *arg)
{
    logger *lg = (logger *)arg;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    float H[BATCH * L];
    ec.method = POLOPT_METHOD_REINFORCE; /* exact draws from b and its exact log-normaliser */
    ec.S = 2;                            /* the smallest S allowed; the log takes the first draw */
    ec.batch = BATCH;
    ec.temperature = lg->behaviour->temperature;
    ec.hooks.log = log_message;
    check(polopt_estimator_init(&est, lg->index, &ec), "behaviour estimator", est.err.message);
    for (;;) {
        size_t blk, u0, m, i, c;
        polopt_sets Y;
        pthread_mutex_lock(&lg->lock);
        blk = lg->next_block++;
        pthread_mutex_unlock(&lg->lock);
        u0 = blk * BLOCK;
        if (u0 >= lg->n) break;
        m = lg->n - u0 < BLOCK ? lg->n - u0 : BLOCK;
        /* the draws of each block come from their own seed: the log does not depend on the number of threads */
        check(polopt_rng_seed(&est.rng, (lg->seed << 20) + blk), "seed", "");
        check(polopt_synth_relevant(lg->cat, lg->index->vectors, m, lg->T + u0 * L, K_RELEVANT, &Y), "relevant",
              lg->cat->err.message);
        for (i = 0; i < m; i += BATCH) {
            const size_t nb = m - i < BATCH ? m - i : BATCH;
            check(polopt_policy_embed(lg->behaviour, nb, lg->X + (u0 + i) * L, L, H), "embed", lg->behaviour->err.message);
            check(polopt_estimator_set(&est, nb, H, NULL), "behaviour draws", est.err.message);
            for (c = 0; c < nb; ++c) {
                const size_t u = u0 + i + c;
                const uint32_t *rel = Y.items + Y.offsets[i + c];
                const size_t n_rel = Y.offsets[i + c + 1] - Y.offsets[i + c];
                polopt_draws dr;
                float log_b, log_rel[K_RELEVANT];
                size_t j;
                double sum = 0.0;
                check(polopt_estimator_draws(&est, c, &dr), "draws", "");
                lg->action[u] = dr.ids[0];
                check(polopt_estimator_log_prob(&est, c, 1, dr.ids, &log_b, NULL), "log b", "");
                lg->propensity[u] = (float)exp((double)log_b);
                if (!(lg->propensity[u] > 0.0f)) check(POLOPT_ERR_DOMAIN, "propensity", "b(a | x) underflows float");
                check(polopt_sets_reward(&Y, (uint32_t)(i + c), 1, dr.ids, &lg->reward[u]), "reward", "");
                check(polopt_estimator_log_prob(&est, c, n_rel, rel, log_rel, NULL), "log b(Y)", "");
                for (j = 0; j < n_rel; ++j) sum += exp((double)log_rel[j]);
                lg->b_rel[u] = sum;
            }
        }
        polopt_sets_free(&Y);
    }
    polopt_estimator_free(&est);
    return NULL;
}

/* T_b such that b's expected reward on pilot users is TARGET_RATE: E_b[r | x] = sum_{a in Y} softmax(s / T)_a, s =
   h_b(x)^T beta for all P items (one gemm per 32 users), on a geometric grid of T, then log-linear interpolation. */
#define N_GRID 33
static float calibrate_temperature(const polopt_synth *cat, const polopt_mips *index, const polopt_policy *beh,
                                   double *out_rate)
{
    const size_t P = index->n;
    float *X = (float *)xmalloc(N_PILOT * L * sizeof(float)), *T = (float *)xmalloc(N_PILOT * L * sizeof(float));
    float *scores = (float *)xmalloc(BATCH * P * sizeof(float)), H[BATCH * L];
    double grid[N_GRID], rate[N_GRID], log_z;
    polopt_sets Y;
    size_t u, b, i, j;
    int g;
    for (g = 0; g < N_GRID; ++g) grid[g] = 0.005 * pow(1.25, g), rate[g] = 0.0; /* 0.005 .. 6.3 */
    for (u = 0; u < N_PILOT; ++u)
        check(polopt_synth_user(cat, PILOT_USER0 + u, X + u * L, T + u * L), "pilot user", cat->err.message);
    check(polopt_synth_relevant(cat, index->vectors, N_PILOT, T, K_RELEVANT, &Y), "relevant", cat->err.message);
    for (b = 0; b < N_PILOT; b += BATCH) {
        check(polopt_policy_embed(beh, BATCH, X + b * L, L, H), "embed", beh->err.message);
        check(polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, BATCH, P, L, 1.0f, H, L, index->vectors, L, 0.0f, scores, P),
              "gemm", "");
        for (i = 0; i < BATCH; ++i)
            for (g = 0; g < N_GRID; ++g) {
                check(polopt_logsumexp(P, scores + i * P, (float)grid[g], &log_z), "logsumexp", "");
                for (j = Y.offsets[b + i]; j < Y.offsets[b + i + 1]; ++j)
                    rate[g] += exp((double)scores[i * P + Y.items[j]] / grid[g] - log_z);
            }
    }
    polopt_sets_free(&Y);
    free(X), free(T), free(scores);
    for (g = 0; g < N_GRID; ++g) rate[g] /= N_PILOT;
    for (g = 0; g + 1 < N_GRID; ++g) /* the rate falls as T rises: the first bracket of the target */
        if (rate[g] >= TARGET_RATE && rate[g + 1] < TARGET_RATE) {
            const double t = (rate[g] - TARGET_RATE) / (rate[g] - rate[g + 1]);
            *out_rate = TARGET_RATE;
            return (float)(grid[g] * pow(grid[g + 1] / grid[g], t));
        }
    g = rate[0] < TARGET_RATE ? 0 : N_GRID - 1; /* not reached on the grid: its nearest end */
    *out_rate = rate[g];
    return (float)grid[g];
}

/* ---- scoring a policy ----------------------------------------------------------------------------------- */

/* What a policy serves on the held-out users, for each slate size k of slate_k. */
typedef struct slate_scores {
    double hit[N_SLATES];   /* greedy slate (its k best items by MIPS) holds a relevant item: hit-rate@k */
    double ndcg[N_SLATES];  /* nDCG@k of the greedy slate */
    double draw[N_SLATES];  /* k independent draws from pi hold a relevant item: 1 - (1 - pi(Y | x))^k, exact; the
                               slate of Chen et al.'s top-K objective (draw@1 = E_pi[r]) */
    double agree[N_SLATES]; /* share of the greedy slate that b's greedy slate also holds */
} slate_scores;

/* pi(Y_u | x_u) for the test users, exactly: every item's score (one gemm per 32 users) and log Z.  scores: BATCH x P
   floats of scratch.  O(n P L). */
static void relevant_mass(const polopt_policy *pol, const polopt_mips *index, const polopt_dataset *test, float *scores,
                          double *out_mass)
{
    const size_t P = index->n;
    const polopt_sets *Y = test->relevant;
    float H[BATCH * L];
    double log_z;
    size_t b, i, j;
    for (b = 0; b < test->n; b += BATCH) {
        const size_t m = test->n - b < BATCH ? test->n - b : BATCH;
        check(polopt_policy_embed(pol, m, test->X + b * L, L, H), "embed", pol->err.message);
        check(polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, m, P, L, 1.0f, H, L, index->vectors, L, 0.0f, scores, P),
              "gemm", "");
        for (i = 0; i < m; ++i) {
            double mass = 0.0;
            check(polopt_logsumexp(P, scores + i * P, pol->temperature, &log_z), "logsumexp", "");
            for (j = Y->offsets[b + i]; j < Y->offsets[b + i + 1]; ++j)
                mass += exp((double)scores[i * P + Y->items[j]] / pol->temperature - log_z);
            out_mass[b + i] = mass;
        }
    }
}

/* All of slate_scores for one policy.  b_slate: b's greedy slates (N_TEST x k each), or NULL (no agree@k). */
static void score_policy(const polopt_policy *pol, const polopt_mips *index, polopt_mips_scratch *scratch,
                         const polopt_dataset *test, const uint32_t *const *b_slate, float *scores, double *mass,
                         slate_scores *out)
{
    uint32_t ids[16];
    int s;
    size_t u, i, j;
    relevant_mass(pol, index, test, scores, mass);
    for (s = 0; s < N_SLATES; ++s) {
        const size_t k = slate_k[s];
        polopt_eval ev;
        double same = 0.0, draw = 0.0;
        check(polopt_evaluate(pol, index, scratch, test, k, EVAL_EF, &ev), "evaluate", scratch->err.message);
        out->hit[s] = ev.hit_rate, out->ndcg[s] = ev.ndcg;
        for (u = 0; u < test->n; ++u) draw += 1.0 - pow(1.0 - (mass[u] < 1.0 ? mass[u] : 1.0), (double)k);
        out->draw[s] = draw / (double)test->n;
        out->agree[s] = 1.0;
        if (!b_slate) continue;
        for (u = 0; u < test->n; ++u) {
            check(polopt_policy_topk(pol, index, scratch, test->X + u * L, k, EVAL_EF, ids, NULL), "top-k",
                  scratch->err.message);
            for (i = 0; i < k; ++i)
                for (j = 0; j < k; ++j)
                    if (ids[i] != POLOPT_NO_ITEM && ids[i] == b_slate[s][u * k + j]) same += 1.0;
        }
        out->agree[s] = same / ((double)k * (double)test->n);
    }
}

/* ---- the runs ------------------------------------------------------------------------------------------- */

typedef struct run {
    const char *name;
    polopt_correction kind;
    size_t K;
    float cap;
    int learned; /* b learned (propensity NULL, learn_behaviour) */
    /* results */
    slate_scores sc;
    double weight_ess, weight_ess_first, seconds_per_epoch, b_log_lik;
} run;

/* What the training threads share. */
typedef struct trainer_pool {
    run *runs;
    int n_runs, next, epochs;
    uint64_t seed;
    float lr, behaviour_lr;
    size_t S;
    const polopt_mips *index;
    const polopt_dataset *train, *test;
    const uint32_t *b_slate[N_SLATES]; /* b's greedy slates on the test users, N_TEST x k each */
    pthread_mutex_t lock;
} trainer_pool;

static void *train_worker(void *arg)
{
    trainer_pool *pool = (trainer_pool *)arg;
    polopt_mips_scratch scratch;
    float *scores = (float *)xmalloc(BATCH * pool->index->n * sizeof(float));
    double *mass = (double *)xmalloc(pool->test->n * sizeof(double));
    check(polopt_mips_scratch_init(&scratch, pool->index, EVAL_EF, NULL), "scratch", scratch.err.message);
    for (;;) {
        run *r;
        polopt_policy policy;
        polopt_policy_config pc = polopt_policy_config_default(L, L); /* theta = I, T = 1 */
        polopt_trainer trainer;
        polopt_trainer_config tc = polopt_trainer_config_default();
        polopt_logged_returns lr = *pool->train->returns;
        polopt_dataset data = *pool->train;
        polopt_train_stats st;
        double wall = 0.0, ess = 0.0;
        int e;
        pthread_mutex_lock(&pool->lock);
        r = pool->next < pool->n_runs ? &pool->runs[pool->next++] : NULL;
        pthread_mutex_unlock(&pool->lock);
        if (!r) break;
        memset(&st, 0, sizeof st);
        pc.hooks.log = log_message;
        check(polopt_policy_init(&policy, &pc), "policy", policy.err.message);
        tc.estimator.S = pool->S; /* K = 256, eps = 0.8, batch 32 */
        tc.estimator.seed = pool->seed; /* the same draws and minibatches for every run of a seed */
        tc.warm_start = 1;
        tc.adam.lr = pool->lr;
        tc.correction.kind = r->kind;
        tc.correction.K = r->K;
        tc.correction.cap = r->cap;
        tc.learn_behaviour = r->learned;
        tc.behaviour_adam.lr = pool->behaviour_lr;
        if (r->learned) lr.propensity = NULL; /* the trainer's b_hat stands in */
        data.returns = &lr;
        check(polopt_trainer_init(&trainer, &policy, pool->index, &tc), "trainer", trainer.err.message);
        for (e = 0; e < pool->epochs; ++e) {
            const double t0 = now();
            double dt;
            check(polopt_trainer_epoch(&trainer, &data, &st), r->name, trainer.err.message);
            dt = now() - t0;
            wall += dt;
            ess += st.weight_ess;
            if (e == 0) r->weight_ess_first = st.weight_ess;
            if (r->learned)
                printf("  %-28s epoch %2d  %6.2f s  mean w R %8.3g  weight ESS %5.1f/32  mean log b_hat(a|x) %.2f\n",
                       r->name, e + 1, dt, st.reward, st.weight_ess, st.behaviour_log_lik);
            else
                printf("  %-28s epoch %2d  %6.2f s  mean w R %8.3g  weight ESS %5.1f/32\n", r->name, e + 1, dt,
                       st.reward, st.weight_ess);
            fflush(stdout);
        }
        r->seconds_per_epoch = wall / pool->epochs;
        r->weight_ess = ess / pool->epochs;
        r->b_log_lik = st.behaviour_log_lik;
        score_policy(&policy, pool->index, &scratch, pool->test, pool->b_slate, scores, mass, &r->sc);
        printf("  %-28s done: hit@1 %.3f  hit@4 %.3f  hit@16 %.3f  E_pi[r] %.4f\n", r->name, r->sc.hit[0],
               r->sc.hit[1], r->sc.hit[2], r->sc.draw[0]);
        fflush(stdout);
        polopt_trainer_free(&trainer);
        polopt_policy_free(&policy);
    }
    polopt_mips_scratch_free(&scratch);
    free(scores), free(mass);
    return NULL;
}

/* ---- output --------------------------------------------------------------------------------------------- */

#define N_COLORS 14
static const char *const colors[N_COLORS] = {"#7f7f7f", "#c7c7c7", "#d62728", "#ff7f0e", "#ffbb78", "#2ca02c",
                                             "#98df8a", "#1f77b4", "#aec7e8", "#9467bd", "#c5b0d5", "#8c564b",
                                             "#e377c2", "#17becf"};

/* One panel of grouped bars at x0: a group per slate size, a bar per policy (the references dashed). */
static void svg_panel(FILE *f, double x0, double y0, double w, double h, const char *title,
                      const char *const *names, const double (*v)[N_SLATES], int n_bars, int n_refs, double v_max)
{
    const double group_w = w / N_SLATES, bar_w = (group_w - 24) / n_bars;
    int s, b, t;
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle' font-size='13'>%s</text>\n", x0 + w / 2, y0 - 8, title);
    for (t = 0; t <= 5; ++t) {
        const double gy = y0 + h - h * t / 5;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, gy, x0 + w, gy);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.2f</text>\n", x0 - 5, gy + 4, v_max * t / 5);
    }
    for (s = 0; s < N_SLATES; ++s) {
        const double gx = x0 + group_w * s + 12;
        for (b = 0; b < n_bars; ++b) {
            const double bh = h * v[b][s] / v_max;
            fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'%s><title>%s: %.3f</title></rect>\n",
                    gx + bar_w * b, y0 + h - bh, bar_w * 0.88, bh, colors[b % N_COLORS],
                    b < n_refs ? " stroke='black' stroke-width='0.6' stroke-dasharray='2,2'" : "", names[b], v[b][s]);
        }
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>K = %lu</text>\n", gx + bar_w * n_bars / 2, y0 + h + 16,
                (unsigned long)slate_k[s]);
    }
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n", x0, y0, w, h);
}

/* Two panels: the greedy K-slate and K draws from pi; the legend on the right. */
static void write_svg(const char *path, size_t P, size_t N, const char *const *names, const double (*hit)[N_SLATES],
                      const double (*draw)[N_SLATES], int n_bars, int n_refs)
{
    const double W = 1180, x0 = 60, y0 = 76, w = 400, h = 340, gap = 70, H = y0 + h + 40;
    FILE *f = fopen(path, "w");
    int b;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='22' text-anchor='middle' font-size='15'>Learning from a log of b: the true expected "
               "reward of a K-slate, the probability that it holds one of the user's %d relevant items</text>\n",
            W / 2, K_RELEVANT);
    fprintf(f, "<text x='%.0f' y='40' text-anchor='middle' font-size='12'>P = %lu items, %lu logged steps, %d held-out "
               "users; every policy trained from theta = I (the light grey bar)</text>\n", W / 2, (unsigned long)P,
            (unsigned long)N, N_TEST);
    svg_panel(f, x0, y0, w, h, "served slate: the K best items (MIPS)", names, hit, n_bars, n_refs, 1.0);
    svg_panel(f, x0 + w + gap, y0, w, h, "K independent draws from pi: 1 - (1 - pi(Y|x))^K", names, draw, n_bars,
              n_refs, 1.0);
    fprintf(f, "<text transform='translate(16 %.0f) rotate(-90)' text-anchor='middle'>P(a relevant item in the "
               "slate)</text>\n", y0 + h / 2);
    for (b = 0; b < n_bars; ++b) {
        const double ly = y0 + 4 + 20 * b, lx = x0 + 2 * w + gap + 24;
        fprintf(f, "<rect x='%.0f' y='%.1f' width='14' height='12' fill='%s'%s/>\n", lx, ly, colors[b % N_COLORS],
                b < n_refs ? " stroke='black' stroke-width='0.6' stroke-dasharray='2,2'" : "");
        fprintf(f, "<text x='%.0f' y='%.1f'>%s</text>\n", lx + 20, ly + 10, names[b]);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--quick] [--items P] [--logged N] [--epochs E] [--lr LR] [--samples S] [--seed SEED] "
                    "[--threads T] [--index FILE] [DIR]\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    size_t P = 1000000, N = 30000, S = 1000;
    int epochs = 6, n_threads = 2, quick = 0, a, r, s;
    float lr = 0.005f;
    unsigned long seed = 1;
    const char *out_dir = ".", *index_path = NULL;
    char svg_path[4096], csv_path[4096];
    const double t_start = now();
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    polopt_mips index;
    polopt_mips_scratch scratch;
    polopt_policy beh;
    polopt_policy_config bc = polopt_policy_config_default(L, L);
    float *X, *T, *Xt, *Tt, *ret, *propensity, *reward, *scores;
    uint32_t *action, *b_slate[N_SLATES];
    double *b_rel, *mass, t0, rate_pilot, logged_rate = 0.0, exact_rate = 0.0, mean_log_b = 0.0;
    slate_scores b_sc, start_sc;
    polopt_sets Y_test;
    polopt_dataset train, test;
    polopt_logged_returns returns;
    logger lg;
    trainer_pool pool;
    pthread_t threads[MAX_THREADS];
    run runs[MAX_RUNS];
    int n_runs = 0, built = 1;
    size_t u, i;
    FILE *csv;

    for (a = 1; a < argc; ++a) /* --quick first, so that the options given with it override it */
        if (!strcmp(argv[a], "--quick")) quick = 1, P = 100000, N = 20000;
    for (a = 1; a < argc; ++a) {
        if (!strcmp(argv[a], "--quick")) continue;
        else if (!strcmp(argv[a], "--items") && a + 1 < argc) P = (size_t)strtoul(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--logged") && a + 1 < argc) N = (size_t)strtoul(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--epochs") && a + 1 < argc) epochs = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) n_threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--index") && a + 1 < argc) index_path = argv[++a];
        else if (!strcmp(argv[a], "--lr") && a + 1 < argc) lr = (float)atof(argv[++a]);
        else if (!strcmp(argv[a], "--samples") && a + 1 < argc) S = (size_t)strtoul(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--seed") && a + 1 < argc) seed = strtoul(argv[++a], NULL, 10);
        else if (argv[a][0] == '-') usage(argv[0]);
        else out_dir = argv[a];
    }
    if (P < 1000 || P > 100000000 || N < BATCH || N >= POLOPT_NO_ITEM || epochs < 1 || n_threads < 1 ||
        n_threads > MAX_THREADS || !(lr > 0.0f) || S < 2 || seed == 0 || seed > 0xffffffffUL)
        usage(argv[0]);
    snprintf(svg_path, sizeof svg_path, "%s/topk_catalogue.svg", out_dir);
    snprintf(csv_path, sizeof csv_path, "%s/topk_catalogue.csv", out_dir);

    /* 1. Catalogue, users, index. */
    printf("1. catalogue of %lu items (L = %d), %lu logged users, %d held-out users%s; kernels: %s\n",
           (unsigned long)P, L, (unsigned long)N, N_TEST, quick ? " (--quick)" : "", polopt_isa_name(polopt_isa_detect()));
    sc.n_items = P, sc.dim = L;
    sc.hooks.log = log_message;
    check(polopt_synth_init(&cat, &sc), "catalogue", cat.err.message);
    {
        float *beta = (float *)xmalloc(P * L * sizeof(float));
        check(polopt_synth_items(&cat, 0, P, beta), "items", cat.err.message);
        t0 = now();
        if (index_path && polopt_mips_load(&index, index_path, NULL) == POLOPT_OK) {
            /* a kept index is used only if it holds exactly this catalogue */
            if (index.kind == POLOPT_MIPS_HNSW && index.n == P && index.dim == L &&
                !memcmp(index.vectors, beta, P * L * sizeof(float)))
                built = 0;
            else
                polopt_mips_free(&index);
        }
        if (built) {
            polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
            printf("2. building the HNSW index (M = 16, ef_construction = 100, 2 threads)... ");
            fflush(stdout);
            hc.ef_construction = 100;
            hc.n_threads = 2;
            check(polopt_mips_init_hnsw(&index, P, L, beta, 1, &hc), "index", index.err.message);
            printf("%.1f s\n", now() - t0);
            if (index_path) {
                check(polopt_mips_save(&index, index_path, &index.err), "save index", index.err.message);
                printf("   saved to %s\n", index_path);
            }
        } else {
            printf("2. HNSW index loaded from %s (%.1f s)\n", index_path, now() - t0);
        }
        free(beta); /* the index keeps its own copy */
    }
    check(polopt_mips_scratch_init(&scratch, &index, EVAL_EF, NULL), "scratch", scratch.err.message);
    X = (float *)xmalloc(N * L * sizeof(float)), T = (float *)xmalloc(N * L * sizeof(float));
    Xt = (float *)xmalloc(N_TEST * L * sizeof(float)), Tt = (float *)xmalloc(N_TEST * L * sizeof(float));
    for (u = 0; u < N; ++u) check(polopt_synth_user(&cat, u, X + u * L, T + u * L), "user", cat.err.message);
    for (u = 0; u < N_TEST; ++u)
        check(polopt_synth_user(&cat, TEST_USER0 + u, Xt + u * L, Tt + u * L), "user", cat.err.message);
    check(polopt_synth_relevant(&cat, index.vectors, N_TEST, Tt, K_RELEVANT, &Y_test), "relevant", cat.err.message);
    memset(&test, 0, sizeof test);
    test.n = N_TEST, test.X = Xt, test.ldx = L, test.reward = polopt_sets_reward, test.reward_user = &Y_test;
    test.relevant = &Y_test;

    /* 3. The behaviour policy: theta_b = I + noise, T_b calibrated. */
    bc.hooks.log = log_message;
    check(polopt_policy_init(&beh, &bc), "behaviour policy", beh.err.message);
    {
        polopt_rng rng;
        float *noise = (float *)xmalloc(L * L * sizeof(float));
        check(polopt_rng_seed(&rng, 2019), "seed", "");
        check(polopt_rng_normals(&rng, L * L, noise), "normals", "");
        for (i = 0; i < L * L; ++i) beh.theta[i] += (float)(THETA_NOISE / sqrt((double)L)) * noise[i];
        free(noise);
    }
    printf("3. behaviour policy b: theta_b = I + %.1f Z / sqrt(L); calibrating T_b on %d pilot users... ", THETA_NOISE,
           N_PILOT);
    fflush(stdout);
    t0 = now();
    beh.temperature = calibrate_temperature(&cat, &index, &beh, &rate_pilot);
    printf("T_b = %.4f (E_b[r] = %.3f on the pilot users; %.1f s)\n", (double)beh.temperature, rate_pilot, now() - t0);

    /* 4. The log: one exact draw from b per user, its exact propensity, its reward. */
    action = (uint32_t *)xmalloc(N * sizeof(uint32_t));
    propensity = (float *)xmalloc(N * sizeof(float)), reward = (float *)xmalloc(N * sizeof(float));
    ret = (float *)xmalloc(N * sizeof(float));
    b_rel = (double *)xmalloc(N * sizeof(double));
    printf("4. logging %lu steps from b (exact draws and propensities over all %lu items, %d threads)... ",
           (unsigned long)N, (unsigned long)P, n_threads);
    fflush(stdout);
    t0 = now();
    memset(&lg, 0, sizeof lg);
    lg.cat = &cat, lg.index = &index, lg.behaviour = &beh, lg.n = N, lg.X = X, lg.T = T;
    lg.action = action, lg.propensity = propensity, lg.reward = reward, lg.b_rel = b_rel, lg.seed = seed;
    pthread_mutex_init(&lg.lock, NULL);
    for (a = 0; a < n_threads; ++a)
        if (pthread_create(&threads[a], NULL, log_worker, &lg)) check(POLOPT_ERR_NO_MEMORY, "pthread_create", "");
    for (a = 0; a < n_threads; ++a) pthread_join(threads[a], NULL);
    pthread_mutex_destroy(&lg.lock);
    for (u = 0; u < N; ++u) {
        logged_rate += reward[u];
        exact_rate += b_rel[u];
        mean_log_b += log((double)propensity[u]);
    }
    logged_rate /= (double)N, exact_rate /= (double)N, mean_log_b /= (double)N;
    printf("%.1f s\n   rewarded: %.2f%% of the logged actions (b's exact expected reward on these users: %.2f%%); "
           "mean log b(a|x) = %.2f (uniform: %.2f)\n", now() - t0, 100.0 * logged_rate, 100.0 * exact_rate, mean_log_b,
           -log((double)P));
    memcpy(ret, reward, N * sizeof(float)); /* one step per trajectory: the return R_t is the reward r_t */
    returns.action = action, returns.ret = ret, returns.propensity = propensity;
    memset(&train, 0, sizeof train);
    train.n = N, train.X = X, train.ldx = L, train.returns = &returns;

    /* 5. The references: b's slates (greedy, and K draws at T_b) and the start policy's. */
    printf("5. scoring b and the start policy on the held-out users... ");
    fflush(stdout);
    t0 = now();
    scores = (float *)xmalloc(BATCH * P * sizeof(float));
    mass = (double *)xmalloc(N_TEST * sizeof(double));
    for (s = 0; s < N_SLATES; ++s) {
        b_slate[s] = (uint32_t *)xmalloc(N_TEST * slate_k[s] * sizeof(uint32_t));
        for (u = 0; u < N_TEST; ++u)
            check(polopt_policy_topk(&beh, &index, &scratch, Xt + u * L, slate_k[s], EVAL_EF, b_slate[s] + u * slate_k[s],
                                     NULL), "b's slate", scratch.err.message);
    }
    score_policy(&beh, &index, &scratch, &test, NULL, scores, mass, &b_sc);
    {
        polopt_policy start;
        polopt_policy_config pc = polopt_policy_config_default(L, L);
        pc.hooks.log = log_message;
        check(polopt_policy_init(&start, &pc), "policy", start.err.message);
        score_policy(&start, &index, &scratch, &test, (const uint32_t *const *)b_slate, scores, mass, &start_sc);
        polopt_policy_free(&start);
    }
    free(scores), free(mass);
    printf("%.1f s\n", now() - t0);

    /* 6. The runs. */
#define ADD_RUN(nm, kd, k, cp, lrn)                                                                  \
    do {                                                                                              \
        memset(&runs[n_runs], 0, sizeof runs[n_runs]);                                                \
        runs[n_runs].name = nm, runs[n_runs].kind = kd, runs[n_runs].K = k, runs[n_runs].cap = cp;    \
        runs[n_runs].learned = lrn;                                                                   \
        ++n_runs;                                                                                     \
    } while (0)
    ADD_RUN("no correction", POLOPT_CORRECTION_NONE, 1, 0.0f, 0);
    ADD_RUN("first-order", POLOPT_CORRECTION_FIRST_ORDER, 1, 0.0f, 0);
    ADD_RUN("first-order, cap e^3", POLOPT_CORRECTION_FIRST_ORDER, 1, CAP, 0);
    ADD_RUN("top-K=4", POLOPT_CORRECTION_TOP_K, 4, 0.0f, 0);
    ADD_RUN("top-K=4, cap e^3", POLOPT_CORRECTION_TOP_K, 4, CAP, 0);
    ADD_RUN("top-K=16", POLOPT_CORRECTION_TOP_K, 16, 0.0f, 0);
    ADD_RUN("top-K=16, cap e^3", POLOPT_CORRECTION_TOP_K, 16, CAP, 0);
    ADD_RUN("first-order, cap, b learned", POLOPT_CORRECTION_FIRST_ORDER, 1, CAP, 1);
    ADD_RUN("top-K=16, cap, b learned", POLOPT_CORRECTION_TOP_K, 16, CAP, 1);
#undef ADD_RUN
    memset(&pool, 0, sizeof pool);
    pool.runs = runs, pool.n_runs = n_runs, pool.epochs = epochs;
    pool.lr = lr, pool.behaviour_lr = 0.01f, pool.S = S, pool.seed = seed;
    pool.index = &index, pool.train = &train, pool.test = &test;
    for (s = 0; s < N_SLATES; ++s) pool.b_slate[s] = b_slate[s];
    pthread_mutex_init(&pool.lock, NULL);
    printf("6. %d runs of %d epochs each from theta = I, T = 1 (SNIS: K = 256, S = %lu, eps = 0.8, warm-started HNSW; "
           "Adam lr %.3g, b_hat lr %.3g; seed %lu), %d at a time\n", n_runs, epochs, (unsigned long)S, (double)pool.lr,
           (double)pool.behaviour_lr, seed, n_threads);
    fflush(stdout);
    t0 = now();
    for (a = 0; a < n_threads; ++a)
        if (pthread_create(&threads[a], NULL, train_worker, &pool)) check(POLOPT_ERR_NO_MEMORY, "pthread_create", "");
    for (a = 0; a < n_threads; ++a) pthread_join(threads[a], NULL);
    pthread_mutex_destroy(&pool.lock);
    printf("   training and scoring: %.1f s\n", now() - t0);

    /* 7. The table, the CSV, the plot. */
    csv = fopen(csv_path, "w");
    if (!csv) fprintf(stderr, "cannot write %s\n", csv_path);
    else fprintf(csv, "policy,hit@1,hit@4,hit@16,draw@1,draw@4,draw@16,ndcg@4,ndcg@16,agree@1,agree@4,agree@16,"
                      "weight_ess_per_32,weight_ess_epoch1,seconds_per_epoch\n");
    printf("\n%-29s %6s %6s %6s | %7s %6s %6s | %7s %7s | %8s %8s %8s\n", "policy", "hit@1", "hit@4", "hit@16",
           "draw@1", "draw@4", "draw@16", "agree@4", "agree16", "ESS w/32", "ESS ep.1", "s/epoch");
    for (r = -2; r < n_runs; ++r) {
        const slate_scores *q = r == -2 ? &b_sc : r == -1 ? &start_sc : &runs[r].sc;
        const char *name = r == -2 ? "behaviour b" : r == -1 ? "start (theta = I, T = 1)" : runs[r].name;
        printf("%-29s %6.3f %6.3f %6.3f | %7.4f %6.3f %6.3f | %7.3f %7.3f |", name, q->hit[0], q->hit[1], q->hit[2],
               q->draw[0], q->draw[1], q->draw[2], q->agree[1], q->agree[2]);
        if (r < 0) printf(" %8s %8s %8s\n", "-", "-", "-");
        else printf(" %8.1f %8.1f %8.2f\n", runs[r].weight_ess, runs[r].weight_ess_first, runs[r].seconds_per_epoch);
        if (csv) {
            fprintf(csv, "%s,%.4f,%.4f,%.4f,%.5f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f", name, q->hit[0], q->hit[1],
                    q->hit[2], q->draw[0], q->draw[1], q->draw[2], q->ndcg[1], q->ndcg[2], q->agree[0], q->agree[1],
                    q->agree[2]);
            if (r < 0) fprintf(csv, ",,,\n");
            else fprintf(csv, ",%.2f,%.2f,%.3f\n", runs[r].weight_ess, runs[r].weight_ess_first, runs[r].seconds_per_epoch);
        }
    }
    if (csv) fclose(csv);
    printf("hit@K: the served slate, the K best items by MIPS (HNSW, ef = %d), holds one of the user's %d relevant items "
           "(%d held-out users): the slate's true expected reward (binomial s.e. <= %.3f).\n"
           "draw@K: K independent draws from pi (b at T_b) hold one, 1 - (1 - pi(Y|x))^K, exact (draw@1 = E_pi[r]).  "
           "agree@K: share of the greedy slate that is in b's greedy slate.\n"
           "ESS w: (sum w)^2 / sum w^2 of the correction weights per minibatch of 32 (all logged rows, rewarded or not), "
           "mean over the epochs; ep.1: first epoch.  s/epoch: wall time, %d runs at a time.\n",
           EVAL_EF, K_RELEVANT, N_TEST, 0.5 / sqrt((double)N_TEST), n_threads);
    for (r = 0; r < n_runs; ++r)
        if (runs[r].learned)
            printf("b learned (%s): mean log b_hat(a|x) in the last epoch %.2f; the true mean log b(a|x) is %.2f\n",
                   runs[r].name, runs[r].b_log_lik, mean_log_b);
    {
        const char *names[MAX_RUNS + 2];
        double hits[MAX_RUNS + 2][N_SLATES], draws[MAX_RUNS + 2][N_SLATES];
        names[0] = "behaviour b", names[1] = "start (theta = I)";
        for (s = 0; s < N_SLATES; ++s) {
            hits[0][s] = b_sc.hit[s], hits[1][s] = start_sc.hit[s];
            draws[0][s] = b_sc.draw[s], draws[1][s] = start_sc.draw[s];
        }
        for (r = 0; r < n_runs; ++r) {
            names[r + 2] = runs[r].name;
            for (s = 0; s < N_SLATES; ++s) hits[r + 2][s] = runs[r].sc.hit[s], draws[r + 2][s] = runs[r].sc.draw[s];
        }
        write_svg(svg_path, P, N, names, (const double(*)[N_SLATES])hits, (const double(*)[N_SLATES])draws,
                  n_runs + 2, 2);
    }
    printf("\nwrote %s and %s; total time %.0f s\n", svg_path, csv_path, now() - t_start);

    for (s = 0; s < N_SLATES; ++s) free(b_slate[s]);
    polopt_policy_free(&beh);
    polopt_sets_free(&Y_test);
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&index);
    polopt_synth_free(&cat);
    free(X), free(T), free(Xt), free(Tt), free(action), free(propensity), free(reward), free(ret), free(b_rel);
    return 0;
}
