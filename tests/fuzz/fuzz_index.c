/* Fuzz driver of the MIPS index loader (polopt_mips_load_buffer, polopt_mips_load).
   Each input is loaded as it is, then (binary format) once more with its checksums recomputed, and once more with
   the payload size of the header set to the input's too, so that mutations reach the structural checks.  An index
   that loads is then used: searched (polopt_mips_search, _search_from, _search_batch, with checks of the
   answers), grown (polopt_mips_add), searched again, saved, reloaded and saved again.  Invariants:
     - a load from a file and from a buffer of the same bytes agree;
     - a loaded index holds what the input says (sizes, vectors, levels, links);
     - searches succeed (or answer POLOPT_ERR_NONFINITE where inner products overflow) and answer valid, distinct
       ids, best first, with finite scores (FUZZ_NO_SILENT_NAN) equal to their inner products (these last two when
       the inner products cannot overflow), and exact search answers the true top k;
     - polopt_mips_add of finite vectors succeeds on a loaded index;
     - save(x) reloads, save(load(save(x))) == save(x), the reloaded index searches exactly like x, and with
       FUZZ_PURE_SAVE (default on) saving does not depend on the memory the library got from the allocator: the
       same operations with the allocator's fresh memory filled with other bytes save the same file. */
#define POLOPT_IMPLEMENTATION
#include "fuzz.h"

#ifndef FUZZ_PURE_SAVE
#define FUZZ_PURE_SAVE 1
#endif
/* README's "no silent NaN": finite inputs whose products overflow make the call answer POLOPT_ERR_NONFINITE, so a
   search that succeeds answers finite scores.  0: only when the inner products cannot overflow. */
#ifndef FUZZ_NO_SILENT_NAN
#define FUZZ_NO_SILENT_NAN 1
#endif

#define MAX_K 10
#define MAX_EF 32

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

FUZZ_DEFINE_SAVER(save_index, polopt_mips, polopt_mips_save_buffer)

/* q^T v in double, and the sum of |q_j v_j| (the scale of its rounding error in float). */
static double ref_dot(size_t dim, const float *q, const float *v, double *abs_sum)
{
    double s = 0.0, a = 0.0;
    size_t j;
    for (j = 0; j < dim; ++j) {
        s += (double)q[j] * (double)v[j];
        a += fabs((double)q[j] * (double)v[j]);
    }
    *abs_sum = a;
    return s;
}

static double tolerance(size_t dim, double abs_sum) { return 1e-5 * (double)(dim + 4) * abs_sum + 1e-30; }

/* Whether no inner product of q with an item can overflow. */
static int bounded_query(const polopt_mips *ix, const float *q)
{
    return (double)ix->dim * max_abs(q, ix->dim) * max_abs(ix->vectors, ix->n * ix->dim) < 1e36;
}

/* The answer (rc) of a search of k items for query q: POLOPT_OK, or POLOPT_ERR_NONFINITE where the inner products
   may overflow; valid, distinct ids, best first, NO_ITEM (-inf) only at the end and only for HNSW, scores equal to
   the inner products; the exact index answers the true top k. */
static void check_answer(const polopt_mips *ix, const float *q, size_t k, polopt_result rc, const uint32_t *ids,
                         const float *scores)
{
    const size_t n = ix->n, dim = ix->dim;
    const int bounded = bounded_query(ix, q);
    size_t i, j, found = 0;
    if (rc != POLOPT_OK) {
        FUZZ_CHECK(rc == POLOPT_ERR_NONFINITE && !bounded, "a search of a finite query fails");
        return;
    }
    for (i = 0; i < k; ++i) {
        if (ids[i] == POLOPT_NO_ITEM) {
            FUZZ_CHECK(ix->kind == POLOPT_MIPS_HNSW, "the exact search left an empty slot");
            FUZZ_CHECK(scores[i] == -INFINITY, "an empty slot without the score -inf");
            continue;
        }
        FUZZ_CHECK(found == i, "an item after an empty slot");
        FUZZ_CHECK(ids[i] < n, "an id out of range");
        for (j = 0; j < i; ++j) FUZZ_CHECK(ids[j] != ids[i], "an item answered twice");
        if (FUZZ_NO_SILENT_NAN) FUZZ_CHECK(isfinite(scores[i]), "a search succeeds with a non-finite score (silent NaN)");
        if (bounded) { /* else inner products may overflow: inf - inf is NaN */
            FUZZ_CHECK(!isnan(scores[i]), "a NaN score without overflow");
            double abs_sum;
            const double ref = ref_dot(dim, q, ix->vectors + (size_t)ids[i] * dim, &abs_sum);
            FUZZ_CHECK(isfinite(scores[i]), "an infinite score without overflow");
            FUZZ_CHECK(fabs((double)scores[i] - ref) <= tolerance(dim, abs_sum), "a score is not the inner product");
            if (i) FUZZ_CHECK(scores[i] <= scores[i - 1], "the answer is not best first");
        }
        ++found;
    }
    if (ix->kind == POLOPT_MIPS_EXACT && bounded) { /* nothing left out beats the k-th */
        double abs_k;
        const double kth = ref_dot(dim, q, ix->vectors + (size_t)ids[k - 1] * dim, &abs_k);
        for (j = 0; j < n; ++j) {
            double abs_j, s;
            int in = 0;
            for (i = 0; i < k; ++i) in |= ids[i] == j;
            if (in) continue;
            s = ref_dot(dim, q, ix->vectors + j * dim, &abs_j);
            FUZZ_CHECK(s <= kth + tolerance(dim, abs_j) + tolerance(dim, abs_k), "the exact search missed a better item");
        }
    }
}

/* A query: random, an item's vector, a one-hot, or zeros. */
static void make_query(fuzz_rng *r, const polopt_mips *ix, float *q)
{
    const size_t dim = ix->dim;
    size_t j;
    switch (fuzz_below(r, 5)) {
    case 0:
        memcpy(q, ix->vectors + fuzz_below(r, ix->n) * dim, dim * sizeof *q);
        break;
    case 1:
        memset(q, 0, dim * sizeof *q);
        q[fuzz_below(r, dim)] = fuzz_below(r, 2) ? 1.0f : -1.0f;
        break;
    case 2:
        memset(q, 0, dim * sizeof *q);
        break;
    default:
        for (j = 0; j < dim; ++j) q[j] = fuzz_float(r, 2.0f);
    }
}

/* Searches of every kind on ix; with twin (the same index, reloaded), the same searches must answer the same. */
static void search_all(const polopt_mips *ix, const polopt_mips *twin, fuzz_rng *r)
{
    polopt_mips_scratch sc, sc_twin;
    const size_t dim = ix->dim, kmax = ix->n < MAX_K ? ix->n : MAX_K;
    float *q = (float *)malloc(2 * (dim + 1) * sizeof *q), scores[2 * MAX_K], scores_twin[2 * MAX_K];
    uint32_t ids[2 * MAX_K], ids_twin[2 * MAX_K], seeds[4];
    polopt_result rc;
    int t;
    FUZZ_CHECK(q != NULL, "out of memory in the driver");
    rc = polopt_mips_scratch_init(&sc, ix, MAX_EF, NULL);
    FUZZ_CHECK(rc == POLOPT_OK, "polopt_mips_scratch_init fails on a valid index");
    if (twin) FUZZ_CHECK(polopt_mips_scratch_init(&sc_twin, twin, MAX_EF, NULL) == POLOPT_OK, "scratch of the twin");
    for (t = 0; t < 4; ++t) {
        const size_t k = 1 + fuzz_below(r, kmax), ef = k + fuzz_below(r, MAX_EF - k + 1);
        make_query(r, ix, q);
        if (t < 2) {
            rc = polopt_mips_search(ix, &sc, q, k, ef, ids, scores);
            check_answer(ix, q, k, rc, ids, scores);
            if (twin) {
                const polopt_result rc_twin = polopt_mips_search(twin, &sc_twin, q, k, ef, ids_twin, scores_twin);
                FUZZ_CHECK(rc_twin == rc, "the reloaded index answers differently");
                FUZZ_CHECK(rc != POLOPT_OK || (memcmp(ids, ids_twin, k * sizeof *ids) == 0 &&
                                               memcmp(scores, scores_twin, k * sizeof *scores) == 0),
                           "the reloaded index answers differently");
            }
        } else if (t == 2) { /* from seeds (valid ids, or NO_ITEM), with an expansion budget */
            size_t s, n_seeds = fuzz_below(r, 5);
            for (s = 0; s < n_seeds; ++s) seeds[s] = fuzz_below(r, 4) ? (uint32_t)fuzz_below(r, ix->n) : POLOPT_NO_ITEM;
            rc = polopt_mips_search_from(ix, &sc, q, k, ef, seeds, n_seeds, fuzz_below(r, 6), ids, scores);
            check_answer(ix, q, k, rc, ids, scores);
        } else { /* two queries, leading dimension dim + 1 */
            size_t j;
            memmove(q + dim + 1, q, dim * sizeof *q);
            for (j = 0; j < dim; ++j) q[j] = fuzz_float(r, 1.0f);
            q[dim] = NAN; /* the gap between rows is never read */
            rc = polopt_mips_search_batch(ix, &sc, 2, q, dim + 1, k, ef, ids, scores);
            if (rc == POLOPT_OK) {
                check_answer(ix, q, k, rc, ids, scores);
                check_answer(ix, q + dim + 1, k, rc, ids + k, scores + k);
            } else { /* one query whose products overflow fails the batch */
                FUZZ_CHECK(rc == POLOPT_ERR_NONFINITE && !(bounded_query(ix, q) && bounded_query(ix, q + dim + 1)),
                           "a search of finite queries fails");
            }
        }
    }
    /* and the refusals: k = 0, k > n, a non-finite query */
    FUZZ_CHECK(polopt_mips_search(ix, &sc, q, 0, 1, ids, scores) != POLOPT_OK, "k = 0 accepted");
    if (ix->n + 1 <= 2 * MAX_K) FUZZ_CHECK(polopt_mips_search(ix, &sc, q, ix->n + 1, MAX_EF, ids, scores) != POLOPT_OK, "k > n accepted");
    q[fuzz_below(r, dim)] = INFINITY;
    FUZZ_CHECK(polopt_mips_search(ix, &sc, q, 1, 1, ids, scores) == POLOPT_ERR_NONFINITE, "a query with inf accepted");
    polopt_mips_scratch_free(&sc);
    if (twin) polopt_mips_scratch_free(&sc_twin);
    free(q);
}

/* The loaded index holds what the input says. */
static void check_faithful(const polopt_mips *ix, const unsigned char *in, size_t size)
{
    const size_t n = (size_t)fuzz_get_u64(in + 32), dim = (size_t)fuzz_get_u64(in + 40);
    const unsigned char *p = in + FUZZ_HEADER;
    size_t a, i, M;
    int l, j;
    FUZZ_CHECK(ix->n == n && ix->dim == dim && (uint32_t)ix->kind == get_u32(in + 24), "sizes differ from the header");
    FUZZ_CHECK(memcmp(ix->vectors, p, n * dim * 4) == 0, "the vectors differ from the input");
    FUZZ_CHECK(ix->ef_construction == (size_t)fuzz_get_u64(in + 48), "ef_construction differs from the header");
    for (j = 0; j < 4; ++j) FUZZ_CHECK(ix->rng.s[j] == fuzz_get_u64(in + 88 + 8 * j), "the generator differs");
    if (ix->kind != POLOPT_MIPS_HNSW) return;
    M = get_u32(in + 28);
    FUZZ_CHECK(ix->M == M && ix->entry == get_u32(in + 56) && (uint32_t)ix->max_level == get_u32(in + 60) &&
                   ix->upper_size == (size_t)fuzz_get_u64(in + 64),
               "the graph's header fields differ");
    p += n * dim * 4;
    FUZZ_CHECK(memcmp(ix->levels, p, n) == 0, "the levels differ from the input");
    p += (n + 3) / 4 * 4;
    {
        const unsigned char *links0 = p, *offsets = p + n * (1 + 2 * M) * 4, *upper = offsets + n * 4;
        FUZZ_CHECK((size_t)(upper + ix->upper_size * 4 - in) == size, "the input is not exactly the payload");
        for (a = 0; a < n; ++a) {
            const uint32_t *mine = ix->links0 + a * (1 + 2 * M);
            const uint32_t off = get_u32(offsets + 4 * a);
            FUZZ_CHECK(ix->upper_offset[a] == off, "an upper offset differs");
            for (i = 0; i <= mine[0]; ++i) FUZZ_CHECK(mine[i] == get_u32(links0 + 4 * (a * (1 + 2 * M) + i)), "level-0 links differ");
            for (l = 1; l <= ix->levels[a]; ++l) {
                const size_t at = off + (size_t)(l - 1) * (1 + M);
                const uint32_t *up = ix->upper + at;
                for (i = 0; i <= up[0]; ++i) FUZZ_CHECK(up[i] == get_u32(upper + 4 * (at + i)), "upper links differ");
            }
        }
    }
}

/* n_new finite vectors: random, copies of items (equal vectors), zeros. */
static float *new_vectors(fuzz_rng *r, const polopt_mips *ix, size_t n_new)
{
    float *v = (float *)malloc(n_new * ix->dim * sizeof *v);
    size_t i, j;
    FUZZ_CHECK(v != NULL, "out of memory in the driver");
    for (i = 0; i < n_new; ++i) {
        float *row = v + i * ix->dim;
        const size_t how = fuzz_below(r, 4);
        for (j = 0; j < ix->dim; ++j) row[j] = how == 0 ? 0.0f : fuzz_float(r, 2.0f);
        if (how == 1) memcpy(row, ix->vectors + fuzz_below(r, ix->n) * ix->dim, ix->dim * sizeof *row);
    }
    return v;
}

/* Load bytes that must load. */
static void must_load(polopt_mips *ix, fuzz_bytes b, const char *what)
{
    const polopt_result rc = polopt_mips_load_buffer(ix, b.p, b.n, NULL);
    if (rc != POLOPT_OK) fprintf(stderr, "fuzz: %s: %s\n", what, ix->err.message);
    FUZZ_CHECK(rc == POLOPT_OK, what);
}

/* Use an index that loaded from in (size bytes); depth 0 also checks the file functions. */
static void exercise(polopt_mips *ix, const unsigned char *in, size_t size, int depth)
{
    fuzz_rng r = fuzz_seed(in, size);
    polopt_mips y, z;
    fuzz_bytes s1, s2, s3;
    const size_t old_n = ix->n, n_new = 1 + fuzz_below(&r, 3);
    float *v;
    polopt_result rc;
    FUZZ_CHECK(ix->n >= 1 && ix->dim >= 1 && ix->vectors != NULL && ix->owned_vectors != NULL, "a loaded index is empty");
    check_faithful(ix, in, size);
    search_all(ix, NULL, &r);
    if (depth == 0) { /* polopt_mips_save to a file writes what polopt_mips_save_buffer writes */
        fuzz_bytes f;
        const char *path = fuzz_path("index");
        s1 = save_index(ix);
        FUZZ_CHECK(polopt_mips_save(ix, path, NULL) == POLOPT_OK, "polopt_mips_save fails");
        f.p = fuzz_read_file(path, &f.n);
        FUZZ_CHECK(f.p && same_bytes(f, s1), "polopt_mips_save and polopt_mips_save_buffer write different bytes");
        free(f.p);
        free(s1.p);
    }
    /* grow it */
    fuzz_fill = 0x11;
    v = new_vectors(&r, ix, n_new);
    rc = polopt_mips_add(ix, n_new, v);
    if (rc != POLOPT_OK) fprintf(stderr, "fuzz: polopt_mips_add: %s\n", ix->err.message);
    FUZZ_CHECK(rc == POLOPT_OK && ix->n == old_n + n_new, "polopt_mips_add fails on a loaded index");
    FUZZ_CHECK(memcmp(ix->vectors + old_n * ix->dim, v, n_new * ix->dim * sizeof *v) == 0, "added vectors changed");
    free(v);
    /* save, reload, save again: the same bytes; and the reloaded index searches the same */
    s1 = save_index(ix);
    fuzz_fill = 0x22;
    must_load(&y, s1, "a saved index does not reload");
    s2 = save_index(&y);
    FUZZ_CHECK(same_bytes(s1, s2), "save(load(save(x))) differs from save(x)");
    {
        fuzz_rng r2 = r;
        search_all(ix, &y, &r2);
    }
    /* the same additions to x and to its reloaded copy y, whose fresh memory held other bytes: the same files */
    v = new_vectors(&r, ix, 1);
    fuzz_fill = 0x33;
    FUZZ_CHECK(polopt_mips_add(ix, 1, v) == POLOPT_OK, "polopt_mips_add fails on a loaded index");
    fuzz_fill = 0x44;
    FUZZ_CHECK(polopt_mips_add(&y, 1, v) == POLOPT_OK, "polopt_mips_add fails on a reloaded index");
    free(v);
    s3 = save_index(ix);
    free(s2.p);
    s2 = save_index(&y);
    if (FUZZ_PURE_SAVE) FUZZ_CHECK(same_bytes(s2, s3), "the saved file depends on uninitialised memory");
    must_load(&z, s3, "a saved index does not reload");
    free(s1.p);
    s1 = save_index(&z);
    FUZZ_CHECK(same_bytes(s1, s3), "save(load(save(x))) differs from save(x)");
    search_all(&z, NULL, &r);
    polopt_mips_free(&z);
    polopt_mips_free(&y);
    free(s1.p);
    free(s2.p);
    free(s3.p);
    fuzz_fill = 0xbe;
}

static int logged;
static void count_log(void *user, polopt_result code, const char *message)
{
    (void)user;
    (void)code;
    (void)message;
    ++logged;
}

/* Load bytes from a buffer and from a file: the same result; used if it loads. */
static void try_load(const unsigned char *in, size_t size, int depth)
{
    polopt_mips ix, from_file;
    polopt_hooks hooks;
    polopt_result rc, rc_file;
    memset(&hooks, 0, sizeof hooks);
    hooks.log = count_log;
    logged = 0;
    rc = polopt_mips_load_buffer(&ix, in, size, &hooks);
    if (rc != POLOPT_OK) {
        FUZZ_CHECK_FAILURE(rc, ix.err, "polopt_mips_load_buffer");
        FUZZ_CHECK(logged >= 1, "a failed load did not call the log callback");
        FUZZ_CHECK(ix.n == 0 && ix.vectors == NULL && ix.owned_vectors == NULL && ix.links0 == NULL && ix.upper == NULL,
                   "a failed load left an index behind");
    }
    if (depth == 0) {
        rc_file = polopt_mips_load(&from_file, fuzz_write_file("index", in, size), NULL);
        if (rc_file != POLOPT_OK) FUZZ_CHECK_FAILURE(rc_file, from_file.err, "polopt_mips_load");
        if ((rc == POLOPT_OK) != (rc_file == POLOPT_OK))
            fprintf(stderr, "fuzz: buffer: %s\nfuzz: file: %s\n", ix.err.message, from_file.err.message);
        FUZZ_CHECK((rc == POLOPT_OK) == (rc_file == POLOPT_OK), "loading from a file and from a buffer disagree");
        if (rc_file == POLOPT_OK) {
            fuzz_bytes a = save_index(&ix), b = save_index(&from_file);
            FUZZ_CHECK(same_bytes(a, b), "the indexes loaded from a file and from a buffer differ");
            free(a.p);
            free(b.p);
            polopt_mips_free(&from_file);
        }
    }
    if (rc == POLOPT_OK) {
        exercise(&ix, in, size, depth);
        polopt_mips_free(&ix);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *sealed = fuzz_resealed(data, size, 0), *sized = fuzz_resealed(data, size, 1);
    try_load(data, size, 0);
    if (sealed && memcmp(sealed, data, size) != 0) try_load(sealed, size, 1);
    if (sized && memcmp(sized, sealed, size) != 0) try_load(sized, size, 1);
    free(sealed);
    free(sized);
    return 0;
}
