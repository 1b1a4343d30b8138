#include "rec.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

json_t *keten_rec_hex(const uint8_t *bytes, size_t len)
{
    if (len > (1u << 24)) {
        return NULL;
    }
    char *s = malloc(2 * len + 1);
    if (s == NULL) {
        return NULL;
    }
    keten_hex(bytes, len, s);
    json_t *j = json_stringn(s, 2 * len);
    free(s);
    return j;
}

json_t *keten_rec_b64(const uint8_t *bytes, size_t len)
{
    size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(n);
    if (s == NULL) {
        return NULL;
    }
    sodium_bin2base64(s, n, bytes, len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(s);
    free(s);
    return j;
}

json_t *keten_rec_time(uint64_t ms)
{
    char iso[40];
    keten_time_iso(ms, iso, sizeof iso);
    return json_string(iso);
}

bool keten_rec_get_hex(const json_t *obj, const char *key, uint8_t *out, size_t len)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL || strlen(s) != 2 * len) {
        return false;
    }
    return keten_unhex(s, out, len) == KETEN_OK;
}

keten_err keten_rec_get_hexbuf(
    const json_t *obj, const char *key, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL) {
        return KETEN_ERR_NOT_FOUND;
    }
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > max) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "stored field %s is not hex of at most %zu bytes", key, max);
    }
    uint8_t *b = malloc(n / 2 + 1);
    if (b == NULL) {
        return KETEN_ERR_NOMEM;
    }
    if (keten_unhex(s, b, n / 2) != KETEN_OK) {
        free(b);
        return keten_err_set(KETEN_ERR_MALFORMED, "stored field %s is not hex", key);
    }
    *out = b;
    *len = n / 2;
    return KETEN_OK;
}

keten_err keten_rec_get_b64(
    const json_t *obj, const char *key, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL) {
        return KETEN_ERR_NOT_FOUND;
    }
    size_t n = strlen(s);
    if (n / 4 * 3 > max + 3) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "stored field %s is over %zu bytes", key, max);
    }
    uint8_t *b = malloc(n / 4 * 3 + 3);
    if (b == NULL) {
        return KETEN_ERR_NOMEM;
    }
    size_t bin_len = 0;
    if (sodium_base642bin(
            b, n / 4 * 3 + 3, s, n, NULL, &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL)
        != 0) {
        free(b);
        return keten_err_set(KETEN_ERR_MALFORMED, "stored field %s is not base64", key);
    }
    *out = b;
    *len = bin_len;
    return KETEN_OK;
}

uint64_t keten_rec_u64(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return 0;
    }
    return (uint64_t)json_integer_value(v);
}

const char *keten_rec_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

keten_err keten_rec_set(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL) {
        return KETEN_ERR_NOMEM;
    }
    return json_object_set_new(obj, key, value) == 0 ? KETEN_OK : KETEN_ERR_NOMEM;
}
