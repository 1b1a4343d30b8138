/*
 * test_signal.c - the Signal payload: JSON of docs/protocol.md <-> protobuf.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "fixture.h"
#include "pb.h"
#include "signal_json.h"
#include "util.h"

/* The example signal of docs/protocol.md, with real base64 in place of the "..." placeholder (the
 * first bytes of a JPEG file). */
static const char design_example[]
    = "{\n"
      "  \"type\": \"woonfraude\",\n"
      "  \"purpose\": \"riec-convenant/art-5\",\n"
      "  \"summary\": \"Adres staat op naam van 9 personen; ramen afgeplakt\",\n"
      "  \"nature\": \"soft\",\n"
      "  \"grading\": {\"source\": \"B\", \"information\": \"2\"},\n"
      "  \"handling\": \"TLP:AMBER\",\n"
      "  \"observed_at\": \"2026-11-19T10:30:00Z\",\n"
      "  \"observed_by\": \"handhaver\",\n"
      "  \"subjects\": [{\"kind\": \"address\", \"value\": \"Hoofdstraat 1, 1111 AA Diemen\"},\n"
      "               {\"kind\": \"company\", \"value\": \"KvK 12345678\"}],\n"
      "  \"attachments\": [{\"name\": \"foto.jpg\", \"media_type\": \"image/jpeg\", "
      "\"data_base64\": \"/9j/4AAQSkZJRgABAQ==\"}]\n"
      "}\n";

static const uint8_t jpeg_head[]
    = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01 };

static Keten__Signal *parse_ok(const char *json)
{
    Keten__Signal *sig = NULL;
    keten_err e = keten_signal_json_parse(json, strlen(json), &sig);
    if (e != KETEN_OK) {
        fail_msg("parse failed: %s: %s\n%s", keten_err_str(e), keten_err_detail(), json);
    }
    assert_non_null(sig);
    return sig;
}

static uint8_t *pack_ok(const Keten__Signal *sig, size_t *len)
{
    uint8_t *buf = NULL;
    keten_err e = keten_signal_json_pack(sig, &buf, len);
    if (e != KETEN_OK) {
        fail_msg("pack failed: %s: %s", keten_err_str(e), keten_err_detail());
    }
    return buf;
}

/* Expect json (of len bytes) to be refused with err and a detail naming field. */
static void expect_refused_len(const char *json, size_t len, keten_err err, const char *field)
{
    Keten__Signal *sig = NULL;
    keten_err_clear();
    keten_err e = keten_signal_json_parse(json, len, &sig);
    if (e != err || strstr(keten_err_detail(), field) == NULL) {
        fail_msg("expected %s naming '%s', got %s: '%s' for input: %.200s", keten_err_str(err),
            field, keten_err_str(e), keten_err_detail(), json);
    }
    assert_null(sig);
}

static void expect_refused(const char *json, keten_err err, const char *field)
{
    expect_refused_len(json, strlen(json), err, field);
}

static uint64_t expected_ms(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = { 0 };
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (uint64_t)timegm(&tm) * 1000u;
}

static void test_design_example_parses(void **state)
{
    (void)state;
    Keten__Signal *sig = parse_ok(design_example);
    assert_string_equal(sig->type, "woonfraude");
    assert_string_equal(sig->purpose, "riec-convenant/art-5");
    assert_string_equal(sig->summary, "Adres staat op naam van 9 personen; ramen afgeplakt");
    assert_string_equal(sig->nature, "soft");
    assert_non_null(sig->grading);
    assert_string_equal(sig->grading->source, "B");
    assert_string_equal(sig->grading->information, "2");
    assert_string_equal(sig->handling, "TLP:AMBER");
    assert_int_equal(sig->observed_at, expected_ms(2026, 11, 19, 10, 30, 0));
    assert_string_equal(sig->observed_by, "handhaver");
    assert_int_equal(sig->n_subjects, 2);
    assert_string_equal(sig->subjects[0]->kind, "address");
    assert_string_equal(sig->subjects[0]->value, "Hoofdstraat 1, 1111 AA Diemen");
    assert_string_equal(sig->subjects[1]->kind, "company");
    assert_string_equal(sig->subjects[1]->value, "KvK 12345678");
    assert_int_equal(sig->n_attachments, 1);
    assert_string_equal(sig->attachments[0]->name, "foto.jpg");
    assert_string_equal(sig->attachments[0]->media_type, "image/jpeg");
    assert_int_equal(sig->attachments[0]->data.len, sizeof jpeg_head);
    assert_memory_equal(sig->attachments[0]->data.data, jpeg_head, sizeof jpeg_head);
    keten_signal_json_free(&sig);
    assert_null(sig);
}

/* JSON -> protobuf -> JSON -> protobuf gives the same bytes, and the JSON is
 * written with the keys in the order of docs/signals.md's table of fields. */
static void test_design_example_round_trips(void **state)
{
    (void)state;
    Keten__Signal *sig = parse_ok(design_example);
    size_t len1 = 0;
    uint8_t *bytes1 = pack_ok(sig, &len1);
    char *json = NULL;
    assert_int_equal(keten_signal_json_to_text(sig, &json), KETEN_OK);

    static const char *const order[]
        = { "\"type\"", "\"purpose\"", "\"summary\"", "\"nature\"", "\"grading\"", "\"handling\"",
              "\"observed_at\"", "\"observed_by\"", "\"subjects\"", "\"attachments\"" };
    const char *prev = json;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *at = strstr(json, order[i]);
        assert_non_null(at);
        assert_true(at >= prev);
        prev = at;
    }
    assert_non_null(strstr(json, "\"observed_at\":\"2026-11-19T10:30:00"));
    assert_non_null(strstr(json, "\"data_base64\":\"/9j/4AAQSkZJRgABAQ==\""));

    Keten__Signal *again = parse_ok(json);
    size_t len2 = 0;
    uint8_t *bytes2 = pack_ok(again, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(bytes1, bytes2, len1);

    /* And through the protobuf form, as inside an envelope. */
    Keten__Signal *unpacked = NULL;
    assert_int_equal(keten_signal_json_unpack(bytes1, len1, &unpacked), KETEN_OK);
    char *json2 = NULL;
    assert_int_equal(keten_signal_json_to_text(unpacked, &json2), KETEN_OK);
    assert_string_equal(json, json2);

    /* The jansson form is the same document. */
    json_t *j = keten_signal_json_to_jansson(unpacked);
    assert_non_null(j);
    char *json3 = json_dumps(j, JSON_COMPACT);
    assert_non_null(json3);
    assert_string_equal(json, json3);
    json_decref(j);

    free(json3);
    free(json2);
    free(json);
    free(bytes2);
    free(bytes1);
    keten_signal_json_free(&unpacked);
    keten_signal_json_free(&again);
    keten_signal_json_free(&sig);
}

/* Only type and purpose are required; optional fields are left out of the
 * JSON written back. */
static void test_minimal_signal(void **state)
{
    (void)state;
    Keten__Signal *sig = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\"}");
    assert_null(sig->grading);
    assert_int_equal(sig->n_subjects, 0);
    assert_int_equal(sig->observed_at, 0);
    char *json = NULL;
    assert_int_equal(keten_signal_json_to_text(sig, &json), KETEN_OK);
    assert_string_equal(json, "{\"type\":\"drugs\",\"purpose\":\"handhaving\"}");
    free(json);
    keten_signal_json_free(&sig);
}

static void test_unknown_field(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"colour\":\"red\"}",
        KETEN_ERR_JSON, "colour");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"B\",\"information\":\"2\",\"extra\":\"x\"}}",
        KETEN_ERR_JSON, "grading.extra");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"subjects\":[{\"kind\":\"address\",\"value\":\"x\",\"note\":\"y\"}]}",
        KETEN_ERR_JSON, "subjects[0].note");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"a\",\"media_type\":\"text/plain\",\"data_base64\":\"\","
                   "\"size\":0}]}",
        KETEN_ERR_JSON, "attachments[0].size");
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_refused("{\"type\":7,\"purpose\":\"handhaving\"}", KETEN_ERR_JSON, "type");
    expect_refused("{\"type\":\"drugs\",\"purpose\":[\"handhaving\"]}", KETEN_ERR_JSON, "purpose");
    expect_refused(
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"summary\":5}", KETEN_ERR_JSON, "summary");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"grading\":\"B2\"}",
        KETEN_ERR_JSON, "grading");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"grading\":{\"source\":\"B\",\"information\":2}}",
        KETEN_ERR_JSON, "grading.information");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":{}}",
        KETEN_ERR_JSON, "subjects");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":[\"x\"]}",
        KETEN_ERR_JSON, "subjects[0]");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":\"x\"}",
        KETEN_ERR_JSON, "attachments");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":1700000000000}",
        KETEN_ERR_JSON, "observed_at");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_by\":null}",
        KETEN_ERR_JSON, "observed_by");
}

static void test_missing_required(void **state)
{
    (void)state;
    expect_refused("{\"purpose\":\"handhaving\"}", KETEN_ERR_INVALID, "type");
    expect_refused("{\"type\":\"drugs\"}", KETEN_ERR_INVALID, "purpose");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"grading\":{\"information\":\"2\"}}",
        KETEN_ERR_INVALID, "grading.source");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"subjects\":[{\"kind\":\"address\"}]}",
        KETEN_ERR_INVALID, "subjects[0].value");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"attachments\":[{\"name\":\"a.txt\",\"media_type\":\"text/plain\"}]}",
        KETEN_ERR_INVALID, "attachments[0].data_base64");
}

static void test_bad_labels(void **state)
{
    (void)state;
    expect_refused(
        "{\"type\":\"Woon Fraude\",\"purpose\":\"handhaving\"}", KETEN_ERR_INVALID, "type");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"\"}", KETEN_ERR_INVALID, "purpose");
}

static void test_grading_values(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"G\",\"information\":\"2\"}}",
        KETEN_ERR_INVALID, "grading.source");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"b\",\"information\":\"2\"}}",
        KETEN_ERR_INVALID, "grading.source");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"A\",\"information\":\"7\"}}",
        KETEN_ERR_INVALID, "grading.information");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"A\",\"information\":\"0\"}}",
        KETEN_ERR_INVALID, "grading.information");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"AB\",\"information\":\"1\"}}",
        KETEN_ERR_INVALID, "grading.source");
    /* Accept twins: the corners of the scale. */
    Keten__Signal *sig = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                                  "\"nature\":\"soft\",\"grading\":{\"source\":\"A\","
                                  "\"information\":\"1\"}}");
    keten_signal_json_free(&sig);
    sig = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"F\",\"information\":\"6\"}}");
    keten_signal_json_free(&sig);
}

static void test_soft_needs_grading(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\"}",
        KETEN_ERR_INVALID, "grading");
    /* Hard information needs none. */
    Keten__Signal *sig
        = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"hard\"}");
    keten_signal_json_free(&sig);
}

static void test_bad_nature_and_handling(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"medium\"}",
        KETEN_ERR_INVALID, "nature");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"handling\":\"TLP:PURPLE\"}",
        KETEN_ERR_INVALID, "handling");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"handling\":\"tlp:amber\"}",
        KETEN_ERR_INVALID, "handling");
    static const char *const ok[]
        = { "TLP:CLEAR", "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char json[128];
        snprintf(json, sizeof json,
            "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"handling\":\"%s\"}", ok[i]);
        Keten__Signal *sig = parse_ok(json);
        assert_string_equal(sig->handling, ok[i]);
        keten_signal_json_free(&sig);
    }
}

static void test_bad_observed_at(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":\"yesterday\"}",
        KETEN_ERR_INVALID, "observed_at");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"observed_at\":\"2026-11-19T10:30:00+02:00\"}",
        KETEN_ERR_INVALID, "observed_at");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"observed_at\":\"2026-13-19T10:30:00Z\"}",
        KETEN_ERR_INVALID, "observed_at");
    Keten__Signal *sig = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                                  "\"observed_at\":\"2026-11-19T10:30:00.250Z\"}");
    assert_int_equal(sig->observed_at, expected_ms(2026, 11, 19, 10, 30, 0) + 250);
    keten_signal_json_free(&sig);
}

static void test_bad_base64(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"a.bin\",\"media_type\":\"application/octet-stream\","
                   "\"data_base64\":\"@@@@\"}]}",
        KETEN_ERR_INVALID, "attachments[0].data_base64");
    /* URL-safe alphabet is not the standard one. */
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"a.bin\",\"media_type\":\"application/octet-stream\","
                   "\"data_base64\":\"_-8=\"}]}",
        KETEN_ERR_INVALID, "attachments[0].data_base64");
    /* Missing padding. */
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"a.bin\",\"media_type\":\"application/octet-stream\","
                   "\"data_base64\":\"/+8\"}]}",
        KETEN_ERR_INVALID, "attachments[0].data_base64");
    Keten__Signal *sig = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                                  "\"attachments\":[{\"name\":\"a.bin\",\"media_type\":"
                                  "\"application/octet-stream\",\"data_base64\":\"/+8=\"}]}");
    assert_int_equal(sig->attachments[0]->data.len, 2);
    assert_int_equal(sig->attachments[0]->data.data[0], 0xff);
    assert_int_equal(sig->attachments[0]->data.data[1], 0xef);
    keten_signal_json_free(&sig);
}

static void test_bad_attachment_fields(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"../etc/passwd\",\"media_type\":\"text/plain\","
                   "\"data_base64\":\"\"}]}",
        KETEN_ERR_INVALID, "attachments[0].name");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"a.txt\",\"media_type\":\"textplain\",\"data_base64\":\"\"}]}",
        KETEN_ERR_INVALID, "attachments[0].media_type");
}

static void test_bad_subject_fields(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"subjects\":[{\"kind\":\"Address\",\"value\":\"x\"}]}",
        KETEN_ERR_INVALID, "subjects[0].kind");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"subjects\":[{\"kind\":\"address\",\"value\":\"a\\u0007b\"}]}",
        KETEN_ERR_INVALID, "subjects[0].value");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_by\":\"a\\nb\"}",
        KETEN_ERR_INVALID, "observed_by");
}

/* Characters that change what a screen shows: C1 controls (U+009B starts a
 * terminal's escape sequence) and the bidirectional controls that embed,
 * override or isolate text (a name "foto<U+202E>gpj.exe" shows as
 * "fotoexe.jpg"). Refused in JSON and in the protobuf a recipient unpacks;
 * the characters next to them (NBSP U+00A0, U+2029, RLM U+200F, U+2065,
 * accents, the euro sign, Arabic) are accepted. */
static void test_display_controls(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"summary\":\"rood \\u009b31m tekst\"}",
        KETEN_ERR_INVALID, "summary: contains a control character (byte 5)");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"summary\":\"\\u0080\"}",
        KETEN_ERR_INVALID, "summary: contains a control character (byte 0)");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":"
                   "[{\"kind\":\"address\",\"value\":\"Kerkstraat \\u202e12\\u202c\"}]}",
        KETEN_ERR_INVALID, "subjects[0].value: contains U+202E (byte 11)");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"observed_by\":\"a\\u2066b\"}",
        KETEN_ERR_INVALID, "observed_by: contains U+2066 (byte 1)");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"observed_by\":\"a\\u2069\"}",
        KETEN_ERR_INVALID, "observed_by: contains U+2069");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":"
                   "[{\"name\":\"foto\\u202agpj.exe\",\"media_type\":\"image/jpeg\","
                   "\"data_base64\":\"\"}]}",
        KETEN_ERR_INVALID, "attachments[0].name: contains U+202A");

    /* The neighbours are text. */
    Keten__Signal *sig = parse_ok("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                                  "\"summary\":\"Caf\xc3\xa9 \xe2\x82\xac 12\\u00a0\\u2029"
                                  "\\u200f\xd8\xb4\xd8\xa7\xd8\xb1\xd8\xb9\\u2065\\u202f\\u00ff\","
                                  "\"observed_by\":\"\\u2029\\u206a\\u2065\\u00a0\"}");
    assert_string_equal(sig->summary,
        "Caf\xc3\xa9 \xe2\x82\xac "
        "12\xc2\xa0\xe2\x80\xa9\xe2\x80\x8f\xd8\xb4\xd8\xa7\xd8\xb1\xd8\xb9"
        "\xe2\x81\xa5\xe2\x80\xaf\xc3\xbf");
    keten_signal_json_free(&sig);

    /* A recipient unpacks the protobuf a sender's program may have made
     * without these checks: refused there too (the node answers the
     * message refused, INVALID_SIGNAL). */
    const char *bad_text[] = { "a\xc2\x9b"
                               "31m",
        "\xc2\x85",
        "Kerkstraat \xe2\x80\xae"
        "12",
        "\xe2\x81\xa7x" };
    for (size_t i = 0; i < sizeof bad_text / sizeof bad_text[0]; i++) {
        Keten__Signal bad = KETEN__SIGNAL__INIT;
        bad.type = (char *)"drugs";
        bad.purpose = (char *)"handhaving";
        bad.summary = (char *)bad_text[i];
        size_t len = keten__signal__get_packed_size(&bad);
        uint8_t *bytes = malloc(len);
        assert_non_null(bytes);
        keten__signal__pack(&bad, bytes);
        Keten__Signal *out = NULL;
        keten_err_clear();
        assert_int_equal(keten_signal_json_unpack(bytes, len, &out), KETEN_ERR_INVALID);
        assert_non_null(strstr(keten_err_detail(), "summary"));
        assert_null(out);
        free(bytes);
    }
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"type\":\"woonfraude\"}",
        KETEN_ERR_JSON, "type");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
                   "\"grading\":{\"source\":\"B\",\"source\":\"A\",\"information\":\"2\"}}",
        KETEN_ERR_JSON, "source");
    expect_refused("{\"type\":\"drugs\",\"purpose\":\"handhaving\","
                   "\"summary\":\"a\",\"summary\":\"b\"}",
        KETEN_ERR_JSON, "duplicate");
}

static void test_not_an_object(void **state)
{
    (void)state;
    expect_refused("[{\"type\":\"drugs\",\"purpose\":\"handhaving\"}]", KETEN_ERR_JSON, "object");
    expect_refused("\"woonfraude\"", KETEN_ERR_JSON, "signal JSON");
    expect_refused("", KETEN_ERR_JSON, "signal JSON");
}

static void test_truncated_json(void **state)
{
    (void)state;
    size_t full = strlen(design_example);
    /* Every proper prefix that ends before the closing brace is refused. */
    size_t close = (size_t)(strrchr(design_example, '}') - design_example);
    for (size_t n = 0; n < close; n++) {
        expect_refused_len(design_example, n, KETEN_ERR_JSON, "signal JSON");
    }
    Keten__Signal *sig = NULL;
    assert_int_equal(keten_signal_json_parse(design_example, full, &sig), KETEN_OK);
    keten_signal_json_free(&sig);
}

static char *subjects_json(size_t n)
{
    size_t cap = 128 + n * 64;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t off = (size_t)snprintf(buf, cap,
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\","
        "\"subjects\":[");
    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(
            buf + off, cap - off, "%s{\"kind\":\"address\",\"value\":\"s%zu\"}", i ? "," : "", i);
    }
    snprintf(buf + off, cap - off, "]}");
    return buf;
}

static char *attachments_json(size_t n)
{
    size_t cap = 128 + n * 96;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t off = (size_t)snprintf(buf, cap,
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\","
        "\"attachments\":[");
    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(buf + off, cap - off,
            "%s{\"name\":\"f%zu.txt\",\"media_type\":\"text/plain\",\"data_base64\":\"aGk=\"}",
            i ? "," : "", i);
    }
    snprintf(buf + off, cap - off, "]}");
    return buf;
}

static void test_too_many_subjects(void **state)
{
    (void)state;
    char *json = subjects_json(65);
    expect_refused(json, KETEN_ERR_TOO_LARGE, "subjects");
    free(json);
    json = subjects_json(64);
    Keten__Signal *sig = parse_ok(json);
    assert_int_equal(sig->n_subjects, 64);
    keten_signal_json_free(&sig);
    free(json);

    json = attachments_json(17);
    expect_refused(json, KETEN_ERR_TOO_LARGE, "attachments");
    free(json);
    json = attachments_json(16);
    sig = parse_ok(json);
    assert_int_equal(sig->n_attachments, 16);
    keten_signal_json_free(&sig);
    free(json);
}

static void test_oversize(void **state)
{
    (void)state;
    /* A JSON text over the cap is refused before it is parsed. */
    size_t n = KETEN_SIGNAL_JSON_MAX + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[n] = '\0';
    static const char small[] = "{\"type\":\"drugs\",\"purpose\":\"handhaving\"}";
    memcpy(big, small, sizeof small - 1);
    expect_refused_len(big, n, KETEN_ERR_TOO_LARGE, "signal JSON");
    /* The same text one byte shorter (trailing spaces) is accepted. */
    Keten__Signal *sig = NULL;
    assert_int_equal(keten_signal_json_parse(big, n - 1, &sig), KETEN_OK);
    keten_signal_json_free(&sig);
    free(big);

    /* A summary over 4096 bytes. */
    char *json = malloc(4096 + 128);
    assert_non_null(json);
    int off = snprintf(json, 128, "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"summary\":\"");
    memset(json + off, 'x', 4097);
    strcpy(json + off + 4097, "\"}");
    expect_refused(json, KETEN_ERR_TOO_LARGE, "summary");
    strcpy(json + off + 4096, "\"}");
    sig = parse_ok(json);
    assert_int_equal(strlen(sig->summary), 4096);
    keten_signal_json_free(&sig);
    free(json);
}

/* The protobuf side: what comes out of a ciphertext is checked as strictly. */
static void test_unpack_rejects(void **state)
{
    (void)state;
    Keten__Signal *sig = parse_ok(design_example);
    size_t len = 0;
    uint8_t *bytes = pack_ok(sig, &len);
    Keten__Signal *out = NULL;

    /* Unknown field appended (field 15, varint 1). */
    uint8_t *more = malloc(len + 2);
    assert_non_null(more);
    memcpy(more, bytes, len);
    more[len] = (15 << 3) | 0;
    more[len + 1] = 1;
    assert_int_equal(keten_signal_json_unpack(more, len + 2, &out), KETEN_ERR_NOT_CANONICAL);
    assert_null(out);

    /* Duplicated field: type (field 1) written again at the end. */
    static const uint8_t dup[] = { (1 << 3) | 2, 5, 'd', 'r', 'u', 'g', 's' };
    uint8_t *twice = malloc(len + sizeof dup);
    assert_non_null(twice);
    memcpy(twice, bytes, len);
    memcpy(twice + len, dup, sizeof dup);
    assert_int_equal(
        keten_signal_json_unpack(twice, len + sizeof dup, &out), KETEN_ERR_NOT_CANONICAL);
    assert_null(out);

    /* Truncated bytes. */
    assert_int_not_equal(keten_signal_json_unpack(bytes, len - 3, &out), KETEN_OK);
    assert_null(out);

    /* Well-formed protobuf carrying a value the JSON side would refuse. */
    Keten__Grading g = KETEN__GRADING__INIT;
    g.source = (char *)"Z";
    g.information = (char *)"2";
    Keten__Signal bad = KETEN__SIGNAL__INIT;
    bad.type = (char *)"drugs";
    bad.purpose = (char *)"handhaving";
    bad.grading = &g;
    size_t bad_len = keten__signal__get_packed_size(&bad);
    uint8_t *bad_bytes = malloc(bad_len);
    assert_non_null(bad_bytes);
    keten__signal__pack(&bad, bad_bytes);
    keten_err_clear();
    assert_int_equal(keten_signal_json_unpack(bad_bytes, bad_len, &out), KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "grading.source"));
    assert_null(out);
    /* keten_signal_json_pack refuses it too. */
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    assert_int_equal(keten_signal_json_pack(&bad, &packed, &packed_len), KETEN_ERR_INVALID);
    assert_null(packed);

    /* Invalid UTF-8 cannot be written as JSON. */
    Keten__Signal bin = KETEN__SIGNAL__INIT;
    bin.type = (char *)"drugs";
    bin.purpose = (char *)"handhaving";
    bin.summary = (char *)"\xc3\x28";
    char *json = NULL;
    assert_int_not_equal(keten_signal_json_check(&bin, NULL), KETEN_OK);
    assert_int_equal(keten_signal_json_to_text(&bin, &json), KETEN_ERR_JSON);
    assert_null(json);

    free(bad_bytes);
    free(twice);
    free(more);
    free(bytes);
    keten_signal_json_free(&sig);
}

/* keten_signal_json_check against a real directory: registered values pass,
 * others are KETEN_ERR_UNREGISTERED naming the field. */
static void test_check_against_directory(void **state)
{
    (void)state;
    static const char *const specs[] = { "gemeente-diemen:municipality", "broker:broker", NULL };
    fixture *fx = fixture_new(1, 1, specs);
    Keten__Signal *sig = parse_ok(design_example);
    assert_int_equal(keten_signal_json_check(sig, fx->directory), KETEN_OK);
    keten_signal_json_free(&sig);

    sig = parse_ok("{\"type\":\"woonfraude\",\"purpose\":\"onbekend-doel\"}");
    keten_err_clear();
    assert_int_equal(keten_signal_json_check(sig, fx->directory), KETEN_ERR_UNREGISTERED);
    assert_non_null(strstr(keten_err_detail(), "purpose"));
    keten_signal_json_free(&sig);

    sig = parse_ok("{\"type\":\"wapenhandel\",\"purpose\":\"handhaving\"}");
    keten_err_clear();
    assert_int_equal(keten_signal_json_check(sig, fx->directory), KETEN_ERR_UNREGISTERED);
    assert_non_null(strstr(keten_err_detail(), "type"));
    keten_signal_json_free(&sig);
    fixture_destroy(&fx);
}

/* ---- every problem at once (keten_signal_json_validate) ---------------- */

/* The problems of json, in order, must have exactly these paths. */
static void expect_paths(
    const char *json, const char *const *paths, size_t n_paths, keten_signal_json_problems *pr)
{
    keten_err e = keten_signal_json_validate(json, strlen(json), NULL, pr);
    if (pr->n != n_paths) {
        for (size_t i = 0; i < pr->n; i++) {
            char line[1024];
            keten_signal_json_problem_format(&pr->items[i], line, sizeof line);
            print_message("problem %zu: %s\n", i, line);
        }
        fail_msg("expected %zu problems, got %zu for %s", n_paths, pr->n, json);
    }
    for (size_t i = 0; i < n_paths; i++) {
        assert_string_equal(pr->items[i].path, paths[i]);
    }
    assert_int_not_equal(e, KETEN_OK);
    assert_int_equal(e, pr->items[0].err);
}

/* The first signal of the everyday-use report: four attempts, one problem
 * each; now one run lists them all, each with its allowed values. */
static void test_problems_all_at_once(void **state)
{
    (void)state;
    static const char json[]
        = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\",\"nature\":\"soft\","
          "\"grading\":\"B2\",\"observed_at\":\"19-11-2026 10:30\","
          "\"subjects\":[{\"kind\":\"address\",\"address\":\"Hoofdstraat 1\"}],"
          "\"handling\":\"AMBER\"}";
    static const char *const paths[]
        = { "grading", "observed_at", "subjects[0].address", "subjects[0].value", "handling" };
    keten_signal_json_problems pr = { 0 };
    expect_paths(json, paths, sizeof paths / sizeof paths[0], &pr);
    assert_int_equal(pr.items[0].err, KETEN_ERR_JSON);
    assert_non_null(strstr(pr.items[0].allowed, "\"source\": A-F"));
    assert_non_null(strstr(pr.items[1].allowed, "2026-11-19T10:30:00Z"));
    assert_string_equal(pr.items[2].problem, "unknown field; remove it");
    assert_string_equal(pr.items[2].allowed, "kind, value");
    assert_int_equal(pr.items[3].err, KETEN_ERR_INVALID);
    assert_non_null(strstr(pr.items[4].allowed, "TLP:AMBER+STRICT"));
    assert_int_equal(pr.more, 0);
    keten_signal_json_problems_clear(&pr);

    /* soft without grading, an unknown top-level field (its allowed list
     * names every field), a bad grading inside a valid object */
    static const char json2[]
        = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\",\"nature\":\"soft\","
          "\"colour\":\"red\"}";
    static const char *const paths2[] = { "colour", "grading" };
    expect_paths(json2, paths2, 2, &pr);
    assert_string_equal(pr.items[0].allowed,
        "type, purpose, summary, nature, grading, handling, observed_at, observed_by, "
        "subjects, attachments");
    assert_non_null(strstr(pr.items[1].problem, "required when nature is \"soft\""));
    /* each problem's code: an unknown field is malformed, no grading missing */
    assert_string_equal(pr.items[0].code, KETEN_PROBLEM_MALFORMED);
    assert_string_equal(pr.items[1].code, KETEN_PROBLEM_MISSING);
    keten_signal_json_problems_clear(&pr);

    static const char json3[] = "{\"type\":\"Woonfraude\",\"purpose\":\"\",\"grading\":"
                                "{\"source\":\"G\",\"information\":\"7\"},\"attachments\":"
                                "[{\"name\":\"../x\",\"media_type\":\"jpeg\",\"data_base64\":"
                                "\"%%%\"},17]}";
    static const char *const paths3[]
        = { "attachments[0].data_base64", "attachments[1]", "type", "purpose", "grading.source",
              "grading.information", "attachments[0].name", "attachments[0].media_type" };
    expect_paths(json3, paths3, sizeof paths3 / sizeof paths3[0], &pr);
    assert_string_equal(pr.items[4].allowed, "A, B, C, D, E, F");
    assert_string_equal(pr.items[5].allowed, "1, 2, 3, 4, 5, 6");
    /* a type that is no name is invalid, an empty purpose missing, a wrong
     * grading value invalid (not missing: it is there) */
    assert_string_equal(pr.items[2].code, KETEN_PROBLEM_INVALID);
    assert_string_equal(pr.items[3].code, KETEN_PROBLEM_MISSING);
    assert_string_equal(pr.items[4].code, KETEN_PROBLEM_INVALID);
    keten_signal_json_problems_clear(&pr);
}

/* Collecting changes nothing about what is accepted: for every input, the
 * verdict of keten_signal_json_validate equals keten_signal_json_parse's,
 * with the same error and the same detail (the first problem). */
static void test_problems_agree_with_first_error(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        design_example,
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\"}",
        "{\"type\":\"drugs\"}",
        "{\"purpose\":\"x\"}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\"}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"hard\",\"x\":1}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"grading\":{\"source\":\"A\"}}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"grading\":{\"source\":\"A\","
        "\"information\":\"1\",\"x\":\"y\"}}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":\"2026-02-30T00:00:00Z\"}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":1}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":{}}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":[{\"kind\":\"A\","
        "\"value\":\"x\"}]}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":[{\"kind\":\"address\","
        "\"value\":\"a\\nb\"}]}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"summary\":\"a\\nb\\tc\"}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_by\":\"a\\nb\"}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":[{\"name\":\"a\","
        "\"media_type\":\"a/b\",\"data_base64\":\"\"}]}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"type\":\"drugs\"}",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\"",
        "[1,2]",
        "",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"handling\":\"\",\"nature\":\"\"}",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const char *json = inputs[i];
        Keten__Signal *sig = NULL;
        keten_err_clear();
        keten_err e1 = keten_signal_json_parse(json, strlen(json), &sig);
        char detail1[2048];
        snprintf(detail1, sizeof detail1, "%s", keten_err_detail());
        keten_signal_json_free(&sig);
        keten_signal_json_problems pr = { 0 };
        keten_err_clear();
        keten_err e2 = keten_signal_json_validate(json, strlen(json), NULL, &pr);
        if (e1 != e2 || (e1 == KETEN_OK) != (pr.n == 0)
            || (e1 != KETEN_OK && strcmp(detail1, keten_err_detail()) != 0)) {
            fail_msg("input %zu: from_json %s '%s', validate %s '%s' (%zu problems): %s", i,
                keten_err_str(e1), detail1, keten_err_str(e2), keten_err_detail(), pr.n, json);
        }
        if (e1 != KETEN_OK) {
            char first[2048];
            keten_signal_json_problem_format(&pr.items[0], first, sizeof first);
            assert_string_equal(first, detail1);
        }
        keten_signal_json_problems_clear(&pr);
    }
}

/* More than KETEN_SIGNAL_PROBLEMS_MAX problems: the list stops, the rest
 * is counted. */
static void test_problems_capped(void **state)
{
    (void)state;
    char json[4096];
    size_t off
        = (size_t)snprintf(json, sizeof json, "{\"type\":\"drugs\",\"purpose\":\"handhaving\"");
    for (int i = 0; i < KETEN_SIGNAL_PROBLEMS_MAX + 6; i++) {
        off += (size_t)snprintf(json + off, sizeof json - off, ",\"x%d\":%d", i, i);
    }
    snprintf(json + off, sizeof json - off, "}");
    keten_signal_json_problems pr = { 0 };
    assert_int_equal(keten_signal_json_validate(json, strlen(json), NULL, &pr), KETEN_ERR_JSON);
    assert_int_equal(pr.n, KETEN_SIGNAL_PROBLEMS_MAX);
    assert_int_equal(pr.more, 6);
    keten_signal_json_problems_clear(&pr);
    assert_null(pr.items);
    assert_int_equal(pr.n, 0);
}

/* Against a directory: an unregistered type and purpose are two problems,
 * whose allowed line lists the registered values. */
static void test_problems_against_directory(void **state)
{
    (void)state;
    static const char *const specs[] = { "gemeente-diemen:municipality", "broker:broker", NULL };
    fixture *fx = fixture_new(1, 1, specs);
    keten_signal_json_problems pr = { 0 };
    assert_int_equal(
        keten_signal_json_validate(design_example, strlen(design_example), fx->directory, &pr),
        KETEN_OK);
    assert_int_equal(pr.n, 0);
    static const char json[] = "{\"type\":\"wapenhandel\",\"purpose\":\"onbekend-doel\"}";
    assert_int_equal(
        keten_signal_json_validate(json, strlen(json), fx->directory, &pr), KETEN_ERR_UNREGISTERED);
    assert_int_equal(pr.n, 2);
    assert_string_equal(pr.items[0].path, "type");
    assert_non_null(strstr(pr.items[0].allowed, "woonfraude"));
    assert_string_equal(pr.items[1].path, "purpose");
    assert_non_null(strstr(pr.items[1].allowed, "riec-convenant/art-5"));
    assert_string_equal(pr.items[0].code, KETEN_PROBLEM_UNREGISTERED);
    assert_string_equal(pr.items[1].code, KETEN_PROBLEM_UNREGISTERED);
    keten_signal_json_problems_clear(&pr);

    /* keten_signal_json_check_all on a parsed signal: the same two */
    Keten__Signal *sig = parse_ok(json);
    assert_int_equal(keten_signal_json_check_all(sig, fx->directory, &pr), KETEN_ERR_UNREGISTERED);
    assert_int_equal(pr.n, 2);
    keten_signal_json_problems_clear(&pr);
    keten_signal_json_free(&sig);
    fixture_destroy(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example_parses),
        cmocka_unit_test(test_design_example_round_trips),
        cmocka_unit_test(test_minimal_signal),
        cmocka_unit_test(test_unknown_field),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_bad_labels),
        cmocka_unit_test(test_grading_values),
        cmocka_unit_test(test_soft_needs_grading),
        cmocka_unit_test(test_bad_nature_and_handling),
        cmocka_unit_test(test_bad_observed_at),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_bad_attachment_fields),
        cmocka_unit_test(test_bad_subject_fields),
        cmocka_unit_test(test_display_controls),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_truncated_json),
        cmocka_unit_test(test_too_many_subjects),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_unpack_rejects),
        cmocka_unit_test(test_check_against_directory),
        cmocka_unit_test(test_problems_all_at_once),
        cmocka_unit_test(test_problems_agree_with_first_error),
        cmocka_unit_test(test_problems_capped),
        cmocka_unit_test(test_problems_against_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
