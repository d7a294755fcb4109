/* 01_catalogue.c - a million-item catalogue, a softmax policy over it, and the policy's exact value.

   What it shows: the synthetic catalogue that every test and benchmark of polopt uses (item embeddings beta,
   users with a context x and a hidden taste t, a ground-truth reward r(a, u) for every pair), and the exact,
   O(P L)-per-user computations the fast methods of later chapters avoid: scoring every item with one gemm,
   the softmax policy pi(a|x) = softmax(x^T beta / T), its value sum_a pi(a|x) r(a, u), greedy top-k, and many
   draws from pi with an alias table.

   What to look at in the output: (1) the greedy policy is far better than a uniform one, and a colder softmax
   moves towards it; (2) none reaches the oracle: the context x is a noisy view of the taste t, in coordinates of
   its own (x = G m, see polopt_synth in polopt.h).  Part of that gap is what a learned policy h_theta(x) closes;
   (3) the alias-table draws match pi; (4) the time per user of the exact computations, which grows linearly
   with P.

   Run: make demo   (or: cc -O3 -march=native -I. examples/01_catalogue.c -lm && ./a.out [P]) */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define L 32     /* embedding dimension */
#define USERS 64 /* users we evaluate, in two batches of 32 */
#define BATCH 32

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%lu bytes)\n", (unsigned long)n);
        exit(1);
    }
    return p;
}

#define CHECK(call)                                                                      \
    do {                                                                                 \
        polopt_result rc_ = (call);                                                      \
        if (rc_ != POLOPT_OK) {                                                          \
            fprintf(stderr, "%s failed: %s\n", #call, polopt_strerror(rc_));             \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

int main(int argc, char **argv)
{
    const size_t P = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    static const float temps[2] = {1.0f, 0.2f};
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    float *beta, *scores, *reward, *pi, x[BATCH * L], taste[L];
    double value[5] = {0, 0, 0, 0, 0}, t0, t_gen, t_score = 0, t_exact = 0;
    size_t u0, b, a, block = 65536;
    int t;

    /* 1. The catalogue, generated in blocks: every item is a pure function of (seed, id). */
    sc.n_items = P;
    sc.dim = L;
    if (polopt_synth_init(&cat, &sc) != POLOPT_OK) {
        fprintf(stderr, "%s\n", cat.err.message);
        return 1;
    }
    beta = (float *)xmalloc(P * L * sizeof *beta);
    scores = (float *)xmalloc(BATCH * P * sizeof *scores);
    reward = (float *)xmalloc(P * sizeof *reward);
    pi = (float *)xmalloc(P * sizeof *pi);
    /* Touch the big buffers once: the first write to fresh memory costs a page fault per 4 KiB, which on some
       machines is slower than the arithmetic we want to time.  Real code allocates once and reuses. */
    memset(scores, 0, BATCH * P * sizeof *scores);
    t0 = now();
    for (a = 0; a < P; a += block) CHECK(polopt_synth_items(&cat, a, a + block > P ? P - a : block, beta + a * L));
    t_gen = now() - t0;
    printf("catalogue: %lu items, L = %d, %lu clusters, generated in %.2f s\n", (unsigned long)P, L,
           (unsigned long)cat.n_clusters, t_gen);

    /* 2. For each batch of users: all P scores at once, f(a, x_u) = x_u^T beta_a, with one gemm. */
    for (u0 = 0; u0 < USERS; u0 += BATCH) {
        for (b = 0; b < BATCH; ++b) CHECK(polopt_synth_user(&cat, u0 + b, x + b * L, NULL));
        t0 = now();
        CHECK(polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, BATCH, P, L, 1.0f, x, L, beta, L, 0.0f, scores, P));
        t_score += now() - t0;
        for (b = 0; b < BATCH; ++b) {
            const float *f = scores + b * P;
            double uniform = 0, best = 0;
            uint32_t top;
            CHECK(polopt_synth_user(&cat, u0 + b, x + b * L, taste));
            t0 = now();
            CHECK(polopt_synth_rewards(&cat, taste, P, beta, reward)); /* r(a, u) for every item */
            /* 3. The exact value of each policy for this user. */
            for (a = 0; a < P; ++a) {
                uniform += reward[a];
                best = reward[a] > best ? reward[a] : best;
            }
            value[0] += uniform / (double)P / USERS;
            for (t = 0; t < 2; ++t) {
                double v = 0;
                CHECK(polopt_softmax(P, f, temps[t], pi));
                for (a = 0; a < P; ++a) v += (double)pi[a] * reward[a];
                value[1 + t] += v / USERS;
            }
            CHECK(polopt_argmax(P, f, &top)); /* greedy: what serving with MIPS returns */
            value[3] += reward[top] / (double)USERS;
            value[4] += best / USERS; /* oracle: knows the hidden taste */
            t_exact += now() - t0;
        }
    }
    printf("\n%-34s %s\n", "policy (evaluated exactly)", "true value (mean expected reward)");
    printf("%-34s %.4f\n", "uniform over all items", value[0]);
    printf("%-34s %.4f\n", "softmax of x^T beta, T = 1", value[1]);
    printf("%-34s %.4f\n", "softmax of x^T beta, T = 0.2", value[2]);
    printf("%-34s %.4f\n", "greedy argmax of x^T beta", value[3]);
    printf("%-34s %.4f\n", "oracle (best item for the taste)", value[4]);
    printf("\nexact work per user: scoring %.2f ms (gemm, %.1f GFLOP/s), rewards + policies %.2f ms\n",
           1e3 * t_score / USERS, 2.0 * BATCH * (double)P * L * (USERS / BATCH) / t_score * 1e-9,
           1e3 * t_exact / USERS);

    /* 4. Sampling from pi many times: an alias table costs O(P) once, then O(1) per draw. */
    {
        enum { DRAWS = 200000, SHOW = 5 };
        polopt_alias table;
        polopt_rng rng;
        uint32_t best[SHOW];
        size_t hits[SHOW] = {0, 0, 0, 0, 0}, i, k;
        CHECK(polopt_softmax(P, scores + (BATCH - 1) * P, temps[0], pi)); /* the last user, T = 1 */
        CHECK(polopt_topk(P, pi, SHOW, best, NULL));
        if (polopt_alias_init(&table, P, pi, NULL) != POLOPT_OK) {
            fprintf(stderr, "%s\n", table.err.message);
            return 1;
        }
        polopt_rng_seed(&rng, 42);
        for (i = 0; i < DRAWS; ++i) {
            const uint32_t d = polopt_alias_draw(&table, &rng);
            for (k = 0; k < SHOW; ++k) hits[k] += d == best[k];
        }
        printf("\n%d draws from pi (one user, T = 1) with an alias table:\n%8s %10s %10s\n", DRAWS, "item", "pi(a|x)",
               "frequency");
        for (k = 0; k < SHOW; ++k)
            printf("%8u %10.5f %10.5f\n", (unsigned)best[k], (double)pi[best[k]], (double)hits[k] / DRAWS);
        polopt_alias_free(&table);
    }
    polopt_synth_free(&cat);
    free(beta);
    free(scores);
    free(reward);
    free(pi);
    return 0;
}
