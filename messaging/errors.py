"""Refusals of the messaging services (problem+json through ``api.errors``)."""

from __future__ import annotations

from api.errors import ConflictError, DomainError, NotFoundError, UnprocessableError


class ConversationNotFound(NotFoundError):
    """Not a participant, or no such conversation: the same answer (no oracle, MSG-01)."""

    def __init__(self) -> None:
        super().__init__("No such conversation.")


class MessageNotFound(NotFoundError):
    def __init__(self) -> None:
        super().__init__("No such message.")


class ConversationClosed(ConflictError):
    code = "conversation_closed"

    def __init__(self) -> None:
        super().__init__("The therapist has closed this conversation to new messages.")


class NoCareRelationship(NotFoundError):
    """The booking is not one of the caller's, or never became a session: a 404 either way."""

    def __init__(self) -> None:
        super().__init__("No such booking.")


class ClientMessageIdReused(UnprocessableError):
    code = "client_message_id_reused"

    def __init__(self) -> None:
        super().__init__("This client_message_id was already used for a different message.")


class MessageNotEditable(ConflictError):
    code = "message_not_editable"


class MessageUnreadable(DomainError):
    """A stored body cannot be decrypted (missing or wrong key, altered ciphertext)."""

    status_code = 500
    code = "decryption_failed"
    title = "Internal server error"

    def __init__(self) -> None:
        super().__init__("This record cannot be decrypted. The operators have been told.")
