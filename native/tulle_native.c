/*
 * tulle_native: the few system calls Node cannot make, for src/netlink.
 *
 *   - an AF_NETLINK socket opened inside a given network namespace (a netlink socket belongs for life to the
 *     namespace its creating thread was in, and only setns() on the calling thread can choose that);
 *   - send to the kernel, and receive through a uv_poll watcher so the event loop never blocks (or, for the
 *     replies a request has already queued, right away);
 *   - read/write a file inside a network namespace (/proc/sys/net shows the opener's namespace);
 *   - flock(), which the CNI plugin needs to share host-local's lock file;
 *   - a resync's dumps, made on a pool thread and read into records of numbers (thousands of entries would
 *     otherwise cost the event loop the kernel's work and a parsed attribute each).
 *
 * Everything else (messages, attributes, sequence numbers, the other dumps) lives in TypeScript. Errors thrown from
 * here carry `code` = the errno name (ENOENT, EEXIST, ...) and `errno` = its number, so TypeScript can map them.
 *
 * Plain Node-API (node_api.h), no C++ wrapper, so the binding builds with nothing but node-gyp and a C compiler.
 */
#define _GNU_SOURCE
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <math.h>
#include <sys/time.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <linux/neighbour.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stddef.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

/* Space kept free in the receive buffer before each recv: a dump datagram is at most 32 KiB (the kernel caps
 * it), a single event message is far smaller, so a datagram that does not fit is a real error, not a race. */
#define RECV_MIN_SPACE (64 * 1024)
/* One poll callback hands JS at most this much; the watcher fires again while more is queued, so a flood of
 * ACKs cannot keep the event loop inside one callback. */
#define RECV_BATCH_BYTES (1024 * 1024)
/* rtnetlink has 35 multicast groups; more in one open() is a caller's mistake. */
#define MAX_GROUPS 64

/* ------------------------------------------------------------------------------------------------------ */
/* Errors                                                                                                   */

/* The errno's name ("ENETUNREACH") into `buf`. Not uv_err_name(): for an errno libuv does not know it returns a
 * malloc'd "Unknown system error N" that nobody frees, and the kernel can put any number into a netlink ACK.
 * glibc knows every errno's name; an errno nobody knows is "E<number>", as src/netlink/errors.ts names it. */
static const char *errno_name(int err, char *buf, size_t size) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *known = strerrorname_np(err);
  if (known) return known;
#endif
  uv_err_name_r(-err, buf, size);
  if (strncmp(buf, "Unknown", 7) == 0) snprintf(buf, size, "E%d", err);
  return buf;
}

/* An Error with code = errno name, errno, syscall; NULL (an exception pending) when N-API itself fails. */
static napi_value make_errno_error(napi_env env, int err, const char *what) {
  char name_buf[64];
  const char *name = errno_name(err, name_buf, sizeof name_buf);
  char msg[PATH_MAX + 256];
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, name, strerror(err));
  napi_value code, message, error, errno_value, syscall;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok || napi_create_int32(env, err, &errno_value) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
      napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &syscall) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall) != napi_ok)
    return NULL;
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  napi_value error = make_errno_error(env, err, what);
  bool pending = false;
  if (error) napi_throw(env, error);
  else if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) napi_throw_error(env, NULL, "tulle_native: cannot create an error object");
  return NULL;
}

/* A failed N-API call that is not about the arguments (out of memory, a terminating environment): throw, naming
 * the call, unless N-API already left an exception pending. */
static napi_value throw_napi_failure(napi_env env, const char *call) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  char msg[128];
  snprintf(msg, sizeof msg, "tulle_native: %s failed", call);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* N-API calls that make values or handles: a failure throws naming the call, and the caller returns at once. */
#define NAPI_OR_THROW(call)                                                \
  do {                                                                     \
    if ((call) != napi_ok) return throw_napi_failure(env, #call);          \
  } while (0)

/* Argument checks throw TypeError and return NULL; callers return at once. */
#define CHECK_NAPI(call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_type_error(env, NULL, "tulle_native: bad argument");     \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

/* Reads an optional string argument (null/undefined -> empty); returns 0 on type error (already thrown). */
static int get_path_arg(napi_env env, napi_value value, char *out, size_t size) {
  napi_valuetype type;
  out[0] = '\0';
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_napi_failure(env, "napi_typeof");
    return 0;
  }
  if (type == napi_null || type == napi_undefined) return 1;
  size_t len = 0;
  if (type != napi_string || napi_get_value_string_utf8(env, value, out, size, &len) != napi_ok || len >= size - 1) {
    napi_throw_type_error(env, NULL, "tulle_native: expected a path string");
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Network namespaces                                                                                       */

/*
 * Moves the calling thread into the namespace at `ns_path` and returns an fd of the one it was in, or -1 with
 * errno set. An empty path means "stay where you are" (back fd = -2, nothing to undo). Only this thread moves,
 * and JS cannot run until leave_netns(), so no JS ever observes the other namespace.
 */
static int enter_netns_fd(int target, const char **failed_step) {
  int back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (back < 0) {
    *failed_step = "open /proc/thread-self/ns/net";
    return -1;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int e = errno;
    close(back);
    errno = e;
    *failed_step = "setns";
    return -1;
  }
  return back;
}

static int enter_netns(const char *ns_path, const char **failed_step) {
  if (ns_path[0] == '\0') return -2;
  int target = open(ns_path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    *failed_step = "open network namespace";
    return -1;
  }
  int back = enter_netns_fd(target, failed_step);
  int e = errno;
  close(target);
  errno = e;
  return back;
}

static void leave_netns(int back) {
  if (back < 0) return;
  /* Staying in the wrong namespace would silently send every later socket of this process to the wrong place;
   * nothing sane can continue from that, so stop the process. */
  if (setns(back, CLONE_NEWNET) != 0) napi_fatal_error("tulle_native", NAPI_AUTO_LENGTH, "setns back to the original network namespace failed", NAPI_AUTO_LENGTH);
  close(back);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Netlink sockets                                                                                          */

typedef struct send_item {
  struct send_item *next;
  void *data;
  size_t length;
  ssize_t sent;
  int err;
  napi_deferred deferred;
} send_item;

typedef struct send_queue {
  pthread_mutex_t lock;
  send_item *waiting, *waiting_tail;
  send_item *done, *done_tail;
  int fd;      /* a dup of the socket's, closed with the queue */
  int closed;  /* the socket was closed */
  int working; /* a pool work is draining `waiting` */
  int refs;    /* the socket, and each pool work not yet completed */
} send_queue;

typedef struct {
  send_queue *q;
  napi_async_work work;
} send_work;

static void release_queue(send_queue *q) {
  pthread_mutex_lock(&q->lock);
  int last = --q->refs == 0;
  pthread_mutex_unlock(&q->lock);
  if (!last) return;
  close(q->fd);
  pthread_mutex_destroy(&q->lock);
  free(q);
}

typedef struct {
  int fd;              /* -1 once closed */
  int polling;         /* uv_poll_init done and uv_close not yet called */
  int poll_closing;    /* uv_close called, its callback not yet run */
  int finalized;       /* the JS handle is gone: free when the poll handle is closed too */
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async_context;
  char *buf;
  size_t cap;
  send_queue *queue; /* sendQueued's, made on first use */
  int own_ns;        /* opened in this process's namespace (no nsPath) */
} nl_socket;

static void free_socket_if_unused(nl_socket *s) {
  if (s->finalized && !s->poll_closing) {
    free(s->buf);
    free(s);
  }
}

static void on_poll_closed(uv_handle_t *handle) {
  nl_socket *s = handle->data;
  s->poll_closing = 0;
  free_socket_if_unused(s);
}

/* Stops the watcher (if any) and closes the fd; JS references are dropped only when `env_usable`. */
static void close_socket(nl_socket *s, int env_usable) {
  if (s->polling) {
    uv_poll_stop(&s->poll);
    s->polling = 0;
    s->poll_closing = 1;
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
    if (env_usable) {
      napi_delete_reference(s->env, s->callback);
      napi_async_destroy(s->env, s->async_context);
    }
    s->callback = NULL;
  }
  if (s->queue) {
    pthread_mutex_lock(&s->queue->lock);
    s->queue->closed = 1;
    pthread_mutex_unlock(&s->queue->lock);
    release_queue(s->queue);
    s->queue = NULL;
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

static void finalize_socket(napi_env env, void *data, void *hint) {
  (void)hint;
  nl_socket *s = data;
  s->finalized = 1;
  close_socket(s, env != NULL);
  free_socket_if_unused(s);
}

static nl_socket *get_socket(napi_env env, napi_value value) {
  void *data = NULL;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external || napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "tulle_native: expected a netlink socket handle");
    return NULL;
  }
  return data;
}

static int set_int_option(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value);
}

/*
 * open(nsPath: string | null, protocol: number, groups: number[], rcvbuf: number, sndbuf: number,
 *      flags: { extAck, capAck, strict }) -> handle
 */
static napi_value nl_open(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "tulle_native.open: 6 arguments expected");
    return NULL;
  }
  char ns_path[PATH_MAX];
  if (!get_path_arg(env, argv[0], ns_path, sizeof ns_path)) return NULL;
  int32_t protocol, rcvbuf, sndbuf;
  CHECK_NAPI(napi_get_value_int32(env, argv[1], &protocol));
  CHECK_NAPI(napi_get_value_int32(env, argv[3], &rcvbuf));
  CHECK_NAPI(napi_get_value_int32(env, argv[4], &sndbuf));
  bool ext_ack = false, cap_ack = false, strict = false;
  napi_value flag;
  CHECK_NAPI(napi_get_named_property(env, argv[5], "extAck", &flag));
  CHECK_NAPI(napi_get_value_bool(env, flag, &ext_ack));
  CHECK_NAPI(napi_get_named_property(env, argv[5], "capAck", &flag));
  CHECK_NAPI(napi_get_value_bool(env, flag, &cap_ack));
  CHECK_NAPI(napi_get_named_property(env, argv[5], "strict", &flag));
  CHECK_NAPI(napi_get_value_bool(env, flag, &strict));
  /* Every argument is read before the socket exists: a bad one then throws with nothing to close. */
  int32_t groups[MAX_GROUPS];
  uint32_t group_count = 0;
  bool is_array = false;
  CHECK_NAPI(napi_is_array(env, argv[2], &is_array));
  if (!is_array) {
    napi_throw_type_error(env, NULL, "tulle_native.open: groups must be an array of numbers");
    return NULL;
  }
  CHECK_NAPI(napi_get_array_length(env, argv[2], &group_count));
  if (group_count > MAX_GROUPS) {
    napi_throw_range_error(env, NULL, "tulle_native.open: too many multicast groups");
    return NULL;
  }
  for (uint32_t i = 0; i < group_count; i++) {
    napi_value element;
    CHECK_NAPI(napi_get_element(env, argv[2], i, &element));
    CHECK_NAPI(napi_get_value_int32(env, element, &groups[i]));
  }

  /* Only socket() must happen inside the namespace: the socket keeps it from then on. */
  const char *step = "";
  int back = enter_netns(ns_path, &step);
  if (back == -1) return throw_errno(env, errno, step);
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  int socket_errno = errno;
  leave_netns(back);
  if (fd < 0) return throw_errno(env, socket_errno, "socket(AF_NETLINK)");

  const char *failed = NULL;
  /* The FORCE variants lift the sysctl caps (root only); fall back to the capped ones otherwise. Dumps of
   * thousands of routes and bursts of ACKs from a pipelined batch need more than the default ~200 KiB. */
  if (rcvbuf > 0 && set_int_option(fd, SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf) != 0 && set_int_option(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf) != 0) failed = "setsockopt SO_RCVBUF";
  if (!failed && sndbuf > 0 && set_int_option(fd, SOL_SOCKET, SO_SNDBUFFORCE, sndbuf) != 0 && set_int_option(fd, SOL_SOCKET, SO_SNDBUF, sndbuf) != 0) failed = "setsockopt SO_SNDBUF";
  /* Extended ACKs carry the kernel's own explanation ("Nexthop has invalid gateway"); capped ACKs leave out
   * the echoed request, which we never read, so a burst of errors stays small. Strict checking lets the
   * kernel filter dumps (by table, device, ...) instead of sending everything. All three are best effort:
   * an older kernel without them still works, only with plainer errors and bigger dumps. */
  if (!failed && ext_ack) set_int_option(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
  if (!failed && cap_ack) set_int_option(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  if (!failed && strict) set_int_option(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);

  if (!failed) {
    struct sockaddr_nl addr;
    memset(&addr, 0, sizeof addr);
    addr.nl_family = AF_NETLINK; /* nl_pid 0: the kernel picks a unique port id */
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) failed = "bind";
  }
  for (uint32_t i = 0; i < group_count && !failed; i++) {
    if (set_int_option(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, groups[i]) != 0) failed = "setsockopt NETLINK_ADD_MEMBERSHIP";
  }
  if (failed) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, failed);
  }

  nl_socket *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return throw_errno(env, ENOMEM, "calloc");
  }
  s->fd = fd;
  s->env = env;
  s->own_ns = ns_path[0] == '\0';
  napi_value handle;
  if (napi_create_external(env, s, finalize_socket, NULL, &handle) != napi_ok) {
    close(fd);
    free(s);
    napi_throw_error(env, NULL, "tulle_native: cannot create socket handle");
    return NULL;
  }
  return handle;
}

/* sendto() the kernel (port 0), retried on EINTR; -1 with errno set on failure. */
static ssize_t send_to_kernel(int fd, const void *data, size_t length) {
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t n;
  do {
    n = sendto(fd, data, length, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (n < 0 && errno == EINTR);
  return n;
}

/* The (handle, buffer) arguments of send and sendQueued: the open socket, or NULL with an exception pending. */
static nl_socket *send_args(napi_env env, napi_callback_info info, void **data, size_t *length) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "tulle_native: bad argument");
    return NULL;
  }
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  if (s->fd < 0) {
    throw_errno(env, EBADF, "send on a closed netlink socket");
    return NULL;
  }
  if (napi_get_buffer_info(env, argv[1], data, length) != napi_ok) {
    napi_throw_type_error(env, NULL, "tulle_native: bad argument");
    return NULL;
  }
  return s;
}

/* send(handle, buffer) -> bytes sent. A request to the kernel is handled synchronously inside this call, so
 * its replies are already queued on the socket when it returns. */
static napi_value nl_send(napi_env env, napi_callback_info info) {
  void *data;
  size_t length;
  nl_socket *s = send_args(env, info, &data, &length);
  if (!s) return NULL;
  ssize_t n = send_to_kernel(s->fd, data, length);
  if (n < 0) return throw_errno(env, errno, "sendto(netlink)");
  napi_value result;
  NAPI_OR_THROW(napi_create_int64(env, n, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Sends on a pool thread                                                                                   */

/*
 * sendQueued(handle, buffer) -> Promise<number>: the same sendto(), made by a libuv pool thread. The kernel handles
 * a netlink request inside sendto(), so a chunk of a thousand route writes keeps the sending thread in the kernel
 * for milliseconds; from a pool thread, the event loop's thread meanwhile builds the next chunk and reads the ACKs
 * and events of the ones before — on a machine with two cores, tulle's writes and its own work overlap where
 * `ip -batch` does one after the other. One pool work at a time drains a socket's queue, so the kernel gets the
 * chunks in the order they were queued. Data is copied; the queue holds its own dup of the descriptor, and once
 * the socket is closed, chunks still waiting fail with EBADF instead of being sent.
 */
static void append_item(send_item **head, send_item **tail, send_item *item) {
  item->next = NULL;
  if (*tail) (*tail)->next = item;
  else *head = item;
  *tail = item;
}

static void send_queue_execute(napi_env env, void *data) {
  (void)env;
  send_queue *q = ((send_work *)data)->q;
  pthread_mutex_lock(&q->lock);
  while (q->waiting) {
    send_item *item = q->waiting;
    q->waiting = item->next;
    if (!q->waiting) q->waiting_tail = NULL;
    if (q->closed) {
      item->err = EBADF;
    } else {
      pthread_mutex_unlock(&q->lock);
      item->sent = send_to_kernel(q->fd, item->data, item->length);
      if (item->sent < 0) item->err = errno;
      pthread_mutex_lock(&q->lock);
    }
    append_item(&q->done, &q->done_tail, item);
  }
  q->working = 0; /* under the lock: a chunk queued from now on starts a new work */
  pthread_mutex_unlock(&q->lock);
}

/* Resolve (bytes sent) or reject (errno; `err` for all when non-zero) each item's promise, and free the items. */
static void settle_items(napi_env env, send_item *item, int err) {
  while (item) {
    send_item *next = item->next;
    int e = err ? err : item->err;
    napi_value outcome = NULL;
    if (e) {
      outcome = make_errno_error(env, e, "sendto(netlink)");
      if (outcome) napi_reject_deferred(env, item->deferred, outcome);
    } else if (napi_create_int64(env, item->sent, &outcome) == napi_ok) {
      napi_resolve_deferred(env, item->deferred, outcome);
    }
    free(item->data);
    free(item);
    item = next;
  }
}

static void send_queue_complete(napi_env env, napi_status status, void *data) {
  send_work *w = data;
  send_queue *q = w->q;
  pthread_mutex_lock(&q->lock);
  send_item *item = q->done;
  q->done = q->done_tail = NULL;
  pthread_mutex_unlock(&q->lock);
  settle_items(env, item, status == napi_ok ? 0 : ECANCELED);
  napi_delete_async_work(env, w->work);
  free(w);
  release_queue(q);
}

static napi_value nl_send_queued(napi_env env, napi_callback_info info) {
  void *data;
  size_t length;
  nl_socket *s = send_args(env, info, &data, &length);
  if (!s) return NULL;
  if (!s->queue) {
    send_queue *q = calloc(1, sizeof *q);
    if (!q) return throw_errno(env, ENOMEM, "sendQueued");
    q->fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
    if (q->fd < 0) {
      int err = errno;
      free(q);
      return throw_errno(env, err, "dup(netlink socket)");
    }
    pthread_mutex_init(&q->lock, NULL);
    q->refs = 1;
    s->queue = q;
  }
  send_queue *q = s->queue;
  send_item *item = calloc(1, sizeof *item);
  void *copy = malloc(length ? length : 1);
  send_work *w = calloc(1, sizeof *w);
  napi_value promise, name;
  if (!item || !copy || !w) {
    free(item);
    free(copy);
    free(w);
    return throw_errno(env, ENOMEM, "sendQueued");
  }
  memcpy(copy, data, length);
  item->data = copy;
  item->length = length;
  if (napi_create_promise(env, &item->deferred, &promise) != napi_ok) {
    free(item);
    free(copy);
    free(w);
    return throw_napi_failure(env, "napi_create_promise");
  }
  pthread_mutex_lock(&q->lock);
  append_item(&q->waiting, &q->waiting_tail, item);
  int start = !q->working;
  if (start) {
    q->working = 1;
    q->refs++;
  }
  pthread_mutex_unlock(&q->lock);
  if (!start) {
    free(w);
    return promise;
  }
  w->q = q;
  if (napi_create_string_utf8(env, "tulle.sendQueued", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, send_queue_execute, send_queue_complete, w, &w->work) != napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    /* No pool work will drain the queue: fail what waits in it, so no promise waits forever. */
    if (w->work) napi_delete_async_work(env, w->work);
    free(w);
    pthread_mutex_lock(&q->lock);
    send_item *waiting = q->waiting;
    q->waiting = q->waiting_tail = NULL;
    q->working = 0;
    pthread_mutex_unlock(&q->lock);
    release_queue(q);
    settle_items(env, waiting, EAGAIN);
  }
  return promise;
}

static void call_js(nl_socket *s, napi_value error, napi_value data) {
  napi_env env = s->env;
  napi_value callback, global, args[2], result;
  if (napi_get_reference_value(env, s->callback, &callback) != napi_ok || callback == NULL) return;
  bool pending = false;
  if (error != NULL && data != NULL && napi_get_global(env, &global) == napi_ok) {
    args[0] = error;
    args[1] = data;
    /* make_callback (not call_function) so promises resolved by the callback run before the loop moves on. */
    napi_make_callback(env, s->async_context, global, callback, 2, args, &result);
  }
  /* An exception from the callback, or from making its arguments, must not be lost inside a libuv callback. */
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value exception;
    if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
  }
}

/* The receive buffer, made on first use: 0, or ENOMEM. */
static int ensure_buffer(nl_socket *s) {
  if (s->buf) return 0;
  s->cap = RECV_BATCH_BYTES + RECV_MIN_SPACE;
  s->buf = malloc(s->cap);
  return s->buf ? 0 : ENOMEM;
}

/* recv() without blocking into s->buf until the socket is empty or a batch is read: the bytes read, and in *err a
 * receive error (0 when the socket was simply empty). */
static size_t drain(nl_socket *s, int *err) {
  size_t used = 0;
  *err = 0;
  while (s->fd >= 0 && used < RECV_BATCH_BYTES && s->cap - used >= RECV_MIN_SPACE) {
    ssize_t n = recv(s->fd, s->buf + used, s->cap - used, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
      break;
    }
    if ((size_t)n > s->cap - used) { /* MSG_TRUNC returns the real length: the datagram did not fit */
      *err = EMSGSIZE;
      break;
    }
    used += (size_t)n;
  }
  return used;
}

/*
 * Readable: drain the socket without blocking and hand JS whole datagrams, several concatenated into one Buffer
 * (netlink messages are self-delimiting, so this parses the same and costs one JS call per wake-up, not per
 * ACK). Errors (ENOBUFS: the kernel dropped messages because we were slow) go to JS as the first argument; the
 * socket stays usable.
 */
static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  nl_socket *s = handle->data;
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value null_value;
  if (napi_get_null(env, &null_value) != napi_ok) {
    napi_close_handle_scope(env, scope);
    return;
  }

  if (status < 0) {
    /* The kernel flags dropped messages (ENOBUFS) as a socket error, which epoll reports as POLLERR; libuv then
     * stops the watcher and says EBADF. The socket is fine: fetch (and clear) the real error, report it, and
     * watch again. */
    int err = 0;
    socklen_t len = sizeof err;
    if (s->fd < 0 || getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    /* The error was found by polling the socket, not by a recv() of ours. */
    call_js(s, make_errno_error(env, err, "poll(netlink)"), null_value);
    if (!s->polling || s->fd < 0 || uv_poll_start(&s->poll, UV_READABLE, on_readable) != 0) {
      napi_close_handle_scope(env, scope);
      return;
    }
  }
  int recv_errno = 0;
  size_t used = drain(s, &recv_errno);
  if (used > 0) {
    napi_value data;
    void *copy;
    if (napi_create_buffer_copy(env, used, s->buf, &copy, &data) == napi_ok) call_js(s, null_value, data);
    else call_js(s, make_errno_error(env, ENOMEM, "napi_create_buffer_copy"), null_value); /* the datagrams are lost: say so */
  }
  /* The JS callback may have closed the socket; the struct itself stays valid until the poll handle closes. */
  if (recv_errno != 0 && s->callback != NULL) call_js(s, make_errno_error(env, recv_errno, "recv(netlink)"), null_value);
  napi_close_handle_scope(env, scope);
}

/* startReading(handle, callback(error, buffer)) */
static napi_value nl_start_reading(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  if (s->fd < 0) return throw_errno(env, EBADF, "read from a closed netlink socket");
  if (s->polling) {
    napi_throw_error(env, NULL, "tulle_native: socket is already being read");
    return NULL;
  }
  napi_valuetype type;
  CHECK_NAPI(napi_typeof(env, argv[1], &type));
  if (type != napi_function) {
    napi_throw_type_error(env, NULL, "tulle_native.startReading: callback must be a function");
    return NULL;
  }
  if (ensure_buffer(s) != 0) return throw_errno(env, ENOMEM, "malloc");
  uv_loop_t *loop;
  NAPI_OR_THROW(napi_get_uv_event_loop(env, &loop));
  int rc = uv_poll_init(loop, &s->poll, s->fd);
  if (rc != 0) return throw_errno(env, -rc, "uv_poll_init");
  s->poll.data = s;
  napi_value resource_name;
  napi_status st = napi_create_string_utf8(env, "tulle.netlink", NAPI_AUTO_LENGTH, &resource_name);
  if (st == napi_ok) st = napi_create_reference(env, argv[1], 1, &s->callback);
  if (st == napi_ok) {
    st = napi_async_init(env, NULL, resource_name, &s->async_context);
    if (st != napi_ok) napi_delete_reference(env, s->callback);
  }
  if (st != napi_ok) {
    /* The watcher was initialised but never started: close it, so the struct is freed only after libuv is done. */
    s->callback = NULL;
    s->poll_closing = 1;
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
    return throw_napi_failure(env, "napi_create_reference/napi_async_init");
  }
  s->polling = 1;
  rc = uv_poll_start(&s->poll, UV_READABLE, on_readable);
  if (rc != 0) {
    close_socket(s, 1);
    return throw_errno(env, -rc, "uv_poll_start");
  }
  return NULL;
}

/*
 * receiveNow(handle) -> Buffer | null: the datagrams queued on the socket right now, without waiting; null when
 * there are none. For a socket that is not being read by startReading: the kernel answers a request inside the
 * send() that carried it, so its ACKs can be read straight after, with no trip through the event loop.
 */
static napi_value nl_receive_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  if (s->fd < 0) return throw_errno(env, EBADF, "recv on a closed netlink socket");
  if (s->polling) {
    napi_throw_error(env, NULL, "tulle_native: receiveNow on a socket that startReading reads");
    return NULL;
  }
  if (ensure_buffer(s) != 0) return throw_errno(env, ENOMEM, "malloc");
  int err;
  size_t used = drain(s, &err);
  if (err != 0) return throw_errno(env, err, "recv(netlink)");
  napi_value result;
  if (used == 0) {
    NAPI_OR_THROW(napi_get_null(env, &result));
    return result;
  }
  void *copy;
  NAPI_OR_THROW(napi_create_buffer_copy(env, used, s->buf, &copy, &result));
  return result;
}

/* setReadingRef(handle, ref): an unref'd watcher does not keep the process alive (an idle event subscription
 * should not stop a CLI from exiting); pending requests ref it again. */
static napi_value nl_set_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  bool ref;
  CHECK_NAPI(napi_get_value_bool(env, argv[1], &ref));
  if (s->polling) {
    if (ref) uv_ref((uv_handle_t *)&s->poll);
    else uv_unref((uv_handle_t *)&s->poll);
  }
  return NULL;
}

/* portId(handle) -> the port id the kernel gave the socket at bind() (getsockname's nl_pid): the nlmsg_pid of
 * the announcements of its own requests. */
static napi_value nl_port_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  if (s->fd < 0) return throw_errno(env, EBADF, "getsockname on a closed netlink socket");
  struct sockaddr_nl addr;
  socklen_t length = sizeof addr;
  if (getsockname(s->fd, (struct sockaddr *)&addr, &length) != 0) return throw_errno(env, errno, "getsockname");
  napi_value result;
  CHECK_NAPI(napi_create_uint32(env, addr.nl_pid, &result));
  return result;
}

/*
 * ignoreAnnouncementsOf(handle, portId): a socket filter (SO_ATTACH_FILTER, classic BPF) on a listening socket
 * that drops the route and neighbour announcements whose nlmsg_pid is `portId`, i.e. those of the requests sent
 * on that other socket (the kernel puts the requester's port id into the route and neighbour notifications it
 * sends for a request; FDB notifications of a VXLAN device carry 0 and still come). The kernel drops them
 * before queueing, so the listener is not woken for them. Everything else passes. BPF loads are big-endian,
 * hence htonl/htons on the constants compared with the host-order header fields.
 */
static napi_value nl_ignore_announcements_of(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  uint32_t port;
  CHECK_NAPI(napi_get_value_uint32(env, argv[1], &port));
  if (port == 0) {
    napi_throw_range_error(env, NULL, "tulle_native.ignoreAnnouncementsOf: port id 0 is the kernel's own");
    return NULL;
  }
  if (s->fd < 0) return throw_errno(env, EBADF, "setsockopt on a closed netlink socket");
  struct sock_filter code[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_pid)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htonl(port), 0, 6), /* another sender: keep (8) */
      /* 2 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_type)),
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_NEWROUTE), 3, 0),
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_DELROUTE), 2, 0),
      /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_NEWNEIGH), 1, 0),
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_DELNEIGH), 0, 1),
      /* 7 */ BPF_STMT(BPF_RET | BPF_K, 0),
      /* 8 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  struct sock_fprog program = {.len = sizeof code / sizeof code[0], .filter = code};
  if (setsockopt(s->fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0) return throw_errno(env, errno, "setsockopt SO_ATTACH_FILTER");
  return NULL;
}

/* close(handle): idempotent. */
static napi_value nl_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  close_socket(s, 1);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Files inside a namespace (per-namespace sysctls)                                                         */

/*
 * readFile/writeFile run on a libuv pool thread, so the event loop goes on while they work: a /proc/sys write can
 * take the kernel a while (it may take rtnl_lock behind a long dump), and a path can name a FIFO that waits for a
 * writer. Only that pool thread enters the namespace, and it returns before the work is marked done; the loop's
 * own thread never leaves the process's namespace.
 */
typedef struct {
  int write;
  char ns_path[PATH_MAX];
  char path[PATH_MAX];
  char text[4096];
  char data[8192];
  size_t total;
  int err;
  const char *step; /* the failed step before the file itself (entering the namespace), or NULL */
  napi_deferred deferred;
  napi_async_work work;
} ns_file_request;

static void ns_file_execute(napi_env env, void *data) {
  (void)env;
  ns_file_request *r = data;
  const char *step = "";
  int back = enter_netns(r->ns_path, &step);
  if (back == -1) {
    r->err = errno;
    r->step = step;
    return;
  }
  int fd = open(r->path, (r->write ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    r->err = errno;
  } else if (r->write) {
    /* A sysctl takes its value from one write(); a short write is an error, not something to continue. */
    size_t len = strlen(r->text);
    ssize_t n;
    do {
      n = write(fd, r->text, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) r->err = errno;
    else if ((size_t)n != len) r->err = EIO;
    if (close(fd) != 0 && !r->err) r->err = errno;
  } else {
    for (;;) {
      ssize_t n = read(fd, r->data + r->total, sizeof r->data - 1 - r->total);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) r->err = errno;
      if (n <= 0 || (r->total += (size_t)n) >= sizeof r->data - 1) break;
    }
    close(fd);
  }
  leave_netns(back);
}

static void ns_file_complete(napi_env env, napi_status status, void *data) {
  ns_file_request *r = data;
  if (status != napi_ok && r->err == 0) r->err = ECANCELED;
  napi_value outcome = NULL;
  bool ok = r->err == 0;
  if (!ok) {
    char what[PATH_MAX + 16];
    if (r->step) snprintf(what, sizeof what, "%s", r->step);
    else snprintf(what, sizeof what, "%s %s", r->write ? "write" : "read", r->path);
    outcome = make_errno_error(env, r->err, what);
  } else if (r->write) {
    if (napi_get_undefined(env, &outcome) != napi_ok) outcome = NULL;
  } else if (napi_create_string_utf8(env, r->data, r->total, &outcome) != napi_ok) {
    outcome = NULL;
  }
  if (outcome == NULL) {
    /* Making the value failed: reject with whatever N-API left pending, or a plain error. */
    bool pending = false;
    ok = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending || napi_get_and_clear_last_exception(env, &outcome) != napi_ok) {
      napi_value message;
      if (napi_create_string_utf8(env, "tulle_native: cannot create the result", NAPI_AUTO_LENGTH, &message) == napi_ok) napi_create_error(env, NULL, message, &outcome);
    }
  }
  if (outcome) {
    if (ok) napi_resolve_deferred(env, r->deferred, outcome);
    else napi_reject_deferred(env, r->deferred, outcome);
  }
  napi_delete_async_work(env, r->work);
  free(r);
}

/*
 * Creates a promise and queues `execute`/`complete` on the pool with `data` (owned from here on: `release`d on
 * every failure path; `complete` frees it otherwise). `deferred` and `work` point into `data`. Returns the promise, or
 * NULL with a JS exception pending.
 */
static napi_value queue_promise_work(napi_env env, const char *resource, napi_async_execute_callback execute, napi_async_complete_callback complete, void *data,
                                     napi_deferred *deferred, napi_async_work *work, void (*release)(void *)) {
  napi_value promise, name;
  if (napi_create_promise(env, deferred, &promise) != napi_ok) {
    release(data);
    return throw_napi_failure(env, "napi_create_promise");
  }
  if (napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, data, work) != napi_ok) {
    /* The promise exists: settle it, so no caller waits forever. */
    napi_value error = make_errno_error(env, ENOMEM, "napi_create_async_work");
    if (error) napi_reject_deferred(env, *deferred, error);
    release(data);
    return error ? promise : NULL;
  }
  if (napi_queue_async_work(env, *work) != napi_ok) {
    napi_value error = make_errno_error(env, EAGAIN, "napi_queue_async_work");
    if (error) napi_reject_deferred(env, *deferred, error);
    napi_delete_async_work(env, *work);
    release(data);
    return error ? promise : NULL;
  }
  return promise;
}

/* Queues `r` (owned from here on: freed on every path); returns the promise. */
static napi_value queue_ns_file(napi_env env, ns_file_request *r, const char *resource) {
  return queue_promise_work(env, resource, ns_file_execute, ns_file_complete, r, &r->deferred, &r->work, free);
}

/* readFile(nsPath | null, path) -> Promise<string>. The whole open/read/close happens inside the namespace. */
static napi_value ns_read_file(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ns_file_request *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, ENOMEM, "calloc");
  if (!get_path_arg(env, argv[0], r->ns_path, sizeof r->ns_path) || !get_path_arg(env, argv[1], r->path, sizeof r->path)) {
    free(r);
    return NULL;
  }
  return queue_ns_file(env, r, "tulle.readFile");
}

/* writeFile(nsPath | null, path, text) -> Promise<void> */
static napi_value ns_write_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ns_file_request *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, ENOMEM, "calloc");
  r->write = 1;
  if (!get_path_arg(env, argv[0], r->ns_path, sizeof r->ns_path) || !get_path_arg(env, argv[1], r->path, sizeof r->path) ||
      !get_path_arg(env, argv[2], r->text, sizeof r->text)) {
    free(r);
    return NULL;
  }
  return queue_ns_file(env, r, "tulle.writeFile");
}

/* ------------------------------------------------------------------------------------------------------ */
/* Dumps read into numbers                                                                                  */

/*
 * A whole dump (`ip route show table main`, `ip neigh show dev X`, `bridge fdb show dev X`) made by a pool thread
 * on a socket of its own in the namespace, each entry read into a fixed-size record of numbers: the fields
 * src/netlink/scan.ts reads from an announcement, in the same meaning. A full resync of 5000 peers reads 15000
 * entries; this way the event loop pays neither the kernel's work of the dump nor a parsed attribute per entry,
 * and the three dumps of a resync run side by side.
 */
#define DUMP_ROUTES 0
#define DUMP_NEIGHBORS 1
/* Doubles all (NaN is a float: a conditional mixing it with an integer would round to 24 bits).
 * family (4/6), dst, dst_len, table, protocol, type, onlink (0/1), via (NaN: none), oif */
#define ROUTE_FIELDS 9
/* family, ifindex, state, flags, ip (NaN: none or not IPv4), mac (48-bit; NaN: none or not 6 bytes) */
#define NEIGH_FIELDS 6
/* The kernel caps a dump datagram at 32 KiB; a bigger buffer only means a datagram never comes truncated. */
#define DUMP_RECV_BYTES (64 * 1024)
/* A kernel that stops answering a dump halfway fails it instead of holding a pool thread for ever. */
#define DUMP_TIMEOUT_S 30

/* A growing array of numbers. */
typedef struct {
  double *v;
  size_t n, cap;
} doubles;

typedef struct {
  int ns_fd; /* the namespace of the socket asked for (SIOCGSKNS); -1: this process's */
  unsigned char *request;
  size_t request_len;
  int kind;
  uint32_t filter; /* routes: the table (0: all); neighbours: the device index (0: all) */
  char dev[IF_NAMESIZE]; /* a device to filter by, named: its index is looked up in the namespace ... */
  size_t index_at;       /* ... and written into the request at this offset (and is the filter) */
  doubles records;
  int split_protocol; /* routes: >= 0 keeps only this protocol's in `records` ... */
  doubles others;     /* ... and the other IPv4 routes' destinations here, [dst, dst_len] each (not the default) */
  int interrupted;
  int err;
  const char *step;
  napi_deferred deferred;
  napi_async_work work;
} dump_request;

static void release_dump(void *data) {
  dump_request *r = data;
  if (r->ns_fd >= 0) close(r->ns_fd);
  free(r->request);
  free(r->records.v);
  free(r->others.v);
  free(r);
}

static uint32_t be32_at(const unsigned char *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static uint32_t u32_at(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint16_t u16_at(const unsigned char *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

/* Room for one more record of `fields` values; 0 when out of memory. */
static double *next_record(doubles *a, size_t fields) {
  if (a->n + fields > a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 1024 * fields;
    double *grown = realloc(a->v, cap * sizeof *grown);
    if (!grown) return NULL;
    a->v = grown;
    a->cap = cap;
  }
  double *out = a->v + a->n;
  a->n += fields;
  return out;
}

/* An RTM_NEWROUTE payload into a record, like scan.ts readRoute: a cached clone or a truncated message is skipped. */
static int read_route_record(dump_request *r, const unsigned char *p, size_t len) {
  if (len < sizeof(struct rtmsg)) return 1;
  const struct rtmsg *rt = (const struct rtmsg *)p;
  if (rt->rtm_flags & RTM_F_CLONED) return 1;
  double dst = 0, via = NAN, oif = 0, table = rt->rtm_table;
  for (size_t off = NLMSG_ALIGN(sizeof(struct rtmsg)); off + 4 <= len;) {
    uint16_t alen = u16_at(p + off), type = u16_at(p + off + 2) & NLA_TYPE_MASK;
    if (alen < 4 || off + alen > len) break;
    const unsigned char *v = p + off + 4;
    if (type == RTA_DST) dst = alen == 8 ? (double)be32_at(v) : (double)NAN;
    else if (type == RTA_GATEWAY) via = alen == 8 ? (double)be32_at(v) : (double)NAN;
    else if (type == RTA_OIF && alen >= 8) oif = u32_at(v);
    else if (type == RTA_TABLE && alen >= 8) table = u32_at(v);
    off += NLA_ALIGN(alen);
  }
  if (r->filter && table != r->filter) return 1;
  if (r->split_protocol >= 0 && rt->rtm_protocol != r->split_protocol) {
    if (rt->rtm_family != AF_INET || rt->rtm_dst_len == 0) return 1;
    double *other = next_record(&r->others, 2);
    if (!other) return 0;
    other[0] = dst;
    other[1] = rt->rtm_dst_len;
    return 1;
  }
  double *out = next_record(&r->records, ROUTE_FIELDS);
  if (!out) return 0;
  out[0] = rt->rtm_family == AF_INET ? 4 : 6;
  out[1] = dst;
  out[2] = rt->rtm_dst_len;
  out[3] = table;
  out[4] = rt->rtm_protocol;
  out[5] = rt->rtm_type;
  out[6] = (rt->rtm_flags & RTNH_F_ONLINK) ? 1 : 0;
  out[7] = via;
  out[8] = oif;
  return 1;
}

/* An RTM_NEWNEIGH payload (a neighbour, or an FDB entry: family AF_BRIDGE) into a record, like scan.ts readNeighbor. */
static int read_neighbor_record(dump_request *r, const unsigned char *p, size_t len) {
  if (len < sizeof(struct ndmsg)) return 1;
  const struct ndmsg *nd = (const struct ndmsg *)p;
  if (r->filter && (uint32_t)nd->ndm_ifindex != r->filter) return 1;
  double ip = NAN, mac = NAN;
  for (size_t off = NLMSG_ALIGN(sizeof(struct ndmsg)); off + 4 <= len;) {
    uint16_t alen = u16_at(p + off), type = u16_at(p + off + 2) & NLA_TYPE_MASK;
    if (alen < 4 || off + alen > len) break;
    const unsigned char *v = p + off + 4;
    if (type == NDA_DST) ip = alen == 8 ? (double)be32_at(v) : (double)NAN;
    else if (type == NDA_LLADDR) mac = alen == 10 ? (double)(((uint64_t)v[0] << 40) | ((uint64_t)v[1] << 32) | be32_at(v + 2)) : (double)NAN;
    off += NLA_ALIGN(alen);
  }
  double *out = next_record(&r->records, NEIGH_FIELDS);
  if (!out) return 0;
  out[0] = nd->ndm_family;
  out[1] = (uint32_t)nd->ndm_ifindex;
  out[2] = nd->ndm_state;
  out[3] = nd->ndm_flags;
  out[4] = ip;
  out[5] = mac;
  return 1;
}

/* Reads the datagrams of the dump with sequence number `seq` until NLMSG_DONE; sets r->err on failure. */
static void read_dump(dump_request *r, int fd, uint32_t seq) {
  unsigned char *buf = malloc(DUMP_RECV_BYTES);
  if (!buf) {
    r->err = ENOMEM;
    r->step = "malloc";
    return;
  }
  uint16_t expected = r->kind == DUMP_ROUTES ? RTM_NEWROUTE : RTM_NEWNEIGH;
  for (int done = 0; !done;) {
    ssize_t n = recv(fd, buf, DUMP_RECV_BYTES, MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->err = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
      r->step = "recv";
      break;
    }
    if (n > DUMP_RECV_BYTES) {
      r->err = EMSGSIZE;
      r->step = "recv";
      break;
    }
    int left = (int)n;
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; !done && NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_flags & NLM_F_DUMP_INTR) r->interrupted = 1;
      const unsigned char *payload = NLMSG_DATA(h);
      size_t len = h->nlmsg_len - NLMSG_HDRLEN;
      if (h->nlmsg_type == NLMSG_DONE) {
        int32_t status = 0;
        if (len >= 4) memcpy(&status, payload, 4);
        if (status < 0) {
          r->err = -status;
          r->step = "dump";
        }
        done = 1;
      } else if (h->nlmsg_type == NLMSG_ERROR) {
        int32_t status = 0;
        if (len >= 4) memcpy(&status, payload, 4);
        r->err = status < 0 ? -status : EPROTO;
        r->step = "dump";
        done = 1;
      } else if (h->nlmsg_type == expected) {
        int ok = r->kind == DUMP_ROUTES ? read_route_record(r, payload, len) : read_neighbor_record(r, payload, len);
        if (!ok) {
          r->err = ENOMEM;
          r->step = "realloc";
          done = 1;
        }
      }
    }
    if (r->err) break;
  }
  free(buf);
}

static void dump_execute(napi_env env, void *data) {
  (void)env;
  dump_request *r = data;
  const char *step = "";
  int back = r->ns_fd >= 0 ? enter_netns_fd(r->ns_fd, &step) : -2;
  if (back == -1) {
    r->err = errno;
    r->step = step;
    return;
  }
  /* The device's index is looked up here, in the namespace (an ioctl on a socket made in it): the dump does not
   * wait for a lookup on the event loop first. */
  uint32_t index = r->dev[0] ? if_nametoindex(r->dev) : 0;
  int index_errno = errno;
  int fd = r->dev[0] && !index ? -1 : socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int socket_errno = errno;
  leave_netns(back);
  if (r->dev[0] && !index) {
    r->err = index_errno == ENXIO || index_errno == 0 ? ENODEV : index_errno;
    r->step = "if_nametoindex";
    return;
  }
  if (fd < 0) {
    r->err = socket_errno;
    r->step = "socket(AF_NETLINK)";
    return;
  }
  if (r->dev[0]) {
    memcpy(r->request + r->index_at, &index, 4);
    r->filter = index;
  }
  /* Strict checking lets the kernel filter by table or device (best effort: the records are filtered here too). */
  set_int_option(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
  struct timeval timeout = {DUMP_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  struct nlmsghdr *h = (struct nlmsghdr *)r->request;
  const uint32_t seq = 1;
  h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_DUMP;
  h->nlmsg_seq = seq;
  h->nlmsg_pid = 0;
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, r->request, r->request_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    r->err = errno;
    r->step = "sendto";
  } else {
    read_dump(r, fd, seq);
  }
  close(fd);
}

/* A Float64Array holding a copy of `a`; NULL when N-API fails. */
static napi_value float64_array(napi_env env, const doubles *a) {
  void *bytes = NULL;
  napi_value buffer, array;
  if (napi_create_arraybuffer(env, a->n * sizeof(double), &bytes, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, a->n, buffer, 0, &array) != napi_ok)
    return NULL;
  if (a->n) memcpy(bytes, a->v, a->n * sizeof(double));
  return array;
}

static void dump_complete(napi_env env, napi_status status, void *data) {
  dump_request *r = data;
  if (status != napi_ok && r->err == 0) r->err = ECANCELED;
  napi_value outcome = NULL, records = NULL, others = NULL, interrupted, index;
  bool ok = r->err == 0;
  if (!ok) {
    outcome = make_errno_error(env, r->err, r->step ? r->step : "dump");
  } else if (!(records = float64_array(env, &r->records)) || !(others = float64_array(env, &r->others)) ||
             napi_get_boolean(env, r->interrupted != 0, &interrupted) != napi_ok || napi_create_object(env, &outcome) != napi_ok ||
             napi_set_named_property(env, outcome, "records", records) != napi_ok || napi_set_named_property(env, outcome, "others", others) != napi_ok ||
             napi_set_named_property(env, outcome, "interrupted", interrupted) != napi_ok || napi_create_uint32(env, r->filter, &index) != napi_ok ||
             napi_set_named_property(env, outcome, "filter", index) != napi_ok) {
    outcome = NULL;
  }
  if (outcome == NULL) {
    bool pending = false;
    ok = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending || napi_get_and_clear_last_exception(env, &outcome) != napi_ok) {
      napi_value message;
      if (napi_create_string_utf8(env, "tulle_native: cannot create the dump result", NAPI_AUTO_LENGTH, &message) == napi_ok)
        napi_create_error(env, NULL, message, &outcome);
    }
  }
  if (outcome) {
    if (ok) napi_resolve_deferred(env, r->deferred, outcome);
    else napi_reject_deferred(env, r->deferred, outcome);
  }
  napi_delete_async_work(env, r->work);
  release_dump(r);
}

/*
 * dumpRecords(handle, request: Buffer, kind: 0 routes | 1 neighbours, filter: number, dev?: string, indexAt?: number,
 *             protocol?: number) -> Promise<{ records, others, interrupted, filter }>
 * The dump's socket is opened in the namespace of `handle`'s socket, found from the socket itself (SIOCGSKNS),
 * not by a path that may name another namespace by now. With `dev`, the filter is that device's index, looked up
 * there and written into the request at byte `indexAt`. With `protocol`, a route dump keeps that protocol's routes
 * in `records` and puts the destinations of the other IPv4 routes (not the default) in `others`.
 */
static napi_value dump_records(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "tulle_native.dumpRecords: 4 arguments expected");
    return NULL;
  }
  nl_socket *s = get_socket(env, argv[0]);
  if (!s) return NULL;
  void *data;
  size_t length;
  int32_t kind;
  uint32_t filter;
  CHECK_NAPI(napi_get_buffer_info(env, argv[1], &data, &length));
  CHECK_NAPI(napi_get_value_int32(env, argv[2], &kind));
  CHECK_NAPI(napi_get_value_uint32(env, argv[3], &filter));
  if ((kind != DUMP_ROUTES && kind != DUMP_NEIGHBORS) || length < NLMSG_HDRLEN || length > 65536) {
    napi_throw_range_error(env, NULL, "tulle_native.dumpRecords: a route or neighbour dump request expected");
    return NULL;
  }
  char dev[IF_NAMESIZE] = "";
  uint32_t index_at = 0;
  napi_valuetype dev_type = napi_undefined;
  if (argc >= 6) CHECK_NAPI(napi_typeof(env, argv[4], &dev_type));
  if (dev_type != napi_undefined && dev_type != napi_null) {
    char name[64]; /* longer than any device name, so that a longer one is seen, not cut */
    size_t dev_len = 0;
    if (dev_type != napi_string || napi_get_value_string_utf8(env, argv[4], name, sizeof name, &dev_len) != napi_ok || dev_len == 0 ||
        dev_len >= IF_NAMESIZE || napi_get_value_uint32(env, argv[5], &index_at) != napi_ok || (size_t)index_at + 4 > length) {
      napi_throw_range_error(env, NULL, "tulle_native.dumpRecords: a device name and the offset of its index in the request expected");
      return NULL;
    }
    memcpy(dev, name, dev_len + 1);
  }
  int32_t split_protocol = -1;
  napi_valuetype protocol_type = napi_undefined;
  if (argc >= 7) CHECK_NAPI(napi_typeof(env, argv[6], &protocol_type));
  if (protocol_type != napi_undefined && protocol_type != napi_null) {
    if (kind != DUMP_ROUTES || napi_get_value_int32(env, argv[6], &split_protocol) != napi_ok || split_protocol < 0 || split_protocol > 255) {
      napi_throw_range_error(env, NULL, "tulle_native.dumpRecords: a route protocol (0..255) to split a route dump by expected");
      return NULL;
    }
  }
  if (s->fd < 0) return throw_errno(env, EBADF, "dump");
  int ns_fd = -1;
  if (!s->own_ns && (ns_fd = ioctl(s->fd, SIOCGSKNS)) < 0) return throw_errno(env, errno, "ioctl SIOCGSKNS");
  dump_request *r = calloc(1, sizeof *r);
  if (r) r->request = malloc(length);
  if (!r || !r->request) {
    free(r);
    if (ns_fd >= 0) close(ns_fd);
    return throw_errno(env, ENOMEM, "malloc");
  }
  r->ns_fd = ns_fd;
  memcpy(r->request, data, length);
  r->request_len = length;
  r->kind = kind;
  r->filter = filter;
  memcpy(r->dev, dev, sizeof dev);
  r->index_at = index_at;
  r->split_protocol = split_protocol;
  return queue_promise_work(env, "tulle.dumpRecords", dump_execute, dump_complete, r, &r->deferred, &r->work, release_dump);
}

/* ------------------------------------------------------------------------------------------------------ */
/* flock                                                                                                    */

typedef struct {
  int fd;
  int op;
  int err;
  napi_deferred deferred;
  napi_async_work work;
} flock_request;

static int parse_flock_op(napi_env env, napi_value value, int *op) {
  char mode[16];
  size_t len;
  if (napi_get_value_string_utf8(env, value, mode, sizeof mode, &len) != napi_ok) return 0;
  if (strcmp(mode, "exclusive") == 0) *op = LOCK_EX;
  else if (strcmp(mode, "shared") == 0) *op = LOCK_SH;
  else if (strcmp(mode, "unlock") == 0) *op = LOCK_UN;
  else return 0;
  return 1;
}

/* Runs on a libuv pool thread: a blocking LOCK_EX may wait for another process for as long as it holds it. */
static void flock_execute(napi_env env, void *data) {
  (void)env;
  flock_request *r = data;
  int rc;
  do {
    rc = flock(r->fd, r->op);
  } while (rc != 0 && errno == EINTR);
  r->err = rc == 0 ? 0 : errno;
}

static void flock_complete(napi_env env, napi_status status, void *data) {
  flock_request *r = data;
  if (status != napi_ok && r->err == 0) r->err = ECANCELED;
  napi_value outcome = NULL;
  if (r->err) {
    outcome = make_errno_error(env, r->err, "flock");
    if (outcome) napi_reject_deferred(env, r->deferred, outcome);
  } else if (napi_get_undefined(env, &outcome) == napi_ok) {
    napi_resolve_deferred(env, r->deferred, outcome);
  }
  napi_delete_async_work(env, r->work);
  free(r);
}

/* flock(fd, 'exclusive' | 'shared' | 'unlock') -> Promise<void> */
static napi_value do_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  int op;
  CHECK_NAPI(napi_get_value_int32(env, argv[0], &fd));
  if (!parse_flock_op(env, argv[1], &op)) {
    napi_throw_type_error(env, NULL, "tulle_native.flock: mode must be exclusive, shared or unlock");
    return NULL;
  }
  flock_request *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, ENOMEM, "calloc");
  r->fd = fd;
  r->op = op;
  return queue_promise_work(env, "tulle.flock", flock_execute, flock_complete, r, &r->deferred, &r->work, free);
}

/* tryFlock(fd, mode) -> true if taken now, false if someone else holds a conflicting lock. */
static napi_value try_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  int op;
  CHECK_NAPI(napi_get_value_int32(env, argv[0], &fd));
  if (!parse_flock_op(env, argv[1], &op)) {
    napi_throw_type_error(env, NULL, "tulle_native.tryFlock: mode must be exclusive, shared or unlock");
    return NULL;
  }
  int rc;
  do {
    rc = flock(fd, op | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EWOULDBLOCK) return throw_errno(env, errno, "flock");
  napi_value result;
  NAPI_OR_THROW(napi_get_boolean(env, rc == 0, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------------ */
/* errno names, for errors the kernel returns inside netlink ACKs                                          */

/* describeErrno(n) -> [name, message], e.g. [ 'ENETUNREACH', 'Network is unreachable' ] (strerror's words,
 * the ones iproute2 prints). */
static napi_value describe_errno(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t err;
  CHECK_NAPI(napi_get_value_int32(env, argv[0], &err));
  char name_buf[64];
  napi_value result, name, message;
  NAPI_OR_THROW(napi_create_array_with_length(env, 2, &result));
  NAPI_OR_THROW(napi_create_string_utf8(env, errno_name(err, name_buf, sizeof name_buf), NAPI_AUTO_LENGTH, &name));
  NAPI_OR_THROW(napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &message));
  NAPI_OR_THROW(napi_set_element(env, result, 0, name));
  NAPI_OR_THROW(napi_set_element(env, result, 1, message));
  return result;
}

/* ------------------------------------------------------------------------------------------------------ */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, nl_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"send", NULL, nl_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendQueued", NULL, nl_send_queued, NULL, NULL, NULL, napi_enumerable, NULL},
      {"startReading", NULL, nl_start_reading, NULL, NULL, NULL, napi_enumerable, NULL},
      {"receiveNow", NULL, nl_receive_now, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setReadingRef", NULL, nl_set_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, nl_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"portId", NULL, nl_port_id, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ignoreAnnouncementsOf", NULL, nl_ignore_announcements_of, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readFile", NULL, ns_read_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeFile", NULL, ns_write_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flock", NULL, do_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tryFlock", NULL, try_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"describeErrno", NULL, describe_errno, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dumpRecords", NULL, dump_records, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_OR_THROW(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
