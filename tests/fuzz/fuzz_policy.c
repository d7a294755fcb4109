/* Fuzz driver of the policy loader (polopt_policy_load_buffer, polopt_policy_load).
   Each input is loaded as it is, then once more with its checksums recomputed, and once more with the payload size
   of the header set to the input's too.  A policy that loads is then used: contexts embedded (polopt_policy_embed),
   the embeddings run through polopt_softmax and polopt_logsumexp at the policy's temperature, a top-k through a
   small exact index (polopt_policy_topk), then saved, reloaded and saved again.  Invariants:
     - a load from a file and from a buffer of the same bytes agree; a failed load says why;
     - a loaded policy holds what the input says (D, L, temperature, theta, bit for bit);
     - embeddings are the products X theta (when they cannot overflow; when they do, POLOPT_ERR_NONFINITE or, with
       FUZZ_NO_SILENT_NAN, nothing else); a non-finite context is refused; top-k scores are finite;
     - softmax, when it succeeds, is a distribution; logsumexp is not NaN; every kernel the CPU runs agrees;
     - save(x) reloads and save(load(save(x))) == save(x) == what polopt_policy_save writes. */
#define POLOPT_IMPLEMENTATION
#include "fuzz.h"

/* README's "no silent NaN": finite inputs whose products overflow make the call answer POLOPT_ERR_NONFINITE, so an
   embedding or a top-k that succeeds is finite.  0: only when the products cannot overflow. */
#ifndef FUZZ_NO_SILENT_NAN
#define FUZZ_NO_SILENT_NAN 1
#endif

FUZZ_DEFINE_SAVER(save_policy, polopt_policy, polopt_policy_save_buffer)

/* The policy holds what the input says. */
static void check_faithful(const polopt_policy *p, const unsigned char *in, size_t size)
{
    float t;
    uint32_t bits = 0;
    int i;
    for (i = 3; i >= 0; --i) bits = bits << 8 | in[40 + i];
    memcpy(&t, &bits, 4);
    FUZZ_CHECK(p->D == (size_t)fuzz_get_u64(in + 24) && p->L == (size_t)fuzz_get_u64(in + 32), "D or L differ");
    FUZZ_CHECK(memcmp(&p->temperature, &t, 4) == 0, "the temperature differs from the header");
    FUZZ_CHECK(size == FUZZ_HEADER + p->D * p->L * 4, "the input is not exactly the payload");
    FUZZ_CHECK(memcmp(p->theta, in + FUZZ_HEADER, p->D * p->L * 4) == 0, "theta differs from the input");
    FUZZ_CHECK(p->temperature > 0.0f && isfinite(p->temperature), "a loaded temperature is not positive and finite");
}

/* Embed two contexts, then softmax, logsumexp and a top-k through a small exact index. */
static void use_policy(const polopt_policy *p, fuzz_rng *r)
{
    const size_t D = p->D, L = p->L, ldx = D + 1, m = 1 + fuzz_below(r, 5);
    float *X = (float *)malloc(2 * ldx * sizeof *X), *H = (float *)malloc(2 * L * sizeof *H);
    float *out = (float *)malloc(L * sizeof *out), *items = (float *)malloc(m * L * sizeof *items), scores[5];
    uint32_t ids[5];
    polopt_mips ix;
    polopt_mips_scratch sc;
    polopt_result rc;
    size_t i, j, a, k;
    double lse;
    int bounded;
    FUZZ_CHECK(X && H && out && items, "out of memory in the driver");
    for (i = 0; i < 2 * ldx; ++i) X[i] = fuzz_float(r, 2.0f);
    if (fuzz_below(r, 4) == 0) { /* a one-hot context: a row of theta */
        memset(X, 0, ldx * sizeof *X);
        X[fuzz_below(r, D)] = 1.0f;
    }
    X[D] = NAN; /* between the rows: never read */
    bounded = (double)D * max_abs(p->theta, D * L) * max_abs(X, D) < 1e36 &&
              (double)D * max_abs(p->theta, D * L) * max_abs(X + ldx, D) < 1e36;
    rc = polopt_policy_embed(p, 2, X, ldx, H);
    FUZZ_CHECK(rc == POLOPT_OK || (rc == POLOPT_ERR_NONFINITE && !bounded), "polopt_policy_embed fails on finite contexts");
    if (rc != POLOPT_OK) memset(H, 0, 2 * L * sizeof *H); /* products that overflow, refused */
    for (i = 0; i < 2 * L && rc == POLOPT_OK && FUZZ_NO_SILENT_NAN; ++i)
        FUZZ_CHECK(isfinite(H[i]), "polopt_policy_embed succeeds with a non-finite embedding (silent NaN)");
    for (i = 0; i < 2 && bounded; ++i)
        for (j = 0; j < L; ++j) {
            double s = 0.0, abs_sum = 0.0;
            for (a = 0; a < D; ++a) {
                s += (double)X[i * ldx + a] * (double)p->theta[a * L + j];
                abs_sum += fabs((double)X[i * ldx + a] * (double)p->theta[a * L + j]);
            }
            FUZZ_CHECK(isfinite(H[i * L + j]), "an embedding is not finite without overflow");
            FUZZ_CHECK(fabs((double)H[i * L + j] - s) <= 1e-5 * (double)(D + 4) * abs_sum + 1e-30,
                       "an embedding is not the product X theta");
        }
    /* the softmax of the embedding at the policy's temperature: a distribution, or a refusal */
    rc = polopt_softmax(L, H, p->temperature, out);
    if (rc == POLOPT_OK) {
        double sum = 0.0;
        for (j = 0; j < L; ++j) {
            FUZZ_CHECK(out[j] >= 0.0f && out[j] <= 1.0f, "a softmax output outside [0, 1]");
            sum += out[j];
        }
        FUZZ_CHECK(fabs(sum - 1.0) <= 1e-3, "a softmax that does not sum to 1");
    } else {
        FUZZ_CHECK(rc == POLOPT_ERR_NONFINITE || rc == POLOPT_ERR_DOMAIN ||
                       (rc == POLOPT_ERR_INVALID_ARG && !(1.0f / p->temperature <= FLT_MAX)), /* T < ~3e-39 */
                   "polopt_softmax fails with an odd code");
    }
    { /* every kernel this CPU runs (portable C, AVX2, AVX-512, NEON) agrees with the one chosen */
        polopt_result rc_isa;
        polopt_isa isa;
        float *out_isa = (float *)malloc(L * sizeof *out_isa);
        double lse_isa;
        FUZZ_CHECK(out_isa != NULL, "out of memory in the driver");
        rc = polopt_logsumexp(L, H + L, p->temperature, &lse);
        if (rc == POLOPT_OK) FUZZ_CHECK(!isnan(lse), "polopt_logsumexp answers NaN");
        for (isa = POLOPT_ISA_PORTABLE; isa <= POLOPT_ISA_NEON; isa = (polopt_isa)(isa + 1)) {
            if (!polopt_isa_supported(isa)) continue;
            rc_isa = polopt_softmax_isa(isa, L, H, p->temperature, out_isa);
            FUZZ_CHECK(rc_isa == polopt_softmax(L, H, p->temperature, out), "the kernels disagree on softmax's result");
            for (j = 0; j < L && rc_isa == POLOPT_OK; ++j)
                FUZZ_CHECK(fabs((double)out_isa[j] - (double)out[j]) <= 1e-4, "the kernels disagree on a softmax");
            rc_isa = polopt_logsumexp_isa(isa, L, H + L, p->temperature, &lse_isa);
            FUZZ_CHECK(rc_isa == rc, "the kernels disagree on logsumexp's result");
            if (rc == POLOPT_OK)
                FUZZ_CHECK(lse_isa == lse || fabs(lse_isa - lse) <= 1e-4 * (1.0 + fabs(lse)), "the kernels disagree on a logsumexp");
        }
        free(out_isa);
    }
    /* top-k through an exact index of m items */
    for (i = 0; i < m * L; ++i) items[i] = fuzz_float(r, 1.0f);
    FUZZ_CHECK(polopt_mips_init_exact(&ix, m, L, items, 0, NULL) == POLOPT_OK, "polopt_mips_init_exact");
    FUZZ_CHECK(polopt_mips_scratch_init(&sc, &ix, 5, NULL) == POLOPT_OK, "polopt_mips_scratch_init");
    k = 1 + fuzz_below(r, m);
    rc = polopt_policy_topk(p, &ix, &sc, X, k, k, ids, scores);
    bounded = bounded && (double)L * max_abs(H, L) * max_abs(items, m * L) < 1e36 &&
              (double)L * max_abs(H, L) * max_abs(items, m * L) / p->temperature < 1e36;
    FUZZ_CHECK(rc == POLOPT_OK || (!bounded && rc == POLOPT_ERR_NONFINITE), "polopt_policy_topk fails on a finite context");
    for (i = 0; i < k && rc == POLOPT_OK; ++i) {
        FUZZ_CHECK(ids[i] < m, "polopt_policy_topk answers an id out of range");
        for (j = 0; j < i; ++j) FUZZ_CHECK(ids[i] != ids[j], "polopt_policy_topk answers an item twice");
        if (bounded || FUZZ_NO_SILENT_NAN)
            FUZZ_CHECK(isfinite(scores[i]), "polopt_policy_topk succeeds with a non-finite score (silent NaN)");
    }
    X[fuzz_below(r, D)] = -INFINITY;
    FUZZ_CHECK(polopt_policy_embed(p, 1, X, ldx, H) == POLOPT_ERR_NONFINITE, "a context with -inf accepted");
    polopt_mips_scratch_free(&sc);
    polopt_mips_free(&ix);
    free(X);
    free(H);
    free(out);
    free(items);
}

static void must_load(polopt_policy *p, fuzz_bytes b, const char *what)
{
    const polopt_result rc = polopt_policy_load_buffer(p, b.p, b.n, NULL);
    if (rc != POLOPT_OK) fprintf(stderr, "fuzz: %s: %s\n", what, p->err.message);
    FUZZ_CHECK(rc == POLOPT_OK, what);
}

static int logged;
static void count_log(void *user, polopt_result code, const char *message)
{
    (void)user;
    (void)code;
    (void)message;
    ++logged;
}

static void try_load(const unsigned char *in, size_t size, int depth)
{
    polopt_policy p, y, from_file;
    polopt_hooks hooks;
    polopt_result rc, rc_file;
    memset(&hooks, 0, sizeof hooks);
    hooks.log = count_log;
    logged = 0;
    rc = polopt_policy_load_buffer(&p, in, size, &hooks);
    if (rc != POLOPT_OK) {
        FUZZ_CHECK_FAILURE(rc, p.err, "polopt_policy_load_buffer");
        FUZZ_CHECK(logged >= 1, "a failed load did not call the log callback");
        FUZZ_CHECK(p.theta == NULL && p.D == 0 && p.L == 0, "a failed load left a policy behind");
    }
    if (depth == 0) {
        rc_file = polopt_policy_load(&from_file, fuzz_write_file("policy", in, size), NULL);
        if (rc_file != POLOPT_OK) FUZZ_CHECK_FAILURE(rc_file, from_file.err, "polopt_policy_load");
        if ((rc == POLOPT_OK) != (rc_file == POLOPT_OK))
            fprintf(stderr, "fuzz: buffer: %s\nfuzz: file: %s\n", p.err.message, from_file.err.message);
        FUZZ_CHECK((rc == POLOPT_OK) == (rc_file == POLOPT_OK), "loading from a file and from a buffer disagree");
        if (rc_file == POLOPT_OK) {
            fuzz_bytes a = save_policy(&p), b = save_policy(&from_file);
            FUZZ_CHECK(same_bytes(a, b), "the policies loaded from a file and from a buffer differ");
            free(a.p);
            free(b.p);
            polopt_policy_free(&from_file);
        }
    }
    if (rc == POLOPT_OK) {
        fuzz_rng r = fuzz_seed(in, size);
        fuzz_bytes s1, s2;
        check_faithful(&p, in, size);
        use_policy(&p, &r);
        s1 = save_policy(&p);
        FUZZ_CHECK(memcmp(s1.p + FUZZ_HEADER, in + FUZZ_HEADER, size - FUZZ_HEADER) == 0,
                   "the saved theta differs from the loaded one");
        if (depth == 0) { /* polopt_policy_save to a file writes the same bytes */
            fuzz_bytes f;
            const char *path = fuzz_path("policy");
            FUZZ_CHECK(polopt_policy_save(&p, path, &p.err) == POLOPT_OK, "polopt_policy_save fails");
            f.p = fuzz_read_file(path, &f.n);
            FUZZ_CHECK(f.p && same_bytes(f, s1), "polopt_policy_save and polopt_policy_save_buffer write different bytes");
            free(f.p);
        }
        must_load(&y, s1, "a saved policy does not reload");
        s2 = save_policy(&y);
        FUZZ_CHECK(same_bytes(s1, s2), "save(load(save(x))) differs from save(x)");
        use_policy(&y, &r);
        polopt_policy_free(&y);
        polopt_policy_free(&p);
        free(s1.p);
        free(s2.p);
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
