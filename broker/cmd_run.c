/*
 * keten-broker run - the broker daemon: parse the
 * options into a broker_config and hand it to server_run().
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "cli.h"
#include "config.h"
#include "cmd.h"
#include "log.h"
#include "notify.h"
#include "server.h"
#include "store.h"

#define MAP_SIZE_MAX (1ull << 40)
#define CLOCK_WINDOW_MAX_MS (24ull * 3600ull * 1000ull)
#define RETRY_HORIZON_MAX_DAYS 3650
#define CHECKPOINT_RECORDS_MAX 10000000ull
#define CHECKPOINT_MS_MAX 3600000ull

static const char run_usage[]
    = "Usage: keten-broker run [--config FILE] --home DIR --anchor FILE --directory FILE --listen ENDPOINT\n"
      "                        [--metrics ADDR:PORT] [--map-size BYTES] [--passphrase-file F]\n"
      "                        [--clock-window-ms N] [--retry-horizon-days N]\n"
      "                        [--checkpoint-records N] [--checkpoint-ms N]\n"
      "                        [--log-level debug|info|notice|warn|error]\n"
      "\n"
      "Run the broker: accept CurveZMQ connections of the nodes listed in the\n"
      "directory, check every submitted envelope and the sharing policy, store and\n"
      "forward messages, and append every exchange to the audit log in DIR/store.\n"
      "Logs go to standard error (logfmt). SIGHUP reloads the directory file;\n"
      "SIGTERM and SIGINT finish the current batch and stop. Under systemd\n"
      "(Type=notify) it reports readiness, reloads and stopping, and feeds the watchdog.\n"
      "\n"
      "Options:\n"
      "  --config FILE            read these settings from FILE ([broker] section); options\n"
      "                           given here override it\n"
      "  --home DIR               the broker's home (identity.secret; the store in DIR/store)\n"
      "  --anchor FILE            the network's trust anchor (network.pub)\n"
      "  --directory FILE         the signed directory; installed if newer than the stored one\n"
      "  --listen ENDPOINT        where nodes connect, e.g. tcp://0.0.0.0:7250 or "
      "ipc:///run/keten\n"
      "  --metrics ADDR:PORT      serve Prometheus metrics on http://ADDR:PORT/metrics\n"
      "  --map-size BYTES         LMDB map size (default 1 GiB; at least 16 MiB); restart with a\n"
      "                           larger value to enlarge a full store\n"
      "  --passphrase-file F      the key file's passphrase (else KETEN_PASSPHRASE or the "
      "terminal)\n"
      "  --clock-window-ms N      accepted clock difference of created_at (default 300000)\n"
      "  --retry-horizon-days N   how long msg_ids are remembered (default 7; never less than\n"
      "                           the longest message lifetime)\n"
      "  --checkpoint-records N   sign a checkpoint every N records (default 1000) ...\n"
      "  --checkpoint-ms N        ... or every N ms, whichever comes first (default 1000)\n"
      "  --log-level LEVEL        debug, info (default), notice, warn or error\n"
      "  --help                   show this help\n";

static bool parse_level(const char *s, int *out)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        { "debug", KETEN_LOG_DEBUG },
        { "info", KETEN_LOG_INFO },
        { "notice", KETEN_LOG_NOTICE },
        { "warn", KETEN_LOG_WARNING },
        { "warning", KETEN_LOG_WARNING },
        { "error", KETEN_LOG_ERR },
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(s, levels[i].name) == 0) {
            *out = levels[i].level;
            return true;
        }
    }
    return false;
}

int cmd_run(int argc, char **argv)
{
    /* Every setting of keten_config_broker_table is a long option with val 'S'. */
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'C' },
        { "home", required_argument, NULL, 'S' },
        { "anchor", required_argument, NULL, 'S' },
        { "directory", required_argument, NULL, 'S' },
        { "listen", required_argument, NULL, 'S' },
        { "metrics", required_argument, NULL, 'S' },
        { "map-size", required_argument, NULL, 'S' },
        { "passphrase-file", required_argument, NULL, 'S' },
        { "clock-window-ms", required_argument, NULL, 'S' },
        { "retry-horizon-days", required_argument, NULL, 'S' },
        { "checkpoint-records", required_argument, NULL, 'S' },
        { "checkpoint-ms", required_argument, NULL, 'S' },
        { "log-level", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int rc = KETEN_EXIT_OK;
    const char *config_path = NULL;
    keten_config *kc = keten_config_new(&keten_config_broker_table);
    if (kc == NULL) {
        fprintf(stderr, "keten-broker: out of memory\n");
        return KETEN_EXIT_FAILURE;
    }
    int c, idx = 0;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, &idx)) != -1) {
        switch (c) {
        case 'C':
            config_path = optarg;
            break;
        case 'S':
            if (keten_config_set(kc, opts[idx].name, optarg != NULL ? optarg : "yes",
                    KETEN_CONFIG_SRC_CLI)
                != KETEN_OK) {
                rc = keten_cli_usage("run", "%s", keten_err_detail());
                goto out;
            }
            break;
        case 'h':
            fputs(run_usage, stdout);
            goto out;
        default:
            rc = keten_cli_getopt_error("run", c, argc, argv);
            goto out;
        }
    }
    if (optind < argc) {
        rc = keten_cli_usage("run", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (config_path != NULL) {
        keten_err e = keten_config_load(kc, config_path);
        if (e != KETEN_OK) {
            if (keten_config_error_count(kc) == 0) {
                rc = keten_cli_error(e); /* missing, unreadable, writable by others */
                rc = rc == KETEN_EXIT_FAILURE ? KETEN_EXIT_USAGE : rc;
            } else {
                for (size_t i = 0; keten_config_error(kc, i) != NULL; i++) {
                    fprintf(stderr, "keten-broker: %s\n", keten_config_error(kc, i));
                }
                rc = KETEN_EXIT_USAGE;
            }
            goto out;
        }
    }
    if (keten_config_check(kc) != KETEN_OK) {
        rc = keten_cli_usage("run", "%s", keten_err_detail());
        goto out;
    }
    broker_config cfg = {
        .home = keten_config_get_str(kc, "home"),
        .anchor_path = keten_config_get_str(kc, "anchor"),
        .directory_path = keten_config_get_str(kc, "directory"),
        .listen = keten_config_get_str(kc, "listen"),
        .metrics_addr = keten_config_get_str(kc, "metrics"),
        .passfile = keten_config_get_str(kc, "passphrase-file"),
        .map_size = keten_config_get_uint(kc, "map-size"),
        .clock_window_ms = keten_config_get_uint(kc, "clock-window-ms"),
        .retry_horizon_ms = keten_config_get_uint(kc, "retry-horizon-days") * KETEN_MS_PER_DAY,
        .checkpoint_records = keten_config_get_uint(kc, "checkpoint-records"),
        .checkpoint_ms = keten_config_get_uint(kc, "checkpoint-ms"),
        .log_level = KETEN_LOG_INFO,
    };
    (void)parse_level(keten_config_get_str(kc, "log-level"), &cfg.log_level);
    keten_log_init("keten-broker", cfg.log_level);
    keten_err e = server_run(&cfg); /* kc owns the strings in cfg: destroy it after */
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "broker not running", "error=\"%s\"", keten_strerror(e));
        keten_notify_status("not running: %s", keten_strerror(e));
        rc = keten_cli_error(e);
    }
out:
    keten_config_destroy(&kc);
    return rc;
}
