/*
 * tulle-cni-shim: the plugin executable a container runtime runs, in C so that a call costs a process start of a
 * millisecond instead of starting Node.js. It hands the call to the agent's CNI server over a unix socket (the
 * wire format is in src/cni/server.ts) and prints the answer with its exit code, so to the runtime it is the
 * plugin in every respect: CNI_* and stdin in, result or CNI error object on stdout, exit 0 or 1.
 *
 * When the agent cannot do it, the Node plugin (bin/tulle-cni) does: the shim exec()s it with the same
 * environment and stdin, so DEL and GC always work and ADD gives code 11 while subnet.env is missing, as before.
 *   - no socket, or nobody listening                      -> fallback (stdin untouched)
 *   - the agent refuses (another namespace, stopping)     -> fallback (stdin replayed from a memfd)
 *   - stdin larger than the server takes                  -> fallback (replayed)
 *   - the agent dies after taking the request, or gives    -> fallback, except ADD: the work may be half done,
 *     no answer within ANSWER_TIMEOUT_S                     so ADD answers code 11 and the runtime DELs and retries
 *
 * TULLE_CNI_SOCKET overrides the socket path ("" skips the agent); TULLE_CNI_FALLBACK the Node plugin's path;
 * TULLE_CNI_ANSWER_TIMEOUT the seconds to wait for an answer (1..3600, default 60).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef TULLE_CNI_FALLBACK
#define TULLE_CNI_FALLBACK "/usr/lib/tulle/tulle-cni"
#endif
#define DEFAULT_SOCKET "/run/tulle/cni.sock"
/* Keep in step with src/cni/server.ts. */
#define MAX_REQUEST (1024 * 1024)
#define MAX_ANSWER (16 * 1024 * 1024)
#define PROTOCOL_VERSION 1
#define STATUS_REFUSED 2
/* A hung agent must not hang pod creation: an ADD takes milliseconds, so a minute is only ever a fault. */
#define ANSWER_TIMEOUT_S 60
#define CNI_TRY_AGAIN_LATER 11
#define CNI_INTERNAL 999

extern char **environ;

static char *input;        /* stdin, once read */
static size_t input_len;
static int input_read;     /* 1 once stdin has been consumed (the fallback must then be fed from memory) */

/* JSON string body for msg: only ASCII control characters, '"' and '\\' need escaping. */
static void put_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void cni_error(int code, const char *msg) {
  fputs("{\"cniVersion\":\"1.1.0\",\"code\":", stdout);
  fprintf(stdout, "%d,\"msg\":", code);
  put_json_string(stdout, msg);
  fputs("}\n", stdout);
  fflush(stdout);
}

/* Runs the Node plugin in place of this process; returns only to report that it could not. */
static int fallback(char **argv) {
  const char *path = getenv("TULLE_CNI_FALLBACK");
  if (path == NULL || path[0] == '\0') path = TULLE_CNI_FALLBACK;
  if (input_read) {
    int fd = memfd_create("tulle-cni-stdin", 0);
    if (fd < 0) goto failed;
    size_t off = 0;
    while (off < input_len) {
      ssize_t n = write(fd, input + off, input_len - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) goto failed;
      off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) != 0) goto failed;
    close(fd);
  }
  argv[0] = (char *)path;
  execve(path, argv, environ);
failed:;
  char msg[4096];
  snprintf(msg, sizeof msg, "tulle-cni: the agent's CNI socket is unavailable and the plugin %s cannot be run: %s", path, strerror(errno));
  cni_error(CNI_INTERNAL, msg);
  return 1;
}

static int read_all_stdin(void) {
  size_t cap = 64 * 1024;
  input = malloc(cap);
  if (input == NULL) return -1;
  input_read = 1;
  for (;;) {
    if (input_len == cap) {
      char *bigger = realloc(input, cap * 2);
      if (bigger == NULL) return -1;
      input = bigger;
      cap *= 2;
    }
    ssize_t n = read(0, input + input_len, cap - input_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EBADF) return 0; /* no stdin at all: an empty config, as for the Node plugin */
    if (n < 0) return -1;
    if (n == 0) return 0;
    input_len += (size_t)n;
  }
}

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads exactly len bytes; -1 on error or early end. */
static int read_exact(int fd, void *data, size_t len) {
  char *p = data;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* The request body: "netns=DEV:INO\0", each CNI_* variable "KEY=VALUE\0", an empty entry, stdin. */
static char *build_request(size_t *out_len) {
  struct stat st;
  char netns[64] = "";
  if (stat("/proc/self/ns/net", &st) == 0) snprintf(netns, sizeof netns, "netns=%lu:%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
  size_t body = strlen(netns) + 1 + 1 + input_len;
  for (char **e = environ; *e; e++)
    if (strncmp(*e, "CNI_", 4) == 0) body += strlen(*e) + 1;
  if (body > MAX_REQUEST) return NULL;
  char *req = malloc(9 + body);
  if (req == NULL) return NULL;
  memcpy(req, "TCNI", 4);
  req[4] = PROTOCOL_VERSION;
  put_u32((unsigned char *)req + 5, (uint32_t)body);
  char *p = req + 9;
  if (netns[0]) {
    size_t n = strlen(netns) + 1;
    memcpy(p, netns, n);
    p += n;
  }
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) != 0) continue;
    size_t n = strlen(*e) + 1;
    memcpy(p, *e, n);
    p += n;
  }
  *p++ = '\0';
  if (input_len) memcpy(p, input, input_len);
  p += input_len;
  *out_len = (size_t)(p - req);
  put_u32((unsigned char *)req + 5, (uint32_t)(*out_len - 9));
  return req;
}

static long answer_timeout(void) {
  const char *text = getenv("TULLE_CNI_ANSWER_TIMEOUT");
  if (text == NULL || *text == '\0') return ANSWER_TIMEOUT_S;
  char *end;
  long v = strtol(text, &end, 10);
  return (*end == '\0' && v >= 1 && v <= 3600) ? v : ANSWER_TIMEOUT_S;
}

int main(int argc, char **argv) {
  (void)argc;
  /* A server that goes away mid-write is an EPIPE to handle, not a signal that kills the plugin silently. */
  signal(SIGPIPE, SIG_IGN);
  const char *path = getenv("TULLE_CNI_SOCKET");
  if (path == NULL) path = DEFAULT_SOCKET;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (path[0] == '\0' || strlen(path) >= sizeof addr.sun_path) return fallback(argv);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return fallback(argv);

  const char *command = getenv("CNI_COMMAND");
  int is_add = command != NULL && strcmp(command, "ADD") == 0;
  /* VERSION needs no config: a person running the plugin by hand must not have to close stdin. */
  if (command == NULL || strcmp(command, "VERSION") != 0) {
    if (read_all_stdin() != 0) {
      cni_error(CNI_INTERNAL, "tulle-cni: cannot read stdin");
      return 1;
    }
  }
  size_t req_len = 0;
  char *req = build_request(&req_len);
  if (req == NULL) {
    close(fd);
    return fallback(argv);
  }
  if (write_all(fd, req, req_len) != 0) {
    close(fd);
    return fallback(argv); /* nothing was taken: the server did not read the request */
  }
  free(req);
  shutdown(fd, SHUT_WR);
  struct timeval timeout = {.tv_sec = answer_timeout()};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  unsigned char head[10];
  if (read_exact(fd, head, sizeof head) != 0 || memcmp(head, "TCNI", 4) != 0 || head[4] != PROTOCOL_VERSION) goto lost;
  uint32_t len = ((uint32_t)head[6] << 24) | ((uint32_t)head[7] << 16) | ((uint32_t)head[8] << 8) | head[9];
  if (len > MAX_ANSWER) goto lost;
  char *out = malloc(len ? len : 1);
  if (out == NULL || read_exact(fd, out, len) != 0) goto lost;
  close(fd);
  if (head[5] == STATUS_REFUSED) return fallback(argv);
  if (head[5] > 1) {
    cni_error(CNI_INTERNAL, "tulle-cni: the agent answered with an unknown status");
    return 1;
  }
  if (write_all(1, out, len) != 0) return 1;
  return head[5];

lost:
  close(fd);
  if (!is_add) return fallback(argv);
  cni_error(CNI_TRY_AGAIN_LATER, "tulle-cni: the agent's CNI socket closed before ADD was answered, or gave no answer in time (the agent stopped or hangs); try again");
  return 1;
}
