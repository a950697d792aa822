/*
 * ssh.h: the SSH communicator (libssh2) and the keys kiln generates.
 *
 * Who calls: the builder, to reach its temporary instance: connect
 * (retrying until the instance's sshd answers or ssh_timeout_s passes),
 * verify the host key, run commands with their output streamed line by
 * line, upload files and directories over SFTP with pipelining.
 *
 * The communicator is a table of functions (kiln_communicator) so the
 * builder's tests can replace the network with a scripted fake; the real
 * one is kiln_ssh_communicator.
 */
#ifndef KILN_PROVISIONERS_SSH_H
#define KILN_PROVISIONERS_SSH_H

#include "core/buf.h"
#include "core/event.h"

/* ---- keys -------------------------------------------------------------- */

typedef struct kiln_keypair {
	char *private_openssh; /* "-----BEGIN OPENSSH PRIVATE KEY-----..."; secret */
	char *public_openssh;  /* "ssh-ed25519 AAAA... comment" */
	char fingerprint[64];  /* "SHA256:..." of the public key */
} kiln_keypair;

/* A fresh ed25519 key pair from OpenSSL's RNG; nothing touches the disk. */
int kiln_keypair_generate_ed25519(kiln_keypair *out, const char *comment);
/* Wipes the private key (OPENSSL_cleanse) and frees. */
void kiln_keypair_release(kiln_keypair *kp);

/* ---- sessions ---------------------------------------------------------- */

typedef struct kiln_ssh_options {
	const char *host;
	int port;                    /* 0: 22 */
	const char *username;
	const kiln_keypair *key;
	/*
	 * Keep trying (connection refused or timed out, no banner, key not
	 * yet accepted) with a backoff until this passes; 0: one attempt.
	 * Fails with KILN_ETIMEOUT, or KILN_EAUTH if the last attempt's key
	 * was refused; the message carries the last attempt's error.
	 */
	uint64_t timeout_ms;
	/*
	 * Accepted host key fingerprints ("SHA256:..."), e.g. the ones
	 * cloud-init printed to the console (base64 padding is ignored). A
	 * key not among them fails at once with KILN_EAUTH naming both.
	 * NULL/0: accept the key seen and report it (host_key) so it can be
	 * recorded.
	 */
	const char *const *host_key_fingerprints;
	size_t n_host_key_fingerprints;
	const kiln_events *events;
} kiln_ssh_options;

/*
 * stream: 1 stdout, 2 stderr; line without its newline (nor a CR before
 * it), capped at 64 KiB (a longer line comes in pieces); a last line
 * without a newline is delivered too. exec accepts a NULL callback.
 */
typedef void (*kiln_ssh_output_fn)(void *ctx, int stream, const char *line, size_t len);

typedef struct kiln_communicator {
	int (*connect)(void **out, const kiln_ssh_options *opts);
	/* "SHA256:..." of the host key the session verified or accepted */
	const char *(*host_key)(void *session);
	/*
	 * Runs command (stdin closed, no pty); *exit_status is its status (or
	 * -1 if it died by a signal, also reported as a warning event).
	 * *disconnected is set when the connection dropped before a status
	 * arrived (a reboot): not an error here, the caller decides; the
	 * session is dead afterwards (every call fails; close and reconnect).
	 * SIGINT/SIGTERM: KILN_ECANCELLED within about half a second; the
	 * remote command is left running (libssh2 1.10 cannot signal it).
	 */
	int (*exec)(void *session, const char *command, kiln_ssh_output_fn out, void *ctx,
		    int *exit_status, bool *disconnected);
	/*
	 * A file or a directory (recursively) to remote_path, as Packer's file
	 * provisioner: a file goes to remote_path, or into it under its own
	 * name if remote_path ends in '/' or is a directory; a directory "dir"
	 * goes to remote_path/dir, "dir/" has its contents put in remote_path
	 * (created, with parents, if missing). Mode bits are kept, symbolic
	 * links followed. Adds the bytes written to *bytes (may be NULL).
	 */
	int (*upload)(void *session, const char *local_path, const char *remote_path,
		      uint64_t *bytes);
	/* Uploads data to remote_path with exactly mode (for scripts). */
	int (*upload_data)(void *session, const void *data, size_t len, const char *remote_path,
			   int mode);
	void (*close)(void *session);
} kiln_communicator;

/* The real communicator over libssh2. */
extern const kiln_communicator kiln_ssh_communicator;

/*
 * The bytes an SFTP upload keeps in flight on a connection whose (minimum)
 * TCP round trip is rtt_us (0: unknown, 1 MiB): a round trip's worth of
 * 100 MiB/s, kiln's own ceiling, between 384 KiB and 2 MiB. Each upload
 * asks the kernel (TCP_INFO) when it starts; ssh.c says why. Public for
 * the tests.
 */
size_t kiln_ssh_upload_window(uint32_t rtt_us);

#endif
