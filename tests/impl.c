/* The one file of the test program that compiles the implementation.  It overrides the allocator with the test
   allocator of tests/main.c: this is also the compile test of POLOPT_MALLOC/REALLOC/FREE. */
#include <stddef.h>

void *th_malloc(size_t size, void *ctx);
void *th_realloc(void *p, size_t size, void *ctx);
void th_free(void *p, void *ctx);

#define POLOPT_MALLOC(size, ctx) th_malloc((size), (ctx))
#define POLOPT_REALLOC(p, size, ctx) th_realloc((p), (size), (ctx))
#define POLOPT_FREE(p, ctx) th_free((p), (ctx))
#define POLOPT_IMPLEMENTATION
#include "polopt.h"
