/* The CHECK macro shared by the host tests: count every check, print each failure with its place. */
#ifndef EDGEMNV2_TEST_CHECK_H
#define EDGEMNV2_TEST_CHECK_H

#include <stdio.h>

static int g_checks, g_failures;

#define CHECK(cond, ...)                                 \
  do {                                                   \
    ++g_checks;                                          \
    if (!(cond)) {                                       \
      ++g_failures;                                      \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
      printf(__VA_ARGS__);                               \
      printf("\n");                                      \
    }                                                    \
  } while (0)

#endif
