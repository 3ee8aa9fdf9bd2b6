/* cmd_inspect.c - `fleetvault inspect` (placeholder until its module lands). */
#include <stdio.h>

#include "cli/commands.h"

int fv_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "fleetvault inspect: not available in this build\n");
    return 1;
}
