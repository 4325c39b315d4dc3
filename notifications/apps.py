from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # The recorder tells what it wrote (events.signals); alerts are raised in its
        # transaction (notifications/matching.py).
        from events.signals import events_recorded
        from notifications.matching import alerts_raise

        events_recorded.connect(alerts_raise, dispatch_uid="notifications.alerts_raise")
