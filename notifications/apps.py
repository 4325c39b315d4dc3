from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # The recorder tells what it wrote (events.signals); alerts are raised in its
        # transaction (notifications/matching.py).
        from events.signals import events_recorded
        from notifications.matching import alerts_raise

        events_recorded.connect(alerts_raise, dispatch_uid="notifications.alerts_raise")

        # The assistant's knowledge of alerts (notifications/assistant.py): chats takes one data
        # source, and this one extends the events' one; INSTALLED_APPS lists events first, so
        # this registration, made later, is the one that stays.
        from chats.selectors import context_provider_register, data_provider_register
        from notifications.assistant import AlertsAssistantData, alert_facts

        context_provider_register(alert_facts)
        data_provider_register(AlertsAssistantData)
