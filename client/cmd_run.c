/* keten-node run: the node daemon (daemon.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "cmd.h"
#include "daemon.h"
#include "log.h"
#include "notify.h"

static const char run_usage[]
    = "Usage: keten-node run --home DIR --anchor network.pub --directory DIRECTORY\n"
      "                      --broker ENDPOINT [--on-message CMD] [--passphrase-file F]\n"
      "                      [--witness-timeout-ms MS] [--verbose]\n"
      "\n"
      "Run this node: connect to the broker (CurveZMQ, the broker's key from the\n"
      "directory), send what the local commands hand it, receive, verify, store and\n"
      "receipt messages, and witness the broker's audit log. Commands such as\n"
      "`keten-node send --home DIR` talk to it over ipc://DIR/api.sock (mode 0600).\n"
      "Logs go to standard error (logfmt, never content). SIGTERM or SIGINT stop it;\n"
      "SIGHUP reads the directory file again and installs it if it is newer. Under\n"
      "systemd (Type=notify) it reports readiness, reloads and stopping, and feeds\n"
      "the watchdog.\n"
      "\n"
      "Options:\n"
      "  --home DIR                 the node's home (identity.secret, store/)\n"
      "  --anchor FILE              the network's trust anchor (network.pub)\n"
      "  --directory FILE           a signed directory; installed only if newer than\n"
      "                             the version the node already has\n"
      "  --broker ENDPOINT          the broker, e.g. tcp://broker.example:7750 or ipc://PATH\n"
      "  --on-message CMD           run CMD (with /bin/sh, a clean environment) for each\n"
      "                             new message, with its JSON on standard input\n"
      "  --passphrase-file F        the key file's passphrase (else KETEN_PASSPHRASE or\n"
      "                             the terminal; none for a --no-passphrase key)\n"
      "  --witness-timeout-ms MS    warn when the node's checkpoint is not witnessed by a\n"
      "                             quorum within MS (default 3600000)\n"
      "  --verbose                  debug log lines\n"
      "  --help                     show this help\n";

int cmd_run(int argc, char **argv)
{
    /* Every setting of keten_config_node_table is a long option with val 'S'. */
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'C' },
        { "home", required_argument, NULL, 'S' },
        { "anchor", required_argument, NULL, 'S' },
        { "directory", required_argument, NULL, 'S' },
        { "broker", required_argument, NULL, 'S' },
        { "on-message", required_argument, NULL, 'S' },
        { "passphrase-file", required_argument, NULL, 'S' },
        { "witness-timeout-ms", required_argument, NULL, 'S' },
        { "verbose", no_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int rc = KETEN_EXIT_OK;
    const char *config_path = NULL;
    keten_config *kc = keten_config_new(&keten_config_node_table);
    if (kc == NULL) {
        fprintf(stderr, "keten-node: out of memory\n");
        return KETEN_EXIT_FAILURE;
    }
    int c, idx = 0;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":hv", opts, &idx)) != -1) {
        switch (c) {
        case 'C':
            config_path = optarg;
            break;
        case 'S':
        case 'v': /* -v is --verbose */
            if (keten_config_set(kc, c == 'v' ? "verbose" : opts[idx].name,
                    optarg != NULL ? optarg : "yes", KETEN_CONFIG_SRC_CLI)
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
    if (config_path != NULL && keten_config_load(kc, config_path) != KETEN_OK) {
        if (keten_config_error_count(kc) == 0) {
            fprintf(stderr, "keten-node: %s\n", keten_err_detail());
        }
        for (size_t i = 0; keten_config_error(kc, i) != NULL; i++) {
            fprintf(stderr, "keten-node: %s\n", keten_config_error(kc, i));
        }
        rc = KETEN_EXIT_USAGE;
        goto out;
    }
    if (keten_config_check(kc) != KETEN_OK) {
        rc = keten_cli_usage("run", "%s", keten_err_detail());
        goto out;
    }
    keten_node_opts o = { 0 };
    o.home = keten_config_get_str(kc, "home");
    o.anchor = keten_config_get_str(kc, "anchor");
    o.directory = keten_config_get_str(kc, "directory");
    o.broker = keten_config_get_str(kc, "broker");
    o.on_message = keten_config_get_str(kc, "on-message");
    o.passfile = keten_config_get_str(kc, "passphrase-file");
    o.witness_timeout_ms = keten_config_get_uint(kc, "witness-timeout-ms");
    keten_log_init("keten-node",
        keten_config_get_bool(kc, "verbose") ? KETEN_LOG_DEBUG : KETEN_LOG_INFO);
    keten_err e = keten_daemon_run(&o); /* kc owns the strings in o: destroy it after */
    if (e != KETEN_OK) {
        keten_notify_status("not running: %s", keten_strerror(e));
    }
    rc = e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
out:
    keten_config_destroy(&kc);
    return rc;
}
