#include "apizmq.h"

#include "alarm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "inbox.h"
#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "signal_json.h"
#include "outbox.h"
#include "policy.h"
#include "rec.h"
#include "status.h"
#include "witness.h"
#include "util.h"

#define ROUTING_ID_MAX 256

typedef enum waiter_kind { WAIT_SEND, WAIT_INBOX } waiter_kind;

typedef struct waiter {
    uint8_t rid[ROUTING_ID_MAX];
    size_t rid_len;
    waiter_kind kind;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    bool all;
    uint64_t deadline; /* mono ms */
} waiter;

/* A reply kept while a batch is held. */
typedef struct held_reply {
    uint8_t rid[ROUTING_ID_MAX];
    size_t rid_len;
    char *text; /* may hold signal content: wiped before it is freed */
} held_reply;

struct keten_apizmq {
    void *sock;
    char path[PATH_MAX];
    waiter *waiters;
    size_t n_waiters;
    bool holding;
    held_reply *held;
    size_t n_held, cap_held;
};

#define HOLD_FAILED_REPLY                                                                          \
    "{\"ok\":false,\"error\":\"the node could not commit this change to its store (see its "       \
    "log); nothing of it was kept: try again\",\"exit\":1}"

keten_err keten_apizmq_open(keten_node *node, keten_apizmq **out)
{
    *out = NULL;
    keten_apizmq *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    keten_err e = KETEN_OK;
    self->waiters = calloc(KETEN_API_WAITERS_MAX, sizeof *self->waiters);
    if (self->waiters == NULL) {
        e = KETEN_ERR_NOMEM;
        goto out;
    }
    if (snprintf(self->path, sizeof self->path, "%s/%s", node->opts.home, KETEN_NODE_APIZMQ_SOCK)
        >= 100 /* sun_path */) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "the API socket path %s/%s is too long for a local socket; use a shorter --home",
            node->opts.home, KETEN_NODE_APIZMQ_SOCK);
        goto out;
    }
    snprintf(node->api_endpoint, sizeof node->api_endpoint, "ipc://%s", self->path);
    self->sock = zmq_socket(node->zctx, ZMQ_ROUTER);
    int zero = 0;
    int64_t maxmsg = KETEN_API_REQUEST_MAX;
    if (self->sock == NULL || zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "API socket: %s", zmq_strerror(zmq_errno()));
        goto out;
    }
    (void)unlink(self->path); /* a stale socket of a daemon that died */
    mode_t old = umask(077);
    int rc = zmq_bind(self->sock, node->api_endpoint);
    umask(old);
    if (rc != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot bind the local API on %s: %s", node->api_endpoint,
            zmq_strerror(zmq_errno()));
        goto out;
    }
    if (chmod(self->path, 0600) != 0) {
        e = keten_err_set(KETEN_ERR_PERMISSIONS, "chmod 0600 %s: %s", self->path, strerror(errno));
        goto out;
    }
    *out = self;
    self = NULL;
out:
    keten_apizmq_destroy(&self);
    return e;
}

void keten_apizmq_destroy(keten_apizmq **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_apizmq *self = *self_p;
    if (self->sock != NULL) {
        zmq_close(self->sock);
        (void)unlink(self->path);
    }
    free(self->waiters);
    for (size_t i = 0; i < self->n_held; i++) {
        sodium_memzero(self->held[i].text, strlen(self->held[i].text));
        free(self->held[i].text);
    }
    free(self->held);
    free(self);
    *self_p = NULL;
}

void *keten_apizmq_socket(keten_apizmq *self)
{
    return self->sock;
}

static void send_reply(keten_apizmq *api, const uint8_t *rid, size_t rid_len, const char *body)
{
    if (zmq_send(api->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
        || zmq_send(api->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
        || zmq_send(api->sock, body, strlen(body), ZMQ_DONTWAIT) < 0) {
        KETEN_LOG(
            KETEN_LOG_WARNING, "API reply not sent", "error=\"%s\"", zmq_strerror(zmq_errno()));
    }
}

/* Keep a reply while holding; false (nothing kept) when out of memory. */
static bool hold_reply(keten_apizmq *api, const uint8_t *rid, size_t rid_len, char *text)
{
    if (rid_len > ROUTING_ID_MAX) {
        return false;
    }
    if (api->n_held == api->cap_held) {
        size_t cap = api->cap_held == 0 ? 16 : 2 * api->cap_held;
        held_reply *h = realloc(api->held, cap * sizeof *h);
        if (h == NULL) {
            return false;
        }
        api->held = h;
        api->cap_held = cap;
    }
    held_reply *h = &api->held[api->n_held++];
    memcpy(h->rid, rid, rid_len);
    h->rid_len = rid_len;
    h->text = text;
    return true;
}

static void reply_raw(keten_apizmq *api, const uint8_t *rid, size_t rid_len, json_t *reply)
{
    char *text = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    if (api->holding && text != NULL && hold_reply(api, rid, rid_len, text)) {
        return;
    }
    const char *body = text == NULL ? "{\"ok\":false,\"error\":\"out of memory\",\"exit\":1}"
        : api->holding              ? HOLD_FAILED_REPLY /* cannot keep it: not durable yet */
                                    : text;
    send_reply(api, rid, rid_len, body);
    if (text != NULL) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
}

void keten_apizmq_hold(keten_apizmq *self)
{
    self->holding = true;
}

void keten_apizmq_release(keten_apizmq *self, bool committed)
{
    self->holding = false;
    for (size_t i = 0; i < self->n_held; i++) {
        held_reply *h = &self->held[i];
        send_reply(self, h->rid, h->rid_len, committed ? h->text : HOLD_FAILED_REPLY);
        sodium_memzero(h->text, strlen(h->text));
        free(h->text);
        h->text = NULL;
    }
    if (!committed && self->n_held > 0) {
        KETEN_LOG(KETEN_LOG_ERR, "store commit failed; API requests answered with an error",
            "replies=%zu", self->n_held);
    }
    self->n_held = 0;
}

static json_t *fail_reply(keten_err e)
{
    char text[1200];
    const char *detail = keten_err_detail();
    if (detail[0] != '\0') {
        snprintf(text, sizeof text, "%s: %s", keten_err_str(e), detail);
    } else {
        snprintf(text, sizeof text, "%s", keten_err_str(e));
    }
    return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", text, "exit", keten_err_exit_code(e));
}

static json_t *usage_reply(const char *text)
{
    return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", text, "exit", 2);
}

static bool get_msg_id(const json_t *req, uint8_t out[static KETEN_MSG_ID_BYTES])
{
    const char *s = json_string_value(json_object_get(req, "msg_id"));
    return s != NULL && strlen(s) == 2 * KETEN_MSG_ID_BYTES
        && keten_unhex(s, out, KETEN_MSG_ID_BYTES) == KETEN_OK;
}

static uint64_t wait_ms(const json_t *req, const char *key, uint64_t dflt)
{
    json_t *v = json_object_get(req, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return dflt;
    }
    uint64_t ms = (uint64_t)json_integer_value(v);
    return ms > KETEN_API_WAIT_MAX_MS ? KETEN_API_WAIT_MAX_MS : ms;
}

static bool add_waiter(keten_apizmq *api, const uint8_t *rid, size_t rid_len, waiter_kind kind,
    const uint8_t *msg_id, bool all, uint64_t ms)
{
    if (api->n_waiters >= KETEN_API_WAITERS_MAX || rid_len > ROUTING_ID_MAX) {
        return false;
    }
    waiter *w = &api->waiters[api->n_waiters++];
    memset(w, 0, sizeof *w);
    memcpy(w->rid, rid, rid_len);
    w->rid_len = rid_len;
    w->kind = kind;
    if (msg_id != NULL) {
        memcpy(w->msg_id, msg_id, KETEN_MSG_ID_BYTES);
    }
    w->all = all;
    w->deadline = keten_mono_ms() + ms;
    return true;
}

static void drop_waiter(keten_apizmq *api, size_t i)
{
    api->waiters[i] = api->waiters[api->n_waiters - 1];
    api->n_waiters--;
}

/* The answer to a waiting send: NULL while it is still pending. */
static json_t *send_outcome(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], bool timed_out)
{
    Keten__SentRecord *rec = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    keten_err e = keten_outbox_record(node, msg_id, &rec);
    if (e != KETEN_OK) {
        return fail_reply(e);
    }
    const char *reason = keten_outbox_reason_name(rec->reason);
    const char *detail = rec->detail != NULL ? rec->detail : "";
    json_t *out = NULL;
    char text[1200];
    switch (rec->state) {
    case KETEN__SENT_STATE__SENT_STATE_ACCEPTED:
        out = json_pack("{s:b, s:s, s:s, s:I}", "ok", 1, "msg_id", hex, "state", "accepted",
            "leaf_index", (json_int_t)rec->leaf_index);
        break;
    case KETEN__SENT_STATE__SENT_STATE_REFUSED:
        if (rec->reason == KETEN__REASON__REASON_POLICY) {
            snprintf(text, sizeof text, "the broker refused message %s: %s (rule %lld): %s", hex,
                reason, (long long)rec->rule, detail);
        } else {
            snprintf(text, sizeof text, "the broker refused message %s: %s: %s", hex, reason, detail);
        }
        out = json_pack("{s:b, s:s, s:s, s:i}", "ok", 0, "msg_id", hex, "error", text, "exit", 1);
        break;
    case KETEN__SENT_STATE__SENT_STATE_EXPIRED:
        snprintf(text, sizeof text, "message %s expired before the broker acknowledged it", hex);
        out = json_pack("{s:b, s:s, s:s, s:i}", "ok", 0, "msg_id", hex, "error", text, "exit", 1);
        break;
    default: /* queued */
        if (node->refused != KETEN__REASON__REASON_NONE) {
            char why[160];
            keten_alarm_refusal_text(node->refused, node->refused_version, why, sizeof why);
            snprintf(text, sizeof text,
                "the broker refuses this node: %s; message %s stays in the outbox, unsent", why,
                hex);
            out = json_pack(
                "{s:b, s:s, s:s, s:i}", "ok", 0, "msg_id", hex, "error", text, "exit", 1);
        } else if (rec->reason != KETEN__REASON__REASON_NONE) {
            snprintf(text, sizeof text,
                "the broker cannot take message %s now: %s: %s; the node keeps it and resends it",
                hex, reason, detail);
            out = json_pack(
                "{s:b, s:s, s:s, s:i}", "ok", 0, "msg_id", hex, "error", text, "exit", 1);
        } else if (timed_out) {
            snprintf(text, sizeof text,
                "no acknowledgement from the broker for message %s yet; it stays in the outbox "
                "and is resent until acknowledged (see keten-node status %s)",
                hex, hex);
            out = json_pack(
                "{s:b, s:s, s:s, s:i}", "ok", 0, "msg_id", hex, "error", text, "exit", 1);
        }
        break;
    }
    keten_nodestore_sent_free(&rec);
    return out;
}

/* The message a reply or feedback answers, and whom it goes to: a reply
 * answers a received query (one reply per query: the outbox refuses a
 * second in the transaction that would store it), feedback a received
 * signal. */
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
            "no message %s in this node's inbox; `reply` answers a received query, "
            "`reply --kind feedback` a received signal",
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
                ? " (to tell its sender what was done with it: keten-node reply --kind feedback)"
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
            h->kind == KETEN__KIND__KIND_QUERY ? " (answer a query with keten-node reply)" : "");
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

static json_t *problem_json(const keten_signal_json_problem *p)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "path", p->path, "problem", p->problem, "allowed",
        p->allowed, "error", keten_err_str(p->err));
}

/* The answer to a dry run: {"ok": true, "valid": bool, "problems": [{path,
 * problem, allowed, error}], "more": N}. */
static json_t *dry_run_reply(const keten_signal_json_problems *pr)
{
    json_t *list = json_array();
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < pr->n; i++) {
        if (json_array_append_new(list, problem_json(&pr->items[i])) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return json_pack("{s:b, s:b, s:o, s:I}", "ok", 1, "valid", pr->n == 0 && pr->more == 0,
        "problems", list, "more", (json_int_t)pr->more);
}

static json_t *do_send(
    keten_node *node, const json_t *req, const uint8_t *rid, size_t rid_len, bool *deferred)
{
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    /* A dry run is its own command, so that a daemon that does not know it
     * answers "unknown command" and never sends what was only to be checked. */
    bool dry_run = strcmp(cmd, "dry-run") == 0;
    if (dry_run) {
        cmd = json_string_value(json_object_get(req, "for"));
        if (cmd == NULL || (strcmp(cmd, "send") != 0 && strcmp(cmd, "reply") != 0)) {
            return usage_reply("a dry run is \"for\": \"send\" or \"reply\"");
        }
    }
    bool is_reply = strcmp(cmd, "reply") == 0;
    const char *text = json_string_value(json_object_get(req, "signal"));
    if (text == NULL) {
        return usage_reply("no signal given; use --signal FILE or --signal - for standard input");
    }
    keten_outbox_send_req sr = { 0 };
    sr.json = text;
    sr.json_len = json_string_length(json_object_get(req, "signal"));
    uint8_t orig[KETEN_MSG_ID_BYTES];
    char orig_from[256];
    const char *kind = json_string_value(json_object_get(req, "kind"));
    keten_signal_json_problems problems = { 0 };
    if (is_reply) {
        if (!get_msg_id(req, orig)) {
            return usage_reply("MSG_ID must be 32 hex characters");
        }
        if (kind == NULL || strcmp(kind, "reply") == 0) {
            sr.kind = KETEN__KIND__KIND_REPLY;
        } else if (strcmp(kind, "feedback") == 0) {
            sr.kind = KETEN__KIND__KIND_FEEDBACK;
        } else {
            return usage_reply("--kind must be reply (to a query) or feedback (to a signal)");
        }
        keten_err e = answer_target(node, orig, sr.kind, orig_from, sizeof orig_from);
        if (e != KETEN_OK && !dry_run) {
            return fail_reply(e);
        }
        if (e != KETEN_OK) { /* no one to send it to: check the signal alone */
            keten_signal_json_problems_add(&problems, e, "MSG_ID", NULL, keten_err_detail());
            e = keten_signal_json_validate(sr.json, sr.json_len, node->dir, &problems);
            json_t *r = e == KETEN_ERR_NOMEM ? fail_reply(e) : dry_run_reply(&problems);
            keten_signal_json_problems_clear(&problems);
            return r;
        }
        sr.to = orig_from;
        sr.in_reply_to = orig;
    } else {
        sr.to = json_string_value(json_object_get(req, "to"));
        if (sr.to == NULL) {
            return usage_reply("--to PARTIES is required");
        }
        if (kind == NULL) {
            sr.kind = KETEN__KIND__KIND_SIGNAL;
        } else if (keten_policy_kind_parse(kind, &sr.kind) != KETEN_OK) {
            return usage_reply("--kind must be signal or query");
        }
        if (sr.kind == KETEN__KIND__KIND_REPLY) {
            return usage_reply("a reply is sent with `keten-node reply MSG_ID`");
        }
        if (sr.kind == KETEN__KIND__KIND_FEEDBACK) {
            return usage_reply("feedback answers a received signal: send it with "
                               "`keten-node reply --kind feedback MSG_ID`");
        }
    }
    if (dry_run) {
        keten_err e = keten_outbox_check(node, &sr, &problems);
        json_t *r = e == KETEN_ERR_NOMEM ? fail_reply(e) : dry_run_reply(&problems);
        keten_signal_json_problems_clear(&problems);
        return r;
    }
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    keten_err e = keten_outbox_send(node, &sr, msg_id);
    if (e != KETEN_OK) {
        return fail_reply(e);
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    if (json_is_true(json_object_get(req, "wait"))) {
        uint64_t ms = wait_ms(req, "timeout_ms", KETEN_API_WAIT_DEFAULT_MS);
        json_t *now = send_outcome(node, msg_id, false);
        if (now != NULL) {
            return now;
        }
        if (add_waiter(node->apizmq, rid, rid_len, WAIT_SEND, msg_id, false, ms)) {
            *deferred = true;
            return NULL;
        }
    }
    return json_pack("{s:b, s:s, s:s}", "ok", 1, "msg_id", hex, "state", "pending");
}

static json_t *inbox_reply(keten_node *node, bool all)
{
    json_t *list = NULL;
    uint64_t last = 0;
    keten_err e = keten_inbox_list(node, all, 0, &list, &last);
    if (e != KETEN_OK) {
        json_decref(list);
        return fail_reply(e);
    }
    return json_pack("{s:b, s:o}", "ok", 1, "messages", list);
}

static json_t *do_inbox(
    keten_node *node, const json_t *req, const uint8_t *rid, size_t rid_len, bool *deferred)
{
    bool all = json_is_true(json_object_get(req, "all"));
    json_t *r = inbox_reply(node, all);
    uint64_t ms = wait_ms(req, "wait_ms", 0);
    if (ms > 0 && json_array_size(json_object_get(r, "messages")) == 0
        && json_is_true(json_object_get(r, "ok"))) {
        if (add_waiter(node->apizmq, rid, rid_len, WAIT_INBOX, NULL, all, ms)) {
            json_decref(r);
            *deferred = true;
            return NULL;
        }
    }
    return r;
}

static json_t *do_show(keten_node *node, const json_t *req)
{
    uint8_t id[KETEN_MSG_ID_BYTES];
    if (!get_msg_id(req, id)) {
        return usage_reply("MSG_ID must be 32 hex characters");
    }
    json_t *m = NULL;
    keten_err e = keten_inbox_show(node, id, &m);
    if (e == KETEN_ERR_NOT_FOUND) {
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(id, KETEN_MSG_ID_BYTES, hex);
        return fail_reply(keten_err_set(KETEN_ERR_NOT_FOUND,
            "no message %s in this node's inbox (for a message this node sent, use status %s)", hex,
            hex));
    }
    if (e != KETEN_OK) {
        return fail_reply(e);
    }
    return json_pack("{s:b, s:o}", "ok", 1, "message", m);
}

static json_t *do_ack(keten_node *node, const json_t *req)
{
    uint8_t id[KETEN_MSG_ID_BYTES];
    if (!get_msg_id(req, id)) {
        return usage_reply("MSG_ID must be 32 hex characters");
    }
    /* Acknowledging twice is refused, naming the first time: an application
     * that acknowledges a message it believes new has a bug worth seeing. */
    Keten__ReceivedRecord *rec = NULL;
    keten_err e = keten_inbox_record(node, id, &rec);
    if (e == KETEN_OK && rec->handled) {
        char hex[KETEN_MSG_ID_HEX_BYTES], t[40];
        keten_hex(id, KETEN_MSG_ID_BYTES, hex);
        keten_time_iso(rec->handled_at, t, sizeof t);
        keten_nodestore_received_free(&rec);
        json_t *r = fail_reply(
            keten_err_set(KETEN_ERR_EXISTS, "message %s was already acknowledged at %s", hex, t));
        if (r != NULL && json_object_set_new(r, "handled_at", json_string(t)) != 0) {
            json_decref(r);
            return NULL;
        }
        return r;
    }
    keten_nodestore_received_free(&rec);
    if (e == KETEN_OK) {
        e = keten_inbox_ack(node, id);
    }
    if (e == KETEN_ERR_NOT_FOUND) {
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(id, KETEN_MSG_ID_BYTES, hex);
        return fail_reply(
            keten_err_set(KETEN_ERR_NOT_FOUND, "no message %s in this node's inbox", hex));
    }
    if (e != KETEN_OK) {
        return fail_reply(e);
    }
    return json_pack(
        "{s:b, s:s}", "ok", 1, "msg_id", json_string_value(json_object_get(req, "msg_id")));
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

static json_t *do_sent(keten_node *node, const json_t *req)
{
    json_t *since_v = json_object_get(req, "since_ms");
    if (since_v != NULL && (!json_is_integer(since_v) || json_integer_value(since_v) < 0)) {
        return usage_reply("since_ms must be a time in ms since 1970");
    }
    uint64_t since = since_v != NULL ? (uint64_t)json_integer_value(since_v) : 0;
    sent_item *v = NULL;
    size_t n = 0, kept = 0;
    keten_err e = sent_ids(node, &v, &n);
    /* Each message's time, from its header; those before since_ms dropped. */
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
        e = keten_status_message(node, v[i].id, &st);
        if (e == KETEN_OK) {
            (void)json_object_del(st, "alarms"); /* the node's, not the message's */
            if (json_array_append_new(list, st) != 0) {
                e = KETEN_ERR_NOMEM;
            }
        }
    }
    free(v);
    if (e != KETEN_OK) {
        json_decref(list);
        return fail_reply(e);
    }
    return json_pack("{s:b, s:o, s:I}", "ok", 1, "messages", list, "more", (json_int_t)first);
}

static json_t *do_status(keten_node *node, const json_t *req)
{
    json_t *st = NULL;
    keten_err e;
    if (json_object_get(req, "msg_id") != NULL) {
        uint8_t id[KETEN_MSG_ID_BYTES];
        if (!get_msg_id(req, id)) {
            return usage_reply("MSG_ID must be 32 hex characters");
        }
        e = keten_status_message(node, id, &st);
        if (e == KETEN_ERR_NOT_FOUND) {
            char hex[KETEN_MSG_ID_HEX_BYTES];
            keten_hex(id, KETEN_MSG_ID_BYTES, hex);
            return fail_reply(keten_err_set(
                KETEN_ERR_NOT_FOUND, "this node neither sent nor received a message %s", hex));
        }
    } else {
        e = keten_status_node(node, &st);
    }
    if (e != KETEN_OK) {
        return fail_reply(e);
    }
    return json_pack("{s:b, s:o}", "ok", 1, "status", st);
}

static json_t *do_checkpoint(keten_node *node, const json_t *req)
{
    json_t *ev = NULL;
    if (json_is_true(json_object_get(req, "all"))) {
        keten_err e = keten_witness_evidence_all(node, KETEN_WITNESS_EVIDENCE_ALL_MAX, &ev);
        if (e != KETEN_OK) {
            return fail_reply(e);
        }
        return json_pack("{s:b, s:o}", "ok", 1, "checkpoints", ev);
    }
    keten_err e = keten_witness_evidence(node, &ev);
    if (e != KETEN_OK) {
        return fail_reply(e);
    }
    return json_pack("{s:b, s:o}", "ok", 1, "checkpoint", ev);
}

static json_t *dispatch(keten_node *node, const uint8_t *body, size_t len, const uint8_t *rid,
    size_t rid_len, bool *deferred)
{
    json_error_t jerr;
    json_t *req = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (req == NULL || !json_is_object(req)) {
        json_decref(req);
        return usage_reply("the request is not a JSON object");
    }
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    json_t *r;
    keten_err_clear();
    if (cmd == NULL) {
        r = usage_reply("the request has no \"cmd\"");
    } else if (strcmp(cmd, "ping") == 0) {
        r = json_pack("{s:b, s:s}", "ok", 1, "node", node->me->id);
    } else if (strcmp(cmd, "send") == 0 || strcmp(cmd, "reply") == 0
        || strcmp(cmd, "dry-run") == 0) {
        r = do_send(node, req, rid, rid_len, deferred);
    } else if (strcmp(cmd, "inbox") == 0) {
        r = do_inbox(node, req, rid, rid_len, deferred);
    } else if (strcmp(cmd, "show") == 0) {
        r = do_show(node, req);
    } else if (strcmp(cmd, "ack") == 0) {
        r = do_ack(node, req);
    } else if (strcmp(cmd, "sent") == 0) {
        r = do_sent(node, req);
    } else if (strcmp(cmd, "status") == 0) {
        r = do_status(node, req);
    } else if (strcmp(cmd, "checkpoint") == 0) {
        r = do_checkpoint(node, req);
    } else {
        r = usage_reply("unknown command");
    }
    /* The request may hold signal content: wipe it. */
    json_t *sig = json_object_get(req, "signal");
    if (json_is_string(sig)) {
        sodium_memzero((void *)(uintptr_t)json_string_value(sig), json_string_length(sig));
    }
    json_decref(req);
    return r;
}

void keten_apizmq_on_readable(keten_node *node)
{
    keten_apizmq *api = node->apizmq;
    for (int round = 0; round < 64; round++) {
        uint8_t rid[ROUTING_ID_MAX];
        zmq_msg_t parts[3];
        size_t n = 0;
        bool more = true;
        while (more && n < 3) {
            zmq_msg_init(&parts[n]);
            if (zmq_msg_recv(&parts[n], api->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&parts[n]);
                for (size_t i = 0; i < n; i++) {
                    zmq_msg_close(&parts[i]);
                }
                return;
            }
            more = zmq_msg_more(&parts[n]);
            n++;
        }
        while (more) { /* too many parts: drain */
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            if (zmq_msg_recv(&extra, api->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&extra);
                break;
            }
            more = zmq_msg_more(&extra);
            zmq_msg_close(&extra);
            n = 0; /* refuse below */
        }
        if (n == 3 && zmq_msg_size(&parts[0]) <= ROUTING_ID_MAX && zmq_msg_size(&parts[1]) == 0) {
            size_t rid_len = zmq_msg_size(&parts[0]);
            memcpy(rid, zmq_msg_data(&parts[0]), rid_len);
            bool deferred = false;
            json_t *r = dispatch(
                node, zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), rid, rid_len, &deferred);
            sodium_memzero(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]));
            if (!deferred) {
                reply_raw(api, rid, rid_len, r);
            }
        }
        for (size_t i = 0; i < n && i < 3; i++) {
            zmq_msg_close(&parts[i]);
        }
    }
}

void keten_apizmq_tick(keten_node *node)
{
    keten_apizmq *api = node->apizmq;
    uint64_t now = keten_mono_ms();
    for (size_t i = 0; i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        if (w->deadline > now) {
            i++;
            continue;
        }
        json_t *r = w->kind == WAIT_SEND ? send_outcome(node, w->msg_id, true)
                                         : inbox_reply(node, w->all);
        reply_raw(api, w->rid, w->rid_len, r);
        drop_waiter(api, i);
    }
}

void keten_apizmq_notify_sent(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    keten_apizmq *api = node->apizmq;
    for (size_t i = 0; i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        if (w->kind != WAIT_SEND || memcmp(w->msg_id, msg_id, KETEN_MSG_ID_BYTES) != 0) {
            i++;
            continue;
        }
        json_t *r = send_outcome(node, msg_id, false);
        if (r == NULL) {
            i++;
            continue;
        }
        reply_raw(api, w->rid, w->rid_len, r);
        drop_waiter(api, i);
    }
}

void keten_apizmq_notify_refused(keten_node *node)
{
    keten_apizmq *api = node->apizmq;
    for (size_t i = 0; i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        json_t *r = w->kind == WAIT_SEND ? send_outcome(node, w->msg_id, false) : NULL;
        if (r == NULL) {
            i++;
            continue;
        }
        reply_raw(api, w->rid, w->rid_len, r);
        drop_waiter(api, i);
    }
}

void keten_apizmq_notify_inbox(keten_node *node)
{
    keten_apizmq *api = node->apizmq;
    for (size_t i = 0; i < api->n_waiters;) {
        waiter *w = &api->waiters[i];
        if (w->kind != WAIT_INBOX) {
            i++;
            continue;
        }
        reply_raw(api, w->rid, w->rid_len, inbox_reply(node, w->all));
        drop_waiter(api, i);
    }
}
