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
	int port;                    /* 22 */
	const char *username;
	const kiln_keypair *key;
	/* keep trying (connection refused, banner timeout, auth not yet set up) until this passes */
	uint64_t timeout_ms;
	/*
	 * Accepted host key fingerprints ("SHA256:..."), e.g. the ones
	 * cloud-init printed to the console. NULL/0: accept the first key
	 * seen and report it (kiln_ssh_host_key) so it can be recorded.
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
	 * Runs command; *exit_status is its status (or -1 if it died by a
	 * signal). *disconnected is set when the connection dropped before a
	 * status arrived (a reboot): not an error here, the caller decides.
	 */
	int (*exec)(void *session, const char *command, kiln_ssh_output_fn out, void *ctx,
		    int *exit_status, bool *disconnected);
	/* A file or a directory (recursively) to remote_path; adds to *bytes. */
	int (*upload)(void *session, const char *local_path, const char *remote_path,
		      uint64_t *bytes);
	/* Uploads data to remote_path with mode (for scripts). */
	int (*upload_data)(void *session, const void *data, size_t len, const char *remote_path,
			   int mode);
	void (*close)(void *session);
} kiln_communicator;

/* The real communicator over libssh2. */
extern const kiln_communicator kiln_ssh_communicator;

#endif
