/*
 * keten-keys show FILE [--anchor network.pub]: print a directory version (or
 * an anchor) and, with --anchor, whether it verifies and exactly why not.
 *
 * Verification: a version 1, or a version whose administrators and threshold
 * are still those of the anchor, is verified against the anchor. Otherwise
 * the chain v1.dir .. v<N-1>.dir is needed: show takes it from the folder of
 * FILE or, when it is not there, from the published/ folder beside the
 * anchor (ADMIN/published/ when the anchor is ADMIN/network.pub); each step is
 * verified from the anchor on. Without the chain, show says what the file
 * and the anchor alone show: valid when it verifies against the anchor
 * alone, as a new node checks its first version (only its link to the
 * versions in between is not checked, and it says so); invalid (exit 3)
 * when it lacks the signatures of its own administrators that every valid
 * version carries, or is not current; else it cannot tell whose signatures
 * count: it says so (exit 1) rather than calling the file invalid, and
 * labels a signature by a key that this version does not list as unknown,
 * not as counting nothing. show checks one file: it cannot know
 * which version a node or the broker has installed, so it only points out a
 * newer v<N+1>.dir lying beside FILE (a node that has it refuses FILE as a
 * rollback).
 *
 * Names: the administrators' names (adminnames.h) are read from the ADMIN
 * folder the anchor or FILE lies in (a folder holding network.pub), never
 * from anywhere else, and printed beside each key's fingerprint.
 *
 * Test hook: the environment variable KETEN_TEST_NOW_MS (milliseconds since
 * the epoch), honoured by this command only, replaces the clock for the
 * expiry check so that tests can show an expired directory; a warning is
 * printed whenever it is in effect.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adminkey.h"
#include "adminnames.h"
#include "cli.h"
#include "cmd.h"
#include "directory.h"
#include "dirsig.h"
#include "pb.h"
#include "render.h"
#include "util.h"

#define CMD "show"
#define TEST_NOW_ENV "KETEN_TEST_NOW_MS"
#define SIG_LABEL_MAX 256

static const char usage_text[]
    = "Usage: keten-keys show FILE [--anchor network.pub] [--json]\n"
      "\n"
      "Print a directory version: network, version, issue and expiry times,\n"
      "administrators and threshold, nodes, revocations, categories, purposes,\n"
      "rules and signatures. FILE may also be an anchor (network.pub).\n"
      "\n"
      "With --anchor, also verify it the way nodes and the broker do: against the\n"
      "anchor when it is version 1 or the administrators have not changed since\n"
      "the anchor, otherwise along the chain of earlier versions v1.dir ..\n"
      "v<N-1>.dir, taken from the folder of FILE or else from the published/\n"
      "folder beside the anchor (ADMIN/published/ for ADMIN/network.pub). Prints\n"
      "\"valid\" or exactly why not. Without the chain: valid when the anchor's\n"
      "administrators signed enough (as a new node checks its first version; the\n"
      "link to the versions in between is then not checked, and it says so),\n"
      "invalid when it lacks its own administrators' signatures, else NOT\n"
      "VERIFIED (exit 1). show cannot know which version a node has\n"
      "installed: a newer v<N+1>.dir beside FILE is pointed out.\n"
      "\n"
      "Signatures and administrators are printed with the administrator's name\n"
      "and key fingerprint, the names taken from the ADMIN folder that the anchor\n"
      "or FILE lies in (ADMIN/names, written by init and set-admins).\n"
      "\n"
      "Options:\n"
      "  --anchor FILE          verify against this trust anchor (network.pub)\n"
      "  --json                 print as JSON\n"
      "  --help                 show this help\n"
      "\n"
      "Exit codes: 0 printed (and valid), 1 failure (e.g. unreadable file, chain\n"
      "missing and needed), 2 usage error, 3 verification failed.\n";

typedef struct verdict {
    bool checked; /* --anchor given and a verification ran */
    const char *method; /* "anchor" or "chain" */
    keten_err err; /* KETEN_OK: valid */
    char detail[1536]; /* why not */
    bool have_signing; /* signing set known (for the per-signature labels) */
    adminkey_set signing; /* administrators who had to sign */
    char signing_name[64]; /* whose they are: "the anchor", "version 3" */
    uint64_t newer; /* a newer version lying beside FILE, or 0 */
    char newer_path[PATH_MAX];
    bool chain_missing; /* needed the chain and could not find it */
    bool anchor_alone; /* valid against the anchor alone; the chain was not there to check */
    char chain_folder[PATH_MAX]; /* where the chain was taken from */
} verdict;

static keten_err chain_broken(verdict *v, keten_err e, const char *path)
{
    v->err = e;
    /* The detail may be cut short by the buffer; it stays readable. */
    int n = snprintf(v->detail, sizeof v->detail, "the chain breaks at ");
    if (n > 0 && (size_t)n < sizeof v->detail) {
        size_t used = (size_t)n;
        const char *parts[] = { path, ": ", keten_err_str(e), ": ", keten_err_detail() };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0] && used + 1 < sizeof v->detail; i++) {
            size_t room = sizeof v->detail - used - 1;
            size_t l = strlen(parts[i]);
            l = l < room ? l : room;
            memcpy(v->detail + used, parts[i], l);
            used += l;
        }
        v->detail[used] = '\0';
    }
    return e;
}

static keten_err note(verdict *v, keten_err e)
{
    v->err = e;
    snprintf(v->detail, sizeof v->detail, "%s", keten_err_detail());
    return e;
}

static uint64_t clock_now(void)
{
#ifdef KETEN_TEST_HOOKS
    const char *s = getenv(TEST_NOW_ENV);
    uint64_t t = 0;
    if (s != NULL && s[0] != '\0') {
        if (keten_cli_parse_uint(s, 1, UINT64_MAX, &t)) {
            char iso[32];
            keten_time_iso(t, iso, sizeof iso);
            keten_cli_warn(
                "%s is set: checking validity as of %s (for tests only)", TEST_NOW_ENV, iso);
            return t;
        }
        keten_cli_warn("%s='%s' is not a number of milliseconds; using the clock", TEST_NOW_ENV, s);
    }
#endif
    return keten_now_ms();
}

static keten_err chain_file(const char *folder, uint64_t version, char out[static PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/v%llu.dir", folder, (unsigned long long)version);
    if (n < 0 || n >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "path in %s is too long", folder);
    }
    return KETEN_OK;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Are v1.dir .. v<n-1>.dir all in folder? */
static bool chain_complete(const char *folder, uint64_t n)
{
    char path[PATH_MAX];
    for (uint64_t i = 1; i < n; i++) {
        if (chain_file(folder, i, path) != KETEN_OK || !is_file(path)) {
            return false;
        }
    }
    return true;
}

/* Verify FILE along v1.dir .. v<N-1>.dir, from the anchor on; the chain
 * from the first of the folders that holds all of it. */
static keten_err verify_chain(const Keten__Anchor *anchor, const char *const *folders,
    size_t n_folders, uint64_t n, const uint8_t *buf, size_t len, uint64_t now, verdict *v)
{
    char path[PATH_MAX];
    keten_directory *prev = NULL, *cur = NULL;
    keten_err e = KETEN_OK;
    const char *folder = NULL;
    v->method = "chain";
    for (size_t f = 0; f < n_folders && folder == NULL; f++) {
        if (chain_complete(folders[f], n)) {
            folder = folders[f];
        }
    }
    if (folder == NULL) {
        char versions[64];
        if (n == 2) {
            snprintf(versions, sizeof versions, "v1.dir");
        } else {
            snprintf(versions, sizeof versions, "v1.dir .. v%llu.dir", (unsigned long long)(n - 1));
        }
        v->chain_missing = true;
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "cannot verify version %llu without the chain of earlier versions: its "
            "administrators differ from the anchor's, and %s %s not in %s%s%s; copy %s "
            "(ADMIN/published/ has them) beside the file, or give the anchor of that ADMIN "
            "folder",
            (unsigned long long)n, versions, n == 2 ? "is" : "are", folders[0],
            n_folders > 1 ? " nor in " : "", n_folders > 1 ? folders[1] : "", versions);
        return note(v, e);
    }
    snprintf(v->chain_folder, sizeof v->chain_folder, "%s", folder);
    for (uint64_t i = 1; i < n && e == KETEN_OK; i++) {
        uint8_t *b = NULL;
        size_t l = 0;
        if ((e = chain_file(folder, i, path)) != KETEN_OK
            || (e = keten_file_read(path, KETEN_DIRECTORY_MAX, &b, &l)) != KETEN_OK) {
            note(v, e);
            break;
        }
        e = keten_directory_verify(i == 1 ? anchor : NULL, prev, b, l, 0, &cur);
        free(b);
        if (e != KETEN_OK) {
            chain_broken(v, e, path);
            break;
        }
        keten_directory_destroy(&prev);
        prev = cur;
        cur = NULL;
    }
    if (e == KETEN_OK) {
        const Keten__Directory *pd = keten_directory_doc(prev);
        if (adminkey_set_from_pb(pd->admins, pd->n_admins, pd->threshold, &v->signing)
            == KETEN_OK) {
            v->have_signing = true;
            snprintf(v->signing_name, sizeof v->signing_name, "version %llu",
                (unsigned long long)pd->version);
        }
        e = keten_directory_verify(NULL, prev, buf, len, now, &cur);
        if (e != KETEN_OK) {
            note(v, e);
        }
    }
    keten_directory_destroy(&prev);
    keten_directory_destroy(&cur);
    v->err = e;
    return e;
}

/* The chain is missing: what the file and the anchor alone show.
 * - A new node checks its first version against the anchor alone: when
 *   that verifies (an administrator change signed by enough of the anchor's
 *   administrators and of its new ones), the file is valid as nodes and the
 *   broker check it; only its link to the versions in between (their
 *   hashes) is not checked.
 * - Every valid version carries a threshold of signatures by its own
 *   administrators (after a change, k' of the new ones; without one, they
 *   are the previous version's): a file without them is invalid whatever
 *   the earlier versions are.
 * - Otherwise only the previous version's administrators can make it valid,
 *   and who they are is not known without the chain. */
static void judge_without_chain(const Keten__Anchor *anchor, const uint8_t *buf, size_t len,
    const Keten__Directory *doc, uint64_t now, verdict *v)
{
    char missing[sizeof v->detail];
    memcpy(missing, v->detail, sizeof missing);
    keten_directory *d = NULL;
    keten_err e = keten_directory_verify(anchor, NULL, buf, len, now, &d);
    keten_directory_destroy(&d);
    if (e == KETEN_OK) {
        v->err = KETEN_OK;
        v->method = "anchor";
        v->anchor_alone = true;
        v->chain_missing = false;
        v->have_signing
            = adminkey_set_from_pb(anchor->admins, anchor->n_admins, anchor->threshold, &v->signing)
            == KETEN_OK;
        snprintf(v->signing_name, sizeof v->signing_name, "the anchor");
        snprintf(v->detail, sizeof v->detail,
            "not checked without v1.dir .. v%llu.dir: that version %llu follows them (the "
            "previous-version hash)",
            (unsigned long long)(doc->version - 1), (unsigned long long)doc->version);
        keten_err_clear();
        return;
    }
    char from_anchor[256];
    snprintf(from_anchor, sizeof from_anchor, "%s", keten_err_detail());
    adminkey_set own;
    Keten__SignedDirectory *sd = NULL;
    dirsig_tally t;
    memset(&t, 0, sizeof t);
    e = adminkey_set_from_pb(doc->admins, doc->n_admins, doc->threshold, &own);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(
            keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, "signed directory", &sd);
    }
    if (e == KETEN_OK) {
        e = dirsig_count(sd, &own, &own, &t);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    if (e == KETEN_OK && t.old_valid < doc->threshold) {
        e = keten_err_set(KETEN_ERR_THRESHOLD,
            "it carries valid signatures of %zu of its own %zu administrators, and every valid "
            "version carries %u (after a change of administrators, of the new ones)",
            t.old_valid, doc->n_admins, doc->threshold);
    } else if (e == KETEN_OK) {
        e = dirsig_verify_with_set(doc->network, &own, buf, len, now);
    }
    if (e != KETEN_OK) {
        char own_why[256];
        snprintf(own_why, sizeof own_why, "%s", keten_err_detail());
        v->chain_missing = false;
        keten_err_set(e, "invalid whatever the earlier versions are: %s", own_why);
        note(v, e);
        return;
    }
    char why[2 * sizeof v->detail];
    int n = snprintf(why, sizeof why,
        "%s. The file alone shows: %u of its own administrators signed it and it is current; "
        "not known without the chain: whether enough administrators of version %llu signed "
        "it. Against the anchor alone (as a new node checks its first version): %s",
        missing, doc->threshold, (unsigned long long)(doc->version - 1), from_anchor);
    v->err = KETEN_ERR_NOT_FOUND;
    /* Cut short by the buffer when need be; it stays readable. */
    size_t l = n < 0 ? 0 : strnlen(why, sizeof v->detail - 1);
    memcpy(v->detail, why, l);
    v->detail[l] = '\0';
}

static void find_newer(const char *folder, const Keten__Directory *doc, verdict *v)
{
    char path[PATH_MAX];
    uint8_t *b = NULL;
    size_t l = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *d = NULL;
    if (chain_file(folder, doc->version + 1, path) != KETEN_OK || !is_file(path)
        || keten_file_read(path, KETEN_DIRECTORY_MAX, &b, &l) != KETEN_OK) {
        goto out;
    }
    if (KETEN_PB_UNPACK(keten__signed_directory, b, l, KETEN_DIRECTORY_MAX, path, &sd) == KETEN_OK
        && KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
               KETEN_DIRECTORY_MAX, path, &d)
            == KETEN_OK
        && d->version == doc->version + 1 && strcmp(d->network, doc->network) == 0) {
        v->newer = d->version;
        snprintf(v->newer_path, sizeof v->newer_path, "%s", path);
    }
out:
    free(b);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&d);
}

static void verify(const char *file, const char *anchor_path, const Keten__Anchor *anchor,
    const uint8_t *buf, size_t len, const Keten__Directory *doc, verdict *v)
{
    char copy[PATH_MAX], anchor_copy[PATH_MAX], published[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", file);
    const char *folder = dirname(copy);
    snprintf(anchor_copy, sizeof anchor_copy, "%s", anchor_path);
    int pn = snprintf(published, sizeof published, "%s/published", dirname(anchor_copy));
    const char *folders[2] = { folder, published };
    size_t n_folders = 1;
    struct stat st;
    if (pn > 0 && (size_t)pn < sizeof published && stat(published, &st) == 0
        && S_ISDIR(st.st_mode)) {
        n_folders = 2;
    }
    uint64_t now = clock_now();
    adminkey_set own, anchor_set;
    v->checked = true;
    v->method = "anchor";
    if (strcmp(doc->network, anchor->network) != 0) {
        v->err = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "%s is a directory of network '%s', but the anchor is for network '%s'; use that "
            "network's network.pub",
            file, doc->network, anchor->network);
        note(v, v->err);
        return;
    }
    bool same_admins
        = adminkey_set_from_pb(doc->admins, doc->n_admins, doc->threshold, &own) == KETEN_OK
        && adminkey_set_from_pb(anchor->admins, anchor->n_admins, anchor->threshold, &anchor_set)
            == KETEN_OK
        && adminkey_set_equal(&own, &anchor_set);
    if (doc->version <= 1 || same_admins) {
        keten_directory *d = NULL;
        if (adminkey_set_from_pb(anchor->admins, anchor->n_admins, anchor->threshold, &v->signing)
            == KETEN_OK) {
            v->have_signing = true;
            snprintf(v->signing_name, sizeof v->signing_name, "the anchor");
        }
        v->err = keten_directory_verify(anchor, NULL, buf, len, now, &d);
        keten_directory_destroy(&d);
        if (v->err != KETEN_OK) {
            note(v, v->err);
        }
    } else if (verify_chain(anchor, folders, n_folders, doc->version, buf, len, now, v) != KETEN_OK
        && v->chain_missing) {
        judge_without_chain(anchor, buf, len, doc, now, v);
    }
    find_newer(folder, doc, v);
}

/* ---- names --------------------------------------------------------------- */

/* Is folder an ADMIN folder (it holds network.pub)? */
static bool is_admin_folder(const char *folder)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/network.pub", folder);
    return n > 0 && (size_t)n < sizeof path && is_file(path);
}

/* The names of the ADMIN folder the anchor lies in, else of the one FILE
 * lies in (FILE = ADMIN/network.pub or ADMIN/published/vN.dir). NULL when
 * there is none; a names file that cannot be read is warned about. */
static adminnames *load_names(const char *file, const char *anchor_path)
{
    char candidates[3][PATH_MAX];
    size_t n = 0;
    char copy[PATH_MAX];
    if (anchor_path != NULL) {
        snprintf(copy, sizeof copy, "%s", anchor_path);
        snprintf(candidates[n++], PATH_MAX, "%s", dirname(copy));
    }
    snprintf(copy, sizeof copy, "%s", file);
    char *folder = dirname(copy);
    snprintf(candidates[n++], PATH_MAX, "%s", folder);
    char *base = strrchr(folder, '/');
    if (strcmp(base != NULL ? base + 1 : folder, "published") == 0) {
        snprintf(candidates[n++], PATH_MAX, "%s/..", folder);
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_admin_folder(candidates[i])) {
            continue;
        }
        char path[PATH_MAX];
        adminnames *names = NULL;
        int l = snprintf(path, sizeof path, "%s/%s", candidates[i], ADMINNAMES_FILE);
        if (l < 0 || (size_t)l >= sizeof path) {
            continue;
        }
        if (adminnames_load(path, &names) != KETEN_OK) {
            keten_cli_warn("%s; administrators are shown by fingerprint only", keten_err_detail());
            keten_err_clear();
            return NULL;
        }
        return names;
    }
    return NULL;
}

/* ---- printing ------------------------------------------------------------ */

/* What show knows while printing one directory. */
typedef struct view {
    const char *file;
    const char *anchor_path;
    const uint8_t *buf;
    size_t len;
    const Keten__SignedDirectory *sd;
    const Keten__Directory *doc;
    const adminkey_set *own;
    const verdict *v;
    const adminnames *names;
    const char *const *status; /* per signature */
    const dirsig_tally *t; /* valid when v->have_signing */
    size_t listed_valid; /* without v->have_signing: valid, by keys this version lists */
    size_t other_valid; /* ... by other keys */
} view;

/* Whose signatures count, when show does not know the signing set:
 * "the administrators of version 1, not known without the chain". */
static void unknown_signers(const Keten__Directory *doc, const verdict *v, char *out, size_t size)
{
    char prev[32];
    if (doc->version <= 1) {
        snprintf(prev, sizeof prev, "the anchor");
    } else {
        snprintf(prev, sizeof prev, "version %llu", (unsigned long long)(doc->version - 1));
    }
    snprintf(out, size, "the administrators of %s, %s", prev,
        v->chain_missing ? "not known without the chain"
                         : (v->checked ? "not known here" : "not known without --anchor"));
}

static const char *sig_status(const Keten__DirectorySignature *sig, size_t index,
    const Keten__SignedDirectory *sd, const uint8_t *msg, size_t msg_len,
    const Keten__Directory *doc, const adminkey_set *own, const verdict *v, char *buf, size_t size)
{
    if (sig->admin_pk.len != KETEN_SIGN_PK_BYTES || sig->signature.len != KETEN_SIG_BYTES) {
        return "malformed";
    }
    for (size_t j = 0; j < index; j++) {
        const ProtobufCBinaryData *k = &sd->signatures[j]->admin_pk;
        if (k->len == KETEN_SIGN_PK_BYTES
            && sodium_memcmp(k->data, sig->admin_pk.data, KETEN_SIGN_PK_BYTES) == 0) {
            return "repeated: the same key again, counts once";
        }
    }
    if (!dirsig_verifies(msg, msg_len, sig)) {
        return "does not verify: the document was changed after it was signed, or the "
               "signature is damaged";
    }
    bool in_own = adminkey_set_find(own, sig->admin_pk.data) >= 0;
    if (v->have_signing) {
        bool in_signing = adminkey_set_find(&v->signing, sig->admin_pk.data) >= 0;
        if (in_signing) {
            snprintf(buf, size, "valid, by an administrator of %s", v->signing_name);
            return buf;
        }
        if (in_own && !adminkey_set_equal(&v->signing, own)) {
            return "valid, by a new administrator";
        }
        return "valid signature, but not by an administrator: counts nothing";
    }
    if (in_own) {
        return "valid, by an administrator listed in this version";
    }
    char why[128];
    unknown_signers(doc, v, why, sizeof why);
    snprintf(buf, size,
        "valid signature by a key this version does not list: it counts only if it is one of %s",
        why);
    return buf;
}

static void print_time(const char *label, uint64_t ms)
{
    char iso[32];
    keten_time_iso(ms, iso, sizeof iso);
    printf("%s%s\n", label, iso);
}

static void print_list(const char *label, char *const *v, size_t n)
{
    printf("%s", label);
    if (n == 0) {
        printf(" (none)");
    }
    for (size_t i = 0; i < n; i++) {
        printf(" %s", v[i]);
    }
    printf("\n");
}

/* "  J. de Vries (fingerprint ...), key BASE64" for one administrator. */
static void print_admin(const adminnames *names, const ProtobufCBinaryData *k)
{
    if (k->len != KETEN_SIGN_PK_BYTES) {
        printf("  (invalid key of %zu bytes)\n", k->len);
        return;
    }
    char label[ADMINNAMES_LABEL_BYTES], b64[KETEN_CLI_KEY_B64_BYTES];
    adminnames_label(names, k->data, label);
    keten_cli_key_b64(k->data, b64);
    if (adminnames_find(names, k->data) != NULL) {
        printf("  %s, key %s\n", label, b64);
    } else {
        printf("  %s\n", label);
    }
}

static void print_cert(const Keten__NodeCert *c)
{
    char nb[32], na[32];
    keten_time_iso(c->not_before, nb, sizeof nb);
    keten_time_iso(c->not_after, na, sizeof na);
    printf("  %s: role %s, org \"%s\", serial %llu, valid %s to %s\n", c->id, c->role, c->org,
        (unsigned long long)c->serial, nb, na);
}

static void print_signature_count(const view *w)
{
    if (w->v->have_signing) {
        char text[512];
        dirsig_tally_text(w->t, text, sizeof text);
        printf("%s\n", text);
        return;
    }
    char why[128];
    unknown_signers(w->doc, w->v, why, sizeof why);
    printf("%zu valid signature%s by administrators listed in this version (threshold %u), %zu "
           "by other keys; which of them count depends on %s\n",
        w->listed_valid, w->listed_valid == 1 ? "" : "s", (unsigned)w->doc->threshold,
        w->other_valid, why);
}

/* Does party (a node id or role:NAME; '*' always) name a node of doc? */
static bool party_matches(const Keten__Directory *doc, const char *party)
{
    static const char role_prefix[] = "role:";
    if (strcmp(party, "*") == 0) {
        return true;
    }
    bool role = strncmp(party, role_prefix, sizeof role_prefix - 1) == 0;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        if (c != NULL
            && strcmp(role ? c->role : c->id, role ? party + sizeof role_prefix - 1 : party) == 0) {
            return true;
        }
    }
    return false;
}

/* One note per rule party that names no node of this version: such a rule
 * is valid (rules may be written before a partner is enrolled), but it
 * applies to whoever is enrolled later under that id or role. */
static void print_unmatched_parties(const Keten__Directory *doc)
{
    for (size_t i = 0; i < doc->n_rules; i++) {
        const Keten__PolicyRule *r = doc->rules[i];
        for (int side = 0; side < 2; side++) {
            char **parties = side == 0 ? r->from : r->to;
            size_t n = side == 0 ? r->n_from : r->n_to;
            for (size_t k = 0; k < n; k++) {
                if (!party_matches(doc, parties[k])) {
                    printf("  note: rule %u names '%s' (%s), which is no node of this version: "
                           "the rule applies to a partner enrolled later under that %s\n",
                        r->id, parties[k], side == 0 ? "from" : "to",
                        strncmp(parties[k], "role:", 5) == 0 ? "role" : "id");
                }
            }
        }
    }
}

static void print_text(const view *w)
{
    const Keten__SignedDirectory *sd = w->sd;
    const Keten__Directory *doc = w->doc;
    const verdict *v = w->v;
    char hash[KETEN_CLI_HASH_HEX_BYTES], dhash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(w->buf, w->len, hash);
    keten_cli_sha256_hex(sd->directory.data, sd->directory.len, dhash);
    printf("file:        %s (sha256 %s)\n", w->file, hash);
    printf("network:     %s\n", doc->network);
    printf("version:     %llu\n", (unsigned long long)doc->version);
    print_time("issued:      ", doc->issued_at);
    print_time("expires:     ", doc->expires_at);
    printf("hash:        %s (SHA-256 of the directory, as named in checkpoints)\n", dhash);
    if (doc->previous_hash.len > 0) {
        char ph[2 * KETEN_HASH_BYTES + 1];
        if (doc->previous_hash.len == KETEN_HASH_BYTES) {
            keten_hex(doc->previous_hash.data, KETEN_HASH_BYTES, ph);
        } else {
            snprintf(ph, sizeof ph, "(invalid)");
        }
        printf("previous:    %s\n", ph);
    }
    printf("administrators (threshold %u of %zu):\n", (unsigned)doc->threshold, doc->n_admins);
    for (size_t i = 0; i < doc->n_admins; i++) {
        print_admin(w->names, &doc->admins[i]);
    }
    printf("nodes (%zu):\n", doc->n_nodes);
    for (size_t i = 0; i < doc->n_nodes; i++) {
        print_cert(doc->nodes[i]);
    }
    printf("revocations (%zu):\n", doc->n_revocations);
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        char at[32];
        keten_time_iso(r->at, at, sizeof at);
        printf("  %s: serial %llu, %s at %s: %s\n", r->cert != NULL ? r->cert->id : "?",
            r->cert != NULL ? (unsigned long long)r->cert->serial : 0ull,
            r->superseded ? "superseded (key rotation)" : "revoked", at, r->reason);
    }
    print_list("categories:", doc->categories, doc->n_categories);
    print_list("purposes:  ", doc->purposes, doc->n_purposes);
    printf("rules (%zu; deny wins, default deny):\n", doc->n_rules);
    for (size_t i = 0; i < doc->n_rules; i++) {
        printf("  ");
        render_rule_text(stdout, doc->rules[i]);
    }
    print_unmatched_parties(doc);
    printf("signatures (%zu):\n", sd->n_signatures);
    for (size_t i = 0; i < sd->n_signatures; i++) {
        const ProtobufCBinaryData *k = &sd->signatures[i]->admin_pk;
        char label[ADMINNAMES_LABEL_BYTES] = "(invalid key)";
        if (k->len == KETEN_SIGN_PK_BYTES) {
            adminnames_label(w->names, k->data, label);
        }
        printf("  signed by %s: %s\n", label, w->status[i]);
    }
    print_signature_count(w);
    if (!v->checked) {
        printf("not verified: give --anchor network.pub to check it\n");
        return;
    }
    if (v->err == KETEN_OK) {
        if (strcmp(v->method, "chain") == 0) {
            printf("verification against %s (along the chain of earlier versions in %s): valid\n",
                w->anchor_path, v->chain_folder);
        } else if (v->anchor_alone) {
            printf(
                "verification against %s (the anchor alone, as a new node checks its first "
                "version): valid: signed by enough of the anchor's administrators and by enough of "
                "its own, which differ from the anchor's\n",
                w->anchor_path);
            printf("%s\n", v->detail);
        } else {
            printf("verification against %s (the anchor): valid\n", w->anchor_path);
        }
    } else if (v->chain_missing) {
        printf("verification against %s: NOT VERIFIED, the chain of earlier versions is "
               "missing: %s\n",
            w->anchor_path, v->detail);
    } else {
        printf("verification against %s: NOT VALID: %s: %s\n", w->anchor_path,
            keten_err_str(v->err), v->detail);
    }
    if (v->newer != 0) {
        printf("note: version %llu lies beside it (%s): a node or broker that has installed a "
               "newer version refuses this one as a rollback; show cannot know what they "
               "installed\n",
            (unsigned long long)v->newer, v->newer_path);
    }
}

static json_t *count_json(const view *w)
{
    if (w->v->have_signing) {
        json_t *obj = dirsig_tally_json(w->t);
        if (obj != NULL && json_object_set_new(obj, "counted", json_true()) != 0) {
            json_decref(obj);
            return NULL;
        }
        return obj;
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:b}", "signatures", (json_int_t)w->sd->n_signatures,
        "listed_valid", (json_int_t)w->listed_valid, "other_valid", (json_int_t)w->other_valid,
        "threshold", (json_int_t)w->doc->threshold, "counted", false);
}

static json_t *doc_json(const view *w)
{
    const Keten__SignedDirectory *sd = w->sd;
    const Keten__Directory *doc = w->doc;
    const verdict *v = w->v;
    char hash[KETEN_CLI_HASH_HEX_BYTES], dhash[KETEN_CLI_HASH_HEX_BYTES];
    char issued[32], expires[32];
    keten_cli_sha256_hex(w->buf, w->len, hash);
    keten_cli_sha256_hex(sd->directory.data, sd->directory.len, dhash);
    keten_time_iso(doc->issued_at, issued, sizeof issued);
    keten_time_iso(doc->expires_at, expires, sizeof expires);
    json_t *admins = json_array(), *described = json_array(), *nodes = json_array();
    json_t *revs = json_array(), *rules = json_array(), *sigs = json_array();
    for (size_t i = 0; admins != NULL && described != NULL && i < doc->n_admins; i++) {
        json_array_append_new(admins, render_key_json(&doc->admins[i]));
        json_array_append_new(described, render_admin_json(w->names, &doc->admins[i]));
    }
    for (size_t i = 0; nodes != NULL && i < doc->n_nodes; i++) {
        json_array_append_new(nodes, render_cert_json(doc->nodes[i]));
    }
    for (size_t i = 0; revs != NULL && i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        char at[32];
        keten_time_iso(r->at, at, sizeof at);
        json_array_append_new(revs,
            json_pack("{s:o, s:s, s:s, s:b}", "cert",
                r->cert != NULL ? render_cert_json(r->cert) : json_null(), "at", at, "reason",
                r->reason, "superseded", r->superseded));
    }
    for (size_t i = 0; rules != NULL && i < doc->n_rules; i++) {
        json_array_append_new(rules, render_rule_json(doc->rules[i]));
    }
    for (size_t i = 0; sigs != NULL && i < sd->n_signatures; i++) {
        const ProtobufCBinaryData *k = &sd->signatures[i]->admin_pk;
        json_t *sig = render_admin_json(w->names, k);
        if (sig != NULL) {
            json_object_set_new(sig, "admin_pk", render_key_json(k));
            json_object_set_new(sig, "status", json_string(w->status[i]));
        }
        json_array_append_new(sigs, sig);
    }
    json_t *ver;
    if (!v->checked) {
        ver = json_pack("{s:b}", "checked", false);
    } else {
        ver = json_pack("{s:b, s:s, s:s, s:b}", "checked", true, "anchor", w->anchor_path, "method",
            v->method, "valid", v->err == KETEN_OK);
        if (ver != NULL && v->err != KETEN_OK) {
            json_object_set_new(ver, "error", json_string(keten_err_str(v->err)));
            json_object_set_new(ver, "detail", json_string(v->detail));
            json_object_set_new(ver, "chain_missing", json_boolean(v->chain_missing));
        }
        if (ver != NULL && v->anchor_alone) {
            json_object_set_new(ver, "chain_checked", json_false());
            json_object_set_new(ver, "not_checked", json_string(v->detail));
        }
        if (ver != NULL && v->err == KETEN_OK && strcmp(v->method, "chain") == 0) {
            json_object_set_new(ver, "chain_folder", json_string(v->chain_folder));
        }
        if (ver != NULL && v->newer != 0) {
            json_object_set_new(ver, "newer_version", json_integer((json_int_t)v->newer));
            json_object_set_new(ver, "newer_file", json_string(v->newer_path));
        }
    }
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:o, "
                            "s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
        "file", w->file, "type", "directory", "sha256", hash, "network", doc->network, "version",
        (json_int_t)doc->version, "issued_at", issued, "expires_at", expires, "directory_hash",
        dhash, "admins", admins, "administrators", described, "threshold",
        (json_int_t)doc->threshold, "witness_quorum", (json_int_t)doc->witness_quorum, "nodes",
        nodes, "revocations", revs, "categories",
        render_strings_json(doc->categories, doc->n_categories), "purposes",
        render_strings_json(doc->purposes, doc->n_purposes), "rules", rules, "signatures", sigs,
        "signature_count", count_json(w), "verification", ver);
    return obj;
}

/* ---- anchors ------------------------------------------------------------- */

static int show_anchor(const char *file, const uint8_t *buf, size_t len, const Keten__Anchor *a,
    bool json, const char *anchor_path, const adminnames *names)
{
    char hash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(buf, len, hash);
    if (anchor_path != NULL) {
        keten_cli_warn("%s is an anchor, not a directory: --anchor is ignored", file);
    }
    if (json) {
        json_t *admins = json_array(), *described = json_array();
        for (size_t i = 0; admins != NULL && described != NULL && i < a->n_admins; i++) {
            json_array_append_new(admins, render_key_json(&a->admins[i]));
            json_array_append_new(described, render_admin_json(names, &a->admins[i]));
        }
        keten_err e = keten_cli_json_print(json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "file",
            file, "type", "anchor", "sha256", hash, "network", a->network, "admins", admins,
            "administrators", described, "threshold", (json_int_t)a->threshold));
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    printf("file:        %s (sha256 %s)\n", file, hash);
    printf("anchor of network '%s': %u of %zu administrator signatures needed\n", a->network,
        (unsigned)a->threshold, a->n_admins);
    for (size_t i = 0; i < a->n_admins; i++) {
        print_admin(names, &a->admins[i]);
    }
    return KETEN_EXIT_OK;
}

/* ADMIN/state (a Directory without signatures) given to show: say what it
 * is and what shows it. */
static bool is_draft(const uint8_t *buf, size_t len)
{
    Keten__Directory *doc = NULL;
    bool draft
        = KETEN_PB_UNPACK_CANONICAL(keten__directory, buf, len, KETEN_DIRECTORY_MAX, "draft", &doc)
            == KETEN_OK
        && doc->network[0] != '\0' && doc->version >= 1 && doc->n_admins > 0;
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_err_clear();
    return draft;
}

/* ---- the command --------------------------------------------------------- */

int cmd_show(int argc, char **argv)
{
    static const struct option opts[] = {
        { "anchor", required_argument, NULL, 'a' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *anchor_path = NULL;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            anchor_path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (optind >= argc) {
        return keten_cli_usage(CMD, "give the directory FILE to show");
    }
    if (argc - optind > 1) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind + 1]);
    }
    const char *file = argv[optind];

    uint8_t *buf = NULL, *msg = NULL;
    size_t len = 0, msg_len = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    Keten__Anchor *anchor = NULL, *as_anchor = NULL;
    adminnames *names = NULL;
    const char **status = NULL;
    char *labels = NULL;
    verdict v;
    memset(&v, 0, sizeof v);
    int rc = KETEN_EXIT_OK;
    keten_err e = keten_file_read(file, KETEN_DIRECTORY_MAX, &buf, &len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (anchor_path != NULL
        && (e = keten_directory_anchor_load(anchor_path, &anchor)) != KETEN_OK) {
        goto out;
    }
    names = load_names(file, anchor_path);
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, file, &sd);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK_CANONICAL(keten__directory, sd->directory.data, sd->directory.len,
            KETEN_DIRECTORY_MAX, file, &doc);
    }
    if (e != KETEN_OK) {
        keten_err parse_err = e;
        char parse_detail[512];
        snprintf(parse_detail, sizeof parse_detail, "%s", keten_err_detail());
        if (keten_directory_anchor_parse(buf, len, &as_anchor) == KETEN_OK) {
            rc = show_anchor(file, buf, len, as_anchor, json, anchor_path, names);
            e = KETEN_OK;
            goto out;
        }
        if (is_draft(buf, len)) {
            e = keten_err_set(KETEN_ERR_WRONG_TYPE,
                "%s is the draft of the next version (ADMIN/state), not a published "
                "directory: see what it changes with keten-keys status --dir ADMIN and its "
                "partners with keten-keys partners --dir ADMIN",
                file);
            goto out;
        }
        e = keten_err_set(parse_err,
            "%s is neither a directory nor an anchor file, or it was damaged (%s)", file,
            parse_detail);
        if (anchor != NULL) {
            /* Asked whether it is valid: a file that does not parse is not. */
            keten_cli_error(e);
            rc = KETEN_EXIT_VERIFY;
            e = KETEN_OK;
        }
        goto out;
    }

    if (anchor != NULL) {
        verify(file, anchor_path, anchor, buf, len, doc, &v);
    }
    adminkey_set own;
    memset(&own, 0, sizeof own);
    if ((e = adminkey_set_from_pb(doc->admins, doc->n_admins, doc->threshold, &own)) != KETEN_OK) {
        /* Printed anyway; verification (if asked) reports the problem. */
        keten_err_clear();
        e = KETEN_OK;
    }
    if ((e = dirsig_message(&sd->directory, &msg, &msg_len)) != KETEN_OK) {
        goto out;
    }
    status = calloc(sd->n_signatures + 1, sizeof *status);
    labels = calloc(sd->n_signatures + 1, SIG_LABEL_MAX);
    if (status == NULL || labels == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "showing %s", file);
        goto out;
    }
    view w = { .file = file,
        .anchor_path = anchor_path,
        .buf = buf,
        .len = len,
        .sd = sd,
        .doc = doc,
        .own = &own,
        .v = &v,
        .names = names,
        .status = status };
    for (size_t i = 0; i < sd->n_signatures; i++) {
        status[i] = sig_status(sd->signatures[i], i, sd, msg, msg_len, doc, &own, &v,
            labels + i * SIG_LABEL_MAX, SIG_LABEL_MAX);
        if (strncmp(status[i], "valid", 5) == 0) {
            if (adminkey_set_find(&own, sd->signatures[i]->admin_pk.data) >= 0) {
                w.listed_valid++;
            } else {
                w.other_valid++;
            }
        }
    }
    dirsig_tally t;
    memset(&t, 0, sizeof t);
    if (v.have_signing && (e = dirsig_count(sd, &v.signing, &own, &t)) != KETEN_OK) {
        goto out;
    }
    w.t = &t;
    if (json) {
        e = keten_cli_json_print(doc_json(&w));
        if (e != KETEN_OK) {
            goto out;
        }
    } else {
        print_text(&w);
    }
    if (v.checked && v.err != KETEN_OK) {
        fprintf(stderr, "%s: %s: %s\n", keten_cli_prog(), keten_err_str(v.err), v.detail);
        /* A chain that is not there could not be checked: that is not a
         * verification failure of the file itself. */
        rc = v.chain_missing ? KETEN_EXIT_FAILURE : KETEN_EXIT_VERIFY;
    }
out:
    free(status);
    free(labels);
    free(msg);
    free(buf);
    adminnames_destroy(&names);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&anchor);
    keten_pb_free((ProtobufCMessage **)(void *)&as_anchor);
    return e == KETEN_OK ? rc : keten_cli_error(e);
}
