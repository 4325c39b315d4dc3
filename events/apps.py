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

        # Every processed frame, captured or pushed, reaches the recorder as a frame receiver
        # (cameras/receivers.py).
        from cameras.receivers import frame_receiver_register
        from events.recording import RecorderReceiver

        frame_receiver_register(RecorderReceiver())
