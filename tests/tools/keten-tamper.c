/*
 * keten-tamper - what a malicious broker operator would do to hide a past
 * record, for the node's integration tests (never for production): with the
 * broker stopped, rewrite one leaf of the audit log in the broker's LMDB
 * store (its `time` moves by one millisecond) and recompute every stored
 * Merkle subtree hash (lib/merkle.h layout: "audit-node", level || index),
 * so that the log is internally consistent again and its new roots differ
 * from everything signed before. Nodes that hold an earlier checkpoint must
 * catch this with their consistency check.
 *
 *   keten-tamper --store BROKER_HOME/store --leaf N
 */
#include <getopt.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keten.h"
#include "merkle.h"
#include "pb.h"
#include "util.h"

static void be64(uint64_t v, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | in[i];
    }
    return v;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "keten-tamper: %s: %s\n", what, mdb_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "store", required_argument, NULL, 's' },
        { "leaf", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    const char *store = NULL;
    uint64_t target = 0;
    bool have_leaf = false;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 's') {
            store = optarg;
        } else if (c == 'l' && keten_cli_parse_uint(optarg, 0, UINT64_MAX - 1, &target)) {
            have_leaf = true;
        } else {
            fprintf(stderr, "usage: keten-tamper --store BROKER_HOME/store --leaf N\n");
            return 2;
        }
    }
    if (store == NULL || !have_leaf) {
        fprintf(stderr, "usage: keten-tamper --store BROKER_HOME/store --leaf N\n");
        return 2;
    }
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi leaf_db, node_db;
    MDB_cursor *cur = NULL;
    keten_hash *hashes = NULL;
    int rc;
    if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 64)) != 0
        || (rc = mdb_env_set_mapsize(env, 1ull << 30)) != 0
        || (rc = mdb_env_open(env, store, 0, 0600)) != 0) {
        return fail(store, rc);
    }
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0
        || (rc = mdb_dbi_open(txn, "audit-leaf", 0, &leaf_db)) != 0
        || (rc = mdb_dbi_open(txn, "audit-node", 0, &node_db)) != 0) {
        return fail("opening the audit tables", rc);
    }
    MDB_stat st;
    if ((rc = mdb_stat(txn, leaf_db, &st)) != 0) {
        return fail("mdb_stat", rc);
    }
    uint64_t n = st.ms_entries;
    if (target >= n) {
        fprintf(stderr, "keten-tamper: the log has %llu leaves; no leaf %llu\n",
            (unsigned long long)n, (unsigned long long)target);
        return 1;
    }
    /* Rewrite the leaf. */
    uint8_t key[8];
    be64(target, key);
    MDB_val k = { 8, key }, v;
    if ((rc = mdb_get(txn, leaf_db, &k, &v)) != 0) {
        return fail("reading the leaf", rc);
    }
    Keten__AuditRecord *r = NULL;
    if (KETEN_PB_UNPACK(
            keten__audit_record, v.mv_data, v.mv_size, KETEN_MERKLE_LEAF_MAX, "leaf", &r)
        != KETEN_OK) {
        fprintf(
            stderr, "keten-tamper: leaf %llu is not an audit record\n", (unsigned long long)target);
        return 1;
    }
    r->time += 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (keten_pb_pack((const ProtobufCMessage *)r, &buf, &len) != KETEN_OK) {
        return 1;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    MDB_val nv = { len, buf };
    if ((rc = mdb_put(txn, leaf_db, &k, &nv, 0)) != 0) {
        return fail("rewriting the leaf", rc);
    }
    free(buf);
    /* Every leaf hash, then every stored subtree recomputed from them. */
    hashes = calloc(n, sizeof *hashes);
    if (hashes == NULL) {
        return 1;
    }
    for (uint64_t i = 0; i < n; i++) {
        be64(i, key);
        MDB_val lk = { 8, key }, lv;
        if ((rc = mdb_get(txn, leaf_db, &lk, &lv)) != 0) {
            return fail("reading a leaf", rc);
        }
        keten_merkle_leaf_hash(lv.mv_data, lv.mv_size, hashes[i]);
    }
    if ((rc = mdb_cursor_open(txn, node_db, &cur)) != 0) {
        return fail("mdb_cursor_open", rc);
    }
    size_t rewritten = 0;
    MDB_val nk, nodev;
    for (rc = mdb_cursor_get(cur, &nk, &nodev, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &nk, &nodev, MDB_NEXT)) {
        if (nk.mv_size != 9) {
            continue;
        }
        /* Key: the subtree's last leaf (8, big-endian), then its level. */
        const uint8_t *kb = nk.mv_data;
        uint64_t last = get_be64(kb);
        unsigned level = kb[8];
        if (level >= 63) {
            continue;
        }
        uint64_t width = 1ull << level;
        if (last >= n || (last + 1) % width != 0) {
            continue;
        }
        uint64_t first = last + 1 - width;
        keten_hash h;
        keten_merkle_root((const keten_hash *)(hashes + first), width, h);
        if (nodev.mv_size == KETEN_HASH_BYTES && memcmp(nodev.mv_data, h, KETEN_HASH_BYTES) != 0) {
            MDB_val hv = { KETEN_HASH_BYTES, h };
            if ((rc = mdb_cursor_put(cur, &nk, &hv, MDB_CURRENT)) != 0) {
                return fail("rewriting a node", rc);
            }
            rewritten++;
        }
    }
    mdb_cursor_close(cur);
    if ((rc = mdb_txn_commit(txn)) != 0) {
        return fail("commit", rc);
    }
    mdb_env_close(env);
    free(hashes);
    printf("rewrote leaf %llu of %llu and %zu stored subtree hashes\n", (unsigned long long)target,
        (unsigned long long)n, rewritten);
    return 0;
}
