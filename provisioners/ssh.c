/*
 * ssh.c: the SSH communicator over libssh2 (Debian's 1.10, OpenSSL backend).
 *
 * Who calls: the builder (through kiln_ssh_communicator) and the
 * provisioners in provision.c.
 *
 * Every libssh2 call runs in non-blocking mode inside a poll loop (wait_io)
 * whose slices are 200 ms long, so that SIGINT/SIGTERM (kiln_sleep_ms(0)
 * reports them) and deadlines are noticed promptly even while a remote
 * command is silent for minutes or the network is stuck. A connection
 * that drops (the instance reboots, sshd dies) surfaces as a socket error
 * from libssh2; the session is then marked dead and every later call
 * fails fast. Dead peers that vanish without a FIN are found by TCP
 * keepalives and TCP_USER_TIMEOUT on the socket.
 *
 * Uploads use SFTP with pipelining: libssh2_sftp_write cuts the buffer it
 * is given into 30000-byte write requests and keeps all of them in flight,
 * returning as acknowledgements come back. The window, the bytes handed to
 * one call and so the bytes in flight, is sized per upload from the
 * connection's TCP round trip (kiln_ssh_upload_window). What limits the
 * rate is the client's CPU (libssh2 1.10 encrypts each 16-byte block with
 * its own EVP_Cipher call, about half of its profile; kiln tops out near
 * 100 MB/s on this machine), so more than one round trip's worth of
 * 100 MiB/s in flight buys nothing. Below 384 KiB the pipeline is too
 * shallow even on loopback: in an A/B of bench/ssh_upload (200 MB, 9 runs
 * alternating, this shared 2-core machine) 256 KiB cost ~13% more client
 * CPU than 1 MiB (0.87 s against 0.76 s at best, 3388 context switches
 * against 2015: the pipeline drains between acknowledgements), while
 * 384 KiB matched 1 MiB (0.77 s); an older sweep found 2 MiB and more
 * slower on loopback (packets queued behind the server's 2 MiB channel
 * window). So a loopback or LAN upload keeps 384 KiB in flight and a
 * 20 ms WAN one 2 MiB, OpenSSH sftp's 64 x 32 KiB. The memory follows
 * (the window in libssh2's packets plus 1.25 windows of file buffer): a
 * fixed 1 MiB window with a 4 MiB buffer was ~5 MB of kiln build's peak
 * RSS in bench/packer-vs-kiln.sh, this is ~0.7 MB.
 */
#include "provisioners/ssh.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* not <netinet/tcp.h>: its tcp_info stops before tcpi_min_rtt */
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "core/clock.h"
#include "core/error.h"

#define TCP_CONNECT_MS 10000   /* one TCP connect (a firewall that drops SYNs) */
#define HANDSHAKE_MS 15000     /* banner, key exchange, authentication of one attempt */
#define SINGLE_ATTEMPT_MS 25000 /* timeout_ms == 0: one attempt, bounded like this */
#define POLL_SLICE_MS 200      /* cancellation is noticed within this */
#define CLOSE_GRACE_MS 1000    /* a polite goodbye before the socket is shut */
#define CANCEL_GRACE_MS 300    /* closing a channel after a cancel */
#define LINE_CAP (64 * 1024)   /* one line of remote output */
#define READ_CHUNK 32768
#define UPLOAD_WINDOW_MIN ((size_t)384 << 10)  /* see the top of the file */
#define UPLOAD_WINDOW_MAX ((size_t)2 << 20)    /* OpenSSH sftp: 64 x 32 KiB */
#define UPLOAD_WINDOW_UNKNOWN ((size_t)1 << 20) /* no round trip known */
#define UPLOAD_RATE_MAX ((uint64_t)100 << 20)  /* bytes/s: kiln's ceiling, see the top */
#define TREE_DEPTH_MAX 64
#define ABORTED INT_MIN        /* a wait gave up; ss->abort_code says why */

/* What libssh2 may negotiate, fastest first (the server picks among these). */
static const char pref_kex[] =
	"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,"
	"ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
	"diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
static const char pref_hostkey[] =
	"ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,"
	"rsa-sha2-512,rsa-sha2-256,ssh-rsa";
static const char pref_cipher[] =
	"aes128-ctr,aes192-ctr,aes256-ctr,aes128-cbc,aes192-cbc,aes256-cbc";
static const char pref_mac[] = "hmac-sha2-256,hmac-sha2-512,hmac-sha1";

typedef struct ssh_session {
	int fd;
	LIBSSH2_SESSION *s;
	LIBSSH2_SFTP *sftp;        /* started by the first upload */
	const kiln_events *events;
	char target[320];          /* "user@host:port", for messages */
	char host_key[64];         /* "SHA256:..." */
	bool dead;                 /* the connection dropped: every call fails fast */
	int abort_code;            /* why the last wait gave up (cancelled, timed out) */
} ssh_session;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void init_libssh2(void)
{
	init_rc = libssh2_init(0);
}

/* ---- waiting ------------------------------------------------------------- */

/*
 * Waits until the socket is ready in the direction libssh2 is blocked on,
 * at most one slice; then checks cancellation and the deadline (0: none).
 * On giving up, records the error and returns its code (also kept in
 * ss->abort_code so that loops can return it).
 */
static int wait_io(ssh_session *ss, uint64_t deadline_ms)
{
	struct pollfd p = { ss->fd, 0, 0 };
	int dir = ss->s ? libssh2_session_block_directions(ss->s) : 0;
	int slice = POLL_SLICE_MS, error;

	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		p.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	if (!p.events)
		p.events = POLLIN;
	if (deadline_ms) {
		uint64_t now = kiln_clock_now_ms();
		if (now >= deadline_ms)
			return ss->abort_code = kiln_error_set(KILN_ETIMEOUT, "timed out");
		slice = (int)KILN_MIN((uint64_t)slice, deadline_ms - now);
	}
	if (poll(&p, 1, slice) < 0 && errno != EINTR)
		return ss->abort_code = kiln_error_set_os(KILN_ERROR, errno, "poll");
	if ((error = kiln_sleep_ms(0)) < 0)
		return ss->abort_code = error;
	return 0;
}

/* Runs an int-returning libssh2 call until it stops saying EAGAIN. */
#define RETRY(ss, rc, call, deadline)                                   \
	do {                                                            \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {       \
			if (wait_io((ss), (deadline)) < 0) {            \
				(rc) = ABORTED;                         \
				break;                                  \
			}                                               \
		}                                                       \
	} while (0)

static bool is_disconnect(int rc)
{
	return rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV ||
	       rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT;
}

static const char *sftp_status_text(unsigned long st)
{
	switch (st) {
	case LIBSSH2_FX_EOF: return "end of file";
	case LIBSSH2_FX_NO_SUCH_FILE: return "no such file or directory";
	case LIBSSH2_FX_PERMISSION_DENIED: return "permission denied";
	case LIBSSH2_FX_FAILURE: return "failure (the server gave no reason)";
	case LIBSSH2_FX_NO_SUCH_PATH: return "no such path";
	case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "file already exists";
	case LIBSSH2_FX_WRITE_PROTECT: return "write protected";
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return "no space left on the file system";
	case LIBSSH2_FX_QUOTA_EXCEEDED: return "quota exceeded";
	case LIBSSH2_FX_NOT_A_DIRECTORY: return "not a directory";
	case LIBSSH2_FX_OP_UNSUPPORTED: return "operation not supported";
	default: return "sftp error";
	}
}

/*
 * Turns a failed libssh2 call (rc) into a kiln error prefixed with what
 * was being done; marks the session dead when the connection is gone.
 */
static int ssh_error(ssh_session *ss, int rc, const char *fmt, ...) KILN_PRINTF(3, 4);
static int ssh_error(ssh_session *ss, int rc, const char *fmt, ...)
{
	char what[768], *msg = NULL;
	va_list ap;

	if (rc == ABORTED)
		return kiln_error_last()->code ? kiln_error_last()->code : ss->abort_code;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (ss->s)
		libssh2_session_last_error(ss->s, &msg, NULL, 0);
	if (is_disconnect(rc)) {
		ss->dead = true;
		return kiln_error_set(KILN_ERROR, "%s: the connection to '%s' was lost", what,
				      ss->target);
	}
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && ss->sftp) {
		unsigned long st = libssh2_sftp_last_error(ss->sftp);
		return kiln_error_set(st == LIBSSH2_FX_NO_SUCH_FILE || st == LIBSSH2_FX_NO_SUCH_PATH
					      ? KILN_ENOTFOUND : KILN_ERROR,
				      "%s: %s", what, sftp_status_text(st));
	}
	return kiln_error_set(KILN_ERROR, "%s: %s (libssh2 error %d)", what,
			      msg && *msg ? msg : "ssh error", rc);
}

/* ---- connecting ------------------------------------------------------------ */

static int tcp_connect(ssh_session *ss, const char *host, int port, uint64_t deadline)
{
	struct addrinfo hints, *res = NULL, *ai;
	char service[16];
	int rc, last_errno = ECONNREFUSED, error = -1, one = 1;
	uint64_t end = KILN_MIN(deadline, kiln_clock_now_ms() + TCP_CONNECT_MS);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	if ((rc = getaddrinfo(host, service, &hints, &res)) != 0)
		return kiln_error_set(KILN_ERROR, "cannot resolve '%s': %s", host, gai_strerror(rc));

	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			int soerr = 0;
			socklen_t len = sizeof(soerr);
			if (errno != EINPROGRESS) {
				last_errno = errno;
				close(fd);
				continue;
			}
			for (;;) {
				struct pollfd p = { fd, POLLOUT, 0 };
				uint64_t now = kiln_clock_now_ms();
				if (now >= end) {
					close(fd);
					freeaddrinfo(res);
					return kiln_error_set(KILN_ETIMEOUT,
							      "cannot connect to '%s:%d': timed out",
							      host, port);
				}
				rc = poll(&p, 1, (int)KILN_MIN((uint64_t)POLL_SLICE_MS, end - now));
				if ((error = kiln_sleep_ms(0)) < 0) {
					close(fd);
					freeaddrinfo(res);
					return error;
				}
				if (rc > 0)
					break;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
				soerr = errno;
			if (soerr) {
				last_errno = soerr;
				close(fd);
				continue;
			}
		}
		ss->fd = fd;
		break;
	}
	freeaddrinfo(res);
	if (ss->fd < 0)
		return kiln_error_set_os(KILN_ERROR, last_errno, "cannot connect to '%s:%d'", host,
					 port);

	/*
	 * Small requests (an SFTP open, a channel request) must not wait for
	 * Nagle; keepalives and a user timeout find a peer that vanished
	 * without a word (a hard reboot, a pulled network) in about 30 s.
	 */
	setsockopt(ss->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(ss->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	{
		int idle = 15, intvl = 5, cnt = 3;
		unsigned int user_timeout_ms = 30000;
		setsockopt(ss->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(ss->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		setsockopt(ss->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
		setsockopt(ss->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
			   sizeof(user_timeout_ms));
	}
	return 0;
}

/* "SHA256:" + unpadded base64 of the 32-byte hash, as ssh-keygen -l prints. */
static void format_sha256(char out[64], const unsigned char *md)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 7;

	memcpy(out, "SHA256:", 7);
	for (i = 0; i < 32; i += 3) {
		uint32_t v = (uint32_t)md[i] << 16;
		size_t left = 32 - i;
		if (left > 1)
			v |= (uint32_t)md[i + 1] << 8;
		if (left > 2)
			v |= md[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		if (left > 1)
			out[o++] = b64[(v >> 6) & 63];
		if (left > 2)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
}

/* Fingerprints compare without base64 padding (some tools print it). */
static bool fingerprint_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	while (la && a[la - 1] == '=')
		la--;
	while (lb && b[lb - 1] == '=')
		lb--;
	return la == lb && memcmp(a, b, la) == 0;
}

static int check_host_key(ssh_session *ss, const kiln_ssh_options *o)
{
	const char *hash = libssh2_hostkey_hash(ss->s, LIBSSH2_HOSTKEY_HASH_SHA256);
	kiln_buf want = KILN_BUF_INIT;
	size_t i;
	int error;

	if (!hash)
		return kiln_error_set(KILN_ERROR, "'%s' sent no host key", ss->target);
	format_sha256(ss->host_key, (const unsigned char *)hash);
	if (!o->n_host_key_fingerprints)
		return 0;
	for (i = 0; i < o->n_host_key_fingerprints; i++)
		if (o->host_key_fingerprints[i] &&
		    fingerprint_eq(ss->host_key, o->host_key_fingerprints[i]))
			return 0;
	for (i = 0; i < o->n_host_key_fingerprints && want.len < 400; i++)
		kiln_buf_printf(&want, "%s'%s'", i ? ", " : "",
				o->host_key_fingerprints[i] ? o->host_key_fingerprints[i] : "");
	error = kiln_error_set(KILN_EAUTH,
			       "host key of '%s' is '%s', not the expected %s: refusing to connect",
			       ss->target, ss->host_key, want.ptr);
	kiln_buf_release(&want);
	return error;
}

/*
 * Sets the preference list, keeping only what this libssh2 supports:
 * libssh2 1.10 strips unknown names itself with an overlapping memcpy
 * (undefined behaviour; ASan catches it), so it must never see one.
 */
static void set_pref(LIBSSH2_SESSION *s, int method, const char *wanted)
{
	const char **algs = NULL;
	char list[512] = "";
	size_t used = 0;
	int n = libssh2_session_supported_algs(s, method, &algs), i;
	const char *w = wanted;

	if (n <= 0)
		return;
	while (*w) {
		size_t len = strcspn(w, ",");
		for (i = 0; i < n; i++) {
			if (strlen(algs[i]) == len && !memcmp(algs[i], w, len) &&
			    used + len + 2 < sizeof(list)) {
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%.*s",
							 used ? "," : "", (int)len, w);
				break;
			}
		}
		w += len + (w[len] == ',');
	}
	libssh2_free(s, algs);
	/* nothing of ours is supported: keep libssh2's defaults */
	if (used)
		libssh2_session_method_pref(s, method, list);
}

static void session_free(ssh_session *ss);

/*
 * One attempt: TCP, handshake, host key, authentication. *retry says
 * whether trying again could help (not after a wrong host key, a key
 * libssh2 cannot read, or a cancel).
 */
static int connect_once(ssh_session **out, const kiln_ssh_options *o, uint64_t deadline,
			bool *retry)
{
	ssh_session *ss = calloc(1, sizeof(*ss));
	uint64_t step_end;
	int rc, error = -1;

	*retry = true;
	if (!ss) {
		*retry = false;
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	}
	ss->fd = -1;
	ss->events = o->events;
	snprintf(ss->target, sizeof(ss->target), "%s@%s:%d", o->username, o->host, o->port);

	if ((error = tcp_connect(ss, o->host, o->port, deadline)) < 0)
		goto done;
	if (!(ss->s = libssh2_session_init_ex(NULL, NULL, NULL, ss))) {
		error = kiln_error_set(KILN_ENOMEM, "cannot create an ssh session");
		*retry = false;
		goto done;
	}
	libssh2_session_set_blocking(ss->s, 0);
	set_pref(ss->s, LIBSSH2_METHOD_KEX, pref_kex);
	set_pref(ss->s, LIBSSH2_METHOD_HOSTKEY, pref_hostkey);
	set_pref(ss->s, LIBSSH2_METHOD_CRYPT_CS, pref_cipher);
	set_pref(ss->s, LIBSSH2_METHOD_CRYPT_SC, pref_cipher);
	set_pref(ss->s, LIBSSH2_METHOD_MAC_CS, pref_mac);
	set_pref(ss->s, LIBSSH2_METHOD_MAC_SC, pref_mac);

	step_end = KILN_MIN(deadline, kiln_clock_now_ms() + HANDSHAKE_MS);
	RETRY(ss, rc, libssh2_session_handshake(ss->s, ss->fd), step_end);
	if (rc) {
		if (rc == ABORTED && ss->abort_code == KILN_ETIMEOUT)
			error = kiln_error_set(KILN_ETIMEOUT, "no ssh handshake from '%s:%d' in time",
					       o->host, o->port);
		else
			error = ssh_error(ss, rc, "ssh handshake with '%s:%d' failed", o->host, o->port);
		goto done;
	}
	if ((error = check_host_key(ss, o)) < 0) {
		*retry = false;
		goto done;
	}

	step_end = KILN_MIN(deadline, kiln_clock_now_ms() + HANDSHAKE_MS);
	RETRY(ss, rc,
	      libssh2_userauth_publickey_frommemory(
		      ss->s, o->username, strlen(o->username), o->key->public_openssh,
		      strlen(o->key->public_openssh), o->key->private_openssh,
		      strlen(o->key->private_openssh), NULL),
	      step_end);
	if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
		/* the instance may not have installed the key yet: worth retrying */
		error = kiln_error_set(KILN_EAUTH, "'%s' refused the key '%s'", ss->target,
				       o->key->fingerprint);
		goto done;
	}
	if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) {
		error = ssh_error(ss, rc, "cannot use the key '%s'", o->key->fingerprint);
		*retry = false;
		goto done;
	}
	if (rc) {
		error = ssh_error(ss, rc, "authentication with '%s' failed", ss->target);
		goto done;
	}

	*out = ss;
	ss = NULL;
	error = 0;
done:
	if (error == KILN_ECANCELLED)
		*retry = false;
	/* a failed attempt is dropped without a goodbye that could wait */
	if (ss)
		ss->dead = true;
	session_free(ss);
	return error;
}

static int ssh_connect(void **out, const kiln_ssh_options *opts)
{
	ssh_session *ss = NULL;
	kiln_ssh_options copy, *o = &copy;
	kiln_backoff backoff;
	kiln_error last;
	uint64_t start = kiln_clock_now_ms(), deadline;
	unsigned attempt;
	int error;

	if (!opts || !opts->host || !*opts->host || !opts->username || !*opts->username ||
	    !opts->key || !opts->key->public_openssh || !opts->key->private_openssh ||
	    opts->port < 0 || opts->port > 65535)
		return kiln_error_set(KILN_EINVALID, "ssh needs a host, a port, a user and a key");
	copy = *opts;
	if (!copy.port)
		copy.port = 22;
	pthread_once(&init_once, init_libssh2);
	if (init_rc != 0)
		return kiln_error_set(KILN_ERROR, "cannot initialise libssh2");

	deadline = start + (o->timeout_ms ? o->timeout_ms : SINGLE_ATTEMPT_MS);
	kiln_backoff_init(&backoff, 250, 2000);
	for (attempt = 1;; attempt++) {
		bool retry;
		uint64_t now, wait;

		error = connect_once(&ss, o, deadline, &retry);
		if (error == 0) {
			kiln_emit(o->events, "info", KILN_LEVEL_DEBUG,
				  json_pack("{s:s,s:i,s:i,s:s}", "host", o->host, "port", o->port,
					    "attempt", (int)attempt, "host_key", ss->host_key),
				  "ssh: connected to %s (host key %s)", ss->target, ss->host_key);
			*out = ss;
			return 0;
		}
		kiln_emit(o->events, "info", KILN_LEVEL_DEBUG,
			  json_pack("{s:s,s:i,s:i,s:s}", "host", o->host, "port", o->port, "attempt",
				    (int)attempt, "error", kiln_error_last()->message),
			  "ssh: attempt %u to %s@%s:%d: %s", attempt, o->username, o->host, o->port,
			  kiln_error_last()->message);
		if (!retry || !o->timeout_ms)
			return error;
		now = kiln_clock_now_ms();
		if (now >= deadline)
			break;
		wait = KILN_MIN(kiln_backoff_next(&backoff), deadline - now);
		kiln_error_save(&last);
		if ((error = kiln_sleep_ms(wait)) < 0)
			return error;
		kiln_error_restore(&last);
		if (kiln_clock_now_ms() >= deadline)
			break;
	}
	kiln_error_save(&last);
	return kiln_error_set(last.code == KILN_EAUTH ? KILN_EAUTH : KILN_ETIMEOUT,
			      "cannot reach ssh on '%s@%s:%d' within %.1f s (%u attempts): %s",
			      o->username, o->host, o->port, (double)o->timeout_ms / 1000.0, attempt,
			      last.message);
}

static const char *ssh_host_key(void *session)
{
	return session ? ((ssh_session *)session)->host_key : NULL;
}

/* ---- closing ----------------------------------------------------------------- */

static void session_free(ssh_session *ss)
{
	int rc;

	if (!ss)
		return;
	kiln_cancel_shield_push();
	if (ss->s && !ss->dead) {
		uint64_t deadline = kiln_clock_now_ms() + CLOSE_GRACE_MS;
		kiln_error saved;
		kiln_error_save(&saved);
		if (ss->sftp) {
			RETRY(ss, rc, libssh2_sftp_shutdown(ss->sftp), deadline);
			if (rc == 0)
				ss->sftp = NULL;
		}
		RETRY(ss, rc, libssh2_session_disconnect(ss->s, "kiln is done"), deadline);
		kiln_error_restore(&saved);
	}
	/*
	 * Whatever is left is freed in blocking mode over a shut socket:
	 * every send and receive fails at once, so nothing can hang here.
	 */
	if (ss->fd >= 0)
		shutdown(ss->fd, SHUT_RDWR);
	if (ss->s) {
		libssh2_session_set_blocking(ss->s, 1);
		if (ss->sftp)
			libssh2_sftp_shutdown(ss->sftp);
		libssh2_session_free(ss->s);
	}
	if (ss->fd >= 0)
		close(ss->fd);
	kiln_cancel_shield_pop();
	free(ss);
}

static void ssh_close(void *session)
{
	session_free(session);
}

/* ---- exec ------------------------------------------------------------------- */

typedef struct line_acc {
	kiln_buf b;
	int stream;
	kiln_ssh_output_fn out;
	void *ctx;
} line_acc;

static void line_emit(line_acc *l)
{
	size_t n = l->b.len;
	if (n && l->b.ptr[n - 1] == '\r')
		n--;
	if (l->out)
		l->out(l->ctx, l->stream, l->b.ptr, n);
	kiln_buf_reset(&l->b);
}

/* Splits what arrives into lines; a line longer than LINE_CAP comes out in pieces. */
static void line_feed(line_acc *l, const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n, room = LINE_CAP - l->b.len;
		if (seg > room || (seg == room && !nl)) {
			kiln_buf_put(&l->b, p, room);
			line_emit(l);
			p += room;
			n -= room;
			continue;
		}
		kiln_buf_put(&l->b, p, seg);
		p += seg;
		n -= seg;
		if (nl) {
			line_emit(l);
			p++;
			n--;
		}
	}
}

static void line_flush(line_acc *l)
{
	if (l->b.len)
		line_emit(l);
}

/* After a cancel: say goodbye to the channel briefly; libssh2 frees it with the session. */
static void abandon_channel(ssh_session *ss, LIBSSH2_CHANNEL *ch)
{
	kiln_error saved;
	uint64_t deadline;
	int rc;

	kiln_error_save(&saved);
	kiln_cancel_shield_push();
	deadline = kiln_clock_now_ms() + CANCEL_GRACE_MS;
	RETRY(ss, rc, libssh2_channel_close(ch), deadline);
	if (rc == 0)
		RETRY(ss, rc, libssh2_channel_free(ch), deadline);
	kiln_cancel_shield_pop();
	kiln_error_restore(&saved);
}

static int ssh_exec(void *session, const char *command, kiln_ssh_output_fn out, void *ctx,
		    int *exit_status, bool *disconnected)
{
	ssh_session *ss = session;
	LIBSSH2_CHANNEL *ch = NULL;
	line_acc lines[2];
	char *buf = NULL;
	int rc = 0, error = -1, i;

	*exit_status = -1;
	*disconnected = false;
	if (ss->dead)
		return kiln_error_set(KILN_ERROR, "the ssh connection to '%s' is closed", ss->target);
	for (i = 0; i < 2; i++) {
		kiln_buf_init(&lines[i].b, LINE_CAP);
		lines[i].stream = i + 1;
		lines[i].out = out;
		lines[i].ctx = ctx;
	}
	if (!(buf = malloc(READ_CHUNK))) {
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}

	while (!(ch = libssh2_channel_open_session(ss->s))) {
		rc = libssh2_session_last_errno(ss->s);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			goto failed;
		if (wait_io(ss, 0) < 0) {
			rc = ABORTED;
			goto failed;
		}
	}
	RETRY(ss, rc, libssh2_channel_exec(ch, command), 0);
	if (rc)
		goto failed;
	/* the command reads no stdin: give it EOF rather than a wait forever */
	RETRY(ss, rc, libssh2_channel_send_eof(ch), 0);
	if (rc)
		goto failed;

	for (;;) {
		bool progress = false;
		ssize_t n;

		n = libssh2_channel_read(ch, buf, READ_CHUNK);
		if (n > 0) {
			line_feed(&lines[0], buf, (size_t)n);
			progress = true;
		} else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
			rc = (int)n;
			goto failed;
		}
		n = libssh2_channel_read_stderr(ch, buf, READ_CHUNK);
		if (n > 0) {
			line_feed(&lines[1], buf, (size_t)n);
			progress = true;
		} else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
			rc = (int)n;
			goto failed;
		}
		if (progress)
			continue;
		if (libssh2_channel_eof(ch))
			break;
		if (wait_io(ss, 0) < 0) {
			rc = ABORTED;
			goto failed;
		}
	}
	line_flush(&lines[0]);
	line_flush(&lines[1]);

	/* the status comes before the server's close, possibly after its EOF */
	RETRY(ss, rc, libssh2_channel_wait_closed(ch), 0);
	if (rc)
		goto failed;
	{
		char *sig = NULL;
		size_t sig_len = 0;
		libssh2_channel_get_exit_signal(ch, &sig, &sig_len, NULL, NULL, NULL, NULL);
		if (sig) {
			kiln_emit(ss->events, "warning", KILN_LEVEL_WARN,
				  json_pack("{s:s%}", "signal", sig, sig_len),
				  "remote command was killed by signal %.*s", (int)sig_len, sig);
			libssh2_free(ss->s, sig);
			*exit_status = -1;
		} else {
			*exit_status = libssh2_channel_get_exit_status(ch);
		}
	}
	RETRY(ss, rc, libssh2_channel_free(ch), 0);
	ch = NULL;
	if (rc)
		goto failed;
	error = 0;
	goto done;

failed:
	if (rc == ABORTED) {
		error = ss->abort_code;
		if (ch)
			abandon_channel(ss, ch);
		ch = NULL;
	} else if (is_disconnect(rc)) {
		/* a reboot, or sshd killed: the caller decides whether that was expected */
		ss->dead = true;
		line_flush(&lines[0]);
		line_flush(&lines[1]);
		*disconnected = true;
		*exit_status = -1;
		ch = NULL; /* freed with the session */
		error = 0;
	} else {
		error = ssh_error(ss, rc, "cannot run a command on '%s'", ss->target);
	}
done:
	for (i = 0; i < 2; i++)
		kiln_buf_release(&lines[i].b);
	free(buf);
	return error;
}

/* ---- sftp ----------------------------------------------------------------------- */

static int sftp_ready(ssh_session *ss)
{
	int rc;

	if (ss->dead)
		return kiln_error_set(KILN_ERROR, "the ssh connection to '%s' is closed", ss->target);
	while (!ss->sftp) {
		if ((ss->sftp = libssh2_sftp_init(ss->s)))
			break;
		rc = libssh2_session_last_errno(ss->s);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return ssh_error(ss, rc, "cannot start sftp on '%s'", ss->target);
		if (wait_io(ss, 0) < 0)
			return ss->abort_code;
	}
	return 0;
}

static int sftp_open(ssh_session *ss, LIBSSH2_SFTP_HANDLE **out, const char *path, int mode)
{
	LIBSSH2_SFTP_HANDLE *h;
	int rc;

	for (;;) {
		h = libssh2_sftp_open_ex(ss->sftp, path, (unsigned int)strlen(path),
					 LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC,
					 mode, LIBSSH2_SFTP_OPENFILE);
		if (h)
			break;
		rc = libssh2_session_last_errno(ss->s);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return ssh_error(ss, rc, "cannot create '%s' on '%s'", path, ss->target);
		if (wait_io(ss, 0) < 0)
			return ss->abort_code;
	}
	*out = h;
	return 0;
}

/* Closes h; after a failure (error < 0) only politely and keeps the first error. */
static int sftp_close(ssh_session *ss, LIBSSH2_SFTP_HANDLE *h, const char *path, int error)
{
	kiln_error saved;
	int rc;

	if (!h)
		return error;
	if (error < 0) {
		kiln_error_save(&saved);
		if (!ss->dead) {
			kiln_cancel_shield_push();
			RETRY(ss, rc, libssh2_sftp_close_handle(h),
			      kiln_clock_now_ms() + CANCEL_GRACE_MS);
			kiln_cancel_shield_pop();
		}
		kiln_error_restore(&saved);
		return error;
	}
	RETRY(ss, rc, libssh2_sftp_close_handle(h), 0);
	if (rc)
		return ssh_error(ss, rc, "cannot close '%s' on '%s'", path, ss->target);
	return 0;
}

/* Sets the exact permission bits (the sftp server's umask applies at create). */
static int sftp_chmod(ssh_session *ss, LIBSSH2_SFTP_HANDLE *h, const char *path, int mode)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	int rc;

	memset(&a, 0, sizeof(a));
	a.flags = LIBSSH2_SFTP_ATTR_PERMISSIONS;
	a.permissions = (unsigned long)(mode & 07777);
	if (h)
		RETRY(ss, rc, libssh2_sftp_fsetstat(h, &a), 0);
	else
		RETRY(ss, rc, libssh2_sftp_stat_ex(ss->sftp, path, (unsigned int)strlen(path),
						   LIBSSH2_SFTP_SETSTAT, &a), 0);
	if (rc)
		return ssh_error(ss, rc, "cannot set the mode of '%s' on '%s'", path, ss->target);
	return 0;
}

size_t kiln_ssh_upload_window(uint32_t rtt_us)
{
	uint64_t w;

	if (!rtt_us)
		return UPLOAD_WINDOW_UNKNOWN;
	w = (uint64_t)rtt_us * UPLOAD_RATE_MAX / 1000000;
	w = (w + 0xFFFF) & ~(uint64_t)0xFFFF; /* whole 64 KiB */
	return (size_t)KILN_MIN(KILN_MAX(w, (uint64_t)UPLOAD_WINDOW_MIN), (uint64_t)UPLOAD_WINDOW_MAX);
}

/*
 * The window for an upload starting now on ss. The round trip is the
 * kernel's minimum (the path's own delay), not its smoothed one: on an
 * interactive connection that one is mostly delayed acknowledgements
 * (3-9 ms measured on loopback, where the minimum is ~10 us).
 */
static size_t upload_window(const ssh_session *ss)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(ss->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt))
		return UPLOAD_WINDOW_UNKNOWN;
	return kiln_ssh_upload_window(ti.tcpi_min_rtt);
}

/*
 * One step of a pipelined write: hands libssh2 up to window bytes
 * starting at p (the bytes it already sent must be passed again,
 * unchanged) and returns how many the server acknowledged.
 */
static int sftp_write_step(ssh_session *ss, LIBSSH2_SFTP_HANDLE *h, const char *p, size_t n,
			   size_t window, const char *path, size_t *acked)
{
	ssize_t rc;

	for (;;) {
		rc = libssh2_sftp_write(h, p, KILN_MIN(n, window));
		if (rc > 0)
			break;
		if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN)
			return ssh_error(ss, (int)rc, "cannot write '%s' on '%s'", path, ss->target);
		if (wait_io(ss, 0) < 0)
			return ss->abort_code;
	}
	*acked = (size_t)rc;
	return 0;
}

static int sftp_write_mem(ssh_session *ss, LIBSSH2_SFTP_HANDLE *h, const char *data, size_t len,
			  const char *path, uint64_t *bytes)
{
	size_t off = 0, acked = 0, window = upload_window(ss);
	int error;

	while (off < len) {
		if ((error = sftp_write_step(ss, h, data + off, len - off, window, path, &acked)) < 0)
			return error;
		off += acked;
		if (bytes)
			*bytes += acked;
	}
	return 0;
}

/*
 * Streams a local file through a buffer of 1.25 windows: read from the
 * file in pieces of up to a quarter window, handed to libssh2 a window at
 * a time, and compacted (the unacknowledged tail, less than a window,
 * moved to the front) when less than a window is left at the end, that
 * is after at least a quarter window was acknowledged: moving costs at
 * most four copies of the data, in a buffer that stays in the CPU's cache
 * on loopback and LAN (480 KiB), next to libssh2's encryption of each
 * byte, which costs far more.
 */
static int sftp_write_fd(ssh_session *ss, LIBSSH2_SFTP_HANDLE *h, int fd, const char *local,
			 const char *path, uint64_t *bytes)
{
	const size_t window = upload_window(ss);
	const size_t cap = window + window / 4;
	char *buf = malloc(cap);
	size_t off = 0, len = 0, acked = 0;
	bool eof = false;
	int error = 0;

	if (!buf)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	for (;;) {
		if (off > cap - window) {
			memmove(buf, buf + off, len - off);
			len -= off;
			off = 0;
		}
		while (!eof && len < cap && len - off < window) {
			ssize_t n = read(fd, buf + len, cap - len);
			if (n < 0 && errno == EINTR) {
				if ((error = kiln_sleep_ms(0)) < 0)
					goto done;
				continue;
			}
			if (n < 0) {
				error = kiln_error_set_os(KILN_ERROR, errno, "cannot read '%s'", local);
				goto done;
			}
			if (n == 0)
				eof = true;
			len += (size_t)n;
		}
		if (off == len)
			break;
		if ((error = sftp_write_step(ss, h, buf + off, len - off, window, path, &acked)) < 0)
			goto done;
		off += acked;
		*bytes += acked;
	}
done:
	free(buf);
	return error;
}

static int remote_stat(ssh_session *ss, const char *path, LIBSSH2_SFTP_ATTRIBUTES *a,
		       bool *exists)
{
	int rc;

	memset(a, 0, sizeof(*a));
	RETRY(ss, rc, libssh2_sftp_stat_ex(ss->sftp, path, (unsigned int)strlen(path),
					   LIBSSH2_SFTP_STAT, a), 0);
	*exists = rc == 0;
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
		unsigned long st = libssh2_sftp_last_error(ss->sftp);
		if (st == LIBSSH2_FX_NO_SUCH_FILE || st == LIBSSH2_FX_NO_SUCH_PATH)
			return 0;
	}
	if (rc)
		return ssh_error(ss, rc, "cannot stat '%s' on '%s'", path, ss->target);
	return 0;
}

static bool remote_is_dir(const LIBSSH2_SFTP_ATTRIBUTES *a)
{
	return (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && LIBSSH2_SFTP_S_ISDIR(a->permissions);
}

/*
 * Creates path and its missing parents (mode, before the umask); *created
 * (may be NULL) says whether path itself was made here.
 */
static int remote_mkdir_p(ssh_session *ss, const char *path, int mode, bool *created)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	bool exists;
	const char *slash;
	int rc, error;

	if (created)
		*created = false;
	if ((error = remote_stat(ss, path, &a, &exists)) < 0)
		return error;
	if (exists) {
		if (!remote_is_dir(&a))
			return kiln_error_set(KILN_ERROR, "'%s' on '%s' exists and is not a directory",
					      path, ss->target);
		return 0;
	}
	slash = strrchr(path, '/');
	if (slash && slash != path) {
		char *parent = kiln_view_dup((kiln_view){ path, (size_t)(slash - path) });
		if (!parent)
			return KILN_ENOMEM;
		error = remote_mkdir_p(ss, parent, 0755, NULL);
		free(parent);
		if (error < 0)
			return error;
	}
	RETRY(ss, rc, libssh2_sftp_mkdir_ex(ss->sftp, path, (unsigned int)strlen(path), mode), 0);
	if (rc)
		return ssh_error(ss, rc, "cannot create the directory '%s' on '%s'", path, ss->target);
	if (created)
		*created = true;
	return 0;
}

static int upload_file(ssh_session *ss, const char *local, const struct stat *st,
		       const char *remote, uint64_t *bytes)
{
	LIBSSH2_SFTP_HANDLE *h = NULL;
	int fd, error, mode = (int)(st->st_mode & 07777);

	if ((fd = open(local, O_RDONLY | O_CLOEXEC)) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot open '%s'", local);
	if ((error = sftp_open(ss, &h, remote, mode)) == 0 &&
	    (error = sftp_write_fd(ss, h, fd, local, remote, bytes)) == 0)
		error = sftp_chmod(ss, h, remote, mode);
	error = sftp_close(ss, h, remote, error);
	close(fd);
	if (error < 0 && error != KILN_ECANCELLED)
		kiln_error_prefix("upload '%s'", local);
	return error;
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	return kiln_strdupf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

/*
 * Copies the directory local to remote. into_existing: remote is the
 * destination of a "dir/" upload, whose mode is left alone if it existed
 * (uploading "etc/" into /etc must not chmod /etc).
 */
static int upload_tree(ssh_session *ss, const char *local, const char *remote, int mode,
		       bool into_existing, int depth, uint64_t *bytes)
{
	DIR *d = NULL;
	struct dirent *e;
	bool created;
	int error;

	if (depth > TREE_DEPTH_MAX)
		return kiln_error_set(KILN_EINVALID, "'%s' is nested too deep (a symlink loop?)",
				      local);
	/* owner-writable while filling it; its own mode is set at the end */
	if ((error = remote_mkdir_p(ss, remote, mode | 0700, &created)) < 0)
		return error;
	if (!(d = opendir(local)))
		return kiln_error_set_os(KILN_ERROR, errno, "cannot read the directory '%s'", local);
	while ((errno = 0, e = readdir(d))) {
		char *l, *r;
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		l = path_join(local, e->d_name);
		r = path_join(remote, e->d_name);
		if (!l || !r)
			error = KILN_ENOMEM;
		else if (stat(l, &st) < 0)
			error = kiln_error_set_os(KILN_ERROR, errno, "cannot upload '%s'", l);
		else if (S_ISDIR(st.st_mode))
			error = upload_tree(ss, l, r, (int)(st.st_mode & 07777), false, depth + 1,
					    bytes);
		else if (S_ISREG(st.st_mode))
			error = upload_file(ss, l, &st, r, bytes);
		else
			error = kiln_error_set(KILN_EINVALID,
					       "cannot upload '%s': not a regular file or a directory", l);
		free(l);
		free(r);
		if (error < 0)
			goto done;
	}
	if (errno) {
		error = kiln_error_set_os(KILN_ERROR, errno, "cannot read the directory '%s'", local);
		goto done;
	}
	error = into_existing && !created ? 0 : sftp_chmod(ss, NULL, remote, mode);
done:
	closedir(d);
	return error;
}

/*
 * Packer's file provisioner semantics:
 *  - a file goes to remote_path; if remote_path ends in '/' or names an
 *    existing directory, into it under its own name;
 *  - a directory "dir" goes to remote_path/dir, "dir/" (trailing slash)
 *    has its contents copied into remote_path. Packer leaves a missing
 *    destination directory "undefined"; kiln creates it (and parents).
 * Mode bits are kept; symbolic links are followed.
 */
static int ssh_upload(void *session, const char *local_path, const char *remote_path,
		      uint64_t *bytes)
{
	ssh_session *ss = session;
	struct stat st;
	char *local = NULL, *remote = NULL, *base;
	size_t n;
	uint64_t ignored = 0;
	int error;

	if (!bytes)
		bytes = &ignored;
	if (!local_path || !*local_path || !remote_path || !*remote_path)
		return kiln_error_set(KILN_EINVALID, "an upload needs a source and a destination");
	if (stat(local_path, &st) < 0)
		return kiln_error_set_os(KILN_ERROR, errno, "cannot upload '%s'", local_path);
	if ((error = sftp_ready(ss)) < 0)
		return error;

	if (!(local = kiln_strdup(local_path)))
		return KILN_ENOMEM;
	n = strlen(local);
	while (n > 1 && local[n - 1] == '/')
		local[--n] = '\0';
	base = strrchr(local, '/') ? strrchr(local, '/') + 1 : local;

	if (S_ISDIR(st.st_mode)) {
		bool contents = local_path[strlen(local_path) - 1] == '/' || !strcmp(base, ".") ||
				!strcmp(base, "..") || !strcmp(local, "/");
		remote = contents ? kiln_strdup(remote_path) : path_join(remote_path, base);
		if (!remote) {
			error = KILN_ENOMEM;
			goto done;
		}
		error = upload_tree(ss, local, remote, (int)(st.st_mode & 07777), contents, 0, bytes);
	} else if (S_ISREG(st.st_mode)) {
		LIBSSH2_SFTP_ATTRIBUTES a;
		bool exists = false;
		size_t rn = strlen(remote_path);
		if (remote_path[rn - 1] != '/' &&
		    (error = remote_stat(ss, remote_path, &a, &exists)) < 0)
			goto done;
		remote = remote_path[rn - 1] == '/' || (exists && remote_is_dir(&a))
				 ? path_join(remote_path, base)
				 : kiln_strdup(remote_path);
		if (!remote) {
			error = KILN_ENOMEM;
			goto done;
		}
		error = upload_file(ss, local, &st, remote, bytes);
	} else {
		error = kiln_error_set(KILN_EINVALID,
				       "cannot upload '%s': not a regular file or a directory",
				       local_path);
	}
done:
	free(local);
	free(remote);
	return error;
}

static int ssh_upload_data(void *session, const void *data, size_t len, const char *remote_path,
			   int mode)
{
	ssh_session *ss = session;
	LIBSSH2_SFTP_HANDLE *h = NULL;
	int error;

	if (!remote_path || !*remote_path)
		return kiln_error_set(KILN_EINVALID, "an upload needs a destination");
	if ((error = sftp_ready(ss)) < 0)
		return error;
	if ((error = sftp_open(ss, &h, remote_path, mode)) == 0 &&
	    (error = sftp_write_mem(ss, h, data, len, remote_path, NULL)) == 0)
		error = sftp_chmod(ss, h, remote_path, mode);
	return sftp_close(ss, h, remote_path, error);
}

const kiln_communicator kiln_ssh_communicator = {
	ssh_connect, ssh_host_key, ssh_exec, ssh_upload, ssh_upload_data, ssh_close,
};
