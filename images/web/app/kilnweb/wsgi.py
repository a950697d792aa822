"""WSGI entry point for uWSGI (module = kilnweb.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kilnweb.settings")
application = get_wsgi_application()
