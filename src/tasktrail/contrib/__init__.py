"""Integrations with optional dependencies (``pip install tasktrail[celery]``)."""
