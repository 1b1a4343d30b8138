#include "apiclient.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "cmdtable.h"
#include "idem.h"
#include "keten.h"
#include "node.h"
#include "signal_json.h"
#include "util.h"

#define BASE_URL "http://localhost"

static keten_err not_running(const char *home)
{
    return keten_err_set(KETEN_ERR_NOT_FOUND,
        "the keten-node daemon is not running for %s; start it: systemctl start keten-node "
        "(the installed service; keten-node@NAME for one of several nodes), or by hand: "
        "keten-node run --home %s --config NODE.CONF",
        home, home);
}

static keten_err daemon_running(const char *home)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", home, KETEN_NODE_LOCK) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path too long: %s", home);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return not_running(home);
    }
    int rc = flock(fd, LOCK_SH | LOCK_NB);
    int err = errno;
    close(fd);
    if (rc == 0) {
        return not_running(home);
    }
    if (err != EWOULDBLOCK) {
        return keten_err_set(KETEN_ERR_IO, "cannot check %s: %s", path, strerror(err));
    }
    return KETEN_OK;
}

void keten_apiclient_wipe_json(json_t *json)
{
    if (json_is_string(json)) {
        sodium_memzero((void *)(uintptr_t)json_string_value(json), json_string_length(json));
    } else if (json_is_array(json)) {
        size_t i;
        json_t *v;
        json_array_foreach(json, i, v)
        {
            keten_apiclient_wipe_json(v);
        }
    } else if (json_is_object(json)) {
        const char *k;
        json_t *v;
        /* Values only: a key is a field name of the signal format, and
         * zeroing it would break the object's hash table. */
        json_object_foreach(json, k, v)
        {
            keten_apiclient_wipe_json(v);
        }
    }
}

/* The answer's bytes, at most KETEN_APICLIENT_REPLY_MAX. */
typedef struct answer {
    char *data;
    size_t len, cap;
    bool too_large;
} answer;

static void answer_clear(answer *a)
{
    if (a->data != NULL) {
        sodium_memzero(a->data, a->cap);
        free(a->data);
    }
    a->data = NULL;
    a->len = a->cap = 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    answer *a = userdata;
    size_t n = size * nmemb;
    if (n > KETEN_APICLIENT_REPLY_MAX - a->len) {
        a->too_large = true;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap == 0 ? 16384 : a->cap;
        while (cap < a->len + n + 1) {
            cap *= 2;
        }
        /* Not realloc(): the old block may hold signal content, wiped first. */
        char *d = malloc(cap);
        if (d == NULL) {
            return 0;
        }
        if (a->len > 0) {
            memcpy(d, a->data, a->len);
        }
        answer_clear(&(answer) { .data = a->data, .cap = a->cap });
        a->data = d;
        a->cap = cap;
    }
    memcpy(a->data + a->len, ptr, n);
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}

/* "application/json" or "application/problem+json", with or without
 * parameters. */
static bool json_media_type(const char *ct)
{
    if (ct == NULL) {
        return false;
    }
    size_t n = strcspn(ct, "; ");
    return (n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0)
        || (n == strlen("application/problem+json")
            && strncasecmp(ct, "application/problem+json", n) == 0);
}

/* keten_apiclient_call() with, when idem_key is not NULL, the header
 * Idempotency-Key: idem_key (a valid key: keten_idem_key_check). */
/* Why a connection to the local socket sock fails (strerror), as libcurl
 * does not say: "Permission denied" (not the daemon's user or group), "No
 * such file or directory" (no socket yet), "Connection refused" (nobody
 * listening). */
static const char *connect_error(const char *sock)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return strerror(errno);
    }
    int rc = connect(fd, (const struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    close(fd);
    return rc == 0 ? "it answers now" : strerror(err);
}

static keten_err call_keyed(const char *home, const char *method, const char *path,
    const char *query, const json_t *body, const char *idem_key, int timeout_ms, long *status,
    json_t **reply)
{
    *reply = NULL;
    *status = 0;
    keten_err e = daemon_running(home);
    if (e != KETEN_OK) {
        return e;
    }
    char sock[sizeof((struct sockaddr_un *)0)->sun_path];
    if (snprintf(sock, sizeof sock, "%s/%s", home, KETEN_NODE_API_SOCK) >= (int)sizeof sock) {
        return keten_err_set(KETEN_ERR_INVALID,
            "the API socket path %s/%s is too long for a local socket; use a shorter --home", home,
            KETEN_NODE_API_SOCK);
    }
    char url[sizeof BASE_URL + KETEN_APICLIENT_PATH_MAX + KETEN_APICLIENT_QUERY_MAX + 2];
    if (snprintf(url, sizeof url, "%s%s%s%s", BASE_URL, path,
            query != NULL && query[0] != '\0' ? "?" : "", query != NULL ? query : "")
        >= (int)sizeof url) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the request %s %s?%s is too long", method, path,
            query != NULL ? query : "");
    }
    char *text = NULL;
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "the request body");
    }
    if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
        free(text);
        return keten_err_set(KETEN_ERR_NOMEM, "cannot start libcurl");
    }
    answer ans = { 0 };
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL, *h;
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "cannot start libcurl");
        goto out;
    }
    /* "Expect:" off: the body goes with the headers, no 100-continue round. */
    /* Checked here too: a key is a header line's value (no CR, LF or space). */
    char idem_line[sizeof KETEN_IDEM_HEADER + KETEN_IDEM_KEY_MAX + 3] = "";
    char why[200];
    if (idem_key != NULL && !keten_idem_key_check(idem_key, why, sizeof why)) {
        e = keten_err_set(KETEN_ERR_INVALID, "%s", why);
        goto out;
    }
    if (idem_key != NULL
        && snprintf(idem_line, sizeof idem_line, "%s: %s", KETEN_IDEM_HEADER, idem_key)
            >= (int)sizeof idem_line) {
        e = keten_err_set(
            KETEN_ERR_TOO_LARGE, "an idempotency key over %d characters", KETEN_IDEM_KEY_MAX);
        goto out;
    }
    const char *hdrs[] = { "Accept: application/json, application/problem+json",
        "Expect:", idem_line[0] != '\0' ? idem_line : NULL,
        text != NULL ? "Content-Type: application/json; charset=utf-8" : NULL };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        if (hdrs[i] == NULL) {
            continue;
        }
        if ((h = curl_slist_append(headers, hdrs[i])) == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "the request headers");
            goto out;
        }
        headers = h;
    }
    /* Who is asking, for the node's access log and traces. */
    char agent[64];
    snprintf(agent, sizeof agent, "keten-node/%s", keten_cmdtable_version());
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK) {                                                                      \
            cc = curl_easy_setopt(curl, opt, val);                                                 \
        }                                                                                          \
    } while (0)
    SET(CURLOPT_UNIX_SOCKET_PATH, sock);
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http");
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOPROXY, "*");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_USERAGENT, agent);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)KETEN_APICLIENT_TIMEOUT_MS);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, &ans);
    SET(CURLOPT_CUSTOMREQUEST, method);
    if (text != NULL) {
        SET(CURLOPT_POSTFIELDS, text);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    if (cc != CURLE_OK) {
        e = keten_err_set(KETEN_ERR_IO, "libcurl: %s", curl_easy_strerror(cc));
        goto out;
    }
    cc = curl_easy_perform(curl);
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        e = keten_err_set(KETEN_ERR_IO,
            "the keten-node daemon for %s did not answer within %d s; is it stuck? (see its log)",
            home, timeout_ms / 1000);
        goto out;
    }
    if (cc == CURLE_WRITE_ERROR && ans.too_large) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE,
            "the daemon's answer to %s %s is over %u bytes; ask for less (--since, --kind)", method,
            path, KETEN_APICLIENT_REPLY_MAX);
        goto out;
    }
    if (cc == CURLE_COULDNT_CONNECT) {
        /* libcurl's own words name "localhost port 80", which is only the
         * URL's form, and not why: say what is wrong with the socket. */
        e = keten_err_set(KETEN_ERR_IO,
            "cannot connect to %s (%s): the keten-node daemon for %s is running but does not "
            "answer on its socket (still starting: opening its key file takes a few seconds; try "
            "again, as the daemon's user, or see its log)",
            sock, connect_error(sock), home);
        goto out;
    }
    if (cc != CURLE_OK) {
        e = keten_err_set(KETEN_ERR_IO, "talking to the keten-node daemon over %s: %s", sock,
            errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    const char *ctype = NULL;
    if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status) != CURLE_OK
        || curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ctype) != CURLE_OK) {
        e = keten_err_set(KETEN_ERR_IO, "libcurl gave no status for %s %s", method, path);
        goto out;
    }
    if (ans.len == 0 && (*status == 204 || *status >= 400)) {
        goto out; /* no body: keten_apiclient_check() says what the status says */
    }
    if (!json_media_type(ctype)) {
        if (*status >= 400) {
            goto out;
        }
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "the daemon's answer to %s %s is %s, not JSON (HTTP %ld)", method, path,
            ctype != NULL ? ctype : "without a Content-Type", *status);
        goto out;
    }
    json_error_t jerr;
    *reply = json_loadb(ans.data, ans.len, JSON_REJECT_DUPLICATES, &jerr);
    if (*reply == NULL || !json_is_object(*reply)) {
        json_decref(*reply);
        *reply = NULL;
        e = keten_err_set(
            KETEN_ERR_MALFORMED, "the daemon's answer is not a JSON object: %s", jerr.text);
    }
out:
    curl_slist_free_all(headers);
    if (curl != NULL) {
        curl_easy_cleanup(curl);
    }
    curl_global_cleanup();
    answer_clear(&ans);
    if (text != NULL) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    return e;
}

keten_err keten_apiclient_call(const char *home, const char *method, const char *path,
    const char *query, const json_t *body, int timeout_ms, long *status, json_t **reply)
{
    return call_keyed(home, method, path, query, body, NULL, timeout_ms, status, reply);
}

/* A signal text as the request carries it: a JSON object. NULL (the error
 * set as the node sets it) when it is not one. */
static json_t *signal_object(const char *text, size_t len, keten_err *err)
{
    json_error_t jerr;
    json_t *sig = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (sig != NULL && json_is_object(sig)) {
        *err = KETEN_OK;
        return sig;
    }
    keten_apiclient_wipe_json(sig);
    json_decref(sig);
    /* The node's own parser, for its very words. */
    Keten__Signal *parsed = NULL;
    keten_err e = keten_signal_json_parse(text, len, &parsed);
    keten_signal_json_free(&parsed);
    *err = e != KETEN_OK ? e
                         : keten_err_set(KETEN_ERR_JSON, "%s (line %d, column %d)", jerr.text,
                             jerr.line, jerr.column);
    return NULL;
}

/* body with "signal": sig, sent (with idem_key, not NULL, as the header
 * Idempotency-Key); sig (owned) wiped and released. */
static keten_err call_with_signal(const char *home, const char *method, const char *path,
    const char *query, json_t *body, json_t *sig, const char *idem_key, int timeout_ms,
    long *status, json_t **reply)
{
    keten_err e = KETEN_OK;
    if (json_object_set(body, "signal", sig) != 0) {
        e = keten_err_set(KETEN_ERR_NOMEM, "the request body");
    } else {
        e = call_keyed(home, method, path, query, body, idem_key, timeout_ms, status, reply);
        (void)json_object_del(body, "signal");
    }
    keten_apiclient_wipe_json(sig);
    json_decref(sig);
    return e;
}

/* keten_apiclient_call_signal() with idem_key (NULL: none). */
static keten_err call_signal_keyed(const char *home, const char *method, const char *path,
    const char *query, json_t *body, const char *text, size_t len, const char *idem_key,
    int timeout_ms, long *status, json_t **reply)
{
    *reply = NULL;
    *status = 0;
    keten_err e = daemon_running(home);
    if (e != KETEN_OK) {
        return e;
    }
    json_t *sig = signal_object(text, len, &e);
    if (sig == NULL) {
        return e;
    }
    return call_with_signal(
        home, method, path, query, body, sig, idem_key, timeout_ms, status, reply);
}

keten_err keten_apiclient_call_signal(const char *home, const char *method, const char *path,
    const char *query, json_t *body, const char *text, size_t len, int timeout_ms, long *status,
    json_t **reply)
{
    return call_signal_keyed(
        home, method, path, query, body, text, len, NULL, timeout_ms, status, reply);
}

/* The API's words for what a person does with this command line: a detail
 * meant for any client names a request's field or route where the command
 * has an option or a command. Each pair is (the API's, the command line's). */
static const char *const cli_words[][2] = {
    { ", send \"kind\": \"feedback\")", ": keten-node reply --kind feedback)" },
    { "(answer a query with \"kind\": \"reply\")", "(answer a query with keten-node reply)" },
    { "; a reply answers a received query, feedback a received signal",
        "; `reply` answers a received query, `reply --kind feedback` a received signal" },
    { "(for a message this node sent: GET /v1/messages/",
        "(for a message this node sent, use status " },
    { "(GET /v1/tokens lists them)", "(keten-node token list lists them)" },
    { "the header " KETEN_IDEM_HEADER, "--idempotency-key" },
    { "the " KETEN_IDEM_HEADER, "the --idempotency-key" },
};

int keten_apiclient_idem_option(const char *cmd, const char *key, bool dry_run)
{
    if (key == NULL) {
        return 0;
    }
    if (dry_run) {
        return keten_cli_usage(
            cmd, "--dry-run sends nothing: there is nothing to send once with --idempotency-key");
    }
    char why[200];
    if (!keten_idem_key_check(key, why, sizeof why)) {
        char text[KETEN_APICLIENT_TEXT_MAX];
        keten_apiclient_cli_text(why, text, sizeof text);
        return keten_cli_usage(cmd, "%s", text);
    }
    return 0;
}

void keten_apiclient_cli_text(const char *text, char *out, size_t size)
{
    size_t n = 0;
    while (*text != '\0' && n + 1 < size) {
        size_t k = 0;
        for (; k < sizeof cli_words / sizeof cli_words[0]; k++) {
            if (strncmp(text, cli_words[k][0], strlen(cli_words[k][0])) == 0) {
                break;
            }
        }
        if (k == sizeof cli_words / sizeof cli_words[0]) {
            out[n++] = *text++;
            continue;
        }
        int w = snprintf(out + n, size - n, "%s", cli_words[k][1]);
        n = w < 0 || (size_t)w >= size - n ? size - 1 : n + (size_t)w;
        text += strlen(cli_words[k][0]);
    }
    out[n] = '\0';
}

int keten_apiclient_check(long status, const json_t *reply)
{
    if (status >= 200 && status < 300) {
        return KETEN_EXIT_OK;
    }
    const char *detail = json_string_value(json_object_get(reply, "detail"));
    if (detail == NULL) {
        detail = json_string_value(json_object_get(reply, "title"));
    }
    if (detail != NULL) {
        char text[KETEN_APICLIENT_TEXT_MAX];
        keten_apiclient_cli_text(detail, text, sizeof text);
        fprintf(stderr, "%s: %s\n", keten_cli_prog(), text);
    } else {
        fprintf(stderr,
            "%s: the keten-node daemon answered HTTP %ld without saying why (see its log)\n",
            keten_cli_prog(), status);
    }
    json_t *code = json_object_get(reply, "exit");
    json_int_t rc = json_is_integer(code) ? json_integer_value(code) : KETEN_EXIT_FAILURE;
    /* A problem is a failure, a usage error or a failed verification: never 0. */
    return rc >= KETEN_EXIT_FAILURE && rc <= KETEN_EXIT_VERIFY ? (int)rc : KETEN_EXIT_FAILURE;
}

keten_err keten_apiclient_request(const char *home, const char *method, const char *path,
    const json_t *body, long *status, json_t **reply, int *rc)
{
    long st = 0;
    *reply = NULL;
    *rc = KETEN_EXIT_OK;
    keten_err e = keten_apiclient_call(
        home, method, path, NULL, body, KETEN_APICLIENT_TIMEOUT_MS, &st, reply);
    if (e == KETEN_OK && st >= 400) {
        *rc = keten_apiclient_check(st, *reply);
    }
    if (status != NULL) {
        *status = st;
    }
    return e;
}

int keten_apiclient_list_get(
    const char *home, const char *path, const char *query, int timeout_ms, json_t **reply)
{
    long status = 0;
    keten_err e = keten_apiclient_call(home, "GET", path, query, NULL, timeout_ms, &status, reply);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(status, *reply);
    if (rc == KETEN_EXIT_OK && !json_is_array(json_object_get(*reply, "messages"))) {
        const char *what = strncmp(path, "/v1/", 4) == 0 ? path + 4 : path;
        rc = keten_cli_error(
            keten_err_set(KETEN_ERR_MALFORMED, "the daemon's %s answer has no \"messages\"", what));
    }
    return rc;
}

int keten_apiclient_list_print(const json_t *reply, bool as_json, void (*header)(void),
    bool (*print_item)(const json_t *item, void *arg), void *arg, size_t *counted)
{
    const json_t *list = json_object_get(reply, "messages");
    size_t i;
    json_t *m;
    *counted = 0;
    if (!as_json && json_array_size(list) > 0) {
        header();
    }
    json_array_foreach(list, i, m)
    {
        if (as_json) {
            char *line = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (line == NULL) {
                return keten_cli_error(KETEN_ERR_NOMEM);
            }
            printf("%s\n", line);
            sodium_memzero(line, strlen(line)); /* an inbox line holds its signal */
            free(line);
        } else if (print_item(m, arg)) {
            (*counted)++;
        }
    }
    return KETEN_EXIT_OK;
}

keten_err keten_apiclient_query_add(char *buf, size_t size, const char *key, const char *value)
{
    size_t n = strnlen(buf, size);
    if (n >= size) {
        return keten_err_set(KETEN_ERR_INVALID, "a query string without its end");
    }
    int w = snprintf(buf + n, size - n, "%s%s=", n > 0 ? "&" : "", key);
    if (w < 0 || (size_t)w >= size - n) {
        buf[n] = '\0';
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the query is over %zu bytes", size - 1);
    }
    size_t at = n + (size_t)w;
    static const char hexdig[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (at + need >= size) {
            buf[n] = '\0';
            return keten_err_set(KETEN_ERR_TOO_LARGE, "the query is over %zu bytes", size - 1);
        }
        if (plain) {
            buf[at++] = (char)*p;
        } else {
            buf[at++] = '%';
            buf[at++] = hexdig[*p >> 4];
            buf[at++] = hexdig[*p & 15];
        }
    }
    buf[at] = '\0';
    return KETEN_OK;
}

bool keten_apiclient_msg_id(const char *arg, char out[static KETEN_APICLIENT_MSG_ID_HEX])
{
    if (strlen(arg) != KETEN_APICLIENT_MSG_ID_HEX - 1
        || strspn(arg, "0123456789abcdefABCDEF") != KETEN_APICLIENT_MSG_ID_HEX - 1) {
        return false;
    }
    for (size_t i = 0; i < KETEN_APICLIENT_MSG_ID_HEX - 1; i++) {
        out[i] = (arg[i] >= 'A' && arg[i] <= 'F') ? (char)(arg[i] - 'A' + 'a') : arg[i];
    }
    out[KETEN_APICLIENT_MSG_ID_HEX - 1] = '\0';
    return true;
}

int keten_apiclient_bad_msg_id(const char *home)
{
    keten_err e = daemon_running(home);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    fprintf(stderr, "%s: MSG_ID must be 32 hex characters\n", keten_cli_prog());
    return KETEN_EXIT_USAGE;
}

int keten_apiclient_refuse(const char *home, keten_err err)
{
    char detail[KETEN_APICLIENT_TEXT_MAX];
    snprintf(detail, sizeof detail, "%s", keten_err_detail());
    keten_err e = daemon_running(home);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    return keten_cli_error(keten_err_set(err, "%s", detail));
}

keten_err keten_apiclient_read_signal(const char *arg, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (strcmp(arg, "-") != 0) {
        uint8_t *buf = NULL;
        keten_err e = keten_file_read(arg, KETEN_SIGNAL_JSON_MAX, &buf, len);
        if (e != KETEN_OK) {
            return e;
        }
        char *t = realloc(buf, *len + 1);
        if (t == NULL) {
            free(buf);
            return KETEN_ERR_NOMEM;
        }
        t[*len] = '\0';
        *text = t;
        return KETEN_OK;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return KETEN_ERR_NOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > KETEN_SIGNAL_JSON_MAX) {
                free(buf);
                return keten_err_set(KETEN_ERR_TOO_LARGE,
                    "the signal on standard input is over %u bytes", KETEN_SIGNAL_JSON_MAX);
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return KETEN_ERR_NOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(STDIN_FILENO, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            free(buf);
            return keten_err_set(KETEN_ERR_IO, "reading standard input: %s", strerror(errno));
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    if (n > KETEN_SIGNAL_JSON_MAX) {
        free(buf);
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the signal on standard input is over %u bytes",
            KETEN_SIGNAL_JSON_MAX);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return KETEN_OK;
}

/* The local half of a dry run: the signal's own fields. */
static json_t *dry_run_local(const char *text, size_t len)
{
    keten_signal_json_problems pr = { 0 };
    keten_err e = keten_signal_json_validate(text, len, NULL, &pr);
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < pr.n; i++) {
        const keten_signal_json_problem *p = &pr.items[i];
        if (json_array_append_new(list,
                json_pack("{s:s, s:s, s:s, s:s, s:s}", "path", p->path, "code", p->code, "problem",
                    p->problem, "allowed", p->allowed, "error", keten_err_str(p->err)))
            != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *r = NULL;
    if (list != NULL && e != KETEN_ERR_NOMEM) {
        r = json_pack("{s:b, s:o, s:I}", "valid", pr.n == 0 && pr.more == 0, "problems", list,
            "more", (json_int_t)pr.more);
    } else {
        json_decref(list);
    }
    keten_signal_json_problems_clear(&pr);
    return r;
}

/* Why a dry run's signal cannot go to the node, on stderr: a key given
 * twice (named, as the signal's own check names it), or not a JSON object. */
static void not_an_object(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *any = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    const bool parsed = any != NULL;
    keten_apiclient_wipe_json(any);
    json_decref(any);
    if (!parsed && json_error_code(&jerr) == json_error_duplicate_key) {
        keten_signal_json_problems pr = { 0 };
        keten_err e = keten_signal_json_validate(text, len, NULL, &pr);
        char key[KETEN_SIGNAL_PATH_MAX] = "";
        if (e != KETEN_OK && pr.n > 0) {
            snprintf(key, sizeof key, "%s", pr.items[0].path);
        }
        keten_signal_json_problems_clear(&pr);
        keten_err_clear();
        fprintf(stderr,
            "%s: the signal gives the key \"%s\" twice (line %d, column %d): give each key once; "
            "checked the signal alone, not its recipients or the sharing policy\n",
            keten_cli_prog(), key, jerr.line, jerr.column);
        return;
    }
    fprintf(stderr,
        "%s: the signal is not %s: checked it alone, not its recipients or the sharing policy\n",
        keten_cli_prog(), parsed ? "a JSON object" : "valid JSON");
}

int keten_apiclient_dry_run(
    const char *home, json_t *req, const char *text, size_t len, bool as_json)
{
    json_t *reply = NULL;
    long status = 200;
    const char *checked = "node";
    keten_err e = KETEN_ERR_NOT_FOUND;
    if (req == NULL) { /* text that is not UTF-8: the parser says where */
        checked = "signal only";
        reply = dry_run_local(text, len);
        e = reply == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    } else {
        e = daemon_running(home);
        if (e == KETEN_ERR_NOT_FOUND) {
            fprintf(stderr,
                "%s: no node runs for %s: checked the signal's fields only, not its type and "
                "purpose against the directory, its recipients or the sharing policy\n",
                keten_cli_prog(), home);
        } else if (e == KETEN_OK) {
            json_t *sig = signal_object(text, len, &e);
            if (sig == NULL) {
                not_an_object(text, len);
                e = KETEN_ERR_NOT_FOUND;
            } else {
                e = call_with_signal(home, "POST", "/v1/messages/validate", NULL, req, sig, NULL,
                    KETEN_APICLIENT_TIMEOUT_MS, &status, &reply);
            }
        }
        if (e == KETEN_ERR_NOT_FOUND) {
            checked = "signal only";
            reply = dry_run_local(text, len);
            e = reply == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
            status = 200;
        }
    }
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(status, reply);
    if (rc != KETEN_EXIT_OK) {
        json_decref(reply);
        return rc;
    }
    json_t *valid_v = json_object_get(reply, "valid");
    json_t *problems = json_object_get(reply, "problems");
    json_t *more_v = json_object_get(reply, "more");
    if (!json_is_boolean(valid_v) || !json_is_array(problems)
        || (more_v != NULL && !json_is_integer(more_v))) {
        json_decref(reply);
        return keten_cli_error(keten_err_set(KETEN_ERR_MALFORMED,
            "the daemon's answer to the dry run has no \"valid\" and \"problems\""));
    }
    bool valid = json_is_true(valid_v);
    json_int_t more = json_integer_value(more_v);
    size_t pi;
    json_t *pp;
    json_array_foreach(problems, pi, pp)
    {
        /* The request's msg_id is the command's MSG_ID argument. */
        const char *path = json_string_value(json_object_get(pp, "path"));
        if (path != NULL && strcmp(path, "msg_id") == 0) {
            (void)json_object_set_new(pp, "path", json_string("MSG_ID"));
        }
        const char *problem = json_string_value(json_object_get(pp, "problem"));
        if (problem != NULL) {
            char words[KETEN_APICLIENT_TEXT_MAX];
            keten_apiclient_cli_text(problem, words, sizeof words);
            (void)json_object_set_new(pp, "problem", json_string(words));
        }
    }
    if (as_json) {
        json_t *out = json_pack("{s:b, s:s, s:O, s:I}", "valid", valid, "checked", checked,
            "problems", problems, "more", more);
        char *dump = out != NULL ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(out);
        if (dump == NULL) {
            json_decref(reply);
            return keten_cli_error(KETEN_ERR_NOMEM);
        }
        printf("%s\n", dump);
        free(dump);
    } else if (valid) {
        printf("valid\n");
    } else {
        size_t i;
        json_t *p;
        json_array_foreach(problems, i, p)
        {
            const char *path = json_string_value(json_object_get(p, "path"));
            const char *problem = json_string_value(json_object_get(p, "problem"));
            const char *allowed = json_string_value(json_object_get(p, "allowed"));
            printf("%s: %s", path != NULL && path[0] != '\0' ? path : "signal JSON",
                problem != NULL ? problem : "");
            if (allowed != NULL && allowed[0] != '\0') {
                printf(" (allowed: %s)", allowed);
            }
            printf("\n");
        }
        if (more > 0) {
            printf("... and %lld more problems\n", (long long)more);
        }
    }
    json_decref(reply);
    return valid ? KETEN_EXIT_OK : KETEN_EXIT_FAILURE;
}

int keten_apiclient_sent(long status, const json_t *reply, bool waited, bool as_json)
{
    int rc = keten_apiclient_check(status, reply);
    if (rc != KETEN_EXIT_OK) {
        return rc;
    }
    const char *msg_id = json_string_value(json_object_get(reply, "msg_id"));
    const char *state = json_string_value(json_object_get(reply, "state"));
    if (msg_id == NULL || state == NULL) {
        return keten_cli_error(keten_err_set(
            KETEN_ERR_MALFORMED, "the daemon's answer (HTTP %ld) has no msg_id and state", status));
    }
    if (waited && strcmp(state, "pending") == 0) {
        /* The wait ran out (202): what the command said before it asked over HTTP. */
        fprintf(stderr,
            "%s: no acknowledgement from the broker for message %s yet; it stays in the outbox "
            "and is resent until acknowledged (see keten-node status %s)\n",
            keten_cli_prog(), msg_id, msg_id);
        return KETEN_EXIT_FAILURE;
    }
    const bool repeated = json_is_true(json_object_get(reply, "repeated"));
    if (!as_json) {
        if (repeated) {
            fprintf(stderr,
                "%s: message %s was sent before with this --idempotency-key; nothing new was "
                "sent\n",
                keten_cli_prog(), msg_id);
        }
        printf("%s\n", msg_id);
        return KETEN_EXIT_OK;
    }
    json_t *out = json_pack("{s:s, s:s, s:O?}", "msg_id", msg_id, "state", state, "leaf_index",
        json_object_get(reply, "leaf_index"));
    if (out != NULL && repeated && json_object_set_new(out, "repeated", json_true()) != 0) {
        json_decref(out);
        out = NULL;
    }
    char *dump = out != NULL ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(out);
    printf("%s\n", dump != NULL ? dump : "{}");
    free(dump);
    return KETEN_EXIT_OK;
}

int keten_apiclient_post_signal(const char *home, const char *path, json_t *body, const char *text,
    size_t len, const char *idem_key, bool wait, uint64_t timeout_s, bool as_json)
{
    char query[KETEN_APICLIENT_QUERY_MAX] = "";
    keten_err e = KETEN_OK;
    if (wait) {
        char ms[24];
        snprintf(ms, sizeof ms, "%llu", (unsigned long long)(timeout_s * 1000));
        e = keten_apiclient_query_add(query, sizeof query, "wait", ms);
    }
    json_t *reply = NULL;
    long status = 0;
    if (e == KETEN_OK) {
        e = call_signal_keyed(home, "POST", path, query, body, text, len, idem_key,
            (int)(timeout_s * 1000) + KETEN_APICLIENT_TIMEOUT_MS, &status, &reply);
    }
    int rc = e != KETEN_OK ? keten_cli_error(e) : keten_apiclient_sent(status, reply, wait, as_json);
    json_decref(reply);
    return rc;
}
