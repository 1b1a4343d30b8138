/*
 * render.h - how keten-audit prints records and tables: plain text for
 * people, JSON lines, CSV (RFC 4180: every field that holds a comma, a
 * double quote, CR or LF is quoted, quotes doubled, lines end in CRLF) and
 * HTML (every text escaped).
 *
 * Everything printed comes from the log, which an auditor must not trust
 * before it is verified: text output replaces control characters, JSON
 * escapes them and replaces invalid UTF-8 with U+FFFD, HTML escapes & < > "
 * and ' as well.
 *
 * Output of a record (all formats carry the same fields; see docs/audit.md):
 *   seq, time (ISO 8601 UTC, broker's clock), time_ms, event, msg_id (hex),
 *   sender, recipients, node, kind, category, purpose, rule, reason,
 *   size_bucket, directory_version, evidence (what backs the event:
 *   sender-signature, recipient-signature, administrator-signatures or
 *   broker-claim), in_reply_to, created_at (sender's claim, submitted),
 *   received_at (recipient's claim, receipted).
 * Delivered, receipted and expired records take kind, category and purpose
 * from their message's submitted record.
 *
 * Thread safety: reentrant (each call writes only to its FILE).
 * Errors: KETEN_ERR_IO when writing fails, KETEN_ERR_INVALID for an unknown
 * format name.
 */
#ifndef KETEN_AUDIT_RENDER_H
#define KETEN_AUDIT_RENDER_H

#include <stdio.h>

#include "err.h"
#include "keten.h"
#include "records.h"

typedef enum render_format {
    RENDER_TEXT = 0,
    RENDER_JSONL,
    RENDER_CSV,
} render_format;

/* "text", "jsonl" or "csv". */
keten_err render_parse_format(const char *s, render_format *out) KETEN_MUST_CHECK;

/* The header line of a format (CSV: the column names; others: nothing). */
void render_header(FILE *f, render_format fmt);

/* One record in a format. */
void render_record(FILE *f, render_format fmt, const records_index *idx,
    const Keten__AuditRecord *rec, const records_msg *m);

/* Field helpers. */
void render_csv_field(FILE *f, const char *s);
void render_json_string(FILE *f, const char *s);
void render_html_text(FILE *f, const char *s);
/* Text for a terminal, as keten_text_clean() makes it: control characters,
 * bidirectional controls and bytes that are not UTF-8 become '?'. */
void render_plain(FILE *f, const char *s);

/* ISO 8601 UTC of ms ("2026-11-19T10:30:00.000Z"); "YYYY-MM" month. */
void render_time(uint64_t ms, char out[static 32]);
void render_month(uint64_t ms, char out[static 8]);

/* Flush f; KETEN_ERR_IO (detail names what) when anything failed to write. */
keten_err render_finish(FILE *f, const char *what) KETEN_MUST_CHECK;

#endif
