/* node_apiclient: the command line's HTTP client of the node's API
 * (client/apiclient.h), against a stand-in server on a Unix socket in a
 * temporary home whose node.lock this test holds (so a daemon "runs").
 * The stand-in records the request it got and answers with canned bytes.
 *
 * Checked: the request line, headers and JSON body as sent (the signal as
 * an object); a problem's detail and exit code; an answer that is not JSON,
 * one over the size cap, no answer in time, nobody listening, no daemon at
 * all (the cap on an answer's size, 1 GiB, is not tried here); a signal text that is not a JSON
 * object refused before anything is sent, with the node's own words; proxy settings in the
 * environment ignored; --idempotency-key sent as the header Idempotency-Key, a key that
 * could break the header refused unsent; the query encoder and the msg_id check; wiping a
 * JSON tree; the listing loop inbox and sent share, and a listing answer without its list
 * refused. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>

#include "apiclient.h"
#include "cli.h"
#include "err.h"
#include "node.h"

#define REQ_MAX 65536

/* The stand-in server: one connection, one request. */
typedef struct srv {
    int lfd;
    pthread_t tid;
    char answer[1024]; /* the raw HTTP answer; "": never answer */
    char req[REQ_MAX + 1];
    size_t req_len;
    bool got;
} srv;

typedef struct ctx {
    char home[64];
    int lock_fd;
    srv s;
} ctx;

static bool request_complete(const char *buf, size_t len)
{
    const char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL) {
        return false;
    }
    size_t head = (size_t)(end - buf) + 4;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    return len >= head + body;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void *serve(void *arg)
{
    srv *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    while (s->req_len < REQ_MAX) {
        ssize_t r = read(fd, s->req + s->req_len, REQ_MAX - s->req_len);
        if (r <= 0) {
            break;
        }
        s->req_len += (size_t)r;
        s->req[s->req_len] = '\0';
        if (request_complete(s->req, s->req_len)) {
            s->got = true;
            break;
        }
    }
    if (s->answer[0] != '\0') {
        write_all(fd, s->answer, strlen(s->answer));
    } else { /* never answer: wait until the client gives up */
        char c;
        while (read(fd, &c, 1) > 0) { }
    }
    close(fd);
    return NULL;
}

/* Serve one answer: status line ("200 OK"), Content-Type (NULL: none) and
 * body (NULL: never answer at all). */
static void srv_start(ctx *t, const char *status, const char *ctype, const char *body)
{
    memset(&t->s, 0, sizeof t->s);
    if (body != NULL) {
        int n = snprintf(t->s.answer, sizeof t->s.answer,
            "HTTP/1.1 %s\r\n%s%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
            ctype != NULL ? "Content-Type: " : "", ctype != NULL ? ctype : "",
            ctype != NULL ? "\r\n" : "", strlen(body), body);
        assert_true(n > 0 && (size_t)n < sizeof t->s.answer);
    }
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", t->home, KETEN_NODE_API_SOCK);
    (void)unlink(a.sun_path);
    t->s.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(t->s.lfd >= 0);
    assert_int_equal(bind(t->s.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(t->s.lfd, 4), 0);
    assert_int_equal(pthread_create(&t->s.tid, NULL, serve, &t->s), 0);
}

static void srv_stop(ctx *t)
{
    shutdown(t->s.lfd, SHUT_RDWR); /* wakes an accept() that got nobody */
    assert_int_equal(pthread_join(t->s.tid, NULL), 0);
    close(t->s.lfd);
}

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return -1;
    }
    snprintf(t->home, sizeof t->home, "/tmp/keten-apiclient-XXXXXX");
    if (mkdtemp(t->home) == NULL) {
        free(t);
        return -1;
    }
    char lock[128];
    snprintf(lock, sizeof lock, "%s/%s", t->home, KETEN_NODE_LOCK);
    t->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (t->lock_fd < 0 || flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    close(t->lock_fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->home);
    int rc = system(cmd);
    free(t);
    return rc;
}

/* The JSON body of the recorded request. */
static json_t *req_body(const srv *s)
{
    const char *b = strstr(s->req, "\r\n\r\n");
    assert_non_null(b);
    json_error_t jerr;
    json_t *j = json_loads(b + 4, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(j);
    return j;
}

static void test_get_with_query(void **state)
{
    ctx *t = *state;
    srv_start(t, "200 OK", "application/json; charset=utf-8", "{\"messages\":[]}");
    char q[KETEN_APICLIENT_QUERY_MAX] = "";
    assert_int_equal(keten_apiclient_query_add(q, sizeof q, "unhandled", "true"), KETEN_OK);
    assert_int_equal(keten_apiclient_query_add(q, sizeof q, "category", "a b&c=d/e"), KETEN_OK);
    long status = 0;
    json_t *reply = NULL;
    assert_int_equal(
        keten_apiclient_call(t->home, "GET", "/v1/inbox", q, NULL, 5000, &status, &reply),
        KETEN_OK);
    srv_stop(t);
    assert_int_equal(status, 200);
    assert_true(json_is_array(json_object_get(reply, "messages")));
    assert_int_equal(keten_apiclient_check(status, reply), 0);
    json_decref(reply);
    assert_true(t->s.got);
    assert_non_null(strstr(t->s.req,
        "GET /v1/inbox?unhandled=true&category=a%20b%26c%3Dd%2Fe "
        "HTTP/1.1\r\n"));
    assert_non_null(strstr(t->s.req, "\r\nHost: localhost\r\n"));
    assert_non_null(strstr(t->s.req, "\r\nUser-Agent: keten-node/"));
    assert_null(strstr(t->s.req, "Content-Type:")); /* no body */
    assert_null(strstr(t->s.req, "Authorization:")); /* the socket is the credential */
}

static void test_post_signal_object(void **state)
{
    ctx *t = *state;
    srv_start(t, "202 Accepted", "application/json",
        "{\"msg_id\":\"0123456789abcdef0123456789abcdef\",\"state\":\"pending\"}");
    const char text[] = "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\",\"summary\":\"x\"}";
    json_t *body = json_pack("{s:s, s:[s, s]}", "kind", "signal", "to", "role:police", "tax");
    long status = 0;
    json_t *reply = NULL;
    assert_int_equal(keten_apiclient_call_signal(t->home, "POST", "/v1/messages", "wait=2000", body,
                         text, strlen(text), 5000, &status, &reply),
        KETEN_OK);
    srv_stop(t);
    assert_null(json_object_get(body, "signal")); /* borrowed, given back as it was */
    assert_int_equal(status, 202);
    assert_non_null(strstr(t->s.req, "POST /v1/messages?wait=2000 HTTP/1.1\r\n"));
    assert_non_null(strstr(t->s.req, "\r\nContent-Type: application/json; charset=utf-8\r\n"));
    assert_null(strstr(t->s.req, "Expect:")); /* no 100-continue round */
    json_t *sent = req_body(&t->s);
    json_t *want
        = json_pack("{s:s, s:[s, s], s:{s:s, s:s, s:s}}", "kind", "signal", "to", "role:police",
            "tax", "signal", "type", "woonfraude", "purpose", "handhaving", "summary", "x");
    assert_true(json_equal(sent, want));
    json_decref(want);
    json_decref(sent);
    json_decref(body);
    json_decref(reply);
}

/* A text that is not a JSON object never leaves: the error is the node's. */
static void test_signal_not_json(void **state)
{
    ctx *t = *state;
    srv_start(t, "500 Internal Server Error", NULL, "");
    static const char *const bad[] = {
        "{\"type\":\"woonfraude\",", /* truncated */
        "{\"type\":\"a\",\"type\":\"b\"}", /* a duplicate field */
        "[\"type\"]", /* not an object */
        "{\"type\":\"woonfraude\"} trailing",
    };
    static const char *const says[] = { "line 1", "duplicate field", "must be an object", "end" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *body = json_object();
        long status = 0;
        json_t *reply = NULL;
        keten_err e = keten_apiclient_call_signal(t->home, "POST", "/v1/messages", NULL, body,
            bad[i], strlen(bad[i]), 5000, &status, &reply);
        assert_int_equal(e, KETEN_ERR_JSON);
        assert_non_null(strstr(keten_err_detail(), says[i]));
        assert_null(reply);
        assert_int_equal(json_object_size(body), 0);
        json_decref(body);
    }
    /* The same request with a valid signal reaches the server (the twin). */
    json_t *body = json_object();
    long status = 0;
    json_t *reply = NULL;
    const char ok[] = "{\"type\":\"woonfraude\"}";
    assert_int_equal(keten_apiclient_call_signal(t->home, "POST", "/v1/messages", NULL, body, ok,
                         strlen(ok), 5000, &status, &reply),
        KETEN_OK);
    srv_stop(t);
    assert_true(t->s.got);
    assert_int_equal(status, 500);
    assert_null(reply); /* no body: check() says what the status says */
    assert_int_equal(keten_apiclient_check(status, reply), 1);
    json_decref(body);
}

static void test_problem_exit_codes(void **state)
{
    (void)state;
    static const struct {
        long status;
        const char *json;
        int rc;
    } cases[] = {
        { 409, "{\"detail\":\"message X was already acknowledged at T\",\"exit\":1}", 1 },
        { 400, "{\"detail\":\"MSG_ID must be 32 hex characters\",\"exit\":2}", 2 },
        { 422, "{\"detail\":\"revoked\",\"exit\":3}", 3 },
        { 400, "{\"title\":\"Bad Request\"}", 1 }, /* no exit: a failure */
        { 500, "{\"detail\":\"x\",\"exit\":0}", 1 }, /* a problem never exits 0 */
        { 500, "{\"detail\":\"x\",\"exit\":300}", 1 },
        { 500, "{\"detail\":\"x\",\"exit\":4}", 1 },
        { 500, "{\"detail\":\"x\",\"exit\":-2}", 1 },
        { 201, "{\"msg_id\":\"x\"}", 0 },
        { 204, NULL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = cases[i].json != NULL ? json_loads(cases[i].json, 0, NULL) : NULL;
        assert_int_equal(keten_apiclient_check(cases[i].status, j), cases[i].rc);
        json_decref(j);
    }
}

static void test_answer_not_json(void **state)
{
    ctx *t = *state;
    srv_start(t, "200 OK", "text/html", "<html>");
    long status = 0;
    json_t *reply = NULL;
    assert_int_equal(
        keten_apiclient_call(t->home, "GET", "/v1/node", NULL, NULL, 5000, &status, &reply),
        KETEN_ERR_MALFORMED);
    srv_stop(t);
    assert_null(reply);
    assert_non_null(strstr(keten_err_detail(), "text/html"));
    /* JSON type, broken JSON. */
    srv_start(t, "200 OK", "application/json", "{\"a\":1,");
    assert_int_equal(
        keten_apiclient_call(t->home, "GET", "/v1/node", NULL, NULL, 5000, &status, &reply),
        KETEN_ERR_MALFORMED);
    srv_stop(t);
    assert_null(reply);
}

static void test_no_answer_in_time(void **state)
{
    ctx *t = *state;
    srv_start(t, NULL, NULL, NULL);
    long status = 0;
    json_t *reply = NULL;
    assert_int_equal(
        keten_apiclient_call(t->home, "GET", "/v1/node", NULL, NULL, 1000, &status, &reply),
        KETEN_ERR_IO);
    assert_non_null(strstr(keten_err_detail(), "did not answer within 1 s"));
    srv_stop(t);
    assert_null(reply);
}

static void test_nobody_listening(void **state)
{
    ctx *t = *state;
    long status = 0;
    json_t *reply = NULL;
    /* The lock is held, but there is no socket. */
    assert_int_equal(
        keten_apiclient_call(t->home, "GET", "/v1/node", NULL, NULL, 1000, &status, &reply),
        KETEN_ERR_IO);
    assert_non_null(strstr(keten_err_detail(), "cannot connect to"));
    assert_non_null(strstr(keten_err_detail(), "does not answer on its socket (still starting"));
    assert_null(strstr(keten_err_detail(), "port 80"));
    assert_non_null(strstr(keten_err_detail(), "(No such file or directory)"));
    /* No lock: no daemon, and how to start it, before anything is tried. */
    char other[sizeof t->home + 8];
    snprintf(other, sizeof other, "%s/none", t->home);
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(
        keten_apiclient_call(other, "GET", "/v1/node", NULL, NULL, 1000, &status, &reply),
        KETEN_ERR_NOT_FOUND);
    assert_non_null(strstr(keten_err_detail(), "is not running"));
    assert_non_null(strstr(keten_err_detail(), "keten-node run --home"));
    assert_non_null(strstr(keten_err_detail(), "systemctl start keten-node"));
    /* ... also for a signal that is not JSON: the daemon is named first. */
    json_t *body = json_object();
    assert_int_equal(keten_apiclient_call_signal(
                         other, "POST", "/v1/messages", NULL, body, "{", 1, 1000, &status, &reply),
        KETEN_ERR_NOT_FOUND);
    json_decref(body);
}

/* http_proxy and friends name a proxy that does not exist: the request still
 * goes to the socket, and only there. */
static void test_proxy_ignored(void **state)
{
    ctx *t = *state;
    srv_start(t, "200 OK", "application/json", "{\"node\":\"alpha\"}");
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("HTTP_PROXY", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    long status = 0;
    json_t *reply = NULL;
    keten_err e
        = keten_apiclient_call(t->home, "GET", "/v1/ping", NULL, NULL, 5000, &status, &reply);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("ALL_PROXY");
    srv_stop(t);
    assert_int_equal(e, KETEN_OK);
    assert_int_equal(status, 200);
    assert_non_null(strstr(t->s.req, "GET /v1/ping HTTP/1.1\r\n")); /* not an absolute URL */
    json_decref(reply);
}

static void test_query_add(void **state)
{
    (void)state;
    char q[32] = "";
    assert_int_equal(keten_apiclient_query_add(q, sizeof q, "since", "1767225600000"), KETEN_OK);
    assert_string_equal(q, "since=1767225600000");
    assert_int_equal(keten_apiclient_query_add(q, sizeof q, "k", "role:x"), KETEN_OK);
    assert_string_equal(q, "since=1767225600000&k=role%3Ax");
    /* One that does not fit leaves the query as it was. */
    assert_int_equal(keten_apiclient_query_add(q, sizeof q, "kind", "signal"), KETEN_ERR_TOO_LARGE);
    assert_string_equal(q, "since=1767225600000&k=role%3Ax");
    char r[12] = "";
    assert_int_equal(keten_apiclient_query_add(r, sizeof r, "a", "\xc3\xa9\n"), KETEN_OK);
    assert_string_equal(r, "a=%C3%A9%0A");
}

static void test_msg_id(void **state)
{
    (void)state;
    char id[KETEN_APICLIENT_MSG_ID_HEX];
    assert_true(keten_apiclient_msg_id("0123456789abcdef0123456789abcdef", id));
    assert_string_equal(id, "0123456789abcdef0123456789abcdef");
    assert_true(keten_apiclient_msg_id("0123456789ABCDEF0123456789ABCDEF", id));
    assert_string_equal(id, "0123456789abcdef0123456789abcdef");
    assert_false(keten_apiclient_msg_id("0123456789abcdef0123456789abcde", id));
    assert_false(keten_apiclient_msg_id("0123456789abcdef0123456789abcdef0", id));
    assert_false(keten_apiclient_msg_id("0123456789abcdef0123456789abcdeg", id));
    assert_false(keten_apiclient_msg_id("../../v1/tokens/0123456789abcdef", id));
    assert_false(keten_apiclient_msg_id("", id));
}

/* The node's words for any client, in the command line's. */
/* --idempotency-key: the key goes as the header Idempotency-Key (and the
 * answer's "repeated" is taken); a key that could break the header (a CR LF
 * and another header, a space) is refused before anything is sent. Twin:
 * without a key no such header. */
static void test_post_signal_key(void **state)
{
    ctx *t = *state;
    const char text[] = "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\",\"summary\":\"x\"}";
    json_t *body = json_pack("{s:s}", "kind", "feedback");
    assert_non_null(body);
    srv_start(t, "201 Created", "application/json",
        "{\"msg_id\":\"0123456789abcdef0123456789abcdef\",\"state\":\"accepted\","
        "\"leaf_index\":7,\"repeated\":true}");
    assert_int_equal(keten_apiclient_post_signal(t->home, "/v1/inbox/00/reply", body, text,
                         strlen(text), "zaak-2026:1", false, 5, true),
        KETEN_EXIT_OK);
    srv_stop(t);
    assert_true(t->s.got);
    assert_non_null(strstr(t->s.req, "\r\nIdempotency-Key: zaak-2026:1\r\n"));
    assert_null(json_object_get(body, "signal")); /* borrowed, given back as it was */

    static const char *const bad[] = { "a\r\nX-Other: 1", "a b", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        srv_start(t, "202 Accepted", "application/json",
            "{\"msg_id\":\"0123456789abcdef0123456789abcdef\",\"state\":\"pending\"}");
        assert_int_not_equal(keten_apiclient_post_signal(t->home, "/v1/inbox/00/reply", body, text,
                                 strlen(text), bad[i], false, 5, false),
            KETEN_EXIT_OK);
        srv_stop(t);
        assert_false(t->s.got); /* nothing sent */
    }
    keten_err_clear();

    srv_start(t, "202 Accepted", "application/json",
        "{\"msg_id\":\"0123456789abcdef0123456789abcdef\",\"state\":\"pending\"}");
    assert_int_equal(keten_apiclient_post_signal(t->home, "/v1/inbox/00/reply", body, text,
                         strlen(text), NULL, false, 5, false),
        KETEN_EXIT_OK);
    srv_stop(t);
    assert_true(t->s.got);
    assert_null(strcasestr(t->s.req, "Idempotency-Key"));
    json_decref(body);
}

static void test_cli_text(void **state)
{
    (void)state;
    char out[KETEN_APICLIENT_TEXT_MAX];
    keten_apiclient_cli_text("invalid value: message X is a signal, not a query: a reply answers a "
                             "received query only (to tell its sender what was done with it, "
                             "send \"kind\": \"feedback\")",
        out, sizeof out);
    assert_string_equal(out,
        "invalid value: message X is a signal, not a query: a reply answers a received query only "
        "(to tell its sender what was done with it: keten-node reply --kind feedback)");
    keten_apiclient_cli_text("not found: no message X in this node's inbox (for a message this "
                             "node sent: GET /v1/messages/X)",
        out, sizeof out);
    assert_string_equal(out,
        "not found: no message X in this node's inbox (for a message this node sent, use "
        "status X)");
    /* Anything else as it is; a short buffer cuts, always terminated. */
    keten_apiclient_cli_text("send \"kind\": \"x\" as it is", out, sizeof out);
    assert_string_equal(out, "send \"kind\": \"x\" as it is");
    char small[8];
    keten_apiclient_cli_text("(answer a query with \"kind\": \"reply\")", small, sizeof small);
    assert_string_equal(small, "(answer");
    keten_apiclient_cli_text("abcdefghijk", small, sizeof small);
    assert_string_equal(small, "abcdefg");
}

static void test_wipe_json(void **state)
{
    (void)state;
    json_t *j = json_pack("{s:s, s:[s, {s:s}], s:i}", "summary", "geheim", "subjects", "adres",
        "value", "Hoofdstraat 1", "n", 5);
    const char *a = json_string_value(json_object_get(j, "summary"));
    json_t *sub = json_array_get(json_object_get(j, "subjects"), 1);
    const char *b = json_string_value(json_object_get(sub, "value"));
    keten_apiclient_wipe_json(j);
    static const char zero[16];
    assert_memory_equal(a, zero, strlen("geheim"));
    assert_memory_equal(b, zero, strlen("Hoofdstraat 1"));
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 5);
    json_decref(j);
    keten_apiclient_wipe_json(NULL);
}

/* ---- the listing loop of inbox and sent ----------------------------------- */

static void list_header(void)
{
    printf("HEADER\n");
}

/* One line per item; counts those with "open": true. */
static bool list_item(const json_t *item, void *arg)
{
    (*(size_t *)arg)++;
    printf("item %s\n", json_string_value(json_object_get(item, "msg_id")));
    return json_is_true(json_object_get(item, "open"));
}

/* What keten_apiclient_list_print() printed on standard output; its exit
 * code in *rc. */
static char *list_printed(
    const json_t *reply, bool as_json, size_t *calls, size_t *counted, int *rc)
{
    char path[] = "/tmp/keten-apiclient-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    *rc = keten_apiclient_list_print(reply, as_json, list_header, list_item, calls, counted);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    char *out = calloc(1, 4096);
    assert_non_null(out);
    assert_true(lseek(fd, 0, SEEK_SET) == 0);
    assert_true(read(fd, out, 4095) >= 0);
    close(fd);
    unlink(path);
    return out;
}

/* The loop both listings share: a header only before a non-empty text
 * list, one line per item from the command's printer (and how many it
 * counted), or each item as one compact JSON line in the daemon's field
 * order; nothing else (the summary is the command's). */
static void test_list_print(void **state)
{
    (void)state;
    json_t *reply = json_loads("{\"messages\":[{\"msg_id\":\"b\",\"open\":true,\"z\":1},"
                               "{\"msg_id\":\"a\",\"open\":false}],\"more\":0}",
        JSON_PRESERVE_ORDER, NULL);
    assert_non_null(reply);
    size_t calls = 0, counted = 99;
    int rc = -1;
    char *out = list_printed(reply, false, &calls, &counted, &rc);
    assert_int_equal(rc, KETEN_EXIT_OK);
    assert_string_equal(out, "HEADER\nitem b\nitem a\n");
    assert_int_equal(calls, 2);
    assert_int_equal(counted, 1);
    free(out);
    calls = 0;
    out = list_printed(reply, true, &calls, &counted, &rc);
    assert_int_equal(rc, KETEN_EXIT_OK);
    assert_string_equal(
        out, "{\"msg_id\":\"b\",\"open\":true,\"z\":1}\n{\"msg_id\":\"a\",\"open\":false}\n");
    assert_int_equal(calls, 0);
    assert_int_equal(counted, 0);
    free(out);
    json_decref(reply);
    /* An empty list: no header, no line. */
    reply = json_loads("{\"messages\":[]}", 0, NULL);
    assert_non_null(reply);
    out = list_printed(reply, false, &calls, &counted, &rc);
    assert_int_equal(rc, KETEN_EXIT_OK);
    assert_string_equal(out, "");
    assert_int_equal(counted, 0);
    free(out);
    json_decref(reply);
}

/* A listing's answer must hold a "messages" array: one without is refused
 * (exit 1, saying which answer); twin: the same answer with an array is
 * taken. A problem keeps its own exit code. */
static void test_list_get(void **state)
{
    ctx *t = *state;
    json_t *reply = NULL;
    srv_start(t, "200 OK", "application/json", "{\"messages\":{\"msg_id\":\"a\"},\"more\":0}");
    assert_int_equal(
        keten_apiclient_list_get(t->home, "/v1/sent", "since=5", 5000, &reply), KETEN_EXIT_FAILURE);
    srv_stop(t);
    assert_non_null(strstr(keten_err_detail(), "the daemon's sent answer has no \"messages\""));
    assert_non_null(strstr(t->s.req, "GET /v1/sent?since=5 HTTP/1.1\r\n"));
    json_decref(reply);
    reply = NULL;
    keten_err_clear();
    srv_start(t, "200 OK", "application/json", "{\"messages\":[{\"msg_id\":\"a\"}],\"more\":0}");
    assert_int_equal(
        keten_apiclient_list_get(t->home, "/v1/sent", "since=5", 5000, &reply), KETEN_EXIT_OK);
    srv_stop(t);
    assert_int_equal(json_array_size(json_object_get(reply, "messages")), 1);
    json_decref(reply);
    reply = NULL;
    srv_start(t, "400 Bad Request", "application/problem+json",
        "{\"status\":400,\"detail\":\"since is not a time\",\"exit\":2}");
    assert_int_equal(
        keten_apiclient_list_get(t->home, "/v1/inbox", NULL, 5000, &reply), KETEN_EXIT_USAGE);
    srv_stop(t);
    json_decref(reply);
}

int main(void)
{
    keten_cli_init("test_node_apiclient");
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_with_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_signal_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_not_json, setup, teardown),
        cmocka_unit_test(test_problem_exit_codes),
        cmocka_unit_test_setup_teardown(test_answer_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_answer_in_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nobody_listening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_ignored, setup, teardown),
        cmocka_unit_test(test_query_add),
        cmocka_unit_test(test_msg_id),
        cmocka_unit_test_setup_teardown(test_post_signal_key, setup, teardown),
        cmocka_unit_test(test_cli_text),
        cmocka_unit_test(test_wipe_json),
        cmocka_unit_test(test_list_print),
        cmocka_unit_test_setup_teardown(test_list_get, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
