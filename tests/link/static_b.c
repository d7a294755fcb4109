#define POLOPT_STATIC
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

float static_b_dot(void);

float static_b_dot(void)
{
    const float x[2] = {3.0f, 4.0f};
    float d = 0.0f;
    polopt_dot(2, x, x, &d);
    return d;
}
