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

#include "cmdtable.h"
#include "log.h"
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
        fprintf(stderr, "%s: %s: %s\n", prog_name, keten_err_str(err), detail);
    } else {
        fprintf(stderr, "%s: %s\n", prog_name, keten_err_str(err));
    }
    return keten_err_exit_code(err);
}

int keten_cli_start_error(keten_err err)
{
    int rc = keten_cli_error(err);
    switch (err) {
    case KETEN_ERR_IO:
    case KETEN_ERR_STORE:
    case KETEN_ERR_STORE_FULL:
    case KETEN_ERR_NOMEM:
    case KETEN_ERR_CRYPTO:
    case KETEN_ERR_EXISTS:
        return rc;
    default:
        return rc == KETEN_EXIT_OK || rc == KETEN_EXIT_VERIFY ? rc : KETEN_EXIT_START;
    }
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

/* The long options of the command being parsed (keten_cli_getopt()). */
static const struct option *cur_longopts;

int keten_cli_getopt(int argc, char *const argv[], const char *optstring,
    const struct option *longopts, int *longindex)
{
    cur_longopts = longopts;
    return getopt_long(argc, argv, optstring, longopts, longindex);
}

/* "unknown option --x", with the closest known option when there is one. */
static int unknown_long(const char *cmd, const char *arg)
{
    char typed[KETEN_EDIT_DISTANCE_MAX + 1];
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    const char *names[KETEN_CLI_OPTIONS_MAX];
    size_t n = 0;
    if (len < sizeof typed && cur_longopts != NULL) {
        memcpy(typed, name, len);
        typed[len] = '\0';
        for (const struct option *o = cur_longopts; o->name != NULL && n < KETEN_CLI_OPTIONS_MAX;
             o++) {
            names[n++] = o->name;
        }
        const char *s = keten_cmdtable_suggest(typed, names, n);
        if (s != NULL) {
            return keten_cli_usage(cmd, "unknown option --%s (did you mean --%s?)", typed, s);
        }
    }
    return keten_cli_usage(cmd, "unknown option %s", arg);
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
        return unknown_long(cmd, arg);
    }
    if (optopt != 0) {
        return keten_cli_usage(cmd, "unknown option -%c", optopt);
    }
    return keten_cli_usage(cmd, "unknown option %s", arg);
}

/* ---- run: options from the configuration table ------------------------ */

/* Column of the options' help texts, and the width they wrap at. */
#define RUN_HELP_COL 28
#define RUN_HELP_WIDTH 79

/* The placeholder of a setting's value in the help ("" for a boolean). */
static void run_metavar(const keten_config_setting *s, char *out, size_t size)
{
    switch (s->type) {
    case KETEN_CONFIG_BOOL:
        snprintf(out, size, "%s", "");
        return;
    case KETEN_CONFIG_UINT:
        snprintf(out, size, "%s", "N");
        return;
    case KETEN_CONFIG_DURATION_MS:
        snprintf(out, size, "%s", "MS");
        return;
    case KETEN_CONFIG_SIZE_BYTES:
        snprintf(out, size, "%s", "BYTES");
        return;
    case KETEN_CONFIG_ENDPOINT:
        snprintf(out, size, "%s", "ENDPOINT");
        return;
    case KETEN_CONFIG_PATH:
        snprintf(out, size, "%s", strcmp(s->name, "home") == 0 ? "DIR" : "FILE");
        return;
    case KETEN_CONFIG_ENUM:
        snprintf(out, size, "%s", "LEVEL");
        if (strcmp(s->name, "log-level") != 0) {
            snprintf(out, size, "%s", "VALUE");
        }
        return;
    case KETEN_CONFIG_STRING:
    default:
        snprintf(
            out, size, "%s", s->validate == keten_config_valid_host_port ? "ADDR:PORT" : "TEXT");
        return;
    }
}

/* Print text from column col (the cursor is at col), wrapped at
 * RUN_HELP_WIDTH; a continuation line starts at indent. */
static void run_wrap(FILE *f, const char *text, size_t col, size_t indent)
{
    while (*text != '\0') {
        size_t word = strcspn(text, " ");
        if (col > indent && col + 1 + word > RUN_HELP_WIDTH) {
            fprintf(f, "\n%*s", (int)indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)word, text);
        col += word;
        text += word;
        text += strspn(text, " ");
    }
    fputc('\n', f);
}

static void run_option(FILE *f, const char *name, const char *metavar, const char *help)
{
    char left[80];
    snprintf(left, sizeof left, "  --%s%s%s", name, metavar[0] != '\0' ? " " : "", metavar);
    size_t col = strlen(left);
    fputs(left, f);
    if (col + 2 > RUN_HELP_COL) {
        fprintf(f, "\n%*s", RUN_HELP_COL, "");
    } else {
        fprintf(f, "%*s", (int)(RUN_HELP_COL - col), "");
    }
    run_wrap(f, help, RUN_HELP_COL, RUN_HELP_COL);
}

void keten_cli_run_usage(const keten_config_table *t, const char *about, FILE *f)
{
    char synopsis[2048], meta[32], item[128];
    size_t n = (size_t)snprintf(synopsis, sizeof synopsis, "%s", "[--config FILE]");
    for (int pass = 0; pass < 2; pass++) { /* the required settings first */
        for (size_t i = 0; i < t->n_settings; i++) {
            const keten_config_setting *s = &t->settings[i];
            bool req = (s->flags & KETEN_CONFIG_REQUIRED) != 0;
            if (req != (pass == 0)) {
                continue;
            }
            run_metavar(s, meta, sizeof meta);
            snprintf(item, sizeof item, "%s--%s%s%s%s", req ? "" : "[", s->name,
                meta[0] != '\0' ? " " : "", meta, req ? "" : "]");
            if (n + strlen(item) + 2 < sizeof synopsis) {
                n += (size_t)snprintf(synopsis + n, sizeof synopsis - n, " %s", item);
            }
        }
    }
    char head[64];
    snprintf(head, sizeof head, "Usage: %s run", t->program);
    fputs(head, f);
    /* Options are not broken inside: wrap at the spaces before "--" or "[". */
    size_t col = strlen(head), indent = col + 1;
    const char *p = synopsis;
    while (*p != '\0') {
        const char *next = p + 1;
        while (*next != '\0' && !(next[-1] == ' ' && (next[0] == '-' || next[0] == '['))) {
            next++;
        }
        size_t len = (size_t)(next - p) - (*next != '\0' ? 1 : 0);
        if (col > indent && col + 1 + len > RUN_HELP_WIDTH) {
            fprintf(f, "\n%*s", (int)indent, "");
            col = indent;
        } else {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)len, p);
        col += len;
        p = next;
    }
    fputs("\n\n", f);
    if (about != NULL) {
        fprintf(f, "%s\n", about);
    }
    fputs("Options:\n", f);
    char config_help[160];
    snprintf(config_help, sizeof config_help,
        "read these settings from FILE ([%s] section; the same names without the dashes); "
        "options given here override it",
        t->section);
    run_option(f, "config", "FILE", config_help);
    for (size_t i = 0; i < t->n_settings; i++) {
        const keten_config_setting *s = &t->settings[i];
        char help[512];
        run_metavar(s, meta, sizeof meta);
        if (s->default_value != NULL && s->type != KETEN_CONFIG_BOOL) {
            snprintf(help, sizeof help, "%s (default %s)", s->help, s->default_value);
        } else {
            snprintf(help, sizeof help, "%s%s", s->help,
                (s->flags & KETEN_CONFIG_REQUIRED) != 0 ? " (required)" : "");
        }
        run_option(f, s->name, meta, help);
    }
    run_option(f, "help", "", "show this help");
}

/* Load the --config file into kc; the exit code of an error, or -1. */
static int run_load(keten_config *kc, const char *path)
{
    keten_err e = keten_config_load(kc, path);
    if (e == KETEN_OK) {
        return -1;
    }
    if (keten_config_error_count(kc) == 0) {
        int rc = keten_cli_error(e); /* missing, unreadable, writable by others */
        return rc == KETEN_EXIT_FAILURE ? KETEN_EXIT_USAGE : rc;
    }
    for (size_t i = 0; keten_config_error(kc, i) != NULL; i++) {
        fprintf(stderr, "%s: %s\n", prog_name, keten_config_error(kc, i));
    }
    return KETEN_EXIT_USAGE;
}

int keten_cli_run_options(
    const keten_config_table *t, const char *about, int argc, char **argv, keten_config **out)
{
    *out = NULL;
    if (t->n_settings > KETEN_CONFIG_SETTINGS_MAX) {
        return KETEN_EXIT_FAILURE;
    }
    /* --config, the settings, --help and the terminator. */
    struct option opts[KETEN_CONFIG_SETTINGS_MAX + 3];
    size_t n = 0;
    opts[n++] = (struct option) { "config", required_argument, NULL, 'C' };
    for (size_t i = 0; i < t->n_settings; i++) {
        opts[n++] = (struct option) { t->settings[i].name,
            t->settings[i].type == KETEN_CONFIG_BOOL ? no_argument : required_argument, NULL, 'S' };
    }
    opts[n++] = (struct option) { "help", no_argument, NULL, 'h' };
    opts[n] = (struct option) { NULL, 0, NULL, 0 };

    keten_config *kc = keten_config_new(t);
    if (kc == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog_name);
        return KETEN_EXIT_FAILURE;
    }
    int rc = -1, c, idx = 0;
    const char *config_path = NULL;
    optind = 0;
    opterr = 0;
    while (rc < 0 && (c = keten_cli_getopt(argc, argv, ":h", opts, &idx)) != -1) {
        switch (c) {
        case 'C':
            config_path = optarg;
            break;
        case 'S':
            if (keten_config_set(
                    kc, opts[idx].name, optarg != NULL ? optarg : "yes", KETEN_CONFIG_SRC_CLI)
                != KETEN_OK) {
                rc = keten_cli_usage("run", "%s", keten_err_detail());
            }
            break;
        case 'h':
            keten_cli_run_usage(t, about, stdout);
            rc = KETEN_EXIT_OK;
            break;
        default:
            rc = keten_cli_getopt_error("run", c, argc, argv);
            break;
        }
    }
    cur_longopts = NULL; /* opts ends with this function */
    if (rc < 0 && optind < argc) {
        rc = keten_cli_usage("run", "unexpected argument '%s'", argv[optind]);
    }
    if (rc < 0 && config_path != NULL) {
        rc = run_load(kc, config_path);
    }
    if (rc < 0 && keten_config_check(kc) != KETEN_OK) {
        rc = keten_cli_usage("run", "%s", keten_err_detail());
    }
    if (rc >= 0) {
        keten_config_destroy(&kc);
        return rc;
    }
    *out = kc;
    return -1;
}

int keten_cli_log_level(const keten_config *cfg)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        { "debug", KETEN_LOG_DEBUG },
        { "info", KETEN_LOG_INFO },
        { "notice", KETEN_LOG_NOTICE },
        { "warn", KETEN_LOG_WARNING },
        { "warning", KETEN_LOG_WARNING },
        { "error", KETEN_LOG_ERR },
    };
    const char *s = keten_config_get_str(cfg, "log-level");
    for (size_t i = 0; s != NULL && i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(s, levels[i].name) == 0) {
            return levels[i].level;
        }
    }
    return KETEN_LOG_INFO;
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

int keten_cli_keygen_main(const keten_cli_keygen_command *cmd, int argc, char **argv)
{
    struct option opts[12];
    size_t n = 0;
    opts[n++] = (struct option) { "home", required_argument, NULL, 'H' };
    opts[n++] = (struct option) { "id", required_argument, NULL, 'i' };
    if (cmd->role == NULL) {
        opts[n++] = (struct option) { "role", required_argument, NULL, 'r' };
    }
    opts[n++] = (struct option) { "org", required_argument, NULL, 'o' };
    opts[n++] = (struct option) { "no-passphrase", no_argument, NULL, 'P' };
    opts[n++] = (struct option) { "passphrase-file", required_argument, NULL, 'p' };
    opts[n++] = (struct option) { "json", no_argument, NULL, 'j' };
    if (cmd->rotate != NULL) {
        opts[n++] = (struct option) { "rotate", no_argument, NULL, 'R' };
    }
    opts[n++] = (struct option) { "help", no_argument, NULL, 'h' };
    opts[n] = (struct option) { NULL, 0, NULL, 0 };

    keten_cli_keygen_opts o = { .role = cmd->role };
    bool rotate = false, id_given = false, org_given = false;
    int c, rc = -1;
    optind = 0;
    opterr = 0;
    while (rc < 0 && (c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            o.home = optarg;
            break;
        case 'i':
            o.id = optarg;
            id_given = true;
            break;
        case 'r':
            o.role = optarg;
            break;
        case 'o':
            o.org = optarg;
            org_given = true;
            break;
        case 'P':
            o.no_passphrase = true;
            break;
        case 'p':
            o.passfile = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case 'R':
            rotate = true;
            break;
        case 'h':
            fputs(cmd->usage, stdout);
            rc = KETEN_EXIT_OK;
            break;
        default:
            rc = keten_cli_getopt_error("keygen", c, argc, argv);
            break;
        }
    }
    cur_longopts = NULL; /* opts ends with this function */
    if (rc >= 0) {
        return rc;
    }
    if (optind < argc) {
        return keten_cli_usage("keygen", "unexpected argument '%s'", argv[optind]);
    }
    if (o.home == NULL || o.home[0] == '\0') {
        return keten_cli_usage("keygen", "--home DIR is required");
    }
    if (rotate) {
        if (id_given || org_given || (cmd->role == NULL && o.role != NULL) || o.no_passphrase) {
            return keten_cli_usage("keygen",
                "--rotate keeps the node's id, role, organisation and passphrase: give only "
                "--home (and --passphrase-file)");
        }
        keten_err e = cmd->rotate(o.home, o.passfile, o.json);
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    o.id = id_given ? o.id : cmd->id_default;
    o.org = org_given ? o.org : cmd->org_default;
    if (o.id == NULL || o.role == NULL || o.org == NULL) {
        return keten_cli_usage("keygen", "--id, --role and --org are required");
    }
    if (!keten_name_valid(o.id)) {
        return keten_cli_usage("keygen",
            "--id '%s' is not a node id: use 1 to %d of a-z, 0-9 "
            "and '-'%s",
            o.id, KETEN_NAME_MAX, cmd->id_example != NULL ? cmd->id_example : "");
    }
    if (cmd->role == NULL) {
        if (!keten_name_valid(o.role)) {
            return keten_cli_usage("keygen",
                "--role '%s' is not a role: use 1 to %d of a-z, 0-9 "
                "and '-' (e.g. municipality)",
                o.role, KETEN_NAME_MAX);
        }
        if (strcmp(o.role, "broker") == 0) {
            return keten_cli_usage("keygen",
                "role broker is reserved for the broker: use "
                "keten-broker keygen");
        }
    }
    if (o.org[0] == '\0' || strlen(o.org) > KETEN_ORG_MAX) {
        return keten_cli_usage("keygen", "--org must be 1 to %d bytes", KETEN_ORG_MAX);
    }
    if (o.no_passphrase && o.passfile != NULL) {
        return keten_cli_usage("keygen",
            "--no-passphrase and --passphrase-file exclude each "
            "other");
    }
    keten_err e = keten_cli_keygen(&o);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}

/* When home does not exist, its parent folder must: KETEN_ERR_NOT_FOUND
 * naming it otherwise (checked before a passphrase is asked). */
static keten_err home_parent_check(const char *home)
{
    struct stat st;
    if (stat(home, &st) == 0 || errno != ENOENT) {
        return KETEN_OK; /* exists, or another error that mkdir() reports */
    }
    char parent[PATH_MAX];
    size_t len = strlen(home);
    if (len >= sizeof parent) {
        return keten_err_set(KETEN_ERR_INVALID, "--home is longer than %d bytes", PATH_MAX - 1);
    }
    memcpy(parent, home, len + 1);
    while (len > 1 && parent[len - 1] == '/') {
        parent[--len] = '\0';
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        return KETEN_OK; /* in the current folder */
    }
    if (slash == parent) {
        slash[1] = '\0'; /* "/x": the root */
    } else {
        *slash = '\0';
    }
    if (stat(parent, &st) != 0) {
        if (errno == ENOENT) {
            return keten_err_set(KETEN_ERR_NOT_FOUND,
                "the folder %s does not exist: create it first (mkdir -p %s) or give another "
                "--home",
                parent, parent);
        }
        return keten_err_set(KETEN_ERR_IO, "cannot use the folder %s: %s", parent, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        return keten_err_set(
            KETEN_ERR_WRONG_TYPE, "%s is not a folder: give another --home", parent);
    }
    return KETEN_OK;
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
    if ((e = home_parent_check(o->home)) != KETEN_OK) {
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
                KETEN_ERR_IO, "cannot create the folder %s (--home): %s", o->home, strerror(errno));
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
