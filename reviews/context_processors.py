"""Template context: the current user's roles, for the navigation, and an admin's escalations."""

import functools

from reviews import roles


def user_roles(request):
    user = getattr(request, "user", None)
    if user is None:
        return {}
    is_admin = roles.is_admin(user)
    context = {"is_admin": is_admin, "is_reviewer": roles.is_reviewer(user)}
    if is_admin:
        from reviews.selectors import escalations_waiting_count

        # Templates call it, so the count (one indexed query) is made only on pages that show
        # it, and once per response however often it is shown.
        context["escalations_waiting"] = functools.cache(lambda: escalations_waiting_count(admin=user))
    return context
