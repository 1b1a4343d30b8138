/*
 * bench_envelope: ops/s of the envelope operations on a 1 KiB signal, side by
 * side in one run:
 *   - seal to 3 recipients,
 *   - open (as one recipient),
 *   - broker verify-only (keten_envelope_verify: size cap, canonical parse,
 *     signature, field checks, hashes),
 *   - bare crypto_sign_verify_detached over the same signed bytes,
 * and the ratio verify-only / bare verify. Each figure is the median of 7
 * repeats (min and max shown). Prints figures only; never fails on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "envelope.h"
#include "fixture.h"
#include "pb.h"
#include "signal_json.h"
#include "util.h"

#define REPEATS 7

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    double median, min, max;
} stats;

static stats summarize(double *v)
{
    qsort(v, REPEATS, sizeof v[0], cmp_double);
    return (stats) { v[REPEATS / 2], v[0], v[REPEATS - 1] };
}

static void print_row(const char *name, stats s)
{
    printf("%-34s %12.0f ops/s   (min %.0f, max %.0f)\n", name, s.median, s.min, s.max);
}

int main(void)
{
    const char *specs[] = { "gemeente-diemen:municipality", "politie-mn:police",
        "belastingdienst:tax", "woonstad:housing", "broker:broker", NULL };
    fixture *fx = fixture_new(3, 2, specs);

    /* A 1 KiB signal: the summary fills it up. */
    char summary[1024 - 200];
    memset(summary, 'x', sizeof summary - 1);
    summary[sizeof summary - 1] = '\0';
    char json[2048];
    snprintf(json, sizeof json,
        "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\",\"summary\":\"%s\","
        "\"nature\":\"hard\"}",
        summary);
    Keten__Signal *signal = NULL;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    if (keten_signal_json_parse(json, strlen(json), &signal) != KETEN_OK
        || keten_signal_json_pack(signal, &payload, &payload_len) != KETEN_OK) {
        fprintf(stderr, "bench_envelope: cannot build the signal: %s\n", keten_err_detail());
        return 1;
    }
    const char *to[3] = { "politie-mn", "belastingdienst", "woonstad" };
    keten_identity *sender = fixture_node(fx, "gemeente-diemen");
    keten_identity *politie = fixture_node(fx, "politie-mn");
    const int n_seal = 2000, n_open = 2000, n_verify = 4000;

    double seal[REPEATS], open[REPEATS], verify[REPEATS], bare[REPEATS], ratio[REPEATS];
    uint8_t *env = NULL;
    size_t env_len = 0;
    for (int r = 0; r < REPEATS; r++) {
        uint64_t t0 = keten_now_ms();
        keten_envelope_seal_params p = { .kind = KETEN__KIND__KIND_SIGNAL,
            .category = "woonfraude",
            .purpose = "riec-convenant/art-5",
            .created_at = t0,
            .expires_at = t0 + 3600000u };
        double start = now_s();
        for (int i = 0; i < n_seal; i++) {
            uint8_t id[KETEN_MSG_ID_BYTES];
            free(env);
            env = NULL;
            if (keten_envelope_seal(sender, fx->directory, to, 3, &p, payload, payload_len, id,
                    &env, &env_len)
                != KETEN_OK) {
                fprintf(stderr, "bench_envelope: seal failed: %s\n", keten_err_detail());
                return 1;
            }
        }
        seal[r] = n_seal / (now_s() - start);

        start = now_s();
        for (int i = 0; i < n_open; i++) {
            keten_envelope_verified *v = NULL;
            Keten__Signal *s = NULL;
            if (keten_envelope_open(politie, fx->directory, env, env_len, keten_now_ms(), &v, &s)
                != KETEN_OK) {
                fprintf(stderr, "bench_envelope: open failed: %s\n", keten_err_detail());
                return 1;
            }
            keten_envelope_verified_destroy(&v);
            keten_signal_json_free(&s);
        }
        open[r] = n_open / (now_s() - start);

        start = now_s();
        for (int i = 0; i < n_verify; i++) {
            keten_envelope_verified *v = NULL;
            if (keten_envelope_verify(fx->directory, env, env_len, &v) != KETEN_OK) {
                fprintf(stderr, "bench_envelope: verify failed: %s\n", keten_err_detail());
                return 1;
            }
            keten_envelope_verified_destroy(&v);
        }
        verify[r] = n_verify / (now_s() - start);

        /* The bare signature check over exactly the bytes the envelope signs. */
        Keten__Envelope *e = NULL;
        if (KETEN_PB_UNPACK(keten__envelope, env, env_len, KETEN_ENVELOPE_MAX, "envelope", &e)
            != KETEN_OK) {
            return 1;
        }
        size_t label_len = strlen(KETEN_LABEL_ENVELOPE);
        size_t m_len = label_len + e->header.len + KETEN_HASH_BYTES;
        uint8_t *m = malloc(m_len);
        memcpy(m, KETEN_LABEL_ENVELOPE, label_len);
        memcpy(m + label_len, e->header.data, e->header.len);
        crypto_hash_sha256(m + label_len + e->header.len, e->ciphertext.data, e->ciphertext.len);
        const Keten__NodeCert *cert = keten_directory_find_id(fx->directory, "gemeente-diemen");
        start = now_s();
        for (int i = 0; i < n_verify; i++) {
            if (crypto_sign_verify_detached(e->signature.data, m, m_len, cert->sign_pk.data)
                != 0) {
                fprintf(stderr, "bench_envelope: bare verify failed\n");
                return 1;
            }
        }
        bare[r] = n_verify / (now_s() - start);
        ratio[r] = bare[r] / verify[r];
        free(m);
        keten_pb_free((ProtobufCMessage **)&e);
    }
    printf("envelope benchmark: 1 KiB signal, envelope %zu bytes, %d repeats\n", env_len,
        REPEATS);
    print_row("seal to 3 recipients", summarize(seal));
    print_row("open (one recipient)", summarize(open));
    print_row("broker verify-only", summarize(verify));
    print_row("bare crypto_sign_verify_detached", summarize(bare));
    stats rs = summarize(ratio);
    printf("%-34s %12.3f x     (min %.3f, max %.3f; 1.000 = no overhead, target <= 1.10)\n",
        "time verify-only / bare verify", rs.median, rs.min, rs.max);
    free(env);
    free(payload);
    keten_signal_json_free(&signal);
    fixture_destroy(&fx);
    return 0;
}
