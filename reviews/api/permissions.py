"""DRF permission classes built on reviews.roles."""

from rest_framework.permissions import BasePermission

from reviews import roles


class IsReviewer(BasePermission):
    message = "Reviewer or admin role required."

    def has_permission(self, request, view) -> bool:
        return roles.is_reviewer(request.user)


class IsAdmin(BasePermission):
    message = "Admin role required."

    def has_permission(self, request, view) -> bool:
        return roles.is_admin(request.user)


class CanSubmitEvents(BasePermission):
    message = "API client or admin role required."

    def has_permission(self, request, view) -> bool:
        return roles.is_api_client(request.user)


class CanReadEvents(BasePermission):
    message = "API client, reviewer or admin role required."

    def has_permission(self, request, view) -> bool:
        return roles.is_api_client(request.user) or roles.is_reviewer(request.user)


class ReadReviewerWriteAdmin(BasePermission):
    message = "Admin role required to change this."

    def has_permission(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return roles.is_reviewer(request.user) or roles.is_api_client(request.user)
        return roles.is_admin(request.user)
