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
    snprintf(endpoint, sizeof endpoint, "ipc://%s/%s", home, KETEN_NODE_API_SOCK);
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
