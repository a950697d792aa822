/*
 * ssh_upload: uploads one file over kiln's SSH communicator and prints the
 * rate. Driven by bench/ssh-upload.sh, which starts the sshd and runs
 * OpenSSH's sftp on the same file for comparison. Not part of kiln.
 *
 *	ssh_upload HOST PORT USER PRIVATE_KEY PUBLIC_KEY LOCAL_FILE REMOTE_PATH
 *
 * Prints "BYTES SECONDS MB/s" (MB = 10^6 bytes) on stdout.
 */
#include "core/common.h"

#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "provisioners/ssh.h"

static char *slurp(const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	if (kiln_read_file(&b, path) < 0) {
		fprintf(stderr, "ssh_upload: %s\n", kiln_error_last()->message);
		exit(2);
	}
	kiln_buf_rtrim(&b);
	return kiln_buf_detach(&b);
}

int main(int argc, char **argv)
{
	kiln_keypair key;
	kiln_ssh_options o;
	const kiln_communicator *comm = &kiln_ssh_communicator;
	void *s = NULL;
	uint64_t bytes = 0, t0, t1;
	int64_t port = 0;
	double secs;

	if (argc != 8 || kiln_parse_i64(&port, argv[2], 1, 65535) < 0) {
		fprintf(stderr, "usage: ssh_upload HOST PORT USER PRIVATE_KEY PUBLIC_KEY LOCAL REMOTE\n");
		return 2;
	}
	memset(&key, 0, sizeof(key));
	key.private_openssh = slurp(argv[4]);
	key.public_openssh = slurp(argv[5]);
	snprintf(key.fingerprint, sizeof(key.fingerprint), "(from %s)", argv[5]);

	memset(&o, 0, sizeof(o));
	o.host = argv[1];
	o.port = (int)port;
	o.username = argv[3];
	o.key = &key;
	o.timeout_ms = 10000;
	kiln_cancel_install();
	if (comm->connect(&s, &o) < 0) {
		fprintf(stderr, "ssh_upload: %s\n", kiln_error_last()->message);
		return 1;
	}
	t0 = kiln_clock_now_ms();
	if (comm->upload(s, argv[6], argv[7], &bytes) < 0) {
		fprintf(stderr, "ssh_upload: %s\n", kiln_error_last()->message);
		comm->close(s);
		return 1;
	}
	t1 = kiln_clock_now_ms();
	comm->close(s);
	secs = (double)(t1 - t0) / 1000.0;
	printf("%llu %.3f %.1f\n", (unsigned long long)bytes, secs,
	       secs > 0 ? (double)bytes / 1e6 / secs : 0.0);
	kiln_keypair_release(&key);
	return 0;
}
