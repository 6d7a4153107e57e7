"""Issue 14: the Back Office for real staff. StripeEvent gets its name ("Stripe event") and the
permission "Can reprocess Stripe events" (the Reprocess action checked "change" before); whoever
held "Can change stripe event" gets it, so nobody loses the right. Fields and models get
translatable names (verbose_name only: no SQL on PostgreSQL or SQLite).
"""

import django.db.models.deletion
import django_fsm
import refunds.models
from django.conf import settings
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
        ('refunds', '0004_refund_warning'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='itemtransition',
            options={'ordering': ['at', 'pk'], 'verbose_name': 'item transition', 'verbose_name_plural': 'item transitions'},
        ),
        migrations.AlterModelOptions(
            name='order',
            options={'ordering': ['-created_at', '-pk'], 'verbose_name': 'order', 'verbose_name_plural': 'orders'},
        ),
        migrations.AlterModelOptions(
            name='orderitem',
            options={'ordering': ['order_id', 'pk'], 'permissions': [('refund_orderitem', 'Can refund order items'), ('confirm_refund_orderitem', 'Can confirm a refund before the settlement period ends')], 'verbose_name': 'order item', 'verbose_name_plural': 'order items'},
        ),
        migrations.AlterModelOptions(
            name='refund',
            options={'ordering': ['-created_at', '-pk'], 'permissions': [('approve_refund', 'Can approve or reject refunds awaiting approval')], 'verbose_name': 'refund', 'verbose_name_plural': 'refunds'},
        ),
        migrations.AlterModelOptions(
            name='stripeevent',
            options={'ordering': ['-received_at', '-pk'], 'permissions': [('reprocess_stripeevent', 'Can reprocess Stripe events')], 'verbose_name': 'Stripe event', 'verbose_name_plural': 'Stripe events'},
        ),
        migrations.AlterField(
            model_name='attentioncase',
            name='alert_attempts',
            field=models.PositiveIntegerField(default=0, verbose_name='alert attempts'),
        ),
        migrations.AlterField(
            model_name='attentioncase',
            name='alert_error',
            field=models.TextField(blank=True, verbose_name='alert error'),
        ),
        migrations.AlterField(
            model_name='attentioncase',
            name='detail',
            field=models.TextField(blank=True, verbose_name='detail'),
        ),
        migrations.AlterField(
            model_name='attentioncase',
            name='opened_at',
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='opened at'),
        ),
        migrations.AlterField(
            model_name='attentioncase',
            name='resolution_note',
            field=models.TextField(blank=True, verbose_name='resolution note'),
        ),
        migrations.AlterField(
            model_name='itemtransition',
            name='item',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='transitions', to='refunds.orderitem', verbose_name='item'),
        ),
        migrations.AlterField(
            model_name='itemtransition',
            name='refund',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='transitions', to='refunds.refund', verbose_name='refund'),
        ),
        migrations.AlterField(
            model_name='order',
            name='created_at',
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='created at'),
        ),
        migrations.AlterField(
            model_name='order',
            name='currency',
            field=models.CharField(help_text='Lower-case ISO code, as Stripe uses it.', max_length=3, verbose_name='currency'),
        ),
        migrations.AlterField(
            model_name='order',
            name='customer_email',
            field=models.EmailField(blank=True, max_length=254, verbose_name='customer email'),
        ),
        migrations.AlterField(
            model_name='order',
            name='reference',
            field=models.CharField(max_length=64, unique=True, verbose_name='reference'),
        ),
        migrations.AlterField(
            model_name='order',
            name='shipping_amount',
            field=models.PositiveBigIntegerField(default=0, help_text='Minor units (cents).', verbose_name='shipping amount'),
        ),
        migrations.AlterField(
            model_name='orderitem',
            name='amount',
            field=models.PositiveBigIntegerField(help_text='Refundable gross amount, minor units (cents).', verbose_name='amount'),
        ),
        migrations.AlterField(
            model_name='orderitem',
            name='name',
            field=models.CharField(max_length=255, verbose_name='name'),
        ),
        migrations.AlterField(
            model_name='orderitem',
            name='sku',
            field=models.CharField(max_length=64, verbose_name='SKU'),
        ),
        migrations.AlterField(
            model_name='orderitem',
            name='state',
            field=django_fsm.FSMField(choices=[('payment_captured', 'payment captured'), ('payment_refund_pending', 'payment refund pending'), ('payment_refund_succeeded', 'payment refund succeeded'), ('payment_refund_failed', 'payment refund failed'), ('payment_refunded', 'payment refunded'), ('payment_refund_awaiting_approval', 'payment refund awaiting approval')], db_index=True, default='payment_captured', max_length=50, protected=True, verbose_name='state'),
        ),
        migrations.AlterField(
            model_name='orderitem',
            name='state_changed_at',
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='state changed at'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='amount',
            field=models.PositiveBigIntegerField(help_text='Minor units (cents), items plus shipping.', verbose_name='amount'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='created_at',
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='requested at'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='requested by'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='currency',
            field=models.CharField(max_length=3, verbose_name='currency'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='decided_at',
            field=models.DateTimeField(blank=True, help_text='When it was approved or rejected.', null=True, verbose_name='decided at'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='decision_note',
            field=models.TextField(blank=True, help_text="The approver's or rejecter's note.", verbose_name='decision note'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='failure_reason',
            field=models.CharField(blank=True, max_length=255, verbose_name='failure reason'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='idempotency_key',
            field=models.CharField(default=refunds.models.new_idempotency_key, max_length=255, unique=True, verbose_name='idempotency key'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='last_error',
            field=models.TextField(blank=True, verbose_name='last error'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='last_submitted_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='last submitted at'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='note',
            field=models.TextField(blank=True, verbose_name='note'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='origin',
            field=models.CharField(choices=[('back_office', 'Back Office'), ('stripe_dashboard', 'outside this system (Stripe Dashboard)')], default='back_office', max_length=20, verbose_name='origin'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='reason',
            field=models.CharField(blank=True, choices=[('requested_by_customer', 'requested by customer'), ('duplicate', 'duplicate'), ('fraudulent', 'fraudulent')], max_length=32, verbose_name='reason'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='shipping_amount',
            field=models.PositiveBigIntegerField(default=0, help_text='The part of `amount` that is shipping.', verbose_name='shipping amount'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='status',
            field=models.CharField(choices=[('awaiting_approval', 'awaiting approval (not yet sent to Stripe)'), ('rejected', 'rejected (never sent to Stripe)'), ('queued', 'queued (not yet sent to Stripe)'), ('pending', 'pending at Stripe'), ('requires_action', 'requires action'), ('succeeded', 'succeeded'), ('failed', 'failed'), ('canceled', 'canceled')], db_index=True, default='queued', max_length=20, verbose_name='status'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='status_changed_at',
            field=models.DateTimeField(default=django.utils.timezone.now, verbose_name='status changed at'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='stripe_refund_id',
            field=models.CharField(blank=True, max_length=255, null=True, unique=True, verbose_name='Stripe refund'),
        ),
        migrations.AlterField(
            model_name='refund',
            name='submit_attempts',
            field=models.PositiveIntegerField(default=0, verbose_name='submit attempts'),
        ),
        migrations.AlterField(
            model_name='stripeevent',
            name='error',
            field=models.TextField(blank=True, verbose_name='error'),
        ),
        migrations.AlterField(
            model_name='stripeevent',
            name='payload',
            field=models.JSONField(verbose_name='payload'),
        ),
        migrations.AlterField(
            model_name='stripeevent',
            name='processed_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='processed at'),
        ),
        migrations.AlterField(
            model_name='stripeevent',
            name='received_at',
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='received at'),
        ),
        migrations.AlterField(
            model_name='stripeevent',
            name='stripe_event_id',
            field=models.CharField(max_length=255, unique=True, verbose_name='Stripe event'),
        ),
        migrations.AlterField(
            model_name='stripeevent',
            name='type',
            field=models.CharField(db_index=True, max_length=255, verbose_name='type'),
        ),
        migrations.RunPython(grant_reprocess_to_former_holders, migrations.RunPython.noop),
    ]
