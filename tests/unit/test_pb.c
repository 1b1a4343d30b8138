/* pb: size caps, unknown fields and the canonical-bytes rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keten.h"
#include "pb.h"

static uint8_t *pack_header(size_t *len)
{
    static uint8_t id[KETEN_MSG_ID_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        16 };
    static char r1[] = "politie-mn";
    static char r2[] = "belastingdienst";
    char *recips[] = { r1, r2 };
    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)"testnet";
    h.msg_id.data = id;
    h.msg_id.len = sizeof id;
    h.sender = (char *)"gemeente-diemen";
    h.n_recipients = 2;
    h.recipients = recips;
    h.created_at = 1700000000000;
    h.expires_at = 1700003600000;
    h.kind = KETEN__KIND__KIND_SIGNAL;
    h.category = (char *)"woonfraude";
    uint8_t *out = NULL;
    assert_int_equal(keten_pb_pack(&h.base, &out, len), KETEN_OK);
    return out;
}

static uint8_t *append(const uint8_t *buf, size_t len, const uint8_t *extra, size_t n)
{
    uint8_t *b = malloc(len + n);
    assert_non_null(b);
    memcpy(b, buf, len);
    memcpy(b + len, extra, n);
    return b;
}

static void test_canonical_accepts_own_bytes(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_header(&len);
    Keten__Header *h = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, buf, len, 4096, "header", &h),
        KETEN_OK);
    assert_string_equal(h->sender, "gemeente-diemen");
    assert_int_equal(h->n_recipients, 2);
    keten_pb_free((ProtobufCMessage **)&h);
    assert_null(h);
    free(buf);
}

static void test_unknown_field_refused(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_header(&len);
    /* field 99, varint 1: tag (99 << 3) = 792 = 0x98 0x06 */
    const uint8_t extra[] = { 0x98, 0x06, 0x01 };
    uint8_t *b = append(buf, len, extra, sizeof extra);
    Keten__Header *h = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, b, len + sizeof extra, 4096,
                         "header", &h),
        KETEN_ERR_NOT_CANONICAL);
    assert_null(h);
    /* Also refused by the non-canonical parser: unknown fields never pass. */
    assert_int_equal(KETEN_PB_UNPACK(keten__header, b, len + sizeof extra, 4096, "header", &h),
        KETEN_ERR_NOT_CANONICAL);
    free(b);
    free(buf);
}

static void test_duplicated_field_refused(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_header(&len);
    /* sender (field 3, length-delimited) again: "evil" */
    const uint8_t extra[] = { 0x1a, 0x04, 'e', 'v', 'i', 'l' };
    uint8_t *b = append(buf, len, extra, sizeof extra);
    Keten__Header *h = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, b, len + sizeof extra, 4096,
                         "header", &h),
        KETEN_ERR_NOT_CANONICAL);
    /* The lenient parser would take the last value: exactly the ambiguity
     * the canonical check exists to stop. */
    assert_int_equal(KETEN_PB_UNPACK(keten__header, b, len + sizeof extra, 4096, "header", &h),
        KETEN_OK);
    assert_string_equal(h->sender, "evil");
    keten_pb_free((ProtobufCMessage **)&h);
    free(b);
    free(buf);
}

static void test_explicit_default_refused(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_header(&len);
    /* padded_len (field 14, varint) written out as 0 */
    const uint8_t extra[] = { 0x70, 0x00 };
    uint8_t *b = append(buf, len, extra, sizeof extra);
    Keten__Header *h = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, b, len + sizeof extra, 4096,
                         "header", &h),
        KETEN_ERR_NOT_CANONICAL);
    free(b);
    free(buf);
}

static void test_non_minimal_varint_refused(void **state)
{
    (void)state;
    /* kind = 1 encoded in two bytes (0x81 0x00) */
    const uint8_t b[] = { 0x38, 0x81, 0x00 };
    Keten__Header *h = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, b, sizeof b, 4096, "header", &h),
        KETEN_ERR_NOT_CANONICAL);
}

static void test_reordered_fields_refused(void **state)
{
    (void)state;
    /* category (8) before sender (3): parses, but is not the canonical order */
    const uint8_t b[] = { 0x42, 0x01, 'x', 0x1a, 0x01, 'y' };
    Keten__Header *h = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, b, sizeof b, 4096, "header", &h),
        KETEN_ERR_NOT_CANONICAL);
    const uint8_t ok[] = { 0x1a, 0x01, 'y', 0x42, 0x01, 'x' };
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, ok, sizeof ok, 4096, "header", &h),
        KETEN_OK);
    keten_pb_free((ProtobufCMessage **)&h);
}

static void test_truncated_and_oversize(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_header(&len);
    Keten__Header *h = NULL;
    for (size_t cut = 1; cut < len; cut++) {
        keten_err e = KETEN_PB_UNPACK_CANONICAL(keten__header, buf, cut, 4096, "header", &h);
        /* Most prefixes do not parse; a prefix that ends on a field boundary
         * parses as a smaller message, which is canonical but then has other
         * content: never the original. */
        if (e == KETEN_OK) {
            assert_true(h->n_recipients < 2 || h->category[0] == '\0');
            keten_pb_free((ProtobufCMessage **)&h);
        } else {
            assert_int_equal(e, KETEN_ERR_MALFORMED);
            assert_null(h);
        }
    }
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__header, buf, len, len - 1, "header", &h),
        KETEN_ERR_TOO_LARGE);
    assert_non_null(strstr(keten_err_detail(), "header"));
    free(buf);
}

static void test_nested_unknown_field_refused(void **state)
{
    (void)state;
    /* SignedDirectory { signatures { admin_pk: "a", field 9: 1 } } */
    const uint8_t b[] = { 0x12, 0x05, 0x0a, 0x01, 'a', 0x48, 0x01 };
    Keten__SignedDirectory *sd = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__signed_directory, b, sizeof b, 4096, "directory", &sd),
        KETEN_ERR_NOT_CANONICAL);
    assert_null(sd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_accepts_own_bytes),
        cmocka_unit_test(test_unknown_field_refused),
        cmocka_unit_test(test_duplicated_field_refused),
        cmocka_unit_test(test_explicit_default_refused),
        cmocka_unit_test(test_non_minimal_varint_refused),
        cmocka_unit_test(test_reordered_fields_refused),
        cmocka_unit_test(test_truncated_and_oversize),
        cmocka_unit_test(test_nested_unknown_field_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
