/* Link test, user side: includes only the declarations and calls the library implemented in impl.c.  Built as C
   and as C++, against an implementation built as C and as C++ (extern "C" makes the mixed builds link). */
#include <stdio.h>
#include <string.h>

#include "polopt.h"

int main(int argc, char **argv)
{
    const char *name = argc > 0 && strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : "link";
    const float x[3] = {1.0f, 2.0f, 3.0f}, y[3] = {4.0f, 5.0f, 6.0f};
    float d = 0.0f;
    polopt_rng rng;
    int ok = polopt_dot(3, x, y, &d) == POLOPT_OK && d == 32.0f && polopt_rng_seed(&rng, 1) == POLOPT_OK;
    printf("%s: %d passed, %d failed\n", name, ok, !ok);
    return !ok;
}
