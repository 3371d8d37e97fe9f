/*
 * demo-origin: a small HTTP origin for tailcache's quick start, scenario
 * tests and benchmarks. Its endpoints behave like a real application (slow
 * pages, validators, cookies, errors, huge bodies) so a cache in front of it
 * has something to do. Run it and GET / for the list.
 *
 * One event_base, one evhttp, no threads: everything here runs on the loop.
 * Nothing sleeps: an artificial delay is an evtimer and the reply is built
 * in its callback.
 *
 * Ownership. evhttp owns every evhttp_request. A reply that goes out later
 * (a delayed reply, or a /stream body) is tracked by a struct inflight that
 * owns its timer and borrows the request. evhttp serves one request per
 * connection at a time, so the connection's close callback slot is free:
 * an inflight registers itself there, and inflight_free() clears it, always
 * before the final reply is handed to evhttp (which may free the connection
 * synchronously). If the client goes away first, evhttp calls the close
 * callback; when it has detached the request (evhttp_request_get_connection()
 * == NULL: EOF or timeout before the reply was finished) the request is ours
 * to free, otherwise the connection frees it right after the callback.
 * Either way the inflight dies in that callback and nothing touches the
 * request again. evhttp does not watch a connection while its request waits
 * for a delayed reply, so a client that left then is only noticed when the
 * reply is written; only streams see the close callback in practice.
 *
 * State is one static struct demo: a demo, single-threaded, one instance.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#define DEMO_DEFAULT_LISTEN "127.0.0.1:8081"
#define DEMO_SERVER_NAME "tailcache-demo-origin"
#define DEMO_PRODUCT_MAX 1000
#define DEMO_PER_PAGE_DEFAULT 20
#define DEMO_PER_PAGE_MAX 100
#define DEMO_PAGE_MAX 1000000
#define DEMO_STREAM_DEFAULT (1024ULL * 1024)
#define DEMO_STREAM_MAX (64ULL * 1024 * 1024 * 1024)
#define DEMO_STREAM_PIECE (64 * 1024)
/* Pieces queued per drain callback: enough to keep a loopback socket busy,
 * few enough that memory stays at a few hundred KiB per stream. */
#define DEMO_STREAM_PIECES_PER_DRAIN 4
#define DEMO_MAX_SINGLE_WRITE (256 * 1024)
#define DEMO_BENCH_DEFAULT 1024
#define DEMO_BENCH_MAX (16 * 1024 * 1024)
#define DEMO_ECHO_MAX_BODY (64 * 1024 * 1024)
#define DEMO_SESSION_MAX 64

/*
 * The endpoint table: stats keys, index lines and request counters all come
 * from here. X(ENUM, "stats key", "index pattern", "index description").
 */
#define DEMO_ENDPOINTS(X)                                                                          \
    X(INDEX, "index", "GET /", "this index")                                                       \
    X(FAST, "fast", "GET /fast", "2 ms, small JSON, Cache-Control: public, max-age=5")             \
    X(SLOW, "slow", "GET /slow", "120-180 ms (uniform), JSON, Cache-Control: public, max-age=30")  \
    X(PRODUCT, "product", "GET /products/{1..1000}",                                               \
      "20-40 ms, JSON product, max-age=60, strong ETag + Last-Modified, "                          \
      "If-None-Match -> 304; PUT/PATCH bump the version (new ETag), DELETE -> 204")                \
    X(PRODUCTS, "products", "GET /products?page=N&per_page=M",                                     \
      "50 ms, JSON array (defaults 1, 20; per_page <= 100), max-age=10")                           \
    X(ME, "me", "GET /me",                                                                         \
      "5 ms, greets the 'session' cookie, sets one if missing; private, no-cache")                 \
    X(FLAKY, "flaky", "GET /flaky",                                                                \
      "1 in 5: 500 JSON error; 1 in 20: 200 after 2 s; else 200 in 5-15 ms, max-age=5")            \
    X(STREAM, "stream", "GET /stream?size=N",                                                      \
      "N bytes (default 1 MiB, max 64 GiB), chunked, 64 KiB pieces with backpressure")             \
    X(ECHO, "echo", "ANY /echo",                                                                   \
      "echoes the request body (application/octet-stream), X-Method and X-Host headers")           \
    X(BENCH, "bench", "GET /bench?size=N[&cache=1]",                                               \
      "N bytes (default 1024, max 16 MiB) at once, no delay, Cache-Control: no-store; "            \
      "cache=1: Cache-Control: public, max-age=3600 instead")                                      \
    X(STATS, "stats", "GET /stats", "JSON counters: requests per endpoint, connections accepted")  \
    X(NOT_FOUND, "not_found", NULL, NULL)

enum demo_endpoint {
#define DEMO_EP_ENUM(e, key, pattern, help) DEMO_EP_##e,
    DEMO_ENDPOINTS(DEMO_EP_ENUM)
#undef DEMO_EP_ENUM
        DEMO_EP_COUNT
};

struct demo_endpoint_info {
    const char *key;
    const char *pattern;
    const char *help;
};

static const struct demo_endpoint_info demo_endpoints[DEMO_EP_COUNT] = {
#define DEMO_EP_INFO(e, key, pattern, help) {key, pattern, help},
    DEMO_ENDPOINTS(DEMO_EP_INFO)
#undef DEMO_EP_INFO
};

struct inflight;
typedef void (*inflight_respond_fn)(struct inflight *inf);

/* A reply that is not sent from the request callback; see the top comment. */
struct inflight {
    TAILQ_ENTRY(inflight) link;
    struct evhttp_request *req; /* borrowed from evhttp */
    struct evhttp_connection *evcon;
    struct event *timer;         /* delayed replies only */
    inflight_respond_fn respond; /* NULL for a stream */
    unsigned delay_ms;
    long arg;               /* endpoint specific: product id, page, flaky mode */
    long arg2;              /* endpoint specific: per_page */
    uint64_t size;          /* /stream: total body bytes */
    uint64_t sent;          /* /stream: bytes handed to evhttp */
    struct evbuffer *piece; /* /stream: reused for each piece */
};

TAILQ_HEAD(inflight_list, inflight);

struct demo {
    struct event_base *base;
    struct evhttp *http;
    bool quiet;
    uint64_t rng;
    time_t started;
    uint64_t requests;
    uint64_t hits[DEMO_EP_COUNT];
    uint64_t connections_accepted;
    uint64_t stream_bytes;
    unsigned product_version[DEMO_PRODUCT_MAX + 1];
    time_t product_mtime[DEMO_PRODUCT_MAX + 1];
    struct inflight_list inflight;
    unsigned inflight_count;
    time_t date_cached_at;
    char date_cached[40];
    char piece[DEMO_STREAM_PIECE];
};

static struct demo demo;

enum flaky_mode {
    FLAKY_OK,
    FLAKY_ERROR,
    FLAKY_SLOW,
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t
rng_next(void)
{
    /* xorshift64*: plenty for jitter and coin flips, never for secrets. */
    uint64_t x = demo.rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    demo.rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static unsigned
rng_between(unsigned lo, unsigned hi)
{
    return lo + (unsigned)(rng_next() % (uint64_t)(hi - lo + 1));
}

static void
random_bytes(unsigned char *out, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(out + got, len - got, GRND_NONBLOCK);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    for (; got < len; got++)
        out[got] = (unsigned char)rng_next();
}

static void
http_date(time_t t, char *out, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    if (strftime(out, len, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0 && len > 0)
        out[0] = '\0';
}

static const char *
method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}

static bool
is_get_or_head(struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

/* Strict unsigned decimal: digits only, no sign, no overflow. */
static bool
parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

/*
 * Looks key up in the request's query string. Returns 1 and sets *out when
 * present and a valid number, 0 when absent (or empty), -1 when malformed.
 */
static int
query_u64(struct evhttp_request *req, const char *key, uint64_t *out)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq params;
    const char *value;
    int rc = 0;

    if (query == NULL)
        return 0;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(query, &params) != 0) {
        evhttp_clear_headers(&params);
        return -1;
    }
    value = evhttp_find_header(&params, key);
    if (value != NULL && *value != '\0')
        rc = parse_u64(value, out) ? 1 : -1;
    evhttp_clear_headers(&params);
    return rc;
}

static void
json_add_string(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            evbuffer_add_printf(b, "\\u%04x", c);
        else
            evbuffer_add(b, s, 1);
    }
    evbuffer_add(b, "\"", 1);
}

/* ---- replies ---------------------------------------------------------- */

static const char *
cached_http_date(void)
{
    time_t now = time(NULL);

    if (now != demo.date_cached_at) {
        http_date(now, demo.date_cached, sizeof(demo.date_cached));
        demo.date_cached_at = now;
    }
    return demo.date_cached;
}

/*
 * Headers every reply carries. Date is set here rather than left to evhttp:
 * libevent 2.1 only adds it to HTTP/1.1 replies.
 */
static void
reply_add_common(struct evhttp_request *req, unsigned delay_ms, const char *content_type,
                 const char *cache_control)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char ms[16];

    evhttp_add_header(h, "Date", cached_http_date());
    evhttp_add_header(h, "Server", DEMO_SERVER_NAME);
    snprintf(ms, sizeof(ms), "%u", delay_ms);
    evhttp_add_header(h, "X-Origin-Time-Ms", ms);
    if (content_type != NULL)
        evhttp_add_header(h, "Content-Type", content_type);
    if (cache_control != NULL)
        evhttp_add_header(h, "Cache-Control", cache_control);
}

/*
 * One access-log line. evcon may be NULL (then req's connection is used,
 * if it still has one); code 0 means no reply went out.
 */
static void
log_request(struct evhttp_connection *evcon, struct evhttp_request *req, int code, uint64_t bytes,
            unsigned delay_ms, const char *note)
{
    char *peer = NULL;
    ev_uint16_t port = 0;
    char status[12];

    if (demo.quiet)
        return;
    if (evcon == NULL)
        evcon = evhttp_request_get_connection(req);
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &peer, &port);
    if (code > 0)
        snprintf(status, sizeof(status), "%d", code);
    else
        snprintf(status, sizeof(status), "-");
    fprintf(stderr, "demo-origin: %s:%u %s %s %s %" PRIu64 "B %ums%s%s\n",
            peer != NULL ? peer : "-", (unsigned)port, method_name(evhttp_request_get_command(req)),
            evhttp_request_get_uri(req), status, bytes, delay_ms, note != NULL ? " " : "",
            note != NULL ? note : "");
}

/* Sends a complete reply; takes the body's contents (body may be NULL). */
static void
reply_send(struct evhttp_request *req, int code, struct evbuffer *body, unsigned delay_ms)
{
    log_request(NULL, req, code, body != NULL ? evbuffer_get_length(body) : 0, delay_ms, NULL);
    evhttp_send_reply(req, code, NULL, body);
}

/* A JSON reply {"error": msg, "path": ...}, sent at once. */
static void
reply_json_error(struct evhttp_request *req, int code, const char *msg, unsigned delay_ms)
{
    struct evbuffer *body = evbuffer_new();

    reply_add_common(req, delay_ms, "application/json", "no-store");
    if (body != NULL) {
        evbuffer_add_printf(body, "{\"status\":%d,\"error\":", code);
        json_add_string(body, msg);
        evbuffer_add_printf(body, ",\"path\":");
        json_add_string(body, evhttp_request_get_uri(req));
        evbuffer_add_printf(body, "}\n");
    }
    reply_send(req, code, body, delay_ms);
    if (body != NULL)
        evbuffer_free(body);
}

static void
reply_method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_json_error(req, 405, "method not allowed", 0);
}

/* ---- inflight replies ------------------------------------------------- */

static void
inflight_free(struct inflight **infp)
{
    struct inflight *inf = *infp;

    if (inf == NULL)
        return;
    *infp = NULL;
    /* Unhook first: evhttp may free the connection as soon as it has the reply. */
    evhttp_connection_set_closecb(inf->evcon, NULL, NULL);
    TAILQ_REMOVE(&demo.inflight, inf, link);
    demo.inflight_count--;
    if (inf->timer != NULL)
        event_free(inf->timer);
    if (inf->piece != NULL)
        evbuffer_free(inf->piece);
    free(inf);
}

/* The connection is going away before our reply was finished. */
static void
inflight_on_close(struct evhttp_connection *evcon, void *arg)
{
    struct inflight *inf = arg;
    struct evhttp_request *req = inf->req;

    log_request(evcon, req, 0, inf->sent, inf->delay_ms,
                inf->respond == NULL ? "client gone mid-stream" : "client gone before reply");
    /* Detached means evhttp has let go of it: nobody else will free it. */
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
    inflight_free(&inf);
}

/*
 * Tracks req until its reply is finished. Returns a new inflight linked into
 * demo.inflight, or NULL (nothing allocated, req untouched) on failure.
 */
static struct inflight *
inflight_new(struct evhttp_request *req)
{
    struct inflight *inf = calloc(1, sizeof(*inf));

    if (inf == NULL)
        return NULL;
    inf->req = req;
    inf->evcon = evhttp_request_get_connection(req);
    TAILQ_INSERT_TAIL(&demo.inflight, inf, link);
    demo.inflight_count++;
    evhttp_connection_set_closecb(inf->evcon, inflight_on_close, inf);
    return inf;
}

/* Hands the final reply to evhttp and frees inf; takes body's contents. */
static void
inflight_reply(struct inflight *inf, int code, struct evbuffer *body)
{
    struct evhttp_request *req = inf->req;
    unsigned delay_ms = inf->delay_ms;

    inflight_free(&inf);
    reply_send(req, code, body, delay_ms);
}

static void
inflight_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct inflight *inf = arg;

    inf->respond(inf);
}

/*
 * Answers req from respond() after delay_ms. On allocation failure answers
 * 503 at once. arg/arg2 are stored for respond().
 */
static void
reply_later(struct evhttp_request *req, unsigned delay_ms, inflight_respond_fn respond, long arg,
            long arg2)
{
    struct inflight *inf = inflight_new(req);
    struct timeval tv;

    if (inf == NULL)
        goto fail;
    inf->respond = respond;
    inf->delay_ms = delay_ms;
    inf->arg = arg;
    inf->arg2 = arg2;
    inf->timer = evtimer_new(demo.base, inflight_on_timer, inf);
    if (inf->timer == NULL)
        goto fail;
    tv.tv_sec = delay_ms / 1000;
    tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
    if (evtimer_add(inf->timer, &tv) != 0)
        goto fail;
    return;

fail:
    inflight_free(&inf);
    reply_json_error(req, 503, "out of memory", 0);
}

/* ---- endpoints -------------------------------------------------------- */

static void
respond_index(struct evhttp_request *req)
{
    struct evbuffer *body = evbuffer_new();
    int i;

    reply_add_common(req, 0, "text/plain; charset=utf-8", "public, max-age=60");
    if (body != NULL) {
        evbuffer_add_printf(body, "tailcache demo origin\n\nEndpoints:\n");
        for (i = 0; i < DEMO_EP_COUNT; i++) {
            if (demo_endpoints[i].pattern != NULL)
                evbuffer_add_printf(body, "  %-34s %s\n", demo_endpoints[i].pattern,
                                    demo_endpoints[i].help);
        }
        evbuffer_add_printf(body, "\nEvery reply carries Date, Server: " DEMO_SERVER_NAME
                                  " and X-Origin-Time-Ms (the artificial delay).\n");
    }
    reply_send(req, 200, body, 0);
    if (body != NULL)
        evbuffer_free(body);
}

static void
respond_simple_json(struct inflight *inf, const char *endpoint, const char *cache_control)
{
    struct evbuffer *body = evbuffer_new();

    reply_add_common(inf->req, inf->delay_ms, "application/json", cache_control);
    if (body != NULL)
        evbuffer_add_printf(body,
                            "{\"endpoint\":\"%s\",\"delay_ms\":%u,\"generated_at\":%lld,"
                            "\"nonce\":\"%016" PRIx64 "\"}\n",
                            endpoint, inf->delay_ms, (long long)time(NULL), rng_next());
    inflight_reply(inf, 200, body);
    if (body != NULL)
        evbuffer_free(body);
}

static void
respond_fast(struct inflight *inf)
{
    respond_simple_json(inf, "fast", "public, max-age=5");
}

static void
respond_slow(struct inflight *inf)
{
    respond_simple_json(inf, "slow", "public, max-age=30");
}

static const char *const product_adjectives[] = {
    "Sturdy", "Elegant", "Compact", "Rustic", "Modern", "Vintage", "Smart", "Cozy",
    "Sleek",  "Classic", "Handy",   "Bold",   "Quiet",  "Bright",  "Tiny",  "Grand",
};
static const char *const product_nouns[] = {
    "Lamp",  "Chair", "Kettle", "Backpack", "Clock",  "Mug",     "Notebook", "Blanket",
    "Stool", "Shelf", "Teapot", "Umbrella", "Wallet", "Speaker", "Planter",  "Candle",
};

static unsigned
product_price_cents(long id)
{
    return 499 + (unsigned)((id * 7919 + 13) % 49500);
}

static void
product_add_json(struct evbuffer *b, long id)
{
    unsigned cents = product_price_cents(id);

    evbuffer_add_printf(b,
                        "{\"id\":%ld,\"name\":\"%s %s #%ld\",\"price\":%u.%02u,"
                        "\"currency\":\"EUR\",\"in_stock\":%s,\"version\":%u}",
                        id, product_adjectives[id % 16], product_nouns[(id / 16) % 16], id,
                        cents / 100, cents % 100, (id % 7) != 0 ? "true" : "false",
                        demo.product_version[id]);
}

static void
product_etag(long id, char *out, size_t len)
{
    snprintf(out, len, "\"p%ld-v%u\"", id, demo.product_version[id]);
}

/*
 * True when an If-None-Match value matches etag: "*" or any listed tag,
 * compared weakly (a W/ prefix is ignored), as RFC 9110 says for GET.
 */
static bool
etag_list_matches(const char *list, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = list;

    while (*p != '\0') {
        const char *end;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p != '"') {
            p += strcspn(p, ",");
            continue;
        }
        end = strchr(p + 1, '"');
        if (end == NULL)
            return false;
        if ((size_t)(end + 1 - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = end + 1;
    }
    return false;
}

static void
product_add_validators(struct evhttp_request *req, long id, const char *etag)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char date[40];

    http_date(demo.product_mtime[id], date, sizeof(date));
    evhttp_add_header(h, "ETag", etag);
    evhttp_add_header(h, "Last-Modified", date);
}

static void
respond_product(struct inflight *inf)
{
    struct evhttp_request *req = inf->req;
    long id = inf->arg;
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
    struct evbuffer *body;
    char etag[48];

    product_etag(id, etag, sizeof(etag));
    reply_add_common(req, inf->delay_ms, "application/json", "public, max-age=60");
    product_add_validators(req, id, etag);
    if (inm != NULL && etag_list_matches(inm, etag)) {
        evhttp_remove_header(evhttp_request_get_output_headers(req), "Content-Type");
        inflight_reply(inf, 304, NULL);
        return;
    }
    body = evbuffer_new();
    if (body != NULL) {
        product_add_json(body, id);
        evbuffer_add(body, "\n", 1);
    }
    inflight_reply(inf, 200, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* PUT/PATCH: a new version of the product, so a new ETag. Answered at once. */
static void
product_update(struct evhttp_request *req, long id)
{
    struct evbuffer *body = evbuffer_new();
    char etag[48];

    demo.product_version[id]++;
    /* Two updates within a second share Last-Modified; the ETag tells them apart. */
    demo.product_mtime[id] = time(NULL);
    product_etag(id, etag, sizeof(etag));
    reply_add_common(req, 0, "application/json", "no-store");
    product_add_validators(req, id, etag);
    if (body != NULL) {
        evbuffer_add_printf(body, "{\"updated\":true,\"product\":");
        product_add_json(body, id);
        evbuffer_add_printf(body, "}\n");
    }
    reply_send(req, 200, body, 0);
    if (body != NULL)
        evbuffer_free(body);
}

/* "/products/N" with N a canonical decimal in 1..1000; returns N or -1. */
static long
product_id_from_path(const char *path)
{
    const char *digits = path + strlen("/products/");
    uint64_t id;

    if (*digits == '0' || !parse_u64(digits, &id) || id < 1 || id > DEMO_PRODUCT_MAX)
        return -1;
    return (long)id;
}

static void
handle_product(struct evhttp_request *req, const char *path)
{
    long id = product_id_from_path(path);

    if (id < 0) {
        reply_json_error(req, 404, "no such product", 0);
        return;
    }
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
        reply_later(req, rng_between(20, 40), respond_product, id, 0);
        return;
    case EVHTTP_REQ_PUT:
    case EVHTTP_REQ_PATCH:
        product_update(req, id);
        return;
    case EVHTTP_REQ_DELETE:
        reply_add_common(req, 0, NULL, "no-store");
        reply_send(req, 204, NULL, 0);
        return;
    default:
        reply_method_not_allowed(req, "GET, HEAD, PUT, PATCH, DELETE");
        return;
    }
}

static void
respond_products(struct inflight *inf)
{
    struct evhttp_request *req = inf->req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();
    long page = inf->arg, per_page = inf->arg2;
    long first = (page - 1) * per_page + 1;
    long id;
    char n[24];

    reply_add_common(req, inf->delay_ms, "application/json", "public, max-age=10");
    snprintf(n, sizeof(n), "%d", DEMO_PRODUCT_MAX);
    evhttp_add_header(h, "X-Total-Count", n);
    snprintf(n, sizeof(n), "%ld", page);
    evhttp_add_header(h, "X-Page", n);
    snprintf(n, sizeof(n), "%ld", per_page);
    evhttp_add_header(h, "X-Per-Page", n);
    if (body != NULL) {
        evbuffer_add(body, "[", 1);
        for (id = first; id < first + per_page && id <= DEMO_PRODUCT_MAX; id++) {
            if (id != first)
                evbuffer_add(body, ",", 1);
            product_add_json(body, id);
        }
        evbuffer_add(body, "]\n", 2);
    }
    inflight_reply(inf, 200, body);
    if (body != NULL)
        evbuffer_free(body);
}

static void
handle_products(struct evhttp_request *req)
{
    uint64_t page = 1, per_page = DEMO_PER_PAGE_DEFAULT;

    if (query_u64(req, "page", &page) < 0 || query_u64(req, "per_page", &per_page) < 0) {
        reply_json_error(req, 400, "page and per_page must be positive integers", 0);
        return;
    }
    /* Out-of-range values are clamped, as list APIs tend to do. */
    if (page < 1)
        page = 1;
    if (page > DEMO_PAGE_MAX)
        page = DEMO_PAGE_MAX;
    if (per_page < 1)
        per_page = 1;
    if (per_page > DEMO_PER_PAGE_MAX)
        per_page = DEMO_PER_PAGE_MAX;
    reply_later(req, 50, respond_products, (long)page, (long)per_page);
}

/*
 * Copies a valid session id (1..64 hex digits) from the Cookie header into
 * out. Returns false when there is none.
 */
static bool
session_from_cookie(struct evhttp_request *req, char *out, size_t len)
{
    const char *cookie = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    const char *p = cookie;

    while (p != NULL && *p != '\0') {
        size_t vlen;

        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        if (strncmp(p, "session=", 8) != 0) {
            p = strchr(p, ';');
            continue;
        }
        p += 8;
        vlen = strspn(p, "0123456789abcdefABCDEF");
        if (vlen == 0 || vlen > DEMO_SESSION_MAX || vlen >= len ||
            (p[vlen] != '\0' && p[vlen] != ';' && p[vlen] != ' '))
            return false;
        memcpy(out, p, vlen);
        out[vlen] = '\0';
        return true;
    }
    return false;
}

static void
respond_me(struct inflight *inf)
{
    struct evhttp_request *req = inf->req;
    struct evbuffer *body = evbuffer_new();
    char session[DEMO_SESSION_MAX + 1];
    bool is_new = !session_from_cookie(req, session, sizeof(session));

    reply_add_common(req, inf->delay_ms, "application/json", "private, no-cache");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Vary", "Cookie");
    if (is_new) {
        unsigned char raw[16];
        char cookie[96];
        size_t i;

        random_bytes(raw, sizeof(raw));
        for (i = 0; i < sizeof(raw); i++)
            snprintf(session + 2 * i, 3, "%02x", raw[i]);
        snprintf(cookie, sizeof(cookie), "session=%s; Path=/; HttpOnly", session);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", cookie);
    }
    if (body != NULL)
        evbuffer_add_printf(body,
                            "{\"session\":\"%s\",\"new_visitor\":%s,"
                            "\"greeting\":\"%s, visitor %s!\"}\n",
                            session, is_new ? "true" : "false", is_new ? "Welcome" : "Welcome back",
                            session);
    inflight_reply(inf, 200, body);
    if (body != NULL)
        evbuffer_free(body);
}

static void
respond_flaky(struct inflight *inf)
{
    struct evbuffer *body;

    if (inf->arg != FLAKY_ERROR) {
        respond_simple_json(inf, "flaky", "public, max-age=5");
        return;
    }
    body = evbuffer_new();
    reply_add_common(inf->req, inf->delay_ms, "application/json", "no-store");
    if (body != NULL)
        evbuffer_add_printf(body, "{\"status\":500,\"error\":\"flaky backend failed "
                                  "(this happens about 1 in 5 requests)\"}\n");
    inflight_reply(inf, 500, body);
    if (body != NULL)
        evbuffer_free(body);
}

static void
handle_flaky(struct evhttp_request *req)
{
    unsigned roll = (unsigned)(rng_next() % 20);

    if (roll < 4)
        reply_later(req, rng_between(5, 15), respond_flaky, FLAKY_ERROR, 0);
    else if (roll == 4)
        reply_later(req, 2000, respond_flaky, FLAKY_SLOW, 0);
    else
        reply_later(req, rng_between(5, 15), respond_flaky, FLAKY_OK, 0);
}

static void stream_pump(struct inflight *inf);

/* The connection's output drained: room for the next pieces. */
static void
stream_on_drained(struct evhttp_connection *evcon, void *arg)
{
    stream_pump(arg);
}

static void
stream_pump(struct inflight *inf)
{
    struct evhttp_request *req = inf->req;
    int i;

    for (i = 0; i < DEMO_STREAM_PIECES_PER_DRAIN && inf->sent < inf->size; i++) {
        uint64_t left = inf->size - inf->sent;
        size_t n = left < DEMO_STREAM_PIECE ? (size_t)left : DEMO_STREAM_PIECE;

        /* By reference: the pattern is static, nothing is copied or freed. */
        if (evbuffer_add_reference(inf->piece, demo.piece, n, NULL, NULL) != 0) {
            /* Out of memory: end the body short rather than stall. */
            inf->size = inf->sent;
            break;
        }
        evhttp_send_reply_chunk_with_cb(req, inf->piece, stream_on_drained, inf);
        inf->sent += n;
        demo.stream_bytes += n;
    }
    if (inf->sent < inf->size)
        return;
    log_request(NULL, req, 200, inf->sent, 0, "stream done");
    inflight_free(&inf);
    evhttp_send_reply_end(req);
}

static void
handle_stream(struct evhttp_request *req)
{
    uint64_t size = DEMO_STREAM_DEFAULT;
    struct inflight *inf;
    char n[24];

    if (query_u64(req, "size", &size) < 0 || size > DEMO_STREAM_MAX) {
        reply_json_error(req, 400, "size must be an integer in 0..68719476736", 0);
        return;
    }
    reply_add_common(req, 0, "application/octet-stream", "public, max-age=60");
    snprintf(n, sizeof(n), "%" PRIu64, size);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Stream-Size", n);
    /* evhttp drops chunks of a HEAD reply without calling their callback,
     * so a HEAD would stall the pump: answer it with headers only. */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        reply_send(req, 200, NULL, 0);
        return;
    }
    inf = inflight_new(req);
    if (inf == NULL || (inf->piece = evbuffer_new()) == NULL) {
        inflight_free(&inf);
        evhttp_clear_headers(evhttp_request_get_output_headers(req));
        reply_json_error(req, 503, "out of memory", 0);
        return;
    }
    inf->size = size;
    evhttp_send_reply_start(req, 200, NULL);
    stream_pump(inf);
}

static void
handle_echo(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");

    reply_add_common(req, 0, "application/octet-stream", "no-store");
    evhttp_add_header(h, "X-Method", method_name(evhttp_request_get_command(req)));
    evhttp_add_header(h, "X-Host", host != NULL ? host : "");
    /* evhttp moves the input buffer's chains into the reply: no copy. */
    reply_send(req, 200, evhttp_request_get_input_buffer(req), 0);
}

static void
handle_bench(struct evhttp_request *req)
{
    uint64_t size = DEMO_BENCH_DEFAULT;
    uint64_t cache = 0;
    struct evbuffer *body;
    uint64_t left;

    if (query_u64(req, "size", &size) < 0 || size > DEMO_BENCH_MAX) {
        reply_json_error(req, 400, "size must be an integer in 0..16777216", 0);
        return;
    }
    if (query_u64(req, "cache", &cache) < 0 || cache > 1) {
        reply_json_error(req, 400, "cache must be 0 or 1", 0);
        return;
    }
    body = evbuffer_new();
    if (body == NULL) {
        reply_json_error(req, 503, "out of memory", 0);
        return;
    }
    for (left = size; left > 0;) {
        size_t n = left < DEMO_STREAM_PIECE ? (size_t)left : DEMO_STREAM_PIECE;
        if (evbuffer_add_reference(body, demo.piece, n, NULL, NULL) != 0)
            break;
        left -= n;
    }
    reply_add_common(req, 0, "application/octet-stream",
                     cache != 0 ? "public, max-age=3600" : "no-store");
    reply_send(req, 200, body, 0);
    evbuffer_free(body);
}

static void
handle_stats(struct evhttp_request *req)
{
    struct evbuffer *body = evbuffer_new();
    int i;

    reply_add_common(req, 0, "application/json", "no-store");
    if (body != NULL) {
        evbuffer_add_printf(body,
                            "{\"uptime_s\":%lld,\"requests_total\":%" PRIu64
                            ",\"connections_accepted\":%" PRIu64 ",\"inflight\":%u"
                            ",\"stream_bytes\":%" PRIu64 ",\"endpoints\":{",
                            (long long)(time(NULL) - demo.started), demo.requests,
                            demo.connections_accepted, demo.inflight_count, demo.stream_bytes);
        for (i = 0; i < DEMO_EP_COUNT; i++)
            evbuffer_add_printf(body, "%s\"%s\":%" PRIu64, i != 0 ? "," : "", demo_endpoints[i].key,
                                demo.hits[i]);
        evbuffer_add_printf(body, "}}\n");
    }
    reply_send(req, 200, body, 0);
    if (body != NULL)
        evbuffer_free(body);
}

/* ---- dispatch --------------------------------------------------------- */

static enum demo_endpoint
route(const char *path)
{
    static const struct {
        const char *path;
        enum demo_endpoint ep;
    } exact[] = {
        {"/", DEMO_EP_INDEX},        {"/fast", DEMO_EP_FAST},
        {"/slow", DEMO_EP_SLOW},     {"/products", DEMO_EP_PRODUCTS},
        {"/me", DEMO_EP_ME},         {"/flaky", DEMO_EP_FLAKY},
        {"/stream", DEMO_EP_STREAM}, {"/echo", DEMO_EP_ECHO},
        {"/bench", DEMO_EP_BENCH},   {"/stats", DEMO_EP_STATS},
    };
    size_t i;

    for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        if (strcmp(path, exact[i].path) == 0)
            return exact[i].ep;
    }
    if (strncmp(path, "/products/", strlen("/products/")) == 0)
        return DEMO_EP_PRODUCT;
    return DEMO_EP_NOT_FOUND;
}

static void
demo_on_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum demo_endpoint ep;

    if (path == NULL || *path == '\0')
        path = "/";
    ep = route(path);
    demo.requests++;
    demo.hits[ep]++;

    switch (ep) {
    case DEMO_EP_PRODUCT:
        handle_product(req, path);
        return;
    case DEMO_EP_ECHO:
        handle_echo(req);
        return;
    case DEMO_EP_NOT_FOUND:
        reply_json_error(req, 404, "not found", 0);
        return;
    default:
        break;
    }
    if (!is_get_or_head(req)) {
        reply_method_not_allowed(req, "GET, HEAD");
        return;
    }
    switch (ep) {
    case DEMO_EP_INDEX:
        respond_index(req);
        break;
    case DEMO_EP_FAST:
        reply_later(req, 2, respond_fast, 0, 0);
        break;
    case DEMO_EP_SLOW:
        reply_later(req, rng_between(120, 180), respond_slow, 0, 0);
        break;
    case DEMO_EP_PRODUCTS:
        handle_products(req);
        break;
    case DEMO_EP_ME:
        reply_later(req, 5, respond_me, 0, 0);
        break;
    case DEMO_EP_FLAKY:
        handle_flaky(req);
        break;
    case DEMO_EP_STREAM:
        handle_stream(req);
        break;
    case DEMO_EP_BENCH:
        handle_bench(req);
        break;
    case DEMO_EP_STATS:
        handle_stats(req);
        break;
    default:
        reply_json_error(req, 500, "unrouted endpoint", 0);
        break;
    }
}

/* Called by evhttp once per accepted connection: the only accept hook it has. */
static struct bufferevent *
demo_on_accept(struct event_base *base, void *arg)
{
    struct bufferevent *bev;

    demo.connections_accepted++;
    /* evhttp sets the fd itself; returning NULL would make it create one. */
    bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    /* The 16 KiB default turns a 1 MiB piece of /stream into 64 writes,
     * one loop iteration each. */
    if (bev != NULL)
        bufferevent_set_max_single_write(bev, DEMO_MAX_SINGLE_WRITE);
    return bev;
}

static void
demo_on_signal(evutil_socket_t sig, short what, void *arg)
{
    if (!demo.quiet)
        fprintf(stderr, "demo-origin: signal %d, shutting down\n", (int)sig);
    event_base_loopbreak(demo.base);
}

/* ---- start-up --------------------------------------------------------- */

static void
usage(FILE *out)
{
    fprintf(out, "usage: demo-origin [-q] [-l ADDR:PORT]\n"
                 "  -l ADDR:PORT  listen address (default " DEMO_DEFAULT_LISTEN
                 "; [::1]:PORT for IPv6)\n"
                 "  -q            quiet: no per-request log lines on stderr\n");
}

/* Splits "host:port" or "[v6]:port" into host (no brackets) and port. */
static int
parse_listen(const char *spec, char *host, size_t host_len, ev_uint16_t *port)
{
    const char *colon;
    const char *h = spec;
    size_t hlen;
    uint64_t p;

    if (*spec == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = spec + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - spec);
    }
    if (hlen == 0 || hlen >= host_len || !parse_u64(colon + 1, &p) || p > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (ev_uint16_t)p;
    return 0;
}

static void
demo_init_state(void)
{
    unsigned char seed[8];
    size_t i;
    long id;

    TAILQ_INIT(&demo.inflight);
    demo.started = time(NULL);
    demo.rng = (uint64_t)demo.started ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    random_bytes(seed, sizeof(seed));
    for (i = 0; i < sizeof(seed); i++)
        demo.rng ^= (uint64_t)seed[i] << (8 * i);
    if (demo.rng == 0)
        demo.rng = 1;
    for (id = 1; id <= DEMO_PRODUCT_MAX; id++) {
        demo.product_version[id] = 1;
        /* Spread over the last days so Last-Modified differs per product. */
        demo.product_mtime[id] = demo.started - 86400 - id * 97;
    }
    for (i = 0; i < sizeof(demo.piece); i++)
        demo.piece[i] = (i % 64) == 63 ? '\n' : "0123456789abcdef"[i % 16];
}

int
main(int argc, char **argv)
{
    const char *listen_spec = DEMO_DEFAULT_LISTEN;
    struct evhttp_bound_socket *bound;
    struct event *sigint_ev = NULL, *sigterm_ev = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char host[256], addr[256];
    ev_uint16_t port;
    int opt, one, rc = 1;

    while ((opt = getopt(argc, argv, "l:qh")) != -1) {
        switch (opt) {
        case 'l':
            listen_spec = optarg;
            break;
        case 'q':
            demo.quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || parse_listen(listen_spec, host, sizeof(host), &port) != 0) {
        usage(stderr);
        return 2;
    }
    /* A client that hangs up mid-reply must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    demo_init_state();

    demo.base = event_base_new();
    if (demo.base == NULL) {
        fprintf(stderr, "demo-origin: event_base_new failed\n");
        goto out;
    }
    demo.http = evhttp_new(demo.base);
    if (demo.http == NULL) {
        fprintf(stderr, "demo-origin: evhttp_new failed\n");
        goto out;
    }
    /* The default set lacks PATCH, OPTIONS, TRACE and CONNECT; /echo takes any. */
    evhttp_set_allowed_methods(demo.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                              EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(demo.http, DEMO_ECHO_MAX_BODY);
    evhttp_set_gencb(demo.http, demo_on_request, NULL);
    evhttp_set_bevcb(demo.http, demo_on_accept, NULL);

    bound = evhttp_bind_socket_with_handle(demo.http, host, port);
    if (bound == NULL) {
        fprintf(stderr, "demo-origin: cannot listen on %s: %s\n", listen_spec, strerror(errno));
        goto out;
    }
    /*
     * evhttp never sets TCP_NODELAY. Without it, a reply larger than one
     * write (bufferevents write at most 16 KiB at a time) ends in a short
     * segment that Nagle holds until the client's delayed ACK: 40 ms per
     * response. Linux copies the option from the listener to accepted
     * sockets, so setting it once here covers every connection.
     */
    one = 1;
    if (setsockopt(evhttp_bound_socket_get_fd(bound), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof(one)) != 0)
        fprintf(stderr, "demo-origin: TCP_NODELAY: %s\n", strerror(errno));
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sslen) == 0) {
        const void *a = ss.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
        if (inet_ntop(ss.ss_family, a, addr, sizeof(addr)) == NULL)
            snprintf(addr, sizeof(addr), "%s", host);
    } else {
        snprintf(addr, sizeof(addr), "%s", host);
    }

    sigint_ev = evsignal_new(demo.base, SIGINT, demo_on_signal, NULL);
    sigterm_ev = evsignal_new(demo.base, SIGTERM, demo_on_signal, NULL);
    if (sigint_ev == NULL || sigterm_ev == NULL || evsignal_add(sigint_ev, NULL) != 0 ||
        evsignal_add(sigterm_ev, NULL) != 0) {
        fprintf(stderr, "demo-origin: cannot install signal handlers\n");
        goto out;
    }
    if (!demo.quiet)
        fprintf(stderr, "demo-origin: listening on http://%s%s%s:%u/\n",
                ss.ss_family == AF_INET6 ? "[" : "", addr, ss.ss_family == AF_INET6 ? "]" : "",
                (unsigned)port);

    if (event_base_dispatch(demo.base) < 0) {
        fprintf(stderr, "demo-origin: event loop failed\n");
        goto out;
    }
    rc = 0;

out:
    /* Unhook ours first: evhttp_free() runs close callbacks and frees requests. */
    while (!TAILQ_EMPTY(&demo.inflight)) {
        struct inflight *inf = TAILQ_FIRST(&demo.inflight);
        inflight_free(&inf);
    }
    if (sigint_ev != NULL)
        event_free(sigint_ev);
    if (sigterm_ev != NULL)
        event_free(sigterm_ev);
    if (demo.http != NULL)
        evhttp_free(demo.http);
    if (demo.base != NULL)
        event_base_free(demo.base);
    return rc;
}
