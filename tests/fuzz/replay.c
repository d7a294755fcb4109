/* The main of a fuzz driver built without libFuzzer: runs LLVMFuzzerTestOneInput on every file given, and on every
   file of every directory given (not recursively; names starting with '.' are skipped), each in a child process,
   so that an input that aborts or crashes (an invariant, a sanitizer, a leak at exit) counts as a failure and the
   others still run.  Ends with "fuzz-<name>: N passed, N failed" (FUZZ_NAME, else the program's name).
   Exit status: non-zero if any input failed.  The children's scratch files go to a private TMPDIR, removed at the
   end. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int passed, failed;

static unsigned char *read_all(const char *path, size_t *out_size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    size_t cap = 0, n = 0, got;
    if (!f) return NULL;
    do {
        if (n == cap) {
            unsigned char *nb = (unsigned char *)realloc(b, cap = cap ? 2 * cap : 65536);
            if (!nb) {
                free(b);
                fclose(f);
                return NULL;
            }
            b = nb;
        }
        got = fread(b + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    if (ferror(f)) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *out_size = n;
    return b;
}

static void run_one(const char *path)
{
    size_t size = 0;
    unsigned char *data = read_all(path, &size);
    pid_t pid;
    int status = 0;
    if (!data) {
        printf("  FAIL %s: cannot read it (%s)\n", path, strerror(errno));
        ++failed;
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        exit(0); /* exit, not _exit: LeakSanitizer and the drivers' atexit handlers run */
    }
    free(data);
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        printf("  FAIL %s: cannot run it (%s)\n", path, strerror(errno));
        ++failed;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ++passed;
    } else {
        if (WIFSIGNALED(status)) printf("  FAIL %s (signal %d)\n", path, WTERMSIG(status));
        else printf("  FAIL %s (exit status %d)\n", path, WEXITSTATUS(status));
        ++failed;
    }
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_path(const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    if (stat(path, &st) != 0) {
        printf("  FAIL %s: %s\n", path, strerror(errno));
        ++failed;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        run_one(path);
        return;
    }
    if (!(dir = opendir(path))) {
        printf("  FAIL %s: %s\n", path, strerror(errno));
        ++failed;
        return;
    }
    while ((e = readdir(dir)) != NULL) { /* in name order, so that the output is the same everywhere */
        char *full;
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **nn = (char **)realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        full = (char *)malloc(strlen(path) + strlen(e->d_name) + 2);
        if (!full) break;
        sprintf(full, "%s/%s", path, e->d_name);
        names[n++] = full;
    }
    closedir(dir);
    if (n) qsort(names, n, sizeof *names, by_name);
    for (i = 0; i < n; ++i) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) run_one(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    const char *name;
    char tmp[4096];
    const char *base = getenv("TMPDIR");
    int i;
#ifdef FUZZ_NAME
    name = FUZZ_NAME;
#else
    name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
#endif
    setvbuf(stdout, NULL, _IOLBF, 0); /* each line before the children's reports that follow it */
    snprintf(tmp, sizeof tmp, "%s/polopt-replay.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp) || setenv("TMPDIR", tmp, 1) != 0) {
        fprintf(stderr, "fuzz-%s: cannot make a temporary directory %s\n", name, tmp);
        return 1;
    }
    if (argc < 2) fprintf(stderr, "usage: %s FILE-OR-DIRECTORY...\n", argv[0]);
    for (i = 1; i < argc; ++i) run_path(argv[i]);
    { /* the children's scratch files: only those of children that crashed are left */
        DIR *dir = opendir(tmp);
        struct dirent *e;
        char full[8192];
        while (dir && (e = readdir(dir)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(full, sizeof full, "%s/%s", tmp, e->d_name);
            remove(full);
        }
        if (dir) closedir(dir);
        rmdir(tmp);
    }
    printf("fuzz-%s: %d passed, %d failed\n", name, passed, failed);
    return failed || argc < 2 ? 1 : 0;
}
