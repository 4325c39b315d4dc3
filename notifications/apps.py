from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # The recorder tells what it wrote (events.signals); alerts are raised in its
        # transaction (notifications/matching.py).
        from events.signals import events_recorded
        from notifications.delivery import deliveries_wake
        from notifications.matching import alerts_raise
        from notifications.services import alerts_raised

        events_recorded.connect(alerts_raise, dispatch_uid="notifications.alerts_raise")
        # A webhook alert raised in this process wakes its delivery worker at once.
        alerts_raised.connect(deliveries_wake, dispatch_uid="notifications.deliveries_wake")
