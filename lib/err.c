#include "err.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char detail[512];

static const char *const texts[KETEN_ERR__COUNT] = {
    [KETEN_OK] = "success",
    [KETEN_ERR_NOMEM] = "out of memory",
    [KETEN_ERR_IO] = "input/output error",
    [KETEN_ERR_EXISTS] = "already exists",
    [KETEN_ERR_NOT_FOUND] = "not found",
    [KETEN_ERR_PERMISSIONS] = "refused for safety",
    [KETEN_ERR_PASSPHRASE] = "wrong passphrase",
    [KETEN_ERR_NEED_PASSPHRASE] = "passphrase needed",
    [KETEN_ERR_TOO_LARGE] = "input too large",
    [KETEN_ERR_TRUNCATED] = "input truncated",
    [KETEN_ERR_MALFORMED] = "malformed input",
    [KETEN_ERR_NOT_CANONICAL] = "signed bytes are not in canonical form",
    [KETEN_ERR_WRONG_TYPE] = "wrong kind of file",
    [KETEN_ERR_INVALID] = "invalid value",
    [KETEN_ERR_BAD_NAME] = "bad name",
    [KETEN_ERR_BAD_SIGNATURE] = "signature does not verify",
    [KETEN_ERR_WRONG_NETWORK] = "wrong network",
    [KETEN_ERR_EXPIRED] = "expired",
    [KETEN_ERR_NOT_YET_VALID] = "not yet valid",
    [KETEN_ERR_ROLLBACK] = "older or conflicting version (rollback)",
    [KETEN_ERR_THRESHOLD] = "not enough administrator signatures",
    [KETEN_ERR_DUPLICATE_KEY] = "duplicate key",
    [KETEN_ERR_DUPLICATE_ID] = "duplicate id",
    [KETEN_ERR_UNKNOWN_NODE] = "unknown node",
    [KETEN_ERR_REVOKED] = "certificate revoked",
    [KETEN_ERR_NOT_RECIPIENT] = "not a recipient",
    [KETEN_ERR_KEYS_HASH] = "wrapped keys do not match their hash",
    [KETEN_ERR_COMMITMENT] = "content key commitment mismatch",
    [KETEN_ERR_DECRYPT] = "decryption failed",
    [KETEN_ERR_MISMATCH] = "mismatch",
    [KETEN_ERR_POLICY] = "refused by the sharing policy",
    [KETEN_ERR_UNREGISTERED] = "category or purpose not registered",
    [KETEN_ERR_REPLAY] = "replayed message",
    [KETEN_ERR_INCONSISTENT] = "inconsistent log or proof",
    [KETEN_ERR_STORE] = "store error",
    [KETEN_ERR_STORE_FULL] = "store full",
    [KETEN_ERR_CRYPTO] = "cryptographic library failure",
    [KETEN_ERR_JSON] = "bad JSON",
    [KETEN_ERR_INVALID_SIGNAL] = "not a valid signal",
    [KETEN_ERR_CLOCK_SKEW] = "too far ahead of this clock",
};

const char *keten_err_str(keten_err err)
{
    if ((unsigned)err >= KETEN_ERR__COUNT || texts[err] == NULL) {
        return "unknown error";
    }
    return texts[err];
}

keten_err keten_err_set(keten_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return err;
}

const char *keten_err_detail(void)
{
    return detail;
}

void keten_err_clear(void)
{
    detail[0] = '\0';
}

bool keten_err_is_verification(keten_err err)
{
    switch (err) {
    case KETEN_ERR_NOT_CANONICAL:
    case KETEN_ERR_BAD_SIGNATURE:
    case KETEN_ERR_WRONG_NETWORK:
    case KETEN_ERR_EXPIRED:
    case KETEN_ERR_NOT_YET_VALID:
    case KETEN_ERR_ROLLBACK:
    case KETEN_ERR_THRESHOLD:
    case KETEN_ERR_REVOKED:
    case KETEN_ERR_KEYS_HASH:
    case KETEN_ERR_COMMITMENT:
    case KETEN_ERR_DECRYPT:
    case KETEN_ERR_REPLAY:
    case KETEN_ERR_INCONSISTENT:
        return true;
    default:
        return false;
    }
}

int keten_err_exit_code(keten_err err)
{
    if (err == KETEN_OK) {
        return 0;
    }
    return keten_err_is_verification(err) ? 3 : 1;
}
