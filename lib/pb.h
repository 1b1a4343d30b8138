/*
 * pb.h - protobuf-c helpers: size-capped parsing and the canonical check.
 *
 * keten signs protobuf messages as bytes. keten_pb_unpack_canonical() parses
 * bytes and refuses them (KETEN_ERR_NOT_CANONICAL) unless the message, and
 * every message nested in it, has no unknown fields and re-serializes to
 * exactly the same bytes: duplicated fields, default values written out,
 * fields out of order or non-minimal varints are all refused, so there is
 * one reading of every signed message for every parser (docs/protocol.md section 3).
 *
 * keten_pb_unpack() parses without the canonical check but still refuses
 * unknown fields anywhere; use it for unsigned frames.
 *
 * Ownership: *out is freed with protobuf_c_message_free_unpacked(*out, NULL)
 * (or the generated __free_unpacked). keten_pb_pack() returns malloc()ed
 * bytes. Thread safety: reentrant.
 * Errors: KETEN_ERR_TOO_LARGE (len > max), KETEN_ERR_MALFORMED (does not
 * parse; also empty input when the message has required content),
 * KETEN_ERR_NOT_CANONICAL, KETEN_ERR_NOMEM.
 */
#ifndef KETEN_PB_H
#define KETEN_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

keten_err keten_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
    size_t len, size_t max, const char *what, ProtobufCMessage **out) KETEN_MUST_CHECK;

keten_err keten_pb_unpack_canonical(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
    size_t len, size_t max, const char *what, ProtobufCMessage **out) KETEN_MUST_CHECK;

/* Serialize msg into a malloc()ed buffer. */
keten_err keten_pb_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
    KETEN_MUST_CHECK;

/* Free an unpacked message; accepts NULL and sets *msg_p = NULL. */
void keten_pb_free(ProtobufCMessage **msg_p);

#define KETEN_PB_UNPACK(lower, buf, len, max, what, out)                                   \
    keten_pb_unpack(&lower##__descriptor, (buf), (len), (max), (what),                          \
        (ProtobufCMessage **)(void *)(out))
#define KETEN_PB_UNPACK_CANONICAL(lower, buf, len, max, what, out)                               \
    keten_pb_unpack_canonical(&lower##__descriptor, (buf), (len), (max), (what),                \
        (ProtobufCMessage **)(void *)(out))

#endif
