/*
 * keten-broker run - the broker daemon: the options (from the configuration
 * table, lib/config_tables.c) into a broker_config handed to server_run().
 */
#include <stdio.h>

#include "broker.h"
#include "cli.h"
#include "cmd.h"
#include "config.h"
#include "log.h"
#include "notify.h"
#include "server.h"

static const char run_about[]
    = "Run the broker: accept CurveZMQ connections of the nodes listed in the\n"
      "directory, check every submitted envelope and the sharing policy, store and\n"
      "forward messages, and append every exchange to the audit log in DIR/store.\n"
      "Logs go to standard error (logfmt). SIGHUP reloads the directory file;\n"
      "SIGTERM and SIGINT finish the current batch and stop. Under systemd\n"
      "(Type=notify) it reports readiness, reloads and stopping, and feeds the watchdog.\n"
      "Exit code 3: the anchor, a directory or the store does not verify (also a first\n"
      "start on a directory file that has expired); 4: it could not start and starting\n"
      "it again cannot help (wrong passphrase, missing or invalid keys, keys the\n"
      "directory does not list); the unit does not restart it then.\n"
      "Example: --listen tcp://0.0.0.0:7250\n";

int cmd_run(int argc, char **argv)
{
    keten_config *kc = NULL;
    int rc = keten_cli_run_options(&keten_config_broker_table, run_about, argc, argv, &kc);
    if (rc >= 0) {
        return rc;
    }
    rc = KETEN_EXIT_OK;
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
        .log_level = keten_cli_log_level(kc),
    };
    keten_log_init("keten-broker", cfg.log_level);
    keten_err e = server_run(&cfg); /* kc owns the strings in cfg: destroy it after */
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "broker not running", "error=\"%s\"", keten_err_str(e));
        keten_notify_status("not running: %s", keten_err_str(e));
        rc = keten_cli_start_error(e); /* only a start can fail: the loop stops cleanly */
    }
    keten_config_destroy(&kc);
    return rc;
}
