/*
 * cli.h - what keten's command-line programs (keten-keys, keten-node,
 * keten-broker, keten-audit) share: error messages and exit codes, option
 * errors, number and list parsing, passphrases and secret key files, JSON
 * output, and the `keygen` command of nodes and the broker.
 *
 * Messages go to stderr as "PROG: strerror: detail" (PROG set once with
 * keten_cli_init()); data goes to stdout. Exit codes (the same in every program):
 * 0 success, 1 failure, 2 usage error, 3 verification failure; and for the
 * daemons (`run`) 4: they could not start for a reason a restart cannot fix
 * (keten_cli_start_error()).
 *
 * Ownership: lists from keten_cli_split() are freed with
 * keten_cli_split_free(); identities with keten_identity_destroy();
 * passphrases with keten_passphrase_free(). keten_cli_json_print() takes
 * ownership of its argument.
 * Thread safety: none (program name, environment, terminal); call from the
 * main thread of a command-line program only.
 */
#ifndef KETEN_CLI_H
#define KETEN_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "identity.h"
#include "keten.h"

#define KETEN_EXIT_OK 0
#define KETEN_EXIT_FAILURE 1
#define KETEN_EXIT_USAGE 2
#define KETEN_EXIT_VERIFY 3
/* A daemon could not start and starting it again cannot help (wrong
 * passphrase, missing or invalid keys, an unusable anchor or setting): the
 * systemd units keep it out of their restart loop (RestartPreventExitStatus). */
#define KETEN_EXIT_START 4

/* Standard base64 (with padding) of a 32-byte key, NUL included. */
#define KETEN_CLI_KEY_B64_BYTES 45
/* Lowercase hex of a SHA-256, NUL included. */
#define KETEN_CLI_HASH_HEX_BYTES (2 * KETEN_HASH_BYTES + 1)
/* Most items in one comma-separated list on the command line. */
#define KETEN_CLI_LIST_MAX 256
/* Most long options of one command looked at for a suggestion. */
#define KETEN_CLI_OPTIONS_MAX 64

/* The program name used in every message ("keten-keys"); must be static. */
void keten_cli_init(const char *prog);
const char *keten_cli_prog(void);

/* Whether this build has the test hooks (meson -Dtest_hooks=true, which
 * defines KETEN_TEST_HOOKS): KETEN_TEST_FAST_KDF, KETEN_TEST_NOW_MS,
 * KETEN_BROKER_FAULT, KETEN_BROKER_TEST_CLOCK_OFFSET_MS,
 * KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT, KETEN_NODE_TEST_DIRECTORY_AHEAD_MS,
 * KETEN_BROKER_TEST_NO_DISK_CHECK, KETEN_TEST_CRASH_WRITE. Without it their code is not compiled
 * at all. */
#ifdef KETEN_TEST_HOOKS
#define KETEN_CLI_TEST_HOOKS_BUILT true
#else
#define KETEN_CLI_TEST_HOOKS_BUILT false
#endif

/* Whether NAME (an environment variable's name, up to '=' or the end)
 * names a test hook: KETEN_TEST_*, KETEN_*_TEST_*, KETEN_*_FAULT or
 * KETEN_*_FAULT_*. */
bool keten_cli_is_test_hook(const char *name);

/* The start-up check of every program: 0 to go on; when hooks_built is
 * false and env (an environ-style array) sets a test hook, print
 * "PROG: NAME is set, but this build has no test hooks ..." on stderr and
 * return 2 (usage error). */
int keten_cli_test_hooks_check(const char *const *env, bool hooks_built);

/* keten_cli_init(prog), then keten_cli_test_hooks_check(environ, this
 * build): every main() calls it first and exits with what it returns when
 * that is not 0. */
int keten_cli_start(const char *prog) KETEN_MUST_CHECK;

/* Print "PROG: strerror(err): detail" (the detail of the last
 * keten_err_set()) on stderr; return keten_err_exit_code(err). */
int keten_cli_error(keten_err err);

/* For a daemon's failure to start: print like keten_cli_error() and return
 * 3 for a verification failure (a directory or anchor that does not
 * verify), 1 for what may pass by itself (KETEN_ERR_IO, _STORE, _STORE_FULL,
 * _NOMEM, _CRYPTO, _EXISTS: a busy port or lock, a full or failing disk)
 * and KETEN_EXIT_START for everything else (wrong or missing passphrase,
 * missing, unsafe or invalid key files, invalid settings). */
int keten_cli_start_error(keten_err err);

/* Print "PROG CMD: message" and "Try 'PROG CMD --help'." on stderr; return 2. */
int keten_cli_usage(const char *cmd, const char *fmt, ...) KETEN_PRINTF(2, 3);

/* getopt_long() for every command: the same arguments and result; it also
 * remembers longopts so that keten_cli_getopt_error() can name the closest
 * option to a mistyped one. */
int keten_cli_getopt(int argc, char *const argv[], const char *optstring,
    const struct option *longopts, int *longindex);

/* Report what keten_cli_getopt() returned as an error (c is '?' or ':', with
 * opterr = 0 and an optstring starting with ':'); return 2. An unknown long
 * option close to a known one says so: "unknown option --netwrok (did you
 * mean --network?)". */
int keten_cli_getopt_error(const char *cmd, int c, int argc, char *const argv[]);

/* Print "PROG: warning: message" on stderr. */
void keten_cli_warn(const char *fmt, ...) KETEN_PRINTF(1, 2);

/* Parse a decimal number in [min, max] (no sign, no spaces, no suffix). */
bool keten_cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Split a comma-separated list ("a,b,c") into n malloc()ed strings. An empty
 * list, an empty item ("a,,b", "a,") or more than KETEN_CLI_LIST_MAX items is
 * KETEN_ERR_INVALID with a detail naming `what` (e.g. "--category"). */
keten_err keten_cli_split(
    const char *list, const char *what, char ***items, size_t *n) KETEN_MUST_CHECK;
void keten_cli_split_free(char ***items_p, size_t n);

/* A passphrase for `what` (a file name, shown in the prompt) from
 * --passphrase-file (file, may be NULL), KETEN_PASSPHRASE or the terminal;
 * with confirm the terminal asks twice. Wraps keten_passphrase_get(). */
keten_err keten_cli_passphrase(
    const char *file, const char *what, bool confirm, char **out, size_t *out_len) KETEN_MUST_CHECK;

/* Open a secret key file: a passphrase-protected one with
 * keten_cli_passphrase() (passfile may be NULL), an unprotected one
 * (written with --no-passphrase) without asking for anything. */
keten_err keten_cli_identity_open(
    const char *path, const char *passfile, keten_identity **out) KETEN_MUST_CHECK;

/* Standard base64 of a 32-byte key into out (KETEN_CLI_KEY_B64_BYTES). */
void keten_cli_key_b64(
    const uint8_t key[static KETEN_SIGN_PK_BYTES], char out[static KETEN_CLI_KEY_B64_BYTES]);

/* Hex SHA-256 of len bytes (what `sha256sum` prints for a file's bytes). */
void keten_cli_sha256_hex(
    const uint8_t *data, size_t len, char out[static KETEN_CLI_HASH_HEX_BYTES]);

/* Print obj as indented JSON and a newline on stdout; takes ownership of obj
 * (NULL is KETEN_ERR_NOMEM: a json_*() constructor failed). */
keten_err keten_cli_json_print(json_t *obj) KETEN_MUST_CHECK;

/* ---- run (keten-broker run, keten-node run) ------------------------- */

/* The command line of a daemon's `run`, derived from its configuration
 * table (config.h): --config FILE, one long option --NAME per setting (a
 * boolean takes no value) and --help. --help prints "Usage: PROG run ..."
 * (the synopsis made from the table), about (the description; may be
 * NULL) and every option with the table's help text and default.
 * On success *out is the configuration (the command line over the file over
 * the defaults, required settings checked) and the result is -1; otherwise
 * *out is NULL and the result is the exit code: 0 after --help, 2 for a
 * usage error or a bad configuration file. */
int keten_cli_run_options(const keten_config_table *table, const char *about, int argc, char **argv,
    keten_config **out) KETEN_MUST_CHECK;

/* Print the help of keten_cli_run_options() on f. */
void keten_cli_run_usage(const keten_config_table *table, const char *about, FILE *f);

/* The KETEN_LOG_* threshold of cfg's log-level setting (info if unset). */
int keten_cli_log_level(const keten_config *cfg);

/* ---- keygen (keten-node keygen, keten-broker keygen) ----------------- */

typedef struct keten_cli_keygen_opts {
    const char *home; /* created 0700 if missing */
    const char *id; /* node id */
    const char *role; /* role; "broker" makes a log key too */
    const char *org; /* organisation name */
    bool no_passphrase; /* write the key unencrypted (tests, demo) */
    const char *passfile; /* --passphrase-file, or NULL */
    bool json; /* print JSON instead of text */
} keten_cli_keygen_opts;

/* The `keygen` command of a program (argv[0] is "keygen"): its options
 * --home, --id, --org, --no-passphrase, --passphrase-file, --json, --help,
 * and --role unless the role is fixed, and --rotate when rotate is given. */
typedef struct keten_cli_keygen_command {
    const char *usage; /* the --help text */
    const char *role; /* the fixed role ("broker"), or NULL: --role is required */
    const char *id_default; /* NULL: --id is required */
    const char *org_default; /* NULL: --org is required */
    const char *id_example; /* shown when --id is not a node id, e.g. " (e.g. gemeente-diemen)" */
    /* --rotate: new keys for the node of --home; NULL: no --rotate. */
    keten_err (*rotate)(const char *home, const char *passfile, bool json);
} keten_cli_keygen_command;

/* Parse and check the options, then keten_cli_keygen() (or rotate).
 * Returns the exit code. */
int keten_cli_keygen_main(const keten_cli_keygen_command *cmd, int argc, char **argv);

/* Make new keys and write HOME/identity.secret (never overwritten: an
 * existing one is KETEN_ERR_EXISTS) and HOME/identity.request (0644, a
 * serialized SignedRequest with an empty network); print the request's path,
 * its SHA-256 and the public keys. On failure nothing new is left in HOME.
 * HOME's parent folder must exist: KETEN_ERR_NOT_FOUND naming it, before any
 * passphrase is asked, otherwise. */
keten_err keten_cli_keygen(const keten_cli_keygen_opts *opts) KETEN_MUST_CHECK;

#endif
