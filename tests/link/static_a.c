/* STATIC mode: two files each compile a private copy of the implementation; they must link together. */
#define POLOPT_STATIC
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

float static_b_dot(void);

static float static_a_dot(void)
{
    const float x[2] = {1.0f, 2.0f};
    float d = 0.0f;
    polopt_dot(2, x, x, &d);
    return d;
}

#include <stdio.h>
int main(void)
{
    const int ok = static_a_dot() == 5.0f && static_b_dot() == 25.0f;
    printf("%s: %d passed, %d failed\n", LINK_VARIANT, ok, !ok);
    return !ok;
}
