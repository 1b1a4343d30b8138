/*
 * fuzz_checkpoint.c - checkpoint notes (C2SP signed note + tlog-checkpoint +
 * tlog-cosignature) as a node receives them: keten_checkpoint_open with the
 * broker's log key, keten_checkpoint_parse_body, keten_checkpoint_cosignature_verify
 * for every partner of the test network, keten_checkpoint_witnesses, and
 * adding a new cosignature line (keten_checkpoint_cosignature_sign,
 * keten_checkpoint_add_line).
 *
 * Invariants:
 *   1. a body that parses re-serializes (keten_checkpoint_body) to exactly
 *      the input: one reading, one serialization;
 *   2. a note the broker's key opens starts with the body of the checkpoint
 *      it returns, followed by the empty line;
 *   3. a partner whose cosignature verifies is counted by
 *      keten_checkpoint_witnesses; the count never exceeds the partners and
 *      "witnessed" is count >= quorum;
 *   4. a note that parses takes a new cosignature line of a partner that had
 *      none: the line then verifies, the partner is counted once more, and
 *      whether the broker's signature opens is unchanged;
 *   5. a note the broker's key opens, trimmed (keten_checkpoint_note_trim,
 *      as the node stores what the broker sent), opens too with the same
 *      checkpoint, keten_checkpoint_witnesses gives the same count and
 *      verdict, a partner's cosignature that verified verifies in it
 *      (one that did not may: a bad line after the first is dropped), and
 *      trimming it again gives the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_common.h"

#define WITNESS "belastingdienst"

typedef struct witness_view {
    keten_err e;
    size_t count;
    bool witnessed;
    keten_err cosig[FUZZ_N_NODES];
} witness_view;

/* The partners of version 2 and their current signing keys. */
static const uint8_t *partner_pk(size_t i, const char **id)
{
    const fuzz_network *net = fuzz_net();
    *id = fuzz_node_ids[i];
    const Keten__NodeCert *c = keten_directory_find_id(net->d2, *id);
    if (c == NULL || strcmp(c->role, "broker") == 0) {
        return NULL;
    }
    return c->sign_pk.data;
}

static void witnesses(const char *note, size_t len, witness_view *wv)
{
    const fuzz_network *net = fuzz_net();
    wv->count = 0;
    wv->witnessed = false;
    wv->e = keten_checkpoint_witnesses(note, len, net->d2, &wv->count, &wv->witnessed);
    size_t ok = 0;
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        const char *id = NULL;
        const uint8_t *pk = partner_pk(i, &id);
        wv->cosig[i] = KETEN_ERR_NOT_FOUND;
        if (pk == NULL) {
            continue;
        }
        uint64_t t = 0;
        wv->cosig[i] = keten_checkpoint_cosignature_verify(note, len, id, pk, &t);
        if (wv->cosig[i] == KETEN_OK) {
            ok++;
            FUZZ_CHECK(wv->e == KETEN_OK);
        }
    }
    if (wv->e == KETEN_OK) {
        FUZZ_CHECK(wv->count >= ok);
        FUZZ_CHECK(wv->count <= keten_directory_partner_count(net->d2));
        FUZZ_CHECK(wv->witnessed == (wv->count >= keten_directory_quorum(net->d2)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    const char *text = (const char *)data;
    const uint8_t *log_pk = fuzz_node(FUZZ_BROKER)->log_pk;

    /* 1 */
    keten_checkpoint cp;
    if (keten_checkpoint_parse_body(text, size, &cp) == KETEN_OK) {
        char *body = NULL;
        FUZZ_MUST(keten_checkpoint_body(&cp, &body));
        FUZZ_CHECK(strlen(body) == size && memcmp(body, data, size) == 0);
        free(body);
    }

    /* 2 */
    keten_checkpoint opened;
    keten_err eo = keten_checkpoint_open(text, size, FUZZ_BROKER, log_pk, &opened);
    if (eo == KETEN_OK) {
        char *body = NULL;
        FUZZ_MUST(keten_checkpoint_body(&opened, &body));
        size_t bl = strlen(body);
        FUZZ_CHECK(bl + 1 < size && memcmp(body, data, bl) == 0 && data[bl] == '\n');
        keten_checkpoint again;
        FUZZ_MUST(keten_checkpoint_parse_body(body, bl, &again));
        FUZZ_CHECK(strcmp(again.origin, opened.origin) == 0 && again.size == opened.size
            && memcmp(again.root, opened.root, KETEN_HASH_BYTES) == 0
            && again.dir_version == opened.dir_version
            && memcmp(again.dir_hash, opened.dir_hash, KETEN_HASH_BYTES) == 0);
        free(body);
    }

    /* 3 */
    witness_view before;
    witnesses(text, size, &before);

    /* 4 */
    size_t w = 2; /* belastingdienst */
    FUZZ_CHECK(strcmp(fuzz_node_ids[w], WITNESS) == 0);
    if (before.e == KETEN_OK && before.cosig[w] == KETEN_ERR_NOT_FOUND) {
        char *line = NULL;
        FUZZ_MUST(keten_checkpoint_cosignature_sign(
            text, size, WITNESS, net->nodes[w]->sign_sk, FUZZ_T_DIR / 1000, &line));
        char *with = NULL;
        keten_err ea = keten_checkpoint_add_line(text, size, line, &with);
        if (ea == KETEN_OK) {
            witness_view after;
            size_t wl = strlen(with);
            witnesses(with, wl, &after);
            FUZZ_CHECK(after.e == KETEN_OK && after.cosig[w] == KETEN_OK);
            FUZZ_CHECK(after.count == before.count + 1);
            keten_checkpoint o2;
            keten_err eo2 = keten_checkpoint_open(with, wl, FUZZ_BROKER, log_pk, &o2);
            FUZZ_CHECK((eo2 == KETEN_OK) == (eo == KETEN_OK));
        } else {
            /* A line of that key name exists (one that did not verify as
             * ours) or the note would grow over the cap. */
            FUZZ_CHECK(ea == KETEN_ERR_EXISTS || ea == KETEN_ERR_TOO_LARGE);
            FUZZ_CHECK(with == NULL);
        }
        free(with);
        free(line);
    }
    /* 5 */
    if (eo == KETEN_OK) {
        char *trimmed = NULL;
        FUZZ_MUST(keten_checkpoint_note_trim(text, size, net->d2, &trimmed));
        size_t tl = strlen(trimmed);
        FUZZ_CHECK(tl <= size);
        keten_checkpoint t;
        FUZZ_MUST(keten_checkpoint_open(trimmed, tl, FUZZ_BROKER, log_pk, &t));
        FUZZ_CHECK(strcmp(t.origin, opened.origin) == 0 && t.size == opened.size
            && memcmp(t.root, opened.root, KETEN_HASH_BYTES) == 0
            && t.dir_version == opened.dir_version
            && memcmp(t.dir_hash, opened.dir_hash, KETEN_HASH_BYTES) == 0);
        witness_view tw;
        witnesses(trimmed, tl, &tw);
        FUZZ_CHECK(tw.e == before.e);
        if (before.e == KETEN_OK) {
            FUZZ_CHECK(tw.count == before.count && tw.witnessed == before.witnessed);
        }
        for (size_t i = 0; i < FUZZ_N_NODES; i++) {
            FUZZ_CHECK(before.cosig[i] != KETEN_OK || tw.cosig[i] == KETEN_OK);
        }
        char *twice = NULL;
        FUZZ_MUST(keten_checkpoint_note_trim(trimmed, tl, net->d2, &twice));
        FUZZ_CHECK(strcmp(twice, trimmed) == 0);
        free(twice);
        free(trimmed);
    }
    keten_err_clear();
    return 0;
}
