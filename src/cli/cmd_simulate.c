/* cmd_simulate.c - `fleetvault simulate` (placeholder until its module lands). */
#include <stdio.h>

#include "cli/commands.h"

int fv_cmd_simulate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "fleetvault simulate: not available in this build\n");
    return 1;
}
