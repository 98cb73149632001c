/* The firmware as a Linux program: its UART is a pseudo-terminal (the path goes to stdout as the first
 * line, as `edgemnv2 board-sim` prints it), time is CLOCK_MONOTONIC in nanoseconds. The same protocol,
 * app and TensorFlow Lite Micro runner as on a microcontroller, for fast tests on any machine.
 * Ends on SIGTERM/SIGINT, or when stdin closes if it is a pipe (the parent that started it went away). */
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE /* cfmakeraw */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "edgemnv2_board.h"
#include "edgemnv2_firmware.h"

static int g_master = -1;
static int g_watch_stdin;

static void fail(const char *what) {
  perror(what);
  exit(2);
}

void emn_board_init(uint32_t baud) {
  struct termios raw;
  int slave;
  const char *path;
  (void)baud;
  g_master = posix_openpt(O_RDWR | O_NOCTTY);
  if (g_master < 0 || grantpt(g_master) != 0 || unlockpt(g_master) != 0) fail("posix_openpt");
  path = ptsname(g_master);
  if (path == NULL) fail("ptsname");
  /* raw bytes both ways (no echo, no line editing), like a UART; the slave stays open here so the
   * master never reads EIO while no host is connected */
  slave = open(path, O_RDWR | O_NOCTTY);
  if (slave < 0 || tcgetattr(slave, &raw) != 0) fail("open pty");
  cfmakeraw(&raw);
  if (tcsetattr(slave, TCSANOW, &raw) != 0) fail("tcsetattr");
  printf("%s\n", path);
  fflush(stdout);
  g_watch_stdin = !isatty(0);
}

/* Non-blocking: the model runner calls it between layers, so it must not wait. Bytes the host sends while
 * the model computes wait in the pty's buffer (a full buffer blocks the host's write: nothing is lost). */
size_t emn_board_read(uint8_t *buf, size_t cap) {
  struct pollfd fd = {g_master, POLLIN, 0};
  ssize_t n;
  if (poll(&fd, 1, 0) <= 0 || !(fd.revents & POLLIN)) return 0;
  n = read(g_master, buf, cap);
  return n > 0 ? (size_t)n : 0u;
}

/* The main loop's idle wait: up to 1 ms for bytes, so it does not spin a core. */
static void wait_for_bytes(void) {
  struct pollfd fds[2] = {{g_master, POLLIN, 0}, {0, POLLIN, 0}};
  if (poll(fds, g_watch_stdin ? 2 : 1, 1) <= 0) return;
  if (g_watch_stdin && (fds[1].revents & (POLLIN | POLLHUP))) {
    char byte;
    if (read(0, &byte, 1) <= 0) exit(0); /* the parent closed our stdin: it is gone or wants us gone */
  }
}

void emn_board_write(const uint8_t *data, size_t n) {
  while (n > 0) {
    ssize_t w = write(g_master, data, n);
    if (w > 0) {
      data += w;
      n -= (size_t)w;
    } else if (w < 0 && errno != EINTR && errno != EAGAIN) {
      fail("write pty");
    }
  }
}

uint64_t emn_board_cycles(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

uint64_t emn_board_micros(void) { return emn_board_cycles() / 1000u; }

uint32_t emn_board_entropy(void) { return (uint32_t)getpid() ^ (uint32_t)emn_board_cycles(); }

static void on_signal(int sig) {
  (void)sig;
  _exit(0);
}

int main(void) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  emn_firmware_start();
  for (;;) {
    wait_for_bytes();
    emn_firmware_poll();
  }
}
