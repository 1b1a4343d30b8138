#include "hook.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* The hooks running: which message each child was started for, so that
 * its end can be logged with the msg_id. */
typedef struct hook_child {
    pid_t pid; /* 0: free slot */
    char msg_id[KETEN_MSG_ID_HEX_BYTES];
} hook_child;

static hook_child children[KETEN_HOOK_MAX_RUNNING];
static unsigned running;

static keten_err write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return keten_err_set(KETEN_ERR_IO, "writing the hook's input: %s", strerror(errno));
        }
        buf += w;
        len -= (size_t)w;
    }
    return KETEN_OK;
}

keten_err keten_hook_run(
    keten_node *node, const char *msg_id_hex, const char *json, size_t json_len)
{
    if (node->opts.on_message == NULL) {
        return KETEN_OK;
    }
    if (running >= KETEN_HOOK_MAX_RUNNING) {
        return keten_err_set(KETEN_ERR_IO, "%u %s hooks still running; hook for %s skipped",
            running, KETEN_HOOK_KIND, msg_id_hex);
    }
    int fd = memfd_create("keten-message", MFD_CLOEXEC);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_IO, "memfd_create: %s", strerror(errno));
    }
    keten_err e = write_all(fd, json, json_len);
    if (e == KETEN_OK && write_all(fd, "\n", 1) != KETEN_OK) {
        e = KETEN_ERR_IO;
    }
    if (e == KETEN_OK && lseek(fd, 0, SEEK_SET) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "lseek: %s", strerror(errno));
    }
    if (e != KETEN_OK) {
        close(fd);
        return e;
    }
    char env_home[PATH_MAX + 16], env_id[64];
    snprintf(env_home, sizeof env_home, "KETEN_HOME=%s", node->opts.home);
    snprintf(env_id, sizeof env_id, "KETEN_MSG_ID=%s", msg_id_hex);
    char *const envp[] = { (char *)"PATH=/usr/local/bin:/usr/bin:/bin", env_home, env_id, NULL };
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return keten_err_set(KETEN_ERR_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(fd, STDIN_FILENO) < 0) {
            _exit(127);
        }
        execle("/bin/sh", "sh", "-c", node->opts.on_message, (char *)NULL, envp);
        _exit(127);
    }
    close(fd);
    for (size_t i = 0; i < KETEN_HOOK_MAX_RUNNING; i++) {
        if (children[i].pid == 0) {
            children[i].pid = pid;
            snprintf(children[i].msg_id, sizeof children[i].msg_id, "%s", msg_id_hex);
            break;
        }
    }
    running++;
    node->counters.hooks_run++;
    KETEN_LOG(KETEN_LOG_DEBUG, "hook started", "hook=%s msg_id=%s pid=%ld", KETEN_HOOK_KIND,
        msg_id_hex, (long)pid);
    return KETEN_OK;
}

void keten_hook_reap(keten_node *node)
{
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            return;
        }
        if (running > 0) {
            running--;
        }
        const char *msg_id = "unknown";
        hook_child *child = NULL;
        for (size_t i = 0; i < KETEN_HOOK_MAX_RUNNING; i++) {
            if (children[i].pid == pid) {
                child = &children[i];
                msg_id = child->msg_id;
                break;
            }
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
            node->counters.hooks_failed++;
            KETEN_LOG(KETEN_LOG_WARNING, "hook failed", "hook=%s msg_id=%s pid=%ld status=%d",
                KETEN_HOOK_KIND, msg_id, (long)pid, WEXITSTATUS(status));
        } else if (WIFSIGNALED(status)) {
            node->counters.hooks_failed++;
            KETEN_LOG(KETEN_LOG_WARNING, "hook failed",
                "hook=%s msg_id=%s pid=%ld status=-1 signal=%d", KETEN_HOOK_KIND, msg_id, (long)pid,
                WTERMSIG(status));
        } else if (!WIFEXITED(status)) {
            node->counters.hooks_failed++;
            KETEN_LOG(KETEN_LOG_WARNING, "hook failed", "hook=%s msg_id=%s pid=%ld status=-1",
                KETEN_HOOK_KIND, msg_id, (long)pid);
        } else {
            KETEN_LOG(KETEN_LOG_DEBUG, "hook done", "hook=%s msg_id=%s pid=%ld", KETEN_HOOK_KIND,
                msg_id, (long)pid);
        }
        if (child != NULL) {
            child->pid = 0;
        }
    }
}

unsigned keten_hook_running(void)
{
    return running;
}
