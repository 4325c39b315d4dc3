"""Create the demo organization, its user and its cameras on first run, printing a fresh
password once."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from cameras.services import demo_setup


class Command(BaseCommand):
    help = (
        "Create the demo organization, its user 'demo' and its cameras unless they exist; "
        "print the password once."
    )

    def handle(self, *args, **options):
        if get_user_model().objects.filter(username="demo").exists():
            self.stdout.write(
                "Demo user 'demo' exists already (its password was printed on first run)."
            )
            return
        password = secrets.token_urlsafe(12)
        organization, _ = demo_setup(password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created organization '{organization.name}' and user 'demo'.\n"
                f"  username: demo\n  password: {password}\n"
                "This password is shown only now; change it under /admin/ or with "
                "'python manage.py changepassword demo'."
            )
        )
