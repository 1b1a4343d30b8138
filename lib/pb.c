#include "pb.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static bool has_unknown_fields(const ProtobufCMessage *msg)
{
    if (msg->n_unknown_fields != 0) {
        return true;
    }
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        const char *base = (const char *)msg;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(const void *)(base + f->quantifier_offset);
            if (which != f->id) {
                continue;
            }
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(const void *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr
                = *(ProtobufCMessage *const *const *)(const void *)(base + f->offset);
            for (size_t j = 0; j < n; j++) {
                if (arr[j] != NULL && has_unknown_fields(arr[j])) {
                    return true;
                }
            }
        } else {
            const ProtobufCMessage *sub
                = *(const ProtobufCMessage *const *)(const void *)(base + f->offset);
            if (sub != NULL && has_unknown_fields(sub)) {
                return true;
            }
        }
    }
    return false;
}

keten_err keten_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
    size_t max, const char *what, ProtobufCMessage **out)
{
    *out = NULL;
    if (len > max) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "%s is %zu bytes; at most %zu allowed", what,
            len, max);
    }
    if (buf == NULL && len != 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "%s is missing", what);
    }
    static const uint8_t empty[1] = { 0 };
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, buf ? buf : empty);
    if (msg == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "%s does not parse (%zu bytes)", what, len);
    }
    if (has_unknown_fields(msg)) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return keten_err_set(KETEN_ERR_NOT_CANONICAL, "%s carries unknown fields", what);
    }
    *out = msg;
    return KETEN_OK;
}

keten_err keten_pb_unpack_canonical(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
    size_t len, size_t max, const char *what, ProtobufCMessage **out)
{
    ProtobufCMessage *msg;
    keten_err e = keten_pb_unpack(desc, buf, len, max, what, &msg);
    if (e != KETEN_OK) {
        *out = NULL;
        return e;
    }
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n != len) {
        protobuf_c_message_free_unpacked(msg, NULL);
        *out = NULL;
        return keten_err_set(KETEN_ERR_NOT_CANONICAL,
            "%s is not in canonical form (%zu bytes re-serialize to %zu)", what, len, n);
    }
    uint8_t *again = malloc(n ? n : 1);
    if (again == NULL) {
        protobuf_c_message_free_unpacked(msg, NULL);
        *out = NULL;
        return keten_err_set(KETEN_ERR_NOMEM, "checking %s", what);
    }
    protobuf_c_message_pack(msg, again);
    bool same = n == 0 || memcmp(again, buf, n) == 0;
    free(again);
    if (!same) {
        protobuf_c_message_free_unpacked(msg, NULL);
        *out = NULL;
        return keten_err_set(KETEN_ERR_NOT_CANONICAL,
            "%s is not in canonical form (fields reordered or duplicated)", what);
    }
    *out = msg;
    return KETEN_OK;
}

keten_err keten_pb_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "serializing %s", msg->descriptor->short_name);
    }
    size_t w = protobuf_c_message_pack(msg, buf);
    if (w != n) {
        free(buf);
        return keten_err_set(KETEN_ERR_MALFORMED, "serializing %s wrote %zu of %zu bytes",
            msg->descriptor->short_name, w, n);
    }
    *out = buf;
    *out_len = n;
    return KETEN_OK;
}

void keten_pb_free(ProtobufCMessage **msg_p)
{
    if (msg_p != NULL && *msg_p != NULL) {
        protobuf_c_message_free_unpacked(*msg_p, NULL);
        *msg_p = NULL;
    }
}
