"""URLs of a tenant host (<slug>.<BASE_DOMAIN>): the customer's workspace and tenant API."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from tenants.auth import SignInForm

urlpatterns = [
    path("", include("workspace.urls")),
    path("api/v1/", include("metering.urls_tenant")),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]

handler404 = "saasops.views.not_found"
handler500 = "saasops.views.server_error"
