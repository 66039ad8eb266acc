"""Print the API token of a user (creating the token, and with --create the user, if needed)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from reviews.models import Source
from reviews.roles import API_CLIENTS


class Command(BaseCommand):
    help = "Print the API token for USERNAME. Use --create to create an API client user."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user in the api_clients group if missing")
        parser.add_argument("--source", action="append", default=[], help="grant this API client the source (repeatable)")

    def handle(self, *args, **opts):
        User = get_user_model()
        user = User.objects.filter(username=opts["username"]).first()
        if user is None:
            if not opts["create"]:
                raise CommandError(f"no user {opts['username']!r} (use --create for a new API client)")
            user = User.objects.create_user(username=opts["username"])
            user.set_unusable_password()
            user.save()
            user.groups.add(Group.objects.get(name=API_CLIENTS))
        for name in opts["source"]:
            source = Source.objects.filter(name=name).first()
            if source is None:
                raise CommandError(f"unknown source {name!r}")
            source.api_clients.add(user)
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
