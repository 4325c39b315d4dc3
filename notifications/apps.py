from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # The recorder tells what it wrote (events.signals); alerts are raised in its
        # transaction (notifications/matching.py).
        from events.signals import events_recorded
        from notifications.matching import alerts_raise

        events_recorded.connect(alerts_raise, dispatch_uid="notifications.alerts_raise")

        # A rule or webhook changed in this process is matched with at once, not after the
        # rules cache's time (notifications.matching.RULES_CACHE_SECONDS).
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from notifications.matching import rules_cache_clear
        from notifications.models import AlertRule, Webhook

        for model in (AlertRule, Webhook):
            for signal in (post_save, post_delete):
                signal.connect(
                    rules_cache_clear, sender=model, dispatch_uid=f"rules-{signal}-{model}"
                )
            m2m_changed.connect(
                rules_cache_clear, sender=model.cameras.through, dispatch_uid=f"rules-m2m-{model}"
            )
