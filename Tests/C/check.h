/* The C tests' one assertion macro. CHECK(cond, fmt, ...) counts the check and, when cond is false, prints the file,
   line, condition, the formatted message and the library's last error on this thread, and counts a failure; the
   test goes on (so one run reports every failure) and its main returns non-zero when `failures` is not 0.
   The counters are atomic: CHECK may be used from several threads at once (their lines may then interleave). */
#ifndef GFNLM_TEST_CHECK_H
#define GFNLM_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>

#include "gfnlm.h"

static atomic_int failures, checks;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        atomic_fetch_add(&checks, 1);                                                          \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s — ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " (last error: %s)\n", gfn_last_error());                          \
            atomic_fetch_add(&failures, 1);                                                    \
        }                                                                                      \
    } while (0)

#endif
