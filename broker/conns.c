#include "conns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util.h"

#define CONNS_FD_MAX (1 << 20) /* descriptors beyond this are not tracked */

conns *conns_new(void)
{
    conns *self = calloc(1, sizeof *self);
    if (self != NULL) {
        self->next_session = 1;
    }
    return self;
}

void conns_destroy(conns **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    conns *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        free(self->v[i]->notice_v);
        free(self->v[i]);
    }
    free(self->v);
    free(self->fd_session);
    free(self->peers);
    free(self);
    *self_p = NULL;
}

/* The record of node, made (with a full answer budget as of now_ms) if it
 * has none. */
static keten_err peer_of(conns *self, const char *node, uint64_t now_ms, conn_peer **out)
{
    for (size_t i = 0; i < self->n_peers; i++) {
        if (strcmp(self->peers[i].node, node) == 0) {
            *out = &self->peers[i];
            return KETEN_OK;
        }
    }
    if (self->n_peers == self->cap_peers) {
        size_t cap = self->cap_peers == 0 ? 16 : 2 * self->cap_peers;
        conn_peer *v = realloc(self->peers, cap * sizeof *v);
        if (v == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "records of %zu nodes", cap);
        }
        self->peers = v;
        self->cap_peers = cap;
    }
    conn_peer *a = &self->peers[self->n_peers++];
    memset(a, 0, sizeof *a);
    snprintf(a->node, sizeof a->node, "%s", node);
    a->bytes = CONN_ANSWER_BYTES_BURST;
    a->at_ms = now_ms;
    *out = a;
    return KETEN_OK;
}

keten_err conns_answer_take(
    conns *self, const char *node, uint64_t bytes, uint64_t now_ms, bool *ok, uint64_t *wait_ms)
{
    *ok = false;
    *wait_ms = 0;
    conn_peer *a = NULL;
    keten_err e = peer_of(self, node, now_ms, &a);
    if (e != KETEN_OK) {
        return e;
    }
    if (now_ms > a->at_ms) {
        uint64_t dt = now_ms - a->at_ms;
        uint64_t room = CONN_ANSWER_BYTES_BURST - a->bytes;
        uint64_t gain = dt >= room / CONN_ANSWER_BYTES_PER_S * 1000 + 1000
            ? room
            : dt * CONN_ANSWER_BYTES_PER_S / 1000;
        a->bytes += gain < room ? gain : room;
        a->at_ms = now_ms;
    }
    if (bytes <= a->bytes) {
        a->bytes -= bytes;
        *ok = true;
        return KETEN_OK;
    }
    uint64_t missing = bytes - a->bytes;
    *wait_ms = (missing * 1000 + CONN_ANSWER_BYTES_PER_S - 1) / CONN_ANSWER_BYTES_PER_S;
    return KETEN_OK;
}

conn *conns_find_rid(const conns *self, const uint8_t *rid, size_t len)
{
    for (size_t i = 0; i < self->n; i++) {
        conn *c = self->v[i];
        if (c->rid_len == len && memcmp(c->rid, rid, len) == 0) {
            return c;
        }
    }
    return NULL;
}

conn *conns_find_node(const conns *self, const char *node)
{
    for (size_t i = 0; i < self->n; i++) {
        if (strcmp(self->v[i]->node, node) == 0) {
            return self->v[i];
        }
    }
    return NULL;
}

bool conns_same_peer(const conn *c, const char *user_id, const char *keyhex)
{
    if (user_id == NULL || keyhex == NULL || strlen(keyhex) != 2 * KETEN_CURVE_KEY_BYTES
        || strcmp(user_id, c->node) != 0) {
        return false;
    }
    uint8_t key[KETEN_CURVE_KEY_BYTES];
    if (keten_unhex(keyhex, key, sizeof key) != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    return sodium_memcmp(key, c->key, sizeof key) == 0;
}

static uint64_t session_of(const conns *self, int fd)
{
    if (fd < 0 || (size_t)fd >= self->n_fd) {
        return 0;
    }
    return self->fd_session[fd];
}

uint64_t conns_fd_session(const conns *self, int fd)
{
    return session_of(self, fd);
}

static bool auto_rid(const uint8_t *rid, size_t len, uint32_t *n)
{
    if (len != 5 || rid[0] != 0) {
        return false;
    }
    *n = (uint32_t)rid[1] << 24 | (uint32_t)rid[2] << 16 | (uint32_t)rid[3] << 8 | rid[4];
    return true;
}

int conns_rid_order(const conn *old, const uint8_t *rid, size_t len)
{
    uint32_t a, b;
    if (!auto_rid(old->rid, old->rid_len, &a) || !auto_rid(rid, len, &b) || a == b) {
        return 0;
    }
    /* modulo 2^32: libzmq starts the counter at a random value */
    return (uint32_t)(b - a) < (1u << 31) ? 1 : -1;
}

keten_err conns_closed(conns *self, const conn *c)
{
    uint32_t n;
    if (!auto_rid(c->rid, c->rid_len, &n)) {
        return KETEN_OK; /* a routing id of the peer's own: nothing to order by */
    }
    conn_peer *p = NULL;
    keten_err e = peer_of(self, c->node, keten_mono_ms(), &p);
    if (e != KETEN_OK) {
        return e;
    }
    /* A connection that ended later than the one remembered, only. */
    if (!p->has_closed || (uint32_t)(n - p->closed_rid) < (1u << 31)) {
        p->closed_rid = n;
        p->has_closed = true;
        p->closed_frames = 0;
    }
    return KETEN_OK;
}

bool conns_from_closed(
    conns *self, const char *node, const uint8_t *rid, size_t len, uint64_t *dropped)
{
    *dropped = 0;
    uint32_t n;
    if (!auto_rid(rid, len, &n)) {
        return false;
    }
    for (size_t i = 0; i < self->n_peers; i++) {
        conn_peer *p = &self->peers[i];
        /* equal, or earlier modulo 2^32 */
        if (strcmp(p->node, node) == 0 && p->has_closed
            && (uint32_t)(p->closed_rid - n) < (1u << 31)) {
            *dropped = ++p->closed_frames;
            return true;
        }
    }
    return false;
}

bool conns_newer(const conn *old, uint64_t new_session, bool hello)
{
    if (old->session == 0) {
        return true; /* nothing to compare with: the newest frame wins */
    }
    if (new_session == old->session) {
        return hello;
    }
    return new_session > old->session;
}

keten_err conns_add(conns *self, const uint8_t *rid, size_t len, const char *node,
    const uint8_t key[static KETEN_CURVE_KEY_BYTES], int fd, uint64_t now, conn **out)
{
    *out = NULL;
    if (len == 0 || len > CONN_RID_MAX || strlen(node) > KETEN_NAME_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "connection with a routing id of %zu bytes", len);
    }
    if (self->n == self->cap) {
        size_t cap = self->cap == 0 ? 16 : self->cap * 2;
        conn **v = realloc(self->v, cap * sizeof *v);
        if (v == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "connection table of %zu entries", cap);
        }
        self->v = v;
        self->cap = cap;
    }
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "connection entry");
    }
    memcpy(c->rid, rid, len);
    c->rid_len = len;
    memcpy(c->node, node, strlen(node) + 1);
    memcpy(c->key, key, KETEN_CURVE_KEY_BYTES);
    c->session = session_of(self, fd);
    c->more = true;
    c->notices = true;
    c->connected_at = now;
    self->v[self->n++] = c;
    *out = c;
    return KETEN_OK;
}

void conns_remove(conns *self, conn *c)
{
    for (size_t i = 0; i < self->n; i++) {
        if (self->v[i] == c) {
            self->v[i] = self->v[--self->n];
            free(c->notice_v);
            free(c);
            return;
        }
    }
}

void conns_fd_accepted(conns *self, int fd)
{
    if (fd < 0 || fd >= CONNS_FD_MAX) {
        return;
    }
    if ((size_t)fd >= self->n_fd) {
        size_t n = (size_t)fd + 64;
        uint64_t *v = realloc(self->fd_session, n * sizeof *v);
        if (v == NULL) {
            return; /* untracked: such a connection ends only by replacement */
        }
        memset(v + self->n_fd, 0, (n - self->n_fd) * sizeof *v);
        self->fd_session = v;
        self->n_fd = n;
    }
    self->fd_session[fd] = self->next_session++;
}

conn *conns_fd_disconnected(conns *self, int fd)
{
    uint64_t s = session_of(self, fd);
    if (s == 0) {
        return NULL;
    }
    self->fd_session[fd] = 0;
    for (size_t i = 0; i < self->n; i++) {
        if (self->v[i]->session == s) {
            return self->v[i];
        }
    }
    return NULL;
}
