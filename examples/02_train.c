/* 02_train.c - fast offline policy learning on a million items: the paper's method against REINFORCE.

   What it shows (seed 000, Algorithm 1; SPEC §3): a softmax policy pi(a | x) = softmax(h_theta(x)^T beta) over
   P = 1,000,000 items, trained to maximise the expected reward of users, three ways:
     REINFORCE     scores all P items for every context (a gemm over the whole catalogue) and draws from pi exactly;
     eps = 0.8     the paper: S = 1000 draws from a mixture - with probability eps a uniform item, otherwise one
                   of the top-K = 256 items found by MIPS in an HNSW index, drawn from their softmax - corrected by
                   self-normalised importance sampling.  Each context's search starts from its previous top-K;
     eps = 1       the uniform proposal alone: no MIPS at all.
   The rewards are the synthetic catalogue's ground truth, so every policy can be scored exactly on held-out users:
   the value of pi (the objective: its expected reward) and the reward of its greedy action (what serving with MIPS
   would show).

   What to look at: the seconds per epoch (REINFORCE pays O(P) per context, the others about O(log P)); the value
   of pi after the same number of epochs (close: the estimator is biased but good); and build/train_curve.svg, the
   value against training time, where the fast methods are far ahead at any time budget.

   Run: make demo   (about two minutes on two cores; P can be given: build/02_train 200000) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h> /* isatty */

#define L 32            /* embedding dimension */
#define N_TRAIN 2048    /* training users: 64 steps of 32 per epoch */
#define N_TEST 500      /* held-out users for the greedy reward */
#define N_VALUE 64      /* held-out users for the exact value of pi (O(P L) each) */
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

/* The training run of one method: its configuration and what it measured after every epoch. */
typedef struct run {
    const char *name;
    polopt_train_config config;
    int epochs;
    int n;                                     /* points recorded */
    double time[MAX_POINTS], value[MAX_POINTS]; /* training seconds so far, value of pi on held-out users */
    double greedy, seconds_per_epoch;
} run;

/* Progress: the library never prints, it calls this after every step.  On a terminal one line is rewritten as
   training goes; in a log, one line per epoch. */
static int on_terminal;
static void show_progress(void *user, const polopt_progress *p)
{
    const run *r = (const run *)user;
    const int last = p->step == p->steps_per_epoch;
    if ((on_terminal && p->step % 8 == 0) || last) {
        printf("%s  %-10s epoch %d/%d  step %3lu/%lu  estimated reward %.4f  ESS %6.1f%s", on_terminal ? "\r" : "",
               r->name, (int)p->epoch + 1, r->epochs, (unsigned long)p->step, (unsigned long)p->steps_per_epoch,
               p->reward, p->ess, on_terminal ? "  " : "\n");
        fflush(stdout);
    }
}

/* An SVG line chart of value against time, one line per run, readable in any browser. */
static void write_svg(const char *path, size_t P, const run *runs, int n_runs, double t_max, double v_min,
                      double v_max)
{
    static const char *colors[] = {"#d62728", "#1f77b4", "#2ca02c"};
    const double W = 720, H = 440, x0 = 70, y0 = 30, w = 600, h = 340;
    FILE *f = fopen(path, "w");
    int r, i, t;
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
               "font-size='13'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    fprintf(f, "<text x='%.0f' y='18' text-anchor='middle' font-size='15'>Value of the policy on held-out users "
               "against training time (P = %lu)</text>\n", x0 + w / 2, (unsigned long)P);
    for (t = 0; t <= 5; ++t) { /* grid and ticks */
        const double gx = x0 + w * t / 5, gy = y0 + h - h * t / 5;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", gx, y0, gx, y0 + h);
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, gy, x0 + w, gy);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.0f</text>\n", gx, y0 + h + 18, t_max * t / 5);
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end'>%.2f</text>\n", x0 - 6, gy + 4,
                v_min + (v_max - v_min) * t / 5);
    }
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n", x0, y0, w, h);
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>training time (s)</text>\n", x0 + w / 2, y0 + h + 38);
    fprintf(f, "<text transform='translate(18 %.0f) rotate(-90)' text-anchor='middle'>value of pi (expected "
               "reward)</text>\n", y0 + h / 2);
    for (r = 0; r < n_runs; ++r) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[r % 3]);
        for (i = 0; i < runs[r].n; ++i)
            fprintf(f, "%.1f,%.1f ", x0 + w * runs[r].time[i] / t_max,
                    y0 + h - h * (runs[r].value[i] - v_min) / (v_max - v_min));
        fprintf(f, "'/>\n");
        for (i = 0; i < runs[r].n; ++i)
            fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", x0 + w * runs[r].time[i] / t_max,
                    y0 + h - h * (runs[r].value[i] - v_min) / (v_max - v_min), colors[r % 3]);
        fprintf(f, "<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", x0 + w - 150, y0 + h - 20 - 18 * (n_runs - 1 - r),
                colors[r % 3], runs[r].name);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    const size_t P = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    polopt_hnsw_config hc = polopt_hnsw_config_default();
    polopt_mips index;
    polopt_mips_scratch scratch;
    float *beta, *X = (float *)malloc(N_TRAIN * L * sizeof(float)), *T = (float *)malloc(N_TRAIN * L * sizeof(float));
    float *Xt = (float *)malloc(N_TEST * L * sizeof(float)), *Tt = (float *)malloc(N_TEST * L * sizeof(float));
    polopt_synth_task task, task_test;
    polopt_dataset train, test, test_value;
    run runs[3];
    double t0, v_min = 1.0, v_max = 0.0, t_max = 0.0, start_value = 0.0, start_greedy = 0.0;
    size_t u;
    int r, e;

    on_terminal = isatty(STDOUT_FILENO);
    /* 1. The catalogue (the synthetic generator of polopt.h: clustered, unequal-norm embeddings) and users. */
    printf("1. generating a catalogue of %lu items (L = %d) and %d + %d users\n", (unsigned long)P, L, N_TRAIN, N_TEST);
    sc.n_items = P, sc.dim = L;
    check(polopt_synth_init(&cat, &sc), "catalogue", cat.err.message);
    beta = (float *)malloc(P * L * sizeof *beta);
    if (!beta || !X || !T || !Xt || !Tt) check(POLOPT_ERR_NO_MEMORY, "allocation", "");
    check(polopt_synth_items(&cat, 0, P, beta), "items", "");
    for (u = 0; u < N_TRAIN; ++u) check(polopt_synth_user(&cat, u, X + u * L, T + u * L), "user", "");
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

    /* 3. Rewards: the ground truth r(a, u) of each user, as the reward estimator r_hat(i, a). */
    task.synth = &cat, task.items = index.vectors, task.tastes = T, task.n = N_TRAIN;
    task_test = task;
    task_test.tastes = Tt, task_test.n = N_TEST;
    memset(&train, 0, sizeof train);
    train.n = N_TRAIN, train.X = X, train.ldx = L, train.reward = polopt_synth_reward, train.reward_user = &task;
    test = train;
    test.n = N_TEST, test.X = Xt, test.reward_user = &task_test;
    test_value = test;
    test_value.n = N_VALUE;

    /* 4. Three methods, each from the same starting policy h(x) = x (theta = identity). */
    for (r = 0; r < 3; ++r) {
        runs[r].config = polopt_train_config_default(); /* batch 32, K = 256, S = 1000, Adam */
        runs[r].config.adam.lr = 0.02f;
        runs[r].config.progress = show_progress;
        runs[r].config.progress_user = &runs[r];
        runs[r].n = 0;
    }
    runs[0].name = "eps = 0.8", runs[0].epochs = 10, runs[0].config.epsilon = 0.8f, runs[0].config.warm_start = 1;
    runs[1].name = "eps = 1", runs[1].epochs = 10, runs[1].config.epsilon = 1.0f;
    runs[2].name = "REINFORCE", runs[2].epochs = 4, runs[2].config.method = POLOPT_METHOD_REINFORCE;
    printf("3. training (the value of pi on %d held-out users is measured after each epoch, outside the clock)\n",
           N_VALUE);
    for (r = 0; r < 3; ++r) {
        polopt_policy policy;
        polopt_policy_config pc = polopt_policy_config_default(L, L);
        polopt_trainer trainer;
        polopt_train_stats stats;
        polopt_eval ev;
        double trained = 0.0, value;
        check(polopt_policy_init(&policy, &pc), "policy", policy.err.message);
        check(polopt_policy_value(&policy, &index, &test_value, &value), "value", "");
        runs[r].time[runs[r].n] = 0.0, runs[r].value[runs[r].n++] = value;
        if (r == 0) start_value = value;
        check(polopt_trainer_init(&trainer, &policy, &index, &runs[r].config), "trainer", trainer.err.message);
        for (e = 0; e < runs[r].epochs; ++e) {
            t0 = now();
            check(polopt_trainer_epoch(&trainer, &train, &stats), "epoch", trainer.err.message);
            trained += now() - t0;
            check(polopt_policy_value(&policy, &index, &test_value, &value), "value", "");
            runs[r].time[runs[r].n] = trained, runs[r].value[runs[r].n++] = value;
        }
        runs[r].seconds_per_epoch = trained / runs[r].epochs;
        check(polopt_evaluate(&policy, &index, &scratch, &test, 1, 64, &ev), "evaluate", scratch.err.message);
        runs[r].greedy = ev.reward;
        printf("%s  %-10s %d epochs in %6.1f s: value of pi %.4f, greedy reward %.4f%30s\n", on_terminal ? "\r" : "",
               runs[r].name, runs[r].epochs, trained, value, ev.reward, "");
        if (r == 0) { /* the starting point's greedy reward, for the table */
            polopt_policy start;
            polopt_policy_config sc0 = polopt_policy_config_default(L, L);
            check(polopt_policy_init(&start, &sc0), "policy", start.err.message);
            check(polopt_evaluate(&start, &index, &scratch, &test, 1, 64, &ev), "evaluate", scratch.err.message);
            start_greedy = ev.reward;
            polopt_policy_free(&start);
        }
        polopt_trainer_free(&trainer);
        polopt_policy_free(&policy);
    }

    /* 5. The table and the plot. */
    printf("\n%-12s %7s %14s %15s %12s %9s\n", "method", "epochs", "value of pi", "greedy reward", "s / epoch", "speedup");
    printf("%-12s %7s %14.4f %15.4f %12s %9s\n", "(start)", "-", start_value, start_greedy, "-", "-");
    for (r = 0; r < 3; ++r)
        printf("%-12s %7d %14.4f %15.4f %12.3f %8.1fx\n", runs[r].name, runs[r].epochs, runs[r].value[runs[r].n - 1],
               runs[r].greedy, runs[r].seconds_per_epoch, runs[2].seconds_per_epoch / runs[r].seconds_per_epoch);
    for (r = 0; r < 3; ++r)
        for (e = 0; e < runs[r].n; ++e) {
            t_max = runs[r].time[e] > t_max ? runs[r].time[e] : t_max;
            v_min = runs[r].value[e] < v_min ? runs[r].value[e] : v_min;
            v_max = runs[r].value[e] > v_max ? runs[r].value[e] : v_max;
        }
    write_svg("build/train_curve.svg", P, runs, 3, t_max, v_min - 0.02, v_max + 0.02);
    printf("\nvalue of pi against training time: build/train_curve.svg (open it in a browser)\n");
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&index);
    polopt_synth_free(&cat);
    free(X), free(T), free(Xt), free(Tt);
    return 0;
}
