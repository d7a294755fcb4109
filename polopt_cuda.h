/* polopt_cuda.h - v0.1.0 - the catalogue-sized work of polopt.h on an NVIDIA GPU
   A companion to polopt.h, optional: polopt.h never needs it.  Public domain or MIT, as polopt.h.

   QUICK START
   -----------
   In exactly one CUDA translation unit (a .cu file compiled by nvcc):

       #define POLOPT_CUDA_IMPLEMENTATION
       #include "polopt_cuda.h"

   Every other file, C or C++, just includes it (it includes polopt.h, and the declarations need no CUDA header: a
   stream is a polopt_cuda_stream, which is CUDA's cudaStream_t).  The implementation uses polopt.h's public API only,
   so polopt.h's own implementation (POLOPT_IMPLEMENTATION) may live in any file, C or CUDA.

       polopt_cuda_catalogue cat;                      // beta (P x L) copied to the device once
       polopt_cuda_sampler smp;                        // S exact draws from pi per context, and log Z
       if (polopt_cuda_catalogue_init(&cat, P, L, beta, NULL, NULL) != POLOPT_OK) fail(cat.err.message);
       if (polopt_cuda_sampler_init(&smp, &cat, 32, 1000, 1.0f, 7, NULL) != POLOPT_OK) fail(smp.err.message);
       polopt_cuda_upload(smp.H, H, 32 * L * sizeof(float), NULL, &smp.err);   // or write smp.H from a kernel
       polopt_cuda_sample(&smp, 32, smp.H, NULL);      // smp.ids: 32 x 1000 item ids; smp.log_z: 32 doubles
       polopt_cuda_download(ids, smp.ids, 32 * 1000 * sizeof(uint32_t), NULL, &smp.err);

   What runs on the device, and why (the O(P) work of Sakhi, Rohde & Gilotte 2023's baselines; polopt.h's
   SNIS estimator is O(S L + log P) a context and needs no GPU):
     polopt_cuda_sample   REINFORCE's sampling: S draws per context from pi(a | x) = exp(h^T beta_a / T) / Z, fused
                          with the scoring, so that no batch x P score matrix reaches global memory: one pass over
                          beta computes, per tile of 32 items and per context, the running maximum and the sum of
                          exponentials (the online softmax normaliser); a per-context scan turns those into the
                          cumulative weights of the tiles; each draw then finds its tile by binary search (the
                          inverse CDF over block sums) and its item by rescoring that tile's 32 items.  The bytes
                          read are P L 4 once, plus 32 L 4 per draw.
     polopt_cuda_topk     batched exact top-K (K <= 1024): each block scores a range of items for one context and
                          keeps a running top-K in shared memory (only items better than its current K-th enter,
                          sorted in by a bitonic network); the ranges' lists are then merged pairwise.
     polopt_cuda_gradient the covariance gradient of a batch from weighted draws (REINFORCE's, or SNIS's with their
                          log-weights): the weights' normaliser, the mean reward, and the gather of the draws' rows
                          of beta reduced into g.
     polopt_cuda_adam     Adam over flat parameter arrays, the same update as polopt_adam_step.
     polopt_cuda_exact_run the exact policy value and its gradient over the whole catalogue, for sparse rewards
                          (ground truth at scale): log Z and E_pi[beta] in passes over beta, no batch x P matrix.
   examples/cuda_train.cu trains with them; bench/bench_cuda.cu measures them; tests/cuda/test_cuda.cu checks them
   against polopt.h on a device.

   The per-element and per-tile math is in inline functions that compile for the host as well as for the device
   (>>devmath); polopt's tests call them on the CPU and check them against polopt.h.

   Errors come back as polopt_result with a message in the object's err: the CUDA error string is in it
   (POLOPT_ERR_DEVICE; POLOPT_ERR_NO_MEMORY when the device is out of memory).  Device memory is allocated through
   polopt_cuda_hooks (cudaMalloc / cudaFree by default).  Every launch takes an explicit stream (NULL: the default
   stream); the functions return once their work is queued, except where a result must reach the host (Adam's check
   of the gradient), which says so.

   TABLE OF CONTENTS
     >>devmath    host and device: the online softmax state and its merge, the counter-based uniform, the
                  inverse-CDF search and pick, the top-K order and merge, Adam's element update
     >>api        the host API: hooks, transfers, the catalogue, the sampler, top-K, Adam
     >>impl       kernels and host functions (POLOPT_CUDA_IMPLEMENTATION, nvcc only) */
#ifndef POLOPT_CUDA_H
#define POLOPT_CUDA_H

#include "polopt.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define POLOPT_CUDA_HD __host__ __device__ static inline
#else
#define POLOPT_CUDA_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>devmath ----------------------------------------------------------------------------------------------- */

/* The online softmax normaliser (Milakov & Gimelshein, "Online normalizer calculation for softmax", 2018): a set of
   scores f_i as (m, s) with sum_i exp(f_i) = s exp(m), m the largest score.  Empty: m = -inf, s = 0.  Two states
   merge in any order, so a warp, a block or a whole catalogue reduces them as a tree. */
typedef struct polopt_cuda_lse {
    float m, s;
} polopt_cuda_lse;

POLOPT_CUDA_HD polopt_cuda_lse polopt_cuda_lse_merge(polopt_cuda_lse a, polopt_cuda_lse b)
{
    if (b.s == 0.0f) return a;
    if (a.s == 0.0f) return b;
    if (a.m >= b.m) {
        a.s += b.s * expf(b.m - a.m);
        return a;
    }
    b.s += a.s * expf(a.m - b.m);
    return b;
}

/* The state of one score (-inf: an empty state, as for a padding slot). */
POLOPT_CUDA_HD polopt_cuda_lse polopt_cuda_lse_of(float f)
{
    polopt_cuda_lse r;
    r.m = f;
    r.s = f == -INFINITY ? 0.0f : 1.0f;
    return r;
}

/* log sum exp of the state's scores. */
POLOPT_CUDA_HD double polopt_cuda_lse_log(polopt_cuda_lse a)
{
    return a.s > 0.0f ? (double)a.m + log((double)a.s) : -INFINITY;
}

/* splitmix64's finaliser (Steele, Lea & Flood 2014): a bijection of 64-bit words that mixes every bit. */
POLOPT_CUDA_HD uint64_t polopt_cuda_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The counter-th uniform in [0, 1) of stream seed, 53 bits: a pure function, so any thread draws any number and
   the host reproduces it. */
POLOPT_CUDA_HD double polopt_cuda_uniform(uint64_t seed, uint64_t counter)
{
    const uint64_t z = polopt_cuda_mix64(polopt_cuda_mix64(seed) + (counter + 1) * 0x9e3779b97f4a7c15ULL);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* The inverse CDF over blocks: prefix[0 .. n) are the inclusive sums of n weights >= 0 (non-decreasing, total
   prefix[n - 1] > 0) and target is in [0, total).  Returns the first t with prefix[t] > target, the block whose
   interval [prefix[t - 1], prefix[t]) holds target; a block of weight 0 is never returned.  If rounding left target
   at or above the total, the block that reaches the total.  O(log n). */
POLOPT_CUDA_HD size_t polopt_cuda_search(size_t n, const double *prefix, double target)
{
    size_t lo = 0, hi = n - 1;
    if (!(target < prefix[n - 1])) { /* the first block whose sum is the total */
        const double total = prefix[n - 1];
        while (lo < hi) {
            const size_t mid = lo + (hi - lo) / 2;
            if (prefix[mid] >= total) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (prefix[mid] > target) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Within a block: the first i < n whose running sum e_0 + .. + e_i exceeds r (e_i >= 0, some e_i > 0); the last i
   with e_i > 0 when rounding left r at or above the block's total.  The device does the same with a warp's scan. */
POLOPT_CUDA_HD unsigned polopt_cuda_pick(unsigned n, const double *e, double r)
{
    double c = 0.0;
    unsigned i, last = 0;
    for (i = 0; i < n; ++i) {
        if (e[i] > 0.0) last = i;
        c += e[i];
        if (c > r && e[i] > 0.0) return i;
    }
    return last;
}

/* The order of polopt_topk: a larger score first, and of equal scores the smaller id. */
POLOPT_CUDA_HD int polopt_cuda_better(float score_a, uint32_t id_a, float score_b, uint32_t id_b)
{
    return score_a > score_b || (score_a == score_b && id_a < id_b);
}

/* Two lists sorted best first (a: na entries, b: nb) into the best k of both (k <= na + nb), best first. */
POLOPT_CUDA_HD void polopt_cuda_topk_merge(size_t k, const float *score_a, const uint32_t *id_a, size_t na,
                                           const float *score_b, const uint32_t *id_b, size_t nb, float *out_score,
                                           uint32_t *out_id)
{
    size_t i = 0, j = 0, o;
    for (o = 0; o < k; ++o) {
        const int take_a = j == nb || (i < na && polopt_cuda_better(score_a[i], id_a[i], score_b[j], id_b[j]));
        if (take_a) out_score[o] = score_a[i], out_id[o] = id_a[i], ++i;
        else out_score[o] = score_b[j], out_id[o] = id_b[j], ++j;
    }
}

/* Adam's constants of step t (Kingma & Ba 2015, with AdamW's decoupled decay), as polopt_adam_step computes them. */
typedef struct polopt_cuda_adam_consts {
    float beta1, beta2, eps;
    float step;          /* lr / (1 - beta1^t) */
    float inv_sqrt_bc2;  /* 1 / sqrt(1 - beta2^t) */
    float decay;         /* 1 - lr weight_decay */
    float sign;          /* -1 to maximise */
} polopt_cuda_adam_consts;

/* One parameter's update: the expression of polopt_adam_step, term for term. */
POLOPT_CUDA_HD void polopt_cuda_adam_element(const polopt_cuda_adam_consts *c, float *param, float *m1, float *m2,
                                             float grad)
{
    const float g = c->sign * grad;
    const float m = c->beta1 * *m1 + (1.0f - c->beta1) * g;
    const float v = c->beta2 * *m2 + (1.0f - c->beta2) * g * g;
    *m1 = m;
    *m2 = v;
    *param = *param * c->decay - c->step * m / (sqrtf(v) * c->inv_sqrt_bc2 + c->eps);
}

/* >>api --------------------------------------------------------------------------------------------------- */

typedef struct CUstream_st *polopt_cuda_stream; /* cudaStream_t; NULL: the default stream */

/* Device memory and messages.  All-zero (or NULL where a function takes hooks): cudaMalloc / cudaFree, no log. */
typedef struct polopt_cuda_hooks {
    void *(*alloc)(void *ctx, size_t bytes); /* device memory, or NULL when there is none */
    void (*free)(void *ctx, void *device_ptr);
    void *ctx;
    polopt_log_fn log;                       /* optional: every error message */
    void *log_user;
} polopt_cuda_hooks;

#define POLOPT_CUDA_MAX_BATCH 32   /* contexts per sample / top-K call */
#define POLOPT_CUDA_MAX_K 1024     /* the largest K of polopt_cuda_topk */
#define POLOPT_CUDA_TILE 32        /* items per tile of the sampler: one warp */

/* Whether a CUDA device is usable; *out_count (may be NULL) devices.  POLOPT_ERR_UNSUPPORTED with the reason if
   none (no device, no driver). */
POLOPT_DEF polopt_result polopt_cuda_device_count(int *out_count, polopt_error *out_err);
/* Copies between host and device memory on stream; they wait for it (the host buffer is then free to use). */
POLOPT_DEF polopt_result polopt_cuda_upload(void *device_dst, const void *host_src, size_t bytes,
                                            polopt_cuda_stream stream, polopt_error *out_err);
POLOPT_DEF polopt_result polopt_cuda_download(void *host_dst, const void *device_src, size_t bytes,
                                              polopt_cuda_stream stream, polopt_error *out_err);

/* The item embeddings beta (P x L, row-major) on the device. */
typedef struct polopt_cuda_catalogue {
    size_t n, dim;     /* P, L */
    float *beta;       /* device: P x L */
    polopt_cuda_hooks hooks;
    polopt_error err;
} polopt_cuda_catalogue;

/* Copy beta (host, n x dim, finite) to the device.  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_cuda_catalogue_init(polopt_cuda_catalogue *cat, size_t n, size_t dim,
                                                    const float *beta, const polopt_cuda_hooks *hooks,
                                                    polopt_cuda_stream stream);
POLOPT_DEF void polopt_cuda_catalogue_free(polopt_cuda_catalogue *cat);

/* REINFORCE's exact draws: S items per context from pi(a | x) = exp(h^T beta_a / T) / Z, with replacement, and
   log Z.  The draws of call k, context c, draw s use the uniform of counter (k batch + c) S + s of seed: the same
   seed and calls give the same draws. */
typedef struct polopt_cuda_sampler {
    const polopt_cuda_catalogue *cat;
    size_t batch, S, n_tiles;
    float temperature;
    uint64_t seed, calls;
    float *H;          /* device, batch x L: room for the contexts (polopt_cuda_sample may read them from here) */
    uint32_t *ids;     /* device, batch x S: the draws of the last call */
    double *log_z;     /* device, batch: log Z of each context */
    float *tile_m, *tile_s; /* device, batch x n_tiles: each tile's online softmax state */
    double *prefix;    /* device, batch x n_tiles: the tiles' cumulative weights exp(m_t - M) s_t */
    float *max_score;  /* device, batch: M = the largest score (f units) */
    polopt_cuda_hooks hooks;
    polopt_error err;
} polopt_cuda_sampler;

/* batch in [1, POLOPT_CUDA_MAX_BATCH], S >= 1, temperature in [1 / FLT_MAX, FLT_MAX], batch L floats of shared
   memory (L <= 12288 / batch).  hooks NULL: the catalogue's. */
POLOPT_DEF polopt_result polopt_cuda_sampler_init(polopt_cuda_sampler *smp, const polopt_cuda_catalogue *cat,
                                                  size_t batch, size_t S, float temperature, uint64_t seed,
                                                  const polopt_cuda_hooks *hooks);
/* Draw for n <= batch contexts whose embeddings H (device, n x L, finite: not checked on the device) may be smp->H.
   Queued on stream; the results are in smp->ids and smp->log_z when it reaches them. */
POLOPT_DEF polopt_result polopt_cuda_sample(polopt_cuda_sampler *smp, size_t n, const float *H,
                                            polopt_cuda_stream stream);
POLOPT_DEF void polopt_cuda_sampler_free(polopt_cuda_sampler *smp);

/* Exact top-K of h^T beta_a for a batch of contexts, in polopt_topk's order (best first; of equal scores the
   smaller id). */
typedef struct polopt_cuda_topk {
    const polopt_cuda_catalogue *cat;
    size_t batch, K, n_ranges, range;
    float *H;                   /* device, batch x L */
    uint32_t *ids;              /* device, batch x K: the result of the last call */
    float *scores;              /* device, batch x K */
    float *cand_score[2];       /* device, batch x n_ranges x K each: the ranges' lists, merged pairwise */
    uint32_t *cand_id[2];
    polopt_cuda_hooks hooks;
    polopt_error err;
} polopt_cuda_topk;

/* K in [1, min(P, POLOPT_CUDA_MAX_K)], batch in [1, POLOPT_CUDA_MAX_BATCH]. */
POLOPT_DEF polopt_result polopt_cuda_topk_init(polopt_cuda_topk *tk, const polopt_cuda_catalogue *cat, size_t batch,
                                               size_t K, const polopt_cuda_hooks *hooks);
POLOPT_DEF polopt_result polopt_cuda_topk_run(polopt_cuda_topk *tk, size_t n, const float *H,
                                              polopt_cuda_stream stream);
POLOPT_DEF void polopt_cuda_topk_free(polopt_cuda_topk *tk);

/* The covariance gradient of n contexts from S weighted draws each (Sakhi, Rohde & Gilotte 2023, Eq. 9 and
   Algorithm 1, steps 4-5), as polopt_estimator_gradient computes it for one context: with draws a_s, log-weights
   lw_s and rewards r_s (device arrays, n x S),
       w_bar = softmax(lw),   r_bar = sum_s w_bar_s r_s,   g = (1/T) sum_s w_bar_s (r_s - r_bar) beta_{a_s}
   into out_g (device, n x L) and r_bar into out_value (device, n doubles; may be NULL).  log_w NULL: equal weights,
   REINFORCE's exact draws (polopt_cuda_sample's), and g is scaled by S / (S - 1), which makes the covariance
   unbiased.  SNIS's draws come with their log-weights f(a_s) - log q(a_s).  1 <= S <= 12000 (a float each in
   shared memory), ids below P, weights and rewards finite (not checked on the device). */
POLOPT_DEF polopt_result polopt_cuda_gradient(const polopt_cuda_catalogue *cat, size_t n, size_t S,
                                              const uint32_t *ids, const float *log_w, const float *rewards,
                                              float temperature, float *out_g, double *out_value,
                                              polopt_cuda_stream stream, polopt_error *out_err);

/* Ground truth at scale: the exact policy value and its gradient for a batch of contexts, over the whole catalogue.
   Rewards are sparse, in compressed rows on the device: r(a, x_c) = rewards[k] for a = items[k], k in
   [offsets[c], offsets[c + 1]), and 0 for every other item (the set reward 1[a in Y_u], or a dense reward listed in
   full).  Then
       V_c = sum_a pi(a | x_c) r(a, x_c),      g_c = grad_h V_c = (1/T) sum_a pi(a) r(a) (beta_a - E_pi[beta])
   with log Z_c and E_pi[beta] (beta_bar) on the way.  Three passes over beta: the online softmax states of the
   sampler, then E_pi[beta] as a tiled product of the weights exp(f - M) with beta (no batch x P matrix: each block
   forms 32 items' weights in shared memory and accumulates its share of the batch x L result), then the sums over
   the listed rewards.  O(P L) a batch, plus O(L) a listed reward; L <= 128. */
typedef struct polopt_cuda_exact {
    const polopt_cuda_catalogue *cat;
    size_t batch, n_tiles, n_blocks;
    float temperature;
    float *H;          /* device, batch x L */
    double *log_z;     /* device, batch */
    float *beta_bar;   /* device, batch x L: E_pi[beta] */
    double *value;     /* device, batch: V */
    float *grad;       /* device, batch x L: grad_h V */
    float *tile_m, *tile_s, *max_score; /* as the sampler's */
    double *prefix;
    float *partial;    /* device, n_blocks x batch x L: the blocks' shares of sum_a exp(f - M) beta_a */
    polopt_cuda_hooks hooks;
    polopt_error err;
} polopt_cuda_exact;

POLOPT_DEF polopt_result polopt_cuda_exact_init(polopt_cuda_exact *ex, const polopt_cuda_catalogue *cat, size_t batch,
                                                float temperature, const polopt_cuda_hooks *hooks);
/* n <= batch contexts H (device, n x L); offsets (n + 1 entries), items (below P) and rewards on the device. */
POLOPT_DEF polopt_result polopt_cuda_exact_run(polopt_cuda_exact *ex, size_t n, const float *H,
                                               const uint32_t *offsets, const uint32_t *items, const float *rewards,
                                               polopt_cuda_stream stream);
POLOPT_DEF void polopt_cuda_exact_free(polopt_cuda_exact *ex);

/* Adam over n parameters on the device (config as polopt_adam_init's; its hooks are not used). */
typedef struct polopt_cuda_adam {
    polopt_adam_config config;
    size_t n;
    uint64_t t;
    float *m, *v;      /* device, n each */
    int *bad;          /* device: set when a gradient entry is not finite */
    polopt_cuda_hooks hooks;
    polopt_error err;
} polopt_cuda_adam;

POLOPT_DEF polopt_result polopt_cuda_adam_init(polopt_cuda_adam *opt, size_t n, const polopt_adam_config *config,
                                               const polopt_cuda_hooks *hooks);
/* One step on device arrays.  It waits for stream to say whether every gradient entry was finite: if not, it
   answers POLOPT_ERR_NONFINITE and the parameters and moments are untouched, as with polopt_adam_step. */
POLOPT_DEF polopt_result polopt_cuda_adam_step(polopt_cuda_adam *opt, float *params, const float *grad,
                                               polopt_cuda_stream stream);
POLOPT_DEF void polopt_cuda_adam_free(polopt_cuda_adam *opt);

#ifdef __cplusplus
}
#endif

/* >>impl -------------------------------------------------------------------------------------------------- */
#ifdef POLOPT_CUDA_IMPLEMENTATION
#ifndef __CUDACC__
#error "POLOPT_CUDA_IMPLEMENTATION needs nvcc: define it in a .cu file"
#endif
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define POLOPT_CUDA__SORT_N 2048   /* the bitonic buffer of top-K: K kept + the candidates waiting */
#define POLOPT_CUDA__RANGE 65536   /* items per block of top-K's first pass */

static polopt_result polopt_cuda__fail(polopt_error *err, const polopt_cuda_hooks *hooks, polopt_result code,
                                       const char *fmt, ...)
{
    polopt_error scratch;
    va_list ap;
    if (!err) err = &scratch;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (hooks && hooks->log) hooks->log(hooks->log_user, code, err->message);
    return code;
}

/* A CUDA error as a polopt_result, its string in the message. */
static polopt_result polopt_cuda__check(cudaError_t e, polopt_error *err, const polopt_cuda_hooks *hooks,
                                        const char *fn, const char *what)
{
    if (e == cudaSuccess) return POLOPT_OK;
    return polopt_cuda__fail(err, hooks, e == cudaErrorMemoryAllocation ? POLOPT_ERR_NO_MEMORY : POLOPT_ERR_DEVICE,
                             "%s: %s: %s (%s)", fn, what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static void *polopt_cuda__alloc(const polopt_cuda_hooks *h, size_t bytes)
{
    void *p = NULL;
    if (h->alloc) return h->alloc(h->ctx, bytes ? bytes : 1);
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

static void polopt_cuda__free(const polopt_cuda_hooks *h, void *p)
{
    if (!p) return;
    if (h->free) h->free(h->ctx, p);
    else cudaFree(p);
}

/* Allocate count elements of size bytes into *p, or fail with a message naming what. */
static polopt_result polopt_cuda__alloc_array(void **p, size_t count, size_t size, polopt_error *err,
                                              const polopt_cuda_hooks *h, const char *fn, const char *what)
{
    if (size && count > SIZE_MAX / size)
        return polopt_cuda__fail(err, h, POLOPT_ERR_OVERFLOW, "%s: %s: %lu x %lu bytes overflow", fn, what,
                                 (unsigned long)count, (unsigned long)size);
    *p = polopt_cuda__alloc(h, count * size);
    if (!*p)
        return polopt_cuda__fail(err, h, POLOPT_ERR_NO_MEMORY, "%s: cannot allocate %lu bytes of device memory for %s",
                                 fn, (unsigned long)(count * size), what);
    return POLOPT_OK;
}

static const polopt_cuda_hooks polopt_cuda__no_hooks = {NULL, NULL, NULL, NULL, NULL};

POLOPT_DEF polopt_result polopt_cuda_device_count(int *out_count, polopt_error *out_err)
{
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (out_count) *out_count = e == cudaSuccess ? n : 0;
    if (e != cudaSuccess)
        return polopt_cuda__fail(out_err, NULL, POLOPT_ERR_UNSUPPORTED, "polopt_cuda_device_count: %s (%s)",
                                 cudaGetErrorString(e), cudaGetErrorName(e));
    if (n == 0)
        return polopt_cuda__fail(out_err, NULL, POLOPT_ERR_UNSUPPORTED, "polopt_cuda_device_count: no CUDA device");
    return POLOPT_OK;
}

static polopt_result polopt_cuda__copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                                       polopt_cuda_stream stream, polopt_error *err, const char *fn)
{
    polopt_result rc;
    if ((!dst || !src) && bytes)
        return polopt_cuda__fail(err, NULL, POLOPT_ERR_INVALID_ARG, "%s: a NULL pointer for %lu bytes", fn,
                                 (unsigned long)bytes);
    if (!bytes) return POLOPT_OK;
    rc = polopt_cuda__check(cudaMemcpyAsync(dst, src, bytes, kind, (cudaStream_t)stream), err, NULL, fn,
                            "cudaMemcpyAsync");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__check(cudaStreamSynchronize((cudaStream_t)stream), err, NULL, fn, "cudaStreamSynchronize");
    return rc;
}

POLOPT_DEF polopt_result polopt_cuda_upload(void *device_dst, const void *host_src, size_t bytes,
                                                       polopt_cuda_stream stream, polopt_error *out_err)
{
    return polopt_cuda__copy(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream, out_err,
                             "polopt_cuda_upload");
}

POLOPT_DEF polopt_result polopt_cuda_download(void *host_dst, const void *device_src, size_t bytes,
                                                         polopt_cuda_stream stream, polopt_error *out_err)
{
    return polopt_cuda__copy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream, out_err,
                             "polopt_cuda_download");
}

/* ---- the catalogue */

POLOPT_DEF polopt_result polopt_cuda_catalogue_init(polopt_cuda_catalogue *cat, size_t n, size_t dim,
                                                               const float *beta, const polopt_cuda_hooks *hooks,
                                                               polopt_cuda_stream stream)
{
    static const char *fn = "polopt_cuda_catalogue_init";
    size_t bad;
    polopt_result rc;
    if (!cat) return POLOPT_ERR_INVALID_ARG;
    memset(cat, 0, sizeof *cat);
    cat->hooks = hooks ? *hooks : polopt_cuda__no_hooks;
    if (!beta || n == 0 || dim == 0 || n >= (size_t)UINT32_MAX || (n && dim > SIZE_MAX / n / sizeof(float)))
        return polopt_cuda__fail(&cat->err, &cat->hooks, POLOPT_ERR_INVALID_ARG, "%s: beta is %s, %lu x %lu", fn,
                                 beta ? "given" : "NULL", (unsigned long)n, (unsigned long)dim);
    if (polopt_check_finite(n * dim, beta, &bad) != POLOPT_OK)
        return polopt_cuda__fail(&cat->err, &cat->hooks, POLOPT_ERR_NONFINITE, "%s: beta[%lu][%lu] is not finite", fn,
                                 (unsigned long)(bad / dim), (unsigned long)(bad % dim));
    rc = polopt_cuda__alloc_array((void **)&cat->beta, n * dim, sizeof(float), &cat->err, &cat->hooks, fn, "beta");
    if (rc == POLOPT_OK) rc = polopt_cuda_upload(cat->beta, beta, n * dim * sizeof(float), stream, &cat->err);
    if (rc != POLOPT_OK) {
        const polopt_error keep = cat->err;
        polopt_cuda_catalogue_free(cat);
        cat->err = keep;
        return rc;
    }
    cat->n = n, cat->dim = dim;
    return POLOPT_OK;
}

POLOPT_DEF void polopt_cuda_catalogue_free(polopt_cuda_catalogue *cat)
{
    if (!cat) return;
    polopt_cuda__free(&cat->hooks, cat->beta);
    memset(cat, 0, sizeof *cat);
}

/* ---- device helpers */

/* h^T beta_a, the dot product in index order (the scoring pass and the draws' rescoring agree to the bit). */
__device__ static inline float polopt_cuda__dot(const float *beta_a, const float *h, size_t L)
{
    float acc = 0.0f;
    size_t l;
    for (l = 0; l < L; ++l) acc = fmaf(beta_a[l], h[l], acc);
    return acc;
}

/* Kernel A of the sampler: per tile of 32 items and per context, the online softmax state of f = h^T beta_a / T.
   A thread scores one item against every context (H in shared memory, read by all threads at once: a broadcast);
   its warp, one tile, merges the 32 states with shuffles. */
__global__ static void polopt_cuda__tile_states(const float *beta, size_t P, size_t L, const float *H, int n,
                                                float inv_t, size_t n_tiles, float *tile_m, float *tile_s)
{
    extern __shared__ float polopt_cuda__shared_h[];
    float *sh = polopt_cuda__shared_h;
    const size_t a = (size_t)blockIdx.x * blockDim.x + threadIdx.x, tile = a / POLOPT_CUDA_TILE;
    const unsigned lane = threadIdx.x % POLOPT_CUDA_TILE;
    float acc[POLOPT_CUDA_MAX_BATCH];
    size_t i, l;
    int b;
    for (i = threadIdx.x; i < (size_t)n * L; i += blockDim.x) sh[i] = H[i];
    __syncthreads();
#pragma unroll
    for (b = 0; b < POLOPT_CUDA_MAX_BATCH; ++b) acc[b] = 0.0f;
    if (a < P) {
        const float *row = beta + a * L;
        for (l = 0; l < L; ++l) {
            const float x = row[l];
#pragma unroll
            for (b = 0; b < POLOPT_CUDA_MAX_BATCH; ++b)
                if (b < n) acc[b] = fmaf(x, sh[(size_t)b * L + l], acc[b]);
        }
    }
    if (tile >= n_tiles) return; /* a whole warp: blockDim is a multiple of 32 */
#pragma unroll
    for (b = 0; b < POLOPT_CUDA_MAX_BATCH; ++b) {
        polopt_cuda_lse st;
        int off;
        if (b >= n) break;
        st = polopt_cuda_lse_of(a < P ? acc[b] * inv_t : -INFINITY);
        for (off = POLOPT_CUDA_TILE / 2; off > 0; off /= 2) {
            polopt_cuda_lse o;
            o.m = __shfl_xor_sync(0xffffffffu, st.m, off);
            o.s = __shfl_xor_sync(0xffffffffu, st.s, off);
            st = polopt_cuda_lse_merge(st, o);
        }
        if (lane == 0) tile_m[(size_t)b * n_tiles + tile] = st.m, tile_s[(size_t)b * n_tiles + tile] = st.s;
    }
}

/* An inclusive scan of one double per thread across a block of blockDim (a multiple of 32, <= 1024) threads;
   warp_sums: 32 doubles of shared memory.  Every thread of the block must call it. */
__device__ static double polopt_cuda__block_scan(double x, double *warp_sums)
{
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    unsigned off;
    for (off = 1; off < 32; off *= 2) {
        const double y = __shfl_up_sync(0xffffffffu, x, off);
        if (lane >= off) x += y;
    }
    if (lane == 31) warp_sums[warp] = x;
    __syncthreads();
    if (warp == 0) {
        double w = lane < warps ? warp_sums[lane] : 0.0;
        for (off = 1; off < 32; off *= 2) {
            const double y = __shfl_up_sync(0xffffffffu, w, off);
            if (lane >= off) w += y;
        }
        warp_sums[lane] = w;
    }
    __syncthreads();
    if (warp > 0) x += warp_sums[warp - 1];
    __syncthreads(); /* warp_sums may be reused at once */
    return x;
}

/* Kernel B: one block per context.  M = the largest score; the tiles' weights w_t = s_t exp(m_t - M) summed into
   prefix (double: a million tiles of float sums would lose the small ones); log Z = M + log(total). */
__global__ static void polopt_cuda__tile_prefix(size_t n_tiles, const float *tile_m, const float *tile_s,
                                                double *prefix, float *max_score, double *log_z)
{
    __shared__ double warp_sums[32];
    __shared__ float warp_max[32];
    __shared__ double carry;
    const size_t b = blockIdx.x;
    const float *m = tile_m + b * n_tiles, *s = tile_s + b * n_tiles;
    double *out = prefix + b * n_tiles;
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float mx = -INFINITY, M;
    size_t base, t;
    unsigned off;
    for (t = threadIdx.x; t < n_tiles; t += blockDim.x)
        if (s[t] > 0.0f) mx = fmaxf(mx, m[t]);
    for (off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (lane == 0) warp_max[warp] = mx;
    if (threadIdx.x == 0) carry = 0.0;
    __syncthreads();
    M = warp_max[0];
    for (off = 1; off < blockDim.x / 32; ++off) M = fmaxf(M, warp_max[off]);
    for (base = 0; base < n_tiles; base += blockDim.x) {
        const size_t i = base + threadIdx.x;
        const double w = i < n_tiles && s[i] > 0.0f ? (double)s[i] * exp((double)m[i] - (double)M) : 0.0;
        const double c = polopt_cuda__block_scan(w, warp_sums) + carry;
        if (i < n_tiles) out[i] = c;
        __syncthreads();
        if (threadIdx.x == blockDim.x - 1) carry = c;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        max_score[b] = M;
        log_z[b] = (double)M + log(carry);
    }
}

/* Kernel C: one warp per draw.  Lane 0 finds the tile by the inverse CDF over the tiles' cumulative weights; the
   warp rescores the tile's 32 items, scans their weights exp(f - M) and takes the first lane whose running sum
   passes the remainder (polopt_cuda_pick). */
__global__ static void polopt_cuda__draw(const float *beta, size_t P, size_t L, const float *H, size_t n, size_t S,
                                         float inv_t, size_t n_tiles, const double *prefix, const float *max_score,
                                         uint64_t seed, uint64_t counter0, uint32_t *ids)
{
    const size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const unsigned lane = threadIdx.x % 32;
    size_t b, tile = 0, a;
    double r = 0.0, e, c;
    unsigned off, hit, pick;
    if (w >= n * S) return; /* whole warps */
    b = w / S;
    if (lane == 0) {
        const double *pre = prefix + b * n_tiles;
        const double target = polopt_cuda_uniform(seed, counter0 + w) * pre[n_tiles - 1];
        tile = polopt_cuda_search(n_tiles, pre, target);
        r = target - (tile ? pre[tile - 1] : 0.0);
    }
    tile = (size_t)__shfl_sync(0xffffffffu, (unsigned long long)tile, 0);
    r = __shfl_sync(0xffffffffu, r, 0);
    a = tile * POLOPT_CUDA_TILE + lane;
    e = a < P ? exp((double)(polopt_cuda__dot(beta + a * L, H + b * L, L) * inv_t) - (double)max_score[b]) : 0.0;
    c = e;
    for (off = 1; off < 32; off *= 2) {
        const double y = __shfl_up_sync(0xffffffffu, c, off);
        if (lane >= off) c += y;
    }
    hit = __ballot_sync(0xffffffffu, c > r && e > 0.0);
    pick = hit ? (unsigned)__ffs(hit) - 1 : 31u - (unsigned)__clz(__ballot_sync(0xffffffffu, e > 0.0));
    if (lane == 0) ids[w] = (uint32_t)(tile * POLOPT_CUDA_TILE + pick);
}

/* ---- the sampler */

POLOPT_DEF void polopt_cuda_sampler_free(polopt_cuda_sampler *smp)
{
    if (!smp) return;
    polopt_cuda__free(&smp->hooks, smp->H);
    polopt_cuda__free(&smp->hooks, smp->ids);
    polopt_cuda__free(&smp->hooks, smp->log_z);
    polopt_cuda__free(&smp->hooks, smp->tile_m);
    polopt_cuda__free(&smp->hooks, smp->tile_s);
    polopt_cuda__free(&smp->hooks, smp->prefix);
    polopt_cuda__free(&smp->hooks, smp->max_score);
    memset(smp, 0, sizeof *smp);
}

POLOPT_DEF polopt_result polopt_cuda_sampler_init(polopt_cuda_sampler *smp,
                                                             const polopt_cuda_catalogue *cat, size_t batch, size_t S,
                                                             float temperature, uint64_t seed,
                                                             const polopt_cuda_hooks *hooks)
{
    static const char *fn = "polopt_cuda_sampler_init";
    polopt_result rc = POLOPT_OK;
    size_t nt;
    if (!smp) return POLOPT_ERR_INVALID_ARG;
    memset(smp, 0, sizeof *smp);
    smp->hooks = hooks ? *hooks : cat ? cat->hooks : polopt_cuda__no_hooks;
    if (!cat || !cat->beta)
        return polopt_cuda__fail(&smp->err, &smp->hooks, POLOPT_ERR_INVALID_ARG, "%s: no catalogue", fn);
    if (batch < 1 || batch > POLOPT_CUDA_MAX_BATCH || S < 1 || batch * cat->dim > 12288 ||
        !(temperature >= 1.0f / FLT_MAX && temperature <= FLT_MAX) || S > SIZE_MAX / POLOPT_CUDA_MAX_BATCH / 32)
        return polopt_cuda__fail(&smp->err, &smp->hooks, POLOPT_ERR_INVALID_ARG,
                                 "%s: batch = %lu (1 .. %d, and batch x L <= 12288), S = %lu (>= 1), temperature = %g",
                                 fn, (unsigned long)batch, POLOPT_CUDA_MAX_BATCH, (unsigned long)S,
                                 (double)temperature);
    nt = (cat->n + POLOPT_CUDA_TILE - 1) / POLOPT_CUDA_TILE;
    smp->cat = cat, smp->batch = batch, smp->S = S, smp->n_tiles = nt;
    smp->temperature = temperature, smp->seed = seed;
#define POLOPT_CUDA__GET(field, count, type)                                                                      \
    if (rc == POLOPT_OK)                                                                                          \
        rc = polopt_cuda__alloc_array((void **)&smp->field, count, sizeof(type), &smp->err, &smp->hooks, fn, #field);
    POLOPT_CUDA__GET(H, batch * cat->dim, float)
    POLOPT_CUDA__GET(ids, batch * S, uint32_t)
    POLOPT_CUDA__GET(log_z, batch, double)
    POLOPT_CUDA__GET(tile_m, batch * nt, float)
    POLOPT_CUDA__GET(tile_s, batch * nt, float)
    POLOPT_CUDA__GET(prefix, batch * nt, double)
    POLOPT_CUDA__GET(max_score, batch, float)
#undef POLOPT_CUDA__GET
    if (rc != POLOPT_OK) {
        const polopt_error keep = smp->err;
        polopt_cuda_sampler_free(smp);
        smp->err = keep;
    }
    return rc;
}

POLOPT_DEF polopt_result polopt_cuda_sample(polopt_cuda_sampler *smp, size_t n, const float *H,
                                                       polopt_cuda_stream stream)
{
    static const char *fn = "polopt_cuda_sample";
    const cudaStream_t st = (cudaStream_t)stream;
    size_t P, L, blocks;
    float inv_t;
    if (!smp) return POLOPT_ERR_INVALID_ARG;
    if (!smp->ids) return polopt_cuda__fail(&smp->err, &smp->hooks, POLOPT_ERR_INVALID_ARG, "%s: not initialised", fn);
    if (n < 1 || n > smp->batch || !H)
        return polopt_cuda__fail(&smp->err, &smp->hooks, POLOPT_ERR_INVALID_ARG, "%s: n = %lu of batch %lu, H %s", fn,
                                 (unsigned long)n, (unsigned long)smp->batch, H ? "given" : "NULL");
    P = smp->cat->n, L = smp->cat->dim, inv_t = 1.0f / smp->temperature;
    blocks = (P + 255) / 256;
    polopt_cuda__tile_states<<<(unsigned)blocks, 256, n * L * sizeof(float), st>>>(
        smp->cat->beta, P, L, H, (int)n, inv_t, smp->n_tiles, smp->tile_m, smp->tile_s);
    polopt_cuda__tile_prefix<<<(unsigned)n, 1024, 0, st>>>(smp->n_tiles, smp->tile_m, smp->tile_s, smp->prefix,
                                                           smp->max_score, smp->log_z);
    blocks = (n * smp->S + 7) / 8; /* 8 warps of 32 threads a block, one draw a warp */
    polopt_cuda__draw<<<(unsigned)blocks, 256, 0, st>>>(smp->cat->beta, P, L, H, n, smp->S, inv_t, smp->n_tiles,
                                                        smp->prefix, smp->max_score, smp->seed,
                                                        smp->calls * smp->batch * smp->S, smp->ids);
    smp->calls += 1;
    return polopt_cuda__check(cudaGetLastError(), &smp->err, &smp->hooks, fn, "a kernel launch");
}

/* ---- the covariance gradient */

/* A block-wide reduction: every thread's (m, s) state merged, the result in every thread. */
__device__ static polopt_cuda_lse polopt_cuda__block_lse(polopt_cuda_lse st, polopt_cuda_lse *shared32)
{
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    unsigned off;
    for (off = 16; off > 0; off /= 2) {
        polopt_cuda_lse o;
        o.m = __shfl_xor_sync(0xffffffffu, st.m, off);
        o.s = __shfl_xor_sync(0xffffffffu, st.s, off);
        st = polopt_cuda_lse_merge(st, o);
    }
    if (lane == 0) shared32[warp] = st;
    __syncthreads();
    st = shared32[0];
    for (off = 1; off < warps; ++off) st = polopt_cuda_lse_merge(st, shared32[off]);
    __syncthreads();
    return st;
}

/* A block-wide sum of doubles, the result in every thread. */
__device__ static double polopt_cuda__block_sum(double x, double *shared32)
{
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    unsigned off;
    for (off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
    if (lane == 0) shared32[warp] = x;
    __syncthreads();
    x = 0.0;
    for (off = 0; off < warps; ++off) x += shared32[off];
    __syncthreads();
    return x;
}

/* One block per context: the weights' normaliser, r_bar, then each coordinate l of g summed over the draws (the
   threads read a row of beta together: coalesced). */
__global__ static void polopt_cuda__gradient(const float *beta, size_t L, size_t S, const uint32_t *ids,
                                             const float *log_w, const float *rewards, float scale, float *out_g,
                                             double *out_value)
{
    extern __shared__ float polopt_cuda__shared_c[]; /* S coefficients w_bar_s (r_s - r_bar) scale */
    __shared__ polopt_cuda_lse lse32[32];
    __shared__ double sum32[32];
    const size_t b = blockIdx.x;
    const uint32_t *a = ids + b * S;
    const float *lw = log_w ? log_w + b * S : NULL, *r = rewards + b * S;
    polopt_cuda_lse st = polopt_cuda_lse_of(-INFINITY);
    double z, r_bar = 0.0;
    size_t s, l;
    for (s = threadIdx.x; s < S; s += blockDim.x) st = polopt_cuda_lse_merge(st, polopt_cuda_lse_of(lw ? lw[s] : 0.0f));
    st = polopt_cuda__block_lse(st, lse32);
    z = (double)st.s;
    for (s = threadIdx.x; s < S; s += blockDim.x) {
        const double w = exp((double)(lw ? lw[s] : 0.0f) - (double)st.m) / z;
        polopt_cuda__shared_c[s] = (float)w;
        r_bar += w * (double)r[s];
    }
    r_bar = polopt_cuda__block_sum(r_bar, sum32);
    for (s = threadIdx.x; s < S; s += blockDim.x)
        polopt_cuda__shared_c[s] = (float)((double)polopt_cuda__shared_c[s] * ((double)r[s] - r_bar) * scale);
    __syncthreads();
    for (l = threadIdx.x; l < L; l += blockDim.x) {
        float acc = 0.0f;
        for (s = 0; s < S; ++s) acc = fmaf(polopt_cuda__shared_c[s], beta[(size_t)a[s] * L + l], acc);
        out_g[b * L + l] = acc;
    }
    if (out_value && threadIdx.x == 0) out_value[b] = r_bar;
}

POLOPT_DEF polopt_result polopt_cuda_gradient(const polopt_cuda_catalogue *cat, size_t n, size_t S,
                                              const uint32_t *ids, const float *log_w, const float *rewards,
                                              float temperature, float *out_g, double *out_value,
                                              polopt_cuda_stream stream, polopt_error *out_err)
{
    static const char *fn = "polopt_cuda_gradient";
    const polopt_cuda_hooks *h = cat ? &cat->hooks : NULL;
    float scale;
    if (!cat || !cat->beta) return polopt_cuda__fail(out_err, h, POLOPT_ERR_INVALID_ARG, "%s: no catalogue", fn);
    if (n < 1 || n > 65535 || S < 1 || S > 12000 || (!log_w && S < 2) || !ids || !rewards || !out_g ||
        !(temperature >= 1.0f / FLT_MAX && temperature <= FLT_MAX))
        return polopt_cuda__fail(out_err, h, POLOPT_ERR_INVALID_ARG, "%s: n = %lu (1 .. 65535), S = %lu (1 .. 12000; "
                                 ">= 2 for equal weights), temperature = %g, ids, rewards and out_g are required", fn,
                                 (unsigned long)n, (unsigned long)S, (double)temperature);
    scale = (float)((log_w ? 1.0 : (double)S / (double)(S - 1)) / (double)temperature);
    polopt_cuda__gradient<<<(unsigned)n, 256, S * sizeof(float), (cudaStream_t)stream>>>(
        cat->beta, cat->dim, S, ids, log_w, rewards, scale, out_g, out_value);
    return polopt_cuda__check(cudaGetLastError(), out_err, h, fn, "a kernel launch");
}

/* ---- the exact value and gradient */

#define POLOPT_CUDA__EXACT_CHUNK 32     /* items whose weights a block forms at once */
#define POLOPT_CUDA__EXACT_MAX_L 128
#define POLOPT_CUDA__EXACT_BLOCKS 1024  /* blocks of the mean-embedding pass (each takes a range of items) */

/* Pass 2: block k takes a range of items; for each chunk of 32 it loads their rows of beta, forms the weights
   w[b][i] = exp(f_b(a_i) - M_b) of every context, and each thread accumulates some (b, l) of sum_i w[b][i]
   beta_{a_i}[l].  The block's share goes to partial[k]. */
__global__ static void polopt_cuda__mean_partial(const float *beta, size_t P, size_t L, const float *H, size_t n,
                                                 float inv_t, const float *max_score, size_t range, float *partial)
{
    __shared__ float sb[POLOPT_CUDA__EXACT_CHUNK * POLOPT_CUDA__EXACT_MAX_L];
    __shared__ float sh[POLOPT_CUDA_MAX_BATCH * POLOPT_CUDA__EXACT_MAX_L];
    __shared__ float sw[POLOPT_CUDA_MAX_BATCH * POLOPT_CUDA__EXACT_CHUNK];
    const size_t lo = (size_t)blockIdx.x * range, hi = lo + range < P ? lo + range : P, outputs = n * L;
    float acc[(POLOPT_CUDA_MAX_BATCH * POLOPT_CUDA__EXACT_MAX_L + 255) / 256];
    size_t i, base, o, k;
    for (i = threadIdx.x; i < n * L; i += blockDim.x) sh[i] = H[i];
    for (k = 0; k < sizeof acc / sizeof acc[0]; ++k) acc[k] = 0.0f;
    __syncthreads();
    for (base = lo; base < hi; base += POLOPT_CUDA__EXACT_CHUNK) {
        const size_t m = hi - base < POLOPT_CUDA__EXACT_CHUNK ? hi - base : POLOPT_CUDA__EXACT_CHUNK;
        for (i = threadIdx.x; i < m * L; i += blockDim.x) sb[i] = beta[base * L + i];
        __syncthreads();
        for (i = threadIdx.x; i < n * POLOPT_CUDA__EXACT_CHUNK; i += blockDim.x) {
            const size_t b = i / POLOPT_CUDA__EXACT_CHUNK, j = i % POLOPT_CUDA__EXACT_CHUNK;
            sw[i] = j < m ? expf(polopt_cuda__dot(sb + j * L, sh + b * L, L) * inv_t - max_score[b]) : 0.0f;
        }
        __syncthreads();
        for (o = threadIdx.x, k = 0; o < outputs; o += blockDim.x, ++k) {
            const size_t b = o / L, l = o % L;
            float s = acc[k];
            for (i = 0; i < m; ++i) s = fmaf(sw[b * POLOPT_CUDA__EXACT_CHUNK + i], sb[i * L + l], s);
            acc[k] = s;
        }
        __syncthreads();
    }
    for (o = threadIdx.x, k = 0; o < outputs; o += blockDim.x, ++k) partial[(size_t)blockIdx.x * outputs + o] = acc[k];
}

/* Pass 2's end: the blocks' shares summed in double and divided by Z / e^M (the prefix's total). */
__global__ static void polopt_cuda__mean_reduce(size_t n_blocks, size_t outputs, size_t L, const float *partial,
                                                const double *prefix, size_t n_tiles, float *beta_bar)
{
    const size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    double s = 0.0;
    size_t k;
    if (o >= outputs) return;
    for (k = 0; k < n_blocks; ++k) s += (double)partial[k * outputs + o];
    beta_bar[o] = (float)(s / prefix[(o / L) * n_tiles + n_tiles - 1]);
}

/* Pass 3: one block per context, the sums over its listed rewards: c_k = pi(a_k) r_k for a chunk of them (one a
   thread), then V += sum c_k and each coordinate l of sum c_k beta_{a_k}; O(|rewards| L).  blockDim 128. */
__global__ static void polopt_cuda__sparse_value(const float *beta, size_t L, const float *H, float inv_t,
                                                 const double *log_z, const float *beta_bar, const uint32_t *offsets,
                                                 const uint32_t *items, const float *rewards, double *value,
                                                 float *grad)
{
    __shared__ double c[128], sum32[32];
    __shared__ uint32_t a[128];
    const size_t b = blockIdx.x, first = offsets[b], last = offsets[b + 1];
    double v = 0.0, g[POLOPT_CUDA__EXACT_MAX_L / 128];
    size_t base, k, l, j;
    for (j = 0; j < sizeof g / sizeof g[0]; ++j) g[j] = 0.0;
    for (base = first; base < last; base += blockDim.x) {
        const size_t m = last - base < blockDim.x ? last - base : blockDim.x;
        if (threadIdx.x < m) {
            k = base + threadIdx.x;
            a[threadIdx.x] = items[k];
            c[threadIdx.x] = exp((double)(polopt_cuda__dot(beta + (size_t)items[k] * L, H + b * L, L) * inv_t) -
                                 log_z[b]) * (double)rewards[k];
            v += c[threadIdx.x];
        }
        __syncthreads();
        for (l = threadIdx.x, j = 0; l < L; l += blockDim.x, ++j)
            for (k = 0; k < m; ++k) g[j] += c[k] * (double)beta[(size_t)a[k] * L + l];
        __syncthreads();
    }
    v = polopt_cuda__block_sum(v, sum32);
    for (l = threadIdx.x, j = 0; l < L; l += blockDim.x, ++j) /* (1/T) (sum_k c_k beta_k - V beta_bar) */
        grad[b * L + l] = (float)((g[j] - v * (double)beta_bar[b * L + l]) * (double)inv_t);
    if (threadIdx.x == 0) value[b] = v;
}

POLOPT_DEF void polopt_cuda_exact_free(polopt_cuda_exact *ex)
{
    if (!ex) return;
    polopt_cuda__free(&ex->hooks, ex->H);
    polopt_cuda__free(&ex->hooks, ex->log_z);
    polopt_cuda__free(&ex->hooks, ex->beta_bar);
    polopt_cuda__free(&ex->hooks, ex->value);
    polopt_cuda__free(&ex->hooks, ex->grad);
    polopt_cuda__free(&ex->hooks, ex->tile_m);
    polopt_cuda__free(&ex->hooks, ex->tile_s);
    polopt_cuda__free(&ex->hooks, ex->max_score);
    polopt_cuda__free(&ex->hooks, ex->prefix);
    polopt_cuda__free(&ex->hooks, ex->partial);
    memset(ex, 0, sizeof *ex);
}

POLOPT_DEF polopt_result polopt_cuda_exact_init(polopt_cuda_exact *ex, const polopt_cuda_catalogue *cat, size_t batch,
                                                float temperature, const polopt_cuda_hooks *hooks)
{
    static const char *fn = "polopt_cuda_exact_init";
    polopt_result rc = POLOPT_OK;
    size_t nt, L;
    if (!ex) return POLOPT_ERR_INVALID_ARG;
    memset(ex, 0, sizeof *ex);
    ex->hooks = hooks ? *hooks : cat ? cat->hooks : polopt_cuda__no_hooks;
    if (!cat || !cat->beta)
        return polopt_cuda__fail(&ex->err, &ex->hooks, POLOPT_ERR_INVALID_ARG, "%s: no catalogue", fn);
    L = cat->dim;
    if (batch < 1 || batch > POLOPT_CUDA_MAX_BATCH || L > POLOPT_CUDA__EXACT_MAX_L ||
        !(temperature >= 1.0f / FLT_MAX && temperature <= FLT_MAX))
        return polopt_cuda__fail(&ex->err, &ex->hooks, POLOPT_ERR_INVALID_ARG,
                                 "%s: batch = %lu (1 .. %d), L = %lu (at most %d), temperature = %g", fn,
                                 (unsigned long)batch, POLOPT_CUDA_MAX_BATCH, (unsigned long)L,
                                 POLOPT_CUDA__EXACT_MAX_L, (double)temperature);
    nt = (cat->n + POLOPT_CUDA_TILE - 1) / POLOPT_CUDA_TILE;
    ex->cat = cat, ex->batch = batch, ex->n_tiles = nt, ex->temperature = temperature;
    ex->n_blocks = cat->n < POLOPT_CUDA__EXACT_BLOCKS * POLOPT_CUDA__EXACT_CHUNK
                       ? (cat->n + POLOPT_CUDA__EXACT_CHUNK - 1) / POLOPT_CUDA__EXACT_CHUNK
                       : POLOPT_CUDA__EXACT_BLOCKS;
#define POLOPT_CUDA__GET(field, count, type)                                                                      \
    if (rc == POLOPT_OK)                                                                                          \
        rc = polopt_cuda__alloc_array((void **)&ex->field, count, sizeof(type), &ex->err, &ex->hooks, fn, #field);
    POLOPT_CUDA__GET(H, batch * L, float)
    POLOPT_CUDA__GET(log_z, batch, double)
    POLOPT_CUDA__GET(beta_bar, batch * L, float)
    POLOPT_CUDA__GET(value, batch, double)
    POLOPT_CUDA__GET(grad, batch * L, float)
    POLOPT_CUDA__GET(tile_m, batch * nt, float)
    POLOPT_CUDA__GET(tile_s, batch * nt, float)
    POLOPT_CUDA__GET(max_score, batch, float)
    POLOPT_CUDA__GET(prefix, batch * nt, double)
    POLOPT_CUDA__GET(partial, ex->n_blocks * batch * L, float)
#undef POLOPT_CUDA__GET
    if (rc != POLOPT_OK) {
        const polopt_error keep = ex->err;
        polopt_cuda_exact_free(ex);
        ex->err = keep;
    }
    return rc;
}

POLOPT_DEF polopt_result polopt_cuda_exact_run(polopt_cuda_exact *ex, size_t n, const float *H,
                                               const uint32_t *offsets, const uint32_t *items, const float *rewards,
                                               polopt_cuda_stream stream)
{
    static const char *fn = "polopt_cuda_exact_run";
    const cudaStream_t st = (cudaStream_t)stream;
    size_t P, L, range;
    float inv_t;
    if (!ex) return POLOPT_ERR_INVALID_ARG;
    if (!ex->H) return polopt_cuda__fail(&ex->err, &ex->hooks, POLOPT_ERR_INVALID_ARG, "%s: not initialised", fn);
    if (n < 1 || n > ex->batch || !H || !offsets || !items || !rewards)
        return polopt_cuda__fail(&ex->err, &ex->hooks, POLOPT_ERR_INVALID_ARG, "%s: n = %lu of batch %lu; H, offsets, "
                                 "items and rewards are required", fn, (unsigned long)n, (unsigned long)ex->batch);
    P = ex->cat->n, L = ex->cat->dim, inv_t = 1.0f / ex->temperature;
    range = (P + ex->n_blocks - 1) / ex->n_blocks;
    range = (range + POLOPT_CUDA__EXACT_CHUNK - 1) / POLOPT_CUDA__EXACT_CHUNK * POLOPT_CUDA__EXACT_CHUNK;
    polopt_cuda__tile_states<<<(unsigned)((P + 255) / 256), 256, n * L * sizeof(float), st>>>(
        ex->cat->beta, P, L, H, (int)n, inv_t, ex->n_tiles, ex->tile_m, ex->tile_s);
    polopt_cuda__tile_prefix<<<(unsigned)n, 1024, 0, st>>>(ex->n_tiles, ex->tile_m, ex->tile_s, ex->prefix,
                                                           ex->max_score, ex->log_z);
    polopt_cuda__mean_partial<<<(unsigned)ex->n_blocks, 256, 0, st>>>(ex->cat->beta, P, L, H, n, inv_t, ex->max_score,
                                                                      range, ex->partial);
    polopt_cuda__mean_reduce<<<(unsigned)((n * L + 255) / 256), 256, 0, st>>>(ex->n_blocks, n * L, L, ex->partial,
                                                                              ex->prefix, ex->n_tiles, ex->beta_bar);
    polopt_cuda__sparse_value<<<(unsigned)n, 128, 0, st>>>(ex->cat->beta, L, H, inv_t, ex->log_z, ex->beta_bar,
                                                           offsets, items, rewards, ex->value, ex->grad);
    return polopt_cuda__check(cudaGetLastError(), &ex->err, &ex->hooks, fn, "a kernel launch");
}

/* ---- top-K */

/* Sort the block's POLOPT_CUDA__SORT_N (score, id) pairs in shared memory best first (a bitonic network; blockDim
   1024, two pairs a thread). */
__device__ static void polopt_cuda__bitonic(float *s, uint32_t *id)
{
    unsigned k, j, i;
    for (k = 2; k <= POLOPT_CUDA__SORT_N; k *= 2)
        for (j = k / 2; j > 0; j /= 2) {
            for (i = threadIdx.x; i < POLOPT_CUDA__SORT_N; i += blockDim.x) {
                const unsigned p = i ^ j;
                if (p > i) {
                    const int first_better = polopt_cuda_better(s[i], id[i], s[p], id[p]);
                    if ((i & k) == 0 ? !first_better : first_better) {
                        const float ts = s[i];
                        const uint32_t ti = id[i];
                        s[i] = s[p], id[i] = id[p];
                        s[p] = ts, id[p] = ti;
                    }
                }
            }
            __syncthreads();
        }
}

/* First pass: block (range, context) scores items [range * RANGE, ...) in rounds of 1024, one a thread; an item
   better than the current K-th waits in slots K .. SORT_N of the buffer, and the buffer is sorted when the next
   round could overflow it or at the end.  Writes the range's best K, best first. */
__global__ static void polopt_cuda__topk_ranges(const float *beta, size_t P, size_t L, const float *H, size_t K,
                                                size_t range, size_t n_ranges, float *out_s, uint32_t *out_id)
{
    __shared__ float s[POLOPT_CUDA__SORT_N];
    __shared__ uint32_t id[POLOPT_CUDA__SORT_N];
    __shared__ unsigned waiting;
    const size_t r = blockIdx.x, b = blockIdx.y, lo = r * range, hi = lo + range < P ? lo + range : P;
    const float *h = H + b * L;
    const unsigned room = (unsigned)(POLOPT_CUDA__SORT_N - K);
    size_t base, i;
    for (i = threadIdx.x; i < POLOPT_CUDA__SORT_N; i += blockDim.x) s[i] = -INFINITY, id[i] = UINT32_MAX;
    if (threadIdx.x == 0) waiting = 0;
    __syncthreads();
    for (base = lo; base < hi; base += blockDim.x) {
        const size_t a = base + threadIdx.x;
        const float kth_s = s[K - 1];
        const uint32_t kth_id = id[K - 1];
        __syncthreads(); /* everyone has read the K-th before anyone writes */
        if (a < hi) {
            const float f = polopt_cuda__dot(beta + a * L, h, L);
            if (polopt_cuda_better(f, (uint32_t)a, kth_s, kth_id)) {
                const unsigned at = atomicAdd(&waiting, 1u);
                s[K + at] = f, id[K + at] = (uint32_t)a;
            }
        }
        __syncthreads();
        if (waiting + blockDim.x > room || base + blockDim.x >= hi) {
            for (i = K + waiting + threadIdx.x; i < POLOPT_CUDA__SORT_N; i += blockDim.x)
                s[i] = -INFINITY, id[i] = UINT32_MAX;
            __syncthreads();
            polopt_cuda__bitonic(s, id);
            if (threadIdx.x == 0) waiting = 0;
            __syncthreads();
        }
    }
    for (i = threadIdx.x; i < K; i += blockDim.x) {
        out_s[(b * n_ranges + r) * K + i] = s[i];
        out_id[(b * n_ranges + r) * K + i] = id[i];
    }
}

/* A merge round: lists 2j and 2j + 1 of each context (K entries each, best first) into list j. */
__global__ static void polopt_cuda__topk_pairs(const float *in_s, const uint32_t *in_id, size_t n_lists, size_t K,
                                               float *out_s, uint32_t *out_id, size_t n_out)
{
    __shared__ float s[POLOPT_CUDA__SORT_N];
    __shared__ uint32_t id[POLOPT_CUDA__SORT_N];
    const size_t j = blockIdx.x, b = blockIdx.y, first = 2 * j, have = first + 1 < n_lists ? 2 : 1;
    size_t i;
    for (i = threadIdx.x; i < POLOPT_CUDA__SORT_N; i += blockDim.x) {
        const int real = i < have * K;
        s[i] = real ? in_s[(b * n_lists + first) * K + i] : -INFINITY;
        id[i] = real ? in_id[(b * n_lists + first) * K + i] : UINT32_MAX;
    }
    __syncthreads();
    polopt_cuda__bitonic(s, id);
    for (i = threadIdx.x; i < K; i += blockDim.x) {
        out_s[(b * n_out + j) * K + i] = s[i];
        out_id[(b * n_out + j) * K + i] = id[i];
    }
}

POLOPT_DEF void polopt_cuda_topk_free(polopt_cuda_topk *tk)
{
    int k;
    if (!tk) return;
    polopt_cuda__free(&tk->hooks, tk->H);
    polopt_cuda__free(&tk->hooks, tk->ids);
    polopt_cuda__free(&tk->hooks, tk->scores);
    for (k = 0; k < 2; ++k) polopt_cuda__free(&tk->hooks, tk->cand_score[k]), polopt_cuda__free(&tk->hooks, tk->cand_id[k]);
    memset(tk, 0, sizeof *tk);
}

POLOPT_DEF polopt_result polopt_cuda_topk_init(polopt_cuda_topk *tk, const polopt_cuda_catalogue *cat,
                                                          size_t batch, size_t K, const polopt_cuda_hooks *hooks)
{
    static const char *fn = "polopt_cuda_topk_init";
    polopt_result rc = POLOPT_OK;
    size_t cand;
    int k;
    if (!tk) return POLOPT_ERR_INVALID_ARG;
    memset(tk, 0, sizeof *tk);
    tk->hooks = hooks ? *hooks : cat ? cat->hooks : polopt_cuda__no_hooks;
    if (!cat || !cat->beta)
        return polopt_cuda__fail(&tk->err, &tk->hooks, POLOPT_ERR_INVALID_ARG, "%s: no catalogue", fn);
    if (batch < 1 || batch > POLOPT_CUDA_MAX_BATCH || K < 1 || K > POLOPT_CUDA_MAX_K || K > cat->n)
        return polopt_cuda__fail(&tk->err, &tk->hooks, POLOPT_ERR_INVALID_ARG,
                                 "%s: batch = %lu (1 .. %d), K = %lu (1 .. min(P = %lu, %d))", fn,
                                 (unsigned long)batch, POLOPT_CUDA_MAX_BATCH, (unsigned long)K,
                                 (unsigned long)cat->n, POLOPT_CUDA_MAX_K);
    tk->cat = cat, tk->batch = batch, tk->K = K, tk->range = POLOPT_CUDA__RANGE;
    tk->n_ranges = (cat->n + tk->range - 1) / tk->range;
    cand = batch * tk->n_ranges * K;
    rc = polopt_cuda__alloc_array((void **)&tk->H, batch * cat->dim, sizeof(float), &tk->err, &tk->hooks, fn, "H");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__alloc_array((void **)&tk->ids, batch * K, sizeof(uint32_t), &tk->err, &tk->hooks, fn, "ids");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__alloc_array((void **)&tk->scores, batch * K, sizeof(float), &tk->err, &tk->hooks, fn,
                                      "scores");
    for (k = 0; k < 2 && rc == POLOPT_OK; ++k) {
        rc = polopt_cuda__alloc_array((void **)&tk->cand_score[k], cand, sizeof(float), &tk->err, &tk->hooks, fn,
                                      "candidate scores");
        if (rc == POLOPT_OK)
            rc = polopt_cuda__alloc_array((void **)&tk->cand_id[k], cand, sizeof(uint32_t), &tk->err, &tk->hooks, fn,
                                          "candidate ids");
    }
    if (rc != POLOPT_OK) {
        const polopt_error keep = tk->err;
        polopt_cuda_topk_free(tk);
        tk->err = keep;
    }
    return rc;
}

POLOPT_DEF polopt_result polopt_cuda_topk_run(polopt_cuda_topk *tk, size_t n, const float *H,
                                                         polopt_cuda_stream stream)
{
    static const char *fn = "polopt_cuda_topk_run";
    const cudaStream_t st = (cudaStream_t)stream;
    size_t lists, cur = 0;
    dim3 grid;
    polopt_result rc;
    if (!tk) return POLOPT_ERR_INVALID_ARG;
    if (!tk->ids) return polopt_cuda__fail(&tk->err, &tk->hooks, POLOPT_ERR_INVALID_ARG, "%s: not initialised", fn);
    if (n < 1 || n > tk->batch || !H)
        return polopt_cuda__fail(&tk->err, &tk->hooks, POLOPT_ERR_INVALID_ARG, "%s: n = %lu of batch %lu, H %s", fn,
                                 (unsigned long)n, (unsigned long)tk->batch, H ? "given" : "NULL");
    grid = dim3((unsigned)tk->n_ranges, (unsigned)n, 1);
    polopt_cuda__topk_ranges<<<grid, 1024, 0, st>>>(tk->cat->beta, tk->cat->n, tk->cat->dim, H, tk->K, tk->range,
                                                    tk->n_ranges, tk->cand_score[0], tk->cand_id[0]);
    for (lists = tk->n_ranges; lists > 1; lists = (lists + 1) / 2, cur ^= 1) {
        grid = dim3((unsigned)((lists + 1) / 2), (unsigned)n, 1);
        polopt_cuda__topk_pairs<<<grid, 1024, 0, st>>>(tk->cand_score[cur], tk->cand_id[cur], lists, tk->K,
                                                       tk->cand_score[cur ^ 1], tk->cand_id[cur ^ 1], (lists + 1) / 2);
    }
    rc = polopt_cuda__check(cudaGetLastError(), &tk->err, &tk->hooks, fn, "a kernel launch");
    if (rc == POLOPT_OK) /* one list per context left: the result */
        rc = polopt_cuda__check(cudaMemcpyAsync(tk->scores, tk->cand_score[cur], n * tk->K * sizeof(float),
                                                cudaMemcpyDeviceToDevice, st), &tk->err, &tk->hooks, fn, "a copy");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__check(cudaMemcpyAsync(tk->ids, tk->cand_id[cur], n * tk->K * sizeof(uint32_t),
                                                cudaMemcpyDeviceToDevice, st), &tk->err, &tk->hooks, fn, "a copy");
    return rc;
}

/* ---- Adam */

__global__ static void polopt_cuda__flag_nonfinite(size_t n, const float *g, int *bad)
{
    size_t i;
    for (i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (!(fabsf(g[i]) <= FLT_MAX)) *bad = 1;
}

__global__ static void polopt_cuda__adam(size_t n, polopt_cuda_adam_consts c, float *p, float *m, float *v,
                                         const float *g, const int *bad)
{
    size_t i;
    if (*bad) return;
    for (i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        polopt_cuda_adam_element(&c, p + i, m + i, v + i, g[i]);
}

POLOPT_DEF void polopt_cuda_adam_free(polopt_cuda_adam *opt)
{
    if (!opt) return;
    polopt_cuda__free(&opt->hooks, opt->m);
    polopt_cuda__free(&opt->hooks, opt->v);
    polopt_cuda__free(&opt->hooks, opt->bad);
    memset(opt, 0, sizeof *opt);
}

POLOPT_DEF polopt_result polopt_cuda_adam_init(polopt_cuda_adam *opt, size_t n,
                                                          const polopt_adam_config *config,
                                                          const polopt_cuda_hooks *hooks)
{
    static const char *fn = "polopt_cuda_adam_init";
    polopt_adam probe;
    polopt_result rc;
    if (!opt) return POLOPT_ERR_INVALID_ARG;
    memset(opt, 0, sizeof *opt);
    opt->hooks = hooks ? *hooks : polopt_cuda__no_hooks;
    /* the host optimiser checks the config and n the same way; its message is ours */
    rc = polopt_adam_init(&probe, 1, config);
    if (rc != POLOPT_OK) return polopt_cuda__fail(&opt->err, &opt->hooks, rc, "%s", probe.err.message);
    opt->config = probe.config;
    polopt_adam_free(&probe);
    if (n == 0) return polopt_cuda__fail(&opt->err, &opt->hooks, POLOPT_ERR_INVALID_ARG, "%s: n = 0", fn);
    rc = polopt_cuda__alloc_array((void **)&opt->m, n, sizeof(float), &opt->err, &opt->hooks, fn, "m");
    if (rc == POLOPT_OK) rc = polopt_cuda__alloc_array((void **)&opt->v, n, sizeof(float), &opt->err, &opt->hooks, fn, "v");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__alloc_array((void **)&opt->bad, 1, sizeof(int), &opt->err, &opt->hooks, fn, "a flag");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__check(cudaMemset(opt->m, 0, n * sizeof(float)), &opt->err, &opt->hooks, fn, "cudaMemset");
    if (rc == POLOPT_OK)
        rc = polopt_cuda__check(cudaMemset(opt->v, 0, n * sizeof(float)), &opt->err, &opt->hooks, fn, "cudaMemset");
    if (rc != POLOPT_OK) {
        const polopt_error keep = opt->err;
        polopt_cuda_adam_free(opt);
        opt->err = keep;
        return rc;
    }
    opt->n = n;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_cuda_adam_step(polopt_cuda_adam *opt, float *params, const float *grad,
                                                          polopt_cuda_stream stream)
{
    static const char *fn = "polopt_cuda_adam_step";
    const cudaStream_t st = (cudaStream_t)stream;
    const polopt_adam_config *a;
    polopt_cuda_adam_consts c;
    const unsigned blocks = 1024;
    double bc1, bc2;
    int bad = 0;
    polopt_result rc;
    if (!opt) return POLOPT_ERR_INVALID_ARG;
    if (!opt->m) return polopt_cuda__fail(&opt->err, &opt->hooks, POLOPT_ERR_INVALID_ARG, "%s: not initialised", fn);
    if (!params || !grad)
        return polopt_cuda__fail(&opt->err, &opt->hooks, POLOPT_ERR_INVALID_ARG, "%s: params or grad is NULL", fn);
    a = &opt->config;
    bc1 = 1.0 - pow((double)a->beta1, (double)(opt->t + 1));
    bc2 = 1.0 - pow((double)a->beta2, (double)(opt->t + 1));
    c.beta1 = a->beta1, c.beta2 = a->beta2, c.eps = a->eps;
    c.step = (float)((double)a->lr / bc1);
    c.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    c.decay = 1.0f - a->lr * a->weight_decay;
    c.sign = a->maximize ? -1.0f : 1.0f;
    rc = polopt_cuda__check(cudaMemsetAsync(opt->bad, 0, sizeof(int), st), &opt->err, &opt->hooks, fn,
                            "cudaMemsetAsync");
    if (rc != POLOPT_OK) return rc;
    polopt_cuda__flag_nonfinite<<<blocks, 256, 0, st>>>(opt->n, grad, opt->bad);
    polopt_cuda__adam<<<blocks, 256, 0, st>>>(opt->n, c, params, opt->m, opt->v, grad, opt->bad);
    rc = polopt_cuda__check(cudaGetLastError(), &opt->err, &opt->hooks, fn, "a kernel launch");
    if (rc == POLOPT_OK) rc = polopt_cuda_download(&bad, opt->bad, sizeof(int), stream, &opt->err);
    if (rc != POLOPT_OK) return rc;
    if (bad)
        return polopt_cuda__fail(&opt->err, &opt->hooks, POLOPT_ERR_NONFINITE,
                                 "%s: a gradient entry is not finite; parameters and moments untouched", fn);
    opt->t += 1;
    return POLOPT_OK;
}

#endif /* POLOPT_CUDA_IMPLEMENTATION */
#endif /* POLOPT_CUDA_H */
