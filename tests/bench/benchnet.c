/*
 * benchnet - what keten-bench and keten-bench-exchange share (benchnet.h).
 */
#include "benchnet.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dirbuild.h"
#include "pb.h"
#include "util.h"

#define BENCHNET_CERT_VALID_MS (30ull * KETEN_MS_PER_DAY)
#define BENCHNET_DIR_VALID_MS (14ull * KETEN_MS_PER_DAY)
#define BENCHNET_LOG_LINE_MAX 2048
#define BENCHNET_SHOW_LINES 20
#define BENCHNET_ATTACH_SETTLE_NS (300 * BENCHNET_MS)
#define BENCHNET_ATTACH_STOP_NS (30 * BENCHNET_NS)

volatile sig_atomic_t benchnet_stop = 0;
volatile sig_atomic_t benchnet_attach_pid = 0;

static const char *g_prog = "keten-bench";

/* ---- the program --------------------------------------------------------- */

void benchnet_set_prog(const char *prog)
{
    g_prog = prog;
}

const char *benchnet_prog(void)
{
    return g_prog;
}

void benchnet_install_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGHUP, &sa, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
}

void *benchnet_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) {
        fprintf(stderr, "%s: out of memory (%zu x %zu bytes)\n", g_prog, n, size);
        exit(1);
    }
    return p;
}

void benchnet_report(const char *what, keten_err e)
{
    fprintf(stderr, "%s: %s: %s: %s\n", g_prog, what, keten_err_str(e), keten_err_detail());
}

int benchnet_usage_error(const char *what)
{
    fprintf(stderr, "%s: %s\nTry '%s --help'.\n", g_prog, what, g_prog);
    return 2;
}

bool benchnet_parse_seconds(const char *s, double min, double max, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= min && v <= max)) {
        return false;
    }
    *out = v;
    return true;
}

/* ---- time, CPU and the machine ------------------------------------------- */

uint64_t benchnet_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * BENCHNET_NS + (uint64_t)ts.tv_nsec;
}

uint64_t benchnet_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * BENCHNET_NS + (uint64_t)ts.tv_nsec;
}

void benchnet_sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / BENCHNET_NS), (long)(ns % BENCHNET_NS) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && benchnet_stop == 0) { }
}

long benchnet_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n;
}

double benchnet_self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
        + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void benchnet_loadavg(char out[static BENCHNET_LOADAVG_MAX])
{
    snprintf(out, BENCHNET_LOADAVG_MAX, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL) {
        return;
    }
    double a = 0, b = 0, c = 0;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) {
        snprintf(out, BENCHNET_LOADAVG_MAX, "%.2f %.2f %.2f", a, b, c);
    }
    fclose(f);
}

bool benchnet_proc_read(pid_t pid, benchnet_proc_stat *ps)
{
    memset(ps, 0, sizeof *ps);
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (p == NULL) {
        return false;
    }
    /* Fields after the command: 3 (state) ... 14 utime, 15 stime. */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    for (const char *q = p + 1; *q != '\0' && field < 15;) {
        while (*q == ' ') {
            q++;
        }
        field++;
        if (field == 14) {
            ut = strtoull(q, NULL, 10);
        } else if (field == 15) {
            st = strtoull(q, NULL, 10);
        }
        while (*q != ' ' && *q != '\0') {
            q++;
        }
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    ps->cpu_user_s = (double)ut / hz;
    ps->cpu_sys_s = (double)st / hz;
    ps->cpu_s = (double)(ut + st) / hz;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v = 0;
        if (sscanf(line, "VmHWM: %llu", &v) == 1) {
            ps->hwm_kb = v;
        } else if (sscanf(line, "VmRSS: %llu", &v) == 1) {
            ps->rss_kb = v;
        } else if (sscanf(line, "RssAnon: %llu", &v) == 1) {
            ps->anon_kb = v;
        } else if (sscanf(line, "RssFile: %llu", &v) == 1) {
            ps->file_kb = v;
        } else if (sscanf(line, "Threads: %llu", &v) == 1) {
            ps->threads = v;
        }
    }
    fclose(f);
    return true;
}

/* ---- statistics and output ----------------------------------------------- */

int benchnet_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int benchnet_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double benchnet_pct_ms(const uint64_t *v, size_t n, double p)
{
    if (n == 0) {
        return -1.0;
    }
    size_t rank = (size_t)(p * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)v[rank - 1] / 1e6;
}

benchnet_stat3 benchnet_stat_of(const void *base, size_t stride, size_t n, size_t off)
{
    double *v = benchnet_xcalloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = *(const double *)((const char *)base + i * stride + off);
    }
    qsort(v, n, sizeof v[0], benchnet_cmp_double);
    benchnet_stat3 s = { n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1] };
    free(v);
    return s;
}

void benchnet_print_stats(const char *title, const void *base, size_t stride, size_t n,
    const benchnet_metric *ms, size_t n_ms, int name_width)
{
    printf("\n%s (%zu run%s; median [min - max])\n", title, n, n == 1 ? "" : "s");
    for (size_t k = 0; k < n_ms; k++) {
        benchnet_stat3 s = benchnet_stat_of(base, stride, n, ms[k].off);
        int d = ms[k].decimals;
        printf("  %-*s %12.*f %-3s [%.*f - %.*f]\n", name_width, ms[k].name, d, s.median,
            ms[k].unit, d, s.min, d, s.max);
    }
}

json_t *benchnet_stats_json(
    const void *base, size_t stride, size_t n, const benchnet_metric *ms, size_t n_ms)
{
    json_t *o = json_object();
    for (size_t k = 0; k < n_ms; k++) {
        benchnet_stat3 s = benchnet_stat_of(base, stride, n, ms[k].off);
        const char *name = ms[k].name;
        while (*name == ' ') {
            name++;
        }
        json_object_set_new(o, name,
            json_pack("{s:f, s:f, s:f, s:s}", "median", s.median, "min", s.min, "max", s.max,
                "unit", ms[k].unit));
    }
    return o;
}

void benchnet_write_json(const char *path, const json_t *root)
{
    if (path == NULL) {
        return;
    }
    int flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6);
    if (strcmp(path, "-") == 0) {
        if (json_dumpf(root, stdout, flags) != 0) {
            fprintf(stderr, "%s: cannot write the JSON\n", g_prog);
        }
        printf("\n");
    } else if (json_dump_file(root, path, flags) != 0) {
        fprintf(stderr, "%s: cannot write %s\n", g_prog, path);
    }
}

uint64_t benchnet_id_key(const uint8_t *id)
{
    uint64_t k;
    memcpy(&k, id, sizeof k);
    return k;
}

/* ---- files --------------------------------------------------------------- */

keten_err benchnet_path_in(const char *dir, const char *name, char out[static PATH_MAX])
{
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "path %s/%s is too long", dir, name);
    }
    return KETEN_OK;
}

bool benchnet_log_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[BENCHNET_LOG_LINE_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

void benchnet_show_log(const char *name, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char line[BENCHNET_LOG_LINE_MAX];
    for (int i = 0; i < BENCHNET_SHOW_LINES && fgets(line, sizeof line, f) != NULL; i++) {
        fprintf(stderr, "  %s: %s", name, line);
    }
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

bool benchnet_rm_tree(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

const char *benchnet_find_prog(const char *given, const char *env, const char *dir,
    const char *name, bool beside, char out[static PATH_MAX])
{
    if (given != NULL) {
        return given;
    }
    const char *v = getenv(env);
    if (v != NULL && v[0] != '\0') {
        return v;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            /* build tree: BUILD/tests/bench/PROG -> BUILD/<dir>/<name> */
            if (snprintf(out, PATH_MAX, "%s/../../%s/%s", self, dir, name) < PATH_MAX
                && access(out, X_OK) == 0) {
                return out;
            }
            if (beside && snprintf(out, PATH_MAX, "%s/%s", self, name) < PATH_MAX
                && access(out, X_OK) == 0) {
                return out;
            }
        }
    }
    snprintf(out, PATH_MAX, "/usr/bin/%s", name);
    return out;
}

/* ---- the network ---------------------------------------------------------- */

struct benchnet_draft {
    keten_dirbuild *build;
    uint8_t *admin_sk; /* sodium_malloc */
    uint64_t now;
};

bool benchnet_make_root(benchnet *bn, const char *store_dir, const char *prefix)
{
    const char *base = store_dir != NULL ? store_dir : getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if (snprintf(bn->root, sizeof bn->root, "%s/%s-XXXXXX", base, prefix) >= (int)sizeof bn->root
        || mkdtemp(bn->root) == NULL) {
        fprintf(stderr, "%s: cannot make a temporary directory in %s\n", g_prog, base);
        return false;
    }
    return true;
}

/* A certificate request of id, verified and approved into the draft. */
static keten_err approve(benchnet_draft *d, const keten_identity *id)
{
    uint8_t *req = NULL;
    size_t req_len = 0;
    Keten__NodeRequest *parsed = NULL;
    uint64_t serial = 0;
    keten_err e = keten_identity_request(id, BENCHNET_NETWORK, d->now, &req, &req_len);
    if (e == KETEN_OK) {
        e = keten_identity_request_verify(req, req_len, &parsed);
    }
    if (e == KETEN_OK) {
        e = keten_dirbuild_approve(
            d->build, parsed, d->now, BENCHNET_CERT_VALID_MS, false, &serial);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    free(req);
    return e;
}

keten_err benchnet_draft_new(benchnet *bn, benchnet_draft **out)
{
    *out = NULL;
    benchnet_draft *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "directory draft");
    }
    d->now = keten_now_ms();
    d->admin_sk = sodium_malloc(KETEN_SIGN_SK_BYTES);
    if (d->admin_sk == NULL) {
        free(d);
        return keten_err_set(KETEN_ERR_NOMEM, "administrator key");
    }
    uint8_t admin_pk[1][KETEN_SIGN_PK_BYTES];
    uint8_t *anchor_bytes = NULL;
    size_t anchor_len = 0;
    keten_err e = KETEN_OK;
    if (crypto_sign_keypair(admin_pk[0], d->admin_sk) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "crypto_sign_keypair failed");
        goto out;
    }
    ProtobufCBinaryData admins[1] = { { KETEN_SIGN_PK_BYTES, admin_pk[0] } };
    Keten__Anchor a = KETEN__ANCHOR__INIT;
    a.network = (char *)BENCHNET_NETWORK;
    a.admins = admins;
    a.n_admins = 1;
    a.threshold = 1;
    uint32_t rule = 0;
    if ((e = keten_pb_pack(&a.base, &anchor_bytes, &anchor_len)) != KETEN_OK
        || (e = keten_directory_anchor_parse(anchor_bytes, anchor_len, &bn->anchor)) != KETEN_OK
        || (e = benchnet_path_in(bn->root, "network.pub", bn->anchor_path)) != KETEN_OK
        || (e = keten_file_write(bn->anchor_path, anchor_bytes, anchor_len, 0644, true)) != KETEN_OK
        || (e = keten_dirbuild_new(
                BENCHNET_NETWORK, (const uint8_t(*)[KETEN_SIGN_PK_BYTES])admin_pk, 1, 1, &d->build))
            != KETEN_OK
        || (e = keten_dirbuild_register(d->build, BENCHNET_CATEGORY, BENCHNET_PURPOSE)) != KETEN_OK
        || (e = keten_dirbuild_add_rule(
                d->build, KETEN__EFFECT__EFFECT_ALLOW, "*", "*", "*", NULL, NULL, &rule))
            != KETEN_OK) {
        goto out;
    }
    if ((e = keten_identity_generate("broker", "broker", "keten-bench", true, &bn->broker))
            != KETEN_OK
        || (e = approve(d, bn->broker)) != KETEN_OK) {
        goto out;
    }
out:
    free(anchor_bytes);
    if (e != KETEN_OK) {
        benchnet_draft_destroy(&d);
    }
    *out = d;
    return e;
}

keten_err benchnet_draft_add(
    benchnet_draft *d, const char *id, const char *role, keten_identity **out)
{
    keten_err e = keten_identity_generate(id, role, "keten-bench", false, out);
    return e != KETEN_OK ? e : approve(d, *out);
}

keten_err benchnet_draft_finish(benchnet_draft *d, benchnet *bn)
{
    uint8_t *dir_bytes = NULL, *signed_dir = NULL;
    size_t dir_len = 0, signed_len = 0;
    keten_err e;
    if ((e = keten_dirbuild_finish(d->build, d->now, BENCHNET_DIR_VALID_MS, &dir_bytes, &dir_len))
            != KETEN_OK
        || (e = keten_directory_sign(
                dir_bytes, dir_len, NULL, 0, d->admin_sk, &signed_dir, &signed_len))
            != KETEN_OK
        || (e = keten_directory_verify(bn->anchor, NULL, signed_dir, signed_len, d->now, &bn->dir))
            != KETEN_OK
        || (e = benchnet_path_in(bn->root, "directory", bn->dir_path)) != KETEN_OK
        || (e = keten_file_write(bn->dir_path, signed_dir, signed_len, 0644, true)) != KETEN_OK) {
        goto out;
    }
out:
    free(signed_dir);
    free(dir_bytes);
    return e;
}

void benchnet_draft_destroy(benchnet_draft **d)
{
    if (d == NULL || *d == NULL) {
        return;
    }
    keten_dirbuild_destroy(&(*d)->build);
    sodium_free((*d)->admin_sk); /* zeroes it */
    free(*d);
    *d = NULL;
}

void benchnet_free(benchnet *bn)
{
    keten_identity_destroy(&bn->broker);
    keten_directory_destroy(&bn->dir);
    keten_pb_free((ProtobufCMessage **)(void *)&bn->anchor);
}

/* ---- the broker process --------------------------------------------------- */

size_t benchnet_broker_argv(const char **argv, const char *broker_path, const char *home,
    const benchnet *bn, const char *endpoint)
{
    size_t n = 0;
    argv[n++] = broker_path;
    argv[n++] = "run";
    argv[n++] = "--home";
    argv[n++] = home;
    argv[n++] = "--anchor";
    argv[n++] = bn->anchor_path;
    argv[n++] = "--directory";
    argv[n++] = bn->dir_path;
    argv[n++] = "--listen";
    argv[n++] = endpoint;
    argv[n++] = "--log-level";
    argv[n++] = "notice";
    return n;
}

pid_t benchnet_attach_start(const char *cmd, bool die_with_parent)
{
    if (cmd == NULL) {
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        (void)setpgid(0, 0);
        if (die_with_parent) {
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) {
        benchnet_attach_pid = pid;
        benchnet_sleep_ns(BENCHNET_ATTACH_SETTLE_NS); /* let a tracer attach first */
    }
    return pid;
}

void benchnet_attach_stop(pid_t pid)
{
    if (pid <= 0) {
        return;
    }
    kill(-pid, SIGINT);
    int status = 0;
    uint64_t deadline = benchnet_mono_ns() + BENCHNET_ATTACH_STOP_NS;
    while (benchnet_mono_ns() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            benchnet_attach_pid = 0;
            return;
        }
        benchnet_sleep_ns(50 * BENCHNET_MS);
    }
    kill(-pid, SIGKILL);
    (void)waitpid(pid, &status, 0);
    benchnet_attach_pid = 0;
}
