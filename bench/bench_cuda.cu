/* bench_cuda.cu - polopt_cuda.h on the GPU: how close the fused scoring+sampling kernel comes to the device's memory
   bandwidth, and the training step of GPU REINFORCE against the CPU's REINFORCE and eps = 0.8 (polopt.h), in one
   process.

     bandwidth   a copy kernel over 1 GiB (read + write) gives the device's attainable bandwidth; polopt_cuda_sample
                 at P = 10^7, L = 64, a batch of 32, S = 1000 reads the P x L floats of beta once (plus 32 rows per
                 draw); its GB/s = the catalogue's bytes / its time, and the ratio to the copy's.
     steps       ms per training step of a batch of 32 contexts, S = 1000, L = 32, at P = 10^6 and 10^7:
                   GPU REINFORCE  H uploaded, polopt_cuda_sample, the draws' ids down, their rewards on the host,
                                  up again, polopt_cuda_gradient, G down (theta's step on the host is L x L: not
                                  counted, as the CPU's steps count theirs);
                   CPU REINFORCE  polopt_trainer_epoch with POLOPT_METHOD_REINFORCE (a gemm over the catalogue);
                   CPU eps = 0.8  the same with SNIS around the HNSW top-256, warm-started (P = 10^6 only unless
                                  --full: the index of 10^7 items takes minutes to build).
                 The reward of every method: 1 when a hash of (context, item) is 0 mod 100.
   Medians of 5 repeats.  Ends with one line "bench: key=value ...".  Without a CUDA device it says so and ends with
   "bench: device=none".
   Run: make cuda-check && build/cuda/bench_cuda [--full] */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L
#endif
#define POLOPT_IMPLEMENTATION
#define POLOPT_CUDA_IMPLEMENTATION
#include "polopt_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "bench.h"

#define BATCH 32
#define S_DRAWS 1000
#define REPEATS 5

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, polopt_strerror(rc), message);
        exit(1);
    }
}

static void cuda_ok(cudaError_t e, const char *what)
{
    if (e != cudaSuccess) {
        fprintf(stderr, "%s failed: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}

__global__ static void copy_kernel(size_t n, const float4 *in, float4 *out)
{
    size_t i;
    for (i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) out[i] = in[i];
}

/* The reward of both sides: 1 for about one item in 100, a fixed function of (context, item). */
static polopt_result hashed_reward(void *user, uint32_t context, size_t n, const uint32_t *items, float *out)
{
    size_t i;
    (void)user;
    for (i = 0; i < n; ++i) out[i] = polopt_cuda_mix64(((uint64_t)context << 32) ^ items[i]) % 100 == 0 ? 1.0f : 0.0f;
    return POLOPT_OK;
}

/* Device seconds of one call of fn, the median of REPEATS after a warm-up. */
template <typename F> static double device_seconds(F fn)
{
    cudaEvent_t a, b;
    double t[REPEATS];
    float ms;
    cuda_ok(cudaEventCreate(&a), "cudaEventCreate"), cuda_ok(cudaEventCreate(&b), "cudaEventCreate");
    fn();
    for (int r = 0; r < REPEATS; ++r) {
        cuda_ok(cudaEventRecord(a), "cudaEventRecord");
        fn();
        cuda_ok(cudaEventRecord(b), "cudaEventRecord");
        cuda_ok(cudaEventSynchronize(b), "cudaEventSynchronize");
        cuda_ok(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
        t[r] = ms * 1e-3;
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    return bench_median(t, REPEATS);
}

/* ms per step of the CPU trainer with method (REINFORCE or eps = 0.8 warm) over 8 steps of 32 contexts. */
static double cpu_step_ms(const polopt_mips *index, const std::vector<float> &X, size_t L, int snis)
{
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_policy pol;
    polopt_trainer tr;
    polopt_dataset d;
    polopt_train_stats st;
    double t[REPEATS];
    check(polopt_policy_init(&pol, &pc), "policy", pol.err.message);
    tc.estimator.method = snis ? POLOPT_METHOD_SNIS : POLOPT_METHOD_REINFORCE;
    tc.estimator.epsilon = 0.8f, tc.warm_start = snis;
    check(polopt_trainer_init(&tr, &pol, index, &tc), "trainer", tr.err.message);
    memset(&d, 0, sizeof d);
    d.n = 8 * BATCH, d.X = X.data(), d.ldx = L, d.reward = hashed_reward;
    check(polopt_trainer_epoch(&tr, &d, &st), "epoch", tr.err.message); /* warm-up (and the warm starts' first pass) */
    for (int r = 0; r < REPEATS; ++r) {
        const double t0 = bench_now();
        check(polopt_trainer_epoch(&tr, &d, &st), "epoch", tr.err.message);
        t[r] = (bench_now() - t0) * 1000.0 / 8.0;
    }
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    return bench_median(t, REPEATS);
}

int main(int argc, char **argv)
{
    const int full = argc > 1 && strcmp(argv[1], "--full") == 0;
    polopt_error err;
    int devices = 0;
    if (polopt_cuda_device_count(&devices, &err) != POLOPT_OK) {
        printf("skipped: bench_cuda (%s)\nbench: device=none\n", err.message);
        return 0;
    }
    cudaDeviceProp prop;
    cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    printf("device: %s, %d SMs, %.0f GiB\n", prop.name, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1u << 30));

    /* 1. bandwidth: the copy, then the fused sampler at P = 10^7, L = 64 */
    const size_t copy_floats = (size_t)1 << 28; /* 1 GiB */
    float *a = NULL, *b = NULL;
    cuda_ok(cudaMalloc(&a, copy_floats * 4), "cudaMalloc"), cuda_ok(cudaMalloc(&b, copy_floats * 4), "cudaMalloc");
    cuda_ok(cudaMemset(a, 0, copy_floats * 4), "cudaMemset");
    const double copy_s = device_seconds([&] {
        copy_kernel<<<4 * prop.multiProcessorCount, 512>>>(copy_floats / 4, (const float4 *)a, (float4 *)b);
    });
    const double copy_gbs = 2.0 * copy_floats * 4 / copy_s / 1e9;
    cudaFree(a), cudaFree(b);
    printf("copy kernel: %.0f GB/s (read + write of 1 GiB)\n", copy_gbs);
    double fused_gbs = 0.0, fused_ms = 0.0;
    {
        const size_t P = 10000000, L = 64;
        polopt_synth_config sc = polopt_synth_config_default();
        polopt_synth cat;
        std::vector<float> beta(P * L), H(BATCH * L), T(L);
        polopt_cuda_catalogue gc;
        polopt_cuda_sampler smp;
        sc.n_items = P, sc.dim = L;
        check(polopt_synth_init(&cat, &sc), "synth", cat.err.message);
        check(polopt_synth_items(&cat, 0, P, beta.data()), "items", cat.err.message);
        for (size_t u = 0; u < BATCH; ++u) check(polopt_synth_user(&cat, u, &H[u * L], T.data()), "user", "");
        check(polopt_cuda_catalogue_init(&gc, P, L, beta.data(), NULL, NULL), "catalogue", gc.err.message);
        check(polopt_cuda_sampler_init(&smp, &gc, BATCH, S_DRAWS, 1.0f, 1, NULL), "sampler", smp.err.message);
        check(polopt_cuda_upload(smp.H, H.data(), H.size() * 4, NULL, &smp.err), "upload", smp.err.message);
        const double s = device_seconds([&] { check(polopt_cuda_sample(&smp, BATCH, smp.H, NULL), "sample", smp.err.message); });
        fused_ms = 1000.0 * s, fused_gbs = (double)P * L * 4 / s / 1e9;
        printf("fused scoring + sampling, P = 10^7, L = 64, batch 32, S = 1000: %.2f ms, %.0f GB/s of beta = %.0f%% of "
               "the copy's\n", fused_ms, fused_gbs, 100.0 * fused_gbs / copy_gbs);
        polopt_cuda_sampler_free(&smp);
        polopt_cuda_catalogue_free(&gc);
        polopt_synth_free(&cat);
    }

    /* 2. training steps at L = 32 */
    const size_t L = 32, sizes[2] = {1000000, 10000000};
    double gpu_ms[2] = {0, 0}, cpu_rf_ms[2] = {0, 0}, cpu_eps_ms[2] = {-1, -1};
    printf("\nms per training step, batch 32, S = 1000, L = 32\n%-10s %14s %14s %14s %12s %12s\n", "P",
           "GPU REINFORCE", "CPU REINFORCE", "CPU eps=0.8", "CPU RF / GPU", "eps / GPU");
    for (int pi = 0; pi < 2; ++pi) {
        const size_t P = sizes[pi];
        polopt_synth_config sc = polopt_synth_config_default();
        polopt_synth cat;
        std::vector<float> beta(P * L), X(8 * BATCH * L), T(L), r(BATCH * S_DRAWS), G(BATCH * L);
        std::vector<uint32_t> ids(BATCH * S_DRAWS);
        sc.n_items = P, sc.dim = L;
        check(polopt_synth_init(&cat, &sc), "synth", cat.err.message);
        check(polopt_synth_items(&cat, 0, P, beta.data()), "items", cat.err.message);
        for (size_t u = 0; u < 8 * BATCH; ++u) check(polopt_synth_user(&cat, u, &X[u * L], T.data()), "user", "");
        { /* GPU */
            polopt_cuda_catalogue gc;
            polopt_cuda_sampler smp;
            float *d_r = NULL, *d_g = NULL;
            double t[REPEATS];
            check(polopt_cuda_catalogue_init(&gc, P, L, beta.data(), NULL, NULL), "catalogue", gc.err.message);
            check(polopt_cuda_sampler_init(&smp, &gc, BATCH, S_DRAWS, 1.0f, 1, NULL), "sampler", smp.err.message);
            cuda_ok(cudaMalloc(&d_r, r.size() * 4), "cudaMalloc"), cuda_ok(cudaMalloc(&d_g, G.size() * 4), "cudaMalloc");
            for (int rep = -1; rep < REPEATS; ++rep) {
                const double t0 = bench_now();
                check(polopt_cuda_upload(smp.H, X.data(), BATCH * L * 4, NULL, &smp.err), "upload", smp.err.message);
                check(polopt_cuda_sample(&smp, BATCH, smp.H, NULL), "sample", smp.err.message);
                check(polopt_cuda_download(ids.data(), smp.ids, ids.size() * 4, NULL, &smp.err), "download", "");
                for (size_t c = 0; c < BATCH; ++c) hashed_reward(NULL, (uint32_t)c, S_DRAWS, &ids[c * S_DRAWS], &r[c * S_DRAWS]);
                check(polopt_cuda_upload(d_r, r.data(), r.size() * 4, NULL, &err), "upload", err.message);
                check(polopt_cuda_gradient(&gc, BATCH, S_DRAWS, smp.ids, NULL, d_r, 1.0f, d_g, NULL, NULL, &err),
                      "gradient", err.message);
                check(polopt_cuda_download(G.data(), d_g, G.size() * 4, NULL, &err), "download", err.message);
                if (rep >= 0) t[rep] = (bench_now() - t0) * 1000.0;
            }
            gpu_ms[pi] = bench_median(t, REPEATS);
            cudaFree(d_r), cudaFree(d_g);
            polopt_cuda_sampler_free(&smp);
            polopt_cuda_catalogue_free(&gc);
        }
        { /* CPU: REINFORCE over an exact index, eps = 0.8 over HNSW */
            polopt_mips exact;
            check(polopt_mips_init_exact(&exact, P, L, beta.data(), 1, NULL), "index", exact.err.message);
            cpu_rf_ms[pi] = cpu_step_ms(&exact, X, L, 0);
            polopt_mips_free(&exact);
            if (pi == 0 || full) {
                polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
                polopt_mips hnsw;
                hc.ef_construction = 100, hc.n_threads = 8;
                check(polopt_mips_init_hnsw(&hnsw, P, L, beta.data(), 1, &hc), "index", hnsw.err.message);
                cpu_eps_ms[pi] = cpu_step_ms(&hnsw, X, L, 1);
                polopt_mips_free(&hnsw);
            }
        }
        printf("%-10lu %14.2f %14.2f ", (unsigned long)P, gpu_ms[pi], cpu_rf_ms[pi]);
        if (cpu_eps_ms[pi] > 0) printf("%14.2f %11.1fx %11.2fx\n", cpu_eps_ms[pi], cpu_rf_ms[pi] / gpu_ms[pi], cpu_eps_ms[pi] / gpu_ms[pi]);
        else printf("%14s %11.1fx %12s\n", "(--full)", cpu_rf_ms[pi] / gpu_ms[pi], "-");
        polopt_synth_free(&cat);
    }
    printf("bench: device=%s copy_gbs=%.0f fused_gbs=%.0f fused_over_copy=%.2f fused_ms=%.2f gpu_step_ms_1e6=%.2f "
           "gpu_step_ms_1e7=%.2f cpu_reinforce_over_gpu_1e6=%.1f cpu_reinforce_over_gpu_1e7=%.1f "
           "cpu_eps08_over_gpu_1e6=%.2f\n", "cuda", copy_gbs, fused_gbs, fused_gbs / copy_gbs, fused_ms, gpu_ms[0],
           gpu_ms[1], cpu_rf_ms[0] / gpu_ms[0], cpu_rf_ms[1] / gpu_ms[1], cpu_eps_ms[0] / gpu_ms[0]);
    return 0;
}
