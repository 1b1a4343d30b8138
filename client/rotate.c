#include "rotate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alarm.h"
#include "cli.h"
#include "directory.h"
#include "log.h"
#include "passphrase.h"
#include "store.h"
#include "util.h"

#define SUPERSEDED_AT_KEY "superseded-at"

static keten_err join(char out[static PATH_MAX], const char *home, const char *name)
{
    if (snprintf(out, PATH_MAX, "%s/%s", home, name) >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "home path %s is too long", home);
    }
    return KETEN_OK;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Overwrite a secret key file with zeros, sync, remove it. */
static void wipe_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        static const uint8_t zeros[512];
        off_t left = st.st_size;
        while (left > 0) {
            size_t n = left > (off_t)sizeof zeros ? sizeof zeros : (size_t)left;
            ssize_t w = write(fd, zeros, n);
            if (w <= 0) {
                break;
            }
            left -= w;
        }
        (void)fsync(fd);
    }
    if (fd >= 0) {
        close(fd);
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot remove superseded keys", "file=%s error=\"%s\"", path,
            strerror(errno));
        return;
    }
    KETEN_LOG(KETEN_LOG_NOTICE, "superseded keys wiped", "file=%s", path);
}

static void sync_dir(const char *home)
{
    int fd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static bool key_is(const ProtobufCBinaryData *a, const uint8_t *b, size_t len)
{
    return a->len == len && sodium_memcmp(a->data, b, len) == 0;
}

/* Does cert carry exactly these keys? */
static bool cert_has_keys(const Keten__NodeCert *c, const keten_identity *id)
{
    return c != NULL && key_is(&c->sign_pk, id->sign_pk, KETEN_SIGN_PK_BYTES)
        && key_is(&c->enc_pk, id->enc_pk, KETEN_ENC_PK_BYTES)
        && key_is(&c->transport_pk, id->transport_pk, KETEN_CURVE_KEY_BYTES);
}

/* The longest message lifetime of the installed directory (ms). */
static uint64_t lifetime_ms(const keten_node *node)
{
    const Keten__Directory *doc = keten_directory_doc(node->dir);
    return doc != NULL && doc->max_message_lifetime > 0 ? doc->max_message_lifetime
                                                        : KETEN_MAX_LIFETIME_DEFAULT_MS;
}

static keten_err state_put_at(keten_node *node, uint64_t at, bool del)
{
    uint8_t v[8];
    keten_store_u64_put(at, v);
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = del ? keten_store_del(
                node->store, txn, KETEN_DB_STATE, SUPERSEDED_AT_KEY, strlen(SUPERSEDED_AT_KEY))
                : keten_store_put(node->store, txn, KETEN_DB_STATE, SUPERSEDED_AT_KEY,
                    strlen(SUPERSEDED_AT_KEY), v, sizeof v);
        if (del && e == KETEN_ERR_NOT_FOUND) {
            e = KETEN_OK;
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    return e;
}

static bool state_get_at(keten_node *node, uint64_t *at)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    bool found = false;
    if (keten_store_begin(node->store, false, &txn) == KETEN_OK
        && keten_store_get(
               node->store, txn, KETEN_DB_STATE, SUPERSEDED_AT_KEY, strlen(SUPERSEDED_AT_KEY), &v)
            == KETEN_OK
        && v.mv_size == 8) {
        *at = keten_store_u64_get(v.mv_data);
        found = true;
    }
    keten_store_abort(&txn);
    keten_err_clear();
    return found;
}

/* ---- keygen --rotate -------------------------------------------------------- */

static void print_text(
    const keten_identity *id, const char *secret, const char *request, const char *req_hash)
{
    char b64[KETEN_CLI_KEY_B64_BYTES];
    printf("wrote %s (the new secret keys; the node goes on with its current keys until\n"
           "      a directory lists the new ones)\n",
        secret);
    printf("wrote %s (hand it to the network's administrators:\n"
           "      keten-keys approve --rotate)\n",
        request);
    printf("  id:              %s\n", id->id);
    printf("  role:            %s\n", id->role);
    printf("  organisation:    %s\n", id->org);
    printf("  request sha256:  %s\n", req_hash);
    keten_cli_key_b64(id->sign_pk, b64);
    printf("  signing key:     %s\n", b64);
    keten_cli_key_b64(id->enc_pk, b64);
    printf("  encryption key:  %s\n", b64);
    keten_cli_key_b64(id->transport_pk, b64);
    printf("  transport key:   %s\n", b64);
    printf("Read the request sha256 to the administrators over another channel. Once they\n"
           "have published a directory with the new certificate, the node switches to the\n"
           "new keys by itself (when the broker says its keys were replaced, or at its\n"
           "next start or directory reload) and keeps its store; a running node opens\n"
           "them then, with the passphrase it was started with.\n");
}

keten_err keten_rotate_keygen(const char *home, const char *passfile, bool json)
{
    char cur[PATH_MAX], next[PATH_MAX], nextreq[PATH_MAX];
    keten_identity *old = NULL, *id = NULL;
    char *pass = NULL;
    size_t passlen = 0;
    uint8_t *req = NULL;
    size_t req_len = 0;
    bool wrote = false;
    keten_err e;
    if ((e = join(cur, home, KETEN_ROTATE_CURRENT)) != KETEN_OK
        || (e = join(next, home, KETEN_ROTATE_NEXT)) != KETEN_OK
        || (e = join(nextreq, home, KETEN_ROTATE_NEXT_REQUEST)) != KETEN_OK) {
        return e;
    }
    if (exists(next)) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "%s already exists: a rotation is under way; have the administrators approve %s "
            "(keten-keys approve --rotate) and publish: the node then switches by itself (to "
            "start the rotation again, remove both files first)",
            next, nextreq);
    }
    bool encrypted = false;
    e = keten_identity_file_encrypted(cur, &encrypted);
    if (e == KETEN_ERR_NOT_FOUND) {
        return keten_err_set(e,
            "%s does not exist: --rotate replaces the keys of a home that has them; make the "
            "first ones with keten-node keygen --home %s",
            cur, home);
    }
    if (e != KETEN_OK) {
        return e;
    }
    if (encrypted
        && (e = keten_cli_passphrase(passfile, cur, false, &pass, &passlen)) != KETEN_OK) {
        goto out;
    }
    e = keten_identity_load(cur, (const uint8_t *)pass, pass != NULL ? passlen : 0, &old);
    if (e == KETEN_ERR_PASSPHRASE) {
        e = keten_err_set(e,
            "the passphrase does not open %s; the new keys get the same passphrase, so give "
            "the current one",
            cur);
    }
    if (e != KETEN_OK) {
        goto out;
    }
    if (old->has_log_key || strcmp(old->role, "broker") == 0) {
        e = keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is a broker key: rotate it with keten-broker keygen in a new home", cur);
        goto out;
    }
    if ((e = keten_identity_generate(old->id, old->role, old->org, false, &id)) != KETEN_OK
        || (e = keten_identity_request(id, "", keten_now_ms(), &req, &req_len)) != KETEN_OK) {
        goto out;
    }
    if ((e = keten_identity_save(id, next, (const uint8_t *)pass, pass != NULL ? passlen : 0))
        != KETEN_OK) {
        goto out;
    }
    wrote = true;
    if ((e = keten_file_write(nextreq, req, req_len, 0644, false)) != KETEN_OK) {
        goto out;
    }
    wrote = false; /* done: both files stay */
    sync_dir(home);
    char req_hash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(req, req_len, req_hash);
    if (json) {
        char sign[KETEN_CLI_KEY_B64_BYTES], enc[KETEN_CLI_KEY_B64_BYTES];
        char transport[KETEN_CLI_KEY_B64_BYTES];
        keten_cli_key_b64(id->sign_pk, sign);
        keten_cli_key_b64(id->enc_pk, enc);
        keten_cli_key_b64(id->transport_pk, transport);
        e = keten_cli_json_print(
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "secret", next,
                "request", nextreq, "request_sha256", req_hash, "id", id->id, "role", id->role,
                "org", id->org, "sign_pk", sign, "enc_pk", enc, "transport_pk", transport,
                "passphrase_protected", encrypted, "rotate", 1));
    } else {
        print_text(id, next, nextreq, req_hash);
        if (!encrypted) {
            keten_cli_warn("%s is not protected by a passphrase (like %s); such keys are for "
                           "tests and demos only",
                next, cur);
        }
    }
out:
    if (wrote) {
        unlink(next);
    }
    keten_passphrase_free(&pass);
    keten_identity_destroy(&old);
    keten_identity_destroy(&id);
    free(req);
    return e;
}

/* ---- the daemon's side -------------------------------------------------------- */

keten_err keten_rotate_recover(const char *home)
{
    char cur[PATH_MAX], next[PATH_MAX], sup[PATH_MAX], req[PATH_MAX], nextreq[PATH_MAX];
    keten_err e;
    if ((e = join(cur, home, KETEN_ROTATE_CURRENT)) != KETEN_OK
        || (e = join(next, home, KETEN_ROTATE_NEXT)) != KETEN_OK
        || (e = join(sup, home, KETEN_ROTATE_SUPERSEDED)) != KETEN_OK
        || (e = join(req, home, KETEN_ROTATE_REQUEST)) != KETEN_OK
        || (e = join(nextreq, home, KETEN_ROTATE_NEXT_REQUEST)) != KETEN_OK) {
        return e;
    }
    if (exists(cur) || !exists(next) || !exists(sup)) {
        return KETEN_OK;
    }
    if (rename(next, cur) != 0) {
        return keten_err_set(KETEN_ERR_IO, "finishing a key switch: cannot rename %s to %s: %s",
            next, cur, strerror(errno));
    }
    (void)rename(nextreq, req);
    sync_dir(home);
    KETEN_LOG(KETEN_LOG_NOTICE, "finished a key switch a stop interrupted", "file=%s", cur);
    return KETEN_OK;
}

/* Open one of the rotation's key files with identity.secret's passphrase. */
static keten_err open_with(const char *path, const char *pass, size_t passlen, keten_identity **out)
{
    bool encrypted = false;
    keten_err e = keten_identity_file_encrypted(path, &encrypted);
    if (e != KETEN_OK) {
        return e;
    }
    if (encrypted && pass == NULL) {
        return keten_err_set(KETEN_ERR_NEED_PASSPHRASE,
            "%s is passphrase-protected but identity.secret is not; keten-node keygen --rotate "
            "gives both the same passphrase: remove %s and run it again",
            path, path);
    }
    e = keten_identity_load(
        path, encrypted ? (const uint8_t *)pass : NULL, encrypted ? passlen : 0, out);
    if (e == KETEN_ERR_PASSPHRASE) {
        return keten_err_set(e,
            "identity.secret's passphrase does not open %s (keten-node keygen --rotate gives "
            "both the same one), or the file was altered",
            path);
    }
    return e;
}

/* Does the installed directory list this node's id with these keys? */
static bool listed(const keten_node *node, const keten_identity *id)
{
    return cert_has_keys(keten_directory_find_id(node->dir, node->me->id), id);
}

static void log_waiting(const char *next)
{
    KETEN_LOG(KETEN_LOG_NOTICE, "new keys wait for their certificate",
        "file=%s action=\"have the administrators approve identity.next.request with "
        "keten-keys approve --rotate and publish\"",
        next);
}

/* Open next (the path of identity.next.secret) into node->next: keys of
 * this node, not a broker's. */
static keten_err open_next(keten_node *node, const char *next, const char *pass, size_t passlen)
{
    keten_identity *id = NULL;
    keten_err e = open_with(next, pass, passlen, &id);
    if (e != KETEN_OK) {
        return e;
    }
    if (strcmp(id->id, node->me->id) != 0 || id->has_log_key) {
        e = keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s holds keys for '%s', not for this node '%s'; remove it (and "
            "identity.next.request) or put back the right one",
            next, id->id, node->me->id);
        keten_identity_destroy(&id);
        return e;
    }
    node->next = id;
    return KETEN_OK;
}

keten_err keten_rotate_open(keten_node *node, const char *pass, size_t passlen)
{
    char next[PATH_MAX], sup[PATH_MAX];
    keten_err e;
    if ((e = join(next, node->opts.home, KETEN_ROTATE_NEXT)) != KETEN_OK
        || (e = join(sup, node->opts.home, KETEN_ROTATE_SUPERSEDED)) != KETEN_OK) {
        return e;
    }
    if (exists(next)) {
        if ((e = open_next(node, next, pass, passlen)) != KETEN_OK) {
            return e;
        }
        if (!listed(node, node->next)) {
            log_waiting(next);
        } /* else the switch follows at once (keten_rotate_try_switch) */
    }
    if (exists(sup)) {
        uint64_t at = 0, now = keten_now_ms();
        if (!state_get_at(node, &at)) {
            at = now; /* not recorded (a stop right after the switch): from now */
            if (state_put_at(node, at, false) != KETEN_OK) {
                keten_err_clear();
            }
        }
        node->old_wipe_at = at + lifetime_ms(node);
        if (now >= node->old_wipe_at) {
            wipe_file(sup);
            if (state_put_at(node, 0, true) != KETEN_OK) {
                keten_err_clear();
            }
        } else if ((e = open_with(sup, pass, passlen, &node->old)) != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

void keten_rotate_keep_passphrase(keten_node *node, char **pass_p, size_t passlen)
{
    keten_rotate_forget_passphrase(node);
    node->rotate_pass = *pass_p;
    node->rotate_passlen = node->rotate_pass != NULL ? passlen : 0;
    *pass_p = NULL;
    if (node->rotate_pass != NULL) {
        (void)sodium_mprotect_noaccess(node->rotate_pass);
    }
}

void keten_rotate_forget_passphrase(keten_node *node)
{
    if (node->rotate_pass != NULL) {
        (void)sodium_mprotect_readwrite(node->rotate_pass); /* to be wiped */
    }
    keten_passphrase_free(&node->rotate_pass);
    node->rotate_passlen = 0;
}

/* Next keys made after the start (keygen --rotate on the running node):
 * open them now if the installed directory lists this id with keys other
 * than the current ones (a rotation was approved). true if node->next is
 * open. */
static bool open_late(keten_node *node)
{
    const Keten__NodeCert *c = keten_directory_find_id(node->dir, node->me->id);
    if (c == NULL || cert_has_keys(c, node->me)) {
        return false;
    }
    char next[PATH_MAX];
    if (join(next, node->opts.home, KETEN_ROTATE_NEXT) != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    if (!exists(next)) {
        return false;
    }
    if (node->rotate_pass != NULL) {
        (void)sodium_mprotect_readonly(node->rotate_pass);
    }
    keten_err e = open_next(node, next, node->rotate_pass, node->rotate_passlen);
    if (node->rotate_pass != NULL) {
        (void)sodium_mprotect_noaccess(node->rotate_pass);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "the new keys cannot be opened; not switching",
            "file=%s error=\"%s\" detail=\"%s\" action=\"mend the file, then reload "
            "(SIGHUP) or restart the node\"",
            next, keten_err_str(e), keten_err_detail());
        keten_err_clear();
        return false;
    }
    KETEN_LOG(KETEN_LOG_NOTICE, "new keys made since the start opened", "file=%s", next);
    if (!cert_has_keys(c, node->next)) {
        log_waiting(next); /* the directory lists yet other keys */
    }
    return true;
}

bool keten_rotate_try_switch(keten_node *node)
{
    if (node->next == NULL && !open_late(node)) {
        return false;
    }
    const Keten__NodeCert *c = keten_directory_find_id(node->dir, node->me->id);
    if (!cert_has_keys(c, node->next)) {
        return false;
    }
    const char *home = node->opts.home;
    char cur[PATH_MAX], next[PATH_MAX], sup[PATH_MAX], req[PATH_MAX], nextreq[PATH_MAX];
    if (join(cur, home, KETEN_ROTATE_CURRENT) != KETEN_OK
        || join(next, home, KETEN_ROTATE_NEXT) != KETEN_OK
        || join(sup, home, KETEN_ROTATE_SUPERSEDED) != KETEN_OK
        || join(req, home, KETEN_ROTATE_REQUEST) != KETEN_OK
        || join(nextreq, home, KETEN_ROTATE_NEXT_REQUEST) != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    if (exists(sup)) {
        /* A second rotation within the lifetime of the first: the older
         * keys go now (a delivery still sealed to them is refused). */
        KETEN_LOG(KETEN_LOG_WARNING, "keys of an earlier rotation wiped before their time",
            "file=%s", sup);
        wipe_file(sup);
        keten_identity_destroy(&node->old);
    }
    if (rename(cur, sup) != 0) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot switch to the new keys", "file=%s error=\"%s\"", cur,
            strerror(errno));
        return false;
    }
    if (rename(next, cur) != 0) {
        int err = errno;
        (void)rename(sup, cur);
        KETEN_LOG(KETEN_LOG_ERR, "cannot switch to the new keys", "file=%s error=\"%s\"", next,
            strerror(err));
        return false;
    }
    (void)rename(nextreq, req);
    sync_dir(home);
    /* The rotation time is the directory's (when the administrators
     * superseded the old certificate), not the switch's. */
    uint64_t now = keten_now_ms(), at = now;
    const Keten__Revocation *r = keten_directory_find_revoked(node->dir, node->me->id);
    if (r != NULL && r->superseded && r->cert != NULL && r->at > 0 && r->at <= now
        && cert_has_keys(r->cert, node->me)) {
        at = r->at;
    }
    if (state_put_at(node, at, false) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot store the rotation time", "error=\"%s\"", keten_err_detail());
        keten_err_clear();
    }
    keten_identity_destroy(&node->old);
    node->old = node->me;
    node->me = node->next;
    node->next = NULL;
    node->old_wipe_at = at + lifetime_ms(node);
    keten_alarm_refusal_clear(node);
    char until[40];
    keten_time_iso(node->old_wipe_at, until, sizeof until);
    KETEN_LOG(KETEN_LOG_NOTICE, "switched to the rotated keys",
        "node=%s serial=%llu version=%llu superseded_until=%s", node->me->id,
        (unsigned long long)c->serial, (unsigned long long)keten_directory_version(node->dir),
        until);
    return true;
}

void keten_rotate_tick(keten_node *node)
{
    if (node->old == NULL || keten_now_ms() < node->old_wipe_at) {
        return;
    }
    char sup[PATH_MAX];
    if (join(sup, node->opts.home, KETEN_ROTATE_SUPERSEDED) != KETEN_OK) {
        keten_err_clear();
        return;
    }
    keten_identity_destroy(&node->old);
    wipe_file(sup);
    if (state_put_at(node, 0, true) != KETEN_OK) {
        keten_err_clear();
    }
}
