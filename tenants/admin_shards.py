"""Staff admin for vector shards: load against capacity, rebalancing, and the index moves
that rebalancing leaves for staff to carry out."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from tenants.admin_operations import staff_actor
from tenants.admin_plans import DeleteWhileInUseGuard
from tenants.models import ShardMove, VectorShard
from tenants.shards import shard_rebalance


class RebalanceForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=150,
        widget=forms.TextInput(attrs={"size": 70}),
        help_text="Required. Stored on every move, with your email.",
    )


@admin.register(VectorShard)
class VectorShardAdmin(DeleteWhileInUseGuard):
    list_display = ["name", "connection_label", "load", "capacity", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "connection_label"]
    actions = ["rebalance"]
    readonly_fields = ["created_at"]
    in_use_hint = "Deactivate it and rebalance: its tenants move to other shards."

    def get_queryset(self, request: HttpRequest) -> QuerySet[VectorShard]:
        return super().get_queryset(request).annotate(n_tenants=Count("tenants", filter=Q(tenants__kind="customer")))

    @admin.display(description="load (tenants)", ordering="n_tenants")
    def load(self, obj: VectorShard) -> SafeString:
        used = getattr(obj, "n_tenants", 0)
        percent = min(100, round(100 * used / obj.capacity)) if obj.capacity else 100
        level = "full" if percent >= 100 else "high" if percent >= 80 else "ok"
        return format_html(
            '<span class="load-bar load-{}"><span style="width: {}%"></span></span> {} / {} ({}%)',
            level,
            percent,
            used,
            obj.capacity,
            percent,
        )

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.rebalance_view)
        return [path("rebalance/", view, name="tenants_vectorshard_rebalance"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_rebalance": self.has_change_permission(request)}
        return super().changelist_view(request, extra)

    @admin.action(description="Rebalance tenants across all shards…", permissions=["change"])
    def rebalance(self, request: HttpRequest, queryset: QuerySet[VectorShard]) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:tenants_vectorshard_rebalance"))

    def rebalance_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = RebalanceForm(request.POST or None)
        moves: list[ShardMove] | None = None
        if request.method == "POST" and form.is_valid():
            actor = staff_actor(request)
            moves = shard_rebalance(reason=f"{form.cleaned_data['reason']} (by {actor.email})")
            count = len(moves)
            if count:
                messages.success(request, f"Rebalanced: {count} tenant{'s' if count != 1 else ''} to move.")
            else:
                messages.info(request, "Rebalanced: every tenant is already on its shard; nothing to move.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Rebalance vector shards" if moves is None else "Rebalance result",
            "has_view_permission": self.has_view_permission(request),
            "form": form,
            "moves": moves,
            "shards": self.get_queryset(request).order_by("name"),
            "moves_url": reverse("admin:tenants_shardmove_changelist"),
            "cancel_url": reverse("admin:tenants_vectorshard_changelist"),
            "submit_label": "Rebalance now",
        }
        return TemplateResponse(request, "admin/tenants/vectorshard/rebalance.html", context)


class MoveStatusFilter(admin.SimpleListFilter):
    """Pending moves by default: that is the work list."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(ShardMove.Status.PENDING, "Pending"), (ShardMove.Status.DONE, "Done"), ("all", "All")]

    def value(self) -> str:
        return super().value() or ShardMove.Status.PENDING

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[ShardMove]) -> QuerySet[ShardMove]:
        value = self.value()
        return queryset if value == "all" else queryset.filter(status=value)


@admin.register(ShardMove)
class ShardMoveAdmin(admin.ModelAdmin):
    list_display = ["tenant", "from_shard", "to_shard", "status", "reason", "created_at", "done_at"]
    list_filter = [MoveStatusFilter, "to_shard"]
    list_select_related = ["tenant", "from_shard", "to_shard"]
    search_fields = ["tenant__slug", "tenant__name"]
    actions = ["mark_done"]
    readonly_fields = ["tenant", "from_shard", "to_shard", "reason", "status", "created_at", "done_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # Marking a move done is a status flip with no rule attached; LogEntry records who.
    @admin.action(description="Mark selected moves done (index moved)", permissions=["change"])
    def mark_done(self, request: HttpRequest, queryset: QuerySet[ShardMove]) -> None:
        moves = list(queryset.filter(status=ShardMove.Status.PENDING).select_related("tenant"))
        ShardMove.objects.filter(pk__in=[m.pk for m in moves]).update(
            status=ShardMove.Status.DONE, done_at=timezone.now()
        )
        for move in moves:
            self.log_change(request, move, "Marked done")
        if moves:
            messages.success(request, f"Marked {len(moves)} move{'s' if len(moves) != 1 else ''} done.")
        else:
            messages.info(request, "The selected moves were already done.")
