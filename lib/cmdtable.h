/*
 * cmdtable.h - the command table and dispatcher of keten's four programs
 * (keten-keys, keten-node, keten-broker, keten-audit): each main() lists its
 * commands once and hands argv to keten_cmdtable_main(), which
 *
 *   - runs keten_cli_start() (program name, the test-hook check) and
 *     keten_init() (libsodium);
 *   - prints the program's help for `--help`, `-h` or `help` (stdout, exit 0)
 *     and for no command at all (stderr, exit 2);
 *   - prints "PROG VERSION" for `--version` or `version` (the project version
 *     of the build, KETEN_VERSION);
 *   - prints a bash completion script for `completion bash` (not listed in
 *     the help; the build installs its output);
 *   - runs the named command with argv[1..] (argv[0] is the command's name);
 *   - rejects any other word with exit 2: "PROG: unknown command 'publsh'
 *     (did you mean 'publish'?)".
 *
 * Ownership: tables are static data. Thread safety: none (main thread).
 */
#ifndef KETEN_CMDTABLE_H
#define KETEN_CMDTABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct keten_cmdtable_command {
    const char *name; /* [a-z-]: the word after the program's name */
    int (*run)(int argc, char **argv); /* argv[0] is name; returns the exit code */
    const char *summary; /* one line for the help */
} keten_cmdtable_command;

typedef struct keten_cmdtable_program {
    const char *name; /* "keten-keys"; static */
    const char *about; /* the help's text before the list of commands */
    const char *footer; /* the help's text after it (NULL: none) */
    const keten_cmdtable_command *commands;
    size_t n_commands;
} keten_cmdtable_program;

/* The project version ("0.1.0") this build was made from. */
const char *keten_cmdtable_version(void);

/* The whole main() of a program: see above. Returns the exit code. */
int keten_cmdtable_main(const keten_cmdtable_program *p, int argc, char **argv);

/* Print the program's help (usage, about, commands, footer) on f. */
void keten_cmdtable_usage(const keten_cmdtable_program *p, FILE *f);

/* Print the bash completion script of the program on f: command names, and
 * each command's long options taken from `PROG COMMAND --help` when asked. */
void keten_cmdtable_completion_bash(const keten_cmdtable_program *p, FILE *f);

/* The name among names[0..n) closest to typed, when within a few typing
 * mistakes (edit distance at most max(2, len/4)) or when typed (3 or more
 * characters) starts it; NULL if none is. */
const char *keten_cmdtable_suggest(const char *typed, const char *const *names, size_t n);

#endif
