/* Writes the seed corpus of the fuzz drivers (`make fuzz-corpus`; the output is checked in):
     DIR/index/   small valid indexes (exact, HNSW with upper levels, one grown by polopt_mips_add) and truncations
     DIR/policy/  small valid policies (identity, random, extreme theta and temperatures) and truncations
     DIR/csv/     small logs, valid and not; the first byte of each chooses the reader's configuration in
                  fuzz_csv.c ('0' + configuration; + 0x80: also try the file with a byte order mark)
     DIR/interactions/  interaction logs (the first byte: the reader's configuration in fuzz_interactions.c) and
                  interaction files, valid and truncated
   Deterministic: the same files on every machine (the files are a pure function of the objects, little-endian). */
#define POLOPT_IMPLEMENTATION
#include "polopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *out_dir;
static int failures;

static void write_file(const char *sub, const char *name, const void *data, size_t size)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
    f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s (does %s/%s exist?)\n", path, out_dir, sub);
        exit(1);
    }
}

static void check(polopt_result rc, const char *what, const polopt_error *err)
{
    if (rc == POLOPT_OK) return;
    fprintf(stderr, "make_corpus: %s: %s\n", what, err ? err->message : polopt_strerror(rc));
    exit(1);
}

/* A deterministic generator: values in [-1, 1] */
static uint64_t state = 0x853c49e6748fea9bULL;
static float uniform(void)
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / 16777216.0 * 2.0 - 1.0);
}

static float *vectors(size_t n, size_t dim)
{
    float *v = (float *)malloc(n * dim * sizeof *v);
    size_t i;
    if (!v) exit(1);
    for (i = 0; i < n * dim; ++i) v[i] = uniform();
    return v;
}

/* The index saved, and its truncations at the given sizes (0: none). */
static void save_index(polopt_mips *ix, const char *name, size_t cut1, size_t cut2)
{
    size_t size = 0;
    unsigned char *b;
    char cut_name[256];
    check(polopt_mips_save_buffer(ix, NULL, 0, &size, NULL), name, &ix->err);
    b = (unsigned char *)malloc(size);
    if (!b) exit(1);
    check(polopt_mips_save_buffer(ix, b, size, &size, NULL), name, &ix->err);
    write_file("index", name, b, size);
    if (cut1 && cut1 < size) {
        snprintf(cut_name, sizeof cut_name, "%s-cut%lu", name, (unsigned long)cut1);
        write_file("index", cut_name, b, cut1);
    }
    if (cut2 && cut2 < size) {
        snprintf(cut_name, sizeof cut_name, "%s-cut%lu", name, (unsigned long)cut2);
        write_file("index", cut_name, b, cut2);
    }
    if (size > 8192) fprintf(stderr, "make_corpus: index/%s has %lu bytes: keep seeds small\n", name, (unsigned long)size), ++failures;
    free(b);
}

static void hnsw(const char *name, size_t n, size_t dim, size_t M, uint64_t seed, size_t zeros, size_t cut)
{
    polopt_mips_hnsw_config c = polopt_mips_hnsw_config_default();
    polopt_mips ix;
    float *v = vectors(n, dim);
    size_t i;
    for (i = 0; i < zeros && i < n; ++i) memset(v + (n - 1 - i) * dim, 0, dim * sizeof *v); /* zero vectors */
    if (n > 4) memcpy(v + dim, v, dim * sizeof *v);                                       /* a duplicate */
    c.M = M, c.ef_construction = 16, c.seed = seed;
    check(polopt_mips_init_hnsw(&ix, n, dim, v, 1, &c), name, &ix.err);
    save_index(&ix, name, cut, 0);
    polopt_mips_free(&ix);
    free(v);
}

static void make_indexes(void)
{
    polopt_mips ix;
    polopt_mips_hnsw_config c = polopt_mips_hnsw_config_default();
    float *v = vectors(20, 3), *more;
    check(polopt_mips_init_exact(&ix, 20, 3, v, 1, NULL), "exact", &ix.err);
    save_index(&ix, "exact-n20-d3", 128, 200);
    polopt_mips_free(&ix);
    free(v);
    v = vectors(6, 8);
    check(polopt_mips_init_exact(&ix, 6, 8, v, 1, NULL), "exact", &ix.err);
    save_index(&ix, "exact-n6-d8", 0, 0);
    polopt_mips_free(&ix);
    free(v);
    v = vectors(1, 1);
    check(polopt_mips_init_exact(&ix, 1, 1, v, 1, NULL), "exact", &ix.err);
    save_index(&ix, "exact-n1-d1", 0, 0);
    polopt_mips_free(&ix);
    free(v);
    hnsw("hnsw-n40-d4-m2", 40, 4, 2, 1, 0, 300);
    hnsw("hnsw-n60-d6-m3", 60, 6, 3, 7, 2, 0);
    hnsw("hnsw-n30-d3-m4", 30, 3, 4, 3, 0, 1000);
    hnsw("hnsw-n2-d2-m2", 2, 2, 2, 5, 0, 0);
    hnsw("hnsw-n1-d3-m2", 1, 3, 2, 2, 1, 0);
    /* grown after its build: the layout polopt_mips_add leaves */
    v = vectors(20, 4);
    more = vectors(15, 4);
    c.M = 2, c.ef_construction = 8, c.seed = 11;
    check(polopt_mips_init_hnsw(&ix, 20, 4, v, 1, &c), "hnsw-grown", &ix.err);
    check(polopt_mips_add(&ix, 15, more), "hnsw-grown add", &ix.err);
    save_index(&ix, "hnsw-n20+15-d4-m2", 0, 0);
    polopt_mips_free(&ix);
    free(v);
    free(more);
}

static void save_policy(polopt_policy *p, const char *name, size_t cut)
{
    size_t size = 0;
    unsigned char *b;
    char cut_name[256];
    check(polopt_policy_save_buffer(p, NULL, 0, &size, NULL), name, &p->err);
    b = (unsigned char *)malloc(size);
    if (!b) exit(1);
    check(polopt_policy_save_buffer(p, b, size, &size, NULL), name, &p->err);
    write_file("policy", name, b, size);
    if (cut && cut < size) {
        snprintf(cut_name, sizeof cut_name, "%s-cut%lu", name, (unsigned long)cut);
        write_file("policy", cut_name, b, cut);
    }
    free(b);
}

static void policy(const char *name, size_t D, size_t L, polopt_init init, float temperature, float scale, size_t cut)
{
    polopt_policy_config c = polopt_policy_config_default(D, L);
    polopt_policy p;
    c.init = init, c.temperature = temperature, c.init_scale = scale, c.seed = 42;
    check(polopt_policy_init(&p, &c), name, &p.err);
    save_policy(&p, name, cut);
    polopt_policy_free(&p);
}

static void make_policies(void)
{
    polopt_policy_config c = polopt_policy_config_default(2, 3);
    polopt_policy p;
    policy("identity-d4", 4, 4, POLOPT_INIT_IDENTITY, 1.0f, 1.0f, 128);
    policy("random-d3-l5-t0.5", 3, 5, POLOPT_INIT_RANDOM, 0.5f, 1.0f, 150);
    policy("random-d1-l1", 1, 1, POLOPT_INIT_RANDOM, 1.0f, 1.0f, 0);
    policy("random-d8-l2-t2", 8, 2, POLOPT_INIT_RANDOM, 2.0f, 3.0f, 0);
    policy("identity-d3-t1e-30", 3, 3, POLOPT_INIT_IDENTITY, 1e-30f, 1.0f, 0);
    policy("random-d2-l40-t1e30", 2, 40, POLOPT_INIT_RANDOM, 1e30f, 1.0f, 0);
    /* theta with large and tiny entries: softmax at the extremes (embeddings that overflow, and temperatures whose
       inverse overflows, are in tests/fuzz/regressions/policy/) */
    c.init = POLOPT_INIT_RANDOM, c.temperature = 0.01f;
    check(polopt_policy_init(&p, &c), "extreme", &p.err);
    p.theta[0] = 1e30f, p.theta[1] = -1e30f, p.theta[2] = 1e-45f, p.theta[4] = 1e20f;
    save_policy(&p, "extreme-d2-l3-t0.01", 0);
    polopt_policy_free(&p);
}

/* A text seed of a reader's driver: its first byte chooses the configuration, the rest is the file. */
static void text_seed(const char *sub, const char *name, int selector, const char *text, size_t len)
{
    char *b = (char *)malloc(len + 1);
    if (!b) exit(1);
    b[0] = (char)selector;
    memcpy(b + 1, text, len);
    write_file(sub, name, b, len + 1);
    free(b);
}
#define CSV(name, selector, text) text_seed("csv", name, selector, text, sizeof text - 1)

static void make_logs(void)
{
    /* valid, one per configuration of fuzz_csv.c */
    CSV("basic", '0', "action,propensity,reward\n0,0.5,1\n3,0.25,0\n1,1,0.5\n");
    CSV("slates", '1', "position,action,reward,propensity\n1,5,0,0.1\n2,5,1,0.2\n3,0,0,1\n");
    CSV("numeric-quoted-crlf", '2',
        "\"x0\",action,propensity,reward,x1\r\n\"-0.5\",2,0.5,1,1e-3\r\n\r\n7,0,0.125,-2.5,\"3\"\r\n");
    CSV("categorical", '3',
        "action,propensity,reward,x0,c0\n0,0.5,1,0.1,red\n1,0.5,0,0.2,\"blue, \"\"green\"\"\"\n2,0.5,0,0.3,red\n");
    CSV("limits", '4', "action,propensity,reward,position\n9,0.1,1,2\n0,1,0,0\n");
    CSV("obd", '5',
        ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1\n"
        "0,2019-11-24 00:00:00.000000+00:00,14,1,0,0.0125,81ce123cbb5bd8ce818f60fb3586bba5,03a5648a76832f83c859d46bc06cb64a\n"
        "1,2019-11-24 00:00:01.000000+00:00,3,2,1,0.0125,81ce123cbb5bd8ce818f60fb3586bba5,2d03db5543b14483e52d761760686b64\n"
        "2,2019-11-24 00:00:02.000000+00:00,33,3,0,0.0125,cef3390ed299c09874189c387777674a,03a5648a76832f83c859d46bc06cb64a\n");
    CSV("repeated-columns-config", '6', "x0,c0,c1,reward,action,propensity\n1,a,b,0,0,0.5\n-2,a,b,1.5,4,0.75\n");
    CSV("short-names", '7', "a,p,r\n0,0.5,1\n1,0.5,0\n0,0.25,0\n");
    /* with a byte order mark tried too */
    CSV("bom-check", 0x80 + '0' % 8, "id,action,propensity,reward\n0,2,0.5,1\n");
    CSV("spaces-blank-lines", '0', "action,propensity,reward\n\n 3 , 0.5 ,1 \n\n\n4,1,0");
    /* invalid */
    CSV("empty", '0', "");
    CSV("header-only", '1', "action,propensity,reward,position\n");
    CSV("unterminated-quote", '0', "action,propensity,reward\n1,\"0.5,1\n");
    CSV("wrong-field-count", '0', "action,propensity,reward\n1,0.5\n");
    CSV("propensity-zero", '0', "action,propensity,reward\n1,0,1\n");
    CSV("no-propensity-column", '0', "action,reward\n1,0\n");
    CSV("nul-byte", '0', "action,propensity,reward\n1,0.5,\0\n");
    CSV("too-many-levels", '3', "action,propensity,reward,x0,c0\n0,1,0,0,a\n0,1,0,0,b\n0,1,0,0,c\n0,1,0,0,d\n0,1,0,0,e\n");
    CSV("not-a-number", '2', "action,propensity,reward,x0,x1\n0,0.5,1,nan,1\n");
    CSV("action-unknown", '4', "action,propensity,reward,position\n10,0.5,1,0\n");
}

/* Interaction logs: the first byte is the configuration of fuzz_interactions.c (bit 0: tab, 1: a weight column w,
   2: min_session_items 3, 3: min_item_sessions 2, 4: filters once, 5: columns user and product). */
#define LOG(name, selector, text) text_seed("interactions", name, selector, text, sizeof text - 1)

static void make_interactions(void)
{
    const uint32_t sess[12] = {3, 3, 3, 9, 9, 1, 1, 1, 1, 7, 3, 9}, item[12] = {5, 6, 7, 5, 8, 5, 6, 9, 7, 5, 5, 6};
    const float w[12] = {1, 2, 0.5f, 4, 1, 1, 3, 1, 2, 1, 9, 1};
    polopt_interactions m;
    polopt_interactions_config c = polopt_interactions_config_default();
    unsigned char buf[4096];
    size_t size;
    LOG("plain", 0, "session,item\ns1,apple\ns1,pear\ns2,apple\ns3,fig\ns3,apple\n");
    LOG("weights", 2, "item,session,w\nx,a,1\ny,a,2.5\nx,b,1e-3\nx,a,7\n");
    LOG("tab", 1, "session\titem\n1\t10\n1\t11\n2\t10\n");
    LOG("filters", 4 | 8, "session,item\na,1\na,2\na,3\nb,1\nb,2\nb,3\nc,1\nc,4\nd,2\nd,3\nd,1\n");
    LOG("once", 4 | 8 | 16, "session,item\na,1\na,2\na,3\nb,1\nb,2\nb,4\nc,1\n");
    LOG("named", 32, "\xef\xbb\xbfproduct,user\r\n\"p, 1\",u\r\n\"p \"\"2\"\"\",u\r\n\r\np3,v\r\n");
    LOG("bad-row", 0, "session,item\ns1,apple\ns2\n");
    LOG("empty-id", 2, "session,item,w\ns1,,1\n");
    LOG("bad-weight", 2, "session,item,w\ns1,a,-1\n");
    check(polopt_interactions_init(&m, 12, sess, item, NULL, NULL), "interactions", NULL);
    check(polopt_interactions_save_buffer(&m, buf, sizeof buf, &size, &m.err), "interactions save", &m.err);
    write_file("interactions", "file", buf, size);
    write_file("interactions", "file-cut", buf, size - 5);
    polopt_interactions_free(&m);
    c.min_item_sessions = 2;
    check(polopt_interactions_init(&m, 12, sess, item, w, &c), "interactions", NULL);
    check(polopt_interactions_save_buffer(&m, buf, sizeof buf, &size, &m.err), "interactions save", &m.err);
    write_file("interactions", "file-weights", buf, size);
    write_file("interactions", "file-header", buf, 128);
    polopt_interactions_free(&m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (with subdirectories index, policy, csv, interactions)\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    make_indexes();
    make_policies();
    make_logs();
    make_interactions();
    return failures ? 1 : 0;
}
