/*
 * keten-keys - the administrators' tool (docs/administration.md): the
 * network's trust anchor, enrollment, revocation, the sharing policy and
 * signed directory versions. This file only dispatches to cmd_<verb>().
 */

#include "cli.h"
#include "cmdtable.h"
#include "cmd.h"

static const keten_cmdtable_command commands[] = {
    { "admin-keygen", cmd_admin_keygen, "make one administrator's key (on their own machine)" },
    { "init", cmd_init, "create the network: the anchor network.pub and the ADMIN folder" },
    { "register", cmd_register, "register categories and purposes signals may carry" },
    { "unregister", cmd_unregister, "remove a registered value from the draft (a typo)" },
    { "approve", cmd_approve, "approve a node's request into the next directory" },
    { "revoke", cmd_revoke, "revoke a node's certificate" },
    { "policy", cmd_policy, "edit, list and explain the sharing rules" },
    { "set-admins", cmd_set_admins, "change the administrators and threshold" },
    { "publish", cmd_publish, "produce the next directory version, with a first signature" },
    { "sign", cmd_sign, "add an administrator's signature to a published directory" },
    { "status", cmd_status, "what the next publish changes; how the last version stands" },
    { "partners", cmd_partners, "list the partners: id, role, organisation, serial, state" },
    { "show", cmd_show, "print a directory (or an anchor) and verify it" },
};

static const keten_cmdtable_program program = {
    .name = "keten-keys",
    .about = "The administrators' tool of a keten network.\n",
    .footer = "Each administrator makes a key (admin-keygen) on their own machine; init\n"
              "creates the network from their public keys. Then register, approve, revoke\n"
              "and policy edit the draft of the next directory version in the ADMIN folder,\n"
              "status and partners say what it holds and changes, publish signs it as the\n"
              "next version and sign adds the other administrators' signatures until the\n"
              "threshold is met.\n",
    .commands = commands,
    .n_commands = sizeof commands / sizeof commands[0],
};

int main(int argc, char **argv)
{
    return keten_cmdtable_main(&program, argc, argv);
}
