from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"

    def ready(self) -> None:
        # The assistant's knowledge of session data: a summary for its system prompt, and
        # answers and tools scoped to the chat's organization (see events/assistant.py).
        from chats.selectors import context_provider_register, data_provider_register
        from events.assistant import EventsAssistantData, session_data_facts

        context_provider_register(session_data_facts)
        data_provider_register(EventsAssistantData)
