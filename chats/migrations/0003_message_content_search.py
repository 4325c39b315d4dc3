from django.db import migrations

# The expression Django's SearchVector("content", config="simple") compiles to (it wraps the
# column in COALESCE): the planner uses an expression index only for the very same expression.
INDEX_CREATE = (
    "CREATE INDEX IF NOT EXISTS message_content_search ON chats_message "
    "USING gin (to_tsvector('simple'::regconfig, COALESCE(content, '')))"
)
INDEX_DROP = "DROP INDEX IF EXISTS message_content_search"


def _on_postgresql(sql: str):
    """Full-text search is PostgreSQL's; on SQLite (the laptop default) there is no index."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("chats", "0002_branches_and_models"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(INDEX_CREATE), _on_postgresql(INDEX_DROP)),
    ]
