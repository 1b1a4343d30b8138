/*
 * fuzz_common_node.c - the node the harnesses fuzz_node_frame and fuzz_api
 * drive (see fuzz_common.h); kept apart from fuzz_common.c because only
 * they link the node's modules.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "api.h"
#include "dirs.h"
#include "err.h"
#include "fuzz_common.h"
#include "inbox.h"
#include "link.h"
#include "node.h"
#include "pb.h"
#include "store.h"
#include "util.h"
#include "witness.h"

void fuzz_node_setup(keten_node *node, const fuzz_files *f)
{
    node->opts = (keten_node_opts) {
        .home = f->home,
        .anchor = f->anchor,
        .directory = f->directory[0],
        .broker = f->endpoint,
        .witness_timeout_ms = KETEN_NODE_WITNESS_TIMEOUT_MS,
        .checkpoint_keep_ms = KETEN_NODE_CHECKPOINT_KEEP_MS,
        .checkpoint_hourly_ms = KETEN_NODE_CHECKPOINT_HOURLY_MS,
    };
    node->me = fuzz_net()->nodes[0];
    FUZZ_MUST(keten_directory_anchor_load(f->anchor, &node->anchor));
    node->zctx = zmq_ctx_new();
    FUZZ_CHECK(node->zctx != NULL);
    FUZZ_MUST(keten_link_new(
        node->zctx, f->endpoint, node->me, fuzz_node(FUZZ_BROKER)->transport_pk, &node->link));
    keten_err_clear();
}

void fuzz_node_open(keten_node *node)
{
    memset(&node->counters, 0, sizeof node->counters);
    node->next_request_id = 0;
    node->started_at = keten_now_ms();
    node->dir_needed = 0;
    node->dir_needed_since = 0;
    node->dir_requested_at = 0;
    node->last_resend = 0;
    node->resend_active = false;
    node->resend_everything = false;
    node->resend_has_pos = false;
    node->resend_started = 0;
    node->dir_alarmed = false;
    node->n_notice_acks = 0;
    memset(node->submit_rid, 0, sizeof node->submit_rid);
    memset(node->submit_id, 0, sizeof node->submit_id);
    node->submit_next = 0;
    node->n_receipts = 0;
    node->cap_receipts = 0;
    node->frame = NULL;
    node->relink = false;
    node->stop = false;
    FUZZ_MUST(keten_store_open(node->opts.home, &node->store));
    FUZZ_MUST(keten_dirs_load(node));
    FUZZ_MUST(keten_witness_new(node, &node->witness));
    keten_err_clear();
}

void fuzz_node_close(keten_node *node)
{
    keten_witness_destroy(&node->witness);
    free(node->receipts);
    node->receipts = NULL;
    node->n_receipts = 0;
    node->cap_receipts = 0;
    keten_directory_destroy(&node->dir);
    keten_store_destroy(&node->store);
}

void fuzz_node_teardown(keten_node *node)
{
    fuzz_node_close(node);
    keten_api_destroy(&node->api);
    keten_link_destroy(&node->link);
    if (node->zctx != NULL) {
        zmq_ctx_term(node->zctx);
        node->zctx = NULL;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&node->anchor);
}

void fuzz_node_batch_begin(keten_node *node)
{
    FUZZ_MUST(keten_store_batch_begin(node->store));
    keten_link_hold(node->link);
    keten_api_hold(node->api);
}

void fuzz_node_batch_end(keten_node *node)
{
    keten_inbox_flush_receipts(node);
    keten_err e = keten_store_batch_end(node->store);
    keten_err_clear();
    keten_link_release(node->link, false);
    keten_api_release(node->api, e == KETEN_OK);
}
