/* 02_train.c - fast offline policy learning on a million items with sparse rewards: the paper's method against
   REINFORCE.

   What it shows (Sakhi, Rohde & Gilotte, "Fast Offline Policy Optimization for Large Scale Recommendation", AAAI
   2023, Algorithm 1 and Section 5): a softmax policy pi(a | x) = softmax(h_theta(x)^T beta) over P = 1,000,000
   items, trained to maximise a sparse reward: for each user only Y_u, the 5 items its hidden taste rates highest,
   pay 1; the other 999,995 pay 0.  Four ways, each for the same 20 seconds of training:
     REINFORCE     scores all P items for every context (a gemm over the whole catalogue) and draws from pi exactly;
     eps = 0.8     the paper: S = 1000 draws from a mixture - with probability eps a uniform item, otherwise one of
                   the top-K = 256 items found by MIPS in an HNSW index, drawn from their softmax - corrected by
                   self-normalised importance sampling; each context's search starts from its previous top-K;
     adaptive eps  the same, with eps chosen at every step to maximise the estimated effective sample size;
     eps = 1       the uniform proposal alone: no MIPS at all.
   Everything is scored on 512 held-out users: E_pi[r], the policy's expected reward (exact: the probability pi gives
   to Y_u, which needs the normaliser over all P items), the reward of its greedy action (the MIPS argmax is in
   Y_u), and hit-rate@10 (one of the 10 MIPS-best items is in Y_u).

   What to look at: the seconds per epoch (REINFORCE pays O(P) per context, the others about O(log P)); how many
   epochs each method fits in the budget; and whether a method learns at all.  With S = 1000 uniform draws out of a
   million, a draw lands in Y_u with a chance of about 1000 x 5 / 10^6 = 0.5% per context: eps = 1 almost never sees
   a reward, so its gradient is almost always exactly zero.  The MIPS half of the mixture proposes the items the
   policy already ranks high, which is where the rewards are once the policy is roughly right.  The curve of E_pi[r]
   against training time is written to build/train_curve.svg.  The order the methods come out in is the result of
   this run, whatever it is: nothing here is tuned to it.

   Run: make demo   (measured: 146 s on two cores with AVX2, 36 s of them to build the index; P and the budget can be
   given: build/02_train 200000 10) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h> /* isatty */

#define L 32            /* embedding dimension */
#define N_TRAIN 2048    /* training users: 64 steps of 32 per epoch */
#define N_TEST 512      /* held-out users */
#define K_RELEVANT 5    /* |Y_u|: the relevant items of a user */
#define BUDGET 20.0     /* seconds of training per method (the second argument changes it) */
#define N_EVAL 5        /* points on each curve (besides the start) */
#define N_METHODS 4
#define MAX_POINTS 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "\n%s failed: %s (%s)\n", what, polopt_strerror(rc), message);
        exit(1);
    }
}

/* The training run of one method: its configuration and what it measured. */
typedef struct run {
    const char *name;
    polopt_trainer_config config;
    int epochs, n;                              /* epochs trained, points recorded */
    double time[MAX_POINTS], value[MAX_POINTS]; /* training seconds so far, E_pi[r] on held-out users */
    double greedy, hit10, seconds_per_epoch, ess;
} run;

/* E_pi[r] of the set reward, exactly: sum_{a in Y_u} pi(a | x_u) = sum_{a in Y_u} exp(f(a) - log Z), averaged over
   n users.  log Z = log sum_a exp f(a) needs every item's score: the users go in blocks of 32, scored against the
   whole catalogue with one gemm (the kernel REINFORCE uses), then one log-sum-exp per user.  scores: 32 x P floats. */
static double expected_reward(const polopt_policy *pol, const polopt_mips *index, const float *X, const polopt_sets *Y,
                              size_t n, float *scores)
{
    const size_t P = index->n;
    float H[32 * L];
    double total = 0.0, log_z;
    size_t b, i, j;
    for (b = 0; b < n; b += 32) {
        const size_t m = n - b < 32 ? n - b : 32;
        check(polopt_policy_embed(pol, m, X + b * L, L, H), "embed", pol->err.message);
        check(polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, m, P, L, 1.0f, H, L, index->vectors, L, 0.0f, scores, P), "gemm", "");
        for (i = 0; i < m; ++i) {
            const float *f = scores + i * P;
            check(polopt_logsumexp(P, f, pol->temperature, &log_z), "logsumexp", "");
            for (j = Y->offsets[b + i]; j < Y->offsets[b + i + 1]; ++j)
                total += exp((double)f[Y->items[j]] / pol->temperature - log_z);
        }
    }
    return total / (double)n;
}

/* Progress: the library never prints, it calls this after every step.  On a terminal one line is rewritten as
   training goes; in a log, one line per few epochs. */
static int on_terminal;
static void show_progress(void *user, const polopt_progress *p)
{
    const run *r = (const run *)user;
    char ess[32] = "     -"; /* 0: the step weighed no context (no draw earned a reward): no ESS to show */
    if ((on_terminal && p->step % 8 == 0) || (!on_terminal && p->step == p->steps_per_epoch && p->epoch % 8 == 0)) {
        if (p->ess > 0.0) snprintf(ess, sizeof ess, "%6.1f", p->ess);
        printf("%s  %-13s epoch %3d  step %3lu/%lu  estimated reward %.4f  ESS %s  eps %.2f%s",
               on_terminal ? "\r" : "", r->name, (int)p->epoch + 1, (unsigned long)p->step,
               (unsigned long)p->steps_per_epoch, p->reward, ess, (double)p->epsilon, on_terminal ? "  " : "\n");
        fflush(stdout);
    }
}

/* An SVG line chart of E_pi[r] against training time, one line per run, readable in any browser. */
static void write_svg(const char *path, size_t P, const run *runs, int n_runs, double t_max, double v_max)
{
    static const char *colors[] = {"#d62728", "#ff7f0e", "#1f77b4", "#2ca02c"};
    const double W = 720, H = 440, x0 = 80, y0 = 30, w = 590, h = 340;
    FILE *f = fopen(path, "w");
    int r, i, t;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='13'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='18' text-anchor='middle' font-size='15'>E_pi[r] on held-out users against "
               "training time (P = %lu, |Y_u| = %d)</text>\n", x0 + w / 2, (unsigned long)P, K_RELEVANT);
    for (t = 0; t <= 5; ++t) { /* grid and ticks */
        const double gx = x0 + w * t / 5, gy = y0 + h - h * t / 5;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", gx, y0, gx, y0 + h);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, gy, x0 + w, gy);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.0f</text>\n", gx, y0 + h + 18, t_max * t / 5);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.2f</text>\n", x0 - 6, gy + 4, v_max * t / 5);
    }
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n", x0, y0, w, h);
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>training time (s)</text>\n", x0 + w / 2, y0 + h + 38);
    fprintf(f, "<text transform='translate(18 %.0f) rotate(-90)' text-anchor='middle'>E_pi[r], the probability of a "
               "relevant item</text>\n", y0 + h / 2);
    for (r = 0; r < n_runs; ++r) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[r % 4]);
        for (i = 0; i < runs[r].n; ++i)
            fprintf(f, "%.1f,%.1f ", x0 + w * runs[r].time[i] / t_max, y0 + h - h * runs[r].value[i] / v_max);
        fprintf(f, "'/>\n");
        for (i = 0; i < runs[r].n; ++i)
            fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", x0 + w * runs[r].time[i] / t_max,
                    y0 + h - h * runs[r].value[i] / v_max, colors[r % 4]);
        fprintf(f, "<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", x0 + w - 110, y0 + h - 20 - 18 * (n_runs - 1 - r),
                colors[r % 4], runs[r].name);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    const size_t P = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    const double budget = argc > 2 ? atof(argv[2]) : BUDGET, t_start = now();
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_mips index;
    polopt_mips_scratch scratch;
    polopt_sets Y_train, Y_test;
    float *beta, *scores, *X = (float *)malloc(N_TRAIN * L * sizeof(float)), *T = (float *)malloc(N_TRAIN * L * sizeof(float));
    float *Xt = (float *)malloc(N_TEST * L * sizeof(float)), *Tt = (float *)malloc(N_TEST * L * sizeof(float));
    polopt_dataset train, test;
    run runs[N_METHODS];
    double t0, v_max = 0.0, t_max = 0.0, start_value, start_greedy, start_hit10;
    size_t u;
    int r, i;

    on_terminal = isatty(STDOUT_FILENO);
    /* 1. The catalogue (the synthetic generator of polopt.h: clustered, unequal-norm embeddings) and users. */
    printf("1. generating a catalogue of %lu items (L = %d) and %d + %d users; kernels: %s\n", (unsigned long)P, L,
           N_TRAIN, N_TEST, polopt_isa_name(polopt_isa_detect()));
    sc.n_items = P, sc.dim = L;
    check(polopt_synth_init(&cat, &sc), "catalogue", cat.err.message);
    beta = (float *)malloc(P * L * sizeof *beta);
    scores = (float *)malloc(32 * P * sizeof *scores);
    if (!beta || !scores || !X || !T || !Xt || !Tt) check(POLOPT_ERR_NO_MEMORY, "allocation", "");
    check(polopt_synth_items(&cat, 0, P, beta), "items", cat.err.message);
    for (u = 0; u < N_TRAIN; ++u) check(polopt_synth_user(&cat, u, X + u * L, T + u * L), "user", cat.err.message);
    for (u = 0; u < N_TEST; ++u) check(polopt_synth_user(&cat, 90000000 + u, Xt + u * L, Tt + u * L), "user", "");

    /* 2. The MIPS index over the item embeddings, built once: beta is fixed during training (Assumption 1). */
    printf("2. building the HNSW index (M = 16, ef_construction = 100, 2 threads)... ");
    fflush(stdout);
    hc.ef_construction = 100;
    hc.n_threads = 2;
    t0 = now();
    check(polopt_mips_init_hnsw(&index, P, L, beta, 1, &hc), "index", index.err.message);
    printf("%.1f s\n", now() - t0);
    free(beta); /* the index keeps its own copy */
    check(polopt_mips_scratch_init(&scratch, &index, 64, NULL), "scratch", scratch.err.message);

    /* 3. The sparse rewards: each user's Y_u, the K_RELEVANT items its hidden taste rates highest (an exact search
       over the catalogue), and the set reward r(u, a) = 1[a in Y_u]. */
    printf("3. the %d relevant items of each user (exact search by hidden taste)... ", K_RELEVANT);
    fflush(stdout);
    t0 = now();
    check(polopt_synth_relevant(&cat, index.vectors, N_TRAIN, T, K_RELEVANT, &Y_train), "relevant", cat.err.message);
    check(polopt_synth_relevant(&cat, index.vectors, N_TEST, Tt, K_RELEVANT, &Y_test), "relevant", cat.err.message);
    printf("%.1f s\n", now() - t0);
    memset(&train, 0, sizeof train);
    train.n = N_TRAIN, train.X = X, train.ldx = L, train.reward = polopt_sets_reward, train.reward_user = &Y_train;
    test = train;
    test.n = N_TEST, test.X = Xt, test.reward_user = &Y_test, test.relevant = &Y_test;

    /* 4. Four methods from the same starting policy h(x) = x (theta = identity), the same Adam and the same data. */
    for (r = 0; r < N_METHODS; ++r) {
        runs[r].config = polopt_trainer_config_default(); /* batch 32, K = 256, S = 1000, Adam */
        runs[r].config.adam.lr = 0.02f;
        runs[r].config.progress = show_progress;
        runs[r].config.progress_user = &runs[r];
        runs[r].n = runs[r].epochs = 0;
    }
    runs[0].name = "eps = 0.8", runs[0].config.estimator.epsilon = 0.8f, runs[0].config.warm_start = 1;
    runs[1].name = "adaptive eps", runs[1].config.estimator.adaptive_epsilon = 1, runs[1].config.warm_start = 1;
    runs[2].name = "eps = 1", runs[2].config.estimator.epsilon = 1.0f;
    runs[3].name = "REINFORCE", runs[3].config.estimator.method = POLOPT_METHOD_REINFORCE;
    {
        polopt_policy start;
        polopt_policy_config pc = polopt_policy_config_default(L, L);
        polopt_eval ev;
        check(polopt_policy_init(&start, &pc), "policy", start.err.message);
        start_value = expected_reward(&start, &index, Xt, &Y_test, N_TEST, scores);
        check(polopt_evaluate(&start, &index, &scratch, &test, 10, 64, &ev), "evaluate", scratch.err.message);
        start_greedy = ev.reward, start_hit10 = ev.hit_rate;
        polopt_policy_free(&start);
    }
    printf("4. training each method for %.0f s (E_pi[r] on the %d held-out users is measured %d times, off the "
           "clock)\n", budget, N_TEST, N_EVAL);
    for (r = 0; r < N_METHODS; ++r) {
        polopt_policy policy;
        polopt_policy_config pc = polopt_policy_config_default(L, L);
        polopt_trainer trainer;
        polopt_train_stats stats;
        polopt_eval ev;
        double trained = 0.0, ess = 0.0;
        int next = 1;
        check(polopt_policy_init(&policy, &pc), "policy", policy.err.message);
        runs[r].time[runs[r].n] = 0.0, runs[r].value[runs[r].n++] = start_value;
        check(polopt_trainer_init(&trainer, &policy, &index, &runs[r].config), "trainer", trainer.err.message);
        while (trained < budget) {
            t0 = now();
            check(polopt_trainer_epoch(&trainer, &train, &stats), "epoch", trainer.err.message);
            trained += now() - t0;
            ess += stats.ess;
            ++runs[r].epochs;
            if (trained >= budget * next / N_EVAL || trained >= budget) { /* a point of the curve */
                runs[r].time[runs[r].n] = trained;
                runs[r].value[runs[r].n++] = expected_reward(&policy, &index, Xt, &Y_test, N_TEST, scores);
                while (next <= N_EVAL && trained >= budget * next / N_EVAL) ++next;
            }
        }
        runs[r].seconds_per_epoch = trained / runs[r].epochs;
        runs[r].ess = ess / runs[r].epochs;
        check(polopt_evaluate(&policy, &index, &scratch, &test, 10, 64, &ev), "evaluate", scratch.err.message);
        runs[r].greedy = ev.reward, runs[r].hit10 = ev.hit_rate;
        printf("%s  %-13s %3d epochs in %5.1f s: E_pi[r] %.4f, greedy reward %.3f, hit-rate@10 %.3f%30s\n",
               on_terminal ? "\r" : "", runs[r].name, runs[r].epochs, trained, runs[r].value[runs[r].n - 1],
               runs[r].greedy, runs[r].hit10, "");
        polopt_trainer_free(&trainer);
        polopt_policy_free(&policy);
    }

    /* 5. The table and the plot. */
    printf("\n%-13s %7s %10s %10s %14s %9s %9s %10s\n", "method", "epochs", "s/epoch", "speedup", "E_pi[r]", "greedy",
           "hit@10", "mean ESS");
    printf("%-13s %7s %10s %10s %14.5f %9.3f %9.3f %10s\n", "(start)", "-", "-", "-", start_value, start_greedy,
           start_hit10, "-");
    for (r = 0; r < N_METHODS; ++r)
        printf("%-13s %7d %10.3f %9.1fx %14.5f %9.3f %9.3f %10.1f\n", runs[r].name, runs[r].epochs,
               runs[r].seconds_per_epoch, runs[N_METHODS - 1].seconds_per_epoch / runs[r].seconds_per_epoch,
               runs[r].value[runs[r].n - 1], runs[r].greedy, runs[r].hit10, runs[r].ess);
    printf("E_pi[r]: the probability the policy gives to the %d relevant items (exact, %d held-out users); greedy: its "
           "MIPS argmax is relevant; hit@10: one of its 10 best is\n", K_RELEVANT, N_TEST);
    for (r = 0; r < N_METHODS; ++r)
        for (i = 0; i < runs[r].n; ++i) {
            t_max = runs[r].time[i] > t_max ? runs[r].time[i] : t_max;
            v_max = runs[r].value[i] > v_max ? runs[r].value[i] : v_max;
        }
    /* round the axes up to a whole number of ticks: 5 s of time, 0.1 of E_pi[r] (0.01 below 0.2) */
    t_max = 5.0 * ceil(t_max / 5.0);
    v_max = v_max > 0.2 ? 0.1 * ceil(v_max * 1.05 / 0.1) : (v_max > 0 ? 0.01 * ceil(v_max * 1.05 / 0.01) : 1.0);
    write_svg("build/train_curve.svg", P, runs, N_METHODS, t_max, v_max);
    printf("\nE_pi[r] against training time: build/train_curve.svg (open it in a browser); total time %.0f s\n",
           now() - t_start);
    polopt_sets_free(&Y_train);
    polopt_sets_free(&Y_test);
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&index);
    polopt_synth_free(&cat);
    free(scores), free(X), free(T), free(Xt), free(Tt);
    return 0;
}
