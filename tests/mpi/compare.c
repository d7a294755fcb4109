/* Two policy files, theta compared entry by entry: the MPI test's check that data-parallel training on two ranks
   ends where one process does with the same global minibatches.  Prints "mpi: N passed, N failed".
   Usage: compare ONE.bin TWO.bin TOLERANCE */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    polopt_policy a, b;
    double worst = 0.0, largest = 0.0, tol;
    size_t i;
    int ok;
    if (argc != 4) {
        fprintf(stderr, "usage: compare ONE.bin TWO.bin TOLERANCE\n");
        return 2;
    }
    tol = atof(argv[3]);
    if (polopt_policy_load(&a, argv[1], NULL) != POLOPT_OK || polopt_policy_load(&b, argv[2], NULL) != POLOPT_OK) {
        printf("  FAIL cannot load %s or %s\nmpi: 0 passed, 1 failed\n", argv[1], argv[2]);
        return 1;
    }
    ok = a.D == b.D && a.L == b.L;
    for (i = 0; ok && i < a.D * a.L; ++i) {
        worst = fmax(worst, fabs((double)a.theta[i] - b.theta[i]));
        largest = fmax(largest, fabs((double)a.theta[i]));
    }
    ok = ok && worst <= tol;
    printf("    theta of %lu x %lu: largest entry %.4g, largest difference between 1 and 2 ranks %.3g (tolerance %.3g)\n",
           (unsigned long)a.D, (unsigned long)a.L, largest, worst, tol);
    if (!ok) printf("  FAIL the two runs differ\n");
    printf("mpi: %d passed, %d failed\n", ok, !ok);
    polopt_policy_free(&a), polopt_policy_free(&b);
    return ok ? 0 : 1;
}
