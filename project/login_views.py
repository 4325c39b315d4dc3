"""The log-in pages: Django's, with the lockout of `project.login_limits` put in words."""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from project.login_limits import login_lockout_of


class LockoutMessageMixin:
    """A refused log-in says how long to wait when a lock refused it, not "wrong password"."""

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            if lockout := login_lockout_of(self.request):
                raise ValidationError(lockout.message, code="locked_out") from None
            raise


class LoginForm(LockoutMessageMixin, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match. Please try again.",
    }


class AdminLoginForm(LockoutMessageMixin, AdminAuthenticationForm):
    pass


class LoginView(auth_views.LoginView):
    form_class = LoginForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if lockout := login_lockout_of(self.request):
            response.status_code = 429
            response["Retry-After"] = str(lockout.retry_after)
        return response
