/*
 * driver.c - runs a fuzz harness without libFuzzer: LLVMFuzzerTestOneInput
 * over every regular file in the directories (and over the files) given as
 * arguments, in name order. Used by the ordinary build, where each harness
 * runs over its seed corpus as a test (suite "fuzz").
 *
 * Exit status: 0 when every input ran (an invariant that fails aborts the
 * process, so the test fails); 1 when an argument cannot be read or no
 * input at all was found (a missing corpus must not pass quietly).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#define DRIVER_INPUT_MAX (32u << 20) /* larger than any cap the harnesses test */

static int run_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz driver: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > DRIVER_INPUT_MAX) {
        fprintf(stderr, "fuzz driver: %s is not a readable file under %u bytes\n", path,
            DRIVER_INPUT_MAX);
        fclose(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    /* An exact-size heap buffer, as libFuzzer gives, so that AddressSanitizer
     * sees a read past the end. */
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL || fread(buf, 1, len, f) != len) {
        fprintf(stderr, "fuzz driver: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "fuzz driver: %s (%zu bytes)\n", path, len);
    (void)LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    (*count)++;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "fuzz driver: cannot open directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rc = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **more = realloc(names, cap * sizeof *names);
            if (more == NULL) {
                rc = -1;
                break;
            }
            names = more;
        }
        names[n] = strdup(ent->d_name);
        if (names[n] == NULL) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 0) {
        qsort(names, n, sizeof *names, name_cmp);
    }
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        int w = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == 0 && w > 0 && (size_t)w < sizeof path && stat(path, &st) == 0
            && S_ISREG(st.st_mode)) {
            rc = run_file(path, count);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz driver: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count);
        if (rc != 0) {
            return 1;
        }
    }
    if (count == 0) {
        fprintf(stderr, "fuzz driver: no inputs found in the arguments\n");
        return 1;
    }
    fprintf(stderr, "fuzz driver: %zu inputs, every invariant held\n", count);
    return 0;
}
