/*
 * fakecomm.h: a scripted kiln_communicator, for unit-testing the builder
 * without a network.
 *
 * kiln_communicator carries no context pointer (its sessions do), so the
 * fake's script and observations live in one global, reset per test:
 *
 *	fakecomm *fc = fakecomm_reset();
 *	fakecomm_rule(fc, "exit 3", 3, "partial output\n", NULL);  // a failing command
 *	fc->connect_failures = 2;                                  // sshd not up yet
 *	opts.comm = &fakecomm_communicator;
 *	... run a build ...
 *	assert_int_equal(fc->connects, 1);
 *
 * Commands are matched against the command line and the content of every
 * file uploaded with upload_data whose remote path the command names, so
 * a rule can match a line of an inline script however the provisioner
 * wraps it. The first matching rule wins; no match: exit status 0.
 */
#ifndef KILN_TEST_FAKECOMM_H
#define KILN_TEST_FAKECOMM_H

#include "core/cloud.h"
#include "provisioners/ssh.h"

#define FAKECOMM_RULES 16

typedef struct fakecomm_rule {
	char match[256];
	int exit_status;
	char out[1024];     /* stdout lines */
	char err[1024];     /* stderr lines */
	bool disconnect;    /* the connection drops before a status (a reboot) */
	int error;          /* exec returns this (negative), e.g. KILN_ECANCELLED */
} fakecomm_rule;

typedef struct fakecomm {
	/* script */
	unsigned connect_failures;   /* this many connects fail (KILN_ETIMEOUT) first */
	char host_key[80];           /* what the "instance" presents; default "SHA256:fakehostkey" */
	fakecomm_rule rules[FAKECOMM_RULES];
	size_t n_rules;
	/* called before every exec with the command; a negative return is exec's result */
	int (*on_exec)(void *ctx, const char *command);
	void *ctx;

	/* observations */
	unsigned connects;           /* successful */
	unsigned connect_attempts;
	unsigned closes;
	int open_sessions;
	kiln_strings commands;       /* every exec'd command line */
	kiln_strings uploads;        /* remote paths of upload / upload_data */
	uint64_t bytes;
	char host[256];
	int port;
	char user[256];
	char key_fingerprint[64];    /* of the key the client offered */
	size_t n_accepted_fps;       /* host key fingerprints the client would accept */
	kiln_tags files;             /* remote path -> content, from upload_data */
} fakecomm;

extern const kiln_communicator fakecomm_communicator;

/* Clears the script and observations (freeing them) and returns the fake. */
fakecomm *fakecomm_reset(void);
fakecomm *fakecomm_get(void);
/* Adds a rule; out/err may be NULL. Returns it for further scripting. */
fakecomm_rule *fakecomm_rule_add(fakecomm *fc, const char *match, int exit_status,
				 const char *out, const char *err);
/* Whether some exec'd command (or the script it ran) contains needle. */
bool fakecomm_ran(const fakecomm *fc, const char *needle);

#endif
