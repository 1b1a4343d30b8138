/*
 * rec.h - small helpers for the JSON the node returns at its edges (local
 * API replies, the command line, the --on-message hook): bytes as hex or
 * base64 strings, times as ISO 8601 UTC. The store keeps protobuf records
 * (nodestore.h), never JSON.
 *
 * Ownership: json_t results are new references. Thread-safe.
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

/* Set obj[key] = value (steals value); KETEN_ERR_NOMEM if value is NULL. */
keten_err keten_rec_set(json_t *obj, const char *key, json_t *value) KETEN_MUST_CHECK;

#endif
