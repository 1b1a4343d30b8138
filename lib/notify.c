#include "notify.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(KETEN_HAVE_LIBSYSTEMD)
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

#define NOTIFY_MSG_MAX (KETEN_NOTIFY_STATUS_MAX + 64)
#define USEC_PER_MS 1000u

/* Read once at the first call (one thread: see notify.h). */
static struct {
    bool init;
    bool enabled; /* $NOTIFY_SOCKET is set */
    bool watchdog; /* sd_watchdog_enabled() said yes */
    uint64_t half_ms; /* half the watchdog interval, at least 1 ms */
    bool dog_sent; /* a WATCHDOG=1 was sent, at dog_ms */
    uint64_t dog_ms;
    bool failure_logged;
} st;

#if !defined(KETEN_HAVE_LIBSYSTEMD)
/* Built without libsystemd: nothing is ever sent. */
static int sd_notify(int unset_environment, const char *state)
{
    (void)unset_environment;
    (void)state;
    return 0;
}

static int sd_watchdog_enabled(int unset_environment, uint64_t *usec)
{
    (void)unset_environment;
    *usec = 0;
    return 0;
}
#endif

static void notify_init(void)
{
    if (st.init) {
        return;
    }
    st.init = true;
    const char *sock = getenv("NOTIFY_SOCKET");
    st.enabled = sock != NULL && sock[0] != '\0';
    uint64_t usec = 0;
    if (st.enabled && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        st.watchdog = true;
        st.half_ms = usec / USEC_PER_MS / 2;
        if (st.half_ms == 0) {
            st.half_ms = 1;
        }
        KETEN_LOG(KETEN_LOG_DEBUG, "systemd watchdog on", "interval_ms=%llu",
            (unsigned long long)(usec / USEC_PER_MS));
    }
}

static void send_state(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0 && !st.failure_logged) {
        st.failure_logged = true;
        KETEN_LOG(KETEN_LOG_DEBUG, "cannot notify the service manager; going on without it",
            "error=\"%s\"", strerror(-rc));
    }
}

/* Append "STATUS=text" to msg (which has room for NOTIFY_MSG_MAX bytes),
 * newlines replaced, cut at KETEN_NOTIFY_STATUS_MAX. */
static void append_status(char *msg, const char *text)
{
    size_t n = strlen(msg);
    int w = snprintf(msg + n, NOTIFY_MSG_MAX - n, "STATUS=");
    if (w < 0 || (size_t)w >= NOTIFY_MSG_MAX - n) {
        return;
    }
    n += (size_t)w;
    for (size_t i = 0; text[i] != '\0' && i < KETEN_NOTIFY_STATUS_MAX && n + 1 < NOTIFY_MSG_MAX;
         i++) {
        char c = text[i];
        msg[n++] = (c == '\n' || c == '\r') ? ' ' : c;
    }
    msg[n] = '\0';
}

void keten_notify_ready(const char *status)
{
    notify_init();
    if (!st.enabled) {
        return;
    }
    char msg[NOTIFY_MSG_MAX] = "READY=1\n";
    if (status != NULL) {
        append_status(msg, status);
    }
    send_state(msg);
}

void keten_notify_reloading(void)
{
    notify_init();
    if (!st.enabled) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[NOTIFY_MSG_MAX];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
        (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull);
    send_state(msg);
}

void keten_notify_stopping(void)
{
    notify_init();
    if (!st.enabled) {
        return;
    }
    send_state("STOPPING=1");
}

void keten_notify_status(const char *fmt, ...)
{
    notify_init();
    if (!st.enabled) {
        return;
    }
    char text[KETEN_NOTIFY_STATUS_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char msg[NOTIFY_MSG_MAX] = "";
    append_status(msg, text);
    send_state(msg);
}

void keten_notify_watchdog_tick(uint64_t mono_ms)
{
    if (!st.init) {
        notify_init();
    }
    if (!st.watchdog) {
        return;
    }
    if (st.dog_sent && mono_ms - st.dog_ms < st.half_ms) {
        return;
    }
    st.dog_sent = true;
    st.dog_ms = mono_ms;
    send_state("WATCHDOG=1");
}
