/* Fuzz driver of the CSV reader of logged bandit feedback (polopt_csv_open, polopt_csv_read,
   polopt_logged_load_csv).  The first byte of an input chooses the reader's configuration (which columns: with or
   without slates, numeric and categorical features, limits on actions and slots) and how it is streamed; the other
   bytes are the file, written to a scratch file of this process.  Invariants:
     - a failed read says why; a successful one gives rows that a small reference reader of the documented format
       (comma-separated, "quoted fields" with "" inside, blank lines skipped, a header naming the columns) agrees
       with, field by field: actions and slots are the integers written (no hexadecimal or exponent), propensities
       in (0, 1], finite rewards and features, one-hot categorical levels numbered in order of first appearance,
       n_actions and n_positions;
     - a wanted column named twice in the header is refused (which one would be meant?);
     - streaming the file a few rows at a time (polopt_csv_read, reusing the arrays) reads the same rows as loading
       it whole (polopt_logged_load_csv);
     - a UTF-8 byte order mark before the header changes nothing. */
#define POLOPT_IMPLEMENTATION
#include "fuzz.h"

/* 0: leave out the three checks above that the reader used to fail (integers, duplicate names, byte order mark), to
   fuzz past them should one come back.  Their reproducers are in tests/fuzz/regressions/csv/. */
#ifndef FUZZ_CHECK_KNOWN_BUGS
#define FUZZ_CHECK_KNOWN_BUGS 1
#endif

/* ---- The configurations */
static const char *const x01[] = {"x0", "x1"}, *const x0[] = {"x0"}, *const c0[] = {"c0"}, *const c01[] = {"c0", "c1"};
static const char *const x0_twice[] = {"x0", "x0", "reward"}, *const obd_cat[] = {"user_feature_0", "user_feature_1"};
static const char *const a_cat[] = {"a"};
#define N_CONFIGS 8

static polopt_csv_config make_config(int which)
{
    polopt_csv_config c = polopt_csv_config_default();
    c.action = "action", c.propensity = "propensity", c.reward = "reward";
    switch (which) {
    case 0: break; /* no slates, no features */
    case 1: c.position = "position", c.position_base = 1; break;
    case 2: c.numeric = x01, c.n_numeric = 2; break;
    case 3: c.numeric = x0, c.n_numeric = 1, c.categorical = c0, c.n_categorical = 1, c.max_levels = 4; break;
    case 4: c.position = "position", c.n_actions = 10, c.n_positions = 3; break;
    case 5: /* the Open Bandit Dataset's names */
        c.action = "item_id", c.propensity = "propensity_score", c.reward = "click", c.position = "position";
        c.position_base = 1, c.categorical = obd_cat, c.n_categorical = 2, c.max_levels = 8;
        break;
    case 6: c.numeric = x0_twice, c.n_numeric = 3, c.categorical = c01, c.n_categorical = 2, c.max_levels = 1; break;
    default: c.action = "a", c.propensity = "p", c.reward = "r", c.categorical = a_cat, c.n_categorical = 1, c.max_levels = 64;
    }
    return c;
}

/* ---- A reference reader of the documented format, to compare the rows with. */
typedef struct ref_file {
    char *text;    /* the file, lines cut in place */
    char **lines;  /* without their line breaks and trailing \r */
    size_t n_lines;
} ref_file;

static void ref_lines(ref_file *f, const uint8_t *data, size_t size)
{
    size_t i, start = 0, n = 0;
    f->text = (char *)malloc(size + 1);
    f->lines = (char **)malloc((size + 1) * sizeof *f->lines);
    FUZZ_CHECK(f->text && f->lines, "out of memory in the driver");
    if (size) memcpy(f->text, data, size);
    f->text[size] = '\0';
    for (i = 0; i <= size; ++i) {
        if (i < size && f->text[i] != '\n') continue;
        if (i == size && start == size) break; /* no last line after a final line break */
        {
            size_t end = i;
            while (end > start && f->text[end - 1] == '\r') --end;
            f->text[end] = '\0';
            f->lines[n++] = f->text + start;
        }
        start = i + 1;
    }
    f->n_lines = n;
}

/* Fields of a line, in place, quotes removed; the number of fields, or -1 for an unterminated quote. */
static long ref_split(char *line, char **fields)
{
    char *in = line, *out = line;
    long count = 0;
    for (;;) {
        fields[count++] = out;
        if (*in == '"') {
            ++in;
            for (;;) {
                if (*in == '\0') return -1;
                if (in[0] == '"' && in[1] == '"') *out++ = '"', in += 2;
                else if (*in == '"') {
                    ++in;
                    break;
                } else *out++ = *in++;
            }
        }
        while (*in && *in != ',') *out++ = *in++;
        if (*in == '\0') {
            *out = '\0';
            return count;
        }
        *out++ = '\0';
        ++in;
    }
}

/* An integer field must be written as one: digits (and a point with zeros), no hexadecimal, no exponent. */
static int looks_integer(const char *s)
{
    for (; *s; ++s)
        if (strchr("xXeEpPnNiI", *s)) return 0;
    return 1;
}

static int close_to(double got, double want) { return got == want || fabs(got - want) <= 1e-6 * fabs(want); }

/* The wanted column names of c, in the reader's order: action, propensity, reward, position, numeric, categorical. */
static size_t wanted_names(const polopt_csv_config *c, const char **names)
{
    size_t n = 0, k;
    names[n++] = c->action, names[n++] = c->propensity, names[n++] = c->reward, names[n++] = c->position;
    for (k = 0; k < c->n_numeric; ++k) names[n++] = c->numeric[k];
    for (k = 0; k < c->n_categorical; ++k) names[n++] = c->categorical[k];
    return n;
}

/* A successful load of file (the bytes after the selector) into d must agree with the reference reader. */
static void check_rows(const polopt_csv_config *c, const uint8_t *file, size_t size, const polopt_logged *d)
{
    ref_file f;
    const char *names[16];
    long col[16];
    char **fields = (char **)malloc((size + 2) * sizeof *fields);
    char seen[2][64][64];
    size_t n_seen[2] = {0, 0}, n_wanted = wanted_names(c, names), row = 0, l, k, max_action = 0, max_position = 0;
    long n_columns, i;
    FUZZ_CHECK(fields != NULL, "out of memory in the driver");
    FUZZ_CHECK(memchr(file, '\0', size) == NULL, "a file with a NUL byte was read");
    ref_lines(&f, file, size);
    FUZZ_CHECK(f.n_lines >= 2, "a file without rows was read");
    if ((unsigned char)f.lines[0][0] == 0xef && (unsigned char)f.lines[0][1] == 0xbb && (unsigned char)f.lines[0][2] == 0xbf)
        f.lines[0] += 3; /* a byte order mark */
    n_columns = ref_split(f.lines[0], fields);
    FUZZ_CHECK(n_columns >= 1, "a header with an unterminated quote was read");
    for (k = 0; k < n_wanted; ++k) {
        col[k] = -1;
        if (!names[k]) continue;
        for (i = 0; i < n_columns; ++i)
            if (strcmp(fields[i], names[k]) == 0) {
                FUZZ_CHECK(col[k] < 0 || !FUZZ_CHECK_KNOWN_BUGS, "a header naming a wanted column twice was read");
                if (col[k] >= 0) continue; /* the first one is read */
                col[k] = i;
            }
        FUZZ_CHECK(col[k] >= 0, "a file without a wanted column was read");
    }
    FUZZ_CHECK(d->dim == c->n_numeric + c->n_categorical * c->max_levels, "the data set has the wrong dimension");
    for (l = 1; l < f.n_lines; ++l) {
        const float *x = d->X + row * d->dim;
        double v;
        if (f.lines[l][0] == '\0') continue;
        FUZZ_CHECK(row < d->n, "fewer rows read than the file has");
        FUZZ_CHECK(ref_split(f.lines[l], fields) == n_columns, "a row with the wrong number of fields was read");
        FUZZ_CHECK(looks_integer(fields[col[0]]) || !FUZZ_CHECK_KNOWN_BUGS, "an action that is not written as an integer was read");
        v = strtod(fields[col[0]], NULL);
        FUZZ_CHECK(v == (double)d->action[row], "an action differs from the file");
        FUZZ_CHECK(!c->n_actions || d->action[row] < c->n_actions, "an action beyond config.n_actions was read");
        v = strtod(fields[col[1]], NULL);
        FUZZ_CHECK(d->propensity[row] > 0.0 && d->propensity[row] <= 1.0, "a propensity outside (0, 1]");
        FUZZ_CHECK(d->propensity[row] == v, "a propensity differs from the file (it is kept in double precision)");
        v = strtod(fields[col[2]], NULL);
        FUZZ_CHECK(isfinite(d->reward[row]) && d->reward[row] == v, "a reward differs from the file");
        if (c->position) {
            FUZZ_CHECK(looks_integer(fields[col[3]]) || !FUZZ_CHECK_KNOWN_BUGS, "a slot that is not written as an integer was read");
            v = strtod(fields[col[3]], NULL);
            FUZZ_CHECK(v - (double)c->position_base == (double)d->position[row], "a slot differs from the file");
            FUZZ_CHECK(!c->n_positions || d->position[row] < c->n_positions, "a slot beyond config.n_positions");
        } else {
            FUZZ_CHECK(d->position[row] == 0, "a slot without slates");
        }
        if (d->action[row] > max_action) max_action = d->action[row];
        if (d->position[row] > max_position) max_position = d->position[row];
        for (k = 0; k < c->n_numeric; ++k) {
            v = strtod(fields[col[4 + k]], NULL);
            FUZZ_CHECK(isfinite(x[k]) && close_to(x[k], (float)v), "a numeric feature differs from the file");
        }
        for (k = 0; k < c->n_categorical; ++k) { /* one-hot, levels in order of first appearance */
            const float *onehot = x + c->n_numeric + k * c->max_levels;
            const char *name = fields[col[4 + c->n_numeric + k]];
            size_t level, j;
            FUZZ_CHECK(k < 2 && c->max_levels <= 64 && strlen(name) < 64, "a categorical level the driver cannot hold");
            for (level = 0; level < n_seen[k] && strcmp(seen[k][level], name) != 0; ++level) {}
            if (level == n_seen[k]) {
                FUZZ_CHECK(level < c->max_levels, "more levels than config.max_levels were read");
                strcpy(seen[k][level], name);
                n_seen[k] += 1;
            }
            for (j = 0; j < c->max_levels; ++j)
                FUZZ_CHECK(onehot[j] == (j == level ? 1.0f : 0.0f), "a one-hot feature differs from the file");
        }
        ++row;
    }
    FUZZ_CHECK(row == d->n, "more rows read than the file has");
    FUZZ_CHECK(d->n_actions == (c->n_actions ? c->n_actions : max_action + 1), "n_actions is wrong");
    FUZZ_CHECK(d->n_positions == (c->n_positions ? c->n_positions : max_position + 1), "n_positions is wrong");
    free(fields);
    free(f.text);
    free(f.lines);
}

static int same_data(const polopt_logged *a, const polopt_logged *b)
{
    return a->n == b->n && a->dim == b->dim && a->n_actions == b->n_actions && a->n_positions == b->n_positions &&
           memcmp(a->action, b->action, a->n * sizeof *a->action) == 0 &&
           memcmp(a->position, b->position, a->n * sizeof *a->position) == 0 &&
           memcmp(a->propensity, b->propensity, a->n * sizeof *a->propensity) == 0 &&
           memcmp(a->reward, b->reward, a->n * sizeof *a->reward) == 0 &&
           memcmp(a->X, b->X, a->n * a->dim * sizeof *a->X) == 0;
}

/* Stream the file chunk rows at a time, reusing the arrays (data.n = 0 before each read); the rows gathered into
   all.  Returns the result of the last read. */
static polopt_result stream(const char *path, const polopt_csv_config *c, size_t chunk, polopt_logged *all)
{
    polopt_csv_reader r;
    polopt_logged d;
    polopt_result rc = polopt_csv_open(&r, path, c);
    size_t got = 0;
    memset(all, 0, sizeof *all);
    if (rc != POLOPT_OK) {
        FUZZ_CHECK_FAILURE(rc, r.err, "polopt_csv_open");
        FUZZ_CHECK(r.file == NULL && r.line == NULL && r.columns == NULL, "a failed open left a reader behind");
        return rc;
    }
    memset(&d, 0, sizeof d);
    all->dim = r.dim;
    all->n_positions = 1;
    do {
        size_t i, cap;
        d.n = 0;
        rc = polopt_csv_read(&r, &d, chunk, &got);
        FUZZ_CHECK(got <= chunk && got == d.n, "polopt_csv_read: out_rows is not the rows appended");
        if (rc != POLOPT_OK) {
            FUZZ_CHECK_FAILURE(rc, r.err, "polopt_csv_read");
            break;
        }
        cap = all->n + got;
        all->action = (uint32_t *)realloc(all->action, (cap + 1) * sizeof *all->action);
        all->position = (uint32_t *)realloc(all->position, (cap + 1) * sizeof *all->position);
        all->propensity = (double *)realloc(all->propensity, (cap + 1) * sizeof *all->propensity);
        all->reward = (double *)realloc(all->reward, (cap + 1) * sizeof *all->reward);
        all->X = (float *)realloc(all->X, ((cap + 1) * all->dim + 1) * sizeof *all->X);
        FUZZ_CHECK(all->action && all->position && all->propensity && all->reward && all->X, "out of memory");
        for (i = 0; i < got; ++i, ++all->n) {
            all->action[all->n] = d.action[i], all->position[all->n] = d.position[i];
            all->propensity[all->n] = d.propensity[i], all->reward[all->n] = d.reward[i];
            memcpy(all->X + all->n * all->dim, d.X + i * d.dim, d.dim * sizeof *d.X);
        }
        all->n_actions = d.n_actions, all->n_positions = d.n_positions;
    } while (got > 0);
    polopt_logged_free(&d);
    polopt_csv_close(&r);
    return rc;
}

static void free_gathered(polopt_logged *all)
{
    free(all->action);
    free(all->position);
    free(all->propensity);
    free(all->reward);
    free(all->X);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    polopt_csv_config c;
    polopt_logged d, streamed;
    polopt_result rc, rc_stream;
    const char *path;
    int selector;
    if (size < 1) return 0;
    selector = data[0];
    c = make_config(selector % N_CONFIGS);
    ++data, --size;
    path = fuzz_write_file("csv", data, size);

    rc = polopt_logged_load_csv(&d, path, &c);
    if (rc == POLOPT_OK) {
        check_rows(&c, data, size, &d);
    } else {
        FUZZ_CHECK_FAILURE(rc, d.err, "polopt_logged_load_csv");
        FUZZ_CHECK(d.n == 0 && d.X == NULL && d.action == NULL, "a failed load left rows behind");
    }

    rc_stream = stream(path, &c, 1 + (size_t)(selector / N_CONFIGS) % 4, &streamed);
    if (rc == POLOPT_OK) {
        FUZZ_CHECK(rc_stream == POLOPT_OK, "streaming fails where loading the whole file succeeds");
        FUZZ_CHECK(same_data(&d, &streamed), "streaming reads other rows than loading the whole file");
    } else if (rc_stream == POLOPT_OK) {
        FUZZ_CHECK(streamed.n == 0, "streaming succeeds where loading the whole file fails");
    }
    free_gathered(&streamed);

    /* a byte order mark changes nothing */
    if (FUZZ_CHECK_KNOWN_BUGS && (selector & 0x80) && !(size >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf)) {
        polopt_logged b;
        polopt_result rc_bom;
        unsigned char *with_bom = (unsigned char *)malloc(size + 3);
        FUZZ_CHECK(with_bom != NULL, "out of memory in the driver");
        memcpy(with_bom, "\xef\xbb\xbf", 3);
        if (size) memcpy(with_bom + 3, data, size);
        path = fuzz_write_file("csv", with_bom, size + 3);
        rc_bom = polopt_logged_load_csv(&b, path, &c);
        if (rc_bom != POLOPT_OK && rc == POLOPT_OK) fprintf(stderr, "fuzz: with a BOM: %s\n", b.err.message);
        FUZZ_CHECK((rc_bom == POLOPT_OK) == (rc == POLOPT_OK), "a byte order mark changes whether the file loads");
        if (rc == POLOPT_OK) FUZZ_CHECK(same_data(&d, &b), "a byte order mark changes the rows");
        polopt_logged_free(&b);
        free(with_bom);
    }
    polopt_logged_free(&d);
    return 0;
}
