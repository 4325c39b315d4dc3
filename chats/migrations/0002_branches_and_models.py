import django.db.models.deletion
from django.db import migrations, models


def link_linear_history(apps, schema_editor):
    """Chats written before branches were one line: each message follows the one before it,
    and the chat shows its newest message."""
    Chat = apps.get_model("chats", "Chat")
    Message = apps.get_model("chats", "Message")
    for chat_id in Chat.objects.values_list("pk", flat=True).iterator():
        previous = None
        for message in Message.objects.filter(chat_id=chat_id).order_by("created_at", "id"):
            if previous is not None:
                message.parent_id = previous
                message.save(update_fields=["parent"])
            previous = message.pk
        if previous is not None:
            Chat.objects.filter(pk=chat_id).update(current_leaf_id=previous)


class Migration(migrations.Migration):
    dependencies = [
        ("chats", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="chat",
            name="current_leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chats.message",
            ),
        ),
        migrations.AddField(
            model_name="chat",
            name="model",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chats.message",
            ),
        ),
        migrations.RunPython(link_linear_history, migrations.RunPython.noop),
    ]
