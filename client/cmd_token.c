/* keten-node token: the HTTP API's application tokens (create, list,
 * revoke), through the daemon's Unix socket: only the node's operator may
 * manage tokens. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "apiclient.h"
#include "auth.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

#define DAY_MS (24ull * 3600 * 1000)
#define EXPIRES_DAYS_MAX 3650u

static const char token_usage[]
    = "Usage: keten-node token create --home DIR --name NAME --scope SCOPES [--expires DAYS]\n"
      "       keten-node token list --home DIR [--json]\n"
      "       keten-node token revoke --home DIR ID\n"
      "\n"
      "Manage the tokens with which programs call the node's HTTP API\n"
      "(Authorization: Bearer TOKEN). Only the node's operator can: these commands\n"
      "talk to the running daemon through HOME/api.sock.\n"
      "\n"
      "  create   make a token named NAME (1 to 64 of a-z, 0-9, '.', '_', '-'; not\n"
      "           the name of another active token) allowed SCOPES: read, send\n"
      "           and ack, separated by commas. Prints the token once: it is not\n"
      "           stored and cannot be shown again.\n"
      "  list     the tokens: id, name, scopes, created, expires, state (active,\n"
      "           expired, revoked); never the tokens themselves\n"
      "  revoke   refuse the token with this ID from now on; the web sessions\n"
      "           it opened end\n"
      "\n"
      "Options:\n"
      "  --home DIR        the node's home (its daemon must be running)\n"
      "  --name NAME       the token's name, as the access log shows it (token:NAME)\n"
      "  --scope SCOPES    read, send, ack, separated by commas\n"
      "  --expires DAYS    the token expires after DAYS days (1 to 3650; default:\n"
      "                    never)\n"
      "  --json            list as JSON\n"
      "  --help            show this help\n";

static int token_create(
    const char *home, const char *name, const char *scope_text, const char *expires_days)
{
    unsigned scopes = 0;
    keten_err e = keten_auth_scopes_parse(scope_text, &scopes);
    if (e != KETEN_OK) {
        return keten_cli_usage("token", "--scope: %s", keten_err_detail());
    }
    json_t *body = json_pack("{s:s, s:o}", "name", name, "scopes", keten_auth_scopes_json(scopes));
    if (body != NULL && expires_days != NULL) {
        uint64_t days = 0;
        if (!keten_cli_parse_uint(expires_days, 1, EXPIRES_DAYS_MAX, &days)) {
            json_decref(body);
            return keten_cli_usage(
                "token", "--expires: a number of days from 1 to %u", EXPIRES_DAYS_MAX);
        }
        char iso[40];
        keten_time_iso(keten_now_ms() + days * DAY_MS, iso, sizeof iso);
        if (json_object_set_new(body, "expires_at", json_string(iso)) != 0) {
            json_decref(body);
            body = NULL;
        }
    }
    if (body == NULL) {
        return keten_cli_error(KETEN_ERR_NOMEM);
    }
    json_t *reply = NULL;
    long status = 0;
    int rc = KETEN_EXIT_OK;
    e = keten_apiclient_request(home, "POST", "/v1/tokens", body, &status, &reply, &rc);
    json_decref(body);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    const char *token = json_string_value(json_object_get(reply, "token"));
    const char *id = json_string_value(json_object_get(reply, "id"));
    if (rc == KETEN_EXIT_OK && (status != 201 || token == NULL || id == NULL)) {
        fprintf(stderr, "%s: the node's answer to POST /v1/tokens (HTTP %ld) holds no token\n",
            keten_cli_prog(), status);
        rc = KETEN_EXIT_FAILURE;
    } else if (rc == KETEN_EXIT_OK) {
        printf("%s\n", token);
        fprintf(stderr,
            "token %s (id %s) created; it is shown only now: store it where the program "
            "that uses it reads it\n",
            name, id);
    }
    keten_auth_json_wipe_token(reply);
    json_decref(reply);
    return rc;
}

static const char *str_or(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : dflt;
}

static int token_list(const char *home, bool as_json)
{
    json_t *reply = NULL;
    long status = 0;
    int rc = KETEN_EXIT_OK;
    keten_err e = keten_apiclient_request(home, "GET", "/v1/tokens", NULL, &status, &reply, &rc);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    const json_t *list = json_object_get(reply, "tokens");
    if (rc != KETEN_EXIT_OK) {
        /* the problem is printed */
    } else if (!json_is_array(list)) {
        fprintf(
            stderr, "%s: the node's answer to GET /v1/tokens holds no list\n", keten_cli_prog());
        rc = KETEN_EXIT_FAILURE;
    } else if (as_json) {
        if (keten_cli_json_print(json_incref(reply)) != KETEN_OK) {
            rc = keten_cli_error(KETEN_ERR_IO);
        }
    } else {
        printf("%-16s  %-20s  %-13s  %-24s  %-24s  %s\n", "ID", "NAME", "SCOPES", "CREATED",
            "EXPIRES", "STATE");
        size_t i;
        json_t *t;
        json_array_foreach(list, i, t)
        {
            char scopes[32] = "";
            size_t j;
            json_t *s;
            json_array_foreach(json_object_get(t, "scopes"), j, s)
            {
                const char *v = json_string_value(s);
                size_t len = strlen(scopes);
                snprintf(scopes + len, sizeof scopes - len, "%s%s", len > 0 ? "," : "",
                    v != NULL ? v : "?");
            }
            printf("%-16s  %-20s  %-13s  %-24s  %-24s  %s\n", str_or(t, "id", "?"),
                str_or(t, "name", "?"), scopes, str_or(t, "created_at", "?"),
                str_or(t, "expires_at", "never"), str_or(t, "state", "?"));
        }
    }
    json_decref(reply);
    return rc;
}

static int token_revoke(const char *home, const char *id)
{
    if (strlen(id) != KETEN_AUTH_TOKEN_ID_CHARS
        || strspn(id, "0123456789abcdef") != KETEN_AUTH_TOKEN_ID_CHARS) {
        return keten_cli_usage("token", "ID is 16 lowercase hex characters (see token list)");
    }
    char path[64];
    snprintf(path, sizeof path, "/v1/tokens/%s", id);
    json_t *reply = NULL;
    long status = 0;
    int rc = KETEN_EXIT_OK;
    keten_err e = keten_apiclient_request(home, "DELETE", path, NULL, &status, &reply, &rc);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    if (rc == KETEN_EXIT_OK) {
        printf("revoked %s\n", id);
    }
    json_decref(reply);
    return rc;
}

int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "name", required_argument, NULL, 'n' },
        { "scope", required_argument, NULL, 's' },
        { "expires", required_argument, NULL, 'e' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *name = NULL, *scope = NULL, *expires = NULL;
    bool as_json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 's':
            scope = optarg;
            break;
        case 'e':
            expires = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            fputs(token_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("token", c, argc, argv);
        }
    }
    if (argc - optind < 1) {
        return keten_cli_usage("token", "give a subcommand: create, list or revoke");
    }
    const char *sub = argv[optind];
    int rest = argc - optind - 1;
    if (home == NULL) {
        return keten_cli_usage("token", "--home DIR is required");
    }
    if (strcmp(sub, "create") == 0) {
        if (rest != 0 || as_json) {
            return keten_cli_usage("token", "create takes --name, --scope and --expires only");
        }
        if (name == NULL || scope == NULL) {
            return keten_cli_usage("token", "create needs --name NAME and --scope SCOPES");
        }
        size_t n = strlen(name);
        if (n == 0 || n > KETEN_AUTH_TOKEN_NAME_MAX
            || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != n) {
            return keten_cli_usage(
                "token", "--name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-'");
        }
        return token_create(home, name, scope, expires);
    }
    if (name != NULL || scope != NULL || expires != NULL) {
        return keten_cli_usage("token", "--name, --scope and --expires are for create");
    }
    if (strcmp(sub, "list") == 0) {
        if (rest != 0) {
            return keten_cli_usage("token", "list takes no arguments");
        }
        return token_list(home, as_json);
    }
    if (strcmp(sub, "revoke") == 0) {
        if (rest != 1 || as_json) {
            return keten_cli_usage("token", "revoke takes exactly one ID");
        }
        return token_revoke(home, argv[optind + 1]);
    }
    return keten_cli_usage("token", "unknown subcommand '%s': use create, list or revoke", sub);
}
