#define _POSIX_C_SOURCE 200809L /* mkdir, rmdir */
/* What a hostile or extreme input can do: finite inputs whose products overflow float must give
   POLOPT_ERR_NONFINITE, never NaN with POLOPT_OK; files that are not files, and reserved header bytes. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#if defined(__unix__) || defined(__APPLE__)
#define TH_POSIX 1
#include <sys/stat.h>
#include <unistd.h>
#else
#define TH_POSIX 0
#endif

enum { HP = 64, HL = 4, HN = 8 };

/* Items with small integer entries and contexts near +-1e38: every h^T beta overflows float (4 x 1e38 x 3). */
static void extreme_problem(float *beta, float *X)
{
    size_t i;
    for (i = 0; i < (size_t)HP * HL; ++i) beta[i] = (float)(1 + i % 3);
    for (i = 0; i < (size_t)HN * HL; ++i) X[i] = (i % 2 ? -1e38f : 1e38f) * (i % 4 < 2 ? 1.0f : -1.0f) + 1e37f;
}

static polopt_result constant_reward(void *user, uint32_t context, size_t n, const uint32_t *items, float *out)
{
    size_t i;
    (void)user, (void)context;
    for (i = 0; i < n; ++i) out[i] = (float)(items[i] % 2);
    return POLOPT_OK;
}

static void hardening_overflowing_scores_are_errors(void)
{
    static float beta[HP * HL], X[HN * HL];
    polopt_mips ix;
    polopt_policy p, start;
    polopt_policy_config pc = polopt_policy_config_default(HL, HL);
    polopt_dataset d;
    double value = 0.0;
    int m;
    extreme_problem(beta, X);
    CHECK_OK(polopt_mips_init_exact(&ix, HP, HL, beta, 0, NULL));
    CHECK_OK(polopt_policy_init(&p, &pc)); /* identity: h = x */
    memset(&d, 0, sizeof d);
    d.n = HN, d.X = X, d.ldx = HL, d.reward = constant_reward;
    /* the exact value of the policy */
    CHECK_RC(polopt_policy_value(&p, &ix, &d, &value), POLOPT_ERR_NONFINITE);
    /* every training method: an error, the message in the trainer, the policy untouched */
    CHECK_OK(polopt_policy_init(&start, &pc));
    for (m = 0; m < 3; ++m) {
        polopt_trainer tr;
        polopt_trainer_config tc = polopt_trainer_config_default();
        polopt_train_stats st;
        float G[HL * 2];
        const uint32_t ctx[2] = {0, 1};
        tc.estimator.method = (polopt_method)m;
        tc.estimator.K = 8, tc.estimator.S = 16, tc.estimator.batch = 4;
        CHECK_OK(polopt_trainer_init(&tr, &p, &ix, &tc));
        CHECK_RC(polopt_trainer_epoch(&tr, &d, &st), POLOPT_ERR_NONFINITE);
        CHECK(tr.err.message[0] != '\0');
        CHECK(memcmp(p.theta, start.theta, HL * HL * sizeof(float)) == 0);
        CHECK_RC(polopt_trainer_embedding_gradient(&tr, &d, 2, ctx, X, G, &st), POLOPT_ERR_NONFINITE);
        polopt_trainer_free(&tr);
    }
    polopt_policy_free(&start);
    { /* searches whose inner products overflow: an error, on both kinds of index, never inf or NaN scores */
        polopt_mips hn;
        polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
        polopt_mips_scratch sc;
        uint32_t ids[2 * 4]; /* two queries of the batch, k = 4 */
        float scores[4];
        hc.M = 4;
        CHECK_OK(polopt_mips_init_hnsw(&hn, HP, HL, beta, 0, &hc));
        CHECK_OK(polopt_mips_scratch_init(&sc, &hn, 16, NULL));
        CHECK_RC(polopt_mips_search(&hn, &sc, X, 4, 16, ids, scores), POLOPT_ERR_NONFINITE);
        CHECK(strstr(sc.err.message, "overflow") != NULL);
        CHECK_RC(polopt_mips_search_from(&hn, &sc, X, 4, 16, NULL, 0, 0, ids, NULL), POLOPT_ERR_NONFINITE);
        polopt_mips_scratch_free(&sc);
        CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 16, NULL));
        CHECK_RC(polopt_mips_search_batch(&ix, &sc, 2, X, HL, 4, 0, ids, NULL), POLOPT_ERR_NONFINITE);
        polopt_mips_scratch_free(&sc);
        polopt_mips_free(&hn);
    }
    { /* an embedding x theta that overflows, from finite x and theta */
        float H[HL];
        size_t i;
        for (i = 0; i < (size_t)HL * HL; ++i) p.theta[i] = 3e38f;
        CHECK_RC(polopt_policy_embed(&p, 1, X, HL, H), POLOPT_ERR_NONFINITE);
    }
    { /* temperatures: 1/T must be a float; a tiny T that makes f = h^T beta / T overflow is an error in top-k */
        polopt_policy tiny;
        polopt_policy_config tc = polopt_policy_config_default(HL, HL);
        polopt_mips_scratch sc;
        uint32_t ids[2];
        float f[2], x[HL] = {1, 1, 1, 1};
        tc.temperature = 1e-39f;
        CHECK_RC(polopt_policy_init(&tiny, &tc), POLOPT_ERR_INVALID_ARG);
        tc.temperature = 3e-39f;
        CHECK_OK(polopt_policy_init(&tiny, &tc));
        CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 4, NULL));
        CHECK_RC(polopt_policy_topk(&tiny, &ix, &sc, x, 2, 4, ids, f), POLOPT_ERR_NONFINITE);
        CHECK_OK(polopt_policy_topk(&tiny, &ix, &sc, x, 2, 4, ids, NULL)); /* the ids alone are well defined */
        polopt_mips_scratch_free(&sc);
        polopt_policy_free(&tiny);
    }
    polopt_policy_free(&p);
    polopt_mips_free(&ix);
}

/* Softmax and log-sum-exp on every kernel, with inputs at the edges of float: results finite or an error. */
static void hardening_softmax_at_the_edges(void)
{
    static const float edge[6] = {-FLT_MAX, FLT_MAX, -1e38f, 3e38f, 0.0f, -0.0f};
    polopt_isa isas[8];
    const size_t n_isa = th_isas(isas);
    size_t k, i;
    for (k = 0; k < n_isa; ++k) {
        float out[6];
        double lse = 0.0;
        CHECK_OK(polopt_softmax_isa(isas[k], 6, edge, 1.0f, out));
        for (i = 0; i < 6; ++i) CHECK(out[i] >= 0.0f && out[i] <= 1.0f);
        CHECK_OK(polopt_logsumexp_isa(isas[k], 6, edge, 1.0f, &lse));
        CHECK(lse >= (double)FLT_MAX && lse <= DBL_MAX);
        /* a temperature that makes x / T overflow */
        {
            const polopt_result rc = polopt_softmax_isa(isas[k], 6, edge, 1e-30f, out);
            if (rc == POLOPT_OK)
                for (i = 0; i < 6; ++i) CHECK(out[i] >= 0.0f && out[i] <= 1.0f);
            else
                CHECK(rc == POLOPT_ERR_NONFINITE || rc == POLOPT_ERR_DOMAIN);
        }
    }
}

/* A directory where a file is expected: a clear message, not "shorter than the header". */
static void hardening_directory_is_not_a_file(void)
{
#if TH_POSIX
    polopt_policy p;
    polopt_mips ix;
    mkdir("build/test_a_directory", 0700);
    CHECK_RC(polopt_policy_load(&p, "build/test_a_directory", NULL), POLOPT_ERR_IO);
    CHECK(strstr(p.err.message, "is a directory") != NULL);
    CHECK_RC(polopt_mips_load(&ix, "build/test_a_directory", NULL), POLOPT_ERR_IO);
    CHECK(strstr(ix.err.message, "is a directory") != NULL);
    rmdir("build/test_a_directory");
#endif
}

/* Every header byte a policy does not use must be zero (so a future version can give them a meaning). */
static void hardening_policy_reserved_bytes(void)
{
    polopt_policy p, back;
    polopt_policy_config pc = polopt_policy_config_default(3, 2);
    unsigned char buf[128 + 3 * 2 * 4];
    size_t size = 0, at;
    pc.init = POLOPT_INIT_RANDOM;
    CHECK_OK(polopt_policy_init(&p, &pc));
    CHECK_OK(polopt_policy_save_buffer(&p, buf, sizeof buf, &size, &p.err));
    CHECK_OK(polopt_policy_load_buffer(&back, buf, size, NULL));
    polopt_policy_free(&back);
    for (at = 44; at < 120; ++at) {
        if (at >= 72 && at < 88) continue; /* payload size and checksum */
        CHECK_OK(polopt_policy_save_buffer(&p, buf, sizeof buf, &size, &p.err));
        buf[at] = 1;
        th_reseal(buf, size);
        if (polopt_policy_load_buffer(&back, buf, size, NULL) != POLOPT_ERR_FORMAT)
            th_fail(__FILE__, __LINE__, "a reserved byte at %lu was accepted", (unsigned long)at);
    }
    polopt_policy_free(&p);
}

const th_test th_suite_hardening[] = {TH(hardening_overflowing_scores_are_errors), TH(hardening_softmax_at_the_edges),
                                      TH(hardening_directory_is_not_a_file), TH(hardening_policy_reserved_bytes),
                                      TH_END};
