/*
 * credentials.h: the keys that sign kiln's requests, fetched from the
 * source the chain picked (aws/config.h) and kept fresh.
 *
 * Who calls: kiln_aws_config_load (below, in credentials.c) builds the
 * provider for the configuration; aws/http.c asks it for keys before it
 * signs each attempt, so a run longer than a role's hour goes on with new
 * keys; aws/provider.c asks it which source it used for `kiln whoami`.
 *
 * Sources and how each is fetched:
 *   assume-role    STS AssumeRole (RoleArn, RoleSessionName, ExternalId,
 *                  DurationSeconds) signed with the keys of the role's source,
 *                  itself a provider (chains of roles work link by link);
 *   web identity   STS AssumeRoleWithWebIdentity, unsigned, with the token
 *                  file's content, read afresh each time (CI systems rotate it);
 *   process        the profile's credential_process, run without a shell
 *                  (its command line split into words as a POSIX shell would,
 *                  with no expansion), its stdout JSON ("Version": 1) read;
 *   IMDS           the instance's role from IMDSv2 (aws/imds.h).
 *
 * Caching: the keys are kept in memory until they are within
 * KILN_AWS_CREDS_REFRESH_S of their expiry, then fetched again (at most once
 * every KILN_AWS_CREDS_RETRY_S while the old ones still work; a failed
 * refresh is a warning until they are within KILN_AWS_CREDS_MIN_S, then an
 * error). Keys from STS are also written, like the AWS CLI's
 * ~/.aws/cli/cache, to STATE_DIR/aws/cache/SHA256.json (0600, directory
 * 0700), the name a hash of everything that makes them (role, session name,
 * external id, duration, where the keys that assumed it came from, the STS
 * endpoint), so that the next kiln run within the hour assumes nothing.
 *
 * Secrets never appear in a message, an event or a log: errors name the
 * source, the role and the field, never a value. A provider is
 * thread-safe.
 */
#ifndef KILN_AWS_CREDENTIALS_H
#define KILN_AWS_CREDENTIALS_H

#include <jansson.h>

#include "aws/config.h"
#include "aws/http.h"
#include "core/event.h"

#define KILN_AWS_CREDS_REFRESH_S 300 /* fetch again when this close to the expiry */
#define KILN_AWS_CREDS_RETRY_S 30    /* no sooner than this after the last fetch, while still valid */
#define KILN_AWS_CREDS_MIN_S 15      /* keys this close to their expiry are not used */

typedef struct kiln_aws_creds_provider kiln_aws_creds_provider;

typedef struct kiln_aws_creds_options {
	const kiln_aws_transport *transport; /* STS and IMDS requests (tests); NULL: libcurl */
	const kiln_events *events;           /* warnings; may be NULL */
	/* The STS keys' disk cache; NULL: STATE_DIR/aws/cache; "": none. */
	const char *cache_dir;
} kiln_aws_creds_options;

#define KILN_AWS_CREDS_OPTIONS_INIT { NULL, NULL, NULL }

/*
 * A provider for src. cfg (its region, endpoints, CA bundle and IMDS
 * settings) and src are borrowed and must outlive the provider; nothing is
 * fetched yet.
 */
int kiln_aws_creds_provider_new(kiln_aws_creds_provider **out, const kiln_aws_source *src,
				const kiln_aws_config *cfg, const kiln_aws_creds_options *opts);
void kiln_aws_creds_provider_free(kiln_aws_creds_provider *p);

/*
 * Copies keys that are good for at least KILN_AWS_CREDS_MIN_S into out
 * (release with kiln_aws_credentials_release), fetching or refreshing them
 * first when needed. Errors name the source ("assume-role arn:... via
 * profile dev: sts AssumeRole: ... (AccessDenied)").
 */
int kiln_aws_creds_get(kiln_aws_creds_provider *p, kiln_aws_credentials *out);

/* The source, for whoami: "assume-role ARN via profile dev", "instance profile ROLE (IMDSv2)". */
void kiln_aws_creds_describe(kiln_aws_creds_provider *p, char *out, size_t size);

/* ---- the parsers, exposed for tests and fuzzing --------------------------------- */

/*
 * Reads a credential_process's output, JSON "Version": 1:
 *   {"Version": 1, "AccessKeyId": ..., "SecretAccessKey": ...,
 *    "SessionToken": ... (optional), "Expiration": ISO 8601 (optional)}
 * Fills out's keys and expires_at (0: they do not expire). KILN_ERROR
 * naming what is wrong, never quoting a value.
 */
int kiln_aws_parse_process_output(kiln_aws_credentials *out, const char *json, size_t len);

/*
 * Splits a command line into words the way a POSIX shell does, without
 * expanding anything: blanks separate words; '...' keeps everything;
 * "..." keeps everything but \\ \" \$ \` and a backslash-newline; a
 * backslash elsewhere quotes the next character. *out is a NULL-terminated
 * heap array of heap strings (kiln_aws_free_words). KILN_EINVALID for an
 * open quote or an empty command.
 */
int kiln_aws_split_words(char ***out, const char *command);
void kiln_aws_free_words(char **words);

/*
 * Keys from a JSON object: AccessKeyId, SecretAccessKey, the token under
 * token_key (NULL: none; "SessionToken" or IMDS's "Token"), required when
 * expiring, and Expiration (required when expiring). A present member of
 * the wrong type is an error. what names the document in messages.
 */
int kiln_aws_creds_from_json(kiln_aws_credentials *out, const json_t *obj, const char *token_key,
			     bool expiring, const char *what);

/*
 * An ISO 8601 time as AWS and credential processes write it:
 * "2026-11-25T22:52:12Z", with fractions of a second, or with an offset
 * ("+01:00", "-0500") instead of Z. KILN_EINVALID if not one.
 */
int kiln_aws_parse_time(int64_t *out, const char *s);

#endif
