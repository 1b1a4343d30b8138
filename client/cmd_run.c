/* keten-node run: the node daemon (daemon.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "daemon.h"
#include "log.h"

static const char run_usage[]
    = "Usage: keten-node run --home DIR --anchor network.pub --directory DIRECTORY\n"
      "                      --broker ENDPOINT [--on-message CMD] [--passphrase-file F]\n"
      "                      [--inclusion-timeout-ms MS] [--witness-timeout-ms MS] [--verbose]\n"
      "\n"
      "Run this node: connect to the broker (CurveZMQ, the broker's key from the\n"
      "directory), send what the local commands hand it, receive, verify, store and\n"
      "receipt messages, and witness the broker's audit log. Commands such as\n"
      "`keten-node send --home DIR` talk to it over ipc://DIR/api.sock (mode 0600).\n"
      "Logs go to standard error (logfmt, never content). SIGTERM or SIGINT stop it.\n"
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
      "  --inclusion-timeout-ms MS  alarm when a message is not proven in the log within\n"
      "                             MS while connected (default 60000)\n"
      "  --witness-timeout-ms MS    warn when the node's checkpoint is not witnessed by a\n"
      "                             quorum within MS (default 3600000)\n"
      "  --verbose                  debug log lines\n"
      "  --help                     show this help\n";

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "anchor", required_argument, NULL, 'a' },
        { "directory", required_argument, NULL, 'd' },
        { "broker", required_argument, NULL, 'b' },
        { "on-message", required_argument, NULL, 'm' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "inclusion-timeout-ms", required_argument, NULL, 'i' },
        { "witness-timeout-ms", required_argument, NULL, 'w' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    keten_node_opts o = { 0 };
    o.inclusion_timeout_ms = KETEN_NODE_INCLUSION_TIMEOUT_MS;
    o.witness_timeout_ms = KETEN_NODE_WITNESS_TIMEOUT_MS;
    int level = KETEN_LOG_INFO;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hv", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            o.home = optarg;
            break;
        case 'a':
            o.anchor = optarg;
            break;
        case 'd':
            o.directory = optarg;
            break;
        case 'b':
            o.broker = optarg;
            break;
        case 'm':
            o.on_message = optarg;
            break;
        case 'p':
            o.passfile = optarg;
            break;
        case 'i':
            if (!keten_cli_parse_uint(
                    optarg, 100, 7ull * 24 * 3600 * 1000, &o.inclusion_timeout_ms)) {
                return keten_cli_usage("run", "--inclusion-timeout-ms must be 100 to 604800000");
            }
            break;
        case 'w':
            if (!keten_cli_parse_uint(
                    optarg, 100, 7ull * 24 * 3600 * 1000, &o.witness_timeout_ms)) {
                return keten_cli_usage("run", "--witness-timeout-ms must be 100 to 604800000");
            }
            break;
        case 'v':
            level = KETEN_LOG_DEBUG;
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
    if (o.home == NULL || o.anchor == NULL || o.directory == NULL || o.broker == NULL) {
        return keten_cli_usage("run", "--home, --anchor, --directory and --broker are required");
    }
    if (o.on_message != NULL && o.on_message[0] == '\0') {
        return keten_cli_usage("run", "--on-message needs a command");
    }
    keten_log_init("keten-node", level);
    keten_err e = keten_daemon_run(&o);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
