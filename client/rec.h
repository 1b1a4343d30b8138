/*
 * rec.h - small helpers for the JSON records the node keeps in its store
 * and returns over the local API: bytes as hex or base64 strings, times as
 * ISO 8601 UTC, integers.
 *
 * Ownership: json_t results are new references; buffers from
 * keten_rec_get_hexbuf()/keten_rec_get_b64() are malloc()ed (free()).
 * Thread-safe.
 */
#ifndef KETEN_NODE_REC_H
#define KETEN_NODE_REC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

json_t *keten_rec_hex(const uint8_t *bytes, size_t len);
json_t *keten_rec_b64(const uint8_t *bytes, size_t len);
json_t *keten_rec_time(uint64_t ms);

/* obj[key] as exactly len bytes of hex. */
bool keten_rec_get_hex(const json_t *obj, const char *key, uint8_t *out, size_t len);
/* obj[key] as hex of any length up to max bytes. */
keten_err keten_rec_get_hexbuf(
    const json_t *obj, const char *key, size_t max, uint8_t **out, size_t *len) KETEN_MUST_CHECK;
keten_err keten_rec_get_b64(
    const json_t *obj, const char *key, size_t max, uint8_t **out, size_t *len) KETEN_MUST_CHECK;

/* obj[key] as an unsigned integer, 0 when missing. */
uint64_t keten_rec_u64(const json_t *obj, const char *key);
/* obj[key] as a string, "" when missing. */
const char *keten_rec_str(const json_t *obj, const char *key);

/* Set obj[key] = value (steals value); KETEN_ERR_NOMEM if value is NULL. */
keten_err keten_rec_set(json_t *obj, const char *key, json_t *value) KETEN_MUST_CHECK;

#endif
