/* keten-node run: the node daemon (daemon.h); its options come from the
 * configuration table (lib/config_tables.c). */
#include <stdio.h>

#include "cli.h"
#include "cmd.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "notify.h"

static const char run_about[]
    = "Run this node: connect to the broker (CurveZMQ, the broker's key from the\n"
      "directory), send what the local commands hand it, receive, verify, store and\n"
      "receipt messages, and witness the broker's audit log. Commands such as\n"
      "`keten-node send --home DIR` talk to it over DIR/api.sock (HTTP, mode 0600);\n"
      "api-listen adds the same API on a loopback TCP address.\n"
      "Logs go to standard error (logfmt, never content). SIGTERM or SIGINT stop it;\n"
      "SIGHUP reads the directory file again and installs it if it is newer. Under\n"
      "systemd (Type=notify) it reports readiness, reloads and stopping, and feeds\n"
      "the watchdog. Exit code 4: it could not start and starting it again cannot\n"
      "help (wrong passphrase, missing or invalid keys, a bad setting); the units\n"
      "do not restart it then.\n"
      "Example: --broker tcp://broker.example:7250\n";

int cmd_run(int argc, char **argv)
{
    keten_config *kc = NULL;
    int rc = keten_cli_run_options(&keten_config_node_table, run_about, argc, argv, &kc);
    if (rc >= 0) {
        return rc;
    }
    keten_node_opts o = { 0 };
    o.home = keten_config_get_str(kc, "home");
    o.anchor = keten_config_get_str(kc, "anchor");
    o.directory = keten_config_get_str(kc, "directory");
    o.broker = keten_config_get_str(kc, "broker");
    o.on_message = keten_config_get_str(kc, "on-message");
    o.passfile = keten_config_get_str(kc, "passphrase-file");
    o.witness_timeout_ms = keten_config_get_uint(kc, "witness-timeout-ms");
    o.checkpoint_keep_ms = keten_config_get_uint(kc, "checkpoint-keep-days") * KETEN_MS_PER_DAY;
    o.checkpoint_hourly_ms = keten_config_get_uint(kc, "checkpoint-hourly-days") * KETEN_MS_PER_DAY;
    o.metrics = keten_config_get_str(kc, "metrics");
    o.metrics_remote = keten_config_get_bool(kc, "metrics-remote");
    o.api_listen = keten_config_get_str(kc, "api-listen");
    o.web_root = keten_config_get_str(kc, "web-root");
    o.access_log = keten_config_get_str(kc, "access-log");
    o.config = kc;
    keten_log_init("keten-node", keten_cli_log_level(kc));
    bool running = false;
    keten_err e = keten_daemon_run(&o, &running); /* kc owns the strings in o: destroy it after */
    if (e != KETEN_OK) {
        keten_notify_status("not running: %s", keten_err_str(e));
    }
    rc = e == KETEN_OK ? KETEN_EXIT_OK : running ? keten_cli_error(e) : keten_cli_start_error(e);
    keten_config_destroy(&kc);
    return rc;
}
