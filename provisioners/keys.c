/*
 * keys.c: the ed25519 key pair a build uses to reach its instance.
 *
 * The builder imports the public half into the cloud and hands the private
 * half to libssh2 from memory (libssh2_userauth_publickey_frommemory), so
 * the secret never touches the disk. libssh2 1.10 reads private keys from
 * memory as PEM or as OpenSSH's own "openssh-key-v1" container; OpenSSL
 * cannot write the latter, so it is assembled here by hand, following
 * OpenSSH's PROTOCOL.key:
 *
 *	"openssh-key-v1\0"
 *	string  ciphername "none"
 *	string  kdfname "none"
 *	string  kdfoptions ""
 *	uint32  number of keys (1)
 *	string  public key blob
 *	string  private section:
 *		uint32 checkint, uint32 the same checkint,
 *		string "ssh-ed25519", string pk[32], string sk[64] (seed || pk),
 *		string comment, padding 1, 2, 3, ... to a multiple of 8
 *
 * Every buffer that held secret bytes is cleansed before it is freed.
 */
#include "provisioners/ssh.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/error.h"

#define ED25519_LEN 32
#define KEY_TYPE "ssh-ed25519"
#define PEM_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----\n"
#define PEM_END "-----END OPENSSH PRIVATE KEY-----\n"
#define PEM_LINE 70 /* what ssh-keygen writes */

/* A cursor over a buffer allocated to the exact size beforehand. */
typedef struct wire {
	unsigned char *p;
	size_t len, cap;
} wire;

static void put_bytes(wire *w, const void *data, size_t len)
{
	/* sizes are computed before allocating; overrunning would be a bug here */
	if (w->len + len > w->cap)
		abort();
	memcpy(w->p + w->len, data, len);
	w->len += len;
}

static void put_u32(wire *w, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	put_bytes(w, b, 4);
}

static void put_string(wire *w, const void *data, size_t len)
{
	put_u32(w, (uint32_t)len);
	put_bytes(w, data, len);
}

/* The public key blob: string "ssh-ed25519", string pk. */
#define PUB_BLOB_LEN (4 + sizeof(KEY_TYPE) - 1 + 4 + ED25519_LEN)

static void put_public_blob(wire *w, const unsigned char pk[ED25519_LEN])
{
	put_string(w, KEY_TYPE, sizeof(KEY_TYPE) - 1);
	put_string(w, pk, ED25519_LEN);
}

/* Base64 of data, NUL-terminated, without newlines; heap. */
static char *base64(const unsigned char *data, size_t len)
{
	size_t out_len = 4 * ((len + 2) / 3) + 1;
	char *out = malloc(out_len);
	if (!out) {
		kiln_error_set(KILN_ENOMEM, "out of memory");
		return NULL;
	}
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* "SHA256:" + base64 without padding of SHA-256(blob), as ssh-keygen -l prints it. */
static int fingerprint(char out[64], const unsigned char *blob, size_t len)
{
	unsigned char md[32];
	char b64[48];
	size_t n;

	if (!EVP_Digest(blob, len, md, NULL, EVP_sha256(), NULL))
		return kiln_error_set(KILN_ERROR, "cannot hash the public key");
	EVP_EncodeBlock((unsigned char *)b64, md, sizeof(md));
	n = strlen(b64);
	while (n && b64[n - 1] == '=')
		b64[--n] = '\0';
	snprintf(out, 64, "SHA256:%s", b64);
	return 0;
}

static bool comment_ok(const char *c)
{
	for (; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

/* The PEM-armoured openssh-key-v1 container for the key; heap, secret. */
static char *private_openssh(const unsigned char seed[ED25519_LEN],
			     const unsigned char pk[ED25519_LEN], const char *comment)
{
	static const char magic[] = "openssh-key-v1"; /* written with its NUL */
	size_t comment_len = strlen(comment);
	size_t priv_len, padded, total, b64_len, pem_len, i;
	uint32_t check;
	unsigned char sk[2 * ED25519_LEN];
	wire w = { NULL, 0, 0 };
	char *b64 = NULL, *pem = NULL, *p;

	priv_len = 4 + 4 + (4 + sizeof(KEY_TYPE) - 1) + (4 + ED25519_LEN) +
		   (4 + sizeof(sk)) + (4 + comment_len);
	padded = (priv_len + 7) / 8 * 8;
	total = sizeof(magic) + (4 + 4) + (4 + 4) + 4 + 4 + (4 + PUB_BLOB_LEN) + (4 + padded);

	if (RAND_bytes((unsigned char *)&check, sizeof(check)) != 1) {
		kiln_error_set(KILN_ERROR, "cannot draw random bytes from OpenSSL");
		return NULL;
	}
	if (!(w.p = malloc(total))) {
		kiln_error_set(KILN_ENOMEM, "out of memory");
		return NULL;
	}
	w.cap = total;
	memcpy(sk, seed, ED25519_LEN);
	memcpy(sk + ED25519_LEN, pk, ED25519_LEN);

	put_bytes(&w, magic, sizeof(magic));
	put_string(&w, "none", 4);
	put_string(&w, "none", 4);
	put_string(&w, "", 0);
	put_u32(&w, 1);
	put_u32(&w, (uint32_t)PUB_BLOB_LEN);
	put_public_blob(&w, pk);
	put_u32(&w, (uint32_t)padded);
	put_u32(&w, check);
	put_u32(&w, check);
	put_string(&w, KEY_TYPE, sizeof(KEY_TYPE) - 1);
	put_string(&w, pk, ED25519_LEN);
	put_string(&w, sk, sizeof(sk));
	put_string(&w, comment, comment_len);
	for (i = 1; i <= padded - priv_len; i++) {
		unsigned char pad = (unsigned char)i;
		put_bytes(&w, &pad, 1);
	}
	OPENSSL_cleanse(sk, sizeof(sk));

	if (!(b64 = base64(w.p, w.len)))
		goto done;
	b64_len = strlen(b64);
	pem_len = strlen(PEM_BEGIN) + b64_len + (b64_len + PEM_LINE - 1) / PEM_LINE +
		  strlen(PEM_END) + 1;
	if (!(pem = malloc(pem_len))) {
		kiln_error_set(KILN_ENOMEM, "out of memory");
		goto done;
	}
	p = pem;
	memcpy(p, PEM_BEGIN, strlen(PEM_BEGIN));
	p += strlen(PEM_BEGIN);
	for (i = 0; i < b64_len; i += PEM_LINE) {
		size_t n = KILN_MIN(PEM_LINE, b64_len - i);
		memcpy(p, b64 + i, n);
		p += n;
		*p++ = '\n';
	}
	memcpy(p, PEM_END, strlen(PEM_END));
	p += strlen(PEM_END);
	*p = '\0';

done:
	OPENSSL_cleanse(w.p, w.cap);
	free(w.p);
	if (b64) {
		OPENSSL_cleanse(b64, strlen(b64));
		free(b64);
	}
	return pem;
}

int kiln_keypair_generate_ed25519(kiln_keypair *out, const char *comment)
{
	int error = -1;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	unsigned char seed[ED25519_LEN], pk[ED25519_LEN], blob[PUB_BLOB_LEN];
	size_t seed_len = sizeof(seed), pk_len = sizeof(pk);
	wire w = { blob, 0, sizeof(blob) };
	char *b64 = NULL;
	kiln_keypair kp;

	memset(&kp, 0, sizeof(kp));
	if (!comment)
		comment = "";
	if (!comment_ok(comment)) {
		error = kiln_error_set(KILN_EINVALID, "key comment '%s' holds a control character",
				       comment);
		goto done;
	}

	if (!(ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL)) || EVP_PKEY_keygen_init(ctx) <= 0 ||
	    EVP_PKEY_keygen(ctx, &pkey) <= 0) {
		error = kiln_error_set(KILN_ERROR, "cannot generate an ed25519 key with OpenSSL");
		goto done;
	}
	if (EVP_PKEY_get_raw_private_key(pkey, seed, &seed_len) != 1 || seed_len != sizeof(seed) ||
	    EVP_PKEY_get_raw_public_key(pkey, pk, &pk_len) != 1 || pk_len != sizeof(pk)) {
		error = kiln_error_set(KILN_ERROR, "cannot read the raw ed25519 key from OpenSSL");
		goto done;
	}

	put_public_blob(&w, pk);
	if ((error = fingerprint(kp.fingerprint, blob, sizeof(blob))) < 0)
		goto done;
	if (!(b64 = base64(blob, sizeof(blob)))) {
		error = KILN_ENOMEM;
		goto done;
	}
	kp.public_openssh = *comment ? kiln_strdupf("%s %s %s", KEY_TYPE, b64, comment)
				     : kiln_strdupf("%s %s", KEY_TYPE, b64);
	if (!kp.public_openssh) {
		error = KILN_ENOMEM;
		goto done;
	}
	if (!(kp.private_openssh = private_openssh(seed, pk, comment))) {
		error = kiln_error_last()->code ? kiln_error_last()->code : KILN_ERROR;
		goto done;
	}

	*out = kp;
	memset(&kp, 0, sizeof(kp));
	error = 0;
done:
	OPENSSL_cleanse(seed, sizeof(seed));
	free(b64);
	kiln_keypair_release(&kp);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	return error;
}

void kiln_keypair_release(kiln_keypair *kp)
{
	if (!kp)
		return;
	if (kp->private_openssh) {
		OPENSSL_cleanse(kp->private_openssh, strlen(kp->private_openssh));
		free(kp->private_openssh);
	}
	free(kp->public_openssh);
	memset(kp, 0, sizeof(*kp));
}
