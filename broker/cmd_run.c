/*
 * keten-broker run - the broker daemon (DESIGN section 6): parse the
 * options into a broker_config and hand it to server_run().
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "cli.h"
#include "cmd.h"
#include "log.h"
#include "server.h"
#include "store.h"

#define MAP_SIZE_MAX (1ull << 40)
#define CLOCK_WINDOW_MAX_MS (24ull * 3600ull * 1000ull)
#define RETRY_HORIZON_MAX_DAYS 3650
#define CHECKPOINT_RECORDS_MAX 10000000ull
#define CHECKPOINT_MS_MAX 3600000ull

static const char run_usage[]
    = "Usage: keten-broker run --home DIR --anchor FILE --directory FILE --listen ENDPOINT\n"
      "                        [--metrics ADDR:PORT] [--map-size BYTES] [--passphrase-file F]\n"
      "                        [--clock-window-ms N] [--retry-horizon-days N]\n"
      "                        [--checkpoint-records N] [--checkpoint-ms N]\n"
      "                        [--log-level debug|info|notice|warn|error]\n"
      "\n"
      "Run the broker: accept CurveZMQ connections of the nodes listed in the\n"
      "directory, check every submitted envelope and the sharing policy, store and\n"
      "forward messages, and append every exchange to the audit log in DIR/store.\n"
      "Logs go to standard error (logfmt). SIGHUP reloads the directory file;\n"
      "SIGTERM and SIGINT finish the current batch and stop.\n"
      "\n"
      "Options:\n"
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
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "anchor", required_argument, NULL, 'a' },
        { "directory", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "metrics", required_argument, NULL, 'm' },
        { "map-size", required_argument, NULL, 'M' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "clock-window-ms", required_argument, NULL, 'c' },
        { "retry-horizon-days", required_argument, NULL, 'r' },
        { "checkpoint-records", required_argument, NULL, 'R' },
        { "checkpoint-ms", required_argument, NULL, 'T' },
        { "log-level", required_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    broker_config cfg = {
        .map_size = STORE_MAP_SIZE_DEFAULT,
        .clock_window_ms = BROKER_CLOCK_WINDOW_DEFAULT_MS,
        .retry_horizon_ms = BROKER_RETRY_HORIZON_DEFAULT_DAYS * KETEN_MS_PER_DAY,
        .checkpoint_records = BROKER_CHECKPOINT_RECORDS_DEFAULT,
        .checkpoint_ms = BROKER_CHECKPOINT_MS_DEFAULT,
        .log_level = KETEN_LOG_INFO,
    };
    uint64_t n = 0;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            cfg.home = optarg;
            break;
        case 'a':
            cfg.anchor_path = optarg;
            break;
        case 'd':
            cfg.directory_path = optarg;
            break;
        case 'l':
            cfg.listen = optarg;
            break;
        case 'm':
            cfg.metrics_addr = optarg;
            break;
        case 'p':
            cfg.passfile = optarg;
            break;
        case 'M':
            if (!keten_cli_parse_uint(optarg, STORE_MAP_SIZE_MIN, MAP_SIZE_MAX, &cfg.map_size)) {
                return keten_cli_usage("run", "--map-size: a number of bytes from %llu to %llu",
                    (unsigned long long)STORE_MAP_SIZE_MIN, (unsigned long long)MAP_SIZE_MAX);
            }
            break;
        case 'c':
            if (!keten_cli_parse_uint(optarg, 1000, CLOCK_WINDOW_MAX_MS, &cfg.clock_window_ms)) {
                return keten_cli_usage("run", "--clock-window-ms: 1000 to %llu",
                    (unsigned long long)CLOCK_WINDOW_MAX_MS);
            }
            break;
        case 'r':
            if (!keten_cli_parse_uint(optarg, 1, RETRY_HORIZON_MAX_DAYS, &n)) {
                return keten_cli_usage(
                    "run", "--retry-horizon-days: 1 to %d", RETRY_HORIZON_MAX_DAYS);
            }
            cfg.retry_horizon_ms = n * KETEN_MS_PER_DAY;
            break;
        case 'R':
            if (!keten_cli_parse_uint(optarg, 1, CHECKPOINT_RECORDS_MAX, &cfg.checkpoint_records)) {
                return keten_cli_usage("run", "--checkpoint-records: 1 to %llu",
                    (unsigned long long)CHECKPOINT_RECORDS_MAX);
            }
            break;
        case 'T':
            if (!keten_cli_parse_uint(optarg, 10, CHECKPOINT_MS_MAX, &cfg.checkpoint_ms)) {
                return keten_cli_usage(
                    "run", "--checkpoint-ms: 10 to %llu", (unsigned long long)CHECKPOINT_MS_MAX);
            }
            break;
        case 'L':
            if (!parse_level(optarg, &cfg.log_level)) {
                return keten_cli_usage("run", "--log-level: debug, info, notice, warn or error");
            }
            break;
        case 'h':
            fputs(run_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("run", c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage("run", "unexpected argument '%s'", argv[optind]);
    }
    if (cfg.home == NULL || cfg.anchor_path == NULL || cfg.directory_path == NULL
        || cfg.listen == NULL) {
        return keten_cli_usage("run", "--home, --anchor, --directory and --listen are required");
    }
    keten_log_init("keten-broker", cfg.log_level);
    keten_err e = server_run(&cfg);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "broker not running", "error=\"%s\"", keten_strerror(e));
        return keten_cli_error(e);
    }
    return KETEN_EXIT_OK;
}
