/*
 * fuzz_signal.c - the Signal payload at the edges: JSON (keten_signal_json_parse,
 * keten_signal_json_to_text) and its protobuf form (keten_signal_json_unpack, the
 * plaintext inside an envelope).
 *
 * Invariants:
 *   1. JSON accepted by keten_signal_json_parse passes keten_signal_json_check and
 *      packs; written back as JSON and read again it gives a signal that
 *      packs to the very same protobuf bytes; the JSON written is a fixed
 *      point (writing the re-read signal gives the same text); and the
 *      packed bytes unpack (canonically) to a signal that packs the same;
 *   2. protobuf bytes accepted by keten_signal_json_unpack are canonical (pack
 *      back to the input), can be written as JSON, and that JSON reads back
 *      to a signal that packs to the input bytes;
 *   3. keten_signal_json_validate (every problem at once, what the node's
 *      API answers a validate with) agrees with keten_signal_json_parse:
 *      the same error and the same detail, no problem listed exactly when
 *      accepted, the first problem's error is that error, at most
 *      KETEN_SIGNAL_PROBLEMS_MAX listed, each with the code its error
 *      stands for or "missing"; against the test network's directory it
 *      accepts exactly what parses and passes keten_signal_json_check with
 *      that directory, with the same error;
 *   4. a time keten_time_parse accepts (the parser of observed_at, of since
 *      and of keten-audit's --from/--to), given the input as text, is at
 *      most KETEN_TIME_MAX_MS, and in ISO form reads as the very digits its
 *      ISO 8601 text is written with (RFC 3339: no sign, space or missing
 *      digit in a field, no second 60); a plain number is 1 to 20 digits
 *      and nothing else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "signal_json.h"
#include "util.h"

static uint8_t *pack(const Keten__Signal *s, size_t *len)
{
    uint8_t *out = NULL;
    FUZZ_MUST(keten_signal_json_pack(s, &out, len));
    return out;
}

/* JSON of s, read back: its protobuf bytes; also returns the JSON text. */
static uint8_t *json_round_trip(const Keten__Signal *s, char **json_out, size_t *len)
{
    char *json = NULL;
    FUZZ_MUST(keten_signal_json_to_text(s, &json));
    Keten__Signal *back = NULL;
    FUZZ_MUST(keten_signal_json_parse(json, strlen(json), &back));
    uint8_t *b = pack(back, len);
    char *json2 = NULL;
    FUZZ_MUST(keten_signal_json_to_text(back, &json2));
    FUZZ_CHECK(strcmp(json, json2) == 0);
    free(json2);
    keten_signal_json_free(&back);
    *json_out = json;
    return b;
}

static void from_json(const uint8_t *data, size_t size)
{
    Keten__Signal *s = NULL;
    if (keten_signal_json_parse((const char *)data, size, &s) != KETEN_OK) {
        FUZZ_CHECK(s == NULL);
        return;
    }
    FUZZ_MUST(keten_signal_json_check(s, NULL));
    size_t a_len = 0;
    uint8_t *a = pack(s, &a_len);
    size_t b_len = 0;
    char *json = NULL;
    uint8_t *b = json_round_trip(s, &json, &b_len);
    FUZZ_CHECK(a_len == b_len && memcmp(a, b, a_len) == 0);
    Keten__Signal *u = NULL;
    FUZZ_MUST(keten_signal_json_unpack(a, a_len, &u));
    FUZZ_CHECK(fuzz_packs_to(&u->base, a, a_len));
    keten_signal_json_free(&u);
    free(json);
    free(b);
    free(a);
    keten_signal_json_free(&s);
}

static void from_protobuf(const uint8_t *data, size_t size)
{
    Keten__Signal *s = NULL;
    if (keten_signal_json_unpack(data, size, &s) != KETEN_OK) {
        FUZZ_CHECK(s == NULL);
        return;
    }
    FUZZ_CHECK(fuzz_packs_to(&s->base, data, size));
    size_t b_len = 0;
    char *json = NULL;
    uint8_t *b = json_round_trip(s, &json, &b_len);
    FUZZ_CHECK(b_len == size && memcmp(b, data, size) == 0);
    free(json);
    free(b);
    keten_signal_json_free(&s);
}

static void validate(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    keten_err_clear();
    Keten__Signal *s = NULL;
    keten_err e1 = keten_signal_json_parse(json, size, &s);
    char detail1[1024];
    snprintf(detail1, sizeof detail1, "%s", keten_err_detail());

    keten_signal_json_problems pr = { 0 };
    keten_err_clear();
    keten_err e2 = keten_signal_json_validate(json, size, NULL, &pr);
    FUZZ_CHECK(e2 == e1);
    FUZZ_CHECK(e1 == KETEN_OK || strcmp(detail1, keten_err_detail()) == 0);
    FUZZ_CHECK((e1 == KETEN_OK) == (pr.n == 0 && pr.more == 0));
    FUZZ_CHECK(pr.n <= KETEN_SIGNAL_PROBLEMS_MAX);
    FUZZ_CHECK(pr.more == 0 || pr.n == KETEN_SIGNAL_PROBLEMS_MAX);
    FUZZ_CHECK(pr.n == 0 || pr.items[0].err == e1);
    for (size_t i = 0; i < pr.n; i++) {
        const keten_signal_json_problem *p = &pr.items[i];
        FUZZ_CHECK(p->code != NULL && p->err != KETEN_OK);
        FUZZ_CHECK(strcmp(p->code, KETEN_PROBLEM_MISSING) == 0
            || strcmp(p->code, keten_signal_json_code(p->err)) == 0);
        FUZZ_CHECK(strcmp(p->code, KETEN_PROBLEM_ERROR) != 0 || p->err == KETEN_ERR_NOMEM);
    }
    keten_signal_json_problems_clear(&pr);

    if (e1 == KETEN_OK) {
        const keten_directory *dir = fuzz_net()->d2;
        keten_err ec = keten_signal_json_check(s, dir);
        keten_signal_json_problems pd = { 0 };
        keten_err ed = keten_signal_json_validate(json, size, dir, &pd);
        FUZZ_CHECK(ed == ec);
        FUZZ_CHECK((ed == KETEN_OK) == (pd.n == 0 && pd.more == 0));
        keten_signal_json_problems_clear(&pd);
    }
    keten_signal_json_free(&s);
}

#define TIME_TEXT_MAX 64

static void time_text(const uint8_t *data, size_t size)
{
    char text[TIME_TEXT_MAX + 1];
    size_t n = size < TIME_TEXT_MAX ? size : TIME_TEXT_MAX;
    memcpy(text, data, n);
    text[n] = '\0';
    uint64_t ms = 0;
    if (keten_time_parse(text, &ms) != KETEN_OK) {
        return;
    }
    FUZZ_CHECK(ms <= KETEN_TIME_MAX_MS);
    size_t len = strlen(text);
    if (len >= 1 && len <= 20 && strspn(text, "0123456789") == len) {
        return; /* ms since 1970 */
    }
    char iso[40];
    keten_time_iso(ms, iso, sizeof iso);
    FUZZ_CHECK(len >= 20);
    FUZZ_CHECK(memcmp(text, iso, 19) == 0); /* no leap second either */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    time_text(data, size);
    validate(data, size);
    from_json(data, size);
    from_protobuf(data, size);
    keten_err_clear();
    return 0;
}
