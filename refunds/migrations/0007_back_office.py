"""Issue 14: the Back Office for real staff. StripeEvent gets its name ("Stripe event") and the
permission "Can reprocess Stripe events" (the Reprocess action checked "change" before); whoever
held "Can change stripe event" gets it, so nobody loses the right. OrderItem.sku reads "SKU".
"""

from django.db import migrations, models


def grant_reprocess_to_former_holders(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="refunds", model="stripeevent")
    old = Permission.objects.filter(content_type=content_type, codename="change_stripeevent").first()
    if old is None:  # a fresh database: permissions are created after migrate, nobody holds one yet
        return
    new, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="reprocess_stripeevent", defaults={"name": "Can reprocess Stripe events"}
    )
    for group in old.group_set.all():
        group.permissions.add(new)
    for user in old.user_set.all():
        user.user_permissions.add(new)


class Migration(migrations.Migration):

    dependencies = [
        ("refunds", "0004_refund_warning"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="stripeevent",
            options={
                "ordering": ["-received_at", "-pk"],
                "permissions": [("reprocess_stripeevent", "Can reprocess Stripe events")],
                "verbose_name": "Stripe event",
                "verbose_name_plural": "Stripe events",
            },
        ),
        migrations.AlterField(
            model_name="orderitem",
            name="sku",
            field=models.CharField(max_length=64, verbose_name="SKU"),
        ),
        migrations.RunPython(grant_reprocess_to_former_holders, migrations.RunPython.noop),
    ]
