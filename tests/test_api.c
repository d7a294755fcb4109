/* Library-wide rules: result strings, error messages and the log callback, and that every allocation failure is
   reported cleanly with nothing leaked (the test allocator of tests/main.c fails each allocation in turn). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void api_strerror_covers_every_code(void)
{
    int code;
    for (code = 0; code > POLOPT__RESULT_END_; --code) {
        const char *s = polopt_strerror((polopt_result)code);
        int other;
        CHECK(s != NULL && s[0] != '\0' && strcmp(s, "unknown polopt result code") != 0);
        for (other = code - 1; other > POLOPT__RESULT_END_; --other) CHECK(strcmp(s, polopt_strerror((polopt_result)other)) != 0);
    }
    CHECK(strcmp(polopt_strerror((polopt_result)-99), "unknown polopt result code") == 0);
    CHECK(strcmp(polopt_strerror(POLOPT_OK), "success") == 0);
}

static int g_count;
static polopt_result g_code;
static char g_msg[POLOPT_ERROR_MESSAGE_SIZE];
static void logger(void *user, polopt_result code, const char *message)
{
    ++*(int *)user;
    g_code = code;
    strncpy(g_msg, message, sizeof g_msg - 1);
}

static void api_log_callback_and_message(void)
{
    polopt_adam opt;
    polopt_adam_config cfg = polopt_adam_config_default();
    float w[2] = {1.0f, -1.0f};
    polopt_alias table;
    polopt_hooks hooks;
    g_count = 0;
    cfg.hooks.log = logger;
    cfg.hooks.log_user = &g_count;
    cfg.eps = 0.0f;
    CHECK_RC(polopt_adam_init(&opt, 3, &cfg), POLOPT_ERR_INVALID_ARG);
    CHECK(g_count == 1 && g_code == POLOPT_ERR_INVALID_ARG);
    CHECK(strcmp(g_msg, opt.err.message) == 0);
    CHECK(strcmp(g_msg, "polopt_adam_init: config.eps = 0 must be > 0") == 0);
    memset(&hooks, 0, sizeof hooks);
    hooks.log = logger;
    hooks.log_user = &g_count;
    CHECK_RC(polopt_alias_init(&table, 2, w, &hooks), POLOPT_ERR_DOMAIN);
    CHECK(g_count == 2 && strstr(g_msg, "weights[1] = -1") != NULL);
    /* success clears nothing else and logs nothing */
    w[1] = 1.0f;
    CHECK_OK(polopt_alias_init(&table, 2, w, &hooks));
    CHECK(g_count == 2 && table.err.code == POLOPT_OK);
    polopt_alias_free(&table);
}

/* Run init/use/free with allocation number k failing, for k = 0, 1, ... until a run needs no failure.
   Every failing run must return POLOPT_ERR_NO_MEMORY and leave no block allocated. */
/* Constructors of the small objects: alias table, optimisers, synthetic catalogue. */
static polopt_result api_alloc_scenario(const polopt_hooks *h, int stage, void *user)
{
    float w[5] = {1, 2, 3, 4, 5}, x[8];
    polopt_result rc;
    (void)user;
    if (stage == 0) {
        polopt_alias t;
        rc = polopt_alias_init(&t, 5, w, h);
        polopt_alias_free(&t);
    } else if (stage == 1) {
        polopt_adam_config c = polopt_adam_config_default();
        polopt_adam opt;
        c.hooks = *h;
        rc = polopt_adam_init(&opt, 10, &c);
        polopt_adam_free(&opt);
    } else if (stage == 2) {
        polopt_sgd_config c = polopt_sgd_config_default();
        polopt_sgd opt;
        c.momentum = 0.5f;
        c.hooks = *h;
        rc = polopt_sgd_init(&opt, 10, &c);
        polopt_sgd_free(&opt);
    } else {
        polopt_synth_config c = polopt_synth_config_default();
        polopt_synth s;
        c.n_items = 100, c.dim = 8;
        c.hooks = *h;
        rc = polopt_synth_init(&s, &c);
        if (rc == POLOPT_OK) rc = polopt_synth_user(&s, 3, x, NULL); /* allocates scratch */
        polopt_synth_free(&s);
    }
    return rc;
}

static void api_every_allocation_failure_is_clean(void)
{
    int stage;
    for (stage = 0; stage < 4; ++stage) CHECK_EACH_ALLOCATION_FAILURE(api_alloc_scenario, stage, NULL);
}

const th_test th_suite_api[] = {TH(api_strerror_covers_every_code), TH(api_log_callback_and_message),
                                TH(api_every_allocation_failure_is_clean), TH_END};
