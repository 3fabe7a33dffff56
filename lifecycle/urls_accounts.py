"""Accounts on both hosts (mounted at /accounts/): allauth's sign-in, sign-out, password
reset and email views. `login` and `logout` keep the names the templates and LOGIN_URL use."""

from allauth.account import views as allauth_views
from django.urls import include, path

urlpatterns = [
    path("login/", allauth_views.login, name="login"),
    path("logout/", allauth_views.logout, name="logout"),
    path("", include("allauth.account.urls")),
]
