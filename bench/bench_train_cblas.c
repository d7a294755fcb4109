/* The CBLAS side of bench_train: a second, private copy of polopt (POLOPT_STATIC) compiled with POLOPT_USE_CBLAS,
   so REINFORCE can score the catalogue with OpenBLAS's sgemm in the same run as the built-in kernels.  Both copies
   share the header, hence the same struct layouts: the index and datasets built by bench_train.c are used here. */
#define _POSIX_C_SOURCE 199309L
#define POLOPT_STATIC
#define POLOPT_USE_CBLAS
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <time.h>

void openblas_set_num_threads(int n);

/* Wall milliseconds per REINFORCE step with CBLAS scoring, over one epoch of data (its contexts in minibatches). */
double bench_cblas_reinforce_ms(const polopt_policy *start, const polopt_mips *index, const polopt_dataset *data,
                                const polopt_train_config *config);

double bench_cblas_reinforce_ms(const polopt_policy *start, const polopt_mips *index, const polopt_dataset *data,
                                const polopt_train_config *config)
{
    polopt_policy policy;
    polopt_trainer tr;
    polopt_train_stats st = {0, 0, 0, 0, 0};
    polopt_train_config c = *config;
    size_t bytes = 0;
    unsigned char *buf;
    struct timespec t0, t1;
    double ms = -1.0;
    openblas_set_num_threads(1);
    /* a private copy of the starting policy, through a buffer (the two library copies share the file format) */
    polopt_policy_save_buffer(start, NULL, 0, &bytes);
    buf = (unsigned char *)malloc(bytes);
    if (!buf || polopt_policy_save_buffer(start, buf, bytes, &bytes) != POLOPT_OK ||
        polopt_policy_load_buffer(&policy, buf, bytes, NULL) != POLOPT_OK) {
        free(buf);
        return -1.0;
    }
    c.method = POLOPT_METHOD_REINFORCE;
    if (polopt_trainer_init(&tr, &policy, index, &c) == POLOPT_OK) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (polopt_trainer_epoch(&tr, data, &st) == POLOPT_OK) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ms = 1e3 * ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) / (double)st.steps;
        }
        polopt_trainer_free(&tr);
    }
    polopt_policy_free(&policy);
    free(buf);
    return ms;
}
