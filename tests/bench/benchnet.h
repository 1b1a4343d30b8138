/*
 * benchnet - what the two load generators share: keten-bench (emulated nodes
 * against a real broker) and keten-bench-exchange (real keten-node daemons).
 *
 * The test network (one administrator with threshold 1, a signed directory
 * with an allow-all rule, the broker's identity, the nodes each program adds)
 * in a temporary directory; the broker's command line; /proc readings of a
 * child (CPU time, VmRSS, RssAnon, RssFile, VmHWM, threads); timing; the
 * median/min/max tables and their JSON; a few option and file functions.
 *
 * Ownership: a benchnet owns its broker identity, anchor and directory
 * (benchnet_free releases them); a benchnet_draft owns the administrator's
 * secret key (sodium_malloc, freed with the draft) and the directory being
 * built. Identities returned by benchnet_draft_add belong to the caller.
 *
 * Threads: the timing, /proc, statistics and JSON functions may be called
 * from any thread; benchnet_set_prog, the network and the signal functions
 * from the main thread only. benchnet_stop is set by a program's signal
 * handler; benchnet_sleep_ns returns early once it is set.
 *
 * Errors: functions returning keten_err set its detail (keten_err_detail);
 * bool functions return false when the thing could not be read; allocation
 * failure in benchnet_xcalloc ends the program with exit code 1 (a load
 * generator has nothing to unwind to).
 */
#ifndef KETEN_BENCHNET_H
#define KETEN_BENCHNET_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "directory.h"
#include "err.h"
#include "identity.h"
#include "keten.h"

#define BENCHNET_NETWORK "benchnet"
#define BENCHNET_CATEGORY "woonfraude"
#define BENCHNET_PURPOSE "handhaving"
#define BENCHNET_NS 1000000000ull
#define BENCHNET_MS 1000000ull
#define BENCHNET_LOADAVG_MAX 48

/* ---- the program --------------------------------------------------------- */

/* The name messages start with ("keten-bench: ..."); call first in main. */
void benchnet_set_prog(const char *prog);
const char *benchnet_prog(void);

/* Set by a program's signal handler; benchnet_sleep_ns stops early once it
 * is non-zero. A program that never sets it sleeps the whole time. */
extern volatile sig_atomic_t benchnet_stop;
/* The --attach child (0: none), for the program's signal handler. */
extern volatile sig_atomic_t benchnet_attach_pid;

/* sigaction(SIGINT, SIGTERM, SIGHUP) to handler; SIGPIPE ignored. */
void benchnet_install_signals(void (*handler)(int));

/* calloc that never returns NULL (a zero count or size allocates one byte):
 * out of memory ends the program with a message and exit code 1. */
void *benchnet_xcalloc(size_t n, size_t size);

/* "PROG: what: error: detail" on stderr. */
void benchnet_report(const char *what, keten_err e);

/* "PROG: what\nTry 'PROG --help'." on stderr; returns 2 (usage). */
int benchnet_usage_error(const char *what);

/* A decimal number of seconds in [min, max]. */
bool benchnet_parse_seconds(const char *s, double min, double max, double *out);

/* ---- time, CPU and the machine ------------------------------------------- */

uint64_t benchnet_mono_ns(void);
/* CPU time of the calling thread. */
uint64_t benchnet_thread_cpu_ns(void);
/* Sleeps ns (EINTR resumes it) unless benchnet_stop is set. */
void benchnet_sleep_ns(uint64_t ns);
/* Online cores, at least 1. */
long benchnet_cpu_count(void);
/* User + system CPU seconds of this process (0 when unreadable). */
double benchnet_self_cpu_s(void);
/* The 1, 5 and 15 minute load averages as "a b c", or "?". */
void benchnet_loadavg(char out[static BENCHNET_LOADAVG_MAX]);

/* /proc/PID/stat and /proc/PID/status of a child. */
typedef struct benchnet_proc_stat {
    double cpu_user_s, cpu_sys_s; /* utime, stime */
    double cpu_s; /* utime + stime */
    uint64_t hwm_kb, rss_kb, anon_kb, file_kb, threads;
} benchnet_proc_stat;

/* Fills *ps (zeroed first); false when either file could not be read. */
bool benchnet_proc_read(pid_t pid, benchnet_proc_stat *ps);

/* ---- statistics and output ----------------------------------------------- */

/* qsort comparators. */
int benchnet_cmp_u64(const void *a, const void *b);
int benchnet_cmp_double(const void *a, const void *b);

/* Nearest-rank percentile p (0..1) of sorted v (ns), in ms; -1 when empty. */
double benchnet_pct_ms(const uint64_t *v, size_t n, double p);

typedef struct benchnet_stat3 {
    double median, min, max;
} benchnet_stat3;

/* Median, min and max of the double at byte offset off of n (>= 1) records
 * of stride bytes from base. */
benchnet_stat3 benchnet_stat_of(const void *base, size_t stride, size_t n, size_t off);

/* One row of a results table: a double at offset off of the record. */
typedef struct benchnet_metric {
    const char *name;
    const char *unit;
    size_t off;
    int decimals;
} benchnet_metric;

/* "\nTITLE (N runs; median [min - max])" and one line per metric, its name
 * left-aligned in name_width columns. */
void benchnet_print_stats(const char *title, const void *base, size_t stride, size_t n,
    const benchnet_metric *ms, size_t n_ms, int name_width);

/* {"<name without leading blanks>": {"median", "min", "max", "unit"}, ...};
 * a new reference. */
json_t *benchnet_stats_json(
    const void *base, size_t stride, size_t n, const benchnet_metric *ms, size_t n_ms);

/* root as indented JSON to path ('-': stdout); a message when it fails.
 * Does not take root. */
void benchnet_write_json(const char *path, const json_t *root);

/* The first 8 bytes of a message id, for open-addressing tables. */
uint64_t benchnet_id_key(const uint8_t *id);

/* ---- files --------------------------------------------------------------- */

/* out = dir/name. */
keten_err benchnet_path_in(
    const char *dir, const char *name, char out[static PATH_MAX]) KETEN_MUST_CHECK;

/* Whether a line of the file at path contains needle. */
bool benchnet_log_has(const char *path, const char *needle);

/* The first 20 lines of the file at path on stderr, each as "  name: line". */
void benchnet_show_log(const char *name, const char *path);

/* Removes the tree at path (symbolic links not followed); false when some
 * of it remained. */
bool benchnet_rm_tree(const char *path);

/* The program to run: given, else $env, else ../../<dir>/<name> next to this
 * program (the build tree), else (with beside) <name> in this program's own
 * directory, else /usr/bin/<name>. The result is given, the environment's
 * value, or out. */
const char *benchnet_find_prog(const char *given, const char *env, const char *dir,
    const char *name, bool beside, char out[static PATH_MAX]);

/* ---- the network ---------------------------------------------------------- */

typedef struct benchnet {
    char root[PATH_MAX]; /* the temporary directory */
    char anchor_path[PATH_MAX]; /* root/network.pub */
    char dir_path[PATH_MAX]; /* root/directory */
    keten_identity *broker;
    Keten__Anchor *anchor;
    keten_directory *dir;
} benchnet;

/* mkdtemp DIR/PREFIX-XXXXXX into bn->root, DIR being store_dir, else
 * $TMPDIR, else /tmp; false (with a message) when it cannot be made. */
bool benchnet_make_root(benchnet *bn, const char *store_dir, const char *prefix);

typedef struct benchnet_draft benchnet_draft;

/* A new administrator key, the anchor written to root/network.pub, a draft
 * directory with the category, an allow-all rule and the broker's approved
 * identity (bn->broker). */
keten_err benchnet_draft_new(benchnet *bn, benchnet_draft **out) KETEN_MUST_CHECK;

/* A new node identity (id, role) approved into the draft; *out is the
 * caller's. */
keten_err benchnet_draft_add(
    benchnet_draft *d, const char *id, const char *role, keten_identity **out) KETEN_MUST_CHECK;

/* The directory signed by the administrator, verified against the anchor
 * into bn->dir, and written to root/directory. */
keten_err benchnet_draft_finish(benchnet_draft *d, benchnet *bn) KETEN_MUST_CHECK;

/* Wipes the administrator key; accepts NULL and *d == NULL. */
void benchnet_draft_destroy(benchnet_draft **d);

/* Releases the broker identity, the anchor and the directory (not root). */
void benchnet_free(benchnet *bn);

/* ---- the broker process --------------------------------------------------- */

#define BENCHNET_BROKER_ARGC 12

/* argv[0..11] of 'keten-broker run --home HOME --anchor A --directory D
 * --listen ENDPOINT --log-level notice'; the caller appends the rest and
 * the NULL. Returns the count written (BENCHNET_BROKER_ARGC). */
size_t benchnet_broker_argv(const char **argv, const char *broker_path, const char *home,
    const benchnet *bn, const char *endpoint);

/* --attach: sh -c CMD in its own process group (the caller sets the
 * KETEN_*_PID variables before); with die_with_parent, SIGKILL when this
 * program dies. Waits 300 ms for a tracer to attach. 0 when cmd is NULL. */
pid_t benchnet_attach_start(const char *cmd, bool die_with_parent);

/* SIGINT to the --attach group, wait 30 s at most, then SIGKILL. */
void benchnet_attach_stop(pid_t pid);

#endif
