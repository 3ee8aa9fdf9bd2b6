/* cmd_certs.c - `fleetvault certs` (placeholder until its module lands). */
#include <stdio.h>

#include "cli/commands.h"

int fv_cmd_certs(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "fleetvault certs: not available in this build\n");
    return 1;
}
