"""The session's Nginx (nginx_testlib.py): the role's config in front of real account services."""

from nginx_testlib import nginx  # noqa: F401  (the fixture)
