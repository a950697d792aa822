/*
 * common.h: included first by every kiln source file.
 *
 * It pulls in the standard headers nearly every file needs and then
 * banned.h, so that a call to an unsafe libc function fails to compile
 * (git's banned.h does the same, for the same reason).
 */
#ifndef KILN_COMMON_H
#define KILN_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KILN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KILN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KILN_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define KILN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KILN_UNUSED __attribute__((unused))
#else
#define KILN_PRINTF(f, a)
#define KILN_UNUSED
#endif

#include "core/banned.h"

#endif
