#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pb.h"
#include "sigcheck.h"
#include "util.h"

#define LIST_SEP ";" /* recipients inside one CSV field */

keten_err render_parse_format(const char *s, render_format *out)
{
    if (strcmp(s, "text") == 0) {
        *out = RENDER_TEXT;
    } else if (strcmp(s, "jsonl") == 0) {
        *out = RENDER_JSONL;
    } else if (strcmp(s, "csv") == 0) {
        *out = RENDER_CSV;
    } else {
        return keten_err_set(KETEN_ERR_INVALID, "format '%s' is not one of text, jsonl, csv", s);
    }
    return KETEN_OK;
}

void render_time(uint64_t ms, char out[static 32])
{
    keten_time_iso(ms, out, 32);
}

void render_month(uint64_t ms, char out[static 8])
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        memcpy(out, "0000-00", 8);
        return;
    }
    snprintf(out, 8, "%04u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
        (unsigned)(tm.tm_mon + 1) % 100u);
}

keten_err render_finish(FILE *f, const char *what)
{
    if (fflush(f) != 0 || ferror(f)) {
        return keten_err_set(KETEN_ERR_IO, "writing %s failed: %s", what, strerror(errno));
    }
    return KETEN_OK;
}

/* Length of a valid UTF-8 sequence at s (strict), 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* also stops at the NUL */
            return 0;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    return len;
}

void render_json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    fputc('"', f);
    while (*p != '\0') {
        /* A run of characters printed as they are, in one write. */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
            p++;
        }
        if (p > run) {
            fwrite(run, 1, (size_t)(p - run), f);
        }
        unsigned char c = *p;
        if (c == '\0') {
            break;
        }
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else {
            size_t l = utf8_len(p);
            if (l == 0) {
                fputs("\\ufffd", f);
                p++;
            } else {
                fwrite(p, 1, l, f);
                p += l;
            }
        }
    }
    fputc('"', f);
}

void render_csv_field(FILE *f, const char *s)
{
    if (s == NULL) {
        s = "";
    }
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"') {
            fputc('"', f);
        }
        fputc(*p, f);
    }
    fputc('"', f);
}

void render_html_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    while (*p != '\0') {
        unsigned char c = *p;
        switch (c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                fputs("&#xfffd;", f);
            } else if (c >= 0x80) {
                size_t l = utf8_len(p);
                if (l == 0) {
                    fputs("&#xfffd;", f);
                } else {
                    fwrite(p, 1, l, f);
                    p += l - 1;
                }
            } else {
                fputc(c, f);
            }
        }
        p++;
    }
}

void render_plain(FILE *f, const char *s)
{
    char small[256];
    const char *in = s != NULL ? s : "";
    size_t size = strlen(in) + 1;
    char *out = size <= sizeof small ? small : malloc(size);
    if (out == NULL) {
        fputc('?', f);
        return;
    }
    keten_text_clean(in, out, size);
    fputs(out, f);
    if (out != small) {
        free(out);
    }
}

/* ---- records ---------------------------------------------------------- */

/* What the record adds beyond its own fields: from the header (submitted)
 * and from the receipt's batch head (receipted, refused-by-recipient: when
 * the recipient committed it), read without verification. */
typedef struct extra {
    bool has_created, has_received;
    uint64_t created_at, received_at;
    char in_reply_to[KETEN_MSG_ID_HEX_BYTES];
    const char *key_owner; /* auth-failed: the node whose certificate had the key */
} extra;

static void read_extra(const Keten__AuditRecord *rec, extra *x)
{
    memset(x, 0, sizeof *x);
    if (rec->event == KETEN__EVENT__EVENT_SUBMITTED && rec->header.len > 0) {
        Keten__Header *h = NULL;
        if (KETEN_PB_UNPACK(
                keten__header, rec->header.data, rec->header.len, KETEN_ENVELOPE_MAX, "header", &h)
            == KETEN_OK) {
            x->has_created = true;
            x->created_at = h->created_at;
            if (h->in_reply_to.len == KETEN_MSG_ID_BYTES) {
                keten_hex(h->in_reply_to.data, KETEN_MSG_ID_BYTES, x->in_reply_to);
            }
            keten_pb_free((ProtobufCMessage **)(void *)&h);
        }
    } else if (rec->event == KETEN__EVENT__EVENT_RECEIPTED
        || rec->event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT) {
        x->has_received = sigcheck_receipt_stored_at(rec, &x->received_at);
    }
}

static void msg_hex(const Keten__AuditRecord *rec, char out[static KETEN_MSG_ID_HEX_BYTES])
{
    out[0] = '\0';
    if (rec->msg_id.len == KETEN_MSG_ID_BYTES) {
        keten_hex(rec->msg_id.data, KETEN_MSG_ID_BYTES, out);
    }
}

/* Recipients of the record, else of its message (delivered: the node). */
static size_t n_rcpt(const Keten__AuditRecord *rec)
{
    return rec->n_recipients;
}

/* The fields that apply to a record only for some events (docs/audit.md,
 * section 5): the policy rule for a submitted record (the rule that allowed
 * it) and a rejected one refused by the sharing policy (0: the default
 * deny); the size bucket for a submitted record. Elsewhere the field is
 * empty, so that rule 0 always means the default deny. */
static bool has_rule(const Keten__AuditRecord *rec)
{
    return rec->event == KETEN__EVENT__EVENT_SUBMITTED
        || (rec->event == KETEN__EVENT__EVENT_REJECTED
            && rec->reason == KETEN__REASON__REASON_POLICY);
}

static bool has_size(const Keten__AuditRecord *rec)
{
    return rec->event == KETEN__EVENT__EVENT_SUBMITTED;
}

static void json_key(FILE *f, const char *k, bool *first)
{
    if (!*first) {
        fputc(',', f);
    }
    *first = false;
    fprintf(f, "\"%s\":", k);
}

static void json_str(FILE *f, const char *k, const char *v, bool *first)
{
    json_key(f, k, first);
    render_json_string(f, v);
}

static void json_u64(FILE *f, const char *k, uint64_t v, bool *first)
{
    json_key(f, k, first);
    fprintf(f, "%" PRIu64, v);
}

static void render_jsonl(
    FILE *f, const Keten__AuditRecord *rec, const records_msg *m, const extra *x)
{
    char t[32], id[KETEN_MSG_ID_HEX_BYTES];
    bool first = true;
    fputc('{', f);
    json_u64(f, "seq", rec->seq, &first);
    render_time(rec->time, t);
    json_str(f, "time", t, &first);
    json_u64(f, "time_ms", rec->time, &first);
    json_str(f, "event", records_event_name((int)rec->event), &first);
    msg_hex(rec, id);
    json_str(f, "msg_id", id, &first);
    json_str(f, "sender", rec->sender, &first);
    json_key(f, "recipients", &first);
    fputc('[', f);
    for (size_t i = 0; i < n_rcpt(rec); i++) {
        if (i > 0) {
            fputc(',', f);
        }
        render_json_string(f, rec->recipients[i]);
    }
    fputc(']', f);
    json_str(f, "node", rec->node, &first);
    if (x->key_owner != NULL) {
        json_str(f, "key_of_node", x->key_owner, &first);
    }
    json_str(f, "kind", records_kind_name(records_kind(rec, m)), &first);
    json_str(f, "category", records_category(rec, m), &first);
    json_str(f, "purpose", records_purpose(rec, m), &first);
    if (has_rule(rec)) {
        json_u64(f, "rule", rec->rule, &first);
    } else {
        json_key(f, "rule", &first);
        fputs("null", f);
    }
    json_str(f, "reason", records_reason_name((int)rec->reason), &first);
    if (has_size(rec)) {
        json_u64(f, "size_bucket", rec->size_bucket, &first);
    } else {
        json_key(f, "size_bucket", &first);
        fputs("null", f);
    }
    json_u64(f, "directory_version", rec->directory_version, &first);
    json_str(f, "evidence", records_evidence_name(records_event_evidence((int)rec->event)), &first);
    json_str(f, "in_reply_to", x->in_reply_to, &first);
    if (x->has_created) {
        render_time(x->created_at, t);
        json_str(f, "created_at", t, &first);
    }
    if (x->has_received) {
        render_time(x->received_at, t);
        json_str(f, "received_at", t, &first);
    }
    fputs("}\n", f);
}

static const char *const csv_columns[] = { "seq", "time", "time_ms", "event", "msg_id", "sender",
    "recipients", "node", "kind", "category", "purpose", "rule", "reason", "size_bucket",
    "directory_version", "evidence", "in_reply_to", "created_at", "received_at" };

void render_header(FILE *f, render_format fmt)
{
    if (fmt != RENDER_CSV) {
        return;
    }
    for (size_t i = 0; i < sizeof csv_columns / sizeof csv_columns[0]; i++) {
        fputs(i > 0 ? "," : "", f);
        fputs(csv_columns[i], f);
    }
    fputs("\r\n", f);
}

static void csv_u64(FILE *f, uint64_t v)
{
    fprintf(f, "%" PRIu64 ",", v);
}

static void csv_str(FILE *f, const char *s)
{
    render_csv_field(f, s);
    fputc(',', f);
}

static void render_csv(FILE *f, const Keten__AuditRecord *rec, const records_msg *m, const extra *x)
{
    char t[32], id[KETEN_MSG_ID_HEX_BYTES];
    csv_u64(f, rec->seq);
    render_time(rec->time, t);
    csv_str(f, t);
    csv_u64(f, rec->time);
    csv_str(f, records_event_name((int)rec->event));
    msg_hex(rec, id);
    csv_str(f, id);
    csv_str(f, rec->sender);
    /* recipients joined with ';' inside one field, quoted if any needs it */
    bool quote = false;
    for (size_t i = 0; i < n_rcpt(rec); i++) {
        quote = quote || strpbrk(rec->recipients[i], ",\"\r\n") != NULL;
    }
    if (quote) {
        fputc('"', f);
    }
    for (size_t i = 0; i < n_rcpt(rec); i++) {
        fputs(i > 0 ? LIST_SEP : "", f);
        for (const char *p = rec->recipients[i]; *p != '\0'; p++) {
            if (*p == '"') {
                fputc('"', f);
            }
            fputc(*p, f);
        }
    }
    fputs(quote ? "\"," : ",", f);
    csv_str(f, rec->node);
    csv_str(f, records_kind_name(records_kind(rec, m)));
    csv_str(f, records_category(rec, m));
    csv_str(f, records_purpose(rec, m));
    if (has_rule(rec)) {
        csv_u64(f, rec->rule);
    } else {
        fputc(',', f);
    }
    csv_str(f, records_reason_name((int)rec->reason));
    if (has_size(rec)) {
        csv_u64(f, rec->size_bucket);
    } else {
        fputc(',', f);
    }
    csv_u64(f, rec->directory_version);
    csv_str(f, records_evidence_name(records_event_evidence((int)rec->event)));
    csv_str(f, x->in_reply_to);
    if (x->has_created) {
        render_time(x->created_at, t);
        render_csv_field(f, t);
    }
    fputc(',', f);
    if (x->has_received) {
        render_time(x->received_at, t);
        render_csv_field(f, t);
    }
    fputs("\r\n", f);
}

static void render_text(
    FILE *f, const Keten__AuditRecord *rec, const records_msg *m, const extra *x)
{
    char t[32], id[KETEN_MSG_ID_HEX_BYTES];
    render_time(rec->time, t);
    fprintf(f, "#%-7" PRIu64 " %s  %-19s", rec->seq, t, records_event_name((int)rec->event));
    msg_hex(rec, id);
    if (id[0] != '\0') {
        fprintf(f, "  msg %s", id);
    }
    switch (rec->event) {
    case KETEN__EVENT__EVENT_SUBMITTED:
        fputs("  ", f);
        render_plain(f, rec->sender);
        fputs(" -> ", f);
        for (size_t i = 0; i < n_rcpt(rec); i++) {
            fputs(i > 0 ? "," : "", f);
            render_plain(f, rec->recipients[i]);
        }
        fprintf(f, "  %s ", records_kind_name((int)rec->kind));
        render_plain(f, rec->category);
        fputs(" purpose ", f);
        render_plain(f, rec->purpose);
        fprintf(f, "  rule %" PRIu32 "  %" PRIu64 " bytes", rec->rule, rec->size_bucket);
        if (x->in_reply_to[0] != '\0') {
            fprintf(f, "  in reply to %s", x->in_reply_to);
        }
        fputs("  [signed by the sender]", f);
        break;
    case KETEN__EVENT__EVENT_REJECTED:
        fputs("  from ", f);
        render_plain(f, rec->sender[0] != '\0' ? rec->sender : rec->node);
        fprintf(f, "  reason %s", records_reason_name((int)rec->reason));
        if (rec->reason == KETEN__REASON__REASON_POLICY) {
            fprintf(f, " (rule %" PRIu32 "%s)", rec->rule, rec->rule == 0 ? ": default deny" : "");
        }
        fputs("  [broker's claim]", f);
        break;
    case KETEN__EVENT__EVENT_DELIVERED:
    case KETEN__EVENT__EVENT_RECEIPTED:
    case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
        fputs("  ", f);
        render_plain(f, rec->sender);
        fputs(" -> ", f);
        render_plain(f, rec->node);
        if (m != NULL) {
            fputs("  ", f);
            render_plain(f, m->category);
            fputs(" purpose ", f);
            render_plain(f, m->purpose);
        }
        if (rec->event == KETEN__EVENT__EVENT_RECEIPTED) {
            if (x->has_received) {
                render_time(x->received_at, t);
                fprintf(f, "  stored by the recipient at %s", t);
            }
            fputs("  [signed by the recipient]", f);
        } else if (rec->event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT) {
            fprintf(f, "  refused by the recipient: reason %s",
                records_reason_name((int)rec->reason));
            if (x->has_received) {
                render_time(x->received_at, t);
                fprintf(f, " at %s", t);
            }
            fputs("  [signed by the recipient]", f);
        } else {
            fputs("  [broker's claim]", f);
        }
        break;
    case KETEN__EVENT__EVENT_EXPIRED:
        fputs("  ", f);
        render_plain(f, rec->sender);
        fputs(" -> never answered by ", f);
        for (size_t i = 0; i < n_rcpt(rec); i++) {
            fputs(i > 0 ? "," : "", f);
            render_plain(f, rec->recipients[i]);
        }
        fputs("  [broker's claim]", f);
        break;
    case KETEN__EVENT__EVENT_DIRECTORY_INSTALLED:
        fprintf(f, "  version %" PRIu64 "  [signed by the administrators]", rec->directory_version);
        break;
    case KETEN__EVENT__EVENT_AUTH_FAILED:
        fputs("  ", f);
        if (x->key_owner != NULL) {
            render_plain(f, x->key_owner);
            fputs(" (key ", f);
            render_plain(f, rec->node);
            fputs(", of one of its certificates)", f);
        } else {
            render_plain(f, rec->node);
        }
        if (rec->reason != KETEN__REASON__REASON_NONE) {
            /* A connection cut off: why, and the version that made it so. */
            fprintf(f, "  reason %s (directory version %" PRIu64 ")",
                records_reason_name((int)rec->reason), rec->directory_version);
        }
        fputs("  [broker's claim]", f);
        break;
    default:
        fputs("  ", f);
        render_plain(f, rec->node);
        fputs("  [broker's claim]", f);
        break;
    }
    fputc('\n', f);
}

void render_record(FILE *f, render_format fmt, const records_index *idx,
    const Keten__AuditRecord *rec, const records_msg *m)
{
    extra x;
    read_extra(rec, &x);
    x.key_owner = records_key_owner(idx, rec);
    switch (fmt) {
    case RENDER_JSONL:
        render_jsonl(f, rec, m, &x);
        break;
    case RENDER_CSV:
        render_csv(f, rec, m, &x);
        break;
    default:
        render_text(f, rec, m, &x);
        break;
    }
}
