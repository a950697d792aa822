/*
 * compare.c: could libcurl's CURLOPT_AWS_SIGV4 replace kiln's signer?
 *
 * The experiment behind docs/sigv4-and-libcurl.md. Every request of the
 * official suite (../shared/testdata/aws-signing-test-suite/v4) and of
 * kiln's botocore vectors (tests/vectors/sigv4) is sent through the
 * libcurl this machine has, with CURLOPT_AWS_SIGV4, to a listener on
 * 127.0.0.1 (CURLOPT_CONNECT_TO keeps the case's Host). The listener keeps
 * the request as it arrived; its Authorization header is compared with the
 * expected one and with what kiln_sigv4_sign makes of the same request.
 *
 * libcurl reads the wall clock itself. Two ways to freeze it are tried:
 *  - "header": pass the case's X-Amz-Date as a request header;
 *  - "interpose": this program defines time(), which the dynamic linker
 *    resolves for libcurl too (no debug build of curl needed).
 *
 * Build and run: bench/curl-sigv4/run.sh (prints one line per case and a
 * summary). Not a test: it measures a library we chose not to use.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <jansson.h>

#include "aws/sigv4.h"
#include "core/buf.h"
#include "core/error.h"

/* ---- a frozen clock for libcurl ---------------------------------------- */

static time_t frozen_time; /* 0: the real clock */

/*
 * Interposes libc's time(): libcurl's signer calls time(&clock), and a
 * definition in the executable wins the dynamic symbol lookup.
 */
time_t time(time_t *out)
{
	struct timespec ts;
	time_t t;
	if (frozen_time) {
		t = frozen_time;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		t = ts.tv_sec;
	}
	if (out)
		*out = t;
	return t;
}

/* ---- the listener ------------------------------------------------------ */

static int listen_fd;
static int listen_port;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_request[65536];

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		char buf[65536];
		size_t len = 0, want = 0;
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		for (;;) {
			ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
			char *end;
			if (n <= 0)
				break;
			len += (size_t)n;
			buf[len] = '\0';
			if ((end = strstr(buf, "\r\n\r\n"))) {
				const char *cl = strcasestr(buf, "\r\ncontent-length:");
				want = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
				if (len >= want)
					break;
			}
		}
		pthread_mutex_lock(&last_lock);
		memcpy(last_request, buf, len);
		last_request[len] = '\0';
		pthread_mutex_unlock(&last_lock);
		const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
		if (write(fd, reply, sizeof(reply) - 1) < 0)
			perror("write");
		close(fd);
	}
	return NULL;
}

static void start_listener(void)
{
	struct sockaddr_in a = { 0 };
	socklen_t alen = sizeof(a);
	pthread_t th;

	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(listen_fd, 8) < 0) {
		perror("listen");
		exit(1);
	}
	getsockname(listen_fd, (struct sockaddr *)&a, &alen);
	listen_port = ntohs(a.sin_port);
	pthread_create(&th, NULL, serve, NULL);
	pthread_detach(th);
}

/* The value of a header in the captured request (heap), or NULL. */
static char *captured_header(const char *req, const char *name)
{
	size_t n = strlen(name);
	const char *p = strstr(req, "\r\n");
	while (p && p[2] != '\r') {
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			return kiln_view_dup((kiln_view){ v, (size_t)(e - v) });
		}
		p = strstr(p, "\r\n");
	}
	return NULL;
}

/* ---- one request, both ways -------------------------------------------- */

typedef struct request_case {
	const char *name;
	const char *method, *host, *path, *query, *body;
	size_t body_len;
	kiln_http_header headers[32];
	size_t n_headers;
	const char *region, *service;
	const char *akid, *secret, *token;
	int64_t time;
	bool normalize, sign_body, omit_token;
	const char *want_authorization;
} request_case;

typedef enum clock_mode { CLOCK_HEADER, CLOCK_INTERPOSE } clock_mode;

typedef struct outcome {
	bool curl_ok;       /* curl sent the request */
	bool match;         /* curl's Authorization == the expected one */
	char note[256];
} outcome;

static void first_diff(char *out, size_t size, const char *want, const char *got)
{
	const char *w = strstr(want, "SignedHeaders="), *g = strstr(got, "SignedHeaders=");
	if (w && g && strncmp(w, g, strcspn(w, ",")) != 0)
		snprintf(out, size, "signed headers: want %.*s, curl %.*s", (int)strcspn(w + 14, ","),
			 w + 14, (int)strcspn(g + 14, ","), g + 14);
	else if (!strstr(got, "Credential="))
		snprintf(out, size, "curl sent: %.120s", got);
	else
		snprintf(out, size, "same signed headers, other signature (canonical path, query or value)");
}

/*
 * suppress: remove curl's default Accept (and its form Content-Type on a
 * POST) with curl's "Name:" idiom, so that only the case's headers are
 * sent. Without it curl sends its Accept (any type) and the form Content-Type
 * unsigned, which a server accepts.
 */
static outcome run_curl(const request_case *rc, clock_mode mode, bool suppress)
{
	struct curl_slist *hdrs = NULL, *connect_to = NULL;
	char url[4096], line[8192], sigv4[256], userpwd[512], ct[512];
	const char *host_only = rc->host;
	bool has_ct = false;
	outcome o = { 0 };
	CURLcode cc;
	CURL *h = curl_easy_init();
	size_t i;

	/*
	 * curl refuses a raw space in a URL: hand it "%20", which is also what
	 * goes on the wire (the suite signs the raw path encoded once).
	 */
	{
		kiln_buf p = KILN_BUF_INIT;
		const char *c;
		for (c = rc->path; *c; c++)
			*c == ' ' ? kiln_buf_puts(&p, "%20") : kiln_buf_putc(&p, *c);
		snprintf(url, sizeof(url), "http://%s%s%s%s", rc->host, p.ptr,
			 rc->query && *rc->query ? "?" : "", rc->query ? rc->query : "");
		kiln_buf_release(&p);
	}
	/* the Host stays the case's; the connection goes to the listener */
	snprintf(ct, sizeof(ct), "%.*s:%s:127.0.0.1:%d", (int)strcspn(host_only, ":"), host_only,
		 strchr(host_only, ':') ? strchr(host_only, ':') + 1 : "80", listen_port);
	connect_to = curl_slist_append(connect_to, ct);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to);
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (!rc->normalize)
		curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:%s", rc->region, rc->service);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
	snprintf(userpwd, sizeof(userpwd), "%s:%s", rc->akid, rc->secret);
	curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);

	if (suppress)
		hdrs = curl_slist_append(hdrs, "Accept:");
	for (i = 0; i < rc->n_headers; i++) {
		/* a folded value cannot be handed to curl as it is: unfold it */
		char v[4096];
		size_t j, k = 0;
		for (j = 0; rc->headers[i].value[j] && k + 1 < sizeof(v); j++)
			v[k++] = rc->headers[i].value[j] == '\n' ? ' ' : rc->headers[i].value[j];
		v[k] = '\0';
		snprintf(line, sizeof(line), "%s: %s", rc->headers[i].name, v);
		hdrs = curl_slist_append(hdrs, line);
		if (!strcasecmp(rc->headers[i].name, "content-type"))
			has_ct = true;
	}
	if (rc->token && !rc->omit_token) {
		/* 7.88.1 has no option for a session token: the header by hand */
		snprintf(line, sizeof(line), "X-Amz-Security-Token: %s", rc->token);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (rc->sign_body) {
		unsigned char md[32];
		char hex[65];
		unsigned int mdlen;
		EVP_Digest(rc->body, rc->body_len, md, &mdlen, EVP_sha256(), NULL);
		for (i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		snprintf(line, sizeof(line), "X-Amz-Content-Sha256: %s", hex);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (mode == CLOCK_HEADER) {
		char amz[17];
		struct tm tm;
		time_t t = (time_t)rc->time;
		gmtime_r(&t, &tm);
		strftime(amz, sizeof(amz), "%Y%m%dT%H%M%SZ", &tm);
		snprintf(line, sizeof(line), "X-Amz-Date: %s", amz);
		hdrs = curl_slist_append(hdrs, line);
		frozen_time = 0;
	} else {
		frozen_time = (time_t)rc->time;
	}
	if (!strcmp(rc->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, rc->body ? rc->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)rc->body_len);
		if (suppress && !has_ct) /* curl adds a form Content-Type to every POST otherwise */
			hdrs = curl_slist_append(hdrs, "Content-Type:");
	} else if (strcmp(rc->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rc->method);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

	pthread_mutex_lock(&last_lock);
	last_request[0] = '\0';
	pthread_mutex_unlock(&last_lock);
	cc = curl_easy_perform(h);
	frozen_time = 0;
	if (cc != CURLE_OK) {
		snprintf(o.note, sizeof(o.note), "curl refused: %s", curl_easy_strerror(cc));
	} else {
		char *auth;
		pthread_mutex_lock(&last_lock);
		auth = captured_header(last_request, "Authorization");
		pthread_mutex_unlock(&last_lock);
		o.curl_ok = true;
		o.match = auth && !strcmp(auth, rc->want_authorization);
		if (!o.match)
			first_diff(o.note, sizeof(o.note), rc->want_authorization, auth ? auth : "(none)");
		free(auth);
	}
	curl_slist_free_all(hdrs);
	curl_slist_free_all(connect_to);
	curl_easy_cleanup(h);
	return o;
}

static bool run_kiln(const request_case *rc)
{
	kiln_aws_credentials creds = { (char *)rc->akid, (char *)rc->secret, (char *)rc->token, 0, "" };
	kiln_sigv4_request req = { 0 };
	kiln_sigv4_result res;
	bool ok;

	req.method = rc->method;
	req.host = rc->host;
	req.path = rc->path;
	req.query = rc->query;
	req.headers = rc->headers;
	req.n_headers = rc->n_headers;
	req.body = rc->body;
	req.body_len = rc->body_len;
	req.region = rc->region;
	req.service = rc->service;
	req.time = rc->time;
	req.no_normalize_path = !rc->normalize;
	req.sign_content_sha256 = rc->sign_body;
	req.omit_session_token = rc->omit_token;
	kiln_sigv4_result_init(&res);
	ok = kiln_sigv4_sign(&res, &req, &creds) == 0 && !strcmp(res.authorization, rc->want_authorization);
	kiln_sigv4_result_release(&res);
	return ok;
}

/* ---- loading the cases -------------------------------------------------- */

static char *slurp(const char *path)
{
	kiln_buf b = KILN_BUF_INIT;
	FILE *f = fopen(path, "rb");
	char chunk[4096];
	size_t n;
	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		kiln_buf_put(&b, chunk, n);
	fclose(f);
	return kiln_buf_detach(&b);
}

static int64_t parse_ts(const char *s)
{
	struct tm tm = { 0 };
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* request.txt -> rc (strings leak: this is a one-shot program) */
static void parse_suite_request(request_case *rc, char *text)
{
	char *line = text, *nl = strchr(line, '\n'), *sp1, *sp2, *q;
	if (nl)
		*nl = '\0';
	sp1 = strchr(line, ' ');
	sp2 = strrchr(line, ' ');
	*sp1 = *sp2 = '\0';
	rc->method = line;
	rc->path = sp1 + 1;
	if ((q = strchr(rc->path, '?'))) {
		*q = '\0';
		rc->query = q + 1;
	}
	line = nl ? nl + 1 : NULL;
	while (line && *line) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (!*line) {
			rc->body = nl ? nl + 1 : "";
			rc->body_len = strlen(rc->body);
			break;
		}
		if (*line == ' ' && rc->n_headers) {
			kiln_http_header *h = &rc->headers[rc->n_headers - 1];
			h->value = kiln_strdupf("%s\n%s", h->value, line);
		} else {
			char *colon = strchr(line, ':');
			*colon = '\0';
			if (!strcasecmp(line, "host")) {
				rc->host = colon + 1;
			} else {
				rc->headers[rc->n_headers].name = line;
				rc->headers[rc->n_headers++].value = colon + 1;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
}

static int load_suite_case(request_case *rc, const char *dir, const char *name)
{
	char path[4096], *text, *auth;
	json_t *ctx, *c;

	memset(rc, 0, sizeof(*rc));
	rc->name = strdup(name);
	snprintf(path, sizeof(path), "%s/%s/context.json", dir, name);
	if (!(ctx = json_load_file(path, 0, NULL)))
		return -1;
	c = json_object_get(ctx, "credentials");
	rc->akid = json_string_value(json_object_get(c, "access_key_id"));
	rc->secret = json_string_value(json_object_get(c, "secret_access_key"));
	rc->token = json_string_value(json_object_get(c, "token"));
	rc->region = json_string_value(json_object_get(ctx, "region"));
	rc->service = json_string_value(json_object_get(ctx, "service"));
	rc->time = parse_ts(json_string_value(json_object_get(ctx, "timestamp")));
	rc->normalize = !json_is_false(json_object_get(ctx, "normalize"));
	rc->sign_body = json_is_true(json_object_get(ctx, "sign_body"));
	rc->omit_token = json_is_true(json_object_get(ctx, "omit_session_token"));
	snprintf(path, sizeof(path), "%s/%s/request.txt", dir, name);
	if (!(text = slurp(path)))
		return -1;
	parse_suite_request(rc, text);
	snprintf(path, sizeof(path), "%s/%s/header-signed-request.txt", dir, name);
	text = slurp(path);
	auth = text ? strstr(text, "\nAuthorization:") : NULL;
	if (!auth)
		return -1;
	auth += 15;
	auth[strcspn(auth, "\n")] = '\0';
	rc->want_authorization = auth;
	return 0;
}

static int load_vector(request_case *rc, const char *path, const char *name)
{
	json_t *v = json_load_file(path, 0, NULL), *r, *c, *hs, *hd;
	size_t i;

	memset(rc, 0, sizeof(*rc));
	if (!v)
		return -1;
	rc->name = strdup(name);
	r = json_object_get(v, "request");
	c = json_object_get(v, "credentials");
	rc->method = json_string_value(json_object_get(r, "method"));
	rc->host = json_string_value(json_object_get(r, "host"));
	rc->path = json_string_value(json_object_get(r, "path"));
	rc->query = json_string_value(json_object_get(r, "query"));
	rc->body = json_string_value(json_object_get(r, "body"));
	rc->body_len = strlen(rc->body);
	hs = json_object_get(r, "headers");
	json_array_foreach(hs, i, hd) {
		rc->headers[i].name = json_string_value(json_array_get(hd, 0));
		rc->headers[i].value = json_string_value(json_array_get(hd, 1));
	}
	rc->n_headers = json_array_size(hs);
	rc->akid = json_string_value(json_object_get(c, "access_key_id"));
	rc->secret = json_string_value(json_object_get(c, "secret_access_key"));
	rc->token = json_string_value(json_object_get(c, "session_token"));
	rc->region = json_string_value(json_object_get(v, "region"));
	rc->service = json_string_value(json_object_get(v, "signing_name"));
	rc->time = json_integer_value(json_object_get(v, "time"));
	rc->normalize = true;
	rc->want_authorization = json_string_value(json_object_get(v, "authorization"));
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t list_dir(char **names, size_t max, const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < max) {
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (de->d_name[0] == '.' || l < sl || strcmp(de->d_name + l - sl, suffix))
			continue;
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_name);
	return n;
}

typedef struct tally {
	int total, kiln_ok, curl_sent[3], curl_match[3];
} tally;

static void run_one(tally *t, const request_case *rc)
{
	outcome o[3];
	bool k = run_kiln(rc);
	int i;
	o[0] = run_curl(rc, CLOCK_HEADER, false);
	o[1] = run_curl(rc, CLOCK_INTERPOSE, false);
	o[2] = run_curl(rc, CLOCK_INTERPOSE, true);
	t->total++;
	t->kiln_ok += k;
	for (i = 0; i < 3; i++) {
		t->curl_sent[i] += o[i].curl_ok;
		t->curl_match[i] += o[i].match;
	}
	printf("%-46s kiln %-4s curl: date-header %-3s time() %-3s suppressed %-3s %s\n", rc->name,
	       k ? "ok" : "FAIL", o[0].match ? "ok" : "no", o[1].match ? "ok" : "no",
	       o[2].match ? "ok" : "no", o[1].match ? "" : o[1].note);
}

static void summary(const char *what, const tally *t)
{
	printf("%-8s kiln %d/%d | curl, X-Amz-Date header: %d/%d | curl, frozen time(): %d/%d | "
	       "curl, frozen time(), defaults suppressed: %d/%d (sent %d)\n",
	       what, t->kiln_ok, t->total, t->curl_match[0], t->total, t->curl_match[1], t->total,
	       t->curl_match[2], t->total, t->curl_sent[2]);
}

int main(int argc, char **argv)
{
	const char *src = argc > 1 ? argv[1] : ".";
	char dir[4096], *names[256];
	tally suite = { 0 }, vec = { 0 };
	request_case rc;
	size_t n, i;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	start_listener();
	printf("%s\n\n", curl_version());

	snprintf(dir, sizeof(dir), "%s/../shared/testdata/aws-signing-test-suite/v4", src);
	n = list_dir(names, 256, dir, "");
	printf("== official suite (%zu cases) ==\n", n);
	for (i = 0; i < n; i++)
		if (load_suite_case(&rc, dir, names[i]) == 0)
			run_one(&suite, &rc);

	snprintf(dir, sizeof(dir), "%s/tests/vectors/sigv4", src);
	n = list_dir(names, 256, dir, ".json");
	printf("\n== botocore vectors (%zu) ==\n", n);
	for (i = 0; i < n; i++) {
		char path[8192];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (load_vector(&rc, path, names[i]) == 0)
			run_one(&vec, &rc);
	}

	printf("\n");
	summary("suite:", &suite);
	summary("vectors:", &vec);
	curl_global_cleanup();
	return 0;
}
