/* polopt.c - the polopt command-line tool: from your own interaction log to a trained policy and its
   recommendations, without writing C.  It is also the most complete example of the library's API: every command
   is a short sequence of polopt.h calls.

   A model is a directory:
       log.bin       the interactions with their ids (polopt_interactions_save)          polopt embed
       items.bin     the item embeddings, as an exact MIPS index (polopt_mips_save)       polopt embed
       test.bin      the test baskets' contexts, the same way (queries for bench_mips)    polopt embed
       protocol.tsv  the split and the embedding settings, readable (key TAB value)       polopt embed
       index.bin     an HNSW index over the embeddings                                    polopt index
       policy.bin    the trained policy (polopt_policy_save)                              polopt train
   Commands (each with --help):
       embed        interactions CSV/TSV -> the model directory (split, SVD item embeddings)
       index        embeddings -> HNSW index
       train        the model's training baskets (or a logged bandit CSV with --logged) -> a policy
       eval         policy + index + validation or test baskets -> metrics
       recommend    policy + index + the items a user has (or a context) -> the top k, with names
       ope          a logged bandit CSV -> every off-policy estimator for a target policy
       experiment   the whole session-completion protocol on an interactions CSV, in one run (--json)
   Errors are one line on stderr and exit status 2; a command that fails writes nothing.  Built with mpicc (make
   polopt-mpi, when OpenMPI is installed), `train --mpi` trains data-parallel: every rank holds the embeddings and
   the index, computes the gradient of its share of each global minibatch, and the gradients are summed
   (MPI_Allreduce), so theta stays the same on every rank; the library itself knows nothing of MPI
   (polopt_trainer_gradient and polopt_trainer_apply). */
#define _POSIX_C_SOURCE 200809L /* mkdir, isatty, clock_gettime */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef POLOPT_CLI_MPI
#include <mpi.h>
#endif

static const char *command = "polopt";
static int mpi_rank = 0, mpi_size = 1;

/* ---- errors, options --------------------------------------------------------------------------------------- */

static void fail(const char *fmt, ...)
{
    va_list ap;
    if (strcmp(command, "polopt") == 0) fputs("polopt: ", stderr);
    else fprintf(stderr, "polopt %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
#ifdef POLOPT_CLI_MPI
    if (mpi_size > 1) MPI_Abort(MPI_COMM_WORLD, 2);
#endif
    exit(2);
}

static void check(polopt_result rc, const char *what, const char *message)
{
    if (rc != POLOPT_OK) fail("%s: %s", what, message && message[0] ? message : polopt_strerror(rc));
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "--name value" and "--flag" arguments, checked against the names a command allows ("name" or "name!" for a
   flag). */
#define MAX_OPTS 40
typedef struct opts {
    const char *name[MAX_OPTS], *value[MAX_OPTS];
    int n;
} opts;

static void parse_opts(int argc, char **argv, const char *const *allowed, opts *o)
{
    int i, k;
    o->n = 0;
    for (i = 0; i < argc; ++i) {
        const char *a = argv[i];
        int found = -1, flag = 0;
        if (strncmp(a, "--", 2) != 0) fail("unexpected argument '%s' (options start with --; see --help)", a);
        for (k = 0; allowed[k]; ++k) {
            const size_t len = strcspn(allowed[k], "!");
            if (strlen(a + 2) == len && strncmp(a + 2, allowed[k], len) == 0) {
                found = k, flag = allowed[k][len] == '!';
                break;
            }
        }
        if (found < 0) fail("unknown option '%s' (see --help)", a);
        if (o->n == MAX_OPTS) fail("too many options");
        o->name[o->n] = a + 2;
        if (flag) o->value[o->n++] = "1";
        else {
            if (i + 1 >= argc) fail("option '%s' needs a value", a);
            o->value[o->n++] = argv[++i];
        }
    }
}

static const char *opt_str(const opts *o, const char *name, const char *dflt)
{
    int i;
    for (i = o->n - 1; i >= 0; --i)
        if (strcmp(o->name[i], name) == 0) return o->value[i];
    return dflt;
}

static int opt_flag(const opts *o, const char *name)
{
    return opt_str(o, name, NULL) != NULL;
}

static double opt_num(const opts *o, const char *name, double dflt, double lo, double hi)
{
    const char *s = opt_str(o, name, NULL);
    char *end;
    double v;
    if (!s) return dflt;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi)) fail("--%s %s: a number in [%g, %g] is needed", name, s, lo, hi);
    return v;
}

static size_t opt_size(const opts *o, const char *name, size_t dflt, size_t lo, size_t hi)
{
    const double v = opt_num(o, name, (double)dflt, (double)lo, (double)hi);
    if (v != floor(v)) fail("--%s: a whole number is needed", name);
    return (size_t)v;
}

static const char *need(const opts *o, const char *name)
{
    const char *s = opt_str(o, name, NULL);
    if (!s) fail("--%s is required (see --help)", name);
    return s;
}

/* A comma-separated list into its parts (in place); returns their number. */
static size_t split_list(char *s, const char **out, size_t max)
{
    size_t n = 0;
    char *p = s;
    while (p && *p && n < max) {
        char *c = strchr(p, ',');
        if (c) *c = '\0';
        out[n++] = p;
        p = c ? c + 1 : NULL;
    }
    return n;
}

/* ---- the model directory ----------------------------------------------------------------------------------- */

typedef struct protocol {
    double val, test, observed, alpha;
    uint64_t seed;
    size_t dim, power_iters, oversample;
    int svd_whole; /* the SVD's input: 0, the observed halves of the training sessions; 1, the sessions whole */
} protocol;

static void path_in(char *out, size_t size, const char *dir, const char *file)
{
    if ((size_t)snprintf(out, size, "%s/%s", dir, file) >= size) fail("the path %s/%s is too long", dir, file);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void write_protocol(const char *path, const protocol *p, polopt_error *err)
{
    /* a small text file: written to a temporary and renamed, like the library's files */
    char tmp[4200];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) {
        snprintf(err->message, sizeof err->message, "cannot write %.200s", tmp);
        err->code = POLOPT_ERR_IO;
        return;
    }
    fprintf(f, "seed\t%llu\nval_fraction\t%.17g\ntest_fraction\t%.17g\nobserved_fraction\t%.17g\ndim\t%lu\n"
               "alpha\t%.17g\npower_iters\t%lu\noversample\t%lu\nsvd_of_whole_sessions\t%d\n",
            (unsigned long long)p->seed, p->val, p->test, p->observed, (unsigned long)p->dim, p->alpha,
            (unsigned long)p->power_iters, (unsigned long)p->oversample, p->svd_whole);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        snprintf(err->message, sizeof err->message, "cannot write %.200s", path);
        err->code = POLOPT_ERR_IO;
    }
}

static void read_protocol(const char *dir, protocol *p)
{
    char path[4096], key[64];
    double v;
    FILE *f;
    int got = 0;
    path_in(path, sizeof path, dir, "protocol.tsv");
    f = fopen(path, "r");
    if (!f) fail("%s: no protocol.tsv (is it a model directory? polopt embed makes one)", dir);
    while (fscanf(f, "%63s %lf", key, &v) == 2) {
        if (!strcmp(key, "seed")) p->seed = (uint64_t)v, got |= 1;
        else if (!strcmp(key, "val_fraction")) p->val = v, got |= 2;
        else if (!strcmp(key, "test_fraction")) p->test = v, got |= 4;
        else if (!strcmp(key, "observed_fraction")) p->observed = v, got |= 8;
        else if (!strcmp(key, "dim")) p->dim = (size_t)v, got |= 16;
        else if (!strcmp(key, "alpha")) p->alpha = v;
        else if (!strcmp(key, "power_iters")) p->power_iters = (size_t)v;
        else if (!strcmp(key, "oversample")) p->oversample = (size_t)v;
        else if (!strcmp(key, "svd_of_whole_sessions")) p->svd_whole = v != 0.0;
    }
    fclose(f);
    if (got != 31) fail("%s is incomplete or damaged", path);
}

/* Everything a command needs from a model directory: the log, its split, the embeddings. */
typedef struct model {
    protocol proto;
    polopt_interactions log;
    polopt_completion split;
    polopt_mips items;  /* exact, over beta */
    polopt_mips hnsw;   /* index.bin, when loaded */
    int has_hnsw;
} model;

static void split_log(const polopt_interactions *log, const protocol *p, polopt_completion *split)
{
    polopt_completion_config cc = polopt_completion_config_default();
    cc.val_fraction = p->val, cc.test_fraction = p->test, cc.observed_fraction = p->observed, cc.seed = p->seed;
    check(polopt_completion_init(split, log, &cc), "splitting the log", split->err.message);
}

static void open_model(const char *dir, int want_hnsw, model *m)
{
    char path[4096];
    memset(m, 0, sizeof *m);
    read_protocol(dir, &m->proto);
    path_in(path, sizeof path, dir, "log.bin");
    check(polopt_interactions_load(&m->log, path, NULL), path, m->log.err.message);
    path_in(path, sizeof path, dir, "items.bin");
    check(polopt_mips_load(&m->items, path, NULL), path, m->items.err.message);
    if (m->items.n != m->log.n_items || m->items.dim != m->proto.dim)
        fail("%s: items.bin does not belong to log.bin (%lu items of dimension %lu)", dir,
             (unsigned long)m->items.n, (unsigned long)m->items.dim);
    split_log(&m->log, &m->proto, &m->split);
    path_in(path, sizeof path, dir, "index.bin");
    if (want_hnsw && file_exists(path)) {
        check(polopt_mips_load(&m->hnsw, path, NULL), path, m->hnsw.err.message);
        if (m->hnsw.n != m->items.n || m->hnsw.dim != m->items.dim) fail("%s does not belong to this model", path);
        m->has_hnsw = 1;
    }
}

static void close_model(model *m)
{
    polopt_mips_free(&m->hnsw);
    polopt_mips_free(&m->items);
    polopt_completion_free(&m->split);
    polopt_interactions_free(&m->log);
}

static float *contexts_of(const model *m, polopt_part part)
{
    float *X = (float *)malloc((m->split.n[part] ? m->split.n[part] : 1) * m->proto.dim * sizeof(float));
    if (!X) fail("out of memory for %lu contexts", (unsigned long)m->split.n[part]);
    check(polopt_completion_contexts(&m->split, part, m->items.vectors, m->proto.dim, X), "contexts", NULL);
    return X;
}

/* The log of --log: its sessions and items, repeated pairs dropped, the min-count filters applied. */
static void read_log(const opts *o, polopt_interactions *log)
{
    polopt_interactions_config ic = polopt_interactions_config_default();
    ic.session = opt_str(o, "session", "session");
    ic.item = opt_str(o, "item", "item");
    ic.weight = opt_str(o, "weight", NULL);
    ic.min_session_items = opt_size(o, "min-session-items", 1, 1, 1u << 30);
    ic.min_item_sessions = opt_size(o, "min-item-sessions", 1, 1, 1u << 30);
    check(polopt_interactions_load_csv(log, need(o, "log"), &ic), "reading the log", log->err.message);
}

/* The embedding pipeline on a log read by read_log: split, and beta = V s^alpha of the rank-dim SVD of the
   training sessions' observed halves (or whole).  Used by embed and experiment. */
static void embed_log(const opts *o, protocol *p, const polopt_interactions *log, polopt_completion *split,
                      float **beta, int need_test)
{
    polopt_svd_config svc;
    float *s;
    polopt_csr A;
    const char *input;
    size_t a, zero = 0;
    double t0 = now();
    p->seed = (uint64_t)opt_size(o, "seed", 1, 0, (size_t)1 << 52);
    p->val = opt_num(o, "val", 0.1, 0.0, 0.9);
    p->test = opt_num(o, "test", 0.1, 0.0, 0.9);
    p->observed = opt_num(o, "observed", 0.5, 0.01, 0.99);
    p->dim = opt_size(o, "dim", 64, 1, 4096);
    p->alpha = opt_num(o, "alpha", 0.5, -4.0, 4.0);
    svc = polopt_svd_config_default(p->dim);
    p->power_iters = svc.power_iters = opt_size(o, "power-iters", svc.power_iters, 0, 100);
    p->oversample = svc.oversample = opt_size(o, "oversample", svc.oversample, 0, 4096);
    svc.seed = p->seed;
    input = opt_str(o, "svd-input", "observed");
    if (strcmp(input, "observed") && strcmp(input, "whole")) fail("--svd-input %s: observed or whole", input);
    p->svd_whole = !strcmp(input, "whole");
    split_log(log, p, split);
    if (need_test && split->n[POLOPT_PART_TEST] == 0) fail("the test part has no sessions (--test %g)", p->test);
    if (p->dim > split->n[POLOPT_PART_TRAIN] || p->dim > log->n_items)
        fail("--dim %lu exceeds the training sessions (%lu) or the items (%lu)", (unsigned long)p->dim,
             (unsigned long)split->n[POLOPT_PART_TRAIN], (unsigned long)log->n_items);
    *beta = (float *)malloc(log->n_items * p->dim * sizeof(float));
    s = (float *)malloc(p->dim * sizeof(float));
    if (!*beta || !s) fail("out of memory for %lu x %lu embeddings", (unsigned long)log->n_items, (unsigned long)p->dim);
    /* the paper's input is the observed halves X of the training sessions (Sakhi et al. 2023, §5) */
    A = p->svd_whole ? polopt_completion_matrix(split, POLOPT_PART_TRAIN)
                     : polopt_sets_matrix(&split->observed[POLOPT_PART_TRAIN], split->n_items);
    check(polopt_svd_sparse(&A, &svc, s, *beta, NULL), "the SVD", NULL);
    if (!(s[p->dim - 1] > 0.0f)) fail("the training sessions have rank below --dim %lu", (unsigned long)p->dim);
    check(polopt_svd_embed(log->n_items, p->dim, *beta, s, p->alpha, *beta), "the embeddings", NULL);
    for (a = 0; a < log->n_items; ++a) { /* items outside the SVD's input have a zero row */
        size_t j = 0;
        while (j < p->dim && (*beta)[a * p->dim + j] == 0.0f) ++j;
        zero += j == p->dim;
    }
    fprintf(stderr, "%lu sessions, %lu items, %lu interactions (%lu duplicates dropped); split %lu / %lu / %lu; "
                    "rank-%lu SVD of the training sessions%s in %.2f s (%lu items not in them: zero embeddings)\n",
            (unsigned long)log->n_sessions, (unsigned long)log->n_items, (unsigned long)log->nnz,
            (unsigned long)log->stats.duplicates, (unsigned long)split->n[0], (unsigned long)split->n[1],
            (unsigned long)split->n[2], (unsigned long)p->dim, p->svd_whole ? "" : "' observed halves", now() - t0,
            (unsigned long)zero);
    free(s);
}

/* ---- embed ------------------------------------------------------------------------------------------------- */

static const char *const embed_opts[] = {"log", "out", "session", "item", "weight", "min-session-items",
                                         "min-item-sessions", "seed", "val", "test", "observed", "dim", "alpha",
                                         "power-iters", "oversample", "svd-input", NULL};
static const char embed_help[] =
    "usage: polopt embed --log FILE --out DIR [options]\n"
    "Reads an interaction log (CSV, or TSV for a .tsv name, with a header row), splits its sessions into train /\n"
    "validation / test and each session into observed and held-out halves, and makes item embeddings from the\n"
    "truncated SVD of the training sessions' observed halves.  Writes DIR/log.bin, items.bin, test.bin and\n"
    "protocol.tsv.\n"
    "  --session COL, --item COL   the columns of the session (or user) and the item id (session, item)\n"
    "  --weight COL                a weight column (default: every interaction weighs 1)\n"
    "  --min-session-items N       drop sessions with fewer distinct items, and --min-item-sessions N items in\n"
    "                              fewer sessions, until neither drops anything (1, 1)\n"
    "  --seed N                    the split's and the SVD's seed (1)\n"
    "  --val F, --test F           the shares of validation and test sessions (0.1, 0.1)\n"
    "  --observed F                the share of each session observed (0.5: the first half of a random order)\n"
    "  --dim L                     the embedding dimension, the rank of the SVD (64)\n"
    "  --alpha A                   beta = V diag(s)^A (0.5)\n"
    "  --power-iters Q, --oversample P   the randomized SVD's accuracy (6, 20)\n"
    "  --svd-input observed|whole  the SVD's input: the observed halves of the training sessions, as in the\n"
    "                              paper (default), or the sessions whole (fewer items left with a zero row)\n";

/* Save files in order; if one fails, remove those this call wrote, so that a failed command writes nothing. */
typedef polopt_result (*save_fn)(const void *obj, const char *path, polopt_error *err);
static polopt_result save_index(const void *obj, const char *path, polopt_error *err)
{
    return polopt_mips_save((const polopt_mips *)obj, path, err);
}
static polopt_result save_log(const void *obj, const char *path, polopt_error *err)
{
    return polopt_interactions_save((const polopt_interactions *)obj, path, err);
}
static polopt_result save_policy(const void *obj, const char *path, polopt_error *err)
{
    return polopt_policy_save((const polopt_policy *)obj, path, err);
}
static polopt_result save_protocol(const void *obj, const char *path, polopt_error *err)
{
    err->code = POLOPT_OK;
    write_protocol(path, (const protocol *)obj, err);
    return err->code;
}

static void save_all(size_t n, const save_fn *fns, const void *const *objs, char paths[][4096])
{
    polopt_error err;
    size_t i, j;
    for (i = 0; i < n; ++i) {
        memset(&err, 0, sizeof err);
        if (fns[i](objs[i], paths[i], &err) != POLOPT_OK) {
            for (j = 0; j < i; ++j) remove(paths[j]);
            fail("writing %s: %s (nothing was written)", paths[i], err.message);
        }
    }
}

static int cmd_embed(int argc, char **argv)
{
    opts o;
    protocol p;
    polopt_interactions log;
    polopt_completion split;
    polopt_mips items, test;
    float *beta, *X;
    const char *dir;
    char paths[4][4096];
    save_fn fns[4] = {save_log, save_index, save_index, save_protocol};
    const void *objs[4];
    parse_opts(argc, argv, embed_opts, &o);
    dir = need(&o, "out");
    read_log(&o, &log);
    embed_log(&o, &p, &log, &split, &beta, 0);
    check(polopt_mips_init_exact(&items, log.n_items, p.dim, beta, 0, NULL), "the embeddings", items.err.message);
    X = (float *)malloc((split.n[POLOPT_PART_TEST] ? split.n[POLOPT_PART_TEST] : 1) * p.dim * sizeof(float));
    if (!X) fail("out of memory");
    check(polopt_completion_contexts(&split, POLOPT_PART_TEST, beta, p.dim, X), "contexts", NULL);
    check(polopt_mips_init_exact(&test, split.n[POLOPT_PART_TEST] ? split.n[POLOPT_PART_TEST] : 1, p.dim, X, 0, NULL),
          "the test contexts", test.err.message);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) fail("cannot create the directory %s", dir);
    path_in(paths[0], sizeof paths[0], dir, "log.bin");
    path_in(paths[1], sizeof paths[1], dir, "items.bin");
    path_in(paths[2], sizeof paths[2], dir, "test.bin");
    path_in(paths[3], sizeof paths[3], dir, "protocol.tsv");
    objs[0] = &log, objs[1] = &items, objs[2] = &test, objs[3] = &p;
    save_all(4, fns, objs, paths);
    printf("wrote %s: log.bin, items.bin (%lu x %lu embeddings), test.bin, protocol.tsv\n", dir,
           (unsigned long)log.n_items, (unsigned long)p.dim);
    polopt_mips_free(&items), polopt_mips_free(&test);
    polopt_completion_free(&split), polopt_interactions_free(&log);
    free(beta), free(X);
    return 0;
}

/* ---- index ------------------------------------------------------------------------------------------------- */

static const char *const index_opts[] = {"model", "M", "ef-construction", "threads", NULL};
static const char index_help[] =
    "usage: polopt index --model DIR [--M 16] [--ef-construction 200] [--threads 2]\n"
    "Builds an HNSW index over DIR/items.bin (the maximum-inner-product search of training and serving) into\n"
    "DIR/index.bin.\n";

static int cmd_index(int argc, char **argv)
{
    opts o;
    polopt_mips items, hnsw;
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    char in[4096], out[4096];
    double t0 = now();
    save_fn fns[1] = {save_index};
    const void *objs[1];
    parse_opts(argc, argv, index_opts, &o);
    path_in(in, sizeof in, need(&o, "model"), "items.bin");
    path_in(out, sizeof out, need(&o, "model"), "index.bin");
    check(polopt_mips_load(&items, in, NULL), in, items.err.message);
    hc.M = opt_size(&o, "M", 16, 2, 255);
    hc.ef_construction = opt_size(&o, "ef-construction", 200, 1, 1u << 20);
    hc.n_threads = opt_size(&o, "threads", 2, 1, 16);
    check(polopt_mips_init_hnsw(&hnsw, items.n, items.dim, items.vectors, 0, &hc), "the HNSW build", hnsw.err.message);
    objs[0] = &hnsw;
    save_all(1, fns, objs, &out);
    printf("wrote %s: %lu items, M = %lu, built in %.1f s\n", out, (unsigned long)hnsw.n, (unsigned long)hc.M,
           now() - t0);
    polopt_mips_free(&hnsw), polopt_mips_free(&items);
    return 0;
}

/* ---- training ---------------------------------------------------------------------------------------------- */

/* The trainer's settings from the options shared by train and experiment. */
static void training_config(const opts *o, uint64_t seed, polopt_trainer_config *tc)
{
    const char *method = opt_str(o, "method", "snis");
    *tc = polopt_trainer_config_default();
    tc->adam.lr = (float)opt_num(o, "lr", 1e-3, 1e-9, 10.0);
    tc->estimator.batch = opt_size(o, "batch", 32, 1, 1u << 16);
    tc->estimator.S = opt_size(o, "S", 1000, 2, 1u << 20);
    tc->estimator.K = opt_size(o, "K", 256, 1, 1u << 16);
    tc->estimator.seed = seed + (uint64_t)mpi_rank; /* each rank its own draws */
    tc->estimator.epsilon = (float)opt_num(o, "epsilon", 0.8, 0.0, 1.0);
    tc->estimator.adaptive_epsilon = opt_flag(o, "adaptive");
    if (!strcmp(method, "reinforce")) tc->estimator.method = POLOPT_METHOD_REINFORCE;
    else if (!strcmp(method, "exact")) tc->estimator.method = POLOPT_METHOD_EXACT;
    else if (!strcmp(method, "uniform")) tc->estimator.epsilon = 1.0f;
    else if (strcmp(method, "snis") != 0) fail("--method %s: reinforce, snis, uniform or exact", method);
    if (strcmp(method, "snis") != 0 && (opt_flag(o, "epsilon") || opt_flag(o, "adaptive")))
        fail("--epsilon and --adaptive belong to --method snis (%s has no mixture to set)", method);
    tc->warm_start = tc->estimator.method == POLOPT_METHOD_SNIS && tc->estimator.epsilon < 1.0f;
}

static void initial_policy(const opts *o, size_t D, size_t L, uint64_t seed, polopt_policy *pol)
{
    polopt_policy_config pc = polopt_policy_config_default(D, L);
    const char *init = opt_str(o, "init", "random");
    if (!strcmp(init, "identity")) {
        if (D != L) fail("--init identity needs the context and embedding dimensions equal");
        pc.init = POLOPT_INIT_IDENTITY;
    } else if (!strcmp(init, "random")) {
        pc.init = POLOPT_INIT_RANDOM;
        pc.init_scale = 0.005f * sqrtf((float)D); /* entries 0.005 N(0, 1) */
    } else {
        fail("--init %s: identity or random", init);
    }
    pc.seed = seed;
    check(polopt_policy_init(pol, &pc), "the policy", pol->err.message);
}

static int on_terminal;
static void progress(void *user, const polopt_progress *p)
{
    const double *epochs = (const double *)user;
    char ess[32] = "-"; /* 0: the step weighed no context (no draw earned a reward), so there is no ESS to show */
    if (mpi_rank != 0 || (!on_terminal && p->step != p->steps_per_epoch)) return;
    if (on_terminal && p->step % 16 != 0 && p->step != p->steps_per_epoch) return;
    if (p->ess > 0.0) snprintf(ess, sizeof ess, "%.0f", p->ess);
    fprintf(stderr, "%sepoch %lu/%.0f  step %lu/%lu  estimated reward %.4f  ESS %s  eps %.2f  %.1f s%s",
            on_terminal ? "\r" : "", (unsigned long)p->epoch + 1, epochs[0], (unsigned long)p->step,
            (unsigned long)p->steps_per_epoch, p->reward, ess, (double)p->epsilon, p->wall_seconds,
            on_terminal ? "   " : "\n");
}

/* One epoch, the library's or (with MPI) ours: the same shuffled order on every rank, each rank the gradient of
   its share of each global minibatch, summed across ranks, then the same Adam step everywhere. */
static double train_epoch(polopt_trainer *tr, const polopt_dataset *data, int distributed, polopt_rng *order_rng,
                          uint32_t *order, float *grad, float *sum)
{
    const double t0 = now();
    (void)order_rng, (void)order, (void)grad, (void)sum;
    if (!distributed) {
        check(polopt_trainer_epoch(tr, data, NULL), "training", tr->err.message);
        return now() - t0;
    }
#ifdef POLOPT_CLI_MPI
    {
        const size_t B = tr->config.estimator.batch, DL = tr->policy->D * tr->policy->L;
        size_t i, j;
        for (i = 0; i < data->n; ++i) order[i] = (uint32_t)i;
        polopt_rng_shuffle(order_rng, data->n, order);
        for (i = 0; i < data->n; i += B) {
            const size_t nb = data->n - i < B ? data->n - i : B;
            const size_t share = (nb + (size_t)mpi_size - 1) / (size_t)mpi_size, first = share * (size_t)mpi_rank;
            const size_t mine = first >= nb ? 0 : nb - first < share ? nb - first : share;
            if (mine) check(polopt_trainer_gradient(tr, data, mine, order + i + first, grad, NULL), "training",
                            tr->err.message);
            else memset(grad, 0, DL * sizeof(float));
            MPI_Allreduce(grad, sum, (int)DL, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            for (j = 0; j < DL; ++j) sum[j] /= (float)nb;
            check(polopt_trainer_apply(tr, sum), "training", tr->err.message);
        }
    }
#endif
    return now() - t0;
}

/* Train a policy on a model's training sessions for the given epochs; returns the mean seconds per epoch. */
static double train_sessions(const opts *o, model *m, polopt_policy *pol, int distributed)
{
    const size_t epochs = opt_size(o, "epochs", 20, 1, 100000);
    const uint64_t seed = (uint64_t)opt_size(o, "seed", 1, 0, (size_t)1 << 52);
    polopt_trainer_config tc;
    polopt_trainer tr;
    polopt_dataset data;
    polopt_rng order_rng;
    float *X = contexts_of(m, POLOPT_PART_TRAIN), *grad, *sum;
    uint32_t *order;
    double total = 0.0, shown = (double)epochs;
    size_t e;
    const polopt_mips *index;
    training_config(o, seed, &tc);
    if (!opt_flag(o, "K") && tc.estimator.K > m->items.n) tc.estimator.K = m->items.n; /* a small catalogue */
    tc.progress = progress, tc.progress_user = &shown;
    if (m->split.n[POLOPT_PART_TRAIN] == 0) fail("the model has no training sessions");
    if (tc.estimator.method == POLOPT_METHOD_SNIS && tc.estimator.epsilon < 1.0f && !m->has_hnsw) {
        polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
        if (mpi_rank == 0) fprintf(stderr, "no index.bin: building an HNSW index in memory (polopt index keeps one)\n");
        hc.n_threads = 2;
        check(polopt_mips_init_hnsw(&m->hnsw, m->items.n, m->items.dim, m->items.vectors, 0, &hc), "the HNSW build",
              m->hnsw.err.message);
        m->has_hnsw = 1;
    }
    index = m->has_hnsw ? &m->hnsw : &m->items;
    initial_policy(o, m->proto.dim, m->proto.dim, seed, pol);
    check(polopt_trainer_init(&tr, pol, index, &tc), "the trainer", tr.err.message);
    data = polopt_completion_dataset(&m->split, POLOPT_PART_TRAIN, X, m->proto.dim);
    order = (uint32_t *)malloc(data.n * sizeof(uint32_t));
    grad = (float *)malloc(2 * pol->D * pol->L * sizeof(float));
    if (!order || !grad) fail("out of memory");
    sum = grad + pol->D * pol->L;
    polopt_rng_seed(&order_rng, seed ^ 0x5eedULL); /* the same order on every rank */
    on_terminal = isatty(STDERR_FILENO);
    for (e = 0; e < epochs; ++e) {
        const double seconds = train_epoch(&tr, &data, distributed, &order_rng, order, grad, sum);
        total += seconds;
        if (distributed && mpi_rank == 0)
            fprintf(stderr, "epoch %lu/%lu  %.2f s on %d ranks\n", (unsigned long)e + 1, (unsigned long)epochs,
                    seconds, mpi_size);
    }
    if (on_terminal && mpi_rank == 0) fputc('\n', stderr);
    polopt_trainer_free(&tr);
    free(X), free(order), free(grad);
    return total / (double)epochs;
}

/* ---- train with logged bandit feedback ---------------------------------------------------------------------- */

/* The columns of a logged bandit CSV, from the options. */
static void logged_columns(const opts *o, polopt_csv_config *c, char *numeric, char *categorical, const char **num,
                           const char **cat)
{
    *c = polopt_csv_config_default();
    c->action = opt_str(o, "action", "action");
    c->propensity = opt_str(o, "propensity", "propensity");
    c->reward = opt_str(o, "reward", "reward");
    c->position = opt_str(o, "position", NULL);
    c->position_base = (long)opt_num(o, "position-base", 0, 0, 1e9);
    if (opt_str(o, "numeric", NULL)) {
        strncpy(numeric, opt_str(o, "numeric", ""), 4095);
        c->numeric = num, c->n_numeric = split_list(numeric, num, 64);
    }
    if (opt_str(o, "categorical", NULL)) {
        strncpy(categorical, opt_str(o, "categorical", ""), 4095);
        c->categorical = cat, c->n_categorical = split_list(categorical, cat, 64);
        c->max_levels = opt_size(o, "max-levels", 32, 1, 4096);
    }
}

/* Features with a constant 1 appended (so a policy over one-hot items can learn their popularity). */
static float *with_bias(const polopt_logged *d)
{
    float *X = (float *)malloc(d->n * (d->dim + 1) * sizeof(float));
    size_t i;
    if (!X) fail("out of memory");
    for (i = 0; i < d->n; ++i) {
        memcpy(X + i * (d->dim + 1), d->X + i * d->dim, d->dim * sizeof(float));
        X[i * (d->dim + 1) + d->dim] = 1.0f;
    }
    return X;
}

/* The items of a bandit log have no embeddings: beta = the identity, so f(a, x) = x^T theta_a (free logits per item
   and feature), an exact index over it. */
static void identity_items(size_t A, polopt_mips *index, float **beta)
{
    size_t a;
    *beta = (float *)calloc(A * A, sizeof(float));
    if (!*beta) fail("out of memory");
    for (a = 0; a < A; ++a) (*beta)[a * A + a] = 1.0f;
    check(polopt_mips_init_exact(index, A, A, *beta, 0, NULL), "the items", index->err.message);
}

static const char *const train_opts[] = {"model", "logged", "out", "method", "epsilon", "adaptive!", "epochs", "lr",
                                         "batch", "S", "K", "seed", "init", "mpi!", "action", "propensity", "reward",
                                         "position", "position-base", "numeric", "categorical", "max-levels", "clip",
                                         NULL};
static const char train_help[] =
    "usage: polopt train --model DIR [options]               (writes DIR/policy.bin)\n"
    "       polopt train --logged FILE --out POLICY [options]  (a logged bandit CSV; see below)\n"
    "Trains the softmax policy pi(a | x) = softmax(x^T theta beta_a) on the model's training sessions (the reward\n"
    "of an item: 1 if it is in the session's held-out half), with a progress line on stderr.\n"
    "  --method M          reinforce (all items scored), snis (the eps-mixture proposal around the MIPS top-K),\n"
    "                      uniform (snis with eps = 1: no MIPS) or exact (default snis)\n"
    "  --epsilon E         the mixture weight of snis (0.8); --adaptive moves it to the best effective sample size\n"
    "  --epochs N (20)  --lr R (1e-3)  --batch B (32)  --S draws (1000)  --K top-K (256, or P if fewer)  --seed N (1)\n"
    "  --init I            random (entries 0.005 N(0, 1), default) or identity (theta = I: x^T beta alone)\n"
    "  --mpi               data-parallel over MPI ranks (a build with mpicc: make polopt-mpi; run under mpirun)\n"
    "With --logged, a CSV of logged bandit feedback (one row per round: features, the action taken, its\n"
    "propensity, the reward) trains a policy over its actions by clipped IPS (Strehl et al. 2010) with the exact\n"
    "estimator: --action COL --propensity COL --reward COL (action, propensity, reward), --numeric A,B and\n"
    "--categorical C,D feature columns, --position COL --position-base N (slates), --clip W (the weight cap, 20).\n"
    "Its policy's contexts are the features and a constant 1; its items, one-hot.\n";

static int cmd_train_logged(const opts *o)
{
    char numeric[4096] = "", categorical[4096] = "", out[4096];
    const char *num[64], *cat[64];
    polopt_csv_config cc;
    polopt_logged d;
    polopt_mips items;
    polopt_policy pol;
    polopt_trainer tr;
    polopt_trainer_config tc;
    polopt_feedback fb;
    polopt_dataset data;
    float *X, *beta;
    size_t e;
    const uint64_t seed = (uint64_t)opt_size(o, "seed", 1, 0, (size_t)1 << 52);
    const size_t epochs = opt_size(o, "epochs", 20, 1, 100000);
    double shown = (double)epochs;
    save_fn fns[1] = {save_policy};
    const void *objs[1];
    logged_columns(o, &cc, numeric, categorical, num, cat);
    strncpy(out, need(o, "out"), sizeof out - 1);
    out[sizeof out - 1] = '\0';
    check(polopt_logged_load_csv(&d, need(o, "logged"), &cc), "reading the log", d.err.message);
    X = with_bias(&d);
    identity_items(d.n_actions, &items, &beta);
    training_config(o, seed, &tc);
    tc.estimator.method = POLOPT_METHOD_EXACT; /* a bandit log's actions are few: the exact gradient */
    tc.progress = progress, tc.progress_user = &shown;
    {
        initial_policy(o, d.dim + 1, d.n_actions, seed, &pol); /* random unless --init identity (D = L) */
    }
    check(polopt_trainer_init(&tr, &pol, &items, &tc), "the trainer", tr.err.message);
    fb.action = d.action, fb.propensity = d.propensity, fb.reward = d.reward;
    fb.tau = (float)(1.0 / opt_num(o, "clip", 20.0, 1.0, 1e9));
    memset(&data, 0, sizeof data);
    data.n = d.n, data.X = X, data.ldx = d.dim + 1, data.feedback = &fb;
    on_terminal = isatty(STDERR_FILENO);
    for (e = 0; e < epochs; ++e) check(polopt_trainer_epoch(&tr, &data, NULL), "training", tr.err.message);
    if (on_terminal) fputc('\n', stderr);
    objs[0] = &pol;
    save_all(1, fns, objs, (char(*)[4096])out);
    printf("wrote %s: a policy over %lu actions of %lu features (and a constant)\n", out, (unsigned long)d.n_actions,
           (unsigned long)d.dim);
    polopt_trainer_free(&tr), polopt_policy_free(&pol), polopt_mips_free(&items), polopt_logged_free(&d);
    free(X), free(beta);
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    opts o;
    model m;
    polopt_policy pol;
    char out[4096];
    double spe;
    int distributed;
    save_fn fns[1] = {save_policy};
    const void *objs[1];
    parse_opts(argc, argv, train_opts, &o);
    if (opt_str(&o, "logged", NULL)) {
        if (opt_flag(&o, "mpi")) fail("--mpi trains sessions of a model, not --logged");
        return cmd_train_logged(&o);
    }
    distributed = opt_flag(&o, "mpi");
#ifndef POLOPT_CLI_MPI
    if (distributed) fail("this build has no MPI: build it with mpicc (make polopt-mpi) and run it under mpirun");
#endif
    open_model(need(&o, "model"), 1, &m);
    spe = train_sessions(&o, &m, &pol, distributed);
    path_in(out, sizeof out, need(&o, "model"), "policy.bin");
    if (mpi_rank == 0) {
        objs[0] = &pol;
        save_all(1, fns, objs, (char(*)[4096])out);
        printf("wrote %s (%.2f s per epoch%s)\n", out, spe, distributed ? ", every rank" : "");
    }
    polopt_policy_free(&pol);
    close_model(&m);
    return 0;
}

/* ---- evaluation -------------------------------------------------------------------------------------------- */

typedef struct metrics {
    double value, r1_all, r1, hr, ndcg;
    size_t k;
} metrics;

/* E_pi[r] exact, R@1 over all items, and R@1, HR@k, nDCG@k without the observed items, greedy by exact search. */
static metrics evaluate_part(const polopt_policy *pol, const model *m, polopt_part part, size_t k)
{
    float *X = contexts_of(m, part);
    polopt_dataset data = polopt_completion_dataset(&m->split, part, X, m->proto.dim);
    polopt_mips_scratch sc;
    polopt_eval all, ex;
    metrics r;
    size_t most = 0, j;
    if (m->split.n[part] == 0) fail("the %s part has no sessions", part == POLOPT_PART_TEST ? "test" : "validation");
    for (j = 0; j < m->split.n[part]; ++j) {
        const size_t len = m->split.observed[part].offsets[j + 1] - m->split.observed[part].offsets[j];
        most = len > most ? len : most;
    }
    if (k + most > m->items.n) fail("--k %lu plus a session's observed items exceeds the catalogue", (unsigned long)k);
    check(polopt_mips_scratch_init(&sc, &m->items, k + most, NULL), "scratch", sc.err.message);
    check(polopt_policy_value(pol, &m->items, &data, &r.value), "E_pi[r]", pol->err.message);
    check(polopt_evaluate(pol, &m->items, &sc, &data, 1, 0, &all), "R@1", pol->err.message);
    check(polopt_evaluate_excluding(pol, &m->items, &sc, &data, &m->split.observed[part], k, 0, &ex), "metrics",
          pol->err.message);
    r.r1_all = all.reward, r.r1 = ex.reward, r.hr = ex.hit_rate, r.ndcg = ex.ndcg, r.k = k;
    polopt_mips_scratch_free(&sc);
    free(X);
    return r;
}

static void print_metrics(const char *label, const metrics *r)
{
    printf("%-10s E_pi[r] %.4f   R@1 %.4f   with the observed items excluded: R@1 %.4f  HR@%lu %.4f  nDCG@%lu "
           "%.4f\n", label, r->value, r->r1_all, r->r1, (unsigned long)r->k, r->hr, (unsigned long)r->k, r->ndcg);
}

static void load_policy_of(const char *dir, const model *m, polopt_policy *pol)
{
    char path[4096];
    path_in(path, sizeof path, dir, "policy.bin");
    if (!file_exists(path)) {
        polopt_policy_config pc = polopt_policy_config_default(m->proto.dim, m->proto.dim);
        pc.init = POLOPT_INIT_IDENTITY;
        fprintf(stderr, "no policy.bin: theta = identity (the embeddings alone; polopt train makes a policy)\n");
        check(polopt_policy_init(pol, &pc), "the policy", pol->err.message);
        return;
    }
    check(polopt_policy_load(pol, path, NULL), path, pol->err.message);
    if (pol->D != m->proto.dim || pol->L != m->proto.dim) fail("%s does not belong to this model", path);
}

static const char *const eval_opts[] = {"model", "part", "k", "json!", NULL};
static const char eval_help[] =
    "usage: polopt eval --model DIR [--part test|val] [--k 10] [--json]\n"
    "The metrics of DIR/policy.bin (or of theta = identity when there is none) on the test (or validation)\n"
    "sessions: E_pi[r], the probability the policy gives to the held-out items; R@1, the greedy item is held out;\n"
    "and, as a recommender serves (never an item the session already has), R@1, HR@k and nDCG@k.\n";

static int cmd_eval(int argc, char **argv)
{
    opts o;
    model m;
    polopt_policy pol;
    metrics r;
    const char *part;
    parse_opts(argc, argv, eval_opts, &o);
    part = opt_str(&o, "part", "test");
    if (strcmp(part, "test") && strcmp(part, "val")) fail("--part %s: test or val", part);
    open_model(need(&o, "model"), 0, &m);
    load_policy_of(need(&o, "model"), &m, &pol);
    r = evaluate_part(&pol, &m, strcmp(part, "test") ? POLOPT_PART_VAL : POLOPT_PART_TEST, opt_size(&o, "k", 10, 1, 1000));
    if (opt_flag(&o, "json"))
        printf("{\"part\": \"%s\", \"value\": %.6f, \"r1_all\": %.6f, \"r1_ex_x\": %.6f, \"hr_ex_x\": %.6f, "
               "\"ndcg_ex_x\": %.6f, \"k\": %lu}\n", part, r.value, r.r1_all, r.r1, r.hr, r.ndcg, (unsigned long)r.k);
    else print_metrics(part, &r);
    polopt_policy_free(&pol);
    close_model(&m);
    return 0;
}

/* ---- recommend --------------------------------------------------------------------------------------------- */

/* The name of an id in a TSV of id TAB name (or the id itself). */
typedef struct names {
    char *text;
    size_t n;
    char **id, **name;
} names;

static void read_names(const char *path, names *nm)
{
    FILE *f = fopen(path, "rb");
    long len = -1;
    size_t i, cap = 1024;
    char *p;
    memset(nm, 0, sizeof *nm);
    if (!f) fail("cannot open %s", path);
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) fail("cannot read %s", path);
    nm->text = (char *)malloc((size_t)len + 1);
    nm->id = (char **)malloc(cap * sizeof(char *)), nm->name = (char **)malloc(cap * sizeof(char *));
    if (!nm->text || !nm->id || !nm->name || fread(nm->text, 1, (size_t)len, f) != (size_t)len) fail("cannot read %s", path);
    fclose(f);
    nm->text[len] = '\0';
    for (p = nm->text, i = 1; *p; ++i) {
        char *eol = strchr(p, '\n'), *tab;
        if (eol) *eol = '\0';
        if (eol && eol > p && eol[-1] == '\r') eol[-1] = '\0';
        tab = strchr(p, '\t');
        if (*p) {
            if (!tab) fail("%s, line %lu: not 'id<TAB>name'", path, (unsigned long)i);
            *tab = '\0';
            if (nm->n == cap) {
                cap *= 2;
                nm->id = (char **)realloc(nm->id, cap * sizeof(char *));
                nm->name = (char **)realloc(nm->name, cap * sizeof(char *));
                if (!nm->id || !nm->name) fail("out of memory");
            }
            nm->id[nm->n] = p, nm->name[nm->n++] = tab + 1;
        }
        if (!eol) break;
        p = eol + 1;
    }
}

static const char *name_of(const names *nm, const char *id)
{
    size_t i;
    for (i = 0; nm && i < nm->n; ++i)
        if (!strcmp(nm->id[i], id)) return nm->name[i];
    return "";
}

static int cmp_u32(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static const char *const recommend_opts[] = {"model", "observed", "context", "k", "ef", "names", "keep-observed!",
                                             NULL};
static const char recommend_help[] =
    "usage: polopt recommend --model DIR (--observed ID,ID,... | --context V,V,...) [options]\n"
    "The k items the policy (DIR/policy.bin, or theta = identity) ranks first for a user, never one she already has:\n"
    "  --observed IDS     the item ids she has (as in the log); the context is the mean of their embeddings\n"
    "  --context VALUES   the context itself (dim numbers)\n"
    "  --k K (10)  --ef EF (HNSW beam, 128; with no index.bin the search is exact)  --keep-observed\n"
    "  --names FILE       a TSV of id TAB name, to print names beside the ids\n"
    "Prints rank, id, score f = x^T theta beta_a, and the name, tab-separated.\n";

static int cmd_recommend(int argc, char **argv)
{
    opts o;
    model m;
    polopt_policy pol;
    polopt_mips_scratch sc;
    names nm;
    char list[65536];
    const char *parts[4096];
    uint32_t exclude[4096], *ids;
    float *x, *scores;
    size_t n, i, j, k, n_ex = 0;
    const polopt_mips *index;
    parse_opts(argc, argv, recommend_opts, &o);
    open_model(need(&o, "model"), 1, &m);
    load_policy_of(need(&o, "model"), &m, &pol);
    k = opt_size(&o, "k", 10, 1, 10000);
    x = (float *)calloc(m.proto.dim, sizeof(float));
    if (!x) fail("out of memory");
    if (opt_str(&o, "observed", NULL)) {
        strncpy(list, opt_str(&o, "observed", ""), sizeof list - 1);
        list[sizeof list - 1] = '\0';
        n = split_list(list, parts, 4096);
        for (i = 0; i < n; ++i) {
            uint32_t a;
            check(polopt_interactions_find_item(&m.log, parts[i], &a), "looking up an item", NULL);
            if (a == POLOPT_NO_ITEM) fail("the item '%s' is not in the log", parts[i]);
            for (j = 0; j < m.proto.dim; ++j) x[j] += m.items.vectors[(size_t)a * m.proto.dim + j] / (float)n;
            exclude[n_ex++] = a;
        }
        qsort(exclude, n_ex, sizeof(uint32_t), cmp_u32);
        for (i = j = 0; i < n_ex; ++i)
            if (j == 0 || exclude[i] != exclude[j - 1]) exclude[j++] = exclude[i];
        n_ex = j;
        if (opt_flag(&o, "keep-observed")) n_ex = 0;
    } else if (opt_str(&o, "context", NULL)) {
        strncpy(list, opt_str(&o, "context", ""), sizeof list - 1);
        list[sizeof list - 1] = '\0';
        n = split_list(list, parts, 4096);
        if (n != m.proto.dim) fail("--context has %lu values; the model's dimension is %lu", (unsigned long)n,
                                   (unsigned long)m.proto.dim);
        for (i = 0; i < n; ++i) {
            char *end;
            x[i] = strtof(parts[i], &end);
            if (end == parts[i] || *end || !(fabsf(x[i]) <= 3e38f)) fail("--context: '%s' is not a number", parts[i]);
        }
    } else {
        fail("--observed or --context is required (see --help)");
    }
    if (k + n_ex > m.items.n) fail("--k %lu and %lu observed items exceed the catalogue", (unsigned long)k,
                                    (unsigned long)n_ex);
    index = m.has_hnsw ? &m.hnsw : &m.items;
    check(polopt_mips_scratch_init(&sc, index, 128 > k + n_ex ? 128 : k + n_ex, NULL), "scratch", sc.err.message);
    ids = (uint32_t *)malloc((k + n_ex) * sizeof(uint32_t));
    scores = (float *)malloc((k + n_ex) * sizeof(float));
    if (!ids || !scores) fail("out of memory");
    check(polopt_policy_topk_excluding(&pol, index, &sc, x, n_ex, exclude, k, opt_size(&o, "ef", 128, 1, 1u << 20),
                                       ids, scores), "the search", sc.err.message);
    if (opt_str(&o, "names", NULL)) read_names(opt_str(&o, "names", NULL), &nm);
    printf("rank\tid\tscore\tname\n");
    for (i = 0; i < k && ids[i] != POLOPT_NO_ITEM; ++i) {
        const char *id = polopt_interactions_item_name(&m.log, ids[i]);
        printf("%lu\t%s\t%.4f\t%s\n", (unsigned long)(i + 1), id, (double)scores[i],
               opt_str(&o, "names", NULL) ? name_of(&nm, id) : "");
    }
    if (opt_str(&o, "names", NULL)) free(nm.text), free(nm.id), free(nm.name);
    polopt_mips_scratch_free(&sc);
    polopt_policy_free(&pol);
    close_model(&m);
    free(x), free(ids), free(scores);
    return 0;
}

/* ---- ope --------------------------------------------------------------------------------------------------- */

static const char *const ope_opts[] = {"log", "policy", "action", "propensity", "reward", "position", "position-base",
                                       "numeric", "categorical", "max-levels", "clip", "tune", "model", "json!", NULL};
static const char ope_help[] =
    "usage: polopt ope --log FILE [--policy POLICY] [columns as in train --logged] [options]\n"
    "Estimates, from a logged bandit CSV, the value of a target policy: the uniform one over the log's actions, or\n"
    "POLICY (made by polopt train --logged on the same columns).  Every estimator: IPS, clipped IPS, SNIPS, SG-IPS,\n"
    "DM, DR, clipped DR, SNDR, Switch-DR, DRos, SG-DR, with standard errors, 95% bootstrap intervals, effective\n"
    "sample sizes and levels, and the weights' statistics.\n"
    "  --clip W      the weight cap of the clipped estimators and Switch-DR's switch (10)\n"
    "  --tune T      choose every estimator's level from the data: mse or slope (as the Open Bandit Pipeline)\n"
    "  --model M     the reward model of DM and DR: logistic (default) or ridge, cross-fitted on 2 folds\n"
    "  --json        one JSON line instead of the table\n";

static int cmd_ope(int argc, char **argv)
{
    opts o;
    char numeric[4096] = "", categorical[4096] = "";
    const char *num[64], *cat[64], *model_kind;
    polopt_csv_config cc;
    polopt_logged d;
    polopt_ope_config oc = polopt_ope_config_default();
    polopt_reward_model_config mc = polopt_reward_model_config_default();
    polopt_ope_report rep;
    const polopt_ope_estimate *est = rep.est;
    double *target, *q_hat;
    size_t i, a, A;
    int e;
    parse_opts(argc, argv, ope_opts, &o);
    logged_columns(&o, &cc, numeric, categorical, num, cat);
    check(polopt_logged_load_csv(&d, need(&o, "log"), &cc), "reading the log", d.err.message);
    A = d.n_actions;
    target = (double *)malloc(d.n * A * sizeof(double));
    q_hat = (double *)malloc(d.n * A * sizeof(double));
    if (!target || !q_hat) fail("out of memory for %lu x %lu probabilities", (unsigned long)d.n, (unsigned long)A);
    if (opt_str(&o, "policy", NULL)) { /* softmax over the actions of x^T theta (features and a constant) */
        polopt_policy pol;
        float *X = with_bias(&d), *H = (float *)malloc(2 * A * sizeof(float));
        if (!H) fail("out of memory");
        check(polopt_policy_load(&pol, opt_str(&o, "policy", NULL), NULL), opt_str(&o, "policy", NULL), pol.err.message);
        if (pol.D != d.dim + 1 || pol.L != A)
            fail("%s is a policy of %lu features over %lu actions; this log has %lu features and %lu actions",
                 opt_str(&o, "policy", NULL), (unsigned long)pol.D - 1, (unsigned long)pol.L, (unsigned long)d.dim,
                 (unsigned long)A);
        for (i = 0; i < d.n; ++i) {
            check(polopt_policy_embed(&pol, 1, X + i * (d.dim + 1), d.dim + 1, H), "the policy", pol.err.message);
            check(polopt_softmax(A, H, pol.temperature, H + A), "the policy", NULL);
            for (a = 0; a < A; ++a) target[i * A + a] = H[A + a];
        }
        polopt_policy_free(&pol);
        free(X), free(H);
    } else {
        for (i = 0; i < d.n * A; ++i) target[i] = 1.0 / (double)A;
    }
    model_kind = opt_str(&o, "model", "logistic");
    if (!strcmp(model_kind, "logistic")) mc.kind = POLOPT_MODEL_LOGISTIC;
    else if (!strcmp(model_kind, "ridge")) mc.kind = POLOPT_MODEL_RIDGE;
    else fail("--model %s: logistic or ridge", model_kind);
    check(polopt_reward_model_crossfit(&d, &mc, q_hat), "the reward model", NULL);
    oc.lambda[POLOPT_OPE_CLIPPED_IPS] = oc.lambda[POLOPT_OPE_CLIPPED_DR] = oc.lambda[POLOPT_OPE_SWITCH_DR] =
        opt_num(&o, "clip", 10.0, 1.0, 1e9);
    if (opt_str(&o, "tune", NULL)) {
        const char *t = opt_str(&o, "tune", NULL);
        if (!strcmp(t, "mse")) oc.tune = POLOPT_TUNE_MSE;
        else if (!strcmp(t, "slope")) oc.tune = POLOPT_TUNE_SLOPE;
        else fail("--tune %s: mse or slope", t);
    }
    check(polopt_ope_evaluate(&d, target, q_hat, 1, &oc, &rep), "the estimators", NULL);
    if (opt_flag(&o, "json")) {
        printf("{\"rows\": %lu", (unsigned long)d.n);
        for (e = 0; e < POLOPT_OPE_COUNT; ++e)
            if (est[e].available)
                printf(", \"%s\": {\"value\": %.17g, \"std_error\": %.8g, \"ci\": [%.8g, %.8g], \"ess\": %.1f, "
                       "\"lambda\": %.8g}", polopt_ope_name((polopt_ope_estimator)e), est[e].value, est[e].std_error,
                       est[e].ci_low, est[e].ci_high, est[e].ess, est[e].lambda);
        printf("}\n");
    } else {
        printf("%lu rows, %lu actions; target: %s\n", (unsigned long)d.n, (unsigned long)A,
               opt_str(&o, "policy", "uniform"));
        printf("weights: min %.4g, max %.4g, mean %.4f; above 2 / 5 / 10 / 20: %lu / %lu / %lu / %lu\n",
               rep.weights.min, rep.weights.max, rep.weights.mean, (unsigned long)rep.weights.above[0],
               (unsigned long)rep.weights.above[1], (unsigned long)rep.weights.above[2],
               (unsigned long)rep.weights.above[3]);
        printf("%-12s %11s %11s %25s %10s %8s\n", "estimator", "estimate", "std err", "95% interval", "ESS", "level");
        for (e = 0; e < POLOPT_OPE_COUNT; ++e)
            if (est[e].available)
                printf("%-12s %11.6f %11.6f   [%10.6f, %10.6f] %10.1f %8.3g\n", polopt_ope_name((polopt_ope_estimator)e),
                       est[e].value, est[e].std_error, est[e].ci_low, est[e].ci_high, est[e].ess, est[e].lambda);
    }
    polopt_logged_free(&d);
    free(target), free(q_hat);
    return 0;
}

/* ---- experiment -------------------------------------------------------------------------------------------- */

static const char *const experiment_opts[] = {"log", "session", "item", "weight", "min-session-items",
                                              "min-item-sessions", "seed", "val", "test", "observed", "dim", "alpha",
                                              "power-iters", "oversample", "svd-input", "method", "epsilon",
                                              "adaptive!", "epochs", "lr", "batch", "S", "K", "init", "k", "splits",
                                              "json!", NULL};
static const char experiment_help[] =
    "usage: polopt experiment --log FILE [options of embed and train] [--k 10] [--splits N] [--json]\n"
    "The whole session-completion protocol in one run, nothing written: split, SVD embeddings, an HNSW index,\n"
    "training, and the metrics of eval on the validation and test sessions, with the seconds per epoch.\n"
    "--splits N repeats it on N random splits (--seed S, S + 1, ...: each draws its split and its training) and\n"
    "adds the mean and standard deviation over them: a split moves the test metrics more than a training seed.\n"
    "--json ends the output with one JSON line (test_value, test_r1_all, test_r1_ex_x, test_hr10_ex_x, ...; with\n"
    "--splits, their means, and their standard deviations as test_value_sd, ...).\n";

/* The protocol on one split of log: the metrics of the trained policy; *has_val = 0 when the split has no
   validation part. */
static void experiment_split(const opts *o, const polopt_interactions *log, metrics *val, metrics *test, double *spe,
                             int *has_val)
{
    model m;
    polopt_policy pol;
    polopt_mips_hnsw_config hc = polopt_mips_hnsw_config_default();
    float *beta;
    double t0;
    const size_t k = opt_size(o, "k", 10, 1, 1000);
    memset(&m, 0, sizeof m); /* m.log stays empty: the caller's log is read once for every split */
    embed_log(o, &m.proto, log, &m.split, &beta, 1);
    check(polopt_mips_init_exact(&m.items, log->n_items, m.proto.dim, beta, 0, NULL), "the embeddings",
          m.items.err.message);
    t0 = now();
    hc.n_threads = 2;
    check(polopt_mips_init_hnsw(&m.hnsw, log->n_items, m.proto.dim, beta, 0, &hc), "the HNSW build",
          m.hnsw.err.message);
    m.has_hnsw = 1;
    fprintf(stderr, "HNSW index in %.1f s\n", now() - t0);
    *spe = train_sessions(o, &m, &pol, 0);
    *has_val = m.split.n[POLOPT_PART_VAL] > 0; /* --val 0: every session not in test trains */
    if (*has_val) *val = evaluate_part(&pol, &m, POLOPT_PART_VAL, k);
    *test = evaluate_part(&pol, &m, POLOPT_PART_TEST, k);
    polopt_policy_free(&pol);
    close_model(&m);
    free(beta);
}

/* The mean and the sample standard deviation (0 for one run) of each metric over n runs. */
static void metrics_mean_sd(const metrics *r, size_t n, metrics *mean, metrics *sd)
{
    size_t i;
    memset(mean, 0, sizeof *mean), memset(sd, 0, sizeof *sd);
    mean->k = sd->k = r[0].k;
    for (i = 0; i < n; ++i) {
        mean->value += r[i].value / (double)n, mean->r1_all += r[i].r1_all / (double)n;
        mean->r1 += r[i].r1 / (double)n, mean->hr += r[i].hr / (double)n, mean->ndcg += r[i].ndcg / (double)n;
    }
    if (n < 2) return;
    for (i = 0; i < n; ++i) {
        sd->value += (r[i].value - mean->value) * (r[i].value - mean->value);
        sd->r1_all += (r[i].r1_all - mean->r1_all) * (r[i].r1_all - mean->r1_all);
        sd->r1 += (r[i].r1 - mean->r1) * (r[i].r1 - mean->r1);
        sd->hr += (r[i].hr - mean->hr) * (r[i].hr - mean->hr);
        sd->ndcg += (r[i].ndcg - mean->ndcg) * (r[i].ndcg - mean->ndcg);
    }
    sd->value = sqrt(sd->value / (double)(n - 1)), sd->r1_all = sqrt(sd->r1_all / (double)(n - 1));
    sd->r1 = sqrt(sd->r1 / (double)(n - 1)), sd->hr = sqrt(sd->hr / (double)(n - 1));
    sd->ndcg = sqrt(sd->ndcg / (double)(n - 1));
}

/* A JSON number with 6 decimals, or null (no standard deviation of a single split). */
static const char *json_or_null(char *buf, size_t size, double x, int present)
{
    if (!present) return "null";
    snprintf(buf, size, "%.6f", x);
    return buf;
}

static int cmd_experiment(int argc, char **argv)
{
    enum { MAX_SPLITS = 100 };
    opts o;
    polopt_interactions log;
    metrics *val, *test, vm, vs, tm, ts;
    double spe = 0.0, spe_r;
    size_t n_splits, r;
    uint64_t seed;
    int has_val = 1, has_val_r;
    char seed_text[24];
    parse_opts(argc, argv, experiment_opts, &o);
    n_splits = opt_size(&o, "splits", 1, 1, MAX_SPLITS);
    seed = (uint64_t)opt_size(&o, "seed", 1, 0, (size_t)1 << 52);
    if (n_splits > 1 && o.n == MAX_OPTS) fail("too many options");
    val = (metrics *)calloc(n_splits, sizeof *val), test = (metrics *)calloc(n_splits, sizeof *test);
    if (!val || !test) fail("out of memory");
    read_log(&o, &log);
    for (r = 0; r < n_splits; ++r) {
        if (n_splits > 1) { /* split r runs with --seed seed + r: an option given last wins */
            snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)(seed + r));
            o.name[o.n] = "seed", o.value[o.n] = seed_text;
            if (r == 0) ++o.n;
            printf("split %lu of %lu (--seed %s)\n", (unsigned long)r + 1, (unsigned long)n_splits, seed_text);
        }
        experiment_split(&o, &log, &val[r], &test[r], &spe_r, &has_val_r);
        has_val &= has_val_r;
        spe += spe_r / (double)n_splits;
        if (has_val_r) print_metrics("val", &val[r]);
        print_metrics("test", &test[r]);
        printf("%.3f s per epoch (%s)\n", spe_r, opt_str(&o, "method", "snis"));
    }
    metrics_mean_sd(test, n_splits, &tm, &ts);
    metrics_mean_sd(val, n_splits, &vm, &vs);
    if (n_splits > 1)
        printf("over %lu splits, mean +- sd: test E_pi[r] %.4f +- %.4f   R@1 %.4f +- %.4f   with the observed items "
               "excluded: R@1 %.4f +- %.4f  HR@%lu %.4f +- %.4f  nDCG@%lu %.4f +- %.4f;  %.3f s per epoch\n",
               (unsigned long)n_splits, tm.value, ts.value, tm.r1_all, ts.r1_all, tm.r1, ts.r1, (unsigned long)tm.k,
               tm.hr, ts.hr, (unsigned long)tm.k, tm.ndcg, ts.ndcg, spe);
    if (opt_flag(&o, "json")) {
        /* the mixture weight used: null where the method has none; the start where it adapts */
        char epsilon[32] = "null", b[7][32];
        const char *method = opt_str(&o, "method", "snis");
        const int many = n_splits > 1;
        if (!strcmp(method, "uniform")) strcpy(epsilon, "1");
        if (!strcmp(method, "snis")) snprintf(epsilon, sizeof epsilon, "%g", opt_num(&o, "epsilon", 0.8, 0, 1));
        printf("{\"method\": \"%s\", \"epsilon\": %s, \"adaptive\": %s, \"epochs\": %lu, \"seed\": %llu, \"dim\": %lu, "
               "\"val_value\": %s, \"val_r1_ex_x\": %s, \"test_value\": %.6f, \"test_r1_all\": %.6f, "
               "\"test_r1_ex_x\": %.6f, \"test_hr10_ex_x\": %.6f, \"test_ndcg10_ex_x\": %.6f, "
               "\"seconds_per_epoch\": %.4f, \"splits\": %lu, \"test_value_sd\": %s, \"test_r1_all_sd\": %s, "
               "\"test_r1_ex_x_sd\": %s, \"test_hr10_ex_x_sd\": %s, \"test_ndcg10_ex_x_sd\": %s}\n",
               method, epsilon, opt_flag(&o, "adaptive") ? "true" : "false",
               (unsigned long)opt_size(&o, "epochs", 20, 1, 100000), (unsigned long long)seed,
               (unsigned long)opt_size(&o, "dim", 64, 1, 4096), json_or_null(b[0], 32, vm.value, has_val),
               json_or_null(b[1], 32, vm.r1, has_val), tm.value, tm.r1_all, tm.r1, tm.hr, tm.ndcg, spe,
               (unsigned long)n_splits, json_or_null(b[2], 32, ts.value, many),
               json_or_null(b[3], 32, ts.r1_all, many), json_or_null(b[4], 32, ts.r1, many),
               json_or_null(b[5], 32, ts.hr, many), json_or_null(b[6], 32, ts.ndcg, many));
    }
    polopt_interactions_free(&log);
    free(val), free(test);
    return 0;
}

/* ---- main -------------------------------------------------------------------------------------------------- */

static const char main_help[] =
    "usage: polopt COMMAND [options]   (polopt COMMAND --help for each)\n"
    "  embed        interactions CSV/TSV -> a model directory (split, SVD item embeddings)\n"
    "  index        the embeddings -> an HNSW index\n"
    "  train        the training sessions (or a logged bandit CSV) -> a policy\n"
    "  eval         policy + validation or test sessions -> metrics\n"
    "  recommend    the items a user has -> the top k items, with names\n"
    "  ope          a logged bandit CSV -> off-policy estimates of a target policy\n"
    "  experiment   the whole protocol on an interactions CSV, in one run\n";

int main(int argc, char **argv)
{
    static const struct {
        const char *name, *help;
        int (*run)(int, char **);
    } commands[] = {{"embed", embed_help, cmd_embed},          {"index", index_help, cmd_index},
                    {"train", train_help, cmd_train},          {"eval", eval_help, cmd_eval},
                    {"recommend", recommend_help, cmd_recommend}, {"ope", ope_help, cmd_ope},
                    {"experiment", experiment_help, cmd_experiment}};
    size_t c;
    int i, rc;
#ifdef POLOPT_CLI_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
#endif
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(main_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (c = 0; c < sizeof commands / sizeof commands[0]; ++c)
        if (!strcmp(argv[1], commands[c].name)) break;
    if (c == sizeof commands / sizeof commands[0]) fail("unknown command '%s' (polopt --help lists them)", argv[1]);
    command = commands[c].name;
    for (i = 2; i < argc; ++i)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(commands[c].help, stdout);
            return 0;
        }
    rc = commands[c].run(argc - 2, argv + 2);
#ifdef POLOPT_CLI_MPI
    MPI_Finalize();
#endif
    return rc;
}
