/* cmd_send.c - `fleetvault send` (placeholder until its module lands). */
#include <stdio.h>

#include "cli/commands.h"

int fv_cmd_send(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "fleetvault send: not available in this build\n");
    return 1;
}
