/*
 * fleet_cli.h: what the fleet commands (rollout, rollback, status,
 * release) share: reading the fleet file for the right provider, opening
 * that provider, resolving image references, and reporting an engine's
 * outcome with the exit code DESIGN.md gives it.
 */
#ifndef KILN_CLI_FLEET_CLI_H
#define KILN_CLI_FLEET_CLI_H

#include "cli/cli.h"
#include "rollout/engine.h"
#include "rollout/fleet.h"

typedef struct fleet_cli {
	cli_opts opts;
	kiln_events ev;
	bool ev_open;
	kiln_fleet *fleet;
	kiln_cloud *cloud;
} fleet_cli;

/*
 * Loads the fleet file (provider precedence: --provider, the file, then
 * KILN_PROVIDER, then aws) and opens its provider. On failure returns the
 * exit code (after printing); 0 on success.
 */
int fleet_cli_open(fleet_cli *fc, const char *path);
void fleet_cli_close(fleet_cli *fc);

/*
 * Resolves an image reference for the fleet: NULL means the newest version
 * of the fleet's image; "N" (digits) means version N of it; else NAME,
 * NAME@N or an image id. 0 or a KILN_E* error (message set).
 */
int fleet_cli_resolve(fleet_cli *fc, const char *ref, kiln_image *out);

/*
 * Reports an engine run: on failure the message, the failing instance's
 * console tail and the next step; with --json a final "result" or "error"
 * object. Returns the exit code.
 */
int fleet_cli_report(fleet_cli *fc, const char *command, int error, const kiln_rollout_result *res);

/* Prints a JSON value on stdout (one line) and releases it. */
void fleet_cli_print_json(json_t *v);

#endif
