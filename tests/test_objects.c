/* The object discipline, for every object type: an object is either zeroed or fully initialised.  A failed *_init
   (or load) leaves it zeroed apart from its err (which says why), *_free brings it back to all zeroes, and every
   call on a zeroed object answers POLOPT_ERR_INVALID_ARG, with a message in the object when the call may write it
   (non-const), instead of reading a NULL buffer.  Each type is driven through the three ways of being zeroed:
   never initialised, initialised then freed, and an initialisation whose first allocation failed. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { FRESH = 0, FREED = 1, FAILED = 2 };
static const char *const state_name[] = {"never initialised", "freed", "after a failed init"};

/* All bytes of obj are zero, except those of its err (a failed init keeps its message there). */
static int zeroed_but_err(const void *obj, size_t size, const polopt_error *err)
{
    const unsigned char *p = (const unsigned char *)obj;
    const size_t at = (size_t)((const unsigned char *)err - p);
    size_t i;
    for (i = 0; i < size; ++i)
        if ((i < at || i >= at + sizeof *err) && p[i] != 0) return 0;
    return 1;
}

#define CHECK_ZEROED(obj, state)                                                                                 \
    do {                                                                                                         \
        if (!zeroed_but_err(&(obj), sizeof(obj), &(obj).err))                                                    \
            th_fail(__FILE__, __LINE__, "%s %s is not zeroed", #obj, state_name[state]);                         \
        if ((state) == FREED && (obj).err.message[0] != '\0')                                                    \
            th_fail(__FILE__, __LINE__, "%s: free left a message: %s", #obj, (obj).err.message);               \
        if ((state) == FAILED && ((obj).err.code == POLOPT_OK || (obj).err.message[0] == '\0'))                \
            th_fail(__FILE__, __LINE__, "%s: the failed init left no message", #obj);                            \
    } while (0)

/* The call fails with INVALID_ARG and, when it can write to obj, leaves a message there. */
#define CHECK_UNUSABLE(call, obj)                                                                               \
    do {                                                                                                        \
        (obj).err.message[0] = '\0';                                                                            \
        CHECK_RC(call, POLOPT_ERR_INVALID_ARG);                                                                 \
        if ((obj).err.message[0] == '\0') th_fail(__FILE__, __LINE__, "%s left no message", #call);             \
    } while (0)

/* First allocation fails: hooks that route the library's allocations to the counting test allocator. */
static polopt_hooks failing_hooks(th_allocator *a)
{
    polopt_hooks h;
    memset(&h, 0, sizeof h);
    a->fail_at = 0, a->calls = 0, a->live = 0;
    h.alloc_ctx = a;
    return h;
}

static float g_vectors[64 * 4];
static const float *vectors(void)
{
    size_t i;
    for (i = 0; i < 64 * 4; ++i) g_vectors[i] = (float)((i * 37) % 11) / 11.0f - 0.4f;
    return g_vectors;
}

static void objects_alias(void)
{
    static const float w[4] = {1, 2, 3, 4};
    int s;
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_alias t;
        polopt_rng rng;
        th_allocator a;
        polopt_hooks h = failing_hooks(&a);
        memset(&t, 0, sizeof t);
        if (s == FREED) { CHECK_OK(polopt_alias_init(&t, 4, w, NULL)); polopt_alias_free(&t); }
        if (s == FAILED) { CHECK_RC(polopt_alias_init(&t, 4, w, &h), POLOPT_ERR_NO_MEMORY); CHECK(a.live == 0); }
        CHECK_ZEROED(t, s);
        polopt_rng_seed(&rng, 1);
        CHECK(polopt_alias_draw(&t, &rng) == POLOPT_NO_ITEM); /* documented answer of an empty table */
        polopt_alias_free(&t);
        polopt_alias_free(&t); /* twice is harmless */
    }
}

static void objects_mips_and_scratch(void)
{
    const float *v = vectors();
    float q[4] = {1, 0, 0, 0}, sc_out[2];
    uint32_t ids[2];
    size_t size = 0;
    unsigned char buf[64];
    int s, kind;
    for (kind = 0; kind < 2; ++kind)
        for (s = FRESH; s <= FAILED; ++s) {
            polopt_mips ix, good;
            polopt_mips_scratch sc;
            polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
            th_allocator a;
            polopt_hooks h = failing_hooks(&a);
            memset(&ix, 0, sizeof ix);
            hc.M = 4;
            if (s == FREED) {
                CHECK_OK(kind ? polopt_mips_init_hnsw(&ix, 64, 4, v, 1, &hc) : polopt_mips_init_exact(&ix, 64, 4, v, 1, NULL));
                polopt_mips_free(&ix);
            }
            if (s == FAILED) {
                hc.hooks = h;
                CHECK_RC(kind ? polopt_mips_init_hnsw(&ix, 64, 4, v, 1, &hc) : polopt_mips_init_exact(&ix, 64, 4, v, 1, &h),
                         POLOPT_ERR_NO_MEMORY);
                CHECK(a.live == 0);
            }
            CHECK_ZEROED(ix, s);
            CHECK_UNUSABLE(polopt_mips_add(&ix, 1, v), ix);
            CHECK_UNUSABLE(polopt_mips_save(&ix, "build/never-written.idx", &ix.err), ix);
            CHECK_UNUSABLE(polopt_mips_save_buffer(&ix, buf, sizeof buf, &size, &ix.err), ix);
            CHECK_RC(polopt_mips_scratch_init(&sc, &ix, 4, NULL), POLOPT_ERR_INVALID_ARG);
            CHECK(sc.err.message[0] != '\0');
            CHECK_ZEROED(sc, FAILED);
            /* a search on a zeroed index, with a good scratch (of another index), and on a zeroed scratch */
            CHECK_OK(polopt_mips_init_exact(&good, 64, 4, v, 0, NULL));
            CHECK_OK(polopt_mips_scratch_init(&sc, &good, 4, NULL));
            CHECK_UNUSABLE(polopt_mips_search(&ix, &sc, q, 2, 4, ids, sc_out), sc);
            CHECK_UNUSABLE(polopt_mips_search_batch(&ix, &sc, 1, q, 4, 2, 4, ids, sc_out), sc);
            CHECK_UNUSABLE(polopt_mips_search_from(&ix, &sc, q, 2, 4, NULL, 0, 0, ids, sc_out), sc);
            polopt_mips_scratch_free(&sc);
            CHECK_ZEROED(sc, FREED);
            CHECK_UNUSABLE(polopt_mips_search(&good, &sc, q, 2, 4, ids, sc_out), sc);
            polopt_mips_free(&good);
            polopt_mips_free(&ix);
        }
}

static void objects_optimisers(void)
{
    float p[3] = {0, 0, 0}, g[3] = {1, 1, 1};
    int s;
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_adam adam;
        polopt_sgd sgd;
        polopt_adam_config ac = polopt_adam_config_default();
        polopt_sgd_config sc = polopt_sgd_config_default();
        th_allocator a;
        memset(&adam, 0, sizeof adam);
        memset(&sgd, 0, sizeof sgd);
        if (s == FREED) {
            CHECK_OK(polopt_adam_init(&adam, 3, NULL));
            polopt_adam_free(&adam);
            CHECK_OK(polopt_sgd_init(&sgd, 3, NULL));
            polopt_sgd_free(&sgd);
        }
        if (s == FAILED) {
            ac.hooks = failing_hooks(&a);
            CHECK_RC(polopt_adam_init(&adam, 3, &ac), POLOPT_ERR_NO_MEMORY);
            sc.hooks = failing_hooks(&a);
            sc.momentum = 0.9f;
            CHECK_RC(polopt_sgd_init(&sgd, 3, &sc), POLOPT_ERR_NO_MEMORY);
        }
        CHECK_ZEROED(adam, s);
        CHECK_ZEROED(sgd, s);
        CHECK_UNUSABLE(polopt_adam_step(&adam, p, g), adam);
        CHECK_UNUSABLE(polopt_sgd_step(&sgd, p, g), sgd);
        CHECK(p[0] == 0.0f);
    }
}

static void objects_policy_proposal_sets(void)
{
    const float *v = vectors();
    float x[4] = {1, 2, 3, 4}, H[4], lq[2], scores[2] = {1, 0};
    uint32_t ids[2] = {0, 1}, out[2];
    size_t size = 0, offsets[2] = {0, 1};
    unsigned char buf[256];
    int s;
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_policy p;
        polopt_proposal q;
        polopt_sets sets;
        polopt_mips ix;
        polopt_mips_scratch sc;
        polopt_policy_config pc = polopt_policy_config_default(4, 4);
        polopt_rng rng;
        th_allocator a;
        polopt_hooks h = failing_hooks(&a);
        float r;
        memset(&p, 0, sizeof p), memset(&q, 0, sizeof q), memset(&sets, 0, sizeof sets);
        if (s == FREED) {
            CHECK_OK(polopt_policy_init(&p, &pc));
            polopt_policy_free(&p);
            CHECK_OK(polopt_proposal_init(&q, 64, 4, NULL));
            polopt_proposal_free(&q);
            CHECK_OK(polopt_sets_init(&sets, 1, offsets, ids, NULL));
            polopt_sets_free(&sets);
        }
        if (s == FAILED) {
            pc.hooks = h;
            CHECK_RC(polopt_policy_init(&p, &pc), POLOPT_ERR_NO_MEMORY);
            h = failing_hooks(&a);
            CHECK_RC(polopt_proposal_init(&q, 64, 4, &h), POLOPT_ERR_NO_MEMORY);
            h = failing_hooks(&a);
            CHECK_RC(polopt_sets_init(&sets, 1, offsets, ids, &h), POLOPT_ERR_NO_MEMORY);
            CHECK(a.live == 0);
        }
        CHECK_ZEROED(p, s);
        CHECK_ZEROED(q, s);
        CHECK_ZEROED(sets, s);
        /* const calls: the result code (their message goes to the log callback) */
        CHECK_RC(polopt_policy_embed(&p, 1, x, 4, H), POLOPT_ERR_INVALID_ARG);
        CHECK_OK(polopt_mips_init_exact(&ix, 64, 4, v, 0, NULL));
        CHECK_OK(polopt_mips_scratch_init(&sc, &ix, 4, NULL));
        CHECK_RC(polopt_policy_topk(&p, &ix, &sc, x, 2, 4, out, lq), POLOPT_ERR_INVALID_ARG);
        polopt_mips_scratch_free(&sc);
        polopt_mips_free(&ix);
        CHECK_UNUSABLE(polopt_policy_save(&p, "build/never-written.pol", &p.err), p);
        CHECK_UNUSABLE(polopt_policy_save_buffer(&p, buf, sizeof buf, &size, &p.err), p);
        CHECK_UNUSABLE(polopt_proposal_set(&q, 0.5f, 2, ids, scores), q);
        polopt_rng_seed(&rng, 1);
        CHECK_UNUSABLE(polopt_proposal_sample(&q, &rng, 2, out, lq), q);
        CHECK_RC(polopt_proposal_log_prob(&q, 2, ids, lq), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_sets_reward(&sets, 0, 1, ids, &r), POLOPT_ERR_INVALID_ARG);
    }
}

static void objects_estimator(void)
{
    const float *v = vectors();
    float H[4] = {1, 0, 0, 0}, g[4], r[8] = {0}, lp;
    const uint32_t a = 3;
    polopt_draws dr;
    int s;
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_estimator est;
        polopt_estimator_config ec = polopt_estimator_config_default();
        polopt_mips ix;
        th_allocator al;
        memset(&est, 0, sizeof est);
        CHECK_OK(polopt_mips_init_exact(&ix, 64, 4, v, 0, NULL));
        ec.K = 4, ec.S = 8, ec.batch = 2;
        if (s == FREED) { CHECK_OK(polopt_estimator_init(&est, &ix, &ec)); polopt_estimator_free(&est); }
        if (s == FAILED) {
            ec.hooks = failing_hooks(&al);
            CHECK_RC(polopt_estimator_init(&est, &ix, &ec), POLOPT_ERR_NO_MEMORY);
            CHECK(al.live == 0);
        }
        CHECK_ZEROED(est, s);
        CHECK_UNUSABLE(polopt_estimator_set(&est, 1, H, NULL), est);
        CHECK_RC(polopt_estimator_draws(&est, 0, &dr), POLOPT_ERR_INVALID_ARG); /* const: no message to keep */
        CHECK_RC(polopt_estimator_mean_embedding(&est, 0, g), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_estimator_log_prob(&est, 0, 1, &a, &lp, g), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_estimator_gradient(&est, 0, r, g, NULL), POLOPT_ERR_INVALID_ARG);
        polopt_estimator_free(&est);
        if (s == FAILED) { /* the caller's memory, too small: zeroed with a message */
            static unsigned char heap[64];
            ec.hooks.alloc_ctx = NULL;
            CHECK_RC(polopt_estimator_init_preallocated(&est, &ix, &ec, heap, sizeof heap), POLOPT_ERR_INVALID_ARG);
            CHECK_ZEROED(est, FAILED);
        }
        polopt_mips_free(&ix);
    }
}

static void objects_trainer(void)
{
    const float *v = vectors();
    float X[8 * 4], G[4], H[4] = {1, 0, 0, 0};
    uint32_t ctx[1] = {0};
    double cosine, rel;
    polopt_train_stats st;
    int s;
    size_t i;
    for (i = 0; i < 8 * 4; ++i) X[i] = (float)(i % 5) * 0.25f;
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_trainer tr;
        polopt_policy p;
        polopt_mips ix;
        polopt_policy_config pc = polopt_policy_config_default(4, 4);
        polopt_trainer_config tc = polopt_trainer_config_default();
        polopt_synth syn;
        polopt_synth_config yc = polopt_synth_config_default();
        polopt_dataset d;
        th_allocator a;
        memset(&tr, 0, sizeof tr);
        CHECK_OK(polopt_policy_init(&p, &pc));
        CHECK_OK(polopt_mips_init_exact(&ix, 64, 4, v, 0, NULL));
        tc.estimator.K = 4, tc.estimator.S = 8, tc.estimator.batch = 2;
        if (s == FREED) { CHECK_OK(polopt_trainer_init(&tr, &p, &ix, &tc)); polopt_trainer_free(&tr); }
        if (s == FAILED) {
            tc.hooks = failing_hooks(&a);
            CHECK_RC(polopt_trainer_init(&tr, &p, &ix, &tc), POLOPT_ERR_NO_MEMORY);
            CHECK(a.live == 0);
        }
        CHECK_ZEROED(tr, s);
        yc.n_items = 64, yc.dim = 4;
        CHECK_OK(polopt_synth_init(&syn, &yc));
        memset(&d, 0, sizeof d);
        d.n = 8, d.X = X, d.ldx = 4, d.reward = polopt_synth_reward, d.reward_user = &syn;
        CHECK_UNUSABLE(polopt_trainer_epoch(&tr, &d, &st), tr);
        CHECK_UNUSABLE(polopt_trainer_embedding_gradient(&tr, &d, 1, ctx, H, G, &st), tr);
        CHECK_UNUSABLE(polopt_trainer_gradient_fidelity(&tr, &d, 1, ctx, &cosine, &rel), tr);
        polopt_trainer_free(&tr);
        polopt_synth_free(&syn);
        polopt_mips_free(&ix);
        polopt_policy_free(&p);
    }
}

static void objects_logged_csv_ope_model(void)
{
    static const char *path = "build/objects-log.csv";
    const char *numeric[1] = {"x"};
    FILE *f = fopen(path, "w");
    double w[2] = {1, 1};
    double r[2] = {1, 0}, qv[2] = {0.5, 0.5}, qd[4];
    float x[1] = {1}, out[4];
    polopt_ope_report est;
    size_t rows = 0;
    int s;
    CHECK(f != NULL);
    if (!f) return;
    fputs("action,propensity,reward,x\n0,0.5,1,0.1\n1,0.5,0,0.2\n1,0.5,1,0.3\n", f);
    fclose(f);
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_csv_reader rd;
        polopt_logged d, read_into;
        polopt_ope_acc acc;
        polopt_reward_model m;
        polopt_csv_config cc = polopt_csv_config_default();
        polopt_ope_config oc = polopt_ope_config_default();
        polopt_reward_model_config mc = polopt_reward_model_config_default();
        th_allocator a;
        memset(&rd, 0, sizeof rd), memset(&d, 0, sizeof d), memset(&acc, 0, sizeof acc), memset(&m, 0, sizeof m);
        memset(&read_into, 0, sizeof read_into);
        cc.action = "action", cc.propensity = "propensity", cc.reward = "reward";
        cc.numeric = numeric, cc.n_numeric = 1;
        oc.bootstrap = 10;
        if (s == FREED) {
            CHECK_OK(polopt_csv_open(&rd, path, &cc));
            polopt_csv_close(&rd);
            CHECK_OK(polopt_logged_load_csv(&d, path, &cc));
            CHECK_OK(polopt_reward_model_fit(&m, &d, NULL, 0, &mc));
            polopt_reward_model_free(&m);
            polopt_logged_free(&d);
            CHECK_OK(polopt_ope_acc_init(&acc, &oc));
            polopt_ope_acc_free(&acc);
        }
        if (s == FAILED) {
            cc.hooks = failing_hooks(&a);
            CHECK_RC(polopt_csv_open(&rd, path, &cc), POLOPT_ERR_NO_MEMORY);
            cc.hooks = failing_hooks(&a);
            CHECK_RC(polopt_logged_load_csv(&d, path, &cc), POLOPT_ERR_NO_MEMORY);
            oc.hooks = failing_hooks(&a);
            CHECK_RC(polopt_ope_acc_init(&acc, &oc), POLOPT_ERR_NO_MEMORY);
            memset(&cc.hooks, 0, sizeof cc.hooks);
            CHECK_OK(polopt_logged_load_csv(&read_into, path, &cc));
            mc.hooks = failing_hooks(&a);
            CHECK_RC(polopt_reward_model_fit(&m, &read_into, NULL, 0, &mc), POLOPT_ERR_NO_MEMORY);
            polopt_logged_free(&read_into);
            CHECK(a.live == 0);
        }
        CHECK_ZEROED(rd, s);
        CHECK_ZEROED(d, s);
        CHECK_ZEROED(acc, s);
        CHECK_ZEROED(m, s);
        CHECK_UNUSABLE(polopt_csv_read(&rd, &read_into, 10, &rows), rd);
        polopt_logged_free(&read_into);
        CHECK_UNUSABLE(polopt_ope_acc_add(&acc, 2, w, r, qv, qv), acc);
        CHECK_RC(polopt_ope_acc_finish(&acc, &est), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_reward_model_predict(&m, x, out), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_ope_evaluate(&d, qv, NULL, 1, &oc, &est), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_reward_model_crossfit(&d, &mc, qd), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_reward_model_fit(&m, &d, NULL, 0, NULL), POLOPT_ERR_INVALID_ARG);
        polopt_reward_model_free(&m);
    }
    remove(path);
}

static void objects_synth(void)
{
    float out[8], taste[4] = {0}, items[4] = {0};
    uint32_t ids[2], cl;
    int s;
    for (s = FRESH; s <= FAILED; ++s) {
        polopt_synth syn;
        polopt_synth_config c = polopt_synth_config_default();
        polopt_sets sets;
        th_allocator a;
        memset(&syn, 0, sizeof syn);
        c.n_items = 64, c.dim = 4;
        if (s == FREED) { CHECK_OK(polopt_synth_init(&syn, &c)); polopt_synth_free(&syn); }
        if (s == FAILED) {
            c.hooks = failing_hooks(&a);
            CHECK_RC(polopt_synth_init(&syn, &c), POLOPT_ERR_NO_MEMORY);
            CHECK(a.live == 0);
        }
        CHECK_ZEROED(syn, s);
        CHECK_RC(polopt_synth_items(&syn, 0, 1, out), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_synth_item_cluster(&syn, 0, &cl), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_synth_user(&syn, 0, out, NULL), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_synth_user_items(&syn, 0, 0, 2, ids), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_synth_rewards(&syn, taste, 1, items, out), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_synth_reward(&syn, 0, 1, ids, out), POLOPT_ERR_INVALID_ARG);
        CHECK_RC(polopt_synth_relevant(&syn, items, 1, taste, 1, &sets), POLOPT_ERR_INVALID_ARG);
    }
}

/* The constructors, loaders and long-running calls not covered by the other suites' allocation tests: each fails
   cleanly at every allocation (the object stays freeable), through the one helper of the harness. */
static polopt_result objects_alloc_scenario(const polopt_hooks *h, int stage, void *user)
{
    const float *v = vectors();
    float X[8 * 4];
    polopt_result rc = POLOPT_OK;
    size_t i;
    (void)user;
    for (i = 0; i < 8 * 4; ++i) X[i] = (float)(i % 5) * 0.25f - 0.5f;
    if (stage == 0) {
        polopt_proposal q;
        rc = polopt_proposal_init(&q, 64, 8, h);
        polopt_proposal_free(&q);
    } else if (stage <= 2) { /* a policy, saved to a file (the temporary's name is allocated), or its value */
        polopt_policy p;
        polopt_policy_config pc = polopt_policy_config_default(4, 4);
        pc.hooks = *h;
        rc = polopt_policy_init(&p, &pc);
        if (rc == POLOPT_OK && stage == 1) rc = polopt_policy_save(&p, "build/test_alloc.pol", &p.err);
        if (rc == POLOPT_OK && stage == 2) {
            polopt_mips ix;
            polopt_synth syn;
            polopt_synth_config yc = polopt_synth_config_default();
            polopt_synth_task task;
            polopt_dataset d;
            float tastes[8 * 4];
            double value;
            yc.n_items = 64, yc.dim = 4;
            CHECK_OK(polopt_mips_init_exact(&ix, 64, 4, v, 0, NULL));
            CHECK_OK(polopt_synth_init(&syn, &yc));
            for (i = 0; i < 8; ++i) CHECK_OK(polopt_synth_user(&syn, i, X + 4 * i, tastes + 4 * i));
            task.synth = &syn, task.items = v, task.tastes = tastes, task.n = 8;
            memset(&d, 0, sizeof d);
            d.n = 8, d.X = X, d.ldx = 4, d.reward = polopt_synth_reward, d.reward_user = &task;
            rc = polopt_policy_value(&p, &ix, &d, &value);
            polopt_synth_free(&syn);
            polopt_mips_free(&ix);
        }
        polopt_policy_free(&p);
    } else if (stage == 3) { /* an index saved to a file */
        polopt_mips ix;
        rc = polopt_mips_init_exact(&ix, 64, 4, v, 1, h);
        if (rc == POLOPT_OK) rc = polopt_mips_save(&ix, "build/test_alloc.idx", &ix.err);
        polopt_mips_free(&ix);
    } else { /* the relevant sets of a synthetic task */
        polopt_synth syn;
        polopt_synth_config yc = polopt_synth_config_default();
        polopt_sets sets;
        float tastes[8 * 4];
        yc.n_items = 64, yc.dim = 4, yc.hooks = *h;
        rc = polopt_synth_init(&syn, &yc);
        for (i = 0; i < 8 && rc == POLOPT_OK; ++i) rc = polopt_synth_user(&syn, i, X + 4 * i, tastes + 4 * i);
        memset(&sets, 0, sizeof sets);
        if (rc == POLOPT_OK) rc = polopt_synth_relevant(&syn, v, 8, tastes, 3, &sets);
        polopt_sets_free(&sets);
        polopt_synth_free(&syn);
    }
    return rc;
}

static void objects_allocation_failures_are_clean(void)
{
    int stage;
    for (stage = 0; stage < 5; ++stage) CHECK_EACH_ALLOCATION_FAILURE(objects_alloc_scenario, stage, NULL);
    remove("build/test_alloc.pol"), remove("build/test_alloc.idx");
}

const th_test th_suite_objects[] = {TH(objects_alias),
                                    TH(objects_mips_and_scratch),
                                    TH(objects_optimisers),
                                    TH(objects_policy_proposal_sets),
                                    TH(objects_estimator),
                                    TH(objects_trainer),
                                    TH(objects_logged_csv_ope_model),
                                    TH(objects_synth),
                                    TH(objects_allocation_failures_are_clean),
                                    TH_END};
