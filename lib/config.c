#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define SUN_PATH_MAX 107 /* sizeof(sockaddr_un.sun_path) less the NUL */
#define SHOWN_MAX 64 /* characters of a bad value quoted back in a message */
#define WHY_BYTES 200

typedef struct slot {
    bool set;
    keten_config_source src;
    char *text; /* as given, malloc()ed */
    uint64_t num; /* uint, duration-ms, size-bytes; bool 0/1; enum: index */
    char *origin; /* "PATH:LINE", "command line" or "default", malloc()ed */
} slot;

struct keten_config {
    const keten_config_table *table;
    slot *values; /* one per setting */
    char (*errors)[KETEN_CONFIG_ERROR_BYTES]; /* KETEN_CONFIG_ERRORS_MAX */
    size_t n_errors;
};

/* A value read from the file, used only if the whole file is valid. */
typedef struct pending {
    bool present;
    unsigned line;
    char *text;
    uint64_t num;
} pending;

typedef struct loader {
    keten_config *cfg;
    const char *path;
    const char *buf;
    size_t len, pos;
    unsigned line;
    pending *pend;
    keten_err first;
    bool nomem;
} loader;

/* ---- small helpers --------------------------------------------------- */

static const char *const type_names[] = {
    [KETEN_CONFIG_STRING] = "string",
    [KETEN_CONFIG_PATH] = "path",
    [KETEN_CONFIG_UINT] = "uint",
    [KETEN_CONFIG_BOOL] = "bool",
    [KETEN_CONFIG_DURATION_MS] = "duration-ms",
    [KETEN_CONFIG_SIZE_BYTES] = "size-bytes",
    [KETEN_CONFIG_ENDPOINT] = "endpoint",
    [KETEN_CONFIG_ENUM] = "enum",
};

const char *keten_config_type_name(keten_config_type type)
{
    if ((size_t)type >= sizeof type_names / sizeof type_names[0]) {
        return "unknown";
    }
    return type_names[type];
}

static void why_set(char *why, size_t size, const char *fmt, ...) KETEN_PRINTF(3, 4);

static void why_set(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, size, fmt, ap);
    va_end(ap);
    if (n < 0 && size > 0) {
        why[0] = '\0';
    }
}

/* A value as it may be quoted back: control characters replaced, cut short. */
static void shown(const char *v, char out[static SHOWN_MAX + 4])
{
    size_t i = 0;
    for (; v[i] != '\0' && i < SHOWN_MAX; i++) {
        unsigned char c = (unsigned char)v[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (v[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n + 1);
    }
    return d;
}

/* "16 MiB" for exact multiples of a binary unit, else "N bytes". */
static void size_text(uint64_t v, char *out, size_t size)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
    int u = -1;
    uint64_t n = v;
    while (u < 3 && n != 0 && n % 1024 == 0) {
        n /= 1024;
        u++;
    }
    if (u < 0) {
        snprintf(out, size, "%llu bytes", (unsigned long long)v);
    } else {
        snprintf(out, size, "%llu bytes (%llu %s)", (unsigned long long)v, (unsigned long long)n,
            units[u]);
    }
}

static void bound_text(const keten_config_setting *s, uint64_t v, char *out, size_t size)
{
    if (s->type == KETEN_CONFIG_SIZE_BYTES) {
        size_text(v, out, size);
    } else if (s->type == KETEN_CONFIG_DURATION_MS) {
        snprintf(out, size, "%llu ms", (unsigned long long)v);
    } else {
        snprintf(out, size, "%llu", (unsigned long long)v);
    }
}

/* ---- number parsing ---------------------------------------------------- */

/* Leading decimal digits of s into *out; *end after them. false: none, or
 * more than fit in 64 bits. */
static bool parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (__builtin_mul_overflow(v, 10u, &v)
            || __builtin_add_overflow(v, (unsigned)(s[i] - '0'), &v)) {
            return false;
        }
    }
    if (i == 0) {
        return false;
    }
    *out = v;
    *end = s + i;
    return true;
}

typedef struct unit {
    const char *name;
    uint64_t factor;
} unit;

static const unit duration_units[] = {
    { "", 1 },
    { "ms", 1 },
    { "s", 1000 },
    { "min", 60ull * 1000 },
    { "h", 3600ull * 1000 },
    { "d", 24ull * 3600 * 1000 },
};

static const unit size_units[] = {
    { "", 1 },
    { "b", 1 },
    { "k", 1ull << 10 },
    { "kib", 1ull << 10 },
    { "m", 1ull << 20 },
    { "mib", 1ull << 20 },
    { "g", 1ull << 30 },
    { "gib", 1ull << 30 },
    { "t", 1ull << 40 },
    { "tib", 1ull << 40 },
};

/* A number with an optional unit (one space allowed before it). */
static bool parse_with_unit(
    const char *v, const unit *units, size_t n_units, bool fold_case, uint64_t *out, bool *overflow)
{
    uint64_t n = 0;
    const char *p = NULL;
    *overflow = false;
    if (!parse_digits(v, &n, &p)) {
        *overflow = v[0] >= '0' && v[0] <= '9';
        return false;
    }
    if (*p == ' ') {
        p++;
        if (*p == '\0') {
            return false;
        }
    }
    for (size_t i = 0; i < n_units; i++) {
        bool same = fold_case ? strcasecmp(p, units[i].name) == 0 : strcmp(p, units[i].name) == 0;
        if (same) {
            if (__builtin_mul_overflow(n, units[i].factor, out)) {
                *overflow = true;
                return false;
            }
            return true;
        }
    }
    return false;
}

/* ---- endpoints ---------------------------------------------------------- */

static bool host_ok(const char *h, size_t n, char *why, size_t why_size)
{
    if (n == 0) {
        why_set(why, why_size, "no host before the port");
        return false;
    }
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']') {
            why_set(why, why_size, "an IPv6 address is written in brackets: [::1]");
            return false;
        }
        for (size_t i = 1; i + 1 < n; i++) {
            char c = h[i];
            bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
                || c == ':' || c == '.' || c == '%';
            if (!ok) {
                why_set(why, why_size, "'%c' in an IPv6 address", c);
                return false;
            }
        }
        return true;
    }
    if (n == 1 && h[0] == '*') {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || c == '.' || c == '-' || c == '_';
        if (!ok) {
            why_set(why, why_size, "'%c' in the host name (an IPv6 address goes in brackets)", c);
            return false;
        }
    }
    return true;
}

/* Which "any free port" a listener takes: ZeroMQ writes it '*', a TCP
 * listener such as the metrics server 0. */
typedef enum free_port {
    FREE_PORT_NONE,
    FREE_PORT_STAR,
    FREE_PORT_ZERO,
} free_port;

static bool port_ok(const char *p, free_port any, char *why, size_t why_size)
{
    uint64_t port = 0;
    const char *end = NULL;
    if (any == FREE_PORT_STAR && strcmp(p, "*") == 0) {
        return true;
    }
    if (!parse_digits(p, &port, &end) || *end != '\0' || port > 65535
        || (port == 0 && any != FREE_PORT_ZERO)) {
        why_set(why, why_size, "the port must be a number from %d to 65535%s",
            any == FREE_PORT_ZERO ? 0 : 1, any == FREE_PORT_STAR ? ", or * for any free port" : "");
        return false;
    }
    return true;
}

/* HOST:PORT with the last ':' separating them. */
static bool host_port_ok(const char *v, free_port any, char *why, size_t why_size)
{
    if (strstr(v, "://") != NULL) {
        why_set(why, why_size, "expected HOST:PORT, without a scheme such as tcp:// or http://");
        return false;
    }
    const char *colon = strrchr(v, ':');
    if (colon == NULL) {
        why_set(why, why_size, "expected HOST:PORT");
        return false;
    }
    size_t hn = (size_t)(colon - v);
    /* An unbracketed IPv6 address has several ':'. */
    if (v[0] != '[' && memchr(v, ':', hn) != NULL) {
        why_set(why, why_size, "an IPv6 address is written in brackets: [::1]:PORT");
        return false;
    }
    return host_ok(v, hn, why, why_size) && port_ok(colon + 1, any, why, why_size);
}

static bool endpoint_ok(const char *v, bool in_file, char *why, size_t why_size)
{
    if (strncmp(v, "tcp://", 6) == 0) {
        return host_port_ok(v + 6, FREE_PORT_STAR, why, why_size);
    }
    if (strncmp(v, "ipc://", 6) == 0) {
        const char *path = v + 6;
        size_t n = strlen(path);
        if (n == 0) {
            why_set(why, why_size, "ipc:// needs a socket path: ipc:///run/keten/broker.sock");
            return false;
        }
        if (n > SUN_PATH_MAX) {
            why_set(why, why_size, "the socket path is longer than %d bytes", SUN_PATH_MAX);
            return false;
        }
        if (in_file && path[0] != '/') {
            why_set(why, why_size,
                "the socket path is not absolute (paths in a configuration file start with /)");
            return false;
        }
        return true;
    }
    why_set(why, why_size, "not an endpoint: use tcp://HOST:PORT or ipc:///PATH");
    return false;
}

bool keten_config_valid_host_port(const char *value, char *why, size_t why_size)
{
    return host_port_ok(value, FREE_PORT_ZERO, why, why_size);
}

bool keten_config_valid_connect(const char *value, char *why, size_t why_size)
{
    if (strncmp(value, "tcp://", 6) != 0) {
        return true;
    }
    const char *colon = strrchr(value, ':');
    if (strncmp(value, "tcp://*:", 8) == 0 || (colon != NULL && strcmp(colon, ":*") == 0)) {
        why_set(why, why_size, "'*' is for listening: name the host and port to connect to");
        return false;
    }
    return true;
}

/* ---- values ------------------------------------------------------------- */

static bool parse_bool(const char *v, uint64_t *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return true;
        }
    }
    return false;
}

static void choices_text(const char *const *choices, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; choices != NULL && choices[i] != NULL; i++) {
        int n = snprintf(out + len, size - len, "%s%s", i > 0 ? ", " : "", choices[i]);
        if (n < 0 || (size_t)n >= size - len) {
            break;
        }
        len += (size_t)n;
    }
}

/* Check v against setting s; the number (uint, duration, size, bool, enum
 * index) into *num. in_file: written in a configuration file. */
static bool parse_value(const keten_config_setting *s, const char *v, bool in_file, uint64_t *num,
    char *why, size_t why_size)
{
    char sv[SHOWN_MAX + 4];
    shown(v, sv);
    size_t len = strlen(v);
    *num = 0;
    if (len == 0) {
        why_set(why, why_size, "an empty value (leave the key out to keep the default)");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            why_set(why, why_size, "a control character in the value");
            return false;
        }
        if (c == '#' && i > 0 && is_space(v[i - 1])) {
            why_set(why, why_size,
                "'%s' holds ' #': a comment goes on a line of its own, starting with #", sv);
            return false;
        }
    }
    if (s->type != KETEN_CONFIG_STRING && len >= 2
        && ((v[0] == '"' && v[len - 1] == '"') || (v[0] == '\'' && v[len - 1] == '\''))) {
        why_set(why, why_size, "%s: write the value without quotes", sv);
        return false;
    }
    switch (s->type) {
    case KETEN_CONFIG_STRING:
    case KETEN_CONFIG_PATH:
    case KETEN_CONFIG_ENDPOINT: {
        uint64_t max = s->max != 0 ? s->max : KETEN_CONFIG_VALUE_MAX;
        if (s->type == KETEN_CONFIG_PATH && max > PATH_MAX - 1) {
            max = PATH_MAX - 1;
        }
        if (len > max) {
            why_set(why, why_size, "'%s' is longer than %llu bytes", sv, (unsigned long long)max);
            return false;
        }
        if (len < s->min) {
            why_set(
                why, why_size, "'%s' is shorter than %llu bytes", sv, (unsigned long long)s->min);
            return false;
        }
        if (s->type == KETEN_CONFIG_PATH && in_file && v[0] != '/') {
            why_set(why, why_size,
                "'%s' is not an absolute path (paths in a configuration file start with /)", sv);
            return false;
        }
        if (s->type == KETEN_CONFIG_ENDPOINT) {
            char inner[WHY_BYTES];
            if (!endpoint_ok(v, in_file, inner, sizeof inner)) {
                why_set(why, why_size, "'%s': %s", sv, inner);
                return false;
            }
        }
        break;
    }
    case KETEN_CONFIG_UINT:
    case KETEN_CONFIG_DURATION_MS:
    case KETEN_CONFIG_SIZE_BYTES: {
        bool overflow = false;
        bool ok;
        if (s->type == KETEN_CONFIG_UINT) {
            const char *end = NULL;
            ok = parse_digits(v, num, &end) && *end == '\0';
            overflow = !ok && v[0] >= '0' && v[0] <= '9' && strspn(v, "0123456789") == len;
        } else if (s->type == KETEN_CONFIG_DURATION_MS) {
            ok = parse_with_unit(v, duration_units,
                sizeof duration_units / sizeof duration_units[0], false, num, &overflow);
        } else {
            ok = parse_with_unit(
                v, size_units, sizeof size_units / sizeof size_units[0], true, num, &overflow);
        }
        char b[64];
        if (!ok && overflow) {
            bound_text(s, s->max, b, sizeof b);
            why_set(why, why_size, "'%s' is above the maximum of %s", sv, b);
            return false;
        }
        if (!ok) {
            if (s->type == KETEN_CONFIG_UINT) {
                why_set(why, why_size, "'%s' is not a number (decimal digits only)", sv);
            } else if (s->type == KETEN_CONFIG_DURATION_MS) {
                why_set(why, why_size,
                    "'%s' is not a duration: milliseconds, or a number with ms, s, min, h or d",
                    sv);
            } else {
                why_set(why, why_size,
                    "'%s' is not a size: bytes, or a number with K, M, G or T (powers of 1024)",
                    sv);
            }
            return false;
        }
        if (*num < s->min) {
            bound_text(s, s->min, b, sizeof b);
            why_set(why, why_size, "'%s' is below the minimum of %s", sv, b);
            return false;
        }
        if (*num > s->max) {
            bound_text(s, s->max, b, sizeof b);
            why_set(why, why_size, "'%s' is above the maximum of %s", sv, b);
            return false;
        }
        break;
    }
    case KETEN_CONFIG_BOOL:
        if (!parse_bool(v, num)) {
            why_set(why, why_size, "'%s' is not yes or no (or true/false, on/off, 1/0)", sv);
            return false;
        }
        break;
    case KETEN_CONFIG_ENUM: {
        size_t i = 0;
        for (; s->choices != NULL && s->choices[i] != NULL; i++) {
            if (strcmp(v, s->choices[i]) == 0) {
                break;
            }
        }
        if (s->choices == NULL || s->choices[i] == NULL) {
            char list[WHY_BYTES / 2];
            choices_text(s->choices, list, sizeof list);
            why_set(why, why_size, "'%s' is not one of: %s", sv, list);
            return false;
        }
        *num = i;
        break;
    }
    default:
        why_set(why, why_size, "setting of an unknown type");
        return false;
    }
    if (s->validate != NULL && !s->validate(v, why, why_size)) {
        char inner[WHY_BYTES];
        snprintf(inner, sizeof inner, "%s", why);
        why_set(why, why_size, "'%s': %s", sv, inner);
        return false;
    }
    return true;
}

/* ---- the table ---------------------------------------------------------- */

static size_t find_index(const keten_config_table *t, const char *name)
{
    for (size_t i = 0; i < t->n_settings; i++) {
        if (strcmp(t->settings[i].name, name) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

const keten_config_setting *keten_config_find(const keten_config_table *table, const char *name)
{
    size_t i = find_index(table, name);
    return i == SIZE_MAX ? NULL : &table->settings[i];
}


/* The setting an unknown key most likely meant, or NULL: a name the key
 * starts with ("listen-adress": listen), a name that starts with the key
 * ("retry-horizon": retry-horizon-days), else the nearest name within a few
 * typing mistakes ("map_size": map-size). */
static const char *suggest(const keten_config_table *t, const char *key)
{
    const char *best = NULL;
    size_t best_len = 0;
    size_t klen = strlen(key);
    for (size_t i = 0; i < t->n_settings; i++) {
        const char *n = t->settings[i].name;
        size_t nl = strlen(n);
        if (nl < klen && strncmp(key, n, nl) == 0 && (key[nl] == '-' || key[nl] == '_')
            && nl > best_len) {
            best = n;
            best_len = nl;
        }
    }
    if (best != NULL) {
        return best;
    }
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < t->n_settings; i++) {
        const char *n = t->settings[i].name;
        size_t d = keten_edit_distance(key, n);
        bool prefix = klen >= 3 && strncmp(n, key, klen) == 0;
        size_t limit = klen / 4 > 2 ? klen / 4 : 2;
        if ((prefix || d <= limit) && d < best_d) {
            best = n;
            best_d = d;
        }
    }
    return best;
}

/* "unknown key 'x' (did you mean 'y'?)"; what is "key" or "option". */
static void unknown_text(
    const keten_config_table *t, const char *what, const char *key, char *out, size_t size)
{
    char sk[SHOWN_MAX + 4];
    shown(key, sk);
    const char *s = suggest(t, key);
    if (s != NULL) {
        snprintf(out, size, "unknown %s '%s' (did you mean '%s'?)", what, sk, s);
    } else {
        snprintf(out, size, "unknown %s '%s' (%s has no such setting)", what, sk, t->program);
    }
}

/* ---- the object --------------------------------------------------------- */

static void value_clear(slot *v)
{
    free(v->text);
    free(v->origin);
    memset(v, 0, sizeof *v);
}

/* Replace v (takes ownership of text; origin is copied). */
static keten_err value_store(
    slot *v, char *text, uint64_t num, keten_config_source src, const char *origin)
{
    char *o = dup_str(origin);
    if (o == NULL) {
        free(text);
        return keten_err_set(KETEN_ERR_NOMEM, "no memory for a configuration value");
    }
    value_clear(v);
    v->set = true;
    v->src = src;
    v->text = text;
    v->num = num;
    v->origin = o;
    return KETEN_OK;
}

keten_config *keten_config_new(const keten_config_table *table)
{
    if (table == NULL || table->n_settings > KETEN_CONFIG_SETTINGS_MAX) {
        return NULL;
    }
    keten_config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        return NULL;
    }
    cfg->table = table;
    cfg->values = calloc(table->n_settings > 0 ? table->n_settings : 1, sizeof *cfg->values);
    cfg->errors = calloc(KETEN_CONFIG_ERRORS_MAX, sizeof *cfg->errors);
    if (cfg->values == NULL || cfg->errors == NULL) {
        keten_config_destroy(&cfg);
        return NULL;
    }
    for (size_t i = 0; i < table->n_settings; i++) {
        const keten_config_setting *s = &table->settings[i];
        if (s->default_value == NULL) {
            continue;
        }
        uint64_t num = 0;
        char why[WHY_BYTES];
        char *text = NULL;
        if (!parse_value(s, s->default_value, false, &num, why, sizeof why)
            || (text = dup_str(s->default_value)) == NULL
            || value_store(&cfg->values[i], text, num, KETEN_CONFIG_SRC_DEFAULT, "default")
                != KETEN_OK) {
            keten_config_destroy(&cfg);
            return NULL;
        }
    }
    return cfg;
}

void keten_config_destroy(keten_config **cfg_p)
{
    if (cfg_p == NULL || *cfg_p == NULL) {
        return;
    }
    keten_config *cfg = *cfg_p;
    if (cfg->values != NULL) {
        for (size_t i = 0; i < cfg->table->n_settings; i++) {
            value_clear(&cfg->values[i]);
        }
    }
    free(cfg->values);
    free(cfg->errors);
    free(cfg);
    *cfg_p = NULL;
}

keten_err keten_config_set(
    keten_config *cfg, const char *name, const char *val, keten_config_source src)
{
    const char *dash = src == KETEN_CONFIG_SRC_CLI ? "--" : "";
    if (cfg == NULL || name == NULL || val == NULL
        || (src != KETEN_CONFIG_SRC_FILE && src != KETEN_CONFIG_SRC_CLI)) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_config_set: bad arguments");
    }
    size_t i = find_index(cfg->table, name);
    if (i == SIZE_MAX) {
        char msg[WHY_BYTES];
        unknown_text(
            cfg->table, src == KETEN_CONFIG_SRC_CLI ? "option" : "key", name, msg, sizeof msg);
        return keten_err_set(KETEN_ERR_INVALID, "%s", msg);
    }
    const keten_config_setting *s = &cfg->table->settings[i];
    uint64_t num = 0;
    char why[WHY_BYTES];
    if (!parse_value(s, val, src == KETEN_CONFIG_SRC_FILE, &num, why, sizeof why)) {
        return keten_err_set(KETEN_ERR_INVALID, "%s%s: %s", dash, name, why);
    }
    slot *v = &cfg->values[i];
    if (v->set && v->src > src) {
        return KETEN_OK; /* a higher source keeps its value */
    }
    char *text = dup_str(val);
    if (text == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "no memory for a configuration value");
    }
    return value_store(
        v, text, num, src, src == KETEN_CONFIG_SRC_CLI ? "command line" : "keten_config_set");
}

keten_err keten_config_check(const keten_config *cfg)
{
    const keten_config_table *t = cfg->table;
    for (size_t i = 0; i < t->n_settings; i++) {
        if ((t->settings[i].flags & KETEN_CONFIG_REQUIRED) && !cfg->values[i].set) {
            return keten_err_set(KETEN_ERR_INVALID,
                "%s is not set: give --%s, or set %s in the [%s] section of the configuration "
                "file",
                t->settings[i].name, t->settings[i].name, t->settings[i].name, t->section);
        }
    }
    return KETEN_OK;
}

/* ---- getters ------------------------------------------------------------ */

static const slot *get(const keten_config *cfg, const char *name, keten_config_type *type)
{
    size_t i = find_index(cfg->table, name);
    assert(i != SIZE_MAX && "not a setting of this table");
    if (i == SIZE_MAX) {
        return NULL;
    }
    *type = cfg->table->settings[i].type;
    return &cfg->values[i];
}

const char *keten_config_get_str(const keten_config *cfg, const char *name)
{
    keten_config_type type = KETEN_CONFIG_STRING;
    const slot *v = get(cfg, name, &type);
    bool ok = type == KETEN_CONFIG_STRING || type == KETEN_CONFIG_PATH
        || type == KETEN_CONFIG_ENDPOINT || type == KETEN_CONFIG_ENUM;
    assert(ok && "keten_config_get_str on a number");
    return v != NULL && ok && v->set ? v->text : NULL;
}

uint64_t keten_config_get_uint(const keten_config *cfg, const char *name)
{
    keten_config_type type = KETEN_CONFIG_UINT;
    const slot *v = get(cfg, name, &type);
    bool ok = type == KETEN_CONFIG_UINT || type == KETEN_CONFIG_DURATION_MS
        || type == KETEN_CONFIG_SIZE_BYTES;
    assert(ok && "keten_config_get_uint on a non-number");
    return v != NULL && ok && v->set ? v->num : 0;
}

bool keten_config_get_bool(const keten_config *cfg, const char *name)
{
    keten_config_type type = KETEN_CONFIG_BOOL;
    const slot *v = get(cfg, name, &type);
    assert(type == KETEN_CONFIG_BOOL && "keten_config_get_bool on a non-bool");
    return v != NULL && type == KETEN_CONFIG_BOOL && v->set && v->num != 0;
}

size_t keten_config_get_enum(const keten_config *cfg, const char *name)
{
    keten_config_type type = KETEN_CONFIG_ENUM;
    const slot *v = get(cfg, name, &type);
    assert(type == KETEN_CONFIG_ENUM && "keten_config_get_enum on a non-enum");
    return v != NULL && type == KETEN_CONFIG_ENUM && v->set ? (size_t)v->num : SIZE_MAX;
}

bool keten_config_is_set(const keten_config *cfg, const char *name)
{
    keten_config_type type;
    const slot *v = get(cfg, name, &type);
    return v != NULL && v->set;
}

keten_config_source keten_config_source_of(const keten_config *cfg, const char *name)
{
    keten_config_type type;
    const slot *v = get(cfg, name, &type);
    return v != NULL && v->set ? v->src : KETEN_CONFIG_SRC_DEFAULT;
}

size_t keten_config_error_count(const keten_config *cfg)
{
    return cfg->n_errors;
}

const char *keten_config_error(const keten_config *cfg, size_t i)
{
    if (i >= cfg->n_errors || i >= KETEN_CONFIG_ERRORS_MAX) {
        return NULL;
    }
    return cfg->errors[i];
}

/* ---- the file ----------------------------------------------------------- */

static void load_error(loader *ld, keten_err code, const char *fmt, ...) KETEN_PRINTF(3, 4);

static void load_error(loader *ld, keten_err code, const char *fmt, ...)
{
    keten_config *cfg = ld->cfg;
    if (ld->first == KETEN_OK) {
        ld->first = code;
    }
    if (cfg->n_errors < KETEN_CONFIG_ERRORS_MAX) {
        char *out = cfg->errors[cfg->n_errors];
        int n = snprintf(out, KETEN_CONFIG_ERROR_BYTES, "%s:%u: ", ld->path, ld->line);
        if (n < 0 || n >= KETEN_CONFIG_ERROR_BYTES) {
            n = 0;
        }
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out + n, KETEN_CONFIG_ERROR_BYTES - (size_t)n, fmt, ap);
        va_end(ap);
    }
    cfg->n_errors++;
}

/* inih's reader: hands it one line at a time so that the handler knows the
 * line number. Leading blanks are removed (no multi-line values), comments
 * are blanked, and a line that is too long, holds a control character or is
 * not "[section]" or "key = value" is reported here and handed on blank. */
static char *reader(char *str, int num, void *stream)
{
    loader *ld = stream;
    if (ld->pos >= ld->len || num < 4) {
        return NULL;
    }
    const char *p = ld->buf + ld->pos;
    size_t rest = ld->len - ld->pos;
    const char *nl = memchr(p, '\n', rest);
    size_t n = nl != NULL ? (size_t)(nl - p) : rest;
    ld->pos += n + (nl != NULL ? 1 : 0);
    ld->line++;
    if (ld->line == 1 && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
        p += 3;
        n -= 3;
    }
    while (n > 0 && (p[n - 1] == '\r' || is_space(p[n - 1]))) {
        n--;
    }
    while (n > 0 && is_space(*p)) {
        p++;
        n--;
    }
    str[0] = '\n';
    str[1] = '\0';
    if (n == 0 || *p == '#' || *p == ';') {
        return str;
    }
    if (n > (size_t)num - 3 || n > KETEN_CONFIG_LINE_MAX) {
        load_error(ld, KETEN_ERR_MALFORMED, "line longer than %d characters",
            KETEN_CONFIG_LINE_MAX < num - 3 ? KETEN_CONFIG_LINE_MAX : num - 3);
        return str;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            load_error(ld, KETEN_ERR_MALFORMED, "a control character (byte 0x%02x)", c);
            return str;
        }
    }
    const char *section = ld->cfg->table->section;
    if (*p == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL) {
            load_error(ld, KETEN_ERR_MALFORMED, "syntax error: a section header without ']'");
            return str;
        }
        const char *after = close + 1;
        while (after < p + n && is_space(*after)) {
            after++;
        }
        if (after < p + n && *after != '#' && *after != ';') {
            load_error(ld, KETEN_ERR_MALFORMED, "syntax error: text after the section header");
            return str;
        }
        size_t sn = (size_t)(close - p - 1);
        if (sn != strlen(section) || memcmp(p + 1, section, sn) != 0) {
            char name[SHOWN_MAX + 4];
            char raw[SHOWN_MAX + 1];
            size_t cn = sn < SHOWN_MAX ? sn : SHOWN_MAX;
            memcpy(raw, p + 1, cn);
            raw[cn] = '\0';
            shown(raw, name);
            load_error(ld, KETEN_ERR_INVALID,
                "section [%s] is not for %s: its settings go in [%s], the only section", name,
                ld->cfg->table->program, section);
        }
    } else {
        const char *eq = memchr(p, '=', n);
        const char *colon = memchr(p, ':', n);
        if (eq == NULL || (colon != NULL && colon < eq)) {
            load_error(ld, KETEN_ERR_MALFORMED,
                "syntax error: expected 'key = value', '[%s]' or a comment starting with #",
                section);
            return str;
        }
        if (eq == p) {
            load_error(ld, KETEN_ERR_MALFORMED, "syntax error: no key before '='");
            return str;
        }
    }
    memcpy(str, p, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *val)
{
    loader *ld = user;
    const keten_config_table *t = ld->cfg->table;
    char sk[SHOWN_MAX + 4];
    shown(name, sk);
    if (strcmp(section, t->section) != 0) {
        if (section[0] == '\0') {
            load_error(ld, KETEN_ERR_INVALID, "key '%s' is outside a section: put it under [%s]",
                sk, t->section);
        }
        /* A key in another section: that section was reported. */
        return 0;
    }
    size_t i = find_index(t, name);
    if (i == SIZE_MAX) {
        char msg[WHY_BYTES];
        unknown_text(t, "key", name, msg, sizeof msg);
        load_error(ld, KETEN_ERR_INVALID, "%s", msg);
        return 0;
    }
    pending *pd = &ld->pend[i];
    if (pd->present) {
        load_error(
            ld, KETEN_ERR_INVALID, "duplicate key '%s' (first set on line %u)", sk, pd->line);
        return 0;
    }
    uint64_t num = 0;
    char why[WHY_BYTES];
    if (!parse_value(&t->settings[i], val, true, &num, why, sizeof why)) {
        load_error(ld, KETEN_ERR_INVALID, "bad value for key '%s': %s", sk, why);
        return 0;
    }
    pd->text = dup_str(val);
    if (pd->text == NULL) {
        ld->nomem = true;
        return 0;
    }
    pd->present = true;
    pd->line = ld->line;
    pd->num = num;
    return 1;
}

/* The file's bytes: a regular file, not writable by group or others, at
 * most KETEN_CONFIG_FILE_MAX bytes, without NUL bytes. */
static keten_err read_file(const char *path, char **out, size_t *out_len)
{
    keten_err e = KETEN_OK;
    char *buf = NULL;
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer, for
     * ever; it is refused below as not a regular file instead (reading a
     * regular file never blocks, flag or not). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) {
            return keten_err_set(KETEN_ERR_NOT_FOUND,
                "%s: no such configuration file (an example with every setting is in the "
                "documentation; or give the options on the command line)",
                path);
        }
        return keten_err_set(
            KETEN_ERR_IO, "%s: cannot open the configuration file: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        e = keten_err_set(KETEN_ERR_WRONG_TYPE, "%s: not a regular file", path);
        goto out;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        e = keten_err_set(KETEN_ERR_PERMISSIONS,
            "%s: the configuration file is writable by %s (mode %03o), who could change what "
            "the daemon runs; run chmod go-w %s",
            path, (st.st_mode & S_IWOTH) ? "others" : "its group", (unsigned)(st.st_mode & 0777),
            path);
        goto out;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > KETEN_CONFIG_FILE_MAX) {
        e = keten_err_set(
            KETEN_ERR_TOO_LARGE, "%s: larger than %u bytes", path, KETEN_CONFIG_FILE_MAX);
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1; /* one more byte shows growth while reading */
    buf = malloc(cap);
    if (buf == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "%s: no memory to read it", path);
        goto out;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            e = keten_err_set(KETEN_ERR_IO, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
        if (len == cap) {
            e = keten_err_set(KETEN_ERR_TOO_LARGE, "%s: the file grew while it was read", path);
            goto out;
        }
    }
    const char *nul = memchr(buf, '\0', len);
    if (nul != NULL) {
        unsigned line = 1;
        for (const char *c = buf; c < nul; c++) {
            line += *c == '\n';
        }
        e = keten_err_set(KETEN_ERR_MALFORMED, "%s:%u: a NUL byte: not a text file", path, line);
        goto out;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return e;
}

keten_err keten_config_load(keten_config *cfg, const char *path)
{
    keten_err e = KETEN_OK;
    const keten_config_table *t = cfg->table;
    loader ld = { .cfg = cfg, .path = path };
    char *buf = NULL;
    size_t len = 0;
    cfg->n_errors = 0;
    e = read_file(path, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    ld.buf = buf;
    ld.len = len;
    ld.pend = calloc(t->n_settings > 0 ? t->n_settings : 1, sizeof *ld.pend);
    if (ld.pend == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "%s: no memory to parse it", path);
        goto out;
    }
    int rc = ini_parse_stream(reader, &ld, handler, &ld);
    if (ld.nomem || rc == -2) {
        e = keten_err_set(KETEN_ERR_NOMEM, "%s: no memory to parse it", path);
        goto out;
    }
    if (rc != 0 && cfg->n_errors == 0) {
        ld.line = rc > 0 ? (unsigned)rc : 0;
        load_error(&ld, KETEN_ERR_MALFORMED, "syntax error");
    }
    if (cfg->n_errors > 0) {
        if (cfg->n_errors > 1) {
            e = keten_err_set(ld.first, "%s (and %zu more error%s)", cfg->errors[0],
                cfg->n_errors - 1, cfg->n_errors > 2 ? "s" : "");
        } else {
            e = keten_err_set(ld.first, "%s", cfg->errors[0]);
        }
        goto out;
    }
    for (size_t i = 0; i < t->n_settings; i++) {
        pending *pd = &ld.pend[i];
        slot *v = &cfg->values[i];
        if (!pd->present || (v->set && v->src > KETEN_CONFIG_SRC_FILE)) {
            continue;
        }
        char origin[PATH_MAX + 16];
        snprintf(origin, sizeof origin, "%s:%u", path, pd->line);
        e = value_store(v, pd->text, pd->num, KETEN_CONFIG_SRC_FILE, origin);
        pd->text = NULL; /* value_store took it, even on failure */
        if (e != KETEN_OK) {
            goto out;
        }
    }
out:
    if (ld.pend != NULL) {
        for (size_t i = 0; i < t->n_settings; i++) {
            free(ld.pend[i].text);
        }
    }
    free(ld.pend);
    free(buf);
    return e;
}

/* ---- printing ----------------------------------------------------------- */

keten_err keten_config_print(const keten_config *cfg, FILE *out)
{
    const keten_config_table *t = cfg->table;
    if (fprintf(out, "# %s: effective configuration\n[%s]\n", t->program, t->section) < 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot write the configuration: %s", strerror(errno));
    }
    for (size_t i = 0; i < t->n_settings; i++) {
        const keten_config_setting *s = &t->settings[i];
        const slot *v = &cfg->values[i];
        int n;
        if (v->set) {
            n = fprintf(out, "# %s (%s) from %s\n%s = %s\n", s->name,
                keten_config_type_name(s->type), v->origin, s->name, v->text);
        } else {
            n = fprintf(out, "# %s (%s) not set\n#%s =\n", s->name, keten_config_type_name(s->type),
                s->name);
        }
        if (n < 0) {
            return keten_err_set(
                KETEN_ERR_IO, "cannot write the configuration: %s", strerror(errno));
        }
    }
    if (fflush(out) != 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot write the configuration: %s", strerror(errno));
    }
    return KETEN_OK;
}

bool keten_config_valid_ip_address(const char *value, char *why, size_t why_size)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, value, &a4) == 1 || inet_pton(AF_INET6, value, &a6) == 1) {
        return true;
    }
    why_set(why, why_size,
        "not an IP address: give the proxy's address as numbers (127.0.0.1, ::1), not a name");
    return false;
}

bool keten_config_valid_header_name(const char *value, char *why, size_t why_size)
{
    /* RFC 9110 token characters. */
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t n = strlen(value);
    if (n == 0 || strspn(value, tchar) != n) {
        why_set(why, why_size, "not an HTTP header name: letters, digits and - (X-Remote-User)");
        return false;
    }
    return true;
}

bool keten_config_valid_scopes(const char *value, char *why, size_t why_size)
{
    static const char *const names[] = { "read", "send", "ack" };
    unsigned seen = 0;
    const char *p = value;
    for (;;) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (n == strlen(names[i]) && strncmp(p, names[i], n) == 0) {
                bit = 1u << i;
            }
        }
        if (bit == 0) {
            why_set(why, why_size, "'%.*s' is not a scope: use read, send and ack",
                (int)(n < 32 ? n : 32), p);
            return false;
        }
        if ((seen & bit) != 0) {
            why_set(why, why_size, "'%.*s' is named twice", (int)n, p);
            return false;
        }
        seen |= bit;
        if (p[n] == '\0') {
            return true;
        }
        p += n + 1;
    }
}
