/* cuda_train.cu - REINFORCE on a GPU (polopt_cuda.h) against the paper's eps = 0.8 on the CPU, on make demo's data.

   The data of 02_train.c: a synthetic catalogue of P = 1,000,000 items (L = 32), 2048 training users and 512
   held-out ones, and a sparse reward: for each user only Y_u, the 5 items its hidden taste rates highest, pay 1.
   Two ways to train the same softmax policy pi(a | x) = softmax(x^T theta beta) from theta = identity, for the same
   wall-clock budget:
     GPU REINFORCE   per step of 32 users: H = X theta on the host; on the device, S = 1000 exact draws per user
                     from pi (polopt_cuda_sample: one fused pass over beta, no 32 x P score matrix) and the
                     covariance gradient of the draws' rewards (polopt_cuda_gradient); the rewards 1[a in Y_u] of the
                     draws on the host (32,000 look-ups); the step theta += Adam(X^T G / 32) on the host (theta is
                     L x L: nothing catalogue-sized).
     CPU eps = 0.8   polopt.h's trainer: SNIS with the eps-mixture around the HNSW top-256, warm-started (Sakhi,
                     Rohde & Gilotte 2023, Algorithm 1), O(S L + log P) a context.
   Both are scored by E_pi[r] on the held-out users, exactly: sum over Y_u of exp(f(a) - log Z), log Z over all P
   items (on the GPU by the sampler's normaliser for REINFORCE's policy, on the CPU by a gemm for the other).

   Run (with a CUDA device): make cuda-check && build/cuda/cuda_train [P] [seconds]   (defaults 1000000 and 20).
   Without a device it says so and exits with status 2. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L /* clock_gettime (g++ defines it already) */
#endif
#define POLOPT_IMPLEMENTATION
#define POLOPT_CUDA_IMPLEMENTATION
#include "polopt_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vector>

#define L 32
#define N_TRAIN 2048
#define N_TEST 512
#define K_RELEVANT 5
#define BATCH 32
#define S_DRAWS 1000

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, polopt_strerror(rc), message);
        exit(1);
    }
}

/* E_pi[r] on the held-out users with log Z from the GPU sampler (one draw each; only its normaliser is used). */
static double gpu_expected_reward(const polopt_policy *pol, polopt_cuda_sampler *smp, const float *beta,
                                  const float *Xt, const polopt_sets *Y)
{
    float H[BATCH * L];
    double log_z[BATCH], total = 0.0;
    size_t b, i, j;
    for (b = 0; b < N_TEST; b += BATCH) {
        check(polopt_policy_embed(pol, BATCH, Xt + b * L, L, H), "embed", pol->err.message);
        check(polopt_cuda_upload(smp->H, H, sizeof H, NULL, &smp->err), "upload", smp->err.message);
        check(polopt_cuda_sample(smp, BATCH, smp->H, NULL), "sample", smp->err.message);
        check(polopt_cuda_download(log_z, smp->log_z, sizeof log_z, NULL, &smp->err), "download", smp->err.message);
        for (i = 0; i < BATCH; ++i)
            for (j = Y->offsets[b + i]; j < Y->offsets[b + i + 1]; ++j) {
                float f = 0.0f;
                check(polopt_dot(L, H + i * L, beta + (size_t)Y->items[j] * L, &f), "dot", "");
                total += exp((double)f / pol->temperature - log_z[i]);
            }
    }
    return total / N_TEST;
}

/* The same on the CPU: log Z by a gemm of each block of users against the catalogue. */
static double cpu_expected_reward(const polopt_policy *pol, const float *beta, size_t P, const float *Xt,
                                  const polopt_sets *Y, float *scores)
{
    float H[BATCH * L];
    double total = 0.0, log_z;
    size_t b, i, j;
    for (b = 0; b < N_TEST; b += BATCH) {
        check(polopt_policy_embed(pol, BATCH, Xt + b * L, L, H), "embed", pol->err.message);
        check(polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, BATCH, P, L, 1.0f, H, L, beta, L, 0.0f, scores, P), "gemm", "");
        for (i = 0; i < BATCH; ++i) {
            check(polopt_logsumexp(P, scores + i * P, pol->temperature, &log_z), "logsumexp", "");
            for (j = Y->offsets[b + i]; j < Y->offsets[b + i + 1]; ++j)
                total += exp((double)scores[i * P + Y->items[j]] / pol->temperature - log_z);
        }
    }
    return total / N_TEST;
}

int main(int argc, char **argv)
{
    const size_t P = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    const double budget = argc > 2 ? atof(argv[2]) : 20.0;
    polopt_error err;
    int devices = 0;
    if (polopt_cuda_device_count(&devices, &err) != POLOPT_OK) {
        fprintf(stderr, "cuda_train needs a CUDA device: %s\n", err.message);
        return 2;
    }
    if (P < 1000 || !(budget > 0.0)) {
        fprintf(stderr, "usage: %s [P >= 1000] [seconds > 0]\n", argv[0]);
        return 1;
    }
    polopt_synth_config sc = polopt_synth_config_default();
    polopt_synth cat;
    std::vector<float> beta(P * L), X(N_TRAIN * L), T(N_TRAIN * L), Xt(N_TEST * L), Tt(N_TEST * L);
    std::vector<float> scores(BATCH * P);
    polopt_sets Y_train, Y_test;
    sc.n_items = P, sc.dim = L;
    printf("1. the catalogue of make demo: %lu items, L = %d, %d + %d users, |Y_u| = %d\n", (unsigned long)P, L,
           N_TRAIN, N_TEST, K_RELEVANT);
    check(polopt_synth_init(&cat, &sc), "catalogue", cat.err.message);
    check(polopt_synth_items(&cat, 0, P, beta.data()), "items", cat.err.message);
    for (size_t u = 0; u < N_TRAIN; ++u) check(polopt_synth_user(&cat, u, &X[u * L], &T[u * L]), "user", "");
    for (size_t u = 0; u < N_TEST; ++u) check(polopt_synth_user(&cat, 90000000 + u, &Xt[u * L], &Tt[u * L]), "user", "");
    check(polopt_synth_relevant(&cat, beta.data(), N_TRAIN, T.data(), K_RELEVANT, &Y_train), "relevant", cat.err.message);
    check(polopt_synth_relevant(&cat, beta.data(), N_TEST, Tt.data(), K_RELEVANT, &Y_test), "relevant", cat.err.message);

    /* 2. GPU REINFORCE */
    polopt_cuda_catalogue gcat;
    polopt_cuda_sampler smp, eval;
    check(polopt_cuda_catalogue_init(&gcat, P, L, beta.data(), NULL, NULL), "catalogue upload", gcat.err.message);
    check(polopt_cuda_sampler_init(&smp, &gcat, BATCH, S_DRAWS, 1.0f, 1, NULL), "sampler", smp.err.message);
    check(polopt_cuda_sampler_init(&eval, &gcat, BATCH, 1, 1.0f, 2, NULL), "sampler", eval.err.message);
    float *d_r = NULL, *d_g = NULL;
    if (cudaMalloc(&d_r, BATCH * S_DRAWS * sizeof(float)) != cudaSuccess ||
        cudaMalloc(&d_g, BATCH * L * sizeof(float)) != cudaSuccess)
        check(POLOPT_ERR_NO_MEMORY, "cudaMalloc", "rewards and gradients");
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    pc.init = POLOPT_INIT_IDENTITY;
    polopt_policy gpol;
    check(polopt_policy_init(&gpol, &pc), "policy", gpol.err.message);
    polopt_adam_config ac = polopt_adam_config_default();
    ac.lr = 0.02f, ac.maximize = 1; /* as 02_train */
    polopt_adam adam;
    check(polopt_adam_init(&adam, L * L, &ac), "adam", adam.err.message);
    const double start_value = gpu_expected_reward(&gpol, &eval, beta.data(), Xt.data(), &Y_test);
    std::vector<uint32_t> order(N_TRAIN), ids(BATCH * S_DRAWS);
    std::vector<float> r(BATCH * S_DRAWS), H(BATCH * L), G(BATCH * L), grad(L * L);
    polopt_rng rng;
    polopt_rng_seed(&rng, 3);
    for (size_t u = 0; u < N_TRAIN; ++u) order[u] = (uint32_t)u;
    double trained = 0.0;
    size_t steps = 0, epochs = 0;
    printf("2. GPU REINFORCE for %.0f s (S = %d exact draws a user, batches of %d)\n", budget, S_DRAWS, BATCH);
    while (trained < budget) {
        polopt_rng_shuffle(&rng, N_TRAIN, order.data());
        for (size_t b = 0; b + BATCH <= N_TRAIN && trained < budget; b += BATCH, ++steps) {
            const double t0 = now();
            std::vector<float> Xb(BATCH * L);
            for (size_t i = 0; i < BATCH; ++i) memcpy(&Xb[i * L], &X[(size_t)order[b + i] * L], L * sizeof(float));
            check(polopt_policy_embed(&gpol, BATCH, Xb.data(), L, H.data()), "embed", gpol.err.message);
            check(polopt_cuda_upload(smp.H, H.data(), H.size() * sizeof(float), NULL, &smp.err), "upload", smp.err.message);
            check(polopt_cuda_sample(&smp, BATCH, smp.H, NULL), "sample", smp.err.message);
            check(polopt_cuda_download(ids.data(), smp.ids, ids.size() * sizeof(uint32_t), NULL, &smp.err), "download",
                  smp.err.message);
            for (size_t i = 0; i < BATCH; ++i)
                check(polopt_sets_reward((void *)&Y_train, order[b + i], S_DRAWS, &ids[i * S_DRAWS], &r[i * S_DRAWS]),
                      "reward", "");
            check(polopt_cuda_upload(d_r, r.data(), r.size() * sizeof(float), NULL, &smp.err), "upload", smp.err.message);
            check(polopt_cuda_gradient(&gcat, BATCH, S_DRAWS, smp.ids, NULL, d_r, 1.0f, d_g, NULL, NULL, &err),
                  "gradient", err.message);
            check(polopt_cuda_download(G.data(), d_g, G.size() * sizeof(float), NULL, &err), "download", err.message);
            /* theta's gradient X_B^T G / B, then one Adam step (ascent) */
            check(polopt_gemm(POLOPT_TRANS, POLOPT_NO_TRANS, L, L, BATCH, 1.0f / BATCH, Xb.data(), L, G.data(), L,
                              0.0f, grad.data(), L), "gemm", "");
            check(polopt_adam_step(&adam, gpol.theta, grad.data()), "adam", adam.err.message);
            trained += now() - t0;
        }
        ++epochs;
    }
    const double gpu_value = gpu_expected_reward(&gpol, &eval, beta.data(), Xt.data(), &Y_test);
    const double gpu_step_ms = 1000.0 * trained / (double)steps;
    printf("   %lu steps (%lu epochs), %.2f ms a step: E_pi[r] %.4f (start %.4f)\n", (unsigned long)steps,
           (unsigned long)epochs, gpu_step_ms, gpu_value, start_value);

    /* 3. CPU eps = 0.8, the paper's method, for the same budget */
    printf("3. CPU eps = 0.8 (HNSW top-256, warm-started) for %.0f s; building the index... ", budget);
    fflush(stdout);
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_mips index;
    hc.ef_construction = 100, hc.n_threads = 2;
    check(polopt_mips_init_hnsw(&index, P, L, beta.data(), 1, &hc), "index", index.err.message);
    printf("done\n");
    polopt_policy cpol;
    check(polopt_policy_init(&cpol, &pc), "policy", cpol.err.message);
    polopt_trainer_config tc = polopt_trainer_config_default();
    tc.adam.lr = 0.02f, tc.estimator.epsilon = 0.8f, tc.warm_start = 1;
    polopt_trainer trainer;
    check(polopt_trainer_init(&trainer, &cpol, &index, &tc), "trainer", trainer.err.message);
    polopt_dataset train;
    memset(&train, 0, sizeof train);
    train.n = N_TRAIN, train.X = X.data(), train.ldx = L, train.reward = polopt_sets_reward, train.reward_user = &Y_train;
    double cpu_trained = 0.0;
    size_t cpu_epochs = 0;
    while (cpu_trained < budget) {
        polopt_train_stats st;
        const double t0 = now();
        check(polopt_trainer_epoch(&trainer, &train, &st), "epoch", trainer.err.message);
        cpu_trained += now() - t0;
        ++cpu_epochs;
    }
    const double cpu_value = cpu_expected_reward(&cpol, beta.data(), P, Xt.data(), &Y_test, scores.data());
    const double cpu_step_ms = 1000.0 * cpu_trained / (double)(cpu_epochs * (N_TRAIN / BATCH));
    printf("   %lu epochs, %.2f ms a step: E_pi[r] %.4f\n", (unsigned long)cpu_epochs, cpu_step_ms, cpu_value);

    printf("\n%-16s %10s %10s %10s\n", "method", "ms/step", "steps", "E_pi[r]");
    printf("%-16s %10s %10s %10.4f\n", "(start)", "-", "-", start_value);
    printf("%-16s %10.2f %10lu %10.4f\n", "GPU REINFORCE", gpu_step_ms, (unsigned long)steps, gpu_value);
    printf("%-16s %10.2f %10lu %10.4f\n", "CPU eps = 0.8", cpu_step_ms,
           (unsigned long)(cpu_epochs * (N_TRAIN / BATCH)), cpu_value);
    printf("E_pi[r]: the probability pi gives the %d relevant items of a held-out user, exactly (%d users)\n",
           K_RELEVANT, N_TEST);

    polopt_trainer_free(&trainer);
    polopt_policy_free(&cpol);
    polopt_mips_free(&index);
    polopt_adam_free(&adam);
    polopt_policy_free(&gpol);
    cudaFree(d_r), cudaFree(d_g);
    polopt_cuda_sampler_free(&eval);
    polopt_cuda_sampler_free(&smp);
    polopt_cuda_catalogue_free(&gcat);
    polopt_sets_free(&Y_train);
    polopt_sets_free(&Y_test);
    polopt_synth_free(&cat);
    return 0;
}
