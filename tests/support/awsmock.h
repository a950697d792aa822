/*
 * awsmock.h: a scripted transport for aws/http.h, for unit tests.
 *
 * Replies are queued in order (a status and a body, or a body read from a
 * fixture in tests/data/aws/, or a transport failure); every request the
 * client sends is kept whole (method, URL, headers, body, and the body's
 * form or JSON fields decoded), so a test can check the exact request, as
 * curl's tests/data/testN files do. When the queue is empty, the "repeat"
 * reply is used if set, else the test fails.
 */
#ifndef KILN_TEST_AWSMOCK_H
#define KILN_TEST_AWSMOCK_H

#include "aws/config.h"
#include "aws/http.h"
#include "core/cloud.h"

#define KILN_MOCK_MAX 256

typedef struct kiln_mock_reply {
	int transport_error; /* 0: a reply; else KILN_ETIMEOUT, KILN_ETRANSIENT ... */
	bool maybe_sent;
	int status;
	char *body;
	char date[64];
	char error_type[128];
} kiln_mock_reply;

typedef struct kiln_mock_request {
	char *method;
	char *url;
	char *body;
	kiln_tags headers; /* name -> value, names as sent */
	kiln_tags params;  /* Query form fields, decoded; or the JSON body's top-level strings */
	int64_t wall_s;    /* the (virtual) wall clock when it was sent */
	bool fresh_connection;
} kiln_mock_request;

typedef struct kiln_awsmock {
	kiln_aws_transport transport;
	kiln_mock_reply replies[KILN_MOCK_MAX];
	size_t n_replies, next;
	kiln_mock_reply repeat;
	bool has_repeat;
	kiln_mock_request requests[KILN_MOCK_MAX];
	size_t n_requests;
} kiln_awsmock;

/* The mock lives where the test puts it (it is large: make it static). */
void kiln_awsmock_init(kiln_awsmock *m);
void kiln_awsmock_release(kiln_awsmock *m);

void kiln_awsmock_push(kiln_awsmock *m, int status, const char *body);
/* The body of tests/data/aws/NAME (a real moto reply, see capture.sh). */
void kiln_awsmock_push_file(kiln_awsmock *m, int status, const char *name);
void kiln_awsmock_push_fail(kiln_awsmock *m, int transport_error, bool maybe_sent);
/* An EC2-shaped (<Response><Errors>) or ELB-shaped error reply. */
void kiln_awsmock_push_ec2_error(kiln_awsmock *m, int status, const char *code, const char *message);
/* Sets the Date header of the reply pushed last. */
void kiln_awsmock_last_date(kiln_awsmock *m, const char *date);
/* Used whenever the queue is empty. */
void kiln_awsmock_repeat(kiln_awsmock *m, int status, const char *body);

/* Request i (0-based); fails the test if there is none. */
const kiln_mock_request *kiln_awsmock_request(const kiln_awsmock *m, size_t i);
const char *kiln_mock_header(const kiln_mock_request *r, const char *name);
const char *kiln_mock_param(const kiln_mock_request *r, const char *name);

/* A config for tests: us-east-1, https://SERVICE.us-east-1.amazonaws.com, fixed keys. */
void kiln_awsmock_config(kiln_aws_config *cfg);
/* The secret kiln_awsmock_config uses, to check it never leaks. */
#define KILN_MOCK_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* Reads tests/data/aws/NAME into a heap string. */
char *kiln_awsmock_fixture(const char *name);

#endif
