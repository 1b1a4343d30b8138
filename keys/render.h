/*
 * render.h - how keten-keys prints the parts of a directory (rules,
 * certificates, name lists) as text and as JSON, the same way in every
 * command. JSON constructors return NULL when out of memory (and
 * json_pack() then fails in turn, so a caller checks once, at the end).
 */
#ifndef KETEN_KEYS_RENDER_H
#define KETEN_KEYS_RENDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "adminnames.h"
#include "keten.h"

const char *render_effect(Keten__Effect effect);

/* "rule 1: allow from role:municipality to role:police category woonfraude
 * kind all purpose all" and a newline. */
void render_rule_text(FILE *f, const Keten__PolicyRule *rule);
json_t *render_rule_json(const Keten__PolicyRule *rule);

json_t *render_strings_json(char *const *v, size_t n);

/* Base64 of a key (32 bytes), or "(invalid length)" as a JSON string. */
json_t *render_key_json(const ProtobufCBinaryData *key);

json_t *render_cert_json(const Keten__NodeCert *cert);

/* An administrator's key as {"key", "fingerprint", "name"} ("name" only
 * when names knows it; names may be NULL). */
json_t *render_admin_json(const adminnames *names, const ProtobufCBinaryData *key);

#endif
