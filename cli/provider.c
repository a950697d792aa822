#include <stdlib.h>

#include "cli/cli.h"

#ifdef KILN_HAVE_AWS
#include "aws/provider.h"
#endif
#ifdef KILN_HAVE_LOCAL
#include "local/provider.h"
#endif

const char *cli_provider_name(const cli_opts *opts, const char *file_provider)
{
	const char *env = getenv("KILN_PROVIDER");
	if (opts && opts->provider)
		return opts->provider;
	if (file_provider && *file_provider)
		return file_provider;
	if (env && *env)
		return env;
	return "aws";
}

int cli_cloud_open(kiln_cloud **out, const char *provider, const char *region,
		   const kiln_events *events)
{
	*out = NULL;
#ifdef KILN_HAVE_AWS
	if (!strcmp(provider, "aws"))
		return kiln_aws_cloud_new(out, region, events);
#endif
#ifdef KILN_HAVE_LOCAL
	if (!strcmp(provider, "local"))
		return kiln_local_cloud_new(out, events);
#endif
	(void)region;
	(void)events;
	if (strcmp(provider, "aws") && strcmp(provider, "local"))
		return kiln_error_set(KILN_EINVALID, "unknown provider '%s': use aws or local", provider);
	return kiln_error_set(KILN_EUNSUPPORTED, "this kiln was built without the '%s' provider",
			      provider);
}
