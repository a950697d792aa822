/*
 * sshd.h: a real OpenSSH sshd on a loopback port, for tests.
 *
 * Who calls: the communicator's and provisioners' unit tests, and the
 * builder's tests, which need a real "instance" to provision. Each server
 * lives in a fresh temporary directory holding its sshd_config, a host key
 * made with ssh-keygen, an authorized_keys file, its pid file and its log
 * (sshd -e writes there): read the log when a test fails.
 *
 *	kiln_test_sshd sshd;
 *	if (kiln_test_sshd_unavailable()) skip();
 *	kiln_test_sshd_init(&sshd);
 *	kiln_test_sshd_authorize(&sshd, kp.public_openssh);
 *	kiln_test_sshd_start(&sshd);
 *	... connect to 127.0.0.1:sshd.port as sshd.user ...
 *	kiln_test_sshd_release(&sshd);
 *
 * sshd must run as root (privilege separation, logging in as anyone), and
 * it is stopped by its pid, never by name. Waits here are real sleeps on
 * purpose: the server runs in real time even when a test installs the
 * virtual clock.
 */
#ifndef KILN_TEST_SSHD_H
#define KILN_TEST_SSHD_H

#include <sys/types.h>

#include "core/common.h"

typedef struct kiln_test_sshd {
	char *dir;                 /* the temporary directory (heap) */
	char *config_path;         /* dir/sshd_config */
	char *authorized_keys;     /* dir/authorized_keys */
	char *log_path;            /* dir/sshd.log */
	char host_fingerprint[64]; /* "SHA256:..." of the host key, from ssh-keygen -l */
	char user[64];             /* the user tests log in as (the current one) */
	int port;                  /* a free port on 127.0.0.1, chosen by init */
	pid_t pid;                 /* the sshd listener, 0 when stopped */
	/* lines appended to sshd_config at start (e.g. AuthorizedKeysCommand); borrowed */
	const char *extra_config;
} kiln_test_sshd;

/* Why a real sshd cannot run here ("not root", "no /usr/sbin/sshd"), or NULL. */
const char *kiln_test_sshd_unavailable(void);

/* Creates the directory, the host key and an empty authorized_keys; picks a port. */
int kiln_test_sshd_init(kiln_test_sshd *s);
/* Appends a public key line ("ssh-ed25519 AAAA... comment") to authorized_keys. */
int kiln_test_sshd_authorize(kiln_test_sshd *s, const char *public_key);
/* Writes sshd_config, starts sshd -D and waits until its port answers (10 s). */
int kiln_test_sshd_start(kiln_test_sshd *s);
/* Starts sshd after delay_ms and returns at once (for "the instance boots late"). */
int kiln_test_sshd_start_delayed(kiln_test_sshd *s, unsigned delay_ms);
/* Stops the listener by pid (SIGTERM, then SIGKILL after 2 s) and reaps it. */
void kiln_test_sshd_stop(kiln_test_sshd *s);
/* Stops it and removes the directory. */
void kiln_test_sshd_release(kiln_test_sshd *s);

/*
 * Runs a shell command locally and appends its stdout to out (up to
 * out_size - 1 bytes, NUL-terminated); returns its exit status, -1 if it
 * could not run. For checks such as ssh-keygen -l and sha256sum.
 */
int kiln_test_sh(char *out, size_t out_size, const char *fmt, ...) KILN_PRINTF(3, 4);

#endif
