// shortconn: the load generator of benchmarks/datapath-scale.sh. Like `wrk -t1 -cC -H "Connection: close"`
// (one thread, C connections in flight, each a new TCP connection carrying one small HTTP/1.1 request and
// closed once the answer has been read to its end), but each new connection goes to the next target of a
// list (round-robin over TARGETS, a file of "ADDRESS PORT" lines), so the traffic can be spread over
// thousands of VIPs. wrk opens every connection of a thread to one address.
//
// Usage: shortconn TARGETS CONNECTIONS SECONDS [RATE]
// With RATE (connections a second), an open loop: a new connection starts every 1/RATE s, at most
// CONNECTIONS in flight (a start that finds none free waits for one and counts as late); without, a closed
// loop like wrk's: each connection is replaced as soon as it ends.
// Prints one line: requests=N seconds=S rate=R p50_ms=X p99_ms=Y errors=E
// (latency: from connect() to the server's close after the answer, per connection).
// Build: cc -O2 -o shortconn shortconn.c
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_US 10
#define BUCKETS 1000000 // 10 s at 10 us

static struct sockaddr_in *targets;
static size_t ntargets, next_target;
static unsigned *hist;
static long long done, errors;
static int ep;
static double rate; // 0: closed loop

struct conn {
    int fd;
    int sent;
    double start;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

static void open_conn(struct conn *c) {
    for (;;) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) { perror("socket"); exit(1); }
        c->sent = 0;
        c->start = now();
        struct sockaddr_in *a = &targets[next_target];
        next_target = (next_target + 1) % ntargets;
        if (connect(c->fd, (struct sockaddr *)a, sizeof *a) == 0 || errno == EINPROGRESS) break;
        errors++;
        close(c->fd);
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) { perror("epoll_ctl"); exit(1); }
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: shortconn TARGETS CONNECTIONS SECONDS [RATE]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    size_t cap = 1024;
    targets = calloc(cap, sizeof *targets);
    char addr[64];
    unsigned port;
    while (fscanf(f, "%63s %u", addr, &port) == 2) {
        if (ntargets == cap) targets = realloc(targets, (cap *= 2) * sizeof *targets);
        struct sockaddr_in *a = &targets[ntargets++];
        memset(a, 0, sizeof *a);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, addr, &a->sin_addr) != 1) { fprintf(stderr, "bad address %s\n", addr); return 1; }
    }
    fclose(f);
    if (ntargets == 0) { fprintf(stderr, "no targets\n"); return 1; }
    int nconn = atoi(argv[2]);
    double secs = atof(argv[3]);
    if (argc == 5) rate = atof(argv[4]);
    hist = calloc(BUCKETS, sizeof *hist);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc(nconn, sizeof *conns);
    double t0 = now(), end = t0 + secs;
    struct conn **idle = calloc(nconn, sizeof *idle);
    int nidle = 0;
    double next_start = t0;
    long long late = 0;
    if (rate > 0) for (int i = 0; i < nconn; i++) idle[nidle++] = &conns[i];
    else for (int i = 0; i < nconn; i++) open_conn(&conns[i]);
    struct epoll_event evs[256];
    char buf[4096];
    double t = t0;
    while ((t = now()) < end) {
        int timeout = 100;
        if (rate > 0) {
            while (t >= next_start && nidle > 0) {
                open_conn(idle[--nidle]);
                next_start += 1 / rate;
            }
            if (t >= next_start) { // no connection free: the start waits for one
                late++;
                next_start = t;
            }
            // whole milliseconds, at least 1: starts due within a tick go out together, and the loop never spins
            timeout = nidle > 0 ? 1 + (int)((next_start - t) * 1000) : 100;
        }
        int n = epoll_wait(ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            int failed = (evs[i].events & EPOLLERR) != 0;
            int finished = 0;
            if (!failed && !c->sent && (evs[i].events & EPOLLOUT)) {
                if (write(c->fd, request, sizeof request - 1) != (ssize_t)(sizeof request - 1)) failed = 1;
                else {
                    c->sent = 1;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!failed && c->sent && (evs[i].events & (EPOLLIN | EPOLLHUP))) {
                for (;;) {
                    ssize_t r = read(c->fd, buf, sizeof buf);
                    if (r > 0) continue;
                    if (r == 0) finished = 1;
                    else if (errno != EAGAIN) failed = 1;
                    break;
                }
            }
            if (failed || finished) {
                if (finished) {
                    double t1 = now();
                    long b = (long)((t1 - c->start) * 1e6 / BUCKET_US);
                    hist[b < BUCKETS ? b : BUCKETS - 1]++;
                    done++;
                } else errors++;
                close(c->fd); // also removes it from the epoll set
                if (rate > 0) idle[nidle++] = c;
                else open_conn(c);
            }
        }
    }
    double elapsed = t - t0;
    long long seen = 0, p50 = -1, p99 = -1;
    for (long b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (p50 < 0 && seen * 2 >= done) p50 = b;
        if (p99 < 0 && seen * 100 >= done * 99) { p99 = b; break; }
    }
    printf("requests=%lld seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%lld late=%lld\n", done, elapsed,
           done / elapsed, (p50 + 0.5) * BUCKET_US / 1000.0, (p99 + 0.5) * BUCKET_US / 1000.0, errors, late);
    return 0;
}
