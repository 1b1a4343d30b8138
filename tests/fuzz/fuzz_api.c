/*
 * fuzz_api.c - requests to the node's API operations (client/api.h) as the
 * HTTP server hands them over: the input is one request,
 *   METHOD PATH[?QUERY]\n [HEADER\n...] CONTENT-TYPE\n BODY
 * (no line after the first: no body and no Content-Type), routed by
 * keten_api_handle() inside a group-commit batch as the daemon does.
 * HEADER lines, before the Content-Type, are
 *   Idempotency-Key: VALUE    the header (given twice: both counted, the
 *                             first taken, as the HTTP server does)
 *   Caller: WHO               who sends it (the HTTP server's identify):
 *                             local (the default: the node's operator on the
 *                             Unix socket, every scope, the token and alarm
 *                             routes too), tcp-read (a token with scope read
 *                             only), tcp-all (a token with every scope),
 *                             person (a person a proxy names, every scope), or
 *                             none (no identity an Idempotency-Key can
 *                             belong to)
 * The node holds one alarm (number 1) that is not acknowledged.
 * The node is gemeente-diemen of the test network (fuzz_common.h),
 * directory version 1, set up once as tests/unit/fixture_node.c does it,
 * with a real store in a temporary directory (on /dev/shm when there is
 * one), made again empty before each input, with its API opened again (no
 * wait of one input answers another). The link is never connected: what the
 * node would send to the broker is held and dropped. The wall clock this
 * process sees is moved back to FUZZ_T_OPEN, as in fuzz_node_frame.c, so that
 * times in requests mean the same in every run of the corpus.
 *
 * Invariants:
 *   1. at most one answer per request;
 *   2. an answer has a status the API uses, a JSON object body (none for
 *      204, a token revoked), is a problem+json (type urn:keten:problem:*, a
 *      detail, its status, an exit of 1 to 3) exactly when its status is 400
 *      or more, and names Allow exactly when it is 405;
 *   3. while a batch holds answers none is given at once, and after the
 *      batch every request is answered except one with a positive ?wait;
 *   4. a JSON body that is not an object, on a route that takes a body, is
 *      400;
 *   5. a send that was answered 201 or 202 names a msg_id of 32 hex digits
 *      and the node then knows that message: GET /v1/messages/ID is 200;
 *   6. a token made (201) is ktn_ and 43 characters, and GET /v1/tokens
 *      then lists it without that secret;
 *   7. only the node's operator (local) acknowledges the alarm: after any
 *      other caller's request it is still not acknowledged, and a local
 *      answer of 200 leaves it acknowledged; no caller but local gets an
 *      answer of 2xx from a token route;
 *   8. a send with an Idempotency-Key answered 201 or 202, sent again by
 *      the same caller with the same key and body, is answered for the same
 *      msg_id with "repeated": true, and nothing new is stored (the sent
 *      table holds as many messages as before); with one byte more in the
 *      body it is 409 and nothing new is stored either.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "alarm.h"
#include "api.h"
#include "fuzz_common.h"
#include "log.h"
#include "node.h"
#include "store.h"
#include "util.h"

/* ---- the wall clock, moved back to the corpus's time --------------------- */

int clock_gettime(clockid_t id, struct timespec *ts);
int clock_gettime(clockid_t id, struct timespec *ts)
{
    return fuzz_clock_gettime(id, ts, FUZZ_T_OPEN);
}

/* ---- the node ------------------------------------------------------------ */

static struct {
    bool ready;
    fuzz_files f;
    char home[PATH_MAX]; /* this input's home: "" between inputs */
    unsigned long n; /* inputs so far: this input's home is home-N */
    keten_node node;
} S;

static void node_close(void)
{
    keten_node *node = &S.node;
    keten_api_destroy(&node->api);
    fuzz_node_close(node);
    if (S.home[0] != '\0') {
        fuzz_remove_tree(S.home);
        S.home[0] = '\0';
    }
}

static void cleanup(void)
{
    node_close();
    fuzz_node_teardown(&S.node);
    if (S.f.dir[0] != '\0') {
        fuzz_remove_tree(S.f.dir);
    }
}

static void setup(void)
{
    keten_log_threshold = 0; /* quiet: refusals are expected by the thousand */
    fuzz_files_make("api", &S.f);
    atexit(cleanup);
    fuzz_node_setup(&S.node, &S.f);
    S.node.opts.home = NULL; /* node_open() */
    S.ready = true;
}

static void node_open(void)
{
    keten_node *node = &S.node;
    /* A new home for every input: libzmq removes a closed ipc socket's file
     * in its I/O thread, some time after zmq_close() returned, and would
     * remove a later socket of the same name. */
    int n = snprintf(S.home, sizeof S.home, "%s/home-%lu", S.f.dir, ++S.n);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof S.home && mkdir(S.home, 0700) == 0);
    node->opts.home = S.home;
    fuzz_node_open(node);
    FUZZ_MUST(keten_api_open(node, &node->api));
    keten_alarm_raise(node, "bad-proof", "an alarm for the acknowledgement route");
    keten_err_clear();
}

/* ---- one request --------------------------------------------------------- */

/* The input: "METHOD PATH[?QUERY]\nCONTENT-TYPE\nBODY" (no second line: no
 * body and no content type; an empty second line: a body without one). */
typedef struct input {
    char method[16];
    char path[512];
    char query[512];
    keten_api_param params[KETEN_API_QUERY_MAX];
    size_t n_params;
    char ctype[128];
    bool has_ctype;
    const uint8_t *body;
    size_t body_len;
    char idem[256]; /* Idempotency-Key: VALUE */
    bool has_idem, idem_twice;
    char who[16]; /* Caller: WHO ("" is local) */
} input;

#define IDEM_PREFIX "Idempotency-Key: "
#define CALLER_PREFIX "Caller: "

static bool line(const uint8_t **p, const uint8_t *end, char *out, size_t size)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl != NULL ? (size_t)(nl - *p) : (size_t)(end - *p);
    if (n >= size || memchr(*p, '\0', n) != NULL) {
        return false;
    }
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = nl != NULL ? nl + 1 : end;
    return true;
}

static bool parse_input(const uint8_t *data, size_t size, input *in)
{
    memset(in, 0, sizeof *in);
    const uint8_t *p = data, *end = data + size;
    char first[1040];
    if (!line(&p, end, first, sizeof first)) {
        return false;
    }
    char *sp = strchr(first, ' ');
    if (sp == NULL || (size_t)(sp - first) >= sizeof in->method) {
        return false;
    }
    memcpy(in->method, first, (size_t)(sp - first));
    char *q = strchr(sp + 1, '?');
    if (q != NULL) {
        *q = '\0';
        if (strlen(q + 1) >= sizeof in->query) {
            return false;
        }
        memcpy(in->query, q + 1, strlen(q + 1) + 1);
    }
    if (strlen(sp + 1) >= sizeof in->path) {
        return false;
    }
    memcpy(in->path, sp + 1, strlen(sp + 1) + 1);
    for (char *save = NULL, *kv = strtok_r(in->query, "&", &save);
         kv != NULL && in->n_params < KETEN_API_QUERY_MAX; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq != NULL) {
            *eq = '\0';
        }
        in->params[in->n_params].name = kv;
        in->params[in->n_params].value = eq != NULL ? eq + 1 : "";
        in->n_params++;
    }
    if (p < end || (size > 0 && data[size - 1] == '\n')) {
        if (!line(&p, end, in->ctype, sizeof in->ctype)) {
            return false;
        }
        /* header lines before the Content-Type */
        for (;;) {
            const size_t ni = strlen(IDEM_PREFIX), nc = strlen(CALLER_PREFIX);
            if (strncmp(in->ctype, IDEM_PREFIX, ni) == 0) {
                if (in->has_idem) {
                    in->idem_twice = true; /* the first is taken */
                } else if (strlen(in->ctype + ni) < sizeof in->idem) {
                    memcpy(in->idem, in->ctype + ni, strlen(in->ctype + ni) + 1);
                    in->has_idem = true;
                } else {
                    return false;
                }
            } else if (strncmp(in->ctype, CALLER_PREFIX, nc) == 0) {
                if (strlen(in->ctype + nc) >= sizeof in->who) {
                    return false;
                }
                memcpy(in->who, in->ctype + nc, strlen(in->ctype + nc) + 1);
            } else {
                break;
            }
            if (p >= end) { /* headers only: no body, no Content-Type */
                in->ctype[0] = '\0';
                return true;
            }
            if (!line(&p, end, in->ctype, sizeof in->ctype)) {
                return false;
            }
        }
        in->has_ctype = in->ctype[0] != '\0';
        in->body = p < end ? p : NULL;
        in->body_len = (size_t)(end - p);
    }
    return true;
}

/* The answers handed over later, by ticket. */
#define LATER_MAX 4
static struct {
    uint64_t ticket[LATER_MAX];
    keten_api_response resp[LATER_MAX];
    size_t n;
} L;

static void on_answer(void *ctx, uint64_t ticket, keten_api_response *resp)
{
    (void)ctx;
    FUZZ_CHECK(ticket != 0 && L.n < LATER_MAX); /* 1: one answer per request */
    for (size_t i = 0; i < L.n; i++) {
        FUZZ_CHECK(L.ticket[i] != ticket);
    }
    L.ticket[L.n] = ticket;
    L.resp[L.n++] = *resp;
    memset(resp, 0, sizeof *resp);
}

/* Invariant 2: the shape of an answer; its JSON body. */
static json_t *check_answer(const keten_api_response *resp)
{
    static const unsigned statuses[]
        = { 200, 201, 202, 204, 400, 403, 404, 405, 409, 413, 415, 422, 500, 503 };
    bool known = false;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        known = known || resp->status == statuses[i];
    }
    FUZZ_CHECK(known);
    if (resp->status == 204) { /* a token revoked: no body */
        FUZZ_CHECK(resp->body == NULL && resp->body_len == 0 && resp->allow[0] == '\0');
        return json_object();
    }
    FUZZ_CHECK(resp->body != NULL && resp->body_len == strlen(resp->body));
    json_t *j = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(json_is_object(j));
    bool problem = strcmp(resp->content_type, "application/problem+json") == 0;
    FUZZ_CHECK(problem == (resp->status >= 400));
    if (problem) {
        const char *type = json_string_value(json_object_get(j, "type"));
        const char *detail = json_string_value(json_object_get(j, "detail"));
        json_t *ex = json_object_get(j, "exit");
        FUZZ_CHECK(type != NULL && strncmp(type, "urn:keten:problem:", 18) == 0);
        FUZZ_CHECK(detail != NULL && detail[0] != '\0');
        FUZZ_CHECK(json_integer_value(json_object_get(j, "status")) == (json_int_t)resp->status);
        FUZZ_CHECK(
            json_is_integer(ex) && json_integer_value(ex) >= 1 && json_integer_value(ex) <= 3);
    } else {
        FUZZ_CHECK(strcmp(resp->content_type, "application/json; charset=utf-8") == 0);
    }
    FUZZ_CHECK((resp->allow[0] != '\0') == (resp->status == 405));
    return j;
}

static uint64_t next_ticket;

/* Who sends the request (input line "Caller: WHO"), as http.c's identify
 * and keten_idem_caller() would name them. */
typedef struct caller_kind {
    const char *name;
    const char *actor;
    unsigned scopes;
    bool local;
    const char *peer;
    const char *caller; /* NULL: no identity a key can belong to */
} caller_kind;

static const caller_kind callers[] = {
    { "local", "local", KETEN_SCOPE_ALL, true, "uid=0", "local:uid=0" },
    { "tcp-read", "token:reader", KETEN_SCOPE_READ, false, "127.0.0.1", "token:00000000000000aa" },
    { "tcp-all", "token:app", KETEN_SCOPE_ALL, false, "127.0.0.1", "token:00000000000000bb" },
    { "person", "person:anna", KETEN_SCOPE_ALL, false, "127.0.0.1", "person:anna" },
    { "none", "anonymous", KETEN_SCOPE_ALL, false, "127.0.0.1", NULL },
};

static const caller_kind *caller_of(const input *in)
{
    for (size_t i = 0; i < sizeof callers / sizeof callers[0]; i++) {
        if (strcmp(in->who, callers[i].name) == 0) {
            return &callers[i];
        }
    }
    return &callers[0]; /* "" or unknown: the operator */
}

/* Entries of one table of the node's store. */
static size_t table_count(keten_store_db db)
{
    MDB_txn *txn = NULL;
    size_t n = 0;
    FUZZ_MUST(keten_store_begin(S.node.store, false, &txn));
    FUZZ_MUST(keten_store_count(S.node.store, txn, db, &n));
    keten_store_abort(&txn);
    return n;
}

/* Invariant 7: the alarm is acknowledged exactly when acked is. */
static void alarm_acknowledged_is(bool acked)
{
    size_t open = 0, acknowledged = 0;
    FUZZ_MUST(keten_alarm_count(&S.node, &open, &acknowledged));
    FUZZ_CHECK(open + acknowledged == 1 && acknowledged == (acked ? 1u : 0u));
}

/* Hand one request to the router inside a group-commit batch, as the daemon
 * does; the answer (NULL: it waits on) */
static json_t *request(const input *in, keten_api_response *out)
{
    keten_node *node = &S.node;
    const caller_kind *ck = caller_of(in);
    keten_api_request req = {
        .method = in->method,
        .path = in->path,
        .query = in->params,
        .n_query = in->n_params,
        .content_type = in->has_ctype ? in->ctype : NULL,
        .body = in->body,
        .body_len = in->body_len,
        .actor = ck->actor,
        .scopes = ck->scopes,
        .local = ck->local, /* the operator on the Unix socket: the token routes too */
        .peer = ck->peer,
        .ticket = ++next_ticket,
        .idempotency_key = in->has_idem ? in->idem : NULL,
        .idempotency_key_twice = in->idem_twice,
        .caller = ck->caller,
    };
    fuzz_node_batch_begin(node);
    keten_api_response resp;
    /* 3: while holding, nothing is answered at once */
    FUZZ_CHECK(keten_api_handle(node, &req, &resp) == KETEN_API_LATER);
    fuzz_node_batch_end(node);
    for (size_t i = 0; i < L.n; i++) {
        if (L.ticket[i] == req.ticket) {
            *out = L.resp[i];
            L.resp[i] = L.resp[--L.n];
            L.ticket[i] = L.ticket[L.n];
            return check_answer(out);
        }
    }
    FUZZ_CHECK(L.n == 0);
    keten_api_cancel(node->api, req.ticket);
    return NULL;
}

/* May the request wait for its answer (api.h)? A positive ?wait. */
static bool may_wait(const input *in)
{
    for (size_t i = 0; i < in->n_params; i++) {
        if (strcmp(in->params[i].name, "wait") == 0 && strcmp(in->params[i].value, "0") != 0) {
            return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S.ready) {
        setup();
    }
    input in;
    if (!parse_input(data, size, &in)) {
        return 0;
    }
    node_open();
    keten_api_set_answer(S.node.api, on_answer, NULL);
    keten_api_response resp = { 0 };
    json_t *r = request(&in, &resp);
    /* 3: answered at once unless it may wait */
    FUZZ_CHECK(r != NULL || may_wait(&in));
    /* 4: a JSON body that is not an object, on a route that takes one */
    bool posts_body = strcmp(in.method, "POST") == 0
        && (strcmp(in.path, "/v1/messages") == 0 || strcmp(in.path, "/v1/messages/validate") == 0);
    json_t *req = in.body != NULL ? json_loadb((const char *)in.body, in.body_len, 0, NULL) : NULL;
    if (r != NULL && posts_body && in.has_ctype && strcmp(in.ctype, "application/json") == 0
        && !json_is_object(req)) {
        FUZZ_CHECK(resp.status == 400);
    }
    /* 5: a message sent is known */
    bool token_made = strcmp(in.method, "POST") == 0 && strcmp(in.path, "/v1/tokens") == 0;
    if (r != NULL && token_made && resp.status == 201) {
        /* 6: a token made is shown in its shape, and the list has no secret */
        const char *tok = json_string_value(json_object_get(r, "token"));
        FUZZ_CHECK(tok != NULL && strlen(tok) == KETEN_AUTH_TOKEN_CHARS
            && strncmp(tok, KETEN_AUTH_TOKEN_PREFIX, 4) == 0);
        input li;
        memset(&li, 0, sizeof li);
        memcpy(li.method, "GET", 4);
        memcpy(li.path, "/v1/tokens", 11);
        keten_api_response lresp = { 0 };
        json_t *l = request(&li, &lresp);
        FUZZ_CHECK(l != NULL && lresp.status == 200 && strstr(lresp.body, tok + 4) == NULL);
        json_decref(l);
        keten_api_response_clear(&lresp);
    }
    if (r != NULL && !token_made && (resp.status == 201 || resp.status == 202)) {
        const char *id = json_string_value(json_object_get(r, "msg_id"));
        uint8_t raw[KETEN_MSG_ID_BYTES];
        FUZZ_CHECK(id != NULL && strlen(id) == 2 * KETEN_MSG_ID_BYTES
            && keten_unhex(id, raw, sizeof raw) == KETEN_OK);
        input st;
        memset(&st, 0, sizeof st);
        memcpy(st.method, "GET", 4);
        int n = snprintf(st.path, sizeof st.path, "/v1/messages/%s", id);
        FUZZ_CHECK(n > 0 && (size_t)n < sizeof st.path);
        keten_api_response sresp = { 0 };
        json_t *s = request(&st, &sresp);
        FUZZ_CHECK(s != NULL && sresp.status == 200);
        json_decref(s);
        keten_api_response_clear(&sresp);
    }
    /* 7: the alarm, and the token routes, are the operator's */
    const caller_kind *ck = caller_of(&in);
    bool acked = ck->local && r != NULL && resp.status == 200 && strcmp(in.method, "POST") == 0
        && strncmp(in.path, "/v1/alarms/", 11) == 0;
    alarm_acknowledged_is(acked);
    if (!ck->local && r != NULL && strncmp(in.path, "/v1/tokens", 10) == 0) {
        FUZZ_CHECK(resp.status >= 300);
    }
    /* 8: a repeated send with the same key goes out once */
    if (r != NULL && in.has_idem && !token_made && strcmp(in.method, "POST") == 0
        && (resp.status == 201 || resp.status == 202)) {
        const char *id = json_string_value(json_object_get(r, "msg_id"));
        size_t sent = table_count(KETEN_DB_SENT);
        keten_api_response again = { 0 };
        json_t *a = request(&in, &again);
        FUZZ_CHECK(a != NULL && (again.status == 201 || again.status == 202));
        FUZZ_CHECK(json_is_true(json_object_get(a, "repeated")));
        const char *id2 = json_string_value(json_object_get(a, "msg_id"));
        FUZZ_CHECK(id != NULL && id2 != NULL && strcmp(id, id2) == 0);
        FUZZ_CHECK(table_count(KETEN_DB_SENT) == sent);
        json_decref(a);
        keten_api_response_clear(&again);
        /* one byte more: another body */
        input other = in;
        uint8_t *b = malloc(in.body_len + 1);
        FUZZ_CHECK(b != NULL);
        if (in.body_len > 0) {
            memcpy(b, in.body, in.body_len);
        }
        b[in.body_len] = ' ';
        other.body = b;
        other.body_len = in.body_len + 1;
        keten_api_response diff = { 0 };
        json_t *d = request(&other, &diff);
        FUZZ_CHECK(d != NULL && diff.status == 409);
        FUZZ_CHECK(table_count(KETEN_DB_SENT) == sent);
        json_decref(d);
        keten_api_response_clear(&diff);
        free(b);
    }
    json_decref(req);
    json_decref(r);
    keten_api_response_clear(&resp);
    for (size_t i = 0; i < L.n; i++) {
        keten_api_response_clear(&L.resp[i]);
    }
    L.n = 0;
    node_close();
    keten_err_clear();
    return 0;
}
