"""The finance export from the Back Office: "Export selected refunds as CSV" on the Refund
changelist (`export_refunds_csv`), the same columns as `manage.py export_refunds`, streamed."""

from __future__ import annotations

from django.contrib import admin
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import services


class ExportActions:
    """Mixed into the Refund admin. Selecting "all N refunds" exports every refund the
    changelist's filters and search select, however many: the rows are streamed."""

    @admin.action(permissions=["view"], description=_("Export selected refunds as CSV (finance)"))
    def export_refunds_csv(self, request, queryset):
        filename = f"refunds-{timezone.now():%Y%m%d-%H%M%S}.csv"
        response = StreamingHttpResponse(services.csv_lines(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
