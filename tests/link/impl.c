/* Link test, implementation side: the one file that defines POLOPT_IMPLEMENTATION. */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"
