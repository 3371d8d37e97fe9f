/*
 * log: the error log and the access log.
 *
 * Callers on any thread format a line and hand it to a bounded in-memory
 * queue; one writer thread per process drains the queues to their files.
 * A worker therefore never waits on disk: when a queue is full the line is
 * dropped and counted (log_dropped()). Lines are written whole, in order
 * per queue.
 *
 * log_open() is called once at start-up before any thread logs; until then
 * lines go to stderr synchronously. log_reopen() (SIGUSR1) and
 * log_set_targets() (reload) are called from the main thread only.
 */
#ifndef TAILCACHE_LOG_H
#define TAILCACHE_LOG_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* The current level; read without locking (an int store is atomic enough). */
extern volatile int log_level;

/*
 * Opens the error and access logs ("stderr", a path, or for the access log
 * "off") and starts the writer thread. Returns 0, or -1 after printing why
 * to stderr.
 */
int log_open(const char *error_path, const char *access_path, enum log_level level);

/* Switches to new targets (reload); returns 0 or -1 keeping the old ones. */
int log_set_targets(const char *error_path, const char *access_path, enum log_level level);

/* Reopens the current files by name (log rotation); returns 0 or -1. */
int log_reopen(void);

/* Flushes the queues and stops the writer thread; later lines go to stderr.
 * Only once no other thread logs any more. */
void log_close(void);

/* Waits (at most timeout_ms) until the writer has written what is queued,
 * without stopping it: for an exit while other threads may still log. */
void log_flush(unsigned timeout_ms);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Queues one access log line (without the newline). */
void log_access(const char *line, size_t len);

/* True when an access log is open (not "off"). */
int log_access_enabled(void);

/* Lines dropped because a queue was full, since start. */
uint64_t log_dropped(void);

/* Formats wall-clock time now as "2026-11-26T02:13:49.123Z" into buf (>= 25 bytes). */
void log_timestamp(char *buf, size_t len);

__attribute__((noreturn, format(printf, 1, 2))) void fatal(const char *fmt, ...);

#define log_err(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_level >= LOG_LEVEL_INFO)                                                           \
            log_msg(LOG_LEVEL_INFO, __VA_ARGS__);                                                  \
    } while (0)
/* Arguments are not evaluated when debug logging is off. */
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_level >= LOG_LEVEL_DEBUG)                                                          \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)
/* log_errno: an error with ": strerror(errno)" appended. */
#define log_errno(fmt, ...) log_msg(LOG_LEVEL_ERROR, fmt ": %s", ##__VA_ARGS__, strerror(errno))

#endif
