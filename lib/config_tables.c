/*
 * config_tables.c - the settings of `keten-broker run` and `keten-node run`
 * (config.h). Each name is the key in the configuration file and the long
 * option on the command line; defaults and bounds are those of the
 * options (the daemons' --help, docs/operations.md, etc/broker.conf and
 * etc/node.conf say the same; tests check the example files against these
 * tables).
 */
#include "config.h"

#define MIB (1ull << 20)
#define TIB (1ull << 40)
#define SECOND_MS 1000ull
#define HOUR_MS (3600ull * SECOND_MS)
#define DAY_MS (24ull * HOUR_MS)

static const char *const log_levels[]
    = { "debug", "info", "notice", "warn", "warning", "error", NULL };

static const keten_config_setting broker_settings[] = {
    {
        .name = "home",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "the broker's home: its key file identity.secret and its store in HOME/store",
    },
    {
        .name = "anchor",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "the network's trust anchor (network.pub), received from the administrators",
    },
    {
        .name = "directory",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "the signed directory file; installed if newer than the stored one and not "
                "expired, re-read on SIGHUP",
    },
    {
        .name = "listen",
        .type = KETEN_CONFIG_ENDPOINT,
        .min = 1,
        .max = 255,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "where nodes connect (CurveZMQ): tcp://ADDRESS:PORT or ipc:///PATH",
    },
    {
        .name = "metrics",
        .type = KETEN_CONFIG_STRING,
        .min = 3,
        .max = 255,
        .validate = keten_config_valid_host_port,
        .help = "serve Prometheus metrics on http://ADDRESS:PORT/metrics (unset: no metrics "
                "server)",
    },
    {
        .name = "map-size",
        .type = KETEN_CONFIG_SIZE_BYTES,
        .default_value = "1G",
        .min = 16 * MIB,
        .max = TIB,
        .help = "size of the LMDB map (the store's upper bound); restart with a larger value to "
                "enlarge a full store; keep it below what the filesystem under HOME/store can "
                "hold",
    },
    {
        .name = "passphrase-file",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .help = "file holding the key file's passphrase, readable by the broker's user only "
                "(unset: KETEN_PASSPHRASE or the terminal)",
    },
    {
        .name = "clock-window-ms",
        .type = KETEN_CONFIG_DURATION_MS,
        .default_value = "300000",
        .min = SECOND_MS,
        .max = DAY_MS,
        .help = "accepted difference between a message's created_at and the broker's clock",
    },
    {
        .name = "retry-horizon-days",
        .type = KETEN_CONFIG_UINT,
        .default_value = "7",
        .min = 1,
        .max = 3650,
        .help = "how long msg_ids are remembered against replays, in days (never less than the "
                "longest message lifetime)",
    },
    {
        .name = "checkpoint-records",
        .type = KETEN_CONFIG_UINT,
        .default_value = "1000",
        .min = 1,
        .max = 10000000,
        .help = "sign a checkpoint of the audit log every N records ...",
    },
    {
        .name = "checkpoint-ms",
        .type = KETEN_CONFIG_DURATION_MS,
        .default_value = "1000",
        .min = 10,
        .max = HOUR_MS,
        .help = "... or every N milliseconds, whichever comes first",
    },
    {
        .name = "log-level",
        .type = KETEN_CONFIG_ENUM,
        .default_value = "info",
        .choices = log_levels,
        .help = "the least important log lines written: debug, info, notice, warn (warning) or "
                "error",
    },
};

static const keten_config_setting node_settings[] = {
    {
        .name = "home",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "the node's home: identity.secret, the store in HOME/store and the local "
                "commands' socket HOME/api.sock (HTTP)",
    },
    {
        .name = "anchor",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "the network's trust anchor (network.pub), received from the administrators",
    },
    {
        .name = "directory",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "a signed directory file; installed only if newer than the version the node has",
    },
    {
        .name = "broker",
        .type = KETEN_CONFIG_ENDPOINT,
        .min = 1,
        .max = 255,
        .validate = keten_config_valid_connect,
        .flags = KETEN_CONFIG_REQUIRED,
        .help = "the broker to connect to: tcp://HOST:PORT or ipc:///PATH",
    },
    {
        .name = "on-message",
        .type = KETEN_CONFIG_STRING,
        .min = 1,
        .max = KETEN_CONFIG_VALUE_MAX,
        .help = "command run with /bin/sh (clean environment) for each new message, its JSON on "
                "standard input (unset: none)",
    },
    {
        .name = "passphrase-file",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .help = "file holding the key file's passphrase, readable by the node's user only "
                "(unset: KETEN_PASSPHRASE or the terminal)",
    },
    {
        .name = "witness-timeout-ms",
        .type = KETEN_CONFIG_DURATION_MS,
        .default_value = "3600000",
        .min = 100,
        .max = 7 * DAY_MS,
        .help = "warn when the node's checkpoint is not witnessed by a quorum within this time",
    },
    {
        .name = "checkpoint-keep-days",
        .type = KETEN_CONFIG_UINT,
        .default_value = "7",
        .min = 1,
        .max = 3650,
        .help = "keep every witness checkpoint the node accepted in the last hour and one per "
                "minute of the last N days; older ones are thinned out (checkpoint-hourly-days)",
    },
    {
        .name = "checkpoint-hourly-days",
        .type = KETEN_CONFIG_UINT,
        .default_value = "90",
        .min = 1,
        .max = 3650,
        .help = "past checkpoint-keep-days, keep one witness checkpoint per hour until they are N "
                "days old, then one per day, for ever (besides the newest, the witnessed one the "
                "node holds and those kept as evidence of an alarm)",
    },
    {
        .name = "metrics",
        .type = KETEN_CONFIG_STRING,
        .min = 3,
        .max = 255,
        .validate = keten_config_valid_host_port,
        .help = "serve Prometheus metrics on http://ADDRESS:PORT/metrics, a loopback address "
                "unless metrics-remote is set (unset: no metrics server)",
    },
    {
        .name = "metrics-remote",
        .type = KETEN_CONFIG_BOOL,
        .default_value = "no",
        .help = "allow a metrics address that is not loopback (the endpoint has no "
                "authentication)",
    },
    {
        .name = "api-listen",
        .type = KETEN_CONFIG_STRING,
        .min = 3,
        .max = 255,
        .validate = keten_config_valid_host_port,
        .help = "serve the HTTP API (under /v1/) and the web page on http://HOST:PORT, a "
                "loopback address only (127.0.0.1, ::1, localhost; put a TLS reverse proxy in "
                "front of it) (unset: the API on HOME/api.sock only)",
    },
    {
        .name = "log-level",
        .type = KETEN_CONFIG_ENUM,
        .default_value = "info",
        .choices = log_levels,
        .help = "the least important log lines written: debug, info, notice, warn (warning) or "
                "error",
    },
    {
        .name = "proxy-address",
        .type = KETEN_CONFIG_STRING,
        .min = 2,
        .max = 45,
        .validate = keten_config_valid_ip_address,
        .help = "the IP address of the reverse proxy whose proxy-user-header names the person "
                "calling the HTTP API (unset: no proxy, and no request names a person)",
    },
    {
        .name = "proxy-user-header",
        .type = KETEN_CONFIG_STRING,
        .min = 1,
        .max = 64,
        .validate = keten_config_valid_header_name,
        .help = "the request header in which proxy-address names the person (X-Remote-User); "
                "set together with proxy-address",
    },
    {
        .name = "proxy-scopes",
        .type = KETEN_CONFIG_STRING,
        .default_value = "read",
        .min = 3,
        .max = 14,
        .validate = keten_config_valid_scopes,
        .help = "what a person the proxy names may do: read, send, ack, separated by commas",
    },
    {
        .name = "web-root",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .help = "the folder of the web page served on api-listen: index.html and static/ "
                "(unset: the page installed with keten, DATADIR/keten/web); if they are "
                "missing, a warning at start says so and the API is served all the same",
    },
    {
        .name = "access-log",
        .type = KETEN_CONFIG_PATH,
        .min = 1,
        .help = "the HTTP API's access log, one JSON line per request that reads or writes a "
                "message or is refused (unset: HOME/access.log)",
    },
};

const keten_config_table keten_config_broker_table = {
    .program = "keten-broker",
    .section = "broker",
    .settings = broker_settings,
    .n_settings = sizeof broker_settings / sizeof broker_settings[0],
};

const keten_config_table keten_config_node_table = {
    .program = "keten-node",
    .section = "node",
    .settings = node_settings,
    .n_settings = sizeof node_settings / sizeof node_settings[0],
};
