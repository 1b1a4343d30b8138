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

keten_err keten_rec_set(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL) {
        return KETEN_ERR_NOMEM;
    }
    return json_object_set_new(obj, key, value) == 0 ? KETEN_OK : KETEN_ERR_NOMEM;
}
