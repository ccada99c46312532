"""Messaging routes, included under ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, path

from messaging import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("messaging/profile", views.MessagingProfileView.as_view(), name="messaging-profile"),
    path("conversations/", views.ConversationsView.as_view(), name="conversations"),
    path(
        "conversations/<uuid:conversation_id>",
        views.ConversationDetailView.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages",
        views.MessagesView.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages/with-file",
        views.MessageWithFileView.as_view(),
        name="conversation-message-with-file",
    ),
    path(
        "conversations/<uuid:conversation_id>/attachments/<uuid:attachment_id>",
        views.AttachmentView.as_view(),
        name="conversation-attachment",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages/<uuid:message_id>",
        views.MessageDetailView.as_view(),
        name="conversation-message",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages/<uuid:message_id>/versions",
        views.MessageVersionsView.as_view(),
        name="conversation-message-versions",
    ),
    path(
        "conversations/<uuid:conversation_id>/read",
        views.ConversationReadView.as_view(),
        name="conversation-read",
    ),
    path(
        "conversations/<uuid:conversation_id>/export",
        views.ConversationExportView.as_view(),
        name="conversation-export",
    ),
    path(
        "conversations/<uuid:conversation_id>/export/print",
        views.ConversationPrintView.as_view(),
        name="conversation-export-print",
    ),
    path(
        "compliance/conversations/",
        views.ComplianceConversationsView.as_view(),
        name="compliance-conversations",
    ),
    path(
        "compliance/conversations/<uuid:conversation_id>/messages",
        views.ComplianceMessagesView.as_view(),
        name="compliance-conversation-messages",
    ),
    path(
        "conversations/<uuid:conversation_id>/close",
        views.ConversationCloseView.as_view(),
        name="conversation-close",
    ),
]
