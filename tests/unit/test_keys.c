#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/fs.h"
#include "provisioners/ssh.h"
#include "tests/support/sshd.h"
#include "tests/support/test.h"

static bool have_ssh_keygen(void)
{
	if (access("/usr/bin/ssh-keygen", X_OK) == 0)
		return true;
	print_message("skipped: no /usr/bin/ssh-keygen (package openssh-client)\n");
	return false;
}

static void test_public_key_shape(void **state)
{
	kiln_keypair kp, kp2;
	(void)state;

	assert_int_equal(kiln_keypair_generate_ed25519(&kp, "kiln-build-1"), 0);
	assert_true(kiln_view_starts_with(kiln_view_of(kp.public_openssh), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"));
	assert_non_null(strstr(kp.public_openssh, " kiln-build-1"));
	assert_true(kiln_view_starts_with(kiln_view_of(kp.private_openssh),
					  "-----BEGIN OPENSSH PRIVATE KEY-----\n"));
	assert_non_null(strstr(kp.private_openssh, "\n-----END OPENSSH PRIVATE KEY-----\n"));
	assert_true(kiln_view_starts_with(kiln_view_of(kp.fingerprint), "SHA256:"));
	/* 32 bytes of SHA-256 are 43 base64 characters without the padding */
	assert_int_equal(strlen(kp.fingerprint), 7 + 43);

	/* two keys differ */
	assert_int_equal(kiln_keypair_generate_ed25519(&kp2, NULL), 0);
	assert_string_not_equal(kp.public_openssh, kp2.public_openssh);
	assert_string_not_equal(kp.fingerprint, kp2.fingerprint);
	/* no comment: just type and key */
	assert_null(strchr(strchr(kp2.public_openssh, ' ') + 1, ' '));

	kiln_keypair_release(&kp);
	assert_null(kp.private_openssh);
	assert_null(kp.public_openssh);
	kiln_keypair_release(&kp2);
	kiln_keypair_release(NULL);
}

static void test_comment_with_newline_refused(void **state)
{
	kiln_keypair kp;
	(void)state;
	assert_error(kiln_keypair_generate_ed25519(&kp, "a\nb"), KILN_EINVALID, "control character");
}

/* ssh-keygen -l on the public key prints the fingerprint kiln computed. */
static void test_fingerprint_matches_ssh_keygen(void **state)
{
	kiln_keypair kp;
	char *dir, *pub, *want, out[512];
	(void)state;

	if (!have_ssh_keygen())
		return;
	dir = kiln_test_mktmp();
	assert_int_equal(kiln_keypair_generate_ed25519(&kp, "fp-check"), 0);
	pub = kiln_test_write(dir, "id.pub", kp.public_openssh);
	assert_int_equal(kiln_test_sh(out, sizeof(out), "ssh-keygen -l -E sha256 -f '%s'", pub), 0);
	want = kiln_strdupf("256 %s fp-check (ED25519)\n", kp.fingerprint);
	assert_string_equal(out, want);
	free(want);
	free(pub);
	kiln_keypair_release(&kp);
	kiln_test_rmtmp(dir);
}

/*
 * OpenSSH itself reads the hand-built openssh-key-v1 private key and
 * derives the same public key from it (the private key is written to a
 * 0600 file for this check only).
 */
static void test_private_key_read_by_ssh_keygen(void **state)
{
	kiln_keypair kp;
	char *dir, *path, out[1024];
	int i;
	(void)state;

	if (!have_ssh_keygen())
		return;
	dir = kiln_test_mktmp();
	path = kiln_strdupf("%s/id_ed25519", dir);
	/* several keys and comment lengths: the padding differs with each */
	for (i = 0; i < 8; i++) {
		char comment[16];
		snprintf(comment, sizeof(comment), "c%.*s", i, "xxxxxxxx");
		assert_int_equal(kiln_keypair_generate_ed25519(&kp, comment), 0);
		assert_int_equal(kiln_write_file_atomic(path, kp.private_openssh,
							strlen(kp.private_openssh), 0600), 0);
		assert_int_equal(kiln_test_sh(out, sizeof(out), "ssh-keygen -y -f '%s' 2>&1", path), 0);
		/* ssh-keygen -y prints "type key comment" from the private key's comment */
		out[strcspn(out, "\n")] = '\0';
		assert_string_equal(out, kp.public_openssh);
		kiln_keypair_release(&kp);
	}
	free(path);
	kiln_test_rmtmp(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public_key_shape),
		cmocka_unit_test(test_comment_with_newline_refused),
		cmocka_unit_test(test_fingerprint_matches_ssh_keygen),
		cmocka_unit_test(test_private_key_read_by_ssh_keygen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
