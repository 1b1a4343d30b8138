/* What keten file a file or folder is, for messages (filekind.h). */
#include "filekind.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "directory.h"
#include "err.h"
#include "identity.h"
#include "keten.h"
#include "pb.h"
#include "tiles.h"
#include "util.h"

#define KEYFILE_MAGIC "KETENSK1"
#define KEYFILE_MAGIC_LEN (sizeof KEYFILE_MAGIC - 1)
#define ORIGIN_PREFIX "keten/"
#define MANIFEST_PREFIX "keten-audit-export "
#define BUNDLE_FORMAT_PREFIX "keten-proof/"
#define NAME_SHOWN_MAX 64 /* of a name read from the file, for the message */
/* magic, format, version, flags, id and role with their lengths */
#define KEY_HEADER_READ (KEYFILE_MAGIC_LEN + 3 + 2 * (1 + KETEN_NAME_MAX))

static bool starts_with(const uint8_t *buf, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(buf, prefix, n) == 0;
}

/* A name from the file, made safe to print: printable ASCII, at most
 * NAME_SHOWN_MAX bytes, others as '?'. */
static void shown(const uint8_t *p, size_t n, char out[static NAME_SHOWN_MAX + 1])
{
    if (n > NAME_SHOWN_MAX) {
        n = NAME_SHOWN_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    }
    out[n] = '\0';
}

/* The header of a secret key file: "KETENSK1" | format (0 plain) |
 * version | flags | id_len | id | role_len | role ... KEY_PLAIN with id
 * and role, KEY_ENCRYPTED (nothing more is readable), KEY_SHORT. */
typedef enum key_header { KEY_PLAIN, KEY_ENCRYPTED, KEY_SHORT } key_header;

static key_header read_key_header(const uint8_t *buf, size_t len,
    char id[static NAME_SHOWN_MAX + 1], char role[static NAME_SHOWN_MAX + 1])
{
    size_t off = KEYFILE_MAGIC_LEN;
    if (len <= off || buf[off] != 0) {
        return len <= off ? KEY_SHORT : KEY_ENCRYPTED;
    }
    off += 3; /* format, version, flags */
    if (len <= off || len - off - 1 < buf[off]) {
        return KEY_SHORT;
    }
    shown(buf + off + 1, buf[off], id);
    off += 1 + (size_t)buf[off];
    if (len <= off || len - off - 1 < buf[off]) {
        return KEY_SHORT;
    }
    shown(buf + off + 1, buf[off], role);
    return KEY_PLAIN;
}

static filekind_kind secret_key(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    char id[NAME_SHOWN_MAX + 1], role[NAME_SHOWN_MAX + 1];
    switch (read_key_header(buf, len, id, role)) {
    case KEY_ENCRYPTED:
        snprintf(out, out_size,
            "a passphrase-protected secret key file (a node's, the broker's or an "
            "administrator's private keys)");
        break;
    case KEY_SHORT:
        snprintf(out, out_size, "a secret key file (private keys; its header is cut short)");
        break;
    case KEY_PLAIN:
        if (strcmp(role, "admin") == 0) {
            snprintf(out, out_size, "an administrator's secret key file (keten-keys admin-keygen)");
        } else if (strcmp(role, "broker") == 0) {
            snprintf(
                out, out_size, "the broker's secret key file (its identity.secret, id '%s')", id);
        } else {
            snprintf(out, out_size,
                "the secret key file of node '%s' (role %s, its identity.secret)", id, role);
        }
        break;
    }
    return FILEKIND_SECRET_KEY;
}

/* "keten/NETWORK\nSIZE\n..." */
static bool checkpoint_note(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    if (!starts_with(buf, len, ORIGIN_PREFIX)) {
        return false;
    }
    const uint8_t *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        return false;
    }
    size_t origin_len = (size_t)(nl - buf);
    size_t i = origin_len + 1;
    uint64_t size = 0;
    size_t digits = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9' && digits < 20) {
        size = size * 10 + (uint64_t)(buf[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0 || i >= len || buf[i] != '\n') {
        return false;
    }
    char origin[NAME_SHOWN_MAX + 1];
    shown(buf, origin_len, origin);
    /* A file of several notes (keten-node checkpoint --all) starts the same. */
    snprintf(out, out_size, "a checkpoint note (origin %s, tree size %" PRIu64 ")", origin, size);
    return true;
}

static bool json_bundle(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t')) {
        i++;
    }
    if (i >= len || buf[i] != '{') {
        return false;
    }
    json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    const char *format = json_string_value(json_object_get(root, "format"));
    bool bundle = format != NULL
        && strncmp(format, BUNDLE_FORMAT_PREFIX, strlen(BUNDLE_FORMAT_PREFIX)) == 0;
    if (bundle) {
        char f[NAME_SHOWN_MAX + 1];
        shown((const uint8_t *)format, strlen(format), f);
        snprintf(out, out_size, "a proof bundle (%s, written by keten-audit prove)", f);
    }
    json_decref(root);
    return bundle;
}

static filekind_kind protobuf(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    filekind_kind k = FILEKIND_UNKNOWN;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    Keten__NodeRequest *req = NULL;
    Keten__Anchor *anchor = NULL;
    char a[NAME_SHOWN_MAX + 1], b[NAME_SHOWN_MAX + 1];
    if (KETEN_PB_UNPACK_CANONICAL(
            keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, "directory", &sd)
            == KETEN_OK
        && KETEN_PB_UNPACK_CANONICAL(keten__directory, sd->directory.data, sd->directory.len,
               KETEN_DIRECTORY_MAX, "directory", &doc)
            == KETEN_OK
        && doc->network[0] != '\0' && doc->version >= 1) {
        shown((const uint8_t *)doc->network, strlen(doc->network), a);
        snprintf(
            out, out_size, "a signed directory (network %s, version %" PRIu64 ")", a, doc->version);
        k = FILEKIND_DIRECTORY;
        goto out;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    if (KETEN_PB_UNPACK_CANONICAL(keten__directory, buf, len, KETEN_DIRECTORY_MAX, "draft", &doc)
            == KETEN_OK
        && doc->network[0] != '\0' && doc->version >= 1 && doc->n_admins > 0) {
        shown((const uint8_t *)doc->network, strlen(doc->network), a);
        snprintf(out, out_size,
            "the draft of the next directory version of network %s (ADMIN/state of keten-keys)", a);
        k = FILEKIND_DRAFT;
        goto out;
    }
    if (len <= KETEN_REQUEST_MAX && keten_identity_request_verify(buf, len, &req) == KETEN_OK) {
        shown((const uint8_t *)req->id, strlen(req->id), a);
        shown((const uint8_t *)req->role, strlen(req->role), b);
        snprintf(out, out_size,
            "the enrollment request of node '%s' (role %s, its identity.request)", a, b);
        k = FILEKIND_REQUEST;
        goto out;
    }
    if (keten_directory_anchor_parse(buf, len, &anchor) == KETEN_OK) {
        shown((const uint8_t *)anchor->network, strlen(anchor->network), a);
        snprintf(out, out_size, "a network anchor (the network.pub of network %s)", a);
        k = FILEKIND_ANCHOR;
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&req);
    keten_pb_free((ProtobufCMessage **)(void *)&anchor);
    return k;
}

static filekind_kind of_bytes(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    if (len == 0) {
        snprintf(out, out_size, "an empty file");
        return FILEKIND_EMPTY;
    }
    if (starts_with(buf, len, KEYFILE_MAGIC)) {
        return secret_key(buf, len, out, out_size);
    }
    if (starts_with(buf, len, MANIFEST_PREFIX)) {
        snprintf(out, out_size, "the manifest of an audit export (AUDIT_DIR/keten/manifest)");
        return FILEKIND_MANIFEST;
    }
    if (checkpoint_note(buf, len, out, out_size)) {
        return FILEKIND_CHECKPOINT;
    }
    if (json_bundle(buf, len, out, out_size)) {
        return FILEKIND_BUNDLE;
    }
    if (starts_with(buf, len, "<!DOCTYPE html") || starts_with(buf, len, "<html")) {
        snprintf(out, out_size, "an HTML page (such as a report of keten-audit report)");
        return FILEKIND_HTML;
    }
    if (keten_identity_looks_like_public_key(buf, len)) {
        snprintf(out, out_size,
            "an administrator's public key file (written by keten-keys admin-keygen)");
        return FILEKIND_ADMIN_PUB;
    }
    return protobuf(buf, len, out, out_size);
}

filekind_kind filekind_of_bytes(const uint8_t *buf, size_t len, char *out, size_t out_size)
{
    char scratch[256];
    if (out == NULL || out_size == 0) {
        out = scratch;
        out_size = sizeof scratch;
    }
    out[0] = '\0';
    char saved[512];
    snprintf(saved, sizeof saved, "%s", keten_err_detail());
    filekind_kind k = buf == NULL && len > 0 ? FILEKIND_UNKNOWN : of_bytes(buf, len, out, out_size);
    if (k == FILEKIND_UNKNOWN) {
        out[0] = '\0';
    }
    (void)keten_err_set(KETEN_OK, "%s", saved);
    return k;
}

static bool exists(const char *dir, const char *name, bool want_dir)
{
    char p[PATH_MAX];
    struct stat st;
    return snprintf(p, sizeof p, "%s/%s", dir, name) < (int)sizeof p && stat(p, &st) == 0
        && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

static filekind_kind of_folder(const char *path, char *out, size_t out_size)
{
    if (tiles_is_export(path)) {
        snprintf(out, out_size, "an audit export (a folder made by keten-audit export)");
        return FILEKIND_FOLDER;
    }
    /* Only the header of HOME/identity.secret is read (its id and role),
     * never the keys after it. */
    char key[PATH_MAX];
    uint8_t head[KEY_HEADER_READ];
    size_t len = 0;
    if (snprintf(key, sizeof key, "%s/identity.secret", path) < (int)sizeof key
        && keten_file_peek(key, head, sizeof head, &len) && starts_with(head, len, KEYFILE_MAGIC)) {
        char id[NAME_SHOWN_MAX + 1], role[NAME_SHOWN_MAX + 1];
        key_header h = read_key_header(head, len, id, role);
        sodium_memzero(head, sizeof head);
        if (h == KEY_PLAIN && strcmp(role, "broker") == 0) {
            snprintf(out, out_size, "the broker's home");
        } else if (h == KEY_PLAIN && strcmp(role, "admin") != 0) {
            snprintf(out, out_size, "the home of partner node '%s' (role %s)", id, role);
        } else {
            snprintf(out, out_size, "a home folder of keten (it holds identity.secret)");
        }
        return FILEKIND_FOLDER;
    }
    sodium_memzero(head, sizeof head);
    if (exists(path, "network.pub", false) && exists(path, "state", false)) {
        snprintf(out, out_size, "an administrators' folder (ADMIN of keten-keys)");
        return FILEKIND_FOLDER;
    }
    if (exists(path, "data.mdb", false)) {
        snprintf(out, out_size, "a folder holding a bare LMDB store (data.mdb)");
        return FILEKIND_FOLDER;
    }
    char up[PATH_MAX];
    for (int level = 1; level <= 2; level++) {
        if (snprintf(up, sizeof up, level == 1 ? "%s/.." : "%s/../..", path) < (int)sizeof up
            && tiles_is_export(up)) {
            snprintf(out, out_size,
                "a folder inside an audit export (the export is the folder%s above it, the one "
                "holding keten/manifest)",
                level == 1 ? "" : " two levels");
            return FILEKIND_FOLDER;
        }
    }
    snprintf(out, out_size, "a folder");
    return FILEKIND_FOLDER;
}

filekind_kind filekind_of_path(const char *path, char *out, size_t out_size)
{
    char scratch[256];
    if (out == NULL || out_size == 0) {
        out = scratch;
        out_size = sizeof scratch;
    }
    out[0] = '\0';
    struct stat st;
    if (path == NULL || stat(path, &st) != 0 || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) {
        return FILEKIND_UNKNOWN;
    }
    char saved[512];
    snprintf(saved, sizeof saved, "%s", keten_err_detail());
    filekind_kind k = FILEKIND_UNKNOWN;
    if (S_ISDIR(st.st_mode)) {
        k = of_folder(path, out, out_size);
    } else {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (keten_file_read(path, FILEKIND_READ_MAX, &buf, &len) == KETEN_OK) {
            k = filekind_of_bytes(buf, len, out, out_size);
            sodium_memzero(buf, len); /* it may be a secret key file */
        }
        free(buf);
    }
    (void)keten_err_set(KETEN_OK, "%s", saved);
    return k;
}
