/* Tiny test helpers shared by the host tests. */
#ifndef PMLD_TEST_CHECK_H
#define PMLD_TEST_CHECK_H

#include <stdio.h>

extern int g_checks;
extern int g_failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        g_checks++;                                                         \
        if (!(cond)) {                                                      \
            g_failures++;                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

int run_vector_tests(const char *dir);
int run_unit_tests(void);

#endif
