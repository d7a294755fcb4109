#define _POSIX_C_SOURCE 200809L /* mkdir, rmdir */
/* MIPS: exact search against a naive double loop, HNSW recall against exact search on the synthetic catalogue
   (clustered, unequal norms), save/load round trips, every kind of damaged file, concurrent searches, growth. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#if !defined(POLOPT_NO_THREADS) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#define TH_HAVE_THREADS 1
#else
#define TH_HAVE_THREADS 0
#endif

static float *synth_items(size_t P, size_t L, uint64_t seed)
{
    polopt_synth s;
    polopt_synth_config c = polopt_synth_config_default();
    float *v = (float *)malloc(P * L * sizeof *v);
    c.n_items = P, c.dim = L, c.seed = seed;
    polopt_synth_init(&s, &c);
    polopt_synth_items(&s, 0, P, v);
    polopt_synth_free(&s);
    return v;
}

static float *synth_queries(size_t nq, size_t P, size_t L, uint64_t seed)
{
    polopt_synth s;
    polopt_synth_config c = polopt_synth_config_default();
    float *q = (float *)malloc(nq * L * sizeof *q);
    size_t u;
    c.n_items = P, c.dim = L, c.seed = seed;
    polopt_synth_init(&s, &c);
    for (u = 0; u < nq; ++u) polopt_synth_user(&s, 1000000 + u, q + u * L, NULL);
    polopt_synth_free(&s);
    return q;
}

/* Exact search against double-precision scores: results sorted, scores right, nothing better missed.
   Float scores of L products are within (L + 2) 2^-24 sum|q_j v_j| of the exact ones. */
static void mips_exact_matches_naive_loop(void)
{
    const size_t P = 3000, L = 17, nq = 40; /* 40 queries: one full pass of 32 and a partial one */
    static const size_t ks[] = {1, 7, 100};
    polopt_rng rng;
    float *v = (float *)malloc(P * L * sizeof *v), *q = (float *)malloc(nq * L * sizeof *q);
    float *scores = (float *)malloc(nq * 100 * sizeof *scores);
    uint32_t *ids = (uint32_t *)malloc(nq * 100 * sizeof *ids);
    double *ref = (double *)malloc(P * sizeof *ref), *tol = (double *)malloc(P * sizeof *tol);
    polopt_mips ix;
    polopt_mips_scratch sc;
    size_t t, u, a, j, i;
    polopt_rng_seed(&rng, 1);
    th_fill_uniform(&rng, P * L, v, -1.0f, 1.0f);
    for (a = 0; a < P; ++a) /* unequal norms */
        for (j = 0; j < L; ++j) v[a * L + j] *= (float)(0.1 + 3.0 * (a % 13) / 13.0);
    th_fill_uniform(&rng, nq * L, q, -1.0f, 1.0f);
    CHECK_OK(polopt_mips_init_exact(&ix, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 100, NULL));
    for (t = 0; t < 3; ++t) {
        const size_t k = ks[t];
        int bad = 0;
        CHECK_OK(polopt_mips_search_batch(&ix, &sc, nq, q, L, k, 0, ids, scores));
        for (u = 0; u < nq; ++u) {
            double kth;
            for (a = 0; a < P; ++a) {
                double s = 0, m = 0;
                for (j = 0; j < L; ++j) {
                    s += (double)q[u * L + j] * v[a * L + j];
                    m += fabs((double)q[u * L + j] * v[a * L + j]);
                }
                ref[a] = s;
                tol[a] = (L + 2) * m / 16777216.0;
            }
            /* the k-th best exact score, by selection over a copy */
            {
                double *c = (double *)malloc(P * sizeof *c);
                memcpy(c, ref, P * sizeof *c);
                for (i = 0; i < k; ++i) {
                    size_t best = i;
                    for (a = i + 1; a < P; ++a)
                        if (c[a] > c[best]) best = a;
                    kth = c[best];
                    c[best] = c[i];
                    c[i] = kth;
                }
                free(c);
            }
            for (i = 0; i < k; ++i) {
                const uint32_t id = ids[u * k + i];
                bad += id >= P;
                if (id >= P) continue;
                bad += fabs(scores[u * k + i] - ref[id]) > tol[id];        /* the score is the item's */
                bad += i > 0 && scores[u * k + i] > scores[u * k + i - 1]; /* sorted */
                bad += ref[id] < kth - 2 * tol[id];                          /* nothing better was missed */
                for (j = 0; j < i; ++j) bad += ids[u * k + j] == id;         /* distinct */
            }
        }
        if (bad) th_fail(__FILE__, __LINE__, "exact search, k = %lu: %d wrong results", (unsigned long)k, bad);
    }
    polopt_mips_scratch_free(&sc);
    polopt_mips_free(&ix);
    free(v), free(q), free(scores), free(ids), free(ref), free(tol);
}

/* Small integers make every score exact: the order, ties to the lower id, must match a stable sort. */
static void mips_exact_ties_go_to_lower_id(void)
{
    enum { P = 500, L = 3, K = 40 };
    float v[P * L], q[L] = {1.0f, 2.0f, -1.0f}, s[K];
    uint32_t ids[K], order[P];
    polopt_mips ix;
    polopt_mips_scratch sc;
    size_t a, i;
    int bad = 0;
    for (a = 0; a < P * L; ++a) v[a] = (float)((a * 7919u) % 5) - 2.0f;
    for (a = 0; a < P; ++a) order[a] = (uint32_t)a;
    for (i = 0; i < K; ++i) { /* selection by (score desc, id asc) */
        size_t best = i;
        for (a = i + 1; a < P; ++a) {
            const float sa = q[0] * v[order[a] * L] + q[1] * v[order[a] * L + 1] + q[2] * v[order[a] * L + 2];
            const float sb = q[0] * v[order[best] * L] + q[1] * v[order[best] * L + 1] + q[2] * v[order[best] * L + 2];
            if (sa > sb || (sa == sb && order[a] < order[best])) best = a;
        }
        {
            const uint32_t t = order[i];
            order[i] = order[best];
            order[best] = t;
        }
    }
    CHECK_OK(polopt_mips_init_exact(&ix, P, L, v, 1, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sc, &ix, K, NULL));
    CHECK_OK(polopt_mips_search(&ix, &sc, q, K, 0, ids, s));
    for (i = 0; i < K; ++i) bad += ids[i] != order[i];
    CHECK(bad == 0);
    polopt_mips_scratch_free(&sc);
    polopt_mips_free(&ix);
}

static double recall(size_t nq, size_t k, const uint32_t *got, const uint32_t *truth, size_t truth_k)
{
    size_t u, i, j, hits = 0;
    for (u = 0; u < nq; ++u)
        for (i = 0; i < k; ++i)
            for (j = 0; j < k; ++j)
                if (got[u * k + i] == truth[u * truth_k + j]) {
                    ++hits;
                    break;
                }
    return (double)hits / (double)(nq * k);
}

/* The recall targets of the index on unequal-norm clustered data: recall@10 >= 0.95 and recall@256 >= 0.90. */
static void mips_hnsw_recall_on_synthetic_catalogue(void)
{
    const size_t P = 20000, L = 32, nq = 100;
    float *v = synth_items(P, L, 3), *q = synth_queries(nq, P, L, 3);
    uint32_t *truth = (uint32_t *)malloc(nq * 256 * sizeof *truth), *got = (uint32_t *)malloc(nq * 256 * sizeof *got);
    polopt_mips ex, hn;
    polopt_mips_scratch se, sh;
    double r10, r256;
    CHECK_OK(polopt_mips_init_exact(&ex, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&se, &ex, 256, NULL));
    CHECK_OK(polopt_mips_search_batch(&ex, &se, nq, q, L, 256, 0, truth, NULL));
    CHECK_OK(polopt_mips_init_hnsw(&hn, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sh, &hn, 256, NULL));
    CHECK_OK(polopt_mips_search_batch(&hn, &sh, nq, q, L, 10, 32, got, NULL));
    r10 = recall(nq, 10, got, truth, 256);
    CHECK_OK(polopt_mips_search_batch(&hn, &sh, nq, q, L, 256, 256, got, NULL));
    r256 = recall(nq, 256, got, truth, 256);
    if (!(r10 >= 0.95 && r256 >= 0.90))
        th_fail(__FILE__, __LINE__, "recall@10 = %.3f (ef 32), recall@256 = %.3f (ef 256)", r10, r256);
    polopt_mips_scratch_free(&se), polopt_mips_scratch_free(&sh);
    polopt_mips_free(&ex), polopt_mips_free(&hn);
    free(v), free(q), free(truth), free(got);
}

/* Build an HNSW index of the synthetic catalogue (P items, L = 16) with a given allocator context. */
static polopt_result build_small(polopt_mips *ix, size_t P, void *alloc_ctx, const float *v, int copy)
{
    polopt_mips_hnsw_config c = polopt_mips_hnsw_config_default();
    c.M = 8;
    c.ef_construction = 40;
    c.hooks.alloc_ctx = alloc_ctx;
    return polopt_mips_init_hnsw(ix, P, 16, v, copy, &c);
}

/* Search results of two indexes agree exactly on a set of queries. */
static int same_results(const polopt_mips *a, const polopt_mips *b, const float *q, size_t nq, size_t k, size_t ef)
{
    polopt_mips_scratch sa, sb;
    uint32_t *ia = (uint32_t *)malloc(nq * k * sizeof *ia), *ib = (uint32_t *)malloc(nq * k * sizeof *ib);
    float *fa = (float *)malloc(nq * k * sizeof *fa), *fb = (float *)malloc(nq * k * sizeof *fb);
    int same;
    polopt_mips_scratch_init(&sa, a, ef > k ? ef : k, NULL);
    polopt_mips_scratch_init(&sb, b, ef > k ? ef : k, NULL);
    same = polopt_mips_search_batch(a, &sa, nq, q, a->dim, k, ef, ia, fa) == POLOPT_OK &&
           polopt_mips_search_batch(b, &sb, nq, q, b->dim, k, ef, ib, fb) == POLOPT_OK &&
           memcmp(ia, ib, nq * k * sizeof *ia) == 0 && memcmp(fa, fb, nq * k * sizeof *fa) == 0;
    polopt_mips_scratch_free(&sa), polopt_mips_scratch_free(&sb);
    free(ia), free(ib), free(fa), free(fb);
    return same;
}

static void mips_save_load_round_trip(void)
{
    const size_t P = 2000, L = 16;
    float *v = synth_items(P, L, 4), *q = synth_queries(20, P, L, 4);
    polopt_mips hn, ex, back;
    unsigned char *buf;
    size_t size = 0, size2 = 0;
    const char *path = "build/test_index.bin";
    CHECK_OK(build_small(&hn, P, NULL, v, 0));
    CHECK_OK(polopt_mips_init_exact(&ex, P, L, v, 0, NULL));
    /* file */
    CHECK_OK(polopt_mips_save(&hn, path, &hn.err));
    CHECK_OK(polopt_mips_load(&back, path, NULL));
    CHECK(back.kind == POLOPT_MIPS_HNSW && back.n == P && back.dim == L && back.M == hn.M);
    CHECK(same_results(&hn, &back, q, 20, 10, 50));
    polopt_mips_free(&back);
    /* buffer, both kinds */
    CHECK_OK(polopt_mips_save_buffer(&hn, NULL, 0, &size, &hn.err));
    buf = (unsigned char *)malloc(size);
    CHECK_RC(polopt_mips_save_buffer(&hn, buf, size - 1, &size2, &hn.err), POLOPT_ERR_INVALID_ARG);
    CHECK_OK(polopt_mips_save_buffer(&hn, buf, size, &size2, &hn.err));
    CHECK(size2 == size);
    CHECK_OK(polopt_mips_load_buffer(&back, buf, size, NULL));
    CHECK(same_results(&hn, &back, q, 20, 10, 50));
    /* a loaded index owns its vectors and can grow; the result is the same as growing the original copy */
    CHECK_OK(polopt_mips_add(&back, 1, v));
    CHECK(back.n == P + 1);
    polopt_mips_free(&back);
    free(buf);
    CHECK_OK(polopt_mips_save_buffer(&ex, NULL, 0, &size, &ex.err));
    CHECK(size == 128 + P * L * 4);
    buf = (unsigned char *)malloc(size);
    CHECK_OK(polopt_mips_save_buffer(&ex, buf, size, &size, &ex.err));
    CHECK_OK(polopt_mips_load_buffer(&back, buf, size, NULL));
    CHECK(back.kind == POLOPT_MIPS_EXACT && same_results(&ex, &back, q, 20, 10, 0));
    polopt_mips_free(&back);
    free(buf);
    remove(path);
    polopt_mips_free(&hn), polopt_mips_free(&ex);
    free(v), free(q);
}

static void put64(unsigned char *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

static void mips_damaged_inputs_are_rejected(void)
{
    const size_t P = 300, L = 16;
    float *v = synth_items(P, L, 5);
    polopt_mips hn, back;
    unsigned char *buf, *bad;
    size_t size = 0, cut, i, bounds[8], nb = 0, levels_bytes = (P + 3) / 4 * 4;
    int failures = 0;
    CHECK_OK(build_small(&hn, P, NULL, v, 1));
    polopt_mips_save_buffer(&hn, NULL, 0, &size, &hn.err);
    buf = (unsigned char *)malloc(size);
    bad = (unsigned char *)malloc(size + 8);
    CHECK_OK(polopt_mips_save_buffer(&hn, buf, size, &size, &hn.err));
    /* truncation at every section boundary and inside the header: TRUNCATED, nothing else */
    bounds[nb++] = 0, bounds[nb++] = 64, bounds[nb++] = 128;
    bounds[nb++] = 128 + P * L * 4;
    bounds[nb++] = bounds[3] + levels_bytes;
    bounds[nb++] = bounds[4] + P * (1 + 2 * hn.M) * 4;
    bounds[nb++] = bounds[5] + P * 4;
    bounds[nb++] = size - 1;
    for (i = 0; i < nb; ++i) {
        cut = bounds[i];
        memcpy(bad, buf, cut);
        if (polopt_mips_load_buffer(&back, bad, cut, NULL) != POLOPT_ERR_TRUNCATED) {
            th_fail(__FILE__, __LINE__, "truncated at %lu: %s", (unsigned long)cut, back.err.message);
            ++failures;
        }
        CHECK(back.vectors == NULL); /* nothing half-made is left */
    }
    /* one flipped bit anywhere in the header: an error (checksum, magic or version) */
    for (i = 0; i < 128; ++i) {
        memcpy(bad, buf, size);
        bad[i] ^= 0x10;
        if (polopt_mips_load_buffer(&back, bad, size, NULL) == POLOPT_OK) ++failures;
    }
    /* a flipped bit in the payload: the payload checksum */
    memcpy(bad, buf, size);
    bad[size / 2] ^= 1;
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_CHECKSUM);
    /* a newer format version */
    memcpy(bad, buf, size);
    bad[8] = 2;
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_VERSION);
    CHECK(strstr(back.err.message, "version 2") != NULL);
    /* not an index at all */
    memset(bad, 'x', size);
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_FORMAT);
    /* sizes that would need 2^54 bytes, correctly sealed: refused before anything is allocated */
    memcpy(bad, buf, size);
    put64(bad + 32, 0xfffffffdULL);
    put64(bad + 40, 1u << 20);
    put64(bad + 72, 0);
    th_reseal(bad, size);
    CHECK(polopt_mips_load_buffer(&back, bad, size, NULL) != POLOPT_OK);
    /* trailing bytes */
    memcpy(bad, buf, size);
    bad[size] = 0;
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size + 1, NULL), POLOPT_ERR_FORMAT);
    /* a link out of range in an otherwise valid, resealed file: caught by the structural checks */
    memcpy(bad, buf, size);
    {
        unsigned char *links0 = bad + 128 + P * L * 4 + levels_bytes;
        links0[0] = 1, links0[1] = links0[2] = links0[3] = 0;          /* node 0: one link... */
        links0[4] = 0xff, links0[5] = 0xff, links0[6] = 0, links0[7] = 0; /* ...to node 65535 */
    }
    th_reseal(bad, size);
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_FORMAT);
    CHECK(strstr(back.err.message, "links to") != NULL);
    /* a NaN vector, resealed */
    memcpy(bad, buf, size);
    bad[128 + 3] = 0x7f, bad[128 + 2] = 0xc0;
    th_reseal(bad, size);
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_NONFINITE);
    CHECK(failures == 0);
    /* files: a missing file, and a truncated one */
    CHECK_RC(polopt_mips_load(&back, "build/no_such_index.bin", NULL), POLOPT_ERR_IO);
    {
        FILE *f = fopen("build/test_truncated.bin", "wb");
        fwrite(buf, 1, size - 10, f);
        fclose(f);
        CHECK_RC(polopt_mips_load(&back, "build/test_truncated.bin", NULL), POLOPT_ERR_TRUNCATED);
        f = fopen("build/test_truncated.bin", "wb"); /* and one with a byte too many */
        fwrite(buf, 1, size, f);
        fputc(0, f);
        fclose(f);
        CHECK_RC(polopt_mips_load(&back, "build/test_truncated.bin", NULL), POLOPT_ERR_FORMAT);
        remove("build/test_truncated.bin");
    }
    polopt_mips_free(&hn);
    free(buf), free(bad), free(v);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

/* Files whose checksums are right but whose layout polopt's writer never makes: each is refused at load (before the
   fix, the first one loaded, and polopt_mips_add then wrote out of bounds). */
static void mips_crafted_layouts_are_rejected(void)
{
    const size_t P = 300, L = 16;
    float *v = synth_items(P + 1, L, 5); /* one more row for the odd-sized index */
    polopt_mips hn, ex, back;
    unsigned char *buf, *bad;
    size_t size = 0, a, b, i;
    const size_t levels_at = 128 + P * L * 4, links0_at = levels_at + (P + 3) / 4 * 4;
    size_t offsets_at, upper_at;
    CHECK_OK(build_small(&hn, P, NULL, v, 1));
    offsets_at = links0_at + P * (1 + 2 * hn.M) * 4, upper_at = offsets_at + P * 4;
    polopt_mips_save_buffer(&hn, NULL, 0, &size, &hn.err);
    buf = (unsigned char *)malloc(size), bad = (unsigned char *)malloc(size);
    CHECK_OK(polopt_mips_save_buffer(&hn, buf, size, &size, &hn.err));
    /* two nodes a < b of level >= 1, where a's level-1 list has room: b's block is moved onto a's unused slots */
    for (a = 0; a < P && !(hn.levels[a] >= 1 && get32(buf + upper_at + 4 * get32(buf + offsets_at + 4 * a)) < hn.M); ++a) {
    }
    for (b = a + 1; b < P && hn.levels[b] < 1; ++b) {
    }
    CHECK(a < P && b < P);
    if (a < P && b < P) {
        const uint32_t off_a = get32(buf + offsets_at + 4 * a), count_a = get32(buf + upper_at + 4 * off_a);
        memcpy(bad, buf, size);
        put32(bad + offsets_at + 4 * b, off_a + 1 + count_a); /* b's count is a's first unused slot (0) */
        th_reseal(bad, size);
        CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_FORMAT);
        CHECK(strstr(back.err.message, "not where the writer puts them") != NULL);
        CHECK(back.vectors == NULL);
        /* a stale link in an unused slot of a's level-1 list (polopt 0.1.0 wrote them): loaded, and saved back as
           the canonical file, with the slot zero */
        memcpy(bad, buf, size);
        put32(bad + upper_at + 4 * (off_a + 1 + count_a), 1);
        th_reseal(bad, size);
        CHECK_OK(polopt_mips_load_buffer(&back, bad, size, NULL));
        CHECK_OK(polopt_mips_save_buffer(&back, bad, size, &i, &back.err));
        CHECK(i == size && memcmp(bad, buf, size) == 0);
        polopt_mips_free(&back);
    }
    /* a stale link in an unused slot on level 0: the same */
    for (i = 0; i < P && get32(buf + links0_at + 4 * i * (1 + 2 * hn.M)) >= 2 * hn.M; ++i) {
    }
    CHECK(i < P);
    memcpy(bad, buf, size);
    put32(bad + links0_at + 4 * (i * (1 + 2 * hn.M) + 2 * hn.M), 3);
    th_reseal(bad, size);
    CHECK_OK(polopt_mips_load_buffer(&back, bad, size, NULL));
    CHECK_OK(polopt_mips_save_buffer(&back, bad, size, &i, &back.err));
    CHECK(i == size && memcmp(bad, buf, size) == 0);
    polopt_mips_free(&back);
    /* non-zero padding after the levels (P = 300 is a multiple of 4: use an index of 301) */
    {
        polopt_mips odd;
        unsigned char *ob;
        size_t osize = 0;
        CHECK_OK(build_small(&odd, 301, NULL, v, 1));
        polopt_mips_save_buffer(&odd, NULL, 0, &osize, &odd.err);
        ob = (unsigned char *)malloc(osize);
        CHECK_OK(polopt_mips_save_buffer(&odd, ob, osize, &osize, &odd.err));
        ob[128 + 301 * L * 4 + 301] = 1;
        th_reseal(ob, osize);
        CHECK_RC(polopt_mips_load_buffer(&back, ob, osize, NULL), POLOPT_ERR_FORMAT);
        CHECK(strstr(back.err.message, "padding") != NULL);
        polopt_mips_free(&odd);
        free(ob);
    }
    /* an HNSW index whose generator state is all zero (it would draw level 0 for ever) */
    memcpy(bad, buf, size);
    memset(bad + 88, 0, 32);
    th_reseal(bad, size);
    CHECK_RC(polopt_mips_load_buffer(&back, bad, size, NULL), POLOPT_ERR_FORMAT);
    /* an exact index with a graph field set (M, entry, level, ef_construction, upper words, generator) */
    {
        static const size_t field[6] = {28, 48, 56, 60, 64, 100};
        unsigned char *eb;
        size_t esize = 0, f;
        CHECK_OK(polopt_mips_init_exact(&ex, 20, L, v, 1, NULL));
        polopt_mips_save_buffer(&ex, NULL, 0, &esize, &ex.err);
        eb = (unsigned char *)malloc(esize);
        for (f = 0; f < 6; ++f) {
            CHECK_OK(polopt_mips_save_buffer(&ex, eb, esize, &esize, &ex.err));
            eb[field[f]] = 2;
            th_reseal(eb, esize);
            CHECK_RC(polopt_mips_load_buffer(&back, eb, esize, NULL), POLOPT_ERR_FORMAT);
        }
        CHECK_OK(polopt_mips_save_buffer(&ex, eb, esize, &esize, &ex.err)); /* and the untouched file loads */
        CHECK_OK(polopt_mips_load_buffer(&back, eb, esize, NULL));
        polopt_mips_free(&back);
        polopt_mips_free(&ex);
        free(eb);
    }
    polopt_mips_free(&hn);
    free(buf), free(bad), free(v);
}

/* A saved file is a function of the index alone: the same build twice gives the same bytes (before the fix, unused
   link slots carried whatever the allocator left there), and save -> load -> add -> save matches add -> save. */
static void mips_files_are_a_function_of_the_index(void)
{
    const size_t P = 400, L = 16;
    float *v = synth_items(P + 50, L, 9);
    polopt_mips x, y, back;
    unsigned char *bx, *by;
    size_t sx = 0, sy = 0;
    int round;
    for (round = 0; round < 2; ++round) {
        CHECK_OK(build_small(&x, P, NULL, v, 1));
        /* dirty the allocator between the builds, so fresh blocks hold old bytes */
        {
            unsigned char *junk[32];
            int j;
            for (j = 0; j < 32; ++j) {
                junk[j] = (unsigned char *)malloc((size_t)(j + 1) * 4000);
                if (junk[j]) memset(junk[j], 0xab, (size_t)(j + 1) * 4000);
            }
            for (j = 0; j < 32; ++j) free(junk[j]);
        }
        CHECK_OK(build_small(&y, P, NULL, v, 1));
        if (round == 1) { /* grow both: x directly, y through a save and a load */
            CHECK_OK(polopt_mips_save_buffer(&y, NULL, 0, &sy, &y.err));
            by = (unsigned char *)malloc(sy);
            CHECK_OK(polopt_mips_save_buffer(&y, by, sy, &sy, &y.err));
            polopt_mips_free(&y);
            CHECK_OK(polopt_mips_load_buffer(&y, by, sy, NULL));
            free(by);
            CHECK_OK(polopt_mips_add(&x, 50, v + P * L));
            CHECK_OK(polopt_mips_add(&y, 50, v + P * L));
        }
        CHECK_OK(polopt_mips_save_buffer(&x, NULL, 0, &sx, &x.err));
        CHECK_OK(polopt_mips_save_buffer(&y, NULL, 0, &sy, &y.err));
        CHECK(sx == sy);
        bx = (unsigned char *)malloc(sx), by = (unsigned char *)malloc(sy);
        CHECK_OK(polopt_mips_save_buffer(&x, bx, sx, &sx, &x.err));
        CHECK_OK(polopt_mips_save_buffer(&y, by, sy, &sy, &y.err));
        if (sx == sy && memcmp(bx, by, sx) != 0) {
            size_t i, differ = 0;
            for (i = 0; i < sx; ++i) differ += bx[i] != by[i];
            th_fail(__FILE__, __LINE__, "round %d: two saves of the same index differ in %lu bytes", round,
                    (unsigned long)differ);
        }
        /* and a reloaded file saves back to itself */
        CHECK_OK(polopt_mips_load_buffer(&back, bx, sx, NULL));
        CHECK_OK(polopt_mips_save_buffer(&back, by, sy, &sy, &back.err));
        CHECK(memcmp(bx, by, sx) == 0);
        polopt_mips_free(&back);
        free(bx), free(by);
        polopt_mips_free(&x), polopt_mips_free(&y);
    }
    free(v);
}

/* Saving is safe: a failed save leaves the old file and no temporary behind; a link planted where a fixed temporary
   name would be is not followed; the replaced file keeps its mode; two writers that save to the same path at once
   never leave a broken file, and a reader between them always loads a whole index. */
#if TH_HAVE_THREADS
typedef struct save_job {
    polopt_mips *ix;
    const char *path;
    int loads, failures;
} save_job;

static void *save_thread(void *arg)
{
    save_job *job = (save_job *)arg;
    int i;
    for (i = 0; i < 20; ++i) job->failures += polopt_mips_save(job->ix, job->path, NULL) != POLOPT_OK;
    return NULL;
}

static void *load_thread(void *arg)
{
    save_job *job = (save_job *)arg;
    int i;
    for (i = 0; i < 40; ++i) {
        polopt_mips back;
        const polopt_result rc = polopt_mips_load(&back, job->path, NULL);
        job->failures += rc != POLOPT_OK || (back.n != 200 && back.n != 100);
        job->loads += 1;
        polopt_mips_free(&back);
    }
    return NULL;
}

/* Files in build/ whose name starts with prefix (temporaries left behind). */
static int count_files(const char *prefix)
{
    char cmd[256];
    FILE *p;
    int n = -1;
    snprintf(cmd, sizeof cmd, "ls -a build | grep -c '^%s' 2>/dev/null", prefix);
    p = popen(cmd, "r");
    if (!p) return -1;
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
    return n;
}
#endif

static void mips_saving_is_safe(void)
{
#if TH_HAVE_THREADS
    const size_t P = 200;
    float *v = synth_items(P, 16, 6), *q = synth_queries(5, P, 16, 6);
    polopt_mips a, b, back;
    const char *path = "build/test_keep.bin";
    struct stat st;
    FILE *f;
    char text[16] = {0};
    pthread_t th[3];
    save_job jobs[3];
    int t;
    CHECK_OK(build_small(&a, P, NULL, v, 0));
    CHECK_OK(build_small(&b, 100, NULL, v, 0));
    remove(path), remove("build/test_victim.txt"), remove("build/test_keep.bin.tmp");
    CHECK_OK(polopt_mips_save(&a, path, &a.err));
    /* a failed save (the path is a directory): an error with a message, the directory untouched, no temporary */
    CHECK(mkdir("build/test_dir.bin", 0700) == 0);
    CHECK_RC(polopt_mips_save(&b, "build/test_dir.bin", &b.err), POLOPT_ERR_IO);
    CHECK(strstr(b.err.message, "unchanged") != NULL);
    CHECK(stat("build/test_dir.bin", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(count_files("test_dir.bin.") == 0);
    rmdir("build/test_dir.bin");
    CHECK_RC(polopt_mips_save(&b, "build/no_such_dir/x.bin", &b.err), POLOPT_ERR_IO);
    CHECK_OK(polopt_mips_load(&back, path, NULL));
    CHECK(back.n == P && same_results(&a, &back, q, 5, 5, 20));
    polopt_mips_free(&back);
    /* a link planted at "<path>.tmp" towards a victim file: the victim is not written */
    f = fopen("build/test_victim.txt", "w");
    fputs("victim", f);
    fclose(f);
    CHECK(symlink("test_victim.txt", "build/test_keep.bin.tmp") == 0);
    CHECK_OK(polopt_mips_save(&b, path, &b.err));
    f = fopen("build/test_victim.txt", "r");
    CHECK(f && fgets(text, sizeof text, f) && strcmp(text, "victim") == 0);
    if (f) fclose(f);
    remove("build/test_keep.bin.tmp"), remove("build/test_victim.txt");
    /* the mode of the replaced file is kept */
    CHECK(chmod(path, 0600) == 0);
    CHECK_OK(polopt_mips_save(&a, path, &a.err));
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* two writers and a reader on one path */
    jobs[0].ix = &a, jobs[1].ix = &b, jobs[2].ix = NULL;
    for (t = 0; t < 3; ++t) jobs[t].path = path, jobs[t].loads = jobs[t].failures = 0;
    for (t = 0; t < 3; ++t) CHECK(pthread_create(&th[t], NULL, t < 2 ? save_thread : load_thread, &jobs[t]) == 0);
    for (t = 0; t < 3; ++t) pthread_join(th[t], NULL);
    CHECK(jobs[0].failures == 0 && jobs[1].failures == 0 && jobs[2].failures == 0 && jobs[2].loads == 40);
    CHECK_OK(polopt_mips_load(&back, path, NULL));
    CHECK(back.n == 100 || back.n == P);
    polopt_mips_free(&back);
    CHECK(count_files("test_keep.bin.") == 0);
    remove(path);
    polopt_mips_free(&a), polopt_mips_free(&b);
    free(v), free(q);
#endif
}

#if TH_HAVE_THREADS
typedef struct search_job {
    const polopt_mips *ix;
    const float *q;
    size_t nq;
    uint32_t *out;
    polopt_result rc;
} search_job;

static void *search_thread(void *arg)
{
    search_job *j = (search_job *)arg;
    polopt_mips_scratch sc;
    size_t rep;
    j->rc = polopt_mips_scratch_init(&sc, j->ix, 64, NULL);
    for (rep = 0; rep < 3 && j->rc == POLOPT_OK; ++rep) /* searching many times: state must not leak between */
        j->rc = polopt_mips_search_batch(j->ix, &sc, j->nq, j->q, j->ix->dim, 10, 64, j->out, NULL);
    polopt_mips_scratch_free(&sc);
    return NULL;
}
#endif

static void mips_concurrent_searches_equal_serial(void)
{
#if TH_HAVE_THREADS
    const size_t P = 5000, L = 16, nq = 200;
    float *v = synth_items(P, L, 7), *q = synth_queries(nq, P, L, 7);
    uint32_t *serial = (uint32_t *)malloc(nq * 10 * sizeof *serial), *par[4];
    pthread_t th[4];
    search_job jobs[4];
    polopt_mips ix;
    polopt_mips_scratch sc;
    int t;
    CHECK_OK(build_small(&ix, P, NULL, v, 0));
    CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 64, NULL));
    CHECK_OK(polopt_mips_search_batch(&ix, &sc, nq, q, L, 10, 64, serial, NULL));
    for (t = 0; t < 4; ++t) {
        par[t] = (uint32_t *)malloc(nq * 10 * sizeof *par[t]);
        jobs[t].ix = &ix, jobs[t].q = q, jobs[t].nq = nq, jobs[t].out = par[t];
        CHECK(pthread_create(&th[t], NULL, search_thread, &jobs[t]) == 0);
    }
    for (t = 0; t < 4; ++t) {
        pthread_join(th[t], NULL);
        CHECK_OK(jobs[t].rc);
        CHECK(memcmp(par[t], serial, nq * 10 * sizeof *serial) == 0);
        free(par[t]);
    }
    polopt_mips_scratch_free(&sc);
    polopt_mips_free(&ix);
    free(v), free(q), free(serial);
#endif
}

/* Growth and the threaded build keep recall; a threaded build gives a structurally valid graph. */
static void mips_add_and_threaded_build(void)
{
    const size_t P = 8000, L = 16, nq = 50;
    float *v = synth_items(P, L, 8), *q = synth_queries(nq, P, L, 8);
    uint32_t *truth = (uint32_t *)malloc(nq * 10 * sizeof *truth), *got = (uint32_t *)malloc(nq * 10 * sizeof *got);
    polopt_mips ex, grown, threaded, borrowed, back;
    polopt_mips_scratch se, sg;
    polopt_mips_hnsw_config c = polopt_mips_hnsw_config_default();
    unsigned char *buf;
    size_t size;
    CHECK_OK(polopt_mips_init_exact(&ex, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&se, &ex, 10, NULL));
    CHECK_OK(polopt_mips_search_batch(&ex, &se, nq, q, L, 10, 0, truth, NULL));
    /* half built, then the rest added in two steps */
    CHECK_OK(polopt_mips_init_hnsw(&grown, P / 2, L, v, 1, &c));
    CHECK_OK(polopt_mips_add(&grown, P / 4, v + (P / 2) * L));
    CHECK_OK(polopt_mips_add(&grown, P - P / 2 - P / 4, v + (P / 2 + P / 4) * L));
    CHECK(grown.n == P);
    CHECK_OK(polopt_mips_scratch_init(&sg, &grown, 64, NULL));
    CHECK_OK(polopt_mips_search_batch(&grown, &sg, nq, q, L, 10, 64, got, NULL));
    CHECK(recall(nq, 10, got, truth, 10) >= 0.95);
    polopt_mips_scratch_free(&sg);
    /* threads */
    c.n_threads = 2;
    CHECK_OK(polopt_mips_init_hnsw(&threaded, P, L, v, 0, &c));
    CHECK_OK(polopt_mips_scratch_init(&sg, &threaded, 64, NULL));
    CHECK_OK(polopt_mips_search_batch(&threaded, &sg, nq, q, L, 10, 64, got, NULL));
    CHECK(recall(nq, 10, got, truth, 10) >= 0.95);
    polopt_mips_save_buffer(&threaded, NULL, 0, &size, &threaded.err);
    buf = (unsigned char *)malloc(size);
    CHECK_OK(polopt_mips_save_buffer(&threaded, buf, size, &size, &threaded.err));
    CHECK_OK(polopt_mips_load_buffer(&back, buf, size, NULL)); /* passes every structural check */
    polopt_mips_free(&back);
    free(buf);
    polopt_mips_scratch_free(&sg);
    /* a borrowed index cannot grow, and says so */
    CHECK_OK(polopt_mips_init_hnsw(&borrowed, 100, L, v, 0, NULL));
    CHECK_RC(polopt_mips_add(&borrowed, 1, v), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(borrowed.err.message, "copy = 1") != NULL);
    polopt_mips_free(&borrowed), polopt_mips_free(&threaded), polopt_mips_free(&grown), polopt_mips_free(&ex);
    polopt_mips_scratch_free(&se);
    free(v), free(q), free(truth), free(got);
}

/* Seeded, budgeted search: from the true top-k with no budget it keeps them; with a budget of 4 expansions from a
   perturbed query's results it still recalls most; without seeds it is the ordinary search; exact ignores both. */
static void mips_search_from_seeds_and_budget(void)
{
    const size_t P = 20000, L = 32, nq = 50, k = 64;
    float *v = synth_items(P, L, 12), *q = synth_queries(nq, P, L, 12), *q2 = (float *)malloc(nq * L * sizeof *q2);
    uint32_t *truth = (uint32_t *)malloc(nq * k * sizeof *truth), *near = (uint32_t *)malloc(nq * k * sizeof *near);
    uint32_t *got = (uint32_t *)malloc(nq * k * sizeof *got), seeds[3] = {POLOPT_NO_ITEM, 5, 99999999u};
    polopt_mips ex, hn;
    polopt_mips_scratch se, sh;
    polopt_rng rng;
    size_t u, j;
    polopt_rng_seed(&rng, 4);
    for (j = 0; j < nq * L; ++j) q2[j] = q[j] * (1.0f + 0.05f * (float)polopt_rng_normal(&rng));
    CHECK_OK(polopt_mips_init_exact(&ex, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&se, &ex, k, NULL));
    CHECK_OK(polopt_mips_search_batch(&ex, &se, nq, q, L, k, 0, truth, NULL));
    CHECK_OK(polopt_mips_init_hnsw(&hn, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sh, &hn, 4 * k, NULL));
    for (u = 0; u < nq; ++u) { /* seeds: the exact answer; nothing better exists, so it stays */
        CHECK_OK(polopt_mips_search_from(&hn, &sh, q + u * L, k, k, truth + u * k, k, 0, got + u * k, NULL));
        CHECK_OK(polopt_mips_search(&hn, &sh, q2 + u * L, k, 2 * k, near + u * k, NULL));
    }
    CHECK(recall(nq, k, got, truth, k) == 1.0);
    for (u = 0; u < nq; ++u) /* seeds: the answer for a query 5% away, and only 4 expansions to repair it */
        CHECK_OK(polopt_mips_search_from(&hn, &sh, q + u * L, k, k, near + u * k, k, 4, got + u * k, NULL));
    CHECK(recall(nq, k, got, truth, k) >= 0.9);
    for (u = 0; u < nq; ++u) /* unusable seeds are skipped: then it is the ordinary search */
        CHECK_OK(polopt_mips_search_from(&hn, &sh, q + u * L, k, 2 * k, seeds, 3, 0, got + u * k, NULL));
    CHECK(recall(nq, k, got, truth, k) >= 0.95);
    CHECK_OK(polopt_mips_search_from(&ex, &se, q, k, 0, seeds, 3, 1, got, NULL)); /* exact: exact anyway */
    CHECK(memcmp(got, truth, k * sizeof *got) == 0);
    CHECK_RC(polopt_mips_search_from(&hn, &sh, q, k, k, NULL, 3, 0, got, NULL), POLOPT_ERR_INVALID_ARG);
    polopt_mips_scratch_free(&se), polopt_mips_scratch_free(&sh);
    polopt_mips_free(&ex), polopt_mips_free(&hn);
    free(v), free(q), free(q2), free(truth), free(near), free(got);
}

static void mips_bad_arguments(void)
{
    const size_t P = 100, L = 16;
    float *v = synth_items(P, L, 9), q[16];
    uint32_t ids[200];
    polopt_mips ix, ex;
    polopt_mips_scratch sc, se;
    polopt_mips_hnsw_config c = polopt_mips_hnsw_config_default();
    memcpy(q, v, sizeof q);
    c.M = 1;
    CHECK_RC(polopt_mips_init_hnsw(&ix, P, L, v, 0, &c), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(ix.err.message, "config.M = 1") != NULL);
    v[5 * L + 3] = NAN;
    CHECK_RC(polopt_mips_init_hnsw(&ix, P, L, v, 0, NULL), POLOPT_ERR_NONFINITE);
    CHECK(strstr(ix.err.message, "vectors[5][3]") != NULL);
    CHECK_RC(polopt_mips_init_exact(&ex, P, L, v, 1, NULL), POLOPT_ERR_NONFINITE);
    v[5 * L + 3] = 0.5f;
    CHECK_RC(polopt_mips_init_exact(&ex, 0, L, v, 0, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_OK(build_small(&ix, P, NULL, v, 0));
    CHECK_OK(polopt_mips_init_exact(&ex, P, L, v, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 50, NULL));
    CHECK_OK(polopt_mips_scratch_init(&se, &ex, 50, NULL));
    CHECK_RC(polopt_mips_search(&ix, &sc, q, 0, 10, ids, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_mips_search(&ix, &sc, q, P + 1, P + 1, ids, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_mips_search(&ix, &sc, q, 10, 60, ids, NULL), POLOPT_ERR_INVALID_ARG); /* ef > max_ef */
    CHECK(strstr(sc.err.message, "max_ef") != NULL);
    CHECK_RC(polopt_mips_search(&ix, &se, q, 10, 20, ids, NULL), POLOPT_ERR_INVALID_ARG); /* exact scratch */
    q[2] = INFINITY;
    CHECK_RC(polopt_mips_search(&ex, &se, q, 10, 0, ids, NULL), POLOPT_ERR_NONFINITE);
    q[2] = 0.0f;
    CHECK_OK(polopt_mips_search(&ix, &sc, q, 10, 5, ids, NULL)); /* ef < k is raised to k */
    polopt_mips_scratch_free(&sc), polopt_mips_scratch_free(&se);
    polopt_mips_free(&ix), polopt_mips_free(&ex);
    free(v);
}

/* Every allocation of build, scratch and load fails in turn: POLOPT_ERR_NO_MEMORY, nothing leaked; then growth. */
typedef struct mips_alloc_case {
    const float *v;
    const unsigned char *buf;
    size_t size;
} mips_alloc_case;

static polopt_result mips_alloc_scenario(const polopt_hooks *h, int stage, void *user)
{
    const mips_alloc_case *mc = (const mips_alloc_case *)user;
    polopt_mips ix;
    polopt_mips_scratch sc;
    polopt_result rc;
    if (stage == 0) rc = build_small(&ix, 300, h->alloc_ctx, mc->v, 1);
    else if (stage == 1) rc = polopt_mips_load_buffer(&ix, mc->buf, mc->size, h);
    else {
        rc = polopt_mips_init_exact(&ix, 300, 16, mc->v, 1, h);
        if (rc == POLOPT_OK) {
            rc = polopt_mips_scratch_init(&sc, &ix, 20, h);
            polopt_mips_scratch_free(&sc);
        }
    }
    if (rc == POLOPT_OK && stage < 2) rc = polopt_mips_add(&ix, 50, mc->v); /* growth allocates too */
    polopt_mips_free(&ix);
    return rc;
}

static void mips_allocation_failures_are_clean(void)
{
    float *v = synth_items(300, 16, 10);
    unsigned char *buf;
    mips_alloc_case mc;
    polopt_mips ref;
    int stage;
    CHECK_OK(build_small(&ref, 300, NULL, v, 1));
    polopt_mips_save_buffer(&ref, NULL, 0, &mc.size, &ref.err);
    buf = (unsigned char *)malloc(mc.size);
    polopt_mips_save_buffer(&ref, buf, mc.size, &mc.size, &ref.err);
    mc.v = v, mc.buf = buf;
    for (stage = 0; stage < 3; ++stage) CHECK_EACH_ALLOCATION_FAILURE(mips_alloc_scenario, stage, &mc);
    polopt_mips_free(&ref);
    free(buf), free(v);
}

/* The hubs are the POLOPT_MIPS_HUBS largest norms (by brute force here) and the first zero vector, after a build,
   an add and a load; and zero vectors, which the graph cannot reach, are still found when every other item scores
   below 0 (the exact answer: the zero vector of lowest id, a tie at 0). */
static void mips_hubs_and_zero_vectors(void)
{
    enum { P = 1500, L = 8 };
    static float beta[(P + 10) * L];
    polopt_mips ix, back;
    polopt_mips_scratch sc;
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    polopt_rng rng;
    float u[L], q[L];
    uint32_t top[4], ex[4];
    size_t a, j, bad = 0, size;
    unsigned char *buf;
    polopt_rng_seed(&rng, 31);
    for (j = 0; j < L; ++j) u[j] = (float)polopt_rng_normal(&rng);
    for (a = 0; a < P + 10; ++a) { /* every item in the half-space u^T b > 0; rows 700, 701, 1502 are zero */
        double d = 0.0;
        for (j = 0; j < L; ++j) beta[a * L + j] = (float)polopt_rng_normal(&rng) * (float)(1.0 + (a % 7));
        for (j = 0; j < L; ++j) d += (double)beta[a * L + j] * u[j];
        if (d < 0.0)
            for (j = 0; j < L; ++j) beta[a * L + j] = -beta[a * L + j];
    }
    memset(beta + 700 * L, 0, 2 * L * sizeof(float));
    memset(beta + 1502 * L, 0, L * sizeof(float));
    hc.M = 8;
    CHECK_OK(polopt_mips_init_hnsw(&ix, P, L, beta, 1, &hc));
    CHECK(ix.n_hubs == POLOPT_MIPS_HUBS + 1 && ix.hubs[POLOPT_MIPS_HUBS] == 700);
    for (j = 0; j < POLOPT_MIPS_HUBS; ++j) { /* nothing outside the hubs has a larger norm than the smallest hub */
        size_t above = 0;
        for (a = 0; a < P; ++a) above += ix.sqnorms[a] > ix.sqnorms[ix.hubs[j]];
        bad += above >= POLOPT_MIPS_HUBS;
    }
    CHECK(bad == 0);
    CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 64, NULL));
    for (j = 0; j < L; ++j) q[j] = -u[j]; /* every non-zero item scores below 0 */
    CHECK_OK(polopt_mips_search(&ix, &sc, q, 1, 16, top, NULL));
    CHECK(top[0] == 700);
    CHECK_OK(polopt_mips_add(&ix, 10, beta + P * L)); /* the add keeps the hubs: 700 is still the first zero */
    CHECK(ix.hubs[ix.n_hubs - 1] == 700);
    CHECK_OK(polopt_mips_save_buffer(&ix, NULL, 0, &size, NULL));
    buf = (unsigned char *)malloc(size);
    CHECK_OK(polopt_mips_save_buffer(&ix, buf, size, &size, NULL));
    CHECK_OK(polopt_mips_load_buffer(&back, buf, size, NULL));
    CHECK(back.n_hubs == ix.n_hubs && memcmp(back.hubs, ix.hubs, ix.n_hubs * sizeof(uint32_t)) == 0);
    {
        polopt_mips exact;
        polopt_mips_scratch se;
        CHECK_OK(polopt_mips_init_exact(&exact, P + 10, L, beta, 0, NULL));
        CHECK_OK(polopt_mips_scratch_init(&se, &exact, 4, NULL));
        CHECK_OK(polopt_mips_search(&exact, &se, q, 2, 0, ex, NULL));
        CHECK(ex[0] == 700 && ex[1] == 701); /* ties at 0 to the lower ids */
        polopt_mips_scratch_free(&se);
        polopt_mips_free(&exact);
    }
    polopt_mips_scratch_free(&sc);
    polopt_mips_free(&back);
    polopt_mips_free(&ix);
    free(buf);
}

/* On embeddings like real ones (the SVD of a basket log with popular items: unequal norms, many near-zero rows),
   the HNSW argmax is the exact one for at least 99.9% of 4,000 baskets' contexts, with ef = 32. */
static void mips_hnsw_argmax_on_svd_embeddings(void)
{
    enum { S = 4000, I = 3000, L = 16, PER = 8 };
    static uint32_t sess[S * PER], item[S * PER];
    polopt_interactions log;
    polopt_svd_config svc = polopt_svd_config_default(L);
    polopt_mips hnsw, exact;
    polopt_mips_scratch sh, se;
    polopt_rng rng;
    float *beta, *X, sv[L];
    size_t i, t, missed = 0;
    polopt_csr A;
    polopt_rng_seed(&rng, 8);
    for (i = 0; i < S; ++i) { /* each basket: a theme of 60 items, a popular head shared by all */
        const size_t theme = polopt_rng_below(&rng, 50);
        for (t = 0; t < PER; ++t) {
            const double u = polopt_rng_uniform(&rng);
            sess[i * PER + t] = (uint32_t)i;
            item[i * PER + t] = (uint32_t)(u < 0.3 ? polopt_rng_below(&rng, 40) : 40 + theme * 59 + (size_t)(u * u * 59));
        }
    }
    CHECK_OK(polopt_interactions_init(&log, S * PER, sess, item, NULL, NULL));
    A = polopt_interactions_matrix(&log);
    beta = (float *)malloc(log.n_items * L * sizeof(float));
    X = (float *)malloc(S * L * sizeof(float));
    CHECK_OK(polopt_svd_sparse(&A, &svc, sv, beta, NULL));
    CHECK_OK(polopt_svd_embed(log.n_items, L, beta, sv, 0.5, beta));
    for (i = 0; i < S; ++i) { /* contexts: the mean embedding of each basket's first half */
        memset(X + i * L, 0, L * sizeof(float));
        for (t = log.offsets[i]; t < log.offsets[i] + (log.offsets[i + 1] - log.offsets[i]) / 2 + 1; ++t)
            polopt_axpy(L, 1.0f, beta + log.items[t] * L, X + i * L);
    }
    CHECK_OK(polopt_mips_init_hnsw(&hnsw, log.n_items, L, beta, 0, NULL));
    CHECK_OK(polopt_mips_init_exact(&exact, log.n_items, L, beta, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&sh, &hnsw, 32, NULL));
    CHECK_OK(polopt_mips_scratch_init(&se, &exact, 1, NULL));
    for (i = 0; i < S; ++i) {
        uint32_t a, b;
        CHECK_OK(polopt_mips_search(&hnsw, &sh, X + i * L, 1, 32, &a, NULL));
        CHECK_OK(polopt_mips_search(&exact, &se, X + i * L, 1, 0, &b, NULL));
        missed += a != b;
    }
    printf("    SVD embeddings of %lu items: the HNSW argmax missed the exact one for %lu of %d contexts\n",
           (unsigned long)log.n_items, (unsigned long)missed, S);
    CHECK(missed * 1000 <= S);
    polopt_mips_scratch_free(&sh), polopt_mips_scratch_free(&se);
    polopt_mips_free(&hnsw), polopt_mips_free(&exact);
    polopt_interactions_free(&log);
    free(beta), free(X);
}

const th_test th_suite_mips[] = {TH(mips_exact_matches_naive_loop),
                                 TH(mips_exact_ties_go_to_lower_id),
                                 TH(mips_hnsw_recall_on_synthetic_catalogue),
                                 TH(mips_save_load_round_trip),
                                 TH(mips_damaged_inputs_are_rejected),
                                 TH(mips_saving_is_safe),
                                 TH(mips_crafted_layouts_are_rejected),
                                 TH(mips_files_are_a_function_of_the_index),
                                 TH(mips_concurrent_searches_equal_serial),
                                 TH(mips_add_and_threaded_build),
                                 TH(mips_search_from_seeds_and_budget),
                                 TH(mips_bad_arguments),
                                 TH(mips_allocation_failures_are_clean),
                                 TH(mips_hubs_and_zero_vectors),
                                 TH(mips_hnsw_argmax_on_svd_embeddings),
                                 TH_END};
