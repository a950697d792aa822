#!/bin/sh
# Turns a fresh Debian 12 into the classic web server: nginx in front of
# uWSGI running a Django app under systemd. Run as root by kiln's shell
# provisioner after the file provisioners staged app/ and files/ in $STAGING.
#
# Environment (from web.json): APP_DIR, IMAGE_VERSION, STAGING; MESSAGE (a
# line the front page shows) and HEALTHZ_FAIL (non-empty: build an image
# whose /healthz fails with that reason, to see a rollout refuse it).
set -eu

: "${APP_DIR:?}" "${IMAGE_VERSION:?}" "${STAGING:?}"
MESSAGE=${MESSAGE-}
HEALTHZ_FAIL=${HEALTHZ_FAIL-}

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Python packages from Debian, not PyPI: reproducible and patched by the distribution
# --force-unsafe-io: no fsync per file; a build that crashes is thrown away anyway
apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io \
	nginx python3-venv python3-django uwsgi uwsgi-plugin-python3 curl ca-certificates

# the app runs as its own user, in www-data so nginx can reach its socket
if ! id django >/dev/null 2>&1; then
	useradd --system --gid www-data --home-dir "$APP_DIR" --shell /usr/sbin/nologin django
fi
install -d -o django -g www-data -m 0750 "$APP_DIR"

# a venv that sees Debian's Django (system site packages); without pip, which
# the app does not use and whose bootstrap (ensurepip) took 10-20 s of a build
if [ ! -x "$APP_DIR/venv/bin/python3" ]; then
	python3 -m venv --system-site-packages --without-pip "$APP_DIR/venv"
fi

# the source, and the version this image was built as (shown on the app's page)
rm -rf "$APP_DIR/app"
cp -a "$STAGING/app" "$APP_DIR/app"
printf '%s\n' "$IMAGE_VERSION" >"$APP_DIR/app/IMAGE_VERSION"
printf '%s\n' "$MESSAGE" >"$APP_DIR/app/MESSAGE"
if [ -n "$HEALTHZ_FAIL" ]; then
	printf '%s\n' "$HEALTHZ_FAIL" >"$APP_DIR/app/HEALTHZ_FAIL"
	echo "warning: this image is built broken on purpose: /healthz will fail ($HEALTHZ_FAIL)" >&2
fi
# one key per image: the app keeps no sessions, so instances need not differ
if [ ! -s "$APP_DIR/secret_key" ]; then
	python3 -c 'import secrets; print(secrets.token_urlsafe(50))' >"$APP_DIR/secret_key"
fi
chown -R django:www-data "$APP_DIR"
chmod 0400 "$APP_DIR/secret_key"

# uWSGI: the app's ini beside it, a systemd unit to run it
sed "s|@APP_DIR@|$APP_DIR|g" "$STAGING/files/uwsgi.ini" >"$APP_DIR/uwsgi.ini"
sed "s|@APP_DIR@|$APP_DIR|g" "$STAGING/files/uwsgi.service" >/etc/systemd/system/uwsgi.service
chmod 0644 "$APP_DIR/uwsgi.ini" /etc/systemd/system/uwsgi.service

# nginx: the site in sites-available, linked into sites-enabled
sed "s|@APP_DIR@|$APP_DIR|g" "$STAGING/files/nginx-web.conf" >/etc/nginx/sites-available/web
ln -sf /etc/nginx/sites-available/web /etc/nginx/sites-enabled/web
rm -f /etc/nginx/sites-enabled/default
nginx -t

systemctl daemon-reload
systemctl enable uwsgi.service nginx.service
systemctl restart uwsgi.service
systemctl restart nginx.service

rm -rf "$STAGING"
echo "web server ready: version $IMAGE_VERSION in $APP_DIR"
