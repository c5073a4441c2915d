/*
 * splice-relay: the least a user-space TCP relay can do, as a reference for
 * bench/run.sh. It listens on 127.0.0.1:PORT and relays each connection to
 * UPSTREAM (an IPv4 HOST:PORT): two threads per connection, one per
 * direction, each moving bytes kernel to kernel with splice(2) through a
 * pipe of its own, and passing the end of each direction on as a
 * half-close. No toxics, no API, no buffering in user space.
 *
 *   splice-relay PORT UPSTREAM_HOST:PORT
 *
 * Built by bench/run.sh with the machine's C compiler.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in upstream;

struct conn {
	int client, server;
	int ended; /* directions finished, under lock */
	pthread_mutex_t lock;
};

struct half {
	struct conn *c;
	int src, dst;
};

static void finish(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	int last = ++c->ended == 2;
	pthread_mutex_unlock(&c->lock);
	if (last) {
		close(c->client);
		close(c->server);
		pthread_mutex_destroy(&c->lock);
		free(c);
	}
}

/* pump moves src to dst until src ends, then half-closes dst. */
static void *pump(void *arg)
{
	struct half *h = arg;
	int p[2];
	if (pipe2(p, O_CLOEXEC) == 0) {
		for (;;) {
			ssize_t n = splice(h->src, NULL, p[1], NULL, 1 << 20, SPLICE_F_MOVE);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			while (n > 0) {
				ssize_t m = splice(p[0], NULL, h->dst, NULL, n, SPLICE_F_MOVE);
				if (m < 0 && errno == EINTR)
					continue;
				if (m <= 0)
					goto out;
				n -= m;
			}
		}
	out:
		close(p[0]);
		close(p[1]);
	}
	shutdown(h->dst, SHUT_WR);
	finish(h->c);
	free(h);
	return NULL;
}

static void start(struct conn *c, int src, int dst)
{
	struct half *h = malloc(sizeof *h);
	pthread_t t;
	pthread_attr_t a;
	h->c = c, h->src = src, h->dst = dst;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 << 10);
	if (pthread_create(&t, &a, pump, h) != 0) {
		shutdown(dst, SHUT_WR);
		finish(c);
		free(h);
	}
	pthread_attr_destroy(&a);
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons(atoi(colon + 1));
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 3 || parse_addr(argv[2], &upstream) != 0) {
		fprintf(stderr, "usage: splice-relay PORT UPSTREAM_IPV4:PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int ln = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(ln, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(ln, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ln, 1024) != 0) {
		perror("splice-relay: listen");
		return 1;
	}
	for (;;) {
		int client = accept4(ln, NULL, NULL, SOCK_CLOEXEC);
		if (client < 0)
			continue;
		int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(server, (struct sockaddr *)&upstream, sizeof upstream) != 0) {
			close(server);
			close(client);
			continue;
		}
		setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		c->client = client, c->server = server;
		pthread_mutex_init(&c->lock, NULL);
		start(c, client, server);
		start(c, server, client);
	}
}
