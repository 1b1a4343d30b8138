/*
 * config.h - the configuration files of the daemons (keten-broker run,
 * keten-node run): one table of settings per program, an INI file read with
 * inih, and command-line options that override the file.
 *
 * A table (config_tables.c) lists every setting of one program: its name
 * (the key in the file and the long option on the command line), its type,
 * its default, its bounds, an optional extra validator and a help text. A
 * file holds one section named after the program ([broker], [node]):
 *
 *   [broker]
 *   listen = tcp://0.0.0.0:7250
 *   map-size = 4G
 *
 * Anything the table does not allow is an error naming the file, the line
 * and the key: an unknown key (with a suggestion), a bad or out-of-bounds
 * value, a key given twice, a key outside the section, another section, a
 * line that is not "key = value", "[section]", a comment or blank.
 * Comments are lines starting with '#' or ';'; a value ends before " ;"
 * (inih's inline comment) and may not contain " #". Lines are at most
 * KETEN_CONFIG_LINE_MAX characters. Paths in a file must be absolute.
 *
 * Types and how values are written:
 *   string      any text without control characters (min/max: length)
 *   path        a file or folder name (min/max: length); absolute in a file
 *   uint        decimal digits (min/max: the value)
 *   bool        yes/no, true/false, on/off, 1/0 (any case)
 *   duration-ms milliseconds, or a number with a unit ms, s, min, h, d
 *               ("300000", "5min"); min/max in milliseconds
 *   size-bytes  bytes, or a number with a unit K, M, G, T (or KiB, MiB, GiB,
 *               TiB; powers of 1024): "4G", "512 MiB"; min/max in bytes
 *   endpoint    a ZeroMQ endpoint tcp://HOST:PORT (PORT 1 to 65535, or * for
 *               any free port) or ipc://PATH
 *   enum        one of the table's choices
 *
 * Sources and precedence: each value remembers where it came from
 * (default < file < command line). A value is replaced only by one from the
 * same or a higher source, whatever the order of the calls: a daemon may
 * set its command-line options first (keten_config_set(..., SRC_CLI)) and
 * load the file afterwards, and the file's values for those keys are then
 * checked but not used. keten_config_load() is all or nothing: a file with
 * any error changes nothing.
 *
 * Ownership: keten_config_new() returns an object freed with
 * keten_config_destroy(). Strings returned by the getters belong to the
 * object and stay valid until the value is replaced or the object is
 * destroyed. Tables are static data. The configuration holds no secrets (a
 * passphrase is named by passphrase-file, never written in the file).
 * Thread safety: none; load and read the configuration in the main thread
 * before starting others.
 * Errors: KETEN_ERR_NOT_FOUND (no such file), KETEN_ERR_IO,
 * KETEN_ERR_PERMISSIONS (the file is writable by group or others),
 * KETEN_ERR_TOO_LARGE (over KETEN_CONFIG_FILE_MAX), KETEN_ERR_MALFORMED
 * (syntax), KETEN_ERR_INVALID (keys and values; a required setting not
 * set), KETEN_ERR_NOMEM. Each with a detail line (keten_err_detail()).
 */
#ifndef KETEN_CONFIG_H
#define KETEN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

#define KETEN_CONFIG_FILE_MAX (64u << 10) /* bytes of one configuration file */
#define KETEN_CONFIG_LINE_MAX 197 /* characters of one line (inih's buffer, less 3) */
#define KETEN_CONFIG_VALUE_MAX 4096 /* bytes of a string value (command line) */
#define KETEN_CONFIG_ERRORS_MAX 32 /* errors kept from one file; more are counted */
#define KETEN_CONFIG_ERROR_BYTES 320 /* one error line, NUL included */
#define KETEN_CONFIG_SETTINGS_MAX 64 /* settings in one table */

typedef enum keten_config_type {
    KETEN_CONFIG_STRING,
    KETEN_CONFIG_PATH,
    KETEN_CONFIG_UINT,
    KETEN_CONFIG_BOOL,
    KETEN_CONFIG_DURATION_MS,
    KETEN_CONFIG_SIZE_BYTES,
    KETEN_CONFIG_ENDPOINT,
    KETEN_CONFIG_ENUM,
} keten_config_type;

typedef enum keten_config_source {
    KETEN_CONFIG_SRC_DEFAULT = 0, /* the table's default (or unset) */
    KETEN_CONFIG_SRC_FILE = 1, /* a configuration file */
    KETEN_CONFIG_SRC_CLI = 2, /* a command-line option */
} keten_config_source;

/* Setting flags. */
#define KETEN_CONFIG_REQUIRED 0x1u /* keten_config_check() fails while it is unset */

/* An extra check of a value that already has the right type: return false
 * and write a reason ("port 0 is not 1 to 65535") into why. */
typedef bool (*keten_config_validator)(const char *value, char *why, size_t why_size);

typedef struct keten_config_setting {
    const char *name; /* [a-z0-9-]: the key and the long option (--name) */
    keten_config_type type;
    const char *default_value; /* as it would be written in the file; NULL: unset */
    uint64_t min, max; /* numbers: inclusive bounds; string, path, endpoint: length
                          bounds in bytes (max 0: KETEN_CONFIG_VALUE_MAX) */
    const char *const *choices; /* enum: NULL-terminated list */
    keten_config_validator validate; /* NULL: none */
    unsigned flags; /* KETEN_CONFIG_REQUIRED */
    const char *help; /* one line */
} keten_config_setting;

typedef struct keten_config_table {
    const char *program; /* "keten-broker", for messages */
    const char *section; /* "broker": the file's one section */
    const keten_config_setting *settings;
    size_t n_settings; /* at most KETEN_CONFIG_SETTINGS_MAX */
} keten_config_table;

/* The tables (config_tables.c): every option of `keten-broker run` and of
 * `keten-node run` (except --help and the --config option naming the file). */
extern const keten_config_table keten_config_broker_table;
extern const keten_config_table keten_config_node_table;

typedef struct keten_config keten_config;

/* A configuration holding the table's defaults; NULL when out of memory or
 * when a default does not pass its own setting's checks (a bug in the
 * table: the tests check every table). */
keten_config *keten_config_new(const keten_config_table *table);
void keten_config_destroy(keten_config **cfg_p);

/* Read the file at path (INI, the table's section). On any error nothing of
 * the file is used; the detail line is the first error as
 * "PATH:LINE: what, with which key", followed by "(and N more errors)" when
 * there are several; keten_config_error() lists them all. */
keten_err keten_config_load(keten_config *cfg, const char *path) KETEN_MUST_CHECK;

/* Set one value from src (FILE or CLI) with the checks of the file; the
 * detail of an error starts with "--NAME:" for the command line and "NAME:"
 * otherwise. An unknown name is KETEN_ERR_INVALID. The value is used only
 * if src is at least the current value's source. */
keten_err keten_config_set(keten_config *cfg, const char *name, const char *value,
    keten_config_source src) KETEN_MUST_CHECK;

/* KETEN_ERR_INVALID (detail naming the first one, the file and the option)
 * when a KETEN_CONFIG_REQUIRED setting is still unset. */
keten_err keten_config_check(const keten_config *cfg) KETEN_MUST_CHECK;

/* Getters by name. name must be a setting of the table with a type the
 * getter serves (a programming error otherwise: asserted; NULL, 0, false or
 * SIZE_MAX when asserts are off).
 *   _str:  string, path, endpoint, enum; NULL when unset
 *   _uint: uint, duration-ms, size-bytes (0 when unset)
 *   _bool: bool (false when unset)
 *   _enum: enum: index into choices (SIZE_MAX when unset) */
const char *keten_config_get_str(const keten_config *cfg, const char *name);
uint64_t keten_config_get_uint(const keten_config *cfg, const char *name);
bool keten_config_get_bool(const keten_config *cfg, const char *name);
size_t keten_config_get_enum(const keten_config *cfg, const char *name);

/* Whether the setting has a value (a default counts), and its source. */
bool keten_config_is_set(const keten_config *cfg, const char *name);
keten_config_source keten_config_source_of(const keten_config *cfg, const char *name);

/* The setting called name in table, or NULL. */
const keten_config_setting *keten_config_find(const keten_config_table *table, const char *name);

/* Errors of the last keten_config_load(): how many (all of them, also those
 * past KETEN_CONFIG_ERRORS_MAX) and the i-th kept one ("PATH:LINE: ..."),
 * NULL past the kept ones. Valid until the next load or destroy. */
size_t keten_config_error_count(const keten_config *cfg);
const char *keten_config_error(const keten_config *cfg, size_t i);

/* Write the effective settings as a configuration file, each preceded by
 * a comment with its type and source ("# listen (endpoint) from
 * /etc/keten/broker.conf:12"); unset settings are written commented out.
 * The output loads again when every path in it is absolute. */
keten_err keten_config_print(const keten_config *cfg, FILE *out) KETEN_MUST_CHECK;

/* The name of a type as the documentation writes it ("duration-ms"). */
const char *keten_config_type_name(keten_config_type type);

/* Validators for tables (keten_config_validator):
 *   _host_port: "ADDRESS:PORT" as a TCP listener takes it: an IPv4 address,
 *               [IPv6] or a host name, and a port 0 to 65535, 0 for any free
 *               port ("127.0.0.1:9750")
 *   _connect:   an endpoint a client can connect to: not the wildcard host
 *               or port '*' of a listener */
bool keten_config_valid_host_port(const char *value, char *why, size_t why_size);
bool keten_config_valid_connect(const char *value, char *why, size_t why_size);
/*   _ip_address:  an IPv4 or IPv6 address as numbers
 *   _header_name: an HTTP header name (RFC 9110 token)
 *   _scopes:      read, send, ack, or some of them, separated by commas,
 *                 each at most once */
bool keten_config_valid_ip_address(const char *value, char *why, size_t why_size);
bool keten_config_valid_header_name(const char *value, char *why, size_t why_size);
bool keten_config_valid_scopes(const char *value, char *why, size_t why_size);

#endif
