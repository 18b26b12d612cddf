/* Host tests of the C reference: the shared JSON vectors, then unit tests.
   Usage: test_pmld VECTORS_DIR   (exit status 0 when every check passes) */
#include <stdio.h>

#include "check.h"

int g_checks = 0;
int g_failures = 0;

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "../vectors";
    int vector_files = run_vector_tests(dir);
    run_unit_tests();
    printf("pmld C reference: %d vector files, %d checks, %d failed\n", vector_files, g_checks,
           g_failures);
    return (g_failures == 0 && vector_files == 5) ? 0 : 1;
}
