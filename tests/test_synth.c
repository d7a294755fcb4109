/* The synthetic catalogue: determinism and streaming, the properties its documentation promises (clusters,
   unequal norms, anisotropy, popularity), and the ground truth recomputed by hand. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static polopt_synth make(size_t P, size_t L, uint64_t seed)
{
    polopt_synth s;
    polopt_synth_config c = polopt_synth_config_default();
    c.n_items = P;
    c.dim = L;
    c.seed = seed;
    CHECK_OK(polopt_synth_init(&s, &c));
    return s;
}

static void synth_deterministic_and_streamable(void)
{
    const size_t P = 3000, L = 24;
    polopt_synth a = make(P, L, 5), b = make(P, L, 5), c = make(P, L, 6);
    float *all = (float *)malloc(P * L * sizeof *all), *blocks = (float *)malloc(P * L * sizeof *blocks);
    float *other = (float *)malloc(P * L * sizeof *other);
    size_t first = 0, block = 1;
    CHECK_OK(polopt_synth_items(&a, 0, P, all));
    while (first < P) { /* uneven blocks, from a second object with the same seed */
        const size_t n = first + block > P ? P - first : block;
        CHECK_OK(polopt_synth_items(&b, first, n, blocks + first * L));
        first += n;
        block = block * 3 + 1;
    }
    CHECK(memcmp(all, blocks, P * L * sizeof *all) == 0);
    CHECK_OK(polopt_synth_items(&c, 0, P, other));
    CHECK(memcmp(all, other, L * sizeof *all) != 0);
    polopt_synth_free(&a);
    polopt_synth_free(&b);
    polopt_synth_free(&c);
    free(all);
    free(blocks);
    free(other);
}

static void synth_clusters_norms_and_spectrum(void)
{
    const size_t P = 20000, L = 32;
    polopt_synth s = make(P, L, 1);
    float *beta = (float *)malloc(P * L * sizeof *beta);
    double norm_sum = 0, norm_sq = 0, var_first = 0, var_last = 0, top_norm = 0, tail_norm = 0;
    double within = 0, across = 0;
    size_t c, a, j, n_top = 0, n_tail = 0, n_within = 0, n_across = 0;
    polopt_rng rng;
    CHECK(s.n_clusters == 141); /* round(sqrt(20000)) */
    CHECK(s.cluster_first[0] == 0 && s.cluster_first[s.n_clusters] == P);
    for (c = 0; c < s.n_clusters; ++c) CHECK(s.cluster_first[c + 1] > s.cluster_first[c]);
    /* Zipf sizes: the first cluster is much bigger than the last */
    CHECK(s.cluster_first[1] - s.cluster_first[0] > 10 * (s.cluster_first[s.n_clusters] - s.cluster_first[s.n_clusters - 1]));
    CHECK_OK(polopt_synth_items(&s, 0, P, beta));
    for (a = 0; a < P; ++a) {
        uint32_t cl, first, size;
        double nrm = 0;
        CHECK_OK(polopt_synth_item_cluster(&s, (uint32_t)a, &cl));
        first = s.cluster_first[cl];
        size = s.cluster_first[cl + 1] - first;
        for (j = 0; j < L; ++j) nrm += (double)beta[a * L + j] * beta[a * L + j];
        nrm = sqrt(nrm);
        norm_sum += nrm;
        norm_sq += nrm * nrm;
        var_first += (double)beta[a * L] * beta[a * L];
        var_last += (double)beta[a * L + L - 1] * beta[a * L + L - 1];
        if (size >= 20 && a - first < size / 5) top_norm += nrm, ++n_top;
        if (size >= 20 && a - first >= size - size / 5) tail_norm += nrm, ++n_tail;
    }
    {
        const double mean = norm_sum / P, cv = sqrt(norm_sq / P - mean * mean) / mean;
        CHECK(cv > 0.3); /* unequal norms: sd of the norms over 30% of their mean */
    }
    CHECK(var_first > 4 * var_last);                 /* anisotropic: the leading dimension dominates */
    CHECK(top_norm / n_top > 1.5 * tail_norm / n_tail); /* popular items (low rank) have larger norms */
    /* clustered: cosines within a cluster far above cosines across clusters */
    polopt_rng_seed(&rng, 3);
    for (j = 0; j < 20000; ++j) {
        const uint32_t x = (uint32_t)polopt_rng_below(&rng, P), y = (uint32_t)polopt_rng_below(&rng, P);
        uint32_t cx, cy;
        double d = 0, nx = 0, ny = 0, cosv;
        size_t k;
        if (x == y) continue;
        polopt_synth_item_cluster(&s, x, &cx);
        polopt_synth_item_cluster(&s, y, &cy);
        for (k = 0; k < L; ++k) {
            d += (double)beta[x * L + k] * beta[y * L + k];
            nx += (double)beta[x * L + k] * beta[x * L + k];
            ny += (double)beta[y * L + k] * beta[y * L + k];
        }
        cosv = d / sqrt(nx * ny);
        if (cx == cy) within += cosv, ++n_within;
        else across += cosv, ++n_across;
    }
    CHECK(n_within > 50);
    CHECK(within / n_within > across / n_across + 0.3);
    polopt_synth_free(&s);
    free(beta);
}

static void synth_users_and_ground_truth(void)
{
    const size_t P = 5000, L = 16, U = 200;
    polopt_synth s = make(P, L, 2);
    float *beta = (float *)malloc(P * L * sizeof *beta), *r = (float *)malloc(P * sizeof *r);
    float x[16], x2[16], t[16], mean[16];
    uint32_t items[64];
    double held_reward = 0, all_reward = 0;
    size_t u, i, j;
    CHECK_OK(polopt_synth_items(&s, 0, P, beta));
    for (u = 0; u < U; ++u) {
        double tn = 0;
        CHECK_OK(polopt_synth_user(&s, u, x, t));
        CHECK_OK(polopt_synth_user(&s, u, x2, NULL));
        CHECK(memcmp(x, x2, sizeof x) == 0);
        for (j = 0; j < L; ++j) tn += (double)t[j] * t[j];
        CHECK_NEAR(tn, 1.0, 1e-5);
        /* the context is G times the mean embedding of the observed set (set 0) */
        CHECK_OK(polopt_synth_user_items(&s, u, 0, s.config.context_items, items));
        memset(mean, 0, sizeof mean);
        for (i = 0; i < s.config.context_items; ++i)
            for (j = 0; j < L; ++j) mean[j] += beta[items[i] * L + j] / (float)s.config.context_items;
        for (j = 0; j < L; ++j) {
            double gx = 0, mag = 0;
            for (i = 0; i < L; ++i) {
                gx += (double)s.mixing[j * L + i] * mean[i];
                mag += fabs((double)s.mixing[j * L + i] * mean[i]);
            }
            CHECK_NEAR(x[j], gx, 1e-5 * (1 + mag));
        }
        /* rewards are sigmoid(bias + scale t^T beta_a), recomputed in double */
        CHECK_OK(polopt_synth_rewards(&s, t, P, beta, r));
        for (i = 0; i < P; i += 97) {
            double z = s.config.reward_bias, d = 0;
            for (j = 0; j < L; ++j) d += (double)t[j] * beta[i * L + j];
            z += s.config.reward_scale * d;
            CHECK_NEAR(r[i], 1.0 / (1.0 + exp(-z)), 1e-6);
        }
        for (i = 0; i < P; ++i) all_reward += r[i] / P;
        /* held-out items (set 1) come from the same interests: far more rewarding than a random item */
        CHECK_OK(polopt_synth_user_items(&s, u, 1, 20, items));
        for (i = 0; i < 20; ++i) {
            CHECK(items[i] < P);
            held_reward += r[items[i]] / 20;
        }
    }
    CHECK(held_reward / U > 2.0 * all_reward / U);
    CHECK(all_reward / U > 0.01 && all_reward / U < 0.5);
    polopt_synth_free(&s);
    free(beta);
    free(r);
}

/* A user's items come from its interest clusters with weights 4/7, 2/7, 1/7 (user_interests = 3), and inside a
   cluster at rank floor(|c| U^2): half of the draws in the first quarter of the ranks. */
static void synth_user_item_distribution(void)
{
    const size_t P = 20000, n = 70000;
    polopt_synth s = make(P, 8, 9);
    uint32_t *items = (uint32_t *)malloc(n * sizeof *items), clusters[3];
    double obs[3] = {0, 0, 0}, exp_[3], quarter = 0;
    size_t i, found = 0, tried;
    uint64_t user = 0;
    for (tried = 0; tried < 50 && found < 3; ++tried) { /* a user whose three interests are distinct clusters */
        user = tried;
        CHECK_OK(polopt_synth_user_items(&s, user, 1, n, items));
        found = 0;
        for (i = 0; i < n && found < 4; ++i) {
            uint32_t c, k, seen = 0;
            polopt_synth_item_cluster(&s, items[i], &c);
            for (k = 0; k < found; ++k) seen |= clusters[k] == c;
            if (!seen && found < 3) clusters[found++] = c;
        }
    }
    CHECK(found == 3);
    for (i = 0; i < n; ++i) {
        uint32_t c, k;
        polopt_synth_item_cluster(&s, items[i], &c);
        for (k = 0; k < 3; ++k)
            if (clusters[k] == c) obs[k] += 1;
        quarter += items[i] - s.cluster_first[c] < (s.cluster_first[c + 1] - s.cluster_first[c] + 3) / 4;
    }
    /* the clusters were numbered in order of first appearance, not by weight: sort the counts */
    {
        double t;
        if (obs[0] < obs[1]) t = obs[0], obs[0] = obs[1], obs[1] = t;
        if (obs[1] < obs[2]) t = obs[1], obs[1] = obs[2], obs[2] = t;
        if (obs[0] < obs[1]) t = obs[0], obs[0] = obs[1], obs[1] = t;
    }
    exp_[0] = n * 4.0 / 7.0, exp_[1] = n * 2.0 / 7.0, exp_[2] = n * 1.0 / 7.0;
    CHECK_CHI2(3, obs, exp_);
    /* P(rank < |c|/4) = P(U^2 < 1/4) = 1/2, up to the rounding of |c|/4 in small clusters */
    CHECK_NEAR(quarter / n, 0.5, 0.02);
    polopt_synth_free(&s);
    free(items);
}

/* The context mixing G: identity plus gamma Z / sqrt(L); gamma = 0 gives plain means; D may differ from L. */
static void synth_context_mixing_and_dimension(void)
{
    polopt_synth_config c = polopt_synth_config_default();
    polopt_synth plain, wide;
    float x[16], x0[16], t[8], t0[8], beta[8];
    uint32_t item;
    double z = 0, off = 0;
    size_t i, j;
    c.n_items = 500;
    c.dim = 8;
    c.context_mixing = 0.0;
    CHECK_OK(polopt_synth_init(&plain, &c));
    for (i = 0; i < 8; ++i)
        for (j = 0; j < 8; ++j) CHECK(plain.mixing[i * 8 + j] == (i == j ? 1.0f : 0.0f));
    c.context_items = 1; /* then the plain context is the one observed item's embedding */
    polopt_synth_free(&plain);
    CHECK_OK(polopt_synth_init(&plain, &c));
    CHECK_OK(polopt_synth_user(&plain, 4, x, t));
    CHECK_OK(polopt_synth_user_items(&plain, 4, 0, 1, &item));
    CHECK_OK(polopt_synth_items(&plain, item, 1, beta));
    CHECK(memcmp(x, beta, sizeof beta) == 0);
    /* D = 16 != L = 8, gamma = 1: G is 16 x 8, the identity on top plus noise of variance 1 / L */
    c.context_dim = 16;
    c.context_mixing = 1.0;
    CHECK_OK(polopt_synth_init(&wide, &c));
    CHECK(wide.context_dim == 16);
    CHECK_OK(polopt_synth_user(&wide, 4, x0, t0));
    CHECK(memcmp(t, t0, sizeof t) == 0); /* the taste does not depend on the context's coordinates */
    for (i = 0; i < 16; ++i) {
        double gx = 0;
        for (j = 0; j < 8; ++j) gx += (double)wide.mixing[i * 8 + j] * beta[j];
        CHECK_NEAR(x0[i], gx, 1e-5 * (1 + fabs(gx)));
        for (j = 0; j < 8; ++j) {
            const double e = wide.mixing[i * 8 + j] - (i == j ? 1.0 : 0.0);
            z += e * e;
            off += i == j ? 0.0 : fabs(e);
        }
    }
    CHECK_NEAR(z / (16 * 8), 1.0 / 8, 0.5 / 8); /* 128 draws of variance 1/8: sd of the mean square ~ 0.016 */
    CHECK(off > 0);
    polopt_synth_free(&plain);
    polopt_synth_free(&wide);
}

static int g_logged;
static char g_last[POLOPT_ERROR_MESSAGE_SIZE];
static void capture(void *user, polopt_result code, const char *msg)
{
    (void)user;
    (void)code;
    ++g_logged;
    strncpy(g_last, msg, sizeof g_last - 1);
}

static void synth_bad_input(void)
{
    polopt_synth s;
    polopt_synth_config c = polopt_synth_config_default();
    float buf[8];
    c.n_items = 0;
    c.dim = 8;
    CHECK_RC(polopt_synth_init(&s, &c), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(s.err.message, "n_items = 0") != NULL);
    c.n_items = 100;
    c.n_clusters = 101;
    CHECK_RC(polopt_synth_init(&s, &c), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(s.err.message, "n_clusters") != NULL);
    c.n_clusters = 0;
    c.cluster_zipf = NAN;
    CHECK_RC(polopt_synth_init(&s, &c), POLOPT_ERR_INVALID_ARG);
    c.cluster_zipf = 0.8;
    c.dim = 0;
    CHECK_RC(polopt_synth_init(&s, &c), POLOPT_ERR_INVALID_ARG);
    polopt_synth_free(&s);
    c.dim = 8;
    c.hooks.log = capture;
    CHECK_OK(polopt_synth_init(&s, &c));
    g_logged = 0;
    /* a const object reports through the log callback */
    CHECK_RC(polopt_synth_items(&s, 99, 2, buf), POLOPT_ERR_INVALID_ARG);
    CHECK(g_logged == 1 && strstr(g_last, "outside the catalogue") != NULL);
    CHECK_RC(polopt_synth_user(&s, 1, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_rewards(&s, NULL, 1, buf, buf), POLOPT_ERR_INVALID_ARG);
    polopt_synth_free(&s);
    CHECK_RC(polopt_synth_items(&s, 0, 1, buf), POLOPT_ERR_INVALID_ARG); /* after free */
}

/* The sparse task: Y_u must be the k items with the largest t_u^T beta_a, found here by sorting all P scores in
   double; the set reward is 1 exactly on Y_u. */
static void synth_relevant_sets_are_the_top_by_taste(void)
{
    const size_t P = 2000, L = 16, U = 40, k = 5;
    polopt_synth s = make(P, L, 3);
    float *items = (float *)malloc(P * L * sizeof *items), *T = (float *)malloc(U * L * sizeof *T), x[16], r[2];
    double *score = (double *)malloc(P * sizeof *score);
    polopt_sets sets;
    size_t u, a, j, wrong = 0;
    CHECK_OK(polopt_synth_items(&s, 0, P, items));
    for (u = 0; u < U; ++u) CHECK_OK(polopt_synth_user(&s, 100 + u, x, T + u * L));
    CHECK_OK(polopt_synth_relevant(&s, items, U, T, k, &sets));
    CHECK(sets.n == U);
    for (u = 0; u < U; ++u) {
        double kth;
        size_t above = 0;
        for (a = 0; a < P; ++a) {
            score[a] = 0;
            for (j = 0; j < L; ++j) score[a] += (double)T[u * L + j] * items[a * L + j];
        }
        /* the k-th largest score, by counting: an item is in Y_u iff fewer than k items score above it */
        for (a = 0, kth = -INFINITY; a < P; ++a) {
            size_t higher = 0, b;
            for (b = 0; b < P; ++b) higher += score[b] > score[a];
            if (higher < k) {
                ++above;
                kth = kth == -INFINITY || score[a] < kth ? score[a] : kth;
            }
        }
        wrong += above != k || sets.offsets[u + 1] - sets.offsets[u] != k;
        for (j = sets.offsets[u]; j < sets.offsets[u + 1]; ++j) wrong += !(score[sets.items[j]] >= kth);
        { /* the set reward: 1 on a member, 0 on the lowest id that is not one */
            uint32_t two[2];
            int member = 1;
            two[0] = sets.items[sets.offsets[u]];
            for (two[1] = 0; member; two[1] += member)
                for (member = 0, j = sets.offsets[u]; j < sets.offsets[u + 1]; ++j) member |= sets.items[j] == two[1];
            CHECK_OK(polopt_sets_reward(&sets, (uint32_t)u, 2, two, r));
            wrong += r[0] != 1.0f || r[1] != 0.0f;
        }
    }
    CHECK(wrong == 0);
    polopt_sets_free(&sets);
    CHECK_RC(polopt_synth_relevant(&s, items, U, T, P + 1, &sets), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_relevant(&s, NULL, U, T, k, &sets), POLOPT_ERR_INVALID_ARG);
    free(items);
    free(T);
    free(score);
    polopt_synth_free(&s);
}

/* ---- sessions with state ---- */

/* The reference of a session, in double: z = (1 - lambda) t + lambda m / ||m||, m the mean of the history's
   embeddings, p(a) = sigmoid(bias + scale z^T beta_a), 0 for a shown item. */
typedef struct ref_session {
    double m[8], z[8];
    uint32_t history[3];
    size_t head, steps;
    uint32_t shown[12];
} ref_session;

static void ref_update(ref_session *r, const float *items, const float *taste, size_t L, size_t M, double lambda)
{
    double norm = 0.0;
    size_t i, j;
    for (j = 0; j < L; ++j) {
        r->m[j] = 0.0;
        for (i = 0; i < M; ++i) r->m[j] += items[r->history[i] * L + j] / (double)M;
        norm += r->m[j] * r->m[j];
    }
    for (j = 0; j < L; ++j) r->z[j] = (1.0 - lambda) * taste[j] + lambda * r->m[j] / sqrt(norm);
}

static double ref_click_prob(const ref_session *r, const polopt_synth *s, const float *items, uint32_t a)
{
    double dot = 0.0;
    size_t j, t;
    for (t = 0; t < r->steps; ++t)
        if (r->shown[t] == a) return 0.0;
    for (j = 0; j < s->config.dim; ++j) dot += r->z[j] * items[a * s->config.dim + j];
    return 1.0 / (1.0 + exp(-(s->config.reward_bias + s->config.reward_scale * dot)));
}

/* A session follows its model: its history starts as the user's observed items, its context is [m_t, x_u], its
   state and every item's click probability match the reference (float against double: 1e-5), a shown item is never
   clicked, a click (and only a click) moves the history and the state, and the session refuses a step past
   max_steps or an item outside the catalogue, unchanged.  The clicks are Bernoulli(p): the first step's click rate
   over 20,000 users, with p known per user, is within 4 standard errors of the mean p. */
static void synth_session_follows_its_model(void)
{
    enum { P = 300, L = 8, D = 6, M = 3, T = 12 };
    polopt_synth s;
    polopt_synth_config c = polopt_synth_config_default();
    polopt_synth_session_config sc = polopt_synth_session_config_default();
    polopt_synth_session ses;
    float *items = (float *)malloc(P * L * sizeof *items), x[L + D], xu[D], taste[L], z[L], p[P];
    double worst = 0.0, sum_p = 0.0, clicks = 0.0, var = 0.0;
    uint32_t obs[M];
    ref_session r;
    size_t t, j, a, u, n_clicks = 0;
    c.n_items = P, c.dim = L, c.context_dim = D, c.seed = 12;
    CHECK_OK(polopt_synth_init(&s, &c));
    CHECK_OK(polopt_synth_items(&s, 0, P, items));
    sc.memory = M, sc.recency = 0.4, sc.max_steps = T;
    CHECK_OK(polopt_synth_session_init(&ses, &s, items, &sc));
    CHECK_OK(polopt_synth_session_start(&ses, 77, 5));
    CHECK_OK(polopt_synth_user(&s, 77, xu, taste));
    CHECK_OK(polopt_synth_user_items(&s, 77, 0, M, obs));
    memset(&r, 0, sizeof r);
    memcpy(r.history, obs, sizeof obs);
    CHECK(memcmp(ses.history, obs, sizeof obs) == 0);
    ref_update(&r, items, taste, L, M, 0.4);
    for (t = 0; t < T; ++t) {
        /* recommend the best item by the reference, but at step 5 an item shown before (never clicked) */
        uint32_t best = 0;
        float got_p;
        int clicked;
        double pb = -1.0;
        CHECK_OK(polopt_synth_session_context(&ses, x));
        CHECK_OK(polopt_synth_session_state(&ses, z));
        CHECK_OK(polopt_synth_session_click_probs(&ses, 0, P, p));
        for (j = 0; j < L; ++j) {
            worst = fmax(worst, fabs(x[j] - r.m[j]));
            worst = fmax(worst, fabs(z[j] - r.z[j]));
        }
        for (j = 0; j < D; ++j) CHECK(x[L + j] == xu[j]);
        for (a = 0; a < P; ++a) {
            const double want = ref_click_prob(&r, &s, items, (uint32_t)a);
            worst = fmax(worst, fabs(p[a] - want));
            if (want > pb) pb = want, best = (uint32_t)a;
        }
        if (t == 5) best = r.shown[0], pb = 0.0;
        CHECK_OK(polopt_synth_session_step(&ses, best, &clicked, &got_p));
        CHECK_NEAR(got_p, pb, 1e-5);
        CHECK(!(pb == 0.0 && clicked));
        r.shown[r.steps++] = best;
        CHECK(ses.steps == r.steps && ses.shown[t] == best);
        if (clicked) {
            r.history[r.head] = best;
            r.head = (r.head + 1) % M;
            ref_update(&r, items, taste, L, M, 0.4);
            ++n_clicks;
        }
        CHECK(memcmp(ses.history, r.history, sizeof r.history) == 0);
    }
    printf("    largest |session - reference| (context, state, click probabilities) %.2g; %lu clicks in %d steps\n",
           worst, (unsigned long)n_clicks, T);
    CHECK(worst < 1e-5);
    CHECK(n_clicks > 0); /* the greedy items here have p near 0.5 and above: some clicks move the state */
    {
        uint32_t hist[M];
        memcpy(hist, ses.history, sizeof hist);
        CHECK_RC(polopt_synth_session_step(&ses, 0, NULL, NULL), POLOPT_ERR_INVALID_ARG); /* past max_steps */
        CHECK(strstr(ses.err.message, "max_steps") != NULL);
        CHECK(ses.steps == T && memcmp(ses.history, hist, sizeof hist) == 0);
    }
    CHECK_OK(polopt_synth_session_start(&ses, 77, 5));
    CHECK_RC(polopt_synth_session_step(&ses, P, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK(ses.steps == 0);
    CHECK_RC(polopt_synth_session_click_probs(&ses, P - 1, 2, p), POLOPT_ERR_INVALID_ARG);
    /* the click rate of the first step, one step per user */
    for (u = 0; u < 20000; ++u) {
        int clicked;
        float pu;
        CHECK_OK(polopt_synth_session_start(&ses, u, 9));
        CHECK_OK(polopt_synth_session_step(&ses, (uint32_t)(u % P), &clicked, &pu));
        sum_p += pu, clicks += clicked, var += pu * (1.0 - pu);
    }
    printf("    first-step clicks of 20,000 users: %.0f, expected %.1f +- %.1f\n", clicks, sum_p, sqrt(var));
    CHECK(fabs(clicks - sum_p) < 4.0 * sqrt(var));
    polopt_synth_session_free(&ses);
    polopt_synth_free(&s);
    free(items);
}

/* Common random numbers: the same user and seed give the same clicks to the same recommendations, in another session
   object too; another seed gives other clicks; a restart forgets the session. */
static void synth_session_common_random_numbers(void)
{
    enum { P = 100, L = 4, T = 40 };
    polopt_synth s = make(P, L, 4);
    polopt_synth_session_config sc = polopt_synth_session_config_default();
    polopt_synth_session a, b;
    float *items = (float *)malloc(P * L * sizeof *items), xa[2 * L], xb[2 * L];
    size_t t, differ = 0;
    int ca[T], cb[T];
    CHECK_OK(polopt_synth_items(&s, 0, P, items));
    sc.max_steps = T;
    CHECK_OK(polopt_synth_session_init(&a, &s, items, &sc));
    CHECK_OK(polopt_synth_session_init(&b, &s, items, &sc));
    CHECK_OK(polopt_synth_session_start(&a, 3, 1));
    CHECK_OK(polopt_synth_session_step(&a, 7, NULL, NULL)); /* a session left half-way ... */
    CHECK_OK(polopt_synth_session_start(&a, 3, 1));          /* ... is forgotten by a restart */
    CHECK_OK(polopt_synth_session_start(&b, 3, 1));
    for (t = 0; t < T; ++t) {
        CHECK_OK(polopt_synth_session_step(&a, (uint32_t)(t * 2), ca + t, NULL));
        CHECK_OK(polopt_synth_session_step(&b, (uint32_t)(t * 2), cb + t, NULL));
        CHECK(ca[t] == cb[t]);
    }
    CHECK_OK(polopt_synth_session_context(&a, xa));
    CHECK_OK(polopt_synth_session_context(&b, xb));
    CHECK(memcmp(xa, xb, sizeof xa) == 0);
    CHECK_OK(polopt_synth_session_start(&b, 3, 2));
    for (t = 0; t < T; ++t) {
        CHECK_OK(polopt_synth_session_step(&b, (uint32_t)(t * 2), cb + t, NULL));
        differ += ca[t] != cb[t];
    }
    CHECK(differ > 0);
    polopt_synth_session_free(&a);
    polopt_synth_session_free(&b);
    polopt_synth_session_free(&b); /* twice is allowed */
    polopt_synth_free(&s);
    free(items);
}

/* Bad input: each refused with a message, a failed init leaves the object zeroed, and every call on a zeroed
   session answers POLOPT_ERR_INVALID_ARG. */
static void synth_session_bad_input(void)
{
    enum { P = 20, L = 4 };
    polopt_synth s = make(P, L, 2), never;
    polopt_synth_session_config sc = polopt_synth_session_config_default();
    polopt_synth_session ses;
    float items[P * L], x[2 * L];
    size_t j;
    memset(&never, 0, sizeof never);
    CHECK_OK(polopt_synth_items(&s, 0, P, items));
    CHECK_RC(polopt_synth_session_init(&ses, NULL, items, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_session_init(&ses, &never, items, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(ses.err.message, "synth") != NULL);
    CHECK_RC(polopt_synth_session_init(&ses, &s, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(ses.err.message, "items") != NULL);
    sc.memory = 0;
    CHECK_RC(polopt_synth_session_init(&ses, &s, items, &sc), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(ses.err.message, "memory") != NULL);
    sc = polopt_synth_session_config_default(), sc.max_steps = 0;
    CHECK_RC(polopt_synth_session_init(&ses, &s, items, &sc), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(ses.err.message, "max_steps") != NULL);
    sc = polopt_synth_session_config_default(), sc.recency = 1.5;
    CHECK_RC(polopt_synth_session_init(&ses, &s, items, &sc), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(ses.err.message, "recency") != NULL);
    sc.recency = NAN;
    CHECK_RC(polopt_synth_session_init(&ses, &s, items, &sc), POLOPT_ERR_INVALID_ARG);
    for (j = 0; j < sizeof ses.err.message; ++j) ses.err.message[j] = 0; /* the rest of the object is zero */
    ses.err.code = POLOPT_OK;
    {
        const unsigned char *bytes = (const unsigned char *)&ses;
        size_t nonzero = 0;
        for (j = 0; j < sizeof ses; ++j) nonzero += bytes[j] != 0;
        CHECK(nonzero == 0);
    }
    CHECK_RC(polopt_synth_session_start(&ses, 1, 1), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_session_context(&ses, x), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_session_state(&ses, x), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_session_click_probs(&ses, 0, 1, x), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_session_step(&ses, 0, NULL, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_OK(polopt_synth_session_init(&ses, &s, items, NULL));
    CHECK_RC(polopt_synth_session_context(&ses, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_RC(polopt_synth_session_click_probs(&ses, 0, 1, NULL), POLOPT_ERR_INVALID_ARG);
    CHECK_OK(polopt_synth_session_click_probs(&ses, P, 0, NULL)); /* nothing asked, nothing written */
    polopt_synth_session_free(&ses);
    polopt_synth_free(&s);
}

static polopt_result session_alloc_scenario(const polopt_hooks *hooks, int stage, void *user)
{
    enum { P = 50, L = 4 };
    polopt_synth_config c = polopt_synth_config_default();
    polopt_synth s;
    polopt_synth_session ses;
    float items[P * L];
    int clicked;
    polopt_result rc;
    (void)user;
    memset(&ses, 0, sizeof ses);
    c.n_items = P, c.dim = L, c.hooks = *hooks;
    rc = polopt_synth_init(&s, &c);
    if (rc == POLOPT_OK) rc = polopt_synth_items(&s, 0, P, items);
    if (rc == POLOPT_OK) rc = polopt_synth_session_init(&ses, &s, items, NULL);
    if (rc == POLOPT_OK) rc = polopt_synth_session_start(&ses, 5, 5); /* allocates nothing */
    if (rc == POLOPT_OK) rc = polopt_synth_session_step(&ses, 3, &clicked, NULL);
    if (stage == 1) polopt_synth_free(&s); /* the catalogue may go first: the session frees with its own copy */
    polopt_synth_session_free(&ses);
    polopt_synth_free(&s);
    return rc;
}

static void synth_session_allocation_failures(void)
{
    int stage;
    for (stage = 0; stage < 2; ++stage) CHECK_EACH_ALLOCATION_FAILURE(session_alloc_scenario, stage, NULL);
}

const th_test th_suite_synth[] = {TH(synth_deterministic_and_streamable), TH(synth_clusters_norms_and_spectrum),
                                  TH(synth_users_and_ground_truth), TH(synth_user_item_distribution),
                                  TH(synth_context_mixing_and_dimension), TH(synth_relevant_sets_are_the_top_by_taste),
                                  TH(synth_bad_input), TH(synth_session_follows_its_model),
                                  TH(synth_session_common_random_numbers), TH(synth_session_bad_input),
                                  TH(synth_session_allocation_failures), TH_END};
