"""Template context: the current user's roles, for the navigation."""

from reviews import roles


def user_roles(request):
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"is_admin": roles.is_admin(user), "is_reviewer": roles.is_reviewer(user)}
