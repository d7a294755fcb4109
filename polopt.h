/* polopt.h - v0.1.0 - fast offline policy optimisation for huge catalogues
   One C99 header, no dependencies beyond libc and libm.  Public domain or MIT (see end of file).

   QUICK START
   -----------
   Define POLOPT_IMPLEMENTATION in exactly one C or C++ file before including this header:

       #define POLOPT_IMPLEMENTATION
       #include "polopt.h"

   Every other file just includes it.  A complete program (the 5 best items for one user of a catalogue):

       static float beta[100000 * 32], scores[100000], x[32];  // static: large arrays off the stack
       polopt_synth_config sc = polopt_synth_config_default();
       sc.n_items = 100000; sc.dim = 32;                       // P items, embedding size L
       polopt_synth cat;
       if (polopt_synth_init(&cat, &sc) != POLOPT_OK) { fputs(cat.err.message, stderr); return 1; }
       polopt_synth_items(&cat, 0, sc.n_items, beta);          // item embeddings beta, P x L, row-major
       polopt_synth_user(&cat, 7, x, NULL);                    // the context of user 7
       polopt_gemv(POLOPT_NO_TRANS, sc.n_items, sc.dim, 1.0f, beta, sc.dim, x, 0.0f, scores); // x^T beta_a
       uint32_t top[5];
       polopt_topk(sc.n_items, scores, 5, top, NULL);          // the 5 best items, best first, no full sort
       polopt_synth_free(&cat);

   Compile with optimisation:  cc -O2 app.c -lm   (no -march flag is needed: on x86-64 the AVX2 or AVX-512
   kernels are chosen at run time, on aarch64 the NEON ones; see polopt_isa)

   TABLE OF CONTENTS  (search for ">>name" to jump to a section; declarations and implementation share anchors)
   -----------------
     >>config     compile-time options and linkage
     >>errors     result codes, polopt_strerror, per-object error messages, the log callback
     >>rng        xoshiro256** generator, streams, uniform/normal/Gumbel, categorical, alias tables, sampling k of n
     >>linalg     dot, axpy, scale, nrm2, gemv, gemm on row-major float arrays (built in, or CBLAS); the kernels
                  for each instruction set (portable C, AVX2, AVX-512, NEON) and their choice at run time
     >>numerics   log-sum-exp, softmax, log-softmax (with temperature), top-k selection, argmax, finiteness
     >>mips       maximum inner product search: exact and HNSW behind one interface, save and load
     >>files      (implementation) checksums, little-endian fields, atomic writes shared by every saved file
     >>optim      Adam (bias-corrected, decoupled weight decay) and SGD (momentum)
     >>policy     the softmax policy f = h_theta(x)^T beta / T with linear h, top-k through MIPS, Boltzmann
                  exploration at serving, save and load
     >>proposal   the eps-mixture proposal around the MIPS top-K: sampling and log q
     >>estimator  pi's probabilities and gradients at catalogue scale, for any h: weighted draws, log Z_hat,
                  log pi and grad log pi of given actions, the covariance gradient (SNIS, REINFORCE, exact)
     >>learn      rewards, the top-K off-policy correction and logged returns, the trainer, evaluation
     >>lpi        local policy improvement: advantages and LPI weights, KL and JS divergence of two policies,
                  AR@1 and iAR@1 rewards
     >>qhead      an action-value head Q(x, a) = u(x)^T beta_a for LPI-RL, trained by Q-learning with a target
                  head and double Q
     >>logged     logged bandit feedback, and a streaming CSV reader with line-numbered validation
     >>interactions  a user's own log (session, item[, weight]) as a sparse matrix with its ids both ways: CSV or
                  TSV, duplicates dropped, min-count filters, saved and loaded
     >>svd        sparse matrices, and their truncated SVD by randomized subspace iteration (item embeddings)
     >>completion the session-completion protocol on your own log: seeded splits of sessions and of their items,
                  contexts, the set reward, evaluation with the observed items excluded
     >>ope        off-policy evaluation: IPS, clipped IPS, SNIPS, SG-IPS, DM, DR, clipped DR, SNDR, Switch-DR, DRos,
                  SG-DR, their levels tuned from the data; reward models, estimated propensities, a log as training
                  feedback
     >>slates     slates of K items: off-policy estimators (SIPS, IIPS, RIPS, pseudo-inverse) and the PRR reward-and-
                  rank model (the Plackett-Luce log-probability and sampling are in >>estimator)
     >>synth      deterministic synthetic catalogue: clustered item embeddings, users, ground-truth rewards, and
                  users with state (sessions whose clicks move it) for sequential tasks
     >>license

   REFERENCES  (cited in the text by author and year)
   ----------
     Sakhi, Rohde & Gilotte 2023   Fast Offline Policy Optimization for Large Scale Recommendation.  AAAI 2023.  The
                                   softmax policy over MIPS (§2), the covariance form of the gradient (Eq. 9), the
                                   eps-mixture proposal and SNIS (§4, Algorithm 1), the experiments (§5).
     Chen et al. 2019              Top-K Off-Policy Correction for a REINFORCE Recommender System.  WSDM 2019.  (M.
                                   Chen, A. Beutel, P. Covington, S. Jain, F. Belletti, E. Chi.)  REINFORCE on logged
                                   actions (§3), the off-policy correction (§4, Eq. 4), the behaviour head (§4.2),
                                   the top-K correction (§4.3, Eq. 7-8), variance control (§4.4), Boltzmann
                                   exploration (§5), the 10-item simulations (§6.1).
     Liang & Vlassis 2023          Local Policy Improvement for Recommender Systems.  ACM TORS (arXiv 2212.11431).
                                   The KL-constrained lower bound (Eq. 7) and its optimum, the LPI loss (Eq. 8), the
                                   IPS cross-entropy baseline (Eq. 9), LPI-RL (Eq. 10-11), AR@1, iAR@1 and JS (§4).
     Mnih et al. 2015              Human-level control through deep reinforcement learning.  Nature 518.  (the target
                                   network of the Q head, >>qhead)
     van Hasselt et al. 2016       Deep Reinforcement Learning with Double Q-learning.  AAAI 2016.  (H. van Hasselt,
                                   A. Guez, D. Silver.)  Double Q-learning in the Q head's target.
     Williams 1992                 Simple statistical gradient-following algorithms for connectionist reinforcement
                                   learning.  Machine Learning 8.  (REINFORCE)
     Malkov & Yashunin 2018        Efficient and robust approximate nearest neighbor search using Hierarchical
                                   Navigable Small World graphs.  IEEE TPAMI.  (HNSW, Algorithms 1-4)
     Zhou et al. 2019              Moebius Transformation for Fast Inner Product Search on Graph.  NeurIPS 2019.
     Kingma & Ba 2015              Adam: A Method for Stochastic Optimization.  ICLR 2015.  (with the decoupled weight
                                   decay of Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019)
     Horvitz & Thompson 1952       A generalization of sampling without replacement from a finite universe.  JASA.
     Strehl et al. 2010            Learning from Logged Implicit Exploration Data.  NeurIPS 2010.  (clipped weights)
     Swaminathan & Joachims 2015   The Self-Normalized Estimator for Counterfactual Learning.  NeurIPS 2015.
     Beygelzimer & Langford 2009   The Offset Tree for Learning with Partial Labels.  KDD 2009.  (the direct method)
     Dudik, Langford & Li 2011     Doubly Robust Policy Evaluation and Learning.  ICML 2011.
     Wang, Agarwal & Dudik 2017    Optimal and Adaptive Off-policy Evaluation in Contextual Bandits.  ICML 2017.
     Su et al. 2020                Doubly Robust Off-policy Evaluation with Shrinkage.  ICML 2020.  (Y. Su,
                                   M. Dimakopoulou, A. Krishnamurthy, M. Dudik.)  DRos, and the MSE estimate that
                                   tunes a level from the data.
     Su, Srinath & Krishnamurthy 2020  Adaptive Estimator Selection for Off-Policy Evaluation.  ICML 2020.  (SLOPE)
     Tucker & Lee 2021             Improved Estimator Selection for Off-Policy Evaluation.  ICML 2021 Workshop on
                                   Reinforcement Learning Theory.  (the sqrt(6) - 1 constant of SLOPE)
     Metelli, Russo & Restelli 2021  Subgaussian and Differentiable Importance Sampling for Off-Policy Evaluation and
                                   Learning.  NeurIPS 2021.  (SG-IPS, SG-DR)
     Neumaier 1974                 Rundungsfehleranalyse einiger Verfahren zur Summation endlicher Summen.  ZAMM
                                   54.  (compensated summation)
     Saito et al. 2021             Open Bandit Dataset and Pipeline: Towards Realistic and Reproducible Off-Policy
                                   Evaluation.  NeurIPS 2021 Datasets and Benchmarks.  (obp, the reference for >>ope)
     Halko, Martinsson & Tropp 2011  Finding Structure with Randomness: Probabilistic Algorithms for Constructing
                                   Approximate Matrix Decompositions.  SIAM Review 53(2).  (>>svd: Algorithms 4.4
                                   and 5.1)
     Aouali et al. 2022            Reward Optimizing Recommendation using Deep Learning and Fast Maximum Inner
                                   Product Search.  KDD 2022 tutorial.  (I. Aouali, A. Benhalloum, M. Bompaire,
                                   A. Ait Sidi Hammou, S. Ivanov, B. Heymann, D. Rohde, O. Sakhi, F. Vasile, M. Vono.)
                                   Slates: the reward-and-rank model (§3.2), the Horvitz-Thompson estimator (§3.3),
                                   Plackett-Luce REINFORCE over MIPS (§3.4), the simulated A/B test (>>slates,
                                   examples/10_slates.c).
     Aouali et al. 2022 (PRR)      Probabilistic Rank and Reward: A Scalable Model for Slate Recommendation.  arXiv
                                   2208.06263.  (I. Aouali, A. Ait Sidi Hammou, S. Ivanov, O. Sakhi, D. Rohde,
                                   F. Vasile.)  With Aouali et al. 2021, Combining Reward and Rank Signals for Slate
                                   Recommendation, arXiv 2107.12455.
     Plackett 1975; Luce 1959      The Analysis of Permutations (Applied Statistics 24); Individual Choice Behavior.
                                   (the Plackett-Luce distribution of a ranking)
     Swaminathan et al. 2017       Off-policy evaluation for slate recommendation.  NeurIPS 2017.  (A. Swaminathan,
                                   A. Krishnamurthy, A. Agarwal, M. Dudik, J. Langford, D. Jose, I. Zitouni.)  The
                                   pseudo-inverse estimator (Eq. 4, Prop. 1).
     Li et al. 2018                Offline Evaluation of Ranking Policies with Click Models.  KDD 2018.  (S. Li,
                                   Y. Abbasi-Yadkori, B. Kveton, S. Muthukrishnan, V. Vinay, Z. Wen.)  IIPS.
     McInerney et al. 2020         Counterfactual Evaluation of Slate Recommendations with Sequential Reward
                                   Interactions.  KDD 2020.  (J. McInerney, B. Brost, P. Chandar, R. Mehrotra,
                                   B. Carterette.)  RIPS.
     Walker 1977; Vose 1991        alias tables.      Blackman & Vigna 2021   xoshiro256** (ACM TOMS).

   GLOSSARY
   --------
     context x         what we know about the user when we recommend (here a vector in R^D).
     action / item a   one of the P catalogue entries we may recommend; item embedding beta_a in R^L.
     policy pi(a|x)    probability of recommending a in context x; here softmax of f(a,x) = h(x)^T beta_a.
     logging policy    the policy that produced the logged data; its probability of the logged action is
                       the propensity p_i.
     IPS / DR          inverse propensity scoring and doubly robust estimators of a policy's reward from logs.
     proposal q        an easy-to-sample distribution used to estimate expectations under pi by importance
                       sampling (SNIS: self-normalised importance sampling).
     MIPS              maximum inner product search: the items with the largest h^T beta_a, in O(log P) with
                       an index such as HNSW.

   COMPILE-TIME OPTIONS  (define before including the implementation)
   --------------------
     POLOPT_STATIC               make every function static (private to the including file).
     POLOPT_MALLOC(size, ctx)    allocator used for everything the library allocates; define all three or
     POLOPT_REALLOC(p, size, ctx)  none.  ctx is the alloc_ctx pointer of the object's polopt_hooks
     POLOPT_FREE(p, ctx)           (NULL unless you set it), so one program can route objects to arenas.
     POLOPT_ASSERT(x)            internal invariants only (never user input); default assert().
     POLOPT_USE_CBLAS            polopt_dot/axpy/gemv/gemm call CBLAS (include <cblas.h>, link a BLAS).
     POLOPT_NO_SIMD              only the portable C kernels: no intrinsics, no run-time choice (see polopt_isa).
     POLOPT_ERROR_MESSAGE_SIZE   bytes of an object's error message buffer (default 256).
     POLOPT_NO_THREADS           no pthreads: the multithreaded HNSW build is off (automatic off POSIX systems).
     POLOPT_NO_HUGEPAGES         do not ask Linux for 2 MiB pages for the large arrays (index, scratch, scores).

   CONVENTIONS
   -----------
     - Every function that can fail returns a polopt_result: POLOPT_OK (0) or a negative error code.  Objects
       (a struct you own, set up by *_init and released by *_free) keep a precise message of their last
       failure in obj.err.message and pass every message to the log callback of their hooks, if set.
       On failure, outputs are unspecified and inputs are untouched.
     - An object is in one of two states: zeroed (never set up, freed, or its *_init / *_load failed) or fully
       initialised.  *_free brings it back to all zeroes (and may be called on a zeroed object, or twice); a failed
       *_init leaves it zeroed except for err, which says why.  Any call on a zeroed object answers
       POLOPT_ERR_INVALID_ARG instead of touching a buffer it does not have.
     - Hooks (allocator context, log callback): an object with settings takes them in its config (config.hooks:
       polopt_mips_hnsw_config, polopt_trainer_config, ...); an object without settings takes a
       `const polopt_hooks *hooks` last argument (NULL: none).  Each config type is named after the object it makes:
       polopt_<object>_config, with polopt_<object>_config_default().
     - A call that only reads an object takes it const and may run on it from several threads at once; its message
       goes to the log callback (and, for searches, into the scratch object it is given).  Saving writes the
       object's err, so the save functions take the object non-const.
     - Functions that return a value instead of a result (the scalar random draws) cannot fail; their only
       precondition is an initialised generator.
     - Matrices are row-major float arrays with a leading dimension (the distance between rows, in floats).
     - Ids of items and rows are uint32_t (catalogues of up to 4,294,967,295 items); counts are size_t.

   THREAD SAFETY AND DETERMINISM
   -----------------------------
     No global mutable state.  Different objects may be used from different threads freely; functions that
     take a const object may be called on the same object from several threads at once.  Every random choice
     takes an explicit polopt_rng; the same seed gives the same integers and uniforms on every platform, and
     the same normals/Gumbels wherever libm's log and sqrt are correctly rounded (glibc, musl, macOS).
     Floating-point results also depend on the kernel that runs (polopt_isa_detect(): AVX2, AVX-512 and NEON
     add in different orders): the same kernel gives the same results, different ones agree up to rounding.
*/

#ifndef POLOPT_H
#define POLOPT_H

/* >>config ------------------------------------------------------------------------------------------------ */

#define POLOPT_VERSION_MAJOR 0
#define POLOPT_VERSION_MINOR 1
#define POLOPT_VERSION_PATCH 0
#define POLOPT_VERSION_STRING "0.1.0"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define POLOPT__MAYBE_UNUSED __attribute__((unused))
#else
#define POLOPT__MAYBE_UNUSED
#endif

#ifdef POLOPT_STATIC
#define POLOPT_DEF static POLOPT__MAYBE_UNUSED
#else
#define POLOPT_DEF extern
#endif

#ifndef POLOPT_ERROR_MESSAGE_SIZE
#define POLOPT_ERROR_MESSAGE_SIZE 256
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>errors ------------------------------------------------------------------------------------------------ */

/* One list makes both the enum and the strings, so they cannot drift apart. */
#define POLOPT_RESULT_LIST(X)                                                          \
    X(POLOPT_OK, 0, "success")                                                         \
    X(POLOPT_ERR_INVALID_ARG, -1, "invalid argument")                                  \
    X(POLOPT_ERR_NO_MEMORY, -2, "out of memory")                                       \
    X(POLOPT_ERR_OVERFLOW, -3, "size too large (arithmetic overflow)")                 \
    X(POLOPT_ERR_NONFINITE, -4, "non-finite value (NaN or infinity)")                  \
    X(POLOPT_ERR_DOMAIN, -5, "input outside the domain of the function")               \
    X(POLOPT_ERR_IO, -6, "input/output error")                                         \
    X(POLOPT_ERR_FORMAT, -7, "malformed file or buffer")                               \
    X(POLOPT_ERR_VERSION, -8, "unsupported format version")                            \
    X(POLOPT_ERR_CHECKSUM, -9, "checksum mismatch (corrupted data)")                   \
    X(POLOPT_ERR_TRUNCATED, -10, "truncated file or buffer")                           \
    X(POLOPT_ERR_UNSUPPORTED, -11, "not supported by this build or this CPU")          \
    X(POLOPT_ERR_DEVICE, -12, "GPU error (the message has CUDA's own)")

typedef enum polopt_result {
#define POLOPT__RESULT_ENUM(name, value, text) name = value,
    POLOPT_RESULT_LIST(POLOPT__RESULT_ENUM)
#undef POLOPT__RESULT_ENUM
    POLOPT__RESULT_END_ = -13
} polopt_result;

/* A short description of a result code ("invalid argument").  Never NULL. */
POLOPT_DEF const char *polopt_strerror(polopt_result result);

/* Receives every error message an object produces, e.g. to print it.  The library itself never prints. */
typedef void (*polopt_log_fn)(void *user, polopt_result code, const char *message);

/* How an object allocates and reports.  All-zero (or a NULL pointer where a function takes one) means:
   the default allocator with a NULL context, and no logging. */
typedef struct polopt_hooks {
    void *alloc_ctx;   /* passed as ctx to POLOPT_MALLOC / POLOPT_REALLOC / POLOPT_FREE */
    polopt_log_fn log; /* optional */
    void *log_user;    /* passed to log */
} polopt_hooks;

/* The last failure of an object: code and a precise message naming the argument, value or file line,
   e.g. "polopt_adam_init: config.beta2 = 1.5 is outside [0, 1)". */
typedef struct polopt_error {
    polopt_result code;
    char message[POLOPT_ERROR_MESSAGE_SIZE];
} polopt_error;

/* >>rng --------------------------------------------------------------------------------------------------- */

/* xoshiro256** (Blackman & Vigna, 2018): 256 bits of state, period 2^256 - 1, passes BigCrush, about 1 ns a
   draw.  Seeded through splitmix64 so that any 64-bit seed (0 included) gives a good state.  Independent
   streams: polopt_rng_split hands out consecutive, non-overlapping blocks of 2^128 draws. */
typedef struct polopt_rng {
    uint64_t s[4];
} polopt_rng;

POLOPT_DEF polopt_result polopt_rng_seed(polopt_rng *rng, uint64_t seed);
/* Advance by 2^128 draws (the generator's jump polynomial). */
POLOPT_DEF polopt_result polopt_rng_jump(polopt_rng *rng);
/* out_child gets the current stream; rng moves on by 2^128 draws.  Call n times for n independent streams
   (one per thread, one per component). */
POLOPT_DEF polopt_result polopt_rng_split(polopt_rng *rng, polopt_rng *out_child);

/* Scalar draws: they cannot fail (rng must be initialised). */
POLOPT_DEF uint64_t polopt_rng_next(polopt_rng *rng);         /* 64 uniform bits */
POLOPT_DEF double polopt_rng_uniform(polopt_rng *rng);        /* [0, 1), 53 bits */
POLOPT_DEF float polopt_rng_uniformf(polopt_rng *rng);        /* [0, 1), 24 bits */
POLOPT_DEF uint64_t polopt_rng_below(polopt_rng *rng, uint64_t n); /* unbiased in [0, n); 0 when n = 0 */
POLOPT_DEF double polopt_rng_normal(polopt_rng *rng);         /* N(0, 1), Marsaglia's polar method */
POLOPT_DEF double polopt_rng_gumbel(polopt_rng *rng);         /* standard Gumbel: -log(-log U) */

/* n draws of N(0, 1) into out (uses both values of each polar pair: about twice as fast as n calls). */
POLOPT_DEF polopt_result polopt_rng_normals(polopt_rng *rng, size_t n, float *out);
/* One index drawn with probability weights[i] / sum(weights), by a linear scan: O(n).  Weights must be
   finite, >= 0, with a positive sum.  For many draws from one distribution use polopt_alias. */
POLOPT_DEF polopt_result polopt_rng_categorical(polopt_rng *rng, size_t n, const float *weights,
                                                uint32_t *out_index);
/* k distinct indices drawn uniformly from {0..n-1}, written in increasing order.  O(k log k) expected for
   k <= n/2, O(n) otherwise; no allocation.  n <= 2^32. */
POLOPT_DEF polopt_result polopt_rng_choose(polopt_rng *rng, size_t n, size_t k, uint32_t *out);
/* Uniform random permutation of a in place (Fisher-Yates). */
POLOPT_DEF polopt_result polopt_rng_shuffle(polopt_rng *rng, size_t n, uint32_t *a);

/* Walker's alias table (Vose's construction): O(n) to build, O(1) per draw. */
typedef struct polopt_alias {
    size_t n;
    float *prob;     /* prob[i]: chance of keeping column i */
    uint32_t *alias; /* alias[i]: the other item of column i */
    polopt_hooks hooks;
    polopt_error err;
} polopt_alias;

/* weights: n finite values >= 0 with a positive sum (need not be normalised).  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_alias_init(polopt_alias *table, size_t n, const float *weights,
                                           const polopt_hooks *hooks);
POLOPT_DEF uint32_t polopt_alias_draw(const polopt_alias *table, polopt_rng *rng); /* cannot fail */
POLOPT_DEF void polopt_alias_free(polopt_alias *table);

/* >>linalg ------------------------------------------------------------------------------------------------ */

/* Row-major, single precision.  With POLOPT_USE_CBLAS these call cblas_s*; otherwise built-in kernels written for
   each instruction set (below), cache-blocked, with no need for -ffast-math or -march flags.  Every reduction
   accumulates in fixed lanes, so results are deterministic for a given build and CPU. */
typedef enum polopt_trans { POLOPT_NO_TRANS = 0, POLOPT_TRANS = 1 } polopt_trans;

POLOPT_DEF polopt_result polopt_dot(size_t n, const float *x, const float *y, float *out);
POLOPT_DEF polopt_result polopt_axpy(size_t n, float alpha, const float *x, float *y); /* y += alpha x */
POLOPT_DEF polopt_result polopt_scale(size_t n, float alpha, float *x);               /* x *= alpha */
POLOPT_DEF polopt_result polopt_nrm2(size_t n, const float *x, float *out);           /* ||x||_2, no overflow */
/* y = alpha op(A) x + beta y, with A m x n (leading dimension lda >= n); op(A) = A (y has m entries, x n)
   or A^T (y has n entries, x m).  beta = 0 overwrites y (whatever it held, NaN included). */
POLOPT_DEF polopt_result polopt_gemv(polopt_trans trans, size_t m, size_t n, float alpha, const float *A,
                                     size_t lda, const float *x, float beta, float *y);
/* y_i = A_{rows_i} . x for i < k: the dot products of x with k rows picked anywhere in A (m x n, lda >= n), each
   rows_i < m, repeats allowed (the scores h^T beta_a of sampled items).  A gather: every row is fetched ahead. */
POLOPT_DEF polopt_result polopt_gemv_rows(size_t m, size_t n, const float *A, size_t lda, size_t k,
                                          const uint32_t *rows, const float *x, float *y);
/* Its transpose: y += sum_{i < k} x_i A_{rows_i} (y has n entries): a weighted sum of picked rows (E_w[beta] over
   weighted draws). */
POLOPT_DEF polopt_result polopt_gemv_rows_t(size_t m, size_t n, const float *A, size_t lda, size_t k,
                                            const uint32_t *rows, const float *x, float *y);
/* C = alpha op(A) op(B) + beta C, with op(A) m x k, op(B) k x n, C m x n.  Stored shapes: A is m x k
   (lda >= k) or, transposed, k x m (lda >= m); likewise B.  Scoring a batch of H (m x L) against the
   catalogue beta (P x L) is polopt_gemm(NO_TRANS, TRANS, m, P, L, 1, H, L, beta, L, 0, scores, P). */
POLOPT_DEF polopt_result polopt_gemm(polopt_trans trans_a, polopt_trans trans_b, size_t m, size_t n, size_t k,
                                     float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                                     float beta, float *C, size_t ldc);

/* The instruction sets of the built-in kernels (linear algebra, the softmax sums, the HNSW distances).  On x86-64
   with gcc or clang every x86 kernel is compiled, whatever the -m flags, and the best one the CPU supports runs:
   a binary built with plain -O2 uses AVX2 or AVX-512 where the CPU has them.  On aarch64 NEON is always used.
   Elsewhere, or with POLOPT_NO_SIMD, the portable C kernels run (they are also the reference the others are
   tested against).  Kernels of different instruction sets add in different orders: results agree up to
   rounding. */
typedef enum polopt_isa {
    POLOPT_ISA_AUTO = 0,     /* the best this build and CPU support: what every function above uses */
    POLOPT_ISA_PORTABLE = 1, /* plain C */
    POLOPT_ISA_AVX2 = 2,     /* x86-64 AVX2 + FMA */
    POLOPT_ISA_AVX512 = 3,   /* x86-64 AVX-512F */
    POLOPT_ISA_NEON = 4      /* aarch64 Advanced SIMD */
} polopt_isa;

/* The instruction set that POLOPT_ISA_AUTO stands for here (never POLOPT_ISA_AUTO itself). */
POLOPT_DEF polopt_isa polopt_isa_detect(void);
/* 1 if this build contains the kernels of isa and this CPU runs them, else 0. */
POLOPT_DEF int polopt_isa_supported(polopt_isa isa);
/* "auto", "portable", "avx2", "avx512", "neon" (or "unknown"). */
POLOPT_DEF const char *polopt_isa_name(polopt_isa isa);

/* The same operations on a chosen instruction set, for tests and benchmarks: each answers POLOPT_ERR_UNSUPPORTED
   where polopt_isa_supported(isa) is 0, and otherwise behaves as the function of the same name without _isa,
   except that it always runs the built-in kernels (never CBLAS).  Example, the portable gemm against AVX2:
       polopt_gemm_isa(POLOPT_ISA_PORTABLE, POLOPT_NO_TRANS, POLOPT_TRANS, 32, P, L, 1, H, L, beta, L, 0, C, P); */
POLOPT_DEF polopt_result polopt_dot_isa(polopt_isa isa, size_t n, const float *x, const float *y, float *out);
POLOPT_DEF polopt_result polopt_axpy_isa(polopt_isa isa, size_t n, float alpha, const float *x, float *y);
POLOPT_DEF polopt_result polopt_gemv_isa(polopt_isa isa, polopt_trans trans, size_t m, size_t n, float alpha,
                                         const float *A, size_t lda, const float *x, float beta, float *y);
POLOPT_DEF polopt_result polopt_gemv_rows_isa(polopt_isa isa, size_t m, size_t n, const float *A, size_t lda,
                                              size_t k, const uint32_t *rows, const float *x, float *y);
POLOPT_DEF polopt_result polopt_gemv_rows_t_isa(polopt_isa isa, size_t m, size_t n, const float *A, size_t lda,
                                                size_t k, const uint32_t *rows, const float *x, float *y);
POLOPT_DEF polopt_result polopt_gemm_isa(polopt_isa isa, polopt_trans trans_a, polopt_trans trans_b, size_t m,
                                         size_t n, size_t k, float alpha, const float *A, size_t lda, const float *B,
                                         size_t ldb, float beta, float *C, size_t ldc);

/* >>numerics ---------------------------------------------------------------------------------------------- */

/* All of these accept -inf (a masked entry: probability 0) and reject NaN and +inf with POLOPT_ERR_NONFINITE.
   temperature T > 0 divides the logits: softmax(x / T).  Sums run in double. */

/* out = log sum_i exp(x_i / T).  All entries -inf gives -inf. */
POLOPT_DEF polopt_result polopt_logsumexp(size_t n, const float *x, float temperature, double *out);
/* out_i = exp(x_i / T) / sum_j exp(x_j / T).  out may be x.  All entries -inf: POLOPT_ERR_DOMAIN. */
POLOPT_DEF polopt_result polopt_softmax(size_t n, const float *x, float temperature, float *out);
/* The same on a chosen instruction set (see polopt_isa; for tests and benchmarks). */
POLOPT_DEF polopt_result polopt_logsumexp_isa(polopt_isa isa, size_t n, const float *x, float temperature,
                                              double *out);
POLOPT_DEF polopt_result polopt_softmax_isa(polopt_isa isa, size_t n, const float *x, float temperature, float *out);
/* out_i = x_i / T - logsumexp(x / T), exact even where exp underflows.  out may be x. */
POLOPT_DEF polopt_result polopt_log_softmax(size_t n, const float *x, float temperature, float *out);
/* The k largest entries, best first, in O(n log k) with a k-entry heap held in out_index (no full sort,
   no allocation).  1 <= k <= n.  Ties go to the lower index.  out_value may be NULL.  +-inf allowed, NaN rejected. */
POLOPT_DEF polopt_result polopt_topk(size_t n, const float *x, size_t k, uint32_t *out_index, float *out_value);
/* Index of the largest entry (the first of equals).  n >= 1; NaN rejected. */
POLOPT_DEF polopt_result polopt_argmax(size_t n, const float *x, uint32_t *out_index);
/* POLOPT_OK if every entry is finite, else POLOPT_ERR_NONFINITE and the first bad index (out may be NULL). */
POLOPT_DEF polopt_result polopt_check_finite(size_t n, const float *x, size_t *out_first_bad);

/* >>mips -------------------------------------------------------------------------------------------------- */

/* Maximum inner product search: the K items with the largest h^T beta_a among P.  One type, two kinds:
     exact   streams the item matrix once per batch of queries (gemm tiles + per-query heaps): the ground truth,
             and the baseline;
     HNSW    a hierarchical navigable small-world graph (Malkov & Yashunin, 2018), O(log P) per query.
   Both are searched through polopt_mips_search / polopt_mips_search_batch, so everything above takes either.

   Why the graph is built in "Moebius" coordinates.  HNSW built and searched on the raw inner product collapses
   on real embeddings, whose norms are unequal: every item's best matches are the same few large-norm items, so
   moderate-norm items receive no links and cannot be reached (recall@256 stalls near 0.65-0.75 here, whatever
   ef; hnswlib's inner-product space behaves the same).  The usual reduction to nearest-neighbour search (append
   sqrt(M^2 - ||b||^2)) does worse on clustered data.  Instead we build the graph on y_a = beta_a / ||beta_a||^2
   (Zhou et al., "Moebius Transformation for Fast Inner Product Search on Graph", NeurIPS 2019), where plain
   Euclidean distance gives a well-connected graph whose neighbourhoods follow the inner product's, and search it
   with the inner product itself.  The distance needs no transformed copy:
       ||y_a - y_b|| = ||beta_a - beta_b|| / (||beta_a|| ||beta_b||),   ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a^T b
   so building costs one dot product per pair, as a plain inner-product graph would.  Measured on the synthetic
   catalogue (P = 1,000,000, L = 64, M = 16, ef_construction = 200; bench/bench_mips): recall@10 0.97 at ef = 32
   and recall@256 0.97 at ef = 256, against 0.89 and 0.58 for hnswlib's inner-product HNSW, whose recall@256
   stays below 0.67 even at ef = 2048.

   Memory of an HNSW index, bytes per item: 4 (1 + 2M) level-0 links + 4 (squared norm) + 1 (level) + 4 (offset
   of the upper levels) + on average 4 (1 + M) / (M - 1) for the upper levels, plus 4 L for the vectors when the
   index copies them.  M = 16, L = 64: 145.3 + 256 = 401 bytes.  An exact index: 4 L (copied) or nothing. */
#define POLOPT_NO_ITEM 0xffffffffu /* id of an empty result slot */
/* Hubs.  The argmax of h^T beta_a is most often an item of large norm, and in the Moebius graph those sit near the
   origin with few links of their own: on SVD embeddings of real baskets, a search at ef = 4096 still missed the
   argmax for 1.4% of queries, always one of the 150 largest norms (hnswlib: 0.2%).  So a search that starts cold
   (no seeds) also starts from the POLOPT_MIPS_HUBS largest-norm items, found at build and load (O(P)): 256 inner
   products more, and the argmax found for every such query measured.  Items whose embedding is zero (an item
   never seen in training) score 0 for every query; their Moebius point is at infinity (the squared norm is
   floored at 1e-30), so the graph reaches them only from outside: the first of them is a hub too, which keeps the
   top-1 exact even when every other item scores below 0. */
#define POLOPT_MIPS_HUBS 256

typedef enum polopt_mips_kind { POLOPT_MIPS_EXACT = 1, POLOPT_MIPS_HNSW = 2 } polopt_mips_kind;

typedef struct polopt_mips_hnsw_config {
    size_t M;               /* links per node and level (2M on level 0); 16 if unsure, 32 for recall@1000 */
    size_t ef_construction; /* candidates kept while linking a new item; 200 */
    uint64_t seed;          /* the levels of the nodes; 1 */
    size_t n_threads;       /* build threads (needs pthreads; see POLOPT_NO_THREADS); 1 */
    polopt_hooks hooks;
} polopt_mips_hnsw_config;

typedef struct polopt_mips {
    polopt_mips_kind kind;
    size_t n, dim, capacity; /* items indexed, L, items the arrays have room for */
    const float *vectors;    /* n x dim, row-major: the caller's (borrowed) or owned_vectors */
    float *owned_vectors;    /* NULL when borrowed */
    /* HNSW only */
    size_t M, ef_construction;
    float *sqnorms;         /* ||beta_a||^2 */
    uint8_t *levels;        /* top level of each node */
    uint32_t *links0;       /* level 0: per node [count, 2M ids] */
    uint32_t *upper_offset; /* per node: first word of its upper levels in upper, or POLOPT_NO_ITEM */
    uint32_t *upper;        /* per node with level l >= 1: l blocks [count, M ids] */
    size_t upper_size, upper_capacity; /* words used, words allocated */
    uint32_t entry;         /* the entry node (a node of the top level) */
    int max_level;
    uint32_t hubs[POLOPT_MIPS_HUBS + 1]; /* the largest-norm items and the first zero one: extra starts (below) */
    size_t n_hubs;
    polopt_rng rng; /* levels of nodes added later */
    polopt_hooks hooks;
    polopt_error err;
} polopt_mips;

/* Per-thread search state: visited marks, candidate heaps, exact-search tiles.  Make one per thread and reuse
   it: it holds a P-sized array whose first touch is slow.  Its err says why a search failed. */
typedef struct polopt_mips_scratch {
    size_t capacity, max_ef;
    uint32_t *visited, epoch;
    void *heap_a, *heap_b; /* max_ef + 1 candidates each */
    float *tile;           /* exact search: a block of scores */
    void *block;           /* the one allocation the arrays live in (NULL inside a preallocated estimator) */
    polopt_hooks hooks;
    polopt_error err;
} polopt_mips_scratch;

POLOPT_DEF polopt_mips_hnsw_config polopt_mips_hnsw_config_default(void);
/* An exact index over n rows of vectors (n x dim).  copy = 0 borrows the array (it must outlive the index and stay
   unchanged), copy = 1 keeps a copy.  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_mips_init_exact(polopt_mips *index, size_t n, size_t dim, const float *vectors,
                                                int copy, const polopt_hooks *hooks);
/* An HNSW index over n rows (n >= 1).  O(n log n ef_construction L).  Vectors must be finite. */
POLOPT_DEF polopt_result polopt_mips_init_hnsw(polopt_mips *index, size_t n, size_t dim, const float *vectors,
                                               int copy, const polopt_mips_hnsw_config *config);
/* Append n_new rows (ids n, n+1, ...) to an index that owns its vectors (copy = 1, or loaded). */
POLOPT_DEF polopt_result polopt_mips_add(polopt_mips *index, size_t n_new, const float *vectors);
POLOPT_DEF void polopt_mips_free(polopt_mips *index);

/* Scratch for searches on index (or any index of at most the same capacity) with ef (or k, for exact) up to
   max_ef.  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_mips_scratch_init(polopt_mips_scratch *scratch, const polopt_mips *index,
                                                  size_t max_ef, const polopt_hooks *hooks);
POLOPT_DEF void polopt_mips_scratch_free(polopt_mips_scratch *scratch);

/* The k items with the largest inner product with query (dim floats), best first, into out_ids (k) and, if not
   NULL, out_scores (k).  HNSW explores ef >= k candidates (recall rises with ef; exact ignores ef).  Exact
   results break ties by the lower id.  If the graph reaches fewer than k items the last slots hold POLOPT_NO_ITEM
   and -inf.  The index is only read: any number of threads may search it at once, each with its own scratch. */
POLOPT_DEF polopt_result polopt_mips_search(const polopt_mips *index, polopt_mips_scratch *scratch,
                                            const float *query, size_t k, size_t ef, uint32_t *out_ids,
                                            float *out_scores);
/* n_queries queries (rows of queries, leading dimension ldq >= dim); results row by row (k per query).  The
   exact index streams the items once per 32 queries. */
POLOPT_DEF polopt_result polopt_mips_search_batch(const polopt_mips *index, polopt_mips_scratch *scratch,
                                                  size_t n_queries, const float *queries, size_t ldq, size_t k,
                                                  size_t ef, uint32_t *out_ids, float *out_scores);

/* The checksum of polopt files (64 bits, about 8 GB/s; detects corruption, not tampering). */
POLOPT_DEF polopt_result polopt_checksum64(const void *data, size_t size, uint64_t *out);

/* The speed/quality dial of an HNSW search, for callers who need an approximate top-k fast (the proposal of the
   policy learners only needs to be close to the policy):
     seeds, n_seeds   items to start from instead of the descent from the entry point, e.g. the previous top-k of
                      the same user (ids of POLOPT_NO_ITEM are skipped)
     max_expansions   stop after expanding this many nodes (0: no limit).  The search is best-first, so a small
                      budget still finds the best items; the k-th may be missed.
   Exact indexes ignore both and answer exactly. */
POLOPT_DEF polopt_result polopt_mips_search_from(const polopt_mips *index, polopt_mips_scratch *scratch,
                                                 const float *query, size_t k, size_t ef, const uint32_t *seeds,
                                                 size_t n_seeds, size_t max_expansions, uint32_t *out_ids,
                                                 float *out_scores);

/* Files and buffers: a 128-byte header (magic "POLOPTIX", format version, byte order, element size, kind and
   sizes, checksums of the header and of the payload), then the vectors and, for HNSW, the graph.  Loading
   checks everything (sizes, checksum, every link in range) before it trusts anything, and answers a truncated,
   corrupted or foreign input with an error and a message, and proves that the graph has the exact layout this
   writer produces.  polopt_mips_save writes a temporary file next to path under a fresh name (created exclusively,
   never through a link), flushes it, keeps the replaced file's mode and renames it over path only when complete, so
   a failed save never replaces a good file; a saved file is a function of the index alone.  Saving only reads the
   index, so it takes it const; out_err (may be NULL) receives the message of a failure, e.g. &index.err. */
POLOPT_DEF polopt_result polopt_mips_save(const polopt_mips *index, const char *path, polopt_error *out_err);
/* Bytes needed: call with buffer NULL to get *out_size, then again with a buffer of that size. */
POLOPT_DEF polopt_result polopt_mips_save_buffer(const polopt_mips *index, void *buffer, size_t buffer_size,
                                                 size_t *out_size, polopt_error *out_err);
/* The loaded index owns its vectors.  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_mips_load(polopt_mips *index, const char *path, const polopt_hooks *hooks);
POLOPT_DEF polopt_result polopt_mips_load_buffer(polopt_mips *index, const void *buffer, size_t size,
                                                 const polopt_hooks *hooks);

/* >>optim ------------------------------------------------------------------------------------------------- */

/* Adam (Kingma & Ba, 2015) with bias correction and optional decoupled weight decay (AdamW, Loshchilov &
   Hutter, 2019), over one flat float array of n parameters:
       m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2
       p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)  +  weight_decay * p )
   With maximize = 1 the step ascends (g is replaced by -g): the policy learners maximise reward. */
typedef struct polopt_adam_config {
    float lr;           /* step size; 1e-3 if unsure (the paper uses 1e-4 with batch 32) */
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0 = none; decoupled (AdamW) */
    int maximize;       /* 0: descend on the gradient, 1: ascend */
    polopt_hooks hooks;
} polopt_adam_config;

typedef struct polopt_adam {
    polopt_adam_config config;
    size_t n;    /* number of parameters */
    uint64_t t;  /* steps taken */
    float *m, *v; /* first and second moment estimates, n each */
    polopt_error err;
} polopt_adam;

POLOPT_DEF polopt_adam_config polopt_adam_config_default(void);
/* config may be NULL (defaults).  Moments start at zero. */
POLOPT_DEF polopt_result polopt_adam_init(polopt_adam *opt, size_t n, const polopt_adam_config *config);
/* One step.  A non-finite gradient entry is an error and leaves params and state untouched. */
POLOPT_DEF polopt_result polopt_adam_step(polopt_adam *opt, float *params, const float *grad);
POLOPT_DEF void polopt_adam_free(polopt_adam *opt);

/* SGD with optional momentum (the heavy-ball form used by PyTorch) and L2 weight decay:
       g' = g + weight_decay * p;   buf = momentum * buf + g' (buf = g' at the first step);   p -= lr * buf */
typedef struct polopt_sgd_config {
    float lr;           /* 1e-2 */
    float momentum;     /* 0 = plain SGD */
    float weight_decay; /* 0 = none */
    int maximize;
    polopt_hooks hooks;
} polopt_sgd_config;

typedef struct polopt_sgd {
    polopt_sgd_config config;
    size_t n;
    uint64_t t;
    float *buf; /* momentum buffer, NULL when momentum = 0 */
    polopt_error err;
} polopt_sgd;

POLOPT_DEF polopt_sgd_config polopt_sgd_config_default(void);
POLOPT_DEF polopt_result polopt_sgd_init(polopt_sgd *opt, size_t n, const polopt_sgd_config *config);
POLOPT_DEF polopt_result polopt_sgd_step(polopt_sgd *opt, float *params, const float *grad);
POLOPT_DEF void polopt_sgd_free(polopt_sgd *opt);

/* >>policy ------------------------------------------------------------------------------------------------ */

/* The softmax policy of Sakhi, Rohde & Gilotte (2023, §2): f(a, x) = h(x)^T beta_a / T, pi(a | x) = exp f(a, x) / Z(x), with the
   built-in linear user model h_theta(x) = theta^T x, theta in R^{D x L}.  The item embeddings beta (P x L) are
   fixed and live in a polopt_mips index, which also serves the greedy action and the top-k. */
typedef enum polopt_init { POLOPT_INIT_IDENTITY = 0, POLOPT_INIT_RANDOM = 1 } polopt_init;

typedef struct polopt_policy_config {
    size_t D, L;        /* context and embedding dimensions (required) */
    polopt_init init;   /* IDENTITY (D = L only; theta = I, the paper's start) or RANDOM: N(0, init_scale^2 / D) entries.
                           The default depends on the shape: IDENTITY when D = L, RANDOM otherwise; set it to choose */
    float init_scale;   /* 1.  The scale is divided by sqrt(D), so entries s N(0, 1) need init_scale = s sqrt(D)
                           (the paper's 0.005 N(0, 1) with D = 64: 0.04) */
    float temperature;  /* T in [1 / FLT_MAX, FLT_MAX] (1/T finite); 1 */
    uint64_t seed;      /* for RANDOM; 1 */
    polopt_hooks hooks;
} polopt_policy_config;

typedef struct polopt_policy {
    size_t D, L;
    float temperature;
    float *theta; /* D x L, row-major */
    polopt_hooks hooks;
    polopt_error err;
} polopt_policy;

POLOPT_DEF polopt_policy_config polopt_policy_config_default(size_t D, size_t L);
POLOPT_DEF polopt_result polopt_policy_init(polopt_policy *policy, const polopt_policy_config *config);
POLOPT_DEF void polopt_policy_free(polopt_policy *policy);
/* H = X theta: the user embeddings of n contexts (rows of X, leading dimension ldx >= D) into H (n x L). */
POLOPT_DEF polopt_result polopt_policy_embed(const polopt_policy *policy, size_t n, const float *X, size_t ldx,
                                             float *out_H);
/* The k items of largest f(a, x) for one context, best first, through a MIPS index (exact or HNSW; ef as in
   polopt_mips_search).  out_scores (may be NULL) receives f = h^T beta_a / T.  k = 1 is the greedy action. */
POLOPT_DEF polopt_result polopt_policy_topk(const polopt_policy *policy, const polopt_mips *index,
                                            polopt_mips_scratch *scratch, const float *x, size_t k, size_t ef,
                                            uint32_t *out_ids, float *out_scores);
/* The same without some items (e.g. those the user has consumed: n_exclude ids, sorted and distinct): the k best
   others.  It searches for k + n_exclude items (HNSW with ef raised to at least that; the scratch must allow it)
   and drops the excluded ones, so out_ids and out_scores (may be NULL) need room for k + n_exclude entries; the
   answer is in the first k, and slots the index could not fill hold POLOPT_NO_ITEM. */
POLOPT_DEF polopt_result polopt_policy_topk_excluding(const polopt_policy *policy, const polopt_mips *index,
                                                      polopt_mips_scratch *scratch, const float *x, size_t n_exclude,
                                                      const uint32_t *exclude, size_t k, size_t ef, uint32_t *out_ids,
                                                      float *out_scores);
/* Serving with Boltzmann exploration (Chen et al. 2019, §5): the top M items of f by MIPS, and pi_M =
   softmax(f / T) over them; the slate is the K_top most probable, best first, then K - K_top items drawn without
   replacement from the other M - K_top with probabilities proportional to pi_M (Gumbel top-k: the largest
   f / T + Gumbel noise, which draws exactly the sequential sampling without replacement).  K_top = K serves the
   greedy top K, K_top = 0 samples the whole slate.  out_ids: room for M ids, the slate in its first K; work: M
   floats of scratch.  T as for the policy temperature (relative to f). */
POLOPT_DEF polopt_result polopt_policy_explore(const polopt_policy *policy, const polopt_mips *index,
                                               polopt_mips_scratch *scratch, polopt_rng *rng, const float *x, size_t M,
                                               size_t K, size_t K_top, float temperature, size_t ef,
                                               uint32_t *out_ids, float *work);
/* Files and buffers with the index's discipline: magic "POLOPTPL", version, sizes, checksums, validated load,
   atomic save, out_err as for the index (may be NULL).  A loaded policy has its own theta. */
POLOPT_DEF polopt_result polopt_policy_save(const polopt_policy *policy, const char *path, polopt_error *out_err);
POLOPT_DEF polopt_result polopt_policy_save_buffer(const polopt_policy *policy, void *buffer, size_t buffer_size,
                                                   size_t *out_size, polopt_error *out_err);
POLOPT_DEF polopt_result polopt_policy_load(polopt_policy *policy, const char *path, const polopt_hooks *hooks);
POLOPT_DEF polopt_result polopt_policy_load_buffer(polopt_policy *policy, const void *buffer, size_t size,
                                                   const polopt_hooks *hooks);

/* >>proposal ---------------------------------------------------------------------------------------------- */

/* The epsilon-mixture proposal (Sakhi et al. 2023, §4) built from the top-K items alpha_K of a context:
       q(a) = eps / P + (1 - eps) kappa(a)   if a is in alpha_K,        q(a) = eps / P   otherwise,
       kappa(a) = exp f(a) / sum_{b in alpha_K} exp f(b).
   Sampling: with probability eps a uniform item, else an item of alpha_K drawn from kappa.  log q(a) tests the
   membership of a in alpha_K with a hash table, because a uniform draw can land inside alpha_K.  eps = 1 is the
   uniform proposal; eps = 0 trusts alpha_K alone (items outside it then have q = 0, log q = -inf).
   O(K) to set, O(log K) per draw, O(1) per log q. */
typedef struct polopt_proposal {
    size_t P, K, max_K;
    float epsilon;
    uint32_t *ids;     /* alpha_K */
    float *log_kappa;  /* log kappa of each member */
    float *log_q;      /* log q of each member, computed once per set: a draw needs no logarithm */
    float log_q_other; /* log q outside alpha_K: log(eps / P) */
    float log_norm;    /* log sum_{b in alpha_K} exp f(b): a member's score is log kappa + log_norm */
    float *prob;       /* kappa's alias table (Walker 1977), for drawing in O(1): column i keeps member i with */
    uint32_t *alias;   /* probability prob[i], else gives member alias[i] */
    double *work;      /* K: e^(f - max), then kappa K, while setting */
    uint32_t *stack;   /* K: the alias table's work */
    uint32_t *table;   /* open addressing: member id -> its slot + 1, 0 = empty */
    uint64_t filter[64]; /* one bit per hash of a member (4,096): most non-members are told by one load */
    size_t table_mask;
    void *block;       /* the one allocation the arrays live in (NULL inside a preallocated estimator) */
    polopt_hooks hooks;
    polopt_error err;
} polopt_proposal;

/* A proposal over P items for top-K sets of up to max_K items.  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_proposal_init(polopt_proposal *q, size_t P, size_t max_K, const polopt_hooks *hooks);
/* Set eps and alpha_K: K distinct ids below P with their scores f (finite; e.g. from polopt_policy_topk). */
POLOPT_DEF polopt_result polopt_proposal_set(polopt_proposal *q, float epsilon, size_t K, const uint32_t *ids,
                                             const float *scores);
/* n independent draws, with log q of each (out_log_q may be NULL). */
POLOPT_DEF polopt_result polopt_proposal_sample(polopt_proposal *q, polopt_rng *rng, size_t n, uint32_t *out_ids,
                                                float *out_log_q);
/* log q(a) for n items. */
POLOPT_DEF polopt_result polopt_proposal_log_prob(const polopt_proposal *q, size_t n, const uint32_t *ids,
                                                  float *out_log_q);
POLOPT_DEF void polopt_proposal_free(polopt_proposal *q);

/* >>estimator --------------------------------------------------------------------------------------------- */

/* The estimator: what every objective needs from the softmax policy pi(a | x) = exp f(a, x) / Z(x), f = h^T beta_a / T,
   over a whole catalogue, for a batch of user embeddings h (from the built-in linear model or from your own):
     - draws a_1..a_S with normalised weights w_bar_s, so that E_pi[g(a)] ~ sum_s w_bar_s g(a_s) for any g;
     - log Z_hat, E_pi[beta] and the effective sample size of the weights;
     - log pi(a | x) and its gradient with respect to h for given actions (logged ones):
           grad_h log pi(a | x) = (beta_a - E_pi[beta]) / T
       (the derivative of f(a) minus that of log Z; Sakhi, Rohde & Gilotte 2023, Eq. 9);
     - the covariance gradient of an expected reward, grad_h E_pi[r] = Cov_pi(r(a), beta_a) / T.
   Three methods compute them:
     SNIS       S draws from the eps-mixture q around the MIPS top-K (>>proposal), log w_s = f(a_s) - log q(a_s),
                self-normalised.  O(S L + log P) per context: the catalogue is never scanned.  The draws are
                stratified: eps S of them uniform over the catalogue, spread evenly, and the rest from kappa (eps
                rounded to a multiple of 1 / S), which removes the variance of the split between the components.
     REINFORCE  all P scores, S exact draws from pi (equal weights); O(P L).  The unbiased-direction baseline.
     EXACT      all P scores and pi itself: the "draws" are the P items with weights pi(a); O(P L).
   With SNIS, pi(a | x) = exp f(a) / Z_hat is a ratio estimate: Z_hat = (1/S) sum_s exp f(a_s) / q(a_s) is unbiased
   for Z, so by Jensen's inequality 1 / Z_hat is not, and pi_hat(a) is biased upwards by a relative
       E[pi_hat(a)] / pi(a) - 1  ~  Var(Z_hat) / Z^2  <=  chi2(pi || q) / S,      chi2(pi || q) = E_q[(pi/q)^2] - 1
   (the delta method; chi2 / S for independent draws from q, less by the spread of the components' means of pi/q
   for the stratified ones), which falls as 1/S and as q nears pi; the estimator returns min(pi_hat, 1).  REINFORCE and
   EXACT give log pi exactly; REINFORCE estimates E_pi[beta] from its draws, EXACT computes it.
   One object holds everything a batch needs (the proposal, the MIPS scratch, the generator, the draw buffers, the
   current eps), allocated once; polopt_estimator_heap_size and polopt_estimator_init_preallocated put all of it
   in one block of the caller's memory instead (for devices without a general-purpose heap). */
typedef enum polopt_method {
    POLOPT_METHOD_SNIS = 0,      /* the paper: S draws from the eps-mixture around the MIPS top-K; O(S L + log P) */
    POLOPT_METHOD_REINFORCE = 1, /* S exact draws from pi after scoring all P items; O(P L) */
    POLOPT_METHOD_EXACT = 2      /* the exact expectation over all P items; O(P L) */
} polopt_method;

typedef struct polopt_estimator_config {
    polopt_method method;  /* SNIS */
    float epsilon;         /* 0.8: the mixture weight, fixed, or the start of the adaptive one */
    int adaptive_epsilon;  /* 0; 1: after every batch contexts (however they are set), move eps towards the value
                              that maximises the estimated effective sample size */
    size_t K;              /* top-K of the proposal; 256 */
    size_t S;              /* draws per context (>= 2); 1000 */
    size_t ef;             /* MIPS beam width, >= K; 0 = K */
    size_t search_budget;  /* expansions of a warm-started search (polopt_estimator_set); 16; 0: no limit */
    size_t batch;          /* the most contexts one polopt_estimator_set takes; 32 */
    float temperature;     /* T of f = h^T beta / T, in [1 / FLT_MAX, FLT_MAX]; 1 */
    uint64_t seed;         /* 1 */
    polopt_hooks hooks;
} polopt_estimator_config;

typedef struct polopt_estimator {
    polopt_estimator_config config;
    const polopt_mips *index; /* beta (P x L) and the MIPS of the proposal */
    polopt_rng rng;
    float epsilon;            /* the current mixture weight */
    double eps_score[8];      /* adaptive_epsilon: the grid's effective sample size fractions, summed */
    size_t eps_seen;          /* contexts in eps_score (eps moves after every batch of them) */
    size_t n;                 /* contexts set by the last polopt_estimator_set */
    size_t S;                 /* draws per context: config.S, or P with EXACT */
    polopt_mips_scratch mips; /* SNIS */
    polopt_proposal proposal; /* SNIS */
    float *H;                 /* batch x L: the embeddings of the contexts set */
    uint32_t *ids;            /* batch x S draws; EXACT: 0..P-1 once */
    float *weights;           /* batch x S normalised weights; EXACT: pi, batch x P (in scores) */
    float *f, *log_q, *log_kappa;  /* SNIS, batch x S: f(a_s), log q(a_s), log kappa(a_s) */
    float *scores;            /* REINFORCE, EXACT: batch x P */
    float *beta_bar;          /* EXACT: batch x L, E_pi[beta] of each context (one gemm for the set) */
    double *log_z, *ess;      /* batch each */
    uint32_t *topk;           /* SNIS: alpha_K (K) and its scores */
    float *topk_scores;
    double *block_sums;       /* REINFORCE: cumulative sums of exp f per 256 items */
    double *uniforms;         /* REINFORCE: 2 S doubles, S sorted uniforms and the sort's input */
    uint32_t *buckets;        /* REINFORCE: S + 1 counts of the bucket sort; SNIS: the draws that need a row of beta */
    void *block;              /* the one allocation (NULL when the caller's memory) */
    polopt_error err;
} polopt_estimator;

/* The weighted draws of one context; the pointers are into the estimator, valid until its next set. */
typedef struct polopt_draws {
    size_t S;               /* draws (P with EXACT) */
    const uint32_t *ids;    /* S items (EXACT: 0..P-1) */
    const float *weights;   /* S normalised weights, sum 1 (EXACT: pi; REINFORCE: 1/S) */
    double log_z;           /* log Z_hat (exact with REINFORCE and EXACT) */
    double ess;             /* (sum w)^2 / sum w^2: S for REINFORCE; EXACT: 1 / sum pi^2 */
    float epsilon;          /* the mixture weight used (1 for REINFORCE and EXACT) */
} polopt_draws;

POLOPT_DEF polopt_estimator_config polopt_estimator_config_default(void);
/* The bytes polopt_estimator_init_preallocated needs for this index and config (alignment included). */
POLOPT_DEF polopt_result polopt_estimator_heap_size(const polopt_mips *index, const polopt_estimator_config *config,
                                                    size_t *out_bytes);
/* An estimator over the items of index (which must outlive it); config NULL: the defaults. */
POLOPT_DEF polopt_result polopt_estimator_init(polopt_estimator *est, const polopt_mips *index,
                                               const polopt_estimator_config *config);
/* The same in heap (heap_size >= polopt_estimator_heap_size bytes, any alignment), which the estimator uses and
   never frees: polopt_estimator_free only forgets it.  Nothing else is allocated, then or later. */
POLOPT_DEF polopt_result polopt_estimator_init_preallocated(polopt_estimator *est, const polopt_mips *index,
                                                            const polopt_estimator_config *config, void *heap,
                                                            size_t heap_size);
POLOPT_DEF void polopt_estimator_free(polopt_estimator *est);
/* Set n contexts (1 <= n <= config.batch) by their user embeddings H (n x L, finite): draw (SNIS, REINFORCE) or
   compute pi (EXACT).  warm (SNIS only, may be NULL): n rows of K item ids, each the context's alpha_K of an earlier
   visit (or POLOPT_NO_ITEM first: none); the search starts there and stops after search_budget expansions, and the
   row receives the new alpha_K.  The proposal is exact for whatever set it is given, so SNIS stays consistent; only
   its variance depends on how close alpha_K is.  SNIS treats each context on its own: setting one context at a time
   and querying it at once keeps its S rows of beta in cache for your reward and the gradient (the trainer does so);
   REINFORCE and EXACT score a whole set with one pass over beta. */
POLOPT_DEF polopt_result polopt_estimator_set(polopt_estimator *est, size_t n, const float *H, uint32_t *const *warm);
/* The draws of context c (c < n of the last set). */
POLOPT_DEF polopt_result polopt_estimator_draws(const polopt_estimator *est, size_t c, polopt_draws *out);
/* E_pi[beta] of context c (L floats), from the weighted draws (EXACT: the exact sum). */
POLOPT_DEF polopt_result polopt_estimator_mean_embedding(const polopt_estimator *est, size_t c, float *out_beta_bar);
/* For m given actions of context c: log pi(a | x) into out_log_pi (m; may be NULL) and grad_h log pi(a | x) =
   (beta_a - E_pi[beta]) / T into out_grad (m x L; may be NULL). */
POLOPT_DEF polopt_result polopt_estimator_log_prob(const polopt_estimator *est, size_t c, size_t m,
                                                   const uint32_t *actions, float *out_log_pi, float *out_grad);
/* The covariance gradient of context c for rewards r of its draws (S values, in the order of draws.ids):
       r_bar = sum_s w_bar_s r_s,    out_g = (1/T) sum_s w_bar_s (r_s - r_bar) beta_{a_s}     (L floats)
   the gradient of E_pi[r] with respect to h (Sakhi et al. 2023, Eq. 9 and Algorithm 1, steps 4-5; REINFORCE
   scales it by S / (S - 1), which makes its covariance unbiased).  out_value (may be NULL): r_bar. */
POLOPT_DEF polopt_result polopt_estimator_gradient(const polopt_estimator *est, size_t c, const float *rewards,
                                                   float *out_g, double *out_value);

/* Slates: K distinct items shown at once, in order, from the Plackett-Luce extension of pi (Plackett 1975; Luce
   1959): position 1 from pi, position k from pi over the items not yet placed,
       pi(a_1..a_K | x) = prod_k exp f(a_k) / (Z - sum_{j<k} exp f(a_j)),
   which is also how a slate is sampled: the K largest f(a) + G_a, G_a independent standard Gumbel (the Gumbel
   top-k trick; Kool, van Hoof & Welling 2019, Stochastic Beams and Where to Find Them, ICML).  Its score, with pi_k the softmax over the items left at step k,
       grad_h log pi(a_1..a_K | x) = sum_k (beta_{a_k} - E_{pi_k}[beta]) / T,
   needs Z and E over a different set at each of the K steps.  One set of weighted draws serves all of them: the
   slate's own items are taken out of the draws and counted exactly, and the draws of every other item estimate
   the rest of the catalogue once,
       Z_rest = Z_hat sum_{s: a_s not in the slate} w_bar_s,     M_rest = Z_hat sum_{s: a_s not in the slate} w_bar_s beta_{a_s}
       Z_k    = Z_rest + sum_{j>=k} exp f(a_j),                   E_{pi_k}[beta] = (M_rest + sum_{j>=k} exp f(a_j) beta_{a_j}) / Z_k
   so every Z_k holds exp f(a_k) exactly and pi_k(a_k) <= 1 whatever the draws: the step-k term is the step-1 SNIS
   estimate with the placed items removed from both sums (exact with EXACT, where the draws are every item with
   weight pi).  Costs O(S L + S log K) per slate beyond the draws; K <= POLOPT_SLATE_MAX. */
#define POLOPT_SLATE_MAX 64
/* log pi of each prefix of a slate of context c (K distinct items, best position first):
   out_log_pi[k] = log pi(a_1..a_{k+1} | x) (K values, decreasing; the last is the slate's), and out_grad (K x L,
   may be NULL) row k = grad_h log pi(a_1..a_{k+1} | x).  The prefixes are what the cascade estimators (RIPS)
   weigh each position with. */
POLOPT_DEF polopt_result polopt_estimator_slate_log_prob(const polopt_estimator *est, size_t c, size_t K,
                                                         const uint32_t *slate, float *out_log_pi, float *out_grad);
/* A slate of K distinct items for context c, sampled from the Plackett-Luce policy of its draws: K draws without
   replacement from the weighted draws (the same item's weights pooled), in order.  With EXACT these are exact draws
   from pi(slate | x); with SNIS and REINFORCE they are draws from the weighted empirical distribution that estimates
   pi (sampling-importance-resampling, consistent as S grows).  If the draws hold fewer than K distinct items (S < K,
   or a very peaked pi), the last positions are filled uniformly from the rest of the catalogue.  The estimator is
   not changed: rng supplies the randomness.  O(K S). */
POLOPT_DEF polopt_result polopt_estimator_sample_slate(const polopt_estimator *est, size_t c, size_t K,
                                                       polopt_rng *rng, uint32_t *out_slate);
/* A slate reward estimator R_hat(x_c, slate) for polopt_estimator_slate_gradient: write the reward of the K-item
   slate of context c (a number of your model, e.g. 1 - P(no click) from polopt_prr_probs) into out_reward; return
   POLOPT_OK, or an error code that stops the call. */
typedef polopt_result (*polopt_slate_reward_fn)(void *user, size_t context, size_t K, const uint32_t *slate,
                                                double *out_reward);
#define POLOPT_SLATE_SAMPLES_MAX 32
/* REINFORCE over slates, the slate counterpart of polopt_estimator_gradient: the gradient with respect to h of the
   expected slate reward E_{s ~ pi(.|x)}[R_hat(x, s)] of context c, from n_slates (2 .. POLOPT_SLATE_SAMPLES_MAX)
   slates sampled by polopt_estimator_sample_slate, each with the leave-one-out baseline (the mean reward of the
   others, which keeps the estimate unbiased for the sampled distribution and removes most of its variance):
       out_g = (1/M) sum_m (R_m - mean_{j != m} R_j) grad_h log pi(s_m | x)               (L floats)
   the score of each slate from the same draws (polopt_estimator_slate_log_prob's last row, without its K x L
   scratch).  out_value (may be NULL): the mean of the M rewards.  Maximising a slate reward estimator is then the
   loop of the single-item trainer: set a batch of contexts, take each one's g, step theta by sum x g^T. */
POLOPT_DEF polopt_result polopt_estimator_slate_gradient(const polopt_estimator *est, size_t c, size_t K,
                                                         size_t n_slates, polopt_slate_reward_fn reward, void *user,
                                                         polopt_rng *rng, float *out_g, double *out_value);

/* >>learn ------------------------------------------------------------------------------------------------- */

/* The reward estimator r_hat(i, a) of the training objective (Sakhi et al. 2023, Eq. 6), asked for n items of context i at once.  It returns POLOPT_OK or an
   error that stops the computation; rewards must be finite. */
typedef polopt_result (*polopt_reward_fn)(void *user, uint32_t context, size_t n, const uint32_t *items,
                                          float *out_rewards);

/* Sets Y_i of items per context, in compressed rows: the items of context i are items[offsets[i] ..
   offsets[i+1]), sorted and distinct (polopt_sets_init sorts a copy).  They give the set reward
   r_hat(i, a) = 1[a in Y_i] (session completion, Sakhi et al. 2023, §5) with membership by binary search, and the relevant
   items of hit-rate@k and nDCG@k. */
typedef struct polopt_sets {
    size_t n;
    size_t *offsets; /* n + 1 */
    uint32_t *items;
    polopt_hooks hooks;
    polopt_error err;
} polopt_sets;

/* From n rows of the same compressed form (offsets, items), in any order, duplicates allowed.  hooks may be NULL. */
POLOPT_DEF polopt_result polopt_sets_init(polopt_sets *sets, size_t n, const size_t *offsets, const uint32_t *items,
                                          const polopt_hooks *hooks);
POLOPT_DEF void polopt_sets_free(polopt_sets *sets);
/* The set reward, as a polopt_reward_fn: user is a const polopt_sets *. */
POLOPT_DEF polopt_result polopt_sets_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                            float *out_rewards);

/* Logged bandit feedback as the reward estimator of training (Dudik, Langford & Li 2011): context i was logged with action a_i,
   propensity p_i and reward r_i, and
       r_hat(i, a) = r_M(a, x_i) + 1[a = a_i] (r_i - r_M(a_i, x_i)) / max(tau, p_i)
   is clipped DR with the dataset's reward callback as the model r_M, or clipped IPS when there is no callback
   (r_M = 0; tau = 0: plain IPS).  Such an r_hat is non-zero at one action, which a sampled gradient would almost
   never draw at large P, so the trainers add the logged action's term exactly: with c_i = (r_i - r_M(a_i, x_i)) /
   max(tau, p_i), its gradient is c_i pi(a_i | x_i) (beta_{a_i} - E_pi beta) / T, where SNIS estimates pi(a_i | x_i)
   = exp f(a_i) / Z_hat with Z_hat = (1/S) sum_s exp f(a_s) / q(a_s) (unbiased for Z) and E_pi beta from the same
   weighted draws. */
typedef struct polopt_feedback {
    const uint32_t *action;   /* n: a_i */
    const double *propensity; /* n: p_i in (0, 1] */
    const double *reward;     /* n: r_i */
    float tau;               /* clipping level in [0, 1]; 0: no clipping */
} polopt_feedback;

/* Learning from logged actions and their returns: the REINFORCE recommender of Chen et al. (2019).  A behaviour
   policy b chose a_t in context (state) s_t and the user's trajectory then earned the return R_t (discounted,
   polopt_discounted_returns).  The objective's gradient, with a weight w_t held constant (Chen et al. 2019, §3-4):
       sum_t w_t R_t grad log pi(a_t | s_t),
       NONE          w = 1                              REINFORCE as if the log were on-policy (its fixed point is
                                                        pi ~ r b: it learns the behaviour's biases)
       FIRST_ORDER   w = pi(a|s) / b(a|s)               the off-policy correction (their Eq. 4)
       TOP_K         w = pi / b * lambda_K,  lambda_K = K (1 - pi)^(K - 1)   (their Eq. 7-8): the derivative of
                                                        alpha = 1 - (1 - pi)^K, the chance that a is among K
                                                        independent draws from pi; K = 1 gives FIRST_ORDER back
   Variance control (§4.4): pi/b capped at cap (production used e^3), weights normalised by their batch mean,
   and a penalty kl * KL(pi || b_hat) towards the learned behaviour head.  pi(a_t | s_t) and grad log pi come from
   the trainer's estimator, so a step costs O(S L + log P) with SNIS: the catalogue is never scanned.  Without logged
   propensities, learn_behaviour trains b_hat (§4.2): a second softmax head over the same beta with its own theta,
   fitted by maximum likelihood to the logged actions, whose gradient never reaches pi's parameters. */
typedef enum polopt_correction {
    POLOPT_CORRECTION_NONE = 0,
    POLOPT_CORRECTION_FIRST_ORDER = 1,
    POLOPT_CORRECTION_TOP_K = 2
} polopt_correction;

typedef struct polopt_correction_config {
    polopt_correction kind; /* TOP_K */
    size_t K;               /* the slate size of TOP_K, >= 1; 16 */
    float cap;              /* pi/b is capped at cap (> 0); 0: no cap */
    int normalise;          /* 1: weights divided by their mean over the minibatch; 0 */
    float kl;               /* strength of the KL(pi || b_hat) penalty, >= 0 (needs learn_behaviour); 0 */
} polopt_correction_config;

/* The logged actions of a dataset's contexts and their returns. */
typedef struct polopt_logged_returns {
    const uint32_t *action;  /* n: a_t */
    const float *ret;        /* n: R_t */
    const float *propensity; /* n: b(a_t | s_t) in (0, 1], or NULL: the trainer's learned head b_hat (or, with
                                correction NONE, which has no weight, none at all) */
} polopt_logged_returns;

POLOPT_DEF polopt_correction_config polopt_correction_config_default(void);
/* The weights w_t above for n logged actions, from log pi(a_t | s_t) (<= 0) and b(a_t | s_t) in (0, 1].  hooks may
   be NULL (as for every function without an object: it only receives the message). */
POLOPT_DEF polopt_result polopt_correction_weights(const polopt_correction_config *config, size_t n,
                                                   const float *log_pi, const float *propensity, float *out_w,
                                                   const polopt_hooks *hooks);
/* R_t = r_t + gamma R_{t+1} within each trajectory: rows of the same trajectory id are consecutive and in time
   order.  gamma in [0, 1]; out_R may be reward (in place). */
POLOPT_DEF polopt_result polopt_discounted_returns(size_t n, const uint32_t *trajectory, const float *reward,
                                                   float gamma, float *out_R, const polopt_hooks *hooks);

/* Contexts and what to learn from them: a reward estimator (reward, feedback) or logged returns. */
typedef struct polopt_dataset {
    size_t n;                  /* contexts */
    const float *X;            /* n x D */
    size_t ldx;                /* leading dimension of X, >= D */
    polopt_reward_fn reward;   /* r_hat(i, a); with feedback: the model r_M, or NULL (r_M = 0) */
    void *reward_user;
    const polopt_sets *relevant;       /* optional: Y_i, for hit-rate@k and nDCG@k */
    const polopt_feedback *feedback;   /* optional: logged feedback, making r_hat clipped IPS or clipped DR */
    const polopt_logged_returns *returns; /* instead of reward and feedback: the REINFORCE objective above */
} polopt_dataset;

/* Called after every training step; never by the library otherwise.  Cheap to ignore. */
typedef struct polopt_progress {
    size_t epoch, step, steps_per_epoch;
    double reward;   /* mean estimated reward of the steps of this epoch so far (r_bar, or w R for returns) */
    double seconds;  /* processor time spent in this epoch so far */
    double wall_seconds; /* wall-clock time of the same (what a user with a stopwatch compares) */
    double ess;      /* mean effective sample size of the last step's weighed contexts (polopt_train_stats; S for
                        REINFORCE; 1 / sum pi^2 for EXACT), 0 when it weighed none */
    float epsilon;   /* the mixture weight used in the last step */
} polopt_progress;
typedef void (*polopt_progress_fn)(void *user, const polopt_progress *progress);

typedef struct polopt_trainer_config {
    polopt_estimator_config estimator; /* method, eps, K, S, ef, seed, and batch: the contexts of one step (its
                                          temperature is the policy's, its hooks these) */
    int warm_start;           /* 0: a full MIPS search for alpha_K at every visit (the paper); 1: keep each context's
                                 alpha_K (n x K ids of memory) and start the next visit's search from it (measured at
                                 P = 10^6, K = 256: recall 0.95 in 36 us against 0.97 in 167 us) */
    polopt_adam_config adam;  /* maximises; its lr is 1e-4 here, the paper's, not the 1e-3 of
                                 polopt_adam_config_default (Kingma & Ba's general default) */
    polopt_correction_config correction; /* for data with logged returns */
    int learn_behaviour;      /* 1: train a behaviour head b_hat (its own theta, same beta) by maximum likelihood on
                                 the logged actions, at every step; it stands in for missing propensities */
    polopt_adam_config behaviour_adam;   /* lr 1e-3 */
    polopt_progress_fn progress;
    void *progress_user;
    polopt_hooks hooks;
} polopt_trainer_config;

/* What a trainer measured over one epoch (or one call of polopt_trainer_embedding_gradient). */
typedef struct polopt_train_stats {
    size_t steps;
    double reward;     /* mean estimated reward (the r_bar of each context; w R with logged returns) */
    double seconds;    /* processor time */
    double wall_seconds; /* wall-clock time */
    double ess;        /* mean effective sample size per weighed context */
    size_t weighed;    /* contexts whose draws were weighed: SNIS leaves out those whose draws all earned 0 with a
                          model reward (their gradient is 0 whatever the weights); the others weigh every one */
    float epsilon;     /* mean eps (adaptive) */
    double weight_ess; /* logged returns: (sum w)^2 / sum w^2 of the correction weights, per context */
    double behaviour_log_lik; /* learn_behaviour: mean log b_hat(a_t | s_t) */
} polopt_train_stats;

typedef struct polopt_trainer {
    polopt_trainer_config config;
    polopt_policy *policy;
    const polopt_mips *index;  /* the item embeddings beta and the MIPS of the proposal */
    polopt_estimator est;      /* pi's (and b_hat's) probabilities and gradients */
    polopt_adam adam;
    polopt_policy behaviour;   /* learn_behaviour: b_hat */
    polopt_adam behaviour_adam;
    polopt_rng rng;            /* the shuffling */
    size_t epoch;
    /* a step's buffers, in one block */
    float *xb, *hb, *gb, *grad, *rewards, *gl, *hbb, *wb;
    uint32_t **warm;           /* warm_start: the rows of the batch's contexts in cache */
    void *block;
    uint32_t *order;
    size_t order_n;
    uint32_t *cache;           /* warm_start: each context's last alpha_K (then, with learn_behaviour, b_hat's) */
    const float *cache_key;    /* the dataset the cache belongs to (its X) */
    size_t cache_n;
    polopt_error err;
} polopt_trainer;

POLOPT_DEF polopt_trainer_config polopt_trainer_config_default(void);
/* A trainer for policy over the items of index.  The policy is updated in place; the index must outlive the
   trainer.  REINFORCE and EXACT allocate a batch x P score buffer. */
POLOPT_DEF polopt_result polopt_trainer_init(polopt_trainer *trainer, polopt_policy *policy, const polopt_mips *index,
                                             const polopt_trainer_config *config);
POLOPT_DEF void polopt_trainer_free(polopt_trainer *trainer);
/* One epoch: the contexts of data shuffled, in minibatches, one Adam step each: embed, estimate, form the
   parameter gradient X_B^T G / B, step.  A non-finite gradient or reward stops the epoch with POLOPT_ERR_NONFINITE
   and leaves the policy at its last good parameters. */
POLOPT_DEF polopt_result polopt_trainer_epoch(polopt_trainer *trainer, const polopt_dataset *data,
                                              polopt_train_stats *out_stats);
/* For a user-defined h: the gradient of each context's objective with respect to its user embedding (rows of H in,
   rows of out_G out, n x L), estimated with the trainer's method.  Backpropagate the G rows through your own model;
   the trainer's policy is not used or changed.  With logged returns and learn_behaviour, b_hat (a function of the
   contexts X, not of your h) takes one step on these contexts: your model receives only pi's gradient. */
POLOPT_DEF polopt_result polopt_trainer_embedding_gradient(polopt_trainer *trainer, const polopt_dataset *data,
                                                           size_t n, const uint32_t *contexts, const float *H,
                                                           float *out_G, polopt_train_stats *out_stats);
/* Gradients out, parameters in: the two halves of polopt_trainer_epoch's step, for a caller that combines gradients
   across processes (data-parallel training: each process computes the gradient of its share of a global minibatch,
   the gradients are summed, and each applies the same step, so theta stays identical everywhere; the library needs
   no MPI for it).  polopt_trainer_gradient: the gradient of the objective with respect to theta (D x L) summed over
   n contexts (1 <= n <= batch; divide by the global minibatch's size for the epoch's mean), into out_grad; the
   policy is not changed, and a trainer with learn_behaviour is refused (b_hat would take a step).
   polopt_trainer_apply: one Adam step with grad (finite; otherwise theta is left as it was). */
POLOPT_DEF polopt_result polopt_trainer_gradient(polopt_trainer *trainer, const polopt_dataset *data, size_t n,
                                                 const uint32_t *contexts, float *out_grad,
                                                 polopt_train_stats *out_stats);
POLOPT_DEF polopt_result polopt_trainer_apply(polopt_trainer *trainer, const float *grad);
/* Gradient fidelity: for n contexts, the method's gradient g (w.r.t. h) against the exact one: the mean cosine over
   the contexts where both are non-zero, and the pooled relative error sqrt(sum ||g - g_exact||^2 / sum
   ||g_exact||^2).  Pooled, a context whose exact gradient all but vanishes (a saturated softmax) adds its error
   without dividing by its own tiny norm (a per-context ratio reported 1e22 there).  When every exact gradient is
   zero the ratio is undefined: POLOPT_ERR_DOMAIN.  O(n P L). */
POLOPT_DEF polopt_result polopt_trainer_gradient_fidelity(polopt_trainer *trainer, const polopt_dataset *data,
                                                          size_t n, const uint32_t *contexts, double *out_cosine,
                                                          double *out_rel_error);

/* Evaluation (Sakhi et al. 2023, §5) of the greedy policy served by MIPS: R_test = mean r_hat(j, argmax_a f(a, x_j)), which
   with the set reward is (1/N) sum_j 1[argmax in Y_j]; and, when data->relevant is set, hit-rate@k (a relevant
   item among the top k) and nDCG@k (gains 1/log2(rank + 1), normalised by the ideal ordering).  A context whose
   search returns no item at all (a graph that reaches too few) scores reward 0 and no hit, and is counted in
   empty. */
typedef struct polopt_eval {
    double reward;  /* R_test */
    double hit_rate, ndcg;
    size_t k;
    double reward_se, hit_rate_se, ndcg_se; /* standard errors of the three means: sd / sqrt(n) over contexts */
    size_t empty;   /* contexts without any result */
} polopt_eval;

POLOPT_DEF polopt_result polopt_evaluate(const polopt_policy *policy, const polopt_mips *index,
                                         polopt_mips_scratch *scratch, const polopt_dataset *data, size_t k,
                                         size_t ef, polopt_eval *out);
/* The same with items that are never served to context i (row i of exclude, e.g. the items it has consumed): the
   argmax and the top k are taken over the others (polopt_policy_topk_excluding), so the scratch must allow
   ef >= k + the largest excluded set.  exclude NULL: polopt_evaluate. */
POLOPT_DEF polopt_result polopt_evaluate_excluding(const polopt_policy *policy, const polopt_mips *index,
                                                   polopt_mips_scratch *scratch, const polopt_dataset *data,
                                                   const polopt_sets *exclude, size_t k, size_t ef, polopt_eval *out);
/* The exact value of the stochastic policy, (1/n) sum_i sum_a pi(a | x_i) r_hat(i, a): O(n P L) and P rewards per
   context.  The ground truth for small catalogues (the synthetic generator gives r_hat exactly). */
POLOPT_DEF polopt_result polopt_policy_value(const polopt_policy *policy, const polopt_mips *index,
                                             const polopt_dataset *data, double *out_value);

/* >>lpi --------------------------------------------------------------------------------------------------- */

/* Local policy improvement (Liang & Vlassis, "Local Policy Improvement for Recommender Systems", 2023).  Logged
   (x_i, a_i, r_i) come from an unknown logging policy mu.  Rather than reweight by pi / mu (IPS), LPI maximises the
   expected reward minus beta_kl * KL(pi || mu) (their Eq. 7), whose unconstrained optimum is
       pi*(a | x)  ~  mu(a | x) exp(A_mu(x, a) / beta_kl),      A_mu(x, a) = r(x, a) - E_{a'~mu}[r(x, a')]
   and the logged actions, which are draws from mu, estimate it without any density ratio (their Eq. 8):
       L_LPI(pi) = (1/n) sum_i exp(A_hat(x_i, a_i) / beta_kl) log pi(a_i | x_i).
   (beta_kl is the paper's beta, the KL strength; in polopt beta names the item embeddings.)  Large beta_kl stays at mu,
   small beta_kl moves far.  Every objective of the paper is one weighted cross-entropy sum_i w_i log pi(a_i | x_i):
       plain cross-entropy      w = 1                         the maximum-likelihood estimate mu_hat of mu
       reward-weighted (Eq. 4)  w = r_i                       L_mu, a lower bound of the reward
       IPS (Eq. 9)              w = min(pi / mu_hat, 30) r_i  the weight held constant in the gradient
       LPI (Eq. 8)              w = exp(A_hat_i / beta_kl)
   and the trainer learns all four from logged returns (polopt_logged_returns, ret = the weight w, correction NONE;
   IPS: ret = r, correction FIRST_ORDER with cap 30 and mu_hat's propensities).  Its gradient, w grad log pi(a_i | x_i),
   comes from the estimator: exact at small P, SNIS with the eps-mixture at catalogue scale.
   The advantage comes from a reward model r_hat (the direct method); its baseline g(x) may be any function of x
   alone (the optimum is the same for every g, their §3.2): E_{mu_hat}[r_hat] makes A the advantage and L_LPI a lower
   bound of J(pi) - J(mu) (their Appendix A.2); max_a r_hat keeps every weight <= 1, which no small beta_kl can
   overflow. */
typedef enum polopt_lpi_baseline {
    POLOPT_LPI_MEAN = 0, /* g(x) = E_{a~mu_hat}[r_hat(x, a)], from the estimator's draws */
    POLOPT_LPI_MAX = 1   /* g(x) = max_a r_hat(x, a): needs an EXACT estimator (O(P) rewards per context) */
} polopt_lpi_baseline;

/* A_i = r_hat(ctx_i, a_i) - g(x_i) for n logged actions.  mu: an estimator over the catalogue, set here (in chunks of
   its batch) with mu_hat's user embeddings H_mu (n x L, e.g. polopt_policy_embed of mu_hat); its method decides how
   E_mu_hat is computed (SNIS, REINFORCE or EXACT).  reward(reward_user, ctx_i, ...) is r_hat, called with the draws
   and the logged action of context ctx_i = contexts[i] (contexts NULL: ctx_i = i). */
POLOPT_DEF polopt_result polopt_lpi_advantages(polopt_estimator *mu, size_t n, const float *H_mu,
                                               const uint32_t *contexts, const uint32_t *actions,
                                               polopt_reward_fn reward, void *reward_user,
                                               polopt_lpi_baseline baseline, float *out_advantage);
/* The LPI weights w_i = exp(A_i / beta_kl), beta_kl > 0.  A weight past FLT_MAX is an error (POLOPT_ERR_DOMAIN) that
   names the entry: shift the advantages by the maximum (POLOPT_LPI_MAX) or raise beta_kl.  out_w may be advantage. */
POLOPT_DEF polopt_result polopt_lpi_weights(size_t n, const float *advantage, float beta_kl, float *out_w,
                                            const polopt_hooks *hooks);

/* How far a learned policy moved from the logging policy (Liang & Vlassis 2023, §4): over contexts,
       KL(p || q) = E_p[log p - log q]       and      JS(p || q) = KL(p || m) / 2 + KL(q || m) / 2,  m = (p + q) / 2,
   JS in [0, ln 2].  Per context, from two estimators set with the same contexts: EXACT sums over all P items (O(P L));
   SNIS estimates each expectation from the weighted draws and each log p, log q with log Z_hat (O(S L + log P)),
   biased by O(1/S) like every ratio estimate, and so converging to the exact value as S grows. */
typedef struct polopt_divergence {
    double kl, js;       /* means over the contexts */
    double kl_se, js_se; /* their standard errors (sd / sqrt(n)) */
    size_t n;
} polopt_divergence;

/* KL(p || q) and JS(p || q) of context c of p and q (either output may be NULL). */
POLOPT_DEF polopt_result polopt_estimator_divergence(const polopt_estimator *p, const polopt_estimator *q, size_t c,
                                                     double *out_kl, double *out_js);
/* The mean KL(p || q) and JS(p || q) over n contexts (rows of X, ldx >= D) of two policies over the items of index,
   each with its own temperature; config (NULL: EXACT) chooses the method, S, eps and the batch. */
POLOPT_DEF polopt_result polopt_policy_divergence(const polopt_policy *p, const polopt_policy *q,
                                                  const polopt_mips *index, const polopt_estimator_config *config,
                                                  size_t n, const float *X, size_t ldx, polopt_divergence *out);

/* Two reward callbacks for the paper's metrics with polopt_evaluate, which scores the greedy action a* of each
   context (Liang & Vlassis 2023, §4.1):
     polopt_action_reward: r_hat(i, a) = r_i 1[a = a_i] (user = const polopt_action_task *): polopt_evaluate's
       reward is then AR@1 = (1/n) sum_i r_i 1[a_i = a*_i];
     polopt_linear_reward: r_hat(i, a) = u_i^T beta_a + bias (user = const polopt_linear_task *): a linear reward
       model, or an action-value Q(x, a) = u(x)^T beta_a; as the reward of polopt_evaluate, the imputed reward of
       the greedy action, iAR@1 (any other polopt_reward_fn, e.g. polopt_synth_reward, serves as well). */
typedef struct polopt_action_task {
    const uint32_t *action; /* n: a_i */
    const float *reward;    /* n: r_i */
    size_t n;
} polopt_action_task;
typedef struct polopt_linear_task {
    const float *U;     /* n x L: one row u_i per context */
    const float *items; /* P x L: beta (e.g. an index's vectors) */
    size_t n, P, L;
    float bias;
} polopt_linear_task;
POLOPT_DEF polopt_result polopt_action_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                              float *out_rewards);
POLOPT_DEF polopt_result polopt_linear_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                              float *out_rewards);

/* >>qhead ------------------------------------------------------------------------------------------------- */

/* An action-value head for LPI-RL (Liang & Vlassis, "Local Policy Improvement for Recommender Systems", 2023, §3.3):
       Q(x, a) = u(x)^T beta_a,     u(x) = theta^T x,     theta in R^{D x L}
   over the same item embeddings beta (the MIPS index) as the policy, so that the maximum over the catalogue in the
   temporal-difference target is one MIPS query.  It is trained on logged transitions (x_t, a_t, r_t, x_{t+1}, done_t)
   by the Q-learning loss of their Eq. 11,
       L_TD(theta) = (1/n) sum_t (Q(x_t, a_t) - y_t)^2,     y_t = r_t + gamma (1 - done_t) max_a' Q_target(x_{t+1}, a')
   where the target y_t is held constant in the gradient.  Two standard devices keep this stable:
     target network (Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015): y_t is
       computed with a copy of theta (the target head) refreshed every target_every steps, so the regression does not
       chase itself;
     double Q-learning (van Hasselt, Guez & Silver, "Deep Reinforcement Learning with Double Q-learning", AAAI 2016):
       the online head chooses a' = argmax_a Q_online(x_{t+1}, a) and the target head values it, y_t = r_t + gamma
       (1 - done_t) Q_target(x_{t+1}, a'), which removes most of the upward bias of max over noisy estimates (with
       P = 10^6 items the max of a linear Q is far from its mean).  Liang & Vlassis (§4.2) found it "very helpful".
   The gradient of (1/2n) sum_t delta_t^2, delta_t = Q(x_t, a_t) - y_t, is X^T G / n with G_t = delta_t beta_{a_t}
   (one gemm); one Adam step follows.  A step costs O(n D L) for the embeddings and the gradient plus n MIPS queries
   (two embeddings of x_{t+1} with double Q).
   What LPI-RL does with it: A(x, a) = Q(x, a) - E_{a~mu_hat}[Q(x, a)], the advantage of the logging policy's head with
   its gradient cut, through polopt_lpi_advantages with reward polopt_linear_reward over U = polopt_policy_embed(
   &q.online, X); then w = exp(A / beta_kl) (polopt_lpi_weights) weights the cross-entropy of the policy head (their
   Eq. 10 with the TD term on its own head).  With the linear h of this library the two heads share no learned
   backbone, so the TD loss changes pi only through these weights, and the paper's lambda, which balances the two
   losses, has nothing to balance: each head has its own parameters and its own Adam, whose steps do not depend on
   the scale of the gradient.  lambda matters only where the heads share parameters.
   Note what the max assumes: Q-learning estimates the optimal Q*, not Q_mu, and off-policy the max also ranges over
   items the log never shows in that state, whose values only the linear form extrapolates (a source of optimism that
   double Q reduces but does not remove). */
typedef struct polopt_qhead_config {
    float gamma;             /* discount in [0, 1); 0.9 */
    int double_q;            /* 1: double Q-learning (the default); 0: y uses max_a Q_target(x', a) */
    size_t target_every;     /* TD steps between copies of the online head into the target head, >= 1; 100 */
    size_t ef;               /* MIPS beam of the max's search (HNSW; an exact index ignores it), >= 1; 64 */
    size_t batch;            /* the most transitions one polopt_qhead_td_step takes; 256 */
    polopt_adam_config adam; /* minimises the TD loss; lr 1e-3 */
    polopt_init init;        /* RANDOM (IDENTITY needs D = L) */
    float init_scale;        /* 0.01: Q starts near 0, the scale of its first targets */
    uint64_t seed;           /* for RANDOM; 1 */
    polopt_hooks hooks;
} polopt_qhead_config;

typedef struct polopt_qhead {
    polopt_qhead_config config;
    const polopt_mips *index;  /* beta (P x L) and the MIPS of the max */
    polopt_policy online;      /* theta, trained: u(x) = theta^T x (its temperature is 1 and unused) */
    polopt_policy target;      /* the copy that values the TD targets */
    polopt_adam adam;
    polopt_mips_scratch scratch;
    /* a step's buffers, one block, batch rows each: */
    float *u;                  /* batch x L: u(x_t), then G_t = delta_t beta_{a_t} */
    float *u_next;             /* batch x L: u_target(x_{t+1}) */
    float *u_choose;           /* batch x L: u_online(x_{t+1}) (double Q) */
    float *q_next;             /* batch: the max's scores */
    uint32_t *a_next;          /* batch: the max's items */
    float *grad;               /* D x L: the gradient of the last step (its (1/2n) sum delta^2) */
    void *block;
    size_t steps;              /* TD steps taken */
    polopt_error err;
} polopt_qhead;

POLOPT_DEF polopt_qhead_config polopt_qhead_config_default(void);
/* A head over the items of index (which must outlive it) for contexts of D features; config NULL: the defaults.  The
   target head starts as a copy of the online head.  Allocates everything a step needs. */
POLOPT_DEF polopt_result polopt_qhead_init(polopt_qhead *q, const polopt_mips *index, size_t D,
                                           const polopt_qhead_config *config);
POLOPT_DEF void polopt_qhead_free(polopt_qhead *q);
/* One Adam step on the TD loss of n transitions, 1 <= n <= config.batch (Liang & Vlassis 2023, Eq. 11): rows of X and
   X_next (leading dimensions ldx, ldx_next >= D, finite; a terminal transition's x_{t+1} is never used but must be
   finite, e.g. x_t again), actions below P, finite rewards, done in {0, 1}.  out_loss (may be NULL): the mean squared
   TD error before the step.  Every target_every steps the target head becomes a copy of the online head.  A
   non-finite target or gradient (POLOPT_ERR_NONFINITE) leaves every parameter untouched.  Allocates nothing. */
POLOPT_DEF polopt_result polopt_qhead_td_step(polopt_qhead *q, size_t n, const float *X, size_t ldx,
                                              const uint32_t *actions, const float *rewards, const float *X_next,
                                              size_t ldx_next, const unsigned char *done, double *out_loss);
/* Q(x_i, a_i) of the online head for n contexts (any n, in chunks of config.batch) into out_q.  O(n D L). */
POLOPT_DEF polopt_result polopt_qhead_values(polopt_qhead *q, size_t n, const float *X, size_t ldx,
                                             const uint32_t *actions, float *out_q);
/* Copy the online head into the target head now (fitted Q-iteration calls it after each regression). */
POLOPT_DEF polopt_result polopt_qhead_update_target(polopt_qhead *q);

/* >>logged ------------------------------------------------------------------------------------------------ */

/* Logged bandit feedback: rounds i with context features x_i, the action a_i the logging policy took,
   its propensity p_i (the logging probability of a_i, at the row's slot), the reward r_i and, with slates, the
   slot.  Slates follow the Open Bandit Pipeline: one row per (impression, slot), every estimate a mean over rows. */
typedef struct polopt_logged {
    size_t n, capacity;      /* rounds, and rounds the arrays have room for */
    size_t dim;              /* features per round */
    size_t n_actions;        /* actions are below this */
    size_t n_positions;      /* slots are below this (1 without slates) */
    float *X;                /* n x dim */
    uint32_t *action, *position;
    double *propensity, *reward; /* double: a propensity such as 1/34 is not a float, and off-policy estimates are
                                    compared with float64 references to the last digits */
    polopt_hooks hooks;
    polopt_error err;
} polopt_logged;

POLOPT_DEF void polopt_logged_free(polopt_logged *data);

/* Reading a CSV log with a header row, by column name.  Fields are comma-separated; a field in double quotes may
   hold commas and "" (not line breaks).  Every row is checked and a failure names the line and the column: unknown
   action, propensity outside (0, 1], a value that is not a finite number, a missing column, a row with the wrong
   number of fields.  Numeric feature columns are copied; a categorical column becomes max_levels one-hot features,
   its levels numbered in order of first appearance (so a stream has a fixed dimension from its first row). */
typedef struct polopt_csv_config {
    const char *action, *propensity, *reward; /* column names (required) */
    const char *position;                     /* the slot column, or NULL: no slates */
    const char *const *numeric;               /* feature columns read as numbers */
    size_t n_numeric;
    const char *const *categorical;           /* feature columns one-hot encoded */
    size_t n_categorical;
    size_t max_levels;    /* one-hot width of each categorical column; 32 */
    size_t n_actions;     /* actions must be below this; 0: no limit (the data's maximum + 1) */
    size_t n_positions;   /* slots must be below this; 0: no limit */
    long position_base;   /* the label of the first slot (1 in the Open Bandit Dataset; 0 by default) */
    polopt_hooks hooks;
} polopt_csv_config;

#define POLOPT_CSV_LEVEL_BYTES 64 /* a categorical level's name in polopt_csv_reader.levels, with its zero byte */

typedef struct polopt_csv_reader {
    polopt_csv_config config;
    void *file;          /* the FILE being read */
    const char *path;
    char *line, *block;  /* the current line; the file read a block at a time */
    size_t line_cap, line_no, n_columns, dim, block_at, block_len;
    long *columns;      /* the column of action, propensity, reward, position, then numeric and categorical */
    size_t *field_at;   /* where each field of the current line starts */
    char *levels;       /* n_categorical x max_levels names of POLOPT_CSV_LEVEL_BYTES bytes, in order of first
                           appearance: level l of column k at (k * max_levels + l) * POLOPT_CSV_LEVEL_BYTES */
    size_t *n_levels;
    polopt_error err;
} polopt_csv_reader;

POLOPT_DEF polopt_csv_config polopt_csv_config_default(void);
/* Open a CSV log and read its header.  The reader keeps path and the column names of config (not copies): they must
   outlive it.  Numbers are read by strtod, so a program that sets LC_NUMERIC to a decimal-comma locale must set
   it back to "C" while reading. */
POLOPT_DEF polopt_result polopt_csv_open(polopt_csv_reader *reader, const char *path, const polopt_csv_config *config);
/* Append up to max_rows rows to data (set up by a previous read, or zeroed: it is then given the reader's dimension
   and hooks).  *out_rows: rows appended, 0 at the end of the file.  On an error, data keeps the rows before it.
   To stream a file in fixed memory, set data->n = 0 before each read: the arrays are reused. */
POLOPT_DEF polopt_result polopt_csv_read(polopt_csv_reader *reader, polopt_logged *data, size_t max_rows,
                                         size_t *out_rows);
POLOPT_DEF void polopt_csv_close(polopt_csv_reader *reader);
/* Two logs in one feature layout (a training log and an evaluation log, say): levels are numbered per file, so the
   same level gets different one-hot columns in two files read apart.  Called after polopt_csv_open and before the
   first read, this starts reader's levels from those from has seen so far: each keeps its column, and a level new
   to this file takes the next free one (the rows read by from have 0 there).  Both readers must name the same
   numeric and categorical columns in the same order, with the same max_levels. */
POLOPT_DEF polopt_result polopt_csv_share_levels(polopt_csv_reader *reader, const polopt_csv_reader *from);
/* The whole file at once: open, read, close.  On failure data is empty and data->err says why. */
POLOPT_DEF polopt_result polopt_logged_load_csv(polopt_logged *data, const char *path, const polopt_csv_config *config);

/* >>interactions ------------------------------------------------------------------------------------------ */

/* A user's own interaction log, as a sparse matrix: who (a session, a basket or a user) interacted with which item,
   read from a CSV or TSV file with a header row, such as
       session,item            or      user<TAB>item<TAB>weight
       s17,apple                       42<TAB>B00017<TAB>3
   Ids are any strings (up to 4,095 bytes); each becomes a dense index in order of first appearance, and both
   directions are kept (polopt_interactions_session_name / _item_name, polopt_interactions_find_session / _item).
   A pair seen twice counts once (the first weight is kept; stats.duplicates says how many were dropped).  The
   file is read in blocks of 64 KiB and every row is checked: a failure names the line and the column (a missing
   field, an empty id, a weight that is not a finite number > 0, a row with the wrong number of fields).
   Filters drop sessions with fewer than min_session_items distinct items and items in fewer than
   min_item_sessions sessions; with repeat_filters, until neither drops anything (every survivor then meets both
   rules: the (min_session_items, min_item_sessions)-core, as basket data sets are often published).
   The result is compressed rows: session s holds items[offsets[s] .. offsets[s + 1]), increasing, distinct. */
typedef struct polopt_interactions_config {
    const char *session;      /* the session (or user) column's name; "session" */
    const char *item;         /* the item column's name; "item" */
    const char *weight;       /* the weight column's name, or NULL: every interaction weighs 1 (the default) */
    char delimiter;           /* ',' or '\t'; 0: '\t' for a path ending in ".tsv", ',' otherwise (the default) */
    size_t min_session_items; /* >= 1; 1: no session dropped */
    size_t min_item_sessions; /* >= 1; 1: no item dropped */
    int repeat_filters;       /* 1: filter until nothing changes (the default); 0: sessions once, then items once */
    polopt_hooks hooks;
} polopt_interactions_config;

/* What reading and filtering did. */
typedef struct polopt_interactions_stats {
    size_t rows;              /* data rows read */
    size_t duplicates;        /* pairs dropped as repeats */
    size_t dropped_sessions;  /* by the filters */
    size_t dropped_items;
    size_t filter_rounds;     /* passes of the two filters */
} polopt_interactions_stats;

typedef struct polopt_interactions {
    size_t n_sessions, n_items, nnz;
    size_t *offsets;          /* n_sessions + 1 */
    uint32_t *items;          /* nnz item indices */
    float *weights;           /* nnz weights, or NULL: all 1 */
    char *names;              /* every id, NUL-terminated, back to back: the sessions' in order, then the items' */
    size_t names_bytes;
    size_t *session_names;    /* n_sessions: where each session's id starts in names */
    size_t *item_names;       /* n_items */
    uint32_t *session_table;  /* open addressing from an id to its index (built on load, not saved) */
    uint32_t *item_table;
    size_t session_mask, item_mask;
    polopt_interactions_stats stats;
    polopt_hooks hooks;
    polopt_error err;
} polopt_interactions;

POLOPT_DEF polopt_interactions_config polopt_interactions_config_default(void);
/* Read the log at path.  On failure m is zeroed and m->err names the line and column of the fault. */
POLOPT_DEF polopt_result polopt_interactions_load_csv(polopt_interactions *m, const char *path,
                                                      const polopt_interactions_config *config);
/* The same from n integer pairs (session[i], item[i]) and weights (NULL: 1) held in memory: the ids become their
   decimal strings.  config NULL: the defaults (its column names and delimiter are not used). */
POLOPT_DEF polopt_result polopt_interactions_init(polopt_interactions *m, size_t n, const uint32_t *session,
                                                  const uint32_t *item, const float *weight,
                                                  const polopt_interactions_config *config);
POLOPT_DEF void polopt_interactions_free(polopt_interactions *m);
/* The id of session s or item a as read, or NULL when out of range. */
POLOPT_DEF const char *polopt_interactions_session_name(const polopt_interactions *m, size_t s);
POLOPT_DEF const char *polopt_interactions_item_name(const polopt_interactions *m, size_t a);
/* The index of an id, or POLOPT_NO_ITEM when the log does not hold it (not an error). */
POLOPT_DEF polopt_result polopt_interactions_find_session(const polopt_interactions *m, const char *name,
                                                          uint32_t *out_index);
POLOPT_DEF polopt_result polopt_interactions_find_item(const polopt_interactions *m, const char *name,
                                                       uint32_t *out_index);
/* Files of the library's discipline (a checksummed header and payload, written atomically): the matrix and its ids,
   so that a large log is parsed once. */
POLOPT_DEF polopt_result polopt_interactions_save(const polopt_interactions *m, const char *path,
                                                  polopt_error *out_err);
POLOPT_DEF polopt_result polopt_interactions_save_buffer(const polopt_interactions *m, void *buffer,
                                                         size_t buffer_size, size_t *out_size, polopt_error *out_err);
POLOPT_DEF polopt_result polopt_interactions_load(polopt_interactions *m, const char *path,
                                                  const polopt_hooks *hooks);
POLOPT_DEF polopt_result polopt_interactions_load_buffer(polopt_interactions *m, const void *buffer, size_t size,
                                                         const polopt_hooks *hooks);

/* >>svd --------------------------------------------------------------------------------------------------- */

/* A sparse matrix in compressed rows, as a view of arrays the caller owns: row i holds the columns
   cols[offsets[i] .. offsets[i + 1]) with values (NULL: every value 1).  polopt_interactions_matrix gives the view of
   a log, polopt_sets (offsets, items) that of sets. */
typedef struct polopt_csr {
    size_t n_rows, n_cols;
    const size_t *offsets; /* n_rows + 1 */
    const uint32_t *cols;  /* below n_cols */
    const float *values;   /* or NULL: all 1 */
} polopt_csr;

/* The view of a log: sessions x items, its weights (or ones). */
POLOPT_DEF polopt_csr polopt_interactions_matrix(const polopt_interactions *m);
/* The view of sets as rows of ones over n_cols columns. */
POLOPT_DEF polopt_csr polopt_sets_matrix(const polopt_sets *sets, size_t n_cols);

/* The truncated SVD A ~ U diag(s) V^T of rank k of a sparse m x n matrix, by randomized subspace iteration (Halko,
   Martinsson & Tropp, "Finding Structure with Randomness: Probabilistic Algorithms for Constructing Approximate
   Matrix Decompositions", SIAM Review 53(2), 2011: Algorithm 4.4, then the direct SVD of Algorithm 5.1):
     1. Omega: n x l Gaussian, l = k + oversample;  Y = A Omega;  Q = orth(Y)                     (range finder)
     2. power_iters times: Q~ = orth(A^T Q), Q = orth(A Q~)   (each pass sharpens the spectrum by (s_j / s_1)^2;
                                                               orthonormalising between passes keeps the small
                                                               directions from drowning in rounding: their §4.5)
     3. B^T = A^T Q (n x l);  B^T = Q2 R (orth again, R = Q2^T B^T, l x l);  R = W diag(s) Z^T by one-sided Jacobi
        (Hestenes), in double;  then A ~ Q B = (Q Z) diag(s) (Q2 W)^T: V = Q2 W, U = Q Z, the top k kept.
   orth orthonormalises through the l x l Gram matrix (Y^T Y = E diag(lambda) E^T by Jacobi, Y <- Y E
   diag(lambda)^(-1/2)), twice as a rule (the second pass corrects the first's rounding): the big products are
   gemms, and a direction with lambda below 1e-7 of the largest (dependent to float precision: a matrix of rank
   below l) is replaced by a random one, so Q always has l orthonormal columns.  The expected error is close to the
   best rank-k error when the spectrum decays (their Theorem 10.6); the power passes pay for slow decay, which
   sparse interaction matrices have (measured on 25,546 Debian package baskets x 17,840 items, rank 64, where
   s_64 / s_1 = 0.11: the defaults give singular values within 0.5% of a 30-pass reference, q = 2 within 4%, in
   0.6 s).  Cost: (2 q + 2) passes over the nonzeros of l floats each, O(nnz l), and O((m + n) l^2) in gemms;
   memory (m + 2 n + max(m, n)) l floats.
   Signs: the largest entry of each column of V is positive (so a result does not depend on the random start's
   sign). */
typedef struct polopt_svd_config {
    size_t rank;          /* k, >= 1 and <= min(m, n) (required) */
    size_t oversample;    /* p: extra random directions; 20 */
    size_t power_iters;   /* q: passes of step 2; 6 */
    uint64_t seed;        /* the Gaussian start; 1 */
    polopt_hooks hooks;
} polopt_svd_config;

POLOPT_DEF polopt_svd_config polopt_svd_config_default(size_t rank);
/* out_s: k singular values, decreasing; out_V: n x k right singular vectors (the columns' factors, e.g. items),
   row-major; out_U: m x k left singular vectors, or NULL.  Values must be finite. */
POLOPT_DEF polopt_result polopt_svd_sparse(const polopt_csr *A, const polopt_svd_config *config, float *out_s,
                                           float *out_V, float *out_U);
/* Embeddings from the factors: out[i][j] = V[i][j] * s[j]^alpha (n x k; alpha = 1/2 splits the singular values
   evenly between the two sides, as the session-completion experiments do; out may be V). */
POLOPT_DEF polopt_result polopt_svd_embed(size_t n, size_t k, const float *V, const float *s, double alpha,
                                          float *out);

/* >>completion -------------------------------------------------------------------------------------------- */

/* The session-completion protocol of Sakhi, Rohde & Gilotte (2023, §5), on a log of your own: sessions (baskets,
   users) are split at random into train, validation and test; the items of each session into the observed X and
   the held-out Y.  A policy sees the context x = the mean of beta over X and earns the set reward 1[a in Y]; the
   item embeddings beta come from the truncated SVD of the training sessions' observed halves, as in the paper
   (polopt_sets_matrix(&split->observed[POLOPT_PART_TRAIN], n_items), then polopt_svd_sparse and polopt_svd_embed),
   or of the training sessions whole (polopt_completion_matrix: both halves are training data, and fewer items are
   left out); an item outside the SVD's input has a zero row.  The seed fixes both splits.  Each part's observed
   and held-out sets are polopt_sets in the order of its sessions, ready as the exclusion and the reward of
   evaluation (polopt_completion_dataset).
   Of a session of n >= 2 items, X takes floor(observed_fraction n) of a random order, at least 1 and at most n - 1
   (with 1/2, the held-out half is the larger one for an odd n, as the usual items[:n // 2] split has it);
   a session of one item cannot be split and is skipped (counted). */
typedef enum polopt_part { POLOPT_PART_TRAIN = 0, POLOPT_PART_VAL = 1, POLOPT_PART_TEST = 2 } polopt_part;

typedef struct polopt_completion_config {
    double val_fraction;      /* of the sessions, in [0, 1); 0.1 */
    double test_fraction;     /* in [0, 1), val + test < 1; 0.1 */
    double observed_fraction; /* of each session's items, in X, in (0, 1); 0.5 */
    uint64_t seed;            /* 1 */
    polopt_hooks hooks;
} polopt_completion_config;

typedef struct polopt_completion {
    size_t n_items;           /* of the log */
    size_t n[3];              /* sessions in each part */
    uint32_t *sessions[3];    /* their indices in the log, increasing */
    polopt_sets observed[3];  /* X: row j for session sessions[part][j] */
    polopt_sets held_out[3];  /* Y */
    polopt_sets whole[3];     /* X and Y together: the sessions' items */
    size_t skipped;           /* sessions of a single item */
    polopt_hooks hooks;
    polopt_error err;
} polopt_completion;

POLOPT_DEF polopt_completion_config polopt_completion_config_default(void);
POLOPT_DEF polopt_result polopt_completion_init(polopt_completion *split, const polopt_interactions *log,
                                                const polopt_completion_config *config);
POLOPT_DEF void polopt_completion_free(polopt_completion *split);
/* The sessions of a part, whole, as a sparse sessions x items matrix of ones: an SVD's input for the training part
   (polopt_sets_matrix(&split->observed[part], split->n_items) gives the observed halves alone, the paper's input). */
POLOPT_DEF polopt_csr polopt_completion_matrix(const polopt_completion *split, polopt_part part);
/* The contexts of a part: row j = the mean of beta (n_items x L) over the observed items of its session j, into
   out_X (n[part] x L). */
POLOPT_DEF polopt_result polopt_completion_contexts(const polopt_completion *split, polopt_part part,
                                                    const float *beta, size_t L, float *out_X);
/* The dataset of a part with contexts X (n[part] rows, leading dimension ldx): the set reward of its held-out
   items (polopt_sets_reward), which are also its relevant items for hit-rate and nDCG.  Evaluate it with
   polopt_evaluate (the greedy action over all items: R@1) or with polopt_evaluate_excluding and
   &split->observed[part] (the observed items never recommended: R@1, HR@k and nDCG@k ex-X), and
   polopt_policy_value (E_pi[r], exact). */
POLOPT_DEF polopt_dataset polopt_completion_dataset(const polopt_completion *split, polopt_part part, const float *X,
                                                    size_t ldx);

/* >>ope --------------------------------------------------------------------------------------------------- */

/* Off-policy evaluation: the value of a target policy pi from data logged by another policy.  Per row, with
   w_i = pi(a_i | x_i) / p_i (the weight at the row's own slot), a reward model r_M, q_i = r_M(a_i, x_i) and
   dm_i = sum_a pi(a | x_i) r_M(a, x_i) / sum_a pi(a | x_i) (the model's mean under pi, normalised as the Open
   Bandit Pipeline does; where pi sums to one the two definitions agree), and lambda each estimator's level:
       IPS          (1/n) sum w_i r_i                                      [Horvitz & Thompson 1952]
       clipped IPS  (1/n) sum min(w_i, lambda) r_i                         [Strehl et al. 2010]
       SNIPS        sum w_i r_i / sum w_i                                  [Swaminathan & Joachims 2015]
       SG-IPS       (1/n) sum w_i / (1 - lambda + lambda w_i) r_i          [Metelli, Russo & Restelli 2021: the power
                                                                           mean correction, lambda in [0, 1]]
       DM           (1/n) sum dm_i                                         [Beygelzimer & Langford 2009]
       DR           (1/n) sum [dm_i + w_i (r_i - q_i)]                     [Dudik, Langford & Li 2011, Eq. 3]
       clipped DR   (1/n) sum [dm_i + min(w_i, lambda) (r_i - q_i)]
       SNDR         (1/n) sum dm_i + sum w_i (r_i - q_i) / sum w_i
       Switch-DR    (1/n) sum [dm_i + 1[w_i <= lambda] w_i (r_i - q_i)]    [Wang, Agarwal & Dudik 2017], in the
                                                                           Open Bandit Pipeline's form [Saito et al. 2021]
       DRos         (1/n) sum [dm_i + lambda w_i / (w_i^2 + lambda) (r_i - q_i)]   [Su et al. 2020: optimistic shrinkage;
                                                                           lambda = 0 is DM, infinity is DR]
       SG-DR        (1/n) sum [dm_i + w_i / (1 - lambda + lambda w_i) (r_i - q_i)] [Metelli, Russo & Restelli 2021]
   Everything is in double precision: propensities, rewards, weights, model values, pi at the logged action, and the
   sums (compensated, Neumaier 1974), so a log given in float64 reproduces a float64 reference to the last digits.
   Each estimate comes with:
     - a standard error: the sample standard deviation of its row terms over sqrt n (divisor n - 1, as for every
       estimator); for SNIPS and SNDR the delta method, whose influence function also accounts for the estimated
       mean weight (the Open Bandit Pipeline instead holds the mean weight fixed in its row values; the two agree
       to first order);
     - a bootstrap percentile interval and the bootstrap mean beside it.  The bootstrap is Poisson: each row enters
       each of B resamples with a Poisson(1) count, which needs no stored rows, so a log larger than memory can be
       evaluated as it streams;
     - the effective sample size (sum v)^2 / sum v^2 of the weights v it uses, and the level lambda it used.
   The report also holds the weight statistics a practitioner reads first: min, max and mean of w (the mean should be
   near 1 when the log covers pi's support) and how many weights exceed 2, 5, 10 and 20.

   Tuning the levels from the data (config.tune), as the Open Bandit Pipeline does: for each estimator with a level,
   each lambda of a grid is scored on the log itself and the best is used.
     POLOPT_TUNE_MSE    the estimated mean squared error (Su et al. 2020): var(row terms) / n + B^2, with B =
                        |mean((w - v)(r - q))| (the bias against the same estimator with the raw weight w) plus the
                        high-probability terms sqrt(2 mean(w^2) ln(2/delta) / n) + 2 max(w) ln(2/delta) / (3 n).
     POLOPT_TUNE_SLOPE  SLOPE (Su, Srinath & Krishnamurthy 2020; Tucker & Lee 2021): the levels ordered from the widest one-sided
                        interval c = t_{n-1}(1 - delta) sd / sqrt(n - 1) down; a level is kept while its estimate is
                        within c_i + (sqrt 6 - 1) c_j of every kept one; the last kept level wins.
   Tuning needs every row at once (4 doubles a row are kept); without it the evaluation streams. */
typedef enum polopt_ope_estimator {
    POLOPT_OPE_IPS = 0,
    POLOPT_OPE_CLIPPED_IPS,
    POLOPT_OPE_SNIPS,
    POLOPT_OPE_SG_IPS,
    POLOPT_OPE_DM, /* this one and those after it need a reward model */
    POLOPT_OPE_DR,
    POLOPT_OPE_CLIPPED_DR,
    POLOPT_OPE_SNDR,
    POLOPT_OPE_SWITCH_DR,
    POLOPT_OPE_DROS,
    POLOPT_OPE_SG_DR,
    POLOPT_OPE_COUNT
} polopt_ope_estimator;

POLOPT_DEF const char *polopt_ope_name(polopt_ope_estimator estimator);
/* 1 if the estimator has a level lambda (clipped IPS and DR, SG-IPS and SG-DR, Switch-DR, DRos). */
POLOPT_DEF int polopt_ope_has_level(polopt_ope_estimator estimator);

typedef enum polopt_ope_tuning { POLOPT_TUNE_NONE = 0, POLOPT_TUNE_MSE = 1, POLOPT_TUNE_SLOPE = 2 } polopt_ope_tuning;

typedef struct polopt_ope_config {
    double lambda[POLOPT_OPE_COUNT]; /* each estimator's level, by its index (unused where it has none):
                                        clipped IPS and DR: the weight cap (> 0, HUGE_VAL: none); 10
                                        Switch-DR: the model is used where w > lambda (>= 0); 10
                                        DRos: the shrinkage (>= 0, HUGE_VAL: none); 100
                                        SG-IPS, SG-DR: in [0, 1] (0: IPS or DR); 0.1 */
    polopt_ope_tuning tune;          /* NONE: the levels above; MSE or SLOPE: chosen from the grids */
    const double *grid;              /* levels tried for clipping, switching and DRos (NULL: 1, 2, 5, 10, 20, 50,
                                        100, 500, 1000, 5000, 10^4 and HUGE_VAL) */
    size_t grid_n;                   /* at most 64 (so is sg_grid_n) */
    const double *sg_grid;           /* levels tried for SG-IPS and SG-DR, in [0, 1] (NULL: 0, 0.01, 0.02, 0.05,
                                        0.1, 0.2, 0.5, 1) */
    size_t sg_grid_n;
    double delta;                    /* the tuning's confidence parameter, in (0, 1); 0.05 */
    size_t bootstrap;                /* resamples; 200 (0: no interval) */
    double confidence;               /* 0.95 */
    uint64_t seed;                   /* 1 */
    polopt_hooks hooks;
} polopt_ope_config;

typedef struct polopt_ope_estimate {
    int available;        /* 0 for the model-based estimators when no model was given */
    double value, std_error, ci_low, ci_high, boot_mean, ess;
    double lambda;        /* the level it used, given or tuned (0 where it has none) */
} polopt_ope_estimate;

typedef struct polopt_ope_weight_stats {
    size_t n;             /* rows */
    double min, max, mean;
    size_t above[4];      /* rows with w > 2, 5, 10 and 20 */
} polopt_ope_weight_stats;

typedef struct polopt_ope_report {
    polopt_ope_estimate est[POLOPT_OPE_COUNT]; /* by polopt_ope_estimator */
    polopt_ope_weight_stats weights;
} polopt_ope_report;

/* The streaming accumulator (no tuning: the levels of its config): running sums, and the same sums for each
   bootstrap resample. */
#define POLOPT_OPE_TERMS 11
typedef struct polopt_ope_acc {
    polopt_ope_config config;
    size_t n;
    int has_model;
    double sum[POLOPT_OPE_TERMS], sum_c[POLOPT_OPE_TERMS]; /* sums of the row terms, and their compensations */
    double mean[POLOPT_OPE_TERMS - 1];                      /* running means of the terms t1 .. t10 */
    double comoment[(POLOPT_OPE_TERMS - 1) * (POLOPT_OPE_TERMS - 1)]; /* sum (t_j - mean_j)(t_k - mean_k), Welford */
    double v_sum[7], v_sq[7];  /* sums of each weight form (w, and the six modified ones) and of its square */
    double w_min, w_max;
    size_t above[4];
    double *boot;              /* bootstrap x POLOPT_OPE_TERMS weighted sums of the row terms */
    polopt_rng rng;
    polopt_error err;
} polopt_ope_acc;

POLOPT_DEF polopt_ope_config polopt_ope_config_default(void);
POLOPT_DEF polopt_result polopt_ope_acc_init(polopt_ope_acc *acc, const polopt_ope_config *config);
/* Add n rows: weights w (>= 0, finite), rewards r, and, if the estimate uses a model, q (r_M of the logged action)
   and dm (the model's expected reward under pi); q and dm both NULL otherwise, for every call. */
POLOPT_DEF polopt_result polopt_ope_acc_add(polopt_ope_acc *acc, size_t n, const double *w, const double *r,
                                           const double *q, const double *dm);
POLOPT_DEF polopt_result polopt_ope_acc_finish(const polopt_ope_acc *acc, polopt_ope_report *out);
POLOPT_DEF void polopt_ope_acc_free(polopt_ope_acc *acc);

/* Every estimator for a target policy given as probabilities, with slates in the Open Bandit Pipeline's layout:
   target is n x n_actions x len_list, pi(a | x_i, slot k) at (i * n_actions + a) * len_list + k, and each row is read
   at its own slot data->position[i] (len_list = 1: no slates, every position 0).  Every slot's column sums to 1 over
   the actions.  q_hat (the same layout, or NULL) holds the reward model's predictions, e.g. out-of-fold ones from
   polopt_reward_model_crossfit (whose len_list is 1: pass a copy per slot, or use the callback). */
POLOPT_DEF polopt_result polopt_ope_evaluate(const polopt_logged *data, const double *target, const double *q_hat,
                                             size_t len_list, const polopt_ope_config *config, polopt_ope_report *out);
/* The same for float arrays, which halve the memory of a large n x A x len_list target; each value is converted to
   double as it is read, so the estimates are those of the float values, exactly. */
POLOPT_DEF polopt_result polopt_ope_evaluate_f(const polopt_logged *data, const float *target, const float *q_hat,
                                               size_t len_list, const polopt_ope_config *config,
                                               polopt_ope_report *out);

/* A target policy as a callback, for catalogues too large for dense rows.  For rounds first .. first + n - 1 of
   data, write prob[k] = pi(a_i | x_i, slot), the target's probability of round i = first + k's logged action at its
   slot data->position[i]; and, when q and dm are not NULL (with_model set), q[k] = r_M(a_i, x_i) and dm[k] = the
   model's mean under pi at that slot (defined above).  Return POLOPT_OK, or an error code that stops the
   evaluation.  Each round is asked for once, in order. */
typedef polopt_result (*polopt_ope_target_fn)(void *user, const polopt_logged *data, size_t first, size_t n,
                                              double *prob, double *q, double *dm);
POLOPT_DEF polopt_result polopt_ope_evaluate_fn(const polopt_logged *data, polopt_ope_target_fn target, void *user,
                                                int with_model, const polopt_ope_config *config,
                                                polopt_ope_report *out);

/* Reward models for DM and DR: one linear model per action on the round's features with a bias,
   r_M(a, x) = w_a^T x + b_a, fitted on the rounds that took action a.  Ridge regression has a closed form (normal
   equations through the linear-algebra core, Cholesky); logistic regression (rewards in [0, 1], e.g. clicks)
   r_M = sigmoid(w_a^T x + b_a) is fitted by Adam on the L2-penalised log-loss.  Both shrink towards the mean reward
   of all fitted rounds, so an action never taken is predicted at that mean.  For huge catalogues write your own
   model: the estimators only take its predictions. */
typedef enum polopt_model_kind { POLOPT_MODEL_RIDGE = 1, POLOPT_MODEL_LOGISTIC = 2 } polopt_model_kind;

typedef struct polopt_reward_model_config {
    polopt_model_kind kind; /* RIDGE */
    float lambda;           /* L2 penalty; 1 */
    size_t epochs;          /* logistic: full-batch Adam steps; 300 */
    float lr;               /* logistic: Adam step size; 0.05 */
    size_t folds;           /* cross-fitting: 2 (so no round is predicted by a model fitted on it) */
    uint64_t seed;          /* the folds; 1 */
    polopt_hooks hooks;
} polopt_reward_model_config;

typedef struct polopt_reward_model {
    polopt_model_kind kind;
    size_t n_actions, dim;
    float *weights;  /* n_actions x (dim + 1): w_a then b_a */
    polopt_hooks hooks;
    polopt_error err;
} polopt_reward_model;

POLOPT_DEF polopt_reward_model_config polopt_reward_model_config_default(void);
/* Fit on the rounds listed in rows (n_rows of them), or on every round when rows is NULL. */
POLOPT_DEF polopt_result polopt_reward_model_fit(polopt_reward_model *model, const polopt_logged *data,
                                                 const uint32_t *rows, size_t n_rows,
                                                 const polopt_reward_model_config *config);
/* r_M(a, x) for every action a (out: n_actions floats); POLOPT_ERR_NONFINITE if x is not finite. */
POLOPT_DEF polopt_result polopt_reward_model_predict(const polopt_reward_model *model, const float *x, float *out);
POLOPT_DEF void polopt_reward_model_free(polopt_reward_model *model);
/* Cross-fitting: the rounds split into config->folds folds at random; each fold predicted (for every action) by a
   model fitted on the other folds.  out_q_hat: n x n_actions. */
POLOPT_DEF polopt_result polopt_reward_model_crossfit(const polopt_logged *data, const polopt_reward_model_config *config,
                                                      double *out_q_hat);

/* Estimated propensities, for logs that do not record them: a multinomial logistic regression of the logged action
   on the round's features, p_hat(a | x) = softmax_a(u_a^T x + c_a), fitted by full-batch Adam on the L2-penalised
   log-likelihood (the biases c are not penalised, so without features p_hat is the actions' frequency) and
   cross-fitted: each fold's rounds are scored by a model fitted on the other folds.  out_p[i] = p_hat(a_i | x_i),
   floored at config->floor.  Use it as data->propensity (the estimators then weight by pi / p_hat).  O(epochs n A
   D).  Slates: the model ignores the slot, so it estimates the marginal chance of the action at any slot. */
typedef struct polopt_propensity_config {
    float lambda;    /* L2 penalty on u; 1 */
    size_t epochs;   /* Adam steps; 300 */
    float lr;        /* Adam step size; 0.05 */
    size_t folds;    /* 2 (1: fit and score on every round) */
    uint64_t seed;   /* the folds; 1 */
    double floor;    /* the smallest propensity returned, in (0, 1); 1e-3 */
    polopt_hooks hooks;
} polopt_propensity_config;

POLOPT_DEF polopt_propensity_config polopt_propensity_config_default(void);
POLOPT_DEF polopt_result polopt_propensity_crossfit(const polopt_logged *data, const polopt_propensity_config *config,
                                                    double *out_p);

/* From a log to training: a logged bandit CSV read into polopt_logged becomes the dataset of polopt_trainer_epoch,
   whose objective is then clipped IPS, or clipped DR with a reward model (polopt_feedback above): each round is a
   context with the features data->X (add a constant column if they have none; one-hot categorical columns already
   sum to one), its logged action, propensity and reward.  The trainer's items are the log's actions: an index over
   n_actions item embeddings (one-hot rows give one free logit per action and feature).  The view points into data
   and into itself (do not copy it; it lives as long as data).  model (may be NULL: clipped IPS) is r_M of DR; tau in
   [0, 1] the propensity floor (1 / tau is the weight cap; 0: none). */
typedef struct polopt_logged_view {
    polopt_feedback feedback;
    polopt_dataset dataset;
    const polopt_logged *data;
    const polopt_reward_model *model;
} polopt_logged_view;

POLOPT_DEF polopt_result polopt_logged_view_init(polopt_logged_view *view, const polopt_logged *data,
                                                 const polopt_reward_model *model, float tau);
/* r_M(a, x_i) for the items of round i, as the polopt_reward_fn of the view's dataset (user: the view). */
POLOPT_DEF polopt_result polopt_logged_view_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                                   float *out_rewards);

/* >>slates ------------------------------------------------------------------------------------------------ */

/* Slates: a page shows K items at once, in positions 1..K, and the reward comes per position (a click at k, say).
   Aouali et al. (2022, KDD tutorial "Reward Optimizing Recommendation using Deep Learning and Fast Maximum Inner
   Product Search", §3.2-3.4) name three tools for them, all here:
     - the Plackett-Luce policy over MIPS and its gradient (>>estimator: polopt_estimator_slate_log_prob and
       polopt_estimator_sample_slate), which lets REINFORCE train a slate policy at O(S L + log P) a context;
     - off-policy estimators of a slate policy's value, from a log of slates, below;
     - a reward model of the slate that uses both whether the user clicked and where (PRR, below).

   Off-policy estimators of V(pi) = E_x E_{s ~ pi(.|x)} [sum_k r_k], from n logged slates s_i = (a_i1..a_iK) of a
   logger pi0 with per-position rewards r_ik.  Each row's term t_i, the estimate their mean:
     SIPS  sum_k r_ik * pi(s_i | x_i) / pi0(s_i | x_i)             the slate Horvitz-Thompson estimator (Horvitz &
                                                                  Thompson 1952): unbiased for any reward, and its
                                                                  weight is a ratio of whole-slate probabilities
     IIPS  sum_k r_ik * pi(a_ik at k | x_i) / pi0(a_ik at k | x_i)  independent items (Li et al. 2018): unbiased when
                                                                  r_k depends on the item at k only
     RIPS  sum_k r_ik * pi(a_i1..a_ik | x_i) / pi0(a_i1..a_ik | x_i) reward interactions (McInerney et al. 2020):
                                                                  unbiased when r_k depends on the items at 1..k only
                                                                  (a cascade: the user reads down the slate)
     PI    (sum_k r_ik) * theta_i^T 1_{s_i},  theta_i = Gamma^+ q_i  the pseudo-inverse estimator (Swaminathan et al.
                                                                  2017, Eq. 4 and Prop. 1): unbiased when the slate's
                                                                  reward is additive, sum_k phi_x(k, a_k), with
       1_s in {0,1}^{K m} the indicator of (position, item) pairs of s over m items (index k m + a), q_i = E_pi[1_s | x_i]
       the target's marginals and Gamma = E_pi0[1_s 1_s^T] the logger's pair marginals.  Its weight adds
       per-position terms where SIPS's multiplies K ratios, so it spreads far less as K grows.  d = K m <= 512 (the
       pseudo-inverse is dense).
   The weights come from the caller (the probabilities of the target and the logger): for a Plackett-Luce target,
   the cascade probabilities are exp of polopt_estimator_slate_log_prob.  Each estimate has the standard error of its
   row terms and a Poisson-bootstrap percentile interval (as >>ope). */
typedef enum polopt_slate_estimator {
    POLOPT_SLATE_SIPS = 0,
    POLOPT_SLATE_IIPS,
    POLOPT_SLATE_RIPS,
    POLOPT_SLATE_PI,
    POLOPT_SLATE_COUNT
} polopt_slate_estimator;

POLOPT_DEF const char *polopt_slate_name(polopt_slate_estimator estimator);

/* A log of slates and a target's probabilities of them.  Every array is n x K, row i position k at i K + k; a
   probability array left NULL makes the estimators that need it unavailable (pi0 and pi in pairs). */
typedef struct polopt_slate_log {
    size_t n, K;                     /* slates, positions (1 .. POLOPT_SLATE_MAX) */
    const double *reward;            /* the reward at each position (finite) */
    const double *pscore_cascade;    /* pi0(a_i1..a_ik | x_i), in (0, 1]: SIPS (column K - 1) and RIPS */
    const double *target_cascade;    /* pi(a_i1..a_ik | x_i), in [0, 1] */
    const double *pscore_item_position; /* pi0(a_ik at k | x_i), in (0, 1]: IIPS */
    const double *target_item_position; /* pi(a_ik at k | x_i), in [0, 1] */
    const double *pi_weight;         /* n (not n x K): theta_i^T 1_{s_i} of each slate (polopt_slate_pi_weights): PI */
} polopt_slate_log;

typedef struct polopt_slate_ope_config {
    size_t bootstrap;  /* resamples; 200 (0: no interval) */
    double confidence; /* 0.95 */
    uint64_t seed;     /* 1 */
    polopt_hooks hooks;
} polopt_slate_ope_config;

typedef struct polopt_slate_report {
    polopt_ope_estimate est[POLOPT_SLATE_COUNT]; /* by polopt_slate_estimator; lambda 0; ess: of the slate weight for
                                                    SIPS and PI, of the last position's weight for RIPS and IIPS */
} polopt_slate_report;

POLOPT_DEF polopt_slate_ope_config polopt_slate_ope_config_default(void);
POLOPT_DEF polopt_result polopt_slate_ope_evaluate(const polopt_slate_log *log, const polopt_slate_ope_config *config,
                                                   polopt_slate_report *out);

/* The pseudo-inverse estimator's pieces, for a logger that does not depend on the context (uniform, a fixed
   ranking with noise, a context-free bandit; the common case, and the OBD's):
     polopt_slate_gamma        Gamma_hat = (1/n) sum_i 1_{s_i} 1_{s_i}^T from n logged slates over m items (or
                               pass the exact Gamma of a known logger), d x d with d = K m <= 512;
     polopt_slate_pinv         its pseudo-inverse, by the symmetric eigendecomposition (cyclic Jacobi), eigenvalues
                               below 1e-10 times the largest dropped (the null space of the sum-to-one constraints);
     polopt_slate_pi_weights   theta_i^T 1_{s_i} = sum_k (Gamma^+ q_i)[k m + a_ik] for each slate, q_i = the target's
                               marginals pi(a at k | x_i) (K x m a row, position-major; q_stride 0: one row for all). */
POLOPT_DEF polopt_result polopt_slate_gamma(size_t n, size_t K, size_t m, const uint32_t *items, double *out_gamma,
                                            const polopt_hooks *hooks);
POLOPT_DEF polopt_result polopt_slate_pinv(size_t d, const double *gamma, double *out_pinv, const polopt_hooks *hooks);
POLOPT_DEF polopt_result polopt_slate_pi_weights(size_t n, size_t K, size_t m, const uint32_t *items,
                                                 const double *pinv, const double *q, size_t q_stride, double *out_w,
                                                 const polopt_hooks *hooks);

/* PRR, the probabilistic rank and reward model (Aouali, Ait Sidi Hammou, Ivanov, Sakhi, Rohde & Vasile 2022,
   "Probabilistic Rank and Reward: A Scalable Model for Slate Recommendation"; Aouali et al. 2021, "Combining Reward
   and Rank Signals for Slate Recommendation").  The user clicks at most one item of the slate s = (a_1..a_K); the
   outcome c is 0 (no click) or the position k clicked, from one categorical distribution
       P(c = k | x, s) = exp(u_k) / (1 + sum_j exp(u_j)),   P(c = 0 | x, s) = 1 / (1 + sum_j exp(u_j)),
       u_k = e(x) + b_k + h(x)^T beta_{a_k},   e(x) = w^T x + w_0 (engagement),  h(x) = theta^T x (interest)
   so one likelihood learns from both signals: whether the slate was clicked (the reward) and which item was (the
   rank).  Its terms: the user's engagement e(x), how likely she is to click anything; the position biases b_k; her
   interest in each item, an inner product with its embedding.  The slate's reward is P(c > 0 | x, s), increasing in
   sum_k exp(b_k) exp(h^T beta_{a_k}), whatever e(x): the engagement is a nuisance for the decision, and the best
   slate is the K items of largest h(x)^T beta_a (one MIPS query), the best of them at the position of largest b_k
   (the rearrangement inequality).  Fitting: maximum likelihood (mean negative log-likelihood plus l2 ||theta||^2,
   by Adam over minibatches).  The likelihood involves the K items shown and never the rest of the catalogue, so a
   step costs O(K (L + D) + D L) a slate whatever P: the catalogue enters only at serving, through the MIPS index.
   (The paper's engagement and interest features are any functions of the context; here both are linear in x.) */
typedef struct polopt_prr_config {
    size_t D, L, K;    /* contexts, item embeddings, positions (all required; L <= 1024, K <= POLOPT_SLATE_MAX) */
    float lr;          /* Adam's step size; 0.01 */
    float l2;          /* penalty on theta and w; 1e-4 */
    size_t epochs;     /* passes over the data; 10 */
    size_t batch;      /* slates per step; 64 */
    uint64_t seed;     /* the order of the minibatches; 1 */
    polopt_hooks hooks;
} polopt_prr_config;

typedef struct polopt_prr {
    polopt_prr_config config;
    float *params;     /* theta (D x L, row-major: h = theta^T x), b (K), w (D), w_0: D L + K + D + 1 floats */
    polopt_error err;
} polopt_prr;

/* Logged slates and their outcomes. */
typedef struct polopt_slate_clicks {
    size_t n;
    const float *X;        /* n x D contexts */
    const uint32_t *items; /* n x K, position 1 first */
    const int32_t *click;  /* n: the position clicked, 0 .. K - 1, or -1: no click */
} polopt_slate_clicks;

POLOPT_DEF polopt_prr_config polopt_prr_config_default(size_t D, size_t L, size_t K);
/* A model with theta = 0, b = 0, w = 0 and w_0 = -log K - 2 (about a 12% click rate), ready to fit. */
POLOPT_DEF polopt_result polopt_prr_init(polopt_prr *prr, const polopt_prr_config *config);
POLOPT_DEF void polopt_prr_free(polopt_prr *prr);
/* Fit to data over the items of index (beta, P x L), config.epochs passes; out_nll (may be NULL): the mean negative
   log-likelihood of the data at the end (without the penalty).  On failure the parameters are those before. */
POLOPT_DEF polopt_result polopt_prr_fit(polopt_prr *prr, const polopt_mips *index, const polopt_slate_clicks *data,
                                        double *out_nll);
/* P(c | x, slate) into out_p (K + 1: P(no click), then each position). */
POLOPT_DEF polopt_result polopt_prr_probs(const polopt_prr *prr, const polopt_mips *index, const float *x,
                                          const uint32_t *slate, double *out_p);
/* The decision: the K items of largest h(x)^T beta_a, by MIPS (ef: the search's beam, >= K; 0: K),
   placed by decreasing position bias.  scratch: one of index's (polopt_mips_scratch_init). */
POLOPT_DEF polopt_result polopt_prr_slate(const polopt_prr *prr, const polopt_mips *index, polopt_mips_scratch *scratch,
                                          const float *x, size_t ef, uint32_t *out_slate);

/* >>synth ------------------------------------------------------------------------------------------------- */

/* A synthetic large catalogue that looks like learned (SVD) embeddings, with users and an exact ground truth.
   Everything is a pure function of (seed, id): any block of items, any user, can be generated alone, in any
   order, on any thread, so a 10-million-item catalogue streams in blocks and needs no memory beyond P x L
   floats for the embeddings themselves.

   The model (s = spectrum, d_c = cluster directions, all vectors in R^L):
     s_j   = (1 + j)^(-spectrum_decay)                       dimensions of decreasing importance, as in an SVD
     d_c   = unit(s * z_c),  z_c ~ N(0, I)                    C cluster directions, anisotropic
     sizes: cluster c holds a contiguous id range, |c| proportional to (c + 1)^(-cluster_zipf), every |c| >= 1
     item a in cluster c at rank r = a - first(c)  (low rank = popular):
       beta_a = nu_a * unit(d_c + item_spread * s * xi_a / ||s||),   xi_a ~ N(0, I)
       nu_a   = (1.5 - r / |c|) * exp(norm_sigma * n_a),          n_a ~ N(0, 1)       (unequal norms)
     user u: interests c_1..c_m (m = user_interests), each drawn with probability proportional to cluster size,
       with weights w_j proportional to 2^-j;
       taste   t_u = unit(sum_j w_j d_{c_j} + taste_noise * s * zeta_u / ||s||)
       an item drawn "from the user's interests": cluster c_j with probability w_j, then rank
       r = floor(|c| * U^2) (popular items favoured)
       observed mean m_u = mean of beta_a over context_items such draws (the observed items)
       context x_u = G m_u in R^D, G = I_{D x L} + context_mixing * Z / sqrt(L), Z ~ N(0, 1) fixed by the seed:
       the context comes in its own coordinates (another model's features), so h(x) = x is a poor policy and a
       learned linear h_theta(x) = theta^T x has real work to do.  context_mixing = 0 and D = L give x_u = m_u,
       the setting of the paper (Sakhi et al. 2023, §5), where theta = identity is already a good start.
     ground truth: the expected reward of recommending a to u is r(a, u) = sigmoid(reward_bias + reward_scale *
       t_u^T beta_a).  The value of a policy pi is (1/N) sum_u sum_a pi(a | x_u) r(a, u): exact for small P,
       estimated by sampling for large P.
   Held-out items (another draw from the same interests) give a set reward 1[a in Y_u], as in Sakhi et al. (2023, §5). */
typedef struct polopt_synth_config {
    uint64_t seed;           /* 1 */
    size_t n_items;          /* P (required), 1 .. 2^32 - 1 */
    size_t dim;              /* L (required), >= 1 */
    size_t n_clusters;       /* 0 = auto: round(sqrt(P)); at most P */
    double cluster_zipf;     /* 0.8 */
    double spectrum_decay;   /* 0.5 */
    double item_spread;      /* 0.6 */
    double norm_sigma;       /* 0.35 */
    size_t user_interests;   /* 3 */
    double taste_noise;      /* 0.3 */
    size_t context_items;    /* 10 */
    size_t context_dim;      /* D: 0 = the same as dim */
    double context_mixing;   /* gamma: 1; 0 = contexts are plain means of item embeddings */
    double reward_bias;      /* -3 */
    double reward_scale;     /* 4 */
    polopt_hooks hooks;
} polopt_synth_config;

typedef struct polopt_synth {
    polopt_synth_config config;
    size_t n_clusters;
    float *spectrum;         /* L */
    float *directions;       /* n_clusters x L, unit rows d_c */
    uint32_t *cluster_first; /* n_clusters + 1 boundaries: cluster c is [first[c], first[c+1]) */
    size_t context_dim;      /* D */
    float *mixing;           /* D x L: the matrix G of the contexts */
    polopt_error err;
} polopt_synth;

POLOPT_DEF polopt_synth_config polopt_synth_config_default(void);
POLOPT_DEF polopt_result polopt_synth_init(polopt_synth *synth, const polopt_synth_config *config);
POLOPT_DEF void polopt_synth_free(polopt_synth *synth);
/* Embeddings of items first .. first + count - 1 into out (count x L, row-major). */
POLOPT_DEF polopt_result polopt_synth_items(const polopt_synth *synth, size_t first, size_t count, float *out);
/* The cluster of an item. */
POLOPT_DEF polopt_result polopt_synth_item_cluster(const polopt_synth *synth, uint32_t item, uint32_t *out_cluster);
/* Context x_u (D floats) and, if out_taste is not NULL, the hidden taste t_u (L floats) of user u. */
POLOPT_DEF polopt_result polopt_synth_user(const polopt_synth *synth, uint64_t user, float *out_context,
                                           float *out_taste);
/* n items drawn (with replacement) from the user's interests.  set 0 is the observed set behind the context
   (n = context_items reproduces it); any other set number is an independent draw, e.g. set 1 as held-out Y_u. */
POLOPT_DEF polopt_result polopt_synth_user_items(const polopt_synth *synth, uint64_t user, uint32_t set, size_t n,
                                                 uint32_t *out_items);
/* Expected rewards r(a, u) = sigmoid(bias + scale * taste^T beta_a) for count items given by their embeddings
   (count x L, e.g. a block from polopt_synth_items).  O(count L). */
POLOPT_DEF polopt_result polopt_synth_rewards(const polopt_synth *synth, const float *taste, size_t count,
                                              const float *items, float *out_reward);

/* The ground truth as a reward estimator (a polopt_reward_fn, user = a const polopt_synth_task *): context i is a
   user whose hidden taste is row i of tastes, and r_hat(i, a) = r(a, u) exactly. */
typedef struct polopt_synth_task {
    const polopt_synth *synth;
    const float *items;  /* P x L: the catalogue's embeddings (e.g. an index's vectors) */
    const float *tastes; /* n x L: the tastes of the dataset's users, from polopt_synth_user */
    size_t n;
} polopt_synth_task;
POLOPT_DEF polopt_result polopt_synth_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                             float *out_rewards);

/* The sparse-reward task, the setting of Sakhi, Rohde & Gilotte (2023, Section 5): of a million items only a handful
   are right for a user.  Y_u is the k items with the largest taste score t_u^T beta_a, that is the k items the ground
   truth r(a, u) rates highest, so a policy that learns the user's taste from the context can find them; with the set
   reward polopt_sets_reward, r_hat(u, a) = 1[a in Y_u] is zero almost everywhere.  Uniform draws almost never hit
   Y_u (S = 1000 of P = 10^6 items: a chance of about S k / P), which is what the MIPS half of the paper's proposal is
   for.  items: the P x L catalogue (e.g. an index's vectors); tastes: n_users x L (from polopt_synth_user).  One
   exact search over the catalogue per 32 users: O(n_users P L).  out_sets is initialised here (free it with
   polopt_sets_free); its hooks are the catalogue's. */
POLOPT_DEF polopt_result polopt_synth_relevant(const polopt_synth *synth, const float *items, size_t n_users,
                                               const float *tastes, size_t k, polopt_sets *out_sets);

/* Users with state, for sequential tasks: the sessions of LPI-RL (Liang & Vlassis 2023, §3.3 and §4.2), whose
   trajectories have a true value that can be simulated because the user model is known.  A session of user u
   remembers the last `memory` items she consumed (it starts from polopt_synth_user_items(u, 0, memory), her
   observed items), whose mean embedding is m_t, and her hidden state moves towards what she clicks:
       z_t = (1 - recency) t_u + recency m_t / ||m_t||                      (t_u her taste, polopt_synth_user)
   Recommended item a at step t, she clicks with probability
       r_t(a) = sigmoid(reward_bias + reward_scale z_t^T beta_a)     (the catalogue's reward model, with z_t as taste)
   or 0 if a was already recommended in this session; a click appends a to her history, where it replaces the
   oldest item.  The recommender sees x_t = [m_t, x_u] (L + D floats: the recent items and her static context of
   polopt_synth_user).  The clicks are drawn from a generator of the session's own, keyed by (seed, u): two policies
   run on the same users with the same seed meet the same random numbers (common random numbers), so the difference
   of their simulated values is far more precise than either value.  A policy's true value is the expected number of
   clicks in a session: the sum over its steps of the click probability of what it recommended, which
   polopt_synth_session_step returns. */
typedef struct polopt_synth_session_config {
    size_t memory;     /* M: consumed items the state remembers, >= 1; 5 */
    double recency;    /* lambda in [0, 1], the weight of the recent items in the state; 0.5 */
    size_t max_steps;  /* recommendations a session takes at most (the items it remembers as shown), >= 1; 15 */
} polopt_synth_session_config;

typedef struct polopt_synth_session {
    polopt_synth_session_config config;
    const polopt_synth *synth; /* the catalogue (its reward model and users), which must outlive the session */
    const float *items;        /* P x L: its embeddings beta (e.g. an index's vectors) */
    uint64_t user;             /* u, of the current session */
    float *taste;              /* L: t_u */
    float *context;            /* D: x_u */
    float *recent;             /* L: m_t, the mean embedding of the history */
    float *state;              /* L: z_t */
    float *work;               /* 2 L: polopt_synth_user's */
    uint32_t *history;         /* memory: the last consumed items, a ring whose oldest entry is history[head] */
    size_t head;
    uint32_t *shown;           /* max_steps: the items recommended so far, in order */
    size_t steps;              /* recommendations so far */
    polopt_rng rng;            /* the clicks */
    void *block;
    polopt_hooks hooks;        /* the catalogue's, copied at init */
    polopt_error err;
} polopt_synth_session;

POLOPT_DEF polopt_synth_session_config polopt_synth_session_config_default(void);
/* A session over the catalogue synth with item embeddings items (P x L; both must outlive it); config NULL: the
   defaults.  Allocates its buffers once; then starts user 0 with seed 0. */
POLOPT_DEF polopt_result polopt_synth_session_init(polopt_synth_session *session, const polopt_synth *synth,
                                                   const float *items, const polopt_synth_session_config *config);
POLOPT_DEF void polopt_synth_session_free(polopt_synth_session *session);
/* Start the session of user u afresh: her history, no item shown, the clicks' generator keyed by (seed, u). */
POLOPT_DEF polopt_result polopt_synth_session_start(polopt_synth_session *session, uint64_t user, uint64_t seed);
/* The context the recommender sees now, x_t = [m_t, x_u] (L + D floats). */
POLOPT_DEF polopt_result polopt_synth_session_context(const polopt_synth_session *session, float *out_x);
/* The hidden state z_t (L floats). */
POLOPT_DEF polopt_result polopt_synth_session_state(const polopt_synth_session *session, float *out_z);
/* Click probabilities now of the items first .. first + count - 1 (0 for those already shown): O(count L). */
POLOPT_DEF polopt_result polopt_synth_session_click_probs(const polopt_synth_session *session, uint32_t first,
                                                          size_t count, float *out_p);
/* Recommend item a: draws the click (out_clicked, may be NULL), returns its probability r_t(a) (out_p, may be NULL),
   and moves the state if she clicked.  A session past max_steps recommendations refuses (POLOPT_ERR_INVALID_ARG),
   as does an item outside the catalogue; either leaves the session as it was. */
POLOPT_DEF polopt_result polopt_synth_session_step(polopt_synth_session *session, uint32_t a, int *out_clicked,
                                                   float *out_p);

#ifdef __cplusplus
}
#endif
#endif /* POLOPT_H */

/* Stop now, if you are only interested in the API.  The implementation follows. */

#ifdef POLOPT_IMPLEMENTATION
#ifndef POLOPT__IMPLEMENTATION_DONE
#define POLOPT__IMPLEMENTATION_DONE

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h> /* vsnprintf only: the library never prints */
#include <stdlib.h>
#include <string.h>
#include <time.h> /* clock: the seconds in training statistics */

#ifndef POLOPT_ASSERT
#include <assert.h>
#define POLOPT_ASSERT(x) assert(x)
#endif

#if defined(POLOPT_MALLOC) && defined(POLOPT_REALLOC) && defined(POLOPT_FREE)
/* all three user-defined */
#elif !defined(POLOPT_MALLOC) && !defined(POLOPT_REALLOC) && !defined(POLOPT_FREE)
#define POLOPT_MALLOC(size, ctx) ((void)(ctx), malloc(size))
#define POLOPT_REALLOC(p, size, ctx) ((void)(ctx), realloc((p), (size)))
#define POLOPT_FREE(p, ctx) ((void)(ctx), free(p))
#else
#error "polopt.h: define all of POLOPT_MALLOC, POLOPT_REALLOC and POLOPT_FREE, or none of them"
#endif

#ifdef POLOPT_USE_CBLAS
#include <cblas.h>
#endif

#if defined(__cplusplus) || defined(_MSC_VER)
#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define POLOPT__RESTRICT __restrict
#else
#define POLOPT__RESTRICT
#endif
#else
#define POLOPT__RESTRICT restrict
#endif

#if defined(__GNUC__) || defined(__clang__)
#define POLOPT__INLINE inline __attribute__((always_inline))
#else
#define POLOPT__INLINE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define POLOPT__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define POLOPT__PRINTF(fmt, args)
#endif

/* >>errors ------------------------------------------------------------------------------------------------ */

POLOPT_DEF const char *polopt_strerror(polopt_result result)
{
    switch (result) {
#define POLOPT__RESULT_CASE(name, value, text) \
    case name:                                 \
        return text;
        POLOPT_RESULT_LIST(POLOPT__RESULT_CASE)
#undef POLOPT__RESULT_CASE
    default:
        return "unknown polopt result code";
    }
}

/* Format a message, keep it in err (if any), hand it to the log callback (if any), return code.
   Every failure of an object goes through here, so messages and logging behave the same everywhere. */
static polopt_result polopt__fail(polopt_error *err, const polopt_hooks *hooks, polopt_result code,
                                  const char *fmt, ...) POLOPT__PRINTF(4, 5);
static polopt_result polopt__fail(polopt_error *err, const polopt_hooks *hooks, polopt_result code,
                                  const char *fmt, ...)
{
    char buf[POLOPT_ERROR_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (err) {
        err->code = code;
        memcpy(err->message, buf, sizeof buf);
    }
    if (hooks && hooks->log) hooks->log(hooks->log_user, code, buf);
    return code;
}

static void polopt__clear_error(polopt_error *err)
{
    err->code = POLOPT_OK;
    err->message[0] = '\0';
}

/* The object discipline: an object is zeroed or fully initialised.  *_free zeroes it (every byte); a failed *_init
   or load frees what it made and zeroes the object too, keeping only the message that says why.  Every call checks
   its object's marker of initialisation and answers POLOPT_ERR_INVALID_ARG on a zeroed one. */
#define POLOPT__ZERO_KEEPING_ERROR(obj, free_fn) \
    do {                                         \
        const polopt_error saved_ = (obj)->err;  \
        free_fn(obj);                            \
        (obj)->err = saved_;                     \
    } while (0)

static const polopt_hooks polopt__no_hooks = {NULL, NULL, NULL};

/* The answer of every call on a zeroed object. */
static polopt_result polopt__not_ready(polopt_error *err, const polopt_hooks *hooks, const char *fn, const char *what)
{
    return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG,
                        "%s: the %s is not initialised (never set up, freed, or its initialisation failed)", fn, what);
}

/* The one validation of the library.  POLOPT__CHECK: a condition on an argument or a config field, and its message.
   polopt__check_range: a config field in an interval, each end open or closed, with a message that shows it. */
#define POLOPT__CHECK(err, hooks, cond, ...) \
    do {                                     \
        if (!(cond)) return polopt__fail((err), (hooks), POLOPT_ERR_INVALID_ARG, __VA_ARGS__); \
    } while (0)

typedef enum polopt__end { POLOPT__CLOSED = 0, POLOPT__OPEN = 1 } polopt__end;

static polopt_result polopt__check_range(polopt_error *err, const polopt_hooks *hooks, const char *fn, const char *name,
                                         double v, double lo, polopt__end lo_end, double hi, polopt__end hi_end)
{
    const int ok = (lo_end == POLOPT__OPEN ? v > lo : v >= lo) && (hi_end == POLOPT__OPEN ? v < hi : v <= hi);
    if (ok) return POLOPT_OK;
    if (hi >= FLT_MAX)
        return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG, "%s: config.%s = %g must be %s %g", fn, name, v,
                            lo_end == POLOPT__OPEN ? ">" : ">=", lo);
    return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG, "%s: config.%s = %g is outside %c%g, %g%c", fn, name, v,
                        lo_end == POLOPT__OPEN ? '(' : '[', lo, hi, hi_end == POLOPT__OPEN ? ')' : ']');
}

/* count * size without overflow, or 0 (and *ok = 0) when it does not fit in size_t. */
static size_t polopt__mul_size(size_t count, size_t size, int *ok)
{
    if (size != 0 && count > SIZE_MAX / size) {
        *ok = 0;
        return 0;
    }
    return count * size;
}

/* Whether n items can be numbered by uint32_t ids 0 .. n - 1, that is n <= 2^32.  With a 32-bit size_t every n
   fits (and (size_t)UINT32_MAX + 1 would wrap to 0). */
static int polopt__ids_fit(size_t n)
{
#if SIZE_MAX > 0xffffffffu
    return n <= (size_t)UINT32_MAX + 1;
#else
    (void)n;
    return 1;
#endif
}

/* The one allocation path of the library: overflow-checked, through the hooks' context.
   Returns NULL and sets *rc (POLOPT_ERR_OVERFLOW or POLOPT_ERR_NO_MEMORY) on failure. */
static void *polopt__alloc(const polopt_hooks *hooks, size_t count, size_t size, polopt_result *rc)
{
    int ok = 1;
    size_t bytes = polopt__mul_size(count, size, &ok);
    void *p;
    if (!ok) {
        *rc = POLOPT_ERR_OVERFLOW;
        return NULL;
    }
    p = POLOPT_MALLOC(bytes ? bytes : 1, hooks->alloc_ctx);
    if (!p) *rc = POLOPT_ERR_NO_MEMORY;
    return p;
}

/* The one growth path: p resized to count elements of size bytes, overflow-checked.  Returns the new block, or NULL
   with *rc set (POLOPT_ERR_OVERFLOW or POLOPT_ERR_NO_MEMORY) and p still valid and unchanged. */
static void *polopt__realloc_array(const polopt_hooks *hooks, void *p, size_t count, size_t size, polopt_result *rc)
{
    int ok = 1;
    const size_t bytes = polopt__mul_size(count, size, &ok);
    void *q;
    if (!ok) {
        *rc = POLOPT_ERR_OVERFLOW;
        return NULL;
    }
    q = POLOPT_REALLOC(p, bytes ? bytes : 1, hooks->alloc_ctx);
    if (!q) *rc = POLOPT_ERR_NO_MEMORY;
    return q;
}

static void polopt__dealloc(const polopt_hooks *hooks, void *p)
{
    if (p) POLOPT_FREE(p, hooks->alloc_ctx);
}

/* Objects with several arrays take them from one block: a first pass with a NULL base only adds up the bytes (each
   array 64-byte aligned), a second carves the same arrays out of a block of that size.  One allocation to make and
   free, and a caller can hand in its own memory (polopt_estimator_init_preallocated). */
#define POLOPT__ALIGN 64
typedef struct polopt__arena {
    unsigned char *base; /* NULL: count only */
    size_t used;
    int overflow;
} polopt__arena;

static void *polopt__carve(polopt__arena *a, size_t count, size_t size)
{
    int ok = 1;
    const size_t bytes = polopt__mul_size(count, size, &ok);
    const size_t at = (a->used + (POLOPT__ALIGN - 1)) & ~(size_t)(POLOPT__ALIGN - 1);
    if (!ok || at < a->used || at + bytes < at) {
        a->overflow = 1;
        return NULL;
    }
    a->used = at + bytes;
    return a->base ? a->base + at : NULL;
}

/* The block for a counted arena (used bytes plus room to align its start), or NULL with *rc set. */
static void *polopt__arena_alloc(const polopt_hooks *hooks, polopt__arena *a, polopt_result *rc)
{
    void *block;
    if (a->overflow || a->used > (size_t)-1 - POLOPT__ALIGN) {
        *rc = POLOPT_ERR_OVERFLOW;
        return NULL;
    }
    block = polopt__alloc(hooks, a->used + POLOPT__ALIGN, 1, rc);
    return block;
}

/* Start carving at the first aligned address of block. */
static void polopt__arena_begin(polopt__arena *a, void *block)
{
    a->base = (unsigned char *)(((uintptr_t)block + (POLOPT__ALIGN - 1)) & ~(uintptr_t)(POLOPT__ALIGN - 1));
    a->used = 0;
    a->overflow = 0;
}

/* Ask Linux to back a large array with 2 MiB pages.  The index, its search scratch and REINFORCE's scores are read at
   random over hundreds of megabytes; with 4 KiB pages nearly every read also misses the TLB, and drawing 1000
   random items costs twice as much (measured: 4.8 -> 2.0 ms per step at P = 10^6).  Only the page-aligned inside of
   the block is advised, so any allocator works; elsewhere, or with POLOPT_NO_HUGEPAGES, nothing happens.  madvise is
   declared here because strict C99 headers hide it; 14 is MADV_HUGEPAGE in Linux's ABI. */
#if defined(__linux__) && !defined(POLOPT_NO_HUGEPAGES)
#ifdef __cplusplus
#include <sys/mman.h> /* C++ compilers define _GNU_SOURCE on Linux: madvise is declared */
#define POLOPT__MADV_HUGEPAGE MADV_HUGEPAGE
#else
extern int madvise(void *addr, size_t length, int advice);
#define POLOPT__MADV_HUGEPAGE 14
#endif
static void polopt__advise_huge(void *p, size_t bytes)
{
    const uintptr_t page = 4096, start = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t end = ((uintptr_t)p + bytes) & ~(page - 1);
    if (p && bytes >= ((size_t)2 << 20) && end > start)
        (void)madvise((void *)start, (size_t)(end - start), POLOPT__MADV_HUGEPAGE);
}
#else
static void polopt__advise_huge(void *p, size_t bytes)
{
    (void)p;
    (void)bytes;
}
#endif

/* >>rng --------------------------------------------------------------------------------------------------- */

static uint64_t polopt__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* splitmix64 (Steele, Lea & Flood, 2014): the recommended way to expand one 64-bit seed into a state. */
static uint64_t polopt__splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void polopt__rng_seed(polopt_rng *rng, uint64_t seed)
{
    uint64_t sm = seed;
    int i;
    for (i = 0; i < 4; ++i) rng->s[i] = polopt__splitmix64(&sm);
}

/* A generator keyed by (seed, tag, id): how the synthetic catalogue makes every item and user a pure function
   of its id.  Two rounds of splitmix mixing separate nearby keys completely. */
static void polopt__rng_keyed(polopt_rng *rng, uint64_t seed, uint64_t tag, uint64_t id)
{
    uint64_t k = seed ^ (tag * 0xd6e8feb86659fd93ULL);
    uint64_t h = polopt__splitmix64(&k);
    k = h ^ id;
    polopt__rng_seed(rng, polopt__splitmix64(&k));
}

static POLOPT__INLINE uint64_t polopt__rng_next(polopt_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = polopt__rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = polopt__rotl(s[3], 45);
    return result;
}

static POLOPT__INLINE double polopt__rng_uniform(polopt_rng *rng)
{
    return (double)(polopt__rng_next(rng) >> 11) * (1.0 / 9007199254740992.0); /* 2^-53 */
}

/* High and low 64 bits of a 64 x 64-bit product, in portable C. */
static uint64_t polopt__mul64(uint64_t a, uint64_t b, uint64_t *lo)
{
    uint64_t a0 = a & 0xffffffffULL, a1 = a >> 32, b0 = b & 0xffffffffULL, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffULL) + (p10 & 0xffffffffULL);
    *lo = (mid << 32) | (p00 & 0xffffffffULL);
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* Lemire (2019), "Fast random integer generation in an interval": one multiplication, and a division only in
   the rare case that can be biased. */
static POLOPT__INLINE uint64_t polopt__rng_below(polopt_rng *rng, uint64_t n)
{
    uint64_t lo, hi;
    if (n == 0) return 0;
    if (n <= 0xffffffffULL) { /* the same method on 32 bits: one native multiplication (catalogue sizes) */
        uint64_t m = (polopt__rng_next(rng) >> 32) * n;
        if ((uint32_t)m < n) {
            const uint32_t threshold = (uint32_t)(0 - (uint32_t)n) % (uint32_t)n;
            while ((uint32_t)m < threshold) m = (polopt__rng_next(rng) >> 32) * n;
        }
        return m >> 32;
    }
    hi = polopt__mul64(polopt__rng_next(rng), n, &lo);
    if (lo < n) {
        const uint64_t threshold = (0 - n) % n;
        while (lo < threshold) hi = polopt__mul64(polopt__rng_next(rng), n, &lo);
    }
    return hi;
}

/* n integers uniform in [0, P), 1 <= P < 2^32, into out: Lemire's method on each 32-bit half of an output (the
   scrambler of xoshiro256** leaves no weak bits), the rejection threshold 2^32 mod P computed once. */
static void polopt__rng_below_fill(polopt_rng *rng, uint32_t P, size_t n, uint32_t *out)
{
    const uint32_t threshold = (uint32_t)(0 - P) % P;
    size_t s = 0;
    while (s < n) {
        const uint64_t r = polopt__rng_next(rng);
        uint64_t m = (r >> 32) * P;
        if ((uint32_t)m >= threshold) out[s++] = (uint32_t)(m >> 32);
        m = (r & 0xffffffffULL) * P;
        if (s < n && (uint32_t)m >= threshold) out[s++] = (uint32_t)(m >> 32);
    }
}

/* Marsaglia's polar method: a point uniform in the unit disc gives two independent normals. */
static void polopt__rng_normal_pair(polopt_rng *rng, double *z0, double *z1)
{
    double u, v, s, f;
    do {
        u = 2.0 * polopt__rng_uniform(rng) - 1.0;
        v = 2.0 * polopt__rng_uniform(rng) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    f = sqrt(-2.0 * log(s) / s);
    *z0 = u * f;
    *z1 = v * f;
}

static void polopt__rng_normals(polopt_rng *rng, size_t n, float *out)
{
    size_t i;
    double z0, z1;
    for (i = 0; i + 2 <= n; i += 2) {
        polopt__rng_normal_pair(rng, &z0, &z1);
        out[i] = (float)z0;
        out[i + 1] = (float)z1;
    }
    if (i < n) {
        polopt__rng_normal_pair(rng, &z0, &z1);
        out[i] = (float)z0;
    }
}

POLOPT_DEF polopt_result polopt_rng_seed(polopt_rng *rng, uint64_t seed)
{
    if (!rng) return POLOPT_ERR_INVALID_ARG;
    polopt__rng_seed(rng, seed);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_rng_jump(polopt_rng *rng)
{
    /* The characteristic polynomial's x^(2^128) mod p, from the generator's authors.  tests/test_rng.c
       checks it against 2^128 squarings of the 256 x 256 transition matrix over GF(2). */
    static const uint64_t jump[4] = {0x180ec6d33cfd0abaULL, 0xd5a61266f0c9392cULL, 0xa9582618e03fc9aaULL,
                                     0x39abdc4529b1661cULL};
    uint64_t t[4] = {0, 0, 0, 0};
    int i, b, j;
    if (!rng) return POLOPT_ERR_INVALID_ARG;
    for (i = 0; i < 4; ++i)
        for (b = 0; b < 64; ++b) {
            if (jump[i] & ((uint64_t)1 << b))
                for (j = 0; j < 4; ++j) t[j] ^= rng->s[j];
            polopt__rng_next(rng);
        }
    for (j = 0; j < 4; ++j) rng->s[j] = t[j];
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_rng_split(polopt_rng *rng, polopt_rng *out_child)
{
    if (!rng || !out_child || rng == out_child) return POLOPT_ERR_INVALID_ARG;
    *out_child = *rng;
    return polopt_rng_jump(rng);
}

POLOPT_DEF uint64_t polopt_rng_next(polopt_rng *rng)
{
    return polopt__rng_next(rng);
}

POLOPT_DEF double polopt_rng_uniform(polopt_rng *rng)
{
    return polopt__rng_uniform(rng);
}

POLOPT_DEF float polopt_rng_uniformf(polopt_rng *rng)
{
    return (float)(polopt__rng_next(rng) >> 40) * (1.0f / 16777216.0f); /* 2^-24 */
}

POLOPT_DEF uint64_t polopt_rng_below(polopt_rng *rng, uint64_t n)
{
    return polopt__rng_below(rng, n);
}

POLOPT_DEF double polopt_rng_normal(polopt_rng *rng)
{
    double z0, z1;
    polopt__rng_normal_pair(rng, &z0, &z1);
    return z0;
}

POLOPT_DEF double polopt_rng_gumbel(polopt_rng *rng)
{
    /* U in the open interval (0, 1): the midpoints of the 2^53 grid, so both logs are finite. */
    double u = ((double)(polopt__rng_next(rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    return -log(-log(u));
}

POLOPT_DEF polopt_result polopt_rng_normals(polopt_rng *rng, size_t n, float *out)
{
    if (!rng || (n && !out)) return POLOPT_ERR_INVALID_ARG;
    polopt__rng_normals(rng, n, out);
    return POLOPT_OK;
}

/* Sum of weights that must be finite and >= 0 with a positive total; POLOPT_OK or the reason. */
static polopt_result polopt__check_weights(size_t n, const float *w, double *out_total, size_t *out_bad)
{
    double total = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        const float wi = w[i];
        if (!(wi >= 0.0f && wi <= FLT_MAX)) { /* false for NaN, negatives and +inf */
            *out_bad = i;
            return (wi != wi || wi > FLT_MAX) ? POLOPT_ERR_NONFINITE : POLOPT_ERR_DOMAIN;
        }
        total += wi;
    }
    *out_total = total;
    *out_bad = n;
    return total > 0.0 ? POLOPT_OK : POLOPT_ERR_DOMAIN;
}

POLOPT_DEF polopt_result polopt_rng_categorical(polopt_rng *rng, size_t n, const float *weights,
                                                uint32_t *out_index)
{
    double total, target, cum = 0.0;
    size_t i, bad = 0, last = 0;
    polopt_result rc;
    if (!rng || !weights || !out_index || n == 0 || !polopt__ids_fit(n)) return POLOPT_ERR_INVALID_ARG;
    rc = polopt__check_weights(n, weights, &total, &bad);
    if (rc != POLOPT_OK) return rc;
    target = polopt__rng_uniform(rng) * total;
    for (i = 0; i < n; ++i) {
        if (weights[i] > 0.0f) {
            cum += weights[i];
            last = i;
            if (target < cum) break;
        }
    }
    *out_index = (uint32_t)(i < n ? i : last); /* rounding can leave target >= cum: take the last positive */
    return POLOPT_OK;
}

static int polopt__cmp_u32(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

POLOPT_DEF polopt_result polopt_rng_choose(polopt_rng *rng, size_t n, size_t k, uint32_t *out)
{
    size_t have = 0, i;
    if (!rng || (k && !out) || k > n || !polopt__ids_fit(n)) return POLOPT_ERR_INVALID_ARG;
    if (k == 0) return POLOPT_OK;
    if (k <= n / 2) {
        /* Draw with replacement, keep the distinct values, redraw the shortfall.  The result is the set of the
           first k distinct values of an i.i.d. uniform sequence, which is a uniform k-subset by symmetry.
           At most about k/4 duplicates in the first round, then geometrically fewer. */
        while (have < k) {
            size_t w = 0;
            for (i = have; i < k; ++i) out[i] = (uint32_t)polopt__rng_below(rng, n);
            qsort(out, k, sizeof *out, polopt__cmp_u32);
            for (i = 0; i < k; ++i)
                if (w == 0 || out[i] != out[w - 1]) out[w++] = out[i];
            have = w;
        }
    } else {
        /* Selection sampling (Knuth, TAOCP 3.4.2, Algorithm S): keep t with probability
           (still needed) / (still available).  O(n), and n < 2k here. */
        size_t t;
        for (t = 0; have < k; ++t)
            if (polopt__rng_below(rng, n - t) < k - have) out[have++] = (uint32_t)t;
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_rng_shuffle(polopt_rng *rng, size_t n, uint32_t *a)
{
    size_t i;
    if (!rng || (n && !a)) return POLOPT_ERR_INVALID_ARG;
    for (i = n; i > 1; --i) {
        const size_t j = (size_t)polopt__rng_below(rng, i);
        const uint32_t tmp = a[i - 1];
        a[i - 1] = a[j];
        a[j] = tmp;
    }
    return POLOPT_OK;
}

/* The alias table of n columns from scaled (probabilities times n: mean 1; overwritten), with stack (n) as work.
   Vose (1991): columns below 1 ("small", front of the stack) are topped up by one column above 1 ("large", back of
   the stack), which then loses what it gave.  O(n). */
static void polopt__alias_build(size_t n, double *scaled, uint32_t *stack, float *prob, uint32_t *alias)
{
    size_t i, n_small = 0, n_large = 0;
    for (i = 0; i < n; ++i) {
        if (scaled[i] < 1.0) stack[n_small++] = (uint32_t)i;
        else stack[n - 1 - n_large++] = (uint32_t)i;
    }
    while (n_small && n_large) {
        const uint32_t s = stack[--n_small], l = stack[n - n_large];
        prob[s] = (float)scaled[s];
        alias[s] = l;
        scaled[l] = (scaled[l] + scaled[s]) - 1.0;
        if (scaled[l] < 1.0) {
            --n_large;
            stack[n_small++] = l;
        }
    }
    while (n_large) { /* what remains is 1 up to rounding */
        const uint32_t l = stack[n - n_large--];
        prob[l] = 1.0f;
        alias[l] = l;
    }
    while (n_small) {
        const uint32_t s = stack[--n_small];
        prob[s] = 1.0f;
        alias[s] = s;
    }
}

static polopt_result polopt__alias_init_impl(polopt_alias *table, size_t n, const float *weights,
                                           const polopt_hooks *hooks)
{
    static const char *fn = "polopt_alias_init";
    polopt_result rc = POLOPT_OK;
    double total, *scaled = NULL;
    uint32_t *stack = NULL;
    size_t i, bad = 0;
    if (!table) return POLOPT_ERR_INVALID_ARG;
    memset(table, 0, sizeof *table);
    table->hooks = hooks ? *hooks : polopt__no_hooks;
    if (n == 0 || !polopt__ids_fit(n))
        return polopt__fail(&table->err, &table->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: n = %lu must be in [1, 2^32]", fn, (unsigned long)n);
    if (!weights)
        return polopt__fail(&table->err, &table->hooks, POLOPT_ERR_INVALID_ARG, "%s: weights is NULL", fn);
    rc = polopt__check_weights(n, weights, &total, &bad);
    if (rc != POLOPT_OK) {
        if (bad < n)
            return polopt__fail(&table->err, &table->hooks, rc, "%s: weights[%lu] = %g must be finite and >= 0",
                                fn, (unsigned long)bad, (double)weights[bad]);
        return polopt__fail(&table->err, &table->hooks, rc, "%s: the weights sum to 0", fn);
    }
    table->prob = (float *)polopt__alloc(&table->hooks, n, sizeof(float), &rc);
    if (table->prob) table->alias = (uint32_t *)polopt__alloc(&table->hooks, n, sizeof(uint32_t), &rc);
    if (table->alias) scaled = (double *)polopt__alloc(&table->hooks, n, sizeof(double), &rc);
    if (scaled) stack = (uint32_t *)polopt__alloc(&table->hooks, n, sizeof(uint32_t), &rc);
    if (!stack) {
        polopt__dealloc(&table->hooks, scaled);
        return polopt__fail(&table->err, &table->hooks, rc, "%s: cannot allocate tables for n = %lu", fn,
                            (unsigned long)n);
    }
    for (i = 0; i < n; ++i) scaled[i] = (double)weights[i] * (double)n / total;
    polopt__alias_build(n, scaled, stack, table->prob, table->alias);
    table->n = n;
    polopt__dealloc(&table->hooks, scaled);
    polopt__dealloc(&table->hooks, stack);
    polopt__clear_error(&table->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_alias_init(polopt_alias *table, size_t n, const float *weights,
                                           const polopt_hooks *hooks)
{
    const polopt_result rc = polopt__alias_init_impl(table, n, weights, hooks);
    if (rc != POLOPT_OK && table) POLOPT__ZERO_KEEPING_ERROR(table, polopt_alias_free);
    return rc;
}

POLOPT_DEF uint32_t polopt_alias_draw(const polopt_alias *table, polopt_rng *rng)
{
    uint32_t i;
    if (!table || !table->prob || !rng) return POLOPT_NO_ITEM;
    i = (uint32_t)polopt__rng_below(rng, table->n);
    return polopt_rng_uniformf(rng) < table->prob[i] ? i : table->alias[i];
}

POLOPT_DEF void polopt_alias_free(polopt_alias *table)
{
    if (!table) return;
    polopt__dealloc(&table->hooks, table->prob);
    polopt__dealloc(&table->hooks, table->alias);
    memset(table, 0, sizeof *table);
}

/* >>linalg ------------------------------------------------------------------------------------------------ */

/* The kernels.  Everything in the library whose cost grows with the catalogue runs in a handful of loops: the
   score gemm of a batch against every item, gemv (one user against every item) and gemv^T (the exact gradient
   sum_a w_a beta_a), dot and axpy (HNSW distances, sampled gradients), and the max and sum of exponentials of
   the softmax over P.  Each loop is written once in plain C (the portable kernel: the reference, and the
   fallback) and once per instruction set with intrinsics, so that its speed does not depend on what a compiler's
   auto-vectoriser makes of it (version 0.1 left its gemm to the vectoriser: compiled by gcc -O3 for AVX2 it ran at
   a twentieth of OpenBLAS's speed):
       AVX2 + FMA   x86-64, 16 registers of 8 floats
       AVX-512F     x86-64, 32 registers of 16 floats
       NEON         aarch64, 32 registers of 4 floats
   With gcc or clang on x86-64 every x86 kernel is compiled whatever the -m flags (each function carries its own
   target attribute) and the best one the CPU supports is picked at run time, so a plain -O2 build runs AVX2 or
   AVX-512 where the CPU has it.  On aarch64 NEON is always present.  The rest of the library sees one table of
   function pointers per instruction set (polopt__kernels, at the end of this section).  The kernels of different
   instruction sets add in different orders, so their results agree up to rounding; each one is deterministic. */

#if !defined(POLOPT_NO_SIMD) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define POLOPT__X86 1
#include <immintrin.h>
#define POLOPT__AVX2 __attribute__((target("avx2,fma")))
#ifdef POLOPT__EMULATE_AVX512
/* Test builds only: the AVX-512 kernels' code runs through SIMDe's portable versions of the intrinsics, so that a
   machine without AVX-512 still checks their logic (tails, packing, stores).  Never for speed. */
#define SIMDE_X86_AVX512F_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define POLOPT__AVX512 POLOPT__AVX2
#else
#define POLOPT__AVX512 __attribute__((target("avx512f,avx2,fma")))
#endif
#else
#define POLOPT__X86 0
#endif

#if !defined(POLOPT_NO_SIMD) && defined(__aarch64__) && defined(__ARM_NEON)
#define POLOPT__NEON 1
#include <arm_neon.h>
#else
#define POLOPT__NEON 0
#endif

/* The register tile of the gemm micro-kernels is at most MR_MAX x NR_MAX (AVX-512: 8 x 32). */
#define POLOPT__MR_MAX 8
#define POLOPT__NR_MAX 32

#if defined(__GNUC__) || defined(__clang__)
#define POLOPT__ALIGNED(n) __attribute__((aligned(n)))
#define POLOPT__PREFETCH(p) __builtin_prefetch(p)
#else
#define POLOPT__ALIGNED(n)
#define POLOPT__PREFETCH(p) ((void)(p))
#endif

/* Ask for rows x ld floats from a, a cache line at a time.  The gemv kernels read a block of rows together, and the
   hardware prefetchers lose track of interleaved streams: each block asks for the one two blocks ahead (with eight
   rows in step, this took gemv at L = 128 from 0.8x to 1.3x OpenBLAS). */
static void polopt__prefetch_rows(const float *a, size_t rows, size_t ld)
{
    const char *p = (const char *)a;
    size_t off;
    for (off = 0; off < rows * ld * sizeof(float); off += 64) POLOPT__PREFETCH(p + off);
}

/* ---- the portable kernels: plain C, the reference for the others ---- */

/* Reductions keep 16 independent partial sums (fixed lanes, so the result does not depend on the compiler). */
#define POLOPT__LANES 16

static float polopt__sum_lanes(float *acc)
{
    int w, j;
    for (w = POLOPT__LANES / 2; w > 0; w /= 2)
        for (j = 0; j < w; ++j) acc[j] += acc[j + w];
    return acc[0];
}

static float polopt__dot_c(size_t n, const float *POLOPT__RESTRICT x, const float *POLOPT__RESTRICT y)
{
    float acc[POLOPT__LANES] = {0};
    size_t i = 0;
    int j;
    for (; i + POLOPT__LANES <= n; i += POLOPT__LANES)
        for (j = 0; j < POLOPT__LANES; ++j) acc[j] += x[i + j] * y[i + j];
    for (j = 0; i < n; ++i, ++j) acc[j] += x[i] * y[i];
    return polopt__sum_lanes(acc);
}

static void polopt__axpy_c(size_t n, float alpha, const float *POLOPT__RESTRICT x, float *POLOPT__RESTRICT y)
{
    size_t i;
    for (i = 0; i < n; ++i) y[i] += alpha * x[i];
}

static void polopt__scale(size_t n, float alpha, float *x)
{
    size_t i;
    if (alpha == 0.0f) memset(x, 0, n * sizeof *x); /* BLAS convention: 0 * NaN = 0 here */
    else
        for (i = 0; i < n; ++i) x[i] *= alpha;
}

/* ||x|| with the squares summed in double: no overflow or underflow is possible for float inputs.  Never on a hot
   path, so it has no SIMD versions. */
static float polopt__nrm2(size_t n, const float *x)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0.0;
    size_t i = 0;
    int j;
    for (; i + 8 <= n; i += 8)
        for (j = 0; j < 8; ++j) acc[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < n; ++i) s += (double)x[i] * (double)x[i];
    for (j = 0; j < 8; ++j) s += acc[j];
    return (float)sqrt(s);
}

/* y_i = alpha d_i + beta y_i, where beta = 0 ignores what y held (NaN included). */
static float polopt__blend(float alpha, float d, float beta, float y)
{
    return beta == 0.0f ? alpha * d : alpha * d + beta * y;
}

/* y = alpha A x + beta y (A m x n): one dot product per row. */
static void polopt__gemv_n_c(size_t m, size_t n, float alpha, const float *A, size_t lda, const float *x, float beta,
                             float *y)
{
    size_t i;
    for (i = 0; i < m; ++i) {
        if (i % 8 == 0 && i + 24 <= m) polopt__prefetch_rows(A + (i + 16) * lda, 8, lda);
        y[i] = polopt__blend(alpha, polopt__dot_c(n, A + i * lda, x), beta, y[i]);
    }
}

/* y_i = A_{rows_i} . x for m rows picked anywhere in A (the scores of sampled items): a gather, so each row is
   fetched 16 rows ahead, all of its cache lines. */
static void polopt__prefetch_gathered(const float *A, size_t lda, uint32_t row, size_t n)
{
    polopt__prefetch_rows(A + (size_t)row * lda, 1, n);
}

static void polopt__gemv_rows_c(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows, const float *x,
                                float *y)
{
    size_t i;
    for (i = 0; i < m; ++i) {
        if (i + 16 < m) polopt__prefetch_gathered(A, lda, rows[i + 16], n);
        y[i] = polopt__dot_c(n, A + (size_t)rows[i] * lda, x);
    }
}

/* y += sum_i x_i A_{rows_i}: the transpose of gemv_rows (a weighted sum of sampled rows), a row at a time. */
static void polopt__gemv_rows_t_c(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows, const float *x,
                                  float *y)
{
    size_t i;
    for (i = 0; i < m; ++i) {
        if (i + 16 < m) polopt__prefetch_gathered(A, lda, rows[i + 16], n);
        polopt__axpy_c(n, x[i], A + (size_t)rows[i] * lda, y);
    }
}

/* y = alpha A^T x + beta y (A m x n, y has n entries): y accumulates alpha x_i A_i, four rows at a time. */
static void polopt__gemv_t_c(size_t m, size_t n, float alpha, const float *A, size_t lda, const float *x, float beta,
                             float *POLOPT__RESTRICT y)
{
    size_t i = 0, j;
    if (beta != 1.0f) polopt__scale(n, beta, y);
    for (; i + 4 <= m; i += 4) {
        const float *POLOPT__RESTRICT a0 = A + i * lda, *POLOPT__RESTRICT a1 = a0 + lda;
        const float *POLOPT__RESTRICT a2 = a1 + lda, *POLOPT__RESTRICT a3 = a2 + lda;
        const float c0 = alpha * x[i], c1 = alpha * x[i + 1], c2 = alpha * x[i + 2], c3 = alpha * x[i + 3];
        if (i + 12 <= m) polopt__prefetch_rows(a0 + 8 * lda, 4, lda);
        for (j = 0; j < n; ++j) y[j] += c0 * a0[j] + c1 * a1[j] + c2 * a2[j] + c3 * a3[j];
    }
    for (; i < m; ++i) polopt__axpy_c(n, alpha * x[i], A + i * lda, y);
}

/* exp(x) for x <= 0 in single precision.  Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, Cephes' degree-6
   polynomial for e^r, and 2^n built in the exponent bits.  Relative error below 2e-7 on [-87.3, 0]; below that
   (-inf included) the result is 0, harmless for the sums and probabilities here: the library only ever needs
   e^(logit - max logit).  The SIMD kernels compute the same formula, a vector at a time (with fused multiply-adds,
   so their last bit may differ).  The conditions are done on the bit patterns, as integers: for negative floats a
   larger magnitude is a larger unsigned pattern, so the clamp at -87.3 is an unsigned minimum and the flush to 0 an
   AND with a comparison mask; that keeps this scalar code free of branches.  n is rounded by converting to an
   integer, not by the "add 1.5 * 2^23" trick, which fails where float expressions are evaluated in more precision
   (x87 on 32-bit x86).  Every input is defined behaviour: x >= 0 gives 1 (x is clamped to the domain first, so no
   conversion to int can overflow), a NaN gives a NaN. */
#define POLOPT__EXP_LOWEST (-87.3f)
#define POLOPT__EXP_LOG2E 1.44269504088896341f
#define POLOPT__EXP_LN2_HI 0.693359375f
#define POLOPT__EXP_LN2_LO (-2.12194440e-4f)
#define POLOPT__EXP_P0 1.9875691500e-4f
#define POLOPT__EXP_P1 1.3981999507e-3f
#define POLOPT__EXP_P2 8.3334519073e-3f
#define POLOPT__EXP_P3 4.1665795894e-2f
#define POLOPT__EXP_P4 1.6666665459e-1f
#define POLOPT__EXP_P5 5.0000001201e-1f

static POLOPT__INLINE float polopt__expf(float x)
{
    const float lowest = POLOPT__EXP_LOWEST;
    uint32_t xb, lb, keep, rb;
    float xc, kf, r, p = POLOPT__EXP_P0, scale, result;
    int32_t n, bits;
    uint32_t nan;
    memcpy(&xb, &x, 4);
    memcpy(&lb, &lowest, 4);
    nan = 0u - (uint32_t)((xb & 0x7fffffffu) > 0x7f800000u); /* all ones where x is NaN */
    xb &= 0u - (xb >> 31);            /* x >= +0 (outside the domain, or a positive NaN) becomes +0 */
    keep = 0u - (uint32_t)(xb <= lb); /* all ones where x >= -87.3 (x <= 0: compare the patterns; +0 is 0) */
    xb = xb < lb ? xb : lb;           /* max(x, -87.3): an unsigned minimum of the patterns */
    memcpy(&xc, &xb, 4);
    n = -(int32_t)(0.5f - xc * POLOPT__EXP_LOG2E); /* round(x / ln 2): the operand is positive, so truncation floors */
    kf = (float)n;
    r = (xc - kf * POLOPT__EXP_LN2_HI) - kf * POLOPT__EXP_LN2_LO;
    p = p * r + POLOPT__EXP_P1;
    p = p * r + POLOPT__EXP_P2;
    p = p * r + POLOPT__EXP_P3;
    p = p * r + POLOPT__EXP_P4;
    p = p * r + POLOPT__EXP_P5;
    p = p * r * r + r + 1.0f;
    bits = (n + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    result = p * scale;
    memcpy(&rb, &result, 4);
    rb = (rb & keep) | (nan & 0x7fc00000u); /* below -87.3: +0; NaN in, NaN out */
    memcpy(&result, &rb, 4);
    return result;
}

/* The max of x into *out_max, and 1; or 0 if some entry is NaN or +inf. */
static int polopt__max_c(size_t n, const float *x, float *out_max)
{
    float mx[POLOPT__LANES];
    int bad = 0, j;
    size_t i = 0;
    for (j = 0; j < POLOPT__LANES; ++j) mx[j] = -INFINITY;
    for (; i + POLOPT__LANES <= n; i += POLOPT__LANES)
        for (j = 0; j < POLOPT__LANES; ++j) {
            const float v = x[i + j];
            bad |= !(v <= FLT_MAX); /* NaN or +inf */
            mx[j] = v > mx[j] ? v : mx[j];
        }
    for (j = 0; i < n; ++i, ++j) {
        bad |= !(x[i] <= FLT_MAX);
        mx[j] = x[i] > mx[j] ? x[i] : mx[j];
    }
    for (j = 1; j < POLOPT__LANES; ++j) mx[0] = mx[j] > mx[0] ? mx[j] : mx[0];
    *out_max = mx[0];
    return !bad;
}

/* sum_i exp((x_i - mx) * inv_t), writing the terms to out when out is not NULL (out may be x).  Chunks of 256 terms
   are summed in float lanes, the chunks in double. */
#define POLOPT__EXP_CHUNK 256
static double polopt__sum_exp_c(size_t n, const float *x, float mx, float inv_t, float *out)
{
    double s = 0.0;
    size_t i = 0;
    while (i < n) {
        const size_t m = n - i < POLOPT__EXP_CHUNK ? n - i : POLOPT__EXP_CHUNK;
        float acc[POLOPT__LANES] = {0};
        size_t k = 0;
        int j;
        for (; k + POLOPT__LANES <= m; k += POLOPT__LANES)
            for (j = 0; j < POLOPT__LANES; ++j) {
                const float e = polopt__expf((x[i + k + j] - mx) * inv_t);
                if (out) out[i + k + j] = e;
                acc[j] += e;
            }
        for (j = 0; k < m; ++k, ++j) {
            const float e = polopt__expf((x[i + k] - mx) * inv_t);
            if (out) out[i + k] = e;
            acc[j] += e;
        }
        s += polopt__sum_lanes(acc);
        i += m;
    }
    return s;
}

/* The gemm micro-kernel: an MR x NR tile of C = alpha A B + beta C from kc steps of packed panels, a holding
   A(r, p) at a[p MR + r] and b holding B(p, c) at b[p NR + c].  Each step adds the outer product of a column of A
   and a row of B: MR x NR multiply-adds that need no horizontal reduction.  beta = 0 overwrites C.  Portable tile:
   4 x 8. */
#define POLOPT__MR_C 4
#define POLOPT__NR_C 8
static void polopt__gemm_micro_c(size_t kc, const float *POLOPT__RESTRICT a, const float *POLOPT__RESTRICT b,
                                 float alpha, float beta, float *POLOPT__RESTRICT c, size_t ldc)
{
    float acc[POLOPT__MR_C][POLOPT__NR_C];
    size_t p;
    int r, j;
    for (r = 0; r < POLOPT__MR_C; ++r)
        for (j = 0; j < POLOPT__NR_C; ++j) acc[r][j] = 0.0f;
    for (p = 0; p < kc; ++p, a += POLOPT__MR_C, b += POLOPT__NR_C)
        for (r = 0; r < POLOPT__MR_C; ++r)
            for (j = 0; j < POLOPT__NR_C; ++j) acc[r][j] += a[r] * b[j];
    for (r = 0; r < POLOPT__MR_C; ++r)
        for (j = 0; j < POLOPT__NR_C; ++j) c[r * ldc + j] = polopt__blend(alpha, acc[r][j], beta, c[r * ldc + j]);
}

/* Pack nr rows of a matrix stored row by row (row j at src + j ld, kc floats used) as a panel of kc rows of NR:
   out[p NR + j] = src[j ld + p], zero for j >= nr.  It is a transpose; the SIMD kernels transpose 8 x 8 (4 x 4)
   blocks in registers for full panels. */
static void polopt__pack_t_c(size_t kc, size_t nr, size_t NR, const float *src, size_t ld, float *out)
{
    size_t p, j;
    for (p = 0; p < kc; ++p)
        for (j = 0; j < NR; ++j) out[p * NR + j] = j < nr ? src[j * ld + p] : 0.0f;
}

static void polopt__pack_bt_c(size_t kc, const float *B, size_t ldb, float *out)
{
    polopt__pack_t_c(kc, POLOPT__NR_C, POLOPT__NR_C, B, ldb, out);
}

/* ---- AVX2 + FMA (x86-64) ---- */
#if POLOPT__X86

POLOPT__AVX2 static float polopt__hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The eight sums of eight vectors, as one vector: two rounds of pairwise adds, then the two halves. */
POLOPT__AVX2 static __m256 polopt__hsum8_avx2(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5,
                                              __m256 v6, __m256 v7)
{
    const __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3)); /* rows 0-3, per half */
    const __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(v4, v5), _mm256_hadd_ps(v6, v7)); /* rows 4-7, per half */
    return _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
}

POLOPT__AVX2 static float polopt__dot_avx2(size_t n, const float *x, const float *y)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    float tail = 0.0f;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) { /* four accumulators: four multiply-adds in flight */
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    for (; i < n; ++i) tail += x[i] * y[i];
    return polopt__hsum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail;
}

POLOPT__AVX2 static void polopt__axpy_avx2(size_t n, float alpha, const float *x, float *y)
{
    const __m256 a = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += alpha * x[i];
}

/* Two rows' dot products with x, each left as a vector of 8 partial sums (the caller reduces eight rows at once);
   the last n mod 8 products are added to the first lane. */
POLOPT__AVX2 static void polopt__rows_dot_avx2(size_t n, const float *a, const float *b, const float *x, __m256 *out_a,
                                               __m256 *out_b)
{
    __m256 c = _mm256_setzero_ps(), d = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + 8 <= n; p += 8) {
        const __m256 xv = _mm256_loadu_ps(x + p);
        c = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), xv, c);
        d = _mm256_fmadd_ps(_mm256_loadu_ps(b + p), xv, d);
    }
    if (p < n) {
        float s = 0.0f, t = 0.0f;
        for (; p < n; ++p) s += a[p] * x[p], t += b[p] * x[p];
        c = _mm256_add_ps(c, _mm256_set_ps(0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, s));
        d = _mm256_add_ps(d, _mm256_set_ps(0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, t));
    }
    *out_a = c, *out_b = d;
}

/* y = alpha A x + beta y, eight rows at a time, in pairs: the dot products of two rows run together along their
   contiguous floats, two streams from memory (eight rows in step, a line of each per step, was 20% slower at
   L = 64, and one row at a time about 8%: the prefetchers keep up with a few streams, not with eight), and hsum8
   reduces the eight vectors of partial sums to the eight results with a handful of shuffles. */
POLOPT__AVX2 static void polopt__gemv_n_avx2(size_t m, size_t n, float alpha, const float *A, size_t lda,
                                             const float *x, float beta, float *y)
{
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        const float *a = A + i * lda;
        __m256 c0, c1, c2, c3, c4, c5, c6, c7, d;
        if (i + 24 <= m) polopt__prefetch_rows(a + 16 * lda, 8, lda);
        polopt__rows_dot_avx2(n, a, a + lda, x, &c0, &c1);
        polopt__rows_dot_avx2(n, a + 2 * lda, a + 3 * lda, x, &c2, &c3);
        polopt__rows_dot_avx2(n, a + 4 * lda, a + 5 * lda, x, &c4, &c5);
        polopt__rows_dot_avx2(n, a + 6 * lda, a + 7 * lda, x, &c6, &c7);
        d = polopt__hsum8_avx2(c0, c1, c2, c3, c4, c5, c6, c7);
        d = _mm256_mul_ps(_mm256_set1_ps(alpha), d);
        if (beta != 0.0f) d = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(y + i), d);
        _mm256_storeu_ps(y + i, d);
    }
    for (; i < m; ++i) y[i] = polopt__blend(alpha, polopt__dot_avx2(n, A + i * lda, x), beta, y[i]);
}

/* The rows picked by rows, eight at a time as in gemv_n: two rows' dot products in step, hsum8 for the eight
   results, and the rows of the block after next fetched ahead. */
POLOPT__AVX2 static void polopt__gemv_rows_avx2(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows,
                                                const float *x, float *y)
{
    size_t i = 0, k;
    for (; i + 8 <= m; i += 8) {
        const uint32_t *r = rows + i;
        __m256 c0, c1, c2, c3, c4, c5, c6, c7;
        if (i + 24 <= m)
            for (k = 16; k < 24; ++k) polopt__prefetch_gathered(A, lda, r[k], n);
        polopt__rows_dot_avx2(n, A + (size_t)r[0] * lda, A + (size_t)r[1] * lda, x, &c0, &c1);
        polopt__rows_dot_avx2(n, A + (size_t)r[2] * lda, A + (size_t)r[3] * lda, x, &c2, &c3);
        polopt__rows_dot_avx2(n, A + (size_t)r[4] * lda, A + (size_t)r[5] * lda, x, &c4, &c5);
        polopt__rows_dot_avx2(n, A + (size_t)r[6] * lda, A + (size_t)r[7] * lda, x, &c6, &c7);
        _mm256_storeu_ps(y + i, polopt__hsum8_avx2(c0, c1, c2, c3, c4, c5, c6, c7));
    }
    for (; i < m; ++i) y[i] = polopt__dot_avx2(n, A + (size_t)rows[i] * lda, x);
}

/* y += sum_i x_i A_{rows_i}: up to 64 columns y stays in eight registers for all the rows (an axpy per row would
   store y and load it back each time); wider, an axpy per row. */
POLOPT__AVX2 static void polopt__gemv_rows_t_avx2(size_t m, size_t n, const float *A, size_t lda,
                                                  const uint32_t *rows, const float *x, float *y)
{
    size_t i, k;
    if (n <= 64 && n % 8 == 0) {
        const size_t nv = n / 8;
        __m256 y0 = _mm256_setzero_ps(), y1 = y0, y2 = y0, y3 = y0, y4 = y0, y5 = y0, y6 = y0, y7 = y0;
        for (i = 0; i < m; ++i) {
            const float *a = A + (size_t)rows[i] * lda;
            const __m256 c = _mm256_set1_ps(x[i]);
            if (i + 16 < m) polopt__prefetch_gathered(A, lda, rows[i + 16], n);
            y0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a), y0);
            if (nv > 1) y1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 8), y1);
            if (nv > 2) y2 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 16), y2);
            if (nv > 3) y3 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 24), y3);
            if (nv > 4) y4 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 32), y4);
            if (nv > 5) y5 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 40), y5);
            if (nv > 6) y6 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 48), y6);
            if (nv > 7) y7 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 56), y7);
        }
        {
            const __m256 acc[8] = {y0, y1, y2, y3, y4, y5, y6, y7};
            for (k = 0; k < nv; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_loadu_ps(y + 8 * k), acc[k]));
        }
        return;
    }
    for (i = 0; i < m; ++i) {
        if (i + 16 < m) polopt__prefetch_gathered(A, lda, rows[i + 16], n);
        polopt__axpy_avx2(n, x[i], A + (size_t)rows[i] * lda, y);
    }
}

/* y = alpha A^T x + beta y: y accumulates alpha x_i A_i.  Up to 64 columns (the embedding sizes of the learners) y
   stays in eight registers for the whole pass over A, which is then read in memory order (a software prefetch only
   slowed this single stream down); wider, four rows update y in memory at a time. */
POLOPT__AVX2 static void polopt__gemv_t_avx2(size_t m, size_t n, float alpha, const float *A, size_t lda,
                                             const float *x, float beta, float *y)
{
    size_t i = 0, j;
    if (beta != 1.0f) polopt__scale(n, beta, y);
    if (n <= 64 && n % 8 == 0) {
        const size_t nv = n / 8; /* vectors of y in use */
        __m256 y0 = _mm256_setzero_ps(), y1 = y0, y2 = y0, y3 = y0, y4 = y0, y5 = y0, y6 = y0, y7 = y0;
        if (nv <= 4) { /* up to 32 columns: two rows per step, half the loop per byte (measured: 7% faster) */
            for (; i + 2 <= m; i += 2) {
                const float *a = A + i * lda, *b = a + lda;
                const __m256 c = _mm256_set1_ps(alpha * x[i]), e = _mm256_set1_ps(alpha * x[i + 1]);
                y0 = _mm256_fmadd_ps(e, _mm256_loadu_ps(b), _mm256_fmadd_ps(c, _mm256_loadu_ps(a), y0));
                if (nv > 1) y1 = _mm256_fmadd_ps(e, _mm256_loadu_ps(b + 8), _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 8), y1));
                if (nv > 2) y2 = _mm256_fmadd_ps(e, _mm256_loadu_ps(b + 16), _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 16), y2));
                if (nv > 3) y3 = _mm256_fmadd_ps(e, _mm256_loadu_ps(b + 24), _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 24), y3));
            }
        }
        for (; i < m; ++i) {
            const float *a = A + i * lda;
            const __m256 c = _mm256_set1_ps(alpha * x[i]);
            y0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a), y0);
            if (nv > 1) y1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 8), y1);
            if (nv > 2) y2 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 16), y2);
            if (nv > 3) y3 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 24), y3);
            if (nv > 4) y4 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 32), y4);
            if (nv > 5) y5 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 40), y5);
            if (nv > 6) y6 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 48), y6);
            if (nv > 7) y7 = _mm256_fmadd_ps(c, _mm256_loadu_ps(a + 56), y7);
        }
        _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), y0));
        if (nv > 1) _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_loadu_ps(y + 8), y1));
        if (nv > 2) _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_loadu_ps(y + 16), y2));
        if (nv > 3) _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_loadu_ps(y + 24), y3));
        if (nv > 4) _mm256_storeu_ps(y + 32, _mm256_add_ps(_mm256_loadu_ps(y + 32), y4));
        if (nv > 5) _mm256_storeu_ps(y + 40, _mm256_add_ps(_mm256_loadu_ps(y + 40), y5));
        if (nv > 6) _mm256_storeu_ps(y + 48, _mm256_add_ps(_mm256_loadu_ps(y + 48), y6));
        if (nv > 7) _mm256_storeu_ps(y + 56, _mm256_add_ps(_mm256_loadu_ps(y + 56), y7));
        return;
    }
    for (; i + 4 <= m; i += 4) {
        const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        const float s0 = alpha * x[i], s1 = alpha * x[i + 1], s2 = alpha * x[i + 2], s3 = alpha * x[i + 3];
        const __m256 c0 = _mm256_set1_ps(s0), c1 = _mm256_set1_ps(s1), c2 = _mm256_set1_ps(s2), c3 = _mm256_set1_ps(s3);
        if (i + 12 <= m) polopt__prefetch_rows(a0 + 8 * lda, 4, lda);
        for (j = 0; j + 8 <= n; j += 8) {
            __m256 t = _mm256_mul_ps(c0, _mm256_loadu_ps(a0 + j));
            t = _mm256_fmadd_ps(c1, _mm256_loadu_ps(a1 + j), t);
            t = _mm256_fmadd_ps(c2, _mm256_loadu_ps(a2 + j), t);
            t = _mm256_fmadd_ps(c3, _mm256_loadu_ps(a3 + j), t);
            _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_loadu_ps(y + j), t));
        }
        for (; j < n; ++j) y[j] += s0 * a0[j] + s1 * a1[j] + s2 * a2[j] + s3 * a3[j];
    }
    for (; i < m; ++i) polopt__axpy_avx2(n, alpha * x[i], A + i * lda, y);
}

/* e^x for x <= 0, eight at a time: polopt__expf's formula. */
POLOPT__AVX2 static __m256 polopt__exp_avx2(__m256 x)
{
    const __m256 lowest = _mm256_set1_ps(POLOPT__EXP_LOWEST);
    const __m256 keep = _mm256_cmp_ps(x, lowest, _CMP_GE_OQ); /* below -87.3 (and -inf): 0 */
    const __m256 xc = _mm256_max_ps(x, lowest);
    const __m256 kf = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(POLOPT__EXP_LOG2E)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(POLOPT__EXP_LN2_LO),
                                      _mm256_fnmadd_ps(kf, _mm256_set1_ps(POLOPT__EXP_LN2_HI), xc));
    __m256 p = _mm256_set1_ps(POLOPT__EXP_P0);
    __m256i e;
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(POLOPT__EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(POLOPT__EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(POLOPT__EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(POLOPT__EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(POLOPT__EXP_P5));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(kf), _mm256_set1_epi32(127)), 23); /* 2^kf */
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

POLOPT__AVX2 static int polopt__max_avx2(size_t n, const float *x, float *out_max)
{
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, ok = _mm256_cmp_ps(m0, m0, _CMP_EQ_OQ); /* all ones */
    float mx = -INFINITY;
    int good = 1;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(m0, v0);
        m1 = _mm256_max_ps(m1, v1);
        ok = _mm256_and_ps(ok, _mm256_and_ps(_mm256_cmp_ps(v0, big, _CMP_LE_OQ), _mm256_cmp_ps(v1, big, _CMP_LE_OQ)));
    }
    for (; i < n; ++i) {
        good &= x[i] <= FLT_MAX;
        mx = x[i] > mx ? x[i] : mx;
    }
    if (!good || _mm256_movemask_ps(ok) != 0xff) return 0;
    m0 = _mm256_max_ps(m0, m1);
    {
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        *out_max = _mm_cvtss_f32(h) > mx ? _mm_cvtss_f32(h) : mx;
    }
    return 1;
}

POLOPT__AVX2 static double polopt__sum_exp_avx2(size_t n, const float *x, float mx, float inv_t, float *out)
{
    const __m256 vm = _mm256_set1_ps(mx), vt = _mm256_set1_ps(inv_t);
    double s = 0.0;
    size_t i = 0;
    while (i < n) {
        const size_t m = n - i < POLOPT__EXP_CHUNK ? n - i : POLOPT__EXP_CHUNK;
        const float *xi = x + i;
        float *oi = out ? out + i : NULL, tail = 0.0f;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 16 <= m; k += 16) {
            const __m256 e0 = polopt__exp_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xi + k), vm), vt));
            const __m256 e1 = polopt__exp_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xi + k + 8), vm), vt));
            if (oi) {
                _mm256_storeu_ps(oi + k, e0);
                _mm256_storeu_ps(oi + k + 8, e1);
            }
            a0 = _mm256_add_ps(a0, e0);
            a1 = _mm256_add_ps(a1, e1);
        }
        for (; k < m; ++k) {
            const float e = polopt__expf((xi[k] - mx) * inv_t);
            if (oi) oi[k] = e;
            tail += e;
        }
        s += (double)polopt__hsum_avx2(_mm256_add_ps(a0, a1)) + (double)tail;
        i += m;
    }
    return s;
}

/* Micro-kernel, register tile 4 x 24: twelve accumulators (4 rows of C, 3 vectors of 8 columns each), the three
   vectors of a row of B, and one broadcast element of A: 16 registers, all of them.  Per step: 3 loads of B,
   4 broadcasts of A, 12 multiply-adds.  Four rows divide the usual batches (32 users) exactly.
   POLOPT__IN_REGISTERS is an empty asm statement that says it may change its operands: the compiler must then hold
   them in registers.  Without it gcc -O3 -march=znver3 folds each load of B into the four multiply-adds that use
   it, 16 loads per step instead of 7, and the kernel waits on the load ports (measured: 25% slower). */
#define POLOPT__IN_REGISTERS3(x, y, z) __asm__("" : "+x"(x), "+x"(y), "+x"(z))
#define POLOPT__MR_AVX2 4
#define POLOPT__NR_AVX2 24

POLOPT__AVX2 static void polopt__store_row_avx2(float *c, __m256 x0, __m256 x1, __m256 x2, float alpha, float beta)
{
    const __m256 va = _mm256_set1_ps(alpha);
    if (beta == 0.0f) {
        _mm256_storeu_ps(c, _mm256_mul_ps(va, x0));
        _mm256_storeu_ps(c + 8, _mm256_mul_ps(va, x1));
        _mm256_storeu_ps(c + 16, _mm256_mul_ps(va, x2));
    } else {
        const __m256 vb = _mm256_set1_ps(beta);
        _mm256_storeu_ps(c, _mm256_fmadd_ps(va, x0, _mm256_mul_ps(vb, _mm256_loadu_ps(c))));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, x1, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8))));
        _mm256_storeu_ps(c + 16, _mm256_fmadd_ps(va, x2, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 16))));
    }
}

POLOPT__AVX2 static void polopt__gemm_micro_avx2(size_t kc, const float *a, const float *b, float alpha, float beta,
                                                 float *c, size_t ldc)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    size_t p;
    for (p = 0; p < kc; ++p, a += POLOPT__MR_AVX2, b += POLOPT__NR_AVX2) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
        __m256 ar = _mm256_broadcast_ss(a); /* C(r, :) += A(r, p) B(p, :) */
        POLOPT__IN_REGISTERS3(b0, b1, b2);
        c00 = _mm256_fmadd_ps(ar, b0, c00), c01 = _mm256_fmadd_ps(ar, b1, c01), c02 = _mm256_fmadd_ps(ar, b2, c02);
        ar = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(ar, b0, c10), c11 = _mm256_fmadd_ps(ar, b1, c11), c12 = _mm256_fmadd_ps(ar, b2, c12);
        ar = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(ar, b0, c20), c21 = _mm256_fmadd_ps(ar, b1, c21), c22 = _mm256_fmadd_ps(ar, b2, c22);
        ar = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(ar, b0, c30), c31 = _mm256_fmadd_ps(ar, b1, c31), c32 = _mm256_fmadd_ps(ar, b2, c32);
    }
    polopt__store_row_avx2(c, c00, c01, c02, alpha, beta);
    polopt__store_row_avx2(c + ldc, c10, c11, c12, alpha, beta);
    polopt__store_row_avx2(c + 2 * ldc, c20, c21, c22, alpha, beta);
    polopt__store_row_avx2(c + 3 * ldc, c30, c31, c32, alpha, beta);
}

/* dst[q ldd + r] = src[r ld + q] for r, q < 8: the 8 x 8 transpose in registers (unpack pairs, shuffle quads,
   swap halves). */
POLOPT__AVX2 static void polopt__transpose8_avx2(const float *src, size_t ld, float *dst, size_t ldd)
{
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld), r2 = _mm256_loadu_ps(src + 2 * ld);
    const __m256 r3 = _mm256_loadu_ps(src + 3 * ld), r4 = _mm256_loadu_ps(src + 4 * ld);
    const __m256 r5 = _mm256_loadu_ps(src + 5 * ld), r6 = _mm256_loadu_ps(src + 6 * ld);
    const __m256 r7 = _mm256_loadu_ps(src + 7 * ld);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(s3, s7, 0x31));
}

/* A full panel of NR rows, transposed in 8 x 8 blocks; the last kc mod 8 columns one by one. */
POLOPT__AVX2 static void polopt__pack_t_avx2(size_t kc, size_t NR, const float *B, size_t ldb, float *out)
{
    size_t g, p, r;
    for (g = 0; g < NR; g += 8) {
        const float *src = B + g * ldb;
        for (p = 0; p + 8 <= kc; p += 8) polopt__transpose8_avx2(src + p, ldb, out + p * NR + g, NR);
        for (; p < kc; ++p)
            for (r = 0; r < 8; ++r) out[p * NR + g + r] = src[r * ldb + p];
    }
}

POLOPT__AVX2 static void polopt__pack_bt_avx2(size_t kc, const float *B, size_t ldb, float *out)
{
    polopt__pack_t_avx2(kc, POLOPT__NR_AVX2, B, ldb, out);
}

/* ---- AVX-512F (x86-64) ----
   Loops run 16 floats at a time; what is left (under 16) goes to the AVX2 kernel, which every AVX-512 CPU has. */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
/* g++ before 13 warns inside its own AVX-512 headers (the "undefined" operand of the intrinsics, gcc bug 105593) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define POLOPT__POP_DIAGNOSTIC 1
#endif

POLOPT__AVX512 static __m256 polopt__fold_avx512(__m512 v) /* the two halves added: 16 lanes to 8 */
{
    const __m512i vi = _mm512_castps_si512(v), hi = _mm512_shuffle_i32x4(vi, vi, 0xee); /* upper half, moved down */
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_castsi512_ps(hi)));
}

POLOPT__AVX512 static float polopt__dot_avx512(size_t n, const float *x, const float *y)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    /* the tail only when there is one: x + i of an empty (possibly NULL) array is undefined */
    return polopt__hsum_avx2(polopt__fold_avx512(_mm512_add_ps(a0, a1))) +
           (i < n ? polopt__dot_avx2(n - i, x + i, y + i) : 0.0f);
}

POLOPT__AVX512 static void polopt__axpy_avx512(size_t n, float alpha, const float *x, float *y)
{
    const __m512 a = _mm512_set1_ps(alpha);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) polopt__axpy_avx2(n - i, alpha, x + i, y + i);
}

/* Two rows' dot products with x, each as 8 partial sums: 16 floats a step, the rest through the AVX2 kernel. */
POLOPT__AVX512 static void polopt__rows_dot_avx512(size_t n, const float *a, const float *b, const float *x,
                                                   __m256 *out_a, __m256 *out_b)
{
    __m512 c = _mm512_setzero_ps(), d = _mm512_setzero_ps();
    __m256 ca, cb;
    size_t p = 0;
    for (; p + 16 <= n; p += 16) {
        const __m512 xv = _mm512_loadu_ps(x + p);
        c = _mm512_fmadd_ps(_mm512_loadu_ps(a + p), xv, c);
        d = _mm512_fmadd_ps(_mm512_loadu_ps(b + p), xv, d);
    }
    ca = cb = _mm256_setzero_ps();
    if (p < n) polopt__rows_dot_avx2(n - p, a + p, b + p, x + p, &ca, &cb); /* x + p of an empty x is undefined */
    *out_a = _mm256_add_ps(polopt__fold_avx512(c), ca);
    *out_b = _mm256_add_ps(polopt__fold_avx512(d), cb);
}

/* Eight rows at a time, in pairs, as in AVX2. */
POLOPT__AVX512 static void polopt__gemv_n_avx512(size_t m, size_t n, float alpha, const float *A, size_t lda,
                                                 const float *x, float beta, float *y)
{
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        const float *a = A + i * lda;
        __m256 c0, c1, c2, c3, c4, c5, c6, c7, d;
        if (i + 24 <= m) polopt__prefetch_rows(a + 16 * lda, 8, lda);
        polopt__rows_dot_avx512(n, a, a + lda, x, &c0, &c1);
        polopt__rows_dot_avx512(n, a + 2 * lda, a + 3 * lda, x, &c2, &c3);
        polopt__rows_dot_avx512(n, a + 4 * lda, a + 5 * lda, x, &c4, &c5);
        polopt__rows_dot_avx512(n, a + 6 * lda, a + 7 * lda, x, &c6, &c7);
        d = polopt__hsum8_avx2(c0, c1, c2, c3, c4, c5, c6, c7);
        d = _mm256_mul_ps(_mm256_set1_ps(alpha), d);
        if (beta != 0.0f) d = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(y + i), d);
        _mm256_storeu_ps(y + i, d);
    }
    for (; i < m; ++i) y[i] = polopt__blend(alpha, polopt__dot_avx512(n, A + i * lda, x), beta, y[i]);
}

/* As in AVX2, sixteen floats a step. */
POLOPT__AVX512 static void polopt__gemv_rows_avx512(size_t m, size_t n, const float *A, size_t lda,
                                                    const uint32_t *rows, const float *x, float *y)
{
    size_t i = 0, k;
    for (; i + 8 <= m; i += 8) {
        const uint32_t *r = rows + i;
        __m256 c0, c1, c2, c3, c4, c5, c6, c7;
        if (i + 24 <= m)
            for (k = 16; k < 24; ++k) polopt__prefetch_gathered(A, lda, r[k], n);
        polopt__rows_dot_avx512(n, A + (size_t)r[0] * lda, A + (size_t)r[1] * lda, x, &c0, &c1);
        polopt__rows_dot_avx512(n, A + (size_t)r[2] * lda, A + (size_t)r[3] * lda, x, &c2, &c3);
        polopt__rows_dot_avx512(n, A + (size_t)r[4] * lda, A + (size_t)r[5] * lda, x, &c4, &c5);
        polopt__rows_dot_avx512(n, A + (size_t)r[6] * lda, A + (size_t)r[7] * lda, x, &c6, &c7);
        _mm256_storeu_ps(y + i, polopt__hsum8_avx2(c0, c1, c2, c3, c4, c5, c6, c7));
    }
    for (; i < m; ++i) y[i] = polopt__dot_avx512(n, A + (size_t)rows[i] * lda, x);
}

/* As in AVX2, up to 128 columns in eight registers. */
POLOPT__AVX512 static void polopt__gemv_rows_t_avx512(size_t m, size_t n, const float *A, size_t lda,
                                                      const uint32_t *rows, const float *x, float *y)
{
    size_t i, k;
    if (n <= 128 && n % 16 == 0) {
        const size_t nv = n / 16;
        __m512 y0 = _mm512_setzero_ps(), y1 = y0, y2 = y0, y3 = y0, y4 = y0, y5 = y0, y6 = y0, y7 = y0;
        for (i = 0; i < m; ++i) {
            const float *a = A + (size_t)rows[i] * lda;
            const __m512 c = _mm512_set1_ps(x[i]);
            if (i + 16 < m) polopt__prefetch_gathered(A, lda, rows[i + 16], n);
            y0 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a), y0);
            if (nv > 1) y1 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 16), y1);
            if (nv > 2) y2 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 32), y2);
            if (nv > 3) y3 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 48), y3);
            if (nv > 4) y4 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 64), y4);
            if (nv > 5) y5 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 80), y5);
            if (nv > 6) y6 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 96), y6);
            if (nv > 7) y7 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 112), y7);
        }
        {
            const __m512 acc[8] = {y0, y1, y2, y3, y4, y5, y6, y7};
            for (k = 0; k < nv; ++k) _mm512_storeu_ps(y + 16 * k, _mm512_add_ps(_mm512_loadu_ps(y + 16 * k), acc[k]));
        }
        return;
    }
    polopt__gemv_rows_t_avx2(m, n, A, lda, rows, x, y);
}

/* As in AVX2: up to 128 columns y stays in eight registers for the whole pass over A. */
POLOPT__AVX512 static void polopt__gemv_t_avx512(size_t m, size_t n, float alpha, const float *A, size_t lda,
                                                 const float *x, float beta, float *y)
{
    size_t i = 0, j;
    if (beta != 1.0f) polopt__scale(n, beta, y);
    if (n <= 128 && n % 16 == 0) {
        const size_t nv = n / 16; /* vectors of y in use */
        __m512 y0 = _mm512_setzero_ps(), y1 = y0, y2 = y0, y3 = y0, y4 = y0, y5 = y0, y6 = y0, y7 = y0;
        for (i = 0; i < m; ++i) {
            const float *a = A + i * lda;
            const __m512 c = _mm512_set1_ps(alpha * x[i]);
            y0 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a), y0);
            if (nv > 1) y1 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 16), y1);
            if (nv > 2) y2 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 32), y2);
            if (nv > 3) y3 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 48), y3);
            if (nv > 4) y4 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 64), y4);
            if (nv > 5) y5 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 80), y5);
            if (nv > 6) y6 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 96), y6);
            if (nv > 7) y7 = _mm512_fmadd_ps(c, _mm512_loadu_ps(a + 112), y7);
        }
        _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), y0));
        if (nv > 1) _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_loadu_ps(y + 16), y1));
        if (nv > 2) _mm512_storeu_ps(y + 32, _mm512_add_ps(_mm512_loadu_ps(y + 32), y2));
        if (nv > 3) _mm512_storeu_ps(y + 48, _mm512_add_ps(_mm512_loadu_ps(y + 48), y3));
        if (nv > 4) _mm512_storeu_ps(y + 64, _mm512_add_ps(_mm512_loadu_ps(y + 64), y4));
        if (nv > 5) _mm512_storeu_ps(y + 80, _mm512_add_ps(_mm512_loadu_ps(y + 80), y5));
        if (nv > 6) _mm512_storeu_ps(y + 96, _mm512_add_ps(_mm512_loadu_ps(y + 96), y6));
        if (nv > 7) _mm512_storeu_ps(y + 112, _mm512_add_ps(_mm512_loadu_ps(y + 112), y7));
        return;
    }
    for (; i + 4 <= m; i += 4) {
        const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        const float s0 = alpha * x[i], s1 = alpha * x[i + 1], s2 = alpha * x[i + 2], s3 = alpha * x[i + 3];
        const __m512 c0 = _mm512_set1_ps(s0), c1 = _mm512_set1_ps(s1), c2 = _mm512_set1_ps(s2), c3 = _mm512_set1_ps(s3);
        if (i + 12 <= m) polopt__prefetch_rows(a0 + 8 * lda, 4, lda);
        for (j = 0; j + 16 <= n; j += 16) {
            __m512 t = _mm512_mul_ps(c0, _mm512_loadu_ps(a0 + j));
            t = _mm512_fmadd_ps(c1, _mm512_loadu_ps(a1 + j), t);
            t = _mm512_fmadd_ps(c2, _mm512_loadu_ps(a2 + j), t);
            t = _mm512_fmadd_ps(c3, _mm512_loadu_ps(a3 + j), t);
            _mm512_storeu_ps(y + j, _mm512_add_ps(_mm512_loadu_ps(y + j), t));
        }
        for (; j < n; ++j) y[j] += s0 * a0[j] + s1 * a1[j] + s2 * a2[j] + s3 * a3[j];
    }
    for (; i < m; ++i) polopt__axpy_avx512(n, alpha * x[i], A + i * lda, y);
}

POLOPT__AVX512 static __m512 polopt__exp_avx512(__m512 x)
{
    const __m512 lowest = _mm512_set1_ps(POLOPT__EXP_LOWEST);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lowest, _CMP_GE_OQ);
    const __m512 xc = _mm512_max_ps(x, lowest);
    const __m512 kf = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(POLOPT__EXP_LOG2E)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(POLOPT__EXP_LN2_LO),
                                      _mm512_fnmadd_ps(kf, _mm512_set1_ps(POLOPT__EXP_LN2_HI), xc));
    __m512 p = _mm512_set1_ps(POLOPT__EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(POLOPT__EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(POLOPT__EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(POLOPT__EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(POLOPT__EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(POLOPT__EXP_P5));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, kf)); /* p 2^kf, exactly */
}

POLOPT__AVX512 static int polopt__max_avx512(size_t n, const float *x, float *out_max)
{
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    __m512 m0 = _mm512_set1_ps(-INFINITY);
    __mmask16 ok = 0xffff;
    float rest;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        m0 = _mm512_max_ps(m0, v);
        ok &= _mm512_cmp_ps_mask(v, big, _CMP_LE_OQ);
    }
    rest = -INFINITY;
    if (ok != 0xffff || (i < n && !polopt__max_avx2(n - i, x + i, &rest))) return 0;
    {
        float lanes[16], h;
        _mm512_storeu_ps(lanes, m0);
        polopt__max_c(16, lanes, &h); /* the 16 lanes are finite or -inf */
        *out_max = h > rest ? h : rest;
    }
    return 1;
}

POLOPT__AVX512 static double polopt__sum_exp_avx512(size_t n, const float *x, float mx, float inv_t, float *out)
{
    const __m512 vm = _mm512_set1_ps(mx), vt = _mm512_set1_ps(inv_t);
    double s = 0.0;
    size_t i = 0;
    while (i < n) {
        const size_t m = n - i < POLOPT__EXP_CHUNK ? n - i : POLOPT__EXP_CHUNK;
        const float *xi = x + i;
        float *oi = out ? out + i : NULL;
        __m512 a0 = _mm512_setzero_ps();
        size_t k = 0;
        for (; k + 16 <= m; k += 16) {
            const __m512 e = polopt__exp_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xi + k), vm), vt));
            if (oi) _mm512_storeu_ps(oi + k, e);
            a0 = _mm512_add_ps(a0, e);
        }
        s += (double)polopt__hsum_avx2(polopt__fold_avx512(a0)) +
             polopt__sum_exp_avx2(m - k, xi + k, mx, inv_t, oi ? oi + k : NULL);
        i += m;
    }
    return s;
}

/* Micro-kernel, register tile 8 x 32: sixteen accumulators (8 rows of C, 2 vectors of 16 columns), two vectors of
   B and a broadcast of A: 19 of the 32 registers.  Per step: 2 loads of B, 8 broadcasts, 16 multiply-adds.  B is
   held in registers as in the AVX2 kernel. */
#ifdef POLOPT__EMULATE_AVX512
#define POLOPT__IN_REGISTERS2(x, y) ((void)0) /* SIMDe's emulated vectors are not registers */
#else
#define POLOPT__IN_REGISTERS2(x, y) __asm__("" : "+v"(x), "+v"(y))
#endif
#define POLOPT__MR_AVX512 8
#define POLOPT__NR_AVX512 32

POLOPT__AVX512 static void polopt__store_row_avx512(float *c, __m512 x0, __m512 x1, float alpha, float beta)
{
    const __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
        _mm512_storeu_ps(c, _mm512_mul_ps(va, x0));
        _mm512_storeu_ps(c + 16, _mm512_mul_ps(va, x1));
    } else {
        const __m512 vb = _mm512_set1_ps(beta);
        _mm512_storeu_ps(c, _mm512_fmadd_ps(va, x0, _mm512_mul_ps(vb, _mm512_loadu_ps(c))));
        _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(va, x1, _mm512_mul_ps(vb, _mm512_loadu_ps(c + 16))));
    }
}

POLOPT__AVX512 static void polopt__gemm_micro_avx512(size_t kc, const float *a, const float *b, float alpha,
                                                     float beta, float *c, size_t ldc)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    size_t p;
    for (p = 0; p < kc; ++p, a += POLOPT__MR_AVX512, b += POLOPT__NR_AVX512) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        __m512 ar = _mm512_set1_ps(a[0]); /* C(r, :) += A(r, p) B(p, :) */
        POLOPT__IN_REGISTERS2(b0, b1);
        c00 = _mm512_fmadd_ps(ar, b0, c00), c01 = _mm512_fmadd_ps(ar, b1, c01);
        ar = _mm512_set1_ps(a[1]);
        c10 = _mm512_fmadd_ps(ar, b0, c10), c11 = _mm512_fmadd_ps(ar, b1, c11);
        ar = _mm512_set1_ps(a[2]);
        c20 = _mm512_fmadd_ps(ar, b0, c20), c21 = _mm512_fmadd_ps(ar, b1, c21);
        ar = _mm512_set1_ps(a[3]);
        c30 = _mm512_fmadd_ps(ar, b0, c30), c31 = _mm512_fmadd_ps(ar, b1, c31);
        ar = _mm512_set1_ps(a[4]);
        c40 = _mm512_fmadd_ps(ar, b0, c40), c41 = _mm512_fmadd_ps(ar, b1, c41);
        ar = _mm512_set1_ps(a[5]);
        c50 = _mm512_fmadd_ps(ar, b0, c50), c51 = _mm512_fmadd_ps(ar, b1, c51);
        ar = _mm512_set1_ps(a[6]);
        c60 = _mm512_fmadd_ps(ar, b0, c60), c61 = _mm512_fmadd_ps(ar, b1, c61);
        ar = _mm512_set1_ps(a[7]);
        c70 = _mm512_fmadd_ps(ar, b0, c70), c71 = _mm512_fmadd_ps(ar, b1, c71);
    }
    polopt__store_row_avx512(c, c00, c01, alpha, beta);
    polopt__store_row_avx512(c + ldc, c10, c11, alpha, beta);
    polopt__store_row_avx512(c + 2 * ldc, c20, c21, alpha, beta);
    polopt__store_row_avx512(c + 3 * ldc, c30, c31, alpha, beta);
    polopt__store_row_avx512(c + 4 * ldc, c40, c41, alpha, beta);
    polopt__store_row_avx512(c + 5 * ldc, c50, c51, alpha, beta);
    polopt__store_row_avx512(c + 6 * ldc, c60, c61, alpha, beta);
    polopt__store_row_avx512(c + 7 * ldc, c70, c71, alpha, beta);
}

POLOPT__AVX512 static void polopt__pack_bt_avx512(size_t kc, const float *B, size_t ldb, float *out)
{
    polopt__pack_t_avx2(kc, POLOPT__NR_AVX512, B, ldb, out); /* 8 x 8 blocks: wider ones would not be faster */
}
#ifdef POLOPT__POP_DIAGNOSTIC
#pragma GCC diagnostic pop
#undef POLOPT__POP_DIAGNOSTIC
#endif

#endif /* POLOPT__X86 */

/* ---- NEON (aarch64) ---- */
#if POLOPT__NEON

static float polopt__dot_neon(size_t n, const float *x, const float *y)
{
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float tail = 0.0f;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    for (; i < n; ++i) tail += x[i] * y[i];
    return vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) + tail;
}

static void polopt__axpy_neon(size_t n, float alpha, const float *x, float *y)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
        vst1q_f32(y + i + 4, vfmaq_n_f32(vld1q_f32(y + i + 4), vld1q_f32(x + i + 4), alpha));
    }
    for (; i < n; ++i) y[i] += alpha * x[i];
}

/* Two rows' dot products with x, each as 4 partial sums; the last n mod 4 products join the first lane. */
static void polopt__rows_dot_neon(size_t n, const float *a, const float *b, const float *x, float32x4_t *out_a,
                                  float32x4_t *out_b)
{
    float32x4_t c = vdupq_n_f32(0.0f), d = c;
    size_t p = 0;
    for (; p + 4 <= n; p += 4) {
        const float32x4_t xv = vld1q_f32(x + p);
        c = vfmaq_f32(c, vld1q_f32(a + p), xv);
        d = vfmaq_f32(d, vld1q_f32(b + p), xv);
    }
    if (p < n) {
        float s = 0.0f, t = 0.0f;
        for (; p < n; ++p) s += a[p] * x[p], t += b[p] * x[p];
        c = vaddq_f32(c, vsetq_lane_f32(s, vdupq_n_f32(0.0f), 0));
        d = vaddq_f32(d, vsetq_lane_f32(t, vdupq_n_f32(0.0f), 0));
    }
    *out_a = c, *out_b = d;
}

/* Four rows at a time, in pairs as in AVX2; pairwise adds reduce the four row vectors to the four results. */
static void polopt__gemv_n_neon(size_t m, size_t n, float alpha, const float *A, size_t lda, const float *x,
                                float beta, float *y)
{
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *a = A + i * lda;
        float32x4_t c0, c1, c2, c3, d;
        if (i + 12 <= m) polopt__prefetch_rows(a + 8 * lda, 4, lda);
        polopt__rows_dot_neon(n, a, a + lda, x, &c0, &c1);
        polopt__rows_dot_neon(n, a + 2 * lda, a + 3 * lda, x, &c2, &c3);
        d = vpaddq_f32(vpaddq_f32(c0, c1), vpaddq_f32(c2, c3));
        d = vmulq_n_f32(d, alpha);
        if (beta != 0.0f) d = vfmaq_n_f32(d, vld1q_f32(y + i), beta);
        vst1q_f32(y + i, d);
    }
    for (; i < m; ++i) y[i] = polopt__blend(alpha, polopt__dot_neon(n, A + i * lda, x), beta, y[i]);
}

/* Four picked rows at a time, as in gemv_n. */
static void polopt__gemv_rows_neon(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows,
                                   const float *x, float *y)
{
    size_t i = 0, k;
    for (; i + 4 <= m; i += 4) {
        const uint32_t *r = rows + i;
        float32x4_t c0, c1, c2, c3;
        if (i + 12 <= m)
            for (k = 8; k < 12; ++k) polopt__prefetch_gathered(A, lda, r[k], n);
        polopt__rows_dot_neon(n, A + (size_t)r[0] * lda, A + (size_t)r[1] * lda, x, &c0, &c1);
        polopt__rows_dot_neon(n, A + (size_t)r[2] * lda, A + (size_t)r[3] * lda, x, &c2, &c3);
        vst1q_f32(y + i, vpaddq_f32(vpaddq_f32(c0, c1), vpaddq_f32(c2, c3)));
    }
    for (; i < m; ++i) y[i] = polopt__dot_neon(n, A + (size_t)rows[i] * lda, x);
}

/* A row at a time. */
static void polopt__gemv_rows_t_neon(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows,
                                     const float *x, float *y)
{
    size_t i;
    for (i = 0; i < m; ++i) {
        if (i + 16 < m) polopt__prefetch_gathered(A, lda, rows[i + 16], n);
        polopt__axpy_neon(n, x[i], A + (size_t)rows[i] * lda, y);
    }
}

static void polopt__gemv_t_neon(size_t m, size_t n, float alpha, const float *A, size_t lda, const float *x,
                                float beta, float *y)
{
    size_t i = 0, j;
    if (beta != 1.0f) polopt__scale(n, beta, y);
    for (; i + 4 <= m; i += 4) {
        const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        const float s0 = alpha * x[i], s1 = alpha * x[i + 1], s2 = alpha * x[i + 2], s3 = alpha * x[i + 3];
        if (i + 12 <= m) polopt__prefetch_rows(a0 + 8 * lda, 4, lda);
        for (j = 0; j + 4 <= n; j += 4) {
            float32x4_t t = vmulq_n_f32(vld1q_f32(a0 + j), s0);
            t = vfmaq_n_f32(t, vld1q_f32(a1 + j), s1);
            t = vfmaq_n_f32(t, vld1q_f32(a2 + j), s2);
            t = vfmaq_n_f32(t, vld1q_f32(a3 + j), s3);
            vst1q_f32(y + j, vaddq_f32(vld1q_f32(y + j), t));
        }
        for (; j < n; ++j) y[j] += s0 * a0[j] + s1 * a1[j] + s2 * a2[j] + s3 * a3[j];
    }
    for (; i < m; ++i) polopt__axpy_neon(n, alpha * x[i], A + i * lda, y);
}

static float32x4_t polopt__exp_neon(float32x4_t x)
{
    const float32x4_t lowest = vdupq_n_f32(POLOPT__EXP_LOWEST);
    const uint32x4_t keep = vcgeq_f32(x, lowest);
    const float32x4_t xc = vmaxq_f32(x, lowest);
    const float32x4_t kf = vrndnq_f32(vmulq_n_f32(xc, POLOPT__EXP_LOG2E));
    const float32x4_t r = vfmsq_f32(vfmsq_f32(xc, kf, vdupq_n_f32(POLOPT__EXP_LN2_HI)), kf,
                                    vdupq_n_f32(POLOPT__EXP_LN2_LO));
    float32x4_t p = vdupq_n_f32(POLOPT__EXP_P0);
    int32x4_t e;
    p = vfmaq_f32(vdupq_n_f32(POLOPT__EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(POLOPT__EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(POLOPT__EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(POLOPT__EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(POLOPT__EXP_P5), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), vmulq_f32(p, r), r);
    e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(kf), vdupq_n_s32(127)), 23); /* 2^kf */
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vmulq_f32(p, vreinterpretq_f32_s32(e))), keep));
}

static int polopt__max_neon(size_t n, const float *x, float *out_max)
{
    const float32x4_t big = vdupq_n_f32(FLT_MAX);
    float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
    uint32x4_t ok = vdupq_n_u32(0xffffffffu);
    float mx = -INFINITY, h;
    int good = 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        m0 = vmaxq_f32(m0, v0);
        m1 = vmaxq_f32(m1, v1);
        ok = vandq_u32(ok, vandq_u32(vcleq_f32(v0, big), vcleq_f32(v1, big)));
    }
    for (; i < n; ++i) {
        good &= x[i] <= FLT_MAX;
        mx = x[i] > mx ? x[i] : mx;
    }
    if (!good || vminvq_u32(ok) != 0xffffffffu) return 0;
    h = vmaxvq_f32(vmaxq_f32(m0, m1));
    *out_max = h > mx ? h : mx;
    return 1;
}

static double polopt__sum_exp_neon(size_t n, const float *x, float mx, float inv_t, float *out)
{
    const float32x4_t vm = vdupq_n_f32(mx);
    double s = 0.0;
    size_t i = 0;
    while (i < n) {
        const size_t m = n - i < POLOPT__EXP_CHUNK ? n - i : POLOPT__EXP_CHUNK;
        const float *xi = x + i;
        float *oi = out ? out + i : NULL, tail = 0.0f;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
        size_t k = 0;
        for (; k + 8 <= m; k += 8) {
            const float32x4_t e0 = polopt__exp_neon(vmulq_n_f32(vsubq_f32(vld1q_f32(xi + k), vm), inv_t));
            const float32x4_t e1 = polopt__exp_neon(vmulq_n_f32(vsubq_f32(vld1q_f32(xi + k + 4), vm), inv_t));
            if (oi) {
                vst1q_f32(oi + k, e0);
                vst1q_f32(oi + k + 4, e1);
            }
            a0 = vaddq_f32(a0, e0);
            a1 = vaddq_f32(a1, e1);
        }
        for (; k < m; ++k) {
            const float e = polopt__expf((xi[k] - mx) * inv_t);
            if (oi) oi[k] = e;
            tail += e;
        }
        s += (double)vaddvq_f32(vaddq_f32(a0, a1)) + (double)tail;
        i += m;
    }
    return s;
}

/* Micro-kernel, register tile 8 x 8: sixteen accumulators (8 rows of C, 2 vectors of 4 columns), two vectors of B
   and two of A, whose lanes the multiply-adds read directly (vfmaq_laneq): 20 of the 32 registers. */
#define POLOPT__MR_NEON 8
#define POLOPT__NR_NEON 8

static void polopt__store_row_neon(float *c, float32x4_t x0, float32x4_t x1, float alpha, float beta)
{
    if (beta == 0.0f) {
        vst1q_f32(c, vmulq_n_f32(x0, alpha));
        vst1q_f32(c + 4, vmulq_n_f32(x1, alpha));
    } else {
        vst1q_f32(c, vfmaq_n_f32(vmulq_n_f32(vld1q_f32(c), beta), x0, alpha));
        vst1q_f32(c + 4, vfmaq_n_f32(vmulq_n_f32(vld1q_f32(c + 4), beta), x1, alpha));
    }
}

static void polopt__gemm_micro_neon(size_t kc, const float *a, const float *b, float alpha, float beta, float *c,
                                    size_t ldc)
{
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    float32x4_t c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    size_t p;
    for (p = 0; p < kc; ++p, a += POLOPT__MR_NEON, b += POLOPT__NR_NEON) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        c00 = vfmaq_laneq_f32(c00, b0, a0, 0), c01 = vfmaq_laneq_f32(c01, b1, a0, 0); /* C(r, :) += A(r, p) B(p, :) */
        c10 = vfmaq_laneq_f32(c10, b0, a0, 1), c11 = vfmaq_laneq_f32(c11, b1, a0, 1);
        c20 = vfmaq_laneq_f32(c20, b0, a0, 2), c21 = vfmaq_laneq_f32(c21, b1, a0, 2);
        c30 = vfmaq_laneq_f32(c30, b0, a0, 3), c31 = vfmaq_laneq_f32(c31, b1, a0, 3);
        c40 = vfmaq_laneq_f32(c40, b0, a1, 0), c41 = vfmaq_laneq_f32(c41, b1, a1, 0);
        c50 = vfmaq_laneq_f32(c50, b0, a1, 1), c51 = vfmaq_laneq_f32(c51, b1, a1, 1);
        c60 = vfmaq_laneq_f32(c60, b0, a1, 2), c61 = vfmaq_laneq_f32(c61, b1, a1, 2);
        c70 = vfmaq_laneq_f32(c70, b0, a1, 3), c71 = vfmaq_laneq_f32(c71, b1, a1, 3);
    }
    polopt__store_row_neon(c, c00, c01, alpha, beta);
    polopt__store_row_neon(c + ldc, c10, c11, alpha, beta);
    polopt__store_row_neon(c + 2 * ldc, c20, c21, alpha, beta);
    polopt__store_row_neon(c + 3 * ldc, c30, c31, alpha, beta);
    polopt__store_row_neon(c + 4 * ldc, c40, c41, alpha, beta);
    polopt__store_row_neon(c + 5 * ldc, c50, c51, alpha, beta);
    polopt__store_row_neon(c + 6 * ldc, c60, c61, alpha, beta);
    polopt__store_row_neon(c + 7 * ldc, c70, c71, alpha, beta);
}

/* A panel of 8 rows, in 4 x 4 blocks transposed in registers (trn1/trn2 on floats, then on pairs). */
static void polopt__pack_bt_neon(size_t kc, const float *B, size_t ldb, float *out)
{
    size_t g, p, r;
    for (g = 0; g < POLOPT__NR_NEON; g += 4) {
        const float *s = B + g * ldb;
        for (p = 0; p + 4 <= kc; p += 4) {
            const float32x4_t r0 = vld1q_f32(s + p), r1 = vld1q_f32(s + ldb + p);
            const float32x4_t r2 = vld1q_f32(s + 2 * ldb + p), r3 = vld1q_f32(s + 3 * ldb + p);
            const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
            const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
            float *o = out + p * POLOPT__NR_NEON + g;
            vst1q_f32(o, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
            vst1q_f32(o + POLOPT__NR_NEON, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
            vst1q_f32(o + 2 * POLOPT__NR_NEON, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
            vst1q_f32(o + 3 * POLOPT__NR_NEON, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
        }
        for (; p < kc; ++p)
            for (r = 0; r < 4; ++r) out[p * POLOPT__NR_NEON + g + r] = s[r * ldb + p];
    }
}

#endif /* POLOPT__NEON */

/* ---- the kernel tables and the choice at run time ---- */

typedef struct polopt__kernels {
    polopt_isa isa;
    float (*dot)(size_t n, const float *x, const float *y);
    void (*axpy)(size_t n, float alpha, const float *x, float *y);
    void (*gemv_n)(size_t m, size_t n, float alpha, const float *A, size_t lda, const float *x, float beta, float *y);
    void (*gemv_t)(size_t m, size_t n, float alpha, const float *A, size_t lda, const float *x, float beta, float *y);
    void (*gemv_rows)(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows, const float *x, float *y);
    void (*gemv_rows_t)(size_t m, size_t n, const float *A, size_t lda, const uint32_t *rows, const float *x, float *y);
    int (*max)(size_t n, const float *x, float *out_max);
    double (*sum_exp)(size_t n, const float *x, float mx, float inv_t, float *out);
    size_t mr, nr; /* the gemm micro-kernel's register tile */
    void (*gemm_micro)(size_t kc, const float *a, const float *b, float alpha, float beta, float *c, size_t ldc);
    void (*pack_bt)(size_t kc, const float *B, size_t ldb, float *out); /* nr rows of B, transposed */
} polopt__kernels;

static const polopt__kernels polopt__kernels_c = {
    POLOPT_ISA_PORTABLE, polopt__dot_c, polopt__axpy_c, polopt__gemv_n_c, polopt__gemv_t_c, polopt__gemv_rows_c,
    polopt__gemv_rows_t_c, polopt__max_c, polopt__sum_exp_c, POLOPT__MR_C, POLOPT__NR_C, polopt__gemm_micro_c,
    polopt__pack_bt_c};
#if POLOPT__X86
static const polopt__kernels polopt__kernels_avx2 = {
    POLOPT_ISA_AVX2, polopt__dot_avx2, polopt__axpy_avx2, polopt__gemv_n_avx2, polopt__gemv_t_avx2,
    polopt__gemv_rows_avx2, polopt__gemv_rows_t_avx2, polopt__max_avx2, polopt__sum_exp_avx2, POLOPT__MR_AVX2,
    POLOPT__NR_AVX2, polopt__gemm_micro_avx2, polopt__pack_bt_avx2};
static const polopt__kernels polopt__kernels_avx512 = {
    POLOPT_ISA_AVX512, polopt__dot_avx512, polopt__axpy_avx512, polopt__gemv_n_avx512, polopt__gemv_t_avx512,
    polopt__gemv_rows_avx512, polopt__gemv_rows_t_avx512, polopt__max_avx512, polopt__sum_exp_avx512, POLOPT__MR_AVX512,
    POLOPT__NR_AVX512, polopt__gemm_micro_avx512, polopt__pack_bt_avx512};

/* What the CPU (and the operating system, which must save the wide registers) supports, from the compiler's cpuid
   cache: a few loads, cheap enough to ask at every call. */
static int polopt__cpu_avx2(void)
{
    __builtin_cpu_init(); /* idempotent; needed only if called before the program's constructors */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int polopt__cpu_avx512(void)
{
#ifdef POLOPT__EMULATE_AVX512
    return polopt__cpu_avx2();
#else
    return polopt__cpu_avx2() && __builtin_cpu_supports("avx512f");
#endif
}
#endif
#if POLOPT__NEON
static const polopt__kernels polopt__kernels_neon = {
    POLOPT_ISA_NEON, polopt__dot_neon, polopt__axpy_neon, polopt__gemv_n_neon, polopt__gemv_t_neon,
    polopt__gemv_rows_neon, polopt__gemv_rows_t_neon, polopt__max_neon, polopt__sum_exp_neon, POLOPT__MR_NEON,
    POLOPT__NR_NEON, polopt__gemm_micro_neon, polopt__pack_bt_neon};
#endif

/* The best kernels for this build and CPU. */
static const polopt__kernels *polopt__kern_auto(void)
{
#if POLOPT__X86
    if (polopt__cpu_avx512()) return &polopt__kernels_avx512;
    if (polopt__cpu_avx2()) return &polopt__kernels_avx2;
#elif POLOPT__NEON
    return &polopt__kernels_neon;
#endif
    return &polopt__kernels_c;
}

/* The kernels of isa, or NULL if this build or this CPU lacks them. */
static const polopt__kernels *polopt__kern(polopt_isa isa)
{
    switch (isa) {
    case POLOPT_ISA_AUTO: return polopt__kern_auto();
    case POLOPT_ISA_PORTABLE: return &polopt__kernels_c;
#if POLOPT__X86
    case POLOPT_ISA_AVX2: return polopt__cpu_avx2() ? &polopt__kernels_avx2 : NULL;
    case POLOPT_ISA_AVX512: return polopt__cpu_avx512() ? &polopt__kernels_avx512 : NULL;
#endif
#if POLOPT__NEON
    case POLOPT_ISA_NEON: return &polopt__kernels_neon;
#endif
    default: return NULL;
    }
}

POLOPT_DEF polopt_isa polopt_isa_detect(void)
{
    return polopt__kern_auto()->isa;
}

POLOPT_DEF int polopt_isa_supported(polopt_isa isa)
{
    return polopt__kern(isa) != NULL;
}

POLOPT_DEF const char *polopt_isa_name(polopt_isa isa)
{
    switch (isa) {
    case POLOPT_ISA_AUTO: return "auto";
    case POLOPT_ISA_PORTABLE: return "portable";
    case POLOPT_ISA_AVX2: return "avx2";
    case POLOPT_ISA_AVX512: return "avx512";
    case POLOPT_ISA_NEON: return "neon";
    default: return "unknown";
    }
}

/* ---- gemm: the loops around the micro-kernel ----
   C = alpha op(A) op(B) + beta C is computed in MR x NR tiles of C, each tile by the micro-kernel from two packed
   panels: MR rows of op(A) stored column by column (a[p MR + r]) and NR columns of op(B) stored row by row
   (b[p NR + c]), so the kernel reads both with unit stride whatever the transposes (Goto & van de Geijn,
   "Anatomy of High-Performance Matrix Multiplication", ACM TOMS 2008; the BLIS micro-kernel design).
       for each KC slice of k:
         for each MC rows of op(A):            pack them (MC x KC, stays in L1/L2)
           for each NR columns of op(B):       pack them (KC x NR, stays in L1)
             for each MR rows of the block:    micro-kernel
   Scoring a batch H (32 x L) against the catalogue beta (P x L) is op(A) = H, op(B) = beta^T: the batch is packed
   once, and beta streams from memory exactly once, each panel of NR items transposed in registers on its way to
   the kernel.  A block of 32 rows (MC) covers a batch, so B is packed once; a larger m packs B once per MC rows,
   which costs 1/MC of the arithmetic.  Partial tiles at the edges go through a small buffer.  Scratch lives on the
   stack (65 KiB): nothing is allocated. */
#define POLOPT__KC 256
#define POLOPT__MC 32 /* a multiple of every MR */

/* Rows ic.. ic+mc of op(A), columns pc.. pc+kc, as ceil(mc / MR) panels of kc x MR, zero-padded. */
static void polopt__pack_a(polopt_trans ta, const float *A, size_t lda, size_t ic, size_t mc, size_t pc, size_t kc,
                           size_t MR, float *out)
{
    size_t ir, p, r;
    for (ir = 0; ir < mc; ir += MR, out += kc * MR) {
        const size_t mr = mc - ir < MR ? mc - ir : MR;
        if (ta) { /* A is k x m: each column of a panel is contiguous in a row of A */
            for (p = 0; p < kc; ++p) {
                const float *src = A + (pc + p) * lda + ic + ir;
                for (r = 0; r < MR; ++r) out[p * MR + r] = r < mr ? src[r] : 0.0f;
            }
        } else {
            polopt__pack_t_c(kc, mr, MR, A + (ic + ir) * lda + pc, lda, out);
        }
    }
}

/* Columns jc.. jc+nr of op(B), rows pc.. pc+kc, as one panel of kc x NR, zero-padded. */
static void polopt__pack_b(const polopt__kernels *K, polopt_trans tb, const float *B, size_t ldb, size_t pc,
                           size_t kc, size_t jc, size_t nr, float *out)
{
    const size_t NR = K->nr;
    size_t p, j;
    if (tb) { /* B is n x k: the panel is a transpose of nr rows of B */
        if (nr == NR) K->pack_bt(kc, B + jc * ldb + pc, ldb, out);
        else polopt__pack_t_c(kc, nr, NR, B + jc * ldb + pc, ldb, out);
        return;
    }
    for (p = 0; p < kc; ++p) {
        const float *src = B + (pc + p) * ldb + jc;
        memcpy(out + p * NR, src, nr * sizeof *src);
        for (j = nr; j < NR; ++j) out[p * NR + j] = 0.0f;
    }
}

static void polopt__gemm_builtin(const polopt__kernels *K, polopt_trans ta, polopt_trans tb, size_t m, size_t n,
                                 size_t k, float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                                 float beta, float *C, size_t ldc)
{
    float apack[POLOPT__MC * POLOPT__KC] POLOPT__ALIGNED(64);
    float bpack[POLOPT__KC * POLOPT__NR_MAX] POLOPT__ALIGNED(64);
    float edge[POLOPT__MR_MAX * POLOPT__NR_MAX] POLOPT__ALIGNED(64);
    const size_t MR = K->mr, NR = K->nr;
    size_t pc, ic, jc, ir, r, j;
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        for (r = 0; r < m; ++r) polopt__scale(n, beta, C + r * ldc);
        return;
    }
    if (m == 1 && !ta) { /* one row of A (contiguous): a matrix-vector product, with no packing at all */
        if (tb) K->gemv_n(n, k, alpha, B, ldb, A, beta, C);
        else K->gemv_t(k, n, alpha, B, ldb, A, beta, C);
        return;
    }
    for (pc = 0; pc < k; pc += POLOPT__KC) {
        const size_t kc = k - pc < POLOPT__KC ? k - pc : POLOPT__KC;
        const float beta_pc = pc == 0 ? beta : 1.0f; /* later slices add to the first */
        for (ic = 0; ic < m; ic += POLOPT__MC) {
            const size_t mc = m - ic < POLOPT__MC ? m - ic : POLOPT__MC;
            polopt__pack_a(ta, A, lda, ic, mc, pc, kc, MR, apack);
            for (jc = 0; jc < n; jc += NR) {
                const size_t nr = n - jc < NR ? n - jc : NR;
                if (tb && jc + 2 * NR <= n) polopt__prefetch_rows(B + (jc + NR) * ldb, NR, ldb); /* the next panel */
                polopt__pack_b(K, tb, B, ldb, pc, kc, jc, nr, bpack);
                for (ir = 0; ir < mc; ir += MR) {
                    const size_t mr = mc - ir < MR ? mc - ir : MR;
                    float *c = C + (ic + ir) * ldc + jc;
                    if (mr == MR && nr == NR) {
                        K->gemm_micro(kc, apack + ir * kc, bpack, alpha, beta_pc, c, ldc);
                        continue;
                    }
                    K->gemm_micro(kc, apack + ir * kc, bpack, alpha, 0.0f, edge, NR); /* a partial tile */
                    for (r = 0; r < mr; ++r)
                        for (j = 0; j < nr; ++j) c[r * ldc + j] = polopt__blend(1.0f, edge[r * NR + j], beta_pc, c[r * ldc + j]);
                }
            }
        }
    }
}

/* ---- what the rest of the library calls: the best kernels (or CBLAS), arguments already checked ---- */

#ifdef POLOPT_USE_CBLAS
#define POLOPT__BLAS_OK(x) ((x) <= (size_t)INT_MAX)
#endif

static float polopt__dot(size_t n, const float *x, const float *y)
{
    return polopt__kern_auto()->dot(n, x, y);
}

static void polopt__axpy(size_t n, float alpha, const float *x, float *y)
{
    polopt__kern_auto()->axpy(n, alpha, x, y);
}

/* max of x (POLOPT_OK), or POLOPT_ERR_NONFINITE and *out_bad = the index of the first NaN or +inf. */
static polopt_result polopt__max_checked_k(const polopt__kernels *K, size_t n, const float *x, float *out_max,
                                           size_t *out_bad)
{
    size_t i;
    if (K->max(n, x, out_max)) return POLOPT_OK;
    for (i = 0; i < n && x[i] <= FLT_MAX; ++i) {}
    *out_bad = i;
    return POLOPT_ERR_NONFINITE;
}

static polopt_result polopt__max_checked(size_t n, const float *x, float *out_max, size_t *out_bad)
{
    return polopt__max_checked_k(polopt__kern_auto(), n, x, out_max, out_bad);
}

static double polopt__sum_exp(size_t n, const float *x, float mx, float inv_t, float *out)
{
    return polopt__kern_auto()->sum_exp(n, x, mx, inv_t, out);
}

static float polopt__dot_any(size_t n, const float *x, const float *y)
{
#ifdef POLOPT_USE_CBLAS
    if (POLOPT__BLAS_OK(n)) return cblas_sdot((int)n, x, 1, y, 1);
#endif
    return polopt__dot(n, x, y);
}

static void polopt__gemv_k(const polopt__kernels *K, polopt_trans trans, size_t m, size_t n, float alpha,
                           const float *A, size_t lda, const float *x, float beta, float *y)
{
    if (trans) K->gemv_t(m, n, alpha, A, lda, x, beta, y);
    else K->gemv_n(m, n, alpha, A, lda, x, beta, y);
}

static void polopt__gemv(polopt_trans trans, size_t m, size_t n, float alpha, const float *A, size_t lda,
                         const float *x, float beta, float *y)
{
#ifdef POLOPT_USE_CBLAS
    if (m && n && POLOPT__BLAS_OK(m) && POLOPT__BLAS_OK(n) && POLOPT__BLAS_OK(lda)) {
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, (int)m, (int)n, alpha, A, (int)lda, x, 1,
                    beta, y, 1);
        return;
    }
#endif
    polopt__gemv_k(polopt__kern_auto(), trans, m, n, alpha, A, lda, x, beta, y);
}

static void polopt__gemm(polopt_trans ta, polopt_trans tb, size_t m, size_t n, size_t k, float alpha,
                         const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
#ifdef POLOPT_USE_CBLAS
    if (m && n && k && POLOPT__BLAS_OK(m) && POLOPT__BLAS_OK(n) && POLOPT__BLAS_OK(k) && POLOPT__BLAS_OK(lda) &&
        POLOPT__BLAS_OK(ldb) && POLOPT__BLAS_OK(ldc)) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
#endif
    polopt__gemm_builtin(polopt__kern_auto(), ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- the public functions: argument checks, then the internal entry points ---- */

/* Whether a rows x cols matrix with leading dimension ld is valid and addressable (BLAS also asks ld >= 1). */
static int polopt__matrix_ok(size_t rows, size_t cols, size_t ld)
{
    if (ld < cols || ld == 0) return 0;
    return rows <= 1 || (SIZE_MAX - cols) / (rows - 1) >= ld;
}

static int polopt__gemv_args_ok(polopt_trans trans, size_t m, size_t n, const float *A, size_t lda, const float *x,
                                const float *y)
{
    if ((trans != POLOPT_NO_TRANS && trans != POLOPT_TRANS) || !polopt__matrix_ok(m, n, lda)) return 0;
    if ((trans ? n : m) && !y) return 0;
    return !(m && n && (!A || !x));
}

static int polopt__gemm_args_ok(polopt_trans ta, polopt_trans tb, size_t m, size_t n, size_t k, const float *A,
                                size_t lda, const float *B, size_t ldb, const float *C, size_t ldc)
{
    if ((ta != POLOPT_NO_TRANS && ta != POLOPT_TRANS) || (tb != POLOPT_NO_TRANS && tb != POLOPT_TRANS)) return 0;
    if (!polopt__matrix_ok(ta ? k : m, ta ? m : k, lda) || !polopt__matrix_ok(tb ? n : k, tb ? k : n, ldb) ||
        !polopt__matrix_ok(m, n, ldc))
        return 0;
    return !(m && n && (!C || (k && (!A || !B))));
}

POLOPT_DEF polopt_result polopt_dot(size_t n, const float *x, const float *y, float *out)
{
    if ((n && (!x || !y)) || !out) return POLOPT_ERR_INVALID_ARG;
    *out = polopt__dot_any(n, x, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_axpy(size_t n, float alpha, const float *x, float *y)
{
    if (n && (!x || !y)) return POLOPT_ERR_INVALID_ARG;
#ifdef POLOPT_USE_CBLAS
    if (POLOPT__BLAS_OK(n)) {
        cblas_saxpy((int)n, alpha, x, 1, y, 1);
        return POLOPT_OK;
    }
#endif
    polopt__axpy(n, alpha, x, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_scale(size_t n, float alpha, float *x)
{
    if (n && !x) return POLOPT_ERR_INVALID_ARG;
    polopt__scale(n, alpha, x); /* kept built in: BLAS sscal leaves NaN * 0 = NaN, this gives 0 */
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_nrm2(size_t n, const float *x, float *out)
{
    if ((n && !x) || !out) return POLOPT_ERR_INVALID_ARG;
    *out = polopt__nrm2(n, x); /* kept built in: double accumulation is both exact enough and safe */
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_gemv(polopt_trans trans, size_t m, size_t n, float alpha, const float *A,
                                     size_t lda, const float *x, float beta, float *y)
{
    if (!polopt__gemv_args_ok(trans, m, n, A, lda, x, y)) return POLOPT_ERR_INVALID_ARG;
    polopt__gemv(trans, m, n, alpha, A, lda, x, beta, y);
    return POLOPT_OK;
}

/* A, lda and rows (each below m) of gemv_rows and gemv_rows_t; their x and y are checked by each. */
static int polopt__gemv_rows_args_ok(size_t m, size_t n, const float *A, size_t lda, size_t k, const uint32_t *rows)
{
    size_t i;
    if (k == 0) return 1;
    if (!rows || (n && !A) || lda < n) return 0;
    for (i = 0; i < k; ++i)
        if (rows[i] >= m) return 0;
    return 1;
}

POLOPT_DEF polopt_result polopt_gemv_rows(size_t m, size_t n, const float *A, size_t lda, size_t k,
                                          const uint32_t *rows, const float *x, float *y)
{
    return polopt_gemv_rows_isa(POLOPT_ISA_AUTO, m, n, A, lda, k, rows, x, y); /* no CBLAS routine gathers */
}

POLOPT_DEF polopt_result polopt_gemv_rows_t(size_t m, size_t n, const float *A, size_t lda, size_t k,
                                            const uint32_t *rows, const float *x, float *y)
{
    return polopt_gemv_rows_t_isa(POLOPT_ISA_AUTO, m, n, A, lda, k, rows, x, y);
}

POLOPT_DEF polopt_result polopt_gemm(polopt_trans trans_a, polopt_trans trans_b, size_t m, size_t n, size_t k,
                                     float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                                     float beta, float *C, size_t ldc)
{
    if (!polopt__gemm_args_ok(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)) return POLOPT_ERR_INVALID_ARG;
    polopt__gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_dot_isa(polopt_isa isa, size_t n, const float *x, const float *y, float *out)
{
    const polopt__kernels *K = polopt__kern(isa);
    if (!K) return POLOPT_ERR_UNSUPPORTED;
    if ((n && (!x || !y)) || !out) return POLOPT_ERR_INVALID_ARG;
    *out = K->dot(n, x, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_axpy_isa(polopt_isa isa, size_t n, float alpha, const float *x, float *y)
{
    const polopt__kernels *K = polopt__kern(isa);
    if (!K) return POLOPT_ERR_UNSUPPORTED;
    if (n && (!x || !y)) return POLOPT_ERR_INVALID_ARG;
    K->axpy(n, alpha, x, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_gemv_isa(polopt_isa isa, polopt_trans trans, size_t m, size_t n, float alpha,
                                         const float *A, size_t lda, const float *x, float beta, float *y)
{
    const polopt__kernels *K = polopt__kern(isa);
    if (!K) return POLOPT_ERR_UNSUPPORTED;
    if (!polopt__gemv_args_ok(trans, m, n, A, lda, x, y)) return POLOPT_ERR_INVALID_ARG;
    polopt__gemv_k(K, trans, m, n, alpha, A, lda, x, beta, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_gemv_rows_t_isa(polopt_isa isa, size_t m, size_t n, const float *A, size_t lda,
                                                size_t k, const uint32_t *rows, const float *x, float *y)
{
    const polopt__kernels *K = polopt__kern(isa);
    if (!K) return POLOPT_ERR_UNSUPPORTED;
    if ((n && !y) || (k && !x) || !polopt__gemv_rows_args_ok(m, n, A, lda, k, rows)) return POLOPT_ERR_INVALID_ARG;
    if (n && k) K->gemv_rows_t(k, n, A, lda, rows, x, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_gemv_rows_isa(polopt_isa isa, size_t m, size_t n, const float *A, size_t lda,
                                              size_t k, const uint32_t *rows, const float *x, float *y)
{
    const polopt__kernels *K = polopt__kern(isa);
    size_t i;
    if (!K) return POLOPT_ERR_UNSUPPORTED;
    if ((k && !y) || (k && n && !x) || !polopt__gemv_rows_args_ok(m, n, A, lda, k, rows))
        return POLOPT_ERR_INVALID_ARG;
    if (n == 0) {
        for (i = 0; i < k; ++i) y[i] = 0.0f;
        return POLOPT_OK;
    }
    K->gemv_rows(k, n, A, lda, rows, x, y);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_gemm_isa(polopt_isa isa, polopt_trans trans_a, polopt_trans trans_b, size_t m,
                                         size_t n, size_t k, float alpha, const float *A, size_t lda, const float *B,
                                         size_t ldb, float beta, float *C, size_t ldc)
{
    const polopt__kernels *K = polopt__kern(isa);
    if (!K) return POLOPT_ERR_UNSUPPORTED;
    if (!polopt__gemm_args_ok(trans_a, trans_b, m, n, k, A, lda, B, ldb, C, ldc)) return POLOPT_ERR_INVALID_ARG;
    polopt__gemm_builtin(K, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return POLOPT_OK;
}

/* >>numerics ---------------------------------------------------------------------------------------------- */

/* Shared front of the softmax family: argument checks, then the max (NaN and +inf rejected) and 1 / T. */
static polopt_result polopt__softmax_prep(const polopt__kernels *K, size_t n, const float *x, float temperature,
                                          float *out_max, float *out_inv_t)
{
    size_t bad = 0;
    polopt_result rc;
    if (n == 0 || !x || !(temperature > 0.0f && temperature <= FLT_MAX)) return POLOPT_ERR_INVALID_ARG;
    rc = polopt__max_checked_k(K, n, x, out_max, &bad);
    if (rc != POLOPT_OK) return rc;
    *out_inv_t = 1.0f / temperature;
    if (!(*out_inv_t <= FLT_MAX)) return POLOPT_ERR_INVALID_ARG; /* temperature below ~3e-39 */
    return POLOPT_OK;
}

static polopt_result polopt__logsumexp(const polopt__kernels *K, size_t n, const float *x, float temperature,
                                       double *out)
{
    float mx, inv_t;
    polopt_result rc = out ? polopt__softmax_prep(K, n, x, temperature, &mx, &inv_t) : POLOPT_ERR_INVALID_ARG;
    if (rc != POLOPT_OK) return rc;
    if (mx == -INFINITY) {
        *out = -INFINITY;
        return POLOPT_OK;
    }
    *out = (double)mx / (double)temperature + log(K->sum_exp(n, x, mx, inv_t, NULL));
    return POLOPT_OK;
}

static polopt_result polopt__softmax(const polopt__kernels *K, size_t n, const float *x, float temperature,
                                     float *out)
{
    float mx, inv_t, inv_sum;
    size_t i;
    polopt_result rc = out ? polopt__softmax_prep(K, n, x, temperature, &mx, &inv_t) : POLOPT_ERR_INVALID_ARG;
    if (rc != POLOPT_OK) return rc;
    if (mx == -INFINITY) return POLOPT_ERR_DOMAIN; /* every entry masked: no distribution */
    inv_sum = (float)(1.0 / K->sum_exp(n, x, mx, inv_t, out)); /* the sum is >= 1: the max term is 1 */
    for (i = 0; i < n; ++i) out[i] *= inv_sum;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_logsumexp(size_t n, const float *x, float temperature, double *out)
{
    return polopt__logsumexp(polopt__kern_auto(), n, x, temperature, out);
}

POLOPT_DEF polopt_result polopt_softmax(size_t n, const float *x, float temperature, float *out)
{
    return polopt__softmax(polopt__kern_auto(), n, x, temperature, out);
}

POLOPT_DEF polopt_result polopt_logsumexp_isa(polopt_isa isa, size_t n, const float *x, float temperature,
                                              double *out)
{
    const polopt__kernels *K = polopt__kern(isa);
    return K ? polopt__logsumexp(K, n, x, temperature, out) : POLOPT_ERR_UNSUPPORTED;
}

POLOPT_DEF polopt_result polopt_softmax_isa(polopt_isa isa, size_t n, const float *x, float temperature, float *out)
{
    const polopt__kernels *K = polopt__kern(isa);
    return K ? polopt__softmax(K, n, x, temperature, out) : POLOPT_ERR_UNSUPPORTED;
}

POLOPT_DEF polopt_result polopt_log_softmax(size_t n, const float *x, float temperature, float *out)
{
    const polopt__kernels *K = polopt__kern_auto();
    float mx, inv_t, log_sum;
    size_t i;
    polopt_result rc = out ? polopt__softmax_prep(K, n, x, temperature, &mx, &inv_t) : POLOPT_ERR_INVALID_ARG;
    if (rc != POLOPT_OK) return rc;
    if (mx == -INFINITY) return POLOPT_ERR_DOMAIN;
    log_sum = (float)log(K->sum_exp(n, x, mx, inv_t, NULL));
    for (i = 0; i < n; ++i) out[i] = (x[i] - mx) * inv_t - log_sum;
    return POLOPT_OK;
}

/* The heap behind polopt_topk: a min-heap of indices ordered by "worse" (smaller value, then larger index: the order
   of polopt__worse_cand, on indices into x, since topk keeps its heap in out_index and allocates nothing),
   so the root is the weakest of the k kept and a newcomer only has to beat the root. */
static int polopt__worse(const float *x, uint32_t a, uint32_t b)
{
    return x[a] < x[b] || (x[a] == x[b] && a > b);
}

static void polopt__sift_down(const float *x, uint32_t *heap, size_t size, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        uint32_t tmp;
        if (l < size && polopt__worse(x, heap[l], heap[w])) w = l;
        if (r < size && polopt__worse(x, heap[r], heap[w])) w = r;
        if (w == i) return;
        tmp = heap[i];
        heap[i] = heap[w];
        heap[w] = tmp;
        i = w;
    }
}

POLOPT_DEF polopt_result polopt_topk(size_t n, const float *x, size_t k, uint32_t *out_index, float *out_value)
{
    size_t i;
    int bad = 0;
    if (!x || k == 0 || k > n || !polopt__ids_fit(n) || !out_index) return POLOPT_ERR_INVALID_ARG;
    for (i = 0; i < n; ++i) bad |= x[i] != x[i];
    if (bad) return POLOPT_ERR_NONFINITE;
    for (i = 0; i < k; ++i) out_index[i] = (uint32_t)i;
    for (i = k / 2; i-- > 0;) polopt__sift_down(x, out_index, k, i);
    /* Later indices lose ties, so a newcomer must be strictly greater than the weakest kept. */
    for (i = k; i < n; ++i)
        if (x[i] > x[out_index[0]]) {
            out_index[0] = (uint32_t)i;
            polopt__sift_down(x, out_index, k, 0);
        }
    /* Heap sort: move the weakest to the back, one at a time, leaving the best first. */
    for (i = k; i-- > 1;) {
        const uint32_t tmp = out_index[0];
        out_index[0] = out_index[i];
        out_index[i] = tmp;
        polopt__sift_down(x, out_index, i, 0);
    }
    if (out_value)
        for (i = 0; i < k; ++i) out_value[i] = x[out_index[i]];
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_argmax(size_t n, const float *x, uint32_t *out_index)
{
    size_t i, best = 0;
    if (n == 0 || !x || !out_index || !polopt__ids_fit(n)) return POLOPT_ERR_INVALID_ARG;
    for (i = 0; i < n; ++i) {
        if (x[i] != x[i]) return POLOPT_ERR_NONFINITE;
        if (x[i] > x[best]) best = i;
    }
    *out_index = (uint32_t)best;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_check_finite(size_t n, const float *x, size_t *out_first_bad)
{
    size_t i;
    int bad = 0;
    if (n && !x) return POLOPT_ERR_INVALID_ARG;
    for (i = 0; i < n; ++i) bad |= !(x[i] >= -FLT_MAX && x[i] <= FLT_MAX);
    if (!bad) return POLOPT_OK;
    for (i = 0; x[i] >= -FLT_MAX && x[i] <= FLT_MAX; ++i) {}
    if (out_first_bad) *out_first_bad = i;
    return POLOPT_ERR_NONFINITE;
}

/* >>files ------------------------------------------------------------------------------------------------ */

/* What every file polopt writes shares: little-endian fields whatever the host, a streaming checksum, and one
   writer/reader pair that targets either a FILE or a memory buffer, so files and buffers cannot disagree. */

static int polopt__host_is_little_endian(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void polopt__put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void polopt__put_u64(unsigned char *p, uint64_t v)
{
    polopt__put_u32(p, (uint32_t)v);
    polopt__put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t polopt__get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t polopt__get_u64(const unsigned char *p)
{
    return (uint64_t)polopt__get_u32(p) | (uint64_t)polopt__get_u32(p + 4) << 32;
}

static int polopt__all_zero(const unsigned char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i)
        if (p[i]) return 0;
    return 1;
}

/* Streaming checksum: four lanes of 64-bit words mixed by multiply-rotate, then a splitmix avalanche of the
   lanes, the tail and the length.  Words are read little-endian, so every host computes the same value. */
typedef struct polopt__checksum {
    uint64_t lane[4], total;
    unsigned char buf[32];
    size_t buf_len;
} polopt__checksum;

#define POLOPT__CK_P1 0x9e3779b185ebca87ULL
#define POLOPT__CK_P2 0xc2b2ae3d27d4eb4fULL

static void polopt__ck_init(polopt__checksum *c)
{
    c->lane[0] = POLOPT__CK_P1 + POLOPT__CK_P2;
    c->lane[1] = POLOPT__CK_P2;
    c->lane[2] = 0;
    c->lane[3] = 0 - POLOPT__CK_P1;
    c->total = 0;
    c->buf_len = 0;
}

static void polopt__ck_block(polopt__checksum *c, const unsigned char *p)
{
    int j;
    for (j = 0; j < 4; ++j) c->lane[j] = polopt__rotl(c->lane[j] + polopt__get_u64(p + 8 * j) * POLOPT__CK_P2, 31) * POLOPT__CK_P1;
}

static void polopt__ck_update(polopt__checksum *c, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    c->total += n;
    if (c->buf_len) {
        const size_t take = n < 32 - c->buf_len ? n : 32 - c->buf_len;
        memcpy(c->buf + c->buf_len, p, take);
        c->buf_len += take, p += take, n -= take;
        if (c->buf_len < 32) return;
        polopt__ck_block(c, c->buf);
        c->buf_len = 0;
    }
    for (; n >= 32; p += 32, n -= 32) polopt__ck_block(c, p);
    memcpy(c->buf, p, n);
    c->buf_len = n;
}

static uint64_t polopt__ck_final(const polopt__checksum *c)
{
    uint64_t h = c->total * POLOPT__CK_P1, k;
    size_t i;
    int j;
    for (j = 0; j < 4; ++j) h = polopt__rotl(h ^ c->lane[j], 27) * POLOPT__CK_P1 + POLOPT__CK_P2;
    for (i = 0; i < c->buf_len; ++i) h = polopt__rotl(h ^ (c->buf[i] * POLOPT__CK_P2), 11) * POLOPT__CK_P1;
    k = h;
    return polopt__splitmix64(&k);
}

POLOPT_DEF polopt_result polopt_checksum64(const void *data, size_t size, uint64_t *out)
{
    polopt__checksum c;
    if ((size && !data) || !out) return POLOPT_ERR_INVALID_ARG;
    polopt__ck_init(&c);
    polopt__ck_update(&c, data, size);
    *out = polopt__ck_final(&c);
    return POLOPT_OK;
}

/* POSIX file descriptors, for saving (see polopt__save_atomic). */
#if defined(__unix__) || defined(__APPLE__)
#define POLOPT__POSIX_FILES 1
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h> /* gettimeofday: the wall-clock seconds of training statistics */
#include <unistd.h>
#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif
#if !defined(__cplusplus)
extern int fchmod(int fd, mode_t mode); /* POSIX; strict C99 headers hide it (C++ compilers show it) */
#endif
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static int polopt__write_fd(int fd, const void *data, size_t n)
{
    const char *p = (const char *)data;
    while (n > 0) {
        const ssize_t got = write(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got, n -= (size_t)got;
    }
    return 0;
}

/* Flush the directory that holds path, so that a rename into it is on the disk. */
static int polopt__sync_dir(const char *path, char *scratch)
{
    const char *slash = strrchr(path, '/');
    int fd, rc;
    if (!slash) {
        strcpy(scratch, ".");
    } else {
        const size_t len = slash == path ? 1 : (size_t)(slash - path);
        memcpy(scratch, path, len);
        scratch[len] = '\0';
    }
    fd = open(scratch, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    rc = fsync(fd);
    /* some file systems cannot flush a directory (EINVAL): the rename is then as durable as they allow */
    if (rc != 0 && (errno == EINVAL || errno == EBADF)) rc = 0;
    close(fd);
    return rc;
}
#else
static int polopt__write_fd(int fd, const void *data, size_t n)
{
    (void)fd, (void)data, (void)n;
    return -1;
}
#endif

/* Where bytes go (a FILE, a buffer, or nowhere: counting and checksumming only) and where they come from. */
typedef struct polopt__io {
    FILE *file;
    int fd, has_fd;    /* writer: a POSIX file descriptor (polopt__save_atomic) */
    unsigned char *buf; /* writer: the output buffer; reader: the input */
    const unsigned char *in;
    size_t size, pos; /* buffer size, bytes moved so far */
    polopt__checksum ck;
} polopt__io;

static polopt_result polopt__write(polopt__io *w, const void *data, size_t n)
{
    if (w->has_fd) {
        if (polopt__write_fd(w->fd, data, n) != 0) return POLOPT_ERR_IO;
    } else if (w->file) {
        if (n && fwrite(data, 1, n, w->file) != n) return POLOPT_ERR_IO;
    } else if (w->buf) {
        if (n > w->size - w->pos) return POLOPT_ERR_TRUNCATED;
        memcpy(w->buf + w->pos, data, n);
    }
    w->pos += n;
    return POLOPT_OK;
}

/* n 32-bit words (uint32_t or float bits) in little-endian order, checksummed as written. */
static polopt_result polopt__write_words(polopt__io *w, const void *words, size_t n)
{
    unsigned char tmp[1024];
    const unsigned char *p = (const unsigned char *)words;
    size_t i, chunk;
    polopt_result rc;
    if (polopt__host_is_little_endian()) {
        polopt__ck_update(&w->ck, words, n * 4);
        return polopt__write(w, words, n * 4);
    }
    for (; n; n -= chunk, p += chunk * 4) {
        chunk = n < sizeof tmp / 4 ? n : sizeof tmp / 4;
        for (i = 0; i < chunk; ++i) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            polopt__put_u32(tmp + 4 * i, v);
        }
        polopt__ck_update(&w->ck, tmp, chunk * 4);
        if ((rc = polopt__write(w, tmp, chunk * 4)) != POLOPT_OK) return rc;
    }
    return POLOPT_OK;
}

static polopt_result polopt__write_bytes(polopt__io *w, const void *data, size_t n)
{
    polopt__ck_update(&w->ck, data, n);
    return polopt__write(w, data, n);
}

/* Read exactly n bytes, checksummed; POLOPT_ERR_TRUNCATED if the input ends first. */
static polopt_result polopt__read_bytes(polopt__io *r, void *data, size_t n)
{
    if (r->file) {
        if (n && fread(data, 1, n, r->file) != n) return ferror(r->file) ? POLOPT_ERR_IO : POLOPT_ERR_TRUNCATED;
    } else {
        if (n > r->size - r->pos) return POLOPT_ERR_TRUNCATED;
        memcpy(data, r->in + r->pos, n);
    }
    r->pos += n;
    polopt__ck_update(&r->ck, data, n);
    return POLOPT_OK;
}

static polopt_result polopt__read_words(polopt__io *r, void *words, size_t n)
{
    polopt_result rc = polopt__read_bytes(r, words, n * 4);
    if (rc == POLOPT_OK && !polopt__host_is_little_endian()) {
        unsigned char *p = (unsigned char *)words;
        size_t i;
        for (i = 0; i < n; ++i) {
            const uint32_t v = polopt__get_u32(p + 4 * i);
            memcpy(p + 4 * i, &v, 4);
        }
    }
    return rc;
}

/* Saving a file safely.  The content goes to a temporary file beside path with a name no other writer uses,
   created exclusively (an existing file or a planted link under that name is never opened), flushed to the disk
   (fsync), given the mode of the file it replaces, and renamed over path only when complete; then the directory is
   flushed too, so the rename survives a power loss.  A failure at any point leaves path as it was.  On systems
   without POSIX files, a plain fopen/rename does the same minus the exclusive creation and the flushes. */
static polopt_result polopt__save_atomic(const char *path, const polopt_hooks *hooks, polopt_error *err,
                                         const char *fn, polopt_result (*emit)(const void *, polopt__io *),
                                         const void *ctx)
{
    polopt_result rc = POLOPT_OK;
    const size_t len = strlen(path);
    char *tmp = (char *)polopt__alloc(hooks, len + 40, 1, &rc); /* path + ".<16 hex digits>.tmp" */
    polopt__io w;
    const char *step = "write";
    if (!tmp) return polopt__fail(err, hooks, rc, "%s: cannot allocate a file name", fn);
    memset(&w, 0, sizeof w);
#ifdef POLOPT__POSIX_FILES
    {
        /* a name of 64 random-looking bits from the process, the time, the stack and the path; O_EXCL makes a
           collision (or anything planted under the name) a retry, never a shared or followed file */
        uint64_t h = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uint64_t)clock() ^ (uint64_t)(uintptr_t)&w;
        struct stat st;
        int attempt, fd = -1, have_mode = stat(path, &st) == 0 && S_ISREG(st.st_mode);
        for (attempt = 0; attempt < 64 && fd < 0; ++attempt) {
            h += (uint64_t)(uintptr_t)tmp + (uint64_t)len + (uint64_t)attempt;
            sprintf(tmp, "%s.%016llx.tmp", path, (unsigned long long)polopt__splitmix64(&h));
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            if (fd < 0 && errno != EEXIST) break;
        }
        if (fd < 0) {
            rc = polopt__fail(err, hooks, POLOPT_ERR_IO, "%s: cannot create a temporary file beside %s", fn, path);
            polopt__dealloc(hooks, tmp);
            return rc;
        }
        w.fd = fd, w.has_fd = 1;
        rc = emit(ctx, &w);
        if (rc == POLOPT_OK && have_mode && fchmod(fd, st.st_mode & 07777) != 0) rc = POLOPT_ERR_IO, step = "chmod";
        if (rc == POLOPT_OK && fsync(fd) != 0) rc = POLOPT_ERR_IO, step = "fsync";
        if (close(fd) != 0 && rc == POLOPT_OK) rc = POLOPT_ERR_IO, step = "close";
        if (rc == POLOPT_OK && rename(tmp, path) != 0) rc = POLOPT_ERR_IO, step = "rename";
        if (rc != POLOPT_OK) unlink(tmp);
        else if (polopt__sync_dir(path, tmp) != 0) rc = POLOPT_ERR_IO, step = "fsync of the directory";
    }
#else
    sprintf(tmp, "%s.tmp", path);
    w.file = fopen(tmp, "wb");
    if (!w.file) {
        rc = polopt__fail(err, hooks, POLOPT_ERR_IO, "%s: cannot create %s", fn, tmp);
        polopt__dealloc(hooks, tmp);
        return rc;
    }
    rc = emit(ctx, &w);
    if (fclose(w.file) != 0 && rc == POLOPT_OK) rc = POLOPT_ERR_IO;
    if (rc == POLOPT_OK && rename(tmp, path) != 0) rc = POLOPT_ERR_IO, step = "rename";
    if (rc != POLOPT_OK) remove(tmp);
#endif
    if (rc != POLOPT_OK)
        rc = polopt__fail(err, hooks, rc, "%s: writing %s failed at the %s (%s); the previous file, if any, is unchanged",
                          fn, path, step, polopt_strerror(rc));
    polopt__dealloc(hooks, tmp);
    return rc;
}

/* Every polopt file starts with a 128-byte header: 0 magic (8 bytes), 8 u32 format version, 12 u32 header bytes
   (128), 16 u32 element type (1: IEEE float32), 20 u32 element size (4), then fields of its own up to byte 120,
   72 u64 payload bytes and 80 u64 payload checksum at fixed places, and 120 u64 checksum of bytes 0..119. */
#define POLOPT__HEADER_BYTES 128

static void polopt__header_begin(unsigned char *h, const char *magic, uint32_t version)
{
    memset(h, 0, POLOPT__HEADER_BYTES);
    memcpy(h, magic, 8);
    polopt__put_u32(h + 8, version);
    polopt__put_u32(h + 12, POLOPT__HEADER_BYTES);
    polopt__put_u32(h + 16, 1);
    polopt__put_u32(h + 20, 4);
}

/* Record the payload (size and checksum, from a counting pass) and checksum the header. */
static void polopt__header_seal(unsigned char *h, const polopt__io *payload_probe)
{
    uint64_t ck;
    polopt__put_u64(h + 72, payload_probe->pos);
    polopt__put_u64(h + 80, polopt__ck_final(&payload_probe->ck));
    polopt_checksum64(h, 120, &ck);
    polopt__put_u64(h + 120, ck);
}

/* Read and check the common part of a header: present, our magic, our version, intact, float32.  A wrong version
   is reported before the checksum, since another version may checksum differently. */
static polopt_result polopt__header_read(polopt__io *r, unsigned char *h, const char *magic, uint32_t version,
                                         const char *what, polopt_error *err, const polopt_hooks *hooks,
                                         const char *fn, const char *source)
{
    uint64_t ck;
    uint32_t v;
    polopt_result rc = polopt__read_bytes(r, h, POLOPT__HEADER_BYTES);
    if (rc != POLOPT_OK)
        return polopt__fail(err, hooks, rc, "%s: %s is shorter than the %d-byte header", fn, source,
                            POLOPT__HEADER_BYTES);
    if (memcmp(h, magic, 8) != 0)
        return polopt__fail(err, hooks, POLOPT_ERR_FORMAT, "%s: %s is not a polopt %s (bad magic)", fn, source, what);
    v = polopt__get_u32(h + 8);
    if (v != version)
        return polopt__fail(err, hooks, POLOPT_ERR_VERSION, "%s: %s has format version %u; this build reads version %u",
                            fn, source, v, version);
    polopt_checksum64(h, 120, &ck);
    if (ck != polopt__get_u64(h + 120))
        return polopt__fail(err, hooks, POLOPT_ERR_CHECKSUM, "%s: %s: the header checksum does not match", fn, source);
    if (polopt__get_u32(h + 12) != POLOPT__HEADER_BYTES || polopt__get_u32(h + 16) != 1 || polopt__get_u32(h + 20) != 4)
        return polopt__fail(err, hooks, POLOPT_ERR_FORMAT,
                            "%s: %s: unsupported header size or element type (only float32 is read)", fn, source);
    return POLOPT_OK;
}

/* After the header: the bytes available (when known) must be exactly the payload the header announces. */
static polopt_result polopt__payload_size_check(size_t available, size_t payload, uint64_t announced,
                                                polopt_error *err, const polopt_hooks *hooks, const char *fn,
                                                const char *source)
{
    if (payload == 0 || (uint64_t)payload != announced)
        return polopt__fail(err, hooks, payload == 0 ? POLOPT_ERR_OVERFLOW : POLOPT_ERR_FORMAT,
                            "%s: %s: the payload size %llu does not match the sizes in the header", fn, source,
                            (unsigned long long)announced);
    if (available != (size_t)-1 && available - POLOPT__HEADER_BYTES != payload)
        return polopt__fail(err, hooks,
                            available - POLOPT__HEADER_BYTES < payload ? POLOPT_ERR_TRUNCATED : POLOPT_ERR_FORMAT,
                            "%s: %s holds %lu payload bytes; the header says %lu", fn, source,
                            (unsigned long)(available - POLOPT__HEADER_BYTES), (unsigned long)payload);
    return POLOPT_OK;
}

/* After the payload: its checksum, and nothing after it. */
static polopt_result polopt__payload_end_check(polopt__io *r, const unsigned char *h, polopt_error *err,
                                               const polopt_hooks *hooks, const char *fn, const char *source)
{
    if (polopt__ck_final(&r->ck) != polopt__get_u64(h + 80))
        return polopt__fail(err, hooks, POLOPT_ERR_CHECKSUM, "%s: %s: the payload checksum does not match", fn, source);
    if (r->file && fgetc(r->file) != EOF)
        return polopt__fail(err, hooks, POLOPT_ERR_FORMAT, "%s: %s has bytes after the payload", fn, source);
    return POLOPT_OK;
}

/* Open path for reading with its size when the system tells it (so truncation is found before any allocation). */
static int polopt__is_directory(const char *path)
{
#ifdef POLOPT__POSIX_FILES
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
#else
    (void)path;
    return 0;
#endif
}

static FILE *polopt__open_read(const char *path, size_t *out_available)
{
    FILE *f;
    long end;
    *out_available = (size_t)-1;
    if (polopt__is_directory(path)) return NULL; /* fopen opens a directory, and reading it fails */
    f = fopen(path, "rb");
    if (!f) return NULL;
    end = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (fseek(f, 0, SEEK_SET) != 0) end = -1;
    if (end >= POLOPT__HEADER_BYTES) *out_available = (size_t)end;
    return f;
}

/* Read an object from a file (path) or a memory buffer with the given reader, which checks everything and leaves
   the object empty on failure.  The one loading path of every file type. */
typedef polopt_result (*polopt__reader)(void *obj, polopt__io *r, size_t available, const char *fn, const char *source);

static polopt_result polopt__load(const char *path, const void *buffer, size_t size, polopt__reader read, void *obj,
                                  polopt_error *err, const polopt_hooks *hooks, const char *fn)
{
    polopt__io r;
    size_t available = size >= POLOPT__HEADER_BYTES ? size : (size_t)-1;
    polopt_result rc;
    memset(&r, 0, sizeof r);
    polopt__ck_init(&r.ck);
    if (path) {
        r.file = polopt__open_read(path, &available);
        if (!r.file)
            return polopt__fail(err, hooks, POLOPT_ERR_IO, "%s: cannot open %s%s", fn, path,
                                polopt__is_directory(path) ? " (it is a directory)" : "");
    } else {
        if (!buffer) return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG, "%s: buffer is NULL", fn);
        r.in = (const unsigned char *)buffer;
        r.size = size;
    }
    rc = read(obj, &r, available, fn, path ? path : "the buffer");
    if (r.file) fclose(r.file);
    return rc;
}

/* >>mips -------------------------------------------------------------------------------------------------- */

#if !defined(POLOPT_NO_THREADS) && (defined(__unix__) || defined(__APPLE__))
#define POLOPT__THREADS 1
#include <pthread.h>
#else
#define POLOPT__THREADS 0
#endif

#define POLOPT__MIPS_MAX_M 255     /* links per level fit the file format's checks and the stack buffers */
#define POLOPT__MIPS_MAX_LEVEL 30  /* levels are floor(-ln U / ln M): 30 is out of reach for any P < 2^32 */
#define POLOPT__MIPS_MAX_DIM (1u << 20)
#define POLOPT__EXACT_QUERIES 32   /* queries per pass of the exact search over the items */
#define POLOPT__EXACT_BLOCK 4096   /* items per tile of the exact search */
#define POLOPT__TINY_SQNORM 1e-30f /* floor of ||beta||^2, so zero vectors have a finite Moebius distance */

typedef struct polopt__cand {
    float s; /* similarity: larger is closer */
    uint32_t id;
} polopt__cand;

/* Binary heaps of candidates, one implementation for every search: a max-heap (best on top: the HNSW frontier)
   and a min-heap (worst on top: the results kept, by HNSW and by exact search).  The order is the score; with ties
   = 1 an equal score goes to the lower id, as in polopt_topk, so exact results do not depend on the order of the
   scan.  HNSW passes ties = 0: the id comparison costs its search about 8% and the graph search is approximate
   anyway.  The functions are always inlined, so each call site compiles for its constant ties.  The search spends
   a fifth of its time here. */
static POLOPT__INLINE int polopt__worse_cand(polopt__cand a, polopt__cand b, int ties)
{
    return a.s < b.s || (ties && a.s == b.s && a.id > b.id);
}

static POLOPT__INLINE void polopt__maxheap_push(polopt__cand *h, size_t *n, polopt__cand c)
{
    size_t i = (*n)++;
    while (i && polopt__worse_cand(h[(i - 1) / 2], c, 0)) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static POLOPT__INLINE void polopt__minheap_push(polopt__cand *h, size_t *n, polopt__cand c, int ties)
{
    size_t i = (*n)++;
    while (i && polopt__worse_cand(c, h[(i - 1) / 2], ties)) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

/* Put c in place of entry i of a heap of n and sift it down (i = 0: the top). */
static POLOPT__INLINE void polopt__maxheap_sift_at(polopt__cand *h, size_t n, size_t i, polopt__cand c)
{
    size_t child;
    while ((child = 2 * i + 1) < n) {
        if (child + 1 < n && polopt__worse_cand(h[child], h[child + 1], 0)) ++child;
        if (!polopt__worse_cand(c, h[child], 0)) break;
        h[i] = h[child];
        i = child;
    }
    h[i] = c;
}

static POLOPT__INLINE void polopt__minheap_sift_at(polopt__cand *h, size_t n, size_t i, polopt__cand c)
{
    size_t child;
    while ((child = 2 * i + 1) < n) {
        if (child + 1 < n && polopt__worse_cand(h[child + 1], h[child], 0)) ++child;
        if (!polopt__worse_cand(h[child], c, 0)) break;
        h[i] = h[child];
        i = child;
    }
    h[i] = c;
}

/* n entries in any order made a heap in O(n) (Floyd 1964: sift down from the last parent up); n pushes of a list
   in order, as warm-started searches get theirs, cost O(n log n). */
static void polopt__maxheap_build(polopt__cand *h, size_t n)
{
    size_t i = n / 2;
    while (i-- > 0) polopt__maxheap_sift_at(h, n, i, h[i]);
}

static void polopt__minheap_build(polopt__cand *h, size_t n)
{
    size_t i = n / 2;
    while (i-- > 0) polopt__minheap_sift_at(h, n, i, h[i]);
}

/* Put c in place of the top of a heap of n and sift it down. */
static POLOPT__INLINE void polopt__maxheap_sift(polopt__cand *h, size_t n, polopt__cand c)
{
    size_t i = 0, child;
    while ((child = 2 * i + 1) < n) {
        if (child + 1 < n && polopt__worse_cand(h[child], h[child + 1], 0)) ++child;
        if (!polopt__worse_cand(c, h[child], 0)) break;
        h[i] = h[child];
        i = child;
    }
    h[i] = c;
}

static POLOPT__INLINE void polopt__minheap_sift(polopt__cand *h, size_t n, polopt__cand c, int ties)
{
    size_t i = 0, child;
    while ((child = 2 * i + 1) < n) {
        if (child + 1 < n && polopt__worse_cand(h[child + 1], h[child], ties)) ++child;
        if (!polopt__worse_cand(h[child], c, ties)) break;
        h[i] = h[child];
        i = child;
    }
    h[i] = c;
}

static POLOPT__INLINE polopt__cand polopt__maxheap_pop(polopt__cand *h, size_t *n)
{
    const polopt__cand top = h[0];
    if (--*n) polopt__maxheap_sift(h, *n, h[*n]);
    return top;
}

static POLOPT__INLINE polopt__cand polopt__minheap_pop(polopt__cand *h, size_t *n, int ties)
{
    const polopt__cand top = h[0];
    if (--*n) polopt__minheap_sift(h, *n, h[*n], ties);
    return top;
}

static const float *polopt__mips_vec(const polopt_mips *ix, uint32_t a)
{
    return ix->vectors + (size_t)a * ix->dim;
}

static void polopt__prefetch_vector(const polopt_mips *ix, uint32_t a)
{
    const char *p = (const char *)polopt__mips_vec(ix, a);
    size_t off;
    for (off = 0; off < ix->dim * sizeof(float); off += 64) POLOPT__PREFETCH(p + off);
}

/* Minus the squared Moebius distance ||y_a - y_b||^2 = (|a|^2 + |b|^2 - 2 a.b) / (|a|^2 |b|^2): the similarity
   the graph is built with.  a is given by its vector and squared norm, b by its id. */
/* The kernels' dot and axpy, chosen once before a loop (polopt__dot and polopt__axpy ask the CPU at every call). */
typedef float (*polopt__dot_fn)(size_t n, const float *x, const float *y);
typedef void (*polopt__axpy_fn)(size_t n, float alpha, const float *x, float *y);

static float polopt__mobius_sim(const polopt_mips *ix, polopt__dot_fn dot, const float *a, float a_sq, uint32_t b)
{
    const float b_sq = ix->sqnorms[b];
    const float num = a_sq + b_sq - 2.0f * dot(ix->dim, a, polopt__mips_vec(ix, b));
    return -(num > 0.0f ? num : 0.0f) / (a_sq * b_sq);
}

/* The links of node a at level l: [count, ids...]. */
static uint32_t *polopt__links(const polopt_mips *ix, uint32_t a, int l)
{
    if (l == 0) return ix->links0 + (size_t)a * (1 + 2 * ix->M);
    return ix->upper + ix->upper_offset[a] + (size_t)(l - 1) * (1 + ix->M);
}

/* Link lists are guarded by striped mutexes during a multithreaded build, and by nothing otherwise. */
#if POLOPT__THREADS
#define POLOPT__STRIPES 4096
typedef struct polopt__locks {
    pthread_mutex_t stripe[POLOPT__STRIPES];
    pthread_mutex_t global; /* entry point and top level */
    pthread_mutex_t next;   /* the next id to insert */
} polopt__locks;
#define POLOPT__LOCK(lk, a) \
    if (lk) pthread_mutex_lock(&(lk)->stripe[(a) % POLOPT__STRIPES])
#define POLOPT__UNLOCK(lk, a) \
    if (lk) pthread_mutex_unlock(&(lk)->stripe[(a) % POLOPT__STRIPES])
#else
typedef struct polopt__locks {
    int unused;
} polopt__locks;
#define POLOPT__LOCK(lk, a) (void)(lk)
#define POLOPT__UNLOCK(lk, a) (void)(lk)
#endif

/* A query in one of the two geometries: the inner product with q (searching), or minus the Moebius distance
   to the node being inserted (building, q_sq = its squared norm); dot is the kernel the search runs on. */
typedef struct polopt__query {
    const float *q;
    float q_sq;
    int mobius;
    polopt__dot_fn dot;
} polopt__query;

static float polopt__sim(const polopt_mips *ix, const polopt__query *q, uint32_t b)
{
    return q->mobius ? polopt__mobius_sim(ix, q->dot, q->q, q->q_sq, b) : q->dot(ix->dim, q->q, polopt__mips_vec(ix, b));
}

/* Copy the links of a at level l into buf (under its lock when building with threads); returns buf. */
static const uint32_t *polopt__read_links(const polopt_mips *ix, polopt__locks *lk, uint32_t a, int l, uint32_t *buf)
{
    const uint32_t *links = polopt__links(ix, a, l);
    if (!lk) return links;
    POLOPT__LOCK(lk, a);
    memcpy(buf, links, (1 + (size_t)links[0]) * sizeof *links);
    POLOPT__UNLOCK(lk, a);
    return buf;
}

/* Greedy descent (ef = 1) through levels top .. bottom + 1: the start of every search and insertion. */
static polopt__cand polopt__greedy(const polopt_mips *ix, polopt__locks *lk, const polopt__query *q,
                                   polopt__cand cur, int top, int bottom)
{
    uint32_t buf[1 + 2 * POLOPT__MIPS_MAX_M];
    int l;
    for (l = top; l > bottom; --l) {
        int changed = 1;
        while (changed) {
            const uint32_t *links = polopt__read_links(ix, lk, cur.id, l, buf);
            uint32_t i;
            changed = 0;
            for (i = 1; i <= links[0]; ++i) {
                const float s = polopt__sim(ix, q, links[i]);
                if (s > cur.s) cur.s = s, cur.id = links[i], changed = 1;
            }
        }
    }
    return cur;
}

static void polopt__visit_reset(polopt_mips_scratch *sc)
{
    if (++sc->epoch == 0) { /* the tags wrapped around: clear them once every 2^32 searches */
        memset(sc->visited, 0, sc->capacity * sizeof *sc->visited);
        sc->epoch = 1;
    }
}

/* Beam search on level l (Malkov & Yashunin, Algorithm 2).  The entry candidates are W[0..*nw) (a min-heap,
   already marked visited); on return W holds the ef best found (after at most max_expansions expansions, if not 0).  C, the frontier, is a max-heap bounded by
   2 ef: when full it drops the candidates that can no longer enter W (those below W's worst).  O(ef M L log ef). */
static void polopt__search_level(const polopt_mips *ix, polopt__locks *lk, polopt_mips_scratch *sc,
                                 const polopt__query *q, size_t ef, int l, size_t *nw, size_t max_expansions)
{
    polopt__cand *C = (polopt__cand *)sc->heap_a, *W = (polopt__cand *)sc->heap_b;
    const size_t c_cap = 2 * sc->max_ef + 2;
    uint32_t buf[1 + 2 * POLOPT__MIPS_MAX_M], fresh[2 * POLOPT__MIPS_MAX_M];
    float sims[2 * POLOPT__MIPS_MAX_M];
    size_t nc = *nw, expanded = 0;
    memcpy(C, W, nc * sizeof *C);
    polopt__maxheap_build(C, nc);
    while (nc) {
        const polopt__cand c = polopt__maxheap_pop(C, &nc);
        const uint32_t *links;
        uint32_t j, n_fresh = 0;
        if (*nw >= ef && c.s < W[0].s) break; /* the best of the frontier is worse than the worst kept */
        if (max_expansions && expanded++ == max_expansions) break; /* the caller's budget */
        links = polopt__read_links(ix, lk, c.id, l, buf);
        /* First the unvisited neighbours, asking the memory system for all their vectors at once (a search spends
           most of its time waiting for vectors); then the similarities, which find them in cache. */
        for (j = 1; j <= links[0]; ++j) {
            const uint32_t e = links[j];
            if (sc->visited[e] == sc->epoch) continue;
            sc->visited[e] = sc->epoch;
            fresh[n_fresh++] = e;
            polopt__prefetch_vector(ix, e);
        }
        if (!q->mobius) /* inner products: all of them in one gather */
            polopt__kern_auto()->gemv_rows(n_fresh, ix->dim, ix->vectors, ix->dim, fresh, q->q, sims);
        for (j = 0; j < n_fresh; ++j) {
            const uint32_t e = fresh[j];
            polopt__cand ce;
            ce.s = q->mobius ? polopt__sim(ix, q, e) : sims[j];
            ce.id = e;
            if (*nw < ef) {
                polopt__minheap_push(W, nw, ce, 0);
            } else if (ce.s > W[0].s) {
                polopt__minheap_sift(W, *nw, ce, 0);
            } else {
                continue;
            }
            if (nc == c_cap) { /* compact the frontier: keep what can still improve W */
                size_t k, kept = 0;
                for (k = 0; k < nc; ++k)
                    if (C[k].s >= W[0].s) C[kept++] = C[k];
                nc = 0;
                for (k = 0; k < kept; ++k) polopt__maxheap_push(C, &nc, C[k]);
                if (nc == c_cap) --nc; /* only ties with the worst kept: drop a leaf */
            }
            polopt__maxheap_push(C, &nc, ce);
        }
        if (nc) POLOPT__PREFETCH(polopt__links(ix, C[0].id, l)); /* the links the next round will read */
    }
}

/* Empty the min-heap W into out, best first (ties in heap order). */
static void polopt__drain_sorted(polopt__cand *W, size_t nw, polopt__cand *out)
{
    size_t n = nw;
    while (n) {
        const size_t at = n - 1;
        out[at] = polopt__minheap_pop(W, &n, 0);
    }
}

/* The neighbour-selection heuristic (Malkov & Yashunin, Algorithm 4): walk the candidates from the closest and
   keep one only if it is closer to the base than to every neighbour kept so far.  This keeps links pointing in
   different directions, which is what makes the graph navigable.  cands: best first. */
static size_t polopt__select(const polopt_mips *ix, polopt__dot_fn dot, const polopt__cand *cands, size_t n, size_t m,
                             uint32_t *out)
{
    size_t i, j, k = 0;
    for (i = 0; i < n && k < m; ++i) {
        const float *e = polopt__mips_vec(ix, cands[i].id);
        const float e_sq = ix->sqnorms[cands[i].id];
        int good = 1;
        for (j = 0; j < k && good; ++j) good = polopt__mobius_sim(ix, dot, e, e_sq, out[j]) <= cands[i].s;
        if (good) out[k++] = cands[i].id;
    }
    return k;
}

/* Add a link b -> a at level l; if b is full, re-select b's links among the old ones and a. */
static void polopt__link_back(polopt_mips *ix, polopt__locks *lk, polopt__dot_fn dot, uint32_t b, uint32_t a, int l)
{
    const size_t max = l ? ix->M : 2 * ix->M;
    polopt__cand cands[1 + 2 * POLOPT__MIPS_MAX_M];
    uint32_t *links, kept[2 * POLOPT__MIPS_MAX_M];
    size_t i, n, k;
    const float *bv = polopt__mips_vec(ix, b);
    const float b_sq = ix->sqnorms[b];
    POLOPT__LOCK(lk, b);
    links = polopt__links(ix, b, l);
    if (links[0] < max) {
        links[1 + links[0]++] = a;
    } else {
        n = links[0];
        for (i = 0; i < n; ++i) cands[i].id = links[1 + i], cands[i].s = polopt__mobius_sim(ix, dot, bv, b_sq, links[1 + i]);
        cands[n].id = a, cands[n].s = polopt__mobius_sim(ix, dot, bv, b_sq, a);
        ++n;
        for (i = 1; i < n; ++i) { /* insertion sort, best first: n <= 2M + 1 */
            const polopt__cand c = cands[i];
            size_t j = i;
            for (; j > 0 && cands[j - 1].s < c.s; --j) cands[j] = cands[j - 1];
            cands[j] = c;
        }
        k = polopt__select(ix, dot, cands, n, max, kept);
        links[0] = (uint32_t)k;
        memcpy(links + 1, kept, k * sizeof *kept);
    }
    POLOPT__UNLOCK(lk, b);
}

/* Insert node a (its level already in ix->levels) into the graph (Malkov & Yashunin, Algorithm 1). */
static void polopt__insert(polopt_mips *ix, polopt__locks *lk, polopt_mips_scratch *sc, uint32_t a)
{
    polopt__query q;
    polopt__cand cur, *W = (polopt__cand *)sc->heap_b, *sorted = (polopt__cand *)sc->heap_a;
    uint32_t selected[POLOPT__MIPS_MAX_M];
    const int level = ix->levels[a];
    int top, l, holds_global = 0;
    size_t nw, i, k;
    q.q = polopt__mips_vec(ix, a);
    q.q_sq = ix->sqnorms[a];
    q.mobius = 1;
    q.dot = polopt__kern_auto()->dot;
#if POLOPT__THREADS
    if (lk) pthread_mutex_lock(&lk->global);
#endif
    top = ix->max_level;
    cur.id = ix->entry;
#if POLOPT__THREADS
    /* an insertion that makes a new top level holds the global lock to the end, so two cannot race */
    holds_global = lk && level > top;
    if (lk && !holds_global) pthread_mutex_unlock(&lk->global);
#endif
    cur.s = polopt__sim(ix, &q, cur.id);
    cur = polopt__greedy(ix, lk, &q, cur, top, level);
    W[0] = cur;
    nw = 1;
    for (l = level < top ? level : top; l >= 0; --l) {
        polopt__visit_reset(sc); /* each level is a new search, from the candidates in W */
        sc->visited[a] = sc->epoch;
        for (i = 0; i < nw; ++i) sc->visited[W[i].id] = sc->epoch;
        polopt__search_level(ix, lk, sc, &q, ix->ef_construction, l, &nw, 0);
        polopt__drain_sorted(W, nw, sorted);
        k = polopt__select(ix, q.dot, sorted, nw, ix->M, selected);
        {
            uint32_t *links;
            POLOPT__LOCK(lk, a);
            links = polopt__links(ix, a, l);
            links[0] = (uint32_t)k;
            memcpy(links + 1, selected, k * sizeof *selected);
            POLOPT__UNLOCK(lk, a);
        }
        for (i = 0; i < k; ++i) polopt__link_back(ix, lk, q.dot, selected[i], a, l);
        /* the candidates found here are the entry points of the level below (their similarities hold there) */
        for (i = 0; i < nw; ++i) W[i] = sorted[nw - 1 - i]; /* ascending order is a valid min-heap */
    }
    if (level > top) {
        ix->entry = a;
        ix->max_level = level;
    }
#if POLOPT__THREADS
    if (holds_global) pthread_mutex_unlock(&lk->global);
#else
    (void)holds_global;
#endif
}

POLOPT_DEF polopt_mips_hnsw_config polopt_mips_hnsw_config_default(void)
{
    polopt_mips_hnsw_config c;
    memset(&c, 0, sizeof c);
    c.M = 16;
    c.ef_construction = 200;
    c.seed = 1;
    c.n_threads = 1;
    return c;
}

POLOPT_DEF void polopt_mips_free(polopt_mips *index)
{
    polopt_hooks h;
    if (!index) return;
    h = index->hooks;
    polopt__dealloc(&h, index->owned_vectors);
    polopt__dealloc(&h, index->sqnorms);
    polopt__dealloc(&h, index->levels);
    polopt__dealloc(&h, index->links0);
    polopt__dealloc(&h, index->upper_offset);
    polopt__dealloc(&h, index->upper);
    memset(index, 0, sizeof *index);
}

/* Check the vectors (finite) and the sizes shared by both kinds. */
static polopt_result polopt__mips_check_input(polopt_mips *ix, const char *fn, size_t n, size_t dim, const float *v)
{
    size_t bad = 0, total;
    int ok = 1;
    if (n == 0 || n >= POLOPT_NO_ITEM)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_INVALID_ARG, "%s: n = %lu must be in [1, 2^32 - 2]", fn,
                            (unsigned long)n);
    if (dim == 0 || dim > POLOPT__MIPS_MAX_DIM)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_INVALID_ARG, "%s: dim = %lu must be in [1, 2^20]", fn,
                            (unsigned long)dim);
    if (!v) return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_INVALID_ARG, "%s: vectors is NULL", fn);
    total = polopt__mul_size(n, dim, &ok);
    if (!ok || total > SIZE_MAX / sizeof(float))
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_OVERFLOW, "%s: %lu x %lu floats overflow", fn,
                            (unsigned long)n, (unsigned long)dim);
    if (polopt_check_finite(total, v, &bad) != POLOPT_OK)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_NONFINITE, "%s: vectors[%lu][%lu] = %g is not finite", fn,
                            (unsigned long)(bad / dim), (unsigned long)(bad % dim), (double)v[bad]);
    return POLOPT_OK;
}

/* (Re)size every per-item array of ix to capacity items; on failure ix is unchanged apart from arrays already
   grown, which stay valid.  The vectors are only resized when owned. */
static polopt_result polopt__mips_reserve(polopt_mips *ix, size_t capacity, int own_vectors)
{
    polopt_result rc = POLOPT_OK;
    int ok = 1;
    const size_t links = 1 + 2 * ix->M;
#define POLOPT__GROW(field, type, count)                                                             \
    if (rc == POLOPT_OK) {                                                                           \
        const size_t count_ = (count);                                                               \
        void *p_ = ok ? polopt__realloc_array(&ix->hooks, ix->field, count_, sizeof(type), &rc) : NULL; \
        if (!ok) rc = POLOPT_ERR_OVERFLOW;                                                           \
        else if (p_) ix->field = (type *)p_, polopt__advise_huge(p_, count_ * sizeof(type));         \
    }
    if (own_vectors) {
        POLOPT__GROW(owned_vectors, float, polopt__mul_size(capacity, ix->dim, &ok));
    }
    if (ix->kind == POLOPT_MIPS_HNSW) {
        POLOPT__GROW(sqnorms, float, capacity);
        POLOPT__GROW(levels, uint8_t, capacity);
        POLOPT__GROW(links0, uint32_t, polopt__mul_size(capacity, links, &ok));
        POLOPT__GROW(upper_offset, uint32_t, capacity);
    }
#undef POLOPT__GROW
    if (rc == POLOPT_OK) ix->capacity = capacity;
    return rc;
}

static int polopt__draw_level(polopt_rng *rng, size_t M)
{
    const double u = 1.0 - polopt__rng_uniform(rng); /* (0, 1] */
    const double l = floor(-log(u) / log((double)M));
    return l > POLOPT__MIPS_MAX_LEVEL ? POLOPT__MIPS_MAX_LEVEL : (int)l;
}

/* Give nodes first .. n-1 their levels, squared norms, empty links and room in the upper pool. */
static polopt_result polopt__mips_prepare_nodes(polopt_mips *ix, size_t first)
{
    size_t a, words = ix->upper_size;
    const size_t block = 1 + ix->M;
    for (a = first; a < ix->n; ++a) {
        const float *v = polopt__mips_vec(ix, (uint32_t)a);
        const float sq = polopt__nrm2(ix->dim, v);
        const int level = polopt__draw_level(&ix->rng, ix->M);
        ix->sqnorms[a] = sq * sq > POLOPT__TINY_SQNORM ? sq * sq : POLOPT__TINY_SQNORM;
        ix->levels[a] = (uint8_t)level;
        ix->links0[a * (1 + 2 * ix->M)] = 0;
        ix->upper_offset[a] = level ? (uint32_t)words : POLOPT_NO_ITEM;
        words += (size_t)level * block;
        if (words >= POLOPT_NO_ITEM) return POLOPT_ERR_OVERFLOW;
    }
    if (words > ix->upper_capacity) {
        const size_t cap = words + words / 2 + block; /* words < 2^32: no overflow in size_t of 64 bits */
        polopt_result rc = POLOPT_OK;
        void *p = polopt__realloc_array(&ix->hooks, ix->upper, cap, sizeof(uint32_t), &rc);
        if (!p) return rc;
        polopt__advise_huge(p, cap * sizeof(uint32_t));
        ix->upper = (uint32_t *)p;
        ix->upper_capacity = cap;
    }
    for (a = first; a < ix->n; ++a) { /* empty upper link lists */
        int l;
        for (l = 1; l <= ix->levels[a]; ++l) polopt__links(ix, (uint32_t)a, l)[0] = 0;
    }
    ix->upper_size = words;
    return POLOPT_OK;
}

#if POLOPT__THREADS
typedef struct polopt__build_job {
    polopt_mips *ix;
    polopt__locks *locks;
    polopt_mips_scratch *scratch;
    size_t *next, end;
} polopt__build_job;

static void *polopt__build_worker(void *arg)
{
    polopt__build_job *job = (polopt__build_job *)arg;
    for (;;) {
        size_t a, first;
        pthread_mutex_lock(&job->locks->next);
        first = *job->next;
        *job->next = first + 64 < job->end ? first + 64 : job->end;
        pthread_mutex_unlock(&job->locks->next);
        if (first >= job->end) return NULL;
        for (a = first; a < first + 64 && a < job->end; ++a) polopt__insert(job->ix, job->locks, job->scratch, (uint32_t)a);
    }
}
#endif

/* The hubs: the POLOPT_MIPS_HUBS largest squared norms (a selection by polopt_topk, O(P)) and the first zero
   vector, if any. */
static void polopt__mips_hubs(polopt_mips *ix)
{
    const size_t k = ix->n < POLOPT_MIPS_HUBS ? ix->n : POLOPT_MIPS_HUBS;
    size_t a;
    ix->n_hubs = 0;
    if (k == 0 || polopt_topk(ix->n, ix->sqnorms, k, ix->hubs, NULL) != POLOPT_OK) return;
    ix->n_hubs = k;
    for (a = 0; a < ix->n; ++a)
        if (ix->sqnorms[a] <= (float)POLOPT__TINY_SQNORM) { /* the cast: x87 keeps the constant more precise */
            size_t j;
            for (j = 0; j < k && ix->hubs[j] != a; ++j) {}
            if (j == k) ix->hubs[ix->n_hubs++] = (uint32_t)a;
            break;
        }
}

/* Insert nodes first .. n-1 (prepared), with n_threads threads when available. */
static polopt_result polopt__mips_insert_range(polopt_mips *ix, size_t first, size_t n_threads)
{
    polopt_mips_scratch sc[16];
    size_t t, a, made = 0;
    polopt_result rc = POLOPT_OK;
    if (n_threads > 16) n_threads = 16;
#if !POLOPT__THREADS
    n_threads = 1;
#endif
    if (ix->n - first < 1024) n_threads = 1; /* not worth the threads */
    for (t = 0; t < n_threads; ++t) {
        rc = polopt_mips_scratch_init(&sc[t], ix, ix->ef_construction, &ix->hooks);
        if (rc != POLOPT_OK) break; /* the failed one cleaned up after itself */
        ++made;
    }
    if (rc == POLOPT_OK && first == 0) { /* the first node: the entry, with no links */
        ix->entry = 0;
        ix->max_level = ix->levels[0];
        first = 1;
    }
    if (rc == POLOPT_OK && n_threads == 1) {
        for (a = first; a < ix->n; ++a) polopt__insert(ix, NULL, &sc[0], (uint32_t)a);
    }
#if POLOPT__THREADS
    if (rc == POLOPT_OK && n_threads > 1) {
        polopt__locks *locks = (polopt__locks *)polopt__alloc(&ix->hooks, 1, sizeof(polopt__locks), &rc);
        pthread_t th[16];
        polopt__build_job jobs[16];
        size_t next = first, started = 0, i;
        if (locks) {
            for (i = 0; i < POLOPT__STRIPES; ++i) pthread_mutex_init(&locks->stripe[i], NULL);
            pthread_mutex_init(&locks->global, NULL);
            pthread_mutex_init(&locks->next, NULL);
            /* a few hundred nodes first, in order, so the threads start from a connected graph */
            for (; next < ix->n && next < first + 256; ++next) polopt__insert(ix, NULL, &sc[0], (uint32_t)next);
            for (t = 0; t < n_threads; ++t) {
                jobs[t].ix = ix, jobs[t].locks = locks, jobs[t].scratch = &sc[t], jobs[t].next = &next;
                jobs[t].end = ix->n;
                if (t > 0 && pthread_create(&th[t], NULL, polopt__build_worker, &jobs[t]) != 0) break;
                ++started;
            }
            polopt__build_worker(&jobs[0]); /* this thread works too */
            for (t = 1; t < started; ++t) pthread_join(th[t], NULL);
            for (i = 0; i < POLOPT__STRIPES; ++i) pthread_mutex_destroy(&locks->stripe[i]);
            pthread_mutex_destroy(&locks->global);
            pthread_mutex_destroy(&locks->next);
            polopt__dealloc(&ix->hooks, locks);
        }
    }
#endif
    for (t = 0; t < made; ++t) polopt_mips_scratch_free(&sc[t]);
    if (rc == POLOPT_OK) polopt__mips_hubs(ix);
    return rc;
}

static polopt_result polopt__mips_init_common(polopt_mips *ix, polopt_mips_kind kind, size_t n, size_t dim,
                                              const float *vectors, const polopt_hooks *hooks, const char *fn)
{
    memset(ix, 0, sizeof *ix);
    ix->kind = kind;
    ix->hooks = hooks ? *hooks : polopt__no_hooks;
    ix->dim = dim;
    return polopt__mips_check_input(ix, fn, n, dim, vectors);
}

static polopt_result polopt__mips_init_exact_impl(polopt_mips *ix, size_t n, size_t dim, const float *vectors,
                                                int copy, const polopt_hooks *hooks)
{
    static const char *fn = "polopt_mips_init_exact";
    polopt_result rc;
    if (!ix) return POLOPT_ERR_INVALID_ARG;
    rc = polopt__mips_init_common(ix, POLOPT_MIPS_EXACT, n, dim, vectors, hooks, fn);
    if (rc != POLOPT_OK) return rc;
    if (copy) {
        rc = polopt__mips_reserve(ix, n, 1);
        if (rc != POLOPT_OK) {
            return polopt__fail(&ix->err, &ix->hooks, rc, "%s: cannot allocate a copy of %lu x %lu floats", fn,
                                (unsigned long)n, (unsigned long)dim);
        }
        memcpy(ix->owned_vectors, vectors, n * dim * sizeof(float));
        ix->vectors = ix->owned_vectors;
    } else {
        ix->vectors = vectors;
        ix->capacity = n;
    }
    ix->n = n;
    polopt__clear_error(&ix->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_mips_init_exact(polopt_mips *index, size_t n, size_t dim, const float *vectors,
                                                int copy, const polopt_hooks *hooks)
{
    const polopt_result rc = polopt__mips_init_exact_impl(index, n, dim, vectors, copy, hooks);
    if (rc != POLOPT_OK && index) POLOPT__ZERO_KEEPING_ERROR(index, polopt_mips_free);
    return rc;
}

static polopt_result polopt__mips_init_hnsw_impl(polopt_mips *ix, size_t n, size_t dim, const float *vectors,
                                               int copy, const polopt_mips_hnsw_config *config)
{
    static const char *fn = "polopt_mips_init_hnsw";
    const polopt_mips_hnsw_config c = config ? *config : polopt_mips_hnsw_config_default();
    polopt_result rc;
    if (!ix) return POLOPT_ERR_INVALID_ARG;
    rc = polopt__mips_init_common(ix, POLOPT_MIPS_HNSW, n, dim, vectors, &c.hooks, fn);
    if (rc != POLOPT_OK) return rc;
    if (c.M < 2 || c.M > POLOPT__MIPS_MAX_M)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.M = %lu must be in [2, %d]", fn,
                            (unsigned long)c.M, POLOPT__MIPS_MAX_M);
    if (c.ef_construction < 1 || c.ef_construction > (1u << 20))
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: config.ef_construction = %lu must be in [1, 2^20]", fn,
                            (unsigned long)c.ef_construction);
    if (c.n_threads < 1)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.n_threads must be >= 1", fn);
    ix->M = c.M;
    ix->ef_construction = c.ef_construction;
    polopt__rng_seed(&ix->rng, c.seed);
    ix->vectors = vectors;
    rc = polopt__mips_reserve(ix, n, copy);
    if (rc == POLOPT_OK) {
        if (copy) {
            memcpy(ix->owned_vectors, vectors, n * dim * sizeof(float));
            ix->vectors = ix->owned_vectors;
        }
        ix->n = n;
        rc = polopt__mips_prepare_nodes(ix, 0);
    }
    if (rc == POLOPT_OK) rc = polopt__mips_insert_range(ix, 0, c.n_threads);
    if (rc != POLOPT_OK) {
        return polopt__fail(&ix->err, &ix->hooks, rc, "%s: cannot allocate an index of %lu items", fn,
                            (unsigned long)n);
    }
    polopt__clear_error(&ix->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_mips_init_hnsw(polopt_mips *index, size_t n, size_t dim, const float *vectors,
                                               int copy, const polopt_mips_hnsw_config *config)
{
    const polopt_result rc = polopt__mips_init_hnsw_impl(index, n, dim, vectors, copy, config);
    if (rc != POLOPT_OK && index) POLOPT__ZERO_KEEPING_ERROR(index, polopt_mips_free);
    return rc;
}

POLOPT_DEF polopt_result polopt_mips_add(polopt_mips *index, size_t n_new, const float *vectors)
{
    static const char *fn = "polopt_mips_add";
    polopt_result rc;
    size_t old_n, cap;
    polopt_mips probe;
    if (!index) return POLOPT_ERR_INVALID_ARG;
    if (!index->vectors) return polopt__not_ready(&index->err, &index->hooks, fn, "index");
    if (!index->owned_vectors)
        return polopt__fail(&index->err, &index->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: the index borrows its vectors and cannot grow; build it with copy = 1", fn);
    if (n_new == 0) return POLOPT_OK;
    if (n_new >= POLOPT_NO_ITEM - index->n)
        return polopt__fail(&index->err, &index->hooks, POLOPT_ERR_INVALID_ARG, "%s: %lu + %lu items exceed 2^32 - 2", fn,
                            (unsigned long)index->n, (unsigned long)n_new);
    /* validate the new rows with the same checks as a build, without touching ix */
    memset(&probe, 0, sizeof probe);
    probe.hooks = index->hooks;
    rc = polopt__mips_check_input(&probe, fn, n_new, index->dim, vectors);
    if (rc != POLOPT_OK) {
        index->err = probe.err;
        return rc;
    }
    old_n = index->n;
    if (old_n + n_new > index->capacity) {
        cap = old_n + n_new + (old_n + n_new) / 2;
        if (cap >= POLOPT_NO_ITEM) cap = POLOPT_NO_ITEM - 1;
        rc = polopt__mips_reserve(index, cap, 1);
        index->vectors = index->owned_vectors;
        if (rc != POLOPT_OK)
            return polopt__fail(&index->err, &index->hooks, rc, "%s: cannot grow the index to %lu items", fn,
                                (unsigned long)cap);
    }
    memcpy(index->owned_vectors + old_n * index->dim, vectors, n_new * index->dim * sizeof(float));
    if (index->kind == POLOPT_MIPS_HNSW) {
        const size_t upper_before = index->upper_size;
        index->n = old_n + n_new;
        rc = polopt__mips_prepare_nodes(index, old_n);
        if (rc == POLOPT_OK) rc = polopt__mips_insert_range(index, old_n, 1);
        if (rc != POLOPT_OK) { /* nothing was linked yet if the scratch failed: roll back */
            index->n = old_n;
            index->upper_size = upper_before;
            return polopt__fail(&index->err, &index->hooks, rc, "%s: cannot allocate for %lu new items", fn,
                                (unsigned long)n_new);
        }
    }
    index->n = old_n + n_new;
    polopt__clear_error(&index->err);
    return POLOPT_OK;
}

/* The scratch's arrays, carved from a (see polopt__arena); with a real base, visited starts at zero. */
static void polopt__mips_scratch_layout(polopt_mips_scratch *sc, const polopt_mips *ix, size_t max_ef, polopt__arena *a)
{
    sc->max_ef = max_ef;
    if (ix->kind == POLOPT_MIPS_HNSW) {
        sc->capacity = ix->capacity;
        sc->visited = (uint32_t *)polopt__carve(a, sc->capacity, sizeof(uint32_t));
        sc->heap_a = polopt__carve(a, 2 * max_ef + 2, sizeof(polopt__cand));
        sc->heap_b = polopt__carve(a, max_ef + 1, sizeof(polopt__cand));
        if (sc->visited) {
            polopt__advise_huge(sc->visited, sc->capacity * sizeof(uint32_t));
            memset(sc->visited, 0, sc->capacity * sizeof(uint32_t));
        }
    } else {
        sc->heap_a = polopt__carve(a, POLOPT__EXACT_QUERIES * max_ef, sizeof(polopt__cand));
        sc->tile = (float *)polopt__carve(a, POLOPT__EXACT_QUERIES * POLOPT__EXACT_BLOCK, sizeof(float));
    }
}

static polopt_result polopt__mips_scratch_check(const polopt_mips *ix, size_t max_ef, polopt_error *err,
                                                const polopt_hooks *hooks, const char *fn)
{
    if (!ix || !ix->vectors) return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG, "%s: the index is not initialised", fn);
    if (max_ef < 1 || max_ef > (1u << 24))
        return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG, "%s: max_ef = %lu must be in [1, 2^24]", fn,
                            (unsigned long)max_ef);
    return POLOPT_OK;
}

static polopt_result polopt__mips_scratch_init_impl(polopt_mips_scratch *sc, const polopt_mips *ix, size_t max_ef,
                                                  const polopt_hooks *hooks)
{
    static const char *fn = "polopt_mips_scratch_init";
    polopt_result rc = POLOPT_OK;
    polopt__arena a = {NULL, 0, 0};
    if (!sc) return POLOPT_ERR_INVALID_ARG;
    memset(sc, 0, sizeof *sc);
    sc->hooks = hooks ? *hooks : polopt__no_hooks;
    if ((rc = polopt__mips_scratch_check(ix, max_ef, &sc->err, &sc->hooks, fn)) != POLOPT_OK) return rc;
    polopt__mips_scratch_layout(sc, ix, max_ef, &a);
    sc->block = polopt__arena_alloc(&sc->hooks, &a, &rc);
    if (!sc->block)
        return polopt__fail(&sc->err, &sc->hooks, rc, "%s: cannot allocate scratch for max_ef = %lu", fn,
                            (unsigned long)max_ef);
    polopt__arena_begin(&a, sc->block);
    polopt__mips_scratch_layout(sc, ix, max_ef, &a);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_mips_scratch_init(polopt_mips_scratch *scratch, const polopt_mips *index, size_t max_ef,
                                                  const polopt_hooks *hooks)
{
    const polopt_result rc = polopt__mips_scratch_init_impl(scratch, index, max_ef, hooks);
    if (rc != POLOPT_OK && scratch) POLOPT__ZERO_KEEPING_ERROR(scratch, polopt_mips_scratch_free);
    return rc;
}

POLOPT_DEF void polopt_mips_scratch_free(polopt_mips_scratch *scratch)
{
    if (!scratch) return;
    polopt__dealloc(&scratch->hooks, scratch->block);
    memset(scratch, 0, sizeof *scratch);
}

/* Exact search for up to 32 queries: stream the items in tiles of 4096, score a tile against all queries with one
   gemm, and keep each query's k best in a min-heap ordered like polopt_topk (ties: lower id first).  O(nq P L). */
static size_t polopt__exact_batch(const polopt_mips *ix, polopt_mips_scratch *sc, size_t nq, const float *Q,
                                  size_t ldq, size_t k, uint32_t *out_ids, float *out_scores)
{
    size_t nonfinite = 0;
    polopt__cand *heaps = (polopt__cand *)sc->heap_a;
    size_t fill[POLOPT__EXACT_QUERIES], a0, i, j;
    for (i = 0; i < nq; ++i) fill[i] = 0;
    for (a0 = 0; a0 < ix->n; a0 += POLOPT__EXACT_BLOCK) {
        const size_t m = ix->n - a0 < POLOPT__EXACT_BLOCK ? ix->n - a0 : POLOPT__EXACT_BLOCK;
        const float *block = ix->vectors + a0 * ix->dim;
        if (nq == 1) polopt__gemv(POLOPT_NO_TRANS, m, ix->dim, 1.0f, block, ix->dim, Q, 0.0f, sc->tile);
        else polopt__gemm(POLOPT_NO_TRANS, POLOPT_TRANS, nq, m, ix->dim, 1.0f, Q, ldq, block, ix->dim, 0.0f, sc->tile, m);
        for (i = 0; i < nq; ++i) {
            polopt__cand *h = heaps + i * k;
            const float *row = sc->tile + i * m;
            size_t n = fill[i];
            j = 0;
            for (; j < m && n < k; ++j) { /* fill the heap */
                polopt__cand c;
                c.s = row[j], c.id = (uint32_t)(a0 + j);
                polopt__minheap_push(h, &n, c, 1);
            }
            for (; j < m; ++j) /* later ids lose ties: a newcomer must be strictly better than the worst kept */
                if (row[j] > h[0].s) {
                    polopt__cand c;
                    c.s = row[j], c.id = (uint32_t)(a0 + j);
                    polopt__minheap_sift(h, n, c, 1);
                }
            fill[i] = n;
        }
    }
    for (i = 0; i < nq; ++i) { /* heap sort: move the worst to the back, one at a time: best first */
        polopt__cand *h = heaps + i * k;
        size_t n = fill[i], t;
        for (t = n; t > 1; --t) {
            const polopt__cand last = h[t - 1];
            h[t - 1] = h[0];
            polopt__minheap_sift(h, t - 1, last, 1);
        }
        for (t = 0; t < k; ++t) {
            out_ids[i * k + t] = t < n ? h[t].id : POLOPT_NO_ITEM;
            if (out_scores) out_scores[i * k + t] = t < n ? h[t].s : -INFINITY;
            nonfinite += t < n && !(fabsf(h[t].s) <= FLT_MAX);
        }
    }
    return nonfinite; /* scores that overflowed float: the caller reports them */
}

/* HNSW search of one query: greedy descent by inner product (or the caller's seeds), then the beam on level 0. */
static size_t polopt__hnsw_search(const polopt_mips *ix, polopt_mips_scratch *sc, const float *query, size_t k,
                                  size_t ef, const uint32_t *seeds, size_t n_seeds, size_t max_expansions,
                                  uint32_t *out_ids, float *out_scores, int best_first)
{
    polopt__cand *W = (polopt__cand *)sc->heap_b, cur;
    polopt__query q;
    size_t nw = 0, t, nonfinite = 0;
    q.q = query, q.q_sq = 0.0f, q.mobius = 0, q.dot = polopt__kern_auto()->dot;
    polopt__visit_reset(sc);
    if (n_seeds) { /* the seeds as the first candidates, up to ef of them: scored in one gather, then a heap */
        uint32_t *ids = (uint32_t *)sc->heap_a;  /* the frontier's room is free until the level search, and it */
        float *scores = (float *)(ids + ef + 1); /* holds 2 ef + 2 candidates: 4 ef + 4 words */
        size_t m = 0;
        for (t = 0; t < n_seeds && m < ef; ++t) { /* the first ef distinct seeds in range */
            if (seeds[t] >= ix->n || sc->visited[seeds[t]] == sc->epoch) continue;
            sc->visited[seeds[t]] = sc->epoch;
            ids[m++] = seeds[t];
        }
        polopt__kern_auto()->gemv_rows(m, ix->dim, ix->vectors, ix->dim, ids, query, scores);
        for (nw = 0; nw < m; ++nw) W[nw].id = ids[nw], W[nw].s = scores[nw];
        polopt__minheap_build(W, nw);
        for (; t < n_seeds; ++t) { /* more seeds than ef: each replaces the worst kept if better */
            if (t + 8 < n_seeds && seeds[t + 8] < ix->n) polopt__prefetch_vector(ix, seeds[t + 8]);
            if (seeds[t] >= ix->n || sc->visited[seeds[t]] == sc->epoch) continue;
            sc->visited[seeds[t]] = sc->epoch;
            cur.id = seeds[t];
            cur.s = polopt__sim(ix, &q, cur.id);
            if (cur.s > W[0].s) polopt__minheap_sift(W, nw, cur, 0);
        }
    }
    if (nw == 0) { /* no usable seed: descend from the entry point, and start from the hubs too */
        cur.id = ix->entry;
        cur.s = polopt__sim(ix, &q, cur.id);
        cur = polopt__greedy(ix, NULL, &q, cur, ix->max_level, 0);
        sc->visited[cur.id] = sc->epoch;
        W[0] = cur;
        nw = 1;
        for (t = 0; t < ix->n_hubs; ++t) {
            if (t + 8 < ix->n_hubs) polopt__prefetch_vector(ix, ix->hubs[t + 8]);
            if (sc->visited[ix->hubs[t]] == sc->epoch) continue;
            sc->visited[ix->hubs[t]] = sc->epoch;
            cur.id = ix->hubs[t];
            cur.s = polopt__sim(ix, &q, cur.id);
            if (nw < ef) polopt__minheap_push(W, &nw, cur, 0);
            else if (cur.s > W[0].s) polopt__minheap_sift(W, nw, cur, 0);
        }
    }
    polopt__search_level(ix, NULL, sc, &q, ef, 0, &nw, max_expansions);
    while (nw > k) polopt__minheap_pop(W, &nw, 0); /* drop the worst down to k */
    for (t = k; t > nw; --t) { /* fewer than k reachable (a degenerate graph): empty slots at the end */
        out_ids[t - 1] = POLOPT_NO_ITEM;
        if (out_scores) out_scores[t - 1] = -INFINITY;
    }
    if (!best_first) { /* the set in heap order: the estimator's proposal needs no order, and k pops cost
                          O(k log k) unpredictable branches (a fifth of a warm-started search) */
        for (t = 0; t < nw; ++t) {
            out_ids[t] = W[t].id;
            if (out_scores) out_scores[t] = W[t].s;
            nonfinite += !(fabsf(W[t].s) <= FLT_MAX);
        }
        return nonfinite;
    }
    while (nw) { /* the worst comes off first: fill from the back */
        const size_t at = nw - 1;
        const polopt__cand c = polopt__minheap_pop(W, &nw, 0);
        out_ids[at] = c.id;
        if (out_scores) out_scores[at] = c.s;
        nonfinite += !(fabsf(c.s) <= FLT_MAX);
    }
    return nonfinite;
}

/* Finite queries whose inner products overflow float have no meaningful top-k: an error, not inf or NaN scores. */
static polopt_result polopt__search_result(polopt_mips_scratch *sc, size_t nonfinite, const char *fn)
{
    if (nonfinite == 0) return POLOPT_OK;
    return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_NONFINITE,
                        "%s: %lu result scores overflow float (the query or the items are too large)", fn,
                        (unsigned long)nonfinite);
}

/* The checks every search makes; ef is raised to k for HNSW. */
static polopt_result polopt__search_check(const polopt_mips *ix, polopt_mips_scratch *sc, size_t n_queries,
                                          const float *queries, size_t ldq, size_t k, size_t *ef,
                                          const uint32_t *out_ids)
{
    static const char *fn = "polopt_mips_search";
    size_t i, bad = 0;
    if (!sc) return POLOPT_ERR_INVALID_ARG;
    if (!ix || !ix->vectors)
        return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_INVALID_ARG, "%s: the index is not initialised", fn);
    if (n_queries == 0) return POLOPT_OK;
    if (!queries || !out_ids)
        return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_INVALID_ARG, "%s: queries or out_ids is NULL", fn);
    if (ldq < ix->dim)
        return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_INVALID_ARG, "%s: ldq = %lu is less than dim = %lu", fn,
                            (unsigned long)ldq, (unsigned long)ix->dim);
    if (k < 1 || k > ix->n)
        return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_INVALID_ARG, "%s: k = %lu must be in [1, n = %lu]", fn,
                            (unsigned long)k, (unsigned long)ix->n);
    if (ix->kind == POLOPT_MIPS_HNSW && *ef < k) *ef = k;
    if ((ix->kind == POLOPT_MIPS_HNSW ? *ef : k) > sc->max_ef)
        return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: ef = %lu (or k) exceeds the scratch's max_ef = %lu", fn,
                            (unsigned long)(ix->kind == POLOPT_MIPS_HNSW ? *ef : k), (unsigned long)sc->max_ef);
    if (ix->kind == POLOPT_MIPS_HNSW ? (sc->capacity < ix->n || !sc->visited) : !sc->tile)
        return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: the scratch was made for another kind or a smaller index", fn);
    for (i = 0; i < n_queries; ++i)
        if (polopt_check_finite(ix->dim, queries + i * ldq, &bad) != POLOPT_OK)
            return polopt__fail(&sc->err, &sc->hooks, POLOPT_ERR_NONFINITE, "%s: query %lu, entry %lu is not finite",
                                fn, (unsigned long)i, (unsigned long)bad);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_mips_search_batch(const polopt_mips *index, polopt_mips_scratch *scratch, size_t n_queries,
                                                  const float *queries, size_t ldq, size_t k, size_t ef,
                                                  uint32_t *out_ids, float *out_scores)
{
    size_t i, nonfinite = 0;
    const polopt_result rc = polopt__search_check(index, scratch, n_queries, queries, ldq, k, &ef, out_ids);
    if (rc != POLOPT_OK || n_queries == 0) return rc;
    if (index->kind == POLOPT_MIPS_EXACT) {
        for (i = 0; i < n_queries; i += POLOPT__EXACT_QUERIES) {
            const size_t nq = n_queries - i < POLOPT__EXACT_QUERIES ? n_queries - i : POLOPT__EXACT_QUERIES;
            nonfinite += polopt__exact_batch(index, scratch, nq, queries + i * ldq, ldq, k, out_ids + i * k,
                                             out_scores ? out_scores + i * k : NULL);
        }
    } else {
        for (i = 0; i < n_queries; ++i)
            nonfinite += polopt__hnsw_search(index, scratch, queries + i * ldq, k, ef, NULL, 0, 0, out_ids + i * k,
                                             out_scores ? out_scores + i * k : NULL, 1);
    }
    return polopt__search_result(scratch, nonfinite, "polopt_mips_search");
}

POLOPT_DEF polopt_result polopt_mips_search(const polopt_mips *index, polopt_mips_scratch *scratch, const float *query,
                                            size_t k, size_t ef, uint32_t *out_ids, float *out_scores)
{
    return polopt_mips_search_batch(index, scratch, 1, query, index ? index->dim : 0, k, ef, out_ids, out_scores);
}

/* polopt_mips_search_from, with HNSW's results in any order when best_first is 0 (exact search sorts anyway). */
static polopt_result polopt__mips_search_from(const polopt_mips *index, polopt_mips_scratch *scratch,
                                              const float *query, size_t k, size_t ef, const uint32_t *seeds,
                                              size_t n_seeds, size_t max_expansions, uint32_t *out_ids,
                                              float *out_scores, int best_first)
{
    polopt_result rc;
    if (n_seeds && !seeds) return POLOPT_ERR_INVALID_ARG;
    rc = polopt__search_check(index, scratch, 1, query, index ? index->dim : 0, k, &ef, out_ids);
    if (rc != POLOPT_OK) return rc;
    return polopt__search_result(
        scratch,
        index->kind == POLOPT_MIPS_EXACT
            ? polopt__exact_batch(index, scratch, 1, query, index->dim, k, out_ids, out_scores)
            : polopt__hnsw_search(index, scratch, query, k, ef, seeds, n_seeds, max_expansions, out_ids, out_scores,
                                  best_first),
        "polopt_mips_search_from");
}

POLOPT_DEF polopt_result polopt_mips_search_from(const polopt_mips *index, polopt_mips_scratch *scratch,
                                                 const float *query, size_t k, size_t ef, const uint32_t *seeds,
                                                 size_t n_seeds, size_t max_expansions, uint32_t *out_ids,
                                                 float *out_scores)
{
    return polopt__mips_search_from(index, scratch, query, k, ef, seeds, n_seeds, max_expansions, out_ids, out_scores,
                                    1);
}


/* Saving and loading.  Header (128 bytes, little-endian):
     0 magic "POLOPTIX"    8 u32 format version   12 u32 header bytes (128)   16 u32 element type (1: IEEE float32)
    20 u32 element size    24 u32 kind            28 u32 M                    32 u64 n      40 u64 dim
    48 u64 ef_construction 56 u32 entry           60 u32 top level            64 u64 upper words
    72 u64 payload bytes   80 u64 payload checksum 88 4 x u64 generator state 120 u64 header checksum
   Payload: vectors (n x dim floats); HNSW also: levels (n bytes, zero-padded to a multiple of 4), level-0 links
   (n x (1 + 2M) words), upper offsets (n words), upper links (upper words). */
#define POLOPT__MIPS_VERSION 1u

/* Payload bytes of an index with these sizes, or 0 on overflow. */
static size_t polopt__mips_payload_bytes(int kind, size_t n, size_t dim, size_t M, size_t upper_words)
{
    int ok = 1;
    size_t bytes = polopt__mul_size(polopt__mul_size(n, dim, &ok), 4, &ok);
    if (kind == POLOPT_MIPS_HNSW) {
        const size_t parts[4] = {(n + 3) / 4 * 4, polopt__mul_size(polopt__mul_size(n, 1 + 2 * M, &ok), 4, &ok),
                                 polopt__mul_size(n, 4, &ok), polopt__mul_size(upper_words, 4, &ok)};
        int i;
        for (i = 0; i < 4; ++i) {
            if (parts[i] > SIZE_MAX - bytes) ok = 0;
            else bytes += parts[i];
        }
    }
    return ok ? bytes : 0;
}

/* n link lists of stride words each ([count, ids...]) with the unused slots written as zeros: the file is a
   function of the graph alone, never of what a slot held before (a pruned link, or a fresh allocation). */
static polopt_result polopt__write_link_lists(polopt__io *w, const uint32_t *lists, size_t n, size_t stride)
{
    uint32_t tmp[1024]; /* stride <= 1 + 2 * POLOPT__MIPS_MAX_M = 511 */
    const size_t per_chunk = sizeof tmp / sizeof tmp[0] / stride;
    size_t i, j;
    polopt_result rc = POLOPT_OK;
    for (i = 0; i < n && rc == POLOPT_OK; i += per_chunk) {
        const size_t m = n - i < per_chunk ? n - i : per_chunk;
        memcpy(tmp, lists + i * stride, m * stride * sizeof(uint32_t));
        for (j = 0; j < m; ++j) {
            uint32_t *list = tmp + j * stride;
            const size_t used = list[0] < stride ? 1 + (size_t)list[0] : stride;
            memset(list + used, 0, (stride - used) * sizeof(uint32_t));
        }
        rc = polopt__write_words(w, tmp, m * stride);
    }
    return rc;
}

static polopt_result polopt__mips_emit_payload(const polopt_mips *ix, polopt__io *w)
{
    static const unsigned char zeros[4] = {0, 0, 0, 0};
    polopt_result rc = polopt__write_words(w, ix->vectors, ix->n * ix->dim);
    if (ix->kind != POLOPT_MIPS_HNSW || rc != POLOPT_OK) return rc;
    if ((rc = polopt__write_bytes(w, ix->levels, ix->n)) != POLOPT_OK) return rc;
    if ((rc = polopt__write_bytes(w, zeros, (4 - ix->n % 4) % 4)) != POLOPT_OK) return rc;
    if ((rc = polopt__write_link_lists(w, ix->links0, ix->n, 1 + 2 * ix->M)) != POLOPT_OK) return rc;
    if ((rc = polopt__write_words(w, ix->upper_offset, ix->n)) != POLOPT_OK) return rc;
    /* the upper pool is the nodes' blocks of 1 + M words, one after another (see polopt__mips_check_graph) */
    return polopt__write_link_lists(w, ix->upper, ix->upper_size / (1 + ix->M), 1 + ix->M);
}

/* Header and payload: a first pass over the payload computes its checksum, the second writes it. */
static polopt_result polopt__mips_emit(const void *ctx, polopt__io *w)
{
    const polopt_mips *ix = (const polopt_mips *)ctx;
    polopt__io probe;
    unsigned char h[POLOPT__HEADER_BYTES];
    polopt_result rc;
    int i;
    memset(&probe, 0, sizeof probe);
    polopt__ck_init(&probe.ck);
    polopt__mips_emit_payload(ix, &probe); /* counts and checksums only: cannot fail */
    polopt__header_begin(h, "POLOPTIX", POLOPT__MIPS_VERSION);
    polopt__put_u32(h + 24, (uint32_t)ix->kind);
    polopt__put_u32(h + 28, (uint32_t)ix->M);
    polopt__put_u64(h + 32, ix->n);
    polopt__put_u64(h + 40, ix->dim);
    polopt__put_u64(h + 48, ix->ef_construction);
    polopt__put_u32(h + 56, ix->entry);
    polopt__put_u32(h + 60, (uint32_t)ix->max_level);
    polopt__put_u64(h + 64, ix->upper_size);
    for (i = 0; i < 4; ++i) polopt__put_u64(h + 88 + 8 * i, ix->rng.s[i]);
    polopt__header_seal(h, &probe);
    if ((rc = polopt__write(w, h, sizeof h)) != POLOPT_OK) return rc;
    return polopt__mips_emit_payload(ix, w);
}

POLOPT_DEF polopt_result polopt_mips_save(const polopt_mips *index, const char *path, polopt_error *out_err)
{
    static const char *fn = "polopt_mips_save";
    if (!index) return POLOPT_ERR_INVALID_ARG;
    if (!index->vectors) return polopt__not_ready(out_err, &index->hooks, fn, "index");
    if (!path) return polopt__fail(out_err, &index->hooks, POLOPT_ERR_INVALID_ARG, "%s: path is NULL", fn);
    return polopt__save_atomic(path, &index->hooks, out_err, fn, polopt__mips_emit, index);
}

POLOPT_DEF polopt_result polopt_mips_save_buffer(const polopt_mips *index, void *buffer, size_t buffer_size,
                                                 size_t *out_size, polopt_error *out_err)
{
    polopt__io w;
    size_t need;
    if (!index) return POLOPT_ERR_INVALID_ARG;
    if (!index->vectors) return polopt__not_ready(out_err, &index->hooks, "polopt_mips_save_buffer", "index");
    if (!out_size)
        return polopt__fail(out_err, &index->hooks, POLOPT_ERR_INVALID_ARG, "polopt_mips_save_buffer: out_size is NULL");
    need = POLOPT__HEADER_BYTES + polopt__mips_payload_bytes(index->kind, index->n, index->dim, index->M, index->upper_size);
    *out_size = need;
    if (!buffer) return POLOPT_OK;
    if (buffer_size < need)
        return polopt__fail(out_err, &index->hooks, POLOPT_ERR_INVALID_ARG,
                            "polopt_mips_save_buffer: the buffer has %lu bytes, the index needs %lu",
                            (unsigned long)buffer_size, (unsigned long)need);
    memset(&w, 0, sizeof w);
    w.buf = (unsigned char *)buffer;
    w.size = buffer_size;
    return polopt__mips_emit(index, &w);
}

/* Proof that a loaded graph has exactly the layout polopt's own writer produces, so that a file that passed its
   checksums but was made by something else can make neither a search nor a later polopt_mips_add read or write
   out of bounds:
     - the entry node is on the top level, and no node is above it;
     - the upper-level blocks are laid out as polopt__mips_prepare_nodes lays them out: node by node, in id order,
       level blocks of 1 + M words each, with no gap and no overlap, filling the pool exactly (so no write into
       one node's list can reach another's count);
     - each list holds at most M (2M on level 0) links, each to a node that exists on that level.
   The unused slots of each list are set to zero, as the writer writes them (files of polopt 0.1.0 may hold stale
   links there), so the loaded index saves back to the canonical bytes. */
static polopt_result polopt__mips_check_graph(polopt_mips *ix, const char *fn)
{
    const size_t M = ix->M, block = 1 + M;
    size_t a, words = 0;
    uint32_t i;
    int l;
    if (ix->levels[ix->entry] != ix->max_level)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT, "%s: the entry node %lu is not on the top level",
                            fn, (unsigned long)ix->entry);
    for (a = 0; a < ix->n; ++a) {
        const int level = ix->levels[a];
        if (level > ix->max_level)
            return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT, "%s: node %lu has level %d above the top level %d",
                                fn, (unsigned long)a, level, ix->max_level);
        if (level == 0 ? ix->upper_offset[a] != POLOPT_NO_ITEM
                       : (ix->upper_offset[a] != words || (ix->upper_size - words) / block < (size_t)level))
            return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT,
                                "%s: node %lu: its upper-level links are not where the writer puts them (offset %lu, "
                                "expected %lu)", fn, (unsigned long)a, (unsigned long)ix->upper_offset[a],
                                (unsigned long)(level ? words : POLOPT_NO_ITEM));
        words += (size_t)level * block;
        for (l = 0; l <= level; ++l) {
            uint32_t *links = polopt__links(ix, (uint32_t)a, l);
            const size_t max = l ? M : 2 * M;
            if (links[0] > max)
                return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT, "%s: node %lu has %u links on level %d", fn,
                                    (unsigned long)a, links[0], l);
            for (i = 1; i <= links[0]; ++i)
                if (links[i] >= ix->n || ix->levels[links[i]] < l)
                    return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT,
                                        "%s: node %lu links to %u on level %d, which is not a node of that level", fn,
                                        (unsigned long)a, links[i], l);
            for (; i <= max; ++i) links[i] = 0; /* files of polopt 0.1.0 left old links there: canonical now */
        }
    }
    if (words != ix->upper_size)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT,
                            "%s: the upper-level pool has %lu words; the nodes' levels need %lu", fn,
                            (unsigned long)ix->upper_size, (unsigned long)words);
    return POLOPT_OK;
}

static polopt_result polopt__mips_read(polopt_mips *ix, polopt__io *r, size_t available, const char *fn,
                                       const char *source)
{
    unsigned char h[POLOPT__HEADER_BYTES];
    uint64_t n64, dim64, efc64, upper64, payload64;
    uint32_t kind, M;
    size_t payload, bad = 0;
    polopt_result rc = polopt__header_read(r, h, "POLOPTIX", POLOPT__MIPS_VERSION, "index", &ix->err, &ix->hooks, fn,
                                           source);
    int i;
    if (rc != POLOPT_OK) return rc;
    kind = polopt__get_u32(h + 24), M = polopt__get_u32(h + 28);
    n64 = polopt__get_u64(h + 32), dim64 = polopt__get_u64(h + 40), efc64 = polopt__get_u64(h + 48);
    upper64 = polopt__get_u64(h + 64), payload64 = polopt__get_u64(h + 72);
    if ((kind != POLOPT_MIPS_EXACT && kind != POLOPT_MIPS_HNSW) || n64 == 0 || n64 >= POLOPT_NO_ITEM || dim64 == 0 ||
        dim64 > POLOPT__MIPS_MAX_DIM ||
        (kind == POLOPT_MIPS_HNSW && (M < 2 || M > POLOPT__MIPS_MAX_M || efc64 < 1 || efc64 > (1u << 20) ||
                                      polopt__get_u32(h + 60) > POLOPT__MIPS_MAX_LEVEL ||
                                      polopt__get_u32(h + 56) >= n64 || upper64 >= POLOPT_NO_ITEM)))
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT,
                            "%s: %s: impossible sizes (kind %u, n %llu, dim %llu, M %u)", fn, source, kind,
                            (unsigned long long)n64, (unsigned long long)dim64, M);
    if (kind == POLOPT_MIPS_EXACT ? (M | polopt__get_u32(h + 56) | polopt__get_u32(h + 60)) != 0 || efc64 != 0 ||
                                        upper64 != 0 || !polopt__all_zero(h + 88, 32)
                                  : polopt__all_zero(h + 88, 32))
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_FORMAT,
                            kind == POLOPT_MIPS_EXACT
                                ? "%s: %s: an exact index with graph fields that are not zero (M, entry, level, "
                                  "ef_construction, upper words, generator)"
                                : "%s: %s: an HNSW index whose generator state is all zero", fn, source);
    payload = polopt__mips_payload_bytes((int)kind, (size_t)n64, (size_t)dim64, M, (size_t)upper64);
    rc = polopt__payload_size_check(available, payload, payload64, &ix->err, &ix->hooks, fn, source);
    if (rc != POLOPT_OK) return rc;
    ix->kind = (polopt_mips_kind)kind;
    ix->dim = (size_t)dim64;
    ix->M = kind == POLOPT_MIPS_HNSW ? M : 0;
    ix->ef_construction = (size_t)efc64;
    ix->entry = polopt__get_u32(h + 56);
    ix->max_level = (int)polopt__get_u32(h + 60);
    for (i = 0; i < 4; ++i) ix->rng.s[i] = polopt__get_u64(h + 88 + 8 * i);
    rc = polopt__mips_reserve(ix, (size_t)n64, 1);
    if (rc == POLOPT_OK && kind == POLOPT_MIPS_HNSW) {
        ix->upper = (uint32_t *)polopt__alloc(&ix->hooks, (size_t)upper64 + 1, sizeof(uint32_t), &rc);
        ix->upper_capacity = ix->upper ? (size_t)upper64 + 1 : 0;
    }
    if (rc != POLOPT_OK)
        return polopt__fail(&ix->err, &ix->hooks, rc, "%s: cannot allocate an index of %llu items", fn,
                            (unsigned long long)n64);
    ix->vectors = ix->owned_vectors;
    ix->n = (size_t)n64;
    ix->upper_size = (size_t)upper64;
    polopt__ck_init(&r->ck);
    rc = polopt__read_words(r, ix->owned_vectors, ix->n * ix->dim);
    if (rc == POLOPT_OK && kind == POLOPT_MIPS_HNSW) {
        unsigned char pad[4];
        rc = polopt__read_bytes(r, ix->levels, ix->n);
        if (rc == POLOPT_OK) rc = polopt__read_bytes(r, pad, (4 - ix->n % 4) % 4);
        if (rc == POLOPT_OK && !polopt__all_zero(pad, (4 - ix->n % 4) % 4)) rc = POLOPT_ERR_FORMAT;
        if (rc == POLOPT_OK) rc = polopt__read_words(r, ix->links0, ix->n * (1 + 2 * ix->M));
        if (rc == POLOPT_OK) rc = polopt__read_words(r, ix->upper_offset, ix->n);
        if (rc == POLOPT_OK) rc = polopt__read_words(r, ix->upper, ix->upper_size);
    }
    if (rc == POLOPT_ERR_FORMAT)
        return polopt__fail(&ix->err, &ix->hooks, rc, "%s: %s: the padding after the levels is not zero", fn, source);
    if (rc != POLOPT_OK)
        return polopt__fail(&ix->err, &ix->hooks, rc, "%s: %s ends after %lu of %lu bytes", fn, source,
                            (unsigned long)r->pos, (unsigned long)(POLOPT__HEADER_BYTES + payload));
    if ((rc = polopt__payload_end_check(r, h, &ix->err, &ix->hooks, fn, source)) != POLOPT_OK) return rc;
    if (polopt_check_finite(ix->n * ix->dim, ix->vectors, &bad) != POLOPT_OK)
        return polopt__fail(&ix->err, &ix->hooks, POLOPT_ERR_NONFINITE, "%s: %s: vector %lu is not finite", fn, source,
                            (unsigned long)(bad / ix->dim));
    if (kind == POLOPT_MIPS_HNSW) {
        if ((rc = polopt__mips_check_graph(ix, fn)) != POLOPT_OK) return rc;
        for (bad = 0; bad < ix->n; ++bad) {
            const float sq = polopt__nrm2(ix->dim, polopt__mips_vec(ix, (uint32_t)bad));
            ix->sqnorms[bad] = sq * sq > POLOPT__TINY_SQNORM ? sq * sq : POLOPT__TINY_SQNORM;
        }
        polopt__mips_hubs(ix);
    }
    return POLOPT_OK;
}

/* Loading from a file or a buffer: the object ends fully loaded, or zeroed with its message. */
static polopt_result polopt__mips_read_cb(void *obj, polopt__io *r, size_t available, const char *fn, const char *source)
{
    return polopt__mips_read((polopt_mips *)obj, r, available, fn, source);
}

static polopt_result polopt__mips_load_any(polopt_mips *x, int from_file, const char *path, const void *buffer,
                                         size_t size, const polopt_hooks *hooks, const char *fn)
{
    polopt_result rc;
    if (!x) return POLOPT_ERR_INVALID_ARG;
    memset(x, 0, sizeof *x);
    x->hooks = hooks ? *hooks : polopt__no_hooks;
    if (from_file && !path) rc = polopt__fail(&x->err, &x->hooks, POLOPT_ERR_INVALID_ARG, "%s: path is NULL", fn);
    else rc = polopt__load(path, buffer, size, polopt__mips_read_cb, x, &x->err, &x->hooks, fn);
    if (rc != POLOPT_OK) POLOPT__ZERO_KEEPING_ERROR(x, polopt_mips_free);
    else polopt__clear_error(&x->err);
    return rc;
}

POLOPT_DEF polopt_result polopt_mips_load_buffer(polopt_mips *index, const void *buffer, size_t size,
                                                 const polopt_hooks *hooks)
{
    return polopt__mips_load_any(index, 0, NULL, buffer, size, hooks, "polopt_mips_load_buffer");
}

POLOPT_DEF polopt_result polopt_mips_load(polopt_mips *index, const char *path, const polopt_hooks *hooks)
{
    return polopt__mips_load_any(index, 1, path, NULL, 0, hooks, "polopt_mips_load");
}

/* >>optim ------------------------------------------------------------------------------------------------- */

/* Checks shared by the optimisers' steps: params and grad present and finite, so a step never writes NaN. */
static polopt_result polopt__check_step(polopt_error *err, const polopt_hooks *hooks, const char *fn, size_t n,
                                        const float *params, const float *grad)
{
    size_t bad = 0;
    if (!params || !grad)
        return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG, "%s: %s is NULL", fn, params ? "grad" : "params");
    if (polopt_check_finite(n, grad, &bad) != POLOPT_OK)
        return polopt__fail(err, hooks, POLOPT_ERR_NONFINITE, "%s: grad[%lu] = %g is not finite; nothing updated",
                            fn, (unsigned long)bad, (double)grad[bad]);
    if (polopt_check_finite(n, params, &bad) != POLOPT_OK)
        return polopt__fail(err, hooks, POLOPT_ERR_NONFINITE, "%s: params[%lu] = %g is not finite; nothing updated",
                            fn, (unsigned long)bad, (double)params[bad]);
    return POLOPT_OK;
}

/* A configuration value that must be > lo (positive = 1) or >= lo, and below hi (open) or at most hi; hi = FLT_MAX
   means "finite".  POLOPT_OK, or the error with a message naming the field and the rule. */

POLOPT_DEF polopt_adam_config polopt_adam_config_default(void)
{
    polopt_adam_config c;
    memset(&c, 0, sizeof c);
    c.lr = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    return c;
}

static polopt_result polopt__adam_init_impl(polopt_adam *opt, size_t n, const polopt_adam_config *config)
{
    static const char *fn = "polopt_adam_init";
    polopt_result rc = POLOPT_OK;
    const polopt_adam_config c = config ? *config : polopt_adam_config_default();
    if (!opt) return POLOPT_ERR_INVALID_ARG;
    memset(opt, 0, sizeof *opt);
    opt->config = c;
    if ((rc = polopt__check_range(&opt->err, &c.hooks, fn, "lr", c.lr, 0.0, POLOPT__OPEN, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&opt->err, &c.hooks, fn, "beta1", c.beta1, 0.0, POLOPT__CLOSED, 1.0, POLOPT__OPEN)) != POLOPT_OK ||
        (rc = polopt__check_range(&opt->err, &c.hooks, fn, "beta2", c.beta2, 0.0, POLOPT__CLOSED, 1.0, POLOPT__OPEN)) != POLOPT_OK ||
        (rc = polopt__check_range(&opt->err, &c.hooks, fn, "eps", c.eps, 0.0, POLOPT__OPEN, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&opt->err, &c.hooks, fn, "weight_decay", c.weight_decay, 0.0, POLOPT__CLOSED, FLT_MAX, POLOPT__CLOSED)))
        return rc;
    if (n == 0) return polopt__fail(&opt->err, &c.hooks, POLOPT_ERR_INVALID_ARG, "%s: n = 0 parameters", fn);
    opt->m = (float *)polopt__alloc(&c.hooks, n, sizeof(float), &rc);
    if (opt->m) opt->v = (float *)polopt__alloc(&c.hooks, n, sizeof(float), &rc);
    if (!opt->v) {
        return polopt__fail(&opt->err, &c.hooks, rc, "%s: cannot allocate moments for n = %lu", fn,
                            (unsigned long)n);
    }
    memset(opt->m, 0, n * sizeof(float));
    memset(opt->v, 0, n * sizeof(float));
    opt->n = n;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_adam_init(polopt_adam *opt, size_t n, const polopt_adam_config *config)
{
    const polopt_result rc = polopt__adam_init_impl(opt, n, config);
    if (rc != POLOPT_OK && opt) POLOPT__ZERO_KEEPING_ERROR(opt, polopt_adam_free);
    return rc;
}

POLOPT_DEF polopt_result polopt_adam_step(polopt_adam *opt, float *params, const float *grad)
{
    const polopt_adam_config *c;
    double bc1, bc2;
    float step, inv_sqrt_bc2, decay, sign;
    size_t i;
    polopt_result rc;
    if (!opt) return POLOPT_ERR_INVALID_ARG;
    if (!opt->m) return polopt__not_ready(&opt->err, &opt->config.hooks, "polopt_adam_step", "optimiser");
    c = &opt->config;
    rc = polopt__check_step(&opt->err, &c->hooks, "polopt_adam_step", opt->n, params, grad);
    if (rc != POLOPT_OK) return rc;
    opt->t += 1;
    bc1 = 1.0 - pow((double)c->beta1, (double)opt->t);
    bc2 = 1.0 - pow((double)c->beta2, (double)opt->t);
    step = (float)((double)c->lr / bc1);
    inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    decay = 1.0f - c->lr * c->weight_decay;
    sign = c->maximize ? -1.0f : 1.0f;
    for (i = 0; i < opt->n; ++i) {
        const float g = sign * grad[i];
        const float m = c->beta1 * opt->m[i] + (1.0f - c->beta1) * g;
        const float v = c->beta2 * opt->v[i] + (1.0f - c->beta2) * g * g;
        opt->m[i] = m;
        opt->v[i] = v;
        params[i] = params[i] * decay - step * m / (sqrtf(v) * inv_sqrt_bc2 + c->eps);
    }
    return POLOPT_OK;
}

POLOPT_DEF void polopt_adam_free(polopt_adam *opt)
{
    if (!opt) return;
    polopt__dealloc(&opt->config.hooks, opt->m);
    polopt__dealloc(&opt->config.hooks, opt->v);
    memset(opt, 0, sizeof *opt);
}

POLOPT_DEF polopt_sgd_config polopt_sgd_config_default(void)
{
    polopt_sgd_config c;
    memset(&c, 0, sizeof c);
    c.lr = 1e-2f;
    return c;
}

static polopt_result polopt__sgd_init_impl(polopt_sgd *opt, size_t n, const polopt_sgd_config *config)
{
    static const char *fn = "polopt_sgd_init";
    polopt_result rc = POLOPT_OK;
    const polopt_sgd_config c = config ? *config : polopt_sgd_config_default();
    if (!opt) return POLOPT_ERR_INVALID_ARG;
    memset(opt, 0, sizeof *opt);
    opt->config = c;
    if ((rc = polopt__check_range(&opt->err, &c.hooks, fn, "lr", c.lr, 0.0, POLOPT__OPEN, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&opt->err, &c.hooks, fn, "momentum", c.momentum, 0.0, POLOPT__CLOSED, 1.0, POLOPT__OPEN)) != POLOPT_OK ||
        (rc = polopt__check_range(&opt->err, &c.hooks, fn, "weight_decay", c.weight_decay, 0.0, POLOPT__CLOSED, FLT_MAX, POLOPT__CLOSED)))
        return rc;
    if (n == 0) return polopt__fail(&opt->err, &c.hooks, POLOPT_ERR_INVALID_ARG, "%s: n = 0 parameters", fn);
    if (c.momentum > 0.0f) {
        opt->buf = (float *)polopt__alloc(&c.hooks, n, sizeof(float), &rc);
        if (!opt->buf)
            return polopt__fail(&opt->err, &c.hooks, rc, "%s: cannot allocate the momentum buffer for n = %lu", fn,
                                (unsigned long)n);
    }
    opt->n = n;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_sgd_init(polopt_sgd *opt, size_t n, const polopt_sgd_config *config)
{
    const polopt_result rc = polopt__sgd_init_impl(opt, n, config);
    if (rc != POLOPT_OK && opt) POLOPT__ZERO_KEEPING_ERROR(opt, polopt_sgd_free);
    return rc;
}

POLOPT_DEF polopt_result polopt_sgd_step(polopt_sgd *opt, float *params, const float *grad)
{
    const polopt_sgd_config *c;
    float sign;
    size_t i;
    polopt_result rc;
    if (!opt) return POLOPT_ERR_INVALID_ARG;
    if (opt->n == 0) return polopt__not_ready(&opt->err, &opt->config.hooks, "polopt_sgd_step", "optimiser");
    c = &opt->config;
    rc = polopt__check_step(&opt->err, &c->hooks, "polopt_sgd_step", opt->n, params, grad);
    if (rc != POLOPT_OK) return rc;
    sign = c->maximize ? -1.0f : 1.0f;
    for (i = 0; i < opt->n; ++i) {
        float g = sign * grad[i] + c->weight_decay * params[i];
        if (opt->buf) {
            g = opt->t == 0 ? g : c->momentum * opt->buf[i] + g;
            opt->buf[i] = g;
        }
        params[i] -= c->lr * g;
    }
    opt->t += 1;
    return POLOPT_OK;
}

POLOPT_DEF void polopt_sgd_free(polopt_sgd *opt)
{
    if (!opt) return;
    polopt__dealloc(&opt->config.hooks, opt->buf);
    memset(opt, 0, sizeof *opt);
}

/* >>policy ------------------------------------------------------------------------------------------------ */

#define POLOPT__POLICY_VERSION 1u

/* A temperature the policy can divide by: 1/T must be a finite float too (T >= about 2.9e-39), as the softmax
   functions require. */
static int polopt__temperature_ok(float t)
{
    return t >= 1.0f / FLT_MAX && t <= FLT_MAX;
}
#define POLOPT__MAX_DIM (1u << 20)

POLOPT_DEF polopt_policy_config polopt_policy_config_default(size_t D, size_t L)
{
    polopt_policy_config c;
    memset(&c, 0, sizeof c);
    c.D = D;
    c.L = L;
    c.init = D == L ? POLOPT_INIT_IDENTITY : POLOPT_INIT_RANDOM;
    c.init_scale = 1.0f;
    c.temperature = 1.0f;
    c.seed = 1;
    return c;
}

static polopt_result polopt__policy_alloc(polopt_policy *p, size_t D, size_t L, const char *fn)
{
    polopt_result rc = POLOPT_OK;
    int ok = 1;
    polopt__mul_size(D, L, &ok);
    if (!ok) return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_OVERFLOW, "%s: D x L overflows", fn);
    p->theta = (float *)polopt__alloc(&p->hooks, D * L, sizeof(float), &rc);
    if (!p->theta)
        return polopt__fail(&p->err, &p->hooks, rc, "%s: cannot allocate theta (%lu x %lu)", fn, (unsigned long)D,
                            (unsigned long)L);
    p->D = D;
    p->L = L;
    return POLOPT_OK;
}

static polopt_result polopt__policy_init_impl(polopt_policy *p, const polopt_policy_config *config)
{
    static const char *fn = "polopt_policy_init";
    polopt_policy_config c;
    polopt_result rc;
    size_t i;
    if (!p) return POLOPT_ERR_INVALID_ARG;
    memset(p, 0, sizeof *p);
    if (!config) return polopt__fail(&p->err, NULL, POLOPT_ERR_INVALID_ARG, "%s: config is NULL", fn);
    c = *config;
    p->hooks = c.hooks;
    if (c.D < 1 || c.D > POLOPT__MAX_DIM || c.L < 1 || c.L > POLOPT__MAX_DIM)
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_INVALID_ARG, "%s: D = %lu and L = %lu must be in [1, 2^20]",
                            fn, (unsigned long)c.D, (unsigned long)c.L);
    if (!polopt__temperature_ok(c.temperature))
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: config.temperature = %g must be in [1 / FLT_MAX, FLT_MAX] (1/T must be a float)", fn,
                            (double)c.temperature);
    if (!(c.init_scale >= 0.0f && c.init_scale <= FLT_MAX))
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.init_scale = %g must be >= 0", fn,
                            (double)c.init_scale);
    if (c.init != POLOPT_INIT_IDENTITY && c.init != POLOPT_INIT_RANDOM)
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.init = %d is unknown", fn, (int)c.init);
    if (c.init == POLOPT_INIT_IDENTITY && c.D != c.L)
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: identity initialisation needs D = L (D = %lu, L = %lu); use POLOPT_INIT_RANDOM", fn,
                            (unsigned long)c.D, (unsigned long)c.L);
    if ((rc = polopt__policy_alloc(p, c.D, c.L, fn)) != POLOPT_OK) return rc;
    p->temperature = c.temperature;
    if (c.init == POLOPT_INIT_IDENTITY) {
        memset(p->theta, 0, c.D * c.L * sizeof(float));
        for (i = 0; i < c.D; ++i) p->theta[i * c.L + i] = c.init_scale;
    } else { /* N(0, scale^2 / D): h = theta^T x keeps the size of x whatever D */
        polopt_rng rng;
        polopt__rng_seed(&rng, c.seed);
        polopt__rng_normals(&rng, c.D * c.L, p->theta);
        polopt__scale(c.D * c.L, c.init_scale / (float)sqrt((double)c.D), p->theta);
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_policy_init(polopt_policy *policy, const polopt_policy_config *config)
{
    const polopt_result rc = polopt__policy_init_impl(policy, config);
    if (rc != POLOPT_OK && policy) POLOPT__ZERO_KEEPING_ERROR(policy, polopt_policy_free);
    return rc;
}

POLOPT_DEF void polopt_policy_free(polopt_policy *policy)
{
    if (!policy) return;
    polopt__dealloc(&policy->hooks, policy->theta);
    memset(policy, 0, sizeof *policy);
}

POLOPT_DEF polopt_result polopt_policy_embed(const polopt_policy *policy, size_t n, const float *X, size_t ldx, float *out_H)
{
    static const char *fn = "polopt_policy_embed";
    size_t i, bad = 0;
    if (!policy || !policy->theta) return POLOPT_ERR_INVALID_ARG;
    if (n == 0) return POLOPT_OK;
    if (!X || !out_H || ldx < policy->D)
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG, "%s: X or out_H is NULL, or ldx < D", fn);
    for (i = 0; i < n; ++i)
        if (polopt_check_finite(policy->D, X + i * ldx, &bad) != POLOPT_OK)
            return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_NONFINITE, "%s: X[%lu][%lu] is not finite", fn,
                                (unsigned long)i, (unsigned long)bad);
    polopt__gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, n, policy->L, policy->D, 1.0f, X, ldx, policy->theta, policy->L, 0.0f, out_H, policy->L);
    if (polopt_check_finite(n * policy->L, out_H, &bad) != POLOPT_OK) /* finite x and theta, but x theta overflows */
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_NONFINITE, "%s: H[%lu][%lu] = x theta overflows float", fn,
                            (unsigned long)(bad / policy->L), (unsigned long)(bad % policy->L));
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_policy_topk(const polopt_policy *policy, const polopt_mips *index,
                                            polopt_mips_scratch *scratch, const float *x, size_t k, size_t ef,
                                            uint32_t *out_ids, float *out_scores)
{
    float stack_h[1024], *h = stack_h;
    polopt_result rc;
    size_t i;
    if (!policy || !policy->theta || !index || !scratch) return POLOPT_ERR_INVALID_ARG;
    if (index->dim != policy->L)
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG, "polopt_policy_topk: the index has dimension %lu, "
                            "the policy L = %lu", (unsigned long)index->dim, (unsigned long)policy->L);
    if (policy->L > sizeof stack_h / sizeof stack_h[0]) {
        h = (float *)polopt__alloc(&policy->hooks, policy->L, sizeof(float), &rc);
        if (!h) return rc;
    }
    rc = polopt_policy_embed(policy, 1, x, policy->D, h);
    if (rc == POLOPT_OK) rc = polopt_mips_search(index, scratch, h, k, ef, out_ids, out_scores);
    if (rc == POLOPT_OK && out_scores)
        for (i = 0; i < k && rc == POLOPT_OK; ++i)
            if (out_ids[i] != POLOPT_NO_ITEM && !(fabsf(out_scores[i] /= policy->temperature) <= FLT_MAX))
                rc = polopt__fail(NULL, &policy->hooks, POLOPT_ERR_NONFINITE,
                                  "polopt_policy_topk: the score f = h^T beta / T of item %u overflows float", out_ids[i]);
    if (h != stack_h) polopt__dealloc(&policy->hooks, h);
    return rc;
}

/* Binary search of a sorted row of items. */
static int polopt__sorted_contains(const uint32_t *items, size_t n, uint32_t a)
{
    size_t lo = 0, hi = n;
    if (n <= 8) { /* a basket's few items: a scan, without the mispredicted branches of a search */
        int found = 0;
        for (lo = 0; lo < n; ++lo) found |= items[lo] == a;
        return found;
    }
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (items[mid] < a) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && items[lo] == a;
}

POLOPT_DEF polopt_result polopt_policy_topk_excluding(const polopt_policy *policy, const polopt_mips *index,
                                                      polopt_mips_scratch *scratch, const float *x, size_t n_exclude,
                                                      const uint32_t *exclude, size_t k, size_t ef, uint32_t *out_ids,
                                                      float *out_scores)
{
    static const char *fn = "polopt_policy_topk_excluding";
    const size_t want = k + n_exclude;
    size_t i, kept = 0;
    polopt_result rc;
    if (!policy || !policy->theta || !scratch || !out_ids) return POLOPT_ERR_INVALID_ARG;
    if (n_exclude && !exclude) return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG, "%s: exclude is NULL", fn);
    for (i = 1; i < n_exclude; ++i)
        if (exclude[i] <= exclude[i - 1])
            return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG,
                                "%s: exclude must be sorted and distinct (entry %lu)", fn, (unsigned long)i);
    if (want < k || (index && want > index->n))
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: k + n_exclude = %lu exceeds the catalogue", fn, (unsigned long)want);
    rc = polopt_policy_topk(policy, index, scratch, x, want, ef > want ? ef : want, out_ids, out_scores);
    if (rc != POLOPT_OK) return rc;
    for (i = 0; i < want; ++i) /* keep the first k results outside exclude, in order */
        if (out_ids[i] == POLOPT_NO_ITEM || !polopt__sorted_contains(exclude, n_exclude, out_ids[i])) {
            if (kept < k) {
                out_ids[kept] = out_ids[i];
                if (out_scores) out_scores[kept] = out_scores[i];
            }
            ++kept;
        }
    for (i = kept; i < k; ++i) { /* fewer than k left (a graph that reached few items) */
        out_ids[i] = POLOPT_NO_ITEM;
        if (out_scores) out_scores[i] = -INFINITY;
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_policy_explore(const polopt_policy *policy, const polopt_mips *index,
                                               polopt_mips_scratch *scratch, polopt_rng *rng, const float *x, size_t M,
                                               size_t K, size_t K_top, float temperature, size_t ef,
                                               uint32_t *out_ids, float *work)
{
    static const char *fn = "polopt_policy_explore";
    size_t m, j, i;
    polopt_result rc;
    if (!policy || !policy->theta || !index || !scratch || !rng || !x || !out_ids || !work) return POLOPT_ERR_INVALID_ARG;
    if (!(K >= 1 && K <= M && M <= index->n && K_top <= K) || !(temperature >= 1.0f / FLT_MAX && temperature <= FLT_MAX))
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: needs K_top <= K <= M <= P (K_top = %lu, K = %lu, M = %lu, P = %lu) and T in "
                            "[1 / FLT_MAX, FLT_MAX] (T = %g)", fn, (unsigned long)K_top, (unsigned long)K,
                            (unsigned long)M, (unsigned long)index->n, (double)temperature);
    if ((rc = polopt_policy_topk(policy, index, scratch, x, M, ef, out_ids, work)) != POLOPT_OK) return rc;
    for (m = M; m > 0 && out_ids[m - 1] == POLOPT_NO_ITEM; --m) {} /* a graph that reached fewer than M items */
    if (m < K)
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG, "%s: the index returned %lu items, fewer than "
                            "K = %lu (raise ef)", fn, (unsigned long)m, (unsigned long)K);
    for (j = K_top; j < m; ++j) work[j] = (float)(work[j] / temperature + polopt_rng_gumbel(rng));
    for (j = K_top; j < K; ++j) { /* the largest keys of the rest, in order: selection, K is small */
        size_t best = j;
        for (i = j + 1; i < m; ++i)
            if (work[i] > work[best]) best = i;
        if (best != j) {
            const uint32_t id = out_ids[j];
            const float key = work[j];
            out_ids[j] = out_ids[best], work[j] = work[best];
            out_ids[best] = id, work[best] = key;
        }
    }
    return POLOPT_OK;
}

/* Policy files: the common header with 24 u64 D, 32 u64 L, 40 f32 temperature; payload theta (D x L floats). */
static polopt_result polopt__policy_emit(const void *ctx, polopt__io *w)
{
    const polopt_policy *p = (const polopt_policy *)ctx;
    unsigned char h[POLOPT__HEADER_BYTES];
    polopt__io probe;
    uint32_t t;
    polopt_result rc;
    memset(&probe, 0, sizeof probe);
    polopt__ck_init(&probe.ck);
    polopt__write_words(&probe, p->theta, p->D * p->L);
    polopt__header_begin(h, "POLOPTPL", POLOPT__POLICY_VERSION);
    polopt__put_u64(h + 24, p->D);
    polopt__put_u64(h + 32, p->L);
    memcpy(&t, &p->temperature, 4);
    polopt__put_u32(h + 40, t);
    polopt__header_seal(h, &probe);
    if ((rc = polopt__write(w, h, sizeof h)) != POLOPT_OK) return rc;
    return polopt__write_words(w, p->theta, p->D * p->L);
}

POLOPT_DEF polopt_result polopt_policy_save(const polopt_policy *policy, const char *path, polopt_error *out_err)
{
    static const char *fn = "polopt_policy_save";
    if (!policy) return POLOPT_ERR_INVALID_ARG;
    if (!policy->theta) return polopt__not_ready(out_err, &policy->hooks, fn, "policy");
    if (!path) return polopt__fail(out_err, &policy->hooks, POLOPT_ERR_INVALID_ARG, "%s: path is NULL", fn);
    return polopt__save_atomic(path, &policy->hooks, out_err, fn, polopt__policy_emit, policy);
}

POLOPT_DEF polopt_result polopt_policy_save_buffer(const polopt_policy *policy, void *buffer, size_t buffer_size,
                                                   size_t *out_size, polopt_error *out_err)
{
    polopt__io w;
    if (!policy) return POLOPT_ERR_INVALID_ARG;
    if (!policy->theta) return polopt__not_ready(out_err, &policy->hooks, "polopt_policy_save_buffer", "policy");
    if (!out_size)
        return polopt__fail(out_err, &policy->hooks, POLOPT_ERR_INVALID_ARG, "polopt_policy_save_buffer: out_size is NULL");
    *out_size = POLOPT__HEADER_BYTES + policy->D * policy->L * 4;
    if (!buffer) return POLOPT_OK;
    if (buffer_size < *out_size)
        return polopt__fail(out_err, &policy->hooks, POLOPT_ERR_INVALID_ARG,
                            "polopt_policy_save_buffer: the buffer has %lu bytes, the policy needs %lu",
                            (unsigned long)buffer_size, (unsigned long)*out_size);
    memset(&w, 0, sizeof w);
    w.buf = (unsigned char *)buffer;
    w.size = buffer_size;
    return polopt__policy_emit(policy, &w);
}

static polopt_result polopt__policy_read(polopt_policy *p, polopt__io *r, size_t available, const char *fn,
                                         const char *source)
{
    unsigned char h[POLOPT__HEADER_BYTES];
    uint64_t D, L;
    uint32_t t;
    float temperature;
    size_t bad = 0;
    polopt_result rc = polopt__header_read(r, h, "POLOPTPL", POLOPT__POLICY_VERSION, "policy", &p->err, &p->hooks, fn,
                                           source);
    if (rc != POLOPT_OK) return rc;
    D = polopt__get_u64(h + 24), L = polopt__get_u64(h + 32), t = polopt__get_u32(h + 40);
    memcpy(&temperature, &t, 4);
    if (D < 1 || D > POLOPT__MAX_DIM || L < 1 || L > POLOPT__MAX_DIM || !polopt__temperature_ok(temperature))
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_FORMAT, "%s: %s: impossible sizes (D %llu, L %llu, T %g)",
                            fn, source, (unsigned long long)D, (unsigned long long)L, (double)temperature);
    if (!polopt__all_zero(h + 44, 72 - 44) || !polopt__all_zero(h + 88, 120 - 88))
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_FORMAT, "%s: %s: reserved header bytes are not zero", fn,
                            source);
    {
        int ok = 1;
        const size_t payload = polopt__mul_size(polopt__mul_size((size_t)D, (size_t)L, &ok), 4, &ok);
        rc = polopt__payload_size_check(available, ok ? payload : 0, polopt__get_u64(h + 72), &p->err, &p->hooks, fn,
                                        source);
    }
    if (rc != POLOPT_OK) return rc;
    if ((rc = polopt__policy_alloc(p, (size_t)D, (size_t)L, fn)) != POLOPT_OK) return rc;
    p->temperature = temperature;
    polopt__ck_init(&r->ck);
    if ((rc = polopt__read_words(r, p->theta, p->D * p->L)) != POLOPT_OK)
        return polopt__fail(&p->err, &p->hooks, rc, "%s: %s ends after %lu bytes", fn, source, (unsigned long)r->pos);
    if ((rc = polopt__payload_end_check(r, h, &p->err, &p->hooks, fn, source)) != POLOPT_OK) return rc;
    if (polopt_check_finite(p->D * p->L, p->theta, &bad) != POLOPT_OK)
        return polopt__fail(&p->err, &p->hooks, POLOPT_ERR_NONFINITE, "%s: %s: theta[%lu] is not finite", fn, source,
                            (unsigned long)bad);
    return POLOPT_OK;
}

/* Loading from a file or a buffer: the object ends fully loaded, or zeroed with its message. */
static polopt_result polopt__policy_read_cb(void *obj, polopt__io *r, size_t available, const char *fn, const char *source)
{
    return polopt__policy_read((polopt_policy *)obj, r, available, fn, source);
}

static polopt_result polopt__policy_load_any(polopt_policy *x, int from_file, const char *path, const void *buffer,
                                         size_t size, const polopt_hooks *hooks, const char *fn)
{
    polopt_result rc;
    if (!x) return POLOPT_ERR_INVALID_ARG;
    memset(x, 0, sizeof *x);
    x->hooks = hooks ? *hooks : polopt__no_hooks;
    if (from_file && !path) rc = polopt__fail(&x->err, &x->hooks, POLOPT_ERR_INVALID_ARG, "%s: path is NULL", fn);
    else rc = polopt__load(path, buffer, size, polopt__policy_read_cb, x, &x->err, &x->hooks, fn);
    if (rc != POLOPT_OK) POLOPT__ZERO_KEEPING_ERROR(x, polopt_policy_free);
    else polopt__clear_error(&x->err);
    return rc;
}

POLOPT_DEF polopt_result polopt_policy_load_buffer(polopt_policy *policy, const void *buffer, size_t size,
                                                 const polopt_hooks *hooks)
{
    return polopt__policy_load_any(policy, 0, NULL, buffer, size, hooks, "polopt_policy_load_buffer");
}

POLOPT_DEF polopt_result polopt_policy_load(polopt_policy *policy, const char *path, const polopt_hooks *hooks)
{
    return polopt__policy_load_any(policy, 1, path, NULL, 0, hooks, "polopt_policy_load");
}

/* >>proposal ---------------------------------------------------------------------------------------------- */

static size_t polopt__hash_slot(uint32_t id, size_t mask)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 32) & mask;
}

/* The filter bit of id: other bits of the same product than the slot's. */
static size_t polopt__filter_bit(uint32_t id)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 52); /* 12 bits: 0..4095 */
}

/* The position of id in alpha_K, or -1. */
static long polopt__proposal_find(const polopt_proposal *q, uint32_t id)
{
    const size_t bit = polopt__filter_bit(id);
    size_t slot = polopt__hash_slot(id, q->table_mask);
    if (!(q->filter[bit / 64] >> (bit % 64) & 1)) return -1; /* with K = 256, 94% of non-members stop here */
    for (;; slot = (slot + 1) & q->table_mask) {
        const uint32_t v = q->table[slot];
        if (v == 0) return -1;
        if (q->ids[v - 1] == id) return (long)(v - 1);
    }
}

/* The proposal's arrays for top-K sets of up to max_K, carved from a; with a real base, the table starts empty. */
static void polopt__proposal_layout(polopt_proposal *q, size_t P, size_t max_K, polopt__arena *a)
{
    size_t size = 4;
    while (size < 4 * max_K) size *= 2; /* load factor at most 1/4: a miss (most uniform draws) probes ~1.4 slots */
    q->ids = (uint32_t *)polopt__carve(a, max_K, sizeof(uint32_t));
    q->log_kappa = (float *)polopt__carve(a, max_K, sizeof(float));
    q->log_q = (float *)polopt__carve(a, max_K, sizeof(float));
    q->prob = (float *)polopt__carve(a, max_K, sizeof(float));
    q->alias = (uint32_t *)polopt__carve(a, max_K, sizeof(uint32_t));
    q->work = (double *)polopt__carve(a, max_K, sizeof(double));
    q->stack = (uint32_t *)polopt__carve(a, max_K, sizeof(uint32_t));
    q->table = (uint32_t *)polopt__carve(a, size, sizeof(uint32_t));
    if (q->table) memset(q->table, 0, size * sizeof(uint32_t));
    memset(q->filter, 0, sizeof q->filter);
    q->P = P;
    q->max_K = max_K;
    q->K = 0;
    q->table_mask = size - 1;
    q->epsilon = 1.0f;
}

static polopt_result polopt__proposal_check(size_t P, size_t max_K, polopt_error *err, const polopt_hooks *hooks,
                                            const char *fn)
{
    if (P < 1 || P >= POLOPT_NO_ITEM || max_K < 1 || max_K > P || max_K > (1u << 24))
        return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: P = %lu and max_K = %lu must satisfy 1 <= max_K <= min(P, 2^24)", fn, (unsigned long)P,
                            (unsigned long)max_K);
    return POLOPT_OK;
}

static polopt_result polopt__proposal_init_impl(polopt_proposal *q, size_t P, size_t max_K, const polopt_hooks *hooks)
{
    static const char *fn = "polopt_proposal_init";
    polopt_result rc = POLOPT_OK;
    polopt__arena a = {NULL, 0, 0};
    if (!q) return POLOPT_ERR_INVALID_ARG;
    memset(q, 0, sizeof *q);
    q->hooks = hooks ? *hooks : polopt__no_hooks;
    if ((rc = polopt__proposal_check(P, max_K, &q->err, &q->hooks, fn)) != POLOPT_OK) return rc;
    polopt__proposal_layout(q, P, max_K, &a);
    q->block = polopt__arena_alloc(&q->hooks, &a, &rc);
    if (!q->block)
        return polopt__fail(&q->err, &q->hooks, rc, "%s: cannot allocate for max_K = %lu", fn, (unsigned long)max_K);
    polopt__arena_begin(&a, q->block);
    polopt__proposal_layout(q, P, max_K, &a);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_proposal_init(polopt_proposal *q, size_t P, size_t max_K, const polopt_hooks *hooks)
{
    const polopt_result rc = polopt__proposal_init_impl(q, P, max_K, hooks);
    if (rc != POLOPT_OK && q) POLOPT__ZERO_KEEPING_ERROR(q, polopt_proposal_free);
    return rc;
}

POLOPT_DEF void polopt_proposal_free(polopt_proposal *q)
{
    if (!q) return;
    polopt__dealloc(&q->hooks, q->block);
    memset(q, 0, sizeof *q);
}

/* Empty the hash table of the current members: O(K), not O(table). */
static void polopt__proposal_clear(polopt_proposal *q)
{
    size_t i;
    for (i = 0; i < q->K; ++i) {
        size_t slot = polopt__hash_slot(q->ids[i], q->table_mask);
        while (q->table[slot] != 0) {
            q->table[slot] = 0;
            slot = (slot + 1) & q->table_mask;
        }
    }
    memset(q->filter, 0, sizeof q->filter);
    q->K = 0;
}

POLOPT_DEF polopt_result polopt_proposal_set(polopt_proposal *q, float epsilon, size_t K, const uint32_t *ids,
                                             const float *scores)
{
    static const char *fn = "polopt_proposal_set";
    double z = 0.0, log_z;
    size_t i, bad = 0;
    float mx;
    if (!q) return POLOPT_ERR_INVALID_ARG;
    if (!q->table) return polopt__not_ready(&q->err, &q->hooks, fn, "proposal");
    if (!(epsilon >= 0.0f && epsilon <= 1.0f))
        return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_INVALID_ARG, "%s: epsilon = %g is outside [0, 1]", fn,
                            (double)epsilon);
    if (K < 1 || K > q->max_K || !ids || !scores)
        return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_INVALID_ARG, "%s: K = %lu must be in [1, max_K = %lu]", fn,
                            (unsigned long)K, (unsigned long)q->max_K);
    if (polopt_check_finite(K, scores, &bad) != POLOPT_OK)
        return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_NONFINITE, "%s: scores[%lu] is not finite", fn,
                            (unsigned long)bad);
    for (i = 0; i < K; ++i)
        if (ids[i] >= q->P)
            return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_INVALID_ARG, "%s: ids[%lu] = %u is not below P = %lu", fn,
                                (unsigned long)i, ids[i], (unsigned long)q->P);
    polopt__proposal_clear(q);
    for (i = 0; i < K; ++i) { /* members into the hash table */
        size_t slot = polopt__hash_slot(ids[i], q->table_mask);
        if (polopt__proposal_find(q, ids[i]) >= 0) {
            polopt__proposal_clear(q);
            return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_INVALID_ARG, "%s: item %u appears twice", fn, ids[i]);
        }
        while (q->table[slot] != 0) slot = (slot + 1) & q->table_mask;
        q->ids[i] = ids[i];
        q->table[slot] = (uint32_t)(i + 1);
        q->filter[polopt__filter_bit(ids[i]) / 64] |= (uint64_t)1 << (polopt__filter_bit(ids[i]) % 64);
        q->K = i + 1;
    }
    /* kappa = softmax of the scores over alpha_K (its logarithm exact in log space), its alias table for drawing,
       and log q of each member: one exponential and one logarithm per member */
    polopt__max_checked(K, scores, &mx, &bad);
    for (i = 0; i < K; ++i) z += (q->work[i] = polopt__expf(scores[i] - mx)); /* e^(s - max), in (0, 1] */
    log_z = log(z);
    q->log_norm = (float)(mx + log_z);
    q->epsilon = epsilon;
    q->log_q_other = epsilon > 0.0f ? (float)(log((double)epsilon) - log((double)q->P)) : -INFINITY;
    for (i = 0; i < K; ++i) {
        const double kappa = q->work[i] / z;
        q->log_kappa[i] = (float)((double)scores[i] - mx - log_z);
        q->log_q[i] = epsilon > 0.0f ? (float)log((double)epsilon / (double)q->P + (1.0 - epsilon) * kappa)
                                     : q->log_kappa[i];
        q->work[i] = kappa * (double)K;
    }
    polopt__alias_build(K, q->work, q->stack, q->prob, q->alias);
    return POLOPT_OK;
}

/* Draws with log q, and log kappa of each draw (-inf outside alpha_K) for the adaptive epsilon.
   Independent draws (stratified = 0): one uniform u decides the component (u < eps: uniform over the catalogue)
   and, on kappa's side, is uniform again once rescaled: v = (u - eps) / (1 - eps) K picks the alias column
   floor(v) and tosses its coin with the fraction (53 random bits: 45 left for the coin when K = 256).
   Stratified (the estimator): the components get their shares exactly, round(eps n) uniform draws, spread evenly
   (draw s is uniform when floor((s + 1) m / n) > floor(s m / n), m of them), so every prefix holds its share too.
   This is deterministic mixture sampling (Owen & Zhou 2000, "Safe and effective importance sampling", JASA 95):
   the weights pi / q with q the mixture density stay valid, the variance of the split is gone, and the
   component of a draw is a pattern the branch predictor learns.  The caller sets eps to a multiple of 1 / n, so
   the shares are exactly eps and 1 - eps.  O(1) a draw. */
static void polopt__proposal_draw(const polopt_proposal *q, polopt_rng *rng, size_t n, uint32_t *ids, float *log_q,
                                  float *log_kappa, int stratified)
{
    const double eps = q->epsilon, scale = eps < 1.0 ? (double)q->K / (1.0 - eps) : 0.0;
    const size_t m = stratified ? (size_t)floor(eps * (double)n + 0.5) : 0; /* stratified: the uniform draws */
    polopt_rng g = *rng; /* a local copy: its state stays in registers, whatever the stores below may alias */
    size_t s, acc = 0;      /* stratified: acc = s m mod n, so draw s is uniform when acc + m reaches n */
    for (s = 0; s < n; ++s) {
        const double u = polopt__rng_uniform(&g);
        long at;
        int uniform = u < eps;
        if (stratified) {
            acc += m;
            uniform = acc >= n;
            acc -= uniform ? n : 0;
        }
        if (uniform) { /* uniform over the catalogue: may land inside alpha_K */
            ids[s] = (uint32_t)polopt__rng_below(&g, q->P);
            at = polopt__proposal_find(q, ids[s]);
            if (log_q) log_q[s] = at >= 0 ? q->log_q[at] : q->log_q_other;
            if (log_kappa) log_kappa[s] = at >= 0 ? q->log_kappa[at] : -INFINITY;
        } else { /* from kappa */
            const double v = stratified ? u * (double)q->K : (u - eps) * scale; /* uniform in [0, K) */
            const size_t col = (size_t)v < q->K ? (size_t)v : q->K - 1; /* (rounding at u -> 1) */
            const long other = (long)q->alias[col]; /* both read first: a select, not a branch on the coin */
            at = v - (double)col < (double)q->prob[col] ? (long)col : other;
            ids[s] = q->ids[at];
            if (log_q) log_q[s] = q->log_q[at];
            if (log_kappa) log_kappa[s] = q->log_kappa[at];
        }
    }
    *rng = g;
}

POLOPT_DEF polopt_result polopt_proposal_sample(polopt_proposal *q, polopt_rng *rng, size_t n, uint32_t *out_ids,
                                                float *out_log_q)
{
    if (!q) return POLOPT_ERR_INVALID_ARG;
    if (!q->table) return polopt__not_ready(&q->err, &q->hooks, "polopt_proposal_sample", "proposal");
    if (!rng || (n && !out_ids))
        return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_INVALID_ARG, "polopt_proposal_sample: rng or out_ids is NULL");
    if (q->K == 0)
        return polopt__fail(&q->err, &q->hooks, POLOPT_ERR_INVALID_ARG,
                            "polopt_proposal_sample: no top-K set yet (call polopt_proposal_set)");
    polopt__proposal_draw(q, rng, n, out_ids, out_log_q, NULL, 0);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_proposal_log_prob(const polopt_proposal *q, size_t n, const uint32_t *ids,
                                                  float *out_log_q)
{
    size_t s;
    if (!q || q->K == 0 || (n && (!ids || !out_log_q))) return POLOPT_ERR_INVALID_ARG;
    for (s = 0; s < n; ++s) {
        long at;
        if (ids[s] >= q->P) return POLOPT_ERR_INVALID_ARG;
        at = polopt__proposal_find(q, ids[s]);
        out_log_q[s] = at >= 0 ? q->log_q[at] : q->log_q_other;
    }
    return POLOPT_OK;
}

/* >>estimator --------------------------------------------------------------------------------------------- */

#define POLOPT__BLOCK 256      /* items per block of REINFORCE's exact sampler */
#define POLOPT__EPS_GRID 8     /* candidate mixture weights of the adaptive epsilon */
#define POLOPT__EPS_PROBE 128  /* draws per context it looks at */
static const float polopt__eps_grid[POLOPT__EPS_GRID] = {0.05f, 0.1f, 0.2f, 0.35f, 0.5f, 0.65f, 0.8f, 1.0f};

POLOPT_DEF polopt_estimator_config polopt_estimator_config_default(void)
{
    polopt_estimator_config c;
    memset(&c, 0, sizeof c);
    c.method = POLOPT_METHOD_SNIS;
    c.epsilon = 0.8f;
    c.K = 256;
    c.S = 1000;
    c.search_budget = 16;
    c.batch = 32;
    c.temperature = 1.0f;
    c.seed = 1;
    return c;
}

/* Check a config against an index; on success *c has ef filled in. */
static polopt_result polopt__estimator_check(const polopt_mips *index, polopt_estimator_config *c, polopt_error *err,
                                             const char *fn, const char *cfg)
{
    const polopt_hooks *hk = &c->hooks;
    POLOPT__CHECK(err, hk, index && index->vectors, "%s: the index is not initialised", fn);
    POLOPT__CHECK(err, hk, c->method == POLOPT_METHOD_SNIS || c->method == POLOPT_METHOD_REINFORCE ||
                               c->method == POLOPT_METHOD_EXACT, "%s: %s.method = %d is unknown", fn, cfg, (int)c->method);
    POLOPT__CHECK(err, hk, c->epsilon >= 0.0f && c->epsilon <= 1.0f, "%s: %s.epsilon = %g is outside [0, 1]", fn, cfg,
                  (double)c->epsilon);
    POLOPT__CHECK(err, hk, c->S >= 2 && c->S <= (1u << 24), "%s: %s.S = %lu must be in [2, 2^24]", fn, cfg,
                  (unsigned long)c->S);
    POLOPT__CHECK(err, hk, c->batch >= 1 && c->batch <= 4096, "%s: %s.batch = %lu must be in [1, 4096]", fn, cfg,
                  (unsigned long)c->batch);
    POLOPT__CHECK(err, hk, c->temperature >= 1.0f / FLT_MAX && c->temperature <= FLT_MAX,
                  "%s: %s.temperature = %g must be in [1 / FLT_MAX, FLT_MAX]", fn, cfg, (double)c->temperature);
    POLOPT__CHECK(err, hk, index->n < POLOPT_NO_ITEM, "%s: the index has too many items", fn);
    if (c->method != POLOPT_METHOD_SNIS) return POLOPT_OK;
    POLOPT__CHECK(err, hk, c->K >= 1 && c->K <= index->n && c->K <= (1u << 16),
                  "%s: %s.K = %lu must be in [1, min(P, 65536)]", fn, cfg, (unsigned long)c->K);
    if (c->ef == 0) c->ef = c->K;
    POLOPT__CHECK(err, hk, c->ef >= c->K && c->ef <= (1u << 20), "%s: %s.ef = %lu must be in [K, 2^20]", fn, cfg,
                  (unsigned long)c->ef);
    return POLOPT_OK;
}

/* Every array of the estimator, carved from a (see polopt__arena); with a real base, also their first values. */
static void polopt__estimator_layout(polopt_estimator *e, const polopt_mips *ix, const polopt_estimator_config *c,
                                     polopt__arena *a)
{
    const size_t P = ix->n, L = ix->dim, B = c->batch, S = c->method == POLOPT_METHOD_EXACT ? P : c->S;
    int ok = 1;
    const size_t BS = polopt__mul_size(B, S, &ok), BP = polopt__mul_size(B, P, &ok);
    size_t i;
    if (!ok) a->overflow = 1;
    e->S = S;
    e->H = (float *)polopt__carve(a, B * L, sizeof(float));
    e->log_z = (double *)polopt__carve(a, B, sizeof(double));
    e->ess = (double *)polopt__carve(a, B, sizeof(double));
    e->ids = (uint32_t *)polopt__carve(a, c->method == POLOPT_METHOD_EXACT ? P : BS, sizeof(uint32_t));
    if (c->method != POLOPT_METHOD_SNIS) { /* every score of a batch: one pass over beta */
        e->scores = (float *)polopt__carve(a, BP, sizeof(float));
        if (e->scores) {
            polopt__advise_huge(e->scores, BP * sizeof(float));
            memset(e->scores, 0, BP * sizeof(float)); /* the first touch now, not in a timed step */
        }
    }
    if (c->method == POLOPT_METHOD_EXACT) {
        e->weights = e->scores;
        e->beta_bar = (float *)polopt__carve(a, B * L, sizeof(float));
        if (e->ids)
            for (i = 0; i < P; ++i) e->ids[i] = (uint32_t)i;
    } else {
        e->weights = (float *)polopt__carve(a, BS, sizeof(float));
    }
    if (c->method == POLOPT_METHOD_REINFORCE) {
        e->block_sums = (double *)polopt__carve(a, P / POLOPT__BLOCK + 1, sizeof(double));
        e->uniforms = (double *)polopt__carve(a, 2 * S, sizeof(double));
        e->buckets = (uint32_t *)polopt__carve(a, S + 1, sizeof(uint32_t));
    }
    if (c->method == POLOPT_METHOD_SNIS) {
        e->buckets = (uint32_t *)polopt__carve(a, S, sizeof(uint32_t));
        e->f = (float *)polopt__carve(a, BS, sizeof(float));
        e->log_q = (float *)polopt__carve(a, BS, sizeof(float));
        e->log_kappa = (float *)polopt__carve(a, BS, sizeof(float));
        e->topk = (uint32_t *)polopt__carve(a, c->K, sizeof(uint32_t));
        e->topk_scores = (float *)polopt__carve(a, c->K, sizeof(float));
        polopt__proposal_layout(&e->proposal, P, c->K, a);
        polopt__mips_scratch_layout(&e->mips, ix, c->ef, a);
        e->proposal.hooks = e->mips.hooks = c->hooks;
    }
}

/* Set up e over index in heap (or, heap NULL, in one allocation of its own). */
static polopt_result polopt__estimator_init_impl(polopt_estimator *e, const polopt_mips *index,
                                                 const polopt_estimator_config *config, void *heap, size_t heap_size,
                                                 const char *fn)
{
    polopt_estimator_config c;
    polopt__arena a = {NULL, 0, 0};
    polopt_result rc = POLOPT_OK;
    if (!e) return POLOPT_ERR_INVALID_ARG;
    memset(e, 0, sizeof *e);
    c = config ? *config : polopt_estimator_config_default();
    e->config = c;
    if ((rc = polopt__estimator_check(index, &c, &e->err, fn, "config")) != POLOPT_OK) return rc;
    if (c.method == POLOPT_METHOD_SNIS) {
        if ((rc = polopt__proposal_check(index->n, c.K, &e->err, &c.hooks, fn)) != POLOPT_OK) return rc;
        if ((rc = polopt__mips_scratch_check(index, c.ef, &e->err, &c.hooks, fn)) != POLOPT_OK) return rc;
    }
    polopt__estimator_layout(e, index, &c, &a);
    if (heap) {
        if (a.overflow || heap_size < a.used || heap_size - a.used < POLOPT__ALIGN)
            return polopt__fail(&e->err, &c.hooks, POLOPT_ERR_INVALID_ARG,
                                "%s: heap_size = %lu is below the %lu bytes polopt_estimator_heap_size asks for", fn,
                                (unsigned long)heap_size, (unsigned long)(a.used + POLOPT__ALIGN));
    } else if (!(e->block = heap = polopt__arena_alloc(&c.hooks, &a, &rc))) {
        return polopt__fail(&e->err, &c.hooks, rc, "%s: cannot allocate the estimator (P = %lu, batch = %lu, S = %lu)",
                            fn, (unsigned long)index->n, (unsigned long)c.batch, (unsigned long)c.S);
    }
    polopt__arena_begin(&a, heap);
    polopt__estimator_layout(e, index, &c, &a);
    e->config = c;
    e->index = index;
    e->epsilon = c.method == POLOPT_METHOD_SNIS ? c.epsilon : 1.0f;
    polopt__rng_seed(&e->rng, c.seed);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_estimator_heap_size(const polopt_mips *index, const polopt_estimator_config *config,
                                                    size_t *out_bytes)
{
    static const char *fn = "polopt_estimator_heap_size";
    polopt_estimator e;
    polopt_estimator_config c;
    polopt__arena a = {NULL, 0, 0};
    polopt_result rc;
    if (!out_bytes) return POLOPT_ERR_INVALID_ARG;
    memset(&e, 0, sizeof e);
    c = config ? *config : polopt_estimator_config_default();
    if ((rc = polopt__estimator_check(index, &c, NULL, fn, "config")) != POLOPT_OK) return rc;
    polopt__estimator_layout(&e, index, &c, &a);
    if (a.overflow || a.used > (size_t)-1 - POLOPT__ALIGN)
        return polopt__fail(NULL, &c.hooks, POLOPT_ERR_OVERFLOW, "%s: the estimator would not fit in memory", fn);
    *out_bytes = a.used + POLOPT__ALIGN;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_estimator_init(polopt_estimator *est, const polopt_mips *index,
                                               const polopt_estimator_config *config)
{
    const polopt_result rc = polopt__estimator_init_impl(est, index, config, NULL, 0, "polopt_estimator_init");
    if (rc != POLOPT_OK && est) POLOPT__ZERO_KEEPING_ERROR(est, polopt_estimator_free);
    return rc;
}

POLOPT_DEF polopt_result polopt_estimator_init_preallocated(polopt_estimator *est, const polopt_mips *index,
                                                            const polopt_estimator_config *config, void *heap,
                                                            size_t heap_size)
{
    static const char *fn = "polopt_estimator_init_preallocated";
    polopt_result rc;
    if (est && !heap) {
        memset(est, 0, sizeof *est);
        return polopt__fail(&est->err, config ? &config->hooks : NULL, POLOPT_ERR_INVALID_ARG, "%s: heap is NULL", fn);
    }
    rc = polopt__estimator_init_impl(est, index, config, heap, heap_size, fn);
    if (rc != POLOPT_OK && est) POLOPT__ZERO_KEEPING_ERROR(est, polopt_estimator_free);
    return rc;
}

POLOPT_DEF void polopt_estimator_free(polopt_estimator *est)
{
    if (!est) return;
    polopt__dealloc(&est->config.hooks, est->block); /* NULL when the memory was the caller's */
    memset(est, 0, sizeof *est);
}

/* Self-normalised weights from log-weights lw_s = f_s - log q_s, computed in log space (the largest is 1 before
   normalising): w (S), log Z_hat = log (1/S) sum_s exp lw_s, and the effective sample size. */
static void polopt__self_normalise(size_t S, const float *f, const float *log_q, float *w, double *log_z, double *ess)
{
    float mx = -INFINITY, inv;
    double W, W2 = 0.0;
    size_t s;
    for (s = 0; s < S; ++s) w[s] = f[s] - log_q[s]; /* the log weights (one rounding) */
    if (!polopt__kern_auto()->max(S, w, &mx)) /* their maximum, vectorised; a score that overflowed: NaN ignored */
        for (mx = -INFINITY, s = 0; s < S; ++s) mx = w[s] > mx ? w[s] : mx;
    W = polopt__sum_exp(S, w, mx, 1.0f, w); /* exp(lw - max) in (0, 1], vectorised, accurate to 2e-7 there */
    { /* sum w^2 in eight partial sums: one chain of S additions waits S times on the adder */
        double part[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        int k;
        for (s = 0; s + 8 <= S; s += 8)
            for (k = 0; k < 8; ++k) part[k] += (double)w[s + k] * w[s + k];
        for (; s < S; ++s) part[0] += (double)w[s] * w[s];
        for (k = 0; k < 8; ++k) W2 += part[k];
    }
    inv = (float)(1.0 / W);
    for (s = 0; s < S; ++s) w[s] *= inv;
    *log_z = (double)mx + log(W / (double)S);
    *ess = W * W / W2;
}

/* alpha_K of h into e->topk (scores h^T beta), from warm when it holds an earlier alpha_K. */
static polopt_result polopt__estimator_topk(polopt_estimator *e, const float *h, uint32_t *warm)
{
    const size_t K = e->config.K;
    polopt_result rc;
    if (warm && warm[0] != POLOPT_NO_ITEM) /* alpha_K as a set: the proposal needs no order */
        rc = polopt__mips_search_from(e->index, &e->mips, h, K, e->config.ef, warm, K, e->config.search_budget,
                                      e->topk, e->topk_scores, 0);
    else
        rc = polopt__mips_search_from(e->index, &e->mips, h, K, e->config.ef, NULL, 0, 0, e->topk, e->topk_scores, 0);
    if (rc != POLOPT_OK) return polopt__fail(&e->err, &e->config.hooks, rc, "MIPS search failed: %s", e->mips.err.message);
    if (warm) memcpy(warm, e->topk, K * sizeof *warm);
    return POLOPT_OK;
}

/* eps rounded to a multiple of 1 / S: the share of uniform draws that S stratified draws can hold exactly. */
static float polopt__stratified_epsilon(float eps, size_t S)
{
    return (float)(floor((double)eps * (double)S + 0.5) / (double)S);
}

/* SNIS at eps = 1 draws from the uniform proposal alone, with no MIPS at all (the fastest); the adaptive eps, which
   weighs other mixtures against this one, always needs alpha_K. */
static int polopt__snis_uniform_only(const polopt_estimator *e)
{
    return e->epsilon >= 1.0f && !e->config.adaptive_epsilon;
}

/* Sakhi et al. 2023, Algorithm 1, steps 1-3 for context c: the MIPS top-K of h, the eps-mixture around it, and S
   draws with their log q (and log kappa, -inf outside alpha_K).  Nothing here depends on rewards or scores outside
   alpha_K, so a caller can look at the draws' rewards before paying for step 4 (polopt__snis_weigh). */
static polopt_result polopt__snis_draw(polopt_estimator *e, size_t c, uint32_t *warm)
{
    const size_t S = e->S, P = e->index->n, L = e->index->dim;
    const float inv_t = 1.0f / e->config.temperature, *h = e->H + c * L;
    uint32_t *ids = e->ids + c * S;
    float *log_q = e->log_q + c * S, *log_kappa = e->log_kappa + c * S;
    size_t K = e->config.K, s;
    polopt_result rc;
    if (polopt__snis_uniform_only(e)) {
        const float lq = -(float)log((double)P);
        polopt__rng_below_fill(&e->rng, (uint32_t)P, S, ids);
        for (s = 0; s < S; ++s) {
            log_q[s] = lq;
            log_kappa[s] = -INFINITY;
        }
    } else {
        if ((rc = polopt__estimator_topk(e, h, warm)) != POLOPT_OK) return rc;
        while (K > 1 && e->topk[K - 1] == POLOPT_NO_ITEM) --K; /* a graph that reached fewer than K items */
        for (s = 0; s < K; ++s) e->topk_scores[s] *= inv_t;
        rc = polopt_proposal_set(&e->proposal, polopt__stratified_epsilon(e->epsilon, S), K, e->topk, e->topk_scores);
        if (rc != POLOPT_OK) return polopt__fail(&e->err, &e->config.hooks, rc, "%s", e->proposal.err.message);
        polopt__proposal_draw(&e->proposal, &e->rng, S, ids, log_q, log_kappa, 1);
    }
    return POLOPT_OK;
}

/* Step 4 for context c, after polopt__snis_draw: the draws' scores f and their self-normalised weights (and, with
   eps_score, the adaptive eps's evidence).  A draw inside alpha_K already has its score (log kappa + the log of
   kappa's normaliser); the others need h^T beta_a from a row anywhere in beta.  O(S L). */
static void polopt__snis_weigh(polopt_estimator *e, size_t c, double *eps_score)
{
    const size_t S = e->S, P = e->index->n, L = e->index->dim;
    const float inv_t = 1.0f / e->config.temperature, *beta = e->index->vectors, *h = e->H + c * L;
    const uint32_t *ids = e->ids + c * S;
    float *f = e->f + c * S, *log_q = e->log_q + c * S, *log_kappa = e->log_kappa + c * S;
    const polopt_proposal *q = polopt__snis_uniform_only(e) ? NULL : &e->proposal;
    size_t s;
    { /* f(a_s) = h^T beta_a / T: the draws outside alpha_K gathered, their rows from all over beta in one pass
         (the weights of c, written below, hold the dot products until then) */
        float *dots = e->weights + c * S;
        size_t m = 0;
        if (!q) {
            polopt__kern_auto()->gemv_rows(S, L, beta, L, ids, h, dots);
            for (s = 0; s < S; ++s) f[s] = inv_t * dots[s];
        } else {
            for (s = 0; s < S; ++s) { /* without branches: a fifth of the draws are outside, at random */
                e->buckets[m] = ids[s];
                m += !(log_kappa[s] > -INFINITY);
            }
            polopt__kern_auto()->gemv_rows(m, L, beta, L, e->buckets, h, dots);
            for (s = 0, m = 0; s < S; ++s) { /* m <= s: dots[m] is in range even when unused */
                const int outside = !(log_kappa[s] > -INFINITY);
                const float d = inv_t * dots[m];
                f[s] = outside ? d : log_kappa[s] + q->log_norm;
                m += outside;
            }
        }
    }
    polopt__self_normalise(S, f, log_q, e->weights + c * S, e->log_z + c, e->ess + c);
    if (eps_score) {
        /* Adaptive epsilon.  The effective sample size fraction of the weights under another mixture eps' can be
           estimated from these draws (importance sampling again): with u = pi / q and q' the other proposal,
               ESS'/n = (E_q[pi/q])^2 / E_q[pi^2 / (q q')]
           so for each eps' of a grid: rho(eps') = (sum_s u_s)^2 / (n sum_s u_s^2 q_s / q'_s).  The caller moves
           eps towards the eps' of highest mean rho. */
        const size_t n = S < POLOPT__EPS_PROBE ? S : POLOPT__EPS_PROBE;
        double mx = -INFINITY, A = 0.0, B[POLOPT__EPS_GRID];
        int k;
        for (s = 0; s < n; ++s) mx = (double)f[s] - log_q[s] > mx ? (double)f[s] - log_q[s] : mx;
        for (k = 0; k < POLOPT__EPS_GRID; ++k) B[k] = 0.0;
        for (s = 0; s < n; ++s) {
            const double u = exp((double)f[s] - log_q[s] - mx), qs = exp((double)log_q[s]);
            const double kappa = exp((double)log_kappa[s]); /* 0 outside alpha_K */
            A += u;
            for (k = 0; k < POLOPT__EPS_GRID; ++k) {
                const double ep = polopt__eps_grid[k], q2 = ep / (double)P + (1.0 - ep) * kappa;
                B[k] += q2 > 0.0 ? u * u * qs / q2 : INFINITY;
            }
        }
        for (k = 0; k < POLOPT__EPS_GRID; ++k) eps_score[k] += A * A / ((double)n * B[k]);
    }
}

/* exp((row - max) / T) in place, in blocks of POLOPT__BLOCK items with their cumulative sums; returns log Z
   (row holds h^T beta for all P items), or NaN when a score overflowed.  O(P), vectorised. */
static double polopt__exp_blocks(float *row, size_t P, float inv_t, double *block_cum, double *out_sum)
{
    float mx;
    size_t b, nb = (P + POLOPT__BLOCK - 1) / POLOPT__BLOCK, bad = 0;
    double cum = 0.0;
    /* scores that overflowed (h^T beta beyond FLT_MAX: NaN or +-inf) have no softmax */
    if (polopt__max_checked(P, row, &mx, &bad) != POLOPT_OK || !(mx >= -FLT_MAX)) return NAN;
    for (b = 0; b < nb; ++b) {
        const size_t first = b * POLOPT__BLOCK, len = P - first < POLOPT__BLOCK ? P - first : POLOPT__BLOCK;
        cum += polopt__sum_exp(len, row + first, mx, inv_t, row + first); /* the exponentials replace the scores */
        if (block_cum) block_cum[b] = cum;
    }
    *out_sum = cum; /* >= 1: the maximum contributes e^0 */
    return (double)mx * inv_t + log(cum);
}

/* S uniforms in [0, Z), sorted, into u: a bucket sort into S buckets of equal width, each bucket put in order by
   insertion (expected O(1) entries a bucket).  O(S).  count: S + 1; tmp: S. */
static void polopt__sorted_uniforms(polopt_rng *rng, size_t S, double Z, double *u, uint32_t *count, double *tmp)
{
    size_t s, b, sum = 0, start;
    memset(count, 0, (S + 1) * sizeof(uint32_t));
    for (s = 0; s < S; ++s) {
        tmp[s] = polopt__rng_uniform(rng);
        count[(size_t)(tmp[s] * (double)S)] += 1; /* tmp < 1: the bucket is below S */
    }
    for (b = 0; b <= S; ++b) { /* count[b]: where bucket b starts */
        const size_t c = count[b];
        count[b] = (uint32_t)sum;
        sum += c;
    }
    for (s = 0; s < S; ++s) u[count[(size_t)(tmp[s] * (double)S)]++] = tmp[s]; /* count[b]: now where b ends */
    for (b = 0, start = 0; b < S; start = count[b++]) {
        for (s = start + 1; s < count[b]; ++s) {
            const double v = u[s];
            size_t k = s;
            while (k > start && u[k - 1] > v) u[k] = u[k - 1], --k;
            u[k] = v;
        }
    }
    for (s = 0; s < S; ++s) u[s] *= Z;
}

/* cum_i = base + x_0 + ... + x_i for i < n <= POLOPT__BLOCK, in double: eight chunks summed side by side, then each
   chunk's running sum from its offset, eight chains at once (one chain of n additions waits n times on the
   adder's latency). */
static void polopt__block_cumsum(const float *x, size_t n, double base, double *cum)
{
    const size_t w = (n + 7) / 8; /* chunk k: [k w, min((k + 1) w, n)) */
    double run[8];
    size_t i, k;
    for (k = 0; k < 8; ++k) run[k] = 0.0;
    for (i = 0; i < w; ++i)
        for (k = 0; k < 8; ++k)
            if (k * w + i < n) run[k] += x[k * w + i];
    for (k = 0; k < 8; ++k) { /* the offsets: what comes before each chunk */
        const double t = run[k];
        run[k] = base;
        base += t;
    }
    for (i = 0; i < w; ++i)
        for (k = 0; k < 8; ++k)
            if (k * w + i < n) cum[k * w + i] = run[k] += x[k * w + i];
}

/* REINFORCE (Williams 1992; the baseline of Sakhi et al. 2023, §5): S exact draws from pi by inverting the
   cumulative distribution at S sorted uniforms, block by block: the block sums skip the blocks that no uniform
   falls in; a block that holds some gets its cumulative sums once, and each of its uniforms a binary search in
   them (O(P / 256 + S log 256 + 256 a block hit); a search of the whole row per draw cost O(S (log P + 256)), and a
   scan that added as it went waited on every addition).  The draws are then shuffled (Fisher-Yates), so that they
   come in the order of S independent draws, as a caller that takes the first one expects. */
static void polopt__estimator_reinforce(polopt_estimator *e, size_t c, const float *expo, double Z)
{
    const size_t P = e->index->n, S = e->S, nb = (P + POLOPT__BLOCK - 1) / POLOPT__BLOCK;
    uint32_t *ids = e->ids + c * S;
    float *w = e->weights + c * S;
    double *u = e->uniforms, cum[POLOPT__BLOCK];
    size_t s = 0, b = 0, end;
    polopt__sorted_uniforms(&e->rng, S, Z, u, e->buckets, u + S);
    while (s < S) {
        size_t first, len;
        while (b < nb - 1 && e->block_sums[b] <= u[s]) ++b; /* the block that holds u_s (the last takes the rest) */
        first = b * POLOPT__BLOCK, len = P - first < POLOPT__BLOCK ? P - first : POLOPT__BLOCK;
        polopt__block_cumsum(expo + first, len, b ? e->block_sums[b - 1] : 0.0, cum);
        end = s; /* the uniforms of this block: [s, end) */
        while (end < S && (b == nb - 1 || u[end] < e->block_sums[b])) ++end;
        for (; s < end; s += 4) { /* the uniforms of the block four at a time: their searches have the same steps,
                                     so four chains of dependent loads run side by side instead of one */
            const double u0 = u[s], u1 = u[s + 1 < end ? s + 1 : s], u2 = u[s + 2 < end ? s + 2 : s];
            const double u3 = u[s + 3 < end ? s + 3 : s];
            size_t lo0 = 0, lo1 = 0, lo2 = 0, lo3 = 0, n = len; /* the first cumulative sum above u (the last
                                                                   item if rounding says none) */
            while (n > 1) {
                const size_t half = n / 2;
                lo0 = cum[lo0 + half - 1] <= u0 ? lo0 + half : lo0;
                lo1 = cum[lo1 + half - 1] <= u1 ? lo1 + half : lo1;
                lo2 = cum[lo2 + half - 1] <= u2 ? lo2 + half : lo2;
                lo3 = cum[lo3 + half - 1] <= u3 ? lo3 + half : lo3;
                n -= half;
            }
            ids[s] = (uint32_t)(first + lo0);
            if (s + 1 < end) ids[s + 1] = (uint32_t)(first + lo1);
            if (s + 2 < end) ids[s + 2] = (uint32_t)(first + lo2);
            if (s + 3 < end) ids[s + 3] = (uint32_t)(first + lo3);
        }
        s = end;
        ++b;
    }
    for (s = S; s > 1; --s) { /* Fisher-Yates */
        const size_t r = (size_t)polopt__rng_below(&e->rng, s);
        const uint32_t t = ids[s - 1];
        ids[s - 1] = ids[r], ids[r] = t;
    }
    for (s = 0; s < S; ++s) w[s] = 1.0f / (float)S;
    e->ess[c] = (double)S;
}

/* polopt_estimator_set's checks, and the n embeddings H kept; until the draws are made, est->n = 0: nothing to
   query. */
static polopt_result polopt__estimator_take(polopt_estimator *est, size_t n, const float *H)
{
    static const char *fn = "polopt_estimator_set";
    const polopt_hooks *hk;
    size_t L, bad = 0;
    if (!est) return POLOPT_ERR_INVALID_ARG;
    hk = &est->config.hooks;
    if (!est->H) return polopt__not_ready(&est->err, hk, fn, "estimator");
    L = est->index->dim;
    est->n = 0;
    POLOPT__CHECK(&est->err, hk, n >= 1 && n <= est->config.batch && H, "%s: n = %lu must be in [1, batch = %lu], H set",
                  fn, (unsigned long)n, (unsigned long)est->config.batch);
    if (polopt_check_finite(n * L, H, &bad) != POLOPT_OK)
        return polopt__fail(&est->err, hk, POLOPT_ERR_NONFINITE, "%s: H[%lu][%lu] is not finite", fn,
                            (unsigned long)(bad / L), (unsigned long)(bad % L));
    memcpy(est->H, H, n * L * sizeof *H);
    return POLOPT_OK;
}

/* The trainer's set of one SNIS context h whose draws are not weighed yet (polopt__snis_weigh weighs them, when
   some reward makes that worth it); not with the adaptive eps, whose evidence comes from the weights. */
static polopt_result polopt__estimator_set_unweighed(polopt_estimator *est, const float *h, uint32_t *warm)
{
    polopt_result rc = polopt__estimator_take(est, 1, h);
    if (rc == POLOPT_OK && (rc = polopt__snis_draw(est, 0, warm)) == POLOPT_OK) {
        est->n = 1;
        polopt__clear_error(&est->err);
    }
    return rc;
}

POLOPT_DEF polopt_result polopt_estimator_set(polopt_estimator *est, size_t n, const float *H, uint32_t *const *warm)
{
    static const char *fn = "polopt_estimator_set";
    const polopt_hooks *hk;
    size_t P, L, c;
    polopt_result rc;
    if ((rc = polopt__estimator_take(est, n, H)) != POLOPT_OK) return rc;
    hk = &est->config.hooks;
    P = est->index->n, L = est->index->dim;
    if (est->config.method == POLOPT_METHOD_SNIS) {
        const int adapt = est->config.adaptive_epsilon;
        for (c = 0; c < n; ++c) {
            if ((rc = polopt__snis_draw(est, c, warm ? warm[c] : NULL)) != POLOPT_OK) return rc;
            polopt__snis_weigh(est, c, adapt ? est->eps_score : NULL);
            if (adapt && ++est->eps_seen == est->config.batch) { /* move eps a quarter of the way to the best of the
                                                                     grid: smooths the noisy estimates */
                int k, best = 0;
                for (k = 1; k < POLOPT__EPS_GRID; ++k)
                    if (est->eps_score[k] > est->eps_score[best]) best = k;
                est->epsilon += 0.25f * (polopt__eps_grid[best] - est->epsilon);
                for (k = 0; k < POLOPT__EPS_GRID; ++k) est->eps_score[k] = 0.0;
                est->eps_seen = 0;
            }
        }
    } else { /* every score of the batch at once: one pass over beta */
        const float inv_t = 1.0f / est->config.temperature;
        polopt__gemm(POLOPT_NO_TRANS, POLOPT_TRANS, n, P, L, 1.0f, H, L, est->index->vectors, L, 0.0f, est->scores, P);
        for (c = 0; c < n; ++c) {
            float *row = est->scores + c * P;
            double Z = 0.0;
            est->log_z[c] = polopt__exp_blocks(row, P, inv_t, est->block_sums, &Z);
            if (!(est->log_z[c] == est->log_z[c]))
                return polopt__fail(&est->err, hk, POLOPT_ERR_NONFINITE,
                                    "%s: the scores h^T beta / T of context %lu are not finite (they overflow float)",
                                    fn, (unsigned long)c);
            if (est->config.method == POLOPT_METHOD_REINFORCE) {
                polopt__estimator_reinforce(est, c, row, Z);
            } else {
                const float inv_z = (float)(1.0 / Z);
                size_t a;
                double w2 = 0.0;
                for (a = 0; a < P; ++a) {
                    row[a] *= inv_z; /* pi */
                    w2 += (double)row[a] * row[a];
                }
                est->ess[c] = 1.0 / w2;
            }
        }
        if (est->config.method == POLOPT_METHOD_EXACT) /* E_pi[beta] of every context: pi^T beta in one pass */
            polopt__gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, n, L, P, 1.0f, est->scores, P, est->index->vectors, L, 0.0f,
                         est->beta_bar, L);
    }
    est->n = n;
    polopt__clear_error(&est->err);
    return POLOPT_OK;
}

/* Checks shared by the queries of one context. */
static polopt_result polopt__estimator_query(const polopt_estimator *est, size_t c, const char *fn)
{
    if (!est->H) return polopt__not_ready(NULL, &est->config.hooks, fn, "estimator");
    if (c >= est->n)
        return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: context %lu is not below the %lu of the last polopt_estimator_set", fn,
                            (unsigned long)c, (unsigned long)est->n);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_estimator_draws(const polopt_estimator *est, size_t c, polopt_draws *out)
{
    polopt_result rc;
    if (!est || !out) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, "polopt_estimator_draws")) != POLOPT_OK) return rc;
    out->S = est->S;
    out->ids = est->config.method == POLOPT_METHOD_EXACT ? est->ids : est->ids + c * est->S;
    out->weights = est->weights + c * est->S;
    out->log_z = est->log_z[c];
    out->ess = est->ess[c];
    out->epsilon = est->config.method == POLOPT_METHOD_SNIS ? est->epsilon : 1.0f;
    return POLOPT_OK;
}

/* E_pi[beta] of context c into out (L): with EXACT the product set computed, otherwise sum_s w_bar_s beta_{a_s} over
   the draws, their rows fetched ahead. */
static void polopt__mean_beta(const polopt_estimator *est, size_t c, float *out)
{
    const size_t S = est->S, L = est->index->dim;
    const float *beta = est->index->vectors, *w = est->weights + c * S;
    const uint32_t *ids = est->ids + c * S;
    if (est->config.method == POLOPT_METHOD_EXACT) {
        memcpy(out, est->beta_bar + c * L, L * sizeof *out);
        return;
    }
    memset(out, 0, L * sizeof *out);
    polopt__kern_auto()->gemv_rows_t(S, L, beta, L, ids, w, out);
}

POLOPT_DEF polopt_result polopt_estimator_mean_embedding(const polopt_estimator *est, size_t c, float *out_beta_bar)
{
    polopt_result rc;
    if (!est || !out_beta_bar) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, "polopt_estimator_mean_embedding")) != POLOPT_OK) return rc;
    polopt__mean_beta(est, c, out_beta_bar);
    return POLOPT_OK;
}

/* log pi(a | x) of context c: f(a) - log Z_hat, at most 0 (the ratio estimate can pass 1). */
static double polopt__log_pi(const polopt_estimator *est, size_t c, uint32_t a)
{
    const size_t L = est->index->dim;
    const double lp = (double)polopt__dot(L, est->H + c * L, est->index->vectors + (size_t)a * L) /
                          est->config.temperature - est->log_z[c];
    return lp < 0.0 ? lp : 0.0;
}

POLOPT_DEF polopt_result polopt_estimator_log_prob(const polopt_estimator *est, size_t c, size_t m,
                                                   const uint32_t *actions, float *out_log_pi, float *out_grad)
{
    static const char *fn = "polopt_estimator_log_prob";
    size_t i, L, P;
    float inv_t;
    polopt_result rc;
    if (!est) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, fn)) != POLOPT_OK) return rc;
    L = est->index->dim, P = est->index->n, inv_t = 1.0f / est->config.temperature;
    if (m && !actions) return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: actions is NULL", fn);
    for (i = 0; i < m; ++i)
        if (actions[i] >= P)
            return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: actions[%lu] = %u is not below P = %lu",
                                fn, (unsigned long)i, actions[i], (unsigned long)P);
    if (out_log_pi)
        for (i = 0; i < m; ++i) out_log_pi[i] = (float)polopt__log_pi(est, c, actions[i]);
    if (out_grad && m) {
        float *g0 = out_grad;
        polopt__mean_beta(est, c, g0); /* E_pi beta, then (beta_a - E beta) / T */
        for (i = m; i-- > 0;) {
            float *g = out_grad + i * L;
            size_t j;
            for (j = 0; j < L; ++j) g[j] = (est->index->vectors[(size_t)actions[i] * L + j] - g0[j]) * inv_t;
        }
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_estimator_gradient(const polopt_estimator *est, size_t c, const float *rewards,
                                                   float *out_g, double *out_value)
{
    static const char *fn = "polopt_estimator_gradient";
    const float *w, *beta;
    size_t S, L, s, bad = 0, nonzero = 0;
    double r_bar = 0.0, scale;
    polopt_result rc;
    if (!est) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, fn)) != POLOPT_OK) return rc;
    if (!rewards || !out_g) return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: rewards or out_g is NULL", fn);
    S = est->S, L = est->index->dim, w = est->weights + c * S, beta = est->index->vectors;
    { /* r_bar = sum_s w_s r_s in eight partial sums (one chain waits on every addition), the rewards checked finite
         and the nonzero ones counted on the way: eight lanes of each, which the compiler keeps in vector registers
         (indexing the lanes by s % 8 kept them in memory: 12 cycles a draw, measured) */
        double part[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        int finite = 1, fin[8] = {1, 1, 1, 1, 1, 1, 1, 1}, nz[8] = {0, 0, 0, 0, 0, 0, 0, 0}, k;
        for (s = 0; s + 8 <= S; s += 8)
            for (k = 0; k < 8; ++k) {
                const float r = rewards[s + k];
                fin[k] &= r >= -FLT_MAX && r <= FLT_MAX;
                nz[k] += r != 0.0f;
                part[k] += (double)w[s + k] * r;
            }
        for (; s < S; ++s) {
            fin[0] &= rewards[s] >= -FLT_MAX && rewards[s] <= FLT_MAX;
            nz[0] += rewards[s] != 0.0f;
            part[0] += (double)w[s] * rewards[s];
        }
        for (k = 0; k < 8; ++k) finite &= fin[k], nonzero += (size_t)nz[k];
        if (!finite) {
            polopt_check_finite(S, rewards, &bad);
            return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_NONFINITE, "%s: rewards[%lu] is not finite", fn,
                                (unsigned long)bad);
        }
        for (k = 0; k < 8; ++k) r_bar += part[k];
    }
    if (nonzero == 0) { /* every reward 0 (most contexts of a sparse reward): the gradient is 0 */
        memset(out_g, 0, L * sizeof *out_g);
        if (out_value) *out_value = 0.0;
        return POLOPT_OK;
    }
    scale = 1.0 / est->config.temperature;
    if (est->config.method == POLOPT_METHOD_REINFORCE) scale *= (double)S / (double)(S - 1); /* unbiased covariance */
    if (est->config.method == POLOPT_METHOD_EXACT) { /* beta^T (pi * (r - r_bar)), a chunk of items at a time */
        float v[1024];
        memset(out_g, 0, L * sizeof *out_g);
        for (s = 0; s < S; s += 1024) {
            const size_t m = S - s < 1024 ? S - s : 1024;
            size_t i;
            for (i = 0; i < m; ++i) v[i] = (float)(w[s + i] * ((double)rewards[s + i] - r_bar));
            polopt__gemv(POLOPT_TRANS, m, L, (float)scale, beta + s * L, L, v, 1.0f, out_g);
        }
    } else { /* sum_s v_s beta_{a_s}, v_s = w_s (r_s - r_bar) / T: the rows gathered, g kept in registers */
        const uint32_t *ids = est->ids + c * S;
        float v[256];
        memset(out_g, 0, L * sizeof *out_g);
        for (s = 0; s < S; s += 256) {
            const size_t m = S - s < 256 ? S - s : 256;
            size_t i;
            for (i = 0; i < m; ++i) v[i] = (float)(scale * (w[s + i] * ((double)rewards[s + i] - r_bar)));
            polopt__kern_auto()->gemv_rows_t(m, L, beta, L, ids + s, v, out_g);
        }
    }
    if (polopt_check_finite(L, out_g, &bad) != POLOPT_OK || !(fabs(r_bar) <= DBL_MAX))
        return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_NONFINITE, "%s: the gradient of context %lu is not finite",
                            fn, (unsigned long)c);
    if (out_value) *out_value = r_bar;
    return POLOPT_OK;
}

/* a into the n sorted ids (room for n + 1): insertion, since a slate is small. */
static void polopt__insert_sorted(uint32_t *sorted, size_t n, uint32_t a)
{
    while (n > 0 && sorted[n - 1] > a) {
        sorted[n] = sorted[n - 1];
        --n;
    }
    sorted[n] = a;
}

/* Checks shared by the slate queries: K in 1..POLOPT_SLATE_MAX (and <= P), every item below P, no repeats.  sorted
   receives the slate's items in increasing order (for the membership tests of the draws). */
static polopt_result polopt__slate_check(const polopt_estimator *est, size_t K, const uint32_t *slate, uint32_t *sorted,
                                         const char *fn)
{
    const polopt_hooks *hk = &est->config.hooks;
    const size_t P = est->index->n;
    size_t i;
    POLOPT__CHECK(NULL, hk, K >= 1 && K <= POLOPT_SLATE_MAX && K <= P,
                  "%s: K = %lu must be in 1 .. %d and at most P = %lu", fn, (unsigned long)K, POLOPT_SLATE_MAX,
                  (unsigned long)P);
    if (!slate) return POLOPT_OK;
    for (i = 0; i < K; ++i) {
        POLOPT__CHECK(NULL, hk, slate[i] < P, "%s: slate[%lu] = %u is not below P = %lu", fn, (unsigned long)i, slate[i],
                      (unsigned long)P);
        polopt__insert_sorted(sorted, i, slate[i]);
    }
    for (i = 1; i < K; ++i)
        POLOPT__CHECK(NULL, hk, sorted[i] != sorted[i - 1], "%s: item %u appears twice in the slate", fn, sorted[i]);
    return POLOPT_OK;
}

/* Whether a is among the n sorted ids. */
static int polopt__in_sorted(const uint32_t *sorted, size_t n, uint32_t a)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < a) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && sorted[lo] == a;
}

/* The logs of a slate's K steps, relative to Z_hat, so that no term under- or overflows however peaked pi is:
   le_k = f(a_k) - log Z_hat, *rest = the draws' weight outside the slate and *lr its log, lz_k = log Z_k =
   log(rest + sum_{j>=k} exp le_j). */
static void polopt__slate_logs(const polopt_estimator *est, size_t c, const polopt_draws *d, size_t K,
                               const uint32_t *slate, const uint32_t *sorted, double *le, double *lz, double *rest,
                               double *lr)
{
    const size_t L = est->index->dim;
    const float inv_t = 1.0f / est->config.temperature;
    size_t k, s;
    double r = 0.0;
    for (k = 0; k < K; ++k)
        le[k] = (double)polopt__dot(L, est->H + c * L, est->index->vectors + (size_t)slate[k] * L) * inv_t - d->log_z;
    for (s = 0; s < d->S; ++s)
        if (!polopt__in_sorted(sorted, K, d->ids[s])) r += d->weights[s];
    *rest = r, *lr = r > 0.0 ? log(r) : -HUGE_VAL;
    for (k = K; k-- > 0;) {
        const double prev = k + 1 < K ? lz[k + 1] : *lr, m = prev > le[k] ? prev : le[k];
        lz[k] = m + log(exp(prev - m) + exp(le[k] - m));
    }
}

/* acc += scale sum_{s: a_s not in the slate} w_bar_s beta_{a_s} / rest (rest > 0: the draws' weight outside it). */
static void polopt__draws_outside_add(const polopt_estimator *est, const polopt_draws *d, size_t K,
                                      const uint32_t *sorted, double rest, double scale, float *acc)
{
    const size_t L = est->index->dim;
    size_t s, i;
    float v[256];
    for (s = 0; s < d->S; s += 256) {
        const size_t m = d->S - s < 256 ? d->S - s : 256;
        for (i = 0; i < m; ++i)
            v[i] = polopt__in_sorted(sorted, K, d->ids[s + i]) ? 0.0f : (float)(scale * (d->weights[s + i] / rest));
        polopt__kern_auto()->gemv_rows_t(m, L, est->index->vectors, L, d->ids + s, v, acc);
    }
}

/* acc += coef grad_h log pi(slate), the whole slate's score, without scratch: with c_k = exp(lr - lz_k) and
   d_{k,i} = exp(le_i - lz_k), sum_k (beta_{a_k} - E_{pi_k}[beta]) = sum_i beta_{a_i} (1 - sum_{k<=i} d_{k,i}) -
   (sum_k c_k) m_rest, and m_rest is a weighted sum of the draws outside the slate. */
static void polopt__slate_score_add(const polopt_estimator *est, const polopt_draws *d, size_t K, const uint32_t *slate,
                                    const uint32_t *sorted, const double *le, const double *lz, double rest, double lr,
                                    double coef, float *acc)
{
    const size_t L = est->index->dim;
    const double scale = coef / est->config.temperature;
    double C = 0.0;
    size_t i, k;
    for (k = 0; rest > 0.0 && k < K; ++k) C += exp(lr - lz[k]);
    if (C > 0.0) polopt__draws_outside_add(est, d, K, sorted, rest, -scale * C, acc);
    for (i = 0; i < K; ++i) {
        double left = 1.0;
        for (k = 0; k <= i; ++k) left -= exp(le[i] - lz[k]);
        polopt__axpy(L, (float)(scale * left), est->index->vectors + (size_t)slate[i] * L, acc);
    }
}

POLOPT_DEF polopt_result polopt_estimator_slate_log_prob(const polopt_estimator *est, size_t c, size_t K,
                                                         const uint32_t *slate, float *out_log_pi, float *out_grad)
{
    static const char *fn = "polopt_estimator_slate_log_prob";
    uint32_t sorted[POLOPT_SLATE_MAX];
    double le[POLOPT_SLATE_MAX], lz[POLOPT_SLATE_MAX], rest, lr, acc;
    polopt_draws d;
    size_t k, L;
    float inv_t;
    polopt_result rc;
    if (!est) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, fn)) != POLOPT_OK) return rc;
    if (!slate) return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: slate is NULL", fn);
    if ((rc = polopt__slate_check(est, K, slate, sorted, fn)) != POLOPT_OK) return rc;
    memset(&d, 0, sizeof d);
    if ((rc = polopt_estimator_draws(est, c, &d)) != POLOPT_OK) return rc;
    L = est->index->dim, inv_t = 1.0f / est->config.temperature;
    polopt__slate_logs(est, c, &d, K, slate, sorted, le, lz, &rest, &lr);
    if (out_log_pi) /* log pi(a_1..a_k) = sum_{j<=k} (le_j - lz_j), each term <= 0 */
        for (acc = 0.0, k = 0; k < K; ++k) {
            acc += le[k] - lz[k] < 0.0 ? le[k] - lz[k] : 0.0;
            out_log_pi[k] = (float)acc;
        }
    if (out_grad) {
        /* the mean of beta over the draws outside the slate, into the last row (read there until it is written) */
        float *m_rest = out_grad + (K - 1) * L;
        size_t j, i;
        memset(m_rest, 0, L * sizeof *m_rest);
        if (rest > 0.0) polopt__draws_outside_add(est, &d, K, sorted, rest, 1.0, m_rest);
        /* step k: E_{pi_k}[beta] = exp(lr - lz_k) m_rest + sum_{i>=k} exp(le_i - lz_k) beta_{a_i}, and row k = row k-1 +
           (beta_{a_k} - E_{pi_k}[beta]) / T; the last row reads m_rest[j] just before writing over it */
        for (k = 0; k < K; ++k) {
            const double c_rest = rest > 0.0 ? exp(lr - lz[k]) : 0.0;
            const float *bk = est->index->vectors + (size_t)slate[k] * L;
            float *row = out_grad + k * L;
            double dk[POLOPT_SLATE_MAX];
            for (i = k; i < K; ++i) dk[i] = exp(le[i] - lz[k]);
            for (j = 0; j < L; ++j) {
                double e = c_rest * m_rest[j];
                for (i = k; i < K; ++i) e += dk[i] * est->index->vectors[(size_t)slate[i] * L + j];
                row[j] = (k ? out_grad[(k - 1) * L + j] : 0.0f) + (float)((bk[j] - e) * inv_t);
            }
        }
        {
            size_t bad;
            if (polopt_check_finite(K * L, out_grad, &bad) != POLOPT_OK)
                return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_NONFINITE,
                                    "%s: the gradient of context %lu is not finite", fn, (unsigned long)c);
        }
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_estimator_sample_slate(const polopt_estimator *est, size_t c, size_t K,
                                                       polopt_rng *rng, uint32_t *out_slate)
{
    static const char *fn = "polopt_estimator_sample_slate";
    uint32_t chosen[POLOPT_SLATE_MAX]; /* the items placed so far, sorted */
    polopt_draws d;
    size_t k, s, P;
    double total = 0.0;
    polopt_result rc;
    if (!est) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, fn)) != POLOPT_OK) return rc;
    if (!rng || !out_slate)
        return polopt__fail(NULL, &est->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: rng or out_slate is NULL", fn);
    if ((rc = polopt__slate_check(est, K, NULL, NULL, fn)) != POLOPT_OK) return rc;
    memset(&d, 0, sizeof d);
    if ((rc = polopt_estimator_draws(est, c, &d)) != POLOPT_OK) return rc;
    P = est->index->n;
    for (s = 0; s < d.S; ++s) total += d.weights[s];
    for (k = 0; k < K; ++k) {
        uint32_t a = POLOPT_NO_ITEM;
        if (total > 0.0) { /* one draw from the weights of the items not yet placed: a scan to u * total */
            const double u = polopt_rng_uniform(rng) * total;
            double run = 0.0;
            uint32_t last = POLOPT_NO_ITEM;
            for (s = 0; s < d.S; ++s) {
                if (d.weights[s] <= 0.0f || polopt__in_sorted(chosen, k, d.ids[s])) continue;
                run += d.weights[s], last = d.ids[s];
                if (run > u) break;
            }
            a = s < d.S ? d.ids[s] : last; /* rounding at the end of the scan: the last candidate */
        }
        if (a == POLOPT_NO_ITEM) /* the draws are used up: uniform over the items not placed (K <= P) */
            do a = (uint32_t)polopt_rng_below(rng, P);
            while (polopt__in_sorted(chosen, k, a));
        out_slate[k] = a;
        if (total > 0.0) { /* take a's pooled weight out of the total */
            double wa = 0.0;
            for (s = 0; s < d.S; ++s)
                if (d.ids[s] == a) wa += d.weights[s];
            total -= wa;
            if (total < 1e-300) total = 0.0;
        }
        polopt__insert_sorted(chosen, k, a);
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_estimator_slate_gradient(const polopt_estimator *est, size_t c, size_t K,
                                                         size_t n_slates, polopt_slate_reward_fn reward, void *user,
                                                         polopt_rng *rng, float *out_g, double *out_value)
{
    static const char *fn = "polopt_estimator_slate_gradient";
    uint32_t slates[POLOPT_SLATE_SAMPLES_MAX][POLOPT_SLATE_MAX], sorted[POLOPT_SLATE_MAX];
    double r[POLOPT_SLATE_SAMPLES_MAX], total = 0.0, le[POLOPT_SLATE_MAX], lz[POLOPT_SLATE_MAX], rest, lr;
    const polopt_hooks *hk;
    polopt_draws d;
    size_t m, k, bad;
    polopt_result rc;
    if (!est) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(est, c, fn)) != POLOPT_OK) return rc;
    hk = &est->config.hooks;
    POLOPT__CHECK(NULL, hk, reward && rng && out_g, "%s: reward, rng or out_g is NULL", fn);
    POLOPT__CHECK(NULL, hk, n_slates >= 2 && n_slates <= POLOPT_SLATE_SAMPLES_MAX,
                  "%s: n_slates = %lu is outside 2 .. %d (the baseline needs two)", fn, (unsigned long)n_slates,
                  POLOPT_SLATE_SAMPLES_MAX);
    if ((rc = polopt__slate_check(est, K, NULL, NULL, fn)) != POLOPT_OK) return rc;
    for (m = 0; m < n_slates; ++m) {
        if ((rc = polopt_estimator_sample_slate(est, c, K, rng, slates[m])) != POLOPT_OK) return rc;
        r[m] = 0.0;
        if ((rc = reward(user, c, K, slates[m], &r[m])) != POLOPT_OK)
            return polopt__fail(NULL, hk, rc, "%s: the reward callback failed for context %lu (%s)", fn,
                                (unsigned long)c, polopt_strerror(rc));
        if (!(fabs(r[m]) <= DBL_MAX))
            return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: the reward of sampled slate %lu is not finite", fn,
                                (unsigned long)m);
        total += r[m];
    }
    memset(&d, 0, sizeof d);
    if ((rc = polopt_estimator_draws(est, c, &d)) != POLOPT_OK) return rc;
    memset(out_g, 0, est->index->dim * sizeof *out_g);
    for (m = 0; m < n_slates; ++m) {
        const double coef = (r[m] - (total - r[m]) / (double)(n_slates - 1)) / (double)n_slates;
        if (coef == 0.0) continue;
        for (k = 0; k < K; ++k) polopt__insert_sorted(sorted, k, slates[m][k]);
        polopt__slate_logs(est, c, &d, K, slates[m], sorted, le, lz, &rest, &lr);
        polopt__slate_score_add(est, &d, K, slates[m], sorted, le, lz, rest, lr, coef, out_g);
    }
    if (polopt_check_finite(est->index->dim, out_g, &bad) != POLOPT_OK)
        return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: the gradient of context %lu is not finite", fn,
                            (unsigned long)c);
    if (out_value) *out_value = total / (double)n_slates;
    return POLOPT_OK;
}


/* >>learn ------------------------------------------------------------------------------------------------- */

/* Processor seconds (clock) and wall-clock seconds (gettimeofday where there is one, else the processor's). */
static double polopt__seconds(void)
{
    return (double)clock() / (double)CLOCKS_PER_SEC;
}

static double polopt__wall_seconds(void)
{
#ifdef POLOPT__POSIX_FILES
    struct timeval tv;
    if (gettimeofday(&tv, NULL) == 0) return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
#endif
    return polopt__seconds();
}

static polopt_result polopt__sets_init_impl(polopt_sets *sets, size_t n, const size_t *offsets, const uint32_t *items,
                                          const polopt_hooks *hooks)
{
    static const char *fn = "polopt_sets_init";
    polopt_result rc = POLOPT_OK;
    size_t i, total;
    if (!sets) return POLOPT_ERR_INVALID_ARG;
    memset(sets, 0, sizeof *sets);
    sets->hooks = hooks ? *hooks : polopt__no_hooks;
    if (!offsets || (n && !items && offsets[n] > offsets[0]))
        return polopt__fail(&sets->err, &sets->hooks, POLOPT_ERR_INVALID_ARG, "%s: offsets or items is NULL", fn);
    for (i = 0; i < n; ++i)
        if (offsets[i + 1] < offsets[i])
            return polopt__fail(&sets->err, &sets->hooks, POLOPT_ERR_INVALID_ARG, "%s: offsets[%lu] > offsets[%lu]", fn,
                                (unsigned long)i, (unsigned long)(i + 1));
    total = offsets[n] - offsets[0];
    sets->offsets = (size_t *)polopt__alloc(&sets->hooks, n + 1, sizeof(size_t), &rc);
    if (sets->offsets) sets->items = (uint32_t *)polopt__alloc(&sets->hooks, total, sizeof(uint32_t), &rc);
    if (!sets->items) {
        return polopt__fail(&sets->err, &sets->hooks, rc, "%s: cannot allocate %lu items", fn, (unsigned long)total);
    }
    sets->offsets[0] = 0;
    for (i = 0; i < n; ++i) { /* copy, sort, drop duplicates */
        uint32_t *row = sets->items + sets->offsets[i];
        const size_t len = offsets[i + 1] - offsets[i];
        size_t j, w = 0;
        memcpy(row, items + (offsets[i] - offsets[0]), len * sizeof *row);
        qsort(row, len, sizeof *row, polopt__cmp_u32);
        for (j = 0; j < len; ++j)
            if (w == 0 || row[j] != row[w - 1]) row[w++] = row[j];
        sets->offsets[i + 1] = sets->offsets[i] + w;
    }
    sets->n = n;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_sets_init(polopt_sets *sets, size_t n, const size_t *offsets, const uint32_t *items,
                                          const polopt_hooks *hooks)
{
    const polopt_result rc = polopt__sets_init_impl(sets, n, offsets, items, hooks);
    if (rc != POLOPT_OK && sets) POLOPT__ZERO_KEEPING_ERROR(sets, polopt_sets_free);
    return rc;
}

POLOPT_DEF void polopt_sets_free(polopt_sets *sets)
{
    if (!sets) return;
    polopt__dealloc(&sets->hooks, sets->offsets);
    polopt__dealloc(&sets->hooks, sets->items);
    memset(sets, 0, sizeof *sets);
}

POLOPT_DEF polopt_result polopt_sets_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                            float *out_rewards)
{
    const polopt_sets *sets = (const polopt_sets *)user;
    const uint32_t *row;
    uint64_t mask = 0;
    size_t len, s;
    if (!sets || !sets->offsets || context >= sets->n || (n && (!items || !out_rewards))) return POLOPT_ERR_INVALID_ARG;
    row = sets->items + sets->offsets[context];
    len = sets->offsets[context + 1] - sets->offsets[context];
    for (s = 0; s < len; ++s) mask |= (uint64_t)1 << (row[s] & 63); /* a one-word filter: most draws miss the set */
    for (s = 0; s < n; ++s)
        out_rewards[s] = (mask >> (items[s] & 63) & 1) && polopt__sorted_contains(row, len, items[s]) ? 1.0f : 0.0f;
    return POLOPT_OK;
}

/* >>learn: the correction weights, returns, the objectives and the trainer */

POLOPT_DEF polopt_correction_config polopt_correction_config_default(void)
{
    polopt_correction_config c;
    memset(&c, 0, sizeof c);
    c.kind = POLOPT_CORRECTION_TOP_K;
    c.K = 16;
    return c;
}

static polopt_result polopt__correction_check(const polopt_correction_config *c, polopt_error *err,
                                              const polopt_hooks *hooks, const char *fn)
{
    POLOPT__CHECK(err, hooks, c->kind == POLOPT_CORRECTION_NONE || c->kind == POLOPT_CORRECTION_FIRST_ORDER ||
                                  c->kind == POLOPT_CORRECTION_TOP_K, "%s: correction.kind = %d is unknown", fn, (int)c->kind);
    POLOPT__CHECK(err, hooks, c->K >= 1 && c->K <= (1u << 24), "%s: correction.K = %lu must be in [1, 2^24]", fn,
                  (unsigned long)c->K);
    POLOPT__CHECK(err, hooks, c->cap >= 0.0f && c->cap <= FLT_MAX, "%s: correction.cap = %g must be >= 0 (0: none)", fn,
                  (double)c->cap);
    POLOPT__CHECK(err, hooks, c->kl >= 0.0f && c->kl <= FLT_MAX, "%s: correction.kl = %g must be >= 0", fn, (double)c->kl);
    return POLOPT_OK;
}

/* One weight: (min(pi / b, cap)) lambda_K, lambda_K = K (1 - pi)^(K - 1) (computed as exp((K-1) log1p(-pi))). */
static double polopt__correction_weight(const polopt_correction_config *c, double log_pi, double b)
{
    const double pi = exp(log_pi);
    double w;
    if (c->kind == POLOPT_CORRECTION_NONE) return 1.0;
    w = pi / b;
    if (c->cap > 0.0f && w > c->cap) w = c->cap;
    if (c->kind == POLOPT_CORRECTION_TOP_K && c->K > 1)
        w *= (double)c->K * (pi < 1.0 ? exp((double)(c->K - 1) * log1p(-pi)) : 0.0);
    return w;
}

POLOPT_DEF polopt_result polopt_correction_weights(const polopt_correction_config *config, size_t n,
                                                   const float *log_pi, const float *propensity, float *out_w,
                                                   const polopt_hooks *hooks)
{
    static const char *fn = "polopt_correction_weights";
    polopt_result rc;
    size_t i;
    POLOPT__CHECK(NULL, hooks, config && (!n || (log_pi && propensity && out_w)), "%s: an argument is NULL", fn);
    if ((rc = polopt__correction_check(config, NULL, hooks, fn)) != POLOPT_OK) return rc;
    for (i = 0; i < n; ++i) {
        if (!(log_pi[i] <= 0.0f) || !(propensity[i] > 0.0f && propensity[i] <= 1.0f))
            return polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN, "%s: entry %lu has log pi = %g (must be <= 0) and "
                                "b = %g (must be in (0, 1])", fn, (unsigned long)i, (double)log_pi[i],
                                (double)propensity[i]);
        out_w[i] = (float)polopt__correction_weight(config, log_pi[i], propensity[i]);
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_discounted_returns(size_t n, const uint32_t *trajectory, const float *reward,
                                                   float gamma, float *out_R, const polopt_hooks *hooks)
{
    static const char *fn = "polopt_discounted_returns";
    double R = 0.0;
    size_t t;
    POLOPT__CHECK(NULL, hooks, !n || (trajectory && reward && out_R), "%s: an array is NULL", fn);
    if (!(gamma >= 0.0f && gamma <= 1.0f))
        return polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN, "%s: gamma = %g is outside [0, 1]", fn, (double)gamma);
    for (t = n; t-- > 0;) { /* backwards: R_t = r_t + gamma R_{t+1} while the trajectory goes on */
        R = reward[t] + (t + 1 < n && trajectory[t + 1] == trajectory[t] ? gamma * R : 0.0);
        if (!(fabs(R) <= FLT_MAX))
            return polopt__fail(NULL, hooks, POLOPT_ERR_NONFINITE, "%s: the return of step %lu is %g (reward %g)", fn,
                                (unsigned long)t, R, (double)reward[t]);
        out_R[t] = (float)R;
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_trainer_config polopt_trainer_config_default(void)
{
    polopt_trainer_config c;
    memset(&c, 0, sizeof c);
    c.estimator = polopt_estimator_config_default();
    c.adam = polopt_adam_config_default();
    c.adam.lr = 1e-4f;
    c.correction = polopt_correction_config_default();
    c.behaviour_adam = polopt_adam_config_default();
    return c;
}

/* Ask for rewards and check them: a NaN reward must stop training, not poison theta. */
static polopt_result polopt__rewards(const polopt_dataset *d, uint32_t ctx, size_t n, const uint32_t *items, float *out,
                                     polopt_error *err, const polopt_hooks *hooks)
{
    size_t bad = 0;
    polopt_result rc = d->reward(d->reward_user, ctx, n, items, out);
    if (rc != POLOPT_OK)
        return polopt__fail(err, hooks, rc, "the reward function failed for context %u: %s", ctx, polopt_strerror(rc));
    if (polopt_check_finite(n, out, &bad) != POLOPT_OK)
        return polopt__fail(err, hooks, POLOPT_ERR_NONFINITE,
                            "the reward of context %u, item %u is %g; training stopped with the last good parameters",
                            ctx, items[bad], (double)out[bad]);
    return POLOPT_OK;
}

/* The rewards of the estimator's model part: the callback, or 0 when logged feedback stands alone (IPS). */
static polopt_result polopt__model_rewards(const polopt_dataset *d, uint32_t ctx, size_t n, const uint32_t *items,
                                           float *out, polopt_error *err, const polopt_hooks *hooks)
{
    if (!d->reward) {
        memset(out, 0, n * sizeof *out);
        return POLOPT_OK;
    }
    return polopt__rewards(d, ctx, n, items, out, err, hooks);
}

/* With logged feedback, the coefficient of the logged action's exact term: c = (r_i - r_M(a_i, x_i)) / max(tau, p_i)
   ; *out_c = 0 without feedback. */
static polopt_result polopt__feedback_c(const polopt_dataset *d, uint32_t ctx, size_t P, double *out_c,
                                        polopt_error *err, const polopt_hooks *hooks)
{
    const polopt_feedback *fb = d->feedback;
    float r_model = 0.0f;
    polopt_result rc;
    *out_c = 0.0;
    if (!fb) return POLOPT_OK;
    if (fb->action[ctx] >= P || !(fb->propensity[ctx] > 0.0 && fb->propensity[ctx] <= 1.0) ||
        !(fabs(fb->reward[ctx]) <= FLT_MAX))
        return polopt__fail(err, hooks, POLOPT_ERR_INVALID_ARG,
                            "the logged feedback of context %u is invalid (action %u of %lu, propensity %g, reward %g)",
                            ctx, fb->action[ctx], (unsigned long)P, (double)fb->propensity[ctx], (double)fb->reward[ctx]);
    if ((rc = polopt__model_rewards(d, ctx, 1, fb->action + ctx, &r_model, err, hooks)) != POLOPT_OK) return rc;
    *out_c = (fb->reward[ctx] - r_model) / (fb->propensity[ctx] > fb->tau ? fb->propensity[ctx] : (double)fb->tau);
    if (!(fabs(*out_c) <= 1e30)) /* far past any meaningful reward; its products would overflow single precision */
        return polopt__fail(err, hooks, POLOPT_ERR_NONFINITE,
                            "the weighted logged reward of context %u, (r - r_M) / max(tau, p) = %g, is out of range "
                            "(set tau)", ctx, *out_c);
    return POLOPT_OK;
}

/* The gradient g (L floats) with respect to h of one context's expected reward E_pi[r_hat(ctx, .)], and its value,
   from the estimator's context c.  rewards: room for the estimator's S (P with EXACT); gl: L floats.
   With logged feedback, r_hat is non-zero at one action, which a sampled gradient would almost never draw at large
   P: its term is added exactly, c pi(a_i) grad log pi(a_i), pi(a_i) and E_pi beta from the same draws.
   *weighed (may be NULL) is 0 when context c came unweighed (polopt__estimator_set_unweighed) and none of its draws
   earned a reward: its gradient is then 0 whatever the weights (sum_s w_s (r_s - r_bar) beta_{a_s} with every r_s
   = 0), so they are never computed, and the S rows of beta they need are never read.  At a sparse set reward that
   is most contexts (at eps = 1 on the Debian baskets, four in five). */
static polopt_result polopt__reward_objective(polopt_estimator *est, const polopt_dataset *d, size_t c, uint32_t ctx,
                                              float *rewards, float *gl, float *g, double *value, int *weighed,
                                              polopt_error *err, const polopt_hooks *hooks)
{
    polopt_draws dr;
    double cf;
    polopt_result rc;
    if ((rc = polopt_estimator_draws(est, c, &dr)) != POLOPT_OK) return rc;
    if ((rc = polopt__model_rewards(d, ctx, dr.S, dr.ids, rewards, err, hooks)) != POLOPT_OK) return rc;
    if (weighed && !*weighed) {
        size_t s, nonzero = 0;
        for (s = 0; s < dr.S; ++s) nonzero += rewards[s] != 0.0f;
        if (nonzero == 0) {
            memset(g, 0, est->index->dim * sizeof *g);
            *value = 0.0;
            est->n = 0; /* the draws have no weights: nothing to query */
            return POLOPT_OK;
        }
        polopt__snis_weigh(est, c, NULL);
        *weighed = 1;
    }
    if ((rc = polopt_estimator_gradient(est, c, rewards, g, value)) != POLOPT_OK)
        return polopt__fail(err, hooks, rc, "the gradient of context %u is not finite; training stopped with the last "
                            "good parameters", ctx);
    if (!d->feedback) return POLOPT_OK;
    if ((rc = polopt__feedback_c(d, ctx, est->index->n, &cf, err, hooks)) != POLOPT_OK) return rc;
    if (cf != 0.0) {
        const size_t L = est->index->dim;
        float log_pi;
        double k;
        if ((rc = polopt_estimator_log_prob(est, c, 1, d->feedback->action + ctx, &log_pi, gl)) != POLOPT_OK) return rc;
        k = cf * exp((double)log_pi);
        polopt__axpy(L, (float)k, gl, g);
        *value += k;
    }
    return POLOPT_OK;
}

/* The REINFORCE objective on a logged action (Chen et al. 2019): g = w R grad log pi(a | s), w from the correction,
   b the logged or learned propensity; with the KL penalty, also kl * grad_h (-KL(pi || b_hat)) = kl Cov_pi(log b_hat
   - log pi, grad f), the covariance gradient of the "reward" f_b(a) - f(a) (h_b: b_hat's embedding). */
static polopt_result polopt__returns_objective(polopt_trainer *tr, size_t c, uint32_t ctx, const polopt_dataset *d,
                                               double b, const float *h_b, float *g, double *value, double *weight)
{
    const polopt_logged_returns *lr = d->returns;
    const size_t L = tr->index->dim;
    float log_pi;
    double w;
    polopt_result rc;
    if ((rc = polopt_estimator_log_prob(&tr->est, c, 1, lr->action + ctx, &log_pi, g)) != POLOPT_OK) return rc;
    w = polopt__correction_weight(&tr->config.correction, log_pi, b);
    polopt__scale(L, (float)(w * lr->ret[ctx]), g);
    *value = w * lr->ret[ctx];
    *weight = w;
    if (tr->config.correction.kl > 0.0f) {
        const float inv_t = 1.0f / tr->policy->temperature, *h = tr->est.H + c * L;
        polopt_draws dr;
        size_t s, j;
        if ((rc = polopt_estimator_draws(&tr->est, c, &dr)) != POLOPT_OK) return rc;
        for (j = 0; j < L; ++j) tr->gl[j] = h_b[j] - h[j];
        for (s = 0; s < dr.S; ++s) tr->rewards[s] = inv_t * polopt__dot(L, tr->gl, tr->index->vectors + (size_t)dr.ids[s] * L);
        if ((rc = polopt_estimator_gradient(&tr->est, c, tr->rewards, tr->gl, NULL)) != POLOPT_OK) return rc;
        polopt__axpy(L, tr->config.correction.kl, tr->gl, g);
    }
    return POLOPT_OK;
}

/* Check a dataset and, with warm_start, give it a top-K cache (once per dataset: never inside a step). */
static polopt_result polopt__check_dataset(polopt_trainer *tr, const polopt_dataset *d, const char *fn)
{
    const polopt_hooks *hk = &tr->config.hooks;
    polopt_result rc = POLOPT_OK;
    const size_t K = tr->config.estimator.K;
    size_t i, rows;
    if (!d || !d->X || (!d->reward && !d->feedback && !d->returns) || d->n == 0 || d->n >= POLOPT_NO_ITEM ||
        d->ldx < tr->policy->D)
        return polopt__fail(&tr->err, hk, POLOPT_ERR_INVALID_ARG,
                            "%s: the dataset needs n in [1, 2^32 - 2] contexts, X with ldx >= D, and a reward, feedback "
                            "or returns", fn);
    POLOPT__CHECK(&tr->err, hk, !d->feedback || (d->feedback->action && d->feedback->propensity && d->feedback->reward &&
                                                 d->feedback->tau >= 0.0f && d->feedback->tau <= 1.0f),
                  "%s: the feedback needs action, propensity and reward arrays and tau in [0, 1]", fn);
    if (d->returns) {
        const polopt_logged_returns *lr = d->returns;
        POLOPT__CHECK(&tr->err, hk, !d->reward && !d->feedback,
                      "%s: a dataset has either logged returns or a reward (and feedback), not both", fn);
        POLOPT__CHECK(&tr->err, hk, lr->action && lr->ret, "%s: the returns need action and ret arrays", fn);
        POLOPT__CHECK(&tr->err, hk, lr->propensity || tr->behaviour.theta ||
                                        tr->config.correction.kind == POLOPT_CORRECTION_NONE,
                      "%s: the returns have no propensities: set config.learn_behaviour to learn them", fn);
        for (i = 0; i < d->n; ++i)
            if (lr->action[i] >= tr->index->n || !(fabs(lr->ret[i]) <= FLT_MAX) ||
                (lr->propensity && !(lr->propensity[i] > 0.0f && lr->propensity[i] <= 1.0f)))
                return polopt__fail(&tr->err, hk, POLOPT_ERR_INVALID_ARG,
                                    "%s: logged step %lu is invalid (action %u of %lu, return %g, propensity %g)", fn,
                                    (unsigned long)i, lr->action[i], (unsigned long)tr->index->n, (double)lr->ret[i],
                                    lr->propensity ? (double)lr->propensity[i] : 1.0);
    }
    if (tr->config.estimator.method != POLOPT_METHOD_SNIS || !tr->config.warm_start) return POLOPT_OK;
    if (tr->cache && tr->cache_key == d->X && tr->cache_n == d->n) return POLOPT_OK;
    polopt__dealloc(hk, tr->cache);
    tr->cache_key = NULL;
    tr->cache_n = 0;
    rows = tr->behaviour.theta ? 2 * d->n : d->n; /* b_hat's searches are warm-started too */
    tr->cache = (uint32_t *)polopt__alloc(hk, rows, K * sizeof(uint32_t), &rc); /* K <= 2^16 */
    if (!tr->cache)
        return polopt__fail(&tr->err, hk, rc, "%s: cannot allocate the top-K cache (%lu x %lu ids)", fn,
                            (unsigned long)rows, (unsigned long)K);
    polopt__advise_huge(tr->cache, rows * K * sizeof(uint32_t));
    for (i = 0; i < rows; ++i) tr->cache[i * K] = POLOPT_NO_ITEM; /* no previous visit */
    tr->cache_key = d->X;
    tr->cache_n = d->n;
    return POLOPT_OK;
}

/* Before context c of a batch of nb with embeddings H: set the estimator on the chunk that starts at c, if c starts
   one, and return c's place in it.  SNIS sets one context at a time, so that its draws' rows of beta are still in
   cache when the reward and the gradient read them again (at P = 10^6 a batch's 32,000 rows would not be: 1.5x the
   time per step, measured); REINFORCE and EXACT set the whole batch at once, for one pass over beta. */
static size_t polopt__set_chunk(polopt_trainer *tr, size_t c, size_t nb, const float *H, int unweighed,
                                polopt_result *rc)
{
    const size_t chunk = tr->est.config.method == POLOPT_METHOD_SNIS ? 1 : nb, L = tr->index->dim;
    *rc = POLOPT_OK;
    if (c % chunk == 0) {
        const size_t m = nb - c < chunk ? nb - c : chunk;
        *rc = unweighed ? polopt__estimator_set_unweighed(&tr->est, H + c * L, tr->cache ? tr->warm[c] : NULL)
                        : polopt_estimator_set(&tr->est, m, H + c * L, tr->cache ? tr->warm + c : NULL);
        if (*rc != POLOPT_OK) tr->err = tr->est.err;
    }
    return c % chunk;
}

/* Learned propensities for a batch whose contexts are in tr->xb: b_hat(a_t | s_t) into tr->wb, one maximum-
   likelihood Adam step of b_hat (grad log b_hat from the same estimator), b_hat's embeddings into tr->hbb. */
static polopt_result polopt__behaviour_step(polopt_trainer *tr, const polopt_dataset *d, const uint32_t *ctx, size_t nb,
                                            polopt_train_stats *st)
{
    const size_t D = tr->policy->D, L = tr->policy->L;
    size_t c;
    polopt_result rc;
    if (tr->cache)
        for (c = 0; c < nb; ++c) tr->warm[c] = tr->cache + (d->n + ctx[c]) * tr->config.estimator.K;
    if ((rc = polopt_policy_embed(&tr->behaviour, nb, tr->xb, D, tr->hbb)) != POLOPT_OK)
        return polopt__fail(&tr->err, &tr->config.hooks, rc, "the behaviour head's embedding is not finite");
    for (c = 0; c < nb; ++c) {
        const size_t at = polopt__set_chunk(tr, c, nb, tr->hbb, 0, &rc);
        float log_b;
        if (rc != POLOPT_OK) return rc;
        if ((rc = polopt_estimator_log_prob(&tr->est, at, 1, d->returns->action + ctx[c], &log_b, tr->gb + c * L)) != POLOPT_OK)
            return rc;
        tr->wb[c] = (float)exp((double)log_b);
        st->behaviour_log_lik += log_b;
    }
    polopt__gemm(POLOPT_TRANS, POLOPT_NO_TRANS, D, L, nb, 1.0f / (float)nb, tr->xb, D, tr->gb, L, 0.0f, tr->grad, L);
    if ((rc = polopt_adam_step(&tr->behaviour_adam, tr->behaviour.theta, tr->grad)) != POLOPT_OK) {
        tr->err = tr->behaviour_adam.err;
        return rc;
    }
    return POLOPT_OK;
}

/* The gradients G (nb x L) of nb contexts, user embeddings H, whose features are in tr->xb. */
static polopt_result polopt__batch_gradient(polopt_trainer *tr, const polopt_dataset *d, const uint32_t *ctx, size_t nb,
                                            const float *H, float *G, polopt_train_stats *st)
{
    const size_t L = tr->index->dim, K = tr->config.estimator.K;
    /* SNIS with a model reward weighs a context's draws only when one of them earned a reward (see
       polopt__reward_objective); logged feedback and returns need pi of the logged action, and the adaptive eps
       needs every context's weights */
    const int unweighed = tr->est.config.method == POLOPT_METHOD_SNIS && !tr->est.config.adaptive_epsilon &&
                          !d->feedback && !d->returns;
    double sum_w = 0.0, sum_w2 = 0.0;
    size_t c;
    polopt_result rc;
    for (c = 0; c < nb; ++c)
        if (ctx[c] >= d->n)
            return polopt__fail(&tr->err, &tr->config.hooks, POLOPT_ERR_INVALID_ARG, "context %u is not below n = %lu",
                                ctx[c], (unsigned long)d->n);
    if (d->returns && tr->behaviour.theta && (rc = polopt__behaviour_step(tr, d, ctx, nb, st)) != POLOPT_OK) return rc;
    if (tr->cache)
        for (c = 0; c < nb; ++c) tr->warm[c] = tr->cache + (size_t)ctx[c] * K;
    for (c = 0; c < nb; ++c) {
        const size_t at = polopt__set_chunk(tr, c, nb, H, unweighed, &rc);
        double value = 0.0, w = 1.0;
        int weighed = !unweighed;
        if (rc != POLOPT_OK) return rc;
        if (d->returns) {
            const double b = d->returns->propensity ? d->returns->propensity[ctx[c]]
                             : tr->behaviour.theta           ? tr->wb[c]
                                                             : 1.0; /* NONE: no weight, b unused */
            rc = polopt__returns_objective(tr, at, ctx[c], d, b, tr->hbb + c * L, G + c * L, &value, &w);
        } else {
            rc = polopt__reward_objective(&tr->est, d, at, ctx[c], tr->rewards, tr->gl, G + c * L, &value, &weighed,
                                          &tr->err, &tr->config.hooks);
        }
        if (rc != POLOPT_OK) return rc;
        sum_w += w;
        sum_w2 += w * w;
        st->reward += value;
        if (weighed) st->ess += tr->est.ess[at], st->weighed += 1;
        st->epsilon += tr->est.config.method == POLOPT_METHOD_SNIS ? tr->est.epsilon : 1.0f;
    }
    if (d->returns) {
        st->weight_ess += sum_w2 > 0.0 ? sum_w * sum_w / sum_w2 : 0.0;
        if (tr->config.correction.normalise && sum_w > 0.0) /* divide by the batch mean of the weights */
            polopt__scale(nb * L, (float)((double)nb / sum_w), G);
    }
    return POLOPT_OK;
}

POLOPT_DEF void polopt_trainer_free(polopt_trainer *trainer)
{
    polopt_hooks h;
    if (!trainer) return;
    h = trainer->config.hooks;
    polopt_estimator_free(&trainer->est);
    polopt_adam_free(&trainer->adam);
    polopt_policy_free(&trainer->behaviour);
    polopt_adam_free(&trainer->behaviour_adam);
    polopt__dealloc(&h, trainer->block);
    polopt__dealloc(&h, trainer->order);
    polopt__dealloc(&h, trainer->cache);
    memset(trainer, 0, sizeof *trainer);
}

/* The step's buffers: a batch of contexts, embeddings and gradients, the parameter gradient, rewards of the draws. */
static void polopt__trainer_layout(polopt_trainer *tr, size_t D, size_t L, size_t B, size_t S, polopt__arena *a)
{
    tr->xb = (float *)polopt__carve(a, B * D, sizeof(float));
    tr->hb = (float *)polopt__carve(a, B * L, sizeof(float));
    tr->gb = (float *)polopt__carve(a, B * L, sizeof(float));
    tr->hbb = (float *)polopt__carve(a, B * L, sizeof(float));
    tr->grad = (float *)polopt__carve(a, D * L, sizeof(float));
    tr->rewards = (float *)polopt__carve(a, S, sizeof(float));
    tr->gl = (float *)polopt__carve(a, L, sizeof(float));
    tr->wb = (float *)polopt__carve(a, B, sizeof(float));
    tr->warm = (uint32_t **)polopt__carve(a, B, sizeof(uint32_t *));
}

static polopt_result polopt__trainer_init_impl(polopt_trainer *tr, polopt_policy *policy, const polopt_mips *index,
                                             const polopt_trainer_config *config)
{
    static const char *fn = "polopt_trainer_init";
    polopt_trainer_config c;
    polopt__arena a = {NULL, 0, 0};
    polopt_result rc = POLOPT_OK;
    size_t L, D, B;
    if (!tr) return POLOPT_ERR_INVALID_ARG;
    memset(tr, 0, sizeof *tr);
    c = config ? *config : polopt_trainer_config_default();
    tr->config = c;
    POLOPT__CHECK(&tr->err, &c.hooks, policy && policy->theta && index && index->vectors,
                  "%s: policy or index is not initialised", fn);
    L = index->dim, D = policy->D, B = c.estimator.batch;
    POLOPT__CHECK(&tr->err, &c.hooks, policy->L == L, "%s: the policy has L = %lu, the index dimension %lu", fn,
                  (unsigned long)policy->L, (unsigned long)L);
    if ((rc = polopt__correction_check(&c.correction, &tr->err, &c.hooks, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(&tr->err, &c.hooks, c.correction.kl == 0.0f || c.learn_behaviour,
                  "%s: the KL penalty (correction.kl = %g) needs learn_behaviour", fn, (double)c.correction.kl);
    c.estimator.temperature = policy->temperature;
    c.estimator.hooks = c.hooks;
    if ((rc = polopt__estimator_check(index, &c.estimator, &tr->err, fn, "config.estimator")) != POLOPT_OK) return rc;
    if ((rc = polopt_estimator_init(&tr->est, index, &c.estimator)) != POLOPT_OK) {
        tr->err = tr->est.err;
        return rc;
    }
    c.estimator = tr->est.config; /* with ef filled in */
    tr->config = c;
    tr->policy = policy;
    tr->index = index;
    polopt__rng_seed(&tr->rng, c.estimator.seed ^ 0x9e3779b97f4a7c15ULL); /* the shuffling: apart from the draws */
    c.adam.maximize = 1;
    c.adam.hooks = c.hooks;
    if ((rc = polopt_adam_init(&tr->adam, D * L, &c.adam)) != POLOPT_OK) {
        tr->err = tr->adam.err;
        return rc;
    }
    if (c.learn_behaviour) { /* b_hat starts where pi does */
        polopt_policy_config pc = polopt_policy_config_default(D, L);
        pc.temperature = policy->temperature;
        pc.init_scale = 0.0f;
        pc.hooks = c.hooks;
        c.behaviour_adam.maximize = 1;
        c.behaviour_adam.hooks = c.hooks;
        if ((rc = polopt_policy_init(&tr->behaviour, &pc)) != POLOPT_OK) {
            tr->err = tr->behaviour.err;
            return rc;
        }
        memcpy(tr->behaviour.theta, policy->theta, D * L * sizeof(float));
        if ((rc = polopt_adam_init(&tr->behaviour_adam, D * L, &c.behaviour_adam)) != POLOPT_OK) {
            tr->err = tr->behaviour_adam.err;
            return rc;
        }
    }
    polopt__trainer_layout(tr, D, L, B, tr->est.S, &a);
    if (!(tr->block = polopt__arena_alloc(&c.hooks, &a, &rc)))
        return polopt__fail(&tr->err, &c.hooks, rc, "%s: cannot allocate the step buffers (batch = %lu)", fn,
                            (unsigned long)B);
    polopt__arena_begin(&a, tr->block);
    polopt__trainer_layout(tr, D, L, B, tr->est.S, &a);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_trainer_init(polopt_trainer *trainer, polopt_policy *policy, const polopt_mips *index,
                                             const polopt_trainer_config *config)
{
    const polopt_result rc = polopt__trainer_init_impl(trainer, policy, index, config);
    if (rc != POLOPT_OK && trainer) POLOPT__ZERO_KEEPING_ERROR(trainer, polopt_trainer_free);
    return rc;
}

/* The contexts' features into tr->xb. */
static void polopt__gather(polopt_trainer *tr, const polopt_dataset *d, const uint32_t *ctx, size_t nb)
{
    const size_t D = tr->policy->D;
    size_t c;
    for (c = 0; c < nb; ++c) memcpy(tr->xb + c * D, d->X + (size_t)ctx[c] * d->ldx, D * sizeof(float));
}

/* The gradient of a minibatch's objective with respect to theta (linear h): H = X_B theta, G = d objective / d H,
   out = scale X_B^T G (one gemm). */
static polopt_result polopt__theta_gradient(polopt_trainer *tr, const polopt_dataset *d, const uint32_t *ctx,
                                            size_t nb, float scale, float *out, polopt_train_stats *st)
{
    const size_t D = tr->policy->D, L = tr->policy->L;
    size_t bad = 0;
    polopt_result rc;
    polopt__gather(tr, d, ctx, nb);
    if ((rc = polopt_policy_embed(tr->policy, nb, tr->xb, D, tr->hb)) != POLOPT_OK)
        return polopt__fail(&tr->err, &tr->config.hooks, rc,
                            "the embedding of a context of the minibatch is not finite (a context, or x theta, is)");
    if ((rc = polopt__batch_gradient(tr, d, ctx, nb, tr->hb, tr->gb, st)) != POLOPT_OK) return rc;
    polopt__gemm(POLOPT_TRANS, POLOPT_NO_TRANS, D, L, nb, scale, tr->xb, D, tr->gb, L, 0.0f, out, L);
    if (polopt_check_finite(D * L, out, &bad) != POLOPT_OK)
        return polopt__fail(&tr->err, &tr->config.hooks, POLOPT_ERR_NONFINITE,
                            "the gradient is not finite (entry %lu); training stopped with the last good parameters",
                            (unsigned long)bad);
    return POLOPT_OK;
}

/* One Adam step with a gradient of theta. */
static polopt_result polopt__apply(polopt_trainer *tr, const float *grad)
{
    const polopt_result rc = polopt_adam_step(&tr->adam, tr->policy->theta, grad);
    if (rc != POLOPT_OK) tr->err = tr->adam.err;
    return rc;
}

/* One Adam step on a minibatch of contexts: the mean gradient, then the step. */
static polopt_result polopt__step(polopt_trainer *tr, const polopt_dataset *d, const uint32_t *ctx, size_t nb,
                                  polopt_train_stats *st)
{
    polopt_result rc = polopt__theta_gradient(tr, d, ctx, nb, 1.0f / (float)nb, tr->grad, st);
    if (rc == POLOPT_OK) rc = polopt__apply(tr, tr->grad);
    if (rc == POLOPT_OK) st->steps += 1;
    return rc;
}

/* The mean of the sums in st over n contexts (and its steps). */
static void polopt__stats_finish(polopt_train_stats *st, size_t n, size_t batches)
{
    if (n == 0) return;
    st->reward /= (double)n;
    st->ess = st->weighed ? st->ess / (double)st->weighed : 0.0;
    st->epsilon /= (float)n;
    st->behaviour_log_lik /= (double)n;
    if (batches) st->weight_ess /= (double)batches;
}

POLOPT_DEF polopt_result polopt_trainer_gradient(polopt_trainer *trainer, const polopt_dataset *data, size_t n,
                                                 const uint32_t *contexts, float *out_grad,
                                                 polopt_train_stats *out_stats)
{
    static const char *fn = "polopt_trainer_gradient";
    polopt_train_stats st;
    const double t0 = polopt__seconds();
    const double w0 = polopt__wall_seconds();
    polopt_result rc;
    size_t c;
    if (!trainer) return POLOPT_ERR_INVALID_ARG;
    if (!trainer->policy) return polopt__not_ready(&trainer->err, &trainer->config.hooks, fn, "trainer");
    if ((rc = polopt__check_dataset(trainer, data, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(&trainer->err, &trainer->config.hooks, n >= 1 && n <= trainer->config.estimator.batch && contexts &&
                  out_grad, "%s: n = %lu must be in [1, batch = %lu], contexts and out_grad set", fn, (unsigned long)n,
                  (unsigned long)trainer->config.estimator.batch);
    POLOPT__CHECK(&trainer->err, &trainer->config.hooks, !trainer->config.learn_behaviour,
                  "%s: a trainer that learns b_hat steps it inside every gradient: not with learn_behaviour", fn);
    for (c = 0; c < n; ++c)
        POLOPT__CHECK(&trainer->err, &trainer->config.hooks, contexts[c] < data->n,
                      "%s: context %u is not below n = %lu", fn, contexts[c], (unsigned long)data->n);
    memset(&st, 0, sizeof st);
    rc = polopt__theta_gradient(trainer, data, contexts, n, 1.0f, out_grad, &st);
    polopt__stats_finish(&st, n, 1);
    st.seconds = polopt__seconds() - t0;
    st.wall_seconds = polopt__wall_seconds() - w0;
    if (out_stats) *out_stats = st;
    return rc;
}

POLOPT_DEF polopt_result polopt_trainer_apply(polopt_trainer *trainer, const float *grad)
{
    static const char *fn = "polopt_trainer_apply";
    size_t bad = 0;
    if (!trainer) return POLOPT_ERR_INVALID_ARG;
    if (!trainer->policy) return polopt__not_ready(&trainer->err, &trainer->config.hooks, fn, "trainer");
    POLOPT__CHECK(&trainer->err, &trainer->config.hooks, grad != NULL, "%s: grad is NULL", fn);
    if (polopt_check_finite(trainer->policy->D * trainer->policy->L, grad, &bad) != POLOPT_OK)
        return polopt__fail(&trainer->err, &trainer->config.hooks, POLOPT_ERR_NONFINITE,
                            "%s: grad[%lu] is not finite; theta is unchanged", fn, (unsigned long)bad);
    return polopt__apply(trainer, grad);
}

POLOPT_DEF polopt_result polopt_trainer_epoch(polopt_trainer *trainer, const polopt_dataset *data, polopt_train_stats *out_stats)
{
    static const char *fn = "polopt_trainer_epoch";
    polopt_train_stats st;
    polopt_progress pr;
    const double t0 = polopt__seconds();
    const double w0 = polopt__wall_seconds();
    size_t i, done = 0, B;
    polopt_result rc = POLOPT_OK;
    if (!trainer) return POLOPT_ERR_INVALID_ARG;
    if (!trainer->policy) return polopt__not_ready(&trainer->err, &trainer->config.hooks, fn, "trainer");
    if ((rc = polopt__check_dataset(trainer, data, fn)) != POLOPT_OK) return rc;
    B = trainer->config.estimator.batch;
    if (trainer->order_n != data->n) { /* the shuffled order: allocated once per dataset size, outside the steps */
        void *p = polopt__realloc_array(&trainer->config.hooks, trainer->order, data->n, sizeof(uint32_t), &rc);
        if (!p) return polopt__fail(&trainer->err, &trainer->config.hooks, rc, "%s: cannot allocate the order", fn);
        trainer->order = (uint32_t *)p;
        trainer->order_n = data->n;
    }
    for (i = 0; i < data->n; ++i) trainer->order[i] = (uint32_t)i;
    polopt_rng_shuffle(&trainer->rng, data->n, trainer->order);
    memset(&st, 0, sizeof st);
    memset(&pr, 0, sizeof pr);
    pr.epoch = trainer->epoch;
    pr.steps_per_epoch = (data->n + B - 1) / B;
    for (i = 0; i < data->n && rc == POLOPT_OK; i += B) {
        const size_t nb = data->n - i < B ? data->n - i : B;
        const double ess_before = st.ess;
        const size_t weighed_before = st.weighed;
        if ((rc = polopt__step(trainer, data, trainer->order + i, nb, &st)) != POLOPT_OK) break;
        done += nb;
        if (trainer->config.progress) {
            pr.step = st.steps;
            pr.reward = st.reward / (double)done;
            pr.ess = st.weighed > weighed_before ? (st.ess - ess_before) / (double)(st.weighed - weighed_before) : 0.0;
            pr.epsilon = trainer->est.epsilon;
            pr.seconds = polopt__seconds() - t0;
            pr.wall_seconds = polopt__wall_seconds() - w0;
            trainer->config.progress(trainer->config.progress_user, &pr);
        }
    }
    polopt__stats_finish(&st, done, st.steps);
    st.seconds = polopt__seconds() - t0;
    st.wall_seconds = polopt__wall_seconds() - w0;
    if (out_stats) *out_stats = st;
    if (rc != POLOPT_OK) return rc;
    trainer->epoch += 1;
    polopt__clear_error(&trainer->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_trainer_embedding_gradient(polopt_trainer *trainer, const polopt_dataset *data, size_t n,
                                                           const uint32_t *contexts, const float *H, float *out_G,
                                                           polopt_train_stats *out_stats)
{
    static const char *fn = "polopt_trainer_embedding_gradient";
    polopt_train_stats st;
    const double t0 = polopt__seconds();
    const double w0 = polopt__wall_seconds();
    size_t c0, L, B, batches = 0;
    polopt_result rc = POLOPT_OK;
    if (!trainer) return POLOPT_ERR_INVALID_ARG;
    if (!trainer->policy) return polopt__not_ready(&trainer->err, &trainer->config.hooks, fn, "trainer");
    if ((rc = polopt__check_dataset(trainer, data, fn)) != POLOPT_OK) return rc;
    if (n && (!contexts || !H || !out_G))
        return polopt__fail(&trainer->err, &trainer->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: contexts, H or out_G is NULL", fn);
    L = trainer->index->dim, B = trainer->config.estimator.batch;
    memset(&st, 0, sizeof st);
    for (c0 = 0; c0 < n && rc == POLOPT_OK; c0 += B, ++batches) {
        const size_t nb = n - c0 < B ? n - c0 : B;
        size_t c;
        for (c = 0; c < nb; ++c)
            if (contexts[c0 + c] >= data->n)
                return polopt__fail(&trainer->err, &trainer->config.hooks, POLOPT_ERR_INVALID_ARG,
                                    "%s: context %u is not below n = %lu", fn, contexts[c0 + c], (unsigned long)data->n);
        polopt__gather(trainer, data, contexts + c0, nb);
        rc = polopt__batch_gradient(trainer, data, contexts + c0, nb, H + c0 * L, out_G + c0 * L, &st);
    }
    polopt__stats_finish(&st, n, batches);
    st.seconds = polopt__seconds() - t0;
    st.wall_seconds = polopt__wall_seconds() - w0;
    if (out_stats) *out_stats = st;
    return rc;
}

/* An EXACT estimator for one context at a time and a buffer of P rewards: the O(P) computations outside training. */
static polopt_result polopt__exact_init(polopt_estimator *est, float **rewards, float **g, const polopt_mips *index,
                                        float temperature, const polopt_hooks *hooks)
{
    polopt_estimator_config ec = polopt_estimator_config_default();
    polopt_result rc;
    ec.method = POLOPT_METHOD_EXACT;
    ec.batch = 1;
    ec.temperature = temperature;
    ec.hooks = *hooks;
    *rewards = *g = NULL;
    if ((rc = polopt_estimator_init(est, index, &ec)) != POLOPT_OK) return rc;
    *rewards = (float *)polopt__alloc(hooks, index->n + index->dim, sizeof(float), &rc);
    *g = *rewards ? *rewards + index->n : NULL;
    return rc;
}

POLOPT_DEF polopt_result polopt_trainer_gradient_fidelity(polopt_trainer *trainer, const polopt_dataset *data, size_t n,
                                                          const uint32_t *contexts, double *out_cosine,
                                                          double *out_rel_error)
{
    static const char *fn = "polopt_trainer_gradient_fidelity";
    const polopt_hooks *hk;
    polopt_estimator exact;
    polopt_train_stats st;
    double cos_sum = 0.0, err2 = 0.0, exact2 = 0.0, value;
    float *h = NULL, *g = NULL, *rewards = NULL, *g_exact = NULL;
    size_t i, j, L, cos_n = 0;
    polopt_result rc;
    if (!trainer) return POLOPT_ERR_INVALID_ARG;
    hk = &trainer->config.hooks;
    if (!trainer->policy) return polopt__not_ready(&trainer->err, hk, fn, "trainer");
    if (!out_cosine || !out_rel_error) return polopt__fail(&trainer->err, hk, POLOPT_ERR_INVALID_ARG, "%s: an output is NULL", fn);
    if ((rc = polopt__check_dataset(trainer, data, fn)) != POLOPT_OK) return rc;
    if (data->returns)
        return polopt__fail(&trainer->err, hk, POLOPT_ERR_INVALID_ARG, "%s: needs a reward (the exact gradient of "
                            "logged returns is not defined here)", fn);
    if (n == 0 || !contexts) return polopt__fail(&trainer->err, hk, POLOPT_ERR_INVALID_ARG, "%s: no contexts given", fn);
    L = trainer->index->dim;
    rc = polopt__exact_init(&exact, &rewards, &g_exact, trainer->index, trainer->policy->temperature, hk);
    if (rc == POLOPT_OK) h = (float *)polopt__alloc(hk, 2 * L, sizeof(float), &rc);
    g = h ? h + L : NULL;
    for (i = 0; i < n && rc == POLOPT_OK; ++i) {
        double dot = 0.0, ne = 0.0, nm = 0.0, nd = 0.0;
        if (contexts[i] >= data->n) {
            rc = polopt__fail(&trainer->err, hk, POLOPT_ERR_INVALID_ARG, "%s: context %u is not below n", fn, contexts[i]);
            break;
        }
        rc = polopt_policy_embed(trainer->policy, 1, data->X + (size_t)contexts[i] * data->ldx, data->ldx, h);
        if (rc == POLOPT_OK) { /* the trainer's own estimate (it advances the trainer's generator) */
            memset(&st, 0, sizeof st);
            polopt__gather(trainer, data, contexts + i, 1);
            rc = polopt__batch_gradient(trainer, data, contexts + i, 1, h, g, &st);
        }
        if (rc == POLOPT_OK) rc = polopt_estimator_set(&exact, 1, h, NULL);
        if (rc == POLOPT_OK)
            rc = polopt__reward_objective(&exact, data, 0, contexts[i], rewards, trainer->gl, g_exact, &value, NULL,
                                          &trainer->err, hk);
        if (rc != POLOPT_OK) break;
        for (j = 0; j < L; ++j) {
            dot += (double)g[j] * g_exact[j];
            nm += (double)g[j] * g[j];
            ne += (double)g_exact[j] * g_exact[j];
            nd += ((double)g[j] - g_exact[j]) * ((double)g[j] - g_exact[j]);
        }
        if (nm > 0.0 && ne > 0.0) cos_sum += dot / sqrt(nm * ne), ++cos_n;
        err2 += nd, exact2 += ne;
    }
    polopt_estimator_free(&exact);
    polopt__dealloc(hk, rewards);
    polopt__dealloc(hk, h);
    if (rc != POLOPT_OK) return rc;
    if (!(exact2 > 0.0))
        return polopt__fail(&trainer->err, hk, POLOPT_ERR_DOMAIN, "%s: the exact gradient is zero in all %lu contexts: "
                            "no relative error", fn, (unsigned long)n);
    *out_cosine = cos_n ? cos_sum / (double)cos_n : 0.0;
    *out_rel_error = sqrt(err2 / exact2);
    return POLOPT_OK;
}

/* DCG gains 1 / log2(rank + 1), ranks from 1. */
static double polopt__gain(size_t rank)
{
    return 1.0 / (log((double)rank + 1.0) / log(2.0));
}

/* The standard error of a mean of n values, from their sum and sum of squares: sd / sqrt(n), sd with n - 1. */
static double polopt__mean_se(size_t n, double sum, double sum2)
{
    const double mean = sum / (double)n;
    return n > 1 ? sqrt(fmax(0.0, sum2 - (double)n * mean * mean) / ((double)(n - 1) * (double)n)) : 0.0;
}

POLOPT_DEF polopt_result polopt_evaluate(const polopt_policy *policy, const polopt_mips *index,
                                         polopt_mips_scratch *scratch, const polopt_dataset *data, size_t k, size_t ef,
                                         polopt_eval *out)
{
    return polopt_evaluate_excluding(policy, index, scratch, data, NULL, k, ef, out);
}

POLOPT_DEF polopt_result polopt_evaluate_excluding(const polopt_policy *policy, const polopt_mips *index,
                                                   polopt_mips_scratch *scratch, const polopt_dataset *data,
                                                   const polopt_sets *exclude, size_t k, size_t ef, polopt_eval *out)
{
    const char *fn = exclude ? "polopt_evaluate_excluding" : "polopt_evaluate";
    polopt_result rc = POLOPT_OK;
    uint32_t *ids;
    double reward = 0.0, hits = 0.0, ndcg = 0.0, reward2 = 0.0, ndcg2 = 0.0;
    size_t i, r, most = 0, empty = 0;
    float r0 = 0.0f;
    if (!policy || !policy->theta || !index || !scratch || !out) return POLOPT_ERR_INVALID_ARG;
    if (!data || !data->X || !data->reward || data->n == 0 || data->ldx < policy->D || k < 1 || k > index->n ||
        (data->relevant && data->relevant->n < data->n) || (exclude && exclude->n < data->n))
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: bad dataset (n, X, ldx, reward, relevant or excluded sets) or k = %lu", fn,
                            (unsigned long)k);
    for (i = 0; exclude && i < data->n; ++i) {
        const size_t len = exclude->offsets[i + 1] - exclude->offsets[i];
        most = len > most ? len : most;
    }
    if (most && (k + most > index->n || k + most > scratch->max_ef))
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG, "%s: k = %lu plus the largest excluded set "
                            "(%lu) exceeds the catalogue (%lu) or the scratch's max_ef (%lu)", fn, (unsigned long)k,
                            (unsigned long)most, (unsigned long)index->n, (unsigned long)scratch->max_ef);
    ids = (uint32_t *)polopt__alloc(&policy->hooks, k + most, sizeof(uint32_t), &rc);
    if (!ids) return rc;
    for (i = 0; i < data->n && rc == POLOPT_OK; ++i) {
        const float *x = data->X + i * data->ldx;
        if (exclude)
            rc = polopt_policy_topk_excluding(policy, index, scratch, x,
                                              exclude->offsets[i + 1] - exclude->offsets[i],
                                              exclude->items + exclude->offsets[i], k, ef, ids, NULL);
        else
            rc = polopt_policy_topk(policy, index, scratch, x, k, ef, ids, NULL);
        if (rc == POLOPT_OK && ids[0] != POLOPT_NO_ITEM) rc = data->reward(data->reward_user, (uint32_t)i, 1, ids, &r0);
        if (rc != POLOPT_OK) break;
        if (!(r0 >= -FLT_MAX && r0 <= FLT_MAX)) {
            rc = polopt__fail(NULL, &policy->hooks, POLOPT_ERR_NONFINITE, "%s: the reward of context %lu is not finite",
                              fn, (unsigned long)i);
            break;
        }
        if (ids[0] == POLOPT_NO_ITEM) r0 = 0.0f, empty += 1;
        reward += r0;
        reward2 += (double)r0 * r0;
        if (data->relevant) {
            const uint32_t *row = data->relevant->items + data->relevant->offsets[i];
            const size_t len = data->relevant->offsets[i + 1] - data->relevant->offsets[i];
            double dcg = 0.0, ideal = 0.0;
            int hit = 0;
            for (r = 0; r < k; ++r)
                if (ids[r] != POLOPT_NO_ITEM && polopt__sorted_contains(row, len, ids[r])) {
                    hit = 1;
                    dcg += polopt__gain(r + 1);
                }
            for (r = 0; r < k && r < len; ++r) ideal += polopt__gain(r + 1);
            hits += hit;
            dcg = ideal > 0.0 ? dcg / ideal : 0.0;
            ndcg += dcg;
            ndcg2 += dcg * dcg;
        }
    }
    polopt__dealloc(&policy->hooks, ids);
    if (rc != POLOPT_OK) return rc;
    out->reward = reward / (double)data->n;
    out->hit_rate = data->relevant ? hits / (double)data->n : 0.0;
    out->ndcg = data->relevant ? ndcg / (double)data->n : 0.0;
    out->k = k;
    out->reward_se = polopt__mean_se(data->n, reward, reward2);
    out->hit_rate_se = data->relevant ? polopt__mean_se(data->n, hits, hits) : 0.0; /* hits are 0 or 1 */
    out->ndcg_se = data->relevant ? polopt__mean_se(data->n, ndcg, ndcg2) : 0.0;
    out->empty = empty;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_policy_value(const polopt_policy *policy, const polopt_mips *index,
                                             const polopt_dataset *data, double *out_value)
{
    static const char *fn = "polopt_policy_value";
    polopt_estimator exact;
    polopt_result rc;
    float *h = NULL, *rewards = NULL, *g = NULL;
    double total = 0.0, value = 0.0;
    size_t i;
    if (!policy || !policy->theta || !index || !out_value) return POLOPT_ERR_INVALID_ARG;
    if (!data || !data->X || (!data->reward && !data->feedback) || data->returns || data->n == 0 ||
        data->ldx < policy->D || index->dim != policy->L)
        return polopt__fail(NULL, &policy->hooks, POLOPT_ERR_INVALID_ARG, "%s: bad dataset (it needs a reward) or index", fn);
    rc = polopt__exact_init(&exact, &rewards, &g, index, policy->temperature, &policy->hooks);
    if (rc == POLOPT_OK) h = (float *)polopt__alloc(&policy->hooks, policy->L, sizeof(float), &rc);
    for (i = 0; i < data->n && rc == POLOPT_OK; ++i) {
        rc = polopt_policy_embed(policy, 1, data->X + i * data->ldx, data->ldx, h);
        if (rc == POLOPT_OK) rc = polopt_estimator_set(&exact, 1, h, NULL);
        if (rc == POLOPT_OK) /* h is free again: it holds the feedback term's gradient */
            rc = polopt__reward_objective(&exact, data, 0, (uint32_t)i, rewards, h, g, &value, NULL, NULL, &policy->hooks);
        total += value;
    }
    polopt_estimator_free(&exact);
    polopt__dealloc(&policy->hooks, rewards);
    polopt__dealloc(&policy->hooks, h);
    if (rc != POLOPT_OK) return rc;
    *out_value = total / (double)data->n;
    return POLOPT_OK;
}

/* >>lpi --------------------------------------------------------------------------------------------------- */

/* Check n rewards that a callback returned for context ctx. */
static polopt_result polopt__callback_rewards(polopt_reward_fn reward, void *user, uint32_t ctx, size_t n,
                                              const uint32_t *items, float *out, const polopt_hooks *hooks,
                                              const char *fn)
{
    size_t bad = 0;
    polopt_result rc = reward(user, ctx, n, items, out);
    if (rc != POLOPT_OK)
        return polopt__fail(NULL, hooks, rc, "%s: the reward function failed for context %u: %s", fn, ctx,
                            polopt_strerror(rc));
    if (polopt_check_finite(n, out, &bad) != POLOPT_OK)
        return polopt__fail(NULL, hooks, POLOPT_ERR_NONFINITE, "%s: the reward of context %u, item %u is %g", fn, ctx,
                            items[bad], (double)out[bad]);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_lpi_advantages(polopt_estimator *mu, size_t n, const float *H_mu,
                                               const uint32_t *contexts, const uint32_t *actions,
                                               polopt_reward_fn reward, void *reward_user,
                                               polopt_lpi_baseline baseline, float *out_advantage)
{
    static const char *fn = "polopt_lpi_advantages";
    const polopt_hooks *hk;
    polopt_result rc = POLOPT_OK;
    float *rewards;
    size_t i0, i, L, P;
    if (!mu) return POLOPT_ERR_INVALID_ARG;
    hk = &mu->config.hooks;
    if (!mu->H) return polopt__not_ready(NULL, hk, fn, "estimator");
    POLOPT__CHECK(NULL, hk, !n || (H_mu && actions && reward && out_advantage), "%s: an argument is NULL", fn);
    POLOPT__CHECK(NULL, hk, baseline == POLOPT_LPI_MEAN || baseline == POLOPT_LPI_MAX, "%s: baseline = %d is unknown",
                  fn, (int)baseline);
    POLOPT__CHECK(NULL, hk, baseline == POLOPT_LPI_MEAN || mu->config.method == POLOPT_METHOD_EXACT,
                  "%s: the MAX baseline needs an EXACT estimator (the maximum over all P items)", fn);
    L = mu->index->dim, P = mu->index->n;
    for (i = 0; i < n; ++i)
        if (actions[i] >= P)
            return polopt__fail(NULL, hk, POLOPT_ERR_INVALID_ARG, "%s: actions[%lu] = %u is not below P = %lu", fn,
                                (unsigned long)i, actions[i], (unsigned long)P);
    if (!n) return POLOPT_OK;
    rewards = (float *)polopt__alloc(hk, mu->S, sizeof(float), &rc); /* the rewards of one context's draws */
    if (!rewards) return polopt__fail(NULL, hk, rc, "%s: cannot allocate %lu rewards", fn, (unsigned long)mu->S);
    for (i0 = 0; i0 < n && rc == POLOPT_OK; i0 += mu->config.batch) {
        const size_t m = n - i0 < mu->config.batch ? n - i0 : mu->config.batch;
        size_t c;
        if ((rc = polopt_estimator_set(mu, m, H_mu + i0 * L, NULL)) != POLOPT_OK) break;
        for (c = 0; c < m && rc == POLOPT_OK; ++c) {
            const uint32_t ctx = contexts ? contexts[i0 + c] : (uint32_t)(i0 + c);
            polopt_draws dr;
            double g = 0.0, a;
            float r_a;
            size_t s;
            if ((rc = polopt_estimator_draws(mu, c, &dr)) != POLOPT_OK) break;
            rc = polopt__callback_rewards(reward, reward_user, ctx, dr.S, dr.ids, rewards, hk, fn);
            if (rc == POLOPT_OK)
                rc = polopt__callback_rewards(reward, reward_user, ctx, 1, actions + i0 + c, &r_a, hk, fn);
            if (rc != POLOPT_OK) break;
            if (baseline == POLOPT_LPI_MEAN) {
                for (s = 0; s < dr.S; ++s) g += (double)dr.weights[s] * rewards[s];
            } else {
                for (g = rewards[0], s = 1; s < dr.S; ++s) g = rewards[s] > g ? rewards[s] : g;
            }
            a = (double)r_a - g;
            if (!(fabs(a) <= FLT_MAX))
                rc = polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: the advantage of entry %lu is %g", fn,
                                  (unsigned long)(i0 + c), a);
            else
                out_advantage[i0 + c] = (float)a;
        }
    }
    polopt__dealloc(hk, rewards);
    return rc;
}

POLOPT_DEF polopt_result polopt_lpi_weights(size_t n, const float *advantage, float beta_kl, float *out_w,
                                            const polopt_hooks *hooks)
{
    static const char *fn = "polopt_lpi_weights";
    size_t i;
    POLOPT__CHECK(NULL, hooks, !n || (advantage && out_w), "%s: an array is NULL", fn);
    if (!(beta_kl > 0.0f && beta_kl <= FLT_MAX))
        return polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN, "%s: beta_kl = %g must be positive and finite", fn,
                            (double)beta_kl);
    for (i = 0; i < n; ++i) { /* checked first, so that an error leaves out_w (which may be advantage) untouched */
        const double z = (double)advantage[i] / beta_kl;
        if (!(fabs((double)advantage[i]) <= FLT_MAX))
            return polopt__fail(NULL, hooks, POLOPT_ERR_NONFINITE, "%s: advantage[%lu] = %g is not finite", fn,
                                (unsigned long)i, (double)advantage[i]);
        if (z > 88.0) /* exp(88.7) = FLT_MAX */
            return polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN,
                                "%s: the weight of entry %lu, exp(%g / %g), overflows single precision: shift the "
                                "advantages by their maximum (POLOPT_LPI_MAX) or raise beta_kl", fn, (unsigned long)i,
                                (double)advantage[i], (double)beta_kl);
    }
    for (i = 0; i < n; ++i) out_w[i] = (float)exp((double)advantage[i] / beta_kl);
    return POLOPT_OK;
}

/* log(2 p / (p + q)) from log p and log q, without overflow or cancellation. */
static double polopt__log_ratio_to_mix(double lp, double lq)
{
    return lp >= lq ? log(2.0) - log1p(exp(lq - lp)) : log(2.0) + (lp - lq) - log1p(exp(lp - lq));
}

POLOPT_DEF polopt_result polopt_estimator_divergence(const polopt_estimator *p, const polopt_estimator *q, size_t c,
                                                     double *out_kl, double *out_js)
{
    static const char *fn = "polopt_estimator_divergence";
    polopt_draws dp, dq;
    double kl = 0.0, js_p = 0.0, js_q = 0.0;
    size_t s;
    polopt_result rc;
    if (!p || !q) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__estimator_query(p, c, fn)) != POLOPT_OK) return rc;
    if ((rc = polopt__estimator_query(q, c, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(NULL, &p->config.hooks, p->index->n == q->index->n && p->index->dim == q->index->dim,
                  "%s: p has %lu items of dimension %lu, q %lu of %lu: they must share the catalogue", fn,
                  (unsigned long)p->index->n, (unsigned long)p->index->dim, (unsigned long)q->index->n,
                  (unsigned long)q->index->dim);
    polopt_estimator_draws(p, c, &dp);
    polopt_estimator_draws(q, c, &dq);
    for (s = 0; s < dp.S; ++s) { /* E_p[log p - log q] and E_p[log(2p / (p + q))] */
        const uint32_t a = dp.ids[s];
        double lp, lq;
        if (dp.weights[s] == 0.0f) continue;
        lp = polopt__log_pi(p, c, a), lq = polopt__log_pi(q, c, a);
        kl += dp.weights[s] * (lp - lq);
        js_p += dp.weights[s] * polopt__log_ratio_to_mix(lp, lq);
    }
    for (s = 0; s < dq.S && out_js; ++s) { /* E_q[log(2q / (p + q))] */
        const uint32_t a = dq.ids[s];
        if (dq.weights[s] == 0.0f) continue;
        js_q += dq.weights[s] * polopt__log_ratio_to_mix(polopt__log_pi(q, c, a), polopt__log_pi(p, c, a));
    }
    if (out_kl) *out_kl = kl;
    if (out_js) *out_js = 0.5 * (js_p + js_q);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_policy_divergence(const polopt_policy *p, const polopt_policy *q,
                                                  const polopt_mips *index, const polopt_estimator_config *config,
                                                  size_t n, const float *X, size_t ldx, polopt_divergence *out)
{
    static const char *fn = "polopt_policy_divergence";
    polopt_estimator_config ec;
    polopt_estimator ep, eq;
    const polopt_hooks *hk;
    polopt_result rc = POLOPT_OK;
    double sum[2] = {0.0, 0.0}, sum2[2] = {0.0, 0.0};
    float *H = NULL;
    size_t i0, L, B;
    if (!p || !p->theta || !q || !q->theta) return POLOPT_ERR_INVALID_ARG;
    hk = &p->hooks;
    POLOPT__CHECK(NULL, hk, index && index->vectors && X && out && n > 0, "%s: an argument is NULL or n = 0", fn);
    POLOPT__CHECK(NULL, hk, p->D == q->D && p->L == q->L && p->L == index->dim && ldx >= p->D,
                  "%s: p is %lu x %lu, q %lu x %lu, the index has dimension %lu and ldx = %lu: they must agree", fn,
                  (unsigned long)p->D, (unsigned long)p->L, (unsigned long)q->D, (unsigned long)q->L,
                  (unsigned long)index->dim, (unsigned long)ldx);
    if (config) {
        ec = *config;
    } else {
        ec = polopt_estimator_config_default();
        ec.method = POLOPT_METHOD_EXACT;
    }
    ec.hooks = *hk;
    L = p->L, B = ec.batch;
    memset(&ep, 0, sizeof ep);
    memset(&eq, 0, sizeof eq);
    ec.temperature = p->temperature;
    rc = polopt_estimator_init(&ep, index, &ec);
    ec.temperature = q->temperature;
    ec.seed += 1; /* q's draws independent of p's */
    if (rc == POLOPT_OK) rc = polopt_estimator_init(&eq, index, &ec);
    if (rc == POLOPT_OK) H = (float *)polopt__alloc(hk, 2 * B, L * sizeof(float), &rc); /* B, L checked by init */
    for (i0 = 0; i0 < n && rc == POLOPT_OK; i0 += B) {
        const size_t m = n - i0 < B ? n - i0 : B;
        size_t c;
        rc = polopt_policy_embed(p, m, X + i0 * ldx, ldx, H);
        if (rc == POLOPT_OK) rc = polopt_policy_embed(q, m, X + i0 * ldx, ldx, H + B * L);
        if (rc == POLOPT_OK) rc = polopt_estimator_set(&ep, m, H, NULL);
        if (rc == POLOPT_OK) rc = polopt_estimator_set(&eq, m, H + B * L, NULL);
        for (c = 0; c < m && rc == POLOPT_OK; ++c) {
            double d[2] = {0.0, 0.0};
            size_t k;
            rc = polopt_estimator_divergence(&ep, &eq, c, d, d + 1);
            for (k = 0; k < 2; ++k) sum[k] += d[k], sum2[k] += d[k] * d[k];
        }
    }
    polopt__dealloc(hk, H);
    polopt_estimator_free(&ep);
    polopt_estimator_free(&eq);
    if (rc != POLOPT_OK) return rc;
    out->n = n;
    out->kl = sum[0] / (double)n;
    out->js = sum[1] / (double)n;
    out->kl_se = polopt__mean_se(n, sum[0], sum2[0]);
    out->js_se = polopt__mean_se(n, sum[1], sum2[1]);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_action_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                              float *out_rewards)
{
    const polopt_action_task *t = (const polopt_action_task *)user;
    size_t i;
    if (!t || !t->action || !t->reward || context >= t->n || (n && (!items || !out_rewards)))
        return POLOPT_ERR_INVALID_ARG;
    for (i = 0; i < n; ++i) out_rewards[i] = items[i] == t->action[context] ? t->reward[context] : 0.0f;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_linear_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                              float *out_rewards)
{
    const polopt_linear_task *t = (const polopt_linear_task *)user;
    size_t i;
    if (!t || !t->U || !t->items || context >= t->n || (n && (!items || !out_rewards))) return POLOPT_ERR_INVALID_ARG;
    for (i = 0; i < n; ++i) {
        if (items[i] >= t->P) return POLOPT_ERR_INVALID_ARG;
        out_rewards[i] = polopt__dot(t->L, t->U + (size_t)context * t->L, t->items + (size_t)items[i] * t->L) + t->bias;
    }
    return POLOPT_OK;
}

/* >>qhead ------------------------------------------------------------------------------------------------- */

POLOPT_DEF polopt_qhead_config polopt_qhead_config_default(void)
{
    polopt_qhead_config c;
    memset(&c, 0, sizeof c);
    c.gamma = 0.9f;
    c.double_q = 1;
    c.target_every = 100;
    c.ef = 64;
    c.batch = 256;
    c.adam = polopt_adam_config_default(); /* lr 1e-3 */
    c.init = POLOPT_INIT_RANDOM;
    c.init_scale = 0.01f;
    c.seed = 1;
    return c;
}

POLOPT_DEF void polopt_qhead_free(polopt_qhead *q)
{
    polopt_hooks h;
    if (!q) return;
    h = q->config.hooks;
    polopt_policy_free(&q->online);
    polopt_policy_free(&q->target);
    polopt_adam_free(&q->adam);
    polopt_mips_scratch_free(&q->scratch);
    polopt__dealloc(&h, q->block);
    memset(q, 0, sizeof *q);
}

/* The step's buffers (a NULL arena base only counts the bytes). */
static void polopt__qhead_layout(polopt_qhead *q, size_t D, size_t L, size_t B, polopt__arena *a)
{
    q->u = (float *)polopt__carve(a, B * L, sizeof(float));
    q->u_next = (float *)polopt__carve(a, B * L, sizeof(float));
    q->u_choose = (float *)polopt__carve(a, B * L, sizeof(float));
    q->q_next = (float *)polopt__carve(a, B, sizeof(float));
    q->a_next = (uint32_t *)polopt__carve(a, B, sizeof(uint32_t));
    q->grad = (float *)polopt__carve(a, D * L, sizeof(float));
}

static polopt_result polopt__qhead_check_config(polopt_qhead *q, const polopt_qhead_config *c, const char *fn)
{
    polopt_result rc;
    if ((rc = polopt__check_range(&q->err, &c->hooks, fn, "gamma", c->gamma, 0.0, POLOPT__CLOSED, 1.0, POLOPT__OPEN)))
        return rc;
    POLOPT__CHECK(&q->err, &c->hooks, c->double_q == 0 || c->double_q == 1, "%s: config.double_q = %d must be 0 or 1",
                  fn, c->double_q);
    POLOPT__CHECK(&q->err, &c->hooks, c->target_every >= 1, "%s: config.target_every = 0 must be >= 1", fn);
    POLOPT__CHECK(&q->err, &c->hooks, c->ef >= 1 && c->ef <= (1u << 20), "%s: config.ef = %lu must be in [1, 2^20]",
                  fn, (unsigned long)c->ef);
    POLOPT__CHECK(&q->err, &c->hooks, c->batch >= 1 && c->batch <= (1u << 24),
                  "%s: config.batch = %lu must be in [1, 2^24]", fn, (unsigned long)c->batch);
    return POLOPT_OK;
}

static polopt_result polopt__qhead_init_impl(polopt_qhead *q, const polopt_mips *index, size_t D,
                                             const polopt_qhead_config *config)
{
    static const char *fn = "polopt_qhead_init";
    polopt_qhead_config c;
    polopt_policy_config pc;
    polopt__arena a = {NULL, 0, 0};
    polopt_result rc = POLOPT_OK;
    size_t L;
    if (!q) return POLOPT_ERR_INVALID_ARG;
    memset(q, 0, sizeof *q);
    c = config ? *config : polopt_qhead_config_default();
    q->config = c;
    POLOPT__CHECK(&q->err, &c.hooks, index && index->vectors && index->n >= 1, "%s: the index is not initialised", fn);
    if ((rc = polopt__qhead_check_config(q, &c, fn)) != POLOPT_OK) return rc;
    L = index->dim;
    pc = polopt_policy_config_default(D, L); /* checks D, L, init and init_scale with its own messages */
    pc.init = c.init, pc.init_scale = c.init_scale, pc.seed = c.seed, pc.hooks = c.hooks;
    if ((rc = polopt_policy_init(&q->online, &pc)) != POLOPT_OK) {
        q->err = q->online.err;
        return rc;
    }
    if ((rc = polopt_policy_init(&q->target, &pc)) != POLOPT_OK) { /* the same seed: the same theta */
        q->err = q->target.err;
        return rc;
    }
    c.adam.maximize = 0; /* the TD loss is minimised, whatever the caller's config said */
    c.adam.hooks = c.hooks;
    if ((rc = polopt_adam_init(&q->adam, D * L, &c.adam)) != POLOPT_OK) {
        q->err = q->adam.err;
        return rc;
    }
    if ((rc = polopt_mips_scratch_init(&q->scratch, index, c.ef, &c.hooks)) != POLOPT_OK) {
        q->err = q->scratch.err;
        return rc;
    }
    polopt__qhead_layout(q, D, L, c.batch, &a);
    if (!(q->block = polopt__arena_alloc(&c.hooks, &a, &rc)))
        return polopt__fail(&q->err, &c.hooks, rc,
                            "%s: cannot allocate the step buffers (batch = %lu, D = %lu, L = %lu)", fn,
                            (unsigned long)c.batch, (unsigned long)D, (unsigned long)L);
    polopt__arena_begin(&a, q->block);
    polopt__qhead_layout(q, D, L, c.batch, &a);
    q->config = c;
    q->index = index;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_qhead_init(polopt_qhead *q, const polopt_mips *index, size_t D,
                                           const polopt_qhead_config *config)
{
    const polopt_result rc = polopt__qhead_init_impl(q, index, D, config);
    if (rc != POLOPT_OK && q) POLOPT__ZERO_KEEPING_ERROR(q, polopt_qhead_free);
    return rc;
}

/* The checks of a step's transitions, before anything is computed: every message names the entry. */
static polopt_result polopt__qhead_check_batch(polopt_qhead *q, size_t n, const float *X, size_t ldx,
                                               const uint32_t *actions, const float *rewards, const float *X_next,
                                               size_t ldx_next, const unsigned char *done, const char *fn)
{
    const polopt_hooks *hk = &q->config.hooks;
    const size_t D = q->online.D, P = q->index->n;
    size_t i;
    POLOPT__CHECK(&q->err, hk, n >= 1 && n <= q->config.batch, "%s: n = %lu transitions must be in [1, batch = %lu]",
                  fn, (unsigned long)n, (unsigned long)q->config.batch);
    POLOPT__CHECK(&q->err, hk, X && actions && rewards && X_next && done,
                  "%s: X, actions, rewards, X_next or done is NULL", fn);
    POLOPT__CHECK(&q->err, hk, ldx >= D && ldx_next >= D, "%s: ldx = %lu and ldx_next = %lu must be >= D = %lu", fn,
                  (unsigned long)ldx, (unsigned long)ldx_next, (unsigned long)D);
    for (i = 0; i < n; ++i) {
        POLOPT__CHECK(&q->err, hk, actions[i] < P, "%s: actions[%lu] = %u is not below P = %lu", fn, (unsigned long)i,
                      actions[i], (unsigned long)P);
        POLOPT__CHECK(&q->err, hk, done[i] <= 1, "%s: done[%lu] = %u must be 0 or 1", fn, (unsigned long)i,
                      (unsigned)done[i]);
        if (!(fabsf(rewards[i]) <= FLT_MAX))
            return polopt__fail(&q->err, hk, POLOPT_ERR_NONFINITE, "%s: rewards[%lu] = %g is not finite", fn,
                                (unsigned long)i, (double)rewards[i]);
    }
    return POLOPT_OK;
}

/* u = X theta for n rows of X through a head (finiteness checked by polopt_policy_embed); the message says which. */
static polopt_result polopt__qhead_embed(polopt_qhead *q, const polopt_policy *head, size_t n, const float *X,
                                         size_t ldx, float *out, const char *fn, const char *what)
{
    const polopt_result rc = polopt_policy_embed(head, n, X, ldx, out);
    if (rc == POLOPT_OK) return rc;
    return polopt__fail(&q->err, &q->config.hooks, rc, "%s: %s is not finite (a row of the input, or x theta, is)", fn,
                        what);
}

/* The TD targets y_t = r_t + gamma (1 - done_t) Q_target(x_{t+1}, a'_t) into q->q_next, a'_t chosen by MIPS:
   double Q asks the online head for a' (van Hasselt et al. 2016) and dots the target head's u with beta_a'; plain Q
   takes the target head's own maximum (Mnih et al. 2015). */
static polopt_result polopt__qhead_targets(polopt_qhead *q, size_t n, const float *rewards, const float *X_next,
                                           size_t ldx_next, const unsigned char *done, const char *fn)
{
    const size_t L = q->online.L;
    const float *beta = q->index->vectors;
    const float *chooser = q->config.double_q ? q->u_choose : q->u_next;
    polopt_result rc;
    size_t i;
    if ((rc = polopt__qhead_embed(q, &q->target, n, X_next, ldx_next, q->u_next, fn, "u_target(x_next)")) != POLOPT_OK)
        return rc;
    if (q->config.double_q) {
        rc = polopt__qhead_embed(q, &q->online, n, X_next, ldx_next, q->u_choose, fn, "u_online(x_next)");
        if (rc != POLOPT_OK) return rc;
    }
    rc = polopt_mips_search_batch(q->index, &q->scratch, n, chooser, L, 1, q->config.ef, q->a_next, q->q_next);
    if (rc != POLOPT_OK) {
        q->err = q->scratch.err;
        return rc;
    }
    for (i = 0; i < n; ++i) {
        double y = rewards[i];
        if (done[i]) {
            q->q_next[i] = (float)y;
            continue;
        }
        if (q->a_next[i] == POLOPT_NO_ITEM) /* an HNSW graph that reached nothing cannot happen with n >= 1 items */
            return polopt__fail(&q->err, &q->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: the MIPS found no item", fn);
        if (q->config.double_q) q->q_next[i] = polopt__dot(L, q->u_next + i * L, beta + (size_t)q->a_next[i] * L);
        y += (double)q->config.gamma * q->q_next[i];
        if (!(fabs(y) <= FLT_MAX))
            return polopt__fail(&q->err, &q->config.hooks, POLOPT_ERR_NONFINITE,
                                "%s: the TD target of transition %lu is %g; nothing updated", fn, (unsigned long)i, y);
        q->q_next[i] = (float)y;
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_qhead_td_step(polopt_qhead *q, size_t n, const float *X, size_t ldx,
                                              const uint32_t *actions, const float *rewards, const float *X_next,
                                              size_t ldx_next, const unsigned char *done, double *out_loss)
{
    static const char *fn = "polopt_qhead_td_step";
    size_t i, D, L, bad = 0;
    double loss = 0.0;
    polopt_result rc;
    if (!q) return POLOPT_ERR_INVALID_ARG;
    if (!q->block) return polopt__not_ready(&q->err, &q->config.hooks, fn, "Q head");
    if ((rc = polopt__qhead_check_batch(q, n, X, ldx, actions, rewards, X_next, ldx_next, done, fn)) != POLOPT_OK)
        return rc;
    D = q->online.D, L = q->online.L;
    if ((rc = polopt__qhead_targets(q, n, rewards, X_next, ldx_next, done, fn)) != POLOPT_OK) return rc;
    if ((rc = polopt__qhead_embed(q, &q->online, n, X, ldx, q->u, fn, "u_online(x)")) != POLOPT_OK) return rc;
    for (i = 0; i < n; ++i) { /* delta_t = Q(x_t, a_t) - y_t, then the row G_t = delta_t beta_{a_t} in place of u_t */
        const float *b = q->index->vectors + (size_t)actions[i] * L;
        const double delta = (double)polopt__dot(L, q->u + i * L, b) - q->q_next[i];
        size_t j;
        loss += delta * delta;
        for (j = 0; j < L; ++j) q->u[i * L + j] = (float)(delta * b[j]);
    }
    /* grad = X^T G / n: the gradient of (1/2n) sum delta^2 with respect to theta (D x L), one gemm */
    polopt__gemm(POLOPT_TRANS, POLOPT_NO_TRANS, D, L, n, 1.0f / (float)n, X, ldx, q->u, L, 0.0f, q->grad, L);
    if (polopt_check_finite(D * L, q->grad, &bad) != POLOPT_OK || !(loss <= DBL_MAX))
        return polopt__fail(&q->err, &q->config.hooks, POLOPT_ERR_NONFINITE,
                            "%s: the gradient is not finite (entry %lu); nothing updated", fn, (unsigned long)bad);
    if ((rc = polopt_adam_step(&q->adam, q->online.theta, q->grad)) != POLOPT_OK) {
        q->err = q->adam.err;
        return rc;
    }
    q->steps += 1;
    if (q->steps % q->config.target_every == 0) memcpy(q->target.theta, q->online.theta, D * L * sizeof(float));
    if (out_loss) *out_loss = loss / (double)n;
    polopt__clear_error(&q->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_qhead_values(polopt_qhead *q, size_t n, const float *X, size_t ldx,
                                             const uint32_t *actions, float *out_q)
{
    static const char *fn = "polopt_qhead_values";
    size_t i0, i, L, B;
    polopt_result rc;
    if (!q) return POLOPT_ERR_INVALID_ARG;
    if (!q->block) return polopt__not_ready(&q->err, &q->config.hooks, fn, "Q head");
    if (n == 0) return POLOPT_OK;
    POLOPT__CHECK(&q->err, &q->config.hooks, X && actions && out_q, "%s: X, actions or out_q is NULL", fn);
    POLOPT__CHECK(&q->err, &q->config.hooks, ldx >= q->online.D, "%s: ldx = %lu must be >= D = %lu", fn,
                  (unsigned long)ldx, (unsigned long)q->online.D);
    for (i = 0; i < n; ++i)
        POLOPT__CHECK(&q->err, &q->config.hooks, actions[i] < q->index->n, "%s: actions[%lu] = %u is not below P = %lu",
                      fn, (unsigned long)i, actions[i], (unsigned long)q->index->n);
    L = q->online.L, B = q->config.batch;
    for (i0 = 0; i0 < n; i0 += B) {
        const size_t m = n - i0 < B ? n - i0 : B;
        if ((rc = polopt__qhead_embed(q, &q->online, m, X + i0 * ldx, ldx, q->u, fn, "u_online(x)")) != POLOPT_OK)
            return rc;
        for (i = 0; i < m; ++i) {
            out_q[i0 + i] = polopt__dot(L, q->u + i * L, q->index->vectors + (size_t)actions[i0 + i] * L);
            if (!(fabsf(out_q[i0 + i]) <= FLT_MAX))
                return polopt__fail(&q->err, &q->config.hooks, POLOPT_ERR_NONFINITE,
                                    "%s: Q(x_%lu, a) = u^T beta_a overflows float", fn, (unsigned long)(i0 + i));
        }
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_qhead_update_target(polopt_qhead *q)
{
    if (!q) return POLOPT_ERR_INVALID_ARG;
    if (!q->block) return polopt__not_ready(&q->err, &q->config.hooks, "polopt_qhead_update_target", "Q head");
    memcpy(q->target.theta, q->online.theta, q->online.D * q->online.L * sizeof(float));
    return POLOPT_OK;
}

/* >>logged ------------------------------------------------------------------------------------------------ */

#define POLOPT__MAX_LINE ((size_t)1 << 26) /* 64 MiB: a longer line is taken for a broken file */
enum { POLOPT__COL_ACTION, POLOPT__COL_PROPENSITY, POLOPT__COL_REWARD, POLOPT__COL_POSITION, POLOPT__COL_FEATURES };

POLOPT_DEF polopt_csv_config polopt_csv_config_default(void)
{
    polopt_csv_config c;
    memset(&c, 0, sizeof c);
    c.max_levels = 32;
    return c;
}

POLOPT_DEF void polopt_logged_free(polopt_logged *data)
{
    if (!data) return;
    polopt__dealloc(&data->hooks, data->X);
    polopt__dealloc(&data->hooks, data->action);
    polopt__dealloc(&data->hooks, data->position);
    polopt__dealloc(&data->hooks, data->propensity);
    polopt__dealloc(&data->hooks, data->reward);
    memset(data, 0, sizeof *data);
}

POLOPT_DEF void polopt_csv_close(polopt_csv_reader *reader)
{
    polopt_hooks h;
    if (!reader) return;
    h = reader->config.hooks;
    if (reader->file) fclose((FILE *)reader->file);
    polopt__dealloc(&h, reader->line);
    polopt__dealloc(&h, reader->block);
    polopt__dealloc(&h, reader->columns);
    polopt__dealloc(&h, reader->field_at);
    polopt__dealloc(&h, reader->levels);
    polopt__dealloc(&h, reader->n_levels);
    memset(reader, 0, sizeof *reader);
}

/* The next line of the file into r->line, without its line break; *eof at the end.  Lines of any length.  The file
   is read in blocks and the line cut out of them with memchr; a NUL byte (a binary or UTF-16 file) is an error. */
#define POLOPT__CSV_BLOCK 65536
static polopt_result polopt__csv_getline(polopt_csv_reader *r, int *eof, const char *fn)
{
    size_t len = 0;
    *eof = 0;
    for (;;) {
        const char *start, *nl;
        size_t take;
        if (r->block_at == r->block_len) { /* the block is used up: read the next one */
            r->block_at = 0;
            r->block_len = fread(r->block, 1, POLOPT__CSV_BLOCK, (FILE *)r->file);
            if (r->block_len == 0) {
                if (ferror((FILE *)r->file))
                    return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_IO, "%s: %s: read error", fn, r->path);
                if (len == 0) {
                    *eof = 1;
                    return POLOPT_OK;
                }
                break; /* a last line without a line break */
            }
        }
        start = r->block + r->block_at;
        nl = (const char *)memchr(start, '\n', r->block_len - r->block_at);
        take = nl ? (size_t)(nl - start) : r->block_len - r->block_at;
        if (len + take + 1 > r->line_cap) {
            size_t cap = r->line_cap ? r->line_cap : 4096;
            polopt_result grow_rc = POLOPT_OK;
            void *p;
            while (cap < len + take + 1) cap *= 2;
            if (cap > POLOPT__MAX_LINE)
                return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu: longer than 64 MiB",
                                    fn, r->path, (unsigned long)(r->line_no + 1));
            p = polopt__realloc_array(&r->config.hooks, r->line, cap, 1, &grow_rc);
            if (!p) return polopt__fail(&r->err, &r->config.hooks, grow_rc, "%s: no memory for a line of %lu bytes", fn,
                                        (unsigned long)cap);
            r->line = (char *)p;
            r->line_cap = cap;
        }
        if (memchr(start, '\0', take))
            return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT,
                                "%s: %s, line %lu holds a NUL byte: not a text CSV file (UTF-16?)", fn, r->path,
                                (unsigned long)(r->line_no + 1));
        memcpy(r->line + len, start, take);
        len += take;
        r->block_at += take + (nl != NULL);
        if (nl) break;
    }
    while (len && r->line[len - 1] == '\r') --len;
    r->line[len] = '\0';
    r->line_no += 1;
    return POLOPT_OK;
}

/* Split the line in place into fields at each delim (',' or '\t'), NUL-terminated, quotes removed; the first
   max_fields starts go to at.  Returns the number of fields, or -1 for an unterminated quote. */
static long polopt__csv_split(char *line, size_t *at, size_t max_fields, char delim)
{
    char *in = line, *out = line;
    long count = 0;
    for (;;) {
        if ((size_t)count < max_fields) at[count] = (size_t)(out - line);
        ++count;
        if (*in == '"') { /* a quoted field: "" is a quote, a lone quote ends it */
            ++in;
            for (;;) {
                if (*in == '\0') return -1;
                if (*in == '"' && in[1] == '"') *out++ = '"', in += 2;
                else if (*in == '"') {
                    ++in;
                    break;
                } else *out++ = *in++;
            }
            while (*in && *in != delim) *out++ = *in++; /* text after the closing quote is kept as is */
        } else {
            while (*in && *in != delim) *out++ = *in++;
        }
        if (*in == '\0') {
            *out = '\0';
            return count;
        }
        *out++ = '\0'; /* the delimiter ends the field */
        ++in;
    }
}

/* Open a delimited text file and read its header line, split into its names (r->line, r->field_at, r->n_columns):
   the start of every reader of such files.  r is zeroed but for config.hooks and path. */
static polopt_result polopt__text_open(polopt_csv_reader *r, const char *path, char delim, const char *fn)
{
    polopt_result rc = POLOPT_OK;
    const char *p;
    size_t delims = 0;
    long fields;
    int eof;
    r->block = (char *)polopt__alloc(&r->config.hooks, POLOPT__CSV_BLOCK, 1, &rc);
    if (!r->block) return polopt__fail(&r->err, &r->config.hooks, rc, "%s: cannot allocate the read buffer", fn);
    if (polopt__is_directory(path) || !(r->file = fopen(path, "rb")))
        return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_IO, "%s: cannot open %s%s", fn, path,
                            polopt__is_directory(path) ? " (it is a directory)" : "");
    if ((rc = polopt__csv_getline(r, &eof, fn)) != POLOPT_OK) return rc;
    if (eof) return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT, "%s: %s is empty: no header line", fn, path);
    if ((unsigned char)r->line[0] == 0xef && (unsigned char)r->line[1] == 0xbb && (unsigned char)r->line[2] == 0xbf)
        memmove(r->line, r->line + 3, strlen(r->line + 3) + 1); /* a UTF-8 byte order mark (spreadsheet exports) */
    for (p = r->line; *p; ++p) delims += *p == delim; /* room for the header's fields: one more than its delimiters */
    r->n_columns = delims + 1;
    r->field_at = (size_t *)polopt__alloc(&r->config.hooks, r->n_columns + 1, sizeof(size_t), &rc);
    if (!r->field_at) return polopt__fail(&r->err, &r->config.hooks, rc, "%s: cannot allocate the reader's tables", fn);
    fields = polopt__csv_split(r->line, r->field_at, r->n_columns, delim);
    if (fields < 0)
        return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT, "%s: %s, line 1: unterminated quote", fn, path);
    r->n_columns = (size_t)fields;
    return POLOPT_OK;
}

/* The column of the header named name (exactly one of them) into *out_col. */
static polopt_result polopt__text_column(polopt_csv_reader *r, const char *name, long *out_col, const char *fn)
{
    size_t c;
    *out_col = -1;
    for (c = 0; c < r->n_columns; ++c)
        if (strcmp(r->line + r->field_at[c], name) == 0) {
            if (*out_col >= 0)
                return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT,
                                    "%s: %s has two columns named '%s' (%ld and %lu)", fn, r->path, name, *out_col + 1,
                                    (unsigned long)c + 1);
            *out_col = (long)c;
        }
    if (*out_col < 0)
        return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT, "%s: %s has no column named '%s'", fn, r->path,
                            name);
    return POLOPT_OK;
}

static polopt_result polopt__csv_open_impl(polopt_csv_reader *r, const char *path, const polopt_csv_config *config)
{
    static const char *fn = "polopt_csv_open";
    const char *names[POLOPT__COL_FEATURES];
    polopt_result rc = POLOPT_OK;
    size_t k, n_wanted;
    if (!r) return POLOPT_ERR_INVALID_ARG;
    memset(r, 0, sizeof *r);
    if (!config) return polopt__fail(&r->err, NULL, POLOPT_ERR_INVALID_ARG, "%s: config is NULL", fn);
    r->config = *config;
    r->path = path ? path : "(null)";
    if (!path || !config->action || !config->propensity || !config->reward ||
        (config->n_numeric && !config->numeric) || (config->n_categorical && !config->categorical))
        return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: path and the action, propensity and reward column names are required", fn);
    if (config->n_categorical && (config->max_levels < 1 || config->max_levels > 4096))
        return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: config.max_levels = %lu must be in [1, 4096]", fn, (unsigned long)config->max_levels);
    if ((rc = polopt__text_open(r, path, ',', fn)) != POLOPT_OK) return rc;
    n_wanted = POLOPT__COL_FEATURES + config->n_numeric + config->n_categorical;
    r->columns = (long *)polopt__alloc(&r->config.hooks, n_wanted, sizeof(long), &rc);
    if (r->columns && config->n_categorical) {
        r->levels = (char *)polopt__alloc(&r->config.hooks, config->n_categorical * config->max_levels,
                                          POLOPT_CSV_LEVEL_BYTES, &rc);
        if (r->levels) r->n_levels = (size_t *)polopt__alloc(&r->config.hooks, config->n_categorical, sizeof(size_t), &rc);
        if (r->n_levels) memset(r->n_levels, 0, config->n_categorical * sizeof(size_t));
    }
    if (rc != POLOPT_OK) {
        rc = polopt__fail(&r->err, &r->config.hooks, rc, "%s: cannot allocate the reader's tables (%s)", fn,
                          polopt_strerror(rc));
        return rc;
    }
    /* every wanted column looked up by name */
    names[POLOPT__COL_ACTION] = config->action, names[POLOPT__COL_PROPENSITY] = config->propensity;
    names[POLOPT__COL_REWARD] = config->reward, names[POLOPT__COL_POSITION] = config->position;
    for (k = 0; k < n_wanted; ++k) {
        const char *name = k < POLOPT__COL_FEATURES ? names[k]
                           : k < POLOPT__COL_FEATURES + config->n_numeric ? config->numeric[k - POLOPT__COL_FEATURES]
                                                                           : config->categorical[k - POLOPT__COL_FEATURES - config->n_numeric];
        r->columns[k] = -1;
        if (!name && k == POLOPT__COL_POSITION) continue; /* no slates */
        if (!name) {
            rc = polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: config.%s[%lu] is NULL", fn,
                              k < POLOPT__COL_FEATURES + config->n_numeric ? "numeric" : "categorical",
                              (unsigned long)(k < POLOPT__COL_FEATURES + config->n_numeric
                                                  ? k - POLOPT__COL_FEATURES
                                                  : k - POLOPT__COL_FEATURES - config->n_numeric));
            return rc;
        }
        if ((rc = polopt__text_column(r, name, &r->columns[k], fn)) != POLOPT_OK) return rc;
    }
    r->dim = config->n_numeric + config->n_categorical * config->max_levels;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_csv_open(polopt_csv_reader *reader, const char *path, const polopt_csv_config *config)
{
    const polopt_result rc = polopt__csv_open_impl(reader, path, config);
    if (rc != POLOPT_OK && reader) POLOPT__ZERO_KEEPING_ERROR(reader, polopt_csv_close);
    return rc;
}

POLOPT_DEF polopt_result polopt_csv_share_levels(polopt_csv_reader *reader, const polopt_csv_reader *from)
{
    static const char *fn = "polopt_csv_share_levels";
    const polopt_csv_config *a, *b;
    size_t k;
    if (!reader) return POLOPT_ERR_INVALID_ARG;
    if (!reader->columns || !from || !from->columns)
        return polopt__fail(&reader->err, &reader->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: %s is not an open reader",
                            fn, reader->columns ? "from" : "reader");
    a = &reader->config, b = &from->config;
    if (a->n_numeric != b->n_numeric || a->n_categorical != b->n_categorical ||
        (a->n_categorical && a->max_levels != b->max_levels))
        return polopt__fail(&reader->err, &a->hooks, POLOPT_ERR_INVALID_ARG, "%s: the readers' layouts differ (%lu "
                            "numeric and %lu categorical columns of %lu levels, against %lu, %lu of %lu)", fn,
                            (unsigned long)a->n_numeric, (unsigned long)a->n_categorical, (unsigned long)a->max_levels,
                            (unsigned long)b->n_numeric, (unsigned long)b->n_categorical, (unsigned long)b->max_levels);
    for (k = 0; k < a->n_numeric + a->n_categorical; ++k) {
        const char *x = k < a->n_numeric ? a->numeric[k] : a->categorical[k - a->n_numeric];
        const char *y = k < a->n_numeric ? b->numeric[k] : b->categorical[k - a->n_numeric];
        if (strcmp(x, y) != 0)
            return polopt__fail(&reader->err, &a->hooks, POLOPT_ERR_INVALID_ARG, "%s: feature %lu is '%.64s' here and "
                                "'%.64s' in from", fn, (unsigned long)k, x, y);
    }
    for (k = 0; k < a->n_categorical; ++k)
        if (reader->n_levels[k])
            return polopt__fail(&reader->err, &a->hooks, POLOPT_ERR_INVALID_ARG, "%s: reader has read rows already; "
                                "share the levels before the first read", fn);
    if (a->n_categorical) {
        memcpy(reader->levels, from->levels, a->n_categorical * a->max_levels * POLOPT_CSV_LEVEL_BYTES);
        memcpy(reader->n_levels, from->n_levels, a->n_categorical * sizeof(size_t));
    }
    return POLOPT_OK;
}

/* A field as a finite number (the whole field, spaces around it allowed). */
static int polopt__parse_double(const char *s, double *out)
{
    char *end;
    double v;
    while (*s == ' ') ++s;
    if (*s == '\0') return 0;
    v = strtod(s, &end);
    while (*end == ' ') ++end;
    if (*end != '\0' || !(v >= -DBL_MAX && v <= DBL_MAX)) return 0;
    *out = v;
    return 1;
}

/* A field as a plain decimal integer: an optional minus sign and 1 to 18 digits, spaces around allowed; no sign
   of +, no exponent, no fraction, no hexadecimal (strtod would read "0x0E" and "1.4e1" as 14). */
static int polopt__parse_integer(const char *s, double *out)
{
    long long v = 0;
    int digits = 0, neg = 0;
    while (*s == ' ') ++s;
    if (*s == '-') neg = 1, ++s;
    for (; *s >= '0' && *s <= '9'; ++s)
        if (++digits <= 18) v = v * 10 + (*s - '0');
    while (*s == ' ') ++s;
    if (*s != '\0' || digits == 0 || digits > 18) return 0;
    *out = (double)(neg ? -v : v);
    return 1;
}

/* The name of wanted column k (action, propensity, reward, position, then the features), from the config. */
static const char *polopt__col_name(const polopt_csv_reader *r, size_t k)
{
    const polopt_csv_config *c = &r->config;
    if (k == POLOPT__COL_ACTION) return c->action;
    if (k == POLOPT__COL_PROPENSITY) return c->propensity;
    if (k == POLOPT__COL_REWARD) return c->reward;
    if (k == POLOPT__COL_POSITION) return c->position;
    k -= POLOPT__COL_FEATURES;
    return k < c->n_numeric ? c->numeric[k] : c->categorical[k - c->n_numeric];
}

/* Grow the rows of data to hold at least need rounds. */
static polopt_result polopt__logged_reserve(polopt_logged *d, size_t need)
{
    size_t cap = d->capacity ? d->capacity : 1024;
    polopt_result rc = POLOPT_OK;
    int ok = 1;
    if (need <= d->capacity) return POLOPT_OK;
    while (cap < need && cap <= SIZE_MAX / 2) cap *= 2;
    if (cap < need) return POLOPT_ERR_OVERFLOW;
#define POLOPT__LOGGED_GROW(field, type, per_row)                                                            \
    if (rc == POLOPT_OK) {                                                                                  \
        const size_t count_ = polopt__mul_size(cap, per_row, &ok);                                          \
        void *p_ = ok ? polopt__realloc_array(&d->hooks, d->field, count_, sizeof(type), &rc) : NULL;        \
        if (!ok) rc = POLOPT_ERR_OVERFLOW;                                                                  \
        else if (p_) d->field = (type *)p_;                                                                 \
    }
    POLOPT__LOGGED_GROW(X, float, d->dim)
    POLOPT__LOGGED_GROW(action, uint32_t, 1)
    POLOPT__LOGGED_GROW(position, uint32_t, 1)
    POLOPT__LOGGED_GROW(propensity, double, 1)
    POLOPT__LOGGED_GROW(reward, double, 1)
#undef POLOPT__LOGGED_GROW
    if (rc == POLOPT_OK) d->capacity = cap;
    return rc;
}

POLOPT_DEF polopt_result polopt_csv_read(polopt_csv_reader *reader, polopt_logged *data, size_t max_rows, size_t *out_rows)
{
    static const char *fn = "polopt_csv_read";
    const polopt_csv_config *c;
    size_t got = 0, k;
    polopt_result rc = POLOPT_OK;
    if (out_rows) *out_rows = 0;
    if (!reader) return POLOPT_ERR_INVALID_ARG;
    if (!reader->file) return polopt__not_ready(&reader->err, &reader->config.hooks, fn, "reader");
    if (!data || !out_rows) return polopt__fail(&reader->err, &reader->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: data or out_rows is NULL", fn);
    c = &reader->config;
    if (data->capacity == 0 && data->n == 0) { /* a fresh data set: it takes the reader's shape */
        memset(data, 0, sizeof *data);
        data->dim = reader->dim;
        data->hooks = c->hooks;
        data->n_actions = c->n_actions;
        data->n_positions = c->n_positions ? c->n_positions : 1;
    } else if (data->dim != reader->dim) {
        return polopt__fail(&reader->err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: the data set has %lu features, the file %lu",
                            fn, (unsigned long)data->dim, (unsigned long)reader->dim);
    }
    while (got < max_rows) {
        const char *field;
        double v;
        long fields;
        int eof;
        size_t i = data->n;
        float *x;
        if ((rc = polopt__csv_getline(reader, &eof, fn)) != POLOPT_OK) break;
        if (eof) break;
        if (reader->line[0] == '\0') continue; /* blank lines are allowed */
        fields = polopt__csv_split(reader->line, reader->field_at, reader->n_columns, ',');
        if (fields < 0) {
            rc = polopt__fail(&reader->err, &c->hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu: unterminated quote", fn, reader->path,
                              (unsigned long)reader->line_no);
            break;
        }
        if ((size_t)fields != reader->n_columns) {
            rc = polopt__fail(&reader->err, &c->hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu has %ld fields; the header has %lu",
                              fn, reader->path, (unsigned long)reader->line_no, fields, (unsigned long)reader->n_columns);
            break;
        }
        if ((rc = polopt__logged_reserve(data, i + 1)) != POLOPT_OK) {
            rc = polopt__fail(&reader->err, &c->hooks, rc, "%s: no memory for %lu rounds", fn, (unsigned long)(i + 1));
            break;
        }
#define POLOPT__FIELD(col) (reader->line + reader->field_at[reader->columns[col]])
#define POLOPT__BAD(col, why)                                                                                      \
    {                                                                                                              \
        rc = polopt__fail(&reader->err, &c->hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu, column '%s': '%s' %s", fn,      \
                          reader->path, (unsigned long)reader->line_no, polopt__col_name(reader, col), POLOPT__FIELD(col), why);  \
        break;                                                                                                     \
    }
        field = POLOPT__FIELD(POLOPT__COL_ACTION);
        if (!polopt__parse_integer(field, &v) || v < 0 || v >= (double)POLOPT_NO_ITEM)
            POLOPT__BAD(POLOPT__COL_ACTION, "is not an action id (a decimal integer >= 0)")
        if (c->n_actions && v >= (double)c->n_actions) POLOPT__BAD(POLOPT__COL_ACTION, "is an unknown action")
        data->action[i] = (uint32_t)v;
        field = POLOPT__FIELD(POLOPT__COL_PROPENSITY);
        if (!polopt__parse_double(field, &v) || !(v > 0.0 && v <= 1.0))
            POLOPT__BAD(POLOPT__COL_PROPENSITY, "is not a propensity in (0, 1]")
        data->propensity[i] = v;
        field = POLOPT__FIELD(POLOPT__COL_REWARD);
        if (!polopt__parse_double(field, &v) || !(fabs(v) <= FLT_MAX)) POLOPT__BAD(POLOPT__COL_REWARD, "is not a finite number")
        data->reward[i] = v;
        data->position[i] = 0;
        if (reader->columns[POLOPT__COL_POSITION] >= 0) {
            field = POLOPT__FIELD(POLOPT__COL_POSITION);
            if (!polopt__parse_integer(field, &v) || v - (double)c->position_base < 0 ||
                v - (double)c->position_base >= (double)POLOPT_NO_ITEM)
                POLOPT__BAD(POLOPT__COL_POSITION, "is not a slot (a decimal integer >= position_base)")
            if (c->n_positions && v - (double)c->position_base >= (double)c->n_positions)
                POLOPT__BAD(POLOPT__COL_POSITION, "is beyond the last slot")
            data->position[i] = (uint32_t)(v - (double)c->position_base);
        }
        x = data->X + i * data->dim;
        memset(x, 0, data->dim * sizeof *x);
        for (k = 0; k < c->n_numeric; ++k) {
            field = POLOPT__FIELD(POLOPT__COL_FEATURES + k);
            if (!polopt__parse_double(field, &v) || !(fabs(v) <= FLT_MAX))
                POLOPT__BAD(POLOPT__COL_FEATURES + k, "is not a finite number")
            x[k] = (float)v;
        }
        if (rc != POLOPT_OK) break;
        for (k = 0; k < c->n_categorical; ++k) { /* one-hot: the level's index among the levels seen so far */
            const size_t col = POLOPT__COL_FEATURES + c->n_numeric + k;
            char *names = reader->levels + k * c->max_levels * POLOPT_CSV_LEVEL_BYTES;
            size_t level;
            field = POLOPT__FIELD(col);
            if (strlen(field) >= POLOPT_CSV_LEVEL_BYTES) POLOPT__BAD(col, "is longer than 63 bytes")
            for (level = 0; level < reader->n_levels[k] && strcmp(names + level * POLOPT_CSV_LEVEL_BYTES, field) != 0; ++level) {}
            if (level == reader->n_levels[k]) {
                if (level == c->max_levels) POLOPT__BAD(col, "is one level more than config.max_levels allows")
                memcpy(names + level * POLOPT_CSV_LEVEL_BYTES, field, strlen(field) + 1);
                reader->n_levels[k] += 1;
            }
            x[c->n_numeric + k * c->max_levels + level] = 1.0f;
        }
#undef POLOPT__BAD
#undef POLOPT__FIELD
        if (rc != POLOPT_OK) break;
        if (!c->n_actions && data->action[i] >= data->n_actions) data->n_actions = data->action[i] + 1;
        if (!c->n_positions && data->position[i] >= data->n_positions) data->n_positions = data->position[i] + 1;
        data->n = i + 1; /* the row counts only now that all of it is valid */
        ++got;
    }
    *out_rows = got;
    if (rc != POLOPT_OK) data->err = reader->err;
    return rc;
}

static polopt_result polopt__logged_load_csv_impl(polopt_logged *d, const char *path, const polopt_csv_config *config)
{
    polopt_csv_reader r;
    polopt_result rc;
    size_t got;
    if (!d) return POLOPT_ERR_INVALID_ARG;
    memset(d, 0, sizeof *d);
    rc = polopt_csv_open(&r, path, config);
    if (rc != POLOPT_OK) {
        d->err = r.err;
        return rc;
    }
    do rc = polopt_csv_read(&r, d, 65536, &got);
    while (rc == POLOPT_OK && got > 0);
    if (rc == POLOPT_OK && d->n == 0) {
        d->hooks = r.config.hooks;
        rc = polopt__fail(&d->err, &r.config.hooks, POLOPT_ERR_FORMAT, "polopt_logged_load_csv: %s has no rows", path);
    }
    polopt_csv_close(&r);
    return rc; /* on failure the wrapper frees d, keeping its message */
}

POLOPT_DEF polopt_result polopt_logged_load_csv(polopt_logged *data, const char *path, const polopt_csv_config *config)
{
    const polopt_result rc = polopt__logged_load_csv_impl(data, path, config);
    if (rc != POLOPT_OK && data) POLOPT__ZERO_KEEPING_ERROR(data, polopt_logged_free);
    return rc;
}

/* >>interactions ------------------------------------------------------------------------------------------ */

#define POLOPT__INTERACTIONS_VERSION 1
#define POLOPT__MAX_ID_BYTES 4095

POLOPT_DEF polopt_interactions_config polopt_interactions_config_default(void)
{
    polopt_interactions_config c;
    memset(&c, 0, sizeof c);
    c.session = "session";
    c.item = "item";
    c.min_session_items = 1;
    c.min_item_sessions = 1;
    c.repeat_filters = 1;
    return c;
}

POLOPT_DEF void polopt_interactions_free(polopt_interactions *m)
{
    polopt_hooks h;
    if (!m) return;
    h = m->hooks;
    polopt__dealloc(&h, m->offsets);
    polopt__dealloc(&h, m->items);
    polopt__dealloc(&h, m->weights);
    polopt__dealloc(&h, m->names);
    polopt__dealloc(&h, m->session_names);
    polopt__dealloc(&h, m->item_names);
    polopt__dealloc(&h, m->session_table);
    polopt__dealloc(&h, m->item_table);
    memset(m, 0, sizeof *m);
}

/* FNV-1a over the bytes, then an avalanche: the hash of an id in every table here. */
static uint64_t polopt__hash_name(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;
    for (i = 0; i < len; ++i) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return polopt__splitmix64(&h);
}

/* Ids while reading: the strings back to back in pool (each with its NUL), where each starts, its hash, and an
   open-addressing table of index + 1 (0: empty) at most half full. */
typedef struct polopt__idmap {
    char *pool;
    size_t pool_len, pool_cap;
    size_t *at;
    uint32_t *hash;
    size_t n, cap;
    uint32_t *table;
    size_t mask;
} polopt__idmap;

static void polopt__idmap_free(polopt__idmap *map, const polopt_hooks *hooks)
{
    polopt__dealloc(hooks, map->pool);
    polopt__dealloc(hooks, map->at);
    polopt__dealloc(hooks, map->hash);
    polopt__dealloc(hooks, map->table);
    memset(map, 0, sizeof *map);
}

/* A table of 2^k >= 2 n slots for n entries whose hashes are given, into *out_table (*out_mask = 2^k - 1). */
static polopt_result polopt__id_table(const polopt_hooks *hooks, size_t n, const uint32_t *hash, uint32_t **out_table,
                                      size_t *out_mask)
{
    size_t slots = 16, i;
    polopt_result rc = POLOPT_OK;
    uint32_t *t;
    while (slots < 2 * n) slots *= 2;
    t = (uint32_t *)polopt__alloc(hooks, slots, sizeof(uint32_t), &rc);
    if (!t) return rc;
    memset(t, 0, slots * sizeof(uint32_t));
    for (i = 0; i < n; ++i) {
        size_t at = hash[i] & (slots - 1);
        while (t[at]) at = (at + 1) & (slots - 1);
        t[at] = (uint32_t)(i + 1);
    }
    polopt__dealloc(hooks, *out_table);
    *out_table = t;
    *out_mask = slots - 1;
    return POLOPT_OK;
}

/* The index of the len bytes at s among n strings (starts at, hashes hash, in table), or -1. */
static long polopt__id_find(const char *pool, const size_t *at, const uint32_t *hash, const uint32_t *table,
                            size_t mask, const char *s, size_t len, uint32_t h)
{
    size_t slot = h & mask;
    for (; table[slot]; slot = (slot + 1) & mask) {
        const uint32_t k = table[slot] - 1;
        const char *name = pool + at[k];
        if (hash[k] == h && memcmp(name, s, len) == 0 && name[len] == '\0') return (long)k;
    }
    return -1;
}

/* The index of the id s (len bytes, 1 .. POLOPT__MAX_ID_BYTES), added if new. */
static polopt_result polopt__idmap_intern(polopt__idmap *map, const polopt_hooks *hooks, const char *s, size_t len,
                                          uint32_t *out_index)
{
    const uint32_t h = (uint32_t)polopt__hash_name(s, len);
    polopt_result rc = POLOPT_OK;
    long k = map->table ? polopt__id_find(map->pool, map->at, map->hash, map->table, map->mask, s, len, h) : -1;
    void *p;
    if (k >= 0) {
        *out_index = (uint32_t)k;
        return POLOPT_OK;
    }
    if (map->n >= (size_t)POLOPT_NO_ITEM - 1) return POLOPT_ERR_OVERFLOW;
    if (map->n == map->cap) {
        const size_t cap = map->cap ? 2 * map->cap : 1024;
        if (!(p = polopt__realloc_array(hooks, map->at, cap, sizeof(size_t), &rc))) return rc;
        map->at = (size_t *)p;
        if (!(p = polopt__realloc_array(hooks, map->hash, cap, sizeof(uint32_t), &rc))) return rc;
        map->hash = (uint32_t *)p;
        map->cap = cap;
    }
    if (map->pool_len + len + 1 > map->pool_cap) {
        size_t cap = map->pool_cap ? map->pool_cap : 16384;
        while (cap < map->pool_len + len + 1) cap *= 2;
        if (!(p = polopt__realloc_array(hooks, map->pool, cap, 1, &rc))) return rc;
        map->pool = (char *)p;
        map->pool_cap = cap;
    }
    memcpy(map->pool + map->pool_len, s, len);
    map->pool[map->pool_len + len] = '\0';
    map->at[map->n] = map->pool_len;
    map->hash[map->n] = h;
    map->pool_len += len + 1;
    *out_index = (uint32_t)map->n++;
    if (!map->table || 2 * map->n > map->mask + 1) /* keep the table at most half full */
        return polopt__id_table(hooks, map->n, map->hash, &map->table, &map->mask);
    {
        size_t slot = h & map->mask;
        while (map->table[slot]) slot = (slot + 1) & map->mask;
        map->table[slot] = (uint32_t)map->n;
    }
    return POLOPT_OK;
}

/* The rows read so far: session and item indices into the two id maps, and the weights (when there is a column). */
typedef struct polopt__pairs {
    uint32_t *session, *item;
    float *weight;
    size_t n, cap;
} polopt__pairs;

static void polopt__pairs_free(polopt__pairs *p, const polopt_hooks *hooks)
{
    polopt__dealloc(hooks, p->session);
    polopt__dealloc(hooks, p->item);
    polopt__dealloc(hooks, p->weight);
    memset(p, 0, sizeof *p);
}

static polopt_result polopt__pairs_push(polopt__pairs *p, const polopt_hooks *hooks, uint32_t s, uint32_t a, float w,
                                        int weighted)
{
    polopt_result rc = POLOPT_OK;
    if (p->n == (size_t)UINT32_MAX) return POLOPT_ERR_OVERFLOW; /* rows are counted in uint32_t while sorting */
    if (p->n == p->cap) {
        const size_t cap = p->cap ? 2 * p->cap : 4096;
        void *q;
        if (!(q = polopt__realloc_array(hooks, p->session, cap, sizeof(uint32_t), &rc))) return rc;
        p->session = (uint32_t *)q;
        if (!(q = polopt__realloc_array(hooks, p->item, cap, sizeof(uint32_t), &rc))) return rc;
        p->item = (uint32_t *)q;
        if (weighted) {
            if (!(q = polopt__realloc_array(hooks, p->weight, cap, sizeof(float), &rc))) return rc;
            p->weight = (float *)q;
        }
        p->cap = cap;
    }
    p->session[p->n] = s, p->item[p->n] = a;
    if (weighted) p->weight[p->n] = w;
    p->n += 1;
    return POLOPT_OK;
}

/* The object's arrays for its sizes (weights only if weighted), or an error with nothing allocated that stays. */
static polopt_result polopt__interactions_alloc(polopt_interactions *m, size_t n_s, size_t n_i, size_t nnz,
                                                size_t names_bytes, int weighted)
{
    polopt_result rc = POLOPT_OK;
    m->offsets = (size_t *)polopt__alloc(&m->hooks, n_s + 1, sizeof(size_t), &rc);
    if (m->offsets) m->items = (uint32_t *)polopt__alloc(&m->hooks, nnz, sizeof(uint32_t), &rc);
    if (m->items && weighted) m->weights = (float *)polopt__alloc(&m->hooks, nnz, sizeof(float), &rc);
    if (rc == POLOPT_OK) m->names = (char *)polopt__alloc(&m->hooks, names_bytes, 1, &rc);
    if (m->names) m->session_names = (size_t *)polopt__alloc(&m->hooks, n_s, sizeof(size_t), &rc);
    if (m->session_names) m->item_names = (size_t *)polopt__alloc(&m->hooks, n_i, sizeof(size_t), &rc);
    if (rc != POLOPT_OK) return rc;
    m->n_sessions = n_s, m->n_items = n_i, m->nnz = nnz, m->names_bytes = names_bytes;
    return POLOPT_OK;
}

/* The lookup tables of the ids in names (starts session_names, item_names); a repeated id is an error. */
static polopt_result polopt__interactions_tables(polopt_interactions *m, const char *fn, const char *source)
{
    polopt_result rc = POLOPT_OK;
    int pass;
    for (pass = 0; pass < 2 && rc == POLOPT_OK; ++pass) {
        const size_t n = pass ? m->n_items : m->n_sessions, *at = pass ? m->item_names : m->session_names;
        uint32_t *hash = (uint32_t *)polopt__alloc(&m->hooks, n, sizeof(uint32_t), &rc), **table;
        size_t i, *mask;
        if (!hash) break;
        for (i = 0; i < n; ++i) hash[i] = (uint32_t)polopt__hash_name(m->names + at[i], strlen(m->names + at[i]));
        table = pass ? &m->item_table : &m->session_table;
        mask = pass ? &m->item_mask : &m->session_mask;
        rc = polopt__id_table(&m->hooks, n, hash, table, mask);
        for (i = 0; i < n && rc == POLOPT_OK; ++i) { /* each id must find itself: a repeat finds its first copy */
            const char *name = m->names + at[i];
            if (polopt__id_find(m->names, at, hash, *table, *mask, name, strlen(name), hash[i]) != (long)i)
                rc = polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: the %s id '%.64s' appears twice", fn,
                                  source, pass ? "item" : "session", name);
        }
        polopt__dealloc(&m->hooks, hash);
    }
    if (rc != POLOPT_OK && rc != POLOPT_ERR_FORMAT)
        rc = polopt__fail(&m->err, &m->hooks, rc, "%s: cannot allocate the id tables", fn);
    return rc;
}

/* Stable counting sort of the row numbers in (n of them) by key[row] < n_keys into out; count: n_keys + 1 zeroed. */
static void polopt__count_sort(size_t n, const uint32_t *in, const uint32_t *key, size_t n_keys, size_t *count,
                               uint32_t *out)
{
    size_t i, k, sum = 0;
    for (i = 0; i < n; ++i) count[key[in ? in[i] : i]] += 1;
    for (k = 0; k < n_keys; ++k) {
        const size_t c = count[k];
        count[k] = sum;
        sum += c;
    }
    for (i = 0; i < n; ++i) {
        const uint32_t row = in ? in[i] : (uint32_t)i;
        out[count[key[row]]++] = row;
    }
}

/* From the rows and the two id maps to the object: group by session with items increasing (two stable counting
   sorts, O(rows + sessions + items)), drop repeated pairs (the first in the file stays), filter, number the
   survivors in order of first appearance, and copy their ids.  m has its hooks; its stats.rows is set. */
static polopt_result polopt__interactions_build(polopt_interactions *m, const polopt__pairs *pairs,
                                                const polopt__idmap *sessions, const polopt__idmap *items,
                                                const polopt_interactions_config *c, const char *fn)
{
    const polopt_hooks *hk = &m->hooks;
    const size_t n = pairs->n, n_s = sessions->n, n_i = items->n;
    polopt_result rc = POLOPT_OK;
    uint32_t *by_item = NULL, *order = NULL, *new_s = NULL, *new_i = NULL, *degree = NULL;
    size_t *count = NULL, *start = NULL, i, s, nnz = 0, out_s = 0, out_i = 0, names_bytes = 0, kept;
    int changed = 1;
    by_item = (uint32_t *)polopt__alloc(hk, n, sizeof(uint32_t), &rc);
    if (by_item) order = (uint32_t *)polopt__alloc(hk, n, sizeof(uint32_t), &rc);
    if (order) count = (size_t *)polopt__alloc(hk, (n_s > n_i ? n_s : n_i) + 1, sizeof(size_t), &rc);
    if (count) start = (size_t *)polopt__alloc(hk, n_s + 1, sizeof(size_t), &rc);
    if (start) new_s = (uint32_t *)polopt__alloc(hk, n_s, sizeof(uint32_t), &rc);
    if (new_s) new_i = (uint32_t *)polopt__alloc(hk, n_i, sizeof(uint32_t), &rc);
    if (new_i) degree = (uint32_t *)polopt__alloc(hk, n_s > n_i ? n_s : n_i, sizeof(uint32_t), &rc);
    if (rc != POLOPT_OK) {
        rc = polopt__fail(&m->err, hk, rc, "%s: cannot allocate the sort of %lu rows", fn, (unsigned long)n);
        goto done;
    }
    memset(count, 0, (n_i + 1) * sizeof(size_t));
    polopt__count_sort(n, NULL, pairs->item, n_i, count, by_item);
    memset(count, 0, (n_s + 1) * sizeof(size_t));
    polopt__count_sort(n, by_item, pairs->session, n_s, count, order);
    /* order: rows by session, items increasing, ties in file order; keep the first of each (session, item) */
    for (i = 0, s = 0; s < n_s; ++s) {
        start[s] = nnz;
        for (; i < n && pairs->session[order[i]] == s; ++i)
            if (nnz == start[s] || pairs->item[order[nnz - 1]] != pairs->item[order[i]]) order[nnz++] = order[i];
    }
    start[n_s] = nnz;
    m->stats.duplicates = n - nnz;
    /* the filters: new_s and new_i mark the living with 1 (the indices come after) */
    for (s = 0; s < n_s; ++s) new_s[s] = 1;
    for (i = 0; i < n_i; ++i) new_i[i] = 1;
    while (changed) {
        size_t size;
        changed = 0;
        m->stats.filter_rounds += 1;
        for (s = 0; s < n_s; ++s) {
            if (!new_s[s]) continue;
            for (size = 0, i = start[s]; i < start[s + 1]; ++i) size += new_i[pairs->item[order[i]]];
            if (size < c->min_session_items) new_s[s] = 0, changed = 1, m->stats.dropped_sessions += 1;
        }
        memset(degree, 0, n_i * sizeof(uint32_t));
        for (s = 0; s < n_s; ++s)
            if (new_s[s])
                for (i = start[s]; i < start[s + 1]; ++i) degree[pairs->item[order[i]]] += 1;
        for (i = 0; i < n_i; ++i)
            if (new_i[i] && degree[i] < c->min_item_sessions) new_i[i] = 0, changed = 1, m->stats.dropped_items += 1;
        if (!c->repeat_filters) break;
    }
    /* number the survivors; an item whose every session died is dropped too */
    for (i = 0; i < n_i; ++i) {
        if (new_i[i] && degree[i] == 0) new_i[i] = 0, m->stats.dropped_items += 1;
        if (new_i[i]) new_i[i] = (uint32_t)out_i++, names_bytes += strlen(items->pool + items->at[i]) + 1;
        else new_i[i] = POLOPT_NO_ITEM;
    }
    for (kept = 0, s = 0; s < n_s; ++s) {
        size_t size = 0;
        if (new_s[s])
            for (i = start[s]; i < start[s + 1]; ++i) size += new_i[pairs->item[order[i]]] != POLOPT_NO_ITEM;
        if (new_s[s] && size == 0) new_s[s] = 0, m->stats.dropped_sessions += 1; /* its items all died */
        if (new_s[s]) new_s[s] = (uint32_t)out_s++, kept += size, names_bytes += strlen(sessions->pool + sessions->at[s]) + 1;
        else new_s[s] = POLOPT_NO_ITEM;
    }
    if (out_s == 0 || out_i == 0) {
        rc = polopt__fail(&m->err, hk, POLOPT_ERR_DOMAIN, "%s: no interaction survives the filters (%lu rows, %lu "
                          "sessions, %lu items; min_session_items %lu, min_item_sessions %lu)", fn, (unsigned long)n,
                          (unsigned long)n_s, (unsigned long)n_i, (unsigned long)c->min_session_items,
                          (unsigned long)c->min_item_sessions);
        goto done;
    }
    if ((rc = polopt__interactions_alloc(m, out_s, out_i, kept, names_bytes, pairs->weight != NULL)) != POLOPT_OK) {
        rc = polopt__fail(&m->err, hk, rc, "%s: cannot allocate %lu sessions, %lu items and %lu interactions", fn,
                          (unsigned long)out_s, (unsigned long)out_i, (unsigned long)kept);
        goto done;
    }
    nnz = 0, names_bytes = 0;
    for (s = 0; s < n_s; ++s) { /* the items of a session keep their order: the renumbering is increasing */
        const char *name = sessions->pool + sessions->at[s];
        if (new_s[s] == POLOPT_NO_ITEM) continue;
        m->offsets[new_s[s]] = nnz;
        for (i = start[s]; i < start[s + 1]; ++i) {
            const uint32_t a = new_i[pairs->item[order[i]]];
            if (a == POLOPT_NO_ITEM) continue;
            m->items[nnz] = a;
            if (m->weights) m->weights[nnz] = pairs->weight[order[i]];
            ++nnz;
        }
        m->session_names[new_s[s]] = names_bytes;
        memcpy(m->names + names_bytes, name, strlen(name) + 1);
        names_bytes += strlen(name) + 1;
    }
    m->offsets[out_s] = nnz;
    for (i = 0; i < n_i; ++i) {
        const char *name = items->pool + items->at[i];
        if (new_i[i] == POLOPT_NO_ITEM) continue;
        m->item_names[new_i[i]] = names_bytes;
        memcpy(m->names + names_bytes, name, strlen(name) + 1);
        names_bytes += strlen(name) + 1;
    }
    rc = polopt__interactions_tables(m, fn, "the log");
done:
    polopt__dealloc(hk, by_item);
    polopt__dealloc(hk, order);
    polopt__dealloc(hk, count);
    polopt__dealloc(hk, start);
    polopt__dealloc(hk, new_s);
    polopt__dealloc(hk, new_i);
    polopt__dealloc(hk, degree);
    return rc;
}

static polopt_result polopt__interactions_check_config(polopt_interactions *m, const polopt_interactions_config *c,
                                                       const char *fn)
{
    POLOPT__CHECK(&m->err, &c->hooks, c->min_session_items >= 1 && c->min_item_sessions >= 1,
                  "%s: config.min_session_items = %lu and config.min_item_sessions = %lu must be >= 1", fn,
                  (unsigned long)c->min_session_items, (unsigned long)c->min_item_sessions);
    POLOPT__CHECK(&m->err, &c->hooks, c->repeat_filters == 0 || c->repeat_filters == 1,
                  "%s: config.repeat_filters = %d must be 0 or 1", fn, c->repeat_filters);
    POLOPT__CHECK(&m->err, &c->hooks, c->delimiter == 0 || c->delimiter == ',' || c->delimiter == '\t',
                  "%s: config.delimiter must be ',', '\\t' or 0 (from the file name)", fn);
    return POLOPT_OK;
}

/* One id field of the current line, checked, interned. */
static polopt_result polopt__interactions_id(polopt_csv_reader *r, polopt__idmap *map, long col, const char *what,
                                             uint32_t *out, const char *fn)
{
    const char *field = r->line + r->field_at[col];
    const size_t len = strlen(field);
    polopt_result rc;
    if (len == 0 || len > POLOPT__MAX_ID_BYTES)
        return polopt__fail(&r->err, &r->config.hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu, column '%s' (%ld): %s",
                            fn, r->path, (unsigned long)r->line_no, what, col + 1,
                            len ? "an id longer than 4095 bytes" : "an empty id");
    if ((rc = polopt__idmap_intern(map, &r->config.hooks, field, len, out)) != POLOPT_OK)
        return polopt__fail(&r->err, &r->config.hooks, rc, "%s: %s, line %lu: %s", fn, r->path,
                            (unsigned long)r->line_no,
                            rc == POLOPT_ERR_OVERFLOW ? "more than 2^32 - 2 distinct ids" : "out of memory for the ids");
    return POLOPT_OK;
}

static polopt_result polopt__interactions_read(polopt_csv_reader *r, polopt__pairs *pairs, polopt__idmap *sessions,
                                               polopt__idmap *items, const polopt_interactions_config *c,
                                               const char *fn)
{
    const size_t plen = strlen(r->path);
    const char delim = c->delimiter ? c->delimiter
                                    : plen >= 4 && strcmp(r->path + plen - 4, ".tsv") == 0 ? '\t' : ',';
    long col_s, col_i, col_w = -1;
    polopt_result rc;
    int eof;
    if ((rc = polopt__text_open(r, r->path, delim, fn)) != POLOPT_OK) return rc;
    if ((rc = polopt__text_column(r, c->session, &col_s, fn)) != POLOPT_OK ||
        (rc = polopt__text_column(r, c->item, &col_i, fn)) != POLOPT_OK ||
        (c->weight && (rc = polopt__text_column(r, c->weight, &col_w, fn)) != POLOPT_OK))
        return rc;
    for (;;) {
        uint32_t s, a;
        double w = 1.0;
        long fields;
        if ((rc = polopt__csv_getline(r, &eof, fn)) != POLOPT_OK) return rc;
        if (eof) return POLOPT_OK;
        if (r->line[0] == '\0') continue; /* blank lines are allowed */
        fields = polopt__csv_split(r->line, r->field_at, r->n_columns, delim);
        if (fields < 0)
            return polopt__fail(&r->err, &c->hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu: unterminated quote", fn,
                                r->path, (unsigned long)r->line_no);
        if ((size_t)fields != r->n_columns)
            return polopt__fail(&r->err, &c->hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu has %ld fields; the header "
                                "has %lu%s", fn, r->path, (unsigned long)r->line_no, fields,
                                (unsigned long)r->n_columns, delim == ',' ? "" : " (tab-separated)");
        if (col_w >= 0) {
            const char *field = r->line + r->field_at[col_w];
            if (!polopt__parse_double(field, &w) || !(w > 0.0 && w <= FLT_MAX && (float)w > 0.0f))
                return polopt__fail(&r->err, &c->hooks, POLOPT_ERR_FORMAT, "%s: %s, line %lu, column '%s' (%ld): '%.64s' "
                                    "is not a weight (a finite number > 0)", fn, r->path, (unsigned long)r->line_no,
                                    c->weight, col_w + 1, field);
        }
        if ((rc = polopt__interactions_id(r, sessions, col_s, c->session, &s, fn)) != POLOPT_OK ||
            (rc = polopt__interactions_id(r, items, col_i, c->item, &a, fn)) != POLOPT_OK)
            return rc;
        if ((rc = polopt__pairs_push(pairs, &c->hooks, s, a, (float)w, col_w >= 0)) != POLOPT_OK)
            return polopt__fail(&r->err, &c->hooks, rc, "%s: %s, line %lu: %s", fn, r->path, (unsigned long)r->line_no,
                                rc == POLOPT_ERR_OVERFLOW ? "more than 2^32 - 1 rows" : "out of memory for the rows");
    }
}

static polopt_result polopt__interactions_load_csv_impl(polopt_interactions *m, const char *path,
                                                        const polopt_interactions_config *config)
{
    static const char *fn = "polopt_interactions_load_csv";
    polopt_interactions_config c;
    polopt_csv_reader r;
    polopt__pairs pairs;
    polopt__idmap sessions, items;
    polopt_result rc;
    if (!m) return POLOPT_ERR_INVALID_ARG;
    memset(m, 0, sizeof *m);
    c = config ? *config : polopt_interactions_config_default();
    m->hooks = c.hooks;
    if ((rc = polopt__interactions_check_config(m, &c, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(&m->err, &c.hooks, path && c.session && c.item, "%s: path, config.session or config.item is NULL",
                  fn);
    memset(&r, 0, sizeof r), memset(&pairs, 0, sizeof pairs), memset(&sessions, 0, sizeof sessions);
    memset(&items, 0, sizeof items);
    r.config.hooks = c.hooks;
    r.path = path;
    rc = polopt__interactions_read(&r, &pairs, &sessions, &items, &c, fn);
    if (rc != POLOPT_OK) m->err = r.err;
    polopt_csv_close(&r); /* the file and the line buffers, before the sort needs the memory */
    if (rc == POLOPT_OK && pairs.n == 0)
        rc = polopt__fail(&m->err, &c.hooks, POLOPT_ERR_FORMAT, "%s: %s has a header but no rows", fn, path);
    m->stats.rows = pairs.n;
    if (rc == POLOPT_OK) rc = polopt__interactions_build(m, &pairs, &sessions, &items, &c, fn);
    polopt__pairs_free(&pairs, &c.hooks);
    polopt__idmap_free(&sessions, &c.hooks);
    polopt__idmap_free(&items, &c.hooks);
    return rc;
}

POLOPT_DEF polopt_result polopt_interactions_load_csv(polopt_interactions *m, const char *path,
                                                      const polopt_interactions_config *config)
{
    const polopt_result rc = polopt__interactions_load_csv_impl(m, path, config);
    if (rc != POLOPT_OK && m) POLOPT__ZERO_KEEPING_ERROR(m, polopt_interactions_free);
    else if (m) polopt__clear_error(&m->err);
    return rc;
}

/* Integer ids: their decimal strings, interned in increasing order (so index order is numeric order), and each
   row's index into out_index.  A radix sort of a copy (two passes of 16 bits), then a binary search per row. */
static polopt_result polopt__interactions_ints(polopt__idmap *map, const polopt_hooks *hooks, size_t n,
                                               const uint32_t *ids, uint32_t *out_index)
{
    polopt_result rc = POLOPT_OK;
    uint32_t *a = (uint32_t *)polopt__alloc(hooks, n, sizeof(uint32_t), &rc), *b = NULL;
    size_t *count = NULL, i, d = 0;
    int pass;
    if (a) b = (uint32_t *)polopt__alloc(hooks, n, sizeof(uint32_t), &rc);
    if (b) count = (size_t *)polopt__alloc(hooks, 65536, sizeof(size_t), &rc);
    if (rc == POLOPT_OK) {
        memcpy(a, ids, n * sizeof(uint32_t));
        for (pass = 0; pass < 2; ++pass) { /* stable by the low 16 bits, then by the high 16 */
            const int shift = 16 * pass;
            size_t k, sum = 0;
            memset(count, 0, 65536 * sizeof(size_t));
            for (i = 0; i < n; ++i) count[(a[i] >> shift) & 0xffff] += 1;
            for (k = 0; k < 65536; ++k) {
                const size_t c = count[k];
                count[k] = sum;
                sum += c;
            }
            for (i = 0; i < n; ++i) b[count[(a[i] >> shift) & 0xffff]++] = a[i];
            memcpy(a, b, n * sizeof(uint32_t));
        }
        for (i = 0; i < n; ++i)
            if (d == 0 || a[i] != a[d - 1]) a[d++] = a[i]; /* the distinct ids, increasing */
        for (i = 0; i < d && rc == POLOPT_OK; ++i) {
            char buf[16];
            uint32_t index;
            const int len = sprintf(buf, "%lu", (unsigned long)a[i]);
            rc = polopt__idmap_intern(map, hooks, buf, (size_t)len, &index);
        }
        for (i = 0; i < n && rc == POLOPT_OK; ++i) { /* the first distinct id >= ids[i], which is ids[i] */
            size_t lo = 0, hi = d;
            while (lo < hi) {
                const size_t mid = lo + (hi - lo) / 2;
                if (a[mid] < ids[i]) lo = mid + 1;
                else hi = mid;
            }
            out_index[i] = (uint32_t)lo;
        }
    }
    polopt__dealloc(hooks, a);
    polopt__dealloc(hooks, b);
    polopt__dealloc(hooks, count);
    return rc;
}

static polopt_result polopt__interactions_init_impl(polopt_interactions *m, size_t n, const uint32_t *session,
                                                    const uint32_t *item, const float *weight,
                                                    const polopt_interactions_config *config)
{
    static const char *fn = "polopt_interactions_init";
    polopt_interactions_config c;
    polopt__pairs pairs;
    polopt__idmap sessions, items;
    polopt_result rc = POLOPT_OK;
    size_t i;
    if (!m) return POLOPT_ERR_INVALID_ARG;
    memset(m, 0, sizeof *m);
    c = config ? *config : polopt_interactions_config_default();
    m->hooks = c.hooks;
    if ((rc = polopt__interactions_check_config(m, &c, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(&m->err, &c.hooks, n >= 1 && session && item, "%s: n = 0, or session or item is NULL", fn);
    POLOPT__CHECK(&m->err, &c.hooks, n <= (size_t)UINT32_MAX, "%s: n = %lu is more than 2^32 - 1 rows", fn,
                  (unsigned long)n);
    for (i = 0; weight && i < n; ++i)
        POLOPT__CHECK(&m->err, &c.hooks, weight[i] > 0.0f && weight[i] <= FLT_MAX,
                      "%s: weight[%lu] = %g is not a finite number > 0", fn, (unsigned long)i, (double)weight[i]);
    for (i = 0; i < n; ++i)
        POLOPT__CHECK(&m->err, &c.hooks, session[i] != POLOPT_NO_ITEM && item[i] != POLOPT_NO_ITEM,
                      "%s: row %lu: the id 2^32 - 1 is reserved", fn, (unsigned long)i);
    memset(&pairs, 0, sizeof pairs), memset(&sessions, 0, sizeof sessions), memset(&items, 0, sizeof items);
    pairs.session = (uint32_t *)polopt__alloc(&c.hooks, n, sizeof(uint32_t), &rc);
    if (pairs.session) pairs.item = (uint32_t *)polopt__alloc(&c.hooks, n, sizeof(uint32_t), &rc);
    if (pairs.item) pairs.weight = weight ? (float *)polopt__alloc(&c.hooks, n, sizeof(float), &rc) : NULL;
    if (rc == POLOPT_OK) rc = polopt__interactions_ints(&sessions, &c.hooks, n, session, pairs.session);
    if (rc == POLOPT_OK) rc = polopt__interactions_ints(&items, &c.hooks, n, item, pairs.item);
    if (rc == POLOPT_OK) {
        if (weight) memcpy(pairs.weight, weight, n * sizeof(float));
        pairs.n = pairs.cap = n;
        m->stats.rows = n;
        rc = polopt__interactions_build(m, &pairs, &sessions, &items, &c, fn);
    } else {
        rc = polopt__fail(&m->err, &c.hooks, rc, "%s: cannot allocate the ids of %lu rows", fn, (unsigned long)n);
    }
    polopt__pairs_free(&pairs, &c.hooks);
    polopt__idmap_free(&sessions, &c.hooks);
    polopt__idmap_free(&items, &c.hooks);
    return rc;
}

POLOPT_DEF polopt_result polopt_interactions_init(polopt_interactions *m, size_t n, const uint32_t *session,
                                                  const uint32_t *item, const float *weight,
                                                  const polopt_interactions_config *config)
{
    const polopt_result rc = polopt__interactions_init_impl(m, n, session, item, weight, config);
    if (rc != POLOPT_OK && m) POLOPT__ZERO_KEEPING_ERROR(m, polopt_interactions_free);
    else if (m) polopt__clear_error(&m->err);
    return rc;
}

POLOPT_DEF const char *polopt_interactions_session_name(const polopt_interactions *m, size_t s)
{
    return m && m->names && s < m->n_sessions ? m->names + m->session_names[s] : NULL;
}

POLOPT_DEF const char *polopt_interactions_item_name(const polopt_interactions *m, size_t a)
{
    return m && m->names && a < m->n_items ? m->names + m->item_names[a] : NULL;
}

static polopt_result polopt__interactions_find(const polopt_interactions *m, int item, const char *name,
                                               uint32_t *out_index, const char *fn)
{
    const uint32_t *table;
    const size_t *at;
    size_t slot, mask, len;
    uint32_t h;
    if (!m) return POLOPT_ERR_INVALID_ARG;
    if (!m->names) return polopt__not_ready(NULL, &m->hooks, fn, "interactions object");
    if (!name || !out_index) return polopt__fail(NULL, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: name or out_index is NULL", fn);
    table = item ? m->item_table : m->session_table;
    at = item ? m->item_names : m->session_names;
    mask = item ? m->item_mask : m->session_mask;
    len = strlen(name);
    h = (uint32_t)polopt__hash_name(name, len);
    *out_index = POLOPT_NO_ITEM;
    for (slot = h & mask; table[slot]; slot = (slot + 1) & mask)
        if (strcmp(m->names + at[table[slot] - 1], name) == 0) {
            *out_index = table[slot] - 1;
            break;
        }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_interactions_find_session(const polopt_interactions *m, const char *name,
                                                          uint32_t *out_index)
{
    return polopt__interactions_find(m, 0, name, out_index, "polopt_interactions_find_session");
}

POLOPT_DEF polopt_result polopt_interactions_find_item(const polopt_interactions *m, const char *name,
                                                       uint32_t *out_index)
{
    return polopt__interactions_find(m, 1, name, out_index, "polopt_interactions_find_item");
}

/* Interaction files: the common header with 24 u64 sessions, 32 u64 items, 40 u64 interactions, 48 u64 bytes of
   ids, 56 u32 flags (1: weights), 60 u32 filter rounds, 88 u64 rows, 96 u64 duplicates, 104 u64 dropped sessions,
   112 u64 dropped items; payload: each session's count of items (u32), the items (u32), the weights (f32, with the
   flag), then the ids as NUL-terminated strings, sessions first. */
static polopt_result polopt__interactions_payload(const polopt_interactions *m, polopt__io *w)
{
    uint32_t buf[256];
    size_t s = 0, k;
    polopt_result rc = POLOPT_OK;
    while (s < m->n_sessions && rc == POLOPT_OK) {
        for (k = 0; k < 256 && s < m->n_sessions; ++k, ++s) buf[k] = (uint32_t)(m->offsets[s + 1] - m->offsets[s]);
        rc = polopt__write_words(w, buf, k);
    }
    if (rc == POLOPT_OK) rc = polopt__write_words(w, m->items, m->nnz);
    if (rc == POLOPT_OK && m->weights) rc = polopt__write_words(w, m->weights, m->nnz);
    if (rc == POLOPT_OK) rc = polopt__write_bytes(w, m->names, m->names_bytes);
    return rc;
}

static polopt_result polopt__interactions_emit(const void *ctx, polopt__io *w)
{
    const polopt_interactions *m = (const polopt_interactions *)ctx;
    unsigned char h[POLOPT__HEADER_BYTES];
    polopt__io probe;
    polopt_result rc;
    memset(&probe, 0, sizeof probe);
    polopt__ck_init(&probe.ck);
    polopt__interactions_payload(m, &probe);
    polopt__header_begin(h, "POLOPTIX", POLOPT__INTERACTIONS_VERSION);
    polopt__put_u64(h + 24, m->n_sessions);
    polopt__put_u64(h + 32, m->n_items);
    polopt__put_u64(h + 40, m->nnz);
    polopt__put_u64(h + 48, m->names_bytes);
    polopt__put_u32(h + 56, m->weights ? 1u : 0u);
    polopt__put_u32(h + 60, (uint32_t)(m->stats.filter_rounds < UINT32_MAX ? m->stats.filter_rounds : UINT32_MAX));
    polopt__put_u64(h + 88, m->stats.rows);
    polopt__put_u64(h + 96, m->stats.duplicates);
    polopt__put_u64(h + 104, m->stats.dropped_sessions);
    polopt__put_u64(h + 112, m->stats.dropped_items);
    polopt__header_seal(h, &probe);
    if ((rc = polopt__write(w, h, sizeof h)) != POLOPT_OK) return rc;
    return polopt__interactions_payload(m, w);
}

static size_t polopt__interactions_bytes(const polopt_interactions *m)
{
    return POLOPT__HEADER_BYTES + 4 * m->n_sessions + 4 * m->nnz * (m->weights ? 2 : 1) + m->names_bytes;
}

POLOPT_DEF polopt_result polopt_interactions_save(const polopt_interactions *m, const char *path, polopt_error *out_err)
{
    static const char *fn = "polopt_interactions_save";
    if (!m) return POLOPT_ERR_INVALID_ARG;
    if (!m->names) return polopt__not_ready(out_err, &m->hooks, fn, "interactions object");
    if (!path) return polopt__fail(out_err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: path is NULL", fn);
    return polopt__save_atomic(path, &m->hooks, out_err, fn, polopt__interactions_emit, m);
}

POLOPT_DEF polopt_result polopt_interactions_save_buffer(const polopt_interactions *m, void *buffer,
                                                         size_t buffer_size, size_t *out_size, polopt_error *out_err)
{
    static const char *fn = "polopt_interactions_save_buffer";
    polopt__io w;
    if (!m) return POLOPT_ERR_INVALID_ARG;
    if (!m->names) return polopt__not_ready(out_err, &m->hooks, fn, "interactions object");
    if (!out_size) return polopt__fail(out_err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: out_size is NULL", fn);
    *out_size = polopt__interactions_bytes(m);
    if (!buffer) return POLOPT_OK;
    if (buffer_size < *out_size)
        return polopt__fail(out_err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: the buffer has %lu bytes, the log needs %lu",
                            fn, (unsigned long)buffer_size, (unsigned long)*out_size);
    memset(&w, 0, sizeof w);
    w.buf = (unsigned char *)buffer;
    w.size = buffer_size;
    return polopt__interactions_emit(m, &w);
}

/* The ids of a loaded file: exactly n strings of 1 .. POLOPT__MAX_ID_BYTES bytes each, their starts into at. */
static polopt_result polopt__interactions_parse_names(polopt_interactions *m, const char *fn, const char *source)
{
    size_t pos = 0, k, total = m->n_sessions + m->n_items;
    for (k = 0; k < total; ++k) {
        const char *p = pos < m->names_bytes ? (const char *)memchr(m->names + pos, '\0', m->names_bytes - pos) : NULL;
        const size_t len = p ? (size_t)(p - (m->names + pos)) : 0;
        if (!p || len == 0 || len > POLOPT__MAX_ID_BYTES)
            return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: id %lu is %s", fn, source,
                                (unsigned long)k, !p ? "missing" : len ? "longer than 4095 bytes" : "empty");
        if (k < m->n_sessions) m->session_names[k] = pos;
        else m->item_names[k - m->n_sessions] = pos;
        pos += len + 1;
    }
    if (pos != m->names_bytes)
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: %lu bytes after the last id", fn, source,
                            (unsigned long)(m->names_bytes - pos));
    return POLOPT_OK;
}

static polopt_result polopt__interactions_read_file(polopt_interactions *m, polopt__io *r, size_t available,
                                                    const char *fn, const char *source)
{
    unsigned char h[POLOPT__HEADER_BYTES];
    uint64_t n_s, n_i, nnz, nb;
    uint32_t flags, buf[256];
    size_t s = 0, k, i, sum = 0;
    int ok = 1;
    polopt_result rc = polopt__header_read(r, h, "POLOPTIX", POLOPT__INTERACTIONS_VERSION, "interactions file", &m->err,
                                           &m->hooks, fn, source);
    if (rc != POLOPT_OK) return rc;
    n_s = polopt__get_u64(h + 24), n_i = polopt__get_u64(h + 32), nnz = polopt__get_u64(h + 40);
    nb = polopt__get_u64(h + 48), flags = polopt__get_u32(h + 56);
    if (n_s < 1 || n_s > SIZE_MAX / 16 || n_i < 1 || n_i >= POLOPT_NO_ITEM || nnz < 1 || nnz > SIZE_MAX / 16 ||
        nb < 2 * (n_s + n_i) || nb / (POLOPT__MAX_ID_BYTES + 1) > n_s + n_i || nb > SIZE_MAX / 2 || flags > 1)
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: impossible sizes (%llu sessions, %llu "
                            "items, %llu interactions, %llu bytes of ids, flags %u)", fn, source,
                            (unsigned long long)n_s, (unsigned long long)n_i, (unsigned long long)nnz,
                            (unsigned long long)nb, flags);
    if (!polopt__all_zero(h + 64, 72 - 64))
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: reserved header bytes are not zero", fn,
                            source);
    {
        /* each term is below SIZE_MAX / 4 by the checks above, but their sum is checked too */
        const size_t words = polopt__mul_size((size_t)nnz, flags ? 2 : 1, &ok) + (size_t)n_s;
        const size_t bytes = polopt__mul_size(words, 4, &ok);
        ok = ok && bytes <= SIZE_MAX - (size_t)nb;
        rc = polopt__payload_size_check(available, ok ? bytes + (size_t)nb : 0, polopt__get_u64(h + 72), &m->err,
                                        &m->hooks, fn, source);
    }
    if (rc != POLOPT_OK) return rc;
    if ((rc = polopt__interactions_alloc(m, (size_t)n_s, (size_t)n_i, (size_t)nnz, (size_t)nb, (int)flags)) != POLOPT_OK)
        return polopt__fail(&m->err, &m->hooks, rc, "%s: %s: cannot allocate %llu interactions", fn, source,
                            (unsigned long long)nnz);
    m->stats.filter_rounds = polopt__get_u32(h + 60);
    m->stats.rows = (size_t)polopt__get_u64(h + 88), m->stats.duplicates = (size_t)polopt__get_u64(h + 96);
    m->stats.dropped_sessions = (size_t)polopt__get_u64(h + 104);
    m->stats.dropped_items = (size_t)polopt__get_u64(h + 112);
    polopt__ck_init(&r->ck);
    for (m->offsets[0] = 0; s < m->n_sessions;) { /* the counts, summed into offsets; each session has an item */
        const size_t chunk = m->n_sessions - s < 256 ? m->n_sessions - s : 256;
        if ((rc = polopt__read_words(r, buf, chunk)) != POLOPT_OK) break;
        for (k = 0; k < chunk; ++k, ++s) {
            if (buf[k] == 0 || buf[k] > m->nnz - sum)
                return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: session %lu has %lu items (%s)", fn,
                                    source, (unsigned long)s, (unsigned long)buf[k],
                                    buf[k] ? "more than the file holds" : "a session has at least one");
            sum += buf[k];
            m->offsets[s + 1] = sum;
        }
    }
    if (rc == POLOPT_OK && sum != m->nnz)
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: the sessions hold %lu interactions; the "
                            "header says %lu", fn, source, (unsigned long)sum, (unsigned long)m->nnz);
    if (rc == POLOPT_OK) rc = polopt__read_words(r, m->items, m->nnz);
    if (rc == POLOPT_OK && m->weights) rc = polopt__read_words(r, m->weights, m->nnz);
    if (rc == POLOPT_OK) rc = polopt__read_bytes(r, m->names, m->names_bytes);
    if (rc != POLOPT_OK)
        return polopt__fail(&m->err, &m->hooks, rc, "%s: %s ends after %lu bytes", fn, source, (unsigned long)r->pos);
    if ((rc = polopt__payload_end_check(r, h, &m->err, &m->hooks, fn, source)) != POLOPT_OK) return rc;
    for (s = 0; s < m->n_sessions; ++s)
        for (i = m->offsets[s]; i < m->offsets[s + 1]; ++i)
            if (m->items[i] >= m->n_items || (i > m->offsets[s] && m->items[i] <= m->items[i - 1]))
                return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: session %lu: item %lu is %s", fn,
                                    source, (unsigned long)s, (unsigned long)m->items[i],
                                    m->items[i] >= m->n_items ? "outside the catalogue" : "out of order or repeated");
    for (i = 0; m->weights && i < m->nnz; ++i)
        if (!(m->weights[i] > 0.0f && m->weights[i] <= FLT_MAX))
            return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: weight %lu is not a finite number > 0",
                                fn, source, (unsigned long)i);
    { /* every item is in some session, as the reader makes it: the filters count on it, the SVD too */
        unsigned char *seen = (unsigned char *)polopt__alloc(&m->hooks, m->n_items, 1, &rc);
        if (!seen) return polopt__fail(&m->err, &m->hooks, rc, "%s: cannot allocate %lu bytes", fn,
                                       (unsigned long)m->n_items);
        memset(seen, 0, m->n_items);
        for (i = 0; i < m->nnz; ++i) seen[m->items[i]] = 1;
        for (k = 0; k < m->n_items && seen[k]; ++k) {}
        polopt__dealloc(&m->hooks, seen);
        if (k < m->n_items)
            return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_FORMAT, "%s: %s: item %lu is in no session", fn, source,
                                (unsigned long)k);
    }
    if ((rc = polopt__interactions_parse_names(m, fn, source)) != POLOPT_OK) return rc;
    return polopt__interactions_tables(m, fn, source);
}

static polopt_result polopt__interactions_read_cb(void *obj, polopt__io *r, size_t available, const char *fn,
                                                  const char *source)
{
    return polopt__interactions_read_file((polopt_interactions *)obj, r, available, fn, source);
}

static polopt_result polopt__interactions_load_any(polopt_interactions *m, const char *path, const void *buffer,
                                                   size_t size, const polopt_hooks *hooks, const char *fn)
{
    polopt_result rc;
    if (!m) return POLOPT_ERR_INVALID_ARG;
    memset(m, 0, sizeof *m);
    m->hooks = hooks ? *hooks : polopt__no_hooks;
    rc = polopt__load(path, buffer, size, polopt__interactions_read_cb, m, &m->err, &m->hooks, fn);
    if (rc != POLOPT_OK) POLOPT__ZERO_KEEPING_ERROR(m, polopt_interactions_free);
    else polopt__clear_error(&m->err);
    return rc;
}

POLOPT_DEF polopt_result polopt_interactions_load(polopt_interactions *m, const char *path, const polopt_hooks *hooks)
{
    if (m && !path) {
        memset(m, 0, sizeof *m);
        m->hooks = hooks ? *hooks : polopt__no_hooks;
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_INVALID_ARG, "polopt_interactions_load: path is NULL");
    }
    return polopt__interactions_load_any(m, path, NULL, 0, hooks, "polopt_interactions_load");
}

POLOPT_DEF polopt_result polopt_interactions_load_buffer(polopt_interactions *m, const void *buffer, size_t size,
                                                         const polopt_hooks *hooks)
{
    return polopt__interactions_load_any(m, NULL, buffer, size, hooks, "polopt_interactions_load_buffer");
}

/* >>svd --------------------------------------------------------------------------------------------------- */

POLOPT_DEF polopt_csr polopt_interactions_matrix(const polopt_interactions *m)
{
    polopt_csr A;
    memset(&A, 0, sizeof A);
    if (!m || !m->offsets) return A;
    A.n_rows = m->n_sessions, A.n_cols = m->n_items;
    A.offsets = m->offsets, A.cols = m->items, A.values = m->weights;
    return A;
}

POLOPT_DEF polopt_csr polopt_sets_matrix(const polopt_sets *sets, size_t n_cols)
{
    polopt_csr A;
    memset(&A, 0, sizeof A);
    if (!sets || !sets->offsets) return A;
    A.n_rows = sets->n, A.n_cols = n_cols, A.offsets = sets->offsets, A.cols = sets->items;
    return A;
}

POLOPT_DEF polopt_svd_config polopt_svd_config_default(size_t rank)
{
    polopt_svd_config c;
    memset(&c, 0, sizeof c);
    c.rank = rank;
    c.oversample = 20;
    c.power_iters = 6;
    c.seed = 1;
    return c;
}

/* Y (m x l) = A X (X: n x l): each row of Y a sum of rows of X.  O(nnz l). */
static void polopt__csr_mul(const polopt_csr *A, size_t l, const float *X, float *Y)
{
    const polopt__axpy_fn axpy = polopt__kern_auto()->axpy;
    size_t i, p;
    for (i = 0; i < A->n_rows; ++i) {
        float *y = Y + i * l;
        memset(y, 0, l * sizeof(float));
        for (p = A->offsets[i]; p < A->offsets[i + 1]; ++p)
            axpy(l, A->values ? A->values[p] : 1.0f, X + (size_t)A->cols[p] * l, y);
    }
}

/* X (n x l) = A^T Y (Y: m x l): each row of Y added to the rows of its columns.  O(nnz l). */
static void polopt__csr_mul_t(const polopt_csr *A, size_t l, const float *Y, float *X)
{
    const polopt__axpy_fn axpy = polopt__kern_auto()->axpy;
    size_t i, p;
    memset(X, 0, A->n_cols * l * sizeof(float));
    for (i = 0; i < A->n_rows; ++i)
        for (p = A->offsets[i]; p < A->offsets[i + 1]; ++p)
            axpy(l, A->values ? A->values[p] : 1.0f, Y + i * l, X + (size_t)A->cols[p] * l);
}

/* The eigenvalues lam and eigenvectors E (columns) of the symmetric n x n matrix G (destroyed), by cyclic Jacobi
   rotations (each zeroes one off-diagonal pair; sweeps until the off-diagonal part is below 1e-15 of the norm). */
static void polopt__jacobi_eigen(size_t n, double *G, double *E, double *lam)
{
    size_t i, j, k, sweep;
    for (i = 0; i < n * n; ++i) E[i] = 0.0;
    for (i = 0; i < n; ++i) E[i * n + i] = 1.0;
    for (sweep = 0; sweep < 100; ++sweep) {
        double off = 0.0, total = 0.0;
        for (i = 0; i < n; ++i)
            for (j = 0; j < n; ++j) {
                total += G[i * n + j] * G[i * n + j];
                if (i != j) off += G[i * n + j] * G[i * n + j];
            }
        if (off <= 1e-30 * total || total == 0.0) break;
        for (i = 0; i + 1 < n; ++i)
            for (j = i + 1; j < n; ++j) {
                const double gij = G[i * n + j];
                double theta, t, c, s;
                if (gij == 0.0) continue;
                theta = (G[j * n + j] - G[i * n + i]) / (2.0 * gij);
                t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (k = 0; k < n; ++k) { /* G <- J^T G J on rows and columns i, j; E <- E J */
                    const double a = G[k * n + i], b = G[k * n + j];
                    G[k * n + i] = c * a - s * b, G[k * n + j] = s * a + c * b;
                }
                for (k = 0; k < n; ++k) {
                    const double a = G[i * n + k], b = G[j * n + k];
                    G[i * n + k] = c * a - s * b, G[j * n + k] = s * a + c * b;
                }
                for (k = 0; k < n; ++k) {
                    const double a = E[k * n + i], b = E[k * n + j];
                    E[k * n + i] = c * a - s * b, E[k * n + j] = s * a + c * b;
                }
            }
    }
    for (i = 0; i < n; ++i) lam[i] = G[i * n + i];
}

/* The SVD of the square n x n matrix M (row-major, destroyed: it becomes W diag(s)) by one-sided Jacobi (Hestenes
   1958): rotations on the right orthogonalise the columns of M; then s_j = ||column j||, W = M diag(1/s) and
   M = W diag(s) Z^T.  Converges to column cosines below 1e-15. */
static void polopt__jacobi_svd(size_t n, double *M, double *Z, double *s)
{
    size_t i, j, k, sweep;
    for (i = 0; i < n * n; ++i) Z[i] = 0.0;
    for (i = 0; i < n; ++i) Z[i * n + i] = 1.0;
    for (sweep = 0; sweep < 100; ++sweep) {
        int rotated = 0;
        for (i = 0; i + 1 < n; ++i)
            for (j = i + 1; j < n; ++j) {
                double a = 0.0, b = 0.0, g = 0.0, zeta, t, c, sn;
                for (k = 0; k < n; ++k) {
                    a += M[k * n + i] * M[k * n + i], b += M[k * n + j] * M[k * n + j];
                    g += M[k * n + i] * M[k * n + j];
                }
                if (g == 0.0 || fabs(g) <= 1e-15 * sqrt(a * b)) continue;
                rotated = 1;
                zeta = (b - a) / (2.0 * g);
                t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1.0 + zeta * zeta));
                c = 1.0 / sqrt(1.0 + t * t), sn = c * t;
                for (k = 0; k < n; ++k) {
                    const double x = M[k * n + i], y = M[k * n + j];
                    M[k * n + i] = c * x - sn * y, M[k * n + j] = sn * x + c * y;
                }
                for (k = 0; k < n; ++k) {
                    const double x = Z[k * n + i], y = Z[k * n + j];
                    Z[k * n + i] = c * x - sn * y, Z[k * n + j] = sn * x + c * y;
                }
            }
        if (!rotated) break;
    }
    for (j = 0; j < n; ++j) {
        double norm = 0.0;
        for (k = 0; k < n; ++k) norm += M[k * n + j] * M[k * n + j];
        s[j] = sqrt(norm);
        for (k = 0; k < n && s[j] > 0.0; ++k) M[k * n + j] /= s[j];
    }
}

/* The l x l workspace of the SVD, in doubles: a Gram matrix, eigenvectors, eigenvalues; and l x l floats. */
typedef struct polopt__svd_work {
    size_t l;
    double *G, *E, *lam;
    float *T;
    polopt_rng rng;
} polopt__svd_work;

/* G = Y^T Y (rows x l) in double: float gemms over blocks of 2048 rows, summed in double, so that the error stays
   that of one block (about 2e-6 relative) however many rows there are. */
#define POLOPT__GRAM_BLOCK 2048
static void polopt__gram(const float *Y, size_t rows, polopt__svd_work *w)
{
    const size_t l = w->l;
    size_t r0, i;
    for (i = 0; i < l * l; ++i) w->G[i] = 0.0;
    for (r0 = 0; r0 < rows; r0 += POLOPT__GRAM_BLOCK) {
        const size_t b = rows - r0 < POLOPT__GRAM_BLOCK ? rows - r0 : POLOPT__GRAM_BLOCK;
        polopt__gemm(POLOPT_TRANS, POLOPT_NO_TRANS, l, l, b, 1.0f, Y + r0 * l, l, Y + r0 * l, l, 0.0f, w->T, l);
        for (i = 0; i < l * l; ++i) w->G[i] += w->T[i];
    }
}

/* Y (rows x l) orthonormalised in place (spare: rows x l).  A pass: Y^T Y = E diag(lambda) E^T (Jacobi), then
   Y <- Y E diag(lambda)^(-1/2), a direction with lambda <= 1e-7 lambda_max (dependent, to float precision: a
   matrix of rank below l) replaced by a random one.  Passes until Y^T Y is the identity to 1e-4 (two, as a
   rule: the second corrects the rounding of the first; more when a direction was replaced). */
static polopt_result polopt__orth(float *Y, size_t rows, float *spare, polopt__svd_work *w)
{
    const size_t l = w->l;
    size_t pass, i, j;
    float *in = Y, *out = spare;
    for (pass = 0; pass < 8; ++pass) {
        double lmax = 0.0, worst = 0.0;
        float *swap;
        polopt__gram(in, rows, w);
        for (i = 0; i < l * l; ++i)
            if (!(fabs(w->G[i]) <= DBL_MAX)) return POLOPT_ERR_NONFINITE; /* the products overflowed float */
        for (i = 0; i < l; ++i)
            for (j = 0; j < l; ++j) {
                const double d = fabs(w->G[i * l + j] - (i == j ? 1.0 : 0.0));
                worst = d > worst ? d : worst;
                w->G[i * l + j] = 0.5 * (w->G[i * l + j] + w->G[j * l + i]);
            }
        if (pass > 0 && worst <= 1e-4) break;
        polopt__jacobi_eigen(l, w->G, w->E, w->lam);
        for (j = 0; j < l; ++j) lmax = w->lam[j] > lmax ? w->lam[j] : lmax;
        for (j = 0; j < l; ++j) {
            const int keep = lmax > 0.0 && w->lam[j] > 1e-7 * lmax;
            for (i = 0; i < l; ++i) w->T[i * l + j] = keep ? (float)(w->E[i * l + j] / sqrt(w->lam[j])) : 0.0f;
        }
        polopt__gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, rows, l, l, 1.0f, in, l, w->T, l, 0.0f, out, l);
        for (j = 0; j < l; ++j) {
            if (lmax > 0.0 && w->lam[j] > 1e-7 * lmax) continue;
            for (i = 0; i < rows; ++i) out[i * l + j] = (float)polopt_rng_normal(&w->rng);
        }
        swap = in, in = out, out = swap;
    }
    if (in != Y) memcpy(Y, in, rows * l * sizeof(float));
    return POLOPT_OK;
}

static polopt_result polopt__svd_check(const polopt_csr *A, const polopt_svd_config *c, const float *out_s,
                                       const float *out_V, const char *fn)
{
    const polopt_hooks *hk = &c->hooks;
    size_t i, p;
    POLOPT__CHECK(NULL, hk, A && A->offsets && A->cols && out_s && out_V, "%s: A (its arrays), out_s or out_V is NULL",
                  fn);
    POLOPT__CHECK(NULL, hk, A->n_rows >= 1 && A->n_cols >= 1 && A->n_cols <= (size_t)POLOPT_NO_ITEM,
                  "%s: the matrix is %lu x %lu", fn, (unsigned long)A->n_rows, (unsigned long)A->n_cols);
    POLOPT__CHECK(NULL, hk, c->rank >= 1 && c->rank <= A->n_rows && c->rank <= A->n_cols,
                  "%s: config.rank = %lu must be in [1, min(%lu, %lu)]", fn, (unsigned long)c->rank,
                  (unsigned long)A->n_rows, (unsigned long)A->n_cols);
    POLOPT__CHECK(NULL, hk, c->oversample <= 4096 && c->power_iters <= 1000,
                  "%s: config.oversample = %lu (at most 4096) or config.power_iters = %lu (at most 1000)", fn,
                  (unsigned long)c->oversample, (unsigned long)c->power_iters);
    POLOPT__CHECK(NULL, hk, A->offsets[0] == 0, "%s: A.offsets[0] = %lu must be 0", fn, (unsigned long)A->offsets[0]);
    for (i = 0; i < A->n_rows; ++i) {
        POLOPT__CHECK(NULL, hk, A->offsets[i + 1] >= A->offsets[i], "%s: A.offsets decrease at row %lu", fn,
                      (unsigned long)i);
        for (p = A->offsets[i]; p < A->offsets[i + 1]; ++p) {
            POLOPT__CHECK(NULL, hk, A->cols[p] < A->n_cols, "%s: row %lu: column %lu is not below %lu", fn,
                          (unsigned long)i, (unsigned long)A->cols[p], (unsigned long)A->n_cols);
            POLOPT__CHECK(NULL, hk, !A->values || fabsf(A->values[p]) <= FLT_MAX, "%s: row %lu: value %lu is not finite",
                          fn, (unsigned long)i, (unsigned long)p);
        }
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_svd_sparse(const polopt_csr *A, const polopt_svd_config *config, float *out_s,
                                           float *out_V, float *out_U)
{
    static const char *fn = "polopt_svd_sparse";
    polopt_svd_config c;
    polopt__svd_work w;
    polopt_result rc = POLOPT_OK;
    float *Y = NULL, *X = NULL, *Q2 = NULL, *spare = NULL;
    double *M = NULL, *Z = NULL, *s = NULL;
    size_t l, m, n, q, i, j, *order = NULL;
    if (!config) return POLOPT_ERR_INVALID_ARG;
    c = *config;
    if ((rc = polopt__svd_check(A, &c, out_s, out_V, fn)) != POLOPT_OK) return rc;
    m = A->n_rows, n = A->n_cols;
    l = c.rank + c.oversample;
    l = l < m ? l : m, l = l < n ? l : n;
    memset(&w, 0, sizeof w);
    w.l = l;
    polopt_rng_seed(&w.rng, c.seed);
    Y = (float *)polopt__alloc(&c.hooks, m, l * sizeof(float), &rc);
    if (Y) X = (float *)polopt__alloc(&c.hooks, n, l * sizeof(float), &rc);
    if (X) Q2 = (float *)polopt__alloc(&c.hooks, n, l * sizeof(float), &rc);
    if (Q2) spare = (float *)polopt__alloc(&c.hooks, m > n ? m : n, l * sizeof(float), &rc);
    if (spare) w.G = (double *)polopt__alloc(&c.hooks, 5 * l * l + 2 * l, sizeof(double), &rc);
    if (w.G) w.T = (float *)polopt__alloc(&c.hooks, l * l, sizeof(float), &rc);
    if (w.T) order = (size_t *)polopt__alloc(&c.hooks, l, sizeof(size_t), &rc);
    if (rc != POLOPT_OK) {
        rc = polopt__fail(NULL, &c.hooks, rc, "%s: cannot allocate the workspace ((%lu + 3 x %lu) x %lu floats)", fn,
                          (unsigned long)m, (unsigned long)n, (unsigned long)l);
        goto done;
    }
    w.E = w.G + l * l, M = w.E + l * l, Z = M + l * l, w.lam = Z + l * l, s = w.lam + l;
    /* 1-2: the range of A, sharpened by power passes with orthonormalisation between every product */
    polopt__rng_normals(&w.rng, n * l, X);
    polopt__csr_mul(A, l, X, Y);
    rc = polopt__orth(Y, m, spare, &w);
    for (q = 0; q < c.power_iters && rc == POLOPT_OK; ++q) {
        polopt__csr_mul_t(A, l, Y, X);
        if ((rc = polopt__orth(X, n, spare, &w)) != POLOPT_OK) break;
        polopt__csr_mul(A, l, X, Y);
        rc = polopt__orth(Y, m, spare, &w);
    }
    /* 3: B^T = A^T Q = Q2 R, R = W diag(s) Z^T */
    if (rc == POLOPT_OK) {
        polopt__csr_mul_t(A, l, Y, X);
        memcpy(Q2, X, n * l * sizeof(float));
        rc = polopt__orth(Q2, n, spare, &w);
    }
    if (rc == POLOPT_OK) {
        polopt__gemm(POLOPT_TRANS, POLOPT_NO_TRANS, l, l, n, 1.0f, Q2, l, X, l, 0.0f, w.T, l);
        rc = polopt_check_finite(l * l, w.T, &i);
    }
    if (rc != POLOPT_OK) {
        rc = polopt__fail(NULL, &c.hooks, POLOPT_ERR_NONFINITE, "%s: a product overflows float (values up to about "
                          "1e19 / sqrt(nonzeros per row) are safe)", fn);
        goto done;
    }
    for (i = 0; i < l * l; ++i) M[i] = w.T[i];
    polopt__jacobi_svd(l, M, Z, s); /* M is now W */
    for (i = 0; i < l; ++i) order[i] = i;
    for (i = 1; i < l; ++i) { /* decreasing s, insertion sort of l indices */
        const size_t o = order[i];
        for (j = i; j > 0 && s[order[j - 1]] < s[o]; --j) order[j] = order[j - 1];
        order[j] = o;
    }
    /* V = Q2 W and U = Q Z, the first k columns in that order, signs fixed by V */
    for (i = 0; i < l * l; ++i) w.T[i] = (float)M[i];
    polopt__gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, n, l, l, 1.0f, Q2, l, w.T, l, 0.0f, spare, l);
    for (j = 0; j < c.rank; ++j) {
        const size_t o = order[j];
        float big = 0.0f;
        for (i = 0; i < n; ++i) big = fabsf(spare[i * l + o]) > fabsf(big) ? spare[i * l + o] : big;
        w.lam[j] = big < 0.0f ? -1.0 : 1.0; /* the sign of column j */
        for (i = 0; i < n; ++i) out_V[i * c.rank + j] = (float)w.lam[j] * spare[i * l + o];
        out_s[j] = (float)s[o];
    }
    if (out_U) {
        for (i = 0; i < l * l; ++i) w.T[i] = (float)Z[i];
        polopt__gemm(POLOPT_NO_TRANS, POLOPT_NO_TRANS, m, l, l, 1.0f, Y, l, w.T, l, 0.0f, spare, l);
        for (j = 0; j < c.rank; ++j)
            for (i = 0; i < m; ++i) out_U[i * c.rank + j] = (float)w.lam[j] * spare[i * l + order[j]];
    }
done:
    polopt__dealloc(&c.hooks, Y);
    polopt__dealloc(&c.hooks, X);
    polopt__dealloc(&c.hooks, Q2);
    polopt__dealloc(&c.hooks, spare);
    polopt__dealloc(&c.hooks, w.G);
    polopt__dealloc(&c.hooks, w.T);
    polopt__dealloc(&c.hooks, order);
    return rc;
}

POLOPT_DEF polopt_result polopt_svd_embed(size_t n, size_t k, const float *V, const float *s, double alpha,
                                          float *out)
{
    size_t i, j;
    if (!V || !s || !out || k == 0 || !(alpha >= -16.0 && alpha <= 16.0)) return POLOPT_ERR_INVALID_ARG;
    for (j = 0; j < k; ++j)
        if (!(s[j] > 0.0f && s[j] <= FLT_MAX)) return POLOPT_ERR_DOMAIN;
    for (j = 0; j < k; ++j) { /* column by column: one power per singular value */
        const float f = (float)pow((double)s[j], alpha);
        for (i = 0; i < n; ++i) out[i * k + j] = V[i * k + j] * f;
    }
    return POLOPT_OK;
}

/* >>completion -------------------------------------------------------------------------------------------- */

POLOPT_DEF polopt_completion_config polopt_completion_config_default(void)
{
    polopt_completion_config c;
    memset(&c, 0, sizeof c);
    c.val_fraction = 0.1;
    c.test_fraction = 0.1;
    c.observed_fraction = 0.5;
    c.seed = 1;
    return c;
}

POLOPT_DEF void polopt_completion_free(polopt_completion *split)
{
    polopt_hooks h;
    int p;
    if (!split) return;
    h = split->hooks;
    for (p = 0; p < 3; ++p) {
        polopt__dealloc(&h, split->sessions[p]);
        polopt_sets_free(&split->observed[p]);
        polopt_sets_free(&split->held_out[p]);
        polopt_sets_free(&split->whole[p]);
    }
    memset(split, 0, sizeof *split);
}

static polopt_result polopt__completion_init_impl(polopt_completion *sp, const polopt_interactions *log,
                                                  const polopt_completion_config *config)
{
    static const char *fn = "polopt_completion_init";
    polopt_completion_config c;
    polopt_result rc = POLOPT_OK;
    polopt_rng rng;
    uint32_t *order = NULL, *part_of = NULL, *items = NULL, *obs = NULL, *held = NULL;
    size_t *obs_off = NULL, *held_off = NULL, s, S, n_split = 0, cut[3], most = 0;
    int p;
    if (!sp) return POLOPT_ERR_INVALID_ARG;
    memset(sp, 0, sizeof *sp);
    c = config ? *config : polopt_completion_config_default();
    sp->hooks = c.hooks;
    POLOPT__CHECK(&sp->err, &c.hooks, log && log->offsets, "%s: the log is NULL or not loaded", fn);
    if ((rc = polopt__check_range(&sp->err, &c.hooks, fn, "val_fraction", c.val_fraction, 0.0, POLOPT__CLOSED, 1.0,
                                  POLOPT__OPEN)) ||
        (rc = polopt__check_range(&sp->err, &c.hooks, fn, "test_fraction", c.test_fraction, 0.0, POLOPT__CLOSED, 1.0,
                                  POLOPT__OPEN)) ||
        (rc = polopt__check_range(&sp->err, &c.hooks, fn, "observed_fraction", c.observed_fraction, 0.0,
                                  POLOPT__OPEN, 1.0, POLOPT__OPEN)))
        return rc;
    POLOPT__CHECK(&sp->err, &c.hooks, c.val_fraction + c.test_fraction < 1.0,
                  "%s: val_fraction + test_fraction = %g leaves no training sessions", fn,
                  c.val_fraction + c.test_fraction);
    S = log->n_sessions;
    sp->n_items = log->n_items;
    order = (uint32_t *)polopt__alloc(&c.hooks, S, sizeof(uint32_t), &rc);
    if (order) part_of = (uint32_t *)polopt__alloc(&c.hooks, S, sizeof(uint32_t), &rc);
    if (rc != POLOPT_OK) goto nomem;
    for (s = 0; s < S; ++s) {
        const size_t len = log->offsets[s + 1] - log->offsets[s];
        most = len > most ? len : most;
        if (len >= 2) order[n_split++] = (uint32_t)s;
    }
    sp->skipped = S - n_split;
    if (n_split == 0) {
        rc = polopt__fail(&sp->err, &c.hooks, POLOPT_ERR_DOMAIN, "%s: no session has two items to split", fn);
        goto done;
    }
    polopt_rng_seed(&rng, c.seed);
    polopt_rng_shuffle(&rng, n_split, order);
    cut[2] = (size_t)floor(c.test_fraction * (double)n_split + 0.5);  /* the first test sessions of the order */
    cut[1] = (size_t)floor(c.val_fraction * (double)n_split + 0.5);   /* then the validation ones */
    if (cut[1] + cut[2] >= n_split) cut[1] = n_split - cut[2] - 1;     /* at least one training session */
    cut[0] = n_split - cut[1] - cut[2];
    for (s = 0; s < S; ++s) part_of[s] = 3; /* skipped */
    for (s = 0; s < n_split; ++s)
        part_of[order[s]] = s < cut[2] ? POLOPT_PART_TEST : s < cut[2] + cut[1] ? POLOPT_PART_VAL : POLOPT_PART_TRAIN;
    items = (uint32_t *)polopt__alloc(&c.hooks, most, sizeof(uint32_t), &rc);
    for (p = 0; p < 3 && rc == POLOPT_OK; ++p) {
        size_t j = 0, nnz_o = 0, nnz_h = 0;
        sp->n[p] = cut[p];
        sp->sessions[p] = (uint32_t *)polopt__alloc(&c.hooks, cut[p] ? cut[p] : 1, sizeof(uint32_t), &rc);
        if (rc == POLOPT_OK) obs_off = (size_t *)polopt__alloc(&c.hooks, cut[p] + 1, sizeof(size_t), &rc);
        if (rc == POLOPT_OK) held_off = (size_t *)polopt__alloc(&c.hooks, cut[p] + 1, sizeof(size_t), &rc);
        for (s = 0; s < S && rc == POLOPT_OK; ++s)
            if (part_of[s] == (uint32_t)p) {
                const size_t len = log->offsets[s + 1] - log->offsets[s];
                size_t nx = (size_t)floor(c.observed_fraction * (double)len);
                nx = nx < 1 ? 1 : nx > len - 1 ? len - 1 : nx;
                sp->sessions[p][j++] = (uint32_t)s;
                nnz_o += nx, nnz_h += len - nx;
            }
        if (rc == POLOPT_OK) obs = (uint32_t *)polopt__alloc(&c.hooks, nnz_o + nnz_h, sizeof(uint32_t), &rc);
        if (rc == POLOPT_OK) held = (uint32_t *)polopt__alloc(&c.hooks, nnz_h ? nnz_h : 1, sizeof(uint32_t), &rc);
        if (rc != POLOPT_OK) break;
        obs_off[0] = held_off[0] = 0;
        for (j = 0; j < cut[p]; ++j) { /* a random order of the session's items: its first nx are X */
            const size_t s2 = sp->sessions[p][j], len = log->offsets[s2 + 1] - log->offsets[s2];
            size_t nx = (size_t)floor(c.observed_fraction * (double)len), t;
            nx = nx < 1 ? 1 : nx > len - 1 ? len - 1 : nx;
            memcpy(items, log->items + log->offsets[s2], len * sizeof(uint32_t));
            polopt_rng_shuffle(&rng, len, items);
            for (t = 0; t < nx; ++t) obs[obs_off[j] + t] = items[t];
            for (t = nx; t < len; ++t) held[held_off[j] + t - nx] = items[t];
            obs_off[j + 1] = obs_off[j] + nx;
            held_off[j + 1] = held_off[j] + len - nx;
        }
        rc = polopt_sets_init(&sp->observed[p], cut[p], obs_off, obs, &c.hooks); /* sorts each row */
        if (rc == POLOPT_OK) rc = polopt_sets_init(&sp->held_out[p], cut[p], held_off, held, &c.hooks);
        for (j = 0; j < cut[p] && rc == POLOPT_OK; ++j) { /* the whole sessions: X and Y, back to back */
            const size_t nx = obs_off[j + 1] - obs_off[j], ny = held_off[j + 1] - held_off[j];
            uint32_t *row = obs + obs_off[j] + held_off[j];
            memcpy(row, sp->observed[p].items + sp->observed[p].offsets[j], nx * sizeof(uint32_t));
            memcpy(row + nx, sp->held_out[p].items + sp->held_out[p].offsets[j], ny * sizeof(uint32_t));
        }
        if (rc == POLOPT_OK) {
            for (j = 0; j <= cut[p]; ++j) obs_off[j] += held_off[j];
            rc = polopt_sets_init(&sp->whole[p], cut[p], obs_off, obs, &c.hooks);
        }
        polopt__dealloc(&c.hooks, obs_off), polopt__dealloc(&c.hooks, held_off);
        polopt__dealloc(&c.hooks, obs), polopt__dealloc(&c.hooks, held);
        obs_off = held_off = NULL, obs = held = NULL;
    }
    polopt__dealloc(&c.hooks, obs_off), polopt__dealloc(&c.hooks, held_off);
    polopt__dealloc(&c.hooks, obs), polopt__dealloc(&c.hooks, held);
    polopt__dealloc(&c.hooks, items);
nomem:
    if (rc != POLOPT_OK)
        polopt__fail(&sp->err, &c.hooks, rc, "%s: cannot allocate the split of %lu sessions", fn, (unsigned long)S);
done:
    polopt__dealloc(&c.hooks, order);
    polopt__dealloc(&c.hooks, part_of);
    return rc;
}

POLOPT_DEF polopt_result polopt_completion_init(polopt_completion *split, const polopt_interactions *log,
                                                const polopt_completion_config *config)
{
    const polopt_result rc = polopt__completion_init_impl(split, log, config);
    if (rc != POLOPT_OK && split) POLOPT__ZERO_KEEPING_ERROR(split, polopt_completion_free);
    else if (split) polopt__clear_error(&split->err);
    return rc;
}

POLOPT_DEF polopt_csr polopt_completion_matrix(const polopt_completion *split, polopt_part part)
{
    polopt_csr A;
    memset(&A, 0, sizeof A);
    if (!split || (int)part < 0 || (int)part > 2) return A;
    return polopt_sets_matrix(&split->whole[part], split->n_items);
}

POLOPT_DEF polopt_result polopt_completion_contexts(const polopt_completion *split, polopt_part part,
                                                    const float *beta, size_t L, float *out_X)
{
    static const char *fn = "polopt_completion_contexts";
    const polopt_sets *X;
    size_t j, t;
    if (!split) return POLOPT_ERR_INVALID_ARG;
    if (!split->sessions[0]) return polopt__not_ready(NULL, &split->hooks, fn, "split");
    if ((int)part < 0 || (int)part > 2 || !beta || !out_X || L == 0)
        return polopt__fail(NULL, &split->hooks, POLOPT_ERR_INVALID_ARG, "%s: bad part, beta, L or out_X", fn);
    X = &split->observed[part];
    for (j = 0; j < split->n[part]; ++j) {
        const size_t len = X->offsets[j + 1] - X->offsets[j];
        float *x = out_X + j * L;
        memset(x, 0, L * sizeof(float));
        for (t = X->offsets[j]; t < X->offsets[j + 1]; ++t)
            polopt__axpy(L, 1.0f / (float)len, beta + (size_t)X->items[t] * L, x);
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_dataset polopt_completion_dataset(const polopt_completion *split, polopt_part part, const float *X,
                                                    size_t ldx)
{
    polopt_dataset d;
    memset(&d, 0, sizeof d);
    if (!split || (int)part < 0 || (int)part > 2 || !split->held_out[part].offsets) return d;
    d.n = split->n[part], d.X = X, d.ldx = ldx;
    d.reward = polopt_sets_reward, d.reward_user = (void *)&split->held_out[part];
    d.relevant = &split->held_out[part];
    return d;
}

/* >>ope --------------------------------------------------------------------------------------------------- */

/* The terms of a row (with c its bootstrap count, 1 in the main estimate), whose sums give every estimator, with
   d = r - q and v_e(w) each estimator's modified weight:
     t0 = 1        t1 = w r        t2 = v_cIPS r   t3 = w          t4 = v_SGIPS r    t5 = dm
     t6 = w d      t7 = v_cDR d    t8 = v_sw d     t9 = v_DRos d   t10 = v_SGDR d
   IPS = S1/S0, clipped IPS = S2/S0, SNIPS = S1/S3, SG-IPS = S4/S0, DM = S5/S0, DR = (S5+S6)/S0, clipped DR =
   (S5+S7)/S0, SNDR = S5/S0 + S6/S3, Switch-DR = (S5+S8)/S0, DRos = (S5+S9)/S0, SG-DR = (S5+S10)/S0.
   Every standard error is that of a linear combination a^T t of the terms: for the means the combination itself
   (DR: t5 + t6), for SNIPS and SNDR their influence functions (the delta method).  So the accumulator keeps the
   co-moment matrix C of t1..t10, and Var(a^T t) = a^T C a / (n - 1).  C is updated row by row as Welford does for a
   variance (deviations from the running mean), which keeps its precision where sum t^2 - n mean^2 would cancel. */
#define POLOPT__OPE_MOMENTS (POLOPT_OPE_TERMS - 1)
#define POLOPT__OPE_GRID_MAX 64 /* levels a tuning grid may hold */
#define POLOPT__OPE_FORMS 7 /* the weight forms: w, then v of clipped IPS, SG-IPS, clipped DR, Switch-DR, DRos, SG-DR */

static const char *const polopt__ope_names[POLOPT_OPE_COUNT] = {
    "IPS", "clipped IPS", "SNIPS", "SG-IPS", "DM", "DR", "clipped DR", "SNDR", "Switch-DR", "DRos", "SG-DR"};

POLOPT_DEF const char *polopt_ope_name(polopt_ope_estimator estimator)
{
    return (int)estimator >= 0 && estimator < POLOPT_OPE_COUNT ? polopt__ope_names[estimator] : "unknown estimator";
}

POLOPT_DEF int polopt_ope_has_level(polopt_ope_estimator e)
{
    return e == POLOPT_OPE_CLIPPED_IPS || e == POLOPT_OPE_SG_IPS || e == POLOPT_OPE_CLIPPED_DR ||
           e == POLOPT_OPE_SWITCH_DR || e == POLOPT_OPE_DROS || e == POLOPT_OPE_SG_DR;
}

/* The weight form (0: w itself) and the term (see above) of each estimator's weight. */
static int polopt__ope_form(polopt_ope_estimator e)
{
    switch (e) {
    case POLOPT_OPE_CLIPPED_IPS: return 1;
    case POLOPT_OPE_SG_IPS: return 2;
    case POLOPT_OPE_CLIPPED_DR: return 3;
    case POLOPT_OPE_SWITCH_DR: return 4;
    case POLOPT_OPE_DROS: return 5;
    case POLOPT_OPE_SG_DR: return 6;
    default: return 0;
    }
}

/* v_e(w): the weight estimator e puts on a row of weight w, at level lambda. */
static double polopt__ope_weight(polopt_ope_estimator e, double lambda, double w)
{
    switch (e) {
    case POLOPT_OPE_CLIPPED_IPS:
    case POLOPT_OPE_CLIPPED_DR: return w < lambda ? w : lambda;
    case POLOPT_OPE_SWITCH_DR: return w <= lambda ? w : 0.0;
    case POLOPT_OPE_DROS: /* lambda w / (w^2 + lambda), written so that lambda = infinity gives w */
        return lambda > DBL_MAX ? w : lambda > 0.0 && w > 0.0 ? w / (w / lambda * w + 1.0) : 0.0;
    case POLOPT_OPE_SG_IPS:
    case POLOPT_OPE_SG_DR: { /* w / (1 - lambda + lambda w); 0 for w = 0 (also at lambda = 1) */
        const double den = 1.0 - lambda + lambda * w;
        return w > 0.0 ? w / den : 0.0;
    }
    default: return w;
    }
}

POLOPT_DEF polopt_ope_config polopt_ope_config_default(void)
{
    polopt_ope_config c;
    memset(&c, 0, sizeof c);
    c.lambda[POLOPT_OPE_CLIPPED_IPS] = c.lambda[POLOPT_OPE_CLIPPED_DR] = 10.0;
    c.lambda[POLOPT_OPE_SWITCH_DR] = 10.0;
    c.lambda[POLOPT_OPE_DROS] = 100.0;
    c.lambda[POLOPT_OPE_SG_IPS] = c.lambda[POLOPT_OPE_SG_DR] = 0.1;
    c.delta = 0.05;
    c.bootstrap = 200;
    c.confidence = 0.95;
    c.seed = 1;
    return c;
}

/* A level's check: the cap of clipping (> 0), the switch and the shrinkage (>= 0; infinity allowed), SG's in [0, 1]. */
static int polopt__ope_level_ok(polopt_ope_estimator e, double v)
{
    if (v != v) return 0;
    if (e == POLOPT_OPE_SG_IPS || e == POLOPT_OPE_SG_DR) return v >= 0.0 && v <= 1.0;
    if (e == POLOPT_OPE_CLIPPED_IPS || e == POLOPT_OPE_CLIPPED_DR) return v > 0.0;
    return v >= 0.0;
}

static polopt_result polopt__ope_check_config(const polopt_ope_config *c, polopt_error *err, const char *fn)
{
    polopt_result rc;
    int e;
    size_t i;
    for (e = 0; e < POLOPT_OPE_COUNT; ++e)
        if (polopt_ope_has_level((polopt_ope_estimator)e) && !polopt__ope_level_ok((polopt_ope_estimator)e, c->lambda[e]))
            return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.lambda[%s] = %g is outside its range "
                                "(clipping: > 0; switching, DRos: >= 0; SG: [0, 1])", fn, polopt__ope_names[e],
                                c->lambda[e]);
    if ((rc = polopt__check_range(err, &c->hooks, fn, "confidence", c->confidence, 0, POLOPT__OPEN, 1, POLOPT__OPEN)) != POLOPT_OK ||
        (rc = polopt__check_range(err, &c->hooks, fn, "delta", c->delta, 0, POLOPT__OPEN, 1, POLOPT__OPEN)) != POLOPT_OK)
        return rc;
    if (c->bootstrap > 100000)
        return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.bootstrap = %lu is above 100000", fn,
                            (unsigned long)c->bootstrap);
    if (c->tune != POLOPT_TUNE_NONE && c->tune != POLOPT_TUNE_MSE && c->tune != POLOPT_TUNE_SLOPE)
        return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.tune = %d is unknown", fn, (int)c->tune);
    if ((!c->grid) != (c->grid_n == 0) || (!c->sg_grid) != (c->sg_grid_n == 0))
        return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: a grid and its length must be given together",
                            fn);
    if (c->grid_n > POLOPT__OPE_GRID_MAX || c->sg_grid_n > POLOPT__OPE_GRID_MAX)
        return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: a grid has more than %d levels", fn,
                            POLOPT__OPE_GRID_MAX);
    for (i = 0; i < c->grid_n; ++i)
        if (!(c->grid[i] >= 0.0))
            return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.grid[%lu] = %g is not a level >= 0",
                                fn, (unsigned long)i, c->grid[i]);
    for (i = 0; i < c->sg_grid_n; ++i)
        if (!(c->sg_grid[i] >= 0.0 && c->sg_grid[i] <= 1.0))
            return polopt__fail(err, &c->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.sg_grid[%lu] = %g is outside [0, 1]",
                                fn, (unsigned long)i, c->sg_grid[i]);
    return POLOPT_OK;
}

static polopt_result polopt__ope_acc_init_impl(polopt_ope_acc *acc, const polopt_ope_config *config)
{
    static const char *fn = "polopt_ope_acc_init";
    polopt_result rc = POLOPT_OK;
    const polopt_ope_config c = config ? *config : polopt_ope_config_default();
    if (!acc) return POLOPT_ERR_INVALID_ARG;
    memset(acc, 0, sizeof *acc);
    acc->config = c;
    if ((rc = polopt__ope_check_config(&c, &acc->err, fn)) != POLOPT_OK) return rc;
    if (c.bootstrap) {
        acc->boot = (double *)polopt__alloc(&c.hooks, c.bootstrap, POLOPT_OPE_TERMS * sizeof(double), &rc);
        if (!acc->boot) return polopt__fail(&acc->err, &c.hooks, rc, "%s: cannot allocate the bootstrap", fn);
        memset(acc->boot, 0, c.bootstrap * POLOPT_OPE_TERMS * sizeof(double));
    }
    acc->has_model = -1; /* decided by the first rows */
    acc->w_min = HUGE_VAL, acc->w_max = 0.0;
    polopt__rng_seed(&acc->rng, c.seed);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_ope_acc_init(polopt_ope_acc *acc, const polopt_ope_config *config)
{
    const polopt_result rc = polopt__ope_acc_init_impl(acc, config);
    if (rc != POLOPT_OK && acc) POLOPT__ZERO_KEEPING_ERROR(acc, polopt_ope_acc_free);
    return rc;
}

POLOPT_DEF void polopt_ope_acc_free(polopt_ope_acc *acc)
{
    if (!acc) return;
    polopt__dealloc(&acc->config.hooks, acc->boot);
    memset(acc, 0, sizeof *acc);
}

/* A Poisson(1) count by inversion: P(k) = e^-1 / k!. */
static int polopt__poisson1(polopt_rng *rng)
{
    double u = polopt__rng_uniform(rng), p = 0.36787944117144233, cdf = p;
    int k = 0;
    while (u >= cdf && k < 20) {
        ++k;
        p /= k;
        cdf += p;
    }
    return k;
}

/* s += x, compensated (Neumaier's variant of Kahan summation): the lost low part of each addition goes into *c. */
static POLOPT__INLINE void polopt__sum_add(double *s, double *c, double x)
{
    const double t = *s + x;
    *c += fabs(*s) >= fabs(x) ? (*s - t) + x : (x - t) + *s;
    *s = t;
}

/* The eleven terms of a row (see above). */
static void polopt__ope_terms(const polopt_ope_config *c, double w, double r, double q, double dm, double *t,
                              double *v)
{
    const double d = r - q;
    int f;
    v[0] = w;
    v[1] = polopt__ope_weight(POLOPT_OPE_CLIPPED_IPS, c->lambda[POLOPT_OPE_CLIPPED_IPS], w);
    v[2] = polopt__ope_weight(POLOPT_OPE_SG_IPS, c->lambda[POLOPT_OPE_SG_IPS], w);
    v[3] = polopt__ope_weight(POLOPT_OPE_CLIPPED_DR, c->lambda[POLOPT_OPE_CLIPPED_DR], w);
    v[4] = polopt__ope_weight(POLOPT_OPE_SWITCH_DR, c->lambda[POLOPT_OPE_SWITCH_DR], w);
    v[5] = polopt__ope_weight(POLOPT_OPE_DROS, c->lambda[POLOPT_OPE_DROS], w);
    v[6] = polopt__ope_weight(POLOPT_OPE_SG_DR, c->lambda[POLOPT_OPE_SG_DR], w);
    t[0] = 1.0, t[1] = w * r, t[2] = v[1] * r, t[3] = w, t[4] = v[2] * r, t[5] = dm;
    for (f = 0; f < 4; ++f) t[7 + f] = v[3 + f] * d;
    t[6] = w * d;
}

POLOPT_DEF polopt_result polopt_ope_acc_add(polopt_ope_acc *acc, size_t n, const double *w, const double *r,
                                           const double *q, const double *dm)
{
    static const char *fn = "polopt_ope_acc_add";
    size_t i, b;
    if (!acc) return POLOPT_ERR_INVALID_ARG;
    if (!(acc->config.confidence > 0.0)) /* validated in (0, 1): zero only in a zeroed accumulator */
        return polopt__not_ready(&acc->err, &acc->config.hooks, fn, "accumulator");
    if (n && (!w || !r))
        return polopt__fail(&acc->err, &acc->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: w or r is NULL", fn);
    if (!q != !dm || (acc->has_model >= 0 && acc->has_model != (q != NULL)))
        return polopt__fail(&acc->err, &acc->config.hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: q and dm must be given together, in every call or in none", fn);
    for (i = 0; i < n; ++i) /* check everything first: a bad row changes nothing */
        if (!(w[i] >= 0.0 && w[i] <= DBL_MAX) || !(fabs(r[i]) <= DBL_MAX) ||
            (q && (!(fabs(q[i]) <= DBL_MAX) || !(fabs(dm[i]) <= DBL_MAX))))
            return polopt__fail(&acc->err, &acc->config.hooks, POLOPT_ERR_NONFINITE,
                                "%s: row %lu of this call has a weight that is negative or not finite, or a non-finite "
                                "reward or model value", fn, (unsigned long)i);
    acc->has_model = q != NULL;
    for (i = 0; i < n; ++i) {
        double t[POLOPT_OPE_TERMS], v[POLOPT__OPE_FORMS], dev[POLOPT__OPE_MOMENTS], *mean = acc->mean;
        double *C = acc->comoment;
        const double rows = (double)(acc->n + i + 1);
        int j, k;
        polopt__ope_terms(&acc->config, w[i], r[i], q ? q[i] : 0.0, dm ? dm[i] : 0.0, t, v);
        for (k = 0; k < POLOPT_OPE_TERMS; ++k) polopt__sum_add(&acc->sum[k], &acc->sum_c[k], t[k]);
        for (j = 0; j < POLOPT__OPE_MOMENTS; ++j) { /* Welford: C += (t - old mean)(t - new mean)^T */
            dev[j] = t[j + 1] - mean[j];
            mean[j] += dev[j] / rows;
        }
        for (j = 0; j < POLOPT__OPE_MOMENTS; ++j)
            for (k = j; k < POLOPT__OPE_MOMENTS; ++k) C[j * POLOPT__OPE_MOMENTS + k] += dev[j] * (t[k + 1] - mean[k]);
        for (k = 0; k < POLOPT__OPE_FORMS; ++k) acc->v_sum[k] += v[k], acc->v_sq[k] += v[k] * v[k];
        if (w[i] < acc->w_min) acc->w_min = w[i];
        if (w[i] > acc->w_max) acc->w_max = w[i];
        acc->above[0] += w[i] > 2.0, acc->above[1] += w[i] > 5.0, acc->above[2] += w[i] > 10.0;
        acc->above[3] += w[i] > 20.0;
        for (b = 0; b < acc->config.bootstrap; ++b) { /* Poisson bootstrap: no stored rows */
            const int count = polopt__poisson1(&acc->rng);
            double *bs = acc->boot + b * POLOPT_OPE_TERMS;
            if (count)
                for (k = 0; k < POLOPT_OPE_TERMS; ++k) bs[k] += count * t[k];
        }
    }
    acc->n += n;
    return POLOPT_OK;
}

/* Every estimate from the sums of the terms (an undefined ratio, with no weight at all, is 0). */
static void polopt__ope_values(const double *S, double *v)
{
    const double inv0 = S[0] > 0 ? 1.0 / S[0] : 0.0, inv3 = S[3] > 0 ? 1.0 / S[3] : 0.0;
    v[POLOPT_OPE_IPS] = S[1] * inv0;
    v[POLOPT_OPE_CLIPPED_IPS] = S[2] * inv0;
    v[POLOPT_OPE_SNIPS] = S[1] * inv3;
    v[POLOPT_OPE_SG_IPS] = S[4] * inv0;
    v[POLOPT_OPE_DM] = S[5] * inv0;
    v[POLOPT_OPE_DR] = (S[5] + S[6]) * inv0;
    v[POLOPT_OPE_CLIPPED_DR] = (S[5] + S[7]) * inv0;
    v[POLOPT_OPE_SNDR] = S[5] * inv0 + S[6] * inv3;
    v[POLOPT_OPE_SWITCH_DR] = (S[5] + S[8]) * inv0;
    v[POLOPT_OPE_DROS] = (S[5] + S[9]) * inv0;
    v[POLOPT_OPE_SG_DR] = (S[5] + S[10]) * inv0;
}

static int polopt__cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of n sorted values, interpolated between neighbours. */
static double polopt__quantile(const double *v, size_t n, double q)
{
    const double at = q * (double)(n - 1);
    const size_t lo = (size_t)at;
    return lo + 1 < n ? v[lo] + (at - (double)lo) * (v[lo + 1] - v[lo]) : v[n - 1];
}

static int polopt__finite_doubles(size_t n, const double *x)
{
    size_t i;
    for (i = 0; i < n; ++i)
        if (!(fabs(x[i]) <= DBL_MAX)) return 0;
    return 1;
}

/* a^T C a for the co-moments C (upper triangle kept): the sum of squared deviations of a^T t (clamped at 0). */
static double polopt__ope_quadratic(const double *C, const double *a)
{
    double q = 0.0;
    int j, k;
    for (j = 0; j < POLOPT__OPE_MOMENTS; ++j) {
        if (a[j] == 0.0) continue;
        q += a[j] * a[j] * C[j * POLOPT__OPE_MOMENTS + j];
        for (k = j + 1; k < POLOPT__OPE_MOMENTS; ++k) q += 2.0 * a[j] * a[k] * C[j * POLOPT__OPE_MOMENTS + k];
    }
    return q > 0.0 ? q : 0.0;
}

POLOPT_DEF polopt_result polopt_ope_acc_finish(const polopt_ope_acc *acc, polopt_ope_report *out)
{
    static const char *fn = "polopt_ope_acc_finish";
    double S[POLOPT_OPE_TERMS], v[POLOPT_OPE_COUNT], n, se2[POLOPT_OPE_COUNT];
    size_t B, b;
    int e, k;
    polopt_result rc = POLOPT_OK;
    if (!acc || !out) return POLOPT_ERR_INVALID_ARG;
    if (acc->n < 2)
        return polopt__fail(NULL, &acc->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: %lu rows: at least 2 are needed", fn,
                            (unsigned long)acc->n);
    for (k = 0; k < POLOPT_OPE_TERMS; ++k) S[k] = acc->sum[k] + acc->sum_c[k];
    n = (double)acc->n;
    B = acc->config.bootstrap;
    polopt__ope_values(S, v);
    if (!polopt__finite_doubles(POLOPT_OPE_TERMS, S) ||
        !polopt__finite_doubles(POLOPT__OPE_MOMENTS * POLOPT__OPE_MOMENTS, acc->comoment) ||
        !polopt__finite_doubles(POLOPT__OPE_FORMS, acc->v_sq) || !polopt__finite_doubles(B * POLOPT_OPE_TERMS, acc->boot))
        return polopt__fail(NULL, &acc->config.hooks, POLOPT_ERR_NONFINITE,
                            "%s: the sums overflow: weights or rewards too large for double precision", fn);
    memset(out, 0, sizeof *out);
    { /* standard errors: Var(a^T t) / n for the means, the delta method for the two ratios (see above) */
        /* the means, as the terms they add (besides t5 = dm for the doubly robust ones) */
        static const int term[POLOPT_OPE_COUNT] = {1, 2, 0, 4, 5, 6, 7, 0, 8, 9, 10};
        const double wbar = S[3] / n, R1 = v[POLOPT_OPE_SNIPS], R6 = S[3] > 0 ? S[6] / S[3] : 0.0;
        for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
            double a[POLOPT__OPE_MOMENTS] = {0};
            if (e == POLOPT_OPE_SNIPS) { /* SNIPS = S1 / S3: influence (t1 - R t3) / mean w */
                a[0] = 1.0, a[2] = -R1;
                se2[e] = wbar > 0 ? polopt__ope_quadratic(acc->comoment, a) / (n * (n - 1.0)) / (wbar * wbar) : 0.0;
                continue;
            }
            if (e == POLOPT_OPE_SNDR) { /* SNDR = mean t5 + S6 / S3: influence t5 + (t6 - R6 t3) / mean w */
                a[4] = 1.0;
                if (wbar > 0) a[5] = 1.0 / wbar, a[2] = -R6 / wbar;
            } else {
                a[term[e] - 1] = 1.0;
                if (e > POLOPT_OPE_DM) a[4] = 1.0;
            }
            se2[e] = polopt__ope_quadratic(acc->comoment, a) / (n * (n - 1.0));
        }
    }
    for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
        polopt_ope_estimate *x = out->est + e;
        const int f = polopt__ope_form((polopt_ope_estimator)e);
        x->available = acc->has_model == 1 || e < POLOPT_OPE_DM;
        if (!x->available) continue;
        x->value = v[e];
        x->std_error = sqrt(se2[e]);
        x->ci_low = x->ci_high = x->boot_mean = x->value;
        x->ess = e == POLOPT_OPE_DM ? n : acc->v_sq[f] > 0 ? acc->v_sum[f] / acc->v_sq[f] * acc->v_sum[f] : 0.0;
        x->lambda = polopt_ope_has_level((polopt_ope_estimator)e) ? acc->config.lambda[e] : 0.0;
    }
    out->weights.n = acc->n;
    out->weights.min = acc->w_min, out->weights.max = acc->w_max, out->weights.mean = S[3] / n;
    for (k = 0; k < 4; ++k) out->weights.above[k] = acc->above[k];
    if (B >= 2) { /* percentile intervals and the means of the bootstrap resamples */
        /* vals: B rows of the estimates, then one column of B gathered for sorting */
        double *vals = (double *)polopt__alloc(&acc->config.hooks, B, (POLOPT_OPE_COUNT + 1) * sizeof(double), &rc);
        const double tail = (1.0 - acc->config.confidence) / 2.0;
        double *sorted;
        if (!vals) return polopt__fail(NULL, &acc->config.hooks, rc, "%s: cannot allocate the bootstrap values", fn);
        sorted = vals + B * POLOPT_OPE_COUNT;
        for (b = 0; b < B; ++b) polopt__ope_values(acc->boot + b * POLOPT_OPE_TERMS, vals + b * POLOPT_OPE_COUNT);
        for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
            double m = 0.0;
            if (!out->est[e].available) continue;
            for (b = 0; b < B; ++b) m += sorted[b] = vals[b * POLOPT_OPE_COUNT + e];
            qsort(sorted, B, sizeof *sorted, polopt__cmp_double);
            out->est[e].ci_low = polopt__quantile(sorted, B, tail);
            out->est[e].ci_high = polopt__quantile(sorted, B, 1.0 - tail);
            out->est[e].boot_mean = m / (double)B;
        }
        polopt__dealloc(&acc->config.hooks, vals);
    }
    return POLOPT_OK;
}

/* Tuning ------------------------------------------------------------------------------------------------ */

/* The standard normal quantile: Acklam's rational approximation (relative error 1.2e-9), then one Halley step on
   erfc, which brings it to double precision. */
static double polopt__normal_quantile(double p)
{
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    double x, q, r, e, u;
    if (p < 0.02425) {
        q = sqrt(-2.0 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else if (p <= 1.0 - 0.02425) {
        q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {
        q = sqrt(-2.0 * log(1.0 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    e = 0.5 * erfc(-x / sqrt(2.0)) - p;
    u = e * sqrt(2.0 * 3.14159265358979323846) * exp(x * x / 2.0);
    return x - u / (1.0 + x * u / 2.0);
}

/* Student's t quantile with nu degrees of freedom, by the Cornish-Fisher expansion around the normal one (Abramowitz
   & Stegun 26.7.5): error below 1e-4 for nu >= 10, and the logs that tuning sees have hundreds of rows or more. */
static double polopt__t_quantile(double p, double nu)
{
    const double z = polopt__normal_quantile(p), z2 = z * z;
    const double g1 = (z2 + 1.0) * z / 4.0, g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    const double g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    const double g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    return z + g1 / nu + g2 / (nu * nu) + g3 / (nu * nu * nu) + g4 / (nu * nu * nu * nu);
}

/* The rows an evaluation keeps for tuning. */
typedef struct polopt__ope_rows {
    size_t n;
    double *w, *r, *q, *dm; /* q and dm NULL without a model */
} polopt__ope_rows;

/* Mean and variance (divisor n) of estimator e's row values at level lambda; *bias: |mean((w - v)(r - q))|. */
static void polopt__ope_row_stats(const polopt__ope_rows *R, polopt_ope_estimator e, double lambda, double *out_mean,
                                  double *out_var, double *out_bias)
{
    const int dr = e > POLOPT_OPE_DM;
    double mean = 0.0, m2 = 0.0, bias = 0.0;
    size_t i;
    for (i = 0; i < R->n; ++i) {
        const double q = dr ? R->q[i] : 0.0, v = polopt__ope_weight(e, lambda, R->w[i]);
        const double x = (dr ? R->dm[i] : 0.0) + v * (R->r[i] - q), dev = x - mean;
        mean += dev / (double)(i + 1);
        m2 += dev * (x - mean);
        bias += (R->w[i] - v) * (R->r[i] - q);
    }
    *out_mean = mean, *out_var = m2 / (double)R->n, *out_bias = fabs(bias / (double)R->n);
}

/* The level of estimator e chosen from the grid (see the declarations). */
static double polopt__ope_tune(const polopt__ope_rows *R, polopt_ope_estimator e, const polopt_ope_config *c,
                               const double *grid, size_t m, double *scratch)
{
    const double n = (double)R->n, l2d = log(2.0 / c->delta);
    double best = grid[0], best_score = HUGE_VAL, w2 = 0.0, wmax = 0.0;
    size_t g, i, j;
    for (i = 0; i < R->n; ++i) w2 += R->w[i] * R->w[i], wmax = R->w[i] > wmax ? R->w[i] : wmax;
    if (c->tune == POLOPT_TUNE_MSE) {
        const double hp = sqrt(2.0 * (w2 / n) * l2d / n) + 2.0 * wmax * l2d / (3.0 * n);
        for (g = 0; g < m; ++g) {
            double mean, var, bias, score;
            polopt__ope_row_stats(R, e, grid[g], &mean, &var, &bias);
            score = var / n + (bias + hp) * (bias + hp);
            if (score < best_score) best_score = score, best = grid[g];
        }
        return best;
    }
    { /* SLOPE: theta and the one-sided widths cnf; visit from the widest; keep while consistent with every kept */
        double *theta = scratch, *cnf = scratch + m;
        size_t *order = (size_t *)(void *)(scratch + 2 * m), kept = 0, last = 0;
        const double t = polopt__t_quantile(1.0 - c->delta, n - 1.0), C = sqrt(6.0) - 1.0;
        for (g = 0; g < m; ++g) {
            double mean, var, bias;
            polopt__ope_row_stats(R, e, grid[g], &mean, &var, &bias);
            theta[g] = mean, cnf[g] = sqrt(var / (n - 1.0)) * t;
            order[g] = g;
        }
        for (i = 1; i < m; ++i) /* insertion sort by decreasing width (a stable order for equal ones) */
            for (j = i; j > 0 && cnf[order[j]] > cnf[order[j - 1]]; --j) {
                const size_t tmp = order[j];
                order[j] = order[j - 1], order[j - 1] = tmp;
            }
        for (i = 0; i < m; ++i) {
            const size_t at = order[i];
            int ok = 1;
            for (j = 0; j < kept && ok; ++j)
                if (fabs(theta[order[j]] - theta[at]) > cnf[at] + C * cnf[order[j]]) ok = 0;
            if (!ok) break;
            kept = i + 1, last = at;
        }
        return grid[last];
    }
}

static const double polopt__ope_default_grid[12] = {1, 2, 5, 10, 20, 50, 100, 500, 1000, 5000, 1e4, HUGE_VAL};
static const double polopt__ope_default_sg_grid[8] = {0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1};

/* Evaluation ------------------------------------------------------------------------------------------------ */

POLOPT_DEF polopt_result polopt_ope_evaluate_fn(const polopt_logged *data, polopt_ope_target_fn target, void *user,
                                                int with_model, const polopt_ope_config *config,
                                                polopt_ope_report *out)
{
    static const char *fn = "polopt_ope_evaluate";
#define POLOPT__OPE_CHUNK 1024
    double w[POLOPT__OPE_CHUNK], q[POLOPT__OPE_CHUNK], dm[POLOPT__OPE_CHUNK];
    polopt_ope_config c = config ? *config : polopt_ope_config_default();
    const polopt_hooks *hooks = &c.hooks;
    polopt__ope_rows rows;
    polopt_ope_acc acc;
    polopt_result rc = POLOPT_OK;
    size_t i0, i;
    const int tune = c.tune != POLOPT_TUNE_NONE;
    memset(&acc, 0, sizeof acc); /* freed on every path */
    if (!data || !data->action || !data->propensity || !data->reward || !target || !out)
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: data, its arrays, target and out are required",
                            fn);
    if (data->n < 2) return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: fewer than 2 rounds", fn);
    if ((rc = polopt__ope_check_config(&c, NULL, fn)) != POLOPT_OK) return rc;
    memset(&rows, 0, sizeof rows);
    if (tune) { /* every row is kept, then the levels are tuned, then the rows are accumulated */
        rows.w = (double *)polopt__alloc(hooks, data->n, (with_model ? 4 : 2) * sizeof(double), &rc);
        if (!rows.w) return polopt__fail(NULL, hooks, rc, "%s: cannot keep %lu rows for tuning", fn,
                                         (unsigned long)data->n);
        rows.r = rows.w + data->n;
        if (with_model) rows.q = rows.r + data->n, rows.dm = rows.q + data->n;
    } else if ((rc = polopt_ope_acc_init(&acc, &c)) != POLOPT_OK) {
        return rc;
    }
    for (i0 = 0; i0 < data->n && rc == POLOPT_OK; i0 += POLOPT__OPE_CHUNK) {
        const size_t m = data->n - i0 < POLOPT__OPE_CHUNK ? data->n - i0 : POLOPT__OPE_CHUNK;
        if ((rc = target(user, data, i0, m, w, with_model ? q : NULL, with_model ? dm : NULL)) != POLOPT_OK) {
            polopt__fail(NULL, hooks, rc, "%s: the target callback failed on rounds %lu to %lu (%s)", fn,
                         (unsigned long)i0, (unsigned long)(i0 + m - 1), polopt_strerror(rc));
            break;
        }
        for (i = 0; i < m; ++i) { /* w = pi(a_i | x_i) / p_i, for a pi(a_i | x_i) in [0, 1] */
            if (!(w[i] >= 0.0 && w[i] <= 1.0)) {
                rc = polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN, "%s: the target's probability of round %lu is %g, "
                                  "not in [0, 1]", fn, (unsigned long)(i0 + i), w[i]);
                break;
            }
            if (!(data->propensity[i0 + i] > 0.0 && data->propensity[i0 + i] <= 1.0)) {
                rc = polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN, "%s: round %lu has propensity %g, outside (0, 1]",
                                  fn, (unsigned long)(i0 + i), data->propensity[i0 + i]);
                break;
            }
            w[i] /= data->propensity[i0 + i];
        }
        if (rc != POLOPT_OK) break;
        if (tune) {
            memcpy(rows.w + i0, w, m * sizeof(double));
            memcpy(rows.r + i0, data->reward + i0, m * sizeof(double));
            if (with_model) memcpy(rows.q + i0, q, m * sizeof(double)), memcpy(rows.dm + i0, dm, m * sizeof(double));
            rows.n = i0 + m;
        } else if ((rc = polopt_ope_acc_add(&acc, m, w, data->reward + i0, with_model ? q : NULL,
                                            with_model ? dm : NULL)) != POLOPT_OK) {
            polopt__fail(NULL, hooks, rc, "%s: rounds %lu to %lu: %s", fn, (unsigned long)i0,
                         (unsigned long)(i0 + m - 1), acc.err.message);
        }
    }
    if (tune && rc == POLOPT_OK) {
        const double *grid = c.grid ? c.grid : polopt__ope_default_grid;
        const double *sg = c.sg_grid ? c.sg_grid : polopt__ope_default_sg_grid;
        const size_t gn = c.grid ? c.grid_n : 12, sgn = c.sg_grid ? c.sg_grid_n : 8;
        double levels[POLOPT__OPE_GRID_MAX], scratch[3 * POLOPT__OPE_GRID_MAX];
        int e;
        for (e = 0; e < POLOPT_OPE_COUNT; ++e) {
            const polopt_ope_estimator est = (polopt_ope_estimator)e;
            const int is_sg = est == POLOPT_OPE_SG_IPS || est == POLOPT_OPE_SG_DR;
            const double *src = is_sg ? sg : grid;
            const size_t sn = is_sg ? sgn : gn;
            size_t g, usable = 0;
            if (!polopt_ope_has_level(est) || (e > POLOPT_OPE_DM && !with_model)) continue;
            for (g = 0; g < sn; ++g) /* the grid's levels valid for this estimator (clipping needs > 0) */
                if (polopt__ope_level_ok(est, src[g])) levels[usable++] = src[g];
            if (usable) c.lambda[e] = polopt__ope_tune(&rows, est, &c, levels, usable, scratch);
        }
        if ((rc = polopt_ope_acc_init(&acc, &c)) == POLOPT_OK)
            rc = polopt_ope_acc_add(&acc, rows.n, rows.w, rows.r, rows.q, rows.dm);
    }
    if (rc == POLOPT_OK) rc = polopt_ope_acc_finish(&acc, out);
    polopt_ope_acc_free(&acc);
    polopt__dealloc(hooks, rows.w);
    return rc;
}

/* The dense target as a callback: pi and the model's predictions for every action and slot, in double or float. */
typedef struct polopt__dense_target {
    const void *target, *q_hat;
    int is_float;
    size_t len_list;
} polopt__dense_target;

static POLOPT__INLINE double polopt__dense_at(const void *a, int is_float, size_t at)
{
    return is_float ? (double)((const float *)a)[at] : ((const double *)a)[at];
}

static polopt_result polopt__dense_target_fn(void *user, const polopt_logged *d, size_t first, size_t n, double *prob,
                                             double *q, double *dm)
{
    const polopt__dense_target *t = (const polopt__dense_target *)user;
    const size_t A = d->n_actions, K = t->len_list;
    size_t k, a;
    for (k = 0; k < n; ++k) {
        const size_t row = first + k, slot = K > 1 ? d->position[row] : 0, base = row * A * K + slot;
        prob[k] = polopt__dense_at(t->target, t->is_float, base + (size_t)d->action[row] * K);
        if (q) { /* dm: the model's mean under pi, normalised by the total of pi (see the declarations) */
            double s = 0.0, sc = 0.0, tot = 0.0, tc = 0.0;
            for (a = 0; a < A; ++a) {
                const double p = polopt__dense_at(t->target, t->is_float, base + a * K);
                polopt__sum_add(&s, &sc, p * polopt__dense_at(t->q_hat, t->is_float, base + a * K));
                polopt__sum_add(&tot, &tc, p);
            }
            q[k] = polopt__dense_at(t->q_hat, t->is_float, base + (size_t)d->action[row] * K);
            dm[k] = (s + sc) / (tot + tc);
        }
    }
    return POLOPT_OK;
}

static polopt_result polopt__ope_evaluate_dense(const polopt_logged *data, const void *target, const void *q_hat,
                                                int is_float, size_t len_list, const polopt_ope_config *config,
                                                polopt_ope_report *out, const char *fn)
{
    const polopt_hooks *hooks = config ? &config->hooks : &polopt__no_hooks;
    polopt__dense_target t;
    size_t i, a, k, A, K = len_list;
    if (!data || !data->action || !target || !out)
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: data, its actions, target and out are required",
                            fn);
    A = data->n_actions;
    if (A == 0) return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: the data has no actions", fn);
    if (K == 0) return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: len_list is 0 (1: no slates)", fn);
    if (K > 1 && !data->position)
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: len_list = %lu but the data has no slots", fn,
                            (unsigned long)K);
    for (i = 0; i < data->n; ++i) { /* the target: a distribution at every slot; the logged action and slot in range */
        if (data->action[i] >= A)
            return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: round %lu took action %lu of %lu", fn,
                                (unsigned long)i, (unsigned long)data->action[i], (unsigned long)A);
        if (K > 1 && data->position[i] >= K)
            return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: round %lu is at slot %lu of len_list = %lu",
                                fn, (unsigned long)i, (unsigned long)data->position[i], (unsigned long)K);
        for (k = 0; k < K; ++k) {
            double total = 0.0;
            for (a = 0; a < A; ++a) {
                const size_t at = (i * A + a) * K + k;
                const double p = polopt__dense_at(target, is_float, at);
                if (!(p >= 0.0 && p <= 1.0))
                    return polopt__fail(NULL, hooks, p != p || fabs(p) > DBL_MAX ? POLOPT_ERR_NONFINITE : POLOPT_ERR_DOMAIN,
                                        "%s: target[%lu][%lu][%lu] = %g is not a probability", fn, (unsigned long)i,
                                        (unsigned long)a, (unsigned long)k, p);
                if (q_hat && !(fabs(polopt__dense_at(q_hat, is_float, at)) <= DBL_MAX))
                    return polopt__fail(NULL, hooks, POLOPT_ERR_NONFINITE, "%s: q_hat[%lu][%lu][%lu] is not finite",
                                        fn, (unsigned long)i, (unsigned long)a, (unsigned long)k);
                total += p;
            }
            if (fabs(total - 1.0) > 1e-3)
                return polopt__fail(NULL, hooks, POLOPT_ERR_DOMAIN, "%s: target row %lu, slot %lu sums to %g, not 1",
                                    fn, (unsigned long)i, (unsigned long)k, total);
        }
    }
    t.target = target, t.q_hat = q_hat, t.is_float = is_float, t.len_list = K;
    return polopt_ope_evaluate_fn(data, polopt__dense_target_fn, &t, q_hat != NULL, config, out);
}

POLOPT_DEF polopt_result polopt_ope_evaluate(const polopt_logged *data, const double *target, const double *q_hat,
                                             size_t len_list, const polopt_ope_config *config, polopt_ope_report *out)
{
    return polopt__ope_evaluate_dense(data, target, q_hat, 0, len_list, config, out, "polopt_ope_evaluate");
}

POLOPT_DEF polopt_result polopt_ope_evaluate_f(const polopt_logged *data, const float *target, const float *q_hat,
                                               size_t len_list, const polopt_ope_config *config,
                                               polopt_ope_report *out)
{
    return polopt__ope_evaluate_dense(data, target, q_hat, 1, len_list, config, out, "polopt_ope_evaluate_f");
}

/* Reward models ------------------------------------------------------------------------------------------- */

POLOPT_DEF polopt_reward_model_config polopt_reward_model_config_default(void)
{
    polopt_reward_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = POLOPT_MODEL_RIDGE;
    c.lambda = 1.0f;
    c.epochs = 300;
    c.lr = 0.05f;
    c.folds = 2;
    c.seed = 1;
    return c;
}

POLOPT_DEF void polopt_reward_model_free(polopt_reward_model *model)
{
    if (!model) return;
    polopt__dealloc(&model->hooks, model->weights);
    memset(model, 0, sizeof *model);
}

/* Solve G x = b in place (G symmetric positive definite, n x n, doubles) by Cholesky: G = U^T U, x in b. */
static int polopt__cholesky_solve(double *G, double *b, size_t n)
{
    size_t i, j, k;
    for (j = 0; j < n; ++j) { /* the upper factor, row by row */
        double d = G[j * n + j];
        for (k = 0; k < j; ++k) d -= G[k * n + j] * G[k * n + j];
        if (!(d > 0.0)) return 0;
        d = sqrt(d);
        G[j * n + j] = d;
        for (i = j + 1; i < n; ++i) {
            double v = G[j * n + i];
            for (k = 0; k < j; ++k) v -= G[k * n + j] * G[k * n + i];
            G[j * n + i] = v / d;
        }
    }
    for (i = 0; i < n; ++i) { /* U^T y = b */
        double v = b[i];
        for (k = 0; k < i; ++k) v -= G[k * n + i] * b[k];
        b[i] = v / G[i * n + i];
    }
    for (i = n; i-- > 0;) { /* U x = y */
        double v = b[i];
        for (k = i + 1; k < n; ++k) v -= G[i * n + k] * b[k];
        b[i] = v / G[i * n + i];
    }
    return 1;
}

static polopt_result polopt__reward_model_fit_impl(polopt_reward_model *m, const polopt_logged *d, const uint32_t *rows,
                                                 size_t n_rows, const polopt_reward_model_config *config)
{
    static const char *fn = "polopt_reward_model_fit";
    const polopt_reward_model_config c = config ? *config : polopt_reward_model_config_default();
    polopt_result rc = POLOPT_OK;
    size_t A, D, D1, i, a, k, n_a, bad;
    float *phi = NULL, *ra = NULL, *grad = NULL, *gram = NULL;
    double *G = NULL, *b = NULL, r_mean = 0.0;
    if (!m) return POLOPT_ERR_INVALID_ARG;
    memset(m, 0, sizeof *m);
    m->hooks = c.hooks;
    if (!d || !d->action || !d->reward || (d->dim && !d->X) || d->n == 0 || d->n_actions == 0)
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: no logged data (or no rewards/features)",
                            fn);
    if (c.kind != POLOPT_MODEL_RIDGE && c.kind != POLOPT_MODEL_LOGISTIC)
        return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: config.kind = %d is unknown", fn, (int)c.kind);
    if ((rc = polopt__check_range(&m->err, &m->hooks, fn, "lambda", c.lambda, 0, POLOPT__OPEN, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK ||
        (c.kind == POLOPT_MODEL_LOGISTIC &&
         (rc = polopt__check_range(&m->err, &m->hooks, fn, "lr", c.lr, 0, POLOPT__OPEN, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK))
        return rc;
    if (!rows) n_rows = d->n;
    if (n_rows == 0) return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: no rows to fit", fn);
    for (i = 0; i < n_rows; ++i) {
        const size_t row = rows ? rows[i] : i;
        if (row >= d->n)
            return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_INVALID_ARG, "%s: row %lu is not below n", fn,
                                (unsigned long)row);
        if ((d->dim && polopt_check_finite(d->dim, d->X + row * d->dim, &bad) != POLOPT_OK) ||
            !(fabs(d->reward[row]) <= FLT_MAX))
            return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_NONFINITE, "%s: round %lu has a non-finite feature or "
                                "reward", fn, (unsigned long)row);
        if (c.kind == POLOPT_MODEL_LOGISTIC && !(d->reward[row] >= 0.0f && d->reward[row] <= 1.0f))
            return polopt__fail(&m->err, &m->hooks, POLOPT_ERR_DOMAIN,
                                "%s: logistic regression needs rewards in [0, 1]; round %lu has %g", fn,
                                (unsigned long)row, (double)d->reward[row]);
        r_mean += d->reward[row];
    }
    r_mean /= (double)n_rows;
    A = d->n_actions, D = d->dim, D1 = D + 1;
    m->weights = (float *)polopt__alloc(&m->hooks, A, D1 * sizeof(float), &rc);
    if (m->weights) phi = (float *)polopt__alloc(&m->hooks, n_rows, D1 * sizeof(float), &rc);
    if (phi) ra = (float *)polopt__alloc(&m->hooks, n_rows, sizeof(float), &rc);
    if (ra) grad = (float *)polopt__alloc(&m->hooks, D1 * 2 + n_rows, sizeof(float), &rc);
    if (grad) gram = (float *)polopt__alloc(&m->hooks, D1, D1 * sizeof(float), &rc);
    if (gram) G = (double *)polopt__alloc(&m->hooks, D1 * D1 + D1, sizeof(double), &rc);
    if (rc != POLOPT_OK) {
        rc = polopt__fail(&m->err, &m->hooks, rc, "%s: cannot allocate for %lu rounds", fn, (unsigned long)n_rows);
        goto done;
    }
    b = G + D1 * D1;
    m->kind = c.kind, m->n_actions = A, m->dim = D;
    for (a = 0; a < A; ++a) {
        float *wa = m->weights + a * D1;
        /* the rounds of action a, as rows [x, 1], and their rewards */
        for (n_a = 0, i = 0; i < n_rows; ++i) {
            const size_t row = rows ? rows[i] : i;
            if (d->action[row] != a) continue;
            if (D) memcpy(phi + n_a * D1, d->X + row * D, D * sizeof(float));
            phi[n_a * D1 + D] = 1.0f;
            ra[n_a++] = d->reward[row];
        }
        if (c.kind == POLOPT_MODEL_RIDGE) {
            /* (Phi^T Phi + lambda I) w = Phi^T (r - r_mean), the bias penalised a thousand times less; then b += r_mean.
               The Gram matrix and the right side come from the linear-algebra core, the solve is in double. */
            float *rhs = grad;
            for (k = 0; k < n_a; ++k) ra[k] -= (float)r_mean;
            polopt__gemm(POLOPT_TRANS, POLOPT_NO_TRANS, D1, D1, n_a, 1.0f, phi, D1, phi, D1, 0.0f, gram, D1);
            polopt__gemv(POLOPT_TRANS, n_a, D1, 1.0f, phi, D1, ra, 0.0f, rhs);
            if (polopt_check_finite(D1 * D1, gram, &bad) != POLOPT_OK || polopt_check_finite(D1, rhs, &bad) != POLOPT_OK) {
                rc = polopt__fail(&m->err, &m->hooks, POLOPT_ERR_NONFINITE, "%s: the normal equations of action %lu "
                                  "overflow single precision: scale the features or rewards", fn, (unsigned long)a);
                goto done;
            }
            for (i = 0; i < D1 * D1; ++i) G[i] = gram[i];
            for (i = 0; i < D1; ++i) b[i] = rhs[i];
            for (i = 0; i < D; ++i) G[i * D1 + i] += c.lambda;
            G[D * D1 + D] += 1e-3 * c.lambda;
            if (!polopt__cholesky_solve(G, b, D1)) {
                rc = polopt__fail(&m->err, &m->hooks, POLOPT_ERR_DOMAIN, "%s: the normal equations of action %lu are "
                                  "singular", fn, (unsigned long)a);
                goto done;
            }
            for (i = 0; i < D1; ++i) wa[i] = (float)b[i];
            wa[D] += (float)r_mean;
        } else {
            /* Adam on the mean log-loss + lambda/(2 n_a) (|w|^2 + (b - b0)^2), b0 the logit of the mean reward */
            polopt_adam adam;
            polopt_adam_config ac = polopt_adam_config_default();
            const double pm = r_mean < 1e-6 ? 1e-6 : (r_mean > 1 - 1e-6 ? 1 - 1e-6 : r_mean);
            const float b0 = (float)log(pm / (1.0 - pm));
            float *p = grad + 2 * D1; /* n_a predicted probabilities */
            size_t it;
            memset(wa, 0, D1 * sizeof(float));
            wa[D] = b0;
            ac.lr = c.lr;
            ac.hooks = c.hooks;
            if ((rc = polopt_adam_init(&adam, D1, &ac)) != POLOPT_OK) {
                m->err = adam.err;
                goto done;
            }
            for (it = 0; it < c.epochs && n_a > 0; ++it) {
                float *g = grad;
                polopt__gemv(POLOPT_NO_TRANS, n_a, D1, 1.0f, phi, D1, wa, 0.0f, p);
                for (k = 0; k < n_a; ++k) p[k] = 1.0f / (1.0f + (float)exp(-(double)p[k])) - ra[k]; /* dloss/dz */
                polopt__gemv(POLOPT_TRANS, n_a, D1, 1.0f / (float)n_a, phi, D1, p, 0.0f, g);
                for (i = 0; i < D; ++i) g[i] += c.lambda / (float)n_a * wa[i];
                g[D] += c.lambda / (float)n_a * (wa[D] - b0);
                if ((rc = polopt_adam_step(&adam, wa, g)) != POLOPT_OK) {
                    m->err = adam.err;
                    polopt_adam_free(&adam);
                    goto done;
                }
            }
            polopt_adam_free(&adam);
        }
    }
    if (polopt_check_finite(A * D1, m->weights, &bad) != POLOPT_OK)
        rc = polopt__fail(&m->err, &m->hooks, POLOPT_ERR_NONFINITE, "%s: the fitted weights are not finite", fn);
done:
    polopt__dealloc(&m->hooks, phi);
    polopt__dealloc(&m->hooks, ra);
    polopt__dealloc(&m->hooks, grad);
    polopt__dealloc(&m->hooks, gram);
    polopt__dealloc(&m->hooks, G);
    if (rc == POLOPT_OK) polopt__clear_error(&m->err); /* on failure the wrapper frees m, keeping its message */
    return rc;
}

POLOPT_DEF polopt_result polopt_reward_model_fit(polopt_reward_model *model, const polopt_logged *data, const uint32_t *rows,
                                                 size_t n_rows, const polopt_reward_model_config *config)
{
    const polopt_result rc = polopt__reward_model_fit_impl(model, data, rows, n_rows, config);
    if (rc != POLOPT_OK && model) POLOPT__ZERO_KEEPING_ERROR(model, polopt_reward_model_free);
    return rc;
}

/* r_M from the linear score z = w_a^T x + b_a: z itself (ridge) or sigmoid(z) (logistic). */
static float polopt__model_link(polopt_model_kind kind, float z)
{
    return kind == POLOPT_MODEL_LOGISTIC ? (float)(1.0 / (1.0 + exp(-(double)z))) : z;
}

POLOPT_DEF polopt_result polopt_reward_model_predict(const polopt_reward_model *model, const float *x, float *out)
{
    size_t a, bad;
    if (!model || !model->weights || (model->dim && !x) || !out) return POLOPT_ERR_INVALID_ARG;
    if (polopt_check_finite(model->dim, x, &bad) != POLOPT_OK) return POLOPT_ERR_NONFINITE;
    polopt__gemv(POLOPT_NO_TRANS, model->n_actions, model->dim, 1.0f, model->weights, model->dim + 1, x, 0.0f, out);
    for (a = 0; a < model->n_actions; ++a)
        out[a] = polopt__model_link(model->kind, out[a] + model->weights[a * (model->dim + 1) + model->dim]);
    return POLOPT_OK;
}

/* Cross-fitting's folds: the rounds shuffled by seed into *out_order (n, then n of room for a fold's training
   rows); round order[i] is in fold i mod folds. */
static polopt_result polopt__folds(size_t n, size_t folds, uint64_t seed, const polopt_hooks *hooks, const char *fn,
                                   uint32_t **out_order)
{
    polopt_result rc = POLOPT_OK;
    polopt_rng rng;
    uint32_t *order;
    size_t i;
    *out_order = NULL;
    if (folds < 1 || folds > n)
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: config.folds = %lu must be in [1, n]", fn,
                            (unsigned long)folds);
    if (n > (size_t)UINT32_MAX)
        return polopt__fail(NULL, hooks, POLOPT_ERR_OVERFLOW, "%s: %lu rounds: at most 2^32 - 1", fn, (unsigned long)n);
    order = (uint32_t *)polopt__alloc(hooks, n, 2 * sizeof(uint32_t), &rc);
    if (!order) return polopt__fail(NULL, hooks, rc, "%s: out of memory", fn);
    for (i = 0; i < n; ++i) order[i] = (uint32_t)i;
    polopt__rng_seed(&rng, seed);
    polopt_rng_shuffle(&rng, n, order);
    *out_order = order;
    return POLOPT_OK;
}

/* The training rows of fold f into train: every other fold (with one fold, everything); their count. */
static size_t polopt__fold_train(size_t n, size_t folds, size_t f, const uint32_t *order, uint32_t *train)
{
    size_t i, m = 0;
    for (i = 0; i < n; ++i)
        if (folds == 1 || i % folds != f) train[m++] = order[i];
    return m;
}

POLOPT_DEF polopt_result polopt_reward_model_crossfit(const polopt_logged *data, const polopt_reward_model_config *config,
                                                      double *out_q_hat)
{
    static const char *fn = "polopt_reward_model_crossfit";
    const polopt_reward_model_config c = config ? *config : polopt_reward_model_config_default();
    polopt_result rc = POLOPT_OK;
    uint32_t *order, *train;
    float *row = NULL;
    size_t f, i, a, n_train;
    if (!data || !data->action || !out_q_hat) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__folds(data->n, c.folds, c.seed, &c.hooks, fn, &order)) != POLOPT_OK) return rc;
    train = order + data->n;
    row = (float *)polopt__alloc(&c.hooks, data->n_actions ? data->n_actions : 1, sizeof(float), &rc);
    if (!row) rc = polopt__fail(NULL, &c.hooks, rc, "%s: out of memory", fn);
    for (f = 0; f < c.folds && rc == POLOPT_OK; ++f) {
        polopt_reward_model m;
        n_train = polopt__fold_train(data->n, c.folds, f, order, train);
        rc = polopt_reward_model_fit(&m, data, train, n_train, &c);
        if (rc != POLOPT_OK) {
            polopt__fail(NULL, &c.hooks, rc, "%s: fold %lu: %s", fn, (unsigned long)f, m.err.message);
            break;
        }
        for (i = f; i < data->n && rc == POLOPT_OK; i += c.folds) {
            double *out = out_q_hat + (size_t)order[i] * data->n_actions;
            if ((rc = polopt_reward_model_predict(&m, data->dim ? data->X + (size_t)order[i] * data->dim : NULL,
                                                  row)) != POLOPT_OK)
                polopt__fail(NULL, &c.hooks, rc, "%s: round %lu has a non-finite feature", fn,
                             (unsigned long)order[i]);
            for (a = 0; a < data->n_actions; ++a) out[a] = row[a];
        }
        polopt_reward_model_free(&m);
    }
    polopt__dealloc(&c.hooks, row);
    polopt__dealloc(&c.hooks, order);
    return rc;
}

/* Estimated propensities ------------------------------------------------------------------------------------ */

POLOPT_DEF polopt_propensity_config polopt_propensity_config_default(void)
{
    polopt_propensity_config c;
    memset(&c, 0, sizeof c);
    c.lambda = 1.0f;
    c.epochs = 300;
    c.lr = 0.05f;
    c.folds = 2;
    c.seed = 1;
    c.floor = 1e-3;
    return c;
}

/* Fit the softmax regression on the rounds rows[0 .. m) (weights W: A x (D + 1), u_a then c_a) by full-batch Adam on
   the mean negative log-likelihood plus (lambda / (2 m)) ||u||^2.  Scratch: logits m x A, the gradient A (D + 1),
   the features with a 1, m x (D + 1). */
static polopt_result polopt__propensity_fit(const polopt_logged *d, const uint32_t *rows, size_t m,
                                            const polopt_propensity_config *c, float *W, float *Z, float *G,
                                            float *Phi, polopt_error *err)
{
    const size_t A = d->n_actions, D = d->dim, D1 = D + 1, nw = A * D1;
    polopt_adam_config ac = polopt_adam_config_default();
    polopt_adam adam;
    polopt_result rc = POLOPT_OK;
    size_t i, a, j, it;
    for (i = 0; i < m; ++i) {
        if (D) memcpy(Phi + i * D1, d->X + (size_t)rows[i] * D, D * sizeof(float));
        Phi[i * D1 + D] = 1.0f;
    }
    memset(W, 0, nw * sizeof(float));
    ac.lr = c->lr, ac.hooks = c->hooks;
    if ((rc = polopt_adam_init(&adam, nw, &ac)) != POLOPT_OK) {
        *err = adam.err;
        return rc;
    }
    for (it = 0; it < c->epochs && rc == POLOPT_OK; ++it) {
        /* Z = softmax(Phi W^T) row by row, minus the one-hot of the logged action, over m: dloss / dlogits */
        polopt_gemm(POLOPT_NO_TRANS, POLOPT_TRANS, m, A, D1, 1.0f, Phi, D1, W, D1, 0.0f, Z, A);
        for (i = 0; i < m && rc == POLOPT_OK; ++i) {
            float *z = Z + i * A;
            rc = polopt_softmax(A, z, 1.0f, z);
            for (a = 0; a < A; ++a) z[a] /= (float)m;
            z[d->action[rows[i]]] -= 1.0f / (float)m;
        }
        /* G = Z^T Phi (A x D1) + (lambda / m) u */
        polopt_gemm(POLOPT_TRANS, POLOPT_NO_TRANS, A, D1, m, 1.0f, Z, A, Phi, D1, 0.0f, G, D1);
        for (a = 0; a < A; ++a)
            for (j = 0; j < D; ++j) G[a * D1 + j] += c->lambda / (float)m * W[a * D1 + j];
        if (rc == POLOPT_OK && (rc = polopt_adam_step(&adam, W, G)) != POLOPT_OK) *err = adam.err;
    }
    polopt_adam_free(&adam);
    return rc;
}

POLOPT_DEF polopt_result polopt_propensity_crossfit(const polopt_logged *data, const polopt_propensity_config *config,
                                                    double *out_p)
{
    static const char *fn = "polopt_propensity_crossfit";
    const polopt_propensity_config c = config ? *config : polopt_propensity_config_default();
    polopt_result rc = POLOPT_OK;
    uint32_t *order = NULL, *train;
    float *W = NULL, *Z, *G, *Phi, *z;
    size_t A, D1, f, i, a, n_train, bad;
    if (!data || !data->action || !out_p || (data->dim && !data->X))
        return polopt__fail(NULL, &c.hooks, POLOPT_ERR_INVALID_ARG, "%s: data (with its actions) and out_p are required",
                            fn);
    A = data->n_actions, D1 = data->dim + 1;
    if (A < 2 || data->n < 2)
        return polopt__fail(NULL, &c.hooks, POLOPT_ERR_INVALID_ARG, "%s: %lu rounds of %lu actions: at least 2 of each",
                            fn, (unsigned long)data->n, (unsigned long)A);
    if ((rc = polopt__check_range(NULL, &c.hooks, fn, "lambda", c.lambda, 0, POLOPT__CLOSED, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(NULL, &c.hooks, fn, "lr", c.lr, 0, POLOPT__OPEN, FLT_MAX, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(NULL, &c.hooks, fn, "floor", c.floor, 0, POLOPT__OPEN, 1, POLOPT__OPEN)) != POLOPT_OK)
        return rc;
    for (i = 0; i < data->n; ++i)
        if (data->action[i] >= A || (data->dim && polopt_check_finite(data->dim, data->X + i * data->dim, &bad) != POLOPT_OK))
            return polopt__fail(NULL, &c.hooks, POLOPT_ERR_INVALID_ARG, "%s: round %lu has action %lu of %lu or a "
                                "non-finite feature", fn, (unsigned long)i, (unsigned long)data->action[i],
                                (unsigned long)A);
    if ((rc = polopt__folds(data->n, c.folds, c.seed, &c.hooks, fn, &order)) != POLOPT_OK) return rc;
    train = order + data->n;
    { /* W, the logits of every round, G, the features with a 1, and one round's logits */
        int ok = 1;
        const size_t count = polopt__mul_size(A, 2 * D1 + 1, &ok) + polopt__mul_size(data->n, A + D1, &ok);
        if (ok) W = (float *)polopt__alloc(&c.hooks, count, sizeof(float), &rc);
        if (!W) rc = polopt__fail(NULL, &c.hooks, ok ? rc : POLOPT_ERR_OVERFLOW, "%s: out of memory", fn);
    }
    Z = W + A * D1, G = Z + data->n * A, Phi = G + A * D1, z = Phi + data->n * D1;
    for (f = 0; f < c.folds && rc == POLOPT_OK; ++f) {
        polopt_error fit_err;
        memset(&fit_err, 0, sizeof fit_err);
        n_train = polopt__fold_train(data->n, c.folds, f, order, train);
        if ((rc = polopt__propensity_fit(data, train, n_train, &c, W, Z, G, Phi, &fit_err)) != POLOPT_OK) {
            rc = polopt__fail(NULL, &c.hooks, rc, "%s: fold %lu: the fit diverged (lower lr): %s", fn,
                              (unsigned long)f, fit_err.message);
            break;
        }
        for (i = f; i < data->n && rc == POLOPT_OK; i += c.folds) { /* score the held-out fold */
            const size_t r = order[i];
            double lse, p;
            for (a = 0; a < A; ++a)
                z[a] = (data->dim ? polopt__dot(data->dim, W + a * D1, data->X + r * data->dim) : 0.0f) +
                       W[a * D1 + data->dim];
            if ((rc = polopt_logsumexp(A, z, 1.0f, &lse)) != POLOPT_OK) break;
            p = exp((double)z[data->action[r]] - lse);
            out_p[r] = p > c.floor ? p : c.floor;
        }
    }
    polopt__dealloc(&c.hooks, W);
    polopt__dealloc(&c.hooks, order);
    return rc;
}

/* From a log to training ------------------------------------------------------------------------------------ */

POLOPT_DEF polopt_result polopt_logged_view_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                                   float *out_rewards)
{
    const polopt_logged_view *v = (const polopt_logged_view *)user;
    const polopt_reward_model *m = v ? v->model : NULL;
    size_t k, D;
    if (!v || !v->data || context >= v->data->n || (n && (!items || !out_rewards))) return POLOPT_ERR_INVALID_ARG;
    D = v->data->dim;
    for (k = 0; k < n; ++k) {
        const float *w;
        float z;
        if (!m) { out_rewards[k] = 0.0f; continue; }
        if (items[k] >= m->n_actions) return POLOPT_ERR_INVALID_ARG;
        w = m->weights + (size_t)items[k] * (D + 1);
        z = (D ? polopt__dot(D, w, v->data->X + (size_t)context * D) : 0.0f) + w[D];
        out_rewards[k] = polopt__model_link(m->kind, z);
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_logged_view_init(polopt_logged_view *view, const polopt_logged *data,
                                                 const polopt_reward_model *model, float tau)
{
    static const char *fn = "polopt_logged_view_init";
    const polopt_hooks *hooks = data ? &data->hooks : &polopt__no_hooks;
    size_t i;
    if (!view) return POLOPT_ERR_INVALID_ARG;
    memset(view, 0, sizeof *view);
    if (!data || !data->action || !data->propensity || !data->reward || (data->dim && !data->X) || data->n == 0)
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: no logged data", fn);
    if (!(tau >= 0.0f && tau <= 1.0f))
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: tau = %g is outside [0, 1]", fn, (double)tau);
    if (model && (model->n_actions != data->n_actions || model->dim != data->dim || !model->weights))
        return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: the reward model has %lu actions of %lu features, "
                            "the log %lu of %lu", fn, (unsigned long)model->n_actions, (unsigned long)model->dim,
                            (unsigned long)data->n_actions, (unsigned long)data->dim);
    for (i = 0; i < data->n; ++i)
        if (data->action[i] >= data->n_actions || !(data->propensity[i] > 0.0 && data->propensity[i] <= 1.0) ||
            !(fabs(data->reward[i]) <= FLT_MAX))
            return polopt__fail(NULL, hooks, POLOPT_ERR_INVALID_ARG, "%s: round %lu has action %lu of %lu, propensity "
                                "%g or reward %g", fn, (unsigned long)i, (unsigned long)data->action[i],
                                (unsigned long)data->n_actions, data->propensity[i], data->reward[i]);
    view->data = data, view->model = model;
    view->feedback.action = data->action, view->feedback.propensity = data->propensity;
    view->feedback.reward = data->reward, view->feedback.tau = tau;
    view->dataset.n = data->n, view->dataset.X = data->X, view->dataset.ldx = data->dim;
    view->dataset.feedback = &view->feedback;
    if (model) view->dataset.reward = polopt_logged_view_reward, view->dataset.reward_user = view;
    return POLOPT_OK;
}

/* >>slates ------------------------------------------------------------------------------------------------ */

static const char *const polopt__slate_names[POLOPT_SLATE_COUNT] = {"SIPS", "IIPS", "RIPS", "PI"};

POLOPT_DEF const char *polopt_slate_name(polopt_slate_estimator estimator)
{
    return (int)estimator >= 0 && estimator < POLOPT_SLATE_COUNT ? polopt__slate_names[estimator] : "unknown estimator";
}

POLOPT_DEF polopt_slate_ope_config polopt_slate_ope_config_default(void)
{
    polopt_slate_ope_config c;
    memset(&c, 0, sizeof c);
    c.bootstrap = 200, c.confidence = 0.95, c.seed = 1;
    return c;
}

/* Checks one probability array of a slate log: every value finite and in [lo, 1] (lo > 0 open for a logger). */
static polopt_result polopt__slate_probs_ok(const polopt_hooks *hk, const char *fn, const char *name, size_t count,
                                           const double *p, int logger)
{
    size_t i;
    for (i = 0; i < count; ++i)
        if (!(logger ? p[i] > 0.0 : p[i] >= 0.0) || !(p[i] <= 1.0))
            return polopt__fail(NULL, hk, POLOPT_ERR_INVALID_ARG, "%s: log->%s[%lu] = %g is outside %s", fn, name,
                                (unsigned long)i, p[i], logger ? "(0, 1]" : "[0, 1]");
    return POLOPT_OK;
}

/* The row term of estimator e for slate i (available ones only), and the weight its ess counts. */
static double polopt__slate_term(const polopt_slate_log *g, int e, size_t i, double *weight)
{
    const size_t K = g->K;
    const double *r = g->reward + i * K;
    double t = 0.0, c = 0.0, sum_r = 0.0;
    size_t k;
    for (k = 0; k < K; ++k) polopt__sum_add(&sum_r, &c, r[k]);
    sum_r += c, c = 0.0;
    switch (e) {
    case POLOPT_SLATE_SIPS:
        *weight = g->target_cascade[i * K + K - 1] / g->pscore_cascade[i * K + K - 1];
        return sum_r * *weight;
    case POLOPT_SLATE_PI: *weight = g->pi_weight[i]; return sum_r * *weight;
    default: {
        const double *pt = e == POLOPT_SLATE_IIPS ? g->target_item_position : g->target_cascade;
        const double *p0 = e == POLOPT_SLATE_IIPS ? g->pscore_item_position : g->pscore_cascade;
        for (k = 0; k < K; ++k) polopt__sum_add(&t, &c, r[k] * (pt[i * K + k] / p0[i * K + k]));
        *weight = pt[i * K + K - 1] / p0[i * K + K - 1];
        return t + c;
    }
    }
}

#define POLOPT__SLATE_BOOT (POLOPT_SLATE_COUNT + 1) /* doubles a bootstrap resample keeps */

POLOPT_DEF polopt_result polopt_slate_ope_evaluate(const polopt_slate_log *log, const polopt_slate_ope_config *config,
                                                   polopt_slate_report *out)
{
    static const char *fn = "polopt_slate_ope_evaluate";
    polopt_slate_ope_config c = config ? *config : polopt_slate_ope_config_default();
    const polopt_hooks *hk = &c.hooks;
    int avail[POLOPT_SLATE_COUNT], e;
    double *boot = NULL, *col = NULL;
    size_t i, b, n, K;
    polopt_rng rng;
    polopt_result rc = POLOPT_OK;
    if (!log || !out) return polopt__fail(NULL, hk, POLOPT_ERR_INVALID_ARG, "%s: log or out is NULL", fn);
    n = log->n, K = log->K;
    POLOPT__CHECK(NULL, hk, n >= 2, "%s: log->n = %lu: at least 2 slates are needed", fn, (unsigned long)n);
    POLOPT__CHECK(NULL, hk, K >= 1 && K <= POLOPT_SLATE_MAX, "%s: log->K = %lu is outside 1 .. %d", fn,
                  (unsigned long)K, POLOPT_SLATE_MAX);
    POLOPT__CHECK(NULL, hk, n <= SIZE_MAX / K, "%s: n x K overflows", fn);
    POLOPT__CHECK(NULL, hk, log->reward != NULL, "%s: log->reward is NULL", fn);
    POLOPT__CHECK(NULL, hk, !log->pscore_cascade == !log->target_cascade,
                  "%s: pscore_cascade and target_cascade come in a pair (both given or both NULL)", fn);
    POLOPT__CHECK(NULL, hk, !log->pscore_item_position == !log->target_item_position,
                  "%s: pscore_item_position and target_item_position come in a pair (both given or both NULL)", fn);
    POLOPT__CHECK(NULL, hk, c.confidence > 0.0 && c.confidence < 1.0, "%s: config.confidence = %g is outside (0, 1)", fn,
                  c.confidence);
    POLOPT__CHECK(NULL, hk, c.bootstrap <= 100000, "%s: config.bootstrap = %lu is above 100000", fn,
                  (unsigned long)c.bootstrap);
    POLOPT__CHECK(NULL, hk, log->pscore_cascade || log->pscore_item_position || log->pi_weight,
                  "%s: no estimator is available: give the cascade or item-position probabilities, or PI weights", fn);
    for (i = 0; i < n * K; ++i)
        if (!(fabs(log->reward[i]) <= DBL_MAX))
            return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: log->reward[%lu] is not finite", fn,
                                (unsigned long)i);
    if (log->pscore_cascade &&
        ((rc = polopt__slate_probs_ok(hk, fn, "pscore_cascade", n * K, log->pscore_cascade, 1)) != POLOPT_OK ||
         (rc = polopt__slate_probs_ok(hk, fn, "target_cascade", n * K, log->target_cascade, 0)) != POLOPT_OK))
        return rc;
    if (log->pscore_item_position &&
        ((rc = polopt__slate_probs_ok(hk, fn, "pscore_item_position", n * K, log->pscore_item_position, 1)) !=
             POLOPT_OK ||
         (rc = polopt__slate_probs_ok(hk, fn, "target_item_position", n * K, log->target_item_position, 0)) != POLOPT_OK))
        return rc;
    if (log->pi_weight)
        for (i = 0; i < n; ++i)
            if (!(fabs(log->pi_weight[i]) <= DBL_MAX))
                return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: log->pi_weight[%lu] is not finite", fn,
                                    (unsigned long)i);
    avail[POLOPT_SLATE_SIPS] = avail[POLOPT_SLATE_RIPS] = log->pscore_cascade != NULL;
    avail[POLOPT_SLATE_IIPS] = log->pscore_item_position != NULL;
    avail[POLOPT_SLATE_PI] = log->pi_weight != NULL;
    if (c.bootstrap >= 2) {
        /* a row per resample: each estimator's sum of its row terms, then the resample's row count */
        boot = (double *)polopt__alloc(hk, c.bootstrap, POLOPT__SLATE_BOOT * sizeof(double), &rc);
        col = boot ? (double *)polopt__alloc(hk, c.bootstrap, sizeof(double), &rc) : NULL;
        if (!col) {
            POLOPT_FREE(boot, hk->alloc_ctx);
            return polopt__fail(NULL, hk, rc, "%s: cannot allocate the bootstrap sums", fn);
        }
        memset(boot, 0, c.bootstrap * POLOPT__SLATE_BOOT * sizeof(double));
    }
    polopt_rng_seed(&rng, c.seed);
    memset(out, 0, sizeof *out);
    { /* one pass: compensated sums, Welford's variance, the Poisson bootstrap (each row a Poisson(1) count) */
        double sum[POLOPT_SLATE_COUNT] = {0}, sum_c[POLOPT_SLATE_COUNT] = {0}, mean[POLOPT_SLATE_COUNT] = {0};
        double m2[POLOPT_SLATE_COUNT] = {0}, ws[POLOPT_SLATE_COUNT] = {0}, ws2[POLOPT_SLATE_COUNT] = {0};
        for (i = 0; i < n; ++i) {
            double t[POLOPT_SLATE_COUNT];
            for (e = 0; e < POLOPT_SLATE_COUNT; ++e) {
                double w = 0.0, d;
                if (!avail[e]) continue;
                t[e] = polopt__slate_term(log, e, i, &w);
                polopt__sum_add(&sum[e], &sum_c[e], t[e]);
                d = t[e] - mean[e];
                mean[e] += d / (double)(i + 1);
                m2[e] += d * (t[e] - mean[e]);
                ws[e] += w, ws2[e] += w * w;
            }
            for (b = 0; c.bootstrap >= 2 && b < c.bootstrap; ++b) {
                const int count = polopt__poisson1(&rng);
                double *row = boot + b * POLOPT__SLATE_BOOT;
                if (!count) continue;
                row[POLOPT_SLATE_COUNT] += count;
                for (e = 0; e < POLOPT_SLATE_COUNT; ++e)
                    if (avail[e]) row[e] += count * t[e];
            }
        }
        for (e = 0; e < POLOPT_SLATE_COUNT; ++e) {
            polopt_ope_estimate *x = out->est + e;
            if (!avail[e]) continue;
            x->available = 1;
            x->value = (sum[e] + sum_c[e]) / (double)n;
            x->std_error = sqrt((m2[e] > 0.0 ? m2[e] : 0.0) / ((double)n - 1.0) / (double)n);
            x->ess = ws2[e] > 0.0 ? ws[e] / ws2[e] * ws[e] : 0.0;
            x->ci_low = x->ci_high = x->boot_mean = x->value;
            if (!(fabs(x->value) <= DBL_MAX) || !(x->std_error <= DBL_MAX)) {
                POLOPT_FREE(boot, hk->alloc_ctx);
                POLOPT_FREE(col, hk->alloc_ctx);
                memset(out, 0, sizeof *out);
                return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE,
                                    "%s: the %s sums overflow: weights or rewards too large for double precision", fn,
                                    polopt__slate_names[e]);
            }
        }
        if (c.bootstrap >= 2) { /* each resample's mean (its own row count), then percentiles */
            const double tail = (1.0 - c.confidence) / 2.0;
            for (e = 0; e < POLOPT_SLATE_COUNT; ++e) {
                polopt_ope_estimate *x = out->est + e;
                double s = 0.0;
                if (!avail[e]) continue;
                for (b = 0; b < c.bootstrap; ++b) {
                    const double *row = boot + b * POLOPT__SLATE_BOOT;
                    s += col[b] = row[POLOPT_SLATE_COUNT] > 0 ? row[e] / row[POLOPT_SLATE_COUNT] : 0.0;
                }
                qsort(col, c.bootstrap, sizeof *col, polopt__cmp_double);
                x->boot_mean = s / (double)c.bootstrap;
                x->ci_low = polopt__quantile(col, c.bootstrap, tail);
                x->ci_high = polopt__quantile(col, c.bootstrap, 1.0 - tail);
            }
        }
    }
    POLOPT_FREE(boot, hk->alloc_ctx);
    POLOPT_FREE(col, hk->alloc_ctx);
    return POLOPT_OK;
}

#define POLOPT__PI_MAX_D 512

POLOPT_DEF polopt_result polopt_slate_gamma(size_t n, size_t K, size_t m, const uint32_t *items, double *out_gamma,
                                            const polopt_hooks *hooks)
{
    static const char *fn = "polopt_slate_gamma";
    const polopt_hooks *hk = hooks ? hooks : &polopt__no_hooks;
    size_t i, j, k, d;
    POLOPT__CHECK(NULL, hk, items && out_gamma, "%s: items or out_gamma is NULL", fn);
    POLOPT__CHECK(NULL, hk, n >= 1 && K >= 1 && m >= 1, "%s: n, K and m must be at least 1", fn);
    POLOPT__CHECK(NULL, hk, K <= POLOPT_SLATE_MAX && m <= POLOPT__PI_MAX_D && K * m <= POLOPT__PI_MAX_D,
                  "%s: K m = %lu x %lu is above %d", fn, (unsigned long)K, (unsigned long)m, POLOPT__PI_MAX_D);
    POLOPT__CHECK(NULL, hk, n <= SIZE_MAX / K, "%s: n x K overflows", fn);
    for (i = 0; i < n * K; ++i)
        POLOPT__CHECK(NULL, hk, items[i] < m, "%s: items[%lu] = %u is not below m = %lu", fn, (unsigned long)i, items[i],
                      (unsigned long)m);
    d = K * m;
    memset(out_gamma, 0, d * d * sizeof *out_gamma);
    for (i = 0; i < n; ++i)
        for (j = 0; j < K; ++j)
            for (k = 0; k < K; ++k) out_gamma[(j * m + items[i * K + j]) * d + k * m + items[i * K + k]] += 1.0;
    for (i = 0; i < d * d; ++i) out_gamma[i] /= (double)n;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_slate_pinv(size_t d, const double *gamma, double *out_pinv, const polopt_hooks *hooks)
{
    static const char *fn = "polopt_slate_pinv";
    const polopt_hooks *hk = hooks ? hooks : &polopt__no_hooks;
    double *G, *E, *lam, top = 0.0;
    size_t i, j, k;
    polopt_result rc = POLOPT_OK;
    POLOPT__CHECK(NULL, hk, gamma && out_pinv, "%s: gamma or out_pinv is NULL", fn);
    POLOPT__CHECK(NULL, hk, d >= 1 && d <= POLOPT__PI_MAX_D, "%s: d = %lu is outside 1 .. %d", fn, (unsigned long)d,
                  POLOPT__PI_MAX_D);
    for (i = 0; i < d; ++i)
        for (j = 0; j < d; ++j) {
            const double a = gamma[i * d + j], b = gamma[j * d + i];
            if (!(fabs(a) <= DBL_MAX))
                return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: gamma[%lu] is not finite", fn,
                                    (unsigned long)(i * d + j));
            if (fabs(a - b) > 1e-9 * (fabs(a) + fabs(b)) + 1e-300)
                return polopt__fail(NULL, hk, POLOPT_ERR_INVALID_ARG, "%s: gamma is not symmetric at (%lu, %lu)", fn,
                                    (unsigned long)i, (unsigned long)j);
        }
    G = (double *)polopt__alloc(hk, d * d * 2 + d, sizeof(double), &rc);
    if (!G) return polopt__fail(NULL, hk, rc, "%s: cannot allocate %lu x %lu doubles", fn, (unsigned long)d, (unsigned long)d);
    E = G + d * d, lam = E + d * d;
    memcpy(G, gamma, d * d * sizeof *G);
    polopt__jacobi_eigen(d, G, E, lam); /* gamma = E diag(lam) E^T */
    for (i = 0; i < d; ++i)
        if (fabs(lam[i]) > top) top = fabs(lam[i]);
    for (i = 0; i < d; ++i) lam[i] = fabs(lam[i]) > 1e-10 * top ? 1.0 / lam[i] : 0.0;
    for (i = 0; i < d; ++i)
        for (j = 0; j < d; ++j) {
            double s = 0.0;
            for (k = 0; k < d; ++k) s += E[i * d + k] * lam[k] * E[j * d + k];
            out_pinv[i * d + j] = s;
        }
    POLOPT_FREE(G, hk->alloc_ctx);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_slate_pi_weights(size_t n, size_t K, size_t m, const uint32_t *items,
                                                 const double *pinv, const double *q, size_t q_stride, double *out_w,
                                                 const polopt_hooks *hooks)
{
    static const char *fn = "polopt_slate_pi_weights";
    const polopt_hooks *hk = hooks ? hooks : &polopt__no_hooks;
    size_t i, k, e, d;
    POLOPT__CHECK(NULL, hk, items && pinv && q && out_w, "%s: items, pinv, q or out_w is NULL", fn);
    POLOPT__CHECK(NULL, hk, n >= 1 && K >= 1 && m >= 1 && K <= POLOPT_SLATE_MAX && m <= POLOPT__PI_MAX_D &&
                                K * m <= POLOPT__PI_MAX_D,
                  "%s: n, K, m = %lu, %lu, %lu: each at least 1 and K m at most %d", fn, (unsigned long)n,
                  (unsigned long)K, (unsigned long)m, POLOPT__PI_MAX_D);
    d = K * m;
    POLOPT__CHECK(NULL, hk, q_stride == 0 || q_stride >= d, "%s: q_stride = %lu is neither 0 nor at least K m = %lu", fn,
                  (unsigned long)q_stride, (unsigned long)d);
    POLOPT__CHECK(NULL, hk, n <= SIZE_MAX / K, "%s: n x K overflows", fn);
    for (i = 0; i < n * K; ++i)
        POLOPT__CHECK(NULL, hk, items[i] < m, "%s: items[%lu] = %u is not below m = %lu", fn, (unsigned long)i, items[i],
                      (unsigned long)m);
    for (i = 0; i < n; ++i) {
        const double *qi = q + i * q_stride;
        double w = 0.0;
        for (k = 0; k < K; ++k) { /* (Gamma^+ q_i)[k m + a_ik] */
            const double *row = pinv + (k * m + items[i * K + k]) * d;
            for (e = 0; e < d; ++e) w += row[e] * qi[e];
        }
        if (!(fabs(w) <= DBL_MAX))
            return polopt__fail(NULL, hk, POLOPT_ERR_NONFINITE, "%s: the weight of slate %lu is not finite", fn,
                                (unsigned long)i);
        out_w[i] = w;
    }
    return POLOPT_OK;
}

/* ---- PRR */

POLOPT_DEF polopt_prr_config polopt_prr_config_default(size_t D, size_t L, size_t K)
{
    polopt_prr_config c;
    memset(&c, 0, sizeof c);
    c.D = D, c.L = L, c.K = K;
    c.lr = 0.01f, c.l2 = 1e-4f, c.epochs = 10, c.batch = 64, c.seed = 1;
    return c;
}

#define POLOPT__PRR_MAX_L 1024 /* h(x) lives on the stack of a query */

static size_t polopt__prr_size(const polopt_prr_config *c) { return c->D * c->L + c->K + c->D + 1; }

POLOPT_DEF polopt_result polopt_prr_init(polopt_prr *prr, const polopt_prr_config *config)
{
    static const char *fn = "polopt_prr_init";
    polopt_prr_config c;
    polopt_result rc = POLOPT_OK;
    size_t np;
    if (!prr) return POLOPT_ERR_INVALID_ARG;
    memset(prr, 0, sizeof *prr);
    if (!config) return polopt__fail(&prr->err, NULL, POLOPT_ERR_INVALID_ARG, "%s: config is NULL", fn);
    c = *config;
    POLOPT__CHECK(&prr->err, &c.hooks, c.D >= 1 && c.L >= 1 && c.L <= POLOPT__PRR_MAX_L && c.K >= 1 &&
                                           c.K <= POLOPT_SLATE_MAX,
                  "%s: config.D, L and K must be at least 1, L at most %d and K at most %d", fn, POLOPT__PRR_MAX_L,
                  POLOPT_SLATE_MAX);
    POLOPT__CHECK(&prr->err, &c.hooks, c.D <= (SIZE_MAX / 8) / c.L, "%s: config.D x config.L overflows", fn);
    POLOPT__CHECK(&prr->err, &c.hooks, c.lr > 0.0f && c.lr <= FLT_MAX, "%s: config.lr = %g must be > 0", fn, c.lr);
    POLOPT__CHECK(&prr->err, &c.hooks, c.l2 >= 0.0f && c.l2 <= FLT_MAX, "%s: config.l2 = %g must be >= 0", fn, c.l2);
    POLOPT__CHECK(&prr->err, &c.hooks, c.batch >= 1, "%s: config.batch must be at least 1", fn);
    np = polopt__prr_size(&c);
    prr->params = (float *)polopt__alloc(&c.hooks, np, sizeof(float), &rc);
    if (!prr->params) return polopt__fail(&prr->err, &c.hooks, rc, "%s: cannot allocate %lu parameters", fn, (unsigned long)np);
    memset(prr->params, 0, np * sizeof(float));
    prr->params[np - 1] = (float)(-log((double)c.K) - 2.0);
    prr->config = c;
    return POLOPT_OK;
}

POLOPT_DEF void polopt_prr_free(polopt_prr *prr)
{
    if (!prr) return;
    if (prr->params) POLOPT_FREE(prr->params, prr->config.hooks.alloc_ctx);
    memset(prr, 0, sizeof *prr);
}

/* The K + 1 logits of one slate: u[0] = 0 (no click), u[1 + k] = e(x) + b_k + h^T beta_{a_k}; h (L) receives h(x). */
static void polopt__prr_logits(const polopt_prr_config *c, const float *params, const float *beta, const float *x,
                               const uint32_t *slate, float *h, double *u)
{
    const size_t D = c->D, L = c->L, K = c->K;
    const float *theta = params, *b = params + D * L, *w = b + K;
    double e = w[D];
    size_t k;
    polopt__gemv(POLOPT_TRANS, D, L, 1.0f, theta, L, x, 0.0f, h); /* h = theta^T x */
    for (k = 0; k < D; ++k) e += (double)w[k] * x[k];
    u[0] = 0.0;
    for (k = 0; k < K; ++k) u[1 + k] = e + b[k] + polopt__dot(L, h, beta + (size_t)slate[k] * L);
}

/* Softmax of the K + 1 logits in place. */
static void polopt__prr_softmax(size_t K, double *u)
{
    double m = u[0], z = 0.0;
    size_t k;
    for (k = 1; k <= K; ++k)
        if (u[k] > m) m = u[k];
    for (k = 0; k <= K; ++k) z += u[k] = exp(u[k] - m);
    for (k = 0; k <= K; ++k) u[k] /= z;
}

static polopt_result polopt__prr_check_x(const polopt_prr *prr, const polopt_mips *index, const char *fn)
{
    const polopt_hooks *hk = &prr->config.hooks;
    if (!prr->params) return polopt__not_ready(NULL, hk, fn, "PRR model");
    POLOPT__CHECK(NULL, hk, index && index->n >= prr->config.K && index->dim == prr->config.L,
                  "%s: the index must hold at least K = %lu items of dimension L = %lu", fn,
                  (unsigned long)prr->config.K, (unsigned long)prr->config.L);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_prr_probs(const polopt_prr *prr, const polopt_mips *index, const float *x,
                                          const uint32_t *slate, double *out_p)
{
    static const char *fn = "polopt_prr_probs";
    float h[POLOPT__PRR_MAX_L];
    size_t k = 0;
    polopt_result rc;
    if (!prr) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__prr_check_x(prr, index, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(NULL, &prr->config.hooks, x && slate && out_p, "%s: x, slate or out_p is NULL", fn);
    for (k = 0; k < prr->config.K; ++k)
        POLOPT__CHECK(NULL, &prr->config.hooks, slate[k] < index->n, "%s: slate[%lu] = %u is not below P = %lu", fn,
                      (unsigned long)k, slate[k], (unsigned long)index->n);
    if (polopt_check_finite(prr->config.D, x, &k) != POLOPT_OK)
        return polopt__fail(NULL, &prr->config.hooks, POLOPT_ERR_NONFINITE, "%s: x[%lu] is not finite", fn, (unsigned long)k);
    polopt__prr_logits(&prr->config, prr->params, index->vectors, x, slate, h, out_p);
    polopt__prr_softmax(prr->config.K, out_p);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_prr_fit(polopt_prr *prr, const polopt_mips *index, const polopt_slate_clicks *data,
                                        double *out_nll)
{
    static const char *fn = "polopt_prr_fit";
    polopt_prr_config *c;
    const polopt_hooks *hk;
    size_t D, L, K, np, n, i, k, j, epoch, bad;
    float *work = NULL, *grad, *trial, *h, *gh;
    uint32_t *order = NULL;
    polopt_adam adam;
    polopt_adam_config ac = polopt_adam_config_default();
    polopt_rng rng;
    double nll = 0.0;
    polopt_result rc;
    if (!prr) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__prr_check_x(prr, index, fn)) != POLOPT_OK) return rc;
    c = &prr->config, hk = &c->hooks;
    D = c->D, L = c->L, K = c->K, np = polopt__prr_size(c);
    POLOPT__CHECK(&prr->err, hk, data && data->X && data->items && data->click, "%s: data or one of its arrays is NULL", fn);
    n = data->n;
    POLOPT__CHECK(&prr->err, hk, n >= 1 && n <= UINT32_MAX && n <= SIZE_MAX / (K > D ? K : D),
                  "%s: data->n = %lu is outside 1 .. 2^32 - 1", fn, (unsigned long)n);
    for (i = 0; i < n; ++i) {
        POLOPT__CHECK(&prr->err, hk, data->click[i] >= -1 && data->click[i] < (int32_t)K,
                      "%s: data->click[%lu] = %d is outside -1 .. K - 1 = %lu", fn, (unsigned long)i, (int)data->click[i],
                      (unsigned long)K - 1);
        for (k = 0; k < K; ++k) {
            const uint32_t a = data->items[i * K + k];
            POLOPT__CHECK(&prr->err, hk, a < index->n, "%s: data->items[%lu] = %u is not below P = %lu", fn,
                          (unsigned long)(i * K + k), a, (unsigned long)index->n);
            for (j = 0; j < k; ++j)
                POLOPT__CHECK(&prr->err, hk, data->items[i * K + j] != a, "%s: slate %lu shows item %u twice", fn,
                              (unsigned long)i, a);
        }
    }
    if (polopt_check_finite(n * D, data->X, &bad) != POLOPT_OK)
        return polopt__fail(&prr->err, hk, POLOPT_ERR_NONFINITE, "%s: data->X[%lu] is not finite", fn, (unsigned long)bad);
    work = (float *)polopt__alloc(hk, 2 * np + 2 * L, sizeof(float), &rc);
    order = work ? (uint32_t *)polopt__alloc(hk, n, sizeof(uint32_t), &rc) : NULL;
    if (!order) {
        if (work) POLOPT_FREE(work, hk->alloc_ctx);
        return polopt__fail(&prr->err, hk, rc, "%s: cannot allocate the work space", fn);
    }
    grad = work, trial = grad + np, h = trial + np, gh = h + L;
    memcpy(trial, prr->params, np * sizeof *trial); /* fitted in trial, copied back on success */
    ac.lr = c->lr, ac.hooks = *hk;
    if ((rc = polopt_adam_init(&adam, np, &ac)) != POLOPT_OK) {
        POLOPT_FREE(work, hk->alloc_ctx);
        POLOPT_FREE(order, hk->alloc_ctx);
        return polopt__fail(&prr->err, hk, rc, "%s: cannot set up Adam: %s", fn, adam.err.message);
    }
    polopt_rng_seed(&rng, c->seed);
    for (i = 0; i < n; ++i) order[i] = (uint32_t)i;
    for (epoch = 0; epoch < c->epochs && rc == POLOPT_OK; ++epoch) {
        size_t first;
        polopt_rng_shuffle(&rng, n, order);
        for (first = 0; first < n && rc == POLOPT_OK; first += c->batch) {
            const size_t m = n - first < c->batch ? n - first : c->batch;
            const float inv_m = 1.0f / (float)m;
            float *gtheta = grad, *gb = grad + D * L, *gw = gb + K;
            size_t r;
            memset(grad, 0, np * sizeof *grad);
            for (r = 0; r < m; ++r) { /* d(-log p_c) / du_k = p_k - 1[k = c] for the K + 1 outcomes */
                const size_t row = order[first + r];
                const float *x = data->X + row * D;
                const uint32_t *slate = data->items + row * K;
                double u[POLOPT_SLATE_MAX + 1], de = 0.0;
                polopt__prr_logits(c, trial, index->vectors, x, slate, h, u);
                polopt__prr_softmax(K, u);
                u[data->click[row] + 1] -= 1.0;
                memset(gh, 0, L * sizeof *gh);
                for (k = 0; k < K; ++k) {
                    const float g = (float)u[1 + k] * inv_m;
                    de += u[1 + k];
                    gb[k] += g;
                    polopt__axpy(L, g, index->vectors + (size_t)slate[k] * L, gh); /* d/dh = sum_k g_k beta_{a_k} */
                }
                for (j = 0; j < D; ++j) { /* theta += x gh^T, w += de x */
                    polopt__axpy(L, x[j], gh, gtheta + j * L);
                    gw[j] += (float)de * inv_m * x[j];
                }
                gw[D] += (float)de * inv_m;
            }
            for (j = 0; j < D * L; ++j) gtheta[j] += 2.0f * c->l2 * trial[j];
            for (j = 0; j < D; ++j) gw[j] += 2.0f * c->l2 * trial[D * L + K + j];
            rc = polopt_adam_step(&adam, trial, grad);
        }
    }
    if (rc == POLOPT_OK) { /* the mean negative log-likelihood at the end */
        double u[POLOPT_SLATE_MAX + 1];
        for (i = 0; i < n; ++i) {
            polopt__prr_logits(c, trial, index->vectors, data->X + i * D, data->items + i * K, h, u);
            polopt__prr_softmax(K, u);
            nll -= log(u[data->click[i] + 1] > 1e-300 ? u[data->click[i] + 1] : 1e-300);
        }
        nll /= (double)n;
        if (!(nll <= DBL_MAX) || polopt_check_finite(np, trial, &bad) != POLOPT_OK) rc = POLOPT_ERR_NONFINITE;
    }
    polopt_adam_free(&adam);
    if (rc == POLOPT_OK) memcpy(prr->params, trial, np * sizeof *trial);
    POLOPT_FREE(work, hk->alloc_ctx);
    POLOPT_FREE(order, hk->alloc_ctx);
    if (rc != POLOPT_OK)
        return polopt__fail(&prr->err, hk, rc, "%s: the fit diverged (non-finite parameters or likelihood): lower config.lr",
                            fn);
    if (out_nll) *out_nll = nll;
    polopt__clear_error(&prr->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_prr_slate(const polopt_prr *prr, const polopt_mips *index, polopt_mips_scratch *scratch,
                                          const float *x, size_t ef, uint32_t *out_slate)
{
    static const char *fn = "polopt_prr_slate";
    float h[POLOPT__PRR_MAX_L];
    uint32_t ids[POLOPT_SLATE_MAX];
    size_t K, k, order[POLOPT_SLATE_MAX], bad = 0;
    const float *b;
    polopt_result rc;
    if (!prr) return POLOPT_ERR_INVALID_ARG;
    if ((rc = polopt__prr_check_x(prr, index, fn)) != POLOPT_OK) return rc;
    POLOPT__CHECK(NULL, &prr->config.hooks, scratch && x && out_slate, "%s: scratch, x or out_slate is NULL", fn);
    if (polopt_check_finite(prr->config.D, x, &bad) != POLOPT_OK)
        return polopt__fail(NULL, &prr->config.hooks, POLOPT_ERR_NONFINITE, "%s: x[%lu] is not finite", fn,
                            (unsigned long)bad);
    K = prr->config.K, b = prr->params + prr->config.D * prr->config.L;
    polopt__gemv(POLOPT_TRANS, prr->config.D, prr->config.L, 1.0f, prr->params, prr->config.L, x, 0.0f, h);
    if ((rc = polopt_mips_search(index, scratch, h, K, ef ? ef : K, ids, NULL)) != POLOPT_OK)
        return polopt__fail(NULL, &prr->config.hooks, rc, "%s: the MIPS search failed (%s)", fn, polopt_strerror(rc));
    for (k = 0; k < K; ++k) { /* positions by decreasing bias (insertion sort; ties keep position order) */
        size_t i = k;
        while (i > 0 && b[order[i - 1]] < b[k]) {
            order[i] = order[i - 1];
            --i;
        }
        order[i] = k;
    }
    for (k = 0; k < K; ++k) out_slate[order[k]] = ids[k]; /* the k-th best item at the k-th best position */
    return POLOPT_OK;
}

/* >>synth ------------------------------------------------------------------------------------------------- */

/* Tags that keep the random streams of clusters, items, users and user item draws apart. */
#define POLOPT__TAG_CLUSTER 0x636c7573ULL
#define POLOPT__TAG_ITEM 0x6974656dULL
#define POLOPT__TAG_USER 0x75736572ULL
#define POLOPT__TAG_DRAW 0x64726177ULL
#define POLOPT__TAG_MIXING 0x6d697869ULL
#define POLOPT__SYNTH_MAX_INTERESTS 64

POLOPT_DEF polopt_synth_config polopt_synth_config_default(void)
{
    polopt_synth_config c;
    memset(&c, 0, sizeof c);
    c.seed = 1;
    c.cluster_zipf = 0.8;
    c.spectrum_decay = 0.5;
    c.item_spread = 0.6;
    c.norm_sigma = 0.35;
    c.user_interests = 3;
    c.taste_noise = 0.3;
    c.context_items = 10;
    c.context_mixing = 1.0;
    c.reward_bias = -3.0;
    c.reward_scale = 4.0;
    return c;
}

/* v /= ||v|| (a zero vector becomes the first basis vector, so the result is always a unit vector). */
static void polopt__normalise(size_t n, float *v)
{
    const float norm = polopt__nrm2(n, v);
    if (norm > 0.0f) polopt__scale(n, 1.0f / norm, v);
    else {
        memset(v, 0, n * sizeof *v);
        v[0] = 1.0f;
    }
}

/* Norm of the spectrum s (so that s * z / ||s|| has expected squared norm 1 for z ~ N(0, I)). */
static float polopt__synth_snorm(const polopt_synth *s)
{
    return polopt__nrm2(s->config.dim, s->spectrum);
}

static uint32_t polopt__synth_cluster_of(const polopt_synth *s, uint32_t item)
{
    size_t lo = 0, hi = s->n_clusters; /* invariant: first[lo] <= item < first[hi] */
    while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        if (s->cluster_first[mid] <= item) lo = mid;
        else hi = mid;
    }
    return (uint32_t)lo;
}

/* beta_a into out (L floats), following the model in the declaration. */
static void polopt__synth_item(const polopt_synth *s, uint32_t a, uint32_t cluster, float snorm, float *out)
{
    const size_t L = s->config.dim;
    const uint32_t first = s->cluster_first[cluster], size = s->cluster_first[cluster + 1] - first;
    const float *d = s->directions + (size_t)cluster * L;
    const float spread = (float)s->config.item_spread / snorm;
    polopt_rng rng;
    double nu;
    size_t j;
    polopt__rng_keyed(&rng, s->config.seed, POLOPT__TAG_ITEM, a);
    nu = (1.5 - (double)(a - first) / (double)size) * exp(s->config.norm_sigma * polopt_rng_normal(&rng));
    polopt__rng_normals(&rng, L, out);
    for (j = 0; j < L; ++j) out[j] = d[j] + spread * s->spectrum[j] * out[j];
    polopt__normalise(L, out);
    polopt__scale(L, (float)nu, out);
}

/* A user's interests: clusters c_j (each proportional to cluster size, through the cluster of a uniform item)
   with weights w_j proportional to 2^-j.  The user's generator is left just after these draws. */
static size_t polopt__synth_interests(const polopt_synth *s, uint64_t user, polopt_rng *rng, uint32_t *clusters,
                                      double *weights)
{
    const size_t m = s->config.user_interests;
    double total = 0.0;
    size_t j;
    polopt__rng_keyed(rng, s->config.seed, POLOPT__TAG_USER, user);
    for (j = 0; j < m; ++j) {
        clusters[j] = polopt__synth_cluster_of(s, (uint32_t)polopt__rng_below(rng, s->config.n_items));
        weights[j] = ldexp(1.0, -(int)j);
        total += weights[j];
    }
    for (j = 0; j < m; ++j) weights[j] /= total;
    return m;
}

/* One item from the user's interests: cluster c_j with probability w_j, then rank floor(|c| U^2). */
static uint32_t polopt__synth_draw_item(const polopt_synth *s, polopt_rng *rng, const uint32_t *clusters,
                                        const double *weights, size_t m)
{
    double u = polopt__rng_uniform(rng), cum = 0.0;
    size_t j;
    uint32_t first, size;
    for (j = 0; j + 1 < m; ++j) {
        cum += weights[j];
        if (u < cum) break;
    }
    first = s->cluster_first[clusters[j]];
    size = s->cluster_first[clusters[j] + 1] - first;
    u = polopt__rng_uniform(rng);
    return first + (uint32_t)((double)size * u * u);
}

static void polopt__synth_draw_rng(const polopt_synth *s, uint64_t user, uint32_t set, polopt_rng *rng)
{
    uint64_t k = user;
    polopt__rng_keyed(rng, s->config.seed, POLOPT__TAG_DRAW, polopt__splitmix64(&k) ^ set);
}

static polopt_result polopt__synth_init_impl(polopt_synth *s, const polopt_synth_config *config)
{
    static const char *fn = "polopt_synth_init";
    polopt_result rc = POLOPT_OK;
    polopt_synth_config c;
    size_t C, L, j, extra, given = 0;
    double wsum = 0.0;
    if (!s) return POLOPT_ERR_INVALID_ARG;
    memset(s, 0, sizeof *s);
    if (!config) return polopt__fail(&s->err, NULL, POLOPT_ERR_INVALID_ARG, "%s: config is NULL", fn);
    c = s->config = *config;
    POLOPT__CHECK(&s->err, &c.hooks, c.n_items >= 1 && c.n_items <= UINT32_MAX, "%s: config.n_items = %lu must be in [1, 2^32 - 1]",
                        fn, (unsigned long)c.n_items);
    POLOPT__CHECK(&s->err, &c.hooks, c.dim >= 1 && c.dim <= (1u << 20), "%s: config.dim = %lu must be in [1, 2^20]", fn,
                        (unsigned long)c.dim);
    POLOPT__CHECK(&s->err, &c.hooks, c.n_clusters <= c.n_items, "%s: config.n_clusters = %lu exceeds n_items = %lu", fn,
                        (unsigned long)c.n_clusters, (unsigned long)c.n_items);
    POLOPT__CHECK(&s->err, &c.hooks, c.user_interests >= 1 && c.user_interests <= POLOPT__SYNTH_MAX_INTERESTS,
                        "%s: config.user_interests = %lu must be in [1, %d]", fn, (unsigned long)c.user_interests,
                        POLOPT__SYNTH_MAX_INTERESTS);
    POLOPT__CHECK(&s->err, &c.hooks, c.context_items >= 1, "%s: config.context_items must be >= 1", fn);
    POLOPT__CHECK(&s->err, &c.hooks, c.context_dim <= (1u << 20), "%s: config.context_dim = %lu must be at most 2^20", fn,
                        (unsigned long)c.context_dim);
    if ((rc = polopt__check_range(&s->err, &c.hooks, fn, "cluster_zipf", c.cluster_zipf, 0, POLOPT__CLOSED, 8, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "spectrum_decay", c.spectrum_decay, 0, POLOPT__CLOSED, 4, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "item_spread", c.item_spread, 0, POLOPT__CLOSED, 1e3, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "norm_sigma", c.norm_sigma, 0, POLOPT__CLOSED, 4, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "taste_noise", c.taste_noise, 0, POLOPT__CLOSED, 1e3, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "context_mixing", c.context_mixing, 0, POLOPT__CLOSED, 1e3, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "reward_bias", c.reward_bias, -1e6, POLOPT__CLOSED, 1e6, POLOPT__CLOSED)) != POLOPT_OK ||
        (rc = polopt__check_range(&s->err, &c.hooks, fn, "reward_scale", c.reward_scale, -1e6, POLOPT__CLOSED, 1e6, POLOPT__CLOSED)) != POLOPT_OK)
        return rc;
    L = c.dim;
    C = c.n_clusters ? c.n_clusters : (size_t)floor(sqrt((double)c.n_items) + 0.5);
    if (C < 1) C = 1;
    s->spectrum = (float *)polopt__alloc(&c.hooks, L, sizeof(float), &rc);
    if (s->spectrum) s->directions = (float *)polopt__alloc(&c.hooks, C, L * sizeof(float), &rc);
    s->context_dim = c.context_dim ? c.context_dim : L;
    if (s->directions) s->cluster_first = (uint32_t *)polopt__alloc(&c.hooks, C + 1, sizeof(uint32_t), &rc);
    if (s->cluster_first) s->mixing = (float *)polopt__alloc(&c.hooks, s->context_dim, L * sizeof(float), &rc);
    if (!s->mixing) {
        return polopt__fail(&s->err, &c.hooks, rc, "%s: cannot allocate %lu clusters of dimension %lu", fn,
                            (unsigned long)C, (unsigned long)L);
    }
    s->n_clusters = C;
    for (j = 0; j < L; ++j) s->spectrum[j] = (float)pow(1.0 + (double)j, -c.spectrum_decay);
    for (j = 0; j < C; ++j) {
        polopt_rng rng;
        float *d = s->directions + j * L;
        size_t i;
        polopt__rng_keyed(&rng, c.seed, POLOPT__TAG_CLUSTER, j);
        polopt__rng_normals(&rng, L, d);
        for (i = 0; i < L; ++i) d[i] *= s->spectrum[i];
        polopt__normalise(L, d);
    }
    { /* G = I + gamma Z / sqrt(L) */
        polopt_rng rng;
        const float g = (float)(c.context_mixing / sqrt((double)L));
        polopt__rng_keyed(&rng, c.seed, POLOPT__TAG_MIXING, 0);
        polopt__rng_normals(&rng, s->context_dim * L, s->mixing);
        for (j = 0; j < s->context_dim * L; ++j) s->mixing[j] *= g;
        for (j = 0; j < s->context_dim && j < L; ++j) s->mixing[j * L + j] += 1.0f;
    }
    /* Cluster sizes: 1 each, then the other P - C items in proportion to (c + 1)^-zipf, rounded down, and the
       few left over by rounding one each to the largest clusters. */
    for (j = 0; j < C; ++j) wsum += pow(1.0 + (double)j, -c.cluster_zipf);
    extra = c.n_items - C;
    s->cluster_first[0] = 0;
    for (j = 0; j < C; ++j) {
        const size_t share = (size_t)floor((double)extra * pow(1.0 + (double)j, -c.cluster_zipf) / wsum);
        given += share;
        s->cluster_first[j + 1] = (uint32_t)(1 + share);
    }
    if (given > extra) given = extra; /* cannot happen, but keeps the sizes summing to P whatever rounding does */
    for (j = 0; j < extra - given; ++j) s->cluster_first[1 + j % C] += 1;
    for (j = 0; j < C; ++j) s->cluster_first[j + 1] += s->cluster_first[j];
    POLOPT_ASSERT(s->cluster_first[C] == c.n_items);
    polopt__clear_error(&s->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_init(polopt_synth *synth, const polopt_synth_config *config)
{
    const polopt_result rc = polopt__synth_init_impl(synth, config);
    if (rc != POLOPT_OK && synth) POLOPT__ZERO_KEEPING_ERROR(synth, polopt_synth_free);
    return rc;
}

POLOPT_DEF void polopt_synth_free(polopt_synth *synth)
{
    if (!synth) return;
    polopt__dealloc(&synth->config.hooks, synth->spectrum);
    polopt__dealloc(&synth->config.hooks, synth->directions);
    polopt__dealloc(&synth->config.hooks, synth->cluster_first);
    polopt__dealloc(&synth->config.hooks, synth->mixing);
    memset(synth, 0, sizeof *synth);
}

/* The const synth functions cannot store a message in the object; they send it to the log callback. */
static polopt_result polopt__synth_ready(const polopt_synth *s, const char *fn)
{
    if (!s) return POLOPT_ERR_INVALID_ARG;
    if (!s->cluster_first)
        return polopt__fail(NULL, &s->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: synth is not initialised", fn);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_items(const polopt_synth *synth, size_t first, size_t count, float *out)
{
    static const char *fn = "polopt_synth_items";
    polopt_result rc = polopt__synth_ready(synth, fn);
    size_t i;
    uint32_t cluster;
    float snorm;
    if (rc != POLOPT_OK) return rc;
    if (first > synth->config.n_items || count > synth->config.n_items - first)
        return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: items [%lu, %lu + %lu) are outside the catalogue of %lu", fn, (unsigned long)first,
                            (unsigned long)first, (unsigned long)count, (unsigned long)synth->config.n_items);
    if (count && !out) return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if (count == 0) return POLOPT_OK;
    snorm = polopt__synth_snorm(synth);
    cluster = polopt__synth_cluster_of(synth, (uint32_t)first);
    for (i = 0; i < count; ++i) {
        const uint32_t a = (uint32_t)(first + i);
        while (a >= synth->cluster_first[cluster + 1]) ++cluster;
        polopt__synth_item(synth, a, cluster, snorm, out + i * synth->config.dim);
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_item_cluster(const polopt_synth *synth, uint32_t item, uint32_t *out_cluster)
{
    static const char *fn = "polopt_synth_item_cluster";
    polopt_result rc = polopt__synth_ready(synth, fn);
    if (rc != POLOPT_OK) return rc;
    if (item >= synth->config.n_items || !out_cluster)
        return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: item %lu is outside [0, %lu)%s", fn,
                            (unsigned long)item, (unsigned long)synth->config.n_items,
                            out_cluster ? "" : " or out_cluster is NULL");
    *out_cluster = polopt__synth_cluster_of(synth, item);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_user_items(const polopt_synth *synth, uint64_t user, uint32_t set, size_t n,
                                                 uint32_t *out_items)
{
    static const char *fn = "polopt_synth_user_items";
    polopt_result rc = polopt__synth_ready(synth, fn);
    uint32_t clusters[POLOPT__SYNTH_MAX_INTERESTS];
    double weights[POLOPT__SYNTH_MAX_INTERESTS];
    polopt_rng rng;
    size_t m, i;
    if (rc != POLOPT_OK) return rc;
    if (n && !out_items) return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: out_items is NULL", fn);
    m = polopt__synth_interests(synth, user, &rng, clusters, weights);
    polopt__synth_draw_rng(synth, user, set, &rng);
    for (i = 0; i < n; ++i) out_items[i] = polopt__synth_draw_item(synth, &rng, clusters, weights, m);
    return POLOPT_OK;
}

/* x_u and t_u (out_taste may be NULL) of user u; work: 2 L floats. */
static void polopt__synth_user(const polopt_synth *synth, uint64_t user, float *out_context, float *out_taste,
                               float *work)
{
    uint32_t clusters[POLOPT__SYNTH_MAX_INTERESTS];
    double weights[POLOPT__SYNTH_MAX_INTERESTS];
    polopt_rng rng, draw;
    const size_t L = synth->config.dim;
    const float snorm = polopt__synth_snorm(synth);
    float *item = work, *mean = work + L; /* one item, and m_u */
    size_t m, i, j;
    m = polopt__synth_interests(synth, user, &rng, clusters, weights);
    if (out_taste) { /* t_u = unit(sum_j w_j d_cj + taste_noise * s * zeta / ||s||) */
        const float noise = (float)synth->config.taste_noise / snorm;
        polopt__rng_normals(&rng, L, out_taste);
        for (j = 0; j < L; ++j) out_taste[j] *= noise * synth->spectrum[j];
        for (i = 0; i < m; ++i) polopt__axpy(L, (float)weights[i], synth->directions + (size_t)clusters[i] * L, out_taste);
        polopt__normalise(L, out_taste);
    }
    memset(mean, 0, L * sizeof *mean);
    polopt__synth_draw_rng(synth, user, 0, &draw);
    for (i = 0; i < synth->config.context_items; ++i) {
        const uint32_t a = polopt__synth_draw_item(synth, &draw, clusters, weights, m);
        polopt__synth_item(synth, a, polopt__synth_cluster_of(synth, a), snorm, item);
        polopt__axpy(L, 1.0f / (float)synth->config.context_items, item, mean);
    }
    polopt__gemv(POLOPT_NO_TRANS, synth->context_dim, L, 1.0f, synth->mixing, L, mean, 0.0f, out_context); /* x_u = G m_u */
}

POLOPT_DEF polopt_result polopt_synth_user(const polopt_synth *synth, uint64_t user, float *out_context,
                                           float *out_taste)
{
    static const char *fn = "polopt_synth_user";
    polopt_result rc = polopt__synth_ready(synth, fn);
    float *work;
    if (rc != POLOPT_OK) return rc;
    if (!out_context) return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: out_context is NULL", fn);
    work = (float *)polopt__alloc(&synth->config.hooks, 2 * synth->config.dim, sizeof(float), &rc);
    if (!work)
        return polopt__fail(NULL, &synth->config.hooks, rc, "%s: cannot allocate %lu floats", fn,
                            (unsigned long)(2 * synth->config.dim));
    polopt__synth_user(synth, user, out_context, out_taste, work);
    polopt__dealloc(&synth->config.hooks, work);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_rewards(const polopt_synth *synth, const float *taste, size_t count,
                                              const float *items, float *out_reward)
{
    static const char *fn = "polopt_synth_rewards";
    polopt_result rc = polopt__synth_ready(synth, fn);
    size_t i, L;
    if (rc != POLOPT_OK) return rc;
    if (!taste || (count && (!items || !out_reward)))
        return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG, "%s: taste, items or out_reward is NULL",
                            fn);
    L = synth->config.dim;
    for (i = 0; i < count; ++i) {
        const double z = synth->config.reward_bias + synth->config.reward_scale * polopt__dot(L, taste, items + i * L);
        out_reward[i] = (float)(1.0 / (1.0 + exp(-z)));
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_reward(void *user, uint32_t context, size_t n, const uint32_t *items,
                                             float *out_rewards)
{
    const polopt_synth_task *t = (const polopt_synth_task *)user;
    size_t s, L;
    if (!t || !t->synth || !t->synth->cluster_first || !t->items || !t->tastes || context >= t->n ||
        (n && (!items || !out_rewards)))
        return POLOPT_ERR_INVALID_ARG;
    L = t->synth->config.dim;
    for (s = 0; s < n; ++s) {
        double z;
        if (items[s] >= t->synth->config.n_items) return POLOPT_ERR_INVALID_ARG;
        z = t->synth->config.reward_bias +
            t->synth->config.reward_scale * polopt__dot(L, t->tastes + (size_t)context * L, t->items + (size_t)items[s] * L);
        /* the logistic function, with the exponential of a non-positive number either way */
        out_rewards[s] = z >= 0.0 ? 1.0f / (1.0f + polopt__expf((float)-z))
                                  : polopt__expf((float)z) / (1.0f + polopt__expf((float)z));
    }
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_relevant(const polopt_synth *synth, const float *items, size_t n_users,
                                               const float *tastes, size_t k, polopt_sets *out_sets)
{
    static const char *fn = "polopt_synth_relevant";
    polopt_result rc = polopt__synth_ready(synth, fn);
    polopt_mips exact;
    polopt_mips_scratch scratch;
    uint32_t *ids = NULL;
    size_t *offsets = NULL, u;
    if (rc != POLOPT_OK) return rc;
    if (!items || !tastes || !out_sets || n_users == 0 || k == 0 || k > synth->config.n_items)
        return polopt__fail(NULL, &synth->config.hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: items, tastes or out_sets is NULL, n_users = 0, or k = %lu is not in [1, P]", fn,
                            (unsigned long)k);
    memset(out_sets, 0, sizeof *out_sets);
    memset(&exact, 0, sizeof exact);
    memset(&scratch, 0, sizeof scratch);
    rc = polopt_mips_init_exact(&exact, synth->config.n_items, synth->config.dim, items, 0, &synth->config.hooks);
    if (rc == POLOPT_OK) rc = polopt_mips_scratch_init(&scratch, &exact, k, &synth->config.hooks);
    if (rc == POLOPT_OK) ids = (uint32_t *)polopt__alloc(&synth->config.hooks, n_users, k * sizeof *ids, &rc);
    if (rc == POLOPT_OK) offsets = (size_t *)polopt__alloc(&synth->config.hooks, n_users + 1, sizeof *offsets, &rc);
    if (rc == POLOPT_OK) rc = polopt_mips_search_batch(&exact, &scratch, n_users, tastes, synth->config.dim, k, 0, ids, NULL);
    if (rc == POLOPT_OK) {
        for (u = 0; u <= n_users; ++u) offsets[u] = u * k;
        rc = polopt_sets_init(out_sets, n_users, offsets, ids, &synth->config.hooks);
    }
    if (rc != POLOPT_OK) polopt__fail(NULL, &synth->config.hooks, rc, "%s: %s", fn, polopt_strerror(rc));
    polopt__dealloc(&synth->config.hooks, offsets);
    polopt__dealloc(&synth->config.hooks, ids);
    polopt_mips_scratch_free(&scratch);
    polopt_mips_free(&exact);
    return rc;
}

/* Sessions with state.  m_t and z_t are recomputed at the start and after every click, so that the const queries
   only read them. */
#define POLOPT__TAG_SESSION 0x73657373ULL

POLOPT_DEF polopt_synth_session_config polopt_synth_session_config_default(void)
{
    polopt_synth_session_config c;
    memset(&c, 0, sizeof c);
    c.memory = 5;
    c.recency = 0.5;
    c.max_steps = 15;
    return c;
}

POLOPT_DEF void polopt_synth_session_free(polopt_synth_session *session)
{
    if (!session) return;
    polopt__dealloc(&session->hooks, session->block);
    memset(session, 0, sizeof *session);
}

static void polopt__synth_session_layout(polopt_synth_session *s, size_t L, size_t D, polopt__arena *a)
{
    s->taste = (float *)polopt__carve(a, L, sizeof(float));
    s->context = (float *)polopt__carve(a, D, sizeof(float));
    s->recent = (float *)polopt__carve(a, L, sizeof(float));
    s->state = (float *)polopt__carve(a, L, sizeof(float));
    s->work = (float *)polopt__carve(a, 2 * L, sizeof(float));
    s->history = (uint32_t *)polopt__carve(a, s->config.memory, sizeof(uint32_t));
    s->shown = (uint32_t *)polopt__carve(a, s->config.max_steps, sizeof(uint32_t));
}

/* m_t = (1/M) sum of beta over the history, then z_t = (1 - lambda) t_u + lambda m_t / ||m_t||. */
static void polopt__synth_session_update(polopt_synth_session *s)
{
    const size_t L = s->synth->config.dim, M = s->config.memory;
    const float lambda = (float)s->config.recency;
    float norm = 0.0f;
    size_t i, j;
    memset(s->recent, 0, L * sizeof(float));
    for (i = 0; i < M; ++i)
        for (j = 0; j < L; ++j) s->recent[j] += s->items[(size_t)s->history[i] * L + j] / (float)M;
    for (j = 0; j < L; ++j) norm += s->recent[j] * s->recent[j];
    norm = sqrtf(norm) + 1e-12f; /* m_t = 0 only if the history's embeddings cancel: z_t is then (1 - lambda) t_u */
    for (j = 0; j < L; ++j) s->state[j] = (1.0f - lambda) * s->taste[j] + lambda * s->recent[j] / norm;
}

static polopt_result polopt__synth_session_init_impl(polopt_synth_session *s, const polopt_synth *synth,
                                                     const float *items, const polopt_synth_session_config *config)
{
    static const char *fn = "polopt_synth_session_init";
    polopt_synth_session_config c;
    polopt__arena a = {NULL, 0, 0};
    polopt_result rc;
    const polopt_hooks *hk;
    if (!s) return POLOPT_ERR_INVALID_ARG;
    memset(s, 0, sizeof *s);
    if ((rc = polopt__synth_ready(synth, fn)) != POLOPT_OK)
        return polopt__fail(&s->err, NULL, rc, "%s: synth is NULL or not initialised", fn);
    hk = &synth->config.hooks;
    c = s->config = config ? *config : polopt_synth_session_config_default();
    POLOPT__CHECK(&s->err, hk, items != NULL, "%s: items is NULL", fn);
    POLOPT__CHECK(&s->err, hk, c.memory >= 1 && c.memory <= (1u << 20), "%s: config.memory = %lu must be in [1, 2^20]",
                  fn, (unsigned long)c.memory);
    POLOPT__CHECK(&s->err, hk, c.max_steps >= 1 && c.max_steps <= (1u << 24),
                  "%s: config.max_steps = %lu must be in [1, 2^24]", fn, (unsigned long)c.max_steps);
    if ((rc = polopt__check_range(&s->err, hk, fn, "recency", c.recency, 0.0, POLOPT__CLOSED, 1.0, POLOPT__CLOSED)))
        return rc;
    s->synth = synth;
    s->items = items;
    s->hooks = *hk;
    polopt__synth_session_layout(s, synth->config.dim, synth->context_dim, &a);
    if (!(s->block = polopt__arena_alloc(hk, &a, &rc)))
        return polopt__fail(&s->err, hk, rc, "%s: cannot allocate a session (memory = %lu, max_steps = %lu)", fn,
                            (unsigned long)c.memory, (unsigned long)c.max_steps);
    polopt__arena_begin(&a, s->block);
    polopt__synth_session_layout(s, synth->config.dim, synth->context_dim, &a);
    return polopt_synth_session_start(s, 0, 0);
}

POLOPT_DEF polopt_result polopt_synth_session_init(polopt_synth_session *session, const polopt_synth *synth,
                                                   const float *items, const polopt_synth_session_config *config)
{
    const polopt_result rc = polopt__synth_session_init_impl(session, synth, items, config);
    if (rc != POLOPT_OK && session) POLOPT__ZERO_KEEPING_ERROR(session, polopt_synth_session_free);
    return rc;
}

/* The const queries have no error buffer to write: their message goes to the catalogue's log callback.  out: the
   caller's output, which must not be NULL when the query writes anything. */
static polopt_result polopt__synth_session_ready(const polopt_synth_session *s, int writes, const void *out,
                                                 const char *fn)
{
    if (!s) return POLOPT_ERR_INVALID_ARG;
    if (!s->block) return polopt__fail(NULL, NULL, POLOPT_ERR_INVALID_ARG, "%s: session is not initialised", fn);
    if (writes && !out)
        return polopt__fail(NULL, &s->hooks, POLOPT_ERR_INVALID_ARG, "%s: the output is NULL", fn);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_session_start(polopt_synth_session *session, uint64_t user, uint64_t seed)
{
    static const char *fn = "polopt_synth_session_start";
    polopt_result rc;
    if (!session) return POLOPT_ERR_INVALID_ARG;
    if (!session->block)
        return polopt__fail(&session->err, NULL, POLOPT_ERR_INVALID_ARG, "%s: session is not initialised", fn);
    /* cannot fail (the catalogue is ready, history is not NULL): the check is for a future precondition */
    rc = polopt_synth_user_items(session->synth, user, 0, session->config.memory, session->history);
    if (rc != POLOPT_OK) return polopt__fail(&session->err, NULL, rc, "%s: %s", fn, polopt_strerror(rc));
    polopt__synth_user(session->synth, user, session->context, session->taste, session->work);
    polopt__rng_keyed(&session->rng, seed, POLOPT__TAG_SESSION, user);
    session->user = user;
    session->head = 0;
    session->steps = 0;
    polopt__synth_session_update(session);
    polopt__clear_error(&session->err);
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_session_context(const polopt_synth_session *session, float *out_x)
{
    const polopt_result rc = polopt__synth_session_ready(session, 1, out_x, "polopt_synth_session_context");
    if (rc != POLOPT_OK) return rc;
    memcpy(out_x, session->recent, session->synth->config.dim * sizeof(float));
    memcpy(out_x + session->synth->config.dim, session->context, session->synth->context_dim * sizeof(float));
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_session_state(const polopt_synth_session *session, float *out_z)
{
    const polopt_result rc = polopt__synth_session_ready(session, 1, out_z, "polopt_synth_session_state");
    if (rc != POLOPT_OK) return rc;
    memcpy(out_z, session->state, session->synth->config.dim * sizeof(float));
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_session_click_probs(const polopt_synth_session *session, uint32_t first,
                                                          size_t count, float *out_p)
{
    static const char *fn = "polopt_synth_session_click_probs";
    polopt_result rc = polopt__synth_session_ready(session, count > 0, out_p, fn);
    size_t t, P, L;
    if (rc != POLOPT_OK) return rc;
    P = session->synth->config.n_items, L = session->synth->config.dim;
    if (first > P || count > P - first)
        return polopt__fail(NULL, &session->hooks, POLOPT_ERR_INVALID_ARG,
                            "%s: items [%lu, %lu + %lu) are outside the catalogue of %lu", fn, (unsigned long)first,
                            (unsigned long)first, (unsigned long)count, (unsigned long)P);
    if ((rc = polopt_synth_rewards(session->synth, session->state, count, session->items + (size_t)first * L, out_p)))
        return rc;
    for (t = 0; t < session->steps; ++t)
        if (session->shown[t] >= first && session->shown[t] - first < count) out_p[session->shown[t] - first] = 0.0f;
    return POLOPT_OK;
}

POLOPT_DEF polopt_result polopt_synth_session_step(polopt_synth_session *session, uint32_t a, int *out_clicked,
                                                   float *out_p)
{
    static const char *fn = "polopt_synth_session_step";
    polopt_result rc;
    float p;
    int clicked;
    if (!session) return POLOPT_ERR_INVALID_ARG;
    if (!session->block)
        return polopt__fail(&session->err, NULL, POLOPT_ERR_INVALID_ARG, "%s: session is not initialised", fn);
    POLOPT__CHECK(&session->err, &session->hooks, a < session->synth->config.n_items,
                  "%s: item %lu is outside the catalogue of %lu", fn, (unsigned long)a,
                  (unsigned long)session->synth->config.n_items);
    POLOPT__CHECK(&session->err, &session->hooks, session->steps < session->config.max_steps,
                  "%s: the session of user %lu has taken its max_steps = %lu recommendations", fn,
                  (unsigned long)session->user, (unsigned long)session->config.max_steps);
    if ((rc = polopt_synth_session_click_probs(session, a, 1, &p)) != POLOPT_OK)
        return polopt__fail(&session->err, NULL, rc, "%s: %s", fn, polopt_strerror(rc));
    clicked = polopt_rng_uniformf(&session->rng) < p; /* one uniform a step, clicked or not: common random numbers */
    session->shown[session->steps++] = a;
    if (clicked) {
        session->history[session->head] = a;
        session->head = (session->head + 1) % session->config.memory;
        polopt__synth_session_update(session);
    }
    if (out_clicked) *out_clicked = clicked;
    if (out_p) *out_p = p;
    return POLOPT_OK;
}

#endif /* POLOPT__IMPLEMENTATION_DONE */
#endif /* POLOPT_IMPLEMENTATION */

/* >>license -----------------------------------------------------------------------------------------------
This software is available under 2 licenses; choose whichever you prefer.
ALTERNATIVE A - MIT License
Copyright (c) 2026 the polopt authors
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation the
rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit
persons to whom the Software is furnished to do so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all copies or substantial portions of the
Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE
WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this software, either in source code form or
as a compiled binary, for any purpose, commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this software dedicate any and all copyright
interest in the software to the public domain. We make this dedication for the benefit of the public at large and to
the detriment of our heirs and successors. We intend this dedication to be an overt act of relinquishment in
perpetuity of all present and future rights to this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE
WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS BE
LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------------------------------------------ */
