/* GPU against CPU: polopt_cuda.h's kernels against polopt.h on the same inputs.  Without a CUDA device it prints
   "skipped: cuda-gpu (...)" and succeeds.  Built by make cuda-check, run by make cuda-test.
   Tolerances: the device sums a dot product in index order with fused multiply-adds, the CPU in its kernel's order,
   so scores differ by a few float ulp (|h| |beta| L 2^-24, about 1e-6 here); log Z by the float sums of the tile
   states (1e-5 relative); sampling is compared by a chi-square test, the draws being random. */
#define POLOPT_IMPLEMENTATION
#define POLOPT_CUDA_IMPLEMENTATION
#include "polopt_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

static int failures = 0, passed = 0;
#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            printf("  FAIL %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond);       \
            ++failures;                                                            \
        }                                                                          \
    } while (0)
#define CHECK_OK(call)                                                                                 \
    do {                                                                                               \
        const polopt_result rc_ = (call);                                                              \
        if (rc_ != POLOPT_OK) {                                                                        \
            printf("  FAIL %s:%d: %s returned %s\n", __FILE__, __LINE__, #call, polopt_strerror(rc_)); \
            ++failures;                                                                                \
        }                                                                                              \
    } while (0)

static void fill(polopt_rng *rng, std::vector<float> &x, float lo, float hi)
{
    for (size_t i = 0; i < x.size(); ++i) x[i] = lo + (hi - lo) * polopt_rng_uniformf(rng);
}

/* The draws' frequencies against the exact softmax (chi-square, 4 sigma), log Z against polopt_logsumexp. */
static void sampler_matches_softmax(size_t P, size_t L, size_t n, size_t S, float T)
{
    polopt_rng rng;
    std::vector<float> beta(P * L), H(n * L), scores(P), pi(P);
    std::vector<uint32_t> ids(n * S);
    std::vector<double> log_z(n);
    polopt_cuda_catalogue cat;
    polopt_cuda_sampler smp;
    polopt_rng_seed(&rng, 1 + P);
    fill(&rng, beta, -0.3f, 0.3f), fill(&rng, H, -1.0f, 1.0f);
    CHECK_OK(polopt_cuda_catalogue_init(&cat, P, L, beta.data(), NULL, NULL));
    CHECK_OK(polopt_cuda_sampler_init(&smp, &cat, n, S, T, 5, NULL));
    CHECK_OK(polopt_cuda_upload(smp.H, H.data(), n * L * sizeof(float), NULL, &smp.err));
    CHECK_OK(polopt_cuda_sample(&smp, n, smp.H, NULL));
    CHECK_OK(polopt_cuda_download(ids.data(), smp.ids, n * S * sizeof(uint32_t), NULL, &smp.err));
    CHECK_OK(polopt_cuda_download(log_z.data(), smp.log_z, n * sizeof(double), NULL, &smp.err));
    for (size_t c = 0; c < n; ++c) {
        std::vector<double> observed(P, 0.0), expected(P);
        double want, x2 = 0.0;
        size_t outside = 0;
        polopt_gemv(POLOPT_NO_TRANS, P, L, 1.0f, beta.data(), L, H.data() + c * L, 0.0f, scores.data());
        CHECK_OK(polopt_logsumexp(P, scores.data(), T, &want));
        CHECK(fabs(log_z[c] - want) <= 1e-5 * (1.0 + fabs(want)));
        CHECK_OK(polopt_softmax(P, scores.data(), T, pi.data()));
        for (size_t s = 0; s < S; ++s) {
            const uint32_t a = ids[c * S + s];
            if (a < P) observed[a] += 1.0;
            else ++outside;
        }
        CHECK(outside == 0);
        for (size_t a = 0; a < P; ++a) {
            const double e = (double)S * pi[a], d = observed[a] - e;
            x2 += d * d / e;
        }
        { /* Wilson-Hilferty: the chi-square's 4-sigma point for P - 1 degrees of freedom */
            const double k = (double)(P - 1), h = 2.0 / (9.0 * k), q = 1.0 - h + 4.0 * sqrt(h);
            if (!(x2 < k * q * q * q)) printf("  context %lu: chi2 %.1f, dof %.0f\n", (unsigned long)c, x2, k);
            CHECK(x2 < k * q * q * q);
        }
    }
    polopt_cuda_sampler_free(&smp);
    polopt_cuda_catalogue_free(&cat);
}

/* Top-K against polopt_topk on the CPU's scores: the same items where the K-th and the next differ by more than
   the scores' disagreement, and each score within it. */
static void topk_matches_cpu(size_t P, size_t L, size_t n, size_t K)
{
    polopt_rng rng;
    std::vector<float> beta(P * L), H(n * L), scores(P), gs(n * K), cs(K + 1);
    std::vector<uint32_t> gi(n * K), ci(K + 1);
    polopt_cuda_catalogue cat;
    polopt_cuda_topk tk;
    polopt_rng_seed(&rng, 2 + K);
    fill(&rng, beta, -1.0f, 1.0f), fill(&rng, H, -1.0f, 1.0f);
    CHECK_OK(polopt_cuda_catalogue_init(&cat, P, L, beta.data(), NULL, NULL));
    CHECK_OK(polopt_cuda_topk_init(&tk, &cat, n, K, NULL));
    CHECK_OK(polopt_cuda_upload(tk.H, H.data(), n * L * sizeof(float), NULL, &tk.err));
    CHECK_OK(polopt_cuda_topk_run(&tk, n, tk.H, NULL));
    CHECK_OK(polopt_cuda_download(gi.data(), tk.ids, n * K * sizeof(uint32_t), NULL, &tk.err));
    CHECK_OK(polopt_cuda_download(gs.data(), tk.scores, n * K * sizeof(float), NULL, &tk.err));
    for (size_t c = 0; c < n; ++c) {
        const float tol = 1e-5f;
        const size_t kk = K < P ? K + 1 : K;
        polopt_gemv(POLOPT_NO_TRANS, P, L, 1.0f, beta.data(), L, H.data() + c * L, 0.0f, scores.data());
        CHECK_OK(polopt_topk(P, scores.data(), kk, ci.data(), cs.data()));
        for (size_t k = 0; k < K; ++k) {
            const uint32_t a = gi[c * K + k];
            CHECK(a < P);
            if (a < P) CHECK(fabsf(gs[c * K + k] - scores[a]) <= tol);
            if (k) CHECK(gs[c * K + k - 1] >= gs[c * K + k]);
        }
        if (kk > K && cs[K - 1] - cs[K] > 2 * tol) { /* a clear boundary: the same set */
            std::vector<uint32_t> a(gi.begin() + c * K, gi.begin() + (c + 1) * K), b(ci.begin(), ci.begin() + K);
            std::sort(a.begin(), a.end()), std::sort(b.begin(), b.end());
            CHECK(a == b);
        }
    }
    polopt_cuda_topk_free(&tk);
    polopt_cuda_catalogue_free(&cat);
}

/* The covariance gradient against its formula in double on the host, with log-weights and with equal weights. */
static void gradient_matches_formula(int weighted)
{
    const size_t P = 50000, L = 48, n = 5, S = 1000;
    const float T = 0.7f;
    polopt_rng rng;
    std::vector<float> beta(P * L), lw(n * S), r(n * S), g(n * L);
    std::vector<uint32_t> ids(n * S);
    std::vector<double> value(n);
    polopt_cuda_catalogue cat;
    uint32_t *d_ids = NULL;
    float *d_lw = NULL, *d_r = NULL, *d_g = NULL;
    double *d_v = NULL;
    polopt_rng_seed(&rng, 4 + weighted);
    fill(&rng, beta, -1.0f, 1.0f), fill(&rng, lw, -3.0f, 3.0f), fill(&rng, r, 0.0f, 1.0f);
    for (size_t i = 0; i < n * S; ++i) ids[i] = (uint32_t)polopt_rng_below(&rng, P);
    CHECK_OK(polopt_cuda_catalogue_init(&cat, P, L, beta.data(), NULL, NULL));
    CHECK(cudaMalloc(&d_ids, n * S * 4) == cudaSuccess && cudaMalloc(&d_lw, n * S * 4) == cudaSuccess &&
          cudaMalloc(&d_r, n * S * 4) == cudaSuccess && cudaMalloc(&d_g, n * L * 4) == cudaSuccess &&
          cudaMalloc(&d_v, n * 8) == cudaSuccess);
    CHECK_OK(polopt_cuda_upload(d_ids, ids.data(), n * S * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_upload(d_lw, lw.data(), n * S * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_upload(d_r, r.data(), n * S * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_gradient(&cat, n, S, d_ids, weighted ? d_lw : NULL, d_r, T, d_g, d_v, NULL, NULL));
    CHECK_OK(polopt_cuda_download(g.data(), d_g, n * L * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_download(value.data(), d_v, n * 8, NULL, NULL));
    for (size_t c = 0; c < n; ++c) {
        double m = -INFINITY, z = 0.0, rb = 0.0;
        std::vector<double> w(S), want(L, 0.0);
        for (size_t s = 0; s < S; ++s) m = fmax(m, weighted ? lw[c * S + s] : 0.0);
        for (size_t s = 0; s < S; ++s) z += w[s] = exp((weighted ? lw[c * S + s] : 0.0) - m);
        for (size_t s = 0; s < S; ++s) w[s] /= z, rb += w[s] * r[c * S + s];
        for (size_t s = 0; s < S; ++s)
            for (size_t l = 0; l < L; ++l)
                want[l] += w[s] * (r[c * S + s] - rb) * beta[(size_t)ids[c * S + s] * L + l] / T *
                           (weighted ? 1.0 : (double)S / (double)(S - 1));
        CHECK(fabs(value[c] - rb) <= 1e-6);
        for (size_t l = 0; l < L; ++l) CHECK(fabs(g[c * L + l] - want[l]) <= 1e-5);
    }
    CHECK(polopt_cuda_gradient(&cat, n, 1, d_ids, NULL, d_r, T, d_g, NULL, NULL, NULL) == POLOPT_ERR_INVALID_ARG);
    cudaFree(d_ids), cudaFree(d_lw), cudaFree(d_r), cudaFree(d_g), cudaFree(d_v);
    polopt_cuda_catalogue_free(&cat);
}

/* The exact value and gradient against the same sums in double on the host: context 0 with every item's reward
   listed (a dense reward), the others with 5 items. */
static void exact_matches_host(size_t P, size_t L, float T)
{
    const size_t n = 4;
    polopt_rng rng;
    std::vector<float> beta(P * L), H(n * L), scores(P), rew, g(n * L), bbar(n * L);
    std::vector<uint32_t> offsets(n + 1), items;
    std::vector<double> value(n), log_z(n);
    polopt_cuda_catalogue cat;
    polopt_cuda_exact ex;
    uint32_t *d_off = NULL, *d_items = NULL;
    float *d_rew = NULL;
    polopt_rng_seed(&rng, 6 + P);
    fill(&rng, beta, -0.5f, 0.5f), fill(&rng, H, -1.0f, 1.0f);
    for (size_t c = 0; c < n; ++c) {
        offsets[c] = (uint32_t)items.size();
        const size_t m = c == 0 ? P : 5;
        for (size_t k = 0; k < m; ++k) {
            items.push_back(c == 0 ? (uint32_t)k : (uint32_t)polopt_rng_below(&rng, P));
            rew.push_back(polopt_rng_uniformf(&rng));
        }
    }
    offsets[n] = (uint32_t)items.size();
    CHECK_OK(polopt_cuda_catalogue_init(&cat, P, L, beta.data(), NULL, NULL));
    CHECK_OK(polopt_cuda_exact_init(&ex, &cat, n, T, NULL));
    CHECK(cudaMalloc(&d_off, offsets.size() * 4) == cudaSuccess && cudaMalloc(&d_items, items.size() * 4) == cudaSuccess &&
          cudaMalloc(&d_rew, rew.size() * 4) == cudaSuccess);
    CHECK_OK(polopt_cuda_upload(d_off, offsets.data(), offsets.size() * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_upload(d_items, items.data(), items.size() * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_upload(d_rew, rew.data(), rew.size() * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_upload(ex.H, H.data(), H.size() * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_exact_run(&ex, n, ex.H, d_off, d_items, d_rew, NULL));
    CHECK_OK(polopt_cuda_download(value.data(), ex.value, n * 8, NULL, NULL));
    CHECK_OK(polopt_cuda_download(log_z.data(), ex.log_z, n * 8, NULL, NULL));
    CHECK_OK(polopt_cuda_download(g.data(), ex.grad, n * L * 4, NULL, NULL));
    CHECK_OK(polopt_cuda_download(bbar.data(), ex.beta_bar, n * L * 4, NULL, NULL));
    for (size_t c = 0; c < n; ++c) {
        double lz, v = 0.0;
        std::vector<double> pi(P), mean(L, 0.0), want(L, 0.0);
        polopt_gemv(POLOPT_NO_TRANS, P, L, 1.0f, beta.data(), L, H.data() + c * L, 0.0f, scores.data());
        CHECK_OK(polopt_logsumexp(P, scores.data(), T, &lz));
        for (size_t a = 0; a < P; ++a) {
            pi[a] = exp((double)scores[a] / T - lz);
            for (size_t l = 0; l < L; ++l) mean[l] += pi[a] * beta[a * L + l];
        }
        for (size_t k = offsets[c]; k < offsets[c + 1]; ++k) {
            const uint32_t a = items[k];
            v += pi[a] * rew[k];
            for (size_t l = 0; l < L; ++l) want[l] += pi[a] * rew[k] * (beta[a * L + l] - mean[l]) / T;
        }
        CHECK(fabs(log_z[c] - lz) <= 1e-5 * (1.0 + fabs(lz)));
        CHECK(fabs(value[c] - v) <= 1e-5 * (1e-3 + fabs(v)));
        for (size_t l = 0; l < L; ++l) {
            CHECK(fabs(bbar[c * L + l] - mean[l]) <= 1e-5);
            CHECK(fabs(g[c * L + l] - want[l]) <= 1e-5 * (1e-2 + fabs(want[l])) + 1e-7);
        }
    }
    cudaFree(d_off), cudaFree(d_items), cudaFree(d_rew);
    polopt_cuda_exact_free(&ex);
    polopt_cuda_catalogue_free(&cat);
}

/* Adam on the device against polopt_adam_step; a non-finite gradient leaves everything as it was. */
static void adam_matches_cpu(void)
{
    const size_t N = 100003;
    polopt_rng rng;
    std::vector<float> p(N), g(N), back(N);
    polopt_adam_config c = polopt_adam_config_default();
    polopt_adam host;
    polopt_cuda_adam dev;
    float *dp = NULL, *dg = NULL;
    polopt_rng_seed(&rng, 3);
    c.lr = 0.01f, c.weight_decay = 0.01f;
    fill(&rng, p, -1.0f, 1.0f);
    CHECK(cudaMalloc(&dp, N * sizeof(float)) == cudaSuccess && cudaMalloc(&dg, N * sizeof(float)) == cudaSuccess);
    CHECK_OK(polopt_cuda_upload(dp, p.data(), N * sizeof(float), NULL, NULL));
    CHECK_OK(polopt_adam_init(&host, N, &c));
    CHECK_OK(polopt_cuda_adam_init(&dev, N, &c, NULL));
    for (int t = 0; t < 5; ++t) {
        fill(&rng, g, -1.0f, 1.0f);
        CHECK_OK(polopt_adam_step(&host, p.data(), g.data()));
        CHECK_OK(polopt_cuda_upload(dg, g.data(), N * sizeof(float), NULL, NULL));
        CHECK_OK(polopt_cuda_adam_step(&dev, dp, dg, NULL));
    }
    CHECK_OK(polopt_cuda_download(back.data(), dp, N * sizeof(float), NULL, NULL));
    size_t worse = 0;
    for (size_t i = 0; i < N; ++i) worse += !(fabsf(back[i] - p[i]) <= 1e-6f * (1.0f + fabsf(p[i])));
    CHECK(worse == 0);
    g[N / 2] = NAN;
    CHECK_OK(polopt_cuda_upload(dg, g.data(), N * sizeof(float), NULL, NULL));
    CHECK(polopt_cuda_adam_step(&dev, dp, dg, NULL) == POLOPT_ERR_NONFINITE && dev.t == 5);
    std::vector<float> after(N);
    CHECK_OK(polopt_cuda_download(after.data(), dp, N * sizeof(float), NULL, NULL));
    CHECK(memcmp(after.data(), back.data(), N * sizeof(float)) == 0);
    polopt_cuda_adam_free(&dev);
    polopt_adam_free(&host);
    cudaFree(dp), cudaFree(dg);
}

/* Bad arguments are refused with a message, nothing allocated. */
static void arguments_are_checked(void)
{
    std::vector<float> beta(64 * 4, 0.5f);
    polopt_cuda_catalogue cat;
    polopt_cuda_sampler smp;
    polopt_cuda_topk tk;
    beta[7] = INFINITY;
    CHECK(polopt_cuda_catalogue_init(&cat, 64, 4, beta.data(), NULL, NULL) == POLOPT_ERR_NONFINITE);
    CHECK(strstr(cat.err.message, "beta[1][3]") != NULL && cat.beta == NULL);
    beta[7] = 0.0f;
    CHECK_OK(polopt_cuda_catalogue_init(&cat, 64, 4, beta.data(), NULL, NULL));
    CHECK(polopt_cuda_sampler_init(&smp, &cat, 0, 10, 1.0f, 1, NULL) == POLOPT_ERR_INVALID_ARG && smp.ids == NULL);
    CHECK(polopt_cuda_topk_init(&tk, &cat, 1, 65, NULL) == POLOPT_ERR_INVALID_ARG && tk.ids == NULL);
    CHECK_OK(polopt_cuda_sampler_init(&smp, &cat, 2, 10, 1.0f, 1, NULL));
    CHECK(polopt_cuda_sample(&smp, 3, smp.H, NULL) == POLOPT_ERR_INVALID_ARG);
    polopt_cuda_sampler_free(&smp);
    polopt_cuda_catalogue_free(&cat);
}

int main(void)
{
    int devices = 0;
    polopt_error err;
    if (polopt_cuda_device_count(&devices, &err) != POLOPT_OK) {
        printf("skipped: cuda-gpu (%s)\n", err.message);
        return 0;
    }
    struct {
        const char *name;
        void (*run)(void);
    } tests[] = {
        {"sampler P=3000", [] { sampler_matches_softmax(3000, 16, 4, 100000, 1.0f); }},
        {"sampler P=100003 T=0.5", [] { sampler_matches_softmax(100003, 32, 4, 1000000, 0.5f); }},
        {"topk K=1", [] { topk_matches_cpu(200000, 32, 3, 1); }},
        {"topk K=10", [] { topk_matches_cpu(200000, 32, 32, 10); }},
        {"topk K=1024", [] { topk_matches_cpu(300007, 64, 8, 1024); }},
        {"topk K=P", [] { topk_matches_cpu(700, 8, 2, 700); }},
        {"gradient, log-weights", [] { gradient_matches_formula(1); }},
        {"gradient, equal weights", [] { gradient_matches_formula(0); }},
        {"exact P=20000", [] { exact_matches_host(20000, 16, 1.0f); }},
        {"exact P=1000003 L=100 T=0.3", [] { exact_matches_host(1000003, 100, 0.3f); }},
        {"adam", adam_matches_cpu},
        {"arguments", arguments_are_checked},
    };
    int failed = 0;
    for (size_t t = 0; t < sizeof tests / sizeof tests[0]; ++t) {
        const int before = failures;
        tests[t].run();
        if (failures > before) printf("FAILED %s\n", tests[t].name), ++failed;
        else ++passed;
    }
    printf("cuda-gpu: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
