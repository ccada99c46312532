"""Conversation and message endpoints: thin views over ``services`` and ``selectors``.

Only the two participants of a conversation reach it; anyone else gets the same 404 as an
unknown id, and compliance officers and admins are refused by role (403): they see metadata
through the audit trail instead (MSG-01). Every view is an ``AuditedMixin`` view on
``messaging.conversation``: a read of messages is one event on the conversation (the client as
patient) naming how many it served; a write is the event its service reports (MSG-05).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.idempotency import idempotent
from api.models import Role
from api.pagination import CursorPagination
from api.permissions import has_role
from api.serializers import problem_responses, represent
from audit.mixins import AuditedMixin
from audit.services import AccessScope, EventDraft, audit_access, touch
from messaging import selectors, services
from messaging.attachments import ALLOWED, AttachmentTooLarge
from messaging.models import Conversation, Message
from messaging.serializers import (
    CloseIn,
    ComplianceConversationOut,
    ConversationExportOut,
    ConversationOpenIn,
    ConversationOut,
    MessageEditIn,
    MessageIn,
    MessageMetadataOut,
    MessageOut,
    MessageVersionOut,
    MessageWithFileIn,
    MessagingProfileIn,
    MessagingProfileOut,
    ReadIn,
)

IsParticipantRole = has_role(Role.CLIENT, Role.THERAPIST)
IsTherapist = has_role(Role.THERAPIST)
TAGS = ["messaging"]


class ConversationAuditMixin(AuditedMixin):
    """Serves ``messaging.conversation`` (the ``conversation_id`` URL keyword). What a service
    or view reported (``audit_access``) is the request's record: a page of 50 messages is one
    read of their conversation, not 50 events."""

    audit_resource = "messaging.conversation"
    audit_lookup_kwarg = "conversation_id"

    def audit_events(self, response: Any, scope: AccessScope) -> list[EventDraft]:
        if scope.drafts:
            return list(scope.drafts)
        return super().audit_events(response, scope)


class ConversationPagination(CursorPagination):
    ordering = ("-activity_at",)


class MessagePagination(CursorPagination):
    """Newest first; with ``after_seq``, oldest first from there (catching up)."""

    ordering = ("-seq",)

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        return ("seq",) if "after_seq" in request.query_params else ("-seq",)


class ConversationsView(ConversationAuditMixin, ListAPIView):
    permission_classes = [IsParticipantRole]
    serializer_class = ConversationOut
    pagination_class = ConversationPagination

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Conversation.objects.none()
        return selectors.conversations_of(user=user_of(self.request))

    @extend_schema(
        tags=TAGS,
        summary="List my conversations",
        responses={200: ConversationOut(many=True), **problem_responses(403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        summary="Open the conversation with my client or therapist",
        request=ConversationOpenIn,
        responses={
            200: ConversationOut,
            201: ConversationOut,
            **problem_responses(400, 403, 404),
        },
        description="Either participant of a booking (confirmed, completed or no-show; past or "
        "future) opens their conversation; it exists once per pair (200 when it already did).",
    )
    def post(self, request: Request) -> Response:
        data = ConversationOpenIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_of(request)
        conversation, created = services.conversation_open(
            booking_id=data.validated_data["booking"],
            user=user,
            request=request,
            now=timezone.now(),
        )
        if not created:
            touch(conversation, "read")
        conversation = selectors.conversation_for(conversation_id=conversation.pk, user=user)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(represent(ConversationOut, conversation), status=code)


class ConversationDetailView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        summary="Get a conversation",
        responses={200: ConversationOut, **problem_responses(403, 404)},
    )
    def get(self, request: Request, conversation_id: uuid.UUID) -> Response:
        conversation = selectors.conversation_for(
            conversation_id=conversation_id, user=user_of(request)
        )
        return Response(represent(ConversationOut, conversation))


def _after_seq(request: Request) -> int | None:
    raw = request.query_params.get("after_seq")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        raise ValidationError({"after_seq": ["A whole number from 0."]})
    return int(raw)


class MessagesView(ConversationAuditMixin, ListAPIView):
    permission_classes = [IsParticipantRole]
    serializer_class = MessageOut
    pagination_class = MessagePagination

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        self.conversation = selectors.conversation_of(
            conversation_id=self.kwargs["conversation_id"], user=user_of(self.request)
        )
        rows = selectors.visible_messages(
            conversation=self.conversation, viewer=user_of(self.request)
        )
        after = _after_seq(self.request)
        return rows if after is None else rows.filter(seq__gt=after)

    @extend_schema(
        tags=TAGS,
        summary="List a conversation's messages",
        parameters=[
            OpenApiParameter(
                "after_seq",
                int,
                description="Only messages after this seq, oldest first (catching up)",
            )
        ],
        responses={200: MessageOut(many=True), **problem_responses(400, 403, 404)},
        description="Newest first, decrypted for you. The other participant's deleted "
        "messages are not listed; yours are, marked deleted, without text.",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.get_queryset()
        page = self.paginate_queryset(queryset)
        messages = selectors.messages_decrypt(page or [], conversation=self.conversation)
        audit_access(
            obj=self.conversation,
            action="read",
            details={**self.audit_details(), "messages": len(messages)},
        )
        return self.get_paginated_response(MessageOut(messages, many=True).data)

    @extend_schema(
        tags=TAGS,
        summary="Send a message",
        request=MessageIn,
        responses={
            200: MessageOut,
            201: MessageOut,
            **problem_responses(400, 403, 404, 409, 422),
        },
        description="201 with the new message; 200 with the stored one when its "
        "client_message_id was sent before (a retry). A closed conversation is a 409.",
    )
    @idempotent
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = MessageIn(data=request.data)
        data.is_valid(raise_exception=True)
        message, created = services.message_send(
            conversation_id=conversation_id,
            sender=user_of(request),
            body=data.validated_data["body"],
            client_message_id=data.validated_data["client_message_id"],
            request=request,
            now=timezone.now(),
        )
        if not created:
            audit_access(obj=message, action="read", details=self.audit_details())
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(represent(MessageOut, selectors.message_complete(message)), status=code)


class MessageWithFileView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]
    parser_classes = [MultiPartParser]

    @extend_schema(
        tags=TAGS,
        summary="Send a message with a file",
        request={"multipart/form-data": MessageWithFileIn},
        responses={
            200: MessageOut,
            201: MessageOut,
            **problem_responses(400, 403, 404, 409, 413, 415, 422),
        },
        description="The file is judged by its content (PDF, PNG, JPEG or plain text; 415 "
        "otherwise), size-limited (413), encrypted before it is stored. client_message_id "
        "dedupes and Idempotency-Key replays as for a text message (the key's request is the "
        "fields and the file's name and content).",
    )
    @idempotent
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = MessageWithFileIn(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        if upload.size > settings.MESSAGING_ATTACHMENT_MAX_BYTES:  # before reading it
            raise AttachmentTooLarge()
        message, created = services.message_send(
            conversation_id=conversation_id,
            sender=user_of(request),
            body=data.validated_data["body"],
            client_message_id=data.validated_data["client_message_id"],
            file=services.FileIn(name=upload.name or "", data=upload.read()),
            request=request,
            now=timezone.now(),
        )
        if not created:
            audit_access(obj=message, action="read", details=self.audit_details())
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(represent(MessageOut, selectors.message_complete(message)), status=code)


class AttachmentView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        summary="Download an attachment",
        responses={
            # Served as the type its bytes were checked to be when attached.
            **{
                (200, media_type): OpenApiResponse(
                    OpenApiTypes.BINARY,
                    description="The file, as an attachment (never shown inline), not cached",
                )
                for media_type in ALLOWED
            },
            **problem_responses(403, 404),
        },
    )
    def get(
        self, request: Request, conversation_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> HttpResponse:
        user = user_of(request)
        conversation = selectors.conversation_of(conversation_id=conversation_id, user=user)
        attachment, data = selectors.attachment_for(
            conversation=conversation, attachment_id=attachment_id, viewer=user
        )
        audit_access(obj=attachment, action="read", details=self.audit_details())
        response = HttpResponse(data, content_type=attachment.content_type)
        response["Content-Disposition"] = (
            content_disposition_header(
                as_attachment=True,
                filename=attachment.name,  # type: ignore[attr-defined]
            )
            or "attachment"
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "no-store"
        return response


class MessageDetailView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        summary="Edit my message",
        request=MessageEditIn,
        responses={200: MessageOut, **problem_responses(400, 403, 404, 409)},
        description="The text it had is kept (its versions); the other participant sees it "
        "marked edited.",
    )
    def patch(
        self, request: Request, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> Response:
        data = MessageEditIn(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.message_edit(
            conversation_id=conversation_id,
            message_id=message_id,
            editor=user_of(request),
            body=data.validated_data["body"],
            request=request,
            now=timezone.now(),
        )
        return Response(represent(MessageOut, selectors.message_complete(message)))

    @extend_schema(
        tags=TAGS,
        summary="Delete my message",
        request=None,
        responses={200: MessageOut, **problem_responses(403, 404, 409)},
        description="The other participant no longer sees it; you see it marked deleted. "
        "Every version stays in the record.",
    )
    def delete(
        self, request: Request, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> Response:
        message = services.message_delete(
            conversation_id=conversation_id,
            message_id=message_id,
            by=user_of(request),
            request=request,
            now=timezone.now(),
        )
        return Response(represent(MessageOut, selectors.message_complete(message)))


class MessageVersionsView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        summary="List a message's earlier texts",
        responses={200: MessageVersionOut(many=True), **problem_responses(403, 404)},
    )
    def get(self, request: Request, conversation_id: uuid.UUID, message_id: uuid.UUID) -> Response:
        user = user_of(request)
        conversation = selectors.conversation_of(conversation_id=conversation_id, user=user)
        versions = selectors.message_versions(
            conversation=conversation, message_id=message_id, viewer=user
        )
        audit_access(
            obj=conversation,
            action="read",
            details={**self.audit_details(), "versions": len(versions)},
        )
        return Response(MessageVersionOut(versions, many=True).data)


class ConversationReadView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]
    audit_verb = "read_receipt"

    @extend_schema(
        tags=TAGS,
        summary="Mark messages read",
        request=ReadIn,
        responses={200: ConversationOut, **problem_responses(400, 403, 404)},
        description="Moves your read receipt forward to seq (never back).",
    )
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = ReadIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_of(request)
        services.conversation_mark_read(
            conversation_id=conversation_id,
            reader=user,
            up_to_seq=data.validated_data["seq"],
            request=request,
            now=timezone.now(),
        )
        conversation = selectors.conversation_for(conversation_id=conversation_id, user=user)
        return Response(represent(ConversationOut, conversation))


class ConversationCloseView(ConversationAuditMixin, APIView):
    audit_verb = "close"
    permission_classes = [IsTherapist]

    @extend_schema(
        tags=TAGS,
        summary="Close a conversation to new messages",
        request=CloseIn,
        responses={200: ConversationOut, **problem_responses(400, 403, 404, 409)},
        description="The therapist's note (where to go instead) becomes the last message.",
    )
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = CloseIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_of(request)
        services.conversation_close(
            conversation_id=conversation_id,
            therapist=user,
            note=data.validated_data["note"],
            request=request,
            now=timezone.now(),
        )
        conversation = selectors.conversation_for(conversation_id=conversation_id, user=user)
        return Response(represent(ConversationOut, conversation))


class MessagingProfileView(APIView):
    """The caller's messaging settings (no protected data: quiet hours and, for therapists,
    the expectations their clients see)."""

    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        summary="Get my messaging settings",
        responses={200: MessagingProfileOut, **problem_responses(403)},
    )
    def get(self, request: Request) -> Response:
        profile = selectors.messaging_profile_of(user=user_of(request))
        return Response(MessagingProfileOut(profile).data)

    @extend_schema(
        tags=TAGS,
        summary="Set my messaging settings",
        request=MessagingProfileIn,
        responses={200: MessagingProfileOut, **problem_responses(400, 403)},
        description="Quiet hours (no notification emails then) for anyone; office hours, a "
        "response-time promise and an automatic reply outside office hours for therapists.",
    )
    def put(self, request: Request) -> Response:
        data = MessagingProfileIn(data=request.data)
        data.is_valid(raise_exception=True)
        profile = services.messaging_profile_update(
            user=user_of(request), now=timezone.now(), **data.validated_data
        )
        return Response(MessagingProfileOut(profile).data)


class ConversationExportView(ConversationAuditMixin, APIView):
    permission_classes = [IsParticipantRole]
    audit_verb = "export"

    def _export(self, request: Request, conversation_id: uuid.UUID) -> dict[str, Any]:
        user = user_of(request)
        conversation = selectors.conversation_for(conversation_id=conversation_id, user=user)
        messages = selectors.conversation_export(conversation=conversation, viewer=user)
        audit_access(
            obj=conversation,
            action="export",
            details={**self.audit_details(), "messages": len(messages)},
        )
        return {"conversation": conversation, "exported_at": timezone.now(), "messages": messages}

    @extend_schema(
        tags=TAGS,
        summary="Download the whole conversation (JSON)",
        responses={200: ConversationExportOut, **problem_responses(403, 404)},
        description="Every message you see, oldest first, with the texts edited messages had "
        "before: your copy of the record. Audited as an export.",
    )
    def get(self, request: Request, conversation_id: uuid.UUID) -> Response:
        export = self._export(request, conversation_id)
        response = Response(ConversationExportOut(export).data)
        response["Content-Disposition"] = 'attachment; filename="conversation.json"'
        response["Cache-Control"] = "no-store"
        return response


class ConversationPrintView(ConversationExportView):
    @extend_schema(
        tags=TAGS,
        summary="Download the whole conversation (printable HTML)",
        responses={(200, "text/html"): OpenApiTypes.STR, **problem_responses(403, 404)},
        description="The same record as a page to print or save. Message text is escaped and "
        "the page runs no script (Content-Security-Policy).",
    )
    def get(self, request: Request, conversation_id: uuid.UUID) -> HttpResponse:  # type: ignore[override]
        export = self._export(request, conversation_id)
        page = render_to_string("messaging/conversation.html", export)
        response = HttpResponse(page, content_type="text/html; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="conversation.html"'
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        response["Cache-Control"] = "no-store"
        return response


IsCompliance = has_role(Role.COMPLIANCE_OFFICER)


class ComplianceConversationsView(ConversationAuditMixin, ListAPIView):
    """Compliance officers: every conversation's metadata (who, when), never content."""

    permission_classes = [IsCompliance]
    serializer_class = ComplianceConversationOut
    pagination_class = ConversationPagination

    def get_queryset(self) -> Any:
        return selectors.compliance_conversations()

    @extend_schema(
        tags=TAGS,
        summary="List conversations' metadata (compliance)",
        responses={200: ComplianceConversationOut(many=True), **problem_responses(403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ComplianceMessagesView(ConversationAuditMixin, ListAPIView):
    """Compliance officers: a conversation's messages as metadata (who wrote when, edits,
    deletions, attachment counts); the text is never read."""

    permission_classes = [IsCompliance]
    serializer_class = MessageMetadataOut
    pagination_class = MessagePagination

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        self.conversation = selectors.compliance_conversation(
            conversation_id=self.kwargs["conversation_id"]
        )
        return selectors.compliance_message_metadata(conversation=self.conversation)

    @extend_schema(
        tags=TAGS,
        summary="List a conversation's message metadata (compliance)",
        responses={200: MessageMetadataOut(many=True), **problem_responses(403, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        audit_access(
            obj=self.conversation,
            action="read",
            details={**self.audit_details(), "metadata": True, "messages": len(page or [])},
        )
        return self.get_paginated_response(MessageMetadataOut(page, many=True).data)
