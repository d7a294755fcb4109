/* The session-completion protocol: the splits by their definition (a partition of the splittable sessions in the
   configured proportions, each session's items into disjoint X and Y of the configured sizes, reproducible by
   seed); contexts against the mean computed here; the exclusion of observed items at serving and in evaluation
   against a brute-force ranking in double; bad input and every allocation failure. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A log of S sessions over I items with sizes 1 .. 12 (some of one item, which cannot be split). */
static void make_log(polopt_interactions *m, size_t S, size_t I, uint64_t seed)
{
    uint32_t *sess = (uint32_t *)malloc(S * 12 * sizeof(uint32_t)), *item = (uint32_t *)malloc(S * 12 * sizeof(uint32_t));
    polopt_rng rng;
    size_t s, t, n = 0;
    polopt_rng_seed(&rng, seed);
    for (s = 0; s < S; ++s) {
        const size_t len = s % 17 == 0 ? 1 : 2 + (size_t)polopt_rng_below(&rng, 11);
        for (t = 0; t < len; ++t) sess[n] = (uint32_t)s, item[n++] = (uint32_t)polopt_rng_below(&rng, I);
    }
    CHECK_OK(polopt_interactions_init(m, n, sess, item, NULL, NULL));
    free(sess), free(item);
}

static void completion_split_by_definition(void)
{
    polopt_interactions log;
    polopt_completion sp, again, other;
    polopt_completion_config c = polopt_completion_config_default();
    unsigned char *seen;
    size_t p, j, t, total = 0, ones = 0, bad = 0, s;
    make_log(&log, 500, 300, 4);
    for (s = 0; s < log.n_sessions; ++s) ones += log.offsets[s + 1] - log.offsets[s] == 1;
    c.val_fraction = 0.15, c.test_fraction = 0.2, c.observed_fraction = 0.4, c.seed = 9;
    CHECK_OK(polopt_completion_init(&sp, &log, &c));
    CHECK(sp.skipped == ones && ones > 0);
    for (p = 0; p < 3; ++p) total += sp.n[p];
    CHECK(total + sp.skipped == log.n_sessions);
    CHECK(sp.n[2] == (size_t)floor(0.2 * (double)total + 0.5) && sp.n[1] == (size_t)floor(0.15 * (double)total + 0.5));
    seen = (unsigned char *)calloc(log.n_sessions, 1);
    for (p = 0; p < 3; ++p)
        for (j = 0; j < sp.n[p]; ++j) {
            const uint32_t s2 = sp.sessions[p][j];
            const size_t len = log.offsets[s2 + 1] - log.offsets[s2];
            const polopt_sets *X = &sp.observed[p], *Y = &sp.held_out[p];
            const size_t nx = X->offsets[j + 1] - X->offsets[j], ny = Y->offsets[j + 1] - Y->offsets[j];
            size_t want = (size_t)floor(0.4 * (double)len);
            want = want < 1 ? 1 : want > len - 1 ? len - 1 : want;
            bad += seen[s2]++ != 0 || len < 2 || nx != want || nx + ny != len;
            bad += j > 0 && sp.sessions[p][j] <= sp.sessions[p][j - 1];
            for (t = 0; t < nx; ++t) { /* X and Y: disjoint, and together the session's items */
                const uint32_t a = X->items[X->offsets[j] + t];
                size_t u, in_s = 0, in_y = 0;
                for (u = log.offsets[s2]; u < log.offsets[s2 + 1]; ++u) in_s += log.items[u] == a;
                for (u = Y->offsets[j]; u < Y->offsets[j + 1]; ++u) in_y += Y->items[u] == a;
                bad += in_s != 1 || in_y != 0;
            }
        }
    CHECK(bad == 0);
    CHECK_OK(polopt_completion_init(&again, &log, &c));
    CHECK(again.n[0] == sp.n[0] && memcmp(again.sessions[0], sp.sessions[0], sp.n[0] * sizeof(uint32_t)) == 0);
    CHECK(memcmp(again.observed[2].items, sp.observed[2].items,
                 sp.observed[2].offsets[sp.n[2]] * sizeof(uint32_t)) == 0);
    c.seed = 10;
    CHECK_OK(polopt_completion_init(&other, &log, &c));
    CHECK(memcmp(other.sessions[2], sp.sessions[2], sp.n[2] * sizeof(uint32_t)) != 0);
    {
        const polopt_csr A = polopt_completion_matrix(&sp, POLOPT_PART_TRAIN); /* whole sessions: the log's rows */
        CHECK(A.n_rows == sp.n[0] && A.n_cols == log.n_items && A.values == NULL && A.offsets == sp.whole[0].offsets);
        for (j = 0; j < sp.n[0]; ++j) {
            const uint32_t s2 = sp.sessions[0][j];
            const size_t len = log.offsets[s2 + 1] - log.offsets[s2];
            bad += A.offsets[j + 1] - A.offsets[j] != len ||
                   memcmp(A.cols + A.offsets[j], log.items + log.offsets[s2], len * sizeof(uint32_t)) != 0;
        }
        CHECK(bad == 0);
    }
    { /* the paper's SVD input: the observed halves, row j = X of training session j, a subset of its session */
        const polopt_csr A = polopt_sets_matrix(&sp.observed[0], log.n_items);
        CHECK(A.n_rows == sp.n[0] && A.n_cols == log.n_items && A.values == NULL);
        for (j = 0; j < sp.n[0]; ++j) {
            const uint32_t s2 = sp.sessions[0][j];
            const size_t nx = sp.observed[0].offsets[j + 1] - sp.observed[0].offsets[j];
            const uint32_t *x = sp.observed[0].items + sp.observed[0].offsets[j];
            bad += A.offsets[j + 1] - A.offsets[j] != nx || memcmp(A.cols + A.offsets[j], x, nx * sizeof *x) != 0;
            for (t = A.offsets[j]; t < A.offsets[j + 1]; ++t) {
                size_t u, in_s = 0;
                for (u = log.offsets[s2]; u < log.offsets[s2 + 1]; ++u) in_s += log.items[u] == A.cols[t];
                bad += in_s != 1;
            }
        }
        CHECK(bad == 0);
        CHECK(polopt_sets_matrix(NULL, 4).offsets == NULL); /* an empty view, never a crash */
    }
    polopt_completion_free(&again), polopt_completion_free(&other);
    /* bad input */
    c = polopt_completion_config_default(), c.val_fraction = 0.6, c.test_fraction = 0.4;
    CHECK_RC(polopt_completion_init(&other, &log, &c), POLOPT_ERR_INVALID_ARG);
    c = polopt_completion_config_default(), c.observed_fraction = 1.0;
    CHECK_RC(polopt_completion_init(&other, &log, &c), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(other.err.message, "observed_fraction") != NULL);
    CHECK_RC(polopt_completion_init(&other, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    {
        const uint32_t ss[3] = {0, 1, 2}, ii[3] = {5, 6, 7};
        polopt_interactions singles;
        CHECK_OK(polopt_interactions_init(&singles, 3, ss, ii, NULL, NULL));
        CHECK_RC(polopt_completion_init(&other, &singles, NULL), POLOPT_ERR_DOMAIN);
        polopt_interactions_free(&singles);
    }
    polopt_completion_free(&sp);
    polopt_interactions_free(&log);
    free(seen);
}

/* Contexts: the mean of beta over X, against the sum written out here. */
static void completion_contexts_are_means(void)
{
    enum { L = 6 };
    polopt_interactions log;
    polopt_completion sp;
    float *beta, *X;
    polopt_rng rng;
    size_t j, t, d;
    double worst = 0.0;
    make_log(&log, 200, 90, 5);
    CHECK_OK(polopt_completion_init(&sp, &log, NULL));
    beta = (float *)malloc(log.n_items * L * sizeof(float));
    X = (float *)malloc(sp.n[1] * L * sizeof(float));
    polopt_rng_seed(&rng, 2);
    polopt_rng_normals(&rng, log.n_items * L, beta);
    CHECK_OK(polopt_completion_contexts(&sp, POLOPT_PART_VAL, beta, L, X));
    for (j = 0; j < sp.n[1]; ++j)
        for (d = 0; d < L; ++d) {
            double sum = 0.0;
            const size_t a0 = sp.observed[1].offsets[j], a1 = sp.observed[1].offsets[j + 1];
            for (t = a0; t < a1; ++t) sum += beta[sp.observed[1].items[t] * L + d];
            worst = fmax(worst, fabs(X[j * L + d] - sum / (double)(a1 - a0)));
        }
    CHECK(worst < 1e-5);
    CHECK_RC(polopt_completion_contexts(&sp, (polopt_part)3, beta, L, X), POLOPT_ERR_INVALID_ARG);
    polopt_completion_free(&sp);
    CHECK_RC(polopt_completion_contexts(&sp, POLOPT_PART_VAL, beta, L, X), POLOPT_ERR_INVALID_ARG); /* freed */
    polopt_interactions_free(&log);
    free(beta), free(X);
}

/* Serving and evaluating without the observed items, against a brute-force ranking of f = h^T beta in double:
   polopt_policy_topk_excluding's ids, and polopt_evaluate_excluding's R@1, HR@k and nDCG@k (with the gains of
   polopt_evaluate: 1 / log2(rank + 1), normalised by the ideal ordering of min(k, |Y|) hits). */
static void completion_excluding_against_brute_force(void)
{
    enum { L = 8, K = 5 };
    polopt_interactions log;
    polopt_completion sp;
    polopt_policy pol;
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    polopt_mips index;
    polopt_mips_scratch scratch;
    polopt_dataset data;
    polopt_eval ev, plain;
    float *beta, *X, h[L];
    double *f, r1 = 0.0, hr = 0.0, nd = 0.0, r1_all = 0.0;
    uint32_t ids[K + 16];
    polopt_rng rng;
    size_t j, a, t, bad = 0, P, n;
    make_log(&log, 1500, 40, 6); /* few items: the greedy action often hits Y, so R@1 is tested on real counts */
    CHECK_OK(polopt_completion_init(&sp, &log, NULL));
    P = log.n_items, n = sp.n[2];
    beta = (float *)malloc(P * L * sizeof(float)), X = (float *)malloc(n * L * sizeof(float));
    f = (double *)malloc(P * sizeof(double));
    polopt_rng_seed(&rng, 3);
    polopt_rng_normals(&rng, P * L, beta);
    CHECK_OK(polopt_completion_contexts(&sp, POLOPT_PART_TEST, beta, L, X));
    pc.init = POLOPT_INIT_RANDOM, pc.seed = 4;
    CHECK_OK(polopt_policy_init(&pol, &pc));
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    CHECK_OK(polopt_mips_scratch_init(&scratch, &index, K + 16, NULL));
    for (j = 0; j < n; ++j) {
        const polopt_sets *Xs = &sp.observed[2], *Ys = &sp.held_out[2];
        const uint32_t *ex = Xs->items + Xs->offsets[j], *y = Ys->items + Ys->offsets[j];
        const size_t nex = Xs->offsets[j + 1] - Xs->offsets[j], ny = Ys->offsets[j + 1] - Ys->offsets[j];
        double dcg = 0.0, ideal = 0.0;
        int hit = 0;
        size_t rank = 0, best_all = 0;
        unsigned char *taken = (unsigned char *)calloc(P, 1);
        CHECK_OK(polopt_policy_embed(&pol, 1, X + j * L, L, h));
        for (a = 0; a < P; ++a) {
            double d = 0.0;
            size_t q;
            for (q = 0; q < L; ++q) d += (double)h[q] * beta[a * L + q];
            f[a] = d;
            if (f[a] > f[best_all]) best_all = a;
        }
        for (t = 0; t < nex; ++t) taken[ex[t]] = 1; /* excluded */
        CHECK_OK(polopt_policy_topk_excluding(&pol, &index, &scratch, X + j * L, nex, ex, K, 0, ids, NULL));
        for (rank = 0; rank < K; ++rank) { /* the best remaining item, by brute force */
            size_t best = P, u;
            for (a = 0; a < P; ++a)
                if (!taken[a] && (best == P || f[a] > f[best])) best = a;
            taken[best] = 1;
            bad += ids[rank] != best;
            for (u = 0; u < ny; ++u)
                if (y[u] == best) {
                    hit = 1;
                    dcg += 1.0 / log2((double)rank + 2.0);
                    if (rank == 0) r1 += 1.0;
                }
        }
        for (rank = 0; rank < K && rank < ny; ++rank) ideal += 1.0 / log2((double)rank + 2.0);
        hr += hit, nd += dcg / ideal;
        for (t = 0; t < ny; ++t) r1_all += y[t] == best_all;
        free(taken);
    }
    CHECK(bad == 0);
    data = polopt_completion_dataset(&sp, POLOPT_PART_TEST, X, L);
    CHECK_OK(polopt_evaluate_excluding(&pol, &index, &scratch, &data, &sp.observed[2], K, 0, &ev));
    CHECK_NEAR(ev.reward, r1 / (double)n, 1e-9);
    CHECK_NEAR(ev.hit_rate, hr / (double)n, 1e-9);
    CHECK_NEAR(ev.ndcg, nd / (double)n, 1e-6);
    CHECK(ev.empty == 0);
    CHECK_OK(polopt_evaluate(&pol, &index, &scratch, &data, K, 0, &plain)); /* R@1 over all items */
    CHECK_NEAR(plain.reward, r1_all / (double)n, 1e-9);
    printf("    random policy on %lu test sessions: R@1 all %.3f, ex-X %.3f; HR@5 ex-X %.3f\n", (unsigned long)n,
           plain.reward, ev.reward, ev.hit_rate);
    CHECK(r1 > 5 && r1_all > 5 && hr > r1);
    /* bad input: an unsorted exclusion, too much excluded for the catalogue or for the scratch */
    {
        const uint32_t unsorted[2] = {5, 3};
        polopt_mips_scratch small;
        CHECK_RC(polopt_policy_topk_excluding(&pol, &index, &scratch, X, 2, unsorted, K, 0, ids, NULL),
                 POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_policy_topk_excluding(&pol, &index, &scratch, X, 0, NULL, P + 1, 0, ids, NULL),
                 POLOPT_ERR_INVALID_ARG);
        CHECK_OK(polopt_mips_scratch_init(&small, &index, K, NULL));
        CHECK_RC(polopt_evaluate_excluding(&pol, &index, &small, &data, &sp.observed[2], K, 0, &ev),
                 POLOPT_ERR_INVALID_ARG);
        polopt_mips_scratch_free(&small);
    }
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&index);
    polopt_policy_free(&pol);
    polopt_completion_free(&sp);
    polopt_interactions_free(&log);
    free(beta), free(X), free(f);
}

static polopt_result completion_alloc_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    const uint32_t ss[12] = {0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4}, ii[12] = {1, 2, 3, 1, 4, 5, 6, 1, 2, 3, 7, 8};
    polopt_interactions_config ic = polopt_interactions_config_default();
    polopt_completion_config c = polopt_completion_config_default();
    polopt_interactions log;
    polopt_completion sp;
    polopt_result rc;
    (void)stage, (void)user;
    memset(&sp, 0, sizeof sp);
    ic.hooks = *hooks, c.hooks = *hooks;
    c.val_fraction = 0.25, c.test_fraction = 0.25;
    rc = polopt_interactions_init(&log, 12, ss, ii, NULL, &ic);
    if (rc == POLOPT_OK) rc = polopt_completion_init(&sp, &log, &c);
    polopt_completion_free(&sp);
    polopt_interactions_free(&log);
    return rc;
}

static void completion_allocation_failures(void)
{
    CHECK_EACH_ALLOCATION_FAILURE(completion_alloc_scenario, 0, NULL);
}

const th_test th_suite_completion[] = {TH(completion_split_by_definition), TH(completion_contexts_are_means),
                                       TH(completion_excluding_against_brute_force),
                                       TH(completion_allocation_failures), TH_END};
