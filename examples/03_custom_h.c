/* 03_custom_h.c - your own user model: a small neural network h(x), trained with polopt's gradient.

   What it shows: polopt does not need to own the user model.  For a batch of contexts with user embeddings
   H = h(X) (computed by your code), the estimator (polopt_estimator) draws items for each context from the MIPS
   eps-mixture proposal; you score the draws with your reward, and polopt_estimator_gradient returns g, the gradient
   of the context's expected reward with respect to its embedding (the covariance form,
   g = sum_s w_s (r_s - r_bar) beta_{a_s} / T, SNIS weights w).  You backpropagate the g rows through your model and
   take an optimiser step - here the model is h(x) = W2 tanh(W1 x + b1), its parameters one flat array updated with
   polopt_adam.  No policy object and no trainer are involved.

   What to look at: the greedy reward of held-out users rises epoch after epoch, as with the built-in linear h.

   Run: build/03_custom_h   (after make examples) */
#define _POSIX_C_SOURCE 199309L
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>

#define P 100000
#define L 32        /* item embeddings, and the output of h */
#define D 32        /* contexts */
#define HID 64      /* hidden units */
#define N_TRAIN 2048
#define N_TEST 500
#define BATCH 32

/* The model's parameters in one array: W1 (HID x D), b1 (HID), W2 (L x HID). */
#define N_PARAMS (HID * D + HID + L * HID)

typedef struct mlp {
    float *w1, *b1, *w2;
} mlp;

static mlp view(float *params)
{
    mlp m;
    m.w1 = params, m.b1 = params + HID * D, m.w2 = params + HID * D + HID;
    return m;
}

/* Forward pass for one context: hidden activations a (HID) and the embedding h (L). */
static void forward(mlp m, const float *x, float *a, float *h)
{
    int i, j;
    for (i = 0; i < HID; ++i) {
        float z = m.b1[i];
        for (j = 0; j < D; ++j) z += m.w1[i * D + j] * x[j];
        a[i] = tanhf(z);
    }
    for (i = 0; i < L; ++i) {
        float z = 0.0f;
        for (j = 0; j < HID; ++j) z += m.w2[i * HID + j] * a[j];
        h[i] = z;
    }
}

/* Backward pass: add to grad the gradient of (g . h(x)), i.e. the chain rule with dR/dh = g. */
static void backward(mlp m, mlp grad, const float *x, const float *a, const float *g)
{
    float da[HID];
    int i, j;
    for (j = 0; j < HID; ++j) da[j] = 0.0f;
    for (i = 0; i < L; ++i)
        for (j = 0; j < HID; ++j) {
            grad.w2[i * HID + j] += g[i] * a[j];
            da[j] += g[i] * m.w2[i * HID + j];
        }
    for (i = 0; i < HID; ++i) {
        const float dz = da[i] * (1.0f - a[i] * a[i]); /* tanh' */
        grad.b1[i] += dz;
        for (j = 0; j < D; ++j) grad.w1[i * D + j] += dz * x[j];
    }
}

static void check(polopt_result rc, const char *what)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "%s failed: %s\n", what, polopt_strerror(rc));
        exit(1);
    }
}

/* Mean ground-truth reward of the greedy action (MIPS argmax of h(x)) for the held-out users. */
static double greedy_reward(mlp m, const polopt_mips *index, polopt_mips_scratch *sc, const float *Xt,
                            polopt_synth_task *task_test)
{
    float a[HID], h[L], r;
    uint32_t best;
    double total = 0.0;
    int u;
    for (u = 0; u < N_TEST; ++u) {
        forward(m, Xt + u * D, a, h);
        check(polopt_mips_search(index, sc, h, 1, 64, &best, NULL), "search");
        check(polopt_synth_reward(task_test, (uint32_t)u, 1, &best, &r), "reward");
        total += r;
    }
    return total / N_TEST;
}

int main(void)
{
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    polopt_mips index;
    polopt_mips_scratch scratch;
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default(); /* SNIS, eps = 0.8, K = 256, S = 1000 */
    polopt_draws draws;
    polopt_adam adam;
    polopt_adam_config ac = polopt_adam_config_default();
    polopt_synth_task task, task_test;
    polopt_rng rng;
    static float X[N_TRAIN * D], T[N_TRAIN * L], Xt[N_TEST * D], Tt[N_TEST * L];
    static float params[N_PARAMS], grad[N_PARAMS], A[BATCH * HID], H[BATCH * L], G[BATCH * L], rewards[1000];
    static uint32_t topk_cache[N_TRAIN * 256]; /* each user's last top-K: the next search starts there */
    uint32_t *warm[BATCH];
    float *beta = (float *)malloc((size_t)P * L * sizeof *beta);
    uint32_t order[N_TRAIN];
    mlp m = view(params), gm = view(grad);
    int epoch, i, b, k;

    sc.n_items = P, sc.dim = L; /* contexts in their own coordinates: D = L here, but h need not be linear */
    check(polopt_synth_init(&cat, &sc), "catalogue");
    check(polopt_synth_items(&cat, 0, P, beta), "items");
    for (i = 0; i < N_TRAIN; ++i) check(polopt_synth_user(&cat, (uint64_t)i, X + i * D, T + i * L), "user");
    for (i = 0; i < N_TEST; ++i) check(polopt_synth_user(&cat, 70000000u + (uint64_t)i, Xt + i * D, Tt + i * L), "user");
    hc.n_threads = 2;
    check(polopt_mips_init_hnsw(&index, P, L, beta, 1, &hc), "index");
    free(beta);
    check(polopt_mips_scratch_init(&scratch, &index, 64, NULL), "scratch");
    task.synth = &cat, task.items = index.vectors, task.tastes = T, task.n = N_TRAIN;
    task_test = task, task_test.tastes = Tt, task_test.n = N_TEST;
    for (i = 0; i < N_TRAIN; ++i) topk_cache[i * 256] = POLOPT_NO_ITEM; /* no search yet */

    /* the model: small random weights, W2 scaled so that h starts near the linear start h(x) ~ x */
    polopt_rng_seed(&rng, 7);
    polopt_rng_normals(&rng, N_PARAMS, params);
    for (i = 0; i < HID * D; ++i) m.w1[i] *= 1.0f / sqrtf(D);
    for (i = 0; i < HID; ++i) m.b1[i] = 0.0f;
    for (i = 0; i < L * HID; ++i) m.w2[i] *= 1.0f / sqrtf(HID);
    ac.lr = 0.005f;
    ac.maximize = 1; /* we ascend the expected reward */
    check(polopt_adam_init(&adam, N_PARAMS, &ac), "adam");
    ec.batch = BATCH;
    check(polopt_estimator_init(&est, &index, &ec), "estimator");

    printf("a %d-%d-%d network as h(x), trained with the eps = 0.8 MIPS proposal on %d items\n", D, HID, L, P);
    printf("epoch %2d: greedy reward of held-out users %.4f\n", 0, greedy_reward(m, &index, &scratch, Xt, &task_test));
    for (i = 0; i < N_TRAIN; ++i) order[i] = (uint32_t)i;
    for (epoch = 1; epoch <= 8; ++epoch) {
        polopt_rng_shuffle(&rng, N_TRAIN, order);
        for (b = 0; b < N_TRAIN; b += BATCH) {
            const uint32_t *ctx = order + b;
            for (k = 0; k < BATCH; ++k) forward(m, X + ctx[k] * D, A + k * HID, H + k * L);  /* your forward pass */
            for (k = 0; k < BATCH; ++k) warm[k] = topk_cache + (size_t)ctx[k] * 256;
            check(polopt_estimator_set(&est, BATCH, H, warm), "estimator");                    /* draw */
            for (k = 0; k < BATCH; ++k) {
                check(polopt_estimator_draws(&est, (size_t)k, &draws), "draws");
                check(polopt_synth_reward(&task, ctx[k], draws.S, draws.ids, rewards), "reward"); /* your reward */
                check(polopt_estimator_gradient(&est, (size_t)k, rewards, G + k * L, NULL), "gradient");
            }
            memset(grad, 0, sizeof grad);
            for (k = 0; k < BATCH; ++k) backward(m, gm, X + ctx[k] * D, A + k * HID, G + k * L); /* your backward */
            for (i = 0; i < N_PARAMS; ++i) grad[i] /= BATCH;
            check(polopt_adam_step(&adam, params, grad), "adam step");
        }
        printf("epoch %2d: greedy reward of held-out users %.4f\n", epoch,
               greedy_reward(m, &index, &scratch, Xt, &task_test));
    }
    polopt_estimator_free(&est);
    polopt_adam_free(&adam);
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&index);
    polopt_synth_free(&cat);
    return 0;
}
