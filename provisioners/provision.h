/*
 * provision.h: the shell and file provisioners, run over a communicator.
 *
 * Who calls: the builder, once per provisioner of a template, in order.
 * The template parser (builder/template.c) fills kiln_provisioner with
 * every variable already expanded and every local path already resolved
 * against the template's directory.
 */
#ifndef KILN_PROVISIONERS_PROVISION_H
#define KILN_PROVISIONERS_PROVISION_H

#include "core/cloud.h"
#include "provisioners/ssh.h"

typedef enum kiln_provisioner_type {
	KILN_PROVISIONER_SHELL,
	KILN_PROVISIONER_FILE,
} kiln_provisioner_type;

typedef struct kiln_provisioner {
	kiln_provisioner_type type;
	char *label;               /* "shell #1", for output prefixes and messages */

	/* shell: exactly one of inline / scripts is set */
	char **inline_cmds;
	size_t n_inline;
	char **scripts;            /* local paths */
	size_t n_scripts;
	kiln_tags environment;     /* environment_vars, in order */
	/*
	 * Packer's default: "chmod +x {{.Path}}; {{.Vars}} {{.Path}}";
	 * {{.Path}} and {{.Vars}} are replaced here.
	 */
	char *execute_command;
	bool expect_disconnect;

	/* file */
	char *source;              /* local file or directory */
	char *destination;
} kiln_provisioner;

void kiln_provisioner_release(kiln_provisioner *p);

/* Added to by each run (the caller zeroes it once). */
typedef struct kiln_provision_stats {
	uint64_t bytes_uploaded;   /* scripts and files */
	uint64_t upload_ms;
	unsigned commands;         /* scripts run (an inline list is one script) */
	/*
	 * Set when the connection dropped and expect_disconnect allowed it:
	 * the session is dead, the caller reconnects before the next one.
	 */
	bool disconnected;
} kiln_provision_stats;

/*
 * Runs p over session. Remote output is emitted line by line as "output"
 * events (fields: provisioner, stream "stdout"/"stderr", line). A non-zero
 * exit status fails with KILN_ERROR naming the provisioner, the command or
 * script and the status:
 *   shell #1: command `apt-get install -y nginx` exited with status 100
 *   shell #2: script 'setup.sh' exited with status 3
 * Inline commands run as one script under `set -e`, like Packer's
 * "/bin/sh -e" shebang; the failing command is found by an EXIT trap that
 * reports its index on stderr behind a random marker (filtered out of the
 * output). A disconnect fails unless expect_disconnect. The remote script
 * (/tmp/kiln-script-RANDOM.sh) is removed afterwards unless the
 * connection is gone.
 */
int kiln_provision_run(const kiln_communicator *comm, void *session, const kiln_provisioner *p,
		       const kiln_events *events, kiln_provision_stats *stats);

#endif
