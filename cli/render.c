#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"

/*
 * Human rendering: one line per event on stderr. On a TTY steps are bold
 * and warnings yellow; remote output is prefixed with its provisioner
 * ("    web| ..."), so a build's log reads top to bottom.
 */
struct render {
	bool json;
	bool tty;
	bool verbose;
	uint64_t start_ms;
};

static void emit_json(void *ctx, const kiln_event *ev)
{
	json_t *o = kiln_event_to_json(ev, kiln_clock_wall_ms());
	(void)ctx;
	if (!o)
		return;
	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(o);
}

static void emit_human(void *ctx, const kiln_event *ev)
{
	struct render *r = ctx;
	uint64_t t = kiln_clock_now_ms() - r->start_ms;
	const char *on = "", *off = r->tty ? "\033[0m" : "";

	if (ev->level == KILN_LEVEL_DEBUG && !r->verbose)
		return;
	if (!strcmp(ev->name, "output")) {
		const char *who = json_string_value(json_object_get(ev->fields, "provisioner"));
		const char *stream = json_string_value(json_object_get(ev->fields, "stream"));
		fprintf(stderr, "%s%8s%s %s%s\n", r->tty ? "\033[2m" : "", who ? who : "remote",
			stream && !strcmp(stream, "stderr") ? "!" : "|", r->tty ? "\033[0m" : "",
			ev->message);
		return;
	}
	if (r->tty) {
		if (ev->level == KILN_LEVEL_WARN)
			on = "\033[33m";
		else if (ev->level == KILN_LEVEL_ERROR)
			on = "\033[31m";
		else if (!strcmp(ev->name, "step"))
			on = "\033[1m";
		else
			off = "";
	} else {
		off = "";
	}
	fprintf(stderr, "[%4llu.%01llus] %s%s%s%s\n", (unsigned long long)(t / 1000),
		(unsigned long long)(t % 1000 / 100), on,
		ev->level == KILN_LEVEL_WARN ? "warning: " : ev->level == KILN_LEVEL_ERROR ? "error: " : "",
		ev->message, off);
}

void cli_events_init(kiln_events *ev, const cli_opts *opts)
{
	struct render *r = calloc(1, sizeof(*r));
	if (!r) {
		ev->emit = NULL;
		ev->ctx = NULL;
		return;
	}
	r->json = opts->json;
	r->tty = isatty(STDERR_FILENO) && !getenv("NO_COLOR");
	r->verbose = opts->verbose || getenv("KILN_DEBUG");
	r->start_ms = kiln_clock_now_ms();
	ev->emit = opts->json ? emit_json : emit_human;
	ev->ctx = r;
}

void cli_events_release(kiln_events *ev)
{
	free(ev->ctx);
	ev->ctx = NULL;
	ev->emit = NULL;
}

int cli_exit_code(int error)
{
	switch (error) {
	case 0: return KILN_EXIT_OK;
	case KILN_EINVALID: return KILN_EXIT_USAGE;
	case KILN_ECANCELLED: return KILN_EXIT_INTERRUPTED;
	case KILN_EBUSY: return KILN_EXIT_LOCKED;
	default: return KILN_EXIT_FAILED;
	}
}

/* What to do next, for errors where that is not obvious from the message. */
static const char *hint_for(const kiln_error *e)
{
	if (!strcmp(e->cloud_code, "AuthFailure") || !strcmp(e->cloud_code, "SignatureDoesNotMatch") ||
	    !strcmp(e->cloud_code, "InvalidClientTokenId"))
		return "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile in use ('kiln whoami')";
	if (!strcmp(e->cloud_code, "UnauthorizedOperation") || !strcmp(e->cloud_code, "AccessDenied") ||
	    !strcmp(e->cloud_code, "AccessDeniedException"))
		return "the credentials in use lack a permission kiln needs (docs/aws-permissions.md)";
	if (e->code == KILN_ECANCELLED)
		return "interrupted; what kiln created was cleaned up or can be ('kiln cleanup', 'kiln status')";
	return NULL;
}

int cli_fail(const cli_opts *opts)
{
	const kiln_error *e = kiln_error_last();
	const char *hint = hint_for(e);
	int code = cli_exit_code(e->code ? e->code : KILN_ERROR);

	fprintf(stderr, "kiln: error: %s\n", e->message[0] ? e->message : "unknown error");
	if (hint)
		fprintf(stderr, "kiln: hint: %s\n", hint);
	if (opts && opts->json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:i}", "event", "error", "message", e->message,
				      "kind", kiln_error_name(e->code), "exit_code", code);
		if (o && e->cloud_code[0])
			json_object_set_new(o, "cloud_code", json_string(e->cloud_code));
		if (o && e->request_id[0])
			json_object_set_new(o, "request_id", json_string(e->request_id));
		if (o) {
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		}
	}
	return code;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
	const cli_command *cmd = command ? cli_find_command(command) : NULL;
	va_list ap;

	fputs("kiln: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd) {
		/* the first line of the help is the usage line */
		const char *nl = strchr(cmd->usage, '\n');
		fprintf(stderr, "%.*s\n", nl ? (int)(nl - cmd->usage) : (int)strlen(cmd->usage), cmd->usage);
	}
	return KILN_EXIT_USAGE;
}
