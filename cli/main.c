#include <getopt.h>

#include "cli/cli.h"
#include "core/clock.h"

int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);

/*
 * The commands, in the order `kiln --help` lists them. A command joins
 * the table when it works end to end; DESIGN.md lists the ones to come.
 */
#define CMD(name)                              \
	int cmd_##name(int argc, char **argv); \
	extern const char name##_summary[];    \
	extern const char name##_usage[];
#include "cli/commands.def"
#undef CMD

static const cli_command commands[] = {
#define CMD(name) { #name, cmd_##name, name##_summary, name##_usage },
#include "cli/commands.def"
#undef CMD
	{ "help", cmd_help, "show help for kiln or for a command",
	  "usage: kiln help [COMMAND]\n" },
	{ "version", cmd_version, "print kiln's version", "usage: kiln version\n" },
};

const cli_command *cli_find_command(const char *name)
{
	size_t i;
	for (i = 0; i < KILN_ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void print_overview(FILE *out)
{
	size_t i;
	fprintf(out,
		"usage: kiln [--version] [--help] COMMAND [ARGS]\n"
		"\n"
		"kiln bakes versioned machine images and rolls fleets onto them without downtime.\n"
		"\n"
		"commands:\n");
	for (i = 0; i < KILN_ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
		"\n"
		"Every command takes --provider aws|local and --json. 'kiln help COMMAND' shows a\n"
		"command's options. Exit codes: 0 done, 1 failed, 2 bad input, 3 rollout failed and\n"
		"the fleet was restored, 4 interrupted, 5 the fleet's rollout lock is held.\n");
}

int cli_help(const char *name)
{
	const cli_command *cmd = cli_find_command(name);
	if (!cmd)
		return cli_usage_error(NULL, "'%s' is not a kiln command (see 'kiln --help')", name);
	fputs(cmd->usage, stdout);
	return KILN_EXIT_OK;
}

int cmd_help(int argc, char **argv)
{
	if (argc > 2)
		return cli_usage_error("help", "too many arguments");
	if (argc == 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))
		return cli_help(argv[1]);
	print_overview(stdout);
	return KILN_EXIT_OK;
}

int cmd_version(int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		return cli_usage_error("version", "too many arguments");
	printf("kiln %s\n", KILN_VERSION);
	return KILN_EXIT_OK;
}

int main(int argc, char **argv)
{
	const cli_command *cmd;
	int i;

	if (argc < 2) {
		print_overview(stderr);
		return KILN_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
		return cmd_version(1, argv);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(1, argv);
	if (argv[1][0] == '-')
		return cli_usage_error(NULL, "unknown option '%s' (see 'kiln --help')", argv[1]);
	if (!(cmd = cli_find_command(argv[1])))
		return cli_usage_error(NULL, "'%s' is not a kiln command (see 'kiln --help')", argv[1]);
	/* `kiln CMD --help` anywhere before "--" shows the command's help */
	for (i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return cli_help(cmd->name);
	kiln_cancel_install();
	return cmd->run(argc - 1, argv + 1);
}
