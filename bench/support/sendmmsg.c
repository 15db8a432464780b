/*
 * The sender's native engine: pushes pre-encoded datagrams to 127.0.0.1 at a given rate with
 * sendmmsg(2), up to 64 datagrams per system call.
 *
 * Why not Node: on this project's 2-core VM a Node dgram send costs about 4.5 us of CPU (one syscall
 * per datagram), so one Node sender tops out near the rate the bare receiver reaches and eats the core
 * the receiver needs. sendmmsg costs about 2.6 us a datagram here, nearly all of it the kernel's
 * loopback delivery, which any sender pays. bench/support/sender.ts builds this file with `cc` when it
 * can and falls back to its own dgram engine when it cannot; the results say which one ran.
 *
 *   sendmmsg <dst-port> <rate/s, 0 = as fast as possible> <src-port,...> [max seconds [loop]]  < records
 *
 * stdin: records of [u8 socket index][u8 length][length bytes], read whole before sending starts.
 * Each source port is one socket bound to 127.0.0.1:<src-port> and connected to the destination, so a
 * driver keeps its source address (and its SO_REUSEPORT worker) from one run to the next.
 * It stops at the end of the records or after max seconds, whichever comes first (a sender slowed by
 * other jobs on the machine must not stretch a trial). With `loop` it starts over from the first record
 * until max seconds (devices re-sending the same pack: the overload test).
 * stdout: one JSON line {"sent","seconds","userMs","sysMs","retries"}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_SOCKETS 256
#define TICK_NS 1000000L

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 6) {
    fprintf(stderr, "usage: sendmmsg <dst-port> <rate> <src-ports> [max-seconds [loop]]\n");
    return 2;
  }
  int dst_port = atoi(argv[1]);
  double rate = atof(argv[2]);
  double max_seconds = argc >= 5 ? atof(argv[4]) : 0;
  int loop = argc == 6 && strcmp(argv[5], "loop") == 0;

  size_t cap = 1 << 24, len = 0;
  unsigned char *data = malloc(cap);
  for (;;) {
    if (len == cap) data = realloc(data, cap *= 2);
    ssize_t r = read(0, data + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { perror("read"); return 1; }
    if (r == 0) break;
    len += (size_t)r;
  }

  int socks[MAX_SOCKETS], nsocks = 0;
  struct sockaddr_in dst = {0};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(dst_port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (char *tok = strtok(argv[3], ","); tok != NULL && nsocks < MAX_SOCKETS; tok = strtok(NULL, ",")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in src = {0};
    src.sin_family = AF_INET;
    src.sin_port = htons(atoi(tok));
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&src, sizeof src) != 0) { perror("bind"); return 1; }
    if (connect(s, (struct sockaddr *)&dst, sizeof dst) != 0) { perror("connect"); return 1; }
    socks[nsocks++] = s;
  }
  if (nsocks == 0) { fprintf(stderr, "no source ports\n"); return 2; }

  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }

  long sent = 0, retries = 0;
  size_t pos = 0;
  double t0 = now_s();
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  /* A loop without a time limit would never end. */
  if (loop && max_seconds <= 0) { fprintf(stderr, "loop needs max-seconds\n"); return 2; }
  for (;;) {
    if (pos >= len) {
      if (!loop || len == 0) break;
      pos = 0;
    }
    if (max_seconds > 0 && now_s() - t0 >= max_seconds) break;
    /* How many datagrams are due by now; at most one batch ahead of the schedule. */
    long due = rate > 0 ? (long)((now_s() - t0) * rate) + 1 : sent + BATCH;
    while (sent < due && pos < len) {
      /* One batch: consecutive records of the same socket, no more than are due. */
      int sock = data[pos], n = 0;
      while (n < BATCH && pos < len && data[pos] == sock && sent + n < due) {
        iov[n].iov_base = data + pos + 2;
        iov[n].iov_len = data[pos + 1];
        pos += 2 + data[pos + 1];
        n++;
      }
      int done = 0;
      while (done < n) {
        int r = sendmmsg(socks[sock % nsocks], msgs + done, n - done, 0);
        if (r > 0) { done += r; continue; }
        if (errno == EINTR) continue;
        /* Loopback rarely pushes back; when it does (ENOBUFS, EAGAIN), wait for room and retry. */
        retries++;
        struct pollfd p = {socks[sock % nsocks], POLLOUT, 0};
        poll(&p, 1, 1);
      }
      sent += n;
    }
    if (rate > 0) {
      next.tv_nsec += TICK_NS;
      if (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
  }
  double seconds = now_s() - t0;
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  printf("{\"sent\":%ld,\"seconds\":%.6f,\"userMs\":%.1f,\"sysMs\":%.1f,\"retries\":%ld}\n", sent, seconds,
         u.ru_utime.tv_sec * 1e3 + u.ru_utime.tv_usec / 1e3, u.ru_stime.tv_sec * 1e3 + u.ru_stime.tv_usec / 1e3,
         retries);
  return 0;
}
