"""Indexes for the Back Office search at a million orders (issue 13), on PostgreSQL only.

- Trigram GIN indexes (pg_trgm) on UPPER(column): Django's `icontains` is
  `UPPER(col::text) LIKE UPPER('%term%')`, which only an index on that expression can serve.
- A B-tree on UPPER(customer_email) for the exact, case-insensitive e-mail lookup, one on the
  SKU for the exact SKU lookup, and one on (currency, created_at) for the currency filter.

Built CONCURRENTLY (hence `atomic = False`), so webhooks keep writing while they build. On
SQLite, and on any other database, every operation here does nothing: the same searches work
there, without these indexes. The indexes are not part of the models' state (no `Meta.indexes`),
so `makemigrations` stays quiet on every database. `django.contrib.postgres` is imported only
when the database is PostgreSQL: it needs psycopg, which a host project on SQLite may not have.
"""

from django.db import migrations, models
from django.db.models.functions import Upper


def build_index(spec: dict):
    """The Index a spec names: {"name", and "trigram": column | "upper": column | "fields": [...]}."""
    if "trigram" in spec:
        from django.contrib.postgres.indexes import GinIndex, OpClass
        from django.db.models import OrderBy
        from django.db.models.functions import Collate
        from django.db.models.indexes import IndexExpression

        # What django.contrib.postgres's AppConfig.ready() does, for a host project that does not
        # list that app: an OpClass around an expression is an index wrapper.
        IndexExpression.register_wrappers(OrderBy, OpClass, Collate)
        return GinIndex(OpClass(Upper(spec["trigram"]), name="gin_trgm_ops"), name=spec["name"])
    if "upper" in spec:
        return models.Index(Upper(spec["upper"]), name=spec["name"])
    return models.Index(fields=spec["fields"], name=spec["name"])


class PostgresOnly(migrations.operations.base.Operation):
    reversible = True
    reduces_to_sql = True

    def state_forwards(self, app_label, state):
        pass


class CreateTrigramExtension(PostgresOnly):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            from django.contrib.postgres.operations import TrigramExtension  # CREATE EXTENSION IF NOT EXISTS

            TrigramExtension().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass  # other indexes may use it; it stays

    def describe(self):
        return "Create extension pg_trgm (PostgreSQL only)"

    def deconstruct(self):
        return self.__class__.__name__, [], {}


class AddIndexOnPostgres(PostgresOnly):
    def __init__(self, model_name: str, spec: dict):
        self.model_name = model_name
        self.spec = spec

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            model = to_state.apps.get_model(app_label, self.model_name)
            schema_editor.add_index(model, build_index(self.spec), concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            model = from_state.apps.get_model(app_label, self.model_name)
            schema_editor.remove_index(model, build_index(self.spec), concurrently=True)

    def describe(self):
        return f"Create index {self.spec['name']} on {self.model_name} (PostgreSQL only)"

    def deconstruct(self):
        return self.__class__.__name__, [self.model_name, self.spec], {}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("refunds", "0004_refund_warning"),
    ]

    operations = [
        CreateTrigramExtension(),
        AddIndexOnPostgres("order", {"name": "order_reference_trgm", "trigram": "reference"}),
        AddIndexOnPostgres("order", {"name": "order_email_trgm", "trigram": "customer_email"}),
        AddIndexOnPostgres("order", {"name": "order_email_upper", "upper": "customer_email"}),
        # The currency filter of the Orders list, newest first.
        AddIndexOnPostgres("order", {"name": "order_currency_created", "fields": ["currency", "-created_at"]}),
        AddIndexOnPostgres("orderitem", {"name": "orderitem_sku_trgm", "trigram": "sku"}),
        AddIndexOnPostgres("orderitem", {"name": "orderitem_name_trgm", "trigram": "name"}),
        AddIndexOnPostgres("orderitem", {"name": "orderitem_sku", "fields": ["sku"]}),
    ]
