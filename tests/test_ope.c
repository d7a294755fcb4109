#define _POSIX_C_SOURCE 200809L /* mkstemp-free temporary files: fopen under build/ */
/* Off-policy evaluation: exact small cases by hand; unbiasedness of IPS and DR on a synthetic bandit with a known
   value (means over many seeded datasets within a few standard errors); SNIPS = IPS when the weights sum to n;
   DR = DM when the model is exact; clipping monotone; bootstrap coverage near its nominal rate; every malformed
   CSV case with its message; reward models; streaming = batch. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void ope_small_case_by_hand(void)
{
    /* four rows: w = (0.5, 2, 4, 0), r = (1, 0, 1, 1), q = (0.5, 0.2, 0.6, 0.9), dm = (0.4, 0.3, 0.5, 0.7); clip 3,
       switch level 3 */
    const double w[4] = {0.5, 2.0, 4.0, 0.0};
    const double r[4] = {1, 0, 1, 1}, q[4] = {0.5, 0.2, 0.6, 0.9}, dm[4] = {0.4, 0.3, 0.5, 0.7};
    polopt_ope_config c = polopt_ope_config_default();
    polopt_ope_acc acc;
    polopt_ope_report e_r;
    /* by hand: w r = (0.5, 0, 4, 0); min(w,3) r = (0.5, 0, 3, 0); w (r-q) = (0.25, -0.4, 1.6, 0);
       min(w,3)(r-q) = (0.25, -0.4, 1.2, 0); switch: (0.25, -0.4, 0, 0); sum w = 6.5; sum dm = 1.9 */
    const double ips = 4.5 / 4, cips = 3.5 / 4, snips = 4.5 / 6.5, dmv = 1.9 / 4;
    const double dr = (1.9 + 1.45) / 4, cdr = (1.9 + 1.05) / 4, sndr = 1.9 / 4 + 1.45 / 6.5, sw = (1.9 - 0.15) / 4;
    const double ips_sd = sqrt(((0.5 - ips) * (0.5 - ips) + 2 * ips * ips + (4 - ips) * (4 - ips)) / 3.0);
    c.lambda[POLOPT_OPE_CLIPPED_IPS] = c.lambda[POLOPT_OPE_CLIPPED_DR] = 3.0, c.lambda[POLOPT_OPE_SWITCH_DR] = 3.0, c.bootstrap = 0;
    CHECK_OK(polopt_ope_acc_init(&acc, &c));
    CHECK_OK(polopt_ope_acc_add(&acc, 4, w, r, q, dm));
    CHECK_OK(polopt_ope_acc_finish(&acc, &e_r));
    CHECK_NEAR(e_r.est[POLOPT_OPE_IPS].value, ips, 1e-12);
    CHECK_NEAR(e_r.est[POLOPT_OPE_CLIPPED_IPS].value, cips, 1e-12);
    CHECK_NEAR(e_r.est[POLOPT_OPE_SNIPS].value, snips, 1e-12);
    CHECK_NEAR(e_r.est[POLOPT_OPE_DM].value, dmv, 1e-7);
    CHECK_NEAR(e_r.est[POLOPT_OPE_DR].value, dr, 1e-7);
    CHECK_NEAR(e_r.est[POLOPT_OPE_CLIPPED_DR].value, cdr, 1e-7);
    CHECK_NEAR(e_r.est[POLOPT_OPE_SNDR].value, sndr, 1e-7);
    CHECK_NEAR(e_r.est[POLOPT_OPE_SWITCH_DR].value, sw, 1e-7);
    CHECK_NEAR(e_r.est[POLOPT_OPE_IPS].std_error, ips_sd / 2.0, 1e-12);
    CHECK_NEAR(e_r.est[POLOPT_OPE_IPS].ess, 6.5 * 6.5 / (0.25 + 4 + 16), 1e-12);
    CHECK_NEAR(e_r.est[POLOPT_OPE_CLIPPED_IPS].ess, 5.5 * 5.5 / (0.25 + 4 + 9), 1e-12);
    CHECK(e_r.est[POLOPT_OPE_DM].available && e_r.est[POLOPT_OPE_SWITCH_DR].available);
    polopt_ope_acc_free(&acc);
    /* without a model the model-based estimators are marked unavailable, not NaN */
    CHECK_OK(polopt_ope_acc_init(&acc, &c));
    CHECK_OK(polopt_ope_acc_add(&acc, 4, w, r, NULL, NULL));
    CHECK_RC(polopt_ope_acc_add(&acc, 4, w, r, q, dm), POLOPT_ERR_INVALID_ARG); /* and never mixed */
    CHECK_OK(polopt_ope_acc_finish(&acc, &e_r));
    CHECK(e_r.est[POLOPT_OPE_IPS].available && !e_r.est[POLOPT_OPE_DM].available && !e_r.est[POLOPT_OPE_DR].available);
    polopt_ope_acc_free(&acc);
}

/* A synthetic contextual bandit with a known value: a pool of contexts drawn uniformly, A actions, logging and
   target policies softmax(x^T B), rewards Bernoulli(sigmoid(x^T theta_a)). */
enum { SB_A = 5, SB_D = 3, SB_POOL = 64 };
typedef struct bandit {
    float ctx[SB_POOL][SB_D], mu[SB_POOL][SB_A], pi[SB_POOL][SB_A], r[SB_POOL][SB_A];
    double value;
} bandit;

static void softmax_row(const float *x, const float B[SB_D][SB_A], float *out)
{
    double z[SB_A], mx = -1e300, s = 0;
    int a, j;
    for (a = 0; a < SB_A; ++a) {
        z[a] = 0;
        for (j = 0; j < SB_D; ++j) z[a] += x[j] * B[j][a];
        mx = z[a] > mx ? z[a] : mx;
    }
    for (a = 0; a < SB_A; ++a) s += exp(z[a] - mx);
    for (a = 0; a < SB_A; ++a) out[a] = (float)(exp(z[a] - mx) / s);
}

static void bandit_make(bandit *b)
{
    static const float logB[SB_D][SB_A] = {{1, 0, -1, 0.5f, 0}, {0, 1, 0, -1, 0.5f}, {0.5f, 0, 0, 1, -1}};
    static const float tgtB[SB_D][SB_A] = {{-1, 1, 2, 0, 0}, {1, -1, 0, 2, 0}, {0, 0.5f, -1, 0, 2}};
    polopt_rng rng;
    int i, a, j;
    polopt_rng_seed(&rng, 77);
    b->value = 0;
    for (i = 0; i < SB_POOL; ++i) {
        for (j = 0; j < SB_D; ++j) b->ctx[i][j] = (float)polopt_rng_normal(&rng);
        softmax_row(b->ctx[i], logB, b->mu[i]);
        softmax_row(b->ctx[i], tgtB, b->pi[i]);
        for (a = 0; a < SB_A; ++a) {
            double z = -0.5;
            for (j = 0; j < SB_D; ++j) z += b->ctx[i][j] * (0.3f * (float)(a - 2) + 0.2f * (float)j);
            b->r[i][a] = (float)(1.0 / (1.0 + exp(-z)));
            b->value += b->pi[i][a] * b->r[i][a] / SB_POOL;
        }
    }
}

/* A logged data set of n rounds from the bandit, with the target (n x A) and a model q_hat (n x A): exact
   expected rewards when exact, or a constant 0.3 (a wrong model: DR must stay unbiased anyway). */
static void bandit_log(const bandit *b, polopt_rng *rng, size_t n, polopt_logged *d, double *target, double *q_hat,
                       int exact_model, int noiseless)
{
    size_t i;
    int a;
    memset(d, 0, sizeof *d);
    d->n = d->capacity = n, d->dim = SB_D, d->n_actions = SB_A, d->n_positions = 1;
    d->X = (float *)malloc(n * SB_D * sizeof(float));
    d->action = (uint32_t *)malloc(n * sizeof(uint32_t));
    d->position = (uint32_t *)calloc(n, sizeof(uint32_t));
    d->propensity = (double *)malloc(n * sizeof(double));
    d->reward = (double *)malloc(n * sizeof(double));
    for (i = 0; i < n; ++i) {
        const int c = (int)polopt_rng_below(rng, SB_POOL);
        uint32_t act;
        memcpy(d->X + i * SB_D, b->ctx[c], sizeof b->ctx[c]);
        polopt_rng_categorical(rng, SB_A, b->mu[c], &act);
        d->action[i] = act;
        d->propensity[i] = b->mu[c][act];
        d->reward[i] = noiseless ? b->r[c][act] : (polopt_rng_uniform(rng) < b->r[c][act] ? 1.0f : 0.0f);
        for (a = 0; a < SB_A; ++a) {
            target[i * SB_A + a] = b->pi[c][a];
            q_hat[i * SB_A + a] = exact_model ? b->r[c][a] : 0.3f;
        }
    }
}

static void free_log(polopt_logged *d)
{
    free(d->X), free(d->action), free(d->position), free(d->propensity), free(d->reward);
}

static void ope_ips_and_dr_are_unbiased(void)
{
    enum { R = 300, N = 400 };
    static bandit b;
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
    polopt_ope_config c = polopt_ope_config_default();
    polopt_rng rng;
    int rep, k;
    bandit_make(&b);
    polopt_rng_seed(&rng, 5);
    c.bootstrap = 0;
    for (rep = 0; rep < R; ++rep) {
        polopt_logged d;
        polopt_ope_report e_r;
        bandit_log(&b, &rng, N, &d, target, q, 0, 0);
        CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &e_r));
        {
            const double v[3] = {e_r.est[POLOPT_OPE_IPS].value, e_r.est[POLOPT_OPE_DR].value, e_r.est[POLOPT_OPE_SNIPS].value};
            for (k = 0; k < 3; ++k) sum[k] += v[k], sq[k] += v[k] * v[k];
        }
        free_log(&d);
    }
    for (k = 0; k < 3; ++k) {
        const double mean = sum[k] / R, se = sqrt((sq[k] / R - mean * mean) / R);
        /* IPS and DR are unbiased: within 4 standard errors of the mean of R estimates.  SNIPS is biased by O(1/n):
           it gets the same test with a little slack */
        CHECK_NEAR(mean, b.value, 4 * se + (k == 2 ? 0.01 : 0.0));
    }
    free(target), free(q);
}

static void ope_identities(void)
{
    enum { N = 300 };
    static bandit b;
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    double *w = (double *)malloc(N * sizeof(double)), sw = 0;
    polopt_ope_config c = polopt_ope_config_default();
    polopt_ope_report e_r;
    polopt_ope_estimate prev;
    polopt_ope_acc acc;
    polopt_logged d;
    polopt_rng rng;
    size_t i;
    int level;
    bandit_make(&b);
    polopt_rng_seed(&rng, 6);
    c.bootstrap = 0;
    /* an exact, noiseless model: the correction terms vanish, DR = SNDR = Switch-DR = clipped DR = DM */
    bandit_log(&b, &rng, N, &d, target, q, 1, 1);
    CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &e_r));
    CHECK_NEAR(e_r.est[POLOPT_OPE_DR].value, e_r.est[POLOPT_OPE_DM].value, 1e-6);
    CHECK_NEAR(e_r.est[POLOPT_OPE_SNDR].value, e_r.est[POLOPT_OPE_DM].value, 1e-6);
    CHECK_NEAR(e_r.est[POLOPT_OPE_SWITCH_DR].value, e_r.est[POLOPT_OPE_DM].value, 1e-6);
    CHECK_NEAR(e_r.est[POLOPT_OPE_CLIPPED_DR].value, e_r.est[POLOPT_OPE_DM].value, 1e-6);
    /* SNIPS = IPS when the weights sum to n: rescale them so */
    for (i = 0; i < N; ++i) sw += (w[i] = (double)target[i * SB_A + d.action[i]] / d.propensity[i]);
    for (i = 0; i < N; ++i) w[i] *= N / sw;
    CHECK_OK(polopt_ope_acc_init(&acc, &c));
    CHECK_OK(polopt_ope_acc_add(&acc, N, w, d.reward, NULL, NULL));
    CHECK_OK(polopt_ope_acc_finish(&acc, &e_r));
    CHECK_NEAR(e_r.est[POLOPT_OPE_SNIPS].value, e_r.est[POLOPT_OPE_IPS].value, 1e-12);
    polopt_ope_acc_free(&acc);
    /* clipped IPS never decreases as the clip level rises (rewards >= 0), and reaches IPS */
    for (level = 0; level < 8; ++level) {
        c.lambda[POLOPT_OPE_CLIPPED_IPS] = c.lambda[POLOPT_OPE_CLIPPED_DR] = 0.25 * (1 << level);
        CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &e_r));
        if (level > 0) CHECK(e_r.est[POLOPT_OPE_CLIPPED_IPS].value >= prev.value - 1e-12);
        prev = e_r.est[POLOPT_OPE_CLIPPED_IPS];
    }
    CHECK_NEAR(prev.value, e_r.est[POLOPT_OPE_IPS].value, 1e-12);
    free_log(&d);
    free(target), free(q), free(w);
}

/* The 90% bootstrap interval of IPS covers the true value in about 90% of repeated data sets; so does the
   normal interval from the standard error. */
/* The logging policy mixed with the uniform one, share s: weights pi / mu stay below 1 / (s / A) (the value of the
   target does not change). */
static void bandit_soften_logging(bandit *b, double share)
{
    int i, a;
    for (i = 0; i < SB_POOL; ++i)
        for (a = 0; a < SB_A; ++a) b->mu[i][a] = (float)((1.0 - share) * b->mu[i][a] + share / SB_A);
}

/* 90% intervals of IPS over R data sets: the fraction that covers the true value. */
static double ope_coverage(const bandit *b, int R, int N, int *normal)
{
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    polopt_ope_config c = polopt_ope_config_default();
    polopt_rng rng;
    int rep, boot = 0;
    polopt_rng_seed(&rng, 8);
    c.confidence = 0.9, c.bootstrap = 200;
    *normal = 0;
    for (rep = 0; rep < R; ++rep) {
        polopt_logged d;
        polopt_ope_report e_r;
        bandit_log(b, &rng, (size_t)N, &d, target, q, 0, 0);
        c.seed = (uint64_t)rep + 1;
        CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &e_r));
        boot += e_r.est[POLOPT_OPE_IPS].ci_low <= b->value && b->value <= e_r.est[POLOPT_OPE_IPS].ci_high;
        *normal += fabs(e_r.est[POLOPT_OPE_IPS].value - b->value) <= 1.645 * e_r.est[POLOPT_OPE_IPS].std_error;
        free_log(&d);
    }
    free(target), free(q);
    return boot / (double)R;
}

/* The intervals cover at their nominal rate where the weights are bounded (the logging policy half uniform: w < 10).
   With the raw logging policy the weights reach 550 and the effective sample size is 7% of n: IPS is skewed and
   both intervals under-cover (about 83% at n = 500), as theory says; that case is printed, not asserted. */
static void ope_bootstrap_coverage(void)
{
    enum { R = 400, N = 500 };
    static bandit b;
    double boot;
    int normal;
    bandit_make(&b);
    boot = ope_coverage(&b, R / 4, N, &normal);
    printf("    heavy-tailed weights: 90%% intervals cover in %.0f%% (bootstrap), %.0f%% (normal) of %d data sets\n",
           100 * boot, 100.0 * normal / (R / 4), R / 4);
    bandit_soften_logging(&b, 0.5);
    boot = ope_coverage(&b, R, N, &normal);
    printf("    bounded weights:      90%% intervals cover in %.0f%% (bootstrap), %.0f%% (normal) of %d data sets\n",
           100 * boot, 100.0 * normal / R, R);
    /* 400 trials at p = 0.9: standard deviation 1.5%; allow 4 of them */
    CHECK_NEAR(boot, 0.9, 0.06);
    CHECK_NEAR(normal / (double)R, 0.9, 0.06);
}

/* Write text to a file under build/ and try to load it; returns the result and the message. */
static polopt_result load_text(const char *text, const polopt_csv_config *c, polopt_logged *d)
{
    FILE *f = fopen("build/test_log.csv", "wb");
    fputs(text, f);
    fclose(f);
    return polopt_logged_load_csv(d, "build/test_log.csv", c);
}

static void ope_csv_messages(void)
{
    static const char *const num[1] = {"x"}, *const cat[1] = {"g"};
    static const struct {
        const char *text, *expect;
        polopt_result rc;
    } cases[] = {
        {"a,p,r,x,g\n1,0.5,1,0.1,u\n7,0.5,1,0.1,u\n", "line 3, column 'a': '7' is an unknown action", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n5,0.5,1,0.1,u\n", "line 2, column 'a': '5' is an unknown action", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0,1,0.1,u\n", "line 2, column 'p': '0' is not a propensity in (0, 1]", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,1.5,1,0.1,u\n", "column 'p': '1.5' is not a propensity", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,1e-400,1,0.1,u\n", "'1e-400' is not a propensity in (0, 1]", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0.5,nan,0.1,u\n", "line 2, column 'r': 'nan' is not a finite number", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0.5,1,inf,u\n", "column 'x': 'inf' is not a finite number", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0.5,1,abc,u\n", "column 'x': 'abc' is not a finite number", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n-1,0.5,1,0.1,u\n", "column 'a': '-1' is not an action id", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1.5,0.5,1,0.1,u\n", "column 'a': '1.5' is not an action id", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n0x0E,0.5,1,0.1,u\n", "column 'a': '0x0E' is not an action id", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1.4e1,0.5,1,0.1,u\n", "column 'a': '1.4e1' is not an action id", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n+1,0.5,1,0.1,u\n", "column 'a': '+1' is not an action id", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g,a\n1,0.5,1,0.1,u,2\n", "has two columns named 'a' (1 and 6)", POLOPT_ERR_FORMAT},
        {"a,p,r,x\n1,0.5,1,0.1\n", "has no column named 'g'", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0.5,1,0.1,u\n1,0.5,1\n", "line 3 has 3 fields; the header has 5", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0.5,1,0.1,\"u\n", "line 2: unterminated quote", POLOPT_ERR_FORMAT},
        {"", "is empty: no header line", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n", "has no rows", POLOPT_ERR_FORMAT},
        {"a,p,r,x,g\n1,0.5,1,0.1,u\n1,0.5,1,0.1,v\n1,0.5,1,0.1,w\n", "one level more than config.max_levels",
         POLOPT_ERR_FORMAT},
    };
    polopt_csv_config c = polopt_csv_config_default();
    polopt_logged d;
    size_t k;
    c.action = "a", c.propensity = "p", c.reward = "r", c.numeric = num, c.n_numeric = 1, c.categorical = cat;
    c.n_categorical = 1, c.max_levels = 2, c.n_actions = 5;
    for (k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        const polopt_result rc = load_text(cases[k].text, &c, &d);
        if (rc != cases[k].rc || !strstr(d.err.message, cases[k].expect))
            th_fail(__FILE__, __LINE__, "case %lu: result %s, message '%s'; expected '%s'", (unsigned long)k,
                    polopt_strerror(rc), d.err.message, cases[k].expect);
        CHECK(d.n == 0 && d.X == NULL); /* nothing half-loaded */
    }
    CHECK_RC(polopt_logged_load_csv(&d, "build/no_such_log.csv", &c), POLOPT_ERR_IO);
    /* a UTF-8 byte order mark before the header (spreadsheet exports) is skipped */
    CHECK_OK(load_text("\xEF\xBB\xBF" "a,p,r,x,g\n3,0.5,1,0.1,u\n", &c, &d));
    CHECK(d.n == 1 && d.action[0] == 3);
    polopt_logged_free(&d);
    { /* sizes that overflow are called so, not "out of memory" */
        polopt_csv_config huge = c;
        huge.n_numeric = SIZE_MAX / 4; /* the column table cannot be sized */
        CHECK_RC(load_text("a,p,r,x,g\n3,0.5,1,0.1,u\n", &huge, &d), POLOPT_ERR_OVERFLOW);
        CHECK(strstr(d.err.message, "size too large") != NULL);
    }
    { /* a NUL byte (a binary or UTF-16 file), with the line named */
        static const char text[] = "a,p,r,x,g\n1,0.5,1,0.1,u\n1,0.5,\0\n1,0.1,u\n";
        FILE *f = fopen("build/test_log.csv", "wb");
        fwrite(text, 1, sizeof text - 1, f);
        fclose(f);
        CHECK_RC(polopt_logged_load_csv(&d, "build/test_log.csv", &c), POLOPT_ERR_FORMAT);
        CHECK(strstr(d.err.message, "line 3 holds a NUL byte") != NULL);
    }
    { /* lines across the reader's 64 KiB blocks: one of 100,000 bytes, then 10,000 short ones */
        FILE *f = fopen("build/test_log.csv", "wb");
        int i;
        fputs("a,p,r,x,g\n1,0.5,1,", f);
        for (i = 0; i < 100000; ++i) fputc(' ', f);
        fputs("2.5,u\n", f);
        for (i = 0; i < 10000; ++i) fprintf(f, "%d,0.5,%d,%d,v\n", i % 5, i % 2, i);
        fclose(f);
        CHECK_OK(polopt_logged_load_csv(&d, "build/test_log.csv", &c));
        CHECK(d.n == 10001 && d.X[0] == 2.5f && d.X[1] == 1.0f);
        CHECK(d.action[10000] == 9999 % 5 && d.reward[10000] == 1.0f && d.X[10000 * d.dim] == 9999.0f);
        polopt_logged_free(&d);
    }
    { /* a feature column named NULL */
        static const char *const none[1] = {NULL};
        polopt_csv_config bad = c;
        bad.numeric = none;
        CHECK_RC(load_text("a,p,r,x,g\n1,0.5,1,0.1,u\n", &bad, &d), POLOPT_ERR_INVALID_ARG);
        CHECK(strstr(d.err.message, "config.numeric[0] is NULL") != NULL);
    }
    /* a good file: quotes with commas, CRLF, a blank line, one-hot levels, slots from base 1 */
    c.position = "s", c.position_base = 1;
    CHECK_OK(load_text("a,p,r,x,g,s\r\n2,0.25,1,-1.5,\"u,1\",1\r\n\r\n0,1,0,2,\"v\"\"\",3\r\n", &c, &d));
    CHECK(d.n == 2 && d.dim == 3 && d.n_actions == 5 && d.n_positions == 3);
    CHECK(d.action[0] == 2 && d.action[1] == 0 && d.position[0] == 0 && d.position[1] == 2);
    CHECK(d.propensity[0] == 0.25f && d.reward[0] == 1.0f && d.X[0] == -1.5f && d.X[3] == 2.0f);
    CHECK(d.X[1] == 1.0f && d.X[2] == 0.0f && d.X[4] == 0.0f && d.X[5] == 1.0f); /* levels 'u,1' and 'v"' */
    polopt_logged_free(&d);
    remove("build/test_log.csv");
}

/* Streaming in chunks gives the same data set as loading at once. */
static void ope_csv_streams(void)
{
    FILE *f = fopen("build/test_stream.csv", "wb");
    polopt_csv_config c = polopt_csv_config_default();
    polopt_csv_reader rd;
    polopt_logged all, parts;
    size_t i, got, total = 0;
    fputs("action,prop,reward\n", f);
    for (i = 0; i < 5000; ++i) fprintf(f, "%lu,%g,%lu\n", (unsigned long)(i % 7), 0.1 + (double)(i % 9) / 10.0, (unsigned long)(i % 2));
    fclose(f);
    c.action = "action", c.propensity = "prop", c.reward = "reward";
    CHECK_OK(polopt_logged_load_csv(&all, "build/test_stream.csv", &c));
    CHECK_OK(polopt_csv_open(&rd, "build/test_stream.csv", &c));
    memset(&parts, 0, sizeof parts);
    do {
        CHECK_OK(polopt_csv_read(&rd, &parts, 777, &got));
        total += got;
    } while (got > 0);
    polopt_csv_close(&rd);
    CHECK(total == 5000 && all.n == 5000 && parts.n == 5000 && all.n_actions == 7);
    CHECK(memcmp(all.action, parts.action, 5000 * 4) == 0 && memcmp(all.propensity, parts.propensity, 5000 * sizeof(double)) == 0);
    polopt_logged_free(&parts);
    { /* in fixed memory: blocks of 500 rounds, the data emptied between reads, the estimates accumulated; they
         equal the evaluation of the whole file loaded at once (the uniform target over 7 actions) */
        double *uniform = (double *)malloc(5000 * 7 * sizeof(double));
        double w[500];
        polopt_ope_acc acc;
        polopt_ope_report whole_r, streamed_r;
        int e;
        for (i = 0; i < 5000 * 7; ++i) uniform[i] = 1.0 / 7.0;
        CHECK_OK(polopt_ope_evaluate(&all, uniform, NULL, 1, NULL, &whole_r));
        CHECK_OK(polopt_csv_open(&rd, "build/test_stream.csv", &c));
        CHECK_OK(polopt_ope_acc_init(&acc, NULL));
        memset(&parts, 0, sizeof parts);
        for (;;) {
            parts.n = 0;
            CHECK_OK(polopt_csv_read(&rd, &parts, 500, &got));
            if (got == 0) break;
            for (i = 0; i < got; ++i) w[i] = uniform[0] / parts.propensity[i];
            CHECK_OK(polopt_ope_acc_add(&acc, got, w, parts.reward, NULL, NULL));
        }
        CHECK(parts.capacity == 1024); /* the first allocation (1024 rounds), never grown */
        CHECK_OK(polopt_ope_acc_finish(&acc, &streamed_r));
        for (e = 0; e < POLOPT_OPE_DM; ++e) {
            CHECK_NEAR(streamed_r.est[e].value, whole_r.est[e].value, 1e-12);
            CHECK_NEAR(streamed_r.est[e].ci_low, whole_r.est[e].ci_low, 1e-12);
            CHECK_NEAR(streamed_r.est[e].ci_high, whole_r.est[e].ci_high, 1e-12);
        }
        polopt_ope_acc_free(&acc);
        polopt_csv_close(&rd);
        polopt_logged_free(&parts);
        free(uniform);
    }
    polopt_logged_free(&all);
    remove("build/test_stream.csv");
}

/* Two logs in one feature layout: the second reader starts from the first's levels. */
static void ope_csv_shared_levels(void)
{
    static const char *const num[1] = {"x"}, *const cat[2] = {"g", "h"}, *const other[2] = {"g", "k"};
    polopt_csv_config c = polopt_csv_config_default();
    polopt_csv_reader ra, rb, closed;
    polopt_logged a, b, apart;
    size_t got;
    FILE *f = fopen("build/test_levels_a.csv", "wb");
    fputs("a,p,r,x,g,h\n0,0.5,1,1,u,p\n1,0.5,0,2,v,p\n", f);
    fclose(f);
    f = fopen("build/test_levels_b.csv", "wb");
    fputs("h,g,a,p,r,x\nq,v,1,0.5,1,3\np,w,0,0.5,0,4\nq,u,0,0.5,0,5\n", f); /* other column order, new levels */
    fclose(f);
    c.action = "a", c.propensity = "p", c.reward = "r", c.numeric = num, c.n_numeric = 1, c.categorical = cat;
    c.n_categorical = 2, c.max_levels = 3;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    CHECK_OK(polopt_csv_open(&ra, "build/test_levels_a.csv", &c));
    CHECK_OK(polopt_csv_read(&ra, &a, 100, &got));
    CHECK_OK(polopt_csv_open(&rb, "build/test_levels_b.csv", &c));
    CHECK_OK(polopt_csv_share_levels(&rb, &ra));
    CHECK_OK(polopt_csv_read(&rb, &b, 100, &got));
    CHECK(a.n == 2 && b.n == 3 && a.dim == 7 && b.dim == 7);
    { /* x, then g's levels u v w, then h's levels p q: A's levels first, B's new ones after them */
        static const float want_a[2][7] = {{1, 1, 0, 0, 1, 0, 0}, {2, 0, 1, 0, 1, 0, 0}};
        static const float want_b[3][7] = {{3, 0, 1, 0, 0, 1, 0}, {4, 0, 0, 1, 1, 0, 0}, {5, 1, 0, 0, 0, 1, 0}};
        CHECK(memcmp(a.X, want_a, sizeof want_a) == 0);
        CHECK(memcmp(b.X, want_b, sizeof want_b) == 0);
    }
    CHECK(strcmp(rb.levels + 2 * POLOPT_CSV_LEVEL_BYTES, "w") == 0 && rb.n_levels[0] == 3 && rb.n_levels[1] == 2);
    CHECK(ra.n_levels[0] == 2 && ra.n_levels[1] == 1); /* from is read, not written */
    CHECK_OK(polopt_logged_load_csv(&apart, "build/test_levels_b.csv", &c)); /* read apart: v takes u's column */
    CHECK(apart.X[1] == 1.0f && b.X[1] == 0.0f);
    polopt_logged_free(&apart);
    /* misuse: after a read, a closed reader, another layout */
    CHECK_RC(polopt_csv_share_levels(&rb, &ra), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(rb.err.message, "before the first read") != NULL);
    memset(&closed, 0, sizeof closed);
    polopt_csv_close(&rb);
    CHECK_OK(polopt_csv_open(&rb, "build/test_levels_b.csv", &c));
    CHECK_RC(polopt_csv_share_levels(&rb, &closed), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(rb.err.message, "from is not an open reader") != NULL);
    CHECK_RC(polopt_csv_share_levels(NULL, &ra), POLOPT_ERR_INVALID_ARG);
    polopt_csv_close(&rb);
    c.max_levels = 4;
    CHECK_OK(polopt_csv_open(&rb, "build/test_levels_b.csv", &c));
    CHECK_RC(polopt_csv_share_levels(&rb, &ra), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(rb.err.message, "layouts differ") != NULL);
    polopt_csv_close(&rb);
    c.max_levels = 3, c.categorical = other;
    f = fopen("build/test_levels_b.csv", "wb");
    fputs("k,g,a,p,r,x\nq,v,1,0.5,1,3\n", f);
    fclose(f);
    CHECK_OK(polopt_csv_open(&rb, "build/test_levels_b.csv", &c));
    CHECK_RC(polopt_csv_share_levels(&rb, &ra), POLOPT_ERR_INVALID_ARG);
    CHECK(strstr(rb.err.message, "feature 2 is 'k' here and 'h' in from") != NULL);
    polopt_csv_close(&rb);
    polopt_csv_close(&ra);
    polopt_logged_free(&a), polopt_logged_free(&b);
    remove("build/test_levels_a.csv");
    remove("build/test_levels_b.csv");
}

/* Streaming evaluation: rows added in chunks give exactly the estimates of one call. */
static void ope_streaming_equals_batch(void)
{
    enum { N = 1000 };
    double w[N];
    double r[N], q[N], dm[N];
    polopt_ope_report one_r, many_r;
    polopt_ope_acc a, b;
    polopt_rng rng;
    size_t i, at, step = 1;
    int e;
    polopt_rng_seed(&rng, 3);
    for (i = 0; i < N; ++i) {
        w[i] = 3 * polopt_rng_uniform(&rng), r[i] = (double)(polopt_rng_uniform(&rng) < 0.3);
        q[i] = 0.3, dm[i] = polopt_rng_uniform(&rng);
    }
    CHECK_OK(polopt_ope_acc_init(&a, NULL));
    CHECK_OK(polopt_ope_acc_init(&b, NULL));
    CHECK_OK(polopt_ope_acc_add(&a, N, w, r, q, dm));
    for (at = 0; at < N; at += step, step = step * 2 + 1)
        CHECK_OK(polopt_ope_acc_add(&b, at + step > N ? N - at : step, w + at, r + at, q + at, dm + at));
    CHECK_OK(polopt_ope_acc_finish(&a, &one_r));
    CHECK_OK(polopt_ope_acc_finish(&b, &many_r));
    for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
        CHECK_NEAR(one_r.est[e].value, many_r.est[e].value, 1e-12);
        CHECK(one_r.est[e].ci_low == many_r.est[e].ci_low && one_r.est[e].ci_high == many_r.est[e].ci_high); /* same resample counts */
        CHECK(one_r.est[e].ci_low <= one_r.est[e].value + 1e-9 || e == POLOPT_OPE_DM);
    }
    w[5] = NAN;
    CHECK_RC(polopt_ope_acc_add(&a, N, w, r, q, dm), POLOPT_ERR_NONFINITE);
    CHECK(a.n == N); /* nothing of the bad call was added */
    polopt_ope_acc_free(&a);
    polopt_ope_acc_free(&b);
}

static void ope_reward_models(void)
{
    enum { N = 600, A = 3, D = 2 };
    polopt_logged d;
    polopt_reward_model m;
    polopt_reward_model_config c = polopt_reward_model_config_default();
    float out[A];
    double q1[N * A], q2[N * A];
    polopt_rng rng;
    size_t i;
    polopt_rng_seed(&rng, 9);
    memset(&d, 0, sizeof d);
    d.n = d.capacity = N, d.dim = D, d.n_actions = A, d.n_positions = 1;
    d.X = (float *)malloc(N * D * sizeof(float));
    d.action = (uint32_t *)malloc(N * sizeof(uint32_t));
    d.position = (uint32_t *)calloc(N, sizeof(uint32_t));
    d.propensity = (double *)malloc(N * sizeof(double));
    d.reward = (double *)malloc(N * sizeof(double));
    for (i = 0; i < N; ++i) { /* r = 1 + 2 x0 - x1 for action 0, 0.5 x0 for action 1; action 2 never taken */
        d.X[i * D] = (float)polopt_rng_normal(&rng), d.X[i * D + 1] = (float)polopt_rng_normal(&rng);
        d.action[i] = (uint32_t)(i % 2);
        d.propensity[i] = 0.5f;
        d.reward[i] = d.action[i] == 0 ? 1 + 2 * d.X[i * D] - d.X[i * D + 1] : 0.5f * d.X[i * D];
    }
    c.lambda = 1e-3f;
    CHECK_OK(polopt_reward_model_fit(&m, &d, NULL, 0, &c));
    {
        const float x[2] = {0.5f, -1.0f};
        double mean = 0;
        for (i = 0; i < N; ++i) mean += d.reward[i] / N;
        CHECK_OK(polopt_reward_model_predict(&m, x, out));
        CHECK_NEAR(out[0], 1 + 1 + 1, 1e-3); /* noiseless linear data: recovered */
        CHECK_NEAR(out[1], 0.25, 1e-3);
        CHECK_NEAR(out[2], mean, 1e-6); /* an action never taken: the mean reward */
    }
    polopt_reward_model_free(&m);
    /* cross-fitting: a round's prediction comes from the other fold, so its own reward cannot change it */
    CHECK_OK(polopt_reward_model_crossfit(&d, &c, q1));
    d.reward[17] += 100.0f;
    CHECK_OK(polopt_reward_model_crossfit(&d, &c, q2));
    CHECK(memcmp(q1 + 17 * A, q2 + 17 * A, A * sizeof(double)) == 0);
    CHECK(memcmp(q1, q2, N * A * sizeof(double)) != 0); /* while other rounds' do change */
    /* logistic: clicks at rate 0.2 for action 0, 0.7 for action 1, without features: the rates come back */
    for (i = 0; i < N; ++i) {
        d.X[i * D] = d.X[i * D + 1] = 0.0f;
        d.reward[i] = (float)((i / 2) % 10 < (d.action[i] == 0 ? 2 : 7));
    }
    c.kind = POLOPT_MODEL_LOGISTIC, c.lambda = 0.1f, c.epochs = 1000, c.lr = 0.1f;
    CHECK_OK(polopt_reward_model_fit(&m, &d, NULL, 0, &c));
    CHECK_OK(polopt_reward_model_predict(&m, d.X, out));
    CHECK_NEAR(out[0], 0.2, 0.01);
    CHECK_NEAR(out[1], 0.7, 0.01);
    polopt_reward_model_free(&m);
    d.reward[3] = 2.0f; /* not a probability */
    CHECK_RC(polopt_reward_model_fit(&m, &d, NULL, 0, &c), POLOPT_ERR_DOMAIN);
    CHECK(strstr(m.err.message, "round 3") != NULL);
    /* without features (dim 0, no X): the per-action rates, by ridge */
    {
        polopt_logged no_x = d;
        no_x.dim = 0, no_x.X = NULL;
        d.reward[3] = 1.0f;
        c = polopt_reward_model_config_default();
        c.lambda = 1e-3f;
        CHECK_OK(polopt_reward_model_fit(&m, &no_x, NULL, 0, &c));
        CHECK_OK(polopt_reward_model_predict(&m, NULL, out));
        CHECK_NEAR(out[0], 0.2, 1e-3);
        CHECK_NEAR(out[1], 0.7, 1e-3);
        polopt_reward_model_free(&m);
        no_x.reward = NULL;
        CHECK_RC(polopt_reward_model_fit(&m, &no_x, NULL, 0, &c), POLOPT_ERR_INVALID_ARG);
    }
    /* a non-finite feature is named; features that overflow the normal equations are an error, not a model */
    d.X[5 * D + 1] = NAN;
    CHECK_RC(polopt_reward_model_fit(&m, &d, NULL, 0, &c), POLOPT_ERR_NONFINITE);
    CHECK(strstr(m.err.message, "round 5") != NULL);
    CHECK_RC(polopt_reward_model_crossfit(&d, &c, q1), POLOPT_ERR_NONFINITE);
    d.X[5 * D + 1] = 1e30f;
    CHECK_RC(polopt_reward_model_fit(&m, &d, NULL, 0, &c), POLOPT_ERR_NONFINITE);
    CHECK(strstr(m.err.message, "overflow") != NULL);
    d.X[5 * D + 1] = 0.0f;
    CHECK_OK(polopt_reward_model_fit(&m, &d, NULL, 0, &c));
    {
        const float x[2] = {NAN, 0.0f};
        CHECK_RC(polopt_reward_model_predict(&m, x, out), POLOPT_ERR_NONFINITE);
    }
    polopt_reward_model_free(&m);
    free(d.X), free(d.action), free(d.position), free(d.propensity), free(d.reward);
}

static void ope_bad_targets(void)
{
    polopt_logged d;
    float target[2 * 2] = {0.5f, 0.5f, 0.7f, 0.7f};
    uint32_t act[2] = {0, 1}, pos[2] = {0, 0};
    double prop[2] = {0.5, 0.5}, rew[2] = {1, 0};
    float X[2] = {0, 0};
    polopt_ope_report e_r;
    memset(&d, 0, sizeof d);
    d.n = d.capacity = 2, d.dim = 1, d.n_actions = 2, d.n_positions = 1;
    d.X = X, d.action = act, d.position = pos, d.propensity = prop, d.reward = rew;
    CHECK_RC(polopt_ope_evaluate_f(&d, target, NULL, 1, NULL, &e_r), POLOPT_ERR_DOMAIN); /* row 1 sums to 1.4 */
    target[2] = 0.3f;
    CHECK_OK(polopt_ope_evaluate_f(&d, target, NULL, 1, NULL, &e_r));
    target[1] = NAN;
    CHECK_RC(polopt_ope_evaluate_f(&d, target, NULL, 1, NULL, &e_r), POLOPT_ERR_NONFINITE);
}

/* The callback form of the target, for huge catalogues: estimates equal the sums of the formulas computed here
   directly; every round is asked for once, in order; bad probabilities and failing callbacks are reported. */
typedef struct target_cb {
    const double *target, *q_hat;
    size_t next, calls, bad_round, fail_call;
} target_cb;

static target_cb target_cb_make(const double *target, const double *q_hat, size_t bad_round, size_t fail_call)
{
    target_cb t;
    memset(&t, 0, sizeof t);
    t.target = target, t.q_hat = q_hat, t.bad_round = bad_round, t.fail_call = fail_call;
    return t;
}

static polopt_result target_cb_fn(void *user, const polopt_logged *d, size_t first, size_t n, double *prob, double *q,
                                  double *dm)
{
    target_cb *t = (target_cb *)user;
    size_t k, a;
    if (first != t->next) return POLOPT_ERR_INVALID_ARG; /* out of order, or asked twice */
    t->next = first + n;
    if (++t->calls == t->fail_call) return POLOPT_ERR_IO;
    for (k = 0; k < n; ++k) {
        const size_t i = first + k;
        prob[k] = i == t->bad_round ? 1.5 : t->target[i * SB_A + d->action[i]];
        if (q) {
            double s = 0.0;
            for (a = 0; a < SB_A; ++a) s += (double)t->target[i * SB_A + a] * t->q_hat[i * SB_A + a];
            q[k] = t->q_hat[i * SB_A + d->action[i]];
            dm[k] = s;
        }
    }
    return POLOPT_OK;
}

static void keep_message(void *user, polopt_result code, const char *message)
{
    (void)code;
    strncpy((char *)user, message, 255);
}

static void ope_target_callback(void)
{
    enum { N = 2500 }; /* three calls of up to 1024 rounds */
    static bandit b;
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    polopt_ope_config c = polopt_ope_config_default();
    polopt_ope_report e_r;
    polopt_logged d;
    polopt_rng rng;
    target_cb t;
    char message[256] = {0};
    double ips = 0.0, dr = 0.0;
    size_t i, a;
    bandit_make(&b);
    polopt_rng_seed(&rng, 8);
    bandit_log(&b, &rng, N, &d, target, q, 0, 0);
    for (i = 0; i < N; ++i) { /* the reference: IPS and DR summed from their formulas */
        const double w = (double)target[i * SB_A + d.action[i]] / d.propensity[i];
        double dm = 0.0;
        for (a = 0; a < SB_A; ++a) dm += (double)target[i * SB_A + a] * q[i * SB_A + a];
        ips += w * d.reward[i];
        dr += dm + w * (d.reward[i] - q[i * SB_A + d.action[i]]);
    }
    c.bootstrap = 0;
    c.hooks.log = keep_message, c.hooks.log_user = message;
    t = target_cb_make(target, q, (size_t)-1, (size_t)-1);
    CHECK_OK(polopt_ope_evaluate_fn(&d, target_cb_fn, &t, 1, &c, &e_r));
    CHECK(t.next == N && t.calls == 3);
    CHECK_NEAR(e_r.est[POLOPT_OPE_IPS].value, ips / N, 1e-12 * (1 + ips / N));
    CHECK_NEAR(e_r.est[POLOPT_OPE_DR].value, dr / N, 1e-12);
    /* without a model: the model-based estimators are not available */
    t = target_cb_make(target, q, (size_t)-1, (size_t)-1);
    CHECK_OK(polopt_ope_evaluate_fn(&d, target_cb_fn, &t, 0, &c, &e_r));
    CHECK(e_r.est[POLOPT_OPE_SNIPS].available && !e_r.est[POLOPT_OPE_DR].available);
    t = target_cb_make(target, q, 1500, (size_t)-1);
    CHECK_RC(polopt_ope_evaluate_fn(&d, target_cb_fn, &t, 1, &c, &e_r), POLOPT_ERR_DOMAIN);
    CHECK(strstr(message, "probability of round 1500 is 1.5") != NULL);
    t = target_cb_make(target, q, (size_t)-1, 2);
    CHECK_RC(polopt_ope_evaluate_fn(&d, target_cb_fn, &t, 1, &c, &e_r), POLOPT_ERR_IO);
    CHECK(strstr(message, "callback failed on rounds 1024 to 2047") != NULL);
    d.propensity[7] = 0.0; /* a hand-built log with a zero propensity */
    t = target_cb_make(target, q, (size_t)-1, (size_t)-1);
    CHECK_RC(polopt_ope_evaluate_fn(&d, target_cb_fn, &t, 1, &c, &e_r), POLOPT_ERR_DOMAIN);
    CHECK(strstr(message, "round 7 has propensity 0") != NULL);
    CHECK_RC(polopt_ope_evaluate_fn(&d, NULL, &t, 1, &c, &e_r), POLOPT_ERR_INVALID_ARG);
    free_log(&d);
    free(target), free(q);
}

/* Standard errors keep their precision when the rewards are large and nearly equal (sum r^2 - n mean^2 would
   cancel to 0), and sums that overflow double precision are an error, not an infinite or NaN estimate. */
static void ope_precision_and_overflow(void)
{
    enum { N = 100000 };
    double *w = (double *)malloc(N * sizeof(double));
    double *r = (double *)malloc(N * sizeof(double));
    const double big[3] = {1e200, 1e200, 0.0};
    polopt_ope_report e_r;
    polopt_ope_acc acc;
    size_t i;
    for (i = 0; i < N; ++i) w[i] = 1.0, r[i] = i % 2 ? 1e7 + 8.0 : 1e7;
    CHECK_OK(polopt_ope_acc_init(&acc, NULL));
    CHECK_OK(polopt_ope_acc_add(&acc, N, w, r, NULL, NULL));
    CHECK_OK(polopt_ope_acc_finish(&acc, &e_r));
    /* the sample standard deviation of N alternating values a, a + 8 is 4 sqrt(N / (N - 1)) */
    CHECK_NEAR(e_r.est[POLOPT_OPE_IPS].std_error, 4.0 * sqrt((double)N / (N - 1.0)) / sqrt((double)N), 1e-9);
    /* w = 1: SNIPS = IPS with a constant denominator, and its delta-method error has the same divisor n (n - 1) */
    CHECK_NEAR(e_r.est[POLOPT_OPE_SNIPS].std_error, e_r.est[POLOPT_OPE_IPS].std_error, 1e-9);
    polopt_ope_acc_free(&acc);
    CHECK_OK(polopt_ope_acc_init(&acc, NULL));
    CHECK_OK(polopt_ope_acc_add(&acc, 3, big, r, NULL, NULL));
    CHECK_RC(polopt_ope_acc_finish(&acc, &e_r), POLOPT_ERR_NONFINITE);
    polopt_ope_acc_free(&acc);
    free(w), free(r);
}

/* Every allocation of the CSV reader, the accumulator and the model fails in turn, cleanly. */
static polopt_result ope_alloc_scenario(const polopt_hooks *h, int stage, void *user)
{
    const double w[3] = {1, 2, 0.5};
    const double r[3] = {1, 0, 1};
    polopt_result rc;
    (void)user;
    if (stage == 0) {
        static const char *const cat[1] = {"g"};
        polopt_csv_config c = polopt_csv_config_default();
        polopt_logged d;
        c.action = "a", c.propensity = "p", c.reward = "r", c.categorical = cat, c.n_categorical = 1;
        c.hooks = *h;
        rc = polopt_logged_load_csv(&d, "build/test_alloc.csv", &c);
        polopt_logged_free(&d);
    } else if (stage == 1) {
        polopt_ope_config c = polopt_ope_config_default();
        polopt_ope_acc acc;
        polopt_ope_report e_r;
        c.hooks = *h;
        rc = polopt_ope_acc_init(&acc, &c);
        if (rc == POLOPT_OK) rc = polopt_ope_acc_add(&acc, 3, w, r, NULL, NULL);
        if (rc == POLOPT_OK) rc = polopt_ope_acc_finish(&acc, &e_r);
        polopt_ope_acc_free(&acc);
    } else {
        polopt_reward_model_config c = polopt_reward_model_config_default();
        polopt_csv_config cc = polopt_csv_config_default();
        polopt_logged d;
        double q[3 * 2];
        cc.action = "a", cc.propensity = "p", cc.reward = "r";
        polopt_logged_load_csv(&d, "build/test_alloc.csv", &cc); /* with the default allocator */
        c.hooks = *h;
        c.kind = POLOPT_MODEL_LOGISTIC, c.epochs = 3;
        rc = polopt_reward_model_crossfit(&d, &c, q);
        polopt_logged_free(&d);
    }
    return rc;
}

static void ope_allocation_failures_are_clean(void)
{
    FILE *f = fopen("build/test_alloc.csv", "wb");
    int stage;
    fputs("a,p,r,g\n0,0.5,1,x\n1,0.5,0,y\n1,0.5,1,x\n", f);
    fclose(f);
    for (stage = 0; stage < 3; ++stage) CHECK_EACH_ALLOCATION_FAILURE(ope_alloc_scenario, stage, NULL);
    remove("build/test_alloc.csv");
}

/* Double precision end to end: a generated log with propensities such as 1/k (not floats), slates of 2 slots, and
   every estimator against its formula summed in long double.  Targets: 1e-12 relative for the model-free ones,
   1e-9 for the model-based (compensated sums leave only the rounding of each row's terms, about 1e-16). */
static void ope_precision_against_long_double(void)
{
    enum { N = 20000, A = 3, K = 2 };
    double *target = (double *)malloc(N * A * K * sizeof(double)), *qh = (double *)malloc(N * A * K * sizeof(double));
    double *prop = (double *)malloc(N * sizeof(double)), *rew = (double *)malloc(N * sizeof(double));
    uint32_t *act = (uint32_t *)malloc(N * sizeof(uint32_t)), *pos = (uint32_t *)malloc(N * sizeof(uint32_t));
    long double S[11] = {0}, sw = 0;
    polopt_ope_config c = polopt_ope_config_default();
    polopt_ope_report rep;
    polopt_logged d;
    polopt_rng rng;
    size_t i, a, k;
    int e;
    const long double lc = 3, ls = 4, ld = 50, lg = 0.3L; /* the levels below */
    polopt_rng_seed(&rng, 31);
    for (i = 0; i < N; ++i) {
        for (k = 0; k < K; ++k) { /* a distribution per slot, in doubles that are not floats */
            double tot = 0.0;
            for (a = 0; a < A; ++a) tot += target[(i * A + a) * K + k] = 0.1 + polopt_rng_uniform(&rng);
            for (a = 0; a < A; ++a) {
                target[(i * A + a) * K + k] /= tot;
                qh[(i * A + a) * K + k] = polopt_rng_uniform(&rng) / 3.0;
            }
        }
        act[i] = (uint32_t)polopt_rng_below(&rng, A), pos[i] = (uint32_t)polopt_rng_below(&rng, K);
        prop[i] = 1.0 / (double)(2 + polopt_rng_below(&rng, 40)); /* 1/2 .. 1/41 */
        rew[i] = polopt_rng_uniform(&rng) < 0.3 ? 1.0 / 3.0 : 0.0;
    }
    for (i = 0; i < N; ++i) { /* the reference, from the formulas in the header, in long double */
        const size_t base = i * A * K + pos[i];
        const long double w = (long double)target[base + act[i] * K] / prop[i], r = rew[i];
        const long double q = qh[base + act[i] * K], dd = r - q;
        long double dm = 0, tot = 0;
        for (a = 0; a < A; ++a) dm += (long double)target[base + a * K] * qh[base + a * K], tot += target[base + a * K];
        dm /= tot;
        S[0] += w * r, S[1] += (w < lc ? w : lc) * r, S[2] += w / (1 - lg + lg * w) * r, S[3] += dm;
        S[4] += w * dd, S[5] += (w < lc ? w : lc) * dd, S[6] += (w <= ls ? w : 0) * dd;
        S[7] += ld * w / (w * w + ld) * dd, S[8] += w / (1 - lg + lg * w) * dd, sw += w;
    }
    memset(&d, 0, sizeof d);
    d.n = d.capacity = N, d.n_actions = A, d.n_positions = K;
    d.action = act, d.position = pos, d.propensity = prop, d.reward = rew;
    c.lambda[POLOPT_OPE_CLIPPED_IPS] = c.lambda[POLOPT_OPE_CLIPPED_DR] = 3, c.lambda[POLOPT_OPE_SWITCH_DR] = 4;
    c.lambda[POLOPT_OPE_DROS] = 50, c.lambda[POLOPT_OPE_SG_IPS] = c.lambda[POLOPT_OPE_SG_DR] = 0.3;
    c.bootstrap = 20;
    CHECK_OK(polopt_ope_evaluate(&d, target, qh, K, &c, &rep));
    {
        const long double n = N, ref[POLOPT_OPE_COUNT] = {
            S[0] / n, S[1] / n, S[0] / sw, S[2] / n, S[3] / n, (S[3] + S[4]) / n, (S[3] + S[5]) / n,
            S[3] / n + S[4] / sw, (S[3] + S[6]) / n, (S[3] + S[7]) / n, (S[3] + S[8]) / n};
        for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
            const double rel = (double)fabsl((rep.est[e].value - ref[e]) / ref[e]);
            if (!(rel <= (e < POLOPT_OPE_DM ? 1e-12 : 1e-9)))
                th_fail(__FILE__, __LINE__, "%s: relative error %.3g", polopt_ope_name((polopt_ope_estimator)e), rel);
            CHECK(rep.est[e].ci_low <= rep.est[e].boot_mean && rep.est[e].boot_mean <= rep.est[e].ci_high);
        }
        /* (double), (float): on x87 a constant may carry excess precision, a stored value does not */
        CHECK(rep.est[POLOPT_OPE_DROS].lambda == 50 && rep.est[POLOPT_OPE_SG_DR].lambda == (double)0.3 &&
              rep.est[POLOPT_OPE_IPS].lambda == 0);
        CHECK_NEAR(rep.weights.mean, (double)(sw / n), 1e-12);
    }
    /* the float form reads the same values rounded to float: close, not equal */
    {
        float *tf = (float *)malloc(N * A * K * sizeof(float)), *qf = (float *)malloc(N * A * K * sizeof(float));
        polopt_ope_report rf;
        for (i = 0; i < (size_t)N * A * K; ++i) tf[i] = (float)target[i], qf[i] = (float)qh[i];
        CHECK_OK(polopt_ope_evaluate_f(&d, tf, qf, K, &c, &rf));
        CHECK_NEAR(rf.est[POLOPT_OPE_IPS].value, rep.est[POLOPT_OPE_IPS].value, 1e-6);
        free(tf), free(qf);
    }
    /* slots: a position beyond len_list, or slates without positions, are refused */
    pos[5] = K;
    CHECK_RC(polopt_ope_evaluate(&d, target, qh, K, &c, &rep), POLOPT_ERR_INVALID_ARG);
    pos[5] = 0, d.position = NULL;
    CHECK_RC(polopt_ope_evaluate(&d, target, qh, K, &c, &rep), POLOPT_ERR_INVALID_ARG);
    c.lambda[POLOPT_OPE_SG_IPS] = 1.5;
    d.position = pos;
    CHECK_RC(polopt_ope_evaluate(&d, target, qh, K, &c, &rep), POLOPT_ERR_INVALID_ARG);
    free(target), free(qh), free(prop), free(rew), free(act), free(pos);
}

/* The weight statistics and the limits of each level: DRos at 0 and infinity is DM and DR; SG at 0 is IPS and DR. */
static void ope_levels_and_weight_stats(void)
{
    const double w[5] = {0.5, 2.5, 6.0, 12.0, 25.0}, r[5] = {1, 0, 1, 0, 1}, q[5] = {0.2, 0.1, 0.3, 0.2, 0.4};
    const double dm[5] = {0.3, 0.2, 0.3, 0.1, 0.5};
    polopt_ope_config c = polopt_ope_config_default();
    polopt_ope_acc acc;
    polopt_ope_report rep;
    c.bootstrap = 0;
    c.lambda[POLOPT_OPE_DROS] = 0.0, c.lambda[POLOPT_OPE_SG_IPS] = c.lambda[POLOPT_OPE_SG_DR] = 0.0;
    CHECK_OK(polopt_ope_acc_init(&acc, &c));
    CHECK_OK(polopt_ope_acc_add(&acc, 5, w, r, q, dm));
    CHECK_OK(polopt_ope_acc_finish(&acc, &rep));
    CHECK_NEAR(rep.est[POLOPT_OPE_DROS].value, rep.est[POLOPT_OPE_DM].value, 1e-15);
    CHECK_NEAR(rep.est[POLOPT_OPE_SG_IPS].value, rep.est[POLOPT_OPE_IPS].value, 1e-15);
    CHECK_NEAR(rep.est[POLOPT_OPE_SG_DR].value, rep.est[POLOPT_OPE_DR].value, 1e-15);
    CHECK(rep.weights.n == 5 && rep.weights.min == 0.5 && rep.weights.max == 25.0);
    CHECK_NEAR(rep.weights.mean, 46.0 / 5, 1e-15);
    CHECK(rep.weights.above[0] == 4 && rep.weights.above[1] == 3 && rep.weights.above[2] == 2 &&
          rep.weights.above[3] == 1);
    polopt_ope_acc_free(&acc);
    c.lambda[POLOPT_OPE_DROS] = HUGE_VAL, c.lambda[POLOPT_OPE_SG_IPS] = 1.0;
    CHECK_OK(polopt_ope_acc_init(&acc, &c));
    CHECK_OK(polopt_ope_acc_add(&acc, 5, w, r, q, dm));
    CHECK_OK(polopt_ope_acc_finish(&acc, &rep));
    CHECK_NEAR(rep.est[POLOPT_OPE_DROS].value, rep.est[POLOPT_OPE_DR].value, 1e-15);
    CHECK_NEAR(rep.est[POLOPT_OPE_SG_IPS].value, 3.0 / 5, 1e-15); /* lambda = 1: every positive weight becomes 1 */
    polopt_ope_acc_free(&acc);
}

/* Tuning by the estimated MSE picks the grid level a direct computation of the same score picks (a second
   implementation, from obp's formula); SLOPE picks a grid level and reports the estimate at it. */
static void ope_tuning(void)
{
    enum { N = 400 };
    static bandit b;
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    static const double grid[6] = {1, 2, 4, 8, 16, HUGE_VAL};
    polopt_ope_config c = polopt_ope_config_default();
    polopt_ope_report tuned, fixed;
    polopt_logged d;
    polopt_rng rng;
    double best = 0, best_score = HUGE_VAL, w2 = 0, wmax = 0;
    size_t i, g;
    bandit_make(&b);
    polopt_rng_seed(&rng, 12);
    bandit_log(&b, &rng, N, &d, target, q, 0, 0);
    for (i = 0; i < N; ++i) {
        const double w = target[i * SB_A + d.action[i]] / d.propensity[i];
        w2 += w * w, wmax = w > wmax ? w : wmax;
    }
    for (g = 0; g < 6; ++g) { /* var(min(w, l) r) / n + (|mean((w - min(w, l)) r)| + high-probability terms)^2 */
        double m = 0, m2 = 0, bias = 0, hp, score;
        for (i = 0; i < N; ++i) {
            const double w = target[i * SB_A + d.action[i]] / d.propensity[i], v = w < grid[g] ? w : grid[g];
            m += v * d.reward[i], m2 += v * d.reward[i] * v * d.reward[i], bias += (w - v) * d.reward[i];
        }
        m /= N, bias = fabs(bias / N);
        hp = sqrt(2 * (w2 / N) * log(2 / 0.05) / N) + 2 * wmax * log(2 / 0.05) / (3.0 * N);
        score = (m2 / N - m * m) / N + (bias + hp) * (bias + hp);
        if (score < best_score) best_score = score, best = grid[g];
    }
    c.bootstrap = 0, c.tune = POLOPT_TUNE_MSE, c.grid = grid, c.grid_n = 6;
    CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &tuned));
    CHECK(tuned.est[POLOPT_OPE_CLIPPED_IPS].lambda == best);
    c.tune = POLOPT_TUNE_SLOPE;
    CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &tuned));
    c.tune = POLOPT_TUNE_NONE;
    for (g = 0; g < 6; ++g) { /* the chosen level is on the grid, and the estimate is the untuned one there */
        c.lambda[POLOPT_OPE_CLIPPED_DR] = grid[g];
        if (tuned.est[POLOPT_OPE_CLIPPED_DR].lambda != grid[g]) continue;
        CHECK_OK(polopt_ope_evaluate(&d, target, q, 1, &c, &fixed));
        CHECK(fixed.est[POLOPT_OPE_CLIPPED_DR].value == tuned.est[POLOPT_OPE_CLIPPED_DR].value);
        break;
    }
    CHECK(g < 6);
    c.grid_n = 0; /* a grid without its length */
    CHECK_RC(polopt_ope_evaluate(&d, target, q, 1, &c, &tuned), POLOPT_ERR_INVALID_ARG);
    free_log(&d);
    free(target), free(q);
}

/* Estimated propensities: without features the fit is the actions' frequencies (the maximum-likelihood closed
   form); with features, from a softmax logging policy, close to the true propensities. */
static void ope_estimated_propensities(void)
{
    enum { N = 4000 };
    static bandit b;
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    double *p = (double *)malloc(N * sizeof(double)), count[SB_A] = {0}, err = 0;
    polopt_propensity_config pc = polopt_propensity_config_default();
    polopt_logged d, no_x;
    polopt_rng rng;
    size_t i;
    bandit_make(&b);
    polopt_rng_seed(&rng, 14);
    bandit_log(&b, &rng, N, &d, target, q, 0, 0);
    for (i = 0; i < N; ++i) count[d.action[i]] += 1.0;
    no_x = d, no_x.dim = 0, no_x.X = NULL;
    pc.folds = 1, pc.epochs = 600, pc.lr = 0.05f;
    CHECK_OK(polopt_propensity_crossfit(&no_x, &pc, p));
    for (i = 0; i < N; ++i) CHECK_NEAR(p[i], count[d.action[i]] / N, 2e-4);
    pc = polopt_propensity_config_default();
    pc.lambda = 0.1f;
    CHECK_OK(polopt_propensity_crossfit(&d, &pc, p)); /* the logging policy is a softmax of x: the model is right */
    for (i = 0; i < N; ++i) err += fabs(p[i] - d.propensity[i]) / d.propensity[i] / N;
    printf("    estimated propensities: mean relative error %.3f (cross-fitted, n = %d)\n", err, (int)N);
    CHECK(err < 0.1);
    pc.floor = 0.0;
    CHECK_RC(polopt_propensity_crossfit(&d, &pc, p), POLOPT_ERR_INVALID_ARG);
    free_log(&d);
    free(target), free(q), free(p);
}

/* From a log to training: the view's feedback points at the log, and its reward is the model's prediction. */
static void ope_logged_view(void)
{
    enum { N = 200 };
    static bandit b;
    double *target = (double *)malloc(N * SB_A * sizeof(double)), *q = (double *)malloc(N * SB_A * sizeof(double));
    polopt_reward_model m;
    polopt_logged_view v;
    polopt_logged d;
    polopt_rng rng;
    uint32_t items[SB_A] = {0, 1, 2, 3, 4};
    float got[SB_A], want[SB_A];
    int a;
    bandit_make(&b);
    polopt_rng_seed(&rng, 15);
    bandit_log(&b, &rng, N, &d, target, q, 0, 0);
    CHECK_OK(polopt_reward_model_fit(&m, &d, NULL, 0, NULL));
    CHECK_OK(polopt_logged_view_init(&v, &d, &m, 0.05f));
    CHECK(v.dataset.n == N && v.dataset.X == d.X && v.dataset.feedback == &v.feedback && /* (float): x87 constants */
          v.feedback.propensity == d.propensity && v.feedback.tau == (float)0.05f && v.dataset.reward != NULL);
    CHECK_OK(v.dataset.reward(v.dataset.reward_user, 17, SB_A, items, got));
    CHECK_OK(polopt_reward_model_predict(&m, d.X + 17 * SB_D, want));
    for (a = 0; a < SB_A; ++a) CHECK_NEAR(got[a], want[a], 1e-6);
    CHECK_OK(polopt_logged_view_init(&v, &d, NULL, 0.0f));
    CHECK(v.dataset.reward == NULL);
    d.propensity[3] = 0.0;
    CHECK_RC(polopt_logged_view_init(&v, &d, NULL, 0.0f), POLOPT_ERR_INVALID_ARG);
    polopt_reward_model_free(&m);
    free_log(&d);
    free(target), free(q);
}

const th_test th_suite_ope[] = {TH(ope_small_case_by_hand),      TH(ope_ips_and_dr_are_unbiased),
                                TH(ope_identities),               TH(ope_bootstrap_coverage),
                                TH(ope_csv_messages),             TH(ope_csv_streams), TH(ope_csv_shared_levels),
                                TH(ope_streaming_equals_batch),   TH(ope_reward_models),
                                TH(ope_bad_targets),              TH(ope_target_callback),
                                TH(ope_precision_and_overflow),   TH(ope_precision_against_long_double),
                                TH(ope_levels_and_weight_stats),  TH(ope_tuning),
                                TH(ope_estimated_propensities),   TH(ope_logged_view),
                                TH(ope_allocation_failures_are_clean),
                                TH_END};
