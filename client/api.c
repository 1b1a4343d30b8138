/* api - see api.h. */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alarm.h"
#include "directory.h"
#include "idem.h"
#include "inbox.h"
#include "log.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "policy.h"
#include "sha256.h"
#include "signal_json.h"
#include "status.h"
#include "util.h"
#include "witness.h"

#define CT_JSON "application/json; charset=utf-8"
#define CT_PROBLEM "application/problem+json"
#define PROBLEM_PREFIX "urn:keten:problem:"
#define DETAIL_MAX 1200
#define ERRORS_MAX 16 /* fields named in one problem's errors[] */

typedef enum waiter_kind { WAIT_SEND, WAIT_INBOX } waiter_kind;

/* The inbox filters of GET /v1/inbox. */
typedef struct inbox_filter {
    bool all; /* unhandled=false (the default): handled ones too */
    char kind[16]; /* "" any */
    char category[72]; /* "" any */
    uint64_t since; /* received at or after (ms); 0 any */
} inbox_filter;

typedef struct waiter {
    uint64_t ticket;
    waiter_kind kind;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    bool is_reply; /* action for the log */
    bool repeated; /* a repeated send (Idempotency-Key): its answer says so */
    inbox_filter filter;
    uint64_t deadline; /* mono ms */
} waiter;

typedef struct held_answer {
    uint64_t ticket;
    keten_api_response resp;
} held_answer;

struct keten_api {
    waiter *waiters;
    size_t n_waiters;
    bool holding;
    held_answer *held;
    size_t n_held, cap_held;
    keten_api_answer_fn answer;
    void *answer_ctx;
};

/* ---- responses ------------------------------------------------------------ */

void keten_api_response_clear(keten_api_response *resp)
{
    if (resp->body != NULL) {
        sodium_memzero(resp->body, resp->body_len);
        free(resp->body);
    }
    resp->body = NULL;
    resp->body_len = 0;
}

/* Wipe every string in a JSON value (a request may hold signal content). */
static void wipe_json(json_t *v)
{
    if (json_is_string(v)) {
        sodium_memzero((void *)(uintptr_t)json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            wipe_json(x);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            wipe_json(x);
        }
    }
}

static void set_body(keten_api_response *resp, unsigned status, const char *ct, json_t *body)
{
    resp->status = status;
    resp->content_type = ct;
    resp->body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (resp->body == NULL) {
        static const char oom[] = "{\"type\":\"" PROBLEM_PREFIX "internal\",\"title\":\"out of "
                                  "memory\",\"status\":500,\"detail\":\"the node ran out of "
                                  "memory answering this request; try again\",\"exit\":1}";
        resp->status = 500;
        resp->content_type = CT_PROBLEM;
        resp->body = strdup(oom);
    }
    resp->body_len = resp->body != NULL ? strlen(resp->body) : 0;
}

static void json_answer(keten_api_response *resp, unsigned status, json_t *body)
{
    set_body(resp, status, CT_JSON, body);
}

/* A problem with extra members (msg_id, handled_at, errors[], ...). */
static void problem_with(keten_api_response *resp, unsigned status, const char *slug,
    const char *title, int exit_code, const char *detail_in, json_t *extra)
{
    char type[64], detail[DETAIL_MAX];
    snprintf(type, sizeof type, PROBLEM_PREFIX "%s", slug);
    keten_text_clean(detail_in, detail, sizeof detail);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:i}", "type", type, "title", title, "status",
        (int)status, "detail", detail, "exit", exit_code);
    if (p != NULL && extra != NULL && json_object_update(p, extra) != 0) {
        json_decref(p);
        p = NULL;
    }
    json_decref(extra);
    set_body(resp, status, CT_PROBLEM, p);
}

void keten_api_problem(keten_api_response *resp, unsigned status, const char *slug,
    const char *title, int exit_code, const char *detail)
{
    problem_with(resp, status, slug, title, exit_code, detail, NULL);
}

/* 400 naming the fields: errors[] of {field, problem, allowed}. */
static void field_problem(keten_api_response *resp, const char *field_in, const char *problem,
    const char *allowed, const char *detail)
{
    char field[128];
    keten_text_clean(field_in, field, sizeof field);
    json_t *e = json_pack(
        "{s:[{s:s, s:s, s:s}]}", "errors", "field", field, "problem", problem, "allowed", allowed);
    problem_with(resp, 400, "invalid-request", "Invalid request", 2, detail, e);
}

static void usage_problem(keten_api_response *resp, const char *detail)
{
    keten_api_problem(resp, 400, "invalid-request", "Invalid request", 2, detail);
}

/* The answer to a failed operation: status by the error's kind. */
static void err_problem_with(keten_api_response *resp, keten_err e, json_t *extra)
{
    char text[DETAIL_MAX];
    const char *detail = keten_err_detail();
    if (detail[0] != '\0') {
        snprintf(text, sizeof text, "%s: %s", keten_err_str(e), detail);
    } else {
        snprintf(text, sizeof text, "%s", keten_err_str(e));
    }
    unsigned status = 500;
    const char *slug = "internal", *title = "The node failed";
    switch (e) {
    case KETEN_ERR_NOT_FOUND:
        status = 404, slug = "not-found", title = "Not found";
        break;
    case KETEN_ERR_EXISTS:
        status = 409, slug = "conflict", title = "Already done";
        break;
    case KETEN_ERR_POLICY:
        status = 422, slug = "policy", title = "Refused by the sharing policy";
        break;
    case KETEN_ERR_STORE_FULL:
        status = 503, slug = "store-full", title = "The node's store is full";
        break;
    case KETEN_ERR_JSON:
    case KETEN_ERR_MALFORMED:
    case KETEN_ERR_INVALID:
    case KETEN_ERR_INVALID_SIGNAL:
    case KETEN_ERR_BAD_NAME:
    case KETEN_ERR_UNREGISTERED:
    case KETEN_ERR_UNKNOWN_NODE:
    case KETEN_ERR_TOO_LARGE:
    case KETEN_ERR_NOT_CANONICAL:
        status = 400, slug = "invalid-request", title = "Invalid request";
        break;
    case KETEN_ERR_REVOKED:
    case KETEN_ERR_EXPIRED:
    case KETEN_ERR_NOT_YET_VALID:
        status = 503, slug = "cannot-send", title = "The node cannot send now";
        break;
    default:
        break;
    }
    problem_with(resp, status, slug, title, keten_err_exit_code(e), text, extra);
}

static void err_problem(keten_api_response *resp, keten_err e)
{
    err_problem_with(resp, e, NULL);
}

#define HOLD_FAILED_DETAIL                                                                         \
    "the node could not commit this change to its store (see its log); nothing of it was kept: "   \
    "try again"

/* ---- waiting and holding ------------------------------------------------- */

keten_err keten_api_open(keten_node *node, keten_api **out)
{
    (void)node;
    *out = NULL;
    keten_api *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    self->waiters = calloc(KETEN_API_WAITERS_MAX, sizeof *self->waiters);
    if (self->waiters == NULL) {
        free(self);
        return KETEN_ERR_NOMEM;
    }
    *out = self;
    return KETEN_OK;
}

void keten_api_destroy(keten_api **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_api *self = *self_p;
    free(self->waiters);
    for (size_t i = 0; i < self->n_held; i++) {
        keten_api_response_clear(&self->held[i].resp);
    }
    free(self->held);
    free(self);
    *self_p = NULL;
}

void keten_api_set_answer(keten_api *self, keten_api_answer_fn fn, void *ctx)
{
    self->answer = fn;
    self->answer_ctx = ctx;
}

static void deliver(keten_api *api, uint64_t ticket, keten_api_response *resp)
{
    if (api->answer != NULL) {
        api->answer(api->answer_ctx, ticket, resp);
    } else {
        keten_api_response_clear(resp);
    }
}

/* Keep an answer while holding; false when it cannot be kept (memory). */
static bool hold_answer(keten_api *api, uint64_t ticket, keten_api_response *resp)
{
    if (api->n_held == api->cap_held) {
        size_t cap = api->cap_held == 0 ? 16 : 2 * api->cap_held;
        held_answer *h = realloc(api->held, cap * sizeof *h);
        if (h == NULL) {
            return false;
        }
        api->held = h;
        api->cap_held = cap;
    }
    held_answer *h = &api->held[api->n_held++];
    h->ticket = ticket;
    h->resp = *resp;
    return true;
}

static void hold_failed(keten_api_response *resp)
{
    char action[KETEN_API_ACTION_MAX], object[KETEN_API_OBJECT_MAX];
    memcpy(action, resp->action, sizeof action);
    memcpy(object, resp->object, sizeof object);
    keten_api_response_clear(resp);
    keten_api_problem(resp, 500, "store-failed", "The node's store failed", 1, HOLD_FAILED_DETAIL);
    memcpy(resp->action, action, sizeof action);
    memcpy(resp->object, object, sizeof object);
}

/* An answer that is ready: now to the transport, or kept while holding. */
static keten_api_result finish(keten_api *api, uint64_t ticket, keten_api_response *resp, bool now)
{
    if (api->holding) {
        if (hold_answer(api, ticket, resp)) {
            memset(resp, 0, sizeof *resp); /* the kept copy owns the body */
            return KETEN_API_LATER;
        }
        hold_failed(resp); /* cannot keep it: it is not durable yet */
    }
    if (now) {
        return KETEN_API_ANSWERED;
    }
    deliver(api, ticket, resp);
    return KETEN_API_LATER;
}

void keten_api_hold(keten_api *self)
{
    self->holding = true;
}

void keten_api_release(keten_api *self, bool committed)
{
    self->holding = false;
    size_t n = self->n_held;
    self->n_held = 0;
    for (size_t i = 0; i < n; i++) {
        held_answer *h = &self->held[i];
        if (!committed) {
            hold_failed(&h->resp);
        }
        deliver(self, h->ticket, &h->resp);
    }
    if (!committed && n > 0) {
        KETEN_LOG(KETEN_LOG_ERR, "store commit failed; API requests answered with an error",
            "replies=%zu", n);
    } else if (n > 0) {
        KETEN_LOG(KETEN_LOG_DEBUG, "API answers held for a group commit sent", "replies=%zu", n);
    }
}

void keten_api_cancel(keten_api *self, uint64_t ticket)
{
    for (size_t i = 0; i < self->n_waiters;) {
        if (self->waiters[i].ticket == ticket) {
            self->waiters[i] = self->waiters[--self->n_waiters];
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < self->n_held; i++) {
        if (self->held[i].ticket == ticket) {
            keten_api_response_clear(&self->held[i].resp);
            self->held[i].ticket = 0; /* delivered as nothing: the answer function ignores 0 */
        }
    }
}

static waiter *add_waiter(keten_api *api, uint64_t ticket, waiter_kind kind, uint64_t ms)
{
    if (api->n_waiters >= KETEN_API_WAITERS_MAX) {
        return NULL;
    }
    waiter *w = &api->waiters[api->n_waiters++];
    memset(w, 0, sizeof *w);
    w->ticket = ticket;
    w->kind = kind;
    w->deadline = keten_mono_ms() + ms;
    return w;
}

/* ---- request parsing ----------------------------------------------------- */

typedef struct op_ctx {
    keten_node *node;
    const keten_api_request *req;
    keten_api_response *resp;
    uint8_t msg_id[KETEN_MSG_ID_BYTES]; /* the path's {msg_id} */
    uint64_t alarm_id; /* the path's {alarm_id} */
    char hex[KETEN_MSG_ID_HEX_BYTES];
    bool has_id;
    json_t *body; /* the parsed request body (POST) */
} op_ctx;

static const char *query_get(const keten_api_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_query; i++) {
        if (strcmp(req->query[i].name, name) == 0) {
            return req->query[i].value;
        }
    }
    return NULL;
}

/* Refuse query parameters other than the allowed ones (NULL-terminated),
 * and a parameter given twice. */
static bool query_check(op_ctx *c, const char *const *allowed, const char *allowed_text)
{
    const keten_api_request *req = c->req;
    for (size_t i = 0; i < req->n_query; i++) {
        bool ok = false;
        for (size_t j = 0; allowed[j] != NULL && !ok; j++) {
            ok = strcmp(req->query[i].name, allowed[j]) == 0;
        }
        for (size_t j = 0; j < i && ok; j++) {
            ok = strcmp(req->query[i].name, req->query[j].name) != 0;
        }
        if (!ok) {
            char field[80], detail[200];
            snprintf(field, sizeof field, "?%.64s", req->query[i].name);
            snprintf(detail, sizeof detail,
                "query parameter %.64s is unknown here or given twice; allowed: %s",
                req->query[i].name, allowed_text[0] != '\0' ? allowed_text : "none");
            field_problem(c->resp, field, "unknown or repeated query parameter",
                allowed_text[0] != '\0' ? allowed_text : "none", detail);
            return false;
        }
    }
    return true;
}

/* A decimal count in [0, max]. */
static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 20) {
        return false;
    }
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* ?wait=MS: false (answered 400) when malformed; 0 when absent. */
static bool query_wait(op_ctx *c, uint64_t *ms)
{
    *ms = 0;
    const char *w = query_get(c->req, "wait");
    if (w != NULL && !parse_uint(w, KETEN_API_WAIT_MAX_MS, ms)) {
        field_problem(c->resp, "?wait", "not a number of milliseconds in range", "0..86400000",
            "wait is the time in ms to wait for the answer, 0..86400000");
        return false;
    }
    return true;
}

/* ?since=ISO 8601 UTC or ms since 1970. */
static bool query_since(op_ctx *c, uint64_t *ms)
{
    *ms = 0;
    const char *s = query_get(c->req, "since");
    if (s != NULL && (s[0] == '\0' || keten_time_parse(s, ms) != KETEN_OK)) {
        keten_err_clear();
        field_problem(c->resp, "?since", "not a time",
            "ISO 8601 UTC (2026-12-06T10:00:00Z) or ms since 1970",
            "since is a time: ISO 8601 UTC like 2026-12-06T10:00:00Z, or ms since 1970");
        return false;
    }
    return true;
}

/* Parse the body as one JSON object (strict: duplicate keys refused), with
 * only the allowed members (NULL-terminated). */
static bool body_object(op_ctx *c, const char *const *allowed, const char *allowed_text)
{
    const keten_api_request *req = c->req;
    if (req->body_len == 0) {
        usage_problem(c->resp, "this request needs a JSON object body");
        return false;
    }
    json_error_t jerr;
    c->body = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (c->body == NULL || !json_is_object(c->body)) {
        char detail[DETAIL_MAX];
        if (c->body == NULL) {
            snprintf(detail, sizeof detail,
                "the body is not valid JSON: %s (line %d, column %d); send one JSON object",
                jerr.text, jerr.line, jerr.column);
        } else {
            snprintf(detail, sizeof detail, "the body is JSON but not an object; send one object");
        }
        keten_api_problem(c->resp, 400, "malformed-json", "Malformed JSON", 2, detail);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v)
    {
        bool ok = false;
        for (size_t j = 0; allowed[j] != NULL && !ok; j++) {
            ok = strcmp(k, allowed[j]) == 0;
        }
        if (!ok) {
            char field[80], detail[300];
            snprintf(field, sizeof field, "/%.64s", k);
            snprintf(
                detail, sizeof detail, "unknown field \"%.64s\"; allowed: %s", k, allowed_text);
            field_problem(c->resp, field, "unknown field", allowed_text, detail);
            return false;
        }
    }
    return true;
}

/* A member that must be a string when present. */
static bool body_string(op_ctx *c, const char *key, bool required, const char **out)
{
    json_t *v = json_object_get(c->body, key);
    *out = json_string_value(v);
    if ((v == NULL && !required) || json_is_string(v)) {
        return true;
    }
    char field[40], detail[120];
    snprintf(field, sizeof field, "/%s", key);
    snprintf(detail, sizeof detail, "%s %s a string", key, v == NULL ? "is required:" : "must be");
    field_problem(c->resp, field, v == NULL ? "missing" : "not a string", "a string", detail);
    return false;
}

/* ---- operations ---------------------------------------------------------- */

static keten_api_result op_ping(op_ctx *c)
{
    json_answer(c->resp, 200, json_pack("{s:s}", "node", c->node->me->id));
    return KETEN_API_ANSWERED;
}

static keten_api_result op_node(op_ctx *c)
{
    json_t *st = NULL;
    keten_err e = keten_status_node(c->node, &st);
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "status", st));
    }
    return KETEN_API_ANSWERED;
}

/* Partners this node may send kind/category to: for some registered
 * purpose the policy allows it. */
static json_t *allowed_for(keten_node *node, Keten__Kind kind, const char *category)
{
    const Keten__Directory *doc = keten_directory_doc(node->dir);
    json_t *ids = json_array();
    for (size_t i = 0; ids != NULL && i < doc->n_nodes; i++) {
        const Keten__NodeCert *to = doc->nodes[i];
        if (strcmp(to->role, "broker") == 0 || strcmp(to->id, node->me->id) == 0) {
            continue;
        }
        bool ok = false;
        for (size_t p = 0; p < doc->n_purposes && !ok; p++) {
            ok = keten_policy_evaluate(doc, node->me->id, node->me->role, to->id, to->role, kind,
                category, doc->purposes[p])
                     .allowed;
        }
        if (ok && json_array_append_new(ids, json_string(to->id)) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    }
    return ids;
}

static keten_api_result op_capabilities(op_ctx *c)
{
    keten_node *node = c->node;
    const Keten__Directory *doc = keten_directory_doc(node->dir);
    json_t *cats = json_array(), *purps = json_array(), *partners = json_array();
    json_t *sig = json_object(), *qry = json_object();
    bool ok = cats != NULL && purps != NULL && partners != NULL && sig != NULL && qry != NULL;
    for (size_t i = 0; ok && i < doc->n_categories; i++) {
        const char *cat = doc->categories[i];
        json_t *s = allowed_for(node, KETEN__KIND__KIND_SIGNAL, cat);
        json_t *q = allowed_for(node, KETEN__KIND__KIND_QUERY, cat);
        ok = json_array_append_new(cats, json_string(cat)) == 0 && s != NULL && q != NULL
            && json_object_set_new(sig, cat, s) == 0 && json_object_set_new(qry, cat, q) == 0;
    }
    for (size_t i = 0; ok && i < doc->n_purposes; i++) {
        ok = json_array_append_new(purps, json_string(doc->purposes[i])) == 0;
    }
    for (size_t i = 0; ok && i < doc->n_nodes; i++) {
        const Keten__NodeCert *n = doc->nodes[i];
        if (strcmp(n->role, "broker") == 0 || strcmp(n->id, node->me->id) == 0) {
            continue;
        }
        ok = json_array_append_new(partners,
                 json_pack("{s:s, s:s, s:s}", "id", n->id, "org", n->org, "role", n->role))
            == 0;
    }
    if (!ok) {
        json_decref(cats), json_decref(purps), json_decref(partners);
        json_decref(sig), json_decref(qry);
        err_problem(c->resp, KETEN_ERR_NOMEM);
        return KETEN_API_ANSWERED;
    }
    json_answer(c->resp, 200,
        json_pack("{s:s, s:o, s:o, s:o, s:{s:o, s:o}}", "node", node->me->id, "categories", cats,
            "purposes", purps, "partners", partners, "allowed", "signal", sig, "query", qry));
    return KETEN_API_ANSWERED;
}

/* The send's answer now: NULL-status (0) while it is still pending. With
 * timed_out, a pending message answers 202 pending. */
static void send_outcome(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    bool timed_out, keten_api_response *resp)
{
    resp->status = 0;
    Keten__SentRecord *rec = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    keten_err e = keten_outbox_record(node, msg_id, &rec);
    if (e != KETEN_OK) {
        err_problem(resp, e);
        return;
    }
    const char *reason = keten_outbox_reason_name(rec->reason);
    const char *detail = rec->detail != NULL ? rec->detail : "";
    char text[DETAIL_MAX];
    switch (rec->state) {
    case KETEN__SENT_STATE__SENT_STATE_ACCEPTED:
        json_answer(resp, 201,
            json_pack("{s:s, s:s, s:I}", "msg_id", hex, "state", "accepted", "leaf_index",
                (json_int_t)rec->leaf_index));
        break;
    case KETEN__SENT_STATE__SENT_STATE_REFUSED:
        if (rec->reason == KETEN__REASON__REASON_POLICY) {
            snprintf(text, sizeof text, "the broker refused message %s: %s (rule %lld): %s", hex,
                reason, (long long)rec->rule, detail);
        } else {
            snprintf(
                text, sizeof text, "the broker refused message %s: %s: %s", hex, reason, detail);
        }
        /* state: the message's state as status, GET /v1/sent and the sent
         * event name it ("refused" is a recipient's refusal) */
        problem_with(resp, 422, "refused", "Refused by the broker", 1, text,
            json_pack("{s:s, s:s, s:s, s:I}", "msg_id", hex, "state",
                keten_nodestore_sent_state_name(rec->state), "reason", reason, "rule",
                (json_int_t)rec->rule));
        break;
    case KETEN__SENT_STATE__SENT_STATE_EXPIRED:
        snprintf(text, sizeof text, "message %s expired before the broker acknowledged it", hex);
        problem_with(resp, 422, "expired", "Expired", 1, text,
            json_pack("{s:s, s:s, s:s}", "msg_id", hex, "state", "expired", "reason", "expired"));
        break;
    default: /* queued */
        if (node->refused != KETEN__REASON__REASON_NONE) {
            char why[160];
            keten_alarm_refusal_text(node->refused, node->refused_version, why, sizeof why);
            snprintf(text, sizeof text,
                "the broker refuses this node: %s; message %s stays in the outbox, unsent", why,
                hex);
            problem_with(resp, 503, "node-refused", "The broker refuses this node", 1, text,
                json_pack("{s:s, s:s}", "msg_id", hex, "state", "pending"));
        } else if (timed_out) {
            json_answer(resp, 202, json_pack("{s:s, s:s}", "msg_id", hex, "state", "pending"));
        }
        break;
    }
    keten_nodestore_sent_free(&rec);
}

static json_t *problem_json(const keten_signal_json_problem *p)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "path", p->path, "code", p->code, "problem",
        p->problem, "allowed", p->allowed, "error", keten_err_str(p->err));
}

static void validate_answer(keten_api_response *resp, const keten_signal_json_problems *pr)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < pr->n; i++) {
        if (json_array_append_new(list, problem_json(&pr->items[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_answer(resp, 200,
        list == NULL ? NULL
                     : json_pack("{s:b, s:o, s:I}", "valid", pr->n == 0 && pr->more == 0,
                         "problems", list, "more", (json_int_t)pr->more));
}

/* The message a reply or feedback answers: its sender, when kind may
 * answer it (a reply a query, once; feedback a signal). */
static keten_err answer_target(keten_node *node, const uint8_t orig[static KETEN_MSG_ID_BYTES],
    Keten__Kind kind, char *from, size_t size)
{
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(orig, KETEN_MSG_ID_BYTES, hex);
    Keten__ReceivedRecord *rec = NULL;
    Keten__Header *h = NULL;
    keten_err e = keten_inbox_record(node, orig, &rec);
    if (e == KETEN_ERR_NOT_FOUND) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "no message %s in this node's inbox; a reply answers a received query, feedback a "
            "received signal",
            hex);
        goto out;
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_received_header(orig, rec, &h);
    }
    if (e != KETEN_OK) {
        goto out;
    }
    if (kind == KETEN__KIND__KIND_REPLY && h->kind != KETEN__KIND__KIND_QUERY) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "message %s is a %s, not a query: a reply answers a received query only%s", hex,
            keten_policy_kind_name(h->kind),
            h->kind == KETEN__KIND__KIND_SIGNAL
                ? " (to tell its sender what was done with it, send \"kind\": \"feedback\")"
                : "");
        goto out;
    }
    if (kind == KETEN__KIND__KIND_REPLY && rec->reply_id.len != 0) {
        char prev[KETEN_MSG_ID_HEX_BYTES] = "";
        if (rec->reply_id.len == KETEN_MSG_ID_BYTES) {
            keten_hex(rec->reply_id.data, KETEN_MSG_ID_BYTES, prev);
        }
        e = keten_err_set(KETEN_ERR_EXISTS,
            "this node already replied to query %s (reply %s); a query gets one reply from each "
            "recipient",
            hex, prev);
        goto out;
    }
    if (kind == KETEN__KIND__KIND_FEEDBACK && h->kind != KETEN__KIND__KIND_SIGNAL) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "message %s is a %s, not a signal: feedback answers a received signal only%s", hex,
            keten_policy_kind_name(h->kind),
            h->kind == KETEN__KIND__KIND_QUERY ? " (answer a query with \"kind\": \"reply\")" : "");
        goto out;
    }
    if (h->sender == NULL || snprintf(from, size, "%s", h->sender) >= (int)size) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE, "a sender id longer than %zu bytes", size - 1);
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_nodestore_received_free(&rec);
    return e;
}

#define TO_MAX 4096 /* the recipients, comma-joined */

/* A problem of a request's own fields: with dry (a validation), one more
 * problem in its list (path in the dry run's form, the detail as its text);
 * else the 400 answer naming field (a JSON pointer). */
static void request_problem(op_ctx *c, keten_signal_json_problems *dry, keten_err err,
    const char *code, const char *field, const char *problem, const char *allowed,
    const char *detail)
{
    if (dry != NULL) {
        char path[KETEN_SIGNAL_PATH_MAX];
        size_t n = 0;
        /* "/to/3" -> "to[3]", "/kind" -> "kind" */
        for (const char *f = field[0] == '/' ? field + 1 : field; *f != '\0' && n + 2 < sizeof path;
             f++) {
            if (*f == '/') {
                path[n++] = '[';
                while (f[1] >= '0' && f[1] <= '9' && n + 2 < sizeof path) {
                    path[n++] = *++f;
                }
                path[n++] = ']';
            } else {
                path[n++] = *f;
            }
        }
        path[n] = '\0';
        keten_signal_json_problems_add(dry, err, code, path, allowed, detail);
        return;
    }
    field_problem(c->resp, field, problem, allowed, detail);
}

/* "to": a non-empty array of party strings, joined with commas. With dry
 * every problem is listed (false when there was one), else the first is
 * answered (400). */
static bool parse_to(op_ctx *c, keten_signal_json_problems *dry, char *to, size_t size)
{
    json_t *v = json_object_get(c->body, "to");
    static const char allowed[] = "an array of node ids or \"role:NAME\"";
    if (!json_is_array(v) || json_array_size(v) == 0) {
        request_problem(c, dry, v == NULL || json_is_array(v) ? KETEN_ERR_INVALID : KETEN_ERR_JSON,
            v == NULL || json_is_array(v) ? KETEN_PROBLEM_MISSING : KETEN_PROBLEM_MALFORMED, "/to",
            v == NULL ? "missing" : "not a non-empty array", allowed,
            "\"to\" names the recipients: a non-empty array of node ids or \"role:NAME\"");
        return false;
    }
    size_t len = 0, i;
    json_t *x;
    bool ok = true;
    to[0] = '\0';
    json_array_foreach(v, i, x)
    {
        const char *s = json_string_value(x);
        char field[32];
        snprintf(field, sizeof field, "/to/%zu", i);
        if (s == NULL || s[0] == '\0' || strchr(s, ',') != NULL
            || json_string_length(x) != strlen(s)) {
            request_problem(c, dry, KETEN_ERR_INVALID, KETEN_PROBLEM_INVALID, field, "not a party",
                allowed, "each recipient is a node id or \"role:NAME\" (one per array item)");
            if (dry == NULL) {
                return false;
            }
            ok = false;
            continue;
        }
        size_t n = strlen(s);
        if (len + n + 2 > size) {
            request_problem(c, dry, KETEN_ERR_TOO_LARGE, KETEN_PROBLEM_TOO_LARGE, field,
                "too many recipients", allowed, "the recipients are too many");
            return false;
        }
        if (len > 0) {
            to[len++] = ',';
        }
        memcpy(to + len, s, n + 1);
        len += n;
    }
    return ok;
}

/* "signal": a JSON object, re-serialized for the strict parser. */
static bool signal_text(op_ctx *c, char **text)
{
    json_t *v = json_object_get(c->body, "signal");
    if (!json_is_object(v)) {
        field_problem(c->resp, "/signal", v == NULL ? "missing" : "not an object",
            "a signal object (docs/signals.md)",
            "\"signal\" is the signal as a JSON object (docs/signals.md)");
        return false;
    }
    *text = json_dumps(v, JSON_COMPACT);
    if (*text == NULL) {
        err_problem(c->resp, KETEN_ERR_NOMEM);
        return false;
    }
    return true;
}

static void free_text(char **text)
{
    if (*text != NULL) {
        sodium_memzero(*text, strlen(*text));
        free(*text);
        *text = NULL;
    }
}

/* ---- Idempotency-Key (idem.h) -------------------------------------------- */

/* Add "repeated": true to an answer's JSON object (a repeated send's). */
static void mark_repeated(keten_api_response *resp)
{
    if (resp->body == NULL) {
        return;
    }
    unsigned status = resp->status;
    const char *ct = resp->content_type;
    json_t *b = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (b == NULL || !json_is_object(b) || json_object_set_new(b, "repeated", json_true()) != 0) {
        json_decref(b);
        return;
    }
    keten_api_response_clear(resp);
    set_body(resp, status, ct, b);
}

/* The header Idempotency-Key, when given, is one key (idem.h); false:
 * answered 400 naming the header. */
static bool idem_header_ok(op_ctx *c)
{
    const keten_api_request *req = c->req;
    char why[200];
    if (req->idempotency_key_twice) {
        snprintf(why, sizeof why,
            "the header " KETEN_IDEM_HEADER " was given more than once; send it once");
    } else if (req->idempotency_key == NULL
        || keten_idem_key_check(req->idempotency_key, why, sizeof why)) {
        return true;
    }
    field_problem(c->resp, KETEN_IDEM_HEADER, "not an idempotency key",
        "1 to 64 characters [A-Za-z0-9._:-]", why);
    return false;
}

/* A send or an answer with an Idempotency-Key: true when answered here (a
 * repeat of a stored send or answer, a key reused for another request, a
 * damaged record; *res says whether now or later); false when this is the
 * first request with the key: idem is filled for the send to store with its
 * message. orig: the message an answer answers (part of the request), NULL
 * for a send. Comes before every check of what an answer answers, so that
 * the repeat of a reply is a repeat, not a second reply (409). */
static bool idem_repeat(
    op_ctx *c, const uint8_t *orig, uint64_t wait, keten_idem_entry *idem, keten_api_result *res)
{
    const keten_api_request *req = c->req;
    keten_node *node = c->node;
    *res = KETEN_API_ANSWERED;
    if (req->caller == NULL) {
        keten_api_problem(c->resp, 400, "invalid-request", "Invalid request", 2,
            "this caller has no identity an " KETEN_IDEM_HEADER " can belong to; send without it");
        return true;
    }
    keten_idem_request_hash(orig, req->body, req->body_len, idem->request_hash);
    const uint64_t now = keten_now_ms();
    uint8_t msg_id[KETEN_MSG_ID_BYTES], hash[KETEN_HASH_BYTES];
    bool found = false;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_idem_find(
            node->store, txn, req->caller, req->idempotency_key, now, &found, msg_id, hash);
    }
    keten_store_abort(&txn);
    if (e == KETEN_ERR_MALFORMED) {
        char text[DETAIL_MAX];
        snprintf(text, sizeof text,
            "%s; this send is not made, so that it cannot go out twice (send it with a new key "
            "once the store is restored)",
            keten_err_detail());
        keten_api_problem(c->resp, 500, "store-damaged", "The node's store is damaged", 1, text);
        return true;
    }
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
        return true;
    }
    if (!found) {
        idem->caller = req->caller;
        idem->key = req->idempotency_key;
        idem->created_at = now;
        return false;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    snprintf(c->resp->object, sizeof c->resp->object, "message:%s", hex);
    if (sodium_memcmp(hash, idem->request_hash, KETEN_HASH_BYTES) != 0) {
        char text[DETAIL_MAX];
        snprintf(text, sizeof text,
            "the " KETEN_IDEM_HEADER " %s was used by this caller for message %s with another "
            "%s; a repeat sends the same body byte for byte%s, a new message needs a new key",
            req->idempotency_key, hex,
            orig != NULL ? "request (another body, another message answered, or a send)" : "body",
            orig != NULL ? " to the same message" : "");
        problem_with(c->resp, 409, "idempotency-key-reused",
            "Idempotency key used for another request", 2, text, json_pack("{s:s}", "msg_id", hex));
        return true;
    }
    KETEN_LOG(
        KETEN_LOG_INFO, "a repeated send is answered with the message it stored", "msg_id=%s", hex);
    if (wait > 0) {
        send_outcome(node, msg_id, false, c->resp);
        if (c->resp->status != 0) {
            mark_repeated(c->resp);
            return true;
        }
        waiter *w = add_waiter(node->api, req->ticket, WAIT_SEND, wait);
        if (w != NULL) {
            memcpy(w->msg_id, msg_id, KETEN_MSG_ID_BYTES);
            w->repeated = true;
            w->is_reply = orig != NULL;
            *res = KETEN_API_LATER;
            return true;
        }
    }
    send_outcome(node, msg_id, true, c->resp);
    mark_repeated(c->resp);
    return true;
}

/* Send a new message or an answer. orig: the message answered (NULL for a
 * send). */
static keten_api_result send_common(op_ctx *c, bool is_reply, const uint8_t *orig)
{
    keten_node *node = c->node;
    char *text = NULL;
    char to[TO_MAX], orig_from[256];
    keten_outbox_send_req sr = { 0 };
    const char *kind = NULL;
    keten_api_result r = KETEN_API_ANSWERED;
    uint64_t wait = 0;
    if (!query_wait(c, &wait)) {
        return r;
    }
    keten_idem_entry idem = { 0 };
    if (c->req->idempotency_key != NULL) {
        if (idem_repeat(c, is_reply ? orig : NULL, wait, &idem, &r)) {
            return r;
        }
        sr.idem = &idem;
    }
    if (!body_string(c, "kind", false, &kind)) {
        return r;
    }
    if (is_reply) {
        if (kind == NULL || strcmp(kind, "reply") == 0) {
            sr.kind = KETEN__KIND__KIND_REPLY;
        } else if (strcmp(kind, "feedback") == 0) {
            sr.kind = KETEN__KIND__KIND_FEEDBACK;
        } else {
            field_problem(c->resp, "/kind", "not an answer's kind", "reply, feedback",
                "kind must be reply (to a query) or feedback (to a signal)");
            return r;
        }
    } else {
        if (kind == NULL || keten_policy_kind_parse(kind, &sr.kind) != KETEN_OK
            || sr.kind == KETEN__KIND__KIND_REPLY || sr.kind == KETEN__KIND__KIND_FEEDBACK) {
            keten_err_clear();
            field_problem(c->resp, "/kind", kind == NULL ? "missing" : "not a kind to send",
                "signal, query",
                kind != NULL && (strcmp(kind, "feedback") == 0 || strcmp(kind, "reply") == 0)
                    ? "a reply or feedback answers a received message: POST "
                      "/v1/inbox/MSG_ID/reply"
                    : "kind must be signal or query");
            return r;
        }
    }
    if (!is_reply) {
        if (!parse_to(c, NULL, to, sizeof to)) {
            return r;
        }
        sr.to = to;
    }
    if (!signal_text(c, &text)) {
        return r;
    }
    sr.json = text;
    sr.json_len = strlen(text);
    if (is_reply) {
        keten_err e = answer_target(node, orig, sr.kind, orig_from, sizeof orig_from);
        if (e != KETEN_OK) {
            err_problem(c->resp, e);
            goto out;
        }
        sr.to = orig_from;
        sr.in_reply_to = orig;
    }
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint32_t rule = 0;
    sr.refused_rule = &rule;
    keten_err e = keten_outbox_send(node, &sr, msg_id);
    if (e == KETEN_ERR_POLICY) { /* the rule as a field, as in the broker's refusal */
        err_problem_with(c->resp, e, json_pack("{s:I}", "rule", (json_int_t)rule));
        goto out;
    }
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    snprintf(c->resp->object, sizeof c->resp->object, "message:%s", hex);
    if (wait > 0) {
        send_outcome(node, msg_id, false, c->resp);
        if (c->resp->status != 0) {
            goto out;
        }
        waiter *w = add_waiter(node->api, c->req->ticket, WAIT_SEND, wait);
        if (w != NULL) {
            memcpy(w->msg_id, msg_id, KETEN_MSG_ID_BYTES);
            w->is_reply = is_reply;
            r = KETEN_API_LATER;
            goto out;
        }
    }
    json_answer(c->resp, 202, json_pack("{s:s, s:s}", "msg_id", hex, "state", "pending"));
out:
    free_text(&text);
    return r;
}

/* The problem code of a message an answer cannot answer (answer_target). */
static const char *answer_code(keten_err e)
{
    switch (e) {
    case KETEN_ERR_NOT_FOUND:
        return KETEN_PROBLEM_UNKNOWN_MESSAGE;
    case KETEN_ERR_INVALID:
        return KETEN_PROBLEM_CANNOT_ANSWER;
    case KETEN_ERR_EXISTS:
        return KETEN_PROBLEM_ALREADY_REPLIED;
    default:
        return NULL;
    }
}

/* Check a send or an answer (orig: the message answered, NULL when the
 * request's msg_id is not one) as send_common would send it, and answer
 * 200 {valid, problems, more} with every problem found: the request's own
 * fields (kind, to, signal, msg_id) among the signal's, the node's, the
 * recipients' and the policy's, as far as the fields that are right let
 * them be checked. */
static keten_api_result validate_common(op_ctx *c, bool is_reply, const uint8_t *orig)
{
    keten_node *node = c->node;
    keten_signal_json_problems problems = { 0 };
    keten_outbox_send_req sr = { .kind = KETEN__KIND__KIND_UNSPECIFIED };
    char to[TO_MAX], orig_from[256];
    char *text = NULL;

    json_t *kv = json_object_get(c->body, "kind");
    const char *kind = json_string_value(kv);
    if (kv != NULL && kind == NULL) {
        request_problem(c, &problems, KETEN_ERR_JSON, KETEN_PROBLEM_MALFORMED, "/kind",
            "not a string", is_reply ? "reply, feedback" : "signal, query",
            "kind must be a string");
    } else if (is_reply) {
        if (kind == NULL || strcmp(kind, "reply") == 0) {
            sr.kind = KETEN__KIND__KIND_REPLY;
        } else if (strcmp(kind, "feedback") == 0) {
            sr.kind = KETEN__KIND__KIND_FEEDBACK;
        } else {
            request_problem(c, &problems, KETEN_ERR_INVALID, KETEN_PROBLEM_INVALID, "/kind",
                "not an answer's kind", "reply, feedback",
                "kind must be reply (to a query) or feedback (to a signal)");
        }
    } else if (kind == NULL) {
        request_problem(c, &problems, KETEN_ERR_INVALID, KETEN_PROBLEM_MISSING, "/kind", "missing",
            "signal, query", "kind is required: signal or query");
    } else if (keten_policy_kind_parse(kind, &sr.kind) != KETEN_OK
        || sr.kind == KETEN__KIND__KIND_REPLY || sr.kind == KETEN__KIND__KIND_FEEDBACK) {
        keten_err_clear();
        sr.kind = KETEN__KIND__KIND_UNSPECIFIED;
        request_problem(c, &problems, KETEN_ERR_INVALID, KETEN_PROBLEM_INVALID, "/kind",
            "not a kind to send", "signal, query",
            strcmp(kind, "feedback") == 0 || strcmp(kind, "reply") == 0
                ? "a reply or feedback answers a received message: check it with \"for\": "
                  "\"reply\""
                : "kind must be signal or query");
    }
    if (!is_reply && parse_to(c, &problems, to, sizeof to)) {
        sr.to = to;
    }
    json_t *sv = json_object_get(c->body, "signal");
    if (!json_is_object(sv)) {
        request_problem(c, &problems, sv == NULL ? KETEN_ERR_INVALID : KETEN_ERR_JSON,
            sv == NULL ? KETEN_PROBLEM_MISSING : KETEN_PROBLEM_MALFORMED, "/signal",
            sv == NULL ? "missing" : "not an object", "a signal object (docs/signals.md)",
            "\"signal\" is the signal as a JSON object (docs/signals.md)");
    } else if ((text = json_dumps(sv, JSON_COMPACT)) == NULL) {
        err_problem(c->resp, KETEN_ERR_NOMEM);
        goto out;
    } else {
        sr.json = text;
        sr.json_len = strlen(text);
    }
    json_t *idv = json_object_get(c->body, "msg_id");
    if (is_reply && idv == NULL) {
        request_problem(c, &problems, KETEN_ERR_INVALID, KETEN_PROBLEM_MISSING, "/msg_id",
            "missing", "32 lowercase hex characters",
            "a reply's check needs msg_id: the answered message's 32 hex characters");
    } else if (is_reply && orig == NULL) {
        bool is_text = json_is_string(idv);
        request_problem(c, &problems, is_text ? KETEN_ERR_INVALID : KETEN_ERR_JSON,
            is_text ? KETEN_PROBLEM_INVALID : KETEN_PROBLEM_MALFORMED, "/msg_id",
            is_text ? "not a msg_id" : "not a string", "32 lowercase hex characters",
            "a reply's check needs msg_id: the answered message's 32 hex characters");
    } else if (is_reply && sr.kind != KETEN__KIND__KIND_UNSPECIFIED) {
        keten_err e = answer_target(node, orig, sr.kind, orig_from, sizeof orig_from);
        if (e == KETEN_OK) {
            sr.to = orig_from;
            sr.in_reply_to = orig;
        } else if (e == KETEN_ERR_NOMEM) {
            err_problem(c->resp, e);
            goto out;
        } else { /* no one to send it to: the rest is checked without recipients */
            keten_signal_json_problems_add(
                &problems, e, answer_code(e), "msg_id", NULL, keten_err_detail());
        }
    }
    keten_err e = keten_outbox_check(node, &sr, &problems);
    if (e == KETEN_ERR_NOMEM) {
        err_problem(c->resp, e);
    } else {
        keten_err_clear();
        validate_answer(c->resp, &problems);
    }
out:
    keten_signal_json_problems_clear(&problems);
    free_text(&text);
    return KETEN_API_ANSWERED;
}

static keten_api_result op_send(op_ctx *c)
{
    static const char *const fields[] = { "kind", "to", "signal", NULL };
    static const char *const q[] = { "wait", NULL };
    if (!query_check(c, q, "wait") || !idem_header_ok(c)
        || !body_object(c, fields, "kind, to, signal")) {
        return KETEN_API_ANSWERED;
    }
    return send_common(c, false, NULL);
}

static keten_api_result op_reply(op_ctx *c)
{
    static const char *const fields[] = { "kind", "signal", NULL };
    static const char *const q[] = { "wait", NULL };
    if (!query_check(c, q, "wait") || !idem_header_ok(c)
        || !body_object(c, fields, "kind, signal")) {
        return KETEN_API_ANSWERED;
    }
    return send_common(c, true, c->msg_id);
}

/* Every check of a send or a reply, nothing sent: 200 {valid, problems,
 * more}, every problem of the checked request listed (an empty "to" is one
 * of them). 400 only for a body that is no request to check: not one JSON
 * object, a field twice or one validate does not take, "for" not send or
 * reply, a field the checked request does not have (to for a reply, msg_id
 * for a send). */
static keten_api_result op_validate(op_ctx *c)
{
    static const char *const fields[] = { "for", "msg_id", "kind", "to", "signal", NULL };
    static const char *const q[] = { NULL };
    if (!query_check(c, q, "") || !body_object(c, fields, "for, msg_id, kind, to, signal")) {
        return KETEN_API_ANSWERED;
    }
    const char *what = NULL;
    if (!body_string(c, "for", true, &what)) {
        return KETEN_API_ANSWERED;
    }
    bool is_reply = strcmp(what, "reply") == 0;
    if (!is_reply && strcmp(what, "send") != 0) {
        field_problem(c->resp, "/for", "not a request to check", "send, reply",
            "\"for\" names the request checked: send or reply");
        return KETEN_API_ANSWERED;
    }
    json_t *idv = json_object_get(c->body, "msg_id");
    if ((is_reply && json_object_get(c->body, "to") != NULL) || (!is_reply && idv != NULL)) {
        field_problem(c->resp, is_reply ? "/to" : "/msg_id", "not a field of this request",
            is_reply ? "for, msg_id, kind, signal" : "for, kind, to, signal",
            is_reply ? "a reply goes to the answered message's sender: no \"to\""
                     : "a send answers no message: no \"msg_id\"");
        return KETEN_API_ANSWERED;
    }
    const char *id = json_string_value(idv);
    bool id_ok = id != NULL && strlen(id) == 2 * KETEN_MSG_ID_BYTES
        && keten_unhex(id, c->msg_id, KETEN_MSG_ID_BYTES) == KETEN_OK;
    keten_err_clear();
    return validate_common(c, is_reply, is_reply && id_ok ? c->msg_id : NULL);
}

static bool filter_match(const inbox_filter *f, json_t *m)
{
    if (f->kind[0] != '\0') {
        const char *k = json_string_value(json_object_get(m, "kind"));
        if (k == NULL || strcmp(k, f->kind) != 0) {
            return false;
        }
    }
    if (f->category[0] != '\0') { /* the signal's type is the message's category */
        const char *k = json_string_value(json_object_get(json_object_get(m, "signal"), "type"));
        if (k == NULL || strcmp(k, f->category) != 0) {
            return false;
        }
    }
    if (f->since > 0) {
        uint64_t t = 0;
        const char *s = json_string_value(json_object_get(m, "received_at"));
        if (s == NULL || keten_time_parse(s, &t) != KETEN_OK || t < f->since) {
            keten_err_clear();
            return false;
        }
    }
    return true;
}

/* The inbox list, filtered; 0 status when empty and empty_is_none. */
static void inbox_answer(
    keten_node *node, const inbox_filter *f, bool empty_is_none, keten_api_response *resp)
{
    resp->status = 0;
    json_t *list = NULL, *out = json_array();
    uint64_t last = 0;
    keten_err e = out == NULL ? KETEN_ERR_NOMEM : keten_inbox_list(node, f->all, 0, &list, &last);
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        if (e == KETEN_OK && filter_match(f, m) && json_array_append(out, m) != 0) {
            e = KETEN_ERR_NOMEM;
        }
    }
    json_decref(list);
    if (e != KETEN_OK) {
        json_decref(out);
        err_problem(resp, e);
        return;
    }
    if (empty_is_none && json_array_size(out) == 0) {
        json_decref(out);
        return;
    }
    json_answer(resp, 200, json_pack("{s:o}", "messages", out));
}

static keten_api_result op_inbox(op_ctx *c)
{
    static const char *const q[] = { "kind", "category", "unhandled", "since", "wait", NULL };
    if (!query_check(c, q, "kind, category, unhandled, since, wait")) {
        return KETEN_API_ANSWERED;
    }
    inbox_filter f = { .all = true };
    const char *kind = query_get(c->req, "kind");
    const char *cat = query_get(c->req, "category");
    const char *unh = query_get(c->req, "unhandled");
    Keten__Kind k;
    if (kind != NULL && keten_policy_kind_parse(kind, &k) != KETEN_OK) {
        keten_err_clear();
        field_problem(c->resp, "?kind", "not a kind", "signal, query, reply, feedback",
            "kind filters by message kind: signal, query, reply or feedback");
        return KETEN_API_ANSWERED;
    }
    if (kind != NULL) {
        snprintf(f.kind, sizeof f.kind, "%s", kind);
    }
    if (cat != NULL) {
        if (cat[0] == '\0' || strlen(cat) >= sizeof f.category) {
            field_problem(c->resp, "?category", "not a category",
                "a category name [a-z0-9][a-z0-9./-]{0,63}", "category filters by category name");
            return KETEN_API_ANSWERED;
        }
        snprintf(f.category, sizeof f.category, "%s", cat);
    }
    if (unh != NULL) {
        if (strcmp(unh, "true") != 0 && strcmp(unh, "false") != 0) {
            field_problem(c->resp, "?unhandled", "not a boolean", "true, false",
                "unhandled=true lists only messages not acknowledged yet");
            return KETEN_API_ANSWERED;
        }
        f.all = strcmp(unh, "false") == 0;
    }
    uint64_t wait = 0;
    if (!query_since(c, &f.since) || !query_wait(c, &wait)) {
        return KETEN_API_ANSWERED;
    }
    inbox_answer(c->node, &f, wait > 0, c->resp);
    if (c->resp->status != 0) {
        return KETEN_API_ANSWERED;
    }
    waiter *w = add_waiter(c->node->api, c->req->ticket, WAIT_INBOX, wait);
    if (w == NULL) {
        json_answer(c->resp, 200, json_pack("{s:[]}", "messages"));
        return KETEN_API_ANSWERED;
    }
    w->filter = f;
    return KETEN_API_LATER;
}

static keten_api_result op_show(op_ctx *c)
{
    json_t *m = NULL;
    keten_err e = keten_inbox_show(c->node, c->msg_id, &m);
    if (e == KETEN_ERR_NOT_FOUND) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "no message %s in this node's inbox (for a message this node sent: GET "
            "/v1/messages/%s)",
            c->hex, c->hex);
    }
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "message", m));
    }
    return KETEN_API_ANSWERED;
}

static keten_api_result op_ack(op_ctx *c)
{
    /* Acknowledging twice is refused, naming the first time: an application
     * that acknowledges a message it believes new has a bug worth seeing. */
    Keten__ReceivedRecord *rec = NULL;
    keten_err e = keten_inbox_record(c->node, c->msg_id, &rec);
    if (e == KETEN_OK && rec->handled) {
        char t[40];
        keten_time_iso(rec->handled_at, t, sizeof t);
        keten_nodestore_received_free(&rec);
        e = keten_err_set(KETEN_ERR_EXISTS, "message %s was already acknowledged at %s", c->hex, t);
        err_problem_with(c->resp, e, json_pack("{s:s, s:s}", "msg_id", c->hex, "handled_at", t));
        return KETEN_API_ANSWERED;
    }
    keten_nodestore_received_free(&rec);
    if (e == KETEN_OK) {
        e = keten_inbox_ack(c->node, c->msg_id);
    }
    if (e == KETEN_ERR_NOT_FOUND) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND, "no message %s in this node's inbox", c->hex);
    }
    if (e == KETEN_OK) {
        e = keten_inbox_record(c->node, c->msg_id, &rec);
    }
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
        return KETEN_API_ANSWERED;
    }
    char t[40];
    keten_time_iso(rec->handled_at, t, sizeof t);
    keten_nodestore_received_free(&rec);
    json_answer(c->resp, 200, json_pack("{s:s, s:s}", "msg_id", c->hex, "handled_at", t));
    return KETEN_API_ANSWERED;
}

/* One sent message for the list: its msg_id and when it was made. */
typedef struct sent_item {
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint64_t created_at;
} sent_item;

static int cmp_sent(const void *a, const void *b)
{
    const sent_item *x = a, *y = b;
    if (x->created_at != y->created_at) {
        return x->created_at < y->created_at ? -1 : 1;
    }
    return memcmp(x->id, y->id, KETEN_MSG_ID_BYTES);
}

/* The msg_ids of the sent table, in key order. */
static keten_err sent_ids(keten_node *node, sent_item **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    sent_item *v = NULL;
    size_t n = 0, cap = 0;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_SENT), &cur);
    MDB_val k, d;
    for (rc = rc != 0 ? rc : mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (k.mv_size != KETEN_MSG_ID_BYTES) {
            continue;
        }
        if (n == cap) {
            size_t nc = cap == 0 ? 64 : cap * 2;
            sent_item *nv = realloc(v, nc * sizeof *nv);
            if (nv == NULL) {
                e = keten_err_set(KETEN_ERR_NOMEM, "listing sent messages");
                break;
            }
            v = nv;
            cap = nc;
        }
        memcpy(v[n].id, k.mv_data, KETEN_MSG_ID_BYTES);
        v[n].created_at = 0;
        n++;
    }
    if (e == KETEN_OK && rc != MDB_NOTFOUND) {
        e = keten_err_set(KETEN_ERR_STORE, "reading the sent messages: %s", mdb_strerror(rc));
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        free(v);
        return e;
    }
    *out = v;
    *n_out = n;
    return KETEN_OK;
}

static keten_api_result op_sent(op_ctx *c)
{
    static const char *const q[] = { "since", NULL };
    uint64_t since = 0;
    if (!query_check(c, q, "since") || !query_since(c, &since)) {
        return KETEN_API_ANSWERED;
    }
    keten_node *node = c->node;
    sent_item *v = NULL;
    size_t n = 0, kept = 0;
    keten_err e = sent_ids(node, &v, &n);
    /* Each message's time, from its header; those before since dropped. */
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        Keten__SentRecord *rec = NULL;
        Keten__Header *h = NULL;
        e = keten_outbox_record(node, v[i].id, &rec);
        if (e == KETEN_OK) {
            e = keten_nodestore_sent_header(rec, &h);
        }
        if (e == KETEN_OK && h->created_at >= since) {
            v[kept] = v[i];
            v[kept].created_at = h->created_at;
            kept++;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&h);
        keten_nodestore_sent_free(&rec);
    }
    json_t *list = e == KETEN_OK ? json_array() : NULL;
    if (e == KETEN_OK && list == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    size_t first = 0;
    if (e == KETEN_OK) {
        if (kept > 1) {
            qsort(v, kept, sizeof *v, cmp_sent); /* v is NULL when nothing was sent */
        }
        first = kept > KETEN_API_SENT_MAX ? kept - KETEN_API_SENT_MAX : 0;
    }
    for (size_t i = first; e == KETEN_OK && i < kept; i++) {
        json_t *st = NULL;
        e = keten_status_message_record(node, v[i].id, &st); /* no node alarm counts */
        if (e == KETEN_OK && json_array_append_new(list, st) != 0) {
            e = KETEN_ERR_NOMEM;
        }
    }
    free(v);
    if (e != KETEN_OK) {
        json_decref(list);
        err_problem(c->resp, e);
    } else {
        json_answer(
            c->resp, 200, json_pack("{s:o, s:I}", "messages", list, "more", (json_int_t)first));
    }
    return KETEN_API_ANSWERED;
}

static keten_api_result op_status(op_ctx *c)
{
    json_t *st = NULL;
    keten_err e = keten_status_message(c->node, c->msg_id, &st);
    if (e == KETEN_ERR_NOT_FOUND) {
        e = keten_err_set(
            KETEN_ERR_NOT_FOUND, "this node neither sent nor received a message %s", c->hex);
    }
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "status", st));
    }
    return KETEN_API_ANSWERED;
}

static keten_api_result op_checkpoint(op_ctx *c)
{
    json_t *ev = NULL;
    keten_err e = keten_witness_evidence(c->node, &ev);
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "checkpoint", ev));
    }
    return KETEN_API_ANSWERED;
}

static keten_api_result op_checkpoints(op_ctx *c)
{
    json_t *ev = NULL;
    keten_err e = keten_witness_evidence_all(c->node, keten_now_ms(),
        KETEN_WITNESS_EVIDENCE_OLDER_MAX, KETEN_WITNESS_EVIDENCE_ALL_MAX, &ev);
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "checkpoints", ev));
    }
    return KETEN_API_ANSWERED;
}

/* ---- tokens (the node's operator only: the Unix socket) ------------------ */

static keten_api_result op_token_create(op_ctx *c)
{
    static const char *const allowed[] = { "name", "scopes", "expires_at", NULL };
    if (!body_object(c, allowed, "name, scopes, expires_at")) {
        return KETEN_API_ANSWERED;
    }
    uint64_t now = keten_now_ms();
    keten_auth_token_params tr;
    const char *field = "", *allowed_text = "";
    keten_err e = keten_auth_token_request(c->body, now, &tr, &field, &allowed_text);
    if (e != KETEN_OK) {
        field_problem(c->resp, field, "not allowed here", allowed_text, keten_err_detail());
        return KETEN_API_ANSWERED;
    }
    char *token = sodium_malloc(KETEN_AUTH_TOKEN_CHARS + 1);
    if (token == NULL) {
        err_problem(c->resp, KETEN_ERR_NOMEM);
        return KETEN_API_ANSWERED;
    }
    char id[KETEN_AUTH_TOKEN_ID_CHARS + 1];
    e = keten_auth_token_create(c->node->store, tr.name, tr.scopes, tr.expires_at, now, token, id);
    if (e != KETEN_OK) {
        sodium_free(token);
        err_problem(c->resp, e);
        return KETEN_API_ANSWERED;
    }
    json_t *out = keten_auth_token_created_json(&tr, id, token, now);
    sodium_free(token); /* wipes it */
    if (out == NULL) {
        err_problem(c->resp, KETEN_ERR_NOMEM);
        return KETEN_API_ANSWERED;
    }
    char *text = json_dumps(out, JSON_COMPACT);
    keten_auth_json_wipe_token(out);
    json_decref(out);
    if (text == NULL) {
        err_problem(c->resp, KETEN_ERR_NOMEM);
        return KETEN_API_ANSWERED;
    }
    c->resp->status = 201;
    c->resp->content_type = CT_JSON;
    c->resp->body = text; /* wiped when cleared */
    c->resp->body_len = strlen(text);
    snprintf(c->resp->object, sizeof c->resp->object, "token:%s", id);
    return KETEN_API_ANSWERED;
}

static keten_api_result op_token_list(op_ctx *c)
{
    json_t *out = NULL;
    keten_err e = keten_auth_token_list(c->node->store, keten_now_ms(), &out);
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, out);
    }
    return KETEN_API_ANSWERED;
}

static keten_api_result op_token_revoke(op_ctx *c)
{
    keten_err e = keten_auth_token_revoke(c->node->store, c->hex, keten_now_ms());
    if (e == KETEN_ERR_REVOKED) {
        char text[DETAIL_MAX];
        snprintf(text, sizeof text, "%s; nothing changed (GET /v1/tokens lists them)",
            keten_err_detail());
        keten_api_problem(c->resp, 409, "conflict", "Already revoked", 1, text);
        return KETEN_API_ANSWERED;
    }
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
        return KETEN_API_ANSWERED;
    }
    if (c->node->sessions != NULL) {
        (void)keten_auth_sessions_end_token(c->node->sessions, c->hex);
    }
    c->resp->status = 204;
    return KETEN_API_ANSWERED;
}

/* ---- alarms (acknowledged by the node's operator only: the Unix socket) ---- */

static keten_api_result op_alarms(op_ctx *c)
{
    json_t *list = NULL;
    keten_err e = keten_alarm_list(c->node, &list);
    if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "alarms", list));
    }
    return KETEN_API_ANSWERED;
}

static keten_api_result op_alarm_ack(op_ctx *c)
{
    static const char *const allowed[] = { "note", NULL };
    if (!body_object(c, allowed, "note")) {
        return KETEN_API_ANSWERED;
    }
    const json_t *note = json_object_get(c->body, "note");
    char why[160];
    if (!json_is_string(note)
        || !keten_nodestore_note_ok(json_string_value(note), why, sizeof why)) {
        if (!json_is_string(note)) {
            snprintf(why, sizeof why, "%s",
                "a note is required: say what was done about the alarm (1 to 200 characters)");
        }
        field_problem(c->resp, "/note", note == NULL ? "missing" : "not a note",
            "1 to 200 characters, no control character", why);
        return KETEN_API_ANSWERED;
    }
    char by[KETEN_ALARM_WHO_BYTES];
    keten_alarm_who(c->req->peer, by);
    json_t *out = NULL;
    keten_err e = keten_alarm_ack(c->node, c->alarm_id, by, json_string_value(note), &out);
    if (e == KETEN_ERR_EXISTS) {
        keten_api_problem(c->resp, 409, "conflict", "Already acknowledged", 1, keten_err_detail());
    } else if (e == KETEN_ERR_MISMATCH) {
        keten_api_problem(c->resp, 409, "alarm-state-holds", "The alarm's state still holds", 1,
            keten_err_detail());
    } else if (e != KETEN_OK) {
        err_problem(c->resp, e);
    } else {
        json_answer(c->resp, 200, json_pack("{s:o}", "alarm", out));
    }
    return KETEN_API_ANSWERED;
}

/* ---- routing ------------------------------------------------------------- */

typedef struct route {
    const char *method;
    const char *path; /* "{msg_id}" stands for one path segment */
    unsigned scope; /* 0: any caller */
    bool body; /* takes a JSON body */
    const char *action; /* for the access log */
    keten_api_result (*op)(op_ctx *c);
    bool local; /* the Unix socket only (the node's operator) */
} route;

/* Literal paths come before templates with the same prefix. */
static const route routes[] = {
    { "GET", "/v1/ping", 0, false, "ping", op_ping, false },
    { "GET", "/v1/node", KETEN_SCOPE_READ, false, "status", op_node, false },
    { "GET", "/v1/capabilities", KETEN_SCOPE_READ, false, "capabilities", op_capabilities, false },
    { "POST", "/v1/messages", KETEN_SCOPE_SEND, true, "send", op_send, false },
    { "POST", "/v1/messages/validate", KETEN_SCOPE_SEND, true, "validate", op_validate, false },
    { "GET", "/v1/messages/{msg_id}", KETEN_SCOPE_READ, false, "status", op_status, false },
    { "GET", "/v1/inbox", KETEN_SCOPE_READ, false, "list-inbox", op_inbox, false },
    { "GET", "/v1/inbox/{msg_id}", KETEN_SCOPE_READ, false, "read", op_show, false },
    { "POST", "/v1/inbox/{msg_id}/ack", KETEN_SCOPE_ACK, false, "ack", op_ack, false },
    { "POST", "/v1/inbox/{msg_id}/reply", KETEN_SCOPE_SEND, true, "reply", op_reply, false },
    { "GET", "/v1/sent", KETEN_SCOPE_READ, false, "list-sent", op_sent, false },
    { "GET", "/v1/checkpoint", KETEN_SCOPE_READ, false, "checkpoint", op_checkpoint, false },
    { "GET", "/v1/checkpoints", KETEN_SCOPE_READ, false, "checkpoint", op_checkpoints, false },
    { "POST", "/v1/tokens", 0, true, "token-create", op_token_create, true },
    { "GET", "/v1/tokens", 0, false, "token-list", op_token_list, true },
    { "DELETE", "/v1/tokens/{token_id}", 0, false, "token-revoke", op_token_revoke, true },
    { "GET", "/v1/alarms", KETEN_SCOPE_READ, false, "alarm-list", op_alarms, false },
    { "POST", "/v1/alarms/{alarm_id}/ack", 0, true, "alarm-ack", op_alarm_ack, true },
};

#define N_ROUTES (sizeof routes / sizeof routes[0])

/* Does path match the template? seg receives the {msg_id} segment. */
static bool path_match(const char *tmpl, const char *path, const char **seg, size_t *seg_len)
{
    *seg = NULL;
    *seg_len = 0;
    while (*tmpl != '\0') {
        if (*tmpl == '{') {
            size_t n = strcspn(path, "/");
            if (n == 0) {
                return false;
            }
            *seg = path;
            *seg_len = n;
            path += n;
            tmpl += strcspn(tmpl, "}") + 1;
        } else if (*tmpl++ != *path++) {
            return false;
        }
    }
    return *path == '\0';
}

static bool is_literal(const char *tmpl)
{
    return strchr(tmpl, '{') == NULL;
}

static bool json_content_type(const char *ct)
{
    if (ct == NULL) {
        return false;
    }
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) {
        n--;
    }
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

static const char *scope_name(unsigned s)
{
    return s == KETEN_SCOPE_READ ? "read" : s == KETEN_SCOPE_SEND ? "send" : "ack";
}

static bool msg_id_valid(const char *s, size_t n, uint8_t out[static KETEN_MSG_ID_BYTES])
{
    if (n != 2 * KETEN_MSG_ID_BYTES) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    memcpy(hex, s, n);
    hex[n] = '\0';
    return keten_unhex(hex, out, KETEN_MSG_ID_BYTES) == KETEN_OK;
}

static bool token_id_valid(const char *s, size_t n)
{
    if (n != KETEN_AUTH_TOKEN_ID_CHARS) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* An alarm's number: 1 to 19 decimal digits, no leading zero. */
static bool alarm_id_valid(const char *s, size_t n, uint64_t *out)
{
    *out = 0;
    if (n == 0 || n > 19 || s[0] == '0') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        *out = *out * 10 + (uint64_t)(s[i] - '0');
    }
    return true;
}

static bool is_alarm_route(const route *r)
{
    return strncmp(r->path, "/v1/alarms", 10) == 0;
}

/* The access log's object of an alarm route: "alarm:N", or "alarms". */
static void alarm_object(const char *seg, size_t seg_len, keten_api_response *resp)
{
    uint64_t n = 0;
    bool id_ok = seg != NULL && alarm_id_valid(seg, seg_len, &n);
    snprintf(resp->object, sizeof resp->object, "%s%.*s", id_ok ? "alarm:" : "alarms",
        id_ok ? (int)seg_len : 0, id_ok ? seg : "");
}

/* Pick the route: literal paths win over templates. NULL: answered. */
static const route *find_route(
    const keten_api_request *req, keten_api_response *resp, const char **seg, size_t *seg_len)
{
    char allow[sizeof resp->allow] = "";
    for (int pass = 0; pass < 2; pass++) {
        bool path_seen = false;
        for (size_t i = 0; i < N_ROUTES; i++) {
            const route *r = &routes[i];
            if (is_literal(r->path) != (pass == 0)
                || !path_match(r->path, req->path, seg, seg_len)) {
                continue;
            }
            path_seen = true;
            if (strcmp(r->method, req->method) == 0) {
                return r;
            }
            if (strstr(allow, r->method) == NULL) {
                size_t len = strlen(allow);
                snprintf(allow + len, sizeof allow - len, "%s%s", len > 0 ? ", " : "", r->method);
            }
        }
        if (path_seen) {
            char detail[200];
            snprintf(detail, sizeof detail, "%s is answered to %s only", req->path, allow);
            keten_api_problem(resp, 405, "method-not-allowed", "Method not allowed", 2, detail);
            if (resp->status == 405) {
                memcpy(resp->allow, allow, sizeof allow);
            }
            return NULL;
        }
    }
    char detail[300];
    snprintf(detail, sizeof detail,
        "no operation at %.200s; the API's routes are listed in docs/api/openapi.yaml", req->path);
    keten_api_problem(resp, 404, "not-found", "No such route", 2, detail);
    return NULL;
}

void keten_api_describe(const char *method, const char *path, keten_api_response *resp)
{
    keten_api_request req = { .method = method, .path = path };
    keten_api_response scratch;
    memset(&scratch, 0, sizeof scratch);
    const char *seg = NULL;
    size_t seg_len = 0;
    const route *r = find_route(&req, &scratch, &seg, &seg_len);
    keten_api_response_clear(&scratch);
    keten_err_clear();
    snprintf(resp->action, sizeof resp->action, "%s", r != NULL ? r->action : "request");
    resp->object[0] = '\0';
    if (r == NULL) {
        return;
    }
    if (is_alarm_route(r)) {
        alarm_object(seg, seg_len, resp);
    } else if (r->local) {
        bool id_ok = seg != NULL && token_id_valid(seg, seg_len);
        snprintf(resp->object, sizeof resp->object, "%s%.*s", id_ok ? "token:" : "tokens",
            id_ok ? (int)seg_len : 0, id_ok ? seg : "");
    } else if (seg != NULL) {
        uint8_t id[KETEN_MSG_ID_BYTES];
        if (msg_id_valid(seg, seg_len, id)) {
            snprintf(resp->object, sizeof resp->object, "message:%.*s", (int)seg_len, seg);
        }
    } else if (strncmp(r->path, "/v1/inbox", 9) == 0) {
        snprintf(resp->object, sizeof resp->object, "inbox");
    } else if (strcmp(r->path, "/v1/sent") == 0) {
        snprintf(resp->object, sizeof resp->object, "sent");
    }
}

keten_api_result keten_api_handle(
    keten_node *node, const keten_api_request *req, keten_api_response *resp)
{
    memset(resp, 0, sizeof *resp);
    keten_err_clear();
    snprintf(resp->action, sizeof resp->action, "request");
    const char *seg = NULL;
    size_t seg_len = 0;
    const route *r = find_route(req, resp, &seg, &seg_len);
    op_ctx c = { .node = node, .req = req, .resp = resp };
    keten_api_result res = KETEN_API_ANSWERED;
    if (r == NULL) {
        goto done;
    }
    snprintf(resp->action, sizeof resp->action, "%s", r->action);
    if (is_alarm_route(r)) { /* named in the access log, refused or not */
        alarm_object(seg, seg_len, resp);
    }
    if (r->local && !req->local) {
        keten_api_problem(resp, 403, "forbidden", "Not allowed from here", 1,
            is_alarm_route(r)
                ? "alarms are acknowledged by the node's operator on its own Unix socket only "
                  "(HOME/api.sock: keten-node alarm ack), never over TCP"
                : "tokens are managed on the node's own Unix socket only (HOME/api.sock, e.g. "
                  "keten-node token create), never over TCP");
        goto done;
    }
    if (r->local && !is_alarm_route(r)) {
        snprintf(resp->object, sizeof resp->object, "tokens");
    }
    if (seg != NULL && is_alarm_route(r)) {
        if (!alarm_id_valid(seg, seg_len, &c.alarm_id)) {
            field_problem(resp, "id", "not an alarm number", "a number from 1 (no leading zero)",
                "the alarm number in the path must be a number from 1 (keten-node alarm list "
                "shows them)");
            goto done;
        }
        snprintf(resp->object, sizeof resp->object, "alarm:%llu", (unsigned long long)c.alarm_id);
    } else if (seg != NULL && r->local) {
        if (!token_id_valid(seg, seg_len)) {
            field_problem(resp, "id", "not a token id", "16 lowercase hex characters",
                "the token id in the path must be 16 lowercase hex characters (GET /v1/tokens "
                "lists them)");
            goto done;
        }
        memcpy(c.hex, seg, seg_len);
        c.hex[seg_len] = '\0';
        snprintf(resp->object, sizeof resp->object, "token:%s", c.hex);
    } else if (seg != NULL) {
        if (!msg_id_valid(seg, seg_len, c.msg_id)) {
            field_problem(resp, "msg_id", "not a msg_id", "32 lowercase hex characters",
                "the msg_id in the path must be 32 lowercase hex characters");
            goto done;
        }
        c.has_id = true;
        memcpy(c.hex, seg, seg_len);
        c.hex[seg_len] = '\0';
        snprintf(resp->object, sizeof resp->object, "message:%s", c.hex);
    } else if (strncmp(r->path, "/v1/inbox", 9) == 0) {
        snprintf(resp->object, sizeof resp->object, "inbox");
    } else if (strcmp(r->path, "/v1/sent") == 0) {
        snprintf(resp->object, sizeof resp->object, "sent");
    }
    if (r->scope != 0 && (req->scopes & r->scope) == 0) {
        char detail[160];
        snprintf(detail, sizeof detail, "%s %s needs the scope %s, which %s does not have",
            req->method, r->path, scope_name(r->scope), req->actor != NULL ? req->actor : "caller");
        keten_api_problem(resp, 403, "forbidden", "Scope missing", 1, detail);
        goto done;
    }
    if (!r->body && req->body_len > 0) {
        usage_problem(resp, "this request takes no body");
        goto done;
    }
    if (r->body && !json_content_type(req->content_type)) {
        keten_api_problem(resp, 415, "unsupported-media-type", "Not JSON", 2,
            "the body must be JSON: send Content-Type: application/json");
        goto done;
    }
    static const char *const no_query[] = { NULL };
    if (!r->body && r->op != op_inbox && r->op != op_sent && !query_check(&c, no_query, "")) {
        goto done;
    }
    res = r->op(&c);
done:
    if (c.body != NULL) {
        wipe_json(c.body); /* it may hold signal content */
        json_decref(c.body);
    }
    if (res == KETEN_API_LATER) {
        return res;
    }
    return finish(node->api, req->ticket, resp, true);
}

/* ---- later answers ------------------------------------------------------- */

static void waiter_answer(keten_node *node, waiter *w, keten_api_response *resp)
{
    if (w->repeated) {
        mark_repeated(resp);
    }
    snprintf(resp->action, sizeof resp->action, "%s",
        w->kind == WAIT_INBOX ? "list-inbox"
            : w->is_reply     ? "reply"
                              : "send");
    if (w->kind == WAIT_INBOX) {
        snprintf(resp->object, sizeof resp->object, "inbox");
    } else {
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(w->msg_id, KETEN_MSG_ID_BYTES, hex);
        snprintf(resp->object, sizeof resp->object, "message:%s", hex);
    }
    (void)node;
}

/* Answer waiter i with resp and drop it. */
static void answer_waiter(keten_node *node, size_t i, keten_api_response *resp)
{
    keten_api *api = node->api;
    waiter w = api->waiters[i];
    api->waiters[i] = api->waiters[--api->n_waiters];
    waiter_answer(node, &w, resp);
    (void)finish(api, w.ticket, resp, false);
}

void keten_api_tick(keten_node *node)
{
    keten_api *api = node->api;
    if (api == NULL) {
        return;
    }
    uint64_t now = keten_mono_ms();
    for (size_t i = 0; i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        if (w->deadline > now) {
            i++;
            continue;
        }
        keten_api_response resp = { 0 };
        if (w->kind == WAIT_SEND) {
            send_outcome(node, w->msg_id, true, &resp);
        } else {
            inbox_answer(node, &w->filter, false, &resp);
        }
        answer_waiter(node, i, &resp);
    }
}

void keten_api_notify_sent(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    keten_api *api = node->api;
    for (size_t i = 0; api != NULL && i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        keten_api_response resp = { 0 };
        if (w->kind == WAIT_SEND && memcmp(w->msg_id, msg_id, KETEN_MSG_ID_BYTES) == 0) {
            send_outcome(node, msg_id, false, &resp);
        }
        if (resp.status == 0) {
            i++;
            continue;
        }
        answer_waiter(node, i, &resp);
    }
}

void keten_api_notify_refused(keten_node *node)
{
    keten_api *api = node->api;
    for (size_t i = 0; api != NULL && i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        keten_api_response resp = { 0 };
        if (w->kind == WAIT_SEND) {
            send_outcome(node, w->msg_id, false, &resp);
        }
        if (resp.status == 0) {
            i++;
            continue;
        }
        answer_waiter(node, i, &resp);
    }
}

void keten_api_notify_inbox(keten_node *node)
{
    keten_api *api = node->api;
    for (size_t i = 0; api != NULL && i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        keten_api_response resp = { 0 };
        if (w->kind == WAIT_INBOX) {
            inbox_answer(node, &w->filter, true, &resp);
        }
        if (resp.status == 0) {
            i++;
            continue;
        }
        answer_waiter(node, i, &resp);
    }
}
