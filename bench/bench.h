/* What every benchmark program shares: a wall clock and the median of repeated timings.  Include after defining
   _POSIX_C_SOURCE (clock_gettime). */
#ifndef POLOPT_BENCH_H
#define POLOPT_BENCH_H

#include <stdlib.h>
#include <time.h>

/* Wall-clock seconds. */
static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorts them). */
static inline double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

#endif
