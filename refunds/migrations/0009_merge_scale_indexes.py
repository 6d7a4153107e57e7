"""Joins issue 13's 0006_scale_indexes (made on 0004_refund_warning) with main's
0008_merge_api_tokens_back_office (0005_api_tokens + 0007_back_office). No operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("refunds", "0006_scale_indexes"),
        ("refunds", "0008_merge_api_tokens_back_office"),
    ]

    operations = []
