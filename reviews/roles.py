"""Roles are Django groups. Admins are superusers or members of "admins"; reviewers of "reviewers";
REST clients that submit events of "api_clients". Every page and endpoint asks these functions."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

ADMINS = "admins"
REVIEWERS = "reviewers"
API_CLIENTS = "api_clients"
ROLE_GROUPS = (ADMINS, REVIEWERS, API_CLIENTS)


def _groups(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated or not user.is_active:
        return set()
    cache = getattr(user, "_secai_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        user._secai_groups = cache  # type: ignore[union-attr]
    return cache


def is_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_superuser or ADMINS in _groups(user)))


def is_reviewer(user) -> bool:
    return is_admin(user) or REVIEWERS in _groups(user)


def is_api_client(user) -> bool:
    return is_admin(user) or API_CLIENTS in _groups(user)


def may_submit_to(user, source) -> bool:
    """Admins submit anywhere; an API client only to the sources it has been granted."""
    if is_admin(user):
        return True
    return is_api_client(user) and source.api_clients.filter(pk=user.pk).exists()


def may_review(user, source_id: int) -> bool:
    """Admins review every source; a reviewer only the sources they are assigned to."""
    if is_admin(user):
        return True
    if not is_reviewer(user):
        return False
    from reviews.models import Source

    return Source.reviewers.through.objects.filter(source_id=source_id, user_id=user.pk).exists()
