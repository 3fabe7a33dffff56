"""URLs of the public host: site, staff sign-in, admin, platform API, API docs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from saasops import views

admin.site.site_header = "saasops operations"
admin.site.site_title = "saasops"
admin.site.index_title = "Tenants, usage, billing"

urlpatterns = [
    path("", views.public_home, name="public-home"),
    path("accounts/", include("lifecycle.urls_accounts")),
    path("", include("lifecycle.urls_public")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("metering.urls_platform")),
    path("billing/", include("billing.urls_public")),
    path("", include("operations.urls")),  # /metrics (saasops/metrics.py)
    # One document for both hosts' APIs (the default would read only the tenant host's URLs).
    path(
        "api/schema/",
        SpectacularAPIView.as_view(urlconf=["saasops.urls_public", "saasops.urls_tenant"]),
        name="api-schema",
    ),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
]

handler404 = "saasops.views.not_found"
handler500 = "saasops.views.server_error"
