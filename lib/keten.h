/*
 * keten.h - sizes, labels and limits shared by every part of keten.
 *
 * Every number with a meaning has a name here. Domain-separation labels are
 * versioned (docs/protocol.md section 4): changing a construction means a new label.
 * Thread safety: constants only.
 */
#ifndef KETEN_KETEN_H
#define KETEN_KETEN_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "keten.pb-c.h"

#define KETEN_MSG_ID_BYTES 16
#define KETEN_MSG_ID_HEX_BYTES (KETEN_MSG_ID_BYTES * 2 + 1)
#define KETEN_HASH_BYTES 32 /* SHA-256 and BLAKE2b-256 */
#define KETEN_SIGN_PK_BYTES crypto_sign_PUBLICKEYBYTES /* 32 */
#define KETEN_SIGN_SK_BYTES crypto_sign_SECRETKEYBYTES /* 64 */
#define KETEN_SIG_BYTES crypto_sign_BYTES /* 64 */
#define KETEN_ENC_PK_BYTES crypto_box_PUBLICKEYBYTES /* 32 */
#define KETEN_ENC_SK_BYTES crypto_box_SECRETKEYBYTES /* 32 */
#define KETEN_CURVE_KEY_BYTES 32 /* CurveZMQ transport key, raw */
#define KETEN_CONTENT_KEY_BYTES 32
#define KETEN_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24 */
#define KETEN_AEAD_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES /* 16 */
#define KETEN_SEALED_KEY_BYTES (crypto_box_SEALBYTES + KETEN_CONTENT_KEY_BYTES) /* 80 */

/* Names: node ids, roles, categories, purposes. */
#define KETEN_NAME_MAX 32 /* node ids and roles: [a-z0-9-]{1,32} */
#define KETEN_LABEL_MAX 64 /* categories and purposes: [a-z0-9-/.]{1,64} */
#define KETEN_ORG_MAX 128 /* organisation name, printable UTF-8 */
#define KETEN_REASON_MAX 256 /* revocation reason text */

/* Caps, checked before anything is allocated. */
#define KETEN_MAX_RECIPIENTS 64
#define KETEN_ENVELOPE_MAX (1u << 20) /* 1 MiB serialized envelope */
#define KETEN_DIRECTORY_MAX (16u << 20) /* 16 MiB serialized signed directory */
#define KETEN_REQUEST_MAX (64u << 10)
#define KETEN_ANCHOR_MAX (64u << 10)
#define KETEN_KEYFILE_MAX (16u << 10)
#define KETEN_SIGNAL_JSON_MAX (640u << 10) /* its binary form must fit the 512 KiB bucket */
#define KETEN_MAX_ADMINS 32
#define KETEN_CHECKPOINT_MAX (64u << 10) /* a signed note with its cosignatures */
/* One serialized broker <-> node Frame (docs/wire.md): the largest body is a
 * DirectoryPush of one directory version. Both ends set ZMQ_MAXMSGSIZE to it
 * plus KETEN_CURVE_OVERHEAD. */
#define KETEN_FRAME_MAX (KETEN_DIRECTORY_MAX + (64u << 10))
/* What CurveZMQ adds to a one-part message on the wire: the MESSAGE
 * command name (8), its nonce (8), the flags byte (1) and the MAC (16).
 * libzmq's ZMQ_MAXMSGSIZE counts the encrypted message, so a reader sets it
 * to KETEN_FRAME_MAX + this for a frame of KETEN_FRAME_MAX bytes to pass. */
#define KETEN_CURVE_OVERHEAD 33u

/* Domain-separation labels (docs/protocol.md section 4). Sizes exclude the NUL. */
#define KETEN_LABEL_DIRECTORY "keten/directory/v1"
#define KETEN_LABEL_REQUEST "keten/request/v1"
#define KETEN_LABEL_ENVELOPE "keten/envelope/v1"
#define KETEN_LABEL_AEAD "keten/aead/v1"
#define KETEN_LABEL_COMMIT "keten/commit/v1"
#define KETEN_KDF_CONTEXT "ketenenc" /* crypto_kdf context, exactly 8 bytes */
#define KETEN_KDF_SUBKEY_ENC 1

/* Defaults. */
#define KETEN_DIRECTORY_VALID_DAYS_DEFAULT 14
#define KETEN_MS_PER_DAY (24ull * 3600ull * 1000ull)
#define KETEN_MAX_LIFETIME_DEFAULT_MS (7ull * KETEN_MS_PER_DAY)

#endif
