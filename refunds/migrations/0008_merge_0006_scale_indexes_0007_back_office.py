"""Joins issue 13's 0006_scale_indexes and issue 14's 0007_back_office, both made on
0004_refund_warning (0005 is another issue's). No operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("refunds", "0006_scale_indexes"),
        ("refunds", "0007_back_office"),
    ]

    operations = []
