/* Policy learning, against independent references: the proposal's draws against q (chi-square) and its log q
   against the formula; SNIS by hand; REINFORCE's mean against the exact gradient (standard errors); SNIS converging
   to it as S grows; the exact gradient against finite differences of R_hat(theta) computed in double here;
   training that raises the true value; evaluation metrics against a full sort; files; bad input. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A reward table r[i][a] for n contexts over P items. */
typedef struct table {
    size_t P, n;
    const float *r;
} table;

static polopt_result table_reward(void *user, uint32_t ctx, size_t n, const uint32_t *items, float *out)
{
    const table *t = (const table *)user;
    size_t s;
    if (ctx >= t->n) return POLOPT_ERR_INVALID_ARG;
    for (s = 0; s < n; ++s) out[s] = t->r[(size_t)ctx * t->P + items[s]];
    return POLOPT_OK;
}

/* The exact gradient with respect to h (SPEC §3) in double: pi = softmax(beta h / T), r_bar = sum pi r,
   g = sum pi (r - r_bar) beta / T.  Returns r_bar. */
static double exact_ref(size_t P, size_t L, const float *beta, const float *h, double T, const float *r, double *g)
{
    double *p = (double *)malloc(P * sizeof *p), mx = -INFINITY, Z = 0, rbar = 0;
    size_t a, j;
    for (a = 0; a < P; ++a) {
        double s = 0;
        for (j = 0; j < L; ++j) s += (double)h[j] * beta[a * L + j];
        p[a] = s / T;
        mx = p[a] > mx ? p[a] : mx;
    }
    for (a = 0; a < P; ++a) Z += (p[a] = exp(p[a] - mx));
    for (a = 0; a < P; ++a) rbar += (p[a] /= Z) * r[a];
    for (j = 0; j < L; ++j) g[j] = 0;
    for (a = 0; a < P; ++a)
        for (j = 0; j < L; ++j) g[j] += p[a] * (r[a] - rbar) * beta[a * L + j] / T;
    free(p);
    return rbar;
}

static void learn_proposal_matches_q(void)
{
    enum { P = 60, K = 10 };
    static const float eps_values[3] = {0.3f, 1.0f, 0.0f};
    uint32_t ids[K], draws[1000];
    float scores[K], lq[1000], lq2[1000];
    double obs[P], expect[P], q[P];
    polopt_proposal prop;
    polopt_rng rng;
    size_t e, i, a, rounds;
    polopt_rng_seed(&rng, 1);
    CHECK_OK(polopt_rng_choose(&rng, P, K, ids));
    for (i = 0; i < K; ++i) scores[i] = 2.0f * (float)polopt_rng_normal(&rng);
    CHECK_OK(polopt_proposal_init(&prop, P, K, NULL));
    for (e = 0; e < 3; ++e) {
        const double eps = eps_values[e];
        double z = 0;
        int bad_lq = 0;
        CHECK_OK(polopt_proposal_set(&prop, (float)eps, K, ids, scores));
        for (i = 0; i < K; ++i) z += exp(scores[i]);
        for (a = 0; a < P; ++a) q[a] = eps / P, obs[a] = 0;
        for (i = 0; i < K; ++i) q[ids[i]] += (1 - eps) * exp(scores[i]) / z;
        for (rounds = 0; rounds < 300; ++rounds) {
            CHECK_OK(polopt_proposal_sample(&prop, &rng, 1000, draws, lq));
            CHECK_OK(polopt_proposal_log_prob(&prop, 1000, draws, lq2));
            for (i = 0; i < 1000; ++i) {
                obs[draws[i]] += 1;
                bad_lq += fabs(lq[i] - log(q[draws[i]])) > 1e-5 * (1 + fabs(log(q[draws[i]]))) || lq[i] != lq2[i];
            }
        }
        for (a = 0; a < P; ++a) expect[a] = 300000.0 * q[a];
        CHECK_CHI2(P, obs, expect); /* eps = 0: the items outside alpha_K are impossible cells */
        CHECK(bad_lq == 0);
    }
    /* log q of every item, members and not, for eps = 0.3, against the formula; eps = 0 outside: -inf */
    {
        uint32_t all[P];
        float l[P];
        double z = 0;
        for (a = 0; a < P; ++a) all[a] = (uint32_t)a;
        CHECK_OK(polopt_proposal_set(&prop, 0.3f, K, ids, scores));
        CHECK_OK(polopt_proposal_log_prob(&prop, P, all, l));
        for (i = 0; i < K; ++i) z += exp(scores[i]);
        for (a = 0; a < P; ++a) {
            double qa = 0.3 / P;
            for (i = 0; i < K; ++i)
                if (ids[i] == a) qa += 0.7 * exp(scores[i]) / z;
            CHECK_NEAR(l[a], log(qa), 1e-5 * fabs(log(qa)));
        }
        CHECK_OK(polopt_proposal_set(&prop, 0.0f, K, ids, scores));
        CHECK_OK(polopt_proposal_log_prob(&prop, P, all, l));
        for (a = 0; a < P; ++a) {
            int member = 0;
            for (i = 0; i < K; ++i) member |= ids[i] == a;
            CHECK(member ? l[a] > -50.0f : l[a] == -INFINITY);
        }
    }
    /* bad input, and the proposal unchanged after it */
    {
        uint32_t dup[3] = {1, 2, 1}, big[2] = {1, P};
        float sc[3] = {0, 0, 0}, nan_[3] = {0, NAN, 0};
        CHECK_RC(polopt_proposal_set(&prop, 0.5f, 3, dup, sc), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(prop.err.message, "twice") != NULL);
        CHECK_RC(polopt_proposal_set(&prop, 0.5f, 2, big, sc), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_proposal_set(&prop, 0.5f, 3, ids, nan_), POLOPT_ERR_NONFINITE);
        CHECK_RC(polopt_proposal_set(&prop, 1.5f, 3, ids, sc), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_proposal_set(&prop, 0.5f, K + 1, ids, sc), POLOPT_ERR_INVALID_ARG);
        CHECK_OK(polopt_proposal_set(&prop, 0.5f, 2, dup + 1, sc)); /* {2, 1}: a valid set after the failures */
    }
    polopt_proposal_free(&prop);
}

/* Every output of the estimator by hand on three items with beta rows e1, e2, e1 + e2 (L = 2), T = 2: EXACT against
   the softmax written out, and SNIS with the uniform proposal (eps = 1) against the weights recomputed from its own
   draws, w_s proportional to exp(f(a_s)) / (1/P). */
static void learn_estimator_by_hand(void)
{
    static const float beta[6] = {1, 0, 0, 1, 1, 1}, h[2] = {0.8f, -0.4f}, r[3] = {1.0f, 0.0f, 2.0f};
    static const uint32_t all[3] = {0, 1, 2};
    polopt_mips ix;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_draws dr;
    double f[3], pi[3], Z = 0, rbar = 0, g[2] = {0, 0}, bb[2] = {0, 0}, w2 = 0, r_bar;
    float out[2], lp[3], grad[6], mean[2];
    int a, s;
    CHECK_OK(polopt_mips_init_exact(&ix, 3, 2, beta, 0, NULL));
    for (a = 0; a < 3; ++a) Z += exp(f[a] = 0.5 * ((double)h[0] * beta[2 * a] + (double)h[1] * beta[2 * a + 1]));
    for (a = 0; a < 3; ++a) {
        pi[a] = exp(f[a]) / Z;
        rbar += pi[a] * r[a];
        bb[0] += pi[a] * beta[2 * a], bb[1] += pi[a] * beta[2 * a + 1];
        w2 += pi[a] * pi[a];
    }
    for (a = 0; a < 3; ++a) g[0] += 0.5 * pi[a] * (r[a] - rbar) * beta[2 * a], g[1] += 0.5 * pi[a] * (r[a] - rbar) * beta[2 * a + 1];
    ec.method = POLOPT_METHOD_EXACT, ec.temperature = 2.0f, ec.batch = 1;
    CHECK_OK(polopt_estimator_init(&est, &ix, &ec));
    CHECK_OK(polopt_estimator_set(&est, 1, h, NULL));
    CHECK_OK(polopt_estimator_draws(&est, 0, &dr));
    CHECK(dr.S == 3 && dr.ids[2] == 2);
    CHECK_NEAR(dr.log_z, log(Z), 1e-6);
    CHECK_NEAR(dr.ess, 1.0 / w2, 1e-5);
    /* float exponentials accurate to 2e-7 relative, sums of three: 1e-6 is a few times that */
    for (a = 0; a < 3; ++a) CHECK_NEAR(dr.weights[a], pi[a], 1e-6);
    CHECK_OK(polopt_estimator_gradient(&est, 0, r, out, &r_bar));
    CHECK_NEAR(out[0], g[0], 1e-6);
    CHECK_NEAR(out[1], g[1], 1e-6);
    CHECK_NEAR(r_bar, rbar, 2e-6);
    CHECK_OK(polopt_estimator_log_prob(&est, 0, 3, all, lp, grad));
    for (a = 0; a < 3; ++a) {
        CHECK_NEAR(lp[a], log(pi[a]), 1e-6);
        CHECK_NEAR(grad[2 * a], (beta[2 * a] - bb[0]) * 0.5, 1e-6);
        CHECK_NEAR(grad[2 * a + 1], (beta[2 * a + 1] - bb[1]) * 0.5, 1e-6);
    }
    CHECK_OK(polopt_estimator_mean_embedding(&est, 0, mean));
    CHECK_NEAR(mean[0], bb[0], 1e-6);
    {
        const float nan_r[3] = {1, NAN, 0};
        const uint32_t bad = 3;
        CHECK_RC(polopt_estimator_gradient(&est, 0, nan_r, out, NULL), POLOPT_ERR_NONFINITE);
        CHECK_RC(polopt_estimator_log_prob(&est, 0, 1, &bad, lp, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_estimator_draws(&est, 1, &dr), POLOPT_ERR_INVALID_ARG); /* only context 0 was set */
    }
    polopt_estimator_free(&est);
    /* SNIS, uniform proposal: the draws are what they are; the weights and gradient must follow from them */
    ec = polopt_estimator_config_default();
    ec.epsilon = 1.0f, ec.S = 7, ec.K = 2, ec.temperature = 2.0f, ec.batch = 1;
    CHECK_OK(polopt_estimator_init(&est, &ix, &ec));
    CHECK_OK(polopt_estimator_set(&est, 1, h, NULL));
    CHECK_OK(polopt_estimator_draws(&est, 0, &dr));
    CHECK(dr.S == 7);
    {
        double w[7], W = 0, rb = 0, gs[2] = {0, 0}, W2 = 0;
        float rs[7];
        for (s = 0; s < 7; ++s) W += (w[s] = exp(f[dr.ids[s]]) * 3.0), rs[s] = r[dr.ids[s]];
        for (s = 0; s < 7; ++s) rb += (w[s] /= W) * rs[s], W2 += w[s] * w[s];
        for (s = 0; s < 7; ++s) {
            CHECK_NEAR(dr.weights[s], w[s], 1e-6);
            gs[0] += 0.5 * w[s] * (rs[s] - rb) * beta[2 * dr.ids[s]];
            gs[1] += 0.5 * w[s] * (rs[s] - rb) * beta[2 * dr.ids[s] + 1];
        }
        CHECK_NEAR(dr.log_z, log(W / 7.0), 1e-6);
        CHECK_NEAR(dr.ess, 1.0 / W2, 1e-5);
        CHECK_OK(polopt_estimator_gradient(&est, 0, rs, out, &r_bar));
        CHECK_NEAR(out[0], gs[0], 1e-6);
        CHECK_NEAR(out[1], gs[1], 1e-6);
        CHECK_NEAR(r_bar, rb, 2e-6);
    }
    polopt_estimator_free(&est);
    polopt_mips_free(&ix);
}

/* A small problem: P items, L = D dims, contexts x_i, random rewards, an exact index. */
typedef struct problem {
    size_t P, L, n;
    float *beta, *X, *r;
    table t;
    polopt_mips index;
    polopt_policy policy;
    polopt_dataset data;
} problem;

static void problem_make(problem *pb, size_t P, size_t L, size_t n, uint64_t seed, int hnsw)
{
    polopt_rng rng;
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    size_t i;
    memset(pb, 0, sizeof *pb);
    pb->P = P, pb->L = L, pb->n = n;
    pb->beta = (float *)malloc(P * L * sizeof(float));
    pb->X = (float *)malloc(n * L * sizeof(float));
    pb->r = (float *)malloc(n * P * sizeof(float));
    polopt_rng_seed(&rng, seed);
    polopt_rng_normals(&rng, P * L, pb->beta);
    polopt_rng_normals(&rng, n * L, pb->X);
    for (i = 0; i < n * P; ++i) pb->r[i] = polopt_rng_uniformf(&rng) < 0.2f ? 1.0f : 0.0f;
    pb->t.P = P, pb->t.n = n, pb->t.r = pb->r;
    if (hnsw) CHECK_OK(polopt_mips_init_hnsw(&pb->index, P, L, pb->beta, 0, NULL));
    else CHECK_OK(polopt_mips_init_exact(&pb->index, P, L, pb->beta, 0, NULL));
    CHECK_OK(polopt_policy_init(&pb->policy, &pc));
    pb->data.n = n, pb->data.X = pb->X, pb->data.ldx = L, pb->data.reward = table_reward, pb->data.reward_user = &pb->t;
}

static void problem_free(problem *pb)
{
    polopt_policy_free(&pb->policy);
    polopt_mips_free(&pb->index);
    free(pb->beta), free(pb->X), free(pb->r);
}

/* REINFORCE is unbiased: over many independent estimates (S = 5 draws each), the mean of each coordinate is
   within 4.5 standard errors of the exact gradient (computed here in double). */
static void learn_reinforce_is_unbiased(void)
{
    problem pb;
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    const size_t R = 6000;
    double g_ref[4], sum[4] = {0, 0, 0, 0}, sq[4] = {0, 0, 0, 0};
    float h[4], g[4];
    uint32_t ctx = 0;
    size_t rep, j;
    problem_make(&pb, 40, 4, 1, 2, 0);
    pb.policy.temperature = 0.7f;
    CHECK_OK(polopt_policy_embed(&pb.policy, 1, pb.X, 4, h));
    exact_ref(40, 4, pb.beta, h, 0.7, pb.r, g_ref);
    c.estimator.method = POLOPT_METHOD_REINFORCE;
    c.estimator.S = 5;
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    for (rep = 0; rep < R; ++rep) {
        CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL));
        for (j = 0; j < 4; ++j) sum[j] += g[j], sq[j] += (double)g[j] * g[j];
    }
    for (j = 0; j < 4; ++j) {
        const double mean = sum[j] / R, se = sqrt((sq[j] / R - mean * mean) / R);
        CHECK_NEAR(mean, g_ref[j], 4.5 * se + 1e-6);
    }
    /* the exact method reproduces the reference to rounding */
    polopt_trainer_free(&tr);
    c.estimator.method = POLOPT_METHOD_EXACT;
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL));
    for (j = 0; j < 4; ++j) CHECK_NEAR(g[j], g_ref[j], 1e-5);
    polopt_trainer_free(&tr);
    problem_free(&pb);
}

/* Consecutive cells merged until each expects at least 5 (the chi-square approximation needs it); returns the
   number of cells, written over the inputs. */
static size_t pool_cells(size_t n, double *observed, double *expected)
{
    size_t i, m = 0;
    double o = 0.0, e = 0.0;
    for (i = 0; i < n; ++i) {
        o += observed[i], e += expected[i];
        if (e >= 5.0 || i + 1 == n) observed[m] = o, expected[m++] = e, o = e = 0.0;
    }
    if (m > 1 && expected[m - 1] < 5.0) observed[m - 2] += observed[m - 1], expected[m - 2] += expected[m - 1], --m;
    return m;
}

/* REINFORCE's draws are exact draws from pi, in the order of independent draws.  P = 700 items (three blocks of the
   sampler, the last one partial) with a peaked softmax: the counts of 200 sets of S = 1000 draws fit pi by
   chi-square (cells pooled to an expectation of at least 5), and so does the first draw alone over 20,000 sets and
   the last draw alone (a sampler that returned its draws sorted would put low ids first and high ids last). */
static void learn_reinforce_draws_are_exact(void)
{
    enum { P = 700, L = 4, SETS = 200, FIRST = 20000 };
    static double count[P], first[P], last[P], expect[P], expect_first[P], expect_last[P];
    size_t n1, n2, n3;
    polopt_rng rng;
    float beta[P * L], h[L] = {1.5f, -0.5f, 0.8f, 0.2f};
    double pi[P], Z = 0.0, mx = -INFINITY;
    polopt_mips index;
    polopt_estimator est;
    polopt_estimator_config ec = polopt_estimator_config_default();
    size_t a, r, s;
    polopt_rng_seed(&rng, 12);
    polopt_rng_normals(&rng, P * L, beta);
    for (a = 0; a < P; ++a) {
        double f = 0.0;
        for (s = 0; s < L; ++s) f += (double)h[s] * beta[a * L + s];
        pi[a] = f;
        mx = f > mx ? f : mx;
    }
    for (a = 0; a < P; ++a) Z += (pi[a] = exp(pi[a] - mx));
    CHECK_OK(polopt_mips_init_exact(&index, P, L, beta, 0, NULL));
    ec.method = POLOPT_METHOD_REINFORCE, ec.S = 1000, ec.batch = 1, ec.seed = 77;
    CHECK_OK(polopt_estimator_init(&est, &index, &ec));
    for (r = 0; r < FIRST; ++r) {
        polopt_draws d;
        CHECK_OK(polopt_estimator_set(&est, 1, h, NULL));
        CHECK_OK(polopt_estimator_draws(&est, 0, &d));
        first[d.ids[0]] += 1.0, last[d.ids[d.S - 1]] += 1.0;
        if (r < SETS)
            for (s = 0; s < d.S; ++s) count[d.ids[s]] += 1.0;
    }
    for (a = 0; a < P; ++a) expect[a] = (double)SETS * 1000.0 * pi[a] / Z, expect_first[a] = FIRST * pi[a] / Z;
    memcpy(expect_last, expect_first, sizeof expect_first);
    n1 = pool_cells(P, count, expect);
    n2 = pool_cells(P, first, expect_first);
    n3 = pool_cells(P, last, expect_last);
    CHECK(n1 > 50 && n2 > 50 && n3 > 50);
    CHECK_CHI2(n1, count, expect);
    CHECK_CHI2(n2, first, expect_first);
    CHECK_CHI2(n3, last, expect_last);
    polopt_estimator_free(&est);
    polopt_mips_free(&index);
}

/* Gradients out, parameters in: with the exact estimator, the summed gradients of two halves of a minibatch,
   divided by its size and applied, give the theta of one epoch step on the whole minibatch (to 1e-6: the same sums
   in another order), which is what data-parallel training across processes relies on; the gradient leaves theta
   alone; bad input is refused and a non-finite gradient leaves theta unchanged. */
static void learn_gradient_out_parameters_in(void)
{
    enum { P = 60, L = 6, N = 32 };
    problem pb, pb2;
    polopt_trainer t1, t2;
    polopt_trainer_config c = polopt_trainer_config_default();
    uint32_t first[16], second[16];
    float g1[L * L], g2[L * L], before[L * L];
    size_t i;
    problem_make(&pb, P, L, N, 3, 0);
    problem_make(&pb2, P, L, N, 3, 0);
    c.estimator.method = POLOPT_METHOD_EXACT, c.estimator.batch = N, c.adam.lr = 0.05f;
    CHECK_OK(polopt_trainer_init(&t1, &pb.policy, &pb.index, &c));
    CHECK_OK(polopt_trainer_init(&t2, &pb2.policy, &pb2.index, &c));
    CHECK_OK(polopt_trainer_epoch(&t1, &pb.data, NULL)); /* one step on all 32 contexts */
    for (i = 0; i < 16; ++i) first[i] = (uint32_t)i, second[i] = (uint32_t)(16 + i);
    memcpy(before, pb2.policy.theta, sizeof before);
    CHECK_OK(polopt_trainer_gradient(&t2, &pb2.data, 16, first, g1, NULL));
    CHECK_OK(polopt_trainer_gradient(&t2, &pb2.data, 16, second, g2, NULL));
    CHECK(memcmp(before, pb2.policy.theta, sizeof before) == 0);
    for (i = 0; i < L * L; ++i) g1[i] = (g1[i] + g2[i]) / (float)N;
    CHECK_OK(polopt_trainer_apply(&t2, g1));
    for (i = 0; i < L * L; ++i) CHECK_NEAR(pb2.policy.theta[i], pb.policy.theta[i], 1e-6);
    CHECK(memcmp(before, pb2.policy.theta, sizeof before) != 0);
    /* bad input */
    CHECK_RC(polopt_trainer_gradient(&t2, &pb2.data, 0, first, g1, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_trainer_gradient(&t2, &pb2.data, N + 1, first, g1, NULL), POLOPT_ERR_INVALID_ARG);
    first[3] = N;
    CHECK_RC(polopt_trainer_gradient(&t2, &pb2.data, 16, first, g1, NULL), POLOPT_ERR_INVALID_ARG);
    memcpy(before, pb2.policy.theta, sizeof before);
    g1[5] = NAN;
    CHECK_RC(polopt_trainer_apply(&t2, g1), POLOPT_ERR_NONFINITE);
    CHECK(memcmp(before, pb2.policy.theta, sizeof before) == 0);
    CHECK_RC(polopt_trainer_apply(&t2, NULL), POLOPT_ERR_INVALID_ARG);
    polopt_trainer_free(&t1);
    polopt_trainer_free(&t2);
    CHECK_RC(polopt_trainer_apply(&t2, g2), POLOPT_ERR_INVALID_ARG); /* freed */
    problem_free(&pb);
    problem_free(&pb2);
}

/* The fidelity diagnostic when the softmax saturates in some contexts (their x scaled by 1000: pi is one item, the
   exact gradient all but vanishes and the estimate is rounding, about 1e-4): pooled over the contexts, the relative
   error stays that of the healthy contexts (within a factor 1.5), where a mean of per-context ratios reported 1e22;
   a reward that is zero everywhere has no relative error (POLOPT_ERR_DOMAIN, not a NaN). */
static void learn_fidelity_when_saturated(void)
{
    enum { P = 300, L = 8, N = 40 };
    problem pb;
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    uint32_t ctx[N];
    double cos_healthy, rel_healthy, cosv, rel;
    size_t i;
    problem_make(&pb, P, L, N, 9, 0);
    for (i = 0; i < N; ++i) ctx[i] = (uint32_t)i;
    c.estimator.K = 32, c.estimator.S = 2000, c.estimator.epsilon = 0.5f;
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    CHECK_OK(polopt_trainer_gradient_fidelity(&tr, &pb.data, N / 2, ctx, &cos_healthy, &rel_healthy));
    for (i = N / 2 * L; i < N * L; ++i) pb.X[i] *= 1000.0f; /* the second half saturates */
    CHECK_OK(polopt_trainer_gradient_fidelity(&tr, &pb.data, N, ctx, &cosv, &rel));
    printf("    fidelity: healthy contexts cosine %.3f, relative error %.3f; with as many saturated: %.3f, %.3f\n",
           cos_healthy, rel_healthy, cosv, rel);
    CHECK(rel_healthy > 0.0 && rel < 1.5 * rel_healthy);
    for (i = 0; i < N * P; ++i) pb.r[i] = 0.0f;
    CHECK_RC(polopt_trainer_gradient_fidelity(&tr, &pb.data, N, ctx, &cosv, &rel), POLOPT_ERR_DOMAIN);
    polopt_trainer_free(&tr);
    problem_free(&pb);
}

/* An epoch's statistics carry processor and wall-clock seconds; on one thread they agree to within what a busy
   machine does to wall time (wall at least half the processor time, and not ten times it plus 0.2 s). */
static void learn_stats_wall_clock(void)
{
    problem pb;
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    polopt_train_stats st;
    problem_make(&pb, 4000, 16, 600, 4, 0);
    c.estimator.method = POLOPT_METHOD_REINFORCE;
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    CHECK_OK(polopt_trainer_epoch(&tr, &pb.data, &st));
    printf("    an epoch: %.3f s of processor time, %.3f s of wall time\n", st.seconds, st.wall_seconds);
    CHECK(st.seconds > 0.0 && st.wall_seconds >= 0.5 * st.seconds && st.wall_seconds < 10.0 * st.seconds + 0.2);
    polopt_trainer_free(&tr);
    problem_free(&pb);
}

/* SNIS converges to the exact gradient as S grows: mean cosine rises, mean relative error falls. */
static void learn_snis_converges_with_S(void)
{
    static const size_t Ss[4] = {10, 100, 1000, 10000};
    problem pb;
    double cosv[4], rel[4], g_ref[16];
    float h[16], g[16];
    uint32_t ctx = 0;
    size_t si, rep, j;
    problem_make(&pb, 2000, 16, 1, 3, 1);
    CHECK_OK(polopt_policy_embed(&pb.policy, 1, pb.X, 16, h));
    exact_ref(2000, 16, pb.beta, h, 1.0, pb.r, g_ref);
    for (si = 0; si < 4; ++si) {
        polopt_trainer tr;
        polopt_trainer_config c = polopt_trainer_config_default();
        c.estimator.S = Ss[si];
        c.estimator.K = 64;
        c.estimator.epsilon = 0.5f;
        CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
        cosv[si] = rel[si] = 0;
        for (rep = 0; rep < 20; ++rep) {
            double dot = 0, n1 = 0, n2 = 0, nd = 0;
            CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL));
            for (j = 0; j < 16; ++j) {
                dot += g[j] * g_ref[j], n1 += (double)g[j] * g[j], n2 += g_ref[j] * g_ref[j];
                nd += (g[j] - g_ref[j]) * (g[j] - g_ref[j]);
            }
            cosv[si] += (n1 > 0 ? dot / sqrt(n1 * n2) : 0.0) / 20, rel[si] += sqrt(nd / n2) / 20; /* g = 0: no direction */
        }
        /* the library's own diagnostic agrees in kind (its exact side is computed independently of this file) */
        if (si == 3) {
            double cd, rd;
            CHECK_OK(polopt_trainer_gradient_fidelity(&tr, &pb.data, 1, &ctx, &cd, &rd));
            CHECK(cd > 0.95 && rd < 0.35);
        }
        polopt_trainer_free(&tr);
    }
    for (si = 0; si < 4; ++si) printf("    S = %5lu: cosine %.4f, relative error %.4f\n", (unsigned long)Ss[si], cosv[si], rel[si]);
    for (si = 1; si < 4; ++si) CHECK(cosv[si] > cosv[si - 1] && rel[si] < rel[si - 1]);
    CHECK(cosv[3] > 0.98 && rel[3] < 0.2);
    problem_free(&pb);
}

/* The trainer weighs a context's SNIS draws only when one of them earned a reward.  Against a second estimator of
   the same config and seed, used through the public calls (set, draws, gradient: every context weighed): the
   same draws come out (weighing takes nothing from the random stream), so the trainer's gradients must equal the
   reference's bit for bit, with gradient 0 where no draw earned a reward; and its ESS is the mean over the
   contexts it weighed.  A reward of one item in 60 and 12 draws leaves most contexts without one. */
static void learn_snis_weighs_only_rewarded_draws(void)
{
    enum { P = 600, L = 8, N = 64 };
    static const float eps[2] = {1.0f, 0.75f};
    problem pb;
    float H[N * L], G[N * L], G_ref[N * L], rewards[12];
    uint32_t ctx[N];
    size_t i, k, e;
    problem_make(&pb, P, L, N, 5, 1);
    for (i = 0; i < (size_t)N * P; ++i) pb.r[i] = i % 60 == (i / P) % 60 ? 1.0f : 0.0f; /* 10 items per context */
    for (i = 0; i < N; ++i) ctx[i] = (uint32_t)i;
    CHECK_OK(polopt_policy_embed(&pb.policy, N, pb.X, L, H));
    for (e = 0; e < 2; ++e) {
        polopt_trainer tr;
        polopt_estimator ref;
        polopt_train_stats st;
        polopt_trainer_config c = polopt_trainer_config_default();
        double ess = 0.0;
        size_t rewarded = 0;
        c.estimator.S = 12, c.estimator.K = 16, c.estimator.epsilon = eps[e], c.estimator.seed = 7;
        c.warm_start = 0;
        CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
        CHECK_OK(polopt_estimator_init(&ref, &pb.index, &c.estimator));
        CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, N, ctx, H, G, &st));
        for (i = 0; i < N; ++i) {
            polopt_draws dr;
            int any = 0;
            CHECK_OK(polopt_estimator_set(&ref, 1, H + i * L, NULL));
            CHECK_OK(polopt_estimator_draws(&ref, 0, &dr));
            CHECK_OK(table_reward(&pb.t, ctx[i], dr.S, dr.ids, rewards));
            CHECK_OK(polopt_estimator_gradient(&ref, 0, rewards, G_ref + i * L, NULL));
            for (k = 0; k < dr.S; ++k) any |= rewards[k] != 0.0f;
            rewarded += (size_t)any, ess += any ? dr.ess : 0.0;
        }
        CHECK(memcmp(G, G_ref, sizeof G) == 0);
        CHECK(st.weighed == rewarded && rewarded > N / 8 && rewarded < N / 2);
        CHECK_NEAR(st.ess, ess / (double)rewarded, 1e-9 * ess);
        polopt_estimator_free(&ref);
        polopt_trainer_free(&tr);
    }
    problem_free(&pb);
}

/* R_hat(theta) = (1/n) sum_i sum_a pi_theta(a | x_i) r(i, a), in double. */
static double objective(const problem *pb, const double *theta)
{
    const size_t P = pb->P, L = pb->L;
    double total = 0;
    size_t i, a, d, j;
    for (i = 0; i < pb->n; ++i) {
        double h[8], mx = -INFINITY, Z = 0, v = 0, *s = (double *)malloc(P * sizeof *s);
        for (j = 0; j < L; ++j) {
            h[j] = 0;
            for (d = 0; d < L; ++d) h[j] += pb->X[i * L + d] * theta[d * L + j];
        }
        for (a = 0; a < P; ++a) {
            s[a] = 0;
            for (j = 0; j < L; ++j) s[a] += h[j] * pb->beta[a * L + j];
            mx = s[a] > mx ? s[a] : mx;
        }
        for (a = 0; a < P; ++a) Z += exp(s[a] - mx);
        for (a = 0; a < P; ++a) v += exp(s[a] - mx) / Z * pb->r[i * P + a];
        total += v;
        free(s);
    }
    return total / (double)pb->n;
}

/* The exact gradient of R_hat for linear h, (1/n) sum_i x_i g_i^T, against central differences. */
static void learn_exact_gradient_matches_finite_differences(void)
{
    enum { L = 4, N = 5 };
    problem pb;
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    float H[N * L], G[N * L];
    double theta[L * L], grad[L * L];
    uint32_t ctx[N] = {0, 1, 2, 3, 4};
    size_t i, k, d, j;
    problem_make(&pb, 30, L, N, 4, 0);
    for (k = 0; k < L * L; ++k) pb.policy.theta[k] = (k % (L + 1) == 0 ? 1.0f : 0.0f) + 0.1f * (float)(k % 3);
    for (k = 0; k < L * L; ++k) theta[k] = pb.policy.theta[k];
    c.estimator.method = POLOPT_METHOD_EXACT;
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    CHECK_OK(polopt_policy_embed(&pb.policy, N, pb.X, L, H));
    CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, N, ctx, H, G, NULL));
    for (d = 0; d < L; ++d)
        for (j = 0; j < L; ++j) {
            grad[d * L + j] = 0;
            for (i = 0; i < N; ++i) grad[d * L + j] += (double)pb.X[i * L + d] * G[i * L + j] / N;
        }
    for (k = 0; k < L * L; ++k) {
        const double step = 1e-4, keep = theta[k];
        double up, down;
        theta[k] = keep + step, up = objective(&pb, theta);
        theta[k] = keep - step, down = objective(&pb, theta);
        theta[k] = keep;
        /* central differences err by O(step^2) ~ 1e-8; the float gradient by ~1e-6 of its scale */
        CHECK_NEAR(grad[k], (up - down) / (2 * step), 2e-5 + 1e-4 * fabs(grad[k]));
    }
    polopt_trainer_free(&tr);
    problem_free(&pb);
}

/* A synthetic task with ground-truth rewards: the train users and their tastes. */
typedef struct synth_task {
    polopt_synth cat;
    float *beta, *X, *tastes;
    polopt_synth_task task;
    polopt_mips index;
    polopt_dataset data;
} synth_task;

static void synth_task_make(synth_task *s, size_t P, size_t L, size_t n)
{
    polopt_synth_config c = polopt_synth_config_default();
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    size_t u;
    c.n_items = P, c.dim = L, c.seed = 11;
    CHECK_OK(polopt_synth_init(&s->cat, &c));
    s->beta = (float *)malloc(P * L * sizeof(float));
    s->X = (float *)malloc(n * L * sizeof(float));
    s->tastes = (float *)malloc(n * L * sizeof(float));
    CHECK_OK(polopt_synth_items(&s->cat, 0, P, s->beta));
    for (u = 0; u < n; ++u) CHECK_OK(polopt_synth_user(&s->cat, u, s->X + u * L, s->tastes + u * L));
    s->task.synth = &s->cat, s->task.items = s->beta, s->task.tastes = s->tastes, s->task.n = n;
    hc.ef_construction = 100;
    CHECK_OK(polopt_mips_init_hnsw(&s->index, P, L, s->beta, 0, &hc));
    memset(&s->data, 0, sizeof s->data);
    s->data.n = n, s->data.X = s->X, s->data.ldx = L, s->data.reward = polopt_synth_reward, s->data.reward_user = &s->task;
}

static void synth_task_free(synth_task *s)
{
    polopt_mips_free(&s->index);
    polopt_synth_free(&s->cat);
    free(s->beta), free(s->X), free(s->tastes);
}

/* Training on the ground truth raises the true value well above the start for REINFORCE, eps = 1 and eps = 0.8,
   and eps = 0.8 ends within 2% of REINFORCE after the same epochs. */
static void learn_training_raises_true_value(void)
{
    const size_t P = 3000, L = 16, n = 512;
    static const struct {
        polopt_method method;
        float eps;
        int warm;
    } runs[4] = {{POLOPT_METHOD_REINFORCE, 1.0f, 0}, {POLOPT_METHOD_SNIS, 1.0f, 0}, {POLOPT_METHOD_SNIS, 0.8f, 0},
                 {POLOPT_METHOD_SNIS, 0.8f, 1}};
    synth_task s;
    double v0 = 0, v[4];
    int r, e;
    synth_task_make(&s, P, L, n);
    for (r = 0; r < 4; ++r) {
        polopt_policy pol;
        polopt_policy_config pc = polopt_policy_config_default(L, L);
        polopt_trainer tr;
        polopt_trainer_config c = polopt_trainer_config_default();
        polopt_train_stats st;
        CHECK_OK(polopt_policy_init(&pol, &pc));
        if (r == 0) CHECK_OK(polopt_policy_value(&pol, &s.index, &s.data, &v0));
        c.estimator.method = runs[r].method, c.estimator.epsilon = runs[r].eps, c.warm_start = runs[r].warm, c.estimator.search_budget = 8;
        c.estimator.K = 64, c.estimator.S = 200, c.adam.lr = 0.05f, c.estimator.seed = 5;
        CHECK_OK(polopt_trainer_init(&tr, &pol, &s.index, &c));
        for (e = 0; e < 12; ++e) CHECK_OK(polopt_trainer_epoch(&tr, &s.data, &st));
        CHECK_OK(polopt_policy_value(&pol, &s.index, &s.data, &v[r]));
        polopt_trainer_free(&tr);
        polopt_policy_free(&pol);
    }
    printf("    true value: start %.4f, REINFORCE %.4f, eps=1 %.4f, eps=0.8 %.4f, eps=0.8 warm-started MIPS %.4f\n", v0,
           v[0], v[1], v[2], v[3]);
    CHECK(v[0] > v0 + 0.3 && v[1] > v0 + 0.3 && v[2] > v0 + 0.3 && v[3] > v0 + 0.3);
    CHECK(fabs(v[2] - v[0]) <= 0.02 * v[0] && fabs(v[3] - v[0]) <= 0.02 * v[0]);
    synth_task_free(&s);
}

/* Adaptive epsilon moves to 1 for a flat policy (uniform is the best proposal) and down for a peaked one. */
static void learn_adaptive_epsilon_follows_the_policy(void)
{
    const size_t P = 3000, L = 16, n = 64;
    synth_task s;
    polopt_policy pol;
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    float *H = (float *)malloc(n * L * sizeof *H), *G = (float *)malloc(n * L * sizeof *G);
    uint32_t ctx[64];
    size_t i;
    int pass;
    synth_task_make(&s, P, L, n);
    for (i = 0; i < n; ++i) ctx[i] = (uint32_t)i;
    c.estimator.adaptive_epsilon = 1, c.estimator.epsilon = 0.5f, c.estimator.K = 64, c.estimator.S = 300;
    /* flat: theta = 0.01 I */
    pc.init_scale = 0.01f;
    CHECK_OK(polopt_policy_init(&pol, &pc));
    CHECK_OK(polopt_trainer_init(&tr, &pol, &s.index, &c));
    CHECK_OK(polopt_policy_embed(&pol, n, s.X, L, H));
    for (pass = 0; pass < 6; ++pass) CHECK_OK(polopt_trainer_embedding_gradient(&tr, &s.data, n, ctx, H, G, NULL));
    CHECK(tr.est.epsilon > 0.85f);
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    /* peaked: theta = 20 I puts most of pi on a few items, all inside the top-K */
    pc.init_scale = 20.0f;
    CHECK_OK(polopt_policy_init(&pol, &pc));
    CHECK_OK(polopt_trainer_init(&tr, &pol, &s.index, &c));
    CHECK_OK(polopt_policy_embed(&pol, n, s.X, L, H));
    for (pass = 0; pass < 6; ++pass) CHECK_OK(polopt_trainer_embedding_gradient(&tr, &s.data, n, ctx, H, G, NULL));
    CHECK(tr.est.epsilon < 0.25f);
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    free(H), free(G);
    synth_task_free(&s);
}

static polopt_result nan_reward(void *user, uint32_t ctx, size_t n, const uint32_t *items, float *out)
{
    size_t s;
    (void)user, (void)ctx;
    for (s = 0; s < n; ++s) out[s] = items[s] == 7 ? NAN : 0.5f;
    return POLOPT_OK;
}

/* A NaN reward stops the epoch with an error and theta as it was. */
static void learn_nonfinite_reward_keeps_parameters(void)
{
    problem pb;
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    float *before;
    problem_make(&pb, 30, 4, 8, 5, 0);
    pb.data.reward = nan_reward;
    c.estimator.method = POLOPT_METHOD_EXACT; /* every item is asked for, item 7 included */
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    before = (float *)malloc(16 * sizeof *before);
    memcpy(before, pb.policy.theta, 16 * sizeof *before);
    CHECK_RC(polopt_trainer_epoch(&tr, &pb.data, NULL), POLOPT_ERR_NONFINITE);
    CHECK(memcmp(before, pb.policy.theta, 16 * sizeof *before) == 0);
    CHECK(strstr(tr.err.message, "item 7") != NULL);
    free(before);
    polopt_trainer_free(&tr);
    problem_free(&pb);
}

/* R_test, hit-rate@k and nDCG@k against a full sort of the exact scores. */
static void learn_evaluation_matches_full_sort(void)
{
    enum { P = 200, L = 4, N = 30, K = 5 };
    problem pb;
    polopt_sets sets;
    size_t offsets[N + 1], i, a, j;
    uint32_t items[N * 6];
    polopt_mips_scratch sc;
    polopt_eval ev;
    double r = 0, hit = 0, ndcg = 0;
    polopt_rng rng;
    problem_make(&pb, P, L, N, 6, 0);
    polopt_rng_seed(&rng, 9);
    offsets[0] = 0;
    for (i = 0; i < N; ++i) { /* six items per context, some of them duplicates */
        for (j = 0; j < 6; ++j) items[i * 6 + j] = (uint32_t)polopt_rng_below(&rng, 30);
        offsets[i + 1] = offsets[i] + 6;
    }
    CHECK_OK(polopt_sets_init(&sets, N, offsets, items, NULL));
    for (i = 0; i < N; ++i) /* sorted, distinct */
        for (j = sets.offsets[i] + 1; j < sets.offsets[i + 1]; ++j) CHECK(sets.items[j - 1] < sets.items[j]);
    pb.data.reward = polopt_sets_reward, pb.data.reward_user = &sets, pb.data.relevant = &sets;
    pb.policy.theta[0] = 3.0f; /* not the identity: something to rank */
    for (i = 0; i < N; ++i) {
        float h[L];
        double s[P], dcg = 0, ideal = 0;
        uint32_t order[P];
        size_t len = sets.offsets[i + 1] - sets.offsets[i], got = 0;
        polopt_policy_embed(&pb.policy, 1, pb.X + i * L, L, h);
        for (a = 0; a < P; ++a) {
            s[a] = 0;
            for (j = 0; j < L; ++j) s[a] += (double)h[j] * pb.beta[a * L + j];
            order[a] = (uint32_t)a;
        }
        for (a = 0; a < K; ++a) /* selection of the top K */
            for (j = a + 1; j < P; ++j)
                if (s[order[j]] > s[order[a]]) {
                    const uint32_t t = order[a];
                    order[a] = order[j], order[j] = t;
                }
        for (a = 0; a < K; ++a) {
            int in = 0;
            for (j = sets.offsets[i]; j < sets.offsets[i + 1]; ++j) in |= sets.items[j] == order[a];
            if (in) dcg += 1.0 / log2((double)a + 2.0), got = 1;
            if (in && a == 0) r += 1;
        }
        for (a = 0; a < K && a < len; ++a) ideal += 1.0 / log2((double)a + 2.0);
        hit += (double)got;
        ndcg += dcg / ideal;
    }
    CHECK_OK(polopt_mips_scratch_init(&sc, &pb.index, K, NULL));
    CHECK_OK(polopt_evaluate(&pb.policy, &pb.index, &sc, &pb.data, K, 0, &ev));
    CHECK_NEAR(ev.reward, r / N, 1e-12);
    CHECK_NEAR(ev.hit_rate, hit / N, 1e-12);
    CHECK_NEAR(ev.ndcg, ndcg / N, 1e-9);
    polopt_mips_scratch_free(&sc);
    polopt_sets_free(&sets);
    problem_free(&pb);
}

static void learn_policy_files(void)
{
    polopt_policy p, back;
    polopt_policy_config c = polopt_policy_config_default(6, 4);
    unsigned char *buf, *bad;
    size_t size, i;
    int fails = 0;
    CHECK(c.init == POLOPT_INIT_RANDOM); /* D != L */
    c.temperature = 0.5f;
    CHECK_OK(polopt_policy_init(&p, &c));
    CHECK_OK(polopt_policy_save(&p, "build/test_policy.bin", &p.err));
    CHECK_OK(polopt_policy_load(&back, "build/test_policy.bin", NULL));
    CHECK(back.D == 6 && back.L == 4 && back.temperature == 0.5f && memcmp(back.theta, p.theta, 24 * 4) == 0);
    polopt_policy_free(&back);
    remove("build/test_policy.bin");
    CHECK_OK(polopt_policy_save_buffer(&p, NULL, 0, &size, &p.err));
    CHECK(size == 128 + 24 * 4);
    buf = (unsigned char *)malloc(size);
    bad = (unsigned char *)malloc(size);
    CHECK_OK(polopt_policy_save_buffer(&p, buf, size, &size, &p.err));
    for (i = 0; i < size; i += 7) { /* every truncation tried: each an error */
        fails += polopt_policy_load_buffer(&back, buf, i, NULL) != POLOPT_ERR_TRUNCATED;
    }
    for (i = 0; i < size; ++i) { /* every single flipped byte: an error */
        memcpy(bad, buf, size);
        bad[i] ^= 0x40;
        fails += polopt_policy_load_buffer(&back, bad, size, NULL) == POLOPT_OK;
    }
    CHECK(fails == 0);
    memcpy(bad, buf, size);
    bad[8] = 9;
    CHECK_RC(polopt_policy_load_buffer(&back, bad, size, NULL), POLOPT_ERR_VERSION);
    CHECK_RC(polopt_policy_load_buffer(&back, buf, size, NULL), POLOPT_OK);
    polopt_policy_free(&back);
    /* an index file is not a policy */
    {
        float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        polopt_mips ix;
        unsigned char ib[256];
        size_t isz;
        polopt_mips_init_exact(&ix, 2, 4, v, 0, NULL);
        polopt_mips_save_buffer(&ix, ib, sizeof ib, &isz, &ix.err);
        CHECK_RC(polopt_policy_load_buffer(&back, ib, isz, NULL), POLOPT_ERR_FORMAT);
        polopt_mips_free(&ix);
    }
    /* bad configurations */
    c = polopt_policy_config_default(6, 4);
    c.init = POLOPT_INIT_IDENTITY;
    CHECK_RC(polopt_policy_init(&back, &c), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(back.err.message, "D = L") != NULL);
    c = polopt_policy_config_default(4, 4);
    c.temperature = 0.0f;
    CHECK_RC(polopt_policy_init(&back, &c), POLOPT_ERR_INVALID_ARG);
    free(buf), free(bad);
    polopt_policy_free(&p);
}

static void learn_bad_configurations(void)
{
    problem pb;
    polopt_trainer tr;
    polopt_trainer_config c = polopt_trainer_config_default();
    polopt_dataset empty;
    problem_make(&pb, 50, 4, 4, 7, 0);
    c.estimator.K = 64; /* more than P */
    CHECK_RC(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(tr.err.message, "config.estimator.K") != NULL);
    c = polopt_trainer_config_default();
    c.estimator.K = 8, c.estimator.S = 1;
    CHECK_RC(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c), POLOPT_ERR_INVALID_ARG);
    c.estimator.S = 10, c.estimator.epsilon = -0.1f;
    CHECK_RC(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c), POLOPT_ERR_INVALID_ARG);
    c.estimator.epsilon = 0.5f, c.estimator.ef = 4; /* ef < K */
    CHECK_RC(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c), POLOPT_ERR_INVALID_ARG);
    c.estimator.ef = 0;
    CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &c));
    memset(&empty, 0, sizeof empty);
    CHECK_RC(polopt_trainer_epoch(&tr, &empty, NULL), POLOPT_ERR_INVALID_ARG);
    polopt_trainer_free(&tr);
    problem_free(&pb);
}

/* Every allocation failure of the trainer, proposal, sets and policy load is clean. */
typedef struct alloc_case {
    problem pb;
    unsigned char buf[128 + 64];
    size_t size;
} alloc_case;

/* Stages 0-2: a trainer of each method and an epoch (which allocates its order); 3: sets; 4: a policy load. */
static polopt_result learn_alloc_scenario(const polopt_hooks *h, int stage, void *user)
{
    alloc_case *ac = (alloc_case *)user;
    polopt_result rc;
    if (stage <= 2) {
        polopt_trainer tr;
        polopt_trainer_config c = polopt_trainer_config_default();
        c.estimator.method = (polopt_method)stage, c.estimator.K = 8, c.estimator.S = 20, c.hooks = *h;
        rc = polopt_trainer_init(&tr, &ac->pb.policy, &ac->pb.index, &c);
        if (rc == POLOPT_OK) rc = polopt_trainer_epoch(&tr, &ac->pb.data, NULL);
        polopt_trainer_free(&tr);
    } else if (stage == 3) {
        const size_t offsets[3] = {0, 2, 3};
        const uint32_t items[3] = {4, 1, 2};
        polopt_sets sets;
        rc = polopt_sets_init(&sets, 2, offsets, items, h);
        polopt_sets_free(&sets);
    } else {
        polopt_policy p;
        rc = polopt_policy_load_buffer(&p, ac->buf, ac->size, h);
        polopt_policy_free(&p);
    }
    return rc;
}

static void learn_allocation_failures_are_clean(void)
{
    static alloc_case ac;
    int stage;
    problem_make(&ac.pb, 50, 4, 4, 8, 0);
    polopt_policy_save_buffer(&ac.pb.policy, ac.buf, sizeof ac.buf, &ac.size, &ac.pb.policy.err);
    for (stage = 0; stage < 5; ++stage) CHECK_EACH_ALLOCATION_FAILURE(learn_alloc_scenario, stage, &ac);
    problem_free(&ac.pb);
}

/* The gradient of E_pi[r_hat] with r_hat from logged feedback, in double: r_hat(a) = r_M(a) + 1[a = a_i] c. */
static void feedback_ref(const problem *pb, const float *h, const float *r_model, uint32_t a_i, double c, double *g)
{
    float *r_hat = (float *)malloc(pb->P * sizeof *r_hat);
    size_t a;
    for (a = 0; a < pb->P; ++a) r_hat[a] = r_model ? r_model[a] : 0.0f;
    r_hat[a_i] += (float)c;
    exact_ref(pb->P, pb->L, pb->beta, h, pb->policy.temperature, r_hat, g);
    free(r_hat);
}

/* Clipped IPS and clipped DR from logged feedback: the exact method matches the formula; SNIS with the logged
   action's exact term converges to it; REINFORCE is unbiased for it. */
static void learn_feedback_estimators(void)
{
    enum { L = 4 };
    problem pb;
    polopt_feedback fb;
    const uint32_t logged_action = 7, ctx = 0;
    const double logged_p = 0.05, logged_r = 1.0;
    float h[L], g[L];
    double ref[L];
    int model, j;
    problem_make(&pb, 40, L, 1, 13, 0);
    fb.action = &logged_action, fb.propensity = &logged_p, fb.reward = &logged_r, fb.tau = 0.1f;
    pb.data.feedback = &fb;
    CHECK_OK(polopt_policy_embed(&pb.policy, 1, pb.X, L, h));
    for (model = 0; model < 2; ++model) { /* IPS (no model), then DR with the reward table as r_M */
        const double c = (logged_r - (model ? pb.r[logged_action] : 0.0f)) / 0.1; /* max(tau, p) = 0.1 */
        polopt_trainer_config tc = polopt_trainer_config_default();
        polopt_trainer tr;
        double sum[L] = {0, 0, 0, 0}, sq[L] = {0, 0, 0, 0}, cosv, rel;
        int rep;
        pb.data.reward = model ? table_reward : NULL;
        feedback_ref(&pb, h, model ? pb.r : NULL, logged_action, c, ref);
        tc.estimator.method = POLOPT_METHOD_EXACT;
        CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &tc));
        CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL));
        for (j = 0; j < L; ++j) CHECK_NEAR(g[j], ref[j], 1e-5 * (1 + fabs(ref[j])));
        polopt_trainer_free(&tr);
        tc.estimator.method = POLOPT_METHOD_SNIS, tc.estimator.K = 8, tc.estimator.S = 20000, tc.estimator.epsilon = 0.5f;
        CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &tc));
        CHECK_OK(polopt_trainer_gradient_fidelity(&tr, &pb.data, 1, &ctx, &cosv, &rel));
        if (!(cosv > 0.99 && rel < 0.15)) th_fail(__FILE__, __LINE__, "SNIS with feedback: cosine %.4f, rel. error %.4f", cosv, rel);
        polopt_trainer_free(&tr);
        tc.estimator.method = POLOPT_METHOD_REINFORCE, tc.estimator.S = 5;
        CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &tc));
        for (rep = 0; rep < 4000; ++rep) {
            CHECK_OK(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL));
            for (j = 0; j < L; ++j) sum[j] += g[j], sq[j] += (double)g[j] * g[j];
        }
        for (j = 0; j < L; ++j) {
            const double mean = sum[j] / 4000, se = sqrt((sq[j] / 4000 - mean * mean) / 4000);
            CHECK_NEAR(mean, ref[j], 4.5 * se + 1e-6);
        }
        polopt_trainer_free(&tr);
    }
    {
        const double bad_p = 0.0; /* a propensity of 0 is refused, with the context named */
        polopt_trainer_config tc = polopt_trainer_config_default();
        polopt_trainer tr;
        fb.propensity = &bad_p;
        tc.estimator.method = POLOPT_METHOD_EXACT;
        CHECK_OK(polopt_trainer_init(&tr, &pb.policy, &pb.index, &tc));
        CHECK_RC(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(tr.err.message, "context 0") != NULL);
        {
            const double tiny_p = 1e-30, huge_r = 1e10; /* unclipped, (r - r_M) / p = 1e40: refused, not infinite */
            fb.propensity = &tiny_p, fb.reward = &huge_r, fb.tau = 0.0f;
            CHECK_RC(polopt_trainer_embedding_gradient(&tr, &pb.data, 1, &ctx, h, g, NULL), POLOPT_ERR_NONFINITE);
            CHECK(strstr(tr.err.message, "(set tau)") != NULL);
        }
        polopt_trainer_free(&tr);
    }
    problem_free(&pb);
}

/* Training from logged bandit feedback alone (clipped IPS, uniform logging) raises the true value. */
static void learn_training_from_logged_feedback(void)
{
    const size_t P = 1000, L = 16, n = 4096;
    synth_task s;
    polopt_policy pol;
    polopt_policy_config pc = polopt_policy_config_default(L, L);
    polopt_trainer tr;
    polopt_trainer_config tc = polopt_trainer_config_default();
    polopt_feedback fb;
    polopt_dataset logged;
    uint32_t *act = (uint32_t *)malloc(n * sizeof *act);
    double *prop = (double *)malloc(n * sizeof *prop), *rew = (double *)malloc(n * sizeof *rew);
    float r;
    polopt_rng rng;
    double v0, v1;
    size_t i;
    int e;
    synth_task_make(&s, P, L, n);
    polopt_rng_seed(&rng, 21);
    for (i = 0; i < n; ++i) { /* a uniform logging policy and Bernoulli rewards from the ground truth */
        act[i] = (uint32_t)polopt_rng_below(&rng, P);
        prop[i] = 1.0 / (double)P;
        polopt_synth_reward(&s.task, (uint32_t)i, 1, act + i, &r);
        rew[i] = polopt_rng_uniform(&rng) < r ? 1.0 : 0.0;
    }
    fb.action = act, fb.propensity = prop, fb.reward = rew, fb.tau = 0.0f;
    logged = s.data;
    logged.reward = NULL, logged.reward_user = NULL, logged.feedback = &fb; /* only the log */
    CHECK_OK(polopt_policy_init(&pol, &pc));
    CHECK_OK(polopt_policy_value(&pol, &s.index, &s.data, &v0)); /* the value under the ground truth */
    tc.estimator.K = 64, tc.estimator.S = 200, tc.adam.lr = 0.02f;
    CHECK_OK(polopt_trainer_init(&tr, &pol, &s.index, &tc));
    for (e = 0; e < 6; ++e) CHECK_OK(polopt_trainer_epoch(&tr, &logged, NULL));
    CHECK_OK(polopt_policy_value(&pol, &s.index, &s.data, &v1));
    printf("    logged feedback (clipped IPS): true value %.4f -> %.4f\n", v0, v1);
    CHECK(v1 > v0 + 0.2);
    polopt_trainer_free(&tr);
    polopt_policy_free(&pol);
    synth_task_free(&s);
    free(act), free(prop), free(rew);
}

const th_test th_suite_learn[] = {TH(learn_proposal_matches_q),
                                  TH(learn_estimator_by_hand),
                                  TH(learn_reinforce_is_unbiased),
                                  TH(learn_reinforce_draws_are_exact),
                                  TH(learn_gradient_out_parameters_in),
                                  TH(learn_fidelity_when_saturated),
                                  TH(learn_stats_wall_clock),
                                  TH(learn_snis_converges_with_S),
                                  TH(learn_snis_weighs_only_rewarded_draws),
                                  TH(learn_exact_gradient_matches_finite_differences),
                                  TH(learn_training_raises_true_value),
                                  TH(learn_adaptive_epsilon_follows_the_policy),
                                  TH(learn_nonfinite_reward_keeps_parameters),
                                  TH(learn_evaluation_matches_full_sort),
                                  TH(learn_policy_files),
                                  TH(learn_bad_configurations),
                                  TH(learn_feedback_estimators),
                                  TH(learn_training_from_logged_feedback),
                                  TH(learn_allocation_failures_are_clean),
                                  TH_END};
