/* The CBLAS side of the benchmarks: a second, private copy of polopt (POLOPT_STATIC) compiled with
   POLOPT_USE_CBLAS, so the same library code runs with OpenBLAS's sgemm/sgemv in the same process as the built-in
   kernels: REINFORCE's scoring (bench_train) and the exact MIPS search (bench_mips: OpenBLAS's sgemm feeding the
   very same heaps).  Both copies share the header, hence the same struct layouts and file formats. */
#define _POSIX_C_SOURCE 199309L
#define POLOPT_STATIC
#define POLOPT_USE_CBLAS
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include "bench.h"

void openblas_set_num_threads(int n);

double bench_cblas_reinforce_ms(const polopt_policy *start, const polopt_mips *index, const polopt_dataset *data,
                                const polopt_trainer_config *config);
int bench_cblas_exact_open(size_t n, size_t dim, const float *vectors, size_t k);
double bench_cblas_exact_search(size_t n_queries, const float *queries, size_t k, uint32_t *out_ids);
void bench_cblas_exact_close(void);

/* Wall milliseconds per REINFORCE step with CBLAS scoring, over one epoch of data (its contexts in minibatches). */
double bench_cblas_reinforce_ms(const polopt_policy *start, const polopt_mips *index, const polopt_dataset *data,
                                const polopt_trainer_config *config)
{
    polopt_policy policy;
    polopt_trainer tr;
    polopt_train_stats st;
    polopt_trainer_config c = *config;
    size_t bytes = 0;
    unsigned char *buf;
    double t0, ms = -1.0;
    memset(&st, 0, sizeof st);
    openblas_set_num_threads(1);
    /* a private copy of the starting policy, through a buffer (the two library copies share the file format) */
    polopt_policy_save_buffer(start, NULL, 0, &bytes, NULL);
    buf = (unsigned char *)malloc(bytes);
    if (!buf || polopt_policy_save_buffer(start, buf, bytes, &bytes, NULL) != POLOPT_OK ||
        polopt_policy_load_buffer(&policy, buf, bytes, NULL) != POLOPT_OK) {
        free(buf);
        return -1.0;
    }
    c.estimator.method = POLOPT_METHOD_REINFORCE;
    if (polopt_trainer_init(&tr, &policy, index, &c) == POLOPT_OK) {
        t0 = bench_now();
        if (polopt_trainer_epoch(&tr, data, &st) == POLOPT_OK) ms = 1e3 * (bench_now() - t0) / (double)st.steps;
        polopt_trainer_free(&tr);
    }
    polopt_policy_free(&policy);
    free(buf);
    return ms;
}

/* An exact index over n borrowed vectors and its scratch (for searches of up to k results), in this copy. */
static polopt_mips exact_index;
static polopt_mips_scratch exact_scratch;

int bench_cblas_exact_open(size_t n, size_t dim, const float *vectors, size_t k)
{
    openblas_set_num_threads(1);
    if (polopt_mips_init_exact(&exact_index, n, dim, vectors, 0, NULL) != POLOPT_OK) return 0;
    if (polopt_mips_scratch_init(&exact_scratch, &exact_index, k, NULL) != POLOPT_OK) {
        polopt_mips_free(&exact_index);
        return 0;
    }
    return 1;
}

/* Seconds of one exact search of n_queries queries (rows of dim floats), k results each, ids into out_ids. */
double bench_cblas_exact_search(size_t n_queries, const float *queries, size_t k, uint32_t *out_ids)
{
    const double t0 = bench_now();
    if (polopt_mips_search_batch(&exact_index, &exact_scratch, n_queries, queries, exact_index.dim, k, 0, out_ids,
                                 NULL) != POLOPT_OK)
        return -1.0;
    return bench_now() - t0;
}

void bench_cblas_exact_close(void)
{
    polopt_mips_scratch_free(&exact_scratch);
    polopt_mips_free(&exact_index);
}
