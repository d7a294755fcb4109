/* Interaction logs as sparse matrices: against a reference built here by brute force (the distinct pairs in order
   of first appearance, the filters applied by their definition until nothing changes), the id maps both ways, every
   kind of bad row named by its line and column, the file format (round trips, every truncation, corrupted bytes,
   forged sizes), and every allocation failure. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TI_FILE(name) ("build/test_interactions_" TH_VARIANT "_" name)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* The matrix as "session:item" strings in CSR order, for comparing with a reference. */
static int has_pair(const polopt_interactions *m, const char *s, const char *a)
{
    uint32_t si, ai;
    size_t k;
    if (polopt_interactions_find_session(m, s, &si) != POLOPT_OK || si == POLOPT_NO_ITEM) return 0;
    if (polopt_interactions_find_item(m, a, &ai) != POLOPT_OK || ai == POLOPT_NO_ITEM) return 0;
    for (k = m->offsets[si]; k < m->offsets[si + 1]; ++k)
        if (m->items[k] == ai) return 1;
    return 0;
}

/* Invariants of every matrix: offsets increasing from 0 to nnz, every session non-empty, items increasing, names
   that find their own index. */
static void check_invariants(const polopt_interactions *m)
{
    size_t s, k, bad = 0;
    uint32_t back;
    CHECK(m->offsets[0] == 0 && m->offsets[m->n_sessions] == m->nnz);
    for (s = 0; s < m->n_sessions; ++s) {
        bad += m->offsets[s + 1] <= m->offsets[s];
        for (k = m->offsets[s]; k < m->offsets[s + 1]; ++k)
            bad += m->items[k] >= m->n_items || (k > m->offsets[s] && m->items[k] <= m->items[k - 1]);
        CHECK_OK(polopt_interactions_find_session(m, polopt_interactions_session_name(m, s), &back));
        bad += back != s;
    }
    for (k = 0; k < m->n_items; ++k) {
        CHECK_OK(polopt_interactions_find_item(m, polopt_interactions_item_name(m, k), &back));
        bad += back != k;
    }
    CHECK(bad == 0);
}

/* A small CSV with everything a real export has: a byte order mark, CRLF line ends, a quoted id with a comma, a
   blank line, a repeated pair (counted once, the first weight kept), extra columns in any order. */
static void interactions_csv_by_hand(void)
{
    polopt_interactions m;
    polopt_interactions_config c = polopt_interactions_config_default();
    uint32_t idx;
    write_file(TI_FILE("a.csv"), "\xef\xbb\xbf" "ts,item,session,w\r\n"
                                 "1,apple,u1,2\r\n"
                                 "2,\"pear, green\",u1,1.5\r\n"
                                 "\r\n"
                                 "3,apple,u2,4\r\n"
                                 "4,apple,u1,9\r\n"
                                 "5,fig,u3,1\r\n");
    c.weight = "w";
    CHECK_OK(polopt_interactions_load_csv(&m, TI_FILE("a.csv"), &c));
    CHECK(m.n_sessions == 3 && m.n_items == 3 && m.nnz == 4);
    CHECK(m.stats.rows == 5 && m.stats.duplicates == 1 && m.stats.dropped_sessions == 0);
    CHECK(strcmp(polopt_interactions_session_name(&m, 0), "u1") == 0);
    CHECK(strcmp(polopt_interactions_item_name(&m, 1), "pear, green") == 0); /* first appearance order */
    CHECK(polopt_interactions_item_name(&m, 3) == NULL && polopt_interactions_session_name(&m, 9) == NULL);
    CHECK(m.offsets[1] == 2 && m.items[0] == 0 && m.items[1] == 1);
    CHECK(m.weights && m.weights[0] == 2.0f && m.weights[1] == 1.5f); /* apple of u1: the first weight, 2 */
    CHECK(has_pair(&m, "u2", "apple") && has_pair(&m, "u3", "fig") && !has_pair(&m, "u2", "fig"));
    CHECK_OK(polopt_interactions_find_item(&m, "banana", &idx));
    CHECK(idx == POLOPT_NO_ITEM);
    check_invariants(&m);
    polopt_interactions_free(&m);
    /* the same as TSV (found by the name), no weight column: weights NULL */
    write_file(TI_FILE("b.tsv"), "session\titem\nu1\tapple\nu1\tpear, green\nu2\tapple\n");
    CHECK_OK(polopt_interactions_load_csv(&m, TI_FILE("b.tsv"), NULL));
    CHECK(m.n_sessions == 2 && m.n_items == 2 && m.nnz == 3 && m.weights == NULL);
    polopt_interactions_free(&m);
    remove(TI_FILE("a.csv")), remove(TI_FILE("b.tsv"));
}

/* Random logs against the brute-force reference: the distinct pairs; the filters by their definition, repeated
   until stable (or once each), on ids drawn with a skewed popularity so that filters bite. */
static void interactions_random_against_reference(void)
{
    enum { S = 300, I = 120, N = 3000 };
    static unsigned char pair[S][I], alive_pair[S][I];
    static uint32_t sess[N], item[N];
    polopt_rng rng;
    int trial;
    polopt_rng_seed(&rng, 31);
    for (trial = 0; trial < 6; ++trial) {
        polopt_interactions m;
        polopt_interactions_config c = polopt_interactions_config_default();
        size_t i, s, a, want_s = 0, want_i = 0, want_nnz = 0, bad = 0;
        unsigned char alive_s[S], alive_i[I];
        int changed = 1;
        FILE *f = fopen(TI_FILE("r.csv"), "wb");
        c.min_session_items = 1 + (size_t)(trial % 3) * 3;
        c.min_item_sessions = 1 + (size_t)(trial / 2) * 3;
        c.repeat_filters = trial % 2 == 0;
        memset(pair, 0, sizeof pair);
        fprintf(f, "item,session\n");
        for (i = 0; i < N; ++i) {
            const double u = polopt_rng_uniform(&rng);
            sess[i] = (uint32_t)polopt_rng_below(&rng, S);
            item[i] = (uint32_t)(u * u * u * I); /* popular items first, a long tail */
            pair[sess[i]][item[i]] = 1;
            fprintf(f, "i%u,s%u\n", item[i], sess[i]);
        }
        fclose(f);
        memset(alive_s, 1, sizeof alive_s), memset(alive_i, 1, sizeof alive_i);
        while (changed) { /* the definition: drop small sessions, then rare items, again while anything changes */
            changed = 0;
            for (s = 0; s < S; ++s) {
                size_t size = 0;
                for (a = 0; a < I; ++a) size += alive_s[s] && alive_i[a] && pair[s][a];
                if (alive_s[s] && size < c.min_session_items) alive_s[s] = 0, changed = 1;
            }
            for (a = 0; a < I; ++a) {
                size_t deg = 0;
                for (s = 0; s < S; ++s) deg += alive_s[s] && alive_i[a] && pair[s][a];
                if (alive_i[a] && deg < c.min_item_sessions) alive_i[a] = 0, changed = 1;
            }
            if (!c.repeat_filters) break;
        }
        for (s = 0; s < S; ++s)
            for (a = 0; a < I; ++a) alive_pair[s][a] = alive_s[s] && alive_i[a] && pair[s][a];
        for (s = 0; s < S; ++s) {
            size_t size = 0;
            for (a = 0; a < I; ++a) size += alive_pair[s][a];
            want_s += size > 0, want_nnz += size;
        }
        for (a = 0; a < I; ++a) {
            size_t deg = 0;
            for (s = 0; s < S; ++s) deg += alive_pair[s][a];
            want_i += deg > 0;
        }
        CHECK(want_nnz > 0);
        CHECK_OK(polopt_interactions_load_csv(&m, TI_FILE("r.csv"), &c));
        if (!m.names) continue;
        CHECK(m.n_sessions == want_s && m.n_items == want_i && m.nnz == want_nnz);
        for (s = 0; s < S; ++s)
            for (a = 0; a < I; ++a) {
                char sn[16], an[16];
                sprintf(sn, "s%lu", (unsigned long)s), sprintf(an, "i%lu", (unsigned long)a);
                bad += has_pair(&m, sn, an) != alive_pair[s][a];
            }
        CHECK(bad == 0);
        { /* sessions in order of first appearance in the file */
            size_t k = 0;
            for (i = 0; i < N && k < m.n_sessions; ++i) {
                uint32_t idx;
                char sn[16];
                sprintf(sn, "s%u", sess[i]);
                CHECK_OK(polopt_interactions_find_session(&m, sn, &idx));
                if (idx != POLOPT_NO_ITEM) {
                    bad += idx > k;
                    k += idx == k;
                }
            }
            CHECK(bad == 0 && k == m.n_sessions);
        }
        {
            size_t distinct = 0;
            for (s = 0; s < S; ++s)
                for (a = 0; a < I; ++a) distinct += pair[s][a];
            CHECK(m.stats.rows == N && m.stats.duplicates == N - distinct);
        }
        check_invariants(&m);
        printf("    min %lu/%lu, %s: %lu sessions, %lu items, %lu pairs (%lu duplicates, %lu rounds)\n",
               (unsigned long)c.min_session_items, (unsigned long)c.min_item_sessions,
               c.repeat_filters ? "repeated" : "once", (unsigned long)m.n_sessions, (unsigned long)m.n_items,
               (unsigned long)m.nnz, (unsigned long)m.stats.duplicates, (unsigned long)m.stats.filter_rounds);
        polopt_interactions_free(&m);
    }
    remove(TI_FILE("r.csv"));
}

/* From integer arrays: indices in numeric order of the ids present, ids as decimal strings, weights kept. */
static void interactions_from_integers(void)
{
    const uint32_t sess[7] = {40, 7, 40, 7, 4000000000u, 7, 40};
    const uint32_t item[7] = {5, 5, 9, 3, 3, 5, 5};
    const float w[7] = {1, 2, 3, 4, 5, 6, 7};
    polopt_interactions m;
    CHECK_OK(polopt_interactions_init(&m, 7, sess, item, w, NULL));
    CHECK(m.n_sessions == 3 && m.n_items == 3 && m.nnz == 5 && m.stats.duplicates == 2);
    CHECK(strcmp(polopt_interactions_session_name(&m, 0), "7") == 0);
    CHECK(strcmp(polopt_interactions_session_name(&m, 2), "4000000000") == 0);
    CHECK(strcmp(polopt_interactions_item_name(&m, 0), "3") == 0 && strcmp(polopt_interactions_item_name(&m, 2), "9") == 0);
    /* session 7: items 3 (w 4) and 5 (w 2, the first of two) */
    CHECK(m.offsets[1] == 2 && m.items[0] == 0 && m.items[1] == 1 && m.weights[0] == 4.0f && m.weights[1] == 2.0f);
    check_invariants(&m);
    polopt_interactions_free(&m);
    CHECK_RC(polopt_interactions_init(&m, 0, sess, item, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    {
        const float bad_w[2] = {1.0f, -1.0f};
        CHECK_RC(polopt_interactions_init(&m, 2, sess, item, bad_w, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(m.err.message, "weight[1]") != NULL);
    }
}

/* Every kind of bad input names its line and column, and leaves the object zeroed. */
static void interactions_bad_rows(void)
{
    static const struct {
        const char *text, *weight, *expect;
        polopt_result rc;
    } cases[] = {
        {"session,item\nu1,a\nu2\n", NULL, "line 3 has 1 fields", POLOPT_ERR_FORMAT},
        {"session,item\nu1,a\n,b\n", NULL, "line 3, column 'session' (1): an empty id", POLOPT_ERR_FORMAT},
        {"session,item\nu1,\n", NULL, "line 2, column 'item' (2): an empty id", POLOPT_ERR_FORMAT},
        {"session,item,w\nu1,a,1\nu1,b,0\n", "w", "line 3, column 'w' (3): '0' is not a weight", POLOPT_ERR_FORMAT},
        {"session,item,w\nu1,a,nan\n", "w", "line 2, column 'w' (3): 'nan'", POLOPT_ERR_FORMAT},
        {"session,item,w\nu1,a,1e39\n", "w", "line 2, column 'w' (3)", POLOPT_ERR_FORMAT},
        {"session,item\nu1,\"a\n", NULL, "line 2: unterminated quote", POLOPT_ERR_FORMAT},
        {"user,item\nu1,a\n", NULL, "no column named 'session'", POLOPT_ERR_FORMAT},
        {"session,item,item\nu1,a,b\n", NULL, "two columns named 'item'", POLOPT_ERR_FORMAT},
        {"session,item,w\nu1,a,1\n", "weight", "no column named 'weight'", POLOPT_ERR_FORMAT},
        {"", NULL, "is empty", POLOPT_ERR_FORMAT},
        {"session,item\n", NULL, "no rows", POLOPT_ERR_FORMAT},
        {"session,item\nu1,a\0b\n", NULL, "NUL byte", POLOPT_ERR_FORMAT},
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        polopt_interactions m;
        polopt_interactions_config c = polopt_interactions_config_default();
        FILE *f = fopen(TI_FILE("bad.csv"), "wb");
        size_t len = strlen(cases[k].text);
        if (strstr(cases[k].expect, "NUL")) len = strlen(cases[k].text) + 3; /* the bytes after the NUL too */
        fwrite(cases[k].text, 1, len, f);
        fclose(f);
        c.weight = cases[k].weight;
        CHECK_RC(polopt_interactions_load_csv(&m, TI_FILE("bad.csv"), &c), cases[k].rc);
        if (!strstr(m.err.message, cases[k].expect))
            th_fail(__FILE__, __LINE__, "case %lu: message '%s' lacks '%s'", (unsigned long)k, m.err.message,
                    cases[k].expect);
        CHECK(m.offsets == NULL && m.names == NULL && m.n_sessions == 0);
    }
    { /* the filters leave nothing */
        polopt_interactions m;
        polopt_interactions_config c = polopt_interactions_config_default();
        write_file(TI_FILE("bad.csv"), "session,item\nu1,a\nu2,b\n");
        c.min_item_sessions = 2;
        CHECK_RC(polopt_interactions_load_csv(&m, TI_FILE("bad.csv"), &c), POLOPT_ERR_DOMAIN);
        CHECK(strstr(m.err.message, "no interaction survives") != NULL);
        c = polopt_interactions_config_default(), c.min_session_items = 0;
        CHECK_RC(polopt_interactions_load_csv(&m, TI_FILE("bad.csv"), &c), POLOPT_ERR_INVALID_ARG);
        c = polopt_interactions_config_default(), c.delimiter = ';';
        CHECK_RC(polopt_interactions_load_csv(&m, TI_FILE("bad.csv"), &c), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_interactions_load_csv(&m, TI_FILE("no-such-file.csv"), NULL), POLOPT_ERR_IO);
        CHECK_RC(polopt_interactions_load_csv(&m, "build", NULL), POLOPT_ERR_IO);
        CHECK(strstr(m.err.message, "is a directory") != NULL);
        CHECK_RC(polopt_interactions_find_item(&m, "a", NULL), POLOPT_ERR_INVALID_ARG); /* zeroed object */
        CHECK(polopt_interactions_item_name(&m, 0) == NULL);
    }
    remove(TI_FILE("bad.csv"));
}

/* Save and load: the same matrix back (file and buffer), a second save byte-identical; every truncation and every
   single corrupted byte refused; a forged payload (re-sealed checksums) refused by its validation. */
static void interactions_files(void)
{
    enum { N = 400 };
    uint32_t sess[N], item[N];
    float w[N];
    polopt_interactions m, back;
    polopt_rng rng;
    unsigned char *buf, *again;
    size_t size, size2, i, cut, refused = 0;
    polopt_rng_seed(&rng, 8);
    for (i = 0; i < N; ++i) {
        sess[i] = (uint32_t)polopt_rng_below(&rng, 60);
        item[i] = (uint32_t)polopt_rng_below(&rng, 90);
        w[i] = 0.5f + (float)polopt_rng_below(&rng, 4);
    }
    CHECK_OK(polopt_interactions_init(&m, N, sess, item, w, NULL));
    CHECK_OK(polopt_interactions_save(&m, TI_FILE("m.bin"), &m.err));
    CHECK_OK(polopt_interactions_load(&back, TI_FILE("m.bin"), NULL));
    CHECK(back.n_sessions == m.n_sessions && back.n_items == m.n_items && back.nnz == m.nnz);
    CHECK(memcmp(back.offsets, m.offsets, (m.n_sessions + 1) * sizeof(size_t)) == 0);
    CHECK(memcmp(back.items, m.items, m.nnz * sizeof(uint32_t)) == 0);
    CHECK(memcmp(back.weights, m.weights, m.nnz * sizeof(float)) == 0);
    CHECK(back.names_bytes == m.names_bytes && memcmp(back.names, m.names, m.names_bytes) == 0);
    CHECK(back.stats.rows == N && back.stats.duplicates == m.stats.duplicates);
    check_invariants(&back);
    CHECK_OK(polopt_interactions_save_buffer(&m, NULL, 0, &size, NULL));
    buf = (unsigned char *)malloc(size), again = (unsigned char *)malloc(size);
    CHECK_OK(polopt_interactions_save_buffer(&m, buf, size, &size, NULL));
    CHECK_OK(polopt_interactions_save_buffer(&back, again, size, &size2, NULL));
    CHECK(size2 == size && memcmp(buf, again, size) == 0);
    CHECK_RC(polopt_interactions_save_buffer(&m, buf, size - 1, &size2, NULL), POLOPT_ERR_INVALID_ARG);
    polopt_interactions_free(&back);
    for (cut = 0; cut < size; ++cut) { /* every truncation */
        refused += polopt_interactions_load_buffer(&back, buf, cut, NULL) != POLOPT_OK && back.names == NULL;
    }
    CHECK(refused == size);
    for (refused = 0, i = 0; i < size; ++i) { /* every corrupted byte */
        memcpy(again, buf, size);
        again[i] ^= 0x20;
        refused += polopt_interactions_load_buffer(&back, again, size, NULL) != POLOPT_OK;
        polopt_interactions_free(&back);
    }
    CHECK(refused == size);
    { /* forged payloads, checksums re-sealed: each fails its own check */
        const size_t items_at = 128 + 4 * m.n_sessions, names_at = items_at + 8 * m.nnz;
        struct {
            size_t at;
            unsigned char value;
            const char *expect;
        } forge[4];
        size_t f;
        forge[0].at = 128, forge[0].value = 0, forge[0].expect = "at least one";        /* session 0 with 0 items */
        forge[1].at = items_at + 3, forge[1].value = 0x7f, forge[1].expect = "outside the catalogue";
        forge[2].at = names_at, forge[2].value = 0, forge[2].expect = "empty";          /* a session id emptied */
        forge[3].at = items_at + 4 * m.nnz + 3, forge[3].value = 0xff, forge[3].expect = "weight 0";
        for (f = 0; f < 4; ++f) {
            memcpy(again, buf, size);
            again[forge[f].at] = forge[f].value;
            th_reseal(again, size);
            CHECK_RC(polopt_interactions_load_buffer(&back, again, size, NULL), POLOPT_ERR_FORMAT);
            if (!strstr(back.err.message, forge[f].expect))
                th_fail(__FILE__, __LINE__, "forgery %lu: '%s' lacks '%s'", (unsigned long)f, back.err.message,
                        forge[f].expect);
        }
        /* two items with the same id: the second session id made equal to the first */
        memcpy(again, buf, size);
        {
            const char *first = (const char *)again + names_at, *second = first + strlen(first) + 1;
            if (strlen(first) == strlen(second)) {
                memcpy((char *)second, first, strlen(first));
                th_reseal(again, size);
                CHECK_RC(polopt_interactions_load_buffer(&back, again, size, NULL), POLOPT_ERR_FORMAT);
                CHECK(strstr(back.err.message, "appears twice") != NULL);
            }
        }
    }
    { /* an item in no session (found by fuzzing): sessions {4, 5} and {6}, the second's item made 4 */
        const uint32_t s3[3] = {1, 1, 2}, i3[3] = {4, 5, 6};
        polopt_interactions small;
        unsigned char tiny[512];
        size_t tiny_size;
        CHECK_OK(polopt_interactions_init(&small, 3, s3, i3, NULL, NULL));
        CHECK(small.n_items == 3 && small.items[2] != small.items[0]);
        CHECK_OK(polopt_interactions_save_buffer(&small, tiny, sizeof tiny, &tiny_size, NULL));
        CHECK(128 + 4 * 2 + 4 * 3 <= tiny_size);
        memset(tiny + 128 + 4 * 2 + 4 * 2, 0, 4); /* the file is little-endian; items[0] < 3 */
        tiny[128 + 4 * 2 + 4 * 2] = (unsigned char)small.items[0];
        th_reseal(tiny, tiny_size);
        CHECK_RC(polopt_interactions_load_buffer(&back, tiny, tiny_size, NULL), POLOPT_ERR_FORMAT);
        CHECK(strstr(back.err.message, "is in no session") != NULL);
        polopt_interactions_free(&small);
    }
    CHECK_RC(polopt_interactions_load(&back, TI_FILE("none.bin"), NULL), POLOPT_ERR_IO);
    CHECK_RC(polopt_interactions_load(&back, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_interactions_save(&back, TI_FILE("m.bin"), NULL), POLOPT_ERR_INVALID_ARG); /* zeroed */
    polopt_interactions_free(&m);
    free(buf), free(again);
    remove(TI_FILE("m.bin"));
}

static polopt_result interactions_alloc_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    const uint32_t sess[6] = {1, 2, 1, 3, 3, 3}, item[6] = {4, 4, 5, 5, 6, 4};
    polopt_interactions_config c = polopt_interactions_config_default();
    polopt_interactions m, back;
    polopt_result rc;
    unsigned char buf[4096];
    size_t size;
    (void)user;
    memset(&back, 0, sizeof back);
    c.hooks = *hooks;
    c.min_item_sessions = 2;
    if (stage == 0) rc = polopt_interactions_load_csv(&m, TI_FILE("alloc.csv"), &c);
    else rc = polopt_interactions_init(&m, 6, sess, item, NULL, &c);
    if (rc == POLOPT_OK) rc = polopt_interactions_save_buffer(&m, buf, sizeof buf, &size, NULL);
    if (rc == POLOPT_OK) rc = polopt_interactions_load_buffer(&back, buf, size, hooks);
    polopt_interactions_free(&back);
    polopt_interactions_free(&m);
    return rc;
}

static void interactions_allocation_failures(void)
{
    write_file(TI_FILE("alloc.csv"), "session,item\n1,4\n2,4\n1,5\n3,5\n3,6\n3,4\n");
    CHECK_EACH_ALLOCATION_FAILURE(interactions_alloc_scenario, 0, NULL);
    CHECK_EACH_ALLOCATION_FAILURE(interactions_alloc_scenario, 1, NULL);
    remove(TI_FILE("alloc.csv"));
}

const th_test th_suite_interactions[] = {TH(interactions_csv_by_hand), TH(interactions_random_against_reference),
                                         TH(interactions_from_integers), TH(interactions_bad_rows),
                                         TH(interactions_files), TH(interactions_allocation_failures), TH_END};
