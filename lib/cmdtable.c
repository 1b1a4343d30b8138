/* cmdtable.c - the dispatcher of keten's programs (cmdtable.h). */
#include "cmdtable.h"

#include <stdint.h>
#include <string.h>

#include "cli.h"
#include "keten_version.h"
#include "util.h"

/* Longest word looked at for a suggestion (edit distance is quadratic). */
#define SUGGEST_LEN_MAX 64

const char *keten_cmdtable_version(void)
{
    return KETEN_VERSION;
}

const char *keten_cmdtable_suggest(const char *typed, const char *const *names, size_t n)
{
    size_t tl = strlen(typed);
    if (tl == 0 || tl > SUGGEST_LEN_MAX) {
        return NULL;
    }
    size_t limit = tl / 4 > 2 ? tl / 4 : 2;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || strlen(names[i]) > SUGGEST_LEN_MAX) {
            continue;
        }
        size_t d = keten_edit_distance(typed, names[i]);
        bool prefix = tl >= 3 && strncmp(names[i], typed, tl) == 0;
        if ((prefix || d <= limit) && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

void keten_cmdtable_usage(const keten_cmdtable_program *p, FILE *f)
{
    size_t width = 0;
    for (size_t i = 0; i < p->n_commands; i++) {
        size_t l = strlen(p->commands[i].name);
        width = l > width ? l : width;
    }
    fprintf(f, "Usage: %s COMMAND [OPTIONS]\n\n%s\nCommands:\n", p->name, p->about);
    for (size_t i = 0; i < p->n_commands; i++) {
        fprintf(f, "  %-*s  %s\n", (int)width, p->commands[i].name, p->commands[i].summary);
    }
    if (p->footer != NULL) {
        fprintf(f, "\n%s", p->footer);
    }
    fprintf(f,
        "\nRun '%s COMMAND --help' for a command's options; '%s --version' (or\n"
        "'version') prints the version.\n"
        "Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failure.\n",
        p->name, p->name);
}

void keten_cmdtable_completion_bash(const keten_cmdtable_program *p, FILE *f)
{
    /* A shell function name: the program's name with '-' as '_'. */
    char fn[64];
    size_t i = 0;
    for (; p->name[i] != '\0' && i + 1 < sizeof fn; i++) {
        fn[i] = p->name[i] == '-' ? '_' : p->name[i];
    }
    fn[i] = '\0';
    fprintf(f, "# bash completion for %s (made by '%s completion bash')\n", p->name, p->name);
    fprintf(f, "_%s()\n{\n", fn);
    fputs("    local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
          "    local prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
          "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
          "        COMPREPLY=($(compgen -W \"",
        f);
    for (size_t c = 0; c < p->n_commands; c++) {
        fprintf(f, "%s ", p->commands[c].name);
    }
    fputs("version help --help --version\" -- \"$cur\"))\n"
          "        return 0\n"
          "    fi\n"
          "    case \"$prev\" in\n"
          "        --home|--out|--db|--anchor|--directory|--config|--passphrase-file|--*-file|"
          "--signal|--admin|--key)\n"
          "            COMPREPLY=($(compgen -f -- \"$cur\"))\n"
          "            return 0\n"
          "            ;;\n"
          "    esac\n"
          "    if [[ \"$cur\" == -* ]]; then\n",
        f);
    fprintf(f,
        "        local opts\n"
        "        opts=$(\"${COMP_WORDS[0]}\" \"${COMP_WORDS[1]}\" --help 2>/dev/null"
        " | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u)\n"
        "        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
        "        return 0\n"
        "    fi\n"
        "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
        "}\n"
        "complete -F _%s %s\n",
        fn, p->name);
}

static bool is_any(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || (c != NULL && strcmp(s, c) == 0);
}

int keten_cmdtable_main(const keten_cmdtable_program *p, int argc, char **argv)
{
    int rc = keten_cli_start(p->name);
    if (rc != 0) {
        return rc;
    }
    if (argc < 2) {
        keten_cmdtable_usage(p, stderr);
        return KETEN_EXIT_USAGE;
    }
    const char *word = argv[1];
    if (is_any(word, "--help", "-h", "help")) {
        keten_cmdtable_usage(p, stdout);
        return KETEN_EXIT_OK;
    }
    if (is_any(word, "--version", "version", NULL)) {
        printf("%s %s\n", p->name, KETEN_VERSION);
        return KETEN_EXIT_OK;
    }
    if (strcmp(word, "completion") == 0) {
        if (argc != 3 || strcmp(argv[2], "bash") != 0) {
            return keten_cli_usage("completion", "give the shell: %s completion bash", p->name);
        }
        keten_cmdtable_completion_bash(p, stdout);
        return fflush(stdout) == 0 ? KETEN_EXIT_OK : KETEN_EXIT_FAILURE;
    }
    for (size_t i = 0; i < p->n_commands; i++) {
        if (strcmp(word, p->commands[i].name) == 0) {
            keten_err e = keten_init();
            if (e != KETEN_OK) {
                return keten_cli_error(e);
            }
            return p->commands[i].run(argc - 1, argv + 1);
        }
    }
    const char *names[64];
    size_t n = 0;
    for (size_t i = 0; i < p->n_commands && n + 2 < sizeof names / sizeof names[0]; i++) {
        names[n++] = p->commands[i].name;
    }
    names[n++] = "version";
    names[n++] = "help";
    const char *s = keten_cmdtable_suggest(word, names, n);
    if (s != NULL) {
        fprintf(stderr, "%s: unknown command '%s' (did you mean '%s'?)\n", p->name, word, s);
    } else {
        fprintf(stderr, "%s: unknown command '%s'\n", p->name, word);
    }
    fprintf(stderr, "Run '%s --help' for the list.\n", p->name);
    return KETEN_EXIT_USAGE;
}
