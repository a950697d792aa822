/*
 * banned.h: functions kiln's code must not call.
 *
 * Each is either unbounded (strcpy, strcat, sprintf, vsprintf), not
 * re-entrant (strtok, gmtime, localtime, ctime, asctime) or silently wrong
 * on bad input (atoi, atol, atoll). Use the kiln_buf_* helpers, snprintf,
 * strtok_r, gmtime_r and kiln_parse_* instead. Included last by common.h,
 * after the system headers that declare these functions.
 */
#ifndef KILN_BANNED_H
#define KILN_BANNED_H

#define KILN_BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) KILN_BANNED(strcpy)
#undef strcat
#define strcat(x, y) KILN_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) KILN_BANNED(strncpy)
#undef sprintf
#define sprintf(...) KILN_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) KILN_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) KILN_BANNED(strtok)
#undef gmtime
#define gmtime(t) KILN_BANNED(gmtime)
#undef localtime
#define localtime(t) KILN_BANNED(localtime)
#undef ctime
#define ctime(t) KILN_BANNED(ctime)
#undef asctime
#define asctime(t) KILN_BANNED(asctime)
#undef atoi
#define atoi(s) KILN_BANNED(atoi)
#undef atol
#define atol(s) KILN_BANNED(atol)
#undef atoll
#define atoll(s) KILN_BANNED(atoll)

#endif
