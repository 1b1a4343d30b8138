#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "render.h"

#define INITIAL_SLOTS 256u
#define NO_ROW SIZE_MAX

static const char empty[] = "";

typedef struct stats_groups {
    size_t *slots; /* 0: empty, else row + 1 */
    size_t n_slots; /* power of two */
    size_t cap_rows;
} stats_groups;

static const char *const key_names[STATS_KEY_COUNT] = {
    [STATS_PAIR] = "pair",
    [STATS_CATEGORY] = "category",
    [STATS_MONTH] = "month",
    [STATS_PURPOSE] = "purpose",
    [STATS_RULE] = "rule",
};

const char *stats_key_name(stats_key k)
{
    return k < STATS_KEY_COUNT ? key_names[k] : "?";
}

bool stats_has_key(const stats_keys *keys, stats_key k)
{
    for (size_t i = 0; i < keys->n; i++) {
        if (keys->key[i] == k) {
            return true;
        }
    }
    return false;
}

keten_err stats_parse_by(const char *s, stats_keys *out)
{
    memset(out, 0, sizeof *out);
    char **items = NULL;
    size_t n = 0;
    keten_err e = keten_cli_split(s, "--by", &items, &n);
    if (e != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < n && e == KETEN_OK; i++) {
        stats_key k = STATS_KEY_COUNT;
        for (size_t j = 0; j < STATS_KEY_COUNT; j++) {
            if (strcmp(items[i], key_names[j]) == 0) {
                k = (stats_key)j;
            }
        }
        if (k == STATS_KEY_COUNT) {
            e = keten_err_set(KETEN_ERR_INVALID,
                "--by: '%s' is not one of pair, category, month, purpose, rule", items[i]);
        } else if (stats_has_key(out, k)) {
            e = keten_err_set(KETEN_ERR_INVALID, "--by names '%s' twice", items[i]);
        } else {
            out->key[out->n++] = k;
        }
    }
    keten_cli_split_free(&items, n);
    return e;
}

void stats_table_free(stats_table *t)
{
    if (t == NULL) {
        return;
    }
    free(t->rows);
    if (t->groups != NULL) {
        free(t->groups->slots);
        free(t->groups);
    }
    t->rows = NULL;
    t->groups = NULL;
    t->n_rows = 0;
}

static size_t mix_u64(size_t h, uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (h ^ (size_t)x) * 0x9e3779b97f4a7c15ull;
}

static size_t mix(size_t h, const void *p)
{
    return mix_u64(h, (uint64_t)(uintptr_t)p);
}

static size_t row_hash(const stats_row *r)
{
    size_t h = 0;
    h = mix(h, r->sender);
    h = mix(h, r->recipient);
    h = mix(h, r->category);
    h = mix(h, r->purpose);
    h = mix(h, r->month);
    h = mix_u64(h, r->rule);
    return h;
}

static bool row_same(const stats_row *a, const stats_row *b)
{
    return a->sender == b->sender && a->recipient == b->recipient && a->category == b->category
        && a->purpose == b->purpose && a->month == b->month && a->rule == b->rule;
}

static keten_err groups_grow(stats_table *t)
{
    stats_groups *g = t->groups;
    size_t ns = g->n_slots * 2;
    size_t *slots = calloc(ns, sizeof *slots);
    if (slots == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "counting %zu groups", t->n_rows);
    }
    for (size_t i = 0; i < t->n_rows; i++) {
        size_t j = row_hash(&t->rows[i]) & (ns - 1);
        while (slots[j] != 0) {
            j = (j + 1) & (ns - 1);
        }
        slots[j] = i + 1;
    }
    free(g->slots);
    g->slots = slots;
    g->n_slots = ns;
    return KETEN_OK;
}

/* The row of a group (interned strings; "" for keys not chosen). */
static keten_err group_of(stats_table *t, const stats_row *key, size_t *row)
{
    stats_groups *g = t->groups;
    if ((t->n_rows + 1) * 2 > g->n_slots) {
        keten_err e = groups_grow(t);
        if (e != KETEN_OK) {
            return e;
        }
    }
    size_t mask = g->n_slots - 1;
    size_t i = row_hash(key) & mask;
    while (g->slots[i] != 0) {
        if (row_same(&t->rows[g->slots[i] - 1], key)) {
            *row = g->slots[i] - 1;
            return KETEN_OK;
        }
        i = (i + 1) & mask;
    }
    if (t->n_rows == g->cap_rows) {
        size_t c = g->cap_rows == 0 ? 64 : g->cap_rows * 2;
        stats_row *nr = realloc(t->rows, c * sizeof *nr);
        if (nr == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "counting %zu groups", t->n_rows);
        }
        t->rows = nr;
        g->cap_rows = c;
    }
    t->rows[t->n_rows] = *key;
    t->rows[t->n_rows].messages = 0;
    t->rows[t->n_rows].exchanges = 0;
    t->rows[t->n_rows].receipted = 0;
    t->rows[t->n_rows].refused = 0;
    t->rows[t->n_rows].expired = 0;
    g->slots[i] = ++t->n_rows;
    *row = t->n_rows - 1;
    return KETEN_OK;
}

typedef struct scan_ctx {
    records_index *idx;
    const records_filter *filter;
    stats_table *tables;
    size_t n;
} scan_ctx;

static const char *month_of(records_index *idx, uint64_t ms)
{
    char m[8];
    render_month(ms, m);
    return records_intern(idx, m);
}

static void key_for(const stats_table *t, const records_msg *m, const char *month,
    const char *recipient, stats_row *out)
{
    memset(out, 0, sizeof *out);
    bool pair = stats_has_key(&t->keys, STATS_PAIR);
    out->sender = pair ? m->sender : empty;
    out->recipient = pair ? recipient : empty;
    out->category = stats_has_key(&t->keys, STATS_CATEGORY) ? m->category : empty;
    out->purpose = stats_has_key(&t->keys, STATS_PURPOSE) ? m->purpose : empty;
    out->month = stats_has_key(&t->keys, STATS_MONTH) ? month : empty;
    out->rule = stats_has_key(&t->keys, STATS_RULE) ? m->rule : 0;
}

static bool in_range(const records_filter *f, uint64_t t)
{
    return (!f->has_from || t >= f->from_ms) && (!f->has_to || t < f->to_ms);
}

static void see_time(uint64_t t, uint64_t *first, uint64_t *last)
{
    if (*first == 0 || t < *first) {
        *first = t;
    }
    if (t > *last) {
        *last = t;
    }
}

static keten_err count_submit(scan_ctx *c, const Keten__AuditRecord *rec, records_msg *m)
{
    const char *month = month_of(c->idx, m->time);
    const char *rcpt_name = NULL;
    if (month == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "counting record %llu", (unsigned long long)rec->seq);
    }
    m->user = 1;
    for (size_t ti = 0; ti < c->n; ti++) {
        stats_table *t = &c->tables[ti];
        size_t touched[KETEN_MAX_RECIPIENTS];
        size_t n_touched = 0;
        if (ti == 0) {
            see_time(rec->time, &t->totals.first_time, &t->totals.last_time);
        }
        t->totals.messages++;
        for (size_t i = 0; i < m->n_recipients; i++) {
            rcpt_name = records_msg_recipient(c->idx, m, i);
            stats_row key;
            key_for(t, m, month, rcpt_name, &key);
            size_t row = NO_ROW;
            keten_err e = group_of(t, &key, &row);
            if (e != KETEN_OK) {
                return e;
            }
            t->rows[row].exchanges++;
            t->totals.exchanges++;
            bool seen = false;
            for (size_t k = 0; k < n_touched; k++) {
                seen = seen || touched[k] == row;
            }
            if (!seen && n_touched < KETEN_MAX_RECIPIENTS) {
                touched[n_touched++] = row;
                t->rows[row].messages++;
            }
        }
        if (ti > 0) {
            t->totals.first_time = c->tables[0].totals.first_time;
            t->totals.last_time = c->tables[0].totals.last_time;
        }
    }
    return KETEN_OK;
}

typedef enum outcome { OUTCOME_RECEIPTED, OUTCOME_REFUSED, OUTCOME_EXPIRED } outcome;

/* A receipt, refusal (reason) or expiry of recipient for counted message m. */
static keten_err count_outcome(
    scan_ctx *c, const records_msg *m, const char *recipient, outcome what, int reason)
{
    const char *month = month_of(c->idx, m->time);
    const char *rcpt = records_intern(c->idx, recipient);
    if (month == NULL || rcpt == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "counting outcomes");
    }
    for (size_t ti = 0; ti < c->n; ti++) {
        stats_table *t = &c->tables[ti];
        stats_row key;
        key_for(t, m, month, rcpt, &key);
        size_t row = NO_ROW;
        keten_err e = group_of(t, &key, &row);
        if (e != KETEN_OK) {
            return e;
        }
        switch (what) {
        case OUTCOME_RECEIPTED:
            t->rows[row].receipted++;
            t->totals.receipted++;
            break;
        case OUTCOME_REFUSED:
            t->rows[row].refused++;
            t->totals.refused++;
            if (reason >= 0 && reason < STATS_REASONS) {
                t->totals.refused_by_reason[reason]++;
            }
            break;
        default:
            t->rows[row].expired++;
            t->totals.expired++;
            break;
        }
    }
    return KETEN_OK;
}

static keten_err visit(void *ctx, const Keten__AuditRecord *rec, const records_msg *cm,
    const uint8_t *leaf, size_t len)
{
    (void)leaf;
    (void)len;
    scan_ctx *c = ctx;
    records_msg *m = (records_msg *)cm; /* our own index: we may mark it */
    for (size_t ti = 0; ti < c->n; ti++) {
        stats_totals *tt = &c->tables[ti].totals;
        tt->records++;
        see_time(rec->time, &tt->log_first_time, &tt->log_last_time);
    }
    bool range = in_range(c->filter, rec->time);
    switch (rec->event) {
    case KETEN__EVENT__EVENT_SUBMITTED:
        if (m != NULL && m->seq == rec->seq && range) {
            return count_submit(c, rec, m);
        }
        return KETEN_OK;
    case KETEN__EVENT__EVENT_RECEIPTED:
        if (m != NULL && m->user != 0) {
            return count_outcome(c, m, rec->node, OUTCOME_RECEIPTED, 0);
        }
        return KETEN_OK;
    case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
        if (m != NULL && m->user != 0) {
            return count_outcome(c, m, rec->node, OUTCOME_REFUSED, (int)rec->reason);
        }
        return KETEN_OK;
    case KETEN__EVENT__EVENT_EXPIRED:
        for (size_t i = 0; m != NULL && m->user != 0 && i < rec->n_recipients; i++) {
            keten_err e = count_outcome(c, m, rec->recipients[i], OUTCOME_EXPIRED, 0);
            if (e != KETEN_OK) {
                return e;
            }
        }
        return KETEN_OK;
    default:
        break;
    }
    for (size_t ti = 0; ti < c->n; ti++) {
        stats_totals *tt = &c->tables[ti].totals;
        if (rec->event == KETEN__EVENT__EVENT_DELIVERED && m != NULL && m->user != 0) {
            tt->delivered++;
        } else if (rec->event == KETEN__EVENT__EVENT_REJECTED && range) {
            tt->rejected++;
            if ((size_t)rec->reason < STATS_REASONS) {
                tt->rejected_by_reason[rec->reason]++;
            }
        } else if (rec->event == KETEN__EVENT__EVENT_AUTH_FAILED && range) {
            tt->auth_failed++;
        } else if (rec->event == KETEN__EVENT__EVENT_DIRECTORY_INSTALLED) {
            tt->directories++;
        }
    }
    return KETEN_OK;
}

static int cmp_rows(const void *a, const void *b, void *arg)
{
    const stats_row *x = a, *y = b;
    const stats_keys *keys = arg;
    for (size_t i = 0; i < keys->n; i++) {
        int c = 0;
        switch (keys->key[i]) {
        case STATS_PAIR:
            c = strcmp(x->sender, y->sender);
            if (c == 0) {
                c = strcmp(x->recipient, y->recipient);
            }
            break;
        case STATS_CATEGORY:
            c = strcmp(x->category, y->category);
            break;
        case STATS_MONTH:
            c = strcmp(x->month, y->month);
            break;
        case STATS_RULE:
            c = (x->rule > y->rule) - (x->rule < y->rule);
            break;
        default:
            c = strcmp(x->purpose, y->purpose);
            break;
        }
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

keten_err stats_collect(const auditdb *db, records_index *idx, const records_filter *filter,
    const stats_keys *keys, stats_table *tables, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memset(&tables[i], 0, sizeof tables[i]);
    }
    keten_err e = KETEN_OK;
    for (size_t i = 0; i < n; i++) {
        tables[i].keys = keys[i];
        tables[i].groups = calloc(1, sizeof *tables[i].groups);
        if (tables[i].groups != NULL) {
            tables[i].groups->n_slots = INITIAL_SLOTS;
            tables[i].groups->slots = calloc(INITIAL_SLOTS, sizeof(size_t));
        }
        if (tables[i].groups == NULL || tables[i].groups->slots == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "preparing the counts");
            goto fail;
        }
    }
    scan_ctx c = { idx, filter, tables, n };
    if ((e = records_scan(db, idx, visit, &c)) != KETEN_OK) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        qsort_r(
            tables[i].rows, tables[i].n_rows, sizeof *tables[i].rows, cmp_rows, &tables[i].keys);
    }
    return KETEN_OK;
fail:
    for (size_t i = 0; i < n; i++) {
        stats_table_free(&tables[i]);
    }
    return e;
}
