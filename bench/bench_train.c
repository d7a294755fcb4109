/* bench_train: the paper's RQ1 table on this machine - milliseconds per training step and per epoch of each
   method (batch 32, K = 256, S = 1000, one thread) as the catalogue grows - and its Fig. 5 idea: the test reward each
   method reaches in the same wall-clock budget.
     REINFORCE            scores all P items (gemm), S exact draws; built-in kernels, and CBLAS when available
     eps = 1              the uniform proposal: no MIPS
     eps = 0.8            the mixture, with a full MIPS search for alpha_K at every visit (the paper)
     eps = 0.8, warm      the same, each search starting from the context's previous alpha_K (16 expansions)
     adaptive eps, warm   eps set each step from the estimated effective sample size
   The first epoch of a warm-started method searches from scratch (nothing to start from yet): both epochs are shown.
   Then learning from logged returns (Chen et al. 2019) at L = 32: REINFORCE on the logged actions with the exact
   estimator (all P items scored: the baseline), and with SNIS (eps = 0.8, warm) uncorrected, first-order, top-K
   (K = 16), top-K capped at e^3, and top-K with a learned behaviour head (two estimator passes a step); and the LPI
   loss of Liang & Vlassis (2023), exp(A / beta_kl) log pi(a | x), with the exact estimator (its baseline) and with
   SNIS, beside the cost of its advantages A = r(a) - E_mu[r] with either estimator.  The log (a random item per
   user, its ground-truth reward as the return, propensity 1/P) serves the timing only.
   Data: the synthetic catalogue, 2048 training users (64 steps an epoch), ground-truth rewards.
   Usage: bench_train [--quick] [P ...]   (default P: 10000 100000 1000000; L: 32 and 128) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N_TRAIN 2048
#define N_TEST 1000
#define REINFORCE_CONTEXTS 256 /* REINFORCE's cost per step does not depend on the contexts: 8 steps are enough */

#ifdef BENCH_HAVE_CBLAS
double bench_cblas_reinforce_ms(const polopt_policy *start, const polopt_mips *index, const polopt_dataset *data,
                                const polopt_trainer_config *config);
#endif


static void die(const char *what, const char *message)
{
    fprintf(stderr, "bench_train: %s: %s\n", what, message);
    exit(1);
}

/* A catalogue, its HNSW index (which owns the item vectors), and training and test users with ground truth. */
typedef struct setup {
    size_t P, L;
    polopt_synth cat;
    polopt_mips index;
    float *X, *T, *Xt, *Tt;
    polopt_synth_task task, task_test;
    polopt_dataset train, test;
    double build_seconds;
} setup;

static void setup_make(setup *s, size_t P, size_t L)
{
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    float *beta;
    size_t u;
    double t0;
    s->P = P, s->L = L;
    sc.n_items = P, sc.dim = L;
    if (polopt_synth_init(&s->cat, &sc) != POLOPT_OK) die("catalogue", s->cat.err.message);
    beta = (float *)malloc(P * L * sizeof *beta);
    s->X = (float *)malloc(N_TRAIN * L * sizeof(float));
    s->T = (float *)malloc(N_TRAIN * L * sizeof(float));
    s->Xt = (float *)malloc(N_TEST * L * sizeof(float));
    s->Tt = (float *)malloc(N_TEST * L * sizeof(float));
    if (!beta || !s->X || !s->T || !s->Xt || !s->Tt) die("memory", "out of memory");
    polopt_synth_items(&s->cat, 0, P, beta);
    for (u = 0; u < N_TRAIN; ++u) polopt_synth_user(&s->cat, u, s->X + u * L, s->T + u * L);
    for (u = 0; u < N_TEST; ++u) polopt_synth_user(&s->cat, 50000000 + u, s->Xt + u * L, s->Tt + u * L);
    hc.ef_construction = 100; /* the proposal needs a good top-K, not a perfect one */
    hc.n_threads = 2;         /* the index is built once; training below runs on one thread */
    t0 = bench_now();
    if (polopt_mips_init_hnsw(&s->index, P, L, beta, 1, &hc) != POLOPT_OK) die("index", s->index.err.message);
    s->build_seconds = bench_now() - t0;
    free(beta); /* the index keeps its own copy (in huge pages on Linux) */
    s->task.synth = &s->cat, s->task.items = s->index.vectors, s->task.tastes = s->T, s->task.n = N_TRAIN;
    s->task_test = s->task;
    s->task_test.tastes = s->Tt, s->task_test.n = N_TEST;
    memset(&s->train, 0, sizeof s->train);
    s->train.n = N_TRAIN, s->train.X = s->X, s->train.ldx = L;
    s->train.reward = polopt_synth_reward, s->train.reward_user = &s->task;
    s->test = s->train;
    s->test.n = N_TEST, s->test.X = s->Xt, s->test.reward_user = &s->task_test;
}

static void setup_free(setup *s)
{
    polopt_mips_free(&s->index);
    polopt_synth_free(&s->cat);
    free(s->X), free(s->T), free(s->Xt), free(s->Tt);
}

enum { M_REINFORCE, M_REINFORCE_CBLAS, M_EPS1, M_EPS08, M_EPS08_WARM, M_ADAPTIVE, N_METHODS };
static const char *method_names[N_METHODS] = {"REINFORCE", "REINFORCE (CBLAS)", "eps = 1", "eps = 0.8",
                                              "eps = 0.8, warm", "adaptive eps, warm"};

static polopt_trainer_config method_config(int m)
{
    polopt_trainer_config c = polopt_trainer_config_default();
    c.estimator.method = m <= M_REINFORCE_CBLAS ? POLOPT_METHOD_REINFORCE : POLOPT_METHOD_SNIS;
    c.estimator.epsilon = m == M_EPS1 ? 1.0f : 0.8f;
    c.warm_start = m >= M_EPS08_WARM;
    c.estimator.adaptive_epsilon = m == M_ADAPTIVE;
    c.adam.lr = 0.01f;
    return c;
}

static polopt_policy fresh_policy(size_t L)
{
    polopt_policy p;
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    if (polopt_policy_init(&p, &pc) != POLOPT_OK) die("policy", p.err.message);
    return p;
}

/* Milliseconds per step in the first and the second epoch of a method (REINFORCE: one short epoch). */
static void time_method(setup *s, int m, double *ms_first, double *ms_second)
{
    polopt_policy pol = fresh_policy(s->L);
    polopt_trainer_config c = method_config(m);
    polopt_dataset d = s->train;
    polopt_trainer tr;
    polopt_train_stats st;
    int e;
    *ms_first = *ms_second = -1.0;
    if (m <= M_REINFORCE_CBLAS) d.n = REINFORCE_CONTEXTS;
    if (m == M_REINFORCE_CBLAS) {
#ifdef BENCH_HAVE_CBLAS
        *ms_first = *ms_second = bench_cblas_reinforce_ms(&pol, &s->index, &d, &c);
#endif
        polopt_policy_free(&pol);
        return;
    }
    if (polopt_trainer_init(&tr, &pol, &s->index, &c) != POLOPT_OK) die("trainer", tr.err.message);
    for (e = 0; e < (m == M_REINFORCE ? 1 : 2); ++e) {
        const double t0 = bench_now();
        if (polopt_trainer_epoch(&tr, &d, &st) != POLOPT_OK) die("epoch", tr.err.message);
        *(e == 0 ? ms_first : ms_second) = 1e3 * (bench_now() - t0) / (double)st.steps;
    }
    if (m == M_REINFORCE) *ms_second = *ms_first;
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
}

/* Learning from logged returns: the baseline (exact estimator, no correction) and the SNIS variants. */
enum { G_EXACT, G_NONE, G_FIRST, G_TOPK, G_TOPK_CAP, G_TOPK_LEARNED, G_LPI_EXACT, G_LPI, N_LOGGED };
static const char *logged_names[N_LOGGED] = {"exact, no correction", "SNIS, no correction", "SNIS, first-order",
                                             "SNIS, top-K (K = 16)", "SNIS, top-K, capped", "SNIS, top-K, b learned",
                                             "LPI, exact", "LPI, SNIS"};

/* LPI's advantages A_i = r(a_i) - E_mu[r] of n logged actions, mu = the start policy, with an estimator of the given
   method: the weights of the LPI rows, and milliseconds per context. */
static double lpi_advantages(setup *s, polopt_method method, size_t n, const uint32_t *act, float *out)
{
    polopt_policy mu = fresh_policy(s->L);
    polopt_estimator_config ec = method_config(M_EPS08).estimator;
    polopt_estimator est;
    float *H = (float *)malloc(n * s->L * sizeof(float));
    double t0;
    ec.method = method;
    if (polopt_estimator_init(&est, &s->index, &ec) != POLOPT_OK) die("estimator", est.err.message);
    if (polopt_policy_embed(&mu, n, s->X, s->L, H) != POLOPT_OK) die("embed", mu.err.message);
    t0 = bench_now();
    if (polopt_lpi_advantages(&est, n, H, NULL, act, polopt_synth_reward, &s->task, POLOPT_LPI_MEAN, out) != POLOPT_OK)
        die("polopt_lpi_advantages", est.err.message);
    t0 = 1e3 * (bench_now() - t0) / (double)n;
    polopt_estimator_free(&est);
    polopt_policy_free(&mu);
    free(H);
    return t0;
}

/* Milliseconds per step (second epoch) of one way to learn from the log of s.  The LPI rows learn the weighted
   cross-entropy with weights exp(A / 0.1), A from the SNIS advantages (out_adv_ms: their milliseconds per context, with
   SNIS and with the exact estimator, measured on the LPI, SNIS row). */
static double time_logged(setup *s, int g, double *out_adv_ms)
{
    polopt_policy pol = fresh_policy(s->L);
    polopt_trainer_config c = method_config(M_EPS08_WARM);
    polopt_dataset d = s->train;
    polopt_logged_returns lr;
    polopt_trainer tr;
    polopt_train_stats st;
    uint32_t *act = (uint32_t *)malloc(N_TRAIN * sizeof(uint32_t));
    float *ret = (float *)malloc(N_TRAIN * sizeof(float)), *prop = (float *)malloc(N_TRAIN * sizeof(float));
    polopt_rng rng;
    double ms = -1.0;
    int e;
    size_t i;
    polopt_rng_seed(&rng, 5);
    for (i = 0; i < N_TRAIN; ++i) {
        act[i] = (uint32_t)polopt_rng_below(&rng, s->P);
        prop[i] = 1.0f / (float)s->P;
        if (polopt_synth_reward(&s->task, (uint32_t)i, 1, act + i, ret + i) != POLOPT_OK) die("reward", "failed");
    }
    if (g >= G_LPI_EXACT) {
        const double snis_ms = lpi_advantages(s, POLOPT_METHOD_SNIS, N_TRAIN, act, ret);
        if (g == G_LPI) {
            float *exact = (float *)malloc(REINFORCE_CONTEXTS * sizeof(float));
            out_adv_ms[0] = snis_ms;
            out_adv_ms[1] = lpi_advantages(s, POLOPT_METHOD_EXACT, REINFORCE_CONTEXTS, act, exact);
            free(exact);
        }
        if (polopt_lpi_weights(N_TRAIN, ret, 0.1f, ret, NULL) != POLOPT_OK) die("polopt_lpi_weights", "failed");
    }
    lr.action = act, lr.ret = ret, lr.propensity = g == G_TOPK_LEARNED ? NULL : prop;
    d.reward = NULL, d.reward_user = NULL, d.returns = &lr;
    if (g == G_EXACT || g == G_LPI_EXACT)
        c.estimator.method = POLOPT_METHOD_EXACT, c.warm_start = 0, d.n = REINFORCE_CONTEXTS;
    c.correction.kind = g <= G_NONE || g >= G_LPI_EXACT ? POLOPT_CORRECTION_NONE
                        : g == G_FIRST                   ? POLOPT_CORRECTION_FIRST_ORDER
                                                         : POLOPT_CORRECTION_TOP_K;
    c.correction.K = 16;
    c.correction.cap = g == G_TOPK_CAP ? 20.0855f : 0.0f; /* e^3, the production value */
    c.learn_behaviour = g == G_TOPK_LEARNED;
    if (polopt_trainer_init(&tr, &pol, &s->index, &c) != POLOPT_OK) die("trainer", tr.err.message);
    for (e = 0; e < 2; ++e) {
        const double t0 = bench_now();
        if (polopt_trainer_epoch(&tr, &d, &st) != POLOPT_OK) die("epoch", tr.err.message);
        ms = 1e3 * (bench_now() - t0) / (double)st.steps;
    }
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    free(act), free(ret), free(prop);
    return ms;
}

#define N_VALUE 256 /* test users for the exact value of pi: O(n P L) */

/* The greedy policy's ground-truth test reward (MIPS argmax) and the exact value of the stochastic policy pi, the
   objective every method maximises, on held-out users. */
static void test_scores(setup *s, const polopt_policy *pol, double *out_greedy, double *out_value)
{
    polopt_mips_scratch sc;
    polopt_eval ev;
    polopt_dataset sub = s->test;
    polopt_mips_scratch_init(&sc, &s->index, 64, NULL);
    if (polopt_evaluate(pol, &s->index, &sc, &s->test, 1, 64, &ev) != POLOPT_OK) die("evaluate", sc.err.message);
    polopt_mips_scratch_free(&sc);
    sub.n = N_VALUE;
    if (polopt_policy_value(pol, &s->index, &sub, out_value) != POLOPT_OK) die("value", "failed");
    *out_greedy = ev.reward;
}

/* Train for about budget seconds of wall time (whole epochs), then score the policy on held-out users. */
static void train_for(setup *s, int m, double budget, double *out_greedy, double *out_value, size_t *out_steps,
                      double *out_seconds)
{
    polopt_policy pol = fresh_policy(s->L);
    polopt_trainer_config c = method_config(m);
    polopt_trainer tr;
    polopt_train_stats st;
    const double t0 = bench_now();
    size_t steps = 0;
    if (polopt_trainer_init(&tr, &pol, &s->index, &c) != POLOPT_OK) die("trainer", tr.err.message);
    while (bench_now() - t0 < budget) {
        if (polopt_trainer_epoch(&tr, &s->train, &st) != POLOPT_OK) die("epoch", tr.err.message);
        steps += st.steps;
    }
    *out_seconds = bench_now() - t0;
    test_scores(s, &pol, out_greedy, out_value);
    *out_steps = steps;
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
}

int main(int argc, char **argv)
{
    size_t Ps[8] = {10000, 100000, 1000000}, Ls[2] = {32, 128};
    int n_P = 3, n_L = 2, quick = 0, a, li, pi, m;
    double budget = 30.0;
    double ms[2][8][N_METHODS][2]; /* [L][P][method][epoch] */
    char keys[8192] = "", line[256];
    memset(ms, 0, sizeof ms);
    for (a = 1; a < argc; ++a) {
        if (strcmp(argv[a], "--quick") == 0) quick = 1;
        else if (n_P == 3 && Ps[0] == 10000 && a == (quick ? 2 : 1)) n_P = 0;
        if (strcmp(argv[a], "--quick") != 0 && n_P < 8) Ps[n_P++] = (size_t)strtoul(argv[a], NULL, 10);
    }
    if (quick) {
        if (argc == 2) Ps[0] = 10000, Ps[1] = 100000, n_P = 2;
        n_L = 1, budget = 5.0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* each line as soon as it is known */
    printf("bench_train: batch 32, K = 256, S = 1000, one training thread; %d training users, synthetic catalogue; "
           "built-in kernel: %s\n", N_TRAIN, polopt_isa_name(polopt_isa_detect()));
#ifndef BENCH_HAVE_CBLAS
    printf("REINFORCE (CBLAS): skipped (no cblas.h / OpenBLAS: apt-get install libopenblas-dev)\n");
#endif
    for (li = 0; li < n_L; ++li)
        for (pi = 0; pi < n_P; ++pi) {
            setup s;
            double best;
            setup_make(&s, Ps[pi], Ls[li]);
            printf("\nP = %lu, L = %lu (index built in %.1f s, 2 threads)\n", (unsigned long)s.P, (unsigned long)s.L,
                   s.build_seconds);
            printf("  %-20s %14s %14s %12s %10s\n", "method", "ms/step ep.1", "ms/step ep.2", "s/epoch", "speedup");
            for (m = 0; m < N_METHODS; ++m) time_method(&s, m, &ms[li][pi][m][0], &ms[li][pi][m][1]);
            best = ms[li][pi][M_REINFORCE][1];
            if (ms[li][pi][M_REINFORCE_CBLAS][1] > 0 && ms[li][pi][M_REINFORCE_CBLAS][1] < best)
                best = ms[li][pi][M_REINFORCE_CBLAS][1];
            for (m = 0; m < N_METHODS; ++m) {
                const double *t = ms[li][pi][m];
                if (t[1] <= 0) {
                    printf("  %-20s %14s\n", method_names[m], "skipped");
                    continue;
                }
                printf("  %-20s %14.2f %14.2f %12.2f %9.1fx\n", method_names[m], t[0], t[1], t[1] * N_TRAIN / 32 * 1e-3,
                       best / t[1]);
            }
            if (s.L == 32) { /* learning from logged returns: each method against the exact baseline */
                double lms[N_LOGGED], adv_ms[2] = {0.0, 0.0};
                int g;
                printf("\n  learning from logged returns (P = %lu, L = 32)\n  %-24s %10s %12s\n", (unsigned long)s.P,
                       "method", "ms/step", "vs exact");
                for (g = 0; g < N_LOGGED; ++g) {
                    lms[g] = time_logged(&s, g, adv_ms);
                    printf("  %-24s %10.2f %11.1fx\n", logged_names[g], lms[g],
                           lms[g >= G_LPI_EXACT ? G_LPI_EXACT : G_EXACT] / lms[g]);
                }
                printf("  (LPI rows against LPI, exact.  LPI's advantages, once per log: %.3f ms a context with SNIS, "
                       "%.2f exact, %.1fx)\n", adv_ms[0], adv_ms[1], adv_ms[1] / adv_ms[0]);
                if (s.P == 1000000) {
                    sprintf(line, " logged_exact_ms_P1e6=%.1f logged_topk_ms_P1e6=%.2f speedup_logged_topk_P1e6=%.1f "
                                  "speedup_logged_topk_learned_P1e6=%.1f",
                            lms[G_EXACT], lms[G_TOPK], lms[G_EXACT] / lms[G_TOPK], lms[G_EXACT] / lms[G_TOPK_LEARNED]);
                    strcat(keys, line);
                    sprintf(line, " lpi_exact_ms_P1e6=%.1f lpi_snis_ms_P1e6=%.2f speedup_lpi_P1e6=%.1f "
                                  "lpi_over_eps08_step_P1e6=%.2f speedup_lpi_advantages_P1e6=%.1f",
                            lms[G_LPI_EXACT], lms[G_LPI], lms[G_LPI_EXACT] / lms[G_LPI],
                            lms[G_LPI] / ms[li][pi][M_EPS08_WARM][1], adv_ms[1] / adv_ms[0]);
                    strcat(keys, line);
                }
            }
            if (s.P == 1000000 && s.L == 32) {
                sprintf(line, " kernel=%s speedup_eps08_P1e6_L32=%.1f speedup_eps08_cold_P1e6_L32=%.1f "
                              "speedup_eps1_P1e6_L32=%.1f speedup_adaptive_P1e6_L32=%.1f reinforce_ms_P1e6_L32=%.1f "
                              "eps08_ms_P1e6_L32=%.2f",
                        polopt_isa_name(polopt_isa_detect()), best / ms[li][pi][M_EPS08_WARM][1],
                        best / ms[li][pi][M_EPS08][1], best / ms[li][pi][M_EPS1][1], best / ms[li][pi][M_ADAPTIVE][1],
                        best, ms[li][pi][M_EPS08_WARM][1]);
                strcat(keys, line);
                if (ms[li][pi][M_REINFORCE_CBLAS][1] > 0) { /* the built-in kernels against OpenBLAS, same code around */
                    sprintf(line, " reinforce_builtin_over_cblas_P1e6_L32=%.2f",
                            ms[li][pi][M_REINFORCE][1] / ms[li][pi][M_REINFORCE_CBLAS][1]);
                    strcat(keys, line);
                }
            }
            if (li == 0 && pi == n_P - 1 && s.L == 32) { /* the wall-time budget: the largest catalogue, L = 32 */
                static const int ms_budget[4] = {M_REINFORCE, M_EPS1, M_EPS08_WARM, M_ADAPTIVE};
                static const char *key_names[4] = {"reinforce", "eps1", "eps08", "adaptive"};
                polopt_policy start = fresh_policy(s.L);
                double g0, v0;
                int k;
                test_scores(&s, &start, &g0, &v0);
                printf("\n  the same %.0f s of training each (P = %lu, L = %lu), scored on held-out users with the ground\n"
                       "  truth: the value of pi (the objective, exact, %d users) and the reward of its greedy action\n"
                       "  (MIPS argmax, %d users).  Before training: value %.4f, greedy %.4f\n",
                       budget, (unsigned long)s.P, (unsigned long)s.L, N_VALUE, N_TEST, v0, g0);
                printf("  %-20s %10s %10s %12s %12s\n", "method", "steps", "seconds", "value of pi", "greedy");
                for (k = 0; k < 4; ++k) {
                    double g, v, secs;
                    size_t steps;
                    train_for(&s, ms_budget[k], budget, &g, &v, &steps, &secs);
                    printf("  %-20s %10lu %10.1f %12.4f %12.4f\n", method_names[ms_budget[k]], (unsigned long)steps, secs,
                           v, g);
                    sprintf(line, " budget_value_%s=%.4f budget_greedy_%s=%.4f", key_names[k], v, key_names[k], g);
                    strcat(keys, line);
                }
                polopt_policy_free(&start);
            }
            setup_free(&s);
        }
    /* growth of the step cost from P = 10^5 to 10^6 (L = 32) */
    for (pi = 0; pi + 1 < n_P; ++pi)
        if (Ps[pi] == 100000 && Ps[pi + 1] == 1000000) {
            const double g08 = ms[0][pi + 1][M_EPS08_WARM][1] / ms[0][pi][M_EPS08_WARM][1];
            const double g08c = ms[0][pi + 1][M_EPS08][1] / ms[0][pi][M_EPS08][1];
            const double gr = ms[0][pi + 1][M_REINFORCE][1] / ms[0][pi][M_REINFORCE][1];
            printf("\ngrowth of the step cost from P = 100,000 to 1,000,000 (L = 32): eps = 0.8 warm %.2fx, eps = 0.8 "
                   "%.2fx, REINFORCE %.2fx\n", g08, g08c, gr);
            sprintf(line, " growth_eps08_1e5_1e6=%.2f growth_eps08_cold_1e5_1e6=%.2f growth_reinforce_1e5_1e6=%.2f", g08,
                    g08c, gr);
            strcat(keys, line);
        }
    printf("\nbench:%s\n", keys[0] ? keys : " quick=1");
    return 0;
}
