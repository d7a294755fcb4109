/* Fuzz driver of the interaction-log readers: the CSV/TSV reader (polopt_interactions_load_csv) and the loader of
   interaction files (polopt_interactions_load_buffer, polopt_interactions_load).  An input that starts with the
   file magic POLOPTIX is a file: loaded as it is, then with its checksums recomputed, then with the payload size
   of the header set to the input's too.  Any other input is a log: its first byte chooses the reader's
   configuration (delimiter, a weight column, the filters, the column names), the rest is written to a scratch file.
   Invariants:
     - a failed read or load says why and leaves the object zeroed;
     - a matrix that loads is well formed: offsets from 0 to nnz, every session with at least one item (and
       min_session_items, and every item in min_item_sessions sessions, when the filters repeat), items increasing
       and below n_items, every item in some session, finite positive weights, every id finding its own index;
     - reading the same log twice gives the same matrix; saving it and loading it back gives it again, and a
       second save the same bytes;
     - a file that loads is saved again byte for byte (the format has one encoding of each matrix), from a file as
       from a buffer. */
#define POLOPT_IMPLEMENTATION
#include "fuzz.h"

FUZZ_DEFINE_SAVER(save_log, polopt_interactions, polopt_interactions_save_buffer)

static void check_matrix(const polopt_interactions *m, const polopt_interactions_config *c)
{
    size_t s, k, *degree;
    uint32_t back;
    FUZZ_CHECK(m->n_sessions >= 1 && m->n_items >= 1 && m->offsets && m->items && m->names, "an empty matrix loaded");
    FUZZ_CHECK(m->offsets[0] == 0 && m->offsets[m->n_sessions] == m->nnz, "offsets do not run from 0 to nnz");
    degree = (size_t *)calloc(m->n_items, sizeof(size_t));
    FUZZ_CHECK(degree != NULL, "out of memory in the driver");
    for (s = 0; s < m->n_sessions; ++s) {
        const size_t len = m->offsets[s + 1] - m->offsets[s];
        FUZZ_CHECK(m->offsets[s + 1] > m->offsets[s], "a session without items");
        FUZZ_CHECK(!c || !c->repeat_filters || len >= c->min_session_items, "a session below min_session_items");
        for (k = m->offsets[s]; k < m->offsets[s + 1]; ++k) {
            FUZZ_CHECK(m->items[k] < m->n_items, "an item outside the catalogue");
            FUZZ_CHECK(k == m->offsets[s] || m->items[k] > m->items[k - 1], "items not increasing in a session");
            FUZZ_CHECK(!m->weights || (m->weights[k] > 0.0f && isfinite(m->weights[k])), "a weight not finite > 0");
            degree[m->items[k]] += 1;
        }
        FUZZ_CHECK(polopt_interactions_find_session(m, polopt_interactions_session_name(m, s), &back) == POLOPT_OK &&
                   back == s, "a session id does not find its own index");
    }
    for (k = 0; k < m->n_items; ++k) {
        FUZZ_CHECK(degree[k] >= 1, "an item in no session");
        FUZZ_CHECK(!c || !c->repeat_filters || degree[k] >= c->min_item_sessions, "an item below min_item_sessions");
        FUZZ_CHECK(polopt_interactions_find_item(m, polopt_interactions_item_name(m, k), &back) == POLOPT_OK &&
                   back == k, "an item id does not find its own index");
    }
    free(degree);
}

/* Save, load back, save again: the same matrix and the same bytes. */
static void round_trip(const polopt_interactions *m, const polopt_interactions_config *c)
{
    polopt_interactions back;
    fuzz_bytes a = save_log(m), b;
    FUZZ_CHECK(polopt_interactions_load_buffer(&back, a.p, a.n, NULL) == POLOPT_OK, "a saved matrix does not load");
    check_matrix(&back, c);
    b = save_log(&back);
    FUZZ_CHECK(same_bytes(a, b), "save(load(save(x))) != save(x)");
    free(a.p), free(b.p);
    polopt_interactions_free(&back);
}

static void try_file(const unsigned char *in, size_t size, int depth)
{
    polopt_interactions m, f;
    polopt_result rc = polopt_interactions_load_buffer(&m, in, size, NULL), rc_file;
    if (rc != POLOPT_OK) {
        FUZZ_CHECK_FAILURE(rc, m.err, "polopt_interactions_load_buffer");
        FUZZ_CHECK(m.offsets == NULL && m.names == NULL && m.n_sessions == 0, "a failed load left a matrix behind");
    }
    if (depth == 0) {
        rc_file = polopt_interactions_load(&f, fuzz_write_file("interactions", in, size), NULL);
        FUZZ_CHECK((rc == POLOPT_OK) == (rc_file == POLOPT_OK), "loading from a file and from a buffer disagree");
        if (rc_file != POLOPT_OK) FUZZ_CHECK_FAILURE(rc_file, f.err, "polopt_interactions_load");
        polopt_interactions_free(&f);
    }
    if (rc == POLOPT_OK) {
        fuzz_bytes s;
        check_matrix(&m, NULL);
        s = save_log(&m);
        FUZZ_CHECK(s.n == size && memcmp(s.p, in, size) == 0, "a loaded file is not saved again byte for byte");
        free(s.p);
        round_trip(&m, NULL);
        polopt_interactions_free(&m);
    }
}

static polopt_interactions_config make_config(unsigned char b)
{
    polopt_interactions_config c = polopt_interactions_config_default();
    c.delimiter = (b & 1) ? '\t' : ',';
    if (b & 2) c.weight = "w";
    c.min_session_items = 1 + (size_t)((b >> 2) & 1) * 2;
    c.min_item_sessions = 1 + (size_t)((b >> 3) & 1);
    c.repeat_filters = !((b >> 4) & 1);
    if (b & 32) c.session = "user", c.item = "product";
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 8 && memcmp(data, "POLOPTIX", 8) == 0) {
        unsigned char *sealed = fuzz_resealed(data, size, 0), *sized = fuzz_resealed(data, size, 1);
        try_file(data, size, 0);
        if (sealed && memcmp(sealed, data, size) != 0) try_file(sealed, size, 1);
        if (sized && memcmp(sized, sealed, size) != 0) try_file(sized, size, 1);
        free(sealed), free(sized);
    } else if (size >= 1) {
        const polopt_interactions_config c = make_config(data[0]);
        const char *path = fuzz_write_file("log", data + 1, size - 1);
        polopt_interactions m, again;
        polopt_result rc = polopt_interactions_load_csv(&m, path, &c);
        if (rc != POLOPT_OK) {
            FUZZ_CHECK_FAILURE(rc, m.err, "polopt_interactions_load_csv");
            FUZZ_CHECK(m.offsets == NULL && m.names == NULL, "a failed read left a matrix behind");
            return 0;
        }
        check_matrix(&m, &c);
        FUZZ_CHECK(polopt_interactions_load_csv(&again, path, &c) == POLOPT_OK, "the same log read twice fails once");
        {
            fuzz_bytes a = save_log(&m), b = save_log(&again);
            FUZZ_CHECK(same_bytes(a, b), "the same log read twice gives two matrices");
            free(a.p), free(b.p);
        }
        round_trip(&m, &c);
        polopt_interactions_free(&m), polopt_interactions_free(&again);
    }
    return 0;
}
