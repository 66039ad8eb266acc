"""Authentication backends."""

from axes.backends import AxesStandaloneBackend


class LoginAttemptsBackend(AxesStandaloneBackend):
    """django-axes' lockout check for logins that come with an HTTP request (the login page, the
    Django admin). A login without a request (a script, the test client) has no address to lock
    out, so it is left to the next backend instead of being refused."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
