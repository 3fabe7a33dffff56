"""Provider bills: the list, the lines, and the upload form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from operations.admin.common import usd
from operations.importers import MAX_FILE_BYTES, BillFormatError
from operations.models import BillLine, ProviderBill
from operations.services.bills import bill_import


class BillUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV (or .csv.gz): an OpenAI usage/cost export or an AWS Cost and Usage Report.")
    provider = forms.ChoiceField(
        choices=[("", "Tell from the header"), ("openai", "OpenAI"), ("aws", "AWS (CUR)")], required=False
    )


@admin.register(ProviderBill)
class ProviderBillAdmin(admin.ModelAdmin):
    list_display = ("file_name", "provider", "imported_at", "imported_by", "days", "rows", "lines_added",
                    "lines_skipped", "total")  # fmt: skip
    list_filter = ("provider",)
    search_fields = ("file_name", "sha256")
    readonly_fields = ("provider", "file_name", "sha256", "imported_at", "imported_by", "rows", "lines_added",
                       "lines_skipped", "total_cost", "first_day", "last_day", "lines_link")  # fmt: skip
    change_list_template = "admin/operations/providerbill/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # bills arrive through the upload form, never typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("operations.add_providerbill")

    @admin.display(description="days")
    def days(self, obj: ProviderBill) -> str:
        return f"{obj.first_day} to {obj.last_day}" if obj.first_day else "–"

    @admin.display(description="total (USD)", ordering="total_cost")
    def total(self, obj: ProviderBill) -> str:
        return usd(obj.total_cost)

    @admin.display(description="lines")
    def lines_link(self, obj: ProviderBill) -> SafeString:
        url = reverse("admin:operations_billline_changelist") + f"?bill__id__exact={obj.pk}"
        return format_html('<a href="{}">{} line(s)</a>', url, obj.lines_added)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="operations_providerbill_import"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"can_import": self.has_import_permission(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = BillUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > MAX_FILE_BYTES:
                form.add_error("file", f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB.")
            else:
                try:
                    result = bill_import(
                        raw=upload.read(),
                        file_name=upload.name,
                        provider=form.cleaned_data["provider"] or None,
                        user=request.user,  # type: ignore[arg-type]
                    )
                except BillFormatError as exc:
                    form.add_error("file", f"Refused, nothing was imported — {exc}")
                else:
                    level = messages.SUCCESS if result.created else messages.WARNING
                    self.message_user(request, f"{upload.name}: {result.summary}", level)
                    return HttpResponseRedirect(reverse("admin:operations_providerbill_change", args=[result.bill.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import a provider bill",
            "form": form,
        }
        return TemplateResponse(request, "admin/operations/providerbill/import.html", context)


@admin.register(BillLine)
class BillLineAdmin(admin.ModelAdmin):
    list_display = ("day", "provider", "item", "usage_quantity", "usage_unit", "cost", "shared_infrastructure", "bill")
    list_filter = ("provider", "shared_infrastructure", "month")
    search_fields = ("item",)
    list_select_related = ("bill",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # delete the bill instead (its lines go with it)
