/*
 * util: small helpers shared by every module: parsing of the units used in
 * the configuration (durations, sizes, socket addresses), the monotonic
 * clock, address formatting, and allocation wrappers for start-up code.
 *
 * Conventions: parsers return 0 on success and -1 on error, and write their
 * output only on success. Nothing here keeps state, so every function may be
 * called from any thread; util_parse_addr() blocks in getaddrinfo() and is
 * therefore for start-up and reload only, never for a worker's loop.
 *
 * The util_x* allocators abort the process when memory runs out: they are
 * for start-up and configuration code, which STYLE.md allows to abort.
 * Request handling must use plain malloc and fail soft.
 */
#ifndef TAILCACHE_UTIL_H
#define TAILCACHE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for "[ipv6]:port" and its NUL, for util_addr_to_string(). */
#define UTIL_ADDRSTRLEN 64

/*
 * An assertion that stays on in release builds (NDEBUG does not remove it):
 * for invariants whose violation must crash rather than corrupt.
 */
#define UTIL_ASSERT(cond) ((cond) ? (void)0 : util_assert_fail(#cond, __FILE__, __LINE__, __func__))

/* Prints the failed assertion to stderr and aborts. */
_Noreturn void util_assert_fail(const char *expr, const char *file, int line, const char *func);

/*
 * Parses a duration: a decimal integer with a unit "ms", "s", "m", "h", "d"
 * (24h) or "y" (365d); a bare integer means seconds ("150ms", "2s", "1m",
 * "30", "1d"). No sign, no fraction, no spaces.
 *
 * util_parse_duration_ms() gives milliseconds; it returns -1 when s is
 * malformed or over UINT_MAX ms (about 49 days: "1y" does not fit).
 * util_parse_duration_s() gives whole seconds, milliseconds rounded down
 * ("1500ms" is 1, "999ms" is 0), for durations that reach years; it returns
 * -1 when s is malformed or over UINT64_MAX ms.
 */
int util_parse_duration_ms(const char *s, unsigned *out_ms);
int util_parse_duration_s(const char *s, int64_t *out_s);

/*
 * Parses a size: a decimal integer with an optional binary suffix "k", "m",
 * "g" or "t" (upper case accepted; 1k = 1024); a bare integer is bytes.
 * Returns -1 when malformed or when the value does not fit in size_t.
 */
int util_parse_size(const char *s, size_t *out);

/* Parses a plain decimal integer (digits only). Returns -1 when malformed
 * or over UINT64_MAX. */
int util_parse_uint(const char *s, uint64_t *out);

/*
 * Parses "HOST:PORT" or "[IPV6]:PORT" and resolves HOST with getaddrinfo()
 * (blocking; the first TCP address returned is kept). PORT must be numeric,
 * 1..65535. On error returns -1 and writes a one-line message (truncated
 * to errlen, always NUL-terminated when errlen > 0) into errbuf, such as
 *   invalid address "1.2.3.4" (expected HOST:PORT)
 *   cannot resolve "nohost:80": Name or service not known
 */
int util_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *errbuf,
                    size_t errlen);

/*
 * Writes sa as "ip:port" (IPv4) or "[ip]:port" (IPv6) into buf, which
 * should have UTIL_ADDRSTRLEN bytes. Returns buf; an unknown family or a
 * short buffer gives "?" (or an empty string when buflen is 1).
 */
const char *util_addr_to_string(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);

/* The monotonic clock (CLOCK_MONOTONIC), in microseconds and in
 * milliseconds: never goes back, meaningless as a date. */
uint64_t util_now_us(void);
uint64_t util_now_ms(void);

/* The wall clock (CLOCK_REALTIME) in microseconds since the epoch: for
 * times compared across processes and nodes (bans, stored-at). */
int64_t util_wall_us(void);

/* Allocation that aborts on failure (start-up code only, see above). */
void *util_xmalloc(size_t n);
void *util_xcalloc(size_t nmemb, size_t size);
void *util_xrealloc(void *p, size_t n);
/* util_xrealloc(p, nmemb * size), aborting when the product overflows. */
void *util_xreallocarray(void *p, size_t nmemb, size_t size);
char *util_xstrdup(const char *s);
/* Copies at most n bytes of s (stopping at a NUL) into a new NUL-terminated string. */
char *util_xstrndup(const char *s, size_t n);

#endif
