#include "apiclient.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "keten.h"
#include "node.h"
#include "signal_json.h"
#include "util.h"

static keten_err not_running(const char *home)
{
    return keten_err_set(KETEN_ERR_NOT_FOUND,
        "the keten-node daemon is not running for %s; start it with: keten-node run --home %s "
        "--anchor network.pub --directory DIRECTORY --broker ENDPOINT",
        home, home);
}

static keten_err daemon_running(const char *home)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", home, KETEN_NODE_LOCK) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path too long: %s", home);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return not_running(home);
    }
    int rc = flock(fd, LOCK_SH | LOCK_NB);
    int err = errno;
    close(fd);
    if (rc == 0) {
        return not_running(home);
    }
    if (err != EWOULDBLOCK) {
        return keten_err_set(KETEN_ERR_IO, "cannot check %s: %s", path, strerror(err));
    }
    return KETEN_OK;
}

keten_err keten_apiclient_call(const char *home, const json_t *req, int timeout_ms, json_t **reply)
{
    *reply = NULL;
    keten_err e = daemon_running(home);
    if (e != KETEN_OK) {
        return e;
    }
    char endpoint[PATH_MAX + 16];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/%s", home, KETEN_NODE_APIZMQ_SOCK);
    char *body = json_dumps(req, JSON_COMPACT);
    if (body == NULL) {
        return KETEN_ERR_NOMEM;
    }
    void *ctx = zmq_ctx_new();
    void *sock = ctx != NULL ? zmq_socket(ctx, ZMQ_REQ) : NULL;
    int zero = 0;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (sock == NULL || zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_connect(sock, endpoint) != 0) {
        e = keten_err_set(
            KETEN_ERR_IO, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    if (zmq_send(sock, body, strlen(body), 0) < 0) {
        e = keten_err_set(
            KETEN_ERR_IO, "cannot send to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc <= 0) {
        e = keten_err_set(KETEN_ERR_IO,
            "the keten-node daemon for %s did not answer within %d s; is it stuck? (see its log)",
            home, timeout_ms / 1000);
        goto out;
    }
    if (zmq_msg_recv(&msg, sock, 0) < 0) {
        e = keten_err_set(
            KETEN_ERR_IO, "receiving from %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    json_error_t jerr;
    *reply = json_loadb(zmq_msg_data(&msg), zmq_msg_size(&msg), 0, &jerr);
    if (*reply == NULL || !json_is_object(*reply)) {
        json_decref(*reply);
        *reply = NULL;
        e = keten_err_set(KETEN_ERR_MALFORMED, "the daemon's answer is not JSON: %s", jerr.text);
    }
out:
    zmq_msg_close(&msg);
    if (sock != NULL) {
        zmq_close(sock);
    }
    if (ctx != NULL) {
        zmq_ctx_term(ctx);
    }
    sodium_memzero(body, strlen(body));
    free(body);
    return e;
}

int keten_apiclient_check(const json_t *reply)
{
    if (json_is_true(json_object_get(reply, "ok"))) {
        return KETEN_EXIT_OK;
    }
    const char *error = json_string_value(json_object_get(reply, "error"));
    json_t *code = json_object_get(reply, "exit");
    fprintf(stderr, "%s: %s\n", keten_cli_prog(), error != NULL ? error : "failed");
    int rc = json_is_integer(code) ? (int)json_integer_value(code) : KETEN_EXIT_FAILURE;
    return rc > 0 && rc < 128 ? rc : KETEN_EXIT_FAILURE;
}

keten_err keten_apiclient_read_signal(const char *arg, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (strcmp(arg, "-") != 0) {
        uint8_t *buf = NULL;
        keten_err e = keten_file_read(arg, KETEN_SIGNAL_JSON_MAX, &buf, len);
        if (e != KETEN_OK) {
            return e;
        }
        char *t = realloc(buf, *len + 1);
        if (t == NULL) {
            free(buf);
            return KETEN_ERR_NOMEM;
        }
        t[*len] = '\0';
        *text = t;
        return KETEN_OK;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return KETEN_ERR_NOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > KETEN_SIGNAL_JSON_MAX) {
                free(buf);
                return keten_err_set(KETEN_ERR_TOO_LARGE,
                    "the signal on standard input is over %u bytes", KETEN_SIGNAL_JSON_MAX);
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return KETEN_ERR_NOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(STDIN_FILENO, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            free(buf);
            return keten_err_set(KETEN_ERR_IO, "reading standard input: %s", strerror(errno));
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    if (n > KETEN_SIGNAL_JSON_MAX) {
        free(buf);
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the signal on standard input is over %u bytes",
            KETEN_SIGNAL_JSON_MAX);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return KETEN_OK;
}

/* The local half of a dry run: the signal's own fields. */
static json_t *dry_run_local(const char *text, size_t len)
{
    keten_signal_json_problems pr = { 0 };
    keten_err e = keten_signal_json_validate(text, len, NULL, &pr);
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < pr.n; i++) {
        const keten_signal_json_problem *p = &pr.items[i];
        if (json_array_append_new(list,
                json_pack("{s:s, s:s, s:s, s:s}", "path", p->path, "problem", p->problem, "allowed",
                    p->allowed, "error", keten_err_str(p->err)))
            != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *r = NULL;
    if (list != NULL && e != KETEN_ERR_NOMEM) {
        r = json_pack("{s:b, s:b, s:o, s:I}", "ok", 1, "valid", pr.n == 0 && pr.more == 0,
            "problems", list, "more", (json_int_t)pr.more);
    } else {
        json_decref(list);
    }
    keten_signal_json_problems_clear(&pr);
    return r;
}

int keten_apiclient_dry_run(
    const char *home, const json_t *req, const char *text, size_t len, bool as_json)
{
    json_t *reply = NULL;
    const char *checked = "node";
    keten_err e = KETEN_ERR_NOT_FOUND;
    if (req == NULL) { /* text that is not UTF-8: the parser says where */
        checked = "signal only";
        reply = dry_run_local(text, len);
        e = reply == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    } else {
        e = keten_apiclient_call(home, req, KETEN_APICLIENT_TIMEOUT_MS, &reply);
    }
    if (e == KETEN_ERR_NOT_FOUND) {
        fprintf(stderr,
            "%s: no node runs for %s: checked the signal's fields only, not its type and "
            "purpose against the directory, its recipients or the sharing policy\n",
            keten_cli_prog(), home);
        checked = "signal only";
        reply = dry_run_local(text, len);
        e = reply == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    }
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(reply);
    if (rc != KETEN_EXIT_OK) {
        json_decref(reply);
        return rc;
    }
    bool valid = json_is_true(json_object_get(reply, "valid"));
    json_t *problems = json_object_get(reply, "problems");
    json_int_t more = json_integer_value(json_object_get(reply, "more"));
    if (as_json) {
        json_t *out = json_pack("{s:b, s:s, s:O, s:I}", "valid", valid, "checked", checked,
            "problems", problems, "more", more);
        char *dump = out != NULL ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(out);
        if (dump == NULL) {
            json_decref(reply);
            return keten_cli_error(KETEN_ERR_NOMEM);
        }
        printf("%s\n", dump);
        free(dump);
    } else if (valid) {
        printf("valid\n");
    } else {
        size_t i;
        json_t *p;
        json_array_foreach(problems, i, p)
        {
            const char *path = json_string_value(json_object_get(p, "path"));
            const char *problem = json_string_value(json_object_get(p, "problem"));
            const char *allowed = json_string_value(json_object_get(p, "allowed"));
            printf("%s: %s", path != NULL && path[0] != '\0' ? path : "signal JSON",
                problem != NULL ? problem : "");
            if (allowed != NULL && allowed[0] != '\0') {
                printf(" (allowed: %s)", allowed);
            }
            printf("\n");
        }
        if (more > 0) {
            printf("... and %lld more problems\n", (long long)more);
        }
    }
    json_decref(reply);
    return valid ? KETEN_EXIT_OK : KETEN_EXIT_FAILURE;
}

void keten_apiclient_print_sent(const json_t *reply, bool as_json)
{
    const char *msg_id = json_string_value(json_object_get(reply, "msg_id"));
    if (!as_json) {
        printf("%s\n", msg_id != NULL ? msg_id : "");
        return;
    }
    json_t *out = json_pack("{s:s?, s:O?, s:O?}", "msg_id", msg_id, "state",
        json_object_get(reply, "state"), "leaf_index", json_object_get(reply, "leaf_index"));
    char *dump = out != NULL ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(out);
    printf("%s\n", dump != NULL ? dump : "{}");
    free(dump);
}
