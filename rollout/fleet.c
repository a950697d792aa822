#include "rollout/fleet.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/instance_options.h"
#include "core/json.h"
#include "core/registry.h"

#define USER_DATA_MAX (16 * 1024)

/* Keys a provider block may override; the top level allows these too. */
static const char *const block_keys[] = {
	"region", "image", "desired", "batch_size", "retire", "instance_type", "subnet_ids",
	"security_group_ids", "key_name", "iam_instance_profile", "user_data_file", "tags",
	"target_group_arns", "load_balancer_names", "load_balancer", "health_timeout_s",
	"health_grace_s", "warmup_s", "drain_timeout_s", NULL,
};

static const char *const top_keys[] = {
	"name", "provider", "aws", "local",
	"region", "image", "desired", "batch_size", "retire", "instance_type", "subnet_ids",
	"security_group_ids", "key_name", "iam_instance_profile", "user_data_file", "tags",
	"target_group_arns", "load_balancer_names", "load_balancer", "health_timeout_s",
	"health_grace_s", "warmup_s", "drain_timeout_s", NULL,
};

/* the aws block also takes the instance options (core/instance_options.h) */
static const char *const aws_block_keys[] = {
	"region", "image", "desired", "batch_size", "retire", "instance_type", "subnet_ids",
	"security_group_ids", "key_name", "iam_instance_profile", "user_data_file", "tags",
	"target_group_arns", "load_balancer_names", "load_balancer", "health_timeout_s",
	"health_grace_s", "warmup_s", "drain_timeout_s", KILN_INSTANCE_OPTION_KEYS, NULL,
};

static const char *const lb_keys[] = { "listen", "health", "target_port", NULL };
static const char *const health_keys[] = { "path", "interval_s", "rise", "fall", NULL };

const char *kiln_retire_name(kiln_retire r)
{
	return r == KILN_RETIRE_PER_BATCH ? "per_batch" : "at_end";
}

bool kiln_fleet_name_valid(const char *name)
{
	size_t i, n = strlen(name);
	if (n == 0 || n > KILN_FLEET_NAME_MAX)
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || !strchr("._-", c)))
			return false;
	}
	return true;
}

void kiln_fleet_lock_record(char *out, size_t size, const char *fleet)
{
	snprintf(out, size, "/kiln/fleets/%s/lock", fleet);
}

void kiln_fleet_state_record(char *out, size_t size, const char *fleet)
{
	snprintf(out, size, "/kiln/fleets/%s/state", fleet);
}

void kiln_fleet_free(kiln_fleet *f)
{
	size_t i;
	if (!f)
		return;
	free(f->path);
	free(f->region);
	free(f->image);
	free(f->instance_type);
	kiln_strings_release(&f->subnet_ids);
	kiln_strings_release(&f->security_group_ids);
	free(f->key_name);
	free(f->iam_instance_profile);
	free(f->user_data_file);
	free(f->user_data);
	kiln_tags_release(&f->tags);
	json_decref(f->launch_options);
	for (i = 0; i < f->n_lbs; i++) {
		free((char *)f->lbs[i].ref);
		free((char *)f->lbs[i].listen);
		free((char *)f->lbs[i].health_path);
	}
	free(f->lbs);
	free(f);
}

/*
 * Where a key's effective value lives: the provider block when it has the
 * key, else the top level. Getters then read from there, so a message
 * points at the value that actually applies.
 */
struct src {
	const kiln_jdoc *doc;
	json_t *root;
	json_t *block; /* may be NULL */
};

static json_t *owner(const struct src *s, const char *key)
{
	if (s->block && json_object_get(s->block, key))
		return s->block;
	return s->root;
}

static int get_str(const struct src *s, const char *key, bool required, char **out)
{
	const char *v = NULL;
	int error;
	if ((error = kiln_jdoc_get_string(s->doc, owner(s, key), key, required, &v)) < 0)
		return error;
	if (!v)
		return 0;
	if (!*v)
		return kiln_jdoc_error(s->doc, owner(s, key), key, 0, "\"%s\" must not be empty", key);
	free(*out);
	return (*out = kiln_strdup(v)) ? 0 : KILN_ENOMEM;
}

static int get_int(const struct src *s, const char *key, int64_t min, int64_t max, int *out)
{
	int64_t v = *out;
	int error;
	if ((error = kiln_jdoc_get_int(s->doc, owner(s, key), key, false, min, max, &v)) < 0)
		return error;
	*out = (int)v;
	return 0;
}

static int get_strings(const struct src *s, const char *key, kiln_strings *out)
{
	json_t *a = NULL, *v;
	size_t i;
	int error;
	if ((error = kiln_jdoc_get_string_array(s->doc, owner(s, key), key, false, &a)) < 0 || !a)
		return error;
	json_array_foreach(a, i, v) {
		if (!*json_string_value(v))
			return kiln_jdoc_error(s->doc, a, NULL, i, "element %zu of \"%s\" is empty",
					       i + 1, key);
		if (kiln_strings_has(out, json_string_value(v)))
			return kiln_jdoc_error(s->doc, a, NULL, i, "\"%s\" is listed twice in \"%s\"",
					       json_string_value(v), key);
		if ((error = kiln_strings_add(out, json_string_value(v))) < 0)
			return error;
	}
	return 0;
}

/* "4" or "25%" of desired, rounded up, at least 1 and at most desired. */
static int get_batch_size(const struct src *s, kiln_fleet *f)
{
	json_t *o = owner(s, "batch_size"), *v = json_object_get(o, "batch_size");
	int64_t n;

	if (!v) {
		f->batch_size = f->desired;
		snprintf(f->batch_spec, sizeof(f->batch_spec), "%u", f->desired);
		return 0;
	}
	if (json_is_integer(v)) {
		n = json_integer_value(v);
		if (n < 1)
			return kiln_jdoc_error(s->doc, o, "batch_size", 0,
					       "\"batch_size\" must be at least 1, not %lld", (long long)n);
		snprintf(f->batch_spec, sizeof(f->batch_spec), "%lld", (long long)n);
	} else if (json_is_string(v)) {
		const char *t = json_string_value(v);
		size_t len = strlen(t);
		char num[16];
		if (len < 2 || len > sizeof(num) || t[len - 1] != '%')
			goto bad;
		memcpy(num, t, len - 1);
		num[len - 1] = '\0';
		if (kiln_parse_i64(&n, num, 1, 100) < 0)
			goto bad;
		snprintf(f->batch_spec, sizeof(f->batch_spec), "%s", t);
		n = ((int64_t)f->desired * n + 99) / 100;
	} else {
		return kiln_jdoc_error(s->doc, o, "batch_size", 0,
				       "\"batch_size\" must be an integer or a percentage such as \"25%%\", not %s",
				       kiln_json_type_name(v));
	}
	f->batch_size = (unsigned)KILN_MAX(1, KILN_MIN(n, (int64_t)f->desired));
	return 0;
bad:
	return kiln_jdoc_error(s->doc, o, "batch_size", 0,
			       "\"batch_size\" must be an integer or a percentage from \"1%%\" to \"100%%\", not \"%s\"",
			       json_string_value(v));
}

static int get_retire(const struct src *s, kiln_fleet *f)
{
	const char *v = NULL;
	int error;
	if ((error = kiln_jdoc_get_string(s->doc, owner(s, "retire"), "retire", false, &v)) < 0)
		return error;
	if (!v || !strcmp(v, "at_end"))
		f->retire = KILN_RETIRE_AT_END;
	else if (!strcmp(v, "per_batch"))
		f->retire = KILN_RETIRE_PER_BATCH;
	else
		return kiln_jdoc_error(s->doc, owner(s, "retire"), "retire", 0,
				       "\"retire\" must be \"at_end\" or \"per_batch\", not \"%s\"", v);
	return 0;
}

static int get_tags(const struct src *s, kiln_fleet *f)
{
	json_t *o = owner(s, "tags"), *m = NULL, *v;
	const char *k;
	int error;
	if ((error = kiln_jdoc_get_string_map(s->doc, o, "tags", &m)) < 0 || !m)
		return error;
	json_object_foreach(m, k, v) {
		if (!strncmp(k, "kiln:", 5) || !strncmp(k, "aws:", 4))
			return kiln_jdoc_error_at(s->doc, kiln_jdoc_key_pos(s->doc, m, k),
						  "tag \"%s\": the kiln: and aws: prefixes are reserved", k);
		if (!*k)
			return kiln_jdoc_error_at(s->doc, kiln_jdoc_key_pos(s->doc, m, k), "empty tag key");
		if ((error = kiln_tags_set(&f->tags, k, json_string_value(v))) < 0)
			return error;
	}
	return 0;
}

static int add_lb(kiln_fleet *f, kiln_lb_kind kind, const char *ref)
{
	kiln_lb *lbs = realloc(f->lbs, (f->n_lbs + 1) * sizeof(*lbs));
	if (!lbs)
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	f->lbs = lbs;
	memset(&lbs[f->n_lbs], 0, sizeof(*lbs));
	lbs[f->n_lbs].kind = kind;
	if (!(lbs[f->n_lbs].ref = kiln_strdup(ref)))
		return KILN_ENOMEM;
	f->n_lbs++;
	return 0;
}

/* The local balancer: one HAProxy named after the fleet. */
static int get_local_lb(const struct src *s, kiln_fleet *f, bool use)
{
	json_t *o = owner(s, "load_balancer"), *lbo = NULL, *h = NULL;
	const char *listen = "127.0.0.1:8080", *path = "/";
	int64_t interval = 2, rise = 2, fall = 3, port = 80;
	kiln_lb *lb;
	int error;

	if ((error = kiln_jdoc_get_object(s->doc, o, "load_balancer", false, &lbo)) < 0)
		return error;
	if (lbo) {
		if ((error = kiln_jdoc_check_keys(s->doc, lbo, "\"load_balancer\"", lb_keys)) < 0 ||
		    (error = kiln_jdoc_get_string(s->doc, lbo, "listen", false, &listen)) < 0 ||
		    (error = kiln_jdoc_get_int(s->doc, lbo, "target_port", false, 1, 65535, &port)) < 0 ||
		    (error = kiln_jdoc_get_object(s->doc, lbo, "health", false, &h)) < 0)
			return error;
		if (!strchr(listen, ':'))
			return kiln_jdoc_error(s->doc, lbo, "listen", 0,
					       "\"listen\" must be ADDRESS:PORT, such as \"127.0.0.1:8080\"");
		if (h && ((error = kiln_jdoc_check_keys(s->doc, h, "\"health\"", health_keys)) < 0 ||
			  (error = kiln_jdoc_get_string(s->doc, h, "path", false, &path)) < 0 ||
			  (error = kiln_jdoc_get_int(s->doc, h, "interval_s", false, 1, 3600, &interval)) < 0 ||
			  (error = kiln_jdoc_get_int(s->doc, h, "rise", false, 1, 100, &rise)) < 0 ||
			  (error = kiln_jdoc_get_int(s->doc, h, "fall", false, 1, 100, &fall)) < 0))
			return error;
		if (h && path[0] != '/')
			return kiln_jdoc_error(s->doc, h, "path", 0, "\"path\" must start with '/'");
	}
	if (!use)
		return 0;
	if ((error = add_lb(f, KILN_LB_LOCAL, f->name)) < 0)
		return error;
	lb = &f->lbs[f->n_lbs - 1];
	lb->listen = kiln_strdup(listen);
	lb->health_path = kiln_strdup(path);
	if (!lb->listen || !lb->health_path)
		return KILN_ENOMEM;
	lb->interval_s = (int)interval;
	lb->rise = (int)rise;
	lb->fall = (int)fall;
	lb->target_port = (int)port;
	return 0;
}

static int get_aws_lbs(const struct src *s, kiln_fleet *f, bool use)
{
	kiln_strings tgs = { 0 }, elbs = { 0 };
	size_t i;
	int error;

	if ((error = get_strings(s, "target_group_arns", &tgs)) < 0 ||
	    (error = get_strings(s, "load_balancer_names", &elbs)) < 0)
		goto done;
	for (i = 0; use && i < tgs.n; i++) {
		if (strncmp(tgs.items[i], "arn:", 4)) {
			error = kiln_jdoc_error(s->doc, json_object_get(owner(s, "target_group_arns"),
									"target_group_arns"),
						NULL, i, "\"%s\" is not a target group ARN", tgs.items[i]);
			goto done;
		}
		if ((error = add_lb(f, KILN_LB_TARGET_GROUP, tgs.items[i])) < 0)
			goto done;
	}
	for (i = 0; use && i < elbs.n; i++)
		if ((error = add_lb(f, KILN_LB_CLASSIC, elbs.items[i])) < 0)
			goto done;
done:
	kiln_strings_release(&tgs);
	kiln_strings_release(&elbs);
	return error;
}

/* The instance options (IMDS, root volume) are EC2's: only the aws block holds them. */
static int misplaced_instance_options(const kiln_jdoc *doc, const json_t *obj, const char *where)
{
	size_t i;
	for (i = 0; kiln_instance_option_keys[i]; i++)
		if (json_object_get(obj, kiln_instance_option_keys[i]))
			return kiln_jdoc_error_at(doc, kiln_jdoc_key_pos(doc, obj, kiln_instance_option_keys[i]),
						  "\"%s\" is an aws option: put it in the \"aws\" block, not %s",
						  kiln_instance_option_keys[i], where);
	return 0;
}

static int check_block(const kiln_jdoc *doc, json_t *root, const char *which)
{
	static const char *const aws_only[] = { "target_group_arns", "load_balancer_names", NULL };
	static const char *const local_only[] = { "load_balancer", NULL };
	const char *const *foreign = !strcmp(which, "aws") ? local_only : aws_only;
	json_t *b = NULL;
	char what[32];
	size_t i;
	int error;

	if ((error = kiln_jdoc_get_object(doc, root, which, false, &b)) < 0 || !b)
		return error;
	snprintf(what, sizeof(what), "the \"%s\" block", which);
	if (strcmp(which, "aws") && (error = misplaced_instance_options(doc, b, "in the \"local\" block")) < 0)
		return error;
	if ((error = kiln_jdoc_check_keys(doc, b, what, strcmp(which, "aws") ? block_keys : aws_block_keys)) < 0)
		return error;
	for (i = 0; foreign[i]; i++)
		if (json_object_get(b, foreign[i]))
			return kiln_jdoc_error_at(doc, kiln_jdoc_key_pos(doc, b, foreign[i]),
						  "\"%s\" does not apply to the %s provider", foreign[i],
						  which);
	return 0;
}

static int load_user_data(const struct src *s, kiln_fleet *f)
{
	kiln_buf dir = KILN_BUF_INIT, path = KILN_BUF_INIT, data = KILN_BUF_INIT;
	char *rel = NULL;
	int error;

	if ((error = get_str(s, "user_data_file", false, &rel)) < 0 || !rel)
		goto done;
	if ((error = kiln_dirname(&dir, f->path)) < 0 ||
	    (error = kiln_path_join(&path, dir.ptr, rel)) < 0)
		goto done;
	kiln_buf_init(&data, USER_DATA_MAX);
	if ((error = kiln_read_file(&data, path.ptr)) < 0) {
		if (error == KILN_ENOMEM)
			kiln_error_set(KILN_EINVALID, "user data file '%s' is larger than 16 KiB", path.ptr);
		kiln_error saved;
		kiln_error_save(&saved);
		error = kiln_jdoc_error(s->doc, owner(s, "user_data_file"), "user_data_file", 0, "%s",
					saved.message);
		goto done;
	}
	if (!(f->user_data_file = kiln_buf_detach(&path)) || !(f->user_data = kiln_buf_detach(&data)))
		error = kiln_error_set(KILN_ENOMEM, "out of memory");
done:
	free(rel);
	kiln_buf_release(&dir);
	kiln_buf_release(&path);
	kiln_buf_release(&data);
	return error;
}

static int parse_doc(kiln_fleet *f, const kiln_jdoc *doc, const char *provider)
{
	struct src s = { doc, kiln_jdoc_root(doc), NULL };
	const char *name = NULL, *file_provider = NULL;
	int64_t desired = 0;
	int error;

	if (!json_is_object(s.root))
		return kiln_jdoc_error(doc, NULL, NULL, 0, "a fleet file must hold a JSON object, not %s",
				       kiln_json_type_name(s.root));
	if ((error = misplaced_instance_options(doc, s.root, "at the top level")) < 0 ||
	    (error = kiln_jdoc_check_keys(doc, s.root, "the fleet file", top_keys)) < 0 ||
	    (error = check_block(doc, s.root, "aws")) < 0 ||
	    (error = check_block(doc, s.root, "local")) < 0)
		return error;
	if ((error = kiln_jdoc_get_string(doc, s.root, "name", true, &name)) < 0)
		return error;
	if (!kiln_fleet_name_valid(name))
		return kiln_jdoc_error(doc, s.root, "name", 0,
				       "bad fleet name \"%s\": use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
				       name);
	snprintf(f->name, sizeof(f->name), "%s", name);
	if ((error = kiln_jdoc_get_string(doc, s.root, "provider", false, &file_provider)) < 0)
		return error;
	if (file_provider && strcmp(file_provider, "aws") && strcmp(file_provider, "local"))
		return kiln_jdoc_error(doc, s.root, "provider", 0,
				       "\"provider\" must be \"aws\" or \"local\", not \"%s\"", file_provider);
	/* the same precedence as cli_provider_name: flag, file, environment, aws */
	if (!provider || !*provider)
		provider = file_provider;
	if (!provider || !*provider)
		provider = getenv("KILN_PROVIDER");
	if (!provider || !*provider)
		provider = "aws";
	if (strcmp(provider, "aws") && strcmp(provider, "local"))
		return kiln_error_set(KILN_EINVALID, "unknown provider '%s': use aws or local", provider);
	snprintf(f->provider, sizeof(f->provider), "%s", provider);
	s.block = json_object_get(s.root, provider);

	if ((error = get_str(&s, "region", false, &f->region)) < 0 ||
	    (error = get_str(&s, "image", true, &f->image)) < 0)
		return error;
	if (!kiln_image_name_valid(f->image))
		return kiln_jdoc_error(doc, owner(&s, "image"), "image", 0,
				       "\"image\" must be an image name such as \"web\" (the version is chosen with --image), not \"%s\"",
				       f->image);
	if ((error = kiln_jdoc_get_int(doc, owner(&s, "desired"), "desired", true, 1, 10000,
				       &desired)) < 0)
		return error;
	f->desired = (unsigned)desired;
	f->health_timeout_s = 600;
	f->health_grace_s = 30;
	f->warmup_s = 0;
	f->drain_timeout_s = -1;
	if ((error = get_batch_size(&s, f)) < 0 || (error = get_retire(&s, f)) < 0 ||
	    (error = get_str(&s, "instance_type", false, &f->instance_type)) < 0 ||
	    (error = get_strings(&s, "subnet_ids", &f->subnet_ids)) < 0 ||
	    (error = get_strings(&s, "security_group_ids", &f->security_group_ids)) < 0 ||
	    (error = get_str(&s, "key_name", false, &f->key_name)) < 0 ||
	    (error = get_str(&s, "iam_instance_profile", false, &f->iam_instance_profile)) < 0 ||
	    (error = load_user_data(&s, f)) < 0 || (error = get_tags(&s, f)) < 0 ||
	    (error = get_int(&s, "health_timeout_s", 1, 86400, &f->health_timeout_s)) < 0 ||
	    (error = get_int(&s, "health_grace_s", 0, 86400, &f->health_grace_s)) < 0 ||
	    (error = get_int(&s, "warmup_s", 0, 86400, &f->warmup_s)) < 0 ||
	    (error = get_int(&s, "drain_timeout_s", 0, 86400, &f->drain_timeout_s)) < 0)
		return error;
	/* both kinds are checked; only the chosen provider's are used */
	if ((error = get_aws_lbs(&s, f, !strcmp(provider, "aws"))) < 0 ||
	    (error = get_local_lb(&s, f, !strcmp(provider, "local"))) < 0)
		return error;
	if (f->n_lbs == 0)
		return kiln_jdoc_error(doc, NULL, NULL, 0,
				       "fleet \"%s\" has no load balancer: give \"target_group_arns\" or \"load_balancer_names\"",
				       f->name);
	if (!strcmp(provider, "aws") && s.block) {
		if (!(f->launch_options = json_object()))
			return kiln_error_set(KILN_ENOMEM, "out of memory");
		if ((error = kiln_instance_options_parse(doc, s.block, f->launch_options)) < 0)
			return error;
		if (!json_object_size(f->launch_options)) {
			json_decref(f->launch_options);
			f->launch_options = NULL;
		}
	}
	return 0;
}

int kiln_fleet_parse(kiln_fleet **out, const char *name, const char *text, const char *provider)
{
	kiln_jdoc *doc = NULL;
	kiln_fleet *f;
	int error;

	*out = NULL;
	if (!(f = calloc(1, sizeof(*f))))
		return kiln_error_set(KILN_ENOMEM, "out of memory");
	if (!(f->path = kiln_strdup(name))) {
		error = KILN_ENOMEM;
		goto done;
	}
	if ((error = kiln_jdoc_parse(&doc, name, text, strlen(text))) < 0 ||
	    (error = parse_doc(f, doc, provider)) < 0)
		goto done;
	*out = f;
	f = NULL;
done:
	kiln_jdoc_free(doc);
	kiln_fleet_free(f);
	if (error < 0 && error != KILN_ENOMEM)
		error = kiln_error_last()->code == KILN_EINVALID ? KILN_EINVALID : error;
	return error;
}

int kiln_fleet_load(kiln_fleet **out, const char *path, const char *provider)
{
	kiln_buf text = KILN_BUF_INIT;
	int error;

	*out = NULL;
	kiln_buf_init(&text, 1 << 20);
	if ((error = kiln_read_file(&text, path)) < 0) {
		/* a missing or unreadable fleet file is bad input, not a cloud failure */
		kiln_error saved;
		kiln_error_save(&saved);
		error = kiln_error_set(KILN_EINVALID, "%s", saved.message);
		goto done;
	}
	error = kiln_fleet_parse(out, path, text.ptr, provider);
done:
	kiln_buf_release(&text);
	return error;
}
