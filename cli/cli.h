/*
 * cli.h: what the commands share. cli/ is the only place that reads argv,
 * prints, and exits: each command is cmd_<verb>.c, dispatched from the
 * table in main.c; everything below returns errors and emits events that
 * render.c turns into output.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "core/cloud.h"
#include "core/error.h"
#include "core/event.h"

/* Exit codes (DESIGN.md): the same for every command. */
enum {
	KILN_EXIT_OK = 0,
	KILN_EXIT_FAILED = 1,
	KILN_EXIT_USAGE = 2,
	KILN_EXIT_RESTORED = 3,
	KILN_EXIT_INTERRUPTED = 4,
	KILN_EXIT_LOCKED = 5,
};

typedef struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	const char *usage; /* full help text: usage line, then options */
} cli_command;

const cli_command *cli_find_command(const char *name);

/*
 * Every command's entry point and help texts, declared from the table
 * (cli/commands.def), so each cmd_<verb>.c gets its prototypes from here.
 */
#define CMD(name)                              \
	int cmd_##name(int argc, char **argv); \
	extern const char name##_summary[];    \
	extern const char name##_usage[];
#include "cli/commands.def"
#undef CMD

/* `kiln images prune` (cli/images_prune.c), dispatched by cmd_images; argv as cmd_images got it. */
int cli_images_prune(int argc, char **argv);

/* Options every command takes, parsed by cli_common_option. */
typedef struct cli_opts {
	bool json;
	const char *provider; /* --provider, or NULL */
	bool verbose;
} cli_opts;

/*
 * The event sink for a command: human lines on stderr (progress, with
 * output lines prefixed), or with json one object a line on stdout.
 */
void cli_events_init(kiln_events *ev, const cli_opts *opts);
void cli_events_release(kiln_events *ev);

/*
 * Reports kiln_error_last() as "kiln: error: MESSAGE" (plus a hint for
 * what to do next, when one applies) and returns the exit code for it:
 * 2 bad input, 4 cancelled, 5 lock held, 1 otherwise. With --json it
 * also prints {"event":"error",...} on stdout.
 */
int cli_fail(const cli_opts *opts);
int cli_exit_code(int error);

/* A usage error: prints the message and the command's usage line; returns 2. */
int cli_usage_error(const char *command, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Prints the command's help to stdout; returns 0. */
int cli_help(const char *command);

/*
 * The provider for a command: --provider, else the file's "provider" key
 * (file_provider, may be NULL), else KILN_PROVIDER, else "aws".
 */
const char *cli_provider_name(const cli_opts *opts, const char *file_provider);
/*
 * Constructs the provider by name; region may be NULL (the AWS chain's).
 * Fails with KILN_EINVALID for an unknown name or missing configuration.
 */
int cli_cloud_open(kiln_cloud **out, const char *provider, const char *region,
		   const kiln_events *events);

#endif
