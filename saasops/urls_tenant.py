"""URLs of a tenant host (<slug>.<BASE_DOMAIN>): the customer's workspace and tenant API."""

from django.urls import include, path

urlpatterns = [
    path("", include("workspace.urls")),
    path("api/v1/", include("metering.urls_tenant")),
    path("billing/", include("billing.urls_tenant")),
    path("accounts/", include("lifecycle.urls_accounts")),
    path("", include("lifecycle.urls_tenant")),
]

handler404 = "saasops.views.not_found"
handler500 = "saasops.views.server_error"
