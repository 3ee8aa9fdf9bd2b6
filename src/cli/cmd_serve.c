/* cmd_serve.c - `fleetvault serve` (placeholder until its module lands). */
#include <stdio.h>

#include "cli/commands.h"

int fv_cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "fleetvault serve: not available in this build\n");
    return 1;
}
