/*
 * log: bounded queues drained by one writer thread.
 *
 * Each log (error, access) is a byte ring of LOG_QUEUE_BYTES guarded by
 * one mutex. Producers copy a whole line in under the lock, or drop it when
 * it does not fit. The writer thread swaps the ring's contents out under
 * the lock and writes them with the lock released, so a slow disk stalls
 * only the writer. Descriptors change (reopen, retarget) under log_io_mu,
 * which the writer holds while writing, so a line is never written to a
 * closed descriptor; producers never take log_io_mu.
 */
#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_QUEUE_BYTES (1u << 20)
#define LOG_LINE_MAX 4096

struct log_queue {
    char *buf;
    size_t used;
    int fd;     /* -1: off */
    char *path; /* NULL: stderr or off */
};

volatile int log_level = LOG_LEVEL_INFO;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;    /* queues */
static pthread_mutex_t log_io_mu = PTHREAD_MUTEX_INITIALIZER; /* descriptors; before log_mu */
static pthread_cond_t log_cv = PTHREAD_COND_INITIALIZER;
static pthread_t log_thread;
static bool log_running;
static bool log_stopping;
static struct log_queue log_q[2]; /* 0: error, 1: access */
static uint64_t log_ndropped;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void
log_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static int
log_open_target(const char *path, bool allow_off, int *fd, char **saved)
{
    *saved = NULL;
    if (path == NULL || strcmp(path, "stderr") == 0) {
        *fd = STDERR_FILENO;
        return 0;
    }
    if (allow_off && strcmp(path, "off") == 0) {
        *fd = -1;
        return 0;
    }
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (*fd < 0) {
        fprintf(stderr, "tailcache: cannot open log %s: %s\n", path, strerror(errno));
        return -1;
    }
    *saved = strdup(path);
    if (*saved == NULL)
        abort();
    return 0;
}

static void
log_close_target(struct log_queue *q)
{
    if (q->fd > STDERR_FILENO)
        close(q->fd);
    q->fd = -1;
    free(q->path);
    q->path = NULL;
}

static void
log_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void *
log_writer_main(void *arg)
{
    char *out[2];
    size_t n[2];
    for (int i = 0; i < 2; i++) {
        out[i] = malloc(LOG_QUEUE_BYTES);
        if (out[i] == NULL)
            abort();
    }
    for (;;) {
        pthread_mutex_lock(&log_mu);
        while (!log_stopping && log_q[0].used == 0 && log_q[1].used == 0)
            pthread_cond_wait(&log_cv, &log_mu);
        bool stop = log_stopping;
        for (int i = 0; i < 2; i++) {
            n[i] = log_q[i].used;
            memcpy(out[i], log_q[i].buf, n[i]);
            log_q[i].used = 0;
        }
        pthread_mutex_unlock(&log_mu);

        pthread_mutex_lock(&log_io_mu);
        for (int i = 0; i < 2; i++)
            if (n[i] > 0 && log_q[i].fd >= 0)
                log_write_all(log_q[i].fd, out[i], n[i]);
        pthread_mutex_unlock(&log_io_mu);
        if (stop)
            break;
    }
    free(out[0]);
    free(out[1]);
    return NULL;
}

int
log_open(const char *error_path, const char *access_path, enum log_level level)
{
    for (int i = 0; i < 2; i++) {
        log_q[i].buf = malloc(LOG_QUEUE_BYTES);
        if (log_q[i].buf == NULL)
            abort();
        log_q[i].fd = -1;
    }
    if (log_open_target(error_path, false, &log_q[0].fd, &log_q[0].path) < 0 ||
        log_open_target(access_path, true, &log_q[1].fd, &log_q[1].path) < 0)
        return -1;
    log_level = level;
    log_stopping = false;
    if (pthread_create(&log_thread, NULL, log_writer_main, NULL) != 0) {
        fprintf(stderr, "tailcache: cannot start the log writer thread\n");
        return -1;
    }
    log_running = true;
    return 0;
}

int
log_set_targets(const char *error_path, const char *access_path, enum log_level level)
{
    int efd, afd;
    char *epath, *apath;
    if (log_open_target(error_path, false, &efd, &epath) < 0)
        return -1;
    if (log_open_target(access_path, true, &afd, &apath) < 0) {
        if (efd > STDERR_FILENO)
            close(efd);
        free(epath);
        return -1;
    }
    pthread_mutex_lock(&log_io_mu);
    pthread_mutex_lock(&log_mu);
    log_close_target(&log_q[0]);
    log_close_target(&log_q[1]);
    log_q[0].fd = efd;
    log_q[0].path = epath;
    log_q[1].fd = afd;
    log_q[1].path = apath;
    log_level = level;
    pthread_mutex_unlock(&log_mu);
    pthread_mutex_unlock(&log_io_mu);
    return 0;
}

int
log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&log_io_mu);
    pthread_mutex_lock(&log_mu);
    for (int i = 0; i < 2; i++) {
        struct log_queue *q = &log_q[i];
        if (q->path == NULL)
            continue;
        int fd = open(q->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            rc = -1; /* keep writing to the old file */
            continue;
        }
        close(q->fd);
        q->fd = fd;
    }
    pthread_mutex_unlock(&log_mu);
    pthread_mutex_unlock(&log_io_mu);
    return rc;
}

void
log_flush(unsigned timeout_ms)
{
    struct timespec pause = {0, 1000000};
    for (unsigned waited = 0; log_running && waited < timeout_ms; waited++) {
        pthread_mutex_lock(&log_mu);
        bool empty = log_q[0].used == 0 && log_q[1].used == 0;
        if (!empty)
            pthread_cond_signal(&log_cv);
        pthread_mutex_unlock(&log_mu);
        if (empty)
            break;
        nanosleep(&pause, NULL);
    }
    /* The writer may still hold a batch it copied out; give it the I/O lock. */
    pthread_mutex_lock(&log_io_mu);
    pthread_mutex_unlock(&log_io_mu);
}

void
log_close(void)
{
    if (!log_running)
        return;
    pthread_mutex_lock(&log_mu);
    log_stopping = true;
    pthread_cond_signal(&log_cv);
    pthread_mutex_unlock(&log_mu);
    pthread_join(log_thread, NULL);
    log_running = false;
    for (int i = 0; i < 2; i++) {
        log_close_target(&log_q[i]);
        free(log_q[i].buf);
        log_q[i].buf = NULL;
    }
    log_q[0].fd = STDERR_FILENO;
}

static void
log_enqueue(int which, const char *line, size_t len)
{
    if (!log_running) {
        if (which == 0 || log_q[1].fd >= 0)
            log_write_all(STDERR_FILENO, line, len);
        return;
    }
    pthread_mutex_lock(&log_mu);
    struct log_queue *q = &log_q[which];
    if (q->fd < 0) {
        pthread_mutex_unlock(&log_mu);
        return;
    }
    if (q->used + len > LOG_QUEUE_BYTES) {
        log_ndropped++;
    } else {
        bool was_empty = log_q[0].used == 0 && log_q[1].used == 0;
        memcpy(q->buf + q->used, line, len);
        q->used += len;
        if (was_empty)
            pthread_cond_signal(&log_cv);
    }
    pthread_mutex_unlock(&log_mu);
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    if ((int)level > log_level)
        return;
    log_timestamp(line, sizeof(line));
    size_t n = strlen(line);
    n += (size_t)snprintf(line + n, sizeof(line) - n, " [%s] ", log_level_names[level]);
    int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (m < 0)
        return;
    n += (size_t)m;
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2; /* truncated */
    line[n++] = '\n';
    log_enqueue(0, line, n);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void
log_access(const char *line, size_t len)
{
    char buf[LOG_LINE_MAX + 1];
    if (len > LOG_LINE_MAX)
        len = LOG_LINE_MAX;
    memcpy(buf, line, len);
    buf[len] = '\n';
    log_enqueue(1, buf, len + 1);
}

int
log_access_enabled(void)
{
    return !log_running || log_q[1].fd >= 0;
}

uint64_t
log_dropped(void)
{
    pthread_mutex_lock(&log_mu);
    uint64_t n = log_ndropped;
    pthread_mutex_unlock(&log_mu);
    return n;
}

void
fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
    va_end(ap);
    log_close();
    exit(1);
}
