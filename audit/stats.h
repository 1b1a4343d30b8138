/*
 * stats.h - counting exchanges for accountability reports (keten-audit stats
 * and report): how many messages each partner sent to each other partner,
 * per category, purpose and month.
 *
 * Units: a *message* is one submitted record; an *exchange* is one message
 * to one recipient (a message to three partners is three exchanges). A group
 * is the combination of the chosen keys: pair (sender and recipient),
 * category, month (of the submit, UTC, "YYYY-MM"), purpose and rule (the
 * number of the sharing policy's rule that allowed the message, as its
 * submitted record holds it). Per group:
 * messages (distinct messages with at least one exchange in the group),
 * exchanges, receipted (exchanges the recipient signed a receipt for:
 * stored), refused (exchanges the recipient signed a refusal for; the
 * totals count them per reason) and expired (exchanges that expired before
 * the recipient answered). Receipts, refusals and expiries count in the
 * group (and month) of the message's submit. Rejected attempts have
 * no recipient or category (nothing the sender typed is logged): they are
 * counted per reason in the totals.
 *
 * The time filter (from inclusive, to exclusive, broker's clock) applies to
 * the submit; a message counted keeps its later receipts, refusals and
 * expiries.
 *
 * Ownership: stats_collect() fills tables freed with stats_table_free();
 * strings in rows belong to the table. Thread safety: none needed (one
 * thread per table).
 * Errors: those of records_scan(), KETEN_ERR_NOMEM, KETEN_ERR_INVALID
 * (stats_parse_by).
 */
#ifndef KETEN_AUDIT_STATS_H
#define KETEN_AUDIT_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auditdb.h"
#include "err.h"
#include "records.h"

typedef enum stats_key {
    STATS_PAIR = 0,
    STATS_CATEGORY,
    STATS_MONTH,
    STATS_PURPOSE,
    STATS_RULE,
    STATS_KEY_COUNT
} stats_key;

typedef struct stats_keys {
    stats_key key[STATS_KEY_COUNT];
    size_t n;
} stats_keys;

typedef struct stats_row {
    const char *sender, *recipient, *category, *purpose, *month; /* "" when not a key */
    uint32_t rule; /* 0 when not a key */
    uint64_t messages, exchanges, receipted, refused, expired;
} stats_row;

#define STATS_REASONS 20 /* Reason enum values 0..19 */

typedef struct stats_totals {
    uint64_t records, messages, exchanges, receipted, refused, expired, delivered;
    uint64_t rejected, auth_failed, directories;
    uint64_t rejected_by_reason[STATS_REASONS];
    uint64_t refused_by_reason[STATS_REASONS]; /* the recipients' reasons */
    uint64_t first_time, last_time; /* of the counted submits (0 if none) */
    uint64_t log_first_time, log_last_time;
} stats_totals;

typedef struct stats_table {
    stats_keys keys;
    stats_row *rows; /* sorted by the keys, in their order */
    size_t n_rows;
    stats_totals totals;
    struct stats_groups *groups; /* internal */
} stats_table;

/* "pair,category,month" (any of pair, category, month, purpose, rule, each
 * once). */
keten_err stats_parse_by(const char *s, stats_keys *out) KETEN_MUST_CHECK;
const char *stats_key_name(stats_key k);
bool stats_has_key(const stats_keys *keys, stats_key k);

/* One scan of db, filling tables[i] for keys[i] (n tables). The filter's
 * time bounds apply (other filter fields are ignored). idx receives the
 * messages (and owns the strings the rows point to): keep it alive as long
 * as the tables. */
keten_err stats_collect(const auditdb *db, records_index *idx, const records_filter *filter,
    const stats_keys *keys, stats_table *tables, size_t n) KETEN_MUST_CHECK;
void stats_table_free(stats_table *t);

#endif
