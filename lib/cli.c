#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "passphrase.h"
#include "util.h"
#include "sha256.h"

#define SECRET_NAME "identity.secret"
#define REQUEST_NAME "identity.request"

static const char *prog_name = "keten";

void keten_cli_init(const char *prog)
{
    prog_name = prog;
}

const char *keten_cli_prog(void)
{
    return prog_name;
}

bool keten_cli_is_test_hook(const char *name)
{
    static const char prefix[] = "KETEN_";
    size_t n = strcspn(name, "=");
    if (n <= sizeof prefix - 1 || strncmp(name, prefix, sizeof prefix - 1) != 0) {
        return false;
    }
    /* From the underscore that ends KETEN: "_TEST_" anywhere (KETEN_TEST_X,
     * KETEN_NODE_TEST_X), "_FAULT" at the end or followed by "_". */
    const char *rest = name + sizeof prefix - 2;
    size_t m = n - (sizeof prefix - 2);
    for (size_t i = 0; i < m; i++) {
        if (m - i >= 6 && memcmp(rest + i, "_TEST_", 6) == 0) {
            return true;
        }
        if (m - i >= 6 && memcmp(rest + i, "_FAULT", 6) == 0
            && (m - i == 6 || rest[i + 6] == '_')) {
            return true;
        }
    }
    return false;
}

int keten_cli_test_hooks_check(const char *const *env, bool hooks_built)
{
    if (hooks_built || env == NULL) {
        return 0;
    }
    for (const char *const *e = env; *e != NULL; e++) {
        if (keten_cli_is_test_hook(*e)) {
            int n = (int)strcspn(*e, "=");
            fprintf(stderr,
                "%s: %.*s is set, but this build has no test hooks (they exist only in a "
                "build configured with -Dtest_hooks=true, for the tests); unset %.*s\n",
                prog_name, n, *e, n, *e);
            return KETEN_EXIT_USAGE;
        }
    }
    return 0;
}

int keten_cli_start(const char *prog)
{
    keten_cli_init(prog);
    return keten_cli_test_hooks_check((const char *const *)environ, KETEN_CLI_TEST_HOOKS_BUILT);
}

int keten_cli_error(keten_err err)
{
    const char *detail = keten_err_detail();
    if (detail[0] != '\0') {
        fprintf(stderr, "%s: %s: %s\n", prog_name, keten_strerror(err), detail);
    } else {
        fprintf(stderr, "%s: %s\n", prog_name, keten_strerror(err));
    }
    return keten_err_exit_code(err);
}

int keten_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", prog_name, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", prog_name, cmd);
    return KETEN_EXIT_USAGE;
}

int keten_cli_getopt_error(const char *cmd, int c, int argc, char *const argv[])
{
    const char *arg = (optind > 0 && optind - 1 < argc) ? argv[optind - 1] : "?";
    if (c == ':') {
        return keten_cli_usage(cmd, "option %s needs a value", arg);
    }
    if (strncmp(arg, "--", 2) == 0) {
        if (optopt != 0 && strchr(arg, '=') != NULL) {
            return keten_cli_usage(cmd, "option %s takes no value", arg);
        }
        return keten_cli_usage(cmd, "unknown option %s", arg);
    }
    if (optopt != 0) {
        return keten_cli_usage(cmd, "unknown option -%c", optopt);
    }
    return keten_cli_usage(cmd, "unknown option %s", arg);
}

void keten_cli_warn(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: warning: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

bool keten_cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20 || strspn(s, "0123456789") != n) {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno != 0 || v < min || v > max) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

void keten_cli_split_free(char ***items_p, size_t n)
{
    if (items_p == NULL || *items_p == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free((*items_p)[i]);
    }
    free(*items_p);
    *items_p = NULL;
}

keten_err keten_cli_split(const char *list, const char *what, char ***items, size_t *n)
{
    size_t count = 1;
    for (const char *p = list; *p != '\0'; p++) {
        if (*p == ',') {
            count++;
        }
    }
    if (list[0] == '\0') {
        return keten_err_set(KETEN_ERR_INVALID, "%s is empty; give one or more values", what);
    }
    if (count > KETEN_CLI_LIST_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "%s has %zu items; at most %d are allowed", what,
            count, KETEN_CLI_LIST_MAX);
    }
    char **out = calloc(count, sizeof *out);
    if (out == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "splitting %s", what);
    }
    size_t i = 0;
    const char *start = list;
    for (;;) {
        const char *end = strchr(start, ',');
        size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
        if (len == 0) {
            keten_cli_split_free(&out, i);
            return keten_err_set(KETEN_ERR_INVALID,
                "%s '%s' has an empty item; separate values with single commas", what, list);
        }
        out[i] = strndup(start, len);
        if (out[i] == NULL) {
            keten_cli_split_free(&out, i);
            return keten_err_set(KETEN_ERR_NOMEM, "splitting %s", what);
        }
        i++;
        if (end == NULL) {
            break;
        }
        start = end + 1;
    }
    *items = out;
    *n = i;
    return KETEN_OK;
}

keten_err keten_cli_passphrase(
    const char *file, const char *what, bool confirm, char **out, size_t *out_len)
{
    char prompt[PATH_MAX + 64];
    snprintf(prompt, sizeof prompt, "%s for %s: ", confirm ? "New passphrase" : "Passphrase", what);
    return keten_passphrase_get(file, prompt, confirm, out, out_len);
}

keten_err keten_cli_identity_open(const char *path, const char *passfile, keten_identity **out)
{
    bool encrypted = false;
    keten_err e = keten_identity_file_encrypted(path, &encrypted);
    if (e != KETEN_OK) {
        return e;
    }
    if (!encrypted) {
        return keten_identity_load(path, NULL, 0, out);
    }
    char *pass = NULL;
    size_t passlen = 0;
    e = keten_cli_passphrase(passfile, path, false, &pass, &passlen);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_identity_load(path, (const uint8_t *)pass, passlen, out);
    keten_passphrase_free(&pass);
    if (e == KETEN_ERR_PASSPHRASE) {
        return keten_err_set(e,
            "the passphrase does not open %s (or the file was altered); check the passphrase "
            "(--passphrase-file, KETEN_PASSPHRASE or the prompt) and try again",
            path);
    }
    return e;
}

void keten_cli_key_b64(
    const uint8_t key[static KETEN_SIGN_PK_BYTES], char out[static KETEN_CLI_KEY_B64_BYTES])
{
    sodium_bin2base64(
        out, KETEN_CLI_KEY_B64_BYTES, key, KETEN_SIGN_PK_BYTES, sodium_base64_VARIANT_ORIGINAL);
}

void keten_cli_sha256_hex(
    const uint8_t *data, size_t len, char out[static KETEN_CLI_HASH_HEX_BYTES])
{
    uint8_t h[KETEN_HASH_BYTES];
    keten_sha256(h, data, len);
    keten_hex(h, sizeof h, out);
}

keten_err keten_cli_json_print(json_t *obj)
{
    if (obj == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "building the JSON output");
    }
    int rc = json_dumpf(obj, stdout, JSON_INDENT(2));
    json_decref(obj);
    if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot write to standard output: %s", strerror(errno));
    }
    return KETEN_OK;
}

/* ---- keygen ------------------------------------------------------------ */

static keten_err join_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        return keten_err_set(KETEN_ERR_INVALID, "path %s/%s is too long", dir, name);
    }
    return KETEN_OK;
}

static void print_keygen_text(const keten_cli_keygen_opts *o, const keten_identity *id,
    const char *secret_path, const char *request_path, const char *req_hash)
{
    char b64[KETEN_CLI_KEY_B64_BYTES];
    printf("wrote %s (the secret keys: they never leave this machine)\n", secret_path);
    printf("wrote %s (hand it to the network's administrators)\n", request_path);
    printf("  id:              %s\n", id->id);
    printf("  role:            %s\n", id->role);
    printf("  organisation:    %s\n", id->org);
    printf("  request sha256:  %s\n", req_hash);
    keten_cli_key_b64(id->sign_pk, b64);
    printf("  signing key:     %s\n", b64);
    keten_cli_key_b64(id->enc_pk, b64);
    printf("  encryption key:  %s\n", b64);
    keten_cli_key_b64(id->transport_pk, b64);
    printf("  transport key:   %s\n", b64);
    if (id->has_log_key) {
        keten_cli_key_b64(id->log_pk, b64);
        printf("  log key:         %s\n", b64);
    }
    printf("Read the request sha256 to the administrators over another channel (e.g. by\n"
           "phone) so that they can check the file they received (sha256sum %s).\n",
        REQUEST_NAME);
    (void)o;
}

static json_t *keygen_json(const keten_cli_keygen_opts *o, const keten_identity *id,
    const char *secret_path, const char *request_path, const char *req_hash)
{
    char sign[KETEN_CLI_KEY_B64_BYTES], enc[KETEN_CLI_KEY_B64_BYTES];
    char transport[KETEN_CLI_KEY_B64_BYTES];
    keten_cli_key_b64(id->sign_pk, sign);
    keten_cli_key_b64(id->enc_pk, enc);
    keten_cli_key_b64(id->transport_pk, transport);
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "secret",
        secret_path, "request", request_path, "request_sha256", req_hash, "id", id->id, "role",
        id->role, "org", id->org, "sign_pk", sign, "enc_pk", enc, "transport_pk", transport,
        "passphrase_protected", !o->no_passphrase);
    if (obj != NULL && id->has_log_key) {
        char log[KETEN_CLI_KEY_B64_BYTES];
        keten_cli_key_b64(id->log_pk, log);
        if (json_object_set_new(obj, "log_pk", json_string(log)) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

keten_err keten_cli_keygen(const keten_cli_keygen_opts *o)
{
    keten_err e;
    char secret_path[PATH_MAX], request_path[PATH_MAX];
    char *pass = NULL;
    size_t passlen = 0;
    keten_identity *id = NULL;
    uint8_t *req = NULL;
    size_t req_len = 0;
    bool made_home = false, wrote_secret = false, done = false;
    struct stat st;

    if ((e = join_path(secret_path, sizeof secret_path, o->home, SECRET_NAME)) != KETEN_OK
        || (e = join_path(request_path, sizeof request_path, o->home, REQUEST_NAME)) != KETEN_OK) {
        return e;
    }
    if (lstat(secret_path, &st) == 0) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "%s already exists: this home already has keys and they are never overwritten; "
            "to replace them (rotation) run keten-node keygen --rotate --home with this home "
            "(a broker: keygen with a new --home) and have the administrators approve the new "
            "request with --rotate",
            secret_path);
    }
    /* Everything that can be checked is checked before the disk is touched. */
    e = keten_identity_generate(o->id, o->role, o->org, strcmp(o->role, "broker") == 0, &id);
    if (e != KETEN_OK) {
        goto out;
    }
    e = keten_identity_request(id, "", keten_now_ms(), &req, &req_len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (!o->no_passphrase) {
        e = keten_cli_passphrase(o->passfile, secret_path, true, &pass, &passlen);
        if (e != KETEN_OK) {
            goto out;
        }
    }
    if (stat(o->home, &st) != 0) {
        if (mkdir(o->home, 0700) != 0) {
            e = keten_err_set(
                KETEN_ERR_IO, "cannot create --home %s: %s", o->home, strerror(errno));
            goto out;
        }
        made_home = true;
    } else if (!S_ISDIR(st.st_mode)) {
        e = keten_err_set(KETEN_ERR_EXISTS, "--home %s exists and is not a directory", o->home);
        goto out;
    } else if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        keten_cli_warn("%s is accessible by group or others (mode %03o); run chmod 700 %s", o->home,
            (unsigned)(st.st_mode & 0777), o->home);
    }
    e = keten_identity_save(id, secret_path, (const uint8_t *)pass, pass != NULL ? passlen : 0);
    if (e != KETEN_OK) {
        goto out;
    }
    wrote_secret = true;
    e = keten_file_write(request_path, req, req_len, 0644, false);
    if (e != KETEN_OK) {
        goto out;
    }
    done = true;
    if (o->no_passphrase) {
        keten_cli_warn("%s is not protected by a passphrase (--no-passphrase); such keys are "
                       "for tests and demos only",
            secret_path);
    }
    char req_hash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(req, req_len, req_hash);
    if (o->json) {
        e = keten_cli_json_print(keygen_json(o, id, secret_path, request_path, req_hash));
    } else {
        print_keygen_text(o, id, secret_path, request_path, req_hash);
    }
out:
    if (e != KETEN_OK && !done) {
        if (wrote_secret) {
            unlink(secret_path);
        }
        if (made_home) {
            rmdir(o->home);
        }
    }
    keten_passphrase_free(&pass);
    keten_identity_destroy(&id);
    free(req);
    return e;
}
