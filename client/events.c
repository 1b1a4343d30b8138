#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "policy.h"
#include "rec.h"
#include "store.h"
#include "util.h"

struct keten_events {
    keten_node *node;
    keten_events_listener fn;
    void *ctx;
    uint64_t told; /* the newest sequence number fn was given */
    bool dirty; /* events appended since the last durable commit */
};

/* The newest number given: "events-last", or the table's last key if that
 * is larger (it never is unless the state entry was lost). */
static keten_err last_seq(const keten_store *st, MDB_txn *txn, uint64_t *out)
{
    *out = 0;
    MDB_val v;
    keten_err e = keten_store_get(
        st, txn, KETEN_DB_STATE, KETEN_EVENTS_LAST_KEY, strlen(KETEN_EVENTS_LAST_KEY), &v);
    if (e == KETEN_OK) {
        if (v.mv_size != KETEN_STORE_U64_KEY) {
            return keten_err_set(KETEN_ERR_MALFORMED,
                "the node store's state record \"%s\" is damaged: %zu bytes, 8 expected; "
                "restore the store from a backup",
                KETEN_EVENTS_LAST_KEY, v.mv_size);
        }
        *out = keten_store_u64_get(v.mv_data);
    } else if (e != KETEN_ERR_NOT_FOUND) {
        return e;
    }
    uint64_t table_last = 0;
    e = keten_store_last_u64(st, txn, KETEN_DB_EVENTS, &table_last, NULL);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    if (e != KETEN_OK) {
        return e;
    }
    if (table_last > *out) {
        *out = table_last;
    }
    return KETEN_OK;
}

keten_err keten_events_append(
    keten_node *node, MDB_txn *txn, const keten_events_item *ev, uint64_t *seq_out)
{
    uint64_t seq = 0;
    keten_err e = last_seq(node->store, txn, &seq);
    if (e != KETEN_OK) {
        return e;
    }
    seq++;
    Keten__EventRecord r = KETEN__EVENT_RECORD__INIT;
    r.type = ev->type;
    r.msg_id.data = (uint8_t *)(uintptr_t)ev->msg_id;
    r.msg_id.len = ev->msg_id != NULL ? KETEN_MSG_ID_BYTES : 0;
    r.time = ev->time != 0 ? ev->time : keten_now_ms();
    r.kind = ev->kind;
    r.from = (char *)(uintptr_t)(ev->from != NULL ? ev->from : "");
    r.category = (char *)(uintptr_t)(ev->category != NULL ? ev->category : "");
    if (ev->in_reply_to != NULL) {
        r.in_reply_to.data = (uint8_t *)(uintptr_t)ev->in_reply_to;
        r.in_reply_to.len = KETEN_MSG_ID_BYTES;
    }
    r.sent_state = ev->sent_state;
    r.recipient = (char *)(uintptr_t)(ev->recipient != NULL ? ev->recipient : "");
    r.recipient_state = ev->recipient_state;
    r.handled_at = ev->handled_at;
    r.alarm_id = ev->alarm_id;
    r.alarm_kind = (char *)(uintptr_t)(ev->alarm_kind != NULL ? ev->alarm_kind : "");
    r.by = (char *)(uintptr_t)(ev->by != NULL ? ev->by : "");
    r.note = (char *)(uintptr_t)(ev->note != NULL ? ev->note : "");
    uint8_t last[KETEN_STORE_U64_KEY];
    keten_store_u64_put(seq, last);
    e = keten_nodestore_event_put(node->store, txn, seq, &r);
    if (e == KETEN_OK) {
        e = keten_store_put(node->store, txn, KETEN_DB_STATE, KETEN_EVENTS_LAST_KEY,
            strlen(KETEN_EVENTS_LAST_KEY), last, sizeof last);
    }
    if (e != KETEN_OK) {
        return e;
    }
    if (node->events != NULL) {
        node->events->dirty = true;
    }
    if (seq_out != NULL) {
        *seq_out = seq;
    }
    return KETEN_OK;
}

keten_err keten_events_message(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const Keten__Header *h)
{
    keten_events_item ev = { 0 };
    ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_MESSAGE;
    ev.msg_id = msg_id;
    ev.kind = h->kind;
    ev.from = h->sender;
    ev.category = h->category;
    ev.in_reply_to = h->in_reply_to.len == KETEN_MSG_ID_BYTES ? h->in_reply_to.data : NULL;
    return keten_events_append(node, txn, &ev, NULL);
}

keten_err keten_events_sent(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__SentState state)
{
    keten_events_item ev = { 0 };
    ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_SENT;
    ev.msg_id = msg_id;
    ev.sent_state = state;
    return keten_events_append(node, txn, &ev, NULL);
}

keten_err keten_events_receipt(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *recipient,
    Keten__RecipientState state)
{
    keten_events_item ev = { 0 };
    ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_RECEIPT;
    ev.msg_id = msg_id;
    ev.recipient = recipient;
    ev.recipient_state = state;
    return keten_events_append(node, txn, &ev, NULL);
}

keten_err keten_events_handled(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint64_t handled_at)
{
    keten_events_item ev = { 0 };
    ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_HANDLED;
    ev.msg_id = msg_id;
    ev.handled_at = handled_at;
    return keten_events_append(node, txn, &ev, NULL);
}

static const char *type_name(Keten__EventType t)
{
    switch (t) {
    case KETEN__EVENT_TYPE__EVENT_TYPE_MESSAGE:
        return "message";
    case KETEN__EVENT_TYPE__EVENT_TYPE_SENT:
        return "sent";
    case KETEN__EVENT_TYPE__EVENT_TYPE_RECEIPT:
        return "receipt";
    case KETEN__EVENT_TYPE__EVENT_TYPE_HANDLED:
        return "handled";
    case KETEN__EVENT_TYPE__EVENT_TYPE_ALARM_ACKNOWLEDGED:
        return "alarm-acknowledged";
    default:
        return "unknown";
    }
}

/* The data of a checked record (nodestore.h: its type's fields are there). */
static keten_err event_data(const Keten__EventRecord *r, json_t **out)
{
    *out = NULL;
    json_t *d = json_object();
    keten_err e = d == NULL ? KETEN_ERR_NOMEM
        : r->type == KETEN__EVENT_TYPE__EVENT_TYPE_ALARM_ACKNOWLEDGED
        ? KETEN_OK /* no message */
        : keten_rec_set(d, "msg_id", keten_rec_hex(r->msg_id.data, r->msg_id.len));
    switch (r->type) {
    case KETEN__EVENT_TYPE__EVENT_TYPE_MESSAGE:
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "kind", json_string(keten_policy_kind_name(r->kind)));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "from", json_string(r->from));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "category", json_string(r->category));
        }
        if (e == KETEN_OK && r->in_reply_to.len == KETEN_MSG_ID_BYTES) {
            e = keten_rec_set(
                d, "in_reply_to", keten_rec_hex(r->in_reply_to.data, r->in_reply_to.len));
        }
        break;
    case KETEN__EVENT_TYPE__EVENT_TYPE_SENT:
        if (e == KETEN_OK) {
            e = keten_rec_set(
                d, "state", json_string(keten_nodestore_sent_state_name(r->sent_state)));
        }
        break;
    case KETEN__EVENT_TYPE__EVENT_TYPE_RECEIPT:
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "recipient", json_string(r->recipient));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(
                d, "state", json_string(keten_nodestore_recipient_state_name(r->recipient_state)));
        }
        break;
    case KETEN__EVENT_TYPE__EVENT_TYPE_HANDLED:
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "handled_at", keten_rec_time(r->handled_at));
        }
        break;
    case KETEN__EVENT_TYPE__EVENT_TYPE_ALARM_ACKNOWLEDGED:
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "alarm_id", json_integer((json_int_t)r->alarm_id));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "kind", json_string(r->alarm_kind));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "by", json_string(r->by));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "note", json_string(r->note));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(d, "acknowledged_at", keten_rec_time(r->time));
        }
        break;
    default:
        break;
    }
    if (e != KETEN_OK) {
        json_decref(d);
        return e;
    }
    *out = d;
    return KETEN_OK;
}

static json_t *event_json(uint64_t seq, const char *type, json_t *data)
{
    if (data == NULL) {
        return NULL;
    }
    return json_pack("{s:I, s:s, s:o}", "id", (json_int_t)seq, "event", type, "data", data);
}

json_t *keten_events_reset_json(uint64_t oldest_kept, uint64_t last)
{
    return event_json(last, "reset", json_pack("{s:I}", "oldest", (json_int_t)oldest_kept));
}

bool keten_events_need_reset(uint64_t after_seq, uint64_t oldest_kept, uint64_t last)
{
    return after_seq > last || (after_seq < oldest_kept && oldest_kept - after_seq > 1);
}

keten_err keten_events_read(keten_node *node, uint64_t after_seq, size_t max, json_t **events,
    uint64_t *oldest_kept, uint64_t *last)
{
    *events = NULL;
    *oldest_kept = 0;
    *last = 0;
    if (max == 0 || max > KETEN_EVENTS_READ_MAX) {
        max = KETEN_EVENTS_READ_MAX;
    }
    json_t *list = json_array();
    if (list == NULL) {
        return KETEN_ERR_NOMEM;
    }
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint64_t newest = 0, oldest = 0;
    keten_err e = keten_store_begin_durable(node->store, &txn);
    if (e == KETEN_OK) {
        e = last_seq(node->store, txn, &newest);
    }
    if (e == KETEN_OK) {
        int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_EVENTS), &cur);
        if (rc != 0) {
            e = keten_err_set(
                KETEN_ERR_STORE, "opening a cursor on the event log: %s", mdb_strerror(rc));
        }
    }
    MDB_val k, v;
    int rc = MDB_NOTFOUND;
    if (e == KETEN_OK) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        oldest = rc == 0 && k.mv_size == KETEN_STORE_U64_KEY ? keten_store_u64_get(k.mv_data)
                                                             : newest + 1;
        uint8_t start[KETEN_STORE_U64_KEY];
        keten_store_u64_put(after_seq == UINT64_MAX ? after_seq : after_seq + 1, start);
        k.mv_size = sizeof start;
        k.mv_data = start;
        rc = after_seq == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    for (; e == KETEN_OK && rc == 0 && json_array_size(list) < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != KETEN_STORE_U64_KEY) {
            continue;
        }
        uint64_t seq = keten_store_u64_get(k.mv_data);
        Keten__EventRecord *r = NULL;
        json_t *one = NULL;
        keten_err de = keten_nodestore_event_decode(seq, &v, &r);
        if (de == KETEN_ERR_NOMEM) {
            e = de;
            break;
        }
        if (de != KETEN_OK) {
            /* Not read as defaults: the follower re-lists instead. */
            node->counters.store_errors++;
            KETEN_LOG(KETEN_LOG_ERR, "event not readable; followers are told to re-list",
                "seq=%llu error=\"%s\"", (unsigned long long)seq, keten_err_detail());
            keten_err_clear();
            one = event_json(seq, "reset", json_pack("{s:I}", "oldest", (json_int_t)oldest));
        } else {
            json_t *data = NULL;
            e = event_data(r, &data);
            one = e == KETEN_OK ? event_json(seq, type_name(r->type), data) : NULL;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        if (e == KETEN_OK && (one == NULL || json_array_append_new(list, one) != 0)) {
            e = KETEN_ERR_NOMEM;
        }
    }
    if (e == KETEN_OK && rc != 0 && rc != MDB_NOTFOUND) {
        e = keten_err_set(KETEN_ERR_STORE, "reading the event log: %s", mdb_strerror(rc));
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        json_decref(list);
        return e;
    }
    *events = list;
    *oldest_kept = oldest;
    *last = newest;
    return KETEN_OK;
}

static bool event_name_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 32) {
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((*p < 'a' || *p > 'z') && (*p != '-' || p == s)) {
            return false;
        }
    }
    return true;
}

keten_err keten_events_format_sse(const json_t *event, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    const json_t *id = json_object_get(event, "id");
    const char *type = json_string_value(json_object_get(event, "event"));
    const json_t *data = json_object_get(event, "data");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || !event_name_ok(type)
        || !json_is_object(data)) {
        return keten_err_set(
            KETEN_ERR_INVALID, "not an event: {\"id\":N,\"event\":NAME,\"data\":{...}} expected");
    }
    char *body = json_dumps(data, JSON_COMPACT);
    if (body == NULL) {
        return KETEN_ERR_NOMEM;
    }
    /* jansson escapes control characters in strings; a raw line break would
     * end the field (a programming error, refused rather than sent). */
    if (strpbrk(body, "\r\n") != NULL) {
        free(body);
        return keten_err_set(KETEN_ERR_INVALID, "an event's data would span lines");
    }
    size_t cap = strlen(body) + strlen(type) + 64;
    char *out = malloc(cap);
    if (out == NULL) {
        free(body);
        return KETEN_ERR_NOMEM;
    }
    int n = snprintf(out, cap, "id: %lld\nevent: %s\ndata: %s\n\n",
        (long long)json_integer_value(id), type, body);
    free(body);
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        return keten_err_set(KETEN_ERR_INVALID, "an event's text does not fit");
    }
    *text = out;
    *len = (size_t)n;
    return KETEN_OK;
}

/* One purge transaction: remove at most chunk events from the oldest while
 * they are beyond the count (seq <= by_count) or older than cutoff (ms).
 * *n: how many; *more: it stopped at chunk, not at a kept event. */
static keten_err purge_chunk(
    keten_node *node, uint64_t keep_max, uint64_t cutoff, size_t chunk, size_t *n, bool *more)
{
    *n = 0;
    *more = false;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint64_t newest = 0;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = last_seq(node->store, txn, &newest);
    }
    if (e == KETEN_OK) {
        int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_EVENTS), &cur);
        if (rc != 0) {
            e = keten_err_set(
                KETEN_ERR_STORE, "opening a cursor on the event log: %s", mdb_strerror(rc));
        }
    }
    const uint64_t by_count = newest > keep_max ? newest - keep_max : 0;
    MDB_val k, v;
    int rc = e == KETEN_OK ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    while (e == KETEN_OK && rc == 0) {
        if (*n == chunk) {
            *more = true;
            break;
        }
        uint64_t seq = k.mv_size == KETEN_STORE_U64_KEY ? keten_store_u64_get(k.mv_data) : 0;
        bool drop = k.mv_size != KETEN_STORE_U64_KEY || seq <= by_count;
        if (!drop) {
            Keten__EventRecord *r = NULL;
            keten_err de = keten_nodestore_event_decode(seq, &v, &r);
            if (de == KETEN_ERR_NOMEM) {
                e = de;
                break;
            }
            /* A damaged one cannot be told: it goes with the old ones. */
            drop = de != KETEN_OK || r->time < cutoff;
            if (de != KETEN_OK) {
                keten_err_clear();
            }
            keten_pb_free((ProtobufCMessage **)(void *)&r);
        }
        if (!drop) {
            break;
        }
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
        (*n)++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (e == KETEN_OK && rc != 0 && rc != MDB_NOTFOUND) {
        e = keten_err_set(KETEN_ERR_STORE, "purging the event log: %s", mdb_strerror(rc));
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (e == KETEN_OK && *n > 0) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        *n = 0;
        *more = false;
    }
    return e;
}

keten_err keten_events_purge_limits(keten_node *node, uint64_t now_ms, uint64_t keep_max,
    uint64_t keep_ms, size_t chunk, size_t *removed)
{
    if (removed != NULL) {
        *removed = 0;
    }
    if (chunk == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "an event purge chunk of 0");
    }
    const uint64_t cutoff = now_ms > keep_ms ? now_ms - keep_ms : 0;
    size_t total = 0;
    bool more = true;
    keten_err e = KETEN_OK;
    for (unsigned i = 0; more && i < KETEN_EVENTS_PURGE_CHUNKS_MAX; i++) {
        size_t n = 0;
        e = purge_chunk(node, keep_max, cutoff, chunk, &n, &more);
        if (e != KETEN_OK) {
            break;
        }
        total += n;
    }
    if (removed != NULL) {
        *removed = total;
    }
    return e;
}

keten_err keten_events_purge(keten_node *node, uint64_t now_ms, size_t *removed)
{
    return keten_events_purge_limits(node, now_ms, KETEN_EVENTS_KEEP_MAX, KETEN_EVENTS_KEEP_MS,
        KETEN_EVENTS_PURGE_CHUNK, removed);
}

/* store.h's commit hook: tell the listener of newly committed events. */
static void on_commit(keten_store *st, void *arg)
{
    keten_events *self = arg;
    if (!self->dirty || self->fn == NULL) {
        return;
    }
    self->dirty = false;
    MDB_txn *txn = NULL;
    uint64_t newest = 0;
    keten_err e = keten_store_begin_durable(st, &txn);
    if (e == KETEN_OK) {
        e = last_seq(st, txn, &newest);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        self->node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "cannot read the event log's newest number; followers wait",
            "error=\"%s\"", keten_err_detail());
        keten_err_clear();
        return;
    }
    if (newest > self->told) {
        self->told = newest;
        self->fn(self->ctx, newest);
    }
}

void keten_events_clear_listener(keten_node *node)
{
    if (node->events != NULL && node->store != NULL) {
        keten_store_set_commit_hook(node->store, NULL, NULL);
    }
    free(node->events);
    node->events = NULL;
}

keten_err keten_events_set_listener(keten_node *node, keten_events_listener fn, void *ctx)
{
    if (fn == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "an event listener without a function");
    }
    keten_events *self = node->events != NULL ? node->events : calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    MDB_txn *txn = NULL;
    uint64_t newest = 0;
    keten_err e = keten_store_begin_durable(node->store, &txn);
    if (e == KETEN_OK) {
        e = last_seq(node->store, txn, &newest);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        if (self != node->events) {
            free(self);
        }
        return e;
    }
    self->node = node;
    self->fn = fn;
    self->ctx = ctx;
    self->told = newest;
    self->dirty = false;
    node->events = self;
    keten_store_set_commit_hook(node->store, on_commit, self);
    return KETEN_OK;
}
