"""Views of the platform itself: public home, unknown hosts, error pages."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import View


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return render(request, "500.html", status=500)


class UnknownHostView(View):
    """A host that is neither the public site nor a tenant: a friendly 404, no crash."""

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        return render(
            request,
            "unknown_host.html",
            {"host": request.META.get("HTTP_HOST", "")[:100], "base_domain": settings.BASE_DOMAIN},
            status=404,
        )


def public_home(request: HttpRequest) -> HttpResponse:
    return render(request, "public/home.html")
