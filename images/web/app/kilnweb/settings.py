"""Settings of the web app baked into the `web` image.

The app is stateless (no database, no sessions): every instance of a fleet
serves the same pages, so instances can be replaced at any time.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _secret_key():
    # written by scripts/install.sh at build time, readable only by the app
    env = os.environ.get("DJANGO_SECRET_KEY")
    if env:
        return env
    path = BASE_DIR.parent / "secret_key"
    try:
        return path.read_text().strip()
    except OSError:
        # development only (manage.py runserver from a checkout)
        return "insecure-development-key"


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "kilnweb.urls"
WSGI_APPLICATION = "kilnweb.wsgi.application"
DATABASES = {}
TEMPLATES = []
USE_TZ = True
STATIC_URL = "/static/"
