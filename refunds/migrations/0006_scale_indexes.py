"""Indexes for the Back Office search at a million orders (issue 13), on PostgreSQL only.

- Trigram GIN indexes (pg_trgm) on UPPER(column): Django's `icontains` is
  `UPPER(col::text) LIKE UPPER('%term%')`, which only an index on that expression can serve.
- A B-tree on UPPER(customer_email) for the exact, case-insensitive e-mail lookup, one on the
  SKU for the exact SKU lookup, and one on (currency, created_at) for the currency filter.

Built CONCURRENTLY (hence `atomic = False`), so webhooks keep writing while they build. On
SQLite, and on any other database, every operation here does nothing: the same searches work
there, without these indexes. The indexes are not part of the models' state (no `Meta.indexes`),
so `makemigrations` stays quiet on every database.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models
from django.db.models import OrderBy
from django.db.models.functions import Collate
from django.db.models.functions import Upper
from django.db.models.indexes import IndexExpression


class AddIndexOnPostgres(migrations.operations.base.Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name, index):
        self.model_name = model_name
        self.index = index

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            # What django.contrib.postgres's AppConfig.ready() does, for a host project that
            # does not list that app: an OpClass around an expression is an index wrapper.
            IndexExpression.register_wrappers(OrderBy, OpClass, Collate)
            model = to_state.apps.get_model(app_label, self.model_name)
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            model = from_state.apps.get_model(app_label, self.model_name)
            schema_editor.remove_index(model, self.index, concurrently=True)

    def describe(self):
        return f"Create index {self.index.name} on {self.model_name} (PostgreSQL only)"

    def deconstruct(self):
        return self.__class__.__name__, [self.model_name, self.index], {}


def trigram(field: str, name: str) -> GinIndex:
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=name)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("refunds", "0004_refund_warning"),
    ]

    operations = [
        TrigramExtension(),  # CREATE EXTENSION IF NOT EXISTS pg_trgm; nothing on SQLite
        AddIndexOnPostgres("order", trigram("reference", "order_reference_trgm")),
        AddIndexOnPostgres("order", trigram("customer_email", "order_email_trgm")),
        AddIndexOnPostgres("order", models.Index(Upper("customer_email"), name="order_email_upper")),
        # The currency filter of the Orders list, newest first.
        AddIndexOnPostgres("order", models.Index(fields=["currency", "-created_at"], name="order_currency_created")),
        AddIndexOnPostgres("orderitem", trigram("sku", "orderitem_sku_trgm")),
        AddIndexOnPostgres("orderitem", trigram("name", "orderitem_name_trgm")),
        AddIndexOnPostgres("orderitem", models.Index(fields=["sku"], name="orderitem_sku")),
    ]
