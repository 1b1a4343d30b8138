/*
 * signal_json.h - the Signal payload (module "signal": keten_signal_*) and
 * its JSON form at the edges: JSON (the signal format of docs/protocol.md) <->
 * protobuf, with jansson.
 *
 * JSON fields: type, purpose (required labels); summary (string, <= 4096
 * bytes); nature ("hard" or "soft"); grading {source "A".."F", information
 * "1".."6"} (required when nature is "soft"); handling ("TLP:CLEAR",
 * "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED"); observed_at (ISO
 * 8601 UTC); observed_by (string <= 128); subjects [{kind, value}] (<= 64);
 * attachments [{name, media_type, data_base64}] (<= 16). Unknown fields are
 * refused. Errors are KETEN_ERR_JSON / KETEN_ERR_INVALID / KETEN_ERR_TOO_LARGE
 * with a detail naming the field and what is wrong ("grading.source: must be
 * one of A-F").
 *
 * Ownership: *out Signal freed with keten_signal_free(); JSON strings are
 * malloc()ed (free()). Thread-safe.
 */
#ifndef KETEN_SIGNAL_JSON_H
#define KETEN_SIGNAL_JSON_H

#include <stddef.h>

#include "directory.h"
#include "err.h"
#include "keten.h"

/* Parse JSON text (at most KETEN_SIGNAL_JSON_MAX bytes). */
keten_err keten_signal_from_json(const char *json, size_t len, Keten__Signal **out)
    KETEN_MUST_CHECK;

/* Compact JSON of a signal (keys in the order of section 5). */
keten_err keten_signal_to_json(const Keten__Signal *signal, char **out) KETEN_MUST_CHECK;

/* The same, as a jansson json_t* (returned as void* to keep jansson out of
 * this header); the caller json_decref()s it. NULL on failure. */
void *keten_signal_to_jansson(const Keten__Signal *signal);

/* Check a parsed signal (also one that came out of a ciphertext): type and
 * purpose registered in dir (if dir != NULL), field syntax as above. */
keten_err keten_signal_check(const Keten__Signal *signal, const keten_directory *dir)
    KETEN_MUST_CHECK;

/* Serialize / parse the protobuf form (the plaintext inside an envelope). */
keten_err keten_signal_pack(const Keten__Signal *signal, uint8_t **out, size_t *out_len)
    KETEN_MUST_CHECK;
keten_err keten_signal_unpack(const uint8_t *buf, size_t len, Keten__Signal **out)
    KETEN_MUST_CHECK;

/* Free a Signal from keten_signal_from_json or keten_signal_unpack; accepts
 * NULL; sets *signal_p = NULL. Attachment bytes are wiped. */
void keten_signal_free(Keten__Signal **signal_p);

#endif
