/*
 * err.h - the one error type of libketen.
 *
 * Every fallible function returns an enum keten_err and is marked
 * KETEN_MUST_CHECK. KETEN_OK is 0. keten_err_str() gives a short, static,
 * human-readable text. A function that can say more (which field, which
 * file, which rule) also records a detail line with keten_err_set(); the
 * detail is thread-local and valid until the next keten_err_set() call in the
 * same thread. Callers print "strerror: detail".
 *
 * keten_err_exit_code() maps an error to the command-line exit codes of
 * docs/protocol.md and the man pages: 3 for verification failures (bad signature, tampering,
 * rollback, inconsistent log), 1 for everything else.
 */
#ifndef KETEN_ERR_H
#define KETEN_ERR_H

#include <stdbool.h>

#define KETEN_MUST_CHECK __attribute__((warn_unused_result))
#define KETEN_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef enum keten_err {
    KETEN_OK = 0,
    KETEN_ERR_NOMEM,           /* out of memory */
    KETEN_ERR_IO,              /* a file or socket operation failed */
    KETEN_ERR_EXISTS,          /* refusing to overwrite */
    KETEN_ERR_NOT_FOUND,       /* no such file, node, message, ... */
    KETEN_ERR_PERMISSIONS,     /* refused for safety: a file's mode or kind, a caller (see below) */
    KETEN_ERR_PASSPHRASE,      /* wrong passphrase (or a tampered key file) */
    KETEN_ERR_NEED_PASSPHRASE, /* the key file is encrypted and no passphrase was given */
    KETEN_ERR_TOO_LARGE,       /* input over its size cap */
    KETEN_ERR_TRUNCATED,       /* input shorter than its format needs */
    KETEN_ERR_MALFORMED,       /* input does not parse */
    KETEN_ERR_NOT_CANONICAL,   /* signed bytes with unknown, duplicated or non-canonical fields */
    KETEN_ERR_WRONG_TYPE,      /* a file of another kind than expected */
    KETEN_ERR_INVALID,         /* a value outside what is allowed */
    KETEN_ERR_BAD_NAME,        /* an id, role, category or purpose with bad syntax */
    KETEN_ERR_BAD_SIGNATURE,   /* a signature does not verify */
    KETEN_ERR_WRONG_NETWORK,   /* signed for another network */
    KETEN_ERR_EXPIRED,         /* past its expiry */
    KETEN_ERR_NOT_YET_VALID,   /* before its validity starts */
    KETEN_ERR_ROLLBACK,        /* an older or conflicting version */
    KETEN_ERR_THRESHOLD,       /* fewer than k valid signatures of distinct administrators */
    KETEN_ERR_DUPLICATE_KEY,   /* a key listed twice or reused */
    KETEN_ERR_DUPLICATE_ID,    /* an id listed twice */
    KETEN_ERR_UNKNOWN_NODE,    /* not a current node of the directory */
    KETEN_ERR_REVOKED,         /* the certificate was revoked */
    KETEN_ERR_NOT_RECIPIENT,   /* this node is not among the recipients */
    KETEN_ERR_KEYS_HASH,       /* the wrapped keys do not match the header's hash */
    KETEN_ERR_COMMITMENT,      /* the content key does not match the commitment */
    KETEN_ERR_DECRYPT,         /* authenticated decryption failed */
    KETEN_ERR_MISMATCH,        /* two things that must agree do not */
    KETEN_ERR_POLICY,          /* the sharing policy refuses it */
    KETEN_ERR_UNREGISTERED,    /* category or purpose not registered */
    KETEN_ERR_REPLAY,          /* a msg_id seen before */
    KETEN_ERR_INCONSISTENT,    /* a Merkle proof or log that does not add up */
    KETEN_ERR_STORE,           /* the LMDB store failed */
    KETEN_ERR_STORE_FULL,      /* the LMDB map or the disk is full */
    KETEN_ERR_CRYPTO,          /* libsodium failed (not a verification) */
    KETEN_ERR_JSON,            /* bad JSON input */
    KETEN_ERR_INVALID_SIGNAL,  /* a decrypted payload that is not a valid Signal */
    KETEN_ERR_CLOCK_SKEW,      /* a time too far ahead of this clock */
    KETEN_ERR__COUNT
} keten_err;

/* KETEN_ERR_PERMISSIONS covers every "refused for safety": a secret file its
 * group or others may read or write, a configuration file they may change, a
 * symbolic link where none is followed, a request from a peer or with a
 * credential that may not make it. Its short text says only that; the
 * detail says which, and what to do. */

/* Short static text for err; never NULL. */
const char *keten_err_str(keten_err err);

/* Record err with a detail line (printf format); returns err. */
keten_err keten_err_set(keten_err err, const char *fmt, ...) KETEN_PRINTF(2, 3);

/* The detail line of the last keten_err_set() in this thread, or "". */
const char *keten_err_detail(void);

/* Forget the detail line. */
void keten_err_clear(void);

/* true for failures of verification (exit code 3). */
bool keten_err_is_verification(keten_err err);

/* 0 for KETEN_OK, 3 for verification failures, 1 otherwise. */
int keten_err_exit_code(keten_err err);

#endif
