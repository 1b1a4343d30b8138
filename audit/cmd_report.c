/*
 * keten-audit report --db ... --out report.html: one self-contained HTML
 * page (inline CSS and SVG, no script, nothing fetched) for a non-technical
 * auditor: the verification summary, totals, the exchanges table, the
 * exchanges per purpose and policy rule, the policy's rules per directory
 * version that set them, a bar chart of exchanges per month
 * per partner, a partner-to-partner matrix,
 * the rejected attempts, the revocations and key rotations and the history of
 * the directory versions (dirinfo.h); partners are shown with their
 * organisation. Plain words: records "of the log", singular and plural
 * right. Every text from the log is HTML-escaped.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "directory.h"
#include "dirinfo.h"
#include "pb.h"
#include "records.h"
#include "render.h"
#include "stats.h"
#include "util.h"
#include "verifier.h"

#define CMD "report"
#define CHART_HEIGHT 260
#define CHART_MARGIN_LEFT 56
#define CHART_MARGIN_BOTTOM 48
#define CHART_MARGIN_TOP 24
#define BAR_WIDTH 18
#define GROUP_GAP 28
#define MAX_PARTNERS 256
#define MAX_MONTHS 1200
/* The counts the page shows: by pair, category and month; by month and pair
 * (the chart); by pair (the matrix); by purpose, rule and pair. */
#define REPORT_TABLES 4

static const char usage_text[]
    = "Usage: keten-audit report --db BROKER_HOME|AUDIT_DIR --out report.html\n"
      "                          [--anchor network.pub [--checkpoint PATH]...]\n"
      "                          [--from T] [--to T]\n"
      "\n"
      "Write one self-contained HTML page (no scripts, nothing fetched from the\n"
      "network) for the annual accountability report: the verification summary, the\n"
      "number of exchanges per partner pair, category and month, the exchanges per\n"
      "purpose and the sharing policy's rule that allowed them, the rules of the\n"
      "sharing policy as each directory version states them, a bar chart of\n"
      "exchanges per month per sending partner, a partner-to-partner matrix, the\n"
      "rejected attempts, the revocations and key rotations and the history of the\n"
      "network directory; partners are named with their organisation. With\n"
      "--anchor the log is verified first (as 'keten-audit verify' does) and the\n"
      "page says the outcome; without it, the page says plainly that the log was\n"
      "not verified.\n"
      "\n"
      "Options:\n"
      "  --db DIR            a broker home or an export\n"
      "  --out FILE          the HTML file to write (replaced if it exists)\n"
      "  --anchor FILE       verify the log against this trust anchor first\n"
      "  --checkpoint FILE   with --anchor: checkpoint notes kept by a partner\n"
      "                      (repeatable)\n"
      "  --from T, --to T    count messages submitted in [T1, T2) (ISO 8601 UTC or ms)\n"
      "  --help              show this help\n"
      "\n"
      "Exit codes: 0 written (also when the verification failed: the page says so),\n"
      "1 failure, 2 usage error, 3 the log is damaged beyond reading.\n";

static const char *const palette[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };
#define PALETTE_N (sizeof palette / sizeof palette[0])

static const char style[]
    = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;"
      "max-width:72em;color:#222;padding:0 1em}"
      "h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}"
      "table{border-collapse:collapse;margin:.5em 0}"
      "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
      "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
      "tr.total td{font-weight:bold;background:#f4f4f4}"
      ".ok{background:#e8f5e9;border:1px solid #66bb6a;padding:.8em 1em}"
      ".bad{background:#ffebee;border:1px solid #e53935;padding:.8em 1em}"
      ".none{background:#f5f5f5;border:1px solid #9e9e9e;padding:.8em 1em}"
      ".claim{color:#666}.legend span{display:inline-block;margin-right:1.2em}"
      ".swatch{display:inline-block;width:.9em;height:.9em;margin-right:.3em;"
      "vertical-align:middle}"
      "dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{color:#555}"
      "dd{margin:0}.org{color:#555}td.m{white-space:nowrap}"
      "@media print{body{margin:0;max-width:none}h2{break-after:avoid}"
      "table,svg{break-inside:avoid}}";

static void esc(FILE *f, const char *s)
{
    render_html_text(f, s);
}

/* "N thing" or "N things". */
static void count(FILE *f, uint64_t n, const char *one, const char *many)
{
    fprintf(f, "%" PRIu64 " %s", n, n == 1 ? one : many);
}

/* A partner: its node id and, from the directory, its organisation. */
static void party(FILE *f, const dirinfo *dirs, const char *id)
{
    esc(f, id);
    const char *org = dirinfo_org(dirs, id);
    if (org != NULL && org[0] != '\0') {
        fprintf(f, " <span class=\"org\">(");
        esc(f, org);
        fprintf(f, ")</span>");
    }
}

/* ---- verification ---------------------------------------------------- */

static void verification_html(FILE *f, const auditdb *a, const verifier_result *v, bool ran)
{
    char t1[32], t2[32], root[2 * KETEN_HASH_BYTES + 1], src[PATH_MAX + 64];
    auditdb_describe(a, src, sizeof src);
    fprintf(f, "<h2>Verification</h2>\n");
    if (!ran) {
        fprintf(f,
            "<div class=\"none\" id=\"verification\"><strong>Not verified.</strong> This "
            "report was made without the network anchor, so nothing in it has been "
            "checked against the signatures. Make it again with <code>--anchor "
            "network.pub</code>, or run <code>keten-audit verify</code>.</div>\n");
        return;
    }
    if (!v->ok && v->failure.no_record) {
        fprintf(f,
            "<div class=\"bad\" id=\"verification\"><strong>Verification FAILED.</strong> "
            "Every record of the log passed its checks, but a file given with it does not "
            "(a partner's checkpoints, or the directories of the export). The figures below are "
            "what the log says; they cannot be relied upon until that file is checked.<br>"
            "<small>For the technical auditor (as <code>keten-audit verify</code> says it): ");
    } else if (!v->ok) {
        fprintf(f,
            "<div class=\"bad\" id=\"verification\"><strong>Verification FAILED at "
            "record %" PRIu64 " of the log.</strong> The log was changed there, or "
            "does not add up. The figures below are what the log says; they cannot be "
            "relied upon.<br><small>For the technical auditor (as <code>keten-audit "
            "verify</code> says it): ",
            v->failure.seq);
    }
    if (!v->ok) {
        esc(f, v->failure.what);
        fprintf(f, "</small></div>\n");
        return;
    }
    keten_hex(v->root, KETEN_HASH_BYTES, root);
    keten_time_iso(v->first_time, t1, sizeof t1);
    keten_time_iso(v->last_time, t2, sizeof t2);
    fprintf(f,
        "<div class=\"ok\" id=\"verification\"><strong>The audit log verifies.</strong> "
        "No record was changed, removed or reordered since it was logged, every sender's "
        "and recipient's signature is valid, and every checkpoint the broker signed "
        "matches the log.</div>\n<dl>\n");
    fprintf(f, "<dt>Source</dt><dd>");
    esc(f, src);
    fprintf(f, "</dd>\n<dt>Records</dt><dd>%" PRIu64 "</dd>\n", v->records);
    fprintf(f, "<dt>Root hash</dt><dd><code>%s</code></dd>\n", root);
    if (v->records > 0) {
        fprintf(f, "<dt>Time span</dt><dd>%s to %s (the broker's clock)</dd>\n", t1, t2);
    }
    fprintf(f,
        "<dt>Directory versions</dt><dd>%" PRIu64 " in the log, verified from the network "
        "anchor</dd>\n",
        v->directory_versions);
    fprintf(f, "<dt>Checkpoints</dt><dd>");
    count(f, v->checkpoints, "checkpoint", "checkpoints");
    fprintf(f, " signed by the broker, %" PRIu64 " witnessed by a quorum of %zu of ",
        v->checkpoints_witnessed, v->quorum);
    count(f, v->partners, "partner", "partners");
    fprintf(f, "</dd>\n");
    if (v->external == 0) {
        fprintf(f,
            "<dt>External evidence</dt><dd>None given: the log is only "
            "self-consistent. Compare it with checkpoints kept by partner "
            "nodes.</dd>\n");
    } else {
        fprintf(f, "<dt>External evidence</dt><dd>");
        count(f, v->external, "checkpoint kept by partners matches",
            "checkpoints kept by partners match");
        fprintf(f, " the log up to record %" PRIu64 " of the log</dd>\n",
            v->external_max_size > 0 ? v->external_max_size - 1 : 0);
    }
    fprintf(f, "<dt>Signed by partners</dt><dd>");
    count(f, v->sender_signatures, "submitted message", "submitted messages");
    fprintf(f, " (sender's signature), ");
    count(f, v->events[KETEN__EVENT__EVENT_RECEIPTED], "receipt", "receipts");
    fprintf(f, " and ");
    count(f, v->events[KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT], "refusal", "refusals");
    fprintf(f, " by recipients (the recipient's signature over a receipt batch; ");
    count(f, v->receipt_signatures, "batch", "batches");
    fprintf(f, ")</dd>\n<dt class=\"claim\">The broker's claims</dt><dd class=\"claim\">");
    count(f, v->events[KETEN__EVENT__EVENT_DELIVERED], "delivery", "deliveries");
    fprintf(f, ", ");
    count(f, v->events[KETEN__EVENT__EVENT_EXPIRED], "expiry", "expiries");
    fprintf(f, ", ");
    count(f, v->events[KETEN__EVENT__EVENT_REJECTED], "rejection", "rejections");
    fprintf(f, ", ");
    count(f, v->events[KETEN__EVENT__EVENT_NODE_CONNECTED], "connection", "connections");
    fprintf(f, ", ");
    count(f, v->events[KETEN__EVENT__EVENT_AUTH_FAILED], "authentication failure",
        "authentication failures");
    fprintf(f, ", and the time of every record: no partner signed these</dd>\n</dl>\n");
}

/* ---- tables ----------------------------------------------------------- */

static void totals_html(FILE *f, const stats_totals *t)
{
    char t1[32] = "-", t2[32] = "-";
    if (t->messages > 0) {
        keten_time_iso(t->first_time, t1, sizeof t1);
        keten_time_iso(t->last_time, t2, sizeof t2);
    }
    fprintf(f, "<h2>Totals</h2>\n<table id=\"totals\">\n");
    fprintf(
        f, "<tr><th>Messages submitted</th><td class=\"n\">%" PRIu64 "</td></tr>\n", t->messages);
    fprintf(f,
        "<tr><th>Exchanges (message &times; recipient)</th><td class=\"n\">%" PRIu64 "</td></tr>\n",
        t->exchanges);
    fprintf(f, "<tr><th>Receipted by the recipient</th><td class=\"n\">%" PRIu64 "</td></tr>\n",
        t->receipted);
    fprintf(f, "<tr><th>Refused by the recipient</th><td class=\"n\">%" PRIu64 "</td></tr>\n",
        t->refused);
    fprintf(
        f, "<tr><th>Expired unreceipted</th><td class=\"n\">%" PRIu64 "</td></tr>\n", t->expired);
    fprintf(
        f, "<tr><th>Rejected attempts</th><td class=\"n\">%" PRIu64 "</td></tr>\n", t->rejected);
    fprintf(f, "<tr><th>Authentication failures</th><td class=\"n\">%" PRIu64 "</td></tr>\n",
        t->auth_failed);
    fprintf(f, "<tr><th>First and last message</th><td>%s &ndash; %s</td></tr>\n", t1, t2);
    fprintf(f, "</table>\n");
}

/* The five counts of a row of an exchanges table, and the row's end. */
static void count_cells(FILE *f, uint64_t messages, uint64_t exchanges, uint64_t receipted,
    uint64_t refused, uint64_t expired)
{
    fprintf(f,
        "<td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64
        "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64 "</td></tr>\n",
        messages, exchanges, receipted, refused, expired);
}

/* The end of a row of an exchanges table: its counts, after its last key. */
static void row_end(FILE *f, const stats_row *r)
{
    fprintf(f, "</td>");
    count_cells(f, r->messages, r->exchanges, r->receipted, r->refused, r->expired);
}

/* The total row of an exchanges table (four key columns), and its end. */
static void table_end(FILE *f, const stats_table *t)
{
    fprintf(f, "<tr class=\"total\"><td colspan=\"4\">Total</td>");
    count_cells(f, t->totals.messages, t->totals.exchanges, t->totals.receipted, t->totals.refused,
        t->totals.expired);
    fprintf(f, "</table>\n");
}

static void stats_html(FILE *f, const stats_table *t, const dirinfo *dirs)
{
    fprintf(f,
        "<h2>Exchanges per partner pair, category and month</h2>\n"
        "<table id=\"stats\">\n<tr><th>Sender</th><th>Recipient</th><th>Category</th>"
        "<th>Month</th><th class=\"n\">Messages</th><th class=\"n\">Exchanges</th>"
        "<th class=\"n\">Receipted</th><th class=\"n\">Refused</th>"
        "<th class=\"n\">Expired</th></tr>\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        const stats_row *r = &t->rows[i];
        fprintf(f, "<tr><td>");
        party(f, dirs, r->sender);
        fprintf(f, "</td><td>");
        party(f, dirs, r->recipient);
        fprintf(f, "</td><td>");
        esc(f, r->category);
        fprintf(f, "</td><td class=\"m\">");
        esc(f, r->month);
        row_end(f, r);
    }
    table_end(f, t);
}

/* Exchanges per purpose, the policy rule that allowed them (its number, as
 * the submitted record holds it) and partner pair. */
static void purpose_html(FILE *f, const stats_table *t, const dirinfo *dirs)
{
    fprintf(f,
        "<h2>Exchanges per purpose and sharing rule</h2>\n"
        "<p>Every message names its purpose, one of those the directory registers, and "
        "the broker logs the number of the sharing policy's rule that allowed it. What "
        "each rule says is listed in the next section, under the directory version in "
        "force when the message was submitted.</p>\n"
        "<table id=\"purposes\">\n<tr><th>Purpose</th><th class=\"n\">Policy rule</th>"
        "<th>Sender</th><th>Recipient</th><th class=\"n\">Messages</th>"
        "<th class=\"n\">Exchanges</th><th class=\"n\">Receipted</th>"
        "<th class=\"n\">Refused</th><th class=\"n\">Expired</th></tr>\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        const stats_row *r = &t->rows[i];
        fprintf(f, "<tr><td>");
        esc(f, r->purpose);
        fprintf(f, "</td><td class=\"n\">%" PRIu32 "</td><td>", r->rule);
        party(f, dirs, r->sender);
        fprintf(f, "</td><td>");
        party(f, dirs, r->recipient);
        row_end(f, r);
    }
    table_end(f, t);
}

/* Distinct strings, in first-seen order (tables are sorted, so sorted). */
typedef struct names {
    const char *v[MAX_PARTNERS];
    size_t n;
} names;

static size_t name_at(names *ns, const char *s)
{
    for (size_t i = 0; i < ns->n; i++) {
        if (strcmp(ns->v[i], s) == 0) {
            return i;
        }
    }
    if (ns->n == MAX_PARTNERS) {
        return MAX_PARTNERS;
    }
    ns->v[ns->n] = s;
    return ns->n++;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void names_sort(names *ns)
{
    if (ns->n > 1) {
        qsort(ns->v, ns->n, sizeof ns->v[0], cmp_str); /* ns->v is NULL when empty */
    }
}

static size_t name_find(const names *ns, const char *s)
{
    for (size_t i = 0; i < ns->n; i++) {
        if (strcmp(ns->v[i], s) == 0) {
            return i;
        }
    }
    return MAX_PARTNERS;
}

/* A step for the chart's axis: 1, 2 or 5 times a power of ten, so that
 * about four steps reach max. */
static uint64_t axis_step(uint64_t max)
{
    uint64_t want = max / 4 > 0 ? max / 4 : 1;
    for (uint64_t p = 1;; p *= 10) {
        if (p >= want) {
            return p;
        }
        if (2 * p >= want) {
            return 2 * p;
        }
        if (5 * p >= want) {
            return 5 * p;
        }
        if (p > UINT64_MAX / 100) {
            return p * 10;
        }
    }
}

/* Bar chart from a table keyed by month and pair. */
static keten_err chart_html(FILE *f, const stats_table *t, const dirinfo *dirs)
{
    names senders = { .n = 0 }, months = { .n = 0 };
    for (size_t i = 0; i < t->n_rows; i++) {
        (void)name_at(&senders, t->rows[i].sender);
        if (months.n < MAX_MONTHS && months.n < MAX_PARTNERS) {
            (void)name_at(&months, t->rows[i].month);
        }
    }
    names_sort(&senders);
    names_sort(&months);
    size_t ns = senders.n, nm = months.n;
    fprintf(f, "<h2>Exchanges per month per sending partner</h2>\n");
    if (ns == 0 || nm == 0) {
        fprintf(f, "<p>No exchanges in this period.</p>\n");
        return KETEN_OK;
    }
    uint64_t *v = calloc(ns * nm, sizeof *v);
    if (v == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "drawing the chart");
    }
    uint64_t max = 1;
    for (size_t i = 0; i < t->n_rows; i++) {
        size_t si = name_find(&senders, t->rows[i].sender);
        size_t mi = name_find(&months, t->rows[i].month);
        if (si < ns && mi < nm) {
            v[mi * ns + si] += t->rows[i].exchanges;
            max = v[mi * ns + si] > max ? v[mi * ns + si] : max;
        }
    }
    size_t group = ns * BAR_WIDTH + GROUP_GAP;
    size_t width = CHART_MARGIN_LEFT + nm * group + 20;
    size_t plot = CHART_HEIGHT - CHART_MARGIN_BOTTOM - CHART_MARGIN_TOP;
    fprintf(f,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%zu\" height=\"%d\" "
        "role=\"img\" aria-label=\"Exchanges per month per sending partner\" "
        "font-family=\"sans-serif\" font-size=\"11\">\n",
        width, CHART_HEIGHT);
    size_t base = CHART_HEIGHT - CHART_MARGIN_BOTTOM;
    fprintf(f, "<line x1=\"%d\" y1=\"%zu\" x2=\"%zu\" y2=\"%zu\" stroke=\"#333\"/>\n",
        CHART_MARGIN_LEFT, base, width - 10, base);
    /* The scale runs to the first step at or above the largest bar, with a
     * labelled line at every step. */
    uint64_t step = axis_step(max);
    uint64_t top = max <= UINT64_MAX - step ? (max + step - 1) / step * step : max;
    for (uint64_t tick = 0; tick <= top; tick += step) {
        size_t y = base - (size_t)((double)tick * (double)plot / (double)top);
        fprintf(f,
            "<line x1=\"%d\" y1=\"%zu\" x2=\"%zu\" y2=\"%zu\" stroke=\"#ddd\"/>"
            "<text x=\"%d\" y=\"%zu\" text-anchor=\"end\">%" PRIu64 "</text>\n",
            CHART_MARGIN_LEFT, y, width - 10, y, CHART_MARGIN_LEFT - 6, y + 4, tick);
    }
    for (size_t mi = 0; mi < nm; mi++) {
        size_t x0 = CHART_MARGIN_LEFT + mi * group + GROUP_GAP / 2;
        for (size_t si = 0; si < ns; si++) {
            uint64_t n = v[mi * ns + si];
            size_t h = (size_t)((double)n * (double)plot / (double)top);
            size_t x = x0 + si * BAR_WIDTH;
            fprintf(f,
                "<rect x=\"%zu\" y=\"%zu\" width=\"%d\" height=\"%zu\" fill=\"%s\">"
                "<title>",
                x, base - h, BAR_WIDTH - 2, h, palette[si % PALETTE_N]);
            esc(f, senders.v[si]);
            fprintf(f, ", ");
            esc(f, months.v[mi]);
            fprintf(f, ": %" PRIu64 "</title></rect>\n", n);
            if (n > 0) {
                fprintf(f, "<text x=\"%zu\" y=\"%zu\" text-anchor=\"middle\">%" PRIu64 "</text>\n",
                    x + (BAR_WIDTH - 2) / 2, base - h - 3, n);
            }
        }
        fprintf(f, "<text x=\"%zu\" y=\"%zu\" text-anchor=\"middle\">", x0 + ns * BAR_WIDTH / 2,
            base + 16);
        esc(f, months.v[mi]);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n<p class=\"legend\">");
    for (size_t si = 0; si < ns; si++) {
        fprintf(f, "<span><span class=\"swatch\" style=\"background:%s\"></span>",
            palette[si % PALETTE_N]);
        party(f, dirs, senders.v[si]);
        fprintf(f, "</span>");
    }
    fprintf(f, "</p>\n");
    free(v);
    return KETEN_OK;
}

/* Matrix from a table keyed by pair. */
static keten_err matrix_html(FILE *f, const stats_table *t, const dirinfo *dirs)
{
    names parts = { .n = 0 };
    for (size_t i = 0; i < t->n_rows; i++) {
        (void)name_at(&parts, t->rows[i].sender);
        (void)name_at(&parts, t->rows[i].recipient);
    }
    names_sort(&parts);
    size_t n = parts.n;
    fprintf(f, "<h2>Partner-to-partner matrix</h2>\n");
    if (n == 0) {
        fprintf(f, "<p>No exchanges in this period.</p>\n");
        return KETEN_OK;
    }
    uint64_t *m = calloc(n * n, sizeof *m);
    if (m == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "drawing the matrix");
    }
    uint64_t max = 1;
    for (size_t i = 0; i < t->n_rows; i++) {
        size_t s = name_find(&parts, t->rows[i].sender);
        size_t r = name_find(&parts, t->rows[i].recipient);
        if (s < n && r < n) {
            m[s * n + r] += t->rows[i].exchanges;
            max = m[s * n + r] > max ? m[s * n + r] : max;
        }
    }
    fprintf(f,
        "<p>Rows: the sending partner; columns: the receiving partner; each cell the "
        "number of exchanges.</p>\n<table id=\"matrix\">\n<tr><th>from \\ to</th>");
    for (size_t c = 0; c < n; c++) {
        fprintf(f, "<th>");
        esc(f, parts.v[c]);
        fprintf(f, "</th>");
    }
    fprintf(f, "<th class=\"n\">total sent</th></tr>\n");
    for (size_t r = 0; r < n; r++) {
        uint64_t row = 0;
        fprintf(f, "<tr><th>");
        party(f, dirs, parts.v[r]);
        fprintf(f, "</th>");
        for (size_t c = 0; c < n; c++) {
            uint64_t x = m[r * n + c];
            row += x;
            unsigned alpha = (unsigned)(x * 60 / max);
            fprintf(f,
                "<td class=\"n\" style=\"background:rgba(31,119,180,0.%02u)\">%" PRIu64 "</td>",
                x > 0 ? alpha + 10 : 0, x);
        }
        fprintf(f, "<td class=\"n\">%" PRIu64 "</td></tr>\n", row);
    }
    fprintf(f, "<tr class=\"total\"><td>total received</td>");
    uint64_t all = 0;
    for (size_t c = 0; c < n; c++) {
        uint64_t col = 0;
        for (size_t r = 0; r < n; r++) {
            col += m[r * n + c];
        }
        all += col;
        fprintf(f, "<td class=\"n\">%" PRIu64 "</td>", col);
    }
    fprintf(f, "<td class=\"n\">%" PRIu64 "</td></tr>\n</table>\n", all);
    free(m);
    return KETEN_OK;
}

static void refusals_html(FILE *f, const stats_totals *t)
{
    fprintf(f,
        "<h2>Refused by recipients</h2>\n<p>Recipients refused these deliveries and "
        "signed their refusal with the reason (in a receipt batch): partner-signed "
        "facts, like receipts.</p>\n<table id=\"refusals\"><tr><th>Reason</th>"
        "<th class=\"n\">Count</th></tr>\n");
    for (int i = 1; i < STATS_REASONS; i++) {
        if (t->refused_by_reason[i] > 0) {
            fprintf(f, "<tr><td>%s</td><td class=\"n\">%" PRIu64 "</td></tr>\n",
                records_reason_name(i), t->refused_by_reason[i]);
        }
    }
    fprintf(f,
        "<tr class=\"total\"><td>Total</td><td class=\"n\">%" PRIu64 "</td></tr>\n"
        "</table>\n",
        t->refused);
}

static void rejects_html(FILE *f, const stats_totals *t)
{
    fprintf(f,
        "<h2>Rejected attempts</h2>\n<p class=\"claim\">The broker refused these "
        "submits and logged who tried and why (nothing the sender typed). They are the "
        "broker's claims.</p>\n<table id=\"rejects\"><tr><th>Reason</th>"
        "<th class=\"n\">Count</th></tr>\n");
    for (int i = 1; i < STATS_REASONS; i++) {
        if (t->rejected_by_reason[i] > 0) {
            fprintf(f, "<tr><td>%s</td><td class=\"n\">%" PRIu64 "</td></tr>\n",
                records_reason_name(i), t->rejected_by_reason[i]);
        }
    }
    fprintf(f,
        "<tr class=\"total\"><td>Total</td><td class=\"n\">%" PRIu64 "</td></tr>\n"
        "</table>\n<p>",
        t->rejected);
    count(f, t->auth_failed, "authentication failure", "authentication failures");
    fprintf(f, " (connections or messages from unknown or revoked keys).</p>\n");
}

/* A time for people: "2026-03-01 14:05 UTC". */
static void human_time(uint64_t ms, char out[static 32])
{
    char iso[32];
    keten_time_iso(ms, iso, sizeof iso);
    /* 2026-03-01T14:05:09.123Z or 2026-03-01T14:05:09Z */
    if (strlen(iso) >= 16 && iso[10] == 'T') {
        snprintf(out, 32, "%.10s %.5s UTC", iso, iso + 11);
    } else {
        snprintf(out, 32, "%s", iso);
    }
}

static void change_html(FILE *f, const dirinfo_change *c)
{
    char t[32];
    human_time(c->at, t);
    switch (c->kind) {
    case DIRINFO_ADDED:
        fprintf(f, "added ");
        break;
    case DIRINFO_REVOKED:
        fprintf(f, "revoked ");
        break;
    case DIRINFO_ROTATED:
        fprintf(f, "keys replaced of ");
        break;
    }
    esc(f, c->node);
    if (c->org[0] != '\0') {
        fprintf(f, " (");
        esc(f, c->org);
        fprintf(f, ")");
    }
    if (c->kind == DIRINFO_REVOKED) {
        fprintf(f, " as of %s", t);
        if (c->reason[0] != '\0') {
            fprintf(f, ": &ldquo;");
            esc(f, c->reason);
            fprintf(f, "&rdquo;");
        }
    } else if (c->kind == DIRINFO_ROTATED) {
        fprintf(f, " (the old keys valid until %s)", t);
    }
}

/* Revocations and rotations, and every directory version with its changes. */
/* What a version changed beside the certificates; for one that changed
 * nothing at all, that only its validity was renewed. */
static void settings_html(FILE *f, const dirinfo_version *v, bool first)
{
    bool any = v->n_changes > 0;
    if (first) {
        fprintf(f, "%s%zu administrators, of whom %u must sign each version; %zu policy rules",
            any ? "; " : "", v->n_admins, v->threshold, v->n_rules);
        return;
    }
    if (v->settings & DIRINFO_ADMINS) {
        fprintf(f,
            "%s<strong>administrators changed</strong>: now %zu, of whom %u must sign each "
            "version (before: %zu, of whom %u)",
            any ? "; " : "", v->n_admins, v->threshold, v->prev_n_admins, v->prev_threshold);
        any = true;
    }
    if (v->settings & DIRINFO_POLICY) {
        fprintf(f, "%sthe sharing policy changed (now %zu rules)", any ? "; " : "", v->n_rules);
        any = true;
    }
    if (v->settings & DIRINFO_REGISTRY) {
        fprintf(f, "%sthe registered categories or purposes changed", any ? "; " : "");
        any = true;
    }
    if (v->settings & DIRINFO_WITNESSES) {
        fprintf(f, "%sthe witness quorum changed", any ? "; " : "");
        any = true;
    }
    if (v->settings & DIRINFO_LIFETIME) {
        fprintf(f, "%sthe longest message lifetime changed", any ? "; " : "");
        any = true;
    }
    if (!any) {
        char t[32];
        human_time(v->expires_at, t);
        fprintf(f, "no change but its validity, renewed until %s", t);
    }
}

/* The rules of the sharing policy: those of the first version, then those of
 * every version that changed them, each with the versions it covers. */
static void policy_html(FILE *f, const dirinfo *dirs)
{
    size_t nv = dirinfo_version_count(dirs);
    fprintf(f,
        "<h2>The sharing policy</h2>\n<p>The rules of the sharing policy, as the "
        "administrators signed them in the network directory. Each recipient of a "
        "message is judged apart: if a deny rule covers it (sender, recipient, category, "
        "kind and purpose), it is refused; otherwise, if an allow rule covers it, it "
        "passes; otherwise it is refused by the default, rule 0. A message is accepted "
        "only if every recipient passes. The audit log records for an accepted message "
        "the lowest-numbered allow rule that let one of its recipients pass, and for a "
        "refused one the lowest-numbered deny rule that refused a recipient (rule 0 if "
        "none did). A category &ldquo;*&rdquo; covers every registered category; a rule "
        "that lists no kinds or no purposes covers them all.</p>\n");
    if (nv == 0) {
        fprintf(f, "<p id=\"policy\">No directory version was found.</p>\n");
        return;
    }
    char t[32];
    for (size_t i = 0; i < nv; i++) {
        const dirinfo_version *v = dirinfo_version_at(dirs, i);
        if (i > 0 && !(v->settings & DIRINFO_POLICY)) {
            continue;
        }
        size_t last = i;
        while (last + 1 < nv && !(dirinfo_version_at(dirs, last + 1)->settings & DIRINFO_POLICY)) {
            last++;
        }
        human_time(v->issued_at, t);
        fprintf(f, "<h3>Directory version %" PRIu64, v->version);
        if (last > i) {
            fprintf(f, " to %" PRIu64, dirinfo_version_at(dirs, last)->version);
        }
        fprintf(f, " (from %s)</h3>\n", t);
        if (v->n_rules == 0) {
            fprintf(f, "<p id=\"policy-v%" PRIu64 "\">No rule: every message was refused.</p>\n",
                v->version);
            continue;
        }
        fprintf(f,
            "<table id=\"policy-v%" PRIu64 "\"><tr><th class=\"n\">Rule</th><th>Effect</th>"
            "<th>From</th><th>To</th><th>Categories</th><th>Kinds</th><th>Purposes</th>"
            "</tr>\n",
            v->version);
        for (size_t j = 0; j < v->n_rules; j++) {
            const dirinfo_rule *r = dirinfo_rule_at(dirs, v->first_rule + j);
            fprintf(f, "<tr><td class=\"n\">%" PRIu32 "</td><td>%s</td><td>", r->id, r->effect);
            esc(f, r->from);
            fprintf(f, "</td><td>");
            esc(f, r->to);
            fprintf(f, "</td><td>");
            esc(f, r->categories);
            fprintf(f, "</td><td>");
            esc(f, r->kinds[0] != '\0' ? r->kinds : "all");
            fprintf(f, "</td><td>");
            esc(f, r->purposes[0] != '\0' ? r->purposes : "all");
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table>\n");
    }
}

static void directory_html(FILE *f, const dirinfo *dirs)
{
    size_t nv = dirinfo_version_count(dirs);
    char t[32];
    fprintf(f,
        "<h2>Revocations and key rotations</h2>\n<p>The network's administrators revoke a "
        "partner's certificate (it may no longer exchange anything) or replace its keys (a "
        "rotation), by publishing a new version of the network directory that they "
        "sign.</p>\n");
    size_t shown = 0;
    for (size_t i = 0; i < nv; i++) {
        const dirinfo_version *v = dirinfo_version_at(dirs, i);
        for (size_t j = 0; j < v->n_changes; j++) {
            const dirinfo_change *c = dirinfo_change_at(dirs, v->first_change + j);
            if (c->kind == DIRINFO_ADDED) {
                continue;
            }
            if (shown++ == 0) {
                fprintf(f,
                    "<table id=\"revocations\"><tr><th>Partner</th><th>Organisation</th>"
                    "<th>What</th><th>As of</th><th>Reason</th>"
                    "<th class=\"n\">Directory version</th></tr>\n");
            }
            human_time(c->at, t);
            fprintf(f, "<tr><td>");
            esc(f, c->node);
            fprintf(f, "</td><td>");
            esc(f, c->org);
            fprintf(f, "</td><td>%s</td><td>%s</td><td>",
                c->kind == DIRINFO_REVOKED ? "revoked" : "keys replaced", t);
            esc(f, c->kind == DIRINFO_REVOKED ? c->reason : "");
            fprintf(f, "</td><td class=\"n\">%" PRIu64 "</td></tr>\n", v->version);
        }
    }
    if (shown == 0) {
        fprintf(f, "<p id=\"revocations\">No certificate was revoked or replaced.</p>\n");
    } else {
        fprintf(f, "</table>\n");
    }
    fprintf(f,
        "<h2>History of the network directory</h2>\n<p>Every version of the directory "
        "(the signed list of partners, their keys and the sharing policy) that the broker "
        "installed, with what changed for the partners.</p>\n");
    if (nv == 0) {
        fprintf(f, "<p id=\"directory-history\">No directory version was found.</p>\n");
        return;
    }
    fprintf(f,
        "<table id=\"directory-history\"><tr><th class=\"n\">Version</th><th>Published</th>"
        "<th class=\"n\">Partners</th><th>What changed</th></tr>\n");
    for (size_t i = 0; i < nv; i++) {
        const dirinfo_version *v = dirinfo_version_at(dirs, i);
        human_time(v->issued_at, t);
        fprintf(f, "<tr><td class=\"n\">%" PRIu64 "</td><td>%s</td><td class=\"n\">%zu</td><td>",
            v->version, t, v->n_nodes);
        if (i == 0) {
            fprintf(f, "first version. ");
        }
        for (size_t j = 0; j < v->n_changes; j++) {
            fprintf(f, "%s", j > 0 ? "; " : "");
            change_html(f, dirinfo_change_at(dirs, v->first_change + j));
        }
        settings_html(f, v, i == 0);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n");
}

static keten_err write_page(FILE *f, const auditdb *a, const char *network,
    const verifier_result *v, bool verified, const stats_table *tables, const records_filter *flt,
    const dirinfo *dirs)
{
    char now[32], t1[32], t2[32];
    keten_time_iso(keten_now_ms(), now, sizeof now);
    fprintf(f,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">\n<title>keten audit report");
    if (network[0] != '\0') {
        fprintf(f, " &ndash; ");
        esc(f, network);
    }
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>keten audit report", style);
    if (network[0] != '\0') {
        fprintf(f, ": network ");
        esc(f, network);
    }
    fprintf(f,
        "</h1>\n<p>Made on %s by keten-audit. It shows who shared which category of "
        "signal with whom, when and for which purpose, from the broker's audit log; it "
        "never contains the content of a signal.",
        now);
    if (flt->has_from || flt->has_to) {
        keten_time_iso(flt->has_from ? flt->from_ms : 0, t1, sizeof t1);
        if (flt->has_to) {
            keten_time_iso(flt->to_ms, t2, sizeof t2);
        } else {
            snprintf(t2, sizeof t2, "now");
        }
        fprintf(f, " Period: messages submitted from %s until %s.", t1, t2);
    }
    fprintf(f, "</p>\n");
    verification_html(f, a, v, verified);
    totals_html(f, &tables[0].totals);
    stats_html(f, &tables[0], dirs);
    purpose_html(f, &tables[3], dirs);
    policy_html(f, dirs);
    keten_err e = chart_html(f, &tables[1], dirs);
    if (e == KETEN_OK) {
        e = matrix_html(f, &tables[2], dirs);
    }
    if (e != KETEN_OK) {
        return e;
    }
    refusals_html(f, &tables[0].totals);
    rejects_html(f, &tables[0].totals);
    directory_html(f, dirs);
    fprintf(f,
        "<h2>What the figures rest on</h2>\n<p>A submitted message is backed by its "
        "sender's signature, and a receipt or a refusal by its recipient's signature "
        "(one per receipt batch, which names the message): with the "
        "verification above, these cannot have been made up by the broker. Deliveries, "
        "expiries, rejections, connections and the times of all records are the "
        "broker's claims. Receipts, refusals and expiries are counted in the month the message "
        "was submitted.</p>\n</body>\n</html>\n");
    return KETEN_OK;
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "out", required_argument, NULL, 'o' },
        { "anchor", required_argument, NULL, 'a' },
        { "checkpoint", required_argument, NULL, 'c' },
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = NULL, *out = NULL, *anchor_path = NULL;
    const char *checkpoints[CMD_CHECKPOINTS_MAX];
    size_t n_checkpoints = 0;
    records_filter flt;
    memset(&flt, 0, sizeof flt);
    int c, rc;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'a':
            anchor_path = optarg;
            break;
        case 'c':
            if (n_checkpoints == CMD_CHECKPOINTS_MAX) {
                return keten_cli_usage(CMD, "at most %d --checkpoint files", CMD_CHECKPOINTS_MAX);
            }
            checkpoints[n_checkpoints++] = optarg;
            break;
        case 'f':
            if ((rc = cmd_parse_time(CMD, "--from", optarg, &flt.from_ms)) != KETEN_EXIT_OK) {
                return rc;
            }
            flt.has_from = true;
            break;
        case 't':
            if ((rc = cmd_parse_time(CMD, "--to", optarg, &flt.to_ms)) != KETEN_EXIT_OK) {
                return rc;
            }
            flt.has_to = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
    }
    if (out == NULL) {
        return keten_cli_usage(CMD, "--out FILE is required");
    }
    if (n_checkpoints > 0 && anchor_path == NULL) {
        return keten_cli_usage(CMD, "--checkpoint needs --anchor");
    }
    if (db == NULL) {
        return keten_cli_usage(CMD, "--db BROKER_HOME|AUDIT_DIR is required");
    }
    if ((rc = cmd_check_out_file(out, "report.html")) != KETEN_EXIT_OK) {
        return rc;
    }
    Keten__Anchor *anchor = NULL;
    if (anchor_path != NULL && (rc = cmd_load_anchor(CMD, anchor_path, &anchor)) != KETEN_EXIT_OK) {
        return rc;
    }
    auditdb *a = NULL;
    if ((rc = cmd_open_db(CMD, db, &a)) != KETEN_EXIT_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&anchor);
        return rc;
    }
    verifier_result *v = calloc(1, sizeof *v);
    records_index *idx = records_index_new();
    dirinfo *dirs = NULL;
    stats_table tables[REPORT_TABLES];
    memset(tables, 0, sizeof tables);
    char *page = NULL;
    size_t page_len = 0;
    FILE *mem = NULL;
    keten_err e = KETEN_OK;
    if (v == NULL || idx == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "making the report");
        goto out;
    }
    if (anchor != NULL) {
        verifier_opts vo
            = { .anchor = anchor, .checkpoints = checkpoints, .n_checkpoints = n_checkpoints };
        if ((e = verifier_run(a, &vo, v)) != KETEN_OK) {
            goto out;
        }
        if (!v->ok) {
            char at[VERIFIER_AT_MAX];
            verifier_failure_at(&v->failure, at);
            keten_cli_warn("verification failed%s: %s (the report says so)", at, v->failure.what);
        }
    }
    if ((e = dirinfo_load(a, &dirs)) != KETEN_OK) {
        goto out;
    }
    records_index_set_dirs(idx, dirs);
    stats_keys keys[REPORT_TABLES] = {
        { { STATS_PAIR, STATS_CATEGORY, STATS_MONTH }, 3 },
        { { STATS_MONTH, STATS_PAIR }, 2 },
        { { STATS_PAIR }, 1 },
        { { STATS_PURPOSE, STATS_RULE, STATS_PAIR }, 3 },
    };
    if ((e = stats_collect(a, idx, &flt, keys, tables, REPORT_TABLES)) != KETEN_OK) {
        goto out;
    }
    mem = open_memstream(&page, &page_len);
    if (mem == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "making the report");
        goto out;
    }
    e = write_page(
        mem, a, anchor != NULL ? anchor->network : "", v, anchor != NULL, tables, &flt, dirs);
    if (fclose(mem) != 0 && e == KETEN_OK) {
        e = keten_err_set(KETEN_ERR_NOMEM, "making the report");
    }
    mem = NULL;
    if (e == KETEN_OK) {
        e = keten_file_write(out, page, page_len, 0644, false);
    }
out:
    if (mem != NULL) {
        fclose(mem);
    }
    free(page);
    for (size_t i = 0; i < REPORT_TABLES; i++) {
        stats_table_free(&tables[i]);
    }
    records_index_destroy(&idx);
    dirinfo_destroy(&dirs);
    free(v);
    auditdb_close(&a);
    keten_pb_free((ProtobufCMessage **)(void *)&anchor);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    printf("wrote %s\n", out);
    return KETEN_EXIT_OK;
}
